//! Loading the payment component and calling it.
//!
//! One [`PluginRuntime`] per process: the engine, the compiled component and one `InstancePre`.
//! Every request gets a [`Session`]: an instance with a memory cap, a fuel (CPU) budget per call
//! and a wall-clock deadline. The instance is a warm one from the runtime's idle list when the
//! component is pinned by checksum (a manifest), else a fresh one; a session whose calls all
//! ended normally hands its instance back, one where anything failed (trap, limit, timeout, a
//! call cut short) drops it. The guest yields to the executor at every epoch tick, so a long
//! computation (RSA) never holds a thread for more than one tick. The component performs no I/O:
//! when a flow asks for a request, the session sends it through [`net`](crate::net) under the
//! caller's policy and resumes the flow with the answer. A component that traps, loops or runs
//! out of memory fails that session only.

use super::bindings::{self, Guest, Pre};
use super::engine::{self, wt, CompileSource};
use super::plugin_api as api;
use super::plugin_api::SettingsInput;
use crate::manifest::Manifest;
use crate::net::{self, Origin, Policy};
use anyhow::{bail, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of the component's stderr kept for error messages (a Rust panic prints there).
const STDERR_CAPTURE: usize = 4096;

/// What the host keeps per store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    stderr: MemoryOutputPipe,
    /// When the current session's time is up: checked at every epoch tick while the guest runs.
    deadline: std::time::Instant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers that it refused, so the error can say so.
struct Limiter {
    max_memory: usize,
    memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.memory_refused = true;
            wasmtime::bail!("memory limit reached: the component asked for {desired} bytes");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Why a call into the component failed (as opposed to the plugin answering with an error).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error(
        "the payment component did not finish within {0:?} (its manifest's limits.call_timeout_ms)"
    )]
    Timeout(Duration),
    #[error("the payment component used up its CPU budget ({0} instructions: its manifest's limits.fuel_per_call)")]
    Cpu(u64),
    #[error("the payment component exceeded its memory limit of {0} MiB (its manifest's limits.memory_mib)")]
    Memory(u32),
    #[error("the payment component trapped: {0}")]
    Trap(String),
    #[error("cannot instantiate the payment component: {0}")]
    Instantiate(String),
    #[error("the payment component broke the contract: {0}")]
    Protocol(String),
    /// The component's contract version has no such export (refunds, close and bills are 0.4.0).
    #[error("the component's contract version {version} has no {what} (they need contract 0.4.0)")]
    Unsupported {
        version: &'static str,
        what: &'static str,
    },
}

impl CallError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Cpu(_) => "cpu",
            CallError::Memory(_) => "memory",
            CallError::Trap(_) => "trap",
            CallError::Instantiate(_) => "instantiate",
            CallError::Protocol(_) => "protocol",
            CallError::Unsupported { .. } => "unsupported",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub total_micros: AtomicU64,
    /// Requests the component's flows asked the host to send, and the time until each answer.
    pub requests_sent: AtomicU64,
    pub request_micros: AtomicU64,
}

/// The guest yields to the executor every this many instructions (≈ 1 ms of wasm on this
/// machine; an MD5 notification's calls use ≈ 1M in all, one RSA block ≈ 60M): a poll of a
/// guest call never holds its thread much longer, so a notification that turns out expensive
/// leaves the request's thread for the notification pool within about a millisecond
/// (`admission`), where the epoch tick alone would let it hold the thread for up to 10 ms.
pub const YIELD_FUEL: u64 = 2_000_000;

/// A warm instance is used for at most this many requests, then dropped: whatever a long-lived
/// guest heap accumulates (fragmentation, a slow leak) is bounded.
const MAX_USES: u32 = 1_000;

/// An instance and its store (fresh or warm), used by one session at a time.
struct Instance {
    store: Store<HostState>,
    bindings: Guest,
    /// Requests it served so far.
    uses: u32,
}

pub struct PluginRuntime {
    engine: Engine,
    /// Warm instances waiting for their next request (only for a component pinned by checksum).
    idle: std::sync::Mutex<Vec<Instance>>,
    /// How many warm instances are kept (the rest are dropped when their session ends).
    idle_cap: usize,
    /// Counters of instances created and reused, for `/metrics` and the benchmarks.
    pub instances: InstanceStats,
    /// The linked component, of the contract version its manifest names.
    pre: Pre,
    manifest: Manifest,
    /// The manifest's origins: every merchant's policy starts with them.
    manifest_origins: Vec<Origin>,
    net: Arc<net::Client>,
    pub info: api::PluginInfo,
    pub compile_source: CompileSource,
    pub stats: CallStats,
}

/// Interfaces a component built for `wasm32-wasip2` may import for its language runtime (stdio
/// for panic messages, clocks, random seeds, exit, an empty environment, no terminal). Anything
/// else it imports (filesystem, sockets, `wasi:http`) is linked to a trap: the host gives it no
/// such capability.
fn link_runtime_imports(linker: &mut Linker<HostState>) -> Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, random};
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(linker)
        .map_err(|e| wt(e, "cannot link WASI"))?;
    random::insecure::add_to_linker::<HostState, wasmtime_wasi::random::WasiRandom>(linker, |t| {
        t.wasi.random()
    })
    .map_err(|e| wt(e, "cannot link wasi:random/insecure"))?;
    random::insecure_seed::add_to_linker::<HostState, wasmtime_wasi::random::WasiRandom>(
        linker,
        |t| t.wasi.random(),
    )
    .map_err(|e| wt(e, "cannot link wasi:random/insecure-seed"))?;
    // Rust's std asks these when it panics (RUST_BACKTRACE, is stderr a terminal?): the component
    // gets an empty environment and no terminal, so a panic prints its message to stderr.
    cli::exit::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/exit"))?;
    cli::environment::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/environment"))?;
    cli::terminal_input::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/terminal-input"))?;
    cli::terminal_output::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/terminal-output"))?;
    cli::terminal_stdin::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/terminal-stdin"))?;
    cli::terminal_stdout::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/terminal-stdout"))?;
    cli::terminal_stderr::add_to_linker::<HostState, wasmtime_wasi::cli::WasiCli>(linker, cli_view)
        .map_err(|e| wt(e, "cannot link wasi:cli/terminal-stderr"))?;
    Ok(())
}

fn cli_view(t: &mut HostState) -> wasmtime_wasi::cli::WasiCliCtxView<'_> {
    wasmtime_wasi::cli::WasiCliView::cli(t)
}

/// The interfaces [`link_runtime_imports`] links (any version).
const LINKED_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// Every other interface the component imports gets functions that trap when called (Rust's std
/// imports `wasi:filesystem` or `wasi:cli/environment` even when it never uses them): the
/// component links, and anything that reaches for a file, a socket or the environment fails.
/// (wasmtime's `define_unknown_imports_as_traps` would also replace the versions of the interfaces
/// linked above that it does not match exactly, e.g. `wasi:random/random@0.2.6`.)
fn trap_unlinked_imports(
    linker: &mut Linker<HostState>,
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, import) in component.component_type().imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        if LINKED_INTERFACES.contains(&interface) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let mut linked = linker.instance(name)?;
        for (item, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{item}");
                    linked.func_new(item, move |_, _, _, _| {
                        wasmtime::bail!("the host gives the payment component no {what}")
                    })?;
                }
                ComponentItem::Resource(_) => {
                    use wasmtime::component::ResourceType;
                    use wasmtime_wasi::p2::{
                        DynInputStream, DynOutputStream, DynPollable, IoError,
                    };
                    // Resources the interface takes from `wasi:io` (linked above) must be the
                    // same types; its own (a file descriptor, a socket) are empty stand-ins.
                    let ty = match item {
                        "input-stream" => ResourceType::host::<DynInputStream>(),
                        "output-stream" => ResourceType::host::<DynOutputStream>(),
                        "pollable" => ResourceType::host::<DynPollable>(),
                        "error" => ResourceType::host::<IoError>(),
                        _ => ResourceType::host::<()>(),
                    };
                    linked.resource(item, ty, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

impl PluginRuntime {
    /// Loads the manifest's component: checksum, contract version, compile (or cache), link,
    /// then `describe` it and check that it agrees with the manifest.
    pub async fn load(
        manifest: &Manifest,
        cache_dir: Option<&Path>,
        net: Arc<net::Client>,
    ) -> Result<PluginRuntime> {
        let bytes = manifest.read_component()?;
        let limits = &manifest.limits;
        let memory_bytes = limits.memory_mib as usize * 1024 * 1024;
        let engine = engine::new_engine(memory_bytes, limits.max_instances)?;
        engine::start_epoch_ticker(&engine);
        let (component, compile_source) =
            engine::load_component(&engine, &bytes, &manifest.component.sha256, cache_dir)
                .map_err(|e| {
                    // A memory that starts larger than the limit: the manifest's number, not
                    // the file, is what to change.
                    if format!("{e:#}").contains("exceeds the limit") {
                        let fix = if manifest.synthetic {
                            "the default limit: give a manifest (plugin.toml) with a larger limits.memory_mib".to_owned()
                        } else {
                            format!("{} allows (limits.memory_mib = {}): raise it", manifest.file.display(), limits.memory_mib)
                        };
                        return e.context(format!(
                            "the component {} needs more memory than {fix}",
                            manifest.component_path().display(),
                        ));
                    }
                    // A file cut short (a partial copy or download) reads as "out of bounds".
                    e.context(format!(
                        "the component {} ({} bytes) does not compile: is it whole?",
                        manifest.component_path().display(),
                        bytes.len()
                    ))
                })?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        link_runtime_imports(&mut linker)?;
        trap_unlinked_imports(&mut linker, &component, &engine)
            .map_err(|e| wt(e, "cannot link the component's other imports"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| wt(e, "the component needs imports this host does not provide"))?;
        // The manifest names the contract version; a bare component (no manifest) is taken at the
        // newest version it exports.
        let version = if manifest.synthetic {
            bindings::exported_version(&component, &engine).ok_or_else(|| {
                anyhow::anyhow!(
                    "the component exports no payhost:payment/plugin of a version this host loads ({})",
                    bindings::VERSIONS.join(", ")
                )
            })?
        } else {
            manifest.wit.version.as_str()
        };
        let pre = Pre::new(version, pre).map_err(|e| {
            match bindings::exported_version(&component, &engine) {
                Some(other) if other != version => anyhow::anyhow!(
                    "{} says wit version {version}, but the component exports payhost:payment/plugin@{other}",
                    manifest.file.display()
                ),
                _ => e,
            }
        })?;
        let mut manifest_origins = Vec::new();
        for h in &manifest.outbound.allowed_hosts {
            manifest_origins
                .push(Origin::parse(h).map_err(|e| anyhow::anyhow!("outbound host {h}: {e}"))?);
        }
        let idle_cap = if manifest.synthetic {
            0
        } else {
            (limits.max_instances as usize / 2).min(32)
        };
        let mut runtime = PluginRuntime {
            engine,
            idle: std::sync::Mutex::new(Vec::new()),
            idle_cap,
            instances: InstanceStats::default(),
            pre,
            manifest: manifest.clone(),
            manifest_origins,
            net,
            info: api::PluginInfo::default(),
            compile_source,
            stats: CallStats::default(),
        };
        let mut info = runtime
            .session()
            .await
            .map_err(anyhow::Error::from)?
            .describe()
            .await
            .map_err(anyhow::Error::from)?;
        if !manifest.synthetic {
            check_manifest_agrees(manifest, &info)?;
            for field in &mut info.settings {
                field.rule_zh = manifest
                    .settings
                    .iter()
                    .find(|d| d.name == field.name)
                    .and_then(|d| d.rule_zh.clone());
            }
        }
        runtime.info = info;
        Ok(runtime)
    }

    /// A policy with the manifest's origins (public addresses only); the caller adds the
    /// merchant's own.
    pub fn base_policy(&self) -> Policy {
        let mut policy = Policy::default();
        for o in &self.manifest_origins {
            policy.allow(o.clone());
        }
        policy
    }

    pub fn net(&self) -> &Arc<net::Client> {
        &self.net
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The contract version the component is loaded with (`0.2.0`, `0.3.0`, `0.4.0`).
    pub fn contract_version(&self) -> &'static str {
        self.pre.version()
    }

    /// Limits of the requests a flow asks for: they end before the call's own deadline, so a
    /// slow gateway comes back to the component as a timeout it can report (504).
    fn outbound_limits(&self) -> net::Limits {
        let budget = Duration::from_millis(self.manifest.limits.call_timeout_ms * 4 / 5);
        net::Limits {
            connect_timeout: budget.min(Duration::from_secs(5)),
            answer_timeout: budget,
            max_response_bytes: 1 << 20,
            truncate: false,
        }
    }

    /// The longest one call of this component may take, its outbound requests included
    /// (`[limits] call_timeout_ms`).
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.manifest.limits.call_timeout_ms)
    }

    /// An instance for one request: a warm one when there is one, else a fresh one.
    pub async fn session(&self) -> Result<Session<'_>, CallError> {
        let timeout = Duration::from_millis(self.manifest.limits.call_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let warm = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match warm {
            Some(i) => {
                self.instances.reused.fetch_add(1, Ordering::Relaxed);
                i
            }
            None => {
                self.instances.created.fetch_add(1, Ordering::Relaxed);
                self.instantiate(deadline.into_std()).await?
            }
        };
        instance.uses += 1;
        instance.store.data_mut().deadline = deadline.into_std();
        Ok(Session {
            instance: Some(instance),
            reusable: true,
            deadline,
            timeout,
            runtime: self,
        })
    }

    /// A fresh store and instance: memory cap, and an epoch callback that yields to the executor
    /// at every tick and interrupts the guest once its session's deadline has passed.
    async fn instantiate(&self, deadline: std::time::Instant) -> Result<Instance, CallError> {
        let limits = &self.manifest.limits;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory: limits.memory_mib as usize * 1024 * 1024,
                memory_refused: false,
            },
            stderr,
            deadline,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(limits.fuel_per_call)
            .and_then(|()| store.fuel_async_yield_interval(Some(YIELD_FUEL)))
            .map_err(|e| CallError::Instantiate(e.to_string()))?;
        store.epoch_deadline_callback(|ctx| {
            Ok(if std::time::Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(Instance {
            store,
            bindings,
            uses: 0,
        })
    }

    /// Takes back the instance of a session whose calls all ended normally, if it left nothing
    /// behind: no open resource, nothing on stderr, no refused growth, not yet at [`MAX_USES`].
    fn put_back(&self, instance: Instance) {
        let state = instance.store.data();
        let clean = instance.uses < MAX_USES
            && state.table.is_empty()
            && !state.limiter.memory_refused
            && state.stderr.contents().is_empty();
        if !clean {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.idle_cap {
            idle.push(instance);
        }
    }
}

/// Instances created and reused.
#[derive(Debug, Default)]
pub struct InstanceStats {
    pub created: AtomicU64,
    pub reused: AtomicU64,
}

/// The manifest documents the settings schema; the component is the authority. They must agree on
/// names, and on which fields are required and secret (secrets are masked from what the manifest says).
fn check_manifest_agrees(manifest: &Manifest, info: &api::PluginInfo) -> Result<()> {
    let file = manifest.file.display();
    if info.id != manifest.id {
        bail!(
            "{file} says id {:?} but the component says {:?}",
            manifest.id,
            info.id
        );
    }
    if info.version != manifest.version {
        bail!(
            "{file} says version {} but the component says {}",
            manifest.version,
            info.version
        );
    }
    let mut problems = Vec::new();
    for field in &info.settings {
        match manifest.settings.iter().find(|d| d.name == field.name) {
            None => problems.push(format!("setting {} is not documented in {file}", field.name)),
            Some(d) if d.secret != field.secret || d.required != field.required => problems.push(format!(
                "setting {}: {file} says required={} secret={}, the component says required={} secret={}",
                field.name, d.required, d.secret, field.required, field.secret
            )),
            Some(_) => {}
        }
    }
    for d in &manifest.settings {
        if !info.settings.iter().any(|f| f.name == d.name) {
            problems.push(format!(
                "{file} documents setting {}, which the component does not have",
                d.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "{file} and the component disagree:\n  - {}",
            problems.join("\n  - ")
        )
    }
}

/// One instance, for one request. Calls share the instance (e.g. verify then match an order).
pub struct Session<'r> {
    /// Taken back by the runtime when the session ends (see `Drop`).
    instance: Option<Instance>,
    /// False while a call runs and after one failed: a call cut short (its future dropped on a
    /// timeout or a cancelled request) or failed leaves the guest in an unknown state.
    reusable: bool,
    deadline: tokio::time::Instant,
    timeout: Duration,
    runtime: &'r PluginRuntime,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take().filter(|_| self.reusable) {
            self.runtime.put_back(instance);
        }
    }
}

impl Session<'_> {
    fn instance(&mut self) -> &mut Instance {
        self.instance
            .as_mut()
            .expect("a session holds its instance until it is dropped")
    }

    /// Instructions (fuel) this session's calls used so far.
    pub fn fuel_consumed_by_last_call(&self) -> u64 {
        let left = self
            .instance
            .as_ref()
            .and_then(|i| i.store.get_fuel().ok())
            .unwrap_or(0);
        self.runtime.manifest.limits.fuel_per_call - left
    }

    fn classify(&mut self, error: wasmtime::Error) -> CallError {
        let limits = &self.runtime.manifest.limits;
        let state = self.instance().store.data();
        if state.limiter.memory_refused {
            return CallError::Memory(limits.memory_mib);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => return CallError::Cpu(limits.fuel_per_call),
            Some(Trap::Interrupt) => return CallError::Timeout(self.timeout),
            _ => {}
        }
        let stderr = String::from_utf8_lossy(&state.stderr.contents())
            .trim()
            .to_owned();
        if stderr.is_empty() {
            CallError::Trap(format!("{error:#}"))
        } else {
            CallError::Trap(format!("{error:#}; component stderr: {stderr}"))
        }
    }
}

/// Runs one export (a function of the session's contract version's bindings module, in host
/// types) with the session's deadline and turns failures into [`CallError`].
macro_rules! call_export {
    ($self:ident, $func:ident $(, $arg:expr)*) => {{
        let started = Instant::now();
        let deadline = $self.deadline;
        $self.reusable = false;
        let fuel = $self.runtime.manifest.limits.fuel_per_call;
        let instance = $self.instance();
        // Fuel is per call: time spent waiting for the provider between two steps is not the
        // component's. The epoch callback checks the session's deadline at the next tick.
        let _ = instance.store.set_fuel(fuel);
        instance.store.set_epoch_deadline(1);
        let result = {
            let (guest, store) = (&instance.bindings, &mut instance.store);
            let fut = async move {
                bindings::call_guest!(guest, store, $func $(, $arg)*)
            };
            tokio::time::timeout_at(deadline, fut).await
        };
        let stats = &$self.runtime.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.total_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(Ok(v)) => {
                $self.reusable = true;
                Ok(v)
            }
            Ok(Err(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                let err = $self.classify(e);
                tracing::error!(target: "payhost::component", call = stringify!($func), kind = err.kind(), error = %crate::log_limit::clean(&err), "payment component call failed");
                Err(err)
            }
            Err(_) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "payhost::component", call = stringify!($func), "payment component call timed out");
                Err(CallError::Timeout($self.timeout))
            }
        }
    }};
}

pub type Pairs = api::Settings;

pub fn pairs<K: AsRef<str>, V: AsRef<str>>(items: impl IntoIterator<Item = (K, V)>) -> Pairs {
    items
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect()
}

/// A flow asks for at most this many requests (the bundled component's need one): a component that keeps asking
/// is cut off.
const MAX_REQUESTS_PER_FLOW: usize = 4;

/// Runs a flow: the first call, then for every `send` the request through `net` and the flow's
/// resume call with the answer, until `done`.
macro_rules! drive_flow {
    ($self:ident, $policy:expr, $settings:expr, $first:expr, $resume:ident) => {{
        let mut step = $first;
        let mut sent = 0;
        loop {
            let pending = match step {
                Ok(Ok(api::Step::Done(d))) => break Ok(Ok(d)),
                Ok(Ok(api::Step::Send(p))) => p,
                Ok(Err(e)) => break Ok(Err(e)),
                Err(e) => break Err(e),
            };
            sent += 1;
            if sent > MAX_REQUESTS_PER_FLOW {
                break Err(CallError::Protocol(format!(
                    "a flow asked for more than {MAX_REQUESTS_PER_FLOW} requests"
                )));
            }
            // The store stays untouched (and unborrowed) while the request is out.
            let runtime: &PluginRuntime = $self.runtime;
            let answer = send(runtime, &$policy, &pending.request).await;
            step = call_export!($self, $resume, $settings, &pending.continuation, &answer);
        }
    }};
}

/// Sends one request a flow asked for, under `policy`: the request the component asked for is the
/// one the client sends (no reshaping between the bindings and the socket).
async fn send(
    runtime: &PluginRuntime,
    policy: &Policy,
    request: &api::OutgoingRequest,
) -> Result<api::IncomingResponse, api::SendFailure> {
    let started = Instant::now();
    let answer = runtime
        .net
        .send(policy, request, runtime.outbound_limits())
        .await;
    let stats = &runtime.stats;
    stats.requests_sent.fetch_add(1, Ordering::Relaxed);
    stats
        .request_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    answer
}

impl Session<'_> {
    pub async fn describe(&mut self) -> Result<api::PluginInfo, CallError> {
        call_export!(self, describe)
    }

    pub async fn validate_settings(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
    ) -> Result<Result<api::Settings, Vec<api::FieldError>>, CallError> {
        call_export!(self, validate_settings, settings)
    }

    /// Starts a payment: the component's create call goes out under `policy`.
    pub async fn start_payment(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        order: &api::PaymentRequest,
    ) -> Result<Result<api::PaymentStarted, api::PluginError>, CallError> {
        let first = call_export!(self, start_payment, settings, order);
        drive_flow!(self, policy, settings, first, resume_payment)
    }

    pub async fn verify_return(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        query: &[(String, String)],
    ) -> Result<Result<api::VerifiedReturn, api::PluginError>, CallError> {
        call_export!(self, verify_return, settings, query)
    }

    /// Verifies a notification, its confirmation request (`notify_verify`) sent under `policy`.
    pub async fn verify_notification(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        form: &(impl SettingsInput + ?Sized),
    ) -> Result<Result<api::Notification, api::PluginError>, CallError> {
        let first = call_export!(self, verify_notification, settings, form);
        drive_flow!(self, policy, settings, first, resume_notification)
    }

    /// The first step of a notification's verification only: what the component answers before
    /// the host sends anything (the conformance kit's hostile-input cases).
    pub async fn verify_notification_first_step(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        form: &[(String, String)],
    ) -> Result<Result<FirstStep<api::Notification>, api::PluginError>, CallError> {
        let step = call_export!(self, verify_notification, settings, form)?;
        Ok(step.map(|s| match s {
            api::Step::Done(n) => FirstStep::Done(n),
            api::Step::Send(p) => FirstStep::Send { url: p.request.url },
        }))
    }

    pub async fn match_order(
        &mut self,
        notification: &api::Notification,
        order: &api::OrderExpectation,
    ) -> Result<Result<(), Vec<api::FieldError>>, CallError> {
        call_export!(self, match_order, notification, order)
    }

    /// Asks the provider what it knows of one order (lost-notify recovery).
    pub async fn query_trade(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        out_trade_no: &str,
    ) -> Result<Result<api::TradeQuery, api::PluginError>, CallError> {
        let first = call_export!(self, query_trade, settings, out_trade_no);
        drive_flow!(self, policy, settings, first, resume_query)
    }

    /// Verifies an app SDK's synchronous result (a hint, never a payment).
    pub async fn verify_app_result(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        result: &str,
    ) -> Result<Result<api::AppResult, api::PluginError>, CallError> {
        call_export!(self, verify_app_result, settings, result)
    }

    pub async fn list_channels(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        out_user: Option<&str>,
    ) -> Result<Result<api::ChannelList, api::PluginError>, CallError> {
        let first = call_export!(self, list_channels, settings, out_user);
        drive_flow!(self, policy, settings, first, resume_channels)
    }
}

/// A flow's calls one at a time, nothing sent: the caller answers each request itself (the
/// conformance kit's `start.*` and `alipay.notify.unconfirmed_refused` cases).
impl Session<'_> {
    pub async fn start_payment_step(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        order: &api::PaymentRequest,
    ) -> Result<Result<api::Step<api::PaymentStarted>, api::PluginError>, CallError> {
        call_export!(self, start_payment, settings, order)
    }

    pub async fn resume_payment_step(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        continuation: &api::Continuation,
        answer: &Result<api::IncomingResponse, api::SendFailure>,
    ) -> Result<Result<api::Step<api::PaymentStarted>, api::PluginError>, CallError> {
        call_export!(self, resume_payment, settings, continuation, answer)
    }

    pub async fn notification_step(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        form: &[(String, String)],
    ) -> Result<Result<api::Step<api::Notification>, api::PluginError>, CallError> {
        call_export!(self, verify_notification, settings, form)
    }

    pub async fn resume_notification_step(
        &mut self,
        settings: &(impl SettingsInput + ?Sized),
        continuation: &api::Continuation,
        answer: &Result<api::IncomingResponse, api::SendFailure>,
    ) -> Result<Result<api::Step<api::Notification>, api::PluginError>, CallError> {
        call_export!(self, resume_notification, settings, continuation, answer)
    }
}

/// Contract 0.4.0's flows: refunds, closing a trade, the day's bill. A component of an older
/// contract answers [`CallError::Unsupported`] before anything is called.
impl Session<'_> {
    /// Whether the component's contract has refunds, close and bills (0.4.0).
    pub fn has_0_4_exports(&self) -> bool {
        self.instance
            .as_ref()
            .is_some_and(|i| i.bindings.has_0_4_exports())
    }

    fn require_0_4(&self, what: &'static str) -> Result<(), CallError> {
        if self.has_0_4_exports() {
            Ok(())
        } else {
            Err(CallError::Unsupported {
                version: self.runtime.contract_version(),
                what,
            })
        }
    }

    /// Starts a refund: the provider's refund call goes out under `policy` (OpenAPI), or the
    /// answer carries the page where the seller confirms it (`confirm`; legacy, whose result
    /// arrives later as a notification with `refund`).
    pub async fn start_refund(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        refund: &api::RefundRequest,
    ) -> Result<Result<api::RefundState, api::PluginError>, CallError> {
        self.require_0_4("refunds")?;
        let first = call_export!(self, start_refund, settings, refund);
        drive_flow!(self, policy, settings, first, resume_refund)
    }

    /// Asks the provider where a started refund stands.
    pub async fn query_refund(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        out_trade_no: &str,
        request_no: &str,
    ) -> Result<Result<api::RefundState, api::PluginError>, CallError> {
        self.require_0_4("refunds")?;
        let first = call_export!(self, query_refund, settings, out_trade_no, request_no);
        drive_flow!(self, policy, settings, first, resume_refund)
    }

    /// Closes an unpaid trade at the provider (or says it cannot: `at_provider` false).
    pub async fn close_trade(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        out_trade_no: &str,
    ) -> Result<Result<api::TradeClosed, api::PluginError>, CallError> {
        self.require_0_4("closing a trade")?;
        let first = call_export!(self, close_trade, settings, out_trade_no);
        drive_flow!(self, policy, settings, first, resume_close)
    }

    /// Asks where the bill of `date` (`YYYY-MM-DD`, the provider's date) can be downloaded. The
    /// caller GETs the URL under the merchant's policy and unpacks the archive for [`parse_bill`].
    ///
    /// [`parse_bill`]: Session::parse_bill
    pub async fn locate_bill(
        &mut self,
        policy: &Policy,
        settings: &(impl SettingsInput + ?Sized),
        date: &str,
    ) -> Result<Result<api::BillLocation, api::PluginError>, CallError> {
        self.require_0_4("bills")?;
        let first = call_export!(self, locate_bill, settings, date);
        drive_flow!(self, policy, settings, first, resume_bill)
    }

    /// Reads a downloaded bill's files into entries, in file order.
    pub async fn parse_bill(
        &mut self,
        files: &[api::BillFile],
    ) -> Result<Result<Vec<api::BillEntry>, api::PluginError>, CallError> {
        self.require_0_4("bills")?;
        call_export!(self, parse_bill, files)
    }
}

/// What a flow's first call answered: done, or a request it wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstStep<T> {
    Done(T),
    Send { url: String },
}
