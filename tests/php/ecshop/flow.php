<?php
// flow.php?step=done: the order page renders the module's pay button.
require __DIR__ . '/lib.php';
load_module();
$s = state_load();
$log_id = $_GET['log_id'];
$order = array(
    'order_sn' => $s['pay_log'][$log_id]['order_sn'],
    'log_id' => $log_id,
    'order_amount' => $s['pay_log'][$log_id]['order_amount'],
);
$module = new payhost_alipay();
echo $module->get_code($order, get_payment('payhost_alipay'));
