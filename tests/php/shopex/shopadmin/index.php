<?php
/*
 * Harness of ShopEx 4.8.5's admin for payment apps:
 *  - ctl=system/addon&act=refresh (工具 → 插件 → 刷新插件数据库): `core/admin/controller/system/
 *    ctl.addon.php` refresh() → mdl_addons::refresh() (the sdb_plugins rows of plugins/app/*);
 *  - ctl=trading/payment&act=do_install&ident=pay_<x>: `core/admin/controller/trading/
 *    ctl.payment.php` do_install(): plugins/app/pay_<x> exists, so install_app(): mdl_appmgr::
 *    install() (dies for an app refresh() never saw), then insertPaymentApp() adds a payment
 *    method of pay_type <x> with disabled 'true';
 *  - act=detail&id=N: the method's form, from the plugin's getfields() (loadMethod()); it has no
 *    enable switch;
 *  - act=savePayment (POST id, pay_type, and the fields): updatePay() (leaves `disabled` alone);
 *  - act=startApp&id=N (支付方式 list → 启用): startApp() sets disabled 'false'.
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
if ($ctl === 'system/addon' && $_GET['act'] === 'refresh') {
    echo json_encode(array('ok' => $system->loadModel('system/addons')->refresh()));
} elseif ($_GET['act'] === 'do_install') {
    $ident = basename($_GET['ident']);
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
} elseif ($_GET['act'] === 'detail') {
    $cfg = $oPay->getPaymentById($_GET['id']);
    $plugin = $oPay->loadMethod($cfg['pay_type']);
    echo json_encode(array('fields' => $plugin->getfields(), 'name' => $plugin->name, 'disabled' => $cfg['disabled']), JSON_UNESCAPED_UNICODE);
} elseif ($_GET['act'] === 'savePayment') {
    $msg = '';
    $oPay->updatePay($_POST, $msg);
    echo json_encode(array('msg' => $msg), JSON_UNESCAPED_UNICODE);
} elseif ($_GET['act'] === 'startApp') {
    echo json_encode(array('ok' => $oPay->startApp($_GET['id']), 'msg' => '修改成功！'), JSON_UNESCAPED_UNICODE);
}
