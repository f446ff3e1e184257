<?php

$_LANG['payhost_alipay'] = '支付宝手机网站支付 (payhost)';
$_LANG['payhost_alipay_desc'] = '支付宝手机网站支付，由 payhost 处理签名、异步通知与验证。请先在服务器上运行 payhost。';
$_LANG['alipay_account'] = '支付宝帐户';
$_LANG['alipay_key'] = '交易安全校验码';
$_LANG['alipay_partner'] = '合作者身份ID';
$_LANG['alipay_mode'] = '收款模式';
$_LANG['alipay_mode_desc'] = 'B2C：款项进入上面的支付宝帐户；C2C：按供货商收款，每个供货商的支付宝帐户填在下一项';
$_LANG['alipay_mode_range']['b2c'] = 'B2C 单一卖家';
$_LANG['alipay_mode_range']['c2c'] = 'C2C 按供货商收款';
$_LANG['c2c_sellers'] = 'C2C 供货商收款帐户';
$_LANG['c2c_sellers_desc'] = '仅 C2C：供货商ID=支付宝帐户，多个用逗号分隔，例如 1=seller@example.com,2=13800000000；没有供货商的商品收入上面的支付宝帐户';
$_LANG['payhost_url'] = 'payhost 地址';
$_LANG['payhost_url_desc'] = '例如 http://127.0.0.1:8080';
$_LANG['payhost_api_token'] = 'payhost API 令牌（本商户专用）';
$_LANG['payhost_api_token_desc'] = '在 payhost 管理页面或用 payhost token create --merchant ecshop-合作者身份ID 创建的本商户 API 令牌；不要填写运营者令牌';
$_LANG['pay_button'] = '立即使用支付宝支付';
$_LANG['payhost_config_error'] = '支付宝设置有误：';
$_LANG['payhost_pay_error'] = '无法发起支付宝支付：';
$_LANG['payhost_already_paid'] = '该订单已支付。';
$_LANG['payhost_c2c_unmapped'] = '该订单的供货商没有设置支付宝收款帐户，请联系商家。';
$_LANG['payhost_c2c_mixed'] = '该订单包含多个供货商的商品，请按供货商分开下单后再付款。';
$_LANG['payhost_pending'] = '支付结果确认中，请稍候……页面会自动刷新。';
$_LANG['payhost_pending_later'] = '支付结果仍在确认中。支付宝确认后订单会自动更新为已付款，请稍后在“我的订单”中查看，不要重复付款。';
