<?php
/*
 * Harness of ecshop 2.7.3 `languages/zh_tw/admin/common.php` (loaded by admin/includes/init.php for
 * every admin page): the entries admin/templates/payment_edit.htm shows.
 */
$_LANG['yes'] = '是';
$_LANG['no'] = '否';
$_LANG['button_submit'] = ' 確定 ';
$_LANG['button_reset'] = ' 重置 ';
$_LANG['form_notice'] = '點擊此處查看提示資訊';
$_LANG['empty'] = '不能為空';
$_LANG['repeat'] = '已存在';
