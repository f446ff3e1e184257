//! The PHP adapters with the real PHP interpreter: a harness of each platform's module contract
//! (tests/php/<platform>) served by `php -S`, the real `payhost demo` with its sandbox gateway, and
//! a buyer driven over HTTP: install (settings → payhost configured), pay (button → pay_url), paid
//! (webhook and return → order_paid exactly once), forgeries refused, GBK subject, stray spaces.

use base64::Engine as _;
use conformance::alipay::cashier_token;
use conformance::host::{
    free_port, get, request, send_json, spawn_payhost, temp_dir, wait_port, Demo,
};
use conformance::repo_root;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "adapter-test-token-0123456789";
const PARTNER: &str = "2088000000000777";
const KEY: &str = "k7k7k7k7k7k7k7k7k7k7k7k7k7k7k7k7";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_demo(dir: &Path) -> (Demo, String) {
    let db = dir.join("demo.db").display().to_string();
    let extra = format!("{PARTNER}:{KEY}");
    let demo = spawn_payhost(
        dir,
        &[
            "demo",
            "--api-token",
            TOKEN,
            "--sandbox-merchant",
            &extra,
            "--database",
            &db,
        ],
    );
    let base = demo.base.clone();
    (demo, base)
}

/// `php -S` serving a platform harness, with the adapter's files and the shop state.
fn start_php(platform: &str, state: &Path, charset: &str) -> (Proc, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new("php")
        .args(["-S", &format!("127.0.0.1:{port}"), "-t"])
        .arg(repo_root().join("tests/php").join(platform))
        .env("ADAPTER_ROOT", repo_root().join("adapters").join(platform))
        .env("STATE_FILE", state)
        .env("SHOP_CHARSET", charset)
        .env("SHOP_BASE", &base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("php runs (apt-get install php-cli)");
    let mut child = child;
    wait_port(port, &mut child, state);
    (Proc(child), base)
}

fn state(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#039;", "'")
        .replace("&quot;", "\"")
        .replace("\\/", "/")
}

/// Pays a pay_url in the sandbox cashier; returns the payhost return URL the browser lands on.
async fn pay_in_cashier(pay_url: &str, demo: &str) -> String {
    let page = get(pay_url, None).await.text();
    let token = cashier_token(&page);
    let r = request(
        "POST",
        &format!("{demo}/sandbox/cashier/pay"),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("token={token}").into_bytes(),
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    r.header("location").unwrap()
}

async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ecshop_state(dir: &Path, shop_name: &[u8], demo: &str) -> PathBuf {
    let path = dir.join("ecshop-state.json");
    let s = json!({
        "shop_name_b64": base64::engine::general_purpose::STANDARD.encode(shop_name),
        // As pasted into ecshop's admin form: stray spaces and a line break.
        "payment_config": {
            "alipay_account": " shop@ecshop.example ",
            "alipay_key": format!(" {KEY}\n"),
            "alipay_partner": format!("  {PARTNER} "),
            "alipay_mode": "b2c",
            "payhost_url": format!("{demo}/"),
            "payhost_token": TOKEN,
        },
        "pay_log": {
            "7": {"order_sn": "2026112312345", "order_amount": "12.50", "is_paid": 0},
            "8": {"order_sn": "2026112354321", "order_amount": "3.00", "is_paid": 0},
        },
        "order_paid_calls": [],
        "responds": [],
    });
    std::fs::write(&path, s.to_string()).unwrap();
    path
}

fn pay_url_from_button(html: &str) -> String {
    let start = html
        .find("window.open('")
        .map(|i| i + "window.open('".len())
        .expect(html);
    let end = html[start..].find("')").unwrap() + start;
    html_unescape(&html[start..end])
}

#[tokio::test(flavor = "multi_thread")]
async fn ecshop_module_install_pay_and_respond() {
    let dir = temp_dir("ecshop");
    let (_demo, demo) = start_demo(&dir);
    let state_file = ecshop_state(&dir, "茶香小铺".as_bytes(), &demo);
    let (_php, shop) = start_php("ecshop", &state_file, "utf-8");

    // The module registers itself with ecshop's fields.
    let reg = get(&format!("{shop}/register.php"), None).await.json();
    let names: Vec<&str> = reg["modules"][0]["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "alipay_account",
        "alipay_key",
        "alipay_partner",
        "alipay_mode",
        "payhost_url",
        "payhost_token",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert_eq!(reg["modules"][0]["code"], "payhost_alipay");
    assert_eq!(reg["lang"]["alipay_key"], "交易安全校验码");

    // The order page: payhost gets configured (credentials trimmed), the payment created.
    let button = get(&format!("{shop}/flow.php?log_id=7"), None).await.text();
    assert!(button.contains("立即使用支付宝支付"), "{button}");
    let merchant = get(
        &format!("{demo}/v1/merchants/ecshop-{PARTNER}"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(merchant["partner"], PARTNER);
    assert_eq!(merchant["seller_email"], "shop@ecshop.example");
    let payment = get(
        &format!("{demo}/v1/merchants/ecshop-{PARTNER}/payments/20261123123457"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(payment["total_fee"], "12.50");
    assert_eq!(payment["subject"], "2026112312345 茶香小铺");

    // The buyer pays; the browser comes back through payhost to respond.php.
    let callback = pay_in_cashier(&pay_url_from_button(&button), &demo).await;
    let r = get(&callback, None).await;
    assert_eq!(r.status, 302);
    let landing = r.header("location").unwrap();
    assert!(
        landing.starts_with(&format!("{shop}/respond.php?code=payhost_alipay&")),
        "{landing}"
    );
    wait_for(
        || state(&state_file)["pay_log"]["7"]["is_paid"] == 1,
        "the webhook to pay the order",
    )
    .await;
    let page = get(&landing, None).await.text();
    assert_eq!(page, "支付成功");
    let s = state(&state_file);
    let calls = s["order_paid_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "order_paid exactly once: {calls:?}");
    assert_eq!(calls[0]["log_id"], "7");

    // Forgeries: a return with a changed amount and a webhook signed with another key.
    let forged = landing.replace("total_fee=12.50", "total_fee=0.01");
    assert_eq!(get(&forged, None).await.text(), "支付失败");
    let body = json!({"type": "payment.paid", "out_trade_no": "20261123543218"}).to_string();
    let r = request(
        "POST",
        &format!("{shop}/respond.php?code=payhost_alipay"),
        &[
            ("content-type", "application/json"),
            ("x-payhost-signature", "sha256=00"),
        ],
        body.into_bytes(),
    )
    .await;
    assert_eq!(r.text(), "支付失败");
    assert_eq!(
        state(&state_file)["order_paid_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(state(&state_file)["pay_log"]["8"]["is_paid"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ecshop_gbk_edition_converts_the_subject() {
    let dir = temp_dir("ecshop-gbk");
    let (_demo, demo) = start_demo(&dir);
    let (gbk_name, _, _) = encoding_rs::GBK.encode("茶香小铺");
    let state_file = ecshop_state(&dir, &gbk_name, &demo);
    let (_php, shop) = start_php("ecshop", &state_file, "gbk");
    let button = get(&format!("{shop}/flow.php?log_id=8"), None).await.text();
    assert!(button.contains("window.open"), "{button}");
    let payment = get(
        &format!("{demo}/v1/merchants/ecshop-{PARTNER}/payments/20261123543218"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(
        payment["subject"], "2026112354321 茶香小铺",
        "GBK converted to UTF-8 before payhost"
    );
    // And paying works the same.
    let callback = pay_in_cashier(&pay_url_from_button(&button), &demo).await;
    let _ = get(&callback, None).await;
    wait_for(
        || state(&state_file)["pay_log"]["8"]["is_paid"] == 1,
        "the GBK order to be paid",
    )
    .await;
    let _ = send_json("GET", &format!("{demo}/healthz"), None, &json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shopex_plugin_install_pay_and_callbacks() {
    let dir = temp_dir("shopex");
    let (_demo, demo) = start_demo(&dir);
    let state_file = dir.join("shopex-state.json");
    std::fs::write(
        &state_file,
        json!({
            "shop_name": "剪纸工坊",
            // As pasted into ShopEx's plugin form.
            "plugin_config": {
                "member_id": format!(" {PARTNER}\n"),
                "PrivateKey": format!("{KEY}  "),
                "seller_account": " seller@shopex.example",
                "seller_mode": "b2c",
                "payhost_url": demo,
                "payhost_token": TOKEN,
            },
            "payments": {"17900000000001": {"order_no": "20261123001", "amount": 8.8, "status": "ready"}},
            "results": [],
            "paid_calls": [],
        })
        .to_string(),
    )
    .unwrap();
    let (_php, shop) = start_php("shopex", &state_file, "utf-8");
    let submit = get(
        &format!("{shop}/submit.php?payment_id=17900000000001"),
        None,
    )
    .await
    .json();
    assert_eq!(
        submit["fieldset"]["member_id"]["label"],
        "合作者身份(parterID)"
    );
    assert_eq!(
        submit["fieldset"]["PrivateKey"]["label"],
        "交易安全校验码(key)"
    );
    assert_eq!(submit["method"], "GET");
    assert_eq!(
        submit["fields"]["service"], "alipay.wap.auth.authAndExecute",
        "{submit}"
    );
    let merchant = get(
        &format!("{demo}/v1/merchants/shopex-{PARTNER}"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(merchant["partner"], PARTNER, "trimmed");
    let payment = get(
        &format!("{demo}/v1/merchants/shopex-{PARTNER}/payments/17900000000001"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(payment["total_fee"], "8.80");
    assert_eq!(payment["subject"], "剪纸工坊 20261123001");

    // The browser submits the GET form to the cashier.
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in submit["fields"].as_object().unwrap() {
        query.append_pair(k, v.as_str().unwrap());
    }
    let pay_url = format!("{}?{}", submit["action"].as_str().unwrap(), query.finish());
    let callback = pay_in_cashier(&pay_url, &demo).await;
    let landing = get(&callback, None).await.header("location").unwrap();
    assert!(
        landing.starts_with(&format!("{shop}/callback.php?")),
        "{landing}"
    );
    wait_for(
        || {
            !state(&state_file)["paid_calls"]
                .as_array()
                .unwrap()
                .is_empty()
        },
        "serverCallback to pay",
    )
    .await;
    assert_eq!(get(&landing, None).await.text(), "PAY_SUCCESS");
    let s = state(&state_file);
    assert_eq!(
        s["paid_calls"].as_array().unwrap().len(),
        1,
        "paid once: {s}"
    );
    assert_eq!(s["payments"]["17900000000001"]["status"], "succ");

    // Forgeries get PAY_ERROR and change nothing.
    let forged = landing.replace("total_fee=8.80", "total_fee=0.01");
    assert_eq!(get(&forged, None).await.text(), "PAY_ERROR");
    let r = request(
        "POST",
        &format!("{shop}/server.php"),
        &[
            ("content-type", "application/json"),
            ("x-payhost-signature", "sha256=00"),
        ],
        json!({"out_trade_no": "17900000000001", "type": "payment.paid"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.text(), "PAY_ERROR");
    assert_eq!(
        state(&state_file)["paid_calls"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn every_php_file_passes_php_lint() {
    let mut files = Vec::new();
    for root in ["adapters", "tests/php"] {
        let mut stack = vec![repo_root().join(root)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "php") {
                    files.push(p);
                }
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    for f in files {
        let out = Command::new("php")
            .arg("-l")
            .arg(&f)
            .output()
            .expect("php -l");
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
