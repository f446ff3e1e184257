<?php

$_LANG['payhost_alipay'] = '支付宝手机网站支付 (payhost)';
$_LANG['payhost_alipay_desc'] = '支付宝手机网站支付，由 payhost 处理签名、异步通知与验证。请先在服务器上运行 payhost。';
$_LANG['alipay_account'] = '支付宝帐户';
$_LANG['alipay_key'] = '交易安全校验码';
$_LANG['alipay_partner'] = '合作者身份ID';
$_LANG['alipay_mode'] = '收款模式';
$_LANG['alipay_mode_desc'] = 'B2C：只有一个卖家，款项进入上面的支付宝帐户；C2C：平台多卖家，每笔订单使用店铺自己的支付宝帐户';
$_LANG['alipay_mode_range']['b2c'] = 'B2C 单一卖家';
$_LANG['alipay_mode_range']['c2c'] = 'C2C 多卖家平台';
$_LANG['payhost_url'] = 'payhost 地址';
$_LANG['payhost_url_desc'] = '例如 http://127.0.0.1:8080';
$_LANG['payhost_token'] = 'payhost 令牌 (api_token)';
$_LANG['pay_button'] = '立即使用支付宝支付';
$_LANG['payhost_config_error'] = '支付宝设置有误：';
