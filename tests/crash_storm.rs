//! The crash storm: 1,000 orders paid through the sandbox gateway (a separate `payhost sandbox`
//! process that retries notifies on Alipay's schedule, sped up), while the host is killed with
//! `kill -9` at random moments at least five times and restarted. After the last restart:
//! every order is paid exactly once, every notification the host acknowledged is stored, and
//! every shop webhook event reaches the shop (the receiver counts them by event id).

use conformance::alipay::MD5_KEY;
use conformance::host::{config_head, free_port, get, spawn_payhost, temp_dir, Payhost};
use conformance::stub::{Seen, StubServer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "storm-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";
const ORDERS: usize = 1_000;
const KILLS: usize = 6;

/// A small deterministic generator, seeded from the clock (the seed is printed to replay a run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn db_count(db: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn retrying<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    retrying_for(what, Duration::from_secs(60), f).await
}

/// Polls `f` until it answers, at most `limit`: a count is taken only once the in-flight work it
/// depends on (retries, deliveries) has settled, never at the first moment a related condition holds.
async fn retrying_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    // The host may be down for a moment (being killed): try again, as a shop or a buyer would.
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up on {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_survive_six_kill_9s() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash storm seed {seed}");
    let dir = temp_dir("storm");
    // Notify retries at 600× speed: 2 minutes become 0.2 s, 15 hours 90 s.
    let sandbox = spawn_payhost(
        &dir,
        &[
            "sandbox",
            "--md5-merchant",
            &format!("{PARTNER}:{MD5_KEY}"),
            "--speed",
            "600",
        ],
    );
    // The shop's webhook receiver counts deliveries per event id.
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let port = free_port();
    let config = config_head(port, TOKEN, "")
        + &format!(
            r#"
[webhooks]
retry_base_ms = 50
retry_max_ms = 500

[merchants.storm]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{sandbox}/sandbox/gateway"
notify_verify_url = "{sandbox}/sandbox/mapi"
shop_webhook_url = "{hook}"
shop_webhook_secret = "storm-webhook-secret"
"#,
            sandbox = sandbox.base,
            hook = shop.url("/hook"),
        );
    let mut host = Payhost::start(&dir, &config);
    let base = format!("http://127.0.0.1:{port}");
    let db = dir.join("payhost.db");

    // 1. The shop creates 1,000 orders (host up).
    let pay_urls = conformance::orders::create_many(&base, "storm", TOKEN, "S", ORDERS, 16).await;

    // 2. Buyers pay all of them in the sandbox cashier while the host is killed and restarted.
    let paying = Arc::new(AtomicBool::new(true));
    let killer = {
        let paying = paying.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = Lcg(seed);
            let mut kills = 0;
            let mut kills_while_paying = 0;
            while kills < KILLS {
                std::thread::sleep(Duration::from_millis(150 + rng.next(350)));
                if paying.load(Ordering::Relaxed) {
                    kills_while_paying += 1;
                }
                host.kill9();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rng.next(200)));
                host.restart();
            }
            (host, kills, kills_while_paying)
        })
    };
    // Buyers are paced so the storm outlasts the kills.
    conformance::orders::pay_all(&sandbox.base, &pay_urls, 4, Duration::from_millis(12)).await;
    paying.store(false, Ordering::Relaxed);
    let (host, kills, kills_while_paying) = killer.await.unwrap();
    eprintln!("{kills} kill -9s, {kills_while_paying} of them while buyers were paying");
    assert!(kills >= 5);

    // 3. After the last restart the sandbox's retries bring every notify home.
    let started = Instant::now();
    retrying("every order paid", async || {
        let paid = db_count(
            &db,
            "SELECT COUNT(*) FROM payments WHERE merchant_id = 'storm' AND status = 'TRADE_SUCCESS'",
        );
        (paid as usize == ORDERS).then_some(())
    })
    .await;
    eprintln!(
        "all {ORDERS} paid {:.1} s after the last restart",
        started.elapsed().as_secs_f64()
    );

    // Paid exactly once: one applied notify_id per order, one 'applied' result per order.
    assert_eq!(
        db_count(&db, "SELECT COUNT(*) FROM applied_notifications"),
        ORDERS as i64
    );
    assert_eq!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM (SELECT out_trade_no FROM notification_results WHERE outcome = 'applied' GROUP BY out_trade_no HAVING COUNT(*) = 1)"
        ),
        ORDERS as i64,
        "every order has exactly one applied notification"
    );
    assert_eq!(
        db_count(
            &db,
            "SELECT COUNT(*) FROM notification_results WHERE outcome = 'applied'"
        ),
        ORDERS as i64
    );

    // Every notification the host acknowledged is stored: the sandbox counts what it got
    // `success` for; the host's append-only table holds at least that many. An order can be paid
    // while its notify's `success` was lost to a kill: the sandbox sends it again on Alipay's
    // schedule (at 600×, the last retries come 36 s and 90 s later), so wait for that, bounded.
    let started = Instant::now();
    let (notifies, acknowledged) = retrying_for(
        "every notify acknowledged",
        Duration::from_secs(240),
        async || {
            let state = get(&format!("{}/sandbox/state", sandbox.base), None)
                .await
                .json();
            let notifies = state["notifies"].as_array()?.clone();
            let acknowledged = notifies
                .iter()
                .filter(|n| n["acknowledged"] == true)
                .count();
            (acknowledged == ORDERS).then_some((notifies, acknowledged))
        },
    )
    .await;
    eprintln!(
        "every notify acknowledged {:.1} s after the last order turned paid",
        started.elapsed().as_secs_f64()
    );
    let sends: u64 = notifies.iter().map(|n| n["sends"].as_u64().unwrap()).sum();
    let stored = db_count(&db, "SELECT COUNT(*) FROM raw_notifications");
    eprintln!(
        "sandbox: {} notifies, {sends} sends, {acknowledged} acknowledged; host stored {stored}",
        notifies.len()
    );
    assert!(stored as usize >= acknowledged);
    // Every stored notification that was processed to the end has its result row; at most the
    // ones in flight at a kill (never answered `success`) lack one.
    let unprocessed = db_count(
        &db,
        "SELECT COUNT(*) FROM raw_notifications n WHERE NOT EXISTS (SELECT 1 FROM notification_results r WHERE r.raw_id = n.id)",
    );
    eprintln!("stored but cut short by a kill: {unprocessed}");
    assert!(unprocessed as u64 <= sends - acknowledged as u64);

    // Every webhook event reaches the shop: one distinct event per order, the outbox empty.
    retrying("every webhook delivered", async || {
        let pending = db_count(
            &db,
            "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL",
        );
        (pending == 0).then_some(())
    })
    .await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    // (out_trade_no, type) → the distinct event ids delivered for it.
    let mut per_order: HashMap<(String, String), std::collections::HashSet<String>> =
        HashMap::new();
    for s in shop.requests() {
        let id = s.header("x-payhost-event-id").unwrap();
        let event: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(
            event["id"],
            id.as_str(),
            "the header names the body's event"
        );
        per_order
            .entry((
                event["out_trade_no"].as_str().unwrap().to_owned(),
                event["type"].as_str().unwrap().to_owned(),
            ))
            .or_default()
            .insert(id.clone());
        *per_event.entry(id).or_default() += 1;
    }
    let deliveries: usize = per_event.values().sum();
    eprintln!(
        "webhooks: {} events, {deliveries} deliveries ({} repeated after a kill, same event id)",
        per_event.len(),
        deliveries - per_event.len()
    );
    assert_eq!(per_event.len(), ORDERS, "one webhook event per order");
    assert_eq!(per_order.len(), ORDERS, "one (order, type) per order");
    for i in 0..ORDERS {
        let ids = per_order
            .get(&(format!("S{i:05}"), "payment.paid".to_owned()))
            .unwrap_or_else(|| panic!("no payment.paid for S{i:05}"));
        assert_eq!(ids.len(), 1, "one event id for S{i:05}'s payment.paid");
    }
    // A delivery is repeated only when a kill fell between the shop's 2xx and the outbox commit
    // (at most one batch of 16 per kill).
    assert!(deliveries - per_event.len() <= 16 * kills);
    drop(host);
}
