//! The subcommands of `payhost`, one module each. `main.rs` only parses the command line and
//! calls the module's `run`; what a command does, and the help text that says so, live together
//! here.

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

/// Every command's log: `PAYHOST_LOG` (an `EnvFilter`) or info without wasmtime's chatter, on
/// standard error.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYHOST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    // Colours only on a terminal: a log written to a file or a pipe stays plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The async runtime of the commands that need one.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime")
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
    match value.split_once(':') {
        Some((p, k)) => Ok((p.trim().to_owned(), k.trim().to_owned())),
        None => anyhow::bail!("{flag} {value:?}: expected PARTNER:KEY"),
    }
}
