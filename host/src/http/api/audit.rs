//! The audit log's lines for what a token changed through the API, in the admin's actions and
//! detail forms (`settings.save`, `refund.start`, …): a shop server taken over is found out by
//! what its token did (SECURITY.md), not only by what someone did on the admin's pages. The
//! actor is the token's holder (`api:operator`, `api:merchant:<id>`); no value of a setting is
//! written, only the names of those that changed.

use crate::config::MerchantSettings;
use crate::http::caller::Caller;
use crate::service::App;

/// The audit log's actor for `who`, and a refund's `started_by` when a token starts it.
pub fn actor(who: &Caller) -> String {
    match who {
        Caller::Operator => "api:operator".to_owned(),
        Caller::Merchant(m) => format!("api:merchant:{m}"),
    }
}

/// Writes an audit line; a failure is logged (the change itself is made).
pub async fn record(app: &App, who: &Caller, action: &str, merchant: &str, detail: &str) {
    if let Err(e) = app
        .store
        .record_audit(&actor(who), action, Some(merchant), detail)
        .await
    {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}

/// `settings.save`'s detail: the component, then the names of what changed (`changed: key,
/// shop_webhook_secret`), `changed: nothing`, or `new merchant`.
pub fn settings_saved(before: Option<&MerchantSettings>, after: &MerchantSettings) -> String {
    if before.is_none() {
        return format!("plugin {}; new merchant", after.plugin_id);
    }
    let mut changed: Vec<&str> = Vec::new();
    let old = |name: &str| {
        before.and_then(|b| {
            b.settings
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    };
    for (k, v) in &after.settings {
        if old(k) != Some(v.as_str()) {
            changed.push(k);
        }
    }
    if let Some(b) = before {
        for (k, _) in &b.settings {
            if !after.settings.iter().any(|(n, _)| n == k) {
                changed.push(k);
            }
        }
    }
    let differs = |f: fn(&MerchantSettings) -> String| before.map(f) != Some(f(after));
    if differs(|m| m.shop_webhook_url.clone().unwrap_or_default()) {
        changed.push("shop_webhook_url");
    }
    if differs(|m| m.shop_webhook_secret.clone().unwrap_or_default()) {
        changed.push("shop_webhook_secret");
    }
    if differs(|m| m.shop_origins.join(" ")) {
        changed.push("shop_origins");
    }
    changed.sort_unstable();
    changed.dedup();
    format!(
        "plugin {}; changed: {}",
        after.plugin_id,
        if changed.is_empty() {
            "nothing".to_owned()
        } else {
            changed.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(settings: &[(&str, &str)], hook: Option<&str>) -> MerchantSettings {
        MerchantSettings {
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            plugin_id: "alipay-wap".into(),
            shop_webhook_url: hook.map(str::to_owned),
            shop_webhook_secret: Some("s".repeat(20)),
            ..MerchantSettings::default()
        }
    }

    #[test]
    fn a_save_names_what_changed_never_a_value() {
        let before = m(
            &[("partner", "2088"), ("key", "old-secret")],
            Some("https://a/h"),
        );
        let after = m(
            &[("partner", "2088"), ("key", "new-secret")],
            Some("https://b/h"),
        );
        let said = settings_saved(Some(&before), &after);
        assert_eq!(said, "plugin alipay-wap; changed: key, shop_webhook_url");
        assert!(!said.contains("secret-"), "{said}");
        assert_eq!(
            settings_saved(Some(&before), &before),
            "plugin alipay-wap; changed: nothing"
        );
        assert_eq!(
            settings_saved(None, &after),
            "plugin alipay-wap; new merchant"
        );
        // A setting left out is a change too.
        let fewer = m(&[("partner", "2088")], Some("https://a/h"));
        assert_eq!(
            settings_saved(Some(&before), &fewer),
            "plugin alipay-wap; changed: key"
        );
    }
}
