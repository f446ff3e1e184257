//! Payments: the overview (30-day chart, merchants' totals), the filtered and paged list, its CSV,
//! a payment's page (amounts, timeline, refunds, webhook attempts) and its actions (sync, refund,
//! close). The queries are the ledger's ([`crate::store::ledger::Ledger`]); a shop owner's pages
//! hold their merchants only.

use super::chart::{self, Day};
use super::list::{self, pager, query_of};
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

const FILTER_FIELDS: [&str; 8] = [
    "q",
    "merchant",
    "status",
    "from",
    "to",
    "min_amount",
    "max_amount",
    "review",
];

/// The page's filters, checked by the ledger's own rules (the same as `GET /v1/payments`).
fn filters(ctx: &Ctx) -> list::Filters<PaymentFilter> {
    let f = list::checked_filters(
        ctx,
        &FILTER_FIELDS,
        crate::ledger::parse_filter,
        crate::ledger::within,
    );
    list::Filters {
        filter: PaymentFilter {
            limit: PAGE_ROWS + 1,
            ..f.filter
        },
        ..f
    }
}

fn row(app: &App, ctx: &Ctx, lp: &LedgerPayment) -> Value {
    let zone = &app.config.admin.time_zone;
    let p = &lp.payment;
    context! {
        url => payment_url(&p.merchant_id, &p.out_trade_no),
        out_trade_no => p.out_trade_no, merchant_id => p.merchant_id,
        amount => p.total_fee(), refunded => yuan(lp.refunded_fen), status => p.status,
        finished_beside => super::view::finished_beside_status(p),
        review => p.review, review_explained => review_explained(ctx, p.review.as_deref()),
        buyer => p.buyer_email,
        created => zone.show(&p.created_at),
        paid => p.paid_at.as_deref().map(|t| zone.show(t)),
    }
}

pub async fn list(app: &Arc<App>, ctx: &Ctx) -> Page {
    let list::Filters {
        typed,
        filter,
        errors,
        bad_field,
    } = filters(ctx);
    let notice = list::not_theirs_notice(ctx);
    let mut rows = if errors.is_empty() {
        app.store.list_payments(&filter).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the admin payments list failed");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    // Every page of the filter: what the owner holds against the provider's statement.
    let counted = if errors.is_empty() {
        app.store
            .filter_totals(&filter)
            .await
            .map_err(|e| tracing::error!(error = %e, "the admin list's totals failed"))
            .ok()
    } else {
        None
    };
    let page_count = counted
        .as_ref()
        .filter(|t| t.count > 0)
        .map(|t| list::page_count(t.count, PAGE_ROWS));
    let totals = {
        counted.map(|t| {
            context! {
                count => t.count, amount => yuan(t.total_fen), paid_count => t.paid_count,
                paid_amount => yuan(t.paid_fen), refunded_amount => yuan(t.refunded_fen),
            }
        })
    };
    let more = rows.len() > PAGE_ROWS as usize;
    rows.truncate(PAGE_ROWS as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|last| Cursor::of(&last.payment).encode());
    let pages = pager(
        &list::PAYMENTS,
        &typed,
        filter.cursor.as_ref().map(|_| ctx.q("cursor").trim()),
        ctx.q("back"),
        next_cursor,
    );
    let payments: Vec<Value> = rows.iter().map(|r| row(app, ctx, r)).collect();
    let merchant_ids = super::merchants::visible_ids(app, ctx).await;
    let mut f = std::collections::BTreeMap::new();
    for (k, v) in &typed {
        f.insert(*k, v.clone());
    }
    Page::View {
        template: "payments.html",
        section: "payments",
        values: context! {
            payments, f, merchant_ids, totals, notice,
            next_url => pages.next, prev_url => pages.prev, first_url => pages.first,
            page_no => pages.number, page_count => page_count,
            filter_errors => errors, bad_filter => bad_field,
            statuses => crate::domain::state::STATUSES.iter().copied().chain([crate::ledger::REFUND_PENDING]).collect::<Vec<_>>(),
            csv_url => csv_link(&typed),
        },
    }
}

/// A payment's review reason explained in the page's language, or None without one.
fn review_explained(ctx: &Ctx, review: Option<&str>) -> Option<String> {
    review
        .filter(|r| !r.trim().is_empty())
        .map(|r| words::review_explained(ctx.lang, r))
}

/// The query of the CSV link: the list's filters (served for the session by [`csv_filter`]).
fn csv_link(typed: &[(&str, String)]) -> String {
    format!("/admin/payments.csv?{}", query_of(typed, &[]))
}

/// Why the CSV of a list's filter was refused, for a logged-in owner (Chinese, English): the
/// ledger's API words talk about tokens. `what` names the list: ("支付", "payments") or
/// ("退款", "refunds").
pub fn csv_refusal(
    ctx: &Ctx,
    e: &crate::http::error::ApiError,
    (zh, en): (&str, &str),
) -> (String, String) {
    if e.code == "forbidden" {
        let asked = ctx.q("merchant").trim();
        let own = ctx.who.merchants.join("、");
        return (
            format!("你的账号不能导出商户 {asked} 的{zh}记录，只能导出你自己的商户（{own}）。请回到{zh}列表，用“下载 CSV”导出。"),
            format!("Your login cannot export merchant {asked}'s {en}, only your own merchants' ({}). Go back to the {en} list and use “Download CSV”.", ctx.who.merchants.join(", ")),
        );
    }
    let typed = |name: &str| ctx.q(name).trim().to_owned();
    (
        format!(
            "{}。请回到{zh}列表修正筛选条件后再下载。",
            words::filter_error(
                super::Lang::Zh,
                e,
                &typed,
                match zh {
                    "退款" => words::REFUND_DATES,
                    _ => words::PAYMENT_DATES,
                }
            )
        ),
        e.message.clone(),
    )
}

/// The CSV's filter for this session: the ledger's CSV rules (`/v1/payments.csv`, as the
/// operator), then a shop owner's merchants: all of theirs when they name none, another's
/// refused.
pub fn csv_filter(
    ctx: &Ctx,
    req: &http::Request<hyper::body::Incoming>,
) -> Result<PaymentFilter, crate::http::error::ApiError> {
    let f = crate::http::ledger::csv_filter(
        &crate::http::Caller::Operator,
        Some(&super::list::without_lang(req.uri().query())),
    )?;
    list::scoped(ctx, f, crate::ledger::within)
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
        ctx.lang,
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
    // A shop refusing its webhooks is said here, not only once they are given up on.
    let mut retrying: Vec<String> = Vec::new();
    let mut retrying_count = 0usize;
    for scope in &scopes {
        for w in app
            .store
            .retrying_webhooks(scope.as_deref(), 500)
            .await
            .unwrap_or_default()
        {
            retrying_count += 1;
            if !retrying.contains(&w.merchant_id) {
                retrying.push(w.merchant_id);
            }
        }
    }
    // A database that cannot commit (a full disk, say) is said where everybody looks first:
    // notifications are refused meanwhile (Alipay sends them again), orders paid at Alipay
    // still show unpaid here.
    let store_problem =
        match tokio::time::timeout(std::time::Duration::from_millis(1500), app.store.ready()).await
        {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(
                ctx.t(
                    "数据库 1.5 秒内没有响应",
                    "the database did not answer within 1.5 s",
                )
                .to_owned(),
            ),
        };
    Page::View {
        template: "overview.html",
        section: "overview",
        values: context! {
            store_problem,
            retrying_count, retrying_merchants => retrying.join(", "),
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
    // One read of everything shown: the status, the refunded total and the refunds agree.
    let Ok(Some(record)) = app.store.payment_record(id, no).await else {
        return Page::NotFound;
    };
    let zone = &app.config.admin.time_zone;
    let (lp, refunds, attempts) = (&record.ledger, &record.refunds, &record.webhook_attempts);
    let p = &lp.payment;
    // The ledger's timeline (the API's), in words and the zone's times.
    let timeline: Vec<Value> =
        super::timeline::lines(ctx.lang, zone, &crate::ledger::timeline(&record));
    let refundable_fen = refundable_of(p, refunds);
    let pending_fen =
        crate::domain::refunds::Totals::of(&refunds.iter().map(|r| r.line()).collect::<Vec<_>>())
            .pending;
    let refund_waits_for_seller = app
        .store
        .merchant(id)
        .await
        .ok()
        .flatten()
        .is_some_and(|m| refund_waits_for_seller(&m));
    let (errors, typed, _) = ctx.form_state();
    let waits_for_seller =
        |r: &crate::store::ledger::Refund| r.status == "PENDING" && r.confirm_url.is_some();
    let refund_views: Vec<Value> = refunds
        .iter()
        .rev()
        .map(|r| {
            let given_up = super::view::given_up_by(&r.status, r.detail.as_deref());
            context! {
                id => r.id, amount => r.amount(), status => r.status, reason => r.reason,
                status_word => super::view::refund_word(ctx.lang, &r.status, r.detail.as_deref()),
                given_up_note => given_up.map(|by| super::view::given_up_note(ctx.lang, by)),
                failed_why => super::view::refund_failed_why(ctx.lang, &r.status, r.detail.as_deref()),
                started_by => words::who(ctx.lang, &r.started_by), created => zone.show(&r.created_at),
                completed => r.completed_at.as_deref().map(|t| zone.show(t)),
                // A refund waiting for the seller can be given up; once Alipay finished the
                // trade its page can only fail (TRADE_STATUS_ERROR), so it is not offered.
                abandonable => waits_for_seller(r),
                confirm_url => r.confirm_url.clone().filter(|_| waits_for_seller(r) && !p.is_finished()),
                finished_note => (waits_for_seller(r) && p.is_finished()).then(|| ctx.t(
                    "支付宝已完结这笔交易，不会再做这笔退款：请点“放弃”",
                    "Alipay finished this trade and will not make this refund: give it up",
                )),
            }
        })
        .collect();
    let attempt_views: Vec<Value> = attempts
        .iter()
        .map(|a| context! {
            at => zone.show(&a.at), event_type => super::merchants::event_words(ctx.lang, &a.event_type),
            http_status => a.http_status,
            error => a.error.as_deref().map(|e| super::timeline::webhook_failure_words(ctx.lang, e, false)),
        })
        .collect();
    Page::View {
        template: "payment.html",
        section: "payments",
        values: context! {
            p => context! {
                url => payment_url(id, no), out_trade_no => p.out_trade_no, merchant_id => p.merchant_id,
                status => p.status, review => p.review, updated_at => p.updated_at,
                amount => p.total_fee(),
                review_explained => review_explained(ctx, p.review.as_deref()),
                refunded => yuan(lp.refunded_fen), refundable => yuan(refundable_fen), refundable_fen,
                pending => yuan(pending_fen), pending_fen,
                no_refund_why => no_refund_why(ctx.lang, &p.status, p.is_finished(), refundable_fen, pending_fen),
                finished => p.is_finished(),
                finished_beside => super::view::finished_beside_status(p),
                subject => p.subject, seller => p.seller, buyer => p.buyer_email, trade_no => p.trade_no,
                created => zone.show(&p.created_at), paid => p.paid_at.as_deref().map(|t| zone.show(t)),
                closable => p.status == crate::store::WAIT_BUYER_PAY,
            },
            refunds => refund_views, attempts => attempt_views, timeline, errors, typed,
            refund_waits_for_seller,
            // A new key per form: a second submit of the same form is the same refund.
            refund_key => crate::auth::random_token(),
        },
    }
}

/// Whether a refund of this merchant waits for the seller: Alipay's legacy API (api = mapi, a
/// partner ID) starts it, and the seller's payment password on Alipay's page makes it; until
/// then it can be given up (放弃). The open platform refunds at once.
fn refund_waits_for_seller(m: &crate::config::MerchantSettings) -> bool {
    m.get("api").unwrap_or("mapi") == "mapi" && m.get("partner").is_some()
}

pub async fn sync(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let flash = match app.sync_payment(id, no).await {
        // An answer, not a failure: the buyer has not paid (nor, for the open platform, opened
        // the cashier).
        Ok(r) if !r.found => Flash::ok(format!(
            "{} {no}{}{}",
            ctx.t("查询完成", "Queried"),
            ctx.t(
                "：支付宝没有这笔交易（买家还没有付款），订单仍是",
                ": Alipay has no such trade (the buyer has not paid); the order stays "
            ),
            super::view::status_word(ctx.lang, &r.status)
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
            let refunds: Vec<String> = r
                .refunds
                .iter()
                .map(|x| {
                    let status = x["status"].as_str().unwrap_or_default();
                    format!(
                        "#{} ¥{} {}",
                        x["id"],
                        x["amount"].as_str().unwrap_or_default(),
                        super::view::refund_status_word(ctx.lang, status)
                    )
                })
                .collect();
            let refunds = if refunds.is_empty() {
                String::new()
            } else {
                format!(
                    "{}{}",
                    ctx.t(
                        "；处理中的退款已向支付宝查询：",
                        "; pending refunds asked about: "
                    ),
                    refunds.join(ctx.t("，", ", "))
                )
            };
            // A trade still waiting changed nothing: said as what it means, not as a status.
            let waiting = r.trade_status.as_deref() == Some(crate::store::WAIT_BUYER_PAY)
                && r.outcome == "no_change";
            // A finish that moved no status (a partly refunded trade; its refund known already)
            // is still news: no refund of it is possible any more.
            let finished_only = r.finished
                && r.trade_status.as_deref() == Some(crate::store::TRADE_FINISHED)
                && matches!(r.outcome.as_str(), "no_change" | "duplicate");
            let said = if finished_only {
                format!(
                    "{}{}",
                    ctx.t(
                        "支付宝上这笔交易已结束（TRADE_FINISHED），不能再退款；订单仍是",
                        "Alipay finished this trade (TRADE_FINISHED): it takes no refund any more; the order stays ",
                    ),
                    super::view::status_word(ctx.lang, &r.status)
                )
            } else if waiting {
                ctx.t(
                    "支付宝上这笔交易仍在等待买家付款（买家还没有付款），订单仍是待付款",
                    "Alipay's trade still waits for the buyer (not paid yet); the order stays awaiting payment",
                )
                .to_owned()
            } else {
                // What the query did, said for a button the owner pressed (not a notification's
                // "duplicate").
                let did = match r.outcome.as_str() {
                    "applied" => ctx
                        .t("已按支付宝的状态更新", "updated from Alipay")
                        .to_owned(),
                    "duplicate" | "no_change" => ctx
                        .t(
                            "与支付宝一致，没有变化",
                            "as Alipay has it, nothing changed",
                        )
                        .to_owned(),
                    other => super::timeline::outcome_word(ctx.lang, other),
                };
                format!(
                    "{}{}{did}",
                    super::view::status_word(ctx.lang, &r.status),
                    ctx.t("，", ", ")
                )
            };
            Flash::ok(format!(
                "{} {no}{}{said}{refunds}",
                ctx.t("查询完成", "Queried"),
                ctx.t("：", ": "),
            ))
        }
        Err(e) => Flash::err(format!(
            "{}{}",
            ctx.t("查询失败：", "The trade query failed: "),
            super::words::provider_message(ctx.lang, &e.message)
        )),
    };
    PostResult::Done(Posted::to(payment_url(id, no), flash))
}

/// 已核对: the owner checked a payment held for review; its flag is cleared when it still says
/// what the page showed (`review`), else the page is shown again with the new reason.
pub async fn clear_review(
    app: &Arc<App>,
    ctx: &Ctx,
    id: &str,
    no: &str,
    form: &Form,
) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let seen = crate::store::ledger::ReviewSeen {
        reason: super::field(form, "review").to_owned(),
        updated_at: super::field(form, "updated_at").to_owned(),
    };
    let by = format!("admin:{}", ctx.who.name);
    let flash = match crate::ledger::clear_review(app, id, no, &seen, &by).await {
        Ok(()) => {
            audit(
                app,
                &ctx.who,
                "payment.review_cleared",
                Some(id),
                &format!("{no}: {}", seen.reason),
            )
            .await;
            Flash::ok(format!(
                "{} {no}",
                ctx.t("已标记为已核对：", "Marked as checked:")
            ))
        }
        Err(e) if e.code == "review_changed" => Flash::err(ctx.t(
            "这笔支付的核对原因已经变了（或已被别人核对），请看页面上现在的原因",
            "The reason this payment is held changed (or somebody checked it); read the reason shown now",
        )),
        Err(e) => Flash::err(e.message),
    };
    PostResult::Done(Posted::to(payment_url(id, no), flash))
}

/// Why a paid payment's page has no refund form (None when it has one, or was never paid): a
/// form that vanished without a word read as money gone.
fn no_refund_why(
    lang: super::view::Lang,
    status: &str,
    finished: bool,
    refundable_fen: u64,
    pending_fen: u64,
) -> Option<String> {
    let t = |zh: &str, en: &str| match lang {
        super::view::Lang::Zh => zh.to_owned(),
        super::view::Lang::En => en.to_owned(),
    };
    if refundable_fen > 0 || !crate::domain::state::is_paid(status) {
        return None;
    }
    Some(if finished {
        t(
            "交易已完结（超过了可退款期限），支付宝不再接受这笔交易的退款。",
            "The trade is finished (past its refund period): Alipay takes no refund of it.",
        )
    } else if pending_fen > 0 {
        format!(
            "{}{}{}",
            t("现在没有可退的金额：¥", "Nothing is left to refund now: ¥"),
            yuan(pending_fen),
            t(
                " 的退款正在处理中（等待在支付宝确认）。确认完成后这里会更新；卖家没有确认的，可在下面的退款记录里放弃，金额就能再退。",
                " is being refunded (waiting for confirmation at Alipay). This page updates once it completes; one the seller never confirms can be given up in the refunds below, and its amount is refundable again.",
            )
        )
    } else {
        t("这笔支付已全额退款。", "This payment is refunded in full.")
    })
}

/// What is left to refund of a payment with these refunds: paid, less what is refunded and
/// being refunded (none of a finished trade, which the provider refuses to refund).
fn refundable_of(p: &crate::store::Payment, refunds: &[crate::store::ledger::Refund]) -> u64 {
    let status = p.status.as_str();
    if !crate::domain::state::is_paid(status) || status == crate::store::REFUNDED || p.is_finished()
    {
        return 0;
    }
    let committed =
        crate::domain::refunds::Totals::of(&refunds.iter().map(|r| r.line()).collect::<Vec<_>>())
            .committed();
    p.total_fen.saturating_sub(committed)
}

/// The payment's status, whether its trade is finished, and what is left to refund, as the page
/// reads them now.
async fn payment_now(app: &App, id: &str, no: &str) -> Option<(String, bool, u64)> {
    let p = app.store.payment(id, no).await.ok().flatten()?;
    let refunds = app.store.refunds_for(id, no).await.unwrap_or_default();
    let left = refundable_of(&p, &refunds);
    let finished = p.is_finished();
    Some((p.status, finished, left))
}

/// What the page says when a refund's form comes again after the refund started.
fn already_started(ctx: &Ctx, r: &crate::store::ledger::Refund, confirmed: bool) -> Flash {
    // A confirmation of this login's own refund of the last minute: a double tap on 确认退款,
    // whose second tap's answer is the one shown. Said as done (it was), not as a refusal.
    let just_now = confirmed
        && crate::domain::clock::parse_rfc3339(&r.created_at)
            .is_some_and(|at| crate::domain::clock::now_unix() - at < 60);
    if just_now && r.started_by == format!("admin:{}", ctx.who.name) {
        return Flash::ok(format!(
            "{} ¥{} ({}){}",
            ctx.t("已发起退款", "Refund started:"),
            r.amount(),
            super::view::refund_status_word(ctx.lang, &r.status),
            ctx.t(
                "：确认点了两次，只退了一次",
                ": the confirmation was sent twice, and refunded once"
            )
        ));
    }
    Flash::ok(format!(
        "{}#{} ¥{} ({})",
        ctx.t(
            "这笔退款已经发起过，没有重复退款：",
            "This refund was already started, nothing was repeated: "
        ),
        r.id,
        r.amount(),
        super::view::refund_status_word(ctx.lang, &r.status)
    ))
}

/// How long after the confirmation page is asked for a confirmation counts as the owner's: a
/// quicker one is the second tap of a double tap (250–400 ms apart on a phone).
const CONFIRM_PAUSE_MS: i64 = 1_200;

/// A refund in two posts, so that one mistyped amount never refunds at once. The form (or its
/// 全额退款 button, `full=1`: what is left to refund) leads to the payment page asking to
/// confirm the amount and the order, after the checks this page can make; that page's button
/// posts the same fields with `confirm=1` and the form's `refund_key`, and only then does the
/// refund start. A form whose refund_key started a refund already (a double click, a reload,
/// the back button) is that refund, said so, never a second one. Its 返回修改 (`edit=1`) goes
/// back to the form as typed.
pub async fn refund(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str, form: &Form) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let Some((status, finished, refundable_fen)) = payment_now(app, id, no).await else {
        return PostResult::NotFound;
    };
    let to = payment_url(id, no);
    // Where the answer is read: on a phone the refund's cards are far below the page's top.
    let to_form = format!("{to}#refund-card");
    let to_confirm = format!("{to}#refund-confirm-card");
    let full = field(form, "full") == "1";
    let amount = if full {
        yuan(refundable_fen)
    } else {
        words::half_width_amount(field(form, "amount"))
    };
    let reason = field(form, "reason").trim().to_owned();
    let refund_key = field(form, "refund_key").trim().to_owned();
    let with_typed = |mut f: Flash| {
        f.typed.insert("amount".into(), amount.clone());
        f.typed.insert("reason".into(), reason.clone());
        f
    };
    // A refusal of the form; `unknown`: the refund may have reached the provider (no answer),
    // so the page says so and the form keeps its refund_key (sent again, it is the same refund).
    let refused = |field_name: &str, message: String, unknown: bool| {
        let headline = if unknown {
            ctx.t(
                "退款结果未知：这笔退款可能已经提交到支付宝，请不要再次退款（也不要到支付宝后台手工退款），稍后查看退款记录",
                "The refund's outcome is unknown: it may have reached Alipay. Do not refund again (here or in Alipay's portal); check the refunds below later",
            ).to_owned()
        } else {
            words::refund_not_started(ctx.lang, &message)
        };
        let mut f = with_typed(Flash::err(headline));
        f.field_errors.insert(field_name.to_owned(), message);
        if unknown && !refund_key.is_empty() {
            f.typed.insert("refund_key".into(), refund_key.clone());
        }
        PostResult::Done(Posted::to(to_form.clone(), f))
    };
    // The confirmation page's fields: what is asked about, and when it was asked (a
    // confirmation within CONFIRM_PAUSE_MS of it is a double tap's second tap).
    let ask_to_confirm = |mut f: Flash, amount: &str| {
        f.typed.insert("amount".into(), amount.to_owned());
        f.typed.insert("reason".into(), reason.clone());
        f.typed.insert("refund_key".into(), refund_key.clone());
        f.typed.insert("confirm".into(), "1".into());
        f.typed
            .insert("asked_at".into(), crate::store::now_ms().to_string());
        f
    };
    let now = words::PaymentNow {
        status: &status,
        finished,
        refundable_fen,
    };
    if field(form, "edit") == "1" {
        // The same refund_key goes back into the form: should the confirmation have gone
        // through after all (its answer lost), the form sent again is that refund, never a
        // second one (whatever amount it now says: the refund already started is shown).
        let mut f = with_typed(Flash::ok(ctx.t(
            "没有退款，可以修改后重新提交",
            "Nothing was refunded: change the form and send it again",
        )));
        if !refund_key.is_empty() {
            f.typed.insert("refund_key".into(), refund_key.clone());
        }
        return PostResult::Done(Posted::to(to_form.clone(), f));
    }
    // The form of a refund already started, sent again (the back button, a reload of the form
    // page): that refund, said so — not the checks of a new one against what is left now.
    if !refund_key.is_empty() {
        let started = app.store.refunds_for(id, no).await.unwrap_or_default();
        if let Some(r) = started
            .iter()
            .find(|r| r.refund_key.as_deref() == Some(refund_key.as_str()))
        {
            return PostResult::Done(Posted::to(
                to,
                already_started(ctx, r, field(form, "confirm") == "1"),
            ));
        }
    }
    if field(form, "confirm") != "1" {
        // The checks this page can make before asking; the refund's own rules run again when it
        // starts.
        if refundable_fen == 0 {
            let e = crate::http::error::ApiError::new(
                409,
                "not_refundable",
                format!("the payment is not refundable (status {status})"),
            );
            let why = words::nothing_left_to_refund(ctx.lang, now)
                .unwrap_or_else(|| words::refund_error(ctx.lang, &e, &amount, now));
            return refused("amount", why, false);
        }
        let parsed = match crate::domain::amount::Amount::parse(&amount) {
            Ok(a) => a,
            Err(_) => {
                let why = words::refund_amount_refusal(ctx.lang, &amount, refundable_fen);
                return refused("amount", why, false);
            }
        };
        if parsed.minor() > refundable_fen {
            let e = crate::http::error::ApiError::field(
                409,
                "refund_exceeds_paid",
                "amount",
                format!(
                    "amount: {parsed} is more than the {} left to refund",
                    yuan(refundable_fen)
                ),
            );
            return refused(
                "amount",
                words::refund_error(ctx.lang, &e, &amount, now),
                false,
            );
        }
        if let Some(why) = words::reason_refusal(ctx.lang, &reason) {
            return refused("reason", why, false);
        }
        let mut said = ctx
            .t(
                "还没有退款：请核对下面的金额和订单，点“确认退款”后才会退款",
                "Nothing is refunded yet: check the amount and the order below, then press “Confirm the refund”",
            )
            .to_owned();
        // 全额退款 pressed with an amount typed: the amount is not what is asked about.
        let typed = words::half_width_amount(field(form, "amount"));
        let typed_fen = crate::domain::amount::Amount::parse(&typed).map(|a| a.minor());
        if full && !typed.is_empty() && typed_fen != Ok(parsed.minor()) {
            said.push_str(&match ctx.lang {
                super::Lang::Zh => format!("（你填写的 {typed} 没有使用：全额退款是全部可退金额）"),
                super::Lang::En => format!(
                    " (the {typed} you typed is not used: a full refund is everything left)"
                ),
            });
        }
        let mut f = ask_to_confirm(Flash::ok(said), &parsed.to_string());
        if full {
            f.typed.insert("full".into(), "1".into());
        }
        return PostResult::Done(Posted::to(to_confirm, f));
    }
    // A confirmation sent right after the page asking for it came up: a double tap on 发起退款
    // or 全额退款, whose second tap lands on 确认退款 (on a phone it takes their place). Asked
    // again, so that nothing is refunded that the owner did not see.
    let asked_at = field(form, "asked_at").parse::<i64>().ok();
    if asked_at.is_some_and(|at| (0..CONFIRM_PAUSE_MS).contains(&(crate::store::now_ms() - at))) {
        let f = ask_to_confirm(
            Flash::err(ctx.t(
                "还没有退款：确认来得太快（可能是连点了两下），请核对下面的金额和订单后再点“确认退款”",
                "Nothing is refunded yet: the confirmation came too quickly (a double tap?); check the amount and the order below, then press “Confirm the refund”",
            )),
            &amount,
        );
        return PostResult::Done(Posted::to(to_confirm, f));
    }
    let cmd = crate::refunds::RefundCommand {
        amount: Some(serde_json::Value::String(amount.clone())),
        reason: Some(reason.clone()),
        refund_key: Some(refund_key.clone()).filter(|k| !k.is_empty()),
    };
    match app
        .start_refund(id, no, cmd, &format!("admin:{}", ctx.who.name))
        .await
    {
        // The same form sent again (its refund_key): the refund already started, nothing new.
        Ok((200, r)) => PostResult::Done(Posted::to(to, already_started(ctx, &r, true))),
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
            } else if r.status == "PENDING" {
                // Alipay has not said yet: what happens next, and what not to do meanwhile (a
                // second refund, here or in Alipay's back office, would refund twice).
                f.text.push_str(ctx.t(
                    "。支付宝还没有给出结果：payhost 会自动向支付宝查询，结果出来后本页会显示。请不要再次退款，也不要在支付宝后台另行退款；几分钟后刷新本页查看。",
                    ". Alipay has not answered yet: payhost asks Alipay by itself and this page shows the outcome once known. Do not refund again, here or in Alipay's back office; reload this page in a few minutes.",
                ));
            }
            PostResult::Done(Posted::to(to, f))
        }
        Err(e) => {
            // A refund whose outcome is unknown was kept (it may have reached the provider):
            // started by this owner, so audited as any refund started.
            if let Some(("refund", kept)) = e.about.as_deref().map(|(k, v)| (*k, v)) {
                audit(
                    app,
                    &ctx.who,
                    "refund.start",
                    Some(id),
                    &format!(
                        "{no}: ¥{} #{} {}",
                        kept["amount"].as_str().unwrap_or(&amount),
                        kept["id"],
                        kept["status"].as_str().unwrap_or("PENDING"),
                    ),
                )
                .await;
            }
            let name = match e.field.as_deref() {
                Some("reason") => "reason",
                _ => "amount",
            };
            // The payment as it is now (the refund may have moved it).
            let (status, finished, refundable_fen) = payment_now(app, id, no).await.unwrap_or((
                status.clone(),
                finished,
                refundable_fen,
            ));
            let now = words::PaymentNow {
                status: &status,
                finished,
                refundable_fen,
            };
            let mut said = words::refund_error(ctx.lang, &e, &amount, now);
            if words::refused_by_provider(&e.code) && app.config.recovery.enabled {
                said.push_str(words::asking_about_the_trade(ctx.lang));
            }
            refused(name, said, words::refund_outcome_unknown(&e.code))
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
    form: &Form,
) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let Ok(refund_id) = refund.parse::<i64>() else {
        return PostResult::NotFound;
    };
    // Giving up frees the amount to be refunded again: asked first, with the risk said.
    if field(form, "confirm") != "1" {
        let mut f = Flash::ok(format!(
            "{} #{refund_id}",
            ctx.t(
                "还没有放弃：请在下面确认是否放弃退款",
                "Nothing is given up yet: confirm below to give up refund"
            )
        ));
        f.typed.insert("abandon".into(), refund_id.to_string());
        return PostResult::Done(Posted::to(
            format!("{}#abandon-confirm-card", payment_url(id, no)),
            f,
        ));
    }
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

/// 关闭订单 in two posts, as a refund: the button leads to the payment page asking to confirm,
/// whose button posts `confirm=1`; only then is the order closed. An order no longer waiting
/// is not asked about: the close says why it cannot be done.
pub async fn close(app: &Arc<App>, ctx: &Ctx, id: &str, no: &str, form: &Form) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let Some((status, _, _)) = payment_now(app, id, no).await else {
        return PostResult::NotFound;
    };
    if field(form, "confirm") != "1" && status == crate::store::WAIT_BUYER_PAY {
        let mut f = Flash::ok(format!(
            "{} {no}",
            ctx.t(
                "还没有关闭：请在下面确认是否关闭订单",
                "Nothing is closed yet: confirm below to close order"
            )
        ));
        f.typed.insert("close".into(), "1".into());
        return PostResult::Done(Posted::to(
            format!("{}#close-confirm-card", payment_url(id, no)),
            f,
        ));
    }
    let flash = match app.close_payment(id, no).await {
        Ok(v) => {
            audit(app, &ctx.who, "payment.close", Some(id), no).await;
            let status = v["status"]
                .as_str()
                .unwrap_or(crate::store::TRADE_CLOSED)
                .to_owned();
            Flash::ok(format!(
                "{} {no}{}{}",
                ctx.t("订单已关闭", "Order closed"),
                ctx.t("：", ": "),
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
            "{}{}",
            ctx.t("无法关闭：", "Cannot close it: "),
            super::words::provider_message(ctx.lang, &e.message)
        )),
    };
    PostResult::Done(Posted::to(payment_url(id, no), flash))
}

#[cfg(test)]
mod tests {
    use super::no_refund_why;
    use crate::http::admin::view::Lang;

    /// A paid payment whose refund form is gone says why: everything is being refunded (the
    /// sums on the page looked like money gone), refunded, or the trade is finished.
    #[test]
    fn a_paid_payment_without_a_refund_form_says_why() {
        let pending = no_refund_why(Lang::Zh, "TRADE_SUCCESS", false, 0, 1280).unwrap();
        assert!(
            pending.contains("¥12.80") && pending.contains("放弃"),
            "{pending}"
        );
        assert!(no_refund_why(Lang::Zh, "REFUNDED", false, 0, 0)
            .unwrap()
            .contains("已全额退款"));
        assert!(no_refund_why(Lang::En, "TRADE_FINISHED", true, 0, 0)
            .unwrap()
            .contains("finished"));
        // Partly refunded, then finished at the provider: the status says partly refunded, the
        // page says why nothing more can be.
        assert!(no_refund_why(Lang::Zh, "PARTIALLY_REFUNDED", true, 0, 0)
            .unwrap()
            .contains("已完结"));
        assert_eq!(
            no_refund_why(Lang::Zh, "TRADE_SUCCESS", false, 100, 0),
            None
        );
        assert_eq!(no_refund_why(Lang::Zh, "WAIT_BUYER_PAY", false, 0, 0), None);
    }
}
