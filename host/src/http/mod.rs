//! The HTTP server: the shop API (`/v1`), the provider's return and notify endpoints (`/return`,
//! `/notify`; `/alipay/…` aliases), the
//! admin page (`/admin`), `/healthz`, `/readyz` and `/metrics`. hyper 1 with graceful shutdown: on SIGTERM or
//! SIGINT the listener closes and in-flight requests finish.

pub mod admin;
pub mod ledger;
pub mod merchant_removal;
pub mod mount;

use crate::notify::NotifyOutcome;
use crate::service::{masked_settings, ApiError, App, CreatePayment};
use bytes::Bytes;
use http::{Method, Request, Response};
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

/// A provider's notification is a few KiB; anything above this is refused (413).
pub const MAX_NOTIFY_BODY: usize = 32 * 1024;
/// The buyer's return carries a dozen short fields in its query; a longer one is refused (414).
pub const MAX_RETURN_QUERY: usize = 8 * 1024;

/// How long a request body may take to arrive (`[limits] body_read_timeout_ms`; set by [`serve`]).
static BODY_DEADLINE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10_000);

fn body_deadline() -> Duration {
    Duration::from_millis(BODY_DEADLINE_MS.load(std::sync::atomic::Ordering::Relaxed))
}
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

/// Reads the body up to `limit` bytes within the body deadline; a larger one is a 413, a late one
/// a 408 (and the connection is closed, the rest of the body unread).
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(body_deadline(), Limited::new(body, limit).collect()).await;
    let Ok(read) = read else {
        return Err(ApiError::new(
            408,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ms",
                body_deadline().as_millis()
            ),
        ));
    };
    match read {
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

/// Who a `/v1` request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator's `api_token`: all of `/v1`.
    Operator,
    /// A per-merchant token: that merchant's payments, notifications and channels, and its own
    /// provider settings (read, and replaced within the slot the operator made: see
    /// [`put_merchant`]).
    Merchant(String),
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether `token` is the operator's `api_token` (constant time).
pub fn is_operator_token(app: &App, token: &str) -> bool {
    let expected = app.config.api_token.expose().as_bytes();
    let given = token.as_bytes();
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// The caller of a `/v1` request, from `Authorization: Bearer <token>`: the operator token, or a
/// live per-merchant token (looked up by its SHA-256).
async fn caller(app: &App, req: &Request<Incoming>) -> Option<Caller> {
    let token = bearer(req)?;
    if is_operator_token(app, token) {
        return Some(Caller::Operator);
    }
    if !token.starts_with("phm_") {
        return None;
    }
    app.store
        .token_merchant(&crate::auth::token_hash(token))
        .await
        .ok()
        .flatten()
        .map(Caller::Merchant)
}

/// The client's address: the peer, or behind a trusted proxy the rightmost `X-Forwarded-For`
/// entry that is not a trusted proxy (`proxy::client_address`).
pub fn client_ip(app: &App, remote: SocketAddr, req: &Request<Incoming>) -> std::net::IpAddr {
    crate::proxy::client_address(
        &app.config.trusted_proxies,
        remote.ip(),
        req.headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// The per-address limits' key of a request (its client's IPv4 address or IPv6 /64).
fn limit_key(app: &App, remote: SocketAddr, req: &Request<Incoming>) -> std::net::IpAddr {
    crate::proxy::limit_key(client_ip(app, remote, req))
}

/// A path whose merchant id segment breaks the id rule (`config::valid_merchant_id`) names no
/// merchant: it is answered 404 before anything else (no limiter, store or token lookup).
fn names_an_invalid_merchant(segs: &[&str]) -> bool {
    let id = match segs {
        ["notify" | "return", id, ..]
        | ["alipay", id, ..]
        | ["v1", "merchants", id, ..]
        | ["admin", "merchants", id, ..] => id,
        _ => return false,
    };
    !crate::config::valid_merchant_id(id)
}

/// Whether `/v1/{rest}` is a route at all (any caller): an unknown one is a 404 for everybody,
/// so a token cannot learn which routes exist from a 403.
fn v1_route_exists(method: &Method, rest: &[&str]) -> bool {
    matches!(
        (method, rest),
        (&Method::POST, ["merchants", _, "payments"])
            | (&Method::GET, ["merchants", _, "payments", _])
            | (&Method::POST, ["merchants", _, "payments", _, "sync"])
            | (&Method::POST, ["merchants", _, "payments", _, "app-result"])
            | (&Method::GET, ["merchants", _, "notifications"])
            | (&Method::GET, ["merchants", _, "channels"])
            | (&Method::PUT, ["merchants", _])
            | (&Method::GET, ["merchants", _])
            | (&Method::DELETE, ["merchants", _])
            | (&Method::POST, ["merchants", _, "tokens"])
            | (&Method::GET, ["merchants", _, "tokens"])
            | (&Method::DELETE, ["merchants", _, "tokens", _])
            | (&Method::GET, ["payments" | "payments.csv" | "merchants"])
            | (
                &Method::POST,
                ["merchants", _, "payments", _, "refunds" | "close"]
            )
            | (&Method::GET, ["merchants", _, "reconciliation"])
    )
}

fn not_found(method: &Method, path: &str) -> Response<Body> {
    error(&ApiError::new(
        404,
        "not_found",
        format!("no route {method} {}", admin::esc(path)),
    ))
}

pub fn too_many(message: &str, retry_after_s: u64) -> Response<Body> {
    let mut r = error(&ApiError::new(429, "rate_limited", message));
    r.headers_mut()
        .insert("retry-after", http::HeaderValue::from(retry_after_s));
    r
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
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
    if names_an_invalid_merchant(&segs) {
        return ("other", not_found(&method, &path));
    }
    match (&method, segs.as_slice()) {
        (&Method::GET, ["healthz"]) => ("healthz", healthz(app).await),
        (&Method::GET, ["readyz"]) => ("readyz", readyz(app).await),
        (&Method::GET, ["metrics"]) => {
            if !bearer(&req).is_some_and(|t| is_operator_token(app, t)) {
                return (
                    "metrics",
                    error(&ApiError::new(
                        401,
                        "unauthorized",
                        "/metrics needs Authorization: Bearer <api_token> (or serve it on metrics_listen)",
                    )),
                );
            }
            ("metrics", metrics(app).await)
        }
        (_, ["v1", ..]) => {
            if !app.guards.api_ip.allow(&limit_key(app, remote, &req)) {
                app.metrics.rate_limited.inc();
                return ("v1", too_many("too many API requests from this address", 1));
            }
            if !v1_route_exists(&method, &segs[1..]) {
                return ("v1", not_found(&method, &path));
            }
            let Some(who) = caller(app, &req).await else {
                return (
                    "v1",
                    error(&ApiError::new(
                        401,
                        "unauthorized",
                        "missing or wrong bearer token (Authorization: Bearer <api_token or merchant token>)",
                    )),
                );
            };
            if let Caller::Merchant(own) = &who {
                // A merchant token reaches its own payments, notifications, channels and
                // settings only.
                let allowed = match (&method, &segs[1..]) {
                    (&Method::GET | &Method::PUT, ["merchants", id])
                    | (&Method::POST, ["merchants", id, "payments"])
                    | (&Method::GET, ["merchants", id, "payments", _])
                    | (&Method::POST, ["merchants", id, "payments", _, "sync"])
                    | (&Method::POST, ["merchants", id, "payments", _, "app-result"])
                    | (&Method::GET, ["merchants", id, "notifications"])
                    | (&Method::GET, ["merchants", id, "channels"])
                    | (&Method::POST, ["merchants", id, "payments", _, "refunds" | "close"])
                    | (&Method::GET, ["merchants", id, "reconciliation"]) => id == own,
                    // The ledger: filtered to its own merchant (another one named is a 403).
                    (&Method::GET, ["payments" | "payments.csv"]) => true,
                    _ => false,
                };
                if !allowed {
                    return (
                        "v1",
                        error(&ApiError::new(
                            403,
                            "forbidden",
                            "this token belongs to another merchant or may not use this route",
                        )),
                    );
                }
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
                (&Method::POST, ["merchants", id, "payments", no, "sync"]) => (
                    "v1_sync_payment",
                    into_response(
                        app.sync_payment(id, &percent_decode(no))
                            .await
                            .map(|r| json(200, &serde_json::json!(r))),
                    ),
                ),
                (&Method::POST, ["merchants", id, "payments", no, "app-result"]) => (
                    "v1_app_result",
                    into_response(app_result(app, id, &percent_decode(no), req).await),
                ),
                (&Method::GET, ["merchants", id, "notifications"]) => (
                    "v1_notifications",
                    into_response(list_notifications(app, id, &req).await),
                ),
                (&Method::GET, ["payments"]) => {
                    ("v1_payments", ledger::list_payments(app, &who, &req).await)
                }
                (&Method::GET, ["payments.csv"]) => {
                    ("v1_payments_csv", ledger::payments_csv(&who, &req))
                }
                (&Method::GET, ["merchants"]) => (
                    "v1_merchants",
                    into_response(ledger::list_merchants(app).await),
                ),
                (&Method::POST, ["merchants", id, "payments", no, "refunds"]) => (
                    "v1_refunds",
                    into_response(
                        ledger::create_refund(app, &who, id, &percent_decode(no), req).await,
                    ),
                ),
                (&Method::POST, ["merchants", id, "payments", no, "close"]) => (
                    "v1_close",
                    into_response(ledger::close(app, id, &percent_decode(no)).await),
                ),
                (&Method::GET, ["merchants", id, "reconciliation"]) => (
                    "v1_reconciliation",
                    into_response(ledger::reconciliation(app, id, &req).await),
                ),
                (&Method::GET, ["merchants", id, "channels"]) => {
                    ("v1_channels", into_response(channels(app, id, &req).await))
                }
                (&Method::PUT, ["merchants", id]) => (
                    "v1_put_merchant",
                    into_response(put_merchant(app, &who, id, req).await),
                ),
                (&Method::GET, ["merchants", id]) => (
                    "v1_get_merchant",
                    into_response(get_merchant(app, id).await),
                ),
                (&Method::DELETE, ["merchants", id]) => (
                    "v1_delete_merchant",
                    into_response(
                        merchant_removal::delete_merchant(app, id, req.uri().query()).await,
                    ),
                ),
                (&Method::POST, ["merchants", id, "tokens"]) => {
                    ("v1_tokens", into_response(create_token(app, id, req).await))
                }
                (&Method::GET, ["merchants", id, "tokens"]) => {
                    ("v1_tokens", into_response(list_tokens(app, id).await))
                }
                (&Method::DELETE, ["merchants", id, "tokens", tid]) => {
                    ("v1_tokens", into_response(revoke_token(app, id, tid).await))
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
        // `/alipay/{id}/…`: the paths of older versions, still registered with the provider
        // (counted under their old metric labels, so existing dashboards keep their series).
        (&Method::POST, ["notify", id] | ["alipay", id, "notify"]) => {
            let label = if segs[0] == "notify" {
                "notify"
            } else {
                "alipay_notify"
            };
            (label, notify(app, id, remote, req).await)
        }
        (&Method::GET, ["return", id] | ["alipay", id, "return"]) => {
            let label = if segs[0] == "return" {
                "return"
            } else {
                "alipay_return"
            };
            if !app.guards.return_ip.allow(&limit_key(app, remote, &req)) {
                app.metrics.rate_limited.inc();
                return (label, too_many("too many returns from this address", 1));
            }
            (label, buyer_return(app, id, &req).await)
        }
        (_, ["admin", ..]) => {
            let ip = client_ip(app, remote, &req);
            if !app.guards.admin_ip.allow(&crate::proxy::limit_key(ip)) {
                app.metrics.rate_limited.inc();
                return (
                    "admin",
                    too_many("too many admin requests from this address", 1),
                );
            }
            ("admin", admin::handle(app, ip, remote, req).await)
        }
        // `payhost demo` opens on its shop (a mount); a production host on its admin page.
        (&Method::GET, []) => (
            "root",
            redirect(app.mounts.root_redirect().unwrap_or("/admin")),
        ),
        // What payhost does not serve itself may belong to a mount (the demo's sandbox and shop).
        _ => match app.mounts.find(&path) {
            Some(mount) => ("mount", (mount.handler)(req).await),
            None => (
                "other",
                error(&ApiError::new(
                    404,
                    "not_found",
                    format!("no route {method} {path}"),
                )),
            ),
        },
    }
}

fn into_response(r: Result<Response<Body>, ApiError>) -> Response<Body> {
    r.unwrap_or_else(|e| error(&e))
}

/// The Prometheus text of `/metrics`.
pub async fn metrics(app: &App) -> Response<Body> {
    let pending = app.store.pending_webhooks().await.unwrap_or(0);
    let stats: Vec<_> = app.plugins.iter().map(|p| &p.stats).collect();
    text(200, app.metrics.render(&stats, pending))
}

/// Liveness: the process serves requests. It does not ask the database, so an outage of a
/// shared PostgreSQL does not make an orchestrator restart every replica (that is `/readyz`).
async fn healthz(_app: &App) -> Response<Body> {
    text(200, "ok\n")
}

/// Readiness, for load balancers: the database answers and the component is loaded (an `App`
/// exists only once its component is compiled and instantiable). 503 otherwise, so the balancer
/// sends requests to the other replicas.
async fn readyz(app: &App) -> Response<Body> {
    match app.store.ready().await {
        Ok(()) => text(200, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "not ready: the database does not answer");
            text(503, "not ready: the database does not answer\n")
        }
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
    if let Some(url) = request.return_url.as_deref().map(str::trim) {
        if let Ok(m) = app.merchant(id).await {
            if !m.return_url_allowed(url) {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "return_url",
                    "return_url: must be on one of the merchant's shop_origins",
                ));
            }
        }
    }
    // The cashier's cancel link sends the buyer there: the shop's own pages only.
    if let Some(url) = request.merchant_url.as_deref().map(str::trim) {
        if let Ok(m) = app.merchant(id).await {
            if !url.is_empty() && !m.return_url_allowed(url) {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "merchant_url",
                    "merchant_url: must be on one of the merchant's shop_origins",
                ));
            }
        }
    }
    let (status, created) = app.create_payment(id, request).await?;
    if let Some(url) = &created.pay_url {
        crate::ledger::note(app, id, &created.out_trade_no, "redirect", Some(url)).await;
    }
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
    app.merchant(id).await?;
    let p = app
        .store
        .payment(id, out_trade_no)
        .await
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
        .await
        .map_err(ApiError::internal)?;
    let refunded_fen = app
        .store
        .ledger_payment(id, out_trade_no)
        .await
        .map_err(ApiError::internal)?
        .map_or(0, |l| l.refunded_fen);
    let refunds = app
        .store
        .refunds_for(id, out_trade_no)
        .await
        .map_err(ApiError::internal)?;
    let timeline = crate::ledger::timeline(app, &p).await?;
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
            "paid_at": crate::ledger::paid_at_utc(&p),
            "review": p.review,
            "created_at": p.created_at,
            "refunded_amount": format!("{}.{:02}", refunded_fen / 100, refunded_fen % 100),
            "refunds": refunds.iter().map(crate::refunds::refund_json).collect::<Vec<_>>(),
            "timeline": timeline,
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
async fn list_notifications(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    app.merchant(id).await?;
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
        .await
        .map_err(ApiError::internal)?;
    Ok(json(
        200,
        &serde_json::json!({
            "notifications": list.iter().map(notification_json).collect::<Vec<_>>(),
        }),
    ))
}

/// `POST …/payments/{no}/app-result` with `{"result": "<the SDK's result string>"}`.
async fn app_result(
    app: &Arc<App>,
    id: &str,
    no: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, "invalid_json", format!("the body is not JSON: {e}")))?;
    let result = v["result"].as_str().ok_or_else(|| {
        ApiError::field(
            400,
            "invalid_request",
            "result",
            "result: is required (the SDK's result string)",
        )
    })?;
    Ok(json(200, &app.app_result(id, no, result).await?))
}

async fn channels(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let merchant = app.merchant(id).await?;
    let out_user = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "out_user")
            .map(|(_, v)| v.into_owned())
    });
    let policy = app.merchant_policy(&merchant);
    let mut session = app.plugin_for(&merchant)?.session().await?;
    let list = session
        .list_channels(&policy, &merchant.settings, out_user.as_deref())
        .await?
        .map_err(|e| {
            crate::service::upstream_error(
                502,
                "gateway_error",
                "the pay-channel query failed",
                &e.to_string(),
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

/// The masked settings of a merchant, by its component's schema.
fn merchant_view(app: &App, m: &crate::config::MerchantSettings) -> serde_json::Value {
    masked_settings(m, app.plugins.for_merchant(m).map(|p| &p.info))
}

/// `PUT /v1/merchants/{id}`. The operator sets anything. A merchant's own token replaces its
/// provider settings (validated by the component; secrets are never shown back) and its webhook
/// URL and secret, inside the slot the operator made: the plugin and the shop origins stay the
/// operator's, and the webhook URL must be on one of those origins.
async fn put_merchant(
    app: &Arc<App>,
    who: &Caller,
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
    let mut raw: crate::config::RawMerchant = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the body is not a merchant settings object: {e}"),
        )
    })?;
    // Webhooks are signed with the merchant's own secret: left out, the one it has (made with
    // the merchant) is kept.
    if raw.shop_webhook_secret.is_none() {
        raw.shop_webhook_secret = app
            .store
            .merchant(id)
            .await
            .map_err(ApiError::internal)?
            .and_then(|m| m.shop_webhook_secret)
            .or_else(|| Some(crate::onboarding::new_shop_secret()));
    }
    let mut problems = Vec::new();
    // No file is opened for the API: `<name>_file` is refused, the PEM text goes in `<name>`.
    let mut settings = crate::config::merchant_settings(id, &raw, None, &mut problems);
    if let Caller::Merchant(_) = who {
        bind_to_slot(&app.merchant(id).await?, &raw, &mut settings)?;
    }
    if !problems.is_empty() {
        return Ok(json(
            400,
            &serde_json::json!({"error": {"code": "invalid_settings", "field": null, "message": problems.join("; ")},
                "fields": problems}),
        ));
    }
    match app.configure_merchant(id, settings).await {
        Ok(stored) => Ok(json(200, &merchant_view(app, &stored))),
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

/// A merchant token's settings stay inside its slot: the operator's plugin and shop origins
/// (sending others is refused, 403), and a webhook URL on one of those origins.
fn bind_to_slot(
    slot: &crate::config::MerchantSettings,
    raw: &crate::config::RawMerchant,
    settings: &mut crate::config::MerchantSettings,
) -> Result<(), ApiError> {
    if raw
        .plugin
        .as_deref()
        .map(str::trim)
        .is_some_and(|p| !p.is_empty() && p != slot.plugin_id)
    {
        return Err(ApiError::field(
            403,
            "forbidden",
            "plugin",
            format!(
                "plugin: set by the operator ({:?}); a merchant token cannot change it",
                slot.plugin_id
            ),
        ));
    }
    if raw.shop_origins.is_some() && settings.shop_origins != slot.shop_origins {
        return Err(ApiError::field(
            403,
            "forbidden",
            "shop_origins",
            "shop_origins: bound by the operator; a merchant token cannot change them",
        ));
    }
    settings.plugin_id = slot.plugin_id.clone();
    settings.shop_origins = slot.shop_origins.clone();
    if let Some(url) = &settings.shop_webhook_url {
        if slot.shop_origins.is_empty() || !slot.return_url_allowed(url) {
            return Err(ApiError::field(
                403,
                "forbidden",
                "shop_webhook_url",
                format!(
                    "shop_webhook_url: must be on the shop origin the operator bound to this merchant ({})",
                    if slot.shop_origins.is_empty() {
                        "none: ask the operator to bind one with payhost merchant add --shop-origin".to_owned()
                    } else {
                        slot.shop_origins.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// `POST /v1/merchants/{id}/tokens` `{"label"?}`: a new per-merchant token, shown once.
async fn create_token(
    app: &Arc<App>,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    app.merchant(id).await?;
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let label = if body.is_empty() {
        String::new()
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("label").and_then(|l| l.as_str()).map(str::to_owned))
            .unwrap_or_default()
    };
    let (tid, token) = new_merchant_token(app, id, &label).await?;
    Ok(json(
        201,
        &serde_json::json!({"id": tid, "merchant_id": id, "token": token, "label": label}),
    ))
}

/// Creates and stores (hashed) a per-merchant token; returns its id and value.
pub async fn new_merchant_token(
    app: &App,
    id: &str,
    label: &str,
) -> Result<(i64, String), ApiError> {
    let token = crate::auth::new_merchant_token();
    let label: String = label.trim().chars().take(100).collect();
    let tid = app
        .store
        .create_token(id, &crate::auth::token_hash(&token), &label)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(merchant = id, token_id = tid, "merchant API token created");
    Ok((tid, token))
}

async fn list_tokens(app: &Arc<App>, id: &str) -> Result<Response<Body>, ApiError> {
    app.merchant(id).await?;
    let list = app
        .store
        .tokens(Some(id))
        .await
        .map_err(ApiError::internal)?;
    Ok(json(
        200,
        &serde_json::json!({"tokens": list.iter().map(|t| serde_json::json!({
            "id": t.id, "label": t.label, "created_at": t.created_at, "revoked_at": t.revoked_at
        })).collect::<Vec<_>>()}),
    ))
}

async fn revoke_token(app: &Arc<App>, id: &str, tid: &str) -> Result<Response<Body>, ApiError> {
    let tid: i64 = tid
        .parse()
        .map_err(|_| ApiError::new(404, "unknown_token", "no such token"))?;
    if app
        .store
        .revoke_token(tid, Some(id))
        .await
        .map_err(ApiError::internal)?
    {
        tracing::info!(merchant = id, token_id = tid, "merchant API token revoked");
        Ok(json(200, &serde_json::json!({"id": tid, "revoked": true})))
    } else {
        Err(ApiError::new(404, "unknown_token", "no such live token"))
    }
}

async fn get_merchant(app: &Arc<App>, id: &str) -> Result<Response<Body>, ApiError> {
    let m = app.merchant(id).await?;
    Ok(json(200, &merchant_view(app, &m)))
}

/// A notification: admitted, its body read, processed; the answer (status, reply word) is the
/// notify pipeline's (`notify`).
async fn notify(
    app: &Arc<App>,
    id: &str,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let ip = client_ip(app, remote, &req);
    let answer = match app.notify_admit(id, ip).await {
        Err(refused) => refused,
        Ok(merchant) => match read_body(req.into_body(), MAX_NOTIFY_BODY).await {
            Err(e) => app.notify_body_refused(&merchant, e.status),
            Ok(body) => {
                app.notify_for(id, merchant, Some(ip.to_string()), body)
                    .await
            }
        },
    };
    let mut r = text(answer.status(), answer.reply().to_owned());
    if answer.outcome == NotifyOutcome::RateLimited {
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
    }
    r
}

async fn buyer_return(app: &Arc<App>, id: &str, req: &Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
    if query.len() > MAX_RETURN_QUERY {
        return text(414, "the return query is too long\n");
    }
    match app.handle_return(id, &query).await {
        Ok(location) => redirect(&location),
        Err(e) => html(
            e.status,
            admin::page(
                "支付结果无法确认 Payment result not confirmed",
                &format!(
                    "<div class=\"card err\"><h1>支付结果无法确认</h1><p>This return could not be verified, so nothing was changed. \
                     If you paid, the shop will still see the payment once the payment provider confirms it.</p><p class=\"muted\">{}</p></div>",
                    admin::esc(&e.message)
                ),
            ),
        ),
    }
}

/// A connection's socket with an idle deadline: when no request is being handled and nothing
/// was read or written for `idle`, the next read fails and hyper closes the connection (the
/// keep-alive idle timeout; a request that is being handled has its own body deadline).
struct GuardedIo {
    inner: tokio::net::TcpStream,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    busy: Arc<std::sync::atomic::AtomicUsize>,
}

impl GuardedIo {
    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }
}

impl tokio::io::AsyncRead for GuardedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.busy.load(std::sync::atomic::Ordering::Acquire) == 0
                    && self.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl tokio::io::AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request as in flight on its connection while it lives.
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Busy {
        counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (up to 30 s).
///
/// Each connection has a header deadline (`[limits] header_read_timeout_ms`), a body deadline
/// (`body_read_timeout_ms`, in [`read_body`]) and an idle deadline between requests
/// (`keep_alive_idle_ms`); at most `max_connections` are open at once: past that, new
/// connections wait in the listen backlog until one closes (logged).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = app.config.limits.clone();
    BODY_DEADLINE_MS.store(
        limits.body_read_timeout_ms,
        std::sync::atomic::Ordering::Relaxed,
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut last_full_log: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                app.metrics.connections_refused.inc();
                if last_full_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: {} connections open; new connections wait until one closes ([limits] max_connections)",
                        limits.max_connections
                    );
                    last_full_log = Some(std::time::Instant::now());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
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
                let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let idle = Duration::from_millis(limits.keep_alive_idle_ms);
                let io = GuardedIo {
                    inner: stream,
                    idle,
                    deadline: Box::pin(tokio::time::sleep(idle)),
                    busy: busy.clone(),
                };
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    let guard = Busy::new(&busy);
                    async move {
                        let r = handle(app.clone(), remote, req).await;
                        drop(guard);
                        Ok::<_, Infallible>(ledger::streaming(&app, r))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
                    .serve_connection(TokioIo::new(io), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
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

/// Serves `GET /metrics` alone, without a token, on `metrics_listen` (an address only the
/// monitoring system reaches).
pub async fn serve_metrics(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let app = app.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(if req.uri().path() == "/metrics" {
                            metrics(&app).await
                        } else {
                            text(404, "only /metrics here\n")
                        })
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    Ok(())
}
