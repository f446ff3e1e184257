//! The whole flow through the sandbox gateway, over HTTP: `payhost demo` (B2C, C2C and RSA
//! merchants), every fault switch, notify retries on the sped-up clock, and the mistakes of the
//! protocol reference that the sandbox must refuse.

use alipay_wap_plugin::sign;
use conformance::alipay::cashier_token;
use conformance::host::{
    admin_login, free_port, get, post_form, request, send_json, spawn_payhost, temp_dir, Demo,
    Reply, ADMIN_PASSWORD,
};
use conformance::repo_root;
use conformance::stub::{Seen, StubServer};
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "demo-test-token-0123456789";

/// `payhost demo` on a free port, with a fast sandbox clock.
fn demo(name: &str, speed: u32) -> Demo {
    let dir = temp_dir(name);
    let db = dir.join("demo.db").display().to_string();
    spawn_payhost(
        &dir,
        &[
            "demo",
            "--api-token",
            TOKEN,
            "--admin-password",
            ADMIN_PASSWORD,
            "--sandbox-speed",
            &speed.to_string(),
            "--database",
            &db,
        ],
    )
}

fn location(r: &Reply) -> String {
    assert_eq!(r.status, 302, "{}", r.text());
    r.header("location").unwrap()
}

/// Buys a product in the demo shop and pays in the sandbox cashier; returns (out_trade_no, the
/// host's return redirect to the shop).
async fn buy_and_pay(d: &Demo, product: &str) -> (String, String) {
    let pay_url = location(&post_form(&format!("{}/shop/buy/{product}", d.base), "").await);
    assert!(pay_url.contains("service=alipay.wap.auth.authAndExecute"));
    let cashier = get(&pay_url, None).await;
    assert_eq!(cashier.status, 200);
    let page = cashier.text();
    assert!(page.contains("确认付款") && page.contains("取消"), "{page}");
    let token = cashier_token(&page);
    let callback = location(
        &post_form(
            &format!("{}/sandbox/cashier/pay", d.base),
            &format!("token={token}&buyer=13900001111"),
        )
        .await,
    );
    assert!(
        callback.contains("/return/") && callback.contains("?out_trade_no="),
        "{callback}"
    );
    let out_trade_no = callback
        .split("out_trade_no=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let shop_return = location(&get(&callback, None).await);
    (out_trade_no, shop_return)
}

async fn status(d: &Demo, merchant: &str, no: &str) -> String {
    let r = get(
        &format!("{}/v1/merchants/{merchant}/payments/{no}", d.base),
        Some(TOKEN),
    )
    .await;
    r.json()["status"].as_str().unwrap_or("").to_owned()
}

async fn wait_status(d: &Demo, merchant: &str, no: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(d, merchant, no).await;
        if s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{no} stayed {s}, wanted {want}:\n{}",
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn faults(d: &Demo, f: serde_json::Value) {
    let r = send_json("POST", &format!("{}/sandbox/faults", d.base), None, &f).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn sandbox_state(d: &Demo) -> serde_json::Value {
    get(&format!("{}/sandbox/state", d.base), None).await.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn b2c_c2c_and_rsa_through_the_sandbox() {
    let d = demo("flows", 1);
    for (product, merchant) in [("tea", "demo"), ("papercut", "market"), ("cup", "rsa-shop")] {
        let (no, shop_return) = buy_and_pay(&d, product).await;
        wait_status(&d, merchant, &no, "TRADE_SUCCESS").await;
        let page = get(&shop_return, None).await.text();
        assert!(page.contains("支付成功 paid"), "{product}: {page}");
    }
    // payhost applies a notify before it answers `success`, and the sandbox marks it
    // acknowledged once it has read that answer: the last one may be a moment behind.
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = loop {
        let state = sandbox_state(&d).await;
        let all = state["notifies"]
            .as_array()
            .is_some_and(|v| v.iter().all(|n| n["acknowledged"] == true));
        if all || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let notifies = state["notifies"].as_array().unwrap();
    assert_eq!(notifies.len(), 3);
    assert!(
        notifies
            .iter()
            .all(|n| n["acknowledged"] == true && n["sends"] == 1),
        "{state}"
    );
    // The C2C order paid the marketplace seller named by the shop.
    let trades = state["trades"].as_array().unwrap();
    assert!(trades
        .iter()
        .any(|t| t["seller"] == "13800138000" && t["status"] == "TRADE_SUCCESS"));
    // The pay channels come from the sandbox's GBK mobile.merchant.paychannel answer.
    let channels = get(
        &format!("{}/v1/merchants/demo/channels", d.base),
        Some(TOKEN),
    )
    .await;
    assert_eq!(channels.status, 200, "{}", channels.text());
    let c = channels.json();
    assert_eq!(c["channels"][0]["name"], "信用卡快捷支付");
    assert!(c["channels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["cashier_code"] == "DEBITCARD_ABC" && x["parent"] == "DEBITCARD"));
    // A shop's Chinese buyer id: the query declares GBK, and the sandbox reads and checks it as
    // Alipay does, over GBK bytes (a UTF-8 signature is ILLEGAL_SIGN there).
    let channels = get(
        &format!(
            "{}/v1/merchants/demo/channels?out_user=%E7%94%A8%E6%88%B7%E4%B8%80",
            d.base
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(channels.status, 200, "{}", channels.text());
    assert_eq!(channels.json()["channels"][0]["name"], "信用卡快捷支付");
    // Admin shows the payments and notifications.
    let (cookie, _) = admin_login(&d.base, ADMIN_PASSWORD).await;
    let admin = request(
        "GET",
        &format!("{}/admin/merchants/demo", d.base),
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await
    .text();
    assert!(
        admin.contains("TRADE_SUCCESS") && admin.contains("applied"),
        "{admin}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notifies_are_retried_on_the_real_schedule_until_acknowledged() {
    let d = demo("retries", 500);
    // The first three sends are lost: the 4th (at +22 minutes of sandbox time) gets through.
    faults(&d, json!({"drop_first_notifies": 3})).await;
    let (no, _) = buy_and_pay(&d, "tea").await;
    wait_status(&d, "demo", &no, "TRADE_SUCCESS").await;
    let state = sandbox_state(&d).await;
    let n = &state["notifies"][0];
    assert_eq!(n["sends"], 4);
    assert_eq!(n["acknowledged"], true);
    let sent: Vec<u64> = n["sent_at"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let first = sent[0];
    for (i, want) in [0u64, 120, 720, 1320].iter().enumerate() {
        let got = sent[i] - first;
        assert!(
            got >= *want && got < want + 60,
            "send {i} at +{got}s, schedule says +{want}s"
        );
    }

    // The host refuses while notify_verify is down (answers 500); Alipay's retries bring it
    // through once it is back, and the payment changes exactly once.
    faults(&d, json!({})).await;
    let pay_url = location(&post_form(&format!("{}/shop/buy/tea", d.base), "").await);
    let page = get(&pay_url, None).await.text();
    let token = cashier_token(&page);
    faults(&d, json!({"answer_500": true})).await;
    let cb = location(
        &post_form(
            &format!("{}/sandbox/cashier/pay", d.base),
            &format!("token={token}"),
        )
        .await,
    );
    let no2 = cb
        .split("out_trade_no=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status(&d, "demo", &no2).await,
        "WAIT_BUYER_PAY",
        "notify_verify is down: not confirmed"
    );
    faults(&d, json!({})).await;
    wait_status(&d, "demo", &no2, "TRADE_SUCCESS").await;
    let p = get(
        &format!("{}/v1/merchants/demo/payments/{no2}", d.base),
        Some(TOKEN),
    )
    .await
    .json();
    let outcomes: Vec<&str> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    // The refused attempts are stored too; unverified, they name no order, so they are counted.
    let metrics = get(&format!("{}/metrics", d.base), Some(TOKEN))
        .await
        .text();
    assert!(
        metrics.contains("payhost_notifications_total{outcome=\"verify_unreachable\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_switches() {
    let d = demo("faults", 1);
    // The gateway answers 500: the shop's create is a 502 naming the failure.
    faults(&d, json!({"answer_500": true})).await;
    let r = send_json(
        "POST",
        &format!("{}/v1/merchants/demo/payments", d.base),
        Some(TOKEN),
        &json!({"out_trade_no": "F500", "subject": "x", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(r.status, 502);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("500"));

    // Slow replies still work within the component's time limit.
    faults(&d, json!({"delay_ms": 300})).await;
    let started = Instant::now();
    let r = send_json(
        "POST",
        &format!("{}/v1/merchants/demo/payments", d.base),
        Some(TOKEN),
        &json!({"out_trade_no": "FSLOW", "subject": "x", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The return without any notify: the shop sees "waiting", the order stays unpaid.
    faults(&d, json!({"return_without_notify": true})).await;
    let (no, shop_return) = buy_and_pay(&d, "tea").await;
    assert!(
        shop_return.contains("status=WAIT_BUYER_PAY"),
        "{shop_return}"
    );
    assert!(get(&shop_return, None).await.text().contains("waiting"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status(&d, "demo", &no).await,
        "WAIT_BUYER_PAY",
        "a return alone never marks an order paid"
    );

    // The notify before the return: the shop lands on a paid order.
    faults(&d, json!({"notify_before_return": true})).await;
    let (no, shop_return) = buy_and_pay(&d, "tea").await;
    assert!(
        shop_return.contains("status=TRADE_SUCCESS"),
        "{shop_return}"
    );
    assert_eq!(status(&d, "demo", &no).await, "TRADE_SUCCESS");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_trade_is_closed() {
    let d = demo("expire", 3_600);
    let r = send_json(
        "POST",
        &format!("{}/v1/merchants/demo/payments", d.base),
        Some(TOKEN),
        &json!({"out_trade_no": "EXP1", "subject": "x", "total_fee": "1.00", "return_url": "https://shop.example/r", "pay_expire": 1}),
    )
    .await;
    let pay_url = r.json()["pay_url"].as_str().unwrap().to_owned();
    // One sandbox minute is 1/60 s here.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let page = get(&pay_url, None).await.text();
    assert!(page.contains("交易已关闭"), "{page}");
    wait_status(&d, "demo", "EXP1", "TRADE_CLOSED").await;
}

// ---------------------------------------------------------------------------------------------
// The sandbox alone, driven by hand-made requests: the mistakes the reference lists.

const PARTNER: &str = "2088000000009999";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz012345";

fn sandbox() -> Demo {
    let mut d = spawn_payhost(
        &temp_dir("sandbox"),
        &["sandbox", "--md5-merchant", &format!("{PARTNER}:{KEY}")],
    );
    d.base.push_str("/sandbox");
    d
}

fn req_data(subject: &str, notify_url: &str) -> String {
    format!(
        "<direct_trade_create_req><notify_url>{notify_url}</notify_url><call_back_url>http://shop.example/cb</call_back_url><seller_account_name>s@example.com</seller_account_name><out_trade_no>T{}</out_trade_no><subject>{subject}</subject><total_fee>1.00</total_fee></direct_trade_create_req>",
        free_port()
    )
}

/// A create call: `signed` are the pairs the signature covers, `sent` what goes on the wire.
async fn create_raw(
    s: &Demo,
    sent: &[(&str, String)],
    signed: &[(&str, String)],
) -> Vec<(String, String)> {
    let presign = sign::sorted_link_string(signed.iter().map(|(k, v)| (*k, v.as_str())));
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in sent {
        body.append_pair(k, v);
    }
    body.append_pair("sign", &sign::md5_sign(&presign, KEY));
    let r = post_form(&format!("{}/gateway", s.base), &body.finish()).await;
    form_urlencoded::parse(&r.body).into_owned().collect()
}

fn common(req_data: String) -> Vec<(&'static str, String)> {
    vec![
        ("service", "alipay.wap.trade.create.direct".into()),
        ("format", "xml".into()),
        ("v", "2.0".into()),
        ("partner", PARTNER.into()),
        ("req_id", format!("{}", free_port())),
        ("sec_id", "MD5".into()),
        ("req_data", req_data),
    ]
}

fn error_code(reply: &[(String, String)]) -> Option<String> {
    let err = reply.iter().find(|(k, _)| k == "res_error")?.1.clone();
    Some(err.split("<code>").nth(1)?.split('<').next()?.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_refuses_each_mistake_of_the_reference() {
    let s = sandbox();
    // The correct call works, `_input_charset` included in the signature.
    let mut good = common(req_data("good", "http://shop.example/n"));
    good.push(("_input_charset", "utf-8".into()));
    let reply = create_raw(&s, &good, &good).await;
    assert!(reply.iter().any(|(k, _)| k == "res_data"), "{reply:?}");
    // The wire order of real captures, not sorted.
    let keys: Vec<&str> = reply.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["res_data", "service", "sec_id", "partner", "req_id", "sign", "v"]
    );

    // `_input_charset` sent but left out of the signed set.
    let mut sent = common(req_data("x", "http://shop.example/n"));
    let signed = sent.clone();
    sent.push(("_input_charset", "utf-8".into()));
    assert_eq!(
        error_code(&create_raw(&s, &sent, &signed).await).as_deref(),
        Some("0007")
    );

    // An unescaped `&` in req_data.
    let bad = common(req_data("Tom & Jerry", "http://shop.example/n"));
    assert_eq!(
        error_code(&create_raw(&s, &bad, &bad).await).as_deref(),
        Some("0009")
    );

    // `sign_type` on a wappaygw call is ignored (not signed, not refused).
    let mut with_type = common(req_data("typed", "http://shop.example/n"));
    let signed = with_type.clone();
    with_type.push(("sign_type", "MD5".into()));
    let reply = create_raw(&s, &with_type, &signed).await;
    assert!(reply.iter().any(|(k, _)| k == "res_data"), "{reply:?}");

    // An empty parameter.
    let mut empty = common(req_data("e", "http://shop.example/n"));
    empty.push(("out_user", String::new()));
    assert_eq!(
        error_code(&create_raw(&s, &empty, &empty).await).as_deref(),
        Some("0001")
    );

    // A missing common parameter, an unknown partner, a bad amount.
    let mut missing = common(req_data("m", "http://shop.example/n"));
    missing.retain(|(k, _)| *k != "req_id");
    assert_eq!(
        error_code(&create_raw(&s, &missing, &missing).await).as_deref(),
        Some("0001")
    );
    let mut stranger = common(req_data("p", "http://shop.example/n"));
    stranger[3].1 = "2088111111111111".into();
    assert_eq!(
        error_code(&create_raw(&s, &stranger, &stranger).await).as_deref(),
        Some("0005")
    );
    let fee =
        common(req_data("f", "http://shop.example/n").replace("<total_fee>1.00", "<total_fee>1e3"));
    assert_eq!(
        error_code(&create_raw(&s, &fee, &fee).await).as_deref(),
        Some("0009")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_notifies_are_signed_in_the_fixed_order_not_sorted() {
    let s = sandbox();
    let receiver = StubServer::start(|_: &Seen| (200, b"fail".to_vec())).await;
    let call = common(req_data("notify me", &receiver.url("/notify")));
    let reply = create_raw(&s, &call, &call).await;
    let res_data = &reply.iter().find(|(k, _)| k == "res_data").unwrap().1;
    let token = res_data
        .split("<request_token>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    post_form(
        &format!("{}/cashier/pay", s.base),
        &format!("token={token}"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.requests().is_empty() {
        assert!(Instant::now() < deadline, "no notify");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = receiver.requests()[0].clone();
    let p = n.params();
    let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["service", "sign", "sec_id", "v", "notify_data"]);
    let field = |k: &str| p.iter().find(|(key, _)| key == k).unwrap().1.clone();
    assert_eq!(field("v"), "1.0");
    let data = field("notify_data");
    let fixed = sign::notify_link_string(&field("service"), &field("v"), &field("sec_id"), &data);
    assert!(
        sign::md5_verify(&fixed, KEY, &field("sign")),
        "fixed order verifies"
    );
    let sorted = sign::sorted_link_string(p.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(
        !sign::md5_verify(&sorted, KEY, &field("sign")),
        "the sorted string must not verify"
    );
    let elements = data.matches("</").count() - 1;
    assert_eq!(elements, 20, "all 20 notify_data fields: {data}");
    // notify_verify: true while unacknowledged (the receiver answered `fail`).
    let id = data
        .split("<notify_id>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let v = get(
        &format!(
            "{}/mapi?service=notify_verify&partner={PARTNER}&notify_id={id}",
            s.base
        ),
        None,
    )
    .await;
    assert_eq!(v.text(), "true");
    // Alipay confirms a notify only for the partner it was sent for: another merchant's
    // (a notification routed to the wrong merchant's settings) is not confirmed.
    let v = get(
        &format!(
            "{}/mapi?service=notify_verify&partner=2088000000005555&notify_id={id}",
            s.base
        ),
        None,
    )
    .await;
    assert_eq!(v.text(), "false");
    let v = get(
        &format!(
            "{}/mapi?service=notify_verify&partner={PARTNER}&notify_id=forged",
            s.base
        ),
        None,
    )
    .await;
    assert_eq!(v.text(), "false");
}

/// An independent client, written in Python from the reference's rules alone, drives the sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn an_independent_python_client_pays_through_the_sandbox() {
    let s = sandbox();
    let script = repo_root().join("tests/clients/wap_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--sandbox", &s.base, "--partner", PARTNER, "--key", KEY])
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PAID"), "{stdout}");
}

/// `payhost sandbox --rsa-merchant P --openapi-app APP:SELLER --keys-dir D`, for vendors trying
/// the RSA and open-platform flows without playing Alipay: the keys are made once in D (private
/// keys readable by their owner only) and kept across restarts, the settings to give the
/// component are printed, and a payhost given those key files is paid through the sandbox both
/// ways.
#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_alone_pays_rsa_merchants_and_open_platform_apps() {
    use conformance::host::{config_head, Payhost};
    const RSA_PARTNER: &str = "2088000000007777";
    const APP_ID: &str = "2021000000000009";
    const SELLER_ID: &str = "2088000000000010";
    let dir = temp_dir("sandbox-rsa-open");
    let keys = dir.join("keys");
    let keys_arg = keys.display().to_string();
    let args = [
        "sandbox",
        "--md5-merchant",
        "2088000000006666:abcdefghijklmnopqrstuvwxyz012345",
        "--rsa-merchant",
        RSA_PARTNER,
        "--openapi-app",
        &format!("{APP_ID}:{SELLER_ID}"),
        "--keys-dir",
        &keys_arg,
    ];
    for d in ["first", "second", "host"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let sb = spawn_payhost(&dir.join("first"), &args);
    let printed = std::fs::read_to_string(&sb.log).unwrap();
    // An MD5 merchant's settings too (its key as given, never printed).
    assert!(
        printed.contains("MD5 merchant 2088000000006666: settings partner=2088000000006666 sign_type=MD5 key=<the key given> seller_email=seller@sandbox.example gateway_url=http://")
            && !printed.contains("abcdefghijklmnopqrstuvwxyz012345"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("RSA merchant {RSA_PARTNER}: settings partner={RSA_PARTNER} sign_type=RSA seller_email=seller@sandbox.example private_key=<{keys_arg}/{RSA_PARTNER}/merchant_private.pem>")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("open-platform app {APP_ID}: settings api=openapi app_id={APP_ID} seller_id={SELLER_ID} app_private_key=<{keys_arg}/{APP_ID}/app_private.pem>")),
        "{printed}"
    );
    let kept = |p: &str| std::fs::read_to_string(keys.join(p)).unwrap();
    let first_key = kept(&format!("{APP_ID}/app_private.pem"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join(format!("{RSA_PARTNER}/merchant_private.pem")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the merchant's private key is readable by others"
        );
    }
    // A restart keeps the keys (the settings a component was given stay valid).
    drop(sb);
    let sb = spawn_payhost(&dir.join("second"), &args);
    assert_eq!(kept(&format!("{APP_ID}/app_private.pem")), first_key);
    let base = format!("{}/sandbox", sb.base);

    let port = free_port();
    let config = config_head(port, TOKEN, "")
        + &format!(
            r#"
[merchants.rsa]
partner = "{RSA_PARTNER}"
sign_type = "RSA"
seller_email = "seller@sandbox.example"
private_key_file = "{keys_arg}/{RSA_PARTNER}/merchant_private.pem"
alipay_public_key_file = "{keys_arg}/{RSA_PARTNER}/alipay_public.pem"
gateway_url = "{base}/gateway"
notify_verify_url = "{base}/mapi"
mapi_url = "{base}/mapi"

[merchants.open]
[merchants.open.settings]
api = "openapi"
app_id = "{APP_ID}"
seller_id = "{SELLER_ID}"
app_private_key_file = "{keys_arg}/{APP_ID}/app_private.pem"
alipay_public_key_file = "{keys_arg}/{APP_ID}/alipay_public.pem"
gateway = "{base}/openapi/gateway.do"
"#
        );
    let host = Payhost::start(&dir.join("host"), &config);
    let create = async |m: &str, no: &str| -> serde_json::Value {
        let r = send_json(
            "POST",
            &host.url(&format!("/v1/merchants/{m}/payments")),
            Some(TOKEN),
            &json!({"out_trade_no": no, "subject": "沙箱", "total_fee": "3.00",
                    "return_url": "https://shop.example/r"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    let paid = async |m: &str, no: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = get(
                &host.url(&format!("/v1/merchants/{m}/payments/{no}")),
                Some(TOKEN),
            )
            .await
            .json();
            if v["status"] == "TRADE_SUCCESS" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{m} {no} not paid: {v}\n{}",
                host.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // RSA: the sandbox checks the merchant's signature, and signs the notify with its own key.
    let created = create("rsa", "SB-RSA-1").await;
    let cashier = get(created["pay_url"].as_str().unwrap(), None).await;
    assert_eq!(cashier.status, 200, "{}", cashier.text());
    let r = post_form(
        &format!("{base}/cashier/pay"),
        &format!("token={}&buyer=13900001111", cashier_token(&cashier.text())),
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    paid("rsa", "SB-RSA-1").await;
    // The open platform: the app's RSA2 signature, the sandbox's RSA2 notify.
    let created = create("open", "SB-OPEN-1").await;
    let cashier = get(created["pay_url"].as_str().unwrap(), None).await;
    assert_eq!(cashier.status, 200, "{}", cashier.text());
    let r = post_form(
        &format!("{base}/openapi/cashier/pay"),
        &format!("token={}", cashier_token(&cashier.text())),
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    paid("open", "SB-OPEN-1").await;

    // A keys folder missing a file: the sandbox refuses to start and names it.
    std::fs::remove_file(keys.join(format!("{RSA_PARTNER}/alipay_public.pem"))).unwrap();
    let out = std::process::Command::new(conformance::host::payhost_binary())
        .args(args)
        .args(["--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not alipay_public.pem"), "{err}");
}

/// Creates of one new order racing with two amounts: the provider refuses the loser's as its
/// duplicate, and the shop hears the conflict (409 on `out_trade_no`), as without the race, not
/// a gateway error; every 2xx names the amount stored. (A review sent 10 at once: 502s.)
#[tokio::test(flavor = "multi_thread")]
async fn racing_creates_of_one_order_with_two_amounts_are_a_conflict() {
    let d = demo("create-race", 1);
    let url = format!("{}/v1/merchants/demo/payments", d.base);
    for round in 0..3 {
        let no = format!("RACE-{round}");
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..10 {
            let (url, no, base) = (url.clone(), no.clone(), d.base.clone());
            let fee = if i % 2 == 0 { "5.00" } else { "6.00" };
            calls.spawn(async move {
                let body = json!({"out_trade_no": no, "subject": "race", "total_fee": fee,
                    "return_url": format!("{base}/shop/return")});
                (fee, send_json("POST", &url, Some(TOKEN), &body).await)
            });
        }
        let answers = calls.join_all().await;
        let stored = get(&format!("{url}/{no}"), Some(TOKEN)).await.json()["total_fee"]
            .as_str()
            .unwrap()
            .to_owned();
        for (fee, r) in &answers {
            match r.status {
                200 | 201 => assert_eq!(*fee, stored, "{}", r.text()),
                409 => {
                    assert_ne!(*fee, stored, "{}", r.text());
                    assert_eq!(r.json()["error"]["field"], "out_trade_no", "{}", r.text());
                }
                other => panic!("{no} at {fee}: {other} {}", r.text()),
            }
        }
    }
}

/// Many copies of one create, each waiting for the provider in turn, keep no slot of the shop API
/// from other orders: another order's create is answered in about its own provider call (a
/// review: 40 copies with a 1 s gateway made another merchant's create take 26 s).
#[tokio::test(flavor = "multi_thread")]
async fn copies_of_one_create_do_not_hold_up_other_orders() {
    let d = demo("create-copies", 1);
    faults(&d, json!({"delay_ms": 1000})).await;
    let url = format!("{}/v1/merchants/demo/payments", d.base);
    let mut copies = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (url, base) = (url.clone(), d.base.clone());
        copies.spawn(async move {
            let body = json!({"out_trade_no": "COPY-1", "subject": "copy", "total_fee": "1.00",
                "return_url": format!("{base}/shop/return")});
            send_json("POST", &url, Some(TOKEN), &body).await.status
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let other = send_json(
        "POST",
        &url,
        Some(TOKEN),
        &json!({"out_trade_no": "OTHER-1", "subject": "other", "total_fee": "2.00",
            "return_url": format!("{}/shop/return", d.base)}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(other.status, 201, "{}", other.text());
    assert!(
        took < Duration::from_secs(4),
        "another order waited {took:?}"
    );
    faults(&d, json!({"delay_ms": 0})).await;
    for status in copies.join_all().await {
        assert!(status == 200 || status == 201, "{status}");
    }
}
