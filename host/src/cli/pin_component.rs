//! `payhost pin-component`: writes the component's sha256 into its manifest.

use super::fail;
use std::path::PathBuf;
use std::process::ExitCode;

/// Writes the component's current sha256 into the manifest (after a deliberate rebuild).
///
/// Only for a component you built yourself from this source: pinning makes payhost accept
/// whatever the file is, so never pin one sent to you or downloaded. The file must be a whole,
/// valid WebAssembly component; its contents are not otherwise checked.
#[derive(clap::Args)]
pub struct Args {
    /// The plugin manifest to update.
    #[arg(long, default_value = "plugin.toml", value_name = "FILE")]
    manifest: PathBuf,
}

pub fn run(Args { manifest }: Args) -> ExitCode {
    match payhost::manifest::pin_component(&manifest) {
        Ok(sum) => {
            say!("{}: component sha256 = {sum}", manifest.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
