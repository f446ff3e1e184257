//! Refunds (退款记录): every refund of the filter, newest first, whoever started it — the admin,
//! the shop's API, or Alipay's own back office — with its totals, a pager and the CSV. The
//! filters are `GET /v1/refunds`'s ([`crate::refund_list`]); a shop owner sees their merchants'.

use super::list::{self, pager, query_of};
use super::payments::payment_url;
use super::{words, yuan, Ctx, Page};
use crate::service::App;
use crate::store::ledger::{Refund, RefundFilter};
use minijinja::{context, Value};
use std::sync::Arc;

/// Rows per page.
const PAGE_ROWS: u32 = 50;

const FILTER_FIELDS: [&str; 7] = [
    "q",
    "merchant",
    "status",
    "from",
    "to",
    "completed_from",
    "completed_to",
];

/// The page's filters, checked by the ledger's own rules (the same as `GET /v1/refunds`).
fn filters(ctx: &Ctx) -> list::Filters<RefundFilter> {
    let f = list::checked_filters(
        ctx,
        &FILTER_FIELDS,
        crate::refund_list::parse_filter,
        crate::refund_list::within,
    );
    list::Filters {
        filter: RefundFilter {
            limit: PAGE_ROWS + 1,
            ..f.filter
        },
        ..f
    }
}

fn row(app: &App, ctx: &Ctx, r: &Refund) -> Value {
    let zone = &app.config.admin.time_zone;
    let given_up = super::view::given_up_by(&r.status, r.detail.as_deref());
    context! {
        // To its line on the payment's page.
        url => format!("{}#refund-{}", payment_url(&r.merchant_id, &r.out_trade_no), r.id),
        id => r.id,
        out_trade_no => r.out_trade_no, merchant_id => r.merchant_id, request_no => r.request_no,
        amount => r.amount(), status => r.status, reason => r.reason,
        status_word => super::view::refund_word(ctx.lang, &r.status, r.detail.as_deref()),
        given_up_note => given_up.map(|by| super::view::given_up_note(ctx.lang, by)),
        failed_why => super::view::refund_failed_why(ctx.lang, &r.status, r.detail.as_deref()),
        started_by => words::who(ctx.lang, &r.started_by),
        created => zone.show(&r.created_at),
        completed => r.completed_at.as_deref().map(|t| zone.show(t)),
    }
}

/// `GET /admin/refunds`.
pub async fn page(app: &Arc<App>, ctx: &Ctx) -> Page {
    let list::Filters {
        typed,
        filter,
        errors,
        bad_field,
    } = filters(ctx);
    let notice = list::not_theirs_notice(ctx);
    let (mut rows, totals, page_count) = if errors.is_empty() {
        let rows = app.store.list_refunds(&filter).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the admin refund list failed");
            Vec::new()
        });
        let counted = app
            .store
            .refund_totals(&filter)
            .await
            .map_err(|e| tracing::error!(error = %e, "the admin refund list's totals failed"))
            .ok();
        let page_count = counted
            .as_ref()
            .filter(|t| t.count > 0)
            .map(|t| list::page_count(t.count, PAGE_ROWS));
        let totals = counted.map(|t| {
            context! {
                count => t.count,
                succeeded_count => t.succeeded_count, succeeded_amount => yuan(t.succeeded_fen),
                pending_count => t.pending_count, pending_amount => yuan(t.pending_fen),
                failed_count => t.failed_count, failed_amount => yuan(t.failed_fen),
            }
        });
        (rows, totals, page_count)
    } else {
        (Vec::new(), None, None)
    };
    let more = rows.len() > PAGE_ROWS as usize;
    rows.truncate(PAGE_ROWS as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|last| crate::refund_list::encode_cursor(last.id));
    let pages = pager(
        &list::REFUNDS,
        &typed,
        filter.before_id.map(|_| ctx.q("cursor").trim()),
        ctx.q("back"),
        next_cursor,
    );
    let refunds: Vec<Value> = rows.iter().map(|r| row(app, ctx, r)).collect();
    let merchant_ids = super::merchants::visible_ids(app, ctx).await;
    let f: std::collections::BTreeMap<&str, String> = typed.iter().cloned().collect();
    Page::View {
        template: "refunds.html",
        section: "refunds",
        values: context! {
            refunds, f, merchant_ids, totals, notice,
            next_url => pages.next, prev_url => pages.prev, first_url => pages.first,
            page_no => pages.number, page_count => page_count,
            filter_errors => errors, bad_filter => bad_field,
            statuses => crate::refund_list::STATUSES,
            csv_url => format!("/admin/refunds.csv?{}", query_of(&typed, &[])),
        },
    }
}

/// The refund CSV's filter for this session: the ledger's CSV rules (`/v1/refunds.csv`, as the
/// operator), then a shop owner's merchants.
pub fn csv_filter(
    ctx: &Ctx,
    req: &http::Request<hyper::body::Incoming>,
) -> Result<RefundFilter, crate::http::error::ApiError> {
    let f = crate::http::ledger::refunds_csv_filter(
        &crate::http::Caller::Operator,
        Some(&super::list::without_lang(req.uri().query())),
    )?;
    list::scoped(ctx, f, crate::refund_list::within)
}
