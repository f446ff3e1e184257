//! The shop's payment routes: create, read, sync, an App SDK result, the notifications received
//! and the pay channels.

use crate::http::body::{json, read_body, Body, MAX_API_BODY};
use crate::runtime::plugin_api::PluginError;
use crate::service::{ApiError, App, CreatePayment};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// `POST /v1/merchants/{id}/payments`.
pub(super) async fn create_payment(
    app: &Arc<App>,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let request: CreatePayment =
        crate::http::body::parse_json(&body, "the expected JSON object", false)?;
    // The return and the cashier's cancel link send the buyer there: the shop's own pages only.
    // (An unknown merchant is answered by the create below.)
    let merchant = app.merchant(id).await.ok();
    for (field, url) in [
        ("return_url", request.return_url.as_deref()),
        ("merchant_url", request.merchant_url.as_deref()),
    ] {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        if let (Some(url), Some(m)) = (url, merchant.as_ref()) {
            if m.return_url_allowed(url) {
                continue;
            }
            return Err(ApiError::field(
                400,
                "invalid_request",
                field,
                format!("{field}: must be on one of the merchant's shop_origins"),
            ));
        }
    }
    let (status, created) = app.create_payment(id, request).await?;
    if let Some(url) = &created.pay_url {
        crate::ledger::note(app, id, &created.out_trade_no, "redirect", Some(url)).await;
    }
    Ok(json(
        status,
        &serde_json::to_value(created).expect("serialisable"),
    ))
}

/// `GET /v1/merchants/{id}/payments/{no}`: the payment, its refunds, timeline and notifications.
pub(super) async fn get_payment(
    app: &Arc<App>,
    id: &str,
    out_trade_no: &str,
) -> Result<Response<Body>, ApiError> {
    app.merchant(id).await?;
    // One read of everything shown: the status, the refunded total and the refunds agree.
    let record = app
        .store
        .payment_record(id, out_trade_no)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::field(
                404,
                "unknown_payment",
                "out_trade_no",
                format!("no payment {}", crate::domain::quoted_order(out_trade_no)),
            )
        })?;
    let mut timeline = crate::ledger::timeline(&record);
    let (p, refunded_fen) = (&record.ledger.payment, record.ledger.refunded_fen);
    let (notifications, refunds) = (&record.notifications, &record.refunds);
    // The admin's login names stay in the admin (its timeline is this one, unredacted).
    for item in &mut timeline {
        if let Some(by) = item["started_by"].as_str() {
            item["started_by"] = crate::domain::refunds::without_admin_names(by).into();
        }
        if let Some(d) = item["detail"].as_str() {
            item["detail"] = crate::domain::refunds::without_admin_names(d).into();
        }
    }
    Ok(json(
        200,
        &serde_json::json!({
            "out_trade_no": p.out_trade_no,
            "status": p.status,
            "total_fee": p.total_fee(),
            "subject": p.subject,
            "seller_email": p.seller,
            "trade_no": p.trade_no,
            "buyer_email": p.buyer_email,
            "paid_at": crate::ledger::paid_at_utc(p),
            "review": p.review,
            "created_at": p.created_at,
            "finished_at": p.finished_at,
            "refunded_amount": format!("{}.{:02}", refunded_fen / 100, refunded_fen % 100),
            "refunds": refunds.iter().map(crate::refunds::refund_json).collect::<Vec<_>>(),
            "timeline": timeline,
            "notifications": notifications.iter().map(notification_json).collect::<Vec<_>>(),
        }),
    ))
}

fn notification_json(n: &crate::store::NotificationRecord) -> serde_json::Value {
    serde_json::json!({
        "id": n.raw_id,
        "received_at": n.received_at,
        "notify_id": n.notify_id,
        "out_trade_no": n.out_trade_no,
        "trade_status": n.trade_status,
        "outcome": n.outcome,
        "detail": n.detail,
    })
}

/// `GET /v1/merchants/{id}/notifications?limit=N`: the latest notifications as received, newest
/// first, with what processing concluded (including the ones never verified).
pub(super) async fn list_notifications(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    app.merchant(id).await?;
    let param = |name: &str| {
        req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    // A mistyped filter (`?outcom=`) would list everything, as if it had matched.
    if let Some(other) = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k != "limit" && k != "outcome")
    }) {
        return Err(crate::ledger::bad(
            &other.0,
            "unknown filter (limit, outcome)",
        ));
    }
    // `?outcome=unknown_order`: e.g. after restoring an older backup, the notifications of orders
    // it does not hold, however old.
    let outcome = param("outcome");
    if let Some(o) = outcome.as_deref() {
        if !crate::notify::NotifyOutcome::LABELS.contains(&o) {
            return Err(ApiError::field(
                400,
                "invalid_request",
                "outcome",
                format!(
                    "outcome: {o:?} is not an outcome; one of {}",
                    crate::notify::NotifyOutcome::LABELS.join(", ")
                ),
            ));
        }
    }
    let limit = match param("limit") {
        None => 50,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "limit",
                    "limit: must be a whole number from 1 to 1000",
                ))
            }
        },
    };
    let list = app
        .store
        .recent_notifications(Some(id), outcome.as_deref(), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(json(
        200,
        &serde_json::json!({
            "notifications": list.iter().map(notification_json).collect::<Vec<_>>(),
        }),
    ))
}

/// `POST …/payments/{no}/app-result` with `{"result": "<the SDK's result string>"}`.
pub(super) async fn app_result(
    app: &Arc<App>,
    id: &str,
    no: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, "invalid_json", format!("the body is not JSON: {e}")))?;
    let result = v["result"].as_str().ok_or_else(|| {
        ApiError::field(
            400,
            "invalid_request",
            "result",
            "result: is required (the SDK's result string)",
        )
    })?;
    Ok(json(200, &app.app_result(id, no, result).await?))
}

/// `GET /v1/merchants/{id}/channels[?out_user=…]`: the pay channels the provider offers.
pub(super) async fn channels(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let merchant = app.merchant(id).await?;
    let out_user = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "out_user")
            .map(|(_, v)| v.into_owned())
    });
    let policy = app.merchant_policy(&merchant);
    let mut session = app.plugin_for(&merchant)?.session().await?;
    let list = session
        .list_channels(&policy, &merchant.settings, out_user.as_deref())
        .await?
        .map_err(|e| match crate::service::not_offered_by_api_family(&e) {
            // The open platform has no channel list: the provider was not asked.
            Some(refusal) => refusal,
            // A stored setting the component cannot use (a broken key), or an `out_user` it
            // refuses (the caller's to fix, a 400 naming it): as on every route.
            None if matches!(
                e,
                PluginError::InvalidSettings(_) | PluginError::InvalidOrder(_)
            ) =>
            {
                crate::service::plugin_error_to_api(e)
            }
            None => crate::service::upstream_error(
                502,
                "gateway_error",
                "the pay-channel query failed",
                &e.to_string(),
            ),
        })?;
    Ok(json(
        200,
        &serde_json::json!({
            "channels": list.channels.iter().map(|c| serde_json::json!({
                "name": c.name, "cashier_code": c.cashier_code, "parent": c.parent
            })).collect::<Vec<_>>(),
            "last_used": list.last_used,
        }),
    ))
}
