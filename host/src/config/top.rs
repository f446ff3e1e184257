//! The top-level keys of `payhost.toml`: where payhost listens and is reached, its API token, the
//! admin password's hash, the metrics address and the trusted proxies.

use super::trimmed;
use crate::domain::Secret;
use serde::Deserialize;
use std::net::SocketAddr;

/// The keys read here (the tables have their own modules).
pub(super) const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "api_token",
    "cache_dir",
    "admin_password_hash",
    "trust_proxy",
    "trusted_proxies",
    "metrics_listen",
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTop {
    listen: Option<String>,
    public_url: Option<String>,
    api_token: Option<String>,
    pub(super) cache_dir: Option<String>,
    admin_password_hash: Option<String>,
    trust_proxy: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    metrics_listen: Option<String>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `listen`: an address such as 127.0.0.1:8080 (the default).
pub(super) fn listen(raw: &RawTop, problems: &mut Vec<String>) -> SocketAddr {
    let text = trimmed(&raw.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
    text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!(
            "listen: {text:?} is not an address such as {DEFAULT_LISTEN}"
        ));
        DEFAULT_LISTEN.parse().expect("the default parses")
    })
}

/// `public_url`: required, an absolute http(s) URL without a query; kept without a trailing '/'.
pub(super) fn public_url(raw: &RawTop, problems: &mut Vec<String>) -> String {
    match trimmed(&raw.public_url) {
        Some(u) if super::merchants::is_http_url(&u) && !u.contains('?') => {
            u.trim_end_matches('/').to_owned()
        }
        Some(_) => {
            problems
                .push("public_url: must be an absolute http or https URL without a query".into());
            String::new()
        }
        None => {
            problems.push(
                "public_url: is required (the base of the notify and return URLs given to the payment provider)".into(),
            );
            String::new()
        }
    }
}

/// `api_token`: required, 16 characters or more, no spaces.
pub(super) fn api_token(raw: &RawTop, problems: &mut Vec<String>) -> Secret {
    match trimmed(&raw.api_token) {
        Some(t) if t.len() >= 16 && !t.chars().any(char::is_whitespace) => Secret::new(t),
        Some(_) => {
            problems.push("api_token: must be at least 16 characters without spaces".into());
            Secret::default()
        }
        None => {
            problems.push("api_token: is required (the operator's bearer token of the /v1 API; 16+ characters)".into());
            Secret::default()
        }
    }
}

/// `admin_password_hash`: an argon2 PHC string, when set.
pub(super) fn admin_password_hash(raw: &RawTop, problems: &mut Vec<String>) -> Option<Secret> {
    let hash = trimmed(&raw.admin_password_hash)?;
    if let Err(e) = crate::auth::check_password_hash(&hash) {
        problems.push(format!(
            "admin_password_hash: not an argon2 hash ({e}); make one with `payhost admin-password`"
        ));
    }
    Some(Secret::new(hash))
}

/// `metrics_listen`: an address, when set.
pub(super) fn metrics_listen(raw: &RawTop, problems: &mut Vec<String>) -> Option<SocketAddr> {
    let m = trimmed(&raw.metrics_listen)?;
    match m.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "metrics_listen: {m:?} is not an address such as 127.0.0.1:9090"
            ));
            None
        }
    }
}

/// `trusted_proxies`, and the older `trust_proxy = true` (loopback only, with a warning).
pub(super) fn trusted_proxies(
    raw: &RawTop,
    warnings: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Vec<crate::proxy::Cidr> {
    let mut trusted = Vec::new();
    for (i, c) in raw.trusted_proxies.iter().flatten().enumerate() {
        match crate::proxy::Cidr::parse(c) {
            Ok(cidr) => trusted.push(cidr),
            Err(e) => problems.push(format!(
                "trusted_proxies[{i}]: {c:?} is not an address block such as \"10.0.0.0/8\" or \"2001:db8::/32\" ({e})"
            )),
        }
    }
    if raw.trust_proxy == Some(true) {
        warnings.push(
            "trust_proxy = true is deprecated: it now trusts proxies on loopback only (127.0.0.0/8, ::1); list your proxies' addresses in trusted_proxies = [\"10.0.0.0/8\", …] instead".into(),
        );
        for c in crate::proxy::loopback() {
            if !trusted.contains(&c) {
                trusted.push(c);
            }
        }
    }
    trusted
}
