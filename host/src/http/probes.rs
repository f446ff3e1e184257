//! What operators' tools ask: `/healthz` (liveness), `/readyz` (readiness) and `/metrics`.

use super::body::{text, Body};
use super::error::{error, ApiError};
use crate::service::App;
use http::Response;

/// The Prometheus text of `/metrics`.
pub async fn metrics(app: &App) -> Response<Body> {
    let pending = app.store.pending_webhooks().await.unwrap_or(0);
    let stats: Vec<_> = app.plugins.iter().map(|p| &p.stats).collect();
    text(200, app.metrics.render(&stats, pending))
}

/// `/metrics` on the main listener: the operator's token only.
pub(super) async fn metrics_with_token(app: &App, token: Option<&str>) -> Response<Body> {
    if !token.is_some_and(|t| super::caller::is_operator_token(app, t)) {
        return error(&ApiError::new(
            401,
            "unauthorized",
            "/metrics needs Authorization: Bearer <api_token> (or serve it on metrics_listen)",
        ));
    }
    metrics(app).await
}

/// Liveness: the process serves requests. It does not ask the database, so an outage of a
/// shared PostgreSQL does not make an orchestrator restart every replica (that is `/readyz`).
pub(super) async fn healthz(_app: &App) -> Response<Body> {
    text(200, "ok\n")
}

/// How long readiness waits for the database: a balancer checks every 2 s or so.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(1_500);

/// Readiness, for load balancers: the database answers and the component is loaded (an `App`
/// exists only once its component is compiled and instantiable). 503 otherwise, so the balancer
/// sends requests to the other replicas.
pub(super) async fn readyz(app: &App) -> Response<Body> {
    // A database that hangs (frozen, a network black hole) is not ready either: the probe
    // waited for it, and so did the balancer, for as long as it hung.
    let ready = match tokio::time::timeout(READY_WITHIN, app.store.ready()).await {
        Ok(ready) => ready,
        Err(_) => Err(anyhow::anyhow!(
            "the database did not answer within {} ms",
            READY_WITHIN.as_millis()
        )),
    };
    match ready {
        Ok(()) => text(200, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "not ready: the database does not answer or cannot commit");
            error(&ApiError::new(
                503,
                "not_ready",
                "not ready: the database does not answer or cannot commit",
            ))
        }
    }
}
