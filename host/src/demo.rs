//! What `payhost demo` runs: payhost configured with the payhost-sandbox demo's merchants, the
//! sandbox gateway and the demo shop mounted on the same server. The command line
//! (`cli/demo.rs`) and the tests' in-process host both start it from here, so they run the same.

use crate::config::Config;
use crate::http::mount::Mounts;
use crate::server::Extras;
use crate::service::App;
use anyhow::Result;
use payhost_sandbox::demo::Demo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the operator chooses (`payhost demo`'s flags); the merchants come from the [`Demo`].
pub struct Options<'a> {
    /// Where payhost listens.
    pub listen: SocketAddr,
    /// The plugin manifest.
    pub manifest: &'a Path,
    /// The database file (`None`: a new temporary file).
    pub database: Option<PathBuf>,
    /// The admin page's password (stored as its hash).
    pub admin_password: &'a str,
    /// `[outbound] allowed_origins` (`--allow-origin`).
    pub allow_origins: &'a [String],
    /// `public_url` (`--public-url`): where browsers and the provider reach payhost, e.g. a
    /// balancer in front of it. `None`: `http://{listen}`.
    pub public_url: Option<&'a str>,
    /// `trusted_proxies` (`--trusted-proxy`): the balancers whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` payhost believes.
    pub trusted_proxies: &'a [String],
}

impl Options<'_> {
    /// The demo's `public_url`: `--public-url`, else `http://{listen}`.
    pub fn public_url(&self) -> String {
        match self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// The configuration of `payhost demo`, as a `payhost.toml` would hold it: the demo's merchants
/// (from the sandbox crate, as plain settings), its token and webhook secret, fast webhook retries,
/// and the origins allowed with `--allow-origin`.
pub fn config_toml(demo: &Demo, opts: &Options) -> Result<String> {
    use toml::{Table, Value};
    let path_text = |p: &Path| Value::String(p.to_string_lossy().into_owned());
    let database = opts.database.clone().unwrap_or_else(|| {
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
    plugin.insert("manifest".into(), path_text(opts.manifest));
    let mut webhooks = Table::new();
    webhooks.insert("retry_base_ms".into(), 500.into());
    webhooks.insert("retry_max_ms".into(), 30_000.into());
    webhooks.insert("timeout_ms".into(), 5_000.into());
    // `--allow-origin`; the sandbox's own origin is allowed through `Extras`.
    let mut outbound = Table::new();
    outbound.insert(
        "allowed_origins".into(),
        opts.allow_origins
            .iter()
            .cloned()
            .map(Value::String)
            .collect::<Vec<_>>()
            .into(),
    );
    let mut t = Table::new();
    t.insert("listen".into(), opts.listen.to_string().into());
    t.insert("public_url".into(), opts.public_url().into());
    if !opts.trusted_proxies.is_empty() {
        t.insert(
            "trusted_proxies".into(),
            opts.trusted_proxies
                .iter()
                .cloned()
                .map(Value::String)
                .collect::<Vec<_>>()
                .into(),
        );
    }
    t.insert("database".into(), path_text(&database));
    t.insert("api_token".into(), demo.api_token.clone().into());
    t.insert("cache_dir".into(), path_text(&cache_dir()));
    t.insert(
        "admin_password_hash".into(),
        crate::auth::hash_password(opts.admin_password)?.into(),
    );
    t.insert("plugin".into(), Value::Table(plugin));
    t.insert("webhooks".into(), Value::Table(webhooks));
    t.insert("outbound".into(), Value::Table(outbound));
    t.insert("merchants".into(), Value::Table(merchants));
    Ok(toml::to_string(&t)?)
}

/// [`config_toml`], loaded (relative paths from the working directory, as on the command line).
pub fn config(demo: &Demo, opts: &Options) -> Result<Config> {
    Config::parse(&config_toml(demo, opts)?, Path::new(".")).map_err(|e| {
        // The demo's configuration is made from its flags: a problem names the flag given.
        let mut text = format!("{e:#}");
        for (key, flag) in [
            ("api_token", "--api-token"),
            ("trusted_proxies", "--trusted-proxy"),
            ("outbound.allowed_origins", "--allow-origin"),
            ("public_url", "--public-url"),
            ("listen", "--listen"),
            ("database", "--database"),
        ] {
            text = flag_named(&text, key, flag);
        }
        anyhow::anyhow!(
            "{}",
            text.replacen("configuration problems", "the demo's flags", 1)
        )
    })
}

/// `text` with each problem line's `- key:` or `- key[n]:` named as the flag: a repeated flag's
/// problem quotes the value given, so its position in the list would only puzzle.
fn flag_named(text: &str, key: &str, flag: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(rest) = line
                .trim_start()
                .strip_prefix("- ")
                .and_then(|r| r.strip_prefix(key))
            else {
                return line.to_owned();
            };
            let rest = match rest.strip_prefix('[') {
                Some(r) => r
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .strip_prefix(']'),
                None => Some(rest),
            };
            match rest.filter(|r| r.starts_with(':')) {
                Some(r) => {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    format!("{indent}- {flag}{r}")
                }
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// payhost built from the demo's `config` with the sandbox under `/sandbox` and the shop under
/// `/shop` (`GET /` goes to the shop), the sandbox delivering its notifications. Serve it with
/// [`crate::server::start`] or [`crate::server::start_on`].
pub async fn build_app(demo: &Demo, config: Config) -> Result<Arc<App>> {
    let (sandbox, shop) = (demo.sandbox.clone(), demo.shop.clone());
    let extras = Extras {
        mounts: Mounts::new()
            .mount("/sandbox", move |req| {
                let sandbox = sandbox.clone();
                async move {
                    if controls_the_sandbox(req.uri().path()) && !from_this_machine(&req) {
                        return crate::http::body::text(
                            403,
                            "the sandbox's controls (faults, state, back-office refunds and finishes, bill rows) answer only this machine: send them from it",
                        );
                    }
                    sandbox.handle(req).await
                }
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
    let app = crate::server::build_app_with(config, extras).await?;
    demo.sandbox.start_delivery();
    Ok(app)
}

/// The sandbox's routes that play Alipay's back office or the test's hand (lost notifies, a
/// refund nobody asked for, every trade's state), not a buyer's: a demo served to other machines
/// (`--public-url`, behind a balancer) keeps them to this one.
fn controls_the_sandbox(path: &str) -> bool {
    matches!(
        path.strip_prefix("/sandbox").unwrap_or(path),
        "/faults" | "/state" | "/refund" | "/finish" | "/openapi/refund" | "/openapi/bill-extra"
    )
}

/// Whether the request comes from this machine (see [`crate::http::mount::FromThisMachine`]).
fn from_this_machine<B>(req: &http::Request<B>) -> bool {
    req.extensions()
        .get::<crate::http::mount::FromThisMachine>()
        .is_some_and(|here| here.0)
}

/// The demo's compile cache: private to this user, never a fixed shared path (another local user
/// could create that first and fill it). `$XDG_CACHE_HOME/payhost/demo`, else
/// `$HOME/.cache/payhost/demo`, else `$TMPDIR/payhost-demo-cache-<uid>`; whichever it is, the
/// engine uses it only when it belongs to this user and nobody else can write to it.
fn cache_dir() -> PathBuf {
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
