//! `payhost demo`: payhost, the payhost-sandbox gateway and a demo shop in one process, already
//! configured.

use super::{fail, init_logging, partner_key, runtime};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs payhost with the payhost-sandbox gateway and a demo shop, already configured.
///
/// payhost on its built-in defaults with the payhost-sandbox gateway and a demo shop: a B2C
/// merchant (`demo`), a C2C marketplace merchant (`market`), an RSA merchant (`rsa-shop`) and an
/// open-platform merchant (`open-shop`, APPID + RSA2), already configured. Prints the
/// shop's, the admin page's and the gateway's URLs, the admin password and the API token.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR", value_parser = super::listen_address)]
    listen: std::net::SocketAddr,
    /// The plugin manifest.
    #[arg(long, default_value = "plugin.toml", value_name = "FILE")]
    manifest: PathBuf,
    /// The database file (default: a new one in a private temporary folder, removed when the demo
    /// stops).
    #[arg(long, value_name = "FILE")]
    database: Option<PathBuf>,
    /// The API token (default: random, printed at start).
    #[arg(long, value_name = "TOKEN")]
    api_token: Option<String>,
    /// The admin page's password (default: random, printed at start).
    #[arg(long, value_name = "PASSWORD")]
    admin_password: Option<String>,
    /// Sandbox seconds per real second, at least 1 (notify retries: 2m, 10m, … compressed). The
    /// legacy API's times (gmt_payment, notify_time, gmt_refund) run on that clock too: above 1
    /// they read ahead of the real time.
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    sandbox_speed: f64,
    /// Another MD5 merchant the sandbox knows, as PARTNER:KEY (repeatable): for shops that
    /// configure payhost themselves, such as the ecshop and shopex adapters.
    #[arg(long = "sandbox-merchant", value_name = "PARTNER:KEY")]
    sandbox_merchants: Vec<String>,
    /// An origin the demo may reach although it is not public (repeatable), as
    /// `[outbound] allowed_origins` in payhost.toml: e.g. a shop on this machine whose webhook
    /// endpoint the demo calls (http://127.0.0.1:8000).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Where browsers, shops and the sandbox reach payhost when that is not --listen: e.g. a
    /// balancer in front of it (http://127.0.0.1:8081). The admin's login accepts this origin,
    /// and the notify and return URLs the sandbox gets start with it. Default: http://ADDR.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// A reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For and
    /// X-Forwarded-Proto payhost believes, as `trusted_proxies` in payhost.toml: behind a
    /// balancer, the admin's login throttle then counts each client, not the balancer.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<String>,
}

pub fn run(args: Args) -> ExitCode {
    let Args {
        listen,
        manifest,
        database,
        api_token,
        admin_password,
        sandbox_speed,
        sandbox_merchants,
        allow_origins,
        public_url,
        trusted_proxies,
    } = args;

    init_logging();
    let extra = match sandbox_merchants
        .iter()
        .map(|m| partner_key("--sandbox-merchant", m))
        .collect::<anyhow::Result<Vec<_>>>()
    {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    for o in &allow_origins {
        if let Err(e) = payhost::net::Origin::parse_bare(o) {
            return fail(anyhow::anyhow!("--allow-origin {o:?}: {e}"));
        }
    }
    // The demo can be exposed (--public-url, --trusted-proxy): its password follows the rule
    // of `payhost admin-password` and `admin-user`.
    if admin_password
        .as_deref()
        .is_some_and(|p| p.chars().count() < 12)
    {
        return fail(anyhow::anyhow!(
            "--admin-password: must be at least 12 characters (leave it out for a random one)"
        ));
    }
    if !(sandbox_speed.is_finite() && sandbox_speed >= 1.0) {
        return fail(anyhow::anyhow!(
            "--sandbox-speed {sandbox_speed}: must be a number of at least 1 (1 is real time, 60 makes a minute a second)"
        ));
    }
    if let Some(u) = &public_url {
        if let Err(rule) = origin_only(u) {
            return fail(anyhow::anyhow!("--public-url {u:?}: {rule}"));
        }
    }
    // Every address is not one a browser can be sent to: the shop's pages, the sandbox's
    // redirects and the admin's login are all built on the public URL.
    if listen.ip().is_unspecified() && public_url.is_none() {
        return fail(anyhow::anyhow!(
            "--listen {listen}: listens on every address, but the demo's pages, the sandbox's redirects and the admin's login are built on one address browsers can reach: add --public-url http://<this machine's address>:{port} (e.g. its LAN address), or listen on 127.0.0.1:{port} to use it on this machine only",
            port = listen.port()
        ));
    }
    if !manifest.is_file() {
        let here = std::env::current_dir().map_or_else(|_| ".".into(), |d| d.display().to_string());
        return fail(anyhow::anyhow!(
            "--manifest {}: no such file (from {here}); run payhost demo in the project's folder \
             (where plugin.toml is) or pass --manifest /path/to/plugin.toml",
            manifest.display()
        ));
    }
    let admin_password =
        admin_password.unwrap_or_else(|| payhost::auth::random_token()[..16].to_owned());
    // Without --database the demo keeps its database in a folder of its own, made for this run
    // (a path from the pid alone could be an older run's leftover, or another user's file).
    let temporary_dir = match database {
        Some(_) => None,
        None => match private_temp_dir() {
            Ok(dir) => Some(dir),
            Err(e) => return fail(e),
        },
    };
    let database = database.or_else(|| temporary_dir.as_ref().map(|d| d.join("payhost.db")));
    // Removed when the demo ends, however it ends (a --database given is kept).
    let _temporary = temporary_dir.map(RemovedOnDrop);
    let options = payhost::demo::Options {
        listen,
        manifest: &manifest,
        database,
        admin_password: &admin_password,
        allow_origins: &allow_origins,
        public_url: public_url.as_deref(),
        trusted_proxies: &trusted_proxies,
    };
    let public = options.public_url();
    let demo = match payhost_sandbox::demo::build(&payhost_sandbox::demo::DemoOptions {
        public_url: public.clone(),
        api_token,
        sandbox_speed,
        sandbox_merchants: extra,
    }) {
        Ok(d) => d,
        Err(e) => return fail(anyhow::anyhow!(e)),
    };
    let config = match payhost::demo::config(&demo, &options) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let _serving = match super::serve::serve_lock(&config) {
        Ok(l) => l,
        // The demo has no payhost.toml: a database problem is about the --database typed.
        Err(e) if _temporary.is_none() => {
            return fail(e.context(format!("--database {}", config.database.display())))
        }
        Err(e) => return fail(e),
    };
    let status = runtime().block_on(async {
        let app = match payhost::demo::build_app(&demo, config).await {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        let running = match payhost::server::start(app, payhost::server::termination_signal()).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let merchants: Vec<&str> = demo.merchants.iter().map(|m| m.id.as_str()).collect();
        // The URLs as browsers reach them: --public-url when a balancer is in front.
        let base = if options.public_url.is_some() {
            public.clone()
        } else {
            format!("http://{}", running.addr)
        };
        // A server keeps serving when nobody reads its start-up summary (stdout closed).
        let _ = super::write_line(format_args!(
            "\npayhost demo 已启动 (is running).\n  演示商城 Shop (open it in a phone-sized window): {0}/shop\n  管理后台 Admin: {0}/admin  (密码 password: {admin_password})\n  API 令牌 API token: {1}\n  商户 Merchants: {2}\n  沙箱网关 Sandbox gateway: {0}/sandbox/gateway\n按 Ctrl-C 停止 (Press Ctrl-C to stop).\n",
            base,
            demo.api_token,
            merchants.join(", ")
        ));
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    });
    status
}

/// A folder removed with everything in it when this goes out of scope.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new folder only this user can open, under the system's temporary folder; refused rather
/// than reused when the name exists.
fn private_temp_dir() -> anyhow::Result<std::path::PathBuf> {
    let name = format!(
        "payhost-demo-{}-{}",
        std::process::id(),
        &payhost::auth::random_token()[..12]
    );
    let dir = std::env::temp_dir().join(name);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot make the demo's database folder {}: {e}",
            dir.display()
        )
    })?;
    Ok(dir)
}

/// `--public-url`: `http(s)://host[:port]` and nothing after it (the demo's pages, sandbox and
/// shop live at the root, and their links start with `/`).
fn origin_only(url: &str) -> Result<(), &'static str> {
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] only, with no path, query or fragment (e.g. http://balancer.example:8081)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_public_url_is_an_origin() {
        for good in ["http://127.0.0.1:8081", "https://pay.example.com/"] {
            assert!(super::origin_only(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:8081",
            "http://",
            "http://lb/pay",
            "http://lb?x",
            "http://lb#f",
            "ftp://lb",
        ] {
            assert!(super::origin_only(bad).is_err(), "{bad}");
        }
    }
}
