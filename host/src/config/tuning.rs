//! The tuning tables, each optional with defaults: `[webhooks]` (delivery to the shop),
//! `[limits]` (connections, deadlines, rates), `[retention]`, `[recovery]`, `[admin]` and
//! `[outbound]`.

use super::section;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub timeout_ms: u64,
    /// A webhook still undelivered this long after it was queued is dead-lettered (default 3
    /// days, as Stripe); the admin page lists it with a resend button.
    pub give_up_after_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            retry_base_ms: 1_000,
            retry_max_ms: 3_600_000,
            timeout_ms: 10_000,
            give_up_after_ms: 3 * 86_400_000,
        }
    }
}

/// `[limits]`: connections, deadlines and request rates (token buckets, burst = one second).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one client address (an IPv6 client per /64) may hold open at once; a trusted
    /// proxy's are not counted (they carry everybody's). 0 = no such limit.
    pub max_connections_per_ip: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub keep_alive_idle_ms: u64,
    pub notify_per_ip_per_s: u32,
    pub notify_per_merchant_per_s: u32,
    pub return_per_ip_per_s: u32,
    pub admin_per_ip_per_s: u32,
    pub api_per_ip_per_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_ip: 256,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 10_000,
            keep_alive_idle_ms: 60_000,
            notify_per_ip_per_s: 10_000,
            notify_per_merchant_per_s: 10_000,
            return_per_ip_per_s: 1_000,
            admin_per_ip_per_s: 100,
            api_per_ip_per_s: 10_000,
        }
    }
}

/// `[retention]`: how long raw notifications are kept. Refused ones (the caller never proved it
/// is the provider) are kept as a bounded record only, for less time and at most
/// `refused_notifications_per_merchant` per merchant (the newest).
#[derive(Debug, Clone)]
pub struct Retention {
    pub raw_notification_days: u32,
    pub refused_notification_days: u32,
    pub refused_notifications_per_merchant: u32,
    pub prune_interval_s: u64,
}

/// `[recovery]`: lost-notify recovery by trade query (`single_trade_query`). A payment still
/// waiting `after_s` after it was created is queried, then again with doubling gaps (from
/// `interval_s`, at most 6 hours), until it is paid, closed or older than `max_age_s`. A refund
/// left pending without a seller to confirm it (its answer lost or not final) is asked about from
/// `refund_after_s` after it started, on the same gaps; one waiting for the seller's confirmation
/// (the legacy API) has its trade queried from `seller_refund_after_s` after it started, its gaps
/// doubling from that up to 6 hours, in case its notification was lost.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub enabled: bool,
    pub after_s: u64,
    pub interval_s: u64,
    pub max_age_s: u64,
    pub refund_after_s: u64,
    pub seller_refund_after_s: u64,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            enabled: true,
            // Providers resend a notification for a day or more, the first time after minutes:
            // give them the
            // first ten minutes.
            after_s: 600,
            interval_s: 60,
            // WAP trades close after at most 15 days (pay_expire); two days covers the default.
            max_age_s: 2 * 86_400,
            // Alipay advises querying a refund at least 10 s after starting it ([OPENAPI §7.6]).
            refund_after_s: 10,
            // A seller confirms within minutes or not at all; Alipay resends the batch
            // notification for about a day. Its trade query is the check that it was not lost.
            seller_refund_after_s: 3_600,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_notification_days: 180,
            refused_notification_days: 7,
            refused_notifications_per_merchant: 1_000,
            prune_interval_s: 600,
        }
    }
}

/// `[admin]`: sessions and login throttling.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The longest a session lives, however busy.
    pub session_ttl_s: u64,
    /// How long a session lives unused: each page the owner opens moves its end on.
    pub session_idle_s: u64,
    pub login_failures_per_minute: u32,
    /// `time_zone`: the zone the admin pages show times in (stored as UTC).
    pub time_zone: crate::domain::zone::Zone,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            session_ttl_s: 8 * 3600,
            session_idle_s: 30 * 60,
            login_failures_per_minute: 5,
            time_zone: crate::domain::zone::Zone::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    timeout_ms: Option<u64>,
    give_up_after_ms: Option<u64>,
}

/// A duration or count of a tuning table, refused below `min`: the problem names the key, the
/// floor and the default, and the default stands in while the problem stops the start. (Values
/// used to be raised to the floor silently, so `header_read_timeout_ms = 0` meant 1 ms.)
fn at_least<T>(key: &str, value: Option<T>, default: T, min: T, problems: &mut Vec<String>) -> T
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    match value {
        Some(v) if v < min => {
            problems.push(format!(
                "{key}: must be at least {min} (the default is {default})"
            ));
            default
        }
        Some(v) => v,
        None => default,
    }
}

/// The shortest connection deadline in `[limits]`: under a tenth of a second a client on a
/// mobile network cannot send a request line, so every request would be cut off.
const MIN_CONNECTION_DEADLINE_MS: u64 = 100;

/// The shortest `[webhooks] timeout_ms`. It is the time a delivery has to connect to the shop
/// and, again, to get its answer (`webhooks::post`; a PostgreSQL lease is twice it): under a
/// tenth of a second not even a nearby shop completes a TLS handshake, so every webhook would
/// fail, be retried and end dead-lettered. (The same floor as `call_timeout_ms`.)
const MIN_WEBHOOK_TIMEOUT_MS: u64 = 100;

/// `[webhooks]`: `timeout_ms` at least [`MIN_WEBHOOK_TIMEOUT_MS`], `retry_max_ms` at least
/// `retry_base_ms`, the other durations at least 1 ms.
pub(super) fn webhooks(value: Option<&toml::Value>, problems: &mut Vec<String>) -> WebhookConfig {
    let raw: RawWebhooks = section("webhooks", value, problems);
    let d = WebhookConfig::default();
    let mut w = WebhookConfig {
        retry_base_ms: at_least(
            "webhooks.retry_base_ms",
            raw.retry_base_ms,
            d.retry_base_ms,
            1,
            problems,
        ),
        retry_max_ms: at_least(
            "webhooks.retry_max_ms",
            raw.retry_max_ms,
            d.retry_max_ms,
            1,
            problems,
        ),
        timeout_ms: raw.timeout_ms.unwrap_or(d.timeout_ms),
        give_up_after_ms: at_least(
            "webhooks.give_up_after_ms",
            raw.give_up_after_ms,
            d.give_up_after_ms,
            1,
            problems,
        ),
    };
    if w.timeout_ms < MIN_WEBHOOK_TIMEOUT_MS {
        problems.push(format!(
            "webhooks.timeout_ms: must be at least {MIN_WEBHOOK_TIMEOUT_MS} milliseconds (the time a delivery has to connect to the shop, and then to get its answer; the default is {})",
            d.timeout_ms
        ));
        w.timeout_ms = d.timeout_ms;
    }
    // A value refused above already has its problem; compared, its default would make up another.
    let refused = |v: Option<u64>| v.is_some_and(|v| v < 1);
    if w.retry_max_ms < w.retry_base_ms && !refused(raw.retry_base_ms) && !refused(raw.retry_max_ms)
    {
        // A value left out is the default: said, or the rule would name a key not in the file.
        let base = match raw.retry_base_ms {
            Some(_) => String::new(),
            None => format!(" (not set, so {})", d.retry_base_ms),
        };
        let max = match raw.retry_max_ms {
            Some(_) => String::new(),
            None => format!(
                "; retry_max_ms is not set, and its default {} is less",
                d.retry_max_ms
            ),
        };
        problems.push(format!(
            "webhooks.retry_max_ms: must be at least webhooks.retry_base_ms{base} (the longest wait between two attempts cannot be shorter than the first){max}; raise retry_max_ms or lower retry_base_ms"
        ));
    }
    w
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    keep_alive_idle_ms: Option<u64>,
    notify_per_ip_per_s: Option<u32>,
    notify_per_merchant_per_s: Option<u32>,
    return_per_ip_per_s: Option<u32>,
    admin_per_ip_per_s: Option<u32>,
    api_per_ip_per_s: Option<u32>,
}

/// `[limits]`: at least one connection, deadlines of at least [`MIN_CONNECTION_DEADLINE_MS`];
/// rates and the per-address cap as written (0 turns that limit off, as the README says).
pub(super) fn limits(value: Option<&toml::Value>, problems: &mut Vec<String>) -> Limits {
    let raw: RawLimits = section("limits", value, problems);
    let d = Limits::default();
    let deadline = |key: &str, v: Option<u64>, default: u64, problems: &mut Vec<String>| {
        at_least(key, v, default, MIN_CONNECTION_DEADLINE_MS, problems)
    };
    Limits {
        max_connections: at_least(
            "limits.max_connections",
            raw.max_connections,
            d.max_connections,
            1,
            problems,
        ),
        max_connections_per_ip: raw
            .max_connections_per_ip
            .unwrap_or(d.max_connections_per_ip),
        header_read_timeout_ms: deadline(
            "limits.header_read_timeout_ms",
            raw.header_read_timeout_ms,
            d.header_read_timeout_ms,
            problems,
        ),
        body_read_timeout_ms: deadline(
            "limits.body_read_timeout_ms",
            raw.body_read_timeout_ms,
            d.body_read_timeout_ms,
            problems,
        ),
        keep_alive_idle_ms: deadline(
            "limits.keep_alive_idle_ms",
            raw.keep_alive_idle_ms,
            d.keep_alive_idle_ms,
            problems,
        ),
        notify_per_ip_per_s: raw.notify_per_ip_per_s.unwrap_or(d.notify_per_ip_per_s),
        notify_per_merchant_per_s: raw
            .notify_per_merchant_per_s
            .unwrap_or(d.notify_per_merchant_per_s),
        return_per_ip_per_s: raw.return_per_ip_per_s.unwrap_or(d.return_per_ip_per_s),
        admin_per_ip_per_s: raw.admin_per_ip_per_s.unwrap_or(d.admin_per_ip_per_s),
        api_per_ip_per_s: raw.api_per_ip_per_s.unwrap_or(d.api_per_ip_per_s),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    raw_notification_days: Option<u32>,
    refused_notification_days: Option<u32>,
    refused_notifications_per_merchant: Option<u32>,
    prune_interval_s: Option<u64>,
}

/// `[retention]`: days at least 1, the per-merchant bound between 1 and 1,000,000.
pub(super) fn retention(value: Option<&toml::Value>, problems: &mut Vec<String>) -> Retention {
    let raw: RawRetention = section("retention", value, problems);
    let d = Retention::default();
    let r = Retention {
        raw_notification_days: raw.raw_notification_days.unwrap_or(d.raw_notification_days),
        refused_notification_days: raw
            .refused_notification_days
            .unwrap_or(d.refused_notification_days),
        refused_notifications_per_merchant: raw
            .refused_notifications_per_merchant
            .unwrap_or(d.refused_notifications_per_merchant),
        prune_interval_s: at_least(
            "retention.prune_interval_s",
            raw.prune_interval_s,
            d.prune_interval_s,
            1,
            problems,
        ),
    };
    if r.raw_notification_days == 0 {
        problems.push("retention.raw_notification_days: must be at least 1".into());
    }
    if r.refused_notification_days == 0 {
        problems.push("retention.refused_notification_days: must be at least 1".into());
    }
    if !(1..=1_000_000).contains(&r.refused_notifications_per_merchant) {
        problems.push(
            "retention.refused_notifications_per_merchant: must be between 1 and 1000000".into(),
        );
    }
    r
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecovery {
    enabled: Option<bool>,
    after_s: Option<u64>,
    interval_s: Option<u64>,
    max_age_s: Option<u64>,
    refund_after_s: Option<u64>,
    seller_refund_after_s: Option<u64>,
}

/// `[recovery]`: the first gap at least 1 s.
pub(super) fn recovery(value: Option<&toml::Value>, problems: &mut Vec<String>) -> Recovery {
    let raw: RawRecovery = section("recovery", value, problems);
    let d = Recovery::default();
    Recovery {
        enabled: raw.enabled.unwrap_or(d.enabled),
        after_s: raw.after_s.unwrap_or(d.after_s),
        interval_s: at_least(
            "recovery.interval_s",
            raw.interval_s,
            d.interval_s,
            1,
            problems,
        ),
        max_age_s: raw.max_age_s.unwrap_or(d.max_age_s),
        refund_after_s: at_least(
            "recovery.refund_after_s",
            raw.refund_after_s,
            d.refund_after_s,
            1,
            problems,
        ),
        seller_refund_after_s: at_least(
            "recovery.seller_refund_after_s",
            raw.seller_refund_after_s,
            d.seller_refund_after_s,
            1,
            problems,
        ),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    session_ttl_s: Option<u64>,
    session_idle_s: Option<u64>,
    login_failures_per_minute: Option<u32>,
    time_zone: Option<String>,
}

/// `[admin]`: sessions of at least a minute, at least one failed login a minute.
pub(super) fn admin(value: Option<&toml::Value>, problems: &mut Vec<String>) -> AdminConfig {
    let raw: RawAdmin = section("admin", value, problems);
    let d = AdminConfig::default();
    AdminConfig {
        session_ttl_s: at_least(
            "admin.session_ttl_s",
            raw.session_ttl_s,
            d.session_ttl_s,
            60,
            problems,
        ),
        session_idle_s: at_least(
            "admin.session_idle_s",
            raw.session_idle_s,
            d.session_idle_s,
            60,
            problems,
        ),
        login_failures_per_minute: at_least(
            "admin.login_failures_per_minute",
            raw.login_failures_per_minute,
            d.login_failures_per_minute,
            1,
            problems,
        ),
        time_zone: match raw
            .time_zone
            .as_deref()
            .map(str::trim)
            .filter(|z| !z.is_empty())
        {
            None => d.time_zone,
            Some(z) => crate::domain::zone::Zone::parse(z).unwrap_or_else(|e| {
                problems.push(format!("admin.time_zone: {e}"));
                d.time_zone
            }),
        },
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    allowed_origins: Option<Vec<String>>,
}

/// `[outbound] allowed_origins`: each an origin (`https://host[:port]`).
pub(super) fn outbound(
    value: Option<&toml::Value>,
    problems: &mut Vec<String>,
) -> Vec<crate::net::Origin> {
    let raw: RawOutbound = section("outbound", value, problems);
    let mut origins = Vec::new();
    for (i, o) in raw.allowed_origins.iter().flatten().enumerate() {
        match crate::net::Origin::parse_bare(o) {
            Ok(origin) => origins.push(origin),
            Err(e) => problems.push(format!("outbound.allowed_origins[{i}]: {o:?} {e}")),
        }
    }
    origins
}
