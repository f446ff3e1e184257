<?php
/*
 * Test-only (no ShopEx counterpart): the ShopEx app's error texts from the command line, for
 * tests/adapters.rs. `php shopex_plugin_unit.php <repo root> <payhost URL>` prints JSON:
 * payhost_error() of payhost answers, payhost_call() against <payhost URL> with a 1 s timeout
 * (the test points it at a server that never answers) and the transport it took, and
 * pay_payhost_pick_transport() for other PHPs and the transport of an https URL with and without
 * the https stream wrapper, as tests/php/ecshop_module_unit.php does.
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
));
