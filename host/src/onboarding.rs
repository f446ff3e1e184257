//! Connecting a shop with least privilege. The operator creates a merchant slot in one step: the
//! component that pays for it, the shop origins it may use, its per-merchant API token and its
//! shop secret (which signs its returns and webhooks), before any provider settings exist. The
//! shop then saves its own provider settings with that token alone; the operator's token never
//! leaves the operator's machine.

use crate::config::{merchant_settings, valid_merchant_id, MerchantSettings, RawMerchant};
use crate::domain::Secret;
use crate::store::Store;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What `payhost merchant add` and the admin page hand the shop, shown once.
#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub token_id: i64,
    /// The per-merchant API token (`phm_…`); only its SHA-256 is stored.
    pub token: Secret,
    /// The merchant's own key for signed returns and webhooks (`phs_…`).
    pub shop_secret: Secret,
    /// The shop origins as stored (`https://shop.example/` is kept as `https://shop.example`).
    pub shop_origins: Vec<String>,
}

/// A new shop secret: `phs_` and 64 hex digits.
pub fn new_shop_secret() -> String {
    format!("phs_{}", crate::auth::random_token())
}

/// The key of a merchant stored without a shop secret (rows of older versions, `payhost.toml`
/// tables without `shop_webhook_secret`): derived per merchant from the operator's token, so no
/// shop ever holds the operator's token and one shop's key signs nothing for another. The
/// operator gives such a shop its own secret by saving one (`shop_webhook_secret`).
pub fn derived_shop_key(api_token: &str, merchant_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(api_token.as_bytes()).expect("HMAC takes any key");
    mac.update(b"payhost shop key\0");
    mac.update(merchant_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Creates the slot of merchant `id` (no provider settings yet) with its token and shop secret.
/// Refuses an id in use, a bad id, no plugin, and shop origins that are missing or not bare
/// origins (`https://shop.example`); the message names the field and the rule.
pub async fn add_merchant(
    store: &dyn Store,
    id: &str,
    plugin_id: &str,
    shop_origins: &[String],
    label: &str,
    created_by: &str,
) -> Result<NewMerchant, String> {
    if !valid_merchant_id(id) {
        return Err(format!(
            "id: {id:?} must be 1 to 64 letters, digits, '_' or '-'"
        ));
    }
    let plugin_id = plugin_id.trim();
    if plugin_id.is_empty() {
        return Err(
            "plugin: is required (the id of the component that pays for this merchant)".into(),
        );
    }
    let probe = RawMerchant {
        shop_origins: Some(shop_origins.to_vec()),
        ..RawMerchant::default()
    };
    let mut problems = Vec::new();
    let origins = merchant_settings(id, &probe, None, &mut problems).shop_origins;
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    if origins.is_empty() {
        return Err(
            "shop_origin: at least one is required (https://shop.example): the shop's returns, order pages and webhooks may go only there"
                .into(),
        );
    }
    match store.merchant(id).await {
        Ok(Some(_)) => {
            return Err(format!(
                "id: merchant {id:?} exists already (another token for it: payhost token create --merchant {id})"
            ))
        }
        Ok(None) => {}
        Err(e) => return Err(format!("cannot read the store: {e:#}")),
    }
    let shop_secret = new_shop_secret();
    let slot = MerchantSettings {
        settings: Vec::new(),
        plugin_id: plugin_id.to_owned(),
        shop_webhook_secret: Some(shop_secret.clone()),
        shop_origins: origins.clone(),
        ..MerchantSettings::default()
    };
    let created = store
        .save_merchant(id, &slot, crate::store::Expected::Absent)
        .await
        .map_err(|e| format!("cannot save the merchant: {e:#}"))?;
    // Made by another request since the check above (two connects at once): theirs stays.
    if !created {
        return Err(format!(
            "id: merchant {id:?} exists already (another token for it: payhost token create --merchant {id})"
        ));
    }
    let token = crate::auth::new_merchant_token();
    let label: String = label.trim().chars().take(100).collect();
    let token_id = store
        .create_token(id, &crate::auth::token_hash(&token), &label, created_by)
        .await
        .map_err(|e| format!("cannot save the token: {e:#}"))?
        .ok_or_else(|| format!("id: merchant {id:?} was removed as it was being made"))?;
    tracing::info!(
        merchant = id,
        plugin = plugin_id,
        token_id,
        "merchant slot created with its token"
    );
    Ok(NewMerchant {
        token_id,
        token: Secret::new(token),
        shop_secret: Secret::new(shop_secret),
        shop_origins: origins,
    })
}

/// The digest of settings as a shop sends them: hex HMAC-SHA256, keyed with the merchant's shop
/// secret, over `name=value\n` for each non-empty setting sorted by name, then
/// `shop_webhook_url=<url>\n` when one is set. An adapter computes the same over what it would
/// send and saves its settings only when the digest `GET /v1/merchants/{id}` returns differs.
pub fn settings_digest(
    secret: &str,
    settings: &[(String, String)],
    webhook_url: Option<&str>,
) -> String {
    let mut sorted: Vec<&(String, String)> =
        settings.iter().filter(|(_, v)| !v.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    for (k, v) in sorted {
        mac.update(format!("{k}={v}\n").as_bytes());
    }
    if let Some(u) = webhook_url {
        mac.update(format!("shop_webhook_url={u}\n").as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_and_empty_values_and_is_keyed() {
        let a = settings_digest(
            "s1",
            &[
                ("b".into(), "2".into()),
                ("a".into(), "1".into()),
                ("c".into(), String::new()),
            ],
            Some("https://shop.example/hook"),
        );
        let b = settings_digest(
            "s1",
            &[("a".into(), "1".into()), ("b".into(), "2".into())],
            Some("https://shop.example/hook"),
        );
        assert_eq!(a, b);
        let expected = crate::service::hmac_hex(
            "s1",
            b"a=1\nb=2\nshop_webhook_url=https://shop.example/hook\n",
        );
        assert_eq!(a, expected);
        assert_ne!(
            a,
            settings_digest(
                "s2",
                &[("a".into(), "1".into()), ("b".into(), "2".into())],
                Some("https://shop.example/hook")
            )
        );
        assert_ne!(derived_shop_key("op", "m1"), derived_shop_key("op", "m2"));
        assert_ne!(derived_shop_key("op", "m1"), "op");
        assert!(new_shop_secret().starts_with("phs_") && new_shop_secret().len() == 68);
    }

    /// What `payhost merchant add` echoes is what was stored, not what was typed.
    #[tokio::test]
    async fn a_new_merchant_says_its_origins_as_stored() {
        let path = std::env::temp_dir().join(format!("payhost-onboard-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = crate::store::sqlite::SqliteStore::open(&path).unwrap();
        let m = add_merchant(
            &store,
            "m1",
            "alipay-wap",
            &["https://shop.example/".into()],
            "",
            "payhost merchant",
        )
        .await
        .unwrap();
        assert_eq!(m.shop_origins, ["https://shop.example"]);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
