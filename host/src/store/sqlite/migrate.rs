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
    include_str!("../../../migrations/0007_refund_numbers_per_trade.sql"),
    include_str!("../../../migrations/0008_token_creator.sql"),
    include_str!("../../../migrations/0009_trade_finished.sql"),
];

pub(super) fn migrate(conn: &Connection, upgrade: crate::store::Upgrade) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current as usize > MIGRATIONS.len() {
        bail!("the database schema (version {current}) is newer than this payhost knows; upgrade payhost");
    }
    let behind = crate::store::before_migrating(
        current,
        MIGRATIONS.len(),
        upgrade,
        crate::store::BACKUP_SQLITE,
    )?;
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
        if behind {
            tracing::info!(from = current, to = i + 1, "migrated the database schema");
        }
    }
    Ok(())
}

/// An existing database opened read-only without leaving a file beside it, with whether it
/// has a log (`-wal`) and whether it is read through it.
fn open_to_check(path: &std::path::Path) -> rusqlite::Result<(Connection, bool, bool)> {
    use rusqlite::OpenFlags;
    let uri = file_uri(path);
    let beside = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let has_wal = std::fs::metadata(beside("-wal")).is_ok_and(|m| m.len() > 0);
    // Commits not yet checkpointed live in the -wal file, and a checkpoint cut short (a stop
    // during one) leaves the main file half old, half new: read through the log when there is
    // one. With its -shm beside it, a read-only connection creates no file. Without one (or
    // without a log) `immutable=1`: a read-only connection would create, and leave, the -wal and
    // -shm files, owned by whoever ran the check; immutable reads the main file alone.
    let through_log = has_wal && beside("-shm").is_file();
    let conn = Connection::open_with_flags(
        if through_log {
            format!("{uri}?mode=ro")
        } else {
            format!("{uri}?mode=ro&immutable=1")
        },
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    Ok((conn, has_wal, through_log))
}

/// Whether an existing database has an admin user, read as [`check_known`] reads (`None` when
/// that cannot be told; no database or no such table yet is `Some(false)`).
pub(super) fn has_admin_user(path: &std::path::Path) -> Option<bool> {
    if !path.exists() {
        return Some(false);
    }
    let (conn, _, _) = open_to_check(path).ok()?;
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'admin_users')",
            [],
            |r| r.get(0),
        )
        .ok()?;
    if !has_table {
        return Some(false);
    }
    conn.query_row("SELECT EXISTS (SELECT 1 FROM admin_users)", [], |r| {
        r.get(0)
    })
    .ok()
}

/// The merchants the database holds, each id with its stored settings (None when they cannot
/// be read, or there is no file yet). Reads only; the table is there in every schema.
pub(super) fn stored_merchants(path: &std::path::Path) -> Option<Vec<(String, String)>> {
    if !path.exists() {
        return None;
    }
    let (conn, _, _) = open_to_check(path).ok()?;
    let mut stmt = conn
        .prepare("SELECT id, settings FROM merchants ORDER BY id")
        .ok()?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ok()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ok();
    rows
}

/// What `payhost check-config` can tell of an existing database without changing it: opened
/// read-only, its schema must be one this payhost knows (a newer one is refused at start) and
/// readable (a damaged file fails here, not at start). Ok(Some(note)): an older schema, which
/// `serve` will migrate.
pub(super) fn check_known(
    path: &std::path::Path,
    thorough: bool,
) -> std::result::Result<Option<String>, String> {
    let shown = path.display();
    let unreadable = |e: rusqlite::Error| {
        format!("database: cannot read {shown} ({e}): the file is damaged, or a running payhost was writing it as it was read (check again)")
    };
    let (conn, has_wal, through_log) =
        open_to_check(path).map_err(|e| format!("database: cannot open {shown} ({e})"))?;
    let has_table: bool = match conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    ) {
        Ok(has) => has,
        // A log without its index: the main file alone may be what a cut-short checkpoint
        // left, which SQLite's own open recovers from the log. Not called damaged here.
        Err(_) if has_wal && !through_log => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    if !has_table {
        return Ok(None);
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
    // A log without its index was not read (see above): the main file alone may be what a
    // cut-short checkpoint left, which SQLite's own open repairs from the log; not judged.
    if thorough && (through_log || !has_wal) {
        let first: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(unreadable)?;
        if first != "ok" {
            return Err(format!(
                "database: {shown} is damaged ({first}): restore the last backup (README, \"Deployment: backup and restore\"); if the disk reported errors, check it first"
            ));
        }
    }
    Ok(crate::store::upgrade_note(
        current,
        MIGRATIONS.len(),
        crate::store::BACKUP_SQLITE,
    ))
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

    /// Version 7 makes a refund's number unique per trade: a database of version 6 keeps its
    /// refunds and their ids; afterwards two trades' refunds reported under one number are both
    /// kept, while a number payhost issued stays unique per merchant.
    #[test]
    fn refund_numbers_become_unique_per_trade_and_keep_their_rows() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            .unwrap();
        for (i, sql) in MIGRATIONS.iter().enumerate().take(6) {
            c.execute_batch(sql).unwrap();
            c.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 'x')",
                [i as i64 + 1],
            )
            .unwrap();
        }
        // A command other than serve leaves it as it is (an older payhost may be serving it).
        let refused = migrate(&c, crate::store::Upgrade::Refuse).unwrap_err();
        assert!(
            refused.to_string().contains(&format!(
                "schema is version 6 and this payhost's is {}",
                MIGRATIONS.len()
            )) && refused.to_string().contains("payhost backup"),
            "{refused}"
        );
        let version: i64 = c
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, 6);
        let insert = |id: Option<i64>, no: &str, req: &str, by: &str| {
            c.execute(
                "INSERT INTO refunds (id, merchant_id, out_trade_no, request_no, amount_fen, reason, started_by, status, created_at)
                 VALUES (?1, 'm', ?2, ?3, 100, '', ?4, 'SUCCESS', 'x')",
                params![id, no, req, by],
            )
        };
        insert(Some(41), "or1", "R1", "gateway").unwrap();
        assert!(
            insert(None, "or2", "R1", "gateway").is_err(),
            "version 6: one per merchant"
        );
        // A removed merchant's refunds went with it: their ids are not handed out again.
        insert(Some(90), "gone", "G1", "gateway").unwrap();
        c.execute("DELETE FROM refunds WHERE id = 90", []).unwrap();
        migrate(&c, crate::store::Upgrade::Apply).unwrap();
        let kept: (i64, String) = c
            .query_row(
                "SELECT id, out_trade_no FROM refunds WHERE request_no = 'R1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, (41, "or1".to_owned()));
        insert(None, "or2", "R1", "gateway").unwrap();
        assert!(
            insert(None, "or2", "R1", "gateway").is_err(),
            "one per trade"
        );
        let next: i64 = c
            .query_row("SELECT MAX(id) FROM refunds", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, 91, "ids go on from where they were");
        insert(None, "or3", "2026120500000001", "admin:alice").unwrap();
        assert!(
            insert(None, "or4", "2026120500000001", "api:operator").is_err(),
            "a number payhost issued stays unique per merchant"
        );
    }

    #[test]
    fn the_check_reads_the_schema_version_and_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("payhost-check-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("payhost.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
            migrate(&c, crate::store::Upgrade::Apply).unwrap();
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
        assert_eq!(check_known(&db, true), Ok(None));
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
        let newer = check_known(&db, true).unwrap_err();
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
        let newer_too = check_known(&odd.join("payhost.db"), true).unwrap_err();
        assert!(newer_too.contains("version 99"), "{newer_too}");
        let damaged = check_known(&broken, true).unwrap_err();
        assert!(
            damaged.contains("broken.db") && damaged.contains("damaged"),
            "{damaged}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file whose header is whole but whose pages are not: the thorough check (check-config)
    /// reads every page and says what to do; serve's quick one reads the schema only.
    #[test]
    fn damaged_pages_are_found_by_the_thorough_check() {
        let dir = std::env::temp_dir().join(format!("payhost-check-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("payhost.db");
        {
            let c = Connection::open(&db).unwrap();
            migrate(&c, crate::store::Upgrade::Apply).unwrap();
            c.execute_batch("CREATE TABLE filler (b TEXT);").unwrap();
            for _ in 0..400 {
                c.execute("INSERT INTO filler VALUES (?1)", [&"x".repeat(2000)])
                    .unwrap();
            }
        }
        let mut bytes = std::fs::read(&db).unwrap();
        assert!(bytes.len() > 120 * 4096, "{}", bytes.len());
        for (i, b) in bytes[100 * 4096..110 * 4096].iter_mut().enumerate() {
            *b = (i * 131 % 251) as u8;
        }
        std::fs::write(&db, &bytes).unwrap();
        assert_eq!(check_known(&db, false), Ok(None));
        let damaged = check_known(&db, true).unwrap_err();
        assert!(
            damaged.contains("is damaged") && damaged.contains("restore the last backup"),
            "{damaged}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stop during a checkpoint leaves the main file half old, half new, and the log beside
    /// it whole: SQLite reads the two together, and so must the check (it called such a file
    /// damaged, and `payhost serve` refused to start).
    #[test]
    fn a_file_a_checkpoint_was_cut_short_in_is_read_through_its_log() {
        let dir = std::env::temp_dir().join(format!("payhost-check-wal-{}", std::process::id()));
        let live = dir.join("live");
        let left = dir.join("left");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&left).unwrap();
        let db = live.join("payhost.db");
        let with = |p: &std::path::Path, s: &str| {
            let mut o = p.as_os_str().to_owned();
            o.push(s);
            std::path::PathBuf::from(o)
        };
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
            migrate(&c, crate::store::Upgrade::Apply).unwrap();
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        }
        let old_main = std::fs::read(&db).unwrap();
        let c = Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA wal_autocheckpoint = 0;").unwrap();
        for i in 0..60 {
            c.execute_batch(&format!(
                "CREATE TABLE t{i} (a TEXT, b TEXT, c TEXT, d TEXT);"
            ))
            .unwrap();
        }
        let log = std::fs::read(with(&db, "-wal")).unwrap();
        let index = std::fs::read(with(&db, "-shm")).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(PASSIVE);").unwrap();
        let new_main = std::fs::read(&db).unwrap();
        drop(c);
        // The new first page (the schema's root) over the old rest: what a checkpoint stopped
        // after its first page leaves.
        let cut = left.join("payhost.db");
        let mut half = new_main[..4096].to_vec();
        half.extend_from_slice(&old_main[4096..]);
        std::fs::write(&cut, &half).unwrap();
        std::fs::write(with(&cut, "-wal"), &log).unwrap();
        std::fs::write(with(&cut, "-shm"), &index).unwrap();
        let immutable = Connection::open_with_flags(
            format!("{}?mode=ro&immutable=1", file_uri(&cut)),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        assert!(
            immutable
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r
                    .get::<_, i64>(0))
                .is_err(),
            "the main file alone must be unreadable for this test to mean anything"
        );
        assert_eq!(check_known(&cut, true), Ok(None));
        // Without the log's index, the check cannot read the log without making one: it leaves
        // the judgement to SQLite's own open, and makes no file.
        std::fs::remove_file(with(&cut, "-shm")).unwrap();
        assert_eq!(check_known(&cut, true), Ok(None));
        assert!(!with(&cut, "-shm").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
