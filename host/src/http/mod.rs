//! The HTTP server: the shop API (`/v1`), Alipay's return and notify endpoints (`/alipay`), the
//! admin page (`/admin`), `/healthz` and `/metrics`. hyper 1 with graceful shutdown: on SIGTERM or
//! SIGINT the listener closes and in-flight requests finish.

pub mod admin;

use crate::service::{masked_settings, ApiError, App, CreatePayment};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;

/// Largest notification body Alipay sends is a few KiB; anything above this is refused (413).
pub const MAX_NOTIFY_BODY: usize = 64 * 1024;
/// API bodies carry PEM keys at most.
pub const MAX_API_BODY: usize = 256 * 1024;

pub fn text(status: u16, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())))
        .expect("valid response")
}

pub fn html(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("x-frame-options", "DENY")
        .header("content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; form-action 'self' http: https:")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

pub fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

pub fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(302)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

pub fn error(e: &ApiError) -> Response<Body> {
    json(
        e.status,
        &serde_json::json!({"error": {"code": e.code, "field": e.field, "message": e.message}}),
    )
}

/// Reads the body up to `limit` bytes; a larger one is a 413.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                413,
                "body_too_large",
                format!("the request body is larger than {limit} bytes"),
            ))
        }
        Err(e) => Err(ApiError::new(
            400,
            "bad_body",
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// Constant-time check of `Authorization: Bearer <api_token>`.
fn authorized(app: &App, req: &Request<Incoming>) -> bool {
    let Some(value) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    let expected = app.config.api_token.as_bytes();
    let given = token.trim().as_bytes();
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Routes one request. Never panics on input; every error is an answer.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (route, response) = route(&app, remote, req).await;
    app.metrics.request(route, response.status().as_u16());
    tracing::debug!(%method, path = %path, status = response.status().as_u16(), "request");
    response
}

async fn route(
    app: &Arc<App>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let segs = segments(&path);
    match (&method, segs.as_slice()) {
        (&Method::GET, ["healthz"]) => ("healthz", healthz(app).await),
        (&Method::GET, ["metrics"]) => {
            let pending = app.store.pending_webhooks().unwrap_or(0);
            (
                "metrics",
                text(200, app.metrics.render(&app.runtime.stats, pending)),
            )
        }
        (_, ["v1", ..]) => {
            if !authorized(app, &req) {
                return (
                    "v1",
                    error(&ApiError::new(
                        401,
                        "unauthorized",
                        "missing or wrong bearer token (Authorization: Bearer <api_token>)",
                    )),
                );
            }
            match (&method, &segs[1..]) {
                (&Method::POST, ["merchants", id, "payments"]) => (
                    "v1_create_payment",
                    into_response(create_payment(app, id, req).await),
                ),
                (&Method::GET, ["merchants", id, "payments", no]) => (
                    "v1_get_payment",
                    into_response(get_payment(app, id, &percent_decode(no)).await),
                ),
                (&Method::GET, ["merchants", id, "notifications"]) => (
                    "v1_notifications",
                    into_response(list_notifications(app, id, &req)),
                ),
                (&Method::GET, ["merchants", id, "channels"]) => {
                    ("v1_channels", into_response(channels(app, id, &req).await))
                }
                (&Method::PUT, ["merchants", id]) => (
                    "v1_put_merchant",
                    into_response(put_merchant(app, id, req).await),
                ),
                (&Method::GET, ["merchants", id]) => {
                    ("v1_get_merchant", into_response(get_merchant(app, id)))
                }
                _ => (
                    "v1",
                    error(&ApiError::new(
                        404,
                        "not_found",
                        format!("no route {method} {path}"),
                    )),
                ),
            }
        }
        (&Method::POST, ["alipay", id, "notify"]) => {
            ("alipay_notify", notify(app, id, remote, req).await)
        }
        (&Method::GET, ["alipay", id, "return"]) => {
            ("alipay_return", alipay_return(app, id, &req).await)
        }
        (_, ["admin", ..]) => ("admin", admin::handle(app, req).await),
        (_, ["sandbox", ..]) if app.sandbox.is_some() => {
            let sandbox = app.sandbox.clone().expect("checked");
            ("sandbox", sandbox.handle(req).await)
        }
        (_, ["shop", ..]) if app.demo.is_some() => {
            let shop = app.demo.clone().expect("checked");
            ("shop", shop.handle(app, req).await)
        }
        (&Method::GET, []) => ("root", redirect("/admin")),
        _ => (
            "other",
            error(&ApiError::new(
                404,
                "not_found",
                format!("no route {method} {path}"),
            )),
        ),
    }
}

fn into_response(r: Result<Response<Body>, ApiError>) -> Response<Body> {
    r.unwrap_or_else(|e| error(&e))
}

async fn healthz(app: &App) -> Response<Body> {
    match app.store.pending_webhooks() {
        Ok(_) => text(200, "ok\n"),
        Err(e) => text(503, format!("store unavailable: {e}\n")),
    }
}

async fn create_payment(
    app: &Arc<App>,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let request: CreatePayment = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the body is not the expected JSON object: {e}"),
        )
    })?;
    let (status, created) = app.create_payment(id, request).await?;
    Ok(json(
        status,
        &serde_json::to_value(created).expect("serialisable"),
    ))
}

async fn get_payment(
    app: &Arc<App>,
    id: &str,
    out_trade_no: &str,
) -> Result<Response<Body>, ApiError> {
    app.merchant(id)?;
    let p = app
        .store
        .payment(id, out_trade_no)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::field(
                404,
                "unknown_payment",
                "out_trade_no",
                format!("no payment {out_trade_no:?}"),
            )
        })?;
    let notifications = app
        .store
        .notifications_for(id, out_trade_no)
        .map_err(ApiError::internal)?;
    Ok(json(
        200,
        &serde_json::json!({
            "out_trade_no": p.out_trade_no,
            "status": p.status,
            "total_fee": p.total_fee(),
            "subject": p.subject,
            "seller_email": p.seller,
            "trade_no": p.trade_no,
            "buyer_email": p.buyer_email,
            "paid_at": p.paid_at,
            "review": p.review,
            "created_at": p.created_at,
            "notifications": notifications.iter().map(notification_json).collect::<Vec<_>>(),
        }),
    ))
}

fn notification_json(n: &crate::store::NotificationRecord) -> serde_json::Value {
    serde_json::json!({
        "id": n.raw_id,
        "received_at": n.received_at,
        "notify_id": n.notify_id,
        "out_trade_no": n.out_trade_no,
        "trade_status": n.trade_status,
        "outcome": n.outcome,
        "detail": n.detail,
    })
}

/// `GET /v1/merchants/{id}/notifications?limit=N`: the latest notifications as received, newest
/// first, with what processing concluded (including the ones never verified).
fn list_notifications(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    app.merchant(id)?;
    let limit = match req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "limit")
            .map(|(_, v)| v.into_owned())
    }) {
        None => 50,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "limit",
                    "limit: must be a whole number from 1 to 1000",
                ))
            }
        },
    };
    let list = app
        .store
        .recent_notifications(Some(id), limit)
        .map_err(ApiError::internal)?;
    Ok(json(
        200,
        &serde_json::json!({
            "notifications": list.iter().map(notification_json).collect::<Vec<_>>(),
        }),
    ))
}

async fn channels(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let merchant = app.merchant(id)?;
    let out_user = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "out_user")
            .map(|(_, v)| v.into_owned())
    });
    let policy = app.merchant_policy(&merchant);
    let mut session = app.runtime.session().await?;
    let list = session
        .list_channels(
            &policy,
            &crate::runtime::pairs(merchant.plugin.clone()),
            out_user.as_deref(),
        )
        .await?
        .map_err(|e| {
            crate::service::upstream_error(
                502,
                "gateway_error",
                "the pay-channel query failed",
                &crate::runtime::plugin::describe_plugin_error(&e),
            )
        })?;
    Ok(json(
        200,
        &serde_json::json!({
            "channels": list.channels.iter().map(|c| serde_json::json!({
                "name": c.name, "cashier_code": c.cashier_code, "parent": c.parent
            })).collect::<Vec<_>>(),
            "last_used": list.last_used,
        }),
    ))
}

fn secret_names(app: &App) -> Vec<String> {
    app.runtime
        .info
        .settings
        .iter()
        .filter(|f| f.secret)
        .map(|f| f.name.clone())
        .collect()
}

async fn put_merchant(
    app: &Arc<App>,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if !crate::config::valid_merchant_id(id) {
        return Err(ApiError::field(
            400,
            "invalid_request",
            "id",
            "the merchant id must be 1 to 64 letters, digits, '_' or '-'",
        ));
    }
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let raw: crate::config::RawMerchant = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the body is not a merchant settings object: {e}"),
        )
    })?;
    let mut problems = Vec::new();
    // Key files named through the API are refused: the API takes PEM text.
    if raw.private_key_file.is_some() || raw.alipay_public_key_file.is_some() {
        problems.push(
            "private_key_file: the API takes the PEM text in private_key / alipay_public_key"
                .to_owned(),
        );
    }
    let settings =
        crate::config::merchant_settings(id, &raw, std::path::Path::new("."), &mut problems);
    if !problems.is_empty() {
        return Ok(json(
            400,
            &serde_json::json!({"error": {"code": "invalid_settings", "field": null, "message": problems.join("; ")},
                "fields": problems}),
        ));
    }
    match app.configure_merchant(id, settings).await {
        Ok(stored) => Ok(json(200, &masked_settings(&stored, &secret_names(app)))),
        Err(fields) => {
            let first = fields.first().map(|f| f.field.clone());
            Ok(json(
                400,
                &serde_json::json!({
                    "error": {"code": "invalid_settings", "field": first,
                              "message": fields.iter().map(|f| format!("{}: {}", f.field, f.reason)).collect::<Vec<_>>().join("; ")},
                    "fields": fields.iter().map(|f| serde_json::json!({"field": f.field, "reason": f.reason})).collect::<Vec<_>>(),
                }),
            ))
        }
    }
}

fn get_merchant(app: &Arc<App>, id: &str) -> Result<Response<Body>, ApiError> {
    let m = app.merchant(id)?;
    Ok(json(200, &masked_settings(&m, &secret_names(app))))
}

async fn notify(
    app: &Arc<App>,
    id: &str,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let retry = app.runtime.info.notify_retry.clone();
    let body = match read_body(req.into_body(), MAX_NOTIFY_BODY).await {
        Ok(b) => b,
        Err(e) => {
            app.metrics.notify("refused_body");
            return text(e.status, retry);
        }
    };
    let outcome = app
        .handle_notify(id, Some(&remote.ip().to_string()), &body)
        .await;
    text(outcome.status, outcome.reply)
}

async fn alipay_return(app: &Arc<App>, id: &str, req: &Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
    match app.handle_return(id, &query).await {
        Ok(location) => redirect(&location),
        Err(e) => html(
            e.status,
            admin::page(
                "支付结果无法确认 Payment result not confirmed",
                &format!(
                    "<div class=\"card err\"><h1>支付结果无法确认</h1><p>This return could not be verified, so nothing was changed. \
                     If you paid, the shop will still see the payment once Alipay confirms it.</p><p class=\"muted\">{}</p></div>",
                    admin::esc(&e.message)
                ),
            ),
        ),
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (up to 30 s).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(app, remote, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all requests finished"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("gave up waiting for in-flight requests after 30 s"),
    }
    Ok(())
}

/// The status text of a code, for error pages.
pub fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}
