//! Log lines an outsider or an outage could repeat without end (a refused token, an unreadable
//! outbox polled five times a second) are said at most once per interval, with how many were
//! left unsaid since: the log stays readable and cannot be flooded.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub struct Every {
    interval_ms: i64,
    last_ms: AtomicI64,
    unsaid: AtomicU64,
}

impl Every {
    pub const fn ms(interval_ms: i64) -> Every {
        Every {
            interval_ms,
            last_ms: AtomicI64::new(i64::MIN),
            unsaid: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be said now, `n` being how many were left unsaid before it;
    /// `None` (counted) otherwise.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(crate::store::now_ms())
    }

    fn allow_at(&self, now: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= self.interval_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.unsaid.swap(0, Ordering::Relaxed))
        } else {
            self.unsaid.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Every;

    #[test]
    fn one_line_per_interval_with_the_count_left_unsaid() {
        let every = Every::ms(1000);
        assert_eq!(every.allow_at(10_000), Some(0));
        assert_eq!(every.allow_at(10_001), None);
        assert_eq!(every.allow_at(10_999), None);
        assert_eq!(every.allow_at(11_000), Some(2));
        assert_eq!(every.allow_at(11_500), None);
    }
}
