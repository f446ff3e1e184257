//! A Rust shop that links payhost as a library (see `adapters/rust/README.md`):
//! load `plugin.toml`, configure a merchant, create a payment, and feed payhost Alipay's notify and
//! the buyer's return. Alipay is played by the sandbox crate (`payhost-sandbox`), mounted on
//! payhost's server under `/sandbox`, so the example runs anywhere:
//!
//!     cargo run --release -p payhost --example embed
//!
//! A shop with its own HTTP server routes `POST /notify/{id}` to [`App::notify_admit`] then [`App::notify_for`] and
//! `GET /return/{id}` to [`App::handle_return`]; this example lets payhost's own server do
//! that (`server::start`) and calls the same functions directly to show them.

use payhost::config::{Config, MerchantSettings};
use payhost::http::mount::Mounts;
use payhost::server;
use payhost::service::{App, CreatePayment};
use payhost_sandbox::{wire::Keys, Sandbox, SandboxMerchant};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PARTNER: &str = "2088000000004242";
const KEY: &str = "embed000000000000000000000000000";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("payhost-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // 1. Configuration, as payhost.toml would hold it (merchants may also come later, step 3).
    let config = Config::parse(
        &format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\ndatabase = \"{}\"\napi_token = \"embed-token-0123456789\"\n\
             cache_dir = \"{}\"\n[plugin]\nmanifest = \"{}\"\n",
            dir.join("shop.db").display(),
            root.join("target/payhost-test-cache").display(),
            root.join("plugin.toml").display(),
        ),
        &dir,
    )?;

    // The sandbox plays Alipay and knows our partner and key.
    let sandbox = Sandbox::new("/sandbox", &format!("{base}/sandbox"), 1.0);
    sandbox.add_merchant(SandboxMerchant {
        partner: PARTNER.into(),
        keys: Keys::Md5(KEY.into()),
        privileged: true,
    });
    sandbox.start_delivery();

    // 2. Load plugin.toml and the component, open the store.
    // The sandbox is mounted on payhost's own server, its origin allowed, and merchants configured
    // later default to its URLs.
    let mounted = sandbox.clone();
    let extras = server::Extras {
        mounts: Mounts::new().mount("/sandbox", move |req| {
            let sandbox = mounted.clone();
            async move { sandbox.handle(req).await }
        }),
        allowed_origins: vec![base.clone()],
        default_settings: vec![
            ("gateway_url".into(), format!("{base}/sandbox/gateway")),
            ("notify_verify_url".into(), format!("{base}/sandbox/mapi")),
            ("paychannel_url".into(), format!("{base}/sandbox/mapi")),
            ("mapi_url".into(), format!("{base}/sandbox/mapi")),
        ],
    };
    let app: Arc<App> = server::build_app_with(config, extras).await?;
    println!(
        "component {} {} loaded ({:?})",
        app.plugins.ids().join(","),
        app.plugins
            .first()
            .map(|p| p.info.version.clone())
            .unwrap_or_default(),
        app.plugins.first().map(|p| p.compile_source)
    );

    // 3. Configure a merchant: the component validates the settings (trimmed, every bad field named).
    let settings = MerchantSettings {
        plugin_id: "alipay-wap".into(),
        from_files: Vec::new(),
        settings: vec![
            ("partner".into(), format!(" {PARTNER} ")),
            ("key".into(), KEY.into()),
            ("seller_email".into(), "rust-shop@example.com".into()),
        ],
        shop_webhook_url: None,
        shop_webhook_secret: None,
        shop_origins: Vec::new(),
        settings_digest: None,
    };
    app.configure_merchant("rust-shop", settings)
        .await
        .map_err(|fields| anyhow::anyhow!("bad settings: {fields:?}"))?;

    // payhost's HTTP server receives Alipay's notify (POST /notify/rust-shop).
    let running = server::start(app.clone(), std::future::pending::<()>()).await?;

    // 4. Create a payment: the buyer is sent to `pay_url`.
    let (_, created) = app
        .create_payment(
            "rust-shop",
            CreatePayment {
                out_trade_no: Some("RUST0001".into()),
                subject: Some("一本好书".into()),
                total_fee: Some(serde_json::json!("39.90")),
                return_url: Some("https://shop.example/thanks".into()),
                seller_email: None,
                merchant_url: None,
                pay_expire: Some(30),
                out_user: None,
                cashier_code: None,
                product: None,
                user_agent: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
    let pay_url = created.pay_url.expect("a new payment has a pay_url");
    println!(
        "created {} for {}: {}",
        created.out_trade_no,
        created.total_fee,
        &pay_url[..60]
    );

    // The buyer pays in the sandbox cashier (a browser would do this).
    let page =
        payhost::http_client::send("GET", &pay_url, &[], Vec::new(), Duration::from_secs(10))
            .await
            .map_err(anyhow::Error::msg)?;
    let page = String::from_utf8_lossy(&page.body).into_owned();
    let token = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("cashier token");
    let paid = payhost::http_client::send(
        "POST",
        &format!("{base}/sandbox/cashier/pay"),
        &[("content-type", "application/x-www-form-urlencoded".into())],
        format!("token={token}").into_bytes(),
        Duration::from_secs(10),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(paid.status, 302);

    // 5. The notify arrives through payhost's server (App::notify_for); wait for the effect.
    for _ in 0..100 {
        if app
            .store
            .payment("rust-shop", "RUST0001")
            .await?
            .is_some_and(|p| p.status == "TRADE_SUCCESS")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let payment = app
        .store
        .payment("rust-shop", "RUST0001")
        .await?
        .expect("stored");
    println!(
        "after Alipay's notify: {} (trade_no {})",
        payment.status,
        payment.trade_no.clone().unwrap_or_default()
    );
    anyhow::ensure!(
        payment.status == "TRADE_SUCCESS",
        "the notify was not applied"
    );

    // 6. The buyer's return, fed directly: verified, then a signed redirect to the shop.
    let callback = sandbox
        .trade_return_url("RUST0001")
        .expect("the sandbox made a return");
    let query = callback.split_once('?').map(|(_, q)| q).unwrap_or("");
    let redirect = app
        .handle_return("rust-shop", query.as_bytes())
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    println!("return verified; the buyer goes to {redirect}");
    anyhow::ensure!(redirect.contains("status=TRADE_SUCCESS"));

    running.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("embedding example: ok");
    Ok(())
}
