//! The refund rules, written once for every backend, beside the notification rules of
//! [`super::rules`]: starting a refund (its `refund_key` returns the refund it started; the
//! refunded total never goes past the paid amount), ending one with the provider's answer, a
//! provider's refund report matched to the refund started here or recorded as started outside
//! (or held for review when it does not fit), and closing an unpaid payment. Each runs inside one
//! transaction of its backend, with the payment row locked where the backend has row locks, and
//! moves the payment (`PARTIALLY_REFUNDED` / `REFUNDED`, its refunded total) and queues its
//! webhooks in that same transaction. The decisions about amounts are
//! [`crate::domain::refunds`]'s (integer fen, never floats); the backends supply only the
//! statements of [`RefundTx`].

use super::ledger::{
    NewRefund, PaidFacts, Refund, RefundApplied, RefundBegun, RefundResult, ReportEffect,
};
use super::rules::{NotifyTx, PaymentState};
use super::{now_ms, now_rfc3339, NotificationRecord, Payment, PlannedWebhook};
use crate::domain::events::event_id;
use crate::domain::refunds::{self, RefundLine};
use crate::domain::review;
use crate::domain::state::{self, TradeEvent};
use anyhow::Result;

/// A refund row to insert.
#[derive(Debug, Clone)]
pub struct RefundRow<'a> {
    pub merchant_id: &'a str,
    pub out_trade_no: &'a str,
    pub request_no: &'a str,
    pub refund_key: Option<&'a str>,
    pub amount_fen: u64,
    pub reason: &'a str,
    pub started_by: &'a str,
    pub status: &'a str,
    pub detail: Option<&'a str>,
    pub created_at: &'a str,
    pub completed_at: Option<&'a str>,
}

/// The statements the refund rules need beyond [`NotifyTx`]'s (the payment locked, a notify id
/// claimed), inside the same open transaction. None of them decides anything.
#[allow(async_fn_in_trait)] // used with concrete backends only, as NotifyTx
pub trait RefundTx: NotifyTx {
    /// The payment's refunds, oldest first.
    async fn refunds_of(&mut self, merchant: &str, out_trade_no: &str) -> Result<Vec<Refund>>;
    async fn refund_by_id(&mut self, merchant: &str, id: i64) -> Result<Option<Refund>>;
    /// Inserts a refund; returns it as stored (with its id).
    async fn insert_refund(&mut self, row: &RefundRow<'_>) -> Result<Refund>;
    /// Sets a refund's status and completion time; `detail` replaces the stored one when given.
    async fn end_refund(
        &mut self,
        merchant: &str,
        id: i64,
        status: &str,
        completed_at: &str,
        detail: Option<&str>,
    ) -> Result<()>;
    /// Gives refund `id`, recorded without a request number of the provider's, the one a
    /// later report of it names.
    async fn name_refund(&mut self, merchant: &str, id: i64, request_no: &str) -> Result<()>;
    /// The payment's status and refunded total after a refund succeeded.
    async fn write_refunded(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        status: &str,
        refunded_fen: u64,
        updated_at: &str,
    ) -> Result<()>;
    /// Holds the payment for review with `note` (all its reasons: [`review::with_reason`]).
    async fn flag_payment(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        reason: &str,
        at: &str,
    ) -> Result<()>;
    /// Keeps the provider's trade number, buyer and payment time where the payment has none yet.
    /// Keeps what the payment has none of yet (its trade, buyer, payment time) and, when the
    /// message says the trade is finished, `finished_at = at` unless it was known.
    async fn fill_paid(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        paid: &PaidFacts<'_>,
        at: &str,
    ) -> Result<()>;
    /// Queues a webhook due at `at_ms` unless its event id was queued before (the shop was told
    /// that event of this payment already); false then.
    async fn enqueue_webhook_once(
        &mut self,
        merchant: &str,
        webhook: &PlannedWebhook,
        at_ms: i64,
    ) -> Result<bool>;
}

/// Starts a refund: the same `refund_key` again returns the refund it started; otherwise the
/// money rules decide ([`refunds::check_start`]) and the refund is stored PENDING with its
/// request number, before the provider is ever called (so a retry never sends a second one).
pub async fn begin_refund<T: RefundTx>(tx: &mut T, new: &NewRefund) -> Result<RefundBegun> {
    let Some(p) = tx
        .load_payment_for_update(&new.merchant_id, &new.out_trade_no)
        .await?
    else {
        return Ok(RefundBegun::UnknownPayment);
    };
    let existing = tx.refunds_of(&new.merchant_id, &new.out_trade_no).await?;
    if let Some(key) = &new.refund_key {
        if let Some(r) = existing.iter().find(|r| r.refund_key.as_ref() == Some(key)) {
            return Ok(RefundBegun::Existing(r.clone()));
        }
    }
    let lines: Vec<_> = existing.iter().map(Refund::line).collect();
    if let Err(why) = refunds::check_start(
        &p.status,
        p.is_finished(),
        p.total_fen,
        &lines,
        new.amount_fen,
    ) {
        return Ok(RefundBegun::Refused(why));
    }
    let stored = tx
        .insert_refund(&RefundRow {
            merchant_id: &new.merchant_id,
            out_trade_no: &new.out_trade_no,
            request_no: &new.request_no,
            refund_key: new.refund_key.as_deref(),
            amount_fen: new.amount_fen,
            reason: &new.reason,
            started_by: &new.started_by,
            status: refunds::PENDING,
            detail: None,
            created_at: &now_rfc3339(),
            completed_at: None,
        })
        .await?;
    Ok(RefundBegun::New(stored))
}

/// Ends a PENDING refund with the provider's answer (or a FAILED one that succeeded after all,
/// when it still fits); a success moves the payment and queues its webhook.
pub async fn settle_refund<T: RefundTx>(tx: &mut T, r: &RefundResult<'_>) -> Result<RefundApplied> {
    let Some(refund) = tx.refund_by_id(r.merchant_id, r.refund_id).await? else {
        return Ok(RefundApplied::UnknownPayment);
    };
    let Some(p) = tx
        .load_payment_for_update(r.merchant_id, &refund.out_trade_no)
        .await?
    else {
        return Ok(RefundApplied::UnknownPayment);
    };
    let lines = lines_of(tx, &p).await?;
    let write = plan_result(&lines, p.total_fen, r.refund_id, r.status);
    apply_write(
        tx,
        &p,
        write,
        &Written {
            completed_at: r.completed_at,
            detail: r.detail,
            request_no: &refund.request_no,
            webhook_url: r.webhook_url,
        },
    )
    .await
}

/// Applies a provider's refund report once per notify id: matched to the refund started here by
/// its request number, recorded as started outside, or held for review (the payment flagged,
/// nothing applied) when it would take the refunded total past the paid amount. The message
/// that carried it, when given, is stored with its outcome last, in the same transaction.
pub async fn apply_refund_report<T: RefundTx>(
    tx: &mut T,
    e: &ReportEffect<'_>,
) -> Result<RefundApplied> {
    let applied = apply_report(tx, e).await?;
    if let Some(r) = &e.record {
        let (outcome, detail) = applied.outcome(r.finished, r.source);
        let record = NotificationRecord {
            outcome: Some(outcome.label().to_owned()),
            detail: Some(detail),
            ..r.record.clone()
        };
        tx.finish_notification(None, &r.raw, &now_rfc3339(), &record)
            .await?;
    }
    Ok(applied)
}

async fn apply_report<T: RefundTx>(tx: &mut T, e: &ReportEffect<'_>) -> Result<RefundApplied> {
    let Some(mut p) = tx
        .load_payment_for_update(e.merchant_id, e.out_trade_no)
        .await?
    else {
        return Ok(RefundApplied::UnknownPayment);
    };
    let now = now_rfc3339();
    if !tx
        .claim_notification(e.merchant_id, e.notify_id, e.out_trade_no, &now)
        .await?
    {
        return Ok(RefundApplied::Known);
    }
    // Another trade's refund (the order paid twice): held, as the notify path holds it before
    // the transaction; checked here under the payment's lock too, for a report that raced the
    // paid notification of the order's first trade.
    let other_trade = crate::domain::events::other_trade(&p, e.paid.trade_no)
        .map(|recorded| crate::domain::events::other_trade_reason(recorded, e.paid.trade_no));
    if other_trade.is_none()
        && (!e.paid.trade_no.is_empty()
            || e.paid.buyer_email.is_some()
            || e.paid.paid_at.is_some()
            || e.paid.finished)
    {
        // The state machine's rule for which payments keep a finish.
        let paid = PaidFacts {
            finished: e.paid.finished && state::keeps_finish(&p.status),
            ..e.paid
        };
        tx.fill_paid(e.merchant_id, e.out_trade_no, &paid, &now)
            .await?;

        // As stored (only what was missing): the webhooks below say it.
        let given = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
        p.trade_no = p.trade_no.or_else(|| given(Some(e.paid.trade_no)));
        p.buyer_email = p.buyer_email.or_else(|| given(e.paid.buyer_email));
        p.paid_at = p.paid_at.or_else(|| given(e.paid.paid_at));
    }
    let lines = lines_of(tx, &p).await?;
    let write = match other_trade {
        Some(reason) => RefundWrite::Flag(reason),
        None => plan_report(&lines, p.total_fen, &e.report),
    };
    if matches!(write, RefundWrite::Flag(_)) {
        // Held for review is not handled: the same report later (a Sync once nothing is
        // pending, the provider's resend) is decided again, not skipped as known. Holding it
        // again adds nothing: a note keeps each reason once.
        tx.release_claim(e.merchant_id, e.notify_id).await?;
    }
    apply_write(
        tx,
        &p,
        write,
        &Written {
            // A report is the provider's completion: its time, else now.
            completed_at: Some(e.completed_at.unwrap_or(&now)),
            detail: Some(e.report.detail.as_str()).filter(|d| !d.is_empty()),
            request_no: &e.report.request_no,
            webhook_url: e.webhook_url,
        },
    )
    .await
}

/// Keeps the provider's finish of trade `trade_no` on the payment (`finished_at`) when nothing
/// else of its message was applied here (its match against the order was never made): only on
/// a payment paid here by that very trade (its recorded `trade_no`, matched when it paid), and
/// by the state machine's rule for which payments keep one. False when nothing was written (no
/// such payment, not paid, another trade's, finished already, fully refunded).
pub async fn keep_finish<T: RefundTx>(
    tx: &mut T,
    merchant: &str,
    out_trade_no: &str,
    trade_no: &str,
) -> Result<bool> {
    let Some(p) = tx.load_payment_for_update(merchant, out_trade_no).await? else {
        return Ok(false);
    };
    let paid_by_it = state::is_paid(&p.status)
        && !trade_no.is_empty()
        && p.trade_no.as_deref() == Some(trade_no);
    if !paid_by_it || p.finished_at.is_some() || !state::keeps_finish(&p.status) {
        return Ok(false);
    }
    let finish_only = PaidFacts {
        trade_no: "",
        buyer_email: None,
        paid_at: None,
        finished: true,
    };
    tx.fill_paid(merchant, out_trade_no, &finish_only, &now_rfc3339())
        .await?;
    Ok(true)
}

/// Closes an unpaid payment here (`TRADE_CLOSED`, `payment.closed` queued); false when it was not
/// waiting any more (paid or closed meanwhile: the stored status wins).
pub async fn close_payment<T: RefundTx>(
    tx: &mut T,
    merchant: &str,
    out_trade_no: &str,
    webhook_url: Option<&str>,
) -> Result<bool> {
    let Some(p) = tx.load_payment_for_update(merchant, out_trade_no).await? else {
        return Ok(false);
    };
    if p.status != state::WAIT_BUYER_PAY {
        return Ok(false);
    }
    let t = state::transition(&p.status, TradeEvent::Closed);
    let Some(next) = t.to else {
        return Ok(false);
    };
    let now = now_rfc3339();
    tx.write_payment_state(
        merchant,
        out_trade_no,
        &PaymentState {
            status: next,
            trade_no: None,
            buyer_email: None,
            paid_at: p.paid_at.as_deref(),
            updated_at: &now,
            review: None,
            finished_at: None,
        },
    )
    .await?;
    if let Some(url) = webhook_url {
        for ev in &t.events {
            let kind = ev.name();
            let id = event_id(merchant, out_trade_no, kind, None);
            let body = serde_json::json!({
                "id": id, "type": kind, "merchant_id": merchant, "out_trade_no": out_trade_no,
                "subject": p.subject, "status": next, "previous_status": p.status,
                "total_fee": p.total_fee(), "seller_email": p.seller, "trade_no": p.trade_no,
                // The keys every payment event has (a notification's `payment.closed` too):
                // an unpaid order closed by the shop has none of these values.
                "buyer_email": p.buyer_email, "paid_at": null, "refund_status": null,
                "gmt_refund": null,
                "created_at": now, "created_at_ms": crate::domain::clock::event_ms(&now),
            })
            .to_string();
            let w = PlannedWebhook {
                event_id: id,
                kind,
                url: url.to_owned(),
                body,
            };
            tx.enqueue_webhook_once(merchant, &w, now_ms()).await?;
        }
    }
    Ok(true)
}

async fn lines_of<T: RefundTx>(tx: &mut T, p: &Payment) -> Result<Vec<RefundLine>> {
    Ok(tx
        .refunds_of(&p.merchant_id, &p.out_trade_no)
        .await?
        .iter()
        .map(Refund::line)
        .collect())
}

/// What a store writes for a refund's result or report (decided by [`plan_result`] or
/// [`plan_report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundWrite {
    /// Set the refund's status (and completed_at); with `review`, also hold the payment for
    /// review with that reason.
    Update {
        id: i64,
        status: &'static str,
        review: Option<String>,
    },
    /// Insert a SUCCESS refund started by the gateway with this amount.
    Insert { amount_fen: u64 },
    /// Give refund `id` (recorded from a total) the report's request number.
    Name { id: i64 },
    /// Nothing to write.
    Nothing,
    /// Flag the payment for review with this reason; nothing applied.
    Flag(String),
}

/// The write for ending refund `id` with `status`.
pub fn plan_result(lines: &[RefundLine], total: u64, id: i64, status: &'static str) -> RefundWrite {
    let Some(line) = lines.iter().find(|l| l.id == id) else {
        return RefundWrite::Nothing;
    };
    match (line.status.as_str(), status) {
        (refunds::PENDING | refunds::FAILED, refunds::SUCCESS) => {
            match refunds::success_fit(lines, total, line) {
                Ok(review) => RefundWrite::Update { id, status, review },
                Err(reason) => RefundWrite::Flag(reason),
            }
        }
        (refunds::PENDING, _) => RefundWrite::Update {
            id,
            status,
            review: None,
        },
        _ => RefundWrite::Nothing,
    }
}

/// The write for a provider's report.
pub fn plan_report(lines: &[RefundLine], total: u64, report: &refunds::Report) -> RefundWrite {
    match refunds::decide(total, lines, report) {
        refunds::Decision::Settle { id, status } => RefundWrite::Update {
            id,
            status,
            review: None,
        },
        refunds::Decision::SettleFlagged { id, reason } => RefundWrite::Update {
            id,
            status: refunds::SUCCESS,
            review: Some(reason),
        },
        refunds::Decision::Record { amount } => RefundWrite::Insert { amount_fen: amount },
        refunds::Decision::Name { id } => RefundWrite::Name { id },
        refunds::Decision::Known => RefundWrite::Nothing,
        refunds::Decision::Mismatch { reason } => RefundWrite::Flag(reason),
    }
}

/// The circumstances of a write: when the provider completed the refund (None: now, and the
/// result is an answer to a call made here), its words, the request number it named, and where
/// the shop wants events.
struct Written<'a> {
    completed_at: Option<&'a str>,
    detail: Option<&'a str>,
    request_no: &'a str,
    webhook_url: Option<&'a str>,
}

/// Applies a planned write: the refund row, then for a success the payment's refunded total,
/// status and webhooks.
async fn apply_write<T: RefundTx>(
    tx: &mut T,
    payment: &Payment,
    write: RefundWrite,
    w: &Written<'_>,
) -> Result<RefundApplied> {
    let now = now_rfc3339();
    let done_at = w.completed_at.unwrap_or(&now);
    let (m, no) = (payment.merchant_id.as_str(), payment.out_trade_no.as_str());
    // The payment's review note as this transaction wrote it, if it did.
    let mut flagged: Option<String> = None;
    let (id, status) = match write {
        RefundWrite::Nothing => return Ok(RefundApplied::Known),
        RefundWrite::Name { id } => {
            if !w.request_no.is_empty() {
                tx.name_refund(m, id, w.request_no).await?;
            }
            return Ok(RefundApplied::Known);
        }
        RefundWrite::Flag(reason) => {
            let note = review::with_reason(payment.review.as_deref(), &reason);
            tx.flag_payment(m, no, &note, &now).await?;
            return Ok(RefundApplied::Mismatch(reason));
        }
        RefundWrite::Update { id, status, review } => {
            tx.end_refund(m, id, status, done_at, w.detail).await?;
            if let Some(reason) = review {
                let note = review::with_reason(payment.review.as_deref(), &reason);
                tx.flag_payment(m, no, &note, &now).await?;
                flagged = Some(note);
            }
            (id, status)
        }
        RefundWrite::Insert { amount_fen } => {
            // A report without a number (a legacy notify, a query's total) gets one of its own,
            // unique however many arrive in the same millisecond (a random part).
            let generated;
            let request_no = if w.request_no.is_empty() {
                generated = format!(
                    "{}{}-{:08x}",
                    refunds::UNNAMED,
                    now_ms(),
                    rand::random::<u32>()
                );
                generated.as_str()
            } else {
                w.request_no
            };
            let stored = tx
                .insert_refund(&RefundRow {
                    merchant_id: m,
                    out_trade_no: no,
                    request_no,
                    refund_key: None,
                    amount_fen,
                    reason: "",
                    started_by: refunds::STARTED_BY_GATEWAY,
                    status: refunds::SUCCESS,
                    detail: w.detail,
                    created_at: &now,
                    completed_at: Some(done_at),
                })
                .await?;
            (stored.id, refunds::SUCCESS)
        }
    };
    if status != refunds::SUCCESS {
        return Ok(RefundApplied::Settled {
            refund_id: id,
            status: status.to_owned(),
            payment_status: payment.status.clone(),
        });
    }
    let all = tx.refunds_of(m, no).await?;
    let refund = all
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| anyhow::anyhow!("refund {id} of {m}/{no} vanished in its transaction"))?
        .clone();
    let succeeded =
        refunds::Totals::of(&all.iter().map(Refund::line).collect::<Vec<_>>()).succeeded;
    let (next, hooks) = after_success(payment, &refund, succeeded, &now, w.webhook_url);
    tx.write_refunded(m, no, &next, succeeded, &now).await?;
    // Closed here, and now known paid (its refund came first): held for review as a paid
    // notification of it is, so the owner fulfils or refunds the rest.
    if payment.status == state::TRADE_CLOSED && next != payment.status {
        let reason = if succeeded >= payment.total_fen {
            "关闭后又收到付款，并已全额退款：无需发货，请确认商城里这笔订单也显示已退款 / paid after it was closed here, and refunded in full: nothing to ship; check that the shop shows the order refunded".to_owned()
        } else {
            format!(
                "关闭后又收到付款，并已退款 {0}：请发货或退还余款 / paid after it was closed here, and {0} refunded: fulfil or refund the rest",
                refund.amount()
            )
        };
        let note = review::with_reason(flagged.as_deref().or(payment.review.as_deref()), &reason);
        tx.flag_payment(m, no, &note, &now).await?;
    }
    for hook in &hooks {
        tx.enqueue_webhook_once(m, hook, now_ms()).await?;
    }
    Ok(
        if refund.started_by == refunds::STARTED_BY_GATEWAY && w.completed_at.is_some() {
            RefundApplied::Recorded {
                refund_id: id,
                payment_status: next,
            }
        } else {
            RefundApplied::Settled {
                refund_id: id,
                status: status.to_owned(),
                payment_status: next,
            }
        },
    )
}

/// After a refund succeeded: the payment's next status, and the webhooks to queue (through the
/// one state machine).
pub fn after_success(
    payment: &Payment,
    refund: &Refund,
    succeeded_fen: u64,
    now: &str,
    webhook_url: Option<&str>,
) -> (String, Vec<PlannedWebhook>) {
    let event = refunds::event_after(payment.total_fen, succeeded_fen);
    let t = state::transition(&payment.status, event);
    let next = t.to.unwrap_or(payment.status.as_str()).to_owned();
    let mut hooks = Vec::new();
    if let Some(url) = webhook_url {
        for ev in &t.events {
            let kind = ev.name();
            let key = format!("refund:{}", refund.request_no);
            let id = event_id(
                &payment.merchant_id,
                &payment.out_trade_no,
                kind,
                ev.repeatable().then_some(key.as_str()),
            );
            let body = refund_webhook(payment, &next, kind, &id, refund, succeeded_fen, now);
            hooks.push(PlannedWebhook {
                event_id: id,
                kind,
                url: url.to_owned(),
                body,
            });
        }
    }
    (next, hooks)
}

/// The webhook body of a refund event (as [`crate::domain::events`] builds a notification's,
/// with the refund's fields).
pub fn refund_webhook(
    payment: &Payment,
    next: &str,
    kind: &str,
    event_id: &str,
    refund: &Refund,
    refunded_fen: u64,
    now: &str,
) -> String {
    serde_json::json!({
        "id": event_id,
        "type": kind,
        "merchant_id": payment.merchant_id,
        "out_trade_no": payment.out_trade_no,
        "subject": payment.subject,
        "status": next,
        "previous_status": payment.status,
        "total_fee": payment.total_fee(),
        "refunded_amount": format!("{}.{:02}", refunded_fen / 100, refunded_fen % 100),
        "refund": {
            "id": refund.id,
            "amount": refund.amount(),
            "request_no": refund.request_no,
            "started_by": refunds::without_admin_names(&refund.started_by),
            "status": refund.status,
        },
        "seller_email": payment.seller,
        "trade_no": payment.trade_no,
        "buyer_email": payment.buyer_email,
        // As the API shows it (UTC ISO 8601), whatever form the provider gave.
        "paid_at": payment.paid_at.as_deref().map(crate::domain::clock::shown_utc_or_as_is),
        // As a provider's refund notification's webhook says it (shops read these).
        "refund_status": "REFUND_SUCCESS",
        "gmt_refund": refund.completed_at,
        "created_at": now,
        "created_at_ms": crate::domain::clock::event_ms(now),
    })
    .to_string()
}
