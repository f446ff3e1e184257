<?php
/*
 * Harness of ShopEx 4.8.5 `core/kernel.php` + `core/include_v5/shopCore.php` (the $system object):
 * the constructor sets $GLOBALS['system'] and the include path (CORE_INCLUDE_DIR first), base_url()
 * ('http://' . HTTP_HOST . PHP_SELF up to its last '/'), getConf('system.shopname' and
 * 'site.decimal_digit'), loadModel('trading/payment'), 'system/addons', 'system/appmgr' and
 * loadModel('trading/order') (whose payed()
 * marks the order paid and counts the calls). Written for the tests; no ShopEx code.
 */
require_once(dirname(__FILE__) . '/harness_db.php');

class shopCore
{
    var $_base_url;
    var $models = array();

    function __construct($args = array())
    {
        $GLOBALS['system'] = &$this;
        set_include_path(CORE_INCLUDE_DIR . PATH_SEPARATOR . '.');
    }

    function base_url()
    {
        if (!isset($this->_base_url)) {
            $this->_base_url = 'http://' . $_SERVER['HTTP_HOST'] . substr(PHP_SELF, 0, strrpos(PHP_SELF, '/') + 1);
        }
        return $this->_base_url;
    }

    function getConf($key)
    {
        $t = hdb_read();
        return isset($t['settings'][$key]) ? $t['settings'][$key] : null;
    }

    function &loadModel($name)
    {
        if (!isset($this->models[$name])) {
            if ($name === 'trading/payment') {
                require_once(CORE_DIR . '/model_v5/trading/mdl.payment.php');
                $this->models[$name] = new mdl_payment($this);
            } elseif ($name === 'system/addons' || $name === 'system/appmgr') {
                require_once(CORE_DIR . '/model_v5/' . dirname($name) . '/mdl.' . basename($name) . '.php');
                $class = 'mdl_' . basename($name);
                $this->models[$name] = new $class();
            } elseif ($name === 'trading/order') {
                $this->models[$name] = new harness_order();
            } else {
                throw new Exception('harness: no model ' . $name);
            }
        }
        return $this->models[$name];
    }
}

/** mdl.order.php payed(): the order becomes paid; the harness counts the calls. */
class harness_order
{
    function payed($info, &$message)
    {
        return hdb_tx(function (&$t) use ($info) {
            $t['orders'][$info['order_id']]['pay_status'] = 1;
            $t['payed_calls'][] = $info['payment_id'];
            return true;
        });
    }
}
