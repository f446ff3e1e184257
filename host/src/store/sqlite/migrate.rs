//! The SQLite schema's migrations, applied in order when the store opens.

use crate::store::now_rfc3339;
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection};

/// Migrations, in order; the version is the position + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/0001_init.sql"),
    include_str!("../../../migrations/0002_hardening.sql"),
    include_str!("../../../migrations/0003_refused_notifications.sql"),
    include_str!("../../../migrations/0004_ledger_refunds.sql"),
    include_str!("../../../migrations/0005_admin_users_audit.sql"),
];

pub(super) fn migrate(conn: &Connection) -> Result<()> {
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
