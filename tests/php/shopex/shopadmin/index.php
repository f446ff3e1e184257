<?php
/*
 * Harness of ShopEx 4.8.5's admin for payment apps. ShopEx's admin passes p[0], p[1], … as the
 * action's arguments, by position (core/include_v5/adminCore.php → kernel.php callAction():
 * call_user_func_array() with $_GET['p']); the harness takes the same p[] forms the README names,
 * and the older id=/ident= forms tests/adapters.rs uses. Answers are JSON (the real pages are HTML).
 *  - ctl=system/addon&act=refresh (工具 → 插件与扩展 → 刷新插件数据库): `core/admin/controller/system/
 *    ctl.addon.php` refresh() → mdl_addons::refresh() (the sdb_plugins rows of plugins/app/*);
 *  - ctl=trading/payment&act=do_install&p[0]=pay_<x> (or &ident=pay_<x>): `core/admin/controller/
 *    trading/ctl.payment.php` do_install(): plugins/app/pay_<x> exists, so install_app():
 *    mdl_appmgr::install() (dies for an app refresh() never saw), then insertPaymentApp() adds a
 *    payment method of pay_type <x> with disabled 'true'. The real page shows no id (it reloads
 *    支付方式, whose lists come only from ShopEx's online catalogue); the JSON's id is for the tests;
 *  - act=editPayment&p[0]=<id or empty>&p[1]=<name>&p[2]=pay_<x>: ctl.payment.php editPayment():
 *    the form (payment/pay_new.html) of the saved method p[0], or with no saved method of that id
 *    (p[0] empty: what 支付方式's 添加 button opens) an empty one of pay_type <x> whose hidden id is
 *    empty; the fields are the plugin's getfields() (loadMethod()); no enable switch;
 *  - act=detail&id=N (tests/adapters.rs): the same form as editPayment&p[0]=N;
 *  - act=savePayment (POST id, pay_type, custom_name and the fields): savePayment() → updatePay():
 *    with a saved method's id, its settings (`disabled` left alone); without an id, a new method,
 *    enabled (the column's default);
 *  - act=getPayList (支付方式列表): getPayList() → getMethods(): the enabled methods, each name
 *    linked to detailPayment&p[0]=<id> (payment/pay_list.html) — where the owner reads the id;
 *  - act=startApp&p[0]=N (or &id=N): startApp() sets disabled 'false'; act=disApp&p[0]=N: 'true'.
 * Written for the tests; no ShopEx code.
 */
define('PHP_SELF', $_SERVER['PHP_SELF']);
require(dirname(dirname(__FILE__)) . '/config/config.php');
define('CORE_INCLUDE_DIR', CORE_DIR . '/include_v5');
require(CORE_INCLUDE_DIR . '/shopCore.php');
require_once(CORE_DIR . '/model_v5/trading/mdl.payment.php');
/* The admin's core (core/include_v5/adminCore.php) does not run the shop front. */
class adminCore extends shopCore { function run() {} }
$system = new adminCore();
$oPay = $system->loadModel('trading/payment');
header('Content-Type: application/json; charset=utf-8');
$ctl = isset($_GET['ctl']) ? $_GET['ctl'] : 'trading/payment';
$act = isset($_GET['act']) ? $_GET['act'] : 'index';
$p = isset($_GET['p']) && is_array($_GET['p']) ? $_GET['p'] : array();
/** The action's argument $n: p[$n], else the older named parameter. */
function harness_arg($p, $n, $name)
{
    if (isset($p[$n])) {
        return (string)$p[$n];
    }
    return isset($_GET[$name]) ? (string)$_GET[$name] : '';
}
/** editPayment()'s form: the saved method $id, or an empty one of pay_type $type. */
function harness_form($oPay, $id, $type)
{
    $cfg = $oPay->getPaymentById($id);
    if (is_array($cfg) && !empty($cfg['pay_type'])) {
        $type = $cfg['pay_type'];
    }
    $plugin = $oPay->loadMethod($type);
    if (!$plugin) {
        http_response_code(404);
        exit(json_encode(array('error' => 'no plugin ' . $type)));
    }
    return array('id' => is_array($cfg) ? (string)$cfg['id'] : '', 'pay_type' => $type, 'fields' => $plugin->getfields(),
        'name' => $plugin->name, 'disabled' => is_array($cfg) ? $cfg['disabled'] : null);
}
if ($ctl === 'system/addon' && $act === 'refresh') {
    echo json_encode(array('ok' => $system->loadModel('system/addons')->refresh()));
} elseif ($act === 'do_install') {
    $ident = basename(harness_arg($p, 0, 'ident'));
    if (!is_dir(PLUGIN_DIR . '/app/' . $ident)) {
        http_response_code(404);
        exit(json_encode(array('error' => 'no app ' . $ident)));
    }
    $appmgr = $system->loadModel('system/appmgr');
    if (!$appmgr->install($ident, '1')) {
        exit(json_encode(array('error' => '安装失败'), JSON_UNESCAPED_UNICODE));
    }
    $name = $appmgr->getAppName($ident);
    $id = hdb_tx(function (&$t) use ($ident, $name) {
        $id = count($t['payment_cfg']) + 1;
        $t['payment_cfg'][(string)$id] = array('id' => $id, 'custom_name' => $name['plugin_name'], 'pay_type' => substr($ident, 4),
            'disabled' => 'true', 'config' => '');
        return $id;
    });
    echo json_encode(array('id' => $id, 'name' => $name['plugin_name']), JSON_UNESCAPED_UNICODE);
} elseif ($act === 'editPayment') {
    // editPayment($payId, $payName, $paytype): the type is p[2] without its 'pay_'.
    echo json_encode(harness_form($oPay, harness_arg($p, 0, 'id'), substr(harness_arg($p, 2, 'paytype'), 4)), JSON_UNESCAPED_UNICODE);
} elseif ($act === 'detail') {
    echo json_encode(harness_form($oPay, harness_arg($p, 0, 'id'), ''), JSON_UNESCAPED_UNICODE);
} elseif ($act === 'savePayment') {
    $msg = '';
    $oPay->updatePay($_POST, $msg);
    echo json_encode(array('msg' => $msg), JSON_UNESCAPED_UNICODE);
} elseif ($act === 'getPayList') {
    $items = array();
    foreach ($oPay->getMethods() as $row) {
        $items[] = array('id' => (string)$row['id'], 'custom_name' => $row['custom_name'],
            'link' => 'index.php?ctl=trading/payment&act=detailPayment&p[0]=' . $row['id']);
    }
    echo json_encode(array('items' => $items), JSON_UNESCAPED_UNICODE);
} elseif ($act === 'startApp') {
    echo json_encode(array('ok' => $oPay->startApp(harness_arg($p, 0, 'id')), 'msg' => '修改成功！'), JSON_UNESCAPED_UNICODE);
} elseif ($act === 'disApp') {
    echo json_encode(array('ok' => $oPay->disApp(harness_arg($p, 0, 'id')), 'msg' => '修改成功！'), JSON_UNESCAPED_UNICODE);
}
