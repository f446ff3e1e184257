//! The `payhost` command line.

use clap::{Parser, Subcommand};
use payhost::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "payhost",
    version,
    about = "Runs the Alipay WAP-pay payment component for self-hosted shops",
    long_about = "payhost loads the Alipay WAP-pay WebAssembly component named by plugin.toml, keeps orders and \
                  notifications in SQLite, and serves the shop API (/v1), Alipay's notify and return endpoints \
                  (/alipay/{merchant}/notify, /alipay/{merchant}/return) and an admin page (/admin)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves shops and Alipay with the given configuration until SIGTERM or SIGINT.
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
    /// Runs payhost on its built-in defaults with a sandbox Alipay gateway and a demo shop: a B2C
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
        /// The API and admin token (default: random, printed at start).
        #[arg(long, value_name = "TOKEN")]
        api_token: Option<String>,
        /// Sandbox seconds per real second (notify retries: 2m, 10m, … compressed).
        #[arg(long, default_value_t = 1.0, value_name = "N")]
        sandbox_speed: f64,
        /// Another MD5 merchant the sandbox knows, as PARTNER:KEY (repeatable): for shops that
        /// configure payhost themselves, such as the ecshop and shopex adapters.
        #[arg(long = "sandbox-merchant", value_name = "PARTNER:KEY")]
        sandbox_merchants: Vec<String>,
    },
    /// Runs only the sandbox Alipay gateway (create, cashier, notify and retries, notify_verify,
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
    /// Writes the component's current sha256 into the manifest (after a deliberate rebuild).
    PinComponent {
        /// The plugin manifest to update.
        #[arg(long, default_value = "plugin.toml", value_name = "FILE")]
        manifest: PathBuf,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYHOST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            sandbox_speed,
            sandbox_merchants,
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
            let opts = payhost::demo::DemoOptions {
                listen,
                manifest,
                database,
                api_token,
                sandbox_speed,
                sandbox_merchants: extra,
            };
            runtime().block_on(async {
                let (config, sandbox, shop) = match payhost::demo::build(&opts) {
                    Ok(x) => x,
                    Err(e) => return fail(e),
                };
                sandbox.start_delivery();
                let token = config.api_token.clone();
                let app = match payhost::server::build_app_with(config, Some(sandbox), Some(shop)).await {
                    Ok(a) => a,
                    Err(e) => return fail(e),
                };
                let running = match payhost::server::start(app, payhost::server::termination_signal()).await {
                    Ok(r) => r,
                    Err(e) => return fail(e),
                };
                println!(
                    "\npayhost demo is running.\n  Shop (open this on a phone-sized window): http://{0}/shop\n  Admin: http://{0}/admin  (token: {token})\n  Sandbox gateway: http://{0}/sandbox/gateway\nPress Ctrl-C to stop.\n",
                    running.addr
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
            runtime().block_on(async move {
                let sandbox = payhost::sandbox::Sandbox::new(
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
                    sandbox.add_merchant(payhost::sandbox::SandboxMerchant {
                        partner: partner.trim().into(),
                        keys: payhost::sandbox::wire::Keys::Md5(key.trim().into()),
                        privileged: true,
                    });
                }
                sandbox.start_delivery();
                match payhost::sandbox::serve(
                    sandbox,
                    listen,
                    payhost::server::termination_signal(),
                )
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
                let manifest = match payhost::manifest::Manifest::load(&config.manifest) {
                    Ok(m) => m,
                    Err(e) => return fail(e),
                };
                let rt = match payhost::runtime::PluginRuntime::load(
                    &manifest,
                    Some(&config.cache_dir),
                    payhost::net::Client::new(),
                )
                .await
                {
                        Ok(r) => r,
                        Err(e) => return fail(e),
                    };
                let problems = payhost::server::check_merchants(&config, &rt).await;
                if problems.is_empty() {
                    println!(
                        "configuration OK: {} merchant(s), component {} {}",
                        config.merchants.len(),
                        rt.info.id,
                        rt.info.version
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
        Command::PinComponent { manifest } => match payhost::manifest::pin_component(&manifest) {
            Ok(sum) => {
                println!("{}: component sha256 = {sum}", manifest.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}
