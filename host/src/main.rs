//! The `payhost` command line.

mod conformance_cli;
mod cli {
    pub mod admin_user;
}

use clap::{Parser, Subcommand};
use payhost::config::Config;
use payhost::http::mount::Mounts;
use std::path::PathBuf;
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
                  (/admin). It knows no provider: each component describes itself."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves shops and payment providers with the given configuration until SIGTERM or SIGINT.
    Serve {
        /// The configuration file (payhost.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Checks a configuration, the plugin manifest, the component and every merchant's settings;
    /// lists every problem and exits non-zero if there is any.
    CheckConfig {
        /// The configuration file (payhost.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Runs payhost on its built-in defaults with the payhost-sandbox gateway and a demo shop: a B2C
    /// merchant, a C2C marketplace merchant and an RSA merchant, already configured.
    Demo {
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
    },
    /// Runs only the payhost-sandbox gateway (create, cashier, notify and retries, notify_verify,
    /// pay channels) under /sandbox.
    Sandbox {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// An MD5 merchant the gateway knows, as PARTNER:KEY (repeatable).
        #[arg(long = "md5-merchant", value_name = "PARTNER:KEY")]
        md5_merchants: Vec<String>,
        /// Sandbox seconds per real second.
        #[arg(long, default_value_t = 1.0, value_name = "N")]
        speed: f64,
    },
    /// Makes the admin password's argon2 hash: reads the password from standard input (one line),
    /// or with --generate makes a random one and prints it; prints the `admin_password_hash = "…"`
    /// line for payhost.toml, and with --config writes it into that file.
    AdminPassword {
        /// Make a random password (printed once) instead of reading one.
        #[arg(long)]
        generate: bool,
        /// Put the hash into this payhost.toml (replacing an `admin_password_hash` line).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Merchant slots: `merchant add` connects a shop with least privilege.
    Merchant {
        #[command(subcommand)]
        action: MerchantAction,
    },
    /// Per-merchant API tokens (a shop adapter gets one instead of the operator's api_token).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Admin logins of their own: operators (every merchant) and shop owners (their merchants only).
    AdminUser {
        #[command(subcommand)]
        action: cli::admin_user::AdminUserAction,
    },
    /// Runs the conformance kit: the contract suite against a component (`--component`), or the
    /// flow suite against a running payhost through a sandbox the kit starts (`--against`). Prints
    /// one line per case and `N passed, N failed` last; exits 1 when a case failed, 2 when the
    /// run could not start, 3 when nothing was tested.
    Conformance(conformance_cli::Args),
    /// Writes the component's current sha256 into the manifest (after a deliberate rebuild).
    PinComponent {
        /// The plugin manifest to update.
        #[arg(long, default_value = "plugin.toml", value_name = "FILE")]
        manifest: PathBuf,
    },
}

#[derive(Subcommand)]
enum MerchantAction {
    /// Creates a merchant slot before any provider settings exist: the component that pays for
    /// it, the shop origins it may use, and its per-merchant API token and shop secret, printed
    /// once. The shop saves its own provider settings with that token (PUT /v1/merchants/<id>):
    /// the token reads and replaces this merchant's settings, creates and reads its payments, and
    /// nothing else; webhook URLs, return URLs and cancel links must be on the shop origins.
    Add {
        /// The merchant id (1 to 64 letters, digits, '_' or '-'), e.g. ecshop-<partner ID>.
        id: String,
        /// The component that pays for it (`[plugins.<id>]`, or the manifest id of `[plugin]`);
        /// may be left out when the configuration has one component.
        #[arg(long, value_name = "ID")]
        plugin: Option<String>,
        /// An origin of the shop (https://shop.example), repeatable; at least one.
        #[arg(long = "shop-origin", value_name = "ORIGIN", required = true)]
        shop_origins: Vec<String>,
        /// A label for the token (e.g. "ecshop").
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Creates a token for one merchant and prints it (only its hash is stored).
    Create {
        #[arg(long, value_name = "ID")]
        merchant: String,
        /// A label to recognise it by (e.g. "ecshop").
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Lists the tokens (id, merchant, label, created, revoked).
    List {
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Revokes a token by its id.
    Revoke {
        #[arg(long)]
        id: i64,
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
}

fn admin_password(generate: bool, config: Option<PathBuf>) -> ExitCode {
    let password = if generate {
        payhost::auth::random_token()[..24].to_owned()
    } else {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            return fail(anyhow::anyhow!(
                "cannot read the password from standard input"
            ));
        }
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < 12 {
        return fail(anyhow::anyhow!(
            "the admin password must be at least 12 characters"
        ));
    }
    let hash = match payhost::auth::hash_password(&password) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let line = format!("admin_password_hash = \"{hash}\"");
    if generate {
        println!("admin password: {password}");
    }
    println!("{line}");
    if let Some(path) = config {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return fail(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        // Top-level keys come before the first table.
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("admin_password_hash"))
            .map(str::to_owned)
            .collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(lines.len());
        lines.insert(at, line);
        if let Err(e) = std::fs::write(&path, lines.join("\n") + "\n") {
            return fail(anyhow::anyhow!("cannot write {}: {e}", path.display()));
        }
        eprintln!("written into {}", path.display());
    }
    ExitCode::SUCCESS
}

fn token(action: TokenAction) -> ExitCode {
    let path = match &action {
        TokenAction::Create { config, .. }
        | TokenAction::List { config, .. }
        | TokenAction::Revoke { config, .. } => config.clone(),
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let store = match payhost::store::open(&config) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match action {
        TokenAction::Create {
            merchant, label, ..
        } => {
            let known = store.merchant(&merchant).ok().flatten().is_some()
                || config.merchants.contains_key(&merchant);
            if !known {
                return fail(anyhow::anyhow!("no merchant {merchant:?}"));
            }
            let token = payhost::auth::new_merchant_token();
            match store.create_token(&merchant, &payhost::auth::token_hash(&token), label.trim()) {
                Ok(id) => {
                    eprintln!("token #{id} for merchant {merchant} (shown only this once):");
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        TokenAction::List { merchant, .. } => match store.tokens(merchant.as_deref()) {
            Ok(list) => {
                for t in list {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.merchant_id,
                        t.label,
                        t.created_at,
                        t.revoked_at.as_deref().unwrap_or("live")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        TokenAction::Revoke { id, .. } => match store.revoke_token(id, None) {
            Ok(true) => {
                println!("token #{id} revoked");
                ExitCode::SUCCESS
            }
            Ok(false) => fail(anyhow::anyhow!("no live token #{id}")),
            Err(e) => fail(e),
        },
    }
}

/// The ids of the configured components (`[plugins.<id>]` keys, the manifest id of `[plugin]`).
fn plugin_ids(config: &Config) -> anyhow::Result<Vec<String>> {
    config
        .plugins
        .iter()
        .map(|p| match &p.id {
            Some(id) => Ok(id.clone()),
            None => payhost::manifest::Manifest::load(&p.manifest).map(|m| m.id),
        })
        .collect()
}

fn merchant(action: MerchantAction) -> ExitCode {
    let MerchantAction::Add {
        id,
        plugin,
        shop_origins,
        label,
        config,
    } = action;
    let config = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let ids = match plugin_ids(&config) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let plugin = match (plugin, ids.as_slice()) {
        (Some(p), _) if ids.contains(&p) => p,
        (Some(p), _) => {
            return fail(anyhow::anyhow!(
                "--plugin {p:?}: not configured (configured: {})",
                ids.join(", ")
            ))
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return fail(anyhow::anyhow!(
                "--plugin: is required with several components (one of {})",
                ids.join(", ")
            ))
        }
    };
    let store = match payhost::store::open(&config) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match payhost::onboarding::add_merchant(store.as_ref(), &id, &plugin, &shop_origins, &label) {
        Ok(m) => {
            eprintln!(
                "merchant {id} created (plugin {plugin}, shop origins {}). Shown only this once: put both into the shop's payment settings; the operator's api_token stays here.",
                shop_origins.join(", ")
            );
            println!("token: {}", m.token);
            println!("shop_secret: {}", m.shop_secret);
            ExitCode::SUCCESS
        }
        Err(e) => fail(anyhow::anyhow!("{e}")),
    }
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

fn init_logging() {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime")
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            runtime().block_on(async {
                let app = match payhost::server::build_app(config).await {
                    Ok(a) => a,
                    Err(e) => return fail(e),
                };
                let running = match payhost::server::start(
                    app,
                    payhost::server::termination_signal(),
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => return fail(e),
                };
                match running.wait().await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            })
        }
        Command::Demo {
            listen,
            manifest,
            database,
            api_token,
            admin_password,
            sandbox_speed,
            sandbox_merchants,
            allow_origins,
        } => {
            init_logging();
            let mut extra = Vec::new();
            for m in &sandbox_merchants {
                match m.split_once(':') {
                    Some((p, k)) => extra.push((p.trim().to_owned(), k.trim().to_owned())),
                    None => {
                        return fail(anyhow::anyhow!(
                            "--sandbox-merchant {m:?}: expected PARTNER:KEY"
                        ))
                    }
                }
            }
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
        Command::Sandbox {
            listen,
            md5_merchants,
            speed,
        } => {
            init_logging();
            let sandbox = payhost_sandbox::Sandbox::new(
                "/sandbox",
                &format!("http://{listen}/sandbox"),
                speed,
            );
            for m in &md5_merchants {
                let Some((partner, key)) = m.split_once(':') else {
                    return fail(anyhow::anyhow!(
                        "--md5-merchant {m:?}: expected PARTNER:KEY"
                    ));
                };
                sandbox.add_merchant(payhost_sandbox::SandboxMerchant {
                    partner: partner.trim().into(),
                    keys: payhost_sandbox::wire::Keys::Md5(key.trim().into()),
                    privileged: true,
                });
            }
            runtime().block_on(async move {
                sandbox.start_delivery();
                match payhost_sandbox::serve(sandbox, listen, payhost::server::termination_signal())
                    .await
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            })
        }
        Command::CheckConfig { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            runtime().block_on(async {
                let plugins = match payhost::server::load_plugins(&config).await {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                };
                let problems = payhost::server::check_merchants(&config, &plugins).await;
                if problems.is_empty() {
                    let components: Vec<String> = plugins
                        .iter()
                        .map(|p| format!("{} {}", p.info.id, p.info.version))
                        .collect();
                    println!(
                        "configuration OK: {} merchant(s), component(s) {}",
                        config.merchants.len(),
                        components.join(", ")
                    );
                    ExitCode::SUCCESS
                } else {
                    eprintln!(
                        "error: merchant settings problems:\n  - {}",
                        problems.join("\n  - ")
                    );
                    ExitCode::from(2)
                }
            })
        }
        Command::AdminPassword { generate, config } => admin_password(generate, config),
        Command::Merchant { action } => merchant(action),
        Command::Token { action } => token(action),
        Command::AdminUser { action } => cli::admin_user::run(action),
        Command::Conformance(args) => runtime().block_on(conformance_cli::run(args)),
        Command::PinComponent { manifest } => match payhost::manifest::pin_component(&manifest) {
            Ok(sum) => {
                println!("{}: component sha256 = {sum}", manifest.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}
