//! [`Merchants`] on SQLite.

use super::SqliteStore;
use crate::config::MerchantSettings;
use crate::store::*;
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl Merchants for SqliteStore {
    async fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>> {
        let json = self.merchant_stored(id).await?;
        json.map(|j| parse_merchant(&j)).transpose()
    }

    async fn merchant_stored(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        self.read_here(move |c| {
            Ok(
                c.prepare_cached("SELECT settings FROM merchants WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn merchant_ids(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id FROM merchants ORDER BY id")?;
            let ids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(ids)
        })
        .await
    }

    async fn save_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        expected: Expected<'_>,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let id = id.to_owned();
        let (sql, old) = match expected {
            Expected::Anything => ("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'api', NULL, ?3)
                 ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, source = 'api', updated_at = excluded.updated_at", None),
            Expected::Absent => ("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'api', NULL, ?3)
                 ON CONFLICT(id) DO NOTHING", None),
            Expected::Stored(old) => ("UPDATE merchants SET settings = ?2, source = 'api', updated_at = ?3 WHERE id = ?1 AND settings = ?4", Some(old.to_owned())),
        };
        self.write(move |conn| {
            let mut st = conn.prepare_cached(sql)?;
            let n = match &old {
                Some(old) => st.execute(params![id, json, now_rfc3339(), old])?,
                None => st.execute(params![id, json, now_rfc3339()])?,
            };
            Ok(n == 1)
        })
        .await
    }

    async fn merchant_origin(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT source, config_hash FROM merchants WHERE id = ?1")?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            )
        })
        .await
    }

    async fn update_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: Option<&str>,
        expected: &str,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let (id, config_hash, expected) = (
            id.to_owned(),
            config_hash.map(str::to_owned),
            expected.to_owned(),
        );
        self.write(move |conn| {
            let n = conn.prepare_cached("UPDATE merchants SET settings = ?2, config_hash = COALESCE(?3, config_hash), updated_at = ?4 WHERE id = ?1 AND settings = ?5")?
                .execute(params![id, json, config_hash, now_rfc3339(), expected])?;
            Ok(n == 1)
        })
        .await
    }

    async fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let (id, config_hash) = (id.to_owned(), config_hash.to_owned());
        self.write(move |conn| {
            let changed = conn.prepare_cached("INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'config', ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, source = 'config',
                     config_hash = excluded.config_hash, updated_at = excluded.updated_at
                 WHERE merchants.config_hash IS NOT excluded.config_hash")?
                .execute(params![id, json, config_hash, now_rfc3339()])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn delete_merchant(&self, id: &str, with_payments: bool) -> Result<MerchantRemoval> {
        let id = id.to_owned();
        self.write(move |conn| {
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM merchants WHERE id = ?1)",
                params![id],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(MerchantRemoval::Unknown);
            }
            let (payments, paid): (i64, i64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(paid_at IS NOT NULL OR status IN ('TRADE_SUCCESS', 'TRADE_FINISHED', 'REFUNDED')), 0) FROM payments WHERE merchant_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (payments, paid) = (payments as u64, paid as u64);
            if payments > 0 && !with_payments {
                return Ok(MerchantRemoval::HasPayments { payments, paid });
            }
            // Results first: they reference their raw notification.
            for sql in [
                "DELETE FROM notification_results WHERE merchant_id = ?1",
                "DELETE FROM raw_notifications WHERE merchant_id = ?1",
                "DELETE FROM applied_notifications WHERE merchant_id = ?1",
                "DELETE FROM webhook_outbox WHERE merchant_id = ?1",
                "DELETE FROM refunds WHERE merchant_id = ?1",
                "DELETE FROM payment_events WHERE merchant_id = ?1",
                "DELETE FROM webhook_attempts WHERE merchant_id = ?1",
                "DELETE FROM payments WHERE merchant_id = ?1",
                "DELETE FROM api_tokens WHERE merchant_id = ?1",
                "DELETE FROM merchants WHERE id = ?1",
            ] {
                conn.execute(sql, params![id])?;
            }
            let owner_grants = conn.execute(
                "DELETE FROM admin_user_merchants WHERE merchant_id = ?1",
                params![id],
            )? as u64;
            Ok(MerchantRemoval::Removed {
                payments,
                owner_grants,
            })
        })
        .await
    }
}
