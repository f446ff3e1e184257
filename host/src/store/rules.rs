//! The money rules, written once for every backend: how a notification is stored with its result,
//! claimed, applied to its payment and turned into shop webhooks, and how refused notifications
//! stay within their quota. Each backend runs these inside one of its transactions and supplies
//! only the primitives of [`NotifyTx`] (plain statements, no decisions; a backend may send
//! several of them in one round trip, as PostgreSQL does).

use super::{
    now_ms, now_rfc3339, plan_notification, Applied, NotificationEffect, NotificationRecord,
    Payment, Plan, PlannedWebhook, RawNotification, RefusedRecord,
};
use anyhow::{Context, Result};

/// A payment's state after a notification moved it.
pub struct PaymentState<'a> {
    pub status: &'a str,
    /// The provider's trade number, when the notification carries one (else the stored one stays).
    pub trade_no: Option<&'a str>,
    /// The buyer, when the notification names one (else the stored one stays).
    pub buyer_email: Option<&'a str>,
    pub paid_at: Option<&'a str>,
    pub updated_at: &'a str,
    /// A reason for the owner to review the payment, set with the move (else the stored one stays).
    pub review: Option<&'a str>,
    /// When the trade was reported finished, set with the move (a time already stored stays).
    pub finished_at: Option<&'a str>,
}

/// The statements the rules need, inside one open transaction of a backend. None of them decides
/// anything: the decisions are the rules' below.
#[allow(async_fn_in_trait)] // used with concrete backends only: their futures' Send-ness is known
pub trait NotifyTx {
    /// Stores a notification's body as received at `received_at`; returns its id.
    async fn insert_raw(&mut self, raw: &RawNotification<'_>, received_at: &str) -> Result<i64>;
    /// Stores the bounded form of a refused notification; returns its id.
    async fn insert_refused(&mut self, refused: &RefusedRecord) -> Result<i64>;
    /// Stores the result of processing the raw notification `rec.raw_id`.
    async fn insert_result(&mut self, rec: &NotificationRecord) -> Result<()>;
    /// The payment, locked until the transaction ends where the backend has row locks (SQLite's
    /// writer is alone anyway).
    async fn load_payment_for_update(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<Payment>>;
    /// Claims a notify_id for this payment: false when it was claimed before (a duplicate).
    async fn claim_notification(
        &mut self,
        merchant: &str,
        notify_id: &str,
        out_trade_no: &str,
        at: &str,
    ) -> Result<bool>;
    /// Gives back a claim made in this transaction: the notification was not taken as handled.
    async fn release_claim(&mut self, merchant: &str, notify_id: &str) -> Result<()>;
    async fn write_payment_state(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        state: &PaymentState<'_>,
    ) -> Result<()>;
    /// Queues a webhook due at `at_ms`. A conflicting event id is an error, never ignored.
    async fn enqueue_webhook(
        &mut self,
        merchant: &str,
        webhook: &PlannedWebhook,
        at_ms: i64,
    ) -> Result<()>;
    /// The id of the merchant's refused notification just past the newest `keep`, if any.
    async fn refused_beyond(&mut self, merchant: &str, keep: u32) -> Result<Option<i64>>;
    /// Deletes the merchant's refused notifications with ids up to `id`, with their results.
    async fn delete_refused_through(&mut self, merchant: &str, id: i64) -> Result<()>;

    /// The payment locked, with whether `notify_id` was claimed for it now (false: claimed
    /// before); `None`, claiming nothing, when there is no such payment. The two primitives in
    /// turn; a backend with round trips sends them together.
    async fn lock_and_claim(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        notify_id: &str,
        at: &str,
    ) -> Result<Option<(Payment, bool)>> {
        let Some(payment) = self.load_payment_for_update(merchant, out_trade_no).await? else {
            return Ok(None);
        };
        let claimed = self
            .claim_notification(merchant, notify_id, out_trade_no, at)
            .await?;
        Ok(Some((payment, claimed)))
    }

    /// The last writes of a notification's transaction: the payment's new state and its webhooks
    /// (when it moved), then the notification as received at `received_at` with `record`, its
    /// result. Returns the notification's id. Nothing runs in the transaction after it, so a
    /// backend with round trips may send its commit along.
    async fn finish_notification(
        &mut self,
        moved: Option<&PaymentMove<'_>>,
        raw: &RawNotification<'_>,
        received_at: &str,
        record: &NotificationRecord,
    ) -> Result<i64> {
        if let Some(m) = moved {
            self.write_payment_state(m.merchant, m.out_trade_no, &m.state)
                .await?;
            for w in m.webhooks {
                self.enqueue_webhook(m.merchant, w, m.at_ms)
                    .await
                    .with_context(|| webhook_conflict(m, std::slice::from_ref(w)))?;
            }
        }
        let mut record = record.clone();
        record.raw_id = self.insert_raw(raw, received_at).await?;
        self.insert_result(&record).await?;
        Ok(record.raw_id)
    }
}

/// What a notification writes when it moves its payment.
pub struct PaymentMove<'a> {
    pub merchant: &'a str,
    pub out_trade_no: &'a str,
    pub state: PaymentState<'a>,
    pub webhooks: &'a [PlannedWebhook],
    /// When the webhooks are first due.
    pub at_ms: i64,
}

/// The context of webhooks that could not be queued. Ids are unique by construction, so a
/// conflict is a bug to see (the notification fails and is retried), never a webhook silently
/// dropped.
pub fn webhook_conflict(m: &PaymentMove<'_>, webhooks: &[PlannedWebhook]) -> String {
    let events: Vec<String> = webhooks
        .iter()
        .map(|w| format!("{} ({})", w.event_id, w.kind))
        .collect();
    format!(
        "webhook event id conflict for {} of {}/{}",
        events.join(", "),
        m.merchant,
        m.out_trade_no
    )
}

/// Stores a notification with the result of its processing; returns the raw notification's id.
pub async fn record_notification<T: NotifyTx>(
    tx: &mut T,
    raw: &RawNotification<'_>,
    record: &NotificationRecord,
) -> Result<i64> {
    tx.finish_notification(None, raw, &now_rfc3339(), record)
        .await
}

/// Stores a refused notification's bounded form with its result, then keeps only the newest
/// `quota` of the merchant's refused notifications (one insert past it deletes one).
pub async fn record_refused_notification<T: NotifyTx>(
    tx: &mut T,
    refused: &RefusedRecord,
    quota: u32,
) -> Result<i64> {
    let mut record = refused.record.clone();
    record.raw_id = tx.insert_refused(refused).await?;
    tx.insert_result(&record).await?;
    if let Some(cut) = tx.refused_beyond(&refused.merchant_id, quota).await? {
        tx.delete_refused_through(&refused.merchant_id, cut).await?;
    }
    Ok(record.raw_id)
}

/// Applies a notification's effect once (see [`apply_effect`]) and stores the notification as
/// received with its record, the outcome and detail of what happened, all in the caller's
/// transaction.
pub async fn apply_notification<T: NotifyTx>(
    tx: &mut T,
    effect: &NotificationEffect<'_>,
    raw: &RawNotification<'_>,
    record: &NotificationRecord,
) -> Result<Applied> {
    let received_at = now_rfc3339();
    let (applied, plan) = apply_effect(tx, effect, &received_at).await?;
    let mut record = record.clone();
    let (outcome, detail) = applied.outcome();
    record.outcome = Some(outcome.to_owned());
    record.detail = detail.or(record.detail);
    // Another trade's notification only flags the payment: its trade and buyer are not this
    // payment's.
    let own_trade = !matches!(applied, Applied::OtherTrade { .. });
    let moved = plan.as_ref().map(|(plan, now)| PaymentMove {
        merchant: effect.merchant_id,
        out_trade_no: effect.out_trade_no,
        state: PaymentState {
            status: &plan.next,
            trade_no: Some(effect.trade_no).filter(|t| own_trade && !t.is_empty()),
            buyer_email: effect.buyer_email.filter(|_| own_trade),
            paid_at: plan.paid_at.as_deref(),
            updated_at: now,
            review: plan.review.as_deref(),
            finished_at: plan.finished_at.as_deref(),
        },
        webhooks: &plan.webhooks,
        at_ms: now_ms(),
    });
    tx.finish_notification(moved.as_ref(), raw, &received_at, &record)
        .await?;
    Ok(applied)
}

/// Claims the notify_id and decides by the state machine what the notification does to its
/// payment: the plan to write, with the time it was decided at (once the payment's lock is
/// held), when it moves it. A notify_id already claimed changes nothing; an unknown order claims
/// nothing.
async fn apply_effect<T: NotifyTx>(
    tx: &mut T,
    e: &NotificationEffect<'_>,
    claim_at: &str,
) -> Result<(Applied, Option<(Plan, String)>)> {
    let Some((payment, claimed)) = tx
        .lock_and_claim(e.merchant_id, e.out_trade_no, e.notify_id, claim_at)
        .await?
    else {
        return Ok((Applied::UnknownOrder, None));
    };
    if !claimed {
        return Ok((Applied::Duplicate, None));
    }
    let now = now_rfc3339();
    Ok(match plan_notification(&payment, e, &now) {
        Some(plan) => (plan.applied.clone(), Some((plan, now))),
        None => (Applied::NoChange, None),
    })
}
