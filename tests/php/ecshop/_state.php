<?php
/* Test-only (no ecshop counterpart): the harness database as JSON; ?shop_closed=1|0,
   ?deprecated=1|0 (PHP's E_DEPRECATED messages printed by init.php), ?order_status=<order_id>:<status>
   (an order cancelled or made invalid in the admin) and ?fail_sql=<text> (every
   statement containing the text fails as MySQL's errors do in cls_mysql; empty: none) switch the
   shop's state. */
define('IN_ECS', true);
require(dirname(__FILE__) . '/includes/cls_mysql.php');
if (isset($_GET['shop_closed'])) {
    $v = (int)$_GET['shop_closed'];
    hdb_tx(function (&$t) use ($v) { $t['shop_config']['shop_closed'] = $v; });
}
if (isset($_GET['deprecated'])) {
    $v = (int)$_GET['deprecated'];
    hdb_tx(function (&$t) use ($v) { $t['shop_config']['harness_deprecated'] = $v; });
}
if (isset($_GET['order_status'])) {
    // order_id:status, as admin/order.php's cancel (OS_CANCELED) or invalid (OS_INVALID) sets it.
    list($id, $status) = array_map('intval', explode(':', (string)$_GET['order_status'], 2));
    hdb_tx(function (&$t) use ($id, $status) { $t['order_info'][$id]['order_status'] = $status; });
}
if (isset($_GET['fail_sql'])) {
    $v = (string)$_GET['fail_sql'];
    hdb_tx(function (&$t) use ($v) { $t['shop_config']['harness_fail_sql'] = $v; });
}
header('Content-Type: application/json');
echo json_encode(hdb_read(), JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE);
