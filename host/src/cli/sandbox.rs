//! `payhost sandbox`: the payhost-sandbox gateway alone.

use super::{alipay_user_id, fail, init_logging, partner_key, runtime};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs only the payhost-sandbox gateway (create, cashier, notify and retries, notify_verify,
/// pay channels, the open platform's gateway.do) under /sandbox, for vendors driving the
/// component themselves (docs/EMBEDDING.md). Prints, for each merchant (MD5 and RSA) and open-platform
/// app, the settings to give the component.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR", value_parser = super::listen_address)]
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
    /// Sandbox seconds per real second, at least 1 (60 makes the notify retries' minutes seconds).
    /// The legacy API's times (gmt_payment, notify_time, gmt_refund) run on that clock too: above
    /// 1 they read ahead of the real time.
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    speed: f64,
}

/// An open-platform app id as the component takes it: 16 digits.
fn app_id(flag: &str, id: &str) -> anyhow::Result<String> {
    let id = id.trim();
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("{flag}: the app id {id:?} must be 16 digits, e.g. 2021000000000001");
    }
    Ok(id.to_owned())
}

/// Refuses a merchant or app given twice (with other keys, the second would silently win).
fn once(seen: &mut std::collections::HashSet<String>, flag: &str, id: &str) -> anyhow::Result<()> {
    if !seen.insert(id.to_owned()) {
        anyhow::bail!("{flag}: {id} is given more than once; give each merchant or app once");
    }
    Ok(())
}

pub fn run(args: Args) -> ExitCode {
    init_logging();
    if !(args.speed.is_finite() && args.speed >= 1.0) {
        return fail(anyhow::anyhow!(
            "--speed {}: must be a number of at least 1 (1 is real time, 60 makes a minute a second)",
            args.speed
        ));
    }
    let mut partners = std::collections::HashSet::new();
    let mut apps = std::collections::HashSet::new();
    let base = format!("http://{}/sandbox", args.listen);
    let sandbox = payhost_sandbox::Sandbox::new("/sandbox", &base, args.speed);
    for m in &args.md5_merchants {
        let (partner, key) = match partner_key("--md5-merchant", m)
            .and_then(|(p, k)| once(&mut partners, "--md5-merchant", &p).map(|()| (p, k)))
        {
            Ok(pk) => pk,
            Err(e) => return fail(e),
        };
        // The settings a merchant of payhost needs to use this gateway (the key as given).
        say!(
            "MD5 merchant {partner}: settings partner={partner} sign_type=MD5 key=<the key given> \
             seller_email=seller@sandbox.example gateway_url={base}/gateway \
             notify_verify_url={base}/mapi paychannel_url={base}/mapi mapi_url={base}/mapi"
        );
        sandbox.add_merchant(payhost_sandbox::SandboxMerchant {
            partner,
            keys: payhost_sandbox::wire::Keys::Md5(key),
            privileged: true,
        });
    }
    for p in &args.rsa_merchants {
        let partner = match alipay_user_id("--rsa-merchant", "partner", p)
            .and_then(|p| once(&mut partners, "--rsa-merchant", &p).map(|()| p))
        {
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
        say!(
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
                let app = app_id("--openapi-app", app)?;
                once(&mut apps, "--openapi-app", &app)?;
                Ok((app, alipay_user_id("--openapi-app", "seller id", seller)?))
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
        say!(
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
            Err(e) => {
                let in_use = e
                    .chain()
                    .filter_map(|c| c.downcast_ref::<std::io::Error>())
                    .any(|io| io.kind() == std::io::ErrorKind::AddrInUse);
                fail(match in_use {
                    true => e.context(format!(
                        "port {} is taken by another program (perhaps another sandbox or payhost): stop it, or choose another address with --listen",
                        args.listen.port()
                    )),
                    false => e,
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchants_the_component_would_refuse_are_refused_without_echoing_the_key() {
        let key = "abcdefghijklmnopqrstuvwxyz012345";
        assert_eq!(
            partner_key("--md5-merchant", &format!(" 2088000000009999 : {key} ")).unwrap(),
            ("2088000000009999".to_owned(), key.to_owned())
        );
        for (value, says) in [
            (
                "2088000000009999:short",
                "32 ASCII letters or digits (got 5",
            ),
            (
                "1234:abcdefghijklmnopqrstuvwxyz012345",
                "16 digits starting with 2088",
            ),
            ("supersecretkeywithoutacolon", "expected PARTNER:KEY"),
        ] {
            let e = partner_key("--md5-merchant", value)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{value}: {e}");
            assert!(
                !e.contains("short") && !e.contains("supersecret") && !e.contains(key),
                "{e}"
            );
        }
        assert!(alipay_user_id("--rsa-merchant", "partner", "12").is_err());
        assert!(alipay_user_id("--openapi-app", "seller id", "2088000000000010").is_ok());
        assert!(app_id("--openapi-app", "2021000000000009").is_ok());
        assert!(app_id("--openapi-app", "20210000").is_err());

        let mut seen = std::collections::HashSet::new();
        once(&mut seen, "--md5-merchant", "2088000000009999").unwrap();
        let e = once(&mut seen, "--rsa-merchant", "2088000000009999").unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
    }
}
