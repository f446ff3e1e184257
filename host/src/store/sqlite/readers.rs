//! SQLite's read connections: WAL lets them read while the writer commits. A read runs on tokio's
//! blocking pool, so a worker thread of the runtime never waits for SQLite; a point read by key
//! ([`Readers::run_here`]) runs where it is awaited when it cannot wait either.

use anyhow::{anyhow, Result};
use rusqlite::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Read connections for the blocking pool.
const READERS: usize = 4;
/// Read connections for point reads run in place (no busy wait: see [`Readers::run_here`]).
const IN_PLACE: usize = 2;

pub(super) struct Readers {
    conns: Vec<Mutex<Connection>>,
    in_place: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub(super) fn open(open: impl Fn() -> Result<Connection>) -> Result<Readers> {
        let conns = (0..READERS)
            .map(|_| open().map(Mutex::new))
            .collect::<Result<_>>()?;
        let in_place = (0..IN_PLACE)
            .map(|_| {
                let c = open()?;
                // Never sleep in the busy handler: a busy answer falls back to the blocking pool.
                c.busy_timeout(std::time::Duration::ZERO)?;
                Ok(Mutex::new(c))
            })
            .collect::<Result<_>>()?;
        Ok(Readers {
            conns,
            in_place,
            next: AtomicUsize::new(0),
        })
    }

    /// A free connection if there is one, else waits for one (blocking: call it off the runtime).
    pub(super) fn get(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Ok(c) = self.conns[(start + i) % READERS].try_lock() {
                return c;
            }
        }
        // A panic while holding the lock cannot leave a transaction open (reads only), so a
        // poisoned lock is safe to keep using.
        self.conns[start % READERS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(super) async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || f(&readers.get()))
            .await
            .map_err(|e| anyhow!("a database read did not finish: {e}"))?
    }

    /// Runs a point read (one row by key, a few microseconds from the page cache) right here when
    /// it cannot wait: on a free in-place connection, whose busy handler never sleeps (a WAL
    /// reader is busy only in rare moments such as the WAL's recovery). Anything that would wait —
    /// every in-place connection taken, or SQLite answering busy — goes to the blocking pool
    /// instead. A notification reads its merchant and its payment this way: two hand-offs to a
    /// blocking thread and back, each costing more than the read, are saved.
    pub(super) async fn run_here<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl Fn(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..IN_PLACE {
            let Ok(conn) = self.in_place[(start + i) % IN_PLACE].try_lock() else {
                continue;
            };
            match f(&conn) {
                Err(e) if is_busy(&e) => break,
                done => return done,
            }
        }
        self.run(f).await
    }
}

fn is_busy(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
