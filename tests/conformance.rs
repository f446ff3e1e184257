//! The conformance kit as vendors and plugin authors run it: the real `payhost conformance`
//! binary against both components (`--component`), against `payhost demo` and a `payhost serve`
//! (`--against`), and against a host whose component was built with a deliberately broken notify
//! check (it must fail, naming the case). The cases live in the kit (`conformance-kit/`); these
//! tests only run it and read its report.

use conformance::alipay::{self, AlipayStub, Trade};
use conformance::host::{
    config_head, free_port, get, payhost_binary, post_form, request, send_json, spawn_payhost,
    temp_dir, Payhost,
};
use conformance::{repo_root, target_dir};
use serde_json::json;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "conformance-operator-token-0123";

fn conformance(args: &[&str]) -> Output {
    Command::new(payhost_binary())
        .current_dir(repo_root())
        .arg("conformance")
        .args(args)
        .output()
        .expect("run payhost conformance")
}

/// The report's lines, checked for its shape: one line per case, `N passed, N failed` last.
fn report(out: &Output) -> (Vec<String>, usize, usize) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let last = lines.last().cloned().unwrap_or_default();
    let mut parts = last.split(", ");
    let count = |p: Option<&str>, what: &str| -> usize {
        let p = p.unwrap_or_else(|| panic!("no summary line: {stdout}"));
        p.strip_suffix(what)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("bad summary {last:?}: {stdout}"))
    };
    let passed = count(parts.next(), " passed");
    let failed = count(parts.next(), " failed");
    for l in &lines[..lines.len() - 1] {
        assert!(
            l.starts_with("ok ") || l.starts_with("FAIL ") || l.starts_with("skip "),
            "not a case line: {l:?}\n{stdout}"
        );
    }
    (lines, passed, failed)
}

fn passed_case(lines: &[String], id: &str) -> bool {
    lines
        .iter()
        .any(|l| l.starts_with("ok ") && l.split_whitespace().nth(1) == Some(id))
}

fn wasm(name: &str) -> String {
    target_dir()
        .join("wasm32-wasip2/release")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_alipay_component_passes_the_contract_and_every_flow() {
    let dir = temp_dir("conformance-alipay");
    let junit = dir.join("junit.xml");
    let out = conformance(&[
        "--component",
        &wasm("alipay_wap_plugin.wasm"),
        "--manifest",
        "plugin.toml",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let (lines, passed, failed) = report(&out);
    assert!(
        out.status.success() && failed == 0,
        "{}\n{}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [
        "describe.identity",
        "settings.empty_names_required",
        "limits.call_limit",
        "notify.paid_once",
        "notify.forged_refused",
        "webhooks.exactly_once",
    ] {
        assert!(
            passed_case(&lines, id),
            "{id} did not pass:\n{}",
            lines.join("\n")
        );
    }
    assert!(passed > 30, "{passed} cases");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite") && xml.contains("notify.paid_once"),
        "{xml}"
    );
    assert!(xml.contains("failures=\"0\""), "{xml}");
}

#[test]
fn testpay_passes_the_contract_with_and_without_its_manifest() {
    for manifest in [Some("tests/testpay/plugin.toml"), None] {
        let component = wasm("testpay_plugin.wasm");
        // Settings it accepts, so the settings cases run too (it has required ones).
        let mut args = vec![
            "--component",
            component.as_str(),
            "--setting",
            "merchant_no=M1",
            "--setting",
            "api_secret= testpay-secret-0123456789 ",
        ];
        if let Some(m) = manifest {
            args.extend(["--manifest", m]);
        }
        let out = conformance(&args);
        let (lines, passed, failed) = report(&out);
        assert!(
            out.status.success() && failed == 0,
            "{manifest:?}:\n{}\n{}",
            lines.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
        for id in [
            "settings.empty_names_required",
            "settings.example_accepted",
            "settings.trimmed",
            "settings.unknown_refused",
            "settings.garbage_refused",
        ] {
            assert!(passed_case(&lines, id), "{id}:\n{}", lines.join("\n"));
        }
        assert!(passed_case(&lines, "hostile.notify.no_settings") || passed > 10);
        // Its payment flow, driven by the kit: a redirect at once (TestPay asks for no request,
        // so there is nothing to fail), bad amounts and made-up continuations refused.
        for id in [
            "start.example_order",
            "start.bad_amounts_refused",
            "start.foreign_continuation_refused",
        ] {
            assert!(passed_case(&lines, id), "{id}:\n{}", lines.join("\n"));
        }
        assert!(
            lines.iter().any(|l| l
                == "skip start.request_failures: the example order asks for no request: there is nothing to fail"),
            "{}",
            lines.join("\n")
        );
        // No sandbox for this provider: the flow cases are skipped, said so, never "passed".
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("skip ") && l.contains("notify.paid_once")),
            "{}",
            lines.join("\n")
        );
    }
}

/// A vendor's own merchant settings for the Alipay component (`--setting`, as the README
/// invites): its example order goes to the real gateway, which the kit never calls, so a
/// refusal after that request is all the component can answer — not a failure blamed on "the
/// kit's sandbox merchant".
#[test]
fn the_alipay_component_with_the_vendors_own_settings_is_not_failed_for_them() {
    let out = conformance(&[
        "--component",
        &wasm("alipay_wap_plugin.wasm"),
        "--manifest",
        "plugin.toml",
        "--setting",
        "partner=2088101122136241",
        "--setting",
        "key=abcdefghijklmnopqrstuvwxyz012345",
        "--setting",
        "seller_email=seller@example.com",
    ]);
    let (lines, _, failed) = report(&out);
    assert!(
        out.status.success() && failed == 0,
        "{}\n{}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    for id in ["settings.example_accepted", "start.example_order"] {
        assert!(passed_case(&lines, id), "{id}:\n{}", lines.join("\n"));
    }
    assert!(
        !lines.iter().any(|l| l.contains("sandbox merchant")),
        "{}",
        lines.join("\n")
    );
}

/// Without settings it accepts, the cases that need them are skipped with the reason, never
/// passed under settings the component refuses (every input would be refused for them).
#[test]
fn cases_that_need_accepted_settings_are_skipped_without_them() {
    let out = conformance(&["--component", &wasm("testpay_plugin.wasm")]);
    let (lines, _, failed) = report(&out);
    assert!(out.status.success() && failed == 0, "{}", lines.join("\n"));
    for id in [
        "settings.example_accepted",
        "hostile.notify.garbage",
        "hostile.return.huge",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with("skip ")
                && l.contains(id)
                && l.contains("no settings the component accepts")),
            "{id} is not skipped:\n{}",
            lines.join("\n")
        );
    }
    // The skip names the flag that gives them, and the green run says last what it did not test.
    assert!(
        lines.iter().any(|l| l.contains("--setting NAME=VALUE")),
        "{}",
        lines.join("\n")
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every case that ran passed, but")
            && err.contains("of the cases asked for were not tested")
            && err.contains("skipped: no settings the component accepts"),
        "{err}"
    );
    // What needs no accepted settings runs: limits.call_limit's validate-settings half too.
    for id in ["hostile.notify.no_settings", "limits.call_limit"] {
        assert!(passed_case(&lines, id), "{id}: {}", lines.join("\n"));
    }
}

#[test]
fn a_component_whose_manifest_pins_another_build_is_refused() {
    // TestPay's file with the Alipay manifest: the pinned sha256 does not match.
    let out = conformance(&[
        "--component",
        &wasm("testpay_plugin.wasm"),
        "--manifest",
        "plugin.toml",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
    // The error names the user's manifest, never the kit's temporary copy of it.
    let out = conformance(&[
        "--component",
        &wasm("alipay_wap_plugin.wasm"),
        "--manifest",
        "tests/testpay/plugin.toml",
    ]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains("tests/testpay/plugin.toml") && !err.contains("payhost-conformance-"),
        "{err}"
    );
    let out = conformance(&[
        "--component",
        &wasm("alipay_wap_plugin.wasm"),
        "--manifest",
        "/nonexistent/plugin.toml",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr_of(&out).contains("cannot read the manifest /nonexistent/plugin.toml"),
        "{}",
        stderr_of(&out)
    );
    // A manifest of another name, at another contract version: named as the user named it,
    // in the kit's own words.
    let dir = temp_dir("conformance-not-whole");
    let renamed = dir.join("alipay-0.3.toml");
    let text = std::fs::read_to_string(repo_root().join("plugin.toml")).unwrap();
    assert!(
        text.contains("version = \"0.4.0\""),
        "the manifest's wit version moved"
    );
    std::fs::write(
        &renamed,
        text.replace("version = \"0.4.0\"", "version = \"0.3.0\""),
    )
    .unwrap();
    let out = conformance(&[
        "--component",
        &wasm("alipay_wap_plugin.wasm"),
        "--manifest",
        renamed.to_str().unwrap(),
    ]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
                "payhost conformance: {} says wit version 0.3.0, but the component exports payhost:payment/plugin@0.4.0",
                renamed.display()
            )),
        "{err}"
    );
    // Every problem of the user's manifest at once, the file named; and limits too small for
    // the component, named as the manifest's field.
    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        text.replace("version = \"0.4.0\"", "version = \"0.9.0\"")
            .replace("world = \"payment-plugin\"", "world = \"nope\""),
    )
    .unwrap();
    let small = dir.join("small.toml");
    assert!(
        text.contains("memory_mib = "),
        "the manifest's limits moved"
    );
    let small_text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("memory_mib = ") {
                "memory_mib = 1"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&small, small_text).unwrap();
    for (manifest, said) in [
        (
            &wrong,
            vec![
                format!("{} is not a usable plugin manifest: 2 problem(s)", wrong.display()),
                "wit.world is \"nope\"; every version of payhost:payment has one world, payment-plugin".to_owned(),
                "wit.version 0.9.0 is not supported".to_owned(),
            ],
        ),
        (
            &small,
            vec![format!(
                "needs more memory than {} allows (limits.memory_mib = 1): raise it",
                small.display()
            )],
        ),
    ] {
        let out = conformance(&[
            "--component",
            &wasm("alipay_wap_plugin.wasm"),
            "--manifest",
            manifest.to_str().unwrap(),
        ]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        for s in said {
            assert!(err.contains(&s), "{s}: {err}");
        }
    }
    // A file cut short, and a core module, each said as what it is.
    let whole = std::fs::read(wasm("alipay_wap_plugin.wasm")).unwrap();
    let cut = dir.join("cut.wasm");
    std::fs::write(&cut, &whole[..whole.len() / 10]).unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    for (file, said) in [
        (&cut, "does not compile: is it whole?"),
        (&core, "is a core WebAssembly module, not a component"),
    ] {
        let out = conformance(&["--component", file.to_str().unwrap()]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(said) && err.contains(file.to_str().unwrap()),
            "{err}"
        );
    }
}

#[test]
fn the_flow_suite_passes_against_payhost_demo() {
    let dir = temp_dir("conformance-demo");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let demo = spawn_payhost(
        &dir,
        &["demo", "--api-token", TOKEN, "--allow-origin", &origin],
    );
    let out = conformance(&[
        "--against",
        &demo.base,
        "--token",
        TOKEN,
        "--sandbox-listen",
        &format!("127.0.0.1:{kit_port}"),
    ]);
    let (lines, _, failed) = report(&out);
    assert!(
        out.status.success() && failed == 0,
        "{}\n{}",
        lines.join("\n"),
        std::fs::read_to_string(&demo.log).unwrap_or_default()
    );
    assert!(passed_case(&lines, "notify.replayed_once"));
    // The demo fills in its sandbox's legacy URLs for merchants saved through the API; an
    // open-platform merchant is saved without them.
    assert!(
        passed_case(&lines, "openapi.merchant.configured")
            && passed_case(&lines, "openapi.sync.lost_notify_recovered"),
        "{}",
        lines.join("\n")
    );
    for id in BACK_OFFICE_CASES {
        assert!(passed_case(&lines, id), "{id}:\n{}", lines.join("\n"));
    }
}

/// The kit's cases of the back-office routes (refunds, close, reconciliation).
const BACK_OFFICE_CASES: [&str; 3] = [
    "openapi.refund.partial_once",
    "openapi.close.unpaid_only",
    "openapi.bill.reconciled",
];

/// A reverse proxy on loopback in front of `upstream` that plays an older payhost: the
/// back-office routes (`…/refunds`, `…/close`, `…/reconciliation`) are answered as payhost
/// answers a route it does not have (`404 not_found`); everything else is passed on.
fn older_host_proxy(rt: &tokio::runtime::Runtime, upstream: String) -> String {
    proxy(rt, upstream, |method, path| {
        let hidden = path.starts_with("/v1/merchants/")
            && (path.ends_with("/refunds")
                || path.ends_with("/close")
                || path.ends_with("/reconciliation"));
        hidden.then(|| {
            let e = json!({"error": {"code": "not_found", "message": format!("no route {method} {path}")}});
            (404, e)
        })
    })
}

/// What a test proxy answers itself (status, JSON body) for a method and path; `None` passes
/// the request on.
type Intercept = fn(&str, &str) -> Option<(u16, serde_json::Value)>;

/// A reverse proxy on loopback in front of `upstream`: `intercept` answers some requests itself.
fn proxy(rt: &tokio::runtime::Runtime, upstream: String, intercept: Intercept) -> String {
    use http_body_util::{BodyExt, Full};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let upstream = upstream.clone();
                        async move {
                            let method = req.method().to_string();
                            let target = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default();
                            let path = req.uri().path().to_owned();
                            let headers: Vec<(String, String)> = req
                                .headers()
                                .iter()
                                .filter(|(k, _)| {
                                    !matches!(
                                        k.as_str(),
                                        "host"
                                            | "content-length"
                                            | "transfer-encoding"
                                            | "connection"
                                    )
                                })
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let answer = if let Some((status, e)) = intercept(&method, &path) {
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(bytes::Bytes::from(e.to_string())))
                                    .unwrap()
                            } else {
                                let headers: Vec<(&str, &str)> = headers
                                    .iter()
                                    .map(|(k, v)| (k.as_str(), v.as_str()))
                                    .collect();
                                let r = request(
                                    &method,
                                    &format!("{upstream}{target}"),
                                    &headers,
                                    body.to_vec(),
                                )
                                .await;
                                let mut answer = hyper::Response::builder().status(r.status);
                                for (k, v) in &r.headers {
                                    if !matches!(
                                        k.as_str(),
                                        "content-length" | "transfer-encoding" | "connection"
                                    ) {
                                        answer = answer.header(k, v);
                                    }
                                }
                                answer.body(Full::new(bytes::Bytes::from(r.body))).unwrap()
                            };
                            Ok::<_, std::convert::Infallible>(answer)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    base
}

#[test]
fn a_host_without_the_back_office_routes_has_those_cases_skipped_with_the_reason() {
    let dir = temp_dir("conformance-older-host");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let host = serve(&dir, &repo_root().join("plugin.toml"), &origin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let older = older_host_proxy(&rt, host.url(""));
    let out = conformance(&[
        "--against",
        &older,
        "--token",
        TOKEN,
        "--sandbox-listen",
        &format!("127.0.0.1:{kit_port}"),
        "--only",
        "openapi.",
    ]);
    let (lines, passed, failed) = report(&out);
    assert!(
        out.status.success() && failed == 0 && passed > 0,
        "{}\n{}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    for id in BACK_OFFICE_CASES {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("skip {id}: "))
                && l.contains("no such route")
                && l.contains("404")),
            "{id} is not skipped with the reason:\n{}",
            lines.join("\n")
        );
    }
    // The rest of the open-platform cases ran and passed through the proxy.
    assert!(
        passed_case(&lines, "openapi.sync.lost_notify_recovered"),
        "{}",
        lines.join("\n")
    );
}

/// A `payhost serve` whose operator allowed the kit's origin, with `manifest` as its component.
fn serve(dir: &Path, manifest: &Path, kit_origin: &str) -> Payhost {
    let port = free_port();
    let config = config_head(port, TOKEN, "").replace(
        &format!(
            "manifest = \"{}\"",
            repo_root().join("plugin.toml").display()
        ),
        &format!("manifest = \"{}\"", manifest.display()),
    ) + &format!("\n[outbound]\nallowed_origins = [\"{kit_origin}\"]\n");
    Payhost::start(dir, &config)
}

/// A `payhost serve` of the Alipay component in a new folder `name` that allows the kit's
/// sandbox on a free port: the host, and that address for `--sandbox-listen`.
fn serve_for_kit(name: &str) -> (Payhost, String) {
    let dir = temp_dir(name);
    let kit_port = free_port();
    let host = serve(
        &dir,
        &repo_root().join("plugin.toml"),
        &format!("http://127.0.0.1:{kit_port}"),
    );
    (host, format!("127.0.0.1:{kit_port}"))
}

/// A host that does not allow the kit's sandbox (the default `--sandbox-listen` is a new port
/// each run) is a set-up problem: exit 2 with what to do, the host's words whole.
#[test]
fn a_host_that_refuses_the_kits_sandbox_is_a_run_that_could_not_start() {
    let (host, allowed) = serve_for_kit("conformance-origin-refused");
    // A port other than the allowed one, named: a port the kit picked itself could be the one
    // just freed for the host's allowed origin.
    let other = loop {
        let p = format!("127.0.0.1:{}", free_port());
        if p != allowed {
            break p;
        }
    };
    let out = conformance(&[
        "--against",
        &host.url(""),
        "--token",
        TOKEN,
        "--sandbox-listen",
        &other,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("payhost conformance: the host refused the kit's merchant")
            && err.contains("allowed_origins")
            && err.contains("--sandbox-listen")
            && !err.contains("…"),
        "{err}"
    );
    // Said once, not once per URL setting the host named; and a set-up problem is no case's
    // failure (a CI report would show a red case for it).
    // The host's reason once (it gives one per URL setting), then the kit's hint.
    let kit_origin = format!("http://{other}");
    assert!(
        err.contains(&format!(
            "point at {kit_origin}, an origin the host does not allow"
        )) && err.matches(kit_origin.as_str()).count() <= 6,
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("FAIL "), "{stdout}");
    assert!(
        stdout.lines().any(|l| l
            .starts_with("skip merchant.configured: the host does not let the kit's sandbox in")),
        "{stdout}"
    );
    // Nothing was left behind.
    assert_eq!(merchant_status(&host, "conformance"), 404);
}

#[test]
fn the_flow_suite_passes_against_payhost_serve_and_names_the_case_a_broken_host_fails() {
    // A correct host.
    let dir = temp_dir("conformance-serve");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let listen = format!("127.0.0.1:{kit_port}");
    let host = serve(&dir, &repo_root().join("plugin.toml"), &origin);
    let out = conformance(&[
        "--against",
        &host.url(""),
        "--token",
        TOKEN,
        "--sandbox-listen",
        &listen,
    ]);
    let (lines, _, failed) = report(&out);
    assert!(out.status.success() && failed == 0, "{}", lines.join("\n"));
    // The open-platform cases ran too (the kit's own APPID and RSA2 keys, its sandbox as gateway).
    for id in [
        "openapi.settings.app_id_refused",
        "openapi.settings.own_public_key_refused",
        "openapi.settings.bad_private_key_refused",
        "openapi.merchant.configured",
        "openapi.pay.products",
        "openapi.notify.forged_refused",
        "openapi.notify.paid_once",
        "openapi.notify.partial_refund_not_a_payment",
        "openapi.sync.lost_notify_recovered",
    ] {
        assert!(passed_case(&lines, id), "{id}:\n{}", lines.join("\n"));
    }
    // The back office through the host (refund, close, the day's reconciliation against the
    // kit's bill): payhost has the routes and its component contract 0.4.0, so they run and pass.
    for id in BACK_OFFICE_CASES {
        assert!(passed_case(&lines, id), "{id}:\n{}", lines.join("\n"));
    }
    // It removed what it made, test payments and all.
    for id in ["conformance", "conformance-rsa", "conformance-openapi"] {
        assert_eq!(merchant_status(&host, id), 404, "{id} was left behind");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "removed merchant(s) conformance, conformance-rsa, conformance-openapi and their test payments"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(host);

    // The same host with the Alipay component built to accept any notify signature
    // (`--features conformance-broken-notify-check`, built by scripts/test): its manifest is
    // pinned here to that build.
    let broken_dir = temp_dir("conformance-broken");
    let broken_wasm =
        target_dir().join("broken-notify/wasm32-wasip2/release/alipay_wap_plugin.wasm");
    assert!(
        broken_wasm.exists(),
        "build it first (scripts/test does): {}",
        broken_wasm.display()
    );
    let text =
        std::fs::read_to_string(repo_root().join("tests/broken-notify/plugin.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    table["component"]
        .as_table_mut()
        .unwrap()
        .insert("path".into(), broken_wasm.display().to_string().into());
    let manifest = broken_dir.join("plugin.toml");
    std::fs::write(&manifest, toml::to_string(&table).unwrap()).unwrap();
    let pin = Command::new(payhost_binary())
        .args(["pin-component", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(pin.status.success(), "{pin:?}");
    let kit_port = free_port();
    let broken = serve(
        &broken_dir,
        &manifest,
        &format!("http://127.0.0.1:{kit_port}"),
    );
    let out = conformance(&[
        "--against",
        &broken.url(""),
        "--token",
        TOKEN,
        "--sandbox-listen",
        &format!("127.0.0.1:{kit_port}"),
    ]);
    let (lines, _, failed) = report(&out);
    assert_eq!(out.status.code(), Some(1), "{}", lines.join("\n"));
    assert!(failed >= 1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FAIL notify.forged_refused")
                && l.contains("is now TRADE_SUCCESS")
                && l.contains("verify-notification")),
        "the broken notify check is named, with what it did to the order and where to look:\n{}",
        lines.join("\n")
    );
}

/// The flow suite against `host` with its sandbox on `kit_port`, only the cases `only`.
fn kit_against(host: &Payhost, kit_port: u16, only: &[&str]) -> Output {
    let url = host.url("");
    let listen = format!("127.0.0.1:{kit_port}");
    let mut args = vec![
        "--against",
        url.as_str(),
        "--token",
        TOKEN,
        "--sandbox-listen",
        listen.as_str(),
    ];
    for id in only {
        args.extend(["--only", id]);
    }
    conformance(&args)
}

/// A host whose rate limit answers every notify `429` has not refused anything itself: the
/// cases that expect a refusal fail, saying it was a rate limit and which limits to raise. (A
/// proxy in front plays the limit: the host's `public_url` is the proxy, so the notify URLs in
/// its trades lead there.)
#[test]
fn refusals_by_a_rate_limit_prove_nothing() {
    let dir = temp_dir("conformance-limited");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let port = free_port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let limited = proxy(&rt, format!("http://127.0.0.1:{port}"), |method, path| {
        (method == "POST" && path.starts_with("/notify/")).then(|| {
            let e = json!({"error": {"code": "rate_limited", "message": "too many notifies"}});
            (429, e)
        })
    });
    let config = config_head(port, TOKEN, "").replace(
        &format!("public_url = \"http://127.0.0.1:{port}\""),
        &format!("public_url = \"{limited}\""),
    ) + &format!("\n[outbound]\nallowed_origins = [\"{origin}\"]\n");
    let host = Payhost::start(&dir, &config);
    let out = kit_against(
        &host,
        kit_port,
        &[
            "merchant.configured",
            "notify.amount_mismatch_not_paid",
            "notify.unconfirmed_not_paid",
            "payment.created",
            "notify.paid_once",
        ],
    );
    let (lines, _, _) = report(&out);
    let all = lines.join("\n");
    // An order that is not paid says what the host answered the sandbox's notify.
    assert!(
        lines.iter().any(|l| l.starts_with("FAIL notify.paid_once")
            && l.contains("HTTP 429")
            && l.contains("notify_per_ip_per_s")),
        "notify.paid_once names the rate limit:\n{all}"
    );
    for id in [
        "notify.amount_mismatch_not_paid",
        "notify.unconfirmed_not_paid",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("FAIL {id}")) && l.contains("notify_per_ip_per_s")),
            "{id} fails, naming the limits:\n{all}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(out.status.code(), Some(1), "{all}");
}

/// A host whose notify limit stops a case after its order was paid (the replays of
/// `notify.replayed_once` answered 429): that case fails naming the limit, and the order's one
/// webhook is counted as owed, not reported as a webhook for an order nobody paid.
#[test]
fn an_order_paid_by_a_case_a_rate_limit_stopped_is_owed_its_one_webhook() {
    let dir = temp_dir("conformance-limited-replays");
    let kit_port = free_port();
    let port = free_port();
    let config = config_head(port, TOKEN, "")
        + &format!(
            "\n[outbound]\nallowed_origins = [\"http://127.0.0.1:{kit_port}\"]\n\n[limits]\nnotify_per_ip_per_s = 1\nnotify_per_merchant_per_s = 1\n"
        );
    let host = Payhost::start(&dir, &config);
    let out = kit_against(
        &host,
        kit_port,
        &[
            "merchant.configured",
            "notify.replayed_once",
            "webhooks.exactly_once",
        ],
    );
    let (lines, _, _) = report(&out);
    let all = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FAIL notify.replayed_once") && l.contains("HTTP 429")),
        "{all}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(passed_case(&lines, "webhooks.exactly_once"), "{all}");
    assert!(!all.contains("nobody paid"), "{all}");
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `GET /v1/merchants/{id}`'s status on `host`.
fn merchant_status(host: &Payhost, id: &str) -> u16 {
    block(get(&host.url(&format!("/v1/merchants/{id}")), Some(TOKEN))).status
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits for the child (killing it after `limit`); its status and stderr.
fn finish_within(
    mut child: std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("payhost conformance did not exit within {limit:?} after its output was closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn list_prints_every_case_with_what_it_checks() {
    let out = conformance(&["--list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let id = words.next().unwrap_or_default();
            assert!(words.count() >= 2, "no description: {l:?}");
            id
        })
        .collect();
    assert!(ids.len() > 40, "{text}");
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a case is listed twice:\n{text}");
    for id in [
        "describe.call",
        "settings.trimmed",
        "hostile.notify.xml_bomb",
        "hostile.return.deep_xml",
        "limits.call_limit",
        "alipay.return.tampered_refused",
        "host.started",
        "merchant.configured",
        "notify.paid_once",
        "sync.lost_notify_recovered",
        "openapi.settings.app_id_refused",
        "openapi.settings.own_public_key_refused",
        "openapi.pay.products",
        "openapi.notify.paid_once",
        "openapi.notify.partial_refund_not_a_payment",
        "openapi.sync.lost_notify_recovered",
        "webhooks.exactly_once",
    ] {
        assert!(ids.contains(&id), "{id} is not listed:\n{text}");
    }
    assert_eq!(ids.last(), Some(&"webhooks.exactly_once"), "{text}");
    // An open-platform case pulls in the open-platform merchant and the order it pays.
    let out = conformance(&[
        "--list",
        "--only",
        "openapi.notify.partial_refund_not_a_payment",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        ids,
        [
            "describe.call",
            "host.started",
            "merchant.configured",
            "openapi.merchant.configured",
            "openapi.pay.products",
            "openapi.notify.paid_once",
            "openapi.notify.partial_refund_not_a_payment",
        ],
        "{text}"
    );
    // With a selection: the cases that would run, what they need included, in order.
    let out = conformance(&["--list", "--only", "notify.paid_once"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        ids,
        [
            "describe.call",
            "host.started",
            "merchant.configured",
            "payment.created",
            "notify.paid_once"
        ],
        "{text}"
    );
    let out = conformance(&[
        "--list",
        "--only",
        "notify.",
        "--skip",
        "notify.oversized_413",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("notify.forged_refused") && !text.contains("notify.oversized_413"));
    assert!(
        !text.contains("hostile.notify"),
        "a prefix is of whole parts:\n{text}"
    );
}

/// `--list --against URL` contacts nothing, so it needs no token; a run against a host does, and
/// says so naming the flag and the environment variable.
#[test]
fn listing_the_flow_cases_needs_no_token_and_a_run_does() {
    let out = conformance(&["--list", "--against", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("notify.paid_once"));
    let out = std::process::Command::new(payhost_binary())
        .args(["conformance", "--against", "http://127.0.0.1:1"])
        .env_remove("PAYHOST_CONFORMANCE_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--against needs --token") && err.contains("PAYHOST_CONFORMANCE_TOKEN"),
        "{err}"
    );
}

#[test]
fn help_tells_the_exit_codes_and_the_clean_up() {
    let out = conformance(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Exit status:",
        "0  every case that ran passed",
        "1  a case failed",
        "2  the run could not start",
        "cannot be reached",
        "3  nothing was tested",
        "--keep",
        "--list",
        "--only <NAME>...",
        "--skip <NAME>...",
        "DELETE /v1/merchants/{id}?purge=test",
        "<merchant>-openapi",
        "<ID>-openapi",
        "did not make it",
        "130",
    ] {
        assert!(text.contains(want), "--help does not say {want:?}:\n{text}");
    }
}

#[test]
fn case_names_that_match_no_case_are_refused_with_exit_2() {
    let testpay = wasm("testpay_plugin.wasm");
    for (args, name) in [
        (vec!["--list", "--only", "notify.nope"], "notify.nope"),
        (
            vec![
                "--component",
                testpay.as_str(),
                "--skip",
                "describe.call",
                "nope",
            ],
            "nope",
        ),
    ] {
        let out = conformance(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr_of(&out);
        assert!(err.contains(&format!("\"{name}\"")), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
}

#[test]
fn an_unreachable_host_is_exit_2_with_one_line_saying_which_url_and_how() {
    let started = Instant::now();
    let out = conformance(&["--against", "http://127.0.0.1:1", "--token", TOKEN]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr_of(&out).trim(),
        "payhost conformance: cannot reach http://127.0.0.1:1/ (connection refused)"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Without a scheme: the line says what to write.
    let out = conformance(&["--against", "127.0.0.1:1", "--token", TOKEN]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr_of(&out).contains("--against 127.0.0.1:1: give the host's URL with its scheme, such as http://127.0.0.1:1"),
        "{out:?}"
    );
}

#[test]
fn a_run_where_no_selected_case_passed_is_not_green() {
    // TestPay has no sandbox: the flow case is skipped (only describe.call, which it needs,
    // runs and passes), so nothing that was asked for was tested.
    let out = conformance(&[
        "--component",
        &wasm("testpay_plugin.wasm"),
        "--only",
        "notify.paid_once",
    ]);
    let (lines, _, failed) = report(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        lines.join("\n"),
        stderr_of(&out)
    );
    assert_eq!(failed, 0);
    assert!(
        lines.iter().any(|l| l.starts_with("skip notify.paid_once")),
        "{}",
        lines.join("\n")
    );
    assert!(
        stderr_of(&out).contains("nothing was tested"),
        "{}",
        stderr_of(&out)
    );
    // The same cases with something that does run and pass: green.
    let out = conformance(&[
        "--component",
        &wasm("testpay_plugin.wasm"),
        "--only",
        "notify.paid_once",
        "describe.identity",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_closed_output_ends_the_run_quietly_and_it_still_cleans_up() {
    // Nobody ever reads: every write fails.
    let mut child = Command::new(payhost_binary())
        .current_dir(repo_root())
        .args(["conformance", "--component", &wasm("testpay_plugin.wasm")])
        .args([
            "--setting",
            "merchant_no=M1",
            "--setting",
            "api_secret=testpay-secret-0123456789",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let (status, err) = finish_within(child, Duration::from_secs(60));
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // `… --against URL | head -1` against a host: one line is read, then the pipe closes.
    let dir = temp_dir("conformance-pipe");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let listen = format!("127.0.0.1:{kit_port}");
    let host = serve(&dir, &repo_root().join("plugin.toml"), &origin);
    let head_1 = |extra: &[&str]| {
        let mut child = Command::new(payhost_binary())
            .current_dir(repo_root())
            .args(["conformance", "--against", &host.url(""), "--token", TOKEN])
            .args(["--sandbox-listen", &listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.starts_with("ok ") || first.starts_with("FAIL "),
            "{first:?}"
        );
        let closed = Instant::now();
        let (status, err) = finish_within(child, Duration::from_secs(60));
        assert!(status.success(), "{status:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            // A whole run takes far longer; 12 s leaves room for a loaded machine (cleaning up
            // calls the host) without letting a run that ignores the closed pipe pass.
            closed.elapsed() < Duration::from_secs(12),
            "it went on for {:?} after its output was closed: {err}",
            closed.elapsed()
        );
        err
    };
    // Kept: the run stopped long before the RSA merchant (a later case) was made.
    head_1(&["--keep"]);
    assert_eq!(merchant_status(&host, "conformance-rsa"), 404);
    // Not kept: what it made (and what the run before kept) is removed even after a stop;
    // its JUnit report says it is partial.
    let junit = dir.join("closed.xml");
    head_1(&["--junit", junit.to_str().unwrap()]);
    assert_eq!(merchant_status(&host, "conformance"), 404);
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit.contains("name=\"kit.stopped\"")
            && junit.contains("the output was closed: the run was stopped before every case ran ("),
        "{junit}"
    );
}

#[test]
fn the_kit_removes_its_merchants_and_test_payments_unless_kept() {
    let dir = temp_dir("conformance-keep");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let listen = format!("127.0.0.1:{kit_port}");
    let host = serve(&dir, &repo_root().join("plugin.toml"), &origin);
    let base = host.url("");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--against",
            base.as_str(),
            "--token",
            TOKEN,
            "--sandbox-listen",
            listen.as_str(),
            "--only",
            "notify.paid_once",
            "rsa.paid_once",
        ];
        args.extend_from_slice(extra);
        conformance(&args)
    };
    let out = run(&["--keep"]);
    let (lines, _, failed) = report(&out);
    assert!(
        out.status.success() && failed == 0,
        "{}\n{}",
        lines.join("\n"),
        stderr_of(&out)
    );
    assert!(passed_case(&lines, "notify.paid_once") && passed_case(&lines, "rsa.paid_once"));
    assert!(
        !lines.iter().any(|l| l.contains("notify.replayed_once")),
        "not selected"
    );
    for id in ["conformance", "conformance-rsa"] {
        assert_eq!(merchant_status(&host, id), 200, "{id} was not kept");
    }
    assert!(stderr_of(&out).contains("kept merchant(s) conformance, conformance-rsa"));

    let out = run(&[]);
    let (lines, _, failed) = report(&out);
    assert!(
        out.status.success() && failed == 0,
        "{}\n{}",
        lines.join("\n"),
        stderr_of(&out)
    );
    for id in ["conformance", "conformance-rsa"] {
        assert_eq!(merchant_status(&host, id), 404, "{id} was left behind");
    }

    // A token the host does not take: the run cannot start.
    let out = conformance(&[
        "--against",
        &host.url(""),
        "--token",
        "not-the-operator-token",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr_of(&out).contains("refused the token"),
        "{}",
        stderr_of(&out)
    );
}

const PARTNER: &str = "2088101122136241";
const MD5_KEY: &str = "0123456789abcdef0123456789abcdef";

/// `DELETE /v1/merchants/{id}`: the kit's clean-up route. A merchant's money records never go
/// with it unless it is a test merchant and the operator says `?purge=test`.
#[test]
fn deleting_a_merchant_keeps_money_records() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A sandbox the operator allowed: it answers notify_verify for the ids it issued.
    let stub = rt.block_on(AlipayStub::start());
    let sandbox = stub.verify_url().trim_end_matches("/gateway.do").to_owned();
    let dir = temp_dir("merchant-delete");
    let port = free_port();
    let config = config_head(port, TOKEN, "")
        + &format!(
            "\n[outbound]\nallowed_origins = [\"{sandbox}\"]\n\n[merchants.shop]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"shop@example.com\"\n"
        );
    let host = Payhost::start(&dir, &config);
    let v1 = |path: &str| host.url(&format!("/v1{path}"));
    rt.block_on(async {
        let delete = |path: String, token: &'static str| async move {
            let auth = format!("Bearer {token}");
            request(
                "DELETE",
                &path,
                &[("authorization", auth.as_str())],
                Vec::new(),
            )
            .await
        };
        let put = |id: &str, urls: Option<&str>| {
            let mut body =
                json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": "s@example.com"});
            if let Some(u) = urls {
                for k in [
                    "gateway_url",
                    "notify_verify_url",
                    "paychannel_url",
                    "mapi_url",
                ] {
                    body[k] = json!(format!("{u}/gateway.do"));
                }
            }
            let url = v1(&format!("/merchants/{id}"));
            async move { send_json("PUT", &url, Some(TOKEN), &body).await }
        };
        let pc_order = |id: &str, no: &str| {
            let url = v1(&format!("/merchants/{id}/payments"));
            let body = json!({"out_trade_no": no, "subject": "s", "total_fee": "9.99",
                    "return_url": "https://shop.example/r", "product": "pc"});
            async move { send_json("POST", &url, Some(TOKEN), &body).await }
        };

        // From payhost.toml: it would come back at the next start.
        let r = delete(v1("/merchants/shop"), TOKEN).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "merchant_in_config");

        // No payments: removed with its tokens.
        assert_eq!(put("empty", None).await.status, 200);
        let t = send_json(
            "POST",
            &v1("/merchants/empty/tokens"),
            Some(TOKEN),
            &json!({}),
        )
        .await;
        let merchant_token: &'static str = Box::leak(
            t.json()["token"]
                .as_str()
                .unwrap()
                .to_owned()
                .into_boxed_str(),
        );
        let r = delete(v1("/merchants/empty"), merchant_token).await;
        assert_eq!(
            r.status,
            403,
            "only the operator removes merchants: {}",
            r.text()
        );
        let r = delete(v1("/merchants/empty?purge=everything"), TOKEN).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["field"], "purge");
        let r = delete(v1("/merchants/empty"), TOKEN).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["removed"], true);
        assert_eq!(get(&v1("/merchants/empty"), Some(TOKEN)).await.status, 404);
        let r = get(&v1("/merchants/empty/notifications"), Some(merchant_token)).await;
        assert_eq!(r.status, 401, "its token died with it: {}", r.text());
        assert_eq!(delete(v1("/merchants/empty"), TOKEN).await.status, 404);

        // The real provider (the component's default URLs) and an order: it stays, purge or not.
        assert_eq!(put("real", None).await.status, 200);
        let r = pc_order("real", "R-1").await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = delete(v1("/merchants/real"), TOKEN).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "merchant_has_payments");
        assert!(r.text().contains("purge=test"), "{}", r.text());
        let r = delete(v1("/merchants/real?purge=test"), TOKEN).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "not_a_test_merchant");
        assert!(
            r.text().contains("allowed_origins"),
            "says why: {}",
            r.text()
        );
        assert_eq!(get(&v1("/merchants/real"), Some(TOKEN)).await.status, 200);
        let p = get(&v1("/merchants/real/payments/R-1"), Some(TOKEN)).await;
        assert_eq!(p.status, 200, "{}", p.text());

        // A sandbox merchant (every provider URL on the operator's allowed origin): its test
        // payments go with it, but only when asked.
        assert_eq!(put("sandboxed", Some(&sandbox)).await.status, 200);
        assert_eq!(pc_order("sandboxed", "S-1").await.status, 201);
        let r = delete(v1("/merchants/sandboxed"), TOKEN).await;
        assert_eq!(r.status, 409, "{}", r.text());
        let r = delete(v1("/merchants/sandboxed?purge=test"), TOKEN).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["payments_removed"], 1);
        assert_eq!(
            get(&v1("/merchants/sandboxed"), Some(TOKEN)).await.status,
            404
        );
        let p = get(&v1("/merchants/sandboxed/payments/S-1"), Some(TOKEN)).await;
        assert_eq!(p.status, 404, "{}", p.text());

        // Sandbox URLs, but an order paid at the real provider's cashier (its PC pay goes to the
        // default mapi_url): real money, so the merchant stays.
        let body = json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": "s@example.com",
            "gateway_url": stub.gateway_url(), "notify_verify_url": stub.verify_url()});
        let r = send_json("PUT", &v1("/merchants/mixed"), Some(TOKEN), &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = pc_order("mixed", "M-1").await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(
            r.json()["pay_url"]
                .as_str()
                .unwrap()
                .starts_with("https://mapi.alipay.com/"),
            "{}",
            r.text()
        );
        // Waiting at the real cashier: it could be paid while the removal runs, so it keeps the
        // merchant too.
        let r = delete(v1("/merchants/mixed?purge=test"), TOKEN).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(
            r.text().contains("order M-1 is waiting for payment")
                && r.text().contains("provider's own host"),
            "{}",
            r.text()
        );
        stub.issue("nid-m1");
        let notify = alipay::md5_notify_body(
            &Trade {
                out_trade_no: "M-1",
                total_fee: "9.99",
                notify_id: "nid-m1",
                seller_email: "s@example.com",
                seller_id: PARTNER,
                trade_status: "TRADE_SUCCESS",
            },
            MD5_KEY,
        );
        let r = post_form(&host.url("/notify/mixed"), &notify).await;
        assert_eq!(r.text().trim(), "success", "{}", r.text());
        let p = get(&v1("/merchants/mixed/payments/M-1"), Some(TOKEN)).await;
        assert_eq!(p.json()["status"], "TRADE_SUCCESS", "{}", p.text());
        let r = delete(v1("/merchants/mixed?purge=test"), TOKEN).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "not_a_test_merchant");
        assert!(
            r.text().contains("order M-1 was paid") && r.text().contains("provider's own host"),
            "{}",
            r.text()
        );
        assert_eq!(
            get(&v1("/merchants/mixed/payments/M-1"), Some(TOKEN))
                .await
                .status,
            200
        );
    });
}

/// `PUT /v1/merchants/{id}` on `host` as its operator.
fn put_merchant(host: &Payhost, id: &str, body: &serde_json::Value) -> u16 {
    let url = host.url(&format!("/v1/merchants/{id}"));
    block(send_json("PUT", &url, Some(TOKEN), body)).status
}

/// `GET /v1/merchants/{id}` on `host`: its status and JSON.
fn merchant_json(host: &Payhost, id: &str) -> (u16, serde_json::Value) {
    let r = block(get(&host.url(&format!("/v1/merchants/{id}")), Some(TOKEN)));
    (r.status, r.json())
}

/// A shop's own merchant (the real provider's URLs: the component's defaults).
fn shop_settings() -> serde_json::Value {
    json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": "shop@example.com"})
}

#[test]
fn the_kit_refuses_to_touch_merchants_it_did_not_make() {
    let (host, listen) = serve_for_kit("conformance-foreign");
    let theirs = ["shop1", "live5", "other-openapi"];
    for id in theirs {
        assert_eq!(put_merchant(&host, id, &shop_settings()), 200, "{id}");
    }
    let before: Vec<_> = theirs.iter().map(|id| merchant_json(&host, id)).collect();
    let kit = |merchant: &str| {
        conformance(&[
            "--against",
            &host.url(""),
            "--token",
            TOKEN,
            "--sandbox-listen",
            &listen,
            "--merchant",
            merchant,
        ])
    };
    // `--merchant` names one of the shop's, or one of the ids the kit derives from it does.
    for (merchant, taken) in [("shop1", "shop1"), ("other", "other-openapi")] {
        let out = kit(merchant);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{merchant}: {out:?}");
        assert!(
            err.contains(&format!("merchant {taken} already exists")) && err.contains("--merchant"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
    }
    // Not a merchant id by the host's rule: refused before anything is sent (`live5?a=` used
    // to reach merchant live5).
    for bad in ["live5?a=", "live5/x", "", &"m".repeat(57)] {
        let out = kit(bad);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(
            err.contains("--merchant") && err.contains("1 to 64 letters"),
            "{err}"
        );
    }
    let after: Vec<_> = theirs.iter().map(|id| merchant_json(&host, id)).collect();
    assert_eq!(before, after, "the shop's merchants were changed");
    assert_eq!(merchant_status(&host, "other"), 404, "the kit made other");
}

#[test]
fn the_kit_removes_only_the_merchants_whose_settings_the_host_took() {
    let dir = temp_dir("conformance-refused-put");
    let kit_port = free_port();
    let origin = format!("http://127.0.0.1:{kit_port}");
    let host = serve(&dir, &repo_root().join("plugin.toml"), &origin);
    // `taken-rsa` is made by someone else while the kit runs: the proxy hides it from the
    // kit's check and refuses the kit's settings for it. It is a test merchant (its URLs are on
    // an allowed origin), which the host would let the kit purge.
    let mut body = shop_settings();
    for k in [
        "gateway_url",
        "notify_verify_url",
        "paychannel_url",
        "mapi_url",
    ] {
        body[k] = json!(format!("{origin}/operator/gateway.do"));
    }
    assert_eq!(put_merchant(&host, "taken-rsa", &body), 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let front = proxy(&rt, host.url(""), |method, path| {
        if path != "/v1/merchants/taken-rsa" || method == "DELETE" {
            return None;
        }
        Some(match method {
            "GET" => (
                404,
                json!({"error": {"code": "unknown_merchant", "message": "no merchant \"taken-rsa\""}}),
            ),
            _ => (
                409,
                json!({"error": {"code": "conflict", "message": "the operator is making this merchant"}}),
            ),
        })
    });
    let out = conformance(&[
        "--against",
        &front,
        "--token",
        TOKEN,
        "--sandbox-listen",
        &format!("127.0.0.1:{kit_port}"),
        "--merchant",
        "taken",
        "--only",
        "rsa.paid_once",
    ]);
    let (lines, _, _) = report(&out);
    assert_eq!(out.status.code(), Some(1), "{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.starts_with("FAIL rsa.paid_once")),
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        merchant_status(&host, "taken-rsa"),
        200,
        "the kit removed a merchant it never configured: {}",
        stderr_of(&out)
    );
    assert_eq!(merchant_status(&host, "taken"), 404);
    assert!(
        stderr_of(&out).contains("removed merchant(s) taken and"),
        "{}",
        stderr_of(&out)
    );
}

/// An HTTP server on loopback that is not a payhost: every request is answered `status` with
/// `body` as plain text.
fn not_payhost(rt: &tokio::runtime::Runtime, status: u16, body: &'static str) -> String {
    use http_body_util::Full;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                hyper::Response::builder()
                    .status(status)
                    .header("content-type", "text/plain")
                    .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    base
}

#[test]
fn a_host_that_is_not_payhost_or_not_its_base_url_cannot_start() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for (status, body) in [(200, "<html>welcome</html>"), (404, "404 page not found")] {
        let base = not_payhost(&rt, status, body);
        let out = conformance(&["--against", &base, "--token", TOKEN]);
        assert_eq!(out.status.code(), Some(2), "{status}: {out:?}");
        assert!(
            stderr_of(&out).contains("does not answer like a payhost"),
            "{}",
            stderr_of(&out)
        );
        assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
    }
    let base = not_payhost(&rt, 200, "{}");
    for (against, says) in [
        (
            format!("{base}/v1"),
            "give the host's base URL without a path",
        ),
        (
            format!("{base}/?x=1"),
            "give the host's base URL without a path",
        ),
        (
            "ftp://127.0.0.1:1".to_owned(),
            "the scheme must be http or https",
        ),
    ] {
        let out = conformance(&["--against", &against, "--token", TOKEN]);
        assert_eq!(out.status.code(), Some(2), "{against}: {out:?}");
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("--against {against}: {says}")),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
    }
}

#[test]
fn options_that_cannot_work_stop_the_run_before_it_changes_anything() {
    let (host, listen) = serve_for_kit("conformance-bad-options");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let unwritable = host.dir.join("no-such-folder/junit.xml");
    let unwritable = unwritable.to_str().unwrap();
    for (extra, flag) in [
        // A port chosen at random, which the host cannot have allowed.
        (
            vec![],
            "--against needs --sandbox-listen ADDR:PORT with a fixed port",
        ),
        (vec!["--sandbox-listen", busy.as_str()], "--sandbox-listen"),
        (
            vec!["--sandbox-listen", &listen, "--junit", unwritable],
            "--junit",
        ),
        (
            vec![
                "--sandbox-listen",
                &listen,
                "--sandbox-public-url",
                "notaurl",
            ],
            "--sandbox-public-url",
        ),
        (
            vec![
                "--sandbox-listen",
                &listen,
                "--sandbox-public-url",
                "http://127.0.0.1:9/kit",
            ],
            "--sandbox-public-url",
        ),
    ] {
        let base = host.url("");
        let mut args = vec!["--against", base.as_str(), "--token", TOKEN];
        args.extend(&extra);
        let out = conformance(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {out:?}");
        assert!(err.contains(flag), "{extra:?}: {err}");
        assert!(out.stdout.is_empty(), "{extra:?}: nothing ran: {out:?}");
        assert_eq!(merchant_status(&host, "conformance"), 404, "{extra:?}");
    }
}

/// Sends `signal` (`INT`, `TERM`) to a process.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads the child's report until a line for `case`; panics on a FAIL line or the end.
fn read_until(lines: &mut impl Iterator<Item = std::io::Result<String>>, case: &str) {
    for line in lines {
        let line = line.unwrap();
        assert!(!line.starts_with("FAIL "), "{line}");
        if line.split_whitespace().nth(1) == Some(case) {
            return;
        }
    }
    panic!("the report ended before {case}");
}

#[test]
fn ctrl_c_stops_the_run_and_the_kit_still_cleans_up() {
    let (host, listen) = serve_for_kit("conformance-sigint");
    let mut child = Command::new(payhost_binary())
        .current_dir(repo_root())
        .args(["conformance", "--against", &host.url(""), "--token", TOKEN])
        .args(["--sandbox-listen", &listen])
        .arg("--junit")
        .arg(host.dir.join("stopped.xml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, "merchant.configured");
    assert_eq!(merchant_status(&host, "conformance"), 200);
    send_signal(child.id(), "INT");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let (status, err) = finish_within(child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{err}\n{}", rest.join("\n"));
    assert!(err.contains("SIGINT"), "{err}");
    // What the stop left out says so, not "needs <case>" as if that case had failed.
    assert!(
        !rest
            .iter()
            .any(|l| l.starts_with("skip ") && l.contains(": needs ")),
        "{}",
        rest.join("\n")
    );
    assert!(err.contains("removed merchant(s) conformance"), "{err}");
    assert_eq!(merchant_status(&host, "conformance"), 404, "{err}");
    // The JUnit report of the partial run is not green: the stop is an errored case.
    let junit = std::fs::read_to_string(host.dir.join("stopped.xml")).unwrap();
    assert!(
        junit.contains("name=\"kit.stopped\"")
            && junit.contains("SIGINT: the run was stopped before every case ran ("),
        "{junit}"
    );

    // `--component`: the temporary folder of the host it started goes too.
    let mut child = Command::new(payhost_binary())
        .current_dir(repo_root())
        .args([
            "conformance",
            "--component",
            &wasm("alipay_wap_plugin.wasm"),
        ])
        .args(["--manifest", "plugin.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, "merchant.configured");
    let scratch = |pid: u32| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("payhost-conformance-{pid}-")))
            })
            .collect()
    };
    assert_eq!(scratch(pid).len(), 1, "the run's folder");
    send_signal(pid, "TERM");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let (status, err) = finish_within(child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(143), "{err}\n{}", rest.join("\n"));
    assert!(
        scratch(pid).is_empty(),
        "{:?} was left behind",
        scratch(pid)
    );
}

/// A `payhost serve` for the kit (allowing its sandbox on `listen`'s port) whose `public_url` is
/// `public_url`, not an address it listens on.
fn serve_with_public_url(name: &str, public_url: &str) -> (Payhost, String) {
    let dir = temp_dir(name);
    let kit_port = free_port();
    let port = free_port();
    let config =
        config_head(port, TOKEN, "").replace(
            &format!("public_url = \"http://127.0.0.1:{port}\""),
            &format!("public_url = \"{public_url}\""),
        ) + &format!("\n[outbound]\nallowed_origins = [\"http://127.0.0.1:{kit_port}\"]\n");
    assert!(config.contains(public_url), "{config}");
    (
        Payhost::start(&dir, &config),
        format!("127.0.0.1:{kit_port}"),
    )
}

/// The kit posts notifies and returns where the host says it is (its `public_url`, in the
/// notify_url it gives the provider), not to `--against`: a `public_url` this machine cannot
/// reach stops the run before any case (exit 2, naming the URL and what to do), and the kit
/// removes the merchant it made to find it out.
#[test]
fn a_host_whose_public_url_the_kit_cannot_reach_cannot_start() {
    // Nothing listens on port 1: connection refused at once.
    let (host, listen) = serve_with_public_url("conformance-public-url", "http://127.0.0.1:1");
    let junit = host.dir.join("junit.xml");
    std::fs::write(
        &junit,
        "<testsuites failures=\"0\"/> an older, green report",
    )
    .unwrap();
    let started = Instant::now();
    let out = conformance(&[
        "--against",
        &host.url(""),
        "--token",
        TOKEN,
        "--sandbox-listen",
        &listen,
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let err = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("http://127.0.0.1:1/notify/conformance") && err.contains("public_url"),
        "names the notify URL and public_url: {err}"
    );
    assert!(err.contains("this machine can reach"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("FAIL ")),
        "no case ran: {out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
    // What it made to learn the notify URL is gone.
    assert_eq!(merchant_status(&host, "conformance"), 404, "{err}");
    assert!(err.contains("removed merchant(s) conformance"), "{err}");
    // The reason first, then what was removed again.
    assert!(
        err.find("public_url") < err.find("removed merchant(s)"),
        "{err}"
    );
    // The JUnit report says why instead of the older one.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<error message=\"") && xml.contains("127.0.0.1:1/notify/conformance"),
        "{xml}"
    );
    assert!(!xml.contains("an older, green report"), "{xml}");

    // Cases that never reach the host's public_url still run.
    let out = conformance(&[
        "--against",
        &host.url(""),
        "--token",
        TOKEN,
        "--sandbox-listen",
        &listen,
        "--only",
        "merchant.settings_refused",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

/// A run that cannot start replaces the `--junit` file with a report of one errored case saying
/// why: never an empty file, never an older report left green.
#[test]
fn a_run_that_cannot_start_writes_its_reason_as_junit() {
    let dir = temp_dir("conformance-junit-error");
    let stale = dir.join("stale.xml");
    let fresh = dir.join("fresh.xml");
    std::fs::write(
        &stale,
        "<testsuites failures=\"0\"/> an older, green report",
    )
    .unwrap();
    for junit in [&stale, &fresh] {
        let out = conformance(&[
            "--against",
            "http://127.0.0.1:1",
            "--token",
            TOKEN,
            "--junit",
            junit.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let xml = std::fs::read_to_string(junit).unwrap();
        assert!(xml.starts_with("<?xml"), "{xml}");
        assert!(
            xml.contains("errors=\"1\"")
                && xml.contains(
                    "<error message=\"cannot reach http://127.0.0.1:1/ (connection refused)\""
                ),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase ").count(), 1, "{xml}");
        assert!(xml.trim_end().ends_with("</testsuites>"), "{xml}");
    }
    // Arguments the kit refuses before anything else: the same.
    let out = conformance(&[
        "--component",
        &wasm("testpay_plugin.wasm"),
        "--only",
        "nope",
        "--junit",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let xml = std::fs::read_to_string(&fresh).unwrap();
    assert!(xml.contains("&quot;nope&quot;"), "{xml}");
    // And arguments the command line itself refuses (a bad --setting, an address that is not
    // one, --against without --token, an unknown flag): the green report is replaced too.
    for (args, says) in [
        (
            vec!["--component", "x.wasm", "--setting", "foo"],
            "--setting",
        ),
        (
            vec![
                "--component",
                "x.wasm",
                "--sandbox-listen",
                "127.0.0.1:99999",
            ],
            "--sandbox-listen",
        ),
        (vec!["--against", "http://127.0.0.1:1"], "--token"),
        (
            vec!["--component", "x.wasm", "--no-such-flag"],
            "--no-such-flag",
        ),
    ] {
        std::fs::write(
            &stale,
            "<testsuites failures=\"0\"/> an older, green report",
        )
        .unwrap();
        let mut all = args.clone();
        all.extend(["--junit", stale.to_str().unwrap()]);
        let out = conformance(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let xml = std::fs::read_to_string(&stale).unwrap();
        assert!(
            xml.contains("errors=\"1\"")
                && xml.contains("the command line was refused")
                && xml.contains(says),
            "{args:?}: {xml}"
        );
    }
}

/// The flags of one mode are refused in the other, naming the flag and the mode.
#[test]
fn flags_of_the_other_mode_are_refused() {
    let testpay = wasm("testpay_plugin.wasm");
    for (args, flag, mode) in [
        (
            vec![
                "--against",
                "http://127.0.0.1:1",
                "--token",
                TOKEN,
                "--manifest",
                "plugin.toml",
            ],
            "--manifest",
            "--against",
        ),
        (
            vec![
                "--against",
                "http://127.0.0.1:1",
                "--token",
                TOKEN,
                "--setting",
                "a=b",
            ],
            "--setting",
            "--against",
        ),
        (
            vec!["--component", testpay.as_str(), "--token", TOKEN],
            "--token",
            "--component",
        ),
        (
            vec!["--component", testpay.as_str(), "--keep"],
            "--keep",
            "--component",
        ),
        (
            vec!["--component", testpay.as_str(), "--merchant", "shop"],
            "--merchant",
            "--component",
        ),
        (
            vec!["--list", "--component", testpay.as_str(), "--keep"],
            "--keep",
            "--component",
        ),
    ] {
        let out = conformance(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            err.contains(&format!("{flag} is for ")) && err.contains(mode),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran: {out:?}");
    }
    // The token in the environment (the way that keeps it out of `ps`) is not a flag given.
    let out = Command::new(payhost_binary())
        .current_dir(repo_root())
        .env("PAYHOST_CONFORMANCE_TOKEN", TOKEN)
        .args([
            "conformance",
            "--component",
            &testpay,
            "--only",
            "describe.identity",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// `--list` lists what the mode would run; a flow run asked only for cases it never runs is an
/// argument error, not "nothing was tested".
#[test]
fn list_and_only_follow_the_mode() {
    let against = ["--against", "http://127.0.0.1:1", "--token", TOKEN];
    let mut args = vec!["--list"];
    args.extend(against);
    let out = conformance(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids.first(), Some(&"merchant.settings_refused"), "{text}");
    assert_eq!(ids.last(), Some(&"webhooks.exactly_once"), "{text}");
    for id in [
        "describe.call",
        "host.started",
        "limits.call_limit",
        "alipay.return.genuine_verified",
    ] {
        assert!(
            !ids.contains(&id),
            "{id} never runs against a host:\n{text}"
        );
    }
    args.extend(["--only", "notify.paid_once"]);
    let out = conformance(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        ids,
        ["merchant.configured", "payment.created", "notify.paid_once"],
        "{text}"
    );
    // With --component (or no mode), every case.
    let out = conformance(&["--list", "--component", &wasm("testpay_plugin.wasm")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("host.started"));

    for (extra, name) in [
        (vec!["--only", "describe"], "describe"),
        (vec!["--list", "--only", "host.started"], "host.started"),
    ] {
        let mut args = against.to_vec();
        args.extend(&extra);
        let out = conformance(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {out:?}");
        assert!(
            err.contains(&format!("\"{name}\" is not a flow case")),
            "{extra:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{extra:?}: {out:?}");
    }
}

/// A `--setting` the component does not have, or whose value it refuses, is the caller's
/// mistake: exit 2 naming it, not a failed component case.
#[test]
fn a_bad_setting_is_an_argument_error_naming_it() {
    let testpay = wasm("testpay_plugin.wasm");
    let good = [
        "--setting",
        "merchant_no=M1",
        "--setting",
        "api_secret=testpay-secret-0123456789",
    ];
    for (extra, says) in [
        (vec!["--setting", "foo=bar"], "--setting foo"),
        (vec!["--setting", "mode=sideways"], "--setting mode"),
    ] {
        let mut args = vec!["--component", testpay.as_str()];
        args.extend(good);
        args.extend(&extra);
        let out = conformance(&args);
        let err = stderr_of(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {err}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(out.stdout.is_empty(), "{extra:?}: nothing ran: {out:?}");
    }
    // A value is never repeated (it may be a secret).
    let mut args = vec![
        "--component",
        testpay.as_str(),
        "--setting",
        "merchant_no=M1",
    ];
    args.extend(["--setting", "api_secret=short-secret-x"]);
    let out = conformance(&args);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("api_secret") && !err.contains("short-secret-x"),
        "{err}"
    );
}

/// `--sandbox-public-url http://` (a scheme and nothing else) says what is missing.
#[test]
fn a_public_url_without_a_host_says_so() {
    for url in ["http://", "https:///", "http:"] {
        let out = conformance(&[
            "--against",
            "http://127.0.0.1:1",
            "--token",
            TOKEN,
            "--sandbox-public-url",
            url,
        ]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {out:?}");
        assert!(
            err.contains(&format!("--sandbox-public-url {url}: ")) && err.contains("no host"),
            "{url}: {err}"
        );
        assert!(!err.contains("http://http"), "{url}: {err}");
    }
}

/// The exit statuses, the same in `--help` and in both READMEs: 0, 1, 2, 3, 130 and 143.
#[test]
fn the_exit_statuses_are_told_the_same_everywhere() {
    let help = String::from_utf8_lossy(&conformance(&["--help"]).stdout).into_owned();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Conformance kit").unwrap()..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let kit = std::fs::read_to_string(repo_root().join("conformance-kit/README.md")).unwrap();
    let top = help.split("\n\n").nth(1).unwrap_or_default();
    for code in ["0", "1", "2", "3", "130", "143"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))
                    || l.contains(&format!("; {code} for SIGTERM"))),
            "--help's exit table has no {code}:\n{help}"
        );
        assert!(
            top.contains(&format!(" {code} ")),
            "--help's description does not say {code}: {top}"
        );
        for (name, text) in [
            ("README.md", section),
            ("conformance-kit/README.md", kit.as_str()),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with("| `") && l.contains(&format!("`{code}`"))),
                "{name}'s exit table has no row for {code}"
            );
        }
    }
}
