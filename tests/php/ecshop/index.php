<?php
/*
 * Harness of ecshop 2.7.3 `index.php`, its first lines: a User-Agent that is empty or matches
 * /(nokia|sony|ericsson|mot|samsung|sgh|lg|philips|panasonic|alcatel|lenovo|cldc|midp|mobile)/i
 * (every phone browser says "Mobile") is sent to mobile/ (ecs_header("Location: mobile/")),
 * unless the request URI contains "wap". Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(__FILE__) . '/includes/init.php');
$ua = isset($_SERVER['HTTP_USER_AGENT']) ? strtolower($_SERVER['HTTP_USER_AGENT']) : '';
$uachar = '/(nokia|sony|ericsson|mot|samsung|sgh|lg|philips|panasonic|alcatel|lenovo|cldc|midp|mobile)/i';
if (($ua == '' || preg_match($uachar, $ua)) && !strpos(strtolower($_SERVER['REQUEST_URI']), 'wap')) {
    header('Location: mobile/');
    exit;
}
echo '<html><body>shop home</body></html>';
