//! The admin page: a shop owner logs in with the admin password (argon2 hash in
//! `admin_password_hash`, never the API token), and fills in each merchant's settings in a form
//! built from that merchant's component (`describe`: labels, rules, kinds; secrets masked after
//! saving, never shown again in full; PEM keys pasted or loaded from a file), then tests the
//! connection. Recent payments and notifications are
//! listed newest first, with dead-lettered webhooks (resend button) and the merchant's API tokens.
//!
//! Sessions are random ids kept (hashed) in the database with an expiry and revoked at logout; the
//! cookie is `HttpOnly; SameSite=Strict`, and `Secure` when the page is served over https. Every
//! form carries the session's CSRF token, and a post with a foreign or `null` Origin is refused.
//! Failed logins are throttled per IP (`[admin] login_failures_per_minute`, then 429).

use super::{html, read_body, redirect, Body, MAX_API_BODY};
use crate::config::{valid_merchant_id, MerchantSettings};
use crate::runtime::plugin_api::{FieldKind, PaymentRequest, Product};
use crate::runtime::PluginRuntime;
use crate::service::{mask, App};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

const COOKIE: &str = "payhost_admin";

/// HTML-escapes text for element bodies and attribute values.
pub fn esc(s: &str) -> String {
    crate::domain::html::escape(s)
}

const STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;margin:0;background:#f4f6f8;color:#222}\
header{background:#1677ff;color:#fff;padding:12px 20px;display:flex;justify-content:space-between;align-items:center}\
header a{color:#fff}main{max-width:960px;margin:0 auto;padding:16px}\
.card{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
label{display:block;margin:10px 0 4px;font-weight:600}input,select,textarea{width:100%;box-sizing:border-box;padding:8px;border:1px solid #ccd;border-radius:4px;font-size:15px}\
textarea{font-family:monospace;height:90px}.rule{color:#667;font-size:12px;font-weight:normal}\
button{background:#1677ff;color:#fff;border:0;border-radius:4px;padding:9px 16px;font-size:15px;margin:12px 8px 0 0;cursor:pointer}\
button.secondary{background:#fff;color:#1677ff;border:1px solid #1677ff}\
.ok{border-left:4px solid #2a2}.err{border-left:4px solid #d33}.muted{color:#667;font-size:13px}\
table{width:100%;border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:6px;text-align:left}\
.status-TRADE_SUCCESS,.status-TRADE_FINISHED{color:#2a2;font-weight:600}.status-TRADE_CLOSED{color:#999}";

/// A full page with the shared style.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// The session cookie's value, if any.
fn cookie_value(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The session (its id hash and CSRF token) of a request, if it has a live one.
async fn session(app: &App, req: &Request<Incoming>) -> Option<(String, String)> {
    let id = cookie_value(req)?;
    let hash = crate::auth::token_hash(&id);
    let csrf = app
        .store
        .session(&hash, crate::store::now_ms())
        .await
        .ok()
        .flatten()?;
    Some((hash, csrf))
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
    from_proxy
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Refuses posts from other sites: an `Origin` must be `public_url`'s origin (scheme, host and
/// port; `null`, sent by sandboxed frames and some redirects, is refused). Without a
/// `public_url` (embedders only), it must name the request's `Host`. Browsers send Origin with
/// every POST; other clients may leave it out and rely on the CSRF token.
fn same_origin(app: &App, req: &Request<Incoming>) -> bool {
    let Some(origin) = req
        .headers()
        .get("origin")
        .map(|o| o.to_str().unwrap_or(""))
    else {
        return true;
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

/// Whether two origins are this machine (`localhost`, 127.0.0.0/8, `[::1]`) under the same
/// scheme and port: the same payhost reached by another loopback name.
fn same_loopback_site(a: &str, b: &str) -> bool {
    let parts = |o: &str| {
        let uri = o.parse::<http::Uri>().ok()?;
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback.then(|| (uri.scheme_str().map(str::to_owned), uri.port_u16()))
    };
    parts(a).is_some_and(|pa| parts(b) == Some(pa))
}

fn forbidden(message: &str) -> Response<Body> {
    html(
        403,
        page(
            "Forbidden",
            &format!(
                "<main><div class=\"card err\" id=\"forbidden\">{}</div></main>",
                esc(message)
            ),
        ),
    )
}

pub async fn handle(
    app: &Arc<App>,
    ip: IpAddr,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    if method == Method::POST && !same_origin(app, &req) {
        return forbidden("Cross-site form post refused.");
    }
    if method == Method::POST && path == "/admin/login" {
        return login(app, ip, remote, req).await;
    }
    let current = session(app, &req).await;
    if path == "/admin/logout" {
        // Revoked server-side: the old cookie is worthless even if it was copied.
        if let Some((hash, csrf)) = &current {
            let allowed = method == Method::GET || {
                let form = form_of(req).await;
                csrf_ok(&form, csrf)
            };
            if allowed {
                if let Err(e) = app.store.delete_session(hash).await {
                    tracing::error!(error = %e, "cannot delete an admin session");
                }
                tracing::info!("admin logged out");
            }
        }
        return Response::builder()
            .status(302)
            .header("location", "/admin")
            .header(
                "set-cookie",
                format!("{COOKIE}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict"),
            )
            .body(Body::default())
            .expect("valid response");
    }
    let Some((_, csrf)) = current else {
        return html(
            if path == "/admin" { 200 } else { 401 },
            login_page(app, None),
        );
    };
    let query_value = |name: &str| {
        req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let selected = query_value("m");
    let plugin_choice = query_value("plugin");
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let form = if method == Method::POST {
        let form = form_of(req).await;
        if !csrf_ok(&form, &csrf) {
            tracing::warn!(%ip, "admin post without a valid CSRF token refused");
            return forbidden(
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            );
        }
        form
    } else {
        Vec::new()
    };
    let ctx = Ctx {
        csrf: &csrf,
        plugin: plugin_choice.as_deref(),
    };
    match (
        method,
        segs.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Method::GET, ["admin"]) => dashboard(app, &ctx, selected.as_deref(), None).await,
        (Method::POST, ["admin", "merchants"]) => {
            let id = field(&form, "id").trim().to_owned();
            if !valid_merchant_id(&id) {
                let msg = Flash::err("商户编号只能包含字母、数字、_ 和 - / The merchant id must be 1 to 64 letters, digits, '_' or '-'.");
                return dashboard(app, &ctx, None, Some(msg)).await;
            }
            let plugin = field(&form, "plugin").trim();
            if plugin.is_empty() {
                redirect(&format!("/admin?m={id}"))
            } else {
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("m", &id)
                    .append_pair("plugin", plugin)
                    .finish();
                redirect(&format!("/admin?{q}"))
            }
        }
        (Method::POST, ["admin", "slots"]) => {
            // Connect a shop: the merchant slot with its token and shop secret, shown once.
            let id = field(&form, "id").trim().to_owned();
            let plugin = match field(&form, "plugin").trim() {
                "" => app.plugins.ids().first().cloned().unwrap_or_default(),
                p => p.to_owned(),
            };
            if app.plugins.get(&plugin).is_none() {
                let msg = Flash::err(&format!("plugin: {plugin:?} is not loaded by this host"));
                return dashboard(app, &ctx, None, Some(msg)).await;
            }
            let origins: Vec<String> = field(&form, "shop_origins")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            match crate::onboarding::add_merchant(
                app.store.as_ref(),
                &id,
                &plugin,
                &origins,
                field(&form, "label"),
            )
            .await
            {
                Ok(m) => {
                    let flash = Flash {
                        ok: true,
                        html: format!(
                            "商户 {0} 已创建。以下两项只显示这一次，请填入商城的支付方式设置 / Merchant {0} created; shown only this once, put both into the shop's payment settings:\nAPI 令牌 token #{1}: <code id=\"new-token\">{2}</code>\n商户密钥 shop secret: <code id=\"new-shop-secret\">{3}</code>",
                            esc(&id),
                            m.token_id,
                            esc(&m.token),
                            esc(&m.shop_secret)
                        ),
                    };
                    dashboard(app, &ctx, Some(&id), Some(flash)).await
                }
                Err(e) => dashboard(app, &ctx, None, Some(Flash::err(&e))).await,
            }
        }
        (Method::POST, ["admin", "merchants", id]) => save(app, &ctx, id, &form).await,
        (Method::POST, ["admin", "merchants", id, "test"]) => test_connection(app, &ctx, id).await,
        (Method::POST, ["admin", "merchants", id, "tokens"]) => {
            let flash = if app.store.merchant(id).await.ok().flatten().is_none() {
                Flash::err("unknown merchant")
            } else {
                match super::new_merchant_token(app, id, field(&form, "label")).await {
                    Ok((tid, token)) => Flash {
                        ok: true,
                        html: format!(
                            "新的 API 令牌 (只显示这一次) / New API token #{tid} for {} — shown only this once, store it in the shop: <code id=\"new-token\">{}</code>",
                            esc(id),
                            esc(&token)
                        ),
                    },
                    Err(e) => Flash::err(&e.message),
                }
            };
            dashboard(app, &ctx, Some(id), Some(flash)).await
        }
        (Method::POST, ["admin", "merchants", id, "tokens", tid, "revoke"]) => {
            let ok = match tid.parse::<i64>() {
                Ok(t) => app.store.revoke_token(t, Some(id)).await.unwrap_or(false),
                Err(_) => false,
            };
            let flash = if ok {
                Flash::ok("令牌已吊销 / Token revoked.")
            } else {
                Flash::err("no such live token")
            };
            dashboard(app, &ctx, Some(id), Some(flash)).await
        }
        (Method::POST, ["admin", "merchants", id, "payments", no, "sync"]) => {
            let no = super::percent_decode(no);
            let flash = match app.sync_payment(id, &no).await {
                Ok(r) if !r.found => Flash::err(&format!(
                    "支付平台没有这笔交易 / The payment provider has no trade {no} (the buyer never opened the cashier)"
                )),
                Ok(r) => Flash::ok(&format!(
                    "查询完成 / Queried {no}: the provider says {}; {} (payment now {})",
                    r.trade_status.as_deref().unwrap_or("-"),
                    r.outcome,
                    r.status
                )),
                Err(e) => Flash::err(&format!("查询失败 / The trade query failed: {}", e.message)),
            };
            dashboard(app, &ctx, Some(id), Some(flash)).await
        }
        (Method::POST, ["admin", "merchants", id, "webhooks", wid, "resend"]) => {
            let ok = match wid.parse::<i64>() {
                Ok(w) => app.store.resend_webhook(id, w).await.unwrap_or(false),
                Err(_) => false,
            };
            let flash = if ok {
                tracing::info!(merchant = %id, webhook = %wid, "dead-lettered webhook queued again from the admin page");
                Flash::ok("已重新排队 / Queued for delivery again.")
            } else {
                Flash::err("no such dead-lettered webhook")
            };
            dashboard(app, &ctx, Some(id), Some(flash)).await
        }
        _ => html(
            404,
            page(
                "Not found",
                "<main><div class=\"card err\">No such admin page.</div></main>",
            ),
        ),
    }
}

/// What every page of a session needs.
struct Ctx<'a> {
    csrf: &'a str,
    /// `?plugin=`: the component a new merchant's form is built for.
    plugin: Option<&'a str>,
}

impl Ctx<'_> {
    /// The hidden CSRF field of a form.
    fn field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(self.csrf)
        )
    }
}

fn csrf_ok(form: &[(String, String)], expected: &str) -> bool {
    let given = field(form, "csrf");
    !expected.is_empty()
        && given.len() == expected.len()
        && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

async fn form_of(req: Request<Incoming>) -> Vec<(String, String)> {
    match read_body(req.into_body(), MAX_API_BODY).await {
        Ok(b) => form_urlencoded::parse(&b).into_owned().collect(),
        Err(_) => Vec::new(),
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn login(
    app: &Arc<App>,
    ip: IpAddr,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    // Failures count per address (an IPv6 caller per /64).
    let key = crate::proxy::limit_key(ip);
    if let Some(wait) = app.guards.logins.blocked(key) {
        tracing::warn!(%ip, "admin login throttled");
        let mut r = html(
            429,
            login_page(
                app,
                Some(&format!(
                    "登录失败次数过多，请 {wait} 秒后再试 / Too many failed logins: try again in {wait} s"
                )),
            ),
        );
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from(wait));
        return r;
    }
    let Some(hash) = app.config.admin_password_hash.clone() else {
        return html(403, login_page(app, None));
    };
    let secure_cookie = over_https(app, remote, &req);
    let form = form_of(req).await;
    let given = field(&form, "password").to_owned();
    // argon2 takes tens of milliseconds: off the async workers.
    let ok = tokio::task::spawn_blocking(move || crate::auth::verify_password(&given, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        app.guards.logins.failed(key);
        tracing::warn!(%ip, "admin login refused");
        return html(401, login_page(app, Some("密码不正确 / Wrong password")));
    }
    app.guards.logins.succeeded(key);
    let id = crate::auth::random_token();
    let csrf = crate::auth::random_token();
    let ttl = app.config.admin.session_ttl_s;
    if let Err(e) = app
        .store
        .create_session(
            &crate::auth::token_hash(&id),
            &csrf,
            crate::store::now_ms() + ttl as i64 * 1000,
        )
        .await
    {
        tracing::error!(error = %e, "cannot store an admin session");
        return html(
            500,
            login_page(app, Some("internal error; see the payhost log")),
        );
    }
    tracing::info!(%ip, "admin logged in");
    let mut c = format!("{COOKIE}={id}; Path=/admin; Max-Age={ttl}; HttpOnly; SameSite=Strict");
    if secure_cookie {
        c.push_str("; Secure");
    }
    Response::builder()
        .status(302)
        .header("location", "/admin")
        .header("set-cookie", c)
        .body(Body::default())
        .expect("valid response")
}

fn login_page(app: &App, error: Option<&str>) -> String {
    let err = error
        .map(|e| {
            format!(
                "<div class=\"card err\" id=\"login-error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let form = if app.config.admin_password_hash.is_some() {
        "<form method=\"post\" action=\"/admin/login\"><label for=\"password\">管理密码 Admin password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"login\">登录 Log in</button></form>"
    } else {
        "<p id=\"login-off\">管理登录未开启 / The admin login is off: no <code>admin_password_hash</code> is configured. \
         Run <code>payhost admin-password</code> and put the printed line into payhost.toml.</p>"
    };
    page(
        "payhost 管理登录",
        &format!(
            "<header><strong>payhost 支付管理 · Payments admin</strong></header><main>{err}<div class=\"card\"><h2>管理登录 Admin login</h2>{form}</div></main>"
        ),
    )
}

struct Flash {
    ok: bool,
    html: String,
}

impl Flash {
    fn ok(text: &str) -> Flash {
        Flash {
            ok: true,
            html: esc(text),
        }
    }

    fn err(text: &str) -> Flash {
        Flash {
            ok: false,
            html: esc(text),
        }
    }
}

async fn save(
    app: &Arc<App>,
    ctx: &Ctx<'_>,
    id: &str,
    form: &[(String, String)],
) -> Response<Body> {
    if !valid_merchant_id(id) {
        return dashboard(app, ctx, None, Some(Flash::err("bad merchant id"))).await;
    }
    let existing = app.store.merchant(id).await.ok().flatten();
    let chosen = field(form, "plugin").trim().to_owned();
    let Some(runtime) = form_plugin(app, existing.as_ref(), Some(&chosen)) else {
        let flash = Flash::err(&format!("plugin: {chosen:?} is not loaded by this host"));
        return dashboard(app, ctx, Some(id), Some(flash)).await;
    };
    let mut plugin = Vec::new();
    for f in &runtime.info.settings {
        let value = field(form, &f.name).trim();
        if value.is_empty() {
            // An empty secret or key field keeps what was saved before.
            if f.secret || matches!(f.kind, FieldKind::Pem | FieldKind::Secret) {
                if let Some(old) = existing.as_ref().and_then(|m| m.get(&f.name)) {
                    plugin.push((f.name.clone(), old.to_owned()));
                }
            }
            continue;
        }
        plugin.push((f.name.clone(), value.to_owned()));
    }
    let webhook_url =
        Some(field(form, "shop_webhook_url").trim().to_owned()).filter(|s| !s.is_empty());
    let webhook_secret = Some(field(form, "shop_webhook_secret").trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            existing
                .as_ref()
                .and_then(|m| m.shop_webhook_secret.clone())
        });
    let mut problems = Vec::new();
    let raw_origins: Vec<String> = field(form, "shop_origins")
        .split(['\n', ',', ' '])
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let probe = crate::config::RawMerchant {
        shop_origins: Some(raw_origins),
        ..Default::default()
    };
    let shop_origins =
        crate::config::merchant_settings(id, &probe, None, &mut problems).shop_origins;
    if let Some(u) = &webhook_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            problems.push("shop_webhook_url: must be an absolute http or https URL".to_owned());
        }
        if webhook_secret.as_ref().is_none_or(|s| s.len() < 16) {
            problems.push(
                "shop_webhook_secret: at least 16 characters are required with a webhook URL"
                    .to_owned(),
            );
        }
    }
    if !problems.is_empty() {
        let msg = Flash::err(&problems.join("\n"));
        return dashboard(app, ctx, Some(id), Some(msg)).await;
    }
    let settings = MerchantSettings {
        settings: plugin,
        plugin_id: runtime.info.id.clone(),
        from_files: Vec::new(),
        shop_webhook_url: webhook_url,
        shop_webhook_secret: webhook_secret,
        shop_origins,
        settings_digest: None,
    };
    match app.configure_merchant(id, settings).await {
        Ok(_) => {
            dashboard(
                app,
                ctx,
                Some(id),
                Some(Flash::ok("已保存并校验 / Saved and validated.")),
            )
            .await
        }
        Err(fields) => {
            let list = fields
                .iter()
                .map(|f| {
                    format!(
                        "<li><code>{}</code>: {}</li>",
                        esc(&f.field),
                        esc(&f.reason)
                    )
                })
                .collect::<String>();
            let flash = Flash {
                ok: false,
                html: format!(
                    "未保存，请修改以下字段 / Not saved, please fix:<ul id=\"errors\">{list}</ul>"
                ),
            };
            dashboard(app, ctx, Some(id), Some(flash)).await
        }
    }
}

async fn test_connection(app: &Arc<App>, ctx: &Ctx<'_>, id: &str) -> Response<Body> {
    let Ok(Some(merchant)) = app.store.merchant(id).await else {
        return dashboard(app, ctx, None, Some(Flash::err("unknown merchant"))).await;
    };
    let policy = app.merchant_policy(&merchant);
    let order = PaymentRequest {
        product: Product::Wap,
        out_trade_no: format!("PAYHOSTTEST{}", crate::store::now_ms()),
        subject: "payhost 连接测试 connection test".into(),
        total_fee: "0.01".into(),
        seller: None,
        return_url: app.config.return_url(id),
        notify_url: app.config.notify_url(id),
        merchant_url: None,
        pay_expire: Some(1),
        out_user: None,
        cashier_code: None,
        request_id: crate::service::new_request_id(),
    };
    let session = match app.plugin_for(&merchant) {
        Ok(p) => p.session().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    let flash = match session {
        Err(e) => Flash::err(&e),
        Ok(mut s) => match s.start_payment(&policy, &merchant.settings, &order).await {
            Err(e) => Flash::err(&e.to_string()),
            Ok(Ok(_)) => Flash::ok("连接正常：支付平台接受了签名请求 / Connection OK: the provider accepted a signed request."),
            // `detail` is the component's plain-language help for the error.
            Ok(Err(crate::runtime::plugin_api::PluginError::Gateway(g))) => Flash::err(&format!(
                "网关拒绝 / The gateway refused: {} {} {}",
                g.code, g.msg, g.detail
            )),
            Ok(Err(e)) => Flash::err(&e.to_string()),
        },
    };
    dashboard(app, ctx, Some(id), Some(flash)).await
}

async fn dashboard(
    app: &Arc<App>,
    ctx: &Ctx<'_>,
    selected: Option<&str>,
    flash: Option<Flash>,
) -> Response<Body> {
    let ids = app.store.merchant_ids().await.unwrap_or_default();
    let selected = selected
        .map(str::to_owned)
        .or_else(|| ids.first().cloned())
        .unwrap_or_default();
    let mut body = String::from("<header><strong>payhost 支付管理 · Payments admin</strong>");
    body.push_str(&format!(
        "<form method=\"post\" action=\"/admin/logout\" style=\"margin:0\">{}<button class=\"secondary\" type=\"submit\" id=\"logout\" style=\"margin:0\">退出 Log out</button></form></header><main>",
        ctx.field()
    ));
    if let Some(f) = flash {
        body.push_str(&format!(
            "<div class=\"card {}\" id=\"flash\">{}</div>",
            if f.ok { "ok" } else { "err" },
            f.html.replace('\n', "<br>")
        ));
    }
    body.push_str("<div class=\"card\"><strong>商户 Merchants:</strong> ");
    for id in &ids {
        body.push_str(&format!("<a href=\"/admin?m={0}\">{0}</a> · ", esc(id)));
    }
    // With several components, a new merchant picks the one that pays for it.
    let plugin_select = if app.plugins.ids().len() > 1 {
        let options: String = app
            .plugins
            .iter()
            .map(|p| {
                format!(
                    "<option value=\"{}\">{} ({})</option>",
                    esc(&p.info.id),
                    esc(&p.info.name),
                    esc(&p.info.id)
                )
            })
            .collect();
        format!(
            "<select name=\"plugin\" id=\"new-plugin\" style=\"width:auto\">{options}</select> "
        )
    } else {
        String::new()
    };
    body.push_str(&format!(
        "<form method=\"post\" action=\"/admin/merchants\" style=\"display:inline\">{}<input name=\"id\" placeholder=\"新商户编号 new merchant id\" style=\"width:200px\"> \
         {plugin_select}<button class=\"secondary\" type=\"submit\">添加 Add</button></form></div>",
        ctx.field()
    ));
    body.push_str(&format!(
        "<div class=\"card\"><h3>连接商城 Connect a shop</h3><p class=\"muted\">创建商户及其专用 API 令牌和商户密钥，商城用它们自行填写支付宝设置；运营者令牌不离开本机。 The merchant slot, its own API token and shop secret: the shop saves its provider settings with them alone.</p><form method=\"post\" action=\"/admin/slots\" id=\"connect-shop\">{}<label for=\"slot-id\">商户编号 Merchant id</label><input id=\"slot-id\" name=\"id\" placeholder=\"ecshop-2088…\">{}<label for=\"slot-origins\">商城地址 Shop origin (https://shop.example), one per line</label><textarea id=\"slot-origins\" name=\"shop_origins\" style=\"height:50px\"></textarea><label for=\"slot-label\">标签 Label</label><input id=\"slot-label\" name=\"label\" placeholder=\"ecshop\"> <button type=\"submit\">创建 Create</button></form></div>",
        ctx.field(),
        plugin_select.replace("id=\"new-plugin\"", "id=\"slot-plugin\"")
    ));
    if !selected.is_empty() {
        let merchant = app.store.merchant(&selected).await.ok().flatten();
        body.push_str(&merchant_form(app, ctx, &selected, merchant.as_ref()));
        body.push_str(&recent(app, ctx, &selected).await);
    }
    body.push_str("</main>");
    html(200, page("payhost 管理", &body))
}

/// The component a merchant's form is for: the merchant's own, else the one chosen for a new
/// merchant, else the first.
fn form_plugin<'a>(
    app: &'a App,
    m: Option<&MerchantSettings>,
    chosen: Option<&str>,
) -> Option<&'a PluginRuntime> {
    match (m, chosen.filter(|c| !c.is_empty())) {
        (Some(m), _) if !m.plugin_id.is_empty() || app.plugins.ids().len() == 1 => {
            app.plugins.for_merchant(m)
        }
        (_, Some(c)) => app.plugins.get(c),
        _ => app.plugins.first(),
    }
}

fn merchant_form(app: &App, ctx: &Ctx<'_>, id: &str, m: Option<&MerchantSettings>) -> String {
    let Some(plugin) = form_plugin(app, m, ctx.plugin) else {
        return format!(
            "<div class=\"card err\">商户 {} 的插件未加载 / this merchant's plugin is not loaded</div>",
            esc(id)
        );
    };
    let info = &plugin.info;
    let mut f = format!(
        "<div class=\"card\"><h2>商户 {0} · <span id=\"plugin-name\">{4}</span></h2><p class=\"muted\">通知地址 notify_url: <code>{1}</code><br>返回地址 return_url: <code>{2}</code></p>\
         <form method=\"post\" action=\"/admin/merchants/{0}\" id=\"settings\">{3}<input type=\"hidden\" name=\"plugin\" value=\"{5}\">",
        esc(id),
        esc(&app.config.notify_url(id)),
        esc(&app.config.return_url(id)),
        ctx.field(),
        esc(&info.name),
        esc(&info.id)
    );
    for s in &info.settings {
        let current = m.and_then(|m| m.get(&s.name)).unwrap_or("");
        let label = format!(
            "<label for=\"{0}\">{1} <span class=\"rule\">{2} — {3}</span></label>",
            esc(&s.name),
            esc(&s.label_zh),
            esc(&s.label_en),
            esc(&s.rule)
        );
        f.push_str(&label);
        match s.kind {
            FieldKind::Select => {
                f.push_str(&format!("<select id=\"{0}\" name=\"{0}\">", esc(&s.name)));
                let chosen = if current.is_empty() {
                    s.default_value.clone().unwrap_or_default()
                } else {
                    current.to_owned()
                };
                for o in &s.options {
                    let sel = if o.value.eq_ignore_ascii_case(&chosen) {
                        " selected"
                    } else {
                        ""
                    };
                    f.push_str(&format!(
                        "<option value=\"{}\"{sel}>{}</option>",
                        esc(&o.value),
                        esc(&o.label_zh)
                    ));
                }
                f.push_str("</select>");
            }
            FieldKind::Pem => {
                let placeholder = if current.is_empty() {
                    "-----BEGIN …"
                } else {
                    "已设置 (set) — 粘贴新密钥以替换 / paste to replace"
                };
                f.push_str(&format!(
                    "<textarea id=\"{0}\" name=\"{0}\" placeholder=\"{1}\"></textarea>\
                     <input type=\"file\" accept=\".pem,.txt,.key\" data-target=\"{0}\" class=\"pemfile\">",
                    esc(&s.name),
                    esc(placeholder)
                ));
            }
            // A secret of any kind is never shown, only masked (as the API does).
            _ if s.secret || s.kind == FieldKind::Secret => {
                let placeholder = if current.is_empty() {
                    String::new()
                } else {
                    format!("{} — 留空保持不变 / leave empty to keep", mask(current))
                };
                f.push_str(&format!(
                    "<input id=\"{0}\" name=\"{0}\" type=\"password\" autocomplete=\"off\" placeholder=\"{1}\">",
                    esc(&s.name),
                    esc(&placeholder)
                ));
                if !current.is_empty() {
                    f.push_str(&format!(
                        "<div class=\"muted\" id=\"{}-saved\">已保存 saved: {}</div>",
                        esc(&s.name),
                        esc(&mask(current))
                    ));
                }
            }
            _ => {
                f.push_str(&format!(
                    "<input id=\"{0}\" name=\"{0}\" value=\"{1}\" placeholder=\"{2}\">",
                    esc(&s.name),
                    esc(current),
                    esc(s.default_value.as_deref().unwrap_or(""))
                ));
            }
        }
    }
    let hook = m
        .and_then(|m| m.shop_webhook_url.clone())
        .unwrap_or_default();
    let secret = m
        .and_then(|m| m.shop_webhook_secret.clone())
        .map(|s| mask(&s))
        .unwrap_or_default();
    f.push_str(&format!(
        "<label for=\"shop_webhook_url\">商城通知地址 <span class=\"rule\">Shop webhook URL — optional</span></label>\
         <input id=\"shop_webhook_url\" name=\"shop_webhook_url\" value=\"{}\">\
         <label for=\"shop_webhook_secret\">商城通知密钥 <span class=\"rule\">Shop webhook secret — 16+ characters</span></label>\
         <input id=\"shop_webhook_secret\" name=\"shop_webhook_secret\" type=\"password\" autocomplete=\"off\" placeholder=\"{}\">\
         <label for=\"shop_origins\">商城地址 <span class=\"rule\">Shop origins — optional, one per line (https://shop.example): return_url must be on one of them</span></label>\
         <textarea id=\"shop_origins\" name=\"shop_origins\" style=\"height:50px\">{}</textarea>\
         <p class=\"muted\">粘贴的值会自动去掉首尾空格。Pasted values are trimmed.</p>\
         <button type=\"submit\" id=\"save\">保存 Save</button></form>\
         <form method=\"post\" action=\"/admin/merchants/{}/test\">{}<button class=\"secondary\" type=\"submit\" id=\"test\">测试连接 Test connection</button></form></div>\
         <script>document.querySelectorAll('.pemfile').forEach(function(i){{i.addEventListener('change',function(){{var f=i.files[0];if(!f)return;var r=new FileReader();r.onload=function(){{document.getElementById(i.dataset.target).value=r.result}};r.readAsText(f)}})}})</script>",
        esc(&hook),
        esc(&if secret.is_empty() { String::new() } else { format!("{secret} — 留空保持不变 / leave empty to keep") }),
        esc(&m.map(|m| m.shop_origins.join("\n")).unwrap_or_default()),
        esc(id),
        ctx.field()
    ));
    f
}

async fn recent(app: &App, ctx: &Ctx<'_>, id: &str) -> String {
    let mut out = String::from("<div class=\"card\"><h3>最近的支付 Recent payments</h3><table id=\"payments\"><tr><th>订单号</th><th>金额</th><th>状态</th><th>卖家</th><th>交易号 Trade no.</th><th>创建</th><th></th></tr>");
    for p in app
        .store
        .recent_payments(Some(id), 20)
        .await
        .unwrap_or_default()
    {
        // A waiting payment can be asked about at once (lost-notify recovery).
        let sync = if p.status == crate::store::WAIT_BUYER_PAY {
            format!(
                "<form method=\"post\" action=\"/admin/merchants/{}/payments/{}/sync\">{}<button class=\"secondary\" type=\"submit\">查询 Sync</button></form>",
                esc(id),
                esc(&form_urlencoded::byte_serialize(p.out_trade_no.as_bytes()).collect::<String>()),
                ctx.field()
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"status-{}\">{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{sync}</td></tr>",
            esc(&p.out_trade_no),
            esc(&p.total_fee()),
            esc(&p.status),
            esc(&p.status),
            p.review.as_ref().map(|r| format!(" ⚠ {}", esc(r))).unwrap_or_default(),
            esc(&p.seller),
            esc(p.trade_no.as_deref().unwrap_or("")),
            esc(&p.created_at)
        ));
    }
    out.push_str("</table></div><div class=\"card\"><h3>最近的通知 Recent notifications</h3><table id=\"notifications\"><tr><th>#</th><th>收到</th><th>订单号</th><th>交易状态</th><th>结果</th><th>说明</th></tr>");
    for n in app
        .store
        .recent_notifications(Some(id), 20)
        .await
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            n.raw_id,
            esc(&n.received_at),
            esc(n.out_trade_no.as_deref().unwrap_or("")),
            esc(n.trade_status.as_deref().unwrap_or("")),
            esc(n.outcome.as_deref().unwrap_or("")),
            esc(n.detail.as_deref().unwrap_or(""))
        ));
    }
    out.push_str("</table></div>");
    let dead = app
        .store
        .dead_webhooks(Some(id), 50)
        .await
        .unwrap_or_default();
    out.push_str("<div class=\"card\"><h3>未送达的商城通知 Dead-lettered webhooks</h3><table id=\"dead-webhooks\"><tr><th>#</th><th>事件</th><th>类型</th><th>尝试</th><th>放弃于</th><th>最后错误</th><th></th></tr>");
    for w in &dead {
        out.push_str(&format!(
            "<tr><td>{0}</td><td><code>{1}</code></td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td><form method=\"post\" action=\"/admin/merchants/{6}/webhooks/{0}/resend\">{7}<button class=\"secondary\" type=\"submit\">重发 Resend</button></form></td></tr>",
            w.id,
            esc(&w.event_id),
            esc(&w.event_type),
            w.attempts,
            esc(&w.dead_at),
            esc(w.last_error.as_deref().unwrap_or("")),
            esc(id),
            ctx.field()
        ));
    }
    if dead.is_empty() {
        out.push_str("<tr><td colspan=\"7\" class=\"muted\">none</td></tr>");
    }
    out.push_str("</table></div>");
    out.push_str("<div class=\"card\"><h3>API 令牌 API tokens</h3><p class=\"muted\">A merchant token reaches only this merchant's settings (read, replace within its shop origins), payments, notifications and channels: give it to the shop instead of the operator's api_token.</p><table id=\"tokens\"><tr><th>#</th><th>标签 Label</th><th>创建 Created</th><th>吊销 Revoked</th><th></th></tr>");
    for t in app.store.tokens(Some(id)).await.unwrap_or_default() {
        let action = if t.revoked_at.is_none() {
            format!(
                "<form method=\"post\" action=\"/admin/merchants/{}/tokens/{}/revoke\">{}<button class=\"secondary\" type=\"submit\">吊销 Revoke</button></form>",
                esc(id),
                t.id,
                ctx.field()
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            t.id,
            esc(&t.label),
            esc(&t.created_at),
            esc(t.revoked_at.as_deref().unwrap_or(""))
        ));
    }
    out.push_str(&format!(
        "</table><form method=\"post\" action=\"/admin/merchants/{}/tokens\">{}<input name=\"label\" placeholder=\"标签 label (e.g. ecshop)\" style=\"width:240px\"> <button type=\"submit\" id=\"new-token-button\">新建令牌 New token</button></form></div>",
        esc(id),
        ctx.field()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::same_loopback_site;

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
    }
}
