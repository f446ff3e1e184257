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
pub mod backup;
mod ledger;
mod merchants;
mod migrate;
mod notifications;
mod payments;
mod readers;
pub mod serve_lock;
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
    /// The database's folder: its file system's free space is part of readiness after a
    /// write failed for want of room.
    folder: std::path::PathBuf,
    /// The database file (the checkpoint at a clean stop opens it).
    file: std::path::PathBuf,
    /// That file's device and inode when it was opened: readiness sees a restore made while
    /// payhost runs at once, not only at the next write.
    opened: Option<(u64, u64)>,
}

/// Free space below which a store whose last write failed stays not ready: the WAL alone grows
/// by up to about 4 MiB between checkpoints (1,000 pages).
const READY_FREE_BYTES: u64 = 8 << 20;

/// The folder of the database file `path` (its -wal, -shm and lock files go there too).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// What to say of a file system with `free` bytes left, when that is too little for the
/// database and its log to grow.
fn room_problem(folder: &Path, free: Option<u64>) -> Option<String> {
    let free = free.filter(|f| *f < READY_FREE_BYTES)?;
    Some(format!(
        "database: the file system of {} has {} KiB free (payhost needs room for the database and its write-ahead log): make room, then start payhost again",
        folder.display(),
        free / 1024
    ))
}

/// The bytes an unprivileged user may still write on the file system of `folder` (statvfs(3));
/// None when it cannot be told.
fn free_bytes(folder: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs(3) fills `st` from a NUL-terminated path that outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    // fsblkcnt_t and c_ulong are 64 bits here, narrower on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.f_bavail as u64, st.f_frsize as u64);
    Some(blocks.saturating_mul(size))
}

/// Whether payhost could open `path`, changing nothing: an existing file is an SQLite database
/// (its header read, the file not opened as a database, so no journal file appears) this user may
/// read and write; a missing one can be created (its folder exists and is writable: the journal
/// files go there too).
pub fn check_file(path: &Path) -> std::result::Result<(), String> {
    check_file_with(path, false).map(drop)
}

/// Whether the database at `path` has an admin user ([`migrate::has_admin_user`]).
pub fn has_admin_user(path: &Path) -> Option<bool> {
    migrate::has_admin_user(path)
}

/// The merchants the database holds with their stored settings, reading only (`payhost
/// check-config`).
pub fn stored_merchants(path: &Path) -> Option<Vec<(String, String)>> {
    migrate::stored_merchants(path)
}

/// [`check_file`], and every page of an existing database read (`PRAGMA quick_check`):
/// `payhost check-config`, the check of a restored file. A damaged page passed the header check,
/// and `serve` started, failing only where the page was read. Ok(Some(note)): what `serve` will
/// do to it (an older schema migrated).
pub fn check_file_thoroughly(path: &Path) -> std::result::Result<Option<String>, String> {
    check_file_with(path, true)
}

fn check_file_with(path: &Path, thorough: bool) -> std::result::Result<Option<String>, String> {
    let shown = path.display();
    let dir = folder_of(path);
    if !dir.is_dir() {
        return Err(format!(
            "database: the folder {} of {shown} does not exist (payhost creates the file, not its folder)",
            dir.display()
        ));
    }
    if !may(dir, libc::W_OK | libc::X_OK) {
        return Err(format!(
            "database: this user cannot write in {} (the database {shown} and its journal go there)",
            dir.display()
        ));
    }
    if thorough {
        if let Some(why) = room_problem(dir, free_bytes(dir)) {
            return Err(why);
        }
    }
    if !path.exists() {
        // Right for a first start; wrong after a restore to another name or a typo, where
        // `payhost serve` would start on an empty database: said, not refused.
        return Ok(thorough.then(|| {
            format!(
                "note: there is no database at {shown} yet: payhost serve will make a new, empty one there (a restored backup must be at exactly this path)"
            )
        }));
    }
    if !may(path, libc::R_OK | libc::W_OK) {
        return Err(format!("database: this user cannot read and write {shown}"));
    }
    let mut header = Vec::with_capacity(16);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path)
                .map_err(|e| format!("database: cannot open {shown} ({e})"))?,
            16,
        ),
        &mut header,
    )
    .map_err(|e| format!("database: cannot read {shown} ({e})"))?;
    // An empty file is an empty database to SQLite.
    if header.is_empty() {
        Ok(None)
    } else if header == b"SQLite format 3\0" {
        migrate::check_known(path, thorough)
    } else {
        Err(format!("database: {shown} is not an SQLite database"))
    }
}

/// access(2): whether this process's user may use `path` as `mode` says.
fn may(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: access(2) reads a NUL-terminated path that outlives the call and changes nothing.
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .is_ok_and(|p| unsafe { libc::access(p.as_ptr(), mode) } == 0)
}

impl SqliteStore {
    /// Opens (creating if need be) and migrates the database, and starts its writer thread. Needs
    /// no async runtime; its calls do.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, crate::store::Upgrade::Apply)
    }

    /// [`SqliteStore::open`], an older schema migrated or refused as `upgrade` says.
    pub fn open_with(path: &Path, upgrade: crate::store::Upgrade) -> Result<SqliteStore> {
        // SQLite says a full disk as "disk I/O error" (it could not grow the -shm file) or
        // "database or disk is full": the file system's room is said beside it.
        Self::open_here(path, upgrade).map_err(|e| {
            let folder = folder_of(path);
            match room_problem(folder, free_bytes(folder)) {
                Some(why) => e.context(why),
                None => e,
            }
        })
    }

    fn open_here(path: &Path, upgrade: crate::store::Upgrade) -> Result<SqliteStore> {
        let open = || {
            Connection::open(path)
                .with_context(|| format!("cannot open the database {}", path.display()))
        };
        // Its mode before this open: a file SQLite creates now starts with the umask's.
        #[cfg(unix)]
        let before = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777)
        };
        let conn = open()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The database holds merchant keys: readable by the owner only (said when an
            // existing one was not).
            if std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).is_ok() {
                match before {
                    Ok(mode) if mode & 0o077 != 0 => tracing::warn!(
                        "{} was readable by other users (mode {mode:o}) and holds merchant keys: made it 0600",
                        path.display()
                    ),
                    _ => {}
                }
            }
        }
        configure(&conn).with_context(|| format!("the database {}", path.display()))?;
        migrate::migrate(&conn, upgrade)
            .with_context(|| format!("the database {}", path.display()))?;
        let readers = readers::Readers::open(|| {
            let r = open()?;
            configure(&r)?;
            Ok(r)
        })?;
        Ok(SqliteStore {
            opened: writer::identity(path),
            writer: writer::Writer::start(conn, path)?,
            readers: Arc::new(readers),
            folder: folder_of(path).to_path_buf(),
            file: path.to_path_buf(),
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
    /// A TRUNCATE checkpoint on a connection of its own, once the writer is idle: every commit
    /// copied from the `-wal` into the database file, and the `-wal` emptied. SQLite does the
    /// same when the last connection closes, but the process may end before its threads close
    /// theirs, and the README's restore (and a `cp` after stopping) count on the file alone.
    async fn flush_for_stop(&self) -> Result<()> {
        if self.writer.db_moved() {
            return Ok(()); // the file at the path is not this store's
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let c = rusqlite::Connection::open(&file)?;
            c.busy_timeout(std::time::Duration::from_secs(2))?;
            let (busy, frames, copied): (i64, i64, i64) =
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            if busy != 0 || copied < frames {
                anyhow::bail!(
                    "the database's -wal could not be copied into the database file at the stop ({copied} of {frames} pages; a reader held it): it stays beside payhost.db, which needs it"
                );
            }
            Ok(())
        })
        .await?
    }

    async fn ready(&self) -> Result<()> {
        // The writer stops writing once it sees the file replaced, at its next commit; a quiet
        // night would say nothing until then.
        if self.writer.db_moved()
            || (self.opened.is_some() && writer::identity(&self.file) != self.opened)
        {
            anyhow::bail!(
                "the database file was moved or replaced while payhost runs (a backup restored while payhost was running?): nothing more is written to it; stop payhost and start it again"
            );
        }
        if self.writer.wal_lost() {
            anyhow::bail!(
                "the database's -wal file was deleted or replaced while payhost runs: commits are copied into the database file one by one; restart payhost gracefully (SIGTERM, never kill -9)"
            );
        }
        if self.writer.failing() {
            // The last commit failed (a full disk): ready again only once there is room. A
            // row rewritten as it was needs none (it committed on a full disk, and the store
            // said ready between every failed insert): the file system must have room, and the
            // probe commits a write that takes new pages (a row grown by 256 KiB, then given
            // back its value in the same transaction: nothing changes).
            if let Some(free) = free_bytes(&self.folder).filter(|f| *f < READY_FREE_BYTES) {
                anyhow::bail!(
                    "the database cannot commit: its file system ({}) has {} KiB free",
                    self.folder.display(),
                    free / 1024
                );
            }
            self.write(|conn| {
                let was: String = conn.query_row(
                    "SELECT applied_at FROM schema_migrations WHERE version = 1",
                    [],
                    |r| r.get(0),
                )?;
                let mut grown = was.clone();
                grown.push_str(&" ".repeat(256 * 1024));
                let set = "UPDATE schema_migrations SET applied_at = ?1 WHERE version = 1";
                conn.execute(set, [&grown])?;
                conn.execute(set, [&was])?;
                Ok(())
            })
            .await
            .context("the database cannot commit")?;
        }
        self.pending_webhooks().await.map(|_| ())
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if mode != "wal" {
        bail!("the database cannot use WAL journaling (journal_mode is {mode})");
    }
    // A reader that holds the WAL back (a long `sqlite3` session beside payhost) lets it grow;
    // once it is let go, the next reset shrinks the file back to this (64 MiB), instead of
    // keeping its peak on the disk for good.
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=67108864;",
    )?;
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
        finished_at: r.get("finished_at")?,
    })
}
