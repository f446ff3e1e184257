//! Trades to ask the provider about soon, off the caller's path: a refund that ended FAILED may
//! have been refused because its trade was refunded in full or closed meanwhile in the
//! provider's own back office (the open platform notifies no full refund, [OPENAPI §6.6]), and
//! such a refund's report that came while ours was pending was held, not counted. One trade
//! query ([`App::sync_payment`], as the admin's Sync) counts it. Queued here so the refund's
//! caller (the API, the admin, a notification, the recovery sweep) is answered without waiting
//! for it; a worker of the server asks, one trade at a time.
//!
//! Per process, in memory and best effort: a trade lost with the process, or dropped when the
//! queue (or its merchant's share) is full, is as it was before (its Sync asks, and the
//! provider's next message counts). Off with `[recovery] enabled = false`, as every query
//! payhost makes of its own accord.

use crate::service::App;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The most trades waiting to be asked about.
const MAX_WAITING: usize = 1_000;
/// The most of them one merchant may hold (one merchant's many failed refunds never keep the
/// others' trades out).
const MAX_PER_MERCHANT: usize = 100;
/// The longest one trade's query may take (it asks about the payment's pending refunds first,
/// each a call of the component's own timeout): past it, the next trade's turn.
const MAX_QUERY: std::time::Duration = std::time::Duration::from_secs(120);
/// How long the query under way may go on once payhost is stopping.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
        let merchants = waiting.iter().filter(|(m, _)| m == merchant).count();
        if waiting.len() >= MAX_WAITING || merchants >= MAX_PER_MERCHANT {
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
            // Its own task: a panic is this trade's, never the queue's end.
            let mut job = tokio::spawn({
                let (app, merchant, no) = (app.clone(), merchant.clone(), no.clone());
                async move { app.sync_payment(&merchant, &no).await }
            });
            let no = crate::log_limit::clean(&no);
            // At the stop, the query under way gets a few seconds more, then is cut short (its
            // refunds stay PENDING under their numbers, asked about again).
            let ended = tokio::select! {
                ended = tokio::time::timeout(MAX_QUERY, &mut job) => ended,
                _ = stop.changed() => tokio::time::timeout(STOP_GRACE, &mut job).await,
            };
            match ended {
                Ok(Ok(Ok(synced))) => {
                    tracing::info!(merchant = %merchant, out_trade_no = %no, outcome = %synced.outcome, status = %synced.status, "the trade of a failed refund queried")
                }
                Ok(Ok(Err(e))) => {
                    tracing::warn!(merchant = %merchant, out_trade_no = %no, code = %e.code, error = %crate::log_limit::clean(&e.message), "cannot query the trade of a failed refund; its Sync asks again")
                }
                Ok(Err(e)) => {
                    tracing::error!(merchant = %merchant, out_trade_no = %no, error = %e, "the query of a failed refund's trade failed; its Sync asks again")
                }
                Err(_) => {
                    job.abort();
                    tracing::warn!(merchant = %merchant, out_trade_no = %no, after_s = MAX_QUERY.as_secs(), "the query of a failed refund's trade took too long; its Sync asks again")
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
        for i in 0..MAX_PER_MERCHANT + 10 {
            q.ask("m", &format!("x{i}"));
        }
        assert_eq!(
            q.len(),
            1 + MAX_PER_MERCHANT,
            "one merchant holds at most its share"
        );
        for i in 0..MAX_WAITING + 10 {
            q.ask(&format!("m{i}"), "o");
        }
        assert_eq!(q.len(), MAX_WAITING);
    }
}
