//! The ledger's side of the store: payments filtered and paged for the back office, merchants
//! with their counts, refunds (started here or reported by the provider), a payment's timeline
//! and its webhook attempts, and the day's records for reconciliation. Both stores implement
//! [`Ledger`]; every money decision is [`crate::domain::refunds`]'s, applied in one transaction
//! by the refund rules of [`super::refund_rules`] (the same code for every store).

use super::Payment;
use crate::domain::refunds::{self, RefundLine};
use anyhow::Result;
use serde::Serialize;

/// The most rows one page may hold.
pub const MAX_PAGE: u32 = 200;

/// Where a page ends: the last row's sort key (newest first by `created_at`, then merchant id and
/// order number, descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: String,
    pub merchant_id: String,
    pub out_trade_no: String,
}

impl Cursor {
    /// The opaque text the API hands out: base64url of the three keys joined by NUL.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}\0{}\0{}",
            self.created_at, self.merchant_id, self.out_trade_no
        ))
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let mut parts = text.split('\0');
        let c = Cursor {
            created_at: parts.next()?.to_owned(),
            merchant_id: parts.next()?.to_owned(),
            out_trade_no: parts.next()?.to_owned(),
        };
        parts.next().is_none().then_some(c)
    }

    pub fn of(p: &Payment) -> Cursor {
        Cursor {
            created_at: p.created_at.clone(),
            merchant_id: p.merchant_id.clone(),
            out_trade_no: p.out_trade_no.clone(),
        }
    }
}

/// The filters of `GET /v1/payments` (and its CSV), checked already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    /// One merchant, or all.
    pub merchant: Option<String>,
    /// Only these merchants (a shop owner's, when they name none): None for no such limit, an
    /// empty list for no row at all.
    pub merchants: Option<Vec<String>>,
    pub status: Option<String>,
    /// Created at or after (stored UTC form).
    pub from: Option<String>,
    /// Created before (stored UTC form).
    pub to: Option<String>,
    /// Part of the order number, the provider's trade number or the buyer.
    pub q: Option<String>,
    pub min_fen: Option<u64>,
    pub max_fen: Option<u64>,
    /// Only payments held for review (a reason in `review`).
    pub review: bool,
    /// Only payments with a refund still pending (`status=REFUND_PENDING`): money promised back
    /// and not yet confirmed, found without opening each order.
    pub refund_pending: bool,
    /// Rows after this one.
    pub cursor: Option<Cursor>,
    /// At most this many rows (1 to [`MAX_PAGE`], or more for the CSV's batches).
    pub limit: u32,
}

/// The filters of `GET /v1/refunds` (and its CSV), checked already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefundFilter {
    /// One merchant, or all.
    pub merchant: Option<String>,
    /// Only these merchants, as [`PaymentFilter::merchants`].
    pub merchants: Option<Vec<String>>,
    /// `PENDING`, `SUCCESS` or `FAILED`.
    pub status: Option<String>,
    /// Started at or after (stored UTC form).
    pub from: Option<String>,
    /// Started before (stored UTC form).
    pub to: Option<String>,
    /// Completed (settled, either way) at or after (stored UTC form): the day a bill counts it on.
    pub completed_from: Option<String>,
    /// Completed before (stored UTC form).
    pub completed_to: Option<String>,
    /// Part of the order number or of the refund's request number.
    pub q: Option<String>,
    /// Rows older than this refund (the cursor: a refund's id).
    pub before_id: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// What a refund filter holds, every page of it (the refund list's 合计 line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefundTotals {
    pub count: u64,
    pub amount_fen: u64,
    pub succeeded_count: u64,
    pub succeeded_fen: u64,
    pub pending_count: u64,
    pub pending_fen: u64,
    /// Refused, or given up: no money moved.
    pub failed_count: u64,
    pub failed_fen: u64,
}

impl RefundTotals {
    /// The number of [`super::ledger_sql::refund_totals_sql`]'s columns.
    pub const COLUMNS: usize = 8;

    /// From [`super::ledger_sql::refund_totals_sql`]'s columns, in its order.
    pub fn from_columns(
        [count, amount, ok, ok_fen, pending, pending_fen, failed, failed_fen]: [i64; Self::COLUMNS],
    ) -> Self {
        let n = |v: i64| v.max(0) as u64;
        RefundTotals {
            count: n(count),
            amount_fen: n(amount),
            succeeded_count: n(ok),
            succeeded_fen: n(ok_fen),
            pending_count: n(pending),
            pending_fen: n(pending_fen),
            failed_count: n(failed),
            failed_fen: n(failed_fen),
        }
    }
}

/// A review flag as a person read it on the payment's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSeen {
    pub reason: String,
    /// The payment's `updated_at` then (every write of a flag sets it).
    pub updated_at: String,
}

/// A payment with its refunded total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPayment {
    pub payment: Payment,
    /// What succeeded refunds add up to.
    pub refunded_fen: u64,
}

/// A payment and everything its page shows, read from one snapshot of the database
/// ([`Ledger::payment_record`]).
#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub ledger: LedgerPayment,
    /// Oldest first, as each `…_for` read answers.
    pub notifications: Vec<super::NotificationRecord>,
    pub refunds: Vec<Refund>,
    pub events: Vec<PaymentEvent>,
    pub webhook_attempts: Vec<WebhookAttempt>,
}

/// A merchant with its counts (`GET /v1/merchants`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MerchantCounts {
    pub id: String,
    pub payments: u64,
    pub paid: u64,
    pub refunded: u64,
    pub waiting: u64,
    pub paid_fen: u64,
    pub refunded_fen: u64,
}

/// One refund as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: i64,
    pub merchant_id: String,
    pub out_trade_no: String,
    pub request_no: String,
    pub refund_key: Option<String>,
    pub amount_fen: u64,
    pub reason: String,
    pub started_by: String,
    pub status: String,
    pub confirm_url: Option<String>,
    pub detail: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
}

impl Refund {
    pub fn line(&self) -> RefundLine {
        RefundLine {
            id: self.id,
            request_no: self.request_no.clone(),
            amount_fen: self.amount_fen,
            status: self.status.clone(),
            given_up: self.status == crate::domain::refunds::FAILED
                && self
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(crate::domain::refunds::GIVEN_UP)),
            unnamed: self.started_by == crate::domain::refunds::STARTED_BY_GATEWAY
                && self.request_no.starts_with(crate::domain::refunds::UNNAMED),
        }
    }

    pub fn amount(&self) -> String {
        format!("{}.{:02}", self.amount_fen / 100, self.amount_fen % 100)
    }
}

/// A refund to start (stored PENDING before the provider is called).
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub merchant_id: String,
    pub out_trade_no: String,
    pub request_no: String,
    pub refund_key: Option<String>,
    pub amount_fen: u64,
    pub reason: String,
    pub started_by: String,
}

/// What [`Ledger::begin_refund`] did.
#[derive(Debug, Clone)]
pub enum RefundBegun {
    /// Stored PENDING: call the provider with its request_no.
    New(Refund),
    /// The same refund_key was used before: this is that refund (nothing new stored).
    Existing(Refund),
    /// The money rules refused it.
    Refused(refunds::Refusal),
    /// There is no such payment.
    UnknownPayment,
}

/// What settling a refund or applying a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundApplied {
    /// The refund changed (and with a success the payment's status and refunded total).
    Settled {
        refund_id: i64,
        status: String,
        payment_status: String,
    },
    /// A refund started elsewhere was recorded.
    Recorded {
        refund_id: i64,
        payment_status: String,
    },
    /// Nothing new.
    Known,
    /// Held for review (the payment flagged), not applied.
    Mismatch(String),
    /// No such payment.
    UnknownPayment,
}

/// A refund's result, for [`Ledger::settle_refund`].
#[derive(Debug, Clone)]
pub struct RefundResult<'a> {
    pub merchant_id: &'a str,
    pub refund_id: i64,
    /// `SUCCESS` or `FAILED`.
    pub status: &'static str,
    pub detail: Option<&'a str>,
    /// When the provider completed it (stored UTC), else now.
    pub completed_at: Option<&'a str>,
    /// Where the shop wants events, if anywhere.
    pub webhook_url: Option<&'a str>,
}

/// What a provider's message says of the payment itself: kept where the payment has none yet
/// (a refund's report that arrived before the payment's own notification), never overwritten.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaidFacts<'a> {
    pub trade_no: &'a str,
    pub buyer_email: Option<&'a str>,
    /// As the provider gave it (`gmt_payment`, Beijing wall-clock text), as a notification's.
    pub paid_at: Option<&'a str>,
    /// The message says the trade is finished (`TRADE_FINISHED`): no refund of it any more
    /// (kept as the payment's `finished_at`, also when the message's refund is what it applies).
    pub finished: bool,
}

/// A provider's refund report to apply (from a notification or a query).
#[derive(Debug, Clone)]
pub struct ReportEffect<'a> {
    pub merchant_id: &'a str,
    pub out_trade_no: &'a str,
    pub report: refunds::Report,
    /// The notification's id: the key that makes a replay change nothing.
    pub notify_id: &'a str,
    pub paid: PaidFacts<'a>,
    pub completed_at: Option<&'a str>,
    pub webhook_url: Option<&'a str>,
    /// The message the report came in, stored with its outcome in the report's own
    /// transaction (None: the caller stores nothing, or stores it itself).
    pub record: Option<ReportRecord<'a>>,
}

/// The notification (or trade query's answer) that carried a refund report: stored as received
/// with what the report did, in the transaction that applied it, so a crash keeps both or
/// neither (and the provider's resend then applies it).
#[derive(Debug, Clone)]
pub struct ReportRecord<'a> {
    pub raw: super::RawNotification<'a>,
    /// Its record; the outcome and detail are filled in from what the report did
    /// ([`RefundApplied::outcome`]).
    pub record: super::NotificationRecord,
    /// The message finished the trade (`TRADE_FINISHED`): said in the detail.
    pub finished: bool,
    /// Where the report came from (`query`), said first in the detail.
    pub source: Option<&'a str>,
}

impl RefundApplied {
    /// The outcome and detail recorded for the message that carried the report.
    pub fn outcome(
        &self,
        finished: bool,
        source: Option<&str>,
    ) -> (crate::notify::NotifyOutcome, String) {
        use crate::notify::NotifyOutcome as O;
        let (outcome, detail) = match self {
            RefundApplied::Settled {
                refund_id,
                status,
                payment_status,
            } => (
                O::Applied,
                format!("refund {refund_id} {status}; payment {payment_status}"),
            ),
            RefundApplied::Recorded {
                refund_id,
                payment_status,
            } => (
                O::Applied,
                format!(
                    "refund {refund_id} started outside payhost recorded; payment {payment_status}"
                ),
            ),
            RefundApplied::Known => (O::Duplicate, "refund already known".to_owned()),
            RefundApplied::Mismatch(reason) => (O::Mismatch, format!("held for review: {reason}")),
            RefundApplied::UnknownPayment => (O::UnknownOrder, "unknown order".to_owned()),
        };
        // A finishing message kept the finish with its refund (`fill_paid`): said too. (Not of
        // one held for review: another trade's keeps no finish.)
        let detail = if finished
            && !matches!(
                self,
                RefundApplied::UnknownPayment | RefundApplied::Mismatch(_)
            ) {
            format!("{detail}; {}", crate::domain::events::FINISHED_WORDS)
        } else {
            detail
        };
        let detail = match source {
            Some(s) => format!("source: {s}; {detail}"),
            None => detail,
        };
        (outcome, detail)
    }
}

/// One entry of a payment's own timeline (beside notifications, refunds and webhook attempts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentEvent {
    pub at: String,
    pub kind: String,
    pub detail: Option<String>,
}

/// One delivery attempt of a shop webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAttempt {
    pub webhook_id: i64,
    pub event_type: String,
    pub at: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// What a filter of the payment list holds, every page of it (the admin list's 合计 line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterTotals {
    pub count: u64,
    pub total_fen: u64,
    pub paid_count: u64,
    pub paid_fen: u64,
    pub refunded_fen: u64,
}

impl FilterTotals {
    /// From [`super::ledger_sql::totals_sql`]'s columns, in its order.
    pub fn from_columns([count, total, paid_count, paid, refunded]: [i64; 5]) -> FilterTotals {
        let n = |v: i64| v.max(0) as u64;
        FilterTotals {
            count: n(count),
            total_fen: n(total),
            paid_count: n(paid_count),
            paid_fen: n(paid),
            refunded_fen: n(refunded),
        }
    }
}

/// Paid count and amount of one Beijing day (for the back office's chart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayTotal {
    /// `YYYY-MM-DD`, Beijing date.
    pub date: String,
    pub paid_count: u64,
    pub paid_fen: u64,
    pub refunded_fen: u64,
}

#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Payments matching `f`, newest first, at most `f.limit` (+1 when the caller asks one more
    /// to know whether a next page exists: it passes `limit + 1`).
    async fn list_payments(&self, f: &PaymentFilter) -> Result<Vec<LedgerPayment>>;
    /// A payment with its refunded total.
    async fn ledger_payment(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<LedgerPayment>>;
    /// A payment by the provider's trade number (legacy refund notifies name only that).
    async fn payment_by_trade_no(&self, merchant: &str, trade_no: &str) -> Result<Option<Payment>>;
    /// Counts and sums of every payment matching `f` (its cursor and limit ignored).
    async fn filter_totals(&self, f: &PaymentFilter) -> Result<FilterTotals>;
    /// Every merchant (or those named) with its payment counts.
    async fn merchant_counts(&self) -> Result<Vec<MerchantCounts>>;
    /// Paid count and amount per Beijing day of the payments created in [from, to) (stored UTC),
    /// of one merchant or all.
    async fn daily_totals(
        &self,
        merchant: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<DayTotal>>;

    /// Refunds matching `f`, newest first, at most `f.limit` (the caller asks one more to know
    /// whether a next page exists, as for payments).
    async fn list_refunds(&self, f: &RefundFilter) -> Result<Vec<Refund>>;
    /// Counts and sums of every refund matching `f` (its cursor and limit ignored).
    async fn refund_totals(&self, f: &RefundFilter) -> Result<RefundTotals>;
    /// A payment's refunds, oldest first.
    async fn refunds_for(&self, merchant: &str, out_trade_no: &str) -> Result<Vec<Refund>>;
    /// A payment with its refunded total, notifications, refunds, events and webhook attempts,
    /// all read in one transaction: a page never shows a refund's success beside the payment
    /// as it was before it (separate reads could straddle the refund's commit).
    async fn payment_record(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<PaymentRecord>>;
    /// One refund.
    async fn refund(&self, merchant: &str, id: i64) -> Result<Option<Refund>>;
    /// Claims the first send of a refund just begun: true (and `last_sent_at` set to the store's
    /// clock) only while it is PENDING and nobody has sent it; false when a recovery sweep (this
    /// process's, another replica's) found it unsent and claimed it first: that sweep sends it.
    async fn claim_first_refund_send(&self, merchant: &str, id: i64) -> Result<bool>;
    /// Claims the send again of a PENDING refund that waits for no seller: true (and
    /// `last_sent_at` set to the store's clock) only when it was created, and last sent, more
    /// than `quiet_s` seconds ago; false when it ended, or a send may still be on its way (this
    /// process's, another replica's). The store's clock — PostgreSQL's, for replicas — decides,
    /// so a replica whose clock runs ahead cannot take a send still on its way elsewhere.
    async fn claim_refund_send(&self, merchant: &str, id: i64, quiet_s: u64) -> Result<bool>;
    /// Refunds of every merchant still PENDING (those waiting for the seller, with a
    /// `confirm_url`, too), with an id above `after_id`, created before `before` (stored UTC),
    /// by id: the ones whose answer is missing, a page at a time.
    async fn pending_refunds(&self, after_id: i64, before: &str, limit: u32)
        -> Result<Vec<Refund>>;
    /// Refunds completed (SUCCESS) in [from, to) (stored UTC), of one merchant.
    async fn refunds_completed(&self, merchant: &str, from: &str, to: &str) -> Result<Vec<Refund>>;
    /// In one transaction: the same refund_key returns its refund; otherwise the money rules
    /// decide and the refund is stored PENDING.
    async fn begin_refund(&self, new: &NewRefund) -> Result<RefundBegun>;
    /// Keeps where the seller confirms the refund, and the provider's words, while it is PENDING
    /// under `request_no` (a late answer never rewrites a settled refund, nor one numbered again
    /// meanwhile: its page would name a number payhost no longer knows).
    async fn refund_started(
        &self,
        merchant: &str,
        id: i64,
        request_no: &str,
        confirm_url: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()>;
    /// Removes a refund still PENDING that never reached the provider (the component refused
    /// what it was asked to send): no refund existed, so none is listed and its refund_key is
    /// free again. False when it is not PENDING any more.
    async fn discard_refund(&self, merchant: &str, id: i64) -> Result<bool>;
    /// Gives a PENDING refund that has no seller's page yet (its start was cut short) a new
    /// request number: the legacy API wants a `batch_no` of the day it is confirmed, and the old
    /// number never reached anyone. False when it has a page, or ended.
    async fn renumber_refund(&self, merchant: &str, id: i64, request_no: &str) -> Result<bool>;
    /// Ends a PENDING (or FAILED, when it succeeded after all) refund; a success moves the payment
    /// (PARTIALLY_REFUNDED or REFUNDED) and queues its webhook, in one transaction.
    async fn settle_refund(&self, r: &RefundResult<'_>) -> Result<RefundApplied>;
    /// Applies a provider's refund report: matched by request_no, recorded as started by the
    /// gateway, or held for review (the payment flagged); once per `notify_id`.
    async fn apply_refund_report(&self, e: &ReportEffect<'_>) -> Result<RefundApplied>;

    /// Keeps the provider's finish of trade `trade_no` on a payment paid by that trade, whose
    /// finishing message applied nothing else ([`super::refund_rules::keep_finish`]); false when nothing was written.
    async fn keep_finish(&self, merchant: &str, out_trade_no: &str, trade_no: &str)
        -> Result<bool>;

    /// Closes an unpaid payment here (TRADE_CLOSED, `payment.closed` queued); false when it was
    /// not waiting any more.
    async fn close_payment(
        &self,
        merchant: &str,
        out_trade_no: &str,
        webhook_url: Option<&str>,
    ) -> Result<bool>;

    /// Clears a payment's review flag when the payment is still as the person saw it (`reason`
    /// and `updated_at` unchanged: a flag raised again meanwhile stays), with a timeline entry
    /// `review` naming `by`, in one commit; false when there was nothing (or something else) to
    /// clear.
    async fn clear_review(
        &self,
        merchant: &str,
        out_trade_no: &str,
        seen: &ReviewSeen,
        by: &str,
    ) -> Result<bool>;

    /// Adds an entry to a payment's timeline; with `once`, only when the payment has no entry
    /// of this kind and detail yet (what anyone can repeat at will, a buyer's return, is kept
    /// once, not a row per replay).
    async fn record_event(
        &self,
        merchant: &str,
        out_trade_no: &str,
        kind: &str,
        detail: Option<&str>,
        once: bool,
    ) -> Result<()>;
    async fn events_for(&self, merchant: &str, out_trade_no: &str) -> Result<Vec<PaymentEvent>>;
    /// Keeps one delivery attempt of a webhook.
    async fn record_webhook_attempt(
        &self,
        merchant: &str,
        out_trade_no: &str,
        attempt: &WebhookAttempt,
    ) -> Result<()>;
    async fn webhook_attempts_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<WebhookAttempt>>;
}

/// The out_trade_no a webhook's body names (for its attempts on the payment's timeline).
pub fn webhook_order(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("out_trade_no")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            created_at: "2024-01-01T00:00:00Z".into(),
            merchant_id: "m-1".into(),
            out_trade_no: "订单/1 a".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("!!"), None);
        assert_eq!(Cursor::decode("YWJj"), None);
    }
}
