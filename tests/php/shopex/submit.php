<?php
require __DIR__ . '/lib.php';
$plugin = plugin();
$s = state_load();
$id = $_GET['payment_id'];
$fields = $plugin->toSubmit(array('M_OrderId' => $id, 'M_OrderNO' => $s['payments'][$id]['order_no'],
    'M_Amount' => $s['payments'][$id]['amount'], 'M_Remark' => '', 'M_Currency' => 'CNY'));
header('Content-Type: application/json');
echo json_encode(array('action' => $plugin->submitUrl, 'method' => $plugin->submitMethod, 'fields' => $fields,
    'fieldset' => $plugin->getfields()), JSON_UNESCAPED_UNICODE);
