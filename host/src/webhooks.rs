//! Delivers the outbox of shop webhooks: `POST shop_webhook_url` with the event JSON and
//! `X-Payhost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (key: the merchant's
//! `shop_webhook_secret`; Stripe's scheme: receivers refuse a `t` more than 300 s away from their clock,
//! so a captured webhook cannot be replayed later), retried with exponential backoff until a 2xx,
//! for at most `[webhooks] give_up_after_ms` (3 days by default, as Stripe) after it was queued;
//! then it is dead-lettered and listed on the admin page with a resend button. The shop's answer
//! is read up to [`MAX_REPLY_BYTES`]. The outbox lives in the store, so deliveries survive
//! restarts; each event carries a stable `id` (also in `X-Payhost-Event-Id`) for receivers that
//! must not act twice.

use crate::service::{hmac_hex, App};
use crate::store::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The most of a shop's answer that is read.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Sends in flight at most, over all shops.
const MAX_IN_FLIGHT: usize = 64;
/// Sends in flight at most for one shop: a shop whose endpoint hangs (each send waiting
/// `timeout_ms`) holds these, never the others' slots (they waited for the slowest of a group
/// of 16); it takes 16 such shops at once to fill every slot.
const PER_SHOP: usize = 4;

/// Runs until `stop` turns true: starts each due webhook as a slot frees, at most
/// [`PER_SHOP`] of one shop at a time.
pub async fn run(app: Arc<App>, wake: Arc<Notify>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut flying = tokio::task::JoinSet::new();
    // Of each send in flight: its task, its outbox row and its shop.
    let mut tasks: HashMap<tokio::task::Id, (crate::store::Taken, String)> = HashMap::new();
    let mut per_shop: HashMap<String, u32> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let mut started = false;
        if flying.len() < MAX_IN_FLIGHT {
            let in_flight = crate::store::InFlight {
                ids: tasks.values().map(|(taken, _)| taken.id).collect(),
                per_merchant: per_shop.iter().map(|(m, n)| (m.clone(), *n)).collect(),
            };
            // Only as many as can start: on PostgreSQL each one returned is leased to this
            // replica, and one leased but not started would wait out its lease.
            let free = (MAX_IN_FLIGHT - flying.len()) as u32;
            match app
                .store
                .due_webhooks_fair(now_ms(), free, PER_SHOP as u32, &in_flight)
                .await
            {
                Ok(jobs) => {
                    for job in jobs {
                        *per_shop.entry(job.merchant_id.clone()).or_default() += 1;
                        let (taken, merchant) = (job.taken(), job.merchant_id.clone());
                        let app = app.clone();
                        let handle = flying.spawn(async move { deliver(&app, job).await });
                        tasks.insert(handle.id(), (taken, merchant));
                        started = true;
                    }
                }
                Err(e) => {
                    // Polled five times a second: an outage of the database is said every 10 s,
                    // not at every poll.
                    static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(10_000);
                    if let Some(unsaid) = SAY.allow() {
                        tracing::error!(error = %e, unsaid, "cannot read the webhook outbox (said again every 10 s while it lasts)");
                    }
                }
            }
        }
        if started {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = flying.join_next_with_id(), if !flying.is_empty() => {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(e) => e.id(),
                };
                if let Some((_, merchant)) = tasks.remove(&task) {
                    if let Some(n) = per_shop.get_mut(&merchant) {
                        *n -= 1;
                        if *n == 0 {
                            per_shop.remove(&merchant);
                        }
                    }
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    // Stopping: sends in flight get a moment, then are dropped and given back (another replica
    // sends them at once, not after their lease); each is sent again (at least once, as every
    // webhook).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(done) = flying.join_next_with_id().await {
            let task = match done {
                Ok((task, ())) => task,
                Err(e) => e.id(),
            };
            tasks.remove(&task);
        }
    })
    .await;
    flying.abort_all();
    let dropped: Vec<crate::store::Taken> = tasks.values().map(|(taken, _)| *taken).collect();
    if let Err(e) = app.store.release_webhooks(&dropped).await {
        tracing::warn!(error = %e, "cannot give back the webhook sends cut short; they wait for their lease");
    }
}

/// Sends one webhook and records how it went: delivered, to be retried after its backoff, or
/// given up (dead letter).
async fn deliver(app: &Arc<App>, job: crate::store::WebhookJob) {
    // The merchant's current webhook URL: a retry follows a URL the shop corrected
    // after the event was queued. Nothing is sent without it: a shop that removed its URL (a
    // lost domain, say) gets nothing more there, and a merchant that cannot be read is tried
    // again later rather than signed for with another key.
    let (key, url, shop_origins) = match app.store.merchant(&job.merchant_id).await {
        Ok(Some(m)) => match m.shop_webhook_url.clone() {
            Some(url) => (
                app.shop_key(&job.merchant_id, &m),
                url,
                m.shop_origins.clone(),
            ),
            None => {
                return not_sent(app, &job, "the shop's webhook URL was removed: nothing was sent (set it again, then resend)", true).await;
            }
        },
        Ok(None) => {
            return not_sent(
                app,
                &job,
                "the merchant no longer exists: nothing was sent",
                true,
            )
            .await;
        }
        Err(e) => {
            let why = format!("cannot read the merchant, nothing was sent: {e}");
            return not_sent(app, &job, &why, false).await;
        }
    };
    let policy = app.webhook_policy(&url, &shop_origins);
    let sent = post(app, &policy, &url, &job.event_id, &job.body, &key).await;
    let (http_status, result) = (sent.status, sent.result);
    record_attempt(app, &job, http_status, result.as_ref().err().cloned()).await;
    match result {
        Ok(()) => {
            app.metrics.webhooks_delivered.inc();
            tracing::info!(event = %job.event_id, merchant = %job.merchant_id, "webhook delivered");
            if let Err(e) = app.store.webhook_delivered(job.id).await {
                tracing::error!(event = %job.event_id, error = %e, "cannot mark a webhook delivered; it will be sent again");
            }
        }
        Err(e) => {
            app.metrics.webhooks_failed.inc();
            retry_or_give_up(app, &job, &e, sent.retry_after_ms).await;
        }
    }
}

/// A webhook that was not sent: given up at once (`dead`: there is nowhere to send it), or
/// retried after its backoff like a failed send.
async fn not_sent(app: &Arc<App>, job: &crate::store::WebhookJob, why: &str, dead: bool) {
    record_attempt(app, job, None, Some(why.to_owned())).await;
    if !dead {
        app.metrics.webhooks_failed.inc();
        return retry_or_give_up(app, job, why, None).await;
    }
    app.metrics.webhooks_dead.inc();
    tracing::warn!(event = %job.event_id, merchant = %job.merchant_id, reason = why, "webhook not sent (dead letter)");
    if let Err(err) = app.store.webhook_dead(job.taken(), why).await {
        tracing::error!(event = %job.event_id, error = %err, "cannot record a webhook failure");
    }
}

/// Each attempt on the payment's timeline (one not sent too, with why).
async fn record_attempt(
    app: &Arc<App>,
    job: &crate::store::WebhookJob,
    http_status: Option<u16>,
    error: Option<String>,
) {
    let Some(no) = crate::store::ledger::webhook_order(&job.body) else {
        return;
    };
    let attempt = crate::store::ledger::WebhookAttempt {
        webhook_id: job.id,
        event_type: serde_json::from_str::<serde_json::Value>(&job.body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        at: crate::store::now_rfc3339(),
        http_status,
        error,
    };
    if let Err(e) = app
        .store
        .record_webhook_attempt(&job.merchant_id, &no, &attempt)
        .await
    {
        tracing::warn!(event = %job.event_id, error = %e, "cannot record a webhook attempt");
    }
}

/// After a failed attempt: the next one after the backoff — or later, when the shop asked for
/// that (`Retry-After`), never later than `retry_max_ms` — or the dead letter once the retry
/// window is over.
async fn retry_or_give_up(
    app: &Arc<App>,
    job: &crate::store::WebhookJob,
    error: &str,
    retry_after_ms: Option<u64>,
) {
    let cfg = &app.config.webhooks;
    let backoff = cfg
        .retry_base_ms
        .saturating_mul(1u64 << job.attempts.min(20))
        .max(retry_after_ms.unwrap_or(0))
        .min(cfg.retry_max_ms);
    let next = now_ms() + backoff as i64;
    let recorded = if next - job.created_ms > cfg.give_up_after_ms as i64 {
        app.metrics.webhooks_dead.inc();
        tracing::error!(event = %job.event_id, merchant = %job.merchant_id, attempts = job.attempts + 1, error = %error, "webhook given up after the retry window (dead letter); resend it from the admin page");
        app.store.webhook_dead(job.taken(), error).await
    } else {
        tracing::warn!(event = %job.event_id, merchant = %job.merchant_id, attempt = job.attempts + 1, retry_in_ms = backoff, error = %error, "webhook not delivered");
        app.store.webhook_failed(job.taken(), next, error).await
    };
    if let Err(err) = recorded {
        tracing::error!(event = %job.event_id, error = %err, "cannot record a webhook failure");
    }
}

/// What one send of a webhook came to.
struct Sent {
    /// The shop's HTTP status; `None` when no answer came.
    status: Option<u16>,
    result: Result<(), String>,
    /// When a shop answering 429 or 503 asked to be tried again (`Retry-After`).
    retry_after_ms: Option<u64>,
}

/// A `Retry-After` value (delay-seconds, or an HTTP date) as milliseconds from `now`; `None`
/// when it is neither, or already past.
fn retry_after_ms(value: &str, now: std::time::SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Posts one webhook.
async fn post(
    app: &App,
    policy: &crate::net::Policy,
    url: &str,
    event_id: &str,
    body: &str,
    key: &str,
) -> Sent {
    let signature = signature_header(key, now_ms() / 1000, body.as_bytes());
    let request = crate::net::Request {
        method: crate::net::Method::Post,
        url: url.to_owned(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-payhost-event-id".into(), event_id.to_owned()),
            ("x-payhost-signature".into(), signature),
        ],
        body: body.as_bytes().to_vec(),
    };
    let timeout = Duration::from_millis(app.config.webhooks.timeout_ms);
    let limits = crate::net::Limits {
        connect_timeout: timeout,
        answer_timeout: timeout,
        max_response_bytes: MAX_REPLY_BYTES,
        truncate: true,
    };
    let answer = match app.plugins.net().send(policy, &request, limits).await {
        Ok(a) => a,
        Err(e) => {
            return Sent {
                status: None,
                result: Err(e.to_string()),
                retry_after_ms: None,
            }
        }
    };
    let status = Some(answer.status);
    if (200..300).contains(&answer.status) {
        return Sent {
            status,
            result: Ok(()),
            retry_after_ms: None,
        };
    }
    // Only a shop saying it is busy or down is asked when to come back.
    let retry_after = matches!(answer.status, 429 | 503)
        .then(|| {
            answer
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| retry_after_ms(v, std::time::SystemTime::now()))
        })
        .flatten();
    let mut said = format!("the shop answered HTTP {}", answer.status);
    if let Some(ms) = retry_after.filter(|ms| *ms >= 1000) {
        said.push_str(&format!(" (Retry-After: {} s)", ms / 1000));
    }
    Sent {
        status,
        result: Err(said),
        retry_after_ms: retry_after,
    }
}

/// The `X-Payhost-Signature` value for a body sent at `unix` seconds.
pub fn signature_header(key: &str, unix: i64, body: &[u8]) -> String {
    let mut signed = format!("{unix}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={unix},v1={}", hmac_hex(key, &signed))
}

/// Checks an `X-Payhost-Signature` value (as a receiver would): the HMAC in constant time and `t`
/// within `tolerance_s` of `now_unix`.
pub fn verify_signature_header(
    key: &str,
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_s: i64,
) -> bool {
    use subtle::ConstantTimeEq;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_unix - t).abs() > tolerance_s {
        return false;
    }
    let expected = signature_header(key, t, body);
    let expected = &expected[expected.find(",v1=").map(|i| i + 4).unwrap_or(0)..];
    expected.len() == v1.len() && bool::from(expected.as_bytes().ct_eq(v1.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        assert_eq!(retry_after_ms("120", now), Some(120_000));
        assert_eq!(retry_after_ms(" 0 ", now), Some(0));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after_ms(&later, now), Some(90_000));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after_ms(&earlier, now), None);
        for bad in ["", "-5", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(retry_after_ms(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn signature_header_is_hmac_of_t_dot_body_and_expires() {
        let h = signature_header("k", 1_700_000_000, b"{}");
        assert_eq!(
            h,
            format!("t=1700000000,v1={}", hmac_hex("k", b"1700000000.{}"))
        );
        assert!(verify_signature_header("k", &h, b"{}", 1_700_000_100, 300));
        assert!(!verify_signature_header("k", &h, b"{}", 1_700_000_301, 300));
        assert!(!verify_signature_header(
            "k",
            &h,
            b"{ }",
            1_700_000_000,
            300
        ));
        assert!(!verify_signature_header(
            "other",
            &h,
            b"{}",
            1_700_000_000,
            300
        ));
        assert!(!verify_signature_header(
            "k",
            "sha256=00",
            b"{}",
            1_700_000_000,
            300
        ));
    }
}
