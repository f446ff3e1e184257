<?php
/*
 * Harness of ecshop 2.7.3 `includes/lib_order.php` (unserialize_config(), payment_info()) and of
 * `includes/lib_clips.php` insert_pay_log() / get_paylog_id() and `includes/lib_common.php`
 * order_action() / log_account_change(), over the harness database. order_action($order_sn,
 * $order_status, $shipping_status, $pay_status, $note, $username) inserts an order_action row of
 * the order with that order_sn; the note goes into the SQL string as it is given (the caller
 * escapes it), so MySQL's unescaping is emulated with stripslashes(). Written for the tests; no
 * ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

/** unserialize_config(): the saved array(array(name, type, value), ...) as name => value. */
function unserialize_config($cfg)
{
    $config = array();
    if (is_string($cfg) && ($arr = unserialize($cfg)) !== false) {
        foreach ($arr as $val) {
            $config[$val['name']] = $val['value'];
        }
    }
    return $config;
}

/** payment_info($pay_id): the enabled payment row. */
function payment_info($pay_id)
{
    $t = hdb_read();
    foreach ($t['payment'] as $p) {
        if ((string)$p['pay_id'] === (string)$pay_id && $p['enabled'] == 1) {
            return $p;
        }
    }
    return false;
}

/** insert_pay_log($id, $amount, $type, $is_paid): a new pay_log row; its log_id. */
function insert_pay_log($id, $amount, $type = PAY_SURPLUS, $is_paid = 0)
{
    return hdb_tx(function (&$t) use ($id, $amount, $type, $is_paid) {
        $log_id = $t['next_log_id']++;
        $t['pay_log'][$log_id] = array('log_id' => $log_id, 'order_id' => (int)$id,
            'order_amount' => number_format((float)$amount, 2, '.', ''), 'order_type' => $type, 'is_paid' => $is_paid);
        return $log_id;
    });
}

function order_action($order_sn, $order_status, $shipping_status, $pay_status, $note = '', $username = null)
{
    hdb_tx(function (&$t) use ($order_sn, $order_status, $shipping_status, $pay_status, $note, $username) {
        $order_id = null;
        foreach ($t['order_info'] as $o) {
            if ((string)$o['order_sn'] === (string)$order_sn) {
                $order_id = $o['order_id'];
            }
        }
        $t['order_action'][] = array('order_id' => $order_id, 'order_sn' => $order_sn, 'order_status' => $order_status,
            'shipping_status' => $shipping_status, 'pay_status' => $pay_status, 'action_note' => stripslashes((string)$note),
            'action_user' => $username);
    });
}

/** lib_clips.php get_paylog_id($surplus_id, $pay_type): the order's unpaid pay_log row ('' when none). */
function get_paylog_id($surplus_id, $pay_type = PAY_SURPLUS)
{
    return $GLOBALS['db']->getOne('SELECT log_id FROM' . $GLOBALS['ecs']->table('pay_log') .
        " WHERE order_id = '$surplus_id' AND order_type = '$pay_type' AND is_paid = 0");
}

/** log_account_change(): adds to users.user_money and writes account_log. */
function log_account_change($user_id, $user_money = 0, $frozen_money = 0, $rank_points = 0, $pay_points = 0, $change_desc = '', $change_type = 99)
{
    hdb_tx(function (&$t) use ($user_id, $user_money, $change_desc) {
        $t['users'][$user_id]['user_money'] = number_format((float)$t['users'][$user_id]['user_money'] + (float)$user_money, 2, '.', '');
        $t['account_log'][] = array('user_id' => $user_id, 'user_money' => $user_money, 'change_desc' => $change_desc);
    });
}
