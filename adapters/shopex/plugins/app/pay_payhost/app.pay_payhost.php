<?php
/**
 * ShopEx 4.8.5 app manifest of the payhost payment app. 支付方式 lists only apps of ShopEx's online
 * catalogue, so it is installed by URL (README, step 4: ctl=trading/payment&act=do_install&
 * p[0]=pay_payhost → install_app(), which adds a disabled payment method of pay_type "payhost"); the
 * method the owner configures is the one the 添加 form (editPayment with no id) saves, enabled.
 */
class app_pay_payhost extends app
{
    var $ver = 0.2;
    var $name = '支付宝手机网站支付 (payhost)';
    var $website = 'https://github.com/';
    var $author = 'payhost';
    var $help = '';
    var $type = 'payhost';

    function install()
    {
        parent::install();
        return true;
    }

    function uninstall()
    {
        $this->db->exec('delete from sdb_payment_cfg where pay_type ="' . $this->type . '"');
        return parent::uninstall();
    }

    function ctl_mapper()
    {
        return array();
    }
}
