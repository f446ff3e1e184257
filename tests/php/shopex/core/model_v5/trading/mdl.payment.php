<?php
/*
 * Harness of ShopEx 4.8.5 `core/model_v5/trading/mdl.payment.php` (class mdl_payment), with the
 * behaviour of rev 55324:
 *  - the PAY_* result codes (PAY_FAILED -1, PAY_TIMEOUT 0, PAY_SUCCESS 1, PAY_CANCEL 2, PAY_ERROR 3,
 *    PAY_PROGRESS 4, PAY_INVALID 5);
 *  - loadMethod($ident): only plugins/app/pay_<ident>/pay_<ident>.php, `new pay_<ident>($system)`
 *    (nothing else is looked at: a file in plugins/payment/ is never loaded);
 *  - getById($paymentId): `SELECT * FROM sdb_payments WHERE payment_id='$paymentId'`, the id
 *    put into the SQL unescaped (getConf() of a plugin calls it with whatever id it is given);
 *    the harness records every id that is not plain digits in `unsafe_sql` (a real MySQL would
 *    run the injected SQL);
 *  - doPay(): `$pay_vars = get_object_vars($payObj); $this->cur_trading =
 *    $pay_vars['cur_trading'];` (a PHP message for a plugin without that property), toCreate() a
 *    payment (status ready), `$payObj->_payment = $this->payment`,
 *    `$toSubmit = $payObj->toSubmit($this->getPaymentInfo())`, then an auto-submitting
 *    <form action="$payObj->submitUrl" method="$payObj->method"> with one hidden input per returned
 *    entry (name urldecode()d, value htmlspecialchars()) — an error array returned by toSubmit()
 *    becomes hidden fields too; the page is returned to the controller, which displays it
 *    (shopCore::display(): `$this->_succ = true`); here echoed, and the request ends;
 *  - setPayStatus($paymentId, $status, &$info): E_USER_ERROR without a payment; true at once when
 *    it is already succ; otherwise the new status is written with
 *    `UPDATE ... WHERE payment_id = .. AND status != 'succ'` and onSuccess() (order payed()) runs only
 *    when that changed one row — the platform's own "paid once" guard. RACE_WINDOW_MS widens the gap
 *    between the read and the update, PAYED_WINDOW_MS the gap between the update and onSuccess()
 *    (two statements, no transaction: a concurrent caller reads the payment succ and the order
 *    unpaid in it);
 *  - onSuccess($info): an order's payment → mdl_order::payed(); a top-up (pay_type recharge) →
 *    mdl_advance::add() of the member (money less paycost; no escrow, pay_assure), which fails
 *    when the member's row is gone (checkAccount()) and otherwise writes an sdb_advance_logs row
 *    with the payment_id (log());
 *  - toCreate(): the row also holds member_id, paycost and paymethod (the method's custom_name),
 *    as toCreate() inserts the model's properties;
 *  - getAllMethods(): every sdb_payment_cfg row, enabled or not;
 *  - progress(): setPayStatus(), then the auto-posting form to the payment centre's result page;
 *  - updatePay(): the plugin's getfields(); for each field, `if ($aData[$key] <> '')` the
 *    submitted value trim()med, else the value saved before (`$d_config[$key]`): a field
 *    submitted empty keeps its old value, it is never cleared; serialize()d into
 *    sdb_payment_cfg.config. With the id of a saved method its row is updated and `disabled` is
 *    left as it is (an installed app stays disabled); without one (the form editPayment() shows
 *    for no saved method, what 支付方式's 添加 button opens) a new row is inserted with the posted
 *    columns (custom_name, pay_type, config, …), and `disabled`, not posted, takes the column's
 *    default 'false' (core/schemas/payment_cfg.php): the new method is offered at once;
 *  - startApp($id): `update sdb_payment_cfg set disabled='false'`; disApp($id): 'true';
 *    getMethods(): the methods with disabled = 'false' (what the checkout offers);
 *  - getOrderBillList($orderid): `SELECT * FROM sdb_payments WHERE order_id = '.$orderid` (the id
 *    unescaped, recorded in `unsafe_sql` unless plain digits): every payment of the order, of any
 *    method and status;
 *  - getPaymentInfo($method): M_OrderId the payment id; M_OrderNO the order id, or for a deposit
 *    top-up (ctl.paycenter.php recharge() → doPay('recharge')) the payment id; M_Method $method.
 * Written for the tests from the model's behaviour; no ShopEx code.
 */
define('PAY_FAILED', -1);
define('PAY_TIMEOUT', 0);
define('PAY_SUCCESS', 1);
define('PAY_CANCEL', 2);
define('PAY_ERROR', 3);
define('PAY_PROGRESS', 4);
define('PAY_INVALID', 5);

class mdl_payment
{
    var $system;
    var $payment;
    var $type;
    var $money;
    var $order_id;
    var $currency = 'CNY';
    var $pay_type = 'online';
    var $member_id;
    var $paycost = 0;
    var $cur_trading;

    function __construct(&$system) { $this->system = &$system; }

    function loadMethod($payPlugin)
    {
        if (file_exists(PLUGIN_DIR . '/app/pay_' . $payPlugin . '/pay_' . $payPlugin . '.php')) {
            require_once(PLUGIN_DIR . '/app/pay_' . $payPlugin . '/pay_' . $payPlugin . '.php');
            $className = 'pay_' . $payPlugin;
            return new $className($this->system);
        }
        return null;
    }

    function getById($paymentId)
    {
        if (!preg_match('/^[0-9]+$/', (string)$paymentId)) {
            $sql = "SELECT * FROM sdb_payments WHERE payment_id='" . $paymentId . "'";
            hdb_tx(function (&$t) use ($sql) { $t['unsafe_sql'][] = $sql; });
        }
        $t = hdb_read();
        return isset($t['payments'][(string)$paymentId]) ? $t['payments'][(string)$paymentId] : false;
    }

    function getOrderBillList($orderid)
    {
        if (!preg_match('/^[0-9]+$/', (string)$orderid)) {
            $sql = 'SELECT * FROM sdb_payments WHERE order_id = ' . $orderid;
            hdb_tx(function (&$t) use ($sql) { $t['unsafe_sql'][] = $sql; });
        }
        $t = hdb_read();
        $rows = array();
        foreach (isset($t['payments']) ? $t['payments'] : array() as $row) {
            if ((string)$row['order_id'] === (string)$orderid) {
                $rows[] = $row;
            }
        }
        return $rows;
    }

    function getPaymentById($id)
    {
        $t = hdb_read();
        return isset($t['payment_cfg'][(string)intval($id)]) ? $t['payment_cfg'][(string)intval($id)] : false;
    }

    function setPayStatus($paymentId, $status, &$payInfo)
    {
        if (!$paymentId) {
            trigger_error('单据号传递出错', E_USER_ERROR);
        }
        $aPayInfo = $this->getById($paymentId);
        if (!$aPayInfo) {
            trigger_error('支付记录不存在，可能参数传递出错', E_USER_ERROR);
        }
        if ($aPayInfo['status'] == 'succ') {
            return true;
        }
        if ($aPayInfo['status'] == 'progress' && $status == PAY_PROGRESS) {
            return true;
        }
        switch ($status) {
            case PAY_FAILED: $payInfo['status'] = 'failed'; break;
            case PAY_TIMEOUT: $payInfo['status'] = 'timeout'; break;
            case PAY_PROGRESS: $aPayInfo['pay_assure'] = true; $payInfo['status'] = 'progress'; break;
            case PAY_SUCCESS: $payInfo['status'] = 'succ'; break;
            case PAY_CANCEL: $payInfo['status'] = 'cancel'; break;
            case PAY_ERROR: $payInfo['status'] = 'error'; break;
        }
        $payInfo['t_end'] = time();
        $window = (int)getenv('RACE_WINDOW_MS');
        if ($window > 0) {
            usleep($window * 1000);
        }
        $info = $payInfo;
        $affected = hdb_tx(function (&$t) use ($paymentId, $info) {
            if (!empty($t['db_down'])) {
                return false;
            }
            $row = &$t['payments'][(string)$paymentId];
            if ($row['status'] === 'succ') {
                return 0;
            }
            if (array_key_exists('money', $info) && $info['money'] === null) {
                // db_get_update_sql() writes `money`=null, and sdb_payments.money is NOT NULL
                // (core/schemas/payments.php 'required'): a strict MySQL refuses the UPDATE.
                return false;
            }
            foreach ($info as $k => $v) {
                if ($v !== null) {
                    $row[$k] = $v;
                }
            }
            return 1;
        });
        if ($affected === 1) {
            if ($status == PAY_PROGRESS || $status == PAY_SUCCESS) {
                $gap = (int)getenv('PAYED_WINDOW_MS');
                if ($gap > 0) {
                    usleep($gap * 1000);
                }
                if (!$this->onSuccess($aPayInfo, $payInfo['memo'])) {
                    return false;
                }
            }
            return true;
        }
        return false;
    }

    function onSuccess($info, &$message)
    {
        if ($info['pay_type'] == 'recharge') {
            // A top-up: the member's deposit (CNY, the default currency: no rate), less the fee.
            $info['money'] = number_format((float)$info['money'] - (float)(isset($info['paycost']) ? $info['paycost'] : 0), 3, '.', '');
            $message .= '预存款充值：支付单号{' . $info['payment_id'] . '}';
            $advance = $this->system->loadModel('member/advance');
            if (empty($info['pay_assure'])) {
                return $advance->add(isset($info['member_id']) ? $info['member_id'] : null, $info['money'], $message, $message,
                    $info['payment_id'], '', isset($info['paymethod']) ? $info['paymethod'] : '', '在线充值');
            }
            return true;
        }
        $order = $this->system->loadModel('trading/order');
        return $order->payed($info, $message);
    }

    /** getAllMethods(): every payment method, enabled or not (`SELECT * FROM sdb_payment_cfg`). */
    function getAllMethods($type = '')
    {
        $t = hdb_read();
        return array_values(isset($t['payment_cfg']) ? (array)$t['payment_cfg'] : array());
    }

    function progress($paymentId, $status, $info)
    {
        $base_url = $this->system->base_url();
        $base_url = substr(substr($base_url, 0, strrpos($base_url, '/')), 0, strrpos(substr($base_url, 0, strrpos($base_url, '/')), '/')) . '/';
        $url = $base_url . 'index.php?ctl=paycenter&act=result';
        $this->setPayStatus($paymentId, $status, $info);
        echo '<html><head></head><body>Redirecting...<form id="payment" action="' . $url . '" method="post">'
            . '<input type="hidden" name="payment_id" value="' . $paymentId . '"></form>'
            . '<script language="javascript">document.getElementById(\'payment\').submit();</script></html>';
    }

    function toCreate()
    {
        $payment_id = time() . str_pad(rand(1, 9999), 4, '0', STR_PAD_LEFT);
        $cfg = $this->getPaymentById($this->payment);
        $row = array('payment_id' => $payment_id, 'order_id' => $this->order_id, 'member_id' => $this->member_id,
            'money' => $this->money, 'cur_money' => $this->money, 'currency' => $this->currency, 'payment' => $this->payment,
            'paycost' => number_format((float)$this->paycost, 3, '.', ''), 'paymethod' => $cfg ? $cfg['custom_name'] : '',
            'pay_type' => $this->pay_type, 'status' => 'ready', 'memo' => '');
        hdb_tx(function (&$t) use ($row) { $t['payments'][$row['payment_id']] = $row; });
        $this->payment_id = $payment_id;
        return $payment_id;
    }

    function getPaymentInfo($method = '')
    {
        $t = hdb_read();
        $p = $t['payments'][$this->payment_id];
        return array('M_OrderId' => $p['payment_id'], 'M_OrderNO' => $method == 'recharge' ? $p['payment_id'] : $p['order_id'],
            'M_Amount' => $p['money'], 'M_Def_Amount' => $p['money'], 'M_Currency' => 'CNY', 'M_Remark' => '',
            'M_Time' => time(), 'M_Language' => 'zh_CN', 'M_Method' => $method);
    }

    function doPay($method = '', $order_id = null)
    {
        $payObj = $this->loadMethod($this->type);
        $pay_vars = get_object_vars($payObj);
        $this->cur_trading = $pay_vars['cur_trading'];
        if ($this->toCreate()) {
            if ($payObj->head_charset) {
                header('Content-Type: text/html;charset=' . $payObj->head_charset);
            }
            $html = '<!DOCTYPE html><html><head></head><body><div>Redirecting...</div>';
            $payObj->_payment = $this->payment;
            $toSubmit = $payObj->toSubmit($this->getPaymentInfo($method));
            $html .= '<form id="payment" action="' . $payObj->submitUrl . '" method="' . $payObj->method . '">';
            foreach ($toSubmit as $k => $v) {
                if ($k <> 'ikey') {
                    $html .= '<input name="' . urldecode($k) . '" type="hidden" value="' . htmlspecialchars($v) . '" />';
                }
            }
            $html .= '</form><script language="javascript">document.getElementById(\'payment\').submit();</script></html>';
        } else {
            $html = '<html><script language="javascript">alert(\'创建支付流水号错误！\');</script></html>';
        }
        $this->system->_succ = true;
        echo $html;
        exit;
    }

    function startApp($id)
    {
        $id = (string)intval($id);
        return hdb_tx(function (&$t) use ($id) {
            if (!isset($t['payment_cfg'][$id])) {
                return false;
            }
            $t['payment_cfg'][$id]['disabled'] = 'false';
            return true;
        });
    }

    function disApp($id)
    {
        $id = (string)intval($id);
        return hdb_tx(function (&$t) use ($id) {
            if (!isset($t['payment_cfg'][$id])) {
                return false;
            }
            $t['payment_cfg'][$id]['disabled'] = 'true';
            return true;
        });
    }

    /** getMethods(): the payment methods a buyer may choose (disabled = 'false'). */
    function getMethods()
    {
        $t = hdb_read();
        $list = array();
        foreach ($t['payment_cfg'] as $row) {
            if ($row['disabled'] === 'false') {
                $list[] = $row;
            }
        }
        return $list;
    }

    function updatePay($aData, &$msg)
    {
        $obj = $this->loadMethod($aData['pay_type']);
        $t = hdb_read();
        $id = (string)intval(isset($aData['id']) ? $aData['id'] : '');
        $d_config = isset($t['payment_cfg'][$id]['config']) && $t['payment_cfg'][$id]['config'] !== ''
            ? unserialize($t['payment_cfg'][$id]['config']) : array();
        $aTemp = array();
        foreach ($obj->getfields() as $key => $val) {
            if (isset($aData[$key]) && $aData[$key] <> '') {
                $aTemp[$key] = trim($aData[$key]);
            } else {
                $aTemp[$key] = isset($d_config[$key]) ? trim($d_config[$key]) : '';
            }
        }
        $aTemp['method'] = isset($aData['paymethod']) ? $aData['paymethod'] : '';
        $config = serialize($aTemp);
        $name = isset($aData['custom_name']) ? (string)$aData['custom_name'] : '';
        $type = (string)$aData['pay_type'];
        hdb_tx(function (&$t) use ($id, $config, $name, $type) {
            if (isset($t['payment_cfg'][$id])) {
                $t['payment_cfg'][$id]['config'] = $config;
                return;
            }
            // INSERT (no saved method of that id): the posted id, or without one (NULL) the next
            // auto_increment id; disabled's default 'false'.
            $next = (int)$id;
            if ($next < 1) {
                $next = 1;
                foreach ($t['payment_cfg'] as $row) {
                    $next = max($next, (int)$row['id'] + 1);
                }
            }
            $t['payment_cfg'][(string)$next] = array('id' => $next, 'custom_name' => $name, 'pay_type' => $type,
                'disabled' => 'false', 'config' => $config);
        });
        $msg = '保存成功！';
        return true;
    }
}
