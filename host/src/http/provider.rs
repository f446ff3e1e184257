//! The provider's endpoints: the asynchronous notification (`POST /notify/{id}`) answered with
//! the provider's reply word, and the buyer's return (`GET /return/{id}`) answered with a
//! redirect to the shop or a page for the buyer's browser.

use super::admin;
use super::body::{html, read_body, redirect, text, Body, MAX_NOTIFY_BODY, MAX_RETURN_QUERY};
use super::caller::client_ip;
use crate::notify::NotifyOutcome;
use crate::service::App;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// A notification: admitted, its body read, processed; the answer (status, reply word) is the
/// notify pipeline's (`notify`).
pub(super) async fn notify(
    app: &Arc<App>,
    id: &str,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let ip = client_ip(app, remote, &req);
    let answer = match app.notify_admit(id, ip).await {
        Err(refused) => refused,
        Ok(merchant) => match read_body(req.into_body(), MAX_NOTIFY_BODY).await {
            Err(e) => app.notify_body_refused(&merchant, e.status),
            Ok(body) => {
                // Nothing done for it yet: its connection may be shed meanwhile when every slot
                // is taken (the provider sends it again).
                match super::conn::waiting_for_turn(app.notify_turn(id, &merchant)).await {
                    Ok(turn) => {
                        app.notify_for(id, merchant, turn, Some(ip.to_string()), body)
                            .await
                    }
                    Err(refused) => refused,
                }
            }
        },
    };
    let mut r = text(answer.status(), answer.reply().to_owned());
    if answer.outcome == NotifyOutcome::RateLimited {
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
    }
    r
}

/// The buyer's return: verified by the component, then a redirect to the shop; a return that
/// cannot be verified is a page saying so (nothing changed).
pub(super) async fn buyer_return(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
    if query.len() > MAX_RETURN_QUERY {
        return not_confirmed(414);
    }
    // Nothing done for it yet: its connection may be shed meanwhile.
    let handled = match super::conn::waiting_for_turn(app.return_turn()).await {
        Ok(permit) => app.handle_return_in_turn(id, permit, &query).await,
        Err(e) => Err(e),
    };
    match handled {
        Ok(location) => redirect(&location),
        Err(e) => not_confirmed(e.status),
    }
}

/// The buyer's page for a return that changed nothing: the same words whatever the reason. The
/// reason (the component's, which can quote the query anyone may send) is only in the log.
fn not_confirmed(status: u16) -> Response<Body> {
    html(
        status,
        admin::page(
            "支付结果无法确认 Payment result not confirmed",
            "<div class=\"card err\"><h1>支付结果无法确认</h1><p>此次返回无法验证，订单没有任何改变。\
             如果您已付款，支付宝确认后商户仍会收到这笔付款。</p><p>Payment result not confirmed: this return \
             could not be verified, so nothing was changed. If you paid, the shop will still see the payment \
             once the payment provider confirms it.</p></div>",
        ),
        admin::page_security_policy(),
    )
}
