<?php
/*
 * Harness of ecshop 2.7.3 `mobile/order.php?act=done` (checkout on a phone): the order is stored,
 * then payment_info($order['pay_id']), include_once('includes/modules/payment/<pay_code>.php')
 * (relative: found through the include path), `new $payment['pay_code']`,
 * `$order['log_id'] = insert_pay_log($new_order_id, $order['order_amount'], PAY_ORDER)` and
 * `$pay_online = $pay_obj->get_code($order, unserialize_config($payment['pay_config']))`, assigned
 * to the template; then mobile/templates/order_done.html is shown. That template prints $tips but
 * not $pay_online: the pay button appears only once the template prints it (the README's step).
 * The template engine is reduced to replacing {$tips} and {$pay_online}. The order rows come from
 * the test (?order_id=). Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(__FILE__) . '/includes/init.php');
require(ROOT_PATH . 'includes/lib_order.php');
require(ROOT_PATH . 'includes/lib_payment.php');

$t = hdb_read();
$order = $t['order_info'][intval($_GET['order_id'])];
$pay_online = '';
if ($order['order_amount'] > 0) {
    $payment = payment_info($order['pay_id']);
    include_once('includes/modules/payment/' . $payment['pay_code'] . '.php');
    $pay_obj = new $payment['pay_code'];
    $order['log_id'] = insert_pay_log($order['order_id'], $order['order_amount'], PAY_ORDER);
    $pay_online = $pay_obj->get_code($order, unserialize_config($payment['pay_config']));
}
$tips = 'order submitted';
$page = file_get_contents(ROOT_PATH . 'mobile/templates/order_done.html');
$page = str_replace(array('{$tips}', '{$pay_online}'), array($tips, $pay_online), $page);
header('Content-type: text/html; charset=' . EC_CHARSET);
echo '<div id="log_id">' . (isset($order['log_id']) ? $order['log_id'] : '') . '</div>' . $page;
