//! The products beyond WAP over real sockets: PC instant pay end to end through what `payhost
//! demo` starts (in-process: `TestHost::demo`) and its sandbox (signed redirect, cashier, PC
//! return, flat PC notify + `notify_verify`), the phone/desktop switch of `product = "auto"`, and
//! app secure pay's order string, whose signature is checked here with `openssl` (an
//! implementation the component does not share).

use conformance::host::{config_head, get, post_form, request, send_json, temp_dir};
use conformance::testhost::TestHost;
use conformance::{TEST_PRIVATE_KEY, TEST_PUBLIC_KEY};
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "products-api-token-0123456789";
const IPHONE: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const DESKTOP: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36";

/// `payhost demo --api-token TOKEN --sandbox-speed 60`, in-process.
async fn demo(name: &str) -> TestHost {
    TestHost::demo(&temp_dir(name), TOKEN, 60.0).await
}

async fn create(d: &TestHost, merchant: &str, body: serde_json::Value) -> serde_json::Value {
    let r = send_json(
        "POST",
        &d.url(&format!("/v1/merchants/{merchant}/payments")),
        Some(TOKEN),
        &body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

async fn wait_status(d: &TestHost, merchant: &str, no: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = get(
            &d.url(&format!("/v1/merchants/{merchant}/payments/{no}")),
            Some(TOKEN),
        )
        .await
        .json();
        if p["status"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{no} is {} not {want}",
            p["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pc_instant_pay_through_the_sandbox() {
    let d = demo("pc-pay").await;
    for merchant in ["demo", "rsa-shop"] {
        let no = format!("PC{}", merchant.len());
        let created = create(
            &d,
            merchant,
            json!({"out_trade_no": no, "subject": "台式机 & <桌面>", "total_fee": "88.80", "return_url": "https://shop.example/r", "product": "pc"}),
        )
        .await;
        assert_eq!(created["product"], "pc");
        let pay_url = created["pay_url"].as_str().unwrap().to_owned();
        assert!(
            pay_url.contains("service=create_direct_pay_by_user"),
            "{pay_url}"
        );
        // The sandbox checks the redirect's sorted signature and shows its cashier.
        let page = get(&pay_url, None).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let token = conformance::alipay::cashier_token(&page.text());
        let r = post_form(&d.url("/sandbox/cashier/pay"), &format!("token={token}")).await;
        assert_eq!(r.status, 302, "{}", r.text());
        // The PC return (flat, sorted signature) goes through payhost to the shop.
        let back = r.header("location").unwrap();
        assert!(back.contains("is_success=T"), "{back}");
        let r = request("GET", &back, &[], Vec::new()).await;
        assert_eq!(r.status, 302, "{}", r.text());
        let shop = r.header("location").unwrap();
        assert!(shop.starts_with("https://shop.example/r?"), "{shop}");
        // The flat PC notify, confirmed with notify_verify, pays it.
        wait_status(&d, merchant, &no, "TRADE_SUCCESS").await;
        let p = get(
            &d.url(&format!("/v1/merchants/{merchant}/payments/{no}")),
            Some(TOKEN),
        )
        .await
        .json();
        assert_eq!(p["total_fee"], "88.80");
        assert_eq!(
            p["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["outcome"] == "applied")
                .count(),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_sends_phones_to_wap_and_desktops_to_pc() {
    let d = demo("auto").await;
    let phone = create(
        &d,
        "demo",
        json!({"out_trade_no": "AUTO1", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "product": "auto", "user_agent": IPHONE}),
    )
    .await;
    assert_eq!(phone["product"], "wap");
    assert!(phone["pay_url"]
        .as_str()
        .unwrap()
        .contains("alipay.wap.auth.authAndExecute"));
    let desk = create(
        &d,
        "demo",
        json!({"out_trade_no": "AUTO2", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "product": "auto", "user_agent": DESKTOP}),
    )
    .await;
    assert_eq!(desk["product"], "pc");
    assert!(desk["pay_url"]
        .as_str()
        .unwrap()
        .contains("create_direct_pay_by_user"));
    // No User-Agent at all: the phone cashier, as before the switch existed.
    let none = create(
        &d,
        "demo",
        json!({"out_trade_no": "AUTO3", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "product": "auto"}),
    )
    .await;
    assert_eq!(none["product"], "wap");
    let r = send_json(
        "POST",
        &d.url("/v1/merchants/demo/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "AUTO4", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "product": "fax"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["field"], "product");
}

#[tokio::test(flavor = "multi_thread")]
async fn app_pay_answers_an_order_string_signed_for_the_sdk() {
    let dir = temp_dir("app-pay");
    std::fs::write(dir.join("merchant.pem"), TEST_PRIVATE_KEY).unwrap();
    std::fs::write(dir.join("alipay.pem"), TEST_PUBLIC_KEY).unwrap();
    let config = |port| {
        config_head(port, TOKEN, "")
            + r#"
[merchants.app]
partner = "2088101122136241"
seller_email = "seller@example.com"
sign_type = "RSA"
private_key_file = "merchant.pem"
alipay_public_key_file = "alipay.pem"

[merchants.md5]
partner = "2088101122136241"
key = "10000000000000000000000000000000"
seller_email = "seller@example.com"
"#
    };
    let host = TestHost::start(&dir, config).await;
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/app/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "APP1", "subject": "应用内购买", "total_fee": "6.00", "return_url": "https://shop.example/r", "product": "app"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["product"], "app");
    let order = v["order_string"]
        .as_str()
        .expect("an order string")
        .to_owned();
    // key="value" pairs; the signed part is everything before &sign=" ([EXTRA §1.2]).
    for field in [
        "partner=\"2088101122136241\"",
        "out_trade_no=\"APP1\"",
        "total_fee=\"6.00\"",
        "service=\"mobile.securitypay.pay\"",
        "payment_type=\"1\"",
    ] {
        assert!(order.contains(field), "{field} in {order}");
    }
    let (content, tail) = order.split_once("&sign=\"").expect("&sign=\"");
    let (sign, rest) = tail.split_once('"').unwrap();
    assert_eq!(rest, "&sign_type=\"RSA\"");
    let sign = form_urlencoded::parse(format!("s={sign}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sign.as_bytes())
        .unwrap();
    std::fs::write(dir.join("content.txt"), content).unwrap();
    std::fs::write(dir.join("sig.bin"), sig).unwrap();
    std::fs::write(dir.join("pub.pem"), TEST_PUBLIC_KEY).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "dgst",
            "-sha1",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.bin",
            "content.txt",
        ])
        .current_dir(&dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // App pay needs RSA: an MD5 merchant is told which field and why.
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/md5/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "APP2", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "product": "app"}),
    )
    .await;
    assert!(r.status >= 400, "{}", r.text());
    assert!(r.text().contains("sign_type"), "{}", r.text());
    // The SDK's synchronous result is a hint, never a payment.
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/app/payments/APP1/app-result"),
        Some(TOKEN),
        &json!({"result": "resultStatus={6001};memo={用户取消};result={}"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["verified"], false);
    assert_eq!(r.json()["status"], "WAIT_BUYER_PAY");
}

#[tokio::test(flavor = "multi_thread")]
async fn app_pay_through_the_sandbox_sdk_in_both_notify_generations() {
    let d = demo("app-sandbox").await;
    for (no, generation, final_status) in [
        ("APPB1", "B", "TRADE_SUCCESS"),
        ("APPA1", "A", "TRADE_FINISHED"),
    ] {
        let created = create(
            &d,
            "rsa-shop",
            json!({"out_trade_no": no, "subject": "应用内购买", "total_fee": "6.00", "return_url": "https://shop.example/r", "product": "app"}),
        )
        .await;
        let order = created["order_string"].as_str().unwrap().to_owned();
        // The app hands the order string to the SDK; the sandbox's stand-in checks its signature,
        // pays, and answers the SDK's synchronous result.
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("order_string", &order)
            .append_pair("generation", generation)
            .finish();
        let r = post_form(&d.url("/sandbox/app/pay"), &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let result = r.text();
        assert!(result.starts_with("resultStatus={9000}"), "{result}");
        // The notify of that generation (A: notify_data, no notify_verify; B: flat sorted +
        // notify_verify) pays the order.
        wait_status(&d, "rsa-shop", no, final_status).await;
        // The SDK's result, posted by the app: verified, a hint only.
        let r = send_json(
            "POST",
            &d.url(&format!("/v1/merchants/rsa-shop/payments/{no}/app-result")),
            Some(TOKEN),
            &json!({ "result": result }),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["verified"], true, "{}", r.text());
        assert_eq!(r.json()["result_status"], "9000");
    }
    // A tampered order string is refused by the SDK stand-in, and nothing is paid.
    let created = create(
        &d,
        "rsa-shop",
        json!({"out_trade_no": "APPX", "subject": "s", "total_fee": "6.00", "return_url": "https://shop.example/r", "product": "app"}),
    )
    .await;
    let tampered = created["order_string"]
        .as_str()
        .unwrap()
        .replace("total_fee=\"6.00\"", "total_fee=\"0.01\"");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("order_string", &tampered)
        .finish();
    let r = post_form(&d.url("/sandbox/app/pay"), &body).await;
    assert!(r.text().starts_with("resultStatus={4001}"), "{}", r.text());
}
