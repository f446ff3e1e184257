//! `payhost sandbox`: the payhost-sandbox gateway alone.

use super::{fail, init_logging, partner_key, runtime};
use std::process::ExitCode;

/// Runs only the payhost-sandbox gateway (create, cashier, notify and retries, notify_verify,
/// pay channels) under /sandbox.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// An MD5 merchant the gateway knows, as PARTNER:KEY (repeatable).
    #[arg(long = "md5-merchant", value_name = "PARTNER:KEY")]
    md5_merchants: Vec<String>,
    /// Sandbox seconds per real second.
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    speed: f64,
}

pub fn run(args: Args) -> ExitCode {
    init_logging();
    let sandbox = payhost_sandbox::Sandbox::new(
        "/sandbox",
        &format!("http://{}/sandbox", args.listen),
        args.speed,
    );
    for m in &args.md5_merchants {
        let (partner, key) = match partner_key("--md5-merchant", m) {
            Ok(pk) => pk,
            Err(e) => return fail(e),
        };
        sandbox.add_merchant(payhost_sandbox::SandboxMerchant {
            partner,
            keys: payhost_sandbox::wire::Keys::Md5(key),
            privileged: true,
        });
    }
    runtime().block_on(async move {
        sandbox.start_delivery();
        match payhost_sandbox::serve(sandbox, args.listen, payhost::server::termination_signal())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}
