//! Merchants: the list with their counts, a merchant's page (the settings form built from its
//! component, test connection, recent payments and notifications, dead letters, API tokens), and
//! the posts that change them. A refused save comes back with every error next to its field and
//! what was typed (never a secret).

use super::view::{Flash, ShownOnce};
use super::{audit, enc, field, yuan, Ctx, Form, Page, PostResult, Posted};
use crate::config::{valid_merchant_id, MerchantSettings};
use crate::runtime::plugin_api::{FieldError, FieldKind, SettingField};
use crate::runtime::PluginRuntime;
use crate::service::{mask, App, CHANGED_MEANWHILE};
use minijinja::{context, Value};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// When the settings form shows a field: `(setting, values)` from the component's schema
/// (contract 0.4.0's `shown-when`); None: always.
fn shown_when(f: &SettingField) -> Option<(String, Vec<String>)> {
    f.shown_when
        .as_ref()
        .map(|w| (w.setting.clone(), w.values.clone()))
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

fn is_secret(f: &SettingField) -> bool {
    f.secret || matches!(f.kind, FieldKind::Pem | FieldKind::Secret)
}

#[derive(Serialize)]
struct PluginView {
    id: String,
    name: String,
}

fn plugin_views(app: &App) -> Vec<PluginView> {
    app.plugins
        .iter()
        .map(|p| PluginView {
            id: p.info.id.clone(),
            name: p.info.name.clone(),
        })
        .collect()
}

/// The demo's sandbox settings a merchant gets when it leaves them out (empty elsewhere).
fn sandbox_defaults(app: &App) -> Vec<BTreeMap<&'static str, String>> {
    app.default_settings
        .iter()
        .map(|(n, v)| BTreeMap::from([("name", n.clone()), ("value", v.clone())]))
        .collect()
}

/// The values of a merchant's select settings (the API family, the mode…), for the list.
fn family(app: &App, m: &MerchantSettings) -> String {
    let Some(p) = app.plugins.for_merchant(m) else {
        return String::new();
    };
    p.info
        .settings
        .iter()
        .filter(|f| f.kind == FieldKind::Select)
        .filter_map(|f| m.get(&f.name).or(f.default_value.as_deref()))
        .collect::<Vec<_>>()
        .join(" · ")
}

pub async fn list(app: &Arc<App>, ctx: &Ctx) -> Page {
    let counts = app.store.merchant_counts().await.unwrap_or_default();
    let ids = visible_ids(app, ctx).await;
    let mut stored = Vec::with_capacity(ids.len());
    for id in &ids {
        stored.push(app.store.merchant(id).await.ok().flatten());
    }
    let merchants: Vec<Value> = ids
        .iter()
        .zip(stored)
        .map(|(id, m)| {
            let c = counts.iter().find(|c| &c.id == id).cloned().unwrap_or_default();
            context! {
                id,
                plugin => m.as_ref().and_then(|m| app.plugins.for_merchant(m)).map(|p| p.info.name.clone()).unwrap_or_default(),
                mode => m.as_ref().map(|m| family(app, m)).unwrap_or_default(),
                payments => c.payments, paid => c.paid, waiting => c.waiting,
                paid_amount => yuan(c.paid_fen),
            }
        })
        .collect();
    let (errors, typed, _) = ctx.form_state();
    Page::View {
        template: "merchants.html",
        section: "merchants",
        values: context! {
            merchants, errors, typed,
            plugins => plugin_views(app),
            sandbox => !app.default_settings.is_empty(),
        },
    }
}

/// The merchants this user's lists hold.
pub async fn visible_ids(app: &App, ctx: &Ctx) -> Vec<String> {
    let all = app.store.merchant_ids().await.unwrap_or_default();
    match ctx.who.only() {
        None => all,
        Some(mine) => all.into_iter().filter(|m| mine.contains(m)).collect(),
    }
}

/// A short digest of a merchant's stored row (`new`: none yet), carried by its settings form: a
/// save from a page opened before someone else changed the merchant is refused, not taken over
/// their change (the form sends every setting, as it was on that page).
fn row_version(stored: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match stored {
        Some(text) => Sha256::digest(text.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        None => "new".into(),
    }
}

pub async fn page(app: &Arc<App>, ctx: &Ctx, id: &str) -> Page {
    if !ctx.who.sees(id) || !valid_merchant_id(id) {
        return Page::NotFound;
    }
    let stored = app.store.merchant_stored(id).await.ok().flatten();
    let version = row_version(stored.as_deref());
    let merchant = stored
        .as_deref()
        .and_then(|text| crate::store::parse_merchant(text).ok());
    // A new merchant's empty form is the operator's to fill; an owner sees existing ones only.
    if merchant.is_none() && !ctx.who.operator() {
        return Page::NotFound;
    }
    let Some(plugin) = form_plugin(app, merchant.as_ref(), Some(ctx.q("plugin"))) else {
        return Page::NotFound;
    };
    let (errors, typed, _) = ctx.form_state();
    let refused = ctx.flash.as_ref().filter(|f| !f.ok);
    let typed_of = |name: &str| refused.and_then(|f| f.typed.get(name).cloned());
    let error_of = |name: &str| refused.and_then(|f| f.field_errors.get(name).cloned());
    let m = merchant.as_ref();
    // What decides which fields show: the typed or saved value of each select.
    let value_of = |name: &str| -> String {
        typed_of(name)
            .or_else(|| m.and_then(|m| m.get(name)).map(str::to_owned))
            .or_else(|| {
                plugin
                    .info
                    .field(name)
                    .and_then(|f| f.default_value.clone())
            })
            .unwrap_or_default()
    };
    let fields: Vec<Value> = plugin
        .info
        .settings
        .iter()
        .map(|s| {
            let saved = m.and_then(|m| m.get(&s.name)).unwrap_or("");
            let when = shown_when(s);
            let hidden = when
                .as_ref()
                .is_some_and(|(setting, values)| !values.iter().any(|v| v.eq_ignore_ascii_case(&value_of(setting))));
            // Beside the label: in Chinese the setting's own key (what payhost.toml and Alipay's
            // documents call it), unless the label says it already; in English the Chinese label
            // (what Alipay's Chinese back office calls it).
            let (label, label_other) = match ctx.lang {
                super::Lang::Zh if s.label_zh.contains(s.name.as_str()) => (s.label_zh.clone(), String::new()),
                super::Lang::Zh => (s.label_zh.clone(), s.name.clone()),
                super::Lang::En => (s.label_en.clone(), s.label_zh.clone()),
            };
            let secret = is_secret(s);
            let kind = match s.kind {
                FieldKind::Select => "select",
                FieldKind::Pem => "pem",
                FieldKind::Url => "url",
                _ => "text",
            };
            let placeholder = match (s.kind, secret, saved.is_empty()) {
                (FieldKind::Pem, _, true) => "-----BEGIN …".to_owned(),
                (FieldKind::Pem, _, false) => ctx.t("已设置 — 粘贴新密钥以替换", "set — paste to replace").to_owned(),
                (_, true, false) => format!("{} — {}", mask(saved), ctx.t("留空保持不变", "leave empty to keep")),
                (_, true, true) => String::new(),
                _ => s.default_value.clone().unwrap_or_default(),
            };
            let chosen = value_of(&s.name);
            let options: Vec<Value> = s
                .options
                .iter()
                .map(|o| context! {
                    value => o.value,
                    label => ctx.t(&o.label_zh, &o.label_en),
                    selected => o.value.eq_ignore_ascii_case(&chosen),
                })
                .collect();
            // Shop owners read the rule in Chinese where the manifest gives it; a refusal leads
            // with it, the component's own words after it for support.
            let rule = match (ctx.lang, &s.rule_zh) {
                (super::Lang::Zh, Some(zh)) => zh.clone(),
                _ => s.rule.clone(),
            };
            let error = error_of(&s.name).map(|reason| setting_error_words(ctx, Some(s), reason));
            context! {
                name => s.name, label, label_other, rule, kind, secret, placeholder, options,
                // A secret is never put back into the page, typed or saved.
                value => if secret { String::new() } else { typed_of(&s.name).unwrap_or_else(|| saved.to_owned()) },
                saved => if secret && !saved.is_empty() { mask(saved) } else { String::new() },
                error,
                hidden,
                shown_when => when.map(|(setting, values)| context! { setting, values }),
            }
        })
        .collect();
    let webhook_url = typed_of("shop_webhook_url").unwrap_or_else(|| {
        m.and_then(|m| m.shop_webhook_url.clone())
            .unwrap_or_default()
    });
    let webhook_secret_placeholder = m
        .and_then(|m| m.shop_webhook_secret.as_deref())
        .map(|s| {
            format!(
                "{} — {}",
                mask(s),
                ctx.t("留空保持不变", "leave empty to keep")
            )
        })
        .unwrap_or_default();
    let shop_origins = typed_of("shop_origins")
        .unwrap_or_else(|| m.map(|m| m.shop_origins.join("\n")).unwrap_or_default());
    let zone = &app.config.admin.time_zone;
    let payments: Vec<Value> = if m.is_some() {
        app.store
            .recent_payments(Some(id), 20).await
            .unwrap_or_default()
            .into_iter()
            .map(|p| context! {
                url => format!("/admin/merchants/{}/payments/{}", enc(id), enc(&p.out_trade_no)),
                out_trade_no => p.out_trade_no, amount => p.total_fee(), status => p.status,
                review_explained => p.review.as_deref().map(|r| super::words::review_explained(ctx.lang, r)),
                review => p.review, created => zone.show(&p.created_at),
            })
            .collect()
    } else {
        Vec::new()
    };
    let notifications: Vec<Value> = if m.is_some() {
        app.store
            .recent_notifications(Some(id), None, 20)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                context! {
                    raw_id => n.raw_id, received => zone.show(&n.received_at),
                    out_trade_no => n.out_trade_no, trade_status => n.trade_status,
                    outcome_word => n.outcome.as_deref().map(|o| super::timeline::outcome_word(ctx.lang, o)),
                    outcome => n.outcome,
                    // In words first; the codes stay in the cells' titles for support.
                    detail_words => n.detail.as_deref().map(|d| super::timeline::note_words(ctx.lang, d).join(" · ")),
                    detail => n.detail,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let tokens: Vec<Value> = if m.is_some() {
        app.store
            .tokens(Some(id))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                context! {
                    id => t.id, label => t.label, created => zone.show(&t.created_at),
                    revoked => t.revoked_at.map(|r| zone.show(&r)),
                    // Removing that admin user revokes it: the list says whose it is.
                    by => t.created_by.map(|b| super::words::who(ctx.lang, &b)),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let _ = typed;
    // A token asked to be revoked: its row asks to confirm.
    let revoke_asked = ctx
        .flash
        .as_ref()
        .and_then(|f| f.typed.get("revoke").cloned())
        .unwrap_or_default();
    Page::View {
        template: "merchant.html",
        section: "merchants",
        values: context! {
            id, exists => m.is_some(), fields, errors, version,
            plugin => PluginView { id: plugin.info.id.clone(), name: plugin.info.name.clone() },
            notify_url => app.config.notify_url(id), return_url => app.config.return_url(id),
            sandbox => sandbox_defaults(app),
            webhook_url, webhook_secret_placeholder, shop_origins,
            payments, notifications, tokens, revoke_asked,
            dead => dead_views(app, ctx.lang, Some(id)).await, dead_merchant => id,
            retrying => retrying_views(app, ctx.lang, Some(id)).await,
            give_up => give_up_text(app, ctx.lang),
        },
    }
}

/// The webhooks a shop refused, still being retried: the owner sees a broken shop endpoint the
/// same hour, not once it is given up on (3 days by default).
pub(super) async fn retrying_views(
    app: &App,
    lang: super::view::Lang,
    merchant: Option<&str>,
) -> Vec<Value> {
    let zone = &app.config.admin.time_zone;
    let at = |ms: i64| zone.show(&crate::store::format_unix((ms.max(0) / 1000) as u64));
    app.store
        .retrying_webhooks(merchant, 500)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            context! {
                id => w.id, merchant_id => w.merchant_id, event_type => w.event_type,
                url => w.out_trade_no.as_deref().map(|no| super::payments::payment_url(&w.merchant_id, no)),
                event_words => event_words(lang, &w.event_type),
                out_trade_no => w.out_trade_no, attempts => w.attempts,
                queued_at => at(w.created_ms), next_at => at(w.next_attempt_ms),
                reason => super::timeline::webhook_failure_words(lang, w.last_error.as_deref().unwrap_or_default(), false),
            }
        })
        .collect()
}

/// A webhook's event in the owner's words (the event's own name beside it, as the shop sees it).
pub(super) fn event_words(lang: super::view::Lang, event: &str) -> String {
    let zh = lang == super::view::Lang::Zh;
    let said = match event {
        "payment.paid" => Some(if zh { "已付款" } else { "paid" }),
        "payment.partially_refunded" => Some(if zh {
            "部分退款"
        } else {
            "partly refunded"
        }),
        "payment.refunded" => Some(if zh { "已退款" } else { "refunded" }),
        "payment.closed" => Some(if zh { "已关闭" } else { "closed" }),
        "payment.finished" => Some(if zh {
            "交易完成（不能再退款）"
        } else {
            "finished (no more refunds)"
        }),
        _ => None,
    };
    match said {
        Some(w) => format!("{w} ({event})"),
        None => event.to_owned(),
    }
}

/// How long a webhook is retried before it is given up on, in words.
pub(super) fn give_up_text(app: &App, lang: super::view::Lang) -> String {
    let zh = lang == super::view::Lang::Zh;
    let s = app.config.webhooks.give_up_after_ms / 1000;
    let (n, unit) = match s {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, if zh { " 天" } else { " d" }),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, if zh { " 小时" } else { " h" }),
        s if s >= 60 && s % 60 == 0 => (s / 60, if zh { " 分钟" } else { " min" }),
        s => (s, if zh { " 秒" } else { " s" }),
    };
    format!("{n}{unit}")
}

async fn dead_views(app: &App, lang: super::view::Lang, merchant: Option<&str>) -> Vec<Value> {
    dead_of(app, merchant)
        .await
        .into_iter()
        .map(|w| {
            context! {
                id => w.id, merchant_id => w.merchant_id, event_id => w.event_id,
                url => w.out_trade_no.as_deref().map(|no| super::payments::payment_url(&w.merchant_id, no)),
                out_trade_no => w.out_trade_no,
                event_type => w.event_type, event_words => event_words(lang, &w.event_type),
                attempts => w.attempts,
                dead_at => app.config.admin.time_zone.show(&w.dead_at),
                reason => super::timeline::webhook_failure_words(lang, w.last_error.as_deref().unwrap_or_default(), true),
            }
        })
        .collect()
}

/// The most dead letters one page lists (per merchant).
const DEAD_PAGE: u32 = 500;
/// The most "Resend all" queues in one click (per merchant): beyond any real backlog.
const RESEND_ALL_AT_MOST: u32 = 100_000;

async fn dead_of(app: &App, merchant: Option<&str>) -> Vec<crate::store::DeadWebhook> {
    app.store
        .dead_webhooks(merchant, DEAD_PAGE)
        .await
        .unwrap_or_default()
}

pub async fn dead_letters(app: &Arc<App>, ctx: &Ctx) -> Page {
    let (dead, retrying): (Vec<Value>, Vec<Value>) = match ctx.who.only() {
        None => (
            dead_views(app, ctx.lang, None).await,
            retrying_views(app, ctx.lang, None).await,
        ),
        Some(mine) => {
            let (mut dead, mut retrying) = (Vec::new(), Vec::new());
            for m in mine {
                dead.extend(dead_views(app, ctx.lang, Some(m)).await);
                retrying.extend(retrying_views(app, ctx.lang, Some(m)).await);
            }
            (dead, retrying)
        }
    };
    Page::View {
        template: "webhooks.html",
        section: "webhooks",
        values: context! { dead, dead_merchant => (), retrying, give_up => give_up_text(app, ctx.lang) },
    }
}

/// Whether a text holds Chinese (a CJK ideograph or full-width punctuation): the host's own
/// refusals do, the component's do not.
fn has_chinese(text: &str) -> bool {
    text.chars().any(|c| {
        ('\u{4e00}'..='\u{9fff}').contains(&c)
            || ('\u{3000}'..='\u{303f}').contains(&c)
            || ('\u{ff00}'..='\u{ffef}').contains(&c)
    })
}

fn merchant_page(id: &str) -> String {
    format!("/admin/merchants/{}", enc(id))
}

/// What the merchant pages call a field, in the page's language: the host's own fields, then
/// the component's settings (its `label_zh` / `label_en`). Empty when the field is neither.
fn field_label(ctx: &Ctx, runtime: Option<&PluginRuntime>, field: &str) -> String {
    let host = match field {
        "id" | "slot_id" => Some(("商户编号", "Merchant id")),
        "plugin" => Some(("插件", "Component")),
        "shop_origins" => Some(("商城地址", "Shop origins")),
        "label" => Some(("标签", "Label")),
        "shop_webhook_url" => Some(("商城通知地址", "Shop webhook URL")),
        "shop_webhook_secret" => Some(("商城通知密钥", "Shop webhook secret")),
        _ => None,
    };
    if let Some((zh, en)) = host {
        return ctx.t(zh, en).to_owned();
    }
    runtime
        .and_then(|r| r.info.field(field))
        .map(|s| ctx.t(&s.label_zh, &s.label_en).to_owned())
        .unwrap_or_default()
}

/// Why a setting was refused, in the page's language: the component's reasons are English, so on
/// the Chinese page they come after the setting's Chinese rule (and the origin and must-be-empty
/// refusals in words of their own). The same words beside the field and in the list above.
fn setting_error_words(
    ctx: &Ctx,
    setting: Option<&crate::runtime::plugin_api::SettingField>,
    reason: String,
) -> String {
    let rule_zh = setting.and_then(|s| s.rule_zh.as_ref());
    match (ctx.lang, rule_zh) {
        // The operator's origin list refused it: the rule was kept, the address is not
        // one this host may call.
        (super::Lang::Zh, _)
            if reason.starts_with("the origin ") && reason.contains("is not allowed") =>
        {
            format!("这个地址不在允许范围内：一般请留空，用默认的正式地址；确需使用其他地址，请运营者在 payhost.toml 的 [outbound] allowed_origins 里加上它（{reason}）")
        }
        (super::Lang::Zh, _) if reason.starts_with("must be empty") => {
            format!("此项应留空（{reason}）")
        }
        // (The host's own refusals are in Chinese already; the component's are not,
        // "…" and all.)
        (super::Lang::Zh, Some(zh)) if !has_chinese(&reason) => {
            format!("请按要求填写：{zh}（{reason}）")
        }
        _ => reason,
    }
}

/// A refused form: its errors by field, what was typed (no secrets), and where to show it.
fn refused(
    (ctx, runtime): (&Ctx, Option<&PluginRuntime>),
    location: String,
    text: &str,
    errors: Vec<(String, String)>,
    typed: BTreeMap<String, String>,
) -> PostResult {
    let mut field_errors = BTreeMap::new();
    for (f, m) in errors {
        field_errors
            .entry(f)
            .and_modify(|e: &mut String| {
                if !e.contains(&m) {
                    e.push_str("; ");
                    e.push_str(&m);
                }
            })
            .or_insert(m);
    }
    let mut flash = Flash::err(text);
    flash.errors = field_errors
        .iter()
        .map(|(f, m)| super::view::ListedError {
            field: f.clone(),
            label: field_label(ctx, runtime, f),
            message: setting_error_words(ctx, runtime.and_then(|r| r.info.field(f)), m.clone()),
        })
        .collect();
    flash.field_errors = field_errors;
    flash.typed = typed;
    PostResult::Done(Posted {
        location,
        flash: Some(Box::new(flash)),
    })
}

pub async fn add(app: &Arc<App>, ctx: &Ctx, form: &Form) -> PostResult {
    if !ctx.who.operator() {
        return PostResult::Forbidden;
    }
    let id = field(form, "id").trim().to_owned();
    if !valid_merchant_id(&id) {
        return refused(
            (ctx, None),
            "/admin/merchants".into(),
            ctx.t("未添加", "Not added"),
            vec![(
                "id".into(),
                ctx.t(
                    "商户编号只能包含 1 到 64 个字母、数字、_ 和 -",
                    "1 to 64 letters, digits, '_' or '-'",
                )
                .into(),
            )],
            BTreeMap::from([("id".to_owned(), id)]),
        );
    }
    // An id in use opens that merchant's page, saying so: nothing of it is replaced until saved.
    if app.store.merchant(&id).await.ok().flatten().is_some() {
        return PostResult::Done(Posted::to(
            merchant_page(&id),
            Flash::err(format!(
                "{} {id} {}",
                ctx.t("商户", "Merchant"),
                ctx.t(
                    "已存在：这是它现在的设置，保存会修改它；要新建请换一个编号",
                    "exists already: these are its settings, and saving changes them; choose another id for a new one"
                )
            )),
        ));
    }
    let plugin = field(form, "plugin").trim();
    let mut to = merchant_page(&id);
    if !plugin.is_empty() {
        to.push_str(&format!("?plugin={}", enc(plugin)));
    }
    PostResult::Done(Posted {
        location: to,
        flash: None,
    })
}

pub async fn connect_shop(app: &Arc<App>, ctx: &Ctx, form: &Form) -> PostResult {
    if !ctx.who.operator() {
        return PostResult::Forbidden;
    }
    // Connect a shop: the merchant slot with its token and shop secret, shown once.
    let id = field(form, "id").trim().to_owned();
    let plugin = match field(form, "plugin").trim() {
        "" => app.plugins.ids().first().cloned().unwrap_or_default(),
        p => p.to_owned(),
    };
    let typed = BTreeMap::from([
        ("slot_id".to_owned(), id.clone()),
        (
            "shop_origins".to_owned(),
            field(form, "shop_origins").to_owned(),
        ),
        ("label".to_owned(), field(form, "label").to_owned()),
    ]);
    let mut errors = Vec::new();
    if !valid_merchant_id(&id) {
        errors.push((
            "slot_id".to_owned(),
            ctx.t(
                "商户编号只能包含 1 到 64 个字母、数字、_ 和 -",
                "1 to 64 letters, digits, '_' or '-'",
            )
            .to_owned(),
        ));
    }
    if app.plugins.get(&plugin).is_none() {
        errors.push((
            "plugin".to_owned(),
            format!(
                "{} {plugin:?}",
                ctx.t(
                    "本机没有加载这个插件：",
                    "this host has not loaded the component"
                )
            ),
        ));
    }
    let origins: Vec<String> = field(form, "shop_origins")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if origins.is_empty() {
        errors.push((
            "shop_origins".to_owned(),
            ctx.t(
                "至少需要一个商城地址（https://shop.example）",
                "at least one is required (https://shop.example)",
            )
            .to_owned(),
        ));
    }
    if !errors.is_empty() {
        return refused(
            (ctx, None),
            "/admin/merchants".into(),
            ctx.t("未创建", "Not created"),
            errors,
            typed,
        );
    }
    match crate::onboarding::add_merchant(
        app.store.as_ref(),
        &id,
        &plugin,
        &origins,
        field(form, "label"),
        &ctx.who.name,
    )
    .await
    {
        Ok(m) => {
            audit(
                app,
                &ctx.who,
                "merchant.connect",
                Some(&id),
                &format!("token #{}", m.token_id),
            )
            .await;
            let mut flash = Flash::ok(format!(
                "{} {id}: {}",
                ctx.t("商户已创建", "Merchant created"),
                ctx.t(
                    "以下两项只显示这一次，请填入商城的支付方式设置",
                    "shown only this once, put both into the shop's payment settings"
                )
            ));
            flash.secrets = vec![
                ShownOnce {
                    id: "new-token".into(),
                    label: format!("API {} #{}", ctx.t("令牌", "token"), m.token_id),
                    value: m.token.expose().to_owned(),
                },
                ShownOnce {
                    id: "new-shop-secret".into(),
                    label: ctx.t("商户密钥", "shop secret").into(),
                    value: m.shop_secret.expose().to_owned(),
                },
            ];
            PostResult::Done(Posted::to(merchant_page(&id), flash))
        }
        Err(e) => {
            let field = if e.starts_with("shop_origin") {
                "shop_origins"
            } else {
                "slot_id"
            };
            refused(
                (ctx, None),
                "/admin/merchants".into(),
                ctx.t("未创建", "Not created"),
                vec![(field.to_owned(), e)],
                typed,
            )
        }
    }
}

/// The component's own errors for these settings, without saving anything.
async fn validate_only(
    app: &App,
    runtime: &PluginRuntime,
    settings: &MerchantSettings,
) -> Vec<FieldError> {
    let mut values = settings.settings.clone();
    match app.validate_with_defaults(runtime, &mut values).await {
        Ok(_) => Vec::new(),
        // The component could not be asked: configure_merchant already said so.
        Err(errors) if errors.iter().all(|e| e.field == "plugin") => Vec::new(),
        Err(errors) => errors,
    }
}

pub async fn save(app: &Arc<App>, ctx: &Ctx, id: &str, form: &Form) -> PostResult {
    if !ctx.who.sees(id) || !valid_merchant_id(id) {
        return PostResult::NotFound;
    }
    // Read once; the save goes through only if the row is still this (settings are saved
    // whole, and the secrets left empty here are filled from it).
    let before = match app.store.merchant_stored(id).await {
        Ok(before) => before,
        // Not "no merchant": a save from that would be refused as changed meanwhile.
        Err(e) => {
            tracing::error!(merchant = id, error = %format!("{e:#}"), "admin: cannot read a merchant to save it");
            return PostResult::Done(Posted::to(
                merchant_page(id),
                Flash::err(ctx.t(
                    "未保存：暂时读不到数据库，请稍后再试",
                    "Not saved: the database could not be read; try again shortly",
                )),
            ));
        }
    };
    let existing = before
        .as_deref()
        .and_then(|text| crate::store::parse_merchant(text).ok());
    if existing.is_none() && !ctx.who.operator() {
        return PostResult::NotFound;
    }
    let page_url = merchant_page(id);
    // A form without a version (an older page, a script) is checked at the save only.
    let shown = field(form, "version").trim();
    if !shown.is_empty() && shown != row_version(before.as_deref()) {
        return PostResult::Done(Posted::to(page_url, changed_meanwhile(ctx)));
    }
    // A shop owner's slot is bound by the operator, as a merchant token's is in the API
    // (`api::merchants::bind_to_slot`): the component and the shop origins stay as the operator
    // set them, and a webhook URL the owner changes must be on those origins.
    let bound = existing.as_ref().filter(|_| !ctx.who.operator());
    let chosen = field(form, "plugin").trim().to_owned();
    let chosen = Some(chosen.as_str()).filter(|_| bound.is_none());
    let Some(runtime) = form_plugin(app, existing.as_ref(), chosen) else {
        return PostResult::Done(Posted::to(
            page_url,
            Flash::err(format!(
                "plugin: {:?} is not loaded by this host",
                chosen.unwrap_or_default()
            )),
        ));
    };
    let mut typed = BTreeMap::new();
    let mut plugin = Vec::new();
    for f in &runtime.info.settings {
        let value = field(form, &f.name).trim();
        if !is_secret(f) {
            typed.insert(f.name.clone(), value.to_owned());
        }
        // A field the form hides (another API family) is not saved.
        if let Some((setting, values)) = shown_when(f) {
            // A form without the deciding field (an older page, a script) means its default.
            let mut decider = field(form, &setting).trim();
            if decider.is_empty() {
                decider = runtime
                    .info
                    .settings
                    .iter()
                    .find(|d| d.name == setting)
                    .and_then(|d| d.default_value.as_deref())
                    .unwrap_or("");
            }
            if !values.iter().any(|v| v.eq_ignore_ascii_case(decider)) {
                continue;
            }
        }
        if value.is_empty() {
            // An empty secret or key field keeps what was saved before.
            if is_secret(f) {
                if let Some(old) = existing.as_ref().and_then(|m| m.get(&f.name)) {
                    plugin.push((f.name.clone(), old.to_owned()));
                }
            }
            continue;
        }
        plugin.push((f.name.clone(), value.to_owned()));
    }
    typed.insert(
        "shop_webhook_url".into(),
        field(form, "shop_webhook_url").trim().to_owned(),
    );
    let origins_text = match bound {
        Some(slot) => slot.shop_origins.join("\n"),
        None => field(form, "shop_origins").to_owned(),
    };
    typed.insert("shop_origins".into(), origins_text.clone());
    let webhook_url =
        Some(field(form, "shop_webhook_url").trim().to_owned()).filter(|s| !s.is_empty());
    let webhook_secret = Some(field(form, "shop_webhook_secret").trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            existing
                .as_ref()
                .and_then(|m| m.shop_webhook_secret.clone())
        });
    let mut errors: Vec<(String, String)> = Vec::new();
    let raw_origins: Vec<String> = origins_text
        .split(['\n', ',', ' '])
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    // Each entry by the configuration's rule; those refused said once, in the page's words (the
    // rule's text names payhost.toml's path).
    let mut shop_origins = Vec::new();
    let mut not_origins = Vec::new();
    for o in raw_origins {
        let probe = crate::config::RawMerchant {
            shop_origins: Some(vec![o.clone()]),
            ..Default::default()
        };
        let mut problems = Vec::new();
        let read = crate::config::merchant_settings(id, &probe, None, &mut problems).shop_origins;
        if problems.is_empty() {
            shop_origins.extend(read);
        } else {
            not_origins.push(match ctx.lang {
                super::Lang::Zh => format!("“{o}”"),
                super::Lang::En => format!("{o:?}"),
            });
        }
    }
    if !not_origins.is_empty() {
        errors.push((
            "shop_origins".into(),
            format!(
                "{}{}",
                ctx.t(
                    "不是网站的来源地址（只写协议和域名，一行一个，例如 https://shop.example）：",
                    "not an origin (scheme and host only, one per line, such as https://shop.example): "
                ),
                not_origins.join(ctx.t("、", ", "))
            ),
        ));
    }
    if let Some(u) = &webhook_url {
        if !crate::config::is_http_url(u) {
            errors.push((
                "shop_webhook_url".into(),
                format!(
                    "{}{}",
                    ctx.t(
                        "必须是 http 或 https 的完整地址",
                        "must be an absolute http or https URL",
                    ),
                    crate::config::url_encoding_hint(u, ctx.lang == super::Lang::Zh)
                ),
            ));
        } else if u.contains('@') && crate::net::Origin::parse(u).is_err() {
            errors.push((
                "shop_webhook_url".into(),
                ctx.t(
                    "地址里不能带用户名或密码（通知用「商城通知密钥」签名）",
                    "must not carry a user name or password (webhooks are signed with the shop secret)",
                )
                .into(),
            ));
        }
        let changed = bound.is_some_and(|slot| slot.shop_webhook_url.as_ref() != Some(u));
        if let Some(slot) = bound
            // (A URL that is not one is refused above, by what is wrong with it.)
            .filter(|slot| {
                changed
                    && crate::config::is_http_url(u)
                    && (slot.shop_origins.is_empty() || !slot.return_url_allowed(u))
            })
        {
            let origins = if slot.shop_origins.is_empty() {
                ctx.t(
                    "未绑定，请运营者先绑定商城地址",
                    "none bound: ask the operator to bind one",
                )
                .to_owned()
            } else {
                slot.shop_origins.join(", ")
            };
            errors.push((
                "shop_webhook_url".into(),
                format!(
                    "{}（{origins}）",
                    ctx.t(
                        "必须在运营者为本商户绑定的商城地址上",
                        "must be on the shop origins the operator bound to this merchant"
                    )
                ),
            ));
        }
        if webhook_secret.as_ref().is_none_or(|s| s.len() < 16) {
            errors.push((
                "shop_webhook_secret".into(),
                ctx.t(
                    "有商城通知地址时至少需要 16 个字符",
                    "at least 16 characters are required with a webhook URL",
                )
                .into(),
            ));
        }
    }
    let settings = MerchantSettings {
        settings: plugin,
        plugin_id: runtime.info.id.clone(),
        shop_webhook_url: webhook_url,
        shop_webhook_secret: webhook_secret,
        shop_origins,
        ..MerchantSettings::default()
    };
    if errors.is_empty() {
        match app
            .configure_merchant_after(id, settings.clone(), before.as_deref())
            .await
        {
            Ok(stored) => {
                // As a save through the API is: the names of what changed, never a value.
                let detail = crate::http::api::audit::settings_saved(existing.as_ref(), &stored);
                audit(app, &ctx.who, "settings.save", Some(id), &detail).await;
                return PostResult::Done(Posted::to(
                    page_url,
                    Flash::ok(ctx.t("已保存并校验", "Saved and validated.")),
                ));
            }
            Err(fields) if fields.iter().any(|f| f.field == CHANGED_MEANWHILE) => {
                return PostResult::Done(Posted::to(page_url, changed_meanwhile(ctx)));
            }
            Err(fields) => errors.extend(fields.into_iter().map(|f| (f.field, f.reason))),
        }
    }
    // Every problem at once: the component's too, even when the host's own checks failed first.
    for f in validate_only(app, runtime, &settings).await {
        if !errors.iter().any(|(n, r)| n == &f.field && r == &f.reason) {
            errors.push((f.field, f.reason));
        }
    }
    refused(
        (ctx, Some(runtime)),
        page_url,
        ctx.t(
            "未保存，请修改标出的字段",
            "Not saved: fix the marked fields",
        ),
        errors,
        typed,
    )
}

/// Why a save was refused whose page (or check) saw an older merchant.
fn changed_meanwhile(ctx: &Ctx) -> Flash {
    Flash::err(ctx.t(
        "未保存：你打开本页之后，这个商户已被别人修改或删除。下面是它现在的设置，请重新填写你的修改再保存。",
        "Not saved: someone else changed or removed this merchant after you opened this page. Its settings now are below: enter your change again.",
    ))
}

pub async fn test_connection(app: &Arc<App>, ctx: &Ctx, id: &str) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    let page_url = merchant_page(id);
    let Ok(Some(merchant)) = app.store.merchant(id).await else {
        return PostResult::NotFound;
    };
    // A trade query of an order that cannot exist: a signed request every product, API family
    // and mode can make (a payment would need a C2C merchant's seller), and the gateway's answer
    // ("no such trade") proves the keys. A refused signature comes back as the gateway's error.
    let policy = app.merchant_policy(&merchant);
    let probe = format!("PAYHOSTTEST{}", crate::store::now_ms());
    let session = match app.plugin_for(&merchant) {
        Ok(p) => p.session().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    use crate::runtime::plugin_api::PluginError as E;
    let flash = match session {
        Err(e) => Flash::err(e),
        Ok(mut s) => match s.query_trade(&policy, &merchant.settings, &probe).await {
            Err(e) => Flash::err(format!(
                "{}（{e}）",
                ctx.t("支付组件出错，请稍后再试", "The payment component failed; try again later")
            )),
            Ok(Ok(_)) => Flash::ok(ctx.t(
                "连接正常：支付平台接受了签名请求",
                "Connection OK: the provider accepted a signed request.",
            )),
            // `detail` is the component's plain-language help for the error.
            Ok(Err(E::Gateway(g))) => Flash::err(format!(
                "{}: {} {} {}",
                ctx.t(
                    "支付宝拒绝了请求，请核对设置",
                    "The gateway refused: check the settings"
                ),
                g.code,
                g.msg,
                g.detail
            )),
            // Nothing the endpoint answered is shown (an owner could otherwise read the start of
            // any page on an allowed origin): the API's fixed words and a correlation id, the
            // detail in the log.
            Ok(Err(e @ E::Transport(_))) => {
                // An HTTP error is an answer: the gateway was reached.
                let answered = match &e {
                    E::Transport(m) => m
                        .split("answered HTTP ")
                        .nth(1)
                        .and_then(|r| r.get(..3))
                        .and_then(|c| c.parse::<u16>().ok()),
                    _ => None,
                };
                let lead = match answered {
                    Some(code) if code >= 500 => ctx.t(
                        "支付宝网关暂时出错：设置无需修改，请几分钟后再试",
                        "The gateway failed for now: the settings need no change; try again in a few minutes",
                    ),
                    Some(_) => ctx.t(
                        "支付宝网关不接受这个地址：请核对网关地址（一般留空，用默认的正式地址）",
                        "The gateway refused the address: check the gateway URL (usually left empty, for the default)",
                    ),
                    None => ctx.t(
                        "连不上支付宝网关：请检查本机能否访问外网、网关地址是否正确",
                        "Cannot reach the gateway: check this server's network and the gateway URL",
                    ),
                };
                Flash::err(format!(
                    "{lead}（{}）",
                    super::words::provider_message(ctx.lang, &crate::service::plugin_error_to_api(e).message)
                ))
            }
            Ok(Err(e @ E::Timeout(_))) => Flash::err(format!(
                "{}（{}）",
                ctx.t(
                    "支付宝网关没有及时回应，请稍后再试",
                    "The gateway did not answer in time; try again later"
                ),
                super::words::provider_message(ctx.lang, &crate::service::plugin_error_to_api(e).message)
            )),
            Ok(Err(E::InvalidSettings(fields))) => Flash::err(format!(
                "{}: {}",
                ctx.t("设置不完整或有误，请先修改并保存", "The settings are incomplete or wrong: fix and save them first"),
                fields
                    .iter()
                    .map(|f| format!("{} ({})", f.field, f.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Ok(Err(e @ E::BadSignature(_))) => Flash::err(format!(
                "{}（{}）",
                ctx.t(
                    "支付宝的回应签名不对：请核对支付宝公钥（或 MD5 密钥）",
                    "The provider's answer has a signature that does not verify: check Alipay's public key (or the MD5 key)"
                ),
                super::words::provider_message(ctx.lang, &crate::service::plugin_error_to_api(e).message)
            )),
            Ok(Err(e)) => Flash::err(format!(
                "{}（{}）",
                ctx.t(
                    "支付宝的回应无法识别：请核对网关地址",
                    "The provider's answer could not be understood: check the gateway URL"
                ),
                super::words::provider_message(ctx.lang, &crate::service::plugin_error_to_api(e).message)
            )),
        },
    };
    PostResult::Done(Posted::to(page_url, flash))
}

pub async fn new_token(app: &Arc<App>, ctx: &Ctx, id: &str, form: &Form) -> PostResult {
    if !ctx.who.sees(id) || app.store.merchant(id).await.ok().flatten().is_none() {
        return PostResult::NotFound;
    }
    let flash =
        match crate::http::new_merchant_token(app, id, field(form, "label"), &ctx.who.name).await {
            Ok((tid, token)) => {
                audit(
                    app,
                    &ctx.who,
                    "token.create",
                    Some(id),
                    &format!("token #{tid} {}", field(form, "label").trim()),
                )
                .await;
                let mut f = Flash::ok(ctx.t(
                    "新的 API 令牌只显示这一次，请存入商城",
                    "The new API token is shown only this once: store it in the shop",
                ));
                f.secrets = vec![ShownOnce {
                    id: "new-token".into(),
                    label: format!("#{tid}"),
                    value: token,
                }];
                f
            }
            Err(e) => Flash::err(e.message),
        };
    PostResult::Done(Posted::to(merchant_page(id), flash))
}

/// Revokes a token in two posts, as closing an order: a token's shop stops working the moment it
/// is revoked, and the button sits among others on a long page (one tap on a phone did it).
pub async fn revoke_token(
    app: &Arc<App>,
    ctx: &Ctx,
    id: &str,
    tid: &str,
    form: &super::Form,
) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    if super::field(form, "confirm") != "1" {
        let mut f = Flash::ok(ctx.t(
            "还没有吊销：请在下面确认要吊销的令牌",
            "Not revoked yet: confirm the token below",
        ));
        f.typed.insert("revoke".into(), tid.to_owned());
        return PostResult::Done(Posted::to(format!("{}#tokens", merchant_page(id)), f));
    }
    let ok = match tid.parse::<i64>() {
        Ok(t) => app.store.revoke_token(t, Some(id)).await.unwrap_or(false),
        Err(_) => false,
    };
    let flash = if ok {
        audit(
            app,
            &ctx.who,
            "token.revoke",
            Some(id),
            &format!("token #{tid}"),
        )
        .await;
        Flash::ok(ctx.t("令牌已吊销", "Token revoked."))
    } else {
        Flash::err(ctx.t("没有这个有效的令牌", "No such live token."))
    };
    PostResult::Done(Posted::to(merchant_page(id), flash))
}

/// Why a merchant's dead letters cannot be sent again now (a resend would be given up at once,
/// or cannot be signed), in the owner's words; None when they can.
async fn cannot_resend(app: &App, ctx: &Ctx, id: &str) -> Option<String> {
    let why = match app.store.merchant(id).await {
        Ok(Some(m)) if m.shop_webhook_url.is_some() => return None,
        Ok(Some(_)) => ctx.t(
            "商城通知地址是空的，重发也送不到：请先在商户设置里填写商城通知地址并保存，再重发",
            "the shop webhook URL is empty, so a resend cannot arrive: set it in the merchant's settings first, then resend",
        ),
        Ok(None) => ctx.t(
            "商户已删除，无法重发",
            "the merchant was removed: nothing can be resent",
        ),
        Err(_) => ctx.t(
            "暂时读不到商户设置（数据库出错），没有重发，请稍后再试",
            "the merchant's settings cannot be read now (a database error): nothing was resent, try again later",
        ),
    };
    Some(format!("{id}: {why}"))
}

pub async fn resend(app: &Arc<App>, ctx: &Ctx, id: &str, wid: &str, form: &Form) -> PostResult {
    if !ctx.who.sees(id) {
        return PostResult::NotFound;
    }
    // Back to the list the button was on.
    let location = if field(form, "back") == "webhooks" {
        "/admin/webhooks".to_owned()
    } else {
        merchant_page(id)
    };
    if let Some(why) = cannot_resend(app, ctx, id).await {
        return PostResult::Done(Posted::to(location, Flash::err(why)));
    }
    let ok = match wid.parse::<i64>() {
        Ok(w) => app.store.resend_webhook(id, w).await.unwrap_or(false),
        Err(_) => false,
    };
    let flash = if ok {
        tracing::info!(merchant = %id, webhook = %wid, "dead-lettered webhook queued again from the admin page");
        audit(
            app,
            &ctx.who,
            "webhook.resend",
            Some(id),
            &format!("webhook #{wid}"),
        )
        .await;
        Flash::ok(ctx.t("已重新排队", "Queued for delivery again."))
    } else {
        Flash::err(ctx.t("没有这个未送达的通知", "No such dead-lettered webhook."))
    };
    PostResult::Done(Posted::to(location, flash))
}

/// The merchants a webhook action reaches: `one` when named (None when this login may not see
/// it), else all of theirs (`[None]`: every merchant, for an operator).
fn webhook_scope(ctx: &Ctx, one: &str) -> Option<Vec<Option<String>>> {
    if !one.is_empty() {
        return ctx.who.sees(one).then(|| vec![Some(one.to_owned())]);
    }
    Some(match ctx.who.only() {
        None => vec![None],
        Some(mine) => mine.iter().cloned().map(Some).collect(),
    })
}

/// Sends the webhooks being retried now (the shop is fixed), instead of at their next interval:
/// of one merchant (`merchant` field), else of all theirs.
pub async fn retry_now(app: &Arc<App>, ctx: &Ctx, form: &Form) -> PostResult {
    let one = field(form, "merchant").trim();
    let Some(merchants) = webhook_scope(ctx, one) else {
        return PostResult::NotFound;
    };
    let mut total = 0u64;
    let mut failed = false;
    for m in &merchants {
        match app.store.retry_webhooks_now(m.as_deref()).await {
            Ok(n) => {
                total += n;
                if n > 0 {
                    audit(
                        app,
                        &ctx.who,
                        "webhook.retry_now",
                        m.as_deref(),
                        &format!("{n} webhook(s)"),
                    )
                    .await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "webhooks could not be made due now");
                failed = true;
            }
        }
    }
    if total > 0 {
        app.webhook_wake.notify_one();
    }
    let location = if one.is_empty() {
        "/admin/webhooks".to_owned()
    } else {
        merchant_page(one)
    };
    let flash = if failed {
        Flash::err(ctx.t(
            "数据库暂时不可用，请稍后再试",
            "The database is unavailable; try again shortly.",
        ))
    } else {
        Flash::ok(format!(
            "{} {total}",
            ctx.t("立即重发的通知数：", "Webhooks being sent now:")
        ))
    };
    PostResult::Done(Posted::to(location, flash))
}

/// Queues every dead letter again: of one merchant (`merchant` field), else of all theirs.
pub async fn resend_all(app: &Arc<App>, ctx: &Ctx, form: &Form) -> PostResult {
    let one = field(form, "merchant").trim();
    let Some(merchants) = webhook_scope(ctx, one) else {
        return PostResult::NotFound;
    };
    let mut queued: BTreeMap<String, u32> = BTreeMap::new();
    // Merchants whose letters cannot be sent again now (no webhook URL: sent again, they would
    // be given up at once): their dead letters stay, said why.
    let mut refused: BTreeMap<String, Option<String>> = BTreeMap::new();
    for m in &merchants {
        // The page lists 500 at most; "all" is all, each once: the list is read once (one sent
        // again and given up at once, say for a removed URL, is not met a second time).
        let all = app
            .store
            .dead_webhooks(m.as_deref(), RESEND_ALL_AT_MOST)
            .await
            .unwrap_or_default();
        for w in &all {
            if !refused.contains_key(&w.merchant_id) {
                let why = cannot_resend(app, ctx, &w.merchant_id).await;
                refused.insert(w.merchant_id.clone(), why);
            }
            if refused.get(&w.merchant_id).is_some_and(Option::is_some) {
                continue;
            }
            if app
                .store
                .resend_webhook(&w.merchant_id, w.id)
                .await
                .unwrap_or(false)
            {
                *queued.entry(w.merchant_id.clone()).or_default() += 1;
            }
        }
    }
    for (m, n) in &queued {
        audit(
            app,
            &ctx.who,
            "webhook.resend_all",
            Some(m),
            &format!("{n} webhook(s)"),
        )
        .await;
    }
    let total: u32 = queued.values().sum();
    let location = if one.is_empty() {
        "/admin/webhooks".to_owned()
    } else {
        merchant_page(one)
    };
    let mut said = format!(
        "{} {total}",
        ctx.t("已重新排队的通知数：", "Webhooks queued again:")
    );
    let skipped: Vec<&String> = refused.values().flatten().collect();
    for why in &skipped {
        said.push_str(ctx.t("；", "; "));
        said.push_str(why);
    }
    let flash = if skipped.is_empty() {
        Flash::ok(said)
    } else {
        Flash::err(said)
    };
    PostResult::Done(Posted::to(location, flash))
}
