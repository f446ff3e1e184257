//! Which merchants of a host are the kit's own. The flow suite makes `<merchant>`,
//! `<merchant>-rsa` and `<merchant>-openapi`, overwrites their settings and removes them at the
//! end; so before it changes anything it refuses to start when one of them exists and is not one
//! the kit made (an earlier run's, kept with `--keep` or left by a stop), which could be an
//! operator's real merchant.
//!
//! A merchant of the kit's carries its fingerprint, which `GET /v1/merchants/{id}` shows
//! unmasked (URLs are not secrets): its shop webhook is the kit's receiver,
//! `<origin>/kit/webhook`, and one of its provider URLs is the kit's sandbox on that same
//! origin, `<origin>/sandbox/…`. Every settings PUT of the kit that a host accepts sends both.

use crate::client::{self, is_no_route, HostApi, Reply};
use crate::sandbox_setup::{SANDBOX_BASE, WEBHOOK_PATH};
use serde_json::Value;

/// The merchant ids the flow suite makes, `merchant` first.
pub fn ids(merchant: &str) -> [String; 3] {
    [
        merchant.to_owned(),
        format!("{merchant}-rsa"),
        format!("{merchant}-openapi"),
    ]
}

/// Whether a merchant, as `GET /v1/merchants/{id}` shows it, is one the kit made.
pub fn is_kits(merchant: &Value) -> bool {
    let Some(origin) = merchant["shop_webhook_url"]
        .as_str()
        .and_then(|u| u.strip_suffix(WEBHOOK_PATH))
    else {
        return false;
    };
    let sandbox = format!("{origin}{SANDBOX_BASE}/");
    // payhost shows the settings both flat and under `settings`.
    let settings = merchant["settings"].as_object().or(merchant.as_object());
    settings.is_some_and(|s| {
        s.values()
            .filter_map(Value::as_str)
            .any(|v| v.starts_with(&sandbox))
    })
}

/// Whether a reply is payhost's JSON error, `{"error": {"code": …, "message": …}}`.
fn is_payhost_error(r: &Reply) -> bool {
    let e = &r.json()["error"];
    e["code"].is_string() && e["message"].is_string()
}

/// Whether a 200 reply is a merchant as payhost shows it (a JSON object naming its plugin).
fn is_payhost_merchant(r: &Reply) -> bool {
    let m = r.json();
    m.is_object() && (m["plugin"].is_string() || m["settings"].is_object())
}

/// Reads each of the kit's merchant ids on the host (which changes nothing). `Err` is one line:
/// the token is refused, the host does not answer like a payhost, or one of the ids is taken by a
/// merchant the kit did not make (then the kit must not touch it).
pub async fn check(api: &HostApi, merchant: &str) -> Result<(), String> {
    let shown = format!("{}/", api.base);
    for id in ids(merchant) {
        let path = client::merchant_path(&id, "");
        let r = api
            .v1("GET", &path, None)
            .await
            .map_err(|e| format!("cannot reach {shown} ({e})"))?;
        match r.status {
            401 => {
                return Err(format!(
                    "{shown} refused the token (401): give the host's operator api_token"
                ))
            }
            403 => return Err(format!(
                "{shown} refused the token for its merchant API (403): it is a merchant's token, the kit needs the operator's api_token"
            )),
            200 if is_payhost_merchant(&r) => {
                if !is_kits(&r.json()) {
                    return Err(taken(&shown, &id, merchant));
                }
            }
            404 if is_payhost_error(&r) && !is_no_route(&r) => {}
            _ => {
                return Err(format!(
                    "{shown} does not answer like a payhost (give the host's base URL, e.g. http://host:8080): GET /v1{path} → {}",
                    r.brief()
                ))
            }
        }
    }
    Ok(())
}

/// Why the run does not start when `id` is someone else's merchant.
fn taken(shown: &str, id: &str, merchant: &str) -> String {
    let [a, b, c] = ids(merchant);
    format!(
        "merchant {id} already exists on {shown} and the kit did not make it, so the kit leaves it alone: \
         give --merchant an id whose merchants ({a}, {b}, {c}) do not exist there (the kit makes them and removes them at the end)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_kits_fingerprint_makes_a_merchant_the_kits() {
        let kits = json!({
            "plugin": "alipay-wap",
            "shop_webhook_url": "http://127.0.0.1:9/kit/webhook",
            "settings": {"gateway_url": "http://127.0.0.1:9/sandbox/gateway"},
        });
        assert!(is_kits(&kits));
        // A real shop's webhook, or the sandbox of another origin: not the kit's.
        let mut other = kits.clone();
        other["shop_webhook_url"] = json!("https://shop.example/hooks/payhost");
        assert!(!is_kits(&other));
        let mut other = kits.clone();
        other["settings"]["gateway_url"] = json!("https://openapi.alipay.com/gateway.do");
        assert!(!is_kits(&other));
        assert!(!is_kits(&json!({"plugin": "alipay-wap", "settings": {}})));
    }

    #[test]
    fn ids_are_the_three_the_suite_makes() {
        assert_eq!(ids("m"), ["m", "m-rsa", "m-openapi"]);
    }
}
