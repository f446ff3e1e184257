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
    include_str!("../../../migrations/postgres/0007_token_creator.sql"),
    include_str!("../../../migrations/postgres/0008_trade_finished.sql"),
];

/// This payhost's schema version.
pub(super) fn latest() -> usize {
    MIGRATIONS.len()
}

/// The advisory lock key of the migrations ("payhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6179_686f_7374;

/// How long one migration waits for its tables' locks before it gives way and tries again:
/// while an `ALTER TABLE` waits, every other query of that table (an older replica still
/// serving, say) queues behind it.
const LOCK_WAIT: &str = "2s";

pub(super) async fn migrate(pool: &Pool, upgrade: crate::store::Upgrade) -> Result<()> {
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
        let behind = crate::store::before_migrating(
            current.into(),
            MIGRATIONS.len(),
            upgrade,
            crate::store::BACKUP_POSTGRES,
        )?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = i as i32 + 1;
            let mut waits = 0u32;
            loop {
                let tx = client.transaction().await?;
                tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                    .await?;
                let applied = tx.batch_execute(sql).await;
                match applied {
                    Ok(()) => {
                        tx.execute(
                            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                            &[&version, &now_rfc3339()],
                        )
                        .await?;
                        tx.commit().await?;
                        break;
                    }
                    // Another session holds a lock on a table this step changes (a long report,
                    // an older replica's transaction): give way, say so, try again.
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                        drop(tx);
                        waits += 1;
                        tracing::warn!(
                            migration = version,
                            waits,
                            "a migration waited {LOCK_WAIT} for a table another session holds (see pg_locks and pg_stat_activity); it gives way and tries again in 2 s"
                        );
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!("migration {version}")))
                    }
                }
            }
            if behind {
                tracing::info!(from = current, to = version, "migrated the database schema");
            }
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
