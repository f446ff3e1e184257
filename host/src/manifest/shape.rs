//! The manifest's shape (which keys, of which types, which required), checked on the TOML itself
//! before serde reads it: serde stops at the first problem, and a vendor writing a manifest should
//! see every missing key, wrong type and mistyped name of the file in one run.

use crate::config::did_you_mean;
use toml::{Table, Value};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Flag,
    /// A whole number of at least 0 and at most the given value.
    Count(u64),
    Texts,
}

impl Kind {
    fn wanted(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Flag => "true or false",
            Kind::Count(_) => "a whole number",
            Kind::Texts => "a list of strings",
        }
    }

    fn fits(self, v: &Value) -> bool {
        match (self, v) {
            (Kind::Text, Value::String(_)) | (Kind::Flag, Value::Boolean(_)) => true,
            (Kind::Count(max), Value::Integer(n)) => *n >= 0 && (*n as u64) <= max,
            (Kind::Texts, Value::Array(items)) => items.iter().all(Value::is_str),
            _ => false,
        }
    }
}

/// (key, kind, required) of one table.
type Keys = &'static [(&'static str, Kind, bool)];

const TOP: Keys = &[
    ("id", Kind::Text, true),
    ("name", Kind::Text, true),
    ("version", Kind::Text, true),
    ("description", Kind::Text, false),
];
/// The tables of the top level: (name, keys, required).
const TABLES: &[(&str, Keys, bool)] = &[
    (
        "wit",
        &[
            ("package", Kind::Text, true),
            ("version", Kind::Text, true),
            ("world", Kind::Text, true),
        ],
        true,
    ),
    (
        "component",
        &[("path", Kind::Text, true), ("sha256", Kind::Text, true)],
        true,
    ),
    ("outbound", &[("allowed_hosts", Kind::Texts, true)], true),
    (
        "limits",
        &[
            ("memory_mib", Kind::Count(u32::MAX as u64), false),
            ("call_timeout_ms", Kind::Count(i64::MAX as u64), false),
            ("fuel_per_call", Kind::Count(i64::MAX as u64), false),
            ("max_instances", Kind::Count(u32::MAX as u64), false),
        ],
        false,
    ),
];
const SETTING: Keys = &[
    ("name", Kind::Text, true),
    ("label_zh", Kind::Text, true),
    ("label_en", Kind::Text, true),
    ("kind", Kind::Text, true),
    ("required", Kind::Flag, false),
    ("secret", Kind::Flag, false),
    ("rule", Kind::Text, true),
    ("rule_zh", Kind::Text, false),
];

/// What was given instead of `kind`.
fn given(kind: Kind, v: &Value) -> &'static str {
    match (kind, v) {
        (Kind::Texts, Value::Array(_)) => "a list with other values",
        (Kind::Count(_), Value::Integer(n)) if *n >= 0 => "a number that large",
        _ => type_name(v),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(n) if *n < 0 => "a negative number",
        Value::Integer(_) => "a number",
        Value::Float(_) => "a decimal number",
        Value::Boolean(_) => "true/false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// Every problem of one table's keys, each named by its dotted path.
fn check_keys(table: &Table, at: &str, keys: Keys, tables: &[&str], problems: &mut Vec<String>) {
    let path = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    for (key, kind, required) in keys {
        match table.get(*key) {
            None if *required => {
                problems.push(format!("{}: is required ({})", path(key), kind.wanted()))
            }
            None => {}
            Some(v) if !kind.fits(v) => problems.push(format!(
                "{}: must be {}, not {}",
                path(key),
                kind.wanted(),
                given(*kind, v)
            )),
            Some(_) => {}
        }
    }
    let known = || {
        keys.iter()
            .map(|(k, _, _)| *k)
            .chain(tables.iter().copied())
    };
    for key in table.keys() {
        if known().any(|k| k == key) {
            continue;
        }
        let hint = did_you_mean(key, known())
            .map(|k| format!("; did you mean {}?", path(k)))
            .unwrap_or_default();
        problems.push(format!("{}: is not a manifest key{hint}", path(key)));
    }
}

/// Every problem of the manifest's shape; empty when serde can read it.
pub fn problems(doc: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    let mut tables: Vec<&str> = TABLES.iter().map(|(name, _, _)| *name).collect();
    tables.push("settings");
    check_keys(doc, "", TOP, &tables, &mut problems);
    for (name, keys, required) in TABLES {
        match doc.get(*name) {
            None if *required => problems.push(format!("[{name}]: the table is required")),
            None => {}
            Some(Value::Table(t)) => check_keys(t, name, keys, &[], &mut problems),
            Some(v) => problems.push(format!(
                "{name}: must be a table [{name}], not {}",
                type_name(v)
            )),
        }
    }
    match doc.get("settings") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Table(t) => {
                        check_keys(t, &format!("settings[{i}]"), SETTING, &[], &mut problems)
                    }
                    v => problems.push(format!(
                        "settings[{i}]: must be a table ([[settings]]), not {}",
                        type_name(v)
                    )),
                }
            }
        }
        Some(v) => problems.push(format!(
            "settings: must be a list of [[settings]] tables, not {}",
            type_name(v)
        )),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::problems;

    fn of(text: &str) -> Vec<String> {
        problems(&text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn the_repositorys_manifests_have_their_shape() {
        for file in [
            "../plugin.toml",
            "../tests/testpay/plugin.toml",
            "../tests/broken-notify/plugin.toml",
        ] {
            let text = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file),
            )
            .unwrap();
            assert_eq!(of(&text), Vec::<String>::new(), "{file}");
        }
    }

    #[test]
    fn every_problem_of_the_shape_is_named_at_once() {
        let found = of(r#"
            id = "x"
            version = 2
            descripton = "typo"
            [wit]
            package = "payhost:payment"
            version = "0.4.0"
            [component]
            path = "x.wasm"
            sha256 = "00"
            extra = 1
            [outbound]
            allowed_hosts = ["https://a.example", 3]
            [limits]
            memory_mib = -1
            fuel_per_call = "lots"
            [[settings]]
            name = "partner"
            label_zh = "合作者身份"
            kind = "text"
            rule = "16 digits"
            secret = "yes"
        "#);
        let expected = [
            "name: is required (a string)",
            "version: must be a string, not a number",
            "descripton: is not a manifest key; did you mean description?",
            "wit.world: is required (a string)",
            "component.extra: is not a manifest key",
            "outbound.allowed_hosts: must be a list of strings, not a list with other values",
            "limits.memory_mib: must be a whole number, not a negative number",
            "limits.fuel_per_call: must be a whole number, not a string",
            "settings[0].label_en: is required (a string)",
            "settings[0].secret: must be true or false, not a string",
        ];
        for e in expected {
            assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn a_missing_or_misshapen_table_is_named() {
        let found = of(r#"
            id = "x"
            name = "x"
            version = "1"
            wit = "0.4.0"
            [outbound]
            allowed_hosts = []
            [[settings]]
            name = "a"
        "#);
        assert!(
            found.contains(&"wit: must be a table [wit], not a string".to_owned()),
            "{found:#?}"
        );
        assert!(
            found.contains(&"[component]: the table is required".to_owned()),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f == "settings[0].rule: is required (a string)"),
            "{found:#?}"
        );
    }
}
