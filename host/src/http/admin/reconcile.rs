//! 对账 (Reconcile a day): the merchant's bill of one Beijing day from the provider against
//! payhost's payments and refunds, as `GET /v1/merchants/{id}/reconciliation` answers it
//! ([`App::reconcile`]), for the shop owner who has no curl. An owner reconciles their
//! merchants only.

use super::{payments::payment_url, Ctx, Page};
use crate::service::App;
use minijinja::{context, Value};
use std::sync::Arc;

/// The rows of one list of the comparison, as the page shows them.
fn rows(ctx: &Ctx, merchant: &str, list: &serde_json::Value) -> Vec<Value> {
    list.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    let kind = text("kind");
                    context! {
                        kind => if kind == "refund" { ctx.t("退款", "refund") } else { ctx.t("支付", "payment") },
                        out_trade_no => text("out_trade_no"),
                        url => payment_url(merchant, &text("out_trade_no")),
                        trade_no => text("trade_no"), request_no => text("request_no"),
                        payhost_amount => text("payhost_amount"), gateway_amount => text("gateway_amount"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why a day could not be reconciled, in the owner's words.
fn refusal(ctx: &Ctx, e: &crate::http::error::ApiError) -> String {
    let zh = match (e.code.as_str(), e.field.as_deref()) {
        ("not_supported", _) => "这个商户用的是支付宝旧版接口，没有对账单可下载：换成新版开放平台（接口类型）后才能在这里对账",
        ("merchant_not_configured", _) => "这个商户还没有保存支付宝设置",
        ("invalid_request", Some("date")) => "日期：请按 年-月-日 选一个今天或以前的日期（北京时间）",
        ("gateway_timeout", _) => "支付宝账单下载超时，请稍后再试",
        (code, _) if code.starts_with("gateway_") || code == "outbound_refused" => {
            "支付宝没有给出账单，请稍后再试或核对设置"
        }
        _ => "对账失败",
    };
    format!(
        "{}（{}）",
        ctx.t(zh, "The day could not be reconciled"),
        e.message
    )
}

pub async fn page(app: &Arc<App>, ctx: &Ctx) -> Page {
    let merchant_ids = super::merchants::visible_ids(app, ctx).await;
    let asked = ctx.q("merchant").trim().to_owned();
    let merchant = if merchant_ids.contains(&asked) {
        asked
    } else {
        merchant_ids.first().cloned().unwrap_or_default()
    };
    let today = crate::domain::clock::beijing_day(crate::domain::clock::now_unix());
    let date = match ctx.q("date").trim() {
        "" => crate::domain::clock::format_date(today - 1),
        d => d.to_owned(),
    };
    let mut result = Value::UNDEFINED;
    let mut error = None;
    // A merchant the page did not offer (another owner's) is never asked about.
    if !ctx.q("date").is_empty() && !merchant.is_empty() && ctx.who.sees(&merchant) {
        match app.reconcile(&merchant, &date).await {
            Ok(v) => {
                let totals = &v["totals"];
                let t = |k: &str| totals[k].as_str().unwrap_or("0.00").to_owned();
                result = context! {
                    matched => rows(ctx, &merchant, &v["matched"]),
                    only_payhost => rows(ctx, &merchant, &v["only_payhost"]),
                    only_alipay => rows(ctx, &merchant, &v["only_alipay"]),
                    amount_mismatch => rows(ctx, &merchant, &v["amount_mismatch"]),
                    bill_empty => v["bill_empty"].as_bool().unwrap_or(false),
                    payhost_paid => t("payhost_paid"), payhost_refunded => t("payhost_refunded"),
                    gateway_paid => t("gateway_paid"), gateway_refunded => t("gateway_refunded"),
                };
            }
            Err(e) => error = Some(refusal(ctx, &e)),
        }
    }
    Page::View {
        template: "reconcile.html",
        section: "reconcile",
        values: context! { merchant_ids, merchant, date, result, error },
    }
}
