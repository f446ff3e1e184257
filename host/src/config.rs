//! `payhost.toml`. The names are a contract (shops, adapters and tests are written against them):
//! `listen`, `public_url`, `database`, `api_token`, `[plugins.<id>] manifest` (or the single
//! `[plugin] manifest`), and `[merchants.<id>]` tables: `plugin` (which component pays for that
//! merchant) and `settings` (that component's schema; the host checks nothing but what the
//! component's `validate-settings` says). The older flat form (settings as the merchant table's
//! own keys) is still read.
//!
//! Values pasted with spaces or line breaks around them are trimmed; anything still malformed is
//! reported with the field named and the rule it broke, every problem at once.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `database = "payhost.db"` / `database = "postgres://…"`, or `[database] url = "…"` with
/// `pool_size`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawDatabase {
    Name(String),
    Table(RawDatabaseTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabaseTable {
    url: String,
    pool_size: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    public_url: Option<String>,
    database: Option<RawDatabase>,
    api_token: Option<String>,
    cache_dir: Option<String>,
    admin_password_hash: Option<String>,
    trust_proxy: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    metrics_listen: Option<String>,
    #[serde(default)]
    plugin: RawPlugin,
    #[serde(default)]
    plugins: BTreeMap<String, RawPlugin>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    recovery: RawRecovery,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    merchants: BTreeMap<String, RawMerchant>,
    #[serde(default)]
    webhooks: RawWebhooks,
    #[serde(default)]
    outbound: RawOutbound,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    manifest: Option<String>,
    call_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    timeout_ms: Option<u64>,
    give_up_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    keep_alive_idle_ms: Option<u64>,
    notify_per_ip_per_s: Option<u32>,
    notify_per_merchant_per_s: Option<u32>,
    return_per_ip_per_s: Option<u32>,
    admin_per_ip_per_s: Option<u32>,
    api_per_ip_per_s: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    raw_notification_days: Option<u32>,
    refused_notification_days: Option<u32>,
    refused_notifications_per_merchant: Option<u32>,
    prune_interval_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecovery {
    enabled: Option<bool>,
    after_s: Option<u64>,
    interval_s: Option<u64>,
    max_age_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    session_ttl_s: Option<u64>,
    login_failures_per_minute: Option<u32>,
    time_zone: Option<String>,
}

/// A merchant table as written in the file or sent to `PUT /v1/merchants/{id}` (every field
/// optional here; validation says what is missing).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct RawMerchant {
    /// The id of the component that pays for this merchant (`[plugins.<id>]`); may be left out
    /// when the host has one.
    pub plugin: Option<String>,
    /// The component's settings. `<name>_file` reads a setting of kind `pem` from a file
    /// (relative to payhost.toml; not through the API).
    pub settings: Option<BTreeMap<String, SettingValue>>,
    pub shop_webhook_url: Option<String>,
    pub shop_webhook_secret: Option<String>,
    /// Origins (`https://shop.example`) a payment's `return_url` may point to; any when empty.
    pub shop_origins: Option<Vec<String>>,
    /// The older flat form: every other key is a setting.
    #[serde(flatten)]
    pub flat: BTreeMap<String, SettingValue>,
}

/// A setting's value as written: text, or a number or boolean taken as its text.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SettingValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

impl SettingValue {
    pub fn text(&self) -> String {
        match self {
            SettingValue::Text(s) => s.clone(),
            SettingValue::Integer(i) => i.to_string(),
            SettingValue::Bool(b) => b.to_string(),
        }
    }
}

impl RawMerchant {
    /// Every setting, from `settings` and the flat form, trimmed (empty values left out).
    pub fn setting_values(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .flatten()
            .chain(self.flat.iter())
            .map(|(k, v)| (k.clone(), v.text().trim().to_owned()))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

/// The plugin settings of a merchant (keys of the component's settings schema) and the host's own
/// per-merchant settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MerchantSettings {
    /// The component's settings, passed with every call. (Stored under the key `plugin`, as
    /// older versions did, so their rows and seed hashes stay valid.)
    #[serde(rename = "plugin")]
    pub settings: Vec<(String, String)>,
    /// The component that pays for this merchant; empty in rows written before hosts had several
    /// (the host's first component).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plugin_id: String,
    /// Settings read from `<name>_file` (checked to be of kind `pem` once the component is loaded).
    #[serde(skip)]
    pub from_files: Vec<String>,
    pub shop_webhook_url: Option<String>,
    pub shop_webhook_secret: Option<String>,
    /// The shop's origins: a payment's `return_url` must be on one of them when any is set.
    /// Left out of the stored JSON when empty, so the seed hash of older tables is unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shop_origins: Vec<String>,
    /// The digest of the settings as the shop last sent them (`settings_digest` of
    /// `GET /v1/merchants/{id}`): an adapter sends its settings again only when its own digest
    /// differs. None until settings arrive through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_digest: Option<String>,
}

impl MerchantSettings {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `url` may be a payment's `return_url`: always when no shop origin is set, else
    /// only on one of them (scheme, host and port compared).
    pub fn return_url_allowed(&self, url: &str) -> bool {
        self.shop_origins.is_empty()
            || origin_of(url)
                .is_some_and(|o| self.shop_origins.iter().any(|s| s.eq_ignore_ascii_case(&o)))
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, the port left out when it is the default.
pub fn origin_of(url: &str) -> Option<String> {
    let uri = url.trim().parse::<http::Uri>().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .filter(|p| !matches!((scheme.as_str(), p), ("http", 80) | ("https", 443)));
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

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
/// `interval_s`, at most 6 hours), until it is paid, closed or older than `max_age_s`.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub enabled: bool,
    pub after_s: u64,
    pub interval_s: u64,
    pub max_age_s: u64,
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
    pub session_ttl_s: u64,
    pub login_failures_per_minute: u32,
    /// `time_zone`: the zone the admin pages show times in (stored as UTC).
    pub time_zone: crate::domain::zone::Zone,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            session_ttl_s: 8 * 3600,
            login_failures_per_minute: 5,
            time_zone: crate::domain::zone::Zone::default(),
        }
    }
}

/// `[plugins.<id>]` (or `[plugin]`): a component's manifest.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The table's key; None for the single `[plugin]` table (the id is the manifest's).
    pub id: Option<String>,
    pub manifest: PathBuf,
    /// A tighter wall-clock limit per call than the manifest's (never a looser one).
    pub call_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    /// The SQLite file (when `database_url` is None).
    pub database: PathBuf,
    /// `database = "postgres://…"`: PostgreSQL instead of the SQLite file (several replicas).
    pub database_url: Option<String>,
    /// Connections of this replica's PostgreSQL pool.
    pub database_pool_size: usize,
    pub api_token: String,
    pub cache_dir: PathBuf,
    /// The components: `[plugin]` first, then `[plugins.<id>]` in the order of their ids (the
    /// first is the one merchants stored by older versions, which name none, use).
    pub plugins: Vec<PluginSource>,
    pub merchants: BTreeMap<String, MerchantSettings>,
    pub webhooks: WebhookConfig,
    /// `[outbound] allowed_origins`: origins the operator allows explicitly (provider URLs saved
    /// through the API or the admin page must use one of them; they may be private addresses).
    pub allowed_origins: Vec<crate::net::Origin>,
    /// The argon2 hash (PHC string) of the admin password; without one the admin page cannot be
    /// logged into (`payhost admin-password` makes one).
    pub admin_password_hash: Option<String>,
    /// `trusted_proxies`: reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are
    /// believed (the older `trust_proxy = true` means loopback only). Empty: the peer is the client.
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
    /// What the operator should know about the file (deprecated keys); logged at start.
    pub warnings: Vec<String>,
    /// Serve `/metrics` without a token on this separate address (else it needs the API token).
    pub metrics_listen: Option<SocketAddr>,
    pub limits: Limits,
    pub retention: Retention,
    pub recovery: Recovery,
    pub admin: AdminConfig,
}

fn trimmed(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A merchant id appears in URLs: letters, digits, '_' and '-', up to 64.
pub fn valid_merchant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>().is_ok_and(|x| x.host().is_some())
}

/// Turns a merchant table into settings, reading `<name>_file` settings relative to `base`
/// (`None`: files are not allowed, e.g. through the API, and none is opened). Problems are pushed
/// as `merchants.<id>.<field>: <rule>`.
pub fn merchant_settings(
    id: &str,
    raw: &RawMerchant,
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> MerchantSettings {
    let mut settings = Vec::new();
    let mut from_files = Vec::new();
    for (name, value) in raw.setting_values() {
        let Some(setting) = name.strip_suffix("_file") else {
            settings.push((name, value));
            continue;
        };
        let Some(base) = base else {
            problems.push(format!(
                "{name}: files are read only from payhost.toml; send the PEM text itself in {setting}"
            ));
            continue;
        };
        let full = base.join(&value);
        match std::fs::read_to_string(&full) {
            Ok(pem) => {
                from_files.push(setting.to_owned());
                settings.push((setting.to_owned(), pem));
            }
            Err(e) => problems.push(format!(
                "merchants.{id}.{name}: cannot read {} ({e})",
                full.display()
            )),
        }
    }
    let shop_webhook_url = trimmed(&raw.shop_webhook_url);
    if let Some(u) = &shop_webhook_url {
        if !is_http_url(u) {
            problems.push(format!(
                "merchants.{id}.shop_webhook_url: must be an absolute http or https URL"
            ));
        }
    }
    let shop_webhook_secret = trimmed(&raw.shop_webhook_secret);
    if shop_webhook_secret.as_ref().is_some_and(|s| s.len() < 16) {
        problems.push(format!(
            "merchants.{id}.shop_webhook_secret: must be at least 16 characters"
        ));
    }
    if shop_webhook_url.is_some() && shop_webhook_secret.is_none() {
        problems.push(format!(
            "merchants.{id}.shop_webhook_secret: is required when shop_webhook_url is set (webhooks are signed with it)"
        ));
    }
    let mut shop_origins = Vec::new();
    for o in raw.shop_origins.iter().flatten() {
        let text = o.trim().trim_end_matches('/');
        let bare = text
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.contains(['/', '?', '#', '@']));
        match origin_of(text) {
            Some(origin) if bare => shop_origins.push(origin),
            _ => problems.push(format!(
                "merchants.{id}.shop_origins: {o:?} is not an origin such as https://shop.example"
            )),
        }
    }
    MerchantSettings {
        settings,
        plugin_id: trimmed(&raw.plugin).unwrap_or_default(),
        from_files,
        shop_webhook_url,
        shop_webhook_secret,
        shop_origins,
        settings_digest: None,
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a configuration; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).context("not a valid payhost configuration")?;
        let mut problems = Vec::new();

        let listen_text = trimmed(&raw.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.push(format!(
                "listen: {listen_text:?} is not an address such as 127.0.0.1:8080"
            ));
            "127.0.0.1:8080".parse().unwrap()
        });
        let public_url = match trimmed(&raw.public_url) {
            Some(u) if is_http_url(&u) && !u.contains('?') => u.trim_end_matches('/').to_owned(),
            Some(_) => {
                problems.push(
                    "public_url: must be an absolute http or https URL without a query".into(),
                );
                String::new()
            }
            None => {
                problems.push(
                    "public_url: is required (the base of the notify and return URLs given to the payment provider)".into(),
                );
                String::new()
            }
        };
        let (db_name, pool_size) = match &raw.database {
            Some(RawDatabase::Name(n)) => (trimmed(&Some(n.clone())), None),
            Some(RawDatabase::Table(t)) => (trimmed(&Some(t.url.clone())), t.pool_size),
            None => (None, None),
        };
        let database_pool_size = pool_size.unwrap_or(crate::store::postgres::DEFAULT_POOL_SIZE);
        if !(1..=1000).contains(&database_pool_size) {
            problems.push("database.pool_size: must be between 1 and 1000".into());
        }
        let database_url = db_name
            .clone()
            .filter(|n| crate::store::postgres::is_postgres_url(n));
        if let Some(url) = &database_url {
            if let Err(e) = url.parse::<tokio_postgres::Config>() {
                problems.push(format!(
                    "database: not a valid PostgreSQL URL ({}): {e}",
                    crate::store::postgres::redact_url(url)
                ));
            }
        } else if pool_size.is_some() {
            problems.push("database.pool_size: only for a PostgreSQL url".into());
        }
        // With PostgreSQL the compile cache defaults to payhost.db.cache beside the config (per
        // replica: each machine compiles once).
        let database = base.join(
            db_name
                .filter(|_| database_url.is_none())
                .unwrap_or_else(|| "payhost.db".into()),
        );
        let api_token = match trimmed(&raw.api_token) {
            Some(t) if t.len() >= 16 && !t.chars().any(char::is_whitespace) => t,
            Some(_) => {
                problems.push("api_token: must be at least 16 characters without spaces".into());
                String::new()
            }
            None => {
                problems.push("api_token: is required (bearer token of /v1 and /admin)".into());
                String::new()
            }
        };
        let cache_dir = match trimmed(&raw.cache_dir) {
            Some(d) => base.join(d),
            None => {
                let mut d = database.clone().into_os_string();
                d.push(".cache");
                PathBuf::from(d)
            }
        };
        let call_timeout_ms = raw.plugin.call_timeout_ms;
        let mut plugins = Vec::new();
        let single = raw.plugin.manifest.is_some() || raw.plugins.is_empty();
        if single {
            plugins.push(PluginSource {
                id: None,
                manifest: base
                    .join(trimmed(&raw.plugin.manifest).unwrap_or_else(|| "plugin.toml".into())),
                call_timeout_ms,
            });
        }
        for (id, p) in &raw.plugins {
            let Some(manifest) = trimmed(&p.manifest) else {
                problems.push(format!(
                    "plugins.{id}.manifest: is required (the component's plugin.toml)"
                ));
                continue;
            };
            if !valid_merchant_id(id) {
                problems.push(format!(
                    "plugins.{id}: the id must be 1 to 64 letters, digits, '_' or '-' (the component's id)"
                ));
            }
            plugins.push(PluginSource {
                id: Some(id.clone()),
                manifest: base.join(manifest),
                call_timeout_ms: p.call_timeout_ms.or(call_timeout_ms),
            });
        }
        for (name, t) in std::iter::once(("plugin".to_owned(), call_timeout_ms)).chain(
            raw.plugins
                .iter()
                .map(|(id, p)| (format!("plugins.{id}"), p.call_timeout_ms)),
        ) {
            if t.is_some_and(|t| !(100..=600_000).contains(&t)) {
                problems.push(format!(
                    "{name}.call_timeout_ms: must be between 100 and 600000 milliseconds"
                ));
            }
        }
        let mut merchants = BTreeMap::new();
        for (id, m) in &raw.merchants {
            if !valid_merchant_id(id) {
                problems.push(format!(
                    "merchants.{id}: the id must be 1 to 64 letters, digits, '_' or '-'"
                ));
                continue;
            }
            merchants.insert(
                id.clone(),
                merchant_settings(id, m, Some(base), &mut problems),
            );
        }
        let dw = WebhookConfig::default();
        let webhooks = WebhookConfig {
            retry_base_ms: raw
                .webhooks
                .retry_base_ms
                .unwrap_or(dw.retry_base_ms)
                .max(1),
            retry_max_ms: raw.webhooks.retry_max_ms.unwrap_or(dw.retry_max_ms).max(1),
            timeout_ms: raw.webhooks.timeout_ms.unwrap_or(dw.timeout_ms).max(1),
            give_up_after_ms: raw
                .webhooks
                .give_up_after_ms
                .unwrap_or(dw.give_up_after_ms)
                .max(1),
        };
        let admin_password_hash = trimmed(&raw.admin_password_hash);
        if let Some(h) = &admin_password_hash {
            if let Err(e) = crate::auth::check_password_hash(h) {
                problems.push(format!(
                    "admin_password_hash: not an argon2 hash ({e}); make one with `payhost admin-password`"
                ));
            }
        }
        let metrics_listen = trimmed(&raw.metrics_listen).and_then(|m| match m.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "metrics_listen: {m:?} is not an address such as 127.0.0.1:9090"
                ));
                None
            }
        });
        let dl = Limits::default();
        let rl = &raw.limits;
        let limits = Limits {
            max_connections: rl.max_connections.unwrap_or(dl.max_connections).max(1),
            header_read_timeout_ms: rl
                .header_read_timeout_ms
                .unwrap_or(dl.header_read_timeout_ms)
                .max(1),
            body_read_timeout_ms: rl
                .body_read_timeout_ms
                .unwrap_or(dl.body_read_timeout_ms)
                .max(1),
            keep_alive_idle_ms: rl
                .keep_alive_idle_ms
                .unwrap_or(dl.keep_alive_idle_ms)
                .max(1),
            notify_per_ip_per_s: rl.notify_per_ip_per_s.unwrap_or(dl.notify_per_ip_per_s),
            notify_per_merchant_per_s: rl
                .notify_per_merchant_per_s
                .unwrap_or(dl.notify_per_merchant_per_s),
            return_per_ip_per_s: rl.return_per_ip_per_s.unwrap_or(dl.return_per_ip_per_s),
            admin_per_ip_per_s: rl.admin_per_ip_per_s.unwrap_or(dl.admin_per_ip_per_s),
            api_per_ip_per_s: rl.api_per_ip_per_s.unwrap_or(dl.api_per_ip_per_s),
        };
        let dv = Recovery::default();
        let recovery = Recovery {
            enabled: raw.recovery.enabled.unwrap_or(dv.enabled),
            after_s: raw.recovery.after_s.unwrap_or(dv.after_s),
            interval_s: raw.recovery.interval_s.unwrap_or(dv.interval_s).max(1),
            max_age_s: raw.recovery.max_age_s.unwrap_or(dv.max_age_s),
        };
        let dr = Retention::default();
        let retention = Retention {
            raw_notification_days: raw
                .retention
                .raw_notification_days
                .unwrap_or(dr.raw_notification_days),
            refused_notification_days: raw
                .retention
                .refused_notification_days
                .unwrap_or(dr.refused_notification_days),
            refused_notifications_per_merchant: raw
                .retention
                .refused_notifications_per_merchant
                .unwrap_or(dr.refused_notifications_per_merchant),
            prune_interval_s: raw
                .retention
                .prune_interval_s
                .unwrap_or(dr.prune_interval_s)
                .max(1),
        };
        if retention.raw_notification_days == 0 {
            problems.push("retention.raw_notification_days: must be at least 1".into());
        }
        if retention.refused_notification_days == 0 {
            problems.push("retention.refused_notification_days: must be at least 1".into());
        }
        if !(1..=1_000_000).contains(&retention.refused_notifications_per_merchant) {
            problems.push(
                "retention.refused_notifications_per_merchant: must be between 1 and 1000000"
                    .into(),
            );
        }
        let mut warnings = Vec::new();
        let mut trusted_proxies = Vec::new();
        for (i, c) in raw.trusted_proxies.iter().flatten().enumerate() {
            match crate::proxy::Cidr::parse(c) {
                Ok(cidr) => trusted_proxies.push(cidr),
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
                if !trusted_proxies.contains(&c) {
                    trusted_proxies.push(c);
                }
            }
        }
        let da = AdminConfig::default();
        let admin = AdminConfig {
            session_ttl_s: raw.admin.session_ttl_s.unwrap_or(da.session_ttl_s).max(60),
            login_failures_per_minute: raw
                .admin
                .login_failures_per_minute
                .unwrap_or(da.login_failures_per_minute)
                .max(1),
            time_zone: match trimmed(&raw.admin.time_zone) {
                None => da.time_zone,
                Some(z) => crate::domain::zone::Zone::parse(&z).unwrap_or_else(|e| {
                    problems.push(format!("admin.time_zone: {e}"));
                    da.time_zone
                }),
            },
        };
        let mut allowed_origins = Vec::new();
        for (i, o) in raw.outbound.allowed_origins.iter().flatten().enumerate() {
            match crate::net::Origin::parse(o) {
                Ok(origin) => allowed_origins.push(origin),
                Err(e) => problems.push(format!("outbound.allowed_origins[{i}]: {o:?} {e}")),
            }
        }
        if !problems.is_empty() {
            bail!("configuration problems:\n  - {}", problems.join("\n  - "));
        }
        Ok(Config {
            listen,
            public_url,
            database,
            database_url,
            database_pool_size,
            api_token,
            cache_dir,
            plugins,
            merchants,
            webhooks,
            allowed_origins,
            admin_password_hash,
            trusted_proxies,
            warnings,
            metrics_listen,
            limits,
            retention,
            recovery,
            admin,
        })
    }

    /// `{public_url}/notify/{id}`: where the provider sends this merchant's notifications.
    pub fn notify_url(&self, merchant: &str) -> String {
        format!("{}/notify/{merchant}", self.public_url)
    }

    /// `{public_url}/return/{id}`: where the provider sends this merchant's buyers back.
    pub fn return_url(&self, merchant: &str) -> String {
        format!("{}/return/{merchant}", self.public_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_pasted_values_and_reports_every_problem() {
        let ok = Config::parse(
            r#"
            listen = "127.0.0.1:9000"
            public_url = " https://pay.example.com/ "
            api_token = "  0123456789abcdef0123  "
            [merchants.shop1]
            partner = " 2088101122136241\n"
            key = "\t10000000000000000000000000000000 "
            seller_email = "s@example.com"
            "#,
            Path::new("/tmp"),
        )
        .unwrap();
        assert_eq!(ok.public_url, "https://pay.example.com");
        assert_eq!(ok.api_token, "0123456789abcdef0123");
        let m = &ok.merchants["shop1"];
        assert_eq!(m.get("partner"), Some("2088101122136241"));
        assert_eq!(m.get("key"), Some("10000000000000000000000000000000"));
        assert_eq!(
            ok.notify_url("shop1"),
            "https://pay.example.com/notify/shop1"
        );

        let err = Config::parse(
            r#"
            listen = "nowhere"
            public_url = "ftp://x"
            api_token = "short"
            [merchants."bad id"]
            [merchants.m2]
            private_key_file = "/nonexistent.pem"
            shop_webhook_url = "https://shop.example/hook"
            "#,
            Path::new("/tmp"),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        for needle in [
            "listen:",
            "public_url:",
            "api_token:",
            "merchants.bad id:",
            "merchants.m2.private_key_file",
            "merchants.m2.shop_webhook_secret",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(
            Config::parse("colour = 1", Path::new(".")).is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn merchants_name_a_plugin_and_carry_its_settings() {
        let dir = std::env::temp_dir().join(format!("payhost-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k.pem"), "-----BEGIN PRIVATE KEY-----\nAA\n").unwrap();
        let c = Config::parse(
            r#"
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
            [plugins.wap-pay]
            manifest = "plugin.toml"
            [plugins.testpay]
            manifest = "testpay/plugin.toml"
            call_timeout_ms = 2000
            [merchants.a]
            plugin = "testpay"
            shop_origins = ["https://shop.example"]
            [merchants.a.settings]
            merchant_no = " M1 "
            api_secret = "0123456789abcdef"
            retries = 3
            [merchants.b]
            partner = "2088101122136241"
            private_key_file = "k.pem"
            "#,
            &dir,
        )
        .unwrap();
        assert_eq!(c.plugins.len(), 2, "no [plugin] table: only [plugins.*]");
        // `[plugins.*]` in the order of their ids.
        assert_eq!(c.plugins[0].id.as_deref(), Some("testpay"));
        assert_eq!(c.plugins[0].manifest, dir.join("testpay/plugin.toml"));
        assert_eq!(c.plugins[0].call_timeout_ms, Some(2000));
        assert_eq!(c.plugins[1].id.as_deref(), Some("wap-pay"));
        assert_eq!(c.plugins[1].call_timeout_ms, None);
        let a = &c.merchants["a"];
        assert_eq!(a.plugin_id, "testpay");
        assert_eq!(a.get("merchant_no"), Some("M1"), "trimmed");
        assert_eq!(a.get("retries"), Some("3"), "numbers are taken as text");
        let b = &c.merchants["b"];
        assert_eq!(b.plugin_id, "", "the flat form names no plugin");
        assert!(b.get("private_key").unwrap().starts_with("-----BEGIN"));
        assert_eq!(b.from_files, ["private_key"]);

        let single = Config::parse(
            r#"
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
            [plugin]
            manifest = "p.toml"
            "#,
            &dir,
        )
        .unwrap();
        assert_eq!(single.plugins.len(), 1);
        assert_eq!(single.plugins[0].id, None);
        assert_eq!(single.plugins[0].manifest, dir.join("p.toml"));

        let err = Config::parse(
            r#"
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
            [plugins.x]
            call_timeout_ms = 5
            [merchants.m]
            cert_file = "missing.pem"
            "#,
            &dir,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        for needle in [
            "plugins.x.manifest: is required",
            "plugins.x.call_timeout_ms",
            "merchants.m.cert_file: cannot read",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn trusted_proxies_and_the_older_trust_proxy() {
        let head = r#"
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
        "#;
        let c = Config::parse(
            &format!("{head}\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\"]"),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.warnings.is_empty());
        let old = Config::parse(&format!("{head}\ntrust_proxy = true"), Path::new("/srv")).unwrap();
        assert_eq!(old.trusted_proxies, crate::proxy::loopback());
        assert!(
            old.warnings[0].contains("loopback only"),
            "{:?}",
            old.warnings
        );
        let none = Config::parse(head, Path::new("/srv")).unwrap();
        assert!(none.trusted_proxies.is_empty());
        let bad = Config::parse(
            &format!("{head}\ntrusted_proxies = [\"10.0.0.1/8\", \"proxy\"]"),
            Path::new("/srv"),
        )
        .unwrap_err();
        let text = format!("{bad:#}");
        assert!(
            text.contains("trusted_proxies[0]") && text.contains("trusted_proxies[1]"),
            "{text}"
        );
        let long = "m".repeat(65);
        let bad_id = Config::parse(
            &format!("{head}\n[merchants.{long}]\npartner = \"1\""),
            Path::new("/srv"),
        )
        .unwrap_err();
        let text = format!("{bad_id:#}");
        assert!(
            text.contains(&format!("merchants.{long}: the id must be 1 to 64")),
            "{text}"
        );
    }

    #[test]
    fn database_is_a_sqlite_file_or_a_postgres_url() {
        let head = r#"
            listen = "127.0.0.1:9000"
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
        "#;
        let sqlite = Config::parse(head, Path::new("/srv")).unwrap();
        assert_eq!(sqlite.database, Path::new("/srv/payhost.db"));
        assert_eq!(sqlite.database_url, None);
        let pg = Config::parse(
            &format!("{head}\ndatabase = \" postgres://payhost@db.internal/payhost \""),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(
            pg.database_url.as_deref(),
            Some("postgres://payhost@db.internal/payhost")
        );
        assert_eq!(pg.cache_dir, Path::new("/srv/payhost.db.cache"));
        let table = Config::parse(
            &format!("{head}\n[database]\nurl = \"postgresql://u:pw@db/p\"\npool_size = 4"),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(
            table.database_url.as_deref(),
            Some("postgresql://u:pw@db/p")
        );
        assert_eq!(table.database_pool_size, 4);
        let bad = Config::parse(
            &format!("{head}\n[database]\nurl = \"postgres://u:secret@db/p?sslmode=bogus\"\npool_size = 0"),
            Path::new("/srv"),
        )
        .unwrap_err();
        let text = format!("{bad:#}");
        assert!(text.contains("database.pool_size"), "{text}");
        assert!(text.contains("not a valid PostgreSQL URL"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
