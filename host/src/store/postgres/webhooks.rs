//! [`Webhooks`] on PostgreSQL.

use super::*;

/// A row's lease as a token: its `lease_until` in µs (a timestamp's whole precision; the row
/// lock orders two leases of one row, so two never share a value).
const LEASE_TOKEN: &str = "(extract(epoch FROM lease_until) * 1000000)::bigint";

#[async_trait]
impl Webhooks for PostgresStore {
    async fn due_webhooks_fair(
        &self,
        now_ms: i64,
        limit: u32,
        per_merchant: u32,
        in_flight: &InFlight,
    ) -> Result<Vec<WebhookJob>> {
        let lease_ms = self.lease_ms;
        let (merchants, counts): (Vec<String>, Vec<i64>) = in_flight
            .per_merchant
            .iter()
            .map(|(m, n)| (m.clone(), i64::from(*n)))
            .unzip();
        {
            let c = self.client().await?;
            // The window picks the candidates (it cannot lock); the conditions are checked again
            // on the row as locked, which skips one another replica leased or delivered meanwhile.
            // Sends in flight are leased, so not candidates; they count against their merchant.
            let st = c
                .prepare_cached(
                    &"UPDATE webhook_outbox SET lease_until = clock_timestamp() + make_interval(secs => $3::bigint / 1000.0)
                 WHERE id IN (
                     SELECT id FROM webhook_outbox
                      WHERE id IN (
                          SELECT id FROM (
                              SELECT id, merchant_id, next_attempt_ms,
                                     ROW_NUMBER() OVER (PARTITION BY merchant_id ORDER BY next_attempt_ms, id) AS n
                                FROM webhook_outbox
                               WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_ms <= $1
                                 AND (lease_until IS NULL OR lease_until <= clock_timestamp())
                                 AND id <> ALL($7::bigint[])) w
                           WHERE n + COALESCE((SELECT b.c FROM unnest($5::text[], $6::bigint[]) AS b(m, c)
                                               WHERE b.m = w.merchant_id), 0) <= $4
                           ORDER BY next_attempt_ms, id LIMIT $2)
                        AND delivered_at IS NULL AND dead_at IS NULL AND next_attempt_ms <= $1
                        AND (lease_until IS NULL OR lease_until <= clock_timestamp())
                      FOR UPDATE SKIP LOCKED)
                 RETURNING id, event_id, merchant_id, url, body, attempts, created_ms, next_attempt_ms, LEASE_TOKEN"
                    .replace("LEASE_TOKEN", LEASE_TOKEN),
                )
                .await?;
            let rows = c
                .query(
                    &st,
                    &[
                        &now_ms,
                        &(limit as i64),
                        &lease_ms,
                        &(per_merchant as i64),
                        &merchants,
                        &counts,
                        &in_flight.ids,
                    ],
                )
                .await?;
            let mut jobs: Vec<(i64, WebhookJob)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(7),
                        WebhookJob {
                            id: r.get(0),
                            event_id: r.get(1),
                            merchant_id: r.get(2),
                            url: r.get(3),
                            body: r.get(4),
                            attempts: r.get::<_, i32>(5) as u32,
                            created_ms: r.get(6),
                            lease: Some(r.get(8)),
                        },
                    )
                })
                .collect();
            jobs.sort_by_key(|(next, j)| (*next, j.id));
            Ok(jobs.into_iter().map(|(_, j)| j).collect())
        }
    }

    async fn release_webhooks(&self, taken: &[Taken]) -> Result<()> {
        if taken.is_empty() {
            return Ok(());
        }
        let (ids, leases): (Vec<i64>, Vec<Option<i64>>) =
            taken.iter().map(|t| (t.id, t.lease)).unzip();
        let c = self.client().await?;
        c.execute(
            &format!(
                "UPDATE webhook_outbox SET lease_until = NULL
                  FROM unnest($1::bigint[], $2::bigint[]) AS t(id, lease)
                 WHERE webhook_outbox.id = t.id AND {LEASE_TOKEN} = t.lease
                   AND delivered_at IS NULL AND dead_at IS NULL"
            ),
            &[&ids, &leases],
        )
        .await?;
        Ok(())
    }

    async fn webhook_delivered(&self, id: i64) -> Result<()> {
        {
            let c = self.client().await?;
            c.execute("UPDATE webhook_outbox SET delivered_at = $2, attempts = attempts + 1, last_error = NULL, lease_until = NULL WHERE id = $1",
                &[&id, &now_rfc3339()]).await?;
            Ok(())
        }
    }

    async fn webhook_failed(&self, job: Taken, next_attempt_ms: i64, error: &str) -> Result<()> {
        let c = self.client().await?;
        // Not over a delivery, nor over another replica's lease: it took the row once this
        // one's lease ran out, and may be sending or have sent it.
        c.execute(
            &format!(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3, lease_until = NULL
                  WHERE id = $1 AND delivered_at IS NULL AND {LEASE_TOKEN} IS NOT DISTINCT FROM $4"
            ),
            &[&job.id, &next_attempt_ms, &error, &job.lease],
        )
        .await?;
        Ok(())
    }

    async fn webhook_dead(&self, job: Taken, error: &str) -> Result<()> {
        let c = self.client().await?;
        // Never over a delivery or another replica's lease (as `webhook_failed`).
        c.execute(
            &format!(
                "UPDATE webhook_outbox SET attempts = attempts + 1, dead_at = $2, last_error = $3, lease_until = NULL
                  WHERE id = $1 AND delivered_at IS NULL AND {LEASE_TOKEN} IS NOT DISTINCT FROM $4"
            ),
            &[&job.id, &now_rfc3339(), &error, &job.lease],
        )
        .await?;
        Ok(())
    }

    async fn pending_webhooks(&self) -> Result<u64> {
        {
            let c = self.client().await?;
            let n: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
                    &[],
                )
                .await?
                .get(0);
            Ok(n as u64)
        }
    }

    async fn dead_webhooks(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<DeadWebhook>> {
        let merchant = merchant.map(str::to_owned);
        {
            let c = self.client().await?;
            let rows = c.query(
                // The order from the body in SQL: "Resend all" reads up to 100,000 of these. The
                // body is payhost's own compact JSON; a pattern, because a cast of a body that is
                // not JSON would fail the whole list.
                "SELECT id, event_id, merchant_id, COALESCE(event_type, ''), attempts, last_error, dead_at,
                        substring(body from '\"out_trade_no\":\"([^\"\\\\]*)\"') FROM webhook_outbox
                 WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::text IS NULL OR merchant_id = $1) ORDER BY id DESC LIMIT $2",
                &[&merchant, &(limit as i64)],
            ).await?;
            Ok(rows
                .iter()
                .map(|r| DeadWebhook {
                    id: r.get(0),
                    event_id: r.get(1),
                    merchant_id: r.get(2),
                    event_type: r.get(3),
                    out_trade_no: r.get(7),
                    attempts: r.get::<_, i32>(4) as u32,
                    last_error: r.get(5),
                    dead_at: r.get(6),
                })
                .collect())
        }
    }

    async fn retrying_webhooks(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RetryingWebhook>> {
        let merchant = merchant.map(str::to_owned);
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, merchant_id, COALESCE(event_type, ''), body, attempts, last_error,
                        COALESCE(created_ms, next_attempt_ms), next_attempt_ms FROM webhook_outbox
                 WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0
                   AND ($1::text IS NULL OR merchant_id = $1)
                 ORDER BY COALESCE(created_ms, next_attempt_ms), id LIMIT $2",
                &[&merchant, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RetryingWebhook {
                id: r.get(0),
                merchant_id: r.get(1),
                event_type: r.get(2),
                out_trade_no: crate::store::ledger::webhook_order(r.get::<_, &str>(3)),
                attempts: r.get::<_, i32>(4) as u32,
                last_error: r.get(5),
                created_ms: r.get(6),
                next_attempt_ms: r.get(7),
            })
            .collect())
    }

    async fn resend_webhook(&self, merchant: &str, id: i64) -> Result<bool> {
        let merchant = merchant.to_owned();
        {
            let c = self.client().await?;
            let at = now_ms();
            let n = c.execute("UPDATE webhook_outbox SET dead_at = NULL, attempts = 0, next_attempt_ms = $3, created_ms = $3, lease_until = NULL
                     WHERE id = $1 AND merchant_id = $2 AND dead_at IS NOT NULL AND delivered_at IS NULL",
                &[&id, &merchant, &at]).await?;
            Ok(n > 0)
        }
    }

    async fn retry_webhooks_now(&self, merchant: Option<&str>) -> Result<u64> {
        let merchant = merchant.map(str::to_owned);
        let c = self.client().await?;
        let at = now_ms();
        // A row leased by a replica is being sent: left to it.
        let n = c
            .execute(
                "UPDATE webhook_outbox SET next_attempt_ms = $2
                 WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0
                   AND next_attempt_ms > $2 AND ($1::text IS NULL OR merchant_id = $1)
                   AND (lease_until IS NULL OR lease_until <= clock_timestamp())",
                &[&merchant, &at],
            )
            .await?;
        Ok(n)
    }
}
