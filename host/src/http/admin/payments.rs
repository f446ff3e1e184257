//! Payments: the overview (30-day chart, merchants' totals), the filtered and paged list, its CSV,
//! a payment's page (amounts, timeline, refunds, webhook attempts) and its actions (sync, refund,
//! close). The queries are the ledger's ([`crate::store::ledger::Ledger`]); a shop owner's pages
//! hold their merchants only.

use super::chart::{self, Day};
use super::view::Flash;
use super::{audit, enc, field, yuan, Ctx, Form, Page, PostResult, Posted};
use crate::domain::zone::parse_utc;
use crate::service::App;
use crate::store::ledger::{Cursor, LedgerPayment, PaymentFilter};
use minijinja::{context, Value};
use std::sync::Arc;

/// Rows per page of the list.
const PAGE_ROWS: u32 = 50;

pub fn payment_url(merchant: &str, no: &str) -> String {
    format!("/admin/merchants/{}/payments/{}", enc(merchant), enc(no))
}

/// The list's filters as typed (kept in the form and the links) and as the ledger takes them.
struct Filters {
    typed: Vec<(&'static str, String)>,
    filter: PaymentFilter,
    errors: Vec<String>,
}

fn filters(app: &App, ctx: &Ctx) -> Filters {
    let zone = &app.config.admin.time_zone;
    let mut errors = Vec::new();
    let mut typed = Vec::new();
    for name in [
        "q",
        "merchant",
        "status",
        "from",
        "to",
        "min_amount",
        "max_amount",
    ] {
        typed.push((name, ctx.q(name).trim().to_owned()));
    }
    let get = |n: &str| {
        typed
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut f = PaymentFilter {
        limit: PAGE_ROWS + 1,
        ..PaymentFilter::default()
    };
    let merchant = get("merchant");
    f.merchant = match ctx.who.only() {
        // An owner's list is always one of theirs (the first unless they chose another).
        Some(mine) => Some(
            mine.iter()
                .find(|m| **m == merchant)
                .or(mine.first())
                .cloned()
                .unwrap_or_default(),
        ),
        None => Some(merchant).filter(|m| !m.is_empty()),
    };
    let status = get("status");
    if !status.is_empty() {
        if crate::domain::state::STATUSES.contains(&status.as_str()) {
            f.status = Some(status);
        } else {
            errors.push(format!(
                "status: {status:?} {}",
                ctx.t("不是已知的状态", "is not a known status")
            ));
        }
    }
    for (name, end) in [("from", false), ("to", true)] {
        let v = get(name);
        if v.is_empty() {
            continue;
        }
        match zone.day_start(&v) {
            // `to` is inclusive: up to the start of the next day.
            Some(start) => {
                let t =
                    crate::store::format_unix((start + if end { 86_400 } else { 0 }).max(0) as u64);
                if end {
                    f.to = Some(t);
                } else {
                    f.from = Some(t);
                }
            }
            None => errors.push(format!(
                "{name}: {}",
                ctx.t("日期格式为 YYYY-MM-DD", "a date is YYYY-MM-DD")
            )),
        }
    }
    for (name, min) in [("min_amount", true), ("max_amount", false)] {
        let v = get(name);
        if v.is_empty() {
            continue;
        }
        match crate::service::amount_minor(&v) {
            Ok(fen) if min => f.min_fen = Some(fen),
            Ok(fen) => f.max_fen = Some(fen),
            Err(_) => errors.push(format!(
                "{name}: {}",
                ctx.t(
                    "金额为最多两位小数的数字，例如 12.50",
                    "an amount is a number with at most two decimals, e.g. 12.50"
                )
            )),
        }
    }
    let q = get("q");
    if !q.is_empty() {
        f.q = Some(q.chars().take(128).collect());
    }
    if let Some(c) = Some(ctx.q("cursor")).filter(|c| !c.is_empty()) {
        match Cursor::decode(c) {
            Some(c) => f.cursor = Some(c),
            None => errors.push(
                ctx.t(
                    "翻页位置无效，已回到第一页",
                    "The page position is not valid: back to the first page",
                )
                .to_owned(),
            ),
        }
    }
    Filters {
        typed,
        filter: f,
        errors,
    }
}

fn query_of(typed: &[(&str, String)], extra: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            typed
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (*k, v.as_str())),
        )
        .extend_pairs(extra.iter().copied())
        .finish()
}

fn row(app: &App, lp: &LedgerPayment) -> Value {
    let zone = &app.config.admin.time_zone;
    let p = &lp.payment;
    context! {
        url => payment_url(&p.merchant_id, &p.out_trade_no),
        out_trade_no => p.out_trade_no, merchant_id => p.merchant_id,
        amount => p.total_fee(), refunded => yuan(lp.refunded_fen), status => p.status,
        review => p.review, buyer => p.buyer_email,
        created => zone.show(&p.created_at),
        paid => p.paid_at.as_deref().map(|t| zone.show(t)),
    }
}

pub async fn list(app: &Arc<App>, ctx: &Ctx) -> Page {
    let Filters {
        typed,
        mut filter,
        errors,
    } = filters(app, ctx);
    if !errors.is_empty() {
        filter.cursor = None;
    }
    let mut rows = app.store.list_payments(&filter).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the admin payments list failed");
        Vec::new()
    });
    let more = rows.len() > PAGE_ROWS as usize;
    rows.truncate(PAGE_ROWS as usize);
    let next_url = more.then(|| rows.last()).flatten().map(|last| {
        format!(
            "/admin/payments?{}",
            query_of(&typed, &[("cursor", &Cursor::of(&last.payment).encode())])
        )
    });
    let first_url = filter
        .cursor
        .is_some()
        .then(|| format!("/admin/payments?{}", query_of(&typed, &[])));
    let payments: Vec<Value> = rows.iter().map(|r| row(app, r)).collect();
    let merchant_ids = super::merchants::visible_ids(app, ctx);
    let mut f = std::collections::BTreeMap::new();
    for (k, v) in &typed {
        f.insert(*k, v.clone());
    }
    // An owner's list shows which of theirs it is.
    if let Some(m) = &filter.merchant {
        f.insert("merchant", m.clone());
    }
    let csv_query: Vec<(&str, String)> = typed
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == "merchant" {
                    filter.merchant.clone().unwrap_or_default()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    Page::View {
        template: "payments.html",
        section: "payments",
        values: context! {
            payments, f, next_url, first_url, merchant_ids,
            filter_errors => errors,
            statuses => crate::domain::state::STATUSES,
            csv_url => format!("/admin/payments.csv?{}", query_of(&csv_query, &[])),
        },
    }
}

/// The CSV of the current filter, every page of it (the ledger's columns).
pub async fn csv(app: &Arc<App>, ctx: &Ctx) -> Page {
    let Filters {
        mut filter, errors, ..
    } = filters(app, ctx);
    if !errors.is_empty() {
        return Page::NotFound;
    }
    filter.cursor = None;
    match pending::payments_csv(app, filter).await {
        Ok(r) => Page::Raw(r),
        Err(e) => {
            tracing::error!(error = %e.message, "the admin CSV failed");
            Page::NotFound
        }
    }
}

pub async fn overview(app: &Arc<App>, ctx: &Ctx) -> Page {
    // The last 30 days, today included, in Beijing days (the ledger's reconciliation day).
    let now = crate::domain::clock::now_unix();
    let today = crate::domain::clock::beijing_day(now);
    let first = today - 29;
    let from =
        crate::store::format_unix(crate::domain::clock::beijing_day_start(first).max(0) as u64);
    let to =
        crate::store::format_unix(crate::domain::clock::beijing_day_start(today + 1).max(0) as u64);
    let scopes: Vec<Option<String>> = match ctx.who.only() {
        None => vec![None],
        Some(mine) => mine.iter().cloned().map(Some).collect(),
    };
    let mut days: Vec<Day> = (first..=today)
        .map(|d| Day {
            date: crate::domain::clock::format_date(d),
            count: 0,
            fen: 0,
        })
        .collect();
    for scope in &scopes {
        for t in app
            .store
            .daily_totals(scope.as_deref(), &from, &to)
            .unwrap_or_default()
        {
            if let Some(d) = days.iter_mut().find(|d| d.date == t.date) {
                d.count += t.paid_count;
                d.fen += t.paid_fen;
            }
        }
    }
    let total_count: u64 = days.iter().map(|d| d.count).sum();
    let total_fen: u64 = days.iter().map(|d| d.fen).sum();
    let svg = chart::svg(
        &days,
        ctx.t(
            "近 30 天每天已支付的笔数和金额",
            "Paid count and amount per day, last 30 days",
        ),
    );
    let table: Vec<Value> = days
        .iter()
        .rev()
        .map(|d| context! { date => d.date, count => d.count, amount => yuan(d.fen) })
        .collect();
    let counts = app.store.merchant_counts().unwrap_or_default();
    let merchants: Vec<Value> = counts
        .iter()
        .filter(|c| ctx.who.sees(&c.id))
        .map(|c| {
            context! {
                id => c.id, payments => c.payments, paid => c.paid,
                paid_amount => yuan(c.paid_fen), refunded_amount => yuan(c.refunded_fen),
            }
        })
        .collect();
    Page::View {
        template: "overview.html",
        section: "overview",
        values: context! {
            merchants,
            chart => context! { svg, days => table, total_count, total_amount => yuan(total_fen) },
            zone => "Asia/Shanghai (UTC+08:00)",
        },
    }
}

/// One line of a payment's timeline, sortable by its time.
struct Line {
    unix: i64,
    at: String,
    kind: String,
    detail: String,
}

pub async fn one(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str) -> Page {
    if !ctx.who.sees(id) {
        return Page::NotFound;
    }
    let Ok(Some(lp)) = app.store.ledger_payment(id, no) else {
        return Page::NotFound;
    };
    let zone = &app.config.admin.time_zone;
    let p = &lp.payment;
    let refunds = app.store.refunds_for(id, no).unwrap_or_default();
    let attempts = app.store.webhook_attempts_for(id, no).unwrap_or_default();
    let mut lines: Vec<Line> = Vec::new();
    let mut push = |at: &str, kind: String, detail: String| {
        lines.push(Line {
            unix: parse_utc(at).unwrap_or(0),
            at: zone.show(at),
            kind,
            detail,
        })
    };
    push(
        &p.created_at,
        ctx.t("创建", "created").into(),
        format!("¥{} {}", p.total_fee(), p.subject),
    );
    for e in app.store.events_for(id, no).unwrap_or_default() {
        push(&e.at, e.kind.clone(), e.detail.unwrap_or_default());
    }
    for n in app.store.notifications_for(id, no).unwrap_or_default() {
        let what = [
            n.trade_status.as_deref(),
            n.outcome.as_deref(),
            n.detail.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
        push(
            &n.received_at,
            format!("{} #{}", ctx.t("通知", "notify"), n.raw_id),
            what,
        );
    }
    for r in &refunds {
        push(
            &r.created_at,
            format!("{} #{}", ctx.t("退款发起", "refund started"), r.id),
            format!("¥{} {} ({})", r.amount(), r.reason, r.started_by),
        );
        if let Some(done) = &r.completed_at {
            push(
                done,
                format!("{} #{}", ctx.t("退款结果", "refund result"), r.id),
                super::view::refund_status_word(ctx.lang, &r.status).to_owned(),
            );
        }
    }
    for a in &attempts {
        let outcome = a
            .http_status
            .map(|s| format!("HTTP {s}"))
            .or(a.error.clone())
            .unwrap_or_default();
        push(
            &a.at,
            format!("{} {}", ctx.t("商城通知", "webhook"), a.event_type),
            outcome,
        );
    }
    lines.sort_by_key(|l| l.unix);
    let timeline: Vec<Value> = lines
        .into_iter()
        .map(|l| context! { at => l.at, kind => l.kind, detail => l.detail })
        .collect();
    let refundable_fen =
        if crate::domain::state::is_paid(&p.status) && p.status != crate::store::REFUNDED {
            let committed = crate::domain::refunds::Totals::of(
                &refunds.iter().map(|r| r.line()).collect::<Vec<_>>(),
            )
            .committed();
            p.total_fen.saturating_sub(committed)
        } else {
            0
        };
    let (errors, typed, _) = ctx.form_state();
    let refund_views: Vec<Value> = refunds
        .iter()
        .rev()
        .map(|r| {
            context! {
                id => r.id, amount => r.amount(), status => r.status, reason => r.reason,
                started_by => r.started_by, created => zone.show(&r.created_at),
                completed => r.completed_at.as_deref().map(|t| zone.show(t)),
                confirm_url => r.confirm_url.clone().filter(|_| r.status == "PENDING"),
            }
        })
        .collect();
    let attempt_views: Vec<Value> = attempts
        .iter()
        .map(|a| context! {
            at => zone.show(&a.at), event_type => a.event_type, http_status => a.http_status, error => a.error,
        })
        .collect();
    Page::View {
        template: "payment.html",
        section: "payments",
        values: context! {
            p => context! {
                url => payment_url(id, no), out_trade_no => p.out_trade_no, merchant_id => p.merchant_id,
                status => p.status, review => p.review, amount => p.total_fee(),
                refunded => yuan(lp.refunded_fen), refundable => yuan(refundable_fen), refundable_fen,
                subject => p.subject, seller => p.seller, buyer => p.buyer_email, trade_no => p.trade_no,
                created => zone.show(&p.created_at), paid => p.paid_at.as_deref().map(|t| zone.show(t)),
                closable => p.status == crate::store::WAIT_BUYER_PAY,
            },
            refunds => refund_views, attempts => attempt_views, timeline, errors, typed,
            // A new key per form: a second submit of the same form is the same refund.
            refund_key => crate::auth::random_token(),
        },
    }
}

pub async fn sync(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let flash = match app.sync_payment(id, no).await {
        Ok(r) if !r.found => Flash::err(format!(
            "{} {no}",
            ctx.t(
                "支付平台没有这笔交易（买家从未打开收银台）：",
                "The payment provider has no trade (the buyer never opened the cashier):"
            )
        )),
        Ok(r) => {
            audit(
                app,
                &ctx.who,
                "payment.sync",
                Some(id),
                &format!("{no}: {}", r.status),
            );
            Flash::ok(format!(
                "{} {no}: {} ({})",
                ctx.t("查询完成", "Queried"),
                super::view::status_word(ctx.lang, &r.status),
                r.outcome
            ))
        }
        Err(e) => Flash::err(format!(
            "{}: {}",
            ctx.t("查询失败", "The trade query failed"),
            e.message
        )),
    };
    PostResult::Done(Posted::to(payment_url(id, no), flash))
}

pub async fn refund(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str, form: &Form) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let to = payment_url(id, no);
    let amount = field(form, "amount").trim().to_owned();
    let reason = field(form, "reason").trim().to_owned();
    let refused = |field_name: &str, message: String| {
        let mut f = Flash::err(ctx.t("未发起退款", "The refund was not started"));
        f.field_errors.insert(field_name.to_owned(), message);
        f.typed.insert("amount".into(), amount.clone());
        f.typed.insert("reason".into(), reason.clone());
        PostResult::Done(Posted::to(to.clone(), f))
    };
    let start = pending::RefundStart {
        merchant_id: id,
        out_trade_no: no,
        amount: &amount,
        reason: &reason,
        refund_key: Some(field(form, "refund_key")).filter(|k| !k.is_empty()),
        started_by: &format!("admin:{}", ctx.who.name),
    };
    match pending::start_refund(app, &start).await {
        Ok(r) => {
            audit(
                app,
                &ctx.who,
                "refund.start",
                Some(id),
                &format!("{no}: ¥{} #{} {}", r.amount(), r.id, r.status),
            );
            let mut f = Flash::ok(format!(
                "{} ¥{} ({})",
                ctx.t("已发起退款", "Refund started:"),
                r.amount(),
                super::view::refund_status_word(ctx.lang, &r.status)
            ));
            if r.confirm_url.is_some() && r.status == "PENDING" {
                f.text.push_str(ctx.t("。请点击“去支付宝确认”，在支付宝页面输入支付密码完成退款。", ". Press “Confirm on Alipay” and enter the payment password on Alipay's page to finish it."));
            }
            PostResult::Done(Posted::to(to, f))
        }
        Err(e) => {
            let name = match e.field.as_deref() {
                Some("reason") => "reason",
                _ => "amount",
            };
            refused(name, e.message)
        }
    }
}

pub async fn close(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let flash = match pending::close_payment(app, id, no).await {
        Ok(status) => {
            audit(app, &ctx.who, "payment.close", Some(id), no);
            Flash::ok(format!(
                "{} {no}: {}",
                ctx.t("订单已关闭", "Order closed"),
                super::view::status_word(ctx.lang, &status)
            ))
        }
        Err(e) => Flash::err(format!(
            "{}: {}",
            ctx.t("无法关闭", "Cannot close it"),
            e.message
        )),
    };
    PostResult::Done(Posted::to(payment_url(id, no), flash))
}

// LEDGER_CORE_PENDING: replaced by the ledger's refund core, close and CSV when they land.
mod pending {
    use crate::service::{ApiError, App};
    use crate::store::ledger::{PaymentFilter, Refund};
    pub struct RefundStart<'a> {
        pub merchant_id: &'a str,
        pub out_trade_no: &'a str,
        pub amount: &'a str,
        pub reason: &'a str,
        pub refund_key: Option<&'a str>,
        pub started_by: &'a str,
    }
    fn missing() -> ApiError {
        ApiError::new(501, "not_implemented", "LEDGER_CORE_PENDING")
    }
    pub async fn start_refund(_: &App, _: &RefundStart<'_>) -> Result<Refund, ApiError> {
        Err(missing())
    }
    pub async fn close_payment(_: &App, _: &str, _: &str) -> Result<String, ApiError> {
        Err(missing())
    }
    pub async fn payments_csv(
        _: &App,
        _: PaymentFilter,
    ) -> Result<http::Response<crate::http::Body>, ApiError> {
        Err(missing())
    }
}
