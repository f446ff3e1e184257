<?php
/*
 * Harness of ecshop 2.7.3 `languages/zh_tw/admin/payment.php` (loaded by admin/includes/init.php for
 * admin/payment.php): the entries admin/templates/payment_edit.htm and the edit action show.
 */
$_LANG['payment_name'] = '支付方式名稱';
$_LANG['payment_desc'] = '支付方式描述';
$_LANG['payment_is_cod'] = '貨到付款？';
$_LANG['payment_is_online'] = '在線支付？';
$_LANG['pay_fee'] = '支付手續費';
$_LANG['edit_ok'] = '編輯成功';
$_LANG['decide_by_ship'] = '配送決定';
$_LANG['payment_not_available'] = '該支付外掛程式不存在或尚未安裝';
