//! Per-merchant API tokens: `POST`, `GET /v1/merchants/{id}/tokens` and
//! `DELETE /v1/merchants/{id}/tokens/{tid}` (the operator's).

use crate::http::body::{json, read_body, Body, MAX_API_BODY};
use crate::http::caller::Caller;
use crate::service::{ApiError, App};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// The body of `POST /v1/merchants/{id}/tokens`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    label: Option<String>,
}

/// `POST /v1/merchants/{id}/tokens` `{"label"?}`: a new per-merchant token, shown once.
pub(super) async fn create_token(
    app: &Arc<App>,
    who: &Caller,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let merchant = app.merchant(id).await?;
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let label = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        let new: NewToken = crate::http::body::parse_json(&body, "{\"label\"?}", false)?;
        new.label.unwrap_or_default()
    };
    let label = label.trim().to_owned();
    if let Some(rule) = crate::auth::token_label_refused(&label) {
        return Err(ApiError::field(
            400,
            "invalid_request",
            "label",
            format!("label: {rule}"),
        ));
    }
    let (tid, token) = new_merchant_token(app, id, &label, &super::audit::actor(who)).await?;
    super::audit::record(
        app,
        who,
        "token.create",
        id,
        &format!("token #{tid} {label}"),
    )
    .await;
    let mut answer =
        serde_json::json!({"id": tid, "merchant_id": id, "token": token, "label": label});
    // The token's return and cancel URLs are held to the shop's origins: with none bound,
    // nothing holds them.
    if merchant.shop_origins.is_empty() {
        answer["warning"] = format!("merchant {id:?} has no shop_origins: this token's payments may send buyers to any return_url; bind the shop's origin (shop_origins in payhost.toml, or PUT /v1/merchants/{id} with the operator's token)").into();
    }
    Ok(json(201, &answer))
}

/// Creates and stores (hashed) a per-merchant token, made by `created_by` (the audit log's name
/// for them); returns its id and value.
pub async fn new_merchant_token(
    app: &App,
    id: &str,
    label: &str,
    created_by: &str,
) -> Result<(i64, String), ApiError> {
    let token = crate::auth::new_merchant_token();
    // The admin's form is not the API: its label is kept on one line rather than refused.
    let label: String = label
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(crate::auth::MAX_TOKEN_LABEL)
        .collect();
    let tid = app
        .store
        .create_token(id, &crate::auth::token_hash(&token), &label, created_by)
        .await
        .map_err(ApiError::internal)?
        // Removed since the caller checked it.
        .ok_or_else(|| ApiError::new(404, "unknown_merchant", format!("no merchant {id:?}")))?;
    tracing::info!(merchant = id, token_id = tid, "merchant API token created");
    Ok((tid, token))
}

/// `GET /v1/merchants/{id}/tokens`: the tokens (never their values).
pub(super) async fn list_tokens(app: &Arc<App>, id: &str) -> Result<Response<Body>, ApiError> {
    app.merchant(id).await?;
    let list = app
        .store
        .tokens(Some(id))
        .await
        .map_err(ApiError::internal)?;
    Ok(json(
        200,
        &serde_json::json!({"tokens": list.iter().map(|t| serde_json::json!({
            "id": t.id, "label": t.label, "created_at": t.created_at, "revoked_at": t.revoked_at,
            "created_by": t.created_by
        })).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /v1/merchants/{id}/tokens/{tid}`.
pub(super) async fn revoke_token(
    app: &Arc<App>,
    who: &Caller,
    id: &str,
    tid: &str,
) -> Result<Response<Body>, ApiError> {
    let tid: i64 = tid
        .parse()
        .map_err(|_| ApiError::new(404, "unknown_token", "no such token"))?;
    if app
        .store
        .revoke_token(tid, Some(id))
        .await
        .map_err(ApiError::internal)?
    {
        tracing::info!(merchant = id, token_id = tid, "merchant API token revoked");
        super::audit::record(app, who, "token.revoke", id, &format!("token #{tid}")).await;
        Ok(json(200, &serde_json::json!({"id": tid, "revoked": true})))
    } else {
        Err(ApiError::new(404, "unknown_token", "no such live token"))
    }
}
