//! Alipay's open platform (`gateway.do`, an `app_id`, RSA2) as the sandbox plays it, written from
//! the protocol reference ([OPENAPI]), sharing no code with the component:
//!
//! * `GET|POST {base}/openapi/gateway.do` — every call checks the common parameters and the
//!   app's signature ([OPENAPI §3.1]: `sign_type` signed, empty values and `sign` left out), then by
//!   `method`: `alipay.trade.wap.pay` and `alipay.trade.page.pay` open the cashier page;
//!   `alipay.trade.query`, `alipay.trade.refund`, `alipay.trade.fastpay.refund.query` and
//!   `alipay.trade.close` and `alipay.data.dataservice.bill.downloadurl.query` ([`crate::bill`])
//!   answer JSON whose node is signed as sent, `/` escaped as `\/` ([OPENAPI §7.2]).
//! * `POST {base}/openapi/cashier/pay|cancel` — the buyer pays (the notify goes out on Alipay's
//!   schedule, signed by the V1 rule; the browser returns with the signed return) or leaves
//!   (to `quit_url`).
//! * A partial refund sends a notify that stays `TRADE_SUCCESS` with `refund_fee`, `gmt_refund`
//!   and `out_biz_no` ([OPENAPI §6.6]); a full one closes the trade without a notify.

use crate::web::{self, html, json, redirect, Body};
use crate::{NotifyDelivery, Sandbox};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::Response;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// An app the sandbox knows: its id, the public key it signs with, the seller it is paid to,
/// and the key the sandbox signs as Alipay with.
#[derive(Clone)]
pub struct OpenApiApp {
    pub app_id: String,
    pub seller_id: String,
    pub app_public: RsaPublicKey,
    pub alipay_private: RsaPrivateKey,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpenRefund {
    pub out_request_no: String,
    pub amount_fen: u64,
    pub reason: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpenTrade {
    pub app_id: String,
    pub token: String,
    pub method: String,
    pub out_trade_no: String,
    pub subject: String,
    pub total_fen: u64,
    pub seller_id: String,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub quit_url: Option<String>,
    pub status: String,
    pub trade_no: Option<String>,
    pub buyer_id: Option<String>,
    pub gmt_create: String,
    pub gmt_payment: Option<String>,
    pub refunds: Vec<OpenRefund>,
}

impl OpenTrade {
    fn refunded_fen(&self) -> u64 {
        self.refunds.iter().map(|r| r.amount_fen).sum()
    }
}

/// The open platform's part of the sandbox's state.
#[derive(Default)]
pub struct OpenApiState {
    apps: Mutex<HashMap<String, OpenApiApp>>,
    /// By token.
    trades: Mutex<HashMap<String, OpenTrade>>,
}

/// Which algorithm a `sign_type` names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rsa2,
    Rsa,
}

fn alg(sign_type: &str) -> Option<Alg> {
    match sign_type {
        "RSA2" => Some(Alg::Rsa2),
        "RSA" => Some(Alg::Rsa),
        _ => None,
    }
}

fn sign_text(key: &RsaPrivateKey, alg: Alg, text: &[u8]) -> String {
    let sig = match alg {
        Alg::Rsa2 => key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(text)),
        Alg::Rsa => key.sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(text)),
    }
    .expect("a 1024-bit or larger key signs a digest");
    B64.encode(sig)
}

fn verify_text(key: &RsaPublicKey, alg: Alg, text: &[u8], sign: &str) -> bool {
    let Ok(sig) = B64.decode(sign.trim()) else {
        return false;
    };
    match alg {
        Alg::Rsa2 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(text), &sig),
        Alg::Rsa => key.verify(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(text), &sig),
    }
    .is_ok()
}

/// `k=v&…` over the pairs kept by `keep`, keys in byte order, raw values.
fn joined(params: &[(String, String)], keep: impl Fn(&str, &str) -> bool) -> String {
    let mut kept: Vec<&(String, String)> = params.iter().filter(|(k, v)| keep(k, v)).collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The request string the gateway checks ([OPENAPI §3.1]).
pub fn request_string(params: &[(String, String)]) -> String {
    joined(params, |k, v| k != "sign" && !v.is_empty())
}

/// The string Alipay signs a notify or return with ([OPENAPI §6.3], V1).
pub fn notify_string(params: &[(String, String)]) -> String {
    joined(params, |k, _| k != "sign" && k != "sign_type")
}

/// Fen from a `total_amount` / `refund_amount`: at most two places, in [0.01, 100000000].
fn fen(amount: &str) -> Option<u64> {
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if int.is_empty()
        || int.len() > 9
        || frac.len() > 2
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let cents = format!("{frac:0<2}");
    let v = int.parse::<u64>().ok()? * 100 + cents.parse::<u64>().ok()?;
    (1..=10_000_000_000).contains(&v).then_some(v)
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn get<'a>(params: &'a [(String, String)], key: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// Why a call was refused before its method ran: an unsigned `error_response` ([OPENAPI §7.2]).
fn error_response(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> Response<Body> {
    json(
        200,
        &serde_json::json!({"error_response": {
            "code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg,
        }}),
    )
}

impl Sandbox {
    /// Makes an app known to the sandbox.
    pub fn add_openapi_app(&self, app: OpenApiApp) {
        self.openapi
            .apps
            .lock()
            .unwrap()
            .insert(app.app_id.clone(), app);
    }

    /// An open-platform trade by its order number, for tests.
    pub fn openapi_trade(&self, app_id: &str, out_trade_no: &str) -> Option<OpenTrade> {
        self.openapi
            .trades
            .lock()
            .unwrap()
            .values()
            .find(|t| t.app_id == app_id && t.out_trade_no == out_trade_no)
            .cloned()
    }

    /// Every open-platform trade, for `GET {base}/state`.
    pub fn openapi_trades(&self) -> Vec<OpenTrade> {
        self.openapi
            .trades
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    /// The seller an app is paid to (the bill's account).
    pub(crate) fn openapi_seller(&self, app_id: &str) -> Option<String> {
        self.openapi
            .apps
            .lock()
            .unwrap()
            .get(app_id)
            .map(|a| a.seller_id.clone())
    }

    fn beijing_now(&self) -> String {
        // Alipay writes Beijing time (UTC+8).
        web::alipay_time(web::unix_now() + 8 * 3600)
    }

    /// A signed JSON answer ([OPENAPI §7.2]): `{"<node>":{…},"sign":"…"}`, the node with `/` escaped as
    /// `\/` as Alipay writes it, and signed over exactly those bytes.
    fn signed_answer(
        &self,
        app: &OpenApiApp,
        alg: Alg,
        method: &str,
        node: serde_json::Value,
    ) -> Response<Body> {
        let node_text = serde_json::to_string(&node)
            .expect("serialisable")
            .replace('/', "\\/");
        let sign = sign_text(&app.alipay_private, alg, node_text.as_bytes());
        let name = format!("{}_response", method.replace('.', "_"));
        let body = format!(
            "{{\"{name}\":{node_text},\"sign\":{}}}",
            serde_json::to_string(&sign).expect("a string serialises")
        );
        // Alipay's gateway labels its JSON text/html.
        web::xml("text/html;charset=utf-8", body)
    }

    /// `{base}/openapi/gateway.do`: the common checks, then the method.
    pub(crate) fn openapi_gateway(
        &self,
        mut params: Vec<(String, String)>,
        form: Vec<(String, String)>,
    ) -> Response<Body> {
        params.extend(form);
        let method = get(&params, "method").to_owned();
        let page = matches!(
            method.as_str(),
            "alipay.trade.wap.pay" | "alipay.trade.page.pay"
        );
        let refuse = |sub_code: &str, why: &str| {
            if page {
                html(
                    400,
                    web::page(
                        "支付宝 · 参数错误",
                        &format!("<h1>{}</h1><p>{}</p>", web::esc(sub_code), web::esc(why)),
                    ),
                )
            } else {
                error_response("40002", "Invalid Arguments", sub_code, why)
            }
        };
        let Some(app) = self
            .openapi
            .apps
            .lock()
            .unwrap()
            .get(get(&params, "app_id"))
            .cloned()
        else {
            return refuse("isv.invalid-app-id", "无效的AppID参数");
        };
        let Some(alg) = alg(get(&params, "sign_type")) else {
            return refuse(
                "isv.invalid-signature-type",
                "sign_type must be RSA2 or RSA",
            );
        };
        if !get(&params, "charset").eq_ignore_ascii_case("utf-8") {
            return refuse("isv.invalid-charset", "charset must be utf-8");
        }
        if get(&params, "version") != "1.0" {
            return refuse("isv.invalid-version", "version must be 1.0");
        }
        let ts = get(&params, "timestamp");
        if ts.len() != 19 || ts.as_bytes()[10] != b' ' {
            return refuse(
                "isv.invalid-timestamp",
                "非法的时间戳参数 (yyyy-MM-dd HH:mm:ss)",
            );
        }
        if !verify_text(
            &app.app_public,
            alg,
            request_string(&params).as_bytes(),
            get(&params, "sign"),
        ) {
            return refuse(
                "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
            );
        }
        let biz: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_str(get(&params, "biz_content")) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => {
                    return refuse(
                        "isv.invalid-biz-content",
                        "biz_content is not a JSON object",
                    )
                }
            };
        let b = |k: &str| {
            biz.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        match method.as_str() {
            "alipay.trade.wap.pay" | "alipay.trade.page.pay" => {
                self.open_cashier(&app, &method, &params, &b)
            }
            "alipay.trade.query" => self.query(&app, alg, &b("out_trade_no")),
            "alipay.trade.refund" => {
                let answer = self.refund_call(&app, alg, &b);
                // Faults: the refund is made, then its answer is lost or "outcome unknown".
                let (lost, unknown) = {
                    let mut f = self.faults.lock().unwrap();
                    let lost = f.refund_answers_lost > 0;
                    let unknown = !lost && f.refund_system_errors > 0;
                    if lost {
                        f.refund_answers_lost -= 1;
                    } else if unknown {
                        f.refund_system_errors -= 1;
                    }
                    (lost, unknown)
                };
                if lost {
                    web::text(500, "<html><body>500 Internal Server Error</body></html>")
                } else if unknown {
                    self.business_failed(&app, alg, &method, "ACQ.SYSTEM_ERROR", "系统错误")
                } else {
                    answer
                }
            }
            "alipay.trade.fastpay.refund.query" => self.refund_query(&app, alg, &b),
            "alipay.trade.close" => self.close(&app, alg, &b("out_trade_no")),
            "alipay.data.dataservice.bill.downloadurl.query" => {
                let node = self.bill_url_node(&app, &b("bill_type"), &b("bill_date"));
                self.signed_answer(&app, alg, &method, node)
            }
            other => error_response(
                "40004",
                "Business Failed",
                "isv.invalid-method",
                &format!("unknown method {other}"),
            ),
        }
    }

    fn open_cashier(
        &self,
        app: &OpenApiApp,
        method: &str,
        params: &[(String, String)],
        b: &dyn Fn(&str) -> String,
    ) -> Response<Body> {
        let product = if method == "alipay.trade.wap.pay" {
            "QUICK_WAP_WAY"
        } else {
            "FAST_INSTANT_TRADE_PAY"
        };
        let bad = |why: &str| {
            html(
                400,
                web::page(
                    "支付宝 · 参数错误",
                    &format!("<h1>ACQ.INVALID_PARAMETER</h1><p>{}</p>", web::esc(why)),
                ),
            )
        };
        if b("product_code") != product {
            return bad(&format!("product_code must be {product} for {method}"));
        }
        let out_trade_no = b("out_trade_no");
        if out_trade_no.is_empty() || out_trade_no.len() > 64 {
            return bad("out_trade_no must be 1 to 64 characters");
        }
        let Some(total_fen) = fen(&b("total_amount")) else {
            return bad("total_amount must be yuan with at most two decimals in [0.01, 100000000]");
        };
        let subject = b("subject");
        if subject.is_empty() {
            return bad("subject is required");
        }
        let seller_id = Some(b("seller_id"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| app.seller_id.clone());
        let mut trades = self.openapi.trades.lock().unwrap();
        if let Some(t) = trades
            .values()
            .find(|t| t.app_id == app.app_id && t.out_trade_no == out_trade_no)
        {
            if t.total_fen != total_fen {
                return bad("ACQ.CONTEXT_INCONSISTENT: the order exists with another total_amount");
            }
            let t = t.clone();
            drop(trades);
            return html(200, self.cashier_page(&t));
        }
        let token = self.new_token("open", self.now());
        let trade = OpenTrade {
            app_id: app.app_id.clone(),
            token: token.clone(),
            method: method.to_owned(),
            out_trade_no,
            subject,
            total_fen,
            seller_id,
            notify_url: Some(get(params, "notify_url").to_owned()).filter(|u| !u.is_empty()),
            return_url: Some(get(params, "return_url").to_owned()).filter(|u| !u.is_empty()),
            quit_url: Some(b("quit_url")).filter(|u| !u.is_empty()),
            status: "WAIT_BUYER_PAY".into(),
            trade_no: None,
            buyer_id: None,
            gmt_create: self.beijing_now(),
            gmt_payment: None,
            refunds: Vec::new(),
        };
        trades.insert(token, trade.clone());
        drop(trades);
        html(200, self.cashier_page(&trade))
    }

    fn cashier_page(&self, t: &OpenTrade) -> String {
        let form = |action: &str, label: &str| {
            format!(
                "<form method=\"post\" action=\"{}/openapi/cashier/{action}\"><input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\">{label}</button></form>",
                web::esc(&self.public_base),
                web::esc(&t.token)
            )
        };
        web::page(
            "支付宝收银台 (开放平台沙箱)",
            &format!(
                "<h1>支付宝收银台</h1><p>订单 {} · {}</p><p class=\"amount\">￥{}</p><p>收款方 {}</p>{}{}",
                web::esc(&t.out_trade_no),
                web::esc(&t.subject),
                yuan(t.total_fen),
                web::esc(&t.seller_id),
                form("pay", "确认付款"),
                form("cancel", "取消")
            ),
        )
    }

    /// The buyer pays: the notify is queued, the browser goes to the signed return.
    pub(crate) fn openapi_pay(&self, form: &[(String, String)]) -> Response<Body> {
        let token = get(form, "token");
        let paid = {
            let mut trades = self.openapi.trades.lock().unwrap();
            let Some(t) = trades.get_mut(token) else {
                return html(400, web::page("支付宝", "<p>unknown token</p>"));
            };
            if t.status != "WAIT_BUYER_PAY" {
                return html(
                    200,
                    web::page(
                        "支付宝",
                        &format!("<p>交易状态 {}</p>", web::esc(&t.status)),
                    ),
                );
            }
            t.status = "TRADE_SUCCESS".into();
            t.trade_no = Some(format!("2026{:012}{:012}", self.now(), self.next_id()));
            t.buyer_id = Some(format!("2088{:012}", self.next_id() % 1_000_000_000_000));
            t.gmt_payment = Some(self.beijing_now());
            t.clone()
        };
        let Some(app) = self.openapi.apps.lock().unwrap().get(&paid.app_id).cloned() else {
            return html(500, web::page("支付宝", "<p>app vanished</p>"));
        };
        if !self.faults.lock().unwrap().return_without_notify {
            self.queue_open_notify(&app, &paid, Vec::new());
        }
        match &paid.return_url {
            Some(url) => redirect(&self.signed_return(&app, &paid, url)),
            None => html(200, web::page("支付宝", "<p>付款成功</p>")),
        }
    }

    /// The buyer leaves the cashier: back to the shop's `quit_url` when there is one.
    pub(crate) fn openapi_cancel(&self, form: &[(String, String)]) -> Response<Body> {
        let trade = self
            .openapi
            .trades
            .lock()
            .unwrap()
            .get(get(form, "token"))
            .cloned();
        match trade {
            Some(OpenTrade {
                quit_url: Some(u), ..
            }) => redirect(&u),
            Some(_) => html(200, web::page("支付宝", "<p>您已取消付款</p>")),
            None => html(400, web::page("支付宝", "<p>unknown token</p>")),
        }
    }

    fn notify_fields(
        &self,
        app: &OpenApiApp,
        t: &OpenTrade,
        notify_id: &str,
    ) -> Vec<(String, String)> {
        let total = yuan(t.total_fen);
        let mut f: Vec<(String, String)> = [
            ("gmt_create", t.gmt_create.clone()),
            ("charset", "utf-8".into()),
            ("seller_email", "seller@sandbox.example".into()),
            ("subject", t.subject.clone()),
            ("buyer_id", t.buyer_id.clone().unwrap_or_default()),
            ("invoice_amount", total.clone()),
            ("notify_id", notify_id.into()),
            (
                "fund_bill_list",
                format!("[{{\"amount\":\"{total}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]"),
            ),
            ("notify_type", "trade_status_sync".into()),
            ("trade_status", t.status.clone()),
            ("receipt_amount", total.clone()),
            ("app_id", app.app_id.clone()),
            ("buyer_pay_amount", total.clone()),
            ("sign_type", "RSA2".into()),
            ("seller_id", t.seller_id.clone()),
            ("gmt_payment", t.gmt_payment.clone().unwrap_or_default()),
            ("notify_time", self.beijing_now()),
            ("version", "1.0".into()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("total_amount", total),
            ("trade_no", t.trade_no.clone().unwrap_or_default()),
            ("auth_app_id", app.app_id.clone()),
            ("buyer_logon_id", "buy***@sandbox.example".into()),
            ("point_amount", "0.00".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// Queues a notify (V1-signed form, RSA2) with `extra` fields (a refund's).
    fn queue_open_notify(&self, app: &OpenApiApp, t: &OpenTrade, extra: Vec<(String, String)>) {
        let Some(url) = t.notify_url.clone() else {
            return;
        };
        let notify_id = format!("2026{:012}{:016}", self.now(), self.next_id());
        let mut fields = self.notify_fields(app, t, &notify_id);
        fields.extend(extra);
        let sign = sign_text(
            &app.alipay_private,
            Alg::Rsa2,
            notify_string(&fields).as_bytes(),
        );
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fields {
            s.append_pair(k, v);
        }
        s.append_pair("sign", &sign);
        self.notifies.lock().unwrap().push(NotifyDelivery {
            notify_id,
            partner: String::new(),
            out_trade_no: t.out_trade_no.clone(),
            trade_status: t.status.clone(),
            url,
            first_at: self.now(),
            sends: 0,
            acknowledged: false,
            sent_at: Vec::new(),
            last_reply: None,
            last_status: None,
            body: s.finish(),
            in_flight: false,
        });
    }

    fn signed_return(&self, app: &OpenApiApp, t: &OpenTrade, url: &str) -> String {
        let fields: Vec<(String, String)> = [
            ("charset", "utf-8".to_owned()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("method", format!("{}.return", t.method)),
            ("total_amount", yuan(t.total_fen)),
            ("sign_type", "RSA2".into()),
            ("trade_no", t.trade_no.clone().unwrap_or_default()),
            ("auth_app_id", app.app_id.clone()),
            ("version", "1.0".into()),
            ("app_id", app.app_id.clone()),
            ("seller_id", t.seller_id.clone()),
            ("timestamp", self.beijing_now()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let sign = sign_text(
            &app.alipay_private,
            Alg::Rsa2,
            notify_string(&fields).as_bytes(),
        );
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fields {
            s.append_pair(k, v);
        }
        s.append_pair("sign", &sign);
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{}", s.finish())
    }

    fn find_trade(&self, app: &OpenApiApp, out_trade_no: &str) -> Option<OpenTrade> {
        self.openapi_trade(&app.app_id, out_trade_no)
    }

    fn not_exist(
        &self,
        app: &OpenApiApp,
        alg: Alg,
        method: &str,
        out_trade_no: &str,
    ) -> Response<Body> {
        self.signed_answer(
            app,
            alg,
            method,
            serde_json::json!({
                "code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                "sub_msg": "交易不存在", "out_trade_no": out_trade_no,
            }),
        )
    }

    fn business_failed(
        &self,
        app: &OpenApiApp,
        alg: Alg,
        method: &str,
        sub_code: &str,
        sub_msg: &str,
    ) -> Response<Body> {
        self.signed_answer(
            app,
            alg,
            method,
            serde_json::json!({
                "code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg,
            }),
        )
    }

    /// `alipay.trade.query` ([OPENAPI §7.4]): a trade the buyer never opened does not exist yet.
    fn query(&self, app: &OpenApiApp, alg: Alg, out_trade_no: &str) -> Response<Body> {
        let method = "alipay.trade.query";
        let Some(t) = self.find_trade(app, out_trade_no) else {
            return self.not_exist(app, alg, method, out_trade_no);
        };
        let total = yuan(t.total_fen);
        let mut node = serde_json::json!({
            "code": "10000", "msg": "Success",
            "out_trade_no": t.out_trade_no, "trade_status": t.status, "total_amount": total,
            "subject": t.subject,
        });
        if let Some(no) = &t.trade_no {
            node["trade_no"] = no.clone().into();
            node["buyer_logon_id"] = "buy***@sandbox.example".into();
            node["buyer_user_id"] = t.buyer_id.clone().unwrap_or_default().into();
            node["receipt_amount"] = total.clone().into();
            node["buyer_pay_amount"] = total.into();
        }
        if let Some(p) = &t.gmt_payment {
            node["send_pay_date"] = p.clone().into();
        }
        self.signed_answer(app, alg, method, node)
    }

    /// A refund the merchant made in the open platform's own back office (not through payhost):
    /// `app_id`, `out_trade_no`, `refund_amount`, `out_request_no`. Made as `alipay.trade.refund`
    /// makes one: part of the trade notifies (`TRADE_SUCCESS` with the cumulative `refund_fee`
    /// and `out_biz_no`), all of it closes the trade without a notify ([OPENAPI §6.6]).
    pub(crate) fn openapi_portal_refund(&self, form: &[(String, String)]) -> Response<Body> {
        let Some(app) = self
            .openapi
            .apps
            .lock()
            .unwrap()
            .get(get(form, "app_id"))
            .cloned()
        else {
            return crate::web::text(400, "unknown app_id");
        };
        let field = |k: &str| get(form, k).trim().to_owned();
        self.refund_call(&app, Alg::Rsa2, &field)
    }

    /// `alipay.trade.refund` ([OPENAPI §7.5]): idempotent per `out_request_no`; never above what was paid.
    fn refund_call(
        &self,
        app: &OpenApiApp,
        alg: Alg,
        b: &dyn Fn(&str) -> String,
    ) -> Response<Body> {
        let method = "alipay.trade.refund";
        let out_trade_no = b("out_trade_no");
        let Some(amount) = fen(&b("refund_amount")) else {
            return self.business_failed(
                app,
                alg,
                method,
                "ACQ.INVALID_PARAMETER",
                "refund_amount must be yuan with at most two decimals",
            );
        };
        let out_request_no = Some(b("out_request_no"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| out_trade_no.clone());
        let (trade, fund_change, extra) = {
            let mut trades = self.openapi.trades.lock().unwrap();
            let Some(t) = trades
                .values_mut()
                .find(|t| t.app_id == app.app_id && t.out_trade_no == out_trade_no)
            else {
                drop(trades);
                return self.not_exist(app, alg, method, &out_trade_no);
            };
            if let Some(r) = t
                .refunds
                .iter()
                .find(|r| r.out_request_no == out_request_no)
            {
                if r.amount_fen != amount {
                    drop(trades);
                    return self.business_failed(
                        app,
                        alg,
                        method,
                        "ACQ.DISCORDANT_REPEAT_REQUEST",
                        "请求不一致",
                    );
                }
                (t.clone(), "N", None)
            } else {
                if t.status != "TRADE_SUCCESS" {
                    drop(trades);
                    return self.business_failed(
                        app,
                        alg,
                        method,
                        "ACQ.TRADE_STATUS_ERROR",
                        "交易状态不合法",
                    );
                }
                if t.refunded_fen() + amount > t.total_fen {
                    drop(trades);
                    return self.business_failed(
                        app,
                        alg,
                        method,
                        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                        "退款金额超限",
                    );
                }
                let at = self.beijing_now();
                t.refunds.push(OpenRefund {
                    out_request_no: out_request_no.clone(),
                    amount_fen: amount,
                    reason: b("refund_reason"),
                    at: at.clone(),
                });
                let full = t.refunded_fen() == t.total_fen;
                if full {
                    t.status = "TRADE_CLOSED".into();
                }
                let extra = (!full).then(|| {
                    vec![
                        ("gmt_refund".to_owned(), at),
                        ("refund_fee".to_owned(), yuan(t.refunded_fen())),
                        ("out_biz_no".to_owned(), out_request_no.clone()),
                        ("send_back_fee".to_owned(), yuan(amount)),
                    ]
                });
                (t.clone(), "Y", extra)
            }
        };
        if let Some(extra) = extra {
            self.queue_open_notify(app, &trade, extra);
        }
        self.signed_answer(
            app,
            alg,
            method,
            serde_json::json!({
                "code": "10000", "msg": "Success",
                "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "buyer_logon_id": "buy***@sandbox.example",
                "fund_change": fund_change, "refund_fee": yuan(trade.refunded_fen()),
                "gmt_refund_pay": self.beijing_now(),
            }),
        )
    }

    /// `alipay.trade.fastpay.refund.query` ([OPENAPI §7.6]): `REFUND_SUCCESS` for a refund made.
    fn refund_query(
        &self,
        app: &OpenApiApp,
        alg: Alg,
        b: &dyn Fn(&str) -> String,
    ) -> Response<Body> {
        let method = "alipay.trade.fastpay.refund.query";
        let out_trade_no = b("out_trade_no");
        let Some(t) = self.find_trade(app, &out_trade_no) else {
            return self.not_exist(app, alg, method, &out_trade_no);
        };
        let out_request_no = b("out_request_no");
        let mut node = serde_json::json!({
            "code": "10000", "msg": "Success",
            "out_trade_no": t.out_trade_no, "out_request_no": out_request_no,
            "total_amount": yuan(t.total_fen),
        });
        if let Some(r) = t
            .refunds
            .iter()
            .find(|r| r.out_request_no == out_request_no)
        {
            node["refund_status"] = "REFUND_SUCCESS".into();
            node["refund_amount"] = yuan(r.amount_fen).into();
            node["refund_reason"] = r.reason.clone().into();
            node["trade_no"] = t.trade_no.clone().unwrap_or_default().into();
        }
        self.signed_answer(app, alg, method, node)
    }

    /// `alipay.trade.close` ([OPENAPI §7.7]): only an unpaid trade closes.
    fn close(&self, app: &OpenApiApp, alg: Alg, out_trade_no: &str) -> Response<Body> {
        let method = "alipay.trade.close";
        let closed = {
            let mut trades = self.openapi.trades.lock().unwrap();
            match trades
                .values_mut()
                .find(|t| t.app_id == app.app_id && t.out_trade_no == out_trade_no)
            {
                None => None,
                Some(t) if t.status == "WAIT_BUYER_PAY" => {
                    t.status = "TRADE_CLOSED".into();
                    Some(Ok(t.clone()))
                }
                Some(t) => Some(Err(t.status.clone())),
            }
        };
        match closed {
            None => self.not_exist(app, alg, method, out_trade_no),
            Some(Err(status)) => self.business_failed(
                app,
                alg,
                method,
                "ACQ.TRADE_STATUS_ERROR",
                &format!("交易状态不合法 ({status})"),
            ),
            Some(Ok(t)) => self.signed_answer(
                app,
                alg,
                method,
                serde_json::json!({
                    "code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no,
                    "trade_no": t.trade_no.unwrap_or_default(),
                }),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};

    /// The reference's vectors, read by this independent implementation (shared with the
    /// component's tests as data only).
    fn vectors_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin/testdata/openapi")
    }

    fn read(rel: &str) -> String {
        std::fs::read_to_string(vectors_dir().join(rel)).unwrap()
    }

    fn vectors() -> serde_json::Value {
        serde_json::from_str(&read("vectors.json")).unwrap()
    }

    fn params(v: &serde_json::Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn request_strings_and_signatures_match_the_reference() {
        let v = vectors();
        let app_key =
            RsaPrivateKey::from_pkcs8_pem(&read("keys/app_test_private_pkcs8.pem")).unwrap();
        let app_pub = RsaPublicKey::from_public_key_pem(&read("keys/app_test_public.pem")).unwrap();
        for case in [
            "wap_pay",
            "page_pay",
            "trade_query_request",
            "trade_refund_request",
        ] {
            let p = params(&v[case]["params"]);
            let s = request_string(&p);
            assert_eq!(s, v[case]["sign_content"].as_str().unwrap(), "{case}");
            assert_eq!(
                sign_text(&app_key, Alg::Rsa2, s.as_bytes()),
                v[case]["sign"].as_str().unwrap()
            );
            assert!(verify_text(
                &app_pub,
                Alg::Rsa2,
                s.as_bytes(),
                v[case]["sign"].as_str().unwrap()
            ));
        }
    }

    #[test]
    fn notify_string_matches_the_reference_and_verifies() {
        let v = vectors();
        let alipay_pub =
            RsaPublicKey::from_public_key_pem(&read("keys/alipay_test_public.pem")).unwrap();
        for case in ["notify_trade_success", "notify_partial_refund"] {
            let body = read(v[case]["form_body_file"].as_str().unwrap());
            let p: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            let s = notify_string(&p);
            assert_eq!(s, v[case]["sign_content"].as_str().unwrap(), "{case}");
            assert!(
                verify_text(&alipay_pub, Alg::Rsa2, s.as_bytes(), get(&p, "sign")),
                "{case}"
            );
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(fen("88.88"), Some(8888));
        assert_eq!(fen("1"), Some(100));
        assert_eq!(fen("0.1"), Some(10));
        assert_eq!(fen("0.00"), None);
        assert_eq!(fen("1.001"), None);
        assert_eq!(fen("-1"), None);
        assert_eq!(fen("100000000.01"), None);
        assert_eq!(yuan(8888), "88.88");
    }
}
