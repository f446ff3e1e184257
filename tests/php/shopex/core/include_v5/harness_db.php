<?php
/*
 * The harness's database: a JSON file (SHOP_DB) under an exclusive flock per statement, as a MySQL
 * table lock; nothing spans two statements. State key `db_down` (set by the tests) makes writes
 * fail, as a database that is briefly unavailable. Test-only.
 */
function hdb_tx($fn)
{
    $fp = fopen(getenv('SHOP_DB'), 'c+');
    flock($fp, LOCK_EX);
    $t = json_decode(stream_get_contents($fp), true);
    $result = $fn($t);
    ftruncate($fp, 0);
    rewind($fp);
    fwrite($fp, json_encode($t, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE));
    fflush($fp);
    flock($fp, LOCK_UN);
    fclose($fp);
    return $result;
}

function hdb_read()
{
    $fp = fopen(getenv('SHOP_DB'), 'r');
    flock($fp, LOCK_SH);
    $t = json_decode(stream_get_contents($fp), true);
    flock($fp, LOCK_UN);
    fclose($fp);
    return $t;
}
