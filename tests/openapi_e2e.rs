//! Alipay's open platform end to end, over HTTP: `payhost demo`'s `open-shop` merchant (APPID +
//! RSA2) pays through the sandbox's `gateway.do` cashier; the sandbox's V1-signed notify marks the
//! order paid once; a lost notify is recovered by `alipay.trade.query`; a buyer who cancels
//! lands back in the shop. The sandbox signs with its own code (no line shared with the
//! component), so a signing mistake on either side fails here. `back_office` runs the back
//! office's routes (refund, sync, close, reconciliation, the legacy refund) on SQLite and on
//! PostgreSQL.

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

    // The open platform has no pay-channel list: a 409 naming the setting, not a provider failure.
    let channels = get(
        &format!("{}/v1/merchants/{MERCHANT}/channels", d.base),
        Some(TOKEN),
    )
    .await;
    assert_eq!(channels.status, 409, "{}", channels.text());
    assert_eq!(
        channels.json()["error"]["code"],
        "not_supported",
        "{}",
        channels.text()
    );
    assert_eq!(
        channels.json()["error"]["field"],
        "api",
        "{}",
        channels.text()
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

/// The back office against the open platform and the legacy API, over real sockets, on each
/// store: `payhost serve` (its own process, SQLite or PostgreSQL) and the sandbox gateway in the
/// test process (the reference's test keys, so the test can also sign as Alipay).
mod back_office {
    use conformance::alipay::{cashier_token, MD5_KEY};
    use conformance::host::{config_head, free_port, get, post_form, send_json, temp_dir, Payhost};
    use conformance::postgres::PgCluster;
    use conformance::repo_root;
    use conformance::stub::{Seen, StubServer};
    use payhost_sandbox::openapi::OpenApiApp;
    use payhost_sandbox::wire::Keys;
    use payhost_sandbox::{Faults, Sandbox, SandboxMerchant};
    use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const TOKEN: &str = "openapi-back-office-token-0123";
    const APP_ID: &str = "2021000000000001";
    const SELLER_ID: &str = "2088000000000002";
    const PARTNER: &str = "2088101122136241";
    const OPEN: &str = "open";
    const LEGACY: &str = "legacy";

    fn key_file(name: &str) -> std::path::PathBuf {
        repo_root().join("plugin/testdata/openapi/keys").join(name)
    }

    fn alipay_private() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::from_pkcs8_pem(
            &std::fs::read_to_string(key_file("alipay_test_private_pkcs8.pem")).unwrap(),
        )
        .unwrap()
    }

    /// The sandbox on a free loopback port: the legacy MD5 merchant and the open-platform app.
    async fn sandbox() -> (Arc<Sandbox>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/sandbox", listener.local_addr().unwrap());
        let sb = Sandbox::new("/sandbox", &base, 1.0);
        sb.add_merchant(SandboxMerchant {
            partner: PARTNER.into(),
            keys: Keys::Md5(MD5_KEY.into()),
            privileged: true,
        });
        sb.add_openapi_app(OpenApiApp {
            app_id: APP_ID.into(),
            seller_id: SELLER_ID.into(),
            app_public: rsa::RsaPublicKey::from_public_key_pem(
                &std::fs::read_to_string(key_file("app_test_public.pem")).unwrap(),
            )
            .unwrap(),
            alipay_private: alipay_private(),
        });
        sb.start_delivery();
        conformance::testhost::spawn_sandbox(sb.clone(), listener);
        (sb, base)
    }

    /// Beijing time now, as Alipay writes it.
    fn beijing_now() -> String {
        payhost::domain::clock::beijing_text(payhost::domain::clock::now_unix())
    }

    /// A payment notify for `no` signed as Alipay (the V1 rule over the sandbox's own signing
    /// string, SHA256withRSA with the reference's "Alipay" test key).
    fn signed_paid_notify(no: &str, trade_no: &str, amount: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let now = beijing_now();
        let fields: Vec<(String, String)> = [
            ("notify_type", "trade_status_sync"),
            ("notify_id", &format!("planted-{no}")),
            ("notify_time", &now),
            ("app_id", APP_ID),
            ("auth_app_id", APP_ID),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("trade_status", "TRADE_SUCCESS"),
            ("out_trade_no", no),
            ("trade_no", trade_no),
            ("total_amount", amount),
            ("receipt_amount", amount),
            ("seller_id", SELLER_ID),
            ("gmt_create", &now),
            ("gmt_payment", &now),
            ("sign_type", "RSA2"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let text = payhost_sandbox::openapi::notify_string(&fields);
        let sign = alipay_private()
            .sign(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(text.as_bytes()),
            )
            .unwrap();
        let mut all = fields;
        all.push((
            "sign".into(),
            base64::engine::general_purpose::STANDARD.encode(sign),
        ));
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all)
            .finish()
    }

    async fn wait_for(what: &str, log: impl Fn() -> String, mut f: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn hidden(page: &str, name: &str) -> String {
        page.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no {name} in: {page}"))
            .to_owned()
    }

    /// `pg`: run on this cluster's `payhost` database instead of SQLite.
    async fn scenario(name: &str, pg: Option<&PgCluster>) {
        let database = pg.map(|pg| pg.create_database("payhost"));
        // The day's reconciliation is for today's Beijing date: a run that would cross Beijing
        // midnight (16:00 UTC) waits for the new day first, so its payments and its bill share one.
        let into_day = (payhost::domain::clock::now_unix() + 8 * 3600) % 86_400;
        if into_day > 86_400 - 180 {
            tokio::time::sleep(std::time::Duration::from_secs(
                (86_400 - into_day + 2) as u64,
            ))
            .await;
        }
        let dir = temp_dir(name);
        let (sb, base) = sandbox().await;
        let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
        let port = free_port();
        // A short call timeout: a pending refund is sent again only once its first send has
        // surely ended (the call timeout plus refund_after_s after it started).
        let mut config = config_head(port, TOKEN, "call_timeout_ms = 2000")
            + &format!(
                r#"
[merchants.{OPEN}]
shop_webhook_url = "{hook}"
shop_webhook_secret = "back-office-webhook-secret"
[merchants.{OPEN}.settings]
api = "openapi"
app_id = "{APP_ID}"
app_private_key_file = "{app_key}"
alipay_public_key_file = "{alipay_key}"
seller_id = "{SELLER_ID}"
gateway = "{base}/openapi/gateway.do"

[merchants.{LEGACY}]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "seller@example.com"
gateway_url = "{base}/gateway"
notify_verify_url = "{base}/mapi"
mapi_url = "{base}/mapi"
shop_webhook_url = "{hook}"
shop_webhook_secret = "back-office-webhook-secret"

[recovery]
interval_s = 1
refund_after_s = 5
"#,
                hook = shop.url("/hook"),
                app_key = key_file("app_test_private_pkcs8.pem").display(),
                alipay_key = key_file("alipay_test_public.pem").display(),
            );
        if let Some(url) = &database {
            config = config.replace(
                "database = \"payhost.db\"",
                &format!("database = \"{url}\""),
            );
        }
        let host = Payhost::start(&dir, &config);
        let log = || host.log_text();
        let api = |m: &str, rest: &str| host.url(&format!("/v1/merchants/{m}{rest}"));
        let payment = async |m: &str, no: &str| -> Value {
            get(&api(m, &format!("/payments/{no}")), Some(TOKEN))
                .await
                .json()
        };
        let post = async |m: &str, rest: &str, body: Value| {
            send_json("POST", &api(m, rest), Some(TOKEN), &body).await
        };
        let create = async |m: &str, no: &str, fee: &str| -> Value {
            let r = post(
                m,
                "/payments",
                json!({"out_trade_no": no, "subject": "后台", "total_fee": fee,
                       "return_url": "https://shop.example/r", "merchant_url": "https://shop.example/cart"}),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()
        };
        // The buyer opens the pay URL (the sandbox checks the app's RSA2 signature) and pays.
        let pay_open = async |created: &Value| {
            let page = get(created["pay_url"].as_str().unwrap(), None).await;
            assert_eq!(page.status, 200, "{}", page.text());
            let token = cashier_token(&page.text());
            let r = post_form(
                &format!("{base}/openapi/cashier/pay"),
                &format!("token={token}"),
            )
            .await;
            assert_eq!(r.status, 302, "{}", r.text());
        };
        let hooks = |no: &str| -> Vec<String> {
            shop.requests()
                .iter()
                .filter_map(|s| {
                    let v: Value = serde_json::from_slice(&s.body).ok()?;
                    (v["out_trade_no"] == no).then(|| v["type"].as_str().unwrap_or("").to_owned())
                })
                .collect()
        };

        // 1. Paid through the open platform's cashier, then a partial refund through the
        // refunds route: alipay.trade.refund moves the money (SUCCESS at once); the sandbox's
        // partial-refund notify (TRADE_SUCCESS + refund_fee + out_biz_no) is that refund, never a
        // second payment.
        pay_open(&create(OPEN, "BO-A", "25.00").await).await;
        wait_for("BO-A paid", log, async || {
            payment(OPEN, "BO-A").await["status"] == "TRADE_SUCCESS"
        })
        .await;
        let r = post(
            OPEN,
            "/payments/BO-A/refunds",
            json!({"amount": "10.00", "reason": "尺码不合", "refund_key": "bo-a-1"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let refund = r.json();
        assert_eq!(refund["status"], "SUCCESS", "{refund}");
        assert_eq!(refund["amount"], "10.00");
        let request_no = refund["request_no"].as_str().unwrap().to_owned();
        let at_gateway = sb.openapi_trade(APP_ID, "BO-A").unwrap();
        assert_eq!(at_gateway.refunds.len(), 1);
        assert_eq!(at_gateway.refunds[0].out_request_no, request_no);
        wait_for("the partial refund's notify", log, async || {
            payment(OPEN, "BO-A").await["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "notify")
                .count()
                >= 2
        })
        .await;
        let p = payment(OPEN, "BO-A").await;
        assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
        assert_eq!(p["refunded_amount"], "10.00", "{p}");
        assert_eq!(p["total_fee"], "25.00", "{p}");
        assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");
        let notifies: Vec<&Value> = p["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "notify")
            .collect();
        assert_eq!(notifies.len(), 2, "{p}");
        let refund_notify = sb.state()["notifies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["out_trade_no"] == "BO-A")
            .count();
        assert_eq!(refund_notify, 2, "the payment's and the refund's notify");
        // The shop hears of one payment and one partial refund (after the outbox settles).
        wait_for("the refund webhook", log, async || {
            hooks("BO-A").contains(&"payment.partially_refunded".to_owned())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut seen = hooks("BO-A");
        seen.sort();
        assert_eq!(seen, ["payment.paid", "payment.partially_refunded"]);

        // 2. A lost notify: the buyer pays, nothing reaches payhost; the trade query
        // (alipay.trade.query through …/sync) recovers it, once.
        sb.set_faults(Faults {
            drop_all_notifies: true,
            ..Faults::default()
        });
        pay_open(&create(OPEN, "BO-B", "12.34").await).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(payment(OPEN, "BO-B").await["status"], "WAIT_BUYER_PAY");
        let r = post(OPEN, "/payments/BO-B/sync", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["found"], true, "{}", r.text());
        assert_eq!(payment(OPEN, "BO-B").await["status"], "TRADE_SUCCESS");
        sb.set_faults(Faults::default());

        // 3. Close: a trade the buyer never opened (Alipay never saw it) is closed here and the
        // answer says so; one whose cashier was opened is closed at Alipay; a paid one is not.
        create(OPEN, "BO-C", "3.00").await;
        let r = post(OPEN, "/payments/BO-C/close", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let closed = r.json();
        assert_eq!(closed["status"], "TRADE_CLOSED", "{closed}");
        assert_eq!(closed["closed_at_provider"], false, "{closed}");
        assert!(
            closed["detail"].as_str().unwrap().contains("here only"),
            "{closed}"
        );
        assert_eq!(payment(OPEN, "BO-C").await["status"], "TRADE_CLOSED");
        let opened = create(OPEN, "BO-D", "4.00").await;
        assert_eq!(
            get(opened["pay_url"].as_str().unwrap(), None).await.status,
            200
        );
        let r = post(OPEN, "/payments/BO-D/close", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["closed_at_provider"], true, "{}", r.text());
        assert_eq!(
            sb.openapi_trade(APP_ID, "BO-D").unwrap().status,
            "TRADE_CLOSED"
        );
        let r = post(OPEN, "/payments/BO-A/close", json!({})).await;
        assert_eq!(r.status, 409, "{}", r.text());

        // 4. The day's reconciliation. Planted: BO-E paid by a notify Alipay's bill does not
        // show (only_payhost); BO-F paid 30.00 while the bill says 31.00 (amount_mismatch); a
        // bill row for an order payhost never had (only_alipay); BO-OLD created 12 days ago
        // (within the 15-day pay window) and paid today (matched: it is the bill day's).
        for (no, trade_no, fee) in [
            ("BO-E", "2026000000000000000000000005", "5.00"),
            ("BO-F", "2026000000000000000000000006", "30.00"),
            ("BO-OLD", "2026000000000000000000000007", "7.00"),
        ] {
            create(OPEN, no, fee).await;
            if no == "BO-OLD" {
                let then = payhost::store::format_unix(
                    (payhost::domain::clock::now_unix() - 12 * 86_400) as u64,
                );
                let sql = format!(
                    "UPDATE payments SET created_at = '{then}' WHERE merchant_id = '{OPEN}' AND out_trade_no = 'BO-OLD'"
                );
                match pg {
                    Some(pg) => {
                        pg.psql("payhost", &sql);
                    }
                    None => {
                        let db = rusqlite::Connection::open(dir.join("payhost.db")).unwrap();
                        db.busy_timeout(Duration::from_secs(10)).unwrap();
                        assert_eq!(db.execute(&sql, []).unwrap(), 1);
                    }
                }
            }
            let r = conformance::host::request(
                "POST",
                &host.url(&format!("/notify/{OPEN}")),
                &[("content-type", "application/x-www-form-urlencoded")],
                signed_paid_notify(no, trade_no, fee).into_bytes(),
            )
            .await;
            assert_eq!(r.text(), "success", "{}", log());
            assert_eq!(payment(OPEN, no).await["status"], "TRADE_SUCCESS");
        }
        let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(
            payhost::domain::clock::now_unix(),
        ));
        for (no, trade_no, amount) in [
            ("BO-F", "2026000000000000000000000006", "31.00"),
            ("BO-GHOST", "2026000000000000000000000099", "9.99"),
            ("BO-OLD", "2026000000000000000000000007", "7.00"),
        ] {
            let r = post_form(
                &format!("{base}/openapi/bill-extra"),
                &format!("app_id={APP_ID}&bill_date={today}&trade_no={trade_no}&out_trade_no={no}&amount={amount}"),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let r = get(
            &api(OPEN, &format!("/reconciliation?date={today}")),
            Some(TOKEN),
        )
        .await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), log());
        let rec = r.json();
        assert_eq!(rec["date"], today.as_str());
        let rows = |k: &str| -> Vec<(String, String, Value, Value)> {
            let mut v: Vec<_> = rec[k]
                .as_array()
                .unwrap_or_else(|| panic!("no {k}: {rec}"))
                .iter()
                .map(|r| {
                    (
                        r["kind"].as_str().unwrap().to_owned(),
                        r["out_trade_no"].as_str().unwrap().to_owned(),
                        r["payhost_amount"].clone(),
                        r["gateway_amount"].clone(),
                    )
                })
                .collect();
            v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            v
        };
        let s = |x: &str| Value::String(x.into());
        assert_eq!(
            rows("matched"),
            [
                ("payment".into(), "BO-A".into(), s("25.00"), s("25.00")),
                ("payment".into(), "BO-B".into(), s("12.34"), s("12.34")),
                ("payment".into(), "BO-OLD".into(), s("7.00"), s("7.00")),
                ("refund".into(), "BO-A".into(), s("10.00"), s("10.00")),
            ],
            "{rec}"
        );
        assert_eq!(
            rows("only_payhost"),
            [("payment".into(), "BO-E".into(), s("5.00"), Value::Null)],
            "{rec}"
        );
        assert_eq!(
            rows("only_alipay"),
            [("payment".into(), "BO-GHOST".into(), Value::Null, s("9.99"))],
            "{rec}"
        );
        assert_eq!(
            rows("amount_mismatch"),
            [("payment".into(), "BO-F".into(), s("30.00"), s("31.00"))],
            "{rec}"
        );
        let refund_row = rec["matched"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "refund")
            .unwrap();
        assert_eq!(refund_row["request_no"], request_no.as_str(), "{rec}");
        let mismatch = &rec["amount_mismatch"][0];
        assert_eq!(mismatch["trade_no"], "2026000000000000000000000006");

        // 4b. Refunds without a clear answer stay PENDING (their amount held) and are settled by
        // asking Alipay, never by guessing ([OPENAPI §7.5]): the refund query, then the same
        // request again under its out_request_no. Notifies are lost here, so only asking can
        // settle them. (a) made at Alipay, its answer lost (HTTP 500): the query finds it.
        sb.set_faults(Faults {
            drop_all_notifies: true,
            refund_answers_lost: 1,
            ..Faults::default()
        });
        let refund_of = async |key: &str, amount: &str| {
            post(
                OPEN,
                "/payments/BO-A/refunds",
                json!({"amount": amount, "reason": "补退", "refund_key": key}),
            )
            .await
        };
        let r = refund_of("bo-a-lost", "2.00").await;
        assert_eq!(r.status, 502, "{}", r.text());
        // The error says the outcome is unknown and carries the refund it kept: a shop must
        // not take it for "not refunded" and start another (Alipay made this one).
        let lost = r.json();
        assert_eq!(lost["refund"]["status"], "PENDING", "{lost}");
        assert_eq!(lost["refund"]["amount"], "2.00", "{lost}");
        assert!(
            lost["error"]["message"]
                .as_str()
                .unwrap()
                .contains("outcome is unknown"),
            "{lost}"
        );
        assert_eq!(sb.openapi_trade(APP_ID, "BO-A").unwrap().refunds.len(), 2);
        let p = payment(OPEN, "BO-A").await;
        assert_eq!(p["refunded_amount"], "10.00", "{p}");
        assert_eq!(p["refunds"][1]["status"], "PENDING", "{p}");
        // More than what is left beside the held 2.00 is refused (25.00 - 10.00 - 2.00).
        let r = refund_of("bo-a-over", "13.01").await;
        assert_eq!(r.status, 409, "{}", r.text());
        // (b) made, answered ACQ.SYSTEM_ERROR: pending, with Alipay's words.
        sb.set_faults(Faults {
            drop_all_notifies: true,
            refund_system_errors: 1,
            ..Faults::default()
        });
        let r = refund_of("bo-a-unknown", "3.00").await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["status"], "PENDING", "{}", r.text());
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("ACQ.SYSTEM_ERROR"),
            "{}",
            r.text()
        );
        // (c) never reached Alipay (HTTP 500 before anything was made): sent again under its number.
        sb.set_faults(Faults {
            drop_all_notifies: true,
            answer_500: true,
            ..Faults::default()
        });
        let r = refund_of("bo-a-unsent", "1.00").await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(sb.openapi_trade(APP_ID, "BO-A").unwrap().refunds.len(), 3);
        sb.set_faults(Faults {
            drop_all_notifies: true,
            ..Faults::default()
        });
        let r = post(OPEN, "/payments/BO-A/sync", json!({})).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), log());
        // (a) and (b) are settled by the query; (c) is not sent again yet: its first send may
        // still be on its way (2 s call timeout + at least 10 s here).
        let asked: Vec<(String, String)> = r.json()["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["amount"].as_str().unwrap().to_owned(),
                    x["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            asked,
            [
                ("2.00".to_owned(), "SUCCESS".to_owned()),
                ("3.00".to_owned(), "SUCCESS".to_owned()),
                ("1.00".to_owned(), "PENDING".to_owned())
            ],
            "{}",
            r.text()
        );
        assert_eq!(sb.openapi_trade(APP_ID, "BO-A").unwrap().refunds.len(), 3);
        assert_eq!(payment(OPEN, "BO-A").await["refunded_amount"], "15.00");
        // Then the recovery sweep sends (c) again under its number: refunded once.
        wait_for("(c) sent again by the sweep", log, async || {
            payment(OPEN, "BO-A").await["refunded_amount"] == "16.00"
        })
        .await;
        let at_alipay = sb.openapi_trade(APP_ID, "BO-A").unwrap();
        assert_eq!(at_alipay.refunds.len(), 4, "each refunded once");
        let p = payment(OPEN, "BO-A").await;
        assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
        // (d) the recovery sweep settles one without anybody asking (refund_after_s = 5 here).
        sb.set_faults(Faults {
            drop_all_notifies: true,
            refund_answers_lost: 1,
            ..Faults::default()
        });
        let r = refund_of("bo-a-swept", "4.00").await;
        assert_eq!(r.status, 502, "{}", r.text());
        wait_for("the recovery sweep's refund query", log, async || {
            payment(OPEN, "BO-A").await["refunded_amount"] == "20.00"
        })
        .await;
        assert_eq!(sb.openapi_trade(APP_ID, "BO-A").unwrap().refunds.len(), 5);
        sb.set_faults(Faults::default());

        // 4c. Refunds made in the open platform's own back office, not through payhost. (i) All
        // of it closes the trade without a notify ([OPENAPI §6.6]): the trade query shows it
        // closed after it was paid, and the rest of the paid amount is recorded refunded (it
        // was REFUNDED with 0.00 refunded, and the whole amount refundable here).
        let portal = async |no: &str, amount: &str, request_no: &str| {
            let r = post_form(
                &format!("{base}/openapi/refund"),
                &format!("app_id={APP_ID}&out_trade_no={no}&refund_amount={amount}&out_request_no={request_no}"),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
        };
        pay_open(&create(OPEN, "BO-P", "10.00").await).await;
        wait_for("BO-P paid", log, async || {
            payment(OPEN, "BO-P").await["status"] == "TRADE_SUCCESS"
        })
        .await;
        portal("BO-P", "10.00", "PORTAL-P").await;
        let r = post(OPEN, "/payments/BO-P/sync", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let p = payment(OPEN, "BO-P").await;
        assert_eq!(p["status"], "REFUNDED", "{p}");
        assert_eq!(p["refunded_amount"], "10.00", "{p}");
        assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");
        let r = post(
            OPEN,
            "/payments/BO-P/refunds",
            json!({"amount": "1.00", "refund_key": "bo-p-after"}),
        )
        .await;
        assert_eq!(r.status, 409, "nothing is left: {}", r.text());
        // (ii) Part of it made there while one of payhost's is pending: its notify carries the
        // trade's total (5.00), which may include the pending 3.00, never this refund's own
        // amount. Held for review naming it, not recorded as 5.00 (then 8.00 once the 3.00
        // settled, and 2.00 of the paid amount refused as over-refunded). The open platform's
        // trade query carries no refund total, so only a person can record it (the bill shows
        // it): the review stays.
        pay_open(&create(OPEN, "BO-Q", "10.00").await).await;
        wait_for("BO-Q paid", log, async || {
            payment(OPEN, "BO-Q").await["status"] == "TRADE_SUCCESS"
        })
        .await;
        sb.set_faults(Faults {
            drop_all_notifies: true,
            refund_answers_lost: 1,
            ..Faults::default()
        });
        let r = post(
            OPEN,
            "/payments/BO-Q/refunds",
            json!({"amount": "3.00", "refund_key": "bo-q-1"}),
        )
        .await;
        assert_eq!(r.status, 502, "{}", r.text());
        sb.set_faults(Faults::default());
        portal("BO-Q", "2.00", "PORTAL-Q").await;
        let portal_notify_seen = async || {
            payment(OPEN, "BO-Q").await["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| !n["notify_id"].as_str().unwrap_or("").starts_with("query:"))
                .count()
                >= 2
        };
        wait_for("the portal refund's notify", log, portal_notify_seen).await;
        wait_for("the pending 3.00 settled by the sweep", log, async || {
            payment(OPEN, "BO-Q").await["refunds"][0]["status"] == "SUCCESS"
        })
        .await;
        let r = post(OPEN, "/payments/BO-Q/sync", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let p = payment(OPEN, "BO-Q").await;
        // Never 8.00. Held for review naming it when the notify came while the 3.00 was
        // pending (as it does unless this machine is slow); recorded as the 2.00 it is when it
        // came after the 3.00 settled (nothing pending: the total less what is counted).
        match p["refunded_amount"].as_str().unwrap() {
            "3.00" => {
                assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");
                let review = p["review"].as_str().unwrap_or_default();
                assert!(
                    review.contains("PORTAL-Q") && review.contains("5.00"),
                    "{p}"
                );
            }
            "5.00" => {
                let refunds = p["refunds"].as_array().unwrap();
                assert!(
                    refunds
                        .iter()
                        .any(|r| r["request_no"] == "PORTAL-Q" && r["amount"] == "2.00"),
                    "{p}"
                );
            }
            other => panic!("{other} refunded, Alipay has 5.00: {p}"),
        }
        let at_alipay: u64 = sb
            .openapi_trade(APP_ID, "BO-Q")
            .unwrap()
            .refunds
            .iter()
            .map(|r| r.amount_fen)
            .sum();
        assert_eq!(at_alipay, 500);
        // (iii) All of it refunded there, then a refund asked of payhost: Alipay refuses it (the
        // trade is closed), and payhost asks about the trade right after, so the payment is
        // REFUNDED without anyone pressing Sync.
        let refunded_here = async |no: &str| {
            let p = payment(OPEN, no).await;
            let refunds = conformance::host::refund_rows(&p);
            (p, refunds)
        };
        pay_open(&create(OPEN, "BO-R", "10.00").await).await;
        wait_for("BO-R paid", log, async || {
            payment(OPEN, "BO-R").await["status"] == "TRADE_SUCCESS"
        })
        .await;
        portal("BO-R", "10.00", "PORTAL-R").await;
        let r = post(
            OPEN,
            "/payments/BO-R/refunds",
            json!({"amount": "3.00", "refund_key": "bo-r-1"}),
        )
        .await;
        assert_eq!(r.status, 502, "refused by Alipay: {}", r.text());
        wait_for("the refused refund's trade queried", log, async || {
            payment(OPEN, "BO-R").await["status"] == "REFUNDED"
        })
        .await;
        let (p, refunds) = refunded_here("BO-R").await;
        assert_eq!(p["refunded_amount"], "10.00", "{p}");
        assert_eq!(refunds.len(), 2, "{p}");
        assert_eq!(refunds[0].0, "3.00", "{p}");
        assert_eq!(refunds[0].1, "FAILED", "{p}");
        assert_eq!(
            refunds[1],
            ("10.00".into(), "SUCCESS".into(), "gateway".into()),
            "{p}"
        );
        // (iv) The same while one of payhost's never reached Alipay (HTTP 500 before anything was
        // made): it stays PENDING, the trade is closed there, and the recovery sweep's send
        // again is refused. The sweep then asks about the trade: REFUNDED, nobody pressing Sync.
        pay_open(&create(OPEN, "BO-S", "10.00").await).await;
        wait_for("BO-S paid", log, async || {
            payment(OPEN, "BO-S").await["status"] == "TRADE_SUCCESS"
        })
        .await;
        sb.set_faults(Faults {
            answer_500: true,
            ..Faults::default()
        });
        let r = post(
            OPEN,
            "/payments/BO-S/refunds",
            json!({"amount": "3.00", "refund_key": "bo-s-1"}),
        )
        .await;
        assert_eq!(r.status, 502, "{}", r.text());
        sb.set_faults(Faults::default());
        assert_eq!(
            payment(OPEN, "BO-S").await["refunds"][0]["status"],
            "PENDING"
        );
        portal("BO-S", "10.00", "PORTAL-S").await;
        wait_for(
            "the sweep's refused send, then the trade's query",
            log,
            async || payment(OPEN, "BO-S").await["status"] == "REFUNDED",
        )
        .await;
        let (p, refunds) = refunded_here("BO-S").await;
        assert_eq!(p["refunded_amount"], "10.00", "{p}");
        assert_eq!(refunds.len(), 2, "{p}");
        assert_eq!(refunds[0].1, "FAILED", "{p}");
        assert_eq!(
            refunds[1],
            ("10.00".into(), "SUCCESS".into(), "gateway".into()),
            "{p}"
        );
        for no in ["BO-R", "BO-S"] {
            let at_alipay: u64 = sb
                .openapi_trade(APP_ID, no)
                .unwrap()
                .refunds
                .iter()
                .map(|r| r.amount_fen)
                .sum();
            assert_eq!(at_alipay, 1000, "{no}: refunded once, in the portal");
        }

        // 5. The legacy API: refund_fastpay_by_platform_pwd. The refund waits for the seller's
        // password on Alipay's page (confirm_url); the batch notify then settles it.
        let created = create(LEGACY, "BO-L", "10.00").await;
        let page = get(created["pay_url"].as_str().unwrap(), None).await;
        let token = cashier_token(&page.text());
        post_form(&format!("{base}/cashier/pay"), &format!("token={token}")).await;
        wait_for("BO-L paid", log, async || {
            payment(LEGACY, "BO-L").await["status"] == "TRADE_SUCCESS"
        })
        .await;
        let r = post(
            LEGACY,
            "/payments/BO-L/refunds",
            json!({"amount": "4.00", "reason": "协商退款", "refund_key": "bo-l-1"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let refund = r.json();
        assert_eq!(refund["status"], "PENDING", "{refund}");
        let confirm = refund["confirm_url"].as_str().unwrap().to_owned();
        assert!(
            confirm.contains("service=refund_fastpay_by_platform_pwd"),
            "{confirm}"
        );
        let page = get(&confirm, None).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let done = post_form(
            &format!("{base}/mapi/refund/confirm"),
            &format!(
                "token={}&password={}",
                hidden(&page.text(), "token"),
                payhost_sandbox::refund::DEMO_PASSWORD
            ),
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.text());
        wait_for("the batch notify", log, async || {
            payment(LEGACY, "BO-L").await["refunded_amount"] == "4.00"
        })
        .await;
        let p = payment(LEGACY, "BO-L").await;
        assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
        let refunds = p["refunds"].as_array().unwrap();
        assert_eq!(refunds.len(), 1, "{p}");
        assert_eq!(refunds[0]["status"], "SUCCESS", "{p}");
        assert_eq!(refunds[0]["request_no"], refund["request_no"], "{p}");
        // payhost answered the batch notify `success` (Alipay stops resending).
        wait_for("the batch notify's acknowledgement", log, async || {
            sb.state()["notifies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["trade_status"] == "batch_refund_notify" && n["acknowledged"] == true)
        })
        .await;
        // The legacy API has no bill here: a 409 naming `api`, not a server error.
        let r = get(
            &api(LEGACY, &format!("/reconciliation?date={today}")),
            Some(TOKEN),
        )
        .await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "not_supported", "{}", r.text());
        assert_eq!(r.json()["error"]["field"], "api", "{}", r.text());
        // The same refund again: the same one, never a second batch.
        let r = post(
            LEGACY,
            "/payments/BO-L/refunds",
            json!({"amount": "4.00", "reason": "协商退款", "refund_key": "bo-l-1"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], refund["id"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn refund_sync_close_and_reconciliation_on_sqlite() {
        scenario("openapi-back-office-sqlite", None).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn refund_sync_close_and_reconciliation_on_postgres() {
        let pg = PgCluster::start("openapi-back-office");
        scenario("openapi-back-office-pg", Some(&pg)).await;
        drop(pg);
    }
}
