//! Refunds end to end ([EXTRA §4.4]): the sandbox gateway (in the test process, as
//! `payhost sandbox` serves it; payhost too, `TestHost`) refunds paid trades the way Alipay reports them — a partial refund
//! as `TRADE_SUCCESS` + `refund_status=REFUND_SUCCESS`, a full one as `TRADE_CLOSED` +
//! `REFUND_SUCCESS` — and the shop gets `payment.partially_refunded` and `payment.refunded`
//! webhooks once each; a refunded payment is never "unpaid", and the trade query agrees. The same
//! case on SQLite and on PostgreSQL (a cluster of the test's own).

use conformance::alipay::{cashier_token, MD5_KEY};
use conformance::host::{config_head, get, post_form, send_json, temp_dir};
use conformance::postgres::PgCluster;
use conformance::stub::{Seen, StubServer};
use conformance::testhost::{TestHost, TestSandbox};
use std::time::Duration;

const TOKEN: &str = "refunds-api-token-0123456789";
const PARTNER: &str = "2088101122136241";

/// The shared poll ([`conformance::wait_for`]) with this file's 20 s.
async fn wait_for(what: &str, f: impl AsyncFnMut() -> bool) {
    conformance::wait_for(what, Duration::from_secs(20), f).await
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_and_full_refunds_reach_the_shop() {
    partial_and_full_refunds("refunds", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_and_full_refunds_reach_the_shop_on_postgres() {
    let pg = PgCluster::start("refunds-pg");
    let url = pg.create_database("refunds");
    partial_and_full_refunds("refunds-pg", Some(url)).await;
    drop(pg);
}

/// payhost.toml with one legacy MD5 merchant `ref` on the sandbox at `sandbox` (its base URL),
/// its webhooks to `hook`.
fn legacy_config(port: u16, sandbox: &str, hook: &str) -> String {
    config_head(port, TOKEN, "")
        + &format!(
            r#"
[merchants.ref]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "seller@example.com"
gateway_url = "{sandbox}/sandbox/gateway"
notify_verify_url = "{sandbox}/sandbox/mapi"
mapi_url = "{sandbox}/sandbox/mapi"
shop_webhook_url = "{hook}"
shop_webhook_secret = "refunds-webhook-secret"
"#
        )
}

/// Creates payment `no` of `fee` on merchant `ref` and pays it in the sandbox's cashier (its
/// notification follows).
async fn pay(host: &TestHost, sandbox: &str, no: &str, fee: &str) {
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/ref/payments"),
        Some(TOKEN),
        &serde_json::json!({"out_trade_no": no, "subject": "退款", "total_fee": fee, "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let page = get(r.json()["pay_url"].as_str().unwrap(), None).await;
    let token = cashier_token(&page.text());
    post_form(
        &format!("{sandbox}/sandbox/cashier/pay"),
        &format!("token={token}"),
    )
    .await;
}

/// [`pay`], then waits until payhost has it paid; the payment's API URL.
async fn paid(host: &TestHost, sandbox: &str, no: &str, fee: &str) -> String {
    pay(host, sandbox, no, fee).await;
    let url = host.url(&format!("/v1/merchants/ref/payments/{no}"));
    wait_for("paid", async || {
        get(&url, Some(TOKEN)).await.json()["status"] == "TRADE_SUCCESS"
    })
    .await;
    url
}

/// The seller opens a legacy refund's `confirm_url` on the sandbox and enters the payment
/// password (the refund's batch notification follows).
async fn confirm_as_seller(sandbox: &str, confirm_url: &str) {
    let page = get(confirm_url, None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let token = page
        .text()
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let done = post_form(
        &format!("{sandbox}/sandbox/mapi/refund/confirm"),
        &format!(
            "token={token}&password={}",
            payhost_sandbox::refund::DEMO_PASSWORD
        ),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
}

/// Starts a refund of `amount` under `key` on the payment at `url` (201); its answer.
async fn start_refund(url: &str, amount: &str, key: &str) -> serde_json::Value {
    let started = send_json(
        "POST",
        &format!("{url}/refunds"),
        Some(TOKEN),
        &serde_json::json!({"amount": amount, "reason": "缺货", "refund_key": key}),
    )
    .await;
    assert_eq!(started.status, 201, "{}", started.text());
    started.json()
}

/// `POST {url}/sync` (the payment's API URL): the trade query's answer (200).
async fn sync(url: &str) -> serde_json::Value {
    let r = send_json(
        "POST",
        &format!("{url}/sync"),
        Some(TOKEN),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Alipay's back office refunds `fee` of order `no`'s trade (its notification names no amount).
async fn back_office_refund(sandbox: &str, no: &str, fee: &str) {
    alipay_changes(sandbox, "refund", no, &format!("&refund_fee={fee}")).await;
}

/// Alipay changes order `no`'s paid trade (`POST /sandbox/{action}`: `refund`, `finish`; `extra`
/// form fields after the order's), and notifies.
async fn alipay_changes(sandbox: &str, action: &str, no: &str, extra: &str) {
    let r = post_form(
        &format!("{sandbox}/sandbox/{action}"),
        &format!("partner={PARTNER}&out_trade_no={no}{extra}"),
    )
    .await;
    assert_eq!(r.status, 200, "{action} {no}: {}", r.text());
}

/// Waits until the sandbox has sent `at_least` notifications of order `no` and payhost
/// acknowledged each.
async fn notifies_acknowledged(sandbox: &TestSandbox, no: &str, at_least: usize) {
    wait_for("the order's notifications acknowledged", async || {
        let state = sandbox.sandbox.state();
        let notifies: Vec<&serde_json::Value> = state["notifies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["out_trade_no"] == no)
            .collect();
        notifies.len() >= at_least && notifies.iter().all(|n| n["acknowledged"] == true)
    })
    .await;
}

/// A world of one legacy merchant `ref` on the sandbox, its webhooks to a stub shop that
/// answers `ok`.
async fn legacy_world(name: &str) -> (TestSandbox, StubServer, TestHost) {
    let dir = temp_dir(name);
    let sandbox = TestSandbox::md5(PARTNER, MD5_KEY, 600.0).await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let host = TestHost::start(&dir, |port| {
        legacy_config(port, &sandbox.base, &shop.url("/hook"))
    })
    .await;
    (sandbox, shop, host)
}

/// [`legacy_world`] with order `no` of `fee` paid: the start of the single-order refund cases.
async fn one_paid_legacy_order(
    name: &str,
    no: &str,
    fee: &str,
) -> (TestSandbox, StubServer, TestHost) {
    let (sandbox, shop, host) = legacy_world(name).await;
    paid(&host, &sandbox.base, no, fee).await;
    (sandbox, shop, host)
}

/// Two payments through the sandbox, one refunded in part and one in full, with `database` (a
/// PostgreSQL URL) instead of the SQLite file when given.
async fn partial_and_full_refunds(name: &str, database: Option<String>) {
    let dir = temp_dir(name);
    let sandbox = TestSandbox::md5(PARTNER, MD5_KEY, 600.0).await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let config = |port| {
        let config = legacy_config(port, &sandbox.base, &shop.url("/hook"));
        match &database {
            Some(url) => config.replace(
                "database = \"payhost.db\"",
                &format!("database = \"{url}\""),
            ),
            None => config,
        }
    };
    let host = TestHost::start(&dir, config).await;
    let status = async |no: &str| -> String {
        get(
            &host.url(&format!("/v1/merchants/ref/payments/{no}")),
            Some(TOKEN),
        )
        .await
        .json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let types = || -> Vec<(String, String)> {
        shop.requests()
            .iter()
            .map(|s| {
                let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
                (
                    v["out_trade_no"].as_str().unwrap().to_owned(),
                    v["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for no in ["RF1", "RF2"] {
        pay(&host, &sandbox.base, no, "10.00").await;
        wait_for("paid", async || status(no).await == "TRADE_SUCCESS").await;
    }

    // A partial refund: still paid, the shop hears of it. payhost's `success` to its
    // notification is lost on the way back, so the sandbox sends it again (as Alipay does): a
    // duplicate, acknowledged; no second webhook (checked at the end), no review flag.
    sandbox.sandbox.set_faults(payhost_sandbox::Faults {
        lose_replies: 1,
        ..Default::default()
    });
    back_office_refund(&sandbox.base, "RF1", "3.00").await;
    wait_for("the partial refund webhook", async || {
        types().contains(&("RF1".into(), "payment.partially_refunded".into()))
    })
    .await;
    assert_eq!(
        status("RF1").await,
        "PARTIALLY_REFUNDED",
        "a partial refund keeps it paid, partly refunded"
    );
    // Its notification names no amount ([EXTRA §4]): the trade query's `refund_fee` does. The
    // refund is recorded with it, the shop's webhook says it, and only the rest is refundable.
    let p = get(&host.url("/v1/merchants/ref/payments/RF1"), Some(TOKEN))
        .await
        .json();
    assert_eq!(p["refunded_amount"], "3.00", "{p}");
    let hook = shop
        .requests()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap())
        .find(|v| v["type"] == "payment.partially_refunded")
        .expect("the webhook");
    assert_eq!(hook["refunded_amount"], "3.00", "{hook}");
    let too_much = send_json(
        "POST",
        &host.url("/v1/merchants/ref/payments/RF1/refunds"),
        Some(TOKEN),
        &serde_json::json!({"amount": "10.00", "refund_key": "after-portal"}),
    )
    .await;
    assert_eq!(too_much.status, 409, "7.00 is left: {}", too_much.text());
    let rf1_sends = || {
        let state = sandbox.sandbox.state();
        state["notifies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["out_trade_no"] == "RF1")
            .map(|n| (n["sends"].as_u64().unwrap(), n["acknowledged"] == true))
            .collect::<Vec<_>>()
    };
    wait_for(
        "the partial refund's notification sent again and acknowledged",
        async || rf1_sends().last() == Some(&(2, true)),
    )
    .await;
    let p = get(&host.url("/v1/merchants/ref/payments/RF1"), Some(TOKEN))
        .await
        .json();
    assert_eq!(p["refunded_amount"], "3.00", "{p}");
    assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
    assert!(p["review"].is_null(), "not flagged for review: {p}");
    // A full refund closes the trade: refunded, never unpaid.
    alipay_changes(&sandbox.base, "refund", "RF2", "").await;
    wait_for("the refund webhook", async || {
        types().contains(&("RF2".into(), "payment.refunded".into()))
    })
    .await;
    assert_eq!(status("RF2").await, "REFUNDED");
    let p = get(&host.url("/v1/merchants/ref/payments/RF2"), Some(TOKEN))
        .await
        .json();
    assert!(!p["paid_at"].is_null(), "refunded, never unpaid: {p}");

    // The trade query agrees and changes nothing.
    let r = sync(&host.url("/v1/merchants/ref/payments/RF2")).await;
    assert_eq!(r["trade_status"], "TRADE_CLOSED");
    assert_eq!(r["status"], "REFUNDED");
    // Each message kept once, the refund's with its outcome (stored in its own commit, never
    // again after it): the paid notification, the refund's, the query's.
    let p = get(&host.url("/v1/merchants/ref/payments/RF2"), Some(TOKEN))
        .await
        .json();
    let kept: Vec<(&str, &str)> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["trade_status"].as_str().unwrap_or_default(),
                n["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("TRADE_SUCCESS", "applied"),
            ("TRADE_CLOSED", "applied"),
            ("TRADE_CLOSED", "duplicate")
        ],
        "{p}"
    );

    // Once the outbox is empty: each event exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = types();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("RF1".to_owned(), "payment.paid".to_owned()),
            ("RF1".to_owned(), "payment.partially_refunded".to_owned()),
            ("RF2".to_owned(), "payment.paid".to_owned()),
            ("RF2".to_owned(), "payment.refunded".to_owned()),
        ]
    );

    refund_list(&host).await;
}

/// The refund list (`GET /v1/refunds`, its CSV) after [`partial_and_full_refunds`]: the two
/// refunds made in Alipay's back office, and one started here and waiting for the seller.
async fn refund_list(host: &TestHost) {
    let started = send_json(
        "POST",
        &host.url("/v1/merchants/ref/payments/RF1/refunds"),
        Some(TOKEN),
        &serde_json::json!({"amount": "1.00", "reason": "少发一件", "refund_key": "list-1"}),
    )
    .await;
    assert_eq!(started.status, 201, "{}", started.text());
    let list = |query: &str| {
        let url = host.url(&format!("/v1/refunds?{query}"));
        async move {
            let r = get(&url, Some(TOKEN)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        }
    };
    let rows = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        v["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["out_trade_no"].as_str().unwrap().to_owned(),
                    r["amount"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // Newest first, whoever started them; each with its merchant and who started it.
    let all = list("").await;
    assert_eq!(
        rows(&all),
        [
            ("RF1".into(), "1.00".into(), "PENDING".into()),
            ("RF2".into(), "10.00".into(), "SUCCESS".into()),
            ("RF1".into(), "3.00".into(), "SUCCESS".into()),
        ],
        "{all}"
    );
    let newest = &all["refunds"][0];
    assert_eq!(newest["merchant_id"], "ref");
    assert_eq!(newest["started_by"], "api:operator");
    assert_eq!(newest["reason"], "少发一件");
    assert_eq!(all["refunds"][1]["started_by"], "gateway");
    assert!(all["next_cursor"].is_null());
    // Filters: status, the order or request number, the day it was started.
    assert_eq!(rows(&list("status=success").await).len(), 2);
    assert_eq!(
        rows(&list("q=rf2").await),
        [("RF2".into(), "10.00".into(), "SUCCESS".into())]
    );
    let request_no = newest["request_no"].as_str().unwrap();
    assert_eq!(rows(&list(&format!("q={request_no}")).await).len(), 1);
    let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(
        payhost::domain::clock::now_unix(),
    ));
    assert_eq!(
        rows(&list(&format!("from={today}&to={today}")).await).len(),
        3
    );
    assert!(rows(&list("to=2000-01-01").await).is_empty());
    // By the day it ended (the bill's day): the two that did, today; the pending one has not.
    assert_eq!(
        rows(&list(&format!("completed_from={today}&completed_to={today}")).await),
        [
            ("RF2".into(), "10.00".into(), "SUCCESS".into()),
            ("RF1".into(), "3.00".into(), "SUCCESS".into()),
        ]
    );
    assert!(rows(&list("completed_to=2000-01-01").await).is_empty());
    // Pages of one: every refund once, in the same order.
    let mut paged = Vec::new();
    let mut query = "limit=1".to_owned();
    for _ in 0..5 {
        let page = list(&query).await;
        paged.extend(rows(&page));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, rows(&all));
    // Bad input is named.
    for (q, field) in [
        ("status=REFUNDED", "status"),
        ("cursor=42", "cursor"),
        ("limit=0", "limit"),
        ("min_amount=1", "min_amount"),
        ("completed_from=yesterday", "completed_from"),
        (
            "completed_from=2026-12-05&completed_to=2026-12-01",
            "completed_from",
        ),
    ] {
        let r = get(&host.url(&format!("/v1/refunds?{q}")), Some(TOKEN)).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{q}: {}", r.text());
    }
    // The CSV: every refund of the filter, the documented columns, named by what it holds.
    let csv = get(&host.url("/v1/refunds.csv?merchant=ref"), Some(TOKEN)).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(
        csv.header("content-disposition").as_deref(),
        Some("attachment; filename=\"refunds-ref.csv\"")
    );
    let text = csv.text();
    let lines: Vec<&str> = text
        .trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines[0], payhost::refund_list::CSV_COLUMNS.join(","));
    assert_eq!(lines.len(), 4, "{text}");
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        (first[0], first[1], first[3], first[4], first[5]),
        ("ref", "RF1", "1.00", "PENDING", "少发一件")
    );
    let r = get(&host.url("/v1/refunds.csv?limit=5"), Some(TOKEN)).await;
    assert_eq!(r.json()["error"]["field"], "limit", "{}", r.text());
    // A merchant's own token sees its refunds, never another merchant's.
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/ref/tokens"),
        Some(TOKEN),
        &serde_json::json!({"label": "refund list"}),
    )
    .await;
    let mt = r.json()["token"].as_str().unwrap().to_owned();
    let own = get(&host.url("/v1/refunds"), Some(&mt)).await;
    assert_eq!(rows(&own.json()).len(), 3, "{}", own.text());
    let other = get(&host.url("/v1/refunds?merchant=other"), Some(&mt)).await;
    assert_eq!(other.status, 403, "{}", other.text());
}

/// A legacy refund given up here (its amount refundable again) that the seller confirms on
/// Alipay's page after all, beside a second refund started meanwhile: Alipay refunds the first
/// and refuses the second (never more than paid). The first is recorded as refunded — the money
/// left — with the payment held for review, the second ends failed; the shop hears of one refund.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_given_up_then_confirmed_beside_a_second_one_is_recorded() {
    let (sandbox, shop, host) = one_paid_legacy_order("refund-given-up", "GU1", "1.00").await;
    let payment = async || {
        get(&host.url("/v1/merchants/ref/payments/GU1"), Some(TOKEN))
            .await
            .json()
    };
    let refund = async |key: &str| {
        let r = send_json(
            "POST",
            &host.url("/v1/merchants/ref/payments/GU1/refunds"),
            Some(TOKEN),
            &serde_json::json!({"amount": "1.00", "reason": "协商", "refund_key": key}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["status"], "PENDING", "{}", r.text());
        r.json()
    };
    let first = refund("gu-a").await;
    // Given up through the API (the admin's 放弃): once; the refund it names must be one of
    // this order's.
    let abandon = async |rid: &str| {
        send_json(
            "POST",
            &host.url(&format!(
                "/v1/merchants/ref/payments/GU1/refunds/{rid}/abandon"
            )),
            Some(TOKEN),
            &serde_json::json!({}),
        )
        .await
    };
    for rid in ["999999", "x"] {
        let r = abandon(rid).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (404, Some("unknown_refund")),
            "{}",
            r.text()
        );
    }
    let given_up = abandon(&first["id"].to_string()).await;
    assert_eq!(given_up.status, 200, "{}", given_up.text());
    assert_eq!(given_up.json()["status"], "FAILED", "{}", given_up.text());
    // Asked again (as after a lost answer): the same refund, given up once.
    let again = abandon(&first["id"].to_string()).await;
    assert_eq!(
        (again.status, again.json()["status"].as_str()),
        (200, Some("FAILED")),
        "{}",
        again.text()
    );
    // The give-up asks Alipay about the trade (nothing refunded there yet): waited for, so
    // its answer never lands between the seller's confirmations below.
    wait_for("the trade queried after the give-up", async || {
        payment().await["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["notify_id"].as_str().unwrap_or("").starts_with("query:"))
    })
    .await;
    let second = refund("gu-b").await;
    // The seller confirms both pages: the first refunds 1.00, the second is refused.
    for r in [&first, &second] {
        confirm_as_seller(&sandbox.base, r["confirm_url"].as_str().unwrap()).await;
    }
    wait_for("both batch notifies", async || {
        let p = payment().await;
        p["refunds"]
            .as_array()
            .is_some_and(|v| v.iter().all(|r| r["status"] != "PENDING"))
            && p["refunded_amount"] == "1.00"
    })
    .await;
    let p = payment().await;
    assert_eq!(p["status"], "REFUNDED", "{p}");
    let statuses: Vec<&str> = p["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SUCCESS", "FAILED"], "{p}");
    // Neither a refund that succeeded nor one the provider refused is given up.
    for r in [&first, &second] {
        let refused = abandon(&r["id"].to_string()).await;
        assert_eq!(
            (refused.status, refused.json()["error"]["code"].as_str()),
            (409, Some("not_abandonable")),
            "{}",
            refused.text()
        );
    }
    // The refund that left says so, not "never confirmed"; the give-up stays on the timeline.
    assert_eq!(
        p["refunds"][0]["detail"],
        "given up by api:operator (then the seller confirmed it on the provider's page)",
        "{p}"
    );
    let given_up: Vec<&serde_json::Value> = p["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "refund_given_up")
        .collect();
    assert_eq!(given_up.len(), 1, "{p}");
    assert_eq!(
        given_up[0]["detail"],
        format!("#{} 1.00 api:operator", first["id"]),
        "{p}"
    );
    assert!(
        p["review"]
            .as_str()
            .is_some_and(|r| r.contains("still pending")),
        "held for a person: {p}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refunded = shop
        .requests()
        .iter()
        .filter(|s| {
            serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["type"]
                == "payment.refunded"
        })
        .count();
    assert_eq!(refunded, 1);
}

/// A legacy partial refund that a trade query (Sync) recorded before its own notification
/// arrived: the notification's query answers "duplicate" (the total is recorded). The state
/// machine moved the payment a second time on it, with a second `payment.partially_refunded`
/// webhook carrying no amount; now it never moves a payment on a refund without its report.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_partial_refund_synced_before_its_notify_moves_nothing_again() {
    let (sandbox, shop, host) = one_paid_legacy_order("refund-synced-first", "RS1", "10.00").await;
    let payment = async || {
        get(&host.url("/v1/merchants/ref/payments/RS1"), Some(TOKEN))
            .await
            .json()
    };
    sandbox.sandbox.set_faults(payhost_sandbox::Faults {
        drop_all_notifies: true,
        ..Default::default()
    });
    back_office_refund(&sandbox.base, "RS1", "3.00").await;
    sync(&host.url("/v1/merchants/ref/payments/RS1")).await;
    assert_eq!(payment().await["refunded_amount"], "3.00");
    // Notifies reach payhost again: the refund's is sent again, and acknowledged.
    sandbox
        .sandbox
        .set_faults(payhost_sandbox::Faults::default());
    let acknowledged = || {
        sandbox.sandbox.state()["notifies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["out_trade_no"] == "RS1")
            .all(|n| n["acknowledged"] == true)
    };
    wait_for("the refund's notification acknowledged", async || {
        acknowledged()
    })
    .await;
    let p = payment().await;
    assert_eq!(p["refunded_amount"], "3.00", "{p}");
    assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
    // Whether it is that refund is told by time: recorded here at or after the notify's
    // `gmt_refund` (unit test `a_refund_is_taken_for_one_recorded_here_only_when_recorded_since`).
    // The sandbox's clock runs 600 times as fast, so its `gmt_refund` is later than anything
    // recorded here: the refund cannot be told apart from a second one the query does not show
    // yet, and is held for review, without moving the payment or telling the shop again.
    assert!(
        p["review"]
            .as_str()
            .is_some_and(|r| r.contains("press Sync later")),
        "{p}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut hooks: Vec<(String, serde_json::Value)> = shop
        .requests()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap())
        .map(|v| {
            (
                v["type"].as_str().unwrap().to_owned(),
                v["refunded_amount"].clone(),
            )
        })
        .collect();
    hooks.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        hooks,
        [
            ("payment.paid".to_owned(), serde_json::Value::Null),
            (
                "payment.partially_refunded".to_owned(),
                serde_json::Value::from("3.00")
            ),
        ],
        "one webhook each"
    );
}

/// Alipay finishes a partly refunded trade when its refundable period ends: the legacy notify is
/// `TRADE_FINISHED` + `refund_status=REFUND_SUCCESS`, no amount ([EXTRA §4.2], [EXTRA §4.3]), so payhost
/// asks the trade query. Either way the query answers, the finish is kept (`finished_at`) and a
/// refund is `409 not_refundable` (the provider would refuse it):
/// * the query shows the trade finished, with the refunded total recorded here: nothing new, and
///   nothing held for review (before, it was held: the amountless refund could not be told from
///   a new one);
/// * the query lags behind the notify (it still shows the trade before its finish,
///   `stale_queries`): the refund cannot be told from a new one and is held for review, yet the
///   finish is kept (before, it was lost on that path);
/// * the query shows the trade finished without its refunded total (`queries_without_refund_fee`):
///   it tells nothing of the refund, which is held for review as when the query lags (no refund
///   was recorded here since the notify's `gmt_refund`); the finish is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_partly_refunded_trade_alipay_finishes_takes_no_more_refunds() {
    let (sandbox, _shop, host) = legacy_world("refund-finished").await;
    // How the trade query answers the finish's notification: as it is, lagging behind it, or
    // finished but without its refunded total.
    #[derive(PartialEq)]
    enum Query {
        Current,
        Lagging,
        Untotalled,
    }
    for (no, query) in [
        ("FIN1", Query::Current),
        ("FIN2", Query::Lagging),
        ("FIN3", Query::Untotalled),
    ] {
        let lagging = query == Query::Lagging;
        // Without the query's total the refund cannot be told from a new one either.
        let held = query != Query::Current;
        let url = paid(&host, &sandbox.base, no, "10.00").await;
        back_office_refund(&sandbox.base, no, "3.00").await;
        wait_for("the back office's refund recorded", async || {
            get(&url, Some(TOKEN)).await.json()["refunded_amount"] == "3.00"
        })
        .await;
        sandbox.sandbox.set_faults(payhost_sandbox::Faults {
            stale_queries: u32::from(lagging),
            queries_without_refund_fee: u32::from(query == Query::Untotalled),
            ..Default::default()
        });
        alipay_changes(&sandbox.base, "finish", no, "").await;
        wait_for("the finish's notification acknowledged", async || {
            let state = sandbox.sandbox.state();
            let of_order: Vec<&serde_json::Value> = state["notifies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["out_trade_no"] == no)
                .collect();
            of_order.len() >= 3 && of_order.iter().all(|n| n["acknowledged"] == true)
        })
        .await;
        let faults = sandbox.sandbox.faults();
        assert_eq!(
            (faults.stale_queries, faults.queries_without_refund_fee),
            (0, 0),
            "{no}: the answer of its kind was asked for"
        );
        let p = get(&url, Some(TOKEN)).await.json();
        assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{no}: {p}");
        assert_eq!(p["refunded_amount"], "3.00", "{no}: {p}");
        assert!(p["finished_at"].is_string(), "{no}: {p}");
        let review = p["review"].as_str().unwrap_or_default();
        if held {
            assert!(review.contains("press Sync later"), "{no}: {p}");
        } else {
            assert_eq!(review, "", "{no}: {p}");
        }
        let more = send_json(
            "POST",
            &format!("{url}/refunds"),
            Some(TOKEN),
            &serde_json::json!({"amount": "1.00", "refund_key": format!("k-{no}")}),
        )
        .await;
        assert_eq!(more.status, 409, "{no}: {}", more.text());
        assert_eq!(more.json()["error"]["code"], "not_refundable", "{no}");
        // The trade query, asked now (it no longer lags), says the trade is finished.
        let synced = sync(&url).await;
        assert_eq!(synced["trade_status"], "TRADE_FINISHED", "{no}: {synced}");
        assert_eq!(synced["finished"], true, "{no}: {synced}");
        assert_eq!(synced["status"], "PARTIALLY_REFUNDED", "{no}: {synced}");
    }
}

/// A legacy refund started here waits for the seller's password; meanwhile the same amount is
/// refunded in Alipay's back office. The back office's notification names no refund, and the
/// trade's total (3.00) is taken for the pending refund. When the seller confirms and the
/// refund's own batch notification comes, it finds that refund settled already: the trade's
/// query then shows 6.00 refunded, and the other 3.00 is recorded as made in the back office.
/// Before, payhost counted 3.00 of Alipay's 6.00, with nothing flagged.
#[tokio::test(flavor = "multi_thread")]
async fn a_back_office_refund_beside_a_seller_confirmed_one_is_counted_too() {
    let (sandbox, _shop, host) = one_paid_legacy_order("refunds-beside", "RB1", "10.00").await;
    let url = host.url("/v1/merchants/ref/payments/RB1");
    let started = start_refund(&url, "3.00", "rb-1").await;
    let confirm = started["confirm_url"].as_str().unwrap().to_owned();
    // The back office refunds 3.00 of the trade.
    back_office_refund(&sandbox.base, "RB1", "3.00").await;
    wait_for("the back office's refund counted", async || {
        get(&url, Some(TOKEN)).await.json()["refunded_amount"] == "3.00"
    })
    .await;
    // The seller confirms the refund started here.
    confirm_as_seller(&sandbox.base, &confirm).await;
    wait_for("both refunds counted", async || {
        get(&url, Some(TOKEN)).await.json()["refunded_amount"] == "6.00"
    })
    .await;
    let p = get(&url, Some(TOKEN)).await.json();
    let mut refunds = conformance::host::refund_rows(&p);
    refunds.sort();
    assert_eq!(
        refunds,
        [
            ("3.00".into(), "SUCCESS".into(), "api:operator".into()),
            ("3.00".into(), "SUCCESS".into(), "gateway".into()),
        ],
        "{p}"
    );
    assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
    // Done: the words of its wait for the seller are gone from it.
    assert!(
        p["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["detail"].is_null()),
        "{p}"
    );
}

/// Two first requests for one order at the same instant, each with its own subject: both start
/// a page before either is kept, and the one kept second finds the first's payment. Its buyer's
/// page is started again with the stored subject, as a repeated request's is: every page of the
/// order shows what the shop, the admin and the reconciliation show. (The gateway's answers wait
/// 300 ms so that both requests are past the look-up before either is kept.)
#[tokio::test(flavor = "multi_thread")]
async fn two_first_requests_at_once_show_the_stored_subject_on_both_pages() {
    let (sandbox, _shop, host) = legacy_world("refunds-first-twice").await;
    sandbox.sandbox.set_faults(payhost_sandbox::Faults {
        delay_ms: 300,
        ..Default::default()
    });
    let create = async |subject: &str| {
        let order = serde_json::json!({"out_trade_no": "RACE", "subject": subject, "total_fee": "3.00", "return_url": "https://shop.example/r"});
        send_json(
            "POST",
            &host.url("/v1/merchants/ref/payments"),
            Some(TOKEN),
            &order,
        )
        .await
    };
    let (a, b) = tokio::join!(create("甲"), create("乙"));
    sandbox
        .sandbox
        .set_faults(payhost_sandbox::Faults::default());
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 201], "{} / {}", a.text(), b.text());
    let stored = get(&host.url("/v1/merchants/ref/payments/RACE"), Some(TOKEN))
        .await
        .json()["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    for r in [&a, &b] {
        let page = get(r.json()["pay_url"].as_str().unwrap(), None).await;
        let token = cashier_token(&page.text());
        let trade = sandbox.sandbox.trade(&token).expect("the page's trade");
        assert_eq!(
            trade.subject, stored,
            "the page answered {} shows the stored subject",
            r.status
        );
    }
}

/// A legacy refund started here waits for the seller (6.00) while Alipay's back office refunds
/// another amount (5.00): the back office's notification names no amount, and the trade's
/// refunded total fits no refund pending here. It is held for review, and the payment does not
/// move: before, it became PARTIALLY_REFUNDED with 0.00 refunded and the shop got a
/// `payment.partially_refunded` webhook for a refund of nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_back_office_refund_that_fits_no_pending_one_is_held_without_moving_the_payment() {
    let (sandbox, shop, host) = one_paid_legacy_order("refunds-held", "RH1", "10.00").await;
    let url = host.url("/v1/merchants/ref/payments/RH1");
    start_refund(&url, "6.00", "rh-1").await;
    back_office_refund(&sandbox.base, "RH1", "5.00").await;
    notifies_acknowledged(&sandbox, "RH1", 2).await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["status"], "TRADE_SUCCESS", "{p}");
    assert_eq!(p["refunded_amount"], "0.00", "{p}");
    assert!(p["review"].is_string(), "{p}");
    let outcomes: Vec<&str> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"mismatch"), "{p}");
    assert!(!p.to_string().contains("-> PARTIALLY_REFUNDED"), "{p}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hooks: Vec<String> = shop
        .requests()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap())
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        hooks,
        ["payment.paid"],
        "no webhook for a refund of nothing"
    );
}

/// A full refund made in Alipay's back office while one of payhost's waits for the seller: its
/// notification is held (the pending 6.00 could be part of it), and the payment stays paid. Once
/// the owner gives the 6.00 up, payhost asks about the trade right after and counts the 10.00: the
/// payment is REFUNDED and the shop hears it, without anyone pressing Sync.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_back_office_refund_is_counted_once_the_pending_one_is_given_up() {
    let (sandbox, shop, host) = one_paid_legacy_order("refunds-closed", "RC1", "10.00").await;
    let url = host.url("/v1/merchants/ref/payments/RC1");
    let pending = start_refund(&url, "6.00", "rc-1").await;
    assert!(pending["confirm_url"].is_string(), "{pending}");
    back_office_refund(&sandbox.base, "RC1", "10.00").await;
    notifies_acknowledged(&sandbox, "RC1", 2).await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["status"], "TRADE_SUCCESS", "held: {p}");
    assert_eq!(p["refunded_amount"], "0.00", "{p}");

    let given_up = send_json(
        "POST",
        &format!("{url}/refunds/{}/abandon", pending["id"]),
        Some(TOKEN),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(given_up.status, 200, "{}", given_up.text());
    wait_for("the trade queried after the give-up", async || {
        get(&url, Some(TOKEN)).await.json()["status"] == "REFUNDED"
    })
    .await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["refunded_amount"], "10.00", "{p}");
    let rows = conformance::host::refund_rows(&p);
    let refunds: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, s, by)| (a.as_str(), s.as_str(), by.as_str()))
        .collect();
    assert_eq!(
        refunds,
        [
            ("6.00", "FAILED", "api:operator"),
            ("10.00", "SUCCESS", "gateway")
        ],
        "{p}"
    );
    let ids: Vec<&str> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["notify_id"].as_str())
        .collect();
    let mut once = ids.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), ids.len(), "each message kept once: {p}");
    wait_for("payment.refunded at the shop", async || {
        shop.requests()
            .iter()
            .filter_map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).ok())
            .any(|v| v["type"] == "payment.refunded")
    })
    .await;
}

/// An order asked for twice before it is paid has two cashier pages; a buyer who pays both (the
/// sandbox lets them: two trades of one order number) paid twice. The second trade's notification
/// is held for review naming both trades: the payment keeps its first trade and is not paid
/// "again". Before, it was `no_change`, and the second payment went unnoticed.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_trade_paying_the_same_order_is_held_for_review() {
    let (sandbox, shop, host) = legacy_world("refunds-paid-twice").await;
    let mut tokens = Vec::new();
    // The second time with another subject: the cashier still shows the stored one.
    for (expected, subject) in [(201, "两次"), (200, "两次（改）")] {
        let order = serde_json::json!({"out_trade_no": "TWICE", "subject": subject, "total_fee": "4.00", "return_url": "https://shop.example/r"});
        let r = send_json(
            "POST",
            &host.url("/v1/merchants/ref/payments"),
            Some(TOKEN),
            &order,
        )
        .await;
        assert_eq!(r.status, expected, "{}", r.text());
        let page = get(r.json()["pay_url"].as_str().unwrap(), None).await;
        tokens.push(cashier_token(&page.text()));
    }
    assert_ne!(tokens[0], tokens[1]);
    let url = host.url("/v1/merchants/ref/payments/TWICE");
    for token in &tokens {
        let r = post_form(
            &format!("{}/sandbox/cashier/pay", sandbox.base),
            &format!("token={token}"),
        )
        .await;
        assert!(r.status < 400, "{}", r.text());
    }
    wait_for("both trades' notifications answered", async || {
        let p = get(&url, Some(TOKEN)).await.json();
        p["notifications"].as_array().is_some_and(|n| n.len() >= 2)
    })
    .await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["status"], "TRADE_SUCCESS", "{p}");
    let notes = p["notifications"].as_array().unwrap();
    let first = notes
        .iter()
        .find(|n| n["outcome"] == "applied")
        .expect("the first trade applied");
    let held = notes
        .iter()
        .find(|n| n["outcome"] == "mismatch")
        .unwrap_or_else(|| panic!("the second trade held: {p}"));
    let review = p["review"].as_str().unwrap_or_else(|| panic!("{p}"));
    let trade = p["trade_no"].as_str().unwrap();
    let other = sandbox.sandbox.state()["trades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["out_trade_no"] == "TWICE")
        .filter_map(|t| t["trade_no"].as_str().map(str::to_owned))
        .find(|t| t != trade)
        .unwrap_or_else(|| {
            panic!(
                "the sandbox has a second trade: {}",
                sandbox.sandbox.state()
            )
        });
    let state = sandbox.sandbox.state();
    let subjects: Vec<&str> = state["trades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["out_trade_no"] == "TWICE")
        .filter_map(|t| t["subject"].as_str())
        .collect();
    assert_eq!(
        subjects,
        ["两次", "两次"],
        "the stored subject on both pages"
    );
    assert_eq!(p["subject"], "两次", "{p}");
    assert!(
        review.contains(trade) && review.contains(&other),
        "the review names both trades: {review}"
    );
    assert!(held["detail"].as_str().unwrap().contains(&other), "{held}");
    assert_eq!(
        first["detail"], "WAIT_BUYER_PAY -> TRADE_SUCCESS",
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hooks: Vec<String> = shop
        .requests()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap())
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hooks, ["payment.paid"], "paid once to the shop");
}

/// A refund asked for while the payment's notification is on its way is either refused as not
/// paid yet (409) or started with the trade's number. Before, the payment was read before the
/// refund was admitted: a notification committed in between let the refund in, but the request
/// was built from the older read, without the trade number, and the component refused it (a
/// 400 `invalid_order` naming `trade_no`). The window is short, so the race is run many times.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_racing_the_payments_notification_is_started_or_not_yet_paid() {
    let (sandbox, _shop, host) = legacy_world("refunds-race").await;
    for i in 0..24 {
        let no = format!("RACE-{i}");
        pay(&host, &sandbox.base, &no, "2.00").await;
        let url = host.url(&format!("/v1/merchants/ref/payments/{no}/refunds"));
        // Two askers at once, as a shop's retries would be, until one is started.
        let ask = async || loop {
            let r = send_json(
                "POST",
                &url,
                Some(TOKEN),
                &serde_json::json!({"amount": "1.00", "reason": "竞争", "refund_key": format!("race-{i}")}),
            )
            .await;
            match r.status {
                200 | 201 => return,
                409 => tokio::task::yield_now().await,
                _ => panic!("{no}: {} {}", r.status, r.text()),
            }
        };
        tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(ask(), ask())
        })
        .await
        .expect("the refund started within 20 s");
    }
}

/// The same race on the shop's side: an order asked for again while its notification is on its
/// way comes back waiting with a form to pay, or paid without one (PC pay: its form is made
/// without a call to the provider, so the window is the component's call). Before, an order paid while
/// its form was being made again came back `TRADE_SUCCESS` with that new form, asking the
/// buyer to pay a second time.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_asked_again_while_it_is_paid_has_no_form_once_paid() {
    let (sandbox, _shop, host) = legacy_world("refunds-create-race").await;
    let url = host.url("/v1/merchants/ref/payments");
    let create = async |no: &str| {
        let order = serde_json::json!({"out_trade_no": no, "subject": "再次下单", "total_fee": "2.00", "return_url": "https://shop.example/r", "product": "pc"});
        send_json("POST", &url, Some(TOKEN), &order).await
    };
    for i in 0..24 {
        let no = format!("AGAIN-{i}");
        let first = create(&no).await;
        assert_eq!(first.status, 201, "{}", first.text());
        let page = get(first.json()["pay_url"].as_str().unwrap(), None).await;
        let token = cashier_token(&page.text());
        let (cashier, form) = (
            format!("{}/sandbox/cashier/pay", sandbox.base),
            format!("token={token}"),
        );
        let pay = post_form(&cashier, &form);
        let again = async {
            loop {
                let r = create(&no).await;
                // The provider may have the trade paid before payhost has its notification,
                // and refuse to start it again: no form either.
                if r.status == 502 && r.json()["error"]["code"] == "gateway_0010" {
                    continue;
                }
                assert_eq!(r.status, 200, "{}", r.text());
                let p = r.json();
                if p["status"] == "WAIT_BUYER_PAY" {
                    assert!(p["pay_form"].is_string(), "{p}");
                    continue;
                }
                assert!(
                    p["pay_form"].is_null()
                        && p["pay_url"].is_null()
                        && p["order_string"].is_null(),
                    "{no}: paid, yet a form to pay: {p}"
                );
                return;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(pay, again) })
            .await
            .expect("paid within 20 s");
    }
}

/// A legacy refund whose start was cut short (a crash after it was stored, before the seller's
/// page was): the sync makes its page again under its number, the seller confirms it, and it
/// ends SUCCESS. Before, it stayed PENDING for ever with no page: the legacy API has no refund
/// query, so nothing asked about it again, and its amount was held, so the order could never be
/// refunded.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_refund_cut_short_before_its_page_gets_one() {
    let (sandbox, _shop, host) = one_paid_legacy_order("refunds-cut-short", "CS1", "10.00").await;
    use payhost::store::ledger::{NewRefund, RefundBegun};
    let begun = host
        .app()
        .store
        .begin_refund(&NewRefund {
            merchant_id: "ref".into(),
            out_trade_no: "CS1".into(),
            // Numbered yesterday: the crash was before midnight.
            request_no: payhost::domain::refunds::new_request_no(
                payhost::domain::clock::now_unix() - 86_400,
            ),
            refund_key: Some("cs-1".into()),
            amount_fen: 400,
            reason: "缺货".into(),
            started_by: "api:operator".into(),
        })
        .await
        .unwrap();
    let RefundBegun::New(refund) = begun else {
        panic!("{begun:?}")
    };
    // Stored a minute ago, as the crash left it.
    rusqlite::Connection::open(host.dir.join("payhost.db"))
        .unwrap()
        .execute(
            "UPDATE refunds SET created_at = ?1 WHERE id = ?2",
            rusqlite::params![
                payhost::store::format_unix(payhost::domain::clock::now_unix() as u64 - 60),
                refund.id
            ],
        )
        .unwrap();
    let url = host.url("/v1/merchants/ref/payments/CS1");
    sync(&url).await;
    let p = get(&url, Some(TOKEN)).await.json();
    let confirm = p["refunds"][0]["confirm_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no page for the seller: {p}"))
        .to_owned();
    // Under a number of today (Alipay wants a batch_no of the day); the old one reached nobody.
    let today = payhost::domain::clock::beijing_compact_date(payhost::domain::clock::now_unix());
    let renumbered = p["refunds"][0]["request_no"].as_str().unwrap();
    assert!(
        renumbered.starts_with(&today) && renumbered != refund.request_no,
        "{p}"
    );
    assert!(confirm.contains(renumbered), "{confirm}");
    confirm_as_seller(&sandbox.base, &confirm).await;
    wait_for("the refund confirmed", async || {
        get(&url, Some(TOKEN)).await.json()["refunds"][0]["status"] == "SUCCESS"
    })
    .await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["refunded_amount"], "4.00", "{p}");
    assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");
}

/// A legacy refund the seller confirmed whose notification is lost (payhost down for longer
/// than Alipay resends it): the recovery sweep queries the trade from `seller_refund_after_s`
/// after the refund started, and its refunded total settles it. Before, nothing asked: it stayed
/// PENDING until someone pressed Sync or gave it up.
#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_legacy_refund_whose_notification_is_lost_is_found_by_the_sweep() {
    let dir = temp_dir("refunds-seller-sweep");
    let sandbox = TestSandbox::md5(PARTNER, MD5_KEY, 600.0).await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let host = TestHost::start(&dir, |port| {
        legacy_config(port, &sandbox.base, &shop.url("/hook"))
            + "\n[recovery]\ninterval_s = 1\nrefund_after_s = 1\nseller_refund_after_s = 2\n"
    })
    .await;
    let url = paid(&host, &sandbox.base, "SW1", "10.00").await;
    sandbox.sandbox.set_faults(payhost_sandbox::Faults {
        drop_all_notifies: true,
        ..payhost_sandbox::Faults::default()
    });
    let started = send_json(
        "POST",
        &format!("{url}/refunds"),
        Some(TOKEN),
        &serde_json::json!({"amount": "3.00", "reason": "缺货", "refund_key": "sw-1"}),
    )
    .await;
    assert_eq!(started.status, 201, "{}", started.text());
    confirm_as_seller(
        &sandbox.base,
        started.json()["confirm_url"].as_str().unwrap(),
    )
    .await;
    wait_for("the sweep settled the refund", async || {
        get(&url, Some(TOKEN)).await.json()["refunds"][0]["status"] == "SUCCESS"
    })
    .await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["refunded_amount"], "3.00", "{p}");
    assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
    assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");

    // Beside other pending refunds the total is not taken for one of them: with 5.00, 2.00 and
    // 3.00 pending and the 2.00 and 3.00 confirmed, Alipay's 5.00 is not the 5.00 refund.
    sandbox
        .sandbox
        .set_faults(payhost_sandbox::Faults::default());
    let url = paid(&host, &sandbox.base, "SW2", "10.00").await;
    sandbox.sandbox.set_faults(payhost_sandbox::Faults {
        drop_all_notifies: true,
        ..payhost_sandbox::Faults::default()
    });
    let mut pages = Vec::new();
    for (amount, key) in [("5.00", "sw-5"), ("2.00", "sw-2"), ("3.00", "sw-3")] {
        let r = send_json(
            "POST",
            &format!("{url}/refunds"),
            Some(TOKEN),
            &serde_json::json!({"amount": amount, "reason": "缺货", "refund_key": key}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        pages.push(r.json()["confirm_url"].as_str().unwrap().to_owned());
    }
    confirm_as_seller(&sandbox.base, &pages[1]).await;
    confirm_as_seller(&sandbox.base, &pages[2]).await;
    // Due 2 s after they started; a few rounds go by.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let p = get(&url, Some(TOKEN)).await.json();
    assert_eq!(p["refunded_amount"], "0.00", "{p}");
    assert!(
        p["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "PENDING"),
        "{p}"
    );
}
