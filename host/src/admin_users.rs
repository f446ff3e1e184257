//! Adding an admin user, the same rules from `payhost admin-user add` and the admin page: a name,
//! a role, an owner's merchants (each must exist), a password of 12 characters or more (kept as
//! its argon2 hash only).

use crate::store::admin::{valid_user_name, AdminUser, NoSuchMerchant, Role};
use crate::store::Store;

/// The audit log's name for whoever logs in with payhost.toml's `admin_password_hash`: no
/// admin user may take it.
pub const RESERVED_NAME: &str = "admin_password";

/// What to add.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub merchants: &'a [String],
    pub password: &'a str,
    /// Who adds it (`payhost admin-user` from the command line, else the admin user).
    pub created_by: &'a str,
    /// Merchants of payhost.toml not yet seeded into the store (known all the same).
    pub configured: &'a [String],
}

/// A refused field: its name and the rule, in Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

fn problem(field: &'static str, message: &str) -> FieldProblem {
    FieldProblem {
        field,
        message: message.to_owned(),
    }
}

/// Checks every field (all problems at once), hashes the password and stores the user.
pub async fn add(store: &dyn Store, new: &NewUser<'_>) -> Result<AdminUser, Vec<FieldProblem>> {
    let (name, role, merchants) = checked(store, new).await?;
    add_checked(store, new, name, role, merchants).await
}

/// What [`add`] would refuse, without adding: `payhost admin-user add --generate` asks before it
/// shows a password it may not set.
pub async fn problems_of(store: &dyn Store, new: &NewUser<'_>) -> Vec<FieldProblem> {
    checked(store, new).await.err().unwrap_or_default()
}

async fn checked<'a>(
    store: &dyn Store,
    new: &NewUser<'a>,
) -> Result<(&'a str, Option<Role>, Vec<String>), Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let name = new.name.trim();
    if name == RESERVED_NAME {
        problems.push(problem(
            "name",
            "admin_password 是 payhost.toml 主密码登录在操作日志里的名字，请换一个 / the audit log's name for payhost.toml's password: choose another",
        ));
    } else if !valid_user_name(name) {
        problems.push(problem(
            "name",
            "用户名为 1 到 64 个英文字母、数字或 _ . @ - / 1 to 64 ASCII letters, digits, '_', '.', '@' or '-'",
        ));
    } else if store.admin_user(name).await.ok().flatten().is_some() {
        problems.push(problem(
            "name",
            "该用户名已存在 / an admin user of that name exists already",
        ));
    }
    let role = Role::parse(new.role.trim());
    let mut merchants: Vec<String> = new
        .merchants
        .iter()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    merchants.sort();
    merchants.dedup();
    match role {
        None => problems.push(problem("role", "角色必须是 operator 或 owner / must be operator or owner")),
        Some(Role::Owner) if merchants.is_empty() => problems.push(problem(
            "merchants",
            "店主至少要有一个商户 / an owner needs at least one merchant",
        )),
        Some(Role::Operator) if !merchants.is_empty() => problems.push(problem(
            "merchants",
            "运营者能看到全部商户，不能限定商户 / an operator sees every merchant: give merchants to owners only",
        )),
        _ => {}
    }
    for m in &merchants {
        if !new.configured.contains(m) && store.merchant(m).await.ok().flatten().is_none() {
            problems.push(FieldProblem {
                field: "merchants",
                message: no_merchant(m),
            });
        }
    }
    if new.password.chars().count() < 12 {
        problems.push(problem(
            "password",
            "密码至少 12 个字符 / at least 12 characters",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((name, role, merchants))
}

fn no_merchant(m: &str) -> String {
    format!("没有商户 {m} / no merchant {m:?}")
}

async fn add_checked(
    store: &dyn Store,
    new: &NewUser<'_>,
    name: &str,
    role: Option<Role>,
    merchants: Vec<String>,
) -> Result<AdminUser, Vec<FieldProblem>> {
    // argon2 takes tens of milliseconds: off the async workers.
    let password = new.password.to_owned();
    let hashed = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the hashing task failed: {e}")));
    let password_hash = hashed.map_err(|e| {
        vec![problem(
            "password",
            &format!("cannot hash the password: {e}"),
        )]
    })?;
    let user = AdminUser {
        name: name.to_owned(),
        password_hash,
        role: role.expect("checked above"),
        merchants,
        created_at: crate::store::now_rfc3339(),
        created_by: new.created_by.to_owned(),
    };
    store
        .add_admin_user(&user, new.configured)
        .await
        .map_err(|e| match e.downcast_ref::<NoSuchMerchant>() {
            // Removed since `checked` found it.
            Some(NoSuchMerchant(m)) => vec![FieldProblem {
                field: "merchants",
                message: no_merchant(m),
            }],
            None => vec![problem("name", &e.to_string())],
        })?;
    let detail = format!(
        "{} {} {}",
        user.name,
        user.role.as_str(),
        user.merchants.join(",")
    );
    if let Err(e) = store
        .record_audit(new.created_by, "user.add", None, detail.trim())
        .await
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    Ok(user)
}

/// Removes an admin user (their sessions end at once, the API tokens they made are revoked),
/// from `payhost admin-user remove` and the operator's page; written to the audit log as
/// `user.remove` by `by`, and each token as `token.revoke` under its merchant. Returns the tokens
/// revoked; None: no such user.
pub async fn remove(
    store: &dyn Store,
    name: &str,
    by: &str,
) -> anyhow::Result<Option<Vec<crate::store::TokenInfo>>> {
    let name = name.trim();
    let removed = store.remove_admin_user(name).await?;
    if let Some(tokens) = &removed {
        let mut entries = vec![("user.remove", None, name.to_owned())];
        entries.extend(tokens.iter().map(|t| {
            (
                "token.revoke",
                Some(t.merchant_id.as_str()),
                match t.label.is_empty() {
                    true => format!("token #{}: made by {name}, removed", t.id),
                    false => format!("token #{} {}: made by {name}, removed", t.id, t.label),
                },
            )
        }));
        for (action, merchant, detail) in entries {
            if let Err(e) = store
                .record_audit(by, action, merchant, detail.trim())
                .await
            {
                tracing::error!(error = %e, "cannot write the audit log");
            }
        }
    }
    Ok(removed)
}

/// The revoked tokens as a list for a message: `#3 (shop-a, ecshop)`, comma-separated.
pub fn token_list(tokens: &[crate::store::TokenInfo]) -> String {
    tokens
        .iter()
        .map(|t| match t.label.is_empty() {
            true => format!("#{} ({})", t.id, t.merchant_id),
            false => format!("#{} ({}, {})", t.id, t.merchant_id, t.label),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gives an admin user a new password (12 characters or more; their sessions end at once), from
/// `payhost admin-user password`. Audited as `user.password` by `by`.
pub async fn set_password(
    store: &dyn Store,
    name: &str,
    password: &str,
    by: &str,
) -> Result<(), FieldProblem> {
    if password.chars().count() < 12 {
        return Err(problem(
            "password",
            "密码至少 12 个字符 / at least 12 characters",
        ));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the hashing task failed: {e}")))
        .map_err(|e| problem("password", &format!("cannot hash the password: {e}")))?;
    match store.set_admin_password(name.trim(), &hash).await {
        Ok(true) => {
            if let Err(e) = store.record_audit(by, "user.password", None, name).await {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            Ok(())
        }
        Ok(false) => Err(problem(
            "name",
            &format!("没有管理员 {name} / no admin user {name:?}"),
        )),
        Err(e) => Err(problem("name", &e.to_string())),
    }
}
