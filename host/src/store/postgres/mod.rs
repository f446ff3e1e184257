//! The PostgreSQL store, for several payhost replicas sharing one database.
//!
//! Same semantics as [`super::sqlite`] — the money rules are the same code ([`super::rules`]) —
//! and every state change is one transaction with its dedupe key and its webhook. Across replicas:
//!
//! * a `notify_id` is applied once whichever replica receives it: the payment row is locked
//!   (`SELECT … FOR UPDATE`) and the claim is an `INSERT … ON CONFLICT DO NOTHING` on the primary
//!   key of `applied_notifications`, in the transaction that moves the payment and queues its
//!   webhooks; a concurrent duplicate waits for the first commit and then finds the claim;
//! * the webhook outbox is leased: [`Webhooks::due_webhooks`] takes due events with
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
//! The driver (`tokio-postgres`) and its pool (`deadpool-postgres`) run on the caller's runtime:
//! a call is an ordinary future, with no thread or runtime of the store's own.

mod access;
mod admin;
mod ledger;
mod merchants;
mod migrate;
mod notifications;
mod payments;
mod tx;
mod webhooks;

use super::*;
use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::{NoTls, Row};

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
    lease_ms: i64,
}

/// Whether `database` names PostgreSQL rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The URL with its password masked, for logs and errors: in the user part and as a
/// `password=` parameter (libpq's URLs take both).
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// One connection and `SELECT 1`, within 5 seconds; no migration, no pool.
/// What PostgreSQL said (`database "x" does not exist`, `password authentication failed for
/// user "y"`), not only tokio-postgres's "db error"; else the error and its cause.
fn cause(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) if source.to_string() != e.to_string() => format!("{e}: {source}"),
            _ => e.to_string(),
        },
    }
}

/// A connection for a check (`check-config`), made within 5 s, with its driver's task (the
/// caller aborts it when done).
async fn check_connection(
    url: &str,
) -> std::result::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), CheckConnect> {
    let mut pg: tokio_postgres::Config = url.parse().map_err(|_| CheckConnect::NotAUrl)?;
    pg.connect_timeout(Duration::from_secs(5));
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), pg.connect(NoTls))
        .await
        .map_err(|_| CheckConnect::Silent)?
        .map_err(CheckConnect::Refused)?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// Why [`check_connection`] made none.
enum CheckConnect {
    NotAUrl,
    Silent,
    Refused(tokio_postgres::Error),
}

/// `query`'s one value, or `absent` while `table` does not exist (a new database), within 5 s.
/// Two statements: PostgreSQL resolves every table a statement names before running it, so
/// one that reads a missing table fails.
async fn value_if_table<T>(
    client: &tokio_postgres::Client,
    table: &'static str,
    query: &str,
    absent: T,
) -> std::result::Result<std::result::Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    tokio::time::timeout(Duration::from_secs(5), async {
        if !table_exists(client, table).await? {
            return Ok(absent);
        }
        Ok(client.query_one(query, &[]).await?.get(0))
    })
    .await
}

/// Whether the database has `table` yet (a new one has none).
async fn table_exists(
    client: &tokio_postgres::Client,
    table: &'static str,
) -> std::result::Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(&format!("SELECT to_regclass('{table}') IS NOT NULL"), &[])
        .await?
        .get(0))
}

/// Whether the database has an admin user (`None` when that cannot be told within 5 s; no such
/// table yet is `Some(false)`). Reads only.
pub async fn has_admin_user(url: &str) -> Option<bool> {
    let (client, driver) = check_connection(url).await.ok()?;
    let answered = value_if_table(
        &client,
        "admin_users",
        "SELECT EXISTS (SELECT 1 FROM admin_users)",
        false,
    )
    .await;
    drop(client);
    driver.abort();
    answered.ok()?.ok()
}

/// The merchants the database holds with their stored settings (`None` when they cannot be
/// read within 5 s; no such table yet is none). Reads only.
pub async fn stored_merchants(url: &str) -> Option<Vec<(String, String)>> {
    let (client, driver) = check_connection(url).await.ok()?;
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        if !table_exists(&client, "merchants").await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query("SELECT id, settings FROM merchants ORDER BY id", &[])
            .await?;
        Ok::<_, tokio_postgres::Error>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })
    .await;
    drop(client);
    driver.abort();
    answered.ok()?.ok()
}

/// Whether the server answers, changing nothing; Ok(Some(note)) when its schema is older than
/// this payhost's (`serve` will migrate it). A newer one is refused, as `serve` refuses it.
pub async fn check_reachable(url: &str) -> std::result::Result<Option<String>, String> {
    let shown = redact_url(url);
    let (client, driver) = check_connection(url).await.map_err(|e| match e {
        CheckConnect::NotAUrl => format!("database: not a PostgreSQL URL: {shown}"),
        CheckConnect::Silent => format!("database: {shown} did not answer within 5 s"),
        CheckConnect::Refused(e) => {
            format!("database: cannot connect to {shown} ({})", cause(&e))
        }
    })?;
    // No table yet (a new database) is version 0.
    let answered = value_if_table(
        &client,
        "schema_migrations",
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        0i32,
    )
    .await;
    drop(client);
    driver.abort();
    let current: i32 = match answered {
        Ok(Ok(version)) => version,
        Ok(Err(e)) => return Err(format!("database: {shown} refused a query ({})", cause(&e))),
        Err(_) => {
            return Err(format!(
                "database: {shown} did not answer a query within 5 s"
            ))
        }
    };
    let latest = migrate::latest();
    if current as usize > latest {
        return Err(format!(
            "database: the schema of {shown} (version {current}) is newer than this payhost knows ({latest}): run the payhost that wrote it, or upgrade"
        ));
    }
    Ok(crate::store::upgrade_note(
        current.into(),
        latest,
        crate::store::BACKUP_POSTGRES,
    ))
}

impl PostgresStore {
    /// Connects, checks the server and applies the migrations (under an advisory lock).
    pub async fn open(url: &str, opts: &PgOptions) -> Result<PostgresStore> {
        Self::open_with(url, opts, crate::store::Upgrade::Apply).await
    }

    /// [`PostgresStore::open`], an older schema migrated or refused as `upgrade` says.
    pub async fn open_with(
        url: &str,
        opts: &PgOptions,
        upgrade: crate::store::Upgrade,
    ) -> Result<PostgresStore> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("database: not a PostgreSQL URL: {}", redact_url(url)))?;
        // Durable commits whatever the server's default, as SQLite's synchronous=FULL.
        pg.options("-c synchronous_commit=on");
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("cannot build the PostgreSQL pool")?;
        migrate::migrate(&pool, upgrade)
            .await
            .with_context(|| format!("cannot open the database {}", redact_url(url)))?;
        Ok(PostgresStore {
            pool,
            lease_ms: opts.lease.as_millis().max(1) as i64,
        })
    }

    /// A connection of the pool.
    async fn client(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow::Error::new(e).context(super::Unavailable))
    }

    /// Runs `f` with the pool (the ledger's and the admin pages' queries take their connection
    /// from it).
    async fn run<R, F, Fut>(&self, f: F) -> Result<R>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<R>> + Send,
    {
        f(self.pool.clone()).await
    }

    /// Runs `f` inside one transaction (committed when it returns Ok, rolled back otherwise).
    async fn tx<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'t> FnOnce(
                &'t deadpool_postgres::Transaction<'t>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<R>> + Send + 't>,
            > + Send
            + 'static,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = f(&tx).await?;
        tx.commit().await.context("the database could not commit")?;
        Ok(r)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ready(&self) -> Result<()> {
        self.ping().await
    }
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
        finished_at: r.try_get("finished_at")?,
    })
}

const PAYMENT_COLUMNS: &str = "merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at, finished_at";

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
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=secret"),
            "postgres://u@h/db?sslmode=disable&password=***"
        );
    }
}
