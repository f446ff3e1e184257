<?php
require __DIR__ . '/lib.php';
$plugin = plugin();
$paymentId = $money = $message = $tradeno = null;
$code = $plugin->callback($_GET, $paymentId, $money, $message, $tradeno);
settle('callback', $code, $paymentId, $money);
echo $code === PAY_SUCCESS ? 'PAY_SUCCESS' : ($code === PAY_PROGRESS ? 'PAY_PROGRESS' : 'PAY_ERROR');
