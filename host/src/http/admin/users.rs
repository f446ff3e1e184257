//! The operator's pages: admin users (list, add, remove).

use super::view::Flash;
use super::{Ctx, Form, Page, PostResult, Posted};
use crate::service::App;
use minijinja::{context, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn list(app: &Arc<App>, ctx: &Ctx) -> Page {
    if !ctx.who.operator() {
        return Page::Forbidden;
    }
    let zone = &app.config.admin.time_zone;
    // The live tokens each user made: removing the user revokes them (their shops stop), so the
    // remove button says how many.
    let tokens = app.store.tokens(None).await.unwrap_or_default();
    let made_by = |name: &str| {
        tokens
            .iter()
            .filter(|t| t.revoked_at.is_none() && t.created_by.as_deref() == Some(name))
            .count()
    };
    let users: Vec<Value> = app
        .store
        .admin_users()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            context! {
                tokens => made_by(&u.name),
                name => u.name, role => u.role.as_str(), merchants => u.merchants,
                created => zone.show(&u.created_at), created_by => super::words::who(ctx.lang, &u.created_by),
            }
        })
        .collect();
    let (errors, typed, lists) = ctx.form_state();
    let typed_merchants = lists
        .get_attr("merchant")
        .ok()
        .filter(|v| !v.is_undefined())
        .unwrap_or_else(|| Value::from(Vec::<String>::new()));
    Page::View {
        template: "users.html",
        section: "users",
        values: context! {
            users, errors, typed, typed_merchants,
            merchant_ids => app.store.merchant_ids().await.unwrap_or_default(),
        },
    }
}

pub async fn add(app: &Arc<App>, ctx: &Ctx, form: &Form) -> PostResult {
    if !ctx.who.operator() {
        return PostResult::Forbidden;
    }
    let merchants: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "merchant")
        .map(|(_, v)| v.clone())
        .collect();
    let name = super::field(form, "name");
    let role = super::field(form, "role");
    let new = crate::admin_users::NewUser {
        name,
        role,
        merchants: &merchants,
        password: super::field(form, "password"),
        created_by: &ctx.who.name,
        configured: &[],
    };
    let result = crate::admin_users::add(app.store.as_ref(), &new).await;
    match result {
        Ok(u) => PostResult::Done(Posted::to(
            "/admin/users",
            Flash::ok(format!(
                "{} {}",
                ctx.t("已添加管理员", "Admin user added:"),
                u.name
            )),
        )),
        Err(problems) => {
            let mut flash = Flash::err(ctx.t(
                "未添加，请修改标出的字段",
                "Not added: fix the marked fields",
            ));
            for p in problems {
                flash
                    .field_errors
                    .entry(p.field.to_owned())
                    .and_modify(|e| {
                        e.push_str("; ");
                        e.push_str(&p.message);
                    })
                    .or_insert(p.message);
            }
            // What was typed, never the password.
            flash.typed = BTreeMap::from([
                ("name".to_owned(), name.to_owned()),
                ("role".to_owned(), role.to_owned()),
            ]);
            flash.typed_lists = BTreeMap::from([("merchant".to_owned(), merchants)]);
            PostResult::Done(Posted {
                location: "/admin/users".into(),
                flash: Some(Box::new(flash)),
            })
        }
    }
}

/// Removes an admin user (their sessions end at once). An operator cannot remove themselves,
/// which would leave the page they are on.
pub async fn remove(app: &Arc<App>, ctx: &Ctx, name: &str) -> PostResult {
    if !ctx.who.operator() {
        return PostResult::Forbidden;
    }
    let name = name.trim();
    let flash = if name == ctx.who.name {
        Flash::err(ctx.t(
            "不能删除当前登录的自己；请用另一个运营者账号删除",
            "You cannot remove the user you are logged in as: remove it as another operator",
        ))
    } else {
        match crate::admin_users::remove(app.store.as_ref(), name, &ctx.who.name).await {
            Ok(Some(tokens)) => Flash::ok(format!(
                "{} {name}{}{}",
                ctx.t("已删除管理员", "Admin user removed:"),
                ctx.t("，其登录已全部失效", "; their sessions have ended"),
                match tokens.is_empty() {
                    true => String::new(),
                    false => format!(
                        "{}{}{}",
                        ctx.t(
                            "。其创建的 API 令牌已吊销：",
                            ". The API tokens they made are revoked: "
                        ),
                        crate::admin_users::token_list(&tokens),
                        ctx.t(
                            "；用这些令牌的商城需要新令牌（在商户页新建）",
                            "; a shop that used one needs a new token (made on the merchant's page)"
                        )
                    ),
                }
            )),
            Ok(None) => Flash::err(format!(
                "{} {name}",
                ctx.t("没有这个管理员：", "No such admin user:")
            )),
            Err(e) => {
                tracing::error!(error = %e, "cannot remove an admin user");
                Flash::err(ctx.t("删除失败，请重试", "Not removed: try again"))
            }
        }
    };
    PostResult::Done(Posted::to("/admin/users", flash))
}
