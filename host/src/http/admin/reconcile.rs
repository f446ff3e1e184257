//! 对账 (Reconcile a day): the merchant's bill of one Beijing day from the provider against
//! payhost's payments and refunds, as `GET /v1/merchants/{id}/reconciliation` answers it
//! ([`App::reconcile`]), for the shop owner who has no curl. An owner reconciles their
//! merchants only. The result downloads as CSV (`GET /admin/reconcile.csv`, the page's query):
//! one line per row of each of the page's lists.

use super::{payments::payment_url, Body, Ctx, Page};
use crate::service::App;
use http::Response;
use minijinja::{context, Value};
use std::sync::Arc;

/// The rows of one list of the comparison, as the page shows them: by order number, a payment
/// before its refunds, refunds by their number. (The bill lists in its own order; the rows
/// carry no time, and an order number is what the owner looks for.)
fn rows(ctx: &Ctx, merchant: &str, list: &serde_json::Value) -> Vec<Value> {
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    sorted(list)
        .into_iter()
        .map(|r| {
            let kind = text(r, "kind");
            context! {
                kind => if kind == "refund" { ctx.t("退款", "refund") } else { ctx.t("支付", "payment") },
                out_trade_no => text(r, "out_trade_no"),
                url => payment_url(merchant, &text(r, "out_trade_no")),
                trade_no => text(r, "trade_no"), request_no => text(r, "request_no"),
                payhost_amount => text(r, "payhost_amount"), gateway_amount => text(r, "gateway_amount"),
                // An order payhost has but did not count that day (held for review, paid on
                // another day): linked, with why.
                payhost_status => r["payhost_status"].as_str().map(|s| if kind == "refund" {
                    super::view::refund_status_word(ctx.lang, s)
                } else {
                    super::view::status_word(ctx.lang, s)
                }),
                held => r["payhost_review"].as_str().is_some(),
                // A refund payhost does not have, of an order it has.
                payhost_order_status => r["payhost_order_status"].as_str().map(|s| super::view::status_word(ctx.lang, s)),
                payhost_day => r["payhost_day"].as_str(),
            }
        })
        .collect()
}

/// A list of the comparison in the page's order: by order number, a payment before its refunds,
/// refunds by their number (the CSV's rows are in the same order).
fn sorted(list: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut rows: Vec<&serde_json::Value> = list
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    rows.sort_by_key(|r| {
        (
            text(r, "out_trade_no"),
            text(r, "kind") == "refund",
            text(r, "request_no"),
        )
    });
    rows
}

/// The support number an API error carries (`correlation id …`), to quote in Chinese.
fn correlation_id(message: &str) -> Option<&str> {
    let rest = message.split("correlation id ").nth(1)?;
    let id = rest.split([';', ')', ' ']).next()?;
    (!id.is_empty()).then_some(id)
}

/// Whether the provider's refusal says the day's bill does not exist (yet): Alipay's `40004`
/// with sub code `isp.bill_not_exist`, which the API's message quotes.
fn bill_not_made_yet(message: &str) -> bool {
    message.to_ascii_lowercase().contains("bill_not_exist")
}

/// Why a day could not be reconciled, in the owner's words: what went wrong and what to do, in
/// Chinese without the API's English (an English page keeps the API's message).
fn refusal(ctx: &Ctx, date: &str, e: &crate::http::error::ApiError) -> String {
    if ctx.lang == super::Lang::En {
        return format!("The day could not be reconciled: {}", e.message);
    }
    let mut zh = match (e.code.as_str(), e.field.as_deref()) {
        ("not_supported", _) => "这个商户用的是支付宝旧版接口，没有对账单可下载：换成新版开放平台（接口类型）后才能在这里对账".to_owned(),
        ("merchant_not_configured", _) => "这个商户还没有保存支付宝设置，请先在商户页面保存设置".to_owned(),
        ("merchant_misconfigured", _) => "这个商户的支付宝设置有误，请在商户页面检查并保存设置".to_owned(),
        ("unknown_merchant", _) => "没有这个商户，请从列表中选择".to_owned(),
        ("invalid_request", Some("date")) if e.message.contains("in the future") => {
            format!("日期：{date} 还没到（北京时间）。支付宝一般在次日上午生成前一天的账单，请选今天或以前的日期")
        }
        ("invalid_request", Some("date")) => {
            let b = date.as_bytes();
            let shaped = b.len() == 10
                && b.iter().enumerate().all(|(i, c)| match i {
                    4 | 7 => *c == b'-',
                    _ => c.is_ascii_digit(),
                });
            if shaped {
                format!("日期：没有 {date} 这一天，请重新选择")
            } else {
                "日期：请按 年-月-日 填写，如 2026-12-04".to_owned()
            }
        }
        ("gateway_timeout", _) => "支付宝账单下载超时，请稍后再试".to_owned(),
        ("outbound_refused", _) => "账单的下载地址不在这个商户允许访问的地址范围内，请联系运营者检查出站设置".to_owned(),
        ("gateway_unreachable", _) => "连不上支付宝，账单没有下载成功，请稍后再试".to_owned(),
        ("gateway_malformed" | "gateway_bad_signature", _) => {
            "支付宝的回应无法识别，账单没有下载成功，请稍后再试；一直这样请联系运营者（运行 payhost 的人）".to_owned()
        }
        // No bill yet (Alipay makes a day's bill the next morning): the settings are fine.
        (code, _) if code.starts_with("gateway_") && bill_not_made_yet(&e.message) => {
            "支付宝还没有生成这一天的账单（一般在次日上午生成），请稍后再试或选择更早的日期".to_owned()
        }
        (code, _) if code.starts_with("gateway_") => {
            "支付宝拒绝提供这一天的账单，请核对商户设置（应用 ID、密钥）后再试".to_owned()
        }
        _ => "对账失败，请稍后再试；一直这样请联系运营者（运行 payhost 的人）".to_owned(),
    };
    if let Some(id) = correlation_id(&e.message) {
        zh.push_str(&format!("（技术支持编号 {id}）"));
    }
    zh
}

/// The merchant the page starts on: the first that has a bill to download (the open platform's;
/// the legacy API has none), else the first.
async fn first_with_a_bill(app: &App, merchant_ids: &[String]) -> String {
    for id in merchant_ids {
        if let Ok(Some(m)) = app.store.merchant(id).await {
            if m.get("api") == Some("openapi") {
                return id.clone();
            }
        }
    }
    merchant_ids.first().cloned().unwrap_or_default()
}

pub async fn page(app: &Arc<App>, ctx: &Ctx) -> Page {
    let merchant_ids = super::merchants::visible_ids(app, ctx).await;
    let asked = ctx.q("merchant").trim().to_owned();
    let mut error = None;
    let merchant = if merchant_ids.contains(&asked) {
        asked
    } else {
        // A merchant the page does not offer (unknown, or another owner's) is said so, never
        // quietly swapped for the first one.
        if !asked.is_empty() {
            error = Some(
                ctx.t(
                    &format!("没有商户 {asked}，或你的账号不能为它对账：请从列表中选择商户"),
                    &format!("There is no merchant {asked}, or your login may not reconcile it: choose one from the list"),
                )
                .to_owned(),
            );
        }
        first_with_a_bill(app, &merchant_ids).await
    };
    let today = crate::domain::clock::beijing_day(crate::domain::clock::now_unix());
    let typed = ctx.q("date").trim().to_owned();
    let submitted = ctx.query.iter().any(|(k, _)| k == "date");
    if submitted && typed.is_empty() && error.is_none() {
        error = Some(
            ctx.t(
                "日期：请选择要对账的日期（北京时间），如 2026-12-04",
                "Date: choose the day to reconcile (Beijing time), such as 2026-12-04",
            )
            .to_owned(),
        );
    }
    let date = match typed.as_str() {
        "" => crate::domain::clock::format_date(today - 1),
        d => d.to_owned(),
    };
    let mut result = Value::UNDEFINED;
    let mut own_totals = Value::UNDEFINED;
    if error.is_none() && !typed.is_empty() && !merchant.is_empty() && ctx.who.sees(&merchant) {
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
                    other_lines => totals["other_lines"].as_u64().unwrap_or(0),
                    payhost_paid => t("payhost_paid"), payhost_refunded => t("payhost_refunded"),
                    gateway_paid => t("gateway_paid"), gateway_refunded => t("gateway_refunded"),
                    csv_url => csv_link(&merchant, &date),
                };
            }
            Err(e) => {
                // No bill to download (the legacy API): payhost's own day, to compare by hand
                // with the bill from Alipay's back office.
                if e.code == "not_supported" {
                    if let Ok(v) = app.day_totals(&merchant, &date).await {
                        let t = |k: &str| v[k].as_str().unwrap_or("0.00").to_owned();
                        own_totals = context! {
                            paid => t("payhost_paid"), refunded => t("payhost_refunded"),
                            payments => v["payments"].as_u64().unwrap_or(0),
                            refunds => v["refunds"].as_u64().unwrap_or(0),
                        };
                    }
                }
                error = Some(refusal(ctx, &date, &e));
            }
        }
    }
    Page::View {
        template: "reconcile.html",
        section: "reconcile",
        values: context! { merchant_ids, merchant, date, result, error, own_totals },
    }
}

/// The lists of the comparison as the CSV names them (`section`), in the page's order; each is
/// the API's list of that name.
const SECTIONS: [&str; 4] = ["amount_mismatch", "only_gateway", "only_payhost", "matched"];

/// The CSV's columns: the day's merchant and date, the list (`section`), and the row as the API
/// answers it (`GET /v1/merchants/{id}/reconciliation`); statuses are payhost's codes.
pub const CSV_COLUMNS: [&str; 13] = [
    "merchant_id",
    "date",
    "section",
    "kind",
    "out_trade_no",
    "trade_no",
    "request_no",
    "payhost_amount",
    "gateway_amount",
    "payhost_status",
    "payhost_review",
    "payhost_order_status",
    "payhost_day",
];

/// The page's link to its result as CSV.
fn csv_link(merchant: &str, date: &str) -> String {
    format!(
        "/admin/reconcile.csv?{}",
        super::list::query_of(
            &[("merchant", merchant.to_owned()), ("date", date.to_owned())],
            &[]
        )
    )
}

/// The CSV's file name: `reconcile-<merchant>-<date>.csv`, of characters safe in a header and
/// a file system only.
fn csv_file_name(merchant: &str, date: &str) -> String {
    let safe = |s: &str, extra: &[char]| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || extra.contains(c))
            .collect()
    };
    format!(
        "reconcile-{}-{}.csv",
        safe(merchant, &['_', '-']),
        safe(date, &['-'])
    )
}

/// A reconciliation (the API's answer) as CSV: the UTF-8 byte-order mark (so Excel reads UTF-8),
/// the columns, then one CRLF-terminated line per row of every list, in the page's order. What
/// the bill or an order says (order, trade and refund numbers, review notes) is guarded against
/// a spreadsheet running it as a formula.
fn csv_body(merchant: &str, v: &serde_json::Value) -> String {
    let mut out = format!("\u{feff}{}\r\n", CSV_COLUMNS.join(","));
    let date = v["date"].as_str().unwrap_or_default();
    for section in SECTIONS {
        for r in sorted(&v[section]) {
            let text = |k: &str| r[k].as_str().unwrap_or_default();
            let kind = if text("kind") == "refund" {
                "refund"
            } else {
                "payment"
            };
            let cells: [(&str, bool); 13] = [
                (merchant, true),
                (date, true),
                (section, false),
                (kind, false),
                (text("out_trade_no"), true),
                (text("trade_no"), true),
                (text("request_no"), true),
                (text("payhost_amount"), false),
                (text("gateway_amount"), false),
                (text("payhost_status"), true),
                (text("payhost_review"), true),
                (text("payhost_order_status"), true),
                (text("payhost_day"), true),
            ];
            for (i, (cell, is_text)) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::ledger::csv_field(&mut out, cell, *is_text);
            }
            out.push_str("\r\n");
        }
    }
    out
}

/// Why the CSV of a merchant the session does not reconcile is refused: the page's words, with
/// the owner's own merchants. An owner is refused the same (403) whether the merchant is
/// another's or none at all.
fn not_offered(ctx: &Ctx, asked: &str) -> (u16, String) {
    if asked.is_empty() {
        return (
            404,
            ctx.t("还没有可以对账的商户", "There is no merchant to reconcile")
                .to_owned(),
        );
    }
    if ctx.who.operator() {
        return (
            404,
            ctx.t(
                &format!("没有商户 {asked}：请回到对账页面，从列表中选择商户"),
                &format!("There is no merchant {asked}: go back to Reconcile and choose one from the list"),
            )
            .to_owned(),
        );
    }
    (
        403,
        ctx.t(
            &format!(
                "没有商户 {asked}，或你的账号不能为它对账：只能为你自己的商户（{}）对账",
                ctx.who.merchants.join("、")
            ),
            &format!(
                "There is no merchant {asked}, or your login may not reconcile it: only your own merchants ({})",
                ctx.who.merchants.join(", ")
            ),
        )
        .to_owned(),
    )
}

/// The CSV of the page's query for this session, or its refusal (the status and the message, in
/// the page's language).
async fn csv_export(app: &Arc<App>, ctx: &Ctx) -> Result<Response<Body>, (u16, String)> {
    let merchant_ids = super::merchants::visible_ids(app, ctx).await;
    let asked = ctx.q("merchant").trim();
    // No merchant named: the page's default, the first of the session's.
    let merchant = match asked {
        "" => merchant_ids.first(),
        a => merchant_ids.iter().find(|m| *m == a),
    };
    let Some(merchant) = merchant.filter(|m| ctx.who.sees(m)) else {
        return Err(not_offered(ctx, asked));
    };
    let date = ctx.q("date").trim();
    if date.is_empty() {
        return Err((
            400,
            ctx.t(
                "日期：请选择要对账的日期（北京时间），如 2026-12-04",
                "Date: choose the day to reconcile (Beijing time), such as 2026-12-04",
            )
            .to_owned(),
        ));
    }
    let v = app
        .reconcile(merchant, date)
        .await
        .map_err(|e| (e.status, refusal(ctx, date, &e)))?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/csv; charset=utf-8")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}\"", csv_file_name(merchant, date)),
        )
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Body::from(csv_body(merchant, &v)))
        .expect("valid response"))
}

/// `GET /admin/reconcile.csv?merchant=&date=`: the page's result as a file, one row per line of
/// each of its lists; refused as the page's refusals are worded, as a page (as every CSV of the
/// admin), with the way back to the page.
pub async fn csv(app: &Arc<App>, ctx: &Ctx) -> Page {
    match csv_export(app, ctx).await {
        Ok(r) => Page::Raw(r),
        Err((status, message)) => {
            let back = format!(
                "/admin/reconcile?{}",
                super::list::query_of(
                    &[
                        ("merchant", ctx.q("merchant").trim().to_owned()),
                        ("date", ctx.q("date").trim().to_owned()),
                    ],
                    &[]
                )
            );
            let error_id = match status {
                403 => "forbidden",
                404 => "not-found",
                _ => "error",
            };
            Page::Raw(super::render(
                status,
                "error.html",
                &super::frame(app, Some(ctx), ctx.lang, &ctx.lang_url, "reconcile"),
                context! {
                    heading => ctx.t("无法导出", "Cannot export"), message, error_id, back,
                    back_text => ctx.t("回到对账页面", "Back to Reconcile"),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::ApiError;

    fn ctx(lang: super::super::Lang) -> Ctx {
        Ctx {
            who: super::super::Who {
                name: "o".into(),
                role: crate::store::admin::Role::Owner,
                merchants: vec!["m".into()],
            },
            csrf: String::new(),
            session: String::new(),
            lang,
            lang_url: String::new(),
            flash: None,
            query: Vec::new(),
        }
    }

    #[test]
    fn refusals_are_chinese_per_rule_without_the_apis_english() {
        let zh = ctx(super::super::Lang::Zh);
        let future = ApiError::field(
            400,
            "invalid_request",
            "date",
            "date: is in the future (Beijing time); a bill exists only for a day up to today",
        );
        let said = refusal(&zh, "2099-01-01", &future);
        assert!(said.contains("2099-01-01 还没到"), "{said}");
        let missing = ApiError::field(
            400,
            "invalid_request",
            "date",
            "date: must be a date YYYY-MM-DD (Beijing time)",
        );
        assert!(refusal(&zh, "2026-02-30", &missing).contains("没有 2026-02-30 这一天"));
        assert!(refusal(&zh, "yesterday", &missing).contains("年-月-日"));
        let odd = ApiError::new(502, "gateway_malformed", "the provider's answer could not be understood (correlation id c-123; the detail is in the payhost log)");
        let said = refusal(&zh, "2026-01-01", &odd);
        assert!(said.contains("c-123"), "{said}");
        for (e, date) in [
            (&future, "2099-01-01"),
            (&missing, "x"),
            (&odd, "2026-01-01"),
        ] {
            let said = refusal(&zh, date, e);
            assert!(
                !said.contains("is in the future")
                    && !said.contains("must")
                    && !said.contains("provider"),
                "{said}"
            );
        }
        let en = ctx(super::super::Lang::En);
        assert!(refusal(&en, "2099-01-01", &future).contains("is in the future"));
    }

    #[test]
    fn a_bill_not_made_yet_is_not_a_settings_problem() {
        let zh = ctx(super::super::Lang::Zh);
        // As `plugin_error_to_api` words Alipay's answer for a day without a bill yet.
        let no_bill = ApiError::new(
            502,
            "gateway_40004",
            "the payment provider refused the request: Business Failed (isp.bill_not_exist) 账单不存在 (correlation id c-9)",
        );
        let said = refusal(&zh, "2026-12-04", &no_bill);
        assert!(
            said.starts_with(
                "支付宝还没有生成这一天的账单（一般在次日上午生成），请稍后再试或选择更早的日期"
            ),
            "{said}"
        );
        assert!(!said.contains("密钥") && said.contains("c-9"), "{said}");
        // Any other refusal still points at the settings.
        let refused = ApiError::new(
            502,
            "gateway_40002",
            "the payment provider refused the request: Invalid Arguments (isv.invalid-app-id) (correlation id c-1)",
        );
        assert!(refusal(&zh, "2026-12-04", &refused).contains("应用 ID、密钥"));
        // A day still to come says when bills appear.
        let future = ApiError::field(400, "invalid_request", "date", "date: is in the future");
        let said = refusal(&zh, "2099-01-01", &future);
        assert!(
            said.contains("次日上午") && !said.contains("只有今天及以前"),
            "{said}"
        );
    }

    #[test]
    fn the_csv_has_a_line_per_row_of_every_list_guarded_and_quoted() {
        let v = serde_json::json!({
            "date": "2026-12-04",
            "matched": [
                {"kind": "refund", "out_trade_no": "B", "trade_no": "T2", "request_no": "r1",
                 "payhost_amount": "1.00", "gateway_amount": "1.00"},
                {"kind": "payment", "out_trade_no": "B", "trade_no": "T2",
                 "payhost_amount": "3.00", "gateway_amount": "3.00"},
            ],
            "only_payhost": [
                {"kind": "payment", "out_trade_no": "C", "trade_no": "T3", "payhost_amount": "4.00"},
            ],
            "only_alipay": [{"kind": "payment", "out_trade_no": "ignored: the CSV reads only_gateway"}],
            "only_gateway": [
                {"kind": "payment", "out_trade_no": "=HYPERLINK(\"http://x\",\"y\")", "trade_no": "+1",
                 "gateway_amount": "9.99", "payhost_status": "WAIT_BUYER_PAY",
                 "payhost_review": "-paid after a close, here", "payhost_day": "2026-12-05"},
                {"kind": "refund", "out_trade_no": "D", "trade_no": "T4", "request_no": "@r",
                 "gateway_amount": "2.00", "payhost_order_status": "TRADE_SUCCESS"},
            ],
            "amount_mismatch": [
                {"kind": "payment", "out_trade_no": "A", "trade_no": "T1",
                 "payhost_amount": "2.50", "gateway_amount": "2.00"},
            ],
        });
        let csv = csv_body("shop-1", &v);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "\u{feff}merchant_id,date,section,kind,out_trade_no,trade_no,request_no,payhost_amount,gateway_amount,payhost_status,payhost_review,payhost_order_status,payhost_day",
                "shop-1,2026-12-04,amount_mismatch,payment,A,T1,,2.50,2.00,,,,",
                "shop-1,2026-12-04,only_gateway,payment,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'+1,,,9.99,WAIT_BUYER_PAY,\"'-paid after a close, here\",,2026-12-05",
                "shop-1,2026-12-04,only_gateway,refund,D,T4,'@r,,2.00,,,TRADE_SUCCESS,",
                "shop-1,2026-12-04,only_payhost,payment,C,T3,,4.00,,,,,",
                "shop-1,2026-12-04,matched,payment,B,T2,,3.00,3.00,,,,",
                "shop-1,2026-12-04,matched,refund,B,T2,r1,1.00,1.00,,,,",
                "",
            ]
        );
    }

    #[test]
    fn the_csv_file_name_names_merchant_and_date_safely() {
        assert_eq!(
            csv_file_name("open-shop", "2026-12-04"),
            "reconcile-open-shop-2026-12-04.csv"
        );
        assert_eq!(
            csv_file_name("a\"b;c/d", "2026-12-04\r\nx: y"),
            "reconcile-abcd-2026-12-04xy.csv"
        );
        assert_eq!(
            csv_link("open-shop", "2026-12-04"),
            "/admin/reconcile.csv?merchant=open-shop&date=2026-12-04"
        );
    }

    #[test]
    fn rows_are_sorted_by_order_then_payment_before_refunds() {
        let list = serde_json::json!([
            {"kind": "refund", "out_trade_no": "B", "request_no": "2"},
            {"kind": "payment", "out_trade_no": "C"},
            {"kind": "refund", "out_trade_no": "B", "request_no": "1"},
            {"kind": "payment", "out_trade_no": "B"},
            {"kind": "payment", "out_trade_no": "A"},
        ]);
        let shown: Vec<(String, String)> = rows(&ctx(super::super::Lang::En), "m", &list)
            .iter()
            .map(|r| {
                (
                    r.get_attr("out_trade_no").unwrap().to_string(),
                    format!(
                        "{}{}",
                        r.get_attr("kind").unwrap(),
                        r.get_attr("request_no").unwrap()
                    ),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            ("A", "payment"),
            ("B", "payment"),
            ("B", "refund1"),
            ("B", "refund2"),
            ("C", "payment"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(shown, want);
    }
}
