//! The contract suite against fake components: a correct one passes every case, and each
//! deliberately broken one fails the case that names its fault (and only such cases).

use payhost_conformance::{
    run_component, BoxFuture, CallOutcome, ComponentUnderTest, FieldError, FlowStep, HostLauncher,
    KitAnswer, KitOrder, Options, Outcome, Pairs, PluginInfo, Report, RunningHost, SettingField,
    Validated,
};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// Every notification is verified, whatever it says.
    VerifiesGarbage,
    /// A long value traps the return check.
    TrapsOnLongInput,
    /// The notification check takes twice the call limit.
    Slow,
    /// A duplicated setting, a select without options, a secret not flagged, a missing label.
    BadSchema,
    /// Settings it does not know are accepted silently.
    AcceptsUnknownSettings,
    /// A garbage notification makes it ask to send a request (before any check).
    SendsForGarbage,
    /// A payment's create call that failed still ends in a redirect.
    StartsDespiteFailure,
    /// The create call goes to an origin neither the manifest nor a setting names.
    AsksUnconfiguredOrigin,
    /// The amount is not checked before the create call.
    AcceptsBadAmounts,
    /// Every answer makes it ask for the create call again.
    AsksForever,
    /// A continuation it did not make traps it.
    TrapsOnForeignContinuation,
    /// Every order is refused before anything is asked.
    RefusesEveryOrder,
    /// A failed create call is tried again at an origin nobody configured.
    FallsBackElsewhere,
}

/// "fakepay": settings `api_key` (secret, required), `mode` (select live/test, default test),
/// `endpoint` (url, default). A notification or return is genuine when `sig` is the api key
/// followed by `:` and `id`. A payment POSTs `<endpoint>/create`; an answer `200 token=…` makes
/// the redirect `<endpoint>/pay?token=…`.
struct Fake(Fault);

const LIMIT: Duration = Duration::from_millis(400);

fn field(
    name: &str,
    kind: &str,
    required: bool,
    options: &[&str],
    default: Option<&str>,
) -> SettingField {
    SettingField {
        name: name.into(),
        label_zh: format!("{name} 标签"),
        label_en: format!("{name} label"),
        kind: kind.into(),
        required,
        secret: kind == "secret",
        rule: "see the docs".into(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        default_value: default.map(str::to_owned),
    }
}

impl Fake {
    fn describe(&self) -> PluginInfo {
        let mut settings = vec![
            field("api_key", "secret", true, &[], None),
            field("mode", "select", false, &["live", "test"], Some("test")),
            field(
                "endpoint",
                "url",
                false,
                &[],
                Some("https://api.fakepay.example"),
            ),
        ];
        if self.0 == Fault::BadSchema {
            settings[0].secret = false;
            settings[1].options.clear();
            settings[2].label_zh.clear();
            settings.push(field("mode", "text", false, &[], None));
        }
        PluginInfo {
            id: "fakepay".into(),
            name: "Fake pay".into(),
            version: "1.0.0".into(),
            provider: "fakepay".into(),
            settings,
            notify_ack: "OK".into(),
            notify_retry: "RETRY".into(),
        }
    }

    fn validate(&self, settings: &Pairs) -> Validated {
        let err = |f: &str, r: &str| FieldError {
            field: f.into(),
            reason: r.into(),
        };
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for (k, v) in settings {
            let v = v.trim();
            match k.as_str() {
                "api_key" if v.len() >= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    out.push((k.clone(), v.to_owned()))
                }
                "api_key" => errors.push(err(k, "must be 16 or more letters or digits")),
                "mode" if v == "test" => {}
                "mode" if v == "live" => out.push((k.clone(), v.to_owned())),
                "mode" => errors.push(err(k, "must be live or test")),
                "endpoint" if v.starts_with("https://") && !v.contains(' ') => {
                    if v != "https://api.fakepay.example" {
                        out.push((k.clone(), v.to_owned()))
                    }
                }
                "endpoint" => errors.push(err(k, "must be an https URL")),
                _ if self.0 == Fault::AcceptsUnknownSettings => {}
                _ => errors.push(err(k, "is not a setting of fakepay")),
            }
        }
        if !settings.iter().any(|(k, _)| k == "api_key") {
            errors.push(err("api_key", "is required"));
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn genuine(&self, settings: &Pairs, form: &Pairs) -> Result<(), String> {
        let settings = self
            .validate(settings)
            .map_err(|e| format!("settings: {e:?}"))?;
        let key = settings
            .iter()
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match (get("id"), get("sig")) {
            (Some(id), Some(sig)) if sig == format!("{key}:{id}") => Ok(()),
            _ => Err("bad signature".into()),
        }
    }
}

impl ComponentUnderTest for Fake {
    fn info(&self) -> BoxFuture<'_, Result<PluginInfo, String>> {
        Box::pin(async move { Ok(self.describe()) })
    }

    fn validate_settings<'a>(&'a self, settings: &'a Pairs) -> BoxFuture<'a, Validated> {
        Box::pin(async move { self.validate(settings) })
    }

    fn verify_notification<'a>(
        &'a self,
        settings: &'a Pairs,
        form: &'a Pairs,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            match self.0 {
                Fault::VerifiesGarbage => return CallOutcome::Verified,
                Fault::Slow => tokio::time::sleep(LIMIT * 2).await,
                Fault::SendsForGarbage => {
                    return CallOutcome::WantsToSend {
                        url: "https://api.fakepay.example/confirm".into(),
                    }
                }
                _ => {}
            }
            match self.genuine(settings, form) {
                Ok(()) => CallOutcome::Verified,
                Err(e) => CallOutcome::Refused(e),
            }
        })
    }

    fn verify_return<'a>(
        &'a self,
        settings: &'a Pairs,
        query: &'a Pairs,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            if self.0 == Fault::TrapsOnLongInput && query.iter().any(|(_, v)| v.len() > 65_536) {
                return CallOutcome::Trapped("wasm trap: out of bounds memory access".into());
            }
            match self.genuine(settings, query) {
                Ok(()) => CallOutcome::Verified,
                Err(e) => CallOutcome::Refused(e),
            }
        })
    }

    fn call_limit(&self) -> Duration {
        LIMIT
    }

    fn allowed_hosts(&self) -> Vec<String> {
        vec!["https://api.fakepay.example".into()]
    }

    fn start_payment<'a>(
        &'a self,
        settings: &'a Pairs,
        order: &'a KitOrder,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async move {
            if let Err(e) = self.validate(settings) {
                return Some(FlowStep::Refused(format!("settings: {e:?}")));
            }
            if self.0 == Fault::RefusesEveryOrder {
                return Some(FlowStep::Refused("invalid order: product".into()));
            }
            if self.0 != Fault::AcceptsBadAmounts && !amount_ok(&order.total_fee) {
                return Some(FlowStep::Refused("invalid order: total_fee".into()));
            }
            let endpoint = if self.0 == Fault::AsksUnconfiguredOrigin {
                "https://collector.elsewhere.example".to_owned()
            } else {
                endpoint(settings)
            };
            Some(FlowStep::Send {
                request: payhost_conformance::AskedRequest {
                    method: "POST".into(),
                    url: format!("{endpoint}/create"),
                    headers: vec![],
                    body: format!("order={}&amount={}", order.out_trade_no, order.total_fee)
                        .into_bytes(),
                },
                continuation: format!("fakepay:create:{}", order.out_trade_no),
            })
        })
    }

    fn resume_payment<'a>(
        &'a self,
        settings: &'a Pairs,
        continuation: &'a str,
        answer: &'a KitAnswer,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async move {
            if continuation.starts_with("fakepay:fallback:") {
                return Some(FlowStep::Refused("the fallback failed too".into()));
            }
            let Some(order) = continuation.strip_prefix("fakepay:create:") else {
                return Some(if self.0 == Fault::TrapsOnForeignContinuation {
                    FlowStep::Trapped("wasm trap: unreachable".into())
                } else {
                    FlowStep::Refused("malformed: not a fakepay continuation".into())
                });
            };
            let pay = format!("{}/pay", endpoint(settings));
            match (self.0, answer) {
                (Fault::AsksForever, _) => Some(FlowStep::Send {
                    request: payhost_conformance::AskedRequest {
                        method: "POST".into(),
                        url: format!("{}/create", endpoint(settings)),
                        headers: vec![],
                        body: vec![],
                    },
                    continuation: continuation.to_owned(),
                }),
                (Fault::FallsBackElsewhere, KitAnswer::Timeout(_)) => Some(FlowStep::Send {
                    request: payhost_conformance::AskedRequest {
                        method: "POST".into(),
                        url: "https://fallback.elsewhere.example/create".into(),
                        headers: vec![],
                        body: vec![],
                    },
                    continuation: format!("fakepay:fallback:{order}"),
                }),
                (Fault::StartsDespiteFailure, _) => {
                    Some(FlowStep::Done(format!("{pay}?order={order}")))
                }
                (
                    _,
                    KitAnswer::Response {
                        status: 200, body, ..
                    },
                ) => {
                    match std::str::from_utf8(body)
                        .ok()
                        .and_then(|b| b.strip_prefix("token="))
                    {
                        Some(token) if !token.is_empty() && token.len() < 64 => {
                            Some(FlowStep::Done(format!("{pay}?token={token}")))
                        }
                        _ => Some(FlowStep::Refused("malformed create answer".into())),
                    }
                }
                (_, other) => Some(FlowStep::Refused(
                    format!("transport: {other:?}").chars().take(80).collect(),
                )),
            }
        })
    }
}

fn endpoint(settings: &Pairs) -> String {
    settings
        .iter()
        .find(|(k, _)| k == "endpoint")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "https://api.fakepay.example".into())
}

/// Two decimal places, above zero.
fn amount_ok(fee: &str) -> bool {
    match fee.split_once('.') {
        Some((yuan, fen)) => {
            !yuan.is_empty()
                && yuan.bytes().all(|b| b.is_ascii_digit())
                && fen.len() == 2
                && fen.bytes().all(|b| b.is_ascii_digit())
                && fee != "0.00"
                && yuan.trim_start_matches('0').len() + fen.trim_start_matches('0').len() > 0
        }
        None => false,
    }
}

/// The flow suite needs the sandbox of the component's provider: fakepay has none, so the
/// launcher must never be asked.
struct NoLauncher;

impl HostLauncher for NoLauncher {
    fn start(&self, _: Vec<String>) -> BoxFuture<'_, Result<RunningHost, String>> {
        Box::pin(async { panic!("no host is started for a provider without a sandbox") })
    }
}

fn opts() -> Options {
    Options {
        example_settings: Some(vec![("api_key".into(), "k".repeat(20))]),
        ..Options::default()
    }
}

async fn run(fault: Fault) -> Report {
    run_component(&Fake(fault), &NoLauncher, &opts()).await
}

fn failed_ids(report: &Report) -> Vec<String> {
    report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .map(|c| c.id.clone())
        .collect()
}

fn printed(report: &Report) -> String {
    let mut out = Vec::new();
    report.print(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_correct_component_passes_and_the_flows_are_skipped() {
    let report = run(Fault::None).await;
    let text = printed(&report);
    assert_eq!(report.failed(), 0, "{text}");
    for id in payhost_conformance::contract_cases() {
        let case = report
            .case(&id)
            .unwrap_or_else(|| panic!("{id} did not run:\n{text}"));
        assert_eq!(case.outcome, Outcome::Passed, "{text}");
    }
    for id in payhost_conformance::FLOW_CASES
        .iter()
        .chain(payhost_conformance::ALIPAY_COMPONENT_CASES)
    {
        assert_eq!(
            report.case(id).unwrap().outcome,
            Outcome::Skipped("no sandbox for provider fakepay".into())
        );
    }
    assert!(
        text.contains("\nskip notify.paid_once: no sandbox for provider fakepay\n"),
        "{text}"
    );
    assert!(text.contains("ok   hostile.notify.huge ("), "{text}");
    let last = text.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "{} passed, 0 failed, {} skipped",
            payhost_conformance::contract_cases().len(),
            payhost_conformance::FLOW_CASES.len()
                + payhost_conformance::ALIPAY_COMPONENT_CASES.len()
        )
    );
}

#[tokio::test]
async fn verifying_garbage_fails_every_hostile_notify_case() {
    let report = run(Fault::VerifiesGarbage).await;
    let text = printed(&report);
    let failed = failed_ids(&report);
    assert!(
        failed.iter().all(|id| id.starts_with("hostile.notify.")),
        "{text}"
    );
    for name in [
        "empty",
        "garbage",
        "huge",
        "not_utf8",
        "xml_bomb",
        "no_settings",
    ] {
        assert!(failed.contains(&format!("hostile.notify.{name}")), "{text}");
    }
    assert!(
        text.contains(
            "FAIL hostile.notify.garbage: a hostile notification was verified as genuine"
        ),
        "{text}"
    );
    assert!(report.failed() > 0);
    assert!(report
        .junit()
        .contains("<testcase classname=\"hostile\" name=\"hostile.notify.garbage\""));
    assert!(report
        .junit()
        .contains("<failure message=\"a hostile notification was verified as genuine\">"));
}

#[tokio::test]
async fn a_trap_is_a_failure_not_a_refusal() {
    let report = run(Fault::TrapsOnLongInput).await;
    let text = printed(&report);
    let failed = failed_ids(&report);
    assert!(failed.contains(&"hostile.return.huge".to_owned()), "{text}");
    assert!(failed.contains(&"limits.call_limit".to_owned()), "{text}");
    assert!(
        !failed.iter().any(|id| id.starts_with("hostile.notify.")),
        "{text}"
    );
    assert!(
        text.contains(
            "FAIL hostile.return.huge: a hostile return trapped the component (wasm trap"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_call_over_the_limit_fails() {
    let report = run(Fault::Slow).await;
    let text = printed(&report);
    let failed = failed_ids(&report);
    assert!(
        failed.contains(&"hostile.notify.garbage".to_owned()),
        "{text}"
    );
    assert!(
        text.contains("FAIL hostile.notify.garbage: the call did not return within the component's limit of 400 ms"),
        "{text}"
    );
    assert!(
        !failed.iter().any(|id| id.starts_with("hostile.return.")),
        "{text}"
    );
}

#[tokio::test]
async fn a_bad_schema_fails_the_describe_cases() {
    let report = run(Fault::BadSchema).await;
    let text = printed(&report);
    let failed = failed_ids(&report);
    for id in [
        "describe.setting_names",
        "describe.labels",
        "describe.kinds",
        "describe.select_options",
    ] {
        assert!(failed.contains(&id.to_owned()), "{id}:\n{text}");
    }
    assert!(
        text.contains("FAIL describe.setting_names: setting \"mode\" is described twice"),
        "{text}"
    );
    assert!(
        text.contains("setting \"api_key\" is of kind secret but not flagged secret"),
        "{text}"
    );
    assert!(
        text.contains("select setting \"mode\" has no options"),
        "{text}"
    );
    assert!(
        text.contains("FAIL describe.labels: setting \"endpoint\" has no label_zh"),
        "{text}"
    );
    assert!(report.case("describe.identity").unwrap().outcome == Outcome::Passed);
}

#[tokio::test]
async fn unknown_settings_must_be_refused() {
    let report = run(Fault::AcceptsUnknownSettings).await;
    let text = printed(&report);
    assert_eq!(
        failed_ids(&report),
        vec!["settings.unknown_refused".to_owned()],
        "{text}"
    );
    assert!(
        text.contains("FAIL settings.unknown_refused: a setting the component does not describe"),
        "{text}"
    );
}

#[tokio::test]
async fn asking_to_send_for_garbage_is_allowed_only_for_providers_that_confirm() {
    // fakepay is not Alipay: a provider may confirm every notification by calling back, so a
    // request for a garbage notification is not a failure; with no settings it still is.
    let report = run(Fault::SendsForGarbage).await;
    let text = printed(&report);
    assert_eq!(
        failed_ids(&report),
        vec!["hostile.notify.no_settings".to_owned()],
        "{text}"
    );
}

#[tokio::test]
async fn without_example_settings_the_cases_that_need_them_are_skipped() {
    let report = run_component(&Fake(Fault::None), &NoLauncher, &Options::default()).await;
    let text = printed(&report);
    assert_eq!(report.failed(), 0, "{text}");
    assert!(matches!(
        report.case("settings.example_accepted").unwrap().outcome,
        Outcome::Skipped(_)
    ));
    assert!(
        text.contains("ok   settings.empty_names_required ("),
        "{text}"
    );
}

/// Example settings the component does not have or does not take are the caller's mistake: the
/// check before the run names each (never its value), and passes settings the component takes.
#[tokio::test]
async fn example_settings_are_checked_before_the_run() {
    use payhost_conformance::check_settings;
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let good = pairs(&[("api_key", &"k".repeat(20)), ("mode", "live")]);
    assert_eq!(check_settings(&Fake(Fault::None), &good).await, Ok(()));

    let mut unknown = good.clone();
    unknown.push(("foo".into(), "bar".into()));
    let e = check_settings(&Fake(Fault::None), &unknown)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        "--setting foo: the component fakepay has no setting foo (its settings: api_key, mode, endpoint)"
    );

    let refused = pairs(&[("api_key", "short-secret-x"), ("mode", "sideways")]);
    let e = check_settings(&Fake(Fault::None), &refused)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        "the component fakepay refuses the settings given: --setting api_key: must be 16 or more letters or digits; --setting mode: must be live or test"
    );
    assert!(!e.contains("short-secret-x"));
    let e = check_settings(&Fake(Fault::None), &pairs(&[("mode", "live")]))
        .await
        .unwrap_err();
    assert!(
        e.ends_with("--setting api_key is missing: is required"),
        "{e}"
    );
}

/// A component whose `validate-settings` traps is not the caller's mistake: the check passes
/// and `settings.example_accepted` reports the trap.
#[tokio::test]
async fn a_trap_in_the_settings_check_is_left_to_the_cases() {
    struct Traps;
    impl ComponentUnderTest for Traps {
        fn info(&self) -> BoxFuture<'_, Result<PluginInfo, String>> {
            Box::pin(async { Ok(Fake(Fault::None).describe()) })
        }
        fn validate_settings<'a>(&'a self, _: &'a Pairs) -> BoxFuture<'a, Validated> {
            Box::pin(async {
                Err(vec![FieldError {
                    field: String::new(),
                    reason: "wasm trap: unreachable".into(),
                }])
            })
        }
        fn verify_notification<'a>(
            &'a self,
            _: &'a Pairs,
            _: &'a Pairs,
        ) -> BoxFuture<'a, CallOutcome> {
            Box::pin(async { CallOutcome::Refused("no".into()) })
        }
        fn verify_return<'a>(&'a self, _: &'a Pairs, _: &'a Pairs) -> BoxFuture<'a, CallOutcome> {
            Box::pin(async { CallOutcome::Refused("no".into()) })
        }
        fn call_limit(&self) -> Duration {
            LIMIT
        }
    }
    let settings = vec![("api_key".to_owned(), "k".repeat(20))];
    assert_eq!(
        payhost_conformance::check_settings(&Traps, &settings).await,
        Ok(())
    );
}

/// The payment flow, driven by the kit: a correct fakepay passes every `start.*` case (above);
/// each broken one fails the case that names its fault, and only that one (and the example
/// order too, for a flow that never ends).
#[tokio::test]
async fn each_payment_flow_fault_fails_its_start_case() {
    for (fault, cases, says) in [
        (
            Fault::StartsDespiteFailure,
            vec!["start.request_failures"],
            "FAIL start.request_failures: after no answer in time, it answered a redirect (https://api.fakepay.example/pay?order=",
        ),
        (
            Fault::AsksUnconfiguredOrigin,
            vec!["start.example_order", "start.request_failures"],
            "FAIL start.example_order: the component asked for POST https://collector.elsewhere.example/create: https://collector.elsewhere.example is neither in its manifest's outbound.allowed_hosts nor named by a setting",
        ),
        (
            Fault::AcceptsBadAmounts,
            vec!["start.bad_amounts_refused"],
            "FAIL start.bad_amounts_refused: total_fee \"0.00\" was not refused before sending: it asked for POST https://api.fakepay.example/create",
        ),
        (
            Fault::AsksForever,
            vec!["start.example_order", "start.request_failures"],
            "FAIL start.example_order: the flow asked for more than 4 requests",
        ),
        (
            Fault::FallsBackElsewhere,
            vec!["start.request_failures"],
            "FAIL start.request_failures: after no answer in time: the component asked for POST https://fallback.elsewhere.example/create",
        ),
        (
            Fault::TrapsOnForeignContinuation,
            vec!["start.foreign_continuation_refused"],
            "FAIL start.foreign_continuation_refused: an empty continuation trapped it: wasm trap: unreachable",
        ),
    ] {
        let report = run(fault).await;
        let text = printed(&report);
        assert_eq!(failed_ids(&report), cases, "{fault:?}:\n{text}");
        assert!(text.contains(says), "{fault:?}:\n{text}");
    }
}

/// An implementation that cannot drive flows (the trait's defaults) skips the `start.*` cases,
/// saying why; it never passes them.
#[tokio::test]
async fn an_implementation_without_flow_steps_skips_the_start_cases() {
    struct Plain;
    impl ComponentUnderTest for Plain {
        fn info(&self) -> BoxFuture<'_, Result<PluginInfo, String>> {
            Box::pin(async { Ok(Fake(Fault::None).describe()) })
        }
        fn validate_settings<'a>(&'a self, s: &'a Pairs) -> BoxFuture<'a, Validated> {
            Box::pin(async move { Fake(Fault::None).validate(s) })
        }
        fn verify_notification<'a>(
            &'a self,
            s: &'a Pairs,
            f: &'a Pairs,
        ) -> BoxFuture<'a, CallOutcome> {
            Box::pin(async move { Fake(Fault::None).verify_notification(s, f).await })
        }
        fn verify_return<'a>(&'a self, s: &'a Pairs, q: &'a Pairs) -> BoxFuture<'a, CallOutcome> {
            Box::pin(async move { Fake(Fault::None).verify_return(s, q).await })
        }
        fn call_limit(&self) -> Duration {
            LIMIT
        }
    }
    let report = run_component(&Plain, &NoLauncher, &opts()).await;
    let text = printed(&report);
    assert_eq!(report.failed(), 0, "{text}");
    for id in payhost_conformance::START_CASES {
        assert!(
            matches!(&report.case(id).unwrap().outcome, Outcome::Skipped(why) if why.contains("cannot be driven step by step")),
            "{id}:\n{text}"
        );
    }
}

/// A component that refuses the kit's good order as well as the bad ones shows nothing: the cases
/// that need a started order are skipped, said why, never passed.
#[tokio::test]
async fn refusing_every_order_passes_no_start_case() {
    let report = run(Fault::RefusesEveryOrder).await;
    let text = printed(&report);
    assert_eq!(report.failed(), 0, "{text}");
    for id in ["start.example_order", "start.bad_amounts_refused"] {
        assert!(
            matches!(&report.case(id).unwrap().outcome, Outcome::Skipped(why) if why.contains("invalid order: product")),
            "{id}:\n{text}"
        );
    }
}
