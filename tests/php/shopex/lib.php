<?php
// The ShopEx side for the tests: the system object, and a shop state in STATE_FILE. An order is
// paid once: the first PAY_SUCCESS counts, as ShopEx's payment centre does.
set_include_path(__DIR__ . PATH_SEPARATOR . get_include_path());

function state_load() { return json_decode(file_get_contents(getenv('STATE_FILE')), true); }
function state_save($s) { file_put_contents(getenv('STATE_FILE'), json_encode($s, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE), LOCK_EX); }

class shopex_system {
    function base_url() { return getenv('SHOP_BASE'); }
    function getConf($key) { $s = state_load(); return $key === 'system.shopname' ? $s['shop_name'] : ''; }
}

function plugin() {
    require_once rtrim(getenv('ADAPTER_ROOT'), '/') . '/plugins/payment/pay.payhost_alipay.php';
    $system = new shopex_system();
    return new pay_payhost_alipay($system);
}

function settle($where, $code, $paymentId, $money) {
    $s = state_load();
    $s['results'][] = array('where' => $where, 'code' => $code, 'payment_id' => $paymentId, 'money' => $money);
    if ($code === PAY_SUCCESS && isset($s['payments'][$paymentId]) && $s['payments'][$paymentId]['status'] !== 'succ'
        && abs((float)$s['payments'][$paymentId]['amount'] - (float)$money) < 0.005) {
        $s['payments'][$paymentId]['status'] = 'succ';
        $s['paid_calls'][] = $paymentId;
    }
    state_save($s);
}
