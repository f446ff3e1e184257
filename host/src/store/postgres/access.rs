//! [`Access`] on PostgreSQL.

use super::*;

#[async_trait]
impl Access for PostgresStore {
    async fn create_session(&self, id_hash: &str, csrf: &str, expires_ms: i64) -> Result<()> {
        let (id_hash, csrf) = (id_hash.to_owned(), csrf.to_owned());
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let r: Result<_> = async {
                let now = now_ms();
                // Expired sessions go when a new one is made.
                tx.execute("DELETE FROM admin_sessions WHERE expires_ms <= $1", &[&now])
                    .await?;
                tx.execute("INSERT INTO admin_sessions (id_hash, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
                    &[&id_hash, &csrf, &now, &expires_ms]).await?;
                Ok(())
            }
        .await;
        let r = r?;
        tx.commit().await.context("the database could not commit")?;
        Ok(r)
    }

    async fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>> {
        let id_hash = id_hash.to_owned();
        {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT csrf FROM admin_sessions WHERE id_hash = $1 AND expires_ms > $2",
                )
                .await?;
            Ok(c.query_opt(&st, &[&id_hash, &now_ms])
                .await?
                .map(|r| r.get(0)))
        }
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        {
            let c = self.client().await?;
            c.execute("DELETE FROM admin_sessions WHERE id_hash = $1", &[&id_hash])
                .await?;
            Ok(())
        }
    }

    async fn create_token(
        &self,
        merchant: &str,
        token_hash: &str,
        label: &str,
        created_by: &str,
    ) -> Result<Option<i64>> {
        let c = self.client().await?;
        let user = crate::store::maker_is_user(created_by);
        // Under key-share locks of the merchant's row, as a payment's insert, and of the making
        // user's: a removal in progress (it deletes the row) is waited for and its outcome seen.
        let row = c
            .query_opt(
                "INSERT INTO api_tokens (merchant_id, token_sha256, label, created_at, created_by)
                 SELECT $1, $2, $3, $4, $5
                 WHERE EXISTS (SELECT 1 FROM merchants WHERE id = $1 FOR KEY SHARE)
                   AND (NOT $6 OR EXISTS (SELECT 1 FROM admin_users WHERE name = $5 FOR KEY SHARE))
                 RETURNING id",
                &[
                    &merchant,
                    &token_hash,
                    &label,
                    &now_rfc3339(),
                    &created_by,
                    &user,
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn create_token_for_configured(
        &self,
        merchant: &str,
        token_hash: &str,
        label: &str,
        created_by: &str,
    ) -> Result<i64> {
        let c = self.client().await?;
        let row = c.query_one("INSERT INTO api_tokens (merchant_id, token_sha256, label, created_at, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&merchant, &token_hash, &label, &now_rfc3339(), &created_by]).await?;
        Ok(row.get(0))
    }

    async fn token_merchant(&self, token_hash: &str) -> Result<Option<String>> {
        let token_hash = token_hash.to_owned();
        {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT merchant_id FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                )
                .await?;
            Ok(c.query_opt(&st, &[&token_hash]).await?.map(|r| r.get(0)))
        }
    }

    async fn tokens(&self, merchant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let merchant = merchant.map(str::to_owned);
        {
            let c = self.client().await?;
            let rows = c.query(
                "SELECT id, merchant_id, label, created_at, revoked_at, created_by FROM api_tokens WHERE ($1::text IS NULL OR merchant_id = $1) ORDER BY id",
                &[&merchant],
            ).await?;
            Ok(rows.iter().map(token_info).collect())
        }
    }

    async fn revoke_token(&self, id: i64, merchant: Option<&str>) -> Result<bool> {
        let merchant = merchant.map(str::to_owned);
        {
            let c = self.client().await?;
            let n = c.execute("UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND ($2::text IS NULL OR merchant_id = $2) AND revoked_at IS NULL",
                &[&id, &merchant, &now_rfc3339()]).await?;
            Ok(n > 0)
        }
    }
}

/// A token of a row of `id, merchant_id, label, created_at, revoked_at, created_by`.
pub(super) fn token_info(r: &tokio_postgres::Row) -> TokenInfo {
    TokenInfo {
        id: r.get(0),
        merchant_id: r.get(1),
        label: r.get(2),
        created_at: r.get(3),
        revoked_at: r.get(4),
        created_by: r.get(5),
    }
}
