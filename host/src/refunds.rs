//! Refunds and closes started from the API (or the admin page): the refund is stored PENDING
//! (with its request number) before the component is called, so a retry never refunds twice;
//! the component's answer settles it, or leaves it pending for the provider's notification or a
//! refund query. The provider's refund reports (a notification's `refund`, a trade query's
//! refunded total) are applied through the same money rules ([`crate::domain::refunds`]).

use crate::domain::amount::Amount;
use crate::domain::{clock, refunds};
use crate::runtime::plugin_api::{self as api, RefundStatus};
use crate::service::{plugin_error_to_api, ApiError, App};
use crate::store::ledger::{
    NewRefund, Refund, RefundApplied, RefundBegun, RefundResult, ReportEffect,
};

/// `POST …/refunds` as the shop sends it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundCommand {
    /// A decimal string; a JSON number arrives as the string of its exact literal.
    #[serde(default, deserialize_with = "crate::domain::amount::exact_json_amount")]
    pub amount: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub refund_key: Option<String>,
}

/// The longest reason kept (Alipay's limit for `refund_reason`).
const MAX_REASON: usize = 256;
/// The longest idempotency key.
const MAX_KEY: usize = 64;

/// A refund as the API shows it.
pub fn refund_json(r: &Refund) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": r.id,
        "amount": r.amount(),
        "reason": r.reason,
        "status": r.status,
        "started_by": crate::domain::refunds::without_admin_names(&r.started_by),
        "created_at": r.created_at,
        "completed_at": r.completed_at,
        "request_no": r.request_no,
    });
    if let Some(u) = &r.confirm_url {
        v["confirm_url"] = serde_json::json!(u);
    }
    if let Some(d) = r.detail.as_deref().filter(|d| !d.is_empty()) {
        v["detail"] = serde_json::json!(crate::domain::refunds::without_admin_names(d));
    }
    v
}

/// A component's redirect as one URL a browser can open (a GET form becomes its query).
fn redirect_url(r: &api::Redirect) -> String {
    if !r.url.is_empty() {
        return r.url.clone();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(r.fields.iter())
        .finish();
    let sep = if r.action.contains('?') { '&' } else { '?' };
    format!("{}{sep}{query}", r.action)
}

impl App {
    /// Starts a refund (see the module documentation); the status code and the refund.
    pub async fn start_refund(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
        cmd: RefundCommand,
        started_by: &str,
    ) -> Result<(u16, Refund), ApiError> {
        let merchant = self.merchant(merchant_id).await?;
        // Before anything is recorded: a merchant that cannot refund leaves no PENDING refund.
        let plugin = self.plugin_for(&merchant)?;
        let amount = match &cmd.amount {
            Some(serde_json::Value::String(s)) => Amount::parse(s.trim()),
            Some(serde_json::Value::Number(n)) => Amount::parse(&n.to_string()),
            None | Some(serde_json::Value::Null) => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "amount",
                    "amount: is required (a decimal such as \"3.00\")",
                ))
            }
            Some(_) => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "amount",
                    "amount: must be a decimal string such as \"3.00\"",
                ))
            }
        }
        .map_err(|e| ApiError::field(400, "invalid_request", "amount", format!("amount: {e}")))?;
        let reason = cmd.reason.unwrap_or_default().trim().to_owned();
        if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(ApiError::field(
                400,
                "invalid_request",
                "reason",
                format!(
                    "reason: at most {MAX_REASON} characters, on one line (no control characters)"
                ),
            ));
        }
        let key = cmd.refund_key.map(|k| k.trim().to_owned());
        if key
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY || k.chars().any(char::is_control))
        {
            return Err(ApiError::field(
                400,
                "invalid_request",
                "refund_key",
                format!("refund_key: 1 to {MAX_KEY} bytes, no control characters"),
            ));
        }
        let now = clock::now_unix();
        let begun = self
            .store
            .begin_refund(&NewRefund {
                merchant_id: merchant_id.to_owned(),
                out_trade_no: out_trade_no.to_owned(),
                request_no: refunds::new_request_no(now),
                refund_key: key,
                amount_fen: amount.minor(),
                reason,
                started_by: started_by.to_owned(),
            })
            .await
            .map_err(ApiError::internal)?;
        let refund = match begun {
            RefundBegun::New(r) => r,
            // The same key again is the same refund; with another amount it is a mistake (a
            // key copied from another refund), never taken as that refund's answer.
            RefundBegun::Existing(r) if r.amount_fen != amount.minor() => {
                return Err(ApiError::field(
                    409,
                    "refund_key_reused",
                    "refund_key",
                    format!(
                        "refund_key: already used for refund {} of {}; a refund of another amount needs another key",
                        r.id,
                        r.amount()
                    ),
                ))
            }
            RefundBegun::Existing(r) => return Ok((200, r)),
            RefundBegun::UnknownPayment => return Err(unknown_payment(out_trade_no)),
            RefundBegun::Refused(why) => {
                let field = matches!(why, refunds::Refusal::Exceeds { .. }).then_some("amount");
                return Err(ApiError {
                    status: 409,
                    code: match why {
                        refunds::Refusal::Exceeds { .. } => "refund_exceeds_paid",
                        _ => "not_refundable",
                    }
                    .into(),
                    field: field.map(str::to_owned),
                    message: why.to_string(),
                    about: None,
                });
            }
        };
        tracing::info!(merchant = merchant_id, out_trade_no, refund = refund.id, amount = %refund.amount(), started_by, "refund started");
        // Read after the refund is admitted, not before: a payment paid in between (its
        // notification committed while this request waited) has its trade number only now, and
        // a request built from the older read would be refused for the lack of it.
        // From here on the refund is kept: a failure says so (the recovery sweep sends a kept
        // refund that was never sent), never a bare error the shop could take for "not refunded".
        let payment = match self.stored_payment(merchant_id, out_trade_no).await {
            Ok(p) => p,
            Err(e) => return Err(self.kept(merchant_id, &refund, e, true).await),
        };
        let request = self.refund_request(merchant_id, &payment, &refund, now);
        // Claimed before it is sent: a recovery sweep (another replica's, this request having
        // waited long on its way here) that found it unsent took it and sends it; a second send
        // of the same number could race the first one's answer.
        let claimed = match self
            .store
            .claim_first_refund_send(merchant_id, refund.id)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return Err(self
                    .kept(merchant_id, &refund, ApiError::internal(e), true)
                    .await)
            }
        };
        if !claimed {
            tracing::info!(
                merchant = merchant_id,
                out_trade_no,
                refund = refund.id,
                "refund already sent by the recovery sweep; not sent again"
            );
            return match self.store.refund(merchant_id, refund.id).await {
                Ok(stored) => Ok((201, stored.unwrap_or(refund))),
                Err(e) => Err(self
                    .kept(merchant_id, &refund, ApiError::internal(e), false)
                    .await),
            };
        }
        let answer = self.send_refund(plugin, &merchant, &request).await;
        // Refused by the component before anything was sent (its rules for the reason, say, or
        // a product without refunds): no refund existed. Nothing is kept, so it is not listed
        // and a retry with the same refund_key, corrected, is a refund of its own.
        let never_sent = match &answer {
            Err(e @ crate::runtime::CallError::Unsupported { .. }) => {
                Some(ApiError::from(e.clone()))
            }
            Ok(Err(e @ api::PluginError::InvalidOrder(_))) => Some(plugin_error_to_api(e.clone())),
            _ => None,
        };
        if let Some(e) = never_sent {
            if let Err(failed) = self.store.discard_refund(merchant_id, refund.id).await {
                // Still stored (and claimed): the sweep asks the provider about it in time.
                return Err(self
                    .kept(merchant_id, &refund, ApiError::internal(failed), false)
                    .await);
            }
            tracing::info!(merchant = merchant_id, out_trade_no, refund = refund.id, code = %e.code, "refund refused before it was sent; nothing kept");
            return Err(e);
        }
        let answered = self
            .apply_refund_answer(merchant_id, &merchant, &refund, answer)
            .await;
        self.query_trade_if_failed(merchant_id, &refund).await;
        if let Err(e) = answered {
            // No answer, or none understood: the refund may have reached the provider. It is
            // kept PENDING (the provider's report or a query settles it).
            return Err(self.kept(merchant_id, &refund, e, false).await);
        }
        match self.store.refund(merchant_id, refund.id).await {
            Ok(stored) => Ok((201, stored.unwrap_or(refund))),
            Err(e) => Err(self
                .kept(merchant_id, &refund, ApiError::internal(e), false)
                .await),
        }
    }

    /// `e` for a refund that is kept (it may reach, or have reached, the provider): the error says
    /// so and carries it — a shop that took the error for "not refunded" and started another
    /// refund refunded twice — and the admin audits it. The refund as stored now (pending, or
    /// settled meanwhile by a report or a query). One the provider refused moved nothing and is
    /// not carried. When it cannot be read: as begun if it was never sent (`unsent`: it is
    /// PENDING, and the sweep sends it), else nothing is said of it (it may have ended either
    /// way).
    async fn kept(
        &self,
        merchant_id: &str,
        begun: &Refund,
        mut e: ApiError,
        unsent: bool,
    ) -> ApiError {
        let kept = match self.store.refund(merchant_id, begun.id).await {
            Ok(Some(r)) => r,
            Ok(None) => return e,
            Err(_) if unsent => begun.clone(),
            Err(_) => return e,
        };
        if kept.status == refunds::PENDING {
            // Sent again without a key, the request would be a second refund.
            let again = if kept.refund_key.is_some() {
                "read the payment later, or send this request again with the same refund_key"
            } else {
                "read the payment later to see how it ended (this request had no refund_key: sent again, it would be a second refund)"
            };
            e.message = format!(
                "{} The refund's outcome is unknown: it may have reached the provider, so it is kept as refund {} (request_no {}, PENDING) and settled by the provider's report or a query. Do not start another refund for it: {again}",
                e.message.trim_end_matches('.').to_owned() + ".",
                kept.id,
                kept.request_no
            );
        }
        if kept.status != refunds::FAILED {
            e.about = Some(Box::new(("refund", refund_json(&kept))));
        }
        e
    }

    /// The payment as stored now, or the API's 404 for an unknown one.
    async fn stored_payment(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<crate::store::Payment, ApiError> {
        self.store
            .payment(merchant_id, out_trade_no)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| unknown_payment(out_trade_no))
    }

    /// The component's `start-refund` flow for `request`, its requests sent under the
    /// merchant's policy.
    async fn send_refund(
        &self,
        plugin: &crate::runtime::PluginRuntime,
        merchant: &crate::config::MerchantSettings,
        request: &api::RefundRequest,
    ) -> Result<Result<api::RefundState, api::PluginError>, crate::runtime::CallError> {
        let policy = self.merchant_policy(merchant);
        let mut session = plugin.session().await?;
        session
            .start_refund(&policy, &merchant.settings, request)
            .await
    }

    /// What the component is asked to send for `refund` of `payment`.
    fn refund_request(
        &self,
        merchant_id: &str,
        payment: &crate::store::Payment,
        refund: &Refund,
        now: i64,
    ) -> api::RefundRequest {
        api::RefundRequest {
            out_trade_no: payment.out_trade_no.clone(),
            trade_no: payment.trade_no.clone().unwrap_or_default(),
            amount: refund.amount(),
            total_fee: payment.total_fee(),
            reason: refund.reason.clone(),
            request_no: refund.request_no.clone(),
            request_time: clock::beijing_text(now),
            notify_url: self.config.notify_url(merchant_id),
        }
    }

    /// Applies the component's answer to a refund sent to the provider (started here, or sent
    /// again by [`resolve_refund`](App::resolve_refund)). The provider's refusal ends it FAILED
    /// (nothing moved, its amount refundable again); no answer, or one not understood, leaves it
    /// PENDING under its number (sending that number again refunds at most once); a state settles
    /// it, or keeps it pending with the provider's words. `Err`: what the caller is told.
    async fn apply_refund_answer(
        &self,
        merchant_id: &str,
        merchant: &crate::config::MerchantSettings,
        refund: &Refund,
        answer: Result<Result<api::RefundState, api::PluginError>, crate::runtime::CallError>,
    ) -> Result<(), ApiError> {
        let id = refund.id;
        let state = match answer {
            Err(e @ crate::runtime::CallError::Unsupported { .. }) => {
                // Nothing was sent: the refund failed here, its amount free again.
                self.settle(merchant_id, merchant, id, refunds::FAILED, &e.to_string())
                    .await?;
                return Err(ApiError::from(e));
            }
            Err(e) => {
                // The component did not answer: the refund stays PENDING under its number (a
                // retry with the same refund_key returns it; the provider never saw it twice).
                self.store
                    .refund_started(
                        merchant_id,
                        id,
                        &refund.request_no,
                        None,
                        Some(&e.to_string()),
                    )
                    .await
                    .map_err(ApiError::internal)?;
                return Err(ApiError::from(e));
            }
            Ok(Err(e)) => {
                let api_error = plugin_error_to_api(e.clone());
                if matches!(
                    e,
                    api::PluginError::Gateway(_) | api::PluginError::InvalidOrder(_)
                ) {
                    // The provider (or the component) refused it: nothing moved.
                    let applied = self
                        .settle(
                            merchant_id,
                            merchant,
                            id,
                            refunds::FAILED,
                            &api_error.message,
                        )
                        .await?;
                    // Settled meanwhile (a notification, another replica's query): the stored
                    // refund is the answer, never "refused" for one that succeeded.
                    if !matches!(&applied, RefundApplied::Settled { status, .. } if status == refunds::FAILED)
                    {
                        return Ok(());
                    }
                } else {
                    self.store
                        .refund_started(
                            merchant_id,
                            id,
                            &refund.request_no,
                            None,
                            Some(&api_error.message),
                        )
                        .await
                        .map_err(ApiError::internal)?;
                }
                return Err(api_error);
            }
            Ok(Ok(state)) => state,
        };
        let confirm = state.confirm.as_ref().map(redirect_url);
        let detail = (!state.detail.is_empty()).then_some(state.detail.as_str());
        match state.status {
            RefundStatus::Pending => self
                .store
                .refund_started(
                    merchant_id,
                    id,
                    &refund.request_no,
                    confirm.as_deref(),
                    detail,
                )
                .await
                .map_err(ApiError::internal),
            RefundStatus::Succeeded => self
                .settle(merchant_id, merchant, id, refunds::SUCCESS, &state.detail)
                .await
                .map(drop),
            RefundStatus::Failed => self
                .settle(merchant_id, merchant, id, refunds::FAILED, &state.detail)
                .await
                .map(drop),
        }
    }

    /// Asks the provider where a PENDING refund that waits for no seller stands (one whose
    /// answer was lost, not understood, or said "still being processed"), and settles it: the
    /// refund query first; when the provider has no success under its number, the same request
    /// again, with the same number and amount (the provider refunds at most once per number:
    /// [OPENAPI §7.5] advises exactly this after a timeout or `ACQ.SYSTEM_ERROR`).
    ///
    /// It is sent again only once every earlier send has surely ended and been processed: the
    /// component's call timeout plus `[recovery] refund_after_s` (at least 10 s: Alipay advises a
    /// query no sooner than 10 s after a refund, [OPENAPI §7.6]) after it started and after its
    /// last send again, claimed in the store before sending ([`claim_refund_send`]: never two
    /// senders at once, whichever replica, sweep or admin's sync). By then "no success under this
    /// number" means it was not received or failed, so a refusal of the send again ends it
    /// FAILED: nothing moved. A refund that waits for the seller's confirmation (legacy), or one
    /// of a component without refunds, is left as it is: `Ok(false)`; a legacy one whose start
    /// was cut short before its page was made is started again under a new number of the day.
    /// `Ok(true)`: the provider
    /// was asked; the refund as stored tells how it stands. Always acts on the refund as stored
    /// now, never on the caller's older copy.
    ///
    /// [`claim_refund_send`]: crate::store::ledger::Ledger::claim_refund_send
    pub async fn resolve_refund(
        &self,
        merchant_id: &str,
        refund: &Refund,
    ) -> Result<bool, ApiError> {
        let still_pending = || async {
            self.store
                .refund(merchant_id, refund.id)
                .await
                .map_err(ApiError::internal)
                .map(|r| r.filter(|r| r.status == refunds::PENDING && r.confirm_url.is_none()))
        };
        let Some(mut refund) = still_pending().await? else {
            return Ok(false);
        };
        let mut renumber = false;
        let merchant = self.merchant(merchant_id).await?;
        let plugin = self.plugin_for(&merchant)?;
        let policy = self.merchant_policy(&merchant);
        let queried = async {
            let mut session = plugin.session().await?;
            session
                .query_refund(
                    &policy,
                    &merchant.settings,
                    &refund.out_trade_no,
                    &refund.request_no,
                )
                .await
        }
        .await;
        match queried {
            Err(crate::runtime::CallError::Unsupported { .. }) => return Ok(false),
            Err(e) => return Err(ApiError::from(e)),
            // The legacy API has no refund query: its refunds report by notification, once the
            // seller confirmed them on their page. A pending one without that page (its start
            // was cut short: a crash, a trap, a timeout of the call) never reached anyone: it is
            // started again below, its page made again under a new number of today (Alipay
            // wants a batch_no of the day; the old one was never shown to anybody).
            Ok(Err(api::PluginError::InvalidOrder(f))) if f.field == "request_no" => {
                renumber = true;
            }
            Ok(Err(e)) => return Err(plugin_error_to_api(e)),
            Ok(Ok(state)) if state.status != RefundStatus::Pending => {
                tracing::info!(merchant = merchant_id, out_trade_no = %refund.out_trade_no, refund = refund.id, status = state.status.as_str(), "refund query settled a pending refund");
                self.apply_refund_answer(merchant_id, &merchant, &refund, Ok(Ok(state)))
                    .await?;
                return Ok(true);
            }
            Ok(Ok(_)) => {}
        }
        let quiet = plugin.call_timeout().as_secs() + self.config.recovery.refund_after_s.max(10);
        let now = clock::now_unix();
        let payment = self
            .stored_payment(merchant_id, &refund.out_trade_no)
            .await?;
        // Claimed in one statement: still PENDING (not settled while the provider was asked), and
        // no send of it (the first, or one again by anybody) within the quiet time, by the
        // store's clock.
        if !self
            .store
            .claim_refund_send(merchant_id, refund.id, quiet)
            .await
            .map_err(ApiError::internal)?
        {
            return Ok(true);
        }
        if renumber {
            let no = refunds::new_request_no(now);
            if !self
                .store
                .renumber_refund(merchant_id, refund.id, &no)
                .await
                .map_err(ApiError::internal)?
            {
                return Ok(true);
            }
            refund.request_no = no;
        }
        let request = self.refund_request(merchant_id, &payment, &refund, now);
        let answer = self.send_refund(plugin, &merchant, &request).await;
        tracing::info!(merchant = merchant_id, out_trade_no = %refund.out_trade_no, refund = refund.id, "refund started again under its number: the provider had no success for it, or its start was cut short");
        match self
            .apply_refund_answer(merchant_id, &merchant, &refund, answer)
            .await
        {
            Ok(()) => Ok(true),
            // Ended (FAILED on a refusal): asked, and the stored refund says how it ended.
            Err(_) if still_pending().await?.is_none() => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// [`resolve_refund`](App::resolve_refund) for each of a payment's pending refunds; the
    /// refunds asked about, as stored afterwards. A refund whose asking failed stays pending
    /// (logged): the payment's other refunds are still asked about.
    pub async fn resolve_refunds(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<Vec<Refund>, ApiError> {
        let pending: Vec<Refund> = self
            .store
            .refunds_for(merchant_id, out_trade_no)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .filter(|r| r.status == refunds::PENDING && r.confirm_url.is_none())
            .collect();
        let mut asked = Vec::new();
        for refund in &pending {
            match self.resolve_refund(merchant_id, refund).await {
                Ok(true) => {
                    if let Some(now) = self
                        .store
                        .refund(merchant_id, refund.id)
                        .await
                        .map_err(ApiError::internal)?
                    {
                        asked.push(now);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(merchant = merchant_id, out_trade_no, refund = refund.id, code = %e.code, error = %crate::log_limit::clean(&e.message), "cannot ask the provider about a pending refund; it stays pending")
                }
            }
        }
        Ok(asked)
    }

    /// Gives up a refund that waits for the seller's confirmation on the provider's page (the
    /// legacy API) and was never confirmed: FAILED here, its amount refundable again. Should the
    /// seller confirm it after all, the provider's report still applies it (a FAILED refund that
    /// succeeded is settled as a success), and the provider refuses a total above what was paid.
    pub async fn abandon_refund(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
        id: i64,
        by: &str,
    ) -> Result<Refund, ApiError> {
        let merchant = self.merchant(merchant_id).await?;
        let refund = self
            .store
            .refund(merchant_id, id)
            .await
            .map_err(ApiError::internal)?
            .filter(|r| r.out_trade_no == out_trade_no)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "unknown_refund",
                    format!("no refund {id} of {out_trade_no:?}"),
                )
            })?;
        if refund.status != refunds::PENDING || refund.confirm_url.is_none() {
            return Err(ApiError::new(
                409,
                "not_abandonable",
                format!(
                    "only a refund waiting for the seller's confirmation can be given up; this one is {}",
                    refund.status
                ),
            ));
        }
        let applied = self
            .settle(
                merchant_id,
                &merchant,
                id,
                refunds::FAILED,
                &format!("{}{by}: the seller never confirmed it", refunds::GIVEN_UP),
            )
            .await?;
        // The provider's report may have settled it between the read and now.
        if !matches!(&applied, RefundApplied::Settled { status, .. } if status == refunds::FAILED) {
            let now = self
                .store
                .refund(merchant_id, id)
                .await
                .map_err(ApiError::internal)?
                .map(|r| r.status)
                .unwrap_or_default();
            return Err(ApiError::new(
                409,
                "not_abandonable",
                format!("the refund changed meanwhile; it is {now}"),
            ));
        }
        tracing::info!(
            merchant = merchant_id,
            out_trade_no,
            refund = id,
            by,
            "refund given up"
        );
        // On the payment's timeline too: should the seller confirm it after all, the refund's
        // row ends SUCCESS, and this is where the give-up (its amount refundable again meanwhile)
        // stays visible.
        crate::ledger::note(
            self,
            merchant_id,
            out_trade_no,
            crate::ledger::REFUND_GIVEN_UP,
            Some(&format!("#{id} {} {by}", refund.amount())),
        )
        .await;
        self.query_trade_if_failed(merchant_id, &refund).await;
        self.store
            .refund(merchant_id, id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(404, "unknown_refund", format!("no refund {id}")))
    }

    /// When refund `refund` ended FAILED (the provider refused it, or it was given up), queues
    /// its trade to be asked about once, as the admin's Sync does ([`crate::trade_queries`]):
    /// a trade refunded in full or closed meanwhile in the provider's back office is then
    /// counted, where the payment stayed paid here, and refundable, until someone pressed Sync.
    pub(crate) async fn query_trade_if_failed(&self, merchant_id: &str, refund: &Refund) {
        if let Ok(Some(r)) = self.store.refund(merchant_id, refund.id).await {
            if r.status == refunds::FAILED {
                self.query_trade_soon(merchant_id, &r.out_trade_no);
            }
        }
    }

    /// Queues order `out_trade_no`'s trade for [`crate::trade_queries`] (not when the operator
    /// turned payhost's own queries off: `[recovery] enabled = false`).
    pub(crate) fn query_trade_soon(&self, merchant_id: &str, out_trade_no: &str) {
        if self.config.recovery.enabled {
            self.trade_queries.ask(merchant_id, out_trade_no);
        }
    }

    async fn settle(
        &self,
        merchant_id: &str,
        merchant: &crate::config::MerchantSettings,
        id: i64,
        status: &'static str,
        detail: &str,
    ) -> Result<RefundApplied, ApiError> {
        let applied = self
            .store
            .settle_refund(&RefundResult {
                merchant_id,
                refund_id: id,
                status,
                detail: (!detail.is_empty()).then_some(detail),
                completed_at: None,
                webhook_url: merchant.shop_webhook_url.as_deref(),
            })
            .await
            .map_err(ApiError::internal)?;
        if let RefundApplied::Mismatch(reason) = &applied {
            tracing::error!(target: "payhost::alert", merchant = merchant_id, refund = id, reason = %crate::log_limit::clean(reason), "ALERT: a refund result does not fit the payment; held for review");
        }
        Ok(applied)
    }

    /// Applies a provider's refund report (a verified notification's or query's), once per
    /// `notify_id`; returns what it did. `record`: the message that carried it, stored in the
    /// same commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_refund_report(
        &self,
        merchant_id: &str,
        merchant: &crate::config::MerchantSettings,
        out_trade_no: &str,
        paid: crate::store::ledger::PaidFacts<'_>,
        notify_id: &str,
        report: &api::RefundReport,
        record: Option<crate::store::ledger::ReportRecord<'_>>,
    ) -> anyhow::Result<RefundApplied> {
        let fen = |s: &Option<String>| -> Option<u64> {
            s.as_deref()
                .and_then(|v| crate::service::amount_minor(v).ok())
        };
        let completed = report.time.as_deref().and_then(clock::beijing_text_to_utc);
        let applied = self
            .store
            .apply_refund_report(&ReportEffect {
                merchant_id,
                out_trade_no,
                report: refunds::Report {
                    request_no: report.request_no.clone(),
                    amount: fen(&report.amount),
                    refunded_total: fen(&report.refunded_total),
                    succeeded: report.succeeded,
                    detail: report.detail.clone(),
                },
                notify_id,
                paid,
                completed_at: completed.as_deref(),
                webhook_url: merchant.shop_webhook_url.as_deref(),
                record,
            })
            .await?;
        if let RefundApplied::Mismatch(reason) = &applied {
            tracing::error!(target: "payhost::alert", merchant = merchant_id, out_trade_no, reason = %crate::log_limit::clean(reason), "ALERT: a refund report exceeds the paid amount or contradicts the refund started; held for review, not applied");
        }
        Ok(applied)
    }

    /// `POST …/close`: only an unpaid payment; the component closes it at the provider, or says
    /// the provider never saw it (then it is closed here, and the answer says so).
    pub async fn close_payment(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let merchant = self.merchant(merchant_id).await?;
        let payment = self.stored_payment(merchant_id, out_trade_no).await?;
        if payment.status != crate::domain::state::WAIT_BUYER_PAY {
            return Err(ApiError::new(
                409,
                "not_closable",
                format!(
                    "only an unpaid payment can be closed; this one is {}",
                    payment.status
                ),
            ));
        }
        let plugin = self.plugin_for(&merchant)?;
        let policy = self.merchant_policy(&merchant);
        let mut session = plugin.session().await?;
        let closed = session
            .close_trade(&policy, &merchant.settings, out_trade_no)
            .await?
            .map_err(plugin_error_to_api)?;
        if !self
            .store
            .close_payment(
                merchant_id,
                out_trade_no,
                merchant.shop_webhook_url.as_deref(),
            )
            .await
            .map_err(ApiError::internal)?
        {
            // Paid (or closed) while the provider was asked: the store's status wins.
            let now = self
                .store
                .payment(merchant_id, out_trade_no)
                .await
                .map_err(ApiError::internal)?
                .map(|p| p.status)
                .unwrap_or_default();
            return Err(ApiError::new(
                409,
                "not_closable",
                format!("the payment changed while it was being closed; it is {now}"),
            ));
        }
        let detail = if closed.at_provider {
            "closed at the provider".to_owned()
        } else if closed.detail.is_empty() {
            "the provider has no such trade: closed here only".to_owned()
        } else {
            format!("closed here only: {}", closed.detail)
        };
        crate::ledger::note(self, merchant_id, out_trade_no, "close", Some(&detail)).await;
        tracing::info!(
            merchant = merchant_id,
            out_trade_no,
            at_provider = closed.at_provider,
            "payment closed"
        );
        Ok(serde_json::json!({
            "out_trade_no": out_trade_no,
            "status": crate::domain::state::TRADE_CLOSED,
            "closed_at_provider": closed.at_provider,
            "trade_no": Some(closed.trade_no).filter(|t| !t.is_empty()).or(payment.trade_no),
            "detail": detail,
        }))
    }
}

fn unknown_payment(out_trade_no: &str) -> ApiError {
    ApiError::field(
        404,
        "unknown_payment",
        "out_trade_no",
        format!("no payment {}", crate::domain::quoted_order(out_trade_no)),
    )
}
