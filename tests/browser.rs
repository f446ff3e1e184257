//! The demo in a real browser: headless Chromium (Debian's `chromium`, installed by `.ci/run`)
//! driven by playwright-core walks `payhost demo` as a buyer on a phone-sized screen and as a shop
//! owner on the admin page; and pays the demo's open-platform merchant (APPID + RSA2) through the
//! sandbox's OpenAPI cashier on a phone and on a desktop; and walks the back office on a desktop
//! and a 360 px phone (admin.mjs): owners limited to their merchant, search, a partial refund
//! confirmed on the sandbox's seller password page, the CSV against the JSON API, the chart, no
//! sideways scrolling. Screenshots land in `tests/artifacts/`; with
//! `PAYHOST_SCREENSHOTS=docs/images` also the pictures of README.zh-CN.md.

use conformance::alipay::cashier_token;
use conformance::host::{get, post_form, spawn_payhost, temp_dir, Demo};
use conformance::repo_root;
use std::path::PathBuf;
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

/// Debian's Chromium and the folder of the walks, with playwright-core installed.
fn browser_setup() -> (String, PathBuf) {
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
    (chromium, browser_dir)
}

/// `payhost demo` on its own database, with the operator's API token.
fn start_demo(name: &str, token: &str) -> Demo {
    let dir = temp_dir(name);
    let db = dir.join("demo.db").display().to_string();
    spawn_payhost(
        &dir,
        &[
            "demo",
            "--api-token",
            token,
            "--admin-password",
            conformance::host::ADMIN_PASSWORD,
            "--database",
            &db,
        ],
    )
}

#[test]
fn demo_walk_in_headless_chromium() {
    let (chromium, browser_dir) = browser_setup();
    let token = "browser-test-token-0123456789";
    let password = conformance::host::ADMIN_PASSWORD;
    let demo = start_demo("browser", token);
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

/// The demo's open-platform merchant (`open-shop`, APPID + RSA2) paid in Chromium through the
/// sandbox's OpenAPI cashier: a phone (390 px, an iPhone's User-Agent) gets `alipay.trade.wap.pay`,
/// a desktop `alipay.trade.page.pay` (openapi.mjs checks the pay_url's method); each order ends
/// paid on the shop's pages and in payhost's API, paid once (one applied notification).
#[test]
fn open_platform_cashier_on_a_phone_and_a_desktop() {
    let (chromium, browser_dir) = browser_setup();
    let token = "browser-openapi-token-0123456789";
    let demo = start_demo("browser-openapi", token);
    let artifacts = repo_root().join("tests/artifacts");
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .arg("openapi.mjs")
        .arg(&demo.base)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = || std::fs::read_to_string(&demo.log).unwrap_or_default();
    assert!(
        out.status.success() && stdout.contains("openapi walk: ok"),
        "the OpenAPI walk failed:\n{stdout}\n{stderr}\ndemo log:\n{}",
        log()
    );
    let paid: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("paid "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(
        paid.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        ["phone", "desktop"],
        "{stdout}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (device, no) in paid {
        let url = format!("{}/v1/merchants/open-shop/payments/{no}", demo.base);
        let p = rt.block_on(get(&url, Some(token))).json();
        assert_eq!(p["status"], "TRADE_SUCCESS", "{device}: {p}\n{}", log());
        assert_eq!(p["total_fee"], "25.00", "{device}: {p}");
        let applied = p["notifications"]
            .as_array()
            .map(|list| list.iter().filter(|n| n["outcome"] == "applied").count());
        assert_eq!(applied, Some(1), "{device}: paid once: {p}");
        for shot in ["1-cashier", "2-paid"] {
            let png = artifacts.join(format!("openapi-{device}-{shot}.png"));
            assert!(png.exists(), "{} missing", png.display());
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

/// The shop owner's back office (issue 23) in Chromium, on a desktop and on a 360 px phone: the
/// operator adds two owners; the marketplace's owner searches an order, opens it, refunds part of
/// it on the sandbox's seller password page, sees 部分退款 and the amount, checks the CSV against
/// `GET /v1/payments` and sees the chart; the other owner gets nothing of it (list, page, CSV,
/// refund POST); the operator's audit log holds the refund.
#[tokio::test(flavor = "multi_thread")]
async fn back_office_walk_on_a_desktop_and_a_phone() {
    let (chromium, browser_dir) = browser_setup();
    let token = "browser-admin-token-0123456789";
    let demo = start_demo("browser-admin", token);
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
            "the orders were never paid:\n{}",
            std::fs::read_to_string(&demo.log).unwrap_or_default()
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
        .arg(conformance::host::ADMIN_PASSWORD)
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
        out.status.success() && stdout.contains("admin walk: ok"),
        "the admin walk failed:\n{stdout}\n{stderr}\ndemo log:\n{}",
        std::fs::read_to_string(&demo.log).unwrap_or_default()
    );
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
