//! The embedded SQLite store: WAL journal, `synchronous=FULL` (a commit survives power loss),
//! migrations from `host/migrations`.
//!
//! Writes go to one writer thread that owns the write connection and commits in groups: it takes
//! every write waiting in its queue, runs each in its own savepoint inside one transaction, commits
//! once (one fsync for the group) and only then answers each caller. A caller's write is durable
//! when its call returns, as before; under load many writes share one fsync instead of queueing
//! for one each. Reads use a small pool of their own connections (WAL readers never wait for the
//! writer). A caller on the async runtime waits with `block_in_place`, so a worker thread waiting
//! for a commit does not stall the other requests.

use super::*;
use anyhow::{anyhow, bail, Context};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

mod ledger;

/// Migrations, in order; the version is the position + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_hardening.sql"),
    include_str!("../../migrations/0003_refused_notifications.sql"),
    include_str!("../../migrations/0004_ledger_refunds.sql"),
];

/// Read connections (WAL lets them read while the writer commits).
const READERS: usize = 4;
/// Most writes one commit carries.
const MAX_GROUP: usize = 256;

/// Called with the group's commit result once the group is committed (or not).
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One write: runs on the writer's connection inside the group transaction (or, given None, does
/// not run at all); says whether it succeeded (else its savepoint is rolled back) and how to
/// answer its caller.
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    commits: std::sync::Arc<AtomicUsize>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let open = || {
            Connection::open(path)
                .with_context(|| format!("cannot open the database {}", path.display()))
        };
        let conn = open()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The database holds merchant keys: readable by the owner only.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        configure(&conn)?;
        migrate(&conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open()?;
            configure(&r)?;
            readers.push(Mutex::new(r));
        }
        let (writer, queue) = mpsc::channel::<WriteJob>();
        let commits = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("payhost-store-writer".into())
            .spawn(move || write_loop(conn, queue, counter))
            .context("cannot start the store's writer thread")?;
        Ok(SqliteStore {
            writer,
            readers,
            next_reader: AtomicUsize::new(0),
            commits,
        })
    }

    /// How many group commits the writer has made (for tests and metrics).
    pub fn commit_count(&self) -> usize {
        self.commits.load(Ordering::Relaxed)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Ok(c) = self.readers[(start + i) % READERS].try_lock() {
                return c;
            }
        }
        // A panic while holding the lock cannot leave a transaction open (reads only), so a
        // poisoned lock is safe to keep using.
        let lock = &self.readers[start % READERS];
        wait(|| lock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the writer's connection in the next group; returns once the group is durable.
    fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = mpsc::sync_channel::<Result<R>>(1);
        let job: WriteJob = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => f(conn),
                None => Err(anyhow!("the store could not start a transaction")),
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(anyhow!("the store could not commit: {e}")),
                });
            });
            (ok, finish)
        });
        let stopped = || anyhow!("the store's writer thread has stopped");
        self.writer.send(job).map_err(|_| stopped())?;
        wait(|| rx.recv()).map_err(|_| stopped())?
    }
}

/// Blocks in a way that lets the async runtime move its other tasks elsewhere meanwhile.
fn wait<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if mode != "wal" {
        bail!("the database cannot use WAL journaling (journal_mode is {mode})");
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    Ok(())
}

fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current as usize > MIGRATIONS.len() {
        bail!("the database schema (version {current}) is newer than this payhost knows; upgrade payhost");
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migration {}", i + 1))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, now_rfc3339()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The writer thread: waits for a write, takes every other write already queued (up to
/// MAX_GROUP), runs each in a savepoint of one transaction, commits once, answers everyone.
/// Ends when the store is dropped (the queue closes).
fn write_loop(
    conn: Connection,
    queue: mpsc::Receiver<WriteJob>,
    commits: std::sync::Arc<AtomicUsize>,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = e.to_string();
            for job in group {
                // Not run: answered with the error, the database untouched.
                let (_, finish) = job(None);
                finish(Err(e.clone()));
            }
            continue;
        }
        let mut finishes = Vec::with_capacity(group.len());
        for job in group {
            let savepoint = conn
                .prepare_cached("SAVEPOINT job")
                .and_then(|mut s| s.execute([]));
            let (ok, finish) = job(Some(&conn));
            if savepoint.is_ok() {
                if !ok {
                    let _ = conn
                        .prepare_cached("ROLLBACK TO job")
                        .and_then(|mut s| s.execute([]));
                }
                let _ = conn
                    .prepare_cached("RELEASE job")
                    .and_then(|mut s| s.execute([]));
            }
            finishes.push(finish);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        } else {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for finish in finishes {
            finish(committed.clone());
        }
    }
}

fn payment_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Payment> {
    Ok(Payment {
        merchant_id: r.get("merchant_id")?,
        out_trade_no: r.get("out_trade_no")?,
        subject: r.get("subject")?,
        total_fen: r.get::<_, i64>("total_fen")? as u64,
        seller: r.get("seller")?,
        return_url: r.get("return_url")?,
        status: r.get("status")?,
        request_token: r.get("request_token")?,
        pay_url: r.get("pay_url")?,
        trade_no: r.get("trade_no")?,
        buyer_email: r.get("buyer_email")?,
        paid_at: r.get("paid_at")?,
        review: r.get("review")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

fn notification_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotificationRecord> {
    Ok(NotificationRecord {
        raw_id: r.get("id")?,
        merchant_id: r.get("merchant_id")?,
        received_at: r.get("received_at")?,
        notify_id: r.get("notify_id")?,
        out_trade_no: r.get("out_trade_no")?,
        trade_status: r.get("trade_status")?,
        outcome: r.get("outcome")?,
        detail: r.get("detail")?,
    })
}

fn insert_payment(conn: &Connection, p: &Payment) -> Result<Inserted> {
    let n = conn.prepare_cached("INSERT OR IGNORE INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status,
             request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, NULL, NULL, ?10, ?10)")?.execute(params![
            p.merchant_id,
            p.out_trade_no,
            p.subject,
            p.total_fen as i64,
            p.seller,
            p.return_url,
            p.status,
            p.request_token,
            p.pay_url,
            p.created_at
        ],
    )?;
    if n == 1 {
        return Ok(Inserted::New);
    }
    let existing = conn
        .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
        .query_row(params![p.merchant_id, p.out_trade_no], payment_from_row)
        .context("payment vanished while inserting")?;
    Ok(Inserted::Existing(Box::new(existing)))
}

/// A raw notification owned by the writer thread's job.
struct OwnedRaw {
    merchant_id: String,
    remote: Option<String>,
    body: Vec<u8>,
}

impl From<&RawNotification<'_>> for OwnedRaw {
    fn from(r: &RawNotification<'_>) -> Self {
        OwnedRaw {
            merchant_id: r.merchant_id.to_owned(),
            remote: r.remote.map(str::to_owned),
            body: r.body.to_vec(),
        }
    }
}

fn insert_raw(conn: &Connection, raw: &OwnedRaw) -> Result<i64> {
    conn.prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![raw.merchant_id, now_rfc3339(), raw.remote, raw.body])?;
    Ok(conn.last_insert_rowid())
}

fn insert_result(conn: &Connection, rec: &NotificationRecord) -> Result<()> {
    conn.prepare_cached("INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?.execute(params![
            rec.raw_id,
            rec.merchant_id,
            rec.notify_id,
            rec.out_trade_no,
            rec.trade_status,
            rec.outcome,
            rec.detail,
            now_rfc3339()
        ],
    )?;
    Ok(())
}

/// Claims the notify_id, moves the payment and queues the webhook (inside the writer's group
/// transaction, in the job's own savepoint).
fn apply_notification(conn: &Connection, e: &NotificationEffect<'_>) -> Result<Applied> {
    let payment = conn
        .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
        .query_row(params![e.merchant_id, e.out_trade_no], payment_from_row)
        .optional()?;
    let Some(payment) = payment else {
        return Ok(Applied::UnknownOrder);
    };
    let now = now_rfc3339();
    let claimed = conn.prepare_cached("INSERT OR IGNORE INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES (?1, ?2, ?3, ?4)")?.execute(params![e.merchant_id, e.notify_id, e.out_trade_no, now],
    )?;
    if claimed == 0 {
        return Ok(Applied::Duplicate);
    }
    let Some(plan) = plan_notification(&payment, e, &now) else {
        return Ok(Applied::NoChange);
    };
    conn.prepare_cached("UPDATE payments SET status = ?3, trade_no = COALESCE(?4, trade_no), buyer_email = COALESCE(?5, buyer_email),
             paid_at = ?6, updated_at = ?7 WHERE merchant_id = ?1 AND out_trade_no = ?2")?.execute(params![
            e.merchant_id,
            e.out_trade_no,
            plan.next,
            Some(e.trade_no).filter(|t| !t.is_empty()),
            e.buyer_email,
            plan.paid_at,
            now
        ],
    )?;
    for w in &plan.webhooks {
        let at = now_ms();
        // No OR IGNORE: ids are unique by construction, so a conflict is a bug to see (the
        // notification fails and is retried), never a webhook silently dropped.
        conn.prepare_cached("INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)")?
            .execute(params![w.event_id, e.merchant_id, w.url, w.body, at, w.kind])
            .with_context(|| format!("webhook event id conflict for {} ({} of {}/{})", w.event_id, w.kind, e.merchant_id, e.out_trade_no))?;
    }
    Ok(plan.applied)
}

/// A NotificationEffect that owns its strings, to travel to the writer thread.
struct OwnedEffect {
    merchant_id: String,
    notify_id: String,
    out_trade_no: String,
    trade_status: String,
    event: crate::domain::state::TradeEvent,
    trade_no: String,
    buyer_email: Option<String>,
    paid_at: Option<String>,
    webhook_url: Option<String>,
    refund_status: Option<String>,
    gmt_refund: Option<String>,
}

impl OwnedEffect {
    fn from(e: &NotificationEffect<'_>) -> OwnedEffect {
        OwnedEffect {
            merchant_id: e.merchant_id.to_owned(),
            notify_id: e.notify_id.to_owned(),
            out_trade_no: e.out_trade_no.to_owned(),
            trade_status: e.trade_status.to_owned(),
            event: e.event,
            trade_no: e.trade_no.to_owned(),
            buyer_email: e.buyer_email.map(str::to_owned),
            paid_at: e.paid_at.map(str::to_owned),
            webhook_url: e.webhook_url.map(str::to_owned),
            refund_status: e.refund_status.map(str::to_owned),
            gmt_refund: e.gmt_refund.map(str::to_owned),
        }
    }

    fn borrow(&self) -> NotificationEffect<'_> {
        NotificationEffect {
            merchant_id: &self.merchant_id,
            notify_id: &self.notify_id,
            out_trade_no: &self.out_trade_no,
            trade_status: &self.trade_status,
            event: self.event,
            trade_no: &self.trade_no,
            buyer_email: self.buyer_email.as_deref(),
            paid_at: self.paid_at.as_deref(),
            webhook_url: self.webhook_url.as_deref(),
            refund_status: self.refund_status.as_deref(),
            gmt_refund: self.gmt_refund.as_deref(),
        }
    }
}

const NOTIFICATION_SELECT: &str = "SELECT n.id, n.merchant_id, n.received_at, r.notify_id, r.out_trade_no, r.trade_status, r.outcome, r.detail
     FROM raw_notifications n LEFT JOIN notification_results r ON r.raw_id = n.id";

impl Store for SqliteStore {
    fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>> {
        let json: Option<String> = self
            .conn()
            .prepare_cached("SELECT settings FROM merchants WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        json.map(|j| serde_json::from_str(&j).context("stored merchant settings are corrupt"))
            .transpose()
    }

    fn merchant_ids(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM merchants ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn save_merchant(&self, id: &str, settings: &MerchantSettings) -> Result<()> {
        let json = serde_json::to_string(settings)?;
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'api', NULL, ?3)
                 ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, source = 'api', updated_at = excluded.updated_at")?.execute(params![id, json, now_rfc3339()],
            )?;
            Ok(())
        })
    }

    fn merchant_origin(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT source, config_hash FROM merchants WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn update_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: Option<&str>,
    ) -> Result<()> {
        let json = serde_json::to_string(settings)?;
        let (id, config_hash) = (id.to_owned(), config_hash.map(str::to_owned));
        self.write(move |conn| {
            conn.prepare_cached("UPDATE merchants SET settings = ?2, config_hash = COALESCE(?3, config_hash), updated_at = ?4 WHERE id = ?1")?
                .execute(params![id, json, config_hash, now_rfc3339()])?;
            Ok(())
        })
    }

    fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let (id, config_hash) = (id.to_owned(), config_hash.to_owned());
        self.write(move |conn| {
            let changed = conn.prepare_cached("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'config', ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, source = 'config',
                     config_hash = excluded.config_hash, updated_at = excluded.updated_at
                 WHERE merchants.config_hash IS NOT excluded.config_hash")?.execute(params![id, json, config_hash, now_rfc3339()],
            )?;
            Ok(changed > 0)
        })
    }

    fn insert_payment(&self, p: &Payment) -> Result<Inserted> {
        let p = p.clone();
        self.write(move |conn| insert_payment(conn, &p))
    }

    fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()> {
        let args = [merchant, out_trade_no, token, pay_url].map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE payments SET request_token = ?3, pay_url = ?4, updated_at = ?5
                 WHERE merchant_id = ?1 AND out_trade_no = ?2 AND status = 'WAIT_BUYER_PAY'",
            )?
            .execute(params![args[0], args[1], args[2], args[3], now_rfc3339()])?;
            Ok(())
        })
    }

    fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
            .query_row(params![merchant, out_trade_no], payment_from_row)
            .optional()?)
    }

    fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT * FROM payments WHERE (?1 IS NULL OR merchant_id = ?1) ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![merchant, limit], payment_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn waiting_payments(
        &self,
        created_after: &str,
        created_before: &str,
        limit: u32,
    ) -> Result<Vec<Payment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT * FROM payments WHERE status = 'WAIT_BUYER_PAY' AND created_at > ?1 AND created_at <= ?2 ORDER BY created_at, rowid LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(
                params![created_after, created_before, limit],
                payment_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn flag_for_review(&self, merchant: &str, out_trade_no: &str, reason: &str) -> Result<()> {
        let args = [merchant, out_trade_no, reason].map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached("UPDATE payments SET review = ?3, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2")?.execute(params![args[0], args[1], args[2], now_rfc3339()],
            )?;
            Ok(())
        })
    }

    fn record_notification(
        &self,
        raw: &RawNotification<'_>,
        rec: &NotificationRecord,
    ) -> Result<i64> {
        let raw = OwnedRaw::from(raw);
        let mut rec = rec.clone();
        self.write(move |conn| {
            rec.raw_id = insert_raw(conn, &raw)?;
            insert_result(conn, &rec)?;
            Ok(rec.raw_id)
        })
    }

    fn record_refused_notification(&self, refused: RefusedRecord, quota: u32) -> Result<i64> {
        self.write(move |conn| {
            let mut rec = refused.record;
            conn.prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body, refused, body_size, body_sha256)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)")?
                .execute(params![refused.merchant_id, now_rfc3339(), refused.remote, refused.head, refused.size, refused.sha256])?;
            rec.raw_id = conn.last_insert_rowid();
            insert_result(conn, &rec)?;
            // The quota: the newest `quota` stay (one insert past it deletes one row).
            let cut: Option<i64> = conn
                .prepare_cached("SELECT id FROM raw_notifications WHERE merchant_id = ?1 AND refused = 1 ORDER BY id DESC LIMIT 1 OFFSET ?2")?
                .query_row(params![refused.merchant_id, quota], |r| r.get(0))
                .optional()?;
            if let Some(cut) = cut {
                conn.prepare_cached("DELETE FROM notification_results WHERE raw_id IN
                     (SELECT id FROM raw_notifications WHERE merchant_id = ?1 AND refused = 1 AND id <= ?2)")?
                    .execute(params![refused.merchant_id, cut])?;
                conn.prepare_cached("DELETE FROM raw_notifications WHERE merchant_id = ?1 AND refused = 1 AND id <= ?2")?
                    .execute(params![refused.merchant_id, cut])?;
            }
            Ok(rec.raw_id)
        })
    }

    fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{NOTIFICATION_SELECT} WHERE r.merchant_id = ?1 AND r.out_trade_no = ?2 ORDER BY n.id"
        ))?;
        let rows = stmt
            .query_map(params![merchant, out_trade_no], notification_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn recent_notifications(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{NOTIFICATION_SELECT} WHERE (?1 IS NULL OR n.merchant_id = ?1) ORDER BY n.id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![merchant, limit], notification_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn raw_notification_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM raw_notifications")?
            .query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn apply_notification(
        &self,
        e: &NotificationEffect<'_>,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<Applied> {
        let e = OwnedEffect::from(e);
        let raw = OwnedRaw::from(raw);
        let mut record = record.clone();
        self.write(move |conn| {
            record.raw_id = insert_raw(conn, &raw)?;
            let applied = apply_notification(conn, &e.borrow())?;
            let (outcome, detail) = applied.outcome();
            record.outcome = Some(outcome.to_owned());
            record.detail = detail.or(record.detail);
            insert_result(conn, &record)?;
            Ok(applied)
        })
    }

    fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<WebhookJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, event_id, merchant_id, url, body, attempts, COALESCE(created_ms, next_attempt_ms) FROM webhook_outbox
             WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![now_ms, limit], |r| {
                Ok(WebhookJob {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    merchant_id: r.get(2)?,
                    url: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u32,
                    created_ms: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn webhook_delivered(&self, id: i64) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1")?.execute(params![id, now_rfc3339()],
            )?;
            Ok(())
        })
    }

    fn webhook_failed(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1")?.execute(params![id, next_attempt_ms, error],
            )?;
            Ok(())
        })
    }

    fn webhook_dead(&self, id: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET attempts = attempts + 1, dead_at = ?2, last_error = ?3 WHERE id = ?1")?
                .execute(params![id, now_rfc3339(), error])?;
            Ok(())
        })
    }

    fn pending_webhooks(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL")?
            .query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn dead_webhooks(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<DeadWebhook>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_id, merchant_id, COALESCE(event_type, ''), attempts, last_error, dead_at FROM webhook_outbox
             WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND (?1 IS NULL OR merchant_id = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![merchant, limit], |r| {
                Ok(DeadWebhook {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    merchant_id: r.get(2)?,
                    event_type: r.get(3)?,
                    attempts: r.get::<_, i64>(4)? as u32,
                    last_error: r.get(5)?,
                    dead_at: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn resend_webhook(&self, merchant: &str, id: i64) -> Result<bool> {
        let merchant = merchant.to_owned();
        self.write(move |conn| {
            let at = now_ms();
            let n = conn
                .prepare_cached("UPDATE webhook_outbox SET dead_at = NULL, attempts = 0, next_attempt_ms = ?3, created_ms = ?3
                     WHERE id = ?1 AND merchant_id = ?2 AND dead_at IS NOT NULL AND delivered_at IS NULL")?
                .execute(params![id, merchant, at])?;
            Ok(n > 0)
        })
    }

    fn prune_raw_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        self.write(move |conn| {
            // The oldest rows first (ids grow with time): the batch costs the same however large
            // the table is.
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "SELECT id, received_at FROM raw_notifications ORDER BY id LIMIT ?1",
                )?
                .query_map(params![batch], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .take_while(|(_, at)| at.as_str() < before.as_str())
                .map(|(id, _)| id)
                .collect();
            let Some(last) = ids.last().copied() else {
                return Ok(0);
            };
            let first = ids[0];
            conn.prepare_cached("DELETE FROM notification_results WHERE raw_id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
            let n = conn
                .prepare_cached("DELETE FROM raw_notifications WHERE id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
            Ok(n as u64)
        })
    }

    fn prune_refused_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        self.write(move |conn| {
            let ids: Vec<i64> = conn
                .prepare_cached("SELECT id FROM raw_notifications WHERE refused = 1 AND received_at < ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![before, batch], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for id in &ids {
                conn.prepare_cached("DELETE FROM notification_results WHERE raw_id = ?1")?
                    .execute([id])?;
                conn.prepare_cached("DELETE FROM raw_notifications WHERE id = ?1")?
                    .execute([id])?;
            }
            Ok(ids.len() as u64)
        })
    }

    fn create_session(&self, id_hash: &str, csrf: &str, expires_ms: i64) -> Result<()> {
        let (id_hash, csrf) = (id_hash.to_owned(), csrf.to_owned());
        self.write(move |conn| {
            let now = now_ms();
            // Expired sessions go when a new one is made.
            conn.prepare_cached("DELETE FROM admin_sessions WHERE expires_ms <= ?1")?
                .execute(params![now])?;
            conn.prepare_cached("INSERT INTO admin_sessions (id_hash, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![id_hash, csrf, now, expires_ms])?;
            Ok(())
        })
    }

    fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT csrf FROM admin_sessions WHERE id_hash = ?1 AND expires_ms > ?2",
            )?
            .query_row(params![id_hash, now_ms], |r| r.get(0))
            .optional()?)
    }

    fn delete_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM admin_sessions WHERE id_hash = ?1")?
                .execute(params![id_hash])?;
            Ok(())
        })
    }

    fn create_token(&self, merchant: &str, token_hash: &str, label: &str) -> Result<i64> {
        let args = [merchant, token_hash, label].map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO api_tokens (merchant_id, token_sha256, label, created_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![args[0], args[1], args[2], now_rfc3339()])?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn token_merchant(&self, token_hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT merchant_id FROM api_tokens WHERE token_sha256 = ?1 AND revoked_at IS NULL",
            )?
            .query_row(params![token_hash], |r| r.get(0))
            .optional()?)
    }

    fn tokens(&self, merchant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, merchant_id, label, created_at, revoked_at FROM api_tokens WHERE (?1 IS NULL OR merchant_id = ?1) ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![merchant], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    merchant_id: r.get(1)?,
                    label: r.get(2)?,
                    created_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_merchant(&self, id: &str, with_payments: bool) -> Result<MerchantRemoval> {
        let id = id.to_owned();
        self.write(move |conn| {
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM merchants WHERE id = ?1)",
                params![id],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(MerchantRemoval::Unknown);
            }
            let (payments, paid): (i64, i64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(paid_at IS NOT NULL OR status IN ('TRADE_SUCCESS', 'TRADE_FINISHED', 'REFUNDED')), 0) FROM payments WHERE merchant_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (payments, paid) = (payments as u64, paid as u64);
            if payments > 0 && !with_payments {
                return Ok(MerchantRemoval::HasPayments { payments, paid });
            }
            // Results first: they reference their raw notification.
            for sql in [
                "DELETE FROM notification_results WHERE merchant_id = ?1",
                "DELETE FROM raw_notifications WHERE merchant_id = ?1",
                "DELETE FROM applied_notifications WHERE merchant_id = ?1",
                "DELETE FROM webhook_outbox WHERE merchant_id = ?1",
                "DELETE FROM refunds WHERE merchant_id = ?1",
                "DELETE FROM payment_events WHERE merchant_id = ?1",
                "DELETE FROM webhook_attempts WHERE merchant_id = ?1",
                "DELETE FROM payments WHERE merchant_id = ?1",
                "DELETE FROM api_tokens WHERE merchant_id = ?1",
                "DELETE FROM merchants WHERE id = ?1",
            ] {
                conn.execute(sql, params![id])?;
            }
            Ok(MerchantRemoval::Removed { payments })
        })
    }

    fn revoke_token(&self, id: i64, merchant: Option<&str>) -> Result<bool> {
        let merchant = merchant.map(str::to_owned);
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE api_tokens SET revoked_at = ?3 WHERE id = ?1 AND (?2 IS NULL OR merchant_id = ?2) AND revoked_at IS NULL")?
                .execute(params![id, merchant, now_rfc3339()])?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn one_transition_per_notify_id_and_one_webhook() {
        let dir = std::env::temp_dir().join(format!("payhost-store-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let s = SqliteStore::open(&dir).unwrap();
        assert!(matches!(
            s.insert_payment(&payment("o1")).unwrap(),
            Inserted::New
        ));
        assert!(matches!(
            s.insert_payment(&payment("o1")).unwrap(),
            Inserted::Existing(_)
        ));
        assert_eq!(
            s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
                .unwrap(),
            Applied::Changed {
                from: WAIT_BUYER_PAY.into(),
                to: TRADE_SUCCESS.into()
            }
        );
        assert_eq!(
            s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
                .unwrap(),
            Applied::Duplicate
        );
        assert_eq!(
            s.apply_notification(&effect("n2", "TRADE_SUCCESS"), &raw(), &record())
                .unwrap(),
            Applied::NoChange
        );
        assert!(matches!(
            s.apply_notification(&effect("n3", "TRADE_FINISHED"), &raw(), &record())
                .unwrap(),
            Applied::Changed { .. }
        ));
        let mut e = effect("n4", "TRADE_SUCCESS");
        e.out_trade_no = "nope";
        assert_eq!(
            s.apply_notification(&e, &raw(), &record()).unwrap(),
            Applied::UnknownOrder
        );
        let p = s.payment("m1", "o1").unwrap().unwrap();
        assert_eq!(p.status, TRADE_FINISHED);
        assert_eq!(p.paid_at.as_deref(), Some("2014-01-01 12:00:10"));
        let jobs = s.due_webhooks(now_ms() + 1, 10).unwrap();
        assert_eq!(jobs.len(), 2);
        s.webhook_delivered(jobs[0].id).unwrap();
        assert_eq!(s.pending_webhooks().unwrap(), 1);
        // Reopening keeps everything (migrations are not applied twice).
        drop(s);
        let s = SqliteStore::open(&dir).unwrap();
        assert_eq!(
            s.payment("m1", "o1").unwrap().unwrap().status,
            TRADE_FINISHED
        );
        assert_eq!(
            s.raw_notification_count().unwrap(),
            5,
            "each with its raw form"
        );
        let recorded = s.notifications_for("m1", "o1").unwrap();
        let outcomes: Vec<_> = recorded.iter().filter_map(|r| r.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                "applied",
                "duplicate",
                "no_change",
                "applied",
                "unknown_order"
            ],
            "each apply records its result in the same transaction"
        );
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn concurrent_writes_share_commits_and_a_failed_write_spoils_only_itself() {
        let path = std::env::temp_dir().join(format!("payhost-group-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let s = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        let before = s.commit_count();
        let threads: Vec<_> = (0..32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        s.insert_payment(&payment(&format!("g{t}-{i}"))).unwrap();
                        // A write that fails (CHECK total_fen > 0) inside the same groups.
                        let mut zero = payment(&format!("z{t}-{i}"));
                        zero.total_fen = 0;
                        assert!(s.insert_payment(&zero).is_err());
                        let rec = NotificationRecord {
                            outcome: Some("x".into()),
                            ..record()
                        };
                        s.record_notification(&raw(), &rec).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let commits = s.commit_count() - before;
        // 32 × 20 × 3 writes; with 32 writers at a time they share commits.
        assert!(commits < 32 * 20 * 3, "{commits} commits");
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.recent_payments(Some("m1"), 1000).unwrap().len(), 640);
        assert_eq!(s.raw_notification_count().unwrap(), 640);
        assert_eq!(s.recent_notifications(Some("m1"), 1000).unwrap().len(), 640);
        let _ = std::fs::remove_file(&path);
    }

    fn open_temp(name: &str) -> (SqliteStore, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("payhost-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (SqliteStore::open(&path).unwrap(), path)
    }

    #[test]
    fn event_ids_are_unambiguous_and_colliding_ids_never_drop_a_webhook() {
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
            s.insert_payment(&p).unwrap();
            let mut e = effect("n", "TRADE_SUCCESS");
            e.merchant_id = m;
            e.out_trade_no = o;
            let r = record();
            assert!(matches!(
                s.apply_notification(&e, &raw(), &r).unwrap(),
                Applied::Changed { .. }
            ));
        }
        let jobs = s.due_webhooks(now_ms() + 1, 10).unwrap();
        assert_eq!(jobs.len(), 2, "both shops get their webhook");
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refunds_move_a_paid_payment_to_refunded_with_webhooks() {
        let (s, path) = open_temp("refund");
        s.insert_payment(&payment("o1")).unwrap();
        let r = record();
        s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &r)
            .unwrap();
        let mut partial = effect("n2", "TRADE_SUCCESS");
        partial.refund_status = Some("REFUND_SUCCESS");
        partial.event = TradeEvent::PartiallyRefunded;
        assert!(matches!(
            s.apply_notification(&partial, &raw(), &r).unwrap(),
            Applied::Changed { .. }
        ));
        assert_eq!(
            s.payment("m1", "o1").unwrap().unwrap().status,
            PARTIALLY_REFUNDED
        );
        let mut full = effect("n3", "TRADE_CLOSED");
        full.refund_status = Some("REFUND_SUCCESS");
        full.event = TradeEvent::Refunded;
        assert_eq!(
            s.apply_notification(&full, &raw(), &r).unwrap(),
            Applied::Changed {
                from: PARTIALLY_REFUNDED.into(),
                to: REFUNDED.into()
            }
        );
        assert_eq!(
            s.apply_notification(&effect("n4", "TRADE_FINISHED"), &raw(), &r)
                .unwrap(),
            Applied::NoChange,
            "TRADE_FINISHED after a refund undoes nothing"
        );
        let p = s.payment("m1", "o1").unwrap().unwrap();
        assert_eq!(p.status, REFUNDED);
        assert!(p.paid_at.is_some(), "refunded, never unpaid");
        let types: Vec<String> = s
            .due_webhooks(now_ms() + 1, 10)
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
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn dead_letters_sessions_tokens_and_pruning() {
        let (s, path) = open_temp("hardening");
        s.insert_payment(&payment("o1")).unwrap();
        let r = record();
        s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &r)
            .unwrap();
        let job = s.due_webhooks(now_ms() + 1, 10).unwrap().remove(0);
        s.webhook_dead(job.id, "HTTP 500").unwrap();
        assert_eq!(s.pending_webhooks().unwrap(), 0);
        assert!(s.due_webhooks(now_ms() + 1, 10).unwrap().is_empty());
        let dead = s.dead_webhooks(Some("m1"), 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event_type, "payment.paid");
        assert!(!s.resend_webhook("other", job.id).unwrap());
        assert!(s.resend_webhook("m1", job.id).unwrap());
        assert_eq!(s.due_webhooks(now_ms() + 1, 10).unwrap().len(), 1);

        s.create_session("h1", "csrf1", now_ms() + 60_000).unwrap();
        s.create_session("h2", "csrf2", now_ms() - 1).unwrap();
        assert_eq!(s.session("h1", now_ms()).unwrap().as_deref(), Some("csrf1"));
        assert_eq!(s.session("h2", now_ms()).unwrap(), None, "expired");
        s.delete_session("h1").unwrap();
        assert_eq!(s.session("h1", now_ms()).unwrap(), None, "revoked");

        let id = s.create_token("m1", "hash1", "ecshop").unwrap();
        assert_eq!(s.token_merchant("hash1").unwrap().as_deref(), Some("m1"));
        assert!(!s.revoke_token(id, Some("m2")).unwrap());
        assert!(s.revoke_token(id, Some("m1")).unwrap());
        assert_eq!(s.token_merchant("hash1").unwrap(), None);

        let rec = NotificationRecord {
            outcome: Some("bad_signature".into()),
            ..record()
        };
        for _ in 0..3 {
            s.record_notification(&raw(), &rec).unwrap();
        }
        assert_eq!(s.raw_notification_count().unwrap(), 4);
        assert_eq!(
            s.prune_raw_notifications("1970-01-02T00:00:00Z", 10)
                .unwrap(),
            0
        );
        assert_eq!(
            s.prune_raw_notifications("9999-01-01T00:00:00Z", 2)
                .unwrap(),
            2
        );
        assert_eq!(
            s.prune_raw_notifications("9999-01-01T00:00:00Z", 10)
                .unwrap(),
            2
        );
        assert_eq!(s.raw_notification_count().unwrap(), 0);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_merchant_goes_with_its_payments_only_when_asked() {
        let path = std::env::temp_dir().join(format!("payhost-delete-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let s = SqliteStore::open(&path).unwrap();
        let m = MerchantSettings {
            settings: vec![("partner".into(), "2088".into())],
            plugin_id: String::new(),
            from_files: Vec::new(),
            shop_webhook_url: None,
            shop_webhook_secret: None,
            shop_origins: Vec::new(),
            settings_digest: None,
        };
        assert_eq!(
            s.delete_merchant("m1", false).unwrap(),
            MerchantRemoval::Unknown
        );
        s.save_merchant("m1", &m).unwrap();
        s.save_merchant("m2", &m).unwrap();
        s.insert_payment(&payment("o1")).unwrap();
        s.apply_notification(&effect("n1", "TRADE_SUCCESS"), &raw(), &record())
            .unwrap();
        s.create_token("m1", "hash-m1", "").unwrap();
        s.create_token("m2", "hash-m2", "").unwrap();
        // Paid: the money record keeps the merchant.
        assert_eq!(
            s.delete_merchant("m1", false).unwrap(),
            MerchantRemoval::HasPayments {
                payments: 1,
                paid: 1
            }
        );
        assert!(s.merchant("m1").unwrap().is_some());
        assert!(s.payment("m1", "o1").unwrap().is_some());
        // Asked: everything under it goes, in one commit; the other merchant keeps its own.
        assert_eq!(
            s.delete_merchant("m1", true).unwrap(),
            MerchantRemoval::Removed { payments: 1 }
        );
        assert!(s.merchant("m1").unwrap().is_none());
        assert!(s.payment("m1", "o1").unwrap().is_none());
        assert!(s.recent_notifications(Some("m1"), 10).unwrap().is_empty());
        assert_eq!(s.raw_notification_count().unwrap(), 0);
        assert_eq!(s.pending_webhooks().unwrap(), 0);
        assert_eq!(s.token_merchant("hash-m1").unwrap(), None);
        assert_eq!(s.token_merchant("hash-m2").unwrap().as_deref(), Some("m2"));
        // Without payments it goes without being asked.
        assert_eq!(
            s.delete_merchant("m2", false).unwrap(),
            MerchantRemoval::Removed { payments: 0 }
        );
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refused_notifications_are_bounded_records_within_a_quota() {
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
                .unwrap();
        }
        s.record_refused_notification(RefusedRecord::new(&forged("m2"), &rec), 3)
            .unwrap();
        // A verified one is kept whole and outside the quota.
        let verified = NotificationRecord {
            notify_id: Some("n9".into()),
            outcome: Some("unknown_order".into()),
            ..record()
        };
        s.record_notification(&raw(), &verified).unwrap();
        let conn = s.conn();
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
                .unwrap(),
            0
        );
        assert_eq!(
            s.prune_refused_notifications("9999-01-01T00:00:00Z", 10)
                .unwrap(),
            4
        );
        assert_eq!(s.raw_notification_count().unwrap(), 1);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
