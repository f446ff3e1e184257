<?php
/*
 * Harness of ecshop 2.7.3 `includes/lib_order.php` (unserialize_config(), payment_info(),
 * order_action()) and of `includes/lib_clips.php` insert_pay_log() / lib_common.php
 * log_account_change(), over the harness database. Written for the tests; no ecshop code.
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
    hdb_tx(function (&$t) use ($order_sn, $order_status, $pay_status) {
        $t['order_action'][] = array('order_sn' => $order_sn, 'order_status' => $order_status, 'pay_status' => $pay_status);
    });
}

/** log_account_change(): adds to users.user_money and writes account_log. */
function log_account_change($user_id, $user_money = 0, $frozen_money = 0, $rank_points = 0, $pay_points = 0, $change_desc = '', $change_type = 99)
{
    hdb_tx(function (&$t) use ($user_id, $user_money, $change_desc) {
        $t['users'][$user_id]['user_money'] = number_format((float)$t['users'][$user_id]['user_money'] + (float)$user_money, 2, '.', '');
        $t['account_log'][] = array('user_id' => $user_id, 'user_money' => $user_money, 'change_desc' => $change_desc);
    });
}
