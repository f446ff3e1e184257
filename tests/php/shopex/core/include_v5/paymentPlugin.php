<?php
/*
 * Harness of ShopEx 4.8.5 `core/include_v5/paymentPlugin.php` (the payment plugin base class):
 * guarded by PAYMENT_LOADED; the PHP 4 style constructor paymentPlugin(&$system) (on PHP 8 it is an
 * ordinary method a plugin must call itself) takes $GLOBALS['system'], and sets callbackUrl =
 * base_url() without 'plugins/' . 'plugins/app/<class>/<class>.php' and serverCallbackUrl = the same
 * with '.server.php'; $method = "post" by default; getConf($paymentId, $key) finds the payment, its
 * payment method (sdb_payment_cfg) and unserialize()s the method's config. No ShopEx code.
 */
if (!defined('PAYMENT_LOADED')) {
    define('PAYMENT_LOADED', true);
    class paymentPlugin
    {
        var $method = "post";
        var $charset = 'utf8';
        var $name = null;
        var $callbackUrl = null;
        var $orderby = null;
        var $_config = array();
        var $_payment = 0;

        function paymentPlugin(&$system)
        {
            $this->system = &$GLOBALS['system'];
            $sUrl = str_replace('plugins/', '', $this->system->base_url());
            $this->callbackUrl = $sUrl . 'plugins/app/' . get_class($this) . '/' . get_class($this) . '.php';
            $this->serverCallbackUrl = substr($this->callbackUrl, 0, strlen($this->callbackUrl) - 3) . 'server.php';
        }

        function toSubmit() { return false; }
        function callback() { return false; }

        function getConf($paymentid, $key, $value = null)
        {
            if (count($this->_config) == 0) {
                $p = $this->system->loadModel('trading/payment');
                if (!$this->_payment) {
                    $payment = $p->getById($paymentid);
                    $this->_payment = $payment ? $payment['payment'] : 0;
                }
                $cfg = $p->getPaymentById($this->_payment);
                $this->_config = $cfg ? unserialize($cfg['config']) : array();
            }
            return isset($this->_config[$key]) ? $this->_config[$key] : null;
        }
    }
}
