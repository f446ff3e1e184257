<?php
/* Harness of ShopEx 4.8.5 `config/config.php`: the directories (the database is the harness's JSON file, SHOP_DB). */
define('BASE_DIR', dirname(dirname(__FILE__)));
define('CORE_DIR', BASE_DIR . '/core');
define('PLUGIN_DIR', BASE_DIR . '/plugins');
define('HOME_DIR', BASE_DIR . '/home');
