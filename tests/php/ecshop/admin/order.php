<?php
/*
 * Harness of ecshop 2.7.3 `admin/order.php`, the end of editing an unpaid order's goods, shipping
 * or fees (act=step_post): the order's new order_amount is saved (update_order()), then
 * update_pay_log($order_id): the order's unpaid pay_log row (order_type PAY_ORDER, is_paid 0)
 * keeps its log_id and takes the new amount (`UPDATE pay_log SET order_amount = … WHERE log_id =
 * …`); only when there is none is a new row inserted. Here: ?act=step_post&order_id=N&
 * order_amount=X.
 *
 * Also the order page's 付款 and 设为未付款 buttons (act=operate, then operation 'pay' and
 * 'unpay'), which never touch pay_log:
 *  - operation=pay: `pay_status = PS_PAYED, pay_time = now, money_paid = money_paid +
 *    order_amount, order_amount = 0` (and OS_CONFIRMED), then order_action();
 *  - operation=unpay: `pay_status = PS_UNPAYED, pay_time = 0, money_paid = 0, order_amount =
 *    money_paid` (its unpaid amount back), then order_action(); a paid pay_log row stays paid,
 *    so get_paylog_id() finds none afterwards.
 * Here: ?act=operate&operation=pay|unpay&order_id=N.
 *
 * Also act=remove_order&id=N (the order list's 移除; operation 'remove' of act=operate does the
 * same): allowed only where operable_list() offers 'remove', a cancelled (OS_CANCELED) or invalid
 * (OS_INVALID) order, else "Hacking attempt"; then `DELETE FROM order_info`, `order_goods` and
 * `order_action WHERE order_id = …`. The order's pay_log row stays.
 *
 * And act=ajax_merge_order&from_order_sn=…&to_order_sn=… (订单 → 合并订单): lib_order.php
 * merge_order() (see there: a new order, both old orders and their pay_log rows deleted); "ok"
 * or the refusal. Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(dirname(__FILE__)) . '/includes/init.php');
require(ROOT_PATH . 'includes/lib_order.php');

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
} elseif (isset($_GET['act'], $_GET['operation']) && $_GET['act'] === 'operate'
    && in_array($_GET['operation'], array('pay', 'unpay'), true)) {
    $order_id = intval($_GET['order_id']);
    $pay = $_GET['operation'] === 'pay';
    $o = hdb_tx(function (&$t) use ($order_id, $pay) {
        $o = &$t['order_info'][$order_id];
        $paid = isset($o['money_paid']) ? (float)$o['money_paid'] : 0.0;
        if ($pay) {
            $o['order_status'] = OS_CONFIRMED;
            $o['pay_status'] = PS_PAYED;
            $o['pay_time'] = time();
            $o['money_paid'] = number_format($paid + (float)$o['order_amount'], 2, '.', '');
            $o['order_amount'] = '0.00';
        } else {
            $o['pay_status'] = 0;
            $o['pay_time'] = 0;
            $o['order_amount'] = number_format($paid, 2, '.', '');
            $o['money_paid'] = '0.00';
        }
        return $o;
    });
    order_action($o['order_sn'], $o['order_status'], 0, $o['pay_status'], '', 'admin');
    echo 'ok';
} elseif (isset($_GET['act']) && $_GET['act'] === 'remove_order') {
    $order_id = intval($_GET['id']);
    $t = hdb_read();
    $status = isset($t['order_info'][$order_id]['order_status']) ? (int)$t['order_info'][$order_id]['order_status'] : -1;
    if ($status != OS_CANCELED && $status != OS_INVALID) {
        echo 'Hacking attempt';
        exit;
    }
    hdb_tx(function (&$t) use ($order_id) {
        unset($t['order_info'][$order_id]);
        foreach (array('order_goods', 'order_action') as $table) {
            foreach ($t[$table] as $i => $row) {
                if (isset($row['order_id']) && $row['order_id'] == $order_id) {
                    unset($t[$table][$i]);
                }
            }
            $t[$table] = array_values($t[$table]);
        }
    });
    echo 'ok';
} elseif (isset($_GET['act']) && $_GET['act'] === 'ajax_merge_order') {
    $result = merge_order(stripslashes($_GET['from_order_sn']), stripslashes($_GET['to_order_sn']));
    echo $result === true ? 'ok' : $result;
} else {
    http_response_code(404);
}
