//! SQLite's read connections: WAL lets them read while the writer commits. A read runs on tokio's
//! blocking pool, so a worker thread of the runtime never waits for SQLite.

use anyhow::{anyhow, Result};
use rusqlite::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Read connections.
const READERS: usize = 4;

pub(super) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub(super) fn open(open: impl Fn() -> Result<Connection>) -> Result<Readers> {
        let conns = (0..READERS)
            .map(|_| open().map(Mutex::new))
            .collect::<Result<_>>()?;
        Ok(Readers {
            conns,
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
}
