//! The component's side of the WIT contract: converts between WIT records and the model, and
//! sends the protocol's HTTP requests through `wasi:http/outgoing-handler`.

wit_bindgen::generate!({
    world: "payment-plugin",
    path: "../wit/v0.1.0",
    with: {
        "wasi:http/types@0.2.12": wasip2::http::types,
        "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
    },
});

use crate::connector::{self, HttpRequest, HttpResponse, Transport, TransportError};
use crate::model;
use exports::payhost::payment::plugin::Guest;
use payhost::payment::types as wit;

struct Component;
export!(Component);

/// Largest response body the plugin reads; the protocol's answers are a few KiB.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 10_000_000_000;

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

fn plugin_error(e: model::PluginError) -> wit::PluginError {
    use model::PluginError as E;
    match e {
        E::InvalidSettings(v) => {
            wit::PluginError::InvalidSettings(v.into_iter().map(field_error).collect())
        }
        E::InvalidOrder(f) => wit::PluginError::InvalidOrder(field_error(f)),
        E::Gateway(g) => wit::PluginError::Gateway(wit::GatewayError {
            code: g.code,
            sub_code: g.sub_code,
            msg: g.msg,
            detail: g.detail,
        }),
        E::BadSignature(m) => wit::PluginError::BadSignature(m),
        E::NotifyNotConfirmed(m) => wit::PluginError::NotifyNotConfirmed(m),
        E::Transport(m) => wit::PluginError::Transport(m),
        E::Timeout(m) => wit::PluginError::Timeout(m),
        E::Malformed(m) => wit::PluginError::Malformed(m),
    }
}

fn notification_out(n: model::Notification) -> wit::Notification {
    wit::Notification {
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

/// A request id unique per partner: UTC seconds plus 48 random bits.
fn new_request_id() -> String {
    let now = wasip2::clocks::wall_clock::now();
    let random = wasip2::random::random::get_random_bytes(6);
    let mut id = now.seconds.to_string();
    for b in random {
        id.push_str(&format!("{b:02x}"));
    }
    id
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
                })
                .collect(),
            notify_ack: info.notify_ack,
            notify_retry: info.notify_retry,
        }
    }

    fn validate_settings(settings: Vec<wit::Pair>) -> Result<Vec<wit::Pair>, Vec<wit::FieldError>> {
        connector::validate_settings(&pairs_in(settings))
            .map(pairs_out)
            .map_err(|v| v.into_iter().map(field_error).collect())
    }

    fn start_payment(
        settings: Vec<wit::Pair>,
        order: wit::PaymentRequest,
    ) -> Result<wit::PaymentStarted, wit::PluginError> {
        let order = model::PaymentRequest {
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
        };
        let started = connector::start_payment(
            &pairs_in(settings),
            &order,
            &new_request_id(),
            &mut WasiHttp,
        )
        .map_err(plugin_error)?;
        Ok(wit::PaymentStarted {
            redirect: wit::Redirect {
                url: started.redirect.url,
                method: method_out(started.redirect.method),
                action: started.redirect.action,
                fields: pairs_out(started.redirect.fields),
            },
            token: started.token,
            request_id: started.request_id,
            total_fee: started.total_fee,
            seller: started.seller,
        })
    }

    fn verify_return(
        settings: Vec<wit::Pair>,
        query: Vec<wit::Pair>,
    ) -> Result<wit::VerifiedReturn, wit::PluginError> {
        let r = connector::verify_return(&pairs_in(settings), &pairs_in(query))
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
        settings: Vec<wit::Pair>,
        form: Vec<wit::Pair>,
    ) -> Result<wit::Notification, wit::PluginError> {
        connector::verify_notification(&pairs_in(settings), &pairs_in(form), &mut WasiHttp)
            .map(notification_out)
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
        settings: Vec<wit::Pair>,
        out_user: Option<String>,
    ) -> Result<wit::ChannelList, wit::PluginError> {
        let list =
            connector::list_channels(&pairs_in(settings), out_user.as_deref(), &mut WasiHttp)
                .map_err(plugin_error)?;
        Ok(wit::ChannelList {
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
        })
    }
}

/// The transport of the component: one blocking `wasi:http` request at a time.
struct WasiHttp;

impl Transport for WasiHttp {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        send_wasi(request)
    }
}

fn failed(what: impl std::fmt::Display) -> TransportError {
    TransportError::Failed(what.to_string())
}

fn send_wasi(request: &HttpRequest) -> Result<HttpResponse, TransportError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    let (scheme, rest) = if let Some(r) = request.url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = request.url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(failed(format!("unsupported URL {}", request.url)));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..split];
    let path = match &rest[split..] {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };

    let headers = Fields::new();
    if let Some(ct) = request.content_type {
        headers
            .set("content-type", &[ct.as_bytes().to_vec()])
            .map_err(|_| failed("content-type header refused"))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        model::HttpMethod::Get => Method::Get,
        model::HttpMethod::Post => Method::Post,
    };
    outgoing
        .set_method(&method)
        .map_err(|_| failed("method refused"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|_| failed("scheme refused"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|_| failed(format!("authority {authority} refused")))?;
    outgoing
        .set_path_with_query(Some(&path))
        .map_err(|_| failed("path refused"))?;
    let body = outgoing
        .body()
        .map_err(|_| failed("request body unavailable"))?;

    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(FIRST_BYTE_TIMEOUT_NS));

    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(map_error_code)?;
    // A refused request closes the body stream: the response future then says why.
    let mut write_error = None;
    {
        let stream = body
            .write()
            .map_err(|_| failed("request body stream unavailable"))?;
        for chunk in request.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                write_error = Some("writing the request body failed".to_owned());
                break;
            }
        }
    }
    if write_error.is_none() {
        if let Err(code) = OutgoingBody::finish(body, None) {
            write_error = Some(format!(
                "finishing the request body: {}",
                error_code_name(&code)
            ));
        }
    } else {
        drop(body);
    }

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(map_error_code(code)),
        Some(Err(())) => return Err(failed("response already taken")),
        None => return Err(failed("response not ready")),
    };
    if let Some(e) = write_error {
        return Err(failed(e));
    }
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|_| failed("response body unavailable"))?;
    let mut buf = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|_| failed("response stream unavailable"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    buf.extend_from_slice(&chunk);
                    if buf.len() > MAX_RESPONSE_BYTES {
                        return Err(failed("response larger than 1 MiB"));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let detail = e.to_debug_string();
                    return Err(match wasip2::http::types::http_error_code(&e) {
                        Some(code) => map_error_code(code),
                        None => failed(format!("reading the response: {detail}")),
                    });
                }
            }
        }
    }
    Ok(HttpResponse { status, body: buf })
}

fn map_error_code(code: wasip2::http::types::ErrorCode) -> TransportError {
    use wasip2::http::types::ErrorCode as C;
    match code {
        C::ConnectionTimeout
        | C::ConnectionReadTimeout
        | C::ConnectionWriteTimeout
        | C::HttpResponseTimeout => TransportError::Timeout(error_code_name(&code).to_owned()),
        C::HttpRequestDenied => TransportError::Failed(
            "the host denied the request (host not in the plugin's allowed outbound hosts)".into(),
        ),
        other => TransportError::Failed(error_code_name(&other).to_owned()),
    }
}

/// A short name for a `wasi:http` error code (the derived Debug output costs the component KiBs).
fn error_code_name(code: &wasip2::http::types::ErrorCode) -> &'static str {
    use wasip2::http::types::ErrorCode as C;
    match code {
        C::DnsTimeout => "DNS timeout",
        C::DnsError(_) => "DNS error",
        C::DestinationNotFound => "destination not found",
        C::DestinationUnavailable => "destination unavailable",
        C::DestinationIpProhibited => "destination IP prohibited",
        C::DestinationIpUnroutable => "destination IP unroutable",
        C::ConnectionRefused => "connection refused",
        C::ConnectionTerminated => "connection terminated",
        C::ConnectionTimeout => "connection timeout",
        C::ConnectionReadTimeout => "read timeout",
        C::ConnectionWriteTimeout => "write timeout",
        C::ConnectionLimitReached => "connection limit reached",
        C::TlsProtocolError => "TLS protocol error",
        C::TlsCertificateError => "TLS certificate error",
        C::TlsAlertReceived(_) => "TLS alert received",
        C::HttpRequestDenied => "request denied",
        C::HttpResponseIncomplete => "response incomplete",
        C::HttpResponseTimeout => "response timeout",
        C::HttpProtocolError => "HTTP protocol error",
        _ => "HTTP error",
    }
}
