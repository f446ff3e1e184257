<?php
/* Harness of ecshop 2.7.3 `languages/zh_tw/common.php`: the entries respond.php and init.php show. */
$_LANG['pay_not_exist'] = '此支付方式不存在或者參數錯誤！';
$_LANG['pay_disabled'] = '此支付方式還沒有被啟用！';
$_LANG['pay_success'] = '您此次的支付操作已成功！';
$_LANG['pay_fail'] = '支付操作失敗，請返回重試！';
$_LANG['shop_closed'] = '本店盤點中，請您稍後再來...';
