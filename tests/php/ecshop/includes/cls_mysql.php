<?php
/*
 * Harness of ecshop 2.7.3 `includes/cls_mysql.php` (class cls_mysql: getOne, getRow, getCol, query,
 * affected_rows) over a JSON file instead of MySQL. Each statement is atomic (an exclusive flock on
 * the file, as a MyISAM table lock); nothing spans two statements, as in MyISAM (no transactions).
 * Only the statements a payment module sends are understood; anything else throws, so a test fails
 * loudly instead of passing on a query the harness ignored. MySQL's GET_LOCK/RELEASE_LOCK are
 * per-connection named locks: here one flock'd file per name, released at RELEASE_LOCK or when the
 * request (the connection) ends. HARNESS_NO_LOCKS=1 makes GET_LOCK lock nothing (the negative
 * control of the concurrency test).
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

    function table_name($quoted)
    {
        // `db`.`ecs_pay_log` -> pay_log
        return preg_replace('/^ecs_/', '', trim(substr($quoted, strrpos($quoted, '.') + 1), '`'));
    }

    function getOne($sql)
    {
        if (preg_match("/^SELECT is_paid FROM (\S+) WHERE log_id = '(\d+)'$/", $sql, $m) && $this->table_name($m[1]) === 'pay_log') {
            $t = hdb_read();
            return isset($t['pay_log'][$m[2]]) ? (string)$t['pay_log'][$m[2]]['is_paid'] : false;
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

    function get_lock($name, $timeout)
    {
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

    function getRow($sql) { throw new Exception('harness cls_mysql: unexpected statement: ' . $sql); }
    function getAll($sql) { throw new Exception('harness cls_mysql: unexpected statement: ' . $sql); }
    function query($sql) { throw new Exception('harness cls_mysql: unexpected statement: ' . $sql); }
    function affected_rows() { return $this->affected; }
}
