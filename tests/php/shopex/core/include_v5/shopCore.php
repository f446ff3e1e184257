<?php
/*
 * Harness of ShopEx 4.8.5 `core/kernel.php` + `core/include_v5/shopCore.php` (the $system object):
 * the constructor sets $GLOBALS['system'] and the include path (CORE_INCLUDE_DIR first), then
 * run() (the shop front; pluginCore and the admin's core have their own): ob_start(),
 * register_shutdown_function(shutdown), and the page's PHP messages collected into _errArr (the
 * controller's error handler, shopPage::_errorHandler); display() sets `_succ = true`, and
 * shutdown() on a request that ended without it runs core/include_v5/shop/core.debugger.php
 * shop_core_debugger(): every output buffer taken and echoed again after the list of the
 * collected messages (each with its file and line); base_url()
 * ('http://' . HTTP_HOST . PHP_SELF up to its last '/'), getConf('system.shopname' and
 * 'site.decimal_digit'), loadModel('trading/payment'), 'system/addons', 'system/appmgr' and
 * loadModel('trading/order') (whose payed()
 * pays the order as stock payed() does — fully or partly by final_amount - payed, a dead order
 * too — and counts the calls — or, while the test has switched payed_fails on
 * (_state.php?payed_fails=1), returns false without writing, as mdl.order.php payed() does when
 * its toEdit() of the order fails ("更新订单失败"); load($order_id), getFieldById($order_id,
 * $fields) (`SELECT <fields> FROM sdb_orders WHERE order_id='…'`: the row's fields, or false;
 * disabled 'true' for an order in the admin's recycle bin, 'false' by default),
 * addLog($message, $op_id, $op_name, $behavior, $result) and getLogs($order_id): the order's
 * sdb_order_log rows; saveMarkText($orderid, $aData): the order's admin remark, sdb_orders
 * mark_text and mark_type (订单备注: shown by the admin's order pages only — ctl.order.php,
 * order/order_detail.html, od_mark.html — never by the shop's member pages), written as
 * mdl.order.php saveMarkText() writes it (both columns replaced; false when the update fails);
 * getFieldById() gives mark_type 'b1' (core/schemas/orders.php) and mark_text null by default);
 * database(): the
 * kernel's database object, whose selectrow($sql) runs MySQL's GET_LOCK(name, timeout) and
 * RELEASE_LOCK(name) (one flock'd file per name, released at RELEASE_LOCK or when the request —
 * the connection — ends; HARNESS_NO_LOCKS=1 locks nothing) as MySQL before 5.7 (ShopEx 4.8.5's
 * MySQL 5.0/5.1) does: a connection holds one named lock, and GET_LOCK of another name first
 * releases the one it holds; while the test has switched `locks_busy` on (_state.php?locks_busy=1),
 * GET_LOCK answers 0 at once, as MySQL does after the timeout when another connection holds the
 * name; and `SELECT log_id FROM
 * sdb_advance_logs WHERE payment_id='…'`; other statements throw. loadModel('member/advance'):
 * harness_advance (mdl_advance::add()).
 * RACE_WINDOW_MS also widens addLog()'s gap before its write.
 *
 * PHP's messages: on PHP 5.3 and later ShopEx 4.8.5's core raises E_DEPRECATED while it is loaded
 * (`=& new`), printed where display_errors is on — for a plugin URL after plugins/loader.php has
 * ended its output buffer. The harness raises one such message while this file loads when the
 * test switches `harness_deprecated` on (_state.php?deprecated=1). Written for the tests; no
 * ShopEx code.
 */
require_once(dirname(__FILE__) . '/harness_db.php');
$harness_state = hdb_read();
if (!empty($harness_state['harness_deprecated'])) {
    ini_set('display_errors', '1');
    trigger_error('Assigning the return value of new by reference is deprecated', E_USER_DEPRECATED);
}
unset($harness_state);

class shopCore
{
    var $_base_url;
    var $models = array();
    var $_succ;
    var $_errArr = array();

    function __construct($args = array())
    {
        $GLOBALS['system'] = &$this;
        set_include_path(CORE_INCLUDE_DIR . PATH_SEPARATOR . '.');
        $this->run();
    }

    function run()
    {
        ob_start();
        register_shutdown_function(array(&$this, 'shutdown'));
        set_error_handler(array(&$this, 'errorHandler'));
    }

    function errorHandler($errno, $errstr, $errfile, $errline)
    {
        $this->_errArr[] = array('no' => $errno, 'msg' => $errstr, 'file' => $errfile, 'line' => $errline);
        return true;
    }

    function shutdown()
    {
        if ($this->_succ) {
            return;
        }
        $this->_succ = true;
        $body = '';
        while (ob_get_level() > 0) {
            $body .= ob_get_contents();
            ob_end_clean();
        }
        $html = '';
        foreach ($this->_errArr as $err) {
            $html .= '<li class="err_' . $err['no'] . '"><b class="no">Error:</b> <span class="body">' . $err['msg'] . ' <span>' . $err['file'] . ':' . $err['line'] . '</li>';
        }
        echo $html . $body;
    }

    function base_url()
    {
        if (!isset($this->_base_url)) {
            $this->_base_url = 'http://' . $_SERVER['HTTP_HOST'] . substr(PHP_SELF, 0, strrpos(PHP_SELF, '/') + 1);
        }
        return $this->_base_url;
    }

    function getConf($key)
    {
        $t = hdb_read();
        return isset($t['settings'][$key]) ? $t['settings'][$key] : null;
    }

    function database()
    {
        if (!isset($this->models['#db'])) {
            $this->models['#db'] = new harness_database();
        }
        return $this->models['#db'];
    }

    function &loadModel($name)
    {
        if (!isset($this->models[$name])) {
            if ($name === 'trading/payment') {
                require_once(CORE_DIR . '/model_v5/trading/mdl.payment.php');
                $this->models[$name] = new mdl_payment($this);
            } elseif ($name === 'system/addons' || $name === 'system/appmgr') {
                require_once(CORE_DIR . '/model_v5/' . dirname($name) . '/mdl.' . basename($name) . '.php');
                $class = 'mdl_' . basename($name);
                $this->models[$name] = new $class();
            } elseif ($name === 'trading/order') {
                $this->models[$name] = new harness_order();
            } elseif ($name === 'member/advance') {
                $this->models[$name] = new harness_advance();
            } else {
                throw new Exception('harness: no model ' . $name);
            }
        }
        return $this->models[$name];
    }
}

/** The kernel's database (only the named locks a plugin takes). */
class harness_database
{
    var $locks = array();

    function selectrow($sql)
    {
        if (preg_match("/^SELECT GET_LOCK\('([^'\\\\]{1,64})', (\d+)\) AS (\w+)$/", $sql, $m)) {
            if (getenv('HARNESS_NO_LOCKS') === '1') {
                return array($m[3] => '1');
            }
            $state = hdb_read();
            if (!empty($state['locks_busy'])) {
                // Another connection holds every name (_state.php?locks_busy=1): GET_LOCK's
                // answer once its timeout has passed, given at once.
                return array($m[3] => '0');
            }
            foreach ($this->locks as $name => $held) {
                // MySQL before 5.7: one named lock per connection; a new GET_LOCK releases it
                // (the same name again: released and taken again).
                flock($held, LOCK_UN);
                fclose($held);
                unset($this->locks[$name]);
            }
            $fp = fopen(dirname(getenv('SHOP_DB')) . '/mysql-lock-' . md5($m[1]), 'c');
            $deadline = microtime(true) + (int)$m[2];
            while (!flock($fp, LOCK_EX | LOCK_NB)) {
                if (microtime(true) > $deadline) {
                    fclose($fp);
                    return array($m[3] => '0');
                }
                usleep(10000);
            }
            $this->locks[$m[1]] = $fp;
            return array($m[3] => '1');
        }
        if (preg_match("/^SELECT RELEASE_LOCK\('([^'\\\\]{1,64})'\) AS (\w+)$/", $sql, $m)) {
            if (!isset($this->locks[$m[1]])) {
                return array($m[2] => '0');
            }
            flock($this->locks[$m[1]], LOCK_UN);
            fclose($this->locks[$m[1]]);
            unset($this->locks[$m[1]]);
            return array($m[2] => '1');
        }
        if (preg_match("/^SELECT log_id FROM sdb_advance_logs WHERE payment_id='([0-9]{1,20})'$/", $sql, $m)) {
            // AloneDB::selectrow(): the first row, or null when there is none.
            $t = hdb_read();
            foreach (isset($t['advance_logs']) ? $t['advance_logs'] : array() as $row) {
                if ((string)$row['payment_id'] === $m[1]) {
                    return array('log_id' => (string)$row['log_id']);
                }
            }
            return null;
        }
        throw new Exception('harness database: unexpected statement: ' . $sql);
    }
}

/** mdl.order.php payed(): the order becomes paid; the harness counts the calls. */
class harness_order
{
    var $_info = array();

    function load($order_id)
    {
        $t = hdb_read();
        if (!isset($t['orders'][(string)$order_id])) {
            return false;
        }
        $this->_info['order_id'] = $t['orders'][(string)$order_id]['order_id'];
        return true;
    }

    function addLog($message, $op_id = null, $op_name = null, $behavior = '', $result = 'success')
    {
        if (!$message) {
            return false;
        }
        $row = array('order_id' => $this->_info['order_id'], 'op_id' => $op_id, 'op_name' => $op_name,
            'behavior' => $behavior, 'result' => $result, 'log_text' => $message, 'acttime' => time());
        $window = (int)getenv('RACE_WINDOW_MS');
        if ($window > 0) {
            usleep($window * 1000);
        }
        return hdb_tx(function (&$t) use ($row) {
            if (!empty($t['db_down'])) {
                return false;
            }
            $t['order_log'][] = $row;
            return true;
        });
    }

    /** mdl.order.php saveMarkText(): the order's mark_text and mark_type (the admin's 订单备注). */
    function saveMarkText($orderid, $aData)
    {
        $id = (string)$orderid;
        return hdb_tx(function (&$t) use ($id, $aData) {
            if (!empty($t['db_down']) || !isset($t['orders'][$id])) {
                return false;
            }
            $t['orders'][$id]['mark_text'] = isset($aData['mark_text']) ? $aData['mark_text'] : null;
            $t['orders'][$id]['mark_type'] = isset($aData['mark_type']) ? $aData['mark_type'] : null;
            return true;
        });
    }

    function getLogs($order_id)
    {
        $t = hdb_read();
        $rows = array();
        foreach (isset($t['order_log']) ? $t['order_log'] : array() as $row) {
            if ((string)$row['order_id'] === (string)$order_id) {
                $rows[] = $row;
            }
        }
        return $rows;
    }

    function getFieldById($order_id, $fields = array('*'))
    {
        $t = hdb_read();
        if (!isset($t['orders'][(string)$order_id])) {
            return false;
        }
        // sdb_orders' defaults (core/schemas/orders.php) for what a test's order leaves out.
        $row = $t['orders'][(string)$order_id] + array('status' => 'active', 'payed' => '0.000', 'cur_rate' => '1.0000',
            'disabled' => 'false', 'mark_type' => 'b1');
        if (!isset($row['final_amount']) && isset($row['total_amount'])) {
            $row['final_amount'] = $row['total_amount'];
        }
        $out = array();
        foreach ($fields as $f) {
            $out[$f] = isset($row[$f]) ? (string)$row[$f] : null;
        }
        return $out;
    }

    /**
     * mdl.order.php payed(): what is owed (final_amount - payed) against the payment's money times
     * the order's cur_rate: owed covered, pay_status 1 and payed = final_amount (an overpayment's
     * difference is not kept anywhere); not covered, pay_status 3 and payed grows by the money.
     * A dead order is paid the same way and stays dead ("死单被支付的情况").
     */
    function payed($info, &$message)
    {
        return hdb_tx(function (&$t) use ($info, &$message) {
            if (!empty($t['payed_fails'])) {
                $message .= '更新订单失败';
                return false;
            }
            $o = &$t['orders'][$info['order_id']];
            $final = isset($o['final_amount']) ? (float)$o['final_amount'] : (float)$o['total_amount'];
            $payed = isset($o['payed']) ? (float)$o['payed'] : 0.0;
            $rate = isset($o['cur_rate']) ? (float)$o['cur_rate'] : 1.0;
            if (round($final - $payed, 3) <= round((float)$info['money'] * $rate, 3)) {
                $o['pay_status'] = 1;
                $o['payed'] = number_format($final, 3, '.', '');
            } else {
                $o['pay_status'] = 3;
                $o['payed'] = number_format($payed + (float)$info['money'], 3, '.', '');
            }
            $t['payed_calls'][] = $info['payment_id'];
            return true;
        });
    }
}

/**
 * mdl.advance.php (class mdl_advance, the members' deposit 预存款): add() checks the member's
 * account (checkAccount(): `SELECT advance,member_id FROM sdb_members WHERE member_id=…`; no row,
 * "预存款帐户不存在" and false), raises its advance, then log() writes an sdb_advance_logs row
 * (log_id, member_id, money, message, payment_id, order_id, paymethod, memo, import_money,
 * member_advance). The harness's members are the state's `members`; `db_down` refuses the write.
 */
class harness_advance
{
    function add($member_id, $money, $message, &$errMsg, $payment_id = '', $order_id = '', $paymethod = '', $memo = '', $type = 0)
    {
        return hdb_tx(function (&$t) use ($member_id, $money, $message, &$errMsg, $payment_id, $order_id, $paymethod, $memo) {
            $m = (string)intval($member_id);
            if (!isset($t['members'][$m])) {
                $errMsg .= '预存款帐户不存在';
                return false;
            }
            if (!empty($t['db_down'])) {
                $errMsg .= '更新预存款帐户失败';
                return false;
            }
            $advance = number_format((float)$t['members'][$m]['advance'] + (float)$money, 3, '.', '');
            $t['members'][$m]['advance'] = $advance;
            $logs = isset($t['advance_logs']) ? $t['advance_logs'] : array();
            $t['advance_logs'][] = array('log_id' => count($logs) + 1, 'member_id' => (int)$m, 'money' => (string)$money,
                'mtime' => time(), 'message' => $message, 'payment_id' => (string)$payment_id,
                'order_id' => $order_id ? $order_id : null, 'paymethod' => $paymethod, 'memo' => $memo,
                'import_money' => (float)$money > 0 ? (string)$money : '0', 'member_advance' => $advance);
            return true;
        });
    }
}
