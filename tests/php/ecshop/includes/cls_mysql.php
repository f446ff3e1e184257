<?php
/*
 * Harness of ecshop 2.7.3 `includes/cls_mysql.php` (class cls_mysql: getOne, getRow, getCol, query,
 * affected_rows, ErrorMsg) over a JSON file instead of MySQL (LIKE with MySQL's %, _ and \ escapes).
 * getOne() returns the first column of the first row and '' when there is no row; getRow() an
 * array, or false without a row. A query MySQL refuses never comes back to the caller: the real
 * query() (lines 267-276) fills error_message (message, sql, error, errno) and calls ErrorMsg()
 * (lines 380-400), which prints "<b>MySQL server error report:" and print_r() of those entries —
 * the SQL included — and exits; getOne()'s `return false` is reached only with query()'s 'SILENT'
 * type, which getOne() never passes. Here a statement fails that way when it contains the text
 * the test put in shop_config.harness_fail_sql (_state.php?fail_sql=…), and so does GET_LOCK with
 * a name longer than 64 characters, as in MySQL 5.7 and later (ER_USER_LOCK_WRONG_NAME, 3057).
 * Each statement is atomic (an exclusive flock on the file, as a MyISAM table lock); nothing spans
 * two statements, as in MyISAM (no transactions). Only the statements a payment module sends are
 * understood; anything else throws, so a test fails loudly instead of passing on a query the
 * harness ignored (the admin log, admin_log, is what admin/admin_logs.php lists). MySQL's GET_LOCK/RELEASE_LOCK are per-connection named locks: here one flock'd
 * file per name, released at RELEASE_LOCK or when the request (the connection) ends.
 * HARNESS_NO_LOCKS=1 makes GET_LOCK lock nothing (the negative control of the concurrency test).
 *
 * Written for the tests from the class's documented behaviour; no ecshop code.
 */

function hdb_path() { return getenv('SHOP_DB'); }

/** Runs $fn(&$tables) under the file lock and saves; returns $fn's result. */
function hdb_tx($fn)
{
    $fp = fopen(hdb_path(), 'c+');
    flock($fp, LOCK_EX);
    $raw = stream_get_contents($fp);
    $tables = json_decode($raw, true);
    $result = $fn($tables);
    ftruncate($fp, 0);
    rewind($fp);
    fwrite($fp, json_encode($tables, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE));
    fflush($fp);
    flock($fp, LOCK_UN);
    fclose($fp);
    return $result;
}

function hdb_read()
{
    $fp = fopen(hdb_path(), 'r');
    flock($fp, LOCK_SH);
    $tables = json_decode(stream_get_contents($fp), true);
    flock($fp, LOCK_UN);
    fclose($fp);
    return $tables;
}

class cls_mysql
{
    var $affected = 0;
    var $locks = array();
    var $error_message = array();

    function table_name($quoted)
    {
        // `db`.`ecs_pay_log` -> pay_log
        return preg_replace('/^ecs_/', '', trim(substr($quoted, strrpos($quoted, '.') + 1), '`'));
    }

    /** query()'s failure: the error report, with the SQL, printed; then exit (ErrorMsg()). */
    function failed($sql, $error, $errno)
    {
        $this->error_message[]['message'] = 'MySQL Query Error';
        $this->error_message[]['sql'] = $sql;
        $this->error_message[]['error'] = $error;
        $this->error_message[]['errno'] = $errno;
        echo "<b>MySQL server error report:";
        print_r($this->error_message);
        exit;
    }

    /** A statement the test made fail (shop_config.harness_fail_sql). */
    function check($sql)
    {
        $t = hdb_read();
        $fail = isset($t['shop_config']['harness_fail_sql']) ? (string)$t['shop_config']['harness_fail_sql'] : '';
        if ($fail !== '' && strpos($sql, $fail) !== false) {
            $this->failed($sql, "Table 'ecs_pay_log' is marked as crashed and should be repaired", 145);
        }
    }

    function getOne($sql)
    {
        $this->check($sql);
        if (preg_match("/^SELECT order_amount FROM (\S+) WHERE log_id = '(\d+)'$/", $sql, $m) && $this->table_name($m[1]) === 'pay_log') {
            $t = hdb_read();
            return isset($t['pay_log'][$m[2]]) ? (string)$t['pay_log'][$m[2]]['order_amount'] : '';
        }
        if (preg_match("/^SELECT is_paid FROM (\S+) WHERE log_id = '(\d+)'$/", $sql, $m) && $this->table_name($m[1]) === 'pay_log') {
            $t = hdb_read();
            return isset($t['pay_log'][$m[2]]) ? (string)$t['pay_log'][$m[2]]['is_paid'] : '';
        }
        // lib_clips.php get_paylog_id(): the unpaid pay_log row of an order.
        if (preg_match("/^SELECT log_id FROM ?(\S+) WHERE order_id = '(\d+)' AND order_type = '(\d+)' AND is_paid = 0$/", $sql, $m) && $this->table_name($m[1]) === 'pay_log') {
            $t = hdb_read();
            foreach ($t['pay_log'] as $row) {
                if ((string)$row['order_id'] === $m[2] && (string)$row['order_type'] === $m[3] && $row['is_paid'] == 0) {
                    return (string)$row['log_id'];
                }
            }
            return '';
        }
        if (preg_match("/^SELECT COUNT\(\*\) FROM (\S+) WHERE order_id = '(\d+)' AND action_note LIKE '((?:[^'\\\\]|\\\\.)*)'$/s", $sql, $m) && $this->table_name($m[1]) === 'order_action') {
            $regex = $this->like_regex(stripslashes($m[3]));
            $t = hdb_read();
            $n = 0;
            foreach ($t['order_action'] as $row) {
                if (isset($row['order_id'], $row['action_note']) && (string)$row['order_id'] === $m[2] && preg_match($regex, $row['action_note'])) {
                    $n++;
                }
            }
            return (string)$n;
        }
        // Whether a row is there (the module's row_missing()): COUNT(*) of order_info by order_id,
        // of user_account by id.
        if (preg_match("/^SELECT COUNT\(\*\) FROM (\S+) WHERE (order_id|id) = '(\d+)'$/", $sql, $m)
            && in_array($this->table_name($m[1]) . '.' . $m[2], array('order_info.order_id', 'user_account.id'), true)) {
            $t = hdb_read();
            return isset($t[$this->table_name($m[1])][$m[3]]) ? '1' : '0';
        }
        // The module's zero-amount account_log lines, looked up by their marker.
        if (preg_match("/^SELECT COUNT\(\*\) FROM (\S+) WHERE user_id = '(\d+)' AND change_desc LIKE '((?:[^'\\\\]|\\\\.)*)'$/s", $sql, $m) && $this->table_name($m[1]) === 'account_log') {
            $regex = $this->like_regex(stripslashes($m[3]));
            $t = hdb_read();
            $n = 0;
            foreach ($t['account_log'] as $row) {
                if ((string)$row['user_id'] === $m[2] && isset($row['change_desc']) && preg_match($regex, $row['change_desc'])) {
                    $n++;
                }
            }
            return (string)$n;
        }
        // The admin log (admin_log: log_id, log_time, user_id, log_info varchar(255), ip_address):
        // the module's line, looked up to write it once in 10 minutes.
        if (preg_match("/^SELECT COUNT\(\*\) FROM (\S+) WHERE log_info = '((?:[^'\\\\]|\\\\.)*)' AND log_time > '(\d+)'$/s", $sql, $m)
            && $this->table_name($m[1]) === 'admin_log') {
            $t = hdb_read();
            $n = 0;
            foreach (isset($t['admin_log']) ? $t['admin_log'] : array() as $row) {
                if (base64_decode($row['log_info_b64']) === stripslashes($m[2]) && (int)$row['log_time'] > (int)$m[3]) {
                    $n++;
                }
            }
            return (string)$n;
        }
        if (preg_match("/^SELECT GET_LOCK\('((?:[^'\\\\]|\\\\.)*)', (\d+)\)$/", $sql, $m)) {
            return $this->get_lock(stripslashes($m[1]), (int)$m[2]);
        }
        if (preg_match("/^SELECT RELEASE_LOCK\('((?:[^'\\\\]|\\\\.)*)'\)$/", $sql, $m)) {
            $name = stripslashes($m[1]);
            if (!isset($this->locks[$name])) {
                return '0';
            }
            flock($this->locks[$name], LOCK_UN);
            fclose($this->locks[$name]);
            unset($this->locks[$name]);
            return '1';
        }
        throw new Exception('harness cls_mysql: unexpected statement: ' . $sql);
    }

    /** MySQL's LIKE pattern (the literal already unescaped) as a regex: % any, _ one, \\x the x. */
    function like_regex($pattern)
    {
        $out = '';
        $n = strlen($pattern);
        for ($i = 0; $i < $n; $i++) {
            $c = $pattern[$i];
            if ($c === '\\' && $i + 1 < $n) {
                $out .= preg_quote($pattern[++$i], '/');
            } elseif ($c === '%') {
                $out .= '.*';
            } elseif ($c === '_') {
                $out .= '.';
            } else {
                $out .= preg_quote($c, '/');
            }
        }
        return '/^' . $out . '$/s';
    }

    function get_lock($name, $timeout)
    {
        if (strlen($name) > 64) {
            $this->failed("SELECT GET_LOCK('" . $name . "', " . $timeout . ")", "Incorrect user-level lock name '" . $name . "'.", 3057);
        }
        if (getenv('HARNESS_NO_LOCKS') === '1') {
            return '1';
        }
        $fp = fopen(dirname(hdb_path()) . '/mysql-lock-' . md5($name), 'c');
        $deadline = microtime(true) + $timeout;
        while (!flock($fp, LOCK_EX | LOCK_NB)) {
            if (microtime(true) > $deadline) {
                fclose($fp);
                return '0';
            }
            usleep(10000);
        }
        $this->locks[$name] = $fp;
        return '1';
    }

    function getCol($sql)
    {
        $this->check($sql);
        if (preg_match("/^SELECT DISTINCT g\.suppliers_id FROM (\S+) AS og LEFT JOIN (\S+) AS g ON g\.goods_id = og\.goods_id WHERE og\.order_id = '(\d+)'$/", $sql, $m)
            && $this->table_name($m[1]) === 'order_goods' && $this->table_name($m[2]) === 'goods') {
            $t = hdb_read();
            $out = array();
            foreach ($t['order_goods'] as $og) {
                if ((string)$og['order_id'] === $m[3]) {
                    $g = isset($t['goods'][$og['goods_id']]) ? $t['goods'][$og['goods_id']] : null;
                    $out[] = $g === null ? null : (string)$g['suppliers_id'];
                }
            }
            return array_values(array_unique($out, SORT_REGULAR));
        }
        throw new Exception('harness cls_mysql: unexpected statement: ' . $sql);
    }

    function getRow($sql)
    {
        $this->check($sql);
        if (preg_match("/^SELECT order_id, order_type FROM (\S+) WHERE log_id = '(\d+)'$/", $sql, $m) && $this->table_name($m[1]) === 'pay_log') {
            $t = hdb_read();
            return isset($t['pay_log'][$m[2]]) ? array('order_id' => (string)$t['pay_log'][$m[2]]['order_id'],
                'order_type' => (string)$t['pay_log'][$m[2]]['order_type']) : false;
        }
        if (preg_match("/^SELECT order_id, order_sn, order_status, shipping_status, pay_status, order_amount FROM (\S+) WHERE order_id = '(\d+)'$/", $sql, $m) && $this->table_name($m[1]) === 'order_info') {
            $t = hdb_read();
            if (!isset($t['order_info'][$m[2]])) {
                return false;
            }
            $o = $t['order_info'][$m[2]];
            return array('order_id' => (string)$o['order_id'], 'order_sn' => (string)$o['order_sn'],
                'order_status' => isset($o['order_status']) ? (string)$o['order_status'] : '0',
                'shipping_status' => isset($o['shipping_status']) ? (string)$o['shipping_status'] : '0',
                'pay_status' => (string)$o['pay_status'],
                'order_amount' => isset($o['order_amount']) ? (string)$o['order_amount'] : '0.00');
        }
        // The user_account row (预付款) of a top-up's pay_log row.
        if (preg_match("/^SELECT id, user_id, amount, is_paid, admin_note FROM (\S+) WHERE id = '(\d+)'$/", $sql, $m) && $this->table_name($m[1]) === 'user_account') {
            $t = hdb_read();
            if (!isset($t['user_account'][$m[2]])) {
                return false;
            }
            $a = $t['user_account'][$m[2]];
            return array('id' => (string)$a['id'], 'user_id' => (string)$a['user_id'],
                'amount' => number_format((float)$a['amount'], 2, '.', ''), 'is_paid' => (string)$a['is_paid'],
                'admin_note' => isset($a['admin_note']) ? (string)$a['admin_note'] : '');
        }
        throw new Exception('harness cls_mysql: unexpected statement: ' . $sql);
    }
    function getAll($sql) { throw new Exception('harness cls_mysql: unexpected statement: ' . $sql); }
    function query($sql)
    {
        $this->check($sql);
        // The payment module's align_pay_log() (admin/order.php update_pay_log()'s statement).
        if (preg_match("/^UPDATE (\S+) SET order_amount = '([0-9]+\.[0-9]{2})' WHERE log_id = '(\d+)' AND order_id = '(\d+)' AND order_type = '(\d+)' AND is_paid = 0$/", $sql, $m)
            && $this->table_name($m[1]) === 'pay_log') {
            $self = $this;
            return hdb_tx(function (&$t) use ($m, $self) {
                $self->affected = 0;
                $row = isset($t['pay_log'][$m[3]]) ? $t['pay_log'][$m[3]] : null;
                if ($row && (string)$row['order_id'] === $m[4] && (string)$row['order_type'] === $m[5] && $row['is_paid'] == 0) {
                    $t['pay_log'][$m[3]]['order_amount'] = $m[2];
                    $self->affected = 1;
                }
                return true;
            });
        }
        // The module's mark_topup_paid(): the paying payment in admin_note (varchar(255)), if the
        // note is still the one it read.
        if (preg_match("/^UPDATE (\S+) SET admin_note = '((?:[^'\\\\]|\\\\.)*)' WHERE id = '(\d+)' AND admin_note = '((?:[^'\\\\]|\\\\.)*)'$/s", $sql, $m)
            && $this->table_name($m[1]) === 'user_account') {
            $self = $this;
            return hdb_tx(function (&$t) use ($m, $self) {
                $self->affected = 0;
                $was = isset($t['user_account'][$m[3]]['admin_note']) ? (string)$t['user_account'][$m[3]]['admin_note'] : '';
                if (isset($t['user_account'][$m[3]]) && $was === stripslashes($m[4])) {
                    $t['user_account'][$m[3]]['admin_note'] = harness_varchar(stripslashes($m[2]), 255);
                    $self->affected = 1;
                }
                return true;
            });
        }
        // admin/includes/lib_main.php admin_log()'s INSERT (here from the payment module, user 0).
        // log_info is varchar(255); stored as text (invalid UTF-8, a GBK shop's, substituted) and
        // as its bytes in base64.
        if (preg_match("/^INSERT INTO (\S+) \(log_time, user_id, log_info, ip_address\) VALUES \('(\d+)', (\d+), '((?:[^'\\\\]|\\\\.)*)', '((?:[^'\\\\]|\\\\.)*)'\)$/s", $sql, $m)
            && $this->table_name($m[1]) === 'admin_log') {
            return hdb_tx(function (&$t) use ($m) {
                $info = function_exists('harness_varchar') ? harness_varchar(stripslashes($m[4]), 255) : stripslashes($m[4]);
                $t['admin_log'][] = array('log_id' => count(isset($t['admin_log']) ? $t['admin_log'] : array()) + 1,
                    'log_time' => (int)$m[2], 'user_id' => (int)$m[3], 'log_info' => $info,
                    'log_info_b64' => base64_encode($info), 'ip_address' => stripslashes($m[5]));
                return true;
            });
        }
        throw new Exception('harness cls_mysql: unexpected statement: ' . $sql);
    }
    function affected_rows() { return $this->affected; }
}
