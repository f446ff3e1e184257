//! `database = "payhost.db"` / `database = "postgres://…"`, or `[database] url = "…"` with
//! `pool_size`; and `cache_dir`, which defaults to a folder beside the database.

use super::top::RawTop;
use super::{section, trimmed};
use crate::domain::Secret;
use crate::store::postgres;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabaseTable {
    url: Option<String>,
    pool_size: Option<usize>,
}

pub(super) struct Database {
    /// The SQLite file (`payhost.db` beside the configuration when PostgreSQL is used, for the
    /// default compile cache).
    pub file: PathBuf,
    pub url: Option<Secret>,
    pub pool_size: usize,
}

pub(super) fn parse(
    value: Option<&toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Database {
    let (name, pool_size) = match value {
        None => (None, None),
        Some(toml::Value::String(n)) => (trimmed(&Some(n.clone())), None),
        Some(t @ toml::Value::Table(_)) => {
            let raw: RawDatabaseTable = section("database", Some(t), problems);
            if raw.url.is_none() {
                problems.push("database.url: is required in a [database] table".into());
            }
            (trimmed(&raw.url), raw.pool_size)
        }
        Some(_) => {
            problems.push(
                "database: must be a SQLite file name, a postgres:// URL or a [database] table"
                    .into(),
            );
            (None, None)
        }
    };
    let pool = pool_size.unwrap_or(postgres::DEFAULT_POOL_SIZE);
    if !(1..=1000).contains(&pool) {
        problems.push("database.pool_size: must be between 1 and 1000".into());
    }
    let url = name.clone().filter(|n| postgres::is_postgres_url(n));
    // A mistyped scheme (`postgress://`, `postgres:/…`, `pg://`) would otherwise name a SQLite
    // file under a folder called `postgress:` — a private, empty store per replica.
    if let Some(n) = name
        .as_deref()
        .filter(|n| url.is_none() && looks_like_a_url(n))
    {
        // Only the scheme is shown: the rest may hold a password in a form the masking of a
        // well-formed URL does not recognise (`postgres:/user:pw@host`).
        let scheme = n.split_once(':').map_or(n, |(s, _)| s);
        problems.push(format!(
            "database: a value starting with \"{scheme}:\" looks like a URL but is not a postgres:// or postgresql:// one; give a PostgreSQL URL starting with postgres:// or a SQLite file name such as payhost.db"
        ));
    }
    // libpq's `host=… user=… password=…` form would otherwise name a SQLite file after it, the
    // password in the file's name and in the log line that names the store. Only the keys are shown.
    if let Some(keys) = name
        .as_deref()
        .filter(|_| url.is_none())
        .and_then(connection_string_keys)
    {
        problems.push(format!(
            "database: looks like a PostgreSQL key=value connection string ({}); payhost takes a URL instead: postgres://USER:PASSWORD@HOST:PORT/DBNAME (percent-encode special characters in the password)",
            keys.join("=…, ") + "=…"
        ));
    }
    if let Some(url) = &url {
        if let Err(e) = url.parse::<tokio_postgres::Config>() {
            problems.push(format!(
                "database: not a valid PostgreSQL URL ({}): {e}",
                postgres::redact_url(url)
            ));
        }
    } else if pool_size.is_some() {
        problems.push("database.pool_size: only for a PostgreSQL url".into());
    }
    // With PostgreSQL the compile cache defaults to payhost.db.cache beside the config (per
    // replica: each machine compiles once).
    let file = base.join(
        name.filter(|n| {
            url.is_none() && !looks_like_a_url(n) && connection_string_keys(n).is_none()
        })
        .unwrap_or_else(|| "payhost.db".into()),
    );
    Database {
        file,
        url: url.map(Secret::new),
        pool_size: pool,
    }
}

/// Whether a database name has a URL's scheme (`word:/`), which no SQLite file name of ours
/// needs (a Windows drive letter, `C:`, is one character).
fn looks_like_a_url(name: &str) -> bool {
    match name.split_once(':') {
        Some((scheme, rest)) => {
            scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && rest.starts_with('/')
        }
        None => false,
    }
}

/// The keys of a libpq key=value connection string (`host=db user=payhost password=…`), when
/// `name` is one: a word of the form `key=` with a key libpq knows. No file name of ours has one.
fn connection_string_keys(name: &str) -> Option<Vec<&str>> {
    const KEYS: &[&str] = &[
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "sslmode",
        "sslrootcert",
        "application_name",
        "connect_timeout",
        "options",
        "target_session_attrs",
    ];
    let keys: Vec<&str> = name
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| KEYS.contains(key))
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// `cache_dir` (relative to the configuration), else `<database>.cache`.
pub(super) fn cache_dir(raw: &RawTop, db: &Database, base: &Path) -> PathBuf {
    match trimmed(&raw.cache_dir) {
        Some(d) => base.join(d),
        None => {
            let mut d = db.file.clone().into_os_string();
            d.push(".cache");
            PathBuf::from(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{connection_string_keys, looks_like_a_url};

    #[test]
    fn a_libpq_connection_string_is_refused_without_its_values() {
        let mut problems = Vec::new();
        let value = toml::Value::String(
            "host=127.0.0.1 port=5432 user=payhost password=KVSECRET dbname=payhost".into(),
        );
        let db = super::parse(
            Some(&value),
            std::path::Path::new("/etc/payhost"),
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(
                "key=value connection string (host=…, port=…, user=…, password=…, dbname=…)"
            ) && problems[0].contains("postgres://USER:PASSWORD@HOST:PORT/DBNAME")
                && !problems[0].contains("KVSECRET"),
            "{problems:?}"
        );
        assert_eq!(db.file, std::path::Path::new("/etc/payhost/payhost.db"));
        assert!(db.url.is_none());
        for file in ["payhost.db", "data/a=b.db", "/var/lib/payhost/pay host.db"] {
            assert_eq!(connection_string_keys(file), None, "{file}");
        }
    }

    #[test]
    fn a_mistyped_postgres_url_is_not_a_file_name() {
        for typo in [
            "postgress://payhost@db/payhost",
            "postgres:/payhost@db/payhost",
            "pg://db/payhost",
            "mysql://db/x",
        ] {
            assert!(looks_like_a_url(typo), "{typo}");
        }
        for file in [
            "payhost.db",
            "/var/lib/payhost/payhost.db",
            "data/pay:host.db",
            "C:/payhost.db",
        ] {
            assert!(!looks_like_a_url(file), "{file}");
        }
    }
}
