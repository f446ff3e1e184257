//! The SQLite store's own tests (the PostgreSQL one has the same in tests/pg_store.rs).

use super::*;
use crate::store::admin::AdminStore;

fn payment(no: &str) -> Payment {
    Payment {
        merchant_id: "m1".into(),
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
        remote: None,
        body: b"raw",
    }
}

#[tokio::test]
async fn one_transition_per_notify_id_and_one_webhook() {
    let dir = std::env::temp_dir().join(format!("payhost-store-{}", std::process::id()));
    remove_db(&dir);
    let s = seeded(&dir);
    assert!(matches!(
        s.insert_payment(&payment("o1")).await.unwrap(),
        Inserted::New
    ));
    assert!(matches!(
        s.insert_payment(&payment("o1")).await.unwrap(),
        Inserted::Existing(_)
    ));
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
    // Another trade of the same order (paid twice): held for review, nothing of it written
    // into the payment (`domain::events::plan_notification`, under the payment's lock).
    let mut e = effect("n5", "TRADE_SUCCESS");
    e.trade_no = "2015";
    e.buyer_email = Some("other@example.com");
    assert_eq!(
        s.apply_notification(&e, &raw(), &record()).await.unwrap(),
        Applied::OtherTrade {
            recorded: "2014".into(),
            other: "2015".into()
        }
    );
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(p.status, TRADE_FINISHED);
    assert_eq!(p.paid_at.as_deref(), Some("2014-01-01 12:00:10"));
    assert_eq!(p.trade_no.as_deref(), Some("2014"));
    assert_eq!(p.buyer_email.as_deref(), Some("b@example.com"));
    assert!(
        p.review.as_deref().is_some_and(|r| r.contains("2015")),
        "{p:?}"
    );
    let jobs = s.due_webhooks(now_ms() + 1, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    s.webhook_delivered(jobs[0].id).await.unwrap();
    assert_eq!(s.pending_webhooks().await.unwrap(), 1);
    // Reopening keeps everything (migrations are not applied twice).
    drop(s);
    let s = seeded(&dir);
    assert_eq!(
        s.payment("m1", "o1").await.unwrap().unwrap().status,
        TRADE_FINISHED
    );
    assert_eq!(
        s.raw_notification_count().await.unwrap(),
        6,
        "each with its raw form"
    );
    let recorded = s.notifications_for("m1", "o1").await.unwrap();
    let outcomes: Vec<_> = recorded.iter().filter_map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            "applied",
            "duplicate",
            "no_change",
            "applied",
            "unknown_order",
            "mismatch"
        ],
        "each apply records its result in the same transaction"
    );
    remove_db(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_a_failed_write_spoils_only_itself() {
    let path = std::env::temp_dir().join(format!("payhost-group-{}", std::process::id()));
    remove_db(&path);
    let s = std::sync::Arc::new(seeded(&path));
    let before = s.commit_count();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    s.insert_payment(&payment(&format!("g{t}-{i}")))
                        .await
                        .unwrap();
                    // A write that fails (CHECK total_fen > 0) inside the same groups.
                    let mut zero = payment(&format!("z{t}-{i}"));
                    zero.total_fen = 0;
                    assert!(s.insert_payment(&zero).await.is_err());
                    let rec = NotificationRecord {
                        outcome: Some("x".into()),
                        ..record()
                    };
                    s.record_notification(&raw(), &rec).await.unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.await.unwrap();
    }
    let commits = s.commit_count() - before;
    // 32 × 20 × 3 writes; with 32 writers at a time they share commits.
    assert!(commits < 32 * 20 * 3, "{commits} commits");
    drop(s);
    let s = seeded(&path);
    assert_eq!(
        s.recent_payments(Some("m1"), 1000).await.unwrap().len(),
        640
    );
    assert_eq!(s.raw_notification_count().await.unwrap(), 640);
    assert_eq!(
        s.recent_notifications(Some("m1"), None, 1000)
            .await
            .unwrap()
            .len(),
        640
    );
    remove_db(&path);
}

/// Removes a test's database with its `-wal` and `-shm` (left in the temporary folder otherwise).
fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

/// A store at `path` whose merchants "m1", "a" and "a_b" exist (a payment needs its merchant).
fn seeded(path: &std::path::Path) -> SqliteStore {
    let s = SqliteStore::open(path).unwrap();
    let c = rusqlite::Connection::open(path).unwrap();
    for id in ["m1", "a", "a_b"] {
        c.execute(
            "INSERT OR IGNORE INTO merchants (id, settings, source, updated_at) VALUES (?1, '{}', 'api', '')",
            [id],
        )
        .unwrap();
    }
    s
}

/// A test's database file, removed with its `-wal` and `-shm` when this is dropped.
struct TempDb(std::path::PathBuf);

impl std::ops::Deref for TempDb {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDb {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        remove_db(&self.0);
    }
}

fn open_temp(name: &str) -> (SqliteStore, TempDb) {
    let path = std::env::temp_dir().join(format!("payhost-{name}-{}", std::process::id()));
    remove_db(&path);
    (seeded(&path), TempDb(path))
}

#[tokio::test]
async fn event_ids_are_unambiguous_and_colliding_ids_never_drop_a_webhook() {
    // merchant "a" / order "b_c" and merchant "a_b" / order "c" used to share an id.
    assert_ne!(
        event_id("a", "b_c", "payment.paid", None),
        event_id("a_b", "c", "payment.paid", None)
    );
    assert_ne!(
        event_id("m", "o", "payment.partially_refunded", Some("n1")),
        event_id("m", "o", "payment.partially_refunded", Some("n2"))
    );
    let (s, path) = open_temp("collide");
    for (m, o) in [("a", "b_c"), ("a_b", "c")] {
        let mut p = payment(o);
        p.merchant_id = m.into();
        s.insert_payment(&p).await.unwrap();
        let mut e = effect("n", "TRADE_SUCCESS");
        e.merchant_id = m;
        e.out_trade_no = o;
        let r = record();
        assert!(matches!(
            s.apply_notification(&e, &raw(), &r).await.unwrap(),
            Applied::Changed { .. }
        ));
    }
    let jobs = s.due_webhooks(now_ms() + 1, 10).await.unwrap();
    assert_eq!(jobs.len(), 2, "both shops get their webhook");
    drop(s);
    remove_db(&path);
}

#[tokio::test]
async fn refunds_move_a_paid_payment_to_refunded_with_webhooks() {
    let (s, path) = open_temp("refund");
    s.insert_payment(&payment("o1")).await.unwrap();
    let r = record();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &r)
        .await
        .unwrap();
    let mut partial = effect("n2", "TRADE_SUCCESS");
    partial.refund_status = Some("REFUND_SUCCESS");
    partial.event = TradeEvent::PartiallyRefunded;
    assert!(matches!(
        s.apply_notification(&partial, &raw(), &r).await.unwrap(),
        Applied::Changed { .. }
    ));
    assert_eq!(
        s.payment("m1", "o1").await.unwrap().unwrap().status,
        PARTIALLY_REFUNDED
    );
    let mut full = effect("n3", "TRADE_CLOSED");
    full.refund_status = Some("REFUND_SUCCESS");
    full.event = TradeEvent::Refunded;
    assert_eq!(
        s.apply_notification(&full, &raw(), &r).await.unwrap(),
        Applied::Changed {
            from: PARTIALLY_REFUNDED.into(),
            to: REFUNDED.into()
        }
    );
    assert_eq!(
        s.apply_notification(&effect("n4", "TRADE_FINISHED"), &raw(), &r)
            .await
            .unwrap(),
        Applied::NoChange,
        "TRADE_FINISHED after a refund undoes nothing"
    );
    let p = s.payment("m1", "o1").await.unwrap().unwrap();
    assert_eq!(p.status, REFUNDED);
    assert!(p.paid_at.is_some(), "refunded, never unpaid");
    let types: Vec<String> = s
        .due_webhooks(now_ms() + 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(&j.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "payment.paid",
            "payment.partially_refunded",
            "payment.refunded"
        ]
    );
    drop(s);
    remove_db(&path);
}

/// A refund report and the message that carried it commit together: when storing the message
/// fails, the refund is not applied and its notify id stays free, so the provider's resend
/// applies it once, stored with its outcome.
#[tokio::test]
async fn a_refund_report_commits_with_its_message_or_not_at_all() {
    use crate::store::ledger::{Ledger, PaidFacts, RefundApplied, ReportEffect, ReportRecord};
    let (s, path) = open_temp("report-whole");
    let mut p = payment("o1");
    p.total_fen = 1000;
    s.insert_payment(&p).await.unwrap();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
        .await
        .unwrap();
    let report = crate::domain::refunds::Report {
        request_no: "r1".into(),
        amount: Some(300),
        refunded_total: None,
        succeeded: true,
        detail: String::new(),
    };
    let body = b"notify_id=rn1&out_trade_no=o1";
    let message = RawNotification {
        merchant_id: "m1",
        remote: Some("127.0.0.1"),
        body,
    };
    let carried = || ReportEffect {
        merchant_id: "m1",
        out_trade_no: "o1",
        report: report.clone(),
        notify_id: "rn1",
        paid: PaidFacts {
            trade_no: "2014",
            ..Default::default()
        },
        completed_at: None,
        webhook_url: Some("https://shop/hook"),
        record: Some(ReportRecord {
            raw: message,
            record: NotificationRecord {
                notify_id: Some("rn1".into()),
                ..record()
            },
            finished: false,
            source: None,
        }),
    };
    let stored = s.raw_notification_count().await.unwrap();
    let c = rusqlite::Connection::open(&*path).unwrap();
    c.execute_batch(
        "CREATE TRIGGER no_results BEFORE INSERT ON notification_results BEGIN SELECT RAISE(ABORT, 'no room'); END;",
    )
    .unwrap();
    assert!(s.apply_refund_report(&carried()).await.is_err());
    assert!(s.refunds_for("m1", "o1").await.unwrap().is_empty());
    assert_eq!(
        s.payment("m1", "o1").await.unwrap().unwrap().status,
        TRADE_SUCCESS
    );
    assert_eq!(s.raw_notification_count().await.unwrap(), stored);

    c.execute_batch("DROP TRIGGER no_results").unwrap();
    let applied = s.apply_refund_report(&carried()).await.unwrap();
    let RefundApplied::Recorded { refund_id, .. } = applied else {
        panic!("the resend applies it: {applied:?}");
    };
    assert_eq!(s.raw_notification_count().await.unwrap(), stored + 1);
    let refunds = s.refunds_for("m1", "o1").await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].amount_fen, 300);
    let kept = s.notifications_for("m1", "o1").await.unwrap();
    let last = kept.last().unwrap();
    assert_eq!(last.notify_id.as_deref(), Some("rn1"));
    assert_eq!(last.outcome.as_deref(), Some("applied"));
    assert_eq!(
        last.detail.as_deref(),
        Some(
            format!(
                "refund {refund_id} started outside payhost recorded; payment PARTIALLY_REFUNDED"
            )
            .as_str()
        )
    );

    // The provider's next copy changes nothing and is kept as the duplicate it is.
    assert_eq!(
        s.apply_refund_report(&carried()).await.unwrap(),
        RefundApplied::Known
    );
    assert_eq!(s.refunds_for("m1", "o1").await.unwrap().len(), 1);
    let kept = s.notifications_for("m1", "o1").await.unwrap();
    assert_eq!(kept.last().unwrap().outcome.as_deref(), Some("duplicate"));
    assert_eq!(s.raw_notification_count().await.unwrap(), stored + 2);
    drop(s);
    remove_db(&path);
}

#[tokio::test]
async fn dead_letters_sessions_tokens_and_pruning() {
    let (s, path) = open_temp("hardening");
    s.insert_payment(&payment("o1")).await.unwrap();
    let r = record();
    s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &r)
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
    assert!(!s.resend_webhook("other", job.id).await.unwrap());
    assert!(s.resend_webhook("m1", job.id).await.unwrap());
    assert_eq!(s.due_webhooks(now_ms() + 1, 10).await.unwrap().len(), 1);
    // A webhook being retried is made due now on request (the shop is fixed); of its own
    // merchant only, and not one never tried.
    s.webhook_failed(job.taken(), now_ms() + 3_600_000, "HTTP 500")
        .await
        .unwrap();
    assert!(s.due_webhooks(now_ms() + 1, 10).await.unwrap().is_empty());
    assert_eq!(s.retry_webhooks_now(Some("other")).await.unwrap(), 0);
    assert_eq!(s.retry_webhooks_now(Some("m1")).await.unwrap(), 1);
    assert_eq!(s.due_webhooks(now_ms() + 1, 10).await.unwrap().len(), 1);
    assert_eq!(s.retry_webhooks_now(None).await.unwrap(), 0, "already due");

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
    assert!(!s.revoke_token(id, Some("m2")).await.unwrap());
    assert!(s.revoke_token(id, Some("m1")).await.unwrap());
    assert_eq!(s.token_merchant("hash1").await.unwrap(), None);

    let rec = NotificationRecord {
        outcome: Some("bad_signature".into()),
        ..record()
    };
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
    drop(s);
    remove_db(&path);
}

#[tokio::test]
async fn a_merchant_goes_with_its_payments_only_when_asked() {
    let path = std::env::temp_dir().join(format!("payhost-delete-{}", std::process::id()));
    remove_db(&path);
    let s = SqliteStore::open(&path).unwrap();
    let m = MerchantSettings {
        settings: vec![("partner".into(), "2088".into())],
        ..Default::default()
    };
    assert_eq!(
        s.delete_merchant("m1", false).await.unwrap(),
        MerchantRemoval::Unknown
    );
    s.save_merchant("m1", &m, Expected::Anything).await.unwrap();
    s.save_merchant("m2", &m, Expected::Anything).await.unwrap();
    s.insert_payment(&payment("o1")).await.unwrap();
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
        &crate::store::admin::AdminUser {
            name: "owner".into(),
            password_hash: "x".into(),
            role: crate::store::admin::Role::Owner,
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
    // Asked: everything under it goes, in one commit; the other merchant keeps its own.
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
    let late = crate::store::admin::AdminUser {
        name: "late".into(),
        password_hash: "x".into(),
        role: crate::store::admin::Role::Owner,
        merchants: vec!["m1".into(), "m2".into()],
        created_at: "2026-12-05T00:00:00Z".into(),
        created_by: "test".into(),
    };
    let refused = s.add_admin_user(&late, &[]).await.unwrap_err();
    assert_eq!(
        refused.downcast_ref::<crate::store::admin::NoSuchMerchant>(),
        Some(&crate::store::admin::NoSuchMerchant("m1".into()))
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
        s.insert_payment(&payment("o2")).await.unwrap(),
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
    // Without payments it goes without being asked.
    assert_eq!(
        s.delete_merchant("m2", false).await.unwrap(),
        MerchantRemoval::Removed {
            payments: 0,
            owner_grants: 1
        }
    );
    drop(s);
    remove_db(&path);
}

#[tokio::test]
async fn refused_notifications_are_bounded_records_within_a_quota() {
    use sha2::Digest;
    let (s, path) = open_temp("refused");
    let body = vec![b'x'; 30 * 1024];
    let rec = NotificationRecord {
        notify_id: None,
        out_trade_no: None,
        outcome: Some("bad_signature".into()),
        detail: Some("d".repeat(5000)),
        ..record()
    };
    let forged = |m: &'static str| RawNotification {
        merchant_id: m,
        remote: Some("192.0.2.1"),
        body: &body,
    };
    for _ in 0..5 {
        s.record_refused_notification(RefusedRecord::new(&forged("m1"), &rec), 3)
            .await
            .unwrap();
    }
    s.record_refused_notification(RefusedRecord::new(&forged("m2"), &rec), 3)
        .await
        .unwrap();
    // A verified one is kept whole and outside the quota.
    let verified = NotificationRecord {
        notify_id: Some("n9".into()),
        outcome: Some("unknown_order".into()),
        ..record()
    };
    s.record_notification(&raw(), &verified).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, i64, Option<i64>, Option<String>, i64)> = conn
        .prepare("SELECT merchant_id, length(body), body_size, body_sha256, refused FROM raw_notifications ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let m1: Vec<_> = rows.iter().filter(|r| r.0 == "m1" && r.4 == 1).collect();
    assert_eq!(m1.len(), 3, "the newest 3 of m1's 5: {rows:?}");
    assert_eq!(rows.iter().filter(|r| r.0 == "m2").count(), 1);
    for r in rows.iter().filter(|r| r.4 == 1) {
        assert_eq!((r.1, r.2), (1024, Some(30 * 1024)));
        assert_eq!(r.3, Some(hex::encode(sha2::Sha256::digest(&body))));
    }
    assert!(
        rows.iter().any(|r| r.4 == 0 && r.1 == 3),
        "the verified one, whole"
    );
    let details: Vec<String> = conn
        .prepare("SELECT detail FROM notification_results r JOIN raw_notifications n ON n.id = r.raw_id WHERE n.refused = 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        details.len(),
        4,
        "one result per kept record, none orphaned"
    );
    assert!(details.iter().all(|d| d.chars().count() <= 513));
    drop(conn);
    // Their own retention: only refused rows go.
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
    assert_eq!(s.raw_notification_count().await.unwrap(), 1);
    drop(s);
    remove_db(&path);
}

#[tokio::test]
async fn the_ledgers_search_takes_wildcards_literally_and_ignores_case() {
    use crate::store::ledger::{Ledger, PaymentFilter};
    let (s, path) = open_temp("ledger-search");
    for no in ["a_1", "ab1", "50%", "501", "x\\y", "xy"] {
        s.insert_payment(&payment(no)).await.unwrap();
    }
    for (q, want) in [
        ("_", vec!["a_1"]),
        ("A_", vec!["a_1"]),
        ("%", vec!["50%"]),
        ("\\", vec!["x\\y"]),
        ("B1", vec!["ab1"]),
    ] {
        let f = PaymentFilter {
            merchant: Some("m1".into()),
            q: Some(q.into()),
            limit: 10,
            ..PaymentFilter::default()
        };
        let found: Vec<String> = s
            .list_payments(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.payment.out_trade_no)
            .collect();
        assert_eq!(found, want, "q={q}");
    }
    drop(s);
    remove_db(&path);
}

/// A write the database has no room for makes the store not ready (`/readyz` 503, so a balancer
/// or an operator sees it), until a probe commit succeeds again.
#[tokio::test]
async fn a_write_without_room_makes_the_store_not_ready_until_one_commits() {
    let (store, _dir) = open_temp("not-ready");
    store.ready().await.expect("ready when new");
    // No page more than it has now: the next insert that needs a page fails as on a full disk.
    store
        .write(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    let mut full = None;
    for i in 0..500 {
        if let Err(e) = store.insert_payment(&payment(&format!("full-{i}"))).await {
            full = Some(e);
            break;
        }
    }
    let full = full.expect("the database ran out of pages");
    assert!(format!("{full:#}").contains("a full disk"), "{full:#}");
    assert!(store.writer.failing(), "a storage failure is remembered");
    // Still no room: the probe needs new pages, as an insert does, and is refused too (a row
    // rewritten in place committed, and the store said ready between failed inserts).
    for _ in 0..3 {
        assert!(store.ready().await.is_err(), "not ready while full");
        assert!(store.writer.failing());
    }
    // Room again: the probe commits, changing nothing, and the store is ready.
    store
        .write(|c| {
            c.query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    store.ready().await.expect("ready once a commit succeeds");
    assert!(!store.writer.failing());
    let applied: String = store
        .write(|c| {
            Ok(c.query_row(
                "SELECT applied_at FROM schema_migrations WHERE version = 1",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert!(applied.len() < 64, "the probe leaves the row as it was");
    assert!(free_bytes(std::path::Path::new("/")).is_some_and(|f| f > 0));
}

/// A file system without room is said with what to do (check-config, and a failed open): SQLite
/// itself says "disk I/O error" (Error code 4874) when it cannot grow the -shm file.
#[test]
fn too_little_room_is_said_with_what_to_do() {
    let folder = std::path::Path::new("/srv/payhost");
    let said = room_problem(folder, Some(3 * 1024 * 1024)).unwrap();
    assert!(
        said.contains("/srv/payhost")
            && said.contains("3072 KiB free")
            && said.contains("make room"),
        "{said}"
    );
    assert_eq!(room_problem(folder, Some(READY_FREE_BYTES)), None);
    assert_eq!(room_problem(folder, None), None);
}

/// The `-wal` file deleted while payhost runs (an operator "cleaning up"): SQLite goes on
/// committing into the deleted file, and a crash would take those commits with it. Each commit
/// is then copied into the database file before it is reported durable, and readiness says why.
#[tokio::test]
async fn a_deleted_wal_file_never_leaves_a_commit_only_in_it() {
    let (s, path) = open_temp("wal-deleted");
    s.insert_payment(&payment("w1")).await.unwrap();
    s.ready().await.unwrap();
    std::fs::remove_file(format!("{}-wal", path.display())).unwrap();
    let _ = std::fs::remove_file(format!("{}-shm", path.display()));
    s.insert_payment(&payment("w2")).await.unwrap();
    let e = s.ready().await.unwrap_err();
    assert!(format!("{e:#}").contains("-wal file was deleted"), "{e:#}");
    // What a crash now would leave: the database file alone.
    let copy = path.with_extension("after-crash");
    std::fs::copy(&path, &copy).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    let kept: i64 = c
        .query_row(
            "SELECT count(*) FROM payments WHERE out_trade_no IN ('w1', 'w2')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 2);
    drop(c);
    drop(s);
    remove_db(&copy);
}

/// A backup restored while payhost runs: the database file and its `-wal` moved away and a copy
/// put at the path. Nothing more is written into the moved file (the write that finds it is not
/// acknowledged), and readiness says why; the restored file is untouched.
#[tokio::test]
async fn a_database_file_replaced_while_payhost_runs_takes_no_more_writes() {
    let (s, path) = open_temp("db-replaced");
    s.insert_payment(&payment("r1")).await.unwrap();
    let moved = path.with_extension("moved");
    let restored = path.with_extension("restored");
    // The backup: payhost's own, made beside the running store (its -wal included).
    super::backup::backup(&path, &restored, false).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::rename(
            format!("{}{suffix}", path.display()),
            format!("{}{suffix}", moved.display()),
        );
    }
    std::fs::rename(&restored, &*path).unwrap();
    // Readiness says so at once, before any write finds it (a quiet night).
    let e = s.ready().await.unwrap_err();
    assert!(format!("{e:#}").contains("moved or replaced"), "{e:#}");
    for no in ["r2", "r3"] {
        let e = s.insert_payment(&payment(no)).await.err().expect("refused");
        assert!(format!("{e:#}").contains("moved or replaced"), "{e:#}");
    }
    let e = s.ready().await.unwrap_err();
    assert!(format!("{e:#}").contains("moved or replaced"), "{e:#}");
    drop(s);
    let c = rusqlite::Connection::open(&*path).unwrap();
    let rows: Vec<String> = c
        .prepare("SELECT out_trade_no FROM payments ORDER BY out_trade_no")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, ["r1"], "the restored file is as restored");
    drop(c);
    remove_db(&moved);
}

/// A database configured through a symbolic link, restored by pointing the link at a copy: the
/// next start would open the copy, so the file SQLite still has open takes no more writes, and
/// readiness and the writer say so alike.
#[tokio::test]
async fn a_database_link_pointed_at_another_file_takes_no_more_writes() {
    let dir = std::env::temp_dir().join(format!("payhost-db-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (real, other, link) = (
        dir.join("real.db"),
        dir.join("other.db"),
        dir.join("link.db"),
    );
    drop(SqliteStore::open(&real).unwrap());
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let s = SqliteStore::open(&link).unwrap();
    s.insert_payment(&payment("l1")).await.unwrap();
    s.ready().await.unwrap();
    super::backup::backup(&link, &other, false).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other, &link).unwrap();
    let e = s.ready().await.unwrap_err();
    assert!(format!("{e:#}").contains("moved or replaced"), "{e:#}");
    let e = s
        .insert_payment(&payment("l2"))
        .await
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("moved or replaced"), "{e:#}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the `-wal` file deleted, a commit a reader holds back cannot be copied into the database
/// file: it is reported as not safe (stored, not acknowledged), and nothing more is written
/// until it is copied; once the reader lets go, writes go on, each durable.
#[tokio::test]
async fn a_commit_a_reader_holds_back_is_not_acknowledged_and_holds_the_next() {
    let (s, path) = open_temp("wal-held");
    s.insert_payment(&payment("h1")).await.unwrap();
    // A reader (another process, say) that opened the -wal before it was deleted, and whose
    // snapshot began before the next commit.
    let reader = rusqlite::Connection::open(&path).unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM payments", [], |r| r.get(0))
        .unwrap();
    std::fs::remove_file(format!("{}-wal", path.display())).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM payments", [], |r| r.get(0))
        .unwrap();
    let Err(e) = s.insert_payment(&payment("h2")).await else {
        panic!("a commit only in the deleted -wal was acknowledged");
    };
    assert!(format!("{e:#}").contains("not safe on disk"), "{e:#}");
    assert!(crate::store::is_unavailable(&e));
    let Err(e) = s.insert_payment(&payment("h3")).await else {
        panic!("written while the last commit is not safe");
    };
    assert!(format!("{e:#}").contains("not safe on disk"), "{e:#}");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    s.insert_payment(&payment("h4")).await.unwrap();
    let copy = path.with_extension("after-crash");
    std::fs::copy(&path, &copy).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    let kept: Vec<String> = c
        .prepare("SELECT out_trade_no FROM payments ORDER BY out_trade_no")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(kept, ["h1", "h2", "h4"]);
    drop(c);
    drop(s);
    let _ = std::fs::remove_file(&copy);
    remove_db(&path);
}
