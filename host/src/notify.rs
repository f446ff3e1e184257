//! The notification pipeline: a provider's notification (or a trade query's answer) verified by
//! the merchant's component, matched against its order and applied once, stored raw with its
//! outcome in one commit. Every path ends in one [`NotifyOutcome`], decided here; the HTTP layer
//! turns it into the provider's reply and a status (`http::notify_reply`).

use crate::config::MerchantSettings;
use crate::runtime::plugin_api::{Notification, OrderExpectation, PluginError};
use crate::runtime::{CallError, Session};
use crate::service::App;
use crate::store::{Applied, NotificationEffect, NotificationRecord, RawNotification};

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
    pub fn label(self) -> &'static str {
        match self {
            NotifyOutcome::Applied => "applied",
            NotifyOutcome::Duplicate => "duplicate",
            NotifyOutcome::NoChange => "no_change",
            NotifyOutcome::UnknownOrder => "unknown_order",
            NotifyOutcome::Mismatch => "mismatch",
            NotifyOutcome::UnknownMerchant => "unknown_merchant",
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

    fn from_applied(a: &Applied) -> NotifyOutcome {
        match a {
            Applied::Changed { .. } | Applied::Recorded { .. } => NotifyOutcome::Applied,
            Applied::NoChange => NotifyOutcome::NoChange,
            Applied::Duplicate => NotifyOutcome::Duplicate,
            Applied::UnknownOrder => NotifyOutcome::UnknownOrder,
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

/// A notification's outcome with the component's two replies (the provider's words for "got
/// it" and "send it again").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyAnswer {
    pub outcome: NotifyOutcome,
    pub ack: String,
    pub retry: String,
}

impl NotifyAnswer {
    /// The body the provider receives.
    pub fn reply(&self) -> &str {
        if self.outcome.acknowledged() {
            &self.ack
        } else {
            &self.retry
        }
    }
}

/// Where processing ended: the outcome, what to record, and whether the record is already stored
/// (an applied effect is stored with its raw notification in one commit).
struct Processed {
    outcome: NotifyOutcome,
    detail: Option<String>,
    seen: Option<Notification>,
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
        self.seen = Some(n.clone());
        self
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
    /// Processes an asynchronous notification: verified (and confirmed, when the component asks
    /// the provider), matched against the order and applied once; stored raw with its outcome in
    /// one commit (with the effect, when there is one). It is acknowledged only once that commit
    /// is durable and nothing is left to retry; one whose processing is cut short is not, so the
    /// provider sends it again. One for no known merchant is stored nowhere.
    pub async fn handle_notify(
        &self,
        merchant_id: &str,
        remote: Option<&str>,
        body: &[u8],
    ) -> NotifyAnswer {
        let answer = |outcome: NotifyOutcome, plugin: Option<&crate::runtime::PluginRuntime>| {
            let info = &plugin
                .or(self.plugins.first())
                .expect("a host has a plugin")
                .info;
            NotifyAnswer {
                outcome,
                ack: info.notify_ack.clone(),
                retry: info.notify_retry.clone(),
            }
        };
        let merchant = match self.store.merchant(merchant_id) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.metrics.notify(NotifyOutcome::UnknownMerchant.label());
                return answer(NotifyOutcome::UnknownMerchant, None);
            }
            Err(e) => {
                tracing::error!(merchant = merchant_id, error = %e, "cannot read the merchant; asking the provider to retry");
                let outcome = NotifyOutcome::Retry(RetryCause::StoreFailed);
                self.metrics.notify(outcome.label());
                return answer(outcome, None);
            }
        };
        self.notify_for(merchant_id, &merchant, remote, body).await
    }

    /// [`handle_notify`](App::handle_notify) for a merchant already read (the HTTP layer reads it
    /// to refuse an unknown merchant before the body).
    pub async fn notify_for(
        &self,
        merchant_id: &str,
        merchant: &MerchantSettings,
        remote: Option<&str>,
        body: &[u8],
    ) -> NotifyAnswer {
        let _permit = self.admission.acquire().await;
        let answer = |outcome: NotifyOutcome, plugin: Option<&crate::runtime::PluginRuntime>| {
            let info = &plugin
                .or(self.plugins.first())
                .expect("a host has a plugin")
                .info;
            NotifyAnswer {
                outcome,
                ack: info.notify_ack.clone(),
                retry: info.notify_retry.clone(),
            }
        };
        let raw = RawNotification {
            merchant_id,
            remote,
            body,
        };
        let plugin = self.plugins.for_merchant(merchant);
        let processed = match plugin {
            Some(p) => self.process_notify(p, merchant_id, merchant, &raw).await,
            None => Processed::stop(
                NotifyOutcome::Retry(RetryCause::MerchantMisconfigured),
                format!("no plugin {:?} is loaded", merchant.plugin_id),
            ),
        };
        let mut outcome = processed.outcome;
        if !processed.stored {
            let record = record_of(merchant_id, &processed);
            // A caller that did not prove it is the provider (nothing verified) gets a bounded
            // record only, within the merchant's quota: forged bodies cannot fill the disk.
            let stored = if processed.seen.is_none() {
                self.store.record_refused_notification(
                    crate::store::RefusedRecord::new(&raw, &record),
                    self.config.retention.refused_notifications_per_merchant,
                )
            } else {
                self.store.record_notification(&raw, &record)
            };
            if let Err(e) = stored {
                tracing::error!(merchant = merchant_id, error = %e, "cannot store a notification; asking the provider to retry");
                outcome = NotifyOutcome::Retry(RetryCause::StoreFailed);
            }
        }
        self.metrics.notify(outcome.label());
        answer(outcome, plugin)
    }

    async fn process_notify(
        &self,
        plugin: &crate::runtime::PluginRuntime,
        merchant_id: &str,
        merchant: &MerchantSettings,
        raw: &RawNotification<'_>,
    ) -> Processed {
        let form: Vec<(String, String)> = form_urlencoded::parse(raw.body).into_owned().collect();
        let policy = self.merchant_policy(merchant);
        let mut session = match plugin.session().await {
            Ok(s) => s,
            Err(e) => return Processed::call_failed(e),
        };
        let verified = match session
            .verify_notification(&policy, &merchant.settings, &form)
            .await
        {
            Err(e) => return Processed::call_failed(e),
            Ok(Err(e)) => {
                let outcome = NotifyOutcome::of_refusal(&e);
                tracing::warn!(merchant = merchant_id, outcome = outcome.label(), detail = %e, "notification refused");
                return Processed::stop(outcome, e.to_string());
            }
            Ok(Ok(n)) => n,
        };
        self.apply_verified(merchant_id, merchant, &mut session, &verified, raw, None)
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
        if let Some(report) = &verified.refund {
            // A legacy trade_status_sync names no amount: a full refund's is the rest of the paid
            // amount; a partial one's is unknown, so only the state machine moves it (below).
            let amountless = report.amount.is_none()
                && report.refunded_total.is_none()
                && report.request_no.is_empty();
            let full = verified.event == crate::domain::state::TradeEvent::Refunded;
            if !amountless || full {
                return self.apply_refund(
                    merchant_id,
                    merchant,
                    verified,
                    report,
                    amountless,
                    source,
                );
            }
        }
        let payment = match self.store.payment(merchant_id, &verified.out_trade_no) {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::error!(
                    target: "payhost::alert",
                    merchant = merchant_id,
                    out_trade_no = %verified.out_trade_no,
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
        let expectation = OrderExpectation {
            out_trade_no: payment.out_trade_no.clone(),
            total_fee: payment.total_fee(),
            seller: payment.seller.clone(),
        };
        match session.match_order(verified, &expectation).await {
            Err(e) => return Processed::call_failed(e).with_seen(verified),
            Ok(Err(mismatches)) => {
                let reason = mismatches
                    .iter()
                    .map(|m| format!("{}: {}", m.field, m.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::error!(
                    target: "payhost::alert",
                    merchant = merchant_id,
                    out_trade_no = %payment.out_trade_no,
                    reason = %reason,
                    "ALERT: a confirmed notification does not match its order; flagged for review, not paid"
                );
                if let Err(e) =
                    self.store
                        .flag_for_review(merchant_id, &payment.out_trade_no, &reason)
                {
                    return Processed::stop(
                        NotifyOutcome::Retry(RetryCause::StoreFailed),
                        e.to_string(),
                    )
                    .with_seen(verified);
                }
                return Processed::stop(NotifyOutcome::Mismatch, note(reason)).with_seen(verified);
            }
            Ok(Ok(())) => {}
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
            seen: Some(verified.clone()),
            stored: false,
        };
        match self
            .store
            .apply_notification(&effect, raw, &record_of(merchant_id, &pending))
        {
            Ok(applied) => {
                if let Applied::Changed { from, to } = &applied {
                    tracing::info!(merchant = merchant_id, out_trade_no = %verified.out_trade_no, %from, %to, source = source.unwrap_or("notification"), "payment status changed");
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

    /// A verified report about a refund (a notification's or a queried trade's `refund`): matched
    /// to the refund started here by its request number, recorded as started elsewhere, or held
    /// for review; once per notify id. A legacy batch-refund notify names only the trade number.
    fn apply_refund(
        &self,
        merchant_id: &str,
        merchant: &MerchantSettings,
        verified: &Notification,
        report: &crate::runtime::plugin_api::RefundReport,
        whole_rest: bool,
        source: Option<&str>,
    ) -> Processed {
        use crate::store::ledger::RefundApplied as R;
        let payment = if verified.out_trade_no.is_empty() {
            self.store
                .payment_by_trade_no(merchant_id, &verified.trade_no)
        } else {
            self.store.payment(merchant_id, &verified.out_trade_no)
        };
        let payment = match payment {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::error!(target: "payhost::alert", merchant = merchant_id, trade_no = %verified.trade_no, "ALERT: a confirmed refund report names an unknown order");
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
        let mut report = report.clone();
        if whole_rest {
            // Refunded in full: the refunded total is the paid amount.
            report.refunded_total = Some(payment.total_fee());
        }
        let applied = match self.apply_refund_report(
            merchant_id,
            merchant,
            &payment.out_trade_no,
            &verified.trade_no,
            &verified.notify_id,
            &report,
        ) {
            Ok(a) => a,
            Err(e) => {
                return Processed::stop(
                    NotifyOutcome::Retry(RetryCause::StoreFailed),
                    e.to_string(),
                )
                .with_seen(verified)
            }
        };
        let (outcome, detail) = match &applied {
            R::Settled {
                refund_id,
                status,
                payment_status,
            } => (
                NotifyOutcome::Applied,
                format!("refund {refund_id} {status}; payment {payment_status}"),
            ),
            R::Recorded {
                refund_id,
                payment_status,
            } => (
                NotifyOutcome::Applied,
                format!(
                    "refund {refund_id} started outside payhost recorded; payment {payment_status}"
                ),
            ),
            R::Known => (NotifyOutcome::Duplicate, "refund already known".to_owned()),
            R::Mismatch(reason) => (
                NotifyOutcome::Mismatch,
                format!("held for review: {reason}"),
            ),
            R::UnknownPayment => (NotifyOutcome::UnknownOrder, "unknown order".to_owned()),
        };
        let mut seen = verified.clone();
        seen.out_trade_no = payment.out_trade_no.clone();
        let mut p = Processed::stop(
            outcome,
            match source {
                Some(s) => format!("source: {s}; {detail}"),
                None => detail,
            },
        );
        p.seen = Some(seen);
        p
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
        let _permit = self.admission.acquire().await.map_err(ApiError::internal)?;
        let merchant = self.merchant(merchant_id)?;
        let plugin = self.plugin_for(&merchant)?;
        let payment = self
            .store
            .payment(merchant_id, out_trade_no)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(404, "unknown_order", format!("no payment {out_trade_no:?}"))
            })?;
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
            );
            return Ok(SyncResult {
                found: false,
                trade_status: None,
                outcome: "not_found".into(),
                status: payment.status,
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
                .map_err(ApiError::internal)?;
        }
        let status = self
            .store
            .payment(merchant_id, out_trade_no)
            .map_err(ApiError::internal)?
            .map(|p| p.status)
            .unwrap_or_default();
        Ok(SyncResult {
            found: true,
            trade_status: Some(verified.trade_status),
            outcome: processed.outcome.label().to_owned(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_outcomes_are_acknowledged() {
        use NotifyOutcome::*;
        for o in [Applied, Duplicate, NoChange, UnknownOrder, Mismatch] {
            assert!(o.acknowledged(), "{o:?}");
        }
        for o in [
            UnknownMerchant,
            Refused(Refusal::BadSignature),
            Refused(Refusal::Malformed),
            Retry(RetryCause::NotConfirmed),
            Retry(RetryCause::VerifyUnreachable),
            Retry(RetryCause::MerchantMisconfigured),
            Retry(RetryCause::PluginFailed),
            Retry(RetryCause::StoreFailed),
        ] {
            assert!(!o.acknowledged(), "{o:?}");
        }
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
