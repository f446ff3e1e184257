//! payhost against Alipay's official Python SDK (alipay-sdk-python, pinned in
//! `tests/clients/requirements-sdk.txt`), over real HTTP: `tests/clients/openapi_sdk_gateway.py`
//! plays the open platform with the SDK's own signing code. The SDK checks the signature of
//! every request the component makes (the pay page, `alipay.trade.query`); payhost must accept
//! the notify and the query answer the SDK signed, and refuse an answer whose signature covers
//! other content. `./scripts/test` makes the Python environment (`target/sdk-venv`).

use conformance::child::PortServer;
use conformance::host::{config_head, free_port, get, send_json, temp_dir, Payhost};
use conformance::{repo_root, target_dir};
use serde_json::json;
use std::process::Command;

const TOKEN: &str = "sdk-gateway-token-0123456789";
const APP_ID: &str = "2021000000000001";
const SELLER: &str = "2088000000000002";

fn vectors(rel: &str) -> String {
    repo_root()
        .join("plugin/testdata/openapi")
        .join(rel)
        .display()
        .to_string()
}

/// The Python with the pinned SDK: `PAYHOST_SDK_PYTHON`, or the venv `./scripts/test` makes.
fn sdk_python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("PAYHOST_SDK_PYTHON") {
        return p.into();
    }
    let venv = target_dir().join("sdk-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run ./scripts/test (it makes the venv from tests/clients/requirements-sdk.txt), or set PAYHOST_SDK_PYTHON",
        venv.display()
    );
    venv
}

fn start_gateway() -> PortServer {
    let mut command = Command::new(sdk_python());
    command
        .arg(repo_root().join("tests/clients/openapi_sdk_gateway.py"))
        .args(["--app-public", &vectors("keys/app_test_public.pem")])
        .args([
            "--alipay-private",
            &vectors("keys/alipay_test_private_pkcs1.pem"),
        ])
        .args(["--app-id", APP_ID]);
    PortServer::spawn(command, "the SDK's Python gateway")
}

async fn create(host: &Payhost, no: &str) -> String {
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/open/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": no, "subject": "官方 SDK 测试", "total_fee": "12.30",
                "return_url": "https://shop.example.com/return", "product": "wap"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["pay_url"].as_str().unwrap().to_owned()
}

async fn status(host: &Payhost, no: &str) -> String {
    get(
        &host.url(&format!("/v1/merchants/open/payments/{no}")),
        Some(TOKEN),
    )
    .await
    .json()["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_and_payhost_agree() {
    let gw = start_gateway();
    let dir = temp_dir("openapi-sdk");
    let port = free_port();
    let config = config_head(port, TOKEN, "")
        + &format!(
            r#"
[merchants.open]
api = "openapi"
app_id = "{APP_ID}"
app_private_key_file = "{app_key}"
alipay_public_key_file = "{alipay_pub}"
seller_id = "{SELLER}"
gateway = "{gw}/gateway.do"
"#,
            app_key = vectors("keys/app_test_private_pkcs8.pem"),
            alipay_pub = vectors("keys/alipay_test_public.pem"),
            gw = gw.base,
        );
    let host = Payhost::start(&dir, &config);

    // The pay page: the SDK verifies the component's RSA2 signature over the GET's parameters.
    let pay_url = create(&host, "SDK-1").await;
    assert!(pay_url.starts_with(&gw.base), "{pay_url}");
    let page = get(&pay_url, None).await;
    assert_eq!(page.status, 200, "{}", page.text());

    // The notify the SDK signed (V1 rule) is accepted once, and the order is paid.
    let reply =
        conformance::host::post_form(&format!("{}/pay?out_trade_no=SDK-1", gw.base), "").await;
    assert_eq!(reply.text(), "success");
    assert_eq!(status(&host, "SDK-1").await, "TRADE_SUCCESS");

    // A lost notify: payhost's alipay.trade.query (the SDK checks its signature) finds the
    // trade in the answer the SDK signed over the raw node.
    let pay_url = create(&host, "SDK-2").await;
    assert_eq!(get(&pay_url, None).await.status, 200);
    conformance::host::post_form(&format!("{}/pay-silently?out_trade_no=SDK-2", gw.base), "").await;
    let sync = send_json(
        "POST",
        &host.url("/v1/merchants/open/payments/SDK-2/sync"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(sync.status, 200, "{}", sync.text());
    assert_eq!(sync.json()["found"], true, "{}", sync.text());
    assert_eq!(status(&host, "SDK-2").await, "TRADE_SUCCESS");

    // An answer whose signature covers other content is refused; the order stays unpaid.
    let pay_url = create(&host, "SDK-3").await;
    assert_eq!(get(&pay_url, None).await.status, 200);
    conformance::host::post_form(&format!("{}/pay-silently?out_trade_no=SDK-3", gw.base), "").await;
    conformance::host::post_form(&format!("{}/tamper-answers", gw.base), "").await;
    let sync = send_json(
        "POST",
        &host.url("/v1/merchants/open/payments/SDK-3/sync"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert!(
        sync.status >= 400,
        "a forged answer was accepted: {}",
        sync.text()
    );
    assert_eq!(status(&host, "SDK-3").await, "WAIT_BUYER_PAY");

    // Every request the component made passed the SDK's check.
    let checks = get(&format!("{}/checks", gw.base), None).await.json();
    let checks = checks.as_array().unwrap();
    assert_eq!(
        checks.len(),
        5,
        "three pay pages and two queries: {checks:?}"
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    assert!(checks.iter().any(|c| c["method"] == "alipay.trade.query"));
}
