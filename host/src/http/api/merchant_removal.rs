//! `DELETE /v1/merchants/{id}[?purge=test]` (operator token only): removes a merchant with its
//! API tokens and notifications.
//!
//! Money records never vanish by accident:
//! * a merchant that has payments is refused with 409 `merchant_has_payments`;
//! * `?purge=test` removes it with its payments, but only a test merchant's: at least one of its
//!   own provider URLs is on an origin the operator allowed (`[outbound] allowed_origins`, e.g. a
//!   sandbox) that is not one of the component's own hosts (the manifest's, i.e. the real
//!   provider), and every payment that was paid was paid at such an origin (its `pay_url`: the
//!   cashier the buyer was sent to), and so was every order still waiting (it can be paid while
//!   the removal runs). Money can only have moved through an order paid elsewhere, and such an
//!   order, paid or waiting, keeps the merchant. Anything else is 409 `not_a_test_merchant`, naming the
//!   order or what is missing;
//! * a merchant of payhost.toml is refused with 409 `merchant_in_config` (it would be seeded
//!   again at the next start: remove its table there first; one whose table is gone may go).

use crate::config::MerchantSettings;
use crate::http::body::{json, Body};
use crate::net::Origin;
use crate::runtime::plugin_api::FieldKind;
use crate::service::{ApiError, App};
use crate::store::MerchantRemoval;
use http::Response;
use std::sync::Arc;

/// `DELETE /v1/merchants/{id}`; `query` is the request's query string.
pub async fn delete_merchant(
    app: &Arc<App>,
    who: &crate::http::caller::Caller,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let mut purge_test = false;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("purge", "test") => purge_test = true,
            ("purge", other) => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    "purge",
                    format!("purge: {other:?} is not \"test\" (the only payments that may be removed with a merchant are test payments)"),
                ))
            }
            (other, _) => {
                return Err(ApiError::field(
                    400,
                    "invalid_request",
                    other,
                    format!("{other}: unknown parameter (only purge=test)"),
                ))
            }
        }
    }
    let m = app.merchant(id).await?;
    // In payhost.toml now: the next start would seed it again. One seeded by an earlier start
    // whose table is gone since is not (serve warns of it at start, pointing here).
    if app.config.merchants.contains_key(id) {
        return Err(ApiError::new(
            409,
            "merchant_in_config",
            format!("merchant {id:?} comes from payhost.toml and would be seeded again at the next start: remove its [merchants.{id}] table there"),
        ));
    }
    if purge_test {
        if let Some(why) = not_a_test_merchant(app, &m, id).await? {
            return Err(ApiError::new(
                409,
                "not_a_test_merchant",
                format!("merchant {id:?} is not a test merchant, so its payments stay: {why}"),
            ));
        }
    }
    match app
        .store
        .delete_merchant(id, purge_test).await
        .map_err(ApiError::internal)?
    {
        MerchantRemoval::Removed {
            payments,
            owner_grants,
        } => {
            tracing::info!(
                merchant = id,
                test_payments_removed = payments,
                owner_grants_removed = owner_grants,
                "merchant removed"
            );
            super::audit::record(
                app,
                who,
                "merchant.remove",
                id,
                &format!("{payments} test payment(s) removed"),
            )
            .await;
            Ok(json(
                200,
                &serde_json::json!({"id": id, "removed": true, "payments_removed": payments,
                    "owner_grants_removed": owner_grants}),
            ))
        }
        MerchantRemoval::HasPayments { payments, paid } => Err(ApiError::new(
            409,
            "merchant_has_payments",
            format!("merchant {id:?} has {payments} payments ({paid} paid): they are the record of money and stay; a test merchant (sandbox provider URLs only) may be removed with its test payments by DELETE /v1/merchants/{id}?purge=test"),
        )),
        MerchantRemoval::Unknown => Err(ApiError::new(
            404,
            "unknown_merchant",
            format!("no merchant {id:?}"),
        )),
    }
}

/// Why the merchant's payments may be real money (`None`: a test merchant, see the module).
async fn not_a_test_merchant(
    app: &App,
    m: &MerchantSettings,
    id: &str,
) -> Result<Option<String>, ApiError> {
    let Some(plugin) = app.plugins.for_merchant(m) else {
        return Ok(Some(format!(
            "its component {:?} is not loaded, so its provider URLs cannot be told apart",
            m.plugin_id
        )));
    };
    let production = plugin.base_policy();
    let test_origin = |url: &str| -> Result<(), String> {
        let o = Origin::parse(url).map_err(|e| format!("{url:?} {e}"))?;
        if production.allows(&o) {
            Err(format!("{o} is the provider's own host"))
        } else if !app.operator_origins.contains(&o) {
            Err(format!(
                "{o} is not an origin the operator allowed ([outbound] allowed_origins)"
            ))
        } else {
            Ok(())
        }
    };
    // Its own URLs only: a default is the real provider's.
    let sandbox = plugin
        .info
        .names_of_kind(FieldKind::Url)
        .filter_map(|name| m.get(name))
        .any(|url| test_origin(url).is_ok());
    if !sandbox {
        return Ok(Some(
            "none of its provider URLs is on an origin the operator allowed for a sandbox ([outbound] allowed_origins) rather than the provider's own hosts".into(),
        ));
    }
    let payments = app
        .store
        .recent_payments(Some(id), u32::MAX)
        .await
        .map_err(ApiError::internal)?;
    // A waiting order counts as much as a paid one: it can be paid between this check and the
    // removal. Only an order closed unpaid can no longer move money.
    for p in payments.iter() {
        let paid = is_paid(p);
        if !paid && p.status == crate::domain::state::TRADE_CLOSED {
            continue;
        }
        let at = match p.pay_url.as_deref() {
            Some(url) => test_origin(url).err(),
            // Paid with no cashier page to tell where (an app order paid in the Alipay app).
            None if paid => Some("it was paid without a pay_url".into()),
            // Waiting with none (an app order): paid, if ever, in the app of the merchant's
            // own test app id, whose provider URLs were found to be a sandbox's above.
            None => None,
        };
        if let Some(why) = at {
            return Ok(Some(if paid {
                format!("order {} was paid: {why}", p.out_trade_no)
            } else {
                format!(
                    "order {} is waiting for payment and could still be paid (close it first): {why}",
                    p.out_trade_no
                )
            }));
        }
    }
    Ok(None)
}

fn is_paid(p: &crate::store::Payment) -> bool {
    p.paid_at.is_some() || crate::domain::state::is_paid(&p.status)
}
