<?php
// What ecshop gives a payment module, written from the module contract: the IN_ECS guard,
// ROOT_PATH, EC_CHARSET, $_CFG, $GLOBALS['ecs'] and $GLOBALS['db'], and the functions
// return_url(), get_payment(), check_money() and order_paid() (idempotent on pay_log.is_paid, as
// ecshop's lib_payment.php is). The shop's state lives in the JSON file named by STATE_FILE.

define('IN_ECS', true);
define('ROOT_PATH', rtrim(getenv('ADAPTER_ROOT'), '/') . '/');
define('EC_CHARSET', getenv('SHOP_CHARSET') ?: 'utf-8');

function state_load() { return json_decode(file_get_contents(getenv('STATE_FILE')), true); }
function state_save($s) { file_put_contents(getenv('STATE_FILE'), json_encode($s, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE), LOCK_EX); }

$state = state_load();
$GLOBALS['_CFG'] = array('lang' => 'zh_cn', 'shop_name' => base64_decode($state['shop_name_b64']));
$GLOBALS['_LANG'] = array();

class ecs_stub { function table($name) { return '`ecs_' . $name . '`'; } }
class db_stub {
    // The one query a payment module needs: is a pay_log row paid?
    function getOne($sql) {
        if (preg_match("/SELECT is_paid FROM `ecs_pay_log` WHERE log_id = '(\d+)'/", $sql, $m)) {
            $s = state_load();
            return isset($s['pay_log'][$m[1]]) ? $s['pay_log'][$m[1]]['is_paid'] : null;
        }
        throw new Exception('unexpected query: ' . $sql);
    }
}
$GLOBALS['ecs'] = new ecs_stub();
$GLOBALS['db'] = new db_stub();

function return_url($code) { return getenv('SHOP_BASE') . '/respond.php?code=' . $code; }
function get_payment($code) { $s = state_load(); return $s['payment_config']; }

function check_money($log_id, $money) {
    $s = state_load();
    if (!isset($s['pay_log'][$log_id])) return false;
    return abs((float)$s['pay_log'][$log_id]['order_amount'] - (float)$money) < 0.005;
}

function order_paid($log_id, $pay_status = 2, $note = '') {
    $s = state_load();
    $s['order_paid_calls'][] = array('log_id' => $log_id, 'pay_status' => $pay_status);
    if (isset($s['pay_log'][$log_id]) && $s['pay_log'][$log_id]['is_paid'] == 0) {
        $s['pay_log'][$log_id]['is_paid'] = 1;
    }
    state_save($s);
}

function load_module() {
    include_once ROOT_PATH . 'includes/modules/payment/payhost_alipay.php';
}
