//! `payhost:payment@0.2.0`: the pure contract. The component imports nothing of its own; the host
//! sends every request a flow asks for. The generated types are converted here, both ways, into
//! the host's own (`runtime::plugin_api`).

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "payhost:payment/payment-plugin",
    exports: { default: async },
});

pub use payhost::payment::types;

use crate::runtime::plugin_api as api;

/// The oldest contract version these bindings load (`[wit] version` in a manifest).
pub const MIN_VERSION: &str = "0.2.0";

pub fn pairs_in(settings: &[(String, String)]) -> Vec<types::Pair> {
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
                    name: f.name,
                    label_zh: f.label_zh,
                    label_en: f.label_en,
                    kind: f.kind.into(),
                    required: f.required,
                    secret: f.secret,
                    rule: f.rule,
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

pub fn field_errors(v: Vec<types::FieldError>) -> Vec<api::FieldError> {
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

impl From<types::PaymentStarted> for api::PaymentStarted {
    fn from(s: types::PaymentStarted) -> Self {
        api::PaymentStarted {
            redirect: api::Redirect {
                url: s.redirect.url,
                method: match s.redirect.method {
                    types::HttpMethod::Get => api::HttpMethod::Get,
                    types::HttpMethod::Post => api::HttpMethod::Post,
                },
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
    fn from(n: types::Notification) -> Self {
        api::Notification {
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

/// Converts a call's answer (`Ok(v)` or the component's error) into the host's types.
pub fn answer<T, U: From<T>>(r: Result<T, types::PluginError>) -> Result<U, api::PluginError> {
    r.map(U::from).map_err(api::PluginError::from)
}
