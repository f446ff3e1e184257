<?php
/*
 * Harness of ecshop 2.7.3 `includes/init.php` (the front end's bootstrap, included by respond.php,
 * flow.php, user.php and the module's payhost_notify.php; mobile/includes/init.php defines
 * ROOT_PATH as the shop root first): ROOT_PATH, PHP_SELF (the running script's path),
 * EC_CHARSET (data/config.php;
 * here SHOP_CHARSET), the library files, addslashes_deep() over $_GET, $_POST, $_COOKIE and
 * $_REQUEST (magic_quotes_gpc is off on PHP >= 5.4), the ECS object (table(); url() as
 * includes/cls_ecshop.php builds it: get_domain() — X-Forwarded-Host first, then Host — and the
 * directory of PHP_SELF, so .../mobile/ on the mobile pages), the database
 * object (the database name of data/config.php: here SHOP_DB_NAME, default "ecshop"), the
 * template engine $smarty unless INIT_NO_SMARTY is defined (cls_template; here only assign(), the
 * values a page's template would show), $_CFG =
 * load_config(), the common language file, and the "shop closed" page, which init.php prints
 * with HTTP 200 and then exits. Then, unless INIT_NO_USERS is defined, the visitor's session
 * (cls_session: a request without the session cookie gets a new ecs_sessions row) and
 * visit_stats() (an ecs_stats row); last, ob_start() (ob_gzhandler when gzip is enabled), so
 * what the page prints afterwards is buffered.
 *
 * PHP's messages: init.php sets error_reporting(E_ALL) first; on PHP 5.3 and later ecshop
 * 2.7.3's own files raise E_DEPRECATED while init.php loads them ("Assigning the return value of
 * new by reference is deprecated"), printed before init.php's ob_start() when display_errors is
 * on. The harness raises one such message when the test switches shop_config.harness_deprecated
 * on (_state.php?deprecated=1), with display_errors on.
 *
 * Written for the tests from the file's behaviour; no ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}
error_reporting(E_ALL);
if (!defined('ROOT_PATH')) {
    define('ROOT_PATH', str_replace('\\', '/', dirname(dirname(__FILE__))) . '/');
}
define('PHP_SELF', isset($_SERVER['PHP_SELF']) ? $_SERVER['PHP_SELF'] : $_SERVER['SCRIPT_NAME']);
define('EC_CHARSET', getenv('SHOP_CHARSET') ?: 'utf-8');
define('PAY_ORDER', 0);
define('PAY_SURPLUS', 1);
define('PS_UNPAYED', 0);
define('PS_PAYING', 1);
define('PS_PAYED', 2);
define('OS_UNCONFIRMED', 0);
define('OS_CONFIRMED', 1);
define('OS_CANCELED', 2);
define('OS_INVALID', 3);

require(ROOT_PATH . 'includes/lib_base.php');
require(ROOT_PATH . 'includes/cls_mysql.php');

if (!empty($_GET)) { $_GET = addslashes_deep($_GET); }
if (!empty($_POST)) { $_POST = addslashes_deep($_POST); }
$_COOKIE = addslashes_deep($_COOKIE);
$_REQUEST = addslashes_deep($_REQUEST);

class ECS
{
    var $db_name = 'ecshop';
    var $prefix = 'ecs_';
    function __construct() { $this->db_name = getenv('SHOP_DB_NAME') ? getenv('SHOP_DB_NAME') : 'ecshop'; }
    function table($str) { return '`' . $this->db_name . '`.`' . $this->prefix . $str . '`'; }
    function http() { return (isset($_SERVER['HTTPS']) && strtolower($_SERVER['HTTPS']) != 'off') ? 'https://' : 'http://'; }
    function get_domain()
    {
        if (isset($_SERVER['HTTP_X_FORWARDED_HOST'])) {
            $host = $_SERVER['HTTP_X_FORWARDED_HOST'];
        } else {
            $host = $_SERVER['HTTP_HOST'];
        }
        return $this->http() . $host;
    }
    function url()
    {
        $root = str_replace('\\', '/', dirname(PHP_SELF));
        if (substr($root, -1) != '/') {
            $root .= '/';
        }
        return $this->get_domain() . $root;
    }
}
$ecs = new ECS();
$db = new cls_mysql();

/** cls_template, reduced to assign(): the page prints what its template would. */
class harness_template
{
    var $_var = array();
    function assign($name, $value) { $this->_var[$name] = $value; }
}
if (!defined('INIT_NO_SMARTY')) {
    $smarty = new harness_template();
}

/** lib_common.php load_config(): the shop_config table as name => value. */
function load_config()
{
    $t = hdb_read();
    $cfg = $t['shop_config'];
    $cfg['shop_name'] = base64_decode($cfg['shop_name_b64']);
    return $cfg;
}
$_CFG = load_config();
$_LANG = array();
require(ROOT_PATH . 'languages/' . $_CFG['lang'] . '/common.php');

if (!empty($_CFG['harness_deprecated'])) {
    ini_set('display_errors', '1');
    trigger_error('Assigning the return value of new by reference is deprecated', E_USER_DEPRECATED);
}

if ($_CFG['shop_closed'] == 1) {
    header('Content-type: text/html; charset=' . EC_CHARSET);
    die('<div style="margin: 150px; text-align: center; font-size: 14px"><p>' . $_LANG['shop_closed'] . '</p><p>' . $_CFG['close_comment'] . '</p></div>');
}

if (!defined('INIT_NO_USERS')) {
    // cls_session and visit_stats(): a visitor without the session cookie is a new session.
    if (empty($_COOKIE['ECS_ID'])) {
        hdb_tx(function (&$t) {
            $t['sessions'][] = array('ip' => isset($_SERVER['REMOTE_ADDR']) ? $_SERVER['REMOTE_ADDR'] : '',
                'script' => PHP_SELF);
        });
    }
}

ob_start();
