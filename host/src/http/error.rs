//! The one error answer of payhost's own routes: the HTTP status and
//! `{"error":{"code":…,"message":…,"field":…}}` (`field`: the input at fault, or `null`), on
//! every route a program calls (the shop API, `/metrics`, `/readyz`, an unknown path, a method a
//! path does not take), and on hyper's own answer to a request it cannot parse
//! (`super::parse_errors`). Settings refused field by field add their list beside it (`"fields"`).
//!
//! Two answers are not JSON because their reader is not a program that reads this shape: the
//! provider's notify gets its reply word (the protocol's `success`/`fail`), and a buyer's browser
//! on `/return` or an operator's on `/admin` gets a page.

use super::body::{json, Body};
use http::{Method, Response};

/// An error for the API: HTTP status, code, field, message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
    /// A record the error is about, answered beside `error` under its name (a refund whose
    /// outcome is unknown: `"refund": {…}`).
    pub about: Option<Box<(&'static str, serde_json::Value)>>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            field: None,
            message: message.into(),
            about: None,
        }
    }

    pub fn field(status: u16, code: &str, field: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            field: Some(field.into()),
            message: message.into(),
            about: None,
        }
    }

    pub fn internal<E: std::fmt::Display + 'static>(e: E) -> Self {
        // A database that cannot be reached is not payhost's fault: come back (503).
        if let Some(store) = (&e as &dyn std::any::Any).downcast_ref::<anyhow::Error>() {
            if crate::store::is_unavailable(store) {
                static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(10_000);
                if let Some(unsaid) = SAY.allow() {
                    tracing::error!(error = %format!("{store:#}"), unsaid, "the database cannot be reached or written (said again every 10 s while it lasts)");
                }
                return ApiError::new(
                    503,
                    "database_unavailable",
                    "the database cannot be reached or written now; try again shortly",
                );
            }
        }
        // Escaped: the error can carry a component's text.
        tracing::error!(error = %crate::log_limit::clean(&e), "internal error");
        ApiError::new(500, "internal", "internal error; see the payhost log")
    }

    pub(super) fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({"error": {"code": self.code, "field": self.field, "message": self.message}});
        if let Some(about) = &self.about {
            let (name, value) = &**about;
            body[*name] = value.clone();
        }
        body
    }
}

/// The answer of an [`ApiError`].
pub fn error(e: &ApiError) -> Response<Body> {
    json(e.status, &e.body())
}

/// The answer of an [`ApiError`] about settings, with every refused field in `"fields"` (what
/// `PUT /v1/merchants/{id}` answers: README, "400 with every bad field in `fields`").
pub fn error_with_fields(e: &ApiError, fields: serde_json::Value) -> Response<Body> {
    let mut body = e.body();
    body["fields"] = fields;
    json(e.status, &body)
}

pub fn into_response(r: Result<Response<Body>, ApiError>) -> Response<Body> {
    r.unwrap_or_else(|e| error(&e))
}

pub fn not_found(method: &Method, path: &str) -> Response<Body> {
    error(&ApiError::new(
        404,
        "not_found",
        format!("no route {method} {}", super::admin::esc(path)),
    ))
}

/// A path payhost serves, asked with a method it does not take there: 405 with `Allow`.
pub fn method_not_allowed(method: &Method, path: &str, allow: &[&str]) -> Response<Body> {
    let mut r = error(&ApiError::new(
        405,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {} (allowed: {})",
            // CONNECT's target is an authority, with no path: payhost is no proxy.
            if path.is_empty() {
                "this server".to_owned()
            } else {
                super::admin::esc(path)
            },
            allow.join(", ")
        ),
    ));
    with_allow(&mut r, allow);
    r
}

/// Names a path's methods in `Allow` (the 405 above and the answer to `OPTIONS`).
pub fn with_allow(r: &mut Response<Body>, allow: &[&str]) {
    if let Ok(v) = http::HeaderValue::from_str(&allow.join(", ")) {
        r.headers_mut().insert(http::header::ALLOW, v);
    }
}

pub fn too_many(message: &str, retry_after_s: u64) -> Response<Body> {
    let mut r = error(&ApiError::new(429, "rate_limited", message));
    r.headers_mut()
        .insert("retry-after", http::HeaderValue::from(retry_after_s));
    r
}
