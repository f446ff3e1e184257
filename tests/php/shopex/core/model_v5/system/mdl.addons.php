<?php
/*
 * Harness of ShopEx 4.8.5 `core/model_v5/system/mdl.addons.php` (class mdl_addons), refresh()
 * (admin 工具 → 插件 → 刷新插件数据库, index.php?ctl=system/addon&act=refresh): _read_dir() walks
 * PLUGIN_DIR; a folder <x> holding app.<x>.php is an app (_is_app_plugin: plugin_ident <x>,
 * plugin_type app, plugin_path /app/<x>/app.<x>.php, its class's properties as plugin_*), written
 * into sdb_plugins (_to_database); rows whose files are gone are deleted. Until this runs, a
 * copied app has no sdb_plugins row. Here only plugins/app/ is walked. Written for the tests from
 * the model's behaviour; no ShopEx code.
 */
class mdl_addons
{
    function refresh()
    {
        $found = array();
        foreach (glob(PLUGIN_DIR . '/app/*', GLOB_ONLYDIR) as $dir) {
            $ident = basename($dir);
            if (file_exists($dir . '/app.' . $ident . '.php')) {
                $found[$ident] = array('plugin_ident' => $ident, 'plugin_type' => 'app',
                    'plugin_path' => '/app/' . $ident . '/app.' . $ident . '.php', 'plugin_base' => 0,
                    'plugin_mtime' => filemtime($dir . '/app.' . $ident . '.php'));
            }
        }
        return hdb_tx(function (&$t) use ($found) {
            $rows = isset($t['plugins']) ? $t['plugins'] : array();
            $next = isset($t['next_plugin_id']) ? $t['next_plugin_id'] : 1;
            $kept = array();
            foreach ($found as $ident => $info) {
                $info['plugin_id'] = isset($rows[$ident]) ? $rows[$ident]['plugin_id'] : $next++;
                $info['status'] = isset($rows[$ident]['status']) ? $rows[$ident]['status'] : 'unused';
                $kept[$ident] = $info;
            }
            $t['plugins'] = $kept;
            $t['next_plugin_id'] = $next;
            return true;
        });
    }
}
