//! The WIT glue (`payhost:payment@0.2.0`): converts between WIT records and [`crate::protocol`].

wit_bindgen::generate!({
    world: "payment-plugin",
    path: "../../wit/v0.2.0",
});

use crate::protocol::{self as p, Error};
use exports::payhost::payment::plugin::Guest;
use payhost::payment::types as wit;

struct TestPay;
export!(TestPay);

fn pairs_in(pairs: Vec<wit::Pair>) -> p::Pairs {
    pairs.into_iter().map(|p| (p.key, p.value)).collect()
}

fn pairs_out(pairs: p::Pairs) -> Vec<wit::Pair> {
    pairs
        .into_iter()
        .map(|(key, value)| wit::Pair { key, value })
        .collect()
}

fn field_error(e: p::FieldError) -> wit::FieldError {
    wit::FieldError {
        field: e.field,
        reason: e.reason,
    }
}

fn plugin_error(e: Error) -> wit::PluginError {
    match e {
        Error::InvalidSettings(v) => {
            wit::PluginError::InvalidSettings(v.into_iter().map(field_error).collect())
        }
        Error::InvalidOrder(f) => wit::PluginError::InvalidOrder(field_error(f)),
        Error::BadSignature(m) => wit::PluginError::BadSignature(m),
        Error::Malformed(m) => wit::PluginError::Malformed(m),
    }
}

fn unsupported(what: &str) -> wit::PluginError {
    plugin_error(p::unsupported(what))
}

fn kind(k: p::Kind) -> wit::FieldKind {
    match k {
        p::Kind::Text => wit::FieldKind::Text,
        p::Kind::Secret => wit::FieldKind::Secret,
        p::Kind::Select => wit::FieldKind::Select,
        p::Kind::Url => wit::FieldKind::Url,
    }
}

fn notification_out(n: p::Notice) -> wit::Notification {
    wit::Notification {
        out_trade_no: n.out_trade_no,
        trade_no: n.trade_no,
        trade_status: n.status,
        event: match n.event {
            p::Event::Waiting => wit::TradeEvent::Waiting,
            p::Event::Paid => wit::TradeEvent::Paid,
            p::Event::Closed => wit::TradeEvent::Closed,
        },
        total_fee: n.total_fee,
        refund_fee: None,
        seller_email: None,
        seller_id: Some(n.merchant_no),
        buyer_email: None,
        buyer_id: None,
        notify_id: n.notify_id,
        notify_time: n.notify_time,
        gmt_create: None,
        gmt_payment: None,
        gmt_close: None,
        paid: n.paid,
        fields: pairs_out(n.fields),
        reply: n.reply,
    }
}

impl Guest for TestPay {
    fn describe() -> wit::PluginInfo {
        wit::PluginInfo {
            id: p::ID.into(),
            name: p::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            provider: p::PROVIDER.into(),
            settings: p::SCHEMA
                .iter()
                .map(|f| wit::SettingField {
                    name: f.name.into(),
                    label_zh: f.label_zh.into(),
                    label_en: f.label_en.into(),
                    kind: kind(f.kind),
                    required: f.required,
                    secret: f.secret,
                    rule: f.rule.into(),
                    options: f
                        .options
                        .iter()
                        .map(|(value, zh, en)| wit::SelectOption {
                            value: (*value).into(),
                            label_zh: (*zh).into(),
                            label_en: (*en).into(),
                        })
                        .collect(),
                    default_value: f.default_value.map(Into::into),
                })
                .collect(),
            notify_ack: p::NOTIFY_ACK.into(),
            notify_retry: p::NOTIFY_RETRY.into(),
        }
    }

    fn validate_settings(settings: Vec<wit::Pair>) -> Result<Vec<wit::Pair>, Vec<wit::FieldError>> {
        p::validate_settings(&pairs_in(settings))
            .map(|(_, normalised)| pairs_out(normalised))
            .map_err(|v| v.into_iter().map(field_error).collect())
    }

    fn start_payment(
        settings: Vec<wit::Pair>,
        order: wit::PaymentRequest,
    ) -> Result<wit::PaymentStep, wit::PluginError> {
        let order = p::Order {
            app: matches!(order.product, wit::PaymentProduct::App),
            out_trade_no: order.out_trade_no,
            total_fee: order.total_fee,
            notify_url: order.notify_url,
            return_url: order.return_url,
            request_id: order.request_id,
        };
        let s = p::start_payment(&pairs_in(settings), &order).map_err(plugin_error)?;
        Ok(wit::PaymentStep::Done(wit::PaymentStarted {
            redirect: wit::Redirect {
                url: s.url,
                method: if s.post {
                    wit::HttpMethod::Post
                } else {
                    wit::HttpMethod::Get
                },
                action: s.action,
                fields: pairs_out(s.fields),
            },
            token: String::new(),
            request_id: s.request_id,
            total_fee: s.total_fee,
            seller: s.seller,
            order_string: None,
        }))
    }

    fn resume_payment(
        _: Vec<wit::Pair>,
        _: Vec<u8>,
        _: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::PaymentStep, wit::PluginError> {
        Err(unsupported(
            "resume-payment (start-payment asks for no request)",
        ))
    }

    fn verify_return(
        settings: Vec<wit::Pair>,
        query: Vec<wit::Pair>,
    ) -> Result<wit::VerifiedReturn, wit::PluginError> {
        let r = p::verify_return(&pairs_in(settings), &pairs_in(query)).map_err(plugin_error)?;
        Ok(wit::VerifiedReturn {
            out_trade_no: r.out_trade_no,
            trade_no: r.trade_no,
            result: r.status,
            request_token: String::new(),
            raw: pairs_out(r.raw),
        })
    }

    fn verify_notification(
        settings: Vec<wit::Pair>,
        form: Vec<wit::Pair>,
    ) -> Result<wit::NotificationStep, wit::PluginError> {
        p::verify_notification(&pairs_in(settings), &pairs_in(form))
            .map(|n| wit::NotificationStep::Done(notification_out(n)))
            .map_err(plugin_error)
    }

    fn resume_notification(
        _: Vec<wit::Pair>,
        _: Vec<u8>,
        _: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::NotificationStep, wit::PluginError> {
        Err(unsupported(
            "resume-notification (notifications need no confirmation call)",
        ))
    }

    fn match_order(
        notification: wit::Notification,
        order: wit::OrderExpectation,
    ) -> Result<(), Vec<wit::FieldError>> {
        let expected = p::Expectation {
            out_trade_no: &order.out_trade_no,
            total_fee: &order.total_fee,
            seller: &order.seller,
        };
        p::match_order(
            &notification.out_trade_no,
            &notification.total_fee,
            notification.seller_id.as_deref(),
            &expected,
        )
        .map_err(|v| v.into_iter().map(field_error).collect())
    }

    fn list_channels(
        _: Vec<wit::Pair>,
        _: Option<String>,
    ) -> Result<wit::ChannelsStep, wit::PluginError> {
        Err(unsupported("pay channel lists"))
    }

    fn resume_channels(
        _: Vec<wit::Pair>,
        _: Vec<u8>,
        _: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::ChannelsStep, wit::PluginError> {
        Err(unsupported("pay channel lists"))
    }

    fn query_trade(_: Vec<wit::Pair>, _: String) -> Result<wit::QueryStep, wit::PluginError> {
        Err(unsupported("trade queries"))
    }

    fn resume_query(
        _: Vec<wit::Pair>,
        _: Vec<u8>,
        _: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::QueryStep, wit::PluginError> {
        Err(unsupported("trade queries"))
    }

    fn verify_app_result(_: Vec<wit::Pair>, _: String) -> Result<wit::AppResult, wit::PluginError> {
        Err(unsupported("app payments (no app SDK results to verify)"))
    }
}
