//! payhost-sandbox: a stand-in for Alipay's side of WAP pay, PC instant pay and app pay, exact
//! enough to refuse what the real gateway refuses, and a demo shop that uses payhost over HTTP as
//! a real shop would. `payhost demo` and `payhost sandbox` serve them; tests and the conformance
//! kit start them in-process.
//!
//! Written from the protocol reference only: it shares no code with the Alipay component (nor with
//! payhost), so a signing or parsing mistake in one is caught by the other. [`wire`] is Alipay's
//! side of the wire format (MD5 and RSA signatures, RSA encryption, XML, GBK).
//!
//! The gateway, under a path prefix (`/sandbox`):
//!
//! * `POST {base}/gateway` — `alipay.wap.trade.create.direct`: checks every common parameter, the
//!   signature (MD5 or RSA), `req_data` and its fields; answers `res_data` with a fresh token in the
//!   unsorted wire order of real captures (RSA: encrypted to the merchant), or `res_error`.
//! * `GET {base}/gateway?service=alipay.wap.auth.authAndExecute…` — a phone-sized cashier page where
//!   the tester pays or cancels. Paying sends the signed notify (fixed-order signature, `v=1.0`, the
//!   20 `notify_data` fields) and redirects to `call_back_url` with the signed return.
//! * `GET {base}/mapi?service=notify_verify` (and `mobile.merchant.paychannel`,
//!   `single_trade_query`, `create_direct_pay_by_user`: the PC cashier).
//! * `POST {base}/app/pay` — the app SDK's stand-in; `POST {base}/refund` — a back-office refund;
//!   `POST {base}/finish` — the end of a trade's refundable period (`TRADE_FINISHED`).
//! * `GET {base}/mapi?service=refund_fastpay_by_platform_pwd` — the seller's refund page (payment
//!   password, then the batch notify; [`refund`]).
//! * Notify retries on Alipay's schedule (2m, 10m, 10m, 1h, 2h, 6h, 15h after the first; at most 8
//!   sends; stop at `success`) on a clock that tests speed up (`speed`).
//! * Fault switches (`POST {base}/faults`), and `GET {base}/state` for tests.
//!
//! The demo shop ([`demo`]) is a separate handler under `/shop`.

pub mod bill;
pub mod cashier;
pub mod demo;
pub mod keyfiles;
pub mod openapi;
pub mod outbound;
pub mod refund;
pub mod signature;
pub mod web;
pub mod wire;

use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use web::{html, json, redirect, text, Body};
use wire::Keys;

/// Offsets of the 8 sends from the first one, in sandbox seconds: 0, then 2m, 10m, 10m, 1h, 2h,
/// 6h, 15h apart.
pub const RETRY_OFFSETS_SECS: [u64; 8] = [0, 120, 720, 1_320, 4_920, 12_120, 33_720, 87_720];

/// Errors the sandbox answers, as `res_error` codes. 0000, 0001 and 0005 are Alipay's own
/// ([WAP §3.2]); the others are the sandbox's, for failures whose real code was never captured.
pub mod codes {
    pub const SYSTEM: (&str, &str) = ("0000", "system exception");
    pub const PARAMS: (&str, &str) = ("0001", "common params illegal");
    pub const PARTNER: (&str, &str) = ("0005", "partner illegal");
    pub const SIGN: (&str, &str) = ("0007", "sign error");
    pub const REQ_DATA: (&str, &str) = ("0009", "req_data illegal");
    pub const DUPLICATE: (&str, &str) = ("0010", "out_trade_no duplicate");
}

#[derive(Clone)]
pub struct SandboxMerchant {
    pub partner: String,
    pub keys: Keys,
    /// False answers `0005 partner illegal` (no permission for the interface).
    pub privileged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trade {
    pub partner: String,
    pub token: String,
    pub out_trade_no: String,
    pub subject: String,
    pub total_fee: String,
    pub seller: String,
    pub notify_url: Option<String>,
    pub call_back_url: String,
    pub merchant_url: Option<String>,
    /// Sandbox second at which an unpaid trade closes.
    pub expires_at: Option<u64>,
    pub status: String,
    pub trade_no: Option<String>,
    pub buyer_email: Option<String>,
    pub created_at: u64,
    /// Sandbox second at which the buyer paid (Alipay's `gmt_payment`).
    pub paid_at: Option<u64>,
    /// Created by PC instant pay (`create_direct_pay_by_user`): its notify and return are the
    /// flat, sorted-signed PC forms ([EXTRA §2.3]), not the WAP ones.
    pub pc: bool,
    /// After a refund (`POST {base}/refund`): `REFUND_SUCCESS`, and the refunded amount so far.
    pub refund_status: Option<String>,
    pub refund_fee: Option<String>,
    /// Paid through the app SDK stand-in with a generation-A notify (`notify_data` XML signed as
    /// `notify_data=<xml>`, no notify_verify; [EXTRA §1.4.1]).
    pub app_generation_a: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotifyDelivery {
    pub notify_id: String,
    /// Whose notification it is: Alipay's `notify_verify` confirms a notify_id only for the
    /// partner it was sent for (empty: the open platform's, which has no `notify_verify`).
    #[serde(default)]
    pub partner: String,
    pub out_trade_no: String,
    pub trade_status: String,
    pub url: String,
    /// Sandbox seconds of the first send.
    pub first_at: u64,
    pub sends: u32,
    pub acknowledged: bool,
    /// Sandbox seconds of each send.
    pub sent_at: Vec<u64>,
    pub last_reply: Option<String>,
    /// The HTTP status of the merchant's last answer (a rate limit's 429 says why a notify was
    /// not taken).
    pub last_status: Option<u16>,
    #[serde(skip)]
    pub body: String,
    /// Being sent right now (so two loops never send the same attempt).
    #[serde(skip)]
    pub in_flight: bool,
}

/// Switches for tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The first N notify sends are lost on the way.
    pub drop_first_notifies: u32,
    /// Every gateway and mapi answer waits this long.
    pub delay_ms: u64,
    /// The gateway answers HTTP 500.
    pub answer_500: bool,
    /// Paying waits for the first notify to be answered before redirecting the buyer.
    pub notify_before_return: bool,
    /// Paying redirects the buyer and sends no notify at all.
    pub return_without_notify: bool,
    /// Every notify send is lost (a 掉单 storm): only `single_trade_query` can find the payments.
    pub drop_all_notifies: bool,
    /// The next N open-platform refunds are made, and their answer is lost (HTTP 500).
    pub refund_answers_lost: u32,
    /// The next N open-platform refunds are made, and answered `ACQ.SYSTEM_ERROR` ("outcome
    /// unknown, retry with the same out_request_no").
    pub refund_system_errors: u32,
    /// The next N answers to a notify are lost on the way back: the merchant processed the
    /// notify, and the sandbox sends it again as Alipay does until it reads `success`.
    pub lose_replies: u32,
    /// The next N `single_trade_query` answers about a trade refunded or finished here show it as
    /// it stood before that change: Alipay's query lagging behind the notify it sent. (Queries
    /// of trades never refunded nor finished answer as they are and use none of N.)
    pub stale_queries: u32,
    /// The next N `single_trade_query` answers about a refunded trade name its `refund_status`
    /// but leave out its refunded total (`refund_fee`), as an answer of Alipay's may.
    pub queries_without_refund_fee: u32,
}

/// The legacy API's trades by token, with an index by order: a `create` looks up the merchant's
/// earlier trades for its `out_trade_no`, which a scan of every trade made slower with each
/// payment (a third of the machine after 60,000 payments in the load benchmark).
#[derive(Default)]
struct Trades {
    by_token: HashMap<String, Trade>,
    /// (partner, out_trade_no) → the tokens created for it, oldest first.
    by_order: HashMap<(String, String), Vec<String>>,
}

impl Trades {
    /// Adds or replaces the trade of `token` (its partner and out_trade_no never change).
    fn insert(&mut self, token: String, trade: Trade) {
        let tokens = self
            .by_order
            .entry((trade.partner.clone(), trade.out_trade_no.clone()))
            .or_default();
        if !tokens.contains(&token) {
            tokens.push(token.clone());
        }
        self.by_token.insert(token, trade);
    }

    /// The merchant's trades for `out_trade_no`, oldest first.
    fn of_order<'a>(
        &'a self,
        partner: &str,
        out_trade_no: &str,
    ) -> impl Iterator<Item = &'a Trade> + 'a {
        self.by_order
            .get(&(partner.to_owned(), out_trade_no.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|token| self.by_token.get(token))
    }
}

/// Reads and in-place changes go to the map by token; [`Trades::insert`] keeps the index.
impl std::ops::Deref for Trades {
    type Target = HashMap<String, Trade>;
    fn deref(&self) -> &Self::Target {
        &self.by_token
    }
}

impl std::ops::DerefMut for Trades {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.by_token
    }
}

pub struct Sandbox {
    /// Path prefix, e.g. `/sandbox`.
    pub base: String,
    /// Public URL of `base`, for the cashier's form actions.
    pub public_base: String,
    merchants: Mutex<HashMap<String, SandboxMerchant>>,
    trades: Mutex<Trades>,
    notifies: Mutex<Vec<NotifyDelivery>>,
    /// Each trade (by token) as it stood before its last refund or finish: what a lagging query
    /// answers (`Faults::stale_queries`).
    before_change: Mutex<HashMap<String, Trade>>,
    faults: Mutex<Faults>,
    dropped: Mutex<u32>,
    /// The open platform's apps and trades (`{base}/openapi/…`).
    openapi: openapi::OpenApiState,
    /// Seller-confirmed refunds of the legacy API ([`refund`]).
    legacy_refunds: refund::LegacyRefunds,
    /// The open platform's bills ([`bill`]).
    bills: bill::Bills,
    /// Sandbox seconds per real second.
    speed: f64,
    started: Instant,
    /// Unix seconds at the start: the legacy notifies' times count from it.
    started_unix: u64,
    counter: Mutex<u64>,
    /// Each partner's create calls' `req_id`s: Alipay refuses one it has seen ([WAP §2]:
    /// "支付宝限制来自同一个partner的请求号必须唯一").
    req_ids: Mutex<std::collections::HashSet<(String, String)>>,
}

impl Sandbox {
    pub fn new(base: &str, public_base: &str, speed: f64) -> Arc<Sandbox> {
        Arc::new(Sandbox {
            base: base.trim_end_matches('/').to_owned(),
            public_base: public_base.trim_end_matches('/').to_owned(),
            merchants: Mutex::default(),
            trades: Mutex::default(),
            notifies: Mutex::default(),
            before_change: Mutex::default(),
            faults: Mutex::default(),
            dropped: Mutex::new(0),
            openapi: openapi::OpenApiState::default(),
            legacy_refunds: refund::LegacyRefunds::default(),
            bills: bill::Bills::default(),
            speed: speed.max(1.0),
            started: Instant::now(),
            // Rounded up: a sandbox time written as Beijing time is never before the real moment
            // (a payment shown paid before payhost created it).
            started_unix: web::unix_now() + 1,
            // Ids (notify_id, trade_no, tokens) count from a random start, so a sandbox started
            // again never repeats the ids of an earlier one: a host that saw them would take a
            // new notify for a duplicate (Alipay's ids are unique). Below 10^9, so the token
            // arithmetic cannot overflow and trade_no keeps its 28 digits.
            counter: Mutex::new(
                rand_core::RngCore::next_u64(&mut rand_core::OsRng) % 1_000_000_000,
            ),
            req_ids: Mutex::default(),
        })
    }

    pub fn add_merchant(&self, m: SandboxMerchant) {
        self.merchants.lock().unwrap().insert(m.partner.clone(), m);
    }

    /// Sandbox seconds since start.
    pub fn now(&self) -> u64 {
        (self.started.elapsed().as_secs_f64() * self.speed) as u64
    }

    /// A sandbox time (seconds since start) as Alipay writes it: Beijing wall-clock time. On a
    /// sped-up clock (`speed` above 1) these times run ahead of the real one with it: the tests
    /// that speed it up rely on a refund's `gmt_refund` coming after what payhost recorded
    /// before it (`--speed`'s help says so).
    fn beijing_time(&self, at: u64) -> String {
        web::alipay_time(self.started_unix + at + 8 * 3600)
    }

    /// When the buyer paid a trade, as Alipay writes it (`gmt_payment`): never before the trade
    /// was created, and the same in every notification and query of it.
    fn paid_time(&self, t: &Trade) -> String {
        self.beijing_time(t.paid_at.unwrap_or(t.created_at))
    }

    fn next_id(&self) -> u64 {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        *c
    }

    /// A request token: the time and a scrambled id (unique per sandbox, not guessable in order).
    fn new_token(&self, prefix: &str, now: u64) -> String {
        format!(
            "{prefix}{now:x}{:08x}",
            self.next_id() * 2_654_435_761 % 0xffff_ffff
        )
    }

    /// The signed call-back URL of a trade (what the cashier redirects the buyer to).
    pub fn trade_return_url(&self, out_trade_no: &str) -> Option<String> {
        let trade = self
            .trades
            .lock()
            .unwrap()
            .values()
            .find(|t| t.out_trade_no == out_trade_no)
            .cloned()?;
        self.return_url(&trade)
    }

    pub fn trade(&self, token: &str) -> Option<Trade> {
        self.trades.lock().unwrap().get(token).cloned()
    }

    /// Spawns the delivery loop (call once, inside a tokio runtime).
    pub fn start_delivery(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.deliver_due().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    async fn deliver_due(self: &Arc<Self>) {
        let now = self.now();
        let due: Vec<(usize, NotifyDelivery)> = {
            let mut list = self.notifies.lock().unwrap();
            list.iter_mut()
                .enumerate()
                .filter(|(_, n)| {
                    !n.acknowledged
                        && !n.in_flight
                        && (n.sends as usize) < RETRY_OFFSETS_SECS.len()
                        && now >= n.first_at + RETRY_OFFSETS_SECS[n.sends as usize]
                })
                .map(|(i, n)| {
                    n.in_flight = true;
                    (i, n.clone())
                })
                .collect()
        };
        for (i, n) in due {
            let reply = self.send_notify(&n).await;
            let mut list = self.notifies.lock().unwrap();
            let entry = &mut list[i];
            if entry.sends == 0 {
                // The schedule counts from the first send.
                entry.first_at = now;
            }
            entry.sends += 1;
            entry.sent_at.push(now);
            entry.acknowledged = reply.as_ref().is_some_and(|(_, r)| r == "success");
            entry.last_status = reply.as_ref().map(|(status, _)| *status);
            entry.last_reply = reply.map(|(_, r)| r);
            entry.in_flight = false;
        }
    }

    /// One send: the answer's status and body; `None` when it was dropped or the merchant did
    /// not answer.
    async fn send_notify(&self, n: &NotifyDelivery) -> Option<(u16, String)> {
        {
            let faults = self.faults.lock().unwrap().clone();
            let mut dropped = self.dropped.lock().unwrap();
            if faults.drop_all_notifies || *dropped < faults.drop_first_notifies {
                *dropped += 1;
                return None;
            }
        }
        let answer = outbound::send(
            "POST",
            &n.url,
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            )],
            n.body.clone().into_bytes(),
            Duration::from_secs(10),
        )
        .await
        .ok()?;
        let mut faults = self.faults.lock().unwrap();
        if faults.lose_replies > 0 {
            faults.lose_replies -= 1;
            return None;
        }
        Some((
            answer.status,
            String::from_utf8_lossy(&answer.body).into_owned(),
        ))
    }

    fn res_error(&self, code: (&str, &str), detail: &str, partner: &str) -> Response<Body> {
        let err = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>{}",
            wire::build_xml(
                "err",
                &[
                    ("code", code.0.to_owned()),
                    ("sub_code", code.0.to_owned()),
                    ("msg", code.1.to_owned()),
                    ("detail", detail.to_owned()),
                ]
            )
        );
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !partner.is_empty() {
            s.append_pair("partner", partner);
        }
        s.append_pair("res_error", &err);
        s.append_pair("service", "alipay.wap.trade.create.direct");
        s.append_pair("v", "2.0");
        text(200, s.finish())
    }

    /// Checks the common parameters and the signature of a wappaygw call; the merchant or the
    /// error to answer.
    fn check_call(
        &self,
        params: &[(String, String)],
        service: &str,
    ) -> Result<SandboxMerchant, ((&'static str, &'static str), String)> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        for (k, v) in params {
            if v.is_empty() {
                return Err((
                    codes::PARAMS,
                    format!("参数 {k} 为空 (empty parameters must not be sent)"),
                ));
            }
        }
        for k in [
            "service", "format", "v", "partner", "req_id", "sec_id", "req_data", "sign",
        ] {
            if get(k).is_none() {
                return Err((codes::PARAMS, format!("通用参数中少了 {k}")));
            }
        }
        if get("service") != Some(service)
            || get("format") != Some("xml")
            || get("v") != Some("2.0")
        {
            return Err((
                codes::PARAMS,
                "service, format=xml and v=2.0 are required".into(),
            ));
        }
        if let Some(cs) = get("_input_charset") {
            if !cs.eq_ignore_ascii_case("utf-8") {
                return Err((
                    codes::PARAMS,
                    format!("_input_charset {cs} is not supported"),
                ));
            }
        }
        let partner = get("partner").unwrap_or("");
        let merchant = self
            .merchants
            .lock()
            .unwrap()
            .get(partner)
            .cloned()
            .ok_or((codes::PARTNER, "合作伙伴没有开通接口访问权限".to_owned()))?;
        if !merchant.privileged {
            return Err((codes::PARTNER, "合作伙伴没有开通接口访问权限".into()));
        }
        if get("sec_id") != Some(merchant.keys.sec_id()) {
            return Err((
                codes::SIGN,
                format!("sec_id must be {} for this partner", merchant.keys.sec_id()),
            ));
        }
        // Every parameter sent but sign and sign_type is signed (so is _input_charset when sent).
        if !wire::verify_merchant(
            &merchant.keys,
            &wire::presign_sorted(params),
            get("sign").unwrap_or(""),
        ) {
            return Err((codes::SIGN, "签名错误".into()));
        }
        // Only a call that passed every check counts as seen.
        if service == "alipay.wap.trade.create.direct"
            && !self
                .req_ids
                .lock()
                .unwrap()
                .insert((partner.to_owned(), get("req_id").unwrap_or("").to_owned()))
        {
            return Err((
                codes::PARAMS,
                format!(
                    "请求号重复：req_id {} was used before (it must be unique per partner)",
                    get("req_id").unwrap_or("")
                ),
            ));
        }
        Ok(merchant)
    }

    async fn create(&self, params: Vec<(String, String)>) -> Response<Body> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let partner = get("partner");
        let merchant = match self.check_call(&params, "alipay.wap.trade.create.direct") {
            Ok(m) => m,
            Err((code, detail)) => return self.res_error(code, &detail, &partner),
        };
        let fields = match wire::parse_req_data(&get("req_data"), "direct_trade_create_req") {
            Ok(f) => f,
            Err(e) => return self.res_error(codes::REQ_DATA, &e, &partner),
        };
        let field = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        for required in [
            "subject",
            "out_trade_no",
            "total_fee",
            "seller_account_name",
            "call_back_url",
        ] {
            if field(required).is_none() {
                return self.res_error(
                    codes::REQ_DATA,
                    &format!("req_data 缺少 {required}"),
                    &partner,
                );
            }
        }
        let Some(total_fee) = field("total_fee").and_then(|f| wire::canonical_fee(&f)) else {
            return self.res_error(
                codes::REQ_DATA,
                "total_fee 取值范围为[0.01，100000000.00]，精确到小数点后两位",
                &partner,
            );
        };
        let out_trade_no = field("out_trade_no").unwrap_or_default();
        let call_back_url = field("call_back_url").unwrap_or_default();
        if call_back_url.contains('?') {
            return self.res_error(
                codes::REQ_DATA,
                "call_back_url 不允许加?id=123这类自定义参数",
                &partner,
            );
        }
        let now = self.now();
        let token = self.new_token("", now);
        let trade = Trade {
            partner: partner.clone(),
            token: token.clone(),
            out_trade_no: out_trade_no.clone(),
            subject: field("subject").unwrap_or_default(),
            total_fee: total_fee.clone(),
            seller: field("seller_account_name").unwrap_or_default(),
            notify_url: field("notify_url"),
            call_back_url,
            merchant_url: field("merchant_url"),
            expires_at: field("pay_expire")
                .and_then(|m| m.parse::<u64>().ok())
                .map(|m| now + m * 60),
            status: "WAIT_BUYER_PAY".into(),
            trade_no: None,
            buyer_email: None,
            created_at: now,
            paid_at: None,
            pc: false,
            refund_status: None,
            refund_fee: None,
            app_generation_a: false,
        };
        {
            let mut trades = self.trades.lock().unwrap();
            // The same out_trade_no may be created again only with the same amount and seller.
            let (mut mismatch, mut finished) = (false, false);
            for e in trades.of_order(&partner, &out_trade_no) {
                mismatch |= e.total_fee != trade.total_fee || e.seller != trade.seller;
                finished |= e.status != "WAIT_BUYER_PAY";
            }
            if mismatch || finished {
                drop(trades);
                let detail = if mismatch {
                    "同一商户订单号的金额或卖家不一致"
                } else {
                    "交易已经结束 (TRADE_HAS_SUCCESS or TRADE_HAS_CLOSE)"
                };
                return self.res_error(codes::DUPLICATE, detail, &partner);
            }
            trades.insert(token.clone(), trade);
        }
        let res_data = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>{}",
            wire::build_xml("direct_trade_create_res", &[("request_token", token)])
        );
        let signed: Vec<(String, String)> = vec![
            ("res_data".into(), res_data.clone()),
            ("service".into(), get("service")),
            ("sec_id".into(), get("sec_id")),
            ("partner".into(), partner.clone()),
            ("req_id".into(), get("req_id")),
            ("v".into(), "2.0".into()),
        ];
        let sign = wire::sign_as_alipay(&merchant.keys, wire::presign_sorted(&signed).as_bytes());
        let res_data_wire = match &merchant.keys {
            Keys::Rsa {
                merchant_public, ..
            } => wire::encrypt_for_merchant(merchant_public, &res_data),
            Keys::Md5(_) => res_data,
        };
        // Wire order of real captures: res_data, service, sec_id, partner, req_id, sign, v.
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("res_data", &res_data_wire);
        s.append_pair("service", &get("service"));
        s.append_pair("sec_id", &get("sec_id"));
        s.append_pair("partner", &partner);
        s.append_pair("req_id", &get("req_id"));
        s.append_pair("sign", &sign);
        s.append_pair("v", "2.0");
        text(200, s.finish())
    }

    fn auth(&self, params: &[(String, String)]) -> Response<Body> {
        if let Err((code, detail)) = self.check_call(params, "alipay.wap.auth.authAndExecute") {
            return html(
                400,
                cashier::error_page(&format!("{} {}: {}", code.0, code.1, detail)),
            );
        }
        let req_data = params
            .iter()
            .find(|(k, _)| k == "req_data")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let token = match wire::parse_req_data(&req_data, "auth_and_execute_req") {
            Ok(f) => f
                .into_iter()
                .find(|(k, _)| k == "request_token")
                .map(|(_, v)| v),
            Err(e) => return html(400, cashier::error_page(&e)),
        };
        let Some(trade) = token.and_then(|t| self.trade(&t)) else {
            return html(
                400,
                cashier::error_page("request_token 无效或已过期 (unknown token)"),
            );
        };
        let trade = self.close_if_expired(trade);
        html(200, cashier::page(&self.public_base, &trade))
    }

    fn close_if_expired(&self, trade: Trade) -> Trade {
        if trade.status == "WAIT_BUYER_PAY" && trade.expires_at.is_some_and(|e| self.now() >= e) {
            let mut trades = self.trades.lock().unwrap();
            if let Some(t) = trades.get_mut(&trade.token) {
                t.status = "TRADE_CLOSED".into();
                let closed = t.clone();
                drop(trades);
                self.queue_notify(&closed, "TRADE_CLOSED");
                return closed;
            }
        }
        trade
    }

    fn notify_data(&self, t: &Trade, status: &str, notify_id: &str) -> String {
        let created = self.beijing_time(t.created_at);
        let now = self.beijing_time(self.now());
        let refunded_at = now.clone();
        let mut fields: Vec<(&str, String)> = vec![
            ("payment_type", "1".into()),
            ("subject", t.subject.clone()),
            ("trade_no", t.trade_no.clone().unwrap_or_default()),
            (
                "buyer_email",
                t.buyer_email
                    .clone()
                    .unwrap_or_else(|| "buyer@sandbox.example".into()),
            ),
            ("gmt_create", created),
            ("notify_type", "trade_status_sync".into()),
            ("quantity", "1".into()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("notify_time", now.clone()),
            ("seller_id", t.partner.clone()),
            ("trade_status", status.into()),
            ("is_total_fee_adjust", "N".into()),
            ("total_fee", t.total_fee.clone()),
            ("gmt_payment", self.paid_time(t)),
            ("seller_email", t.seller.clone()),
            ("gmt_close", now),
            ("price", t.total_fee.clone()),
            ("buyer_id", "2088102000000001".into()),
            ("notify_id", notify_id.into()),
            ("use_coupon", "N".into()),
        ];
        if status == "TRADE_CLOSED" && t.refund_status.is_none() {
            fields.retain(|(k, _)| *k != "gmt_payment");
        }
        // A refund is reported as an ordinary trade_status_sync with refund_status and gmt_refund
        // ([EXTRA §4.2]); the legacy notify carries no refund amount.
        if let Some(r) = &t.refund_status {
            fields.push(("refund_status", r.clone()));
            fields.push(("gmt_refund", refunded_at));
        }
        wire::build_xml("notify", &fields)
    }

    /// Queues the notify for a trade's new status (sent by the delivery loop).
    fn queue_notify(&self, t: &Trade, status: &str) {
        let Some(url) = t.notify_url.clone() else {
            return;
        };
        let Some(merchant) = self.merchants.lock().unwrap().get(&t.partner).cloned() else {
            return;
        };
        let notify_id = format!(
            "{:032x}{:02x}",
            self.next_id().wrapping_mul(0x9E37_79B9_7F4A_7C15),
            self.now() % 256
        );
        if t.pc {
            let body = Self::signed_pc_form(&merchant.keys, self.pc_fields(t, status, &notify_id));
            return self.push_notify(notify_id, t, status, url, body);
        }
        if t.app_generation_a {
            // Generation A: the captured element order, plaintext, signed as "notify_data=<xml>".
            let mut ordered = vec![("partner".to_owned(), t.partner.clone())];
            ordered.extend(
                self.pc_fields(t, status, &notify_id)
                    .into_iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "notify_id" | "notify_type" | "notify_time")
                    }),
            );
            let xml = wire::build_xml("notify", &ordered);
            let sign =
                wire::sign_as_alipay(&merchant.keys, format!("notify_data={xml}").as_bytes());
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.append_pair("notify_data", &xml);
            s.append_pair("sign", &sign);
            s.append_pair("sign_type", "RSA");
            return self.push_notify(notify_id, t, status, url, s.finish());
        }
        let data = self.notify_data(t, status, &notify_id);
        let sec_id = merchant.keys.sec_id();
        let presign = wire::presign_notify("alipay.wap.trade.create.direct", "1.0", sec_id, &data);
        let sign = wire::sign_as_alipay(&merchant.keys, presign.as_bytes());
        let notify_data = match &merchant.keys {
            Keys::Rsa {
                merchant_public, ..
            } => wire::encrypt_for_merchant(merchant_public, &data),
            Keys::Md5(_) => data,
        };
        // Wire order as captured: service, sign, sec_id, v, notify_data.
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("service", "alipay.wap.trade.create.direct");
        s.append_pair("sign", &sign);
        s.append_pair("sec_id", sec_id);
        s.append_pair("v", "1.0");
        s.append_pair("notify_data", &notify_data);
        self.push_notify(notify_id, t, status, url, s.finish());
    }

    /// Queues one notify body for the delivery loop (first send now, retries on the schedule).
    fn push_notify(&self, notify_id: String, t: &Trade, status: &str, url: String, body: String) {
        self.notifies.lock().unwrap().push(NotifyDelivery {
            notify_id,
            partner: t.partner.clone(),
            out_trade_no: t.out_trade_no.clone(),
            trade_status: status.into(),
            url,
            first_at: self.now(),
            sends: 0,
            acknowledged: false,
            sent_at: Vec::new(),
            last_reply: None,
            last_status: None,
            body,
            in_flight: false,
        });
    }

    fn return_url(&self, t: &Trade) -> Option<String> {
        let merchant = self.merchants.lock().unwrap().get(&t.partner).cloned()?;
        if t.pc {
            // The PC return ([EXTRA §2.3]): the notify's fields plus is_success and exterface.
            let mut fields = self.pc_fields(t, &t.status, &format!("return{}", self.next_id()));
            fields.push(("exterface".into(), "create_direct_pay_by_user".into()));
            fields.push(("is_success".into(), "T".into()));
            let sep = if t.call_back_url.contains('?') {
                '&'
            } else {
                '?'
            };
            return Some(format!(
                "{}{sep}{}",
                t.call_back_url,
                Self::signed_pc_form(&merchant.keys, fields)
            ));
        }
        let params: Vec<(String, String)> = vec![
            ("out_trade_no".into(), t.out_trade_no.clone()),
            ("request_token".into(), "requestToken".into()),
            ("result".into(), "success".into()),
            ("trade_no".into(), t.trade_no.clone().unwrap_or_default()),
        ];
        let sign = wire::sign_as_alipay(&merchant.keys, wire::presign_sorted(&params).as_bytes());
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            s.append_pair(k, v);
        }
        s.append_pair("sign", &sign);
        s.append_pair("sign_type", merchant.keys.sec_id());
        Some(format!("{}?{}", t.call_back_url, s.finish()))
    }

    async fn pay(self: &Arc<Self>, form: Vec<(String, String)>) -> Response<Body> {
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let Some(trade) = self.trade(&get("token")) else {
            return html(400, cashier::error_page("unknown token"));
        };
        let trade = self.close_if_expired(trade);
        if trade.status != "WAIT_BUYER_PAY" {
            return html(200, cashier::closed_page(&trade));
        }
        let buyer = Some(get("buyer"))
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "buyer@sandbox.example".into());
        let paid = {
            let mut trades = self.trades.lock().unwrap();
            let t = trades.get_mut(&trade.token).expect("trade exists");
            t.status = "TRADE_SUCCESS".into();
            t.paid_at = Some(self.now());
            t.trade_no = Some(format!("2026{:012}{:012}", self.now(), self.next_id()));
            t.buyer_email = Some(buyer);
            t.clone()
        };
        let faults = self.faults.lock().unwrap().clone();
        if !faults.return_without_notify {
            self.queue_notify(&paid, "TRADE_SUCCESS");
            if faults.notify_before_return {
                // Deliver now and wait for the first answer.
                self.deliver_due().await;
            }
        }
        match self.return_url(&paid) {
            Some(url) => redirect(&url),
            None => html(500, cashier::error_page("merchant vanished")),
        }
    }

    fn cancel(&self, form: Vec<(String, String)>) -> Response<Body> {
        let token = form
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        match self.trade(&token) {
            Some(t) => match &t.merchant_url {
                Some(u) => redirect(u),
                None => html(200, cashier::cancelled_page(&t)),
            },
            None => html(400, cashier::error_page("unknown token")),
        }
    }

    fn mapi(&self, params: &[(String, String)]) -> Response<Body> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        match get("service") {
            "notify_verify" => {
                let id = get("notify_id");
                if get("partner").is_empty() || id.is_empty() {
                    return text(200, "invalid");
                }
                // true for a notify_id issued for this partner and not yet acknowledged with
                // `success`: another merchant's notify (a shop routed to the wrong merchant)
                // is not confirmed.
                let partner = get("partner");
                let genuine = self.notifies.lock().unwrap().iter().any(|n| {
                    n.notify_id == id
                        && n.partner == partner
                        && !n.acknowledged
                        && (n.sends > 0 || n.in_flight)
                });
                text(200, if genuine { "true" } else { "false" })
            }
            "mobile.merchant.paychannel" => {
                let partner = get("partner");
                let Some(m) = self.merchants.lock().unwrap().get(partner).cloned() else {
                    return text(200, "<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>F</is_success><error>NOT_EXIST_PARTNER_TYPE_CODE</error></alipay>");
                };
                // Read and signed in the charset the query declares ([WAP §9]: GBK).
                let presign = wire::presign_sorted(params);
                let signed = if get("_input_charset").eq_ignore_ascii_case("gbk") {
                    encoding_rs::GBK.encode(&presign).0.into_owned()
                } else {
                    presign.into_bytes()
                };
                if !wire::verify_merchant_bytes(&m.keys, &signed, get("sign")) {
                    return text(200, "<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>F</is_success><error>ILLEGAL_SIGN</error></alipay>");
                }
                web::xml(
                    "text/xml; charset=GBK",
                    wire::paychannel_response(&m.keys, partner),
                )
            }
            "single_trade_query" => self.single_trade_query(params),
            "create_direct_pay_by_user" => self.pc_cashier(params),
            "refund_fastpay_by_platform_pwd" => self.legacy_refund_page(params),
            other => text(200, format!("<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>F</is_success><error>ILLEGAL_SERVICE {}</error></alipay>", web::esc(other))),
        }
    }

    /// The app SDK's stand-in ([EXTRA §1]): `POST {base}/app/pay` with the merchant's
    /// `order_string` (as the app hands it to the SDK) and `generation` (`A` or `B`, default B).
    /// It checks the order string's RSA-SHA1 signature with the merchant's public key (the part
    /// before `&sign="`), pays the trade, queues the notify of that generation, and answers the
    /// SDK's synchronous result string signed by "Alipay" ([EXTRA §1.5]).
    fn app_pay(&self, form: Vec<(String, String)>) -> Response<Body> {
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let failure = |code: &str, memo: &str| {
            text(
                200,
                format!("resultStatus={{{code}}};memo={{{memo}}};result={{}}"),
            )
        };
        let order = get("order_string");
        let Some((content, tail)) = order.split_once("&sign=\"") else {
            return failure("4001", "订单信息缺少签名 (no sign)");
        };
        let Some((sign_enc, rest)) = tail.split_once('"') else {
            return failure("4001", "签名格式错误");
        };
        if rest != "&sign_type=\"RSA\"" {
            return failure("4001", "sign_type 必须是 RSA");
        }
        let sign: String = form_urlencoded::parse(format!("s={sign_enc}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let fields: Vec<(String, String)> = content
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        let field = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let partner = field("partner");
        let Some(merchant) = self.merchants.lock().unwrap().get(&partner).cloned() else {
            return failure("4001", "合作伙伴不存在 (unknown partner)");
        };
        if !matches!(merchant.keys, Keys::Rsa { .. }) {
            return failure("4001", "app pay needs an RSA merchant");
        }
        if !wire::verify_merchant(&merchant.keys, content, &sign) {
            return failure("4001", "签名验证失败 (bad signature)");
        }
        if field("service") != "mobile.securitypay.pay" {
            return failure("4001", "service 必须是 mobile.securitypay.pay");
        }
        let now = self.now();
        let generation_a = get("generation").eq_ignore_ascii_case("A");
        let trade = Trade {
            partner: partner.clone(),
            token: format!("app{:x}{:08x}", now, self.next_id()),
            out_trade_no: field("out_trade_no"),
            subject: field("subject"),
            total_fee: field("total_fee"),
            seller: field("seller_id"),
            notify_url: Some(field("notify_url")).filter(|u| !u.is_empty()),
            call_back_url: String::new(),
            merchant_url: None,
            expires_at: None,
            // Generation A captures carry TRADE_FINISHED; generation B TRADE_SUCCESS.
            status: if generation_a {
                "TRADE_FINISHED"
            } else {
                "TRADE_SUCCESS"
            }
            .into(),
            trade_no: Some(format!("2026{:012}{:012}", now, self.next_id())),
            buyer_email: Some("app-buyer@sandbox.example".into()),
            created_at: now,
            paid_at: None,
            pc: !generation_a,
            refund_status: None,
            refund_fee: None,
            app_generation_a: generation_a,
        };
        self.trades
            .lock()
            .unwrap()
            .insert(trade.token.clone(), trade.clone());
        self.queue_notify(&trade, &trade.status);
        let signed = format!("{content}&success=\"true\"");
        let alipay_sign = wire::sign_as_alipay(&merchant.keys, signed.as_bytes());
        text(
            200,
            format!("resultStatus={{9000}};memo={{}};result={{{signed}&sign_type=\"RSA\"&sign=\"{alipay_sign}\"}}"),
        )
    }

    /// A refund the merchant made in Alipay's back office ([EXTRA §4]): `out_trade_no`, `partner`
    /// and `refund_fee` (the whole amount when left out). The whole amount closes the trade
    /// (`TRADE_CLOSED` + `refund_status=REFUND_SUCCESS`); part of it keeps it `TRADE_SUCCESS` with
    /// `REFUND_SUCCESS`. Either way a notify goes to the original `notify_url`.
    fn refund(&self, form: Vec<(String, String)>) -> Response<Body> {
        let fee = form_value(&form, "refund_fee");
        self.change_paid_trade(&form, "refund", |t| {
            // `refund_fee` is the trade's refunded total, as Alipay's query reports it: it grows
            // with each refund, never past the paid amount.
            let total = refund::fen(&t.total_fee).unwrap_or(0);
            let before = t.refund_fee.as_deref().and_then(refund::fen).unwrap_or(0);
            let fee = match Some(fee).filter(|f| !f.is_empty()) {
                None => total - before,
                Some(f) => match refund::fen(&f) {
                    Some(f) => f,
                    None => return Err((400, format!("refund_fee: {f:?} is not an amount"))),
                },
            };
            if fee == 0 || before + fee > total {
                return Err((409, "REFUND_AMOUNT_EXCEEDED".into()));
            }
            t.refund_status = Some("REFUND_SUCCESS".into());
            t.refund_fee = Some(refund::yuan(before + fee));
            if before + fee == total {
                t.status = "TRADE_CLOSED".into();
            }
            Ok(())
        })
    }

    /// Alipay ends a paid trade's refundable period ([EXTRA §4.3]): `partner` and `out_trade_no`
    /// of a `TRADE_SUCCESS` trade become `TRADE_FINISHED`, and its notify goes to the original
    /// `notify_url` — with `refund_status` (and no amount, [EXTRA §4.2]) when part of it was
    /// refunded. No refund of it is possible any more.
    fn finish(&self, form: Vec<(String, String)>) -> Response<Body> {
        self.change_paid_trade(&form, "finish", |t| {
            t.status = "TRADE_FINISHED".into();
            Ok(())
        })
    }

    /// A change Alipay makes to a paid trade, the one of `partner` and `out_trade_no` in `form`:
    /// `change` applies it to the `TRADE_SUCCESS` trade or refuses (an HTTP status and its text). The trade as
    /// it stood is kept for lagging queries, and the notify of its new status goes to the
    /// original `notify_url`; the answer is the changed trade.
    fn change_paid_trade(
        &self,
        form: &[(String, String)],
        what: &str,
        change: impl FnOnce(&mut Trade) -> Result<(), (u16, String)>,
    ) -> Response<Body> {
        let (partner, out_trade_no) = (
            form_value(form, "partner"),
            form_value(form, "out_trade_no"),
        );
        let updated = {
            let mut trades = self.trades.lock().unwrap();
            let Some(t) = trades
                .values_mut()
                .find(|t| t.partner == partner && t.out_trade_no == out_trade_no)
            else {
                return text(404, "TRADE_NOT_EXIST");
            };
            if t.status != "TRADE_SUCCESS" {
                return text(409, format!("cannot {what} a trade in {}", t.status));
            }
            let before = t.clone();
            if let Err((status, why)) = change(t) {
                return text(status, why);
            }
            self.remember_before_change(&before);
            t.clone()
        };
        self.queue_notify(&updated, &updated.status);
        json(200, &serde_json::to_value(&updated).expect("serialisable"))
    }

    /// Keeps `t` as it stands, before a refund or a finish changes it: what a lagging query
    /// answers.
    fn remember_before_change(&self, t: &Trade) {
        self.before_change
            .lock()
            .unwrap()
            .insert(t.token.clone(), t.clone());
    }

    /// Uses one of a counted fault's N: whether it applies to this answer.
    fn take_fault(&self, counter: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        let mut faults = self.faults.lock().unwrap();
        let left = counter(&mut faults);
        let applies = *left > 0;
        *left = left.saturating_sub(1);
        applies
    }

    /// What the trade query answers of `t`: as it stood before its last refund or finish while
    /// `stale_queries` lasts (one used per such answer), else as it is.
    fn as_queried(&self, t: Trade) -> Trade {
        let mut faults = self.faults.lock().unwrap();
        if faults.stale_queries == 0 {
            return t;
        }
        match self.before_change.lock().unwrap().get(&t.token) {
            Some(before) => {
                faults.stale_queries -= 1;
                before.clone()
            }
            None => t,
        }
    }

    /// PC instant pay ([EXTRA §2.1], [EXTRA §2.2]): the buyer's browser arrives with the signed
    /// redirect; the sandbox checks it (sorted MD5 over every parameter but `sign` and `sign_type`), opens
    /// the trade and shows the cashier. Paying sends the PC notify and return ([EXTRA §2.3]).
    fn pc_cashier(&self, params: &[(String, String)]) -> Response<Body> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let partner = get("partner");
        let Some(merchant) = self.merchants.lock().unwrap().get(&partner).cloned() else {
            return html(
                400,
                cashier::error_page("ILLEGAL_PARTNER 合作伙伴没有开通接口访问权限"),
            );
        };
        let signed: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "sign" && k != "sign_type")
            .cloned()
            .collect();
        if !wire::verify_merchant(&merchant.keys, &wire::presign_sorted(&signed), &get("sign")) {
            return html(400, cashier::error_page("ILLEGAL_SIGN 签名不正确"));
        }
        let (out_trade_no, total_fee) = (get("out_trade_no"), get("total_fee"));
        if out_trade_no.is_empty() || total_fee.is_empty() || get("payment_type") != "1" {
            return html(400, cashier::error_page("ILLEGAL_ARGUMENT 参数不正确"));
        }
        let seller = Some(get("seller_email"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| get("seller_id"));
        let existing = self
            .trades
            .lock()
            .unwrap()
            .of_order(&partner, &out_trade_no)
            .next()
            .cloned();
        let trade = match existing {
            Some(t) if t.total_fee != total_fee => {
                return html(
                    400,
                    cashier::error_page("同一商户订单号的金额不一致 (DUPLICATE)"),
                )
            }
            Some(t) => self.close_if_expired(t),
            None => {
                let now = self.now();
                let token = self.new_token("pc", now);
                let trade = Trade {
                    partner: partner.clone(),
                    token: token.clone(),
                    out_trade_no,
                    subject: get("subject"),
                    total_fee,
                    seller,
                    notify_url: Some(get("notify_url")).filter(|u| !u.is_empty()),
                    call_back_url: get("return_url"),
                    merchant_url: None,
                    expires_at: None,
                    status: "WAIT_BUYER_PAY".into(),
                    trade_no: None,
                    buyer_email: None,
                    created_at: now,
                    paid_at: None,
                    pc: true,
                    refund_status: None,
                    refund_fee: None,
                    app_generation_a: false,
                };
                self.trades.lock().unwrap().insert(token, trade.clone());
                trade
            }
        };
        html(200, cashier::page(&self.public_base, &trade))
    }

    /// The PC notify ([EXTRA §2.3]): flat form fields, signed sorted, with `notify_id` for
    /// `notify_verify`.
    fn pc_fields(&self, t: &Trade, status: &str, notify_id: &str) -> Vec<(String, String)> {
        let when = self.beijing_time(t.created_at);
        let now = self.beijing_time(self.now());
        vec![
            (
                "buyer_email".into(),
                t.buyer_email.clone().unwrap_or_default(),
            ),
            ("buyer_id".into(), "2088102000000001".into()),
            ("gmt_create".into(), when),
            ("gmt_payment".into(), self.paid_time(t)),
            ("is_total_fee_adjust".into(), "N".into()),
            ("notify_id".into(), notify_id.into()),
            ("notify_time".into(), now),
            ("notify_type".into(), "trade_status_sync".into()),
            ("out_trade_no".into(), t.out_trade_no.clone()),
            ("payment_type".into(), "1".into()),
            ("price".into(), t.total_fee.clone()),
            ("quantity".into(), "1".into()),
            ("seller_email".into(), t.seller.clone()),
            ("seller_id".into(), t.partner.clone()),
            ("subject".into(), t.subject.clone()),
            ("total_fee".into(), t.total_fee.clone()),
            ("trade_no".into(), t.trade_no.clone().unwrap_or_default()),
            ("trade_status".into(), status.into()),
            ("use_coupon".into(), "N".into()),
        ]
        .into_iter()
        .chain(
            t.refund_status
                .iter()
                .map(|r| ("refund_status".to_owned(), r.clone())),
        )
        .collect()
    }

    fn signed_pc_form(keys: &Keys, mut fields: Vec<(String, String)>) -> String {
        let sign = wire::sign_as_alipay(keys, wire::presign_sorted(&fields).as_bytes());
        fields.push(("sign".into(), sign));
        fields.push((
            "sign_type".into(),
            if matches!(keys, Keys::Md5(_)) {
                "MD5"
            } else {
                "RSA"
            }
            .into(),
        ));
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fields {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// `single_trade_query` ([EXTRA §3]): the trade by `out_trade_no` (or `trade_no`), its
    /// `<trade>` children in alphabetical order, signed (MD5 or RSA) over them sorted as
    /// `k=v&…`; `TRADE_NOT_EXIST` for a trade this partner does not have.
    fn single_trade_query(&self, params: &[(String, String)]) -> Response<Body> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let error = |code: &str| {
            text(
                200,
                format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>F</is_success><error>{code}</error></alipay>"),
            )
        };
        let partner = get("partner");
        let Some(m) = self.merchants.lock().unwrap().get(partner).cloned() else {
            return error("ILLEGAL_PARTNER");
        };
        let signed: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "sign" && k != "sign_type")
            .cloned()
            .collect();
        if !wire::verify_merchant(&m.keys, &wire::presign_sorted(&signed), get("sign")) {
            return error("ILLEGAL_SIGN");
        }
        let (out_trade_no, trade_no) = (get("out_trade_no"), get("trade_no"));
        let found = {
            let trades = self.trades.lock().unwrap();
            // By order through the index: of the order's trades (one per create call), the one
            // that moved on (paid, closed), else the newest.
            let by_order = (!out_trade_no.is_empty())
                .then(|| {
                    trades
                        .of_order(partner, out_trade_no)
                        .max_by_key(|t| t.status != "WAIT_BUYER_PAY")
                })
                .flatten();
            by_order
                .or_else(|| {
                    (!trade_no.is_empty())
                        .then(|| {
                            trades.values().find(|t| {
                                t.partner == partner && t.trade_no.as_deref() == Some(trade_no)
                            })
                        })
                        .flatten()
                })
                .cloned()
        };
        let Some(t) = found.map(|t| self.as_queried(self.close_if_expired(t))) else {
            return error("TRADE_NOT_EXIST");
        };
        let when = self.beijing_time(t.created_at);
        let paid = t.status != "WAIT_BUYER_PAY" && t.trade_no.is_some();
        let mut fields: Vec<(&str, String)> = vec![
            ("buyer_email", t.buyer_email.clone().unwrap_or_default()),
            (
                "buyer_id",
                if paid {
                    "2088102000000001".into()
                } else {
                    String::new()
                },
            ),
            ("discount", "0.00".into()),
            ("flag_trade_locked", "0".into()),
            ("gmt_create", when.clone()),
            ("gmt_last_modified_time", when.clone()),
            ("is_total_fee_adjust", "F".into()),
            ("operator_role", "B".into()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("payment_type", "1".into()),
            ("price", t.total_fee.clone()),
            ("quantity", "1".into()),
            ("seller_email", t.seller.clone()),
            ("seller_id", t.partner.clone()),
            ("subject", t.subject.clone()),
            ("to_buyer_fee", "0.00".into()),
            (
                "to_seller_fee",
                if paid {
                    t.total_fee.clone()
                } else {
                    "0.00".into()
                },
            ),
            ("total_fee", t.total_fee.clone()),
            ("trade_no", t.trade_no.clone().unwrap_or_default()),
            ("trade_status", t.status.clone()),
            ("use_coupon", "F".into()),
        ];
        if let (Some(status), Some(fee)) = (&t.refund_status, &t.refund_fee) {
            fields.push(("refund_status", status.clone()));
            if !self.take_fault(|f| &mut f.queries_without_refund_fee) {
                fields.push(("refund_fee", fee.clone()));
                fields.retain(|(k, _)| *k != "to_buyer_fee");
                fields.push(("to_buyer_fee", fee.clone()));
            }
        }
        if paid {
            fields.push(("gmt_payment", self.paid_time(&t)));
        }
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let presign = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let sign = wire::sign_as_alipay(&m.keys, presign.as_bytes());
        let trade = wire::build_xml("trade", &fields);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>T</is_success><request><param name=\"service\">single_trade_query</param><param name=\"partner\">{}</param><param name=\"_input_charset\">utf-8</param><param name=\"out_trade_no\">{}</param></request><response>{trade}</response><sign>{sign}</sign><sign_type>{}</sign_type></alipay>",
            web::esc(partner),
            web::esc(out_trade_no),
            if matches!(m.keys, Keys::Md5(_)) { "MD5" } else { "RSA" },
        );
        web::xml("text/xml; charset=utf-8", body)
    }

    /// Switches faults on or off (as `POST {base}/faults` does) and restarts the count of
    /// dropped notifies.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
        *self.dropped.lock().unwrap() = 0;
    }

    /// The faults switched on now.
    pub fn faults(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }

    /// The sandbox's state, for tests and the curious.
    pub fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "now": self.now(),
            "trades": self.trades.lock().unwrap().values().cloned().collect::<Vec<_>>(),
            "notifies": self.notifies.lock().unwrap().clone(),
            "openapi_trades": self.openapi_trades(),
            "faults": self.faults.lock().unwrap().clone(),
        })
    }

    /// Whether `path` is the sandbox's: `base` itself or below it.
    pub fn owns(&self, path: &str) -> bool {
        path.strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Serves a request whose path starts with `base` (any body: hyper's, or `Full<Bytes>`).
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let path = req
            .uri()
            .path()
            .strip_prefix(&self.base)
            .unwrap_or("")
            .to_owned();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| web::query_pairs(q.as_bytes()))
            .unwrap_or_default();
        let body = match web::read_body(req.into_body(), 1 << 20).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let faults = self.faults.lock().unwrap().clone();
        let provider_call = matches!(path.as_str(), "/gateway" | "/mapi" | "/openapi/gateway.do");
        if provider_call && faults.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
        }
        if provider_call && faults.answer_500 {
            return text(500, "<html><body>500 Internal Server Error</body></html>");
        }
        match (method, path.as_str()) {
            (Method::POST, "/gateway") => self.create(form).await,
            (Method::GET, "/gateway") => {
                let service = query
                    .iter()
                    .find(|(k, _)| k == "service")
                    .map(|(_, v)| v.as_str());
                match service {
                    Some("alipay.wap.auth.authAndExecute") => self.auth(&query),
                    Some("alipay.wap.trade.create.direct") => self.create(query).await,
                    _ => text(400, "unknown service"),
                }
            }
            (Method::GET, "/mapi") => self.mapi(&query),
            (Method::POST, "/cashier/pay") => self.pay(form).await,
            (Method::POST, "/cashier/cancel") => self.cancel(form),
            (Method::POST, "/refund") => self.refund(form),
            (Method::POST, "/finish") => self.finish(form),
            (Method::POST, "/mapi/refund/confirm") => self.legacy_refund_confirm(&form),
            (Method::POST, "/app/pay") => self.app_pay(form),
            (Method::GET | Method::POST, "/openapi/gateway.do") => {
                self.openapi_gateway(query, form)
            }
            (Method::POST, "/openapi/cashier/pay") => self.openapi_pay(&form),
            (Method::POST, "/openapi/cashier/cancel") => self.openapi_cancel(&form),
            (Method::POST, "/openapi/refund") => self.openapi_portal_refund(&form),
            (Method::GET, "/openapi/bill/download") => self.bill_download(&query),
            (Method::POST, "/openapi/bill-extra") => self.bill_extra(&form),
            (Method::GET, "/state") => json(200, &self.state()),
            (Method::POST, "/faults") => match serde_json::from_slice::<Faults>(&body) {
                Ok(f) => {
                    self.set_faults(f);
                    json(
                        200,
                        &serde_json::to_value(self.faults()).expect("serialisable"),
                    )
                }
                Err(e) => text(400, format!("bad faults: {e}")),
            },
            _ => text(404, "no such sandbox page"),
        }
    }
}

/// Serves the sandbox alone (`payhost sandbox`) on `listen` until `shutdown` resolves.
pub async fn serve(
    sandbox: Arc<Sandbox>,
    listen: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot listen on {listen}")))?;
    serve_on(sandbox, listener, shutdown).await
}

/// [`serve`] on a listener already bound (bind port 0 first to learn the address, then make the
/// [`Sandbox`] with it as its public base).
pub async fn serve_on(
    sandbox: Arc<Sandbox>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, base = %sandbox.base, "sandbox gateway listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let sandbox = sandbox.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let sandbox = sandbox.clone();
                        async move {
                            let response = if sandbox.owns(req.uri().path()) {
                                sandbox.handle(req).await
                            } else {
                                text(404, format!("the sandbox lives under {}", sandbox.base))
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    // A client that sends its header slowly is cut off, as the body's deadline
                    // cuts off one that sends its body slowly (`web::read_body`).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(web::BODY_DEADLINE)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// A posted form's value of `key`, trimmed (empty when absent).
fn form_value(form: &[(String, String)], key: &str) -> String {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_started_again_issues_other_ids() {
        // The chance that two random starts meet is about one in a billion.
        let (a, b) = (
            Sandbox::new("/s", "http://x/s", 1.0),
            Sandbox::new("/s", "http://x/s", 1.0),
        );
        assert_ne!(a.next_id(), b.next_id());
    }

    /// Sends `head` and then nothing more on a real connection to `addr`; returns the answer.
    async fn stall_after(addr: std::net::SocketAddr, head: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    // In the unit tests the deadline is one second (`web::BODY_DEADLINE`), waited in real time.
    #[tokio::test]
    async fn a_body_that_stops_arriving_is_answered_408_and_a_slow_header_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sandbox = Sandbox::new("/sandbox", &format!("http://{addr}/sandbox"), 1.0);
        tokio::spawn(serve_on(sandbox, listener, std::future::pending()));

        let answer = stall_after(
            addr,
            "POST /sandbox/gateway HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nservice=",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 1 s"), "{answer}");

        // A header that never ends: the connection is closed without an answer.
        let answer = stall_after(addr, "POST /sandbox/gateway HTTP/1.1\r\nhost: x\r\n").await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn the_demo_shops_webhook_refuses_a_stalled_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shop = std::sync::Arc::new(demo::DemoShop::new("http://127.0.0.1:9", "t", "s"));
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |req| {
                let shop = shop.clone();
                async move { Ok::<_, std::convert::Infallible>(shop.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        let answer = stall_after(
            addr,
            "POST /shop/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}
