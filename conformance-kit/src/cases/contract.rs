//! The contract suite, for any component: what `describe` promises, how `validate-settings`
//! treats missing, unknown and garbage settings, that hostile notifications and returns are
//! refused (never verified, never a trap), and that no call outlasts the component's limit.

use crate::api::{CallOutcome, ComponentUnderTest, FieldError, Pairs, PluginInfo, SettingField};
use crate::runner::{ensure, Runner, Stop, Verdict};
use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

/// What the contract cases need to know besides the component.
pub struct Context<'a> {
    pub cut: &'a dyn ComponentUnderTest,
    /// Settings the component should accept (None: the kit has none to offer).
    pub example: Option<Vec<(String, String)>>,
    /// Whether `example` is the kit's own sandbox merchant (not `--setting`s the caller gave,
    /// whose requests go to their provider, where the kit does not send them).
    pub example_is_sandbox: bool,
    /// Whether a well-formed input may legitimately make the component ask to send a request
    /// (a provider that confirms notifications by calling back); false for Alipay, which must
    /// check the signature before anything is sent.
    pub may_send_for_garbage: bool,
}

/// Extra time over the component's limit before a call counts as too slow (scheduling).
const SLACK: Duration = Duration::from_millis(250);

pub const KINDS: &[&str] = &["text", "secret", "select", "pem", "url"];

/// Runs `describe.call`; the info when it answered.
pub async fn describe(runner: &mut Runner, cut: &dyn ComponentUnderTest) -> Option<PluginInfo> {
    let mut info = None;
    let limit = cut.call_limit();
    runner
        .case("describe.call", async {
            let (r, _) = timed(limit, cut.info()).await?;
            info = Some(r.map_err(|e| format!("describe failed: {e}"))?);
            Ok(())
        })
        .await;
    info
}

/// The describe cases on an answer.
pub async fn describe_cases(runner: &mut Runner, cut: &dyn ComponentUnderTest, info: &PluginInfo) {
    runner
        .case("describe.identity", async { identity(info) })
        .await;
    runner
        .case("describe.setting_names", async { setting_names(info) })
        .await;
    runner.case("describe.labels", async { labels(info) }).await;
    runner.case("describe.kinds", async { kinds(info) }).await;
    runner
        .case("describe.select_options", async { select_options(info) })
        .await;
    runner
        .case("describe.stable", async {
            let (again, _) = timed(cut.call_limit(), cut.info()).await?;
            let again = again.map_err(|e| format!("the second describe failed: {e}"))?;
            ensure(&again == info, || {
                "two describe calls answered differently: a component must describe itself the same way every time".into()
            })
        })
        .await;
}

fn identity(info: &PluginInfo) -> Verdict {
    let mut problems = Vec::new();
    for (name, value) in [
        ("id", &info.id),
        ("name", &info.name),
        ("version", &info.version),
        ("provider", &info.provider),
        ("notify_ack", &info.notify_ack),
        ("notify_retry", &info.notify_retry),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("{name} is empty"));
        }
    }
    if !info.id.is_empty()
        && !info
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        problems.push(format!(
            "id {:?} must be lower-case letters, digits, '-' or '_' (it names the plugin in payhost.toml)",
            info.id
        ));
    }
    if !info.version.is_empty()
        && !info
            .version
            .split(['.', '-', '+'])
            .next()
            .is_some_and(|major| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.push(format!(
            "version {:?} does not start with a number",
            info.version
        ));
    }
    if !info.notify_ack.is_empty() && info.notify_ack == info.notify_retry {
        problems.push(format!(
            "notify_ack and notify_retry are both {:?}: the provider could not tell them apart",
            info.notify_ack
        ));
    }
    verdict(problems)
}

fn setting_names(info: &PluginInfo) -> Verdict {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for f in &info.settings {
        if f.name.is_empty() {
            problems.push("a setting has an empty name".to_owned());
        } else if !f
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problems.push(format!(
                "setting {:?}: names are lower-case letters, digits and '_' (they are TOML keys and form fields)",
                f.name
            ));
        }
        if !seen.insert(f.name.as_str()) {
            problems.push(format!("setting {:?} is described twice", f.name));
        }
    }
    verdict(problems)
}

fn labels(info: &PluginInfo) -> Verdict {
    let problems = info
        .settings
        .iter()
        .flat_map(|f| {
            [("label_zh", &f.label_zh), ("label_en", &f.label_en)]
                .into_iter()
                .filter(|(_, l)| l.trim().is_empty())
                .map(move |(which, _)| format!("setting {:?} has no {which}", f.name))
        })
        .collect();
    verdict(problems)
}

fn kinds(info: &PluginInfo) -> Verdict {
    let mut problems = Vec::new();
    for f in &info.settings {
        if !KINDS.contains(&f.kind.as_str()) {
            problems.push(format!(
                "setting {:?} has kind {:?}, not one of {}",
                f.name,
                f.kind,
                KINDS.join(", ")
            ));
        }
        if f.kind == "secret" && !f.secret {
            problems.push(format!(
                "setting {:?} is of kind secret but not flagged secret (it would be shown and logged)",
                f.name
            ));
        }
    }
    verdict(problems)
}

fn select_options(info: &PluginInfo) -> Verdict {
    let mut problems = Vec::new();
    for f in &info.settings {
        if f.kind == "select" && f.options.is_empty() {
            problems.push(format!("select setting {:?} has no options", f.name));
        }
        let mut seen = HashSet::new();
        for o in &f.options {
            if o.trim().is_empty() {
                problems.push(format!("setting {:?} has an empty option", f.name));
            }
            if !seen.insert(o.as_str()) {
                problems.push(format!("setting {:?} lists option {o:?} twice", f.name));
            }
        }
        if let Some(d) = &f.default_value {
            if !f.options.is_empty() && !f.options.contains(d) {
                problems.push(format!(
                    "setting {:?}: default {d:?} is not one of its options {:?}",
                    f.name, f.options
                ));
            }
        }
    }
    verdict(problems)
}

/// The settings cases.
pub async fn settings_cases(runner: &mut Runner, ctx: &Context<'_>, info: &PluginInfo) {
    let cut = ctx.cut;
    let limit = cut.call_limit();
    runner
        .case("settings.empty_names_required", async {
            let (r, _) = timed(limit, cut.validate_settings(&[])).await?;
            let required: Vec<&str> = info
                .settings
                .iter()
                .filter(|f| f.required && f.default_value.is_none())
                .map(|f| f.name.as_str())
                .collect();
            match r {
                Ok(_) if required.is_empty() => Ok(()),
                Ok(_) => Err(format!(
                    "empty settings were accepted, but {} required",
                    plural(&required)
                )
                .into()),
                Err(errors) => {
                    well_formed(&errors)?;
                    let missing: Vec<&str> = required
                        .iter()
                        .copied()
                        .filter(|name| !errors.iter().any(|e| e.field == *name))
                        .collect();
                    ensure(missing.is_empty(), || {
                        format!(
                            "empty settings were refused without naming required {}; named: {}",
                            plural(&missing),
                            named(&errors)
                        )
                    })
                }
            }
        })
        .await;

    let Some(example) = ctx.example.clone() else {
        for id in [
            "settings.example_accepted",
            "settings.trimmed",
            "settings.unknown_refused",
            "settings.garbage_refused",
        ] {
            runner.skip(id, NO_SETTINGS);
        }
        return;
    };

    let mut normalised: Option<Vec<(String, String)>> = None;
    runner
        .case("settings.example_accepted", async {
            let (r, _) = timed(limit, cut.validate_settings(&example)).await?;
            let first = r.map_err(|e| {
                format!(
                    "the example settings ({}) were refused: {}",
                    names(&example),
                    named(&e)
                )
            })?;
            // What the component stores must be accepted again, unchanged.
            let (again, _) = timed(limit, cut.validate_settings(&first)).await?;
            let again = again.map_err(|e| {
                format!(
                    "the component's own normalised settings were refused: {}",
                    named(&e)
                )
            })?;
            ensure(again == first, || {
                "validating the normalised settings again changed them".into()
            })?;
            normalised = Some(first);
            Ok(())
        })
        .await;

    runner
        .case("settings.trimmed", async {
            let Some(expected) = &normalised else {
                return Err(Stop::Skip("needs settings.example_accepted".into()));
            };
            let padded: Vec<(String, String)> = example
                .iter()
                .map(|(k, v)| (k.clone(), format!("  {v} \n")))
                .collect();
            let (r, _) = timed(limit, cut.validate_settings(&padded)).await?;
            let got = r.map_err(|e| {
                format!(
                    "values pasted with spaces and a line break around them were refused: {}",
                    named(&e)
                )
            })?;
            ensure(&got == expected, || {
                "values with spaces around them were not normalised like the same values without"
                    .into()
            })
        })
        .await;

    runner
        .case("settings.unknown_refused", async {
            let mut s = example.clone();
            s.push(("conformance_no_such_setting".into(), "1".into()));
            let (r, _) = timed(limit, cut.validate_settings(&s)).await?;
            match r {
                Ok(_) => Err("a setting the component does not describe (conformance_no_such_setting) was accepted: a typo in a setting's name would go unnoticed".into()),
                Err(errors) => {
                    well_formed(&errors)?;
                    ensure(errors.iter().any(|e| e.field == "conformance_no_such_setting"), || {
                        format!("the unknown setting was refused without being named; named: {}", named(&errors))
                    })
                }
            }
        })
        .await;

    runner
        .case("settings.garbage_refused", async {
            let mut problems = Vec::new();
            for f in &info.settings {
                let garbage = match f.kind.as_str() {
                    "select" => Some("conformance-not-an-option"),
                    "url" => Some("not a url"),
                    _ if f.required => Some("   "),
                    _ => None,
                };
                let Some(garbage) = garbage else { continue };
                let mut s: Vec<(String, String)> = example
                    .iter()
                    .filter(|(k, _)| *k != f.name)
                    .cloned()
                    .collect();
                s.push((f.name.clone(), garbage.to_owned()));
                let (r, _) = timed(limit, cut.validate_settings(&s)).await?;
                match r {
                    Ok(_) => problems.push(format!("{} = {garbage:?} was accepted", f.name)),
                    Err(errors) => {
                        well_formed(&errors)?;
                        if !errors.iter().any(|e| e.field == f.name) {
                            problems.push(format!(
                                "{} = {garbage:?} was refused without naming {}; named: {}",
                                f.name,
                                f.name,
                                named(&errors)
                            ));
                        }
                    }
                }
            }
            verdict(problems)
        })
        .await;
}

/// The names of [`hostile_inputs`], in order.
pub const HOSTILE_INPUTS: &[&str] = &[
    "empty",
    "garbage",
    "shaped_garbage",
    "huge",
    "many_fields",
    "not_utf8",
    "xml_bomb",
    "deep_xml",
    "rsa_garbage",
];

/// The hostile inputs: `(case suffix, form)`. `shaped` names fields a provider reads.
pub fn hostile_inputs(shaped: &[&str]) -> Vec<(&'static str, Vec<(String, String)>)> {
    let pair = |k: &str, v: String| (k.to_owned(), v);
    let mib = 1 << 20;
    let shaped_with = |value: &dyn Fn(&str) -> String| -> Vec<(String, String)> {
        shaped.iter().map(|k| pair(k, value(k))).collect()
    };
    vec![
        ("empty", Vec::new()),
        (
            "garbage",
            vec![
                pair("", String::new()),
                pair("garbage", "\u{0}\u{1}%%%&&==".into()),
                pair("sign", "AAAA".into()),
            ],
        ),
        (
            "shaped_garbage",
            shaped_with(&|k| format!("{k}-garbage-<>&\"'")),
        ),
        ("huge", {
            let mut f = shaped_with(&|_| "x".repeat(1024));
            f.push(pair(
                "notify_data",
                format!("<notify>{}</notify>", "A".repeat(mib)),
            ));
            f
        }),
        (
            "many_fields",
            (0..20_000)
                .map(|i| pair(&format!("k{i}"), "v".into()))
                .collect(),
        ),
        (
            "not_utf8",
            shaped_with(&|_| "\u{fffd}\u{fffd}\u{0}\u{202e}%ff%fe\u{d7ff}\u{10ffff}ÿþ".into()),
        ),
        ("xml_bomb", {
            let bomb = "<?xml version=\"1.0\"?><!DOCTYPE n [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\"><!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">]><notify><notify_id>&g;</notify_id><trade_status>TRADE_SUCCESS</trade_status></notify>".to_owned();
            let mut f = shaped_with(&|k| match k {
                "notify_data" => bomb.clone(),
                _ => "1".into(),
            });
            f.push(pair("notify_data", bomb.clone()));
            f
        }),
        ("deep_xml", {
            let depth = 100_000;
            let deep = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
            vec![
                pair("notify_data", deep.clone()),
                pair("sign", "x".into()),
                pair("xml", deep),
            ]
        }),
        (
            "rsa_garbage",
            vec![
                pair("service", "alipay.wap.trade.create.direct".into()),
                pair("sec_id", "0001".into()),
                pair("v", "1.0".into()),
                pair("sign", "!!!not base64!!!".into()),
                pair("notify_data", "QUJD".repeat(4096)),
            ],
        ),
    ]
}

/// Field names payment providers read in notifications and returns.
pub const SHAPED_FIELDS: &[&str] = &[
    "service",
    "sign",
    "sign_type",
    "sec_id",
    "v",
    "notify_data",
    "notify_id",
    "notify_type",
    "out_trade_no",
    "trade_no",
    "trade_status",
    "total_fee",
    "seller_id",
    "seller_email",
    "partner",
    "result",
    "request_token",
    "is_success",
    "signature",
    "event",
    "id",
    "amount",
    "status",
];

/// Why a case that needs settings the component accepts is skipped.
const NO_SETTINGS: &str = "no settings the component accepts: it has required settings without defaults (give them with --setting NAME=VALUE, once per setting)";

/// The hostile cases: `hostile.notify.<input>`, `hostile.notify.no_settings`,
/// `hostile.return.<input>`.
pub async fn hostile_cases(runner: &mut Runner, ctx: &Context<'_>) {
    let cut = ctx.cut;
    let limit = cut.call_limit();
    // Hostile input is only refused for its own sake under settings the component accepts;
    // under refused settings every input would be refused, and the cases would prove nothing.
    let settings = ctx.example.clone();
    for (name, form) in hostile_inputs(SHAPED_FIELDS) {
        let Some(settings) = &settings else {
            runner.skip(&format!("hostile.notify.{name}"), NO_SETTINGS);
            continue;
        };
        runner
            .case(&format!("hostile.notify.{name}"), async {
                let (outcome, _) = timed(limit, cut.verify_notification(settings, &form)).await?;
                refused("notification", outcome, ctx.may_send_for_garbage)
            })
            .await;
    }
    runner
        .case("hostile.notify.no_settings", async {
            let form: Vec<(String, String)> = SHAPED_FIELDS
                .iter()
                .map(|k| ((*k).to_owned(), "1".to_owned()))
                .collect();
            let (outcome, _) = timed(limit, cut.verify_notification(&[], &form)).await?;
            refused("notification (with no settings at all)", outcome, false)
        })
        .await;
    for (name, query) in hostile_inputs(SHAPED_FIELDS) {
        let Some(settings) = &settings else {
            runner.skip(&format!("hostile.return.{name}"), NO_SETTINGS);
            continue;
        };
        runner
            .case(&format!("hostile.return.{name}"), async {
                let (outcome, _) = timed(limit, cut.verify_return(settings, &query)).await?;
                refused("return", outcome, false)
            })
            .await;
    }
}

/// The limits case: heavy calls (64 KiB in every setting, a 1 MiB return query) within the
/// component's limit, without a trap.
pub async fn limits_case(runner: &mut Runner, ctx: &Context<'_>, info: &PluginInfo) {
    let cut = ctx.cut;
    let limit = cut.call_limit();
    // A 1 MiB query under refused settings may be refused before it is read: without settings
    // the component accepts, only the validate-settings half runs (it needs none).
    let settings = ctx.example.clone();
    runner
        .case("limits.call_limit", async {
            let huge: Vec<(String, String)> = info
                .settings
                .iter()
                .map(|f| (f.name.clone(), "Z".repeat(64 << 10)))
                .collect();
            let (r, took) = timed(limit, cut.validate_settings(&huge)).await?;
            if let Err(errors) = &r {
                if let Some(trap) = errors.iter().find(|e| e.field.is_empty()) {
                    return Err(format!(
                        "validate-settings with 64 KiB in every setting trapped: {}",
                        trap.reason
                    )
                    .into());
                }
            }
            let mut took_return = std::time::Duration::ZERO;
            if let Some(settings) = &settings {
                let query = vec![("out_trade_no".to_owned(), "Q".repeat(1 << 20))];
                let (outcome, took) = timed(limit, cut.verify_return(settings, &query)).await?;
                if let CallOutcome::Trapped(why) = outcome {
                    return Err(format!("verify-return with a 1 MiB query trapped: {why}").into());
                }
                took_return = took;
            }
            ensure(took.max(took_return) <= limit, || {
                format!(
                    "a call took {} ms, over the limit of {} ms",
                    took.max(took_return).as_millis(),
                    limit.as_millis()
                )
            })
        })
        .await;
}

/// The schema's defaults, as settings.
pub fn defaults(info: &PluginInfo) -> Vec<(String, String)> {
    info.settings
        .iter()
        .filter_map(|f: &SettingField| f.default_value.clone().map(|d| (f.name.clone(), d)))
        .collect()
}

/// Whether a hostile input's outcome is a refusal.
fn refused(what: &str, outcome: CallOutcome, may_send: bool) -> Verdict {
    match outcome {
        CallOutcome::Refused(_) => Ok(()),
        CallOutcome::Verified => Err(format!("a hostile {what} was verified as genuine").into()),
        CallOutcome::Trapped(why) => Err(format!(
            "a hostile {what} trapped the component ({why}); it must be refused with an error"
        )
        .into()),
        CallOutcome::WantsToSend { url } if may_send && url.starts_with("http") => Ok(()),
        CallOutcome::WantsToSend { url } => Err(format!(
            "a hostile {what} made the component ask to send a request ({url}) instead of refusing it"
        )
        .into()),
    }
}

/// Runs one component call with the component's limit (plus slack): its result and how long it
/// took, or why it did not return in time.
pub async fn timed<T>(
    limit: Duration,
    call: impl Future<Output = T>,
) -> Result<(T, Duration), Stop> {
    let started = Instant::now();
    match tokio::time::timeout(limit + SLACK, call).await {
        Ok(v) => {
            let took = started.elapsed();
            if took > limit + SLACK {
                return Err(Stop::Fail(format!(
                    "the call took {} ms, over the component's limit of {} ms",
                    took.as_millis(),
                    limit.as_millis()
                )));
            }
            Ok((v, took))
        }
        Err(_) => Err(Stop::Fail(format!(
            "the call did not return within the component's limit of {} ms",
            limit.as_millis()
        ))),
    }
}

/// Every error names a field and a reason; an empty field is a trap.
fn well_formed(errors: &[FieldError]) -> Verdict {
    if let Some(trap) = errors.iter().find(|e| e.field.is_empty()) {
        return Err(format!("the call failed without naming a field: {}", trap.reason).into());
    }
    if errors.is_empty() {
        return Err("the settings were refused with no field named".into());
    }
    ensure(errors.iter().all(|e| !e.reason.trim().is_empty()), || {
        format!("an error gives no reason: {}", named(errors))
    })
}

fn verdict(problems: Vec<String>) -> Verdict {
    ensure(problems.is_empty(), || problems.join("; "))
}

fn named(errors: &[FieldError]) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors
        .iter()
        .map(|e| format!("{} ({})", e.field, e.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(settings: &Pairs) -> String {
    settings
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(names: &[&str]) -> String {
    match names {
        [one] => format!("{one} is"),
        many => format!("{} are", many.join(", ")),
    }
}
