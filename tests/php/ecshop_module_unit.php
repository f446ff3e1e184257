<?php
/*
 * Test-only (no ecshop counterpart): the ecshop module's pure parts from the command line, for
 * tests/adapters.rs. `php ecshop_module_unit.php <adapter dir> <lang> <payhost URL>` prints JSON:
 * log_id_of() of a set of order numbers, error_text() of payhost answers, call() against
 * <payhost URL> with a 1 s timeout (the test points it at a server that never answers), then a second call of the same page (given up at once) and the
 * transport it took (payhost_alipay_transport(): run with -d allow_url_fopen=0 it is curl), and
 * payhost_alipay_pick_transport() for PHP versions, settings and extensions this PHP is not
 * ("https,php,allow_url_fopen,https wrapper,curl" → 'fopen', 'curl' or ''), and the transport of an
 * https URL with this PHP's https stream wrapper and after stream_wrapper_unregister('https') (a
 * PHP without openssl has none), payhost_alipay_failure_kind() of payhost answers (what the buyer is
 * told: 'down', 'settings' or 'other'), and the length of each order_action note in each language.
 *
 * The notes (order_action.action_note is varchar(255), 255 characters on MySQL 4.1 and later) are
 * built for the longest numbers ecshop makes: order_sn 13 characters (lib_order.php
 * get_order_sn(): date('Ymd') and 5 digits), log_id 10 digits (pay_log.log_id int unsigned), the
 * amount in fen 10 digits (order_amount decimal(10,2)) and '-9' (older_payments()'s last
 * number), 37 characters; amounts 100000000.00 (Alipay's largest) and 99999999.99; a refund's
 * event id of 84 characters. Each must end with its marker, whole, and keep its text (no
 * language's note is cut); a text too long for the column is cut before the marker. When any
 * fails the script prints what failed instead of its JSON, so the test reading it fails.
 */
define('IN_ECS', true);
define('ROOT_PATH', rtrim($argv[1], '/') . '/');
define('PAY_ORDER', 0);
$GLOBALS['_CFG'] = array('lang' => $argv[2]);
$_LANG = array();
require(ROOT_PATH . 'includes/modules/payment/payhost_alipay.php');
$m = new payhost_alipay();
$subject = '2026112312345 Tea';
$numbers = array('2026112312345-5-1000', '2026112312345-5-1000-2', '2026112312345-5-1000-9', '2026112312345-5-1000-10',
    '2026112312345-5-1000-1', '20261123123455', '2026112312345-5', 'X2026112312345-5-1000', '2026112312345-5-1000-2-2');
$parsed = array();
foreach ($numbers as $no) {
    $parsed[$no] = $m->log_id_of($no, $subject);
}
$dashed = $m->log_id_of('SN-7-5-1000-2', 'SN-7 Tea');
$no_subject = $m->log_id_of('2026112312345-5-1000-2', '');
$s = $m->settings(array('payhost_url' => $argv[3], 'payhost_api_token' => 't', 'alipay_partner' => '2088000000000777'));
list($status, $answer) = $m->call($s, 'GET', '/v1/merchants/x', null, 1);
// The page's next call after a timeout gives up at once (one wait per page).
$again_started = microtime(true);
list($again_status, $again) = $m->call($s, 'PUT', '/v1/merchants/x', array('a' => 'b'), 1);
$again_seconds = microtime(true) - $again_started;
require(dirname(__FILE__) . '/transport_picks.php');
$picks = transport_picks('payhost_alipay_pick_transport');
$otn = '2026112399999-4294967295-9999999999-9';
$event = 'evt_' . str_repeat('x', 80);
$note_lengths = array();
$note_problems = array();
foreach (array('zh_cn', 'zh_tw', 'en_us') as $note_lang) {
    include(ROOT_PATH . 'languages/' . $note_lang . '/payment/payhost_alipay.php');
    $notes = array(
        'paid' => array($m->paid_note($otn), sprintf($_LANG['payhost_paid_note'], $otn), '[payhost paid ' . $otn . ']'),
        'extra' => array($m->extra_note($otn, 100000000), sprintf($_LANG['payhost_extra_payment'], $otn, '100000000.00'),
            '[payhost extra ' . $otn . ']'),
        'amount' => array($m->amount_note($otn, 100000000, 99999999.99),
            sprintf($_LANG['payhost_amount_note'], $otn, '100000000.00', '99999999.99'), '[payhost amount ' . $otn . ']'),
        'refund' => array($m->refund_note('payment.partially_refunded', '100000000.00', '100000000.00', $event),
            sprintf($_LANG['payhost_refund_partial'], '100000000.00', '100000000.00'), '[payhost ' . $event . ']'),
        'partly_refunded' => array($m->partly_refunded_note($otn, '100000000.00', '100000000.00'),
            sprintf($_LANG['payhost_partly_refunded_note'], $otn, '100000000.00', '100000000.00'),
            '[payhost partly-refunded ' . $otn . ']'),
    );
    foreach ($notes as $kind => $n) {
        $length = count($m->note_chars($n[0]));
        $note_lengths[$note_lang][$kind] = $length;
        if ($length > 255 || $n[0] !== $n[1] . ' ' . $n[2]) {
            $note_problems[] = $note_lang . ' ' . $kind . ' (' . $length . '): ' . $n[0];
        }
    }
}
include(ROOT_PATH . 'languages/zh_cn/payment/payhost_alipay.php');
// A text too long for the column: cut to fit, its marker whole.
$long = $m->fit_note(str_repeat('注意', 200), '[payhost amount ' . $otn . ']');
$note_lengths['too_long'] = count($m->note_chars($long));
if ($note_lengths['too_long'] !== 255 || substr($long, -strlen($otn) - 17) !== '[payhost amount ' . $otn . ']' || !preg_match('//u', $long)) {
    $note_problems[] = 'too long (' . $note_lengths['too_long'] . '): ' . $long;
}
if ($note_problems) {
    echo "order_action notes over 255 characters or without their marker:\n" . implode("\n", $note_problems) . "\n";
    exit(1);
}
echo json_encode(array(
    'log_id_of' => $parsed,
    'dashed_order_sn' => $dashed,
    'no_subject' => $no_subject,
    'not_configured' => $m->error_text(409, array('error' => array('code' => 'merchant_not_configured', 'field' => 'settings',
        'message' => 'the shop has not saved its settings yet'))),
    'conflict' => $m->error_text(409, array('error' => array('code' => 'conflict', 'message' => 'seller x'))),
    'timeout' => $m->error_text($status, $answer),
    'again' => array('status' => $again_status, 'code' => $again['error']['code'], 'message' => $again['error']['message'],
        'seconds' => $again_seconds),
    'refused' => $m->error_text(0, null),
    'transport' => payhost_alipay_transport($argv[3]),
    'picks' => $picks,
    'https_with_openssl' => payhost_alipay_transport('https://payhost.example'),
    // PHP without openssl has no https stream wrapper; this PHP without it:
    'https_without_openssl' => stream_wrapper_unregister('https') ? payhost_alipay_transport('https://payhost.example') : 'not unregistered',
    'no_http_client' => $m->error_text(0, array('error' => array('code' => 'no_http_client', 'message' => 'x'))),
    'note_lengths' => $note_lengths,
    // What each failure means for the buyer (down: try later; settings: contact the shop).
    'kinds' => array(
        'timeout' => payhost_alipay_failure_kind(0, array('error' => array('code' => 'timeout'))),
        'refused' => payhost_alipay_failure_kind(0, null),
        'no_http_client' => payhost_alipay_failure_kind(0, array('error' => array('code' => 'no_http_client'))),
        '429' => payhost_alipay_failure_kind(429, null),
        '503' => payhost_alipay_failure_kind(503, array('error' => array('code' => 'busy'))),
        '401' => payhost_alipay_failure_kind(401, array('error' => array('code' => 'unauthorized'))),
        '403' => payhost_alipay_failure_kind(403, array('error' => array('code' => 'forbidden'))),
        '404_merchant' => payhost_alipay_failure_kind(404, array('error' => array('code' => 'unknown_merchant'))),
        '400_field' => payhost_alipay_failure_kind(400, array('error' => array('code' => 'invalid_settings', 'field' => 'key'))),
        '409_not_configured' => payhost_alipay_failure_kind(409, array('error' => array('code' => 'merchant_not_configured'))),
        '409_conflict' => payhost_alipay_failure_kind(409, array('error' => array('code' => 'conflict'))),
        '502' => payhost_alipay_failure_kind(502, null),
        // By payhost's error.code (host/src/http/error.rs, service.rs), whatever the status.
        'bad_signature' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_bad_signature',
            'message' => 'the provider\'s answer carries a signature that does not match the configured keys (correlation id 0123456789abcdef; the detail is in the payhost log)'))),
        'isv_in_message' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_40002',
            'message' => 'the payment provider refused the request: Invalid Arguments (isv.invalid-app-id) (correlation id 0123456789abcdef)'))),
        'isv_code' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_isv.invalid-signature', 'message' => 'x'))),
        'not_signed' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_40006', 'message' => 'x'))),
        'illegal_partner' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_ILLEGAL_PARTNER', 'message' => 'x'))),
        'illegal_sign' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_ILLEGAL_SIGN', 'message' => 'x'))),
        'gateway_refused' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_40004',
            'message' => 'the payment provider refused the request: Business Failed (ACQ.SYSTEM_ERROR) (correlation id 0123456789abcdef)'))),
        'gateway_timeout' => payhost_alipay_failure_kind(504, array('error' => array('code' => 'gateway_timeout', 'message' => 'x'))),
        'gateway_malformed' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'gateway_malformed', 'message' => 'x'))),
        'plugin_failed' => payhost_alipay_failure_kind(502, array('error' => array('code' => 'plugin_failed', 'message' => 'x'))),
        'internal' => payhost_alipay_failure_kind(500, array('error' => array('code' => 'internal', 'message' => 'x'))),
        'database_unavailable' => payhost_alipay_failure_kind(503, array('error' => array('code' => 'database_unavailable', 'message' => 'x'))),
        'misconfigured' => payhost_alipay_failure_kind(500, array('error' => array('code' => 'merchant_misconfigured', 'field' => 'plugin',
            'message' => 'x'))),
        'invalid_settings' => payhost_alipay_failure_kind(400, array('error' => array('code' => 'invalid_settings', 'field' => 'app_id',
            'message' => 'x'))),
        'order_total_fee' => payhost_alipay_failure_kind(400, array('error' => array('code' => 'invalid_order', 'field' => 'total_fee',
            'message' => 'total_fee: x'))),
        'order_subject' => payhost_alipay_failure_kind(400, array('error' => array('code' => 'invalid_request', 'field' => 'subject',
            'message' => 'subject: x'))),
        'request_return_url' => payhost_alipay_failure_kind(400, array('error' => array('code' => 'invalid_request', 'field' => 'return_url',
            'message' => 'return_url: x'))),
    ),
    // The owner's words of an order refused: the order, not a setting to correct.
    'order_text' => $m->error_text(400, array('error' => array('code' => 'invalid_order', 'field' => 'total_fee',
        'message' => 'total_fee: must be at most 100000000.00'))),
));
