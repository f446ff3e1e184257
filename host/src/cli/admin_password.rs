//! `payhost admin-password`: the argon2 hash of the admin page's password for payhost.toml.

use super::fail;
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Makes the admin password's argon2 hash for payhost.toml.
///
/// Reads the password from standard input (one line),
/// or with --generate makes a random one and prints it; prints the `admin_password_hash = "…"`
/// line for payhost.toml, and with --config writes it into that file.
#[derive(clap::Args)]
pub struct Args {
    /// Make a random password (printed once) instead of reading one.
    #[arg(long)]
    generate: bool,
    /// Put the hash into this payhost.toml (replacing an `admin_password_hash` line).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The shortest password accepted.
const MIN_CHARS: usize = 12;

pub fn run(Args { generate, config }: Args) -> ExitCode {
    match admin_password(generate, config.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn admin_password(generate: bool, config: Option<&Path>) -> Result<()> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))
    };
    // A file that cannot be read fails before a password is made.
    if let Some(path) = config {
        read(path)?;
    }
    let password = if generate {
        payhost::auth::random_token()[..24].to_owned()
    } else {
        super::password_input::read_password(&format!(
            "管理密码（至少 {MIN_CHARS} 个字符，输入时不显示）Admin password ({MIN_CHARS}+ characters, not shown): "
        ))
        .map_err(|_| anyhow!("cannot read the password from standard input"))?
    };
    if password.chars().count() < MIN_CHARS {
        bail!("the admin password must be at least {MIN_CHARS} characters");
    }
    let hash = payhost::auth::hash_password(&password)?;
    let line = format!("admin_password_hash = \"{hash}\"");
    // Shown before the file is written: when standard output cannot take it, the file keeps its
    // old hash and the command fails (a new password nobody saw would lock the admin page).
    let shown = if generate {
        super::write_line(format_args!("admin password: {password}"))
    } else {
        Ok(())
    };
    shown
        .and_then(|()| super::write_line(format_args!("{line}")))
        .map_err(|e| anyhow!("cannot write to standard output ({e}); nothing was changed"))?;
    if let Some(path) = config {
        // Read again: the file may have been edited while the password was typed.
        let text = read(path)?;
        let rewritten = with_hash_line(&text, &line);
        // Written only when the file still reads as TOML with this very hash at the top: a file
        // this line-wise edit cannot handle (a quoted key, the key inside a multi-line string)
        // is left as it was, and the operator told what to add.
        if !only_the_hash_changed(&text, &rewritten, &hash) {
            bail!(
                "{} was not changed: it could not be rewritten safely (its admin_password_hash is written in a way this command does not edit); put the line above into it yourself, before the first [table], replacing the old admin_password_hash",
                path.display()
            );
        }
        payhost::files::replace(path, &rewritten)?;
        eprintln!("written into {}", path.display());
    }
    Ok(())
}

/// `text` with its top-level `admin_password_hash` line replaced by `line`, which goes before
/// the first table (top-level keys come before any). Lines in tables are left alone.
fn with_hash_line(text: &str, line: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(lines.len());
    let (top, tables) = lines.split_at(at);
    let mut out: Vec<&str> = top
        .iter()
        .copied()
        .filter(|l| !l.trim_start().starts_with("admin_password_hash"))
        .collect();
    out.push(line);
    out.extend_from_slice(tables);
    out.join("\n") + "\n"
}

/// True when `rewritten` is TOML whose top-level `admin_password_hash` is `hash` and which
/// says everything else exactly as `original` does.
fn only_the_hash_changed(original: &str, rewritten: &str, hash: &str) -> bool {
    let (Ok(mut before), Ok(mut after)) = (
        toml::from_str::<toml::Table>(original),
        toml::from_str::<toml::Table>(rewritten),
    ) else {
        return false;
    };
    let new = after.remove("admin_password_hash");
    before.remove("admin_password_hash");
    new.as_ref().and_then(|v| v.as_str()) == Some(hash) && before == after
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hash_line_replaces_the_old_one_before_the_first_table() {
        let text = "listen = \"x\"\nadmin_password_hash = \"old\"\n[plugin]\nmanifest = \"p\"\n";
        assert_eq!(
            super::with_hash_line(text, "admin_password_hash = \"new\""),
            "listen = \"x\"\nadmin_password_hash = \"new\"\n[plugin]\nmanifest = \"p\"\n"
        );
    }

    #[test]
    fn a_file_the_line_edit_cannot_handle_is_detected() {
        use super::{only_the_hash_changed as ok, with_hash_line as edit};
        let line = "admin_password_hash = \"new\"";
        // A quoted key would be written twice: not TOML any more.
        let quoted = "\"admin_password_hash\" = \"old\"\n[plugin]\n";
        assert!(!ok(quoted, &edit(quoted, line), "new"));
        // A line inside a multi-line string is not the key: the string would change.
        let inside = "note = \"\"\"\nadmin_password_hash in a note\n\"\"\"\n[plugin]\n";
        assert!(!ok(inside, &edit(inside, line), "new"));
        // A misplaced line in a table is left where it is (and check-config names it).
        let misplaced = "listen = \"x\"\n[admin]\nadmin_password_hash = \"old\"\n";
        let out = edit(misplaced, line);
        assert!(
            out.contains("[admin]\nadmin_password_hash = \"old\""),
            "{out}"
        );
        assert!(ok(misplaced, &out, "new"));
        let plain = "admin_password_hash = \"old\"\n[plugin]\nmanifest = \"p\"\n";
        assert!(ok(plain, &edit(plain, line), "new"));
    }
}
