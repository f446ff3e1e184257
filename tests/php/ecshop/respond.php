<?php
// respond.php?code=payhost_alipay: the landing point of the return and of payhost's webhook.
require __DIR__ . '/lib.php';
if (($_GET['code'] ?? '') !== 'payhost_alipay') { http_response_code(404); exit('unknown code'); }
load_module();
$module = new payhost_alipay();
$ok = $module->respond();
$s = state_load();
$s['responds'][] = array('method' => $_SERVER['REQUEST_METHOD'], 'ok' => $ok);
state_save($s);
echo $ok ? '支付成功' : '支付失败';
