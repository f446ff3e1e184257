<?php
/*
 * Harness of ShopEx 4.8.5's shop front for paying: `core/shop/controller/ctl.paycenter.php`
 *  - act=order (order_id, payment): the method must be one the checkout offers (getMethods():
 *    enabled) and the order active (a dead or finished order: "订单状态锁定，不能支付！"), then
 *    _init(): the payment method (sdb_payment_cfg row), its pay_type as the model's type, then
 *    doPay() of what is owed (final_amount, or total_amount without one, less payed);
 *  - act=recharge (payment, money, member_id; 预存款充值): ctl.paycenter.php recharge(): _init() of
 *    the method, the payment's pay_type 'recharge', no order, the member_id posted and paycost 0
 *    (no fee), then doPay('recharge') (getPaymentInfo(): M_Method 'recharge', M_OrderNO the
 *    payment id);
 *  - a query routed as `core/kernel.php` parse() routes it (controller, then arguments, the method
 *    last unless the last segment is a number): ?member-<order_id>-orderdetail.html
 *    (`core/shop/controller/ctl.member.php` orderdetail()): the buyer's order page (here the order id
 *    and its pay_status, then, as member/orderdetail.html shows `$orderlogs` — getLogs() through
 *    alterOrderLog() — every line of the order's log, log_text as it is, unescaped; never the
 *    admin's remark, mark_text); ?member-deposit.html (deposit()): the member centre's 预存款充值 page; any
 *    other member-… (index(), e.g. member-orderdetail-<id>.html, whose numeric last segment makes
 *    `orderdetail` an argument): the member centre's index;
 *  - act=result (payment_id): the result page (`core/shop/view/paycenter/result.html`): succ
 *    "支付成功", progress "支付成功 … 已经收到付款，请等待发货", failed/error/cancel/timeout "支付失败",
 *    ready "请稍候 支付过程尚未开始".
 * Written for the tests; no ShopEx code.
 */
define('PHP_SELF', $_SERVER['PHP_SELF']);
require(dirname(__FILE__) . '/config/config.php');
define('CORE_INCLUDE_DIR', CORE_DIR . '/include_v5');
require(CORE_INCLUDE_DIR . '/shopCore.php');
require_once(CORE_DIR . '/model_v5/trading/mdl.payment.php');
$system = new shopCore();
$req = array_merge($_GET, $_POST);
/* kernel::parse(): `ctl-arg…-act.ext`; the last segment is the method unless it is a number. */
function harness_parse($query)
{
    if ($pos = strpos($query, '.')) {
        $query = substr($query, 0, $pos);
    }
    $args = explode('-', str_replace('~', '-', $query));
    $act = 'index';
    $ctl = array_shift($args);
    if ($ctl && $ctl != 'index') {
        $c = count($args);
        if ($c > 0 && !is_numeric($args[$c - 1])) {
            $act = array_pop($args);
        }
    }
    return array($ctl, $act, $args);
}
$route = harness_parse(isset($_SERVER['QUERY_STRING']) ? $_SERVER['QUERY_STRING'] : '');
if ($route[0] === 'member') {
    header('Content-Type: text/html; charset=utf-8');
    if ($route[1] === 'orderdetail' && isset($route[2][0])) {
        // ctl.member.php orderdetail($order_id): the order page.
        $t = hdb_read();
        $logs = '';
        foreach (isset($t['order_log']) ? $t['order_log'] : array() as $log) {
            if ((string)$log['order_id'] === (string)$route[2][0]) {
                $logs .= '<li><span class="date">' . date('Y-m-d H:i', $log['acttime']) . '</span>&nbsp;&nbsp;&nbsp;&nbsp;'
                    . $log['log_text'] . '</li>';
            }
        }
        exit('<div id="orderdetail">' . $route[2][0] . ' pay_status=' . $t['orders'][$route[2][0]]['pay_status'] . '</div>'
            . '<div class="note"><ol id="orderlogs">' . $logs . '</ol></div>');
    }
    if ($route[1] === 'deposit') {
        // ctl.member.php deposit(): the top-up page.
        exit('<div id="deposit">预存款充值</div>');
    }
    // ctl.member.php index() (an unknown method, or one taken for an argument).
    exit('<div id="member-index">会员中心</div>');
}
if (isset($req['act']) && $req['act'] === 'recharge') {
    $oPay = $system->loadModel('trading/payment');
    $cfg = $oPay->getPaymentById($req['payment']);
    $oPay->type = $cfg['pay_type'];
    $oPay->payment = $cfg['id'];
    $oPay->pay_type = 'recharge';
    $oPay->order_id = null;
    // 会员id采用传入的方式: the member to credit is the posted member_id; no fee configured
    // (config method neither 1 nor 2), so paycost 0 and the money as posted.
    $oPay->member_id = isset($req['member_id']) ? $req['member_id'] : null;
    $oPay->paycost = 0;
    $oPay->money = $req['money'];
    $oPay->doPay('recharge');
}
if (isset($req['act']) && $req['act'] === 'order') {
    $oPay = $system->loadModel('trading/payment');
    $cfg = $oPay->getPaymentById($req['payment']);
    $offered = false;
    foreach ($oPay->getMethods() as $row) {
        $offered = $offered || (string)$row['id'] === (string)$cfg['id'];
    }
    if (!$offered) {
        // The checkout lists getMethods() only: a disabled method cannot be chosen.
        header('Content-Type: text/html; charset=utf-8');
        exit('<div id="result">支付失败：请选择支付方式！</div>');
    }
    $t = hdb_read();
    $order = $t['orders'][$req['order_id']];
    if (isset($order['status']) && $order['status'] !== 'active') {
        // ctl.paycenter.php order(): a cancelled or finished order is not paid.
        header('Content-Type: text/html; charset=utf-8');
        exit('<div id="result">订单状态锁定，不能支付！</div>');
    }
    $oPay->type = $cfg['pay_type'];
    $oPay->payment = $cfg['id'];
    $oPay->order_id = $order['order_id'];
    // ctl.paycenter.php order(): what is still owed (final_amount - payed).
    $final = isset($order['final_amount']) ? $order['final_amount'] : $order['total_amount'];
    $payed = isset($order['payed']) ? (float)$order['payed'] : 0.0;
    $oPay->money = $payed > 0 ? number_format((float)$final - $payed, 3, '.', '') : $final;
    $oPay->doPay('', $order['order_id']);
} elseif (isset($req['act']) && $req['act'] === 'result') {
    $p = $system->loadModel('trading/payment')->getById($req['payment_id']);
    $texts = array('succ' => '支付成功', 'progress' => '支付成功 已经收到付款，请等待发货', 'failed' => '支付失败',
        'error' => '支付失败 支付过程发生错误', 'cancel' => '支付失败', 'timeout' => '支付失败', 'ready' => '请稍候 支付过程尚未开始');
    header('Content-Type: text/html; charset=utf-8');
    echo '<div id="result">' . $texts[$p['status']] . '</div>';
}
