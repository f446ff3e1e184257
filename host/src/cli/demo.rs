//! `payhost demo`: payhost, the payhost-sandbox gateway and a demo shop in one process, already
//! configured.

use super::{fail, init_logging, partner_key, runtime};
use payhost::config::Config;
use payhost::http::mount::Mounts;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs payhost with the payhost-sandbox gateway and a demo shop, already configured.
///
/// payhost on its built-in defaults with the payhost-sandbox gateway and a demo shop: a B2C
/// merchant, a C2C marketplace merchant and an RSA merchant, already configured. Prints the
/// shop's, the admin page's and the gateway's URLs, the admin password and the API token.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// The plugin manifest.
    #[arg(long, default_value = "plugin.toml", value_name = "FILE")]
    manifest: PathBuf,
    /// The database file (default: a new temporary file).
    #[arg(long, value_name = "FILE")]
    database: Option<PathBuf>,
    /// The API token (default: random, printed at start).
    #[arg(long, value_name = "TOKEN")]
    api_token: Option<String>,
    /// The admin page's password (default: random, printed at start).
    #[arg(long, value_name = "PASSWORD")]
    admin_password: Option<String>,
    /// Sandbox seconds per real second (notify retries: 2m, 10m, … compressed).
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
        if let Err(e) = payhost::net::Origin::parse(o) {
            return fail(anyhow::anyhow!("--allow-origin {o:?}: {e}"));
        }
    }
    let admin_password =
        admin_password.unwrap_or_else(|| payhost::auth::random_token()[..16].to_owned());
    let demo = match payhost_sandbox::demo::build(&payhost_sandbox::demo::DemoOptions {
        public_url: format!("http://{listen}"),
        api_token,
        sandbox_speed,
        sandbox_merchants: extra,
    }) {
        Ok(d) => d,
        Err(e) => return fail(anyhow::anyhow!(e)),
    };
    let config = match demo_config(
        &demo,
        listen,
        &manifest,
        database,
        &admin_password,
        &allow_origins,
    ) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    runtime().block_on(async {
        demo.sandbox.start_delivery();
        let (sandbox, shop) = (demo.sandbox.clone(), demo.shop.clone());
        let extras = payhost::server::Extras {
            mounts: Mounts::new()
                .mount("/sandbox", move |req| {
                    let sandbox = sandbox.clone();
                    async move { sandbox.handle(req).await }
                })
                .mount("/shop", move |req| {
                    let shop = shop.clone();
                    async move { shop.handle(req).await }
                })
                .redirect_root("/shop"),
            // The sandbox and the shop's webhook are this process itself.
            allowed_origins: vec![demo.sandbox_origin.clone()],
            default_settings: demo.sandbox_settings.clone(),
        };
        let app = match payhost::server::build_app_with(config, extras).await {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        let running = match payhost::server::start(app, payhost::server::termination_signal()).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        println!(
            "\npayhost demo is running.\n  Shop (open this on a phone-sized window): http://{0}/shop\n  Admin: http://{0}/admin  (password: {admin_password})\n  API token: {1}\n  Sandbox gateway: http://{0}/sandbox/gateway\nPress Ctrl-C to stop.\n",
            running.addr, demo.api_token
        );
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

/// The demo's compile cache: private to this user, never a fixed shared path (another local user
/// could create that first and fill it). `$XDG_CACHE_HOME/payhost/demo`, else
/// `$HOME/.cache/payhost/demo`, else `$TMPDIR/payhost-demo-cache-<uid>`; whichever it is, the
/// engine uses it only when it belongs to this user and nobody else can write to it.
fn demo_cache_dir() -> PathBuf {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = from_env("XDG_CACHE_HOME") {
        return d.join("payhost/demo");
    }
    if let Some(h) = from_env("HOME") {
        return h.join(".cache/payhost/demo");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("payhost-demo-cache-{uid}"))
}

/// The configuration of `payhost demo`, as a `payhost.toml` would hold it: the demo's merchants
/// (from the sandbox crate, as plain settings), its token and webhook secret, fast webhook retries,
/// and the origins allowed with `--allow-origin`.
fn demo_config(
    demo: &payhost_sandbox::demo::Demo,
    listen: std::net::SocketAddr,
    manifest: &std::path::Path,
    database: Option<PathBuf>,
    admin_password: &str,
    allow_origins: &[String],
) -> anyhow::Result<Config> {
    use toml::{Table, Value};
    let path_text = |p: &std::path::Path| Value::String(p.to_string_lossy().into_owned());
    let database = database.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("payhost-demo-{}.db", std::process::id()))
    });
    let mut merchants = Table::new();
    for m in &demo.merchants {
        let settings: Table = m
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut table = Table::new();
        table.insert("settings".into(), Value::Table(settings));
        table.insert("shop_webhook_url".into(), m.shop_webhook_url.clone().into());
        table.insert(
            "shop_webhook_secret".into(),
            m.shop_webhook_secret.clone().into(),
        );
        merchants.insert(m.id.clone(), Value::Table(table));
    }
    let mut plugin = Table::new();
    plugin.insert("manifest".into(), path_text(manifest));
    let mut webhooks = Table::new();
    webhooks.insert("retry_base_ms".into(), 500.into());
    webhooks.insert("retry_max_ms".into(), 30_000.into());
    webhooks.insert("timeout_ms".into(), 5_000.into());
    // `--allow-origin`; the sandbox's own origin is allowed through `Extras`.
    let mut outbound = Table::new();
    outbound.insert(
        "allowed_origins".into(),
        allow_origins
            .iter()
            .cloned()
            .map(Value::String)
            .collect::<Vec<_>>()
            .into(),
    );
    let mut t = Table::new();
    t.insert("listen".into(), listen.to_string().into());
    t.insert("public_url".into(), format!("http://{listen}").into());
    t.insert("database".into(), path_text(&database));
    t.insert("api_token".into(), demo.api_token.clone().into());
    t.insert("cache_dir".into(), path_text(&demo_cache_dir()));
    t.insert(
        "admin_password_hash".into(),
        payhost::auth::hash_password(admin_password)?.into(),
    );
    t.insert("plugin".into(), Value::Table(plugin));
    t.insert("webhooks".into(), Value::Table(webhooks));
    t.insert("outbound".into(), Value::Table(outbound));
    t.insert("merchants".into(), Value::Table(merchants));
    Config::parse(&toml::to_string(&t)?, std::path::Path::new("."))
        .map_err(|e| e.context("the demo's configuration"))
}
