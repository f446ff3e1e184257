<?php
/*
 * Harness of ecshop 2.7.3 `includes/lib_payment.php`: return_url(), get_payment(), check_money()
 * and order_paid(), with their real behaviour:
 *  - get_payment($code): the enabled payment row with its serialized pay_config unserialize()d
 *    into name => value entries;
 *  - check_money($log_id, $money): loose `==` of the amount against pay_log.order_amount;
 *  - order_paid($log_id, $pay_status): reads the pay_log row, and when is_paid == 0 sets is_paid = 1
 *    in a later statement, then marks the order paid (PAY_ORDER) or credits the balance top-up
 *    (PAY_SURPLUS, guarded only by a read of user_account.is_paid). Between the read and the writes
 *    nothing is locked: two requests can both pass. RACE_WINDOW_MS widens each read-then-write gap
 *    (pay_log, then user_account) so the tests see what a busy MySQL would do.
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
        return;
    }
    harness_race_window();
    hdb_tx(function (&$t) use ($log_id) { $t['pay_log'][$log_id]['is_paid'] = 1; });
    if ($pay_log['order_type'] == PAY_ORDER) {
        $order_sn = hdb_tx(function (&$t) use ($pay_log, $pay_status) {
            $o = &$t['order_info'][$pay_log['order_id']];
            $o['order_status'] = OS_CONFIRMED;
            $o['pay_status'] = $pay_status;
            $o['money_paid'] = $o['order_amount'];
            $o['order_amount'] = '0.00';
            return $o['order_sn'];
        });
        order_action($order_sn, OS_CONFIRMED, 0, $pay_status, $note, 'buyer');
    } elseif ($pay_log['order_type'] == PAY_SURPLUS) {
        $t = hdb_read();
        $account = $t['user_account'][$pay_log['order_id']];
        if ($account['is_paid'] != 1) {
            harness_race_window();
            hdb_tx(function (&$t) use ($pay_log) { $t['user_account'][$pay_log['order_id']]['is_paid'] = 1; });
            log_account_change($account['user_id'], $account['amount'], 0, 0, 0, 'surplus_type_0');
        }
    }
}

function harness_race_window()
{
    $window = (int)getenv('RACE_WINDOW_MS');
    if ($window > 0) {
        usleep($window * 1000);
    }
}
