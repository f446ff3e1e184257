//! The `payhost` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "payhost",
    version,
    about = "Runs the Alipay WAP-pay payment component for self-hosted shops"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the component's current sha256 into the manifest (after a deliberate rebuild).
    PinComponent {
        /// The plugin manifest to update.
        #[arg(long, default_value = "plugin.toml")]
        manifest: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::PinComponent { manifest } => match payhost::manifest::pin_component(&manifest) {
            Ok(sum) => {
                println!("{}: component sha256 = {sum}", manifest.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
