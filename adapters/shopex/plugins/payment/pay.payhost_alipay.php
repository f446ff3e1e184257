<?php
/**
 * ShopEx 支付宝手机网站支付 (payhost) — a payment plugin in ShopEx 4.8's own shape.
 *
 * getfields() shows the fields ShopEx users know from its Alipay plugin (合作者身份(parterID)
 * member_id, 交易安全校验码(key) PrivateKey) plus the seller account, B2C/C2C, and where payhost
 * runs. toSubmit() configures payhost (PUT /v1/merchants/{id}), creates the payment and returns the
 * fields of the GET form to Alipay's cashier; callback() (the buyer's return) and serverCallback()
 * (payhost's webhook) accept only payhost's HMAC signatures and answer PAY_SUCCESS, PAY_PROGRESS,
 * PAY_FAILED or PAY_ERROR as ShopEx expects.
 */
require_once 'paymentPlugin.php';

class pay_payhost_alipay extends paymentPlugin
{
    var $name = '支付宝手机网站支付 (payhost)';
    var $logo = 'ALIPAY';
    var $version = 20261123;
    var $charset = 'utf8';
    var $submitUrl = '';
    var $submitMethod = 'GET';
    var $supportCurrency = array('CNY' => '01');
    var $supportArea = array('AREA_CNY');
    var $orderby = 3;
    var $head_charset = 'utf-8';

    function __construct(&$system)
    {
        parent::__construct($system);
    }

    function getfields()
    {
        return array(
            'member_id' => array('label' => '合作者身份(parterID)', 'type' => 'string'),
            'PrivateKey' => array('label' => '交易安全校验码(key)', 'type' => 'string'),
            'seller_account' => array('label' => '支付宝收款账号', 'type' => 'string'),
            'seller_mode' => array('label' => '收款模式', 'type' => 'select',
                'options' => array('b2c' => 'B2C 单一卖家', 'c2c' => 'C2C 多卖家平台')),
            'payhost_url' => array('label' => 'payhost 地址', 'type' => 'string'),
            'payhost_token' => array('label' => 'payhost 令牌 (api_token)', 'type' => 'string'),
        );
    }

    /** The fields as pasted, trimmed; the merchant id and the derived webhook key. */
    function settings($paymentId)
    {
        $s = array();
        foreach (array_keys($this->getfields()) as $name) {
            $s[$name] = trim((string)$this->getConf($paymentId, $name));
        }
        $s['payhost_url'] = rtrim($s['payhost_url'], '/');
        $s['merchant'] = 'shopex-' . preg_replace('/[^0-9A-Za-z]/', '', $s['member_id']);
        $s['secret'] = hash_hmac('sha256', 'payhost-shop-webhook:' . $s['merchant'], $s['PrivateKey']);
        return $s;
    }

    /** One JSON call to payhost: array(status, decoded body). */
    function payhost($s, $method, $path, $body = null)
    {
        $headers = "Authorization: Bearer " . $s['payhost_token'] . "\r\nAccept: application/json\r\n";
        if ($body !== null) {
            $headers .= "Content-Type: application/json\r\n";
        }
        $context = stream_context_create(array('http' => array(
            'method' => $method, 'header' => $headers, 'ignore_errors' => true, 'timeout' => 20,
            'content' => $body === null ? '' : json_encode($body),
        )));
        $raw = @file_get_contents($s['payhost_url'] . $path, false, $context);
        $status = 0;
        if (isset($http_response_header[0]) && preg_match('#^HTTP/\S+\s+(\d{3})#', $http_response_header[0], $m)) {
            $status = (int)$m[1];
        }
        return array($status, $raw === false ? null : json_decode($raw, true));
    }

    function toSubmit($payment)
    {
        $s = $this->settings($payment['M_OrderId']);
        list($status, $answer) = $this->payhost($s, 'PUT', '/v1/merchants/' . rawurlencode($s['merchant']), array(
            'partner' => $s['member_id'],
            'key' => $s['PrivateKey'],
            'seller_email' => $s['seller_account'],
            'mode' => $s['seller_mode'] === 'c2c' ? 'c2c' : 'b2c',
            'shop_webhook_url' => $this->serverCallbackUrl,
            'shop_webhook_secret' => $s['secret'],
        ));
        if ($status != 200) {
            return array('error' => isset($answer['error']['message']) ? $answer['error']['message'] : 'payhost answered HTTP ' . $status);
        }
        $shopName = (string)$this->system->getConf('system.shopname');
        $request = array(
            'out_trade_no' => $payment['M_OrderId'],
            'subject' => trim($shopName . ' ' . $payment['M_OrderNO']),
            'total_fee' => number_format($payment['M_Amount'], 2, '.', ''),
            'return_url' => $this->callbackUrl,
        );
        list($status, $answer) = $this->payhost($s, 'POST', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments', $request);
        if (($status != 201 && $status != 200) || empty($answer['pay_url'])) {
            return array('error' => isset($answer['error']['message']) ? $answer['error']['message'] : 'payhost answered HTTP ' . $status);
        }
        // ShopEx posts the returned fields to submitUrl with submitMethod: the cashier's GET form.
        $parts = explode('?', $answer['pay_url'], 2);
        $this->submitUrl = $parts[0];
        parse_str(isset($parts[1]) ? $parts[1] : '', $fields);
        return $fields;
    }

    /** payhost's view of the payment, as ShopEx's result code. */
    function result($s, $outTradeNo, &$paymentId, &$money, &$message, &$tradeno)
    {
        list($status, $p) = $this->payhost($s, 'GET', '/v1/merchants/' . rawurlencode($s['merchant']) . '/payments/' . rawurlencode($outTradeNo));
        if ($status != 200) {
            $message = 'payhost does not know the payment';
            return PAY_ERROR;
        }
        $paymentId = $p['out_trade_no'];
        $money = $p['total_fee'];
        $tradeno = $p['trade_no'];
        $message = $p['status'];
        switch ($p['status']) {
            case 'TRADE_SUCCESS':
            case 'TRADE_FINISHED':
                return PAY_SUCCESS;
            case 'WAIT_BUYER_PAY':
                return PAY_PROGRESS;
            default:
                return PAY_FAILED;
        }
    }

    /** The buyer's return: payhost's signed query. */
    function callback($in, &$paymentId, &$money, &$message, &$tradeno)
    {
        $s = $this->settings(isset($in['out_trade_no']) ? $in['out_trade_no'] : '');
        if (!isset($in['sign'], $in['out_trade_no'], $in['ts'])) {
            $message = 'Invalid Sign';
            return PAY_ERROR;
        }
        $params = $in;
        unset($params['sign']);
        ksort($params);
        $parts = array();
        foreach ($params as $k => $v) {
            $parts[] = $k . '=' . $v;
        }
        if (!hash_equals(hash_hmac('sha256', implode('&', $parts), $s['secret']), (string)$in['sign'])) {
            $message = 'Invalid Sign';
            return PAY_ERROR;
        }
        return $this->result($s, $in['out_trade_no'], $paymentId, $money, $message, $tradeno);
    }

    /** payhost's webhook: JSON body, X-Payhost-Signature. */
    function serverCallback($in, &$paymentId, &$money, &$message)
    {
        $body = isset($in['__raw_body']) ? $in['__raw_body'] : file_get_contents('php://input');
        $header = isset($_SERVER['HTTP_X_PAYHOST_SIGNATURE']) ? $_SERVER['HTTP_X_PAYHOST_SIGNATURE'] : '';
        $event = json_decode($body, true);
        if (!is_array($event) || empty($event['out_trade_no'])) {
            $message = 'Invalid event';
            return PAY_ERROR;
        }
        $s = $this->settings($event['out_trade_no']);
        if (!hash_equals('sha256=' . hash_hmac('sha256', $body, $s['secret']), $header)) {
            $message = 'Invalid Sign';
            return PAY_ERROR;
        }
        $tradeno = '';
        return $this->result($s, $event['out_trade_no'], $paymentId, $money, $message, $tradeno);
    }
}
