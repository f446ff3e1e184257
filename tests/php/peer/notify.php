<?php
/*
 * The load benchmark's peer: the notify handler most shops run, written from [WAP §7]
 * (docs/protocol/WAP.md) the way the official PHP WAP demo does it — md5 over the fixed-order string
 * `service=…&v=…&sec_id=…&notify_data=…` + key, a `notify_verify` call, a line appended to a
 * log file, and `success`. No database: the demo has none. Served by `php -S` in
 * `cargo bench -p conformance --bench load -- --php`.
 *
 * Configuration comes from the environment: PEER_KEY (the MD5 key), PEER_PARTNER, PEER_VERIFY_URL
 * (the notify_verify endpoint), PEER_LOG (the log file).
 */

$key = getenv('PEER_KEY');
$partner = getenv('PEER_PARTNER');
$verifyUrl = getenv('PEER_VERIFY_URL');
$log = getenv('PEER_LOG');

$service = isset($_POST['service']) ? $_POST['service'] : '';
$v = isset($_POST['v']) ? $_POST['v'] : '';
$secId = isset($_POST['sec_id']) ? $_POST['sec_id'] : '';
$notifyData = isset($_POST['notify_data']) ? $_POST['notify_data'] : '';
$sign = isset($_POST['sign']) ? $_POST['sign'] : '';

// The fixed order of the WAP notify signature (not sorted).
$content = 'service=' . $service . '&v=' . $v . '&sec_id=' . $secId . '&notify_data=' . $notifyData;
if (!hash_equals(md5($content . $key), strtolower($sign))) {
    http_response_code(400);
    echo 'fail';
    exit;
}

// notify_data is flat XML; the demo's ports read the fields by element name.
function field($xml, $name)
{
    return preg_match('/<' . $name . '>(.*?)<\/' . $name . '>/s', $xml, $m) ? $m[1] : null;
}
$notifyId = field($notifyData, 'notify_id');
if ($notifyId === null || $notifyId === '') {
    http_response_code(400);
    echo 'fail';
    exit;
}

// Ask Alipay whether it sent this notification.
$url = $verifyUrl . '?service=notify_verify&partner=' . urlencode($partner) . '&notify_id=' . urlencode($notifyId);
$answer = @file_get_contents($url, false, stream_context_create(['http' => ['timeout' => 15]]));
if (trim((string) $answer) !== 'true') {
    http_response_code(503);
    echo 'fail';
    exit;
}

file_put_contents(
    $log,
    date('c') . ' ' . field($notifyData, 'out_trade_no') . ' ' . field($notifyData, 'trade_status') . ' '
        . field($notifyData, 'total_fee') . "\n",
    FILE_APPEND | LOCK_EX
);
echo 'success';
