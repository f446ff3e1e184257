<?php
/*
 * Harness of ecshop 2.7.3 `admin/index.php` act=second (the first-run wizard's save, after
 * setting_first.htm): the chosen payment ($_POST['payment']) and, when cfg_value[] was posted, for
 * each index $i of cfg_value[] array(name => trim(cfg_name[$i]), type => trim(cfg_type[$i]),
 * value => trim(cfg_value[$i])) — the values are paired with the names by position — serialize()d
 * into the payment row (UPDATE of an installed one, else INSERT with the module's name and
 * description), enabled = 1. The wizard's other settings (shop name, region, shipping, goods) are
 * left out. Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(dirname(__FILE__)) . '/includes/init.php');

if (isset($_REQUEST['act']) && $_REQUEST['act'] === 'second' && !empty($_POST['payment'])) {
    $pay_config = array();
    if (isset($_REQUEST['cfg_value']) && is_array($_REQUEST['cfg_value'])) {
        for ($i = 0; $i < count($_POST['cfg_value']); $i++) {
            $pay_config[] = array('name' => trim($_POST['cfg_name'][$i]), 'type' => trim($_POST['cfg_type'][$i]),
                'value' => trim($_POST['cfg_value'][$i]));
        }
    }
    // In a SQL string literal: MySQL strips init.php's backslashes again.
    $stored = stripslashes(serialize($pay_config));
    $code = stripslashes($_POST['payment']);
    hdb_tx(function (&$t) use ($code, $stored) {
        $id = isset($t['payment'][$code]) ? $t['payment'][$code]['pay_id'] : count($t['payment']) + 1;
        $t['payment'][$code] = array('pay_id' => $id, 'pay_code' => $code, 'pay_name' => $code, 'pay_desc' => '',
            'pay_fee' => 0, 'pay_config' => $stored, 'enabled' => 1, 'is_cod' => 0, 'is_online' => 1);
    });
    echo 'ok';
} else {
    http_response_code(404);
}
