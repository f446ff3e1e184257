//! Warnings for secrets other users of the machine can read: `payhost.toml` holds the API token,
//! merchant keys and webhook secrets, a `<name>_file` setting may name a private key, and the
//! SQLite database holds the merchants' settings. payhost makes its own database 0600 when it
//! opens it; the operator's files are theirs to fix, so this warns (at start and in
//! `check-config`) rather than refusing.

use std::path::Path;

/// One warning per file of the configuration at `path` (its text `text`) that group or others
/// may read.
pub(super) fn warnings(path: &Path, text: &str) -> Vec<String> {
    let mut files = vec![path.to_path_buf()];
    let base = path.parent().unwrap_or(Path::new("."));
    if let Ok(table) = text.parse::<toml::Table>() {
        // The SQLite database holds the merchants' keys too (`payhost serve` makes it 0600
        // when it opens it, and says so; `check-config` changes nothing, so it warns).
        let database = table
            .get("database")
            .and_then(|d| d.as_str())
            .map(str::trim);
        if let Some(db) = database.filter(|d| !d.contains("://") && !d.is_empty()) {
            files.push(base.join(db));
        }
        let merchants = table.get("merchants").and_then(|m| m.as_table());
        for merchant in merchants.into_iter().flat_map(|m| m.values()) {
            let Some(merchant) = merchant.as_table() else {
                continue;
            };
            // Flat keys and the `[merchants.<id>.settings]` form alike.
            let nested = merchant.get("settings").and_then(|s| s.as_table());
            for (key, value) in merchant.iter().chain(nested.into_iter().flatten()) {
                // Public keys and certificates are no secret; private keys are.
                let private = key.ends_with("_file") && key.contains("private");
                if let (true, Some(file)) = (private, value.as_str()) {
                    files.push(base.join(file.trim()));
                }
            }
        }
    }
    files
        .iter()
        .filter_map(|f| open_to_others(f).map(|mode| warning(f, mode)))
        .collect()
}

fn warning(file: &Path, mode: u32) -> String {
    format!(
        "{0} 可被其他用户读取（权限 {mode:o}），其中有密钥：请执行 chmod 600 {0} / {0} is readable by other users (mode {mode:o}) and holds secrets: chmod 600 it",
        file.display()
    )
}

/// The file's permission bits when group or others may read it. Only files: a key "file" that
/// is a directory is refused with its own problem (`chmod 600` would be no advice for it).
#[cfg(unix)]
fn open_to_others(file: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok().filter(|m| m.is_file())?;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn open_to_others(_: &Path) -> Option<u32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_configuration_and_its_key_files_are_named_when_others_can_read_them() {
        let dir = std::env::temp_dir().join(format!("payhost-file-modes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("payhost.toml");
        let text = "[merchants.m]\nprivate_key_file = \"k.pem\"\n[merchants.n.settings]\nalipay_public_key_file = \"pub.pem\"\n";
        std::fs::write(&config, text).unwrap();
        let (key, public) = (dir.join("k.pem"), dir.join("pub.pem"));
        std::fs::write(&key, "x").unwrap();
        std::fs::write(&public, "x").unwrap();
        let set = |f: &std::path::Path, mode| {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&config, 0o644);
        set(&key, 0o640);
        set(&public, 0o644); // a public key: no warning
        let w = super::warnings(&config, text);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("payhost.toml") && w[0].contains("644"),
            "{w:?}"
        );
        assert!(
            w[1].contains("k.pem") && w[1].contains("chmod 600"),
            "{w:?}"
        );
        set(&config, 0o600);
        set(&key, 0o600);
        assert!(super::warnings(&config, text).is_empty());
        // The SQLite database holds keys too; a PostgreSQL URL is no file.
        let db = dir.join("d.db");
        std::fs::write(&db, "x").unwrap();
        set(&db, 0o644);
        let with_db = format!("database = \"d.db\"\n{text}");
        let w = super::warnings(&config, &with_db);
        assert!(w.len() == 1 && w[0].contains("d.db"), "{w:?}");
        let pg = format!("database = \"postgres://u@h/d\"\n{text}");
        assert!(super::warnings(&config, &pg).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
