//! Trades to ask the provider about soon, off the caller's path: a refund that ended FAILED may
//! have been refused because its trade was refunded in full or closed meanwhile in the
//! provider's own back office (the open platform notifies no full refund, [OPENAPI §6.6]), and
//! such a refund's report that came while ours was pending was held, not counted. One trade
//! query ([`App::sync_payment`], as the admin's Sync) counts it. Queued here so the refund's
//! caller (the API, the admin, a notification, the recovery sweep) is answered without waiting
//! for it; a worker of the server asks, one trade at a time.
//!
//! Per process and in memory: a trade lost with the process, or dropped when the queue is full,
//! is what it was before (its Sync asks, and the provider's next message counts).

use crate::service::App;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The most trades waiting to be asked about.
const MAX_WAITING: usize = 1_000;

/// The queue: (merchant, out_trade_no), each once.
#[derive(Default)]
pub struct TradeQueries {
    waiting: Mutex<VecDeque<(String, String)>>,
    wake: Notify,
}

impl TradeQueries {
    /// Queues order `out_trade_no`'s trade (once: already waiting, it is not queued again).
    pub fn ask(&self, merchant: &str, out_trade_no: &str) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting
            .iter()
            .any(|(m, no)| m == merchant && no == out_trade_no)
        {
            return;
        }
        if waiting.len() >= MAX_WAITING {
            static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(60_000);
            if let Some(unsaid) = SAY.allow() {
                tracing::warn!(merchant, out_trade_no = %crate::log_limit::clean(out_trade_no), unsaid, "too many trades waiting to be queried; this one is not (its Sync asks)");
            }
            return;
        }
        waiting.push_back((merchant.to_owned(), out_trade_no.to_owned()));
        drop(waiting);
        self.wake.notify_one();
    }

    fn next(&self) -> Option<(String, String)> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Asks about each queued trade in turn until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        while let Some((merchant, no)) = app.trade_queries.next() {
            if *stop.borrow() {
                return;
            }
            match app.sync_payment(&merchant, &no).await {
                Ok(synced) => {
                    tracing::info!(merchant = %merchant, out_trade_no = %crate::log_limit::clean(&no), outcome = %synced.outcome, status = %synced.status, "the trade of a failed refund queried")
                }
                Err(e) => {
                    tracing::warn!(merchant = %merchant, out_trade_no = %crate::log_limit::clean(&no), code = %e.code, error = %crate::log_limit::clean(&e.message), "cannot query the trade of a failed refund; its Sync asks again")
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = app.trade_queries.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trade_waits_once_and_the_queue_is_bounded() {
        let q = TradeQueries::default();
        q.ask("m", "o1");
        q.ask("m", "o1");
        q.ask("n", "o1");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next(), Some(("m".into(), "o1".into())));
        for i in 0..MAX_WAITING + 10 {
            q.ask("m", &format!("x{i}"));
        }
        assert_eq!(q.len(), MAX_WAITING);
    }
}
