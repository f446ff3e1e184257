//! What payhost does with money, independent of HTTP: configure merchants, create payments, process
//! notifications and returns. The HTTP layer only translates.

use crate::admission::Class;
use crate::config::{Config, MerchantSettings};
use crate::domain::amount::Amount;
use crate::domain::html;
use crate::metrics::Metrics;
use crate::net::{Origin, Policy};
use crate::runtime::plugin_api::{self as api, FieldError, FieldKind, PluginError, Product};
use crate::runtime::{CallError, PluginRuntime, Plugins};
use crate::store::{self, Inserted, Payment, Store};
use anyhow::Result;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// How long a payment creation waits for another creation of its order (see `order_locks`).
const ORDER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a request handler needs.
pub struct App {
    pub config: Config,
    /// The loaded components, by id; each merchant names one.
    pub plugins: Plugins,
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
    /// Admission per class (shop API, notifications, configuration) and the notification pool.
    pub admission: crate::admission::Admission,
    /// Wakes the webhook outbox when a notification queued an event.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Rate limits and login throttling (see `auth`).
    pub guards: crate::auth::Guards,
    /// Merchants prepared once for notifications, kept while their stored settings are unchanged.
    pub merchant_cache: crate::notify::MerchantCache,
    /// One creation at a time per order in this process (a second waits, then finds the first).
    pub order_locks: crate::order_locks::OrderLocks,
    /// Trades to ask the provider about soon (a refund ended FAILED), off the caller's path.
    pub trade_queries: crate::trade_queries::TradeQueries,
}

/// The API's one error type (its JSON shape is `http::error`'s).
pub use crate::http::error::ApiError;

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            // The merchant's component predates the step (refunds, close, bills: contract 0.4.0).
            CallError::Unsupported { .. } => ApiError::new(501, "not_supported", e.to_string()),
            e => ApiError::new(502, "plugin_failed", e.to_string()),
        }
    }
}

/// The 409 for a create of an order stored with another amount, or another seller when the
/// request names one; None when the request is the stored order again.
fn order_conflict(existing: &Payment, total_fen: u64, seller: Option<&str>) -> Option<ApiError> {
    let other_seller = seller.is_some_and(|s| !existing.seller.eq_ignore_ascii_case(s));
    (existing.total_fen != total_fen || other_seller).then(|| {
        ApiError::field(
            409,
            "conflict",
            "out_trade_no",
            format!(
                "out_trade_no {} exists with total_fee {} and seller {}",
                existing.out_trade_no,
                existing.total_fee(),
                existing.seller
            ),
        )
    })
}

/// A payment the component would not start. Settings that were valid when saved but do not
/// allow this payment (the app product with an MD5 merchant) are a 400 naming the setting and
/// its rule: the request asks for what the merchant cannot do.
fn start_refused(e: PluginError) -> ApiError {
    match e {
        PluginError::InvalidSettings(fields) => {
            let first = fields.first().map(|f| f.field.clone()).unwrap_or_default();
            ApiError::field(
                400,
                "invalid_request",
                &first,
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        }
        e => plugin_error_to_api(e),
    }
}

pub(crate) fn plugin_error_to_api(e: PluginError) -> ApiError {
    use PluginError as E;
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
                E::InvalidSettings(fields).to_string(),
            )
        }
        E::Gateway(g) => {
            // Logged too: an operator reads why the provider refused without asking the shop.
            let id = correlation_id();
            tracing::warn!(correlation_id = %id, code = %crate::log_limit::clean(&g.code), sub_code = %crate::log_limit::clean(&g.sub_code), msg = %crate::log_limit::clean(&g.msg), "the provider refused a call");
            let said = format!(
                "the payment provider refused the request: {} ({}) {}",
                g.msg, g.sub_code, g.detail
            );
            ApiError {
                status: 502,
                code: format!(
                    "gateway_{}",
                    if g.code.is_empty() { "error" } else { &g.code }
                ),
                field: None,
                // `detail` is the component's plain-language help for the error.
                message: format!("{} (correlation id {id})", said.trim()),
                about: None,
            }
        }
        // Nothing the provider (or whatever answered) sent, nor the connection's description, is
        // echoed to the caller: a fixed message and a correlation id; the detail goes to the log
        // under that id.
        E::Timeout(m) => provider_unreachable(504, "gateway_timeout", &m),
        E::Transport(m) => provider_unreachable(502, "gateway_unreachable", &m),
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

/// A component's refusal of what its merchant's API family does not offer (`invalid-settings`
/// naming `api` alone: the legacy `mapi` has no bill, the open platform no pay-channel list). The
/// merchant is not misconfigured, it asked for something its settings do not offer: `409
/// not_supported` naming `api`, with the component's reason.
pub(crate) fn not_offered_by_api_family(e: &PluginError) -> Option<ApiError> {
    match e {
        PluginError::InvalidSettings(fields) if fields.len() == 1 && fields[0].field == "api" => {
            Some(ApiError::field(
                409,
                "not_supported",
                "api",
                format!("api: {}", fields[0].reason),
            ))
        }
        _ => None,
    }
}

/// An API error for a provider that did not answer (timeout, refused connection, DNS): a fixed
/// message and a correlation id; the connection's own description (which names hosts and
/// addresses the caller need not learn) is logged at WARN under that id, so an operator whose
/// firewall blocks the provider finds it there.
fn provider_unreachable(status: u16, code: &str, message: &str) -> ApiError {
    let id = correlation_id();
    let answered = answered_status(message);
    // An HTTP error status is an answer (a wrong gateway URL answers 404): the log line says
    // which, and the setting to check, rather than "no answer".
    match answered {
        // 404 and 405 are a wrong URL in the merchant's settings; 5xx the provider's trouble.
        Some(http @ (404 | 405)) => tracing::warn!(
            correlation_id = %id, code, http,
            detail = %crate::log_limit::clean(message),
            "provider call failed: the provider's URL answered HTTP {http} (check the merchant's gateway URL settings)"
        ),
        Some(http) => tracing::warn!(
            correlation_id = %id, code, http,
            detail = %crate::log_limit::clean(message),
            "provider call failed: the provider answered HTTP {http}"
        ),
        None => tracing::warn!(
            correlation_id = %id, code,
            detail = %crate::log_limit::clean(message),
            "provider call failed: no answer"
        ),
    }
    let said = match (status, answered) {
        (504, _) => "the provider did not answer in time".to_owned(),
        // An HTTP status says what happened without quoting anything the provider sent.
        (_, Some(http)) => format!("the provider answered HTTP {http}"),
        _ => "the provider could not be reached (no connection, or its name did not resolve)"
            .to_owned(),
    };
    ApiError::new(
        status,
        code,
        format!("{said} (correlation id {id}; the detail is in the payhost log)"),
    )
}

/// The HTTP status a transport failure's description names (`… HTTP 500 …`), if any.
fn answered_status(message: &str) -> Option<u16> {
    message.match_indices("HTTP ").find_map(|(at, _)| {
        let digits = message.get(at + 5..at + 8)?;
        let after = message[at + 8..].chars().next();
        (digits.bytes().all(|b| b.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    })
}

/// An API error about the provider's answer: fixed text plus a correlation id; the detail is logged.
pub fn upstream_error(status: u16, code: &str, message: &str, detail: &str) -> ApiError {
    let id = correlation_id();
    tracing::warn!(correlation_id = %id, code, detail = %crate::log_limit::clean(detail), "provider call failed");
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

/// The request to create a payment, as the shop sends it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    pub out_trade_no: Option<String>,
    pub subject: Option<String>,
    /// A decimal string; a JSON number arrives as the string of its exact literal.
    #[serde(default, deserialize_with = "crate::domain::amount::exact_json_amount")]
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
    /// App pay: the signed order string the app hands to the provider's SDK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_string: Option<String>,
    /// The same redirect as `pay_url`, as an HTML form that submits itself (a POST where the
    /// component asks for one: Alipay's open platform, whose `biz_content` may be too long for a
    /// URL). For a shop to print into its order page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_form: Option<String>,
}

/// What a trade query found and did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncResult {
    /// False when the provider has no such trade (the buyer never opened the cashier).
    pub found: bool,
    pub trade_status: Option<String>,
    /// Whether the answer reported the trade's refunded total (for the notify path, which asks
    /// the query about a refund reported without its amount).
    #[serde(skip)]
    pub refund_total_shown: bool,
    /// `applied`, `duplicate`, `no_change`, `mismatch` or `not_found`.
    pub outcome: String,
    /// The payment's status after the query.
    pub status: String,
    /// Whether the provider finished the trade, as recorded after the query (`finished_at`, or
    /// the status `TRADE_FINISHED`): no refund of it is possible any more.
    pub finished: bool,
    /// The payment's pending refunds the provider was asked about first (the refund query, then
    /// the same request again under its number), as they stand afterwards.
    pub refunds: Vec<serde_json::Value>,
}

/// The "field" of a merchant save refused because the row changed since it was read (see
/// [`App::configure_merchant`]).
pub const CHANGED_MEANWHILE: &str = "merchant";

impl App {
    pub async fn merchant(&self, id: &str) -> Result<MerchantSettings, ApiError> {
        match self.store.merchant(id).await {
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
            .plugins
            .for_merchant(m)
            .map(|p| {
                p.info
                    .names_of_kind(FieldKind::Url)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        m.settings
            .iter()
            .filter(move |(k, _)| names.contains(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Where this merchant's provider calls may go: the manifest's origins and the merchant's own
    /// provider URLs; only operator-allowed origins may resolve to non-public addresses.
    pub fn merchant_policy(&self, m: &MerchantSettings) -> Policy {
        let mut policy = self
            .plugins
            .for_merchant(m)
            .map(PluginRuntime::base_policy)
            .unwrap_or_default();
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
    /// allowed that origin: in payhost.toml, or as one of the merchant's `shop_origins` (which
    /// the operator binds; a shop's token cannot change them).
    pub fn webhook_policy(&self, url: &str, shop_origins: &[String]) -> Policy {
        let mut policy = Policy::default();
        if let Ok(o) = Origin::parse(url) {
            if self.webhook_origin_allowed(&o, shop_origins) {
                policy.allow_explicitly(o);
            } else {
                policy.allow(o);
            }
        }
        policy
    }

    /// Whether the operator allowed a webhook `origin` wherever it resolves: in payhost.toml, or
    /// as one of the merchant's bound `shop_origins`.
    fn webhook_origin_allowed(&self, origin: &Origin, shop_origins: &[String]) -> bool {
        self.operator_origins.contains(origin)
            || shop_origins
                .iter()
                .any(|s| Origin::parse(s).is_ok_and(|o| &o == origin))
    }

    /// A webhook URL whose host is a non-public address (an IP literal, or `localhost`) the
    /// operator did not allow: the sender refuses every delivery there (the outbound policy), so it
    /// is refused when saved, where the shop's owner sees why, not three days later. A name is
    /// judged when it is resolved, at each send.
    fn check_webhook_address(&self, m: &MerchantSettings) -> Option<FieldError> {
        let url = m.shop_webhook_url.as_deref()?;
        let origin = Origin::parse(url).ok()?;
        if self.webhook_origin_allowed(&origin, &m.shop_origins) {
            return None;
        }
        let private = match crate::net::numeric_host(&origin.host) {
            Some(ip) => !crate::net::is_public(ip),
            None => origin.host == "localhost" || origin.host.ends_with(".localhost"),
        };
        private.then(|| {
            FieldError::new(
                "shop_webhook_url",
                format!(
                    "{origin} 是内网地址，payhost 不会把通知发到这里，除非运营者在 payhost.toml 的 [outbound] allowed_origins 里允许它 / {origin} is a non-public address: payhost sends no webhook there unless the operator allows it in payhost.toml ([outbound] allowed_origins)"
                ),
            )
        })
    }

    /// Provider URLs that arrive through the API or the admin page must use an origin the
    /// operator allowed (or the manifest's): every other one is named with the rule.
    fn check_provider_origins(&self, m: &MerchantSettings) -> Vec<FieldError> {
        let base = self
            .plugins
            .for_merchant(m)
            .map(PluginRuntime::base_policy)
            .unwrap_or_default();
        self.provider_urls(m)
            .filter_map(|(name, url)| {
                let reason = match Origin::parse(url) {
                    Err(e) => e.to_string(),
                    Ok(o) if base.allows(&o) || self.operator_origins.contains(&o) => return None,
                    Ok(o) => format!(
                        "the origin {o} is not allowed: the operator must list it in payhost.toml under [outbound] allowed_origins"
                    ),
                };
                Some(FieldError::new(name, reason))
            })
            .collect()
    }

    /// The component that pays for a merchant (500 when it names none this host loaded).
    /// A merchant slot (`payhost merchant add`, the admin's 连接商城) has no provider settings
    /// until its shop saves them: it is not broken, it is not set up yet (409, not a 5xx).
    pub fn plugin_for(&self, m: &MerchantSettings) -> Result<&PluginRuntime, ApiError> {
        if m.settings.is_empty() {
            return Err(ApiError::field(
                409,
                "merchant_not_configured",
                "settings",
                "the merchant has no provider settings yet: save them first (PUT /v1/merchants/{id}, or the admin page)",
            ));
        }
        self.plugins.for_merchant(m).ok_or_else(|| {
            ApiError::field(
                500,
                "merchant_misconfigured",
                "plugin",
                format!(
                    "plugin: the merchant names {:?}, which this host has not loaded ({})",
                    m.plugin_id,
                    self.plugins.ids().join(", ")
                ),
            )
        })
    }

    /// Validates settings with the merchant's component and stores them (trimmed, normalised).
    /// Settings the embedder gives every merchant (`default_settings`, e.g. the demo's sandbox
    /// URLs) fill in what is left out.
    /// The settings replace whatever the merchant has when this is called (another request's
    /// change made while they are checked is not undone: the one error [`CHANGED_MEANWHILE`]).
    pub async fn configure_merchant(
        &self,
        id: &str,
        settings: MerchantSettings,
    ) -> Result<MerchantSettings, Vec<FieldError>> {
        let before = self
            .store
            .merchant_stored(id)
            .await
            .map_err(|e| vec![FieldError::new("store", e.to_string())])?;
        self.configure_merchant_beside(id, settings, Vec::new(), before.as_deref())
            .await
    }

    /// [`configure_merchant`](App::configure_merchant) of settings built from the merchant's
    /// row as the caller read it earlier (`before`: [`store::Merchants::merchant_stored`]'s text,
    /// `None` for no merchant yet): saved only if nobody changed or removed it since, else the
    /// one error [`CHANGED_MEANWHILE`].
    pub async fn configure_merchant_after(
        &self,
        id: &str,
        settings: MerchantSettings,
        before: Option<&str>,
    ) -> Result<MerchantSettings, Vec<FieldError>> {
        self.configure_merchant_beside(id, settings, Vec::new(), before)
            .await
    }

    /// [`configure_merchant`](App::configure_merchant) of settings the caller already found
    /// `earlier` problems in (its own checks, such as a shop secret too short): nothing is
    /// saved then, but the policy and the component still check the rest, so every bad field is
    /// said at once. `before` as for [`configure_merchant_after`](App::configure_merchant_after).
    pub async fn configure_merchant_beside(
        &self,
        id: &str,
        mut settings: MerchantSettings,
        earlier: Vec<FieldError>,
        before: Option<&str>,
    ) -> Result<MerchantSettings, Vec<FieldError>> {
        let _permit = self.admission.enter(Class::Admin).await;
        let with_earlier = |mut later: Vec<FieldError>| {
            later.retain(|e| !earlier.iter().any(|x| x.field == e.field));
            let mut all = earlier.clone();
            all.extend(later);
            all
        };
        if settings.plugin_id.is_empty() {
            // One plugin: it is implied. Several: the merchant must name one.
            match self.plugins.ids().as_slice() {
                [only] => settings.plugin_id = only.clone(),
                ids => {
                    return Err(with_earlier(vec![FieldError::new(
                        "plugin",
                        format!("is required: one of {}", ids.join(", ")),
                    )]))
                }
            }
        }
        let Some(plugin) = self.plugins.get(&settings.plugin_id) else {
            return Err(with_earlier(vec![FieldError::new(
                "plugin",
                format!(
                    "{:?} is not loaded by this host (loaded: {})",
                    settings.plugin_id,
                    self.plugins.ids().join(", ")
                ),
            )]));
        };
        // Every merchant has its own shop secret: the one sent, else the stored one, else a new
        // one. The digest is taken over the settings as sent (before defaults are filled in).
        if settings.shop_webhook_secret.is_none() {
            let stored = before.and_then(|text| store::parse_merchant(text).ok());
            settings.shop_webhook_secret = Some(
                stored
                    .and_then(|m| m.shop_webhook_secret)
                    .unwrap_or_else(crate::onboarding::new_shop_secret),
            );
        }
        settings.settings_digest = Some(crate::onboarding::settings_digest(
            settings.shop_webhook_secret.as_deref().unwrap_or_default(),
            &settings.settings,
            settings.shop_webhook_url.as_deref(),
        ));
        // Every bad field at once: the URLs outside the outbound policy and what the component
        // refuses (it is pure: seeing a URL it may not reach costs nothing).
        let mut refused = self.check_provider_origins(&settings);
        refused.extend(self.check_webhook_address(&settings));
        let normalised = match self
            .validate_with_defaults(plugin, &mut settings.settings)
            .await
        {
            Ok(normalised) if refused.is_empty() && earlier.is_empty() => normalised,
            Ok(_) => return Err(with_earlier(refused)),
            Err(mut invalid) => {
                invalid.retain(|e| !refused.iter().any(|r| r.field == e.field));
                let mut all = refused;
                all.extend(invalid);
                return Err(with_earlier(all));
            }
        };
        let stored = MerchantSettings {
            settings: normalised,
            ..settings
        };
        let saved = self
            .store
            .save_merchant(id, &stored, store::Expected::from_read(before))
            .await
            .map_err(|e| vec![FieldError::new("store", e.to_string())])?;
        if !saved {
            return Err(vec![FieldError::new(
                CHANGED_MEANWHILE,
                "changed or removed by another request while this one was checked: nothing was saved; read the merchant again and send the change again",
            )]);
        }
        tracing::info!(merchant = id, plugin = %stored.plugin_id, "merchant settings saved");
        Ok(stored)
    }

    /// The component's check of `settings`, with the embedder's `default_settings` filled in
    /// where left out. A default the component refuses for this merchant (another API family's
    /// URL, e.g. the demo's legacy sandbox URLs for an `api = openapi` merchant) is left out,
    /// and so is never reported. Answers the normalised settings, or every refused field.
    pub async fn validate_with_defaults(
        &self,
        plugin: &crate::runtime::PluginRuntime,
        settings: &mut Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, Vec<FieldError>> {
        let mut defaulted = Vec::new();
        for (name, value) in &self.default_settings {
            if !settings.iter().any(|(n, _)| n == name) && plugin.info.field(name).is_some() {
                settings.push((name.clone(), value.clone()));
                defaulted.push(name.clone());
            }
        }
        let plugin_failed = |e: CallError| vec![FieldError::new("plugin", e.to_string())];
        let mut session = plugin.session().await.map_err(plugin_failed)?;
        match session
            .validate_settings(settings)
            .await
            .map_err(plugin_failed)?
        {
            Ok(n) => Ok(n),
            Err(errors) if errors.iter().any(|e| defaulted.contains(&e.field)) => {
                settings.retain(|(k, _)| {
                    !(defaulted.contains(k) && errors.iter().any(|e| &e.field == k))
                });
                let mut session = plugin.session().await.map_err(plugin_failed)?;
                session
                    .validate_settings(settings)
                    .await
                    .map_err(plugin_failed)?
            }
            Err(errors) => Err(errors),
        }
    }

    pub async fn create_payment(
        &self,
        merchant_id: &str,
        req: CreatePayment,
    ) -> Result<(u16, PaymentCreated), ApiError> {
        // The shop API's admission is taken once this request's order is its own (below): a
        // request waiting for another creation of its order holds no slot other shops need.
        let merchant = self.merchant(merchant_id).await?;
        let plugin = self.plugin_for(&merchant)?;
        let required = |v: &Option<String>, name: &str| -> Result<String, ApiError> {
            v.as_ref()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ApiError::field(400, "invalid_request", name, format!("{name}: is required"))
                })
        };
        let product = match req.product.as_deref().map(str::trim) {
            None | Some("") | Some("wap") => Product::Wap,
            Some("pc") => Product::Pc,
            Some("app") => Product::App,
            // Phone and tablet browsers get the WAP cashier, desktops the PC one (domain::device).
            Some("auto") => match req.user_agent.as_deref().map(str::trim) {
                Some(ua) if !ua.is_empty() && !crate::domain::device::is_phone_browser(ua) => {
                    Product::Pc
                }
                _ => Product::Wap,
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
        if !crate::config::is_http_url(&return_url) {
            return Err(ApiError::field(
                400,
                "invalid_request",
                "return_url",
                format!(
                    "return_url: must be an absolute http or https URL{}",
                    crate::config::url_encoding_hint(&return_url, false)
                ),
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
        let total_fen = amount_minor(&total_fee).map_err(|reason| {
            ApiError::field(
                400,
                "invalid_order",
                "total_fee",
                format!("total_fee: {reason}"),
            )
        })?;
        let mut order = api::PaymentRequest {
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

        // Held until the payment is stored: a request for this order racing this one waits here,
        // then finds it below. The wait is bounded: past it (many copies of one request, each
        // calling the provider in turn), this one goes on as before the lock, and the store's
        // insert decides.
        let _creating = self
            .order_locks
            .lock_within(merchant_id, &out_trade_no, ORDER_WAIT)
            .await;
        let _permit = self.admission.enter(Class::Shop).await;
        // The same out_trade_no again: same amount (and the same seller, when the request names
        // one) → the existing payment; else 409.
        if let Some(existing) = self
            .store
            .payment(merchant_id, &out_trade_no)
            .await
            .map_err(ApiError::internal)?
        {
            if let Some(conflict) = order_conflict(&existing, total_fen, order.seller.as_deref()) {
                return Err(conflict);
            }
            if existing.status != store::WAIT_BUYER_PAY {
                return Ok((200, created(&existing)));
            }
            // The existing payment is what the buyer pays: its subject on the new cashier page,
            // whatever this request says (the stored one is what the shop, the admin and the
            // reconciliation show).
            order.subject = existing.subject.clone();
        }

        let policy = self.merchant_policy(&merchant);
        let mut session = plugin.session().await?;
        let mut started = match session
            .start_payment(&policy, &merchant.settings, &order)
            .await?
        {
            Ok(started) => started,
            Err(refused) => {
                // Another replica's request with another amount kept the order meanwhile, and
                // the provider refused ours as its duplicate: the shop's mistake is the
                // conflict (409, as without the race), not the gateway.
                if let Ok(Some(existing)) = self.store.payment(merchant_id, &out_trade_no).await {
                    if let Some(conflict) =
                        order_conflict(&existing, total_fen, order.seller.as_deref())
                    {
                        return Err(conflict);
                    }
                }
                return Err(start_refused(refused));
            }
        };
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
            finished_at: None,
        };
        match self
            .store
            .insert_payment(&payment)
            .await
            .map_err(ApiError::internal)?
        {
            Inserted::New => {
                self.metrics.payments_created.inc();
                tracing::info!(merchant = merchant_id, out_trade_no = %crate::log_limit::clean(&out_trade_no), total_fee = %payment.total_fee(), "payment created");
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
                // Another request kept this order first, under its own subject: the buyer's
                // page is started again with the stored one (what the shop, the admin and the
                // reconciliation show), as for a repeated request above. A new request id (the
                // WAP `req_id`: Alipay refuses one it has seen) and a session of its own (the
                // first one's deadline is partly spent); a paid or closed order needs no page.
                if existing.status == store::WAIT_BUYER_PAY && existing.subject != order.subject {
                    drop(session);
                    order.subject = existing.subject.clone();
                    order.request_id = new_request_id();
                    started = plugin
                        .session()
                        .await?
                        .start_payment(&policy, &merchant.settings, &order)
                        .await?
                        .map_err(start_refused)?;
                }
                self.store
                    .set_payment_token(
                        merchant_id,
                        &out_trade_no,
                        &started.token,
                        &started.redirect.url,
                    )
                    .await
                    .map_err(ApiError::internal)?;
                let refreshed = self
                    .store
                    .payment(merchant_id, &out_trade_no)
                    .await
                    .map_err(ApiError::internal)?
                    .unwrap_or(*existing);
                // Paid or closed while this was being started: the new form would only ask the
                // buyer to pay again.
                if refreshed.status != store::WAIT_BUYER_PAY {
                    return Ok((200, created(&refreshed)));
                }
                Ok((200, created_now(&refreshed, product, &started)))
            }
            Inserted::UnknownMerchant => Err(ApiError::new(
                404,
                "unknown_merchant",
                format!("no merchant {merchant_id:?} (it was removed while this payment was being started; nothing was kept)"),
            )),
        }
    }

    /// Verifies an app SDK's synchronous result string for one of this merchant's payments: a
    /// hint for the app to show, never a payment (only a notification or a query marks paid).
    pub async fn app_result(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
        result: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let _permit = self.admission.enter(Class::Shop).await;
        let merchant = self.merchant(merchant_id).await?;
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
        let mut session = self.plugin_for(&merchant)?.session().await?;
        let verified = session
            .verify_app_result(&merchant.settings, result)
            .await?;
        Ok(match verified {
            Ok(r) if r.out_trade_no == out_trade_no => serde_json::json!({
                "verified": true,
                "result_status": r.result_status,
                "memo": r.memo,
                "status": payment.status,
                "note": "a verified SDK result is a hint: the payment is marked paid only by the provider's notification or a trade query",
            }),
            Ok(r) => {
                serde_json::json!({"verified": false, "reason": format!("the result is for order {}", r.out_trade_no), "status": payment.status})
            }
            Err(e) => {
                serde_json::json!({"verified": false, "reason": e.to_string(), "status": payment.status})
            }
        })
    }

    /// The key that signs what the host sends the shop (return redirects, webhooks): the
    /// merchant's own shop secret, never the operator's token (a merchant stored without one has
    /// a key derived for it alone).
    pub fn shop_key(&self, merchant_id: &str, merchant: &MerchantSettings) -> String {
        merchant.shop_webhook_secret.clone().unwrap_or_else(|| {
            crate::onboarding::derived_shop_key(self.config.api_token.expose(), merchant_id)
        })
    }

    /// Waits for a buyer's return's turn (its class's permit), at most
    /// [`crate::admission::TURN_WAIT`]: nothing is done for it meanwhile, so past that
    /// it is a 503 (the buyer opens the link again), and the HTTP layer may shed its connection
    /// while it waits (a flood of forged returns must not hold every connection slot).
    pub async fn return_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.admission.enter_return().await.ok_or_else(|| {
            ApiError::new(
                503,
                "busy",
                "too many returns are being checked; open the return link again",
            )
        })
    }

    /// Verifies the buyer's return ([WAP §6], [EXTRA §2.3]) and builds the signed redirect to the shop's return_url:
    /// `merchant` (the merchant id, so one shop's signed return is worth nothing to another),
    /// `out_trade_no`, `result` (the provider's), `status` (the host's, from confirmed
    /// notifications only), `total_fee`, `ts` (unix seconds: shops refuse an old one), `sign` =
    /// hex HMAC-SHA256 over the sorted `k=v&…` string, keyed with the merchant's shop secret.
    ///
    /// Admitted in its own class ([`return_turn`](App::return_turn)) and checked where
    /// notifications are (`admission`): anyone may send a return, and a flood of them must not
    /// slow the shop API.
    pub async fn handle_return(
        self: &Arc<Self>,
        merchant_id: &str,
        query: &[u8],
    ) -> Result<String, ApiError> {
        let permit = self.return_turn().await?;
        self.handle_return_in_turn(merchant_id, permit, query).await
    }

    /// [`handle_return`](App::handle_return) once its turn came
    /// ([`return_turn`](App::return_turn)'s permit).
    pub async fn handle_return_in_turn(
        self: &Arc<Self>,
        merchant_id: &str,
        permit: tokio::sync::OwnedSemaphorePermit,
        query: &[u8],
    ) -> Result<String, ApiError> {
        let (app, id, query) = (self.clone(), merchant_id.to_owned(), query.to_vec());
        // The permit goes with the work: a check moved to the pool runs on after the buyer's
        // connection closes, and must still count.
        let work = async move {
            let _permit = permit;
            app.return_now(&id, &query).await
        };
        self.admission.run_return(work).await.unwrap_or_else(|| {
            Err(ApiError::new(
                503,
                "shutting_down",
                "payhost is stopping; open the return link again",
            ))
        })
    }

    /// [`handle_return`](App::handle_return)'s work.
    async fn return_now(&self, merchant_id: &str, query: &[u8]) -> Result<String, ApiError> {
        let merchant = self.merchant(merchant_id).await?;
        let q: Vec<(String, String)> = form_urlencoded::parse(query).into_owned().collect();
        let mut session = self.plugin_for(&merchant)?.session().await?;
        let verified = match session.verify_return(&merchant.settings, &q).await? {
            Ok(v) => v,
            Err(e) => {
                // Anyone may send a buyer's return: at most one such line a second (with how
                // many were left unsaid), the component's text escaped (it can quote the query).
                static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(1_000);
                if let Some(unsaid) = SAY.allow() {
                    tracing::warn!(merchant = merchant_id, detail = %crate::log_limit::clean(&e), unsaid, "refused a return; unsaid: refusals since the last such line");
                }
                self.metrics.returns("refused");
                return Err(ApiError::new(400, "bad_return", e.to_string()));
            }
        };
        let payment = self
            .store
            .payment(merchant_id, &verified.out_trade_no)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "unknown_order",
                    "the return names an order this host does not know",
                )
            })?;
        self.metrics.returns("verified");
        // A return link works as often as it is opened (anyone holding it can replay it): the
        // timeline keeps the first of each result.
        crate::ledger::note_once(
            self,
            merchant_id,
            &payment.out_trade_no,
            "return",
            Some(&verified.result),
        )
        .await;
        let params = vec![
            ("merchant".to_owned(), merchant_id.to_owned()),
            ("out_trade_no".to_owned(), payment.out_trade_no.clone()),
            ("result".to_owned(), verified.result.clone()),
            ("status".to_owned(), payment.status.clone()),
            ("total_fee".to_owned(), payment.total_fee()),
            ("ts".to_owned(), (store::now_ms() / 1000).to_string()),
        ];
        let signed = sign_params(&self.shop_key(merchant_id, &merchant), &params);
        let sep = if payment.return_url.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{signed}", payment.return_url))
    }
}

/// A payment just (re)started: with its product and, for app pay, the order string.
fn created_now(p: &Payment, product: Product, started: &api::PaymentStarted) -> PaymentCreated {
    let r = &started.redirect;
    let pay_form = (!r.action.is_empty()).then(|| {
        let method = match r.method {
            api::HttpMethod::Post => "post",
            api::HttpMethod::Get => "get",
        };
        html::auto_submit_form(method, &r.action, &r.fields)
    });
    let base = created(p);
    PaymentCreated {
        product: Some(product.as_str().to_owned()),
        order_string: started.order_string.clone(),
        pay_form: pay_form.or(base.pay_form.clone()),
        ..base
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
        // A payment created earlier: the stored pay URL as the equivalent GET form.
        pay_form: p
            .pay_url
            .as_deref()
            .filter(|u| !u.is_empty() && p.status == store::WAIT_BUYER_PAY)
            .map(html::form_from_url),
    }
}

/// The host's own amount check (the component checks again): minor units, or why not.
pub fn amount_minor(s: &str) -> Result<u64, String> {
    Amount::parse(s)
        .map(Amount::minor)
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

/// The masked view of a merchant's settings: secrets show their last four characters, PEM keys
/// only that they are set (by the component's schema). The settings appear both under `settings`
/// and, as older clients read them, at the top level.
pub fn masked_settings(m: &MerchantSettings, info: Option<&api::PluginInfo>) -> serde_json::Value {
    let mut settings = serde_json::Map::new();
    for (k, v) in &m.settings {
        let field = info.and_then(|i| i.field(k));
        let value = match field {
            Some(f) if f.kind == FieldKind::Pem => "(set)".to_owned(),
            Some(f) if f.secret || f.kind == FieldKind::Secret => mask(v),
            Some(_) => v.clone(),
            // Not in the schema (an older row): shown only as set.
            None => "(set)".to_owned(),
        };
        settings.insert(k.clone(), value.into());
    }
    let mut out = settings.clone();
    out.insert("plugin".into(), m.plugin_id.clone().into());
    out.insert("settings".into(), serde_json::Value::Object(settings));
    if let Some(u) = &m.shop_webhook_url {
        out.insert("shop_webhook_url".into(), u.clone().into());
    }
    if let Some(s) = &m.shop_webhook_secret {
        out.insert("shop_webhook_secret".into(), mask(s).into());
    }
    if !m.shop_origins.is_empty() {
        out.insert("shop_origins".into(), m.shop_origins.clone().into());
    }
    if let Some(d) = &m.settings_digest {
        out.insert("settings_digest".into(), d.clone().into());
    }
    serde_json::Value::Object(out)
}

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

    /// A transport failure reaches the caller as a fixed sentence (with the HTTP status when
    /// there was one): never the hosts, addresses or words of the connection's description.
    #[test]
    fn an_unreachable_provider_is_said_without_its_description() {
        let e = provider_unreachable(
            502,
            "gateway_unreachable",
            "create call to the gateway: cannot resolve pay.example.test: Name or service not known",
        );
        assert!(
            e.message.starts_with("the provider could not be reached"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("pay.example.test"), "{}", e.message);
        let e = provider_unreachable(
            502,
            "gateway_unreachable",
            "the gateway answered HTTP 500 (10.0.0.5:8443)",
        );
        assert!(
            e.message
                .starts_with("the provider answered HTTP 500 (correlation id "),
            "{}",
            e.message
        );
        assert!(!e.message.contains("10.0.0.5"), "{}", e.message);
        let e = provider_unreachable(
            504,
            "gateway_timeout",
            "no answer from 10.0.0.5:8443 within 15 s",
        );
        assert!(
            e.message.starts_with("the provider did not answer in time"),
            "{}",
            e.message
        );
        assert_eq!(answered_status("HTTP 5000"), None);
        assert_eq!(answered_status("HTTP 404: not found"), Some(404));
    }
}
