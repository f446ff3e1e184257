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
                                        "host" | "content-length" | "transfer-encoding" | "connection"
                                    )
                                })
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let hidden = path.starts_with("/v1/merchants/")
                                && (path.ends_with("/refunds")
                                    || path.ends_with("/close")
                                    || path.ends_with("/reconciliation"));
                            let answer = if hidden {
                                let e = json!({"error": {"code": "not_found", "message": format!("no route {method} {path}")}});
                                hyper::Response::builder()
                                    .status(404)
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
            .any(|l| l.starts_with("FAIL notify.forged_refused")),
        "the broken notify check is named:\n{}",
        lines.join("\n")
    );
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
            closed.elapsed() < Duration::from_secs(5),
            "it went on for {:?} after its output was closed: {err}",
            closed.elapsed()
        );
        err
    };
    // Kept: the run stopped long before the RSA merchant (a later case) was made.
    head_1(&["--keep"]);
    assert_eq!(merchant_status(&host, "conformance-rsa"), 404);
    // Not kept: what it made (and what the run before kept) is removed even after a stop.
    head_1(&[]);
    assert_eq!(merchant_status(&host, "conformance"), 404);
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
