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
    if generate {
        say!("admin password: {password}");
    }
    say!("{line}");
    if let Some(path) = config {
        // Read again: the file may have been edited while the password was typed.
        let text = read(path)?;
        payhost::files::replace(path, &with_hash_line(&text, &line))?;
        eprintln!("written into {}", path.display());
    }
    Ok(())
}

/// `text` with its `admin_password_hash` line replaced by `line`, which goes before the first
/// table (top-level keys come before any).
fn with_hash_line(text: &str, line: &str) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("admin_password_hash"))
        .collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(lines.len());
    lines.insert(at, line);
    lines.join("\n") + "\n"
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
}
