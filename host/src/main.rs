//! The `payhost` command line: parsing and dispatch only; each subcommand is a module of `cli/`.

mod cli;

/// mimalloc instead of glibc's allocator: the notify path allocates and frees many small,
/// short-lived buffers across threads, where glibc's arenas cost ≈ 10 % of payhost's CPU
/// (docs/PERFORMANCE.md, "Round 3, session 4").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "payhost",
    version,
    about = "Runs payment components (WebAssembly, payhost:payment) for self-hosted shops",
    long_about = "payhost loads the payment components its configuration names ([plugins.<id>] or [plugin], each \
                  with its plugin.toml), keeps orders and notifications in SQLite or PostgreSQL, and serves the \
                  shop API (/v1), each merchant's provider endpoints (/notify/{merchant}, /return/{merchant}; \
                  the older /alipay/{merchant}/notify and /alipay/{merchant}/return too) and an admin page \
                  (/admin). It knows no provider: each component describes itself. Every command exits 0 when \
                  it succeeds and 2 when it stops with an error (`payhost conformance` also 1 and 3, and 130 or 143 when interrupted).",
    after_help = "The log goes to standard error; PAYHOST_LOG sets its filter (default \
                  info,wasmtime=warn,cranelift=warn,tokio_postgres=warn; e.g. PAYHOST_LOG=info,payhost=debug to troubleshoot: plain debug also turns on the \
                  compiler's debug log, tens of thousands of lines each time the component is compiled)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands; each one's help is the doc comment of its `Args` in `cli/<name>.rs`.
#[derive(Subcommand)]
enum Command {
    Serve(cli::serve::Args),
    CheckConfig(cli::check_config::Args),
    Demo(cli::demo::Args),
    Sandbox(cli::sandbox::Args),
    AdminPassword(cli::admin_password::Args),
    Merchant(cli::merchant::Args),
    Token(cli::token::Args),
    AdminUser(cli::admin_user::Args),
    Conformance(cli::conformance::Args),
    PinComponent(cli::pin_component::Args),
    Backup(cli::backup::Args),
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // A conformance run refused for its arguments still says so in its --junit file, never
        // leaving an earlier run's report there for CI to read.
        if e.use_stderr() {
            // What clap says before its usage lines, on one line.
            let text = e.render().to_string();
            let said: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            cli::conformance::junit_for_refused_args(said.join(" ").trim_start_matches("error: "));
        }
        e.exit()
    });
    match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::CheckConfig(args) => cli::check_config::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Sandbox(args) => cli::sandbox::run(args),
        Command::AdminPassword(args) => cli::admin_password::run(args),
        Command::Merchant(args) => cli::merchant::run(args),
        Command::Token(args) => cli::token::run(args),
        Command::AdminUser(args) => cli::admin_user::run(args),
        Command::Conformance(args) => cli::runtime().block_on(cli::conformance::run(args)),
        Command::PinComponent(args) => cli::pin_component::run(args),
        Command::Backup(args) => cli::backup::run(args),
    }
}
