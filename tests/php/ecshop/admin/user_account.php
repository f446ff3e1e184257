<?php
/*
 * Harness of ecshop 2.7.3 `admin/user_account.php` (会员管理 → 充值和提现申请), the two ways an
 * admin ends a member's top-up (预付款, process_type 0) without its pay_log row:
 *  - act=remove&id=N (the list's 删除, an ajax call): `DELETE FROM user_account WHERE id = '$id'`,
 *    paid or not; the pay_log row stays (admin_log() of the removal left out);
 *  - act=action (the 审核 form, 到款审核: id, is_paid, admin_note; refused without an admin_note):
 *    only for a row whose is_paid is 0; with is_paid=1 on a top-up, update_user_account() (`UPDATE
 *    user_account SET admin_user, amount, paid_time, admin_note, is_paid = 1 WHERE id`) and
 *    log_account_change($account['user_id'], $amount, 0, 0, 0, $_LANG['surplus_type_0'],
 *    ACT_SAVING): the balance credited by hand, the pay_log row left unpaid; with is_paid=0 only
 *    the admin_note saved. (A withdrawal, process_type 1, is left out.)
 * Here the form's fields come as GET or POST. Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(dirname(__FILE__)) . '/includes/init.php');
require(ROOT_PATH . 'includes/lib_order.php');

$act = isset($_REQUEST['act']) ? $_REQUEST['act'] : '';
$id = isset($_REQUEST['id']) ? intval($_REQUEST['id']) : 0;
if ($act === 'remove') {
    hdb_tx(function (&$t) use ($id) { unset($t['user_account'][$id]); });
    echo 'ok';
} elseif ($act === 'action') {
    $is_paid = isset($_REQUEST['is_paid']) ? intval($_REQUEST['is_paid']) : 0;
    $admin_note = isset($_REQUEST['admin_note']) ? trim(stripslashes($_REQUEST['admin_note'])) : '';
    $t = hdb_read();
    if ($id == 0 || $admin_note === '' || !isset($t['user_account'][$id])) {
        header('Location: user_account.php?act=list');
        exit;
    }
    $account = $t['user_account'][$id];
    $process_type = isset($account['process_type']) ? (int)$account['process_type'] : 0;
    if ($account['is_paid'] == 0 && $process_type == 0) {
        hdb_tx(function (&$t) use ($id, $is_paid, $admin_note) {
            $t['user_account'][$id]['admin_user'] = 'admin';
            $t['user_account'][$id]['admin_note'] = $admin_note;
            if ($is_paid == 1) {
                $t['user_account'][$id]['paid_time'] = time();
                $t['user_account'][$id]['is_paid'] = 1;
            }
        });
        if ($is_paid == 1) {
            log_account_change($account['user_id'], $account['amount'], 0, 0, 0, 'surplus_type_0', 0);
        }
    }
    echo 'ok';
} else {
    http_response_code(404);
}
