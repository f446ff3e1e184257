<?php
/**
 * ShopEx 4.8.5 payment app dispatcher of pay_payhost (each payment app ships one under this name).
 *
 * The plugin's URLs are plugins/app/pay_<ident>/pay_<ident>.php (the buyer's return) and
 * pay_<ident>.server.php (the server notify). Requested directly, their first statement,
 * require_once('paymentPlugin.php'), finds this file next to them; it loads ShopEx
 * (plugins/loader.php, which puts ShopEx's include directory first on the include path), includes
 * the requested file again (its require_once now loads ShopEx's paymentPlugin base class) and:
 *  - server notify: calls $plugin->pay_<ident>_callback(...) and setPayStatus();
 *  - return: calls $plugin->callback(...) and progress(), which records the status and shows the
 *    payment centre's result page.
 * pay_payhost's callbacks answer and end the request themselves when they must (a signature that
 * does not verify, a pending payment, a webhook to acknowledge or to refuse).
 */
function pay_payhost_dispatch($return)
{
    require(dirname(__FILE__) . '/../../loader.php');
    $oPay = $system->loadModel('trading/payment');
    $file = basename($_SERVER['PHP_SELF']);
    if (!preg_match('/^pay_([a-z0-9]+)(\.server)?\.php$/', $file, $m)) {
        header('HTTP/1.1 404 Not Found', true, 404);
        exit('no such payment plugin');
    }
    $ident = $m[1];
    $paymentId = null;
    $money = null;
    $message = null;
    $tradeno = null;
    $className = 'pay_' . $ident;
    if (isset($m[2]) && $m[2] === '.server') {
        require(dirname(__FILE__) . '/pay_' . $ident . '.server.php');
        $o = new $className($system);
        $method = 'pay_' . $ident . '_callback';
        $status = $o->$method($return, $paymentId, $money, $message, $tradeno);
        $info = array('money' => $money, 'memo' => $message, 'trade_no' => $tradeno);
        $oPay->setPayStatus($paymentId, $status, $info);
    } else {
        require(dirname(__FILE__) . '/pay_' . $ident . '.php');
        $o = new $className($system);
        $status = $o->callback($return, $paymentId, $money, $message, $tradeno);
        $oPay->progress($paymentId, $status, array('money' => $money, 'memo' => $message, 'trade_no' => $tradeno));
    }
}
pay_payhost_dispatch(array_merge($_GET, $_POST));
exit();
