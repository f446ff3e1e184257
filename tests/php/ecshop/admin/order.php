<?php
/*
 * Harness of ecshop 2.7.3 `admin/order.php`, the end of editing an unpaid order's goods, shipping
 * or fees (act=step_post): the order's new order_amount is saved (update_order()), then
 * update_pay_log($order_id): the order's unpaid pay_log row (order_type PAY_ORDER, is_paid 0)
 * keeps its log_id and takes the new amount (`UPDATE pay_log SET order_amount = … WHERE log_id =
 * …`); only when there is none is a new row inserted. Here: ?act=step_post&order_id=N&
 * order_amount=X. Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(dirname(__FILE__)) . '/includes/init.php');

if (isset($_GET['act']) && $_GET['act'] === 'step_post') {
    $order_id = intval($_GET['order_id']);
    $amount = number_format((float)$_GET['order_amount'], 2, '.', '');
    $log_id = hdb_tx(function (&$t) use ($order_id, $amount) {
        $t['order_info'][$order_id]['order_amount'] = $amount;
        foreach ($t['pay_log'] as $id => $row) {
            if ($row['order_id'] == $order_id && $row['order_type'] == PAY_ORDER && $row['is_paid'] == 0) {
                $t['pay_log'][$id]['order_amount'] = $amount;
                return $id;
            }
        }
        $id = $t['next_log_id']++;
        $t['pay_log'][$id] = array('log_id' => $id, 'order_id' => $order_id, 'order_amount' => $amount,
            'order_type' => PAY_ORDER, 'is_paid' => 0);
        return $id;
    });
    echo 'ok ' . $log_id;
} else {
    http_response_code(404);
}
