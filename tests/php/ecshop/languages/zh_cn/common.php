<?php
/* Harness of ecshop 2.7.3 `languages/zh_cn/common.php`: the entries respond.php and init.php show. */
$_LANG['pay_not_exist'] = '此支付方式不存在或者参数错误！';
$_LANG['pay_disabled'] = '此支付方式还没有被启用！';
$_LANG['pay_success'] = '您此次的支付操作已成功！';
$_LANG['pay_fail'] = '支付操作失败，请返回重试！';
$_LANG['shop_closed'] = '本店盘点中，请您稍后再来...';
