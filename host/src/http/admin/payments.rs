//! Payments: the overview (30-day chart, merchants' totals), the filtered and paged list, its CSV,
//! a payment's page (amounts, timeline, refunds, webhook attempts) and its actions (sync, refund,
//! close). The queries are the ledger's ([`crate::store::ledger::Ledger`]); a shop owner's pages
//! hold their merchants only.

use super::chart::{self, Day};
use super::view::Flash;
use super::words;
use super::{audit, enc, field, yuan, Ctx, Form, Page, PostResult, Posted};
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

const FILTER_FIELDS: [&str; 7] = [
    "q",
    "merchant",
    "status",
    "from",
    "to",
    "min_amount",
    "max_amount",
];

/// The merchant a shop owner's list is about: the one asked for if it is theirs, else their
/// first. None for an operator (every merchant, or the one asked for).
pub fn owner_scope(ctx: &Ctx) -> Option<String> {
    let asked = ctx.q("merchant").trim();
    ctx.who.only().map(|mine| {
        mine.iter()
            .find(|m| m.as_str() == asked)
            .or(mine.first())
            .cloned()
            .unwrap_or_default()
    })
}

/// The page's filters, checked by the ledger's own rules (the same as `GET /v1/payments`).
fn filters(ctx: &Ctx) -> Filters {
    let own = owner_scope(ctx);
    let typed: Vec<(&'static str, String)> = FILTER_FIELDS
        .iter()
        .map(|name| {
            let v = match (*name, &own) {
                ("merchant", Some(m)) => m.clone(),
                ("min_amount" | "max_amount", _) => words::half_width_amount(ctx.q(name)),
                _ => ctx.q(name).trim().to_owned(),
            };
            (*name, v)
        })
        .collect();
    let mut query = query_of(&typed, &[]);
    let cursor = ctx.q("cursor");
    if !cursor.is_empty() {
        query.push_str(&format!("&cursor={}", enc(cursor)));
    }
    let (filter, errors) = match crate::ledger::parse_filter(Some(&query), own.as_deref()) {
        Ok(f) => (f, Vec::new()),
        Err(e) => {
            // No list until the filter is fixed: a list without it would show payments the
            // owner did not ask for (another merchant's, another day's) as if they matched.
            let typed_value = |name: &str| {
                typed
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let said = words::filter_error(ctx.lang, &e, &typed_value);
            (PaymentFilter::default(), vec![said])
        }
    };
    Filters {
        typed,
        filter: PaymentFilter {
            limit: PAGE_ROWS + 1,
            ..filter
        },
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
        filter,
        errors,
    } = filters(ctx);
    // A shop owner who asked for another merchant's list (an old link, a typed URL) sees their
    // own, and is told so rather than left to wonder.
    let asked = ctx.q("merchant").trim();
    let notice = owner_scope(ctx)
        .filter(|own| !asked.is_empty() && asked != own)
        .map(|own| {
            format!(
                "{} {asked}{} {own}",
                ctx.t("你不能查看商户", "You cannot see merchant"),
                ctx.t("，这里是你的商户", "; this is your merchant")
            )
        });
    let mut rows = if errors.is_empty() {
        app.store.list_payments(&filter).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the admin payments list failed");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    // Every page of the filter: what the owner holds against the provider's statement.
    let totals = if errors.is_empty() {
        app.store
            .filter_totals(&filter)
            .await
            .map_err(|e| tracing::error!(error = %e, "the admin list's totals failed"))
            .ok()
            .map(|t| {
                context! {
                    count => t.count, amount => yuan(t.total_fen), paid_count => t.paid_count,
                    paid_amount => yuan(t.paid_fen), refunded_amount => yuan(t.refunded_fen),
                }
            })
    } else {
        None
    };
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
    let merchant_ids = super::merchants::visible_ids(app, ctx).await;
    let mut f = std::collections::BTreeMap::new();
    for (k, v) in &typed {
        f.insert(*k, v.clone());
    }
    Page::View {
        template: "payments.html",
        section: "payments",
        values: context! {
            payments, f, next_url, first_url, merchant_ids, totals, notice,
            filter_errors => errors,
            statuses => crate::domain::state::STATUSES,
            csv_url => csv_link(&typed),
        },
    }
}

/// The query of the CSV link: the list's filters (the ledger's `/v1/payments.csv` serves it for
/// the session, see [`csv_caller`]).
fn csv_link(typed: &[(&str, String)]) -> String {
    format!("/admin/payments.csv?{}", query_of(typed, &[]))
}

/// Who the CSV is for, as the ledger's export knows callers: an operator sees every merchant, a
/// shop owner the one merchant of their list.
pub fn csv_caller(ctx: &Ctx) -> crate::http::Caller {
    match owner_scope(ctx) {
        None => crate::http::Caller::Operator,
        Some(m) => crate::http::Caller::Merchant(m),
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
            .await
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
    let counts = app.store.merchant_counts().await.unwrap_or_default();
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

pub async fn one(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str) -> Page {
    if !ctx.who.sees(id) {
        return Page::NotFound;
    }
    let Ok(Some(lp)) = app.store.ledger_payment(id, no).await else {
        return Page::NotFound;
    };
    let zone = &app.config.admin.time_zone;
    let p = &lp.payment;
    let refunds = app.store.refunds_for(id, no).await.unwrap_or_default();
    let attempts = app
        .store
        .webhook_attempts_for(id, no)
        .await
        .unwrap_or_default();
    // The ledger's timeline (the API's), in words and the zone's times.
    let timeline: Vec<Value> = crate::ledger::timeline(app, p)
        .await
        .unwrap_or_default()
        .iter()
        .map(|e| super::timeline::line(ctx.lang, zone, e))
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
            )
            .await;
            Flash::ok(format!(
                "{} {no}: {} ({})",
                ctx.t("查询完成", "Queried"),
                super::view::status_word(ctx.lang, &r.status),
                super::timeline::outcome_word(ctx.lang, &r.outcome)
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
    let amount = words::half_width_amount(field(form, "amount"));
    let reason = field(form, "reason").trim().to_owned();
    let refused = |field_name: &str, message: String| {
        let mut f = Flash::err(ctx.t("未发起退款", "The refund was not started"));
        f.field_errors.insert(field_name.to_owned(), message);
        f.typed.insert("amount".into(), amount.clone());
        f.typed.insert("reason".into(), reason.clone());
        PostResult::Done(Posted::to(to.clone(), f))
    };
    let cmd = crate::refunds::RefundCommand {
        amount: Some(serde_json::Value::String(amount.clone())),
        reason: Some(reason.clone()),
        refund_key: Some(field(form, "refund_key").to_owned()).filter(|k| !k.is_empty()),
    };
    match app
        .start_refund(id, no, cmd, &format!("admin:{}", ctx.who.name))
        .await
    {
        Ok((200, r)) => {
            // The same form sent again (its refund_key): the refund already started, nothing new.
            PostResult::Done(Posted::to(
                to,
                Flash::ok(format!(
                    "{} #{} ¥{} ({})",
                    ctx.t(
                        "这笔退款已经发起过，没有重复退款：",
                        "This refund was already started, nothing was repeated:"
                    ),
                    r.id,
                    r.amount(),
                    super::view::refund_status_word(ctx.lang, &r.status)
                )),
            ))
        }
        Ok((_, r)) => {
            audit(
                app,
                &ctx.who,
                "refund.start",
                Some(id),
                &format!("{no}: ¥{} #{} {}", r.amount(), r.id, r.status),
            )
            .await;
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
            let status = match app.store.payment(id, no).await {
                Ok(Some(p)) => p.status,
                _ => String::new(),
            };
            refused(name, words::refund_error(ctx.lang, &e, &amount, &status))
        }
    }
}

/// 放弃 a refund the seller never confirmed on Alipay's page: its amount is refundable again.
pub async fn abandon_refund(
    app: &Arc<App>,
    ctx: &Ctx,
    id: &str,
    no: &str,
    refund: &str,
) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let Ok(refund_id) = refund.parse::<i64>() else {
        return PostResult::NotFound;
    };
    let flash = match app
        .abandon_refund(id, no, refund_id, &format!("admin:{}", ctx.who.name))
        .await
    {
        Ok(r) => {
            audit(
                app,
                &ctx.who,
                "refund.abandon",
                Some(id),
                &format!("{no}: ¥{} #{}", r.amount(), r.id),
            )
            .await;
            Flash::ok(format!(
                "{} #{} ¥{}{}",
                ctx.t("已放弃退款", "Refund given up:"),
                r.id,
                r.amount(),
                ctx.t(
                    "，这笔金额可以重新退款。重新退款前请先在支付宝商家后台确认它确实没有退成（卖家若已确认而通知没到，再退一次就会退两次）",
                    "; its amount can be refunded again. Before refunding again, check in Alipay's merchant site that it was really not refunded (if the seller confirmed it and the notice was lost, refunding again refunds twice)"
                )
            ))
        }
        Err(e) if e.status == 409 => Flash::err(ctx.t(
            "只有等待卖家确认的退款可以放弃",
            "Only a refund waiting for the seller's confirmation can be given up",
        )),
        Err(e) if e.status == 404 => return PostResult::NotFound,
        Err(e) => Flash::err(e.message),
    };
    PostResult::Done(Posted::to(payment_url(id, no), flash))
}

pub async fn close(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let flash = match app.close_payment(id, no).await {
        Ok(v) => {
            audit(app, &ctx.who, "payment.close", Some(id), no).await;
            let status = v["status"]
                .as_str()
                .unwrap_or(crate::store::TRADE_CLOSED)
                .to_owned();
            Flash::ok(format!(
                "{} {no}: {}",
                ctx.t("订单已关闭", "Order closed"),
                super::view::status_word(ctx.lang, &status)
            ))
        }
        Err(e) if e.code == "not_closable" && ctx.lang == super::Lang::Zh => {
            let now = match app.store.payment(id, no).await {
                Ok(Some(p)) => p.status,
                _ => String::new(),
            };
            Flash::err(format!(
                "无法关闭：只有待付款的订单可以关闭，这笔订单现在是{}",
                super::view::status_word(ctx.lang, &now)
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
