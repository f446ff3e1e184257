//! The PostgreSQL store, for several payhost replicas sharing one database.
//!
//! Same semantics as [`super::sqlite`]: every state change is one transaction with its dedupe key
//! and its webhook. Across replicas:
//!
//! * a `notify_id` is applied once whichever replica receives it: the payment row is locked
//!   (`SELECT … FOR UPDATE`) and the claim is an `INSERT … ON CONFLICT DO NOTHING` on the primary
//!   key of `applied_notifications`, in the transaction that moves the payment and queues its
//!   webhooks; a concurrent duplicate waits for the first commit and then finds the claim;
//! * the webhook outbox is leased: [`Store::due_webhooks`] takes due events with
//!   `FOR UPDATE SKIP LOCKED` and sets `lease_until` (the database's clock, so replicas' clocks do
//!   not matter) to now + the lease; other replicas skip leased events until the lease expires,
//!   which happens only when the holder died (the lease is longer than a delivery attempt can
//!   take); delivered, failed and dead-lettered events drop their lease;
//! * merchants, sessions and tokens are rows like any other: a merchant saved through one
//!   replica is read by the others on their next request.
//!
//! Durability: every connection sets `synchronous_commit = on` (a commit returns once the WAL is
//! flushed, as SQLite's `synchronous=FULL`); a notification is acknowledged only after its commit.
//!
//! Migrations (`host/migrations/postgres/`) are applied under `pg_advisory_lock`, so replicas
//! starting together apply each one once.
//!
//! **Sync over async.** [`Store`] is synchronous and is called from async handlers. The store owns
//! a small multi-threaded tokio runtime of its own that runs the driver (`tokio-postgres`) and its
//! pool (`deadpool-postgres`). A call spawns its query on that runtime and waits for the answer on
//! a std channel, inside `block_in_place` when the caller is on a multi-threaded runtime (as
//! SQLite's writer does). No runtime is ever entered from inside another, so no call can panic
//! with "cannot start a runtime from within a runtime", whatever thread it comes from; the
//! runtime is shut down in the background when the store is dropped.

use super::*;
use anyhow::{anyhow, bail, Context};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::time::Duration;
use tokio_postgres::{NoTls, Row};

mod admin;
mod ledger;

/// Migrations, in order; the version is the position + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_refused_notifications.sql"),
    include_str!("../../migrations/postgres/0003_ledger_refunds.sql"),
    include_str!("../../migrations/postgres/0004_admin_users_audit.sql"),
];

/// The advisory lock key of the migrations ("payhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6179_686f_7374;

/// Connections in the pool of one replica.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Options of [`PostgresStore::open`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub pool_size: usize,
    /// How long a replica holds a webhook it took for delivery; must be longer than one delivery
    /// attempt can take (connect and answer timeouts).
    pub lease: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: DEFAULT_POOL_SIZE,
            lease: Duration::from_secs(60),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    runtime: StoreRuntime,
    lease_ms: i64,
}

/// The store's own runtime, shut down in the background when dropped: dropping a runtime the
/// ordinary way blocks, which panics inside an async context.
struct StoreRuntime(Option<tokio::runtime::Runtime>);

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Whether `database` names PostgreSQL rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The URL with its password masked, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (a, h),
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl PostgresStore {
    /// Connects, checks the server and applies the migrations (under an advisory lock).
    pub fn open(url: &str, opts: &PgOptions) -> Result<PostgresStore> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("database: not a PostgreSQL URL: {}", redact_url(url)))?;
        // Durable commits whatever the server's default, as SQLite's synchronous=FULL.
        pg.options("-c synchronous_commit=on");
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        let runtime = StoreRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("payhost-postgres")
                .enable_all()
                .build()
                .context("cannot start the PostgreSQL store's runtime")?,
        ));
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _guard = runtime.0.as_ref().map(|rt| rt.enter());
            Pool::builder(manager)
                .max_size(opts.pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .context("cannot build the PostgreSQL pool")?
        };
        let store = PostgresStore {
            pool,
            runtime,
            lease_ms: opts.lease.as_millis().max(1) as i64,
        };
        let redacted = redact_url(url);
        store
            .run(|pool| async move { migrate(&pool).await })
            .with_context(|| format!("cannot open the database {redacted}"))?;
        Ok(store)
    }

    /// Runs `f` with the pool on the store's runtime and waits for its answer.
    fn run<R, F, Fut>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<R>> + Send + 'static,
    {
        let rt = self
            .runtime
            .0
            .as_ref()
            .ok_or_else(|| anyhow!("the store is closed"))?;
        let fut = f(self.pool.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        wait(|| rx.recv()).map_err(|_| anyhow!("the PostgreSQL store's runtime has stopped"))?
    }

    /// Runs `f` inside one transaction (committed when it returns Ok, rolled back otherwise).
    fn tx<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'t> FnOnce(
                &'t deadpool_postgres::Transaction<'t>,
            )
                -> std::pin::Pin<Box<dyn Future<Output = Result<R>> + Send + 't>>
            + Send
            + 'static,
    {
        self.run(|pool| async move {
            let mut client = pool.get().await.context("no database connection")?;
            let tx = client.transaction().await?;
            let r = f(&tx).await?;
            tx.commit().await.context("the database could not commit")?;
            Ok(r)
        })
    }

    /// Whether the database answers (for `/readyz`).
    pub fn ping(&self) -> Result<()> {
        self.run(|pool| async move {
            let client = pool.get().await.context("no database connection")?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
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

async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool.get().await.context("no database connection")?;
    // A session-level lock: replicas starting together wait here while the first migrates.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .await?;
        let current: i32 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
            .await?
            .get(0);
        if current as usize > MIGRATIONS.len() {
            bail!("the database schema (version {current}) is newer than this payhost knows; upgrade payhost");
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = client.transaction().await?;
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("migration {}", i + 1))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&(i as i32 + 1), &now_rfc3339()],
            )
            .await?;
            tx.commit().await?;
        }
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await?
            .get(0);
        if sync != "on" {
            bail!("synchronous_commit is {sync}: payhost needs durable commits");
        }
        let fsync: String = client.query_one("SHOW fsync", &[]).await?.get(0);
        if fsync != "on" {
            tracing::warn!("the PostgreSQL server runs with fsync=off: commits are not durable");
        }
        Ok(())
    }
    .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked?;
    Ok(())
}

fn payment_from_row(r: &Row) -> Result<Payment> {
    Ok(Payment {
        merchant_id: r.try_get("merchant_id")?,
        out_trade_no: r.try_get("out_trade_no")?,
        subject: r.try_get("subject")?,
        total_fen: r.try_get::<_, i64>("total_fen")? as u64,
        seller: r.try_get("seller")?,
        return_url: r.try_get("return_url")?,
        status: r.try_get("status")?,
        request_token: r.try_get("request_token")?,
        pay_url: r.try_get("pay_url")?,
        trade_no: r.try_get("trade_no")?,
        buyer_email: r.try_get("buyer_email")?,
        paid_at: r.try_get("paid_at")?,
        review: r.try_get("review")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn notification_from_row(r: &Row) -> Result<NotificationRecord> {
    Ok(NotificationRecord {
        raw_id: r.try_get("id")?,
        merchant_id: r.try_get("merchant_id")?,
        received_at: r.try_get("received_at")?,
        notify_id: r.try_get("notify_id")?,
        out_trade_no: r.try_get("out_trade_no")?,
        trade_status: r.try_get("trade_status")?,
        outcome: r.try_get("outcome")?,
        detail: r.try_get("detail")?,
    })
}

const PAYMENT_COLUMNS: &str = "merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at";

const NOTIFICATION_SELECT: &str = "SELECT n.id, n.merchant_id, n.received_at, r.notify_id, r.out_trade_no, r.trade_status, r.outcome, r.detail
     FROM raw_notifications n LEFT JOIN notification_results r ON r.raw_id = n.id";

/// Owned copies of what a transaction needs (it runs on the store's runtime).
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

type Tx<'t> = deadpool_postgres::Transaction<'t>;

async fn insert_raw(tx: &Tx<'_>, raw: &OwnedRaw) -> Result<i64> {
    let st = tx
        .prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES ($1, $2, $3, $4) RETURNING id")
        .await?;
    let row = tx
        .query_one(
            &st,
            &[&raw.merchant_id, &now_rfc3339(), &raw.remote, &raw.body],
        )
        .await?;
    Ok(row.get(0))
}

async fn insert_result(tx: &Tx<'_>, rec: &NotificationRecord) -> Result<()> {
    let st = tx
        .prepare_cached("INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .await?;
    tx.execute(
        &st,
        &[
            &rec.raw_id,
            &rec.merchant_id,
            &rec.notify_id,
            &rec.out_trade_no,
            &rec.trade_status,
            &rec.outcome,
            &rec.detail,
            &now_rfc3339(),
        ],
    )
    .await?;
    Ok(())
}

/// Claims the notify_id, moves the payment and queues the webhooks, inside `tx`.
async fn apply_in(tx: &Tx<'_>, e: &NotificationEffect<'_>) -> Result<Applied> {
    // The row lock serialises every notification of this payment across replicas.
    let st = tx
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR UPDATE"
        ))
        .await?;
    let Some(row) = tx
        .query_opt(&st, &[&e.merchant_id, &e.out_trade_no])
        .await?
    else {
        return Ok(Applied::UnknownOrder);
    };
    let payment = payment_from_row(&row)?;
    let now = now_rfc3339();
    let st = tx
        .prepare_cached("INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
        .await?;
    let claimed = tx
        .execute(&st, &[&e.merchant_id, &e.notify_id, &e.out_trade_no, &now])
        .await?;
    if claimed == 0 {
        return Ok(Applied::Duplicate);
    }
    let Some(plan) = plan_notification(&payment, e, &now) else {
        return Ok(Applied::NoChange);
    };
    let st = tx
        .prepare_cached("UPDATE payments SET status = $3, trade_no = COALESCE($4, trade_no), buyer_email = COALESCE($5, buyer_email),
             paid_at = $6, updated_at = $7 WHERE merchant_id = $1 AND out_trade_no = $2")
        .await?;
    let trade_no = Some(e.trade_no).filter(|t| !t.is_empty());
    tx.execute(
        &st,
        &[
            &e.merchant_id,
            &e.out_trade_no,
            &plan.next,
            &trade_no,
            &e.buyer_email,
            &plan.paid_at,
            &now,
        ],
    )
    .await?;
    for w in &plan.webhooks {
        let at = now_ms();
        // No ON CONFLICT: ids are unique by construction, so a conflict is a bug to see (the
        // notification fails and is retried), never a webhook silently dropped.
        let st = tx
            .prepare_cached("INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES ($1, $2, $3, $4, $5, $5, $6)")
            .await?;
        tx.execute(
            &st,
            &[&w.event_id, &e.merchant_id, &w.url, &w.body, &at, &w.kind],
        )
        .await
        .with_context(|| {
            format!(
                "webhook event id conflict for {} ({} of {}/{})",
                w.event_id, w.kind, e.merchant_id, e.out_trade_no
            )
        })?;
    }
    Ok(plan.applied)
}

impl Store for PostgresStore {
    fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>> {
        let id = id.to_owned();
        let json: Option<String> = self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached("SELECT settings FROM merchants WHERE id = $1")
                .await?;
            Ok(c.query_opt(&st, &[&id]).await?.map(|r| r.get(0)))
        })?;
        json.map(|j| serde_json::from_str(&j).context("stored merchant settings are corrupt"))
            .transpose()
    }

    fn merchant_ids(&self) -> Result<Vec<String>> {
        self.run(|pool| async move {
            let c = pool.get().await?;
            let rows = c.query("SELECT id FROM merchants ORDER BY id", &[]).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn save_merchant(&self, id: &str, settings: &MerchantSettings) -> Result<()> {
        let json = serde_json::to_string(settings)?;
        let id = id.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES ($1, $2, 'api', NULL, $3)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, source = 'api', updated_at = excluded.updated_at",
                &[&id, &json, &now_rfc3339()]).await?;
            Ok(())
        })
    }

    fn merchant_origin(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        let id = id.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached("SELECT source, config_hash FROM merchants WHERE id = $1")
                .await?;
            Ok(c.query_opt(&st, &[&id])
                .await?
                .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn update_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: Option<&str>,
    ) -> Result<()> {
        let json = serde_json::to_string(settings)?;
        let (id, config_hash) = (id.to_owned(), config_hash.map(str::to_owned));
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE merchants SET settings = $2, config_hash = COALESCE($3, config_hash), updated_at = $4 WHERE id = $1",
                &[&id, &json, &config_hash, &now_rfc3339()],
            )
            .await?;
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
        self.run(|pool| async move {
            let c = pool.get().await?;
            let n = c.execute("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES ($1, $2, 'config', $3, $4)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, source = 'config',
                     config_hash = excluded.config_hash, updated_at = excluded.updated_at
                 WHERE merchants.config_hash IS DISTINCT FROM excluded.config_hash",
                &[&id, &json, &config_hash, &now_rfc3339()]).await?;
            Ok(n > 0)
        })
    }

    fn insert_payment(&self, p: &Payment) -> Result<Inserted> {
        let p = p.clone();
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c.prepare_cached("INSERT INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status,
                     request_token, pay_url, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT DO NOTHING").await?;
            let n = c
                .execute(
                    &st,
                    &[
                        &p.merchant_id,
                        &p.out_trade_no,
                        &p.subject,
                        &(p.total_fen as i64),
                        &p.seller,
                        &p.return_url,
                        &p.status,
                        &p.request_token,
                        &p.pay_url,
                        &p.created_at,
                    ],
                )
                .await?;
            if n == 1 {
                return Ok(Inserted::New);
            }
            let st = c
                .prepare_cached(&format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2"
                ))
                .await?;
            let row = c
                .query_opt(&st, &[&p.merchant_id, &p.out_trade_no])
                .await?
                .context("payment vanished while inserting")?;
            Ok(Inserted::Existing(Box::new(payment_from_row(&row)?)))
        })
    }

    fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()> {
        let args = [merchant, out_trade_no, token, pay_url].map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(
                    "UPDATE payments SET request_token = $3, pay_url = $4, updated_at = $5
                 WHERE merchant_id = $1 AND out_trade_no = $2 AND status = 'WAIT_BUYER_PAY'",
                )
                .await?;
            c.execute(
                &st,
                &[&args[0], &args[1], &args[2], &args[3], &now_rfc3339()],
            )
            .await?;
            Ok(())
        })
    }

    fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>> {
        let args = [merchant, out_trade_no].map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2"
                ))
                .await?;
            c.query_opt(&st, &[&args[0], &args[1]])
                .await?
                .map(|r| payment_from_row(&r))
                .transpose()
        })
    }

    fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>> {
        let merchant = merchant.map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c.prepare_cached(&format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE ($1::text IS NULL OR merchant_id = $1) ORDER BY created_at DESC, seq DESC LIMIT $2"
            )).await?;
            c.query(&st, &[&merchant, &(limit as i64)])
                .await?
                .iter()
                .map(payment_from_row)
                .collect()
        })
    }

    fn waiting_payments(
        &self,
        created_after: &str,
        created_before: &str,
        limit: u32,
    ) -> Result<Vec<Payment>> {
        let (after, before) = (created_after.to_owned(), created_before.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c.prepare_cached(&format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE status = 'WAIT_BUYER_PAY' AND created_at > $1 AND created_at <= $2 ORDER BY created_at, seq LIMIT $3"
            )).await?;
            c.query(&st, &[&after, &before, &(limit as i64)])
                .await?
                .iter()
                .map(payment_from_row)
                .collect()
        })
    }

    fn flag_for_review(&self, merchant: &str, out_trade_no: &str, reason: &str) -> Result<()> {
        let args = [merchant, out_trade_no, reason].map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute("UPDATE payments SET review = $3, updated_at = $4 WHERE merchant_id = $1 AND out_trade_no = $2",
                &[&args[0], &args[1], &args[2], &now_rfc3339()]).await?;
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
        self.tx(move |tx| {
            Box::pin(async move {
                rec.raw_id = insert_raw(tx, &raw).await?;
                insert_result(tx, &rec).await?;
                Ok(rec.raw_id)
            })
        })
    }

    fn record_refused_notification(&self, refused: RefusedRecord, quota: u32) -> Result<i64> {
        self.tx(move |tx| {
            Box::pin(async move {
                let mut rec = refused.record;
                let st = tx
                    .prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body, refused, body_size, body_sha256)
                         VALUES ($1, $2, $3, $4, true, $5, $6) RETURNING id")
                    .await?;
                rec.raw_id = tx
                    .query_one(
                        &st,
                        &[&refused.merchant_id, &now_rfc3339(), &refused.remote, &refused.head, &refused.size, &refused.sha256],
                    )
                    .await?
                    .get(0);
                insert_result(tx, &rec).await?;
                // The quota: the newest `quota` stay (one insert past it deletes one row).
                let cut: Option<i64> = tx
                    .query_opt(
                        "SELECT id FROM raw_notifications WHERE merchant_id = $1 AND refused ORDER BY id DESC LIMIT 1 OFFSET $2",
                        &[&refused.merchant_id, &(quota as i64)],
                    )
                    .await?
                    .map(|r| r.get(0));
                if let Some(cut) = cut {
                    tx.execute(
                        "DELETE FROM notification_results WHERE raw_id IN
                         (SELECT id FROM raw_notifications WHERE merchant_id = $1 AND refused AND id <= $2)",
                        &[&refused.merchant_id, &cut],
                    )
                    .await?;
                    tx.execute(
                        "DELETE FROM raw_notifications WHERE merchant_id = $1 AND refused AND id <= $2",
                        &[&refused.merchant_id, &cut],
                    )
                    .await?;
                }
                Ok(rec.raw_id)
            })
        })
    }

    fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>> {
        let args = [merchant, out_trade_no].map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(&format!(
                    "{NOTIFICATION_SELECT} WHERE r.merchant_id = $1 AND r.out_trade_no = $2 ORDER BY n.id"
                ))
                .await?;
            c.query(&st, &[&args[0], &args[1]])
                .await?
                .iter()
                .map(notification_from_row)
                .collect()
        })
    }

    fn recent_notifications(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        let merchant = merchant.map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(&format!(
                    "{NOTIFICATION_SELECT} WHERE ($1::text IS NULL OR n.merchant_id = $1) ORDER BY n.id DESC LIMIT $2"
                ))
                .await?;
            c.query(&st, &[&merchant, &(limit as i64)])
                .await?
                .iter()
                .map(notification_from_row)
                .collect()
        })
    }

    fn raw_notification_count(&self) -> Result<u64> {
        self.run(|pool| async move {
            let c = pool.get().await?;
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM raw_notifications", &[])
                .await?
                .get(0);
            Ok(n as u64)
        })
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
        self.tx(move |tx| {
            Box::pin(async move {
                record.raw_id = insert_raw(tx, &raw).await?;
                let applied = apply_in(tx, &e.borrow()).await?;
                let (outcome, detail) = applied.outcome();
                record.outcome = Some(outcome.to_owned());
                record.detail = detail.or(record.detail);
                insert_result(tx, &record).await?;
                Ok(applied)
            })
        })
    }

    /// Leases the due webhooks to this replica (see the module's documentation).
    fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<WebhookJob>> {
        let lease_ms = self.lease_ms;
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(
                    "UPDATE webhook_outbox SET lease_until = clock_timestamp() + make_interval(secs => $3::bigint / 1000.0)
                 WHERE id IN (
                     SELECT id FROM webhook_outbox
                      WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_ms <= $1
                        AND (lease_until IS NULL OR lease_until <= clock_timestamp())
                      ORDER BY next_attempt_ms, id LIMIT $2
                      FOR UPDATE SKIP LOCKED)
                 RETURNING id, event_id, merchant_id, url, body, attempts, created_ms, next_attempt_ms",
                )
                .await?;
            let rows = c.query(&st, &[&now_ms, &(limit as i64), &lease_ms]).await?;
            let mut jobs: Vec<(i64, WebhookJob)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(7),
                        WebhookJob {
                            id: r.get(0),
                            event_id: r.get(1),
                            merchant_id: r.get(2),
                            url: r.get(3),
                            body: r.get(4),
                            attempts: r.get::<_, i32>(5) as u32,
                            created_ms: r.get(6),
                        },
                    )
                })
                .collect();
            jobs.sort_by_key(|(next, j)| (*next, j.id));
            Ok(jobs.into_iter().map(|(_, j)| j).collect())
        })
    }

    fn webhook_delivered(&self, id: i64) -> Result<()> {
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute("UPDATE webhook_outbox SET delivered_at = $2, attempts = attempts + 1, last_error = NULL, lease_until = NULL WHERE id = $1",
                &[&id, &now_rfc3339()]).await?;
            Ok(())
        })
    }

    fn webhook_failed(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute("UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3, lease_until = NULL WHERE id = $1",
                &[&id, &next_attempt_ms, &error]).await?;
            Ok(())
        })
    }

    fn webhook_dead(&self, id: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute("UPDATE webhook_outbox SET attempts = attempts + 1, dead_at = $2, last_error = $3, lease_until = NULL WHERE id = $1",
                &[&id, &now_rfc3339(), &error]).await?;
            Ok(())
        })
    }

    fn pending_webhooks(&self) -> Result<u64> {
        self.run(|pool| async move {
            let c = pool.get().await?;
            let n: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
                    &[],
                )
                .await?
                .get(0);
            Ok(n as u64)
        })
    }

    fn dead_webhooks(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<DeadWebhook>> {
        let merchant = merchant.map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let rows = c.query(
                "SELECT id, event_id, merchant_id, COALESCE(event_type, ''), attempts, last_error, dead_at FROM webhook_outbox
                 WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::text IS NULL OR merchant_id = $1) ORDER BY id DESC LIMIT $2",
                &[&merchant, &(limit as i64)],
            ).await?;
            Ok(rows
                .iter()
                .map(|r| DeadWebhook {
                    id: r.get(0),
                    event_id: r.get(1),
                    merchant_id: r.get(2),
                    event_type: r.get(3),
                    attempts: r.get::<_, i32>(4) as u32,
                    last_error: r.get(5),
                    dead_at: r.get(6),
                })
                .collect())
        })
    }

    fn resend_webhook(&self, merchant: &str, id: i64) -> Result<bool> {
        let merchant = merchant.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            let at = now_ms();
            let n = c.execute("UPDATE webhook_outbox SET dead_at = NULL, attempts = 0, next_attempt_ms = $3, created_ms = $3, lease_until = NULL
                     WHERE id = $1 AND merchant_id = $2 AND dead_at IS NOT NULL AND delivered_at IS NULL",
                &[&id, &merchant, &at]).await?;
            Ok(n > 0)
        })
    }

    fn prune_raw_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        self.tx(move |tx| {
            Box::pin(async move {
                // The oldest rows first (ids grow with time).
                let rows = tx
                    .query(
                        "SELECT id, received_at FROM raw_notifications ORDER BY id LIMIT $1",
                        &[&(batch as i64)],
                    )
                    .await?;
                let ids: Vec<i64> = rows
                    .iter()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .take_while(|(_, at)| at.as_str() < before.as_str())
                    .map(|(id, _)| id)
                    .collect();
                let Some(last) = ids.last().copied() else {
                    return Ok(0);
                };
                let first = ids[0];
                tx.execute(
                    "DELETE FROM notification_results WHERE raw_id BETWEEN $1 AND $2",
                    &[&first, &last],
                )
                .await?;
                let n = tx
                    .execute(
                        "DELETE FROM raw_notifications WHERE id BETWEEN $1 AND $2",
                        &[&first, &last],
                    )
                    .await?;
                Ok(n)
            })
        })
    }

    fn prune_refused_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        self.tx(move |tx| {
            Box::pin(async move {
                let ids: Vec<i64> = tx
                    .query(
                        "SELECT id FROM raw_notifications WHERE refused AND received_at < $1 ORDER BY id LIMIT $2",
                        &[&before, &(batch as i64)],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                tx.execute(
                    "DELETE FROM notification_results WHERE raw_id = ANY($1)",
                    &[&ids],
                )
                .await?;
                tx.execute("DELETE FROM raw_notifications WHERE id = ANY($1)", &[&ids])
                    .await?;
                Ok(ids.len() as u64)
            })
        })
    }

    fn create_session(&self, id_hash: &str, csrf: &str, expires_ms: i64) -> Result<()> {
        let (id_hash, csrf) = (id_hash.to_owned(), csrf.to_owned());
        self.tx(move |tx| {
            Box::pin(async move {
                let now = now_ms();
                // Expired sessions go when a new one is made.
                tx.execute("DELETE FROM admin_sessions WHERE expires_ms <= $1", &[&now])
                    .await?;
                tx.execute("INSERT INTO admin_sessions (id_hash, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
                    &[&id_hash, &csrf, &now, &expires_ms]).await?;
                Ok(())
            })
        })
    }

    fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>> {
        let id_hash = id_hash.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(
                    "SELECT csrf FROM admin_sessions WHERE id_hash = $1 AND expires_ms > $2",
                )
                .await?;
            Ok(c.query_opt(&st, &[&id_hash, &now_ms])
                .await?
                .map(|r| r.get(0)))
        })
    }

    fn delete_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute("DELETE FROM admin_sessions WHERE id_hash = $1", &[&id_hash])
                .await?;
            Ok(())
        })
    }

    fn create_token(&self, merchant: &str, token_hash: &str, label: &str) -> Result<i64> {
        let args = [merchant, token_hash, label].map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let row = c.query_one("INSERT INTO api_tokens (merchant_id, token_sha256, label, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&args[0], &args[1], &args[2], &now_rfc3339()]).await?;
            Ok(row.get(0))
        })
    }

    fn token_merchant(&self, token_hash: &str) -> Result<Option<String>> {
        let token_hash = token_hash.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            let st = c
                .prepare_cached(
                    "SELECT merchant_id FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                )
                .await?;
            Ok(c.query_opt(&st, &[&token_hash]).await?.map(|r| r.get(0)))
        })
    }

    fn tokens(&self, merchant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let merchant = merchant.map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let rows = c.query(
                "SELECT id, merchant_id, label, created_at, revoked_at FROM api_tokens WHERE ($1::text IS NULL OR merchant_id = $1) ORDER BY id",
                &[&merchant],
            ).await?;
            Ok(rows
                .iter()
                .map(|r| TokenInfo {
                    id: r.get(0),
                    merchant_id: r.get(1),
                    label: r.get(2),
                    created_at: r.get(3),
                    revoked_at: r.get(4),
                })
                .collect())
        })
    }

    fn delete_merchant(&self, id: &str, with_payments: bool) -> Result<MerchantRemoval> {
        let id = id.to_owned();
        self.tx(move |tx| {
            Box::pin(async move {
                // Locks the merchant's row, so no payment is created for it meanwhile.
                let row = tx
                    .query_opt("SELECT id FROM merchants WHERE id = $1 FOR UPDATE", &[&id])
                    .await?;
                if row.is_none() {
                    return Ok(MerchantRemoval::Unknown);
                }
                let counts = tx
                    .query_one(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE paid_at IS NOT NULL OR status IN ('TRADE_SUCCESS', 'TRADE_FINISHED', 'REFUNDED')) FROM payments WHERE merchant_id = $1",
                        &[&id],
                    )
                    .await?;
                let (payments, paid) = (counts.get::<_, i64>(0) as u64, counts.get::<_, i64>(1) as u64);
                if payments > 0 && !with_payments {
                    return Ok(MerchantRemoval::HasPayments { payments, paid });
                }
                // Results first: they reference their raw notification.
                for sql in [
                    "DELETE FROM notification_results WHERE merchant_id = $1",
                    "DELETE FROM raw_notifications WHERE merchant_id = $1",
                    "DELETE FROM applied_notifications WHERE merchant_id = $1",
                    "DELETE FROM webhook_outbox WHERE merchant_id = $1",
                    "DELETE FROM refunds WHERE merchant_id = $1",
                    "DELETE FROM payment_events WHERE merchant_id = $1",
                    "DELETE FROM webhook_attempts WHERE merchant_id = $1",
                    "DELETE FROM payments WHERE merchant_id = $1",
                    "DELETE FROM api_tokens WHERE merchant_id = $1",
                    "DELETE FROM merchants WHERE id = $1",
                ] {
                    tx.execute(sql, &[&id]).await?;
                }
                Ok(MerchantRemoval::Removed { payments })
            })
        })
    }

    fn revoke_token(&self, id: i64, merchant: Option<&str>) -> Result<bool> {
        let merchant = merchant.map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let n = c.execute("UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND ($2::text IS NULL OR merchant_id = $2) AND revoked_at IS NULL",
                &[&id, &merchant, &now_rfc3339()]).await?;
            Ok(n > 0)
        })
    }

    fn ready(&self) -> Result<()> {
        self.ping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("payhost.db"));
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
