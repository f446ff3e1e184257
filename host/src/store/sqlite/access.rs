//! [`Access`] (admin sessions and API tokens) on SQLite.

use super::SqliteStore;
use crate::store::*;
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl Access for SqliteStore {
    async fn create_session(&self, id_hash: &str, csrf: &str, expires_ms: i64) -> Result<()> {
        let (id_hash, csrf) = (id_hash.to_owned(), csrf.to_owned());
        self.write(move |conn| {
            let now = now_ms();
            // Expired sessions go when a new one is made.
            conn.prepare_cached("DELETE FROM admin_sessions WHERE expires_ms <= ?1")?
                .execute(params![now])?;
            conn.prepare_cached("INSERT INTO admin_sessions (id_hash, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![id_hash, csrf, now, expires_ms])?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>> {
        let id_hash = id_hash.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT csrf FROM admin_sessions WHERE id_hash = ?1 AND expires_ms > ?2",
            )?
            .query_row(params![id_hash, now_ms], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM admin_sessions WHERE id_hash = ?1")?
                .execute(params![id_hash])?;
            Ok(())
        })
        .await
    }

    async fn create_token(
        &self,
        merchant: &str,
        token_hash: &str,
        label: &str,
        created_by: &str,
    ) -> Result<Option<i64>> {
        let args = [merchant, token_hash, label, created_by].map(str::to_owned);
        let user = crate::store::maker_is_user(created_by);
        self.write(move |conn| {
            // Checked in the writer's statement: a removal (of the merchant, or of the user
            // making it) is another write, before or after.
            let n = conn
                .prepare_cached(
                    "INSERT INTO api_tokens (merchant_id, token_sha256, label, created_at, created_by)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM merchants WHERE id = ?1)
                       AND (NOT ?6 OR EXISTS (SELECT 1 FROM admin_users WHERE name = ?5))",
                )?
                .execute(params![args[0], args[1], args[2], now_rfc3339(), args[3], user])?;
            Ok((n > 0).then(|| conn.last_insert_rowid()))
        })
        .await
    }

    async fn create_token_for_configured(
        &self,
        merchant: &str,
        token_hash: &str,
        label: &str,
        created_by: &str,
    ) -> Result<i64> {
        let args = [merchant, token_hash, label, created_by].map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO api_tokens (merchant_id, token_sha256, label, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![args[0], args[1], args[2], now_rfc3339(), args[3]])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn token_merchant(&self, token_hash: &str) -> Result<Option<String>> {
        let token_hash = token_hash.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT merchant_id FROM api_tokens WHERE token_sha256 = ?1 AND revoked_at IS NULL",
            )?
            .query_row(params![token_hash], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn tokens(&self, merchant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let merchant = merchant.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, merchant_id, label, created_at, revoked_at, created_by FROM api_tokens WHERE (?1 IS NULL OR merchant_id = ?1) ORDER BY id",
            )?;
            let rows = stmt
                .query_map(params![merchant], token_info)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_token(&self, id: i64, merchant: Option<&str>) -> Result<bool> {
        let merchant = merchant.map(str::to_owned);
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE api_tokens SET revoked_at = ?3 WHERE id = ?1 AND (?2 IS NULL OR merchant_id = ?2) AND revoked_at IS NULL")?
                .execute(params![id, merchant, now_rfc3339()])?;
            Ok(n > 0)
        })
        .await
    }
}

/// A token of a row of `id, merchant_id, label, created_at, revoked_at, created_by`.
pub(super) fn token_info(r: &rusqlite::Row) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        merchant_id: r.get(1)?,
        label: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
        created_by: r.get(5)?,
    })
}
