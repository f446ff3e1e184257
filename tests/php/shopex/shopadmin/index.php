<?php
/*
 * Harness of ShopEx 4.8.5's admin for payment apps: `core/admin/controller/trading/ctl.payment.php`
 *  - act=do_install&ident=pay_<x>: install_app(): when plugins/app/pay_<x> exists the app is
 *    installed (its app.pay_<x>.php class, install()) and a payment method of pay_type <x> is added,
 *    disabled;
 *  - act=detail&id=N: the method's form, from the plugin's getfields() (loadMethod());
 *  - act=savePayment (POST id, pay_type, and the fields): updatePay().
 * Written for the tests; no ShopEx code.
 */
define('PHP_SELF', $_SERVER['PHP_SELF']);
require(dirname(dirname(__FILE__)) . '/config/config.php');
define('CORE_INCLUDE_DIR', CORE_DIR . '/include_v5');
require(CORE_INCLUDE_DIR . '/shopCore.php');
require_once(CORE_DIR . '/model_v5/trading/mdl.payment.php');
$system = new shopCore();
$oPay = $system->loadModel('trading/payment');
header('Content-Type: application/json; charset=utf-8');
if ($_GET['act'] === 'do_install') {
    $ident = basename($_GET['ident']);
    if (!is_dir(PLUGIN_DIR . '/app/' . $ident)) {
        http_response_code(404);
        exit(json_encode(array('error' => 'no app ' . $ident)));
    }
    require_once(CORE_INCLUDE_DIR . '/app.php');
    require_once(PLUGIN_DIR . '/app/' . $ident . '/app.' . $ident . '.php');
    $class = 'app_' . $ident;
    $app = new $class();
    $app->install();
    $id = hdb_tx(function (&$t) use ($ident, $app) {
        $id = count($t['payment_cfg']) + 1;
        $t['payment_cfg'][(string)$id] = array('id' => $id, 'custom_name' => $app->name, 'pay_type' => substr($ident, 4),
            'disabled' => 'true', 'config' => '');
        return $id;
    });
    echo json_encode(array('id' => $id, 'name' => $app->name), JSON_UNESCAPED_UNICODE);
} elseif ($_GET['act'] === 'detail') {
    $cfg = $oPay->getPaymentById($_GET['id']);
    $plugin = $oPay->loadMethod($cfg['pay_type']);
    echo json_encode(array('fields' => $plugin->getfields(), 'name' => $plugin->name), JSON_UNESCAPED_UNICODE);
} elseif ($_GET['act'] === 'savePayment') {
    $msg = '';
    $oPay->updatePay($_POST, $msg);
    echo json_encode(array('msg' => $msg), JSON_UNESCAPED_UNICODE);
}
