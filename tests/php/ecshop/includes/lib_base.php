<?php
/*
 * Harness of ecshop 2.7.3 `includes/lib_base.php`: addslashes_deep() (addslashes on every value,
 * recursively) and ecs_iconv($source_lang, $target_lang, $str) (charset conversion; strings
 * without bytes >= 0x80 are returned as they are). Written for the tests; no ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

function addslashes_deep($value)
{
    if (empty($value)) {
        return $value;
    }
    return is_array($value) ? array_map('addslashes_deep', $value) : addslashes($value);
}

function ecs_iconv($source_lang, $target_lang, $source_string = '')
{
    if ($source_lang == $target_lang || $source_string == '' || preg_match("/[\x80-\xFF]+/", $source_string) == 0) {
        return $source_string;
    }
    return iconv($source_lang, $target_lang . '//IGNORE', $source_string);
}
