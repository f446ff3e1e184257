//! Generated bindings, one module per contract version (as Zed does for its extension API).
//! Generated types stop at `runtime`: the rest of the host uses them through `runtime::plugin_api`.
//!
//! Every version's module runs `bindgen!` for its WIT folder and then [`contract_version!`], which
//! writes the `From` conversions into the host's types and one async function per export taking
//! and returning host types only. The versions differ in what the macro cannot share, written in
//! each module: the continuation's WIT type (`continuation_in`: 0.2.0 `list<u8>`, 0.3.0 `string`),
//! how key/value inputs cross (`form_in`: 0.2.0 `list<pair>`, 0.3.0 one form-encoded string), and
//! 0.4.0's additions to shared records (`shown_when_out`, `refund_out`; `contract_version!(refund)`
//! names the notification's `refund` field so the macro fills it going in). 0.4.0's own exports
//! (refunds, close, bill) live in `v0_4_0.rs` only. [`Pre`] and [`Guest`] hold a component of any
//! version.
//!
//! v0.1.0 (the component did its own `wasi:http` I/O) is retired: no published component uses it
//! (see CHANGELOG.md).

use super::plugin::HostState;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

/// Everything a contract version's module has beyond its `bindgen!` and `continuation_in`.
macro_rules! contract_version {
    ($($refund:ident)?) => {
        use crate::runtime::plugin::HostState;
        use crate::runtime::plugin_api as api;
        use crate::runtime::plugin_api::SettingsInput;
        use wasmtime::Store;

        pub use payhost::payment::types;

        fn pairs_in(settings: &[(String, String)]) -> Vec<types::Pair> {
            settings
                .iter()
                .map(|(k, v)| types::Pair {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect()
        }

        fn pairs_out(p: Vec<types::Pair>) -> api::Settings {
            p.into_iter().map(|p| (p.key, p.value)).collect()
        }

        impl From<types::FieldKind> for api::FieldKind {
            fn from(k: types::FieldKind) -> Self {
                match k {
                    types::FieldKind::Text => api::FieldKind::Text,
                    types::FieldKind::Secret => api::FieldKind::Secret,
                    types::FieldKind::Select => api::FieldKind::Select,
                    types::FieldKind::Pem => api::FieldKind::Pem,
                    types::FieldKind::Url => api::FieldKind::Url,
                }
            }
        }

        impl From<types::PluginInfo> for api::PluginInfo {
            fn from(i: types::PluginInfo) -> Self {
                api::PluginInfo {
                    id: i.id,
                    name: i.name,
                    version: i.version,
                    provider: i.provider,
                    settings: i
                        .settings
                        .into_iter()
                        .map(|f| api::SettingField {
                            shown_when: shown_when_out(&f),
                            name: f.name,
                            label_zh: f.label_zh,
                            label_en: f.label_en,
                            kind: f.kind.into(),
                            required: f.required,
                            secret: f.secret,
                            rule: f.rule,
                            rule_zh: None,
                            options: f
                                .options
                                .into_iter()
                                .map(|o| api::SelectOption {
                                    value: o.value,
                                    label_zh: o.label_zh,
                                    label_en: o.label_en,
                                })
                                .collect(),
                            default_value: f.default_value,
                        })
                        .collect(),
                    notify_ack: i.notify_ack,
                    notify_retry: i.notify_retry,
                }
            }
        }

        impl From<types::FieldError> for api::FieldError {
            fn from(e: types::FieldError) -> Self {
                api::FieldError {
                    field: e.field,
                    reason: e.reason,
                }
            }
        }

        fn field_errors(v: Vec<types::FieldError>) -> Vec<api::FieldError> {
            v.into_iter().map(Into::into).collect()
        }

        impl From<&api::PaymentRequest> for types::PaymentRequest {
            fn from(r: &api::PaymentRequest) -> Self {
                types::PaymentRequest {
                    product: match r.product {
                        api::Product::Wap => types::PaymentProduct::Wap,
                        api::Product::Pc => types::PaymentProduct::Pc,
                        api::Product::App => types::PaymentProduct::App,
                    },
                    out_trade_no: r.out_trade_no.clone(),
                    subject: r.subject.clone(),
                    total_fee: r.total_fee.clone(),
                    seller: r.seller.clone(),
                    return_url: r.return_url.clone(),
                    notify_url: r.notify_url.clone(),
                    merchant_url: r.merchant_url.clone(),
                    pay_expire: r.pay_expire,
                    out_user: r.out_user.clone(),
                    cashier_code: r.cashier_code.clone(),
                    request_id: r.request_id.clone(),
                }
            }
        }

        impl From<types::HttpMethod> for api::HttpMethod {
            fn from(m: types::HttpMethod) -> Self {
                match m {
                    types::HttpMethod::Get => api::HttpMethod::Get,
                    types::HttpMethod::Post => api::HttpMethod::Post,
                }
            }
        }

        impl From<types::PaymentStarted> for api::PaymentStarted {
            fn from(s: types::PaymentStarted) -> Self {
                api::PaymentStarted {
                    redirect: api::Redirect {
                        url: s.redirect.url,
                        method: s.redirect.method.into(),
                        action: s.redirect.action,
                        fields: pairs_out(s.redirect.fields),
                    },
                    token: s.token,
                    request_id: s.request_id,
                    total_fee: s.total_fee,
                    seller: s.seller,
                    order_string: s.order_string,
                }
            }
        }

        impl From<types::VerifiedReturn> for api::VerifiedReturn {
            fn from(v: types::VerifiedReturn) -> Self {
                api::VerifiedReturn {
                    out_trade_no: v.out_trade_no,
                    trade_no: v.trade_no,
                    result: v.result,
                    request_token: v.request_token,
                    raw: pairs_out(v.raw),
                }
            }
        }

        impl From<types::TradeEvent> for api::TradeEvent {
            fn from(e: types::TradeEvent) -> Self {
                match e {
                    types::TradeEvent::Waiting => api::TradeEvent::Waiting,
                    types::TradeEvent::Paid => api::TradeEvent::Paid,
                    types::TradeEvent::Finished => api::TradeEvent::Finished,
                    types::TradeEvent::Closed => api::TradeEvent::Closed,
                    types::TradeEvent::Refunded => api::TradeEvent::Refunded,
                    types::TradeEvent::PartiallyRefunded => api::TradeEvent::PartiallyRefunded,
                }
            }
        }

        impl From<api::TradeEvent> for types::TradeEvent {
            fn from(e: api::TradeEvent) -> Self {
                match e {
                    api::TradeEvent::Waiting => types::TradeEvent::Waiting,
                    api::TradeEvent::Paid => types::TradeEvent::Paid,
                    api::TradeEvent::Finished => types::TradeEvent::Finished,
                    api::TradeEvent::Closed => types::TradeEvent::Closed,
                    api::TradeEvent::Refunded => types::TradeEvent::Refunded,
                    api::TradeEvent::PartiallyRefunded => types::TradeEvent::PartiallyRefunded,
                }
            }
        }

        impl From<types::Notification> for api::Notification {
            fn from(mut n: types::Notification) -> Self {
                api::Notification {
                    refund: refund_out(&mut n),
                    out_trade_no: n.out_trade_no,
                    trade_no: n.trade_no,
                    trade_status: n.trade_status,
                    event: n.event.into(),
                    total_fee: n.total_fee,
                    refund_fee: n.refund_fee,
                    seller_email: n.seller_email,
                    seller_id: n.seller_id,
                    buyer_email: n.buyer_email,
                    buyer_id: n.buyer_id,
                    notify_id: n.notify_id,
                    notify_time: n.notify_time,
                    gmt_create: n.gmt_create,
                    gmt_payment: n.gmt_payment,
                    gmt_close: n.gmt_close,
                    paid: n.paid,
                    fields: pairs_out(n.fields),
                    reply: n.reply,
                }
            }
        }

        impl From<&api::Notification> for types::Notification {
            fn from(n: &api::Notification) -> Self {
                types::Notification {
                    out_trade_no: n.out_trade_no.clone(),
                    trade_no: n.trade_no.clone(),
                    trade_status: n.trade_status.clone(),
                    event: n.event.into(),
                    total_fee: n.total_fee.clone(),
                    refund_fee: n.refund_fee.clone(),
                    seller_email: n.seller_email.clone(),
                    seller_id: n.seller_id.clone(),
                    buyer_email: n.buyer_email.clone(),
                    buyer_id: n.buyer_id.clone(),
                    notify_id: n.notify_id.clone(),
                    notify_time: n.notify_time.clone(),
                    gmt_create: n.gmt_create.clone(),
                    gmt_payment: n.gmt_payment.clone(),
                    gmt_close: n.gmt_close.clone(),
                    paid: n.paid,
                    fields: pairs_in(&n.fields),
                    reply: n.reply.clone(),
                    $($refund: n.refund.as_ref().map(Into::into),)?
                }
            }
        }

        impl From<&api::OrderExpectation> for types::OrderExpectation {
            fn from(o: &api::OrderExpectation) -> Self {
                types::OrderExpectation {
                    out_trade_no: o.out_trade_no.clone(),
                    total_fee: o.total_fee.clone(),
                    seller: o.seller.clone(),
                }
            }
        }

        impl From<types::ChannelList> for api::ChannelList {
            fn from(c: types::ChannelList) -> Self {
                api::ChannelList {
                    channels: c
                        .channels
                        .into_iter()
                        .map(|c| api::PayChannel {
                            name: c.name,
                            cashier_code: c.cashier_code,
                            parent: c.parent,
                        })
                        .collect(),
                    last_used: c.last_used,
                }
            }
        }

        impl From<types::PluginError> for api::PluginError {
            fn from(e: types::PluginError) -> Self {
                use types::PluginError as E;
                match e {
                    E::InvalidSettings(f) => api::PluginError::InvalidSettings(field_errors(f)),
                    E::InvalidOrder(f) => api::PluginError::InvalidOrder(f.into()),
                    E::Gateway(g) => api::PluginError::Gateway(api::GatewayError {
                        code: g.code,
                        sub_code: g.sub_code,
                        msg: g.msg,
                        detail: g.detail,
                    }),
                    E::BadSignature(m) => api::PluginError::BadSignature(m),
                    E::NotifyNotConfirmed(m) => api::PluginError::NotifyNotConfirmed(m),
                    E::Transport(m) => api::PluginError::Transport(m),
                    E::Timeout(m) => api::PluginError::Timeout(m),
                    E::Malformed(m) => api::PluginError::Malformed(m),
                }
            }
        }

        impl From<types::TradeQuery> for api::TradeQuery {
            fn from(q: types::TradeQuery) -> Self {
                api::TradeQuery {
                    found: q.found,
                    out_trade_no: q.out_trade_no,
                    trade_no: q.trade_no,
                    trade_status: q.trade_status,
                    event: q.event.into(),
                    total_fee: q.total_fee,
                    refund_fee: q.refund_fee,
                    seller_email: q.seller_email,
                    seller_id: q.seller_id,
                    buyer_email: q.buyer_email,
                    gmt_payment: q.gmt_payment,
                    signature_verified: q.signature_verified,
                    fields: pairs_out(q.fields),
                    notification: q.notification.map(Into::into),
                }
            }
        }

        impl From<types::AppResult> for api::AppResult {
            fn from(r: types::AppResult) -> Self {
                api::AppResult {
                    result_status: r.result_status,
                    memo: r.memo,
                    partner: r.partner,
                    out_trade_no: r.out_trade_no,
                    total_fee: r.total_fee,
                    seller_id: r.seller_id,
                    fields: pairs_out(r.fields),
                }
            }
        }

        impl From<types::Pending> for api::Pending {
            fn from(p: types::Pending) -> Self {
                api::Pending {
                    request: api::OutgoingRequest {
                        method: p.request.method.into(),
                        url: p.request.url,
                        headers: pairs_out(p.request.headers),
                        body: p.request.body,
                    },
                    continuation: p.continuation.into(),
                }
            }
        }

        fn response_in(
            r: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Result<types::IncomingResponse, types::SendFailure> {
            match r {
                Ok(r) => Ok(types::IncomingResponse {
                    status: r.status,
                    headers: pairs_in(&r.headers),
                    body: r.body.to_vec(),
                }),
                Err(api::SendFailure::Timeout(m)) => Err(types::SendFailure::Timeout(m.clone())),
                Err(api::SendFailure::Refused(m)) => Err(types::SendFailure::Refused(m.clone())),
                Err(api::SendFailure::Failed(m)) => Err(types::SendFailure::Failed(m.clone())),
            }
        }

        macro_rules! step_from {
            ($step:ident, $done:ty) => {
                impl From<types::$step> for api::Step<$done> {
                    fn from(s: types::$step) -> Self {
                        match s {
                            types::$step::Send(p) => api::Step::Send(p.into()),
                            types::$step::Done(d) => api::Step::Done(d.into()),
                        }
                    }
                }
            };
        }
        step_from!(PaymentStep, api::PaymentStarted);
        step_from!(NotificationStep, api::Notification);
        step_from!(ChannelsStep, api::ChannelList);
        step_from!(QueryStep, api::TradeQuery);

        /// A call's answer in the host's types: `Ok(v)` or the component's error.
        type Answer<T> = wasmtime::Result<Result<T, api::PluginError>>;

        fn answer<T, U: From<T>>(r: Result<T, types::PluginError>) -> Result<U, api::PluginError> {
            r.map(U::from).map_err(api::PluginError::from)
        }

        // One function per export, in host types. The settings cross per call (a flow may resume
        // on another instance, so nothing is kept in the guest between calls), in the form the
        // caller may have encoded once (`SettingsInput`).

        pub async fn describe(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
        ) -> wasmtime::Result<api::PluginInfo> {
            Ok(g.payhost_payment_plugin()
                .call_describe(store)
                .await?
                .into())
        }

        pub async fn validate_settings(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
        ) -> wasmtime::Result<Result<api::Settings, Vec<api::FieldError>>> {
            let r = g
                .payhost_payment_plugin()
                .call_validate_settings(store, &settings_in(settings))
                .await?;
            Ok(r.map(pairs_out).map_err(field_errors))
        }

        pub async fn start_payment(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            order: &api::PaymentRequest,
        ) -> Answer<api::Step<api::PaymentStarted>> {
            let order = types::PaymentRequest::from(order);
            let r = g
                .payhost_payment_plugin()
                .call_start_payment(store, &settings_in(settings), &order)
                .await?;
            Ok(answer(r))
        }

        pub async fn resume_payment(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            continuation: &api::Continuation,
            response: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::PaymentStarted>> {
            let (c, r) = (continuation_in(continuation), response_in(response));
            let r = g
                .payhost_payment_plugin()
                .call_resume_payment(store, &settings_in(settings), &c, r.as_ref())
                .await?;
            Ok(answer(r))
        }

        pub async fn verify_return(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            query: &[(String, String)],
        ) -> Answer<api::VerifiedReturn> {
            let r = g
                .payhost_payment_plugin()
                .call_verify_return(store, &settings_in(settings), &form_in(query))
                .await?;
            Ok(answer(r))
        }

        pub async fn verify_notification(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            form: &(impl SettingsInput + ?Sized),
        ) -> Answer<api::Step<api::Notification>> {
            // A form crosses as settings do: encoded once by the caller, as it arrived.
            let r = g
                .payhost_payment_plugin()
                .call_verify_notification(store, &settings_in(settings), &settings_in(form))
                .await?;
            Ok(answer(r))
        }

        pub async fn resume_notification(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            continuation: &api::Continuation,
            response: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::Notification>> {
            let (c, r) = (continuation_in(continuation), response_in(response));
            let r = g
                .payhost_payment_plugin()
                .call_resume_notification(store, &settings_in(settings), &c, r.as_ref())
                .await?;
            Ok(answer(r))
        }

        pub async fn match_order(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            notification: &api::Notification,
            order: &api::OrderExpectation,
        ) -> wasmtime::Result<Result<(), Vec<api::FieldError>>> {
            let (n, o) = (
                types::Notification::from(notification),
                types::OrderExpectation::from(order),
            );
            let r = g
                .payhost_payment_plugin()
                .call_match_order(store, &n, &o)
                .await?;
            Ok(r.map_err(field_errors))
        }

        pub async fn list_channels(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            out_user: Option<&str>,
        ) -> Answer<api::Step<api::ChannelList>> {
            let r = g
                .payhost_payment_plugin()
                .call_list_channels(store, &settings_in(settings), out_user)
                .await?;
            Ok(answer(r))
        }

        pub async fn resume_channels(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            continuation: &api::Continuation,
            response: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::ChannelList>> {
            let (c, r) = (continuation_in(continuation), response_in(response));
            let r = g
                .payhost_payment_plugin()
                .call_resume_channels(store, &settings_in(settings), &c, r.as_ref())
                .await?;
            Ok(answer(r))
        }

        pub async fn query_trade(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            out_trade_no: &str,
        ) -> Answer<api::Step<api::TradeQuery>> {
            let r = g
                .payhost_payment_plugin()
                .call_query_trade(store, &settings_in(settings), out_trade_no)
                .await?;
            Ok(answer(r))
        }

        pub async fn resume_query(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            continuation: &api::Continuation,
            response: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::TradeQuery>> {
            let (c, r) = (continuation_in(continuation), response_in(response));
            let r = g
                .payhost_payment_plugin()
                .call_resume_query(store, &settings_in(settings), &c, r.as_ref())
                .await?;
            Ok(answer(r))
        }

        pub async fn verify_app_result(
            g: &PaymentPlugin,
            store: &mut Store<HostState>,
            settings: &(impl SettingsInput + ?Sized),
            result: &str,
        ) -> Answer<api::AppResult> {
            let r = g
                .payhost_payment_plugin()
                .call_verify_app_result(store, &settings_in(settings), result)
                .await?;
            Ok(answer(r))
        }
    };
}

/// The 0.4.0 exports for a version without them (0.2.0, 0.3.0), so every version's module has
/// the same functions for `call_export!`. The session checks the version first
/// (`Session::require_0_4`) and answers `CallError::Unsupported`; these only fail the call.
macro_rules! without_0_4_exports {
    () => {
        fn no_such_export(name: &str) -> wasmtime::Error {
            wasmtime::Error::msg(format!(
                "contract {VERSION} has no export {name} (it is 0.4.0's)"
            ))
        }

        pub async fn start_refund(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &api::RefundRequest,
        ) -> Answer<api::Step<api::RefundState>> {
            Err(no_such_export("start-refund"))
        }

        pub async fn query_refund(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &str,
            _: &str,
        ) -> Answer<api::Step<api::RefundState>> {
            Err(no_such_export("query-refund"))
        }

        pub async fn resume_refund(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &api::Continuation,
            _: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::RefundState>> {
            Err(no_such_export("resume-refund"))
        }

        pub async fn close_trade(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &str,
        ) -> Answer<api::Step<api::TradeClosed>> {
            Err(no_such_export("close-trade"))
        }

        pub async fn resume_close(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &api::Continuation,
            _: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::TradeClosed>> {
            Err(no_such_export("resume-close"))
        }

        pub async fn locate_bill(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &str,
        ) -> Answer<api::Step<api::BillLocation>> {
            Err(no_such_export("locate-bill"))
        }

        pub async fn resume_bill(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &(impl SettingsInput + ?Sized),
            _: &api::Continuation,
            _: &Result<api::IncomingResponse, api::SendFailure>,
        ) -> Answer<api::Step<api::BillLocation>> {
            Err(no_such_export("resume-bill"))
        }

        pub async fn parse_bill(
            _: &PaymentPlugin,
            _: &mut Store<HostState>,
            _: &[api::BillFile],
        ) -> Answer<Vec<api::BillEntry>> {
            Err(no_such_export("parse-bill"))
        }
    };
}

pub(super) mod v0_2_0;
pub(super) mod v0_3_0;
pub(super) mod v0_4_0;

/// Calls the export `$func` of whichever contract version `$guest` is (every version's module
/// has the same function, in host types), so the rest of the runtime names no version.
macro_rules! call_guest {
    ($guest:expr, $store:expr, $func:ident $(, $arg:expr)*) => {
        match $guest {
            $crate::runtime::bindings::Guest::V0_2(g) => {
                $crate::runtime::bindings::v0_2_0::$func(g, $store $(, $arg)*).await
            }
            $crate::runtime::bindings::Guest::V0_3(g) => {
                $crate::runtime::bindings::v0_3_0::$func(g, $store $(, $arg)*).await
            }
            $crate::runtime::bindings::Guest::V0_4(g) => {
                $crate::runtime::bindings::v0_4_0::$func(g, $store $(, $arg)*).await
            }
        }
    };
}
pub(super) use call_guest;

/// The contract versions this host loads, newest first (`[wit] version` in a manifest).
pub const VERSIONS: &[&str] = &[v0_4_0::VERSION, v0_3_0::VERSION, v0_2_0::VERSION];

/// The contract version a component exports (`payhost:payment/plugin@<version>`), newest first,
/// for a component given without a manifest.
pub fn exported_version(component: &Component, engine: &Engine) -> Option<&'static str> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    VERSIONS
        .iter()
        .find(|v| exports.contains(&format!("payhost:payment/plugin@{v}")))
        .copied()
}

/// A linked component of one contract version, ready to instantiate.
pub enum Pre {
    V0_2(v0_2_0::PaymentPluginPre<HostState>),
    V0_3(v0_3_0::PaymentPluginPre<HostState>),
    V0_4(v0_4_0::PaymentPluginPre<HostState>),
}

/// One instance's exports, of the version its [`Pre`] was.
pub enum Guest {
    V0_2(v0_2_0::PaymentPlugin),
    V0_3(v0_3_0::PaymentPlugin),
    V0_4(v0_4_0::PaymentPlugin),
}

impl Guest {
    /// Whether its contract has refunds, close and bills (0.4.0).
    pub fn has_0_4_exports(&self) -> bool {
        matches!(self, Guest::V0_4(_))
    }
}

impl Pre {
    /// Checks that the component exports `payhost:payment/plugin@<version>` with its functions.
    pub fn new(version: &str, pre: InstancePre<HostState>) -> anyhow::Result<Pre> {
        let what = |e: wasmtime::Error| {
            anyhow::anyhow!("the component does not export payhost:payment/plugin@{version}: {e:#}")
        };
        match version {
            v0_4_0::VERSION => Ok(Pre::V0_4(v0_4_0::PaymentPluginPre::new(pre).map_err(what)?)),
            v0_3_0::VERSION => Ok(Pre::V0_3(v0_3_0::PaymentPluginPre::new(pre).map_err(what)?)),
            v0_2_0::VERSION => Ok(Pre::V0_2(v0_2_0::PaymentPluginPre::new(pre).map_err(what)?)),
            other => anyhow::bail!(
                "contract version {other} is not supported; this host loads {}",
                VERSIONS.join(", ")
            ),
        }
    }

    pub fn version(&self) -> &'static str {
        match self {
            Pre::V0_2(_) => v0_2_0::VERSION,
            Pre::V0_3(_) => v0_3_0::VERSION,
            Pre::V0_4(_) => v0_4_0::VERSION,
        }
    }

    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Guest> {
        Ok(match self {
            Pre::V0_2(p) => Guest::V0_2(p.instantiate_async(store).await?),
            Pre::V0_3(p) => Guest::V0_3(p.instantiate_async(store).await?),
            Pre::V0_4(p) => Guest::V0_4(p.instantiate_async(store).await?),
        })
    }
}
