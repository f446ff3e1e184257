<?php
/* Harness of ecshop 2.7.3 `languages/zh_tw/common.php`: the entries respond.php (with order_paid()'s) and init.php show. */
$_LANG['pay_not_exist'] = '此支付方式不存在或者參數錯誤！';
$_LANG['pay_disabled'] = '此支付方式還沒有被啟用！';
$_LANG['pay_success'] = '您此次的支付操作已成功！';
$_LANG['pay_fail'] = '支付操作失敗，請返回重試！';
$_LANG['shop_closed'] = '本店盤點中，請您稍後再來...';
$_LANG['please_view_order_detail'] = '商品已發貨，詳情請到用戶中心訂單詳情查看';
$_LANG['virtual_goods_ship_fail'] = '自動發貨失敗，請盡快聯繫商家重新發貨';
$_LANG['card_sn'] = '卡片序號';
$_LANG['card_password'] = '卡片密碼';
$_LANG['end_date'] = '截至日期';
