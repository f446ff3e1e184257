//! Lost-notify recovery (掉单补偿): payments still waiting some time after they were created are
//! asked about with the provider's trade query ([`App::sync_payment`]), on a schedule with
//! doubling gaps, until they are paid, closed or too old (`[recovery]` in payhost.toml). A paid
//! trade is applied exactly as a notification would be, so the shop gets its webhook once.
//!
//! Refunds whose answer is missing (lost, not understood, or "still being processed") are asked
//! about the same way ([`App::resolve_refund`]: the refund query, then the same request again
//! under its number), from `refund_after_s` (default 10 s) after they were started, so a refund never waits
//! for a notification that may not come ([OPENAPI §7.5], [OPENAPI §6.6]). A legacy refund that
//! waits for the seller has its trade queried instead, from `seller_refund_after_s`, in case
//! its batch notification was lost.
//!
//! The schedule is per process: with several replicas each may query the same payment; the
//! store's notify dedupe keeps the effect single, and the provider refunds a request number once.

use crate::service::App;
use crate::store::{format_unix, now_ms};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The longest gap between two queries of one payment.
const MAX_GAP_S: u64 = 6 * 3_600;
/// Payments looked at per round.
const BATCH: u32 = 200;

/// When a payment is next due, and how many times it was asked about.
#[derive(Debug, Clone, Copy)]
struct Due {
    at_s: u64,
    attempts: u32,
}

/// Runs until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let cfg = app.config.recovery.clone();
    if !cfg.enabled {
        return;
    }
    let mut payments = PaymentSweep::default();
    let mut refunds = RefundSweep::default();
    // Rounds come often enough for short test schedules, at most every 10 s.
    let tick = Duration::from_secs(cfg.interval_s.clamp(1, 10));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if *stop.borrow() {
            return;
        }
        round(&app, &mut payments).await;
        refund_round(&app, &mut refunds).await;
    }
}

/// The gap before asking again, after `attempts` askings.
fn gap_after(interval_s: u64, attempts: u32) -> u64 {
    interval_s
        .saturating_mul(1u64 << attempts.min(20))
        .min(MAX_GAP_S)
}

/// The refund sweep's schedule, and where its next page starts: the pending refunds are read a
/// page at a time by id, so refunds that stay pending (nothing to ask, or held) never keep newer
/// ones from being asked about. A pending refund is asked about however old it is: its amount
/// is held until it ends.
#[derive(Default)]
struct RefundSweep {
    due: HashMap<(String, i64), Due>,
    after_id: i64,
}

async fn refund_round(app: &Arc<App>, sweep: &mut RefundSweep) {
    let cfg = &app.config.recovery;
    let now_s = (now_ms() / 1000) as u64;
    let before = format_unix(now_s.saturating_sub(cfg.refund_after_s));
    let pending = match app
        .store
        .pending_refunds(sweep.after_id, &before, BATCH)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "recovery: cannot list pending refunds");
            return;
        }
    };
    // This page's id range: what the schedule holds there and the page lacks has ended.
    let full = pending.len() == BATCH as usize;
    // A page that is not full ends the ids: the schedule's entries above it have ended too.
    let (from, to) = match pending.last() {
        Some(r) if full => (sweep.after_id, r.id),
        _ => (sweep.after_id, i64::MAX),
    };
    sweep.after_id = if full { to } else { 0 };
    let keys: Vec<(String, i64)> = pending
        .iter()
        .map(|r| (r.merchant_id.clone(), r.id))
        .collect();
    sweep
        .due
        .retain(|k, _| k.1 <= from || k.1 > to || keys.contains(k));
    let schedule = &mut sweep.due;
    for (refund, key) in pending.iter().zip(keys) {
        if refund.confirm_url.is_some() {
            seller_refund(app, schedule, refund, key, now_s).await;
            continue;
        }
        let due = *schedule.entry(key.clone()).or_insert(Due {
            at_s: now_s,
            attempts: 0,
        });
        if due.at_s > now_s {
            continue;
        }
        match app.resolve_refund(&refund.merchant_id, refund).await {
            Ok(true) => {
                let now = app.store.refund(&refund.merchant_id, refund.id).await;
                if let Ok(Some(r)) = &now {
                    if r.status != crate::domain::refunds::PENDING {
                        tracing::info!(merchant = %refund.merchant_id, out_trade_no = %refund.out_trade_no, refund = refund.id, status = %r.status, "recovery: the provider settled a pending refund");
                        schedule.remove(&key);
                        app.query_trade_if_failed(&refund.merchant_id, r).await;
                        continue;
                    }
                }
            }
            // Nothing to ask (a component without a refund query): not asked again.
            Ok(false) => {
                schedule.insert(
                    key,
                    Due {
                        at_s: u64::MAX,
                        attempts: due.attempts,
                    },
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(merchant = %refund.merchant_id, out_trade_no = %refund.out_trade_no, refund = refund.id, code = %e.code, error = %crate::log_limit::clean(&e.message), "recovery: cannot ask about a pending refund; trying later")
            }
        }
        schedule.insert(
            key,
            Due {
                at_s: now_s + gap_after(cfg.interval_s, due.attempts),
                attempts: due.attempts + 1,
            },
        );
    }
}

/// A refund waiting for the seller's confirmation (the legacy API): its report is a
/// notification, which can be lost (payhost down for longer than Alipay resends it), and it has
/// no refund query. Its trade is queried instead ([`App::sync_payment`]: the refunded total
/// settles it), from `seller_refund_after_s` after it started, the gaps doubling from that up to
/// 6 hours, until it ends (confirmed, or given up here) or is older than `max_age_s` (Alipay
/// resends a notification for about a day). Only the payment's one pending refund is settled
/// so: beside another, the total could be theirs together (5.00 pending, and 2.00 and 3.00
/// confirmed), and a person decides (its Sync button, or the report of each).
async fn seller_refund(
    app: &Arc<App>,
    schedule: &mut HashMap<(String, i64), Due>,
    refund: &crate::store::ledger::Refund,
    key: (String, i64),
    now_s: u64,
) {
    let wait = app.config.recovery.seller_refund_after_s;
    let started_s = crate::domain::clock::parse_rfc3339(&refund.created_at)
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(now_s);
    let due = *schedule.entry(key.clone()).or_insert(Due {
        at_s: started_s.saturating_add(wait),
        attempts: 0,
    });
    if due.at_s > now_s {
        return;
    }
    let cfg = &app.config.recovery;
    if now_s.saturating_sub(started_s) > cfg.max_age_s.max(wait) {
        schedule.insert(
            key,
            Due {
                at_s: u64::MAX,
                attempts: due.attempts,
            },
        );
        return;
    }
    let alone = match app
        .store
        .refunds_for(&refund.merchant_id, &refund.out_trade_no)
        .await
    {
        Ok(all) => {
            all.iter()
                .filter(|r| r.status == crate::domain::refunds::PENDING)
                .count()
                == 1
        }
        Err(_) => false,
    };
    let synced = if alone {
        app.sync_payment(&refund.merchant_id, &refund.out_trade_no)
            .await
            .map(drop)
    } else {
        Ok(())
    };
    match synced {
        Ok(_) => {
            if let Ok(Some(r)) = app.store.refund(&refund.merchant_id, refund.id).await {
                if r.status != crate::domain::refunds::PENDING {
                    tracing::info!(merchant = %refund.merchant_id, out_trade_no = %refund.out_trade_no, refund = refund.id, status = %r.status, "recovery: the trade's query settled a refund waiting for the seller");
                    schedule.remove(&key);
                    return;
                }
            }
        }
        Err(e) => {
            tracing::warn!(merchant = %refund.merchant_id, out_trade_no = %refund.out_trade_no, refund = refund.id, code = %e.code, error = %crate::log_limit::clean(&e.message), "recovery: cannot query the trade of a refund waiting for the seller; trying later")
        }
    }
    schedule.insert(
        key,
        Due {
            at_s: now_s + gap_after(wait, due.attempts),
            attempts: due.attempts + 1,
        },
    );
}

/// The waiting payments' schedule (with each one's creation time), and where the next page
/// starts: the waiting payments are read a page at a time, oldest first, so more than a page of
/// abandoned carts never keeps a newer payment, whose notification may be the lost one, from
/// being asked about.
#[derive(Default)]
struct PaymentSweep {
    due: HashMap<(String, String), (Due, String)>,
    /// The creation time the next page starts at (inclusive); `None`: the oldest.
    from: Option<String>,
}

/// A page of waiting payments read from `from` (inclusive) with `len` of `BATCH` rows, the last
/// created at `last`: where the next page starts, and the end of the creation times this page
/// covered (`None`: all later ones). A full page's last creation time starts the next page, read
/// again (payments created in the same second are never skipped); a page that is not full, or one
/// whose rows all share one creation time (more than a page in one second), ends the sweep, and
/// the next one starts from the oldest.
fn next_page(from: &str, len: usize, last: Option<&str>) -> (Option<String>, Option<String>) {
    match last {
        Some(last) if len == BATCH as usize && last != from => {
            (Some(last.to_owned()), Some(last.to_owned()))
        }
        _ => (None, None),
    }
}

async fn round(app: &Arc<App>, sweep: &mut PaymentSweep) {
    let cfg = &app.config.recovery;
    let now_s = (now_ms() / 1000) as u64;
    let after = format_unix(now_s.saturating_sub(cfg.max_age_s));
    let before = format_unix(now_s.saturating_sub(cfg.after_s));
    let from = match &sweep.from {
        Some(c) if *c > after => c.clone(),
        _ => after.clone(),
    };
    let waiting = match app.store.waiting_payments(&from, &before, BATCH).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "recovery: cannot list waiting payments");
            return;
        }
    };
    let (next, to) = next_page(
        &from,
        waiting.len(),
        waiting.last().map(|p| p.created_at.as_str()),
    );
    sweep.from = next;
    let keys: Vec<(String, String)> = waiting
        .iter()
        .map(|p| (p.merchant_id.clone(), p.out_trade_no.clone()))
        .collect();
    let listed: HashSet<&(String, String)> = keys.iter().collect();
    // Forget payments that are no longer waiting: those this page's range covers but lacks, and
    // those too old to be asked about.
    sweep.due.retain(|k, (_, created)| {
        let in_range = created.as_str() >= from.as_str()
            && to.as_deref().is_none_or(|to| created.as_str() <= to);
        created.as_str() >= after.as_str() && (listed.contains(k) || !in_range)
    });
    let schedule = &mut sweep.due;
    for p in &waiting {
        schedule
            .entry((p.merchant_id.clone(), p.out_trade_no.clone()))
            .or_insert((
                Due {
                    at_s: now_s,
                    attempts: 0,
                },
                p.created_at.clone(),
            ));
    }
    for key in keys {
        let Some((due, _)) = schedule.get(&key).cloned() else {
            continue;
        };
        if due.at_s > now_s {
            continue;
        }
        let (merchant, out_trade_no) = &key;
        let outcome = app.sync_payment(merchant, out_trade_no).await;
        match &outcome {
            Ok(r) if r.status != crate::store::WAIT_BUYER_PAY => {
                tracing::info!(merchant = %merchant, out_trade_no = %out_trade_no, status = %r.status, outcome = %r.outcome, "recovery: the trade query settled a waiting payment");
                schedule.remove(&key);
                continue;
            }
            Ok(r) => {
                tracing::debug!(merchant = %merchant, out_trade_no = %out_trade_no, found = r.found, "recovery: still waiting")
            }
            Err(e) => {
                tracing::warn!(merchant = %merchant, out_trade_no = %out_trade_no, code = %e.code, error = %crate::log_limit::clean(&e.message), "recovery: the trade query failed; trying later")
            }
        }
        if let Some((next, _)) = schedule.get_mut(&key) {
            *next = Due {
                at_s: now_s + gap_after(cfg.interval_s, due.attempts),
                attempts: due.attempts + 1,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More than a page of waiting payments is read page by page: a full page's last creation
    /// time starts the next (read again, so payments of that second are not skipped); a short
    /// page, or a page of one second only, starts the sweep over from the oldest.
    #[test]
    fn pages_follow_one_another_and_start_over() {
        let full = BATCH as usize;
        let t = |s: &str| format!("2026-12-05T08:00:{s}Z");
        assert_eq!(
            next_page(&t("00"), full, Some(&t("07"))),
            (Some(t("07")), Some(t("07")))
        );
        assert_eq!(next_page(&t("07"), full - 1, Some(&t("09"))), (None, None));
        assert_eq!(next_page(&t("07"), 0, None), (None, None));
        // Every row of a full page created in the cursor's second: no progress, start over.
        assert_eq!(next_page(&t("07"), full, Some(&t("07"))), (None, None));
    }

    #[test]
    fn gaps_double_up_to_the_cap() {
        assert_eq!(gap_after(60, 0), 60);
        assert_eq!(gap_after(60, 3), 480);
        assert_eq!(gap_after(60, 40), MAX_GAP_S);
    }
}
