<?php
/**
 * ECSHOP: payhost's webhook endpoint (the shop_webhook_url the module gives payhost).
 *
 * Its own file next to respond.php because respond.php answers HTTP 200 whatever respond()
 * decides: payhost would take a refused or failed webhook as delivered and never send it again.
 * Here the answer is 2xx only when the order is paid in the shop; anything else is non-2xx and
 * payhost retries it with backoff.
 */

define('IN_ECS', true);
// The same bootstrap as respond.php (no INIT_NO_SMARTY / INIT_NO_USERS): order_paid() ships virtual
// goods and sends mail with the template engine, as it does when Alipay's notify hits respond.php.

// Until the module has decided: init.php ends the request with its own page when the shop is
// closed (and on other early exits); payhost must see those as not delivered.
header('HTTP/1.1 503 Service Unavailable', true, 503);
require(dirname(__FILE__) . '/includes/init.php');
require_once(ROOT_PATH . 'includes/lib_payment.php');
require_once(ROOT_PATH . 'includes/lib_order.php');

header('Content-Type: text/plain; charset=utf-8');
if (!isset($_SERVER['REQUEST_METHOD']) || $_SERVER['REQUEST_METHOD'] !== 'POST') {
    header('HTTP/1.1 405 Method Not Allowed', true, 405);
    exit('POST only');
}

include_once(ROOT_PATH . 'includes/modules/payment/payhost_alipay.php');
$payhost_module = new payhost_alipay();
$payhost_answer = $payhost_module->webhook(
    file_get_contents('php://input'),
    isset($_SERVER['HTTP_X_PAYHOST_SIGNATURE']) ? $_SERVER['HTTP_X_PAYHOST_SIGNATURE'] : '',
    time()
);
$payhost_reasons = array(200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized', 404 => 'Not Found',
    409 => 'Conflict', 503 => 'Service Unavailable');
$payhost_code = $payhost_answer[0];
header('HTTP/1.1 ' . $payhost_code . ' ' . $payhost_reasons[$payhost_code], true, $payhost_code);
echo $payhost_answer[1];
