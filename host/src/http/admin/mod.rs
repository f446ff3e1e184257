//! The admin pages of the shop owner and the operator: payments (filters, paging, CSV, a payment's
//! page with its timeline, refunds and webhook attempts), a 30-day chart, merchants and their
//! settings (a form built from each merchant's component), dead-lettered webhooks, admin users and
//! the audit log. Templates live in `host/templates/admin/` (HTML auto-escaped); pages are Chinese
//! first with an English switch, and show times in `[admin] time_zone`.
//!
//! Who may do what: an admin user is an operator (everything) or a shop owner (their merchants
//! only, checked on every page and action here on the server: another merchant is a 404, an
//! operator's page a 403); payhost.toml's `admin_password_hash` logs in as an operator. Every post
//! is answered with a 303 to a page (a reload never repeats it); what the post did is shown once
//! by that page. Every state-changing action is written to the audit log.
//!
//! Sessions are random ids kept (hashed) in the database with an expiry and revoked at logout; the
//! cookie is `HttpOnly; SameSite=Strict`, and `Secure` when the page is served over https. Every
//! form carries the session's CSRF token, and a post with a foreign or `null` Origin is refused.
//! Failed logins are throttled per IP (`[admin] login_failures_per_minute`, then 429).

mod audit;
mod chart;
mod csp;
mod device;
mod list;
mod merchants;
mod payments;
mod reconcile;
mod refund_list;
mod session;
mod shown_once;
mod timeline;
mod users;
mod view;
mod words;

use super::{html, Body};
use crate::service::{ApiError, App};
use crate::store::admin::Role;
pub use audit::{csv_header as audit_csv_header, csv_row as audit_csv_row};
pub use csp::{content_security_policy, page_security_policy};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use minijinja::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
pub use view::{status_word, Lang};
use view::{Flash, Frame, WhoView};
pub use words::UNKNOWN_OUTCOME;

/// HTML-escapes text for element bodies and attribute values.
pub fn esc(s: &str) -> String {
    crate::domain::html::escape(s)
}

const STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;margin:0;background:#f4f6f8;color:#222}\
main{max-width:960px;margin:0 auto;padding:16px}\
.card{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
.err{border-left:4px solid #d33}.muted{color:#667;font-size:13px}";

/// A plain page with the shared style (the buyer's return page when it cannot be verified).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        esc(title)
    )
}

/// Who is logged in, and what they may see.
#[derive(Debug, Clone)]
pub struct Who {
    /// The audit log's name for them: the user name, or `admin_password` for payhost.toml's.
    pub name: String,
    pub role: Role,
    /// An owner's merchants (an operator's is empty: every merchant).
    pub merchants: Vec<String>,
}

impl Who {
    pub fn operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether this merchant's pages and actions are theirs.
    pub fn sees(&self, merchant: &str) -> bool {
        self.operator() || self.merchants.iter().any(|m| m == merchant)
    }

    /// The merchants of their lists: None for every one.
    pub fn only(&self) -> Option<&[String]> {
        (!self.operator()).then_some(self.merchants.as_slice())
    }
}

/// A request within a session.
pub struct Ctx {
    pub who: Who,
    pub csrf: String,
    pub session: String,
    pub lang: Lang,
    /// This page's path and query with the other language.
    pub lang_url: String,
    pub flash: Option<Flash>,
    pub query: Vec<(String, String)>,
}

impl Ctx {
    pub fn q(&self, name: &str) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        self.lang.pick(zh, en)
    }

    /// What a refused form left: errors by field and the values typed.
    pub fn form_state(&self) -> (Value, Value, Value) {
        match &self.flash {
            Some(f) => (
                Value::from_serialize(&f.field_errors),
                Value::from_serialize(&f.typed),
                Value::from_serialize(&f.typed_lists),
            ),
            None => (Value::from(()), Value::from(()), Value::from(())),
        }
    }
}

/// What a page handler answers.
pub enum Page {
    /// A template and its values.
    View {
        template: &'static str,
        section: &'static str,
        values: Value,
    },
    /// A finished response (CSV, a redirect).
    Raw(Response<Body>),
    /// Not theirs or not there (never says which).
    NotFound,
    /// An operator's page, asked for by a shop owner.
    Forbidden,
}

/// How long a post's message waits for its page to be loaded (its redirect not followed: the
/// owner went elsewhere) before it is dropped.
const FLASH_WAITS_SECS: u64 = 600;

/// A page's address as a post's message names it: the path's segments, decoded, without the
/// query (a redirect's `%E8…` and the browser's own spelling of it are the same page).
fn page_of(location: &str) -> String {
    let path = location.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(super::percent_decode)
        .collect::<Vec<_>>()
        .join("/")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a post answers: the page to go to and what that page shows once (boxed: a message with
/// what was typed is large beside the other answers).
pub struct Posted {
    pub location: String,
    pub flash: Option<Box<Flash>>,
}

impl Posted {
    pub fn to(location: impl Into<String>, flash: Flash) -> Posted {
        Posted {
            location: location.into(),
            flash: Some(Box::new(flash)),
        }
    }
}

/// Answers for a post: NotFound/Forbidden as pages, else the redirect.
pub enum PostResult {
    Done(Posted),
    NotFound,
    Forbidden,
}

fn frame(app: &App, ctx: Option<&Ctx>, lang: Lang, lang_url: &str, section: &'static str) -> Frame {
    Frame {
        lang: lang.code(),
        lang_url: lang_url.to_owned(),
        csrf: ctx.map(|c| c.csrf.clone()).unwrap_or_default(),
        who: ctx.map(|c| WhoView {
            name: c.who.name.clone(),
            operator: c.who.operator(),
        }),
        section,
        zone: app.config.admin.time_zone.to_string(),
        zone_is_beijing: app.config.admin.time_zone.offset_min == 480,
        flash: ctx.and_then(|c| c.flash.as_ref()).map(Into::into),
    }
}

/// Renders a template, or a plain 500 naming the cause in the log only.
fn render(status: u16, template: &str, frame: &Frame, values: Value) -> Response<Body> {
    match view::render(template, frame, values) {
        Ok(body) => html(status, body, content_security_policy()),
        Err(e) => {
            tracing::error!(template, error = %e, "an admin template failed");
            html(
                500,
                page(
                    "payhost",
                    "<div class=\"card err\">内部错误，请查看 payhost 日志 / Internal error: see the payhost log.</div>",
                ),
                content_security_policy(),
            )
        }
    }
}

fn error_page(
    app: &App,
    ctx: Option<&Ctx>,
    lang: Lang,
    status: u16,
    (zh, en): (&str, &str),
    (mzh, men): (&str, &str),
) -> Response<Body> {
    let lang_url = ctx.map(|c| c.lang_url.clone()).unwrap_or_default();
    let error_id = match status {
        403 => "forbidden",
        404 => "not-found",
        429 => "too-many",
        _ => "error",
    };
    render(
        status,
        "error.html",
        &frame(app, ctx, lang, &lang_url, ""),
        minijinja::context! { heading => lang.pick(zh, en), message => lang.pick(mzh, men), error_id },
    )
}

fn not_found(app: &App, ctx: Option<&Ctx>, lang: Lang) -> Response<Body> {
    error_page(
        app,
        ctx,
        lang,
        404,
        ("找不到", "Not found"),
        (
            "没有这个页面，或它不属于你的商户。",
            "There is no such page, or it is not one of your merchants'.",
        ),
    )
}

/// A request's query, decoded.
fn query_of(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The language a request's page is in, from its `?lang=` or its cookie (no session read).
fn language_of(req: &Request<Incoming>) -> Lang {
    session::language(req, &query_of(req)).0
}

/// An admin path the router refuses before the admin reads it (a merchant id that is not one, a
/// path written another way than payhost's own): the admin's own 404 page, not the API's JSON.
pub fn path_not_found(app: &App, req: &Request<Incoming>) -> Response<Body> {
    not_found(app, None, language_of(req))
}

/// An address over `[admin]`'s request limit: a page that says to wait, with `Retry-After`.
pub fn too_many_requests(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let mut r = error_page(
        app,
        None,
        language_of(req),
        429,
        ("请求太频繁", "Too many requests"),
        (
            "这个地址在短时间内打开了太多管理页面，请稍等几秒再刷新。",
            "This address opened too many admin pages in a short time; wait a few seconds and reload.",
        ),
    );
    r.headers_mut()
        .insert("retry-after", http::HeaderValue::from_static("1"));
    r
}

/// A posted form that could not be read (too large, too slow, malformed): its status, said as
/// a page; nothing was done.
fn unreadable_form(app: &App, lang: Lang, e: &ApiError) -> Response<Body> {
    let (heading, message) = match e.status {
        413 => (
            ("提交的内容太大", "Too large"),
            (
                "表单内容超过 256 KiB，没有处理。请返回上一页检查后再提交。",
                "The form is larger than 256 KiB; nothing was done. Go back, check it and submit it again.",
            ),
        ),
        408 => (
            ("提交超时", "Too slow"),
            (
                "表单内容没有按时送达，没有处理。请返回上一页再提交一次。",
                "The form did not arrive in time; nothing was done. Go back and submit it again.",
            ),
        ),
        _ => (
            ("无法读取提交的内容", "Unreadable form"),
            (
                "表单内容无法读取，没有处理。请返回上一页再提交一次。",
                "The form could not be read; nothing was done. Go back and submit it again.",
            ),
        ),
    };
    error_page(app, None, lang, e.status, heading, message)
}

/// A form whose page is older than the session (its token is not this session's): 403, nothing
/// done, and a link back to the page to fill it in again.
fn stale_form(app: &App, ctx: &Ctx, back: &str) -> Response<Body> {
    let lang = ctx.lang;
    // The post's address is no page: the language switch leads to the page it came from.
    let sep = if back.contains('?') { '&' } else { '?' };
    let other = if lang == Lang::En { "zh" } else { "en" };
    let lang_url = format!("{back}{sep}lang={other}");
    render(
        403,
        "error.html",
        &frame(app, Some(ctx), lang, &lang_url, ""),
        minijinja::context! {
            heading => lang.pick("页面已过期", "This page has expired"),
            message => lang.pick(
                "刚才提交的操作没有执行（没有退款，也没有保存任何修改）：这个页面是在你退出或重新登录之前打开的。请回到原页面，重新填写后再提交。",
                "What you submitted was not done (no refund, nothing saved): the page was opened before you logged out or in again. Go back to it, fill it in again and submit.",
            ),
            error_id => "stale-form",
            back,
            back_text => lang.pick("回到原页面", "Back to the page"),
        },
    )
}

fn forbidden(app: &App, ctx: Option<&Ctx>, lang: Lang, why: (&str, &str)) -> Response<Body> {
    error_page(app, ctx, lang, 403, ("不允许", "Forbidden"), why)
}

const OPERATORS_ONLY: (&str, &str) = (
    "只有运营者可以打开这个页面。",
    "Only an operator may open this page.",
);

fn see_other(location: &str) -> Response<Body> {
    Response::builder()
        .status(303)
        .header("location", location)
        .body(Body::default())
        .expect("valid response")
}

pub async fn handle(
    app: &Arc<App>,
    ip: IpAddr,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    // One spelling of each path: the router answers another one (`//admin`, `/admin/`) 404
    // before it comes here, and links built from the path (the language switch) must never
    // start `//`, which a browser takes for another host.
    let path = format!("/{}", super::router::segments(req.uri().path()).join("/"));
    let method = req.method().clone();
    let query = query_of(&req);
    let (lang, set_lang) = session::language(&req, &query);
    let lang_url = {
        let other = if lang == Lang::En { "zh" } else { "en" };
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter().filter(|(k, _)| k != "lang"))
            .append_pair("lang", other)
            .finish();
        format!("{}?{q}", if path.is_empty() { "/admin" } else { &path })
    };
    let mut response = route(app, ip, remote, req, path, method, query, lang, lang_url).await;
    if let Some(cookie) = set_lang {
        if let Ok(v) = http::HeaderValue::from_str(&cookie) {
            response.headers_mut().append("set-cookie", v);
        }
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn route(
    app: &Arc<App>,
    ip: IpAddr,
    remote: SocketAddr,
    req: Request<Incoming>,
    path: String,
    method: Method,
    query: Vec<(String, String)>,
    lang: Lang,
    lang_url: String,
) -> Response<Body> {
    if method == Method::POST && !session::same_origin(app, &req) {
        let (zh, en) = session::cross_site_refusal(app, &req);
        return forbidden(app, None, lang, (&zh, &en));
    }
    if method == Method::POST && path == "/admin/login" {
        return session::login(app, ip, remote, req, lang, &lang_url).await;
    }
    let current = session::current(app, &req).await;
    if path == "/admin/logout" {
        return session::logout(app, req, current.as_ref().map(|c| &c.hash)).await;
    }
    let Some(session::Current {
        hash: sid,
        state,
        seal_key,
    }) = current
    else {
        // A cookie that no longer names a session (expired, or ended elsewhere), or a post
        // without one: the owner was working, so the page says why it asks to log in again, and
        // the login returns to the page they were on (never replaying the post).
        let expired = session::has_session_cookie(&req) || method == Method::POST;
        let status = if path == "/admin" && !expired {
            200
        } else {
            401
        };
        let next = session::return_to(&path, &method, &query);
        let notice = expired.then(|| lang.pick(session::EXPIRED.0, session::EXPIRED.1));
        // A post's address is no page: the language switch leads to the page it came from.
        let lang_url = if method == Method::POST {
            let page = if next.is_empty() { "/admin" } else { &next };
            let sep = if page.contains('?') { '&' } else { '?' };
            let other = if lang == Lang::En { "zh" } else { "en" };
            format!("{page}{sep}lang={other}")
        } else {
            lang_url
        };
        return session::login_page(
            app,
            status,
            session::LoginView {
                notice,
                next: &next,
                ..Default::default()
            },
            lang,
            &lang_url,
        )
        .await;
    };
    let Some(who) = session::who(app, &state).await else {
        // The user was removed: the session is worth nothing.
        let _ = app.store.delete_session(&sid).await;
        return session::login_page(app, 401, session::LoginView::default(), lang, &lang_url).await;
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(super::percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if method == Method::POST {
        let form = match session::form_of(req).await {
            Ok(form) => form,
            Err(e) => return unreadable_form(app, lang, &e),
        };
        let ctx = Ctx {
            who,
            csrf: state.csrf.clone(),
            session: sid.clone(),
            lang,
            lang_url,
            flash: None,
            query,
        };
        if !session::csrf_ok(&form, &state.csrf) {
            // A form from a page older than this login (logged out and in again in another
            // tab): nothing was done, said in the owner's words, with the way back to that page.
            tracing::warn!(%ip, "admin post without a valid CSRF token refused");
            let back = session::return_to(&path, &method, &ctx.query);
            let back = if back.is_empty() {
                "/admin".to_owned()
            } else {
                back
            };
            return stale_form(app, &ctx, &back);
        }
        let result = post(app, &ctx, &segs, &form).await;
        return match result {
            PostResult::Done(mut p) => {
                if let Some(f) = &mut p.flash {
                    f.page = Some(page_of(&p.location));
                    f.kept_at = now_secs();
                    shown_once::seal_flash(f, Some(&seal_key), lang);
                    let text = serde_json::to_string(f).unwrap_or_default();
                    if let Err(e) = app.store.set_session_flash(&sid, &text).await {
                        tracing::error!(error = %e, "cannot keep the admin page's message");
                    }
                }
                see_other(&p.location)
            }
            PostResult::NotFound => not_found(app, Some(&ctx), lang),
            PostResult::Forbidden => forbidden(app, Some(&ctx), lang, OPERATORS_ONLY),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return not_found(app, None, lang);
    }
    // The message of the post that led here, shown once: on the page it is for. Another page
    // (a second tab loaded meanwhile) puts it back for that page; one older than
    // `FLASH_WAITS_SECS` is dropped.
    let mut flash = None;
    if let Ok(Some(text)) = app.store.take_session_flash(&sid).await {
        if let Ok(mut f) = serde_json::from_str::<Flash>(&text) {
            let fresh = now_secs().saturating_sub(f.kept_at) <= FLASH_WAITS_SECS;
            let here = f.page.as_deref().is_none_or(|p| p == page_of(&path));
            if here {
                shown_once::open_flash(&mut f, Some(&seal_key), lang);
                flash = Some(f);
            } else if fresh {
                if let Err(e) = app.store.restore_session_flash(&sid, &text).await {
                    tracing::error!(error = %e, "cannot keep the admin page's message for its page");
                }
            }
        }
    }
    let ctx = Ctx {
        who,
        csrf: state.csrf,
        session: sid,
        lang,
        lang_url,
        flash,
        query,
    };
    // The ledger's CSV export, for this session's merchants (streamed by the server); a refusal
    // (another merchant's, a bad filter) is a page, as everywhere in the admin.
    let export = match segs.as_slice() {
        ["admin", "payments.csv"] => Some(
            payments::csv_filter(&ctx, &req)
                .map(|f| super::ledger::csv_export(f, req.uri().query()))
                .map_err(|e| (e, ("支付", "payments"))),
        ),
        ["admin", "refunds.csv"] => Some(
            refund_list::csv_filter(&ctx, &req)
                .map(|f| super::ledger::refunds_csv_export(f, req.uri().query(), true))
                .map_err(|e| (e, ("退款", "refunds"))),
        ),
        _ => None,
    };
    if let ["admin", "audit.csv"] = segs.as_slice() {
        return match audit::csv_query(&ctx) {
            Ok(q) => super::ledger::audit_csv_export(q),
            // Already in the page's language.
            Err((status, message)) => error_page(
                app,
                Some(&ctx),
                lang,
                status,
                ("无法导出", "Cannot export"),
                (&message, &message),
            ),
        };
    }
    if let Some(export) = export {
        return match export {
            Ok(response) => response,
            Err((e, what)) => {
                let (zh, en) = payments::csv_refusal(&ctx, &e, what);
                error_page(
                    app,
                    Some(&ctx),
                    lang,
                    e.status,
                    ("无法导出", "Cannot export"),
                    (&zh, &en),
                )
            }
        };
    }
    let page = get(app, &ctx, &segs).await;
    match page {
        Page::View {
            template,
            section,
            values,
        } => render(
            200,
            template,
            &frame(app, Some(&ctx), lang, &ctx.lang_url, section),
            values,
        ),
        Page::Raw(r) => r,
        Page::NotFound => not_found(app, Some(&ctx), lang),
        Page::Forbidden => forbidden(app, Some(&ctx), lang, OPERATORS_ONLY),
    }
}

async fn get(app: &Arc<App>, ctx: &Ctx, segs: &[&str]) -> Page {
    match segs {
        ["admin"] => {
            // The older page's address of a merchant.
            let m = ctx.q("m");
            if !m.is_empty() {
                let mut to = format!("/admin/merchants/{}", enc(m));
                if !ctx.q("plugin").is_empty() {
                    to.push_str(&format!("?plugin={}", enc(ctx.q("plugin"))));
                }
                return Page::Raw(see_other(&to));
            }
            payments::overview(app, ctx).await
        }
        ["admin", "payments"] => payments::list(app, ctx).await,
        ["admin", "refunds"] => refund_list::page(app, ctx).await,
        ["admin", "reconcile"] => reconcile::page(app, ctx).await,
        ["admin", "reconcile.csv"] => reconcile::csv(app, ctx).await,
        ["admin", "merchants"] => merchants::list(app, ctx).await,
        ["admin", "merchants", id] => merchants::page(app, ctx, id).await,
        ["admin", "merchants", id, "payments", no] => payments::one(app, ctx, id, no).await,
        ["admin", "webhooks"] => merchants::dead_letters(app, ctx).await,
        ["admin", "users"] => users::list(app, ctx).await,
        ["admin", "audit"] => audit::page(app, ctx).await,
        _ => Page::NotFound,
    }
}

async fn post(app: &Arc<App>, ctx: &Ctx, segs: &[&str], form: &Form) -> PostResult {
    match segs {
        ["admin", "merchants"] => merchants::add(app, ctx, form).await,
        ["admin", "slots"] => merchants::connect_shop(app, ctx, form).await,
        ["admin", "merchants", id] => merchants::save(app, ctx, id, form).await,
        ["admin", "merchants", id, "test"] => merchants::test_connection(app, ctx, id).await,
        ["admin", "merchants", id, "tokens"] => merchants::new_token(app, ctx, id, form).await,
        ["admin", "merchants", id, "tokens", tid, "revoke"] => {
            merchants::revoke_token(app, ctx, id, tid, form).await
        }
        ["admin", "merchants", id, "webhooks", wid, "resend"] => {
            merchants::resend(app, ctx, id, wid, form).await
        }
        ["admin", "webhooks", "resend-all"] => merchants::resend_all(app, ctx, form).await,
        ["admin", "webhooks", "retry-now"] => merchants::retry_now(app, ctx, form).await,
        ["admin", "merchants", id, "payments", no, "sync"] => {
            payments::sync(app, ctx, id, no).await
        }
        ["admin", "merchants", id, "payments", no, "refunds"] => {
            payments::refund(app, ctx, id, no, form).await
        }
        ["admin", "merchants", id, "payments", no, "refunds", rid, "abandon"] => {
            payments::abandon_refund(app, ctx, id, no, rid, form).await
        }
        ["admin", "merchants", id, "payments", no, "close"] => {
            payments::close(app, ctx, id, no, form).await
        }
        ["admin", "merchants", id, "payments", no, "review"] => {
            payments::clear_review(app, ctx, id, no, form).await
        }
        ["admin", "users"] => users::add(app, ctx, form).await,
        ["admin", "users", name, "remove"] => users::remove(app, ctx, name).await,
        _ => PostResult::NotFound,
    }
}

/// A posted form's fields.
pub type Form = Vec<(String, String)>;

pub fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Percent-encodes one path segment or query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Writes an audit line; a failure is logged (the action itself is done).
pub async fn audit(app: &App, who: &Who, action: &str, merchant: Option<&str>, detail: &str) {
    if let Err(e) = app
        .store
        .record_audit(&who.name, action, merchant, detail)
        .await
    {
        tracing::error!(error = %e, action, "cannot write the admin audit log");
    }
}

/// Money in fen as `12.34`.
pub fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}
