<?php
/*
 * Harness of ecshop 2.7.3 `flow.php?step=done` (the end of checkout): after the order is stored,
 * `$order['log_id'] = insert_pay_log($new_order_id, $order['order_amount'], PAY_ORDER)`, then
 * payment_info($order['pay_id']), include_once('includes/modules/payment/<pay_code>.php'),
 * `new $payment['pay_code']` and `get_code($order, unserialize_config($payment['pay_config']))`,
 * shown as pay_online. The order rows come from the test (?order_id=). No ecshop code.
 */
define('IN_ECS', true);
require(dirname(__FILE__) . '/includes/init.php');
require(ROOT_PATH . 'includes/lib_payment.php');
require(ROOT_PATH . 'includes/lib_order.php');

$t = hdb_read();
$order = $t['order_info'][intval($_GET['order_id'])];
$order['log_id'] = insert_pay_log($order['order_id'], $order['order_amount'], PAY_ORDER);
$pay_online = '';
if ($order['order_amount'] > 0) {
    $payment = payment_info($order['pay_id']);
    include_once('includes/modules/payment/' . $payment['pay_code'] . '.php');
    $pay_obj = new $payment['pay_code'];
    $pay_online = $pay_obj->get_code($order, unserialize_config($payment['pay_config']));
}
header('Content-type: text/html; charset=' . EC_CHARSET);
echo '<html><body><div id="log_id">' . $order['log_id'] . '</div><div id="pay_online">' . $pay_online . '</div></body></html>';
