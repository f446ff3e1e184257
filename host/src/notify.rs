//! The notification pipeline: a provider's notification (or a trade query's answer) verified by
//! the merchant's component, matched against its order and applied once, stored raw with its
//! outcome in one commit. Every path — refused at the door (rate limit, unknown merchant, body),
//! or processed — ends in one [`NotifyOutcome`], decided here; its label, the provider's reply
//! word and the HTTP status each come from one place here ([`NotifyOutcome::label`],
//! [`App::notify_answer`], [`NotifyOutcome::http_status`]). The HTTP layer only reads the body
//! and writes the answer.

use crate::config::MerchantSettings;
use crate::metrics::NotifyStep;
use crate::net::Policy;
use crate::runtime::plugin_api::{
    EncodedSettings, Notification, OrderExpectation, PluginError, ReceivedForm,
};
use crate::runtime::{CallError, PluginRuntime, Session};
use crate::service::App;
use crate::store::{Applied, NotificationEffect, NotificationRecord, RawNotification};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// A merchant as notifications use it, prepared once from its stored settings: parsed, its
/// component's settings form-encoded, its outbound policy built.
pub struct KnownMerchant {
    /// The stored settings' text: the version each lookup compares with the store's.
    stored: String,
    pub settings: MerchantSettings,
    encoded: EncodedSettings,
    policy: Policy,
    recent: RecentFates,
}

/// A merchant's last 32 notifications' fates, newest in bit 0: 1 = not acknowledged (refused or
/// to be retried).
#[derive(Default)]
struct RecentFates(AtomicU32);

/// A merchant with more than this many of its last 32 notifications not acknowledged has its
/// notifications processed in the notification pool from the start: a flood of garbage (every
/// one refused) then competes with the shop API at the pool's lower priority only. Genuine
/// traffic, acknowledged, starts on the request's thread (`admission`).
const MAX_RECENT_REFUSALS: u32 = 2;

impl RecentFates {
    fn mostly_acknowledged(&self) -> bool {
        self.0.load(Ordering::Relaxed).count_ones() <= MAX_RECENT_REFUSALS
    }

    fn record(&self, acknowledged: bool) {
        let bit = u32::from(!acknowledged);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some((r << 1) | bit)
            });
    }
}

/// Merchants prepared once and kept while their stored settings stay the same. Every lookup
/// reads the stored text by key (on SQLite in place, no hand-off to another thread) and compares
/// it with the kept one: a change from anywhere — the admin page, the API, a configuration
/// reload, another replica on the same PostgreSQL, the CLI on the same database — is what the
/// next notification sees, and a removed merchant's entry goes with its first lookup. What a
/// notification saves is the JSON parse, the encoding for the component and the policy, per
/// notification.
#[derive(Default)]
pub struct MerchantCache {
    entries: Mutex<HashMap<String, Arc<KnownMerchant>>>,
}

/// More merchants than any host serves: the map is emptied rather than grown past it.
const MAX_CACHED_MERCHANTS: usize = 10_000;

impl MerchantCache {
    fn get(&self, id: &str, stored: &str) -> Option<Arc<KnownMerchant>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(id).filter(|m| m.stored == stored).cloned()
    }

    fn put(&self, id: &str, merchant: Arc<KnownMerchant>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_MERCHANTS {
            entries.clear();
        }
        entries.insert(id.to_owned(), merchant);
    }

    fn forget(&self, id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// How a notification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// It moved the payment (or recorded an event such as a partial refund).
    Applied,
    /// Its notify id was applied before.
    Duplicate,
    /// Genuine and new, but it does not move the payment.
    NoChange,
    /// Genuine, for an order this host does not know: kept for a person, not retried.
    UnknownOrder,
    /// Genuine, but its amount or seller differs from the order's: flagged for review, not paid.
    Mismatch,
    /// For no configured merchant: refused before anything is stored.
    UnknownMerchant,
    /// Over the per-address or per-merchant rate: refused before the body is read.
    RateLimited,
    /// The body was too large, too slow or unreadable (the HTTP status that says which).
    BodyRefused(u16),
    /// Not genuine or not readable: refused (the provider would send it unchanged again).
    Refused(Refusal),
    /// Not processed this time: the provider is asked to send it again.
    Retry(RetryCause),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadSignature,
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// The provider did not confirm that it sent it.
    NotConfirmed,
    /// The provider's confirmation endpoint could not be reached.
    VerifyUnreachable,
    /// The merchant's settings do not let the component verify it.
    MerchantMisconfigured,
    /// The component failed (trap, limit, timeout).
    PluginFailed,
    /// The store failed.
    StoreFailed,
}

impl NotifyOutcome {
    /// The label stored with the notification and counted in `/metrics`.
    /// Every outcome's label (`label`), as records and filters name them.
    pub const LABELS: [&'static str; 15] = [
        "applied",
        "duplicate",
        "no_change",
        "unknown_order",
        "mismatch",
        "unknown_merchant",
        "rate_limited",
        "refused_body",
        "bad_signature",
        "malformed",
        "not_confirmed",
        "verify_unreachable",
        "merchant_misconfigured",
        "plugin_failed",
        "store_failed",
    ];

    pub fn label(self) -> &'static str {
        match self {
            NotifyOutcome::Applied => "applied",
            NotifyOutcome::Duplicate => "duplicate",
            NotifyOutcome::NoChange => "no_change",
            NotifyOutcome::UnknownOrder => "unknown_order",
            NotifyOutcome::Mismatch => "mismatch",
            NotifyOutcome::UnknownMerchant => "unknown_merchant",
            NotifyOutcome::RateLimited => "rate_limited",
            NotifyOutcome::BodyRefused(_) => "refused_body",
            NotifyOutcome::Refused(Refusal::BadSignature) => "bad_signature",
            NotifyOutcome::Refused(Refusal::Malformed) => "malformed",
            NotifyOutcome::Retry(RetryCause::NotConfirmed) => "not_confirmed",
            NotifyOutcome::Retry(RetryCause::VerifyUnreachable) => "verify_unreachable",
            NotifyOutcome::Retry(RetryCause::MerchantMisconfigured) => "merchant_misconfigured",
            NotifyOutcome::Retry(RetryCause::PluginFailed) => "plugin_failed",
            NotifyOutcome::Retry(RetryCause::StoreFailed) => "store_failed",
        }
    }

    /// Whether the provider is told to stop sending it (its processing is durable and final).
    pub fn acknowledged(self) -> bool {
        matches!(
            self,
            NotifyOutcome::Applied
                | NotifyOutcome::Duplicate
                | NotifyOutcome::NoChange
                | NotifyOutcome::UnknownOrder
                | NotifyOutcome::Mismatch
        )
    }

    /// The HTTP status the provider gets: 200 once processing is durable and final; otherwise a
    /// status that says why it should send again (404 unknown merchant, 400 refused, 429 rate,
    /// the body's own status, 500 store, 503 anything else to retry).
    pub fn http_status(self) -> u16 {
        match self {
            o if o.acknowledged() => 200,
            NotifyOutcome::UnknownMerchant => 404,
            NotifyOutcome::Refused(_) => 400,
            NotifyOutcome::RateLimited => 429,
            NotifyOutcome::BodyRefused(status) => status,
            NotifyOutcome::Retry(RetryCause::StoreFailed) => 500,
            _ => 503,
        }
    }

    /// The outcome of a notification the store applied (also the label the store records).
    pub fn from_applied(a: &Applied) -> NotifyOutcome {
        match a {
            Applied::Changed { .. } | Applied::Recorded { .. } => NotifyOutcome::Applied,
            // Kept, and nothing the shop sees moved: a trade query answering "finished" has not
            // told of a refund (`partial_refund_from_query` reads `applied` as that).
            Applied::Finished { .. } => NotifyOutcome::NoChange,
            Applied::NoChange => NotifyOutcome::NoChange,
            Applied::Duplicate => NotifyOutcome::Duplicate,
            Applied::UnknownOrder => NotifyOutcome::UnknownOrder,
            Applied::OtherTrade { .. } => NotifyOutcome::Mismatch,
        }
    }

    /// The outcome of a notification the component refused.
    fn of_refusal(e: &PluginError) -> NotifyOutcome {
        match e {
            PluginError::BadSignature(_) => NotifyOutcome::Refused(Refusal::BadSignature),
            PluginError::NotifyNotConfirmed(_) => NotifyOutcome::Retry(RetryCause::NotConfirmed),
            PluginError::Transport(_) | PluginError::Timeout(_) => {
                NotifyOutcome::Retry(RetryCause::VerifyUnreachable)
            }
            PluginError::InvalidSettings(_) => {
                NotifyOutcome::Retry(RetryCause::MerchantMisconfigured)
            }
            _ => NotifyOutcome::Refused(Refusal::Malformed),
        }
    }
}

/// A notification's turn: its permits, and whether its merchant was suspect when it was let in
/// (then its work goes to the notification pool from the start).
pub struct NotifyTurn {
    permit: crate::admission::NotifyPermit,
    suspect: bool,
}

/// A notification's outcome with the body the provider receives (the component's word for "got
/// it" or for "send it again").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyAnswer {
    pub outcome: NotifyOutcome,
    reply: String,
}

impl NotifyAnswer {
    /// The body the provider receives.
    pub fn reply(&self) -> &str {
        &self.reply
    }

    /// The HTTP status the provider receives.
    pub fn status(&self) -> u16 {
        self.outcome.http_status()
    }
}

/// Where processing ended: the outcome, what to record, and whether the record is already stored
/// (an applied effect is stored with its raw notification in one commit).
struct Processed {
    outcome: NotifyOutcome,
    detail: Option<String>,
    seen: Option<Seen>,
    stored: bool,
}

impl Processed {
    fn stop(outcome: NotifyOutcome, detail: impl Into<String>) -> Processed {
        Processed {
            outcome,
            detail: Some(detail.into()),
            seen: None,
            stored: false,
        }
    }

    fn call_failed(e: CallError) -> Processed {
        Processed::stop(
            NotifyOutcome::Retry(RetryCause::PluginFailed),
            e.to_string(),
        )
    }

    fn with_seen(mut self, n: &Notification) -> Processed {
        self.seen = Some(Seen::of(n));
        self
    }
}

/// What the record keeps of a verified notification (a notification's other fields are not
/// copied: it is recorded raw as received).
struct Seen {
    notify_id: String,
    out_trade_no: String,
    trade_status: String,
}

impl Seen {
    fn of(n: &Notification) -> Seen {
        Seen {
            notify_id: n.notify_id.clone(),
            out_trade_no: n.out_trade_no.clone(),
            trade_status: n.trade_status.clone(),
        }
    }
}

fn record_of(merchant_id: &str, p: &Processed) -> NotificationRecord {
    NotificationRecord {
        raw_id: 0,
        merchant_id: merchant_id.to_owned(),
        received_at: String::new(),
        notify_id: p.seen.as_ref().map(|n| n.notify_id.clone()),
        out_trade_no: p.seen.as_ref().map(|n| n.out_trade_no.clone()),
        trade_status: p.seen.as_ref().map(|n| n.trade_status.clone()),
        outcome: Some(p.outcome.label().to_owned()),
        detail: p.detail.clone(),
    }
}

impl App {
    /// How a notification ends: counted in `/metrics` under its label, answered with the
    /// merchant's component's word (before the merchant is known, and for an unknown one, the
    /// first component's).
    pub fn notify_answer(
        &self,
        outcome: NotifyOutcome,
        plugin: Option<&PluginRuntime>,
    ) -> NotifyAnswer {
        self.metrics.notify(outcome.label());
        let info = plugin.or(self.plugins.first()).map(|p| &p.info);
        let reply = info
            .map(|i| {
                if outcome.acknowledged() {
                    i.notify_ack.clone()
                } else {
                    i.notify_retry.clone()
                }
            })
            .unwrap_or_default();
        NotifyAnswer { outcome, reply }
    }

    /// Before the body is read: the per-address limit (a flood from one address costs no store
    /// read), the merchant (an unknown one is refused, nothing stored), then the per-merchant
    /// limit (keyed only by merchants that exist, so made-up ids never grow the limiter).
    pub async fn notify_admit(
        &self,
        merchant_id: &str,
        client: std::net::IpAddr,
    ) -> Result<Arc<KnownMerchant>, NotifyAnswer> {
        let limited = || {
            self.metrics.rate_limited.inc();
            self.notify_answer(NotifyOutcome::RateLimited, None)
        };
        if !self
            .guards
            .notify_ip
            .allow(&crate::proxy::limit_key(client))
        {
            return Err(limited());
        }
        let merchant = match self.known_merchant(merchant_id).await {
            // A slot without provider settings has no payments and nothing can verify a
            // notification for it: as good as unknown (nothing stored, not a 5xx).
            Ok(Some(m)) if m.settings.settings.is_empty() => {
                return Err(self.notify_answer(NotifyOutcome::UnknownMerchant, None))
            }
            Ok(Some(m)) => m,
            Ok(None) => return Err(self.notify_answer(NotifyOutcome::UnknownMerchant, None)),
            Err(e) => {
                tracing::error!(merchant = merchant_id, error = %e, "cannot read the merchant; asking the provider to retry");
                return Err(self.notify_answer(NotifyOutcome::Retry(RetryCause::StoreFailed), None));
            }
        };
        if !self.guards.notify_merchant.allow(&merchant_id.to_owned()) {
            return Err(limited());
        }
        Ok(merchant)
    }

    /// The merchant as stored now, prepared once per change of its stored settings
    /// ([`MerchantCache`]); `None` when there is no such merchant.
    async fn known_merchant(&self, id: &str) -> anyhow::Result<Option<Arc<KnownMerchant>>> {
        let Some(stored) = self.store.merchant_stored(id).await? else {
            self.merchant_cache.forget(id);
            return Ok(None);
        };
        if let Some(m) = self.merchant_cache.get(id, &stored) {
            return Ok(Some(m));
        }
        let settings = crate::store::parse_merchant(&stored)?;
        let merchant = Arc::new(KnownMerchant {
            encoded: EncodedSettings::new(settings.settings.clone()),
            policy: self.merchant_policy(&settings),
            settings,
            stored,
            recent: RecentFates::default(),
        });
        self.merchant_cache.put(id, merchant.clone());
        Ok(Some(merchant))
    }

    /// A body the HTTP layer could not read (`status` says why): the provider sends it again.
    pub fn notify_body_refused(&self, merchant: &KnownMerchant, status: u16) -> NotifyAnswer {
        self.notify_answer(
            NotifyOutcome::BodyRefused(status),
            self.plugins.for_merchant(&merchant.settings),
        )
    }

    /// Waits for a notification's turn: its merchant's permit, then the overall one (a merchant
    /// whose recent notifications were mostly refused admits one at a time). Nothing is done
    /// for it meanwhile, so a wait past [`crate::admission::TURN_WAIT`] is refused as
    /// `rate_limited` (429, the provider sends it again), and the HTTP layer may shed its
    /// connection while it waits.
    pub async fn notify_turn(
        &self,
        merchant_id: &str,
        merchant: &KnownMerchant,
    ) -> Result<NotifyTurn, NotifyAnswer> {
        let suspect = !merchant.recent.mostly_acknowledged();
        match self.admission.enter_notify(merchant_id, suspect).await {
            Some(permit) => Ok(NotifyTurn { permit, suspect }),
            None => {
                self.metrics.rate_limited.inc();
                Err(self.notify_answer(
                    NotifyOutcome::RateLimited,
                    self.plugins.for_merchant(&merchant.settings),
                ))
            }
        }
    }

    /// Processes an asynchronous notification for a merchant [`notify_admit`](App::notify_admit)
    /// let in, in its turn ([`notify_turn`](App::notify_turn)): verified (and confirmed, when the
    /// component asks the provider), matched against the order and applied once; stored raw
    /// with its outcome in one commit (with the effect, when there is one). It is acknowledged
    /// only once that commit is durable and nothing is left to retry; one whose processing is
    /// cut short is not, so the provider sends it again.
    ///
    /// Admitted per merchant and overall (`admission`); started on the request's thread and
    /// moved to the notification pool once it proves expensive, or worked on there from the
    /// start when its merchant's recent notifications were mostly refused (a flood).
    pub async fn notify_for(
        self: &Arc<Self>,
        merchant_id: &str,
        merchant: Arc<KnownMerchant>,
        turn: NotifyTurn,
        remote: Option<String>,
        body: bytes::Bytes,
    ) -> NotifyAnswer {
        let NotifyTurn { permit, suspect } = turn;
        let (app, id, known) = (self.clone(), merchant_id.to_owned(), merchant.clone());
        // The permits go with the work: a notification moved to the pool is finished (and
        // committed) after the provider's connection closes, and must still count.
        let work = async move {
            let _permit = permit;
            app.notify_now(&id, &merchant, remote.as_deref(), &body)
                .await
        };
        match self.admission.run_notify(work, !suspect).await {
            Some(answer) => {
                known.recent.record(answer.outcome.acknowledged());
                answer
            }
            None => {
                tracing::warn!(merchant = merchant_id, "payhost is stopping: a notification was cut short; the provider sends it again");
                self.notify_answer(NotifyOutcome::Retry(RetryCause::PluginFailed), None)
            }
        }
    }

    /// [`notify_for`](App::notify_for)'s work, in the notification pool.
    async fn notify_now(
        &self,
        merchant_id: &str,
        merchant: &KnownMerchant,
        remote: Option<&str>,
        body: &[u8],
    ) -> NotifyAnswer {
        let raw = RawNotification {
            merchant_id,
            remote,
            body,
        };
        let plugin = self.plugins.for_merchant(&merchant.settings);
        let processed = match plugin {
            Some(p) => self.process_notify(p, merchant_id, merchant, &raw).await,
            None => Processed::stop(
                NotifyOutcome::Retry(RetryCause::MerchantMisconfigured),
                format!("no plugin {:?} is loaded", merchant.settings.plugin_id),
            ),
        };
        let mut outcome = processed.outcome;
        if !processed.stored {
            let record = record_of(merchant_id, &processed);
            // A caller that did not prove it is the provider (nothing verified) gets a bounded
            // record only, within the merchant's quota: forged bodies cannot fill the disk.
            let stored = if processed.seen.is_none() {
                self.store
                    .record_refused_notification(
                        crate::store::RefusedRecord::new(&raw, &record),
                        self.config.retention.refused_notifications_per_merchant,
                    )
                    .await
            } else {
                self.store.record_notification(&raw, &record).await
            };
            if let Err(e) = stored {
                // Which notification (when it was verified), so the operator can find it in the
                // provider's retries once the store is back.
                let (notify_id, out_trade_no) = processed.seen.as_ref().map_or(("", ""), |s| {
                    (s.notify_id.as_str(), s.out_trade_no.as_str())
                });
                tracing::error!(
                    merchant = merchant_id,
                    notify_id = %crate::log_limit::clean(notify_id),
                    out_trade_no = %crate::log_limit::clean(out_trade_no),
                    outcome = processed.outcome.label(),
                    error = %e,
                    "cannot store a notification; asking the provider to retry"
                );
                outcome = NotifyOutcome::Retry(RetryCause::StoreFailed);
            }
        }
        self.notify_answer(outcome, plugin)
    }

    async fn process_notify(
        &self,
        plugin: &crate::runtime::PluginRuntime,
        merchant_id: &str,
        merchant: &KnownMerchant,
        raw: &RawNotification<'_>,
    ) -> Processed {
        let form = ReceivedForm::new(raw.body);
        let mut session = match plugin.session().await {
            Ok(s) => s,
            Err(e) => return Processed::call_failed(e),
        };
        let started = std::time::Instant::now();
        let verified = session
            .verify_notification(&merchant.policy, &merchant.encoded, &form)
            .await;
        self.metrics.notify_step(NotifyStep::Verify, started);
        let verified = match verified {
            Err(e) => return Processed::call_failed(e),
            Ok(Err(e)) => {
                let outcome = NotifyOutcome::of_refusal(&e);
                // Anyone may post a notify: at most one such line a second (with how many were
                // left unsaid), the component's text escaped (it can quote the request).
                static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(1_000);
                if let Some(unsaid) = SAY.allow() {
                    tracing::warn!(merchant = merchant_id, outcome = outcome.label(), detail = %crate::log_limit::clean(&e), unsaid, "notification refused; unsaid: refusals since the last such line");
                }
                return Processed::stop(outcome, e.to_string());
            }
            Ok(Ok(n)) => n,
        };
        // A legacy partial refund names no amount; the trade query does (`refund_fee`), applied
        // as a refund report: one refund recorded with its amount, one webhook. Moving only the
        // status would show nothing refunded and leave the whole paid amount refundable here.
        let partial = verified.event != crate::domain::state::TradeEvent::Refunded
            && verified.refund.as_ref().is_some_and(is_amountless);
        if partial {
            if let Some(learned) = self.partial_refund_from_query(merchant_id, &verified).await {
                return self.with_finish_kept(merchant_id, &verified, learned).await;
            }
        }
        self.apply_verified(
            merchant_id,
            &merchant.settings,
            &mut session,
            &verified,
            raw,
            None,
        )
        .await
    }

    /// Matches a verified notification against its order and applies it (the same path for a
    /// notification and a trade query's answer): the raw form, the record and the effect in one
    /// commit. `source` is recorded in the detail (`query` for a trade query).
    async fn apply_verified(
        &self,
        merchant_id: &str,
        merchant: &MerchantSettings,
        session: &mut Session<'_>,
        verified: &Notification,
        raw: &RawNotification<'_>,
        source: Option<&str>,
    ) -> Processed {
        let note = |d: String| match source {
            Some(s) => format!("source: {s}; {d}"),
            None => d,
        };
        let full = verified.event == crate::domain::state::TradeEvent::Refunded;
        if let Some(report) = &verified.refund {
            // A legacy trade_status_sync names no amount: a full refund's is the rest of the paid
            // amount; a partial one's is unknown, so only the state machine moves it (below).
            let amountless = is_amountless(report);
            if !amountless || full {
                return self
                    .apply_refund(
                        merchant_id,
                        merchant,
                        Some(session),
                        verified,
                        raw,
                        report,
                        amountless,
                        source,
                    )
                    .await;
            }
        }
        let started = std::time::Instant::now();
        let payment = self
            .store
            .payment(merchant_id, &verified.out_trade_no)
            .await;
        self.metrics.notify_step(NotifyStep::PaymentRead, started);
        let payment = match payment {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::error!(
                    target: "payhost::alert",
                    merchant = merchant_id,
                    out_trade_no = %crate::log_limit::clean(&verified.out_trade_no),
                    "ALERT: a confirmed notification names an unknown order"
                );
                return Processed::stop(
                    NotifyOutcome::UnknownOrder,
                    note("confirmed, but the order is unknown".into()),
                )
                .with_seen(verified);
            }
            Err(e) => {
                return Processed::stop(
                    NotifyOutcome::Retry(RetryCause::StoreFailed),
                    e.to_string(),
                )
                .with_seen(verified)
            }
        };
        if let Some(held) = self
            .other_trade(merchant_id, verified, &payment, source)
            .await
        {
            return held;
        }
        if let Some(refused) = self
            .refused_match(merchant_id, session, verified, &payment, source)
            .await
        {
            return refused;
        }
        // A trade closed after it was paid was refunded in full, whether or not the message
        // carries a refund report (an open-platform trade query of a refunded trade has none)
        // or shows the payment (a bare `TRADE_CLOSED`, which the component calls a close, of
        // an order paid here): the rest of the paid amount is recorded as refunded, once the
        // trade is known to be this order's (amount, seller), never a REFUNDED payment with
        // nothing refunded and the paid amount still refundable here.
        let closed_after_paid_here = verified.event == crate::domain::state::TradeEvent::Closed
            && crate::domain::state::is_paid(&payment.status)
            && payment.status != crate::domain::state::REFUNDED;
        if closed_after_paid_here && verified.trade_no.is_empty() {
            // A close naming no trade: not the trade that paid (a refunded trade keeps its
            // number), but an earlier attempt never paid (an older cashier page that expired).
            // Another trade's number is held above (`other_trade`).
            return Processed::stop(
                NotifyOutcome::NoChange,
                note(format!(
                    "a close naming no trade, for an order paid by trade {}: an earlier attempt that was never paid; nothing changed",
                    payment.trade_no.as_deref().unwrap_or("-")
                )),
            )
            .with_seen(verified);
        }
        if closed_after_paid_here && payment.trade_no.as_deref().is_none_or(str::is_empty) {
            // The trade that paid was never named (a legacy notify may leave `trade_no` out):
            // whether this close is its refund or an earlier attempt's cannot be told. Held.
            let reason = format!(
                "支付宝交易 {t} 的关闭通知无法确认是否为这笔已付款订单的全额退款（付款时没有记录交易号），请在支付宝核对 / a close of trade {t} for an order paid by an unrecorded trade: it cannot be told to be this order's refund; check it in the provider's portal",
                t = crate::log_limit::clean(&verified.trade_no)
            );
            return self
                .held_for_review(
                    merchant_id,
                    verified,
                    &payment,
                    &reason,
                    source,
                    "held for review: ",
                )
                .await;
        }
        if (full && verified.refund.is_none()) || closed_after_paid_here {
            let closed_after_paid = crate::runtime::plugin_api::RefundReport {
                request_no: String::new(),
                amount: None,
                refunded_total: None,
                succeeded: true,
                detail: String::new(),
                time: None,
            };
            return self
                .apply_refund(
                    merchant_id,
                    merchant,
                    // Matched above.
                    None,
                    verified,
                    raw,
                    &closed_after_paid,
                    true,
                    source,
                )
                .await;
        }
        let effect = NotificationEffect {
            merchant_id,
            notify_id: &verified.notify_id,
            out_trade_no: &verified.out_trade_no,
            trade_status: &verified.trade_status,
            event: verified.event,
            trade_no: &verified.trade_no,
            buyer_email: verified.buyer_email.as_deref(),
            paid_at: verified
                .gmt_payment
                .as_deref()
                .or(verified.notify_time.as_deref()),
            webhook_url: merchant.shop_webhook_url.as_deref(),
            refund_status: verified.field("refund_status"),
            gmt_refund: verified.field("gmt_refund"),
        };
        let pending = Processed {
            outcome: NotifyOutcome::Applied,
            detail: source.map(|s| format!("source: {s}")),
            seen: Some(Seen::of(verified)),
            stored: false,
        };
        let started = std::time::Instant::now();
        let applied = self
            .store
            .apply_notification(&effect, raw, &record_of(merchant_id, &pending))
            .await;
        self.metrics.notify_step(NotifyStep::Commit, started);
        match applied {
            Ok(applied) => {
                if let Applied::Changed { from, to } = &applied {
                    tracing::info!(merchant = merchant_id, out_trade_no = %crate::log_limit::clean(&verified.out_trade_no), %from, %to, source = source.unwrap_or("notification"), "payment status changed");
                    // Money for an order closed here: the commit flagged it for review
                    // (`domain::events::plan_notification`); the owner fulfils or refunds it.
                    if from == crate::domain::state::TRADE_CLOSED {
                        tracing::error!(target: "payhost::alert", merchant = merchant_id, out_trade_no = %crate::log_limit::clean(&verified.out_trade_no), "ALERT: an order closed here was paid; flagged for review");
                    }
                }
                if let Applied::Finished { status } = &applied {
                    tracing::info!(merchant = merchant_id, out_trade_no = %crate::log_limit::clean(&verified.out_trade_no), %status, "trade finished at the provider: no more refunds");
                }
                // Another trade, found only under the payment's lock (its paid notification
                // committed meanwhile): held by the commit, said as the check before it says it.
                if let Applied::OtherTrade { recorded, other } = &applied {
                    tracing::error!(target: "payhost::alert", merchant = merchant_id, out_trade_no = %crate::log_limit::clean(&verified.out_trade_no), recorded_trade = %crate::log_limit::clean(recorded), other_trade = %crate::log_limit::clean(other), "ALERT: another trade reports on an order with a recorded trade (paid twice?); flagged for review, nothing applied");
                }
                // A webhook was queued with the change: the outbox delivers it now, not at its
                // next poll.
                if effect.webhook_url.is_some()
                    && matches!(applied, Applied::Changed { .. } | Applied::Recorded { .. })
                {
                    self.webhook_wake.notify_one();
                }
                Processed {
                    outcome: NotifyOutcome::from_applied(&applied),
                    stored: true,
                    ..pending
                }
            }
            Err(e) => Processed::stop(NotifyOutcome::Retry(RetryCause::StoreFailed), e.to_string())
                .with_seen(verified),
        }
    }

    /// A verified message of another trade than the one the payment recorded (the order paid
    /// twice, two trades of one order number; or that other trade's refund or close): nothing is
    /// applied to this payment, which is flagged for review naming both trades. None when it is
    /// the recorded trade, or none is recorded yet (the commit checks that again under the
    /// payment's lock: `domain::events::plan_notification`).
    async fn other_trade(
        &self,
        merchant_id: &str,
        verified: &Notification,
        payment: &crate::store::Payment,
        source: Option<&str>,
    ) -> Option<Processed> {
        let recorded = crate::domain::events::other_trade(payment, &verified.trade_no)?;
        let reason = crate::domain::events::other_trade_reason(recorded, &verified.trade_no);
        tracing::error!(
            target: "payhost::alert",
            merchant = merchant_id,
            out_trade_no = %payment.out_trade_no,
            recorded_trade = %crate::log_limit::clean(recorded),
            other_trade = %crate::log_limit::clean(&verified.trade_no),
            "ALERT: another trade reports on an order with a recorded trade (paid twice?); flagged for review, nothing applied"
        );
        Some(
            self.held_for_review(
                merchant_id,
                verified,
                payment,
                &reason,
                source,
                "held for review: ",
            )
            .await,
        )
    }

    /// Flags `payment` for review with `reason` and stops the notification as `mismatch` (its
    /// detail `source: …; ` + `lead` + the reason), or as a store failure to retry when the flag
    /// cannot be written: nothing of it is applied either way.
    async fn held_for_review(
        &self,
        merchant_id: &str,
        verified: &Notification,
        payment: &crate::store::Payment,
        reason: &str,
        source: Option<&str>,
        lead: &str,
    ) -> Processed {
        if let Err(e) = self
            .store
            .flag_for_review(merchant_id, &payment.out_trade_no, reason)
            .await
        {
            return Processed::stop(NotifyOutcome::Retry(RetryCause::StoreFailed), e.to_string())
                .with_seen(verified);
        }
        let detail = match source {
            Some(s) => format!("source: {s}; {lead}{reason}"),
            None => format!("{lead}{reason}"),
        };
        Processed::stop(NotifyOutcome::Mismatch, detail).with_seen(verified)
    }

    /// Matches a verified notification against its order (amount, seller: the component's
    /// `match-order`); None when it is this order's. Otherwise the payment is flagged for review
    /// and the outcome is `mismatch` (or the call's failure): nothing is applied.
    async fn refused_match(
        &self,
        merchant_id: &str,
        session: &mut Session<'_>,
        verified: &Notification,
        payment: &crate::store::Payment,
        source: Option<&str>,
    ) -> Option<Processed> {
        let expectation = OrderExpectation {
            out_trade_no: payment.out_trade_no.clone(),
            total_fee: payment.total_fee(),
            seller: payment.seller.clone(),
        };
        let started = std::time::Instant::now();
        let matched = session.match_order(verified, &expectation).await;
        self.metrics.notify_step(NotifyStep::Match, started);
        let reason = match matched {
            Err(e) => return Some(Processed::call_failed(e).with_seen(verified)),
            Ok(Ok(())) => return None,
            Ok(Err(mismatches)) => mismatches
                .iter()
                .map(|m| format!("{}: {}", m.field, m.reason))
                .collect::<Vec<_>>()
                .join("; "),
        };
        tracing::error!(
            target: "payhost::alert",
            merchant = merchant_id,
            out_trade_no = %payment.out_trade_no,
            reason = %crate::log_limit::clean(&reason),
            "ALERT: a confirmed notification cannot be applied to its order; flagged for review, not paid"
        );
        Some(
            self.held_for_review(merchant_id, verified, payment, &reason, source, "")
                .await,
        )
    }

    /// A verified report about a refund (a notification's or a queried trade's `refund`): matched
    /// to the refund started here by its request number, recorded as started elsewhere, or held
    /// for review; once per notify id. A legacy batch-refund notify names only the trade number.
    /// `unmatched`: the session to match the trade against its order with, when that has not
    /// been done (a payment not paid here is matched first).
    #[allow(clippy::too_many_arguments)]
    async fn apply_refund(
        &self,
        merchant_id: &str,
        merchant: &MerchantSettings,
        unmatched: Option<&mut Session<'_>>,
        verified: &Notification,
        raw: &RawNotification<'_>,
        report: &crate::runtime::plugin_api::RefundReport,
        whole_rest: bool,
        source: Option<&str>,
    ) -> Processed {
        use crate::store::ledger::RefundApplied as R;
        let payment = if verified.out_trade_no.is_empty() {
            self.store
                .payment_by_trade_no(merchant_id, &verified.trade_no)
                .await
        } else {
            self.store
                .payment(merchant_id, &verified.out_trade_no)
                .await
        };
        let payment = match payment {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::error!(target: "payhost::alert", merchant = merchant_id, trade_no = %crate::log_limit::clean(&verified.trade_no), "ALERT: a confirmed refund report names an unknown order");
                return Processed::stop(
                    NotifyOutcome::UnknownOrder,
                    "a refund report for an unknown order",
                )
                .with_seen(verified);
            }
            Err(e) => {
                return Processed::stop(
                    NotifyOutcome::Retry(RetryCause::StoreFailed),
                    e.to_string(),
                )
                .with_seen(verified)
            }
        };
        if let Some(held) = self
            .other_trade(merchant_id, verified, &payment, source)
            .await
        {
            return held;
        }
        // A refund of a payment not paid here (its own notification not seen yet, or refused)
        // says the trade was paid: it is this order's only when the trade is (amount, seller),
        // as a payment's notification must be. Otherwise it is held, never a paid order.
        if let Some(session) = unmatched.filter(|_| !crate::domain::state::is_paid(&payment.status))
        {
            if let Some(refused) = self
                .refused_match(merchant_id, session, verified, &payment, source)
                .await
            {
                return refused;
            }
        }
        let mut report = report.clone();
        if whole_rest {
            // Refunded in full: the refunded total is the paid amount.
            report.refunded_total = Some(payment.total_fee());
        }
        let finished = verified.event == crate::domain::state::TradeEvent::Finished;
        let mut seen = Seen::of(verified);
        seen.out_trade_no = payment.out_trade_no.clone();
        // The message is stored with what its report did, in the report's transaction.
        let pending = Processed {
            outcome: NotifyOutcome::Applied,
            detail: None,
            seen: Some(seen),
            stored: false,
        };
        let record = crate::store::ledger::ReportRecord {
            raw: *raw,
            record: record_of(merchant_id, &pending),
            finished,
            source,
        };
        let applied = match self
            .apply_refund_report(
                merchant_id,
                merchant,
                &payment.out_trade_no,
                crate::store::ledger::PaidFacts {
                    trade_no: &verified.trade_no,
                    buyer_email: verified.buyer_email.as_deref(),
                    // The payment's own time only (a refund's notify_time is not it).
                    paid_at: verified.gmt_payment.as_deref(),
                    finished,
                },
                &verified.notify_id,
                &report,
                Some(record),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                return Processed::stop(
                    NotifyOutcome::Retry(RetryCause::StoreFailed),
                    e.to_string(),
                )
                .with_seen(verified)
            }
        };
        let (outcome, detail) = applied.outcome(finished, source);
        // A refund the provider reports failed (a legacy batch notify: the seller's
        // confirmation refused) may have failed because the trade was closed: asked about
        // (not from a query: that was the asking).
        if source.is_none()
            && matches!(&applied, R::Settled { status, .. } if status == crate::domain::refunds::FAILED)
        {
            self.query_trade_soon(merchant_id, &payment.out_trade_no);
        }
        // A refund's own report (its number) that finds it settled already may have been
        // settled from the trade's refunded total alone — which can have been another refund of
        // the same amount, made in the provider's back office meanwhile (a legacy total names
        // no refund). The trade's total now tells: more than is counted here is recorded.
        if matches!(applied, R::Known) && source.is_none() && !report.request_no.is_empty() {
            // Boxed: the query's answer comes back through this path (never to this branch: it
            // is a query's, `source` set).
            let synced = Box::pin(self.sync_payment(merchant_id, &payment.out_trade_no)).await;
            match synced {
                Ok(synced) if synced.outcome == NotifyOutcome::Applied.label() => {
                    tracing::info!(merchant = merchant_id, out_trade_no = %payment.out_trade_no, "a refund's own report came after it was settled from the trade's total: the trade's query recorded more");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(merchant = merchant_id, out_trade_no = %payment.out_trade_no, error = %e.message, "cannot query the trade after a refund's own report")
                }
            }
        }
        Processed {
            outcome,
            detail: Some(detail),
            stored: true,
            ..pending
        }
    }

    /// A finishing message (`TRADE_FINISHED`) whose amountless refund the trade query decided:
    /// the query's answer can lag behind the finish (or the refund was a duplicate, or is held
    /// until the query shows it), yet the trade is finished all the same, and refunds of it are
    /// refused by the provider. Kept here ([`crate::store::Ledger::keep_finish`]: only on a payment
    /// paid by this very trade) and said in the detail when it is new.
    async fn with_finish_kept(
        &self,
        merchant_id: &str,
        verified: &Notification,
        mut processed: Processed,
    ) -> Processed {
        if verified.event != crate::domain::state::TradeEvent::Finished
            || matches!(processed.outcome, NotifyOutcome::Retry(_))
        {
            return processed;
        }
        match self
            .store
            .keep_finish(merchant_id, &verified.out_trade_no, &verified.trade_no)
            .await
        {
            // Said first: a detail held for review ends with its reason, which the timeline reads
            // as one sentence to its end.
            Ok(true) => {
                let detail = processed.detail.take().unwrap_or_default();
                processed.detail = Some(format!(
                    "{}; {detail}",
                    crate::domain::events::FINISHED_WORDS
                ));
                processed
            }
            Ok(false) => processed,
            // Not acknowledged: the provider sends it again, and the finish is kept then.
            Err(e) => Processed::stop(NotifyOutcome::Retry(RetryCause::StoreFailed), e.to_string())
                .with_seen(verified),
        }
    }

    /// A legacy partial-refund notification names no amount: the trade query does. When the
    /// query answers but cannot tell (its total fits no refund here, or shows nothing new), the
    /// payment is flagged for review until someone syncs it and does not move (the shop would be
    /// told of a refund of nothing, and again once the amount is known). `None` when the query
    /// fails: then only the provider's word is known, and the state machine moves the payment
    /// on it, flagged for review.
    async fn partial_refund_from_query(
        &self,
        merchant_id: &str,
        verified: &Notification,
    ) -> Option<Processed> {
        // Alipay sends a notification again until it reads `success`: one this path learned
        // before is a duplicate (the query's own id is what was claimed then, so the query would
        // now answer "duplicate", which cannot tell an older answer from a known refund).
        if let Ok(records) = self
            .store
            .notifications_for(merchant_id, &verified.out_trade_no)
            .await
        {
            let learned = records.iter().any(|r| {
                r.notify_id.as_deref() == Some(verified.notify_id.as_str())
                    && r.outcome.as_deref() == Some(NotifyOutcome::Applied.label())
            });
            if learned {
                return Some(
                    Processed::stop(NotifyOutcome::Duplicate, amountless::LEARNED_BEFORE)
                        .with_seen(verified),
                );
            }
        }
        let processed = match self.sync_payment(merchant_id, &verified.out_trade_no).await {
            // The query's total recorded the refund: learned. (An answer that changed nothing
            // may be older than the refund: not taken for it.)
            Ok(synced) if synced.outcome == NotifyOutcome::Applied.label() => Processed::stop(
                    NotifyOutcome::Applied,
                    format!("{}; payment {}", amountless::APPLIED, synced.status),
                )
                .with_seen(verified),
            // The query's answer was held for review with its own reason (a total that fits no
            // refund pending here): that one says why. The payment does not move: a refund
            // event without its amount would show the shop a refund of nothing.
            Ok(synced) if synced.outcome == NotifyOutcome::Mismatch.label() => Processed::stop(
                    NotifyOutcome::Mismatch,
                    "held for review: a partial refund without its amount, and the trade query's refunded total was held for review too (its own reason is on the payment)",
                )
                .with_seen(verified),
            // The query answered and added nothing: its refunded total is the one counted here.
            // When a refund was recorded here at or after the time this one was made (the
            // notify's `gmt_refund`), it is that one (recorded from a query run after it, or its
            // own report): a duplicate. Otherwise the query may not show it yet (it lags): held
            // for review until a later Sync records it. Either way the state machine does not
            // move the payment: a refund event without its report would tell the shop of a
            // refund with no amount, and a second time.
            Ok(synced) => {
                // A finishing message whose query answers the trade finished too, with its
                // refunded total: the query is not behind it (nothing is refunded after a
                // finish), so the refund it shows is in that total, which is the one counted here
                // (a total that differs was applied or held above). An answer without a total
                // tells nothing of the refund.
                if verified.event == crate::domain::state::TradeEvent::Finished
                    && synced.trade_status.as_deref() == Some(crate::store::TRADE_FINISHED)
                    && synced.refund_total_shown
                {
                    return Some(
                        Processed::stop(
                            NotifyOutcome::Duplicate,
                            amountless::ON_FINISH,
                        )
                        .with_seen(verified),
                    );
                }
                let recorded = match self
                    .store
                    .refunds_for(merchant_id, &verified.out_trade_no)
                    .await
                {
                    Ok(refunds) => refunds,
                    Err(e) => {
                        tracing::error!(merchant = merchant_id, error = %e, "cannot read a payment's refunds");
                        Vec::new()
                    }
                };
                let succeeded = || {
                    recorded
                        .iter()
                        .filter(|r| r.status == crate::domain::refunds::SUCCESS)
                };
                let counted: u64 = succeeded().map(|r| r.amount_fen).sum();
                let recorded_at: Vec<&str> =
                    succeeded().filter_map(|r| r.completed_at.as_deref()).collect();
                let made = verified.refund.as_ref().and_then(|r| r.time.as_deref());
                if recorded_since(&recorded_at, made) {
                    return Some(Processed::stop(
                            NotifyOutcome::Duplicate,
                            format!(
                                "{}{}.{:02}{}",
                                amountless::RECORDED_TOTAL,
                                counted / 100,
                                counted % 100,
                                amountless::RECORDED_SINCE
                            ),
                        )
                        .with_seen(verified));
                }
                let reason = "支付宝报告了一笔部分退款但没有金额，交易查询里还没有这笔退款：请稍后在订单页点「向支付平台查询」 / a partial refund was reported without its amount and the trade query does not show it yet: press Sync later";
                self.hold_amountless_refund(merchant_id, verified, reason)
                    .await;
                Processed::stop(NotifyOutcome::Mismatch, format!("held for review: {reason}"))
                    .with_seen(verified)
            }
            // The query failed (perhaps for good: a legacy merchant without the trade query's
            // contract): the state machine moves the payment, as the provider's word says, and
            // the owner is told to look.
            Err(_) => {
                let reason = "支付宝报告了一笔部分退款但没有金额，交易查询没有成功：请在订单页点「向支付平台查询」 / a partial refund was reported without its amount and the trade query failed: press Sync";
                self.hold_amountless_refund(merchant_id, verified, reason)
                    .await;
                return None;
            }
        };
        Some(processed)
    }

    /// A partial refund without its amount that the trade query does not explain: said in the
    /// log as an ALERT and held for review with `reason`.
    async fn hold_amountless_refund(
        &self,
        merchant_id: &str,
        verified: &Notification,
        reason: &str,
    ) {
        tracing::error!(target: "payhost::alert", merchant = merchant_id, out_trade_no = %crate::log_limit::clean(&verified.out_trade_no), "ALERT: {reason}");
        if let Err(e) = self
            .store
            .flag_for_review(merchant_id, &verified.out_trade_no, reason)
            .await
        {
            tracing::error!(merchant = merchant_id, error = %e, "cannot flag a payment for review");
        }
    }

    /// Lost-notify recovery: asks the provider's trade query about one payment (through its
    /// component) and, when the trade moved, applies the answer through the same match and
    /// one-transaction transition as a notification: recorded with its source (`query`),
    /// deduplicated against the notification that may still come, one webhook. A trade the
    /// provider does not have, and every error, is reported, never guessed.
    pub async fn sync_payment(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<crate::service::SyncResult, crate::service::ApiError> {
        use crate::service::{ApiError, SyncResult};
        let _permit = self.admission.enter(crate::admission::Class::Shop).await;
        let merchant = self.merchant(merchant_id).await?;
        let plugin = self.plugin_for(&merchant)?;
        let payment = self
            .store
            .payment(merchant_id, out_trade_no)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "unknown_order",
                    format!("no payment {}", crate::domain::quoted_order(out_trade_no)),
                )
            })?;
        // Refunds without an answer first: a trade's refunded total read beside refunds still
        // pending here cannot be attributed, and is held for review instead of applied.
        let refunds = self
            .resolve_refunds(merchant_id, out_trade_no)
            .await?
            .iter()
            .map(crate::refunds::refund_json)
            .collect();
        let policy = self.merchant_policy(&merchant);
        let mut session = plugin.session().await?;
        let query = session
            .query_trade(&policy, &merchant.settings, out_trade_no)
            .await?
            .map_err(crate::service::plugin_error_to_api)?;
        self.metrics.notify(if query.found {
            "query_found"
        } else {
            "query_not_found"
        });
        let Some(verified) = query.notification.filter(|_| query.found) else {
            crate::ledger::note(
                self,
                merchant_id,
                out_trade_no,
                "query",
                Some("the provider has no such trade"),
            )
            .await;
            return Ok(SyncResult {
                found: false,
                trade_status: None,
                refund_total_shown: false,
                outcome: "not_found".into(),
                finished: payment.is_finished(),
                status: payment.status,
                refunds,
            });
        };
        // A signed answer about another order is never applied to it (nor to the one asked about).
        if verified.out_trade_no != out_trade_no {
            return Err(crate::service::upstream_error(
                502,
                "gateway_malformed",
                "the provider's answer names another order",
                &format!(
                    "asked about {out_trade_no:?}, the answer names {:?}",
                    verified.out_trade_no
                ),
            ));
        }
        // Stored like a notification, its source named: what the query answered, as fields.
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.fields.iter())
            .finish();
        let raw = RawNotification {
            merchant_id,
            remote: Some("query"),
            body: body.as_bytes(),
        };
        // A trade still waiting moves nothing: recorded as it was answered, its id not claimed
        // (a query's id names the trade's state, and an unpaid trade's may repeat).
        let processed = if verified.event == crate::domain::state::TradeEvent::Waiting {
            Processed::stop(
                NotifyOutcome::NoChange,
                "source: query; the trade is still waiting",
            )
            .with_seen(&verified)
        } else {
            self.apply_verified(
                merchant_id,
                &merchant,
                &mut session,
                &verified,
                &raw,
                Some("query"),
            )
            .await
        };
        match processed.outcome {
            NotifyOutcome::Retry(RetryCause::PluginFailed) => {
                return Err(ApiError::new(
                    502,
                    "plugin_failed",
                    processed.detail.unwrap_or_default(),
                ))
            }
            NotifyOutcome::Retry(_) => {
                return Err(ApiError::internal(processed.detail.unwrap_or_default()))
            }
            _ => {}
        }
        if !processed.stored {
            self.store
                .record_notification(&raw, &record_of(merchant_id, &processed))
                .await
                .map_err(ApiError::internal)?;
        }
        let (finished, status) = self
            .store
            .payment(merchant_id, out_trade_no)
            .await
            .map_err(ApiError::internal)?
            .map(|p| (p.is_finished(), p.status))
            .unwrap_or_default();
        Ok(SyncResult {
            found: true,
            refund_total_shown: verified
                .refund
                .as_ref()
                .is_some_and(|r| r.refunded_total.is_some()),
            trade_status: Some(verified.trade_status),
            outcome: processed.outcome.label().to_owned(),
            status,
            finished,
            refunds,
        })
    }
}

/// What became of a legacy partial refund reported without its amount, as a notification's
/// detail says it (worded for the owner by the admin's timeline).
pub mod amountless {
    /// The trade query's refunded total recorded it (then `; payment <status>`).
    pub const APPLIED: &str = "a partial refund without its amount: applied from the trade query";
    /// Sent again: the query recorded it the first time.
    pub const LEARNED_BEFORE: &str =
        "a partial refund without its amount, applied before from the trade query";
    /// Reported with the trade's finish, whose query shows its total recorded here.
    pub const ON_FINISH: &str = "a partial refund without its amount on the trade's finish: the trade query shows the trade finished, and its refunded total is recorded here";
    /// [`RECORDED_TOTAL`], the total (`3.00`), [`RECORDED_SINCE`]: recorded here since it was made.
    pub const RECORDED_TOTAL: &str =
        "a partial refund without its amount: the trade query's refunded total ";
    pub const RECORDED_SINCE: &str = " is recorded here, the last of it after this refund was made";
}

/// A refund report that names no amount, no refunded total and no request number: a legacy
/// trade notification's `refund_status` alone.
/// Whether a refund was recorded here (`recorded_at`: its UTC completion times) at or after
/// `made`, the provider's Beijing time of a refund it reports without an amount. Without either
/// time it cannot be told: false.
fn recorded_since(recorded_at: &[&str], made: Option<&str>) -> bool {
    use crate::domain::clock::{beijing_text_to_utc, parse_rfc3339};
    let made = made
        .and_then(beijing_text_to_utc)
        .and_then(|t| parse_rfc3339(&t));
    let latest = recorded_at.iter().filter_map(|t| parse_rfc3339(t)).max();
    matches!((made, latest), (Some(made), Some(latest)) if latest >= made)
}

fn is_amountless(report: &crate::runtime::plugin_api::RefundReport) -> bool {
    report.amount.is_none() && report.refunded_total.is_none() && report.request_no.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy partial refund without an amount is one recorded here only when a refund was
    /// recorded at or after the time it was made (Beijing time, 8 hours ahead of UTC); a second
    /// refund the lagging query does not show yet is later than every recorded one.
    #[test]
    fn a_refund_is_taken_for_one_recorded_here_only_when_recorded_since() {
        let recorded = ["2026-12-05T02:00:00Z", "2026-12-05T03:00:00Z"];
        assert!(recorded_since(&recorded, Some("2026-12-05 11:00:00")));
        assert!(recorded_since(&recorded, Some("2026-12-05 10:59:59")));
        assert!(!recorded_since(&recorded, Some("2026-12-05 11:00:01")));
        assert!(!recorded_since(&recorded, None));
        assert!(!recorded_since(&[], Some("2026-12-05 10:00:00")));
        assert!(!recorded_since(&recorded, Some("garbage")));
    }

    /// Every outcome, in `LABELS`' order.
    fn every_outcome() -> [NotifyOutcome; 15] {
        use NotifyOutcome::*;
        [
            Applied,
            Duplicate,
            NoChange,
            UnknownOrder,
            Mismatch,
            UnknownMerchant,
            RateLimited,
            BodyRefused(413),
            Refused(Refusal::BadSignature),
            Refused(Refusal::Malformed),
            Retry(RetryCause::NotConfirmed),
            Retry(RetryCause::VerifyUnreachable),
            Retry(RetryCause::MerchantMisconfigured),
            Retry(RetryCause::PluginFailed),
            Retry(RetryCause::StoreFailed),
        ]
    }

    #[test]
    fn labels_lists_every_outcome_once() {
        let labels: Vec<&str> = every_outcome().iter().map(|o| o.label()).collect();
        assert_eq!(labels, NotifyOutcome::LABELS);
    }

    #[test]
    fn only_final_outcomes_are_acknowledged() {
        use NotifyOutcome::*;
        for o in every_outcome() {
            let final_ = matches!(o, Applied | Duplicate | NoChange | UnknownOrder | Mismatch);
            assert_eq!(o.acknowledged(), final_, "{o:?}");
        }
    }

    #[test]
    fn every_outcome_has_one_status() {
        use NotifyOutcome::*;
        for o in [Applied, Duplicate, NoChange, UnknownOrder, Mismatch] {
            assert_eq!(o.http_status(), 200, "{o:?}");
        }
        assert_eq!(UnknownMerchant.http_status(), 404);
        assert_eq!(RateLimited.http_status(), 429);
        assert_eq!(BodyRefused(413).http_status(), 413);
        assert_eq!(Refused(Refusal::BadSignature).http_status(), 400);
        assert_eq!(Retry(RetryCause::StoreFailed).http_status(), 500);
        assert_eq!(Retry(RetryCause::NotConfirmed).http_status(), 503);
        assert_eq!(Retry(RetryCause::PluginFailed).http_status(), 503);
    }

    #[test]
    fn the_store_records_the_pipelines_labels() {
        use crate::store::Applied as A;
        for (a, label) in [
            (
                A::Changed {
                    from: "a".into(),
                    to: "b".into(),
                },
                "applied",
            ),
            (
                A::Recorded {
                    status: "a".into(),
                    events: vec![],
                },
                "applied",
            ),
            (A::NoChange, "no_change"),
            (A::Duplicate, "duplicate"),
            (A::UnknownOrder, "unknown_order"),
        ] {
            assert_eq!(a.outcome().0, label);
            assert_eq!(NotifyOutcome::from_applied(&a).label(), label);
        }
    }

    #[test]
    fn a_merchant_whose_recent_notifications_are_refused_is_marked() {
        let fates = RecentFates::default();
        assert!(fates.mostly_acknowledged());
        for _ in 0..MAX_RECENT_REFUSALS {
            fates.record(false);
        }
        assert!(fates.mostly_acknowledged(), "a few refusals are normal");
        fates.record(false);
        assert!(!fates.mostly_acknowledged(), "a run of refusals is a flood");
        for _ in 0..32 {
            fates.record(true);
        }
        assert!(
            fates.mostly_acknowledged(),
            "32 acknowledged ones clear the mark"
        );
    }

    #[test]
    fn a_refusal_is_told_apart_from_a_reason_to_retry() {
        assert_eq!(
            NotifyOutcome::of_refusal(&PluginError::BadSignature("x".into())),
            NotifyOutcome::Refused(Refusal::BadSignature)
        );
        assert_eq!(
            NotifyOutcome::of_refusal(&PluginError::Timeout("x".into())),
            NotifyOutcome::Retry(RetryCause::VerifyUnreachable)
        );
        assert_eq!(
            NotifyOutcome::of_refusal(&PluginError::NotifyNotConfirmed("x".into())),
            NotifyOutcome::Retry(RetryCause::NotConfirmed)
        );
        assert_eq!(
            NotifyOutcome::of_refusal(&PluginError::Malformed("x".into())),
            NotifyOutcome::Refused(Refusal::Malformed)
        );
    }
}
