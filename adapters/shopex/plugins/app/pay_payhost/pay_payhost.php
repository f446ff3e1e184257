<?php
/**
 * ShopEx 4.8.5 payment app "payhost": Alipay WAP pay (支付宝手机网站支付) through payhost.
 *
 * Two Alipay interfaces, chosen in the settings (接口类型, alipay_api): 旧版接口 (mapi: 合作者身份 PID +
 * 交易安全校验码) or 新版开放平台 (openapi: APPID + 应用私钥 + 支付宝公钥, RSA2). payhost speaks both;
 * the app only sends it the chosen interface's fields.
 *
 * Layout as ShopEx 4.8.5 loads payment apps (mdl.payment.php loadMethod): plugins/app/pay_payhost/
 * with pay_payhost.php (this class), pay_payhost.server.php (payhost's webhook), paymentPlugin.php
 * (the app's callback dispatcher) and app.pay_payhost.php (the app manifest). The ident "payhost"
 * has no "_": ShopEx's app dispatcher splits the file name on "_" to find the plugin.
 *
 * - toSubmit(): saves the settings at payhost (PUT /v1/merchants/{id}) only when their digest
 *   differs from the one payhost returns, creates the payment (a cancel link back to the order; a
 *   deposit top-up's to the 预存款充值 page) and hands doPay() the cashier's GET form (submitUrl,
 *   $method = 'get', the fields); an earlier payment of the order paid at payhost and not taken by
 *   the shop is applied instead (payhost_earlier()). On an error the buyer sees a message on the
 *   page, as ShopEx's own Alipay plugin shows its errors: "unavailable, try later", "settings
 *   wrong, contact the shop" or "this order cannot be paid, contact the shop", never which
 *   setting nor payhost's own words; what to check goes to the shop's log (payhost_admin_log()).
 *   Every URL given to payhost is built from the shop URL of the settings, never from the
 *   request (ShopEx's base_url() is the request's Host header).
 * - callback(): the buyer's return, signed by payhost with this merchant's secret (merchant id,
 *   order, status and time signed; older than 10 minutes is refused); while Alipay's notify is
 *   pending the buyer sees "being confirmed" and the page re-checks, never "failed". A paid
 *   top-up that credited nobody, an order cancelled, deleted (recycle bin) or paid already by
 *   another payment, and a payment the shop no longer has are each told in words, not as "paid".
 * - pay_payhost_callback() (pay_payhost.server.php): payhost's signed webhook; it applies the payment
 *   with setPayStatus() and answers 2xx only when the order itself is paid in ShopEx (setPayStatus()
 *   writes the payment's succ before mdl_order::payed(), which can fail), so payhost retries
 *   everything else (a top-up: only once the member's deposit log has the payment).
 * - The return, the webhook and the payment page apply a payment the same way, under a MySQL named
 *   lock per order (payhost_take()). The order's log is shown to the buyer too (ShopEx's member
 *   order page lists it): lines there are plain facts; the owner's notes, with their markers, go
 *   into the order's admin remark (payhost_log_once()).
 *
 * No syntax newer than PHP 5.2; reaching payhost needs PHP 5.2.10 or later with allow_url_fopen on
 * (file_get_contents() reads payhost's 4xx answers only with the stream option ignore_errors,
 * added in 5.2.10; an https payhost also needs openssl), or else PHP's curl extension (any PHP 5.2
 * to 8.x); without either the page says so (pay_payhost_transport()). Signatures compared in
 * constant time; no secret is logged. The first statement stays require_once('paymentPlugin.php'): requested directly, it runs
 * the app's dispatcher; included by ShopEx, it loads the base class from ShopEx's include path.
 */
require_once('paymentPlugin.php');

if (!class_exists('pay_payhost')) {

/** Constant-time comparison of two strings (PHP 5.2 has no hash_equals). */
function pay_payhost_equals($known, $given)
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
 * At most $max bytes of UTF-8 text, never cutting a character in two; bytes that are not UTF-8
 * are dropped first, as json_encode() refuses them.
 */
function pay_payhost_utf8_cut($text, $max)
{
    $text = (string)$text;
    if (!preg_match('//u', $text)) {
        $text = preg_replace('/[\x80-\xFF]/', '', $text);
    }
    if (strlen($text) <= $max) {
        return $text;
    }
    $text = substr($text, 0, $max);
    return preg_replace('/(?:[\xC0-\xDF]|[\xE0-\xEF][\x80-\xBF]?|[\xF0-\xF7][\x80-\xBF]{0,2})$/', '', $text);
}

/**
 * How payhost_call() reaches $url: 'fopen' (file_get_contents() with a stream context), 'curl', or
 * '' when this PHP has neither. file_get_contents() only on PHP >= 5.2.10 (the stream option
 * ignore_errors, without which a 4xx answer's body, payhost's error, is dropped), with
 * allow_url_fopen on and, for an https URL, PHP's https stream wrapper (openssl) and PHP 5.6 or
 * later when curl is there (an older https stream checks no certificate); otherwise curl when the
 * extension is loaded. The facts are parameters so the choice can be checked for any PHP
 * (tests/php/shopex_plugin_unit.php).
 */
function pay_payhost_pick_transport($https, $php_version, $allow_url_fopen, $https_wrapper, $has_curl)
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

/** pay_payhost_pick_transport() for this PHP. */
function pay_payhost_transport($url)
{
    $https = strtolower(substr($url, 0, 8)) === 'https://';
    $wrappers = function_exists('stream_get_wrappers') ? stream_get_wrappers() : array();
    return pay_payhost_pick_transport($https, PHP_VERSION, ini_get('allow_url_fopen'),
        in_array('https', $wrappers), function_exists('curl_init'));
}

/**
 * A ShopEx payment id (sdb_payments.payment_id: digits). mdl_payment::getById() and getConf()
 * put the id into their SQL unescaped, so nothing else may reach them.
 */
function pay_payhost_is_id($id)
{
    return is_string($id) && preg_match('/^[0-9]{1,20}$/', $id) === 1;
}

/**
 * A ShopEx amount in yuan with two decimals, as payhost takes it: sdb_payments.money is
 * decimal(20,3), and ShopEx leaves a third decimal where it does not round (ctl.paycenter.php
 * recharge() with a percentage fee: money*(1+fee), 33 at 1.5 % is 33.495; mdl.order.php
 * chgPayment()). Rounded half up on the decimal text itself, never through a float (33.495 as a
 * float is 33.49499…): what the buyer is asked to pay, and what a paid payment is compared with,
 * are the same text. A value that is not plain decimal text goes through number_format().
 */
function pay_payhost_amount($money)
{
    $text = trim((string)$money);
    if (!preg_match('/^([0-9]+)(?:\.([0-9]*))?$/', $text, $m)) {
        return number_format((float)$money, 2, '.', '');
    }
    $decimals = isset($m[2]) ? $m[2] : '';
    $fen = $m[1] . substr(str_pad($decimals, 2, '0'), 0, 2);
    if (strlen($decimals) > 2 && $decimals[2] >= '5') {
        // One fen more, carried through the digits (no integer overflow on a 32-bit PHP).
        for ($i = strlen($fen) - 1; $i >= 0; $i--) {
            if ($fen[$i] !== '9') {
                $fen[$i] = chr(ord($fen[$i]) + 1);
                break;
            }
            $fen[$i] = '0';
        }
        if ($i < 0) {
            $fen = '1' . $fen;
        }
    }
    $fen = str_pad(ltrim($fen, '0'), 3, '0', STR_PAD_LEFT);
    return substr($fen, 0, -2) . '.' . substr($fen, -2);
}

/**
 * A ShopEx amount in thousandths (decimal(20,3): 10.004 is 10004), as a float holding a whole
 * number (exact far beyond any shop's amounts, and no 32-bit integer limit).
 */
function pay_payhost_milli($money)
{
    return round((float)trim((string)$money) * 1000);
}

/** Fen as yuan text with two decimals. */
function pay_payhost_yuan($fen)
{
    return number_format($fen / 100, 2, '.', '');
}

/**
 * What a failed call to payhost means for the buyer, by payhost's error.code (host/src/http/
 * error.rs, service.rs) before its HTTP status:
 * - 'settings', what only the owner can fix: the token refused (401 unauthorized, 403 forbidden),
 *   a merchant payhost does not have or that has no settings yet, settings payhost refuses
 *   (invalid_settings, merchant_misconfigured), Alipay refusing the merchant's keys or app
 *   (pay_payhost_gateway_settings()), a request field built from a setting (the shop URL), a PHP
 *   that cannot reach payhost at all;
 * - 'order', this order's data refused (invalid_order, invalid_request: the amount, the subject…);
 * - 'down', payhost not answering (nothing listening, no answer in time), busy (429) or failing
 *   (any other 5xx: its database, Alipay not reachable or not understood) — try again later;
 * - 'other', the rest (an amount conflict, 409).
 * Whatever the kind, the buyer never reads payhost's own words nor its correlation id (its
 * message relays Alipay's text): those go to the shop's log (payhost_admin_log()).
 */
function pay_payhost_failure_kind($status, $answer)
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
        || pay_payhost_gateway_settings($code, $message)) {
        return 'settings';
    }
    if ($code === 'invalid_request' && in_array($field, array('return_url', 'merchant_url', 'shop_webhook_url',
        'seller_email', 'seller_id'), true)) {
        // Built from the settings (商店网址, the seller), not from the order.
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
function pay_payhost_gateway_settings($code, $message)
{
    if (strpos($code, 'gateway_') !== 0) {
        return false;
    }
    $c = strtoupper(substr($code, 8));
    return strpos($c, 'ISV.') === 0 || stripos($message, '(isv.') !== false || $c === '40006'
        || $c === 'ILLEGAL_PARTNER' || strpos($c, 'SIGN') !== false || strpos($c, 'HAS_NO_PRIVILEGE') !== false;
}

class pay_payhost extends paymentPlugin
{
    var $name = '支付宝手机网站支付 (payhost)';
    var $logo = 'ALIPAY';
    var $version = 20261125;
    var $charset = 'utf8';
    var $submitUrl = '';
    /** doPay() writes <form method="$payObj->method">: the cashier takes a GET. */
    var $method = 'get';
    var $supportCurrency = array('CNY' => '01');
    var $supportArea = array('AREA_CNY');
    var $orderby = 3;
    var $head_charset = 'utf-8';
    var $intro = 'payhost: 支付宝手机网站支付。先在服务器上运行 payhost，并在 payhost 为本店创建 API 令牌。';
    var $system;
    var $serverCallbackUrl;
    /** Set by a call that got no answer in time: the page's later calls give up at once. */
    var $payhost_stuck = 0;
    /** The MySQL named locks this request holds: name => how often taken (payhost_lock()). */
    var $payhost_locks = array();
    /** Whether payhost_unlock_all() is registered as a shutdown function (payhost_lock()). */
    var $payhost_unlock_registered = false;
    /** The payhost merchant of the page's payment method, named in the shop's log (payhost_admin_log()). */
    var $payhost_log_merchant = '';

    /** PHP 5 and later; ShopEx calls new pay_payhost($system) and, listing plugins, new pay_payhost. */
    function __construct(&$system = null)
    {
        parent::paymentPlugin($system);
    }

    /** The PHP 4 constructor name of ShopEx's own plugins. */
    function pay_payhost(&$system)
    {
        $this->__construct($system);
    }

    function getfields()
    {
        return array(
            'alipay_api' => array('label' => '接口类型(API)', 'type' => 'select', 'options' => array(
                'mapi' => '旧版接口（合作者身份 PID + 密钥） Legacy: partner ID + key',
                'openapi' => '新版开放平台（APPID + 应用私钥 + 支付宝公钥，合作者身份也要填） Open platform: APPID + app private key + Alipay public key, and the partner ID',
            )),
            'member_id' => array('label' => '合作者身份(parterID)', 'type' => 'string'),
            'PrivateKey' => array('label' => '交易安全校验码(key)（仅旧版接口）', 'type' => 'string'),
            'seller_account' => array('label' => '支付宝收款账号（仅旧版接口）', 'type' => 'string'),
            'app_id' => array('label' => 'APPID(app_id)（仅新版开放平台，16 位数字）', 'type' => 'string'),
            'app_private_key' => array('label' => '应用私钥(app private key)（仅新版开放平台：RSA2 应用私钥，一整行或 PEM）', 'type' => 'string'),
            'alipay_public_key' => array('label' => '支付宝公钥(Alipay public key)（仅新版开放平台：不是应用公钥）', 'type' => 'string'),
            // ShopEx's updatePay() keeps the saved value of a field submitted empty: '-' clears it.
            'gateway' => array('label' => '支付宝网关(gateway)（仅新版开放平台，可不填；支付宝沙箱：https://openapi-sandbox.dl.alipaydev.com/gateway.do；已填过要改回正式环境时填 -）', 'type' => 'string'),
            'shop_url' => array('label' => '商店网址（ShopEx 根目录，例如 https://shop.example/）', 'type' => 'string'),
            'payhost_url' => array('label' => 'payhost 地址（例如 http://127.0.0.1:8080）', 'type' => 'string'),
            'payhost_api_token' => array('label' => 'payhost API 令牌（本商户专用 phm_…，不是运营者令牌）', 'type' => 'string'),
            'payhost_shop_secret' => array('label' => 'payhost 商户密钥（phs_…，与令牌一起给出）', 'type' => 'string'),
        );
    }

    /**
     * The saved fields of the payment's method, trimmed; the merchant id and the webhook key. With
     * $conf (a method's unserialize()d sdb_payment_cfg.config), that method's instead.
     */
    function payhost_settings($paymentId, $conf = null)
    {
        $s = array();
        foreach (array_keys($this->getfields()) as $name) {
            if (is_array($conf)) {
                $s[$name] = trim(isset($conf[$name]) ? (string)$conf[$name] : '');
            } else {
                $s[$name] = trim((string)$this->getConf($paymentId, $name));
            }
        }
        // An app saved before the choice existed has no alipay_api: the legacy interface.
        $s['openapi'] = $s['alipay_api'] === 'openapi';
        // '-': no gateway (the production one). ShopEx's updatePay() keeps a field's saved value
        // when it is submitted empty, so an emptied field could never clear it.
        if ($s['gateway'] === '-') {
            $s['gateway'] = '';
        }
        $s['payhost_url'] = rtrim($s['payhost_url'], '/');
        // The shop's root URL as the owner typed it (ends with '/'); '' when missing or not http(s).
        $s['shop_url'] = preg_match('#^https?://[^/?\#]+(/[^?\#]*)?$#i', $s['shop_url']) ? rtrim($s['shop_url'], '/') . '/' : '';
        // The payhost merchant: shopex-<合作者身份ID>, or shopex-<APPID> for the open platform.
        $s['merchant'] = 'shopex-' . preg_replace('/[^0-9A-Za-z]/', '', $s['openapi'] ? $s['app_id'] : $s['member_id']);
        // The key of payhost's signed returns and webhooks: the merchant's own secret, created with
        // the merchant (payhost merchant add). An app configured before that has none: it keeps the
        // key it derived from the Alipay key. Either way payhost_configure() gives payhost this
        // key, so a secret pasted later replaces the derived one there too. Neither (a method saved
        // before its fields were filled in, or a payment of another method, whose configuration
        // has none of these fields): no key at all, never one derived from empty text, which
        // anyone could compute and sign a forged webhook with.
        $derive_from = $s['openapi'] ? $s['app_private_key'] : $s['PrivateKey'];
        if ($s['payhost_shop_secret'] !== '') {
            $s['secret'] = $s['payhost_shop_secret'];
        } elseif ($derive_from !== '' && $s['merchant'] !== 'shopex-') {
            $s['secret'] = hash_hmac('sha256', 'payhost-shop-webhook:' . $s['merchant'], $derive_from);
        } else {
            $s['secret'] = '';
        }
        $s['app_url'] = $s['shop_url'] . 'plugins/app/pay_payhost/';
        return $s;
    }

    /**
     * payhost's settings_digest of these settings: hex HMAC-SHA256 (key: the shop secret) over
     * "name=value\n" for each non-empty setting sorted by name, then "shop_webhook_url=<url>\n".
     */
    function payhost_digest($secret, $fields, $webhookUrl)
    {
        ksort($fields, SORT_STRING);
        $text = '';
        foreach ($fields as $k => $v) {
            if ((string)$v !== '') {
                $text .= $k . '=' . $v . "\n";
            }
        }
        return hash_hmac('sha256', $text . 'shop_webhook_url=' . $webhookUrl . "\n", $secret);
    }

    /**
     * The chosen interface's settings as payhost names them. The open platform's: the APPID, the
     * app's private key, Alipay's public key, the seller (合作者身份, 2088…) and, when filled in, the
     * gateway (Alipay's sandbox); empty ones are left out so payhost's defaults apply.
     */
    function payhost_fields($s)
    {
        if (!$s['openapi']) {
            return array(
                'partner' => $s['member_id'],
                'key' => $s['PrivateKey'],
                'seller_email' => $s['seller_account'],
                'mode' => 'b2c',
            );
        }
        $fields = array(
            'api' => 'openapi',
            'app_id' => $s['app_id'],
            'app_private_key' => $s['app_private_key'],
            'alipay_public_key' => $s['alipay_public_key'],
            'seller_id' => $s['member_id'],
            'gateway' => $s['gateway'],
        );
        foreach ($fields as $k => $v) {
            if ($v === '') {
                unset($fields[$k]);
            }
        }
        return $fields;
    }

    /**
     * Gives payhost the settings when they changed (its digest differs): true, or payhost's
     * answer array(HTTP status, body) for payhost_failed().
     */
    function payhost_configure($s)
    {
        $fields = $this->payhost_fields($s);
        $webhook = $s['app_url'] . 'pay_payhost.server.php';
        $path = '/v1/merchants/' . rawurlencode($s['merchant']);
        $digest = $this->payhost_digest($s['secret'], $fields, $webhook);
        // 5 s each, as the create call: the buyer is waiting on the payment page.
        list($status, $held) = $this->payhost_call($s, 'GET', $path, null, 5);
        if ($status == 0) {
            // Not reached, or no answer: sending the settings would only wait again.
            return array($status, $held);
        }
        if ($status == 200 && isset($held['settings_digest']) && pay_payhost_equals($digest, $held['settings_digest'])) {
            return true;
        }
        // Always the key this app verifies with: payhost's digest is keyed with the secret it
        // holds, so a secret pasted after a first save differs here and is sent; unchanged
        // settings and secret are not sent again.
        $body = $fields;
        $body['shop_webhook_url'] = $webhook;
        $body['shop_webhook_secret'] = $s['secret'];
        list($status, $answer) = $this->payhost_call($s, 'PUT', $path, $body, 5);
        return $status == 200 ? true : array($status, $answer);
    }

    /**
     * One JSON call to payhost: array(HTTP status or 0, decoded body or null). file_get_contents()
     * or curl, as pay_payhost_transport() picks; neither usable → 0 with error.code
     * "no_http_client" (shown as what this PHP lacks). No
     * answer within $timeout seconds (5 s: a buyer waits on the payment page and on the return,
     * which re-checks up to five times): 0 with error.code "timeout" (shown as "payhost did not
     * answer in time").
     */
    function payhost_call($s, $method, $path, $body = null, $timeout = 5)
    {
        $url = $s['payhost_url'] . $path;
        $content = $body === null ? '' : json_encode($body);
        $headers = array('Authorization: Bearer ' . $s['payhost_api_token'], 'Accept: application/json');
        if ($body !== null) {
            $headers[] = 'Content-Type: application/json';
        }
        if ($this->payhost_stuck > 0) {
            // One wait per page: the payment page is not held once per call by a payhost that
            // answers nothing.
            return array(0, array('error' => array('code' => 'timeout',
                'message' => 'no answer within ' . $this->payhost_stuck . ' s (an earlier call of this page)')));
        }
        $status = 0;
        $raw = false;
        $started = microtime(true);
        $transport = pay_payhost_transport($url);
        if ($transport === '') {
            return array(0, array('error' => array('code' => 'no_http_client',
                'message' => 'PHP ' . PHP_VERSION . ' needs the curl extension (or PHP >= 5.2.10 with allow_url_fopen on)')));
        }
        if ($transport === 'fopen') {
            $context = stream_context_create(array('http' => array(
                'method' => $method, 'header' => implode("\r\n", $headers) . "\r\n", 'ignore_errors' => true,
                'timeout' => $timeout, 'content' => $content,
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
     * What went wrong, for the owner's log: payhost_error_words(), then payhost's own English
     * words in brackets for support (its status, code and message; a 409's message names the
     * seller: only its code is kept).
     */
    function payhost_error($status, $answer)
    {
        $error = (is_array($answer) && isset($answer['error']) && is_array($answer['error'])) ? $answer['error'] : array();
        $code = isset($error['code']) ? (string)$error['code'] : '';
        $message = isset($error['message']) ? (string)$error['message'] : '';
        if ($status == 409) {
            $message = '';
        }
        return $this->payhost_error_words($status, $answer) . ' (payhost HTTP ' . intval($status)
            . ($code !== '' ? ' ' . $code : '') . ($message !== '' ? ': ' . $message : '') . ')';
    }

    /**
     * What went wrong, in Chinese, chosen by the HTTP status and payhost's error.code (naming the
     * setting when payhost names a field); none of payhost's own words.
     */
    function payhost_error_words($status, $answer)
    {
        $error = (is_array($answer) && isset($answer['error']) && is_array($answer['error'])) ? $answer['error'] : array();
        $code = isset($error['code']) ? (string)$error['code'] : '';
        $field = isset($error['field']) ? (string)$error['field'] : '';
        $message = isset($error['message']) ? (string)$error['message'] : '';
        if ($status == 0 && $code === 'no_http_client') {
            return '本服务器的 PHP 无法连接 payhost：需要 PHP 的 curl 扩展，或者 PHP 5.2.10 及以上并打开 allow_url_fopen（payhost 地址是 https 时还需要 openssl 扩展）。请服务器管理员安装 PHP 的 curl 扩展（例如 php-curl）。';
        }
        if ($status == 0 && $code === 'timeout') {
            return 'payhost 响应超时：payhost 没有及时答复。请稍后再试；一直出现时请商家检查 payhost 是否正常运行、「payhost 地址」是否指向它，以及 payhost 与支付宝之间的网络。';
        }
        if ($status == 0) {
            return '无法连接 payhost：请检查支付方式设置中的「payhost 地址」，并确认 payhost 正在运行。';
        }
        if ($status == 401) {
            return 'payhost 不认可「payhost API 令牌」：请填写运营者为本商户创建的 API 令牌（phm_ 开头），不要填写运营者令牌。';
        }
        if ($status == 403 && $field === '') {
            return '「payhost API 令牌」不属于这个商户：请确认「合作者身份(parterID)」（新版开放平台为 APPID）与令牌是运营者为同一个商户给出的。';
        }
        if ($code === 'unknown_merchant') {
            return 'payhost 上没有这个商户：请运营者用 payhost merchant add shopex-合作者身份ID（新版开放平台：shopex-APPID）创建，或检查「合作者身份(parterID)」/「APPID」。';
        }
        if ($code === 'merchant_not_configured') {
            // A merchant slot whose shop has not saved its Alipay settings yet.
            return 'payhost 上还没有本商户的支付宝设置。本应用在买家付款时才把设置交给 payhost（后台保存只存在商店里，不会联系 payhost）：请确认「支付方式」中本支付方式的各项都已填写，然后重新付款；仍然出现时请联系 payhost 运营者。';
        }
        if ($status == 409) {
            return '该支付单号已用于另一笔金额不同的支付，请联系商家。';
        }
        if ($code === 'invalid_order' || ($code === 'invalid_request' && pay_payhost_failure_kind($status, $answer) === 'order')) {
            // This order's data (the amount, the subject…), not the settings.
            return '订单信息不符合支付宝的要求' . ($field !== '' ? '（「' . $field . '」）' : '') . '，没有发起支付：';
        }
        if ($field !== '' && ($status == 400 || $status == 403 || $code === 'merchant_misconfigured')) {
            return '「' . $this->payhost_label($field) . '」有误，请在支付方式设置中改正：';
        }
        if (pay_payhost_gateway_settings($code, $message) || $code === 'gateway_bad_signature') {
            return '支付宝拒绝了本商户的设置（APPID、密钥、签名或签约的产品）：请按括号中 payhost 转达的支付宝说明检查支付方式设置；';
        }
        if ($status == 429 || $status == 503) {
            return 'payhost 繁忙，请稍后再试。';
        }
        if ($status == 502 || $status == 504) {
            return '支付宝暂时无法处理这个请求（没有答复，或答复无法识别）；一直出现时请把括号中的信息告诉 payhost 运营者。';
        }
        return 'payhost 出错（HTTP ' . intval($status) . '），请稍后再试；一直出现时请把括号中的信息告诉 payhost 运营者。';
    }

    /** The admin label of the setting behind a field payhost names (the label before its note). */
    function payhost_label($field)
    {
        $names = array('partner' => 'member_id', 'seller_id' => 'member_id', 'key' => 'PrivateKey',
            'seller_email' => 'seller_account', 'api' => 'alipay_api', 'app_id' => 'app_id',
            'app_private_key' => 'app_private_key', 'alipay_public_key' => 'alipay_public_key',
            'gateway' => 'gateway', 'gateway_url' => 'gateway', 'shop_webhook_url' => 'shop_url',
            'return_url' => 'shop_url', 'merchant_url' => 'shop_url', 'shop_webhook_secret' => 'payhost_shop_secret');
        $fields = $this->getfields();
        if (!isset($names[$field]) || !isset($fields[$names[$field]])) {
            return $field;
        }
        $parts = explode('（', $fields[$names[$field]]['label'], 2);
        return $parts[0];
    }

    function esc($text)
    {
        return str_replace(array('&', '<', '>', '"', "'"), array('&amp;', '&lt;', '&gt;', '&quot;', '&#039;'), (string)$text);
    }

    /**
     * A whole page for the buyer or the owner, then the end of the request. The page is the whole
     * answer: the shop's earlier output is dropped, and $system->_succ says the request ended
     * well (shopCore::shutdown() would otherwise run ShopEx's debugger, which prints the buffered
     * output again with the PHP messages collected on the way).
     */
    function payhost_page($status, $title, $body, $head = '')
    {
        $reasons = array(200 => 'OK', 400 => 'Bad Request', 502 => 'Bad Gateway');
        if (is_object($this->system)) {
            $this->system->_succ = true;
        }
        while (ob_get_level() > 0) {
            ob_end_clean();
        }
        header('HTTP/1.1 ' . $status . ' ' . $reasons[$status], true, $status);
        header('Content-Type: text/html; charset=utf-8');
        echo '<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8" />'
            . '<meta name="viewport" content="width=device-width, initial-scale=1" />' . $head
            . '<title>' . $this->esc($title) . '</title></head><body style="font-size:16px;text-align:center;padding:40px 12px">'
            . $body . '</body></html>';
        exit;
    }

    /** Splits a URL's query without parse_str() (which magic_quotes_gpc alters on PHP 5.2/5.3). */
    function payhost_query($query)
    {
        $fields = array();
        foreach (explode('&', $query) as $pair) {
            if ($pair === '') {
                continue;
            }
            $kv = explode('=', $pair, 2);
            $fields[urldecode($kv[0])] = isset($kv[1]) ? urldecode($kv[1]) : '';
        }
        return $fields;
    }

    /**
     * The page 取消 at the cashier brings the buyer back to (merchant_url). An order's payment
     * (ctl.paycenter.php order() → doPay('', order_id)): the order in the member centre,
     * index.php?member-<order id>-orderdetail.html (ctl.member.php orderdetail()), as the shop's own
     * templates link it (<{link ctl=member act=orderdetail arg0=…}> → kernel::getLink(): the arguments
     * first, the method last when the last argument is a number; kernel::parse() reads a numeric last
     * segment as an argument, so member-orderdetail-<id> would be the member centre's index). A deposit top-up
     * (预存款充值: ctl.paycenter.php recharge() → doPay('recharge')) has no order:
     * mdl_payment::getPaymentInfo('recharge') sets M_Method to 'recharge' and M_OrderNO to the
     * payment id, so the buyer goes back to the member centre's 预存款充值 page,
     * index.php?member-deposit.html (ctl.member.php deposit(), where the top-up was started).
     */
    function payhost_cancel_url($s, $payment)
    {
        if (isset($payment['M_Method']) && $payment['M_Method'] === 'recharge') {
            return $s['shop_url'] . 'index.php?member-deposit.html';
        }
        return $s['shop_url'] . 'index.php?member-' . rawurlencode((string)$payment['M_OrderNO']) . '-orderdetail.html';
    }

    /** doPay(): the fields of the cashier's GET form; an error is shown on the page. */
    /* The parameters have defaults: ShopEx's base class declares toSubmit() and callback() without
       any, and PHP 8 refuses an override that requires more. */
    function toSubmit($payment = null)
    {
        $s = $this->payhost_settings($payment['M_OrderId']);
        $this->payhost_log_merchant = $s['merchant'];
        if ($s['shop_url'] === '') {
            $this->payhost_settings_page('商店网址没有填写，或不是以 http:// 或 https:// 开头的网址（例如 https://shop.example/）');
        }
        if (strpos($s['payhost_api_token'], 'phm_') !== 0) {
            // The operator's token reaches every merchant: a shop's database must not hold it.
            $this->payhost_settings_page('「payhost API 令牌」应填本商户的令牌（phm_ 开头，由 payhost merchant add 或 payhost token create 给出），不要填写运营者令牌');
        }
        $configured = $this->payhost_configure($s);
        if ($configured !== true) {
            $this->payhost_failed($configured[0], $configured[1], '支付宝设置有误：');
        }
        // Each doPay() is a new payment id: an earlier payment of this order may have been paid
        // at Alipay while the shop never heard of it (its webhook dead-lettered, the buyer's
        // browser closed before the return). Applied here instead of a second cashier.
        $this->payhost_earlier($s, $payment);
        $shopName = (string)$this->system->getConf('system.shopname');
        $request = array(
            'out_trade_no' => (string)$payment['M_OrderId'],
            'subject' => trim($shopName . ' ' . $payment['M_OrderNO']),
            'total_fee' => pay_payhost_amount($payment['M_Amount']),
            'return_url' => $s['app_url'] . 'pay_payhost.php',
            // Where 取消 at the cashier brings the buyer: the order, or the top-up page.
            'merchant_url' => $this->payhost_cancel_url($s, $payment),
            // payhost refuses a User-Agent over 1024 bytes.
            'user_agent' => pay_payhost_utf8_cut(isset($_SERVER['HTTP_USER_AGENT']) ? $_SERVER['HTTP_USER_AGENT'] : '', 1024),
            'product' => 'auto',
        );
        $path = '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments';
        list($status, $answer) = $this->payhost_call($s, 'POST', $path, $request, 5);
        if ($status == 400 && isset($answer['error']['message']) && strpos($answer['error']['message'], 'unknown field') !== false) {
            // A payhost that predates user_agent/product: the same request without them.
            unset($request['user_agent'], $request['product']);
            list($status, $answer) = $this->payhost_call($s, 'POST', $path, $request, 5);
        }
        if ($status != 201 && $status != 200) {
            $this->payhost_failed($status, $answer, '无法发起支付宝支付：');
        }
        if (empty($answer['pay_url'])) {
            // Each doPay() is a new ShopEx payment id: an answer without pay_url is this payment's
            // own state (paid, or closed: then the buyer pays again from the order).
            $state = isset($answer['status']) ? (string)$answer['status'] : '';
            if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED' || $state === 'PARTIALLY_REFUNDED') {
                $text = '该支付单已支付。';
            } elseif ($state === 'TRADE_CLOSED' || $state === 'REFUNDED') {
                $text = '该支付单已关闭，请回到订单重新付款。';
            } else {
                // An answer this app does not know: its words are for the owner's log only.
                $this->payhost_admin_log('无法发起支付宝支付：payhost 的答复没有收银台地址 (payhost HTTP ' . intval($status)
                    . ($state !== '' ? ' status ' . $state : '') . ')');
                $this->payhost_unavailable_page();
            }
            $this->payhost_page(502, '无法发起支付', '<div class="payhost-error" style="color:#c00">无法发起支付宝支付：'
                . $this->esc($text) . '</div><p><a href="javascript:history.back()">返回</a></p>');
        }
        $this->method = 'get';
        $parts = explode('?', $answer['pay_url'], 2);
        $this->submitUrl = $parts[0];
        return $this->payhost_query(isset($parts[1]) ? $parts[1] : '');
    }

    /**
     * A call to payhost that failed on the payment page (pay_payhost_failure_kind()). The buyer
     * reads only what the buyer can do: payhost not answering, busy or failing → "支付暂时不可用，
     * 请稍后再试"; the settings → "支付宝设置有误…请联系商家", never which setting; this order's data
     * refused → "这笔订单暂时无法发起支付…请联系商家"; anything else (an amount conflict) in Chinese
     * words only. Never payhost's own words nor its correlation id (its message relays Alipay's
     * text): every kind goes to the shop's log with them, for the owner (payhost_admin_log()).
     * Ends the request.
     */
    function payhost_failed($status, $answer, $prefix)
    {
        $kind = pay_payhost_failure_kind($status, $answer);
        $this->payhost_admin_log($prefix . $this->payhost_error($status, $answer));
        if ($kind === 'down') {
            $this->payhost_unavailable_page();
        }
        if ($kind === 'settings') {
            $this->payhost_settings_page(null);
        }
        if ($kind === 'order') {
            $this->payhost_page(502, '无法发起支付', '<div class="payhost-error" id="payhost-order" style="color:#c00">'
                . '这笔订单暂时无法发起支付宝支付，请联系商家。</div><p><a href="javascript:history.back()">返回</a></p>');
        }
        $this->payhost_page(502, '无法发起支付', '<div class="payhost-error" style="color:#c00">'
            . $this->esc($prefix . $this->payhost_error_words($status, $answer))
            . '</div><p><a href="javascript:history.back()">返回</a></p>');
    }

    /** The buyer's page while payhost cannot be used: "try again later". Ends the request. */
    function payhost_unavailable_page()
    {
        $this->payhost_page(502, '支付暂时不可用', '<div class="payhost-error" id="payhost-unavailable" style="color:#c00">'
            . '支付暂时不可用，请稍后再试。</div><p><a href="javascript:history.back()">返回</a></p>');
    }

    /**
     * The buyer's page of a settings problem: "支付宝设置有误", no detail ($detail, what the owner
     * must change, goes to the shop's log; null when it is there already). Ends the request.
     */
    function payhost_settings_page($detail)
    {
        if ($detail !== null) {
            $this->payhost_admin_log('支付宝设置有误：' . $detail);
        }
        $this->payhost_page(502, '支付宝设置有误', '<div class="payhost-error" id="payhost-settings" style="color:#c00">'
            . '支付宝设置有误，暂时无法付款，请联系商家。</div><p><a href="javascript:history.back()">返回</a></p>');
    }

    /**
     * A line for the shop owner only, in HOME_DIR/logs/payhost.log.php (ShopEx's own logs live in
     * home/logs, e.g. the crontab's access.log.php): the time, the payhost merchant of the
     * payment method the page was using ('-' before it is known) and $text, tab-separated. Never a
     * secret: $text is what payhost_error() says (the setting to check, payhost's status, code and
     * words). The file is a .php file whose first line exits, so the web server never shows it:
     * - the header is written whenever the file is empty, checked under the same flock as the
     *   write (a first write that failed after creating the file must not leave it without one);
     * - $text is one line with every '<' followed by a space and control characters as spaces
     *   (payhost relays Alipay's words: a '<?php' or '<script language="php">' in them must
     *   never become code after the header);
     * - the same merchant and text within 10 minutes is not written again (a payment page is
     *   opened again and again while payhost is down), as the ecshop module's admin_log();
     * - past 1 MiB nothing more is appended but one last line saying so: the log cannot fill
     *   the disk; the owner empties or deletes it (it is made again).
     */
    function payhost_admin_log($text)
    {
        if (!defined('HOME_DIR')) {
            return;
        }
        $dir = HOME_DIR . '/logs';
        $file = $dir . '/payhost.log.php';
        if (!is_dir($dir)) {
            @mkdir($dir, 0755, true);
        }
        $said = str_replace('<', '< ', preg_replace('/[\x00-\x1F\x7F]+/', ' ', (string)$text));
        $merchant = $this->payhost_log_merchant !== '' ? $this->payhost_log_merchant : '-';
        $entry = $merchant . "\t" . $said;
        $fp = @fopen($file, 'a+');
        if (!$fp) {
            return;
        }
        if (!flock($fp, LOCK_EX)) {
            fclose($fp);
            return;
        }
        $stat = fstat($fp);
        $size = is_array($stat) ? (int)$stat['size'] : 0;
        $full = '日志已满（1 MiB），之后的问题不再记录：请下载后清空或删除这个文件（会重新建立）。';
        $out = '';
        if ($size == 0) {
            $out = "<?php exit()?>\n";
        }
        $tail = '';
        if ($size > 0) {
            // The lines of the last 10 minutes are in the file's tail.
            fseek($fp, max(0, $size - 65536));
            $tail = (string)fread($fp, 65536);
        }
        if ($size >= 1048576) {
            if (strpos($tail, $full) === false) {
                $out = date('Y-m-d H:i:s') . "\t-\t" . $full . "\n";
            }
        } elseif (!$this->payhost_logged_lately($tail, $entry)) {
            $out .= date('Y-m-d H:i:s') . "\t" . $entry . "\n";
        }
        if ($out !== '') {
            fwrite($fp, $out);
            fflush($fp);
        }
        flock($fp, LOCK_UN);
        fclose($fp);
    }

    /** Whether the log's $tail has a line "<time>\t$entry" written within the last 10 minutes. */
    function payhost_logged_lately($tail, $entry)
    {
        $since = time() - 600;
        foreach (explode("\n", $tail) as $line) {
            $parts = explode("\t", $line, 2);
            if (count($parts) == 2 && $parts[1] === $entry) {
                $at = strtotime($parts[0]);
                if ($at !== false && $at !== -1 && $at >= $since) {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * Before a new payment of an order: its earlier payments of this payment method that ShopEx
     * has not taken (mdl_payment::getOrderBillList(), the order's sdb_payments rows; newest
     * first, up to 20 within 6 s, each asked at payhost). One paid at payhost (its webhook given
     * up, the buyer gone before the return) is applied as the return applies it (payhost_take()) and the buyer is
     * told the order is paid, instead of getting a second cashier. Ends the request then;
     * returns otherwise (none paid, a top-up, payhost not answering: a new payment as before).
     */
    function payhost_earlier($s, $payment)
    {
        if (isset($payment['M_Method']) && $payment['M_Method'] === 'recharge') {
            return;
        }
        $orderId = isset($payment['M_OrderNO']) ? (string)$payment['M_OrderNO'] : '';
        $current = isset($payment['M_OrderId']) ? (string)$payment['M_OrderId'] : '';
        $oPay = $this->system->loadModel('trading/payment');
        if (!pay_payhost_is_id($orderId) || !method_exists($oPay, 'getOrderBillList')) {
            return;
        }
        $mine = $oPay->getById($current);
        $method = is_array($mine) && isset($mine['payment']) ? (string)$mine['payment'] : '';
        $ids = array();
        foreach ((array)$oPay->getOrderBillList($orderId) as $row) {
            if (!is_array($row) || !isset($row['payment_id'], $row['status']) || (string)$row['payment_id'] === $current
                || !pay_payhost_is_id((string)$row['payment_id']) || $row['status'] === 'succ'
                || !isset($row['payment']) || (string)$row['payment'] !== $method
                || (isset($row['pay_type']) && $row['pay_type'] === 'recharge')) {
                continue;
            }
            $ids[] = (string)$row['payment_id'];
        }
        // Payment ids are time() and four digits: the newest first. Every one of them, not the
        // newest few: while payhost was down each try of the buyer made a new payment id (doPay()
        // writes it before toSubmit() fails), so the paid one can be far down the list. payhost
        // answers 404 at once for an id it never saw, so the tries cost little; a bound (20) and
        // one budget for them all (6 s; one call without an answer makes the page's later calls
        // give up at once, payhost_call()) keep the buyer's page from waiting on a long list.
        rsort($ids, SORT_STRING);
        $started = microtime(true);
        foreach (array_slice($ids, 0, 20) as $id) {
            if (microtime(true) - $started > 6) {
                break;
            }
            $p = $this->payhost_payment($s, $id);
            $state = $p === null ? '' : (string)$p['status'];
            if ($state !== 'TRADE_SUCCESS' && $state !== 'TRADE_FINISHED' && $state !== 'PARTIALLY_REFUNDED') {
                continue;
            }
            $record = $oPay->getById($id);
            if (!$record || pay_payhost_amount($record['money']) !== pay_payhost_amount($p['total_fee'])) {
                // Not what this payment asked for: the return and the webhook refuse it too.
                continue;
            }
            $info = array('money' => $record['money'], 'memo' => 'payhost ' . $state,
                'trade_no' => isset($p['trade_no']) ? (string)$p['trade_no'] : '');
            list($result) = $this->payhost_take($id, $record, $info);
            if ($state === 'PARTIALLY_REFUNDED' && ($result === 'paid' || $result === 'second')) {
                $this->payhost_note_partly_refunded($record, $id, $p);
            }
            $this->payhost_taken_page($result, $id);
        }
    }

    /**
     * The buyer's page after payhost_take() applied (or refused) an earlier payment of the order
     * on the payment page; the end of the request.
     */
    function payhost_taken_page($result, $id)
    {
        if ($result === 'deleted') {
            $this->payhost_page(200, '订单已删除', '<div class="payhost-error" id="payhost-deleted" style="color:#c00">'
                . '已付款，但订单已被商家删除，没有改为已付款。请联系商家退款，不要重复付款。</div>');
        }
        if ($result === 'dead') {
            $this->payhost_page(200, '订单已作废', '<div class="payhost-error" id="payhost-dead" style="color:#c00">'
                . '已付款，但订单已作废，没有改为已付款。请联系商家退款，不要重复付款。</div>');
        }
        if ($result === 'second') {
            $this->payhost_second_page();
        }
        if ($result === 'paid') {
            $this->payhost_page(200, '订单已支付', '<div id="payhost-paid">该订单已支付（支付单 ' . $this->esc($id)
                . ' 的支付宝付款已确认），不需要再付款。</div>');
        }
        $this->payhost_page(200, '支付结果确认中', '<div id="payhost-pending">支付宝已收到这笔付款，订单稍后会自动更新为已付款，请不要重复付款。</div>');
    }

    /** payhost's view of a payment, or null. 5 s, as the payment page's calls: the buyer waits on it. */
    function payhost_payment($s, $outTradeNo)
    {
        list($status, $p) = $this->payhost_call($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments/'
            . rawurlencode($outTradeNo), null, 5);
        return ($status == 200 && is_array($p) && isset($p['status'])) ? $p : null;
    }

    /**
     * Whether ShopEx payment $id was made with this app's method (sdb_payments.payment names a
     * sdb_payment_cfg row whose pay_type is 'payhost'). getConf() reads the configuration of
     * whatever method a payment was made with: a deposit (预存款) or another gateway's payment
     * must never be paid by a webhook or a return signed for this app.
     */
    function payhost_owns($id)
    {
        $oPay = $this->system->loadModel('trading/payment');
        $record = $oPay->getById($id);
        if (!$record || !isset($record['payment'])) {
            return false;
        }
        $cfg = $oPay->getPaymentById($record['payment']);
        return is_array($cfg) && isset($cfg['pay_type']) && $cfg['pay_type'] === 'payhost';
    }

    /**
     * The settings of every payment method of this app (mdl_payment::getAllMethods(): the enabled
     * and the disabled ones) that has a key, for a return or a webhook whose payment ShopEx no
     * longer has (getConf() finds a method only through the payment).
     */
    function payhost_methods()
    {
        $list = array();
        $oPay = $this->system->loadModel('trading/payment');
        $rows = method_exists($oPay, 'getAllMethods') ? $oPay->getAllMethods() : array();
        foreach ((array)$rows as $row) {
            if (!is_array($row) || !isset($row['pay_type']) || $row['pay_type'] !== 'payhost' || !isset($row['config'])) {
                continue;
            }
            $conf = @unserialize((string)$row['config']);
            if (!is_array($conf)) {
                continue;
            }
            $s = $this->payhost_settings('', $conf);
            if ($s['secret'] !== '') {
                $list[] = $s;
            }
        }
        return $list;
    }

    /** Whether the buyer's return $in is signed by payhost with the key of settings $s, for its merchant. */
    function payhost_return_signed($in, $s)
    {
        if ($s['secret'] === '' || !isset($in['sign'], $in['ts'], $in['merchant'])) {
            return false;
        }
        $params = $in;
        unset($params['sign'], $params['payhost_wait']);
        ksort($params);
        $parts = array();
        foreach ($params as $k => $v) {
            $parts[] = $k . '=' . $v;
        }
        return pay_payhost_equals(hash_hmac('sha256', implode('&', $parts), $s['secret']), (string)$in['sign'])
            && (string)$in['merchant'] === $s['merchant'];
    }

    /** The page of a signed return older than 10 minutes (a link kept or shared), unless it is fresh. */
    function payhost_return_fresh($in)
    {
        if (!preg_match('/^[0-9]{1,12}$/', (string)$in['ts']) || abs(time() - (int)$in['ts']) > 600) {
            // An old signed return (a link kept or shared): nothing is changed.
            $this->payhost_page(400, '链接已过期', '<div class="payhost-error" id="payhost-expired" style="color:#c00">该支付返回链接已过期，请到会员中心查看订单状态，不要重复付款。</div>');
        }
    }

    /**
     * The buyer's return for a payment ShopEx no longer has (emptying the admin's recycle bin,
     * mdl_order::toRemove(), deletes the order's payments): the method is the one whose merchant
     * signed the return; the buyer is told to ask the shop for a refund. Ends the request.
     */
    function payhost_deleted_return($in, $id)
    {
        $found = null;
        foreach ($this->payhost_methods() as $s) {
            if ($this->payhost_return_signed($in, $s)) {
                $found = $s;
                break;
            }
        }
        if ($found === null) {
            $this->payhost_page(400, '验证失败', '<div class="payhost-error" style="color:#c00">返回参数验证失败，请到会员中心查看订单状态。</div>');
        }
        $this->payhost_return_fresh($in);
        $p = $this->payhost_payment($found, $id);
        $state = $p === null ? '' : $p['status'];
        if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED') {
            $text = '已付款，但商店中已没有这笔支付单（订单可能已被删除），请联系商家退款，不要重复付款。';
        } else {
            $text = '商店中已没有这笔支付单（订单可能已被删除）。如果已经付款，请联系商家退款，不要重复付款。';
        }
        $this->payhost_page(200, '支付单不存在', '<div class="payhost-error" id="payhost-payment-deleted" style="color:#c00">'
            . $text . '</div>');
    }

    /** The buyer's return (the app dispatcher, then progress()): payhost's signed query. */
    function callback($in = null, &$paymentId = null, &$money = null, &$message = null, &$tradeno = null)
    {
        $id = isset($in['out_trade_no']) && is_string($in['out_trade_no']) ? $in['out_trade_no'] : '';
        if (!pay_payhost_is_id($id)) {
            // Not a ShopEx payment id: refused before the database is asked anything.
            $this->payhost_page(400, '验证失败', '<div class="payhost-error" style="color:#c00">返回参数验证失败，请到会员中心查看订单状态。</div>');
        }
        $oPay = $this->system->loadModel('trading/payment');
        if (!$oPay->getById($id)) {
            // Deleted in the shop: the return is checked with the key of the merchant it names.
            $this->payhost_deleted_return($in, $id);
        }
        $s = $this->payhost_settings($id);
        if ($s['secret'] === '' || !$this->payhost_owns($id)) {
            // No key to verify with, or not a payment of this method: nothing is trusted.
            $this->payhost_page(400, '验证失败', '<div class="payhost-error" style="color:#c00">返回参数验证失败，请到会员中心查看订单状态。</div>');
        }
        if (!$this->payhost_return_signed($in, $s)) {
            // Not touching any payment: the id of an unsigned query cannot be trusted.
            $this->payhost_page(400, '验证失败', '<div class="payhost-error" style="color:#c00">返回参数验证失败，请到会员中心查看订单状态。</div>');
        }
        $this->payhost_return_fresh($in);
        $p = $this->payhost_payment($s, $id);
        $state = $p === null ? '' : $p['status'];
        if ($state === 'REFUNDED') {
            // Refunded in full at Alipay: never "paid", never "being confirmed" (the page would
            // re-check for ever). Not yet taken by the shop: it stays unpaid, and the order's log
            // says so once, as the webhook's retry would (payhost_refunded_first()).
            $record = $oPay->getById($id);
            $taken = $record && $record['status'] === 'succ';
            $orderId = $record && isset($record['order_id']) ? (string)$record['order_id'] : '';
            if ($record && !$taken && pay_payhost_is_id($orderId)
                && !(isset($record['pay_type']) && $record['pay_type'] === 'recharge')) {
                $this->payhost_note_refunded_first($orderId, $id, $state);
            }
            $this->payhost_page(200, '已退款', '<div class="payhost-error" id="payhost-refunded" style="color:#c00">'
                . '这笔支付宝付款已全额退款' . ($taken ? '。' : '，没有改为已付款。') . '如有疑问请联系商家，不要重复付款。</div>');
        }
        if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED' || $state === 'PARTIALLY_REFUNDED') {
            // PARTIALLY_REFUNDED: paid, then part of it refunded at Alipay (perhaps before the
            // shop took it): the payment was made, so it pays the order, and the owner is told
            // of the refund (payhost_note_partly_refunded()).
            // The amount, as the webhook checks it: progress() → setPayStatus() would record any.
            $record = $oPay->getById($id);
            if (!$record || pay_payhost_amount($record['money']) !== pay_payhost_amount($p['total_fee'])) {
                $this->payhost_page(200, '金额不符', '<div class="payhost-error" id="payhost-amount" style="color:#c00">'
                    . '已付款，但金额与支付单不符，支付单暂未确认为已付款。请联系商家处理，不要重复付款。</div>');
            }
            $info = array('money' => $record['money'], 'memo' => 'payhost ' . $state,
                'trade_no' => isset($p['trade_no']) ? (string)$p['trade_no'] : '');
            if (isset($record['pay_type']) && $record['pay_type'] === 'recharge') {
                // A top-up (预存款充值): applied here, as progress() would, so that the buyer is
                // told whether anyone was credited. setPayStatus() writes succ before onSuccess()
                // → mdl_advance::add(), which credits nobody when the member is gone, and returns
                // true at once on succ ever after: only the deposit's log row proves the credit.
                if ($record['status'] !== 'succ') {
                    $oPay->setPayStatus($id, PAY_SUCCESS, $info);
                }
                $credited = $this->payhost_topup_credited($id);
                for ($i = 0; $i < 4 && $credited === false; $i++) {
                    // The webhook may be crediting it at this moment (it wrote succ first).
                    usleep(500000);
                    $credited = $this->payhost_topup_credited($id);
                }
                if ($credited === false) {
                    $this->payhost_page(200, '预存款尚未入账', '<div class="payhost-error" id="payhost-not-credited" style="color:#c00">'
                        . '已付款，但预存款尚未入账，请联系商家，不要重复充值。</div>');
                }
            } elseif ($record['status'] !== 'succ') {
                // The webhook's checks of the order and its setPayStatus(), under the order's
                // lock (payhost_take()): a cancelled or deleted order is left unpaid, a second
                // payment of a paid order is named. progress() then finds the payment succ.
                list($result) = $this->payhost_take($id, $record, $info);
                if ($state === 'PARTIALLY_REFUNDED' && ($result === 'paid' || $result === 'second')) {
                    $this->payhost_note_partly_refunded($record, $id, $p);
                }
                if ($result === 'deleted' || $result === 'dead' || $result === 'second') {
                    $this->payhost_taken_page($result, $id);
                }
                if ($result !== 'paid') {
                    // 'busy' (the order's lock not had within 10 s: another request is applying
                    // a payment of this order) or 'failed' (setPayStatus() false: another call
                    // took it at this moment, or mdl_order::payed() failed). PAY_SUCCESS would
                    // make the dispatcher's progress() run setPayStatus() itself, outside the
                    // lock and without payhost_take()'s checks (a cancelled or deleted order
                    // paid, a second payment taken without a word): "being confirmed", and the
                    // page asks again.
                    $this->payhost_pending_page($s, $in);
                }
            } elseif ($this->payhost_logged($record, '[payhost second ' . $id . ']')) {
                // Taken by the webhook first as a second payment of a paid order.
                $this->payhost_second_page();
            } elseif ($state === 'PARTIALLY_REFUNDED') {
                // Taken before (the webhook), refunded in part since.
                $this->payhost_note_partly_refunded($record, $id, $p);
            }
            $paymentId = $p['out_trade_no'];
            // The payment's own amount (equal, checked above): progress() → setPayStatus() writes
            // it back, and payhost's two decimals would round ShopEx's three (33.495 → 33.50).
            $money = $record['money'];
            $tradeno = isset($p['trade_no']) ? $p['trade_no'] : '';
            $message = 'payhost ' . $state;
            return PAY_SUCCESS;
        }
        if ($state === 'TRADE_CLOSED') {
            $paymentId = $id;
            // setPayStatus() writes money whatever the status: left null it would write NULL into
            // sdb_payments.money (NOT NULL: refused by a strict MySQL, 0.000 otherwise).
            $record = $this->system->loadModel('trading/payment')->getById($id);
            $money = $record ? $record['money'] : $p['total_fee'];
            $tradeno = isset($p['trade_no']) ? $p['trade_no'] : '';
            $message = 'payhost TRADE_CLOSED';
            return PAY_FAILED;
        }
        // Paid at Alipay, the notify not confirmed yet (or payhost briefly unreachable).
        $this->payhost_pending_page($s, $in);
    }

    /**
     * The buyer's "支付结果确认中" page of return $in, reloading itself every 2 s with payhost_wait
     * counted up; after five times it says to look later. Ends the request.
     */
    function payhost_pending_page($s, $in)
    {
        $wait = isset($in['payhost_wait']) ? intval($in['payhost_wait']) : 0;
        if ($wait >= 5) {
            $this->payhost_page(200, '支付结果确认中', '<div id="payhost-pending">支付结果仍在确认中。支付宝确认后订单会自动更新为已付款，请稍后在会员中心查看，不要重复付款。</div>');
        }
        $query = $in;
        $query['payhost_wait'] = $wait + 1;
        $pairs = array();
        foreach ($query as $k => $v) {
            $pairs[] = rawurlencode($k) . '=' . rawurlencode($v);
        }
        $url = $s['app_url'] . 'pay_payhost.php?' . implode('&', $pairs);
        $this->payhost_page(200, '支付结果确认中',
            '<div id="payhost-pending">支付结果确认中，请稍候……页面会自动刷新。</div>',
            '<meta http-equiv="refresh" content="2;url=' . $this->esc($url) . '" />');
    }

    /**
     * payhost's webhook (pay_payhost.server.php, called by the app dispatcher as
     * pay_<ident>_callback): X-Payhost-Signature t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>">, t within
     * 300 s. Applies the payment with setPayStatus() and answers for itself, then ends the request:
     * 200 only when the order is paid in ShopEx (its pay_status, read with mdl_order::
     * getFieldById()), 503 otherwise so payhost retries. setPayStatus() writes the payment's succ
     * first and then runs onSuccess() → mdl_order::payed(), which can fail (its toEdit() of the
     * order): the payment then says succ while the order is unpaid, and a later setPayStatus()
     * returns at once on succ, so the payment record alone proves nothing. When this call's
     * setPayStatus() failed that way, a line in the order's log asks the owner to confirm the
     * payment by hand; the retries stay unanswered until the order is paid (or payhost lists the
     * webhook as undelivered). A deposit top-up (pay_type recharge) has no order: 2xx only when
     * the deposit's log (sdb_advance_logs) has this payment, as mdl_advance::add() writes it once the
     * member is credited (it credits nobody when the member is gone, and setPayStatus() never
     * tries again once succ). A payment ShopEx no longer has (deleted with its order) is refused
     * with 404, naming the refund, when one of this app's methods signed it.
     */
    function pay_payhost_callback($in, &$paymentId, &$money, &$message, &$tradeno)
    {
        $body = file_get_contents('php://input');
        $header = isset($_SERVER['HTTP_X_PAYHOST_SIGNATURE']) ? $_SERVER['HTTP_X_PAYHOST_SIGNATURE'] : '';
        $event = json_decode($body, true);
        if (!is_array($event) || empty($event['out_trade_no']) || empty($event['type'])) {
            $this->payhost_answer(400, 'not an event');
        }
        $id = is_string($event['out_trade_no']) ? $event['out_trade_no'] : '';
        if (!pay_payhost_is_id($id)) {
            // Not a ShopEx payment id: refused before the database is asked anything.
            $this->payhost_answer(404, 'unknown payment');
        }
        if (!$this->system->loadModel('trading/payment')->getById($id)) {
            // Deleted in the shop (emptying the recycle bin deletes an order's payments): signed
            // with the key of one of this app's methods, the money is for the owner to refund.
            foreach ($this->payhost_methods() as $s) {
                if ($this->payhost_webhook_signed($header, $body, $s['secret'])) {
                    if ($event['type'] === 'payment.paid' || $event['type'] === 'payment.finished') {
                        $this->payhost_answer(404, 'payment deleted in the shop: refund it at payhost');
                    }
                    $this->payhost_answer(200, 'ignored: payment deleted in the shop');
                }
            }
            $this->payhost_answer(404, 'unknown payment');
        }
        if (!$this->payhost_owns($id)) {
            // Another method's payment (a deposit, another gateway): never this app's to pay.
            $this->payhost_answer(404, 'unknown payment');
        }
        $s = $this->payhost_settings($id);
        if ($s['secret'] === '') {
            // Not configured yet: payhost retries until the owner saves the secret.
            $this->payhost_answer(503, 'payment method not configured: no key to verify webhooks with');
        }
        if (!$this->payhost_webhook_signed($header, $body, $s['secret'])) {
            $this->payhost_answer(401, 'bad signature');
        }
        if ($event['type'] === 'payment.refunded' || $event['type'] === 'payment.partially_refunded') {
            $this->payhost_refund($s, $id, $event);
        }
        if ($event['type'] !== 'payment.paid' && $event['type'] !== 'payment.finished') {
            // payment.closed: the payment stays unpaid; the buyer pays again from the order.
            $this->payhost_answer(200, 'ignored');
        }
        $oPay = $this->system->loadModel('trading/payment');
        $record = $oPay->getById($id);
        if (!$record) {
            $this->payhost_answer(404, 'unknown payment');
        }
        if (pay_payhost_amount($record['money']) !== pay_payhost_amount($event['total_fee'])) {
            $this->payhost_answer(409, 'amount differs from the payment');
        }
        $applied = true;
        if ($record['status'] !== 'succ') {
            // An event is retried until the shop takes it, and a refund may have happened
            // meanwhile (payhost: the payment's status is authoritative). Money payhost says went
            // back in full does not make the order paid: a line in its log says why. Any other
            // answer (payhost slow, a token replaced) leaves the signed event's word.
            list($code, $now) = $this->payhost_call($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant'])
                . '/payments/' . rawurlencode($id), null, 4);
            if ($code == 200 && is_array($now) && isset($now['status'])
                && ($now['status'] === 'REFUNDED' || $now['status'] === 'TRADE_CLOSED')) {
                // Answers and ends, unless the buyer's return paid the payment while this asked
                // payhost (then it is taken as paid, as it is).
                $this->payhost_refunded_first($id, $record, $now['status']);
                $record = $oPay->getById($id);
            }
        }
        // The order as this call found it before paying it, when it pays it.
        $before = null;
        if ($record && $record['status'] !== 'succ') {
            // The order's checks and setPayStatus() under the order's lock (payhost_take()): a
            // cancelled (dead) or deleted order stays unpaid with its payment and the order's log
            // says so; a second payment of a paid order is applied and named.
            $info = array('money' => $record['money'], 'memo' => 'payhost ' . $event['type'],
                'trade_no' => isset($event['trade_no']) ? (string)$event['trade_no'] : '');
            list($result, $before, $applied, $noted) = $this->payhost_take($id, $record, $info);
            if ($result === 'deleted') {
                $this->payhost_answer($noted ? 200 : 503, $noted ? 'order deleted in the shop (recycle bin): noted, payment left unpaid' : 'not recorded, retry');
            }
            if ($result === 'dead') {
                $this->payhost_answer($noted ? 200 : 503, $noted ? 'order cancelled in the shop: noted, payment left unpaid' : 'not recorded, retry');
            }
            if ($result === 'busy') {
                $this->payhost_answer(503, 'busy, retry');
            }
            $record = $oPay->getById($id);
        }
        if (!$record || $record['status'] !== 'succ') {
            $this->payhost_answer(503, 'not applied, retry');
        }
        $orderId = isset($record['order_id']) ? (string)$record['order_id'] : '';
        if (isset($record['pay_type']) && $record['pay_type'] === 'recharge') {
            // A top-up: credited only when the deposit's log has this payment (mdl_advance::add()
            // fails, after setPayStatus() wrote succ, for a member who is gone).
            $credited = $this->payhost_topup_credited($id);
            for ($i = 0; $i < 4 && $credited === false; $i++) {
                // The buyer's return may be crediting it at this moment (it wrote succ first).
                usleep(500000);
                $credited = $this->payhost_topup_credited($id);
            }
            if ($credited === null ? $applied : $credited) {
                $this->payhost_answer(200, 'success');
            }
            $this->payhost_answer(503, 'top-up paid but no member was credited (member deleted?): credit or refund it by hand');
        }
        if ($orderId === '') {
            $this->payhost_answer($applied ? 200 : 503, $applied ? 'success' : 'not applied, retry');
        }
        if (!pay_payhost_is_id($orderId)) {
            $this->payhost_answer(503, 'order unknown, retry');
        }
        $oOrder = $this->system->loadModel('trading/order');
        $payStatus = $this->payhost_pay_status($oOrder, $orderId);
        $moved = false;
        if (!$applied && $before !== null) {
            // This call's setPayStatus() failed: either another call (the buyer's return, a retry)
            // won its update at this moment and is inside onSuccess() → payed(), or this call's own
            // payed() failed. Waited for up to 2 s: the order moving from what this call read
            // before is the other call paying it.
            for ($i = 0; $i < 5 && !$moved; $i++) {
                if ($i > 0) {
                    usleep(500000);
                }
                $o = $this->payhost_order_state($record);
                $moved = $o !== null && ($o['pay_status'] !== $before['pay_status']
                    || $o['owed_milli'] !== $before['owed_milli']);
            }
            $payStatus = $this->payhost_pay_status($oOrder, $orderId);
        }
        // 1 paid, 2 paid to Alipay's escrow, 3 partly paid, 4 and 5 refunded: the money reached the
        // order. Except when this call's setPayStatus() failed and the order did not move (partly
        // paid before, say): its status then says nothing of this payment.
        $fullyPaid = ($payStatus === '1' || $payStatus === '2');
        if ($payStatus !== '' && $payStatus !== '0' && ($applied || $fullyPaid || $moved)) {
            $this->payhost_answer(200, 'success');
        }
        // The owner is told once: after this call's own payed() failed, or when the payment has
        // said succ for over a minute (whoever wrote it) with the order still unpaid. A payment
        // the buyer's return is paying at this moment is neither.
        $old = isset($record['t_end']) && (int)$record['t_end'] > 0 && time() - (int)$record['t_end'] > 60;
        if ((!$applied && $before !== null) || $old) {
            $amount = $this->esc(pay_payhost_amount($record['money']));
            $this->payhost_log_once($orderId, '[payhost unpaid ' . $id . ']',
                '支付单 ' . $id . ' 的支付宝付款（￥' . $amount . '）已收到，订单的付款状态待商家确认。', '付款',
                '【注意】支付单 ' . $id . ' 已收到支付宝付款（￥' . $amount
                . '）并记为支付成功，但订单没有改为已付款（ShopEx 更新订单失败）。请人工核对后在订单中确认收款。');
        }
        $this->payhost_answer(503, 'payment recorded but the order is not paid, retry');
    }

    /** The order's pay_status as ShopEx reads it (getFieldById()), '' when it cannot be read. */
    function payhost_pay_status($oOrder, $orderId)
    {
        $order = $oOrder->getFieldById($orderId, array('pay_status'));
        return (is_array($order) && isset($order['pay_status'])) ? (string)$order['pay_status'] : '';
    }

    /** Whether X-Payhost-Signature $header signs $body with $secret, its t within 300 s. */
    function payhost_webhook_signed($header, $body, $secret)
    {
        $t = null;
        $v1 = null;
        foreach (explode(',', $header) as $part) {
            $kv = explode('=', trim($part), 2);
            if (count($kv) == 2 && $kv[0] === 't' && preg_match('/^[0-9]{1,12}$/', $kv[1])) {
                $t = (int)$kv[1];
            } elseif (count($kv) == 2 && $kv[0] === 'v1') {
                $v1 = $kv[1];
            }
        }
        if ($secret === '' || $t === null || $v1 === null || abs(time() - $t) > 300) {
            return false;
        }
        return pay_payhost_equals(hash_hmac('sha256', $t . '.' . $body, $secret), $v1);
    }

    /**
     * A refund at Alipay (payment.refunded, payment.partially_refunded): a line in the order's log
     * (mdl_order::addLog(), the order's 订单日志) saying how much has been refunded, once per event
     * (payhost_log_once(): the event id is the marker of the owner's note, in the order's admin
     * remark, so a retried webhook adds nothing; two deliveries of one event at the same moment
     * look and write under the order's MySQL named lock, so the second finds the first's note).
     * The order's statuses are left to the owner. Answers and ends the request.
     */
    function payhost_refund($s, $id, $event)
    {
        $eventId = isset($event['id']) ? (string)$event['id'] : '';
        if (!preg_match('/^evt_[0-9A-Za-z_]{1,80}$/', $eventId)) {
            $this->payhost_answer(400, 'no event id');
        }
        $oPay = $this->system->loadModel('trading/payment');
        $record = $oPay->getById($id);
        if (!$record) {
            $this->payhost_answer(404, 'unknown payment');
        }
        $orderId = (string)$record['order_id'];
        if ((isset($record['pay_type']) && $record['pay_type'] === 'recharge') || $orderId === '') {
            // A top-up (预存款) has no order and no order log; the owner adjusts the member's
            // balance. Acknowledged, so payhost stops retrying (a 404 was retried for ever).
            $this->payhost_answer(200, 'ignored: a top-up has no order log');
        }
        if (!pay_payhost_is_id($orderId)) {
            $this->payhost_answer(404, 'unknown payment');
        }
        $p = $this->payhost_payment($s, $id);
        if ($p === null || !isset($p['refunded_amount'])) {
            $this->payhost_answer(503, 'payhost not reachable, retry');
        }
        if (!$this->system->loadModel('trading/order')->load($orderId)) {
            $this->payhost_answer(404, 'unknown order');
        }
        // The line the buyer sees too (ShopEx's member order page lists the order's log): the
        // amounts only; the event id, which makes a retry a no-op, goes with the owner's copy
        // into the order's admin remark (payhost_log_once()).
        $text = ($event['type'] === 'payment.refunded' ? '支付宝已全额退款' : '支付宝部分退款')
            . '：累计退款 ' . $this->esc($p['refunded_amount']) . ' 元（支付单 ' . $id . '，支付 ' . $this->esc($p['total_fee'])
            . ' 元）';
        if (!$this->payhost_log_once($orderId, '[payhost ' . $eventId . ']', $text, '退款')) {
            $this->payhost_answer(503, 'not recorded, retry');
        }
        $this->payhost_answer(200, 'ok');
    }

    /**
     * The order a payment of this app is for, as ShopEx's own pay check reads it (mdl.order.php
     * checkOrderStatus('pay') and toPayed(); payed() reads the same fields): array(order_id,
     * status: active, dead or finish; pay_status: 0 unpaid … 5 refunded; owed_milli: final_amount
     * less payed, in thousandths; cur_rate; disabled: true for an order in the admin's recycle bin,
     * objectPage::recycle() → shopObject::recycle(), disabled = 'true', which payed() pays all the
     * same). Null for a top-up (no order) or an order the database does
     * not give: the payment is then applied as before.
     */
    function payhost_order_state($record)
    {
        $orderId = isset($record['order_id']) ? (string)$record['order_id'] : '';
        if ($orderId === '' || !pay_payhost_is_id($orderId)
            || (isset($record['pay_type']) && $record['pay_type'] === 'recharge')) {
            return null;
        }
        $o = $this->system->loadModel('trading/order')->getFieldById($orderId,
            array('status', 'pay_status', 'final_amount', 'payed', 'cur_rate', 'disabled'));
        if (!is_array($o) || !isset($o['pay_status'])) {
            return null;
        }
        $rate = (isset($o['cur_rate']) && (float)$o['cur_rate'] > 0) ? (float)$o['cur_rate'] : 1.0;
        // What is owed, in the order's thousandths, subtracted before any rounding (payed()
        // compares final_amount - payed with money * cur_rate).
        $owed = isset($o['final_amount']) ? pay_payhost_milli($o['final_amount'])
            - pay_payhost_milli(isset($o['payed']) ? $o['payed'] : '0') : null;
        return array('order_id' => $orderId, 'status' => isset($o['status']) ? (string)$o['status'] : 'active',
            'pay_status' => (string)$o['pay_status'], 'owed_milli' => $owed, 'cur_rate' => $rate,
            'disabled' => isset($o['disabled']) && (string)$o['disabled'] === 'true');
    }

    /**
     * The log line for a payment of a cancelled (dead) order, left unpaid with its order (the
     * return and the webhook, whichever comes first), once per payment. True once it is there.
     */
    function payhost_note_dead($order, $id, $record)
    {
        $amount = $this->esc(pay_payhost_amount($record['money']));
        return $this->payhost_log_once($order['order_id'], '[payhost dead ' . $id . ']',
            '支付单 ' . $id . ' 收到支付宝付款（￥' . $amount . '）时订单已作废，订单和支付单都没有改为已付款，这笔付款由商家处理退款。',
            '付款',
            '【注意】订单已作废，又收到支付单 ' . $id . ' 的支付宝付款（￥' . $amount
            . '）；订单和支付单都没有改为已付款。请在 payhost 管理页面核对并退款。');
    }

    /**
     * The log line for a payment of an order in the admin's recycle bin (deleted: disabled
     * 'true'), left unpaid with its order, once per payment. True once it is there.
     */
    function payhost_note_deleted($order, $id, $record)
    {
        $amount = $this->esc(pay_payhost_amount($record['money']));
        return $this->payhost_log_once($order['order_id'], '[payhost deleted ' . $id . ']',
            '支付单 ' . $id . ' 收到支付宝付款（￥' . $amount . '）时订单已删除，订单和支付单都没有改为已付款，这笔付款由商家处理退款。',
            '付款',
            '【注意】订单已删除（回收站），又收到支付单 ' . $id . ' 的支付宝付款（￥' . $amount
            . '）；订单和支付单都没有改为已付款。请在 payhost 管理页面核对并退款（还原订单也不会改为已付款）。');
    }

    /**
     * Whether payment $id is a second payment of an order paid already (pay_status 1, or 2 paid to
     * Alipay's escrow): the order's status is read first ($order), then the payment again, so a
     * payment paid by now is the one that paid the order (the return and the webhook at the same
     * moment), not another. Asked under the order's lock (payhost_take()): two payments of one
     * order checked at the same moment would each find the order unpaid.
     */
    function payhost_is_second($order, $id)
    {
        if ($order === null || ($order['pay_status'] !== '1' && $order['pay_status'] !== '2')) {
            return false;
        }
        $again = $this->system->loadModel('trading/payment')->getById($id);
        return $again && $again['status'] !== 'succ';
    }

    /**
     * Applies payment $id (paid at payhost; $record its row as read, not succ) as the return, the
     * webhook and the payment page all do: under a MySQL named lock per order
     * (payhost_lock(payhost_order_lock())), the order is read, a cancelled (dead) or deleted
     * one is left unpaid and noted, then whether the order is paid already by another payment,
     * then setPayStatus(). Without the lock two payments of one order (two cashiers, the buyer
     * paid both) could each read the order unpaid, and the second would be taken without a word.
     * Returns array(result, the order as read under the lock or null, whether setPayStatus()
     * succeeded, whether the note of a dead or deleted order is there): result 'deleted', 'dead',
     * 'second' (applied, noted), 'paid' (applied), 'failed' (setPayStatus() false: another call
     * took it, or mdl_order::payed() failed) or 'busy' (the lock not had within 10 s).
     */
    function payhost_take($id, $record, $info)
    {
        $orderId = isset($record['order_id']) ? (string)$record['order_id'] : '';
        $lock = '';
        if (pay_payhost_is_id($orderId) && !(isset($record['pay_type']) && $record['pay_type'] === 'recharge')) {
            $lock = $this->payhost_order_lock($orderId);
            if (!$this->payhost_lock($lock)) {
                return array('busy', null, false, false);
            }
        }
        $oPay = $this->system->loadModel('trading/payment');
        $order = $this->payhost_order_state($record);
        $result = null;
        $noted = false;
        if ($order !== null && $order['disabled']) {
            // In the admin's recycle bin (deleted): payed() would pay it all the same.
            $noted = $this->payhost_note_deleted($order, $id, $record);
            $result = 'deleted';
        } elseif ($order !== null && $order['status'] === 'dead') {
            // mdl_order::payed() would make it paid and leave it dead, where the admin can neither
            // ship nor refund it.
            $noted = $this->payhost_note_dead($order, $id, $record);
            $result = 'dead';
        }
        if ($result !== null) {
            $this->payhost_unlock($lock);
            return array($result, $order, false, $noted);
        }
        // The order paid already by another payment (a second cashier the buyer kept open):
        // mdl_order::payed() takes this one too without a word, so the order's log says so.
        $second = $this->payhost_is_second($order, $id);
        $applied = $oPay->setPayStatus($id, PAY_SUCCESS, $info) ? true : false;
        if ($applied && $second) {
            $this->payhost_second_payment($order['order_id'], $id, $oPay->getById($id));
        } elseif ($applied && $order !== null) {
            $this->payhost_note_overpaid($order, $id, $oPay->getById($id));
        }
        $this->payhost_unlock($lock);
        return array($applied ? ($second ? 'second' : 'paid') : 'failed', $order, $applied, false);
    }

    /**
     * The name of order $orderId's MySQL named lock: payhost_order_, a hash of this shop's
     * database and table prefix (config/config.php DB_NAME and DB_PREFIX; 'sdb_' when not
     * defined, as ShopEx's installer takes it), '_' and the order id. Named locks belong to the
     * MySQL server, not to a database: two shops on one shared server would otherwise wait on
     * each other's order of the same id (ShopEx's order ids are dates and a counter), as the
     * ecshop module's lock_name() hashes its `db`.`prefix_pay_log`. 14 + 10 + 1 + at most 20
     * digits: at most 45 characters, within MySQL 5.7's 64.
     */
    function payhost_order_lock($orderId)
    {
        $shop = (defined('DB_NAME') ? (string)DB_NAME : '') . '.' . (defined('DB_PREFIX') ? (string)DB_PREFIX : 'sdb_');
        return 'payhost_order_' . substr(md5($shop), 0, 10) . '_' . $orderId;
    }

    /**
     * MySQL's GET_LOCK($name) through the kernel's database() (selectrow()), held by this object
     * until as many payhost_unlock($name): taken again while held (payhost_log_once() inside
     * payhost_take()) it is only counted. MySQL before 5.7 lets a connection hold one named lock,
     * and a GET_LOCK of another name releases it, so nothing here takes a second name while one
     * is held. True once held; without a database to ask, true (nothing to lock with).
     */
    function payhost_lock($name)
    {
        if (isset($this->payhost_locks[$name])) {
            $this->payhost_locks[$name]++;
            return true;
        }
        $db = method_exists($this->system, 'database') ? $this->system->database() : null;
        if (is_object($db)) {
            $got = $db->selectrow("SELECT GET_LOCK('" . $name . "', 10) AS got");
            if (!is_array($got) || !isset($got['got']) || $got['got'] != 1) {
                return false;
            }
            if (!$this->payhost_unlock_registered) {
                // A fatal error while a lock is held ends the request without payhost_unlock():
                // MySQL frees a named lock when its connection closes, but ShopEx's persistent
                // connection (config.php DB_PCONNECT) outlives the request, and every later
                // payment of that order would wait 10 s and be refused.
                register_shutdown_function(array(&$this, 'payhost_unlock_all'));
                $this->payhost_unlock_registered = true;
            }
        }
        $this->payhost_locks[$name] = 1;
        return true;
    }

    /** The shutdown function of payhost_lock(): releases what this request still holds. */
    function payhost_unlock_all()
    {
        foreach (array_keys($this->payhost_locks) as $name) {
            $this->payhost_locks[$name] = 1;
            $this->payhost_unlock($name);
        }
    }

    /** Undoes one payhost_lock($name); RELEASE_LOCK when the last is undone. '' does nothing. */
    function payhost_unlock($name)
    {
        if ($name === '' || !isset($this->payhost_locks[$name])) {
            return;
        }
        if (--$this->payhost_locks[$name] > 0) {
            return;
        }
        unset($this->payhost_locks[$name]);
        $db = method_exists($this->system, 'database') ? $this->system->database() : null;
        if (is_object($db)) {
            $db->selectrow("SELECT RELEASE_LOCK('" . $name . "') AS released");
        }
    }

    /**
     * Whether the order of payment $record has the owner's note with $marker (its admin remark;
     * a version before this one wrote the marker into the order's log).
     */
    function payhost_logged($record, $marker)
    {
        $orderId = isset($record['order_id']) ? (string)$record['order_id'] : '';
        if (!pay_payhost_is_id($orderId)) {
            return false;
        }
        $oOrder = $this->system->loadModel('trading/order');
        $remark = $oOrder->getFieldById($orderId, array('mark_text', 'mark_type'));
        if (is_array($remark) && isset($remark['mark_text']) && strpos((string)$remark['mark_text'], $marker) !== false) {
            return true;
        }
        foreach ((array)$oOrder->getLogs($orderId) as $log) {
            if (isset($log['log_text']) && strpos((string)$log['log_text'], $marker) !== false) {
                return true;
            }
        }
        return false;
    }

    /** The buyer's page for a second payment of a paid order; the end of the request. */
    function payhost_second_page()
    {
        $this->payhost_page(200, '订单已付款', '<div class="payhost-error" id="payhost-second" style="color:#c00">'
            . '已收到这笔支付宝付款，但此订单已付款，这笔付款请联系商家退款，不要重复付款。</div>');
    }

    /**
     * Whether top-up (预存款充值) payment $id credited its member: a row of sdb_advance_logs with this
     * payment_id, which mdl_advance::add() writes (log()) only after the member's balance was
     * raised. Null when the kernel gives no database to ask.
     */
    function payhost_topup_credited($id)
    {
        $db = method_exists($this->system, 'database') ? $this->system->database() : null;
        if (!is_object($db) || !pay_payhost_is_id($id)) {
            return null;
        }
        $row = $db->selectrow("SELECT log_id FROM sdb_advance_logs WHERE payment_id='" . $id . "'");
        return is_array($row) && isset($row['log_id']);
    }

    /**
     * A payment of more than its order still owed (the owner lowered the order's total after the
     * cashier page was opened, or it was partly paid meanwhile): mdl_order::payed() sets payed
     * to final_amount and the difference is lost without a word (ShopEx's own toPayed() refuses
     * an amount above what is owed). The order is paid as ShopEx pays it; its log says how much
     * more was paid, once per payment, and the owner's note asks for the difference's refund.
     */
    function payhost_note_overpaid($order, $id, $record)
    {
        if ($order['owed_milli'] === null || ($order['pay_status'] !== '0' && $order['pay_status'] !== '3')) {
            return;
        }
        // In the payment's money (what Alipay took and payhost refunds): the order's owed amount
        // divided by its rate, the difference in whole fen.
        $owed = max(0, $order['owed_milli'] / $order['cur_rate']);
        $over = round((pay_payhost_milli($record['money']) - $owed) / 10);
        if ($over < 1) {
            return;
        }
        $said = '支付单 ' . $id . ' 收到支付宝付款 ￥' . $this->esc(pay_payhost_amount($record['money']))
            . '，比订单当时未付的 ￥' . pay_payhost_yuan(round($owed / 10)) . ' 多 ￥' . pay_payhost_yuan($over)
            . '（订单金额在付款前被修改）';
        $this->payhost_log_once($order['order_id'], '[payhost over ' . $id . ']', $said . '，多付的款项由商家处理退款。', '付款',
            '【注意】' . $said . '。请在 payhost 管理页面退还差额。');
    }

    /**
     * A line in order $orderId's log (mdl_order::addLog(), 订单日志, operator payhost), and the
     * owner's note: $note ($text when null) and $marker in the order's admin remark
     * (mdl_order::saveMarkText(): sdb_orders.mark_text, the 订单备注 only the admin shows). The
     * order's log is also the buyer's: ShopEx's member order page (ctl.member.php orderdetail() →
     * getLogs(), member/orderdetail.html) lists every line as it is, so $text says what happened in
     * words a buyer may read, and what the owner must do, with the marker, goes to the remark only.
     * Once per marker: the look and the writes are under the order's lock (payhost_lock()), so two
     * requests at once write one line; the line itself is not written again when a first attempt
     * wrote it and its remark failed. True once the owner's note is there.
     */
    function payhost_log_once($orderId, $marker, $text, $behavior, $note = null)
    {
        $oOrder = $this->system->loadModel('trading/order');
        if (!pay_payhost_is_id((string)$orderId) || !$oOrder->load($orderId)) {
            return false;
        }
        $lock = $this->payhost_order_lock($orderId);
        if (!$this->payhost_lock($lock)) {
            return false;
        }
        $remark = $oOrder->getFieldById($orderId, array('mark_text', 'mark_type'));
        $old = (is_array($remark) && isset($remark['mark_text'])) ? (string)$remark['mark_text'] : '';
        $seen = strpos($old, $marker) !== false;
        $logged = false;
        foreach ((array)$oOrder->getLogs($orderId) as $log) {
            $line = isset($log['log_text']) ? (string)$log['log_text'] : '';
            // A version before this one wrote the marker into the log line itself.
            $seen = $seen || strpos($line, $marker) !== false;
            $logged = $logged || $line === $text;
        }
        if (!$seen && !$logged && $text !== '') {
            $logged = $oOrder->addLog($text, null, 'payhost', $behavior) ? true : false;
        }
        if (!$seen && ($logged || $text === '')) {
            // saveMarkText() replaces the whole remark: read again just before writing (the
            // order's log was written since the first read), so an owner's remark saved in the
            // meantime is kept, the note after it. The owner's 订单备注 form can still replace the
            // note (README, known limits); its marker was looked for in the first read.
            $remark = $oOrder->getFieldById($orderId, array('mark_text', 'mark_type'));
            $old = (is_array($remark) && isset($remark['mark_text'])) ? (string)$remark['mark_text'] : '';
            $line = ($note === null ? $text : $note) . ' ' . $marker;
            $type = (is_array($remark) && isset($remark['mark_type']) && (string)$remark['mark_type'] !== '')
                ? (string)$remark['mark_type'] : 'b1';
            $seen = $oOrder->saveMarkText($orderId, array('mark_text' => ($old === '' ? '' : $old . "\n") . $line,
                'mark_type' => $type)) ? true : false;
        }
        $this->payhost_unlock($lock);
        return $seen;
    }

    /** The log line for a second payment of a paid order, once per payment. */
    function payhost_second_payment($orderId, $id, $record)
    {
        $amount = $this->esc(pay_payhost_amount($record['money']));
        $this->payhost_log_once($orderId, '[payhost second ' . $id . ']',
            '此订单此前已付款，又收到支付单 ' . $id . ' 的支付宝付款（￥' . $amount . '），这笔付款由商家处理退款。', '付款',
            '【注意】此订单此前已付款，又收到支付单 ' . $id . ' 的支付宝付款（￥' . $amount
            . '）：请在 payhost 管理页面核对这笔支付并退款。');
    }

    /**
     * A payment payhost says was refunded in part (PARTIALLY_REFUNDED: paid, so it pays the
     * order): the refunded amount in the order's log and the owner's note, once per payment.
     */
    function payhost_note_partly_refunded($record, $id, $p)
    {
        $orderId = isset($record['order_id']) ? (string)$record['order_id'] : '';
        if (!pay_payhost_is_id($orderId) || (isset($record['pay_type']) && $record['pay_type'] === 'recharge')) {
            return;
        }
        $said = '支付单 ' . $id . ' 的支付宝付款已部分退款：累计退款 '
            . $this->esc(isset($p['refunded_amount']) ? (string)$p['refunded_amount'] : '?') . ' 元（支付 '
            . $this->esc(isset($p['total_fee']) ? (string)$p['total_fee'] : '?') . ' 元）';
        $this->payhost_log_once($orderId, '[payhost partly-refunded ' . $id . ']', $said . '。', '退款',
            '【注意】' . $said . '，订单按已付款处理。请核对订单的金额与发货。');
    }

    /**
     * The log line of a payment payhost says is refunded in full or closed, not taken by the
     * shop, left unpaid with its order (the webhook's retry, the buyer's return), once per
     * payment. True once it is there.
     */
    function payhost_note_refunded_first($orderId, $id, $status)
    {
        return $this->payhost_log_once($orderId, '[payhost refunded ' . $id . ']',
            '支付单 ' . $id . ' 的支付宝付款在商店确认收款之前已全额退款，订单没有改为已付款。', '付款',
            '【注意】支付单 ' . $id . ' 的支付宝付款在商店确认收款之前已全额退款（payhost 状态 '
            . $this->esc($status) . '），订单没有改为已付款。');
    }

    /**
     * A "paid" event of a payment payhost says is refunded in full or closed, not yet taken by
     * the shop (pay_payhost_callback()): the payment stays unpaid, and the order's log says why,
     * once per payment (payhost_note_refunded_first()). Answers and ends the request: 200 once the
     * line is there (a top-up has no order log), 404 for an order the shop does not have, 503
     * when it could not be written or the lock was busy.
     */
    function payhost_refunded_first($id, $record, $status)
    {
        $orderId = isset($record['order_id']) ? (string)$record['order_id'] : '';
        if ((isset($record['pay_type']) && $record['pay_type'] === 'recharge') || $orderId === '') {
            $this->payhost_answer(200, 'refunded before the shop took the payment: deposit not credited');
        }
        if (!pay_payhost_is_id($orderId) || !$this->system->loadModel('trading/order')->load($orderId)) {
            $this->payhost_answer(404, 'unknown order');
        }
        $now = $this->system->loadModel('trading/payment')->getById($id);
        if ($now && $now['status'] === 'succ') {
            // Paid meanwhile by the buyer's return (payhost said paid then): not this case.
            return;
        }
        $noted = $this->payhost_note_refunded_first($orderId, $id, $status);
        $this->payhost_answer($noted ? 200 : 503,
            $noted ? 'refunded before the shop took the payment: noted, order left unpaid' : 'not recorded, retry');
    }

    /** The webhook's answer: the shop's earlier output dropped, the status, the text; the end. */
    function payhost_answer($status, $text)
    {
        $reasons = array(200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized', 404 => 'Not Found',
            409 => 'Conflict', 503 => 'Service Unavailable');
        if (is_object($this->system)) {
            $this->system->_succ = true;
        }
        while (ob_get_level() > 0) {
            ob_end_clean();
        }
        header('HTTP/1.1 ' . $status . ' ' . $reasons[$status], true, $status);
        header('Content-Type: text/plain; charset=utf-8');
        echo $text;
        exit;
    }

    /** The older plugin API's entry; 4.8.5 sends server notifies to pay_payhost.server.php. */
    function serverCallback($in, &$paymentId, &$money, &$message)
    {
        $tradeno = '';
        return $this->pay_payhost_callback($in, $paymentId, $money, $message, $tradeno);
    }
}

}
