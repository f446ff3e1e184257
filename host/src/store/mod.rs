//! Durable state: merchants, payments, raw notifications (append-only, each stored with the
//! outcome of its processing in one commit), the applied notify_ids, and the outbox of shop
//! webhooks.
//!
//! [`Store`] is small on purpose so a PostgreSQL implementation can sit beside [`sqlite`] for hosts
//! that run several replicas. Every state change happens in one transaction with its dedupe key
//! and its webhook, so a crash leaves either all of it or none.

pub mod admin;
pub mod ledger;
pub mod postgres;
pub mod sqlite;

use crate::config::MerchantSettings;
use anyhow::Result;
use serde::Serialize;

pub use crate::domain::state::{
    PARTIALLY_REFUNDED, REFUNDED, TRADE_CLOSED, TRADE_FINISHED, TRADE_SUCCESS, WAIT_BUYER_PAY,
};

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

/// How much of a refused notification's body is kept (the rest is summed up by size and SHA-256).
pub const REFUSED_HEAD_BYTES: usize = 1024;
/// How much of a refused notification's detail (the component's reason) is kept.
const REFUSED_DETAIL_CHARS: usize = 512;

/// The bounded form of a notification whose sender proved nothing: the first
/// [`REFUSED_HEAD_BYTES`] of its body, its size and hex SHA-256, and its record with the detail
/// cut short. Both stores keep exactly this.
pub struct RefusedRecord {
    pub merchant_id: String,
    pub remote: Option<String>,
    pub head: Vec<u8>,
    pub size: i64,
    pub sha256: String,
    pub record: NotificationRecord,
}

impl RefusedRecord {
    pub fn new(raw: &RawNotification<'_>, record: &NotificationRecord) -> RefusedRecord {
        use sha2::{Digest, Sha256};
        let mut record = record.clone();
        if let Some(d) = &mut record.detail {
            if d.chars().count() > REFUSED_DETAIL_CHARS {
                *d = d.chars().take(REFUSED_DETAIL_CHARS).collect::<String>() + "…";
            }
        }
        RefusedRecord {
            merchant_id: raw.merchant_id.to_owned(),
            remote: raw.remote.map(|r| r.chars().take(64).collect()),
            head: raw.body[..raw.body.len().min(REFUSED_HEAD_BYTES)].to_vec(),
            size: raw.body.len() as i64,
            sha256: hex::encode(Sha256::digest(raw.body)),
            record,
        }
    }
}

/// The verified facts a notification carries into a state change.
#[derive(Debug, Clone)]
pub struct NotificationEffect<'a> {
    pub merchant_id: &'a str,
    pub notify_id: &'a str,
    pub out_trade_no: &'a str,
    /// The provider's status text (recorded); the transition follows `event`.
    pub trade_status: &'a str,
    pub event: crate::domain::state::TradeEvent,
    pub trade_no: &'a str,
    pub buyer_email: Option<&'a str>,
    pub paid_at: Option<&'a str>,
    /// Where the shop wants events, if anywhere.
    pub webhook_url: Option<&'a str>,
    /// `refund_status` of the notification (`REFUND_SUCCESS` for a refund), if any.
    pub refund_status: Option<&'a str>,
    /// `gmt_refund` of the notification, if any.
    pub gmt_refund: Option<&'a str>,
}

pub use crate::domain::events::Applied;
pub use crate::domain::state::TradeEvent;

#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub id: i64,
    pub event_id: String,
    pub merchant_id: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
    /// When it was queued (or last resent from the admin page), ms since the epoch.
    pub created_ms: i64,
}

/// A webhook given up on after the retry window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadWebhook {
    pub id: i64,
    pub event_id: String,
    pub merchant_id: String,
    pub event_type: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead_at: String,
}

/// A per-merchant API token (never its value: only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub merchant_id: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// What [`Store::delete_merchant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantRemoval {
    /// The merchant and everything stored under it are gone (`payments` of them with it).
    Removed { payments: u64 },
    /// Nothing was removed: the merchant has payments and they were not to go with it.
    HasPayments { payments: u64, paid: u64 },
    /// There is no such merchant.
    Unknown,
}

pub enum Inserted {
    New,
    Existing(Box<Payment>),
}

/// Everything a host stores; the ledger's queries and refunds are [`ledger::Ledger`]'s, the admin
/// pages' users, sessions and audit log [`admin::AdminStore`]'s.
pub trait Store: ledger::Ledger + admin::AdminStore + Send + Sync + 'static {
    fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>>;
    fn merchant_ids(&self) -> Result<Vec<String>>;
    /// Saves settings from the admin page or the API.
    fn save_merchant(&self, id: &str, settings: &MerchantSettings) -> Result<()>;
    /// How a merchant row came to be: its source (`config` or `api`) and the hash of the
    /// payhost.toml table it was last seeded from.
    fn merchant_origin(&self, id: &str) -> Result<Option<(String, Option<String>)>>;
    /// Rewrites a merchant's stored settings without changing its source; `config_hash` replaces
    /// the recorded hash when given (an upgrade that only changed how the hash is computed).
    fn update_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: Option<&str>,
    ) -> Result<()>;
    /// Seeds a merchant from payhost.toml: applied when new, or when the table changed since the
    /// last seed (settings saved through the API are otherwise kept).
    fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool>;

    /// Deletes a merchant with its API tokens and its notifications, in one transaction. A
    /// merchant that has payments is left as it is (`HasPayments`) unless `with_payments`, which
    /// deletes its payments, applied notify ids and webhooks too: the caller decides that they
    /// are test payments (money records never vanish without that decision).
    fn delete_merchant(&self, id: &str, with_payments: bool) -> Result<MerchantRemoval>;

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
    /// Payments still `WAIT_BUYER_PAY` created between `created_after` and `created_before`
    /// (RFC 3339), oldest first: the candidates of lost-notify recovery.
    fn waiting_payments(
        &self,
        created_after: &str,
        created_before: &str,
        limit: u32,
    ) -> Result<Vec<Payment>>;
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
    /// Stores a notification that was never verified (its sender proved nothing) as a bounded
    /// [`RefusedRecord`], with its result, in one commit; then keeps only the newest `quota` of the
    /// merchant's refused notifications. Returns the raw notification's id.
    fn record_refused_notification(&self, refused: RefusedRecord, quota: u32) -> Result<i64>;
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
    /// Gives up on a webhook (dead letter): it is no longer due, and listed on the admin page.
    fn webhook_dead(&self, id: i64, error: &str) -> Result<()>;
    /// Webhooks not delivered and not given up on.
    fn pending_webhooks(&self) -> Result<u64>;
    fn dead_webhooks(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<DeadWebhook>>;
    /// Queues a dead-lettered webhook again (a fresh retry window); false if there is none.
    fn resend_webhook(&self, merchant: &str, id: i64) -> Result<bool>;

    /// Deletes up to `batch` of the oldest raw notifications received before `before`
    /// (RFC 3339), with their results; returns how many.
    fn prune_raw_notifications(&self, before: &str, batch: u32) -> Result<u64>;
    /// Deletes up to `batch` of the oldest refused notifications received before `before`, with
    /// their results; returns how many.
    fn prune_refused_notifications(&self, before: &str, batch: u32) -> Result<u64>;

    /// Admin sessions: stored by the hash of the cookie's random id.
    fn create_session(&self, id_hash: &str, csrf: &str, expires_ms: i64) -> Result<()>;
    /// The session's CSRF token, if the session exists and has not expired.
    fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>>;
    fn delete_session(&self, id_hash: &str) -> Result<()>;

    /// Per-merchant API tokens, stored by hash.
    fn create_token(&self, merchant: &str, token_hash: &str, label: &str) -> Result<i64>;
    /// The merchant of a live (unrevoked) token.
    fn token_merchant(&self, token_hash: &str) -> Result<Option<String>>;
    fn tokens(&self, merchant: Option<&str>) -> Result<Vec<TokenInfo>>;
    /// Revokes a token (of `merchant` when given); false if there was no such live token.
    fn revoke_token(&self, id: i64, merchant: Option<&str>) -> Result<bool>;

    /// Whether the database answers (`/readyz`).
    fn ready(&self) -> Result<()> {
        self.pending_webhooks().map(|_| ())
    }
}

/// Opens the store the configuration names: PostgreSQL for a `postgres://` URL, else the SQLite
/// file.
pub fn open(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => {
            // A webhook is leased for longer than one attempt can take (connect + answer).
            let attempt = std::time::Duration::from_millis(config.webhooks.timeout_ms);
            let opts = postgres::PgOptions {
                pool_size: config.database_pool_size,
                lease: attempt * 2 + std::time::Duration::from_secs(5),
            };
            std::sync::Arc::new(postgres::PostgresStore::open(url, &opts)?)
        }
        None => std::sync::Arc::new(sqlite::SqliteStore::open(&config.database)?),
    })
}

pub use crate::domain::events::{event_id, plan_notification, Plan, PlannedWebhook};

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
    fn dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_388_577_610), "2014-01-01T12:00:10Z");
        assert_eq!(format_unix(1_709_208_000), "2024-02-29T12:00:00Z");
    }
}
