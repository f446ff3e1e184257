<?php
/* Harness of ShopEx 4.8.5 `config/config.php`: the directories, and the database's name and table
   prefix (DB_NAME: SHOP_DB_NAME or 'shopex'; DB_PREFIX 'sdb_', the installer's default; the data
   itself is the harness's JSON file, SHOP_DB). */
define('BASE_DIR', dirname(dirname(__FILE__)));
define('CORE_DIR', BASE_DIR . '/core');
define('PLUGIN_DIR', BASE_DIR . '/plugins');
define('HOME_DIR', BASE_DIR . '/home');
define('DB_NAME', getenv('SHOP_DB_NAME') ? getenv('SHOP_DB_NAME') : 'shopex');
define('DB_PREFIX', 'sdb_');
