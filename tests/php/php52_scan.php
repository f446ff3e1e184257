<?php
/*
 * Syntax scan: fails (exit 1, one line per finding) when a PHP file uses a construct or a function
 * newer than PHP 5.2, the oldest PHP stock ecshop 2.7.3 and ShopEx 4.8.5 run on. It reads PHP's own
 * tokens (token_get_all), so text inside strings and comments never counts. Run by
 * tests/adapters.rs over every file in adapters/:  php tests/php/php52_scan.php FILE...
 */

$newer_functions = array(
    'hash_equals' => '5.6', 'random_bytes' => '7.0', 'random_int' => '7.0', 'password_hash' => '5.5',
    'password_verify' => '5.5', 'http_response_code' => '5.4', 'hex2bin' => '5.4', 'array_column' => '5.5',
    'get_called_class' => '5.3', 'lcfirst' => '5.3', 'array_replace' => '5.3', 'str_contains' => '8.0',
    'str_starts_with' => '8.0', 'str_ends_with' => '8.0', 'array_key_first' => '7.3', 'array_key_last' => '7.3',
    'intdiv' => '7.0', 'openssl_random_pseudo_bytes' => '5.3', 'json_last_error_msg' => '5.5',
    'json_last_error' => '5.3', 'header_remove' => '5.3', 'gc_collect_cycles' => '5.3', 'spl_object_id' => '7.2',
    'mb_str_split' => '7.4', 'is_iterable' => '7.1', 'is_countable' => '7.3', 'array_is_list' => '8.1',
    'session_status' => '5.4', 'getenv_all' => '-', 'stream_context_set_default' => '5.3', 'date_create_from_format' => '5.3',
);
$newer_constants = array(
    'JSON_UNESCAPED_UNICODE' => '5.4', 'JSON_UNESCAPED_SLASHES' => '5.4', 'JSON_PRETTY_PRINT' => '5.4',
    'JSON_HEX_TAG' => '5.3', 'JSON_HEX_AMP' => '5.3', 'JSON_HEX_APOS' => '5.3', 'JSON_HEX_QUOT' => '5.3',
    'JSON_FORCE_OBJECT' => '5.3', 'JSON_THROW_ON_ERROR' => '7.3', 'JSON_INVALID_UTF8_SUBSTITUTE' => '7.2',
    'ENT_SUBSTITUTE' => '5.4', 'ENT_HTML5' => '5.4', 'ENT_HTML401' => '5.4', 'E_DEPRECATED' => '5.3',
    'E_USER_DEPRECATED' => '5.3', 'PHP_INT_MIN' => '7.0', 'PHP_FLOAT_EPSILON' => '7.2', 'SORT_FLAG_CASE' => '5.4',
);
$scalar_types = array('int', 'float', 'string', 'bool', 'iterable', 'object', 'mixed', 'void', 'never',
    'callable', 'null', 'false', 'true', 'static');

/** Named token kinds that exist only in newer PHP (looked up by name: older builds lack some). */
$newer_tokens = array(
    'T_NAMESPACE' => 'namespace (5.3)', 'T_USE' => 'use (5.3)', 'T_NS_SEPARATOR' => 'namespace separator (5.3)',
    'T_NAME_QUALIFIED' => 'namespaced name (5.3)', 'T_NAME_FULLY_QUALIFIED' => 'namespaced name (5.3)',
    'T_NAME_RELATIVE' => 'namespaced name (5.3)', 'T_DIR' => '__DIR__ (5.3)', 'T_NS_C' => '__NAMESPACE__ (5.3)',
    'T_GOTO' => 'goto (5.3)', 'T_TRAIT' => 'trait (5.4)', 'T_TRAIT_C' => '__TRAIT__ (5.4)', 'T_INSTEADOF' => 'insteadof (5.4)',
    'T_CALLABLE' => 'callable (5.4)', 'T_FINALLY' => 'finally (5.5)', 'T_YIELD' => 'yield (5.5)',
    'T_YIELD_FROM' => 'yield from (7.0)', 'T_ELLIPSIS' => '... (5.6)', 'T_POW' => '** (5.6)',
    'T_POW_EQUAL' => '**= (5.6)', 'T_COALESCE' => '?? (7.0)', 'T_COALESCE_EQUAL' => '??= (7.4)',
    'T_SPACESHIP' => '<=> (7.0)', 'T_FN' => 'fn (7.4)', 'T_MATCH' => 'match (8.0)', 'T_NULLSAFE_OBJECT_OPERATOR' => '?-> (8.0)',
    'T_ATTRIBUTE' => 'attribute (8.0)', 'T_ENUM' => 'enum (8.1)', 'T_READONLY' => 'readonly (8.1)',
    'T_OPEN_TAG_WITH_ECHO' => '<?= short echo tag (5.4 without short_open_tag)',
);
$bad_kinds = array();
foreach ($newer_tokens as $name => $what) {
    if (defined($name)) {
        $bad_kinds[constant($name)] = $what;
    }
}

$findings = array();
foreach (array_slice($argv, 1) as $file) {
    $tokens = token_get_all(file_get_contents($file));
    // Significant tokens only: [kind, text, line]; single characters have kind = the character.
    $sig = array();
    foreach ($tokens as $t) {
        if (is_array($t)) {
            if ($t[0] === T_WHITESPACE || $t[0] === T_COMMENT || $t[0] === T_DOC_COMMENT) {
                continue;
            }
            $sig[] = array($t[0], $t[1], $t[2]);
        } else {
            $sig[] = array($t, $t, isset($line) ? $line : 0);
        }
        $line = is_array($t) ? $t[2] : (isset($line) ? $line : 0);
    }
    $n = count($sig);
    $in_params = 0;
    $depth = 0;
    for ($i = 0; $i < $n; $i++) {
        list($kind, $text, $line) = $sig[$i];
        $prev = $i > 0 ? $sig[$i - 1] : array(null, '', 0);
        $next = $i + 1 < $n ? $sig[$i + 1] : array(null, '', 0);
        $where = $file . ':' . $line . ': ';
        if (isset($bad_kinds[$kind])) {
            $findings[] = $where . $bad_kinds[$kind];
        }
        if ($kind === '[') {
            $ok_before = array(T_VARIABLE, ']', '}');
            $is_property = $prev[0] === T_STRING && $i > 1 && $sig[$i - 2][0] === T_OBJECT_OPERATOR;
            if (!in_array($prev[0], $ok_before, true) && !$is_property) {
                $findings[] = $where . ($prev[0] === ')' ? 'dereferencing a call or expression f()[..] (5.4)' : 'short array syntax or constant dereference [..] (5.4)');
            }
        }
        if ($kind === T_FUNCTION) {
            $j = $i + 1;
            if ($sig[$j][0] === '&') {
                $j++;
            }
            if ($sig[$j][0] === '(') {
                $findings[] = $where . 'closure function () (5.3)';
            }
            // Parameter list: no scalar or nullable types; no return type after it.
            while ($j < $n && $sig[$j][0] !== '(') {
                $j++;
            }
            $level = 0;
            for (; $j < $n; $j++) {
                if ($sig[$j][0] === '(') {
                    $level++;
                } elseif ($sig[$j][0] === ')') {
                    $level--;
                    if ($level === 0) {
                        break;
                    }
                } elseif ($level === 1 && $sig[$j][0] === '?') {
                    $findings[] = $file . ':' . $sig[$j][2] . ': nullable type (7.1)';
                } elseif ($level === 1 && ($sig[$j][0] === T_STRING || $sig[$j][0] === T_STATIC) && in_array(strtolower($sig[$j][1]), $scalar_types, true)
                    && isset($sig[$j + 1]) && ($sig[$j + 1][0] === T_VARIABLE || $sig[$j + 1][0] === '&')) {
                    $findings[] = $file . ':' . $sig[$j][2] . ': scalar parameter type ' . $sig[$j][1] . ' (7.0)';
                }
            }
            if (isset($sig[$j + 1]) && $sig[$j + 1][0] === ':') {
                $findings[] = $file . ':' . $sig[$j][2] . ': return type (7.0)';
            }
        }
        if ($kind === '?' && $next[0] === ':') {
            $findings[] = $where . 'short ternary ?: (5.3)';
        }
        if ($kind === T_DOUBLE_COLON && $next[0] === T_CLASS) {
            $findings[] = $where . '::class (5.5)';
        }
        if ($kind === T_STATIC && $next[0] === T_DOUBLE_COLON) {
            $findings[] = $where . 'static:: late static binding (5.3)';
        }
        if ($kind === T_VARIABLE && $next[0] === T_DOUBLE_COLON) {
            $findings[] = $where . '$var:: (5.3)';
        }
        if ($kind === T_NEW && $prev[0] === '(') {
            $findings[] = $where . '(new X)->… member access on instantiation (5.4)';
        }
        if ($kind === T_START_HEREDOC && (strpos($text, "'") !== false || strpos($text, '"') !== false)) {
            $findings[] = $where . 'nowdoc or quoted heredoc (5.3)';
        }
        if ($kind === T_LNUMBER && preg_match('/^0[bB]/', $text)) {
            $findings[] = $where . 'binary literal (5.4)';
        }
        if ($kind === T_STRING && $next[0] === '(' && isset($newer_functions[strtolower($text)])
            && $prev[0] !== T_OBJECT_OPERATOR && $prev[0] !== T_DOUBLE_COLON && $prev[0] !== T_FUNCTION) {
            $findings[] = $where . $text . '() (' . $newer_functions[strtolower($text)] . ')';
        }
        if ($kind === T_STRING && isset($newer_constants[$text])) {
            $findings[] = $where . $text . ' (' . $newer_constants[$text] . ')';
        }
        if ($kind === T_STRING && strtolower($text) === 'strict_types') {
            $findings[] = $where . 'declare(strict_types) (7.0)';
        }
        if ($kind === T_CONST && $depth === 0) {
            $findings[] = $where . 'const outside a class (5.3)';
        }
        if ($kind === '{' || $kind === T_CURLY_OPEN || $kind === T_DOLLAR_OPEN_CURLY_BRACES) {
            $depth++;
        } elseif ($kind === '}') {
            $depth--;
        }
    }
}
foreach ($findings as $f) {
    echo $f, "\n";
}
exit(count($findings) ? 1 : 0);
