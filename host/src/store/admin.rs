//! What the admin pages keep besides payments: admin users (operators, and shop owners limited to
//! their merchants), the user and one-shot message of each session, and the audit log of every
//! state-changing admin action. A trait of its own so both stores implement it beside [`Store`].
//!
//! [`Store`]: super::Store

use anyhow::Result;
use serde::Serialize;

/// What an admin user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every merchant, the admin users and the audit log.
    Operator,
    /// Only the merchants the user is given.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub role: Role,
    /// The merchants an owner sees (an operator's list is empty: it sees every one).
    pub merchants: Vec<String>,
    pub created_at: String,
    pub created_by: String,
}

/// A live admin session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    pub csrf: String,
    /// None: logged in with payhost.toml's `admin_password_hash` (an operator).
    pub user: Option<String>,
    /// When it was created (its lifetime, `[admin] session_ttl_s`, counts from here).
    pub created_ms: i64,
    /// When it ends unless used before: moved on by [`AdminStore::extend_admin_session`].
    pub expires_ms: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339 UTC.
    pub at: String,
    pub actor: String,
    /// `settings.save`, `token.create`, `token.revoke`, `webhook.resend`, `refund.start`, …
    pub action: String,
    pub merchant_id: Option<String>,
    pub detail: String,
}

/// Which audit entries a page or an export reads: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// An owner's view: the entries of these merchants, and the logins of this name since the
    /// user of that name was made (a removed user's name given again does not bring along what
    /// the earlier one did elsewhere). None: every entry (an operator's).
    pub scope: Option<(Vec<String>, String)>,
    pub merchant: Option<String>,
    /// Who did it: a user name, `admin_password`, `api:…`, `payhost admin-user`.
    pub actor: Option<String>,
    /// `refund.start`, `login`, …
    pub action: Option<String>,
    /// Older than this entry (its id).
    pub before: Option<i64>,
    pub limit: u32,
}

/// An owner's merchant that is not in the store when the user is stored: removed since it was
/// checked (the grant would otherwise outlive the merchant, and reach a later one of that id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchMerchant(pub String);

impl std::fmt::Display for NoSuchMerchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no merchant {:?}", self.0)
    }
}

impl std::error::Error for NoSuchMerchant {}

/// A user name: letters, digits and `_ . @ -`, 1 to 64.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
        // `.` and `..` are path segments to a browser: the users page's remove button of such
        // a user would post somewhere else.
        && !name.bytes().all(|b| b == b'.')
}

#[async_trait::async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Adds a user; an error when the name is taken, and [`NoSuchMerchant`] when one of an
    /// owner's merchants is not in the store at that moment, unless it is in `seeded_later`
    /// (payhost.toml's merchants, stored when `serve` starts). Checked in the same transaction
    /// as the insert, so a merchant removed meanwhile keeps no grant.
    async fn add_admin_user(&self, user: &AdminUser, seeded_later: &[String]) -> Result<()>;
    async fn admin_user(&self, name: &str) -> Result<Option<AdminUser>>;
    async fn admin_users(&self) -> Result<Vec<AdminUser>>;
    /// Removes a user, their merchants and every session of theirs (logged out at once), and
    /// revokes the live API tokens they made (a token outliving its maker's login would keep
    /// their access: it can refund). Returns the tokens revoked; None when there was no such
    /// user. A token is theirs when it names them and was made since they were added (an
    /// earlier user of the same name is another person).
    async fn remove_admin_user(&self, name: &str) -> Result<Option<Vec<crate::store::TokenInfo>>>;
    /// Replaces a user's password hash and ends every session of theirs. False when there was
    /// no such user.
    async fn set_admin_password(&self, name: &str, password_hash: &str) -> Result<bool>;

    /// A session of `user` (None: the `admin_password_hash` operator).
    async fn create_user_session(
        &self,
        id_hash: &str,
        csrf: &str,
        expires_ms: i64,
        user: Option<&str>,
    ) -> Result<()>;
    async fn admin_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<AdminSession>>;
    /// Moves a live session's end to `expires_ms` (never earlier than it is): the owner is
    /// still working. An ended session stays ended.
    async fn extend_admin_session(&self, id_hash: &str, now_ms: i64, expires_ms: i64)
        -> Result<()>;
    /// Keeps the message the session's next page shows.
    async fn set_session_flash(&self, id_hash: &str, flash: &str) -> Result<()>;
    /// The session's message, removed as it is read.
    async fn take_session_flash(&self, id_hash: &str) -> Result<Option<String>>;
    /// Puts a message taken by a page it was not for back, unless a newer one was kept since.
    async fn restore_session_flash(&self, id_hash: &str, flash: &str) -> Result<()>;

    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        merchant: Option<&str>,
        detail: &str,
    ) -> Result<i64>;
    /// The entries `q` asks for, newest first.
    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_one_path_segment_of_their_own() {
        for ok in ["alice", "a.b", "owner-market", "x@shop.example", "..a"] {
            assert!(valid_user_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "...", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_user_name(bad), "{bad}");
        }
    }
}
