//! A merchant's settings: `GET` and `PUT /v1/merchants/{id}` (the operator's, or the merchant's
//! own token inside the slot the operator made).

use crate::http::body::{json, read_body, Body, MAX_API_BODY};
use crate::http::caller::Caller;
use crate::http::error::error_with_fields;
use crate::service::{masked_settings, ApiError, App, CHANGED_MEANWHILE};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// The masked settings of a merchant, by its component's schema.
fn merchant_view(app: &App, m: &crate::config::MerchantSettings) -> serde_json::Value {
    masked_settings(m, app.plugins.for_merchant(m).map(|p| &p.info))
}

/// `PUT /v1/merchants/{id}`. The operator sets anything. A merchant's own token replaces its
/// provider settings (validated by the component; secrets are never shown back) and its webhook
/// URL and secret, inside the slot the operator made: the plugin and the shop origins stay the
/// operator's, and the webhook URL must be on one of those origins.
pub async fn put_merchant(
    app: &Arc<App>,
    who: &Caller,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if !crate::config::valid_merchant_id(id) {
        return Err(ApiError::field(
            400,
            "invalid_request",
            "id",
            "the merchant id must be 1 to 64 letters, digits, '_' or '-'",
        ));
    }
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    // serde quotes the value it refused, which may be a secret: left out (`quiet`).
    let mut raw: crate::config::RawMerchant =
        crate::http::body::parse_json(&body, "a merchant settings object", true)?;
    // Webhooks are signed with the merchant's own secret: left out, the one it has (made with
    // the merchant) is kept. So is its webhook URL when the body does not name it (a settings-only
    // PUT must not silently stop the shop's webhooks); `"shop_webhook_url": null` removes it.
    let names_webhook_url = serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|v| v.get("shop_webhook_url").is_some());
    // Read once: what is kept from it, the slot a merchant token is bound to, and the row the
    // save must still find (settings are saved whole: a save from an older read would undo a
    // change made meanwhile, or bring back a merchant removed meanwhile).
    let before = app
        .store
        .merchant_stored(id)
        .await
        .map_err(ApiError::internal)?;
    let held = before
        .as_deref()
        .map(crate::store::parse_merchant)
        .transpose()
        .map_err(ApiError::internal)?;
    if !names_webhook_url {
        raw.shop_webhook_url = held.as_ref().and_then(|m| m.shop_webhook_url.clone());
    }
    // The component and the shop origins left out are the merchant's own, kept: a save of the
    // settings or of a webhook secret must not unbind the shop's origins.
    if let Some(held) = held.as_ref() {
        if raw.shop_origins.is_none() {
            raw.shop_origins = Some(held.shop_origins.clone());
        }
        if raw.plugin.as_deref().is_none_or(|p| p.trim().is_empty()) && !held.plugin_id.is_empty() {
            raw.plugin = Some(held.plugin_id.clone());
        }
    }
    // A merchant that has no secret yet gets its own, which the shop must hold to check its
    // webhooks and returns: it is in this answer once (`shop_secret`), as `merchant add` prints it.
    let mut made_secret = None;
    if raw
        .shop_webhook_secret
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        raw.shop_webhook_secret = held
            .as_ref()
            .and_then(|m| m.shop_webhook_secret.clone())
            .or_else(|| {
                let made = crate::onboarding::new_shop_secret();
                made_secret = Some(made.clone());
                Some(made)
            });
    }
    let mut problems = Vec::new();
    // No file is opened for the API: `<name>_file` is refused, the PEM text goes in `<name>`.
    let mut settings = crate::config::merchant_settings(id, &raw, None, &mut problems);
    // A body that names no setting (only a webhook URL or secret, say) keeps the stored
    // settings: a platform need not hold a shop's provider keys to rotate its webhook secret.
    if raw.settings.as_ref().is_none_or(|s| s.is_empty()) && raw.flat.is_empty() {
        if let Some(held) = held.as_ref().filter(|m| !m.settings.is_empty()) {
            settings.settings = held.settings.clone();
        }
    }
    if let Caller::Merchant(_) = who {
        let slot = held
            .as_ref()
            .ok_or_else(|| ApiError::new(404, "unknown_merchant", format!("no merchant {id:?}")))?;
        bind_to_slot(slot, &raw, &mut settings)?;
    }
    // The file's rules (a shop secret too short, a URL that is not one) and the component's, in
    // one answer of one shape: the component checks the rest even when these already refuse.
    let prefix = format!("merchants.{id}.");
    let earlier: Vec<crate::runtime::plugin_api::FieldError> = problems
        .iter()
        .map(|p| {
            let p = p.strip_prefix(&prefix).unwrap_or(p);
            match p.split_once(": ") {
                Some((field, reason)) => crate::runtime::plugin_api::FieldError::new(
                    field.strip_prefix("settings.").unwrap_or(field),
                    reason.to_owned(),
                ),
                None => crate::runtime::plugin_api::FieldError::new("settings", p.to_owned()),
            }
        })
        .collect();
    match app
        .configure_merchant_beside(id, settings, earlier, before.as_deref())
        .await
    {
        Ok(stored) => {
            let detail = super::audit::settings_saved(held.as_ref(), &stored);
            super::audit::record(app, who, "settings.save", id, &detail).await;
            let mut view = merchant_view(app, &stored);
            if let Some(object) = view.as_object_mut() {
                if let Some(secret) = made_secret {
                    object.insert("shop_secret".into(), secret.into());
                }
                object.insert("created".into(), held.is_none().into());
                let warnings = next_steps(&stored);
                if !warnings.is_empty() {
                    object.insert("warnings".into(), warnings.into());
                }
            }
            Ok(json(200, &view))
        }
        Err(fields) if fields.iter().any(|f| f.field == CHANGED_MEANWHILE) => Err(ApiError::new(
            409,
            "merchant_changed",
            format!("merchant {id:?} was changed or removed by another request while this one was checked: nothing was saved; GET it again and send the change again"),
        )),
        Err(fields) => {
            let message = fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect::<Vec<_>>()
                .join("; ");
            let e = match fields.first() {
                Some(first) => ApiError::field(400, "invalid_settings", &first.field, message),
                None => ApiError::new(400, "invalid_settings", message),
            };
            Ok(error_with_fields(
                &e,
                serde_json::json!(fields
                    .iter()
                    .map(|f| serde_json::json!({"field": f.field, "reason": f.reason}))
                    .collect::<Vec<_>>()),
            ))
        }
    }
}

/// What a saved merchant still lacks to serve a shop well, said with the save (the operator
/// may mean it: these are warnings, not refusals).
fn next_steps(m: &crate::config::MerchantSettings) -> Vec<String> {
    let mut said = Vec::new();
    if m.shop_webhook_url.is_none() {
        said.push("no shop_webhook_url: the shop hears of no payment by webhook (only by asking); set one".to_owned());
    }
    if m.shop_origins.is_empty() {
        said.push("no shop_origins: a payment's return_url and merchant_url may be any address; bind the shop's origin".to_owned());
    }
    said
}

/// A merchant token's settings stay inside its slot: the operator's plugin and shop origins
/// (sending others is refused, 403), and a webhook URL on one of those origins.
fn bind_to_slot(
    slot: &crate::config::MerchantSettings,
    raw: &crate::config::RawMerchant,
    settings: &mut crate::config::MerchantSettings,
) -> Result<(), ApiError> {
    if raw
        .plugin
        .as_deref()
        .map(str::trim)
        .is_some_and(|p| !p.is_empty() && p != slot.plugin_id)
    {
        return Err(ApiError::field(
            403,
            "forbidden",
            "plugin",
            format!(
                "plugin: set by the operator ({:?}); a merchant token cannot change it",
                slot.plugin_id
            ),
        ));
    }
    if raw.shop_origins.is_some() && settings.shop_origins != slot.shop_origins {
        return Err(ApiError::field(
            403,
            "forbidden",
            "shop_origins",
            "shop_origins: bound by the operator; a merchant token cannot change them",
        ));
    }
    settings.plugin_id = slot.plugin_id.clone();
    settings.shop_origins = slot.shop_origins.clone();
    // A URL that is not one is refused with the file's rules, by what is wrong with it. The URL
    // it already has (the operator's, kept when the body names none) is not the token's to
    // justify: only a change is checked.
    if let Some(url) = settings
        .shop_webhook_url
        .as_ref()
        .filter(|u| crate::config::is_http_url(u))
        .filter(|u| slot.shop_webhook_url.as_ref() != Some(*u))
    {
        if slot.shop_origins.is_empty() || !slot.return_url_allowed(url) {
            return Err(ApiError::field(
                403,
                "forbidden",
                "shop_webhook_url",
                format!(
                    "shop_webhook_url: must be on the shop origin the operator bound to this merchant ({})",
                    if slot.shop_origins.is_empty() {
                        "none: ask the operator to bind one with payhost merchant add --shop-origin".to_owned()
                    } else {
                        slot.shop_origins.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// `GET /v1/merchants/{id}`: the masked settings.
pub(super) async fn get_merchant(app: &Arc<App>, id: &str) -> Result<Response<Body>, ApiError> {
    let m = app.merchant(id).await?;
    Ok(json(200, &merchant_view(app, &m)))
}
