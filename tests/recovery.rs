//! Lost-notify recovery (掉单补偿) end to end, in-process (`TestHost`, `TestSandbox`): the
//! sandbox gateway loses every notify, 1,000 buyers pay, and payhost's trade-query schedule
//! (`single_trade_query`) finds every payment: each ends paid exactly once, recorded with its
//! source, with one webhook. Then a notify that arrives late changes nothing, and
//! `POST …/payments/{no}/sync` answers for a payment on demand.

use conformance::alipay::MD5_KEY;
use conformance::host::{config_head, get, send_json, temp_dir};
use conformance::stub::{Seen, StubServer};
use conformance::testhost::{TestHost, TestSandbox};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TOKEN: &str = "recovery-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";
const ORDERS: usize = 1_000;

fn db_count(db: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_lost_notifies_are_recovered_by_trade_query() {
    let dir = temp_dir("recovery");
    // `payhost sandbox --md5-merchant PARTNER:MD5_KEY --speed 600`.
    let sandbox = TestSandbox::md5(PARTNER, MD5_KEY, 600.0).await;
    // Every notify is lost on the way: the 掉单 storm.
    let r = send_json(
        "POST",
        &format!("{}/sandbox/faults", sandbox.base),
        None,
        &serde_json::json!({"drop_all_notifies": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let config = |port: u16, recovery: &str| {
        config_head(port, TOKEN, "")
            + &format!(
                r#"
[recovery]
{recovery}

[webhooks]
retry_base_ms = 50
retry_max_ms = 500

[merchants.rec]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{sandbox}/sandbox/gateway"
notify_verify_url = "{sandbox}/sandbox/mapi"
mapi_url = "{sandbox}/sandbox/mapi"
shop_webhook_url = "{hook}"
shop_webhook_secret = "recovery-webhook-secret"
"#,
                sandbox = sandbox.base,
                hook = shop.url("/hook"),
            )
    };
    // Phase 1: recovery off while the orders are created and paid.
    let host = TestHost::start(&dir, |port| config(port, "enabled = false")).await;
    let base = host.url("");
    let db = dir.join("payhost.db");
    let pay_urls = conformance::orders::create_many(&base, "rec", TOKEN, "R", ORDERS, 8).await;
    // The last order stays unpaid: the query finds it waiting.
    conformance::orders::pay_all(&sandbox.base, &pay_urls[..ORDERS - 1], 4, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM payments WHERE status = 'TRADE_SUCCESS'"
        ),
        0,
        "every notify was lost: nothing is paid yet"
    );

    // On demand: the unpaid order is found waiting, nothing changes.
    let r = send_json(
        "POST",
        &host.url(&format!(
            "/v1/merchants/rec/payments/R{:05}/sync",
            ORDERS - 1
        )),
        Some(TOKEN),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["found"], true, "{}", r.text());
    assert_eq!(r.json()["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(r.json()["status"], "WAIT_BUYER_PAY");
    // On demand: a paid one is applied at once.
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/rec/payments/R00000/sync"),
        Some(TOKEN),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outcome"], "applied", "{}", r.text());
    assert_eq!(r.json()["status"], "TRADE_SUCCESS");

    // Phase 2: the schedule queries every waiting payment. Stopped as SIGTERM stops it, started
    // again on the same port (the sandbox's late notifies go there) with recovery on.
    let host = host
        .restart(|port| config(port, "after_s = 0\ninterval_s = 1"))
        .await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let paid = db_count(
            &db,
            "SELECT COUNT(*) FROM payments WHERE status = 'TRADE_SUCCESS'",
        );
        if paid as usize == ORDERS - 1 {
            break;
        }
        assert!(Instant::now() < deadline, "only {paid} recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} payments recovered by trade query in {:.1} s",
        ORDERS - 1,
        started.elapsed().as_secs_f64()
    );
    // Exactly once, recorded with its source.
    assert_eq!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM notification_results WHERE outcome = 'applied'"
        ),
        (ORDERS - 1) as i64
    );
    assert_eq!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM raw_notifications n JOIN notification_results r ON r.raw_id = n.id WHERE r.outcome = 'applied' AND n.remote_addr = 'query'"
        ),
        (ORDERS - 1) as i64,
        "every recovery is recorded with its source"
    );
    // One webhook per order, once the outbox has drained.
    let deadline = Instant::now() + Duration::from_secs(60);
    while db_count(
        &db,
        "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL",
    ) > 0
    {
        assert!(Instant::now() < deadline, "webhooks still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for s in shop.requests() {
        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(v["type"], "payment.paid");
        *per_order
            .entry(v["out_trade_no"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        per_order.len(),
        ORDERS - 1,
        "one webhook event per paid order"
    );
    assert!(per_order.values().all(|n| *n == 1), "delivered once each");
    // The unpaid one is still waiting (queried, never guessed).
    let r = get(
        &host.url(&format!("/v1/merchants/rec/payments/R{:05}", ORDERS - 1)),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.json()["status"], "WAIT_BUYER_PAY");

    // A notify that arrives late (the sandbox's retries resume): paid stays paid, no new webhook.
    let r = send_json(
        "POST",
        &format!("{}/sandbox/faults", sandbox.base),
        None,
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    // The waiting trade's queries were recorded as they were answered (no change, source query).
    assert!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM notification_results r JOIN raw_notifications n ON r.raw_id = n.id
             WHERE r.outcome = 'no_change' AND n.remote_addr = 'query'"
        ) >= 1
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while db_count(
        &db,
        "SELECT COUNT(*) FROM notification_results r JOIN raw_notifications n ON r.raw_id = n.id
         WHERE r.outcome = 'no_change' AND COALESCE(n.remote_addr, '') <> 'query'",
    ) == 0
    {
        assert!(Instant::now() < deadline, "no late notify arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM notification_results WHERE outcome = 'applied'"
        ),
        (ORDERS - 1) as i64,
        "a late notify applies nothing twice"
    );
    assert_eq!(
        shop.requests().len(),
        ORDERS - 1,
        "and sends no second webhook"
    );
    drop(host);
}
