//! The demo of `payhost demo`: the sandbox gateway with four merchants (B2C MD5, C2C marketplace,
//! RSA, and an open-platform app with RSA2) and a small shop with four products, one of them sold
//! by another seller through the C2C merchant. A newcomer buys, pays in the sandbox cashier, lands back on the shop and sees the
//! order paid, then opens `/admin` to see the payment and its notifications.
//!
//! The shop talks to payhost only over HTTP, as a real shop does: it creates payments and reads
//! their status with the shop API (`/v1`, the operator's bearer token), checks the signed return
//! payhost sends the buyer back with, and receives payhost's signed webhooks at `/shop/webhook`.
//! [`build`] returns what payhost must be configured with (merchants, token, webhook secret,
//! origins) as plain data, so this crate knows nothing of payhost's configuration types.

use crate::outbound;
use crate::signature::{return_signature_ok, webhook_signature_ok};
use crate::web::{esc, html, page, read_body, redirect, text, unix_now, Body};
use crate::wire::Keys;
use crate::{Sandbox, SandboxMerchant};
use http::{Method, Request, Response};
use rand_core::RngCore;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const B2C_PARTNER: &str = "2088000000000001";
pub const C2C_PARTNER: &str = "2088000000000002";
pub const RSA_PARTNER: &str = "2088000000000003";
/// The open-platform merchant's APPID and seller (its PID).
pub const OPEN_APP_ID: &str = "2021000000000001";
pub const OPEN_SELLER_ID: &str = "2088000000000004";
pub const MARKET_SELLER: &str = "13800138000";

/// The demo's merchant ids in payhost.
pub const MERCHANT_IDS: [&str; 4] = ["demo", "market", "rsa-shop", "open-shop"];

pub struct Product {
    pub id: &'static str,
    pub name: &'static str,
    pub price: &'static str,
    pub merchant: &'static str,
    pub seller: Option<&'static str>,
}

pub const PRODUCTS: &[Product] = &[
    Product {
        id: "tea",
        name: "西湖龙井 250g",
        price: "0.01",
        merchant: "demo",
        seller: None,
    },
    Product {
        id: "cup",
        name: "青瓷茶杯 (RSA 商户)",
        price: "12.80",
        merchant: "rsa-shop",
        seller: None,
    },
    Product {
        id: "papercut",
        name: "手工剪纸 · 来自卖家 13800138000 (C2C)",
        price: "8.88",
        merchant: "market",
        seller: Some(MARKET_SELLER),
    },
    Product {
        id: "fan",
        name: "苏绣团扇 (开放平台 RSA2 商户)",
        price: "25.00",
        merchant: "open-shop",
        seller: None,
    },
];

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn random_key() -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b.iter()
        .map(|x| ALNUM[*x as usize % ALNUM.len()] as char)
        .collect()
}

/// The demo's options (from the command line).
pub struct DemoOptions {
    /// Where payhost is reached (`http://127.0.0.1:8080`): the sandbox and the shop are mounted
    /// on the same server, under `/sandbox` and `/shop`.
    pub public_url: String,
    /// payhost's operator token, which the shop uses (random when `None`).
    pub api_token: Option<String>,
    /// Sandbox seconds per real second.
    pub sandbox_speed: f64,
    /// More MD5 merchants the sandbox knows, as (partner, key): shops that configure payhost
    /// themselves (the adapters) pay through the sandbox with them.
    pub sandbox_merchants: Vec<(String, String)>,
}

/// One merchant payhost must be configured with.
#[derive(Debug, Clone)]
pub struct DemoMerchant {
    /// The merchant id in payhost's URLs (`demo`, `market`, `rsa-shop`).
    pub id: String,
    /// The Alipay component's settings, by their schema names; PEM keys as text.
    pub settings: Vec<(String, String)>,
    pub shop_webhook_url: String,
    pub shop_webhook_secret: String,
}

/// Everything `payhost demo` needs: the sandbox and the shop to mount, and what to configure
/// payhost with.
pub struct Demo {
    /// The gateway, to mount under `/sandbox` (call [`Sandbox::start_delivery`] once running).
    pub sandbox: Arc<Sandbox>,
    /// The shop, to mount under `/shop`.
    pub shop: Arc<DemoShop>,
    pub merchants: Vec<DemoMerchant>,
    /// payhost's operator token (the shop's bearer token).
    pub api_token: String,
    /// Every merchant's `shop_webhook_secret`.
    pub webhook_secret: String,
    /// The origin of the sandbox and of the shop's webhook: payhost must allow it explicitly
    /// (it is usually a loopback address).
    pub sandbox_origin: String,
    /// The sandbox's provider URLs of both API families (`gateway_url`, `notify_verify_url`, …
    /// and the open platform's `gateway`): the settings a merchant configured later (API, admin
    /// page) should get when it leaves them out, so it pays here too. The host offers each
    /// merchant those its component accepts for the merchant's API family.
    pub sandbox_settings: Vec<(String, String)>,
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if !matches!(scheme, "http" | "https") || authority.is_empty() {
        return Err(format!("{url:?} is not an absolute http(s) URL"));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Makes the sandbox (with the demo's merchants and `opts.sandbox_merchants`), the shop, and the
/// configuration payhost needs for them.
pub fn build(opts: &DemoOptions) -> Result<Demo, String> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let public = opts.public_url.trim_end_matches('/').to_owned();
    let origin = origin_of(&public)?;
    let api_token = opts.api_token.clone().unwrap_or_else(|| random_hex(16));
    let webhook_secret = random_hex(16);
    let sandbox = Sandbox::new("/sandbox", &format!("{public}/sandbox"), opts.sandbox_speed);
    let (md5_b2c, md5_c2c) = (random_key(), random_key());
    sandbox.add_merchant(SandboxMerchant {
        partner: B2C_PARTNER.into(),
        keys: Keys::Md5(md5_b2c.clone()),
        privileged: true,
    });
    sandbox.add_merchant(SandboxMerchant {
        partner: C2C_PARTNER.into(),
        keys: Keys::Md5(md5_c2c.clone()),
        privileged: true,
    });
    for (partner, key) in &opts.sandbox_merchants {
        sandbox.add_merchant(SandboxMerchant {
            partner: partner.clone(),
            keys: Keys::Md5(key.clone()),
            privileged: true,
        });
    }
    // RSA: the merchant's key pair and the sandbox's own "Alipay" key pair.
    let key_error = |e: rsa::Error| format!("cannot make an RSA key: {e}");
    let pem_error = |e: rsa::pkcs8::Error| format!("cannot write an RSA key as PEM: {e}");
    let merchant_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).map_err(key_error)?;
    let alipay_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).map_err(key_error)?;
    sandbox.add_merchant(SandboxMerchant {
        partner: RSA_PARTNER.into(),
        keys: Keys::Rsa {
            merchant_public: Box::new(merchant_key.to_public_key()),
            alipay_private: Box::new(alipay_key.clone()),
        },
        privileged: true,
    });
    let sandbox_settings: Vec<(String, String)> = vec![
        ("gateway_url".into(), format!("{public}/sandbox/gateway")),
        ("notify_verify_url".into(), format!("{public}/sandbox/mapi")),
        ("paychannel_url".into(), format!("{public}/sandbox/mapi")),
        ("mapi_url".into(), format!("{public}/sandbox/mapi")),
    ];
    let merchant = |id: &str, partner: &str, more: Vec<(String, String)>| {
        let mut settings = vec![("partner".to_owned(), partner.to_owned())];
        settings.extend(sandbox_settings.iter().cloned());
        settings.extend(more);
        DemoMerchant {
            id: id.into(),
            settings,
            shop_webhook_url: format!("{public}/shop/webhook"),
            shop_webhook_secret: webhook_secret.clone(),
        }
    };
    let alipay_public = alipay_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot write an RSA key as PEM: {e}"))?;
    // The open platform: a 2048-bit app key (RSA2) and the sandbox's own "Alipay" key pair.
    let app_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(key_error)?;
    let open_alipay_key =
        rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(key_error)?;
    sandbox.add_openapi_app(crate::openapi::OpenApiApp {
        app_id: OPEN_APP_ID.into(),
        seller_id: OPEN_SELLER_ID.into(),
        app_public: app_key.to_public_key(),
        alipay_private: open_alipay_key.clone(),
    });
    let open_shop = DemoMerchant {
        id: "open-shop".into(),
        settings: vec![
            ("api".into(), "openapi".into()),
            ("app_id".into(), OPEN_APP_ID.into()),
            (
                "app_private_key".into(),
                app_key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(pem_error)?
                    .to_string(),
            ),
            (
                "alipay_public_key".into(),
                open_alipay_key
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| format!("cannot write an RSA key as PEM: {e}"))?,
            ),
            ("seller_id".into(), OPEN_SELLER_ID.into()),
            (
                "gateway".into(),
                format!("{public}/sandbox/openapi/gateway.do"),
            ),
        ],
        shop_webhook_url: format!("{public}/shop/webhook"),
        shop_webhook_secret: webhook_secret.clone(),
    };
    let merchants = vec![
        merchant(
            "demo",
            B2C_PARTNER,
            vec![
                ("key".into(), md5_b2c),
                ("seller_email".into(), "shop@demo.example".into()),
            ],
        ),
        merchant(
            "market",
            C2C_PARTNER,
            vec![("key".into(), md5_c2c), ("mode".into(), "c2c".into())],
        ),
        merchant(
            "rsa-shop",
            RSA_PARTNER,
            vec![
                ("sign_type".into(), "RSA".into()),
                ("seller_email".into(), "cups@demo.example".into()),
                (
                    "private_key".into(),
                    merchant_key
                        .to_pkcs8_pem(LineEnding::LF)
                        .map_err(pem_error)?
                        .to_string(),
                ),
                ("alipay_public_key".into(), alipay_public.clone()),
                // PC pay and the trade query are signed by the same sandbox key.
                ("mapi_public_key".into(), alipay_public),
            ],
        ),
        open_shop,
    ];
    let shop = Arc::new(DemoShop::new(&public, &api_token, &webhook_secret));
    Ok(Demo {
        sandbox,
        shop,
        merchants,
        api_token,
        webhook_secret,
        sandbox_origin: origin,
        sandbox_settings: sandbox_settings
            .into_iter()
            .chain([(
                "gateway".to_owned(),
                format!("{public}/sandbox/openapi/gateway.do"),
            )])
            .collect(),
    })
}

/// An order the shop made.
#[derive(Debug, Clone)]
struct Order {
    merchant: String,
    out_trade_no: String,
    total_fee: String,
    status: String,
}

/// The demo shop: products, buying, the signed return page and the webhook receiver. Mount it
/// under `/shop` on the payhost it was made for.
pub struct DemoShop {
    /// payhost's base URL.
    payhost: String,
    api_token: String,
    webhook_secret: String,
    /// The orders this shop made, oldest first.
    orders: Mutex<Vec<Order>>,
    /// Events received by the webhook (signature checked), oldest first.
    pub events: Mutex<Vec<serde_json::Value>>,
}

/// A `/v1` answer: the status and the JSON (null when it was not JSON).
struct ApiAnswer {
    status: u16,
    json: serde_json::Value,
}

impl ApiAnswer {
    fn error_message(&self) -> String {
        self.json["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("payhost answered HTTP {}", self.status))
    }
}

/// Percent-encodes one URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_final(status: &str) -> bool {
    status != "WAIT_BUYER_PAY"
}

impl DemoShop {
    /// A shop using the payhost at `payhost_url` with the operator's `api_token`, receiving
    /// webhooks signed with `webhook_secret`.
    pub fn new(payhost_url: &str, api_token: &str, webhook_secret: &str) -> DemoShop {
        DemoShop {
            payhost: payhost_url.trim_end_matches('/').to_owned(),
            api_token: api_token.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            orders: Mutex::default(),
            events: Mutex::default(),
        }
    }

    /// Calls the shop API.
    async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiAnswer, String> {
        let mut headers = vec![("authorization", format!("Bearer {}", self.api_token))];
        if body.is_some() {
            headers.push(("content-type", "application/json".to_owned()));
        }
        let answer = outbound::send(
            method,
            &format!("{}{path}", self.payhost),
            &headers,
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            Duration::from_secs(30),
        )
        .await?;
        Ok(ApiAnswer {
            status: answer.status,
            json: serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null),
        })
    }

    /// The payment's status in payhost, if payhost knows it.
    async fn payhost_status(&self, merchant: &str, out_trade_no: &str) -> Option<String> {
        let a = self
            .api(
                "GET",
                &format!(
                    "/v1/merchants/{}/payments/{}",
                    path_segment(merchant),
                    path_segment(out_trade_no)
                ),
                None,
            )
            .await
            .map_err(|e| tracing::warn!(error = %e, "the demo shop cannot ask payhost"))
            .ok()?;
        if a.status != 200 {
            return None;
        }
        let status = a.json["status"].as_str()?.to_owned();
        self.set_status(merchant, out_trade_no, &status);
        Some(status)
    }

    fn set_status(&self, merchant: &str, out_trade_no: &str, status: &str) {
        for o in self.orders.lock().unwrap().iter_mut() {
            if o.merchant == merchant && o.out_trade_no == out_trade_no {
                o.status = status.to_owned();
            }
        }
    }

    /// Serves a request under `/shop`.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/shop") => self.index().await,
            (Method::POST, p) if p.starts_with("/shop/buy/") => {
                // The buyer's browser decides the cashier: phones WAP, desktops PC (product auto).
                let ua = req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                self.buy(&p["/shop/buy/".len()..], ua).await
            }
            (Method::GET, "/shop/return") => self.returned(&query).await,
            (Method::POST, p) if p.starts_with("/shop/app/") => {
                self.app_checkout(&p["/shop/app/".len()..]).await
            }
            (Method::POST, "/shop/webhook") => {
                let signature = req
                    .headers()
                    .get("x-payhost-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                match read_body(req.into_body(), 256 * 1024).await {
                    Ok(body) => self.webhook(&signature, &body),
                    Err(refused) => refused,
                }
            }
            _ => text(404, "no such shop page"),
        }
    }

    /// A webhook from payhost: signature checked, the order's status taken from it.
    fn webhook(&self, signature: &str, body: &[u8]) -> Response<Body> {
        if !webhook_signature_ok(&self.webhook_secret, signature, body, unix_now(), 300) {
            return text(401, "bad signature");
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) else {
            return text(400, "not JSON");
        };
        if let (Some(m), Some(no), Some(status)) = (
            event["merchant_id"].as_str(),
            event["out_trade_no"].as_str(),
            event["status"].as_str(),
        ) {
            self.set_status(m, no, status);
        }
        self.events.lock().unwrap().push(event);
        text(200, "ok")
    }

    async fn index(&self) -> Response<Body> {
        // Orders still waiting are asked about (a webhook may still be on its way).
        let waiting: Vec<Order> = {
            let orders = self.orders.lock().unwrap();
            orders
                .iter()
                .rev()
                .filter(|o| !is_final(&o.status))
                .take(10)
                .cloned()
                .collect()
        };
        for o in waiting {
            self.payhost_status(&o.merchant, &o.out_trade_no).await;
        }
        let mut body = String::from(
            "<header><strong>payhost 演示商城 Demo shop</strong><a href=\"/admin\">管理 Admin</a></header><main>",
        );
        for p in PRODUCTS {
            body.push_str(&format!(
                "<div class=\"card\"><h3>{}</h3><p style=\"font-size:22px;color:#ff6a00\">￥{}</p>\
                 <form method=\"post\" action=\"/shop/buy/{}\"><button type=\"submit\" id=\"buy-{}\">支付宝付款 Pay with Alipay</button></form>{}</div>",
                esc(p.name),
                esc(p.price),
                esc(p.id),
                esc(p.id),
                // App secure pay needs an RSA merchant: the RSA shop's product also sells in "the app".
                if p.merchant == "rsa-shop" {
                    format!(
                        "<form method=\"post\" action=\"/shop/app/{0}\"><button class=\"secondary\" type=\"submit\" id=\"app-{0}\">在 App 中购买 Buy in the app (SDK)</button></form>",
                        esc(p.id)
                    )
                } else {
                    String::new()
                }
            ));
        }
        body.push_str("<div class=\"card\"><h3>我的订单 My orders</h3><table id=\"orders\"><tr><th>订单号</th><th>金额</th><th>状态</th></tr>");
        for o in self.orders.lock().unwrap().iter().rev().take(30) {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"status-{}\">{}</td></tr>",
                esc(&o.out_trade_no),
                esc(&o.total_fee),
                esc(&o.status),
                status_label(&o.status)
            ));
        }
        body.push_str("</table></div></main>");
        html(200, page("payhost 演示商城", &body))
    }

    /// Asks payhost for a payment of `product`; the answer's JSON, or the page to show instead.
    async fn create(
        &self,
        p: &Product,
        prefix: &str,
        product: &str,
        user_agent: Option<String>,
    ) -> Result<serde_json::Value, Response<Body>> {
        let out_trade_no = format!(
            "{prefix}{}{}",
            unix_now_ms(),
            rand_core::OsRng.next_u32() % 1000
        );
        let mut request = serde_json::json!({
            "out_trade_no": out_trade_no,
            "subject": p.name,
            "total_fee": p.price,
            "return_url": format!("{}/shop/return?m={}", self.payhost, p.merchant),
            "pay_expire": 30,
            "product": product,
        });
        if product != "app" {
            request["merchant_url"] = format!("{}/shop", self.payhost).into();
            if let Some(seller) = p.seller {
                request["seller_email"] = seller.into();
            }
        }
        if let Some(ua) = user_agent {
            request["user_agent"] = ua.into();
        }
        let failed = |status: u16, message: &str| {
            html(
                status,
                page(
                    "下单失败",
                    &format!(
                        "<main><div class=\"card err\">下单失败 Could not start the payment: {}</div></main>",
                        esc(message)
                    ),
                ),
            )
        };
        let answer = self
            .api(
                "POST",
                &format!("/v1/merchants/{}/payments", p.merchant),
                Some(&request),
            )
            .await
            .map_err(|e| failed(502, &e))?;
        if !matches!(answer.status, 200 | 201) {
            return Err(failed(answer.status, &answer.error_message()));
        }
        self.orders.lock().unwrap().push(Order {
            merchant: p.merchant.to_owned(),
            out_trade_no: answer.json["out_trade_no"]
                .as_str()
                .unwrap_or(&out_trade_no)
                .to_owned(),
            total_fee: answer.json["total_fee"]
                .as_str()
                .unwrap_or(p.price)
                .to_owned(),
            status: answer.json["status"]
                .as_str()
                .unwrap_or("WAIT_BUYER_PAY")
                .to_owned(),
        });
        Ok(answer.json)
    }

    async fn buy(&self, product: &str, user_agent: Option<String>) -> Response<Body> {
        let Some(p) = PRODUCTS.iter().find(|p| p.id == product) else {
            return text(404, "no such product");
        };
        match self.create(p, "DEMO", "auto", user_agent).await {
            Ok(created) => match created["pay_url"].as_str() {
                Some(url) => redirect(url),
                None => html(
                    200,
                    page(
                        "已支付",
                        "<main><div class=\"card ok\">该订单已支付 / already paid</div></main>",
                    ),
                ),
            },
            Err(page) => page,
        }
    }

    /// The shop's app checkout, played in the browser: the shop's server asks payhost for the signed
    /// order string (`product = "app"`), and the page hands it to the SDK, here the sandbox's
    /// stand-in (`POST /sandbox/app/pay`), which pays and notifies as Alipay would.
    async fn app_checkout(&self, product: &str) -> Response<Body> {
        let Some(p) = PRODUCTS
            .iter()
            .find(|p| p.id == product && p.merchant == "rsa-shop")
        else {
            return text(404, "no such app product");
        };
        let created = match self.create(p, "APP", "app", None).await {
            Ok(c) => c,
            Err(page) => return page,
        };
        let field = |k: &str| created[k].as_str().unwrap_or("").to_owned();
        html(
            200,
            page(
                "App 支付",
                &format!(
                    "<main><div class=\"card\"><h3>App 支付 (安全支付 SDK)</h3>\
                     <p>订单号 <code id=\"app-order\">{no}</code> ￥{fee}</p>\
                     <p>服务器签好的订单信息串 / the order string signed by the shop's server:</p>\
                     <pre id=\"order-string\" style=\"white-space:pre-wrap;word-break:break-all;font-size:12px\">{order}</pre>\
                     <form method=\"post\" action=\"/sandbox/app/pay\"><input type=\"hidden\" name=\"order_string\" value=\"{order}\">\
                     <label>通知方式 Notify <select name=\"generation\"><option value=\"B\">B (2014+)</option><option value=\"A\">A (2011–2013)</option></select></label>\
                     <button type=\"submit\" id=\"sdk-pay\">用支付宝 SDK 付款 Pay in the SDK</button></form>\
                     <p><a href=\"/shop\">回到商城 Back to the shop</a> (订单状态 / order status)</p></div></main>",
                    no = esc(&field("out_trade_no")),
                    fee = esc(&field("total_fee")),
                    order = esc(&field("order_string")),
                ),
            ),
        )
    }

    /// The buyer back from payhost: the parameters must carry payhost's signature; the status
    /// shown is payhost's (asked again on every refresh until the payment is confirmed).
    async fn returned(&self, query: &str) -> Response<Body> {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        // payhost signed everything but `m` (the shop's own, in its return_url) and `sign`.
        if !return_signature_ok(&self.webhook_secret, &params, &["m"]) {
            return html(400, page("验证失败", "<main><div class=\"card err\" id=\"result\">返回参数验证失败 / The return is not signed by payhost.</div></main>"));
        }
        let merchant = get("m");
        let no = get("out_trade_no");
        let status = if MERCHANT_IDS.contains(&merchant.as_str()) {
            self.payhost_status(&merchant, &no).await
        } else {
            None
        }
        .unwrap_or_else(|| get("status"));
        let paid = status == "TRADE_SUCCESS" || status == "TRADE_FINISHED";
        let refresh = if paid {
            ""
        } else {
            "<meta http-equiv=\"refresh\" content=\"1\">"
        };
        let body = format!(
            "{refresh}<header><strong>payhost 演示商城 Demo shop</strong><a href=\"/shop\">继续购物 Shop</a></header><main>\
             <div class=\"card {}\" id=\"result\"><h2 id=\"order-status\">{}</h2><p>订单号 Order <span id=\"order-no\">{}</span> · ￥{}</p></div></main>",
            if paid { "ok" } else { "" },
            if paid { "支付成功 paid" } else { "等待支付宝确认… waiting for Alipay's confirmation" },
            esc(&no),
            esc(&get("total_fee"))
        );
        html(200, page("支付结果", &body))
    }
}

fn unix_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn status_label(s: &str) -> &'static str {
    match s {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => "已支付 paid",
        "TRADE_CLOSED" => "已关闭 closed",
        "REFUNDED" => "已退款 refunded",
        "PARTIALLY_REFUNDED" => "部分退款 partly refunded",
        _ => "待支付 waiting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo shop's orders read as paid once paid: a partly refunded one was "waiting".
    #[test]
    fn a_partly_refunded_order_is_not_waiting() {
        assert_eq!(
            status_label("PARTIALLY_REFUNDED"),
            "部分退款 partly refunded"
        );
        assert_eq!(status_label("WAIT_BUYER_PAY"), "待支付 waiting");
    }

    #[test]
    fn builds_the_merchants_on_the_sandbox() {
        let demo = build(&DemoOptions {
            public_url: "http://127.0.0.1:18080/".into(),
            api_token: Some("token-0123456789abcdef".into()),
            sandbox_speed: 1.0,
            sandbox_merchants: vec![("2088000000000077".into(), "k".repeat(32))],
        })
        .unwrap();
        assert_eq!(demo.sandbox_origin, "http://127.0.0.1:18080");
        assert_eq!(demo.api_token, "token-0123456789abcdef");
        let ids: Vec<&str> = demo.merchants.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, MERCHANT_IDS);
        for m in &demo.merchants {
            assert_eq!(m.shop_webhook_url, "http://127.0.0.1:18080/shop/webhook");
            assert_eq!(m.shop_webhook_secret, demo.webhook_secret);
            let (key, url) = if m.id == "open-shop" {
                (
                    "gateway",
                    "http://127.0.0.1:18080/sandbox/openapi/gateway.do",
                )
            } else {
                ("gateway_url", "http://127.0.0.1:18080/sandbox/gateway")
            };
            assert!(m.settings.contains(&(key.into(), url.into())), "{}", m.id);
        }
        let rsa = &demo.merchants[2].settings;
        assert!(rsa
            .iter()
            .any(|(k, v)| k == "private_key" && v.starts_with("-----BEGIN PRIVATE KEY-----")));
        assert_eq!(demo.sandbox_settings.len(), 5);
        assert!(origin_of("127.0.0.1:8080").is_err());
        assert_eq!(path_segment("A b/é"), "A%20b%2F%C3%A9");
    }
}
