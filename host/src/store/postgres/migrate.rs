//! The PostgreSQL schema's migrations, applied under `pg_advisory_lock` so replicas starting
//! together apply each one once.

use crate::store::now_rfc3339;
use anyhow::{bail, Context, Result};
use deadpool_postgres::Pool;

/// Migrations, in order; the version is the position + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_refused_notifications.sql"),
    include_str!("../../../migrations/postgres/0003_ledger_refunds.sql"),
    include_str!("../../../migrations/postgres/0004_admin_users_audit.sql"),
    include_str!("../../../migrations/postgres/0005_refund_sends.sql"),
    include_str!("../../../migrations/postgres/0006_refund_numbers_per_trade.sql"),
];

/// The advisory lock key of the migrations ("payhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6179_686f_7374;

pub(super) async fn migrate(pool: &Pool) -> Result<()> {
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
