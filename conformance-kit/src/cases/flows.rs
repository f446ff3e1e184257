//! The flow suite: a running payhost, driven over HTTP only, through the kit's sandbox gateway
//! (playing Alipay) and webhook receiver (playing the shop). The kit configures its own merchant
//! through the shop API, creates orders, pays them in the sandbox cashier, sends genuine,
//! replayed, forged and mismatched notifies, follows the buyer's return, and counts webhooks.

use crate::alipay::{self, NotifyTrade, Signing};
use crate::api::Options;
use crate::client::{self, is_no_route, HostApi, Reply};
use crate::receiver::{return_sign_ok, unix_now, Webhook};
use crate::report::Cleanup;
use crate::runner::{ensure, Runner, Stop, Verdict};
use crate::sandbox_setup::{KitEnv, RsaMerchant};
use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};

mod openapi;

/// Every flow case, in the order they run.
pub const CASES: &[&str] = &[
    "merchant.settings_refused",
    "merchant.configured",
    "payment.created",
    "payment.same_order_again",
    "notify.paid_once",
    "return.verified_redirect",
    "return.never_marks_paid",
    "return.tampered_refused",
    "rsa.paid_once",
    "notify.replayed_once",
    "notify.forged_refused",
    "notify.amount_mismatch_not_paid",
    "notify.unconfirmed_not_paid",
    "notify.unknown_merchant_404",
    "notify.oversized_413",
    "sync.lost_notify_recovered",
    "openapi.settings.app_id_refused",
    "openapi.settings.own_public_key_refused",
    "openapi.settings.bad_private_key_refused",
    "openapi.merchant.configured",
    "openapi.pay.products",
    "openapi.notify.forged_refused",
    "openapi.notify.paid_once",
    "openapi.notify.partial_refund_not_a_payment",
    "openapi.sync.lost_notify_recovered",
    "openapi.refund.partial_once",
    "openapi.close.unpaid_only",
    "openapi.bill.reconciled",
    "webhooks.exactly_once",
];

/// The cases that reach the host where it tells the provider it is, its `public_url` (the
/// order's `notify_url` and `return_url`), not at the base URL the kit was given: the sandbox
/// delivers notifies there, the kit posts its own and follows the buyer's return there.
pub const AT_PUBLIC_URL: &[&str] = &[
    "notify.paid_once",
    "return.verified_redirect",
    "return.never_marks_paid",
    "return.tampered_refused",
    "rsa.paid_once",
    "notify.replayed_once",
    "notify.forged_refused",
    "notify.amount_mismatch_not_paid",
    "notify.unconfirmed_not_paid",
    "openapi.notify.forged_refused",
    "openapi.notify.paid_once",
    "openapi.notify.partial_refund_not_a_payment",
];

/// How long the kit tries to connect to the host's notify URL before the cases.
const REACH_LIMIT: Duration = Duration::from_secs(10);

/// The last case: every order's webhooks counted.
const LAST: &str = CASES[CASES.len() - 1];

/// Alipay's acknowledgement of a processed notify ([WAP §7.4]).
const ACK: &str = "success";
/// How long a state the host reaches asynchronously (a notify applied, a webhook sent) may take
/// (two such waits fit in a case's default 30 s).
const SETTLE: Duration = Duration::from_secs(10);

/// A paid payment's status (README: `WAIT_BUYER_PAY → TRADE_SUCCESS → TRADE_FINISHED`; the
/// host's own words `paid` / `finished` are accepted too).
fn is_paid(status: &str) -> bool {
    ["TRADE_SUCCESS", "TRADE_FINISHED", "PAID", "FINISHED"]
        .iter()
        .any(|s| status.eq_ignore_ascii_case(s))
}

/// The status of a payment nobody paid yet.
fn is_waiting(status: &str) -> bool {
    ["WAIT_BUYER_PAY", "WAITING"]
        .iter()
        .any(|s| status.eq_ignore_ascii_case(s))
}

/// An order the kit made on the host.
#[derive(Debug, Clone)]
struct Order {
    merchant: String,
    out_trade_no: String,
    total_fee: String,
    pay_url: String,
}

struct Flow<'a> {
    host: HostApi,
    env: &'a KitEnv,
    merchant: String,
    /// Prefix of this run's order numbers (orders of earlier runs never collide).
    run: String,
    replays: usize,
    configured: bool,
    /// Why the host refused the kit's merchant, when it was for the kit's own origin: a set-up
    /// problem (the run cannot start), not a failed case.
    origin_refused: Option<String>,
    /// The paid order (`payment.created`, `notify.paid_once`), an unpaid one for returns.
    paid: Option<Order>,
    unpaid: Option<Order>,
    /// (order, the number of `payment.paid` webhooks it must end with), for orders whose case
    /// got far enough to know.
    expected_webhooks: Vec<(String, usize)>,
    orders_made: usize,
    /// (out_trade_no, merchant) of every order the kit asked the host to create.
    order_merchants: Vec<(String, String)>,
    /// The open-platform merchant and its orders (`openapi.*`).
    open: openapi::OpenState,
    /// The merchants the host stored the kit's settings for, in order: removed at the end
    /// unless kept.
    touched: std::sync::Mutex<Vec<String>>,
}

/// Runs the flow suite; `base` is the host, `token` its operator token.
pub async fn run(runner: &mut Runner, base: &str, token: &str, env: &KitEnv, opts: &Options) {
    let mut flow = Flow {
        host: HostApi::new(base, token),
        env,
        merchant: opts.merchant.clone(),
        run: format!("ck{}{:04}", unix_now(), rand::random::<u16>() % 10_000),
        replays: opts.replays.max(2),
        configured: false,
        origin_refused: None,
        paid: None,
        unpaid: None,
        expected_webhooks: Vec::new(),
        orders_made: 0,
        order_merchants: Vec::new(),
        open: openapi::OpenState::default(),
        touched: std::sync::Mutex::new(Vec::new()),
    };
    // Never overwrite (and then remove) a merchant the kit did not make.
    if let Err(e) = crate::ownership::check(&flow.host, &flow.merchant).await {
        runner
            .case("kit.merchants", async { Err(e.clone().into()) })
            .await;
        for id in CASES {
            runner.skip(id, "the kit does not touch merchants it did not make");
        }
        return;
    }
    // The cases that reach the host at its public_url would each fail (some after waiting) when
    // this machine cannot reach it: the run cannot start instead, saying so.
    if runner.selected_any(AT_PUBLIC_URL) {
        if let Some(Err(why)) = runner.unless_stopped(flow.public_url_reachable()).await {
            runner.not_started(why);
            let cleanup = flow.cleanup(opts.keep).await;
            runner.set_cleanup(cleanup);
            return;
        }
    }
    cases(runner, &mut flow, env).await;
    let cleanup = flow.cleanup(opts.keep).await;
    runner.set_cleanup(cleanup);
}

async fn cases(runner: &mut Runner, flow: &mut Flow<'_>, env: &KitEnv) {
    runner.case(CASES[0], flow.settings_refused()).await;
    flow.configured = runner.case(CASES[1], flow.configure()).await;
    if !flow.configured {
        for id in &CASES[2..] {
            runner.skip(id, "needs merchant.configured");
        }
        // The host does not let the kit's sandbox in: nothing of the host was tested.
        if let Some(why) = flow.origin_refused.take() {
            runner.not_started(why);
        }
        return;
    }
    runner.case(CASES[2], flow.payment_created()).await;
    runner.case(CASES[3], flow.same_order_again()).await;
    runner.case(CASES[4], flow.paid_once()).await;
    runner.case(CASES[5], flow.return_verified()).await;
    runner.case(CASES[6], flow.return_never_marks_paid()).await;
    runner.case(CASES[7], flow.return_tampered()).await;
    runner.case(CASES[8], flow.rsa_paid_once()).await;
    // From here on every notify the sandbox sends is lost on the way, so only what the kit
    // posts reaches the host (the sandbox still answers notify_verify for them).
    if runner.selected_any(&CASES[9..16]) {
        match env.set_faults(json!({"drop_all_notifies": true})).await {
            Err(e) => {
                for id in &CASES[9..16] {
                    runner.skip(id, &e);
                }
            }
            Ok(()) => {
                runner.case(CASES[9], flow.replayed_once()).await;
                runner.case(CASES[10], flow.forged_refused()).await;
                runner.case(CASES[11], flow.amount_mismatch()).await;
                runner.case(CASES[12], flow.unconfirmed()).await;
                runner.case(CASES[13], flow.unknown_merchant()).await;
                runner.case(CASES[14], flow.oversized()).await;
                runner.case(CASES[15], flow.sync_recovers()).await;
            }
        }
    }
    openapi::cases(runner, flow).await;
    runner.case(LAST, flow.webhooks_exactly_once()).await;
}

impl Flow<'_> {
    fn merchant_path(&self, rest: &str) -> String {
        client::merchant_path(&self.merchant, rest)
    }

    /// The merchant's settings, as the shop API's flat form takes them.
    fn merchant_body(&self, partner: &str) -> Value {
        let mut body = serde_json::Map::new();
        for (k, v) in self.env.md5_settings() {
            body.insert(k, Value::String(v));
        }
        body.insert("partner".into(), Value::String(partner.to_owned()));
        body.insert(
            "shop_webhook_url".into(),
            Value::String(self.env.webhook_url()),
        );
        body.insert(
            "shop_webhook_secret".into(),
            Value::String(self.env.webhook_secret.clone()),
        );
        Value::Object(body)
    }

    /// The settings of the kit's RSA merchant, with its webhook.
    fn rsa_body(&self, rsa: &RsaMerchant) -> Value {
        let mut body = serde_json::Map::new();
        for (k, v) in self.env.provider_urls() {
            body.insert(k, Value::String(v));
        }
        for (k, v) in [
            ("partner", &rsa.partner),
            ("seller_email", &rsa.seller_email),
            ("private_key", &rsa.private_key),
            ("alipay_public_key", &rsa.alipay_public_key),
            ("shop_webhook_secret", &self.env.webhook_secret),
        ] {
            body.insert(k.into(), Value::String(v.clone()));
        }
        body.insert("sign_type".into(), Value::String("RSA".into()));
        body.insert(
            "shop_webhook_url".into(),
            Value::String(self.env.webhook_url()),
        );
        Value::Object(body)
    }

    /// `PUT /v1/merchants/{id}`; when the host serves several plugins and wants the merchant's
    /// named, again with `"plugin": "alipay-wap"`.
    async fn put_merchant(&self, body: Value) -> Result<Reply, Stop> {
        self.put_merchant_as(&self.merchant, body).await
    }

    async fn put_merchant_as(&self, merchant: &str, body: Value) -> Result<Reply, Stop> {
        let path = client::merchant_path(merchant, "");
        let mut r = self.host.v1("PUT", &path, Some(&body)).await?;
        if r.status == 400 && names_field(&r, "plugin") {
            let mut body = body;
            body["plugin"] = Value::String("alipay-wap".into());
            r = self.host.v1("PUT", &path, Some(&body)).await?;
        }
        // Only a merchant the host stored with the kit's settings is the kit's to remove.
        if (200..300).contains(&r.status) {
            self.made(merchant);
        }
        Ok(r)
    }

    /// Records a merchant the kit configured, for the clean-up.
    fn made(&self, merchant: &str) {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        if !touched.iter().any(|m| m == merchant) {
            touched.push(merchant.to_owned());
        }
    }

    /// Removes the merchants the kit configured, with their test payments (the host
    /// refuses to unless they only ever talked to the kit's sandbox), or keeps them.
    async fn cleanup(&self, keep: bool) -> Cleanup {
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut done = Cleanup {
            host: self.host.base.clone(),
            ..Cleanup::default()
        };
        for merchant in touched {
            if keep {
                done.kept.push(merchant);
                continue;
            }
            let path = client::merchant_path(&merchant, "?purge=test");
            match self.host.v1("DELETE", &path, None).await {
                // payhost answers `{"id": …, "removed": true, "payments_removed": N}`.
                Ok(r) if r.status == 200 && r.json()["removed"] == Value::Bool(true) => {
                    done.removed.push(merchant)
                }
                Ok(r) if r.status == 200 => done.left.push((
                    merchant,
                    format!("the host did not say it removed it: {}", r.brief()),
                )),
                // Already gone (removed by someone else during the run): nothing to remove.
                Ok(r) if r.status == 404 && !is_no_route(&r) => {}
                Ok(r) if is_no_route(&r) || r.status == 405 => done.left.push((
                    merchant,
                    "the host has no DELETE /v1/merchants/{id} (an older payhost): remove it by hand"
                        .into(),
                )),
                Ok(r) => done.left.push((merchant, r.brief())),
                Err(e) => done.left.push((merchant, e)),
            }
        }
        done
    }

    async fn settings_refused(&mut self) -> Verdict {
        // Only the partner is wrong (no provider URLs, whose origins the host may not allow yet).
        let body = json!({
            "partner": "1234",
            "key": self.env.md5.key,
            "seller_email": self.env.md5.seller_email,
            "sign_type": "MD5",
        });
        let r = self.put_merchant(body).await?;
        ensure(r.status == 400, || {
            format!("settings with partner \"1234\" (not 16 digits starting with 2088) were not refused with 400: {}", r.brief())
        })?;
        ensure(names_field(&r, "partner"), || {
            format!("the refusal does not name the field partner: {}", r.brief())
        })?;
        let stored = self.host.v1("GET", &self.merchant_path(""), None).await?;
        ensure(
            !(stored.status == 200 && stored.text().contains("\"1234\"")),
            || format!("the refused partner was stored anyway: {}", stored.brief()),
        )
    }

    async fn configure(&mut self) -> Verdict {
        let r = self
            .put_merchant(self.merchant_body(&self.env.md5.partner))
            .await?;
        if r.status != 200 {
            let origin = &self.env.origin;
            // A refusal of the settings that names the kit's origin: the host does not allow
            // it (any other refusal is the host's to answer for, in its own words).
            let about_origin = r.status == 400
                && r.text().contains(origin.as_str())
                && [
                    "gateway_url",
                    "notify_verify_url",
                    "paychannel_url",
                    "mapi_url",
                    "shop_webhook_url",
                ]
                .iter()
                .any(|f| names_field(&r, f));
            let hint = if about_origin {
                format!(
                    ". The kit's sandbox and webhook receiver are at {origin}: allow that origin on the host (payhost.toml `[outbound] allowed_origins = [\"{origin}\"]`, or `payhost demo --allow-origin {origin}`), and give the kit that listen address (--sandbox-listen) so the port stays the same"
                )
            } else {
                String::new()
            };
            if about_origin {
                // A set-up problem, not the host's fault: the run could not start (exit 2),
                // said once, not once per URL setting the host named.
                // The host's first reason: the same one follows for each URL setting.
                let message = r.json()["error"]["message"]
                    .as_str()
                    .map(|m| {
                        m.split("; ")
                            .next()
                            .unwrap_or(m)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                self.origin_refused = Some(format!(
                    "the host refused the kit's merchant (HTTP {}: {message}): its URL settings point at {origin}, an origin the host does not allow{hint}",
                    r.status
                ));
                return Err(Stop::Skip(
                    "the host does not let the kit's sandbox in: the run could not start (see the message below)".into(),
                ));
            }
            return Err(format!("the host refused the kit's merchant: {}", r.brief()).into());
        }
        let got = self.host.v1("GET", &self.merchant_path(""), None).await?;
        ensure(got.status == 200, || {
            format!("GET of the merchant just saved: {}", got.brief())
        })?;
        ensure(got.text().contains(&self.env.md5.partner), || {
            format!(
                "GET of the merchant does not show its partner: {}",
                got.brief()
            )
        })?;
        for (what, secret) in [
            ("the MD5 key", &self.env.md5.key),
            ("the webhook secret", &self.env.webhook_secret),
        ] {
            ensure(
                !r.text().contains(secret.as_str()) && !got.text().contains(secret.as_str()),
                || format!("{what} is shown in full in the API's answer (secrets must be masked)"),
            )?;
        }
        Ok(())
    }

    fn next_order_no(&mut self, role: &str) -> String {
        self.orders_made += 1;
        format!("{}-{}-{role}", self.run, self.orders_made)
    }

    async fn create(&mut self, role: &str, total_fee: &str) -> Result<Order, Stop> {
        let merchant = self.merchant.clone();
        self.create_for(&merchant, role, total_fee).await
    }

    async fn create_for(
        &mut self,
        merchant: &str,
        role: &str,
        total_fee: &str,
    ) -> Result<Order, Stop> {
        let out_trade_no = self.next_order_no(role);
        self.order_merchants
            .push((out_trade_no.clone(), merchant.to_owned()));
        let r = self
            .create_request_for(merchant, &out_trade_no, total_fee)
            .await?;
        ensure(r.status == 201, || {
            format!(
                "creating order {out_trade_no} ({total_fee}): expected 201, got {}",
                r.brief()
            )
        })?;
        let pay_url = r.json()["pay_url"].as_str().unwrap_or_default().to_owned();
        ensure(
            pay_url.starts_with("http://") || pay_url.starts_with("https://"),
            || {
                format!(
                    "order {out_trade_no} was created without a pay_url to send the buyer to: {}",
                    r.brief()
                )
            },
        )?;
        Ok(Order {
            merchant: merchant.to_owned(),
            out_trade_no,
            total_fee: total_fee.to_owned(),
            pay_url,
        })
    }

    async fn create_request(&self, out_trade_no: &str, total_fee: &str) -> Result<Reply, Stop> {
        self.create_request_for(&self.merchant, out_trade_no, total_fee)
            .await
    }

    async fn create_request_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
        total_fee: &str,
    ) -> Result<Reply, Stop> {
        Ok(self
            .host
            .v1(
                "POST",
                &client::merchant_path(merchant, "/payments"),
                Some(&json!({
                    "out_trade_no": out_trade_no,
                    "subject": "conformance 测试",
                    "total_fee": total_fee,
                    "return_url": self.env.shop_return_url(),
                })),
            )
            .await?)
    }

    async fn payment(&self, order: &Order) -> Result<Value, Stop> {
        let r = self
            .host
            .v1(
                "GET",
                &client::merchant_path(
                    &order.merchant,
                    &format!("/payments/{}", order.out_trade_no),
                ),
                None,
            )
            .await?;
        ensure(r.status == 200, || {
            format!("GET payment {}: {}", order.out_trade_no, r.brief())
        })?;
        Ok(r.json())
    }

    async fn status(&self, order: &Order) -> Result<String, Stop> {
        Ok(self.payment(order).await?["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Waits until the order is paid on the host; its last status otherwise.
    async fn wait_paid(&self, order: &Order) -> Result<bool, Stop> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if is_paid(&self.status(order).await?) {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ensure_unpaid(&self, order: &Order, after: &str) -> Verdict {
        let status = self.status(order).await?;
        ensure(!is_paid(&status), || {
            format!("order {} is {status} after {after}", order.out_trade_no)
        })
    }

    /// The buyer opens the pay URL and pays in the sandbox cashier.
    async fn pay_in_sandbox(&self, order: &Order) -> Verdict {
        let page = client::get(&order.pay_url, &[]).await?;
        ensure(page.status == 200, || {
            format!(
                "the pay_url of {} did not open the sandbox cashier: {}",
                order.out_trade_no,
                page.brief()
            )
        })?;
        let token = cashier_token(&page.text()).ok_or_else(|| {
            format!(
                "the sandbox cashier page of {} has no trade token: {}",
                order.out_trade_no,
                page.brief()
            )
        })?;
        let paid = client::post_form(
            &format!("{}/cashier/pay", self.env.sandbox_url()),
            &alipay::encode(&[
                ("token".into(), token),
                ("buyer".into(), "buyer@conformance.example".into()),
            ]),
        )
        .await?;
        ensure(paid.status == 302 || paid.status == 303, || {
            format!(
                "paying {} in the sandbox cashier: {}",
                order.out_trade_no,
                paid.brief()
            )
        })
    }

    /// The notify_id of the sandbox's (lost) notify for a paid order, once it was sent.
    async fn sent_notify_id(&self, order: &Order) -> Result<String, Stop> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let sent = self
                .env
                .deliveries(&order.out_trade_no)
                .into_iter()
                .find(|d| d["sends"].as_u64().unwrap_or(0) > 0);
            if let Some(d) = sent {
                return Ok(d["notify_id"].as_str().unwrap_or_default().to_owned());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the sandbox never sent a notify for {}", order.out_trade_no).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What became of the sandbox's notifies for `order`, for a case whose order is not paid:
    /// how many were sent and the host's last answer, with what to do about a rate limit.
    fn notify_story(&self, order: &Order) -> String {
        let sent: Vec<serde_json::Value> = self
            .env
            .deliveries(&order.out_trade_no)
            .into_iter()
            .filter(|d| d["sends"].as_u64().unwrap_or(0) > 0)
            .collect();
        let Some(last) = sent.last() else {
            return " (the sandbox has not sent its notify yet)".into();
        };
        let sends = last["sends"].as_u64().unwrap_or(0);
        let reply: String = last["last_reply"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        match last["last_status"].as_u64() {
            Some(429) => format!(
                " (the sandbox sent its notify {sends} time(s); the host answered the last one HTTP 429, a rate limit: raise the host's [limits], such as notify_per_ip_per_s and notify_per_merchant_per_s, for the kit's run)"
            ),
            Some(status) => format!(
                " (the sandbox sent its notify {sends} time(s); the host answered the last one HTTP {status} {:?})",
                reply.trim()
            ),
            None => format!(
                " (the sandbox sent its notify {sends} time(s) and has no answer to show: the host did not answer, or the kit's faults dropped it)"
            ),
        }
    }

    /// A notify of the sandbox's trade for `order` (paid or not), with `notify_id`.
    fn notify_of(&self, order: &Order, notify_id: &str) -> NotifyTrade {
        let trade = self.env.trade(&order.out_trade_no).unwrap_or_default();
        let text = |k: &str| trade[k].as_str().unwrap_or_default().to_owned();
        NotifyTrade {
            partner: self.env.md5.partner.clone(),
            out_trade_no: order.out_trade_no.clone(),
            trade_no: Some(text("trade_no"))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| format!("2026{}", unix_now())),
            subject: Some(text("subject"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "conformance".into()),
            total_fee: order.total_fee.clone(),
            seller_email: self.env.md5.seller_email.clone(),
            trade_status: "TRADE_SUCCESS".into(),
            notify_id: notify_id.to_owned(),
        }
    }

    /// Posts a notify body where the host told the sandbox to (the order's notify_url), or to
    /// the host's notify endpoint of the merchant.
    async fn post_notify(&self, order: &Order, body: String) -> Result<Reply, Stop> {
        let url = self
            .env
            .trade(&order.out_trade_no)
            .and_then(|t| t["notify_url"].as_str().map(str::to_owned));
        Ok(match url {
            Some(url) => self.host.post_notify(&url, body.into_bytes()).await?,
            None => {
                self.host
                    .post_notify_to(&order.merchant, body.into_bytes())
                    .await?
            }
        })
    }

    fn md5_body(&self, trade: &NotifyTrade, signing: Signing) -> String {
        alipay::md5_notify_body(&self.env.md5.key, trade, signing, unix_now())
    }

    /// Waits until `n` webhooks of the order arrived (or SETTLE passed); returns them.
    async fn webhooks(&self, order: &Order, n: usize) -> Vec<Webhook> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let got = self.env.webhooks.for_order(&order.out_trade_no);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// No webhook for the order so far (after something that must not pay it).
    fn no_webhook_yet(&self, order: &Order, after: &str) -> Verdict {
        ensure(
            self.env.webhooks.for_order(&order.out_trade_no).is_empty(),
            || {
                format!(
                    "a webhook was sent for {} after {after}",
                    order.out_trade_no
                )
            },
        )
    }

    fn expect_webhooks(&mut self, order: &Order, n: usize) {
        self.expected_webhooks.push((order.out_trade_no.clone(), n));
    }

    /// Exactly one `payment.paid` webhook for the order so far, with a valid signature; and no
    /// other one later (`webhooks.exactly_once`).
    async fn one_paid_webhook(&mut self, order: &Order) -> Verdict {
        self.expect_webhooks(order, 1);
        let got = self.webhooks(order, 1).await;
        let paid: Vec<&Webhook> = got
            .iter()
            .filter(|w| w.event_type == "payment.paid")
            .collect();
        ensure(paid.len() == 1, || {
            format!(
                "expected one payment.paid webhook for {}, received {} ({})",
                order.out_trade_no,
                paid.len(),
                got.iter()
                    .map(|w| w.event_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        ensure(paid[0].signature_ok, || {
            format!(
                "the payment.paid webhook of {} does not carry a valid X-Payhost-Signature for the merchant's shop_webhook_secret",
                order.out_trade_no
            )
        })
    }

    /// Before the cases: whether this machine can reach the host where it tells the provider to
    /// send notifies (a TCP connection to the order's `notify_url`, made from its `public_url`).
    /// The host says that URL only in a payment's request to the gateway, so the kit saves its
    /// merchant and creates one order (`…-probe`, 0.01, never paid), as the cases do; both go
    /// with the merchant at the clean-up. `Ok` also when the kit could not find the URL out:
    /// the cases then say what went wrong. `Err` names the URL and what to do.
    async fn public_url_reachable(&mut self) -> Result<(), String> {
        let body = self.merchant_body(&self.env.md5.partner);
        match self.put_merchant(body).await {
            Ok(r) if r.status == 200 => {}
            _ => return Ok(()),
        }
        let Ok(order) = self.create("probe", "0.01").await else {
            return Ok(());
        };
        let notify_url = self
            .env
            .trade(&order.out_trade_no)
            .and_then(|t| t["notify_url"].as_str().map(str::to_owned))
            .or_else(|| openapi::query_param(&order.pay_url, "notify_url"))
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
        let Some(url) = notify_url else {
            return Ok(());
        };
        client::connects(&url, REACH_LIMIT)
            .await
            .map_err(|how| unreachable_public_url(&url, &how, &self.host.base))
    }

    // ---- the cases ----

    async fn payment_created(&mut self) -> Verdict {
        let order = self.create("paid", "12.34").await?;
        let p = self.payment(&order).await?;
        ensure(is_waiting(p["status"].as_str().unwrap_or_default()), || {
            format!("a new payment is {}, not WAIT_BUYER_PAY", p["status"])
        })?;
        ensure(p["total_fee"] == "12.34", || {
            format!(
                "the order was created for 12.34 but the host shows total_fee {}",
                p["total_fee"]
            )
        })?;
        let trade = self.env.trade(&order.out_trade_no).ok_or_else(|| {
            format!(
                "the host never asked the sandbox gateway to create {}",
                order.out_trade_no
            )
        })?;
        ensure(trade["total_fee"] == "12.34", || {
            format!(
                "the gateway was asked for total_fee {}, not 12.34",
                trade["total_fee"]
            )
        })?;
        ensure(
            trade["seller"] == self.env.md5.seller_email.as_str(),
            || {
                format!(
                    "the gateway was asked to pay seller {}, not the merchant's {}",
                    trade["seller"], self.env.md5.seller_email
                )
            },
        )?;
        // Amounts are decimal strings: a whole amount is sent with two places, never rounded.
        let whole = self.create("whole", "100").await?;
        let p = self.payment(&whole).await?;
        ensure(p["total_fee"] == "100.00", || {
            format!(
                "an order of 100 shows total_fee {} (expected 100.00)",
                p["total_fee"]
            )
        })?;
        let no = self.next_order_no("bad-amount");
        for bad in ["0.001", "-1", "1e3", "abc"] {
            let r = self.create_request(&no, bad).await?;
            ensure(r.status == 400 && names_field(&r, "total_fee"), || {
                format!(
                    "total_fee {bad:?} was not refused with 400 naming total_fee: {}",
                    r.brief()
                )
            })?;
        }
        self.paid = Some(order);
        Ok(())
    }

    async fn same_order_again(&mut self) -> Verdict {
        let order = self
            .paid
            .clone()
            .ok_or(Stop::Skip("needs payment.created".into()))?;
        let again = self.create_request(&order.out_trade_no, "12.34").await?;
        ensure(again.status == 200 || again.status == 201, || {
            format!(
                "the same order again: expected 200 with the existing payment, got {}",
                again.brief()
            )
        })?;
        let other = self.create_request(&order.out_trade_no, "12.35").await?;
        ensure(other.status == 409, || {
            format!(
                "the same order number with another amount: expected 409, got {}",
                other.brief()
            )
        })?;
        let p = self.payment(&order).await?;
        ensure(p["total_fee"] == "12.34", || {
            format!("the order's amount changed to {}", p["total_fee"])
        })
    }

    async fn paid_once(&mut self) -> Verdict {
        let order = self
            .paid
            .clone()
            .ok_or(Stop::Skip("needs payment.created".into()))?;
        self.env.set_faults(json!({})).await?;
        self.pay_in_sandbox(&order).await?;
        ensure(self.wait_paid(&order).await?, || {
            format!(
                "the buyer paid {} in the sandbox, which sent the notify, but the host does not show it paid after {} s{}",
                order.out_trade_no,
                SETTLE.as_secs(),
                self.notify_story(&order)
            )
        })?;
        let p = self.payment(&order).await?;
        ensure(p["total_fee"] == "12.34", || {
            format!("the paid order shows total_fee {}", p["total_fee"])
        })?;
        self.one_paid_webhook(&order).await?;
        // The sandbox got `success` back, so it stops resending.
        let deadline = Instant::now() + SETTLE;
        loop {
            let acked = self
                .env
                .deliveries(&order.out_trade_no)
                .iter()
                .any(|d| d["acknowledged"] == true);
            if acked {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the host applied the notify but never answered it with {ACK:?}: {:?}",
                    self.env.deliveries(&order.out_trade_no)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn return_verified(&mut self) -> Verdict {
        let order = self
            .paid
            .clone()
            .ok_or(Stop::Skip("needs payment.created".into()))?;
        let url = self
            .env
            .sandbox
            .trade_return_url(&order.out_trade_no)
            .ok_or("the sandbox has no trade to return from")?;
        let r = client::get(&url, &[]).await?;
        let location = r.header("location").unwrap_or_default().to_owned();
        ensure(r.status == 302 || r.status == 303, || {
            format!(
                "the signed call-back {url} did not send the buyer on to the shop: {}",
                r.brief()
            )
        })?;
        let shop = self.env.shop_return_url();
        ensure(location.starts_with(&shop), || {
            format!("the call-back redirected to {location}, not to the order's return_url {shop}")
        })?;
        let query: Vec<(String, String)> = location
            .split_once('?')
            .map(|(_, q)| alipay::form_pairs(q))
            .unwrap_or_default();
        let get = |k: &str| {
            query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        ensure(get("out_trade_no") == order.out_trade_no, || {
            format!(
                "the shop's return names out_trade_no {:?}",
                get("out_trade_no")
            )
        })?;
        ensure(is_paid(get("status")) || !self.paid_passed(), || {
            format!(
                "the shop's return says status {:?} for a paid order",
                get("status")
            )
        })?;
        ensure(get("total_fee") == "12.34", || {
            format!("the shop's return says total_fee {:?}", get("total_fee"))
        })?;
        ensure(
            return_sign_ok(&self.env.webhook_secret, &query, &[]),
            || {
                format!("the shop's return query is not signed with the merchant's shop_webhook_secret: {location}")
            },
        )
    }

    /// Whether the order of `payment.created` was seen paid (`notify.paid_once` passed).
    fn paid_passed(&self) -> bool {
        self.expected_webhooks
            .iter()
            .any(|(no, _)| self.paid.as_ref().is_some_and(|p| &p.out_trade_no == no))
    }

    async fn return_never_marks_paid(&mut self) -> Verdict {
        let order = self.create("unpaid", "23.45").await?;
        self.unpaid = Some(order.clone());
        self.expect_webhooks(&order, 0);
        // Alipay signs a call-back for a trade that is not paid: it proves who signed, not that
        // money arrived.
        let url = self
            .env
            .sandbox
            .trade_return_url(&order.out_trade_no)
            .ok_or("the sandbox has no trade to return from")?;
        let r = client::get(&url, &[]).await?;
        if let Some(location) = r.header("location") {
            let status = location
                .split_once('?')
                .map(|(_, q)| alipay::form_pairs(q))
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| k == "status")
                .map(|(_, v)| v)
                .unwrap_or_default();
            ensure(!is_paid(&status), || {
                format!("a call-back for an unpaid trade told the shop status {status}")
            })?;
        }
        self.ensure_unpaid(&order, "a signed call-back without any payment")
            .await
    }

    async fn return_tampered(&mut self) -> Verdict {
        let paid = self
            .paid
            .clone()
            .ok_or(Stop::Skip("needs payment.created".into()))?;
        let unpaid = self
            .unpaid
            .clone()
            .ok_or(Stop::Skip("needs return.never_marks_paid".into()))?;
        let url = self
            .env
            .sandbox
            .trade_return_url(&paid.out_trade_no)
            .ok_or("the sandbox has no trade to return from")?;
        let (callback, query) = url
            .split_once('?')
            .ok_or("the call-back URL has no query")?;
        let genuine = alipay::form_pairs(query);
        let swap = |key: &str, value: &str| -> Vec<(String, String)> {
            genuine
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if k == key {
                            value.to_owned()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect()
        };
        let bad_sign = {
            let sign = genuine
                .iter()
                .find(|(k, _)| k == "sign")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let flipped: String = sign.chars().rev().collect();
            swap("sign", &flipped)
        };
        for (what, tampered) in [
            (
                "out_trade_no changed to an unpaid order",
                swap("out_trade_no", &unpaid.out_trade_no),
            ),
            ("a wrong sign", bad_sign),
        ] {
            let r = client::get(&format!("{callback}?{}", alipay::encode(&tampered)), &[]).await?;
            let location = r.header("location").unwrap_or_default();
            ensure(
                !(300..400).contains(&r.status)
                    || !location.starts_with(&self.env.shop_return_url()),
                || {
                    format!("a call-back with {what} was accepted and sent the buyer to the shop: {location}")
                },
            )?;
            ensure(r.status >= 400, || {
                format!("a call-back with {what} was answered {}", r.brief())
            })?;
        }
        self.ensure_unpaid(&unpaid, "a tampered call-back naming it")
            .await
    }

    async fn rsa_paid_once(&mut self) -> Verdict {
        let rsa = self.env.add_rsa_merchant()?;
        let id = format!("{}-rsa", self.merchant);
        let r = self.put_merchant_as(&id, self.rsa_body(&rsa)).await?;
        ensure(r.status == 200, || {
            format!(
                "the host refused the kit's RSA merchant {id}: {}",
                r.brief()
            )
        })?;
        let got = self
            .host
            .v1("GET", &client::merchant_path(&id, ""), None)
            .await?;
        let key_body = rsa
            .private_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        let shown = got.text().replace("\\n", "");
        ensure(!shown.contains(&key_body[..64]), || {
            "the RSA merchant's private key is shown in the API's answer (secrets must be masked)"
                .into()
        })?;
        let order = self.create_for(&id, "rsa", "9.87").await?;
        self.pay_in_sandbox(&order).await?;
        ensure(self.wait_paid(&order).await?, || {
            format!(
                "the buyer paid {} (RSA merchant) in the sandbox, which sent the encrypted notify, but the host does not show it paid after {} s{}",
                order.out_trade_no,
                SETTLE.as_secs(),
                self.notify_story(&order)
            )
        })?;
        self.one_paid_webhook(&order).await?;
        Ok(())
    }

    async fn replayed_once(&mut self) -> Verdict {
        let order = self.create("replay", "34.56").await?;
        self.pay_in_sandbox(&order).await?;
        let notify_id = self.sent_notify_id(&order).await?;
        let body = self.md5_body(&self.notify_of(&order, &notify_id), Signing::Genuine);
        let first = self.post_notify(&order, body.clone()).await?;
        ensure(first.status == 200 && first.text().trim() == ACK, || {
            format!(
                "the genuine notify of {} was answered {}",
                order.out_trade_no,
                first.brief()
            )
        })?;
        ensure(self.wait_paid(&order).await?, || {
            format!(
                "{} is not paid after its genuine notify",
                order.out_trade_no
            )
        })?;
        let half = self.replays / 2;
        let mut replies = Vec::new();
        for _ in 0..half {
            replies.push(self.post_notify(&order, body.clone()).await?);
        }
        let concurrent = (0..self.replays - half).map(|_| self.post_notify(&order, body.clone()));
        for r in join_all(concurrent).await {
            replies.push(r?);
        }
        for r in &replies {
            ensure(r.status == 200 && r.text().trim() == ACK, || {
                format!("a replay of an applied notify was answered {} (a duplicate is acknowledged, so Alipay stops resending)", r.brief())
            })?;
        }
        let status = self.status(&order).await?;
        ensure(is_paid(&status), || {
            format!(
                "after {} replays {} is {status}",
                self.replays, order.out_trade_no
            )
        })?;
        let p = self.payment(&order).await?;
        if let Some(list) = p["notifications"].as_array() {
            let applied = list.iter().filter(|n| n["outcome"] == "applied").count();
            ensure(applied <= 1, || {
                format!("the payment lists {applied} notifications applied; one transition was expected")
            })?;
        }
        self.one_paid_webhook(&order).await?;
        Ok(())
    }

    async fn forged_refused(&mut self) -> Verdict {
        let order = self.create("forged", "45.67").await?;
        self.pay_in_sandbox(&order).await?;
        // A notify_id the sandbox really issued for this order, so notify_verify would confirm it:
        // only the signature check stands between a forger and a paid order.
        let notify_id = self.sent_notify_id(&order).await?;
        let trade = self.notify_of(&order, &notify_id);
        for (signing, what) in [
            (Signing::WrongKey, "signed with another key"),
            (
                Signing::Sorted,
                "signed over sorted parameters (the WAP notify is signed in fixed order)",
            ),
        ] {
            let r = self
                .post_notify(&order, self.md5_body(&trade, signing))
                .await?;
            if r.text().trim() == ACK {
                // Where the fault lies, for the vendor: the order's state after it says how far
                // the forged notify got.
                let now = self
                    .status(&order)
                    .await
                    .unwrap_or_else(|_| "unknown".into());
                return Err(format!(
                    "a notify {what} was acknowledged with {ACK:?}, and order {} is now {now}: the host (its component's verify-notification) accepted a signature that does not verify with the merchant's key",
                    order.out_trade_no
                )
                .into());
            }
            self.ensure_unpaid(&order, &format!("a notify {what}"))
                .await?;
        }
        self.no_webhook_yet(&order, "forged notifies")?;
        // The control: the same notify signed correctly is applied, so the refusals above were
        // for the signature and nothing else.
        let r = self
            .post_notify(&order, self.md5_body(&trade, Signing::Genuine))
            .await?;
        ensure(
            r.text().trim() == ACK && self.wait_paid(&order).await?,
            || {
                format!(
                "the same notify signed correctly was not applied either ({}): the refusals prove nothing",
                r.brief()
            )
            },
        )?;
        self.one_paid_webhook(&order).await?;
        Ok(())
    }

    async fn amount_mismatch(&mut self) -> Verdict {
        let order = self.create("mismatch", "56.78").await?;
        self.pay_in_sandbox(&order).await?;
        let notify_id = self.sent_notify_id(&order).await?;
        let genuine = self.notify_of(&order, &notify_id);
        let mut trade = genuine.clone();
        trade.total_fee = "0.01".into();
        let r = self
            .post_notify(&order, self.md5_body(&trade, Signing::Genuine))
            .await?;
        ensure(r.is_verdict(), || {
            format!(
                "a genuine notify for another amount was answered {}: not the host's verdict, so the case proves nothing",
                r.brief()
            )
        })?;
        self.ensure_unpaid(
            &order,
            &format!(
                "a genuine notify for 0.01 on an order of 56.78 (answered {})",
                r.brief()
            ),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.ensure_unpaid(&order, "a notify for another amount")
            .await?;
        self.no_webhook_yet(&order, "a notify for another amount")?;
        // The control: the notify as Alipay sent it, its amount the order's, is applied, so the
        // refusal above was for the amount and nothing else.
        let r = self
            .post_notify(&order, self.md5_body(&genuine, Signing::Genuine))
            .await?;
        ensure(
            r.text().trim() == ACK && self.wait_paid(&order).await?,
            || {
                format!(
                    "the same notify with the order's amount was not applied either ({}): the refusal proves nothing",
                    r.brief()
                )
            },
        )?;
        self.one_paid_webhook(&order).await
    }

    async fn unconfirmed(&mut self) -> Verdict {
        let order = self.create("unconfirmed", "67.89").await?;
        // Correctly signed, but Alipay never issued this notify_id: notify_verify answers false.
        let trade = self.notify_of(&order, &format!("{}unconfirmed{}", self.run, unix_now()));
        let r = self
            .post_notify(&order, self.md5_body(&trade, Signing::Genuine))
            .await?;
        ensure(r.text().trim() != ACK, || {
            "a notify that notify_verify did not confirm was acknowledged (Alipay would stop resending a notify the host did not apply)".to_owned()
        })?;
        ensure(r.is_verdict(), || {
            format!(
                "the unconfirmed notify was answered {}: not the host's verdict, so the case proves nothing",
                r.brief()
            )
        })?;
        self.ensure_unpaid(&order, "a notify that notify_verify answered false")
            .await?;
        self.no_webhook_yet(&order, "an unconfirmed notify")?;
        // The control: paid in the sandbox, the notify Alipay issued (confirmed by notify_verify)
        // is applied, so the refusal above was for the confirmation and nothing else.
        self.pay_in_sandbox(&order).await?;
        let notify_id = self.sent_notify_id(&order).await?;
        let confirmed = self.notify_of(&order, &notify_id);
        let r = self
            .post_notify(&order, self.md5_body(&confirmed, Signing::Genuine))
            .await?;
        ensure(
            r.text().trim() == ACK && self.wait_paid(&order).await?,
            || {
                format!(
                    "the notify Alipay issued for the same order was not applied either ({}): the refusal proves nothing",
                    r.brief()
                )
            },
        )?;
        self.one_paid_webhook(&order).await
    }

    async fn unknown_merchant(&mut self) -> Verdict {
        let stranger = format!("{}-nobody-{}", self.merchant, self.run);
        let out_trade_no = self.next_order_no("stranger");
        let order = Order {
            merchant: stranger.clone(),
            out_trade_no: out_trade_no.clone(),
            total_fee: "1.00".into(),
            pay_url: String::new(),
        };
        let body = self.md5_body(
            &self.notify_of(&order, &format!("{}stranger", self.run)),
            Signing::Genuine,
        );
        let r = self
            .host
            .post_notify_to(&stranger, body.into_bytes())
            .await?;
        ensure(r.status == 404, || {
            format!(
                "a notify for unknown merchant {stranger}: expected 404, got {}",
                r.brief()
            )
        })?;
        let m = self
            .host
            .v1("GET", &client::merchant_path(&stranger, ""), None)
            .await?;
        ensure(m.status == 404, || {
            format!(
                "the unknown merchant exists after its notify: {}",
                m.brief()
            )
        })?;
        let listed = self
            .host
            .v1(
                "GET",
                &self.merchant_path("/notifications?limit=1000"),
                None,
            )
            .await?;
        ensure(!listed.text().contains(&out_trade_no), || {
            format!(
                "the notify for an unknown merchant was stored under {}",
                self.merchant
            )
        })
    }

    async fn oversized(&mut self) -> Verdict {
        let unpaid = self.unpaid.clone();
        let mut body = String::from(
            "service=alipay.wap.trade.create.direct&v=1.0&sec_id=MD5&sign=0&notify_data=",
        );
        body.push_str(&"A".repeat(64 << 10));
        let r = match &unpaid {
            Some(order) => self.post_notify(order, body).await?,
            None => {
                self.host
                    .post_notify_to(&self.merchant, body.into_bytes())
                    .await?
            }
        };
        ensure(r.status == 413, || {
            format!("a 64 KiB notify body: expected 413, got {}", r.brief())
        })
    }

    async fn sync_recovers(&mut self) -> Verdict {
        let order = self.create("lost", "78.90").await?;
        let sync_path = self.merchant_path(&format!("/payments/{}/sync", order.out_trade_no));
        let before = self.host.v1("POST", &sync_path, None).await?;
        if is_no_route(&before) {
            return Err(Stop::Skip(
                "the host has no POST …/payments/{no}/sync".into(),
            ));
        }
        ensure(before.status == 200, || {
            format!("sync of an unpaid order: {}", before.brief())
        })?;
        self.ensure_unpaid(&order, "a sync while the trade waits for the buyer")
            .await?;
        // The buyer pays; the notify is lost on the way (the sandbox drops every notify now).
        self.pay_in_sandbox(&order).await?;
        self.sent_notify_id(&order).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.ensure_unpaid(&order, "a lost notify (nothing reached the host)")
            .await?;
        let r = self.host.v1("POST", &sync_path, None).await?;
        ensure(r.status == 200, || {
            format!("sync of a paid trade: {}", r.brief())
        })?;
        ensure(r.json()["found"] == true, || {
            format!("sync did not find the paid trade: {}", r.brief())
        })?;
        ensure(self.wait_paid(&order).await?, || {
            format!(
                "the order is not paid after sync found the trade paid: {}",
                r.brief()
            )
        })?;
        let again = self.host.v1("POST", &sync_path, None).await?;
        ensure(again.status == 200, || {
            format!("a second sync: {}", again.brief())
        })?;
        self.one_paid_webhook(&order).await?;
        Ok(())
    }

    async fn webhooks_exactly_once(&mut self) -> Verdict {
        // Late duplicates would show up now.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut problems = Vec::new();
        for (no, n) in &self.expected_webhooks {
            let paid: Vec<Webhook> = self
                .env
                .webhooks
                .for_order(no)
                .into_iter()
                .filter(|w| w.event_type == "payment.paid")
                .collect();
            if paid.len() != *n {
                problems.push(format!(
                    "{no}: {} payment.paid webhooks, expected {n}",
                    paid.len()
                ));
            }
            let ids: std::collections::HashSet<&str> =
                paid.iter().map(|w| w.event_id.as_str()).collect();
            if ids.len() < paid.len() && ids.len() > 1 {
                problems.push(format!(
                    "{no}: payment.paid sent under {} different event ids",
                    ids.len()
                ));
            }
        }
        let mut unexpected: Vec<String> = Vec::new();
        for w in self.env.webhooks.all() {
            if !w.signature_ok {
                problems.push(format!(
                    "a {} webhook for {} has no valid signature",
                    w.event_type, w.out_trade_no
                ));
            }
            if !self
                .expected_webhooks
                .iter()
                .any(|(no, _)| *no == w.out_trade_no)
                && w.out_trade_no.starts_with(&self.run)
                && w.event_type == "payment.paid"
                && !unexpected.contains(&w.out_trade_no)
            {
                unexpected.push(w.out_trade_no.clone());
            }
        }
        // An order whose case stopped before counting its webhook (a rate limit, say) may
        // still have been paid: then it, too, is owed exactly one.
        let counted = self.expected_webhooks.len() + unexpected.len();
        for no in unexpected {
            let merchant = self
                .order_merchants
                .iter()
                .find(|(made, _)| *made == no)
                .map_or_else(|| self.merchant.clone(), |(_, m)| m.clone());
            let order = Order {
                merchant,
                out_trade_no: no.clone(),
                total_fee: String::new(),
                pay_url: String::new(),
            };
            // Said as a problem beside the others, never stopping the check.
            let status = match self.status(&order).await {
                Ok(status) => status,
                Err(Stop::Fail(why)) => {
                    problems.push(format!("{no}: {why}"));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let paid = self
                .env
                .webhooks
                .for_order(&no)
                .into_iter()
                .filter(|w| w.event_type == "payment.paid")
                .count();
            if !is_paid(&status) {
                problems.push(format!(
                    "a payment.paid webhook for {no}, which the host shows {status}"
                ));
            } else if paid != 1 {
                problems.push(format!(
                    "{no} (paid during a case that stopped early): {paid} payment.paid webhooks, expected 1"
                ));
            }
        }
        if counted == 0 {
            return Err(Stop::Skip(
                "no order got far enough to count its webhooks".into(),
            ));
        }
        ensure(problems.is_empty(), || problems.join("; "))
    }
}

/// Why a run cannot start when the host's notify URL cannot be reached from here.
fn unreachable_public_url(url: &str, how: &str, base: &str) -> String {
    // `scheme://host:port` of the URL.
    let origin = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    format!(
        "the host's notify URL {url} cannot be reached from here ({how}): the host makes it from its public_url, \
         and the kit posts notifies and follows the buyer's returns there, not to {base}. \
         Set public_url in the host's configuration to an address this machine can reach, \
         or run the kit where {origin} resolves and answers"
    )
}

/// Whether an error answer names `field` (`{"error":{"field"}}`, or `fields` as objects or text).
fn names_field(r: &Reply, field: &str) -> bool {
    let v = r.json();
    if v["error"]["field"] == field {
        return true;
    }
    v["fields"].as_array().is_some_and(|list| {
        list.iter().any(|f| {
            f["field"] == field
                || f.as_str().is_some_and(|s| {
                    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .any(|word| word == field)
                })
        })
    }) || v["error"]["message"].as_str().is_some_and(|m| {
        m.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == field)
    })
}

/// The trade token in the sandbox cashier's pay form.
fn cashier_token(page: &str) -> Option<String> {
    let at = page.find("name=\"token\" value=\"")? + "name=\"token\" value=\"".len();
    let rest = &page[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Awaits futures concurrently (in this task), in order.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn field_names_in_error_answers() {
        assert!(names_field(
            &reply(400, r#"{"error":{"field":"partner"}}"#),
            "partner"
        ));
        assert!(names_field(
            &reply(
                400,
                r#"{"error":{"field":null},"fields":[{"field":"partner","reason":"x"}]}"#
            ),
            "partner"
        ));
        assert!(names_field(
            &reply(
                400,
                r#"{"error":{},"fields":["merchants.m.partner: must be 16 digits"]}"#
            ),
            "partner"
        ));
        assert!(!names_field(
            &reply(
                400,
                r#"{"error":{"field":"key"},"fields":[{"field":"key"}]}"#
            ),
            "partner"
        ));
        assert!(!names_field(
            &reply(400, r#"{"fields":["partnership: x"]}"#),
            "partner"
        ));
    }

    #[test]
    fn the_cases_at_the_public_url_are_flow_cases() {
        for id in AT_PUBLIC_URL {
            assert!(CASES.contains(id), "{id}");
        }
        // Only these reach the host's public_url; the rest run against a host whose public_url
        // the kit cannot reach.
        for id in [
            "merchant.settings_refused",
            "merchant.configured",
            "payment.created",
        ] {
            assert!(!AT_PUBLIC_URL.contains(&id), "{id}");
        }
    }

    #[test]
    fn an_unreachable_public_url_is_named_with_what_to_do() {
        let why = unreachable_public_url(
            "https://pay.myshop.example/notify/conformance",
            "failed to lookup address information",
            "http://127.0.0.1:28083",
        );
        assert!(
            why.starts_with("the host's notify URL https://pay.myshop.example/notify/conformance cannot be reached from here (failed to lookup address information)"),
            "{why}"
        );
        assert!(why.contains("not to http://127.0.0.1:28083"), "{why}");
        assert!(
            why.contains(
                "Set public_url in the host's configuration to an address this machine can reach"
            ),
            "{why}"
        );
        assert!(
            why.ends_with("or run the kit where https://pay.myshop.example resolves and answers"),
            "{why}"
        );
        assert!(!why.contains('\n'), "one line: {why}");
    }

    #[test]
    fn cashier_tokens() {
        assert_eq!(
            cashier_token("<input type=\"hidden\" name=\"token\" value=\"abc123\">").as_deref(),
            Some("abc123")
        );
        assert_eq!(cashier_token("<p>closed</p>"), None);
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let futs = (0..4u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(40 - i * 10)).await;
            i
        });
        assert_eq!(join_all(futs).await, vec![0, 1, 2, 3]);
    }
}
