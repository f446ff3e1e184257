//! `payhost.toml`. The names are a contract (shops, adapters and tests are written against them):
//! `listen`, `public_url`, `database`, `api_token`, `[plugins.<id>] manifest` (or the single
//! `[plugin] manifest`), and `[merchants.<id>]` tables: `plugin` (which component pays for that
//! merchant) and `settings` (that component's schema; the host checks nothing but what the
//! component's `validate-settings` says). The older flat form (settings as the merchant table's
//! own keys) is still read.
//!
//! Values pasted with spaces or line breaks around them are trimmed; anything still malformed is
//! reported with the key named and the rule it broke, every problem of every section at once
//! (each section has its own parse function in a module here; none stops the others).

mod database;
mod file_modes;
mod merchants;
mod plugins;
mod top;
mod tuning;
#[cfg(test)]
mod validation_tests;

pub use merchants::{
    is_http_url, merchant_settings, origin_of, url_encoding_hint, valid_merchant_id,
    MerchantSettings, RawMerchant, SettingValue,
};
pub use plugins::PluginSource;
pub use tuning::{AdminConfig, Limits, Recovery, Retention, WebhookConfig};

use crate::domain::Secret;
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    /// The SQLite file (when `database_url` is None).
    pub database: PathBuf,
    /// `database = "postgres://…"`: PostgreSQL instead of the SQLite file (several replicas). It
    /// may carry the database password.
    pub database_url: Option<Secret>,
    /// Connections of this replica's PostgreSQL pool.
    pub database_pool_size: usize,
    pub api_token: Secret,
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
    pub admin_password_hash: Option<Secret>,
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
    /// Where each merchant's settings were written (names only), for [`Config::setting_problem`].
    written: BTreeMap<String, merchants::Written>,
}

/// A configuration read as far as it could be, and every problem found on the way (each
/// `key: rule`). With problems, the values that broke a rule hold their defaults.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    pub problems: Vec<String>,
}

/// The top-level keys and tables of `payhost.toml`.
const KNOWN_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database",
    "api_token",
    "cache_dir",
    "admin_password_hash",
    "trust_proxy",
    "trusted_proxies",
    "metrics_listen",
    "plugin",
    "plugins",
    "limits",
    "retention",
    "recovery",
    "admin",
    "merchants",
    "webhooks",
    "outbound",
];

impl Config {
    /// Which store this configuration opens, for the start-up log: the SQLite file, or the
    /// PostgreSQL URL with its password masked.
    pub fn store_description(&self) -> String {
        match &self.database_url {
            Some(url) => format!(
                "postgres {}",
                crate::store::postgres::redact_url(url.expose())
            ),
            None => format!("sqlite {}", self.database.display()),
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = read(path)?;
        let mut config = Config::parse(&text, base_of(path))
            .with_context(|| format!("in {}", path.display()))?;
        config.warnings.extend(file_modes::warnings(path, &text));
        Ok(config)
    }

    /// Parses and checks a configuration; relative paths are resolved against `base`. Every
    /// problem is in the error, one a line.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let checked = Config::check(text, base)?;
        if !checked.problems.is_empty() {
            bail!(
                "configuration problems:\n  - {}",
                checked.problems.join("\n  - ")
            );
        }
        Ok(checked.config)
    }

    /// [`Config::load`] that goes on past problems (`payhost check-config`): an error only when
    /// the file cannot be read or is not TOML at all.
    pub fn load_checked(path: &Path) -> Result<Checked> {
        let text = read(path)?;
        let mut checked = Config::check(&text, base_of(path))
            .with_context(|| format!("in {}", path.display()))?;
        checked
            .config
            .warnings
            .extend(file_modes::warnings(path, &text));
        Ok(checked)
    }

    /// Reads every section, each with its own parse function, collecting every problem.
    pub fn check(text: &str, base: &Path) -> Result<Checked> {
        let table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut problems = Vec::new();
        for key in table.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                let hint = did_you_mean(key, KNOWN_KEYS.iter().copied())
                    .map(|k| format!("; did you mean {k}?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{key}: unknown key{hint} (payhost.toml has {})",
                    KNOWN_KEYS.join(", ")
                ));
            }
        }
        let scalars: toml::Table = table
            .iter()
            .filter(|(k, _)| top::KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let raw: top::RawTop = section("", Some(&toml::Value::Table(scalars)), &mut problems);
        let p = &mut problems;
        let listen = top::listen(&raw, p);
        let mut warnings = Vec::new();
        let public_url = top::public_url(&raw, p, &mut warnings);
        let api_token = top::api_token(&raw, p, &mut warnings);
        let admin_password_hash = top::admin_password_hash(&raw, p);
        let metrics_listen = top::metrics_listen(&raw, listen, p);
        let trusted_proxies = top::trusted_proxies(&raw, &mut warnings, p);
        let db = database::parse(table.get("database"), base, p);
        let cache_dir = database::cache_dir(&raw, &db, base);
        let plugins = plugins::parse(table.get("plugin"), table.get("plugins"), base, p);
        let (merchants, written) = merchants::parse(table.get("merchants"), base, p);
        let webhooks = tuning::webhooks(table.get("webhooks"), p);
        let limits = tuning::limits(table.get("limits"), p);
        let retention = tuning::retention(table.get("retention"), p);
        let recovery = tuning::recovery(table.get("recovery"), p);
        let admin = tuning::admin(table.get("admin"), p);
        let allowed_origins = tuning::outbound(table.get("outbound"), p);
        Ok(Checked {
            config: Config {
                listen,
                public_url,
                database: db.file,
                database_url: db.url,
                database_pool_size: db.pool_size,
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
                written,
            },
            problems: without_echoes(problems),
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

    /// The whole key merchant `id`'s setting `name` was written under in the file
    /// (`merchants.shop1.settings.partner`, `merchants.shop1.partner`,
    /// `merchants.shop1.private_key_file`); a setting not written (a required one left out) is
    /// named where the merchant's settings are.
    pub fn setting_key(&self, id: &str, name: &str) -> String {
        let written = self.written.get(id);
        match written.and_then(|w| w.keys.get(name)) {
            Some(key) => format!("merchants.{id}.{key}"),
            None if written.is_some_and(|w| w.nested) => format!("merchants.{id}.settings.{name}"),
            None => format!("merchants.{id}.{name}"),
        }
    }

    /// A problem the component's `validate-settings` found with merchant `id`'s setting `name`
    /// (`reason`), as `payhost check-config` lists it: under the key it was written as
    /// ([`Config::setting_key`]), and, when `name` is none of `known` (the component's
    /// settings), with the nearest of them if one is near enough ("did you mean partner?").
    /// None for a setting whose `<name>_file` could not be read: that problem is listed
    /// already, and the setting's absence follows from it.
    pub fn setting_problem(
        &self,
        id: &str,
        name: &str,
        reason: &str,
        known: &[&str],
    ) -> Option<String> {
        let written = self.written.get(id);
        if written.is_some_and(|w| w.unread.contains(name))
            || (written.is_some_and(|w| w.settings_table_mistyped)
                && reason.starts_with("is required"))
        {
            return None;
        }
        let hint = (!known.contains(&name))
            .then(|| {
                did_you_mean(name, known.iter().copied())
                    .or_else(|| merchants::host_key_without_prefix(name))
            })
            .flatten()
            .map(|k| format!("; did you mean {k}?"))
            .unwrap_or_default();
        Some(format!("{}: {reason}{hint}", self.setting_key(id, name)))
    }
}

/// The problems less a key's "is required" when the key was there and refused for its type: a
/// mistyped value is one problem, said once.
fn without_echoes(problems: Vec<String>) -> Vec<String> {
    let key_of = |p: &str| p.split_once(": ").map(|(k, _)| k.to_owned());
    let refused: Vec<String> = problems
        .iter()
        .filter(|p| !p.contains(": is required"))
        .filter_map(|p| key_of(p))
        .collect();
    problems
        .into_iter()
        .filter(|p| {
            !(p.contains(": is required") && key_of(p).is_some_and(|k| refused.contains(&k)))
        })
        .collect()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        // A bare name is the commands' default (`--config payhost.toml`) looked up in the
        // current folder, which is seldom where the file is.
        let hint = match std::path::Path::new(path).components().count() {
            1 if !path.exists() => format!(
                " (looked for in the current folder, {}: pass --config /path/to/payhost.toml)",
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "unknown".into())
            ),
            _ => String::new(),
        };
        format!("cannot read the configuration {}{hint}", path.display())
    })
}

fn base_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// A table of the file (`name`; `""` for the top level) read into its raw struct key by key, so
/// one bad key is reported (`name.key: rule`) without hiding the next: each key is tried alone,
/// and the struct is then read from the keys that passed. Keys the struct does not know are
/// reported the same way. A missing table is the struct's default.
fn section<T: DeserializeOwned + Default>(
    name: &str,
    value: Option<&toml::Value>,
    problems: &mut Vec<String>,
) -> T {
    let Some(value) = value else {
        return T::default();
    };
    let Some(table) = value.as_table() else {
        problems.push(format!("{name}: must be a table ([{name}])"));
        return T::default();
    };
    let mut good = toml::Table::new();
    for (key, v) in table {
        let one = toml::Table::from_iter([(key.clone(), v.clone())]);
        match T::deserialize(toml::Value::Table(one)) {
            Ok(_) => {
                good.insert(key.clone(), v.clone());
            }
            Err(e) => {
                let at = if name.is_empty() {
                    key.clone()
                } else {
                    format!("{name}.{key}")
                };
                let rule = match v {
                    // A merchant's flat-form key holding a table: a mistyped [<id>.settings].
                    toml::Value::Table(_) if e.message().contains("untagged enum SettingValue") => {
                        let hint = did_you_mean(key, ["settings"].into_iter())
                            .map(|k| format!("; did you mean [{name}.{k}]?"))
                            .unwrap_or_default();
                        format!("unknown table{hint} (a merchant's settings go in [{name}.settings], or directly under [{name}] as text, numbers or true/false)")
                    }
                    _ => rule_of(&e),
                };
                problems.push(format!("{at}: {rule}"));
            }
        }
    }
    T::deserialize(toml::Value::Table(good)).unwrap_or_else(|e| {
        problems.push(format!("{name}: {}", rule_of(&e)));
        T::default()
    })
}

/// A file that is not TOML, named by line and column. toml's own message quotes the line, and
/// the line may hold a key or a token: it never reaches the terminal or the log. Nor does a value
/// the message itself quotes (serde's "invalid type: integer `…`", as for a number too long for
/// TOML): the kind of value is said instead.
fn syntax_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|span| {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}: ")
    });
    // The usual slip: a text value without quotes (`listen = 127.0.0.1:8080`), which TOML reads
    // as the start of a number or a bare word.
    let message = e.message().trim();
    let quotes = "; a text value goes in double quotes: listen = \"127.0.0.1:8080\" (文字值要用双引号括起来)";
    let (message, hint) = if let Some((got, _)) = serde_mismatch(message) {
        let kind = kind_of(got);
        if got.contains(" as i128") || got.contains(" as u128") {
            // An unquoted number longer than TOML's 64 bits: often an all-digit key.
            (
                format!("a number too large for TOML ({kind} of more than 19 digits)"),
                "; a key or any other long number is text and goes in double quotes: key = \"…\" (文字值要用双引号括起来)",
            )
        } else {
            (format!("a value that is not valid here ({kind})"), quotes)
        }
    } else if message.contains("invalid float")
        || message.contains("invalid integer")
        || message.contains("invalid string")
        || message.contains("expected nothing")
    {
        (message.to_owned(), quotes)
    } else if message.starts_with("duplicate key") {
        // The span is the key (or the table's last name): a name, never a value.
        let name = e
            .span()
            .and_then(|span| text.get(span))
            .map(|k| k.trim().trim_matches('"'))
            .filter(|k| {
                !k.is_empty()
                    && k.len() <= 64
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        match name {
            Some(k) => (
                format!(
                    "{k} is given twice (as a key or a table in the same place); keep one (同一处重复了 {k}，只保留一个)"
                ),
                "",
            ),
            None => (message.to_owned(), ""),
        }
    } else {
        (message.to_owned(), "")
    };
    anyhow::anyhow!(
        "not a valid payhost configuration: {}{message}{hint}",
        at.unwrap_or_default(),
    )
}

/// serde's "invalid type: integer `5`, expected a string" (or "invalid value: …") as what was
/// got (`integer `5``, which quotes the value) and what was expected.
fn serde_mismatch(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))?
        .split_once(", expected ")
}

/// The kind of value only (`integer`, `string`, `floating point`) of serde's description of it
/// (`integer `5``, `string "x"`): the value itself may be a secret.
fn kind_of(got: &str) -> &str {
    got.split(['`', '"']).next().unwrap_or(got).trim()
}

/// The text with whatever it quotes (`…` or "…") left out: what an error message quotes may be a
/// value of the file.
pub(crate) fn unquoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    open = Some(c);
                }
            }
        }
    }
    out
}

/// A deserialisation error as a rule a person can follow, without the value (only its kind).
fn rule_of(e: &toml::de::Error) -> String {
    let text = e.message().trim().to_owned();
    // serde's "unknown field `x`, expected one of `a`, `b`": the nearest name first.
    if let Some(rest) = text.strip_prefix("unknown field `") {
        if let Some((key, expected)) = rest.split_once("`, expected ") {
            let names = expected
                .trim_start_matches("one of ")
                .split([',', ' '])
                .filter(|n| n.starts_with('`'))
                .map(|n| n.trim_matches('`'));
            let hint = did_you_mean(key, names)
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            return format!("unknown key{hint} (expected {expected})");
        }
    }
    if text.contains("untagged enum SettingValue") {
        return "must be text, a whole number or true/false".into();
    }
    // serde's "invalid type: string \"x\", expected usize" in the file's words.
    if let Some((got, expected)) = serde_mismatch(&text) {
        let expected = match expected {
            "usize" | "u64" | "u32" | "u16" | "i64" => "a whole number, 0 or more",
            "a boolean" => "true or false",
            "a string" => "text in quotes",
            "a sequence" => "a list such as [\"…\"]",
            other => other,
        };
        let kind = kind_of(got);
        // "invalid value": the right kind, out of range. Which way, not the value.
        if text.starts_with("invalid value: ") && kind == "integer" {
            let negative = got
                .split_once('`')
                .is_some_and(|(_, v)| v.trim_start().starts_with('-'));
            let got = if negative {
                "got a negative number"
            } else {
                "got a number too large"
            };
            return format!("must be {expected} ({got})");
        }
        return format!("must be {expected} (not {kind})");
    }
    unquoted(&text)
}

/// The known name nearest to a mistyped `key`, when one is near enough to be what was meant
/// (Jaro similarity over 0.8, as a mistyped flag gets from clap).
pub(crate) fn did_you_mean<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim::jaro(key, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A trimmed, non-empty value.
fn trimmed(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unquoted_text_value_is_told_to_take_quotes() {
        let e = match Config::check("listen = 127.0.0.1:8080\n", Path::new("/srv")) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("an unquoted address was accepted"),
        };
        assert!(e.contains("line 1, column"), "{e}");
        assert!(e.contains("double quotes"), "{e}");
    }

    #[test]
    fn a_mistyped_settings_table_is_named_as_one() {
        let text = "[merchants.shop1]\nplugin = \"alipay-wap\"\n[merchants.shop1.setting]\npartner = \"2088000000000001\"\n";
        let e = match Config::parse(text, Path::new("/srv")) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("a mistyped settings table was accepted"),
        };
        assert!(
            e.contains(
                "merchants.shop1.setting: unknown table; did you mean [merchants.shop1.settings]?"
            ),
            "{e}"
        );
        assert!(!e.contains("must be text, a whole number"), "{e}");
    }

    /// `[plugin.<id>]` written for `[plugins.<id>]` is named as that slip, not as a key of
    /// `[plugin]` (which read as if `manifest` were missing).
    #[test]
    fn a_component_table_under_plugin_is_named_as_plugins() {
        let text = "[plugin.alipay-wap]\nmanifest = \"plugin.toml\"\n";
        let e = match Config::parse(text, Path::new("/srv")) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("[plugin.alipay-wap] was accepted"),
        };
        assert!(
            e.contains("plugin.alipay-wap: [plugin] takes only manifest and call_timeout_ms; did you mean [plugins.alipay-wap]"),
            "{e}"
        );
        assert!(!e.contains("unknown key (expected"), "{e}");
    }

    #[test]
    fn a_duplicate_key_or_table_is_named() {
        for (text, said) in [
            (
                "listen = \"127.0.0.1:8080\"\nlisten = \"127.0.0.1:8081\"\n",
                "line 2, column 1: listen is given twice",
            ),
            (
                "[merchants.shop]\nkey = \"a\"\n[merchants.shop]\n",
                "line 3, column 12: shop is given twice",
            ),
        ] {
            let e = match Config::check(text, Path::new("/srv")) {
                Err(e) => format!("{e:#}"),
                Ok(_) => panic!("a duplicate was accepted"),
            };
            assert!(e.contains(said), "{e}");
            assert!(!e.contains("127.0.0.1") && !e.contains("\"a\""), "{e}");
        }
    }

    #[test]
    fn errors_never_quote_a_value_of_the_file() {
        let secret = "760bdzec6y9goq7ctyx96ezkz78287de";
        let broken = format!("listen = \"127.0.0.1:8080\"\napi_token = \"{secret}\n");
        let e = match Config::check(&broken, Path::new("/srv")) {
            Ok(_) => panic!("an unclosed string is not TOML"),
            Err(e) => format!("{e:#}"),
        };
        assert!(!e.contains(secret), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let typed = "api_token = 98765432109876543\n";
        let msg = match Config::check(typed, Path::new("/srv")) {
            Ok(c) => c.problems.join("; "),
            Err(e) => format!("{e:#}"),
        };
        assert!(!msg.contains("98765432109876543"), "{msg}");
        assert!(msg.contains("not integer"), "{msg}");
        // A mistyped value is one problem: not also "is required".
        let c = Config::check(typed, Path::new("/srv")).unwrap();
        let about: Vec<&String> = c
            .problems
            .iter()
            .filter(|p| p.starts_with("api_token:"))
            .collect();
        assert_eq!(about.len(), 1, "{about:?}");
        assert!(c
            .problems
            .iter()
            .any(|p| p.starts_with("public_url: is required")));
        // The kind in the file's words, whole: "floating point", not "floating".
        let c = Config::check("listen = 8080.5\n", Path::new("/srv")).unwrap();
        let listen = c
            .problems
            .iter()
            .find(|p| p.starts_with("listen:"))
            .unwrap();
        assert!(listen.ends_with("(not floating point)"), "{listen}");
        assert!(!listen.contains("8080.5"), "{listen}");
    }

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
        assert_eq!(ok.api_token.expose(), "0123456789abcdef0123");
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
    fn a_guessable_api_token_is_said_and_a_random_one_is_not() {
        let with = |token: &str| {
            let text =
                format!("public_url = \"https://pay.example.com\"\napi_token = \"{token}\"\n");
            Config::parse(&text, Path::new("/srv")).unwrap().warnings
        };
        for weak in [
            "aaaaaaaaaaaaaaaa",
            "password12345678",
            "1212121212121212",
            "Qwerty-Qwerty-2024",
            "1234567890123456",
            "abcdefghijklmnopqrstuvwxyz",
            "0123456789abcdef0123456789abcdef0",
            "P@ssw0rd12345678",
            "Passw0rd-Admin-2024",
        ] {
            let w = with(weak);
            assert!(
                w.iter()
                    .any(|w| w.starts_with("api_token: is easy to guess")),
                "{weak}: {w:?}"
            );
            assert!(
                w.iter().all(|w| !w.contains(weak)),
                "the token is never repeated: {w:?}"
            );
        }
        for strong in [
            "7f3a9c2e5b8d1f4a6c0e",
            "760bdzec6y9goq7ctyx96ezkz78287de",
            "ledger-api-token-0123456789",
        ] {
            assert!(with(strong).is_empty(), "{strong}");
        }
    }

    #[test]
    fn a_refused_api_token_is_not_also_called_easy_to_guess() {
        for refused in ["aaaa", "aaaa aaaa aaaa aaaa"] {
            let text =
                format!("public_url = \"https://pay.example.com\"\napi_token = \"{refused}\"\n");
            let checked = Config::check(&text, Path::new("/srv")).unwrap();
            assert!(
                checked
                    .problems
                    .iter()
                    .any(|p| p.starts_with("api_token: must be")),
                "{:?}",
                checked.problems
            );
            assert!(
                checked.config.warnings.is_empty(),
                "{:?}",
                checked.config.warnings
            );
        }
    }

    #[test]
    fn trusted_proxies_and_the_older_trust_proxy() {
        let head = r#"
            public_url = "https://pay.example.com"
            api_token = "7f3a9c2e5b8d1f4a6c0e"
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
    fn a_url_with_unencoded_characters_is_told_what_to_encode() {
        for bad in [
            "https://shop.example/hook?x=<b>",
            "https://shop.example/a b",
            "https://shop.example/?q=\"x\"",
        ] {
            assert!(!is_http_url(bad), "{bad}");
            assert!(
                url_encoding_hint(bad, false).contains("percent-encode"),
                "{bad}"
            );
            assert!(url_encoding_hint(bad, true).contains("百分号编码"), "{bad}");
        }
        for plain in [
            "https://shop.example/hook?x=%3Cb%3E",
            "ftp://x",
            "shop.example",
        ] {
            assert_eq!(url_encoding_hint(plain, false), "", "{plain}");
        }
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
            pg.database_url.as_ref().map(Secret::expose),
            Some("postgres://payhost@db.internal/payhost")
        );
        assert_eq!(pg.cache_dir, Path::new("/srv/payhost.db.cache"));
        let table = Config::parse(
            &format!("{head}\n[database]\nurl = \"postgresql://u:pw@db/p\"\npool_size = 4"),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(
            table.database_url.as_ref().map(Secret::expose),
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

    #[test]
    fn every_problem_of_every_section_in_one_run() {
        let err = Config::parse(
            r#"
            colour = "blue"
            pubic_url = "https://pay.example.com"
            listen = 8080
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
            metrics_listen = "nowhere"
            [limits]
            max_connections = "many"
            header_read_timeout_ms = -1
            shape = "round"
            max_conections = 9
            [retention]
            raw_notification_days = 0
            [webhooks]
            timeout_ms = "soon"
            [admin]
            session_ttl_s = true
            [outbound]
            allowed_origins = ["not an origin"]
            [plugins.x]
            [merchants.m]
            key = 1.5
            shop_webhook_url = "ftp://shop"
            shop_origin = "https://shop.example"
            "#,
            Path::new("/srv"),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        for needle in [
            "colour: unknown key",
            "listen: must be text in quotes (not integer)",
            "metrics_listen:",
            "limits.max_connections: must be a whole number, 0 or more (not string)",
            "limits.header_read_timeout_ms: must be a whole number, 0 or more",
            "limits.shape: unknown key (expected one of",
            "limits.max_conections: unknown key; did you mean max_connections?",
            "pubic_url: unknown key; did you mean public_url?",
            "merchants.m.shop_origin: unknown key; did you mean shop_origins?",
            "retention.raw_notification_days: must be at least 1",
            "webhooks.timeout_ms: must be a whole number",
            "admin.session_ttl_s: must be a whole number, 0 or more (not boolean)",
            "outbound.allowed_origins[0]",
            "plugins.x.manifest: is required",
            "merchants.m.key: must be text, a whole number or true/false",
            "merchants.m.shop_webhook_url: must be an absolute http or https URL",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        // The keys that were right are still read when another key of the section is wrong.
        let checked = Config::check(
            r#"
            public_url = "https://pay.example.com"
            api_token = "0123456789abcdef0123"
            [limits]
            max_connections = "many"
            admin_per_ip_per_s = 7
            "#,
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(checked.problems.len(), 1, "{:?}", checked.problems);
        assert_eq!(checked.config.limits.admin_per_ip_per_s, 7);
        assert_eq!(
            checked.config.limits.max_connections,
            Limits::default().max_connections
        );
    }

    #[test]
    fn debug_of_the_config_shows_no_secret() {
        let dir = std::env::temp_dir().join(format!("payhost-config-dbg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("k.pem"),
            "-----BEGIN PRIVATE KEY-----\nPEMBODYSECRET\n",
        )
        .unwrap();
        let secrets = [
            "api-token-SECRET-0123456789",
            "pg-PASSWORD-secret",
            "10000000000000000000000000000SEC",
            "webhook-secret-SECRET-0123",
            "PEMBODYSECRET",
        ];
        let hash = crate::auth::hash_password("admin password 0123").unwrap();
        let c = Config::parse(
            &format!(
                r#"
                public_url = "https://pay.example.com"
                api_token = "{}"
                database = "postgres://payhost:{}@db.internal/payhost"
                admin_password_hash = "{hash}"
                [merchants.shop]
                partner = "2088101122136241"
                key = "{}"
                shop_webhook_url = "https://shop.example/hook"
                shop_webhook_secret = "{}"
                private_key_file = "k.pem"
                "#,
                secrets[0], secrets[1], secrets[2], secrets[3]
            ),
            &dir,
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        for secret in secrets.iter().copied().chain([hash.as_str()]) {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("partner") && shown.contains("shop_webhook_url"));
        assert_eq!(c.api_token.expose(), secrets[0], "the value itself is kept");
        let raw: RawMerchant = serde_json::from_value(
            serde_json::json!({"key": secrets[2], "shop_webhook_secret": secrets[3]}),
        )
        .unwrap();
        let shown = format!("{raw:?}");
        assert!(
            !shown.contains(secrets[2]) && !shown.contains(secrets[3]),
            "{shown}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_default_configuration_says_where_it_was_looked_for() {
        let e = super::read(std::path::Path::new("no-such-payhost.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("looked for in the current folder") && e.contains("--config"),
            "{e}"
        );
        let e = super::read(std::path::Path::new("/no/such/payhost.toml"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("current folder"), "{e}");
    }
}
