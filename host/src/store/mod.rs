//! Durable state: merchants, payments, raw notifications (append-only, each stored with the
//! outcome of its processing in one commit), the applied notify_ids, and the outbox of shop
//! webhooks.
//!
//! The store is async end to end and split by aggregate ([`Merchants`], [`Payments`],
//! [`Notifications`], [`Webhooks`], [`Access`]); [`Store`] is all of them for one backend, the
//! handle callers hold. Two backends: [`sqlite`] (embedded, one replica) and [`postgres`] (several
//! replicas). The money rules are written once over small transaction interfaces each backend
//! implements: applying a notification and refused-notify bookkeeping in [`rules`] (over
//! [`rules::NotifyTx`]), refunds and closes in [`refund_rules`] (over [`refund_rules::RefundTx`]). Every state change happens in one transaction with its dedupe key and its webhook,
//! so a crash leaves either all of it or none.
//!
//! Adding a method: declare it on its aggregate trait here, then implement it in
//! `sqlite/<aggregate>.rs` (a read with `self.read(..)`, a write with `self.write(..)`) and
//! `postgres/<aggregate>.rs` (`self.client().await?` or `self.transaction(..)`). A rule about
//! money goes into [`rules`] or [`refund_rules`], over primitives added to their transaction
//! traits.

pub mod admin;
pub mod ledger;
pub mod ledger_sql;
pub mod postgres;
pub mod refund_rules;
pub mod rules;
pub mod sqlite;

use crate::config::MerchantSettings;
use anyhow::Result;
use async_trait::async_trait;
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
    /// When the provider reported the trade finished (TRADE_FINISHED): no refund can start
    /// afterwards, whatever the status (a refund reported around it moves the status on).
    pub finished_at: Option<String>,
}

impl Payment {
    /// Whether the provider finished the trade (no refund of it is possible any more).
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some() || self.status == TRADE_FINISHED
    }

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
    /// On PostgreSQL, the lease this sender holds on the row (its `lease_until` when taken,
    /// µs since the epoch); `None` on SQLite (one sender, no leases).
    pub lease: Option<i64>,
}

impl WebhookJob {
    /// The row as this sender took it, for reporting how its send went.
    pub fn taken(&self) -> Taken {
        Taken {
            id: self.id,
            lease: self.lease,
        }
    }
}

/// An outbox row as one sender took it. A report of a failure or a give-back carries the lease
/// it was sent under, and changes nothing once another replica has leased the row since (this
/// sender was slower than its lease): the other's send is not made due again under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Taken {
    pub id: i64,
    pub lease: Option<i64>,
}

/// A webhook given up on after the retry window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadWebhook {
    pub id: i64,
    pub event_id: String,
    pub merchant_id: String,
    pub event_type: String,
    /// The order the event is about (from its body).
    pub out_trade_no: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead_at: String,
}

/// The database cannot be reached (no connection to be had, or the one in use was closed):
/// a request that needs it is told to come back (503), not that payhost failed (500).
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database cannot be reached")
    }
}

impl std::error::Error for Unavailable {}

/// Whether a store error means the database cannot be reached or written now ([`Unavailable`];
/// a PostgreSQL connection closed under a query; SQLite's full disk, lock held elsewhere past
/// the busy timeout, I/O error, read-only file or lack of memory): the request may succeed
/// later, so it is told to come back (503), not that payhost failed (500).
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    use rusqlite::ErrorCode as C;
    e.downcast_ref::<Unavailable>().is_some()
        || e.chain().any(|c| {
            c.downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|pg| pg.is_closed())
                || c.downcast_ref::<rusqlite::Error>()
                    .and_then(rusqlite::Error::sqlite_error_code)
                    .is_some_and(|code| {
                        matches!(
                            code,
                            C::DiskFull
                                | C::DatabaseBusy
                                | C::DatabaseLocked
                                | C::SystemIoFailure
                                | C::ReadOnly
                                | C::CannotOpen
                                | C::OutOfMemory
                        )
                    })
        })
}

/// The webhook sends a sender has under way: their outbox ids, and how many of each merchant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    pub ids: Vec<i64>,
    pub per_merchant: Vec<(String, u32)>,
}

/// A webhook the shop has refused at least once and that is still being retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryingWebhook {
    pub id: i64,
    pub merchant_id: String,
    pub event_type: String,
    /// The order the event is about (from its body).
    pub out_trade_no: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When it was queued, and when it is sent next (ms since the epoch).
    pub created_ms: i64,
    pub next_attempt_ms: i64,
}

/// A per-merchant API token (never its value: only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub merchant_id: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Who made it, as the audit log names them (a user's name, `admin_password`, `api:…`, a
    /// command); None for a token made before schema version 8 (SQLite) / 7 (PostgreSQL).
    pub created_by: Option<String>,
}

/// What [`Store::delete_merchant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantRemoval {
    /// The merchant and everything stored under it are gone (`payments` of them with it), its
    /// tokens and the owners' grants of it too (`owner_grants` of them): an id used again later
    /// names another shop, which the earlier owner must not see.
    Removed { payments: u64, owner_grants: u64 },
    /// Nothing was removed: the merchant has payments and they were not to go with it.
    HasPayments { payments: u64, paid: u64 },
    /// There is no such merchant.
    Unknown,
}

pub enum Inserted {
    New,
    Existing(Box<Payment>),
    /// Its merchant is gone (removed while the payment was being started): nothing inserted.
    UnknownMerchant,
}

/// What a merchant's row must hold for [`Merchants::save_merchant`] to write (a compare-and-set:
/// settings are saved whole, so a save built from an older read would undo what another request
/// changed since: narrowed shop origins, a rotated key, a removal).
#[derive(Clone, Copy, Debug)]
pub enum Expected<'a> {
    /// Whatever is there (seeding, tests).
    Anything,
    /// No merchant of this id: a new one.
    Absent,
    /// Exactly this stored text (what [`Merchants::merchant_stored`] read).
    Stored(&'a str),
}

impl<'a> Expected<'a> {
    /// The row as read before a change: absent, or this text.
    pub fn from_read(stored: Option<&'a str>) -> Expected<'a> {
        stored.map_or(Expected::Absent, Expected::Stored)
    }
}

/// Merchants: their settings, where they came from, and their removal.
#[async_trait]
pub trait Merchants: Send + Sync {
    async fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>>;
    /// A merchant's settings as stored (their JSON text), read by key: a caller that keeps the
    /// parsed settings compares it to know whether they changed since.
    async fn merchant_stored(&self, id: &str) -> Result<Option<String>>;
    async fn merchant_ids(&self) -> Result<Vec<String>>;
    /// Saves settings from the admin page or the API, if the row is still what `expected` says
    /// (false, and nothing written, when another request changed or removed it meanwhile).
    async fn save_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        expected: Expected<'_>,
    ) -> Result<bool>;
    /// How a merchant row came to be: its source (`config` or `api`) and the hash of the
    /// payhost.toml table it was last seeded from.
    async fn merchant_origin(&self, id: &str) -> Result<Option<(String, Option<String>)>>;
    /// Rewrites a merchant's stored settings without changing its source, if they are still
    /// `expected` (the text [`Merchants::merchant_stored`] read: false, nothing written, when a
    /// save on another replica changed them meanwhile); `config_hash` replaces the recorded hash
    /// when given (an upgrade that only changed how the hash is computed).
    async fn update_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: Option<&str>,
        expected: &str,
    ) -> Result<bool>;
    /// Seeds a merchant from payhost.toml: applied when new, or when the table changed since the
    /// last seed (settings saved through the API are otherwise kept).
    async fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool>;
    /// Deletes a merchant with its API tokens and its notifications, in one transaction. A
    /// merchant that has payments is left as it is (`HasPayments`) unless `with_payments`, which
    /// deletes its payments, applied notify ids and webhooks too: the caller decides that they
    /// are test payments (money records never vanish without that decision).
    async fn delete_merchant(&self, id: &str, with_payments: bool) -> Result<MerchantRemoval>;
}

/// Payments (orders) outside of notifications.
#[async_trait]
pub trait Payments: Send + Sync {
    async fn insert_payment(&self, p: &Payment) -> Result<Inserted>;
    async fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()>;
    async fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>>;
    async fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>>;
    /// Payments still `WAIT_BUYER_PAY` created from `created_after` (inclusive: recovery reads
    /// them a page at a time from a page's last creation time) to `created_before` (RFC 3339),
    /// oldest first: the candidates of lost-notify recovery.
    async fn waiting_payments(
        &self,
        created_after: &str,
        created_before: &str,
        limit: u32,
    ) -> Result<Vec<Payment>>;
    /// Adds `reason` to the payment's review note (the reasons already there stay:
    /// [`crate::domain::review::with_reason`]).
    async fn flag_for_review(&self, merchant: &str, out_trade_no: &str, reason: &str)
        -> Result<()>;
}

/// Notifications: stored raw with their results; applied ones move their payment. The writes are
/// the money rules of [`rules`], the same for every backend.
#[async_trait]
pub trait Notifications: Send + Sync {
    /// Stores a notification exactly as received together with the result of its processing
    /// (`record`, whose `raw_id` is filled in), in one commit; returns the raw notification's id.
    /// One durable commit per notification: one whose processing is cut short is neither stored
    /// nor acknowledged, so the provider sends it again.
    async fn record_notification(
        &self,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<i64>;
    /// Stores a notification that was never verified (its sender proved nothing) as a bounded
    /// [`RefusedRecord`], with its result, in one commit; then keeps only the newest `quota` of the
    /// merchant's refused notifications. Returns the raw notification's id.
    async fn record_refused_notification(&self, refused: RefusedRecord, quota: u32) -> Result<i64>;
    /// In one transaction: stores the raw notification, claims the notify_id, moves the payment,
    /// queues the webhook and stores `record` with the outcome and detail of what happened, so a
    /// crash can never leave an applied notification without its raw form and record.
    async fn apply_notification(
        &self,
        effect: &NotificationEffect<'_>,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<Applied>;
    async fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>>;
    /// The newest `limit` notifications, of one merchant or all, with one outcome or any.
    async fn recent_notifications(
        &self,
        merchant: Option<&str>,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>>;
    async fn raw_notification_count(&self) -> Result<u64>;
    /// Deletes up to `batch` of the oldest raw notifications received before `before`
    /// (RFC 3339), with their results; returns how many.
    async fn prune_raw_notifications(&self, before: &str, batch: u32) -> Result<u64>;
    /// Deletes up to `batch` of the oldest refused notifications received before `before`, with
    /// their results; returns how many.
    async fn prune_refused_notifications(&self, before: &str, batch: u32) -> Result<u64>;
}

/// The outbox of shop webhooks.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Up to `limit` webhooks due at `now_ms`, oldest first.
    async fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<WebhookJob>> {
        self.due_webhooks_fair(now_ms, limit, limit, &InFlight::default())
            .await
    }
    /// [`Webhooks::due_webhooks`] for a sender with `in_flight` sends under way: none of those,
    /// and at most `per_merchant` of a merchant counting its sends in flight, so a shop whose
    /// endpoint hangs does not take every send of the outbox from the other shops. On
    /// PostgreSQL each one returned is leased to the caller, who starts them all.
    async fn due_webhooks_fair(
        &self,
        now_ms: i64,
        limit: u32,
        per_merchant: u32,
        in_flight: &InFlight,
    ) -> Result<Vec<WebhookJob>>;
    /// Gives back sends this sender started and dropped unfinished (it is stopping): on
    /// PostgreSQL another replica may take them at once, not after their lease.
    async fn release_webhooks(&self, _taken: &[Taken]) -> Result<()> {
        Ok(())
    }
    /// A delivery stands whoever holds the row's lease: the shop has the event.
    async fn webhook_delivered(&self, id: i64) -> Result<()>;
    async fn webhook_failed(&self, job: Taken, next_attempt_ms: i64, error: &str) -> Result<()>;
    /// Gives up on a webhook (dead letter): it is no longer due, and listed on the admin page.
    async fn webhook_dead(&self, job: Taken, error: &str) -> Result<()>;
    /// Webhooks not delivered and not given up on.
    async fn pending_webhooks(&self) -> Result<u64>;
    async fn dead_webhooks(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<DeadWebhook>>;
    /// Webhooks the shop refused at least once, still being retried, oldest first (the admin
    /// shows them long before they are given up on).
    async fn retrying_webhooks(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RetryingWebhook>>;
    /// Queues a dead-lettered webhook again (a fresh retry window); false if there is none.
    async fn resend_webhook(&self, merchant: &str, id: i64) -> Result<bool>;
    /// Makes the webhooks being retried (of one merchant, or all) due now, once the shop is
    /// fixed, instead of at their next interval; a send in flight is left alone. How many.
    async fn retry_webhooks_now(&self, merchant: Option<&str>) -> Result<u64>;
}

/// Whether a token's maker is an admin user (whose removal revokes it): a user name, not
/// `admin_password`, `api:…` or a command (`payhost token`), which no user name can be.
pub fn maker_is_user(created_by: &str) -> bool {
    admin::valid_user_name(created_by) && created_by != crate::admin_users::RESERVED_NAME
}

/// Who may call: admin sessions and per-merchant API tokens (both stored by hash).
#[async_trait]
pub trait Access: Send + Sync {
    /// Admin sessions: stored by the hash of the cookie's random id.
    async fn create_session(&self, id_hash: &str, csrf: &str, expires_ms: i64) -> Result<()>;
    /// The session's CSRF token, if the session exists and has not expired.
    async fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Per-merchant API tokens, stored by hash. Made only while the merchant is stored, and,
    /// when `created_by` is an admin user ([`maker_is_user`]), while that user is: `None` when
    /// not (removed meanwhile: a token made beside a removal would outlive it, and reach whoever
    /// is given its id next, or keep the access of a user who is gone).
    async fn create_token(
        &self,
        merchant: &str,
        token_hash: &str,
        label: &str,
        created_by: &str,
    ) -> Result<Option<i64>>;
    /// A token for a merchant of payhost.toml that `serve` has not stored yet (the command
    /// line, before the first start).
    async fn create_token_for_configured(
        &self,
        merchant: &str,
        token_hash: &str,
        label: &str,
        created_by: &str,
    ) -> Result<i64>;
    /// The merchant of a live (unrevoked) token.
    async fn token_merchant(&self, token_hash: &str) -> Result<Option<String>>;
    async fn tokens(&self, merchant: Option<&str>) -> Result<Vec<TokenInfo>>;
    /// Revokes a token (of `merchant` when given); false if there was no such live token.
    async fn revoke_token(&self, id: i64, merchant: Option<&str>) -> Result<bool>;
}

/// The one handle callers hold (`Arc<dyn Store>`): every aggregate of one backend. Bring the
/// aggregates' methods into scope with `use crate::store::prelude::*`. The ledger's queries and
/// refunds are [`ledger::Ledger`]'s, the admin pages' users, sessions and audit log
/// [`admin::AdminStore`]'s.
#[async_trait]
pub trait Store:
    Merchants
    + Payments
    + Notifications
    + Webhooks
    + Access
    + ledger::Ledger
    + admin::AdminStore
    + 'static
{
    /// Whether the database answers (`/readyz`).
    async fn ready(&self) -> Result<()>;

    /// At a clean stop, once nothing writes any more: whatever the database keeps beside its
    /// own file is written into it (SQLite's `-wal`), so a copy of the file alone after a stop
    /// misses nothing. Nothing to do for a server database.
    async fn flush_for_stop(&self) -> Result<()> {
        Ok(())
    }
}

/// The traits whose methods callers of [`Store`] use.
pub mod prelude {
    pub use super::admin::AdminStore;
    pub use super::ledger::Ledger;
    pub use super::{Access, Merchants, Notifications, Payments, Store, Webhooks};
}

/// Whether opening a store may bring an older schema up to this payhost's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// `payhost serve` (and the demo): migrate, once, logged before and after.
    Apply,
    /// Every other command: a new database is made whole, but an older schema is refused. A
    /// command run beside a running older payhost (`token list`, say) must not upgrade the
    /// database under it: that payhost would refuse to start again on the newer schema.
    Refuse,
}

/// How to back up each backend before an upgrade.
pub const BACKUP_SQLITE: &str = "`payhost backup --to FILE`";
pub const BACKUP_POSTGRES: &str = "`pg_dump`";

/// Why a command refuses a database of an older schema (see [`Upgrade::Refuse`]); `backup`
/// says how to back this backend up.
pub fn schema_behind(current: i64, latest: usize, backup: &str) -> String {
    format!(
        "the database's schema is version {current} and this payhost's is {latest}: `payhost serve` upgrades it when it starts (back it up first: {backup}; README, \"Deployment: upgrading\"); other commands do not, so an older payhost still serving it keeps working"
    )
}

/// Before migrating a database of schema `current` to `latest`: refused for a command other than
/// `serve` when it is older ([`Upgrade::Refuse`]), and said in the log before the first step
/// when it is upgraded (a long step, a table rebuilt, must not look like a hang). Whether it is
/// an upgrade (not a new database, not current).
pub(crate) fn before_migrating(
    current: i64,
    latest: usize,
    upgrade: Upgrade,
    backup: &str,
) -> Result<bool> {
    let behind = current > 0 && (current as usize) < latest;
    if behind && upgrade == Upgrade::Refuse {
        anyhow::bail!(schema_behind(current, latest, backup));
    }
    if behind {
        tracing::info!(
            from = current,
            to = latest,
            "migrating the database schema; do not stop payhost until it says it migrated (each step commits whole or not at all)"
        );
    }
    Ok(behind)
}

/// What `check-config` says of a database of schema `current` (0: none yet) when this payhost's
/// is `latest`: nothing when it is current or new.
pub fn upgrade_note(current: i64, latest: usize, backup: &str) -> Option<String> {
    (current > 0 && (current as usize) < latest).then(|| {
        format!(
            "database: schema version {current}; `payhost serve` will upgrade it to {latest} when it starts, after which an older payhost refuses it: back it up first ({backup}; README, \"Deployment: upgrading\")"
        )
    })
}

/// Opens the store the configuration names: PostgreSQL for a `postgres://` URL, else the SQLite
/// file; an older schema is migrated (`payhost serve`).
pub async fn open(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    open_with(config, Upgrade::Apply).await
}

/// [`open`] for a command other than `serve`: an older schema is refused, not migrated.
pub async fn open_without_upgrade(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn Store>> {
    open_with(config, Upgrade::Refuse).await
}

async fn open_with(
    config: &crate::config::Config,
    upgrade: Upgrade,
) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => {
            // A webhook is leased for longer than one attempt can take (connect + answer).
            let attempt = std::time::Duration::from_millis(config.webhooks.timeout_ms);
            let opts = postgres::PgOptions {
                pool_size: config.database_pool_size,
                lease: attempt * 2 + std::time::Duration::from_secs(5),
            };
            std::sync::Arc::new(
                postgres::PostgresStore::open_with(url.expose(), &opts, upgrade).await?,
            )
        }
        None => std::sync::Arc::new(sqlite::SqliteStore::open_with(&config.database, upgrade)?),
    })
}

/// Whether the configured database has an admin user, read without changing anything (`None`
/// when that cannot be told).
pub async fn has_admin_user(config: &crate::config::Config) -> Option<bool> {
    match &config.database_url {
        Some(url) => postgres::has_admin_user(url.expose()).await,
        None => sqlite::has_admin_user(&config.database),
    }
}

/// The merchants the configured database holds, each id with its stored settings, reading only
/// (`payhost check-config`: those added with `payhost merchant add` or the API are not in
/// payhost.toml). None when they cannot be read, or there is no database yet.
pub async fn stored_merchants(config: &crate::config::Config) -> Option<Vec<(String, String)>> {
    match &config.database_url {
        Some(url) => postgres::stored_merchants(url.expose()).await,
        None => sqlite::stored_merchants(&config.database),
    }
}

/// Whether the configured database can be reached, changing nothing (`payhost check-config`):
/// PostgreSQL answers `SELECT 1`; an SQLite file that exists is a whole database (every page read)
/// payhost may read and write, and one that does not yet can be created in its folder.
/// Ok(Some(note)): what `serve` will do to it (an older schema migrated).
pub async fn check_reachable(
    config: &crate::config::Config,
) -> std::result::Result<Option<String>, String> {
    match &config.database_url {
        Some(url) => postgres::check_reachable(url.expose()).await,
        None => sqlite::check_file_thoroughly(&config.database),
    }
}

/// A raw notification that owns its bytes (to travel to SQLite's writer thread).
pub(crate) struct OwnedRaw {
    merchant_id: String,
    remote: Option<String>,
    body: Vec<u8>,
}

impl OwnedRaw {
    pub(crate) fn new(r: &RawNotification<'_>) -> OwnedRaw {
        OwnedRaw {
            merchant_id: r.merchant_id.to_owned(),
            remote: r.remote.map(str::to_owned),
            body: r.body.to_vec(),
        }
    }

    pub(crate) fn borrow(&self) -> RawNotification<'_> {
        RawNotification {
            merchant_id: &self.merchant_id,
            remote: self.remote.as_deref(),
            body: &self.body,
        }
    }
}

/// A [`NotificationEffect`] that owns its strings (to travel to SQLite's writer thread).
pub(crate) struct OwnedEffect {
    merchant_id: String,
    notify_id: String,
    out_trade_no: String,
    trade_status: String,
    event: TradeEvent,
    trade_no: String,
    buyer_email: Option<String>,
    paid_at: Option<String>,
    webhook_url: Option<String>,
    refund_status: Option<String>,
    gmt_refund: Option<String>,
}

impl OwnedEffect {
    pub(crate) fn new(e: &NotificationEffect<'_>) -> OwnedEffect {
        OwnedEffect {
            merchant_id: e.merchant_id.to_owned(),
            notify_id: e.notify_id.to_owned(),
            out_trade_no: e.out_trade_no.to_owned(),
            trade_status: e.trade_status.to_owned(),
            event: e.event,
            trade_no: e.trade_no.to_owned(),
            buyer_email: e.buyer_email.map(str::to_owned),
            paid_at: e.paid_at.map(str::to_owned),
            webhook_url: e.webhook_url.map(str::to_owned),
            refund_status: e.refund_status.map(str::to_owned),
            gmt_refund: e.gmt_refund.map(str::to_owned),
        }
    }

    pub(crate) fn borrow(&self) -> NotificationEffect<'_> {
        NotificationEffect {
            merchant_id: &self.merchant_id,
            notify_id: &self.notify_id,
            out_trade_no: &self.out_trade_no,
            trade_status: &self.trade_status,
            event: self.event,
            trade_no: &self.trade_no,
            buyer_email: self.buyer_email.as_deref(),
            paid_at: self.paid_at.as_deref(),
            webhook_url: self.webhook_url.as_deref(),
            refund_status: self.refund_status.as_deref(),
            gmt_refund: self.gmt_refund.as_deref(),
        }
    }
}

pub use crate::domain::events::{event_id, plan_notification, Plan, PlannedWebhook};

/// Parses a merchant's stored settings (what [`Merchants::merchant_stored`] returns).
pub fn parse_merchant(stored: &str) -> Result<MerchantSettings> {
    use anyhow::Context;
    serde_json::from_str(stored).context("stored merchant settings are corrupt")
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

    /// SQLite's conditions that pass (a full disk, a lock held elsewhere, memory) are told to
    /// come back (503), however they reach the caller: a job's own error, or the writer's
    /// commit refused; a request's own mistake (a constraint) is not.
    #[test]
    fn passing_sqlite_conditions_are_unavailable() {
        let sqlite = |code| {
            anyhow::Error::new(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_NOMEM,
            rusqlite::ffi::SQLITE_READONLY,
        ] {
            assert!(is_unavailable(&sqlite(code).context("a write")), "{code}");
        }
        assert!(!is_unavailable(&sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)));
        let commit = anyhow::Error::new(Unavailable)
            .context("the store could not commit: database or disk is full");
        assert!(is_unavailable(&commit));
        assert!(format!("{commit:#}")
            .starts_with("the store could not commit: database or disk is full"));
    }

    #[test]
    fn dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_388_577_610), "2014-01-01T12:00:10Z");
        assert_eq!(format_unix(1_709_208_000), "2024-02-29T12:00:00Z");
    }
}
