//! [`AdminStore`] on PostgreSQL: admin users, session users and messages, the audit log.

use super::*;
use crate::store::admin::{
    AdminSession, AdminStore, AdminUser, AuditEntry, AuditQuery, NoSuchMerchant, Role,
};
use anyhow::{anyhow, bail};

async fn user_of(c: &deadpool_postgres::Client, r: &Row) -> Result<AdminUser> {
    let name: String = r.get(0);
    let role: String = r.get(2);
    let merchants = c
        .query(
            "SELECT merchant_id FROM admin_user_merchants WHERE user_name = $1 ORDER BY merchant_id",
            &[&name],
        )
        .await?
        .iter()
        .map(|m| m.get(0))
        .collect();
    Ok(AdminUser {
        role: Role::parse(&role)
            .ok_or_else(|| anyhow!("admin user {name}: unknown role {role}"))?,
        password_hash: r.get(1),
        created_at: r.get(3),
        created_by: r.get(4),
        merchants,
        name,
    })
}

const USER_COLUMNS: &str =
    "SELECT name, password_hash, role, created_at, created_by FROM admin_users";

#[async_trait]
impl AdminStore for PostgresStore {
    async fn add_admin_user(&self, user: &AdminUser, seeded_later: &[String]) -> Result<()> {
        let (user, seeded_later) = (user.clone(), seeded_later.to_vec());
        self.tx(move |tx| {
            Box::pin(async move {
                // A key-share lock of each merchant's row until commit: a removal under way
                // (it locks the row first) finishes before, and then the row is gone; one that
                // starts after waits, and its delete of the merchant's grants sees this one.
                for m in user.merchants.iter().filter(|m| !seeded_later.contains(m)) {
                    let row = tx
                        .query_opt("SELECT 1 FROM merchants WHERE id = $1 FOR KEY SHARE", &[m])
                        .await?;
                    if row.is_none() {
                        return Err(NoSuchMerchant(m.clone()).into());
                    }
                }
                let inserted = tx
                    .execute(
                        "INSERT INTO admin_users (name, password_hash, role, created_at, created_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                        &[&user.name, &user.password_hash, &user.role.as_str(), &now_rfc3339(), &user.created_by],
                    )
                    .await?;
                if inserted == 0 {
                    bail!("an admin user named {:?} exists already", user.name);
                }
                for m in &user.merchants {
                    tx.execute(
                        "INSERT INTO admin_user_merchants (user_name, merchant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&user.name, m],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn remove_admin_user(&self, name: &str) -> Result<Option<Vec<TokenInfo>>> {
        let name = name.to_owned();
        self.tx(move |tx| {
            Box::pin(async move {
                let revoked = tx
                    .query(
                        "UPDATE api_tokens SET revoked_at = $2
                         WHERE created_by = $1 AND revoked_at IS NULL
                           AND created_at >= (SELECT created_at FROM admin_users WHERE name = $1)
                         RETURNING id, merchant_id, label, created_at, revoked_at, created_by",
                        &[&name, &now_rfc3339()],
                    )
                    .await?
                    .iter()
                    .map(super::access::token_info)
                    .collect::<Vec<_>>();
                tx.execute("DELETE FROM admin_sessions WHERE user_name = $1", &[&name])
                    .await?;
                tx.execute(
                    "DELETE FROM admin_user_merchants WHERE user_name = $1",
                    &[&name],
                )
                .await?;
                let removed = tx
                    .execute("DELETE FROM admin_users WHERE name = $1", &[&name])
                    .await?;
                Ok((removed == 1).then_some(revoked))
            })
        })
        .await
    }

    async fn set_admin_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.tx(move |tx| {
            Box::pin(async move {
                let changed = tx
                    .execute(
                        "UPDATE admin_users SET password_hash = $2 WHERE name = $1",
                        &[&name, &hash],
                    )
                    .await?;
                tx.execute("DELETE FROM admin_sessions WHERE user_name = $1", &[&name])
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn admin_user(&self, name: &str) -> Result<Option<AdminUser>> {
        let name = name.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            match c
                .query_opt(&format!("{USER_COLUMNS} WHERE name = $1"), &[&name])
                .await?
            {
                Some(r) => Ok(Some(user_of(&c, &r).await?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn admin_users(&self) -> Result<Vec<AdminUser>> {
        self.run(|pool| async move {
            let c = pool.get().await?;
            let mut users = Vec::new();
            for r in c
                .query(&format!("{USER_COLUMNS} ORDER BY name"), &[])
                .await?
            {
                users.push(user_of(&c, &r).await?);
            }
            Ok(users)
        })
        .await
    }

    async fn create_user_session(
        &self,
        id_hash: &str,
        csrf: &str,
        expires_ms: i64,
        user: Option<&str>,
    ) -> Result<()> {
        let (id_hash, csrf, user) = (id_hash.to_owned(), csrf.to_owned(), user.map(str::to_owned));
        self.tx(move |tx| {
            Box::pin(async move {
                let now = now_ms();
                // Expired sessions go when a new one is made.
                tx.execute("DELETE FROM admin_sessions WHERE expires_ms <= $1", &[&now])
                    .await?;
                tx.execute("INSERT INTO admin_sessions (id_hash, csrf, created_ms, expires_ms, user_name) VALUES ($1, $2, $3, $4, $5)",
                    &[&id_hash, &csrf, &now, &expires_ms, &user]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn admin_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<AdminSession>> {
        let id_hash = id_hash.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            Ok(c.query_opt(
                "SELECT csrf, user_name, created_ms, expires_ms FROM admin_sessions WHERE id_hash = $1 AND expires_ms > $2",
                &[&id_hash, &now_ms],
            )
            .await?
            .map(|r| AdminSession {
                csrf: r.get(0),
                user: r.get(1),
                created_ms: r.get(2),
                expires_ms: r.get(3),
            }))
        })
        .await
    }

    async fn extend_admin_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE admin_sessions SET expires_ms = $3 WHERE id_hash = $1 AND expires_ms > $2 AND expires_ms < $3",
                &[&id_hash, &now_ms, &expires_ms],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn set_session_flash(&self, id_hash: &str, flash: &str) -> Result<()> {
        let (id_hash, flash) = (id_hash.to_owned(), flash.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE admin_sessions SET flash = $2 WHERE id_hash = $1",
                &[&id_hash, &flash],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn restore_session_flash(&self, id_hash: &str, flash: &str) -> Result<()> {
        let (id_hash, flash) = (id_hash.to_owned(), flash.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE admin_sessions SET flash = $2 WHERE id_hash = $1 AND flash IS NULL",
                &[&id_hash, &flash],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn take_session_flash(&self, id_hash: &str) -> Result<Option<String>> {
        let id_hash = id_hash.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            // One statement: the old value is returned as it is cleared. The row is locked as it
            // is read, so a second request at once re-reads `flash` after the first clears it
            // (a plain self-join re-checks only the updated copy, and both returned it).
            Ok(c.query_opt(
                "WITH o AS (SELECT id_hash, flash FROM admin_sessions \
                     WHERE id_hash = $1 AND flash IS NOT NULL FOR UPDATE) \
                 UPDATE admin_sessions s SET flash = NULL FROM o \
                     WHERE s.id_hash = o.id_hash RETURNING o.flash",
                &[&id_hash],
            )
            .await?
            .and_then(|r| r.get(0)))
        })
        .await
    }

    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        merchant: Option<&str>,
        detail: &str,
    ) -> Result<i64> {
        let args = [actor, action, detail].map(str::to_owned);
        let merchant = merchant.map(str::to_owned);
        self.run(|pool| async move {
            let c = pool.get().await?;
            let row = c
                .query_one(
                    "INSERT INTO admin_audit (at, actor, action, merchant_id, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&now_rfc3339(), &args[0], &args[1], &merchant, &args[2]],
                )
                .await?;
            Ok(row.get(0))
        })
        .await
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let (scope, me) = match &q.scope {
            Some((merchants, me)) => (Some(merchants.clone()), Some(me.clone())),
            None => (None, None),
        };
        let q = q.clone();
        let limit = q.limit as i64;
        self.run(|pool| async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    "SELECT id, at, actor, action, merchant_id, detail FROM admin_audit \
                     WHERE ($1::BIGINT IS NULL OR id < $1) \
                       AND ($2::TEXT[] IS NULL OR merchant_id = ANY($2) \
                            OR (actor = $3::TEXT AND action = 'login' AND merchant_id IS NULL \
                                AND at >= (SELECT created_at FROM admin_users WHERE name = $3::TEXT))) \
                       AND ($4::TEXT IS NULL OR merchant_id = $4) \
                       AND ($5::TEXT IS NULL OR actor = $5) \
                       AND ($6::TEXT IS NULL OR action = $6) \
                     ORDER BY id DESC LIMIT $7",
                    &[
                        &q.before,
                        &scope,
                        &me,
                        &q.merchant,
                        &q.actor,
                        &q.action,
                        &limit,
                    ],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| AuditEntry {
                    id: r.get(0),
                    at: r.get(1),
                    actor: r.get(2),
                    action: r.get(3),
                    merchant_id: r.get(4),
                    detail: r.get(5),
                })
                .collect())
        })
        .await
    }
}
