//! An Alipay-shaped fake component (MD5 only, checked with the sandbox's wire code): the correct
//! one passes the contract and `alipay.*` cases; the one that skips the signature check fails
//! the `alipay.notify.*` cases that forge a signature (and the hostile notify whose garbage
//! happens to carry a notify_id). The host launcher fails here, so `host.started` fails with its
//! reason and the flow cases are skipped.

use payhost_conformance::{
    run_component, AskedRequest, BoxFuture, CallOutcome, ComponentUnderTest, FieldError, FlowStep,
    HostLauncher, KitAnswer, KitOrder, Options, Outcome, Pairs, PluginInfo, Report, RunningHost,
    SettingField, Validated,
};
use payhost_sandbox::wire::{self, Keys};
use std::time::Duration;

struct FakeAlipay {
    skips_signature_check: bool,
    /// Any HTTP 200 from notify_verify confirms a notify (not only `true`).
    confirms_any_200: bool,
}

fn field(
    name: &str,
    kind: &str,
    required: bool,
    options: &[&str],
    default: Option<&str>,
) -> SettingField {
    SettingField {
        name: name.into(),
        label_zh: format!("{name}（中文）"),
        label_en: name.into(),
        kind: kind.into(),
        required,
        secret: kind == "secret",
        rule: "as Alipay says".into(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        default_value: default.map(str::to_owned),
    }
}

const URLS: &[&str] = &[
    "gateway_url",
    "notify_verify_url",
    "paychannel_url",
    "mapi_url",
];

impl FakeAlipay {
    fn validate(&self, settings: &Pairs) -> Validated {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        let err = |f: &str, r: &str| FieldError {
            field: f.into(),
            reason: r.into(),
        };
        for (k, v) in settings {
            let v = v.trim();
            let ok = match k.as_str() {
                "partner" => {
                    v.len() == 16 && v.starts_with("2088") && v.bytes().all(|b| b.is_ascii_digit())
                }
                "key" => v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()),
                "seller_email" => v.contains('@'),
                "sign_type" => v == "MD5",
                k if URLS.contains(&k) => v.starts_with("http://") || v.starts_with("https://"),
                _ => {
                    errors.push(err(k, "is not a setting"));
                    continue;
                }
            };
            if ok {
                out.push((k.clone(), v.to_owned()));
            } else {
                errors.push(err(k, "is not valid"));
            }
        }
        for required in ["partner", "key"] {
            if !settings.iter().any(|(k, _)| k == required) {
                errors.push(err(required, "is required"));
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn setting(settings: &Pairs, name: &str) -> String {
        settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }
}

impl ComponentUnderTest for FakeAlipay {
    fn info(&self) -> BoxFuture<'_, Result<PluginInfo, String>> {
        let mut settings = vec![
            field("partner", "text", true, &[], None),
            field("key", "secret", false, &[], None),
            field("seller_email", "text", false, &[], None),
            field("sign_type", "select", false, &["MD5", "RSA"], Some("MD5")),
        ];
        settings.extend(URLS.iter().map(|u| field(u, "url", false, &[], None)));
        Box::pin(async move {
            Ok(PluginInfo {
                id: "alipay-fake".into(),
                name: "Fake Alipay".into(),
                version: "0.2.0".into(),
                provider: "alipay".into(),
                settings,
                notify_ack: "success".into(),
                notify_retry: "fail".into(),
            })
        })
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
            if let Err(e) = self.validate(settings) {
                return CallOutcome::Refused(format!("settings: {e:?}"));
            }
            let get = |k: &str| {
                form.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            let data = get("notify_data");
            let (Some(start), Some(end)) = (data.find("<notify_id>"), data.find("</notify_id>"))
            else {
                return CallOutcome::Refused("no notify_id".into());
            };
            if start + 11 > end {
                return CallOutcome::Refused("malformed".into());
            }
            let keys = Keys::Md5(Self::setting(settings, "key"));
            let presign = wire::presign_notify(get("service"), get("v"), get("sec_id"), data);
            if !self.skips_signature_check && !wire::verify_merchant(&keys, &presign, get("sign")) {
                return CallOutcome::Refused("bad signature".into());
            }
            CallOutcome::WantsToSend {
                url: format!(
                    "{}?service=notify_verify&notify_id={}",
                    Self::setting(settings, "notify_verify_url"),
                    &data[start + 11..end]
                ),
            }
        })
    }

    fn verify_return<'a>(
        &'a self,
        settings: &'a Pairs,
        query: &'a Pairs,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            if let Err(e) = self.validate(settings) {
                return CallOutcome::Refused(format!("settings: {e:?}"));
            }
            let sign = query
                .iter()
                .find(|(k, _)| k == "sign")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let keys = Keys::Md5(Self::setting(settings, "key"));
            if wire::verify_merchant(&keys, &wire::presign_sorted(query), sign) {
                CallOutcome::Verified
            } else {
                CallOutcome::Refused("bad signature".into())
            }
        })
    }

    fn call_limit(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// Like Alipay's desktop product: a signed redirect at once, no request.
    fn start_payment<'a>(
        &'a self,
        settings: &'a Pairs,
        order: &'a KitOrder,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async move {
            let fee = &order.total_fee;
            let two_places = fee.split_once('.').is_some_and(|(y, f)| {
                !y.is_empty()
                    && f.len() == 2
                    && (y.to_owned() + f).bytes().all(|b| b.is_ascii_digit())
            });
            if !two_places || fee.trim_start_matches(['0', '.']).is_empty() {
                return Some(FlowStep::Refused("invalid order: total_fee".into()));
            }
            Some(FlowStep::Done(format!(
                "{}?out_trade_no={}",
                Self::setting(settings, "gateway_url"),
                order.out_trade_no
            )))
        })
    }

    fn resume_payment<'a>(
        &'a self,
        _: &'a Pairs,
        _: &'a str,
        _: &'a KitAnswer,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async { Some(FlowStep::Refused("malformed continuation".into())) })
    }

    fn notification_step<'a>(
        &'a self,
        settings: &'a Pairs,
        form: &'a Pairs,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async move {
            Some(match self.verify_notification(settings, form).await {
                CallOutcome::WantsToSend { url } => FlowStep::Send {
                    request: AskedRequest {
                        method: "GET".into(),
                        url,
                        headers: vec![],
                        body: vec![],
                    },
                    continuation: "fake-notify".into(),
                },
                CallOutcome::Verified => FlowStep::Done("TRADE_SUCCESS".into()),
                CallOutcome::Refused(why) => FlowStep::Refused(why),
                CallOutcome::Trapped(why) => FlowStep::Trapped(why),
            })
        })
    }

    fn resume_notification<'a>(
        &'a self,
        _: &'a Pairs,
        continuation: &'a str,
        answer: &'a KitAnswer,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async move {
            if continuation != "fake-notify" {
                return Some(FlowStep::Refused("malformed continuation".into()));
            }
            Some(match answer {
                KitAnswer::Response { status: 200, .. } if self.confirms_any_200 => {
                    FlowStep::Done("TRADE_SUCCESS".into())
                }
                KitAnswer::Response {
                    status: 200, body, ..
                } if body.trim_ascii() == b"true" => FlowStep::Done("TRADE_SUCCESS".into()),
                other => FlowStep::Refused(format!("not confirmed: {other:?}")),
            })
        })
    }
}

struct NoHost;

impl HostLauncher for NoHost {
    fn start(&self, origins: Vec<String>) -> BoxFuture<'_, Result<RunningHost, String>> {
        Box::pin(async move {
            assert_eq!(origins.len(), 1, "the kit's one origin is allowed");
            assert!(origins[0].starts_with("http://127.0.0.1:"), "{origins:?}");
            Err("no host in this test".to_owned())
        })
    }
}

async fn run(skips_signature_check: bool) -> (Report, String) {
    run_fake(FakeAlipay {
        skips_signature_check,
        confirms_any_200: false,
    })
    .await
}

async fn run_fake(fake: FakeAlipay) -> (Report, String) {
    let report = run_component(&fake, &NoHost, &Options::default()).await;
    let mut out = Vec::new();
    report.print(&mut out).unwrap();
    (report, String::from_utf8(out).unwrap())
}

fn outcome<'a>(report: &'a Report, id: &str) -> &'a Outcome {
    &report
        .case(id)
        .unwrap_or_else(|| panic!("{id} did not run"))
        .outcome
}

#[tokio::test]
async fn a_correct_alipay_component_passes_its_signature_cases() {
    let (report, text) = run(false).await;
    for id in payhost_conformance::contract_cases()
        .iter()
        .map(String::as_str)
        .chain(payhost_conformance::ALIPAY_COMPONENT_CASES.iter().copied())
    {
        if id == "start.request_failures" {
            // Like Alipay's desktop product, its payments ask for nothing.
            assert_eq!(
                outcome(&report, id),
                &Outcome::Skipped(
                    "the example order asks for no request: there is nothing to fail".into()
                ),
                "{text}"
            );
            continue;
        }
        assert_eq!(outcome(&report, id), &Outcome::Passed, "{id}:\n{text}");
    }
    assert!(
        text.contains("\nFAIL host.started: no host in this test\n"),
        "{text}"
    );
    for id in payhost_conformance::FLOW_CASES {
        assert_eq!(
            outcome(&report, id),
            &Outcome::Skipped("needs host.started".into()),
            "{text}"
        );
    }
    assert_eq!(report.failed(), 1, "{text}");
}

#[tokio::test]
async fn skipping_the_signature_check_fails_the_forged_notify_cases() {
    let (report, text) = run(true).await;
    let failed: Vec<&str> = report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        failed,
        vec![
            // The bomb's document carries a notify_id, so the fake asks notify_verify about it.
            "hostile.notify.xml_bomb",
            "alipay.notify.wrong_key_refused",
            "alipay.notify.sorted_signature_refused",
            "alipay.notify.tampered_refused",
            "host.started",
        ],
        "{text}"
    );
    assert!(
        text.contains("FAIL alipay.notify.wrong_key_refused: a notify signed with another key was not refused: the component went on to ask http://127.0.0.1:"),
        "{text}"
    );
}

/// notify_verify's answer decides: a component that takes any HTTP 200 as a confirmation
/// (Alipay answers `false` with 200 for a notify it did not send) fails the one case for it.
#[tokio::test]
async fn confirming_without_true_fails_the_unconfirmed_case() {
    let (report, text) = run_fake(FakeAlipay {
        skips_signature_check: false,
        confirms_any_200: true,
    })
    .await;
    let failed: Vec<&str> = report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["alipay.notify.unconfirmed_refused", "host.started"],
        "{text}"
    );
    assert!(
        text.contains("FAIL alipay.notify.unconfirmed_refused: notify_verify answering false confirmed the notify: only a 200 whose body is true may; notify_verify answering an empty body confirmed"),
        "{text}"
    );
}
