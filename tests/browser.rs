//! The demo in a real browser: headless Chromium (Debian's `chromium`, installed by `.ci/run`)
//! driven by playwright-core walks `payhost demo` as a buyer on a phone-sized screen and as a shop
//! owner on the admin page (demo.mjs), then the back office on a desktop and a 360 px phone
//! (admin.mjs): owners limited to their merchant, search, a partial refund confirmed on the
//! sandbox's seller page, the CSV against the JSON API, the chart, no sideways scrolling. Screenshots land in `tests/artifacts/`; with
//! `PAYHOST_SCREENSHOTS=docs/images` also the pictures of README.zh-CN.md.

use conformance::alipay::cashier_token;
use conformance::host::{get, post_form, spawn_payhost, temp_dir};
use conformance::repo_root;
use std::process::Command;

/// The pictures README.zh-CN.md shows, taken with `PAYHOST_SCREENSHOTS=docs/images`.
const DOC_PICTURES: [&str; 9] = [
    "shop-1-product",
    "shop-2-cashier",
    "shop-3-paid",
    "admin-1-login",
    "admin-2-merchant-settings",
    "admin-3-payments",
    "admin-4-notifications",
    "admin-5-dead-letters",
    "admin-6-new-token",
];

/// The back office's pictures (admin.mjs), taken with `PAYHOST_SCREENSHOTS=docs/images`.
const BACK_OFFICE_PICTURES: [&str; 6] = [
    "admin-7-payment-search",
    "admin-8-payment-refunded",
    "admin-9-chart",
    "admin-10-phone-chart",
    "admin-11-audit",
    "admin-12-users",
];

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
    let mut walk = Command::new("node");
    walk.current_dir(&browser_dir)
        .arg("demo.mjs")
        .arg(&demo.base)
        .arg(password)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium);
    // PAYHOST_SCREENSHOTS=docs/images (relative to the repository) also saves README.zh-CN.md's
    // pictures of the real pages; unset, the tree is left as it was.
    let docs = std::env::var_os("PAYHOST_SCREENSHOTS")
        .filter(|d| !d.is_empty())
        .map(|d| repo_root().join(d));
    if let Some(docs) = &docs {
        walk.env("PAYHOST_SCREENSHOTS", docs);
    }
    // Pictures already in the tree are overwritten: each must be newer than this.
    let walked_at = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    let out = walk.output().expect("node runs");
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
    if let Some(docs) = &docs {
        for picture in DOC_PICTURES {
            let path = docs.join(format!("{picture}.png"));
            let written = path.metadata().and_then(|m| m.modified());
            assert!(
                written.is_ok_and(|t| t >= walked_at),
                "{} was not written by this walk",
                path.display()
            );
        }
    }
}

/// A buyer pays `product` in the demo shop over plain HTTP (shop → sandbox cashier → return).
async fn buy_and_pay(base: &str, product: &str) {
    let location = |r: &conformance::host::Reply| {
        assert_eq!(r.status, 302, "{}", r.text());
        r.header("location").unwrap()
    };
    let pay_url = location(&post_form(&format!("{base}/shop/buy/{product}"), "").await);
    let token = cashier_token(&get(&pay_url, None).await.text());
    let callback = location(
        &post_form(
            &format!("{base}/sandbox/cashier/pay"),
            &format!("token={token}&buyer=13900001111"),
        )
        .await,
    );
    get(&callback, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn back_office_walk_in_headless_chromium() {
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
    let dir = temp_dir("browser-admin");
    let token = "browser-admin-token-0123456789";
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
    // Two paid orders of the marketplace (one refunded on each screen) and one of another shop.
    for product in ["papercut", "papercut", "tea"] {
        buy_and_pay(&demo.base, product).await;
    }
    let paid = || async {
        get(
            &format!(
                "{}/v1/payments?merchant=market&status=TRADE_SUCCESS",
                demo.base
            ),
            Some(token),
        )
        .await
        .json()["payments"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while paid().await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the orders were never paid"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let artifacts = repo_root().join("tests/artifacts");
    let docs = std::env::var_os("PAYHOST_SCREENSHOTS")
        .filter(|d| !d.is_empty())
        .map(|d| repo_root().join(d));
    let walked_at = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    let mut walk = tokio::process::Command::new("node");
    walk.current_dir(&browser_dir)
        .arg("admin.mjs")
        .arg(&demo.base)
        .arg(password)
        .arg(token)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium);
    if let Some(docs) = &docs {
        walk.env("PAYHOST_SCREENSHOTS", docs);
    }
    let out = walk.output().await.expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the admin walk failed:\n{stdout}\n{stderr}\ndemo log:\n{}",
        std::fs::read_to_string(&demo.log).unwrap_or_default()
    );
    assert!(stdout.contains("admin walk: ok"));
    if let Some(docs) = &docs {
        for picture in BACK_OFFICE_PICTURES {
            let path = docs.join(format!("{picture}.png"));
            let written = path.metadata().and_then(|m| m.modified());
            assert!(
                written.is_ok_and(|t| t >= walked_at),
                "{} was not written by this walk",
                path.display()
            );
        }
    }
}
