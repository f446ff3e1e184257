//! `payhost backup`: a consistent copy of the live SQLite database, taken with SQLite's online
//! backup API from a read connection, so `payhost serve` keeps running and writing meanwhile.
//!
//! A plain `cp payhost.db` misses every commit still in `payhost.db-wal`; `sqlite3 .backup`
//! leaves the copy readable by everyone, while the `merchants` table holds keys and shop secrets.
//! Here the copy is written to a temporary file in the target's folder created with mode 0600,
//! switched to a rollback journal (a file on its own: opening it creates no `-wal` beside it),
//! fsynced, checked with `PRAGMA integrity_check`, and only then renamed to the target.

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a finished backup holds (the line `payhost backup` prints).
#[derive(Debug, Clone)]
pub struct Summary {
    /// The backup file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows of `payments`.
    pub payments: i64,
    /// The newest payment's `created_at`, if there is any payment.
    pub newest_payment: Option<String>,
}

/// How long a copy may keep meeting a busy or locked source before it gives up.
const BUSY_FOR: Duration = Duration::from_secs(60);

/// The files SQLite keeps beside a database: its journals and the WAL index.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Copies the live database `live` to `to` (see the module's doc). An existing `to` is refused
/// unless `force`; `to` may never be `live` or one of its companion files.
pub fn backup(live: &Path, to: &Path, force: bool) -> Result<Summary> {
    if !live.is_file() {
        bail!(
            "{0} 不存在，没有可备份的数据库（这是 payhost serve 用的配置吗？）/ no database at {0} (nothing to back up; is this the configuration `payhost serve` uses?)",
            live.display()
        );
    }
    if is_live(live, to)? {
        bail!(
            "--to {0}：这是正在使用的数据库或它的 -wal/-shm 文件，请把备份写到别处 / --to {0}: that is the live database or one of its -wal/-shm/-journal/.lock files; write the backup elsewhere",
            to.display()
        );
    }
    if to.is_dir() {
        bail!(
            "--to {0}：这是一个文件夹，请写出备份文件的名字 / --to {0}: is a folder; name the backup file",
            to.display()
        );
    }
    let dir = folder_of(to);
    if !dir.is_dir() {
        bail!(
            "--to {0}：文件夹 {1} 不存在，请先创建 / --to {0}: the folder {1} does not exist; create it first",
            to.display(),
            dir.display()
        );
    }
    let exists = || to.symlink_metadata().is_ok();
    if exists() && !force {
        bail!(
            "--to {0}：文件已存在，换一个文件名或加 --force 覆盖 / --to {0}: the file exists; choose another name or add --force to replace it",
            to.display()
        );
    }
    let name = to
        .file_name()
        .ok_or_else(|| anyhow!("--to {}: names no file", to.display()))?;
    let tmp = Temp(dir.join(format!(
        ".{}.{}-{:08x}.partial",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    )));
    create_private(&tmp.0)?;
    copy_into(live, &tmp.0)?;
    sync_file(&tmp.0)?;
    let (payments, newest_payment) = check(&tmp.0)?;
    // Checked again: a file may have appeared while the copy was made.
    if exists() && !force {
        bail!(
            "--to {}: the file appeared while the backup was made; it is left as it is",
            to.display()
        );
    }
    std::fs::rename(&tmp.0, to)
        .with_context(|| format!("cannot rename {} to {}", tmp.0.display(), to.display()))?;
    tmp.keep();
    // The rename is durable once the folder is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync the folder {}", dir.display()))?;
    let bytes = std::fs::metadata(to)
        .with_context(|| format!("cannot read {}", to.display()))?
        .len();
    Ok(Summary {
        path: to.to_path_buf(),
        bytes,
        payments,
        newest_payment,
    })
}

/// The folder a file is (to be) in.
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `to` is the live database `live` or one of its companion files: by path (symbolic
/// links resolved) and, for a file that exists, by device and inode (a hard link).
fn is_live(live: &Path, to: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let live = std::fs::canonicalize(live)
        .with_context(|| format!("cannot resolve {}", live.display()))?;
    let mut forbidden = vec![live.clone()];
    // `.lock`: the lock file of `payhost serve`.
    forbidden.extend(COMPANIONS.iter().chain(&[".lock"]).map(|c| {
        let mut p = live.clone().into_os_string();
        p.push(c);
        PathBuf::from(p)
    }));
    let target = match std::fs::canonicalize(to) {
        Ok(t) => Some(t),
        // Not there (yet): its folder resolved, then its name.
        Err(_) => std::fs::canonicalize(folder_of(to))
            .ok()
            .zip(to.file_name())
            .map(|(d, n)| d.join(n)),
    };
    if target.is_some_and(|t| forbidden.contains(&t)) {
        return Ok(true);
    }
    let Ok(t) = std::fs::metadata(to) else {
        return Ok(false);
    };
    Ok(forbidden
        .iter()
        .any(|f| std::fs::metadata(f).is_ok_and(|m| m.dev() == t.dev() && m.ino() == t.ino())))
}

/// A temporary file removed (with any journal SQLite left beside it) unless kept.
struct Temp(PathBuf);

impl Temp {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        for c in COMPANIONS {
            let mut p = self.0.clone().into_os_string();
            p.push(c);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates `path`, new and empty, readable and writable by its owner only (SQLite gives its
/// journal files the database file's mode).
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The mode given at creation is already 0600 or less (the umask only removes bits).
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(())
}

/// Copies every page of `live` (the commits in its WAL included) into the empty file `dest`, in
/// one step: one read transaction, so the copy is one consistent snapshot, and a WAL reader
/// never holds up the writer.
fn copy_into(live: &Path, dest: &Path) -> Result<()> {
    let source = Connection::open_with_flags(
        live,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {}", live.display()))?;
    source.busy_timeout(Duration::from_secs(10))?;
    let mut copy = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", dest.display()))?;
    {
        let backup = Backup::new(&source, &mut copy)
            .with_context(|| format!("cannot start copying {}", live.display()))?;
        let deadline = Instant::now() + BUSY_FOR;
        loop {
            match backup
                .step(-1)
                .with_context(|| format!("copying {} into {}", live.display(), dest.display()))?
            {
                StepResult::Done => break,
                StepResult::More => {}
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                _ => bail!(
                    "the database {} stayed busy for {} s; try again",
                    live.display(),
                    BUSY_FOR.as_secs()
                ),
            }
        }
    }
    // The pages carry the live file's WAL mark: a rollback journal makes the copy one file.
    let mode: String = copy.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    if mode != "delete" {
        bail!("cannot give the copy a rollback journal (journal_mode is {mode})");
    }
    copy.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("cannot close {}", dest.display()))?;
    Ok(())
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot fsync {}", path.display()))
}

/// `PRAGMA integrity_check` of the copy, read back from disk; its payments and the newest one's
/// creation time.
fn check(path: &Path) -> Result<(i64, Option<String>)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the copy {}", path.display()))?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if problems != ["ok"] {
        bail!(
            "the copy fails PRAGMA integrity_check (it is removed): {}",
            problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    conn.query_row("SELECT COUNT(*), MAX(created_at) FROM payments", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .context("the copy has no payments table: is this a payhost database?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_db(dir: &Path) -> PathBuf {
        let path = dir.join("payhost.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE payments (out_trade_no TEXT, created_at TEXT);
             INSERT INTO payments VALUES ('a', '2025-01-01T00:00:00Z'), ('b', '2025-01-02T00:00:00Z');",
        )
        .unwrap();
        // Left open: the rows are in the WAL, as while `payhost serve` runs.
        std::mem::forget(conn);
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "payhost-backup-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn copies_the_wal_into_a_private_file_and_refuses_what_it_should() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("copy");
        let live = live_db(&dir);
        assert!(dir.join("payhost.db-wal").exists());
        let to = dir.join("copy.db");
        let s = backup(&live, &to, false).unwrap();
        assert_eq!(s.payments, 2);
        assert_eq!(s.newest_payment.as_deref(), Some("2025-01-02T00:00:00Z"));
        assert_eq!(
            std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dir.join("copy.db-wal").exists());
        // Nothing left behind but the copy.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        let before = std::fs::read(&to).unwrap();
        let again = backup(&live, &to, false).unwrap_err().to_string();
        assert!(again.contains("--force"), "{again}");
        assert_eq!(std::fs::read(&to).unwrap(), before);
        backup(&live, &to, true).unwrap();

        for name in [
            "payhost.db",
            "payhost.db-wal",
            "payhost.db-shm",
            "./payhost.db",
        ] {
            let e = backup(&live, &dir.join(name), true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("live database"), "{name}: {e}");
        }
        std::os::unix::fs::symlink(&live, dir.join("link.db")).unwrap();
        let e = backup(&live, &dir.join("link.db"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("live database"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
