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
/// One with a path is served (a proxy that strips the prefix serves the API and the provider's
/// routes), with a warning: the admin page assumes the root of its origin.
pub(super) fn public_url(
    raw: &RawTop,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> String {
    match trimmed(&raw.public_url) {
        Some(u) if super::merchants::is_http_url(&u) && !u.contains('?') => {
            // The admin page's links and its cookies (Path=/) and the notify and return URLs
            // assume payhost is the whole origin: under a path (`https://host/pay/`) the admin
            // page would not work.
            let u = u.trim_end_matches('/').to_owned();
            if u.parse::<http::Uri>().is_ok_and(|x| x.path() != "/") {
                let root = super::merchants::origin_of(&u)
                    .unwrap_or_else(|| "https://pay.example.com".into());
                warnings.push(format!(
                    "public_url: has a path; the shop API and the provider's notify and return work behind a proxy that strips it, but the admin page does not (its links and cookies assume payhost is the root of its origin): serve payhost at {root} (a host name of its own) to use the admin page"
                ));
            }
            u
        }
        Some(_) => {
            problems.push(
                "public_url: must be an absolute http or https URL without a query, such as https://pay.example.com (the address buyers, Alipay and the admin's browser reach payhost at)".into(),
            );
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

/// The `api_token` values the READMEs and docs/ show or have shown as examples (README.zh-CN.md's
/// `payhost.toml`: the older hex example, then a placeholder). Anyone who read them could use the
/// API of a payhost that kept one. Add any new example here.
pub(super) const EXAMPLE_TOKENS: &[&str] = &[
    "0123456789abcdef0123456789abcdef",
    "REPLACE-ME-openssl-rand-hex-32",
];

/// Whether `token` is an example of the documentation, or a placeholder (`REPLACE-ME…`).
fn is_example_token(token: &str) -> bool {
    EXAMPLE_TOKENS.iter().any(|e| e.eq_ignore_ascii_case(token))
        || token
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("replace-me"))
}

/// Whether an operator token is easy to guess though long enough: few distinct characters
/// (`aaaaaaaaaaaaaaaa`), mostly a run (`1234567890123456`, `abcdefghijklmnop`, the README's
/// `0123456789abcdef…` with more after it), or a password everybody tries first, also spelt
/// with digits and signs (`P@ssw0rd…`). The API answers a wrong token in about 30 µs, thousands
/// of guesses a second from one address; a random token is out of reach, these are not.
pub fn guessable_token(token: &str) -> bool {
    let distinct: std::collections::BTreeSet<char> = token.chars().collect();
    let bytes = token.as_bytes();
    // Steps of one (`a`→`b`, `7`→`8`, and `9`→`0` of a repeated digit run): three in four
    // neighbours of a run, about one in forty of a random hex token.
    let steps = bytes
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1) || (w[0] == b'9' && w[1] == b'0'))
        .count();
    let mostly_a_run = steps * 4 >= bytes.len().saturating_sub(1) * 3;
    let lower = token.to_ascii_lowercase();
    let unleet: String = lower
        .chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '0' => 'o',
            '1' | '!' => 'i',
            '3' => 'e',
            '$' | '5' => 's',
            '7' => 't',
            c => c,
        })
        .collect();
    distinct.len() < 10
        || mostly_a_run
        || ["password", "passwd", "qwerty", "letmein", "changeme"]
            .iter()
            .any(|w| lower.contains(w) || unleet.contains(w))
}

/// `api_token`: required, 16 characters or more, no spaces, not an example of the READMEs; one
/// easy to guess is said (a warning: refusing it would stop an upgraded host from starting).
pub(super) fn api_token(
    raw: &RawTop,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Secret {
    // Said only of a token that is taken: a refused one has its own problem below.
    let taken =
        |t: &str| t.len() >= 16 && !t.chars().any(char::is_whitespace) && !is_example_token(t);
    if trimmed(&raw.api_token).is_some_and(|t| taken(&t) && guessable_token(&t)) {
        warnings.push(
            "api_token: is easy to guess (few different characters, or a common password); anyone who guesses it reaches every merchant — generate your own: openssl rand -hex 32".into(),
        );
    }
    match trimmed(&raw.api_token) {
        Some(t) if is_example_token(&t) => {
            problems.push(
                "api_token: is the example from the README; anyone who read it can use the API — generate your own: openssl rand -hex 32".into(),
            );
            Secret::default()
        }
        Some(t) if t.len() >= 16 && !t.chars().any(char::is_whitespace) => Secret::new(t),
        Some(_) => {
            problems.push("api_token: must be at least 16 characters without spaces (make one: openssl rand -hex 32)".into());
            Secret::default()
        }
        None => {
            problems.push("api_token: is required (the operator's bearer token of the /v1 API; 16+ characters: make one with openssl rand -hex 32)".into());
            Secret::default()
        }
    }
}

/// `admin_password_hash`: an argon2 PHC string, when set.
pub(super) fn admin_password_hash(raw: &RawTop, problems: &mut Vec<String>) -> Option<Secret> {
    let hash = trimmed(&raw.admin_password_hash)?;
    if !hash.starts_with("$argon2") {
        // Not even the start of one: perhaps the password itself, and the reason of the check
        // would quote a part of it (the "algorithm" between the first two '$').
        problems.push(
            "admin_password_hash: not an argon2 hash (one starts with $argon2id$); make one with `payhost admin-password`".into(),
        );
    } else if let Err(e) = crate::auth::check_password_hash(&hash) {
        problems.push(format!(
            "admin_password_hash: not an argon2 hash ({e}); make one with `payhost admin-password`"
        ));
    }
    Some(Secret::new(hash))
}

/// `metrics_listen`: an address, when set, that does not take `listen`'s port.
pub(super) fn metrics_listen(
    raw: &RawTop,
    listen: SocketAddr,
    problems: &mut Vec<String>,
) -> Option<SocketAddr> {
    let m = trimmed(&raw.metrics_listen)?;
    let Ok(metrics) = m.parse::<SocketAddr>() else {
        problems.push(format!(
            "metrics_listen: {m:?} is not an address such as 127.0.0.1:9090"
        ));
        return None;
    };
    if clash(listen, metrics) {
        let listen_is = if trimmed(&raw.listen).is_some() {
            format!("listen ({listen})")
        } else {
            format!("listen (the default {listen})")
        };
        let how = if listen == metrics {
            "is the same address as"
        } else {
            // 0.0.0.0 takes the port on every IPv4 address, [::] on every address.
            "takes the same port on the same addresses as"
        };
        problems.push(format!(
            "metrics_listen: {how} {listen_is}; two listeners cannot share a port (serve would fail with \"Address already in use\"): give metrics_listen a port of its own, such as {}, or leave it out to serve /metrics on listen with the API token",
            SocketAddr::new(metrics.ip(), if listen.port() == 9090 { 9091 } else { 9090 })
        ));
        return None;
    }
    Some(metrics)
}

/// Whether two listeners' addresses take the same port on an address (one port 0 picks a free
/// port, never a clash). An unspecified address takes its port on every address of its family,
/// and `[::]` (dual-stack, Linux's default) on IPv4 ones too.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |u: std::net::IpAddr, other: std::net::IpAddr| {
        u.is_unspecified() && (u.is_ipv6() || other.is_ipv4())
    };
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
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
