//! The subcommands of `payhost`, one module each. `main.rs` only parses the command line and
//! calls the module's `run`; what a command does, and the help text that says so, live together
//! here.

/// `println!` for a command's output. A reader that stops early (`payhost token list | head -1`)
/// ends the command quietly with status 0, as it asked for nothing more; any other write error (a
/// full disk) is reported with status 2. `println!` panics instead (status 101, a backtrace).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line_or_exit(format_args!($($arg)*))
    };
}

pub mod admin_password;
pub mod admin_user;
pub mod backup;
pub mod check_config;
pub mod conformance;
pub mod demo;
pub mod merchant;
mod password_input;
pub mod pin_component;
pub mod sandbox;
pub mod serve;
pub mod token;

use std::process::ExitCode;

/// A `--listen`-style address: an IP address and a port. A host name is refused with what to
/// write instead (clap's own "invalid socket address syntax" does not say).
pub fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        let example = match text.rsplit_once(':') {
            Some((host, port)) if host.eq_ignore_ascii_case("localhost") => {
                format!("127.0.0.1:{port}")
            }
            _ => "127.0.0.1:8080".to_owned(),
        };
        format!("not an IP address and port such as {example} (a host name such as localhost is not taken; [::1]:8080 for IPv6, 0.0.0.0:8080 for every address)")
    })
}

/// Every command's log: `PAYHOST_LOG` (an `EnvFilter`) or info without wasmtime's chatter, on
/// standard error.
pub fn init_logging() {
    let default = || {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn,tokio_postgres=warn")
    };
    let filter = match std::env::var_os("PAYHOST_LOG") {
        None => default(),
        Some(_) => tracing_subscriber::EnvFilter::try_from_env("PAYHOST_LOG").unwrap_or_else(|e| {
            // Said, not silently replaced: whoever set it expects the log they asked for.
            eprintln!("warning: PAYHOST_LOG is not a log filter ({e}); logging at the default level (e.g. PAYHOST_LOG=info,payhost=debug)");
            default()
        }),
    };
    // Colours only on a terminal: a log written to a file or a pipe stays plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Writes the audit log's line of a change a command made (actor `payhost <command>`, as the
/// admin's and the API's changes are logged); a failure is said, the change stays made.
pub async fn audit(
    store: &dyn payhost::store::Store,
    actor: &str,
    action: &str,
    merchant: Option<&str>,
    detail: &str,
) {
    if let Err(e) = store.record_audit(actor, action, merchant, detail).await {
        eprintln!("warning: cannot write the audit log ({e:#}); the change itself is made");
    }
}

/// The async runtime of the commands that need one.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime")
}

/// Writes one line to standard output and flushes it.
pub fn write_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// [`write_line`], ending the process when standard output cannot take it (see `say!`).
pub fn write_line_or_exit(args: std::fmt::Arguments<'_>) {
    if let Err(e) = write_line(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(i32::from(FAILED));
    }
}

/// The store of a command that only reads or changes what is there (`token list`, `admin-user
/// remove`…): a missing SQLite file is refused rather than created, since a new database made
/// here belongs to whoever ran the command (root, say), which `payhost serve`'s user may then be
/// unable to open, and a misspelt `--config` would only list nothing. Nor is an older schema
/// migrated: only `payhost serve` upgrades a database ([`payhost::store::Upgrade`]).
pub async fn open_existing_store(
    config: &payhost::config::Config,
) -> anyhow::Result<std::sync::Arc<dyn payhost::store::Store>> {
    if config.database_url.is_none() && !config.database.is_file() {
        anyhow::bail!(
            "no database at {} (nothing is stored yet; is this the configuration `payhost serve` uses?)",
            config.database.display()
        );
    }
    usable_sqlite_file(config)?;
    payhost::store::open_without_upgrade(config).await
}

/// A SQLite database's folder and file as `check-config` checks them (the folder there and
/// writable, the file readable and writable by this user): said in those words, instead of
/// SQLite's "unable to open database file".
fn usable_sqlite_file(config: &payhost::config::Config) -> anyhow::Result<()> {
    if config.database_url.is_none() {
        payhost::store::sqlite::check_file(&config.database).map_err(|why| {
            anyhow::anyhow!(
                "{why} — is this the configuration `payhost serve` uses, and the user it runs as?"
            )
        })?;
    }
    Ok(())
}

/// The store of a command that may be the first to use it (`merchant add`, `token create`,
/// `admin-user add`): a SQLite database it creates is given to the owner of its folder, the
/// user `payhost serve` runs as, when the command ran as someone else (root, say); otherwise
/// `payhost serve` could not open the file it made.
pub async fn open_store_creating(
    config: &payhost::config::Config,
) -> anyhow::Result<std::sync::Arc<dyn payhost::store::Store>> {
    // `symlink_metadata`: a link is there even when what it names is not. A database is never
    // made through a link someone else could have put in the folder (SQLite would create the
    // file it names, as whoever runs this command).
    let there = std::fs::symlink_metadata(&config.database);
    if config.database_url.is_none()
        && there.as_ref().is_ok_and(|m| m.file_type().is_symlink())
        && !config.database.exists()
    {
        anyhow::bail!(
            "{} is a symbolic link to a file that does not exist: no database is made through it (remove the link, or point `database` at the real file)",
            config.database.display()
        );
    }
    usable_sqlite_file(config)?;
    let new_file = config.database_url.is_none() && there.is_err();
    let store = payhost::store::open_without_upgrade(config).await?;
    if new_file {
        give_to_folder_owner(&config.database);
    }
    Ok(store)
}

/// Gives a new database file (and its `-wal`, `-shm`) to the owner of its folder when they
/// differ; says so, or why it could not. Links are never followed: each file is changed by
/// `lchown` and only while it is a plain file, so one swapped for a link (the folder's owner
/// can do that) changes the link alone, never what it names.
fn give_to_folder_owner(db: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let folder = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let (Ok(dir), Ok(file)) = (std::fs::metadata(&folder), std::fs::symlink_metadata(db)) else {
        return;
    };
    if dir.uid() == file.uid() || !file.is_file() {
        return;
    }
    let mut done = true;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            done &= std::os::unix::fs::lchown(&path, Some(dir.uid()), Some(dir.gid())).is_ok();
        }
    }
    if done {
        eprintln!(
            "note: made the database {} and gave it to the owner of its folder (uid {}), the user payhost serve runs as",
            db.display(),
            dir.uid()
        );
    } else {
        eprintln!(
            "warning: made the database {} as uid {}, but cannot give it to the owner of its folder (uid {}): run `chown {} {}*` before payhost serve, or run this command as the user payhost serve runs as",
            db.display(),
            file.uid(),
            dir.uid(),
            dir.uid(),
            db.display()
        );
    }
}

/// Reports an error and gives the exit status of every command that stops on one (README: `2`).
pub fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(FAILED)
}

/// The exit status of a command that stops with an error (a bad configuration, an unknown flag, a
/// file it cannot read): the README's table.
pub const FAILED: u8 = 2;

/// Splits a repeatable `PARTNER:KEY` flag value.
pub fn partner_key(flag: &str, value: &str) -> anyhow::Result<(String, String)> {
    // The value holds a key: no message quotes it.
    let Some((p, k)) = value.split_once(':') else {
        anyhow::bail!(
            "{flag}: expected PARTNER:KEY, e.g. 2088000000000001:<the 32-character MD5 key>"
        );
    };
    let partner = alipay_user_id(flag, "partner", p)?;
    let key = k.trim();
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        anyhow::bail!(
            "{flag} {partner}: the key must be 32 ASCII letters or digits (got {} characters), as the component requires",
            key.chars().count()
        );
    }
    Ok((partner, key.to_owned()))
}

/// A partner or seller id as the component takes it: 16 digits starting with 2088. The sandbox
/// refuses what the component would, so it never prints settings that cannot work.
pub fn alipay_user_id(flag: &str, what: &str, id: &str) -> anyhow::Result<String> {
    let id = id.trim();
    if id.len() != 16 || !id.starts_with("2088") || !id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!(
            "{flag}: the {what} {id:?} must be 16 digits starting with 2088, e.g. 2088000000000001"
        );
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::listen_address;

    #[test]
    fn a_listen_address_must_be_an_ip_and_a_port_and_a_host_name_is_told_so() {
        assert_eq!(
            listen_address("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(listen_address("[::1]:9000").is_ok());
        let e = listen_address("localhost:47231").unwrap_err();
        assert!(e.contains("such as 127.0.0.1:47231"), "{e}");
        assert!(e.contains("host name"), "{e}");
        assert!(listen_address("8080")
            .unwrap_err()
            .contains("127.0.0.1:8080"));
    }
}
