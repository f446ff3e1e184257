<?php
/*
 * Harness of ecshop 2.7.3 `admin/payment.php`:
 *  - (admin/includes/init.php) the admin's language files languages/<lang>/admin/common.php and
 *    languages/<lang>/admin/payment.php are loaded for every act;
 *  - act=install&code=X: includes ../includes/modules/payment/X.php with $set_modules = true and
 *    lists the module's config fields with their language labels (what the install form shows;
 *    as JSON, test-only: the real page is the form below with the module's defaults);
 *  - act=edit&code=X (编辑): the enabled payment row (else the payment_not_available message); the
 *    module file included with $set_modules = true; the stored pay_config unserialize()d into
 *    name => value; for each item of the module's `config` array, in its order: desc =
 *    $_LANG[name_desc] or '', label = $_LANG[name], name, type, value = the stored value when one
 *    is stored under that name, else the module's default, and for a select or radiobox range =
 *    $_LANG[name_range]; pay_fee filled in from the module when missing; then
 *    admin/templates/payment_edit.htm (here templates/payment_edit.htm.php) is shown;
 *  - act=get_config&code=X (the first-run wizard's payment step, admin/templates/setting_first.htm,
 *    asks for it with Ajax): the module file included with $set_modules = true and, for each item
 *    of its `config`, a table row with the label and — only for type 'text' — <input
 *    name='cfg_value[]' type='text' value='…' /> or — only for 'select' — <select
 *    name='cfg_value[]'> with one <option value='key'> per $_LANG[name_range] entry (none
 *    selected); any other type gets no value control, while every item gets its hidden cfg_name[],
 *    cfg_type[] and cfg_lang[] after the row; answered with make_json_result($config):
 *    {"error":0,"message":"","content":…};
 *  - the save path, the form's own POST (`isset($_POST['Submit'])`: there is no act=insert or
 *    act=update), pay_id (empty when installing), pay_code, pay_name (empty: refused, "支付方式名称
 *    不能为空"; the name of another installed method: refused), pay_desc, pay_fee, is_cod and
 *    is_online (the install form's hidden fields), cfg_name[], cfg_type[], cfg_value[]: after init.php's
 *    addslashes_deep, each entry becomes array(name => trim, type => trim, value => trim), the list
 *    is serialize()d and written into the payment row inside a SQL string literal, so MySQL strips
 *    the backslashes again (emulated with stripslashes on the serialized text); the payment is
 *    enabled. Written for the tests; no ecshop code.
 */
define('IN_ECS', true);
require(dirname(dirname(__FILE__)) . '/includes/init.php');
require(ROOT_PATH . 'languages/' . $_CFG['lang'] . '/admin/common.php');
require(ROOT_PATH . 'languages/' . $_CFG['lang'] . '/admin/payment.php');

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
    // The install form's content as JSON (the real page is payment_edit.htm, as act=edit shows it):
    // its name, description, hidden is_cod / is_online, and config items.
    header('Content-Type: application/json');
    $json = json_encode(array('code' => $modules[0]['code'], 'name' => $_LANG[$modules[0]['code']],
        'desc' => $_LANG[$modules[0]['desc']], 'is_cod' => $modules[0]['is_cod'],
        'is_online' => $modules[0]['is_online'], 'fields' => $fields), JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE);
    echo $json;
} elseif ($act === 'get_config') {
    $code = $_REQUEST['code'];
    $set_modules = true;
    $modules = array();
    include_once(ROOT_PATH . 'includes/modules/payment/' . $code . '.php');
    $config = '<table>';
    foreach ($modules[0]['config'] as $item) {
        $config .= "<tr><td width=80><span class='label'>" . $_LANG[$item['name']] . '</span></td>';
        if ($item['type'] == 'text') {
            $config .= "<td><input name='cfg_value[]' type='text' value='" . $item['value'] . "' /></td>";
        } elseif ($item['type'] == 'select') {
            $config .= "<td><select name='cfg_value[]'>";
            foreach ($_LANG[$item['name'] . '_range'] as $index => $val) {
                $config .= "<option value='$index'>" . $val . '</option>';
            }
            $config .= '</select></td>';
        }
        $config .= '</tr>';
        $config .= "<input name='cfg_name[]' type='hidden' value='" . $item['name'] . "' />";
        $config .= "<input name='cfg_type[]' type='hidden' value='" . $item['type'] . "' />";
        $config .= "<input name='cfg_lang[]' type='hidden' value='' />";
    }
    $config .= '</table>';
    header('Content-Type: application/json');
    echo json_encode(array('error' => 0, 'message' => '', 'content' => $config), JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE);
} elseif ($act === 'edit') {
    if (!isset($_REQUEST['code'])) {
        die('invalid parameter');
    }
    $code = basename(trim($_REQUEST['code']));
    $t = hdb_read();
    if (!isset($t['payment'][$code]) || $t['payment'][$code]['enabled'] != 1) {
        die($_LANG['payment_not_available']);
    }
    $pay = $t['payment'][$code];
    $set_modules = true;
    $modules = array();
    include_once(ROOT_PATH . 'includes/modules/payment/' . $code . '.php');
    $data = $modules[0];
    if (is_string($pay['pay_config'])) {
        $stored = array();
        foreach (unserialize($pay['pay_config']) as $item) {
            $stored[$item['name']] = $item['value'];
        }
        $pay['pay_config'] = array();
        foreach ($data['config'] as $key => $item) {
            $name = $item['name'];
            $pay['pay_config'][$key] = array(
                'desc' => isset($_LANG[$name . '_desc']) ? $_LANG[$name . '_desc'] : '',
                'label' => $_LANG[$name],
                'name' => $name,
                'type' => $item['type'],
                'value' => isset($stored[$name]) ? $stored[$name] : $item['value'],
            );
            if ($item['type'] == 'select' || $item['type'] == 'radiobox') {
                $pay['pay_config'][$key]['range'] = $_LANG[$name . '_range'];
            }
        }
    }
    if (!isset($pay['pay_fee'])) {
        $pay['pay_fee'] = isset($data['pay_fee']) ? $data['pay_fee'] : 0;
    }
    header('Content-type: text/html; charset=' . EC_CHARSET);
    include(ROOT_PATH . 'admin/templates/payment_edit.htm.php');
} elseif (isset($_POST['Submit'])) {
    if (empty($_POST['pay_name'])) {
        exit($_LANG['payment_name'] . $_LANG['empty']);
    }
    $t = hdb_read();
    foreach ($t['payment'] as $other) {
        if ($other['pay_name'] === stripslashes($_POST['pay_name']) && $other['pay_code'] !== stripslashes($_POST['pay_code'])) {
            exit($_LANG['payment_name'] . $_LANG['repeat']);
        }
    }
    $pay_config = array();
    for ($i = 0; isset($_POST['cfg_value']) && $i < count($_POST['cfg_value']); $i++) {
        $pay_config[] = array('name' => trim($_POST['cfg_name'][$i]), 'type' => trim($_POST['cfg_type'][$i]),
            'value' => trim($_POST['cfg_value'][$i]));
    }
    $stored = stripslashes(serialize($pay_config));
    $code = stripslashes($_POST['pay_code']);
    // The form's name, description and fee; is_cod / is_online from an install's hidden fields
    // (an edit, or a method installed before, keeps the row's).
    $row = array(
        'pay_name' => stripslashes($_POST['pay_name']),
        'pay_desc' => isset($_POST['pay_desc']) ? stripslashes($_POST['pay_desc']) : '',
        'pay_fee' => empty($_POST['pay_fee']) ? 0 : stripslashes($_POST['pay_fee']),
        'is_cod' => isset($_POST['is_cod']) ? (int)$_POST['is_cod'] : 0,
        'is_online' => isset($_POST['is_online']) ? (int)$_POST['is_online'] : 0,
    );
    hdb_tx(function (&$t) use ($code, $stored, $row) {
        // An update keeps the row (and its pay_id) of an installed module.
        $old = isset($t['payment'][$code]) ? $t['payment'][$code] : null;
        $id = $old ? $old['pay_id'] : count($t['payment']) + 1;
        $t['payment'][$code] = array('pay_id' => $id, 'pay_code' => $code, 'pay_name' => $row['pay_name'],
            'pay_desc' => $row['pay_desc'], 'pay_fee' => $row['pay_fee'], 'pay_config' => $stored,
            'enabled' => 1, 'is_cod' => $old ? $old['is_cod'] : $row['is_cod'],
            'is_online' => $old ? $old['is_online'] : $row['is_online']);
    });
    echo 'ok';
} else {
    http_response_code(404);
}
