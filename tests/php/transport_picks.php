<?php
// The HTTP client a module picks for every case that matters (tests/adapters.rs
// module_http_clients_curl_and_none): https or not, PHP before and from 5.2.10 (ignore_errors),
// allow_url_fopen on or off, the stream wrapper there or not, curl there or not. `$pick` is the
// module's pick function (each adapter ships its own: they are installed apart).
function transport_picks($pick)
{
    $picks = array();
    foreach (array(0, 1) as $https) {
        foreach (array('5.2.0', '5.2.9', '5.2.10', '8.2.0') as $php) {
            foreach (array('1', '0', 'Off') as $fopen) {
                foreach (array(0, 1) as $wrapper) {
                    foreach (array(0, 1) as $curl) {
                        $picks[implode(',', array($https, $php, $fopen, $wrapper, $curl))]
                            = call_user_func($pick, $https == 1, $php, $fopen, $wrapper == 1, $curl == 1);
                    }
                }
            }
        }
    }
    return $picks;
}
