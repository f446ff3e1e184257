//! [`AdminStore`] on SQLite: admin users, session users and messages, the audit log.

use super::SqliteStore;
use crate::store::admin::{
    AdminSession, AdminStore, AdminUser, AuditEntry, AuditQuery, NoSuchMerchant, Role,
};
use crate::store::*;
use anyhow::{anyhow, bail};
use rusqlite::{params, Connection, OptionalExtension};

fn user_of(conn: &Connection, row: (String, String, String, String, String)) -> Result<AdminUser> {
    let (name, password_hash, role, created_at, created_by) = row;
    let merchants = conn
        .prepare_cached(
            "SELECT merchant_id FROM admin_user_merchants WHERE user_name = ?1 ORDER BY merchant_id",
        )?
        .query_map([&name], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(AdminUser {
        role: Role::parse(&role)
            .ok_or_else(|| anyhow!("admin user {name}: unknown role {role}"))?,
        name,
        password_hash,
        merchants,
        created_at,
        created_by,
    })
}

const USER_COLUMNS: &str =
    "SELECT name, password_hash, role, created_at, created_by FROM admin_users";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn add_admin_user(&self, user: &AdminUser, seeded_later: &[String]) -> Result<()> {
        let (user, seeded_later) = (user.clone(), seeded_later.to_vec());
        self.write(move |conn| {
            // In the writer, after any removal queued before: one still there stays until this
            // commits, and its removal then takes the grant too.
            for m in user.merchants.iter().filter(|m| !seeded_later.contains(m)) {
                let exists: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM merchants WHERE id = ?1)")?
                    .query_row([m], |r| r.get(0))?;
                if !exists {
                    return Err(NoSuchMerchant(m.clone()).into());
                }
            }
            let taken: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM admin_users WHERE name = ?1)")?
                .query_row([&user.name], |r| r.get(0))?;
            if taken {
                bail!("an admin user named {:?} exists already", user.name);
            }
            conn.prepare_cached("INSERT INTO admin_users (name, password_hash, role, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![user.name, user.password_hash, user.role.as_str(), now_rfc3339(), user.created_by])?;
            for m in &user.merchants {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO admin_user_merchants (user_name, merchant_id) VALUES (?1, ?2)",
                )?
                .execute(params![user.name, m])?;
            }
            Ok(())
        })
        .await
    }

    async fn admin_user(&self, name: &str) -> Result<Option<AdminUser>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!("{USER_COLUMNS} WHERE name = ?1"))?
                .query_row([&name], user_row)
                .optional()?;
            row.map(|r| user_of(conn, r)).transpose()
        })
        .await
    }

    async fn admin_users(&self) -> Result<Vec<AdminUser>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!("{USER_COLUMNS} ORDER BY name"))?
                .query_map([], user_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|r| user_of(conn, r)).collect()
        })
        .await
    }

    async fn remove_admin_user(&self, name: &str) -> Result<Option<Vec<TokenInfo>>> {
        let name = name.to_owned();
        self.write(move |conn| {
            let now = now_rfc3339();
            let revoked = conn
                .prepare_cached(
                    "UPDATE api_tokens SET revoked_at = ?2
                     WHERE created_by = ?1 AND revoked_at IS NULL
                       AND created_at >= (SELECT created_at FROM admin_users WHERE name = ?1)
                     RETURNING id, merchant_id, label, created_at, revoked_at, created_by",
                )?
                .query_map(params![name, now], super::access::token_info)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            conn.prepare_cached("DELETE FROM admin_sessions WHERE user_name = ?1")?
                .execute([&name])?;
            conn.prepare_cached("DELETE FROM admin_user_merchants WHERE user_name = ?1")?
                .execute([&name])?;
            let removed = conn
                .prepare_cached("DELETE FROM admin_users WHERE name = ?1")?
                .execute([&name])?;
            Ok((removed == 1).then_some(revoked))
        })
        .await
    }

    async fn set_admin_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE admin_users SET password_hash = ?2 WHERE name = ?1")?
                .execute(params![name, hash])?;
            conn.prepare_cached("DELETE FROM admin_sessions WHERE user_name = ?1")?
                .execute([&name])?;
            Ok(changed == 1)
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
        self.write(move |conn| {
            let now = now_ms();
            // Expired sessions go when a new one is made.
            conn.prepare_cached("DELETE FROM admin_sessions WHERE expires_ms <= ?1")?
                .execute(params![now])?;
            conn.prepare_cached("INSERT INTO admin_sessions (id_hash, csrf, created_ms, expires_ms, user_name) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![id_hash, csrf, now, expires_ms, user])?;
            Ok(())
        })
        .await
    }

    async fn admin_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<AdminSession>> {
        let id_hash = id_hash.to_owned();
        self.read(move |conn| {
            Ok(conn
            .prepare_cached(
                "SELECT csrf, user_name, created_ms, expires_ms FROM admin_sessions WHERE id_hash = ?1 AND expires_ms > ?2",
            )?
            .query_row(params![id_hash, now_ms], |r| {
                Ok(AdminSession {
                    csrf: r.get(0)?,
                    user: r.get(1)?,
                    created_ms: r.get(2)?,
                    expires_ms: r.get(3)?,
                })
            })
            .optional()?)
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
        self.write(move |conn| {
            conn.prepare_cached("UPDATE admin_sessions SET expires_ms = ?3 WHERE id_hash = ?1 AND expires_ms > ?2 AND expires_ms < ?3")?
                .execute(params![id_hash, now_ms, expires_ms])?;
            Ok(())
        })
        .await
    }

    async fn set_session_flash(&self, id_hash: &str, flash: &str) -> Result<()> {
        let (id_hash, flash) = (id_hash.to_owned(), flash.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("UPDATE admin_sessions SET flash = ?2 WHERE id_hash = ?1")?
                .execute(params![id_hash, flash])?;
            Ok(())
        })
        .await
    }

    async fn restore_session_flash(&self, id_hash: &str, flash: &str) -> Result<()> {
        let (id_hash, flash) = (id_hash.to_owned(), flash.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE admin_sessions SET flash = ?2 WHERE id_hash = ?1 AND flash IS NULL",
            )?
            .execute(params![id_hash, flash])?;
            Ok(())
        })
        .await
    }

    async fn take_session_flash(&self, id_hash: &str) -> Result<Option<String>> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            let flash: Option<String> = conn
                .prepare_cached("SELECT flash FROM admin_sessions WHERE id_hash = ?1")?
                .query_row([&id_hash], |r| r.get(0))
                .optional()?
                .flatten();
            if flash.is_some() {
                conn.prepare_cached("UPDATE admin_sessions SET flash = NULL WHERE id_hash = ?1")?
                    .execute([&id_hash])?;
            }
            Ok(flash)
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
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO admin_audit (at, actor, action, merchant_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![now_rfc3339(), args[0], args[1], merchant, args[2]])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        // An owner's merchants as a JSON array SQLite reads with json_each.
        let (scope, me) = match &q.scope {
            Some((merchants, me)) => (
                Some(serde_json::to_string(merchants).unwrap_or_default()),
                Some(me.clone()),
            ),
            None => (None, None),
        };
        let q = q.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT id, at, actor, action, merchant_id, detail FROM admin_audit \
                 WHERE (?1 IS NULL OR id < ?1) \
                   AND (?2 IS NULL OR merchant_id IN (SELECT value FROM json_each(?2)) \
                        OR (actor = ?3 AND action = 'login' AND merchant_id IS NULL \
                            AND at >= (SELECT created_at FROM admin_users WHERE name = ?3))) \
                   AND (?4 IS NULL OR merchant_id = ?4) \
                   AND (?5 IS NULL OR actor = ?5) \
                   AND (?6 IS NULL OR action = ?6) \
                 ORDER BY id DESC LIMIT ?7",
                )?
                .query_map(
                    params![q.before, scope, me, q.merchant, q.actor, q.action, q.limit],
                    |r| {
                        Ok(AuditEntry {
                            id: r.get(0)?,
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            merchant_id: r.get(4)?,
                            detail: r.get(5)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}
