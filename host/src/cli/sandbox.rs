//! `payhost sandbox`: the payhost-sandbox gateway alone.

use super::{fail, init_logging, partner_key, runtime};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs only the payhost-sandbox gateway (create, cashier, notify and retries, notify_verify,
/// pay channels, the open platform's gateway.do) under /sandbox, for vendors driving the
/// component themselves (docs/EMBEDDING.md). Prints, for each RSA merchant and open-platform
/// app, the settings to give the component.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// An MD5 merchant the gateway knows, as PARTNER:KEY (repeatable).
    #[arg(long = "md5-merchant", value_name = "PARTNER:KEY")]
    md5_merchants: Vec<String>,
    /// An RSA merchant (sign_type RSA) the gateway knows, as PARTNER (repeatable): its key pair
    /// and the sandbox's "Alipay" pair are kept in --keys-dir/PARTNER/.
    #[arg(long = "rsa-merchant", value_name = "PARTNER")]
    rsa_merchants: Vec<String>,
    /// An open-platform app (APPID + RSA2) the gateway knows, as APP_ID:SELLER_ID (repeatable):
    /// its key pair and the sandbox's "Alipay" pair are kept in --keys-dir/APP_ID/.
    #[arg(long = "openapi-app", value_name = "APP_ID:SELLER_ID")]
    openapi_apps: Vec<String>,
    /// Where the RSA keys are kept: made on the first start, read back on the next, so the
    /// settings given to a component stay valid.
    #[arg(long, default_value = "sandbox-keys", value_name = "DIR")]
    keys_dir: PathBuf,
    /// Sandbox seconds per real second.
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    speed: f64,
}

/// An id the gateway keys a merchant or app by: digits and letters only (it names a folder).
fn plain_id(flag: &str, what: &str, id: &str) -> anyhow::Result<String> {
    let id = id.trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        anyhow::bail!(
            "{flag}: the {what} {id:?} must be letters and digits only, e.g. 2088000000000001"
        );
    }
    Ok(id.to_owned())
}

pub fn run(args: Args) -> ExitCode {
    init_logging();
    let base = format!("http://{}/sandbox", args.listen);
    let sandbox = payhost_sandbox::Sandbox::new("/sandbox", &base, args.speed);
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
    for p in &args.rsa_merchants {
        let partner = match plain_id("--rsa-merchant", "partner", p) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let keys = match payhost_sandbox::keyfiles::load_or_make(
            &args.keys_dir.join(&partner),
            "merchant",
            1024,
        ) {
            Ok(k) => k,
            Err(e) => return fail(anyhow::anyhow!("--rsa-merchant {partner}: {e}")),
        };
        println!(
            "RSA merchant {partner}: settings partner={partner} sign_type=RSA \
             seller_email=seller@sandbox.example private_key=<{0}> \
             alipay_public_key=<{1}> mapi_public_key=<{1}> gateway_url={base}/gateway \
             notify_verify_url={base}/mapi paychannel_url={base}/mapi mapi_url={base}/mapi",
            keys.signer_private_file.display(),
            keys.alipay_public_file.display(),
        );
        sandbox.add_merchant(payhost_sandbox::SandboxMerchant {
            partner,
            keys: payhost_sandbox::wire::Keys::Rsa {
                merchant_public: Box::new(keys.signer.to_public_key()),
                alipay_private: Box::new(keys.alipay),
            },
            privileged: true,
        });
    }
    for a in &args.openapi_apps {
        let ids = a
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--openapi-app {a:?}: expected APP_ID:SELLER_ID"))
            .and_then(|(app, seller)| {
                Ok((
                    plain_id("--openapi-app", "app id", app)?,
                    plain_id("--openapi-app", "seller id", seller)?,
                ))
            });
        let (app_id, seller_id) = match ids {
            Ok(ids) => ids,
            Err(e) => return fail(e),
        };
        let keys = match payhost_sandbox::keyfiles::load_or_make(
            &args.keys_dir.join(&app_id),
            "app",
            2048,
        ) {
            Ok(k) => k,
            Err(e) => return fail(anyhow::anyhow!("--openapi-app {app_id}: {e}")),
        };
        println!(
            "open-platform app {app_id}: settings api=openapi app_id={app_id} seller_id={seller_id} \
             app_private_key=<{}> alipay_public_key=<{}> gateway={base}/openapi/gateway.do",
            keys.signer_private_file.display(),
            keys.alipay_public_file.display(),
        );
        sandbox.add_openapi_app(payhost_sandbox::openapi::OpenApiApp {
            app_id,
            seller_id,
            app_public: keys.signer.to_public_key(),
            alipay_private: keys.alipay,
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
