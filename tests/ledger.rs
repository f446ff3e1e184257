//! The back office's ledger over real sockets, on SQLite and on PostgreSQL: `GET /v1/payments`
//! filters and cursor pages, the streamed CSV, `GET /v1/merchants`, a payment's timeline, the
//! refund bounds and refund-key idempotency, and a merchant token confined to its own merchant
//! (403 everywhere else). payhost and the sandbox gateway run in the test process (`TestHost`,
//! `TestSandbox`); the open platform's case runs `payhost demo`.

use conformance::alipay::{cashier_token, MD5_KEY};
use conformance::host::{config_head, get, post_form, send_json, temp_dir};
use conformance::postgres::PgCluster;
use conformance::testhost::{TestHost, TestSandbox};
use std::collections::HashSet;
use std::time::Duration;

const TOKEN: &str = "ledger-api-token-0123456789";
const PARTNER: &str = "2088101122136241";

/// The shared poll ([`conformance::wait_for`]) with this file's 20 s.
async fn wait_for(what: &str, f: impl AsyncFnMut() -> bool) {
    conformance::wait_for(what, Duration::from_secs(20), f).await
}

fn assert_error(r: &conformance::host::Reply, status: u16, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text());
    let e = &r.json()["error"];
    assert!(
        e["code"].is_string() && e["message"].is_string(),
        "{}",
        r.text()
    );
    if let Some(f) = field {
        assert_eq!(e["field"], f, "{}", r.text());
    }
}

/// Every out_trade_no of `url` (a ledger query), following next_cursor page by page.
async fn all_pages(host: &TestHost, query: &str, token: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => host.url(&format!("/v1/payments?{query}&cursor={c}")),
            None => host.url(&format!("/v1/payments?{query}")),
        };
        let r = get(&url, Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        out.extend(v["payments"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

fn nos(list: &[serde_json::Value]) -> Vec<String> {
    list.iter()
        .map(|p| p["out_trade_no"].as_str().unwrap().to_owned())
        .collect()
}

async fn scenario(name: &str, database: Option<String>) {
    let dir = temp_dir(name);
    let sandbox = TestSandbox::md5(PARTNER, MD5_KEY, 600.0).await;
    let merchant = |id: &str| {
        format!(
            r#"
[merchants.{id}]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "seller@example.com"
gateway_url = "{sb}/sandbox/gateway"
notify_verify_url = "{sb}/sandbox/mapi"
mapi_url = "{sb}/sandbox/mapi"
"#,
            sb = sandbox.base,
        )
    };
    let config = |port| {
        let config = config_head(port, TOKEN, "") + &merchant("shop") + &merchant("other");
        match &database {
            Some(url) => config.replace(
                "database = \"payhost.db\"",
                &format!("database = \"{url}\""),
            ),
            None => config,
        }
    };
    let host = TestHost::start(&dir, config).await;
    let status = async |m: &str, no: &str| -> String {
        get(
            &host.url(&format!("/v1/merchants/{m}/payments/{no}")),
            Some(TOKEN),
        )
        .await
        .json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let create = async |m: &str, no: &str, fee: &str| -> serde_json::Value {
        let r = send_json(
            "POST",
            &host.url(&format!("/v1/merchants/{m}/payments")),
            Some(TOKEN),
            &serde_json::json!({"out_trade_no": no, "subject": "账本", "total_fee": fee, "return_url": "https://shop.example/r"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    for (i, no) in ["L1", "L2", "L3", "L4", "L5"].iter().enumerate() {
        let created = create("shop", no, &format!("{}.00", i + 1)).await;
        if i < 3 {
            let page = get(created["pay_url"].as_str().unwrap(), None).await;
            let token = cashier_token(&page.text());
            post_form(
                &format!("{}/sandbox/cashier/pay", sandbox.base),
                &format!("token={token}"),
            )
            .await;
            wait_for("paid", async || status("shop", no).await == "TRADE_SUCCESS").await;
        }
    }
    create("other", "O1", "9.99").await;

    // Every payment once, newest first, across pages of 2.
    let all = all_pages(&host, "limit=2", TOKEN).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(nos(&all).into_iter().collect::<HashSet<_>>().len(), 6);
    let keys: Vec<(String, String, String)> = all
        .iter()
        .map(|p| {
            (
                p["created_at"].as_str().unwrap().to_owned(),
                p["merchant_id"].as_str().unwrap().to_owned(),
                p["out_trade_no"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted, "newest first");

    // Filters.
    let mut paid = nos(&all_pages(&host, "merchant=shop&status=TRADE_SUCCESS", TOKEN).await);
    paid.sort();
    assert_eq!(paid, ["L1", "L2", "L3"]);
    assert_eq!(nos(&all_pages(&host, "q=l4", TOKEN).await), ["L4"]);
    // The subject too: an owner remembers what was bought, not the number.
    assert_eq!(
        all_pages(&host, "q=%E8%B4%A6%E6%9C%AC", TOKEN).await.len(),
        all_pages(&host, "", TOKEN).await.len(),
        "every payment here is 账本"
    );
    assert!(all_pages(&host, "q=%E9%92%B1%E5%8C%85", TOKEN)
        .await
        .is_empty());
    let mut mid = nos(&all_pages(&host, "min_amount=2&max_amount=4.00", TOKEN).await);
    mid.sort();
    assert_eq!(mid, ["L2", "L3", "L4"]);
    assert!(all_pages(&host, "from=2000-01-01&to=2000-01-02", TOKEN)
        .await
        .is_empty());
    let now = payhost::domain::clock::now_unix();
    let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(now));
    assert_eq!(
        all_pages(&host, &format!("from={today}&to={today}"), TOKEN)
            .await
            .len(),
        6
    );
    let one = &all_pages(&host, "q=L2", TOKEN).await[0];
    assert_eq!(one["total_fee"], "2.00");
    assert_eq!(one["refunded_amount"], "0.00");
    assert_eq!(one["status"], "TRADE_SUCCESS");

    // Bad input names its field, in the one error shape.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("status=PAID", "status"),
        ("from=2024-02-30", "from"),
        ("min_amount=-1", "min_amount"),
        ("cursor=nonsense", "cursor"),
    ] {
        let r = get(&host.url(&format!("/v1/payments?{q}")), Some(TOKEN)).await;
        assert_error(&r, 400, Some(field));
    }

    // The CSV: BOM, the documented header, one row per payment, the same values as the JSON.
    let csv = get(&host.url("/v1/payments.csv?merchant=shop"), Some(TOKEN)).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM");
    // Its file name says what it holds (a folder of exports is not all `payments.csv`).
    assert_eq!(
        csv.header("content-disposition").as_deref(),
        Some("attachment; filename=\"payments-shop.csv\"")
    );
    let dated = get(
        &host.url("/v1/payments.csv?merchant=shop&from=2026-12-01&to=2026-12-05"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        dated.header("content-disposition").as_deref(),
        Some("attachment; filename=\"payments-shop-2026-12-01_2026-12-05.csv\"")
    );
    let text = csv.text();
    let lines: Vec<&str> = text
        .trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines[0], payhost::ledger::CSV_COLUMNS.join(","));
    assert_eq!(lines.len(), 1 + 5, "{text}");
    let l2: Vec<&str> = lines
        .iter()
        .find(|l| l.contains(",L2,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(l2[0], "shop");
    assert_eq!(l2[4], "TRADE_SUCCESS");
    assert_eq!((l2[5], l2[6]), ("2.00", "0.00"));
    assert_eq!(l2[9], one["created_at"].as_str().unwrap());
    assert_eq!(
        l2[8],
        payhost::domain::clock::stored_to_beijing(l2[9]).unwrap()
    );
    assert!(!l2[11].is_empty(), "paid_at_utc of a paid payment");
    // paid_at is the gateway's Beijing gmt_payment in UTC: when it was paid (the sandbox runs
    // 600× fast, so within hours of created_at), never before it, and not a date years before
    // the order existed.
    let at = |s: &str| payhost::domain::clock::parse_rfc3339(s).unwrap_or_else(|| panic!("{s}"));
    let paid_after = at(l2[11]) - at(l2[9]);
    assert!(
        (0..86_400).contains(&paid_after),
        "paid_at {} vs created_at {}",
        l2[11],
        l2[9]
    );

    // Merchants with their counts (the operator's).
    let r = get(&host.url("/v1/merchants"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ms = r.json()["merchants"].as_array().unwrap().clone();
    let shop = ms.iter().find(|m| m["id"] == "shop").unwrap();
    assert_eq!(
        (shop["payments"].as_u64(), shop["paid"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(shop["paid_amount"], "6.00");
    assert!(shop["plugin"].is_string() && shop["mode"].is_string());

    // A payment's timeline: created, the redirect to the cashier, the notify that paid it, the
    // buyer's return is not taken here (the sandbox does not follow it).
    let p = get(&host.url("/v1/merchants/shop/payments/L1"), Some(TOKEN))
        .await
        .json();
    let kinds: Vec<&str> = p["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..3], ["created", "redirect", "notify"], "{p}");
    assert_eq!(p["refunded_amount"], "0.00");
    assert_eq!(p["refunds"], serde_json::json!([]));
    let notify = p["timeline"].as_array().unwrap()[2].clone();
    assert_eq!(notify["outcome"], "applied", "{notify}");

    // Refund bounds (decided before any provider call).
    let refund = async |no: &str, body: serde_json::Value| {
        send_json(
            "POST",
            &host.url(&format!("/v1/merchants/shop/payments/{no}/refunds")),
            Some(TOKEN),
            &body,
        )
        .await
    };
    assert_error(
        &refund("L1", serde_json::json!({"amount": "0"})).await,
        400,
        Some("amount"),
    );
    assert_error(
        &refund("L1", serde_json::json!({"amount": "1.001"})).await,
        400,
        Some("amount"),
    );
    assert_error(
        &refund("L1", serde_json::json!({"reason": "x"})).await,
        400,
        Some("amount"),
    );
    // Another JSON type says what an amount is, not that it is empty.
    let typed = refund("L1", serde_json::json!({"amount": true})).await;
    assert_error(&typed, 400, Some("amount"));
    assert!(
        typed.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("decimal string")),
        "{}",
        typed.text()
    );
    assert_error(
        &refund("L1", serde_json::json!({"amount": "1.01"})).await,
        409,
        Some("amount"),
    );
    assert_error(
        &refund("L4", serde_json::json!({"amount": "1.00"})).await,
        409,
        None,
    );
    assert_error(
        &refund("NOPE", serde_json::json!({"amount": "1.00"})).await,
        404,
        None,
    );
    // A refund not yet confirmed (the legacy API's seller confirms it on Alipay's page) is found
    // in the list without opening each order: `status=REFUND_PENDING`, on both backends.
    // A reason on two lines is refused before anything is kept (the provider takes one line).
    assert_error(
        &refund(
            "L1",
            serde_json::json!({"amount": "0.10", "reason": "退货\n原因", "refund_key": "two-lines"}),
        )
        .await,
        400,
        Some("reason"),
    );
    let pending = refund("L1", serde_json::json!({"amount": "0.10"})).await;
    assert_eq!(pending.status, 201, "{}", pending.text());
    assert_eq!(pending.json()["status"], "PENDING", "{}", pending.text());
    assert_eq!(
        nos(&all_pages(&host, "status=refund_pending&limit=50", TOKEN).await),
        ["L1"]
    );
    let totals = get(&host.url("/v1/payments?status=REFUND_PENDING"), Some(TOKEN)).await;
    assert_eq!(totals.status, 200, "{}", totals.text());

    // A merchant token sees and acts on its own merchant only.
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/other/tokens"),
        Some(TOKEN),
        &serde_json::json!({"label": "ledger"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mt = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(nos(&all_pages(&host, "limit=50", &mt).await), ["O1"]);
    // The refund list too: the operator sees shop's pending refund, other's token none of it.
    let refunds_of = async |token: &str| -> Vec<serde_json::Value> {
        let r = get(&host.url("/v1/refunds"), Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["refunds"].as_array().unwrap().clone()
    };
    assert_eq!(nos(&refunds_of(TOKEN).await), ["L1"]);
    assert!(refunds_of(&mt).await.is_empty());
    let csv = get(&host.url("/v1/refunds.csv"), Some(&mt)).await;
    assert_eq!(csv.text().matches("\r\n").count(), 1, "the header only");
    let r = get(&host.url("/v1/payments?merchant=shop"), Some(&mt)).await;
    assert_error(&r, 403, Some("merchant"));
    let csv = get(&host.url("/v1/payments.csv"), Some(&mt)).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.text().matches("\r\n").count(), 2, "header and O1 only");
    assert_error(&get(&host.url("/v1/merchants"), Some(&mt)).await, 403, None);
    assert_error(
        &send_json(
            "POST",
            &host.url("/v1/merchants/shop/payments/L1/refunds"),
            Some(&mt),
            &serde_json::json!({"amount": "0.10"}),
        )
        .await,
        403,
        None,
    );
    assert_error(
        &send_json(
            "POST",
            &host.url("/v1/merchants/shop/payments/L5/close"),
            Some(&mt),
            &serde_json::json!({}),
        )
        .await,
        403,
        None,
    );
    assert_error(
        &get(
            &host.url("/v1/merchants/shop/reconciliation?date=2024-01-01"),
            Some(&mt),
        )
        .await,
        403,
        None,
    );
    // Its own refund route is open to it (bounds as for the operator).
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/other/payments/O1/refunds"),
        Some(&mt),
        &serde_json::json!({"amount": "1.00"}),
    )
    .await;
    assert_error(&r, 409, None);
    // Reconciliation refuses a future day before anything else.
    let r = get(
        &host.url("/v1/merchants/other/reconciliation?date=2999-01-01"),
        Some(&mt),
    )
    .await;
    assert_error(&r, 400, Some("date"));
    let r = get(
        &host.url("/v1/merchants/other/reconciliation?date=yesterday"),
        Some(&mt),
    )
    .await;
    assert_error(&r, 400, Some("date"));
    // A date given twice, or a parameter the route does not take, is named, never ignored.
    let r = get(
        &host.url("/v1/merchants/other/reconciliation?date=2024-01-02&date=2024-01-01"),
        Some(&mt),
    )
    .await;
    assert_error(&r, 400, Some("date"));
    let r = get(
        &host.url("/v1/merchants/other/reconciliation?date=2024-01-02&merchant=shop"),
        Some(&mt),
    )
    .await;
    assert_error(&r, 400, Some("merchant"));
    // The CSV holds every matching payment: a page size is refused like a cursor.
    let r = get(&host.url("/v1/payments.csv?limit=5"), Some(&mt)).await;
    assert_error(&r, 400, Some("limit"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_on_sqlite() {
    scenario("ledger-sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_on_postgres() {
    let pg = PgCluster::start("ledger-pg");
    let url = pg.create_database("ledger");
    scenario("ledger-pg", Some(url)).await;
    drop(pg);
}

mod open_platform {
    //! Refunds and close through the component and the sandbox's open platform (`payhost demo`'s
    //! `open-shop`): a partial refund (and its notify, matched to it by `out_biz_no`), the same
    //! refund_key twice, the paid-amount bound with a refund in the books, close at the provider
    //! and of a trade the provider never saw; on SQLite and on PostgreSQL.

    use super::*;
    use conformance::host::{spawn_payhost, Demo, Reply, ADMIN_PASSWORD};

    const DEMO_TOKEN: &str = "ledger-demo-token-0123456789";
    const M: &str = "open-shop";

    fn location(r: &Reply) -> String {
        assert_eq!(r.status, 302, "{}", r.text());
        r.header("location").unwrap()
    }

    /// The demo shop's buy button: the new order's number and its pay URL (not opened).
    async fn buy(d: &Demo) -> (String, String) {
        let pay_url = location(&post_form(&format!("{}/shop/buy/fan", d.base), "").await);
        let no = pay_url
            .split("out_trade_no%22%3A%22")
            .nth(1)
            .and_then(|s| s.split("%22").next())
            .unwrap_or_else(|| panic!("no out_trade_no in {pay_url}"))
            .to_owned();
        (no, pay_url)
    }

    async fn payment(d: &Demo, no: &str) -> serde_json::Value {
        get(
            &format!("{}/v1/merchants/{M}/payments/{no}", d.base),
            Some(DEMO_TOKEN),
        )
        .await
        .json()
    }

    async fn refund(d: &Demo, no: &str, body: serde_json::Value) -> Reply {
        send_json(
            "POST",
            &format!("{}/v1/merchants/{M}/payments/{no}/refunds", d.base),
            Some(DEMO_TOKEN),
            &body,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn open_platform_refund_and_close() {
        let dir = temp_dir("ledger-openapi");
        let db = dir.join("demo.db").display().to_string();
        refund_and_close(&dir, &db).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn open_platform_refund_and_close_on_postgres() {
        let pg = PgCluster::start("ledger-openapi-pg");
        let url = pg.create_database("openapi");
        refund_and_close(&temp_dir("ledger-openapi-pg"), &url).await;
        drop(pg);
    }

    /// `payhost demo` on `database` (a SQLite file or a PostgreSQL URL), with one order of the
    /// demo shop paid (25.00) in the open platform's cashier: the demo and the order's number.
    async fn demo_with_a_paid_order(dir: &std::path::Path, db: &str) -> (Demo, String) {
        let d = spawn_payhost(
            dir,
            &[
                "demo",
                "--api-token",
                DEMO_TOKEN,
                "--admin-password",
                ADMIN_PASSWORD,
                "--database",
                db,
            ],
        );
        let (no, pay_url) = buy(&d).await;
        let token = cashier_token(&get(&pay_url, None).await.text());
        post_form(
            &format!("{}/sandbox/openapi/cashier/pay", d.base),
            &format!("token={token}"),
        )
        .await;
        wait_for("paid", async || {
            payment(&d, &no).await["status"] == "TRADE_SUCCESS"
        })
        .await;
        (d, no)
    }

    /// Refunds and close on `database` (a SQLite file or a PostgreSQL URL).
    async fn refund_and_close(dir: &std::path::Path, db: &str) {
        // Paid: 25.00.
        let (d, no) = demo_with_a_paid_order(dir, db).await;

        // A partial refund: alipay.trade.refund moves money at once (fund_change Y).
        let r = refund(
            &d,
            &no,
            serde_json::json!({"amount": "10.00", "reason": "尺码不合", "refund_key": "k1"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let first = r.json();
        assert_eq!(first["amount"], "10.00");
        assert_eq!(first["status"], "SUCCESS", "{first}");
        assert_eq!(first["started_by"], "api:operator");
        assert!(first["completed_at"].is_string(), "{first}");
        // The same key again: the same refund, never a second one.
        let r = refund(
            &d,
            &no,
            serde_json::json!({"amount": "10.00", "reason": "尺码不合", "refund_key": "k1"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], first["id"]);
        // The same key with another amount is a mistake, never taken for that refund.
        let r = refund(
            &d,
            &no,
            serde_json::json!({"amount": "7.00", "refund_key": " k1 "}),
        )
        .await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "refund_key_reused");
        assert_eq!(r.json()["error"]["field"], "refund_key");
        // More than what is left is refused.
        let r = refund(&d, &no, serde_json::json!({"amount": "15.01"})).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["field"], "amount");
        let p = payment(&d, &no).await;
        assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{p}");
        assert_eq!(p["refunded_amount"], "10.00");
        assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");
        // The sandbox's partial-refund notify names the refund (out_biz_no): matched to it,
        // nothing applied twice.
        wait_for("the refund notify", async || {
            payment(&d, &no).await["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "notify")
                .count()
                >= 2
        })
        .await;
        let p = payment(&d, &no).await;
        assert_eq!(p["refunded_amount"], "10.00", "{p}");
        assert_eq!(p["refunds"].as_array().unwrap().len(), 1, "{p}");
        let kinds: Vec<&str> = p["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"refund"), "{kinds:?}");
        // The rest: REFUNDED.
        let r = refund(
            &d,
            &no,
            serde_json::json!({"amount": "15.00", "refund_key": "k2"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let p = payment(&d, &no).await;
        assert_eq!(p["status"], "REFUNDED", "{p}");
        assert_eq!(p["refunded_amount"], "25.00");
        let r = refund(&d, &no, serde_json::json!({"amount": "0.01"})).await;
        assert_eq!(r.status, 409, "{}", r.text());

        // Close: a paid one is refused; an opened cashier's trade closes at the provider; a trade
        // the provider never saw is closed here, and the answer says so.
        let close = async |no: &str| {
            send_json(
                "POST",
                &format!("{}/v1/merchants/{M}/payments/{no}/close", d.base),
                Some(DEMO_TOKEN),
                &serde_json::json!({}),
            )
            .await
        };
        assert_eq!(close(&no).await.status, 409);
        let (seen, seen_url) = buy(&d).await;
        let _ = get(&seen_url, None).await;
        let r = close(&seen).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "TRADE_CLOSED");
        assert_eq!(r.json()["closed_at_provider"], true, "{}", r.text());
        let (never, _) = buy(&d).await;
        let r = close(&never).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["closed_at_provider"], false, "{}", r.text());
        assert!(
            r.json()["detail"].as_str().unwrap().contains("here"),
            "{}",
            r.text()
        );
        assert_eq!(payment(&d, &never).await["status"], "TRADE_CLOSED");
        assert_eq!(close(&never).await.status, 409, "closed once");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_payment_read_during_refunds_is_one_snapshot() {
        let dir = temp_dir("ledger-snapshot");
        let db = dir.join("demo.db").display().to_string();
        reads_during_refunds(&dir, &db).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_payment_read_during_refunds_is_one_snapshot_on_postgres() {
        let pg = PgCluster::start("ledger-snapshot-pg");
        let url = pg.create_database("snapshot");
        reads_during_refunds(&temp_dir("ledger-snapshot-pg"), &url).await;
        drop(pg);
    }

    /// A shop polls `GET …/payments/{no}` while refunds of 1.00 succeed one after another: every
    /// answer is one moment of the books. Its `refunded_amount` is what its SUCCESS refunds add
    /// up to, and its status says refunded exactly when something was. (The payment, its total
    /// and its refunds were separate reads, and an answer could straddle a refund's commit:
    /// TRADE_SUCCESS beside a refund already SUCCESS.)
    async fn reads_during_refunds(dir: &std::path::Path, db: &str) {
        let (d, no) = demo_with_a_paid_order(dir, db).await;
        let fen = |v: &serde_json::Value| -> u64 {
            let s = v.as_str().unwrap_or_else(|| panic!("{v}"));
            let (y, f) = s.split_once('.').unwrap();
            y.parse::<u64>().unwrap() * 100 + f.parse::<u64>().unwrap()
        };
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (base, no, done) = (d.base.clone(), no.clone(), done.clone());
                tokio::spawn(async move {
                    let (mut reads, mut torn) = (0, Vec::new());
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let p = get(
                            &format!("{base}/v1/merchants/{M}/payments/{no}"),
                            Some(DEMO_TOKEN),
                        )
                        .await
                        .json();
                        let refunded = fen(&p["refunded_amount"]);
                        let succeeded: u64 = p["refunds"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|r| r["status"] == "SUCCESS")
                            .map(|r| fen(&r["amount"]))
                            .sum();
                        let says_refunded = matches!(
                            p["status"].as_str(),
                            Some("PARTIALLY_REFUNDED" | "REFUNDED")
                        );
                        if refunded != succeeded || says_refunded != (refunded > 0) {
                            torn.push(format!(
                                "{} refunded {} with SUCCESS refunds of {succeeded}",
                                p["status"], p["refunded_amount"]
                            ));
                        }
                        reads += 1;
                    }
                    (reads, torn)
                })
            })
            .collect();
        for i in 0..12 {
            let r = refund(
                &d,
                &no,
                serde_json::json!({"amount": "1.00", "reason": "分批", "refund_key": format!("snap-{i}")}),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut reads, mut torn) = (0, Vec::new());
        for r in readers {
            let (n, t) = r.await.unwrap();
            reads += n;
            torn.extend(t);
        }
        assert!(reads > 12, "the readers ran ({reads} reads)");
        assert!(
            torn.is_empty(),
            "{} of {reads} answers torn: {torn:?}",
            torn.len()
        );
        assert_eq!(payment(&d, &no).await["refunded_amount"], "12.00");
    }
}
