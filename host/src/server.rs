//! Putting payhost together: configuration, store, component, merchants, HTTP server and the
//! webhook worker.

use crate::config::Config;
use crate::http::mount::Mounts;
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::runtime::{pairs, PluginRuntime};
use crate::service::App;
use crate::store::Store;
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Loads the component and the store, and checks and seeds the configured merchants. Every
/// problem is reported at once.
pub async fn build_app(config: Config) -> Result<Arc<App>> {
    build_app_with(config, Extras::default()).await
}

/// What a program embedding payhost adds to it (`payhost demo`: its sandbox gateway and shop).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Handlers served beside payhost's routes, and where `GET /` goes.
    pub mounts: Mounts,
    /// Origins allowed explicitly besides the configuration's (`http://127.0.0.1:8080`): they may
    /// be private addresses, and provider URLs saved later may use them.
    pub allowed_origins: Vec<String>,
    /// Settings a merchant configured through the API or the admin page gets when it leaves
    /// them out.
    pub default_settings: Vec<(String, String)>,
}

/// [`build_app`] with an embedder's [`Extras`] (`payhost demo` mounts its sandbox and shop).
pub async fn build_app_with(config: Config, extras: Extras) -> Result<Arc<App>> {
    let mut extra_origins = Vec::new();
    for o in &extras.allowed_origins {
        extra_origins.push(
            crate::net::Origin::parse(o)
                .map_err(|e| anyhow::anyhow!("allowed origin {o:?}: {e}"))?,
        );
    }
    let started = Instant::now();
    let mut manifest = Manifest::load(&config.manifest)?;
    if let Some(t) = config.call_timeout_ms {
        // The operator may tighten the component's limit, never loosen it.
        manifest.limits.call_timeout_ms = manifest.limits.call_timeout_ms.min(t);
    }
    let runtime = PluginRuntime::load(
        &manifest,
        Some(&config.cache_dir),
        crate::net::Client::new(),
    )
    .await?;
    let store: Arc<dyn Store> = crate::store::open(&config)?;
    let problems = check_merchants(&config, &runtime).await;
    if !problems.is_empty() {
        bail!(
            "merchant settings problems:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let operator_origins = operator_origins(&config, &runtime, extra_origins);
    let guards = crate::auth::Guards::new(&config);
    let app = Arc::new(App {
        operator_origins,
        config,
        runtime,
        store,
        metrics: Metrics::default(),
        mounts: extras.mounts,
        default_settings: extras.default_settings,
        admission: tokio::sync::Semaphore::new(crate::service::admission_permits()),
        guards,
    });
    for (id, settings) in &app.config.merchants {
        let mut s = settings.clone();
        let mut session = app.runtime.session().await?;
        if let Ok(Ok(normalised)) = session.validate_settings(&pairs(s.plugin.clone())).await {
            s.plugin = normalised.into_iter().map(|p| (p.key, p.value)).collect();
        }
        let hash = hex::encode(Sha256::digest(serde_json::to_vec(settings)?));
        if app.store.seed_merchant(id, &s, &hash)? {
            tracing::info!(merchant = %id, "merchant settings applied from the configuration");
        }
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        compile = ?app.runtime.compile_source,
        merchants = app.store.merchant_ids()?.len(),
        "payhost ready"
    );
    Ok(app)
}

/// The origins the operator allowed explicitly: `[outbound] allowed_origins`, every URL written in
/// a `payhost.toml` merchant table (provider URLs and the shop webhook), and the embedder's.
fn operator_origins(
    config: &Config,
    runtime: &PluginRuntime,
    extra: Vec<crate::net::Origin>,
) -> Vec<crate::net::Origin> {
    let url_settings: Vec<&str> = runtime
        .info
        .settings
        .iter()
        .filter(|f| f.kind == crate::runtime::types::FieldKind::Url)
        .map(|f| f.name.as_str())
        .collect();
    let mut origins = config.allowed_origins.clone();
    let mut add = |url: &str| {
        if let Ok(o) = crate::net::Origin::parse(url) {
            if !origins.contains(&o) {
                origins.push(o);
            }
        }
    };
    for m in config.merchants.values() {
        for (k, v) in &m.plugin {
            if url_settings.contains(&k.as_str()) {
                add(v);
            }
        }
        if let Some(u) = &m.shop_webhook_url {
            add(u);
        }
    }
    for o in extra {
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    origins
}

/// Every configured merchant, validated by the component.
pub async fn check_merchants(config: &Config, runtime: &PluginRuntime) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, m) in &config.merchants {
        let mut session = match runtime.session().await {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("merchants.{id}: {e}"));
                continue;
            }
        };
        match session.validate_settings(&pairs(m.plugin.clone())).await {
            Ok(Ok(_)) => {}
            Ok(Err(fields)) => {
                for f in fields {
                    let field = match f.field.as_str() {
                        "private_key" if m.plugin.iter().any(|(k, _)| k == "private_key") => {
                            "private_key(_file)"
                        }
                        "alipay_public_key" => "alipay_public_key(_file)",
                        other => other,
                    };
                    problems.push(format!("merchants.{id}.{field}: {}", f.reason));
                }
            }
            Err(e) => problems.push(format!("merchants.{id}: {e}")),
        }
    }
    problems
}

/// A running payhost (tests and the demo start it in-process).
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub app: Arc<App>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<()>>,
    worker: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Serves until the shutdown future given to [`start`] resolves, then stops the worker.
    pub async fn wait(self) -> Result<()> {
        let result = self.server.await?;
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        result
    }

    /// Stops accepting, lets in-flight requests finish, stops the webhook worker.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let result = self.server.await?;
        let _ = self.worker.await;
        result
    }
}

/// Binds the configured address and serves until `shutdown` resolves or [`Running::shutdown`].
pub async fn start(
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let listener = TcpListener::bind(app.config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", app.config.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let wake = Arc::new(Notify::new());
    let worker = tokio::spawn(crate::webhooks::run(app.clone(), wake, stop_rx.clone()));
    tokio::spawn(prune_loop(app.clone(), stop_rx.clone()));
    tokio::spawn(crate::recovery::run(app.clone(), stop_rx.clone()));
    if let Some(metrics_addr) = app.config.metrics_listen {
        let metrics_listener = TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on metrics_listen {metrics_addr}: {e}"))?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "serving /metrics");
        let mut stop_metrics = stop_rx.clone();
        tokio::spawn(crate::http::serve_metrics(
            app.clone(),
            metrics_listener,
            async move {
                let _ = stop_metrics.wait_for(|stopped| *stopped).await;
            },
        ));
    }
    let mut stop_server = stop_rx;
    let server = tokio::spawn(crate::http::serve(app.clone(), listener, async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stop_server.wait_for(|stopped| *stopped) => {}
        }
    }));
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        app,
        stop,
        server,
        worker,
    })
}

/// Deletes raw notifications older than `[retention] raw_notification_days`, every
/// `prune_interval_s`, in batches of 500 with a pause between them so the writer stays free for
/// live traffic.
async fn prune_loop(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = std::time::Duration::from_secs(app.config.retention.prune_interval_s);
    loop {
        let keep_s = app.config.retention.raw_notification_days as u64 * 86_400;
        let now_s = (crate::store::now_ms() / 1000).max(0) as u64;
        let before = crate::store::format_unix(now_s.saturating_sub(keep_s));
        let mut total = 0u64;
        loop {
            if *stop.borrow() {
                return;
            }
            match app.store.prune_raw_notifications(&before, 500) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    tracing::error!(error = %e, "cannot prune old raw notifications");
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if total > 0 {
            tracing::info!(deleted = total, %before, "pruned raw notifications past the retention");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
