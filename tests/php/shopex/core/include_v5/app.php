<?php
/* Harness of ShopEx 4.8.5 `core/include_v5/app.php` (the app base class: ident from the class name, install/uninstall). No ShopEx code. */
class app
{
    var $ident;
    var $system;
    var $db;
    function __construct() { $this->ident = substr(get_class($this), 4); $this->system = &$GLOBALS['system']; $this->db = new harness_app_db(); }
    function install() { return true; }
    function uninstall() { return true; }
}
class harness_app_db
{
    function exec($sql) { return true; }
}
