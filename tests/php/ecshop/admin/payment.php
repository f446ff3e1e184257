<?php
/*
 * Harness of ecshop 2.7.3 `admin/payment.php`:
 *  - act=install&code=X: includes ../includes/modules/payment/X.php with $set_modules = true and
 *    lists the module's config fields with their language labels (what the install form shows);
 *  - act=insert / act=update (POST pay_code, pay_name, cfg_name[], cfg_type[], cfg_value[]): after init.php's
 *    addslashes_deep, each entry becomes array(name => trim, type => trim, value => trim), the list
 *    is serialize()d and written into the payment row inside a SQL string literal, so MySQL strips
 *    the backslashes again (emulated with stripslashes on the serialized text); the payment is
 *    enabled. Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(dirname(__FILE__)) . '/includes/init.php');

$act = isset($_REQUEST['act']) ? $_REQUEST['act'] : '';
if ($act === 'install') {
    $code = basename($_GET['code']);
    $set_modules = true;
    $modules = array();
    include_once(ROOT_PATH . 'includes/modules/payment/' . $code . '.php');
    $fields = array();
    foreach ($modules[0]['config'] as $c) {
        $fields[] = array('name' => $c['name'], 'type' => $c['type'], 'value' => $c['value'],
            'label' => isset($_LANG[$c['name']]) ? $_LANG[$c['name']] : null,
            'desc' => isset($_LANG[$c['name'] . '_desc']) ? $_LANG[$c['name'] . '_desc'] : null,
            'range' => isset($_LANG[$c['name'] . '_range']) ? $_LANG[$c['name'] . '_range'] : null);
    }
    header('Content-Type: application/json');
    $json = json_encode(array('code' => $modules[0]['code'], 'name' => $_LANG[$modules[0]['code']],
        'desc' => $_LANG[$modules[0]['desc']], 'fields' => $fields), JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE);
    echo $json;
} elseif ($act === 'insert' || $act === 'update') {
    $pay_config = array();
    for ($i = 0; $i < count($_POST['cfg_value']); $i++) {
        $pay_config[] = array('name' => trim($_POST['cfg_name'][$i]), 'type' => trim($_POST['cfg_type'][$i]),
            'value' => trim($_POST['cfg_value'][$i]));
    }
    $stored = stripslashes(serialize($pay_config));
    $code = stripslashes($_POST['pay_code']);
    hdb_tx(function (&$t) use ($code, $stored) {
        // act=update keeps the row (and its pay_id) of an installed module.
        $id = isset($t['payment'][$code]) ? $t['payment'][$code]['pay_id'] : count($t['payment']) + 1;
        $t['payment'][$code] = array('pay_id' => $id, 'pay_code' => $code, 'pay_name' => $code,
            'pay_config' => $stored, 'enabled' => 1, 'is_online' => 1);
    });
    echo 'ok';
} else {
    http_response_code(404);
}
