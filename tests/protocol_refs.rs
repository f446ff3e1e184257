//! Every protocol section reference in the tree resolves (issue 24).
//!
//! Code cites the protocol rules it follows as `[WAP §7.2]`: in brackets, a file name in
//! capitals, a space, the section sign and a section number. It means the heading numbered 7.2 in
//! `docs/protocol/WAP.md` (docs/protocol/README.md defines the form). This test walks the source
//! tree (no build, no git needed) and fails on:
//! * a section sign that is not inside such a bracket (a bare reference names no file);
//! * a bracket naming a file that does not exist under docs/protocol/;
//! * a section number with no heading (`## 7.2 …`, `### 1.4.3 …`) in that file;
//! * a path to the reference texts outside the repository, which users do not have.
//!
//! Inside docs/protocol/ a reference may leave out the bracket and the file name: it then means
//! a heading of the same file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The section sign, written as an escape so this file's own text holds none.
const SECTION: char = '\u{a7}';

/// Directories never scanned: build output, dependencies, fuzz inputs, caches.
const SKIP_DIRS: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    "corpus",
    "artifacts",
    "coverage",
    ".payhost-cache",
];

/// Text that must not appear outside docs/protocol/: paths to the references the docs replace.
/// Built from pieces so that this file does not match itself.
fn forbidden() -> Vec<String> {
    vec![
        ["shared", "/protocol"].concat(),
        ["ALIPAY_", "WAP_PROTOCOL"].concat(),
        ["ALIPAY_", "EXTRA_PROTOCOLS"].concat(),
        ["ALIPAY_", "OPENAPI_PROTOCOL"].concat(),
    ]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The section numbers of a markdown file's headings: `## 7.2 Title` and `## 0. Title` give
/// `7.2` and `0`.
fn headings(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let rest = rest.trim_start_matches('#');
        let Some(rest) = rest.strip_prefix(' ') else {
            continue;
        };
        let number: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let number = number.trim_end_matches('.');
        if is_section_number(number) {
            out.insert(number.to_owned());
        }
    }
    out
}

/// `1`, `7.2`, `1.4.3`: digits separated by single dots.
fn is_section_number(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The protocol files: `NAME` (file stem) to its heading numbers.
type Docs = BTreeMap<String, BTreeSet<String>>;

fn load_docs(dir: &Path) -> Docs {
    let mut docs = Docs::new();
    for entry in std::fs::read_dir(dir).expect("docs/protocol/ exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("UTF-8 markdown");
            docs.insert(stem, headings(&text));
        }
    }
    docs
}

/// Checks one file's text. `own` is the protocol file the text belongs to (unbracketed references
/// allowed and resolved there), `None` for everything outside docs/protocol/. Returns one message per bad
/// reference, with its line number.
fn check_text(text: &str, own: Option<&str>, docs: &Docs) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        for (at, _) in line.match_indices(SECTION) {
            let before = &line[..at];
            let after = &line[at + SECTION.len_utf8()..];
            let number: String = after
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number_trimmed = number.trim_end_matches('.');
            // The bracket form: the text before ends in `[NAME `, the number is followed by `]`.
            let named = before.strip_suffix(' ').and_then(|b| {
                let open = b.rfind('[')?;
                let name = &b[open + 1..];
                (!name.is_empty() && name.bytes().all(|c| c.is_ascii_uppercase())).then_some(name)
            });
            let closed = after[number.len()..].starts_with(']') && number == number_trimmed;
            let file = match (named, own) {
                (Some(name), _) if closed => name,
                (Some(name), _) => {
                    errors.push(format!(
                        "line {lineno}: `[{name} {SECTION}…` must be `[{name} {SECTION}<number>]`: {line}"
                    ));
                    continue;
                }
                (None, Some(own)) => own,
                (None, None) => {
                    errors.push(format!(
                        "line {lineno}: a {SECTION} reference names no file; write `[WAP {SECTION}7.2]` \
                         (docs/protocol/README.md): {line}"
                    ));
                    continue;
                }
            };
            if !is_section_number(number_trimmed) {
                errors.push(format!(
                    "line {lineno}: no section number after {SECTION}: {line}"
                ));
                continue;
            }
            match docs.get(file) {
                None => errors.push(format!(
                    "line {lineno}: docs/protocol/{file}.md does not exist: {line}"
                )),
                Some(sections) if !sections.contains(number_trimmed) => errors.push(format!(
                    "line {lineno}: docs/protocol/{file}.md has no heading numbered {number_trimmed}: {line}"
                )),
                Some(_) => {}
            }
        }
        for bad in forbidden() {
            if line.contains(&bad) {
                errors.push(format!(
                    "line {lineno}: cites `{bad}`, which is not in the repository (use docs/protocol/): {line}"
                ));
            }
        }
    }
    errors
}

/// Every text file under `dir`, skipping build output and dependencies.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let entry = entry.expect("readable dir entry");
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            // Hidden directories are caches, except the CI and cargo configuration.
            let hidden = name.starts_with('.') && name != ".ci" && name != ".cargo";
            if !hidden && !SKIP_DIRS.contains(&name.as_str()) {
                walk(&path, out);
            }
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

#[test]
fn every_section_reference_resolves() {
    let root = repo_root();
    let protocol = root.join("docs").join("protocol");
    let docs = load_docs(&protocol);
    for name in ["README", "WAP", "EXTRA", "OPENAPI"] {
        assert!(
            docs.contains_key(name),
            "docs/protocol/{name}.md is missing"
        );
    }

    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut errors = Vec::new();
    let mut references = 0;
    for path in &files {
        // Binary files (databases, keys in DER, fuzz inputs) are not source text.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let rel = path.strip_prefix(&root).unwrap();
        let own = (path.parent() == Some(protocol.as_path()))
            .then(|| path.file_stem().unwrap().to_str().unwrap());
        references += text.matches(SECTION).count();
        for e in check_text(&text, own, &docs) {
            errors.push(format!("{}: {e}", rel.display()));
        }
    }
    assert!(
        errors.is_empty(),
        "{} unresolved protocol reference(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
    // The walk really saw the tree (a wrong root would pass vacuously).
    assert!(
        files.iter().any(|f| f.ends_with("plugin/src/sign.rs")) && references > 50,
        "the walk found {} files and {references} references under {}",
        files.len(),
        root.display()
    );
}

/// The checker itself: what it must refuse and accept.
#[test]
fn checker_refuses_what_does_not_resolve() {
    let mut docs = Docs::new();
    docs.insert(
        "WAP".into(),
        headings("# Title\n## 0. TL;DR\n## 7. Notify\n### 7.2 Fixed order\n"),
    );
    let s = SECTION;
    let ok = |t: &str| check_text(t, None, &docs).is_empty();
    assert!(ok(&format!("// signed in the fixed order [WAP {s}7.2]")));
    assert!(ok(&format!("([WAP {s}0], [WAP {s}7])")));
    assert!(
        !ok(&format!("// the fixed order (reference {s}7.2)")),
        "bare"
    );
    assert!(
        !ok(&format!("// `WAP.md` {s}7.2")),
        "file named outside the form"
    );
    assert!(!ok(&format!("// [WAP {s}7.3]")), "no such heading");
    assert!(!ok(&format!("// [EXTRA {s}1.4.3]")), "no such file");
    assert!(
        !ok(&format!("// [WAP {s}7.2, {s}7]")),
        "two numbers in one bracket"
    );
    assert!(!ok(&format!("// [WAP {s}]")), "no number");
    assert!(!ok(&format!(
        "// see ../{}/X.md",
        ["shared", "/protocol"].concat()
    )));
    // Inside a protocol file a bare reference is to its own headings.
    assert!(check_text(&format!("see {s}7.2"), Some("WAP"), &docs).is_empty());
    assert!(!check_text(&format!("see {s}7.9"), Some("WAP"), &docs).is_empty());
    // Headings: `## 7.2 x`, `#### 1.4.3 x`, `## 0. x`; not `##7.2`, not prose.
    let h = headings("## 7.2 a\n#### 1.4.3 b\n## 0. c\n##9 d\ntext 5.5\n## Sources\n");
    assert_eq!(h.into_iter().collect::<Vec<_>>(), ["0", "1.4.3", "7.2"]);
}
