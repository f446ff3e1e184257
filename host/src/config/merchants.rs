//! `[merchants.<id>]`: which component pays for a merchant, that component's settings (the host
//! checks nothing but what the component's `validate-settings` says), and the host's own
//! per-merchant settings (shop webhook, shop origins). The same rules read a merchant sent to
//! `PUT /v1/merchants/{id}`.

use super::{section, trimmed};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A merchant table as written in the file or sent to `PUT /v1/merchants/{id}` (every field
/// optional here; validation says what is missing).
#[derive(Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct RawMerchant {
    /// The id of the component that pays for this merchant (`[plugins.<id>]`); may be left out
    /// when the host has one.
    pub plugin: Option<String>,
    /// The component's settings. `<name>_file` reads a setting of kind `pem` from a file
    /// (relative to payhost.toml; not through the API).
    #[serde(default, deserialize_with = "unique_settings")]
    pub settings: Option<BTreeMap<String, SettingValue>>,
    pub shop_webhook_url: Option<String>,
    pub shop_webhook_secret: Option<String>,
    /// Origins (`https://shop.example`) a payment's `return_url` may point to; any when empty.
    pub shop_origins: Option<Vec<String>>,
    /// The older flat form: every other key is a setting.
    #[serde(flatten, deserialize_with = "unique_flat")]
    pub flat: BTreeMap<String, SettingValue>,
}

/// Settings whose names are each given once. JSON lets a key repeat, and a map keeps the last:
/// `"partner"` twice would store whichever came second, unseen by the one who sent it (the
/// component refuses a repeated setting for the same reason). TOML refuses it itself.
struct UniqueSettings(BTreeMap<String, SettingValue>);

impl<'de> Deserialize<'de> for UniqueSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueSettings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("settings by name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, SettingValue>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "setting {k} is given more than once (give each setting once)"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueSettings(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn unique_settings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, SettingValue>>, D::Error> {
    Ok(Option::<UniqueSettings>::deserialize(d)?.map(|u| u.0))
}

fn unique_flat<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SettingValue>, D::Error> {
    Ok(UniqueSettings::deserialize(d)?.0)
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

/// The names of what was sent, never the values (secrets are among them).
impl std::fmt::Debug for RawMerchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> = self.settings.iter().flatten().map(|(k, _)| k).collect();
        let flat: Vec<&String> = self.flat.keys().collect();
        f.debug_struct("RawMerchant")
            .field("plugin", &self.plugin)
            .field("settings", &names)
            .field("shop_webhook_url", &self.shop_webhook_url)
            .field(
                "shop_webhook_secret",
                &self.shop_webhook_secret.as_ref().map(|_| "***"),
            )
            .field("shop_origins", &self.shop_origins)
            .field("flat", &flat)
            .finish()
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
/// per-merchant settings. `Default`: no settings, the host's first component, nothing else.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The names of the settings, never their values (keys, passwords and private keys are among
/// them), and whether a shop webhook secret is set.
impl std::fmt::Debug for MerchantSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.settings.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("MerchantSettings")
            .field("settings", &names)
            .field("plugin_id", &self.plugin_id)
            .field("from_files", &self.from_files)
            .field("shop_webhook_url", &self.shop_webhook_url)
            .field(
                "shop_webhook_secret",
                &self.shop_webhook_secret.as_ref().map(|_| "***"),
            )
            .field("shop_origins", &self.shop_origins)
            .field("settings_digest", &self.settings_digest)
            .finish()
    }
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
    if !crate::net::port_is_plain(uri.authority()?) {
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

/// A merchant id appears in URLs: letters, digits, '_' and '-', up to 64.
pub fn valid_merchant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What to add to "must be an absolute http or https URL" when `u` would be one but for a
/// character a URL must carry percent-encoded (a space, `<`, `"`, a Chinese character…).
pub fn url_encoding_hint(u: &str, lang_zh: bool) -> &'static str {
    let bad = u.chars().any(|c| {
        !c.is_ascii()
            || c.is_ascii_whitespace()
            || c.is_ascii_control()
            || "<>\"{}|\\^`".contains(c)
    });
    match (bad, lang_zh) {
        (false, _) => "",
        (true, true) => "；空格、中文和 < > \" { } | \\ ^ ` 等字符须先做百分号编码（%XX）",
        (true, false) => {
            "; percent-encode (%XX) spaces, non-ASCII characters and < > \" { } | \\ ^ `"
        }
    }
}

pub fn is_http_url(u: &str) -> bool {
    // A scheme is case-insensitive (`HTTP://` is http).
    let starts = |p: &str| u.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
    (starts("http://") || starts("https://"))
        && u.parse::<http::Uri>().is_ok_and(|x| {
            x.host().is_some() && x.authority().is_some_and(crate::net::port_is_plain)
        })
}

/// The host's own keys of a merchant table that are long enough to be told from a mistyped
/// one (within two letters) without mistaking a component's setting for one.
const HOST_KEYS: &[&str] = &["shop_webhook_url", "shop_webhook_secret", "shop_origins"];

/// The keys of a merchant table that are not settings of the older flat form.
const TABLE_KEYS: &[&str] = &[
    "plugin",
    "settings",
    "shop_webhook_url",
    "shop_webhook_secret",
    "shop_origins",
];

/// The host key a merchant table's `key` was meant to be, when it is within two letters of one,
/// also without its `shop_` (`shop_origin`, `webhook_url`, `origins`).
fn meant_host_key(key: &str) -> Option<&'static str> {
    if HOST_KEYS.contains(&key) {
        return None;
    }
    HOST_KEYS
        .iter()
        .find(|h| strsim::levenshtein(key, h) <= 2)
        .copied()
}

/// The host key a setting the component does not know was perhaps meant as, written without its
/// `shop_` prefix (`webhook_url`, `origins`). Only a hint once the component refused the name:
/// another component may well have a setting of that name.
pub(super) fn host_key_without_prefix(key: &str) -> Option<&'static str> {
    let prefixed = format!("shop_{key}");
    HOST_KEYS
        .iter()
        .find(|h| strsim::levenshtein(&prefixed, h) <= 2)
        .copied()
}

/// Whether a `<name>_file` value is the PEM text itself rather than a file name (pasted into
/// the wrong key): it is then never shown, since it may be a private key.
fn is_pem_text(value: &str) -> bool {
    value.contains("-----") || value.contains('\n')
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
    // In the flat form any other key is a setting, so a mistyped host key would be passed on
    // to the component: one within two letters of a host key is named as what was meant.
    let mistyped: Vec<(&str, &str)> = raw
        .flat
        .keys()
        .filter_map(|k| meant_host_key(k).map(|h| (k.as_str(), h)))
        .collect();
    for (key, meant) in &mistyped {
        problems.push(format!(
            "merchants.{id}.{key}: unknown key; did you mean {meant}?"
        ));
    }
    // Each setting with the key it was written under: `settings.<name>` or, flat, `<name>`.
    let nested = raw
        .settings
        .iter()
        .flatten()
        .map(|(k, v)| (format!("settings.{k}"), k, v));
    let flat = raw.flat.iter().map(|(k, v)| (k.clone(), k, v));
    let all: Vec<_> = nested.chain(flat).collect();
    for (key, name, value) in &all {
        let value = value.text().trim().to_owned();
        if value.is_empty() || mistyped.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let Some(setting) = name.strip_suffix("_file") else {
            settings.push(((*name).clone(), value));
            continue;
        };
        // The text and its file both given: which one was meant cannot be told.
        if all
            .iter()
            .any(|(_, n, v)| n.as_str() == setting && !v.text().trim().is_empty())
        {
            problems.push(format!(
                "merchants.{id}.{key}: {setting} is given as well; give either {setting} (the PEM text) or {setting}_file (a file holding it), not both"
            ));
            continue;
        }
        let Some(base) = base else {
            problems.push(format!(
                "{name}: files are read only from payhost.toml; send the PEM text itself in {setting}"
            ));
            continue;
        };
        if is_pem_text(&value) {
            problems.push(format!(
                "merchants.{id}.{key}: holds PEM text, not a file name; put the PEM in {setting} instead, or name the file that holds it"
            ));
            continue;
        }
        let full = base.join(&value);
        if full.is_dir() {
            problems.push(format!(
                "merchants.{id}.{key}: {} is a directory, not a file; name the PEM file itself (such as {})",
                full.display(),
                full.join(format!("{setting}.pem")).display()
            ));
            continue;
        }
        match std::fs::read_to_string(&full) {
            Ok(pem) => {
                from_files.push(setting.to_owned());
                settings.push((setting.to_owned(), pem));
            }
            Err(e) => problems.push(format!(
                "merchants.{id}.{key}: cannot read {} ({e})",
                full.display()
            )),
        }
    }
    let shop_webhook_url = trimmed(&raw.shop_webhook_url);
    if let Some(u) = &shop_webhook_url {
        if !is_http_url(u) {
            problems.push(format!(
                "merchants.{id}.shop_webhook_url: must be an absolute http or https URL{}",
                url_encoding_hint(u, false)
            ));
        } else if u.contains('@') && crate::net::Origin::parse(u).is_err() {
            // The sender refuses it, every time, until the webhooks are given up on; and the
            // password would be shown wherever the URL is.
            problems.push(format!(
                "merchants.{id}.shop_webhook_url: must not carry a user name or password (webhooks are signed with shop_webhook_secret instead)"
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

/// Where a merchant's settings were written in payhost.toml, for the problems its component
/// finds with them once loaded ([`super::Config::setting_problem`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Written {
    /// Whether the merchant has a `[merchants.<id>.settings]` table.
    pub nested: bool,
    /// Each setting read from the file and the key it was written under, below
    /// `merchants.<id>.` (`settings.partner`, `partner`, `private_key_file`).
    pub keys: BTreeMap<String, String>,
    /// The settings whose `<name>_file` could not be read (that problem is listed already).
    pub unread: BTreeSet<String>,
    /// The settings were written in a mistyped table (`[merchants.<id>.setings]`, said once):
    /// the ones the component requires are not also said missing.
    pub settings_table_mistyped: bool,
}

impl Written {
    fn of(raw: &RawMerchant, read: &MerchantSettings) -> Written {
        let setting = |k: &str| k.strip_suffix("_file").unwrap_or(k).to_owned();
        let nested = raw
            .settings
            .iter()
            .flatten()
            .map(|(k, _)| (setting(k), format!("settings.{k}")));
        let flat = raw.flat.keys().map(|k| (setting(k), k.clone()));
        Written {
            nested: raw.settings.is_some(),
            keys: flat.chain(nested).collect(),
            unread: raw
                .setting_values()
                .into_iter()
                .filter_map(|(k, _)| k.strip_suffix("_file").map(str::to_owned))
                .filter(|s| !read.from_files.contains(s))
                .collect(),
            settings_table_mistyped: false,
        }
    }
}

/// A merchant table less the keys that cannot be settings, each reported under its own key: a
/// mistyped host key (`shop_origin = [...]`, `webhook_url`: what was meant is named, whatever
/// the value) and a setting of `[merchants.<id>.settings]` that is not text, a number or
/// true/false.
fn without_misplaced(id: &str, table: &toml::Value, problems: &mut Vec<String>) -> toml::Value {
    let Some(table) = table.as_table() else {
        return table.clone();
    };
    let mut table = table.clone();
    table.retain(|key, _| {
        let meant = (!TABLE_KEYS.contains(&key))
            .then(|| meant_host_key(key))
            .flatten();
        if let Some(meant) = meant {
            problems.push(format!(
                "merchants.{id}.{key}: unknown key; did you mean {meant}?"
            ));
        }
        meant.is_none()
    });
    if let Some(toml::Value::Table(settings)) = table.get_mut("settings") {
        settings.retain(|key, value| match value {
            toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_) => true,
            other => {
                problems.push(format!(
                    "merchants.{id}.settings.{key}: must be text, a whole number or true/false (not {})",
                    other.type_str()
                ));
                false
            }
        });
    }
    toml::Value::Table(table)
}

/// Every `[merchants.<id>]` table; a bad id or a bad key is reported and the others still read.
/// Also where each merchant's settings were written.
pub(super) fn parse(
    value: Option<&toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> (
    BTreeMap<String, MerchantSettings>,
    BTreeMap<String, Written>,
) {
    let mut merchants = BTreeMap::new();
    let mut written = BTreeMap::new();
    let tables = match value {
        None => return (merchants, written),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            problems.push("merchants: must be tables [merchants.<id>]".into());
            return (merchants, written);
        }
    };
    for (id, table) in tables {
        if !valid_merchant_id(id) {
            problems.push(format!(
                "merchants.{id}: the id must be 1 to 64 letters, digits, '_' or '-'"
            ));
            continue;
        }
        let table = without_misplaced(id, table, problems);
        let settings_table_mistyped = table.as_table().is_some_and(|t| {
            t.iter().any(|(k, v)| {
                k != "settings"
                    && v.is_table()
                    && super::did_you_mean(k, ["settings"].into_iter()).is_some()
            })
        });
        let raw: RawMerchant = section(&format!("merchants.{id}"), Some(&table), problems);
        let read = merchant_settings(id, &raw, Some(base), problems);
        written.insert(
            id.clone(),
            Written {
                settings_table_mistyped,
                ..Written::of(&raw, &read)
            },
        );
        merchants.insert(id.clone(), read);
    }
    (merchants, written)
}

#[cfg(test)]
mod tests {
    use super::RawMerchant;

    /// A setting named twice is refused, in either form; once each is read as before.
    #[test]
    fn a_setting_given_twice_is_refused() {
        let read = |json: &str| serde_json::from_str::<RawMerchant>(json);
        for twice in [
            r#"{"settings": {"partner": "2088000000000009", "partner": "2088000000000001"}}"#,
            r#"{"partner": "2088000000000009", "key": "k", "partner": "2088000000000001"}"#,
        ] {
            let e = read(twice).unwrap_err().to_string();
            assert!(e.contains("setting partner is given more than once"), "{e}");
        }
        let once =
            read(r#"{"plugin": "p", "settings": {"partner": "2088", "mode": 1}, "key": "k"}"#)
                .unwrap();
        assert_eq!(once.plugin.as_deref(), Some("p"));
        assert_eq!(once.settings.unwrap()["mode"].text(), "1");
        assert_eq!(once.flat["key"].text(), "k");
        assert!(read(r#"{"plugin": "p"}"#).unwrap().settings.is_none());
    }
}
