//! What payhost does with money, independent of HTTP: configure merchants, create payments, process
//! notifications and returns. The HTTP layer only translates.

use crate::config::{Config, MerchantSettings};
use crate::metrics::Metrics;
use crate::net::{Origin, Policy};
use crate::runtime::plugin::describe_plugin_error;
use crate::runtime::types;
use crate::runtime::{pairs, CallError, Pairs, PluginRuntime};
use crate::store::{
    self, Applied, Inserted, NotificationEffect, NotificationRecord, Payment, Store,
};
use anyhow::Result;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// Everything a request handler needs.
pub struct App {
    pub config: Config,
    pub runtime: PluginRuntime,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// Handlers served beside payhost's routes (`payhost demo`: its sandbox and shop).
    pub mounts: crate::http::mount::Mounts,
    /// Settings a merchant configured through the API or the admin page gets when it leaves them
    /// out (`payhost demo`: the sandbox's provider URLs).
    pub default_settings: Vec<(String, String)>,
    /// Origins the operator allowed explicitly (`[outbound] allowed_origins`, URLs written in
    /// `payhost.toml` merchant tables, an embedder's such as the demo's sandbox): they may resolve
    /// to non-public addresses, and provider URLs saved through the API or the admin page must use
    /// one of them (or a manifest origin).
    pub operator_origins: Vec<Origin>,
    /// Admission to the component and the store: a few requests work at a time, the rest wait
    /// in arrival order. More at once only adds thread hand-offs and lengthens the tail.
    pub admission: tokio::sync::Semaphore,
    /// Rate limits and login throttling (see `auth`).
    pub guards: crate::auth::Guards,
}

/// How many payment and notify requests are worked on at once: enough to overlap one request's
/// outbound call and commit with another's computation.
pub fn admission_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 8
}

/// An error for the API: HTTP status, code, field, message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            field: None,
            message: message.into(),
        }
    }

    pub fn field(status: u16, code: &str, field: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(500, "internal", "internal error; see the payhost log")
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ApiError::new(502, "plugin_failed", e.to_string())
    }
}

fn plugin_error_to_api(e: types::PluginError) -> ApiError {
    use types::PluginError as E;
    match e {
        E::InvalidOrder(f) => ApiError::field(
            400,
            "invalid_order",
            &f.field,
            format!("{}: {}", f.field, f.reason),
        ),
        E::InvalidSettings(fields) => {
            let first = fields.first().map(|f| f.field.clone()).unwrap_or_default();
            ApiError::field(
                500,
                "merchant_misconfigured",
                &first,
                describe_plugin_error(&E::InvalidSettings(fields)),
            )
        }
        E::Gateway(g) => ApiError {
            status: 502,
            code: format!(
                "gateway_{}",
                if g.code.is_empty() { "error" } else { &g.code }
            ),
            field: None,
            message: format!(
                "Alipay refused the request: {} ({}) {} {}",
                g.msg,
                g.sub_code,
                g.detail,
                gateway_hint(&g)
            )
            .trim()
            .to_owned(),
        },
        // Timeouts and transport failures are described by the connection and the HTTP status
        // alone, never by what came back. Anything else the provider (or whatever answered) sent
        // is never echoed to the caller: a fixed message and a correlation id; the detail goes to
        // the log under that id.
        E::Timeout(m) => ApiError::new(504, "gateway_timeout", m),
        E::Transport(m) => ApiError::new(502, "gateway_unreachable", m),
        E::BadSignature(m) => upstream_error(
            502,
            "gateway_bad_signature",
            "the provider's answer carries a signature that does not match the configured keys",
            &m,
        ),
        E::NotifyNotConfirmed(m) | E::Malformed(m) => upstream_error(
            502,
            "gateway_malformed",
            "the provider's answer could not be understood",
            &m,
        ),
    }
}

/// An API error about the provider's answer: fixed text plus a correlation id; the detail is logged.
pub fn upstream_error(status: u16, code: &str, message: &str, detail: &str) -> ApiError {
    let id = correlation_id();
    tracing::warn!(correlation_id = %id, code, detail = %detail, "provider call failed");
    ApiError::new(
        status,
        code,
        format!("{message} (correlation id {id}; the detail is in the payhost log)"),
    )
}

fn correlation_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A request id for the provider, unique per merchant: milliseconds and 48 random bits, `[0-9a-z]`.
pub fn new_request_id() -> String {
    use rand::Rng;
    format!(
        "{}{:012x}",
        store::now_ms(),
        rand::rng().random::<u64>() & 0xffff_ffff_ffff
    )
}

/// Plain-language help for the gateway errors shop owners meet (integration guide, §9).
pub fn gateway_hint(g: &types::GatewayError) -> &'static str {
    let text = format!("{} {} {}", g.code, g.sub_code, g.msg).to_ascii_lowercase();
    if text.contains("has_no_privilege") || text.contains("partner illegal") || g.code == "0005" {
        "— the partner ID has no permission for the WAP-pay interface: check the signed contract type in the Alipay merchant service (合同列表) and that the partner ID is the one of that contract (请确认签约的接口类型与合作者身份ID)."
    } else if text.contains("sign") {
        "— the signature was refused: the key does not belong to this partner ID, or it was pasted with extra characters (交易安全校验码与合作者身份ID不匹配，粘贴时不要带空格)."
    } else if text.contains("0001") || text.contains("params illegal") {
        "— a required parameter was missing or malformed."
    } else {
        ""
    }
}

/// The request to create a payment, as the shop sends it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    pub out_trade_no: Option<String>,
    pub subject: Option<String>,
    pub total_fee: Option<serde_json::Value>,
    pub return_url: Option<String>,
    pub seller_email: Option<String>,
    pub merchant_url: Option<String>,
    pub pay_expire: Option<u32>,
    pub out_user: Option<String>,
    pub cashier_code: Option<String>,
    /// Which of the provider's products pays this order: `wap` (the default) or `auto` (the
    /// host picks by `user_agent`; today every buyer gets the phone cashier).
    pub product: Option<String>,
    /// The buyer's browser `User-Agent`, as the shop received it (for `product = "auto"`).
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PaymentCreated {
    pub out_trade_no: String,
    pub status: String,
    pub pay_url: Option<String>,
    pub request_token: Option<String>,
    pub total_fee: String,
    pub seller_email: String,
    /// The product that pays it: `wap`, `pc` or `app` (`auto` resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// App pay: the signed order string the app hands to the Alipay SDK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_string: Option<String>,
}

/// What a trade query found and did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncResult {
    /// False when the provider has no such trade (the buyer never opened the cashier).
    pub found: bool,
    pub trade_status: Option<String>,
    /// `applied`, `duplicate`, `no_change`, `mismatch` or `not_found`.
    pub outcome: String,
    /// The payment's status after the query.
    pub status: String,
}

/// How a notification ended, and what to answer the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOutcome {
    pub outcome: &'static str,
    pub reply: String,
    pub status: u16,
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>().is_ok_and(|x| x.host().is_some())
}

impl App {
    pub fn merchant(&self, id: &str) -> Result<MerchantSettings, ApiError> {
        match self.store.merchant(id) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ApiError::new(
                404,
                "unknown_merchant",
                format!("no merchant {id:?}"),
            )),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// The merchant's provider URLs (settings of kind `url` in the component's schema).
    fn provider_urls<'m>(
        &self,
        m: &'m MerchantSettings,
    ) -> impl Iterator<Item = (&'m str, &'m str)> + 'm {
        let names: Vec<String> = self
            .runtime
            .info
            .settings
            .iter()
            .filter(|f| f.kind == types::FieldKind::Url)
            .map(|f| f.name.clone())
            .collect();
        m.plugin
            .iter()
            .filter(move |(k, _)| names.contains(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Where this merchant's provider calls may go: the manifest's origins and the merchant's own
    /// provider URLs; only operator-allowed origins may resolve to non-public addresses.
    pub fn merchant_policy(&self, m: &MerchantSettings) -> Policy {
        let mut policy = self.runtime.base_policy();
        for (_, url) in self.provider_urls(m) {
            if let Ok(o) = Origin::parse(url) {
                if self.operator_origins.contains(&o) {
                    policy.allow_explicitly(o);
                } else {
                    policy.allow(o);
                }
            }
        }
        policy
    }

    /// Where a shop webhook may go: its own origin, public addresses only unless the operator
    /// allowed that origin.
    pub fn webhook_policy(&self, url: &str) -> Policy {
        let mut policy = Policy::default();
        if let Ok(o) = Origin::parse(url) {
            if self.operator_origins.contains(&o) {
                policy.allow_explicitly(o);
            } else {
                policy.allow(o);
            }
        }
        policy
    }

    /// Provider URLs that arrive through the API or the admin page must use an origin the
    /// operator allowed (or the manifest's): every other one is named with the rule.
    fn check_provider_origins(&self, m: &MerchantSettings) -> Vec<types::FieldError> {
        let base = self.runtime.base_policy();
        self.provider_urls(m)
            .filter_map(|(name, url)| {
                let reason = match Origin::parse(url) {
                    Err(e) => e.to_string(),
                    Ok(o) if base.allows(&o) || self.operator_origins.contains(&o) => return None,
                    Ok(o) => format!(
                        "the origin {o} is not allowed: the operator must list it in payhost.toml under [outbound] allowed_origins"
                    ),
                };
                Some(types::FieldError {
                    field: name.to_owned(),
                    reason,
                })
            })
            .collect()
    }

    /// Validates settings with the component and stores them (trimmed, normalised).
    pub async fn configure_merchant(
        &self,
        id: &str,
        mut settings: MerchantSettings,
    ) -> Result<MerchantSettings, Vec<types::FieldError>> {
        // In `payhost demo` every merchant talks to the built-in sandbox unless told otherwise.
        for (name, value) in &self.default_settings {
            if settings.get(name).is_none() {
                settings.plugin.push((name.clone(), value.clone()));
            }
        }
        let refused = self.check_provider_origins(&settings);
        if !refused.is_empty() {
            return Err(refused);
        }
        let mut session = self.runtime.session().await.map_err(|e| {
            vec![types::FieldError {
                field: "plugin".into(),
                reason: e.to_string(),
            }]
        })?;
        let normalised = session
            .validate_settings(&pairs(settings.plugin.clone()))
            .await
            .map_err(|e| {
                vec![types::FieldError {
                    field: "plugin".into(),
                    reason: e.to_string(),
                }]
            })??;
        let stored = MerchantSettings {
            plugin: normalised.into_iter().map(|p| (p.key, p.value)).collect(),
            shop_webhook_url: settings.shop_webhook_url,
            shop_webhook_secret: settings.shop_webhook_secret,
            shop_origins: settings.shop_origins,
        };
        self.store.save_merchant(id, &stored).map_err(|e| {
            vec![types::FieldError {
                field: "store".into(),
                reason: e.to_string(),
            }]
        })?;
        tracing::info!(merchant = id, "merchant settings saved");
        Ok(stored)
    }

    pub async fn create_payment(
        &self,
        merchant_id: &str,
        req: CreatePayment,
    ) -> Result<(u16, PaymentCreated), ApiError> {
        let _permit = self.admission.acquire().await.map_err(ApiError::internal)?;
        let merchant = self.merchant(merchant_id)?;
        let required = |v: &Option<String>, name: &str| -> Result<String, ApiError> {
            v.as_ref()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ApiError::field(400, "invalid_request", name, format!("{name}: is required"))
                })
        };
        let product = match req.product.as_deref().map(str::trim) {
            None | Some("") | Some("wap") => types::PaymentProduct::Wap,
            Some("pc") => types::PaymentProduct::Pc,
            Some("app") => types::PaymentProduct::App,
            // Phone and tablet browsers get the WAP cashier, desktops the PC one (domain::device).
            Some("auto") => match req.user_agent.as_deref().map(str::trim) {
                Some(ua) if !ua.is_empty() && !crate::domain::device::is_phone_browser(ua) => {
                    types::PaymentProduct::Pc
                }
                _ => types::PaymentProduct::Wap,
            },
            Some(other) => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "product",
                    format!("product: {other:?} is not one of \"wap\", \"pc\", \"app\", \"auto\""),
                ))
            }
        };
        if req.user_agent.as_ref().is_some_and(|u| u.len() > 1024) {
            return Err(ApiError::field(
                400,
                "invalid_request",
                "user_agent",
                "user_agent: must be at most 1024 bytes",
            ));
        }
        let out_trade_no = required(&req.out_trade_no, "out_trade_no")?;
        let subject = required(&req.subject, "subject")?;
        let return_url = required(&req.return_url, "return_url")?;
        if !is_http_url(&return_url) {
            return Err(ApiError::field(
                400,
                "invalid_request",
                "return_url",
                "return_url: must be an absolute http or https URL",
            ));
        }
        // total_fee is a decimal string; a JSON number is accepted only as its exact text.
        let total_fee = match &req.total_fee {
            Some(serde_json::Value::String(s)) => s.trim().to_owned(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "total_fee",
                    "total_fee: must be a decimal string such as \"12.50\"",
                ))
            }
            None => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "total_fee",
                    "total_fee: is required",
                ))
            }
        };
        let total_fen = alipay_amount_fen(&total_fee).map_err(|reason| {
            ApiError::field(
                400,
                "invalid_order",
                "total_fee",
                format!("total_fee: {reason}"),
            )
        })?;
        let order = types::PaymentRequest {
            product,
            out_trade_no: out_trade_no.clone(),
            subject: subject.clone(),
            total_fee: total_fee.clone(),
            seller: req
                .seller_email
                .clone()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            return_url: self.config.return_url(merchant_id),
            notify_url: self.config.notify_url(merchant_id),
            merchant_url: req.merchant_url.clone().filter(|s| !s.trim().is_empty()),
            pay_expire: req.pay_expire,
            out_user: req.out_user.clone().filter(|s| !s.trim().is_empty()),
            cashier_code: req.cashier_code.clone().filter(|s| !s.trim().is_empty()),
            request_id: new_request_id(),
        };

        // The same out_trade_no again: same amount and seller → the existing payment; else 409.
        let expected_seller = self.expected_seller(&merchant, order.seller.as_deref());
        if let Some(existing) = self
            .store
            .payment(merchant_id, &out_trade_no)
            .map_err(ApiError::internal)?
        {
            if existing.total_fen != total_fen
                || !existing.seller.eq_ignore_ascii_case(&expected_seller)
            {
                return Err(ApiError::field(
                    409,
                    "conflict",
                    "out_trade_no",
                    format!(
                        "out_trade_no {out_trade_no} exists with total_fee {} and seller {}",
                        existing.total_fee(),
                        existing.seller
                    ),
                ));
            }
            if existing.status != store::WAIT_BUYER_PAY {
                return Ok((200, created(&existing)));
            }
        }

        let policy = self.merchant_policy(&merchant);
        let mut session = self.runtime.session().await?;
        let started = session
            .start_payment(&policy, &pairs(merchant.plugin.clone()), &order)
            .await?
            .map_err(plugin_error_to_api)?;
        let now = store::now_rfc3339();
        let payment = Payment {
            merchant_id: merchant_id.to_owned(),
            out_trade_no: out_trade_no.clone(),
            subject,
            total_fen,
            seller: started.seller.clone(),
            return_url,
            status: store::WAIT_BUYER_PAY.into(),
            request_token: Some(started.token.clone()).filter(|t| !t.is_empty()),
            pay_url: Some(started.redirect.url.clone()).filter(|u| !u.is_empty()),
            trade_no: None,
            buyer_email: None,
            paid_at: None,
            review: None,
            created_at: now.clone(),
            updated_at: now,
        };
        match self
            .store
            .insert_payment(&payment)
            .map_err(ApiError::internal)?
        {
            Inserted::New => {
                self.metrics.payments_created.inc();
                tracing::info!(merchant = merchant_id, out_trade_no = %out_trade_no, total_fee = %payment.total_fee(), "payment created");
                Ok((201, created_now(&payment, product, &started)))
            }
            Inserted::Existing(existing) => {
                if existing.total_fen != total_fen
                    || !existing.seller.eq_ignore_ascii_case(&payment.seller)
                {
                    return Err(ApiError::field(
                        409,
                        "conflict",
                        "out_trade_no",
                        "out_trade_no exists with another amount or seller",
                    ));
                }
                self.store
                    .set_payment_token(
                        merchant_id,
                        &out_trade_no,
                        &started.token,
                        &started.redirect.url,
                    )
                    .map_err(ApiError::internal)?;
                let refreshed = self
                    .store
                    .payment(merchant_id, &out_trade_no)
                    .map_err(ApiError::internal)?
                    .unwrap_or(*existing);
                Ok((200, created_now(&refreshed, product, &started)))
            }
        }
    }

    /// B2C: the configured account (or the partner); C2C: the order's seller or the default.
    fn expected_seller(&self, m: &MerchantSettings, requested: Option<&str>) -> String {
        let configured = m
            .get("seller_email")
            .or(m.get("partner"))
            .unwrap_or("")
            .to_owned();
        if m.get("mode") == Some("c2c") {
            requested.map(str::to_owned).unwrap_or(configured)
        } else {
            configured
        }
    }

    /// Processes an asynchronous notification (§7): verified, confirmed, matched against the
    /// order and applied once; stored raw with its outcome in one commit (with the effect, when
    /// there is one). Answers `success` only once that commit is durable and nothing is left to
    /// retry; a notification whose processing is cut short is not acknowledged, so the provider
    /// sends it again. A notification for no known merchant is answered 404 and stored nowhere.
    pub async fn handle_notify(
        &self,
        merchant_id: &str,
        remote: Option<&str>,
        body: &[u8],
    ) -> NotifyOutcome {
        let _permit = self.admission.acquire().await;
        let ack = self.runtime.info.notify_ack.clone();
        let retry = self.runtime.info.notify_retry.clone();
        let done = |outcome: &'static str, reply: &str, status: u16| NotifyOutcome {
            outcome,
            reply: reply.to_owned(),
            status,
        };
        let merchant = match self.store.merchant(merchant_id) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.metrics.notify("unknown_merchant");
                return done("unknown_merchant", &retry, 404);
            }
            Err(e) => {
                tracing::error!(merchant = merchant_id, error = %e, "cannot read the merchant; asking Alipay to retry");
                self.metrics.notify("store_failed");
                return done("store_failed", &retry, 500);
            }
        };
        let raw = store::RawNotification {
            merchant_id,
            remote,
            body,
        };
        let mut record = NotificationRecord {
            raw_id: 0,
            merchant_id: merchant_id.to_owned(),
            received_at: String::new(),
            notify_id: None,
            out_trade_no: None,
            trade_status: None,
            outcome: None,
            detail: None,
        };
        let result = self
            .process_notify(merchant_id, &merchant, &raw, &mut record)
            .await;
        let (mut outcome, mut reply, mut status) = match &result {
            Ok(o) => (*o, ack.as_str(), 200),
            Err((o, status)) => (*o, retry.as_str(), *status),
        };
        // An applied effect was stored with its raw notification; every other outcome here.
        if record.outcome.is_none() {
            record.outcome = Some(outcome.to_owned());
            if let Err(e) = self.store.record_notification(&raw, &record) {
                tracing::error!(merchant = merchant_id, error = %e, "cannot store a notification; asking Alipay to retry");
                (outcome, reply, status) = ("store_failed", retry.as_str(), 500);
            }
        }
        self.metrics.notify(outcome);
        done(outcome, reply, status)
    }

    /// Ok(outcome) → acknowledge; Err((outcome, status)) → ask for a retry.
    async fn process_notify(
        &self,
        merchant_id: &str,
        merchant: &MerchantSettings,
        raw: &store::RawNotification<'_>,
        record: &mut NotificationRecord,
    ) -> Result<&'static str, (&'static str, u16)> {
        let form: Pairs = pairs(form_urlencoded::parse(raw.body).into_owned());
        let policy = self.merchant_policy(merchant);
        let mut session = match self.runtime.session().await {
            Ok(s) => s,
            Err(e) => {
                record.detail = Some(e.to_string());
                return Err(("plugin_failed", 503));
            }
        };
        let verified = match session
            .verify_notification(&policy, &pairs(merchant.plugin.clone()), &form)
            .await
        {
            Err(e) => {
                record.detail = Some(e.to_string());
                return Err(("plugin_failed", 503));
            }
            Ok(Err(e)) => {
                use types::PluginError as E;
                let outcome = match &e {
                    E::BadSignature(_) => "bad_signature",
                    E::NotifyNotConfirmed(_) => "not_confirmed",
                    E::Transport(_) | E::Timeout(_) => "verify_unreachable",
                    E::InvalidSettings(_) => "merchant_misconfigured",
                    _ => "malformed",
                };
                record.detail = Some(describe_plugin_error(&e));
                tracing::warn!(merchant = merchant_id, outcome, detail = %describe_plugin_error(&e), "notification refused");
                return Err((
                    outcome,
                    if outcome == "bad_signature" || outcome == "malformed" {
                        400
                    } else {
                        503
                    },
                ));
            }
            Ok(Ok(n)) => n,
        };
        record.notify_id = Some(verified.notify_id.clone());
        record.out_trade_no = Some(verified.out_trade_no.clone());
        record.trade_status = Some(verified.trade_status.clone());

        let payment = match self.store.payment(merchant_id, &verified.out_trade_no) {
            Ok(Some(p)) => p,
            Ok(None) => {
                // Genuine, but for no order we know: stored for a human, not retried for a day.
                tracing::error!(
                    target: "payhost::alert",
                    merchant = merchant_id,
                    out_trade_no = %verified.out_trade_no,
                    "ALERT: a confirmed notification names an unknown order"
                );
                record.detail = Some("confirmed, but the order is unknown".into());
                return Ok("unknown_order");
            }
            Err(e) => {
                record.detail = Some(e.to_string());
                return Err(("store_failed", 500));
            }
        };
        let expectation = types::OrderExpectation {
            out_trade_no: payment.out_trade_no.clone(),
            total_fee: payment.total_fee(),
            seller: payment.seller.clone(),
        };
        match session.match_order(&verified, &expectation).await {
            Err(e) => {
                record.detail = Some(e.to_string());
                return Err(("plugin_failed", 503));
            }
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
                    record.detail = Some(e.to_string());
                    return Err(("store_failed", 500));
                }
                record.detail = Some(reason);
                return Ok("mismatch");
            }
            Ok(Ok(())) => {}
        }
        let effect = NotificationEffect {
            merchant_id,
            notify_id: &verified.notify_id,
            out_trade_no: &verified.out_trade_no,
            trade_status: &verified.trade_status,
            trade_no: &verified.trade_no,
            buyer_email: verified.buyer_email.as_deref(),
            paid_at: verified
                .gmt_payment
                .as_deref()
                .or(verified.notify_time.as_deref()),
            webhook_url: merchant.shop_webhook_url.as_deref(),
            refund_status: field(&verified.fields, "refund_status"),
            gmt_refund: field(&verified.fields, "gmt_refund"),
        };
        match self.store.apply_notification(&effect, raw, record) {
            Ok(applied) => {
                if let Applied::Changed { from, to } = &applied {
                    tracing::info!(merchant = merchant_id, out_trade_no = %verified.out_trade_no, %from, %to, "payment status changed");
                }
                let (outcome, detail) = applied.outcome();
                record.outcome = Some(outcome.to_owned());
                record.detail = detail;
                Ok(outcome)
            }
            Err(e) => {
                record.detail = Some(e.to_string());
                Err(("store_failed", 500))
            }
        }
    }

    /// Lost-notify recovery (掉单补偿, ALIPAY_EXTRA_PROTOCOLS.md §3.4): asks the provider's trade
    /// query about one payment and, when it shows the trade paid (or refunded), applies it through
    /// the same match and one-transaction transition as a notification: recorded with its
    /// source (`query`), deduplicated against the notification that may still come, one webhook.
    /// A trade the provider does not have, and every error, is reported, never guessed.
    pub async fn sync_payment(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<SyncResult, ApiError> {
        let _permit = self.admission.acquire().await.map_err(ApiError::internal)?;
        let merchant = self.merchant(merchant_id)?;
        let payment = self
            .store
            .payment(merchant_id, out_trade_no)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(404, "unknown_order", format!("no payment {out_trade_no:?}"))
            })?;
        let policy = self.merchant_policy(&merchant);
        let settings = pairs(merchant.plugin.clone());
        let mut session = self.runtime.session().await?;
        let query = session
            .query_trade(&policy, &settings, out_trade_no)
            .await?
            .map_err(plugin_error_to_api)?;
        self.metrics.notify(if query.found {
            "query_found"
        } else {
            "query_not_found"
        });
        let Some(verified) = query.notification.filter(|_| query.found) else {
            return Ok(SyncResult {
                found: false,
                trade_status: None,
                outcome: "not_found".into(),
                status: payment.status,
            });
        };
        let expectation = types::OrderExpectation {
            out_trade_no: payment.out_trade_no.clone(),
            total_fee: payment.total_fee(),
            seller: payment.seller.clone(),
        };
        // Stored like a notification, its source named: what the query answered, as fields.
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.fields.iter().map(|p| (&p.key, &p.value)))
            .finish();
        let raw = store::RawNotification {
            merchant_id,
            remote: Some("query:single_trade_query"),
            body: body.as_bytes(),
        };
        let mut record = NotificationRecord {
            raw_id: 0,
            merchant_id: merchant_id.to_owned(),
            received_at: String::new(),
            notify_id: Some(verified.notify_id.clone()),
            out_trade_no: Some(verified.out_trade_no.clone()),
            trade_status: Some(verified.trade_status.clone()),
            outcome: None,
            detail: Some("source: query".into()),
        };
        let outcome = match session.match_order(&verified, &expectation).await? {
            Err(mismatches) => {
                let reason = mismatches
                    .iter()
                    .map(|m| format!("{}: {}", m.field, m.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::error!(target: "payhost::alert", merchant = merchant_id, out_trade_no, reason = %reason, "ALERT: the trade query does not match its order; flagged for review, not paid");
                self.store
                    .flag_for_review(merchant_id, out_trade_no, &reason)
                    .map_err(ApiError::internal)?;
                record.outcome = Some("mismatch".into());
                record.detail = Some(format!("source: query; {reason}"));
                self.store
                    .record_notification(&raw, &record)
                    .map_err(ApiError::internal)?;
                "mismatch".to_owned()
            }
            Ok(()) => {
                let effect = NotificationEffect {
                    merchant_id,
                    notify_id: &verified.notify_id,
                    out_trade_no: &verified.out_trade_no,
                    trade_status: &verified.trade_status,
                    trade_no: &verified.trade_no,
                    buyer_email: verified.buyer_email.as_deref(),
                    paid_at: verified.gmt_payment.as_deref(),
                    webhook_url: merchant.shop_webhook_url.as_deref(),
                    refund_status: field(&verified.fields, "refund_status"),
                    gmt_refund: field(&verified.fields, "gmt_refund"),
                };
                let applied = self
                    .store
                    .apply_notification(&effect, &raw, &record)
                    .map_err(ApiError::internal)?;
                if let Applied::Changed { from, to } = &applied {
                    tracing::info!(merchant = merchant_id, out_trade_no, %from, %to, source = "query", "payment status changed");
                }
                applied.outcome().0.to_owned()
            }
        };
        let status = self
            .store
            .payment(merchant_id, out_trade_no)
            .map_err(ApiError::internal)?
            .map(|p| p.status)
            .unwrap_or_default();
        Ok(SyncResult {
            found: true,
            trade_status: Some(verified.trade_status),
            outcome,
            status,
        })
    }

    /// Verifies an app SDK's synchronous result string for one of this merchant's payments: a
    /// hint for the app to show, never a payment (only a notification or a query marks paid).
    pub async fn app_result(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
        result: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let merchant = self.merchant(merchant_id)?;
        let payment = self
            .store
            .payment(merchant_id, out_trade_no)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(404, "unknown_order", format!("no payment {out_trade_no:?}"))
            })?;
        let mut session = self.runtime.session().await?;
        let verified = session
            .verify_app_result(&pairs(merchant.plugin.clone()), result)
            .await?;
        Ok(match verified {
            Ok(r) if r.out_trade_no == out_trade_no => serde_json::json!({
                "verified": true,
                "result_status": r.result_status,
                "memo": r.memo,
                "status": payment.status,
                "note": "a verified SDK result is a hint: the payment is marked paid only by Alipay's notification or a trade query",
            }),
            Ok(r) => {
                serde_json::json!({"verified": false, "reason": format!("the result is for order {}", r.out_trade_no), "status": payment.status})
            }
            Err(e) => {
                serde_json::json!({"verified": false, "reason": describe_plugin_error(&e), "status": payment.status})
            }
        })
    }

    /// The key that signs what the host sends the shop (return redirects, webhooks).
    pub fn shop_key(&self, merchant: &MerchantSettings) -> String {
        merchant
            .shop_webhook_secret
            .clone()
            .unwrap_or_else(|| self.config.api_token.clone())
    }

    /// Verifies the buyer's return (§6) and builds the signed redirect to the shop's return_url:
    /// `out_trade_no`, `result` (Alipay's), `status` (the host's, from confirmed notifications
    /// only), `ts`, `sign` = hex HMAC-SHA256 over the sorted `k=v&…` string.
    pub async fn handle_return(&self, merchant_id: &str, query: &[u8]) -> Result<String, ApiError> {
        let merchant = self.merchant(merchant_id)?;
        let q = pairs(form_urlencoded::parse(query).into_owned());
        let mut session = self.runtime.session().await?;
        let verified = match session
            .verify_return(&pairs(merchant.plugin.clone()), &q)
            .await?
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(merchant = merchant_id, detail = %describe_plugin_error(&e), "refused a return");
                self.metrics.returns("refused");
                return Err(ApiError::new(400, "bad_return", describe_plugin_error(&e)));
            }
        };
        let payment = self
            .store
            .payment(merchant_id, &verified.out_trade_no)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "unknown_order",
                    "the return names an order this host does not know",
                )
            })?;
        self.metrics.returns("verified");
        let params = vec![
            ("out_trade_no".to_owned(), payment.out_trade_no.clone()),
            ("result".to_owned(), verified.result.clone()),
            ("status".to_owned(), payment.status.clone()),
            ("total_fee".to_owned(), payment.total_fee()),
            ("ts".to_owned(), (store::now_ms() / 1000).to_string()),
        ];
        let signed = sign_params(&self.shop_key(&merchant), &params);
        let sep = if payment.return_url.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{signed}", payment.return_url))
    }
}

/// A field of a verified notification, by name.
fn field<'a>(fields: &'a [types::Pair], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|p| p.key == name)
        .map(|p| p.value.as_str())
        .filter(|v| !v.is_empty())
}

/// A payment just (re)started: with its product and, for app pay, the order string.
fn created_now(
    p: &Payment,
    product: types::PaymentProduct,
    started: &types::PaymentStarted,
) -> PaymentCreated {
    PaymentCreated {
        product: Some(
            match product {
                types::PaymentProduct::Wap => "wap",
                types::PaymentProduct::Pc => "pc",
                types::PaymentProduct::App => "app",
            }
            .to_owned(),
        ),
        order_string: started.order_string.clone(),
        ..created(p)
    }
}

fn created(p: &Payment) -> PaymentCreated {
    PaymentCreated {
        out_trade_no: p.out_trade_no.clone(),
        status: p.status.clone(),
        pay_url: p
            .pay_url
            .clone()
            .filter(|_| p.status == store::WAIT_BUYER_PAY),
        request_token: p.request_token.clone(),
        total_fee: p.total_fee(),
        seller_email: p.seller.clone(),
        product: None,
        order_string: None,
    }
}

/// The host's own amount check (the component checks again): fen, or why not.
pub fn alipay_amount_fen(s: &str) -> Result<u64, String> {
    alipay_wap_plugin::amount::Amount::parse(s)
        .map(|a| a.fen())
        .map_err(|e| e.to_string())
}

/// `k=v&…` sorted by key, then `&sign=<hex HMAC-SHA256>`; values percent-encoded.
pub fn sign_params(key: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(canonical.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &sorted {
        out.append_pair(k, v);
    }
    out.append_pair("sign", &sig);
    out.finish()
}

/// Hex HMAC-SHA256 of a body (webhooks: `X-Payhost-Signature: sha256=<hex>`).
pub fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Secrets shown in API answers and the admin page: the last four characters only.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        "****".into()
    } else {
        format!(
            "****{}",
            chars[chars.len() - 4..].iter().collect::<String>()
        )
    }
}

/// The masked view of a merchant's settings.
pub fn masked_settings(m: &MerchantSettings, secret_names: &[String]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in &m.plugin {
        let value = if k == "private_key" {
            serde_json::Value::String("(set)".into())
        } else if secret_names.contains(k) {
            serde_json::Value::String(mask(v))
        } else if k == "alipay_public_key" {
            serde_json::Value::String("(set)".into())
        } else {
            serde_json::Value::String(v.clone())
        };
        out.insert(k.clone(), value);
    }
    if let Some(u) = &m.shop_webhook_url {
        out.insert("shop_webhook_url".into(), u.clone().into());
    }
    if let Some(s) = &m.shop_webhook_secret {
        out.insert("shop_webhook_secret".into(), mask(s).into());
    }
    serde_json::Value::Object(out)
}

pub type SharedApp = Arc<App>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_params_are_sorted_and_verifiable() {
        let s = sign_params("k", &[("b".into(), "2 3".into()), ("a".into(), "1".into())]);
        assert!(s.starts_with("a=1&b=2+3&sign="));
        let expected = hmac_hex("k", b"a=1&b=2 3");
        assert!(s.ends_with(&expected));
        assert_eq!(mask("10000000000000000000000000000abc"), "****0abc");
        assert_eq!(mask("short"), "****");
    }
}
