<?php
/*
 * Test-only (no ShopEx counterpart): the ShopEx app's error texts from the command line, for
 * tests/adapters.rs. `php shopex_plugin_unit.php <repo root> <payhost URL>` prints JSON:
 * payhost_error() of payhost answers, payhost_call() against <payhost URL> with a 1 s timeout
 * (the test points it at a server that never answers) and the transport it took, and
 * pay_payhost_pick_transport() for other PHPs and the transport of an https URL with and without
 * the https stream wrapper, and pay_payhost_failure_kind() of payhost answers, as
 * tests/php/ecshop_module_unit.php does.
 */
$root = rtrim($argv[1], '/');
set_include_path($root . '/tests/php/shopex/core/include_v5' . PATH_SEPARATOR . get_include_path());
class unit_system
{
    function base_url() { return 'http://shop.example/'; }
}
$GLOBALS['system'] = new unit_system();
require($root . '/adapters/shopex/plugins/app/pay_payhost/pay_payhost.php');
$system = $GLOBALS['system'];
$m = new pay_payhost($system);
$s = array('payhost_url' => $argv[2], 'payhost_api_token' => 't');
list($status, $answer) = $m->payhost_call($s, 'GET', '/v1/merchants/x', null, 1);
// The page's next call after a timeout gives up at once (one wait per page).
$again_started = microtime(true);
list($again_status, $again) = $m->payhost_call($s, 'PUT', '/v1/merchants/x', array('a' => 'b'), 1);
$again_seconds = microtime(true) - $again_started;
require(dirname(__FILE__) . '/transport_picks.php');
$picks = transport_picks('pay_payhost_pick_transport');
echo json_encode(array(
    'not_configured' => $m->payhost_error(409, array('error' => array('code' => 'merchant_not_configured', 'field' => 'settings',
        'message' => 'the shop has not saved its settings yet'))),
    'timeout' => $m->payhost_error($status, $answer),
    'again' => array('status' => $again_status, 'code' => $again['error']['code'], 'message' => $again['error']['message'],
        'seconds' => $again_seconds),
    'refused' => $m->payhost_error(0, null),
    'transport' => pay_payhost_transport($argv[2]),
    'picks' => $picks,
    'https_with_openssl' => pay_payhost_transport('https://payhost.example'),
    // PHP without openssl has no https stream wrapper; this PHP without it:
    'https_without_openssl' => stream_wrapper_unregister('https') ? pay_payhost_transport('https://payhost.example') : 'not unregistered',
    'no_http_client' => $m->payhost_error(0, array('error' => array('code' => 'no_http_client', 'message' => 'x'))),
    // What each failure means for the buyer (down: try later; settings: contact the shop).
    'kinds' => array(
        'timeout' => pay_payhost_failure_kind(0, array('error' => array('code' => 'timeout'))),
        'refused' => pay_payhost_failure_kind(0, null),
        'no_http_client' => pay_payhost_failure_kind(0, array('error' => array('code' => 'no_http_client'))),
        '429' => pay_payhost_failure_kind(429, null),
        '503' => pay_payhost_failure_kind(503, array('error' => array('code' => 'busy'))),
        '401' => pay_payhost_failure_kind(401, array('error' => array('code' => 'unauthorized'))),
        '403' => pay_payhost_failure_kind(403, array('error' => array('code' => 'forbidden'))),
        '404_merchant' => pay_payhost_failure_kind(404, array('error' => array('code' => 'unknown_merchant'))),
        '400_field' => pay_payhost_failure_kind(400, array('error' => array('code' => 'invalid_settings', 'field' => 'key'))),
        '409_not_configured' => pay_payhost_failure_kind(409, array('error' => array('code' => 'merchant_not_configured'))),
        '409_conflict' => pay_payhost_failure_kind(409, array('error' => array('code' => 'conflict'))),
        '502' => pay_payhost_failure_kind(502, null),
        // By payhost's error.code (host/src/http/error.rs, service.rs), whatever the status.
        'bad_signature' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_bad_signature',
            'message' => 'the provider\'s answer carries a signature that does not match the configured keys (correlation id 0123456789abcdef; the detail is in the payhost log)'))),
        'isv_in_message' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_40002',
            'message' => 'the payment provider refused the request: Invalid Arguments (isv.invalid-app-id) (correlation id 0123456789abcdef)'))),
        'isv_code' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_isv.invalid-signature', 'message' => 'x'))),
        'not_signed' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_40006', 'message' => 'x'))),
        'illegal_partner' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_ILLEGAL_PARTNER', 'message' => 'x'))),
        'illegal_sign' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_ILLEGAL_SIGN', 'message' => 'x'))),
        'gateway_refused' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_40004',
            'message' => 'the payment provider refused the request: Business Failed (ACQ.SYSTEM_ERROR) (correlation id 0123456789abcdef)'))),
        'gateway_timeout' => pay_payhost_failure_kind(504, array('error' => array('code' => 'gateway_timeout', 'message' => 'x'))),
        'gateway_malformed' => pay_payhost_failure_kind(502, array('error' => array('code' => 'gateway_malformed', 'message' => 'x'))),
        'plugin_failed' => pay_payhost_failure_kind(502, array('error' => array('code' => 'plugin_failed', 'message' => 'x'))),
        'internal' => pay_payhost_failure_kind(500, array('error' => array('code' => 'internal', 'message' => 'x'))),
        'database_unavailable' => pay_payhost_failure_kind(503, array('error' => array('code' => 'database_unavailable', 'message' => 'x'))),
        'misconfigured' => pay_payhost_failure_kind(500, array('error' => array('code' => 'merchant_misconfigured', 'field' => 'plugin',
            'message' => 'x'))),
        'invalid_settings' => pay_payhost_failure_kind(400, array('error' => array('code' => 'invalid_settings', 'field' => 'app_id',
            'message' => 'x'))),
        'order_total_fee' => pay_payhost_failure_kind(400, array('error' => array('code' => 'invalid_order', 'field' => 'total_fee',
            'message' => 'total_fee: x'))),
        'order_subject' => pay_payhost_failure_kind(400, array('error' => array('code' => 'invalid_request', 'field' => 'subject',
            'message' => 'subject: x'))),
        'request_return_url' => pay_payhost_failure_kind(400, array('error' => array('code' => 'invalid_request', 'field' => 'return_url',
            'message' => 'return_url: x'))),
    ),
    // The owner's words of an order refused: the order, not a setting to correct.
    'order_text' => $m->payhost_error(400, array('error' => array('code' => 'invalid_order', 'field' => 'total_fee',
        'message' => 'total_fee: must be at most 100000000.00'))),
));
