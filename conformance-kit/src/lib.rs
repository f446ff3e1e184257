//! The conformance kit behind `payhost conformance`.
//!
//! * [`run_component`]: the contract suite on a component, called directly through
//!   [`ComponentUnderTest`] (any provider): `describe`, `validate-settings`, hostile
//!   notifications and returns, the call limit, the payment flow driven step by step (the kit
//!   answers its requests). For an Alipay component, its signature rules with
//!   messages the kit signs itself, then the flow suite against a host the [`HostLauncher`]
//!   starts around it (allowing the kit's origin). For other providers the Alipay and flow cases
//!   are reported as skipped.
//! * [`run_against`]: the flow suite against a running payhost (`--against URL --token T`), over
//!   HTTP only, through an Alipay sandbox gateway and a webhook receiver the kit serves itself on
//!   [`Options::sandbox_listen`]; the operator allows that origin on the host
//!   (`[outbound] allowed_origins`, or `payhost demo --allow-origin`).
//!
//! Both return a [`Report`]: [`Report::print`] writes one line per case (`ok   <id> (12 ms)`,
//! `FAIL <id>: <why>`, `skip <id>: <why>`) and `N passed, N failed[, N skipped]` last;
//! [`Report::failed`] and [`Report::nothing_tested`] are for the exit code; [`Report::junit`] is
//! JUnit XML for `--junit FILE`; [`Report::cleanup`] says what became of the merchants the flow
//! suite made in the host (removed with their test payments unless [`Options::keep`]).
//! A failing, panicking or slow case ([`Options::case_timeout`]) never stops the others.
//! [`cases`] lists every case; [`Options::selection`] picks some ([`Selection`]), with what
//! they need ([`Selection::for_mode`] and [`cases_of`] with [`Mode::Against`]: only the flow
//! suite); before a run, [`check_host`] tells an unreachable host (or one whose merchants the
//! kit must not touch) from a failing one, [`check_listen`] a sandbox that cannot listen, and
//! [`check_settings`] example settings the component does not take. A flow run whose host
//! gives the provider a notify URL (its `public_url`) this machine cannot reach does not start:
//! [`Report::not_started`] says why.
//!
//! The kit does not depend on payhost: payhost implements [`ComponentUnderTest`] and
//! [`HostLauncher`] over its own runtime. It depends on `payhost-sandbox` for the sandbox and for
//! Alipay's side of the wire format (it signs the notifies it forges with that code, never the
//! component's).
//!
//! ```no_run
//! # async fn demo() {
//! let opts = payhost_conformance::Options::default();
//! let report = payhost_conformance::run_against("http://127.0.0.1:8080", "operator-token", &opts).await;
//! report.print(&mut std::io::stdout()).unwrap();
//! let nothing = report.nothing_tested(&opts.selection);
//! std::process::exit(if report.failed() > 0 { 1 } else if nothing { 3 } else { 0 });
//! # }
//! ```

mod alipay;
mod api;
mod cases;
mod catalogue;
mod client;
mod openapi;
mod ownership;
mod receiver;
mod report;
mod runner;
mod sandbox_setup;

pub use api::{
    AskedRequest, BoxFuture, CallOutcome, ComponentUnderTest, FieldError, FlowStep, HostLauncher,
    KitAnswer, KitOrder, OnCase, OnSandboxReady, Options, Pairs, PluginInfo, RunningHost,
    SettingField, Validated,
};
pub use catalogue::{cases, cases_of, CaseInfo, Mode, Selection};
pub use report::{CaseResult, Cleanup, Outcome, Report};

use cases::{component_alipay, contract, flows, is_alipay};
use runner::Runner;
use sandbox_setup::KitEnv;

/// The flow suite's case ids, in order.
pub const FLOW_CASES: &[&str] = flows::CASES;
/// The payment flow cases' ids (part of the contract suite), in order.
pub const START_CASES: &[&str] = cases::start::CASES;
/// The Alipay component cases' ids, in order.
pub const ALIPAY_COMPONENT_CASES: &[&str] = component_alipay::CASES;

/// The contract suite's case ids, in order (every component runs these).
pub fn contract_cases() -> Vec<String> {
    let mut ids: Vec<String> = [
        "describe.call",
        "describe.identity",
        "describe.setting_names",
        "describe.labels",
        "describe.kinds",
        "describe.select_options",
        "describe.stable",
        "settings.empty_names_required",
        "settings.example_accepted",
        "settings.trimmed",
        "settings.unknown_refused",
        "settings.garbage_refused",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let inputs = contract::HOSTILE_INPUTS;
    ids.extend(inputs.iter().map(|name| format!("hostile.notify.{name}")));
    ids.push("hostile.notify.no_settings".into());
    ids.extend(inputs.iter().map(|name| format!("hostile.return.{name}")));
    ids.push("limits.call_limit".into());
    ids.extend(cases::start::CASES.iter().map(|id| (*id).to_owned()));
    ids
}

/// Checks, before a run against it, that the payhost at `base_url` answers like a payhost and
/// takes `token` as its operator token, and that none of the merchants the kit would make
/// (`merchant`, `<merchant>-rsa`, `<merchant>-openapi`) is someone else's: it only reads them.
/// `Err` is one line saying which URL failed and how: `cannot reach http://127.0.0.1:1/
/// (connection refused)`, or which merchant the kit will not touch.
pub async fn check_host(base_url: &str, token: &str, merchant: &str) -> Result<(), String> {
    let shown = format!("{}/", base_url.trim_end_matches('/'));
    let limit = std::time::Duration::from_secs(10);
    client::connects(&shown, limit)
        .await
        .map_err(|how| format!("cannot reach {shown} ({how})"))?;
    ownership::check(&client::HostApi::new(base_url, token), merchant).await
}

/// `url` as an http(s) origin (scheme, host, port; no path, query or trailing slash), the form
/// the kit takes a host's base URL and its own public URL in. `Err` says what is wrong, naming
/// the URL as `what` (`the host's`).
pub fn origin(url: &str, what: &str) -> Result<String, String> {
    client::origin(url, what)
}

/// Checks, before [`run_component`], the settings given for the contract cases
/// ([`Options::example_settings`], `--setting NAME=VALUE`): each is a setting the component
/// describes, and the component accepts them together. Settings that are not are the caller's
/// mistake, not the component's. `Err` is one line naming each such setting as
/// `--setting NAME` and why, never its value (it may be a secret). A component whose
/// `describe` or `validate-settings` fails or traps passes here: its cases report that.
pub async fn check_settings(cut: &dyn ComponentUnderTest, settings: &Pairs) -> Result<(), String> {
    let Ok(info) = cut.info().await else {
        return Ok(());
    };
    let names: Vec<&str> = info.settings.iter().map(|f| f.name.as_str()).collect();
    let unknown: Vec<&str> = settings
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !names.contains(name))
        .collect();
    if let Some(name) = unknown.first() {
        return Err(format!(
            "--setting {name}: the component {} has no setting {name} (its settings: {})",
            info.id,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    match cut.validate_settings(settings).await {
        Ok(_) => Ok(()),
        // A trap: the component's fault, for settings.example_accepted to report.
        Err(fields) if fields.is_empty() || fields.iter().any(|f| f.field.is_empty()) => Ok(()),
        Err(fields) => {
            let given = |field: &str| settings.iter().any(|(k, _)| k == field);
            let why: Vec<String> = fields
                .iter()
                .map(|f| {
                    if given(&f.field) {
                        format!("--setting {}: {}", f.field, f.reason)
                    } else {
                        format!("--setting {} is missing: {}", f.field, f.reason)
                    }
                })
                .collect();
            Err(format!(
                "the component {} refuses the settings given: {}",
                info.id,
                why.join("; ")
            ))
        }
    }
}

/// Checks, before a run, that the kit's sandbox can listen on `addr` (`Options::sandbox_listen`):
/// the address is bound and let go at once, the run binds it again. `Err` says why in a few
/// words (`address in use`).
pub fn check_listen(addr: std::net::SocketAddr) -> Result<(), String> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| client::io_words(&e))
}

/// Runs the flow suite against the payhost at `base_url` (operator `token`), through the kit's
/// own sandbox gateway.
pub fn run_against<'a>(base_url: &'a str, token: &'a str, opts: &'a Options) -> Running<'a> {
    Box::pin(flow_suite(base_url, token, opts))
}

/// A suite's run. Boxed here on purpose: an `async fn`'s body is compiled again in every crate
/// that awaits it, with all it awaits in turn; behind the box the suites are compiled once.
pub type Running<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Report> + Send + 'a>>;

async fn flow_suite(base_url: &str, token: &str, opts: &Options) -> Report {
    let mut runner = Runner::new(opts);
    match KitEnv::start(opts).await {
        Ok(env) => flows::run(&mut runner, base_url, token, &env, opts).await,
        Err(e) => {
            runner
                .case("kit.sandbox", async { Err(e.clone().into()) })
                .await;
            for id in FLOW_CASES {
                runner.skip(id, "the kit's sandbox did not start");
            }
        }
    }
    runner.finish()
}

/// Runs the contract suite on `cut`; for an Alipay component also its signature cases and the
/// flow suite against a host `launcher` starts.
pub fn run_component<'a>(
    cut: &'a dyn ComponentUnderTest,
    launcher: &'a dyn HostLauncher,
    opts: &'a Options,
) -> Running<'a> {
    Box::pin(component_suite(cut, launcher, opts))
}

async fn component_suite(
    cut: &dyn ComponentUnderTest,
    launcher: &dyn HostLauncher,
    opts: &Options,
) -> Report {
    let mut runner = Runner::new(opts);
    let Some(info) = contract::describe(&mut runner, cut).await else {
        for id in contract_cases().iter().skip(1) {
            runner.skip(id, "needs describe.call");
        }
        for id in ALIPAY_COMPONENT_CASES.iter().chain(FLOW_CASES) {
            runner.skip(id, "needs describe.call");
        }
        return runner.finish();
    };
    let alipay = is_alipay(&info);
    let env = if alipay {
        match KitEnv::start(opts).await {
            Ok(env) => Some(env),
            Err(e) => {
                runner
                    .case("kit.sandbox", async { Err(e.clone().into()) })
                    .await;
                None
            }
        }
    } else {
        None
    };
    let required_without_default = info
        .settings
        .iter()
        .any(|f| f.required && f.default_value.is_none());
    let example = opts
        .example_settings
        .clone()
        .or_else(|| env.as_ref().map(KitEnv::md5_settings))
        .or_else(|| (!required_without_default).then(|| contract::defaults(&info)));
    let ctx = contract::Context {
        cut,
        example_is_sandbox: opts.example_settings.is_none() && env.is_some(),
        example,
        may_send_for_garbage: !alipay,
    };
    contract::describe_cases(&mut runner, cut, &info).await;
    contract::settings_cases(&mut runner, &ctx, &info).await;
    contract::hostile_cases(&mut runner, &ctx).await;
    contract::limits_case(&mut runner, &ctx, &info).await;
    cases::start::cases(&mut runner, &ctx, &info, env.as_ref()).await;

    let Some(env) = env else {
        let why = if alipay {
            "the kit's sandbox did not start".to_owned()
        } else {
            format!("no sandbox for provider {}", info.provider)
        };
        for id in ALIPAY_COMPONENT_CASES.iter().chain(FLOW_CASES) {
            runner.skip(id, &why);
        }
        return runner.finish();
    };
    component_alipay::run(&mut runner, cut, &env).await;
    let mut host = None;
    runner
        .case("host.started", async {
            host = Some(launcher.start(vec![env.origin.clone()]).await?);
            Ok(())
        })
        .await;
    match &host {
        Some(h) => flows::run(&mut runner, &h.base_url, &h.token, &env, opts).await,
        None => {
            for id in FLOW_CASES {
                runner.skip(id, "needs host.started");
            }
        }
    }
    drop(host);
    runner.finish()
}
