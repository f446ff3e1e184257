//! The admin page: a shop owner logs in with the API token, pastes the partner ID and key for each
//! merchant (masked after saving, never shown again in full), picks B2C/C2C and the sign type,
//! pastes or loads RSA keys, and tests the connection. Recent payments and notifications are
//! listed newest first.

use super::{html, read_body, redirect, Body, MAX_API_BODY};
use crate::config::{valid_merchant_id, MerchantSettings};
use crate::runtime::types;
use crate::service::{gateway_hint, hmac_hex, mask, App};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use subtle::ConstantTimeEq;

const COOKIE: &str = "payhost_admin";

/// HTML-escapes text for element bodies and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
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

fn session_value(app: &App) -> String {
    hmac_hex(&app.config.api_token, b"payhost admin session v1")
}

fn logged_in(app: &App, req: &Request<Incoming>) -> bool {
    let expected = session_value(app);
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| {
            k == COOKIE
                && v.len() == expected.len()
                && bool::from(v.as_bytes().ct_eq(expected.as_bytes()))
        })
}

/// Refuses form posts from other sites (the cookie is SameSite=Strict too).
fn same_origin(req: &Request<Incoming>) -> bool {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match req.headers().get("origin").and_then(|o| o.to_str().ok()) {
        None | Some("null") => true,
        Some(origin) => origin.split("://").nth(1) == Some(host),
    }
}

pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    if method == Method::POST && path == "/admin/login" {
        return login(app, req).await;
    }
    if path == "/admin/logout" {
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
    if !logged_in(app, &req) {
        return html(if path == "/admin" { 200 } else { 401 }, login_page(None));
    }
    if method == Method::POST && !same_origin(&req) {
        return html(
            403,
            page(
                "Forbidden",
                "<main><div class=\"card err\">Cross-site form post refused.</div></main>",
            ),
        );
    }
    let selected = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "m")
            .map(|(_, v)| v.into_owned())
    });
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match (
        method,
        segs.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Method::GET, ["admin"]) => dashboard(app, selected.as_deref(), None).await,
        (Method::POST, ["admin", "merchants"]) => {
            let form = form_of(req).await;
            let id = field(&form, "id").trim().to_owned();
            if !valid_merchant_id(&id) {
                let msg = Flash::err("商户编号只能包含字母、数字、_ 和 - / The merchant id must be 1 to 64 letters, digits, '_' or '-'.");
                return dashboard(app, None, Some(msg)).await;
            }
            redirect(&format!("/admin?m={id}"))
        }
        (Method::POST, ["admin", "merchants", id]) => {
            let form = form_of(req).await;
            save(app, id, &form).await
        }
        (Method::POST, ["admin", "merchants", id, "test"]) => test_connection(app, id).await,
        _ => html(
            404,
            page(
                "Not found",
                "<main><div class=\"card err\">No such admin page.</div></main>",
            ),
        ),
    }
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

async fn login(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let form = form_of(req).await;
    let given = field(&form, "token").trim();
    let expected = app.config.api_token.as_bytes();
    if given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected)) {
        Response::builder()
            .status(302)
            .header("location", "/admin")
            .header(
                "set-cookie",
                format!(
                    "{COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict",
                    session_value(app)
                ),
            )
            .body(Body::default())
            .expect("valid response")
    } else {
        tracing::warn!("admin login refused");
        html(401, login_page(Some("令牌不正确 / Wrong token")))
    }
}

fn login_page(error: Option<&str>) -> String {
    let err = error
        .map(|e| {
            format!(
                "<div class=\"card err\" id=\"login-error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    page(
        "payhost 管理登录",
        &format!(
            "<header><strong>payhost 支付宝手机网站支付</strong></header><main>{err}<div class=\"card\"><h2>管理登录 Admin login</h2>\
             <form method=\"post\" action=\"/admin/login\"><label for=\"token\">API 令牌 (api_token)</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\" id=\"login\">登录 Log in</button></form></div></main>"
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

async fn save(app: &Arc<App>, id: &str, form: &[(String, String)]) -> Response<Body> {
    if !valid_merchant_id(id) {
        return dashboard(app, None, Some(Flash::err("bad merchant id"))).await;
    }
    let existing = app.store.merchant(id).ok().flatten();
    let mut plugin = Vec::new();
    for f in &app.runtime.info.settings {
        let value = field(form, &f.name).trim();
        if value.is_empty() {
            // An empty secret or key field keeps what was saved before.
            if f.secret || f.kind == types::FieldKind::Pem {
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
        return dashboard(app, Some(id), Some(msg)).await;
    }
    let settings = MerchantSettings {
        plugin,
        shop_webhook_url: webhook_url,
        shop_webhook_secret: webhook_secret,
    };
    match app.configure_merchant(id, settings).await {
        Ok(_) => {
            dashboard(
                app,
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
            dashboard(app, Some(id), Some(flash)).await
        }
    }
}

async fn test_connection(app: &Arc<App>, id: &str) -> Response<Body> {
    let Ok(Some(merchant)) = app.store.merchant(id) else {
        return dashboard(app, None, Some(Flash::err("unknown merchant"))).await;
    };
    let policy = app.merchant_policy(&merchant);
    let order = types::PaymentRequest {
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
    let flash = match app.runtime.session().await {
        Err(e) => Flash::err(&e.to_string()),
        Ok(mut s) => match s.start_payment(&policy, &crate::runtime::pairs(merchant.plugin.clone()), &order).await {
            Err(e) => Flash::err(&e.to_string()),
            Ok(Ok(_)) => Flash::ok("连接正常：网关签发了令牌 / Connection OK: the gateway accepted a signed request and issued a token."),
            Ok(Err(types::PluginError::Gateway(g))) => Flash::err(&format!(
                "网关拒绝 / The gateway refused: {} {} {} {}",
                g.code,
                g.msg,
                g.detail,
                gateway_hint(&g)
            )),
            Ok(Err(e)) => Flash::err(&crate::runtime::plugin::describe_plugin_error(&e)),
        },
    };
    dashboard(app, Some(id), Some(flash)).await
}

async fn dashboard(app: &Arc<App>, selected: Option<&str>, flash: Option<Flash>) -> Response<Body> {
    let ids = app.store.merchant_ids().unwrap_or_default();
    let selected = selected
        .map(str::to_owned)
        .or_else(|| ids.first().cloned())
        .unwrap_or_default();
    let mut body = String::from(
        "<header><strong>payhost 支付宝手机网站支付 · 管理</strong><a href=\"/admin/logout\">退出 Log out</a></header><main>",
    );
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
    body.push_str(
        "<form method=\"post\" action=\"/admin/merchants\" style=\"display:inline\"><input name=\"id\" placeholder=\"新商户编号 new merchant id\" style=\"width:200px\"> \
         <button class=\"secondary\" type=\"submit\">添加 Add</button></form></div>",
    );
    if !selected.is_empty() {
        let merchant = app.store.merchant(&selected).ok().flatten();
        body.push_str(&merchant_form(app, &selected, merchant.as_ref()));
        body.push_str(&recent(app, &selected));
    }
    body.push_str("</main>");
    html(200, page("payhost 管理", &body))
}

fn merchant_form(app: &App, id: &str, m: Option<&MerchantSettings>) -> String {
    let mut f = format!(
        "<div class=\"card\"><h2>商户 {0}</h2><p class=\"muted\">Alipay 通知地址 notify_url: <code>{1}</code><br>返回地址 call_back_url: <code>{2}</code></p>\
         <form method=\"post\" action=\"/admin/merchants/{0}\" id=\"settings\">",
        esc(id),
        esc(&app.config.notify_url(id)),
        esc(&app.config.return_url(id))
    );
    for s in &app.runtime.info.settings {
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
            types::FieldKind::Select => {
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
            types::FieldKind::Pem => {
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
            types::FieldKind::Secret => {
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
         <p class=\"muted\">粘贴合作者身份ID和安全校验码时不要带空格（多余的空格会被自动去掉）。Pasted values are trimmed.</p>\
         <button type=\"submit\" id=\"save\">保存 Save</button></form>\
         <form method=\"post\" action=\"/admin/merchants/{}/test\"><button class=\"secondary\" type=\"submit\" id=\"test\">测试连接 Test connection</button></form></div>\
         <script>document.querySelectorAll('.pemfile').forEach(function(i){{i.addEventListener('change',function(){{var f=i.files[0];if(!f)return;var r=new FileReader();r.onload=function(){{document.getElementById(i.dataset.target).value=r.result}};r.readAsText(f)}})}})</script>",
        esc(&hook),
        esc(&if secret.is_empty() { String::new() } else { format!("{secret} — 留空保持不变 / leave empty to keep") }),
        esc(id)
    ));
    f
}

fn recent(app: &App, id: &str) -> String {
    let mut out = String::from("<div class=\"card\"><h3>最近的支付 Recent payments</h3><table id=\"payments\"><tr><th>订单号</th><th>金额</th><th>状态</th><th>卖家</th><th>支付宝交易号</th><th>创建</th></tr>");
    for p in app.store.recent_payments(Some(id), 20).unwrap_or_default() {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"status-{}\">{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
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
    out
}
