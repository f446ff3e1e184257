//! Two components in one host: the Alipay component and TestPay (`tests/testpay/`, another
//! provider with its own settings). The host knows neither: each merchant names its component,
//! gets its own admin form, its own settings rules and its own notify path, over real HTTP with
//! the real `payhost` binary. TestPay's notifications are signed here with the `hmac` crate from
//! its documented rule, not with the component's code.

use conformance::alipay::MD5_KEY;
use conformance::host::payhost_binary;
use conformance::host::{
    admin_login, config_head, free_port, get, post_form, request, send_json, temp_dir, Payhost,
    ADMIN_PASSWORD,
};
use conformance::repo_root;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const TOKEN: &str = "test-api-token-0123456789";
const SECRET: &str = "testpay-secret-0123456789";

/// TestPay's signature: lowercase hex HMAC-SHA256 over the sorted `k=v&…` string (sign left out).
fn testpay_sign(fields: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = fields.iter().filter(|(k, _)| *k != "sign").collect();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn form(fields: &[(&str, &str)], sign: &str) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.append_pair("sign", sign);
    s.finish()
}

fn two_plugin_config(port: u16) -> String {
    config_head(port, TOKEN, "")
        + &format!(
            r#"
[plugins.testpay]
manifest = "{testpay}"

[merchants.tp]
plugin = "testpay"
[merchants.tp.settings]
merchant_no = " M1 "
api_secret = "{SECRET}"

[merchants.ali]
plugin = "alipay-wap"
partner = "2088101122136241"
key = "{MD5_KEY}"
seller_email = "seller@example.com"
"#,
            testpay = repo_root().join("tests/testpay/plugin.toml").display(),
        )
}

#[tokio::test]
async fn a_second_provider_loads_beside_alipay_with_its_own_settings_form_and_notify_path() {
    let dir = temp_dir("plugins-two");
    let port = free_port();
    let host = Payhost::start(&dir, &two_plugin_config(port));
    let auth = Some(TOKEN);

    // Each merchant names its component; settings are that component's, secrets masked.
    let tp = get(&host.url("/v1/merchants/tp"), Some(TOKEN)).await.json();
    assert_eq!(tp["plugin"], "testpay", "{tp}");
    assert_eq!(tp["settings"]["merchant_no"], "M1", "trimmed: {tp}");
    assert_eq!(
        tp["settings"]["endpoint"], "https://pay.testpay.example",
        "the component's default: {tp}"
    );
    assert!(
        !tp.to_string().contains(SECRET),
        "the secret is never shown: {tp}"
    );
    let ali = get(&host.url("/v1/merchants/ali"), Some(TOKEN))
        .await
        .json();
    assert_eq!(ali["plugin"], "alipay-wap", "{ali}");

    // A TestPay payment: the component's signed redirect, the host's amount rules.
    let created = send_json(
        "POST",
        &host.url("/v1/merchants/tp/payments"),
        auth,
        &json!({"out_trade_no": "T1", "subject": "tea", "total_fee": "12.5",
                "return_url": "https://shop.example/done"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let pay_url = created.json()["pay_url"].as_str().unwrap().to_owned();
    assert!(
        pay_url.starts_with("https://pay.testpay.example/pay"),
        "{pay_url}"
    );
    let notify_url = format!("http://127.0.0.1:{port}/notify/tp");
    assert!(
        pay_url
            .contains(&form_urlencoded::byte_serialize(notify_url.as_bytes()).collect::<String>()),
        "the provider is told the merchant's own notify path: {pay_url}"
    );
    for unpaid in ["T2", "T3"] {
        let r = send_json(
            "POST",
            &host.url("/v1/merchants/tp/payments"),
            auth,
            &json!({"out_trade_no": unpaid, "subject": "tea", "total_fee": "3.00",
                    "return_url": "https://shop.example/done"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }

    // Its notification on its own path: applied once, acknowledged with its own reply.
    let paid = [
        ("merchant_no", "M1"),
        ("out_trade_no", "T1"),
        ("amount", "12.50"),
        ("status", "PAID"),
        ("notify_id", "n-T1"),
        ("trade_no", "TP0001"),
    ];
    let body = form(&paid, &testpay_sign(&paid));
    for _ in 0..3 {
        let r = post_form(&host.url("/notify/tp"), &body).await;
        assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    }
    let p = get(&host.url("/v1/merchants/tp/payments/T1"), Some(TOKEN))
        .await
        .json();
    assert_eq!(p["status"], "TRADE_SUCCESS", "{p}");
    assert_eq!(p["trade_no"], "TP0001", "{p}");
    // Its contract (0.2.0) has no refunds: refused before anything is sent, and nothing is
    // kept — no refund listed, and the key free for when the component can refund.
    let refused = send_json(
        "POST",
        &host.url("/v1/merchants/tp/payments/T1/refunds"),
        auth,
        &json!({"amount": "1.00", "reason": "r", "refund_key": "tp-1"}),
    )
    .await;
    assert!(refused.status >= 400, "{}", refused.text());
    let listed = get(&host.url("/v1/refunds?merchant=tp"), Some(TOKEN))
        .await
        .json();
    assert_eq!(listed["refunds"], json!([]), "{listed}");
    let p = get(&host.url("/v1/merchants/tp/payments/T1"), Some(TOKEN))
        .await
        .json();
    assert_eq!(p["refunds"], json!([]), "{p}");

    // Forged: refused with the component's retry reply, nothing paid.
    let forged = [
        ("merchant_no", "M1"),
        ("out_trade_no", "T2"),
        ("amount", "3.00"),
        ("status", "PAID"),
        ("notify_id", "n-T2"),
    ];
    let r = post_form(&host.url("/notify/tp"), &form(&forged, &"0".repeat(64))).await;
    assert_eq!((r.status, r.text().as_str()), (400, "RETRY"));
    // Genuine but for another amount: acknowledged, flagged, not paid.
    let wrong_amount = [
        ("merchant_no", "M1"),
        ("out_trade_no", "T3"),
        ("amount", "0.01"),
        ("status", "PAID"),
        ("notify_id", "n-T3"),
    ];
    let r = post_form(
        &host.url("/notify/tp"),
        &form(&wrong_amount, &testpay_sign(&wrong_amount)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for unpaid in ["T2", "T3"] {
        let p = get(
            &host.url(&format!("/v1/merchants/tp/payments/{unpaid}")),
            Some(TOKEN),
        )
        .await
        .json();
        assert_eq!(p["status"], "WAIT_BUYER_PAY", "{p}");
    }
    let seen = get(&host.url("/v1/merchants/tp/notifications"), Some(TOKEN))
        .await
        .json();
    let outcomes: Vec<&str> = seen["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["outcome"].as_str().unwrap_or(""))
        .collect();
    for o in ["applied", "duplicate", "bad_signature", "mismatch"] {
        assert!(outcomes.contains(&o), "{o} missing from {outcomes:?}");
    }

    // The Alipay merchant's notify path still takes Alipay's notifications (an unsigned one is
    // refused with Alipay's reply, not TestPay's).
    let r = post_form(&host.url("/notify/ali"), "notify_id=x&sign=y").await;
    assert_eq!((r.status, r.text().as_str()), (400, "fail"));

    // Settings through the API: the named component's rules, every bad field named.
    let bad = send_json(
        "PUT",
        &host.url("/v1/merchants/tp2"),
        auth,
        &json!({"plugin": "testpay", "settings": {"merchant_no": "no spaces allowed"}}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let fields: Vec<String> = bad.json()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        fields.contains(&"merchant_no".into()) && fields.contains(&"api_secret".into()),
        "{fields:?}"
    );
    let unknown = send_json(
        "PUT",
        &host.url("/v1/merchants/tp3"),
        auth,
        &json!({"plugin": "nope", "settings": {}}),
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.json()["error"]["field"],
        "plugin",
        "{}",
        unknown.text()
    );
    let unnamed = send_json(
        "PUT",
        &host.url("/v1/merchants/tp4"),
        auth,
        &json!({"settings": {"merchant_no": "M4"}}),
    )
    .await;
    assert_eq!(
        unnamed.status, 400,
        "two plugins: the merchant must name one"
    );
    assert_eq!(unnamed.json()["error"]["field"], "plugin");
    let good = send_json(
        "PUT",
        &host.url("/v1/merchants/tp2"),
        auth,
        &json!({"plugin": "testpay", "settings": {"merchant_no": "M2", "api_secret": SECRET}}),
    )
    .await;
    assert_eq!(good.status, 200, "{}", good.text());

    // The admin page builds each merchant's form from its own component.
    let base = host.url("");
    let base = base.trim_end_matches('/');
    let (cookie, _) = admin_login(base, ADMIN_PASSWORD).await;
    let page = |m: &'static str| {
        let cookie = cookie.clone();
        let url = format!("{base}/admin/merchants/{m}");
        async move {
            request("GET", &url, &[("cookie", &cookie)], Vec::new())
                .await
                .text()
        }
    };
    let tp_page = page("tp").await;
    assert!(tp_page.contains("TestPay"), "{tp_page}");
    for name in ["merchant_no", "api_secret", "endpoint", "mode"] {
        assert!(
            tp_page.contains(&format!("name=\"{name}\"")),
            "{name} missing"
        );
    }
    assert!(!tp_page.contains("name=\"partner\""));
    assert!(tp_page.contains("/notify/tp"));
    let ali_page = page("ali").await;
    assert!(ali_page.contains("name=\"partner\""));
    assert!(!ali_page.contains("name=\"merchant_no\""));
    // The new-merchant form lives on the merchants list.
    let list = request(
        "GET",
        &format!("{base}/admin/merchants"),
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await
    .text();
    assert!(
        list.contains("id=\"new-plugin\"") && list.contains("TestPay"),
        "with two components a new merchant picks one: {list}"
    );
}

#[test]
fn check_config_names_the_plugin_a_merchant_must_choose() {
    let dir = temp_dir("plugins-check");
    let port = free_port();
    let config = two_plugin_config(port)
        + r#"
[merchants.unnamed]
merchant_no = "M9"

[merchants.ghost]
plugin = "ghost"

[merchants.filed]
plugin = "testpay"
[merchants.filed.settings]
merchant_no_file = "number.txt"
api_secret = "0123456789abcdef0123"
"#;
    std::fs::write(dir.join("number.txt"), "M7").unwrap();
    let text = refused_by_check_config(&dir, &config);
    assert!(
        text.contains("merchants.unnamed.plugin: is required"),
        "{text}"
    );
    assert!(
        text.contains("merchants.ghost.plugin: \"ghost\" is not configured"),
        "{text}"
    );
    // `<name>_file` is for settings of kind pem only (TestPay has none).
    assert!(
        text.contains("merchants.filed.merchant_no_file: only settings of kind pem"),
        "{text}"
    );
}

/// What `payhost check-config` says of `config` written into `dir`, which it must refuse.
fn refused_by_check_config(dir: &std::path::Path, config: &str) -> String {
    std::fs::write(dir.join("payhost.toml"), config).unwrap();
    let out = std::process::Command::new(payhost_binary())
        .args(["check-config", "--config"])
        .arg(dir.join("payhost.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    text
}

/// A `[plugins.X]` table whose name is not its component's id: the fix is named where it is. A
/// table named otherwise is told its name; a manifest whose id is not its component's is told
/// that first (renaming the table after it would not help).
#[test]
fn a_plugin_table_and_its_manifest_are_told_apart() {
    let check = |name: &str, table: &str, manifest: &std::path::Path| {
        let dir = temp_dir(name);
        let config = config_head(free_port(), TOKEN, "")
            + &format!(
                "\n[plugins.{table}]\nmanifest = \"{}\"\n",
                manifest.display()
            );
        refused_by_check_config(&dir, &config)
    };
    let testpay = repo_root().join("tests/testpay/plugin.toml");
    let said = check("plugins-table-name", "tp", &testpay);
    assert!(said.contains("name the table [plugins.testpay]"), "{said}");
    // The manifest says another id than its component: said of the manifest.
    let dir = temp_dir("plugins-manifest-id");
    let text = std::fs::read_to_string(&testpay).unwrap();
    let component = conformance::target_dir().join("wasm32-wasip2/release/testpay_plugin.wasm");
    let wrong = with_id(&text, "testpayy").replace(
        "path = \"../../target/wasm32-wasip2/release/testpay_plugin.wasm\"",
        &format!("path = \"{}\"", component.display()),
    );
    std::fs::write(dir.join("plugin.toml"), wrong).unwrap();
    let said = check(
        "plugins-manifest-id-config",
        "testpayy",
        &dir.join("plugin.toml"),
    );
    assert!(
        said.contains("\"testpayy\"")
            && said.contains("\"testpay\"")
            && !said.contains("name the table"),
        "{said}"
    );
}

/// A vendor's manifest with several mistakes: `check-config` names every one in one run (serde
/// alone stopped at the first).
#[test]
fn every_mistake_of_a_manifest_is_named_in_one_run() {
    let dir = temp_dir("plugins-manifest-shape");
    let text = std::fs::read_to_string(repo_root().join("tests/testpay/plugin.toml")).unwrap();
    let broken = text
        .replacen("\nname = ", "\nnmae = ", 1)
        .replacen("world = \"payment-plugin\"\n", "", 1)
        .replacen("memory_mib = 16", "memory_mib = \"16\"", 1);
    assert_ne!(broken, text);
    std::fs::write(dir.join("plugin.toml"), broken).unwrap();
    let config = config_head(free_port(), TOKEN, "")
        + &format!(
            "\n[plugins.testpay]\nmanifest = \"{}\"\n",
            dir.join("plugin.toml").display()
        );
    let said = refused_by_check_config(&dir, &config);
    for problem in [
        "name: is required (a string)",
        "nmae: is not a manifest key; did you mean name?",
        "wit.world: is required (a string)",
        "limits.memory_mib: must be a whole number, not a string",
    ] {
        assert!(said.contains(problem), "{problem}: {said}");
    }
}

/// `text` with its top-level `id = "…"` line saying `id`.
fn with_id(text: &str, id: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("id = ") {
                format!("id = \"{id}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A database written by a payhost before several components: a config merchant edited through
/// the API since (its table's hash taken the old way) keeps its edits, and a merchant saved through
/// the API gets its component named in its row.
#[tokio::test]
async fn rows_of_an_older_payhost_keep_their_edits_and_get_their_plugin_named() {
    use payhost::config::MerchantSettings;
    use payhost::store::prelude::*;
    let dir = temp_dir("plugins-upgrade");
    let settings = |seller: &str| MerchantSettings {
        settings: vec![
            ("partner".into(), "2088101122136241".into()),
            ("key".into(), MD5_KEY.into()),
            ("seller_email".into(), seller.into()),
        ],
        ..Default::default()
    };
    {
        let store = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
        // Seeded from the file by the older version (a hash without the `v2:` prefix)…
        assert!(store
            .seed_merchant("shop", &settings("file@example.com"), "0f1e2d3c")
            .await
            .unwrap());
        // …then edited through the API.
        store
            .save_merchant(
                "shop",
                &settings("edited@example.com"),
                payhost::store::Expected::Anything,
            )
            .await
            .unwrap();
        store
            .save_merchant(
                "api-only",
                &settings("api@example.com"),
                payhost::store::Expected::Anything,
            )
            .await
            .unwrap();
    }
    let port = free_port();
    let config = config_head(port, TOKEN, "")
        + &format!(
            r#"
[merchants.shop]
partner = "2088101122136241"
key = "{MD5_KEY}"
seller_email = "file@example.com"
"#
        );
    let host = Payhost::start(&dir, &config);
    let shop = get(&host.url("/v1/merchants/shop"), Some(TOKEN))
        .await
        .json();
    assert_eq!(
        shop["settings"]["seller_email"], "edited@example.com",
        "the edit survives the upgrade: {shop}"
    );
    assert_eq!(shop["plugin"], "alipay-wap", "{shop}");
    let api_only = get(&host.url("/v1/merchants/api-only"), Some(TOKEN))
        .await
        .json();
    assert_eq!(api_only["plugin"], "alipay-wap", "{api_only}");
    drop(host);
    let store = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    let (source, hash) = store.merchant_origin("shop").await.unwrap().unwrap();
    assert_eq!(source, "api");
    assert!(hash.unwrap().starts_with("v2:"), "the new hash is recorded");
    assert_eq!(
        store.merchant("api-only").await.unwrap().unwrap().plugin_id,
        "alipay-wap",
        "named in the row, so adding components later cannot move it"
    );
}

/// A manifest copied with its component (`target/…` beside it) is found although
/// `CARGO_TARGET_DIR` is set to somewhere else, empty or holding another build: the place whose
/// file has the pinned sha256 is taken. With neither, the error names both places.
#[test]
fn a_relocated_target_dir_does_not_hide_the_component_beside_its_manifest() {
    let dir = temp_dir("relocated-target");
    let installed = dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&installed).unwrap();
    std::fs::copy(repo_root().join("plugin.toml"), dir.join("plugin.toml")).unwrap();
    let wasm = conformance::target_dir().join("wasm32-wasip2/release/alipay_wap_plugin.wasm");
    std::fs::copy(&wasm, installed.join("alipay_wap_plugin.wasm")).unwrap();
    std::fs::write(
        dir.join("payhost.toml"),
        format!(
            "listen = \"127.0.0.1:{}\"\npublic_url = \"https://pay.example\"\napi_token = \"{TOKEN}\"\n[plugin]\nmanifest = \"plugin.toml\"\n",
            free_port()
        ),
    )
    .unwrap();
    let elsewhere = temp_dir("relocated-target-elsewhere");
    let check = |target_dir: &std::path::Path| {
        std::process::Command::new(payhost_binary())
            .args(["check-config", "--config"])
            .arg(dir.join("payhost.toml"))
            .env("CARGO_TARGET_DIR", target_dir)
            .output()
            .unwrap()
    };
    let out = check(&elsewhere);
    assert!(out.status.success(), "{out:?}");
    // Another build under CARGO_TARGET_DIR: the pinned file beside the manifest still wins.
    let other = elsewhere.join("wasm32-wasip2/release");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("alipay_wap_plugin.wasm"),
        b"\0asm\x0d\0\x01\0other build",
    )
    .unwrap();
    let out = check(&elsewhere);
    assert!(out.status.success(), "{out:?}");
    // Neither place has it: both are named.
    std::fs::remove_file(other.join("alipay_wap_plugin.wasm")).unwrap();
    std::fs::remove_file(installed.join("alipay_wap_plugin.wasm")).unwrap();
    let out = check(&elsewhere);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "cannot read the component {}",
            installed.join("alipay_wap_plugin.wasm").display()
        )) && err.contains("looked for under CARGO_TARGET_DIR")
            && err.contains(&elsewhere.display().to_string()),
        "{err}"
    );
}
