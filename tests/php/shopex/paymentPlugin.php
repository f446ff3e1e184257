<?php
// ShopEx's payment-plugin base class, as its plugins use it: the result codes, the system object,
// the callback URLs, and getConf() reading the plugin's saved fields.
define('PAY_FAILED', -1);
define('PAY_TIMEOUT', 0);
define('PAY_SUCCESS', 1);
define('PAY_CANCEL', 2);
define('PAY_ERROR', 3);
define('PAY_PROGRESS', 4);

class paymentPlugin
{
    var $system;
    var $callbackUrl;
    var $serverCallbackUrl;

    function __construct(&$system)
    {
        $this->system = $system;
        $this->callbackUrl = $system->base_url() . '/callback.php';
        $this->serverCallbackUrl = $system->base_url() . '/server.php';
    }

    function getConf($paymentId, $key)
    {
        $s = state_load();
        return isset($s['plugin_config'][$key]) ? $s['plugin_config'][$key] : '';
    }
}
