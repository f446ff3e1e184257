//! The PostgreSQL store against a real PostgreSQL cluster started by the test
//! (`support::postgres::PgCluster`): the SQLite store's semantics, migrations applied once when
//! several replicas start together, concurrent duplicate notifies from two store instances → one
//! transition, and the webhook outbox leased by two instances → one delivery per event, with a
//! lease that expires when its holder dies.

use conformance::postgres::PgCluster;
use payhost::store::admin::AdminStore;
use payhost::store::postgres::{PgOptions, PostgresStore};
use payhost::store::*;
use std::sync::Arc;
use std::time::Duration;

fn payment(merchant: &str, no: &str) -> Payment {
    Payment {
        merchant_id: merchant.into(),
        out_trade_no: no.into(),
        subject: "s".into(),
        total_fen: 1,
        seller: "s@example.com".into(),
        return_url: "https://shop/r".into(),
        status: WAIT_BUYER_PAY.into(),
        request_token: Some("t".into()),
        pay_url: Some("https://pay".into()),
        trade_no: None,
        buyer_email: None,
        paid_at: None,
        review: None,
        created_at: now_rfc3339(),
        updated_at: now_rfc3339(),
        finished_at: None,
    }
}

fn effect<'a>(notify_id: &'a str, status: &'a str) -> NotificationEffect<'a> {
    NotificationEffect {
        merchant_id: "m1",
        notify_id,
        out_trade_no: "o1",
        trade_status: status,
        event: match status {
            "TRADE_SUCCESS" => TradeEvent::Paid,
            "TRADE_FINISHED" => TradeEvent::Finished,
            "TRADE_CLOSED" => TradeEvent::Closed,
            _ => TradeEvent::Waiting,
        },
        trade_no: "2014",
        buyer_email: Some("b@example.com"),
        paid_at: Some("2014-01-01 12:00:10"),
        webhook_url: Some("https://shop/hook"),
        refund_status: None,
        gmt_refund: None,
    }
}

fn record() -> NotificationRecord {
    NotificationRecord {
        raw_id: 1,
        merchant_id: "m1".into(),
        received_at: String::new(),
        notify_id: None,
        out_trade_no: Some("o1".into()),
        trade_status: None,
        outcome: None,
        detail: None,
    }
}

fn raw() -> RawNotification<'static> {
    RawNotification {
        merchant_id: "m1",
        remote: Some("127.0.0.1"),
        body: b"raw \xff bytes",
    }
}

/// A store at `url` whose merchants "m1" and "m2" exist (a payment needs its merchant).
async fn open(url: &str) -> PostgresStore {
    let s = open_bare(url).await;
    with_merchants(&s).await;
    s
}

/// A merchant's settings, the least a store keeps.
fn merchant_settings() -> payhost::config::MerchantSettings {
    payhost::config::MerchantSettings {
        settings: vec![("partner".into(), "2088".into())],
        ..Default::default()
    }
}

/// Merchants "m1" and "m2", for the payments of the tests.
async fn with_merchants(s: &dyn Store) {
    let m = merchant_settings();
    for id in ["m1", "m2"] {
        s.save_merchant(id, &m, Expected::Anything).await.unwrap();
    }
}

async fn open_bare(url: &str) -> PostgresStore {
    PostgresStore::open(
        url,
        &PgOptions {
            pool_size: 8,
            lease: Duration::from_secs(2),
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_semantics_as_sqlite() {
    let pg = PgCluster::start("semantics");
    let url = pg.create_database("semantics");
    let s = open(&url).await;
    assert!(matches!(
        s.insert_payment(&payment("m1", "o1")).await.unwrap(),
        Inserted::New
    ));
    assert!(matches!(
        s.insert_payment(&payment("m1", "o1")).await.unwrap(),
        Inserted::Existing(_)
    ));
    let mut zero = payment("m1", "z");
    zero.total_fen = 0;
    assert!(
        s.insert_payment(&zero).await.is_err(),
        "CHECK total_fen > 0"
    );
    assert_eq!(
        s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed {
            from: WAIT_BUYER_PAY.into(),
            to: TRADE_SUCCESS.into()
        }
    );
    assert_eq!(
        s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Duplicate
    );
    assert_eq!(
        s.apply_notification(&effect("n2", "TRADE_SUCCESS"), &raw(), &record())
            .await
            .unwrap(),
        Applied::NoChange
    );
    assert!(matches!(
        s.apply_notification(&effect("n3", "TRADE_FINISHED"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed { .. }
    ));
    let mut e = effect("n4", "TRADE_SUCCESS");
    e.out_trade_no = "nope";
    assert_eq!(
        s.apply_notification(&e, &raw(), &record()).await.unwrap(),
        Applied::UnknownOrder
    );
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(p.status, TRADE_FINISHED);
    assert_eq!(p.paid_at.as_deref(), Some("2014-01-01 12:00:10"));
    assert_eq!(p.trade_no.as_deref(), Some("2014"));
    let jobs = s.due_webhooks(now_ms() + 1, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    s.webhook_delivered(jobs[0].id).await.unwrap();
    assert_eq!(s.pending_webhooks().await.unwrap(), 1);
    // Reopening keeps everything; migrations are not applied twice.
    drop(s);
    let s = open(&url).await;
    assert_eq!(
        s.payment("m1", "o1").await.unwrap().unwrap().status,
        TRADE_FINISHED
    );
    assert_eq!(
        pg.psql("semantics", "SELECT COUNT(*) FROM schema_migrations"),
        "8"
    );
    assert_eq!(
        pg.psql("semantics", "SHOW synchronous_commit"),
        "on",
        "the server runs with durable commits"
    );
    assert_eq!(s.raw_notification_count().await.unwrap(), 5);
    let outcomes: Vec<_> = s
        .notifications_for("m1", "o1")
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            "applied",
            "duplicate",
            "no_change",
            "applied",
            "unknown_order"
        ]
    );
    let recent = s.recent_notifications(Some("m1"), None, 2).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert!(recent[0].raw_id > recent[1].raw_id, "newest first");
    assert_eq!(
        pg.psql(
            "semantics",
            "SELECT encode(body, 'hex') FROM raw_notifications ORDER BY id LIMIT 1"
        ),
        "72617720ff206279746573",
        "raw bytes kept exactly"
    );

    // Refunds.
    s.insert_payment(&payment("m1", "r1")).await.unwrap();
    let mut e = effect("r-n1", "TRADE_SUCCESS");
    e.out_trade_no = "r1";
    s.apply_notification(&e, &raw(), &record()).await.unwrap();
    let mut partial = effect("r-n2", "TRADE_SUCCESS");
    partial.out_trade_no = "r1";
    partial.refund_status = Some("REFUND_SUCCESS");
    partial.event = TradeEvent::PartiallyRefunded;
    assert_eq!(
        s.apply_notification(&partial, &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed {
            from: TRADE_SUCCESS.into(),
            to: PARTIALLY_REFUNDED.into()
        }
    );
    let mut full = effect("r-n3", "TRADE_CLOSED");
    full.out_trade_no = "r1";
    full.refund_status = Some("REFUND_SUCCESS");
    full.event = TradeEvent::Refunded;
    assert_eq!(
        s.apply_notification(&full, &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed {
            from: PARTIALLY_REFUNDED.into(),
            to: REFUNDED.into()
        }
    );
    assert_eq!(
        s.payment("m1", "r1").await.unwrap().unwrap().status,
        REFUNDED
    );

    // Merchants: seeded, kept when the table did not change, API saves win until it does.
    let settings = payhost::config::MerchantSettings {
        settings: vec![("partner".into(), "2088".into())],
        plugin_id: "alipay-wap".into(),
        ..Default::default()
    };
    assert!(s.seed_merchant("shop", &settings, "h1").await.unwrap());
    assert!(!s.seed_merchant("shop", &settings, "h1").await.unwrap());
    s.save_merchant("shop", &settings, Expected::Anything)
        .await
        .unwrap();
    assert!(s.seed_merchant("shop", &settings, "h2").await.unwrap());
    assert_eq!(s.merchant_ids().await.unwrap(), ["m1", "m2", "shop"]);
    assert!(s.merchant("shop").await.unwrap().is_some());
    assert!(s.merchant("other").await.unwrap().is_none());

    // Payments list, review flag, token update.
    s.flag_for_review("m1", "o1", "amount").await.unwrap();
    assert_eq!(
        s.payment("m1", "o1")
            .await
            .unwrap()
            .unwrap()
            .review
            .as_deref(),
        Some("amount")
    );
    s.insert_payment(&payment("m1", "o9")).await.unwrap();
    s.set_payment_token("m1", "o9", "tok2", "https://pay2")
        .await
        .unwrap();
    assert_eq!(
        s.payment("m1", "o9")
            .await
            .unwrap()
            .unwrap()
            .request_token
            .as_deref(),
        Some("tok2")
    );
    let recent = s.recent_payments(Some("m1"), 10).await.unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].out_trade_no, "o9", "newest first");
    assert!(s.recent_payments(Some("m2"), 10).await.unwrap().is_empty());
    assert_eq!(s.recent_payments(None, 1).await.unwrap().len(), 1);
    s.ready().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_sessions_tokens_and_pruning() {
    let pg = PgCluster::start("hardening");
    let s = open(&pg.create_database("hardening")).await;
    s.insert_payment(&payment("m1", "o1")).await.unwrap();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
        .await
        .unwrap();
    let job = s.due_webhooks(now_ms() + 1, 10).await.unwrap().remove(0);
    s.webhook_dead(job.taken(), "HTTP 500").await.unwrap();
    assert_eq!(s.pending_webhooks().await.unwrap(), 0);
    assert!(s.due_webhooks(now_ms() + 1, 10).await.unwrap().is_empty());
    let dead = s.dead_webhooks(Some("m1"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_type, "payment.paid");
    assert_eq!(
        dead[0].out_trade_no.as_deref(),
        Some("o1"),
        "the order, read from the body"
    );
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(!s.resend_webhook("other", job.id).await.unwrap());
    assert!(s.resend_webhook("m1", job.id).await.unwrap());
    let again = s.due_webhooks(now_ms() + 1, 10).await.unwrap();
    assert_eq!(again.len(), 1, "resent: due again, lease dropped");
    s.webhook_failed(again[0].taken(), now_ms() - 1, "timeout")
        .await
        .unwrap();
    let relet = s.due_webhooks(now_ms() + 1, 10).await.unwrap();
    assert_eq!(relet.len(), 1, "a failed attempt drops the lease");
    // Retried now on request (the shop is fixed): its merchant's only, and never one a replica
    // is sending (leased).
    s.webhook_failed(relet[0].taken(), now_ms() + 3_600_000, "HTTP 500")
        .await
        .unwrap();
    assert!(s.due_webhooks(now_ms() + 1, 10).await.unwrap().is_empty());
    assert_eq!(s.retry_webhooks_now(Some("other")).await.unwrap(), 0);
    assert_eq!(s.retry_webhooks_now(Some("m1")).await.unwrap(), 1);
    let sending = s.due_webhooks(now_ms() + 1, 10).await.unwrap();
    assert_eq!(sending.len(), 1);
    s.webhook_failed(sending[0].taken(), now_ms() + 3_600_000, "HTTP 500")
        .await
        .unwrap();
    let _lease = s.due_webhooks(now_ms() + 3_600_001, 10).await.unwrap();
    assert_eq!(
        s.retry_webhooks_now(None).await.unwrap(),
        0,
        "a leased row is being sent"
    );

    s.create_session("h1", "csrf1", now_ms() + 60_000)
        .await
        .unwrap();
    s.create_session("h2", "csrf2", now_ms() - 1).await.unwrap();
    assert_eq!(
        s.session("h1", now_ms()).await.unwrap().as_deref(),
        Some("csrf1")
    );
    assert_eq!(s.session("h2", now_ms()).await.unwrap(), None, "expired");
    s.delete_session("h1").await.unwrap();
    assert_eq!(s.session("h1", now_ms()).await.unwrap(), None, "revoked");
    // A session in use moves its end on; never back, and an ended one stays ended.
    s.create_user_session("h3", "csrf3", now_ms() + 60_000, None)
        .await
        .unwrap();
    let at = now_ms();
    s.extend_admin_session("h3", at, at + 600_000)
        .await
        .unwrap();
    let live = s.admin_session("h3", at).await.unwrap().unwrap();
    assert_eq!(live.expires_ms, at + 600_000);
    s.extend_admin_session("h3", at, at + 120_000)
        .await
        .unwrap();
    assert_eq!(
        s.admin_session("h3", at).await.unwrap().unwrap().expires_ms,
        at + 600_000
    );
    s.extend_admin_session("h2", now_ms(), now_ms() + 600_000)
        .await
        .unwrap();
    assert_eq!(s.admin_session("h2", now_ms()).await.unwrap(), None);

    // A token is made only for a stored merchant (one removed meanwhile has none).
    assert_eq!(
        s.create_token("gone", "hash0", "", "api:operator")
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.token_merchant("hash0").await.unwrap(), None);
    let id = s
        .create_token("m1", "hash1", "ecshop", "api:operator")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.token_merchant("hash1").await.unwrap().as_deref(),
        Some("m1")
    );
    assert_eq!(s.tokens(Some("m1")).await.unwrap().len(), 1);
    assert!(s.tokens(Some("m2")).await.unwrap().is_empty());
    assert!(!s.revoke_token(id, Some("m2")).await.unwrap());
    assert!(s.revoke_token(id, Some("m1")).await.unwrap());
    assert_eq!(s.token_merchant("hash1").await.unwrap(), None);
    assert!(s.tokens(None).await.unwrap()[0].revoked_at.is_some());

    let rec = NotificationRecord {
        outcome: Some("bad_signature".into()),
        ..record()
    };
    assert!(
        s.record_notification(&raw(), &record()).await.is_err(),
        "a result needs its outcome (NOT NULL, as in SQLite); nothing is stored"
    );
    for _ in 0..3 {
        s.record_notification(&raw(), &rec).await.unwrap();
    }
    assert_eq!(s.raw_notification_count().await.unwrap(), 4);
    assert_eq!(
        s.prune_raw_notifications("1970-01-02T00:00:00Z", 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.prune_raw_notifications("9999-01-01T00:00:00Z", 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.prune_raw_notifications("9999-01-01T00:00:00Z", 10)
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.raw_notification_count().await.unwrap(), 0);
}

/// Issue 22: a never-verified notification is a bounded record (1 KiB of its body, size, SHA-256,
/// reason, source), the newest `quota` per merchant; refused rows have their own retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_notifications_are_bounded_records_within_a_quota() {
    use sha2::Digest;
    let pg = PgCluster::start("refused");
    let url = pg.create_database("refused");
    let s = open(&url).await;
    let body = vec![b'x'; 30 * 1024];
    let forged = |m: &'static str| RawNotification {
        merchant_id: m,
        remote: Some("192.0.2.1"),
        body: &body,
    };
    let rec = NotificationRecord {
        outcome: Some("bad_signature".into()),
        detail: Some("d".repeat(5000)),
        out_trade_no: None,
        ..record()
    };
    for _ in 0..5 {
        s.record_refused_notification(RefusedRecord::new(&forged("m1"), &rec), 3)
            .await
            .unwrap();
    }
    s.record_refused_notification(RefusedRecord::new(&forged("m2"), &rec), 3)
        .await
        .unwrap();
    let verified = NotificationRecord {
        notify_id: Some("n9".into()),
        outcome: Some("unknown_order".into()),
        ..record()
    };
    s.record_notification(&raw(), &verified).await.unwrap();
    let q = |sql: &str| pg.psql("refused", sql);
    assert_eq!(
        q("SELECT COUNT(*) FROM raw_notifications WHERE merchant_id = 'm1' AND refused"),
        "3"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM raw_notifications WHERE merchant_id = 'm2' AND refused"),
        "1"
    );
    assert_eq!(
        q("SELECT DISTINCT octet_length(body) || ' ' || body_size || ' ' || body_sha256 || ' ' || remote_addr FROM raw_notifications WHERE refused"),
        format!(
            "1024 {} {} 192.0.2.1",
            30 * 1024,
            hex::encode(sha2::Sha256::digest(&body))
        )
    );
    assert_eq!(
        q("SELECT MAX(char_length(detail)) FROM notification_results r JOIN raw_notifications n ON n.id = r.raw_id WHERE n.refused"),
        "513"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM notification_results r JOIN raw_notifications n ON n.id = r.raw_id WHERE n.refused"),
        "4",
        "one result per kept record, none orphaned"
    );
    assert_eq!(
        s.prune_refused_notifications("1970-01-02T00:00:00Z", 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.prune_refused_notifications("9999-01-01T00:00:00Z", 10)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        s.raw_notification_count().await.unwrap(),
        1,
        "the verified one stays"
    );
}

/// Two "replicas" (store instances with their own pools) open the same new database at once (the
/// migration runs once), then 64 duplicate notifies spread over both → one transition, one
/// webhook; each raw notification stored with its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_over_two_replicas_make_one_transition() {
    let pg = PgCluster::start("dupes");
    let url = pg.create_database("dupes");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { open(&url).await })
        })
        .collect();
    let mut stores: Vec<Arc<PostgresStore>> = Vec::new();
    for t in opened {
        stores.push(Arc::new(t.await.unwrap()));
    }
    assert_eq!(
        pg.psql("dupes", "SELECT COUNT(*) FROM schema_migrations"),
        "8"
    );
    let (a, b) = (stores[0].clone(), stores[1].clone());
    for i in 0..8 {
        a.insert_payment(&payment("m1", &format!("o{i}")))
            .await
            .unwrap();
    }
    // 8 orders × 64 duplicates each (half through each replica), all at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut changed = 0;
                for i in 0..8 {
                    let no = format!("o{i}");
                    let nid = format!("n{i}");
                    let mut e = effect(&nid, "TRADE_SUCCESS");
                    e.out_trade_no = &no;
                    match s.apply_notification(&e, &raw(), &record()).await.unwrap() {
                        Applied::Changed { .. } => changed += 1,
                        Applied::Duplicate => {}
                        other => panic!("{other:?}"),
                    }
                }
                changed
            })
        })
        .collect();
    let mut changed = 0;
    for t in threads {
        changed += t.await.unwrap();
    }
    assert_eq!(changed, 8, "one transition per order");
    assert_eq!(a.raw_notification_count().await.unwrap(), 64 * 8);
    assert_eq!(
        b.pending_webhooks().await.unwrap(),
        8,
        "one webhook per order"
    );
    assert_eq!(
        pg.psql(
            "dupes",
            "SELECT COUNT(*) FROM notification_results WHERE outcome = 'duplicate'"
        ),
        (63 * 8).to_string()
    );
    for i in 0..8 {
        assert_eq!(
            b.payment("m1", &format!("o{i}"))
                .await
                .unwrap()
                .unwrap()
                .status,
            TRADE_SUCCESS
        );
    }
}

/// A notification's transaction goes out in two round trips (BEGIN with the payment's lock and
/// its claim; the writes with the COMMIT). It stays whole: a webhook conflict in the last round
/// trip leaves nothing of it, its webhooks are queued in order, and a notification cancelled in
/// the middle of its transaction leaves no pooled connection inside it (with one connection in
/// the pool, a transaction left open would swallow the next notification's claim and writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_whole_and_a_cancelled_one_leaves_no_open_transaction() {
    let pg = PgCluster::start("pipeline");
    let url = pg.create_database("pipeline");
    let s = Arc::new(
        PostgresStore::open(
            &url,
            &PgOptions {
                pool_size: 1,
                lease: Duration::from_secs(2),
            },
        )
        .await
        .unwrap(),
    );
    with_merchants(&*s).await;
    s.insert_payment(&payment("m1", "o1")).await.unwrap();
    let count = |sql: &str| pg.psql("pipeline", sql);

    // A partial refund reported for an order still waiting queues payment.paid then
    // payment.partially_refunded; the second one's id is taken already.
    let mut refunded = effect("n1", "TRADE_SUCCESS");
    refunded.event = TradeEvent::PartiallyRefunded;
    refunded.refund_status = Some("REFUND_SUCCESS");
    let second = event_id("m1", "o1", "payment.partially_refunded", Some("n1"));
    count(&format!(
        "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type)
         VALUES ('{second}', 'm1', 'https://shop/hook', '{{}}', 0, 0, 'payment.partially_refunded')"
    ));
    let err = s
        .apply_notification(&refunded, &raw(), &record())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("webhook event id conflict"),
        "{err:#}"
    );
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(p.status, WAIT_BUYER_PAY, "the payment did not move");
    assert_eq!(count("SELECT COUNT(*) FROM applied_notifications"), "0");
    assert_eq!(count("SELECT COUNT(*) FROM raw_notifications"), "0");
    assert_eq!(count("SELECT COUNT(*) FROM webhook_outbox"), "1");

    count("DELETE FROM webhook_outbox");
    assert!(matches!(
        s.apply_notification(&refunded, &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed { .. }
    ));
    assert_eq!(
        count("SELECT string_agg(event_type, ',' ORDER BY id) FROM webhook_outbox"),
        "payment.paid,payment.partially_refunded"
    );
    assert_eq!(
        count("SELECT outcome FROM notification_results r JOIN raw_notifications n ON n.id = r.raw_id"),
        "applied"
    );

    // Another session holds o2's row; a notification for o2 waits for it, mid-transaction,
    // and is cancelled there.
    s.insert_payment(&payment("m1", "o2")).await.unwrap();
    let mut holder = pg.session("pipeline");
    holder.send("BEGIN; SELECT 1 FROM payments WHERE out_trade_no = 'o2' FOR UPDATE;");
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = 'pipeline' AND wait_event_type = 'Lock'";
    let wait_for = |sql: &str, want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count(sql) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{sql} never gave {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = 'pipeline' AND state = 'idle in transaction'",
        "1",
    );
    let cancelled = tokio::spawn({
        let s = s.clone();
        async move {
            let mut e = effect("n2", "TRADE_SUCCESS");
            e.out_trade_no = "o2";
            s.apply_notification(&e, &raw(), &record()).await
        }
    });
    wait_for(waiting, "1");
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    holder.send("ROLLBACK;");

    // The same notification again, on the pool's one connection: its claim is new, it commits,
    // and no session is left inside a transaction.
    let mut e = effect("n2", "TRADE_SUCCESS");
    e.out_trade_no = "o2";
    assert!(matches!(
        s.apply_notification(&e, &raw(), &record()).await.unwrap(),
        Applied::Changed { .. }
    ));
    assert_eq!(
        count("SELECT status FROM payments WHERE out_trade_no = 'o2'"),
        TRADE_SUCCESS
    );
    drop(holder);
    wait_for(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = 'pipeline' AND (state LIKE 'idle in transaction%' OR wait_event_type = 'Lock')",
        "0",
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM applied_notifications WHERE notify_id = 'n2'"),
        "1"
    );
}

/// A refund report and the message that carried it commit together (as in the SQLite store's
/// `a_refund_report_commits_with_its_message_or_not_at_all`): the message's record refused, the
/// refund is not applied and its notify id stays free; the resend applies it once, stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_report_commits_with_its_message_or_not_at_all() {
    use payhost::store::ledger::{Ledger, PaidFacts, RefundApplied, ReportEffect, ReportRecord};
    let pg = PgCluster::start("report-whole");
    let s = open(&pg.create_database("whole")).await;
    let sql = |q: &str| pg.psql("whole", q);
    s.insert_payment(&Payment {
        total_fen: 1000,
        ..payment("m1", "o1")
    })
    .await
    .unwrap();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
        .await
        .unwrap();
    let carried = || ReportEffect {
        merchant_id: "m1",
        out_trade_no: "o1",
        report: payhost::domain::refunds::Report {
            request_no: "r1".into(),
            amount: Some(300),
            refunded_total: None,
            succeeded: true,
            detail: String::new(),
        },
        notify_id: "rn1",
        paid: PaidFacts {
            trade_no: "2014",
            ..Default::default()
        },
        completed_at: None,
        webhook_url: Some("https://shop/hook"),
        record: Some(ReportRecord {
            raw: raw(),
            record: NotificationRecord {
                notify_id: Some("rn1".into()),
                ..record()
            },
            finished: false,
            source: None,
        }),
    };
    sql("CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no room'; END $$; \
         CREATE TRIGGER no_results BEFORE INSERT ON notification_results FOR EACH ROW EXECUTE FUNCTION no_room()");
    assert!(s.apply_refund_report(&carried()).await.is_err());
    assert_eq!(sql("SELECT COUNT(*) FROM refunds"), "0");
    assert_eq!(sql("SELECT COUNT(*) FROM raw_notifications"), "1");
    assert_eq!(sql("SELECT COUNT(*) FROM applied_notifications"), "1");
    assert_eq!(
        s.payment("m1", "o1").await.unwrap().unwrap().status,
        TRADE_SUCCESS
    );

    sql("DROP TRIGGER no_results ON notification_results");
    assert!(matches!(
        s.apply_refund_report(&carried()).await.unwrap(),
        RefundApplied::Recorded { .. }
    ));
    assert_eq!(s.refunds_for("m1", "o1").await.unwrap().len(), 1);
    assert_eq!(
        sql("SELECT outcome FROM notification_results WHERE notify_id = 'rn1'"),
        "applied"
    );
    assert_eq!(
        s.apply_refund_report(&carried()).await.unwrap(),
        RefundApplied::Known
    );
    assert_eq!(
        sql("SELECT string_agg(outcome, ',' ORDER BY raw_id) FROM notification_results WHERE notify_id = 'rn1'"),
        "applied,duplicate"
    );
    assert_eq!(s.refunds_for("m1", "o1").await.unwrap().len(), 1);
}

/// Two replicas poll the outbox at once: every event is leased to exactly one of them; an event
/// leased by a replica that dies (never reports) is taken by the other once the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_outbox_is_leased_to_one_replica_and_expires_when_it_dies() {
    let pg = PgCluster::start("lease");
    let url = pg.create_database("lease");
    let (a, b) = (Arc::new(open(&url).await), Arc::new(open(&url).await));
    for i in 0..200 {
        let no = format!("o{i}");
        a.insert_payment(&payment("m1", &no)).await.unwrap();
        let nid = format!("n{i}");
        let mut e = effect(&nid, "TRADE_SUCCESS");
        e.out_trade_no = &no;
        a.apply_notification(&e, &raw(), &record()).await.unwrap();
    }
    let delivered = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|s| {
            let delivered = delivered.clone();
            tokio::spawn(async move {
                loop {
                    let jobs = s.due_webhooks(now_ms(), 16).await.unwrap();
                    if jobs.is_empty() {
                        if s.pending_webhooks().await.unwrap() == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    for j in jobs {
                        delivered.lock().unwrap().push(j.event_id.clone());
                        s.webhook_delivered(j.id).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let mut d = delivered.lock().unwrap().clone();
    assert_eq!(d.len(), 200, "each event delivered once");
    d.sort();
    d.dedup();
    assert_eq!(d.len(), 200, "no event delivered twice");

    // A replica leases an event and dies: the other cannot take it until the lease (2 s) expires.
    a.insert_payment(&payment("m1", "late")).await.unwrap();
    let mut e = effect("n-late", "TRADE_SUCCESS");
    e.out_trade_no = "late";
    a.apply_notification(&e, &raw(), &record()).await.unwrap();
    let leased = a.due_webhooks(now_ms(), 16).await.unwrap();
    assert_eq!(leased.len(), 1);
    drop(a); // "dies" holding the lease
    assert!(
        b.due_webhooks(now_ms(), 16).await.unwrap().is_empty(),
        "leased"
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let taken = b.due_webhooks(now_ms(), 16).await.unwrap();
    assert_eq!(
        taken.len(),
        1,
        "the lease expired: another replica delivers"
    );
    assert_eq!(taken[0].event_id, leased[0].event_id);
    // The replica that died was only slow: its report of a failed send, under the lease it
    // held, leaves alone the lease the other replica took since (not due again, not delayed).
    b.webhook_failed(leased[0].taken(), now_ms(), "HTTP 500")
        .await
        .unwrap();
    b.webhook_dead(leased[0].taken(), "HTTP 500").await.unwrap();
    b.release_webhooks(&[leased[0].taken()]).await.unwrap();
    assert!(
        b.due_webhooks(now_ms(), 16).await.unwrap().is_empty(),
        "still leased to the replica sending it"
    );
    assert!(b.dead_webhooks(None, 10).await.unwrap().is_empty());
    // A replica that stops gives back what it leased and did not send: taken at once.
    b.release_webhooks(&[taken[0].taken()]).await.unwrap();
    let again = b.due_webhooks(now_ms(), 16).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "given back: due again before its lease ends"
    );
    b.webhook_delivered(taken[0].id).await.unwrap();
    assert_eq!(b.pending_webhooks().await.unwrap(), 0);
    // A replica, slow, reports its own send as failed or given up after another one delivered
    // it: the delivery stands, and it is never listed among the given-up webhooks.
    b.webhook_failed(again[0].taken(), now_ms(), "HTTP 500")
        .await
        .unwrap();
    b.webhook_dead(again[0].taken(), "HTTP 500").await.unwrap();
    assert_eq!(b.pending_webhooks().await.unwrap(), 0);
    assert!(b.dead_webhooks(None, 10).await.unwrap().is_empty());
}

/// The store runs on its caller's runtime: a multi-threaded one and a current-thread one alike,
/// and dropping the store inside a runtime does not panic.
#[test]
fn callable_from_any_runtime() {
    let pg = PgCluster::start("runtimes");
    let url = pg.create_database("runtimes");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let u = url.clone();
    multi.block_on(async move {
        let s = Arc::new(open(&u).await);
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.insert_payment(&payment("m1", &format!("a{i}")))
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.recent_payments(None, 100).await.unwrap().len(), 16);
        drop(s);
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(async move {
        let s = open(&url).await;
        s.insert_payment(&payment("m1", "c1")).await.unwrap();
        assert_eq!(s.recent_payments(None, 100).await.unwrap().len(), 17);
        drop(s);
    });
}

/// A database that is down: open fails with a clear error (password never shown), and a store
/// whose server goes away answers errors (not panics), then `ready()` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_an_error() {
    let port = conformance::host::free_port();
    let err = PostgresStore::open(
        &format!("postgres://payhost:secret@127.0.0.1:{port}/x"),
        &PgOptions::default(),
    )
    .await
    .err()
    .expect("nothing listens there");
    let text = format!("{err:#}");
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("***"), "{text}");

    let mut pg = PgCluster::start("down");
    let s = open(&pg.create_database("down")).await;
    s.ready().await.unwrap();
    pg.stop();
    assert!(s.ready().await.is_err());
    assert!(s.payment("m1", "o1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_goes_with_its_payments_only_when_asked() {
    let pg = PgCluster::start("delete-merchant");
    let s = open_bare(&pg.create_database("delete_merchant")).await;
    let m = merchant_settings();
    assert_eq!(
        s.delete_merchant("m1", false).await.unwrap(),
        MerchantRemoval::Unknown
    );
    s.save_merchant("m1", &m, Expected::Anything).await.unwrap();
    s.save_merchant("m2", &m, Expected::Anything).await.unwrap();
    s.insert_payment(&payment("m1", "o1")).await.unwrap();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
        .await
        .unwrap();
    s.create_token("m1", "hash-m1", "", "api:operator")
        .await
        .unwrap();
    s.create_token("m2", "hash-m2", "", "api:operator")
        .await
        .unwrap();
    // An owner of both shops: removing one takes that grant only.
    s.add_admin_user(
        &payhost::store::admin::AdminUser {
            name: "owner".into(),
            password_hash: "x".into(),
            role: payhost::store::admin::Role::Owner,
            merchants: vec!["m1".into(), "m2".into()],
            created_at: "2026-12-05T00:00:00Z".into(),
            created_by: "test".into(),
        },
        &[],
    )
    .await
    .unwrap();
    // Paid: the money record keeps the merchant.
    assert_eq!(
        s.delete_merchant("m1", false).await.unwrap(),
        MerchantRemoval::HasPayments {
            payments: 1,
            paid: 1
        }
    );
    assert!(s.merchant("m1").await.unwrap().is_some());
    assert!(s.payment("m1", "o1").await.unwrap().is_some());
    // Asked: everything under it goes, in one transaction; the other merchant keeps its own.
    assert_eq!(
        s.delete_merchant("m1", true).await.unwrap(),
        MerchantRemoval::Removed {
            payments: 1,
            owner_grants: 1
        }
    );
    assert!(s.merchant("m1").await.unwrap().is_none());
    assert!(s.payment("m1", "o1").await.unwrap().is_none());
    // An owner given m1 after its check but as it was removed: refused by the insert itself, so
    // no grant outlives the merchant (and reaches a later one of that id); taken when m1 is one
    // of payhost.toml's merchants not stored yet.
    let late = payhost::store::admin::AdminUser {
        name: "late".into(),
        password_hash: "x".into(),
        role: payhost::store::admin::Role::Owner,
        merchants: vec!["m1".into(), "m2".into()],
        created_at: "2026-12-05T00:00:00Z".into(),
        created_by: "test".into(),
    };
    let refused = s.add_admin_user(&late, &[]).await.unwrap_err();
    assert_eq!(
        refused.downcast_ref::<payhost::store::admin::NoSuchMerchant>(),
        Some(&payhost::store::admin::NoSuchMerchant("m1".into()))
    );
    assert!(s.admin_user("late").await.unwrap().is_none());
    s.add_admin_user(&late, &["m1".into()]).await.unwrap();
    assert_eq!(
        s.admin_user("late").await.unwrap().unwrap().merchants,
        ["m1", "m2"]
    );
    assert!(s.remove_admin_user("late").await.unwrap().is_some());
    // A payment started before the removal and inserted after it is not kept: nothing could
    // reach it (a notification of a merchant that is gone is refused).
    assert!(matches!(
        s.insert_payment(&payment("m1", "o2")).await.unwrap(),
        Inserted::UnknownMerchant
    ));
    assert!(s.payment("m1", "o2").await.unwrap().is_none());
    assert!(s
        .recent_notifications(Some("m1"), None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.raw_notification_count().await.unwrap(), 0);
    assert_eq!(s.pending_webhooks().await.unwrap(), 0);
    assert_eq!(s.token_merchant("hash-m1").await.unwrap(), None);
    assert_eq!(
        s.token_merchant("hash-m2").await.unwrap().as_deref(),
        Some("m2")
    );
    let owner = s.admin_user("owner").await.unwrap().unwrap();
    assert_eq!(
        owner.merchants,
        ["m2"],
        "an id made again later is another shop"
    );
    assert_eq!(
        s.delete_merchant("m2", false).await.unwrap(),
        MerchantRemoval::Removed {
            payments: 0,
            owner_grants: 1
        }
    );
}

/// The refund rules of `store::refund_rules`, one case run on each backend: the refund_key
/// returns the refund it started, the refunded total never goes past the paid amount (pending
/// refunds count, failed ones give their amount back), a result or report applies once, a
/// report started outside is recorded, one that does not fit is held for review and not
/// applied, PARTIALLY_REFUNDED then REFUNDED with one webhook each, and close only when unpaid.
async fn refund_rules(s: &dyn Store) {
    use payhost::domain::refunds::{self, Refusal, Report};
    use payhost::store::ledger::*;

    let hook = Some("https://shop/hook");
    let mut paid = payment("m1", "o1");
    paid.total_fen = 1000;
    s.insert_payment(&paid).await.unwrap();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
        .await
        .unwrap();
    s.insert_payment(&payment("m1", "unpaid")).await.unwrap();
    let new = |no: &str, key: Option<&str>, fen: u64, request_no: &str| NewRefund {
        merchant_id: "m1".into(),
        out_trade_no: no.into(),
        request_no: request_no.into(),
        refund_key: key.map(str::to_owned),
        amount_fen: fen,
        reason: "尺码不合".into(),
        started_by: "api:operator".into(),
    };
    let report = |no: &str, amount: Option<u64>, total: Option<u64>, ok: bool| Report {
        request_no: no.into(),
        amount,
        refunded_total: total,
        succeeded: ok,
        detail: String::new(),
    };
    let effect_of = |notify_id: &'static str, no: &'static str, r: Report| ReportEffect {
        merchant_id: "m1",
        out_trade_no: no,
        report: r,
        notify_id,
        paid: payhost::store::ledger::PaidFacts {
            trade_no: "2014",
            ..Default::default()
        },
        completed_at: Some("2014-01-02T03:04:05Z"),
        webhook_url: hook,
        record: None,
    };
    let settle = |id: i64, status: &'static str| RefundResult {
        merchant_id: "m1",
        refund_id: id,
        status,
        detail: None,
        completed_at: None,
        webhook_url: hook,
    };
    let refunded = async |no: &str| {
        let p = s.ledger_payment("m1", no).await.unwrap().unwrap();
        (p.payment.status, p.refunded_fen)
    };

    // Started PENDING; the same key again is the same refund, never a second one.
    let RefundBegun::New(first) = s
        .begin_refund(&new("o1", Some("k1"), 300, "r1"))
        .await
        .unwrap()
    else {
        panic!("a new refund")
    };
    assert_eq!(
        (
            first.status.as_str(),
            first.amount_fen,
            first.request_no.as_str()
        ),
        (refunds::PENDING, 300, "r1")
    );
    let RefundBegun::Existing(again) = s
        .begin_refund(&new("o1", Some("k1"), 300, "r1b"))
        .await
        .unwrap()
    else {
        panic!("the same refund")
    };
    assert_eq!(again.id, first.id);
    // Its first send is claimed once; a send again once per quiet time (by the store's clock:
    // PostgreSQL's for replicas), never within the quiet time of its start or last send, never
    // once it ended.
    assert!(!s.claim_refund_send("m1", first.id, 3600).await.unwrap());
    assert!(s.claim_first_refund_send("m1", first.id).await.unwrap());
    assert!(!s.claim_first_refund_send("m1", first.id).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(!s.claim_refund_send("m1", first.id, 3600).await.unwrap());
    assert!(s.claim_refund_send("m1", first.id, 0).await.unwrap());
    assert!(!s.claim_refund_send("m1", first.id, 3600).await.unwrap());
    // A refund that a recovery sweep found unsent and claimed (its start stalled past the quiet
    // time, or started on a replica whose clock runs behind) is never sent by its start too.
    // (Another merchant's order: this merchant's totals are checked below.)
    let mut other = payment("m2", "o-stalled");
    other.total_fen = 500;
    s.insert_payment(&other).await.unwrap();
    s.apply_notification(
        &NotificationEffect {
            merchant_id: "m2",
            out_trade_no: "o-stalled",
            webhook_url: None,
            ..effect("n-stalled", "TRADE_SUCCESS")
        },
        &raw(),
        &record(),
    )
    .await
    .unwrap();
    let RefundBegun::New(stalled) = s
        .begin_refund(&NewRefund {
            merchant_id: "m2".into(),
            ..new("o-stalled", None, 100, "r-stalled")
        })
        .await
        .unwrap()
    else {
        panic!("a new refund")
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(s.claim_refund_send("m2", stalled.id, 0).await.unwrap());
    assert!(!s.claim_first_refund_send("m2", stalled.id).await.unwrap());
    // Pending counts: 3.00 pending + 7.01 > 10.00.
    assert!(matches!(
        s.begin_refund(&new("o1", None, 701, "r2")).await.unwrap(),
        RefundBegun::Refused(Refusal::Exceeds {
            paid: 1000,
            committed: 300,
            asked: 701
        })
    ));
    assert!(matches!(
        s.begin_refund(&new("unpaid", None, 1, "r3")).await.unwrap(),
        RefundBegun::Refused(Refusal::NotPaid { .. })
    ));
    assert!(matches!(
        s.begin_refund(&new("nope", None, 1, "r4")).await.unwrap(),
        RefundBegun::UnknownPayment
    ));

    // Its success moves the payment, once.
    assert_eq!(
        s.settle_refund(&settle(first.id, refunds::SUCCESS))
            .await
            .unwrap(),
        RefundApplied::Settled {
            refund_id: first.id,
            status: refunds::SUCCESS.into(),
            payment_status: PARTIALLY_REFUNDED.into()
        }
    );
    assert_eq!(
        s.settle_refund(&settle(first.id, refunds::SUCCESS))
            .await
            .unwrap(),
        RefundApplied::Known
    );
    assert_eq!(refunded("o1").await, (PARTIALLY_REFUNDED.to_owned(), 300));
    // Settled: never sent again, however long after.
    assert!(!s.claim_refund_send("m1", first.id, 0).await.unwrap());
    assert!(!s.claim_first_refund_send("m1", first.id).await.unwrap());
    // The provider's report of it matches it: nothing new; a replay of a notify id neither.
    assert_eq!(
        s.apply_refund_report(&effect_of("rn1", "o1", report("r1", None, Some(300), true)))
            .await
            .unwrap(),
        RefundApplied::Known
    );

    // A report beyond the paid amount is held for review, not applied.
    assert!(matches!(
        s.apply_refund_report(&effect_of("rn2", "o1", report("", Some(701), None, true)))
            .await
            .unwrap(),
        RefundApplied::Mismatch(_)
    ));
    assert_eq!(refunded("o1").await, (PARTIALLY_REFUNDED.to_owned(), 300));
    let first = s.payment("m1", "o1").await.unwrap().unwrap().review;
    assert!(first.is_some());
    // A second one joins the first reason rather than replacing it.
    assert!(matches!(
        s.apply_refund_report(&effect_of("rn2b", "o1", report("", Some(702), None, true)))
            .await
            .unwrap(),
        RefundApplied::Mismatch(_)
    ));
    let both = s
        .payment("m1", "o1")
        .await
        .unwrap()
        .unwrap()
        .review
        .unwrap();
    let reasons: Vec<&str> = both.lines().collect();
    assert_eq!(reasons.len(), 2, "{both}");
    assert_eq!(Some(reasons[0]), first.as_deref(), "{both}");
    assert!(reasons[1].contains("7.02"), "{both}");

    // A refund started outside is recorded (started_by gateway), once per notify id.
    let outside = effect_of("rn3", "o1", report("elsewhere-1", Some(200), None, true));
    let RefundApplied::Recorded { payment_status, .. } =
        s.apply_refund_report(&outside).await.unwrap()
    else {
        panic!("recorded")
    };
    assert_eq!(payment_status, PARTIALLY_REFUNDED);
    assert_eq!(
        s.apply_refund_report(&outside).await.unwrap(),
        RefundApplied::Known
    );
    assert_eq!(refunded("o1").await, (PARTIALLY_REFUNDED.to_owned(), 500));

    // Another trade's refund report (the order paid twice) is held under the payment's lock,
    // whatever was read before the transaction: nothing recorded, the payment flagged.
    let mut foreign = effect_of("rn-other", "o1", report("other-1", Some(100), None, true));
    foreign.paid.trade_no = "2015";
    let held = s.apply_refund_report(&foreign).await.unwrap();
    assert!(
        matches!(&held, RefundApplied::Mismatch(r) if r.contains("2015") && r.contains("2014")),
        "{held:?}"
    );
    assert_eq!(refunded("o1").await, (PARTIALLY_REFUNDED.to_owned(), 500));
    assert_eq!(
        s.payment("m1", "o1")
            .await
            .unwrap()
            .unwrap()
            .trade_no
            .as_deref(),
        Some("2014")
    );

    // A failed refund gives its amount back; the rest refunded makes it REFUNDED.
    let RefundBegun::New(failing) = s
        .begin_refund(&new("o1", Some("k2"), 500, "r5"))
        .await
        .unwrap()
    else {
        panic!("a new refund")
    };
    assert!(matches!(
        s.begin_refund(&new("o1", None, 1, "r6")).await.unwrap(),
        RefundBegun::Refused(Refusal::Exceeds { .. })
    ));
    assert!(matches!(
        s.settle_refund(&settle(failing.id, refunds::FAILED)).await.unwrap(),
        RefundApplied::Settled { ref status, ref payment_status, .. }
            if status == refunds::FAILED && payment_status == PARTIALLY_REFUNDED
    ));
    let RefundBegun::New(rest) = s
        .begin_refund(&new("o1", Some("k3"), 500, "r7"))
        .await
        .unwrap()
    else {
        panic!("a new refund")
    };
    assert!(matches!(
        s.apply_refund_report(&effect_of("rn4", "o1", report("r7", Some(500), None, true)))
            .await
            .unwrap(),
        RefundApplied::Settled { ref payment_status, .. } if payment_status == REFUNDED
    ));
    assert_eq!(refunded("o1").await, (REFUNDED.to_owned(), 1000));
    let stored = s.refund("m1", rest.id).await.unwrap().unwrap();
    assert_eq!(stored.status, refunds::SUCCESS);
    assert_eq!(stored.completed_at.as_deref(), Some("2014-01-02T03:04:05Z"));
    let all = s.refunds_for("m1", "o1").await.unwrap();
    let summary: Vec<(&str, u64, &str)> = all
        .iter()
        .map(|r| (r.status.as_str(), r.amount_fen, r.started_by.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (refunds::SUCCESS, 300, "api:operator"),
            (refunds::SUCCESS, 200, refunds::STARTED_BY_GATEWAY),
            (refunds::FAILED, 500, "api:operator"),
            (refunds::SUCCESS, 500, "api:operator"),
        ]
    );

    // A legacy full refund (no number, the whole amount) on another payment is recorded.
    let mut other = payment("m1", "o2");
    other.total_fen = 1;
    s.insert_payment(&other).await.unwrap();
    let mut paid_other = effect("n2", "TRADE_SUCCESS");
    paid_other.out_trade_no = "o2";
    s.apply_notification(&paid_other, &raw(), &record())
        .await
        .unwrap();
    assert!(matches!(
        s.apply_refund_report(&effect_of("rn5", "o2", report("", None, Some(1), true)))
            .await
            .unwrap(),
        RefundApplied::Recorded { ref payment_status, .. } if payment_status == REFUNDED
    ));
    assert_eq!(refunded("o2").await, (REFUNDED.to_owned(), 1));

    // The day's totals (Beijing day, paid statuses only) and the refunds completed in a range.
    let now = payhost::domain::clock::now_unix();
    let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(now));
    let days = s
        .daily_totals(Some("m1"), "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(
        days,
        [DayTotal {
            date: today,
            paid_count: 2,
            paid_fen: 1001,
            refunded_fen: 1001
        }]
    );
    let early = s
        .refunds_completed("m1", "2014-01-01T00:00:00Z", "2014-01-03T00:00:00Z")
        .await
        .unwrap();
    // The reports' completion time (2014-01-02), not the ones settled here (completed now) nor
    // the failed one.
    let o2_refund = s.refunds_for("m1", "o2").await.unwrap()[0].id;
    assert_eq!(
        early.iter().map(|r| r.id).collect::<Vec<_>>(),
        [all[1].id, rest.id, o2_refund]
    );

    // Close: an unpaid payment only, once.
    assert!(s.close_payment("m1", "unpaid", hook).await.unwrap());
    assert!(!s.close_payment("m1", "unpaid", hook).await.unwrap());
    assert!(!s.close_payment("m1", "o1", hook).await.unwrap());
    assert_eq!(
        s.payment("m1", "unpaid").await.unwrap().unwrap().status,
        TRADE_CLOSED
    );

    // One webhook per event: o1 paid, partly refunded twice (r1, the outside one), refunded;
    // o2 paid, refunded; the closed one.
    let mut events: Vec<(String, String)> = s
        .due_webhooks(now_ms() + 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
            // Every event, a close's too, carries the millisecond that orders it.
            assert!(v["created_at_ms"].as_i64().is_some_and(|ms| ms > 0), "{v}");
            (
                v["out_trade_no"].as_str().unwrap().to_owned(),
                v["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort();
    let want: Vec<(String, String)> = [
        ("o1", "payment.paid"),
        ("o1", "payment.partially_refunded"),
        ("o1", "payment.partially_refunded"),
        ("o1", "payment.refunded"),
        ("o2", "payment.paid"),
        ("o2", "payment.refunded"),
        ("unpaid", "payment.closed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(events, want);

    // Closed here, then a refund report arrives first (the trade was paid at the provider and
    // refunded in part): paid and partly refunded, and held for review as a paid notification
    // of it is (it was not).
    let mut late = payment("m1", "closed-then-paid");
    late.total_fen = 1000;
    s.insert_payment(&late).await.unwrap();
    assert!(s
        .close_payment("m1", "closed-then-paid", hook)
        .await
        .unwrap());
    s.apply_refund_report(&effect_of(
        "n-closed-then-paid",
        "closed-then-paid",
        report("", None, Some(300), true),
    ))
    .await
    .unwrap();
    let p = s.payment("m1", "closed-then-paid").await.unwrap().unwrap();
    assert_eq!(p.status, "PARTIALLY_REFUNDED", "{p:?}");
    assert!(
        p.review
            .as_deref()
            .is_some_and(|r| r.contains("paid after it was closed here") && r.contains("3.00")),
        "{p:?}"
    );

    // The admin list's 合计: every page of a filter (its limit and cursor ignored), the same as
    // its rows summed.
    let m1 = PaymentFilter {
        merchant: Some("m1".into()),
        limit: 1,
        ..PaymentFilter::default()
    };
    let filters = [
        m1.clone(),
        PaymentFilter {
            status: Some("REFUNDED".into()),
            ..m1.clone()
        },
        PaymentFilter {
            q: Some("unpaid".into()),
            ..m1.clone()
        },
        PaymentFilter {
            limit: 1,
            ..PaymentFilter::default()
        },
    ];
    for f in filters {
        let rows = s
            .list_payments(&PaymentFilter {
                limit: 10_000,
                ..f.clone()
            })
            .await
            .unwrap();
        let t = s.filter_totals(&f).await.unwrap();
        let paid: Vec<_> = rows
            .iter()
            .filter(|r| payhost::domain::state::is_paid(&r.payment.status))
            .collect();
        assert_eq!(t.count, rows.len() as u64, "{f:?}");
        assert_eq!(
            t.total_fen,
            rows.iter().map(|r| r.payment.total_fen).sum::<u64>()
        );
        assert_eq!(t.paid_count, paid.len() as u64, "{f:?}");
        assert_eq!(
            t.paid_fen,
            paid.iter().map(|r| r.payment.total_fen).sum::<u64>()
        );
        assert_eq!(
            t.refunded_fen,
            rows.iter().map(|r| r.refunded_fen).sum::<u64>()
        );
    }
    let all = s.filter_totals(&m1).await.unwrap();
    assert!(
        all.count >= 3 && all.paid_count >= 2 && all.refunded_fen > 0,
        "{all:?}"
    );

    // A refund learned from the trade's refunded total has no number of its own; the provider's
    // later report of it names one (a legacy batch notification): the same refund, named then,
    // never counted twice.
    let mut o3 = payment("m1", "o3");
    o3.total_fen = 1000;
    s.insert_payment(&o3).await.unwrap();
    let mut paid_o3 = effect("n3", "TRADE_SUCCESS");
    paid_o3.out_trade_no = "o3";
    s.apply_notification(&paid_o3, &raw(), &record())
        .await
        .unwrap();
    assert!(matches!(
        s.apply_refund_report(&effect_of("rt1", "o3", report("", None, Some(300), true)))
            .await
            .unwrap(),
        RefundApplied::Recorded { .. }
    ));
    assert_eq!(refunded("o3").await, (PARTIALLY_REFUNDED.to_owned(), 300));
    for notify_id in ["rt2", "rt3"] {
        assert_eq!(
            s.apply_refund_report(&effect_of(
                notify_id,
                "o3",
                report("2026120500000001", Some(300), None, true)
            ))
            .await
            .unwrap(),
            RefundApplied::Known
        );
    }
    assert_eq!(refunded("o3").await, (PARTIALLY_REFUNDED.to_owned(), 300));
    let o3_refunds: Vec<(String, u64)> = s
        .refunds_for("m1", "o3")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.request_no, r.amount_fen))
        .collect();
    assert_eq!(o3_refunds, [("2026120500000001".to_owned(), 300)]);

    // A trade's total that cannot be told apart from a refund still pending here is held for
    // review, and not taken as handled: once that refund has failed, the same answer (the same
    // query id, as a Sync sends it) records the refund made outside.
    let mut o4 = payment("m1", "o4");
    o4.total_fen = 1000;
    s.insert_payment(&o4).await.unwrap();
    let mut paid_o4 = effect("n4", "TRADE_SUCCESS");
    paid_o4.out_trade_no = "o4";
    s.apply_notification(&paid_o4, &raw(), &record())
        .await
        .unwrap();
    let RefundBegun::New(pending) = s
        .begin_refund(&new("o4", Some("k-o4"), 600, "r-o4"))
        .await
        .unwrap()
    else {
        panic!("a new refund")
    };
    let query = || {
        effect_of(
            "query:o4:TRADE_SUCCESS:500",
            "o4",
            report("", None, Some(500), true),
        )
    };
    for _ in 0..2 {
        assert!(matches!(
            s.apply_refund_report(&query()).await.unwrap(),
            RefundApplied::Mismatch(_)
        ));
    }
    let review = s
        .payment("m1", "o4")
        .await
        .unwrap()
        .unwrap()
        .review
        .unwrap();
    assert_eq!(review.lines().count(), 1, "{review}");
    s.settle_refund(&settle(pending.id, refunds::FAILED))
        .await
        .unwrap();
    assert!(matches!(
        s.apply_refund_report(&query()).await.unwrap(),
        RefundApplied::Recorded { .. }
    ));
    assert_eq!(refunded("o4").await, (PARTIALLY_REFUNDED.to_owned(), 500));
    assert_eq!(
        s.apply_refund_report(&query()).await.unwrap(),
        RefundApplied::Known
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_rules_on_sqlite() {
    let dir = conformance::host::temp_dir("refund-rules-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    refund_rules(&s).await;
    timeline_once(&s).await;
    refund_numbers_per_trade(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_rules_on_postgres() {
    let pg = PgCluster::start("refund-rules");
    let s = open(&pg.create_database("refunds")).await;
    refund_rules(&s).await;
    timeline_once(&s).await;
    refund_numbers_per_trade(&s).await;
}

/// Another system's refunds of two trades numbered alike (`out_request_no` "R1" on each, as the
/// provider allows: the number is unique per trade): each report is recorded on its own trade;
/// before, the second failed on a unique key for ever and its money went unrecorded.
async fn refund_numbers_per_trade(s: &dyn Store) {
    use payhost::domain::refunds::Report;
    use payhost::store::ledger::*;
    for no in ["rt1", "rt2"] {
        let mut p = payment("m1", no);
        p.total_fen = 500;
        s.insert_payment(&p).await.unwrap();
        let mut paid = effect("", "TRADE_SUCCESS");
        let nid = format!("n-{no}");
        paid.notify_id = &nid;
        paid.out_trade_no = no;
        s.apply_notification(&paid, &raw(), &record())
            .await
            .unwrap();
    }
    for no in ["rt1", "rt2"] {
        let nid = format!("refund-{no}");
        let applied = s
            .apply_refund_report(&ReportEffect {
                merchant_id: "m1",
                out_trade_no: no,
                report: Report {
                    request_no: "R1".into(),
                    amount: Some(200),
                    refunded_total: Some(200),
                    succeeded: true,
                    detail: String::new(),
                },
                notify_id: &nid,
                paid: PaidFacts::default(),
                completed_at: None,
                webhook_url: None,
                record: None,
            })
            .await
            .unwrap();
        assert!(
            matches!(applied, RefundApplied::Recorded { .. }),
            "{no}: {applied:?}"
        );
        let p = s.ledger_payment("m1", no).await.unwrap().unwrap();
        assert_eq!(p.refunded_fen, 200, "{no}");
    }
}

/// A timeline entry kept `once` is one row per kind and detail however often it is recorded (a
/// buyer's return link replayed); one without `once` is a row each time.
async fn timeline_once(s: &dyn Store) {
    for _ in 0..3 {
        s.record_event("m1", "ev1", "return", Some("success"), true)
            .await
            .unwrap();
        s.record_event("m1", "ev1", "return", None, true)
            .await
            .unwrap();
        s.record_event("m1", "ev1", "sync", Some("x"), false)
            .await
            .unwrap();
    }
    s.record_event("m1", "ev1", "return", Some("fail"), true)
        .await
        .unwrap();
    let kinds: Vec<(String, Option<String>)> = s
        .events_for("m1", "ev1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect();
    let count = |k: &str, d: Option<&str>| {
        kinds
            .iter()
            .filter(|(kind, detail)| kind == k && detail.as_deref() == d)
            .count()
    };
    assert_eq!(count("return", Some("success")), 1, "{kinds:?}");
    assert_eq!(count("return", None), 1, "{kinds:?}");
    assert_eq!(count("return", Some("fail")), 1, "{kinds:?}");
    assert_eq!(count("sync", Some("x")), 3, "{kinds:?}");
}

/// Money for an order closed here makes it paid and flags it for review in the same commit: no
/// crash between the two can leave a paid order that nobody is asked to look at.
async fn paid_after_close(s: &dyn Store) {
    s.insert_payment(&payment("m1", "o1")).await.unwrap();
    assert_eq!(
        s.apply_notification(&effect("c1", "TRADE_CLOSED"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed {
            from: WAIT_BUYER_PAY.into(),
            to: TRADE_CLOSED.into()
        }
    );
    assert_eq!(s.payment("m1", "o1").await.unwrap().unwrap().review, None);
    assert_eq!(
        s.apply_notification(&effect("c2", "TRADE_SUCCESS"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed {
            from: TRADE_CLOSED.into(),
            to: TRADE_SUCCESS.into()
        }
    );
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    let review = p.review.expect("flagged with the move");
    assert!(
        review.contains("关闭后又收到付款") && review.contains("2014"),
        "{review}"
    );
    // A later notification keeps the flag: only the owner clears it.
    s.apply_notification(&effect("c3", "TRADE_FINISHED"), &raw(), &record())
        .await
        .unwrap();
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(
        (p.status.as_str(), p.review.as_deref()),
        (TRADE_FINISHED, Some(review.as_str()))
    );
    // Another reason joins it (the first stays), once however often it is given.
    for _ in 0..2 {
        s.flag_for_review("m1", "o1", "total_fee: 2.00 against the order's 1.00")
            .await
            .unwrap();
    }
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    let review = format!("{review}\ntotal_fee: 2.00 against the order's 1.00");
    assert_eq!(p.review.as_deref(), Some(review.as_str()));
    // The owner finds it by the review filter, and clears the reason they read (only that one).
    let held = async || -> Vec<String> {
        let f = payhost::store::ledger::PaymentFilter {
            review: true,
            limit: 10,
            ..Default::default()
        };
        s.list_payments(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.payment.out_trade_no)
            .collect()
    };
    assert_eq!(held().await, ["o1"]);
    let seen = |reason: &str, updated_at: &str| payhost::store::ledger::ReviewSeen {
        reason: reason.into(),
        updated_at: updated_at.into(),
    };
    let at = p.updated_at.clone();
    assert!(!s
        .clear_review("m1", "o1", &seen("not what it says", &at), "owner")
        .await
        .unwrap());
    assert!(!s
        .clear_review("m1", "o1", &seen(&review, "2000-01-01T00:00:00Z"), "owner")
        .await
        .unwrap());
    assert!(s
        .clear_review("m1", "o1", &seen(&review, &at), "owner")
        .await
        .unwrap());
    assert!(held().await.is_empty());
    assert_eq!(s.payment("m1", "o1").await.unwrap().unwrap().review, None);
    assert!(s
        .events_for("m1", "o1")
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "review"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("cleared by owner: "))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_after_close_on_sqlite() {
    let dir = conformance::host::temp_dir("paid-after-close-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    paid_after_close(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_after_close_on_postgres() {
    let pg = PgCluster::start("paid-after-close");
    let s = open(&pg.create_database("closed")).await;
    paid_after_close(&s).await;
}

/// A trade the provider finished takes no refund whatever its status says: partly refunded,
/// then finished, it stays PARTIALLY_REFUNDED and refuses the next refund; finished, then its
/// earlier partial refund reported late, it moves on and still refuses one. The fact is stored
/// once, with no webhook of its own.
async fn finished_trades(s: &dyn Store) {
    use payhost::domain::refunds::Refusal;
    use payhost::store::ledger::{NewRefund, RefundBegun};
    let refund = |no: &str, request_no: &str| NewRefund {
        merchant_id: "m1".into(),
        out_trade_no: no.into(),
        request_no: request_no.into(),
        refund_key: None,
        amount_fen: 1,
        reason: String::new(),
        started_by: "api:operator".into(),
    };
    let partial = |notify_id: &'static str, no: &'static str| {
        let mut e = effect(notify_id, "TRADE_SUCCESS");
        e.out_trade_no = no;
        e.event = TradeEvent::PartiallyRefunded;
        e.refund_status = Some("REFUND_SUCCESS");
        e
    };
    let finished = |notify_id: &'static str, no: &'static str| {
        let mut e = effect(notify_id, "TRADE_FINISHED");
        e.out_trade_no = no;
        e
    };
    let mut paid = payment("m1", "o1");
    paid.total_fen = 1000;
    s.insert_payment(&paid).await.unwrap();
    s.apply_notification(&effect("p1", "TRADE_SUCCESS"), &raw(), &record())
        .await
        .unwrap();
    s.apply_notification(&partial("p2", "o1"), &raw(), &record())
        .await
        .unwrap();
    let webhooks = s.pending_webhooks().await.unwrap();
    assert!(
        matches!(
            s.begin_refund(&refund("o1", "r1")).await.unwrap(),
            RefundBegun::New(_)
        ),
        "partly refunded and not finished: refundable"
    );
    assert_eq!(
        s.apply_notification(&finished("p3", "o1"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Finished {
            status: PARTIALLY_REFUNDED.into()
        }
    );
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(p.status, PARTIALLY_REFUNDED);
    assert!(p.finished_at.is_some() && p.is_finished());
    assert_eq!(
        s.pending_webhooks().await.unwrap(),
        webhooks,
        "the shop's status did not change: no webhook"
    );
    match s.begin_refund(&refund("o1", "r2")).await.unwrap() {
        RefundBegun::Refused(Refusal::Finished) => {}
        other => panic!("a finished trade took a refund: {other:?}"),
    }
    // Once: another TRADE_FINISHED changes nothing.
    assert_eq!(
        s.apply_notification(&finished("p4", "o1"), &raw(), &record())
            .await
            .unwrap(),
        Applied::NoChange
    );
    let again = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(again.finished_at, p.finished_at);

    // Finished first, its earlier partial refund reported after: the status moves on, the trade
    // stays final.
    let mut second = payment("m1", "o2");
    second.total_fen = 1000;
    s.insert_payment(&second).await.unwrap();
    let mut pay = effect("q1", "TRADE_SUCCESS");
    pay.out_trade_no = "o2";
    s.apply_notification(&pay, &raw(), &record()).await.unwrap();
    assert!(matches!(
        s.apply_notification(&finished("q2", "o2"), &raw(), &record())
            .await
            .unwrap(),
        Applied::Changed { .. }
    ));
    s.apply_notification(&partial("q3", "o2"), &raw(), &record())
        .await
        .unwrap();
    let p = s.payment("m1", "o2").await.unwrap().unwrap();
    assert_eq!(p.status, PARTIALLY_REFUNDED);
    assert!(p.finished_at.is_some());
    assert!(matches!(
        s.begin_refund(&refund("o2", "r3")).await.unwrap(),
        RefundBegun::Refused(Refusal::Finished)
    ));

    // The finishing message carries its refund (an amount): the refund is recorded as a report
    // and the finish is kept with it.
    let mut third = payment("m1", "o3");
    third.total_fen = 1000;
    s.insert_payment(&third).await.unwrap();
    let mut pay = effect("t1", "TRADE_SUCCESS");
    pay.out_trade_no = "o3";
    s.apply_notification(&pay, &raw(), &record()).await.unwrap();
    s.apply_refund_report(&payhost::store::ledger::ReportEffect {
        merchant_id: "m1",
        out_trade_no: "o3",
        report: payhost::domain::refunds::Report {
            request_no: "202612070000000001".into(),
            amount: Some(300),
            refunded_total: Some(300),
            succeeded: true,
            detail: String::new(),
        },
        notify_id: "t2",
        paid: payhost::store::ledger::PaidFacts {
            trade_no: "2014",
            finished: true,
            ..Default::default()
        },
        completed_at: Some("2014-01-02T03:04:05Z"),
        webhook_url: Some("https://shop/hook"),
        record: None,
    })
    .await
    .unwrap();
    let p = s.payment("m1", "o3").await.unwrap().unwrap();
    assert_eq!(p.status, PARTIALLY_REFUNDED);
    assert!(p.finished_at.is_some(), "the finish came with the refund");
    assert!(matches!(
        s.begin_refund(&refund("o3", "r4")).await.unwrap(),
        RefundBegun::Refused(Refusal::Finished)
    ));

    // The finish alone (its message's amountless refund decided by the trade query): kept once,
    // on a payment paid by that very trade only, never on a fully refunded or unpaid one.
    let mut fourth = payment("m1", "o4");
    fourth.total_fen = 1000;
    s.insert_payment(&fourth).await.unwrap();
    let mut pay = effect("f1", "TRADE_SUCCESS");
    pay.out_trade_no = "o4";
    s.apply_notification(&pay, &raw(), &record()).await.unwrap();
    s.apply_notification(&partial("f2", "o4"), &raw(), &record())
        .await
        .unwrap();
    assert!(!s.keep_finish("m1", "o4", "another-trade").await.unwrap());
    assert!(s
        .payment("m1", "o4")
        .await
        .unwrap()
        .unwrap()
        .finished_at
        .is_none());
    assert!(s.keep_finish("m1", "o4", "2014").await.unwrap());
    let p = s.payment("m1", "o4").await.unwrap().unwrap();
    assert_eq!(p.status, PARTIALLY_REFUNDED);
    assert!(p.finished_at.is_some());
    assert!(!s.keep_finish("m1", "o4", "2014").await.unwrap(), "once");
    assert!(matches!(
        s.begin_refund(&refund("o4", "r5")).await.unwrap(),
        RefundBegun::Refused(Refusal::Finished)
    ));
    let mut fifth = payment("m1", "o5");
    fifth.total_fen = 1000;
    s.insert_payment(&fifth).await.unwrap();
    let mut pay = effect("g1", "TRADE_SUCCESS");
    pay.out_trade_no = "o5";
    s.apply_notification(&pay, &raw(), &record()).await.unwrap();
    let mut refunded = effect("g2", "TRADE_CLOSED");
    refunded.out_trade_no = "o5";
    refunded.event = TradeEvent::Refunded;
    refunded.refund_status = Some("REFUND_SUCCESS");
    s.apply_notification(&refunded, &raw(), &record())
        .await
        .unwrap();
    assert_eq!(
        s.payment("m1", "o5").await.unwrap().unwrap().status,
        REFUNDED
    );
    assert!(!s.keep_finish("m1", "o5", "2014").await.unwrap());
    assert!(s
        .payment("m1", "o5")
        .await
        .unwrap()
        .unwrap()
        .finished_at
        .is_none());
    assert!(!s.keep_finish("m1", "nothing", "2014").await.unwrap());
    // Not paid here (its match against the order was never made): no finish.
    let mut unpaid = payment("m1", "o6");
    unpaid.total_fen = 1000;
    s.insert_payment(&unpaid).await.unwrap();
    assert!(!s.keep_finish("m1", "o6", "2014").await.unwrap());
    assert!(s
        .payment("m1", "o6")
        .await
        .unwrap()
        .unwrap()
        .finished_at
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_trades_on_sqlite() {
    let dir = conformance::host::temp_dir("finished-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    finished_trades(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_trades_on_postgres() {
    let pg = PgCluster::start("finished");
    let s = open(&pg.create_database("finished")).await;
    finished_trades(&s).await;
}

/// A shop owner's merchants as one filter (the admin's 全部): their payments only, paged by
/// cursor across them, the same rows counted by the totals; an empty set matches nothing.
async fn owners_merchants(s: &dyn Store) {
    use payhost::store::ledger::{Cursor, PaymentFilter};
    for (m, no, fen) in [
        ("m1", "a1", 100),
        ("m1", "a2", 200),
        ("m2", "b1", 400),
        ("m3", "c1", 800),
    ] {
        let mut p = payment(m, no);
        p.total_fen = fen;
        s.insert_payment(&p).await.unwrap();
    }
    let theirs = PaymentFilter {
        merchants: Some(vec!["m1".into(), "m2".into()]),
        limit: 1,
        ..PaymentFilter::default()
    };
    let mut f = theirs.clone();
    let mut seen = Vec::new();
    loop {
        let rows = s.list_payments(&f).await.unwrap();
        let Some(last) = rows.last() else { break };
        seen.push(format!(
            "{}/{}",
            last.payment.merchant_id, last.payment.out_trade_no
        ));
        f.cursor = Some(Cursor::of(&last.payment));
    }
    seen.sort();
    assert_eq!(seen, ["m1/a1", "m1/a2", "m2/b1"]);
    let t = s.filter_totals(&theirs).await.unwrap();
    assert_eq!((t.count, t.total_fen), (3, 700));
    // With the search and one of theirs named, as the list narrows it.
    let one = PaymentFilter {
        merchant: Some("m2".into()),
        q: Some("b".into()),
        limit: 10,
        ..theirs.clone()
    };
    let rows = s.list_payments(&one).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].payment.out_trade_no, "b1");
    let none = PaymentFilter {
        merchants: Some(Vec::new()),
        limit: 10,
        ..PaymentFilter::default()
    };
    assert!(s.list_payments(&none).await.unwrap().is_empty());
    assert_eq!(s.filter_totals(&none).await.unwrap().count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_merchants_on_sqlite() {
    let dir = conformance::host::temp_dir("owners-merchants-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    owners_merchants(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_merchants_on_postgres() {
    let pg = PgCluster::start("owners-merchants");
    let s = open(&pg.create_database("owners")).await;
    owners_merchants(&s).await;
}

/// A shop owner's audit log: their merchants' entries and their own logins since their user was
/// made — not what an earlier user of the same name did, nor their own actions elsewhere.
async fn owners_audit(s: &dyn Store) {
    use payhost::store::admin::{AdminUser, AuditQuery, Role};
    let user = |role: Role, merchants: &[&str]| AdminUser {
        name: "alice".into(),
        password_hash: "x".into(),
        role,
        merchants: merchants.iter().map(|m| m.to_string()).collect(),
        created_at: String::new(),
        created_by: "test".into(),
    };
    s.add_admin_user(&user(Role::Operator, &[]), &[])
        .await
        .unwrap();
    s.record_audit("alice", "login", None, "from 192.0.2.1")
        .await
        .unwrap();
    s.record_audit("alice", "token.create", Some("m2"), "token 1")
        .await
        .unwrap();
    assert!(s.remove_admin_user("alice").await.unwrap().is_some());
    // The stored times have whole seconds: the new user is made a second later.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    s.add_admin_user(&user(Role::Owner, &["m1"]), &[])
        .await
        .unwrap();
    for (actor, action, merchant, detail) in [
        ("alice", "login", None, "from 192.0.2.2"),
        ("bob", "refund.start", Some("m1"), "O1: ¥1.00"),
        ("bob", "login", None, "from 192.0.2.3"),
        ("alice", "login", Some("m2"), "on another merchant"),
        ("alice", "settings.save", Some("m2"), "plugin x"),
    ] {
        s.record_audit(actor, action, merchant, detail)
            .await
            .unwrap();
    }
    let read = |q: AuditQuery| async move {
        s.audit_log(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|a| format!("{} {}", a.actor, a.detail))
            .collect::<Vec<_>>()
    };
    let owner = AuditQuery {
        scope: Some((vec!["m1".into()], "alice".into())),
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(
        read(owner.clone()).await,
        ["bob O1: ¥1.00", "alice from 192.0.2.2"]
    );
    // The filters narrow the owner's view, never widen it.
    let logins = AuditQuery {
        action: Some("login".into()),
        ..owner.clone()
    };
    assert_eq!(read(logins).await, ["alice from 192.0.2.2"]);
    let elsewhere = AuditQuery {
        merchant: Some("m2".into()),
        ..owner.clone()
    };
    assert!(read(elsewhere).await.is_empty());
    // An operator's: every entry, newest first, paged by id.
    let all = AuditQuery {
        limit: 2,
        ..AuditQuery::default()
    };
    let first = s.audit_log(&all).await.unwrap();
    assert_eq!(first.len(), 2);
    let older = AuditQuery {
        before: Some(first[1].id),
        actor: Some("alice".into()),
        limit: 10,
        ..AuditQuery::default()
    };
    assert_eq!(
        read(older).await,
        [
            "alice from 192.0.2.2",
            "alice token 1",
            "alice from 192.0.2.1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_audit_on_sqlite() {
    let dir = conformance::host::temp_dir("owners-audit-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    owners_audit(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_audit_on_postgres() {
    let pg = PgCluster::start("owners-audit");
    let s = open(&pg.create_database("audit")).await;
    with_merchants(&s).await;
    owners_audit(&s).await;
}

/// Removing an admin user revokes the live tokens they made (a token outliving its maker's login
/// keeps their access: it can refund), and no one else's: not the operator's, not the API's, not
/// another user's. A token is made for a user only while that user exists (one made beside the
/// removal would outlive it).
async fn removed_users_tokens(s: &dyn Store) {
    use payhost::store::admin::{AdminUser, Role};
    let user = |name: &str| AdminUser {
        name: name.into(),
        password_hash: "x".into(),
        role: Role::Owner,
        merchants: vec!["m1".into()],
        created_at: String::new(),
        created_by: "test".into(),
    };
    for name in ["alice", "dave"] {
        s.add_admin_user(&user(name), &[]).await.unwrap();
    }
    let made = |merchant: &'static str,
                hash: &'static str,
                label: &'static str,
                by: &'static str| async move {
        s.create_token(merchant, hash, label, by).await.unwrap()
    };
    let alices = made("m1", "hash-alice", "ecshop", "alice").await.unwrap();
    let also = made("m2", "hash-alice-2", "", "alice").await.unwrap();
    let daves = made("m1", "hash-dave", "", "dave").await.unwrap();
    made("m1", "hash-operator", "", "admin_password")
        .await
        .unwrap();
    made("m1", "hash-api", "", "api:operator").await.unwrap();
    made("m1", "hash-cli", "", "payhost token").await.unwrap();
    s.revoke_token(also, None).await.unwrap();
    let revoked = s
        .remove_admin_user("alice")
        .await
        .unwrap()
        .expect("alice existed");
    // Only the live one: a token revoked before keeps its time.
    assert_eq!(revoked.iter().map(|t| t.id).collect::<Vec<_>>(), [alices]);
    assert_eq!(revoked[0].label, "ecshop");
    assert_eq!(revoked[0].created_by.as_deref(), Some("alice"));
    assert!(revoked[0].revoked_at.is_some());
    assert_eq!(s.token_merchant("hash-alice").await.unwrap(), None);
    for live in ["hash-operator", "hash-api", "hash-cli", "hash-dave"] {
        assert_eq!(
            s.token_merchant(live).await.unwrap().as_deref(),
            Some("m1"),
            "{live}"
        );
    }
    // Alice is gone: no token is made in her name any more.
    assert_eq!(made("m1", "hash-alice-late", "", "alice").await, None);
    let dave = s.remove_admin_user("dave").await.unwrap().unwrap();
    assert_eq!(dave.iter().map(|t| t.id).collect::<Vec<_>>(), [daves]);
    assert!(s.remove_admin_user("nobody").await.unwrap().is_none());
    // The lists say who made each.
    let listed = s.tokens(Some("m1")).await.unwrap();
    let by = |id: i64| {
        listed
            .iter()
            .find(|t| t.id == id)
            .unwrap()
            .created_by
            .clone()
    };
    assert_eq!(by(daves).as_deref(), Some("dave"));
    assert_eq!(by(alices).as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_users_tokens_on_sqlite() {
    let dir = conformance::host::temp_dir("removed-users-tokens");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    removed_users_tokens(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_users_tokens_on_postgres() {
    let pg = PgCluster::start("removed-users-tokens");
    let s = open(&pg.create_database("tokens")).await;
    removed_users_tokens(&s).await;
}

/// The outbox's due webhooks for a sender with sends in flight: never one in flight, at most
/// `per_merchant` of a merchant counting its sends in flight, the others' still taken (a shop
/// with a backlog does not take every send), and no more than asked for (on PostgreSQL each one
/// returned is leased).
async fn fair_outbox(s: &dyn Store) {
    for (m, count) in [("m1", 6), ("m2", 2)] {
        for i in 0..count {
            let no = format!("{m}-o{i}");
            s.insert_payment(&payment(m, &no)).await.unwrap();
            let nid = format!("{m}-n{i}");
            let mut e = effect(&nid, "TRADE_SUCCESS");
            e.merchant_id = m;
            e.out_trade_no = &no;
            let mut r = raw();
            r.merchant_id = m;
            let mut rec = record();
            rec.merchant_id = m.into();
            s.apply_notification(&e, &r, &rec).await.unwrap();
        }
    }
    let later = now_ms() + 1;
    let of = |jobs: &[WebhookJob], m: &str| jobs.iter().filter(|j| j.merchant_id == m).count();
    // Nothing in flight: 3 of m1 (its backlog of 6 notwithstanding) and both of m2.
    let first = s
        .due_webhooks_fair(later, 10, 3, &InFlight::default())
        .await
        .unwrap();
    assert_eq!((of(&first, "m1"), of(&first, "m2")), (3, 2), "{first:?}");
    // Those in flight: m1 has 3 of its 3, m2 its 2: nothing more of m1 with a cap of 3, one
    // more of m2 there is not; with a cap of 4, one more of m1, never one already in flight.
    let in_flight = InFlight {
        ids: first.iter().map(|j| j.id).collect(),
        per_merchant: vec![("m1".into(), 3), ("m2".into(), 2)],
    };
    assert!(s
        .due_webhooks_fair(later, 10, 3, &in_flight)
        .await
        .unwrap()
        .is_empty());
    let more = s.due_webhooks_fair(later, 10, 4, &in_flight).await.unwrap();
    assert_eq!((of(&more, "m1"), of(&more, "m2")), (1, 0), "{more:?}");
    assert!(!in_flight.ids.contains(&more[0].id));
    // No more than asked for.
    let in_flight = InFlight {
        ids: first.iter().chain(&more).map(|j| j.id).collect(),
        per_merchant: vec![("m1".into(), 4), ("m2".into(), 2)],
    };
    let one = s.due_webhooks_fair(later, 1, 10, &in_flight).await.unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
}

/// A merchant's settings are saved whole only over the row the change was made from: another
/// request's change since (or a removal) is not undone, and a new merchant is not made twice.
async fn merchant_saves_compare_and_set(s: &dyn Store) {
    let m = merchant_settings();
    let read = s.merchant_stored("m1").await.unwrap().unwrap();
    let mut other = m.clone();
    other.shop_origins = vec!["https://narrowed.example".into()];
    assert!(s
        .save_merchant("m1", &other, Expected::Stored(&read))
        .await
        .unwrap());
    assert!(!s
        .save_merchant("m1", &m, Expected::Stored(&read))
        .await
        .unwrap());
    assert_eq!(
        s.merchant("m1").await.unwrap().unwrap().shop_origins,
        ["https://narrowed.example"]
    );
    assert!(!s.save_merchant("m1", &m, Expected::Absent).await.unwrap());
    assert!(!s
        .save_merchant("gone", &m, Expected::Stored(&read))
        .await
        .unwrap());
    assert!(s.merchant("gone").await.unwrap().is_none());
    assert!(s.save_merchant("m1", &m, Expected::Anything).await.unwrap());
    // A replica starting (seeding from payhost.toml) writes only over what it read: a save
    // another replica made meanwhile stands.
    let read = s.merchant_stored("m1").await.unwrap().unwrap();
    assert!(s
        .save_merchant("m1", &other, Expected::Stored(&read))
        .await
        .unwrap());
    assert!(!s
        .update_merchant("m1", &m, Some("v2:seeded"), &read)
        .await
        .unwrap());
    assert_eq!(
        s.merchant("m1").await.unwrap().unwrap().shop_origins,
        ["https://narrowed.example"]
    );
    let now = s.merchant_stored("m1").await.unwrap().unwrap();
    assert!(s
        .update_merchant("m1", &m, Some("v2:seeded"), &now)
        .await
        .unwrap());
    assert_eq!(
        s.merchant_origin("m1").await.unwrap().unwrap().1.as_deref(),
        Some("v2:seeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_saves_compare_and_set_on_sqlite() {
    let dir = conformance::host::temp_dir("merchant-cas-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    merchant_saves_compare_and_set(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_saves_compare_and_set_on_postgres() {
    let pg = PgCluster::start("merchant-cas");
    let s = open(&pg.create_database("cas")).await;
    merchant_saves_compare_and_set(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_fair_on_sqlite() {
    let dir = conformance::host::temp_dir("fair-outbox-sqlite");
    let s = payhost::store::sqlite::SqliteStore::open(&dir.join("payhost.db")).unwrap();
    with_merchants(&s).await;
    fair_outbox(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_fair_on_postgres() {
    let pg = PgCluster::start("fair-outbox");
    let s = open(&pg.create_database("fair")).await;
    fair_outbox(&s).await;
}

/// An upgrade from schema 5. A command other than `serve` refuses it and changes nothing (an
/// older replica may still be serving it). `serve`'s open migrates it, but gives way to a
/// session holding a table the step changes: while a report held `refunds`, the migration's
/// queued `ALTER TABLE` stopped every other read of that table until the report ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_migrated_by_serve_only_and_gives_way_to_a_held_table() {
    let pg = PgCluster::start("upgrade");
    let url = pg.create_database("upgrade");
    // check-config on a new, empty database: nothing to say (it read a table not there yet).
    assert_eq!(
        payhost::store::postgres::check_reachable(&url).await,
        Ok(None)
    );
    // Nor a table of admin users: nobody to log in with, said as such (not "cannot tell").
    assert_eq!(
        payhost::store::postgres::has_admin_user(&url).await,
        Some(false)
    );
    // Nor merchants (check-config's merchants of the database).
    assert_eq!(
        payhost::store::postgres::stored_merchants(&url).await,
        Some(Vec::new())
    );
    pg.psql(
        "upgrade",
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    );
    for (i, sql) in [
        include_str!("../host/migrations/postgres/0001_init.sql"),
        include_str!("../host/migrations/postgres/0002_refused_notifications.sql"),
        include_str!("../host/migrations/postgres/0003_ledger_refunds.sql"),
        include_str!("../host/migrations/postgres/0004_admin_users_audit.sql"),
        include_str!("../host/migrations/postgres/0005_refund_sends.sql"),
    ]
    .iter()
    .enumerate()
    {
        pg.psql("upgrade", sql);
        pg.psql(
            "upgrade",
            &format!("INSERT INTO schema_migrations VALUES ({}, 'x')", i + 1),
        );
    }
    let opts = PgOptions {
        pool_size: 2,
        lease: Duration::from_secs(2),
    };
    let refused = PostgresStore::open_with(&url, &opts, Upgrade::Refuse)
        .await
        .err()
        .expect("a command does not upgrade");
    let text = format!("{refused:#}");
    assert!(
        text.contains("schema is version 5 and this payhost's is "),
        "{text}"
    );
    let version = || pg.psql("upgrade", "SELECT MAX(version) FROM schema_migrations");
    assert_eq!(version(), "5");
    assert_eq!(
        payhost::store::postgres::has_admin_user(&url).await,
        Some(false)
    );
    pg.psql(
        "upgrade",
        "INSERT INTO admin_users VALUES ('ops', 'x', 'operator', 'now', 'test')",
    );
    pg.psql(
        "upgrade",
        "INSERT INTO merchants (id, settings, source, updated_at) VALUES ('m9', '{\"plugin\":[]}', 'api', 'now')",
    );
    assert_eq!(
        payhost::store::postgres::stored_merchants(&url).await,
        Some(vec![("m9".to_owned(), "{\"plugin\":[]}".to_owned())])
    );
    assert_eq!(
        payhost::store::postgres::has_admin_user(&url).await,
        Some(true)
    );
    assert_eq!(
        payhost::store::postgres::has_admin_user("postgres://127.0.0.1:1/none").await,
        None,
        "nothing answers: cannot tell"
    );
    let note = payhost::store::postgres::check_reachable(&url)
        .await
        .unwrap()
        .expect("an upgrade is due");
    assert!(
        note.contains("schema version 5; `payhost serve` will upgrade it to ")
            && note.contains("pg_dump"),
        "{note}"
    );

    let mut report = pg.session("upgrade");
    report.send("BEGIN; LOCK TABLE refunds IN ACCESS SHARE MODE; SELECT 1;");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opening = tokio::spawn({
        let url = url.clone();
        async move { PostgresStore::open_with(&url, &opts, Upgrade::Apply).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Another reader of the table (an older replica): served once the migration gives way,
    // not held until the report ends.
    let asked = std::time::Instant::now();
    let count = tokio::task::spawn_blocking({
        let url = pg.url("upgrade");
        move || {
            std::process::Command::new(conformance::postgres::pg_bin().join("psql"))
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-d",
                    &url,
                    "-c",
                    "SELECT COUNT(*) FROM refunds",
                ])
                .output()
                .unwrap()
        }
    });
    let read = tokio::time::timeout(Duration::from_secs(20), count)
        .await
        .expect("the read was answered")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "0");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "a read of the table waited {:?} behind the migration",
        asked.elapsed()
    );
    assert!(!opening.is_finished(), "the migration waits for the report");
    assert_eq!(version(), "5");
    report.send("COMMIT;");
    let s = tokio::time::timeout(Duration::from_secs(30), opening)
        .await
        .expect("migrated once the table was free")
        .unwrap()
        .unwrap();
    s.ready().await.unwrap();
    assert_eq!(version(), "8");
}

/// A merchant removed while another replica writes for one of its payments (a notification
/// being applied: the payment locked, its outbox row not yet committed). The removal waits for
/// it and takes what it wrote too: nothing of the merchant is left to send a webhook for. (It
/// locks the payments before anything else of theirs, the order every other writer takes, so it
/// never deadlocks with a refund being settled either.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_waits_for_a_payments_writer_and_leaves_nothing_behind() {
    let pg = PgCluster::start("removal");
    let url = pg.create_database("removal");
    let s = open(&url).await;
    s.insert_payment(&payment("m1", "o1")).await.unwrap();
    let mut writer = pg.session("removal");
    writer.send(
        "BEGIN; SELECT 1 FROM payments WHERE merchant_id = 'm1' AND out_trade_no = 'o1' FOR UPDATE;",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removing = tokio::spawn(async move { s.delete_merchant("m1", true).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!removing.is_finished(), "waits for the payment's writer");
    writer.send(
        "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms) \
         VALUES ('evt_late', 'm1', 'https://shop.example/hook', '{}', 0, 0); COMMIT;",
    );
    let removed = tokio::time::timeout(Duration::from_secs(20), removing)
        .await
        .expect("the removal finished")
        .unwrap()
        .unwrap();
    assert!(
        matches!(removed, MerchantRemoval::Removed { payments: 1, .. }),
        "{removed:?}"
    );
    assert_eq!(
        pg.psql(
            "removal",
            "SELECT COUNT(*) FROM webhook_outbox WHERE merchant_id = 'm1'"
        ),
        "0",
        "the writer's outbox row went with the merchant"
    );
}

/// A token asked for while its merchant is being removed on another replica waits for the
/// removal and is not made: it would outlive its merchant and reach whoever gets the id next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_never_made_beside_its_merchants_removal() {
    let pg = PgCluster::start("token-removal");
    let url = pg.create_database("token-removal");
    let s = open(&url).await;
    let mut remover = pg.session("token-removal");
    remover.send("BEGIN; SELECT 1 FROM merchants WHERE id = 'm2' FOR UPDATE;");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let making =
        tokio::spawn(async move { s.create_token("m2", "hash-late", "", "api:operator").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!making.is_finished(), "waits for the removal in progress");
    remover.send("DELETE FROM merchants WHERE id = 'm2'; COMMIT;");
    let made = tokio::time::timeout(Duration::from_secs(20), making)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(made, None);
    assert_eq!(
        pg.psql("token-removal", "SELECT COUNT(*) FROM api_tokens"),
        "0"
    );
}

/// An owner given a merchant while another replica removes it waits for the removal and is not
/// added: the grant would outlive its merchant and reach whoever gets the id next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_is_never_given_a_merchant_beside_its_removal() {
    let pg = PgCluster::start("grant-removal");
    let url = pg.create_database("grant-removal");
    let s = open(&url).await;
    let mut remover = pg.session("grant-removal");
    remover.send("BEGIN; SELECT 1 FROM merchants WHERE id = 'm2' FOR UPDATE;");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let adding = tokio::spawn(async move {
        let owner = payhost::store::admin::AdminUser {
            name: "late".into(),
            password_hash: "x".into(),
            role: payhost::store::admin::Role::Owner,
            merchants: vec!["m1".into(), "m2".into()],
            created_at: "2026-12-06T00:00:00Z".into(),
            created_by: "test".into(),
        };
        s.add_admin_user(&owner, &[]).await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!adding.is_finished(), "waits for the removal in progress");
    remover.send(
        "DELETE FROM admin_user_merchants WHERE merchant_id = 'm2'; DELETE FROM merchants WHERE id = 'm2'; COMMIT;",
    );
    let refused = tokio::time::timeout(Duration::from_secs(20), adding)
        .await
        .expect("answered")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        refused.downcast_ref::<payhost::store::admin::NoSuchMerchant>(),
        Some(&payhost::store::admin::NoSuchMerchant("m2".into()))
    );
    assert_eq!(
        pg.psql(
            "grant-removal",
            "SELECT (SELECT COUNT(*) FROM admin_user_merchants) + (SELECT COUNT(*) FROM admin_users)"
        ),
        "0"
    );
}

/// A timeline entry kept `once` by two replicas at the same moment (a buyer's return answered by
/// each) is one row: the second waits for the first's commit and finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kept_once_by_two_replicas_at_once_is_one_row() {
    let pg = PgCluster::start("event-once");
    let url = pg.create_database("event-once");
    let s = open(&url).await;
    s.insert_payment(&payment("m1", "o1")).await.unwrap();
    // The other replica's `record_event(once)`, between its insert and its commit.
    let mut other = pg.session("event-once");
    other.send(
        "BEGIN; SELECT 1 FROM payments WHERE merchant_id = 'm1' AND out_trade_no = 'o1' FOR NO KEY UPDATE; \
         INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) \
         VALUES ('m1', 'o1', '2026-12-06T00:00:00Z', 'return', 'success');",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    use payhost::store::ledger::Ledger;
    let keeping = tokio::spawn(async move {
        s.record_event("m1", "o1", "return", Some("success"), true)
            .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !keeping.is_finished(),
        "waits for the other replica's commit"
    );
    other.send("COMMIT;");
    tokio::time::timeout(Duration::from_secs(20), keeping)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(
        pg.psql(
            "event-once",
            "SELECT COUNT(*) FROM payment_events WHERE out_trade_no = 'o1' AND kind = 'return'"
        ),
        "1"
    );
}
