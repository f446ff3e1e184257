<?php
/*
 * Harness of ecshop 2.7.3 `respond.php`: the landing page of payment returns and notifies. The
 * module named by ?code= must be an enabled payment; it is included from
 * includes/modules/payment/<code>.php and `$msg = (@$payment->respond()) ? pay_success : pay_fail`;
 * the message is shown in the respond.dwt page, always with HTTP 200 (whatever respond() decided),
 * followed, when order_paid() assigned `virtual_card`, by respond.dwt's table of the cards (goods
 * name, $lang.card_sn, $lang.card_password, $lang.end_date). Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(__FILE__) . '/includes/init.php');
require(ROOT_PATH . 'includes/lib_payment.php');
require(ROOT_PATH . 'includes/lib_order.php');

$pay_code = !empty($_REQUEST['code']) ? trim($_REQUEST['code']) : '';
if (empty($pay_code)) {
    $msg = $_LANG['pay_not_exist'];
} elseif (!get_payment($pay_code)) {
    $msg = $_LANG['pay_disabled'];
} else {
    $plugin_file = 'includes/modules/payment/' . $pay_code . '.php';
    if (file_exists($plugin_file)) {
        include_once($plugin_file);
        $payment = new $pay_code();
        $msg = (@$payment->respond()) ? $_LANG['pay_success'] : $_LANG['pay_fail'];
    } else {
        $msg = $_LANG['pay_not_exist'];
    }
}
header('Content-type: text/html; charset=' . EC_CHARSET);
$cards = '';
if (!empty($smarty->_var['virtual_card'])) {
    $cards = '<table id="virtual_card">';
    foreach ($smarty->_var['virtual_card'] as $vgoods) {
        foreach ($vgoods['info'] as $card) {
            $cards .= '<tr><td>' . $vgoods['goods_name'] . '</td><td><strong>' . $_LANG['card_sn'] . ':</strong>' . $card['card_sn']
                . '<strong>' . $_LANG['card_password'] . ':</strong>' . $card['card_password']
                . '<strong>' . $_LANG['end_date'] . ':</strong>' . $card['end_date'] . '</td></tr>';
        }
    }
    $cards .= '</table>';
}
echo '<html><head><meta http-equiv="Content-Type" content="text/html; charset=' . EC_CHARSET . '" /></head><body>'
    . '<div id="message">' . $msg . '</div>' . $cards . '</body></html>';
