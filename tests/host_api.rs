//! payhost on loopback, with a stub Alipay and a stub shop, over real HTTP: every rule of the
//! shop API, the notify and return endpoints, durability and secrecy. The host runs in the test
//! process (`TestHost`) except where the process itself is under test (kill -9, SIGTERM, the
//! command line), which start the release binary.

use conformance::alipay::{self, AlipayStub, Trade, MD5_KEY};
use conformance::host::{
    admin_login, admin_post, config_head, csp_directive, free_port, get, inline_elements_allowed,
    payhost_binary, post_form, request, send_json, temp_dir, Payhost, ADMIN_PASSWORD,
};
use conformance::stub::{Seen, StubServer};
use conformance::testhost::{Served, TestHost};
use conformance::{repo_root, target_dir, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY};
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";
const HOOK_SECRET: &str = "shop-webhook-secret-0123";

/// A host (in the test process unless said otherwise), a stub Alipay and a stub shop.
struct World<H = TestHost> {
    host: H,
    alipay: AlipayStub,
    shop: StubServer,
}

/// The world of most tests: payhost in the test process.
async fn world(name: &str) -> World {
    let (dir, alipay, shop) = stubs(name).await;
    let host = TestHost::start(&dir, |port| config(port, &alipay, &shop)).await;
    World { host, alipay, shop }
}

/// The same world with payhost as a process (`payhost serve`), for the tests of the process.
async fn process_world(name: &str) -> World<Payhost> {
    let (dir, alipay, shop) = stubs(name).await;
    let host = Payhost::start(&dir, &config(free_port(), &alipay, &shop));
    World { host, alipay, shop }
}

async fn stubs(name: &str) -> (std::path::PathBuf, AlipayStub, StubServer) {
    let alipay = AlipayStub::start().await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let dir = temp_dir(name);
    std::fs::write(dir.join("merchant_private.pem"), TEST_PRIVATE_KEY).unwrap();
    std::fs::write(dir.join("alipay_public.pem"), TEST_PUBLIC_KEY).unwrap();
    (dir, alipay, shop)
}

/// payhost.toml of the world on `port`: an MD5 merchant with a shop webhook, a C2C one and an
/// RSA one, all against the stub Alipay.
fn config(port: u16, alipay: &AlipayStub, shop: &StubServer) -> String {
    config_head(port, TOKEN, "")
        + &format!(
            r#"
[webhooks]
retry_base_ms = 50
retry_max_ms = 400

[merchants.shop]
partner = " {PARTNER} "
key = "{MD5_KEY}\n"
seller_email = "{SELLER}"
gateway_url = "{gw}"
notify_verify_url = "{verify}"
paychannel_url = "{verify}"
shop_webhook_url = "{hook}"
shop_webhook_secret = "{HOOK_SECRET}"

[merchants.market]
partner = "{PARTNER}"
key = "{MD5_KEY}"
mode = "c2c"
gateway_url = "{gw}"
notify_verify_url = "{verify}"

[merchants.rsa]
partner = "{PARTNER}"
sign_type = "RSA"
seller_email = "{SELLER}"
private_key_file = "merchant_private.pem"
alipay_public_key_file = "alipay_public.pem"
gateway_url = "{gw}"
notify_verify_url = "{verify}"
"#,
            gw = alipay.gateway_url(),
            verify = alipay.verify_url(),
            hook = shop.url("/hook"),
        )
}

async fn create<H: Served>(
    w: &World<H>,
    merchant: &str,
    body: serde_json::Value,
) -> conformance::host::Reply {
    send_json(
        "POST",
        &w.host.url(&format!("/v1/merchants/{merchant}/payments")),
        Some(TOKEN),
        &body,
    )
    .await
}

fn order(no: &str, fee: &str) -> serde_json::Value {
    json!({"out_trade_no": no, "subject": "测试商品", "total_fee": fee, "return_url": "https://shop.example/return?x=1"})
}

async fn payment<H: Served>(w: &World<H>, merchant: &str, no: &str) -> serde_json::Value {
    get(
        &w.host
            .url(&format!("/v1/merchants/{merchant}/payments/{no}")),
        Some(TOKEN),
    )
    .await
    .json()
}

async fn notify<H: Served>(w: &World<H>, merchant: &str, body: &str) -> conformance::host::Reply {
    post_form(&w.host.url(&format!("/alipay/{merchant}/notify")), body).await
}

fn trade<'a>(no: &'a str, fee: &'a str, notify_id: &'a str) -> Trade<'a> {
    Trade {
        out_trade_no: no,
        total_fee: fee,
        notify_id,
        seller_email: SELLER,
        seller_id: PARTNER,
        trade_status: "TRADE_SUCCESS",
    }
}

/// The shared poll ([`conformance::wait_for`]) of a plain check, with this file's 10 s.
async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    conformance::wait_for(what, Duration::from_secs(10), async || f()).await
}

fn hooks<H>(w: &World<H>) -> Vec<Seen> {
    w.shop
        .requests()
        .into_iter()
        .filter(|s| s.path == "/hook")
        .collect()
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    payhost::service::hmac_hex(key, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_pay_notify_webhook_and_return() {
    let w = world("flow").await;
    eprintln!(
        "payhost started in {:?} (warm compile cache)",
        w.host.started_in
    );
    let r = create(&w, "shop", order("A1", "0.01")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let c = r.json();
    assert_eq!(c["status"], "WAIT_BUYER_PAY");
    assert_eq!(c["out_trade_no"], "A1");
    assert!(c["request_token"].as_str().unwrap().starts_with("token-"));
    let pay_url = c["pay_url"].as_str().unwrap();
    assert!(pay_url.starts_with(&format!(
        "{}?service=alipay.wap.auth.authAndExecute",
        w.alipay.gateway_url()
    )));
    // The create call told Alipay our notify and call-back URLs.
    let create_call = w
        .alipay
        .server
        .requests()
        .into_iter()
        .find(|s| s.path == "/service/rest.htm")
        .unwrap();
    let req_data = create_call.param("req_data").unwrap();
    assert!(req_data.contains(&format!(
        "<notify_url>{}</notify_url>",
        w.host.url("/notify/shop")
    )));
    assert!(req_data.contains(&format!(
        "<call_back_url>{}</call_back_url>",
        w.host.url("/return/shop")
    )));

    assert_eq!(payment(&w, "shop", "A1").await["status"], "WAIT_BUYER_PAY");
    w.alipay.issue("n-A1");
    let r = notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&trade("A1", "0.01", "n-A1"), MD5_KEY),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "success"));
    let p = payment(&w, "shop", "A1").await;
    assert_eq!(p["status"], "TRADE_SUCCESS");
    assert_eq!(p["trade_no"], "2014A1");
    assert_eq!(p["buyer_email"], "buyer@example.com");
    assert_eq!(p["notifications"][0]["outcome"], "applied");

    wait_for(|| hooks(&w).len() == 1, "the shop webhook").await;
    let hook = &hooks(&w)[0];
    let event: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(event["type"], "payment.paid");
    assert_eq!(event["out_trade_no"], "A1");
    assert_eq!(event["total_fee"], "0.01");

    // The buyer's return: verified, then sent on to the shop's return_url, signed by the host.
    let r = get(
        &w.host.url(&format!(
            "/alipay/shop/return?{}",
            alipay::md5_return_query("A1", MD5_KEY)
        )),
        None,
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with("https://shop.example/return?x=1&"),
        "{location}"
    );
    let query = location.split_once("?x=1&").unwrap().1;
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get_p = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get_p("status"), "TRADE_SUCCESS");
    assert_eq!(get_p("result"), "success");
    let canonical = params
        .iter()
        .filter(|(k, _)| k != "sign")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(get_p("sign"), hmac_hex(HOOK_SECRET, canonical.as_bytes()));
    // The same return link opened again (a reload, or anyone replaying it): still sent on, and
    // the timeline keeps one `return` entry, not a row per replay.
    for _ in 0..5 {
        let again = get(
            &w.host.url(&format!(
                "/alipay/shop/return?{}",
                alipay::md5_return_query("A1", MD5_KEY)
            )),
            None,
        )
        .await;
        assert_eq!(again.status, 302, "{}", again.text());
    }
    let returns = payment(&w, "shop", "A1").await["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "return")
        .count();
    assert_eq!(returns, 1);

    // A forged return: an error page, nothing changes.
    let forged = alipay::md5_return_query("A1", "20000000000000000000000000000000");
    let r = get(&w.host.url(&format!("/alipay/shop/return?{forged}")), None).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("支付结果无法确认"));
    // The buyer's page runs no script; its one style element applies by its SHA-256.
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert_eq!(
        csp_directive(&csp, "script-src"),
        "script-src 'none'",
        "{csp}"
    );
    let styles = csp_directive(&csp, "style-src");
    assert!(!styles.contains("unsafe-inline"), "{csp}");
    assert!(
        inline_elements_allowed(&r.text(), "<style>", "</style>", &styles),
        "{csp}"
    );
    assert_eq!(payment(&w, "shop", "A1").await["status"], "TRADE_SUCCESS");
    // Webhook signature.
    let sig = hook.headers_signature();
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",v1="))
        .expect("X-Payhost-Signature: t=<unix>,v1=<hex>");
    let t: i64 = t.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - t).abs() < 300, "t is the send time");
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&hook.body);
    assert_eq!(v1, hmac_hex(HOOK_SECRET, &signed));
}

trait SeenExt {
    fn headers_signature(&self) -> String;
}

impl SeenExt for Seen {
    fn headers_signature(&self) -> String {
        self.header("x-payhost-signature").unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_and_50_concurrent_duplicates_apply_once() {
    let w = world("dupes").await;
    assert_eq!(create(&w, "shop", order("D1", "12.50")).await.status, 201);
    w.alipay.issue("n-D1");
    let body = alipay::md5_notify_body(&trade("D1", "12.50", "n-D1"), MD5_KEY);
    let url = w.host.url("/alipay/shop/notify");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (url, body) = (url.clone(), body.clone());
        tasks.push(tokio::spawn(async move { post_form(&url, &body).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "success"));
    }
    // Sequential duplicates after the storm.
    for _ in 0..3 {
        assert_eq!(notify(&w, "shop", &body).await.text(), "success");
    }
    let p = payment(&w, "shop", "D1").await;
    assert_eq!(p["status"], "TRADE_SUCCESS");
    let outcomes: Vec<&str> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 53, "every notification is stored");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes
        .iter()
        .all(|o| *o == "applied" || *o == "duplicate"));
    wait_for(|| !hooks(&w).is_empty(), "the webhook").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks(&w).len(), 1, "one transition, one webhook");
    // TRADE_FINISHED later moves it on, once.
    w.alipay.issue("n-D1-finished");
    let mut t = trade("D1", "12.50", "n-D1-finished");
    t.trade_status = "TRADE_FINISHED";
    assert_eq!(
        notify(&w, "shop", &alipay::md5_notify_body(&t, MD5_KEY))
            .await
            .text(),
        "success"
    );
    assert_eq!(payment(&w, "shop", "D1").await["status"], "TRADE_FINISHED");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_wrongly_sorted_and_unconfirmed_notifies_are_refused() {
    let w = world("refused").await;
    assert_eq!(create(&w, "shop", order("F1", "1.00")).await.status, 201);
    w.alipay.issue("n-F1");
    let t = trade("F1", "1.00", "n-F1");
    // Forged: signed with another key.
    let r = notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&t, "20000000000000000000000000000000"),
    )
    .await;
    assert_eq!(r.text(), "fail");
    // Signed over the sorted string (a common port bug).
    let r = notify(&w, "shop", &alipay::md5_notify_body_sorted(&t, MD5_KEY)).await;
    assert_eq!(r.text(), "fail");
    // Correctly signed, but notify_verify does not know the id.
    let r = notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&trade("F1", "1.00", "n-never-issued"), MD5_KEY),
    )
    .await;
    assert_eq!(r.text(), "fail");
    let p = payment(&w, "shop", "F1").await;
    assert_eq!(p["status"], "WAIT_BUYER_PAY");
    // Each refusal is stored raw; outcomes recorded.
    assert_eq!(get(&w.host.url("/metrics"), None).await.status, 401);
    let log = get(&w.host.url("/metrics"), Some(TOKEN)).await.text();
    assert!(
        log.contains("payhost_notifications_total{outcome=\"bad_signature\"} 2"),
        "{log}"
    );
    assert!(
        log.contains("payhost_notifications_total{outcome=\"not_confirmed\"} 1"),
        "{log}"
    );
    // The genuine one still goes through afterwards.
    assert_eq!(
        notify(&w, "shop", &alipay::md5_notify_body(&t, MD5_KEY))
            .await
            .text(),
        "success"
    );
    assert_eq!(payment(&w, "shop", "F1").await["status"], "TRADE_SUCCESS");
    // Where the notifications' time went: all four were verified (two of them asked Alipay, as
    // the payment's creation did once), only the genuine one was matched against its order and
    // committed with its effect.
    let metrics = get(&w.host.url("/metrics"), Some(TOKEN)).await.text();
    for (line, want) in [
        ("payhost_notification_steps_total{step=\"verify\"}", 4),
        ("payhost_notification_steps_total{step=\"payment_read\"}", 1),
        ("payhost_notification_steps_total{step=\"match\"}", 1),
        ("payhost_notification_steps_total{step=\"commit\"}", 1),
        ("payhost_component_requests_total", 3),
    ] {
        let got = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{line} missing:\n{metrics}"));
        assert_eq!(got, want.to_string(), "{line}");
    }
    let commit_seconds: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("payhost_notification_step_seconds_total{step=\"commit\"} "))
        .expect("the commit's time")
        .parse()
        .unwrap();
    assert!(
        commit_seconds > 0.0,
        "a durable commit takes time: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn amount_and_c2c_seller_mismatches_are_flagged_not_paid() {
    let w = world("mismatch").await;
    assert_eq!(create(&w, "shop", order("M1", "100.00")).await.status, 201);
    w.alipay.issue("n-M1");
    let r = notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&trade("M1", "0.01", "n-M1"), MD5_KEY),
    )
    .await;
    assert_eq!(
        r.text(),
        "success",
        "genuine: acknowledged, recorded, not retried"
    );
    let p = payment(&w, "shop", "M1").await;
    assert_eq!(p["status"], "WAIT_BUYER_PAY");
    assert!(p["review"].as_str().unwrap().contains("total_fee"), "{p}");
    assert!(w.host.log_text().contains("ALERT"));

    // C2C: the order names its seller; a notify paying another seller is flagged.
    let mut o = order("C1", "5.00");
    o["seller_email"] = json!("13800138000");
    let r = create(&w, "market", o).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["seller_email"], "13800138000");
    w.alipay.issue("n-C1");
    let mut t = trade("C1", "5.00", "n-C1");
    t.seller_email = "thief@example.com";
    t.seller_id = "2088999999999999";
    assert_eq!(
        notify(&w, "market", &alipay::md5_notify_body(&t, MD5_KEY))
            .await
            .text(),
        "success"
    );
    let p = payment(&w, "market", "C1").await;
    assert_eq!(p["status"], "WAIT_BUYER_PAY");
    assert!(
        p["review"].as_str().unwrap().contains("seller_email"),
        "{p}"
    );
    // The right seller pays it.
    w.alipay.issue("n-C1b");
    let mut t = trade("C1", "5.00", "n-C1b");
    t.seller_email = "13800138000";
    assert_eq!(
        notify(&w, "market", &alipay::md5_notify_body(&t, MD5_KEY))
            .await
            .text(),
        "success"
    );
    assert_eq!(payment(&w, "market", "C1").await["status"], "TRADE_SUCCESS");
    // C2C without a seller and without a default: 400 naming the field.
    let r = create(&w, "market", order("C2", "5.00")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["field"], "seller_email");
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_merchant_end_to_end() {
    let w = world("rsa").await;
    let r = create(&w, "rsa", order("R1", "9.99")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json()["pay_url"]
        .as_str()
        .unwrap()
        .contains("sec_id=0001"));
    w.alipay.issue("n-R1");
    let r = notify(
        &w,
        "rsa",
        &alipay::rsa_notify_body(&trade("R1", "9.99", "n-R1")),
    )
    .await;
    assert_eq!(r.text(), "success");
    assert_eq!(payment(&w, "rsa", "R1").await["status"], "TRADE_SUCCESS");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_errors_name_the_field_and_use_the_right_status() {
    let w = world("errors").await;
    let url = w.host.url("/v1/merchants/shop/payments");
    assert_eq!(
        send_json("POST", &url, None, &order("E1", "1"))
            .await
            .status,
        401
    );
    assert_eq!(
        send_json(
            "POST",
            &url,
            Some("wrong-token-wrong-token"),
            &order("E1", "1")
        )
        .await
        .status,
        401
    );
    assert_eq!(create(&w, "nobody", order("E1", "1")).await.status, 404);
    for (fee, field) in [
        ("1e3", "total_fee"),
        ("-1", "total_fee"),
        ("0.001", "total_fee"),
        ("abc", "total_fee"),
    ] {
        let r = create(&w, "shop", order("E1", fee)).await;
        assert_eq!(r.status, 400, "{fee}");
        let e = r.json();
        assert_eq!(e["error"]["field"], field, "{e}");
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("total_fee"));
    }
    // A JSON number is its exact text, never a float: these would otherwise be 20.00, 100.00
    // and 0.01. A plain one is taken as written.
    for literal in [
        "19.999999999999999999",
        "1e2",
        "0.0099999999999999999999",
        "-0",
    ] {
        let body = format!(
            r#"{{"out_trade_no":"E9","subject":"s","total_fee":{literal},"return_url":"https://shop.example/r"}}"#
        );
        let r = request(
            "POST",
            &w.host.url("/v1/merchants/shop/payments"),
            &[
                ("authorization", &format!("Bearer {TOKEN}")),
                ("content-type", "application/json"),
            ],
            body.into_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{literal}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "total_fee", "{literal}");
    }
    let exact = r#"{"out_trade_no":"E8","subject":"s","total_fee":12.5,"return_url":"https://shop.example/r"}"#;
    let r = request(
        "POST",
        &w.host.url("/v1/merchants/shop/payments"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "application/json"),
        ],
        exact.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["total_fee"], "12.50");
    let mut missing = order("E1", "1");
    missing.as_object_mut().unwrap().remove("subject");
    assert_eq!(
        create(&w, "shop", missing).await.json()["error"]["field"],
        "subject"
    );
    let r = create(&w, "shop", order("bad no!", "1")).await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("out_trade_no"))
    );
    // Idempotent create; another amount is a conflict.
    let first = create(&w, "shop", order("E2", "3.00")).await;
    assert_eq!(first.status, 201);
    let again = create(&w, "shop", order("E2", "3.00")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["out_trade_no"], "E2");
    let conflict = create(&w, "shop", order("E2", "3.01")).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.json()["error"]["code"], "conflict");
    assert_eq!(
        get(&w.host.url("/v1/merchants/shop/payments/NOPE"), Some(TOKEN))
            .await
            .status,
        404
    );
    // A gateway refusal is a 502 with the provider's code.
    let put = send_json(
        "PUT",
        &w.host.url("/v1/merchants/wrongkey"),
        Some(TOKEN),
        &json!({"partner": PARTNER, "key": "20000000000000000000000000000000", "seller_email": SELLER,
                "gateway_url": w.alipay.gateway_url(), "notify_verify_url": w.alipay.verify_url()}),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let r = create(&w, "wrongkey", order("G1", "1")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "gateway_0007");
}

/// Notifications keep a merchant's parsed settings between requests: a key changed through the
/// API is the one the very next notification is checked with, and a removed merchant is gone.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_notify_sees_a_merchants_changed_key_and_its_removal() {
    let w = world("merchant-cache").await;
    let url = w.host.url("/v1/merchants/rotating");
    let (old_key, new_key) = (
        "30000000000000000000000000000abc",
        "40000000000000000000000000000def",
    );
    async fn put(w: &World, url: &str, key: &str) -> u16 {
        let settings = json!({"partner": PARTNER, "key": key, "seller_email": SELLER,
                "gateway_url": w.alipay.gateway_url(), "notify_verify_url": w.alipay.verify_url()});
        send_json("PUT", url, Some(TOKEN), &settings).await.status
    }
    let signed_with =
        |key: &str, id: &str| alipay::md5_notify_body(&trade("CACHE1", "1.00", id), key);
    assert_eq!(put(&w, &url, old_key).await, 200);
    // Signed with the merchant's key: past the signature (whatever the order's fate).
    let r = notify(&w, "rotating", &signed_with(old_key, "n-c1")).await;
    assert_ne!(r.status, 400, "{}", r.text());
    assert_eq!(put(&w, &url, new_key).await, 200);
    let r = notify(&w, "rotating", &signed_with(old_key, "n-c2")).await;
    assert_eq!(
        r.status,
        400,
        "the old key no longer verifies: {}",
        r.text()
    );
    let r = notify(&w, "rotating", &signed_with(new_key, "n-c3")).await;
    assert_ne!(r.status, 400, "the new key verifies: {}", r.text());
    let removed = request(
        "DELETE",
        &url,
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Vec::new(),
    )
    .await;
    assert!(removed.status < 300, "{}", removed.text());
    let r = notify(&w, "rotating", &signed_with(new_key, "n-c4")).await;
    assert_eq!(r.status, 404, "a removed merchant is unknown: {}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn merchant_settings_through_the_api_are_trimmed_validated_and_masked() {
    let w = world("merchant").await;
    let url = w.host.url("/v1/merchants/newshop");
    let put = async |body: serde_json::Value| send_json("PUT", &url, Some(TOKEN), &body).await;
    let r = put(json!({"partner": "  2088101122136241 \n", "key": " 10000000000000000000000000000abc\t", "seller_email": " a@b.cn ",
                "shop_webhook_url": "https://shop.example/hook", "shop_webhook_secret": "0123456789abcdefXYZ"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = r.json();
    assert_eq!(m["partner"], PARTNER);
    assert_eq!(m["key"], "****0abc");
    assert_eq!(m["shop_webhook_secret"], "****fXYZ");
    let again = get(&url, Some(TOKEN)).await;
    assert!(!again.text().contains("10000000000000000000000000000abc"));
    let bad = put(json!({"partner": "12", "key": "short", "mode": "b2b"})).await;
    assert_eq!(bad.status, 400);
    let fields: Vec<String> = bad.json()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    for f in ["partner", "key", "mode"] {
        assert!(fields.contains(&f.to_owned()), "{f} in {fields:?}");
    }
    assert_eq!(send_json("PUT", &url, None, &json!({})).await.status, 401);
    // The file's own rules (a shop secret too short) and the component's (a key of 15
    // characters) in one answer, each field an object as everywhere: the secret's refusal used
    // to hide the key's until a second PUT, in a list of strings.
    let both = put(
        json!({"partner": PARTNER, "key": "123456789012345", "seller_email": "a@b.cn",
                "shop_webhook_secret": "short"}),
    )
    .await;
    assert_eq!(both.status, 400, "{}", both.text());
    let v = both.json();
    let named: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["reason"].is_string(), "{v}");
            f["field"].as_str().unwrap()
        })
        .collect();
    assert!(
        named.contains(&"shop_webhook_secret") && named.contains(&"key"),
        "{v}"
    );
    assert_eq!(v["error"]["field"], "shop_webhook_secret", "{v}");
    assert!(!both.text().contains("123456789012345"), "{v}");
    // A webhook URL with a user name and password is refused when saved (the sender refused it
    // every time, and showed the password wherever the URL was); an upper-case scheme is a scheme.
    let with_password = put(json!({"partner": PARTNER, "key": "10000000000000000000000000000abc", "seller_email": "a@b.cn",
                "shop_webhook_url": "https://hookuser:HOOKPASS123@shop.example/hook"})).await;
    assert_eq!(with_password.status, 400, "{}", with_password.text());
    assert_eq!(with_password.json()["error"]["field"], "shop_webhook_url");
    assert!(!with_password.text().contains("HOOKPASS123"));
    let upper = put(json!({"partner": PARTNER, "key": "10000000000000000000000000000abc", "seller_email": "a@b.cn",
                "shop_webhook_url": "HTTPS://shop.example/hook"})).await;
    assert_eq!(upper.status, 200, "{}", upper.text());
    let lower = put(json!({"partner": PARTNER, "key": "10000000000000000000000000000abc", "seller_email": "a@b.cn",
                "shop_webhook_url": "https://shop.example/hook"})).await;
    assert_eq!(lower.status, 200, "{}", lower.text());
    // A settings-only PUT keeps the webhook URL and secret (it used to drop the URL, and the
    // shop heard of no payment again); null removes the URL.
    let settings = json!({"partner": PARTNER, "key": "10000000000000000000000000000abc", "seller_email": "a@b.cn"});
    let r = put(settings.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["shop_webhook_url"], "https://shop.example/hook");
    assert_eq!(r.json()["shop_webhook_secret"], "****fXYZ");
    let mut without = settings.clone();
    without["shop_webhook_url"] = serde_json::Value::Null;
    let r = put(without).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["shop_webhook_url"].is_null(), "{}", r.text());
    assert!(get(&url, Some(TOKEN)).await.json()["shop_webhook_url"].is_null());
    // An id no merchant can have is named as the segment refused, not as a missing route.
    for id in ["a.b", &"x".repeat(65)] {
        let r = send_json(
            "PUT",
            &w.host.url(&format!("/v1/merchants/{id}")),
            Some(TOKEN),
            &settings,
        )
        .await;
        assert_eq!(
            (r.status, r.json()["error"]["field"].as_str()),
            (404, Some("id")),
            "{}",
            r.text()
        );
        assert!(r.text().contains("1 to 64 letters"), "{}", r.text());
    }
}

/// The webhook signature of `hook` verifies with `secret`.
fn signed_with(hook: &Seen, secret: &str) -> bool {
    let sig = hook.headers_signature();
    let Some((t, v1)) = sig.strip_prefix("t=").and_then(|r| r.split_once(",v1=")) else {
        return false;
    };
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&hook.body);
    v1 == hmac_hex(secret, &signed)
}

/// A merchant made through the API without a shop secret gets one the shop can use (it is in
/// the answer once: the shop could not check its webhooks before), a webhook secret changes
/// without the provider keys sent again, and a token of a merchant with no shop origin comes
/// with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_merchant_gets_a_shop_secret_it_can_read_once() {
    let w = world("api-secret").await;
    let url = w.host.url("/v1/merchants/fresh");
    let settings = json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER,
        "gateway_url": w.alipay.gateway_url(), "notify_verify_url": w.alipay.verify_url()});
    let r = send_json(
        "PUT",
        &url,
        Some(TOKEN),
        &json!({"settings": settings, "shop_webhook_url": w.shop.url("/fresh-hook")}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["shop_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with("phs_"), "{}", r.text());
    // Made, and what it still lacks is said: no shop origin is bound.
    assert_eq!(r.json()["created"], true, "{}", r.text());
    let warnings = r.json()["warnings"].to_string();
    assert!(
        warnings.contains("no shop_origins") && !warnings.contains("no shop_webhook_url"),
        "{warnings}"
    );
    // Once: neither a read nor the next save shows it again.
    assert!(get(&url, Some(TOKEN))
        .await
        .json()
        .get("shop_secret")
        .is_none());
    let again = send_json("PUT", &url, Some(TOKEN), &json!({"settings": settings})).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(
        again.json().get("shop_secret").is_none(),
        "{}",
        again.text()
    );
    let fresh_hooks = || -> Vec<Seen> {
        w.shop
            .requests()
            .into_iter()
            .filter(|s| s.path == "/fresh-hook")
            .collect()
    };
    let pay = async |no: &str| {
        assert_eq!(create(&w, "fresh", order(no, "1.00")).await.status, 201);
        let id = format!("n-{no}");
        w.alipay.issue(&id);
        let r = notify(
            &w,
            "fresh",
            &alipay::md5_notify_body(&trade(no, "1.00", &id), MD5_KEY),
        )
        .await;
        assert_eq!((r.status, r.text().as_str()), (200, "success"));
    };
    pay("S1").await;
    wait_for(|| fresh_hooks().len() == 1, "the first webhook").await;
    assert!(
        signed_with(&fresh_hooks()[0], &secret),
        "signed with the secret answered"
    );

    // Only the webhook secret: the provider keys need not be sent again.
    let rotated = "rotated-secret-0123456789";
    let r = send_json(
        "PUT",
        &url,
        Some(TOKEN),
        &json!({"shop_webhook_secret": rotated}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["settings"]["partner"], PARTNER, "{}", r.text());
    assert_eq!(r.json()["shop_webhook_url"], w.shop.url("/fresh-hook"));
    pay("S2").await;
    wait_for(|| fresh_hooks().len() == 2, "the second webhook").await;
    assert!(
        signed_with(&fresh_hooks()[1], rotated),
        "the new secret signs"
    );

    // This merchant has no shop origin, so nothing holds its token's return addresses: the
    // token's answer says so; with an origin bound it does not.
    let token_for = async |id: &str| {
        let made = send_json(
            "POST",
            &w.host.url(&format!("/v1/merchants/{id}/tokens")),
            Some(TOKEN),
            &json!({"label": "shop"}),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.text());
        made.json()
    };
    let warned = token_for("fresh").await;
    assert!(
        warned["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("no shop_origins"),
        "{warned}"
    );
    let r = send_json(
        "PUT",
        &url,
        Some(TOKEN),
        &json!({"shop_origins": ["https://shop.example"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], false, "{}", r.text());
    assert!(r.json().get("warnings").is_none(), "{}", r.text());
    assert!(token_for("fresh").await.get("warning").is_none());
    // A later save that leaves them out keeps them (and the component).
    let r = send_json(
        "PUT",
        &url,
        Some(TOKEN),
        &json!({"shop_webhook_secret": "another-secret-0123456789"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["shop_origins"],
        json!(["https://shop.example"]),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["plugin"], "alipay-wap", "{}", r.text());
    // An empty secret is none: the one made instead is answered too.
    let r = send_json(
        "PUT",
        &w.host.url("/v1/merchants/fresh2"),
        Some(TOKEN),
        &json!({"settings": settings, "shop_webhook_secret": " "}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["shop_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("phs_")),
        "{}",
        r.text()
    );
}

/// A token's body is read as the API's other bodies are: what it cannot take is refused,
/// naming the field, not made into a token with a label nobody sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_body_it_cannot_take_is_refused() {
    let w = world("token-body").await;
    let url = w.host.url("/v1/merchants/shop/tokens");
    let post = async |body: &str| {
        conformance::host::request(
            "POST",
            &url,
            &[
                ("authorization", &format!("Bearer {TOKEN}")),
                ("content-type", "application/json"),
            ],
            body.as_bytes().to_vec(),
        )
        .await
    };
    for (body, field) in [
        ("garbage{", None),
        (r#"{"label":42}"#, Some("label")),
        (r#"{"lable":"x"}"#, Some("lable")),
        (r#"{"label":"one\ntwo"}"#, Some("label")),
        (
            &format!(r#"{{"label":"{}"}}"#, "x".repeat(101)),
            Some("label"),
        ),
    ] {
        let r = post(body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(
            r.json()["error"]["field"].as_str(),
            field,
            "{body}: {}",
            r.text()
        );
    }
    let listed = get(&url, Some(TOKEN)).await.json();
    assert!(listed["tokens"].as_array().unwrap().is_empty(), "{listed}");
    // What it takes: no body, or a label of one line.
    assert_eq!(post("").await.status, 201);
    let named = post(r#"{"label":"ecshop"}"#).await;
    assert_eq!(
        (named.status, named.json()["label"].as_str()),
        (201, Some("ecshop"))
    );
    // The notifications' filters are refused when mistyped, as the ledger's are.
    let r = get(
        &w.host
            .url("/v1/merchants/shop/notifications?outcom=applied"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "outcom");
}

/// A merchant of payhost.toml stays the file's even after a save through the API: it cannot be
/// removed through the API (the next start would seed it again), so a tool that saves then
/// removes a merchant by name (the conformance kit did) cannot take a real one away.
#[tokio::test(flavor = "multi_thread")]
async fn a_merchant_from_the_file_saved_through_the_api_is_still_not_removable() {
    let w = world("config-merchant").await;
    let url = w.host.url("/v1/merchants/market");
    let saved = send_json(
        "PUT",
        &url,
        Some(TOKEN),
        &json!({"partner": PARTNER, "key": MD5_KEY, "mode": "c2c"}),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    let delete = async |url: &str| {
        request(
            "DELETE",
            url,
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Vec::new(),
        )
        .await
    };
    let removed = delete(&url).await;
    assert_eq!(removed.status, 409, "{}", removed.text());
    assert_eq!(removed.json()["error"]["code"], "merchant_in_config");
    assert_eq!(get(&url, Some(TOKEN)).await.status, 200);
    // Its table removed from the file: still served (said at start, with how to stop it), and
    // now removable (it was refused for ever: "remove its table there", which was done).
    let (alipay, shop) = (w.alipay, w.shop);
    let host = w
        .host
        .restart(|port| {
            let full = config(port, &alipay, &shop);
            let start = full.find("[merchants.market]").unwrap();
            let end = full[start..].find("\n[merchants.rsa]").unwrap() + start;
            format!("{}{}", &full[..start], &full[end..])
        })
        .await;
    let url = host.url("/v1/merchants/market");
    assert_eq!(get(&url, Some(TOKEN)).await.status, 200);
    assert!(
        host.log_text()
            .contains("merchant market is no longer in the configuration file (its [merchants.market] table was removed) but is still served"),
        "{}",
        host.log_text()
    );
    let removed = delete(&url).await;
    assert_eq!(removed.status, 200, "{}", removed.text());
    assert_eq!(get(&url, Some(TOKEN)).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_oversized_bodies_never_cost_a_5xx_or_the_host() {
    let w = world("garbage").await;
    let url = w.host.url("/alipay/shop/notify");
    let big = "a".repeat(300 * 1024);
    for body in [
        &b""[..],
        b"\xff\xfe\x00garbage",
        b"service=x&sign=y",
        b"notify_data=%3C!DOCTYPE%20x%20%5B%3C!ENTITY%20e%20SYSTEM%20%22file%3A%2F%2F%2Fetc%2Fpasswd%22%3E%5D%3E",
        big.as_bytes(),
    ] {
        let r = request("POST", &url, &[("content-type", "application/x-www-form-urlencoded")], body.to_vec()).await;
        assert!(r.status < 500, "{} for a {}-byte body", r.status, body.len());
        assert_eq!(r.text(), "fail");
    }
    let r = request(
        "POST",
        &w.host.url("/v1/merchants/shop/payments"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = request(
        "POST",
        &w.host.url("/v1/merchants/shop/payments"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        big.into_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        get(&w.host.url("/alipay/shop/return?garbage=%ff"), None)
            .await
            .status,
        400
    );
    assert_eq!(
        get(&w.host.url("/healthz"), None).await.status,
        200,
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_and_restart_lose_nothing_and_deliver_the_webhook_once() {
    let mut w = process_world("kill9").await;
    // The shop is down at first: the webhook stays in the outbox.
    w.shop.answer(|_| (503, b"down".to_vec()));
    assert_eq!(create(&w, "shop", order("K1", "2.00")).await.status, 201);
    w.alipay.issue("n-K1");
    assert_eq!(
        notify(
            &w,
            "shop",
            &alipay::md5_notify_body(&trade("K1", "2.00", "n-K1"), MD5_KEY)
        )
        .await
        .text(),
        "success"
    );
    wait_for(|| !hooks(&w).is_empty(), "a first (failed) attempt").await;
    w.host.kill9();
    w.shop.clear();
    w.shop.answer(|_| (200, b"ok".to_vec()));
    w.host.restart();
    let p = payment(&w, "shop", "K1").await;
    assert_eq!(
        p["status"], "TRADE_SUCCESS",
        "the transition survived kill -9"
    );
    assert_eq!(p["notifications"].as_array().unwrap().len(), 1);
    wait_for(|| hooks(&w).len() == 1, "the webhook after restart").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hooks(&w).len(), 1, "delivered once");
    // A retried notify after the restart is a duplicate.
    assert_eq!(
        notify(
            &w,
            "shop",
            &alipay::md5_notify_body(&trade("K1", "2.00", "n-K1"), MD5_KEY)
        )
        .await
        .text(),
        "success"
    );
    let p = payment(&w, "shop", "K1").await;
    assert_eq!(p["notifications"][1]["outcome"], "duplicate");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_logs_or_answers() {
    let w = world("secrets").await;
    let mut answers = String::new();
    answers.push_str(
        &get(&w.host.url("/v1/merchants/shop"), Some(TOKEN))
            .await
            .text(),
    );
    answers.push_str(
        &get(&w.host.url("/v1/merchants/rsa"), Some(TOKEN))
            .await
            .text(),
    );
    answers.push_str(&create(&w, "shop", order("S1", "1.00")).await.text());
    answers.push_str(&create(&w, "rsa", order("S2", "1.00")).await.text());
    answers.push_str(&create(&w, "shop", order("S3", "1e3")).await.text());
    answers.push_str(&get(&w.host.url("/metrics"), Some(TOKEN)).await.text());
    w.alipay.issue("n-S1");
    notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&trade("S1", "1.00", "n-S1"), MD5_KEY),
    )
    .await;
    notify(
        &w,
        "shop",
        &alipay::md5_notify_body(
            &trade("S1", "1.00", "n-S1"),
            "20000000000000000000000000000000",
        ),
    )
    .await;
    let (cookie, _) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    let cookie = cookie.as_str();
    answers.push_str(
        &request(
            "GET",
            &w.host.url("/admin/merchants/shop"),
            &[("cookie", cookie)],
            Vec::new(),
        )
        .await
        .text(),
    );
    answers.push_str(
        &request(
            "GET",
            &w.host.url("/admin/merchants/rsa"),
            &[("cookie", cookie)],
            Vec::new(),
        )
        .await
        .text(),
    );
    let log = w.host.log_text();
    let private_body: String = TEST_PRIVATE_KEY.lines().nth(3).unwrap().to_owned();
    for secret in [MD5_KEY, TOKEN, HOOK_SECRET, private_body.as_str()] {
        assert!(!log.contains(secret), "the log contains a secret");
        assert!(!answers.contains(secret), "an answer contains a secret");
    }
    assert!(log.contains("payment created"), "the log is not empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_lists_every_problem_and_exits_non_zero() {
    let dir = temp_dir("check");
    let config = dir.join("bad.toml");
    let check = || {
        std::process::Command::new(conformance::host::payhost_binary())
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\npublic_url = \"https://pay.example\"\napi_token = \"{TOKEN}\"\n[plugin]\nmanifest = \"{}\"\n\
             [merchants.a]\npartner = \"1234\"\nkey = \"short\"\nmode = \"b2b\"\n[merchants.b]\npartner = \"{PARTNER}\"\nsign_type = \"RSA\"\n",
            repo_root().join("plugin.toml").display()
        ),
    )
    .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "merchants.a.partner",
        "merchants.a.key",
        "merchants.a.mode",
        "merchants.a.seller_email",
        "merchants.b.private_key",
        "merchants.b.alipay_public_key",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    // A refused call timeout is one problem: it is not used to check the merchants as well.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\npublic_url = \"https://pay.example\"\napi_token = \"{TOKEN}\"\n[plugin]\nmanifest = \"{}\"\ncall_timeout_ms = 0\n\
             [merchants.a]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"{SELLER}\"\n\
             [merchants.b]\npartner = \"{PARTNER}\"\nsign_type = \"RSA\"\nseller_email = \"{SELLER}\"\nprivate_key = \"x\"\nprivate_key_file = \"k.pem\"\n",
            repo_root().join("plugin.toml").display()
        ),
    )
    .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin.call_timeout_ms: must be between 100 and 600000"),
        "{err}"
    );
    assert!(!err.contains("merchants.a"), "{err}");
    // A key's text and its file both given: named as such, not as a setting given twice.
    assert!(
        err.contains("merchants.b.private_key_file: private_key is given as well"),
        "{err}"
    );
    assert!(!err.contains("given more than once"), "{err}");
    // Warnings are said and are not problems: a timeout the manifest overrides, a database other
    // users can read.
    let world = dir.join("world.db");
    std::fs::write(&world, "").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\npublic_url = \"https://pay.example\"\napi_token = \"{TOKEN}\"\ndatabase = \"world.db\"\nadmin_password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A\"\n[plugin]\nmanifest = \"{}\"\ncall_timeout_ms = 50000\n\
             [merchants.a]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"{SELLER}\"\n",
            repo_root().join("plugin.toml").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: plugin.call_timeout_ms = 50000 is looser than the manifest's"),
        "{err}"
    );
    assert!(err.contains("world.db is readable by other users"), "{err}");
    // Problems of the file, of a component that does not load and of a merchant's settings
    // (which the component that did load checks), all in one run.
    std::fs::write(
        &config,
        format!(
            "colour = 1\npublic_url = \"https://pay.example\"\napi_token = \"short\"\ncache_dir = \"{}\"\n\
             [limits]\nmax_connections = \"many\"\n[plugin]\nmanifest = \"{}\"\n[plugins.ghost]\nmanifest = \"missing.toml\"\n\
             [merchants.a]\npartner = \"1234\"\nkey = \"short\"\nseller_email = \"{SELLER}\"\n",
            target_dir().join("payhost-test-cache").display(),
            repo_root().join("plugin.toml").display()
        ),
    )
    .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "colour: unknown key",
        "api_token: must be at least 16 characters",
        "limits.max_connections: must be a whole number",
        "plugins.ghost.manifest: cannot read the plugin manifest",
        "merchants.a.partner",
        "merchants.a.key",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    // No component written at all, and no plugin.toml beside the configuration: said where it
    // was looked for.
    std::fs::write(
        &config,
        format!(
            "public_url = \"https://pay.example\"\napi_token = \"{TOKEN}\"\ncache_dir = \"{}\"\n[merchants.a]\nplugin = \"alipay-wap\"\npartner = \"{PARTNER}\"\n",
            target_dir().join("payhost-test-cache").display(),
        ),
    )
    .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin.manifest (none is given, so plugin.toml beside the configuration was looked for"),
        "{err}"
    );
    // A good one passes.
    std::fs::write(
        &config,
        format!(
            "public_url = \"https://pay.example\"\napi_token = \"{TOKEN}\"\ncache_dir = \"{}\"\n[plugin]\nmanifest = \"{}\"\n[merchants.a]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"{SELLER}\"\n",
            target_dir().join("payhost-test-cache").display(),
            repo_root().join("plugin.toml").display()
        ),
    )
    .unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.join("payhost.db").exists(),
        "check-config creates no database"
    );
    // Nobody could log in: the warning's commands run as written.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`payhost admin-password --config ")
            && err.contains("`payhost admin-user add NAME --role operator --config "),
        "{err}"
    );

    // The database is reached without being changed: a folder that is not there, a file that is
    // not SQLite, a PostgreSQL server that does not answer, each named.
    let good = std::fs::read_to_string(&config).unwrap();
    // check-config on `text` exits 2 naming `needle`, and never shows the database's password.
    let refused_with = |text: &str, needle: &str| {
        std::fs::write(&config, text).unwrap();
        let out = check();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
        assert!(!err.contains("secret-pw"), "{err}");
    };
    std::fs::write(dir.join("not-sqlite.db"), "this is not a database, but it is long enough to have a header of one hundred bytes, surely, yes.").unwrap();
    let pg_url = "postgres://payhost:secret-pw@127.0.0.1:1/payhost";
    for (database, needle) in [
        (
            dir.join("no-such-folder/payhost.db").display().to_string(),
            "database: the folder",
        ),
        (
            dir.join("not-sqlite.db").display().to_string(),
            "is not an SQLite database",
        ),
        (
            pg_url.to_owned(),
            "database: cannot connect to postgres://payhost:***@127.0.0.1:1",
        ),
    ] {
        refused_with(&format!("database = \"{database}\"\n{good}"), needle);
    }
    assert!(!dir.join("no-such-folder").exists());

    // A mistyped PostgreSQL URL is not taken for a file name; a database a newer payhost wrote
    // is refused here as at start; and with the default compile cache (beside the database) a
    // missing folder is not created by the check.
    let newer = dir.join("newer.db");
    {
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
             INSERT INTO schema_migrations VALUES (999, 'x');",
        )
        .unwrap();
    }
    let without_cache: String = good
        .lines()
        .filter(|l| !l.starts_with("cache_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (database, needle) in [
        (
            "postgress://payhost:secret-pw@db.internal/payhost".to_owned(),
            "looks like a URL but is not a postgres://",
        ),
        (
            "postgres:/payhost:secret-pw@db.internal/payhost".to_owned(),
            "a value starting with \"postgres:\" looks like a URL",
        ),
        (newer.display().to_string(), "(version 999) is newer"),
        (
            dir.join("missing-folder/payhost.db").display().to_string(),
            "database: the folder",
        ),
    ] {
        refused_with(
            &format!("database = \"{database}\"\n{without_cache}"),
            needle,
        );
    }
    assert!(
        !dir.join("missing-folder").exists(),
        "the check creates no folder"
    );
    assert!(!dir.join("postgress:").exists());

    // An older schema (this payhost's, with its last step taken back): check-config says what
    // `serve` will do and what to do first; a command beside a running (older) server refuses
    // it, and changes nothing.
    let older = dir.join("older.db");
    std::fs::write(
        &config,
        format!("database = \"{}\"\n{without_cache}", older.display()),
    )
    .unwrap();
    let command = |args: &[&str]| {
        std::process::Command::new(conformance::host::payhost_binary())
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let made = command(&["token", "create", "--merchant", "a"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // In the audit log, as a token made on the admin page or through the API is.
    let (actor, action, merchant): (String, String, String) = rusqlite::Connection::open(&older)
        .unwrap()
        .query_row(
            "SELECT actor, action, merchant_id FROM admin_audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (actor.as_str(), action.as_str(), merchant.as_str()),
        ("payhost token", "token.create", "a")
    );
    // check-config counts the database's merchants beside the file's.
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("merchant(s) in ") && said.contains("(the database holds "),
        "{said}"
    );
    // A merchant the database holds beyond the file's: a slot waiting for its shop's settings is
    // fine; stored settings its component refuses (a new component, say) are a problem, named
    // with where to fix them.
    let added = command(&[
        "merchant",
        "add",
        "zz",
        "--shop-origin",
        "https://shop.example",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("1 waiting for their shop's settings"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rusqlite::Connection::open(&older)
        .unwrap()
        .execute(
            "UPDATE merchants SET settings = json_set(settings, '$.plugin', json('[[\"partner\",\"123\"]]')) WHERE id = 'zz'",
            [],
        )
        .unwrap();
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("merchant zz (in the database): partner:")
            && err.contains("save its settings again on the admin page (/admin/merchants/zz)"),
        "{err}"
    );
    rusqlite::Connection::open(&older)
        .unwrap()
        .execute_batch(
            "DELETE FROM api_tokens WHERE merchant_id = 'zz'; DELETE FROM merchants WHERE id = 'zz';",
        )
        .unwrap();
    // A merchant that is not there: named, with the ones that are.
    let unknown = command(&["token", "create", "--merchant", "nosuch"]);
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--merchant \"nosuch\": no such merchant (the merchants are: a"),
        "{err}"
    );
    let version = || -> i64 {
        rusqlite::Connection::open(&older)
            .unwrap()
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let latest = version();
    rusqlite::Connection::open(&older)
        .unwrap()
        .execute("DELETE FROM schema_migrations WHERE version = ?1", [latest])
        .unwrap();
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!(
            "schema version {}; `payhost serve` will upgrade it to {latest}",
            latest - 1
        )) && said.contains("payhost backup --to"),
        "{said}"
    );
    for args in [
        &["token", "list"][..],
        &["token", "create", "--merchant", "a"],
    ] {
        let out = command(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "schema is version {} and this payhost's is {latest}",
                latest - 1
            )) && err.contains("`payhost serve` upgrades it"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(version(), latest - 1, "nothing migrated");
}

/// One `payhost serve` per SQLite file: a second one on the same database (a leftover process,
/// a sloppy restart) is refused with the reason, instead of both draining the webhook outbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_of_the_same_database_is_refused() {
    let w = process_world("one-server").await;
    let config = w.host.dir.join("payhost.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    let second = w.host.dir.join("second.toml");
    let listen = text
        .lines()
        .find(|l| l.starts_with("listen"))
        .expect("a listen line")
        .to_owned();
    std::fs::write(
        &second,
        text.replace(&listen, &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let out = std::process::Command::new(payhost_binary())
        .args(["serve", "--config"])
        .arg(&second)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("another payhost already serves the database"),
        "{err}"
    );
    // Another database on the first one's port: the port is named, and no database is made.
    let third = w.host.dir.join("third.toml");
    let database = text
        .lines()
        .find(|l| l.starts_with("database"))
        .expect("a database line")
        .to_owned();
    std::fs::write(&third, text.replace(&database, "database = \"third.db\"")).unwrap();
    let out = std::process::Command::new(payhost_binary())
        .args(["serve", "--config"])
        .arg(&third)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot listen on") && err.contains("has that port"),
        "{err}"
    );
    assert!(!w.host.dir.join("third.db").exists(), "{err}");
    // The first one still serves.
    assert_eq!(create(&w, "shop", order("ONE-1", "1.00")).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_host_exit_cleanly() {
    let mut w = process_world("sigterm").await;
    assert_eq!(create(&w, "shop", order("T1", "1.00")).await.status, 201);
    let status = w.host.terminate();
    assert!(status.success(), "{status}");
}

/// SIGHUP (a closed terminal, a `kill -HUP` meant as a reload) stops payhost as gracefully as
/// SIGTERM, and says that a change of configuration needs a restart.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_stops_the_host_gracefully_too() {
    let mut w = process_world("sighup").await;
    assert_eq!(create(&w, "shop", order("H1", "1.00")).await.status, 201);
    let status = w.host.signal("HUP");
    assert!(status.success(), "{status}");
    let log = w.host.log_text();
    assert!(
        log.contains("SIGHUP") && log.contains("restart it"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_prints_the_admin_and_notify_urls_and_no_secret() {
    let w = process_world("serve-print").await;
    let base = w.host.url("");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.host.log_text().contains("payhost is listening") {
        assert!(Instant::now() < deadline, "{}", w.host.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = w.host.log_text();
    assert!(out.contains(&format!("Admin: {base}/admin")), "{out}");
    assert!(
        out.contains(
            "nothing to enter at Alipay; it must be reachable from the provider) (from public_url)"
        ),
        "{out}"
    );
    for m in ["market", "rsa", "shop"] {
        assert!(
            out.contains(&format!("    {m}: {base}/notify/{m}\n")),
            "{m} missing from {out}"
        );
    }
    assert!(!out.contains("no admin password is set"), "{out}");
    let private_body: String = TEST_PRIVATE_KEY.lines().nth(3).unwrap().to_owned();
    for secret in [MD5_KEY, TOKEN, HOOK_SECRET, private_body.as_str()] {
        assert!(!out.contains(secret), "serve printed a secret:\n{out}");
    }

    // Without an admin password, it says so, on the terminal and in the log.
    let dir = temp_dir("serve-no-admin");
    let port = free_port();
    let config = config_head(port, TOKEN, "")
        .lines()
        .filter(|l| !l.starts_with("admin_password_hash"))
        .collect::<Vec<_>>()
        .join("\n");
    let host = Payhost::start(&dir, &config);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host.log_text().contains("No merchant yet") {
        assert!(Instant::now() < deadline, "{}", host.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = host.log_text();
    assert!(
        out.contains("Warning: no admin password is set")
            && out.contains("payhost admin-password --config"),
        "{out}"
    );
    assert!(
        out.contains("WARN") && out.contains("nobody can log into the admin page"),
        "{out}"
    );
}

/// `payhost admin-password --generate --config FILE`: the hash line goes into the file whole (the
/// file keeps its permissions, nothing is left beside it); a file that cannot be read fails before
/// a password is made and printed.
#[test]
fn admin_password_writes_its_hash_line_into_the_configuration_whole() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("admin-password-config");
    let path = dir.join("payhost.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:8080\"\nadmin_password_hash = \"old\"\n[plugin]\nmanifest = \"plugin.toml\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let run = |config: &std::path::Path| {
        std::process::Command::new(payhost_binary())
            .args(["admin-password", "--generate", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let out = run(&path);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("admin password: "), "{stdout}");
    let text = std::fs::read_to_string(&path).unwrap();
    let hash_at = text.find("admin_password_hash = \"$argon2").expect(&text);
    assert!(hash_at < text.find("[plugin]").unwrap(), "{text}");
    assert!(!text.contains("\"old\""), "{text}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing left beside it"
    );

    let missing = run(&dir.join("missing.toml"));
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty(), "no password made: {missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.toml"));
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_are_listed_from_the_gbk_response() {
    let w = world("channels").await;
    let r = get(
        &w.host.url("/v1/merchants/shop/channels?out_user=u1"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["channels"][0]["name"], "借记卡快捷支付");
    assert_eq!(c["channels"][1]["cashier_code"], "DEBITCARD_ICBC");
    assert_eq!(c["channels"][1]["parent"], "DEBITCARD");
    // An out_user the component refuses is the caller's to fix: 400 naming it, not a 502.
    for bad in ["%00%01", &"a".repeat(5000)] {
        let r = get(
            &w.host
                .url(&format!("/v1/merchants/shop/channels?out_user={bad}")),
            Some(TOKEN),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["field"], "out_user", "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_login_save_with_stray_spaces_then_masked() {
    let w = world("admin").await;
    assert!(get(&w.host.url("/admin"), None)
        .await
        .text()
        .contains("name=\"password\""));
    let bad = post_form(&w.host.url("/admin/login"), "password=wrong").await;
    assert_eq!(bad.status, 401);
    // The API token is not the admin password.
    let bad = post_form(&w.host.url("/admin/login"), &format!("password={TOKEN}")).await;
    assert_eq!(bad.status, 401);
    let (cookie, csrf) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    let form = format!(
        "csrf={csrf}&partner=+{PARTNER}+%0A&key=%09{MD5_KEY}++&seller_email=+a%40b.cn&mode=b2c&sign_type=MD5&gateway_url={}&notify_verify_url={}&mapi_url={}",
        form_urlencoded::byte_serialize(w.alipay.gateway_url().as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(w.alipay.verify_url().as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(w.alipay.verify_url().as_bytes()).collect::<String>()
    );
    let base = w.host.url("");
    let page = admin_post(&base, "/admin/merchants/pasted", &cookie, &form).await;
    assert!(
        page.contains("Saved and validated") || page.contains("已保存并校验"),
        "{page}"
    );
    assert!(page.contains("****0000"), "the key is shown masked");
    assert!(!page.contains(MD5_KEY));
    let m = get(&w.host.url("/v1/merchants/pasted"), Some(TOKEN))
        .await
        .json();
    assert_eq!(m["partner"], PARTNER);
    // Test connection against the stub gateway.
    let test_connection = async || {
        admin_post(
            &base,
            "/admin/merchants/pasted/test",
            &cookie,
            &format!("csrf={csrf}"),
        )
        .await
    };
    let tested = test_connection().await;
    assert!(tested.contains("连接正常"), "{tested}");
    // An endpoint that answers something else: its words are not shown (an owner could read the
    // start of any page on an allowed origin), the API's fixed words and a correlation id are.
    w.shop.answer(|_: &Seen| {
        (
            200,
            b"INTERNAL-SECRET-0123456789 not an Alipay answer".to_vec(),
        )
    });
    let elsewhere = form.replace(
        &form_urlencoded::byte_serialize(w.alipay.verify_url().as_bytes()).collect::<String>(),
        &form_urlencoded::byte_serialize(w.shop.url("/mapi").as_bytes()).collect::<String>(),
    );
    let saved = admin_post(&base, "/admin/merchants/pasted", &cookie, &elsewhere).await;
    assert!(saved.contains("已保存并校验"), "{saved}");
    let tested = test_connection().await;
    assert!(
        !tested.contains("INTERNAL-SECRET") && tested.contains("技术支持编号"),
        "{tested}"
    );
    let saved = admin_post(&base, "/admin/merchants/pasted", &cookie, &form).await;
    assert!(saved.contains("已保存并校验"), "{saved}");
    // A page opened before someone else saved the merchant does not save over their change:
    // the form carries the version it showed.
    let version_of = |html: &str| {
        html.split("name=\"version\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no version on the page: {html}"))
            .to_owned()
    };
    let opened = version_of(&saved);
    let theirs = admin_post(
        &base,
        "/admin/merchants/pasted",
        &cookie,
        &format!("{elsewhere}&version={opened}"),
    )
    .await;
    assert!(theirs.contains("已保存并校验"), "{theirs}");
    assert_ne!(version_of(&theirs), opened);
    let stale = admin_post(
        &base,
        "/admin/merchants/pasted",
        &cookie,
        &format!("{form}&version={opened}"),
    )
    .await;
    assert!(
        stale.contains("未保存：你打开本页之后，这个商户已被别人修改或删除"),
        "{stale}"
    );
    let kept = get(&w.host.url("/v1/merchants/pasted"), Some(TOKEN))
        .await
        .json();
    assert_eq!(kept["mapi_url"], w.shop.url("/mapi"), "{kept}");
    let saved = admin_post(
        &base,
        "/admin/merchants/pasted",
        &cookie,
        &format!("{form}&version={}", version_of(&stale)),
    )
    .await;
    assert!(saved.contains("已保存并校验"), "{saved}");
    // A bad key is refused with the field named, and nothing is stored.
    let bad_form = format!("csrf={csrf}&partner=2088101122136241&key=short&seller_email=a%40b.cn");
    let refused = admin_post(&base, "/admin/merchants/other", &cookie, &bad_form).await;
    // Listed by its label (which names the key already), not by the key alone, and in the
    // owner's words as beside the field (the list said the component's English).
    assert!(
        refused.contains("<li>交易安全校验码 (key): 请按要求填写：32 位字母或数字"),
        "{refused}"
    );
    // Next to its field too, with what was typed kept (never the key itself).
    assert!(refused.contains("id=\"key-error\""), "{refused}");
    // In the owner's language first (the manifest's rule_zh), the component's words after it;
    // the field's rule beside its label is Chinese too.
    let key_error = refused
        .split("id=\"key-error\">")
        .nth(1)
        .and_then(|r| r.split("</div>").next())
        .unwrap_or_default();
    assert!(
        key_error.starts_with("请按要求填写：32 位字母或数字") && key_error.contains("（"),
        "{key_error}"
    );
    assert!(refused.contains("2088 开头的 16 位数字"), "{refused}");
    // A component reason with a non-ASCII character ("2088…") still gets the Chinese rule first;
    // an address the operator did not allow is said as that, not as "type a full address".
    let odd_form = format!(
        "csrf={csrf}&partner=2088101122136241&key={MD5_KEY}&seller_email=not-an-account&gateway_url={}",
        "https%3A%2F%2Fevil.example.com%2Fgateway.do"
    );
    let odd = admin_post(&base, "/admin/merchants/other", &cookie, &odd_form).await;
    let error_of = |field: &str| {
        odd.split(&format!("id=\"{field}-error\">"))
            .nth(1)
            .and_then(|r| r.split("</div>").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        error_of("seller_email").starts_with("请按要求填写：邮箱、11 位手机号"),
        "{odd}"
    );
    assert!(
        error_of("gateway_url").starts_with("这个地址不在允许范围内"),
        "{odd}"
    );
    let listed = odd
        .split("<ul id=\"errors\">")
        .nth(1)
        .and_then(|r| r.split("</ul>").next())
        .unwrap_or_default();
    assert!(
        listed.contains(": 这个地址不在允许范围内") && listed.contains(": 请按要求填写：邮箱"),
        "the list above says what the fields say: {listed}"
    );
    assert!(refused.contains("value=\"2088101122136241\""), "{refused}");
    assert!(!refused.contains("value=\"short\""), "{refused}");
    assert_eq!(
        get(&w.host.url("/v1/merchants/other"), Some(TOKEN))
            .await
            .status,
        404
    );
    // Without the cookie, nothing.
    assert_eq!(
        request("POST", &w.host.url("/admin/merchants/x"), &[], Vec::new())
            .await
            .status,
        401
    );
}

/// The one error shape: `{"error":{"code","message","field"}}`, as JSON.
fn assert_error_shape(what: &str, r: &conformance::host::Reply) {
    assert!(r.status >= 400, "{what}: not an error ({})", r.status);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{what}: {} {}",
        r.status,
        r.text()
    );
    let v = r.json();
    let e = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no error object: {v}"));
    let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "field", "message"], "{what}: {v}");
    assert!(
        e["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}: {v}"
    );
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
    assert!(
        e["field"].is_null() || e["field"].is_string(),
        "{what}: {v}"
    );
}

/// Every route of the routing table, walked down its error paths: another method (405 with
/// `Allow`), no token (401), another merchant's token (403), input the route refuses, and the
/// paths no route serves. Each answers the one error shape; only the provider's notify (its reply
/// word) and the pages for browsers (`/return`, `/admin`) answer otherwise.
#[tokio::test]
async fn every_route_answers_errors_in_one_shape() {
    use payhost::http::router::{Scope, Target, ROUTES};
    let w = world("error_shape").await;
    let url = |p: &str| w.host.url(p);
    let created = send_json(
        "POST",
        &url("/v1/merchants/market/tokens"),
        Some(TOKEN),
        &json!({"label": "walk"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let market_token = created.json()["token"].as_str().unwrap().to_owned();
    let operator = format!("Bearer {TOKEN}");
    let market = format!("Bearer {market_token}");
    // What each API route refuses, called by the operator: a query or body it refuses on
    // merchant `shop` (whose order `NO-SUCH` does not exist), or (`true`) a merchant that does
    // not exist.
    let bad_input = |label: &str| -> (&'static str, &'static [u8], bool) {
        match label {
            "v1_create_payment" | "v1_app_result" | "v1_refunds" | "v1_put_merchant" => {
                ("", b"{not json", false)
            }
            "v1_notifications" | "v1_payments" | "v1_refunds_list" => ("?limit=0", b"", false),
            "v1_reconciliation" => ("?date=yesterday", b"", false),
            "v1_payments_csv" | "v1_refunds_csv" => ("?cursor=x", b"", false),
            "v1_get_payment" | "v1_sync_payment" | "v1_close" | "v1_tokens"
            | "v1_delete_merchant" | "v1_channels" | "v1_get_merchant" => ("", b"", true),
            // No refund 999999 of `NO-SUCH`: 404 naming none.
            "v1_refund_abandon" => ("", b"", false),
            other => panic!("route {other}: say what input it refuses"),
        }
    };
    let mut walked = 0;
    for row in ROUTES {
        let concrete: Vec<&str> = row
            .path
            .iter()
            .filter(|s| **s != "**")
            .map(|s| match *s {
                "{id}" => "shop",
                "{no}" => "NO-SUCH",
                "{tid}" | "{rid}" => "999999",
                s => s,
            })
            .collect();
        let path = format!("/{}", concrete.join("/"));
        let what = format!("{} {path}", row.method);
        // Another method: 405 naming the ones allowed.
        if row.method != "*" {
            let other = if row.method == "PATCH" {
                "PUT"
            } else {
                "PATCH"
            };
            let r = request(other, &url(&path), &[("authorization", &operator)], vec![]).await;
            assert_eq!(r.status, 405, "{other} {path}: {}", r.text());
            assert!(
                r.header("allow")
                    .is_some_and(|a| a.split(", ").any(|m| m == row.method)),
                "{other} {path}: Allow {:?}",
                r.header("allow")
            );
            assert_error_shape(&format!("{other} {path}"), &r);
        }
        match row.target {
            Target::Api(_, scope) => {
                let r = request(row.method, &url(&path), &[], vec![]).await;
                assert_eq!(r.status, 401, "{what} without a token");
                assert_error_shape(&format!("{what} without a token"), &r);
                if scope != Scope::AnyMerchant {
                    let r = request(
                        row.method,
                        &url(&path),
                        &[("authorization", &market)],
                        vec![],
                    )
                    .await;
                    assert_eq!(r.status, 403, "{what} with another merchant's token");
                    assert_error_shape(&format!("{what} with another merchant's token"), &r);
                }
                if row.label == "v1_merchants" {
                    // The operator's list refuses no input; a merchant's token is refused.
                    let r = request(
                        row.method,
                        &url(&path),
                        &[("authorization", &market)],
                        vec![],
                    )
                    .await;
                    assert_eq!(r.status, 403, "{what} with a merchant token");
                    assert_error_shape(&what, &r);
                    walked += 1;
                    continue;
                }
                let (query, body, unknown_merchant) = bad_input(row.label);
                let target = if unknown_merchant {
                    path.replace("/shop", "/nosuch")
                } else {
                    format!("{path}{query}")
                };
                let r = request(
                    row.method,
                    &url(&target),
                    &[
                        ("authorization", &operator),
                        ("content-type", "application/json"),
                    ],
                    body.to_vec(),
                )
                .await;
                assert_error_shape(&format!("{} {target}", row.method), &r);
                walked += 1;
            }
            Target::Metrics => {
                let r = get(&url(&path), None).await;
                assert_eq!(r.status, 401);
                assert_error_shape("/metrics without a token", &r);
            }
            // Their only error is the method: the provider's reply word and the browsers'
            // pages are not this shape (see the test's comment).
            Target::Healthz
            | Target::Readyz
            | Target::Root
            | Target::Notify
            | Target::Return
            | Target::Admin => {}
        }
    }
    assert!(walked >= 16, "only {walked} API routes walked");
    // Paths no route serves, an invalid merchant id, an API body too large.
    for (method, path) in [
        ("GET", "/nothing-here"),
        ("GET", "/v1/nothing-here"),
        ("POST", "/v1/merchants/shop/payments/NO-SUCH/nothing"),
        ("GET", "/v1/merchants/bad%20id/payments/x"),
        ("POST", "/notify/bad%20id"),
    ] {
        let r = request(method, &url(path), &[("authorization", &operator)], vec![]).await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_error_shape(&format!("{method} {path}"), &r);
    }
    let r = request(
        "PUT",
        &url("/v1/merchants/shop"),
        &[("authorization", &operator)],
        vec![b' '; 300 * 1024],
    )
    .await;
    assert_eq!(r.status, 413);
    assert_error_shape("an API body too large", &r);
    // Settings refused field by field: the same error object, the fields beside it.
    let r = send_json(
        "PUT",
        &url("/v1/merchants/shop"),
        Some(TOKEN),
        &json!({"settings": {"partner": "12"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_error_shape("invalid settings", &r);
    assert_eq!(r.json()["error"]["code"], "invalid_settings");
    assert!(r.json()["fields"].as_array().is_some_and(|f| !f.is_empty()));
}

/// A shop owner's merchant page keeps the operator's binding, as a merchant token's API call
/// does: the shop origins stay as the operator set them (shown read-only), and a webhook URL
/// the owner sets must be on them.
#[tokio::test(flavor = "multi_thread")]
async fn a_shop_owner_cannot_move_the_operators_binding_on_the_page() {
    let w = world("owner-bound").await;
    let base = w.host.url("");
    let (op, csrf) = admin_login(&base, ADMIN_PASSWORD).await;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let settings = format!(
        "partner={PARTNER}&key={MD5_KEY}&seller_email=a%40b.cn&gateway_url={}&notify_verify_url={}&mapi_url={}",
        enc(&w.alipay.gateway_url()),
        enc(&w.alipay.verify_url()),
        enc(&w.alipay.verify_url())
    );
    let saved = admin_post(
        &base,
        "/admin/merchants/bound",
        &op,
        &format!("csrf={csrf}&{settings}&shop_origins=https%3A%2F%2Fshop.example"),
    )
    .await;
    assert!(saved.contains("已保存并校验"), "{saved}");
    let added = admin_post(
        &base,
        "/admin/users",
        &op,
        &format!("csrf={csrf}&name=owner1&role=owner&merchant=bound&password=owner1-password-0123"),
    )
    .await;
    assert!(!added.contains("class=\"field-error\""), "{added}");
    let (own, own_csrf) =
        conformance::host::admin_login_as(&base, "owner1", "owner1-password-0123").await;
    let page = get_page_text(&base, "/admin/merchants/bound", &own).await;
    assert!(
        page.contains("name=\"shop_origins\" class=\"short\" readonly"),
        "{page}"
    );
    let view = || async {
        get(&w.host.url("/v1/merchants/bound"), Some(TOKEN))
            .await
            .json()
    };

    // The owner's form, with another origin and the webhook given.
    let owner_save = |webhook: &str| {
        let body = format!(
            "csrf={own_csrf}&{settings}&shop_origins=https%3A%2F%2Fattacker.example\
             &shop_webhook_url={}&shop_webhook_secret=0123456789abcdef0123",
            enc(webhook)
        );
        let (base, own) = (base.clone(), own.clone());
        async move { admin_post(&base, "/admin/merchants/bound", &own, &body).await }
    };

    // A webhook off the bound origin: refused, nothing changed.
    let refused = owner_save("https://attacker.example/hook").await;
    assert!(
        refused.contains("id=\"shop_webhook_url-error\""),
        "{refused}"
    );
    assert!(refused.contains("https://shop.example"), "{refused}");
    let v = view().await;
    assert_eq!(v["shop_origins"], json!(["https://shop.example"]), "{v}");
    assert!(v["shop_webhook_url"].is_null(), "{v}");

    // A webhook on the bound origin is the owner's to set; the origins stay the operator's.
    let saved = owner_save("https://shop.example/hook").await;
    assert!(saved.contains("已保存并校验"), "{saved}");
    let v = view().await;
    assert_eq!(v["shop_origins"], json!(["https://shop.example"]), "{v}");
    assert_eq!(v["shop_webhook_url"], "https://shop.example/hook", "{v}");
}

async fn get_page_text(base: &str, path: &str, cookie: &str) -> String {
    request(
        "GET",
        &format!("{}{path}", base.trim_end_matches('/')),
        &[("cookie", cookie)],
        Vec::new(),
    )
    .await
    .text()
}

/// A merchant made with `payhost merchant add` (a shop connected, bound to its origin, holding
/// its shop secret) that a payhost.toml table then configures: the table's provider settings
/// apply, and what it leaves out (the shop origins, the shop secret) is kept, so the shop's
/// returns and webhooks still verify and its binding holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_over_a_connected_shop_keeps_its_origins_and_secret() {
    let dir = temp_dir("table-over-slot");
    let config = dir.join("payhost.toml");
    std::fs::write(&config, config_head(free_port(), TOKEN, "")).unwrap();
    let added = std::process::Command::new(payhost_binary())
        .args([
            "merchant",
            "add",
            "dup",
            "--shop-origin",
            "https://dup.example",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let stdout = String::from_utf8_lossy(&added.stdout).into_owned();
    let shop_secret = conformance::host::output_value(&stdout, "shop_secret: ");
    let host = TestHost::start(&dir, |port| {
        config_head(port, TOKEN, "")
            + &format!(
                "\n[merchants.dup]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"s@example.com\"\n"
            )
    })
    .await;
    let v = get(&host.url("/v1/merchants/dup"), Some(TOKEN))
        .await
        .json();
    assert_eq!(v["partner"], PARTNER, "{v}");
    assert_eq!(v["shop_origins"], json!(["https://dup.example"]), "{v}");
    let stored = host.app().store.merchant("dup").await.unwrap().unwrap();
    assert_eq!(
        stored.shop_webhook_secret.as_deref(),
        Some(shop_secret.as_str())
    );
    assert!(host
        .log_text()
        .contains("what its table leaves out was kept"));
    // The table changed later (another seller): applied, and still the shop's origins and secret.
    let host = host
        .restart(|port| {
            config_head(port, TOKEN, "")
                + &format!(
                    "\n[merchants.dup]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"other@example.com\"\n"
                )
        })
        .await;
    let v = get(&host.url("/v1/merchants/dup"), Some(TOKEN))
        .await
        .json();
    assert_eq!(v["seller_email"], "other@example.com", "{v}");
    assert_eq!(v["shop_origins"], json!(["https://dup.example"]), "{v}");
    let stored = host.app().store.merchant("dup").await.unwrap().unwrap();
    assert_eq!(
        stored.shop_webhook_secret.as_deref(),
        Some(shop_secret.as_str())
    );
}

/// A command whose output nobody can read ends quietly (a reader that went away) or says so (a
/// full disk), never with a panic; `merchant add` keeps no merchant whose secrets were not written.
#[test]
fn a_commands_unreadable_output_is_no_panic_and_leaves_no_unusable_merchant() {
    use std::process::{Command, Stdio};
    let dir = temp_dir("unreadable-stdout");
    let config = dir.join("payhost.toml");
    std::fs::write(&config, config_head(free_port(), TOKEN, "")).unwrap();
    let payhost = |args: &[&str]| {
        let mut c = Command::new(payhost_binary());
        c.args(args)
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::piped());
        c
    };
    let kept = payhost(&[
        "merchant",
        "add",
        "kept",
        "--shop-origin",
        "https://kept.example",
    ])
    .output()
    .unwrap();
    assert!(kept.status.success(), "{kept:?}");

    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let lost = payhost(&[
            "merchant",
            "add",
            "lost",
            "--shop-origin",
            "https://lost.example",
        ])
        .stdout(full)
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&lost.stderr);
        assert_eq!(lost.status.code(), Some(2), "{err}");
        assert!(err.contains("merchant lost was not kept"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let list = payhost(&["token", "list"]).output().unwrap();
        let listed = String::from_utf8_lossy(&list.stdout);
        assert!(
            listed.contains("kept") && !listed.contains("lost"),
            "{listed}"
        );

        // A generated password nobody saw is not set: no admin user, the config file unchanged.
        let before = std::fs::read_to_string(&config).unwrap();
        for args in [
            &[
                "admin-user",
                "add",
                "bob",
                "--role",
                "operator",
                "--generate",
            ][..],
            &["admin-password", "--generate"],
        ] {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let out = payhost(args).stdout(full).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains("nothing was changed"), "{args:?}: {err}");
        }
        assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
        let users = payhost(&["admin-user", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&users.stdout).contains("bob"));
    }

    // The reader is gone before the command writes (`payhost token list | true`).
    let mut child = payhost(&["token", "list"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Commands that list or change what is stored refuse a database that is not there instead of
/// creating one (owned by whoever ran them), and a merchant that does not exist.
#[test]
fn listing_commands_create_no_database_and_name_an_unknown_merchant() {
    use std::process::Command;
    let dir = temp_dir("no-database-yet");
    let config = dir.join("payhost.toml");
    std::fs::write(&config, config_head(free_port(), TOKEN, "")).unwrap();
    for args in [
        &["token", "list"][..],
        &["token", "revoke", "--id", "1"],
        &["admin-user", "list"],
    ] {
        let out = Command::new(payhost_binary())
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("no database at"), "{args:?}: {err}");
        assert!(
            !dir.join("payhost.db").exists(),
            "{args:?} created the database"
        );
    }
    // A label `token list` could not show on one line is refused before anything is made.
    for label in ["a\tb", "one\ntwo", &"x".repeat(101)] {
        let out = Command::new(payhost_binary())
            .args([
                "token",
                "create",
                "--merchant",
                "m1",
                "--label",
                label,
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{label:?}: {err}");
        assert!(err.contains("--label: at most 100 characters"), "{err}");
        assert!(
            !dir.join("payhost.db").exists(),
            "{label:?}: the database was made"
        );
    }
    let add = Command::new(payhost_binary())
        .args([
            "merchant",
            "add",
            "m1",
            "--shop-origin",
            "https://m1.example",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let out = Command::new(payhost_binary())
        .args(["token", "list", "--merchant", "nosuch", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"nosuch\": no such merchant"), "{err}");
}

/// A merchant body the API cannot read is refused without quoting what it refused (a secret
/// typed as a number, say).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_merchant_body_quotes_no_value() {
    let w = world("json-no-echo").await;
    let r = send_json(
        "PUT",
        &w.host.url("/v1/merchants/echo"),
        Some(TOKEN),
        &json!({"settings": {"partner": PARTNER}, "shop_webhook_secret": 9876543210987654321u64}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_json", "{v}");
    assert_eq!(v["error"]["field"], "shop_webhook_secret", "{v}");
    assert!(!r.text().contains("9876543210987654321"), "{}", r.text());
}

/// A body of the wrong shape names the field refused, as every other 400 does: a value of the
/// wrong type, a key the route does not take.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_body_names_its_field() {
    let w = world("json-field").await;
    let create = w.host.url("/v1/merchants/shop/payments");
    for (body, field) in [
        (
            json!({"out_trade_no": 5, "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
            "out_trade_no",
        ),
        (
            json!({"out_trade_no": "F1", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "currency": "USD"}),
            "currency",
        ),
    ] {
        let r = send_json("POST", &create, Some(TOKEN), &body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "invalid_json", "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    let r = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/payments/F1/refunds"),
        Some(TOKEN),
        &json!({"amount": "0.01", "refund_key": 5}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "refund_key", "{}", r.text());
    // A return URL whose port a browser reads differently (another host, or none at all) is
    // refused: the buyer would be sent where the shop's origin check did not look.
    for return_url in [
        "https://shop.example:443.evil.example/r",
        "https://shop.example:99999/r",
        "https://shop.example:0/r",
    ] {
        let r = send_json(
            "POST",
            &create,
            Some(TOKEN),
            &json!({"out_trade_no": "F2", "subject": "s", "total_fee": "1.00", "return_url": return_url}),
        )
        .await;
        assert_eq!(r.status, 400, "{return_url}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "return_url", "{}", r.text());
    }
}

/// One shop whose webhook endpoint hangs does not hold back another shop's webhooks: the
/// outbox sent up to 16 at a time and waited for the whole group, so a shop's webhook waited
/// for the slowest send of another shop's (its timeout, 10 s by default).
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_shop_does_not_hold_back_another_shops_webhooks() {
    a_hanging_shop_and_another("webhook-fairness", None).await;
}

/// The same on PostgreSQL, whose outbox is leased: a send leased but not started would wait out
/// its lease.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_shop_does_not_hold_back_another_shops_webhooks_on_postgres() {
    let pg = conformance::postgres::PgCluster::start("webhook-fairness-pg");
    let url = pg.create_database("fairness");
    a_hanging_shop_and_another("webhook-fairness-pg", Some(url)).await;
    drop(pg);
}

async fn a_hanging_shop_and_another(name: &str, database: Option<String>) {
    let (dir, alipay, fast) = stubs(name).await;
    let slow = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    slow.delay(Duration::from_secs(3));
    let merchant = |id: &str, hook: &str| {
        format!(
            r#"
[merchants.{id}]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{gw}"
notify_verify_url = "{verify}"
shop_webhook_url = "{hook}"
shop_webhook_secret = "{HOOK_SECRET}"
"#,
            gw = alipay.gateway_url(),
            verify = alipay.verify_url(),
        )
    };
    let host = TestHost::start(&dir, |port| {
        let config = config_head(port, TOKEN, "")
            + "\n[webhooks]\ntimeout_ms = 3000\n"
            + &merchant("slow", &slow.url("/hook"))
            + &merchant("fast", &fast.url("/hook"));
        match &database {
            Some(url) => config.replace(
                "database = \"payhost.db\"",
                &format!("database = \"{url}\""),
            ),
            None => config,
        }
    })
    .await;
    let w = World {
        host,
        alipay,
        shop: fast,
    };
    for i in 0..12 {
        let no = format!("SLOW-{i}");
        assert_eq!(create(&w, "slow", order(&no, "1.00")).await.status, 201);
        let id = format!("slow-notify-{i}");
        w.alipay.issue(&id);
        let body = alipay::md5_notify_body(&trade(&no, "1.00", &id), MD5_KEY);
        assert_eq!(notify(&w, "slow", &body).await.text(), "success");
    }
    // The slow shop's sends are under way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        create(&w, "fast", order("FAST-1", "1.00")).await.status,
        201
    );
    w.alipay.issue("fast-notify-1");
    let body = alipay::md5_notify_body(&trade("FAST-1", "1.00", "fast-notify-1"), MD5_KEY);
    let paid = std::time::Instant::now();
    assert_eq!(notify(&w, "fast", &body).await.text(), "success");
    conformance::wait_for(
        "the fast shop's webhook",
        Duration::from_secs(10),
        async || !w.shop.requests().is_empty(),
    )
    .await;
    let waited = paid.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "the fast shop waited {waited:?} for its webhook"
    );
    // The slow shop's webhooks arrive too, in the end.
    conformance::wait_for(
        "the slow shop's webhooks",
        Duration::from_secs(20),
        async || slow.requests().len() >= 12,
    )
    .await;
}

/// A shop that removes its webhook URL (a lost domain, say) gets nothing more there: an event
/// still being retried is given up at once, said why, instead of going to the old URL for days.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_webhook_url_stops_the_retries_to_the_old_one() {
    let w = world("hook-removed").await;
    w.shop.answer(|_| (503, b"down".to_vec()));
    let url = w.host.url("/v1/merchants/gone");
    let body = |hook: serde_json::Value| {
        json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER,
               "gateway_url": w.alipay.gateway_url(), "notify_verify_url": w.alipay.verify_url(),
               "shop_webhook_url": hook, "shop_webhook_secret": "0123456789abcdefXYZ"})
    };
    let r = send_json("PUT", &url, Some(TOKEN), &body(json!(w.shop.url("/hook")))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(create(&w, "gone", order("G1", "1.00")).await.status, 201);
    w.alipay.issue("n-G1");
    let r = notify(
        &w,
        "gone",
        &alipay::md5_notify_body(&trade("G1", "1.00", "n-G1"), MD5_KEY),
    )
    .await;
    assert_eq!(r.text(), "success");
    wait_for(|| !hooks(&w).is_empty(), "a first (refused) attempt").await;
    let event: serde_json::Value = serde_json::from_slice(&hooks(&w)[0].body).unwrap();
    // Whole seconds, and the millisecond within them that orders events of one payment.
    let secs =
        payhost::domain::clock::parse_rfc3339(event["created_at"].as_str().unwrap()).unwrap();
    let ms = event["created_at_ms"].as_i64().expect("created_at_ms");
    assert_eq!(ms.div_euclid(1000), secs, "{event}");

    let r = send_json("PUT", &url, Some(TOKEN), &body(serde_json::Value::Null)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let store = w.host.app().store.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = store.dead_webhooks(Some("gone"), 10).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "{}", w.host.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("the shop's webhook URL was removed"),
        "{dead:?}"
    );
    let sent = hooks(&w).len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hooks(&w).len(), sent, "nothing more went to the old URL");
}

/// A shop answering 503 with `Retry-After` is not tried again before then (the backoff alone,
/// `retry_base_ms` = 50 here, would retry at once), and the timeline says so in the owner's words.
#[tokio::test(flavor = "multi_thread")]
async fn a_shops_retry_after_is_waited_for() {
    // `retry_max_ms` (400 in the other tests) caps a shop's Retry-After: room for 2 s here.
    let (dir, alipay, shop) = stubs("hook-retry-after").await;
    let host = TestHost::start(&dir, |port| {
        config(port, &alipay, &shop).replace("retry_max_ms = 400", "retry_max_ms = 5000")
    })
    .await;
    let w = World { host, alipay, shop };
    // Busy the first time, then fine: one handler, so no answer can change under a request.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    w.shop.answer(
        move |_| match counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => (503, b"busy".to_vec()),
            _ => (200, b"ok".to_vec()),
        },
    );
    w.shop.answer_headers(&[("retry-after", "2")]);
    let url = w.host.url("/v1/merchants/busy");
    let r = send_json(
        "PUT",
        &url,
        Some(TOKEN),
        &json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER,
               "gateway_url": w.alipay.gateway_url(), "notify_verify_url": w.alipay.verify_url(),
               "shop_webhook_url": w.shop.url("/hook"), "shop_webhook_secret": "0123456789abcdefXYZ"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(create(&w, "busy", order("RA1", "1.00")).await.status, 201);
    w.alipay.issue("n-RA1");
    let r = notify(
        &w,
        "busy",
        &alipay::md5_notify_body(&trade("RA1", "1.00", "n-RA1"), MD5_KEY),
    )
    .await;
    assert_eq!(r.text(), "success");
    wait_for(|| !hooks(&w).is_empty(), "a first (busy) attempt").await;
    let first = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hooks(&w).len(),
        1,
        "tried again before the shop's Retry-After"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while hooks(&w).len() < 2 {
        assert!(Instant::now() < deadline, "{}", w.host.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 2 s after the busy answer; `first` was read up to a poll (50 ms) after it.
    assert!(
        first.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        first.elapsed()
    );
    assert!(
        w.host
            .log_text()
            .contains("the shop answered HTTP 503 (Retry-After: 2 s)"),
        "{}",
        w.host.log_text()
    );
}

/// `merchant add` refuses an id that payhost.toml configures: `serve` applies the table over the
/// slot at every start, so the slot's origins would be replaced without a word.
#[test]
fn merchant_add_refuses_a_merchant_the_configuration_defines() {
    let dir = temp_dir("add-configured");
    let config = dir.join("payhost.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[merchants.shop1]\npartner = \"2088101122136241\"\nkey = \"{}\"\nseller_email = \"seller@example.com\"\nshop_origins = [\"https://myshop.example\"]\n",
            config_head(free_port(), TOKEN, ""),
            conformance::alipay::MD5_KEY
        ),
    )
    .unwrap();
    let out = merchant_add(&config, "shop1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("shop1 is configured in") && err.contains("[merchants.shop1]"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no token printed");
    // Another id is added as before.
    let other = merchant_add(&config, "shop2");
    assert!(other.status.success(), "{other:?}");
}

/// The commands that may make the database say what is wrong with its folder, as `serve` and
/// `check-config` do, instead of SQLite's "unable to open database file … Error code 14".
#[test]
fn a_command_that_makes_the_database_names_a_missing_folder() {
    let dir = temp_dir("no-db-folder");
    let config = dir.join("payhost.toml");
    std::fs::write(
        &config,
        config_head(free_port(), TOKEN, "").replace(
            "database = \"payhost.db\"",
            "database = \"nodir/payhost.db\"",
        ),
    )
    .unwrap();
    let out = merchant_add(&config, "m1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nodir") && err.contains("does not exist") && !err.contains("code 14"),
        "{err}"
    );
}

/// `payhost merchant add ID --shop-origin https://ID.example --config CONFIG`.
fn merchant_add(config: &std::path::Path, id: &str) -> std::process::Output {
    std::process::Command::new(payhost_binary())
        .args(["merchant", "add", id, "--shop-origin"])
        .arg(format!("https://{id}.example"))
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// `merchant add` run as root in a folder that belongs to payhost's user (as the README's
/// deployment sets it up) gives the database it creates to that user: `payhost serve`, running
/// as that user, can open it. Run as anyone else, the test has nothing to show.
#[test]
fn a_database_made_by_root_belongs_to_the_owner_of_its_folder() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir("db-owner");
    let probe = dir.join("probe");
    std::fs::write(&probe, "").unwrap();
    if std::fs::metadata(&probe).unwrap().uid() != 0 {
        eprintln!("not root: nothing to show");
        return;
    }
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let config = dir.join("payhost.toml");
    std::fs::write(&config, config_head(free_port(), TOKEN, "")).unwrap();
    let out = merchant_add(&config, "m1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("gave it to the owner of its folder (uid 65534)"),
        "{err}"
    );
    let db = std::fs::metadata(dir.join("payhost.db")).unwrap();
    assert_eq!((db.uid(), db.gid()), (65534, 65534));
    // A database that was there already is left as it is.
    let again = merchant_add(&config, "m2");
    assert!(!String::from_utf8_lossy(&again.stderr).contains("gave it"));

    // The folder's owner plants `payhost.db` as a link to a file root would make for them
    // (/etc/ld.so.preload, say): no database is made through it, nothing is handed over.
    let planted = temp_dir("db-owner-planted");
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let target = temp_dir("db-owner-target").join("preload");
    std::os::unix::fs::symlink(&target, planted.join("payhost.db")).unwrap();
    let config = planted.join("payhost.toml");
    std::fs::write(&config, config_head(free_port(), TOKEN, "")).unwrap();
    let out = merchant_add(&config, "m1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is a symbolic link to a file that does not exist"),
        "{err}"
    );
    assert!(!target.exists(), "a file was made through the link");
}

/// Every connection is a file descriptor: an open-files limit below `[limits] max_connections`
/// turns connections away with EMFILE before payhost's own limit, so `serve` says so at start.
#[test]
fn serve_warns_of_an_open_files_limit_below_its_connections() {
    let dir = temp_dir("low-nofile");
    let config = dir.join("payhost.toml");
    std::fs::write(&config, config_head(free_port(), TOKEN, "")).unwrap();
    let log = dir.join("serve.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 300 && exec '{}' serve --config '{}' 2>'{}'",
            payhost_binary().display(),
            config.display(),
            log.display()
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("open-files limit") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("open_files_limit=300")
            && text.contains("LimitNOFILE=")
            && text.contains("max_connections=1024"),
        "{text}"
    );
}
