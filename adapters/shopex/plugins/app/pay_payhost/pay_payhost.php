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
 *   differs from the one payhost returns, creates the payment (a cancel link back to the order)
 *   and hands doPay() the cashier's GET form (submitUrl, $method = 'get', the fields); on an error
 *   the owner and the buyer see the message on the page, as ShopEx's own Alipay plugin shows its
 *   errors. Every URL given to payhost is built from the shop URL of the settings, never from the
 *   request (ShopEx's base_url() is the request's Host header).
 * - callback(): the buyer's return, signed by payhost with this merchant's secret (merchant id,
 *   order, status and time signed; older than 10 minutes is refused); while Alipay's notify is
 *   pending the buyer sees "being confirmed" and the page re-checks, never "failed".
 * - pay_payhost_callback() (pay_payhost.server.php): payhost's signed webhook; it applies the payment
 *   with setPayStatus() and answers 2xx only when the payment is paid in ShopEx (payhost retries
 *   everything else).
 *
 * PHP 5.2 up to 8.x (no syntax newer than 5.2); signatures compared in constant time; no secret is
 * logged. The first statement stays require_once('paymentPlugin.php'): requested directly, it runs
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
            'gateway' => array('label' => '支付宝网关(gateway)（仅新版开放平台，可不填；支付宝沙箱：https://openapi-sandbox.dl.alipaydev.com/gateway.do）', 'type' => 'string'),
            'shop_url' => array('label' => '商店网址（ShopEx 根目录，例如 https://shop.example/）', 'type' => 'string'),
            'payhost_url' => array('label' => 'payhost 地址（例如 http://127.0.0.1:8080）', 'type' => 'string'),
            'payhost_api_token' => array('label' => 'payhost API 令牌（本商户专用 phm_…，不是运营者令牌）', 'type' => 'string'),
            'payhost_shop_secret' => array('label' => 'payhost 商户密钥（phs_…，与令牌一起给出）', 'type' => 'string'),
        );
    }

    /** The saved fields of the payment's method, trimmed; the merchant id and the webhook key. */
    function payhost_settings($paymentId)
    {
        $s = array();
        foreach (array_keys($this->getfields()) as $name) {
            $s[$name] = trim((string)$this->getConf($paymentId, $name));
        }
        // An app saved before the choice existed has no alipay_api: the legacy interface.
        $s['openapi'] = $s['alipay_api'] === 'openapi';
        $s['payhost_url'] = rtrim($s['payhost_url'], '/');
        // The shop's root URL as the owner typed it (ends with '/'); '' when missing or not http(s).
        $s['shop_url'] = preg_match('#^https?://[^/?\#]+(/[^?\#]*)?$#i', $s['shop_url']) ? rtrim($s['shop_url'], '/') . '/' : '';
        // The payhost merchant: shopex-<合作者身份ID>, or shopex-<APPID> for the open platform.
        $s['merchant'] = 'shopex-' . preg_replace('/[^0-9A-Za-z]/', '', $s['openapi'] ? $s['app_id'] : $s['member_id']);
        // The key of payhost's signed returns and webhooks: the merchant's own secret, created with
        // the merchant (payhost merchant add). An app configured before that has none: it keeps the
        // key it derived from the Alipay key and gives it to payhost itself.
        $s['send_secret'] = $s['payhost_shop_secret'] === '';
        $s['secret'] = $s['send_secret']
            ? hash_hmac('sha256', 'payhost-shop-webhook:' . $s['merchant'], $s['openapi'] ? $s['app_private_key'] : $s['PrivateKey'])
            : $s['payhost_shop_secret'];
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

    /** Gives payhost the settings when they changed (its digest differs); true or its message. */
    function payhost_configure($s)
    {
        $fields = $this->payhost_fields($s);
        $webhook = $s['app_url'] . 'pay_payhost.server.php';
        $path = '/v1/merchants/' . rawurlencode($s['merchant']);
        $digest = $this->payhost_digest($s['secret'], $fields, $webhook);
        list($status, $held) = $this->payhost_call($s, 'GET', $path);
        if ($status == 200 && isset($held['settings_digest']) && pay_payhost_equals($digest, $held['settings_digest'])) {
            return true;
        }
        $body = $fields;
        $body['shop_webhook_url'] = $webhook;
        if ($s['send_secret']) {
            $body['shop_webhook_secret'] = $s['secret'];
        }
        list($status, $answer) = $this->payhost_call($s, 'PUT', $path, $body);
        return $status == 200 ? true : $this->payhost_error($status, $answer);
    }

    /** One JSON call to payhost: array(HTTP status or 0, decoded body or null). */
    function payhost_call($s, $method, $path, $body = null)
    {
        $headers = "Authorization: Bearer " . $s['payhost_api_token'] . "\r\nAccept: application/json\r\n";
        if ($body !== null) {
            $headers .= "Content-Type: application/json\r\n";
        }
        $context = stream_context_create(array('http' => array(
            'method' => $method, 'header' => $headers, 'ignore_errors' => true, 'timeout' => 20,
            'content' => $body === null ? '' : json_encode($body),
        )));
        $raw = @file_get_contents($s['payhost_url'] . $path, false, $context);
        $status = 0;
        if (isset($http_response_header) && is_array($http_response_header)) {
            foreach ($http_response_header as $line) {
                if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m)) {
                    $status = (int)$m[1];
                }
            }
        }
        $decoded = ($raw === false || $raw === '') ? null : json_decode($raw, true);
        return array($status, is_array($decoded) ? $decoded : null);
    }

    function payhost_error($status, $answer)
    {
        if (is_array($answer) && isset($answer['error']['message'])) {
            return $answer['error']['message'];
        }
        return $status == 0 ? 'payhost is not reachable' : 'payhost answered HTTP ' . $status;
    }

    function esc($text)
    {
        return str_replace(array('&', '<', '>', '"', "'"), array('&amp;', '&lt;', '&gt;', '&quot;', '&#039;'), (string)$text);
    }

    /** A whole page for the buyer or the owner, then the end of the request. */
    function payhost_page($status, $title, $body, $head = '')
    {
        $reasons = array(200 => 'OK', 400 => 'Bad Request', 502 => 'Bad Gateway');
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

    /** doPay(): the fields of the cashier's GET form; an error is shown on the page. */
    /* The parameters have defaults: ShopEx's base class declares toSubmit() and callback() without
       any, and PHP 8 refuses an override that requires more. */
    function toSubmit($payment = null)
    {
        $s = $this->payhost_settings($payment['M_OrderId']);
        $configured = $s['shop_url'] === '' ? '请在支付方式设置中填写商店网址（例如 https://shop.example/）' : $this->payhost_configure($s);
        if ($configured !== true) {
            $this->payhost_page(502, '支付宝设置有误', '<div class="payhost-error" style="color:#c00">支付宝设置有误：'
                . $this->esc($configured) . '</div><p><a href="javascript:history.back()">返回</a></p>');
        }
        $shopName = (string)$this->system->getConf('system.shopname');
        $request = array(
            'out_trade_no' => (string)$payment['M_OrderId'],
            'subject' => trim($shopName . ' ' . $payment['M_OrderNO']),
            'total_fee' => number_format((float)$payment['M_Amount'], 2, '.', ''),
            'return_url' => $s['app_url'] . 'pay_payhost.php',
            // 取消 at the cashier comes back to the order (member centre: ctl=member act=orderdetail).
            'merchant_url' => $s['shop_url'] . 'index.php?member-orderdetail-' . rawurlencode((string)$payment['M_OrderNO']) . '.html',
            'user_agent' => isset($_SERVER['HTTP_USER_AGENT']) ? $_SERVER['HTTP_USER_AGENT'] : '',
            'product' => 'auto',
        );
        $path = '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments';
        list($status, $answer) = $this->payhost_call($s, 'POST', $path, $request);
        if ($status == 400 && isset($answer['error']['message']) && strpos($answer['error']['message'], 'unknown field') !== false) {
            // A payhost that predates user_agent/product: the same request without them.
            unset($request['user_agent'], $request['product']);
            list($status, $answer) = $this->payhost_call($s, 'POST', $path, $request);
        }
        if (($status != 201 && $status != 200) || empty($answer['pay_url'])) {
            $text = empty($answer['pay_url']) && ($status == 200 || $status == 201) ? '该订单已支付' : $this->payhost_error($status, $answer);
            $this->payhost_page(502, '无法发起支付', '<div class="payhost-error" style="color:#c00">无法发起支付宝支付：'
                . $this->esc($text) . '</div><p><a href="javascript:history.back()">返回</a></p>');
        }
        $this->method = 'get';
        $parts = explode('?', $answer['pay_url'], 2);
        $this->submitUrl = $parts[0];
        return $this->payhost_query(isset($parts[1]) ? $parts[1] : '');
    }

    /** payhost's view of a payment, or null. */
    function payhost_payment($s, $outTradeNo)
    {
        list($status, $p) = $this->payhost_call($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments/' . rawurlencode($outTradeNo));
        return ($status == 200 && is_array($p) && isset($p['status'])) ? $p : null;
    }

    /** The buyer's return (the app dispatcher, then progress()): payhost's signed query. */
    function callback($in = null, &$paymentId = null, &$money = null, &$message = null, &$tradeno = null)
    {
        $id = isset($in['out_trade_no']) ? (string)$in['out_trade_no'] : '';
        $s = $this->payhost_settings($id);
        $params = $in;
        unset($params['sign'], $params['payhost_wait']);
        ksort($params);
        $parts = array();
        foreach ($params as $k => $v) {
            $parts[] = $k . '=' . $v;
        }
        if ($id === '' || !isset($in['sign'], $in['ts'], $in['merchant'])
            || !pay_payhost_equals(hash_hmac('sha256', implode('&', $parts), $s['secret']), (string)$in['sign'])
            || (string)$in['merchant'] !== $s['merchant']) {
            // Not touching any payment: the id of an unsigned query cannot be trusted.
            $this->payhost_page(400, '验证失败', '<div class="payhost-error" style="color:#c00">返回参数验证失败，请到会员中心查看订单状态。</div>');
        }
        if (!preg_match('/^[0-9]{1,12}$/', (string)$in['ts']) || abs(time() - (int)$in['ts']) > 600) {
            // An old signed return (a link kept or shared): nothing is changed.
            $this->payhost_page(400, '链接已过期', '<div class="payhost-error" id="payhost-expired" style="color:#c00">该支付返回链接已过期，请到会员中心查看订单状态，不要重复付款。</div>');
        }
        $p = $this->payhost_payment($s, $id);
        $state = $p === null ? '' : $p['status'];
        if ($state === 'TRADE_SUCCESS' || $state === 'TRADE_FINISHED') {
            $paymentId = $p['out_trade_no'];
            $money = $p['total_fee'];
            $tradeno = isset($p['trade_no']) ? $p['trade_no'] : '';
            $message = 'payhost ' . $state;
            return PAY_SUCCESS;
        }
        if ($state === 'TRADE_CLOSED') {
            $paymentId = $id;
            $message = 'payhost TRADE_CLOSED';
            return PAY_FAILED;
        }
        // Paid at Alipay, the notify not confirmed yet (or payhost briefly unreachable).
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
     * 300 s. Applies the payment with setPayStatus() and answers for itself: 200 only when the
     * payment is paid in ShopEx, non-2xx otherwise, then ends the request.
     */
    function pay_payhost_callback($in, &$paymentId, &$money, &$message, &$tradeno)
    {
        $body = file_get_contents('php://input');
        $header = isset($_SERVER['HTTP_X_PAYHOST_SIGNATURE']) ? $_SERVER['HTTP_X_PAYHOST_SIGNATURE'] : '';
        $event = json_decode($body, true);
        if (!is_array($event) || empty($event['out_trade_no']) || empty($event['type'])) {
            $this->payhost_answer(400, 'not an event');
        }
        $id = (string)$event['out_trade_no'];
        $s = $this->payhost_settings($id);
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
        if ($t === null || $v1 === null || abs(time() - $t) > 300
            || !pay_payhost_equals(hash_hmac('sha256', $t . '.' . $body, $s['secret']), $v1)) {
            $this->payhost_answer(401, 'bad signature');
        }
        if ($event['type'] !== 'payment.paid' && $event['type'] !== 'payment.finished') {
            $this->payhost_answer(200, 'ignored');
        }
        $oPay = $this->system->loadModel('trading/payment');
        $record = $oPay->getById($id);
        if (!$record) {
            $this->payhost_answer(404, 'unknown payment');
        }
        if (abs((float)$record['money'] - (float)$event['total_fee']) >= 0.005) {
            $this->payhost_answer(409, 'amount differs from the payment');
        }
        if ($record['status'] !== 'succ') {
            $info = array('money' => $record['money'], 'memo' => 'payhost ' . $event['type'],
                'trade_no' => isset($event['trade_no']) ? (string)$event['trade_no'] : '');
            $oPay->setPayStatus($id, PAY_SUCCESS, $info);
            $record = $oPay->getById($id);
        }
        if ($record && $record['status'] === 'succ') {
            $this->payhost_answer(200, 'success');
        }
        $this->payhost_answer(503, 'not applied, retry');
    }

    function payhost_answer($status, $text)
    {
        $reasons = array(200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized', 404 => 'Not Found',
            409 => 'Conflict', 503 => 'Service Unavailable');
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
