//! Durable state: merchants, payments, raw notifications (append-only, each stored with the
//! outcome of its processing in one commit), the applied notify_ids, and the outbox of shop
//! webhooks.
//!
//! [`Store`] is small on purpose so a PostgreSQL implementation can sit beside [`sqlite`] for hosts
//! that run several replicas. Every state change happens in one transaction with its dedupe key
//! and its webhook, so a crash leaves either all of it or none.

pub mod sqlite;

use crate::config::MerchantSettings;
use anyhow::Result;
use serde::Serialize;

pub const WAIT_BUYER_PAY: &str = "WAIT_BUYER_PAY";
pub const TRADE_SUCCESS: &str = "TRADE_SUCCESS";
pub const TRADE_FINISHED: &str = "TRADE_FINISHED";
pub const TRADE_CLOSED: &str = "TRADE_CLOSED";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub merchant_id: String,
    pub out_trade_no: String,
    pub subject: String,
    pub total_fen: u64,
    pub seller: String,
    pub return_url: String,
    pub status: String,
    pub request_token: Option<String>,
    pub pay_url: Option<String>,
    pub trade_no: Option<String>,
    pub buyer_email: Option<String>,
    pub paid_at: Option<String>,
    pub review: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Payment {
    pub fn total_fee(&self) -> String {
        format!("{}.{:02}", self.total_fen / 100, self.total_fen % 100)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationRecord {
    pub raw_id: i64,
    pub merchant_id: String,
    pub received_at: String,
    pub notify_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub trade_status: Option<String>,
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

/// A notification exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct RawNotification<'a> {
    pub merchant_id: &'a str,
    pub remote: Option<&'a str>,
    pub body: &'a [u8],
}

/// The verified facts a notification carries into a state change.
#[derive(Debug, Clone)]
pub struct NotificationEffect<'a> {
    pub merchant_id: &'a str,
    pub notify_id: &'a str,
    pub out_trade_no: &'a str,
    pub trade_status: &'a str,
    pub trade_no: &'a str,
    pub buyer_email: Option<&'a str>,
    pub paid_at: Option<&'a str>,
    /// Where the shop wants events, if anywhere.
    pub webhook_url: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The payment moved from one status to another; a webhook was queued if configured.
    Changed { from: String, to: String },
    /// Genuine and new, but it does not move the payment (e.g. TRADE_SUCCESS after TRADE_FINISHED).
    NoChange,
    /// This notify_id was applied before: nothing changed.
    Duplicate,
    /// The payment does not exist.
    UnknownOrder,
}

impl Applied {
    /// The outcome and detail recorded for the notification.
    pub fn outcome(&self) -> (&'static str, Option<String>) {
        match self {
            Applied::Changed { from, to } => ("applied", Some(format!("{from} -> {to}"))),
            Applied::NoChange => ("no_change", None),
            Applied::Duplicate => ("duplicate", None),
            Applied::UnknownOrder => ("unknown_order", None),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub id: i64,
    pub event_id: String,
    pub merchant_id: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
}

pub enum Inserted {
    New,
    Existing(Box<Payment>),
}

pub trait Store: Send + Sync + 'static {
    fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>>;
    fn merchant_ids(&self) -> Result<Vec<String>>;
    /// Saves settings from the admin page or the API.
    fn save_merchant(&self, id: &str, settings: &MerchantSettings) -> Result<()>;
    /// Seeds a merchant from payhost.toml: applied when new, or when the table changed since the
    /// last seed (settings saved through the API are otherwise kept).
    fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool>;

    fn insert_payment(&self, p: &Payment) -> Result<Inserted>;
    fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()>;
    fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>>;
    fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>>;
    fn flag_for_review(&self, merchant: &str, out_trade_no: &str, reason: &str) -> Result<()>;

    /// Stores a notification exactly as received together with the result of its processing
    /// (`record`, whose `raw_id` is filled in), in one commit; returns the raw notification's id.
    /// One durable commit per notification: one whose processing is cut short is neither stored
    /// nor acknowledged, so the provider sends it again.
    fn record_notification(
        &self,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<i64>;
    fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>>;
    fn recent_notifications(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>>;
    fn raw_notification_count(&self) -> Result<u64>;

    /// In one transaction: stores the raw notification, claims the notify_id, moves the payment,
    /// queues the webhook and stores `record` with the outcome and detail of what happened, so a
    /// crash can never leave an applied notification without its raw form and record.
    fn apply_notification(
        &self,
        effect: &NotificationEffect<'_>,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<Applied>;

    fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<WebhookJob>>;
    fn webhook_delivered(&self, id: i64) -> Result<()>;
    fn webhook_failed(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<()>;
    fn pending_webhooks(&self) -> Result<u64>;
}

/// The next status for a provider's trade_status, or None when it does not move the payment.
/// Paid orders never go back; a paid order is never closed by a notification.
pub fn next_status(current: &str, trade_status: &str) -> Option<&'static str> {
    match (current, trade_status) {
        (WAIT_BUYER_PAY, "TRADE_SUCCESS") => Some(TRADE_SUCCESS),
        (WAIT_BUYER_PAY | TRADE_SUCCESS, "TRADE_FINISHED") => Some(TRADE_FINISHED),
        (WAIT_BUYER_PAY, "TRADE_CLOSED") => Some(TRADE_CLOSED),
        _ => None,
    }
}

pub fn now_rfc3339() -> String {
    // UTC, second precision, without a date-time crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_unix(secs)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian).
pub fn format_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_only_move_forward() {
        assert_eq!(
            next_status(WAIT_BUYER_PAY, "TRADE_SUCCESS"),
            Some(TRADE_SUCCESS)
        );
        assert_eq!(
            next_status(TRADE_SUCCESS, "TRADE_FINISHED"),
            Some(TRADE_FINISHED)
        );
        assert_eq!(next_status(TRADE_FINISHED, "TRADE_SUCCESS"), None);
        assert_eq!(next_status(TRADE_SUCCESS, "TRADE_CLOSED"), None);
        assert_eq!(next_status(WAIT_BUYER_PAY, "WAIT_BUYER_PAY"), None);
        assert_eq!(next_status(TRADE_CLOSED, "TRADE_SUCCESS"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_388_577_610), "2014-01-01T12:00:10Z");
        assert_eq!(format_unix(1_709_208_000), "2024-02-29T12:00:00Z");
    }
}
