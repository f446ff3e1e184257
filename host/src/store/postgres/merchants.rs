//! [`Merchants`] on PostgreSQL.

use super::*;

#[async_trait]
impl Merchants for PostgresStore {
    async fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>> {
        let json = self.merchant_stored(id).await?;
        json.map(|j| parse_merchant(&j)).transpose()
    }

    async fn merchant_stored(&self, id: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT settings FROM merchants WHERE id = $1")
            .await?;
        Ok(c.query_opt(&st, &[&id]).await?.map(|r| r.get(0)))
    }

    async fn merchant_ids(&self) -> Result<Vec<String>> {
        {
            let c = self.client().await?;
            let rows = c.query("SELECT id FROM merchants ORDER BY id", &[]).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        }
    }

    async fn save_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        expected: Expected<'_>,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let c = self.client().await?;
        let now = now_rfc3339();
        let n = match expected {
            Expected::Anything => c.execute("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES ($1, $2, 'api', NULL, $3)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, source = 'api', updated_at = excluded.updated_at",
                &[&id, &json, &now]).await?,
            Expected::Absent => c.execute("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES ($1, $2, 'api', NULL, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &json, &now]).await?,
            // One statement: the row is locked while it is compared and written.
            Expected::Stored(old) => c.execute("UPDATE merchants SET settings = $2, source = 'api', updated_at = $3 WHERE id = $1 AND settings = $4",
                &[&id, &json, &now, &old]).await?,
        };
        Ok(n == 1)
    }

    async fn merchant_origin(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        let id = id.to_owned();
        {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT source, config_hash FROM merchants WHERE id = $1")
                .await?;
            Ok(c.query_opt(&st, &[&id])
                .await?
                .map(|r| (r.get(0), r.get(1))))
        }
    }

    async fn update_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: Option<&str>,
        expected: &str,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE merchants SET settings = $2, config_hash = COALESCE($3, config_hash), updated_at = $4 WHERE id = $1 AND settings = $5",
                &[&id, &json, &config_hash, &now_rfc3339(), &expected],
            )
            .await?;
        Ok(n == 1)
    }

    async fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let (id, config_hash) = (id.to_owned(), config_hash.to_owned());
        {
            let c = self.client().await?;
            let n = c.execute("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES ($1, $2, 'config', $3, $4)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, source = 'config',
                     config_hash = excluded.config_hash, updated_at = excluded.updated_at
                 WHERE merchants.config_hash IS DISTINCT FROM excluded.config_hash",
                &[&id, &json, &config_hash, &now_rfc3339()]).await?;
            Ok(n > 0)
        }
    }

    async fn delete_merchant(&self, id: &str, with_payments: bool) -> Result<MerchantRemoval> {
        let id = id.to_owned();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let r: Result<_> = async {
                // Locks the merchant's row, so no payment is created for it meanwhile.
                let row = tx
                    .query_opt("SELECT id FROM merchants WHERE id = $1 FOR UPDATE", &[&id])
                    .await?;
                if row.is_none() {
                    return Ok(MerchantRemoval::Unknown);
                }
                // Then its payments, before anything else of theirs: every other writer locks a
                // payment before its refunds, notifications and outbox rows, so a notification or
                // refund under way finishes first (and what it wrote is deleted below), or waits
                // and finds no payment. Deleting refunds first would take their locks in the
                // other order (a deadlock with a refund being settled).
                tx.execute(
                    "SELECT 1 FROM payments WHERE merchant_id = $1 ORDER BY out_trade_no FOR UPDATE",
                    &[&id],
                )
                .await?;
                let counts = tx
                    .query_one(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE paid_at IS NOT NULL OR status IN ('TRADE_SUCCESS', 'TRADE_FINISHED', 'REFUNDED')) FROM payments WHERE merchant_id = $1",
                        &[&id],
                    )
                    .await?;
                let (payments, paid) = (counts.get::<_, i64>(0) as u64, counts.get::<_, i64>(1) as u64);
                if payments > 0 && !with_payments {
                    return Ok(MerchantRemoval::HasPayments { payments, paid });
                }
                // Results first: they reference their raw notification.
                for sql in [
                    "DELETE FROM notification_results WHERE merchant_id = $1",
                    "DELETE FROM raw_notifications WHERE merchant_id = $1",
                    "DELETE FROM applied_notifications WHERE merchant_id = $1",
                    "DELETE FROM webhook_outbox WHERE merchant_id = $1",
                    "DELETE FROM refunds WHERE merchant_id = $1",
                    "DELETE FROM payment_events WHERE merchant_id = $1",
                    "DELETE FROM webhook_attempts WHERE merchant_id = $1",
                    "DELETE FROM payments WHERE merchant_id = $1",
                    "DELETE FROM api_tokens WHERE merchant_id = $1",
                    "DELETE FROM merchants WHERE id = $1",
                ] {
                    tx.execute(sql, &[&id]).await?;
                }
                let owner_grants = tx
                    .execute("DELETE FROM admin_user_merchants WHERE merchant_id = $1", &[&id])
                    .await?;
                Ok(MerchantRemoval::Removed { payments, owner_grants })
            }
        .await;
        let r = r?;
        tx.commit().await.context("the database could not commit")?;
        Ok(r)
    }
}
