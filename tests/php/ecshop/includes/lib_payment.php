<?php
/*
 * Harness of ecshop 2.7.3 `includes/lib_payment.php`: return_url(), get_payment(), check_money()
 * and order_paid(), with their real behaviour:
 *  - get_payment($code): the enabled payment row with its serialized pay_config unserialize()d
 *    into name => value entries;
 *  - check_money($log_id, $money): loose `==` of the amount against pay_log.order_amount;
 *  - order_paid($log_id, $pay_status): reads the pay_log row, and when is_paid == 0 sets is_paid = 1
 *    in a later statement, then marks the order paid (PAY_ORDER: order_status, pay_status,
 *    pay_time, money_paid = order_amount, order_amount = 0; the order_action note) and ships its
 *    virtual cards (lib_common.php get_virtual_goods() + virtual_goods_ship(), which assigns the
 *    cards to the template as `virtual_card`), or credits the balance top-up (PAY_SURPLUS, guarded
 *    only by a read of user_account.is_paid). Between the read and the writes nothing is locked:
 *    two requests can both pass. RACE_WINDOW_MS widens each read-then-write gap (pay_log, then
 *    user_account) so the tests see what a busy MySQL would do. The real function only runs
 *    UPDATEs (and INSERT ... SELECT) on what it finds, and so does this one: an order that is not
 *    there (deleted by the admin) is not made up — its UPDATE order_info matches nothing and
 *    order_action()'s INSERT ... SELECT FROM order_info inserts nothing; a top-up whose
 *    user_account row is not there (cancelled, deleted) passes the `is_paid = 1` check, its
 *    UPDATE matches nothing, `SELECT user_id, amount` gives no row, and log_account_change('',
 *    '', …) inserts an account_log row of user 0 and 0.00 (MySQL's '' in those int and decimal
 *    columns, sql_mode '') and updates no user; a top-up already paid (credited by the admin by
 *    hand, admin/user_account.php act=action) is skipped. Either way the pay_log row is paid;
 *  - order_paid() on a row that is already paid (the `else` branch of lib_payment.php
 *    order_paid(), lines 242-289 of 2.7.3): nothing is written; the virtual goods already shipped
 *    (get_virtual_goods($pay_log['order_id'], true)) are shown again — within 12 hours of the
 *    order's pay_time each virtual card goods' cards (virtual_card_result()) are assigned to the
 *    template as `virtual_card`, later $_LANG['please_view_order_detail'] is appended to
 *    $_LANG['pay_success'] — and goods still unshipped append $_LANG['virtual_goods_ship_fail'].
 *    This is what a payment module's respond() gets when the notify paid the order first (stock
 *    alipay.php's respond() calls order_paid() on every return).
 * Written for the tests from the functions' behaviour; no ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

function return_url($code)
{
    return $GLOBALS['ecs']->url() . 'respond.php?code=' . $code;
}

function get_payment($code)
{
    $t = hdb_read();
    if (!isset($t['payment'][$code]) || $t['payment'][$code]['enabled'] != 1) {
        return false;
    }
    $payment = $t['payment'][$code];
    $config_list = unserialize($payment['pay_config']);
    foreach ($config_list as $config) {
        $payment[$config['name']] = $config['value'];
    }
    return $payment;
}

function check_money($log_id, $money)
{
    if (!is_numeric($log_id)) {
        return false;
    }
    $t = hdb_read();
    $amount = isset($t['pay_log'][$log_id]) ? $t['pay_log'][$log_id]['order_amount'] : null;
    return $money == $amount;
}

function order_paid($log_id, $pay_status = PS_PAYED, $note = '')
{
    $log_id = intval($log_id);
    if ($log_id <= 0) {
        return;
    }
    $t = hdb_read();
    $pay_log = isset($t['pay_log'][$log_id]) ? $t['pay_log'][$log_id] : null;
    if (!$pay_log || $pay_log['is_paid'] != 0) {
        order_paid_before($pay_log);
        return;
    }
    harness_race_window();
    hdb_tx(function (&$t) use ($log_id) { $t['pay_log'][$log_id]['is_paid'] = 1; });
    if ($pay_log['order_type'] == PAY_ORDER) {
        // SELECT order_id, order_sn, … FROM order_info WHERE order_id = '$pay_log[order_id]'
        $t = hdb_read();
        $order = isset($t['order_info'][$pay_log['order_id']]) ? $t['order_info'][$pay_log['order_id']] : false;
        $order_id = $order ? $order['order_id'] : null;
        $order_sn = $order ? $order['order_sn'] : null;
        // UPDATE order_info SET … WHERE order_id = '$order_id': no row, no change. Through
        // cls_mysql, whose error report ends the request (a statement the test made fail).
        $GLOBALS['db']->check('UPDATE ' . $GLOBALS['ecs']->table('order_info') . " SET order_status = '" . OS_CONFIRMED
            . "', confirm_time = '" . time() . "', pay_status = '$pay_status', pay_time = '" . time()
            . "', money_paid = order_amount, order_amount = 0 WHERE order_id = '$order_id'");
        hdb_tx(function (&$t) use ($order_id, $pay_status) {
            if ($order_id === null || !isset($t['order_info'][$order_id])) {
                return;
            }
            $o = &$t['order_info'][$order_id];
            $o['order_status'] = OS_CONFIRMED;
            $o['pay_status'] = $pay_status;
            $o['pay_time'] = time();
            $o['money_paid'] = $o['order_amount'];
            $o['order_amount'] = '0.00';
        });
        order_action($order_sn, OS_CONFIRMED, 0, $pay_status, $note, 'buyer');
        $virtual_goods = get_virtual_goods($order_id);
        if (!empty($virtual_goods)) {
            $msg = '';
            if (!virtual_goods_ship($virtual_goods, $msg, $order_sn, true)) {
                $GLOBALS['_LANG']['pay_success'] .= '<div style="color:red;">' . $msg . '</div>' . $GLOBALS['_LANG']['virtual_goods_ship_fail'];
            }
        }
    } elseif ($pay_log['order_type'] == PAY_SURPLUS) {
        // SELECT id FROM user_account WHERE id = '$pay_log[order_id]' AND is_paid = 1 LIMIT 1
        $t = hdb_read();
        $id = $pay_log['order_id'];
        $paid = isset($t['user_account'][$id]) && $t['user_account'][$id]['is_paid'] == 1;
        if (!$paid) {
            harness_race_window();
            // UPDATE user_account SET paid_time = …, is_paid = 1 WHERE id = … LIMIT 1
            hdb_tx(function (&$t) use ($id) {
                if (isset($t['user_account'][$id])) {
                    $t['user_account'][$id]['is_paid'] = 1;
                    $t['user_account'][$id]['paid_time'] = time();
                }
            });
            // SELECT user_id, amount FROM user_account WHERE id = …: false when there is none.
            $t = hdb_read();
            $arr = isset($t['user_account'][$id]) ? $t['user_account'][$id] : false;
            log_account_change($arr ? $arr['user_id'] : '', $arr ? $arr['amount'] : '', 0, 0, 0, 'surplus_type_0', 0);
        }
    }
}

/**
 * order_paid()'s `else` branch (a missing or already paid pay_log row): no write; the virtual
 * goods shipped for $pay_log['order_id'] shown again (whatever the row's order_type: the real
 * branch does not look at it), the unshipped ones reported.
 */
function order_paid_before($pay_log)
{
    $order_id = $pay_log ? $pay_log['order_id'] : '';
    $shipped = get_virtual_goods($order_id, true);
    if (!empty($shipped)) {
        $msg = '';
        $t = hdb_read();
        $row = isset($t['order_info'][$order_id]) ? $t['order_info'][$order_id] : array('pay_time' => 0, 'order_sn' => '');
        $since = time() - (isset($row['pay_time']) ? (int)$row['pay_time'] : 0);
        if ($since >= 0 && $since < 3600 * 12) {
            $virtual_card = array();
            foreach ($shipped as $code => $goods_list) {
                if ($code == 'virtual_card') {
                    foreach ($goods_list as $goods) {
                        if ($info = virtual_card_result($row['order_sn'], $goods)) {
                            $virtual_card[] = array('goods_id' => $goods['goods_id'], 'goods_name' => $goods['goods_name'], 'info' => $info);
                        }
                    }
                    $GLOBALS['smarty']->assign('virtual_card', $virtual_card);
                }
            }
        } else {
            $msg = '<div>' . $GLOBALS['_LANG']['please_view_order_detail'] . '</div>';
        }
        $GLOBALS['_LANG']['pay_success'] .= $msg;
    }
    $unshipped = get_virtual_goods($order_id, false);
    if (!empty($unshipped)) {
        $GLOBALS['_LANG']['pay_success'] .= '<br />' . $GLOBALS['_LANG']['virtual_goods_ship_fail'];
    }
}

function harness_race_window()
{
    $window = (int)getenv('RACE_WINDOW_MS');
    if ($window > 0) {
        usleep($window * 1000);
    }
}
