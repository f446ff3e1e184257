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
    include_str!("../../../migrations/0006_refund_sends.sql"),
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
        // An upgrade is worth a line in the log (a new database's creation is not).
        if current > 0 {
            tracing::info!(from = current, to = i + 1, "migrated the database schema");
        }
    }
    Ok(())
}

/// What `payhost check-config` can tell of an existing database without changing it: opened
/// read-only, its schema must be one this payhost knows (a newer one is refused at start) and
/// readable (a damaged file fails here, not at start).
pub(super) fn check_known(path: &std::path::Path) -> std::result::Result<(), String> {
    use rusqlite::OpenFlags;
    let shown = path.display();
    // `immutable=1`: a read-only connection would still create (and, being read-only, leave)
    // the -wal and -shm files, owned by whoever ran the check. Immutable reads the main file
    // alone: what the last checkpoint holds, enough for the schema's version.
    let uri = file_uri(path);
    let unreadable = |e: rusqlite::Error| {
        format!("database: cannot read {shown} ({e}): the file is damaged, or a running payhost was writing it as it was read (check again)")
    };
    let conn = Connection::open_with_flags(
        format!("{uri}?mode=ro&immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| format!("database: cannot open {shown} ({e})"))?;
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(unreadable)?;
    if !has_table {
        return Ok(());
    }
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(unreadable)?;
    if current as usize > MIGRATIONS.len() {
        return Err(format!(
            "database: the schema of {shown} (version {current}) is newer than this payhost knows ({}): run the payhost that wrote it, or upgrade",
            MIGRATIONS.len()
        ));
    }
    Ok(())
}

/// An SQLite `file:` URI of `path`: absolute (a relative path, or one starting `//`, would be
/// read as an authority), every byte but the unreserved ones and `/` percent-encoded.
fn file_uri(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for &b in absolute.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_reads_the_schema_version_and_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("payhost-check-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("payhost.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
            migrate(&c).unwrap();
        }
        let files = || {
            let mut f: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            f.sort();
            f
        };
        let before = files();
        assert_eq!(check_known(&db), Ok(()));
        assert_eq!(files(), before, "nothing created");
        {
            let c = Connection::open(&db).unwrap();
            c.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'x')",
                [],
            )
            .unwrap();
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        }
        let newer = check_known(&db).unwrap_err();
        assert!(
            newer.contains("version 99") && newer.contains("newer"),
            "{newer}"
        );
        let bytes = std::fs::read(&db).unwrap();
        let broken = dir.join("broken.db");
        std::fs::write(&broken, &bytes[..bytes.len().min(3000)]).unwrap();
        // A path SQLite's URI syntax would misread: escaped, and found.
        let odd = dir.join("a %3F?#b 中");
        std::fs::create_dir_all(&odd).unwrap();
        std::fs::copy(&db, odd.join("payhost.db")).unwrap();
        let newer_too = check_known(&odd.join("payhost.db")).unwrap_err();
        assert!(newer_too.contains("version 99"), "{newer_too}");
        let damaged = check_known(&broken).unwrap_err();
        assert!(
            damaged.contains("broken.db") && damaged.contains("damaged"),
            "{damaged}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
