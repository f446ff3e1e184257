<?php
/*
 * Test-only (no ShopEx counterpart): the MySQL named locks the ShopEx app takes, from the command
 * line, for tests/adapters.rs. `php shopex_lock_unit.php <repo root> <DB_NAME> <DB_PREFIX> [fatal]`
 * defines config/config.php's DB_NAME and DB_PREFIX, runs pay_payhost::payhost_take() of a
 * payment of order 20261123001 against a kernel whose database() records every statement and
 * whose models answer what payhost_take() reads (an unpaid, active order; setPayStatus() true),
 * and prints JSON: the statements. With `fatal`, setPayStatus() ends the request with a fatal
 * error while the order's lock is held, and the statements are printed by a shutdown function
 * registered after the app's (so they show whether the app released the lock).
 */
$root = rtrim($argv[1], '/');
define('DB_NAME', $argv[2]);
define('DB_PREFIX', $argv[3]);
$fatal = isset($argv[4]) && $argv[4] === 'fatal';
set_include_path($root . '/tests/php/shopex/core/include_v5' . PATH_SEPARATOR . get_include_path());
// mdl.payment.php's result codes (PAY_SUCCESS 1).
define('PAY_SUCCESS', 1);

function unit_print_statements()
{
    echo json_encode(array('statements' => $GLOBALS['unit_statements']));
}

class unit_database
{
    function selectrow($sql)
    {
        $GLOBALS['unit_statements'][] = $sql;
        return array(preg_match('/ AS (\w+)$/', $sql, $m) ? $m[1] : 'x' => '1');
    }
}

class unit_payment_model
{
    function setPayStatus($id, $status, &$info)
    {
        if ($GLOBALS['unit_fatal']) {
            register_shutdown_function('unit_print_statements');
            trigger_error('a fatal error while the lock is held', E_USER_ERROR);
        }
        return true;
    }

    function getById($id)
    {
        return array('payment_id' => $id, 'order_id' => '20261123001', 'money' => '8.80', 'status' => 'succ');
    }
}

class unit_order_model
{
    function getFieldById($id, $fields)
    {
        return array('status' => 'active', 'pay_status' => '0', 'final_amount' => '8.80', 'payed' => '0.000',
            'cur_rate' => '1.0000', 'disabled' => 'false');
    }
}

class unit_system
{
    var $db;
    var $models = array();

    function base_url() { return 'http://shop.example/'; }

    function database()
    {
        if (!$this->db) {
            $this->db = new unit_database();
        }
        return $this->db;
    }

    function &loadModel($name)
    {
        if (!isset($this->models[$name])) {
            $this->models[$name] = $name === 'trading/order' ? new unit_order_model() : new unit_payment_model();
        }
        return $this->models[$name];
    }
}

$GLOBALS['unit_statements'] = array();
$GLOBALS['unit_fatal'] = $fatal;
$GLOBALS['system'] = new unit_system();
require($root . '/adapters/shopex/plugins/app/pay_payhost/pay_payhost.php');
$system = $GLOBALS['system'];
$m = new pay_payhost($system);
$record = array('payment_id' => '17640000001234', 'order_id' => '20261123001', 'money' => '8.80', 'status' => 'ready',
    'pay_type' => 'online');
$info = array('money' => '8.80', 'memo' => 'payhost TRADE_SUCCESS', 'trade_no' => '2026');
list($result) = $m->payhost_take('17640000001234', $record, $info);
$GLOBALS['unit_statements'][] = 'result ' . $result;
unit_print_statements();
