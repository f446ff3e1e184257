<?php
/*
 * Test-only (no ecshop counterpart): the ecshop module's pure parts from the command line, for
 * tests/adapters.rs. `php ecshop_module_unit.php <adapter dir> <lang> <payhost URL>` prints JSON:
 * log_id_of() of a set of order numbers, error_text() of payhost answers, call() against
 * <payhost URL> with a 1 s timeout (the test points it at a server that never answers) and the
 * transport it took (payhost_alipay_transport(): run with -d allow_url_fopen=0 it is curl), and
 * payhost_alipay_pick_transport() for PHP versions, settings and extensions this PHP is not
 * ("https,php,allow_url_fopen,https wrapper,curl" → 'fopen', 'curl' or ''), and the transport of an
 * https URL with this PHP's https stream wrapper and after stream_wrapper_unregister('https') (a
 * PHP without openssl has none).
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
require(dirname(__FILE__) . '/transport_picks.php');
$picks = transport_picks('payhost_alipay_pick_transport');
echo json_encode(array(
    'log_id_of' => $parsed,
    'dashed_order_sn' => $dashed,
    'no_subject' => $no_subject,
    'not_configured' => $m->error_text(409, array('error' => array('code' => 'merchant_not_configured', 'field' => 'settings',
        'message' => 'the shop has not saved its settings yet'))),
    'conflict' => $m->error_text(409, array('error' => array('code' => 'conflict', 'message' => 'seller x'))),
    'timeout' => $m->error_text($status, $answer),
    'refused' => $m->error_text(0, null),
    'transport' => payhost_alipay_transport($argv[3]),
    'picks' => $picks,
    'https_with_openssl' => payhost_alipay_transport('https://payhost.example'),
    // PHP without openssl has no https stream wrapper; this PHP without it:
    'https_without_openssl' => stream_wrapper_unregister('https') ? payhost_alipay_transport('https://payhost.example') : 'not unregistered',
    'no_http_client' => $m->error_text(0, array('error' => array('code' => 'no_http_client', 'message' => 'x'))),
));
