//! The kit's side of a flow run, on one listener: the Alipay sandbox gateway under `/sandbox`
//! (with a fresh MD5 merchant of the kit's own), the shop's webhook receiver at `/kit/webhook`
//! and a return page at `/kit/return`. The host must be allowed to reach this one origin.

use crate::api::Options;
use crate::client::{self, Reply};
use crate::receiver::WebhookLog;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use payhost_sandbox::wire::Keys;
use payhost_sandbox::{Sandbox, SandboxMerchant};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The sandbox's path prefix.
pub const SANDBOX_BASE: &str = "/sandbox";
/// The path of the kit's webhook receiver (part of its merchants' fingerprint, see
/// `ownership`).
pub const WEBHOOK_PATH: &str = "/kit/webhook";

/// A merchant the sandbox knows (MD5).
#[derive(Clone)]
pub struct KitMerchant {
    pub partner: String,
    pub key: String,
    pub seller_email: String,
}

impl std::fmt::Debug for KitMerchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitMerchant")
            .field("partner", &self.partner)
            .field("seller_email", &self.seller_email)
            .finish_non_exhaustive()
    }
}

/// An RSA merchant the sandbox knows: the settings the component needs (PEM text).
#[derive(Clone)]
pub struct RsaMerchant {
    pub partner: String,
    pub seller_email: String,
    /// The merchant's private key (PKCS#8 PEM).
    pub private_key: String,
    /// The sandbox's "Alipay" public key (PEM).
    pub alipay_public_key: String,
}

/// An open-platform app (`api = openapi`, APPID + RSA2) the sandbox knows: the kit's own 2048-bit
/// key pairs, the app's and the one it signs as Alipay with (notifies it forges, and the
/// sandbox's answers to queries).
#[derive(Clone)]
pub struct OpenApp {
    pub app_id: String,
    /// The default seller (2088…).
    pub seller_id: String,
    /// The app's private key (PKCS#8 PEM): the merchant's `app_private_key`.
    pub app_private_key: String,
    /// The app's own public key (PEM): what must never be accepted as Alipay's.
    pub app_public_key: String,
    /// "Alipay's" public key (PEM): the merchant's `alipay_public_key`.
    pub alipay_public_key: String,
    /// "Alipay's" private key, which signs the notifies the kit sends.
    pub alipay_private: rsa::RsaPrivateKey,
    /// The app's key, for notifies signed with the wrong key.
    pub app_private: rsa::RsaPrivateKey,
}

impl std::fmt::Debug for OpenApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApp")
            .field("app_id", &self.app_id)
            .field("seller_id", &self.seller_id)
            .finish_non_exhaustive()
    }
}

/// The running sandbox, receiver and their listener; dropping it stops them.
pub struct KitEnv {
    pub sandbox: Arc<Sandbox>,
    /// The origin the host reaches the kit at, e.g. `http://127.0.0.1:41234`.
    pub origin: String,
    pub webhooks: Arc<WebhookLog>,
    pub webhook_secret: String,
    pub md5: KitMerchant,
    server: JoinHandle<()>,
}

impl Drop for KitEnv {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl KitEnv {
    /// Binds `opts.sandbox_listen` and starts serving.
    pub async fn start(opts: &Options) -> Result<KitEnv, String> {
        let listener = tokio::net::TcpListener::bind(opts.sandbox_listen)
            .await
            .map_err(|e| format!("the kit cannot listen on {}: {e}", opts.sandbox_listen))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("the kit's listener has no address: {e}"))?;
        let origin = match &opts.sandbox_public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(local)),
        };
        let sandbox = Sandbox::new(SANDBOX_BASE, &format!("{origin}{SANDBOX_BASE}"), 1.0);
        let md5 = KitMerchant {
            partner: fresh_partner(),
            key: Alphanumeric.sample_string(&mut rand::rng(), 32),
            seller_email: "conformance-seller@sandbox.example".into(),
        };
        sandbox.add_merchant(SandboxMerchant {
            partner: md5.partner.clone(),
            keys: Keys::Md5(md5.key.clone()),
            privileged: true,
        });
        sandbox.start_delivery();
        let webhook_secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
        let webhooks = Arc::new(WebhookLog::new(&webhook_secret));
        let server = tokio::spawn(serve(listener, sandbox.clone(), webhooks.clone()));
        if let Some(ready) = &opts.on_sandbox_ready {
            ready(&origin);
        }
        Ok(KitEnv {
            sandbox,
            origin,
            webhooks,
            webhook_secret,
            md5,
            server,
        })
    }

    pub fn sandbox_url(&self) -> String {
        format!("{}{SANDBOX_BASE}", self.origin)
    }

    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.origin)
    }

    /// The shop page payments return to (the host redirects the buyer there).
    pub fn shop_return_url(&self) -> String {
        format!("{}/kit/return", self.origin)
    }

    /// The provider URLs of the kit's sandbox, as Alipay component settings.
    pub fn provider_urls(&self) -> Vec<(String, String)> {
        let sandbox = self.sandbox_url();
        vec![
            ("gateway_url".into(), format!("{sandbox}/gateway")),
            ("notify_verify_url".into(), format!("{sandbox}/mapi")),
            ("paychannel_url".into(), format!("{sandbox}/mapi")),
            ("mapi_url".into(), format!("{sandbox}/mapi")),
        ]
    }

    /// The Alipay component's settings for the kit's MD5 merchant.
    pub fn md5_settings(&self) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = vec![
            ("partner".into(), self.md5.partner.clone()),
            ("key".into(), self.md5.key.clone()),
            ("seller_email".into(), self.md5.seller_email.clone()),
            ("sign_type".into(), "MD5".into()),
        ];
        s.extend(self.provider_urls());
        s
    }

    /// Makes a fresh RSA merchant (1024-bit keys, as the legacy interfaces use) and tells the
    /// sandbox about it.
    pub fn add_rsa_merchant(&self) -> Result<RsaMerchant, String> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = |what: &str| {
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024)
                .map_err(|e| format!("cannot make the {what} RSA key: {e}"))
        };
        let (merchant_key, alipay_key) = (key("merchant's")?, key("sandbox's")?);
        let partner = fresh_partner();
        self.sandbox.add_merchant(SandboxMerchant {
            partner: partner.clone(),
            keys: Keys::Rsa {
                merchant_public: Box::new(merchant_key.to_public_key()),
                alipay_private: Box::new(alipay_key.clone()),
            },
            privileged: true,
        });
        Ok(RsaMerchant {
            partner,
            seller_email: "conformance-rsa@sandbox.example".into(),
            private_key: merchant_key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("cannot write the merchant's key as PEM: {e}"))?
                .to_string(),
            alipay_public_key: alipay_key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| format!("cannot write the sandbox's public key as PEM: {e}"))?,
        })
    }

    /// The sandbox's open-platform gateway (`…/openapi/gateway.do`).
    pub fn openapi_gateway(&self) -> String {
        format!("{}/openapi/gateway.do", self.sandbox_url())
    }

    /// Makes a fresh open-platform app (two 2048-bit key pairs, RSA2) and tells the sandbox.
    pub fn add_openapi_app(&self) -> Result<OpenApp, String> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = |what: &str| {
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
                .map_err(|e| format!("cannot make the {what} RSA key: {e}"))
        };
        let (app_key, alipay_key) = (key("app's")?, key("sandbox's")?);
        let public_pem = |k: &rsa::RsaPrivateKey| {
            k.to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| format!("cannot write a public key as PEM: {e}"))
        };
        let app_id = format!(
            "2021{:012}",
            rand::rng().random_range(0..1_000_000_000_000u64)
        );
        let seller_id = fresh_partner();
        self.sandbox
            .add_openapi_app(payhost_sandbox::openapi::OpenApiApp {
                app_id: app_id.clone(),
                seller_id: seller_id.clone(),
                app_public: app_key.to_public_key(),
                alipay_private: alipay_key.clone(),
            });
        Ok(OpenApp {
            app_id,
            seller_id,
            app_private_key: app_key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("cannot write the app's key as PEM: {e}"))?
                .to_string(),
            app_public_key: public_pem(&app_key)?,
            alipay_public_key: public_pem(&alipay_key)?,
            alipay_private: alipay_key,
            app_private: app_key,
        })
    }

    /// The sandbox's open-platform trade of an order (its JSON), if the buyer opened its cashier.
    pub fn openapi_trade(&self, out_trade_no: &str) -> Option<serde_json::Value> {
        self.sandbox.state()["openapi_trades"]
            .as_array()?
            .iter()
            .find(|t| t["out_trade_no"] == out_trade_no)
            .cloned()
    }

    /// Switches the sandbox's faults (`{"drop_all_notifies": true}`; `{}` turns all off).
    pub async fn set_faults(&self, faults: serde_json::Value) -> Result<(), String> {
        let r: Reply = client::send(
            "POST",
            &format!("{}/faults", self.sandbox_url()),
            &[("content-type", "application/json")],
            faults.to_string().into_bytes(),
            client::DEFAULT_TIMEOUT,
        )
        .await?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "the kit's sandbox refused its faults: {}",
                r.brief()
            ))
        }
    }

    /// The sandbox's trade of an order (its JSON), if the sandbox has one (order numbers are
    /// unique per run, whichever merchant).
    pub fn trade(&self, out_trade_no: &str) -> Option<serde_json::Value> {
        self.sandbox.state()["trades"]
            .as_array()?
            .iter()
            .find(|t| t["out_trade_no"] == out_trade_no)
            .cloned()
    }

    /// The sandbox's notify deliveries of an order (their JSON: notify_id, sends, acknowledged…).
    pub fn deliveries(&self, out_trade_no: &str) -> Vec<serde_json::Value> {
        self.sandbox.state()["notifies"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|n| n["out_trade_no"] == out_trade_no)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A 2088… partner id nobody else uses.
fn fresh_partner() -> String {
    let n: u64 = rand::rng().random_range(0..1_000_000_000_000);
    format!("2088{n:012}")
}

/// An address the host can dial for a listener bound to `addr` (`0.0.0.0` → loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    sandbox: Arc<Sandbox>,
    webhooks: Arc<WebhookLog>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (sandbox, webhooks) = (sandbox.clone(), webhooks.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (sandbox, webhooks) = (sandbox.clone(), webhooks.clone());
                async move { Ok::<_, std::convert::Infallible>(route(req, &sandbox, &webhooks).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(
    req: Request<hyper::body::Incoming>,
    sandbox: &Arc<Sandbox>,
    webhooks: &WebhookLog,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if sandbox.owns(&path) {
        return sandbox.handle(req).await;
    }
    match (req.method().as_str(), path.as_str()) {
        ("POST", WEBHOOK_PATH) => {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (signature, event_id) =
                (header("x-payhost-signature"), header("x-payhost-event-id"));
            let body = match http_body_util::Limited::new(req.into_body(), 1 << 20)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => return plain(413, "too large"),
            };
            webhooks.record(signature.as_deref(), event_id.as_deref(), &body);
            plain(200, "ok")
        }
        ("GET", "/kit/return") => plain(200, "the conformance kit's shop: returned"),
        _ => plain(404, "not a page of the conformance kit"),
    }
}

fn plain(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid response")
}
