//! `payhost conformance`: the conformance kit (`payhost-conformance`) run against a component this
//! binary loads (`--component`), or against a deployed host (`--against`). The kit owns the cases
//! and the report; this module gives it the component (over the host's own runtime) and a way to
//! start a host around it.

use payhost::config::Config;
use payhost::manifest::Manifest;
use payhost::runtime::plugin::FirstStep;
use payhost::runtime::plugin_api as api;
use payhost::runtime::PluginRuntime;
use payhost_conformance as kit;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The component under test, loaded by the host's runtime (limits, fuel, deadlines as in
/// production).
pub struct Loaded {
    pub runtime: PluginRuntime,
    /// Byte continuations (contract 0.2.0) that are not UTF-8, by the name the kit was given.
    pub kept: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
}

fn kit_info(i: api::PluginInfo) -> kit::PluginInfo {
    kit::PluginInfo {
        id: i.id,
        name: i.name,
        version: i.version,
        provider: i.provider,
        settings: i
            .settings
            .into_iter()
            .map(|f| kit::SettingField {
                name: f.name,
                label_zh: f.label_zh,
                label_en: f.label_en,
                kind: f.kind.as_str().to_owned(),
                required: f.required,
                secret: f.secret,
                rule: f.rule,
                options: f.options.into_iter().map(|o| o.value).collect(),
                default_value: f.default_value,
            })
            .collect(),
        notify_ack: i.notify_ack,
        notify_retry: i.notify_retry,
    }
}

impl kit::ComponentUnderTest for Loaded {
    fn info(&self) -> kit::BoxFuture<'_, Result<kit::PluginInfo, String>> {
        Box::pin(async move {
            let mut s = self.runtime.session().await.map_err(|e| e.to_string())?;
            s.describe().await.map(kit_info).map_err(|e| e.to_string())
        })
    }

    fn validate_settings<'a>(
        &'a self,
        settings: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, Result<Vec<(String, String)>, Vec<kit::FieldError>>> {
        Box::pin(async move {
            let trapped = |e: payhost::runtime::CallError| {
                vec![kit::FieldError {
                    field: String::new(),
                    reason: e.to_string(),
                }]
            };
            let mut s = self.runtime.session().await.map_err(trapped)?;
            match s.validate_settings(settings).await.map_err(trapped)? {
                Ok(v) => Ok(v),
                Err(fields) => Err(fields
                    .into_iter()
                    .map(|f| kit::FieldError {
                        field: f.field,
                        reason: f.reason,
                    })
                    .collect()),
            }
        })
    }

    fn verify_notification<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        form: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, kit::CallOutcome> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return kit::CallOutcome::Trapped(e.to_string()),
            };
            match s.verify_notification_first_step(settings, form).await {
                Ok(Ok(FirstStep::Done(_))) => kit::CallOutcome::Verified,
                Ok(Ok(FirstStep::Send { url })) => kit::CallOutcome::WantsToSend { url },
                Ok(Err(e)) => kit::CallOutcome::Refused(e.to_string()),
                Err(e) => kit::CallOutcome::Trapped(e.to_string()),
            }
        })
    }

    fn verify_return<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        query: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, kit::CallOutcome> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return kit::CallOutcome::Trapped(e.to_string()),
            };
            match s.verify_return(settings, query).await {
                Ok(Ok(_)) => kit::CallOutcome::Verified,
                Ok(Err(e)) => kit::CallOutcome::Refused(e.to_string()),
                Err(e) => kit::CallOutcome::Trapped(e.to_string()),
            }
        })
    }

    fn call_limit(&self) -> Duration {
        Duration::from_millis(self.runtime.manifest().limits.call_timeout_ms)
    }

    fn allowed_hosts(&self) -> Vec<String> {
        self.runtime.manifest().outbound.allowed_hosts.clone()
    }

    fn start_payment<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        order: &'a kit::KitOrder,
    ) -> kit::BoxFuture<'a, Option<kit::FlowStep>> {
        Box::pin(async move {
            let Some(product) = product(&order.product) else {
                return Some(kit::FlowStep::Refused(format!(
                    "invalid order: product: {:?} is not wap, pc or app",
                    order.product
                )));
            };
            let request = api::PaymentRequest {
                product,
                out_trade_no: order.out_trade_no.clone(),
                subject: order.subject.clone(),
                total_fee: order.total_fee.clone(),
                seller: order.seller.clone(),
                return_url: order.return_url.clone(),
                notify_url: order.notify_url.clone(),
                merchant_url: None,
                pay_expire: None,
                out_user: None,
                cashier_code: None,
                request_id: order.request_id.clone(),
            };
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return Some(kit::FlowStep::Trapped(e.to_string())),
            };
            Some(self.step(s.start_payment_step(settings, &request).await, started_to))
        })
    }

    fn resume_payment<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        continuation: &'a str,
        answer: &'a kit::KitAnswer,
    ) -> kit::BoxFuture<'a, Option<kit::FlowStep>> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return Some(kit::FlowStep::Trapped(e.to_string())),
            };
            let step = s
                .resume_payment_step(
                    settings,
                    &self.continuation(continuation),
                    &answer_of(answer),
                )
                .await;
            Some(self.step(step, started_to))
        })
    }

    fn notification_step<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        form: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, Option<kit::FlowStep>> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return Some(kit::FlowStep::Trapped(e.to_string())),
            };
            Some(self.step(s.notification_step(settings, form).await, |n| {
                n.trade_status
            }))
        })
    }

    fn resume_notification<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        continuation: &'a str,
        answer: &'a kit::KitAnswer,
    ) -> kit::BoxFuture<'a, Option<kit::FlowStep>> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return Some(kit::FlowStep::Trapped(e.to_string())),
            };
            let step = s
                .resume_notification_step(
                    settings,
                    &self.continuation(continuation),
                    &answer_of(answer),
                )
                .await;
            Some(self.step(step, |n| n.trade_status))
        })
    }
}

fn product(name: &str) -> Option<api::Product> {
    match name {
        "wap" => Some(api::Product::Wap),
        "pc" => Some(api::Product::Pc),
        "app" => Some(api::Product::App),
        _ => None,
    }
}

/// Where a started payment sends the buyer: the redirect's URL, its form's action, or the app's
/// order string.
fn started_to(p: api::PaymentStarted) -> String {
    if !p.redirect.url.is_empty() {
        p.redirect.url
    } else if !p.redirect.action.is_empty() {
        p.redirect.action
    } else {
        p.order_string.unwrap_or_default()
    }
}

fn answer_of(answer: &kit::KitAnswer) -> Result<api::IncomingResponse, api::SendFailure> {
    match answer {
        kit::KitAnswer::Response {
            status,
            headers,
            body,
        } => Ok(api::IncomingResponse {
            status: *status,
            headers: headers.clone(),
            body: body.clone().into(),
        }),
        kit::KitAnswer::Timeout(why) => Err(api::SendFailure::Timeout(why.clone())),
        kit::KitAnswer::Refused(why) => Err(api::SendFailure::Refused(why.clone())),
        kit::KitAnswer::Failed(why) => Err(api::SendFailure::Failed(why.clone())),
    }
}

impl Loaded {
    /// A flow's step in the kit's terms; a byte continuation (contract 0.2.0) that is not
    /// UTF-8 is kept here under a name the kit passes back.
    fn step<T>(
        &self,
        step: Result<Result<api::Step<T>, api::PluginError>, payhost::runtime::CallError>,
        done: impl FnOnce(T) -> String,
    ) -> kit::FlowStep {
        match step {
            Ok(Ok(api::Step::Done(d))) => kit::FlowStep::Done(done(d)),
            Ok(Ok(api::Step::Send(p))) => kit::FlowStep::Send {
                request: kit::AskedRequest {
                    method: match p.request.method {
                        api::HttpMethod::Get => "GET",
                        api::HttpMethod::Post => "POST",
                    }
                    .to_owned(),
                    url: p.request.url,
                    headers: p.request.headers,
                    body: p.request.body,
                },
                continuation: self.keep(p.continuation),
            },
            Ok(Err(e)) => kit::FlowStep::Refused(e.to_string()),
            Err(e) => kit::FlowStep::Trapped(e.to_string()),
        }
    }

    fn keep(&self, c: api::Continuation) -> String {
        match c {
            api::Continuation::Text(s) => s,
            api::Continuation::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => s,
                Err(e) => {
                    let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
                    let name = format!("payhost-kept-continuation-{}", kept.len());
                    kept.push((name.clone(), e.into_bytes()));
                    name
                }
            },
        }
    }

    fn continuation(&self, text: &str) -> api::Continuation {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match kept.iter().find(|(name, _)| name == text) {
            Some((_, bytes)) => api::Continuation::Bytes(bytes.clone()),
            None => api::Continuation::Text(text.to_owned()),
        }
    }
}

/// Starts `payhost serve` in-process around one manifest: a temporary database, a random operator
/// token, the kit's origins allowed as `[outbound] allowed_origins` does.
pub struct Launcher {
    pub manifest: PathBuf,
    pub work_dir: PathBuf,
    pub cache_dir: PathBuf,
}

/// Stops the launched host when the kit drops it.
struct Stop(payhost::server::Running);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl kit::HostLauncher for Launcher {
    fn start(
        &self,
        extra_allowed_origins: Vec<String>,
    ) -> kit::BoxFuture<'_, Result<kit::RunningHost, String>> {
        Box::pin(async move {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("cannot find a free port: {e}"))?
                .port();
            let token = format!("conformance-{}", payhost::auth::new_merchant_token());
            let dir = self.work_dir.join(format!("host-{port}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let origins: Vec<String> = extra_allowed_origins.iter().map(|o| toml_str(o)).collect();
            let text = format!(
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
                 database = {db}\napi_token = {token}\ncache_dir = {cache}\n\
                 [plugin]\nmanifest = {manifest}\n[outbound]\nallowed_origins = [{origins}]\n\
                 [recovery]\nenabled = false\n",
                db = toml_str(&dir.join("payhost.db").display().to_string()),
                token = toml_str(&token),
                cache = toml_str(&self.cache_dir.display().to_string()),
                manifest = toml_str(&self.manifest.display().to_string()),
                origins = origins.join(", "),
            );
            let config = Config::parse(&text, &dir).map_err(|e| format!("{e:#}"))?;
            let app = payhost::server::build_app(config)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let running = payhost::server::start(app, std::future::pending())
                .await
                .map_err(|e| format!("{e:#}"))?;
            Ok(kit::RunningHost {
                base_url: format!("http://127.0.0.1:{port}"),
                token,
                guard: Box::new(Stop(running)),
            })
        })
    }
}

/// Loads the component for `--component X.wasm [--manifest M]`, and writes the manifest the
/// launched host uses: M with its component path pointing at X (its pinned sha256 must match
/// X), or, without M, one made from the component's own `describe`.
pub async fn load(
    component: &Path,
    manifest: Option<&Path>,
    work_dir: &Path,
) -> anyhow::Result<(Loaded, PathBuf)> {
    let component = std::path::absolute(component)?;
    let manifest_path = work_dir.join("plugin.toml");
    let text = match manifest {
        Some(m) => {
            let text = std::fs::read_to_string(m)
                .map_err(|e| anyhow::anyhow!("cannot read the manifest {}: {e}", m.display()))?;
            let mut table: toml::Table = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a plugin manifest: {e}", m.display()))?;
            let c = table
                .get_mut("component")
                .and_then(|c| c.as_table_mut())
                .ok_or_else(|| anyhow::anyhow!("{}: no [component] table", m.display()))?;
            c.insert(
                "path".into(),
                toml::Value::String(component.display().to_string()),
            );
            toml::to_string(&table)?
        }
        None => {
            let synthetic = Manifest::synthetic(&component)?;
            let rt = PluginRuntime::load(&synthetic, None, payhost::net::Client::new()).await?;
            manifest_from_describe(&synthetic, &rt.info, rt.contract_version())
        }
    };
    std::fs::write(&manifest_path, text)?;
    let runtime = async {
        let loaded = Manifest::load(&manifest_path)?;
        anyhow::Ok(PluginRuntime::load(&loaded, None, payhost::net::Client::new()).await?)
    }
    .await
    .map_err(|e| about_the_users_manifest(e, &manifest_path, manifest))?;
    Ok((
        Loaded {
            runtime,
            kept: Default::default(),
        },
        manifest_path,
    ))
}

/// An error about the kit's copy of the manifest, told about the user's manifest: the copy is
/// the kit's business, the user fixes their own file.
fn about_the_users_manifest(e: anyhow::Error, copy: &Path, users: Option<&Path>) -> anyhow::Error {
    let text = format!("{e:#}");
    match users {
        Some(m) => {
            anyhow::anyhow!(
                "{}",
                text.replace(&copy.display().to_string(), &m.display().to_string())
            )
        }
        None => anyhow::anyhow!("{text}"),
    }
}

/// A manifest that says what the component says about itself (for a bare component), at the
/// contract version it exports.
fn manifest_from_describe(m: &Manifest, info: &api::PluginInfo, wit_version: &str) -> String {
    let mut out = format!(
        "id = {}\nname = {}\nversion = {}\n[wit]\npackage = {}\nversion = {}\nworld = {}\n\
         [component]\npath = {}\nsha256 = {}\n[outbound]\nallowed_hosts = []\n",
        toml_str(&info.id),
        toml_str(&info.name),
        toml_str(&info.version),
        toml_str(&m.wit.package),
        toml_str(wit_version),
        toml_str(&m.wit.world),
        toml_str(&m.component.path.display().to_string()),
        toml_str(&m.component.sha256),
    );
    for f in &info.settings {
        out.push_str(&format!(
            "[[settings]]\nname = {}\nlabel_zh = {}\nlabel_en = {}\nkind = {}\nrequired = {}\nsecret = {}\nrule = {}\n",
            toml_str(&f.name),
            toml_str(&f.label_zh),
            toml_str(&f.label_en),
            toml_str(f.kind.as_str()),
            f.required,
            f.secret,
            toml_str(&f.rule),
        ));
    }
    out
}

/// What `--help` says last: the exit codes and the clean-up.
const AFTER_HELP: &str = "\
Exit status:
  0  every case that ran passed, and at least one that was asked for did (cases asked for and
     skipped are counted last, on standard error, by reason: read them)
  1  a case failed
  2  the run could not start (nothing was changed, or what the kit made to find out was removed
     again, as it says): bad arguments or case names (a flag of the
     other mode, such as --setting with --against or --keep with --component; a case --against
     never runs), a --setting the component does not take, a component that does not load, a
     host (--against) that cannot be reached, is not a payhost or refuses the token, a host whose
     public_url (the notify URL it gives the provider) this machine cannot reach, a merchant id
     the kit would use taken by a merchant it did not make, a --sandbox-listen address in use, a
     --junit file that cannot be written. With --junit, the file says why (one errored case)
  3  nothing was tested: no case failed and none that was asked for passed (every case was
     skipped, or only the cases the selected ones need passed)
  130  interrupted by Ctrl-C (SIGINT): the kit still removed what it made
  143  interrupted by SIGTERM, the same way

With --against, the kit makes three merchants in that host (--merchant, <merchant>-rsa and
<merchant>-openapi) and removes them at the end with their test payments
(DELETE /v1/merchants/{id}?purge=test), unless --keep. It refuses to start when one of them
already exists and the kit did not make it: pick another --merchant. (A merchant an earlier run
of the kit made, e.g. with --keep, it recognises by its webhook and sandbox URLs, and reuses.)
The kit posts notifies and follows the buyer's returns where the host tells the provider to
send them, its public_url, not to the --against URL: that address must be reachable from where
the kit runs. Before the cases, the kit saves its merchant, creates one order to learn that
URL and connects to it; when it cannot, the run stops (exit 2) and what it made is removed.
With --component, the host the kit starts writes its log to standard error only when
PAYHOST_LOG is set (e.g. PAYHOST_LOG=info): a failure that names a correlation id is found there.
When the output is closed (e.g. `| head`), the run stops quietly: the case under way is
abandoned, the kit still removes what it made, and the exit status is 0. Ctrl-C stops it the
same way (press it again to leave at once, without the clean-up).";

/// The kit's merchant id when `--merchant` is not given.
const DEFAULT_MERCHANT: &str = "conformance";

/// The environment variable `--token` is read from.
const TOKEN_ENV: &str = "PAYHOST_CONFORMANCE_TOKEN";

/// Runs the conformance kit against a component or a running payhost.
///
/// The contract suite against a component (`--component`), or the
/// flow suite against a running payhost through a sandbox the kit starts (`--against`). Prints
/// one line per case and `N passed, N failed[, N skipped]` last; exits 0 when every case that ran passed, 1
/// when a case failed, 2 when the run could not start, 3 when nothing was tested, and 130
/// (SIGINT) or 143 (SIGTERM) when interrupted.
#[derive(clap::Args)]
#[command(
    group(clap::ArgGroup::new("target").args(["component", "against"])),
    after_help = AFTER_HELP
)]
pub struct Args {
    /// A component to check (a `.wasm` implementing `payhost:payment`): the contract suite, and
    /// when the kit has a sandbox for the component's provider, every flow through it and a payhost
    /// started here.
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// The component's manifest (plugin.toml); its pinned sha256 must match the component.
    /// Without one, identity and settings come from the component's own `describe`.
    /// With --component only.
    #[arg(long, value_name = "FILE", requires = "component")]
    pub manifest: Option<PathBuf>,
    /// A running payhost to run the flow suite against (`https://host:port`). Its operator must
    /// allow the kit's origin (`[outbound] allowed_origins`, or `payhost demo --allow-origin`),
    /// and its public_url must be reachable from here (the kit posts notifies there). Needs
    /// --token (not with --list, which contacts nothing).
    #[arg(long, value_name = "URL")]
    pub against: Option<String>,
    /// That host's operator API token (or the environment variable, which `ps` does not show).
    /// With --against only.
    #[arg(
        long,
        value_name = "TOKEN",
        env = TOKEN_ENV,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Where the kit's sandbox gateway and webhook receiver listen. With --against, a fixed
    /// port the host allows (its `allowed_origins`) is required; with --component, any free port
    /// by default.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", value_parser = super::listen_address)]
    pub sandbox_listen: std::net::SocketAddr,
    /// The origin the host reaches the kit at, when not the listen address
    /// (`http://kit.example:8099`: http or https, no path).
    #[arg(long, value_name = "URL")]
    pub sandbox_public_url: Option<String>,
    /// The merchant id the kit makes on the host (default `conformance`), with `<ID>-rsa` and
    /// `<ID>-openapi` (removed at the end unless --keep). None of them may exist there unless an
    /// earlier run of the kit made it. 1 to 56 letters, digits, `_` or `-` (`<ID>-openapi` must
    /// be a valid id). With --against only.
    #[arg(long, value_name = "ID")]
    pub merchant: Option<String>,
    /// Settings the component accepts, as NAME=VALUE (repeatable): the settings cases need them
    /// when the component has required settings without defaults. With --component only; a
    /// name the component does not have, or settings it refuses, stop the run (exit 2).
    #[arg(long = "setting", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Also write the results as JUnit XML (for CI systems); a run that cannot start writes one
    /// errored case saying why.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print every case (id and what it checks, one per line; with --against only the flow
    /// cases; with --only/--skip, the ones that would run) and exit.
    #[arg(long)]
    pub list: bool,
    /// Run only these cases: an id, or a prefix of whole parts such as `notify.` (the cases they
    /// need run too, e.g. merchant.configured). An unknown name is an error, and so is a name
    /// of no flow case with --against.
    #[arg(long, value_name = "NAME", num_args = 1.., action = clap::ArgAction::Append)]
    pub only: Vec<String>,
    /// Leave these cases out (an id or a prefix, as for --only); a case another selected case
    /// needs still runs.
    #[arg(long, value_name = "NAME", num_args = 1.., action = clap::ArgAction::Append)]
    pub skip: Vec<String>,
    /// Keep the merchants and payments the kit made in the host it tested. With --against only.
    #[arg(long)]
    pub keep: bool,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// A line on stderr; a closed stderr is not worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// The report's output: stdout, line by line. Once a write fails (nobody reads any more, e.g.
/// `| head`), it says so to the run, which stops, and nothing more is written. A signal stops the
/// run the same way, but the report goes on being written (the clean-up is still to come).
#[derive(Clone)]
struct Output {
    stop: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The exit status of an interrupted run (128 + the signal's number), or 0.
    interrupted: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Output {
    fn new() -> Output {
        Output {
            stop: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
            closed: Default::default(),
            interrupted: Default::default(),
        }
    }

    fn closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn interrupted(&self) -> Option<u8> {
        match self.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }

    fn line(&self, line: &str) {
        use std::io::Write;
        if self.closed() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            self.stop.send_replace(true);
        }
    }

    /// On SIGINT or SIGTERM, stops the run as a closed output does, so the kit still removes what
    /// it made; a second signal leaves at once (the clean-up itself may be what hangs).
    fn stop_on_signals(&self) {
        let out = self.clone();
        tokio::spawn(async move {
            let mut signals = Signals::new();
            let (name, code) = signals.next().await;
            say(&format!("payhost conformance: {name}: stopping the run; the kit removes what it made (press Ctrl-C again to leave at once)"));
            out.interrupted
                .store(code, std::sync::atomic::Ordering::SeqCst);
            out.stop.send_replace(true);
            let (name, code) = signals.next().await;
            say(&format!(
                "payhost conformance: {name} again: leaving now, without the clean-up"
            ));
            Scratch::remove_now();
            std::process::exit(code.into());
        });
    }
}

/// SIGINT and SIGTERM, as they come.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// The next signal: its name and the exit status it calls for (128 + its number).
    async fn next(&mut self) -> (&'static str, u8) {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                // No handler: Ctrl-C keeps its default (the process ends).
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            return tokio::select! {
                _ = ctrl_c => ("SIGINT", 130),
                _ = term.recv() => ("SIGTERM", 143),
            };
        }
        ctrl_c.await;
        ("SIGINT", 130)
    }
}

/// The run's temporary folder (`--component`): the launched host's database and the manifest
/// copy. Removed when dropped, and by a second signal, which leaves without unwinding.
struct Scratch(PathBuf);

/// The folder a second signal removes before it leaves.
static SCRATCH: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

impl Scratch {
    fn create() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!(
            "payhost-conformance-{}-{}",
            std::process::id(),
            payhost::store::now_ms()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        *SCRATCH.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
        Ok(Scratch(dir))
    }

    fn remove_now() {
        if let Some(dir) = SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        Scratch::remove_now();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mode `--component` or `--against` picks (`None`: neither, e.g. a bare `--list`).
fn mode(args: &Args) -> Option<kit::Mode> {
    if args.component.is_some() {
        Some(kit::Mode::Component)
    } else if args.against.is_some() {
        Some(kit::Mode::Against)
    } else {
        None
    }
}

/// Refuses a flag of the other mode, which would be ignored: `Err` names the flag and the mode
/// it is for.
fn check_mode_flags(args: &Args) -> Result<(), String> {
    let refuse = |flag: &str, for_mode: &str, what: &str, other: &str| {
        Err(format!(
            "{flag} is for {for_mode} ({what}); a run with {other} does not use it: leave it out"
        ))
    };
    match mode(args) {
        Some(kit::Mode::Against) => {
            if args.manifest.is_some() {
                return refuse(
                    "--manifest",
                    "--component",
                    "the manifest of the component it checks",
                    "--against",
                );
            }
            if !args.settings.is_empty() {
                return refuse(
                    "--setting",
                    "--component",
                    "settings for the component's contract cases",
                    "--against",
                );
            }
        }
        Some(kit::Mode::Component) => {
            // A token from the environment (the way that keeps it out of `ps`) was not given here.
            let from_env = std::env::var(TOKEN_ENV).ok() == args.token;
            if args.token.is_some() && !from_env {
                return refuse(
                    "--token",
                    "--against",
                    "the host's operator token",
                    "--component",
                );
            }
            let starts_its_own = "--component (it starts its own host, discarded at the end)";
            if args.keep {
                return refuse(
                    "--keep",
                    "--against",
                    "keeping what the kit made in the host it tested",
                    starts_its_own,
                );
            }
            if args.merchant.is_some() {
                return refuse(
                    "--merchant",
                    "--against",
                    "the merchant ids the kit makes in the host it tested",
                    starts_its_own,
                );
            }
        }
        None => {}
    }
    Ok(())
}

/// Checks the options that name something before anything runs: `Err` is the line to print.
fn check_args(args: &Args) -> Result<(), String> {
    let id = args.merchant.as_deref().unwrap_or(DEFAULT_MERCHANT);
    // The kit also makes `<ID>-openapi`, which must be a valid id too.
    if !payhost::config::valid_merchant_id(&format!("{id}-openapi"))
        || !payhost::config::valid_merchant_id(id)
    {
        return Err(format!(
            "--merchant {id:?}: a merchant id is 1 to 64 letters, digits, '_' or '-', and at most 56 here (the kit also makes {id}-rsa and {id}-openapi)"
        ));
    }
    if let Some(url) = &args.sandbox_public_url {
        kit::origin(url, "the kit's").map_err(|e| format!("--sandbox-public-url {url}: {e}"))?;
    }
    if let Some(url) = &args.against {
        kit::origin(url, "the host's").map_err(|e| format!("--against {url}: {e}"))?;
    }
    kit::check_listen(args.sandbox_listen).map_err(|e| {
        format!(
            "--sandbox-listen {}: the kit's sandbox cannot listen there ({e}); give a free address",
            args.sandbox_listen
        )
    })
}

/// The `--junit` file: created before the run, so a path that cannot be written stops it before
/// anything is changed. Until the run writes its report, the file holds a report saying the run
/// did not finish (never an empty file, never an earlier run's report); a run that cannot start
/// writes one errored case saying why.
struct Junit {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Junit {
    fn new(path: &Path) -> Junit {
        Junit {
            path: path.to_owned(),
            file: None,
        }
    }

    /// Creates (or empties) the file and writes the placeholder report; `Err` is the line to
    /// print.
    fn open(&mut self) -> Result<(), String> {
        let cannot =
            |e: std::io::Error| format!("--junit {}: cannot write it ({e})", self.path.display());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(cannot)?;
        let placeholder = kit::Report::not_started(
            "the run did not finish: it was stopped before it wrote its report",
        );
        rewrite(&mut file, &placeholder.junit()).map_err(cannot)?;
        self.file = Some(file);
        Ok(())
    }

    /// Replaces the file's content with `report`.
    fn write(&mut self, report: &kit::Report) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => rewrite(file, &report.junit()),
            None => std::fs::write(&self.path, report.junit()),
        }
    }
}

fn rewrite(file: &mut std::fs::File, text: &str) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// When the command line that clap refused is a conformance run with `--junit FILE` (or
/// `--junit=FILE`), writes the one-case "could not start" report there, best effort.
pub fn junit_for_refused_args(why: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("conformance") {
        return;
    }
    let path = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--junit=")
            .map(str::to_owned)
            .or_else(|| (a == "--junit").then(|| args.get(i + 1).cloned()).flatten())
    });
    if let Some(path) = path.filter(|p| !p.is_empty() && !p.starts_with("--")) {
        let why = format!("the command line was refused: {why} (see payhost conformance --help)");
        let _ = std::fs::write(path, kit::Report::not_started(&why).junit());
    }
}

/// Runs the kit; prints one line per case as it finishes and `N passed, N failed` last. Exit
/// status: 0 passed, 1 a case failed, 2 could not start, 3 nothing was tested, 130/143
/// interrupted (see AFTER_HELP). A run that could not start says why in one line, and in the
/// `--junit` file when one was given.
pub async fn run(args: Args) -> std::process::ExitCode {
    // The host --component starts logs only when asked: its log would bury the report (a
    // negative case's ALERT is expected), and a failure's correlation id finds its lines.
    if std::env::var_os("PAYHOST_LOG").is_some() {
        super::init_logging();
    }
    let mut junit = args.junit.as_deref().map(Junit::new);
    match start_and_run(&args, &mut junit).await {
        Ok(code) => code,
        Err(line) => {
            say(&line);
            if let Some(j) = &mut junit {
                let why = line.strip_prefix("payhost conformance: ").unwrap_or(&line);
                // Best effort: when the file is what cannot be written, the line says so.
                let _ = j.write(&kit::Report::not_started(why));
            }
            std::process::ExitCode::from(2)
        }
    }
}

/// [`run`] up to the exit status of a run that started; `Err` is the line saying why it could
/// not start (exit 2).
async fn start_and_run(
    args: &Args,
    junit: &mut Option<Junit>,
) -> Result<std::process::ExitCode, String> {
    use std::process::ExitCode;
    let out = Output::new();
    let mode = mode(args);
    check_mode_flags(args).map_err(|e| format!("payhost conformance: {e}"))?;
    let selection =
        kit::Selection::for_mode(&args.only, &args.skip, mode.unwrap_or(kit::Mode::Component))
            .map_err(|e| format!("payhost conformance: {e}"))?;
    if args.list {
        let cases: Vec<kit::CaseInfo> = kit::cases_of(mode.unwrap_or(kit::Mode::Component))
            .into_iter()
            .filter(|c| selection.includes(&c.id))
            .collect();
        let width = cases.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for c in &cases {
            out.line(&format!("{:<width$}  {}", c.id, c.about));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if mode.is_none() {
        return Err("payhost conformance: give --component FILE or --against URL --token TOKEN (or --list); see --help".into());
    }
    if args.against.is_some() && args.token.is_none() {
        return Err(format!(
            "payhost conformance: the command line was refused: --against needs --token TOKEN (the host's operator api_token), or the environment variable {TOKEN_ENV}"
        ));
    }
    check_args(args).map_err(|e| format!("payhost conformance: {e}"))?;
    if let Some(j) = junit {
        j.open().map_err(|e| format!("payhost conformance: {e}"))?;
    }
    out.stop_on_signals();
    let printer = out.clone();
    let print_case: kit::OnCase =
        std::sync::Arc::new(move |c: &kit::CaseResult| printer.line(&c.line()));
    let merchant = args.merchant.as_deref().unwrap_or(DEFAULT_MERCHANT);
    let opts = kit::Options {
        sandbox_listen: args.sandbox_listen,
        sandbox_public_url: args.sandbox_public_url.clone(),
        merchant: merchant.to_owned(),
        example_settings: (!args.settings.is_empty()).then(|| args.settings.clone()),
        on_case: Some(print_case),
        // Only a host the kit did not start has to be allowed to reach it.
        on_sandbox_ready: args.against.is_some().then(|| -> kit::OnSandboxReady {
            std::sync::Arc::new(|origin: &str| {
                say(&format!("the kit's sandbox gateway and webhook receiver: {origin} (the host must be allowed to reach it)"));
            })
        }),
        selection,
        keep: args.keep,
        stop: Some(out.stop.subscribe()),
        ..kit::Options::default()
    };
    let mut report = match (&args.component, &args.against) {
        (Some(component), _) => component_run(component, args.manifest.as_deref(), &opts).await?,
        (None, Some(base)) => {
            let base = base.trim_end_matches('/');
            let token = args.token.as_deref().unwrap_or_default();
            kit::check_host(base, token, merchant)
                .await
                .map_err(|e| format!("payhost conformance: {e}"))?;
            // The host allows the kit's one origin, port included: one chosen at random here
            // could never have been allowed, and the run would stop only once its merchant was
            // saved, after listing every case as skipped.
            // (Behind --sandbox-public-url too: a forwarder cannot know a random port either.)
            if args.sandbox_listen.port() == 0 {
                return Err(format!(
                    "payhost conformance: --against needs --sandbox-listen ADDR:PORT with a fixed port: the host at {base} must allow the kit's sandbox origin, port included; e.g. --sandbox-listen 127.0.0.1:8099 with allowed_origins = [\"http://127.0.0.1:8099\"] in its payhost.toml (payhost demo: --allow-origin http://127.0.0.1:8099)"
                ));
            }
            let report = kit::run_against(base, token, &opts).await;
            // A run that could not start says why first, then what it removed again.
            if report.not_started.is_none() {
                if let Some(c) = &report.cleanup {
                    tell_cleanup(c);
                }
            }
            report
        }
        (None, None) => unreachable!("checked above"),
    };
    // A stop (a signal, or nobody reading the output any more) that left cases out makes the
    // report partial, which its JUnit says; one during the clean-up left none out.
    let abandoned = report.abandoned();
    if abandoned > 0 {
        let why = match out.interrupted() {
            Some(143) => "SIGTERM",
            Some(_) => "SIGINT",
            None => "the output was closed",
        };
        report.stopped = Some(format!(
            "{why}: the run was stopped before every case ran ({abandoned} not run); this report is partial"
        ));
    }
    if let Some(why) = &report.not_started {
        // Cases that ran before the stop (a component run reaches the flow suite after its own
        // cases) stay in the summary and the JUnit report, which adds the reason as `kit.start`.
        if report.cases.is_empty() {
            let Some(c) = &report.cleanup else {
                return Err(format!("payhost conformance: {why}"));
            };
            say(&format!("payhost conformance: {why}"));
            tell_cleanup(c);
            if let Some(j) = junit {
                let _ = j.write(&kit::Report::not_started(why));
            }
            return Ok(ExitCode::from(2));
        }
        out.line(&report.summary());
        say(&format!("payhost conformance: {why}"));
        if let Some(c) = &report.cleanup {
            tell_cleanup(c);
        }
        if let Some(j) = junit {
            let _ = j.write(&report);
        }
        return Ok(ExitCode::from(2));
    }
    out.line(&report.summary());
    if args.component.is_some() && report.failed() > 0 && std::env::var_os("PAYHOST_LOG").is_none()
    {
        say("payhost conformance: the host the kit started logs nothing by default: run again with PAYHOST_LOG=info (a failure's correlation id names its lines)");
    }
    if let Some(j) = junit {
        if let Err(e) = j.write(&report) {
            say(&format!(
                "payhost conformance: cannot write {}: {e}",
                j.path.display()
            ));
            return Ok(ExitCode::from(2));
        }
    }
    Ok(exit_status(&out, &report, &opts.selection))
}

/// `--component`: loads it (in a temporary folder removed at the end), checks the `--setting`s
/// against it, and runs the kit on it. `Err` is the line saying why it could not start.
async fn component_run(
    component: &Path,
    manifest: Option<&Path>,
    opts: &kit::Options,
) -> Result<kit::Report, String> {
    let work = Scratch::create().map_err(|e| format!("payhost conformance: {e}"))?;
    let (loaded, manifest) = load(component, manifest, &work.0)
        .await
        .map_err(|e| format!("payhost conformance: {e:#}"))?;
    if let Some(settings) = &opts.example_settings {
        kit::check_settings(&loaded, settings)
            .await
            .map_err(|e| format!("payhost conformance: {e}"))?;
    }
    let launcher = Launcher {
        manifest,
        cache_dir: work.0.join("cache"),
        work_dir: work.0.clone(),
    };
    Ok(kit::run_component(&loaded, &launcher, opts).await)
}

/// The exit status of a run that started (see AFTER_HELP).
fn exit_status(
    out: &Output,
    report: &kit::Report,
    selection: &kit::Selection,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    if let Some(code) = out.interrupted() {
        ExitCode::from(code)
    } else if out.closed() {
        // Nobody reads the report any more: stopping is what was asked for.
        ExitCode::SUCCESS
    } else if report.failed() > 0 {
        ExitCode::from(1)
    } else if report.nothing_tested(selection) {
        say(&format!(
            "payhost conformance: nothing was tested: no case that was asked for passed ({} skipped)",
            report.skipped()
        ));
        ExitCode::from(3)
    } else {
        // Green, and what it did not test said last: a run that skipped most cases (a component
        // without example settings, a provider the kit has no sandbox for) must not read as one
        // that tested them.
        let not_covered = report.not_covered(selection);
        if !not_covered.is_empty() {
            let n: usize = not_covered.iter().map(|(_, n)| n).sum();
            say(&format!(
                "payhost conformance: every case that ran passed, but {n} of the cases asked for were not tested:"
            ));
            for (why, n) in not_covered {
                say(&format!("  {n} skipped: {why}"));
            }
        }
        ExitCode::SUCCESS
    }
}

/// What became of the kit's merchants in the host it tested, on stderr.
fn tell_cleanup(c: &kit::Cleanup) {
    if !c.removed.is_empty() {
        say(&format!(
            "payhost conformance: removed merchant(s) {} and their test payments from {}",
            c.removed.join(", "),
            c.host
        ));
    }
    if !c.kept.is_empty() {
        say(&format!(
            "payhost conformance: kept merchant(s) {} in {} (--keep)",
            c.kept.join(", "),
            c.host
        ));
    }
    for (merchant, why) in &c.left {
        say(&format!(
            "payhost conformance: could not remove merchant {merchant} from {}: {why}",
            c.host
        ));
    }
}
