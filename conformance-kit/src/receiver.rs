//! The shop side the kit plays: it receives payhost's webhooks, checks each signature as a shop
//! would (from the README's description: `X-Payhost-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">` keyed with the merchant's `shop_webhook_secret`), and counts them; and it checks
//! the signed query payhost sends the buyer back to the shop with.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// How far a webhook's `t` may be from the kit's clock.
pub const TOLERANCE_S: u64 = 300;

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub event_type: String,
    pub out_trade_no: String,
    pub event_id: String,
    /// The signature header verified with the secret, within the tolerance.
    pub signature_ok: bool,
}

/// Every webhook received, in order.
pub struct WebhookLog {
    secret: String,
    received: Mutex<Vec<Webhook>>,
}

impl WebhookLog {
    pub fn new(secret: &str) -> WebhookLog {
        WebhookLog {
            secret: secret.to_owned(),
            received: Mutex::default(),
        }
    }

    /// Records a delivery (headers as received, lower-case names).
    pub fn record(&self, signature: Option<&str>, event_id: Option<&str>, body: &[u8]) {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let signature_ok =
            signature.is_some_and(|h| signature_ok(&self.secret, h, body, unix_now(), TOLERANCE_S));
        self.received.lock().unwrap().push(Webhook {
            event_type: json["type"].as_str().unwrap_or_default().to_owned(),
            out_trade_no: json["out_trade_no"].as_str().unwrap_or_default().to_owned(),
            event_id: event_id.unwrap_or_default().to_owned(),
            signature_ok,
        });
    }

    /// The webhooks of one order.
    pub fn for_order(&self, out_trade_no: &str) -> Vec<Webhook> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.out_trade_no == out_trade_no)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Webhook> {
        self.received.lock().unwrap().clone()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `header` (`t=…,v1=…`) signs `body` with `secret`, sent within `tolerance_s` of `now`.
pub fn signature_ok(secret: &str, header: &str, body: &[u8], now: u64, tolerance_s: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", v)) if t.is_none() => t = v.parse::<u64>().ok(),
            Some(("v1", v)) if v1.is_none() => v1 = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    t.abs_diff(now) <= tolerance_s
        && same(
            &hmac_hex(secret, &[t.to_string().as_bytes(), b".", body]),
            &v1,
        )
}

/// Whether the query payhost sent the buyer back with carries a valid `sign`: hex HMAC-SHA256
/// over the other parameters sorted by name as raw `k=v` joined by `&`, keyed with `secret`.
/// `ignored` are the shop's own parameters already in its `return_url`.
pub fn return_sign_ok(secret: &str, params: &[(String, String)], ignored: &[&str]) -> bool {
    let Some(sign) = params.iter().find(|(k, _)| k == "sign").map(|(_, v)| v) else {
        return false;
    };
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "sign" && !ignored.contains(&k.as_str()))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    same(
        &hmac_hex(secret, &[canonical.as_bytes()]),
        &sign.to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures() {
        let body = br#"{"type":"payment.paid","out_trade_no":"A1"}"#;
        let t = 1_700_000_000u64;
        let v1 = hmac_hex("secret-secret-16", &[t.to_string().as_bytes(), b".", body]);
        let header = format!("t={t},v1={v1}");
        assert!(signature_ok("secret-secret-16", &header, body, t + 10, 300));
        assert!(!signature_ok(
            "secret-secret-17",
            &header,
            body,
            t + 10,
            300
        ));
        assert!(!signature_ok(
            "secret-secret-16",
            &header,
            b"{}",
            t + 10,
            300
        ));
        assert!(!signature_ok(
            "secret-secret-16",
            &header,
            body,
            t + 301,
            300
        ));
        assert!(!signature_ok(
            "secret-secret-16",
            &format!("sha256={v1}"),
            body,
            t,
            300
        ));
    }

    #[test]
    fn return_signatures() {
        let secret = "secret-secret-16";
        let mut params: Vec<(String, String)> = vec![
            ("status".into(), "TRADE_SUCCESS".into()),
            ("out_trade_no".into(), "A1".into()),
            ("total_fee".into(), "12.34".into()),
        ];
        let sign = hmac_hex(
            secret,
            &[b"out_trade_no=A1&status=TRADE_SUCCESS&total_fee=12.34"],
        );
        params.push(("sign".into(), sign));
        assert!(return_sign_ok(secret, &params, &[]));
        params.push(("m".into(), "shop".into()));
        assert!(return_sign_ok(secret, &params, &["m"]));
        assert!(!return_sign_ok(secret, &params, &[]));
        params[0].1 = "WAIT_BUYER_PAY".into();
        assert!(!return_sign_ok(secret, &params, &["m"]));
    }
}
