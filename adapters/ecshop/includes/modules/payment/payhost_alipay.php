<?php
/**
 * ECSHOP 支付宝手机网站支付 (payhost) — a payment module in ecshop's own shape.
 *
 * The shop owner fills in the fields known from ecshop's Alipay module (支付宝帐户 alipay_account,
 * 交易安全校验码 alipay_key, 合作者身份ID alipay_partner) plus the B2C/C2C mode and where payhost runs.
 * The first payment configures payhost (PUT /v1/merchants/{id}); get_code() creates the payment
 * through payhost and renders the pay button; respond() (respond.php?code=payhost_alipay) accepts
 * only payhost's HMAC-signed return and webhook, checks the amount with check_money() and calls
 * order_paid() once. out_trade_no is order_sn . log_id and the subject starts with order_sn, as in
 * ecshop's own module; a GBK shop's subject is converted to UTF-8 before it reaches payhost.
 */

if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

$payment_lang = ROOT_PATH . 'languages/' . $GLOBALS['_CFG']['lang'] . '/payment/payhost_alipay.php';
if (file_exists($payment_lang)) {
    global $_LANG;
    include_once($payment_lang);
}

/* 模块的基本信息 */
if (isset($set_modules) && $set_modules == true) {
    $i = isset($modules) ? count($modules) : 0;
    $modules[$i]['code'] = basename(__FILE__, '.php');
    $modules[$i]['desc'] = 'payhost_alipay_desc';
    $modules[$i]['is_cod'] = '0';
    $modules[$i]['is_online'] = '1';
    $modules[$i]['author'] = 'payhost';
    $modules[$i]['website'] = 'https://www.alipay.com';
    $modules[$i]['version'] = '0.1.0';
    $modules[$i]['config'] = array(
        array('name' => 'alipay_account', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_key', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_partner', 'type' => 'text', 'value' => ''),
        array('name' => 'alipay_mode', 'type' => 'select', 'value' => 'b2c'),
        array('name' => 'payhost_url', 'type' => 'text', 'value' => 'http://127.0.0.1:8080'),
        array('name' => 'payhost_token', 'type' => 'text', 'value' => ''),
    );
    return;
}

class payhost_alipay
{
    public function __construct()
    {
    }

    /** The values as pasted, without the spaces and line breaks around them. */
    private function settings($payment)
    {
        $s = array();
        foreach (array('alipay_account', 'alipay_key', 'alipay_partner', 'alipay_mode', 'payhost_url', 'payhost_token') as $name) {
            $s[$name] = isset($payment[$name]) ? trim($payment[$name]) : '';
        }
        $s['payhost_url'] = rtrim($s['payhost_url'], '/');
        $s['merchant'] = 'ecshop-' . preg_replace('/[^0-9A-Za-z]/', '', $s['alipay_partner']);
        // The key of payhost's signed returns and webhooks, derived from the Alipay key so it is
        // never typed in twice.
        $s['webhook_secret'] = hash_hmac('sha256', 'payhost-shop-webhook:' . $s['merchant'], $s['alipay_key']);
        return $s;
    }

    /** One JSON call to payhost; array(status, decoded body). */
    private function call($s, $method, $path, $body = null)
    {
        $headers = "Authorization: Bearer " . $s['payhost_token'] . "\r\nAccept: application/json\r\n";
        if ($body !== null) {
            $headers .= "Content-Type: application/json\r\n";
        }
        $context = stream_context_create(array('http' => array(
            'method' => $method,
            'header' => $headers,
            'content' => $body === null ? '' : json_encode($body),
            'ignore_errors' => true,
            'timeout' => 20,
        )));
        $raw = @file_get_contents($s['payhost_url'] . $path, false, $context);
        $status = 0;
        if (isset($http_response_header[0]) && preg_match('#^HTTP/\S+\s+(\d{3})#', $http_response_header[0], $m)) {
            $status = (int)$m[1];
        }
        return array($status, $raw === false ? null : json_decode($raw, true));
    }

    /** Text in the shop's charset, as UTF-8 for payhost. */
    private function utf8($text)
    {
        $charset = defined('EC_CHARSET') ? strtolower(EC_CHARSET) : 'utf-8';
        if ($charset === 'utf-8' || $charset === 'utf8') {
            return $text;
        }
        $converted = iconv($charset, 'UTF-8//IGNORE', $text);
        return $converted === false ? $text : $converted;
    }

    /** Configures payhost with the fields of the admin form. */
    private function configure($s)
    {
        list($status, $answer) = $this->call($s, 'PUT', '/v1/merchants/' . rawurlencode($s['merchant']), array(
            'partner' => $s['alipay_partner'],
            'key' => $s['alipay_key'],
            'seller_email' => $s['alipay_account'],
            'mode' => $s['alipay_mode'] === 'c2c' ? 'c2c' : 'b2c',
            'shop_webhook_url' => return_url(basename(__FILE__, '.php')),
            'shop_webhook_secret' => $s['webhook_secret'],
        ));
        if ($status != 200) {
            $message = isset($answer['error']['message']) ? $answer['error']['message'] : ('payhost answered HTTP ' . $status);
            return $message;
        }
        return true;
    }

    /**
     * 生成支付代码
     * @param array $order 订单信息
     * @param array $payment 支付方式信息
     */
    public function get_code($order, $payment)
    {
        $s = $this->settings($payment);
        $configured = $this->configure($s);
        if ($configured !== true) {
            return '<div style="text-align:center;color:#c00">' . htmlspecialchars($GLOBALS['_LANG']['payhost_config_error'] . $configured, ENT_QUOTES, 'UTF-8') . '</div>';
        }
        $subject = $this->utf8($order['order_sn'] . ' ' . $GLOBALS['_CFG']['shop_name']);
        $request = array(
            'out_trade_no' => $order['order_sn'] . $order['log_id'],
            'subject' => $subject,
            'total_fee' => number_format((float)$order['order_amount'], 2, '.', ''),
            'return_url' => return_url(basename(__FILE__, '.php')),
        );
        if ($s['alipay_mode'] === 'c2c' && !empty($order['seller_email'])) {
            $request['seller_email'] = trim($order['seller_email']);
        }
        list($status, $answer) = $this->call($s, 'POST', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments', $request);
        if (($status != 201 && $status != 200) || empty($answer['pay_url'])) {
            $message = isset($answer['error']['message']) ? $answer['error']['message'] : ('payhost answered HTTP ' . $status);
            return '<div style="text-align:center;color:#c00">' . htmlspecialchars($message, ENT_QUOTES, 'UTF-8') . '</div>';
        }
        return '<div style="text-align:center"><input type="button" onclick="window.open(\''
            . htmlspecialchars(addslashes($answer['pay_url']), ENT_QUOTES, 'UTF-8')
            . '\')" value="' . $GLOBALS['_LANG']['pay_button'] . '" /></div>';
    }

    /** The sorted k=v&… string payhost signs (everything but sign and ecshop's code). */
    private function signed_string($params)
    {
        unset($params['sign'], $params['code']);
        ksort($params);
        $parts = array();
        foreach ($params as $k => $v) {
            $parts[] = $k . '=' . $v;
        }
        return implode('&', $parts);
    }

    /** Pays the order once: check_money() then order_paid(). */
    private function settle($s, $out_trade_no)
    {
        list($status, $p) = $this->call($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments/' . rawurlencode($out_trade_no));
        if ($status != 200 || !in_array($p['status'], array('TRADE_SUCCESS', 'TRADE_FINISHED'), true)) {
            return false;
        }
        // As in ecshop's own module: the subject starts with order_sn, out_trade_no is order_sn . log_id.
        $parts = explode(' ', $p['subject'], 2);
        $order_sn = $parts[0];
        if ($order_sn === '' || strpos($out_trade_no, $order_sn) !== 0) {
            return false;
        }
        $log_id = substr($out_trade_no, strlen($order_sn));
        if (!check_money($log_id, $p['total_fee'])) {
            return false;
        }
        $is_paid = $GLOBALS['db']->getOne('SELECT is_paid FROM ' . $GLOBALS['ecs']->table('pay_log') . " WHERE log_id = '" . intval($log_id) . "'");
        if ($is_paid != 1) {
            order_paid($log_id, 2);
        }
        return true;
    }

    /**
     * 响应操作: payhost's webhook (POST, JSON, X-Payhost-Signature) or the buyer's return (GET,
     * signed query). Anything else is refused.
     */
    public function respond()
    {
        $payment = get_payment(basename(__FILE__, '.php'));
        $s = $this->settings($payment);
        $header = isset($_SERVER['HTTP_X_PAYHOST_SIGNATURE']) ? $_SERVER['HTTP_X_PAYHOST_SIGNATURE'] : '';
        if ($header !== '') {
            $body = file_get_contents('php://input');
            $expected = 'sha256=' . hash_hmac('sha256', $body, $s['webhook_secret']);
            if (!hash_equals($expected, $header)) {
                return false;
            }
            $event = json_decode($body, true);
            if (!is_array($event) || empty($event['out_trade_no'])) {
                return false;
            }
            return $this->settle($s, $event['out_trade_no']);
        }
        $params = $_GET;
        if (!isset($params['sign'], $params['out_trade_no'], $params['ts'])) {
            return false;
        }
        $expected = hash_hmac('sha256', $this->signed_string($params), $s['webhook_secret']);
        if (!hash_equals($expected, (string)$params['sign'])) {
            return false;
        }
        return $this->settle($s, $params['out_trade_no']);
    }
}
