<?php
/* Harness of ecshop 2.7.3 `languages/zh_cn/common.php`: the entries respond.php (with order_paid()'s) and init.php show. */
$_LANG['pay_not_exist'] = '此支付方式不存在或者参数错误！';
$_LANG['pay_disabled'] = '此支付方式还没有被启用！';
$_LANG['pay_success'] = '您此次的支付操作已成功！';
$_LANG['pay_fail'] = '支付操作失败，请返回重试！';
$_LANG['shop_closed'] = '本店盘点中，请您稍后再来...';
$_LANG['please_view_order_detail'] = '商品已发货，详情请到用户中心订单详情查看';
$_LANG['virtual_goods_ship_fail'] = '自动发货失败，请尽快联系商家重新发货';
$_LANG['card_sn'] = '卡片序号';
$_LANG['card_password'] = '卡片密码';
$_LANG['end_date'] = '截至日期';
