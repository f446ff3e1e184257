<?php
require __DIR__ . '/lib.php';
$plugin = plugin();
$paymentId = $money = $message = null;
$code = $plugin->serverCallback($_POST, $paymentId, $money, $message);
settle('server', $code, $paymentId, $money);
if ($code !== PAY_SUCCESS && $code !== PAY_PROGRESS) { http_response_code(400); }
echo $code === PAY_SUCCESS ? 'PAY_SUCCESS' : 'PAY_ERROR';
