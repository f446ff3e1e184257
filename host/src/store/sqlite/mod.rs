//! The embedded SQLite store: WAL journal, `synchronous=FULL` (a commit survives power loss),
//! migrations from `host/migrations`.
//!
//! Writes go to one writer thread that owns the write connection and commits in groups
//! ([`writer`]): callers queue jobs on a tokio channel and await the answer, which comes only
//! after the group's COMMIT is durable. Reads run on a small pool of their own connections
//! ([`readers`]) on tokio's blocking pool: WAL readers never wait for the writer, and no runtime
//! worker ever waits for SQLite.

mod access;
mod admin;
mod ledger;
mod merchants;
mod migrate;
mod notifications;
mod payments;
mod readers;
#[cfg(test)]
mod tests;
mod tx;
mod webhooks;
mod writer;

use super::*;
use anyhow::{bail, Context};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;

pub struct SqliteStore {
    writer: writer::Writer,
    readers: Arc<readers::Readers>,
}

impl SqliteStore {
    /// Opens (creating if need be) and migrates the database, and starts its writer thread. Needs
    /// no async runtime; its calls do.
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
        migrate::migrate(&conn)?;
        let readers = readers::Readers::open(|| {
            let r = open()?;
            configure(&r)?;
            Ok(r)
        })?;
        Ok(SqliteStore {
            writer: writer::Writer::start(conn)?,
            readers: Arc::new(readers),
        })
    }

    /// How many group commits the writer has made (for tests and metrics).
    pub fn commit_count(&self) -> usize {
        self.writer.commit_count()
    }

    /// Runs `f` on a read connection, on the blocking pool.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.readers.run(f).await
    }

    /// Runs a point read by key in place when nothing would wait (see [`readers::Readers::run_here`]).
    async fn read_here<R: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.readers.run_here(f).await
    }

    /// Runs `f` on the writer's connection in the next group; returns once the group is durable.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.writer.run(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ready(&self) -> Result<()> {
        self.pending_webhooks().await.map(|_| ())
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
