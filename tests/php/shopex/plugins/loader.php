<?php
/*
 * Harness of ShopEx 4.8.5 `plugins/loader.php` (what a payment app's dispatcher requires): it
 * includes config/config.php (HTTP 503 when it cannot), defines PHP_SELF as the request path two
 * folders up (plugins/app/pay_x/pay_x.php -> /plugins/app), CORE_INCLUDE_DIR = core/include_v5
 * (PHP 5), and creates $system, a shopCore whose constructor puts CORE_INCLUDE_DIR first on the
 * include path and sets $GLOBALS['system']. Written for the tests; no ShopEx code.
 */
ob_start();
if (include(dirname(__FILE__) . '/../config/config.php')) {
    define('PHP_SELF', dirname(dirname($_SERVER['PHP_SELF'] ? $_SERVER['PHP_SELF'] : $_SERVER['SCRIPT_NAME'])));
    ob_end_clean();
    if (!defined('CORE_INCLUDE_DIR')) {
        define('CORE_INCLUDE_DIR', CORE_DIR . '/include_v5');
    }
    require(CORE_INCLUDE_DIR . '/shopCore.php');
    class pluginCore extends shopCore { function run() {} }
    $system = new pluginCore(array());
} else {
    header('HTTP/1.1 503 Service Unavailable', true, 503);
    die('<h1>Service Unavailable</h1>');
}
