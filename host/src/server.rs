//! Putting payhost together: configuration, store, component, merchants, HTTP server and the
//! webhook worker.

use crate::config::Config;
use crate::http::mount::Mounts;
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::runtime::plugin_api::FieldKind;
use crate::runtime::{PluginRuntime, Plugins};
use crate::service::App;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Loads the components and the store, and checks and seeds the configured merchants. Every
/// problem is reported at once.
pub async fn build_app(config: Config) -> Result<Arc<App>> {
    build_app_with(config, Extras::default()).await
}

/// Loads every configured component (`[plugins.<id>]` / `[plugin]`): its manifest, the operator's
/// tighter call limit, and the id its table names, which must be the component's.
pub async fn load_plugins(config: &Config) -> Result<Plugins> {
    let (plugins, problems) = load_each_plugin(config, Some(&config.cache_dir)).await;
    match problems.as_slice() {
        [] => Ok(plugins),
        [one] => bail!("{one}"),
        _ => bail!("component problems:\n  - {}", problems.join("\n  - ")),
    }
}

/// [`load_plugins`] that goes on past a component that does not load (`payhost check-config`):
/// the ones that loaded, and a problem for each that did not. It compiles in memory, never
/// through the compile cache: a check creates no file or folder (one run as root would leave a
/// cache the service's user cannot use, and a mistyped database folder would exist afterwards).
pub async fn load_plugins_checked(config: &Config) -> (Plugins, Vec<String>) {
    load_each_plugin(config, None).await
}

async fn load_each_plugin(
    config: &Config,
    cache_dir: Option<&std::path::Path>,
) -> (Plugins, Vec<String>) {
    let net = crate::net::Client::new();
    let mut list: Vec<PluginRuntime> = Vec::new();
    let mut problems = Vec::new();
    for source in &config.plugins {
        match load_plugin(source, &list, &net, cache_dir).await {
            Ok(runtime) => list.push(runtime),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    (Plugins::new(list, net), problems)
}

/// The table a component is configured in: `plugin` or `plugins.<id>`.
fn source_table(source: &crate::config::PluginSource) -> String {
    match &source.id {
        Some(id) => format!("plugins.{id}"),
        None => "plugin".to_owned(),
    }
}

/// The operator may tighten the component's time limit, never loosen it: what is said (by
/// `serve` in its log, by `check-config` as a warning) when asked to.
pub fn looser_timeout(source: &crate::config::PluginSource, manifest: &Manifest) -> Option<String> {
    let t = source.call_timeout_ms?;
    (t > manifest.limits.call_timeout_ms).then(|| {
        format!(
            "{}.call_timeout_ms = {t} is looser than the manifest's {} ms ({}): the manifest's limit applies; call_timeout_ms can only tighten it",
            source_table(source),
            manifest.limits.call_timeout_ms,
            source.manifest.display()
        )
    })
}

async fn load_plugin(
    source: &crate::config::PluginSource,
    loaded: &[PluginRuntime],
    net: &std::sync::Arc<crate::net::Client>,
    cache_dir: Option<&std::path::Path>,
) -> Result<PluginRuntime> {
    let table = source_table(source);
    let mut manifest =
        Manifest::load(&source.manifest).with_context(|| {
            if source.defaulted {
                // Said, since the operator wrote no manifest and may not know one is needed.
                format!("{table}.manifest (none is given, so plugin.toml beside the configuration was looked for; write [plugin] manifest = \"<path of the component's plugin.toml>\")")
            } else {
                format!("{table}.manifest")
            }
        })?;
    if let Some(t) = source.call_timeout_ms {
        if let Some(w) = looser_timeout(source, &manifest) {
            tracing::warn!("{w}");
        }
        manifest.limits.call_timeout_ms = manifest.limits.call_timeout_ms.min(t);
    }
    if loaded.iter().any(|p| p.info.id == manifest.id) {
        bail!(
            "{table}: the component {:?} is configured twice",
            manifest.id
        );
    }
    // Loaded first: a manifest whose id is not its component's is said as such (the fix is in
    // the manifest), before the table's name is compared with an id both agree on.
    let runtime = PluginRuntime::load(&manifest, cache_dir, net.clone())
        .await
        .with_context(|| format!("{table}: cannot load {}", source.manifest.display()))?;
    if let Some(id) = &source.id {
        if *id != manifest.id {
            bail!(
                "{table}: the table is named {id:?} but {} is the manifest of {:?}, as its component says (name the table [plugins.{}])",
                source.manifest.display(),
                manifest.id,
                manifest.id
            );
        }
    }
    Ok(runtime)
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
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let started = Instant::now();
    let plugins = load_plugins(&config).await?;
    let store: Arc<dyn Store> = crate::store::open(&config)
        .await
        .map_err(|e| anyhow::Error::new(DatabaseError(format!("{e:#}"))))?;
    let problems = check_merchants(&config, &plugins).await;
    if !problems.is_empty() {
        bail!(
            "merchant settings problems:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let operator_origins = operator_origins(&config, &plugins, extra_origins);
    let guards = crate::auth::Guards::new(&config);
    let app = Arc::new(App {
        operator_origins,
        config,
        plugins,
        store,
        metrics: Metrics::default(),
        mounts: extras.mounts,
        default_settings: extras.default_settings,
        admission: crate::admission::Admission::new(crate::admission::Limits::for_this_machine())
            .context("cannot start the notification threads")?,
        webhook_wake: Arc::new(Notify::new()),
        guards,
        merchant_cache: Default::default(),
        order_locks: Default::default(),
        trade_queries: Default::default(),
    });
    seed_merchants(&app).await?;
    name_plugins_of_older_rows(&app).await?;
    let merchants = app.store.merchant_ids().await?.len();
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        plugins = %app.plugins.ids().join(","),
        compile = ?app.plugins.iter().map(|p| p.compile_source).collect::<Vec<_>>(),
        merchants,
        store = %app.config.store_description(),
        "payhost loaded"
    );
    Ok(app)
}

/// The hash that tells whether a `[merchants.<id>]` table changed: over the table as read, its
/// settings in name order (`v2:`; hashes of versions before several plugins have no prefix and
/// were taken over another order).
fn config_hash(settings: &crate::config::MerchantSettings) -> Result<String> {
    let mut canonical = settings.clone();
    canonical.settings.sort();
    Ok(format!(
        "v2:{}",
        hex::encode(Sha256::digest(serde_json::to_vec(&canonical)?))
    ))
}

/// Applies the `payhost.toml` merchant tables: a table is applied when it is new or changed since
/// it was last applied; settings saved through the API or the admin page are otherwise kept.
async fn seed_merchants(app: &App) -> Result<()> {
    for (id, settings) in &app.config.merchants {
        let mut s = settings.clone();
        let plugin = app
            .plugins
            .for_merchant(&s)
            .expect("checked by check_merchants");
        s.plugin_id = plugin.info.id.clone();
        let mut session = plugin.session().await?;
        if let Ok(Ok(normalised)) = session.validate_settings(&s.settings).await {
            s.settings = normalised;
        }
        let hash = config_hash(settings)?;
        // Read, decided and written again if another replica saved the merchant meanwhile (a
        // replica starting while others serve): a save made then is never undone by this one.
        let mut attempts = 0;
        while !seed_one(app, id, &s, &hash).await? {
            attempts += 1;
            if attempts == 5 {
                bail!("merchant {id}: its settings kept changing while the configuration was applied (saved on another replica five times over); start again");
            }
        }
    }
    // A table removed from the file does not remove its merchant (its payments are money
    // records): said, with how to stop serving it.
    for id in app.store.merchant_ids().await? {
        if app.config.merchants.contains_key(&id) {
            continue;
        }
        // Seeded by a table once (a save through the API since keeps the table's hash).
        if let Some((source, hash)) = app.store.merchant_origin(&id).await? {
            if source == "config" || hash.is_some() {
                tracing::warn!(merchant = %id, "merchant {id} is no longer in the configuration file (its [merchants.{id}] table was removed) but is still served from the database (its settings and tokens work): to stop it, remove it with DELETE /v1/merchants/{id} (refused while it has payments; revoke its tokens then), or put its table back");
            }
        }
    }
    Ok(())
}

/// Applies one merchant table (`s`, its hash `hash`) over what is stored: see
/// [`seed_merchants`]. False when the row changed between its read and the write (nothing
/// written: the caller reads and decides again).
async fn seed_one(
    app: &App,
    id: &str,
    table: &crate::config::MerchantSettings,
    hash: &str,
) -> Result<bool> {
    let mut s = table.clone();
    let raw = app.store.merchant_stored(id).await?;
    let stored = raw
        .as_deref()
        .map(crate::store::parse_merchant)
        .transpose()?;
    // A row seeded by an older version carries a hash taken another way: whether the table
    // changed cannot be told from it. Same settings, or settings edited since through the API
    // or the admin page: keep the row, take the new hash. A row still as seeded but with other
    // settings: the table changed, apply it.
    if let (Some((source, Some(old))), Some(raw)) =
        (app.store.merchant_origin(id).await?, raw.as_deref())
    {
        if !old.starts_with("v2:") {
            let same = stored.as_ref().is_some_and(|m| {
                let (mut a, mut b) = (m.settings.clone(), s.settings.clone());
                a.sort();
                b.sort();
                a == b
                    && m.shop_webhook_url == s.shop_webhook_url
                    && m.shop_webhook_secret == s.shop_webhook_secret
                    && m.shop_origins == s.shop_origins
            });
            if let Some(mut kept) = stored.clone().filter(|_| same || source == "api") {
                if kept.plugin_id.is_empty() {
                    kept.plugin_id = s.plugin_id.clone();
                }
                if !app
                    .store
                    .update_merchant(id, &kept, Some(hash), raw)
                    .await?
                {
                    return Ok(false);
                }
                if !same {
                    tracing::warn!(merchant = %id, "kept the settings saved through the API or the admin page: this table was last applied by an older payhost, so a change to it in payhost.toml cannot be told apart (save the merchant again to apply the file's values)");
                }
                return Ok(true);
            }
        }
    }
    // A merchant made with `payhost merchant add` (or saved through the API or the admin
    // page) that a table now configures: what the table leaves out (the shop's origins, its
    // webhook, and the shop secret its returns and webhooks are signed with, printed once)
    // stays as it was, and the row stays the API's, so the next change of the table keeps
    // them too. A row the table made itself is the table's: what it drops is dropped.
    if let Some(("api", recorded)) = app
        .store
        .merchant_origin(id)
        .await?
        .as_ref()
        .map(|(source, h)| (source.as_str(), h.as_deref()))
    {
        if recorded == Some(hash) {
            return Ok(true); // this table was applied already; the API's edits since are kept
        }
        if let (Some(stored), Some(raw)) = (stored, raw.as_deref()) {
            let mut kept = Vec::new();
            if s.shop_origins.is_empty() && !stored.shop_origins.is_empty() {
                s.shop_origins = stored.shop_origins;
                kept.push("shop_origins");
            }
            if s.shop_webhook_url.is_none() && stored.shop_webhook_url.is_some() {
                s.shop_webhook_url = stored.shop_webhook_url;
                kept.push("shop_webhook_url");
            }
            if s.shop_webhook_secret.is_none() && stored.shop_webhook_secret.is_some() {
                s.shop_webhook_secret = stored.shop_webhook_secret;
                kept.push("the shop secret");
            }
            if !kept.is_empty() {
                if !app.store.update_merchant(id, &s, Some(hash), raw).await? {
                    return Ok(false);
                }
                tracing::warn!(merchant = %id, plugin = %s.plugin_id, kept = %kept.join(", "), "merchant settings applied from the configuration over a merchant made with `payhost merchant add` or saved on the admin page; what its table leaves out was kept");
                return Ok(true);
            }
        }
    }
    if app.store.seed_merchant(id, &s, hash).await? {
        tracing::info!(merchant = %id, plugin = %s.plugin_id, "merchant settings applied from the configuration");
    }
    Ok(true)
}

/// Rows saved by versions that knew one component name none: they belong to the component of the
/// `[plugin]` table (or the only one), and are named now, once, so adding components later
/// cannot move them. With several components and no `[plugin]` table, the operator must say.
async fn name_plugins_of_older_rows(app: &App) -> Result<()> {
    let legacy_owner = match app.config.plugins.as_slice() {
        [_only] => app.plugins.first(),
        [first, ..] if first.id.is_none() => app.plugins.first(),
        _ => None,
    };
    let mut unnamed = Vec::new();
    for id in app.store.merchant_ids().await? {
        // Read and named again when another replica saved the row meanwhile (it may have named
        // it too; a save of an older replica leaves it unnamed).
        for attempt in 1..=5 {
            let Some(raw) = app.store.merchant_stored(&id).await? else {
                break;
            };
            let mut m = crate::store::parse_merchant(&raw)?;
            if !m.plugin_id.is_empty() {
                break;
            }
            let Some(p) = legacy_owner else {
                unnamed.push(id.clone());
                break;
            };
            m.plugin_id = p.info.id.clone();
            if app.store.update_merchant(&id, &m, None, &raw).await? {
                tracing::info!(merchant = %id, plugin = %m.plugin_id, "merchant stored by an older payhost: its plugin is named");
                break;
            }
            if attempt == 5 {
                bail!("merchant {id}: saved on another replica five times while its plugin was being named; start again");
            }
        }
    }
    if !unnamed.is_empty() {
        bail!(
            "merchants stored by an older payhost (which knew one component) name no plugin: {}; configure their component in the [plugin] table (or alone) for one start, and payhost names it in their rows",
            unnamed.join(", ")
        );
    }
    Ok(())
}

/// The origins the operator allowed explicitly: `[outbound] allowed_origins`, every URL written in
/// a `payhost.toml` merchant table (settings of kind `url` and the shop webhook), and the
/// embedder's.
fn operator_origins(
    config: &Config,
    plugins: &Plugins,
    extra: Vec<crate::net::Origin>,
) -> Vec<crate::net::Origin> {
    let mut origins = config.allowed_origins.clone();
    let mut add = |url: &str| {
        if let Ok(o) = crate::net::Origin::parse(url) {
            if !origins.contains(&o) {
                origins.push(o);
            }
        }
    };
    for m in config.merchants.values() {
        if let Some(p) = plugins.for_merchant(m) {
            for (k, v) in &m.settings {
                if p.info.field(k).is_some_and(|f| f.kind == FieldKind::Url) {
                    add(v);
                }
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

/// Every configured merchant: its plugin exists, its `<name>_file` settings are of kind `pem`,
/// and its component validates its settings.
pub async fn check_merchants(config: &Config, plugins: &Plugins) -> Vec<String> {
    let mut problems = Vec::new();
    let ids = plugins.ids();
    for (id, m) in &config.merchants {
        if m.plugin_id.is_empty() && ids.len() > 1 {
            problems.push(format!(
                "merchants.{id}.plugin: is required when several plugins are configured (one of {})",
                ids.join(", ")
            ));
            continue;
        }
        let Some(plugin) = plugins.for_merchant(m) else {
            let configured = if ids.is_empty() {
                "no component loaded".to_owned()
            } else {
                format!("configured: {}", ids.join(", "))
            };
            problems.push(format!(
                "merchants.{id}.plugin: {:?} is not configured ({configured})",
                m.plugin_id
            ));
            continue;
        };
        for name in &m.from_files {
            if plugin
                .info
                .field(name)
                .is_none_or(|f| f.kind != FieldKind::Pem)
            {
                problems.push(format!(
                    "merchants.{id}.{name}_file: only settings of kind pem are read from files, and {:?} has no pem setting {name:?}",
                    plugin.info.id
                ));
            }
        }
        let mut session = match plugin.session().await {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("merchants.{id}: {e}"));
                continue;
            }
        };
        match session.validate_settings(&m.settings).await {
            Ok(Ok(_)) => {}
            Ok(Err(fields)) => {
                // Named by the key as written (`…settings.partnr`, `…private_key_file`), with the
                // nearest setting the component knows; none for a setting whose file could not be
                // read (that problem is listed already).
                let known: Vec<&str> = plugin
                    .info
                    .settings
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                problems.extend(
                    fields
                        .iter()
                        .filter_map(|f| config.setting_problem(id, &f.field, &f.reason, &known)),
                );
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
    /// The failed refunds' trade queries ([`crate::trade_queries`]): waited for (a while) at the
    /// stop, so a query does not write after the store is made whole.
    queries: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Serves until the shutdown future given to [`start`] resolves, then stops the worker.
    pub async fn wait(self) -> Result<()> {
        let result = self.server.await?;
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        end_queries(self.queries).await;
        flush_store(&self.app).await;
        result
    }

    /// Asks the server and its workers to stop, without waiting for them.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting, lets in-flight requests finish, stops the webhook worker.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let result = self.server.await?;
        let _ = self.worker.await;
        end_queries(self.queries).await;
        flush_store(&self.app).await;
        result
    }
}

/// Waits for the trade queries' worker to end: it stops before the next trade, and cuts the
/// one under way short after a few seconds ([`crate::trade_queries::run`]).
async fn end_queries(queries: tokio::task::JoinHandle<()>) {
    if let Err(e) = queries.await {
        tracing::warn!(error = %e, "at the stop: the trade queries' worker ended badly");
    }
}

/// Nothing writes any more: the database's file is made whole on its own (SQLite's `-wal`
/// copied into it).
async fn flush_store(app: &App) {
    if let Err(e) = app.store.flush_for_stop().await {
        tracing::warn!(error = %format!("{e:#}"), "at the stop");
    }
}

/// Binds the configured address and serves until `shutdown` resolves or [`Running::shutdown`].
pub async fn start(
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let listener = bind(app.config.listen).await?;
    start_on(app, listener, shutdown).await
}

/// Binds the address payhost serves on; a port in use is said with what to do.
pub async fn bind(listen: std::net::SocketAddr) -> Result<TcpListener> {
    reserve(listen)?
        .listen(1024)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))
}

/// The address bound but not yet listening: `payhost serve` takes it before it opens the
/// database (a busy port leaves no new database behind) and listens once it can serve (a
/// connection accepted before then would wait for the start, and an open port would look ready).
pub fn reserve(listen: std::net::SocketAddr) -> Result<tokio::net::TcpSocket> {
    let said = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => "; another program (perhaps another payhost) has that port: stop it, or choose another address (`listen` in payhost.toml, or `payhost demo --listen 127.0.0.1:8081`)",
            std::io::ErrorKind::AddrNotAvailable => "; this machine has no such address: listen on one of its own (`ip addr` lists them), 127.0.0.1 behind a proxy on the same machine, or 0.0.0.0 for all of them (`listen` in payhost.toml)",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {listen}: {e}{hint}")
    };
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(said)?;
    // As a listener bound at once is: a restart is not refused while old connections linger.
    socket.set_reuseaddr(true).map_err(said)?;
    socket.bind(listen).map_err(said)?;
    Ok(socket)
}

/// [`start`] on a listener bound already (an ephemeral port the caller wrote into `public_url`).
pub async fn start_on(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(crate::webhooks::run(
        app.clone(),
        app.webhook_wake.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(prune_loop(app.clone(), stop_rx.clone()));
    tokio::spawn(crate::recovery::run(app.clone(), stop_rx.clone()));
    let queries = tokio::spawn(crate::trade_queries::run(app.clone(), stop_rx.clone()));
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
    tracing::info!(%addr, "payhost ready: listening");
    Ok(Running {
        addr,
        app,
        stop,
        server,
        worker,
        queries,
    })
}

/// Deletes raw notifications older than `[retention] raw_notification_days` (refused ones older
/// than `refused_notification_days`), every `prune_interval_s`, in batches of 500 with a pause
/// between them so the writer stays free for live traffic.
async fn prune_loop(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = std::time::Duration::from_secs(app.config.retention.prune_interval_s);
    let retention = app.config.retention.clone();
    loop {
        for refused in [false, true] {
            let days = if refused {
                retention.refused_notification_days
            } else {
                retention.raw_notification_days
            };
            let now_s = (crate::store::now_ms() / 1000).max(0) as u64;
            let before = crate::store::format_unix(now_s.saturating_sub(days as u64 * 86_400));
            let mut total = 0u64;
            loop {
                if *stop.borrow() {
                    return;
                }
                let pruned = if refused {
                    app.store.prune_refused_notifications(&before, 500).await
                } else {
                    app.store.prune_raw_notifications(&before, 500).await
                };
                match pruned {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) => {
                        tracing::error!(error = %e, refused, "cannot prune old raw notifications");
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if total > 0 {
                tracing::info!(deleted = total, %before, refused, "pruned raw notifications past the retention");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Whether this process was started with SIGHUP ignored (`nohup`).
#[cfg(unix)]
fn sighup_ignored() -> bool {
    // SAFETY: sigaction with a null new action only reads the current disposition into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Resolves on SIGTERM, SIGINT or SIGHUP: each stops gracefully (in-flight requests finish).
/// SIGHUP too, so a closed terminal or a `kill -HUP` meant as a reload never cuts requests off;
/// payhost reads its configuration only at start. Started under `nohup`, SIGHUP stays ignored.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
        // Under `nohup` SIGHUP is ignored on purpose: listening for it would undo that.
        let mut hangup = (!sighup_ignored())
            .then(|| signal(SignalKind::hangup()).expect("install the SIGHUP handler"));
        let hung_up = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = hung_up => "SIGHUP (payhost reads its configuration only at start: restart it to apply a change)",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping: in-flight requests finish first");
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The database could not be opened (or migrated) at start: the database's problem, not one of
/// the configuration file's keys, so `serve` does not name the file before it.
#[derive(Debug)]
pub struct DatabaseError(pub String);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatabaseError {}
