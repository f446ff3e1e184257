//! The routing table: which handler answers a method and path. Every route payhost serves is
//! one row of [`ROUTES`]; a path in the table asked with another method is a 405 naming the
//! allowed ones (`Allow`), a path not in it a 404 (unless a mount owns it), both in the error
//! shape of [`super::error`]. The shop API's rows also say who may call them.

use super::body::{redirect, Body};
use super::caller::{self, limit_key, Caller};
use super::error::{error, method_not_allowed, not_found, too_many, with_allow, ApiError};
use super::{admin, api, probes, provider};
use crate::service::App;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// A route of the shop API (`/v1/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRoute {
    CreatePayment,
    GetPayment,
    SyncPayment,
    AppResult,
    Notifications,
    Channels,
    PutMerchant,
    GetMerchant,
    DeleteMerchant,
    CreateToken,
    ListTokens,
    RevokeToken,
    Payments,
    PaymentsCsv,
    RefundList,
    RefundListCsv,
    Merchants,
    Refund,
    AbandonRefund,
    Close,
    Reconciliation,
}

/// Who may call a shop API route besides the operator (whose token reaches all of `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The operator only.
    Operator,
    /// The merchant the path names, with its own token.
    OwnMerchant,
    /// Any merchant token: the answer is filtered to its merchant (the ledger).
    AnyMerchant,
}

/// What a row of the table leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Healthz,
    Readyz,
    Metrics,
    Notify,
    Return,
    Root,
    /// `/admin` and everything under it (the admin pages route their own methods).
    Admin,
    Api(ApiRoute, Scope),
}

/// One row: a method (`*`: any), a path pattern (`{name}`: one segment, captured; `**`: the
/// rest), what answers it and its label in the request metrics.
pub struct Row {
    pub method: &'static str,
    pub path: &'static [&'static str],
    pub target: Target,
    pub label: &'static str,
}

const fn row(
    method: &'static str,
    path: &'static [&'static str],
    target: Target,
    label: &'static str,
) -> Row {
    Row {
        method,
        path,
        target,
        label,
    }
}

use ApiRoute as A;
use Scope::{AnyMerchant, Operator, OwnMerchant};
use Target::Api;

/// Every route payhost serves itself.
pub static ROUTES: &[Row] = &[
    row("GET", &["healthz"], Target::Healthz, "healthz"),
    row("GET", &["readyz"], Target::Readyz, "readyz"),
    row("GET", &["metrics"], Target::Metrics, "metrics"),
    // `/alipay/{id}/…`: the paths of older versions, still registered with the provider
    // (counted under their old metric labels, so existing dashboards keep their series).
    row("POST", &["notify", "{id}"], Target::Notify, "notify"),
    row(
        "POST",
        &["alipay", "{id}", "notify"],
        Target::Notify,
        "alipay_notify",
    ),
    row("GET", &["return", "{id}"], Target::Return, "return"),
    row(
        "GET",
        &["alipay", "{id}", "return"],
        Target::Return,
        "alipay_return",
    ),
    // `payhost demo` opens on its shop (a mount); a production host on its admin page.
    row("GET", &[], Target::Root, "root"),
    row("*", &["admin", "**"], Target::Admin, "admin"),
    row(
        "POST",
        &["v1", "merchants", "{id}", "payments"],
        Api(A::CreatePayment, OwnMerchant),
        "v1_create_payment",
    ),
    row(
        "GET",
        &["v1", "merchants", "{id}", "payments", "{no}"],
        Api(A::GetPayment, OwnMerchant),
        "v1_get_payment",
    ),
    row(
        "POST",
        &["v1", "merchants", "{id}", "payments", "{no}", "sync"],
        Api(A::SyncPayment, OwnMerchant),
        "v1_sync_payment",
    ),
    row(
        "POST",
        &["v1", "merchants", "{id}", "payments", "{no}", "app-result"],
        Api(A::AppResult, OwnMerchant),
        "v1_app_result",
    ),
    row(
        "POST",
        &["v1", "merchants", "{id}", "payments", "{no}", "refunds"],
        Api(A::Refund, OwnMerchant),
        "v1_refunds",
    ),
    row(
        "POST",
        &[
            "v1",
            "merchants",
            "{id}",
            "payments",
            "{no}",
            "refunds",
            "{rid}",
            "abandon",
        ],
        Api(A::AbandonRefund, OwnMerchant),
        "v1_refund_abandon",
    ),
    row(
        "POST",
        &["v1", "merchants", "{id}", "payments", "{no}", "close"],
        Api(A::Close, OwnMerchant),
        "v1_close",
    ),
    row(
        "GET",
        &["v1", "merchants", "{id}", "notifications"],
        Api(A::Notifications, OwnMerchant),
        "v1_notifications",
    ),
    row(
        "GET",
        &["v1", "merchants", "{id}", "channels"],
        Api(A::Channels, OwnMerchant),
        "v1_channels",
    ),
    row(
        "GET",
        &["v1", "merchants", "{id}", "reconciliation"],
        Api(A::Reconciliation, OwnMerchant),
        "v1_reconciliation",
    ),
    row(
        "PUT",
        &["v1", "merchants", "{id}"],
        Api(A::PutMerchant, OwnMerchant),
        "v1_put_merchant",
    ),
    row(
        "GET",
        &["v1", "merchants", "{id}"],
        Api(A::GetMerchant, OwnMerchant),
        "v1_get_merchant",
    ),
    row(
        "DELETE",
        &["v1", "merchants", "{id}"],
        Api(A::DeleteMerchant, Operator),
        "v1_delete_merchant",
    ),
    row(
        "POST",
        &["v1", "merchants", "{id}", "tokens"],
        Api(A::CreateToken, Operator),
        "v1_tokens",
    ),
    row(
        "GET",
        &["v1", "merchants", "{id}", "tokens"],
        Api(A::ListTokens, Operator),
        "v1_tokens",
    ),
    row(
        "DELETE",
        &["v1", "merchants", "{id}", "tokens", "{tid}"],
        Api(A::RevokeToken, Operator),
        "v1_tokens",
    ),
    row(
        "GET",
        &["v1", "merchants"],
        Api(A::Merchants, Operator),
        "v1_merchants",
    ),
    row(
        "GET",
        &["v1", "payments"],
        Api(A::Payments, AnyMerchant),
        "v1_payments",
    ),
    row(
        "GET",
        &["v1", "payments.csv"],
        Api(A::PaymentsCsv, AnyMerchant),
        "v1_payments_csv",
    ),
    row(
        "GET",
        &["v1", "refunds"],
        Api(A::RefundList, AnyMerchant),
        "v1_refunds_list",
    ),
    row(
        "GET",
        &["v1", "refunds.csv"],
        Api(A::RefundListCsv, AnyMerchant),
        "v1_refunds_csv",
    ),
];

/// The segments a row's `{name}`s captured.
#[derive(Debug, Default)]
pub struct Params<'a>(Vec<(&'static str, &'a str)>);

impl<'a> Params<'a> {
    /// The raw segment captured as `{name}` (empty when the row has none).
    pub fn get(&self, name: &str) -> &'a str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v)
    }

    /// The segment captured as `{name}`, percent-decoded (an order number may hold any character).
    pub fn decoded(&self, name: &str) -> String {
        percent_decode(self.get(name))
    }
}

fn captures<'a>(pattern: &[&'static str], segs: &[&'a str]) -> Option<Params<'a>> {
    let mut params = Params::default();
    for (i, p) in pattern.iter().enumerate() {
        if *p == "**" {
            return Some(params);
        }
        let seg = segs.get(i)?;
        match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => params.0.push((name, seg)),
            None if p == seg => {}
            None => return None,
        }
    }
    (segs.len() == pattern.len()).then_some(params)
}

/// What the table says of a method and path.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'static Row, Params<'a>),
    /// The path is served, with these methods only.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

pub fn lookup<'a>(method: &Method, segs: &[&'a str]) -> Lookup<'a> {
    for r in ROUTES {
        if let Some(params) = captures(r.path, segs) {
            if r.method == "*" || r.method == method.as_str() {
                return Lookup::Found(r, params);
            }
        }
    }
    match allowed_methods(segs) {
        Some(allowed) => Lookup::WrongMethod(allowed),
        None => Lookup::NotFound,
    }
}

/// The methods a path is served with (`HEAD` wherever `GET` is, and `OPTIONS`); `None` when
/// payhost itself serves no such path.
pub fn allowed_methods(segs: &[&str]) -> Option<Vec<&'static str>> {
    let mut allowed = Vec::new();
    for r in ROUTES.iter().filter(|r| captures(r.path, segs).is_some()) {
        let methods = match r.method {
            "*" => vec!["GET", "HEAD", "POST"],
            "GET" => vec!["GET", "HEAD"],
            m => vec![m],
        };
        for m in methods {
            if !allowed.contains(&m) {
                allowed.push(m);
            }
        }
    }
    if allowed.is_empty() {
        return None;
    }
    allowed.push("OPTIONS");
    Some(allowed)
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} /{} ({})",
            self.method,
            self.path.join("/"),
            self.label
        )
    }
}

pub fn segments(path: &str) -> Vec<&str> {
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

/// [`names_an_invalid_merchant`] of the segments percent-decoded one by one, as the admin pages
/// read them: `/admin/%6derchants/..%2F..` names the merchant `../..`, and is a 404 as well.
fn decoded_names_an_invalid_merchant(path: &str, segs: &[&str]) -> bool {
    if !path.contains('%') {
        return false;
    }
    let decoded: Vec<String> = segs.iter().map(|s| percent_decode(s)).collect();
    let decoded: Vec<&str> = decoded.iter().map(String::as_str).collect();
    names_an_invalid_merchant(&decoded)
}

/// Whether a path to the admin pages or `/metrics` is written another way than payhost's own:
/// an empty segment (`//admin`), a trailing slash, or a percent-encoded letter, digit, `-`, `.`
/// or `_` (the admin decodes them: `/admin/%75sers` is `/admin/users`). Those paths are 404, so
/// a balancer's access list (`path_beg /admin`, `path /metrics`) reads every path to them as
/// payhost does and cannot be walked around. (`~` is left alone: the admin's own links encode it.)
fn walks_around_an_access_list(path: &str, segs: &[&str]) -> bool {
    if !matches!(segs.first(), Some(&"admin") | Some(&"metrics")) {
        return false;
    }
    if path.len() != segs.iter().map(|s| s.len() + 1).sum::<usize>() {
        return true; // not "/" + segments joined by "/"
    }
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    })
}

/// Routes one request. Never panics on input; every error is an answer.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (route, mut response) = route(&app, remote, req).await;
    // Every answer, not only the pages: a JSON body may show a token once or a merchant's
    // settings, and no answer of payhost's is meant to be cached or sniffed as another type.
    let headers = response.headers_mut();
    headers
        .entry(http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(http::HeaderValue::from_static("nosniff"));
    headers
        .entry(http::header::CACHE_CONTROL)
        .or_insert(http::HeaderValue::from_static("no-store"));
    app.metrics.request(route, response.status().as_u16());
    tracing::debug!(%method, path = %path, status = response.status().as_u16(), "request");
    response
}

async fn route(
    app: &Arc<App>,
    remote: SocketAddr,
    mut req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    // A body framed by a transfer coding other than `chunked` alone (`gzip, chunked`) would reach
    // the handlers still coded: 501 (RFC 9112 section 6.1), and the connection is closed, so
    // nothing after that body is read as a request of its own. First of all checks: any other
    // answer keeps the connection, and hyper would read on past that body.
    if let Some(coding) = unsupported_transfer_coding(&req) {
        let mut response = error(&ApiError::new(
            501,
            "not_implemented",
            format!(
                "Transfer-Encoding {coding:?} is not supported: send the body with Content-Length or Transfer-Encoding: chunked"
            ),
        ));
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return ("other", response);
    }
    // An HTTP/1.1 request names its host exactly once (RFC 9112 section 3.2), an absolute-form
    // target (`GET http://a/healthz`) too: anything else is refused before it is routed, as a
    // proxy would refuse it.
    let hosts = req.headers().get_all(http::header::HOST).iter().count();
    let needs_host = req.version() == http::Version::HTTP_11;
    if hosts > 1 || (hosts == 0 && needs_host) {
        let what = if hosts > 1 { "more than one" } else { "no" };
        return (
            "other",
            error(&ApiError::new(
                400,
                "bad_request",
                format!("the request has {what} Host header (HTTP/1.1 needs exactly one)"),
            )),
        );
    }
    // HEAD is served as GET: hyper answers the HEAD it read with the GET's head and no body.
    if req.method() == Method::HEAD {
        *req.method_mut() = Method::GET;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The one slip people make typing the admin's address: sent to it, not to a JSON 404.
    if path == "/admin/" && method == Method::GET {
        return ("admin", redirect("/admin"));
    }
    let segs = segments(&path);
    let walks_around = walks_around_an_access_list(&path, &segs);
    if walks_around
        || names_an_invalid_merchant(&segs)
        || decoded_names_an_invalid_merchant(&path, &segs)
    {
        // A merchant id mistyped into the admin's address gets the admin's own 404 page, within
        // the admin's request limit; a path spelled to get around a balancer's access list
        // (`//admin`, `/admin/%75sers`) gets the bare 404, nothing of the admin.
        if !walks_around && segs.first() == Some(&"admin") && method == Method::GET {
            let ip = caller::client_ip(app, remote, &req);
            if !app.guards.admin_ip.allow(&crate::proxy::limit_key(ip)) {
                app.metrics.rate_limited.inc();
                return ("other", admin::too_many_requests(app, &req));
            }
            return ("other", admin::path_not_found(app, &req));
        }
        // An API caller is told which segment no route takes.
        if !walks_around && segs.first() == Some(&"v1") {
            return (
                "other",
                error(&ApiError::field(
                    404,
                    "not_found",
                    "id",
                    format!(
                        "no route {method} {}: a merchant id is 1 to 64 letters, digits, '_' or '-'",
                        admin::esc(&path)
                    ),
                )),
            );
        }
        return ("other", not_found(&method, &path));
    }
    let api = segs.first() == Some(&"v1");
    // The API's per-address limit comes first: probing unknown routes counts too.
    if api && !app.guards.api_ip.allow(&limit_key(app, remote, &req)) {
        app.metrics.rate_limited.inc();
        return ("v1", too_many("too many API requests from this address", 1));
    }
    let unmatched = if api { "v1" } else { "other" };
    if method == Method::OPTIONS {
        if let Some(allowed) = allowed_methods(&segs) {
            return (unmatched, options(&allowed));
        }
    }
    let (row, params) = match lookup(&method, &segs) {
        Lookup::Found(row, params) => (row, params),
        Lookup::WrongMethod(allow) => {
            return (unmatched, method_not_allowed(&method, &path, &allow));
        }
        // What payhost does not serve itself may belong to a mount (the demo's sandbox and
        // shop); never under `/v1`, so an unknown API route is a 404 for everybody.
        Lookup::NotFound => match app.mounts.find(&path).filter(|_| !api) {
            Some(mount) => {
                let here = super::mount::FromThisMachine::of(remote, &req);
                req.extensions_mut().insert(here);
                return ("mount", (mount.handler)(req).await);
            }
            None => return (unmatched, not_found(&method, &path)),
        },
    };
    let label = row.label;
    let response = match row.target {
        Target::Healthz => probes::healthz(app).await,
        Target::Readyz => probes::readyz(app).await,
        Target::Metrics => probes::metrics_with_token(app, caller::bearer(&req)).await,
        Target::Notify => provider::notify(app, params.get("id"), remote, req).await,
        Target::Return => {
            if !app.guards.return_ip.allow(&limit_key(app, remote, &req)) {
                app.metrics.rate_limited.inc();
                return (label, too_many("too many returns from this address", 1));
            }
            provider::buyer_return(app, params.get("id"), &req).await
        }
        Target::Root => redirect(app.mounts.root_redirect().unwrap_or("/admin")),
        Target::Admin => {
            if method != Method::GET && method != Method::POST {
                let allowed = allowed_methods(&segs).unwrap_or_default();
                return (label, method_not_allowed(&method, &path, &allowed));
            }
            let ip = caller::client_ip(app, remote, &req);
            if !app.guards.admin_ip.allow(&crate::proxy::limit_key(ip)) {
                app.metrics.rate_limited.inc();
                return (label, admin::too_many_requests(app, &req));
            }
            admin::handle(app, ip, remote, req).await
        }
        Target::Api(route, scope) => {
            let Some(who) = caller::caller(app, &req).await else {
                // Seen in the log, so guessing tokens is not invisible (the token is never
                // logged), at most once a second so it cannot flood the log.
                static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(1_000);
                if let Some(unsaid) = SAY.allow() {
                    tracing::info!(
                        client = %caller::client_ip(app, remote, &req),
                        path = %path,
                        token_given = caller::bearer(&req).is_some(),
                        unsaid,
                        "API call refused: missing or wrong bearer token (401); unsaid: refusals since the last such line"
                    );
                }
                return (
                    "v1",
                    error(&ApiError::new(
                        401,
                        "unauthorized",
                        "missing or wrong bearer token (Authorization: Bearer <api_token or merchant token>)",
                    )),
                );
            };
            if !may_call(&who, scope, &params) {
                return (
                    "v1",
                    error(&ApiError::new(
                        403,
                        "forbidden",
                        "this token belongs to another merchant or may not use this route",
                    )),
                );
            }
            api::dispatch(app, &who, route, &params, req).await
        }
    };
    (label, response)
}

/// Whether `who` may call a route of `scope` with these path parameters.
fn may_call(who: &Caller, scope: Scope, params: &Params<'_>) -> bool {
    match (who, scope) {
        (Caller::Operator, _) => true,
        (Caller::Merchant(own), Scope::OwnMerchant) => params.get("id") == own,
        (Caller::Merchant(_), Scope::AnyMerchant) => true,
        (Caller::Merchant(_), Scope::Operator) => false,
    }
}

/// `OPTIONS` on a path payhost serves: its methods, nothing else (a balancer's plain
/// `option httpchk` asks `OPTIONS /`).
fn options(allowed: &[&str]) -> Response<Body> {
    let mut r = Response::builder()
        .status(204)
        .body(Body::default())
        .expect("valid response");
    with_allow(&mut r, allowed);
    r
}

/// The request's transfer codings when they are anything but `chunked` alone (hyper has already
/// refused one whose last coding is not `chunked`), as sent.
fn unsupported_transfer_coding<B>(req: &Request<B>) -> Option<String> {
    let mut codings = Vec::new();
    for value in req.headers().get_all(http::header::TRANSFER_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        codings.extend(
            text.split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
        );
    }
    let only_chunked = codings.len() == 1 && codings[0].eq_ignore_ascii_case("chunked");
    (!codings.is_empty() && !only_chunked).then(|| codings.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> Option<(&'static str, Vec<String>)> {
        match lookup(&method, &segments(path)) {
            Lookup::Found(row, p) => Some((
                row.label,
                p.0.iter().map(|(n, v)| format!("{n}={v}")).collect(),
            )),
            _ => None,
        }
    }

    #[test]
    fn a_merchant_id_is_checked_as_the_admin_pages_decode_it() {
        for path in [
            "/admin/%6derchants/..%2F..",
            "/admin/merchants/%2E%2E",
            "/admin/%6Derchants/a%20b/payments/x",
            "/v1/merchants/a%2Fb",
        ] {
            let segs = segments(path);
            assert!(
                names_an_invalid_merchant(&segs) || decoded_names_an_invalid_merchant(path, &segs),
                "{path}"
            );
        }
        for path in [
            "/admin/%6derchants/shop",
            "/admin/merchants/shop/payments/A%2F1",
        ] {
            let segs = segments(path);
            assert!(
                !names_an_invalid_merchant(&segs)
                    && !decoded_names_an_invalid_merchant(path, &segs),
                "{path}"
            );
        }
    }

    #[test]
    fn admin_and_metrics_answer_their_canonical_paths_only() {
        let around = |p: &str| walks_around_an_access_list(p, &segments(p));
        for p in [
            "/admin",
            "/admin/users",
            "/admin/merchants/demo/payments/A%2F1",
            "/admin/merchants/demo/payments/A%7E1",
            "/admin/merchants/demo/payments/%E8%AE%A2",
            "/metrics",
            "/v1//payments",
            "//notify/shop/",
            "/",
        ] {
            assert!(!around(p), "{p}");
        }
        for p in [
            "//admin",
            "/admin/",
            "/admin//users",
            "///admin/login",
            "/admin/%75sers",
            "/admin/merchants/%2Ddemo",
            "/admin/merchants/demo%2e",
            "//metrics",
            "/metrics/",
        ] {
            assert!(around(p), "{p}");
        }
    }

    #[test]
    fn the_table_captures_the_path_segments() {
        assert_eq!(
            found(Method::POST, "/v1/merchants/m1/payments/A%2F1/refunds"),
            Some(("v1_refunds", vec!["id=m1".into(), "no=A%2F1".into()]))
        );
        assert_eq!(
            found(Method::GET, "/v1/payments.csv"),
            Some(("v1_payments_csv", vec![]))
        );
        assert_eq!(
            found(Method::GET, "/v1/refunds"),
            Some(("v1_refunds_list", vec![]))
        );
        assert_eq!(
            found(Method::GET, "/v1/refunds.csv"),
            Some(("v1_refunds_csv", vec![]))
        );
        assert_eq!(
            found(Method::POST, "/alipay/m1/notify"),
            Some(("alipay_notify", vec!["id=m1".into()]))
        );
        assert_eq!(found(Method::GET, "/"), Some(("root", vec![])));
        assert_eq!(found(Method::POST, "/admin"), Some(("admin", vec![])));
        assert_eq!(
            found(Method::GET, "/admin/merchants/m1"),
            Some(("admin", vec![]))
        );
    }

    #[test]
    fn a_known_path_with_another_method_is_405_and_an_unknown_one_404() {
        match lookup(&Method::PATCH, &segments("/v1/merchants/m1")) {
            Lookup::WrongMethod(allow) => {
                assert_eq!(allow, ["PUT", "GET", "HEAD", "DELETE", "OPTIONS"])
            }
            other => panic!("{other:?}"),
        }
        match lookup(&Method::GET, &segments("/v1/merchants/m1/payments")) {
            Lookup::WrongMethod(allow) => assert_eq!(allow, ["POST", "OPTIONS"]),
            other => panic!("{other:?}"),
        }
        match lookup(&Method::GET, &segments("/notify/m1")) {
            Lookup::WrongMethod(allow) => assert_eq!(allow, ["POST", "OPTIONS"]),
            other => panic!("{other:?}"),
        }
        for path in [
            "/v1/nope",
            "/v1/merchants/m1/payments/n/x",
            "/healthz/x",
            "/shop",
        ] {
            assert!(
                matches!(lookup(&Method::GET, &segments(path)), Lookup::NotFound),
                "{path}"
            );
        }
    }

    #[test]
    fn merchant_tokens_reach_their_own_routes_only() {
        let own = Caller::Merchant("m1".into());
        let p = |path: &'static str| match lookup(&Method::GET, &segments(path)) {
            Lookup::Found(row, p) => (row.target, p),
            other => panic!("{other:?}"),
        };
        let (Target::Api(_, scope), params) = p("/v1/merchants/m1/notifications") else {
            panic!()
        };
        assert!(may_call(&own, scope, &params));
        let (Target::Api(_, scope), params) = p("/v1/merchants/m2/notifications") else {
            panic!()
        };
        assert!(!may_call(&own, scope, &params));
        let (Target::Api(_, scope), params) = p("/v1/merchants/m1/tokens") else {
            panic!()
        };
        assert!(!may_call(&own, scope, &params));
        assert!(may_call(&Caller::Operator, scope, &params));
        let (Target::Api(_, scope), params) = p("/v1/payments") else {
            panic!()
        };
        assert!(may_call(&own, scope, &params));
    }
}
