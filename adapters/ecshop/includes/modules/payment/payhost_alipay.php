<?php
/**
 * ECSHOP payment module: Alipay WAP pay through payhost (支付宝手机网站支付).
 *
 * Two Alipay interfaces, chosen in the settings (接口类型, alipay_api): 旧版接口 (mapi: 合作者身份 PID +
 * 交易安全校验码) or 新版开放平台 (openapi: APPID + 应用私钥 + 支付宝公钥, RSA2). payhost speaks both;
 * the module only sends it the chosen interface's fields.
 *
 * Runs on ecshop 2.7.x, UTF-8 and GBK editions, with no syntax newer than PHP 5.2 (`php -l` and
 * the syntax scan in tests/php/php52_scan.php check it). Reaching payhost needs PHP 5.2.10 or later
 * with allow_url_fopen on (file_get_contents() reads payhost's 4xx answers only with the stream
 * option ignore_errors, added in 5.2.10; an https payhost also needs openssl), or else PHP's curl
 * extension (any PHP 5.2 to 8.x); without either the owner and the buyer see a message saying so
 * (payhost_alipay_transport()).
 *
 * - get_code($order, $payment) (flow.php?step=done, mobile/order.php?act=done, user.php): saves
 *   the settings at payhost (PUT /v1/merchants/{id}) only when their digest differs from the one
 *   payhost returns, creates the payment (out_trade_no = order_sn-log_id-fen[-n], see get_code();
 *   a cancel link back to the order page) and renders the pay button (a plain link on ecshop's
 *   mobile/ pages). Before a new number of a pay_log row, its other payments are looked up at
 *   payhost (older_payments()); one paid there and not yet in the shop is applied with settle()
 *   (paid_message()). On an error the buyer reads "unavailable, try later", "settings wrong,
 *   contact the shop" or "this order cannot be paid, contact the shop", never which setting nor
 *   payhost's own words; what to check goes to the admin log (admin_log()).
 * - Every URL the module hands payhost is built from the shop URL in its own settings, never from
 *   the request: ecshop's $ecs->url() takes X-Forwarded-Host first and the path of the running
 *   script, so a phone (redirected to mobile/) or one forged header would move the webhook.
 * - respond() (respond.php?code=payhost_alipay): the buyer's return, signed by payhost with this
 *   merchant's secret (merchant id, order, status and time signed; older than 10 minutes is
 *   refused). It asks payhost for the payment's status; while Alipay's notify is still pending the
 *   buyer is told the payment is being confirmed and the page re-checks a few times, never "failed";
 *   a payment the shop cannot take (an order merged away or deleted, a top-up cancelled or already
 *   credited) is named as such: paid, contact the shop.
 * - webhook() (payhost_notify.php, its own endpoint): payhost's signed webhook. It answers 2xx only
 *   when the order is paid in the shop, or when a payment that cannot pay it (another amount than
 *   the order's) is noted on the order for the owner, so payhost retries anything that could not
 *   be applied, and lists for the operator what never can be (an order or top-up the shop no
 *   longer has or expects: see settle()).
 *
 * The order is paid once: order_paid() runs under a MySQL named lock per pay_log row, and only the
 * caller that saw pay_log.is_paid change from 0 to 1 counts as having paid it (see settle()); a
 * second payment of a paid row is noted on the order for the owner (extra_payment()), and so is a
 * payment of an amount the order no longer has (amount_differs()), which leaves it unpaid. A
 * payment ecshop's order_paid() would swallow (a deleted order, or a balance top-up whose
 * user_account row is deleted or already credited) never reaches it (settle()).
 * Every signature is compared in constant time (payhost_alipay_equals()); no secret is logged.
 */

if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

// The module's texts in the shop's language; zh_cn when the shop's language has no file of this
// module (without the labels and the *_range options, ecshop's payment_edit.htm renders empty
// selects, and admin/payment.php then pairs every later value with the wrong setting).
$payment_lang = ROOT_PATH . 'languages/' . $GLOBALS['_CFG']['lang'] . '/payment/payhost_alipay.php';
if (!file_exists($payment_lang)) {
    $payment_lang = ROOT_PATH . 'languages/zh_cn/payment/payhost_alipay.php';
}
if (file_exists($payment_lang)) {
    global $_LANG;
    include_once($payment_lang);
}

/* 模块的基本信息 (the admin's list of payment modules) */
if (isset($set_modules) && $set_modules == true) {
    $i = isset($modules) ? count($modules) : 0;
    $modules[$i]['code'] = basename(__FILE__, '.php');
    $modules[$i]['desc'] = 'payhost_alipay_desc';
    $modules[$i]['is_cod'] = '0';
    $modules[$i]['is_online'] = '1';
    $modules[$i]['author'] = 'payhost';
    $modules[$i]['website'] = 'https://www.alipay.com';
    $modules[$i]['version'] = '0.3.0';
    $modules[$i]['config'] = array(
        array('name' => 'alipay_api', 'type' => 'select', 'value' => 'mapi'),
        array('name' => 'alipay_account', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_key', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_partner', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_app_id', 'type' => 'text', 'value' => ''),
        // Keys are multi-line PEM: ecshop 2.7.3's admin/templates/payment_edit.htm renders a `textarea` config
        // as <textarea>; a one-line text input would drop the PEM's line breaks when pasted.
        array('name' => 'alipay_app_private_key', 'type' => 'textarea', 'value' => ''),
        array('name' => 'alipay_public_key', 'type' => 'textarea', 'value' => ''),
        array('name' => 'alipay_gateway', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_mode', 'type' => 'select', 'value' => 'b2c'),
        array('name' => 'c2c_sellers', 'type' => 'text', 'value' => ''),
        array('name' => 'shop_url', 'type' => 'text', 'value' => ''),
        array('name' => 'payhost_url', 'type' => 'text', 'value' => 'http://127.0.0.1:8080'),
        array('name' => 'payhost_api_token', 'type' => 'text', 'value' => ''),
        array('name' => 'payhost_shop_secret', 'type' => 'text', 'value' => ''),
    );
    if (isset($_REQUEST['act']) && $_REQUEST['act'] === 'get_config') {
        // The first-run wizard (admin/index.php?act=first, setting_first.htm) draws the fields
        // with admin/payment.php act=get_config, which has an input for 'text' and 'select' only
        // but the hidden cfg_name[]/cfg_type[] for every field: a textarea there would pair every
        // later value with the wrong name (admin/index.php act=second saves them by position).
        // There the keys are one-line inputs (payhost reads a key pasted in one line); the edit
        // page (act=edit takes the type from this list, not from the saved one) has textareas.
        foreach ($modules[$i]['config'] as $k => $item) {
            if ($item['type'] === 'textarea') {
                $modules[$i]['config'][$k]['type'] = 'text';
            }
        }
    }
    return;
}

/** Whether two amounts in yuan ('12.5', '12.50') are the same number of fen. */
function payhost_alipay_same_amount($a, $b)
{
    return (int)round((float)$a * 100) === (int)round((float)$b * 100);
}

/**
 * What a failed call to payhost means for the buyer, by payhost's error.code (host/src/http/
 * error.rs, service.rs) before its HTTP status:
 * - 'settings', what only the owner can fix: the token refused (401 unauthorized, 403 forbidden),
 *   a merchant payhost does not have or that has no settings yet, settings payhost refuses
 *   (invalid_settings, merchant_misconfigured), Alipay refusing the merchant's keys or app
 *   (payhost_alipay_gateway_settings()), a request field built from a setting (the shop URL, a
 *   C2C seller), a PHP that cannot reach payhost at all;
 * - 'order', this order's data refused (invalid_order, invalid_request: the amount, the subject…);
 * - 'down', payhost not answering (nothing listening, no answer in time), busy (429) or failing
 *   (any other 5xx: its database, Alipay not reachable or not understood) — try again later;
 * - 'other', the rest (an amount conflict, 409).
 * Whatever the kind, the buyer never reads payhost's own words nor its correlation id (its
 * message relays Alipay's text): those go to the admin's log (payhost_alipay::admin_log()).
 */
function payhost_alipay_failure_kind($status, $answer)
{
    $error = (is_array($answer) && isset($answer['error']) && is_array($answer['error'])) ? $answer['error'] : array();
    $code = isset($error['code']) ? (string)$error['code'] : '';
    $field = isset($error['field']) ? (string)$error['field'] : '';
    $message = isset($error['message']) ? (string)$error['message'] : '';
    if ($status == 0) {
        return $code === 'no_http_client' ? 'settings' : 'down';
    }
    if ($status == 401 || $status == 403 || in_array($code, array('unauthorized', 'forbidden', 'unknown_merchant',
        'merchant_not_configured', 'merchant_misconfigured', 'invalid_settings', 'gateway_bad_signature'), true)
        || payhost_alipay_gateway_settings($code, $message)) {
        return 'settings';
    }
    if ($code === 'invalid_request' && in_array($field, array('return_url', 'merchant_url', 'shop_webhook_url',
        'seller_email', 'seller_id'), true)) {
        // Built from the settings (本店网址, the C2C sellers), not from the order.
        return 'settings';
    }
    if ($code === 'invalid_order' || $code === 'invalid_request') {
        return 'order';
    }
    if ($status == 429 || $status >= 500) {
        return 'down';
    }
    return 'other';
}

/**
 * Whether payhost's gateway_<code> is Alipay refusing the merchant rather than the payment: an
 * open-platform ISV error (sub code isv.*: the APPID, the app's key or signature, the server's
 * clock; payhost names it in its message, "… (isv.invalid-signature) …", or in the code),
 * 40006 (the app has not signed for the product), and the legacy interface's ILLEGAL_PARTNER,
 * *SIGN* and HAS_NO_PRIVILEGE (plugin/src/model.rs GatewayError::hint() names the same ones).
 */
function payhost_alipay_gateway_settings($code, $message)
{
    if (strpos($code, 'gateway_') !== 0) {
        return false;
    }
    $c = strtoupper(substr($code, 8));
    return strpos($c, 'ISV.') === 0 || stripos($message, '(isv.') !== false || $c === '40006'
        || $c === 'ILLEGAL_PARTNER' || strpos($c, 'SIGN') !== false || strpos($c, 'HAS_NO_PRIVILEGE') !== false;
}

/** Constant-time comparison of two strings (PHP 5.2 has no hash_equals). */
function payhost_alipay_equals($known, $given)
{
    $known = (string)$known;
    $given = (string)$given;
    $n = strlen($known);
    $diff = $n ^ strlen($given);
    for ($i = 0; $i < $n; $i++) {
        $g = $i < strlen($given) ? ord($given[$i]) : 0;
        $diff |= ord($known[$i]) ^ $g;
    }
    return $diff === 0;
}

/**
 * How call() reaches $url: 'fopen' (file_get_contents() with a stream context), 'curl', or '' when
 * this PHP has neither. file_get_contents() only on PHP >= 5.2.10 (the stream option ignore_errors,
 * without which a 4xx answer's body is dropped, and get_code() reads payhost's 404 unknown_payment
 * body), with allow_url_fopen on and, for an https URL, PHP's https stream wrapper (openssl) and
 * PHP 5.6 or later when curl is there (an older https stream checks no certificate); otherwise
 * curl when the extension is loaded. The facts are parameters so the choice can be
 * checked for any PHP (tests/php/ecshop_module_unit.php).
 */
function payhost_alipay_pick_transport($https, $php_version, $allow_url_fopen, $https_wrapper, $has_curl)
{
    $fopen = strtolower(trim((string)$allow_url_fopen));
    $fopen_on = $fopen !== '' && $fopen !== '0' && $fopen !== 'off' && $fopen !== 'false' && $fopen !== 'no';
    // Before PHP 5.6 an https stream checks no certificate (the API token and the settings would
    // go to whoever answers): curl, which checks it, whenever it is there.
    $unchecked = $https && version_compare($php_version, '5.6.0', '<');
    if ($fopen_on && version_compare($php_version, '5.2.10', '>=') && (!$https || $https_wrapper)
        && !($unchecked && $has_curl)) {
        return 'fopen';
    }
    return $has_curl ? 'curl' : '';
}

/** payhost_alipay_pick_transport() for this PHP. */
function payhost_alipay_transport($url)
{
    $https = strtolower(substr($url, 0, 8)) === 'https://';
    $wrappers = function_exists('stream_get_wrappers') ? stream_get_wrappers() : array();
    return payhost_alipay_pick_transport($https, PHP_VERSION, ini_get('allow_url_fopen'),
        in_array('https', $wrappers), function_exists('curl_init'));
}

/**
 * $text as a JavaScript string literal inside a <script> element: quotes and backslashes escaped,
 * and <, > and & as \x escapes, so the text can neither end the element nor be read as markup.
 */
function payhost_alipay_js_string($text)
{
    return '"' . str_replace(
        array('\\', '"', "'", '<', '>', '&', "\r", "\n"),
        array('\\\\', '\\"', "\\'", '\\x3c', '\\x3e', '\\x26', '\\r', '\\n'),
        (string)$text
    ) . '"';
}

/**
 * At most $max bytes of UTF-8 text, never cutting a character in two; bytes that are not UTF-8
 * (a header in another charset) are dropped first, as json_encode() refuses them.
 */
function payhost_alipay_utf8_cut($text, $max)
{
    $text = (string)$text;
    if (!preg_match('//u', $text)) {
        $text = preg_replace('/[\x80-\xFF]/', '', $text);
    }
    if (strlen($text) <= $max) {
        return $text;
    }
    $text = substr($text, 0, $max);
    // Drop a last character whose bytes were cut off (its lead byte and continuation bytes).
    return preg_replace('/(?:[\xC0-\xDF]|[\xE0-\xEF][\x80-\xBF]?|[\xF0-\xF7][\x80-\xBF]{0,2})$/', '', $text);
}

class payhost_alipay
{
    /** While true, a request that ends is a database error's exit (guard_begin(), guard_shutdown()). */
    var $guarded = false;
    var $guard_level = 0;
    var $guard_registered = false;
    /** Set by a call that got no answer in time: the page's later calls give up at once. */
    var $payhost_stuck = 0;

    /** PHP 5 and later call __construct; ecshop's own modules keep the PHP 4 name too. */
    function __construct()
    {
    }

    function payhost_alipay()
    {
        $this->__construct();
    }

    /* ---------------------------------------------------------------- settings and HTTP */

    /** The values as saved in the admin, trimmed; the payhost merchant id and webhook key. */
    function settings($payment)
    {
        $s = array();
        $names = array('alipay_api', 'alipay_account', 'alipay_key', 'alipay_partner', 'alipay_app_id',
            'alipay_app_private_key', 'alipay_public_key', 'alipay_gateway', 'alipay_mode', 'c2c_sellers', 'shop_url',
            'payhost_url', 'payhost_api_token', 'payhost_shop_secret');
        foreach ($names as $name) {
            $s[$name] = (is_array($payment) && isset($payment[$name])) ? trim($payment[$name]) : '';
        }
        // A module saved before the choice existed has no alipay_api: the legacy interface.
        $s['openapi'] = $s['alipay_api'] === 'openapi';
        $s['payhost_url'] = rtrim($s['payhost_url'], '/');
        // The shop's root URL as the owner typed it (ends with '/'); '' when missing or not http(s).
        $s['shop_url'] = preg_match('#^https?://[^/?\#]+(/[^?\#]*)?$#i', $s['shop_url']) ? rtrim($s['shop_url'], '/') . '/' : '';
        // The payhost merchant: ecshop-<合作者身份ID>, or ecshop-<APPID> for the open platform.
        $s['merchant'] = 'ecshop-' . preg_replace('/[^0-9A-Za-z]/', '', $s['openapi'] ? $s['alipay_app_id'] : $s['alipay_partner']);
        // The key of payhost's signed returns and webhooks: the merchant's own secret, created with
        // the merchant (payhost merchant add). A module installed before that has none: it keeps
        // the key it derived from the Alipay key. Either way configure() gives payhost this key,
        // so a secret pasted later replaces the derived one there too. Neither (a module saved before
        // its fields were filled in): no key at all, never one derived from empty text, which
        // anyone could compute and sign a forged webhook with; nothing is verified until one is.
        $derive_from = $s['openapi'] ? $s['alipay_app_private_key'] : $s['alipay_key'];
        if ($s['payhost_shop_secret'] !== '') {
            $s['webhook_secret'] = $s['payhost_shop_secret'];
        } elseif ($derive_from !== '' && $s['merchant'] !== 'ecshop-') {
            $s['webhook_secret'] = hash_hmac('sha256', 'payhost-shop-webhook:' . $s['merchant'], $derive_from);
        } else {
            $s['webhook_secret'] = '';
        }
        return $s;
    }

    /**
     * One JSON call to payhost: array(HTTP status or 0, decoded body or null). file_get_contents()
     * or curl, as payhost_alipay_transport() picks; neither usable → 0 with error.code
     * "no_http_client" (shown as what this PHP lacks). No answer within $timeout seconds (5 s:
     * the order page's calls and the buyer's return, not the buyer's patience): 0 with error.code
     * "timeout" (shown as "payhost did not answer in time").
     */
    function call($s, $method, $path, $body = null, $timeout = 5)
    {
        $url = $s['payhost_url'] . $path;
        $content = $body === null ? '' : json_encode($body);
        $headers = array('Authorization: Bearer ' . $s['payhost_api_token'], 'Accept: application/json');
        if ($body !== null) {
            $headers[] = 'Content-Type: application/json';
        }
        if ($this->payhost_stuck > 0) {
            // One wait per page: an order page (get_code() makes up to five calls) is not held
            // five times as long by a payhost that answers nothing.
            return array(0, array('error' => array('code' => 'timeout',
                'message' => 'no answer within ' . $this->payhost_stuck . ' s (an earlier call of this page)')));
        }
        $status = 0;
        $raw = false;
        $started = microtime(true);
        $transport = payhost_alipay_transport($url);
        if ($transport === '') {
            return array(0, array('error' => array('code' => 'no_http_client',
                'message' => 'PHP ' . PHP_VERSION . ' needs the curl extension (or PHP >= 5.2.10 with allow_url_fopen on)')));
        }
        if ($transport === 'fopen') {
            $context = stream_context_create(array('http' => array(
                'method' => $method,
                'header' => implode("\r\n", $headers) . "\r\n",
                'content' => $content,
                'ignore_errors' => true,
                'timeout' => $timeout,
            )));
            $raw = @file_get_contents($url, false, $context);
            if (isset($http_response_header) && is_array($http_response_header)) {
                foreach ($http_response_header as $line) {
                    if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m)) {
                        $status = (int)$m[1];
                    }
                }
            }
        } else {
            $ch = curl_init($url);
            curl_setopt($ch, CURLOPT_CUSTOMREQUEST, $method);
            curl_setopt($ch, CURLOPT_HTTPHEADER, $headers);
            curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
            curl_setopt($ch, CURLOPT_CONNECTTIMEOUT, $timeout);
            curl_setopt($ch, CURLOPT_TIMEOUT, $timeout);
            if ($body !== null) {
                curl_setopt($ch, CURLOPT_POSTFIELDS, $content);
            }
            $raw = curl_exec($ch);
            $status = $raw === false ? 0 : (int)curl_getinfo($ch, CURLINFO_HTTP_CODE);
            curl_close($ch);
        }
        if ($status == 0 && microtime(true) - $started >= $timeout - 0.2) {
            // Connected (a refused connection fails at once) but no answer in time.
            $this->payhost_stuck = max(1, intval($timeout));
            return array(0, array('error' => array('code' => 'timeout', 'message' => 'no answer within ' . intval($timeout) . ' s')));
        }
        $decoded = ($raw === false || $raw === '') ? null : json_decode($raw, true);
        return array($status, is_array($decoded) ? $decoded : null);
    }

    /**
     * What went wrong, for the admin's log (shop charset): error_words(), then payhost's own
     * English words in brackets for support (its status, code and message; a 409's message names
     * the seller: only its code is kept).
     */
    function error_text($status, $answer)
    {
        $error = (is_array($answer) && isset($answer['error']) && is_array($answer['error'])) ? $answer['error'] : array();
        $code = isset($error['code']) ? (string)$error['code'] : '';
        $message = isset($error['message']) ? (string)$error['message'] : '';
        if ($status == 409) {
            $message = '';
        }
        $detail = 'payhost HTTP ' . intval($status) . ($code !== '' ? ' ' . $code : '') . ($message !== '' ? ': ' . $message : '');
        return $this->error_words($status, $answer) . ' (' . $this->from_utf8($detail) . ')';
    }

    /**
     * What went wrong, in the shop's charset: a text of the language file chosen by the HTTP
     * status and payhost's error.code (naming the admin field when payhost names one); none of
     * payhost's own words (merchant_not_configured: the settings were never saved).
     */
    function error_words($status, $answer)
    {
        $error = (is_array($answer) && isset($answer['error']) && is_array($answer['error'])) ? $answer['error'] : array();
        $code = isset($error['code']) ? (string)$error['code'] : '';
        $field = isset($error['field']) ? (string)$error['field'] : '';
        $message = isset($error['message']) ? (string)$error['message'] : '';
        if ($status == 0 && $code === 'no_http_client') {
            return $this->lang('payhost_err_no_http_client');
        }
        if ($status == 0 && $code === 'timeout') {
            return $this->lang('payhost_err_timeout');
        }
        if ($status == 0) {
            return $this->lang('payhost_err_unreachable');
        }
        if ($status == 401) {
            return $this->lang('payhost_err_token');
        }
        if ($status == 403 && $field === '') {
            return $this->lang('payhost_err_forbidden');
        }
        if ($code === 'unknown_merchant') {
            return $this->lang('payhost_err_unknown_merchant');
        }
        if ($code === 'merchant_not_configured') {
            // A merchant slot whose shop has not saved its Alipay settings yet.
            return $this->lang('payhost_err_not_configured');
        }
        if ($status == 409) {
            return $this->lang('payhost_err_conflict');
        }
        if ($code === 'invalid_order' || ($code === 'invalid_request' && payhost_alipay_failure_kind($status, $answer) === 'order')) {
            // This order's data (the amount, the subject…), not the settings.
            return sprintf($this->lang('payhost_err_order'), $this->from_utf8($field));
        }
        if ($field !== '' && ($status == 400 || $status == 403 || $code === 'merchant_misconfigured')) {
            return sprintf($this->lang('payhost_err_field'), $this->field_label($field));
        }
        if (payhost_alipay_gateway_settings($code, $message) || $code === 'gateway_bad_signature') {
            return $this->lang('payhost_err_gateway_settings');
        }
        if ($status == 429 || $status == 503) {
            return $this->lang('payhost_err_busy');
        }
        if ($status == 502 || $status == 504) {
            return $this->lang('payhost_err_gateway');
        }
        return sprintf($this->lang('payhost_err_other'), intval($status));
    }

    /** The admin label (shop charset) of the setting behind a field payhost names. */
    function field_label($field)
    {
        $names = array('partner' => 'alipay_partner', 'key' => 'alipay_key', 'seller_email' => 'alipay_account',
            'mode' => 'alipay_mode', 'api' => 'alipay_api', 'app_id' => 'alipay_app_id',
            'app_private_key' => 'alipay_app_private_key', 'alipay_public_key' => 'alipay_public_key',
            'seller_id' => 'alipay_partner', 'gateway' => 'alipay_gateway', 'gateway_url' => 'alipay_gateway',
            'shop_webhook_url' => 'shop_url', 'return_url' => 'shop_url', 'merchant_url' => 'shop_url',
            'shop_webhook_secret' => 'payhost_shop_secret');
        return isset($names[$field]) ? $this->lang($names[$field]) : $this->from_utf8($field);
    }

    function shop_charset()
    {
        $charset = defined('EC_CHARSET') ? strtolower(EC_CHARSET) : 'utf-8';
        return $charset === 'utf8' ? 'utf-8' : $charset;
    }

    /** Text in the shop's charset, as UTF-8 for payhost. */
    function to_utf8($text)
    {
        return $this->convert($this->shop_charset(), 'utf-8', $text);
    }

    /** UTF-8 text (payhost's messages), in the shop's charset. */
    function from_utf8($text)
    {
        return $this->convert('utf-8', $this->shop_charset(), $text);
    }

    function convert($from, $to, $text)
    {
        if ($from === $to || $text === '' || !preg_match('/[\x80-\xFF]/', $text)) {
            return $text;
        }
        if (function_exists('ecs_iconv')) {
            return ecs_iconv($from, $to, $text);
        }
        if (function_exists('iconv')) {
            $converted = @iconv($from, $to . '//IGNORE', $text);
            if ($converted !== false) {
                return $converted;
            }
        }
        if (function_exists('mb_convert_encoding')) {
            return mb_convert_encoding($text, $to, $from);
        }
        return $text;
    }

    /**
     * HTML escaping that works in any ASCII-compatible shop charset: GBK and UTF-8 multi-byte
     * sequences never contain the five escaped bytes, so no charset has to be named (naming
     * 'UTF-8' for GBK text makes htmlspecialchars() return an empty string).
     */
    function esc($text)
    {
        return str_replace(array('&', '<', '>', '"', "'"), array('&amp;', '&lt;', '&gt;', '&quot;', '&#039;'), (string)$text);
    }

    /** A language entry (the language file is in the shop's charset). */
    function lang($key)
    {
        return isset($GLOBALS['_LANG'][$key]) ? $GLOBALS['_LANG'][$key] : $key;
    }

    /** A message for the buyer or the owner: the language entry and what went wrong (shop charset). */
    function message_box($lang_key, $detail)
    {
        $text = $this->lang($lang_key) . $detail;
        return '<div class="payhost-error" style="text-align:center;color:#c00">' . $this->esc($text) . '</div>';
    }

    /**
     * The buyer's message for a call to payhost that failed (payhost_alipay_failure_kind()):
     * payhost not answering, busy or failing → "支付暂时不可用，请稍后再试"; the settings → "支付宝
     * 设置有误…请联系商家", never which setting; this order's data refused → "这笔订单暂时无法发起
     * 支付…请联系商家"; anything else (an amount conflict) $lang_key and error_words(). Never
     * payhost's own words nor its correlation id (its message relays Alipay's text): every kind
     * goes to the admin's log with them (error_text(), admin_log()).
     */
    function failure_box($status, $answer, $lang_key)
    {
        $kind = payhost_alipay_failure_kind($status, $answer);
        $this->admin_log($this->lang($lang_key) . $this->error_text($status, $answer));
        if ($kind === 'down') {
            return $this->message_box('payhost_unavailable', '');
        }
        if ($kind === 'settings') {
            return $this->message_box('payhost_settings_wrong', '');
        }
        if ($kind === 'order') {
            return $this->message_box('payhost_order_refused', '');
        }
        return $this->message_box($lang_key, $this->error_words($status, $answer));
    }

    /** A settings problem the module finds itself: the text $lang_key in the admin's log, the buyer told only "settings wrong". */
    function settings_box($lang_key)
    {
        $this->admin_log($this->lang($lang_key));
        return $this->message_box('payhost_settings_wrong', '');
    }

    /**
     * A line for the shop's admins only: ecshop's admin log (管理员日志: admin/admin_logs.php lists
     * the admin_log table, under the logs_manage privilege; admin/includes/lib_main.php
     * admin_log() writes it, the front end has no such function), user_id 0 (no admin: its
     * LEFT JOIN on admin_user shows no name). log_info is varchar(255): cut to fit (never inside
     * a character). The same line within 10 minutes is not written again: an order page is
     * viewed again and again while payhost is down. Never a secret: error_text() names the
     * setting to check, payhost's status, code and words. Stored HTML-escaped (esc()): ecshop's
     * admin/templates/admin_logs.htm prints {$list.log_info} as it is, and the line carries
     * payhost's words, which relay Alipay's; an entity cut at the 255th character is dropped.
     */
    function admin_log($text)
    {
        $db = $GLOBALS['db'];
        $table = $GLOBALS['ecs']->table('admin_log');
        $info = implode('', array_slice($this->note_chars($this->esc('payhost_alipay: ' . str_replace(array("\r", "\n"), ' ', $text))), 0, 255));
        $info = preg_replace('/&[#0-9a-z]*$/', '', $info);
        $now = function_exists('gmtime') ? gmtime() : time();
        $seen = $db->getOne('SELECT COUNT(*) FROM ' . $table . " WHERE log_info = '" . addslashes($info) . "' AND log_time > '"
            . ($now - 600) . "'");
        if ($seen === false || $seen === null || $seen === '' || $seen > 0) {
            return;
        }
        $ip = function_exists('real_ip') ? real_ip() : (isset($_SERVER['REMOTE_ADDR']) ? $_SERVER['REMOTE_ADDR'] : '');
        $db->query('INSERT INTO ' . $table . " (log_time, user_id, log_info, ip_address) VALUES ('" . $now . "', 0, '"
            . addslashes($info) . "', '" . addslashes(substr((string)$ip, 0, 15)) . "')");
    }

    /**
     * payhost's settings_digest of these settings: hex HMAC-SHA256 (key: the shop secret) over
     * "name=value\n" for each non-empty setting sorted by name, then "shop_webhook_url=<url>\n".
     */
    function settings_digest($secret, $fields, $webhook_url)
    {
        ksort($fields, SORT_STRING);
        $text = '';
        foreach ($fields as $k => $v) {
            if ((string)$v !== '') {
                $text .= $k . '=' . $v . "\n";
            }
        }
        return hash_hmac('sha256', $text . 'shop_webhook_url=' . $webhook_url . "\n", $secret);
    }

    /* ---------------------------------------------------------------- paying */

    /**
     * The chosen interface's settings as payhost names them. The open platform's: the APPID, the
     * app's private key, Alipay's public key, the seller (合作者身份ID, 2088…) and, when filled in,
     * the gateway (Alipay's sandbox); empty ones are left out so payhost's defaults apply.
     */
    function alipay_fields($s)
    {
        if (!$s['openapi']) {
            return array(
                'partner' => $s['alipay_partner'],
                'key' => $s['alipay_key'],
                'seller_email' => $s['alipay_account'],
                'mode' => $s['alipay_mode'] === 'c2c' ? 'c2c' : 'b2c',
            );
        }
        $fields = array(
            'api' => 'openapi',
            'app_id' => $s['alipay_app_id'],
            'app_private_key' => $s['alipay_app_private_key'],
            'alipay_public_key' => $s['alipay_public_key'],
            'seller_id' => $s['alipay_partner'],
            'gateway' => $s['alipay_gateway'],
        );
        foreach ($fields as $k => $v) {
            if ($v === '') {
                unset($fields[$k]);
            }
        }
        return $fields;
    }

    /**
     * Gives payhost the fields of the admin form when they changed: payhost returns the digest of
     * the settings it holds, and they are sent (PUT) only when it differs from theirs. True, or
     * payhost's answer array(HTTP status, body) for failure_box().
     */
    function configure($s)
    {
        $fields = $this->alipay_fields($s);
        // The webhook endpoint at the shop's root, also when the order page is mobile/order.php.
        $webhook = $s['shop_url'] . 'payhost_notify.php';
        $path = '/v1/merchants/' . rawurlencode($s['merchant']);
        $digest = $this->settings_digest($s['webhook_secret'], $fields, $webhook);
        // 5 s, as every call of the order page: get_order_detail() runs get_code() on each view of
        // an unpaid order, and a stuck payhost must not hold that page for long.
        list($status, $held) = $this->call($s, 'GET', $path, null, 5);
        if ($status == 0) {
            // Not reached, or no answer: sending the settings would only wait again.
            return array($status, $held);
        }
        if ($status == 200 && isset($held['settings_digest']) && payhost_alipay_equals($digest, $held['settings_digest'])) {
            return true;
        }
        // Always the key this module verifies with: payhost's digest is keyed with the secret it
        // holds, so a secret pasted after a first save (or a derived one replaced) differs here
        // and is sent; unchanged settings and secret are not sent again.
        $body = $fields;
        $body['shop_webhook_url'] = $webhook;
        $body['shop_webhook_secret'] = $s['webhook_secret'];
        list($status, $answer) = $this->call($s, 'PUT', $path, $body, 5);
        if ($status != 200) {
            return array($status, $answer);
        }
        return true;
    }

    /**
     * C2C: the seller of an order. ecshop sells through 供货商 (suppliers, goods.suppliers_id); the
     * admin maps each supplier to its Alipay account in c2c_sellers ("1=seller@example.com,
     * 2=13800000000"; the open platform names sellers by their 2088… user id). Goods without a
     * supplier (0) are the shop's own: alipay_account (open platform: alipay_partner).
     * Returns array(account, '') or array('', error language key).
     */
    function c2c_seller($s, $order)
    {
        // The shop's own seller: the Alipay account, or (open platform) the 2088… 合作者身份ID.
        $own = $s['openapi'] ? $s['alipay_partner'] : $s['alipay_account'];
        $map = array();
        foreach (preg_split('/[,;\s]+/', $s['c2c_sellers']) as $pair) {
            $kv = explode('=', $pair, 2);
            if (count($kv) == 2 && trim($kv[0]) !== '' && trim($kv[1]) !== '') {
                $map[intval($kv[0])] = trim($kv[1]);
            }
        }
        if (empty($order['order_id'])) {
            // A balance top-up (user.php) has no goods: the shop's own account.
            return array($own, '');
        }
        $ids = $GLOBALS['db']->getCol('SELECT DISTINCT g.suppliers_id FROM ' . $GLOBALS['ecs']->table('order_goods') . ' AS og LEFT JOIN '
            . $GLOBALS['ecs']->table('goods') . " AS g ON g.goods_id = og.goods_id WHERE og.order_id = '" . intval($order['order_id']) . "'");
        $sellers = array();
        foreach ((array)$ids as $id) {
            $id = intval($id);
            if ($id > 0 && !isset($map[$id])) {
                return array('', 'payhost_c2c_unmapped');
            }
            $sellers[$id > 0 ? $map[$id] : $own] = true;
        }
        if (count($sellers) > 1) {
            return array('', 'payhost_c2c_mixed');
        }
        $keys = array_keys($sellers);
        return array(count($keys) ? $keys[0] : $own, '');
    }

    /**
     * 生成支付代码 (flow.php?step=done, user.php): the pay button, or a visible message.
     * @param array $order   订单信息 (order_sn, log_id, order_amount[, order_id])
     * @param array $payment 支付方式信息 (the saved settings)
     */
    function get_code($order, $payment)
    {
        // Nothing to pay online: lib_transaction.php get_order_detail() asks for the button of any
        // unpaid order, also one whose amount due is 0 (paid from the balance, then set back to
        // unpaid in the admin: order_amount = money_paid = 0). No payment of 0.00 is made.
        if ((float)$order['order_amount'] <= 0) {
            return '';
        }
        // What is wrong with the settings is for the owner (the admin's log, admin_log()); the
        // buyer is told only that the settings are wrong, or that paying is unavailable for now.
        $s = $this->settings($payment);
        if ($s['shop_url'] === '') {
            return $this->settings_box('payhost_shop_url_error');
        }
        if (strpos($s['payhost_api_token'], 'phm_') !== 0) {
            // The operator's token reaches every merchant: a shop's database must not hold it.
            return $this->settings_box('payhost_token_not_merchant');
        }
        if ($s['webhook_secret'] === '') {
            return $this->settings_box('payhost_no_secret');
        }
        $configured = $this->configure($s);
        if ($configured !== true) {
            return $this->failure_box($configured[0], $configured[1], 'payhost_config_error');
        }
        // An unpaid order without an unpaid pay_log row: the owner set it back to unpaid in the
        // admin (admin/order.php operation 'unpay' leaves its row paid), so get_paylog_id() found
        // none (0). A payment under row 0 could never be applied (settle() finds no row): a new
        // row is made, as update_pay_log() does when there is none.
        if (intval($order['log_id']) <= 0 && !empty($order['order_id'])) {
            $order['log_id'] = $this->new_pay_log($order);
            if (intval($order['log_id']) <= 0) {
                $this->admin_log('pay_log: no unpaid row of order ' . intval($order['order_id']) . ' could be made');
                return $this->message_box('payhost_unavailable', '');
            }
        }
        // out_trade_no = order_sn-log_id-amount in fen: ecshop keeps the log_id when the amount of
        // an unpaid order changes (admin/order.php update_pay_log(), user.php act=pay), and
        // payhost refuses an order number it knows with another amount (409). settle() reads the
        // log_id back; check_money() compares with the log's amount of the moment.
        $fen = sprintf('%.0f', round((float)$order['order_amount'] * 100));
        $base = $order['order_sn'] . '-' . intval($order['log_id']) . '-' . $fen;
        $ua = isset($_SERVER['HTTP_USER_AGENT']) ? $this->to_utf8($_SERVER['HTTP_USER_AGENT']) : '';
        $request = array(
            'out_trade_no' => $base,
            'subject' => $this->to_utf8($order['order_sn'] . ' ' . $GLOBALS['_CFG']['shop_name']),
            'total_fee' => number_format((float)$order['order_amount'], 2, '.', ''),
            'return_url' => $s['shop_url'] . 'respond.php?code=' . basename(__FILE__, '.php'),
            // 取消 at the cashier comes back to the order (a top-up: the account's log).
            'merchant_url' => empty($order['order_id'])
                ? $s['shop_url'] . 'user.php?act=account_log'
                : $s['shop_url'] . 'user.php?act=order_detail&order_id=' . intval($order['order_id']),
            // payhost refuses a User-Agent over 1024 bytes.
            'user_agent' => payhost_alipay_utf8_cut($ua, 1024),
            'product' => 'auto',
        );
        if ($s['alipay_mode'] === 'c2c') {
            list($seller, $problem) = $this->c2c_seller($s, $order);
            if ($problem !== '') {
                return $this->message_box($problem, '');
            }
            $request['seller_email'] = $seller;
        }
        $path = '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments';
        // ecshop shows the same unpaid log_id again (lib_clips.php get_paylog_id()): when the
        // payment of that number was closed (timed out, closed by the seller, refunded), the
        // buyer pays under the next number, order_sn-log_id-fen-2, -3, … (settle() maps each
        // back to the log_id).
        for ($attempt = 1; $attempt <= 9; $attempt++) {
            $request['out_trade_no'] = $attempt == 1 ? $base : $base . '-' . $attempt;
            list($status, $known) = $this->call($s, 'GET', $path . '/' . rawurlencode($request['out_trade_no']), null, 5);
            $state = ($status == 200 && isset($known['status'])) ? (string)$known['status'] : '';
            if ($state === 'TRADE_CLOSED' || $state === 'REFUNDED') {
                continue;
            }
            if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED' || $state === 'PARTIALLY_REFUNDED') {
                return $this->paid_message($order, $known);
            }
            if ($status == 404 && isset($known['error']['code']) && $known['error']['code'] === 'unknown_payment') {
                // A new number of this pay_log row (a new amount, or after a closed payment): the
                // row's other payments first (see older_payments()).
                $older = $this->older_payments($s, $order, $request['out_trade_no']);
                if ($older !== true) {
                    return $older;
                }
            } elseif ($state === '') {
                return $this->failure_box($status, $known, 'payhost_pay_error');
            }
            list($status, $answer) = $this->call($s, 'POST', $path, $request, 5);
            if ($status == 400 && isset($answer['error']['message']) && strpos($answer['error']['message'], 'unknown field') !== false) {
                // A payhost that predates user_agent/product: the same request without them.
                unset($request['user_agent'], $request['product']);
                list($status, $answer) = $this->call($s, 'POST', $path, $request, 5);
            }
            if ($status != 201 && $status != 200) {
                return $this->failure_box($status, $answer, 'payhost_pay_error');
            }
            if (!empty($answer['pay_url'])) {
                $this->align_pay_log($order);
                return $this->pay_button($answer['pay_url']);
            }
            $state = isset($answer['status']) ? (string)$answer['status'] : '';
            if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED' || $state === 'PARTIALLY_REFUNDED') {
                return $this->paid_message($order, $answer);
            }
            if ($state !== 'TRADE_CLOSED' && $state !== 'REFUNDED') {
                // An answer this module does not know: its words are for the admin's log only.
                $this->admin_log($this->lang('payhost_pay_error') . $this->from_utf8('payhost HTTP ' . intval($status)
                    . ($state !== '' ? ' status ' . $state : '') . ': no pay_url'));
                return $this->message_box('payhost_unavailable', '');
            }
        }
        return $this->message_box('payhost_closed_too_often', '');
    }

    /**
     * The unpaid pay_log row of an order brought to the amount the buyer is asked for. ecshop
     * changes an unpaid order's amount without its row where the buyer does it (user.php
     * act_edit_payment: another payment method and its fee; act_edit_surplus: part of the
     * balance), and check_money() compares a payment with the row: the buyer would pay what the
     * order page shows and the order stay unpaid. The owner's changes are brought in line by
     * admin/order.php update_pay_log(); this is the same statement. A top-up's row (no order) is
     * left as it is.
     */
    function align_pay_log($order)
    {
        $order_id = isset($order['order_id']) ? intval($order['order_id']) : 0;
        $log_id = isset($order['log_id']) ? intval($order['log_id']) : 0;
        if ($order_id <= 0 || $log_id <= 0) {
            return;
        }
        $amount = number_format((float)$order['order_amount'], 2, '.', '');
        $GLOBALS['db']->query('UPDATE ' . $GLOBALS['ecs']->table('pay_log') . " SET order_amount = '" . $amount
            . "' WHERE log_id = '" . $log_id . "' AND order_id = '" . $order_id . "' AND order_type = '" . PAY_ORDER
            . "' AND is_paid = 0");
    }

    /**
     * A new unpaid pay_log row of an order (lib_clips.php insert_pay_log(), as flow.php and
     * admin/order.php update_pay_log() make one); its log_id, 0 when it cannot be made.
     */
    function new_pay_log($order)
    {
        if (!function_exists('insert_pay_log') && file_exists(ROOT_PATH . 'includes/lib_clips.php')) {
            include_once(ROOT_PATH . 'includes/lib_clips.php');
        }
        if (!function_exists('insert_pay_log')) {
            return 0;
        }
        return intval(insert_pay_log(intval($order['order_id']), $order['order_amount'], PAY_ORDER, 0));
    }

    /**
     * Before a pay_log row gets a new order number: its other payments at payhost, found by the
     * old format (order_sn . log_id) and payhost's ledger (q: order_sn-log_id-, this format's other
     * amounts and retries). One of them paid (Alipay's notify reached payhost, but the shop has
     * not applied it, e.g. it paid the amount before an admin's change): the buyer is told the
     * order is paid, and no new payment is made. One still unpaid: closed at Alipay when the
     * merchant uses the open platform (alipay.trade.close), so the buyer cannot pay both; when
     * payhost answers that it was paid meanwhile (409), the order is paid, as above; when the
     * close fails, no new payment either (the message says why; the buyer tries again later).
     * The legacy interface has no close call: payhost would only close its own record, and Alipay
     * would still take the payment while payhost ignored its notify; those stay open, and settle()
     * notes on the order any second payment that reaches the shop.
     * Returns true (go on) or the message to show.
     */
    function older_payments($s, $order, $new_no)
    {
        $log_id = (string)intval($order['log_id']);
        $order_sn = (string)$order['order_sn'];
        $merchant = rawurlencode($s['merchant']);
        $found = array();
        $old = $order_sn . $log_id;
        $p = $this->payment_at_payhost($s, $old, 5);
        if ($p !== null) {
            $found[] = $p;
        }
        list($status, $list) = $this->call($s, 'GET', '/v1/payments?merchant=' . $merchant . '&q='
            . rawurlencode($order_sn . '-' . $log_id . '-') . '&limit=200', null, 5);
        if ($status == 200 && isset($list['payments']) && is_array($list['payments'])) {
            foreach ($list['payments'] as $p) {
                $found[] = $p;
            }
        }
        foreach ($found as $p) {
            if (!is_array($p) || !isset($p['out_trade_no'], $p['status']) || $p['out_trade_no'] === $new_no) {
                continue;
            }
            // Only this row's (the payment's own subject names the order).
            $words = explode(' ', isset($p['subject']) ? (string)$p['subject'] : '', 2);
            if ($words[0] !== $order_sn || $this->log_id_of($p['out_trade_no'], $p['subject']) !== $log_id) {
                continue;
            }
            $state = (string)$p['status'];
            if ($state === 'WAIT_BUYER_PAY' && $s['openapi']) {
                list($status, $answer) = $this->call($s, 'POST', '/v1/merchants/' . $merchant . '/payments/'
                    . rawurlencode($p['out_trade_no']) . '/close', array(), 5);
                if ($status == 409) {
                    // Not closable: paid (or closed) while we asked.
                    $now = $this->payment_at_payhost($s, $p['out_trade_no'], 5);
                    $state = $now === null ? '' : (string)$now['status'];
                    if ($now !== null) {
                        $p = $now;
                    }
                } elseif ($status != 200) {
                    return $this->failure_box($status, $answer, 'payhost_pay_error');
                }
            }
            if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED' || $state === 'PARTIALLY_REFUNDED') {
                return $this->paid_message($order, $p);
            }
        }
        return true;
    }

    /**
     * What the order page says when payhost has a paid payment of this pay_log row (no new payment
     * is made). A row the shop has not paid yet is paid here, by the same locked, idempotent
     * settle() the webhook and the buyer's return use: payhost's webhook may have been given up
     * (dead-lettered after days of a closed shop) and the buyer may never come back through
     * respond.php, and nothing else would ever pay the order. Then "该订单已支付"; a payment that
     * cannot pay the row (its amount is not the row's or the order's, settle() noted it for the
     * owner and left it unpaid; an order cancelled, deleted, merged; a top-up no longer expected)
     * says so as the return page does; the database busy → paid, the order updates soon.
     * PARTIALLY_REFUNDED is a payment made, refunded in part since: it pays the row, and the owner
     * is told of the refund (partly_refunded()).
     */
    function paid_message($order, $p)
    {
        // The order page (user.php, flow.php) writes payments here: a query that fails must not
        // show the buyer ecshop's "MySQL server error report" with its SQL (guard_begin()).
        $guard = $this->guard_begin();
        $box = $this->paid_message_checked($order, $p);
        $this->guard_end($guard);
        return $box;
    }

    /** paid_message() itself. */
    function paid_message_checked($order, $p)
    {
        $log_id = intval($order['log_id']);
        $table = $GLOBALS['ecs']->table('pay_log');
        $is_paid = $GLOBALS['db']->getOne('SELECT is_paid FROM ' . $table . " WHERE log_id = '" . $log_id . "'");
        if ($is_paid == 1) {
            return $this->message_box('payhost_already_paid', '');
        }
        if (!is_array($p) || !isset($p['out_trade_no'], $p['subject'], $p['total_fee'])) {
            return $this->message_box('payhost_paid_confirming', '');
        }
        // settle() needs lib_payment.php (check_money(), order_paid()), which respond.php loads
        // and not every page that shows the button does.
        if (!function_exists('order_paid') && file_exists(ROOT_PATH . 'includes/lib_payment.php')) {
            include_once(ROOT_PATH . 'includes/lib_payment.php');
        }
        if (!function_exists('order_paid') || !function_exists('check_money')) {
            return $this->message_box('payhost_paid_confirming', '');
        }
        $result = $this->settle($p['out_trade_no'], $p['subject'], $p['total_fee']);
        if ($result === 'paid' && isset($p['status']) && $p['status'] === 'PARTIALLY_REFUNDED') {
            $this->partly_refunded($p);
        }
        $texts = array('paid' => 'payhost_already_paid', 'amount' => 'payhost_paid_amount_differs',
            'amount_noted' => 'payhost_paid_amount_differs', 'cancelled_noted' => 'payhost_paid_order_cancelled',
            'invalid_noted' => 'payhost_paid_order_invalid', 'unknown' => 'payhost_paid_order_gone',
            'order_gone' => 'payhost_paid_order_gone', 'record_gone' => 'payhost_paid_record_gone',
            'topup_gone' => 'payhost_paid_topup_gone', 'topup_taken' => 'payhost_paid_topup_gone',
            'topup_extra' => 'payhost_paid_topup_gone');
        return $this->message_box(isset($texts[$result]) ? $texts[$result] : 'payhost_paid_confirming', '');
    }

    /**
     * A payment payhost says is PARTIALLY_REFUNDED that paid its row (the order page, the return):
     * one order_action note for the owner naming the refunded amount, once per payment (the
     * refund's own webhook notes each refund too, when it gets through). A top-up has no order to
     * note it on. The look and the write are under the pay_log row's lock, as settle()'s notes:
     * settle() has released it by now, and a return and the order page at the same moment would
     * each find no note and write one. The lock not had within 10 s: no note this time (a
     * later return of the payment writes it; the refund's own webhook notes the refund too).
     */
    function partly_refunded($p)
    {
        $log_id = $this->log_id_of($p['out_trade_no'], $p['subject']);
        $order = $log_id === null ? null : $this->order_of_log($log_id);
        if (!is_array($order)) {
            return;
        }
        $lock = $this->lock_name(intval($log_id));
        if ($GLOBALS['db']->getOne("SELECT GET_LOCK('" . $lock . "', 10)") != 1) {
            return;
        }
        $this->note_once($order, '[payhost partly-refunded ' . $p['out_trade_no'] . ']', $this->partly_refunded_note($p['out_trade_no'],
            isset($p['refunded_amount']) ? (string)$p['refunded_amount'] : '?', (string)$p['total_fee']));
        $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
    }

    /** The note of a payment refunded in part that paid its row (partly_refunded()). */
    function partly_refunded_note($out_trade_no, $refunded, $total)
    {
        return $this->fit_note(sprintf($this->lang('payhost_partly_refunded_note'), $out_trade_no, $this->esc($refunded),
            $this->esc($total)), '[payhost partly-refunded ' . $out_trade_no . ']');
    }

    /** ecshop's pay button (a plain link on the mobile/ pages: phone browsers block window.open). */
    function pay_button($pay_url)
    {
        if (defined('ECS_WAP')) {
            return '<a id="payhost-pay" href="' . $this->esc($pay_url) . '">' . $this->esc($this->lang('pay_button')) . '</a>';
        }
        return '<div style="text-align:center"><input type="button" onclick="window.open(\''
            . $this->esc(addslashes($pay_url))
            . '\')" value="' . $this->esc($this->lang('pay_button')) . '" /></div>';
    }

    /**
     * payhost's view of a payment: the decoded body, or null. 5 s, as every call of the order
     * page: the buyer's return waits on it too, and its "being confirmed" page asks again up to
     * five times.
     */
    function payment_at_payhost($s, $out_trade_no, $timeout = 5)
    {
        list($status, $p) = $this->call($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments/' . rawurlencode($out_trade_no), null, $timeout);
        return ($status == 200 && is_array($p) && isset($p['status'])) ? $p : null;
    }

    /**
     * The pay_log row (log_id) an out_trade_no pays, or null: order_sn-log_id-fen[-n] (this
     * version; n = 2…9 counts the payments after a closed one), or order_sn . log_id (versions
     * before, orders still in flight). The order_sn is the first word of the subject and must
     * start the number: an order_sn may hold '-' itself, so the rest is read after it, never
     * guessed (no subject: null).
     */
    function log_id_of($out_trade_no, $subject)
    {
        $out_trade_no = (string)$out_trade_no;
        $parts = explode(' ', (string)$subject, 2);
        $order_sn = $parts[0];
        if ($order_sn === '' || strpos($out_trade_no, $order_sn) !== 0) {
            return null;
        }
        $rest = (string)substr($out_trade_no, strlen($order_sn));
        if (preg_match('/^-([0-9]{1,10})-([0-9]{1,12})(?:-[2-9])?$/', $rest, $m)) {
            return $m[1];
        }
        return preg_match('/^[0-9]{1,10}$/', $rest) ? $rest : null;
    }

    /** A MySQL named lock's name (at most 64 characters in MySQL 5.7 and later). */
    function lock_name($what)
    {
        return 'payhost_' . md5($GLOBALS['ecs']->table('pay_log') . ':' . $what);
    }

    /**
     * Pays the pay_log row of out_trade_no (see log_id_of()) once. Returns 'paid' (now or before),
     * 'amount_noted' (the amount is not the row's or the order's amount due: noted on the order
     * for the owner, row left unpaid), 'amount' (the same for a balance top-up, which has no
     * order to note it on), 'cancelled_noted' / 'invalid_noted' (the order is cancelled / invalid
     * in the shop: noted, left as it is), 'unknown' (the shop has no such pay_log row: the order
     * was merged into another, lib_order.php merge_order() deletes both orders and their rows),
     * 'order_gone' (the row's order was deleted: admin/order.php removes a cancelled or invalid
     * order and keeps its row), 'topup_gone' / 'topup_taken' / 'topup_extra' (a balance top-up
     * the shop no longer expects: its user_account row deleted, already credited by the admin by
     * hand, or already credited by another payment; see topup_open()), or 'busy' (the database
     * could not tell or write: payhost retries). Money is never credited and no order is paid
     * for the 'unknown', '*_gone', 'topup_*' answers: the webhook answers non-2xx, so payhost
     * keeps the event as undelivered and lists it for the operator to refund.
     *
     * order_paid() reads is_paid and writes it later, so two requests at once could both pay (a
     * balance top-up would credit twice). MyISAM has no transactions; a MySQL named lock per row
     * serialises this for the module, and the row's is_paid going 0 -> 1 under the lock tells
     * which call paid it. That call's order_action note (order_paid()'s $note) names the
     * out_trade_no that paid it (a top-up: the user_account row's admin_note, mark_topup_paid()).
     * A row paid before: by this same payment (the webhook came first, this is the buyer's
     * return, or a retry), order_paid() runs again: on a paid row ecshop's order_paid() changes
     * nothing and shows the order's virtual cards on the return page, as stock alipay.php's
     * respond() gets on every return; by another payment (several payhost payments can point at
     * one row: an amount changed, a retry after a close, a number of the version before), a
     * warning note instead (extra_payment()). Both answer 'paid' for an order.
     *
     * An unpaid row whose amount check_money() refuses (the owner changed the order's amount after
     * the pay button was shown, and the buyer paid the old one): the money is at Alipay, the order
     * stays unpaid, and a note on the order tells the owner to check it (amount_differs()).
     */
    function settle($out_trade_no, $subject, $total_fee)
    {
        $log_id = $this->log_id_of($out_trade_no, $subject);
        if ($log_id === null) {
            return 'unknown';
        }
        $table = $GLOBALS['ecs']->table('pay_log');
        $read = 'SELECT is_paid FROM ' . $table . " WHERE log_id = '" . intval($log_id) . "'";
        $before = $GLOBALS['db']->getOne($read);
        // cls_mysql::getOne(): '' when there is no such row. (A failed query never comes back:
        // ecshop's cls_mysql::query() prints the error and exits; false is for other classes.)
        if ($before === false || $before === null) {
            return 'busy';
        }
        if ($before === '') {
            return 'unknown';
        }
        $lock = $this->lock_name(intval($log_id));
        if ($GLOBALS['db']->getOne("SELECT GET_LOCK('" . $lock . "', 10)") != 1) {
            return 'busy';
        }
        $before = $GLOBALS['db']->getOne($read);
        if ($before === '') {
            // Deleted while this waited (the orders merged meanwhile).
            $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
            return 'unknown';
        }
        $noted = true;
        $order = ($before === '0' || $before === 0) ? $this->order_of_log($log_id) : null;
        $account = null;
        if (($before === '0' || $before === 0) && !is_array($order)) {
            // false: the database could not tell (a class whose failed query comes back): retry,
            // never pay blind. 'gone': the order row is not there. ecshop deletes an order only
            // where nothing may be paid any more (admin/order.php 'remove' / act=remove_order: a
            // cancelled or invalid order; 'cancel_order' of an order the admin was adding, whose
            // row has no amount), so order_paid() would only run UPDATEs that match nothing.
            // null: a balance top-up, paid below when its user_account row still expects it.
            $open = $order === false ? 'busy' : ($order === 'gone' ? 'order_gone' : '');
            if ($order === null) {
                $account = $this->account_of_log($log_id);
                $open = $this->topup_open($account, $out_trade_no, $total_fee);
            }
            if ($open !== '') {
                $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
                return $open;
            }
        }
        if (is_array($order) && $order['pay_status'] == PS_PAYED) {
            // The owner marked the order paid in the admin (admin/order.php operation 'pay' sets
            // pay_status and money_paid, and leaves the pay_log row unpaid): this payment is a
            // second one. order_paid() would pay the row and set money_paid to the order's
            // amount, 0 by then. A note asks the owner to refund it, once per payment.
            $seen = $this->paid_elsewhere($order, $out_trade_no, $total_fee);
            $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
            return ($seen !== false && $seen > 0) ? 'paid' : 'busy';
        }
        if (is_array($order) && ($order['order_status'] == OS_CANCELED || $order['order_status'] == OS_INVALID)) {
            // Cancelled or made invalid in the shop (lib_order.php: its stock, balance and bonus
            // given back): a cashier page opened before (the legacy API has no close call) was
            // paid. order_paid() would make it confirmed and paid again; the order stays as the
            // owner left it, and a note asks for a refund, once per payment.
            $seen = $this->note_once($order, '[payhost cancelled ' . $out_trade_no . ']', $this->cancelled_note($out_trade_no, $total_fee));
            $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
            if ($seen === false || $seen == 0) {
                return 'busy';
            }
            return $order['order_status'] == OS_INVALID ? 'invalid_noted' : 'cancelled_noted';
        }
        if ($before === '0' || $before === 0) {
            // A paid row is not compared: a second payment may be of an amount before a change.
            // An order's amount due is compared too: user.php act_edit_payment (the buyer picks
            // another payment method) changes order_info.order_amount and leaves the row's.
            $due = is_array($order) ? $order['order_amount'] : null;
            if (!check_money($log_id, $total_fee) || ($due !== null && !payhost_alipay_same_amount($due, $total_fee))) {
                $result = $this->amount_differs($log_id, $out_trade_no, $total_fee, $due);
                $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
                return $result;
            }
            order_paid($log_id, 2, addslashes($this->paid_note($out_trade_no)));
            if (is_array($account)) {
                $this->mark_topup_paid($account, $out_trade_no);
            }
        } elseif ($before == 1) {
            $earlier = $this->extra_payment($log_id, $out_trade_no, $total_fee);
            if ($earlier === 'same') {
                // lib_payment.php order_paid() on a paid row: no write; the order's virtual cards
                // (and its shipping messages) for the return page.
                order_paid($log_id, 2, '');
            }
            if ($earlier === 'topup_extra' || $earlier === 'record_gone') {
                $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
                return $earlier;
            }
            $noted = $earlier !== false;
        }
        $after = $GLOBALS['db']->getOne($read);
        $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
        return ($after == 1 && $noted) ? 'paid' : 'busy';
    }

    /**
     * Whether the unpaid row's balance top-up may be credited (under settle()'s lock): '' when
     * its user_account row (the order_id of a PAY_SURPLUS pay_log row) is there and not yet
     * paid. Otherwise lib_payment.php order_paid() would swallow the payment: its PAY_SURPLUS
     * branch updates a row that is not there and credits nobody, or skips a row already paid.
     * 'topup_gone': the row is not there (the buyer cancelled the top-up, user.php act=cancel →
     * lib_clips.php del_user_account(); or the admin deleted it, admin/user_account.php
     * act=remove), and the shop no longer knows whose it was. 'topup_taken': the admin already
     * credited it by hand (admin/user_account.php act=action is_paid=1: log_account_change(),
     * pay_log left unpaid); a zero-amount account_log line (the user's 账目明细 in the admin)
     * names the payment for the owner, once (topup_note_once()). 'busy': the database could
     * not tell.
     */
    function topup_open($account, $out_trade_no, $total_fee)
    {
        if ($account === false) {
            return 'busy';
        }
        if ($account === 'gone') {
            return 'topup_gone';
        }
        if ($account['is_paid'] == 1) {
            $this->topup_note_once($account, $out_trade_no, $total_fee);
            return 'topup_taken';
        }
        return '';
    }

    /**
     * The user_account row (会员预付款) a PAY_SURPLUS pay_log row credits: id, user_id, amount,
     * is_paid and admin_note; 'gone' when there is none (MySQL counts 0), false when the
     * database could not tell.
     */
    function account_of_log($log_id)
    {
        $db = $GLOBALS['db'];
        $log = $db->getRow('SELECT order_id, order_type FROM ' . $GLOBALS['ecs']->table('pay_log') . " WHERE log_id = '" . intval($log_id) . "'");
        if (!is_array($log) || !isset($log['order_id'])) {
            return false;
        }
        $account = $db->getRow('SELECT id, user_id, amount, is_paid, admin_note FROM ' . $GLOBALS['ecs']->table('user_account')
            . " WHERE id = '" . intval($log['order_id']) . "'");
        if (is_array($account) && isset($account['id'])) {
            return $account;
        }
        return $this->row_missing('user_account', 'id', $log['order_id']) ? 'gone' : false;
    }

    /**
     * True only when MySQL says the table has no row of this id. ecshop's cls_mysql::getRow()
     * returns false for no row; a database class whose failed query comes back returns false
     * for an error too, which must not be taken for a deleted row.
     */
    function row_missing($table, $column, $id)
    {
        $n = $GLOBALS['db']->getOne('SELECT COUNT(*) FROM ' . $GLOBALS['ecs']->table($table) . ' WHERE ' . $column
            . " = '" . intval($id) . "'");
        return $n === '0' || $n === 0;
    }

    /**
     * After order_paid() credited a top-up: the payment that paid it, in the user_account row's
     * admin_note (管理员备注; order_paid() writes no note of its own there and the admin's
     * act=action leaves a paid row alone), so that a later payment of the same row is told
     * apart from this one's retries and return (topup_extra()). An admin's own note (act=action
     * saves one on an unpaid top-up) is kept, the marker after it (cut to fit varchar(255));
     * written only if the note is still the one read, so an edit meanwhile is never overwritten.
     */
    function mark_topup_paid($account, $out_trade_no)
    {
        $note = isset($account['admin_note']) ? (string)$account['admin_note'] : '';
        $text = $note === '' ? $this->paid_note($out_trade_no) : $this->fit_note($note, $this->paid_marker($out_trade_no));
        $GLOBALS['db']->query('UPDATE ' . $GLOBALS['ecs']->table('user_account') . " SET admin_note = '"
            . addslashes($text) . "' WHERE id = '" . intval($account['id']) . "' AND admin_note = '" . addslashes($note) . "'");
    }

    /**
     * A payment of a top-up whose pay_log row is paid (extra_payment()): 'same' when it is the
     * payment that paid it (its marker in admin_note, mark_topup_paid(); or no payment marked
     * there, a row paid before this version), 'topup_extra' when another payment paid it (a
     * zero-amount account_log line names this one for the owner, once; 'same' too when the
     * user_account row was deleted since, the balance credited), false when the database could
     * not tell.
     */
    function topup_extra($log_id, $out_trade_no, $total_fee)
    {
        $account = $this->account_of_log($log_id);
        if ($account === false) {
            return false;
        }
        if ($account === 'gone') {
            // The row is paid: the balance was credited, then the admin deleted the top-up's
            // record (admin/user_account.php act=remove) and with it the note naming the payment
            // that paid it. This one may be that payment (a retry, its return) or a second one:
            // neither "paid" (a second payment would be kept silently) nor "refund it" (the
            // paying one would be refunded too). A person checks: 'record_gone'.
            return 'record_gone';
        }
        $note = isset($account['admin_note']) ? (string)$account['admin_note'] : '';
        if (strpos($note, $this->paid_marker($out_trade_no)) !== false || strpos($note, '[payhost paid ') === false) {
            return 'same';
        }
        $this->topup_note_once($account, $out_trade_no, $total_fee);
        return 'topup_extra';
    }

    /**
     * A zero-amount line in the user's account log (lib_common.php log_account_change(): an
     * account_log row, 账目明细 in the admin's user list; the buyer's own page lists only lines
     * that change the balance) naming a top-up payment the shop did not credit, once per
     * out_trade_no. It credits nothing: user_money 0.
     */
    function topup_note_once($account, $out_trade_no, $total_fee)
    {
        if (!function_exists('log_account_change')) {
            return;
        }
        $marker = '[payhost topup ' . $out_trade_no . ']';
        $like = str_replace(array('\\', '%', '_'), array('\\\\', '\\%', '\\_'), $marker);
        $seen = $GLOBALS['db']->getOne('SELECT COUNT(*) FROM ' . $GLOBALS['ecs']->table('account_log') . " WHERE user_id = '"
            . intval($account['user_id']) . "' AND change_desc LIKE '%" . addslashes($like) . "%'");
        if ($seen === false || $seen === null || $seen === '' || $seen > 0) {
            return;
        }
        $note = $this->fit_note(sprintf($this->lang('payhost_topup_note'), $out_trade_no,
            $this->esc(number_format((float)$total_fee, 2, '.', ''))), $marker);
        log_account_change(intval($account['user_id']), 0, 0, 0, 0, addslashes($note), defined('ACT_OTHER') ? ACT_OTHER : 99);
    }

    /** The text of the order_action note of the payment that paid a row (searched with LIKE). */
    function paid_marker($out_trade_no)
    {
        return '[payhost paid ' . $out_trade_no . ']';
    }

    /** order_paid()'s note for the payment that pays a row (shop charset, not yet escaped). */
    function paid_note($out_trade_no)
    {
        return $this->fit_note(sprintf($this->lang('payhost_paid_note'), $out_trade_no), $this->paid_marker($out_trade_no));
    }

    /** The note of another payment of a paid row (extra_payment()). */
    function extra_note($out_trade_no, $total_fee)
    {
        return $this->fit_note(sprintf($this->lang('payhost_extra_payment'), $out_trade_no,
            $this->esc(number_format((float)$total_fee, 2, '.', ''))), '[payhost extra ' . $out_trade_no . ']');
    }

    /** The note of a refund at Alipay (record_refund()); the event id makes a retry a no-op. */
    function refund_note($type, $refunded, $total, $event_id)
    {
        return $this->fit_note(sprintf($this->lang($type === 'payment.refunded' ? 'payhost_refund_full' : 'payhost_refund_partial'),
            $this->esc($refunded), $this->esc($total)), '[payhost ' . $event_id . ']');
    }

    /** The note of a payment whose amount is not the row's (amount_differs()). */
    function amount_note($out_trade_no, $total_fee, $expected)
    {
        return $this->fit_note(sprintf($this->lang('payhost_amount_note'), $out_trade_no,
            $this->esc(number_format((float)$total_fee, 2, '.', '')),
            $this->esc(number_format((float)$expected, 2, '.', ''))), '[payhost amount ' . $out_trade_no . ']');
    }

    /**
     * An order_action note: $text, a space and $marker (ASCII: what notes_with() and the refund
     * check look for), at most 255 long. ecshop's order_action.action_note is varchar(255), and
     * MySQL keeps only its first 255 (cls_mysql's connect sets sql_mode '' on MySQL > 5.0.1: no
     * strict mode, a longer value is cut without an error): a note cut there loses its marker,
     * then notes_with() never finds it and every retried webhook adds the note again. MySQL 4.1
     * and later count characters of the table's charset (ecshop's tables are in the edition's:
     * utf8, gbk or big5), older MySQL counts bytes. Over the limit, $text is cut (never inside a
     * character) so that the marker is always stored whole.
     */
    function fit_note($text, $marker)
    {
        $room = 255 - 1 - strlen($marker);
        $chars = $this->note_chars((string)$text);
        if (count($chars) <= $room) {
            return $text . ' ' . $marker;
        }
        return implode('', array_slice($chars, 0, max(0, $room))) . ' ' . $marker;
    }

    /**
     * $text as the units action_note counts: its characters in the shop's charset (UTF-8; GBK and
     * BIG5, whose lead bytes 0x81-0xFE take the next byte), or its bytes on MySQL before 4.1
     * (cls_mysql::version(), the server's version).
     */
    function note_chars($text)
    {
        $db = isset($GLOBALS['db']) ? $GLOBALS['db'] : null;
        $version = (is_object($db) && method_exists($db, 'version')) ? (string)$db->version() : '';
        $charset = $this->shop_charset();
        if ($version !== '' && version_compare($version, '4.1', '<')) {
            $pattern = '/[\x00-\xFF]/';
        } elseif ($charset === 'utf-8') {
            $pattern = '/[\x00-\x7F]|[\xC0-\xDF][\x80-\xBF]|[\xE0-\xEF][\x80-\xBF]{2}|[\xF0-\xF7][\x80-\xBF]{3}|[\x80-\xFF]/';
        } elseif (in_array($charset, array('gbk', 'gb2312', 'big5'))) {
            $pattern = '/[\x81-\xFE][\x40-\xFE]|[\x00-\xFF]/';
        } else {
            $pattern = '/[\x00-\xFF]/';
        }
        preg_match_all($pattern, $text, $m);
        return $m[0];
    }

    /**
     * The order_action rows of an order whose note holds $text. False only from a database class
     * whose failed query comes back (ecshop's cls_mysql prints the error and exits instead).
     */
    function notes_with($order_id, $text)
    {
        $like = str_replace(array('\\', '%', '_'), array('\\\\', '\\%', '\\_'), $text);
        return $GLOBALS['db']->getOne('SELECT COUNT(*) FROM ' . $GLOBALS['ecs']->table('order_action')
            . " WHERE order_id = '" . intval($order_id) . "' AND action_note LIKE '%" . addslashes($like) . "%'");
    }

    /**
     * The order (order_info: id, sn, statuses and amount due) a PAY_ORDER pay_log row pays; null
     * for a top-up; 'gone' when the row's order is not there (MySQL counts 0: deleted by the
     * admin); false when the database could not tell.
     */
    function order_of_log($log_id)
    {
        $db = $GLOBALS['db'];
        $log = $db->getRow('SELECT order_id, order_type FROM ' . $GLOBALS['ecs']->table('pay_log') . " WHERE log_id = '" . intval($log_id) . "'");
        if (!is_array($log) || !isset($log['order_id'])) {
            return false;
        }
        if ($log['order_type'] != PAY_ORDER) {
            return null;
        }
        $order = $db->getRow('SELECT order_id, order_sn, order_status, shipping_status, pay_status, order_amount FROM '
            . $GLOBALS['ecs']->table('order_info') . " WHERE order_id = '" . intval($log['order_id']) . "'");
        if (is_array($order) && isset($order['order_sn'])) {
            return $order;
        }
        return $this->row_missing('order_info', 'order_id', $log['order_id']) ? 'gone' : false;
    }

    /**
     * A payment of a paid pay_log row (under settle()'s lock). 'same': it is the payment that paid
     * the row (its note, paid_marker(); a row paid before this version has no such note, and a
     * number of that version, order_sn . log_id, is then taken as the one that paid). 'noted':
     * another payment, for which an order_action note asks the owner to check it at payhost and
     * refund it, once per out_trade_no. A balance top-up: topup_extra() ('same' or
     * 'topup_extra'). An order removed since the row was paid: 'same'. False when the database
     * could not tell (the caller answers 'busy', payhost retries).
     */
    function extra_payment($log_id, $out_trade_no, $total_fee)
    {
        $order = $this->order_of_log($log_id);
        if ($order === null) {
            return $this->topup_extra($log_id, $out_trade_no, $total_fee);
        }
        if ($order === 'gone') {
            // The row is paid and its order was removed since, its notes with it: which payment
            // paid it cannot be told, as for a top-up (topup_extra()): 'record_gone'.
            return 'record_gone';
        }
        if ($order === false) {
            return false;
        }
        $marker = '[payhost extra ' . $out_trade_no . ']';
        $paid_by_it = $this->notes_with($order['order_id'], $this->paid_marker($out_trade_no));
        $noted = $this->notes_with($order['order_id'], $marker);
        if ($paid_by_it === false || $noted === false) {
            return false;
        }
        if ($paid_by_it > 0) {
            return 'same';
        }
        if ($noted > 0) {
            return 'noted';
        }
        $unpaid = $this->notes_with($order['order_id'], '[payhost unpaid ' . $out_trade_no . ']');
        if ($unpaid === false) {
            return false;
        }
        if ($unpaid > 0) {
            // Told already that this payment is owed to its order (below): whatever the owner did
            // since (paid it by hand, say), it is not an extra payment.
            return 'noted';
        }
        if ($out_trade_no === $order['order_sn'] . intval($log_id)) {
            $any = $this->notes_with($order['order_id'], '[payhost paid ');
            if ($any === false) {
                return false;
            }
            if ($any == 0) {
                return 'same';
            }
        }
        if (intval($order['pay_status']) != PS_PAYED && intval($order['order_status']) != OS_CANCELED
            && intval($order['order_status']) != OS_INVALID) {
            $any = $this->notes_with($order['order_id'], '[payhost paid ');
            if ($any === false) {
                return false;
            }
            if ($any == 0) {
                // The row says paid, its order does not, and no payment of it was noted:
                // order_paid() set is_paid and its request ended before it updated the order
                // (cls_mysql exits on a database error). order_paid() skips a paid row, so
                // nothing here can pay it again: the owner is told so, once, instead of being
                // told to refund the only payment.
                $marker = '[payhost unpaid ' . $out_trade_no . ']';
                $seen = $this->note_once($order, $marker, $this->fit_note(sprintf($this->lang('payhost_unpaid_note'),
                    $out_trade_no, $this->esc(number_format((float)$total_fee, 2, '.', ''))), $marker));
                return ($seen !== false && $seen > 0) ? 'noted' : false;
            }
        }
        $note = $this->extra_note($out_trade_no, $total_fee);
        order_action($order['order_sn'], $order['order_status'], $order['shipping_status'], $order['pay_status'],
            addslashes($note), 'payhost');
        return 'noted';
    }

    /**
     * A payment of an order marked paid in the admin (settle()): the extra payment's note, once;
     * how many such notes the order has (false when the database could not tell).
     */
    function paid_elsewhere($order, $out_trade_no, $total_fee)
    {
        return $this->note_once($order, '[payhost extra ' . $out_trade_no . ']', $this->extra_note($out_trade_no, $total_fee));
    }

    /**
     * An order_action note holding $marker, written unless one is there: how many there are
     * then (false when the database could not tell).
     */
    function note_once($order, $marker, $note)
    {
        $seen = $this->notes_with($order['order_id'], $marker);
        if ($seen !== false && $seen == 0) {
            order_action($order['order_sn'], $order['order_status'], $order['shipping_status'], $order['pay_status'],
                addslashes($note), 'payhost');
            $seen = $this->notes_with($order['order_id'], $marker);
        }
        return $seen;
    }

    /**
     * A "paid" event of a payment that payhost now says is refunded in full or closed (webhook()):
     * the order is left unpaid, with a note once per payment. The note is written under settle()'s
     * lock of the pay_log row, so two deliveries at once write one note, and a payment settling
     * the same row at that moment is seen. 200 once the note is there (or for a balance top-up,
     * which has no order to note it on), 404 for an order this shop does not know, 503 when the
     * database could not tell or the lock was busy.
     */
    function refunded_before_paid($out_trade_no, $subject, $status)
    {
        $log_id = $this->log_id_of($out_trade_no, $subject);
        $read = 'SELECT is_paid FROM ' . $GLOBALS['ecs']->table('pay_log') . " WHERE log_id = '" . intval($log_id) . "'";
        $paid = $log_id === null ? '' : $GLOBALS['db']->getOne($read);
        if ($paid === false || $paid === null || $paid === '') {
            return array(404, 'unknown order');
        }
        if ($paid == 1) {
            // Taken by the shop before the refund: the refund's own event notes it.
            return array(200, 'ok');
        }
        $order = $this->order_of_log($log_id);
        if ($order === null) {
            return array(200, 'refunded before the shop took the payment: balance not credited');
        }
        if ($order === 'gone') {
            // No order row (deleted by the owner): nothing to pay or note, never busy for ever.
            return array(200, 'refunded before the shop took the payment: no such order in the shop');
        }
        if ($order === false) {
            return array(503, 'database busy, retry');
        }
        $lock = $this->lock_name(intval($log_id));
        if ($GLOBALS['db']->getOne("SELECT GET_LOCK('" . $lock . "', 10)") != 1) {
            return array(503, 'busy, retry');
        }
        if ($GLOBALS['db']->getOne($read) == 1) {
            // Paid by another payment of the row while this one waited: its own events note it.
            $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
            return array(200, 'ok');
        }
        $note = $this->fit_note(sprintf($this->lang('payhost_refunded_note'), $out_trade_no, $this->esc($status)),
            '[payhost refunded ' . $out_trade_no . ']');
        $seen = $this->note_once($order, '[payhost refunded ' . $out_trade_no . ']', $note);
        $GLOBALS['db']->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
        return ($seen !== false && $seen > 0)
            ? array(200, 'refunded before the shop took the payment: noted, order left unpaid')
            : array(503, 'busy, retry');
    }

    /** The note of a payment of an order cancelled or made invalid in the shop (settle()). */
    function cancelled_note($out_trade_no, $total_fee)
    {
        return $this->fit_note(sprintf($this->lang('payhost_cancelled_payment'), $out_trade_no,
            $this->esc(number_format((float)$total_fee, 2, '.', ''))), '[payhost cancelled ' . $out_trade_no . ']');
    }

    /**
     * A payment of an unpaid pay_log row whose amount is not the row's (under settle()'s lock): an
     * order_action note naming the amount paid and the order's amount, asking the owner to check
     * it by hand (payhost's admin page has the payment; the order stays unpaid), once per
     * out_trade_no. 'amount_noted' only once the note is read back from the database, so
     * payhost's webhook is acknowledged only when the owner can see it; 'busy' otherwise (payhost
     * retries). A balance top-up has no order to note it on: 'amount' (payhost keeps retrying,
     * then lists the webhook as undelivered on its admin page).
     */
    function amount_differs($log_id, $out_trade_no, $total_fee, $due = null)
    {
        $order = $this->order_of_log($log_id);
        if ($order === null) {
            return 'amount';
        }
        if (!is_array($order)) {
            return 'busy';
        }
        $marker = '[payhost amount ' . $out_trade_no . ']';
        $seen = $this->notes_with($order['order_id'], $marker);
        if ($seen === false) {
            return 'busy';
        }
        if ($seen == 0) {
            $expected = $GLOBALS['db']->getOne('SELECT order_amount FROM ' . $GLOBALS['ecs']->table('pay_log')
                . " WHERE log_id = '" . intval($log_id) . "'");
            if ($due !== null && payhost_alipay_same_amount($expected, $total_fee)) {
                // The row's amount was paid; the order's is what is due now.
                $expected = $due;
            }
            $note = $this->amount_note($out_trade_no, $total_fee, $expected);
            order_action($order['order_sn'], $order['order_status'], $order['shipping_status'], $order['pay_status'],
                addslashes($note), 'payhost');
            $seen = $this->notes_with($order['order_id'], $marker);
        }
        return ($seen !== false && $seen > 0) ? 'amount_noted' : 'busy';
    }

    /**
     * A refund at Alipay (payment.refunded, payment.partially_refunded): an order_action row
     * (lib_common.php order_action(), the order's 操作记录 in the admin) saying how much has been
     * refunded, once per event (a retried webhook finds its event id in the notes). The order's
     * statuses are left as they are: the owner decides what the refund means for the order.
     * Returns array(HTTP status, text).
     */
    function record_refund($s, $event)
    {
        $event_id = isset($event['id']) ? (string)$event['id'] : '';
        if (!preg_match('/^evt_[0-9A-Za-z_]{1,80}$/', $event_id)) {
            return array(400, 'no event id');
        }
        $log_id = $this->log_id_of($event['out_trade_no'], isset($event['subject']) ? $event['subject'] : '');
        if ($log_id === null) {
            return array(404, 'unknown order');
        }
        $db = $GLOBALS['db'];
        $log = $db->getRow('SELECT order_id, order_type FROM ' . $GLOBALS['ecs']->table('pay_log') . " WHERE log_id = '" . intval($log_id) . "'");
        if (!is_array($log) || !isset($log['order_id'])) {
            return array(404, 'unknown order');
        }
        if ($log['order_type'] != PAY_ORDER) {
            // A balance top-up has no order to note it on; payhost's admin page lists the refund.
            return array(200, 'ignored: not an order');
        }
        $order = $db->getRow('SELECT order_id, order_sn, order_status, shipping_status, pay_status, order_amount FROM '
            . $GLOBALS['ecs']->table('order_info') . " WHERE order_id = '" . intval($log['order_id']) . "'");
        if (!is_array($order) || !isset($order['order_sn'])) {
            return array(404, 'unknown order');
        }
        $p = $this->payment_at_payhost($s, $event['out_trade_no']);
        if ($p === null || !isset($p['refunded_amount'])) {
            return array(503, 'payhost not reachable, retry');
        }
        $lock = $this->lock_name('refund:' . $event_id);
        if ($db->getOne("SELECT GET_LOCK('" . $lock . "', 10)") != 1) {
            return array(503, 'busy, retry');
        }
        $seen = $db->getOne('SELECT COUNT(*) FROM ' . $GLOBALS['ecs']->table('order_action')
            . " WHERE order_id = '" . intval($order['order_id']) . "' AND action_note LIKE '%" . $event_id . "%'");
        if ($seen === false) {
            $db->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
            return array(503, 'database busy, retry');
        }
        if ($seen == 0) {
            $note = $this->refund_note($event['type'], $p['refunded_amount'], $p['total_fee'], $event_id);
            order_action($order['order_sn'], $order['order_status'], $order['shipping_status'], $order['pay_status'],
                addslashes($note), 'payhost');
        }
        $db->getOne("SELECT RELEASE_LOCK('" . $lock . "')");
        return array(200, 'ok');
    }

    /* ---------------------------------------------------------------- the buyer's return */

    /** The sorted k=v&… string payhost signs (all but sign, ecshop's code and our re-check count). */
    function signed_string($params)
    {
        unset($params['sign'], $params['code'], $params['payhost_wait']);
        ksort($params);
        $parts = array();
        foreach ($params as $k => $v) {
            $parts[] = $k . '=' . $v;
        }
        return implode('&', $parts);
    }

    /**
     * 响应操作 (respond.php?code=payhost_alipay): payhost's signed return. True when the order is
     * paid; while Alipay's notify is pending, the "failed" text respond.php would show is replaced
     * by "being confirmed" with a re-check, the way order_paid() amends $_LANG['pay_success'].
     *
     * A query that fails in ecshop's cls_mysql::query() does not come back: ErrorMsg() prints
     * "MySQL server error report" with the SQL and MySQL's error, then exits. What the module
     * runs here is guarded (guard_begin()): the buyer reads a plain "check your orders later".
     */
    function respond()
    {
        $guard = $this->guard_begin();
        $paid = $this->respond_checked();
        $this->guard_end($guard);
        return $paid;
    }

    /**
     * From here until guard_end(), a request that ends is a database error's exit: what the
     * module runs is buffered, and guard_shutdown() (a shutdown function, run before PHP flushes
     * the buffers) drops ecshop's "MySQL server error report" with its SQL and shows the buyer a
     * plain "check your orders later". False when a guard is on already (respond(), then a
     * nested call): only the outer one ends it.
     */
    function guard_begin()
    {
        if ($this->guarded) {
            return false;
        }
        $this->guarded = true;
        ob_start();
        $this->guard_level = ob_get_level();
        if (!$this->guard_registered) {
            register_shutdown_function(array($this, 'guard_shutdown'));
            $this->guard_registered = true;
        }
        return true;
    }

    /** The end of what guard_begin() guards (when it started a guard: $guard). */
    function guard_end($guard)
    {
        if (!$guard) {
            return;
        }
        $this->guarded = false;
        if (ob_get_level() >= $this->guard_level) {
            ob_end_flush();
        }
    }

    /** guard_begin()'s shutdown function: the request ended inside a guard (a database error's exit). */
    function guard_shutdown()
    {
        if (empty($this->guarded)) {
            return;
        }
        $this->guarded = false;
        while (ob_get_level() >= $this->guard_level && ob_get_level() > 0) {
            ob_end_clean();
        }
        if (!headers_sent()) {
            header('Content-type: text/html; charset=' . $this->shop_charset());
        }
        echo '<html><head><meta http-equiv="Content-Type" content="text/html; charset=' . $this->esc($this->shop_charset())
            . '" /></head><body><div id="payhost-db-error">' . $this->esc($this->lang('payhost_db_error')) . '</div></body></html>';
    }

    /** respond() itself. */
    function respond_checked()
    {
        $payment = get_payment(basename(__FILE__, '.php'));
        $s = $this->settings($payment);
        $params = array();
        foreach ($_GET as $k => $v) {
            // init.php ran addslashes_deep() over $_GET.
            $params[stripslashes($k)] = is_array($v) ? '' : stripslashes($v);
        }
        if (!isset($params['sign'], $params['out_trade_no'], $params['ts'], $params['merchant'])) {
            return false;
        }
        if ($s['webhook_secret'] === '') {
            // Not configured: no key to verify with (settings()).
            return false;
        }
        $expected = hash_hmac('sha256', $this->signed_string($params), $s['webhook_secret']);
        if (!payhost_alipay_equals($expected, $params['sign']) || $params['merchant'] !== $s['merchant']) {
            return false;
        }
        if (!preg_match('/^[0-9]{1,12}$/', $params['ts']) || abs(time() - (int)$params['ts']) > 600) {
            // An old signed return (a link kept or shared): the order page says what happened.
            $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-expired">' . $this->lang('payhost_return_expired') . '</div>';
            return false;
        }
        $p = $this->payment_at_payhost($s, $params['out_trade_no']);
        $status = $p === null ? '' : $p['status'];
        if ($status === 'REFUNDED') {
            // Refunded in full at Alipay: never "paid" and never "being confirmed" (the page
            // would re-check for ever). Not taken by the shop yet: it stays unpaid, with the
            // owner's note, as a webhook retried after the refund leaves it (refunded_before_paid()).
            $this->refunded_before_paid($p['out_trade_no'], isset($p['subject']) ? $p['subject'] : '', $status);
            $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-refunded">' . $this->lang('payhost_paid_refunded') . '</div>';
            return false;
        }
        if ($status === 'TRADE_SUCCESS' || $status === 'TRADE_FINISHED' || $status === 'PARTIALLY_REFUNDED') {
            // PARTIALLY_REFUNDED: paid, then refunded in part (perhaps before the shop took it):
            // the payment was made, so it pays the order; the owner is told of the refund.
            $result = $this->settle($p['out_trade_no'], $p['subject'], $p['total_fee']);
            if ($result === 'paid') {
                if ($status === 'PARTIALLY_REFUNDED') {
                    $this->partly_refunded($p);
                }
                return true;
            }
            if ($result === 'amount' || $result === 'amount_noted') {
                // Paid at Alipay, but not the order's amount: the order stays unpaid; never "failed".
                $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-amount">' . $this->lang('payhost_paid_amount_differs') . '</div>';
                return false;
            }
            if ($result === 'cancelled_noted') {
                $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-cancelled">' . $this->lang('payhost_paid_order_cancelled') . '</div>';
                return false;
            }
            if ($result === 'invalid_noted') {
                $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-invalid">' . $this->lang('payhost_paid_order_invalid') . '</div>';
                return false;
            }
            if ($result === 'unknown' || $result === 'order_gone') {
                // Paid at Alipay, but the shop has no pay_log row (orders merged) or no order of it
                // (deleted): nothing was paid in the shop; never "failed, try again".
                $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-gone">' . $this->lang('payhost_paid_order_gone') . '</div>';
                return false;
            }
            if ($result === 'record_gone') {
                $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-record-gone">' . $this->lang('payhost_paid_record_gone') . '</div>';
                return false;
            }
            if ($result === 'topup_gone' || $result === 'topup_taken' || $result === 'topup_extra') {
                // A top-up cancelled, deleted or already credited: the balance was not credited.
                $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-topup">' . $this->lang('payhost_paid_topup_gone') . '</div>';
                return false;
            }
            if ($result !== 'busy') {
                return false;
            }
        } elseif ($status === 'TRADE_CLOSED') {
            return false;
        }
        // Paid at Alipay but not yet confirmed to payhost (or payhost briefly unreachable).
        $this->pending_page($s, $params);
        return false;
    }

    /** Replaces respond.php's failure text by "being confirmed", re-checking up to 5 times. */
    function pending_page($s, $params)
    {
        $wait = isset($params['payhost_wait']) ? intval($params['payhost_wait']) : 0;
        if ($wait >= 5) {
            $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-pending">' . $this->lang('payhost_pending_later') . '</div>';
            return;
        }
        $query = $params;
        $query['code'] = basename(__FILE__, '.php');
        $query['payhost_wait'] = $wait + 1;
        $pairs = array();
        foreach ($query as $k => $v) {
            $pairs[] = rawurlencode($k) . '=' . rawurlencode($v);
        }
        $url = $s['shop_url'] . 'respond.php?' . implode('&', $pairs);
        $GLOBALS['_LANG']['pay_fail'] = '<div id="payhost-pending">' . $this->lang('payhost_pending') . '</div>'
            . '<meta http-equiv="refresh" content="2;url=' . $this->esc($url) . '" />'
            // A script's text is not HTML: no entities there (an &amp; would stay in the URL).
            . '<script type="text/javascript">setTimeout(function () { location.replace(' . payhost_alipay_js_string($url) . '); }, 2500);</script>';
    }

    /* ---------------------------------------------------------------- payhost's webhook */

    /**
     * payhost_notify.php: checks X-Payhost-Signature (t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>">,
     * t within 300 s) and applies the event. Returns array(HTTP status, text); 2xx only when the
     * shop has the payment, or, for a payment whose amount is not the order's, of a cancelled
     * order, or that payhost says was refunded in full before the shop took it, once the note for
     * the owner is written (settle(), refunded_before_paid()); payhost retries everything else. A
     * payment the shop can never take (no pay_log row: orders merged; the order deleted; a top-up
     * cancelled, deleted or already credited) is 404 or 409 every time: payhost keeps it as
     * undelivered (then a dead letter on its admin page) for the operator to refund.
     */
    function webhook($body, $header, $now)
    {
        $payment = get_payment(basename(__FILE__, '.php'));
        if (!$payment) {
            return array(503, 'payment module not enabled');
        }
        $s = $this->settings($payment);
        if ($s['webhook_secret'] === '') {
            // Not configured yet (settings()): payhost retries until the owner saves the secret.
            return array(503, 'payment module not configured: no key to verify webhooks with');
        }
        $t = null;
        $v1 = null;
        foreach (explode(',', (string)$header) as $part) {
            $kv = explode('=', trim($part), 2);
            if (count($kv) == 2 && $kv[0] === 't' && preg_match('/^[0-9]{1,12}$/', $kv[1])) {
                $t = (int)$kv[1];
            } elseif (count($kv) == 2 && $kv[0] === 'v1') {
                $v1 = $kv[1];
            }
        }
        if ($t === null || $v1 === null || abs($now - $t) > 300) {
            return array(401, 'bad signature');
        }
        if (!payhost_alipay_equals(hash_hmac('sha256', $t . '.' . $body, $s['webhook_secret']), $v1)) {
            return array(401, 'bad signature');
        }
        $event = json_decode($body, true);
        if (!is_array($event) || empty($event['type']) || empty($event['out_trade_no'])) {
            return array(400, 'not an event');
        }
        if ($event['type'] === 'payment.refunded' || $event['type'] === 'payment.partially_refunded') {
            return $this->record_refund($s, $event);
        }
        if ($event['type'] !== 'payment.paid' && $event['type'] !== 'payment.finished') {
            // payment.closed: the order stays unpaid and can be paid again (get_code()).
            return array(200, 'ignored');
        }
        $subject = isset($event['subject']) ? $event['subject'] : '';
        $fee = isset($event['total_fee']) ? $event['total_fee'] : '';
        // An event is retried until the shop takes it, and a refund may have happened meanwhile
        // (payhost: the payment's status is authoritative). A payment payhost says is refunded in
        // full does not make the order paid: a note says why. Any other answer (payhost slow, a
        // token replaced) leaves the signed event's word: a paid order is never held back on it.
        list($code, $now_at) = $this->call($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments/'
            . rawurlencode($event['out_trade_no']), null, 4);
        if ($code == 200 && is_array($now_at) && isset($now_at['status'])
            && ($now_at['status'] === 'REFUNDED' || $now_at['status'] === 'TRADE_CLOSED')) {
            return $this->refunded_before_paid($event['out_trade_no'], $subject, $now_at['status']);
        }
        switch ($this->settle($event['out_trade_no'], $subject, $fee)) {
            case 'paid':
                return array(200, 'ok');
            case 'cancelled_noted':
            case 'invalid_noted':
                return array(200, 'the order is cancelled or invalid in the shop: noted for the owner to refund, order left as it is');
            case 'amount_noted':
                // Not paid in the shop, but nothing a retry could change: the owner has the note.
                return array(200, 'amount differs from the order: noted on the order for the owner, order left unpaid');
            case 'amount':
                return array(409, 'amount differs from the order');
            case 'unknown':
                // Also the orders merged in the admin (merge_order() deletes both rows): never 2xx,
                // so payhost keeps the event as undelivered and lists it for a refund.
                return array(404, 'unknown order: the shop has no pay_log row of this payment (e.g. orders merged); not applied, refund it');
            case 'order_gone':
                return array(404, 'the order of this payment was deleted in the shop; not applied, refund it');
            case 'topup_gone':
                return array(404, 'the balance top-up was cancelled or deleted in the shop; balance not credited, refund it');
            case 'topup_taken':
            case 'topup_extra':
                return array(409, 'the balance top-up was already credited; not credited again, refund it');
            case 'record_gone':
                // Never 2xx: payhost keeps it and lists it for a person to check.
                return array(409, 'the order or top-up was paid and its record deleted in the shop since: whether this payment is the one that paid it cannot be told here; check it (refund it if it is a second payment)');
            default:
                return array(503, 'busy, retry');
        }
    }
}
