//! The shop API (`/v1`): one module per resource. The router has checked the route, the token
//! and its scope; [`dispatch`] calls the route's handler.

pub mod audit;
pub mod ledger;
pub mod merchant_removal;
pub mod merchants;
pub mod payments;
pub mod tokens;

use super::body::{json, Body};
use super::caller::Caller;
use super::error::into_response;
use super::router::{ApiRoute, Params};
use crate::service::App;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// Answers an API route `who` may call.
pub(super) async fn dispatch(
    app: &Arc<App>,
    who: &Caller,
    route: ApiRoute,
    p: &Params<'_>,
    req: Request<Incoming>,
) -> Response<Body> {
    let id = p.get("id");
    into_response(match route {
        ApiRoute::CreatePayment => payments::create_payment(app, id, req).await,
        ApiRoute::GetPayment => payments::get_payment(app, id, &p.decoded("no")).await,
        // Not audited: it only asks the provider (a shop may ask on every return page).
        ApiRoute::SyncPayment => app
            .sync_payment(id, &p.decoded("no"))
            .await
            .map(|r| json(200, &serde_json::json!(r))),
        ApiRoute::AppResult => payments::app_result(app, id, &p.decoded("no"), req).await,
        ApiRoute::Notifications => payments::list_notifications(app, id, &req).await,
        ApiRoute::Channels => payments::channels(app, id, &req).await,
        ApiRoute::PutMerchant => merchants::put_merchant(app, who, id, req).await,
        ApiRoute::GetMerchant => merchants::get_merchant(app, id).await,
        ApiRoute::DeleteMerchant => {
            merchant_removal::delete_merchant(app, who, id, req.uri().query()).await
        }
        ApiRoute::CreateToken => tokens::create_token(app, who, id, req).await,
        ApiRoute::ListTokens => tokens::list_tokens(app, id).await,
        ApiRoute::RevokeToken => tokens::revoke_token(app, who, id, p.get("tid")).await,
        ApiRoute::Payments => Ok(ledger::list_payments(app, who, &req).await),
        ApiRoute::PaymentsCsv => Ok(ledger::payments_csv(who, &req)),
        ApiRoute::RefundList => Ok(ledger::list_refunds(app, who, &req).await),
        ApiRoute::RefundListCsv => Ok(ledger::refunds_csv(who, &req)),
        ApiRoute::Merchants => ledger::list_merchants(app).await,
        ApiRoute::Refund => ledger::create_refund(app, who, id, &p.decoded("no"), req).await,
        ApiRoute::AbandonRefund => {
            ledger::abandon_refund(app, who, id, &p.decoded("no"), p.get("rid")).await
        }
        ApiRoute::Close => ledger::close(app, who, id, &p.decoded("no")).await,
        ApiRoute::Reconciliation => ledger::reconciliation(app, id, &req).await,
    })
}
