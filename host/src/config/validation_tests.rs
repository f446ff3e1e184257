//! What a newcomer's mistakes in `payhost.toml` get: each refused at load, under its whole key,
//! with the rule and what to do, and never with a value of the file in the message.

use super::*;

const HEAD: &str = r#"
public_url = "https://pay.example.com"
api_token = "validation-test-token-0123456789"
"#;

/// The problems of `HEAD` + `extra` (read against `base`).
fn problems_in(extra: &str, base: &Path) -> Vec<String> {
    Config::check(&format!("{HEAD}\n{extra}"), base)
        .unwrap()
        .problems
}

fn problems(extra: &str) -> Vec<String> {
    problems_in(extra, Path::new("/srv"))
}

/// The one problem about `key` (as written: `key: …`).
fn about<'a>(problems: &'a [String], key: &str) -> &'a str {
    let of_key: Vec<&String> = problems
        .iter()
        .filter(|p| p.starts_with(&format!("{key}: ")))
        .collect();
    assert_eq!(of_key.len(), 1, "one problem about {key} in {problems:?}");
    of_key[0]
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("payhost-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_api_token_from_the_readme_is_refused() {
    let mut shown = Vec::new();
    // Every `api_token = "…"` the READMEs and docs/ show now, and those they showed before.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut docs = vec![root.join("README.md"), root.join("README.zh-CN.md")];
    docs.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("api_token") else {
                continue;
            };
            let Some(value) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            if let Some(token) = value
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.split('"').next())
            {
                shown.push(token.to_owned());
            }
        }
    }
    shown.extend(top::EXAMPLE_TOKENS.iter().map(|t| t.to_string()));
    shown.push("replace-me-with-64-hex-digits".into());
    for token in &shown {
        let text = format!("public_url = \"https://pay.example.com\"\napi_token = \"{token}\"\n");
        let c = Config::check(&text, Path::new("/srv")).unwrap();
        let p = about(&c.problems, "api_token");
        // A placeholder shorter than 16 (README.md's "…") is refused for its length alone.
        if token.len() >= 16 {
            assert_eq!(
                p,
                "api_token: is the example from the README; anyone who read it can use the API — generate your own: openssl rand -hex 32",
                "{token}"
            );
        }
        assert!(!p.contains(token.as_str()), "{p}");
    }
    // The tokens of the tests and of one's own are taken.
    for token in [
        "0123456789abcdef0123",
        "readme-facts-token-0123456789",
        "0123456789abcdef0123456789abcdee",
    ] {
        let text = format!("public_url = \"https://pay.example.com\"\napi_token = \"{token}\"\n");
        let c = Config::check(&text, Path::new("/srv")).unwrap();
        assert!(c.problems.is_empty(), "{token}: {:?}", c.problems);
    }
}

#[test]
fn metrics_listen_may_not_take_the_port_of_listen() {
    let p = problems("listen = \"127.0.0.1:8080\"\nmetrics_listen = \" 127.0.0.1:8080 \"");
    let m = about(&p, "metrics_listen");
    assert!(
        m.contains("is the same address as listen (127.0.0.1:8080)")
            && m.contains("Address already in use")
            && m.contains("give metrics_listen a port of its own, such as 127.0.0.1:9090"),
        "{m}"
    );
    // listen left out is its default.
    let p = problems("metrics_listen = \"127.0.0.1:8080\"");
    assert!(
        about(&p, "metrics_listen").contains("listen (the default 127.0.0.1:8080)"),
        "{p:?}"
    );
    // An unspecified address takes the port on every address (of its family; [::] on all).
    for (listen, metrics) in [
        ("0.0.0.0:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("[::]:8080", "127.0.0.1:8080"),
        ("[::1]:8080", "[::]:8080"),
    ] {
        let p = problems(&format!(
            "listen = \"{listen}\"\nmetrics_listen = \"{metrics}\""
        ));
        assert!(
            about(&p, "metrics_listen")
                .contains("takes the same port on the same addresses as listen"),
            "{listen} {metrics}: {p:?}"
        );
    }
    for (listen, metrics) in [
        ("127.0.0.1:8080", "127.0.0.1:9090"),
        ("127.0.0.1:8080", "10.0.0.1:8080"),
        ("[::1]:8080", "127.0.0.1:8080"),
        ("0.0.0.0:8080", "[::1]:8080"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        let text = format!("{HEAD}\nlisten = \"{listen}\"\nmetrics_listen = \"{metrics}\"");
        let c = Config::parse(&text, Path::new("/srv")).unwrap();
        assert_eq!(c.metrics_listen, Some(metrics.parse().unwrap()));
    }
}

#[test]
fn webhook_timeouts_and_retry_bounds_are_checked() {
    for t in [0, 99] {
        let p = problems(&format!("[webhooks]\ntimeout_ms = {t}"));
        assert_eq!(
            about(&p, "webhooks.timeout_ms"),
            "webhooks.timeout_ms: must be at least 100 milliseconds (the time a delivery has to connect to the shop, and then to get its answer; the default is 10000)"
        );
    }
    let c = Config::parse(
        &format!("{HEAD}\n[webhooks]\ntimeout_ms = 100\nretry_base_ms = 50\nretry_max_ms = 50"),
        Path::new("/srv"),
    )
    .unwrap();
    assert_eq!(c.webhooks.timeout_ms, 100);
    assert_eq!(c.webhooks.retry_max_ms, 50);

    let p = problems("[webhooks]\nretry_base_ms = 5000\nretry_max_ms = 1000");
    let r = about(&p, "webhooks.retry_max_ms");
    assert_eq!(
        r,
        "webhooks.retry_max_ms: must be at least webhooks.retry_base_ms (the longest wait between two attempts cannot be shorter than the first); raise retry_max_ms or lower retry_base_ms"
    );
    // The key left out is said to be the default.
    let p = problems("[webhooks]\nretry_base_ms = 7200000");
    let r = about(&p, "webhooks.retry_max_ms");
    assert!(
        r.contains("retry_max_ms is not set, and its default 3600000 is less"),
        "{r}"
    );
    let p = problems("[webhooks]\nretry_max_ms = 10");
    let r = about(&p, "webhooks.retry_max_ms");
    assert!(
        r.contains("webhooks.retry_base_ms (not set, so 1000)"),
        "{r}"
    );
}

#[test]
fn public_url_is_the_root_of_its_origin() {
    for url in [
        "https://pay.example.com/pay/",
        "https://pay.example.com/pay",
        "https://pay.example.com:8443/a/b",
    ] {
        let text = format!("public_url = \"{url}\"\napi_token = \"validation-test-token-0123\"\n");
        // Served (an API-only deployment behind a prefix-stripping proxy worked before), with
        // a warning that the admin page will not.
        let c = Config::check(&text, Path::new("/srv")).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let w = about(&c.config.warnings, "public_url");
        assert!(
            w.starts_with("public_url: has a path") && w.contains("the admin page does not"),
            "{w}"
        );
        assert!(
            w.contains("serve payhost at https://pay.example.com"),
            "{w}"
        );
    }
    for (url, kept) in [
        ("https://pay.example.com/", "https://pay.example.com"),
        ("https://pay.example.com", "https://pay.example.com"),
        ("http://127.0.0.1:8080//", "http://127.0.0.1:8080"),
    ] {
        let text = format!("public_url = \"{url}\"\napi_token = \"validation-test-token-0123\"\n");
        assert_eq!(
            Config::parse(&text, Path::new("/srv")).unwrap().public_url,
            kept
        );
    }
}

#[test]
fn a_setting_s_problem_is_named_by_the_key_it_was_written_under() {
    let dir = temp_dir("setting-keys");
    std::fs::write(dir.join("k.pem"), "-----BEGIN PRIVATE KEY-----\nAA\n").unwrap();
    let c = Config::parse(
        &format!(
            "{HEAD}
            [merchants.shop1.settings]
            partnr = \"2088000000000001\"
            private_key_file = \"k.pem\"
            [merchants.shop2]
            partnr = \"2088000000000001\"
            "
        ),
        &dir,
    )
    .unwrap();
    let known = ["partner", "key", "seller_email", "private_key"];
    assert_eq!(
        c.setting_problem("shop1", "partnr", "is not a setting of this plugin", &known)
            .as_deref(),
        Some("merchants.shop1.settings.partnr: is not a setting of this plugin; did you mean partner?")
    );
    assert_eq!(
        c.setting_problem("shop2", "partnr", "is not a setting of this plugin", &known)
            .as_deref(),
        Some("merchants.shop2.partnr: is not a setting of this plugin; did you mean partner?")
    );
    // A setting left out is named where the merchant's settings are; a known one gets no hint.
    assert_eq!(
        c.setting_problem("shop1", "seller_email", "is required", &known)
            .as_deref(),
        Some("merchants.shop1.settings.seller_email: is required")
    );
    assert_eq!(
        c.setting_problem("shop2", "seller_email", "is required", &known)
            .as_deref(),
        Some("merchants.shop2.seller_email: is required")
    );
    assert_eq!(
        c.setting_key("shop1", "private_key"),
        "merchants.shop1.settings.private_key_file"
    );
    // Nothing near: no guess.
    assert_eq!(
        c.setting_problem("shop2", "colour", "is not a setting of this plugin", &known)
            .as_deref(),
        Some("merchants.shop2.colour: is not a setting of this plugin")
    );
    assert_eq!(
        c.setting_problem("shop2", "webhook_url", "is not a setting of this plugin", &known)
            .as_deref(),
        Some("merchants.shop2.webhook_url: is not a setting of this plugin; did you mean shop_webhook_url?")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_mistyped_host_key_of_a_merchant_is_named_whatever_its_value() {
    let p = problems(
        r#"
        [merchants.m]
        shop_origin = ["https://shop.example"]
        webhook_url = "https://shop.example/hook"
        webhook_secret = "0123456789abcdef0123"
        partner = "2088000000000001"
        [merchants.m.settings]
        key = ["a", "list"]
        "#,
    );
    assert_eq!(
        about(&p, "merchants.m.shop_origin"),
        "merchants.m.shop_origin: unknown key; did you mean shop_origins?"
    );
    assert_eq!(
        about(&p, "merchants.m.settings.key"),
        "merchants.m.settings.key: must be text, a whole number or true/false (not array)"
    );
    // `webhook_url` and `webhook_secret` may be a component's own settings: passed on, and only
    // once the component refuses one is the host key offered.
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        super::merchants::host_key_without_prefix("webhook_url"),
        Some("shop_webhook_url")
    );
    assert_eq!(
        super::merchants::host_key_without_prefix("origins"),
        Some("shop_origins")
    );
    let raw: RawMerchant =
        serde_json::from_value(serde_json::json!({"webhook_url": "https://shop.example/h"}))
            .unwrap();
    let mut p = Vec::new();
    let m = merchant_settings("m", &raw, None, &mut p);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        m.settings,
        [(
            "webhook_url".to_owned(),
            "https://shop.example/h".to_owned()
        )]
    );
}

#[test]
fn an_unreadable_key_file_is_one_problem() {
    let dir = temp_dir("unread-key");
    let c = Config::check(
        &format!(
            "{HEAD}
            [merchants.m]
            partner = \"2088000000000001\"
            sign_type = \"RSA\"
            private_key_file = \"missing.pem\"
            "
        ),
        &dir,
    )
    .unwrap();
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert!(
        c.problems[0].starts_with("merchants.m.private_key_file: cannot read"),
        "{:?}",
        c.problems
    );
    // The component then misses private_key: not a second problem.
    let known = ["partner", "sign_type", "private_key"];
    assert_eq!(
        c.config.setting_problem(
            "m",
            "private_key",
            "is required when sign_type is RSA",
            &known
        ),
        None
    );
    assert_eq!(
        c.config
            .setting_problem("m", "partner", "must be 16 digits", &known)
            .as_deref(),
        Some("merchants.m.partner: must be 16 digits")
    );
    // An empty `<name>_file` is no file: the setting's absence is then the problem.
    let c = Config::check(
        &format!("{HEAD}\n[merchants.m]\nprivate_key_file = \" \"\n"),
        &dir,
    )
    .unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert!(c
        .config
        .setting_problem("m", "private_key", "is required", &known)
        .is_some());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_key_file_that_is_a_directory_is_said_to_be_one() {
    let dir = temp_dir("key-dir");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let text = format!("{HEAD}\n[merchants.m.settings]\nprivate_key_file = \"keys\"\n");
    std::fs::write(dir.join("payhost.toml"), &text).unwrap();
    let c = Config::load_checked(&dir.join("payhost.toml")).unwrap();
    let p = about(&c.problems, "merchants.m.settings.private_key_file");
    assert!(
        p.contains("keys is a directory, not a file; name the PEM file itself"),
        "{p}"
    );
    // No `chmod 600` advice for it (the configuration's own file may get one).
    assert!(
        !c.config
            .warnings
            .iter()
            .any(|w| w.contains(&dir.join("keys").display().to_string())),
        "{:?}",
        c.config.warnings
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_negative_or_too_large_number_says_so() {
    let p = problems("[limits]\nmax_connections = -1\nnotify_per_ip_per_s = 5000000000");
    assert_eq!(
        about(&p, "limits.max_connections"),
        "limits.max_connections: must be a whole number, 0 or more (got a negative number)"
    );
    assert_eq!(
        about(&p, "limits.notify_per_ip_per_s"),
        "limits.notify_per_ip_per_s: must be a whole number, 0 or more (got a number too large)"
    );
    // The wrong kind is still said as before.
    let p = problems("[limits]\nmax_connections = \"many\"");
    assert!(about(&p, "limits.max_connections").ends_with("(not string)"));
}

#[test]
fn no_value_of_the_file_appears_in_a_message() {
    // An MD5 key of digits only, unquoted: more than TOML's 64 bits, so not TOML at all.
    let key = "12345678901234567890123456789012";
    for table in ["[merchants.m]", "[merchants.m.settings]"] {
        let text = format!("{HEAD}\n{table}\npartner = \"2088000000000001\"\nkey = {key}\n");
        let e = match Config::check(&text, Path::new("/srv")) {
            Ok(c) => panic!("taken: {:?}", c.problems),
            Err(e) => format!("{e:#}"),
        };
        assert!(!e.contains("1234567890"), "{e}");
        assert!(
            e.contains("line 7, column 7")
                && e.contains("a number too large for TOML")
                && e.contains("double quotes"),
            "{e}"
        );
    }
    let secrets = [
        "9876543210.5",
        "-----BEGIN PRIVATE KEY-----\\nMIIEsecretPEM\\n-----END PRIVATE KEY-----",
        "hunter2-secret-password",
        "424242424242",
    ];
    let dir = temp_dir("no-values");
    let c = Config::check(
        &format!(
            r#"{HEAD}
            admin_password_hash = "{}"
            [limits]
            max_connections = -{}
            [merchants.m]
            partner = "2088000000000001"
            key = {}
            private_key_file = "{}"
            [merchants.n.settings]
            key = {}
            "#,
            secrets[2], secrets[3], secrets[0], secrets[1], secrets[0]
        ),
        &dir,
    )
    .unwrap();
    let all = c.problems.join("\n");
    for secret in [
        "9876543210",
        "MIIEsecretPEM",
        "hunter2",
        "secret-password",
        secrets[3],
    ] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    for key in [
        "admin_password_hash",
        "limits.max_connections",
        "merchants.m.key",
        "merchants.m.private_key_file",
        "merchants.n.settings.key",
    ] {
        about(&c.problems, key);
    }
    assert!(
        about(&c.problems, "merchants.m.private_key_file")
            .contains("holds PEM text, not a file name; put the PEM in private_key"),
        "{all}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quoted_text_of_an_error_is_left_out() {
    assert_eq!(
        unquoted("invalid value `s3cret` for \"p4ss\", expected x"),
        "invalid value `…` for \"…\", expected x"
    );
    assert_eq!(unquoted("no quotes"), "no quotes");
    assert_eq!(unquoted("unclosed `secret"), "unclosed `");
}

/// A duration or count below its floor is refused with the key, the floor and the default; it
/// used to be raised to the floor silently (`header_read_timeout_ms = 0` meant 1 ms and cut
/// every client off, `give_up_after_ms = 0` dead-lettered every webhook at once).
#[test]
fn a_value_below_its_floor_is_refused_not_raised() {
    for (table, key, floor) in [
        ("limits", "header_read_timeout_ms", "100"),
        ("limits", "body_read_timeout_ms", "100"),
        ("limits", "keep_alive_idle_ms", "100"),
        ("limits", "max_connections", "1"),
        ("webhooks", "give_up_after_ms", "1"),
        ("webhooks", "retry_base_ms", "1"),
        ("admin", "session_ttl_s", "60"),
        ("admin", "session_idle_s", "60"),
        ("admin", "login_failures_per_minute", "1"),
        ("retention", "prune_interval_s", "1"),
        ("recovery", "interval_s", "1"),
        ("recovery", "refund_after_s", "1"),
        ("recovery", "seller_refund_after_s", "1"),
    ] {
        let p = problems(&format!("[{table}]\n{key} = 0"));
        let r = about(&p, &format!("{table}.{key}"));
        assert!(
            r.contains(&format!("must be at least {floor} (the default is ")),
            "{r}"
        );
    }
    // One problem for a refused value, not a second one made up from its default.
    let p = problems("[webhooks]\nretry_base_ms = 0\nretry_max_ms = 500");
    assert!(
        p.iter().all(|p| !p.starts_with("webhooks.retry_max_ms")),
        "{p:?}"
    );
    // Rates and the per-address cap keep 0 = off.
    let p = problems("[limits]\nnotify_per_ip_per_s = 0\nmax_connections_per_ip = 0");
    assert!(p.iter().all(|p| !p.starts_with("limits.")), "{p:?}");
}

#[test]
fn an_allowed_origin_is_an_origin_alone() {
    for bad in [
        "http://10.0.0.5:8080/path/x",
        "https://x.example?q=1",
        "http://*",
    ] {
        let p = problems(&format!("[outbound]\nallowed_origins = [\"{bad}\"]"));
        let r = about(&p, "outbound.allowed_origins[0]");
        assert!(r.contains("must"), "{r}");
    }
    for good in ["http://10.0.0.5:8080", "https://gw.partner.example/"] {
        let p = problems(&format!("[outbound]\nallowed_origins = [\"{good}\"]"));
        assert!(
            p.iter().all(|p| !p.starts_with("outbound.")),
            "{good}: {p:?}"
        );
    }
}

/// Settings written in a mistyped table (`[merchants.<id>.setings]`) are that one slip: the
/// settings the component requires are not also said missing (each under a key the file never
/// had); another rule of theirs still is.
#[test]
fn a_mistyped_settings_table_does_not_make_every_setting_missing() {
    let checked = Config::check(
        &format!(
            "{HEAD}
            [merchants.shop1]
            plugin = \"alipay-wap\"
            [merchants.shop1.setings]
            partner = \"2088000000000001\"
            [merchants.shop2]
            plugin = \"alipay-wap\"
            "
        ),
        Path::new("/srv"),
    )
    .unwrap();
    assert!(
        checked
            .problems
            .iter()
            .any(|p| p.contains("did you mean [merchants.shop1.settings]?")),
        "{:?}",
        checked.problems
    );
    let c = &checked.config;
    let known = ["partner", "key", "seller_email"];
    assert_eq!(
        c.setting_problem("shop1", "partner", "is required (16 digits)", &known),
        None
    );
    assert!(c
        .setting_problem("shop1", "partner", "must be 16 digits", &known)
        .is_some());
    assert_eq!(
        c.setting_problem("shop2", "partner", "is required (16 digits)", &known)
            .as_deref(),
        Some("merchants.shop2.partner: is required (16 digits)")
    );
}
