//! The component's side of the WIT contract (`payhost:payment@0.4.0`): converts between WIT
//! records and the model. It performs no I/O: flows hand their requests to the host.

wit_bindgen::generate!({
    world: "payment-plugin",
    path: "../wit/v0.4.0",
});

use crate::connector;
use crate::flow::{HttpResponse, Pending, SendFailure, Step};
use crate::model;
use exports::payhost::payment::plugin::Guest;
use payhost::payment::types as wit;

struct Component;
export!(Component);

/// `form-pairs`: key/value pairs in order, form-encoded (0.3.0 and 0.4.0 pass settings, forms and queries so).
fn form_in(encoded: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded.as_bytes())
        .into_owned()
        .collect()
}

fn pairs_in(p: Vec<wit::Pair>) -> Vec<(String, String)> {
    p.into_iter().map(|p| (p.key, p.value)).collect()
}

fn pairs_out(p: Vec<(String, String)>) -> Vec<wit::Pair> {
    p.into_iter()
        .map(|(key, value)| wit::Pair { key, value })
        .collect()
}

fn field_error(e: model::FieldError) -> wit::FieldError {
    wit::FieldError {
        field: e.field,
        reason: e.reason,
    }
}

/// At most `max` characters of a text the provider chose (an error's code, message or detail):
/// an embedder logs these, and a 200 KB `<msg>` would be 200 KB in each log line. Cut with `…`.
fn bounded(s: String, max: usize) -> String {
    match model::cut(&s, max) {
        std::borrow::Cow::Borrowed(_) => s,
        cut => cut.into_owned(),
    }
}

/// The bounds of a gateway error's parts, and of any other error's message.
const CODE_CHARS: usize = 64;
const MSG_CHARS: usize = 512;
const DETAIL_CHARS: usize = 1024;

fn plugin_error(e: model::PluginError) -> wit::PluginError {
    use model::PluginError as E;
    let b = |m: String| bounded(m, DETAIL_CHARS);
    match e {
        E::InvalidSettings(v) => {
            wit::PluginError::InvalidSettings(v.into_iter().map(field_error).collect())
        }
        E::InvalidOrder(f) => wit::PluginError::InvalidOrder(field_error(f)),
        E::Gateway(g) => {
            // The hint is the component's own words, read from the whole error: never cut.
            let hint = g.hint();
            wit::PluginError::Gateway(wit::GatewayError {
                detail: format!("{} {hint}", bounded(g.detail, DETAIL_CHARS))
                    .trim()
                    .to_owned(),
                code: bounded(g.code, CODE_CHARS),
                sub_code: bounded(g.sub_code, CODE_CHARS),
                msg: bounded(g.msg, MSG_CHARS),
            })
        }
        E::BadSignature(m) => wit::PluginError::BadSignature(b(m)),
        E::NotifyNotConfirmed(m) => wit::PluginError::NotifyNotConfirmed(b(m)),
        E::Transport(m) => wit::PluginError::Transport(b(m)),
        E::Timeout(m) => wit::PluginError::Timeout(b(m)),
        E::Malformed(m) => wit::PluginError::Malformed(b(m)),
    }
}

fn event_out(e: model::TradeEvent) -> wit::TradeEvent {
    use model::TradeEvent as E;
    match e {
        E::Waiting => wit::TradeEvent::Waiting,
        E::Paid => wit::TradeEvent::Paid,
        E::Finished => wit::TradeEvent::Finished,
        E::Closed => wit::TradeEvent::Closed,
        E::Refunded => wit::TradeEvent::Refunded,
        E::PartiallyRefunded => wit::TradeEvent::PartiallyRefunded,
    }
}

fn notification_out(n: model::Notification) -> wit::Notification {
    let event = event_out(n.event());
    let refund_fee = n.refund_fee();
    let refund = n.refund().map(|r| wit::RefundReport {
        request_no: r.request_no,
        amount: r.amount,
        refunded_total: r.refunded_total,
        succeeded: r.succeeded,
        detail: r.detail,
        time: r.time,
    });
    wit::Notification {
        event,
        refund_fee,
        refund,
        out_trade_no: n.out_trade_no,
        trade_no: n.trade_no,
        trade_status: n.trade_status,
        total_fee: n.total_fee,
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

fn notification_in(n: wit::Notification) -> model::Notification {
    // `event`, `refund_fee` and `refund` are derived from the fields; the model recomputes them.
    model::Notification {
        out_trade_no: n.out_trade_no,
        trade_no: n.trade_no,
        trade_status: n.trade_status,
        total_fee: n.total_fee,
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
        fields: pairs_in(n.fields),
        reply: n.reply,
    }
}

fn method_out(m: model::HttpMethod) -> wit::HttpMethod {
    match m {
        model::HttpMethod::Get => wit::HttpMethod::Get,
        model::HttpMethod::Post => wit::HttpMethod::Post,
    }
}

fn field_kind(k: model::FieldKind) -> wit::FieldKind {
    match k {
        model::FieldKind::Text => wit::FieldKind::Text,
        model::FieldKind::Secret => wit::FieldKind::Secret,
        model::FieldKind::Select => wit::FieldKind::Select,
        model::FieldKind::Pem => wit::FieldKind::Pem,
        model::FieldKind::Url => wit::FieldKind::Url,
    }
}

fn pending_out(p: Pending) -> wit::Pending {
    wit::Pending {
        request: wit::OutgoingRequest {
            method: method_out(p.request.method),
            url: p.request.url,
            headers: pairs_out(p.request.headers),
            body: p.request.body,
        },
        // Continuations are ASCII (a tag line and form-encoded fields, `flow.rs`): a WIT string
        // crosses into dynamic languages as one copy where `list<u8>` went byte by byte.
        continuation: String::from_utf8(p.continuation).expect("continuations are ASCII"),
    }
}

/// The longest provider answer read: Alipay's answers (a create, a query, a refund, a bill's
/// address) are a few KiB. A longer one is malformed before it is parsed, so a host
/// passing up to the documented 1 MiB never makes the component parse it into a trap under its
/// 16 MiB memory.
const MAX_ANSWER: usize = 256 << 10;

fn response_in(
    r: Result<wit::IncomingResponse, wit::SendFailure>,
) -> Result<HttpResponse, SendFailure> {
    match r {
        Ok(r) if r.body.len() > MAX_ANSWER => Err(SendFailure::TooLarge(format!(
            "the answer is {} bytes, more than the {} KiB any of Alipay's answers needs",
            r.body.len(),
            MAX_ANSWER >> 10
        ))),
        Ok(r) => Ok(HttpResponse {
            status: r.status,
            headers: pairs_in(r.headers),
            body: r.body,
        }),
        Err(wit::SendFailure::Timeout(m)) => Err(SendFailure::Timeout(m)),
        Err(wit::SendFailure::Refused(m)) => Err(SendFailure::Refused(m)),
        Err(wit::SendFailure::Failed(m)) => Err(SendFailure::Failed(m)),
    }
}

fn redirect_out(r: model::Redirect) -> wit::Redirect {
    wit::Redirect {
        url: r.url,
        method: method_out(r.method),
        action: r.action,
        fields: pairs_out(r.fields),
    }
}

fn started_out(started: model::PaymentStarted) -> wit::PaymentStarted {
    wit::PaymentStarted {
        redirect: redirect_out(started.redirect),
        token: started.token,
        request_id: started.request_id,
        total_fee: started.total_fee,
        seller: started.seller,
        order_string: started.order_string,
    }
}

fn payment_step(s: Step<model::PaymentStarted>) -> wit::PaymentStep {
    match s {
        Step::Send(p) => wit::PaymentStep::Send(pending_out(p)),
        Step::Done(d) => wit::PaymentStep::Done(started_out(d)),
    }
}

fn notification_step(s: Step<model::Notification>) -> wit::NotificationStep {
    match s {
        Step::Send(p) => wit::NotificationStep::Send(pending_out(p)),
        Step::Done(d) => wit::NotificationStep::Done(notification_out(d)),
    }
}

fn query_step(s: Step<model::TradeQuery>) -> wit::QueryStep {
    match s {
        Step::Send(p) => wit::QueryStep::Send(pending_out(p)),
        Step::Done(q) => wit::QueryStep::Done(wit::TradeQuery {
            found: q.found,
            out_trade_no: q.out_trade_no,
            trade_no: q.trade_no,
            trade_status: q.trade_status,
            event: event_out(q.event),
            total_fee: q.total_fee,
            refund_fee: q.refund_fee,
            seller_email: q.seller_email,
            seller_id: q.seller_id,
            buyer_email: q.buyer_email,
            gmt_payment: q.gmt_payment,
            signature_verified: q.signature_verified,
            fields: pairs_out(q.fields),
            notification: q.notification.map(notification_out),
        }),
    }
}

fn refund_step(s: Step<model::RefundState>) -> wit::RefundStep {
    match s {
        Step::Send(p) => wit::RefundStep::Send(pending_out(p)),
        Step::Done(r) => wit::RefundStep::Done(wit::RefundState {
            request_no: r.request_no,
            status: match r.status {
                model::RefundStatus::Pending => wit::RefundStatus::Pending,
                model::RefundStatus::Succeeded => wit::RefundStatus::Succeeded,
                model::RefundStatus::Failed => wit::RefundStatus::Failed,
            },
            confirm: r.confirm.map(redirect_out),
            refunded_total: r.refunded_total,
            fund_change: r.fund_change,
            detail: r.detail,
        }),
    }
}

fn close_step(s: Step<model::TradeClosed>) -> wit::CloseStep {
    match s {
        Step::Send(p) => wit::CloseStep::Send(pending_out(p)),
        Step::Done(c) => wit::CloseStep::Done(wit::TradeClosed {
            at_provider: c.at_provider,
            trade_no: c.trade_no,
            detail: c.detail,
        }),
    }
}

fn bill_step(s: Step<model::BillLocation>) -> wit::BillStep {
    match s {
        Step::Send(p) => wit::BillStep::Send(pending_out(p)),
        Step::Done(b) => wit::BillStep::Done(wit::BillLocation {
            url: b.url,
            empty: b.empty,
        }),
    }
}

fn product_in(p: wit::PaymentProduct) -> model::Product {
    match p {
        wit::PaymentProduct::Wap => model::Product::Wap,
        wit::PaymentProduct::Pc => model::Product::Pc,
        wit::PaymentProduct::App => model::Product::App,
    }
}

fn channels_step(s: Step<model::ChannelList>) -> wit::ChannelsStep {
    match s {
        Step::Send(p) => wit::ChannelsStep::Send(pending_out(p)),
        Step::Done(list) => wit::ChannelsStep::Done(wit::ChannelList {
            channels: list
                .channels
                .into_iter()
                .map(|c| wit::PayChannel {
                    name: c.name,
                    cashier_code: c.cashier_code,
                    parent: c.parent,
                })
                .collect(),
            last_used: list.last_used,
        }),
    }
}

impl Guest for Component {
    fn describe() -> wit::PluginInfo {
        let info = connector::describe();
        wit::PluginInfo {
            id: info.id,
            name: info.name,
            version: info.version,
            provider: info.provider,
            settings: info
                .settings
                .into_iter()
                .map(|f| wit::SettingField {
                    name: f.name,
                    label_zh: f.label_zh,
                    label_en: f.label_en,
                    kind: field_kind(f.kind),
                    required: f.required,
                    secret: f.secret,
                    rule: f.rule,
                    options: f
                        .options
                        .into_iter()
                        .map(|o| wit::SelectOption {
                            value: o.value,
                            label_zh: o.label_zh,
                            label_en: o.label_en,
                        })
                        .collect(),
                    default_value: f.default_value,
                    shown_when: f.shown_when.map(|w| wit::ShownWhen {
                        setting: w.setting,
                        values: w.values,
                    }),
                })
                .collect(),
            notify_ack: info.notify_ack,
            notify_retry: info.notify_retry,
        }
    }

    fn validate_settings(settings: String) -> Result<Vec<wit::Pair>, Vec<wit::FieldError>> {
        connector::validate_settings(&form_in(&settings))
            .map(pairs_out)
            .map_err(|v| v.into_iter().map(field_error).collect())
    }

    fn start_payment(
        settings: String,
        order: wit::PaymentRequest,
    ) -> Result<wit::PaymentStep, wit::PluginError> {
        let order = model::PaymentRequest {
            product: product_in(order.product),
            out_trade_no: order.out_trade_no,
            subject: order.subject,
            total_fee: order.total_fee,
            seller: order.seller,
            return_url: order.return_url,
            notify_url: order.notify_url,
            merchant_url: order.merchant_url,
            pay_expire: order.pay_expire,
            out_user: order.out_user,
            cashier_code: order.cashier_code,
            request_id: order.request_id,
        };
        connector::start_payment(&form_in(&settings), &order)
            .map(payment_step)
            .map_err(plugin_error)
    }

    fn resume_payment(
        settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::PaymentStep, wit::PluginError> {
        connector::resume_payment(
            &form_in(&settings),
            continuation.as_bytes(),
            response_in(response),
        )
        .map(payment_step)
        .map_err(plugin_error)
    }

    fn verify_return(
        settings: String,
        query: String,
    ) -> Result<wit::VerifiedReturn, wit::PluginError> {
        let r = connector::verify_return(&form_in(&settings), &form_in(&query))
            .map_err(plugin_error)?;
        Ok(wit::VerifiedReturn {
            out_trade_no: r.out_trade_no,
            trade_no: r.trade_no,
            result: r.result,
            request_token: r.request_token,
            raw: pairs_out(r.raw),
        })
    }

    fn verify_notification(
        settings: String,
        form: String,
    ) -> Result<wit::NotificationStep, wit::PluginError> {
        connector::verify_notification(&form_in(&settings), &form_in(&form))
            .map(notification_step)
            .map_err(plugin_error)
    }

    fn resume_notification(
        _settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::NotificationStep, wit::PluginError> {
        // `verify-notification` validated the settings; reading the provider's answer needs none
        // of them, so they are not decoded again (percent-decoding was about a tenth of the
        // component's time per notification; docs/PERFORMANCE.md, "Round 3, session 6").
        connector::resume_notification(&[], continuation.as_bytes(), response_in(response))
            .map(notification_step)
            .map_err(plugin_error)
    }

    fn match_order(
        notification: wit::Notification,
        order: wit::OrderExpectation,
    ) -> Result<(), Vec<wit::FieldError>> {
        let order = model::OrderExpectation {
            out_trade_no: order.out_trade_no,
            total_fee: order.total_fee,
            seller: order.seller,
        };
        connector::match_order(&notification_in(notification), &order)
            .map_err(|v| v.into_iter().map(field_error).collect())
    }

    fn list_channels(
        settings: String,
        out_user: Option<String>,
    ) -> Result<wit::ChannelsStep, wit::PluginError> {
        connector::list_channels(&form_in(&settings), out_user.as_deref())
            .map(channels_step)
            .map_err(plugin_error)
    }

    fn resume_channels(
        settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::ChannelsStep, wit::PluginError> {
        connector::resume_channels(
            &form_in(&settings),
            continuation.as_bytes(),
            response_in(response),
        )
        .map(channels_step)
        .map_err(plugin_error)
    }

    fn query_trade(
        settings: String,
        out_trade_no: String,
    ) -> Result<wit::QueryStep, wit::PluginError> {
        connector::query_trade(&form_in(&settings), &out_trade_no)
            .map(query_step)
            .map_err(plugin_error)
    }

    fn resume_query(
        settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::QueryStep, wit::PluginError> {
        connector::resume_query(
            &form_in(&settings),
            continuation.as_bytes(),
            response_in(response),
        )
        .map(query_step)
        .map_err(plugin_error)
    }

    fn verify_app_result(
        settings: String,
        result: String,
    ) -> Result<wit::AppResult, wit::PluginError> {
        let r = connector::verify_app_result(&form_in(&settings), &result).map_err(plugin_error)?;
        Ok(wit::AppResult {
            result_status: r.result_status,
            memo: r.memo,
            partner: r.partner,
            out_trade_no: r.out_trade_no,
            total_fee: r.total_fee,
            seller_id: r.seller_id,
            fields: pairs_out(r.fields),
        })
    }

    fn start_refund(
        settings: String,
        refund: wit::RefundRequest,
    ) -> Result<wit::RefundStep, wit::PluginError> {
        let refund = model::RefundRequest {
            out_trade_no: refund.out_trade_no,
            trade_no: refund.trade_no,
            amount: refund.amount,
            total_fee: refund.total_fee,
            reason: refund.reason,
            request_no: refund.request_no,
            request_time: refund.request_time,
            notify_url: refund.notify_url,
        };
        connector::start_refund(&form_in(&settings), &refund)
            .map(refund_step)
            .map_err(plugin_error)
    }

    fn query_refund(
        settings: String,
        out_trade_no: String,
        request_no: String,
    ) -> Result<wit::RefundStep, wit::PluginError> {
        connector::query_refund(&form_in(&settings), &out_trade_no, &request_no)
            .map(refund_step)
            .map_err(plugin_error)
    }

    fn resume_refund(
        settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::RefundStep, wit::PluginError> {
        connector::resume_refund(
            &form_in(&settings),
            continuation.as_bytes(),
            response_in(response),
        )
        .map(refund_step)
        .map_err(plugin_error)
    }

    fn close_trade(
        settings: String,
        out_trade_no: String,
    ) -> Result<wit::CloseStep, wit::PluginError> {
        connector::close_trade(&form_in(&settings), &out_trade_no)
            .map(close_step)
            .map_err(plugin_error)
    }

    fn resume_close(
        settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::CloseStep, wit::PluginError> {
        connector::resume_close(
            &form_in(&settings),
            continuation.as_bytes(),
            response_in(response),
        )
        .map(close_step)
        .map_err(plugin_error)
    }

    fn locate_bill(settings: String, date: String) -> Result<wit::BillStep, wit::PluginError> {
        connector::locate_bill(&form_in(&settings), &date)
            .map(bill_step)
            .map_err(plugin_error)
    }

    fn resume_bill(
        settings: String,
        continuation: String,
        response: Result<wit::IncomingResponse, wit::SendFailure>,
    ) -> Result<wit::BillStep, wit::PluginError> {
        connector::resume_bill(
            &form_in(&settings),
            continuation.as_bytes(),
            response_in(response),
        )
        .map(bill_step)
        .map_err(plugin_error)
    }

    fn parse_bill(files: Vec<wit::BillFile>) -> Result<Vec<wit::BillEntry>, wit::PluginError> {
        let files: Vec<model::BillFile> = files
            .into_iter()
            .map(|f| model::BillFile {
                name: f.name,
                content: f.content,
            })
            .collect();
        let entries = connector::parse_bill(&files).map_err(plugin_error)?;
        Ok(entries
            .into_iter()
            .map(|e| wit::BillEntry {
                kind: match e.kind {
                    model::BillEntryKind::Payment => wit::BillEntryKind::Payment,
                    model::BillEntryKind::Refund => wit::BillEntryKind::Refund,
                    model::BillEntryKind::Other => wit::BillEntryKind::Other,
                },
                out_trade_no: e.out_trade_no,
                trade_no: e.trade_no,
                amount: e.amount,
                request_no: e.request_no,
                finished_at: e.finished_at,
            })
            .collect())
    }
}
