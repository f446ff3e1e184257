//! The conformance kit as vendors and plugin authors run it: the real `payhost conformance`
//! binary against both components (`--component`), against `payhost demo` and a `payhost serve`
//! (`--against`), and against a host whose component was built with a deliberately broken notify
//! check (it must fail, naming the case). The cases live in the kit (`conformance-kit/`); these
//! tests only run it and read its report.

use conformance::host::{config_head, free_port, payhost_binary, spawn_payhost, temp_dir, Payhost};
use conformance::{repo_root, target_dir};
use std::path::Path;
use std::process::{Command, Output};

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
