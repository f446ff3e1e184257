//! Who a request comes from: the bearer token of a `/v1` call, the client's address (behind
//! trusted proxies) and the per-address limits' key.

use crate::service::App;
use http::Request;
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

/// Who a `/v1` request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator's `api_token`: all of `/v1`.
    Operator,
    /// A per-merchant token: that merchant's payments, notifications and channels, and its own
    /// provider settings (read, and replaced within the slot the operator made: see
    /// [`super::api::merchants::put_merchant`]).
    Merchant(String),
}

/// The bearer token; none when `Authorization` is given twice (which one a proxy or a framework
/// in front would have read cannot be told: neither is believed).
pub(super) fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let mut given = req.headers().get_all("authorization").iter();
    let first = given.next()?;
    if given.next().is_some() {
        return None;
    }
    first.to_str().ok().and_then(bearer_token)
}

/// The token of an `Authorization` value: the scheme is case-insensitive (RFC 9110 section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `token` is the operator's `api_token` (constant time).
pub fn is_operator_token(app: &App, token: &str) -> bool {
    let expected = app.config.api_token.expose().as_bytes();
    let given = token.as_bytes();
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// The caller of a `/v1` request, from `Authorization: Bearer <token>`: the operator token, or a
/// live per-merchant token (looked up by its SHA-256).
pub(super) async fn caller(app: &App, req: &Request<Incoming>) -> Option<Caller> {
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
pub fn client_ip(app: &App, remote: SocketAddr, req: &Request<Incoming>) -> IpAddr {
    // Read as bytes: a header with one byte that is not ASCII still names, to the right of it,
    // the addresses our proxies appended (a header skipped whole would leave the proxy itself
    // as the client).
    let headers: Vec<std::borrow::Cow<'_, str>> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect();
    crate::proxy::client_address(
        &app.config.trusted_proxies,
        remote.ip(),
        headers.iter().map(|h| h.as_ref()),
    )
}

/// The per-address limits' key of a request (its client's IPv4 address or IPv6 /64).
pub(super) fn limit_key(app: &App, remote: SocketAddr, req: &Request<Incoming>) -> IpAddr {
    crate::proxy::limit_key(client_ip(app, remote, req))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(super::bearer_token(v), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearerabc", "Bearer", "Bearer  ", ""] {
            assert_eq!(super::bearer_token(v), None, "{v:?}");
        }
    }
}
