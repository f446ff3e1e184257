//! `payhost demo`: payhost on its embedded defaults, with the sandbox gateway and a small demo shop
//! (three products, one of them sold by another seller through the C2C marketplace merchant).
//! A newcomer buys, pays in the sandbox cashier, lands back on the shop and sees the order paid,
//! then opens `/admin` to see the payment and its notifications.

use crate::config::{Config, MerchantSettings, WebhookConfig};
use crate::http::admin::{esc, page};
use crate::http::{html, redirect, text, Body};
use crate::sandbox::{wire::Keys, Sandbox, SandboxMerchant};
use crate::service::{hmac_hex, App, CreatePayment};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use rand_core::RngCore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

pub const B2C_PARTNER: &str = "2088000000000001";
pub const C2C_PARTNER: &str = "2088000000000002";
pub const RSA_PARTNER: &str = "2088000000000003";
pub const MARKET_SELLER: &str = "13800138000";

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
    pub listen: SocketAddr,
    pub manifest: PathBuf,
    pub database: Option<PathBuf>,
    pub api_token: Option<String>,
    /// The admin page's password (`payhost demo` hashes it at start).
    pub admin_password: String,
    pub sandbox_speed: f64,
    /// More MD5 merchants the sandbox knows, as (partner, key): shops that configure payhost
    /// themselves (the adapters) pay through the sandbox with them.
    pub sandbox_merchants: Vec<(String, String)>,
    /// Origins allowed besides the demo itself (`--allow-origin`), e.g. a local shop's webhook.
    pub allowed_origins: Vec<String>,
}

/// The demo configuration, the sandbox that plays Alipay, and the shop.
pub fn build(opts: &DemoOptions) -> anyhow::Result<(Config, Arc<Sandbox>, Arc<DemoShop>)> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let public = format!("http://{}", opts.listen);
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
    let merchant_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024)?;
    let alipay_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024)?;
    sandbox.add_merchant(SandboxMerchant {
        partner: RSA_PARTNER.into(),
        keys: Keys::Rsa {
            merchant_public: Box::new(merchant_key.to_public_key()),
            alipay_private: Box::new(alipay_key.clone()),
        },
        privileged: true,
    });
    let common = |partner: &str| -> Vec<(String, String)> {
        vec![
            ("partner".into(), partner.into()),
            ("gateway_url".into(), format!("{public}/sandbox/gateway")),
            ("notify_verify_url".into(), format!("{public}/sandbox/mapi")),
            ("paychannel_url".into(), format!("{public}/sandbox/mapi")),
            ("mapi_url".into(), format!("{public}/sandbox/mapi")),
        ]
    };
    let hook = |m: Vec<(String, String)>| MerchantSettings {
        plugin: m,
        shop_webhook_url: Some(format!("{public}/shop/webhook")),
        shop_webhook_secret: Some(webhook_secret.clone()),
        shop_origins: Vec::new(),
    };
    let mut merchants = BTreeMap::new();
    let mut b2c = common(B2C_PARTNER);
    b2c.extend([
        ("key".into(), md5_b2c),
        ("seller_email".into(), "shop@demo.example".into()),
    ]);
    merchants.insert("demo".to_owned(), hook(b2c));
    let mut c2c = common(C2C_PARTNER);
    c2c.extend([("key".into(), md5_c2c), ("mode".into(), "c2c".into())]);
    merchants.insert("market".to_owned(), hook(c2c));
    let mut rsa_m = common(RSA_PARTNER);
    rsa_m.extend([
        ("sign_type".into(), "RSA".into()),
        ("seller_email".into(), "cups@demo.example".into()),
        (
            "private_key".into(),
            merchant_key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
        ),
        (
            "alipay_public_key".into(),
            alipay_key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)?,
        ),
        // PC pay and the trade query are signed by the same sandbox key.
        (
            "mapi_public_key".into(),
            alipay_key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)?,
        ),
    ]);
    merchants.insert("rsa-shop".to_owned(), hook(rsa_m));
    let database = opts.database.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("payhost-demo-{}.db", std::process::id()))
    });
    let config = Config {
        listen: opts.listen,
        public_url: public.clone(),
        database,
        database_url: None,
        database_pool_size: crate::store::postgres::DEFAULT_POOL_SIZE,
        api_token,
        cache_dir: std::env::temp_dir().join("payhost-demo-cache"),
        manifest: opts.manifest.clone(),
        call_timeout_ms: None,
        merchants,
        webhooks: WebhookConfig {
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            timeout_ms: 5_000,
            ..WebhookConfig::default()
        },
        // The demo shop's webhook endpoint and the sandbox are this process itself.
        allowed_origins: std::iter::once(public.as_str())
            .chain(opts.allowed_origins.iter().map(String::as_str))
            .map(|o| {
                crate::net::Origin::parse(o)
                    .map_err(|e| anyhow::anyhow!("--allow-origin {o:?}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?,
        admin_password_hash: Some(crate::auth::hash_password(&opts.admin_password)?),
        trust_proxy: false,
        metrics_listen: None,
        limits: Default::default(),
        retention: Default::default(),
        recovery: Default::default(),
        admin: Default::default(),
    };
    let shop = Arc::new(DemoShop {
        public,
        webhook_secret,
        events: Mutex::default(),
    });
    Ok((config, sandbox, shop))
}

/// The demo shop: products, buying, the signed return page and the webhook receiver.
pub struct DemoShop {
    public: String,
    webhook_secret: String,
    /// Events received by the webhook, newest last.
    pub events: Mutex<Vec<serde_json::Value>>,
}

impl DemoShop {
    pub async fn handle(
        &self,
        app: &Arc<App>,
        req: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/shop") => self.index(app),
            (Method::POST, p) if p.starts_with("/shop/buy/") => {
                // The buyer's browser decides the cashier: phones WAP, desktops PC (product auto).
                let ua = req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                self.buy(app, &p["/shop/buy/".len()..], ua).await
            }
            (Method::GET, "/shop/return") => self.returned(app, &query),
            (Method::POST, p) if p.starts_with("/shop/app/") => {
                self.app_checkout(app, &p["/shop/app/".len()..]).await
            }
            (Method::POST, "/shop/webhook") => {
                let signature = req
                    .headers()
                    .get("x-payhost-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let now = crate::store::now_ms() / 1000;
                if !crate::webhooks::verify_signature_header(
                    &self.webhook_secret,
                    &signature,
                    &body,
                    now,
                    300,
                ) {
                    return text(401, "bad signature");
                }
                if let Ok(v) = serde_json::from_slice(&body) {
                    self.events.lock().unwrap().push(v);
                }
                text(200, "ok")
            }
            _ => text(404, "no such shop page"),
        }
    }

    fn index(&self, app: &Arc<App>) -> Response<Body> {
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
        for m in ["demo", "market", "rsa-shop"] {
            for pay in app.store.recent_payments(Some(m), 10).unwrap_or_default() {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td class=\"status-{}\">{}</td></tr>",
                    esc(&pay.out_trade_no),
                    esc(&pay.total_fee()),
                    esc(&pay.status),
                    status_label(&pay.status)
                ));
            }
        }
        body.push_str("</table></div></main>");
        html(200, page("payhost 演示商城", &body))
    }

    async fn buy(
        &self,
        app: &Arc<App>,
        product: &str,
        user_agent: Option<String>,
    ) -> Response<Body> {
        let Some(p) = PRODUCTS.iter().find(|p| p.id == product) else {
            return text(404, "no such product");
        };
        let out_trade_no = format!(
            "DEMO{}{}",
            crate::store::now_ms(),
            rand_core::OsRng.next_u32() % 1000
        );
        let request = CreatePayment {
            out_trade_no: Some(out_trade_no),
            subject: Some(p.name.to_owned()),
            total_fee: Some(serde_json::Value::String(p.price.to_owned())),
            return_url: Some(format!("{}/shop/return?m={}", self.public, p.merchant)),
            seller_email: p.seller.map(str::to_owned),
            merchant_url: Some(format!("{}/shop", self.public)),
            pay_expire: Some(30),
            out_user: None,
            cashier_code: None,
            product: Some("auto".into()),
            user_agent,
        };
        match app.create_payment(p.merchant, request).await {
            Ok((_, created)) => match created.pay_url {
                Some(url) => redirect(&url),
                None => html(200, page("已支付", "<main><div class=\"card ok\">该订单已支付 / already paid</div></main>")),
            },
            Err(e) => html(
                e.status,
                page("下单失败", &format!("<main><div class=\"card err\">下单失败 Could not start the payment: {}</div></main>", esc(&e.message))),
            ),
        }
    }

    /// The shop's app checkout, played in the browser: the shop's server asks payhost for the signed
    /// order string (`product = "app"`), and the page hands it to the SDK, here the sandbox's
    /// stand-in (`POST /sandbox/app/pay`), which pays and notifies as Alipay would.
    async fn app_checkout(&self, app: &Arc<App>, product: &str) -> Response<Body> {
        let Some(p) = PRODUCTS
            .iter()
            .find(|p| p.id == product && p.merchant == "rsa-shop")
        else {
            return text(404, "no such app product");
        };
        let request = CreatePayment {
            out_trade_no: Some(format!(
                "APP{}{}",
                crate::store::now_ms(),
                rand_core::OsRng.next_u32() % 1000
            )),
            subject: Some(p.name.to_owned()),
            total_fee: Some(serde_json::Value::String(p.price.to_owned())),
            return_url: Some(format!("{}/shop/return?m={}", self.public, p.merchant)),
            seller_email: None,
            merchant_url: None,
            pay_expire: Some(30),
            out_user: None,
            cashier_code: None,
            product: Some("app".into()),
            user_agent: None,
        };
        match app.create_payment(p.merchant, request).await {
            Ok((_, created)) => {
                let order = created.order_string.unwrap_or_default();
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
                            no = esc(&created.out_trade_no),
                            fee = esc(&created.total_fee),
                            order = esc(&order),
                        ),
                    ),
                )
            }
            Err(e) => html(
                e.status,
                page("下单失败", &format!("<main><div class=\"card err\">下单失败 Could not start the payment: {}</div></main>", esc(&e.message))),
            ),
        }
    }

    fn returned(&self, app: &Arc<App>, query: &str) -> Response<Body> {
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
        // The host signed everything but `m` (ours) and `sign`.
        let signed: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "m" && k != "sign")
            .cloned()
            .collect();
        let mut sorted = signed.clone();
        sorted.sort();
        let canonical = sorted
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let expected = hmac_hex(&self.webhook_secret, canonical.as_bytes());
        if expected
            .as_bytes()
            .ct_eq(get("sign").as_bytes())
            .unwrap_u8()
            != 1
        {
            return html(400, page("验证失败", "<main><div class=\"card err\" id=\"result\">返回参数验证失败 / The return is not signed by payhost.</div></main>"));
        }
        let merchant = get("m");
        let no = get("out_trade_no");
        let status = app
            .store
            .payment(&merchant, &no)
            .ok()
            .flatten()
            .map(|p| p.status)
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

fn status_label(s: &str) -> &'static str {
    match s {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => "已支付 paid",
        "TRADE_CLOSED" => "已关闭 closed",
        "REFUNDED" => "已退款 refunded",
        _ => "待支付 waiting",
    }
}
