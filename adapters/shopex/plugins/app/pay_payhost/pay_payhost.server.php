<?php
/**
 * ShopEx 4.8.5: the server notify URL of the payhost app (serverCallbackUrl, where payhost sends its
 * webhook). Requested directly, it runs the app's dispatcher, which includes this file again and
 * calls pay_payhost::pay_payhost_callback(); the class itself is in pay_payhost.php.
 *
 * ob_start() first: whatever ShopEx prints before the answer (PHP messages with display_errors
 * on) stays buffered, and payhost_answer() drops it before the status line, which therefore
 * always reaches payhost.
 */
ob_start();
require_once('paymentPlugin.php');
require_once(dirname(__FILE__) . '/pay_payhost.php');
