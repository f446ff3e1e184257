//! The demo in a real browser: headless Chromium (Debian's `chromium`, installed by `.ci/run`)
//! driven by playwright-core walks `payhost demo` as a buyer on a phone-sized screen and as a shop
//! owner on the admin page. Screenshots land in `tests/artifacts/`.

use conformance::host::{spawn_payhost, temp_dir};
use conformance::repo_root;
use std::process::Command;

#[test]
fn demo_walk_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does"
    );
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/browser` first (./scripts/test does)"
    );
    let dir = temp_dir("browser");
    let token = "browser-test-token-0123456789";
    let db = dir.join("demo.db").display().to_string();
    let password = conformance::host::ADMIN_PASSWORD;
    let demo = spawn_payhost(
        &dir,
        &[
            "demo",
            "--api-token",
            token,
            "--admin-password",
            password,
            "--database",
            &db,
        ],
    );
    let artifacts = repo_root().join("tests/artifacts");
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .arg("demo.mjs")
        .arg(&demo.base)
        .arg(password)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}\ndemo log:\n{}",
        std::fs::read_to_string(&demo.log).unwrap_or_default()
    );
    assert!(stdout.contains("browser walk: ok"));
    for shot in ["1-shop", "2-cashier", "3-paid", "4-admin-saved"] {
        assert!(
            artifacts.join(format!("{shot}.png")).exists(),
            "{shot}.png missing"
        );
    }
}
