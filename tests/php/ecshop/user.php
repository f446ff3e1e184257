<?php
/*
 * Harness of ecshop 2.7.3 `user.php`:
 *  - act=order_detail&order_id=N (the buyer's order page, where the cashier's cancel link brings
 *    the buyer back): the order's order_sn and pay_status, and — as includes/lib_transaction.php
 *    get_order_detail() does for an unpaid (PS_UNPAYED) order — the pay button:
 *    payment_info($order['pay_id']), `$order['log_id'] = get_paylog_id($order['order_id'],
 *    PAY_ORDER)` (the unpaid pay_log row made at checkout, the same one every time), the module
 *    included and `get_code($order, unserialize_config($payment_info['pay_config']))`;
 *  - act=account_log (the balance page);
 *  - act=act_edit_payment&order_id=N&order_amount=X (the buyer picks another payment method on an
 *    unpaid order): as the real one, one `UPDATE order_info SET pay_id, pay_name, pay_fee,
 *    order_amount` (the new method's fee in the amount; here the test gives the amount) and no
 *    change to the order's pay_log row;
 *  - act=act_account (a balance top-up, 预付款): `$amount = floatval($_POST['amount'])`, a
 *    user_account row (lib_clips.php insert_user_account(): is_paid 0, process_type 0, the
 *    method's pay_name, empty admin_note and user_note), an $order with order_sn = rec_id,
 *    user_name, surplus_amount = $amount and `order_amount = $amount + pay_fee($payment_id,
 *    $amount, 0)` (lib_order.php pay_fee(): the method's fee), `insert_pay_log($surplus['rec_id'],
 *    $order['order_amount'], PAY_SURPLUS, 0)` as log_id (no order_id), and get_code($order,
 *    unserialize_config($payment_info['pay_config'])). Here ?user_id=&amount=&payment_id= (the
 *    real one takes the user from the session and the rest from the POSTed form);
 *  - act=cancel&id=N (the buyer's 取消 of an unpaid top-up on the account_log page):
 *    lib_clips.php del_user_account($id, $user_id) deletes the user_account row (is_paid 0 only)
 *    and keeps its pay_log row, then back to act=account_log. Here ?user_id= stands for the
 *    session's user.
 * No ecshop code.
 */
define('IN_ECS', true);
require(dirname(__FILE__) . '/includes/init.php');
require(ROOT_PATH . 'includes/lib_payment.php');
require(ROOT_PATH . 'includes/lib_order.php');

$act = isset($_GET['act']) ? $_GET['act'] : '';
if ($act == 'order_detail' || $act == 'account_log') {
    $t = hdb_read();
    $o = $act == 'order_detail' ? $t['order_info'][intval($_GET['order_id'])] : null;
    $pay_online = '';
    // get_order_detail(): the button of any unpaid, unconfirmed or confirmed order, whatever its
    // amount (0 when it was paid from the balance and then set back to unpaid in the admin).
    $status = ($o && isset($o['order_status'])) ? (int)$o['order_status'] : OS_UNCONFIRMED;
    if ($o && $o['pay_status'] == PS_UNPAYED && ($status == OS_UNCONFIRMED || $status == OS_CONFIRMED)) {
        $payment_info = payment_info($o['pay_id']);
        if ($payment_info !== false) {
            $o['log_id'] = get_paylog_id($o['order_id'], PAY_ORDER);
            include_once(ROOT_PATH . 'includes/modules/payment/' . $payment_info['pay_code'] . '.php');
            $pay_obj = new $payment_info['pay_code'];
            $pay_online = $pay_obj->get_code($o, unserialize_config($payment_info['pay_config']));
        }
    }
    header('Content-type: text/html; charset=' . EC_CHARSET);
    echo '<html><body><div id="' . $act . '">' . ($o ? $o['order_sn'] . ' pay_status=' . $o['pay_status'] : 'account') . '</div>'
        . '<div id="pay_online">' . $pay_online . '</div></body></html>';
    exit;
}

if ($act == 'act_edit_payment') {
    $order_id = intval($_GET['order_id']);
    $amount = number_format((float)$_GET['order_amount'], 2, '.', '');
    hdb_tx(function (&$t) use ($order_id, $amount) {
        $t['order_info'][$order_id]['order_amount'] = $amount;
    });
    header('Location: user.php?act=order_detail&order_id=' . $order_id);
    exit;
}

if ($act == 'cancel') {
    $id = isset($_GET['id']) ? intval($_GET['id']) : 0;
    $user_id = isset($_GET['user_id']) ? intval($_GET['user_id']) : 0;
    if ($id > 0 && $user_id > 0) {
        del_user_account($id, $user_id);
    }
    header('Location: user.php?act=account_log');
    exit;
}

$user_id = intval($_GET['user_id']);
$amount = isset($_GET['amount']) ? floatval($_GET['amount']) : 0;
$payment_id = intval($_GET['payment_id']);
$payment_info = payment_info($payment_id);
$rec_id = hdb_tx(function (&$t) use ($user_id, $amount, $payment_info) {
    $id = $t['next_account_id']++;
    $t['user_account'][$id] = array('id' => $id, 'user_id' => $user_id, 'amount' => number_format($amount, 2, '.', ''),
        'admin_note' => '', 'user_note' => '', 'process_type' => 0, 'payment' => $payment_info['pay_name'], 'is_paid' => 0);
    return $id;
});
$order = array('order_sn' => $rec_id, 'user_name' => 'buyer', 'surplus_amount' => $amount);
$payment_info['pay_fee'] = pay_fee($payment_id, $order['surplus_amount'], 0);
$order['order_amount'] = $amount + $payment_info['pay_fee'];
$order['log_id'] = insert_pay_log($rec_id, $order['order_amount'], PAY_SURPLUS, 0);
include_once(ROOT_PATH . 'includes/modules/payment/' . $payment_info['pay_code'] . '.php');
$pay_obj = new $payment_info['pay_code'];
$pay_button = $pay_obj->get_code($order, unserialize_config($payment_info['pay_config']));
header('Content-type: text/html; charset=' . EC_CHARSET);
echo '<html><body><div id="log_id">' . $order['log_id'] . '</div><div id="pay_online">' . $pay_button . '</div></body></html>';
