//! One payment creation at a time per order (merchant, `out_trade_no`) in this process. The check
//! for an existing payment, the provider's create call and the insert run as one, so a second
//! request for the same order waits for the first and then sees its payment (200 for the same
//! amount, 409 for another) instead of racing it to the provider, which refuses the loser as a
//! duplicate of an order the store does not hold yet. Replicas still race each other; there the
//! store's insert decides, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Mutex as OrderLock, OwnedMutexGuard};

/// An order: its merchant and its `out_trade_no`.
type OrderKey = (String, String);

/// The locks of the orders being created now (an entry dies with its last holder or waiter).
#[derive(Default)]
pub struct OrderLocks {
    held: Mutex<HashMap<OrderKey, Weak<OrderLock<()>>>>,
}

impl OrderLocks {
    /// [`lock`](Self::lock) waiting at most `wait`: None past it (the caller goes on unlocked).
    pub async fn lock_within(
        &self,
        merchant: &str,
        out_trade_no: &str,
        wait: std::time::Duration,
    ) -> Option<OwnedMutexGuard<()>> {
        tokio::time::timeout(wait, self.lock(merchant, out_trade_no))
            .await
            .ok()
    }

    /// Waits until no other creation of this order runs here; the order is this caller's until
    /// the guard drops.
    pub async fn lock(&self, merchant: &str, out_trade_no: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            // Those of finished creations go: the map holds only orders in flight.
            held.retain(|_, l| l.strong_count() > 0);
            let key = (merchant.to_owned(), out_trade_no.to_owned());
            match held.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(OrderLock::new(()));
                    held.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_creation_per_order_others_run_and_nothing_is_kept() {
        let locks = Arc::new(OrderLocks::default());
        let first = locks.lock("m1", "o1").await;
        // Another order, or the same number of another merchant: not waited for.
        let other = tokio::time::timeout(Duration::from_millis(100), locks.lock("m1", "o2")).await;
        assert!(other.is_ok());
        let elsewhere =
            tokio::time::timeout(Duration::from_millis(100), locks.lock("m2", "o1")).await;
        assert!(elsewhere.is_ok());
        drop((other, elsewhere));
        // The same order waits until the first is done.
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move {
                let _second = locks.lock("m1", "o1").await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the second runs once the first is done")
            .unwrap();
        // A bounded wait gives up, and the order is still there for its holder.
        let held = locks.lock("m1", "o1").await;
        let waited = locks
            .lock_within("m1", "o1", Duration::from_millis(30))
            .await;
        assert!(waited.is_none());
        drop(held);
        assert!(locks
            .lock_within("m1", "o1", Duration::from_millis(30))
            .await
            .is_some());
        let _next = locks.lock("m9", "o9").await;
        let held = locks.held.lock().unwrap();
        assert_eq!(held.len(), 1, "only the order in flight is kept");
    }
}
