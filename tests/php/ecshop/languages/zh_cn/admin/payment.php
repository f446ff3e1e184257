<?php
/*
 * Harness of ecshop 2.7.3 `languages/zh_cn/admin/payment.php` (loaded by admin/includes/init.php for
 * admin/payment.php): the entries admin/templates/payment_edit.htm and the edit action show.
 */
$_LANG['payment_name'] = '支付方式名称';
$_LANG['payment_desc'] = '支付方式描述';
$_LANG['payment_is_cod'] = '货到付款？';
$_LANG['payment_is_online'] = '在线支付？';
$_LANG['pay_fee'] = '支付手续费';
$_LANG['edit_ok'] = '编辑成功';
$_LANG['decide_by_ship'] = '配送决定';
$_LANG['payment_not_available'] = '该支付插件不存在或尚未安装';
