//! `[plugin]` (one component) and `[plugins.<id>]` (several): each component's manifest and the
//! operator's tighter call limit.

use super::{section, trimmed, valid_merchant_id};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    manifest: Option<String>,
    call_timeout_ms: Option<u64>,
}

/// `[plugins.<id>]` (or `[plugin]`): a component's manifest.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The table's key; None for the single `[plugin]` table (the id is the manifest's).
    pub id: Option<String>,
    /// No manifest was written (no `[plugin]` nor `[plugins.<id>]` table, or `[plugin]`
    /// without `manifest`): `plugin.toml` beside the configuration is what is looked for.
    pub defaulted: bool,
    pub manifest: PathBuf,
    /// A tighter wall-clock limit per call than the manifest's (never a looser one).
    pub call_timeout_ms: Option<u64>,
}

/// The components: `[plugin]` first (also when neither table is written: `plugin.toml` beside
/// the configuration), then `[plugins.<id>]` in the order of their ids.
pub(super) fn parse(
    plugin: Option<&toml::Value>,
    plugins: Option<&toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<PluginSource> {
    // `[plugin.<id>]` for `[plugins.<id>]`: said as that slip, once (serde would call it an
    // unknown key of `[plugin]`, as if `manifest` were what is missing).
    let plugin = plugin.map(|v| match v {
        toml::Value::Table(t) => {
            let mut kept = t.clone();
            kept.retain(|id, value| {
                let nested = value.is_table();
                if nested {
                    problems.push(format!(
                        "plugin.{id}: [plugin] takes only manifest and call_timeout_ms; did you mean [plugins.{id}] (a table per component)?"
                    ));
                }
                !nested
            });
            toml::Value::Table(kept)
        }
        other => other.clone(),
    });
    let single: RawPlugin = section("plugin", plugin.as_ref(), problems);
    let many: BTreeMap<String, RawPlugin> = match plugins {
        None => BTreeMap::new(),
        Some(toml::Value::Table(t)) => t
            .iter()
            .map(|(id, v)| {
                (
                    id.clone(),
                    section(&format!("plugins.{id}"), Some(v), problems),
                )
            })
            .collect(),
        Some(_) => {
            problems.push("plugins: must be tables [plugins.<id>]".into());
            BTreeMap::new()
        }
    };
    let single_timeout = check_timeout("plugin", single.call_timeout_ms, problems);
    let mut list = Vec::new();
    if single.manifest.is_some() || many.is_empty() {
        list.push(PluginSource {
            id: None,
            defaulted: trimmed(&single.manifest).is_none(),
            manifest: base.join(trimmed(&single.manifest).unwrap_or_else(|| "plugin.toml".into())),
            call_timeout_ms: single_timeout,
        });
    }
    for (id, p) in &many {
        let timeout = check_timeout(&format!("plugins.{id}"), p.call_timeout_ms, problems);
        if !valid_merchant_id(id) {
            problems.push(format!(
                "plugins.{id}: the id must be 1 to 64 letters, digits, '_' or '-' (the component's id)"
            ));
        }
        let Some(manifest) = trimmed(&p.manifest) else {
            problems.push(format!(
                "plugins.{id}.manifest: is required (the component's plugin.toml)"
            ));
            continue;
        };
        list.push(PluginSource {
            id: Some(id.clone()),
            defaulted: false,
            manifest: base.join(manifest),
            call_timeout_ms: timeout.or(single_timeout),
        });
    }
    list
}

/// The timeout when it is within its bounds; a refused one is a problem and is not used (so it
/// cannot make a second, misleading problem where the merchants are checked with it).
fn check_timeout(table: &str, t: Option<u64>, problems: &mut Vec<String>) -> Option<u64> {
    if t.is_some_and(|t| !(100..=600_000).contains(&t)) {
        problems.push(format!(
            "{table}.call_timeout_ms: must be between 100 and 600000 milliseconds"
        ));
        return None;
    }
    t
}
