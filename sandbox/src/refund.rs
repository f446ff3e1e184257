//! The seller-confirmed refund of the legacy API, as the sandbox plays it ([EXTRA §4.2]):
//!
//! * `GET {base}/mapi?service=refund_fastpay_by_platform_pwd&…` — the merchant's signed redirect
//!   (sorted rule, MD5 or RSA). The sandbox checks the signature, `batch_no` (the date and 3–24
//!   digits, never one it already processed: Alipay refuses a repeated batch), `batch_num`
//!   against `detail_data` (`trade_no^amount^reason#…`), each trade (this partner's, paid, enough
//!   left to refund), then shows the seller's confirmation page, phone-sized like the cashier: the
//!   total, each refund (order number, trade number, subject, amount, reason) and the payment
//!   password, asked again with the same summary after a wrong one. The sandbox's demo password
//!   is [`DEMO_PASSWORD`], printed on the page.
//! * `POST {base}/mapi/refund/confirm` — the password. Right: each refund is applied (the trade's
//!   `refund_fee` grows, `refund_status=REFUND_SUCCESS`; the whole amount closes it, as
//!   `single_trade_query` then shows) and the batch notify goes to `notify_url` on Alipay's
//!   schedule: `notify_type=batch_refund_notify`, `batch_no`, `success_num`,
//!   `result_details=trade_no^amount^SUCCESS#…`, a `notify_id` that `notify_verify` confirms,
//!   signed by the sorted rule.
//!
//! Written from the protocol reference; it shares no code with the component.

use crate::cashier::framed;
use crate::web::{self, html, Body};
use crate::{wire, NotifyDelivery, Sandbox};
use http::Response;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The seller's payment password on the sandbox's refund page (shown there: it is a demo).
pub const DEMO_PASSWORD: &str = "123456";

/// One refund of a batch.
#[derive(Clone, Debug)]
struct Detail {
    trade_no: String,
    amount_fen: u64,
}

#[derive(Clone, Debug)]
struct PendingBatch {
    partner: String,
    batch_no: String,
    notify_url: String,
    details: Vec<Detail>,
    /// What the seller is asked to confirm, shown again after a wrong password.
    summary: String,
}

/// The bar of the seller's pages.
const BAR: &str = "支付宝 · 即时到账批量退款（有密）(沙箱)";

/// Batches shown to a seller and not confirmed yet (by page token), and the batches processed.
#[derive(Default)]
pub struct LegacyRefunds {
    pending: Mutex<HashMap<String, PendingBatch>>,
    /// `partner:batch_no`.
    processed: Mutex<HashSet<String>>,
}

/// Fen from a yuan amount with at most two places, in [0.01, 100000000].
pub(crate) fn fen(amount: &str) -> Option<u64> {
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if int.is_empty()
        || frac.len() > 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 9
    {
        return None;
    }
    let f = int.parse::<u64>().ok()? * 100 + format!("{frac:0<2}").parse::<u64>().ok()?;
    (1..=10_000_000_000).contains(&f).then_some(f)
}

pub(crate) fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// `batch_no`: 8 digits of a date, then 3 to 24 digits.
fn is_batch_no(s: &str) -> bool {
    (11..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && matches!(s[4..6].parse::<u8>(), Ok(1..=12))
        && matches!(s[6..8].parse::<u8>(), Ok(1..=31))
}

fn error_page(code: &str, why: &str) -> Response<Body> {
    html(
        400,
        framed(
            BAR,
            "支付宝 · 退款",
            &format!(
                "<div class=\"box\" id=\"error\"><h2>{}</h2><p>{}</p></div>",
                web::esc(code),
                web::esc(why)
            ),
        ),
    )
}

/// One label and value line of a box.
fn row(label: &str, value: &str) -> String {
    format!(
        "<div class=\"row\"><span>{}</span><span>{}</span></div>",
        web::esc(label),
        web::esc(value)
    )
}

impl Sandbox {
    /// `refund_fastpay_by_platform_pwd`: checks the request and shows the password page.
    pub(crate) fn legacy_refund_page(&self, params: &[(String, String)]) -> Response<Body> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let partner = get("partner");
        let Some(merchant) = self.merchants.lock().unwrap().get(&partner).cloned() else {
            return error_page("ILLEGAL_PARTNER", "合作伙伴没有开通接口访问权限");
        };
        if !wire::verify_merchant(&merchant.keys, &wire::presign_sorted(params), &get("sign")) {
            return error_page("ILLEGAL_SIGN", "签名错误");
        }
        let batch_no = get("batch_no");
        if !is_batch_no(&batch_no) {
            return error_page(
                "BATCH_NO_FORMAT_ERROR",
                "batch_no 格式为当天日期[8位]+序列号[3至24位]",
            );
        }
        if self
            .legacy_refunds
            .processed
            .lock()
            .unwrap()
            .contains(&format!("{partner}:{batch_no}"))
        {
            return error_page(
                "DUPLICATE_BATCH_NO",
                "重复的批次号 (this batch_no was processed)",
            );
        }
        let notify_url = get("notify_url");
        if !(notify_url.starts_with("http://") || notify_url.starts_with("https://")) {
            return error_page("ILLEGAL_ARGUMENT", "notify_url 必须是 http(s) 地址");
        }
        if get("refund_date").len() != 19 {
            return error_page("ILLEGAL_ARGUMENT", "refund_date 格式为 yyyy-MM-dd HH:mm:ss");
        }
        let detail_data = get("detail_data");
        let mut details = Vec::new();
        for d in detail_data.split('#') {
            let parts: Vec<&str> = d.split('^').collect();
            let (Some(trade_no), Some(amount)) = (parts.first(), parts.get(1).and_then(|a| fen(a)))
            else {
                return error_page(
                    "DETAIL_DATA_FORMAT_ERROR",
                    "detail_data 格式为 交易号^退款金额^备注",
                );
            };
            details.push(Detail {
                trade_no: trade_no.to_string(),
                amount_fen: amount,
            });
        }
        if get("batch_num") != details.len().to_string() {
            return error_page(
                "BATCH_NUM_NOT_MATCH",
                "batch_num 与 detail_data 的笔数不一致",
            );
        }
        // The seller sees whose money goes back: the total, then each trade with its amount.
        let mut refunds = String::new();
        let mut seller = String::new();
        {
            let trades = self.trades.lock().unwrap();
            for (d, reason) in details.iter().zip(detail_data.split('#')) {
                let Some(t) = trades
                    .values()
                    .find(|t| t.partner == partner && t.trade_no.as_deref() == Some(&d.trade_no))
                else {
                    return error_page("TRADE_NOT_EXIST", &format!("交易 {} 不存在", d.trade_no));
                };
                if seller.is_empty() {
                    seller = t.seller.clone();
                }
                let reason = reason.splitn(3, '^').nth(2).unwrap_or_default();
                refunds.push_str(&format!(
                    "<div class=\"box refund-detail\">{}{}{}{}{}</div>",
                    row("商户订单号", &t.out_trade_no),
                    row("支付宝交易号", &d.trade_no),
                    row("商品名称", &t.subject),
                    row("退款金额", &format!("￥{}", yuan(d.amount_fen))),
                    row("退款理由", reason),
                ));
            }
        }
        let total: u64 = details.iter().map(|d| d.amount_fen).sum();
        let summary = format!(
            "<div class=\"box\"><div class=\"amount\" id=\"refund-total\">￥{}</div>{}{}{}{}</div>{refunds}",
            yuan(total),
            row("卖家", &seller),
            row("合作伙伴 (partner)", &partner),
            row("批次号", &batch_no),
            row("退款笔数", &details.len().to_string()),
        );
        let token = self.new_token("rf", self.now());
        self.legacy_refunds.pending.lock().unwrap().insert(
            token.clone(),
            PendingBatch {
                partner,
                batch_no: batch_no.clone(),
                notify_url,
                details,
                summary: summary.clone(),
            },
        );
        html(200, self.password_page(&token, &summary, None))
    }

    /// The seller's confirmation: what goes back to whom, and the payment password.
    fn password_page(&self, token: &str, summary: &str, error: Option<&str>) -> String {
        let error = error
            .map(|e| {
                format!(
                    "<p class=\"error\" id=\"password-error\">{}</p>",
                    web::esc(e)
                )
            })
            .unwrap_or_default();
        framed(
            BAR,
            "确认退款",
            &format!(
                "{summary}\
                 <div class=\"box\"><form method=\"post\" action=\"{base}/mapi/refund/confirm\">\
                 <input type=\"hidden\" name=\"token\" value=\"{token}\">\
                 <label for=\"password\">支付密码</label>\
                 <input id=\"password\" type=\"password\" name=\"password\" inputmode=\"numeric\" autocomplete=\"off\">\
                 {error}\
                 <button class=\"pay\" type=\"submit\" id=\"confirm\">确认退款</button></form></div>\
                 <div class=\"note\" id=\"demo-password\">沙箱演示：支付密码为 <code>{DEMO_PASSWORD}</code> (sandbox demo: the payment password is {DEMO_PASSWORD})</div>",
                base = web::esc(&self.public_base),
                token = web::esc(token),
            ),
        )
    }

    /// The seller's password: applies the batch and queues its notify.
    pub(crate) fn legacy_refund_confirm(&self, form: &[(String, String)]) -> Response<Body> {
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let token = get("token");
        let Some(batch) = self
            .legacy_refunds
            .pending
            .lock()
            .unwrap()
            .get(&token)
            .cloned()
        else {
            return error_page("ILLEGAL_REQUEST", "退款页面已失效 (unknown or used page)");
        };
        if get("password") != DEMO_PASSWORD {
            return html(
                200,
                self.password_page(
                    &token,
                    &batch.summary,
                    Some("支付密码不正确 (wrong payment password)"),
                ),
            );
        }
        self.legacy_refunds.pending.lock().unwrap().remove(&token);
        let key = format!("{}:{}", batch.partner, batch.batch_no);
        if !self.legacy_refunds.processed.lock().unwrap().insert(key) {
            return error_page(
                "DUPLICATE_BATCH_NO",
                "重复的批次号 (this batch_no was processed)",
            );
        }
        let mut results = Vec::new();
        let mut success = 0;
        let mut first_trade = None;
        {
            let mut trades = self.trades.lock().unwrap();
            for d in &batch.details {
                let found = trades.values_mut().find(|t| {
                    t.partner == batch.partner && t.trade_no.as_deref() == Some(&d.trade_no)
                });
                let result = match found {
                    None => "TRADE_NOT_EXIST",
                    Some(t) if t.status != "TRADE_SUCCESS" => "TRADE_STATUS_ERROR",
                    Some(t) => {
                        let total = fen(&t.total_fee).unwrap_or(0);
                        let refunded = t.refund_fee.as_deref().and_then(fen).unwrap_or(0);
                        if refunded + d.amount_fen > total {
                            "REFUND_AMOUNT_EXCEEDED"
                        } else {
                            self.remember_before_change(t);
                            t.refund_fee = Some(yuan(refunded + d.amount_fen));
                            t.refund_status = Some("REFUND_SUCCESS".into());
                            if refunded + d.amount_fen == total {
                                t.status = "TRADE_CLOSED".into();
                            }
                            first_trade.get_or_insert_with(|| t.clone());
                            "SUCCESS"
                        }
                    }
                };
                if result == "SUCCESS" {
                    success += 1;
                }
                results.push(format!("{}^{}^{result}", d.trade_no, yuan(d.amount_fen)));
            }
        }
        let Some(merchant) = self.merchants.lock().unwrap().get(&batch.partner).cloned() else {
            return error_page("ILLEGAL_PARTNER", "merchant vanished");
        };
        let notify_id = format!(
            "{:032x}{:02x}",
            self.next_id().wrapping_mul(0x9E37_79B9_7F4A_7C15),
            self.now() % 256
        );
        let fields: Vec<(String, String)> = vec![
            (
                "notify_time".into(),
                web::alipay_time(web::unix_now() + 8 * 3600),
            ),
            ("notify_type".into(), "batch_refund_notify".into()),
            ("notify_id".into(), notify_id.clone()),
            ("batch_no".into(), batch.batch_no.clone()),
            ("success_num".into(), success.to_string()),
            ("result_details".into(), results.join("#")),
        ];
        let body = Self::signed_pc_form(&merchant.keys, fields);
        self.notifies.lock().unwrap().push(NotifyDelivery {
            notify_id,
            partner: batch.partner.clone(),
            out_trade_no: first_trade
                .as_ref()
                .map(|t| t.out_trade_no.clone())
                .unwrap_or_default(),
            trade_status: "batch_refund_notify".into(),
            url: batch.notify_url.clone(),
            first_at: self.now(),
            sends: 0,
            acknowledged: false,
            sent_at: Vec::new(),
            last_reply: None,
            last_status: None,
            body,
            in_flight: false,
        });
        let lines: String = results
            .iter()
            .map(|r| {
                let mut parts = r.splitn(3, '^');
                let (trade_no, amount, result) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                let said = if result == "SUCCESS" {
                    "退款成功".to_owned()
                } else {
                    format!("退款失败 {result}")
                };
                row(&format!("{trade_no} ￥{amount}"), &said)
            })
            .collect();
        html(
            200,
            framed(
                BAR,
                "退款已提交",
                &format!(
                    "<div class=\"box\" id=\"refund-result\"><h2>退款已提交</h2>{}{}{lines}\
                     <p>结果已通知商户，可以关闭本页，回到商户后台查看退款状态。</p></div>",
                    row("批次号", &batch.batch_no),
                    row("成功笔数", &success.to_string()),
                ),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_no_and_amounts() {
        assert!(is_batch_no("20240521001"));
        assert!(!is_batch_no("2024052101"));
        assert!(!is_batch_no("20241321001"));
        assert_eq!(fen("10"), Some(1000));
        assert_eq!(fen("0.5"), Some(50));
        assert_eq!(fen("1.001"), None);
        assert_eq!(fen("0"), None);
        assert_eq!(yuan(1234), "12.34");
    }
}
