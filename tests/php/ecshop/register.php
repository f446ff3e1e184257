<?php
// The admin's payment list: ecshop includes the module with $set_modules = true.
require __DIR__ . '/lib.php';
$set_modules = true;
$modules = array();
include ROOT_PATH . 'includes/modules/payment/payhost_alipay.php';
header('Content-Type: application/json');
echo json_encode(array('modules' => $modules, 'lang' => $GLOBALS['_LANG']), JSON_UNESCAPED_UNICODE);
