<?php
/*
 * Harness of ecshop 2.7.3 `mobile/includes/init.php` (the bootstrap of the mobile/ pages):
 * ECS_WAP is defined, ROOT_PATH is the shop root (the file's path without
 * 'mobile/includes/init.php'), the include path is '.' then ROOT_PATH (so the pages' relative
 * include_once('includes/modules/payment/<code>.php') finds the shop's modules), and the rest is
 * the front end's bootstrap (here the harness of includes/init.php; PHP_SELF is
 * /mobile/<page>.php, so $ecs->url() ends in mobile/). Written for the tests; no ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}
define('ECS_WAP', true);
define('ROOT_PATH', str_replace('mobile/includes/init.php', '', str_replace('\\', '/', __FILE__)));
@ini_set('include_path', '.' . PATH_SEPARATOR . ROOT_PATH);
require(ROOT_PATH . 'includes/init.php');
