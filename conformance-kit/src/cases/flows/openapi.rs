//! The open-platform cases (`openapi.*`): a second merchant of the kit's, `{merchant}-openapi`
//! (`api = openapi`, an APPID and two fresh RSA2 key pairs of the kit's, the kit's sandbox as its
//! `gateway`). Its settings are refused field by field, its payments must come back with both a
//! GET `pay_url` and a POST `pay_form` that the sandbox's gateway accepts (it checks the app's
//! signature), the notifies the kit signs as Alipay (V1 rule) are applied once, a partial refund's
//! notify is a refund, never a second payment, and a lost notify is recovered by the trade query.
//! Through the host's back-office routes: a partial refund, close, and the day's reconciliation
//! against the sandbox's bill (with rows the kit plants in it). A host without those routes, or
//! whose component predates them (contract 0.4.0), has those cases skipped in its own words.

use super::{cashier_token, is_paid, names_field, Flow, Order, ACK, SETTLE};
use crate::alipay;
use crate::client;
use crate::openapi::{self as msg, OpenNotify};
use crate::receiver::unix_now;
use crate::runner::{ensure, Runner, Stop, Verdict};
use crate::sandbox_setup::OpenApp;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

const SETTINGS_APP_ID: &str = "openapi.settings.app_id_refused";
const SETTINGS_OWN_KEY: &str = "openapi.settings.own_public_key_refused";
const SETTINGS_BAD_KEY: &str = "openapi.settings.bad_private_key_refused";
const CONFIGURED: &str = "openapi.merchant.configured";
const PAY: &str = "openapi.pay.products";
const FORGED: &str = "openapi.notify.forged_refused";
const PAID: &str = "openapi.notify.paid_once";
const REFUND: &str = "openapi.notify.partial_refund_not_a_payment";
const SYNC: &str = "openapi.sync.lost_notify_recovered";
const REFUND_ONCE: &str = "openapi.refund.partial_once";
const CLOSE: &str = "openapi.close.unpaid_only";
const BILL: &str = "openapi.bill.reconciled";

/// The open-platform merchant's state across its cases.
#[derive(Default)]
pub(super) struct OpenState {
    app: Option<OpenApp>,
    configured: bool,
    /// The `wap` order of `openapi.pay.products`, its `notify_url` (from the signed request).
    order: Option<(Order, String)>,
    /// Whether `openapi.notify.paid_once` saw it paid.
    paid: bool,
    /// The trade number of the kit's notifies of that order: one trade, as Alipay's refund
    /// notifies name the trade they refund (a host may hold another trade's message).
    trade_no: Option<String>,
    /// The order paid in the sandbox's cashier and recovered by sync (refunded next).
    paid_at_gateway: Option<Order>,
    /// The `out_biz_no` of the partial refund the kit notified (the gateway never made it).
    refund_notified: Option<String>,
    /// The `request_no` of the refund made through `POST …/refunds` (the gateway made it).
    refund_made: Option<String>,
}

/// Runs the `openapi.*` cases in order.
pub(super) async fn cases(runner: &mut Runner, flow: &mut Flow<'_>) {
    let all = [
        SETTINGS_APP_ID,
        SETTINGS_OWN_KEY,
        SETTINGS_BAD_KEY,
        CONFIGURED,
        PAY,
        FORGED,
        PAID,
        REFUND,
        SYNC,
        REFUND_ONCE,
        CLOSE,
        BILL,
    ];
    if !runner.selected_any(&all) {
        return;
    }
    // Two fresh 2048-bit key pairs for the app the sandbox learns about.
    let app = match flow.env.add_openapi_app() {
        Ok(app) => app,
        Err(e) => {
            for id in all {
                runner.skip(id, &e);
            }
            return;
        }
    };
    flow.open.app = Some(app);
    runner
        .case(SETTINGS_APP_ID, flow.open_app_id_refused())
        .await;
    runner
        .case(SETTINGS_OWN_KEY, flow.open_own_key_refused())
        .await;
    runner
        .case(SETTINGS_BAD_KEY, flow.open_bad_key_refused())
        .await;
    flow.open.configured = runner.case(CONFIGURED, flow.open_configure()).await;
    if !flow.open.configured {
        for id in &all[4..] {
            runner.skip(id, "needs openapi.merchant.configured");
        }
        return;
    }
    runner.case(PAY, flow.open_products()).await;
    runner.case(FORGED, flow.open_forged()).await;
    runner.case(PAID, flow.open_paid_once()).await;
    runner.case(REFUND, flow.open_partial_refund()).await;
    runner.case(SYNC, flow.open_sync()).await;
    runner.case(REFUND_ONCE, flow.open_refund()).await;
    runner.case(CLOSE, flow.open_close()).await;
    runner.case(BILL, flow.open_bill()).await;
}

/// Whether the host paid and then refunded part of it (or not yet): never unpaid again.
fn is_paid_or_partly_refunded(status: &str) -> bool {
    is_paid(status) || status.eq_ignore_ascii_case("PARTIALLY_REFUNDED")
}

/// A host without the route, or whose component predates refunds, close and bills (payment
/// contract 0.4.0) and says so (`501 not_supported`, or a `502` naming 0.4.0): the case is
/// skipped with its words, never passed.
fn unsupported(r: &client::Reply) -> Option<Stop> {
    if client::is_no_route(r) {
        return Some(Stop::Skip(format!(
            "the host has no such route (an older payhost): {}",
            r.brief()
        )));
    }
    let not_supported = r.status == 501 && r.json()["error"]["code"] == "not_supported";
    (not_supported || (r.status == 502 && r.text().contains("0.4.0"))).then(|| {
        Stop::Skip(format!(
            "the host's component cannot do this yet: {}",
            r.brief()
        ))
    })
}

/// A query parameter of a URL, decoded.
pub(super) fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, q) = url.split_once('?')?;
    alipay::form_pairs(q)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The value of `attr="…"` in an HTML tag, unescaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let at = tag.find(&marker)? + marker.len();
    let rest = &tag[at..];
    Some(unescape(&rest[..rest.find('"')?]))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#039;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A form: its method, action and fields (`<input name value>`).
type Form = (String, String, Vec<(String, String)>);

/// The form of the answer's `pay_form`.
fn parse_form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let tag = &html[start..start + html[start..].find('>')?];
    let method = attr(tag, "method").unwrap_or_else(|| "get".into());
    let action = attr(tag, "action")?;
    let fields = html[start..]
        .split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect();
    Some((method.to_ascii_lowercase(), action, fields))
}

impl Flow<'_> {
    fn open_id(&self) -> String {
        format!("{}-openapi", self.merchant)
    }

    fn open_app(&self) -> Result<&OpenApp, Stop> {
        self.open
            .app
            .as_ref()
            .ok_or(Stop::Skip("the kit has no open-platform app".into()))
    }

    /// The open-platform settings of the kit's app; `gateway` only when `with_gateway` (the
    /// refusal cases leave it at its default, an origin every host allows).
    fn open_body(&self, with_gateway: bool) -> Result<Map<String, Value>, Stop> {
        let app = self.open_app()?;
        let mut body = Map::new();
        for (k, v) in [
            ("api", "openapi"),
            ("app_id", app.app_id.as_str()),
            ("app_private_key", app.app_private_key.as_str()),
            ("alipay_public_key", app.alipay_public_key.as_str()),
            ("seller_id", app.seller_id.as_str()),
            ("sign_type", "RSA2"),
            ("shop_webhook_secret", self.env.webhook_secret.as_str()),
        ] {
            body.insert(k.into(), Value::String(v.to_owned()));
        }
        body.insert(
            "shop_webhook_url".into(),
            Value::String(self.env.webhook_url()),
        );
        if with_gateway {
            body.insert("gateway".into(), Value::String(self.env.openapi_gateway()));
        }
        Ok(body)
    }

    /// PUT settings that must be refused naming `field`; `bad` (the refused value) is not stored.
    async fn open_refused(&self, body: Map<String, Value>, field: &str, what: &str) -> Verdict {
        let id = self.open_id();
        let bad = body[field].clone();
        let r = self.put_merchant_as(&id, Value::Object(body)).await?;
        ensure(r.status == 400, || {
            format!(
                "open-platform settings with {what} were not refused with 400: {}",
                r.brief()
            )
        })?;
        ensure(names_field(&r, field), || {
            format!(
                "the refusal of {what} does not name the field {field}: {}",
                r.brief()
            )
        })?;
        let app = self.open_app()?;
        ensure(!r.text().contains(&app.app_private_key[40..100]), || {
            "the refusal echoes the app's private key".into()
        })?;
        let stored = self
            .host
            .v1("GET", &client::merchant_path(&id, ""), None)
            .await?;
        ensure(
            !(stored.status == 200 && stored.json()[field] == bad),
            || format!("the refused {field} was stored anyway: {}", stored.brief()),
        )
    }

    async fn open_app_id_refused(&mut self) -> Verdict {
        let mut body = self.open_body(false)?;
        body.insert("app_id".into(), Value::String("12345".into()));
        self.open_refused(body, "app_id", "app_id \"12345\" (not 16 digits)")
            .await
    }

    async fn open_own_key_refused(&mut self) -> Verdict {
        let mut body = self.open_body(false)?;
        let own = self.open_app()?.app_public_key.clone();
        body.insert("alipay_public_key".into(), Value::String(own));
        self.open_refused(
            body,
            "alipay_public_key",
            "the app's own public key as alipay_public_key",
        )
        .await
    }

    async fn open_bad_key_refused(&mut self) -> Verdict {
        let mut body = self.open_body(false)?;
        body.insert(
            "app_private_key".into(),
            Value::String(
                "-----BEGIN PRIVATE KEY-----\nnot*a*key\n-----END PRIVATE KEY-----".into(),
            ),
        );
        self.open_refused(
            body,
            "app_private_key",
            "an app_private_key that does not parse",
        )
        .await
    }

    async fn open_configure(&mut self) -> Verdict {
        let id = self.open_id();
        let r = self
            .put_merchant_as(&id, Value::Object(self.open_body(true)?))
            .await?;
        if r.status != 200 {
            let origin = &self.env.origin;
            return Err(format!(
                "the host refused the kit's open-platform merchant {id}: {} (its gateway is the kit's sandbox at {origin}, which the host must allow)",
                r.brief()
            )
            .into());
        }
        let got = self
            .host
            .v1("GET", &client::merchant_path(&id, ""), None)
            .await?;
        ensure(got.status == 200, || {
            format!("GET of the merchant just saved: {}", got.brief())
        })?;
        let app = self.open_app()?;
        ensure(got.text().contains(&app.app_id), || {
            format!("GET of {id} does not show its app_id: {}", got.brief())
        })?;
        let body: String = app
            .app_private_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for answer in [&r, &got] {
            let shown = answer.text().replace("\\n", "");
            ensure(!shown.contains(&body[..64]), || {
                "the app's private key is shown in the API's answer (secrets must be masked)".into()
            })?;
        }
        Ok(())
    }

    /// `POST …/payments` for the open-platform merchant with `product`.
    async fn open_create(
        &mut self,
        role: &str,
        total_fee: &str,
        product: &str,
    ) -> Result<(String, client::Reply), Stop> {
        let no = self.next_order_no(role);
        self.order_merchants.push((no.clone(), self.open_id()));
        let r = self
            .host
            .v1(
                "POST",
                &client::merchant_path(&self.open_id(), "/payments"),
                Some(&json!({
                    "out_trade_no": no,
                    "subject": "conformance 开放平台",
                    "total_fee": total_fee,
                    "return_url": self.env.shop_return_url(),
                    "merchant_url": self.env.shop_return_url(),
                    "product": product,
                })),
            )
            .await?;
        ensure(r.status == 201, || {
            format!(
                "creating {product} order {no} ({total_fee}): expected 201, got {}",
                r.brief()
            )
        })?;
        Ok((no, r))
    }

    /// A wap or pc answer: its `pay_url` (checked) and `pay_form` (checked), and the cashier
    /// both open at the sandbox's gateway.
    async fn open_check_redirect(&self, no: &str, r: &client::Reply, method: &str) -> Verdict {
        let v = r.json();
        let gateway = self.env.openapi_gateway();
        let app = self.open_app()?;
        let pay_url = v["pay_url"].as_str().unwrap_or_default();
        ensure(pay_url.starts_with(&format!("{gateway}?")), || {
            format!("the {method} answer's pay_url is not a GET on the merchant's gateway {gateway}: {}", r.brief())
        })?;
        for (k, want) in [
            ("method", method),
            ("app_id", app.app_id.as_str()),
            ("sign_type", "RSA2"),
            ("charset", "utf-8"),
            ("version", "1.0"),
        ] {
            let got = query_param(pay_url, k).unwrap_or_default();
            ensure(got.eq_ignore_ascii_case(want), || {
                format!("the {method} pay_url has {k}={got:?}, expected {want:?}: {pay_url}")
            })?;
        }
        let biz: Value = query_param(pay_url, "biz_content")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null);
        ensure(
            biz["out_trade_no"] == no && biz["seller_id"] == app.seller_id.as_str(),
            || {
                format!("the {method} biz_content does not name the order and the merchant's seller_id: {biz}")
            },
        )?;
        let page = client::get(pay_url, &[]).await?;
        ensure(
            page.status == 200 && cashier_token(&page.text()).is_some(),
            || {
                format!(
                    "the sandbox's gateway did not accept the {method} pay_url (its signature is checked with the app's public key): {}",
                    page.brief()
                )
            },
        )?;
        let form = v["pay_form"].as_str().unwrap_or_default();
        let (form_method, action, fields) = parse_form(form).ok_or_else(|| {
            format!(
                "the {method} answer has no pay_form (an auto-submitting form): {}",
                r.brief()
            )
        })?;
        ensure(
            form_method == "post" && action.starts_with(&gateway),
            || {
                format!("the {method} pay_form is a {form_method} to {action}, not a POST to the gateway {gateway}")
            },
        )?;
        ensure(fields.iter().any(|(k, _)| k == "biz_content"), || {
            format!("the {method} pay_form does not carry biz_content as a field: {form}")
        })?;
        let posted = client::post_form(&action, &alipay::encode(&fields)).await?;
        ensure(
            posted.status == 200 && cashier_token(&posted.text()).is_some(),
            || {
                format!(
                    "the sandbox's gateway did not accept the {method} pay_form's POST: {}",
                    posted.brief()
                )
            },
        )
    }

    async fn open_products(&mut self) -> Verdict {
        let (wap_no, wap) = self.open_create("open-wap", "12.34", "wap").await?;
        self.open_check_redirect(&wap_no, &wap, "alipay.trade.wap.pay")
            .await?;
        let pay_url = wap.json()["pay_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let notify_url = query_param(&pay_url, "notify_url").unwrap_or_default();
        ensure(notify_url.starts_with("http"), || {
            format!("the wap pay_url names no notify_url: {pay_url}")
        })?;
        let wap_order = Order {
            merchant: self.open_id(),
            out_trade_no: wap_no,
            total_fee: "12.34".into(),
            pay_url,
        };
        self.open.order = Some((wap_order, notify_url));
        let (pc_no, pc) = self.open_create("open-pc", "23.45", "pc").await?;
        self.open_check_redirect(&pc_no, &pc, "alipay.trade.page.pay")
            .await?;
        let (app_no, app_answer) = self.open_create("open-app", "34.56", "app").await?;
        let order_string = app_answer.json()["order_string"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pairs = alipay::form_pairs(&order_string);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let app = self.open_app()?;
        ensure(
            get("method") == "alipay.trade.app.pay"
                && get("app_id") == app.app_id
                && !get("sign").is_empty()
                && get("biz_content").contains(&app_no),
            || {
                format!(
                    "the app answer's order_string is not a signed alipay.trade.app.pay for {app_no}: {}",
                    app_answer.brief()
                )
            },
        )
    }

    /// The kit's notify for the wap order (a fresh notify_id, the order's one trade), as Alipay
    /// would sign it.
    fn open_notify(
        &mut self,
        order: &Order,
        refund: Option<(String, String)>,
    ) -> Result<OpenNotify, Stop> {
        let trade_no = self
            .open
            .trade_no
            .get_or_insert_with(|| {
                format!(
                    "2026{}{:08}",
                    unix_now(),
                    rand::random::<u32>() % 100_000_000
                )
            })
            .clone();
        let app = self.open_app()?;
        Ok(OpenNotify {
            app_id: app.app_id.clone(),
            seller_id: app.seller_id.clone(),
            out_trade_no: order.out_trade_no.clone(),
            trade_no,
            subject: "conformance 开放平台".into(),
            total_amount: order.total_fee.clone(),
            trade_status: "TRADE_SUCCESS".into(),
            notify_id: format!("{}open{}", self.run, rand::random::<u32>()),
            refund,
        })
    }

    fn open_order(&self) -> Result<(Order, String), Stop> {
        self.open
            .order
            .clone()
            .ok_or(Stop::Skip("needs openapi.pay.products".into()))
    }

    async fn open_post(&self, url: &str, body: String) -> Result<client::Reply, Stop> {
        Ok(self.host.post_notify(url, body.into_bytes()).await?)
    }

    async fn open_forged(&mut self) -> Verdict {
        let (order, url) = self.open_order()?;
        let app = self.open_app()?.clone();
        let n = self.open_notify(&order, None)?;
        let genuine = msg::fields(&n, unix_now());
        let other_app = msg::with(&genuine, "app_id", "2021999999999999");
        let other_app = msg::with(&other_app, "auth_app_id", "2021999999999999");
        for (what, body) in [
            (
                "signed with the app's own key instead of Alipay's",
                msg::body(&app.app_private, &genuine, &genuine),
            ),
            (
                "whose total_amount was changed to 0.01 after signing",
                msg::body(
                    &app.alipay_private,
                    &genuine,
                    &msg::with(&genuine, "total_amount", "0.01"),
                ),
            ),
            (
                "signed by Alipay's key but for another app_id",
                msg::body(&app.alipay_private, &other_app, &other_app),
            ),
        ] {
            let r = self.open_post(&url, body).await?;
            ensure(r.text().trim() != ACK, || {
                format!("an open-platform notify {what} was acknowledged with {ACK:?}")
            })?;
            // A refusal in front of the check (a rate limit, a missing route) proves nothing;
            // the genuine notify is applied in `openapi.notify.paid_once`.
            ensure(r.is_verdict(), || {
                format!(
                    "an open-platform notify {what} was answered {}: not the host's verdict, so the case proves nothing",
                    r.brief()
                )
            })?;
            self.ensure_unpaid(&order, &format!("an open-platform notify {what}"))
                .await?;
        }
        self.no_webhook_yet(&order, "forged open-platform notifies")
    }

    async fn open_paid_once(&mut self) -> Verdict {
        let (order, url) = self.open_order()?;
        let app = self.open_app()?.clone();
        let fields = msg::fields(&self.open_notify(&order, None)?, unix_now());
        let body = msg::body(&app.alipay_private, &fields, &fields);
        let first = self.open_post(&url, body.clone()).await?;
        ensure(first.status == 200 && first.text() == ACK, || {
            format!(
                "the genuine open-platform notify of {} was answered {} (the reply must be the 7 bytes {ACK:?})",
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
        for _ in 0..3 {
            let again = self.open_post(&url, body.clone()).await?;
            ensure(again.status == 200 && again.text() == ACK, || {
                format!(
                    "a replay of an applied open-platform notify was answered {}",
                    again.brief()
                )
            })?;
        }
        let p = self.payment(&order).await?;
        ensure(p["total_fee"] == "12.34", || {
            format!("the paid order shows total_fee {}", p["total_fee"])
        })?;
        self.one_paid_webhook(&order).await?;
        self.open.paid = true;
        Ok(())
    }

    async fn open_partial_refund(&mut self) -> Verdict {
        let (order, url) = self.open_order()?;
        if !self.open.paid {
            return Err(Stop::Skip("needs openapi.notify.paid_once".into()));
        }
        let app = self.open_app()?.clone();
        let out_biz_no = format!("{}-r1", order.out_trade_no);
        let n = self.open_notify(&order, Some(("2.00".into(), out_biz_no.clone())))?;
        let fields = msg::fields(&n, unix_now());
        let r = self
            .open_post(&url, msg::body(&app.alipay_private, &fields, &fields))
            .await?;
        ensure(r.status == 200 && r.text() == ACK, || {
            format!("a partial refund's notify was answered {}", r.brief())
        })?;
        // The shop hears of a refund, and of no second payment.
        let deadline = Instant::now() + SETTLE;
        let refund_hooks = loop {
            let hooks = self.env.webhooks.for_order(&order.out_trade_no);
            let refunds: Vec<String> = hooks
                .iter()
                .filter(|w| w.event_type.contains("refund"))
                .map(|w| w.event_type.clone())
                .collect();
            if !refunds.is_empty() || Instant::now() > deadline {
                break refunds;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ensure(refund_hooks.len() == 1, || {
            format!(
                "a partial refund's notify sent {} refund webhooks for {} ({refund_hooks:?}); one was expected",
                refund_hooks.len(),
                order.out_trade_no
            )
        })?;
        let p = self.payment(&order).await?;
        ensure(
            is_paid_or_partly_refunded(p["status"].as_str().unwrap_or_default()),
            || {
                format!(
                "after a partial refund of 2.00 of 12.34 the order is {} (it stays paid, partly refunded)",
                p["status"]
            )
            },
        )?;
        ensure(p["total_fee"] == "12.34", || {
            format!(
                "a partial refund changed the order's total_fee to {}",
                p["total_fee"]
            )
        })?;
        // `webhooks.exactly_once` checks no second payment.paid arrives later.
        let paid = self
            .env
            .webhooks
            .for_order(&order.out_trade_no)
            .into_iter()
            .filter(|w| w.event_type == "payment.paid")
            .count();
        ensure(paid == 1, || {
            format!("{paid} payment.paid webhooks after a partial refund's notify: it was taken for a payment")
        })?;
        self.open.refund_notified = Some(out_biz_no);
        Ok(())
    }

    async fn open_sync(&mut self) -> Verdict {
        let (no, r) = self.open_create("open-lost", "45.67", "wap").await?;
        let order = Order {
            merchant: self.open_id(),
            out_trade_no: no.clone(),
            total_fee: "45.67".into(),
            pay_url: r.json()["pay_url"].as_str().unwrap_or_default().to_owned(),
        };
        let sync_path = client::merchant_path(&self.open_id(), &format!("/payments/{no}/sync"));
        let before = self.host.v1("POST", &sync_path, None).await?;
        if client::is_no_route(&before) {
            return Err(Stop::Skip(
                "the host has no POST …/payments/{no}/sync".into(),
            ));
        }
        ensure(before.status == 200, || {
            format!(
                "sync of an open-platform order nobody paid: {}",
                before.brief()
            )
        })?;
        self.ensure_unpaid(
            &order,
            "a sync before the buyer paid (alipay.trade.query: ACQ.TRADE_NOT_EXIST)",
        )
        .await?;
        // The buyer pays in the sandbox's open-platform cashier; its notify is lost on the way.
        self.env
            .set_faults(json!({"drop_all_notifies": true}))
            .await?;
        let page = client::get(&order.pay_url, &[]).await?;
        let token = cashier_token(&page.text()).ok_or_else(|| {
            format!(
                "the open-platform cashier of {no} has no trade token: {}",
                page.brief()
            )
        })?;
        let paid = client::post_form(
            &format!("{}/openapi/cashier/pay", self.env.sandbox_url()),
            &alipay::encode(&[("token".into(), token)]),
        )
        .await?;
        ensure(paid.status == 302 || paid.status == 200, || {
            format!("paying {no} in the open-platform cashier: {}", paid.brief())
        })?;
        let at_gateway = self.env.openapi_trade(&no).unwrap_or_default();
        ensure(at_gateway["status"] == "TRADE_SUCCESS", || {
            format!("the sandbox did not record {no} as paid: {at_gateway}")
        })?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.ensure_unpaid(&order, "a lost notify (nothing reached the host)")
            .await?;
        let r = self.host.v1("POST", &sync_path, None).await?;
        ensure(r.status == 200 && r.json()["found"] == true, || {
            format!(
                "sync of the paid open-platform trade (alipay.trade.query): {}",
                r.brief()
            )
        })?;
        ensure(self.wait_paid(&order).await?, || {
            format!(
                "{no} is not paid after the trade query found it paid: {}",
                r.brief()
            )
        })?;
        let again = self.host.v1("POST", &sync_path, None).await?;
        ensure(again.status == 200, || {
            format!("a second sync: {}", again.brief())
        })?;
        self.one_paid_webhook(&order).await?;
        self.open.paid_at_gateway = Some(order);
        Ok(())
    }

    /// The refunds the sandbox's gateway made for an order: (out_request_no, fen).
    fn gateway_refunds(&self, no: &str) -> Vec<(String, u64)> {
        self.env
            .openapi_trade(no)
            .and_then(|t| t["refunds"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r["out_request_no"].as_str().unwrap_or_default().to_owned(),
                    r["amount_fen"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn open_refund(&mut self) -> Verdict {
        let order = self.open.paid_at_gateway.clone().ok_or(Stop::Skip(
            "needs openapi.sync.lost_notify_recovered".into(),
        ))?;
        let path = client::merchant_path(
            &order.merchant,
            &format!("/payments/{}/refunds", order.out_trade_no),
        );
        let key = format!("{}-refund-1", self.run);
        let body = json!({"amount": "10.00", "reason": "conformance 部分退款", "refund_key": key});
        let first = self.host.v1("POST", &path, Some(&body)).await?;
        if let Some(skip) = unsupported(&first) {
            return Err(skip);
        }
        ensure(first.status == 201, || {
            format!(
                "a partial refund of 10.00 of 45.67: expected 201, got {}",
                first.brief()
            )
        })?;
        let refund = first.json();
        ensure(refund["amount"] == "10.00", || {
            format!("the refund shows amount {}", refund["amount"])
        })?;
        let status = refund["status"].as_str().unwrap_or_default().to_owned();
        ensure(status == "SUCCESS" || status == "PENDING", || {
            format!("a refund the gateway made is {status:?}: {}", first.brief())
        })?;
        let made = self.gateway_refunds(&order.out_trade_no);
        ensure(made.len() == 1 && made[0].1 == 1000, || {
            format!(
                "the gateway made these refunds for {}: {made:?} (one of 10.00 expected)",
                order.out_trade_no
            )
        })?;
        // The same refund again (a retry after a lost answer): the same refund, no second one.
        let again = self.host.v1("POST", &path, Some(&body)).await?;
        ensure(
            again.status == 200 && again.json()["id"] == refund["id"],
            || {
                format!(
                    "the same refund_key again: expected 200 with refund {}, got {}",
                    refund["id"],
                    again.brief()
                )
            },
        )?;
        // More than what is left is refused and names the amount; nothing reaches the gateway.
        let over_body = json!({"amount": "40.00", "refund_key": format!("{key}-over")});
        let over = self.host.v1("POST", &path, Some(&over_body)).await?;
        ensure(over.status == 409 && names_field(&over, "amount"), || {
            format!(
                "refunding 40.00 after 10.00 of 45.67: expected 409 naming amount, got {}",
                over.brief()
            )
        })?;
        let made = self.gateway_refunds(&order.out_trade_no);
        ensure(made.len() == 1, || {
            format!("after a retry and a refused refund the gateway made {made:?}")
        })?;
        let p = self.payment(&order).await?;
        ensure(
            is_paid_or_partly_refunded(p["status"].as_str().unwrap_or_default()),
            || format!("after a partial refund the order is {}", p["status"]),
        )?;
        self.open.refund_made = made
            .first()
            .map(|(request_no, _)| request_no.clone())
            .filter(|n| !n.is_empty());
        Ok(())
    }

    async fn open_close(&mut self) -> Verdict {
        let id = self.open_id();
        let close = |no: &str| client::merchant_path(&id, &format!("/payments/{no}/close"));
        // An order the buyer never opened: the gateway has no such trade, so payhost closes it
        // itself and says so.
        let (never, _) = self.open_create("open-close-never", "5.67", "wap").await?;
        let r = self.host.v1("POST", &close(&never), None).await?;
        if let Some(skip) = unsupported(&r) {
            return Err(skip);
        }
        ensure(
            r.status == 200 && r.json()["status"] == "TRADE_CLOSED",
            || {
                format!(
                    "closing an unpaid order the gateway never saw: {}",
                    r.brief()
                )
            },
        )?;
        ensure(r.json()["closed_at_provider"] == false, || {
            format!(
                "the gateway never saw {never}, yet the answer says it closed it there: {}",
                r.brief()
            )
        })?;
        // An order whose cashier was opened: closed at the gateway.
        let (opened, created) = self.open_create("open-close-opened", "6.78", "wap").await?;
        let pay_url = created.json()["pay_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let page = client::get(&pay_url, &[]).await?;
        ensure(page.status == 200, || {
            format!("the cashier of {opened}: {}", page.brief())
        })?;
        let r = self.host.v1("POST", &close(&opened), None).await?;
        ensure(
            r.status == 200 && r.json()["closed_at_provider"] == true,
            || format!("closing an order waiting at the gateway: {}", r.brief()),
        )?;
        let at_gateway = self.env.openapi_trade(&opened).unwrap_or_default();
        ensure(at_gateway["status"] == "TRADE_CLOSED", || {
            format!("the gateway's trade of {opened} is not closed: {at_gateway}")
        })?;
        // A paid order is never closed.
        if let Some(paid) = self.open.paid_at_gateway.clone() {
            let r = self
                .host
                .v1("POST", &close(&paid.out_trade_no), None)
                .await?;
            ensure(r.status == 409, || {
                format!("closing a paid order: expected 409, got {}", r.brief())
            })?;
        }
        Ok(())
    }
}

/// The Beijing date (`YYYY-MM-DD`) of Unix seconds: the day a reconciliation names.
fn beijing_date(unix: u64) -> String {
    payhost_sandbox::web::alipay_time(unix + 8 * 3600)[..10].to_owned()
}

/// The rows of one list of a reconciliation answer about `no`.
fn rows_of<'v>(answer: &'v Value, list: &str, no: &str) -> Vec<&'v Value> {
    answer[list]
        .as_array()
        .map(|rows| rows.iter().filter(|r| r["out_trade_no"] == no).collect())
        .unwrap_or_default()
}

/// Whether a row shows both amounts (whatever the host calls them): `ours` and `theirs` appear
/// among its values (the same amount twice for a matched row).
fn shows_amounts(row: &Value, ours: &str, theirs: &str) -> bool {
    let values: Vec<&str> = row
        .as_object()
        .map(|o| o.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let count = |a: &str| values.iter().filter(|v| **v == a).count();
    if ours == theirs {
        count(ours) >= 2
    } else {
        count(ours) >= 1 && count(theirs) >= 1
    }
}

impl Flow<'_> {
    /// Plants a row in the sandbox's bill of `date` for the kit's app.
    async fn plant_bill_row(&self, date: &str, no: &str, trade_no: &str, amount: &str) -> Verdict {
        let app = self.open_app()?;
        let r = client::post_form(
            &format!("{}/openapi/bill-extra", self.env.sandbox_url()),
            &alipay::encode(&[
                ("app_id".into(), app.app_id.clone()),
                ("bill_date".into(), date.to_owned()),
                ("trade_no".into(), trade_no.to_owned()),
                ("out_trade_no".into(), no.to_owned()),
                ("amount".into(), amount.to_owned()),
            ]),
        )
        .await?;
        ensure(r.status == 200, || {
            format!("the kit's sandbox did not plant a bill row: {}", r.brief())
        })
    }

    /// `GET …/reconciliation?date=` of today (Beijing): the sandbox's bill (its trades paid and
    /// refunds made today, plus the rows the kit plants) against the host's books.
    async fn open_bill(&mut self) -> Verdict {
        let synced = self.open.paid_at_gateway.clone().ok_or(Stop::Skip(
            "needs openapi.sync.lost_notify_recovered".into(),
        ))?;
        let id = self.open_id();
        let path = |date: &str| client::merchant_path(&id, &format!("/reconciliation?date={date}"));
        // Not a date: refused naming the field (and an older host says it has no such route).
        let bad = self.host.v1("GET", &path("2026-13-45"), None).await?;
        if let Some(skip) = unsupported(&bad) {
            return Err(skip);
        }
        ensure(bad.status == 400 && names_field(&bad, "date"), || {
            format!(
                "reconciliation of date=2026-13-45: expected 400 naming date, got {}",
                bad.brief()
            )
        })?;
        // Its refund through the host, matched below (the route answered: an older host was
        // told apart above).
        let refund_made = self
            .open
            .refund_made
            .clone()
            .ok_or(Stop::Skip("needs openapi.refund.partial_once".into()))?;
        let date = beijing_date(unix_now());
        // Planted in the gateway's bill: a trade the host never had (only_alipay), and, for
        // the order the kit's notify paid (the gateway never saw it paid), another amount than
        // the host's (amount_mismatch).
        let ghost = format!("{}-bill-ghost", self.run);
        self.plant_bill_row(&date, &ghost, "2099000000000000000000000001", "7.89")
            .await?;
        let notified = self
            .open
            .order
            .clone()
            .filter(|_| self.open.paid)
            .map(|(order, _)| order);
        if let Some(order) = &notified {
            self.plant_bill_row(
                &date,
                &order.out_trade_no,
                "2099000000000000000000000002",
                "12.35",
            )
            .await?;
        }
        let r = self.host.v1("GET", &path(&date), None).await?;
        if let Some(skip) = unsupported(&r) {
            return Err(skip);
        }
        if beijing_date(unix_now()) != date {
            return Err(Stop::Skip(format!(
                "the Beijing day changed during the case ({date} ended); run it again"
            )));
        }
        ensure(r.status == 200, || {
            format!("reconciliation of today ({date}): {}", r.brief())
        })?;
        let v = r.json();
        ensure(v["date"] == date.as_str(), || {
            format!("the reconciliation of {date} says date {}", v["date"])
        })?;
        for list in ["matched", "only_payhost", "only_alipay", "amount_mismatch"] {
            ensure(v[list].is_array(), || {
                format!(
                    "the reconciliation answer has no {list} list (the issue's names: date, matched, only_payhost, only_alipay, amount_mismatch): {}",
                    r.brief()
                )
            })?;
        }
        let brief = r.brief();
        // The order paid at the gateway: its payment and the refund made through the host are
        // matched, nowhere else.
        let no = &synced.out_trade_no;
        let trade_no = self
            .env
            .openapi_trade(no)
            .and_then(|t| t["trade_no"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let matched = rows_of(&v, "matched", no);
        ensure(
            matched.iter().any(|row| {
                row["trade_no"] == trade_no.as_str() && shows_amounts(row, "45.67", "45.67")
            }),
            || {
                format!("the payment of {no} (45.67, trade_no {trade_no}), paid at the gateway, is not matched: {brief}")
            },
        )?;
        ensure(
            matched.iter().any(|row| {
                shows_amounts(row, "10.00", "10.00") && row.to_string().contains(&refund_made)
            }),
            || {
                format!("the refund {refund_made} of {no} (10.00), made at the gateway, is not matched: {brief}")
            },
        )?;
        for list in ["only_payhost", "only_alipay", "amount_mismatch"] {
            ensure(rows_of(&v, list, no).is_empty(), || {
                format!("{no} agrees on both sides yet is listed in {list}: {brief}")
            })?;
        }
        let only_alipay = rows_of(&v, "only_alipay", &ghost);
        ensure(
            only_alipay.len() == 1 && only_alipay[0].to_string().contains("7.89"),
            || {
                format!("the bill row planted for {ghost} (7.89), an order the host never had, is not the one only_alipay row for it: {brief}")
            },
        )?;
        if let Some(order) = &notified {
            let on = &order.out_trade_no;
            let mismatch = rows_of(&v, "amount_mismatch", on);
            ensure(
                mismatch.len() == 1 && shows_amounts(mismatch[0], "12.34", "12.35"),
                || {
                    format!("{on} is paid 12.34 on the host and 12.35 in the bill, but amount_mismatch does not show it with both amounts: {brief}")
                },
            )?;
            // The partial refund only the kit's notify reported: the gateway's bill lacks it.
            if let Some(out_biz_no) = &self.open.refund_notified {
                ensure(
                    rows_of(&v, "only_payhost", on)
                        .iter()
                        .any(|row| row.to_string().contains("2.00")),
                    || {
                        format!("the refund {out_biz_no} of {on} (2.00, notified, never in the gateway's bill) is not in only_payhost: {brief}")
                    },
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_queries() {
        let form = "<form id=\"payhost-pay\" method=\"post\" action=\"http://k/openapi/gateway.do?app_id=1&amp;method=x\" accept-charset=\"utf-8\"><input type=\"hidden\" name=\"biz_content\" value=\"{&quot;a&quot;:&quot;b&amp;c&quot;}\"><noscript></noscript></form>";
        let (m, action, fields) = parse_form(form).unwrap();
        assert_eq!(m, "post");
        assert_eq!(action, "http://k/openapi/gateway.do?app_id=1&method=x");
        assert_eq!(
            fields,
            vec![("biz_content".to_owned(), "{\"a\":\"b&c\"}".to_owned())]
        );
        assert_eq!(query_param(&action, "method").as_deref(), Some("x"));
        assert_eq!(query_param("http://k/x", "a"), None);
    }

    fn reply(status: u16, body: &str) -> client::Reply {
        client::Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn an_older_host_or_component_is_a_skip_and_a_refusal_is_not() {
        let no_route = reply(
            404,
            r#"{"error":{"code":"not_found","message":"no route"}}"#,
        );
        let old_component = reply(
            501,
            r#"{"error":{"code":"not_supported","message":"the component's contract version 0.3.0 has no refunds (they need contract 0.4.0)"}}"#,
        );
        for r in [&no_route, &old_component] {
            assert!(
                matches!(unsupported(r), Some(Stop::Skip(_))),
                "{}",
                r.text()
            );
        }
        let refused = reply(409, r#"{"error":{"code":"refund_exceeds_paid"}}"#);
        assert!(unsupported(&refused).is_none());
    }

    #[test]
    fn reconciliation_rows_and_amounts() {
        let v = json!({"matched": [{"out_trade_no": "A", "trade_no": "1", "payhost_amount": "1.00", "gateway_amount": "1.00"}],
                       "amount_mismatch": [{"out_trade_no": "B", "payhost_amount": "1.00", "gateway_amount": "1.01"}]});
        assert_eq!(rows_of(&v, "matched", "A").len(), 1);
        assert!(rows_of(&v, "only_alipay", "A").is_empty());
        assert!(shows_amounts(
            rows_of(&v, "matched", "A")[0],
            "1.00",
            "1.00"
        ));
        let b = rows_of(&v, "amount_mismatch", "B")[0];
        assert!(shows_amounts(b, "1.00", "1.01") && !shows_amounts(b, "1.01", "1.01"));
        assert_eq!(beijing_date(1_700_000_000), "2023-11-15");
        assert_eq!(beijing_date(1_699_977_600), "2023-11-15"); // 16:00 UTC is midnight in Beijing
    }
}
