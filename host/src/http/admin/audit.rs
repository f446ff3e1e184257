//! The audit log's page and its CSV: every state-changing admin action and every login, found by
//! merchant, by who did it and by action. An operator reads every entry; a shop owner reads
//! their merchants' entries and their own logins.

use super::{list, words, Ctx, Page};
use crate::service::App;
use crate::store::admin::AuditQuery;
use minijinja::{context, Value};
use std::sync::Arc;

/// Entries per page.
const PAGE: u32 = 100;

/// Entries per batch of the CSV's stream.
pub const CSV_BATCH: u32 = 1_000;

/// The longest `who` filter: a user name is at most 64 characters, an API token's label more.
const MAX_ACTOR: usize = 200;

/// The page's filters as typed, what the store reads, and what was wrong with them (the field
/// and the message).
struct Filters {
    merchant: String,
    actor: String,
    action: String,
    query: AuditQuery,
    error: Option<(&'static str, String)>,
}

fn filters(ctx: &Ctx) -> Filters {
    let merchant = list::merchant_filter(ctx);
    let actor = ctx.q("who").trim().to_owned();
    let action = ctx.q("action").trim().to_owned();
    let mut error = None;
    if actor.chars().count() > MAX_ACTOR {
        error = Some((
            "who",
            format!(
                "{}{MAX_ACTOR}{}",
                ctx.t("操作人：最多 ", "Who: at most "),
                ctx.t(" 个字符", " characters")
            ),
        ));
    }
    // Action codes are lower-case words joined by '.' or '_' (`refund.start`).
    let code = |a: &str| {
        a.len() <= 64
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
    };
    if !code(&action) {
        error = Some((
            "action",
            format!(
                "{}{}",
                ctx.t(
                    "操作：请从列表中选择，例如 ",
                    "Action: choose one from the list, such as "
                ),
                words::AUDIT_ACTIONS.join(ctx.t("、", ", "))
            ),
        ));
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let query = AuditQuery {
        scope: ctx
            .who
            .only()
            .map(|mine| (mine.to_vec(), ctx.who.name.clone())),
        merchant: some(&merchant),
        actor: some(&actor),
        action: some(&action),
        before: ctx.q("before").parse::<i64>().ok(),
        limit: PAGE,
    };
    Filters {
        merchant,
        actor,
        action,
        query,
        error,
    }
}

/// The filters typed, as a link's query (without the page's place).
fn query_of(f: &Filters) -> String {
    let typed = [
        ("merchant", f.merchant.clone()),
        ("who", f.actor.clone()),
        ("action", f.action.clone()),
    ];
    list::query_of(&typed, &[])
}

pub async fn page(app: &Arc<App>, ctx: &Ctx) -> Page {
    let f = filters(ctx);
    let zone = &app.config.admin.time_zone;
    let rows = match &f.error {
        Some(_) => Vec::new(),
        None => app.store.audit_log(&f.query).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the admin audit log failed");
            Vec::new()
        }),
    };
    let filtered = query_of(&f);
    let next_url = (rows.len() as u32 == PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|r| format!("/admin/audit?{filtered}&before={}", r.id));
    let newest_url = f
        .query
        .before
        .is_some()
        .then(|| format!("/admin/audit?{filtered}"));
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|a| {
            // Who did it, as a link to everything they did (the filter takes the stored name).
            let who_url = format!(
                "/admin/audit?{}",
                list::query_of(&[("who", a.actor.clone())], &[])
            );
            context! {
                id => a.id, at => zone.show(&a.at), actor => words::who(ctx.lang, &a.actor), who_url,
                action_word => words::audit_action(ctx.lang, &a.action),
                detail => words::audit_detail(ctx.lang, &a.action, &a.detail),
                action => a.action, merchant_id => a.merchant_id,
            }
        })
        .collect();
    let actions: Vec<Value> = words::AUDIT_ACTIONS
        .iter()
        .map(|a| context! { code => a, word => words::audit_action(ctx.lang, a) })
        .collect();
    let (bad_filter, filter_error) = match f.error {
        Some((field, message)) => (field, Some(message)),
        None => ("", None),
    };
    Page::View {
        template: "audit.html",
        section: "audit",
        values: context! {
            entries, next_url, newest_url, actions, filter_error, bad_filter,
            notice => list::not_theirs_notice(ctx),
            merchant_ids => super::merchants::visible_ids(app, ctx).await,
            f => context! { merchant => f.merchant, who => f.actor, action => f.action },
            csv_url => format!("/admin/audit.csv?{filtered}"),
        },
    }
}

/// The CSV export's query for this session (every entry the page's filters find, oldest pages
/// included), or its refusal: the status and the message. Another merchant's is refused, as the
/// payments' CSV does (the page shows a notice; a file cannot).
pub fn csv_query(ctx: &Ctx) -> Result<AuditQuery, (u16, String)> {
    if let Some(asked) = list::not_theirs(ctx) {
        return Err((
            403,
            format!(
                "{}{asked}{}{}{}",
                ctx.t(
                    "你的账号不能导出商户 ",
                    "Your login cannot export merchant "
                ),
                ctx.t(
                    " 的操作日志，只能导出你自己的商户（",
                    "'s audit log, only your own merchants' ("
                ),
                ctx.who.merchants.join(ctx.t("、", ", ")),
                ctx.t("）。", ")."),
            ),
        ));
    }
    let f = filters(ctx);
    if let Some((_, message)) = f.error {
        return Err((400, message));
    }
    Ok(AuditQuery {
        before: None,
        limit: CSV_BATCH,
        ..f.query
    })
}

/// The CSV's first bytes: the UTF-8 byte-order mark (so Excel reads UTF-8) and the columns.
pub fn csv_header() -> String {
    "\u{feff}id,at_utc,at_beijing,actor,action,merchant_id,detail\r\n".to_owned()
}

/// One entry as a CSV line (CRLF-terminated); what someone typed is guarded against a
/// spreadsheet running it as a formula.
pub fn csv_row(out: &mut String, a: &crate::store::admin::AuditEntry) {
    let beijing = crate::domain::clock::stored_to_beijing(&a.at).unwrap_or_default();
    let cells = [
        (a.id.to_string(), false),
        (a.at.clone(), false),
        (beijing, false),
        (a.actor.clone(), true),
        (a.action.clone(), true),
        (a.merchant_id.clone().unwrap_or_default(), true),
        (a.detail.clone(), true),
    ];
    for (i, (v, text)) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::ledger::csv_field(out, v, *text);
    }
    out.push_str("\r\n");
}
