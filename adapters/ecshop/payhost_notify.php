<?php
/**
 * ECSHOP: payhost's webhook endpoint (the shop_webhook_url the module gives payhost).
 *
 * Its own file next to respond.php because respond.php answers HTTP 200 whatever respond()
 * decides: payhost would take a refused or failed webhook as delivered and never send it again.
 * Here the answer is 2xx only when the order is paid in the shop (or a refund, or a payment whose
 * amount is not the order's, is noted on the order for the owner); anything
 * else is non-2xx and payhost retries it with backoff.
 */

// Everything printed before the answer (a PHP notice of the shop's code with display_errors on)
// is buffered and dropped, so the status line below is never lost to "headers already sent".
ob_start();
define('IN_ECS', true);
// No session and no visit statistics for payhost's requests (includes/init.php skips both under
// INIT_NO_USERS; order_paid() uses neither). The template engine stays: order_paid() ships
// virtual goods and sends mail with it, as it does when Alipay's notify hits respond.php.
define('INIT_NO_USERS', true);

// Until the module has decided: init.php ends the request with its own page when the shop is
// closed (and on other early exits); payhost must see those as not delivered.
header('HTTP/1.1 503 Service Unavailable', true, 503);

/**
 * A request that ends before payhost_notify_answer(): the shop closed, or a query that failed
 * (cls_mysql::query() prints "MySQL server error report" with the SQL, then exits). Shutdown
 * functions run before PHP flushes the buffers: what was printed is dropped, and payhost gets
 * the 503 and a line of text, never the shop's SQL.
 */
function payhost_notify_unfinished()
{
    if (defined('PAYHOST_NOTIFY_ANSWERED')) {
        return;
    }
    while (ob_get_level() > 0) {
        ob_end_clean();
    }
    if (!headers_sent()) {
        header('HTTP/1.1 503 Service Unavailable', true, 503);
        header('Content-Type: text/plain; charset=utf-8');
    }
    echo 'not applied (the shop ended the request early), retry';
}
register_shutdown_function('payhost_notify_unfinished');

require(dirname(__FILE__) . '/includes/init.php');
require_once(ROOT_PATH . 'includes/lib_payment.php');
require_once(ROOT_PATH . 'includes/lib_order.php');

/** The answer: every buffer (ours, init.php's) dropped, then the status and the text. */
function payhost_notify_answer($code, $text)
{
    $reasons = array(200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized', 404 => 'Not Found',
        405 => 'Method Not Allowed', 409 => 'Conflict', 503 => 'Service Unavailable');
    define('PAYHOST_NOTIFY_ANSWERED', true);
    while (ob_get_level() > 0) {
        ob_end_clean();
    }
    header('HTTP/1.1 ' . $code . ' ' . $reasons[$code], true, $code);
    header('Content-Type: text/plain; charset=utf-8');
    echo $text;
    exit;
}

if (!isset($_SERVER['REQUEST_METHOD']) || $_SERVER['REQUEST_METHOD'] !== 'POST') {
    payhost_notify_answer(405, 'POST only');
}

include_once(ROOT_PATH . 'includes/modules/payment/payhost_alipay.php');
$payhost_module = new payhost_alipay();
$payhost_answer = $payhost_module->webhook(
    file_get_contents('php://input'),
    isset($_SERVER['HTTP_X_PAYHOST_SIGNATURE']) ? $_SERVER['HTTP_X_PAYHOST_SIGNATURE'] : '',
    time()
);
payhost_notify_answer($payhost_answer[0], $payhost_answer[1]);
