//! SQLite's writer: one thread owns the write connection and commits in groups. It takes a job
//! from its tokio channel, then every other job already queued (up to [`MAX_GROUP`]), runs each in
//! its own savepoint inside one `BEGIN IMMEDIATE … COMMIT` (a job that fails rolls back only its
//! savepoint), commits once — one fsync for the group — and only then answers each caller on its
//! oneshot channel. A caller's write is durable when its call returns; under load many writes
//! share one fsync instead of queueing for one each.
//!
//! A thread rather than a task of the runtime: SQLite's calls block (the fsync of a commit most
//! of all), and a runtime worker must never block. Callers only await.

use anyhow::{anyhow, Context, Result};
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most writes one commit carries.
const MAX_GROUP: usize = 256;
/// Writes that may wait for the writer before callers wait to queue theirs.
const QUEUE: usize = 4096;

/// Called with the group's commit result once the group is committed (or not).
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One write: runs on the writer's connection inside the group transaction (or, given None, does
/// not run at all); says whether it succeeded (else its savepoint is rolled back) and how to
/// answer its caller.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
    commits: Arc<AtomicUsize>,
    health: Arc<Health>,
}

/// Whether the database can be written, for readiness.
#[derive(Default)]
struct Health {
    /// The last group could not begin or commit, or one of its jobs failed for want of storage
    /// (a full disk, a lost file): readiness says so until a group commits cleanly again.
    failing: AtomicBool,
    /// A job of the group under way failed for want of storage (set by the job, read and
    /// cleared when its group ends: a group that commits nothing else still commits).
    storage_error: AtomicBool,
    /// The database's `-wal` file was deleted or replaced while payhost runs ([`WalGuard`]):
    /// readiness fails until a restart.
    wal_lost: AtomicBool,
    /// The database file itself was moved or replaced while payhost runs (a restore while it
    /// runs): nothing more is written, readiness fails until a restart.
    db_moved: AtomicBool,
}

impl Writer {
    /// `path`: the database as configured (a symbolic link is followed at each check: a link
    /// re-pointed at a restored copy is a replaced database, as readiness sees it).
    pub(super) fn start(conn: Connection, path: &std::path::Path) -> Result<Writer> {
        let path = path.to_path_buf();
        let (queue, jobs) = mpsc::channel::<Job>(QUEUE);
        let commits = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Health::default());
        let (counter, health_of_loop) = (commits.clone(), health.clone());
        std::thread::Builder::new()
            .name("payhost-store-writer".into())
            .spawn(move || write_loop(conn, &path, jobs, counter, health_of_loop))
            .context("cannot start the store's writer thread")?;
        Ok(Writer {
            queue,
            commits,
            health,
        })
    }

    pub(super) fn commit_count(&self) -> usize {
        self.commits.load(Ordering::Relaxed)
    }

    /// Whether the last group could not be committed cleanly.
    pub(super) fn failing(&self) -> bool {
        self.health.failing.load(Ordering::Relaxed)
    }

    pub(super) fn wal_lost(&self) -> bool {
        self.health.wal_lost.load(Ordering::Relaxed)
    }

    pub(super) fn db_moved(&self) -> bool {
        self.health.db_moved.load(Ordering::Relaxed)
    }

    /// Runs `f` on the writer's connection in the next group; returns once the group is durable.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel::<Result<R>>();
        let health = self.health.clone();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => f(conn),
                None => Err(anyhow::Error::new(crate::store::Unavailable)
                    .context("the store could not start a transaction")),
            };
            if result.as_ref().err().is_some_and(is_storage_failure) {
                health.storage_error.store(true, Ordering::Relaxed);
            }
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    // BEGIN or COMMIT refused, or the group rolled back by SQLite: a full
                    // disk, a lock held elsewhere, an I/O error (nothing the request asked).
                    Err(e) => Err(anyhow::Error::new(crate::store::Unavailable)
                        .context(format!("the store could not commit: {e}"))),
                });
            });
            (ok, finish)
        });
        let stopped = || anyhow!("the store's writer thread has stopped");
        self.queue.send(job).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Whether a job failed because the database cannot be written (a full disk, an I/O error, a
/// file gone read-only), not because of what it asked.
fn is_storage_failure(e: &anyhow::Error) -> bool {
    use rusqlite::ErrorCode as C;
    e.chain()
        .filter_map(|c| c.downcast_ref::<rusqlite::Error>())
        .filter_map(rusqlite::Error::sqlite_error_code)
        .any(|code| {
            matches!(
                code,
                C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::CannotOpen | C::DatabaseCorrupt
            )
        })
}

/// Ends when the store is dropped (the queue closes).
fn write_loop(
    conn: Connection,
    path: &std::path::Path,
    mut queue: mpsc::Receiver<Job>,
    commits: Arc<AtomicUsize>,
    health: Arc<Health>,
) {
    let mut wal = WalGuard::new(&conn, path);
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // A commit of an earlier group is still only in a deleted -wal file: nothing more is
        // written (and so nothing acknowledged, a duplicate's record included) until it is
        // copied into the database file.
        let behind = wal.catch_up(&conn).err();
        if let Some(e) = behind.or_else(|| {
            conn.execute_batch("BEGIN IMMEDIATE")
                .err()
                .map(|e| e.to_string())
        }) {
            health.failing.store(true, Ordering::Relaxed);
            for job in group {
                // Not run: answered with the error, the database untouched.
                let (_, finish) = job(None);
                finish(Err(e.clone()));
            }
            continue;
        }
        let mut finishes = Vec::with_capacity(group.len());
        // SQLite rolls the whole transaction back itself on some errors (a full disk, an I/O
        // error): every write of the group so far is gone, and a job run after it would commit
        // on its own while its caller is told it failed. The rest of the group is not run.
        let mut lost: Option<String> = None;
        for job in group {
            if lost.is_some() {
                finishes.push(job(None).1);
                continue;
            }
            let savepoint = conn
                .prepare_cached("SAVEPOINT job")
                .and_then(|mut s| s.execute([]));
            let (ok, finish) = job(savepoint.is_ok().then_some(&conn));
            finishes.push(finish);
            if conn.is_autocommit() {
                lost = Some("SQLite rolled the group's transaction back (a full disk, an I/O error or too little memory); nothing of it was written".into());
                continue;
            }
            if savepoint.is_err() {
                continue; // the job never ran
            }
            // A job that succeeded, or a failed one whose writes were taken back.
            let clean = ok
                || conn
                    .prepare_cached("ROLLBACK TO job")
                    .and_then(|mut s| s.execute([]))
                    .is_ok();
            if !clean {
                // The failed job's writes could not be taken back: the group is not committed
                // with them.
                lost = Some("a failed write could not be undone, so its group was rolled back; nothing of it was written".into());
                continue;
            }
            let _ = conn
                .prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]));
        }
        let committed = match lost {
            Some(e) => Err(e),
            None => conn
                .execute_batch("COMMIT")
                .map_err(|e| e.to_string())
                .and_then(|()| wal.check(&conn)),
        };
        let storage_error = health.storage_error.swap(false, Ordering::Relaxed);
        health
            .failing
            .store(committed.is_err() || storage_error, Ordering::Relaxed);
        health.wal_lost.store(wal.lost(), Ordering::Relaxed);
        health.db_moved.store(wal.moved, Ordering::Relaxed);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        } else {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for finish in finishes {
            finish(committed.clone());
        }
    }
}

/// Watches the database's `-wal` file: SQLite commits into the file it opened, so one deleted
/// (or replaced) while payhost runs would take every later commit with it when the process dies
/// (an acknowledged notification lost). Once that is seen, each commit is copied into the
/// database file itself (a checkpoint) before anyone is told it is durable, and readiness fails
/// until payhost is restarted (which makes a new `-wal`). A commit that cannot be copied yet (a
/// reader holds the frames back) is reported as not durable, and nothing more is written until
/// it is: its callers are told to try again (each write payhost makes is idempotent).
///
/// It watches the database file too: one moved away and replaced (a backup restored while payhost
/// runs) would take every later commit into the moved file, acknowledged and then gone from the
/// restored one. Once that is seen, nothing more is written: each write is refused (its callers
/// try again, against the restarted payhost), and readiness fails until a restart.
struct WalGuard {
    path: Option<std::path::PathBuf>,
    /// The file's device and inode, as first seen after a commit.
    seen: Option<(u64, u64)>,
    lost: bool,
    /// A commit is still only in the deleted file.
    behind: bool,
    /// The database file, and its device and inode when opened.
    db: Option<(std::path::PathBuf, (u64, u64))>,
    /// The file at the database's path is not the one open.
    moved: bool,
}

/// What a caller is told once the database file was moved or replaced.
const MOVED: &str = "the database file payhost opened was moved or replaced while payhost runs (a backup restored while payhost was running?): nothing more is written to it; stop payhost and start it again on the file now at its path";

/// What a caller whose commit is only in the deleted `-wal` file is told.
const NOT_COPIED: &str = "the database's -wal file was deleted while payhost runs, and the last commit could not be copied into the database file yet (a reader holds it): it is stored but not safe on disk, so it is not acknowledged; try again";

impl WalGuard {
    fn new(conn: &Connection, configured: &std::path::Path) -> WalGuard {
        // The configured path, not the file SQLite resolved it to: restarted, payhost opens
        // whatever is at that path then.
        let db = conn
            .path()
            .filter(|p| !p.is_empty())
            .and_then(|_| identity(configured).map(|id| (configured.to_path_buf(), id)));
        WalGuard {
            path: conn
                .path()
                .filter(|p| !p.is_empty())
                .map(|p| std::path::PathBuf::from(format!("{p}-wal"))),
            seen: None,
            lost: false,
            behind: false,
            db,
            moved: false,
        }
    }

    /// Whether the file at the database's path is still the one open (one `stat`); once it is
    /// not, it stays so until a restart.
    fn database_in_place(&mut self) -> bool {
        if self.moved {
            return false;
        }
        if let Some((path, opened)) = &self.db {
            if identity(path) != Some(*opened) {
                self.moved = true;
                tracing::error!(
                    database = %path.display(),
                    "{MOVED}"
                );
            }
        }
        !self.moved
    }

    /// After a commit: Ok when it is durable (its `-wal` is the one SQLite writes, or the
    /// commit was copied into the database file).
    fn check(&mut self, conn: &Connection) -> Result<(), String> {
        if !self.database_in_place() {
            // Committed into the moved file: not acknowledged (each write payhost makes is
            // idempotent, so its caller's retry lands in the file at the path, after a restart).
            return Err(MOVED.into());
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.lost {
            match (self.seen, identity(path)) {
                (_, None) => self.lost = true,
                (None, Some(id)) => self.seen = Some(id),
                (Some(seen), Some(id)) => self.lost = seen != id,
            }
            if !self.lost {
                return Ok(());
            }
            tracing::error!(
                wal = %path.display(),
                "the database's -wal file was deleted or replaced while payhost runs: every commit is now copied into the database file before it is acknowledged (slower), and readiness fails. Restart payhost gracefully (SIGTERM, never kill -9) to make a new one; never delete payhost.db-wal or payhost.db-shm"
            );
        }
        self.behind = true;
        self.catch_up(conn)
    }

    /// Before a group, and after each commit once the file is lost: copies what is only in the
    /// deleted file into the database file. A passive checkpoint: it never waits for a reader
    /// (a full one would hold every write for the busy timeout).
    fn catch_up(&mut self, conn: &Connection) -> Result<(), String> {
        if self.moved {
            return Err(MOVED.into());
        }
        if !self.behind {
            return Ok(());
        }
        // (busy, WAL frames, frames checkpointed): durable when nothing is left behind.
        let copied = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match copied {
            Ok((0, frames, done)) if done >= frames => {
                self.behind = false;
                Ok(())
            }
            Ok(_) => Err(NOT_COPIED.into()),
            Err(e) => Err(format!("{NOT_COPIED} ({e})")),
        }
    }

    fn lost(&self) -> bool {
        self.lost
    }
}

/// A file's device and inode.
pub(super) fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
