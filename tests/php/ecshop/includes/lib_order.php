<?php
/*
 * Harness of ecshop 2.7.3 `includes/lib_order.php` (unserialize_config(), payment_info(), pay_fee(),
 * merge_order(), get_order_sn()) and of `includes/lib_clips.php` insert_pay_log() /
 * get_paylog_id() / del_user_account() and `includes/lib_common.php`
 * order_action() / log_account_change() / get_virtual_goods() / virtual_goods_ship() /
 * virtual_card_result(), over the harness database. order_action($order_sn,
 * $order_status, $shipping_status, $pay_status, $note, $username) inserts an order_action row of
 * the order with that order_sn (the real one is `INSERT INTO order_action (…) SELECT order_id, …
 * FROM order_info WHERE order_sn = '$order_sn'`: no such order, no row); the note goes into the SQL string as it is given (the caller
 * escapes it), so MySQL's unescaping is emulated with stripslashes(), and the column,
 * action_note varchar(255) (ecshop 2.7.3's schema, in the edition's charset), keeps its first 255
 * characters as MySQL does with sql_mode '' (cls_mysql sets it): a longer note is cut without an
 * error; RACE_WINDOW_MS delays the insert (a busy MySQL). Virtual goods: order_goods
 * rows with extension_code 'virtual_card' (is_real 0, goods_number, send_number) and the
 * virtual_card table (card_sn, card_password, end_date, is_saled, order_sn; stored in clear here,
 * the real table holds them encrypted and virtual_card_result() decrypts them): get_virtual_goods(
 * $order_id, $shipping) lists an order's goods with an extension_code (shipped: send_number of
 * each; not shipped: is_real 0 and goods_number - send_number > 0) by extension_code;
 * virtual_goods_ship() gives each unshipped virtual card goods its cards (is_saled 1, the
 * order_sn; send_number raised) and, with $return_result, assigns them to the template as
 * `virtual_card`; virtual_card_result($order_sn, $goods) lists the cards of one goods sold to an
 * order. Written for the tests; no ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

/** unserialize_config(): the saved array(array(name, type, value), ...) as name => value. */
function unserialize_config($cfg)
{
    $config = array();
    if (is_string($cfg) && ($arr = unserialize($cfg)) !== false) {
        foreach ($arr as $val) {
            $config[$val['name']] = $val['value'];
        }
    }
    return $config;
}

/** payment_info($pay_id): the enabled payment row. */
function payment_info($pay_id)
{
    $t = hdb_read();
    foreach ($t['payment'] as $p) {
        if ((string)$p['pay_id'] === (string)$pay_id && $p['enabled'] == 1) {
            return $p;
        }
    }
    return false;
}

/** insert_pay_log($id, $amount, $type, $is_paid): a new pay_log row; its log_id. */
function insert_pay_log($id, $amount, $type = PAY_SURPLUS, $is_paid = 0)
{
    return hdb_tx(function (&$t) use ($id, $amount, $type, $is_paid) {
        $log_id = $t['next_log_id']++;
        $t['pay_log'][$log_id] = array('log_id' => $log_id, 'order_id' => (int)$id,
            'order_amount' => number_format((float)$amount, 2, '.', ''), 'order_type' => $type, 'is_paid' => $is_paid);
        return $log_id;
    });
}

function order_action($order_sn, $order_status, $shipping_status, $pay_status, $note = '', $username = null)
{
    // RACE_WINDOW_MS: a busy MySQL's INSERT, so two notes written at once by a module meet.
    $window = (int)getenv('RACE_WINDOW_MS');
    if ($window > 0) {
        usleep($window * 1000);
    }
    hdb_tx(function (&$t) use ($order_sn, $order_status, $shipping_status, $pay_status, $note, $username) {
        foreach ($t['order_info'] as $o) {
            if ((string)$o['order_sn'] === (string)$order_sn) {
                $t['order_action'][] = array('order_id' => $o['order_id'], 'order_sn' => $order_sn, 'order_status' => $order_status,
                    'shipping_status' => $shipping_status, 'pay_status' => $pay_status,
                    'action_note' => harness_varchar(stripslashes((string)$note), 255), 'action_user' => $username);
            }
        }
    });
}

/** The first $n characters of $text in the shop's charset (UTF-8; GBK: a lead byte 0x81-0xFE takes the next). */
function harness_varchar($text, $n)
{
    $pattern = strtolower(EC_CHARSET) === 'gbk' ? '/[\x81-\xFE][\x40-\xFE]|[\x00-\xFF]/' : '/[\x00-\x7F]|[\xC0-\xFF][\x80-\xBF]*|[\x80-\xBF]/';
    preg_match_all($pattern, $text, $m);
    return implode('', array_slice($m[0], 0, $n));
}

/** lib_clips.php get_paylog_id($surplus_id, $pay_type): the order's unpaid pay_log row ('' when none). */
function get_paylog_id($surplus_id, $pay_type = PAY_SURPLUS)
{
    return $GLOBALS['db']->getOne('SELECT log_id FROM' . $GLOBALS['ecs']->table('pay_log') .
        " WHERE order_id = '$surplus_id' AND order_type = '$pay_type' AND is_paid = 0");
}

/**
 * lib_common.php log_account_change(): an account_log row (autoExecute() INSERT: the values go
 * into the SQL as given, so the caller escapes change_desc and MySQL unescapes it; user_id
 * mediumint and user_money decimal(10,2), where MySQL with sql_mode '' stores '' as 0; change_desc
 * varchar(255) keeps its first 255 characters), then `UPDATE users SET user_money = user_money +
 * … WHERE user_id = '$user_id'`, which changes no row for a user that is not there.
 */
function log_account_change($user_id, $user_money = 0, $frozen_money = 0, $rank_points = 0, $pay_points = 0, $change_desc = '', $change_type = 99)
{
    hdb_tx(function (&$t) use ($user_id, $user_money, $change_desc, $change_type) {
        $t['account_log'][] = array('user_id' => (int)$user_id, 'user_money' => number_format((float)$user_money, 2, '.', ''),
            'change_desc' => harness_varchar(stripslashes((string)$change_desc), 255), 'change_type' => $change_type);
        if (isset($t['users'][$user_id])) {
            $t['users'][$user_id]['user_money'] = number_format((float)$t['users'][$user_id]['user_money'] + (float)$user_money, 2, '.', '');
        }
    });
}

/**
 * lib_order.php pay_fee($payment_id, $order_amount, $cod_fee): the payment method's fee, a
 * number or a percentage of the amount (`$order_amount * $val / (1 - $val)`), rounded to fen.
 */
function pay_fee($payment_id, $order_amount, $cod_fee = null)
{
    $payment = payment_info($payment_id);
    $rate = ($payment['is_cod'] && !is_null($cod_fee)) ? $cod_fee : $payment['pay_fee'];
    if (strpos((string)$rate, '%') !== false) {
        $val = floatval($rate) / 100;
        $pay_fee = $val > 0 ? $order_amount * $val / (1 - $val) : 0;
    } else {
        $pay_fee = floatval($rate);
    }
    return round($pay_fee, 2);
}

/**
 * lib_clips.php del_user_account($rec_id, $user_id) (user.php act=cancel: the buyer cancels a
 * top-up): `DELETE FROM user_account WHERE is_paid = 0 AND id = '$rec_id' AND user_id =
 * '$user_id'`; its pay_log row stays.
 */
function del_user_account($rec_id, $user_id)
{
    return hdb_tx(function (&$t) use ($rec_id, $user_id) {
        if (isset($t['user_account'][$rec_id]) && $t['user_account'][$rec_id]['is_paid'] == 0
            && (string)$t['user_account'][$rec_id]['user_id'] === (string)$user_id) {
            unset($t['user_account'][$rec_id]);
        }
        return true;
    });
}

/** lib_order.php get_order_sn(): date('Ymd') and 5 random digits. */
function get_order_sn()
{
    return date('Ymd') . str_pad(mt_rand(1, 99999), 5, '0', STR_PAD_LEFT);
}

/**
 * lib_order.php merge_order($from_order_sn, $to_order_sn) (admin/order.php act=ajax_merge_order,
 * 合并订单): both orders must be unconfirmed or confirmed, unpaid and unshipped, of the same user;
 * a new order (to_order's row with a new order_id and order_sn from get_order_sn()) takes both
 * orders' goods (UPDATE order_goods SET order_id) and the sum of their amounts (the real one adds
 * up goods, discounts and fees; the harness orders have only order_amount), gets its own pay_log
 * row (insert_pay_log(…, PAY_ORDER)), then `DELETE FROM order_info` and `DELETE FROM pay_log
 * WHERE order_id IN (from, to)`: the old orders and their pay_log rows are gone. Returns true or
 * the refusal's text.
 */
function merge_order($from_order_sn, $to_order_sn)
{
    if (trim($from_order_sn) == '' || trim($to_order_sn) == '' || $from_order_sn == $to_order_sn) {
        return 'order_sn';
    }
    $t = hdb_read();
    $from = null;
    $to = null;
    foreach ($t['order_info'] as $o) {
        if ((string)$o['order_sn'] === (string)$from_order_sn) {
            $from = $o;
        }
        if ((string)$o['order_sn'] === (string)$to_order_sn) {
            $to = $o;
        }
    }
    if (!$from || !$to) {
        return 'order_not_exist';
    }
    foreach (array($from, $to) as $o) {
        $os = isset($o['order_status']) ? (int)$o['order_status'] : OS_UNCONFIRMED;
        $ss = isset($o['shipping_status']) ? (int)$o['shipping_status'] : 0;
        if (($os != OS_UNCONFIRMED && $os != OS_CONFIRMED) || $o['pay_status'] != PS_UNPAYED || $ss != 0) {
            return 'status';
        }
    }
    if ($from['user_id'] != $to['user_id']) {
        return 'order_user_not_same';
    }
    $order = $to;
    $order['order_amount'] = number_format((float)$to['order_amount'] + (float)$from['order_amount'], 2, '.', '');
    $order['order_sn'] = get_order_sn();
    $order_id = hdb_tx(function (&$t) use ($order, $from, $to) {
        $order_id = max(array_map('intval', array_keys($t['order_info']))) + 1;
        $order['order_id'] = $order_id;
        $t['order_info'][$order_id] = $order;
        foreach ($t['order_goods'] as $i => $og) {
            if ($og['order_id'] == $from['order_id'] || $og['order_id'] == $to['order_id']) {
                $t['order_goods'][$i]['order_id'] = $order_id;
            }
        }
        return $order_id;
    });
    insert_pay_log($order_id, $order['order_amount'], PAY_ORDER);
    hdb_tx(function (&$t) use ($from, $to) {
        foreach (array($from['order_id'], $to['order_id']) as $id) {
            unset($t['order_info'][$id]);
            foreach ($t['pay_log'] as $log_id => $row) {
                if ($row['order_id'] == $id) {
                    unset($t['pay_log'][$log_id]);
                }
            }
        }
    });
    return true;
}

/** lib_common.php get_virtual_goods($order_id, $shipping): extension_code => list of goods. */
function get_virtual_goods($order_id, $shipping = false)
{
    $t = hdb_read();
    $out = array();
    foreach ($t['order_goods'] as $og) {
        $code = isset($og['extension_code']) ? (string)$og['extension_code'] : '';
        if ((string)$og['order_id'] !== (string)$order_id || $code === '') {
            continue;
        }
        $sent = isset($og['send_number']) ? (int)$og['send_number'] : 0;
        $num = isset($og['goods_number']) ? (int)$og['goods_number'] : 1;
        if ($shipping) {
            $out[$code][] = array('goods_id' => $og['goods_id'], 'goods_name' => $og['goods_name'], 'num' => $sent);
        } elseif ((!isset($og['is_real']) || $og['is_real'] == 0) && $num - $sent > 0) {
            $out[$code][] = array('goods_id' => $og['goods_id'], 'goods_name' => $og['goods_name'], 'num' => $num - $sent);
        }
    }
    return $out;
}

/** lib_common.php virtual_goods_ship(): virtual_card_shipping() for each virtual card goods. */
function virtual_goods_ship(&$virtual_goods, &$msg, $order_sn, $return_result = false, $process = 'other')
{
    $virtual_card = array();
    foreach ($virtual_goods as $code => $goods_list) {
        if ($code == 'virtual_card') {
            foreach ($goods_list as $goods) {
                $shipped = hdb_tx(function (&$t) use ($goods, $order_sn) {
                    $free = array();
                    foreach (isset($t['virtual_card']) ? $t['virtual_card'] : array() as $i => $card) {
                        if ((string)$card['goods_id'] === (string)$goods['goods_id'] && $card['is_saled'] == 0) {
                            $free[] = $i;
                        }
                    }
                    if (count($free) < $goods['num']) {
                        return false;
                    }
                    foreach (array_slice($free, 0, $goods['num']) as $i) {
                        $t['virtual_card'][$i]['is_saled'] = 1;
                        $t['virtual_card'][$i]['order_sn'] = $order_sn;
                    }
                    foreach ($t['order_goods'] as $j => $og) {
                        if ((string)$og['goods_id'] === (string)$goods['goods_id'] && isset($t['order_info'][$og['order_id']])
                            && (string)$t['order_info'][$og['order_id']]['order_sn'] === (string)$order_sn) {
                            $t['order_goods'][$j]['send_number'] = (isset($og['send_number']) ? (int)$og['send_number'] : 0) + $goods['num'];
                        }
                    }
                    return true;
                });
                if (!$shipped) {
                    $msg .= $goods['goods_name'] . ' out of stock';
                    return false;
                }
                if ($return_result) {
                    $virtual_card[] = array('goods_id' => $goods['goods_id'], 'goods_name' => $goods['goods_name'],
                        'info' => virtual_card_result($order_sn, $goods));
                }
            }
            $GLOBALS['smarty']->assign('virtual_card', $virtual_card);
        }
    }
    return true;
}

/** lib_common.php virtual_card_result($order_sn, $goods): the cards of one goods sold to the order. */
function virtual_card_result($order_sn, $goods)
{
    $t = hdb_read();
    $cards = array();
    foreach (isset($t['virtual_card']) ? $t['virtual_card'] : array() as $card) {
        if ((string)$card['goods_id'] === (string)$goods['goods_id'] && (string)$card['order_sn'] === (string)$order_sn) {
            $cards[] = array('card_sn' => $card['card_sn'], 'card_password' => $card['card_password'],
                'end_date' => date('Y-m-d', (int)$card['end_date']));
        }
    }
    return $cards;
}
