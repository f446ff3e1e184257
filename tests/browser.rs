//! The demo in a real browser: headless Chromium (Debian's `chromium`, installed by `.ci/run`)
//! driven by playwright-core walks `payhost demo` as a buyer on a phone-sized screen and as a shop
//! owner on the admin page. Screenshots land in `tests/artifacts/`.

use conformance::host::{free_port, temp_dir};
use conformance::repo_root;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let port = free_port();
    let token = "browser-test-token-0123456789";
    let log = std::fs::File::create(dir.join("demo.log")).unwrap();
    let mut demo = Command::new(conformance::host::payhost_binary())
        .current_dir(repo_root())
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--api-token",
            token,
        ])
        .arg("--database")
        .arg(dir.join("demo.db"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline && demo.try_wait().unwrap().is_none(),
            "payhost demo did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let artifacts = repo_root().join("tests/artifacts");
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .arg("demo.mjs")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(token)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let _ = demo.kill();
    let _ = demo.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}\ndemo log:\n{}",
        std::fs::read_to_string(dir.join("demo.log")).unwrap_or_default()
    );
    assert!(stdout.contains("browser walk: ok"));
    for shot in ["1-shop", "2-cashier", "3-paid", "4-admin-saved"] {
        assert!(
            artifacts.join(format!("{shot}.png")).exists(),
            "{shot}.png missing"
        );
    }
}
