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
        name.filter(|n| url.is_none() && !looks_like_a_url(n))
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
    use super::looks_like_a_url;

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
