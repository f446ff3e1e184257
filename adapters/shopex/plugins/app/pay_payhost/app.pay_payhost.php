<?php
/**
 * ShopEx 4.8.5 app manifest of the payhost payment app (installed from 支付方式 / the app centre;
 * installing adds a payment method of pay_type "payhost", disabled until it is configured).
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
