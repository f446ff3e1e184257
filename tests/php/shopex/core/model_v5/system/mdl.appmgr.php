<?php
/*
 * Harness of ShopEx 4.8.5 `core/model_v5/system/mdl.appmgr.php` (class mdl_appmgr):
 *  - load($ident): the app's sdb_plugins row (plugin_type app); without one, false; with one, an
 *    instance of its app.<ident>.php class (addons->plugin_instance());
 *  - install($ident): `$app = $this->load($ident)`, then — unless a download is under way —
 *    `$app->install()` (lines 240-246): for an app that refresh() never saw, that is a method
 *    call on false, and the request dies with a fatal error; then status 'used' and enable().
 * Written for the tests from the model's behaviour; no ShopEx code.
 */
class mdl_appmgr
{
    function load($ident)
    {
        $t = hdb_read();
        if (!isset($t['plugins'][$ident]) || $t['plugins'][$ident]['plugin_type'] !== 'app') {
            return false;
        }
        if (!class_exists('app')) {
            require_once(CORE_INCLUDE_DIR . '/app.php');
        }
        require_once(PLUGIN_DIR . $t['plugins'][$ident]['plugin_path']);
        $class = 'app_' . $ident;
        $app = new $class();
        $app->plugin_id = $t['plugins'][$ident]['plugin_id'];
        return $app;
    }

    function install($ident, $is_update = false)
    {
        $app = $this->load($ident);
        if (!$app && !empty($_GET['download'])) {
            echo '安装出错,请检查网络环境,或重新安装';
            exit;
        }
        $result = $app->install();
        if ($result) {
            hdb_tx(function (&$t) use ($ident) { $t['plugins'][$ident]['status'] = 'used'; });
            return true;
        }
        return false;
    }

    function getAppName($ident)
    {
        $app = $this->load($ident);
        return array('plugin_name' => $app->name);
    }
}
