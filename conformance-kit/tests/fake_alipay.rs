//! An Alipay-shaped fake component (MD5 only, checked with the sandbox's wire code): the correct
//! one passes the contract and `alipay.*` cases; the one that skips the signature check fails
//! the `alipay.notify.*` cases that forge a signature (and the hostile notify whose garbage
//! happens to carry a notify_id). The host launcher fails here, so `host.started` fails with its
//! reason and the flow cases are skipped.

use payhost_conformance::{
    run_component, BoxFuture, CallOutcome, ComponentUnderTest, FieldError, HostLauncher, Options,
    Outcome, Pairs, PluginInfo, Report, RunningHost, SettingField, Validated,
};
use payhost_sandbox::wire::{self, Keys};
use std::time::Duration;

struct FakeAlipay {
    skips_signature_check: bool,
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
    let report = run_component(
        &FakeAlipay {
            skips_signature_check,
        },
        &NoHost,
        &Options::default(),
    )
    .await;
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
