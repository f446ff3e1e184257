<?php
/* Test-only (no ShopEx counterpart): the harness database as JSON; ?db_down=1|0 switches failing
   writes, ?deprecated=1|0 PHP's E_DEPRECATED messages while ShopEx's core loads, ?payed_fails=1|0
   mdl_order::payed() failing (the order's update refused), ?order=<id>&status=…|final_amount=…|
   disabled=true an order changed in the admin (cancelled, its total edited, moved to the recycle
   bin), &mark_text=… the owner's 订单备注 form saved (ctl.order.php saveMarkText() →
   mdl_order::saveMarkText(): the whole remark replaced by the form's text), ?remove_order=<id> the
   recycle bin emptied (mdl_order::toRemove(): the order, its log and its payments deleted),
   ?remove_member=<id> a member deleted (sdb_members), ?locks_busy=1|0 every MySQL named lock held
   by another connection (GET_LOCK answers 0). */
require(dirname(__FILE__) . '/core/include_v5/harness_db.php');
if (isset($_GET['db_down'])) {
    $v = (int)$_GET['db_down'];
    hdb_tx(function (&$t) use ($v) { $t['db_down'] = $v; });
}
if (isset($_GET['deprecated'])) {
    $v = (int)$_GET['deprecated'];
    hdb_tx(function (&$t) use ($v) { $t['harness_deprecated'] = $v; });
}
if (isset($_GET['payed_fails'])) {
    $v = (int)$_GET['payed_fails'];
    hdb_tx(function (&$t) use ($v) { $t['payed_fails'] = $v; });
}
if (isset($_GET['order'])) {
    // ?order=<id>&status=dead (mdl_order::toCancel()), &final_amount=8.00 (the owner edits the
    // order's total in the admin) or &disabled=true (删除: the admin's recycle bin,
    // objectPage::recycle() → shopObject::recycle(); disabled=false restores it, active()).
    $id = (string)$_GET['order'];
    $set = array_intersect_key($_GET, array('status' => 1, 'final_amount' => 1, 'disabled' => 1, 'mark_text' => 1));
    hdb_tx(function (&$t) use ($id, $set) {
        foreach ($set as $k => $v) {
            $t['orders'][$id][$k] = (string)$v;
        }
    });
}
if (isset($_GET['remove_order'])) {
    $id = (string)$_GET['remove_order'];
    hdb_tx(function (&$t) use ($id) {
        unset($t['orders'][$id]);
        foreach (array('order_log', 'payments') as $table) {
            foreach (isset($t[$table]) ? $t[$table] : array() as $k => $row) {
                if ((string)$row['order_id'] === $id) {
                    unset($t[$table][$k]);
                }
            }
        }
        if (isset($t['order_log'])) {
            $t['order_log'] = array_values($t['order_log']);
        }
    });
}
if (isset($_GET['locks_busy'])) {
    $v = (int)$_GET['locks_busy'];
    hdb_tx(function (&$t) use ($v) { $t['locks_busy'] = $v; });
}
if (isset($_GET['remove_member'])) {
    $id = (string)$_GET['remove_member'];
    hdb_tx(function (&$t) use ($id) { unset($t['members'][$id]); });
}
header('Content-Type: application/json');
echo json_encode(hdb_read(), JSON_UNESCAPED_UNICODE);
