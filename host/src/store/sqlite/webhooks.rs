//! [`Webhooks`] (the outbox) on SQLite: one replica, so no leases.

use super::SqliteStore;
use crate::store::*;
use rusqlite::params;

#[async_trait]
impl Webhooks for SqliteStore {
    async fn due_webhooks_fair(
        &self,
        now_ms: i64,
        limit: u32,
        per_merchant: u32,
        in_flight: &InFlight,
    ) -> Result<Vec<WebhookJob>> {
        let ids = serde_json::to_string(&in_flight.ids)?;
        let counts = serde_json::to_string(
            &in_flight
                .per_merchant
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<String, u32>>(),
        )?;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, event_id, merchant_id, url, body, attempts, created FROM (
                     SELECT id, event_id, merchant_id, url, body, attempts, next_attempt_ms,
                            COALESCE(created_ms, next_attempt_ms) AS created,
                            ROW_NUMBER() OVER (PARTITION BY merchant_id ORDER BY next_attempt_ms, id) AS n
                       FROM webhook_outbox
                      WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_ms <= ?1
                        AND id NOT IN (SELECT value FROM json_each(?4)))
                  WHERE n + COALESCE((SELECT value FROM json_each(?5) WHERE key = merchant_id), 0) <= ?3
                  ORDER BY next_attempt_ms, id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![now_ms, limit, per_merchant, ids, counts], |r| {
                    Ok(WebhookJob {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        merchant_id: r.get(2)?,
                        url: r.get(3)?,
                        body: r.get(4)?,
                        attempts: r.get::<_, i64>(5)? as u32,
                        created_ms: r.get(6)?,
                        lease: None,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn webhook_delivered(&self, id: i64) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1")?
                .execute(params![id, now_rfc3339()])?;
            Ok(())
        })
        .await
    }

    async fn webhook_failed(&self, job: Taken, next_attempt_ms: i64, error: &str) -> Result<()> {
        let (id, error) = (job.id, error.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1 AND delivered_at IS NULL")?
                .execute(params![id, next_attempt_ms, error])?;
            Ok(())
        })
        .await
    }

    async fn webhook_dead(&self, job: Taken, error: &str) -> Result<()> {
        let (id, error) = (job.id, error.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("UPDATE webhook_outbox SET attempts = attempts + 1, dead_at = ?2, last_error = ?3 WHERE id = ?1 AND delivered_at IS NULL")?
                .execute(params![id, now_rfc3339(), error])?;
            Ok(())
        })
        .await
    }

    async fn pending_webhooks(&self) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn dead_webhooks(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<DeadWebhook>> {
        let merchant = merchant.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                // The order from the body in SQL: "Resend all" reads up to 100,000 of these.
                "SELECT id, event_id, merchant_id, COALESCE(event_type, ''), attempts, last_error, dead_at,
                        CASE WHEN json_valid(body) THEN json_extract(body, '$.out_trade_no') END FROM webhook_outbox
                 WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND (?1 IS NULL OR merchant_id = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![merchant, limit], |r| {
                    Ok(DeadWebhook {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        merchant_id: r.get(2)?,
                        event_type: r.get(3)?,
                        out_trade_no: r.get::<_, Option<String>>(7).ok().flatten(),
                        attempts: r.get::<_, i64>(4)? as u32,
                        last_error: r.get(5)?,
                        dead_at: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn retrying_webhooks(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RetryingWebhook>> {
        let merchant = merchant.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, merchant_id, COALESCE(event_type, ''), body, attempts, last_error,
                        COALESCE(created_ms, next_attempt_ms), next_attempt_ms FROM webhook_outbox
                 WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0
                   AND (?1 IS NULL OR merchant_id = ?1)
                 ORDER BY COALESCE(created_ms, next_attempt_ms), id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![merchant, limit], |r| {
                    Ok(RetryingWebhook {
                        id: r.get(0)?,
                        merchant_id: r.get(1)?,
                        event_type: r.get(2)?,
                        out_trade_no: crate::store::ledger::webhook_order(&r.get::<_, String>(3)?),
                        attempts: r.get::<_, i64>(4)? as u32,
                        last_error: r.get(5)?,
                        created_ms: r.get(6)?,
                        next_attempt_ms: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn resend_webhook(&self, merchant: &str, id: i64) -> Result<bool> {
        let merchant = merchant.to_owned();
        self.write(move |conn| {
            let at = now_ms();
            let n = conn
                .prepare_cached("UPDATE webhook_outbox SET dead_at = NULL, attempts = 0, next_attempt_ms = ?3, created_ms = ?3
                     WHERE id = ?1 AND merchant_id = ?2 AND dead_at IS NOT NULL AND delivered_at IS NULL")?
                .execute(params![id, merchant, at])?;
            Ok(n > 0)
        })
        .await
    }

    async fn retry_webhooks_now(&self, merchant: Option<&str>) -> Result<u64> {
        let merchant = merchant.map(str::to_owned);
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE webhook_outbox SET next_attempt_ms = ?2
                     WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0
                       AND next_attempt_ms > ?2 AND (?1 IS NULL OR merchant_id = ?1)",
                )?
                .execute(params![merchant, now_ms()])?;
            Ok(n as u64)
        })
        .await
    }
}
