//! Delivers the outbox of shop webhooks: `POST shop_webhook_url` with the event JSON and
//! `X-Payhost-Signature: sha256=<hex HMAC-SHA256 of the body>` (key: the merchant's
//! `shop_webhook_secret`), retried with exponential backoff until a 2xx. The outbox lives in the
//! store, so deliveries survive restarts; each event carries a stable `id` (also in
//! `X-Payhost-Event-Id`) for receivers that must not act twice.

use crate::service::{hmac_hex, App};
use crate::store::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Runs until `stop` turns true.
pub async fn run(app: Arc<App>, wake: Arc<Notify>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let delivered_any = deliver_due(&app).await;
        if delivered_any {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Delivers what is due; true if anything was attempted.
async fn deliver_due(app: &Arc<App>) -> bool {
    // Store calls wait for their commit without stalling the runtime (see store::sqlite).
    let jobs = match app.store.due_webhooks(now_ms(), 16) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the webhook outbox");
            return false;
        }
    };
    if jobs.is_empty() {
        return false;
    }
    let mut tasks = Vec::new();
    for job in jobs {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let key = match app.store.merchant(&job.merchant_id) {
                Ok(Some(m)) => app.shop_key(&m),
                _ => app.config.api_token.clone(),
            };
            let result = post(&job.url, &job.event_id, &job.body, &key, app.config.webhooks.timeout_ms).await;
            match result {
                Ok(()) => {
                    app.metrics.webhooks_delivered.inc();
                    tracing::info!(event = %job.event_id, "webhook delivered");
                    if let Err(e) = app.store.webhook_delivered(job.id) {
                        tracing::error!(event = %job.event_id, error = %e, "cannot mark a webhook delivered; it will be sent again");
                    }
                }
                Err(e) => {
                    app.metrics.webhooks_failed.inc();
                    let cfg = &app.config.webhooks;
                    let backoff = cfg
                        .retry_base_ms
                        .saturating_mul(1u64 << job.attempts.min(20))
                        .min(cfg.retry_max_ms);
                    tracing::warn!(event = %job.event_id, attempt = job.attempts + 1, retry_in_ms = backoff, error = %e, "webhook not delivered");
                    let next = now_ms() + backoff as i64;
                    if let Err(err) = app.store.webhook_failed(job.id, next, &e) {
                        tracing::error!(event = %job.event_id, error = %err, "cannot record a webhook failure");
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    true
}

async fn post(
    url: &str,
    event_id: &str,
    body: &str,
    key: &str,
    timeout_ms: u64,
) -> Result<(), String> {
    let signature = format!("sha256={}", hmac_hex(key, body.as_bytes()));
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("x-payhost-event-id", event_id.to_owned()),
        ("x-payhost-signature", signature),
    ];
    let answer = crate::http_client::send(
        "POST",
        url,
        &headers,
        body.as_bytes().to_vec(),
        Duration::from_millis(timeout_ms),
    )
    .await?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(format!("the shop answered HTTP {}", answer.status))
    }
}
