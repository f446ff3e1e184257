<?php
/*
 * Harness of ShopEx 4.8.5's stock payment-app dispatcher, `plugins/app/pay_alipay/paymentPlugin.php`
 * (function payCallBack, identical in every stock payment app): it requires plugins/loader.php,
 * splits basename(PHP_SELF) on '_' and takes the part before the first '.' of the second piece as
 * the gateway id (pay_payhost_alipay.php -> "payhost", so an ident with '_' breaks); for
 * /^pay_([^.]+)\.server\.php$/ it requires 'pay_<id>.server.php' and calls
 * ->pay_<ident>_callback($return, $paymentId, $money, $message, $tradeno), then setPayStatus();
 * otherwise it requires 'pay_<id>.php', calls ->callback(...) and progress(). Always HTTP 200.
 * The tests copy this file over the app's own paymentPlugin.php to run the app under it.
 * Written for the tests; no ShopEx code.
 */
function harness_stock_dispatch($return)
{
    require(dirname(__FILE__) . '/../../loader.php');
    $oPay = $system->loadModel('trading/payment');
    $file = basename($_SERVER['PHP_SELF']);
    $pieces = explode('_', $file);
    $gateWayId = explode('.', $pieces[1]);
    $gateWayId = $gateWayId[0];
    $serverCall = preg_match('/^pay\_([^\.]+)\.server\.php$/i', $file, $matches) ? $matches[1] : false;
    $paymentId = $money = $message = $tradeno = null;
    if ($serverCall) {
        require('pay_' . $gateWayId . '.server.php');
        $func_name = 'pay_' . $serverCall . '_callback';
        $className = 'pay_' . $serverCall;
        $o = new $className($system);
        $status = $o->$func_name($return, $paymentId, $money, $message, $tradeno);
        $info = array('money' => $money, 'memo' => $message, 'trade_no' => $tradeno);
        $oPay->setPayStatus($paymentId, $status, $info);
    } else {
        require('pay_' . $gateWayId . '.php');
        $className = 'pay_' . $gateWayId;
        $o = new $className($system);
        $status = $o->callback($return, $paymentId, $money, $message, $tradeno);
        $oPay->progress($paymentId, $status, array('money' => $money, 'memo' => $message, 'trade_no' => $tradeno));
    }
}
harness_stock_dispatch(array_merge($_GET, $_POST));
exit();
