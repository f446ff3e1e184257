//! Alipay's open platform end to end, over HTTP: `payhost demo`'s `open-shop` merchant (APPID +
//! RSA2) pays through the sandbox's `gateway.do` cashier; the sandbox's V1-signed notify marks the
//! order paid once; a lost notify is recovered by `alipay.trade.query`; a buyer who cancels
//! lands back in the shop. The sandbox signs with its own code (no line shared with the
//! component), so a signing mistake on either side fails here.

use conformance::alipay::cashier_token;
use conformance::host::{
    get, post_form, send_json, spawn_payhost, temp_dir, Demo, Reply, ADMIN_PASSWORD,
};
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "demo-test-token-0123456789";
const MERCHANT: &str = "open-shop";

fn demo(name: &str) -> Demo {
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
            "--database",
            &db,
        ],
    )
}

fn location(r: &Reply) -> String {
    assert_eq!(r.status, 302, "{}", r.text());
    r.header("location").unwrap()
}

async fn status(d: &Demo, no: &str) -> serde_json::Value {
    get(
        &format!("{}/v1/merchants/{MERCHANT}/payments/{no}", d.base),
        Some(TOKEN),
    )
    .await
    .json()
}

async fn wait_status(d: &Demo, no: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(d, no).await;
        if s["status"] == want {
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

/// The shop's buy button: payhost's pay URL is the signed `alipay.trade.wap.pay` GET on the
/// sandbox's gateway; the gateway checks the app's RSA2 signature and shows the cashier.
async fn open_cashier(d: &Demo) -> (String, String) {
    let pay_url = location(&post_form(&format!("{}/shop/buy/fan", d.base), "").await);
    assert!(
        pay_url.contains("/sandbox/openapi/gateway.do?"),
        "{pay_url}"
    );
    assert!(
        pay_url.contains("sign_type=RSA2") && pay_url.contains("app_id=2021000000000001"),
        "{pay_url}"
    );
    let cashier = get(&pay_url, None).await;
    let page = cashier.text();
    assert_eq!(cashier.status, 200, "{page}");
    assert!(
        page.contains("确认付款") && page.contains("25.00"),
        "{page}"
    );
    let out_trade_no = pay_url
        .split("out_trade_no%22%3A%22")
        .nth(1)
        .and_then(|s| s.split("%22").next())
        .unwrap_or_else(|| panic!("no out_trade_no in {pay_url}"))
        .to_owned();
    (cashier_token(&page), out_trade_no)
}

#[tokio::test(flavor = "multi_thread")]
async fn open_platform_payment_notify_return_query_and_cancel() {
    let d = demo("openapi");

    // Pay: the browser comes back through payhost's return (verified: V1 rule, app_id) to the
    // shop, and the notify marks the order paid exactly once.
    let (token, no) = open_cashier(&d).await;
    let callback = location(
        &post_form(
            &format!("{}/sandbox/openapi/cashier/pay", d.base),
            &format!("token={token}"),
        )
        .await,
    );
    assert!(
        callback.contains(&format!("/return/{MERCHANT}?")),
        "{callback}"
    );
    assert!(
        callback.contains("method=alipay.trade.wap.pay.return"),
        "{callback}"
    );
    let shop_return = get(&callback, None).await;
    assert_eq!(shop_return.status, 302, "{}", shop_return.text());
    wait_status(&d, &no, "TRADE_SUCCESS").await;
    // The sandbox records the reply once its send returns, which may be just after payhost has
    // applied the notify: wait for the record.
    let deadline = Instant::now() + Duration::from_secs(15);
    let notify = loop {
        let state = get(&format!("{}/sandbox/state", d.base), None).await.json();
        let notify = state["notifies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["out_trade_no"] == no.as_str())
            .unwrap()
            .clone();
        if notify["sends"] != 0 || Instant::now() > deadline {
            break notify;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(notify["sends"], 1, "{notify}");
    assert_eq!(notify["acknowledged"], true, "{notify}");
    assert_eq!(notify["last_reply"], "success");
    let paid = status(&d, &no).await;
    assert_eq!(paid["total_fee"], "25.00", "{paid}");

    // A lost notify: nothing arrives, the order stays waiting; the query recovers it.
    let r = send_json(
        "POST",
        &format!("{}/sandbox/faults", d.base),
        None,
        &json!({"drop_all_notifies": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (token, lost) = open_cashier(&d).await;
    post_form(
        &format!("{}/sandbox/openapi/cashier/pay", d.base),
        &format!("token={token}"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&d, &lost).await["status"], "WAIT_BUYER_PAY");
    let sync = send_json(
        "POST",
        &format!("{}/v1/merchants/{MERCHANT}/payments/{lost}/sync", d.base),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(sync.status, 200, "{}", sync.text());
    assert_eq!(sync.json()["found"], true, "{}", sync.text());
    assert_eq!(status(&d, &lost).await["status"], "TRADE_SUCCESS");

    // A trade the buyer never opened: the gateway has none yet (ACQ.TRADE_NOT_EXIST), the
    // order stays pending.
    let created = send_json(
        "POST",
        &format!("{}/v1/merchants/{MERCHANT}/payments", d.base),
        Some(TOKEN),
        &json!({"out_trade_no": "OPEN-NEVER-OPENED", "subject": "x", "total_fee": "1.00",
                "return_url": "http://127.0.0.1:9/return", "merchant_url": "http://127.0.0.1:9/cart"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.json()["pay_url"]
        .as_str()
        .unwrap()
        .contains("quit_url"));
    // The same redirect as a self-submitting POST form: biz_content in the body, the signed
    // common parameters in the action.
    let form = created.json()["pay_form"].as_str().unwrap().to_owned();
    assert!(
        form.contains("method=\"post\"") && form.contains("name=\"biz_content\""),
        "{form}"
    );
    assert!(
        form.contains("/sandbox/openapi/gateway.do?") && form.contains("sign="),
        "{form}"
    );
    let sync = send_json(
        "POST",
        &format!(
            "{}/v1/merchants/{MERCHANT}/payments/OPEN-NEVER-OPENED/sync",
            d.base
        ),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(sync.status, 200, "{}", sync.text());
    assert_eq!(sync.json()["found"], false, "{}", sync.text());
    assert_eq!(
        status(&d, "OPEN-NEVER-OPENED").await["status"],
        "WAIT_BUYER_PAY"
    );

    // The buyer who cancels goes back to the shop's merchant_url (quit_url).
    let pay_url = created.json()["pay_url"].as_str().unwrap().to_owned();
    let page = get(&pay_url, None).await.text();
    let token = cashier_token(&page);
    let back = location(
        &post_form(
            &format!("{}/sandbox/openapi/cashier/cancel", d.base),
            &format!("token={token}"),
        )
        .await,
    );
    assert_eq!(back, "http://127.0.0.1:9/cart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_open_platform_notify_is_refused() {
    let d = demo("openapi-forged");
    let (token, no) = open_cashier(&d).await;
    let r = send_json(
        "POST",
        &format!("{}/sandbox/faults", d.base),
        None,
        &json!({"drop_all_notifies": true}),
    )
    .await;
    assert_eq!(r.status, 200);
    post_form(
        &format!("{}/sandbox/openapi/cashier/pay", d.base),
        &format!("token={token}"),
    )
    .await;
    // Every field a real notify has, for the right app, order and amount; only the signature is
    // not Alipay's.
    let body = format!(
        "notify_type=trade_status_sync&notify_id=forged{no}&app_id=2021000000000001&charset=utf-8&version=1.0&sign_type=RSA2&trade_status=TRADE_SUCCESS&out_trade_no={no}&trade_no=2026000000000000000000000001&total_amount=25.00&seller_id=2088000000000004&gmt_payment=2026-01-01+00%3A00%3A00&sign=bm90IGEgc2lnbmF0dXJl"
    );
    let r = conformance::host::request(
        "POST",
        &format!("{}/notify/{MERCHANT}", d.base),
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    )
    .await;
    assert_ne!(r.text(), "success", "a forged notify was acknowledged");
    assert_eq!(status(&d, &no).await["status"], "WAIT_BUYER_PAY");
}
