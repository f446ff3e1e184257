//! Logging in and out, the session cookie, CSRF and Origin checks, and the page language.

use super::view::Lang;
use super::{frame, Who};
use crate::http::{read_body, Body, MAX_API_BODY};
use crate::service::{ApiError, App};
use crate::store::admin::{AdminSession, Role};
use http::{Request, Response};
use hyper::body::Incoming;
use minijinja::context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

const COOKIE: &str = "payhost_admin";
const LANG_COOKIE: &str = "payhost_lang";
/// The audit log's name for whoever logs in with payhost.toml's `admin_password_hash`.
pub const PASSWORD_OPERATOR: &str = "admin_password";

/// Every non-empty value of the cookie `name`, in the order the request gives them.
fn cookies<'a>(req: &'a Request<Incoming>, name: &str) -> Vec<&'a str> {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
        .collect()
}

/// The first non-empty value of the cookie `name`.
fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    cookies(req, name).into_iter().next()
}

/// The most session cookies a request's are tried of: a browser sends one, or a second another
/// site of the domain planted (a longer path's comes first).
const SESSION_COOKIES_TRIED: usize = 4;

/// The page language: `?lang=` (kept in a cookie), else the cookie, else Chinese.
pub fn language(req: &Request<Incoming>, query: &[(String, String)]) -> (Lang, Option<String>) {
    let asked = query
        .iter()
        .find(|(k, _)| k == "lang")
        .map(|(_, v)| v.as_str());
    let lang_of = |v: &str| if v == "en" { Lang::En } else { Lang::Zh };
    match asked {
        Some(v) => {
            let lang = lang_of(v);
            (
                lang,
                Some(format!(
                    "{LANG_COOKIE}={}; Path=/admin; Max-Age=31536000; SameSite=Lax",
                    lang.code()
                )),
            )
        }
        None => (cookie(req, LANG_COOKIE).map_or(Lang::Zh, lang_of), None),
    }
}

/// A request's live session: its id hash, its state, and the key that seals its values shown
/// once (shown_once.rs; from the cookie, which the store keeps only as a hash).
pub struct Current {
    pub hash: String,
    pub state: AdminSession,
    pub seal_key: super::shown_once::SealKey,
}

/// The session of a request, if exactly one of its session cookies names a live one. A cookie
/// another site of the domain planted with a longer path comes first: a dead one must not hide
/// the real session, and a live one (the planter's own login) must not have the owner work in
/// the planter's session unknowingly, so two live ones are no session at all.
pub async fn current(app: &App, req: &Request<Incoming>) -> Option<Current> {
    let now = crate::store::now_ms();
    let mut found = None;
    for id in cookies(req, COOKIE).into_iter().take(SESSION_COOKIES_TRIED) {
        let hash = crate::auth::token_hash(id);
        if let Some(s) = app.store.admin_session(&hash, now).await.ok().flatten() {
            if found.is_some() {
                static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(60_000);
                if let Some(unsaid) = SAY.allow() {
                    tracing::warn!(
                        unsaid,
                        "an admin request carried two live session cookies (one planted by another site of the domain?): treated as logged out"
                    );
                }
                return None;
            }
            found = Some((id, hash, s));
        }
    }
    let (id, hash, s) = found?;
    // In use: its end moves on. Written once a minute at most (half the idle time when that is
    // shorter), not on every page.
    let end = session_end(&app.config.admin, s.created_ms, now);
    let every = (app.config.admin.session_idle_s as i64 * 500).min(60_000);
    if end - s.expires_ms >= every {
        if let Err(e) = app.store.extend_admin_session(&hash, now, end).await {
            tracing::warn!(error = %e, "cannot extend an admin session");
        }
    }
    Some(Current {
        hash,
        state: s,
        seal_key: super::shown_once::SealKey::of_cookie(id),
    })
}

/// When a session created at `created_ms` and used at `now_ms` ends: `[admin] session_idle_s`
/// after this use, and never later than `session_ttl_s` after the login.
fn session_end(admin: &crate::config::AdminConfig, created_ms: i64, now_ms: i64) -> i64 {
    let idle = now_ms.saturating_add(admin.session_idle_s as i64 * 1000);
    idle.min(created_ms.saturating_add(admin.session_ttl_s as i64 * 1000))
}

/// The end of a main-password session's CSRF token: `.` and 16 hex digits of the configured
/// `admin_password_hash`'s sha256. None when no hash is configured (the login is off).
fn main_password_mark(app: &App) -> Option<String> {
    let hash = app.config.admin_password_hash.as_ref()?;
    let digest = crate::manifest::sha256_hex(hash.expose().as_bytes());
    Some(format!(".{}", &digest[..16]))
}

/// Who a session belongs to; None when its user no longer exists, or when it was made with
/// payhost.toml's password and that password was changed or removed since (rotating a leaked
/// password ends the sessions made with it).
pub async fn who(app: &App, s: &AdminSession) -> Option<Who> {
    match &s.user {
        None if !main_password_mark(app).is_some_and(|mark| s.csrf.ends_with(&mark)) => None,
        None => Some(Who {
            name: PASSWORD_OPERATOR.into(),
            role: Role::Operator,
            merchants: Vec::new(),
        }),
        Some(name) => {
            let u = app.store.admin_user(name).await.ok().flatten()?;
            Some(Who {
                name: u.name,
                role: u.role,
                merchants: u.merchants,
            })
        }
    }
}

/// The origin browsers reach the admin page on: `public_url`'s (the request's `Host` says
/// nothing behind a proxy, and a client may write it). None only for an embedder that set no
/// `public_url`.
fn public_origin(app: &App) -> Option<String> {
    crate::config::origin_of(&app.config.public_url)
}

/// Whether the session cookie gets `Secure`: `public_url` is https, or a trusted proxy (the peer
/// is in `trusted_proxies`) says `X-Forwarded-Proto: https` (never believed from anyone else).
fn over_https(app: &App, remote: SocketAddr, req: &Request<Incoming>) -> bool {
    if public_origin(app).is_some_and(|o| o.starts_with("https://")) {
        return true;
    }
    let from_proxy = app
        .config
        .trusted_proxies
        .iter()
        .any(|c| c.contains(remote.ip()));
    // The value nearest to payhost is the trusted proxy's own: a proxy that appends rather than
    // replaces leaves whatever the client wrote before it.
    from_proxy
        && req
            .headers()
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Refuses posts from other sites: an `Origin` must be `public_url`'s origin (scheme, host and
/// port; `null`, sent by sandboxed frames and some redirects, is refused). Without a
/// `public_url` (embedders only), it must name the request's `Host`. Browsers send Origin with
/// every POST; without one, a browser's `Sec-Fetch-Site` saying another site, or a `Referer`
/// of another origin, refuses it too (the login form has no CSRF token to fall back on). Other
/// clients may send none of them and rely on the CSRF token.
pub fn same_origin(app: &App, req: &Request<Incoming>) -> bool {
    let headers = req.headers();
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("cross-site").to_ascii_lowercase());
    if matches!(fetch_site.as_deref(), Some("cross-site" | "same-site")) {
        return false;
    }
    let referer_origin;
    let origin = match headers.get("origin") {
        Some(o) => o.to_str().unwrap_or(""),
        None => match headers.get("referer") {
            // A Referer is a whole URL: its origin stands in for the missing Origin.
            Some(r) => match r.to_str().ok().and_then(crate::config::origin_of) {
                Some(o) => {
                    referer_origin = o;
                    referer_origin.as_str()
                }
                None => return false,
            },
            None => return true,
        },
    };
    match public_origin(app) {
        // A bare origin (no path), the same scheme, host and port. A page opened on this
        // machine by another loopback name (`localhost` for the demo's `127.0.0.1`) is the same
        // site too: no other site can make a browser send a loopback Origin.
        Some(public) => {
            let bare = origin
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.contains(['/', '?', '#', '@']));
            let given = crate::config::origin_of(origin);
            bare && (given.as_deref() == Some(public.as_str())
                || given.is_some_and(|g| same_loopback_site(&g, &public)))
        }
        None => {
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            origin.split_once("://").map(|(_, h)| h) == Some(host)
        }
    }
}

/// Why a post [`same_origin`] refused was refused, in the owner's words. Most often the page was
/// opened at another address than `public_url` (an SSH tunnel, the server's IP before the proxy
/// is set up): then the page says which address to use, and the log says so too (once a second).
pub fn cross_site_refusal(app: &App, req: &Request<Incoming>) -> (String, String) {
    let origin = req
        .headers()
        .get("origin")
        .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned())
        .unwrap_or_default();
    static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(1_000);
    if let Some(unsaid) = SAY.allow() {
        tracing::warn!(origin = %crate::log_limit::clean(&origin), public_url = %app.config.public_url, unsaid, "refused an admin post from another origin than public_url");
    }
    match public_origin(app) {
        // The caller's Origin is not repeated: it may be another site's page posting here, and
        // "set public_url to it" would be that site's advice. The log has it for the operator.
        Some(public) if crate::config::origin_of(&origin).is_some() => (
            format!("跨站表单提交被拒绝：表单不是从 payhost 的地址 {public} 提交的。请从 {public}/admin 打开管理页面；如果你确实从别的地址访问 payhost（SSH 隧道、代理），请运营者查看 payhost 日志并核对 payhost.toml 的 public_url（payhost demo 用 --public-url 指定）。"),
            format!("Cross-site form post refused: the form was not posted from payhost's address {public}. Open the admin page at {public}/admin; if you do reach payhost at another address (an SSH tunnel, a proxy), the operator finds it in payhost's log and checks public_url in payhost.toml (payhost demo: --public-url)."),
        ),
        _ => (
            "跨站表单提交被拒绝。".to_owned(),
            "Cross-site form post refused.".to_owned(),
        ),
    }
}

/// Whether two origins are this machine's usual names (`localhost`, `127.0.0.1`, `[::1]`)
/// under the same scheme and port: the same payhost reached by another loopback name. Not all
/// of 127.0.0.0/8: another service may listen on 127.0.0.2 at the same port.
fn same_loopback_site(a: &str, b: &str) -> bool {
    let parts = |o: &str| {
        let uri = o.parse::<http::Uri>().ok()?;
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        let loopback = host == "localhost"
            || host.parse::<IpAddr>().is_ok_and(|ip| {
                ip == IpAddr::from([127, 0, 0, 1])
                    || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            });
        loopback.then(|| (uri.scheme_str().map(str::to_owned), uri.port_u16()))
    };
    parts(a).is_some_and(|pa| parts(b) == Some(pa))
}

pub fn csrf_ok(form: &[(String, String)], expected: &str) -> bool {
    let given = super::field(form, "csrf");
    !expected.is_empty()
        && given.len() == expected.len()
        && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A posted form's fields; a body too large (413), too slow (408) or unreadable (400) is an
/// error the caller shows, never an empty form (which would read as a wrong password or a
/// missing CSRF token).
pub async fn form_of(req: Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}

/// Whether anyone can log in: an admin user exists or payhost.toml has a password hash.
async fn login_enabled(app: &App) -> bool {
    app.config.admin_password_hash.is_some()
        || app.store.admin_users().await.is_ok_and(|u| !u.is_empty())
}

/// What the login page shows besides its form.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoginView<'a> {
    /// Why the last login failed.
    pub error: Option<&'a str>,
    /// Why the page asks to log in (the session expired).
    pub notice: Option<&'a str>,
    /// The user name typed.
    pub user: &'a str,
    /// The page to return to once logged in ([`safe_next`]), or "" for the overview.
    pub next: &'a str,
}

/// What the login page says when a session ended while the owner was working.
pub const EXPIRED: (&str, &str) = (
    "登录已过期，请重新登录。登录后会回到刚才的页面；刚才提交的操作没有执行，请重新提交。",
    "Your login has expired: log in again. You will be taken back to the page you were on; what you just submitted was not done, so submit it again.",
);

/// Whether the request carries a session cookie (live or not).
pub fn has_session_cookie(req: &Request<Incoming>) -> bool {
    cookie(req, COOKIE).is_some()
}

/// `next` if it is a page of the admin on this site to return to after logging in: a relative
/// path starting with one `/` under `/admin`, with no `//`, no `\` and no control character
/// (anything else could lead the browser to another site: `//evil.example`, `/\evil.example`).
pub fn safe_next(next: &str) -> Option<&str> {
    let under_admin =
        next == "/admin" || next.starts_with("/admin/") || next.starts_with("/admin?");
    (under_admin
        && next.len() <= 2048
        && !next.contains("//")
        && !next.contains('\\')
        // Dot segments (`/admin/../../x`), also percent-encoded: a browser resolves them out of
        // the admin.
        && !next
            .split(['/', '?', '#'])
            .any(|seg| {
                let seg = seg.to_ascii_lowercase().replace("%2e", ".");
                seg == "." || seg == ".."
            })
        && !next.chars().any(char::is_control)
        && !next.starts_with("/admin/login")
        && !next.starts_with("/admin/logout"))
    .then_some(next)
}

/// The page a request was made from, to return to after logging in: a page's own address (its
/// query without `lang`), or for a post the page its form is on (the post is never replayed).
/// "" for the overview, or when there is no safe one.
pub fn return_to(path: &str, method: &http::Method, query: &[(String, String)]) -> String {
    let page = if method == http::Method::POST {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let keep = match segs.as_slice() {
            ["admin", "merchants", _, "payments", _, ..] => 5,
            ["admin", "merchants", _, ..] => 3,
            ["admin", "users" | "webhooks" | "merchants", ..] => 2,
            ["admin", "slots", ..] => return "/admin/merchants".to_owned(),
            _ => 1,
        };
        format!("/{}", segs[..keep.min(segs.len())].join("/"))
    } else {
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter().filter(|(k, _)| k != "lang"))
            .finish();
        if q.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{q}")
        }
    };
    match safe_next(&page) {
        Some(p) if p != "/admin" => p.to_owned(),
        _ => String::new(),
    }
}

pub async fn login_page(
    app: &App,
    status: u16,
    view: LoginView<'_>,
    lang: Lang,
    lang_url: &str,
) -> Response<Body> {
    super::render(
        status,
        "login.html",
        &frame(app, None, lang, lang_url, ""),
        context! {
            error => view.error, notice => view.notice, user => view.user, next => view.next,
            enabled => login_enabled(app).await,
        },
    )
}

pub async fn logout(
    app: &Arc<App>,
    req: Request<Incoming>,
    session: Option<&String>,
) -> Response<Body> {
    // Only the page's logout form (a post with the session's CSRF token) logs out: a GET, which
    // any same-site page can make the browser send, leads back to the admin page, where the
    // button is.
    if req.method() != http::Method::POST {
        return Response::builder()
            .status(303)
            .header("location", "/admin")
            .body(Body::default())
            .expect("valid response");
    }
    // Revoked server-side: the old cookie is worthless even if it was copied.
    if let Some(hash) = session {
        let live = app
            .store
            .admin_session(hash, crate::store::now_ms())
            .await
            .ok()
            .flatten();
        let csrf = live.as_ref().map(|s| s.csrf.clone()).unwrap_or_default();
        let allowed = form_of(req).await.is_ok_and(|form| csrf_ok(&form, &csrf));
        // A session that is gone already (expired, its user removed, its password rotated):
        // its cookie is cleared below, as a logout's.
        if live.is_some() && !allowed {
            // Not this session's form (a page of an older login): nothing is done, and the
            // cookie stays, so the page shows the owner still logged in rather than a logout
            // that left the session alive on the server.
            return Response::builder()
                .status(303)
                .header("location", "/admin")
                .body(Body::default())
                .expect("valid response");
        }
        if let Err(e) = app.store.delete_session(hash).await {
            tracing::error!(error = %e, "cannot delete an admin session");
        }
        tracing::info!("admin logged out");
    }
    Response::builder()
        .status(303)
        .header("location", "/admin")
        .header(
            "set-cookie",
            format!("{COOKIE}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict"),
        )
        .body(Body::default())
        .expect("valid response")
}

pub async fn login(
    app: &Arc<App>,
    ip: IpAddr,
    remote: SocketAddr,
    req: Request<Incoming>,
    lang: Lang,
    lang_url: &str,
) -> Response<Body> {
    let secure_cookie = over_https(app, remote, &req);
    // Every value of the cookie: another one (a related site's, a longer path's) may come first.
    let device_cookie =
        Some(cookies(&req, super::device::COOKIE).join("~")).filter(|v| !v.is_empty());
    let form = match form_of(req).await {
        Ok(form) => form,
        // Not an attempt: nothing was checked, nothing counts against the address.
        Err(e) => return super::unreadable_form(app, lang, &e),
    };
    let next = safe_next(super::field(&form, "next")).unwrap_or_default();
    let view = LoginView {
        next,
        ..LoginView::default()
    };
    if !login_enabled(app).await {
        return login_page(app, 403, view, lang, lang_url).await;
    }
    // Failures count per address (an IPv6 caller per /64), each attempt from its start.
    let key = crate::proxy::limit_key(ip);
    let attempt = match app.guards.logins.attempt(key) {
        Ok(attempt) => attempt,
        Err(wait) => {
            // Once a second at most, with how many went unsaid: a guesser writes no log of its own.
            static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(1_000);
            if let Some(unsaid) = SAY.allow() {
                tracing::warn!(%ip, unsaid, "admin login throttled");
            }
            app.metrics.rate_limited.inc();
            return throttled(app, view, lang, lang_url, wait, false).await;
        }
    };
    let name = super::field(&form, "user").trim().to_owned();
    let given = super::field(&form, "password").to_owned();
    // A named user's hash, or payhost.toml's for an empty name. An unknown name is checked
    // against a hash all the same, so its answer takes as long as a wrong password's.
    let (hash, user) = if name.is_empty() {
        (
            app.config
                .admin_password_hash
                .as_ref()
                .map(|h| h.expose().to_owned()),
            None,
        )
    } else {
        match app.store.admin_user(&name).await.ok().flatten() {
            Some(u) => (Some(u.password_hash), Some(u.name)),
            None => (None, None),
        }
    };
    // Per account too: a browser that logged in to it before counts on its own; any other
    // counts with every other browser, so guessers from many addresses lock out only those.
    let device = hash
        .as_deref()
        .and_then(|h| super::device::known(device_cookie.as_deref(), &name, h));
    let gate = match &device {
        Some(nonce) => app.guards.device_logins.attempt(nonce.clone()),
        // Keyed by the name's digest: a name is whatever the form says, up to its size limit.
        None => app
            .guards
            .account_logins
            .attempt(crate::auth::token_hash(&name)),
    };
    let gate = match gate {
        Ok(gate) => gate,
        Err(wait) => {
            // Once a minute at most: the owner learns which account is being guessed at.
            static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(60_000);
            if let Some(unsaid) = SAY.allow() {
                tracing::warn!(
                    account = if name.is_empty() {
                        PASSWORD_OPERATOR
                    } else {
                        name.as_str()
                    },
                    from_a_known_browser = device.is_some(),
                    unsaid,
                    "admin logins to one account refused: too many failures"
                );
            }
            app.metrics.rate_limited.inc();
            // Nothing was checked: not a failure of this address (a colleague's browser behind
            // the same address, locked out of the account, must not use up the owner's).
            app.guards.logins.succeeded(attempt);
            let view = LoginView {
                user: &name,
                ..view
            };
            return throttled(app, view, lang, lang_url, wait, device.is_none()).await;
        }
    };
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
    // The device cookie's key, kept for the answer to a password that matches.
    let device_key = known.then(|| hash.clone());
    // argon2 takes tens of milliseconds and ≈ 19 MiB: off the async workers, a few at once.
    let Some(ok) = crate::auth::verify_password_limited(given, hash, device.is_some()).await else {
        // Nothing was checked: not a failed guess (others keeping the checks busy must not lock
        // the owner out).
        app.guards.logins.succeeded(attempt);
        gate_succeeded(app, device.is_some(), gate);
        let msg = lang.pick(
            "登录的人太多，请稍后再试",
            "Too many logins at once: try again shortly",
        );
        let view = LoginView {
            error: Some(msg),
            user: &name,
            ..view
        };
        let mut r = login_page(app, 503, view, lang, lang_url).await;
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
        return r;
    };
    let ok = ok && known;
    if !ok {
        // The attempt stays counted as a failure.
        static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(1_000);
        if let Some(unsaid) = SAY.allow() {
            tracing::warn!(%ip, unsaid, "admin login refused");
        }
        let msg = lang.pick("用户名或密码不正确", "Wrong user name or password");
        let view = LoginView {
            error: Some(msg),
            user: &name,
            ..view
        };
        return login_page(app, 401, view, lang, lang_url).await;
    }
    app.guards.logins.succeeded(attempt);
    gate_succeeded(app, device.is_some(), gate);
    let id = crate::auth::random_token();
    // A session of payhost.toml's password carries which password it was made with (see
    // `main_password_mark`): a new or removed hash ends it.
    let csrf = match &user {
        None => format!(
            "{}{}",
            crate::auth::random_token(),
            main_password_mark(app).unwrap_or_default()
        ),
        Some(_) => crate::auth::random_token(),
    };
    let ttl = app.config.admin.session_ttl_s;
    let now = crate::store::now_ms();
    if let Err(e) = app
        .store
        .create_user_session(
            &crate::auth::token_hash(&id),
            &csrf,
            session_end(&app.config.admin, now, now),
            user.as_deref(),
        )
        .await
    {
        tracing::error!(error = %e, "cannot store an admin session");
        return login_page(
            app,
            500,
            LoginView {
                error: Some(lang.pick(
                    "内部错误，请查看 payhost 日志",
                    "internal error; see the payhost log",
                )),
                user: &name,
                ..view
            },
            lang,
            lang_url,
        )
        .await;
    }
    tracing::info!(%ip, user = user.as_deref().unwrap_or(PASSWORD_OPERATOR), "admin logged in");
    // In the audit log too: a shop owner sees when and from where their account was used.
    let who = user.as_deref().unwrap_or(PASSWORD_OPERATOR);
    let new_browser = if device.is_some() {
        ""
    } else {
        super::words::NEW_BROWSER
    };
    if let Err(e) = app
        .store
        .record_audit(who, "login", None, &format!("from {ip}{new_browser}"))
        .await
    {
        tracing::error!(error = %e, "cannot write the admin audit log");
    }
    let mut c = format!("{COOKIE}={id}; Path=/admin; Max-Age={ttl}; HttpOnly; SameSite=Strict");
    if secure_cookie {
        c.push_str("; Secure");
    }
    let mut r = Response::builder()
        .status(303)
        .header("location", if next.is_empty() { "/admin" } else { next })
        .header("set-cookie", c);
    // The session's cookie first (clients that read one Set-Cookie take it), then this
    // browser remembered for the account.
    if let Some(v) =
        device_key.and_then(|key| super::device::after_login(device_cookie.as_deref(), &name, &key))
    {
        r = r.header("set-cookie", super::device::set_cookie(&v, secure_cookie));
    }
    r.body(Body::default()).expect("valid response")
}

/// The login page answering 429 with `Retry-After: wait`: too many failures from this address or
/// this browser, or (`account`) at this account from browsers it has never seen.
async fn throttled(
    app: &App,
    view: LoginView<'_>,
    lang: Lang,
    lang_url: &str,
    wait: u64,
    account: bool,
) -> Response<Body> {
    let why = if account {
        lang.pick(
            "这个账号的登录失败次数过多。请在以前登录过的浏览器上登录，或在",
            "Too many failed logins to this account. Log in from a browser you logged in with before, or try again in",
        )
    } else {
        lang.pick(
            "登录失败次数过多，请在",
            "Too many failed logins: try again in",
        )
    };
    let msg = format!("{why} {wait} {}", lang.pick("秒后再试", "s"));
    let view = LoginView {
        error: Some(&msg),
        ..view
    };
    let mut r = login_page(app, 429, view, lang, lang_url).await;
    r.headers_mut()
        .insert("retry-after", http::HeaderValue::from(wait));
    r
}

/// Takes back the per-account (or per-device) count of an attempt that was not a wrong guess.
fn gate_succeeded(app: &App, from_a_known_browser: bool, gate: crate::auth::Attempt<String>) {
    if from_a_known_browser {
        app.guards.device_logins.succeeded(gate);
    } else {
        app.guards.account_logins.succeeded(gate);
    }
}

/// A hash no password matches, made once: unknown names are checked against it.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        crate::auth::hash_password(&crate::auth::random_token()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::{return_to, safe_next, same_loopback_site, session_end};

    #[test]
    fn a_session_ends_idle_after_its_last_use_and_never_past_its_lifetime() {
        let admin = crate::config::AdminConfig {
            session_ttl_s: 8 * 3600,
            session_idle_s: 1800,
            ..Default::default()
        };
        let login = 1_000_000_000_000;
        assert_eq!(session_end(&admin, login, login), login + 1_800_000);
        let later = login + 3 * 3_600_000;
        assert_eq!(session_end(&admin, login, later), later + 1_800_000);
        // Seven and three-quarter hours in: the lifetime, not another half hour.
        let late = login + 8 * 3_600_000 - 900_000;
        assert_eq!(session_end(&admin, login, late), login + 8 * 3_600_000);
        // An idle time longer than the lifetime: the lifetime.
        let long = crate::config::AdminConfig {
            session_idle_s: 24 * 3600,
            ..admin
        };
        assert_eq!(session_end(&long, login, login), login + 8 * 3_600_000);
    }

    #[test]
    fn only_a_page_of_this_admin_is_returned_to() {
        for ok in [
            "/admin",
            "/admin/merchants/demo/payments/A-1",
            "/admin/payments?q=x&status=TRADE_SUCCESS",
        ] {
            assert_eq!(safe_next(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "//evil.example/admin",
            "/\\evil.example",
            "/admin/\\evil",
            "https://evil.example/admin",
            "admin/payments",
            "/admin//evil.example",
            "/admin/payments?x=//evil",
            "/admin/payments\n",
            "/admin/pay\tments",
            "/admin\u{7f}",
            "/adminx",
            "/other",
            "/admin/logout",
            "/admin/login",
            "javascript:alert(1)",
            "/admin/../../evil",
            "/admin/./x",
            "/admin/%2e%2e/x",
            "/admin/%2E%2e/%2e%2E/evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_post_returns_to_the_page_of_its_form() {
        let post = http::Method::POST;
        assert_eq!(
            return_to("/admin/merchants/demo/payments/A-1/refunds", &post, &[]),
            "/admin/merchants/demo/payments/A-1"
        );
        assert_eq!(
            return_to("/admin/merchants/demo/tokens/3/revoke", &post, &[]),
            "/admin/merchants/demo"
        );
        assert_eq!(
            return_to("/admin/users/x/remove", &post, &[]),
            "/admin/users"
        );
        assert_eq!(return_to("/admin/slots", &post, &[]), "/admin/merchants");
        // A page keeps its query (not the language, kept in a cookie); the overview is the default.
        let q = vec![
            ("q".to_owned(), "A 1".to_owned()),
            ("lang".to_owned(), "en".to_owned()),
        ];
        assert_eq!(
            return_to("/admin/payments", &http::Method::GET, &q),
            "/admin/payments?q=A+1"
        );
        assert_eq!(return_to("/admin", &http::Method::GET, &[]), "");
        // A query that would make the path unsafe is dropped, not followed.
        let evil = vec![("x".to_owned(), "//evil".to_owned())];
        assert_eq!(
            return_to("/admin/payments", &http::Method::GET, &evil),
            "/admin/payments?x=%2F%2Fevil"
        );
    }

    #[test]
    fn another_loopback_name_is_the_same_site_only_on_the_same_port() {
        assert!(same_loopback_site(
            "http://localhost:8080",
            "http://127.0.0.1:8080"
        ));
        assert!(same_loopback_site(
            "http://[::1]:8080",
            "http://127.0.0.1:8080"
        ));
        assert!(!same_loopback_site(
            "http://localhost:3000",
            "http://127.0.0.1:8080"
        ));
        assert!(!same_loopback_site(
            "https://localhost:8080",
            "http://127.0.0.1:8080"
        ));
        assert!(!same_loopback_site(
            "http://localhost:8080",
            "http://pay.example.com:8080"
        ));
        assert!(!same_loopback_site(
            "http://evil.example:8080",
            "http://127.0.0.1:8080"
        ));
        // Another loopback address is another service's, even on the same port.
        assert!(!same_loopback_site(
            "http://127.9.9.9:8080",
            "http://127.0.0.1:8080"
        ));
    }
}
