//! What a shop checks of payhost, written from the README's description (not payhost's code):
//! the webhook header `X-Payhost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! and the return's `sign`, a hex HMAC-SHA256 over the sorted `k=v&…` string of the other
//! parameters, both keyed with the merchant's `shop_webhook_secret`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

fn hmac_sha256_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn same(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Whether `header` signs `body` with `secret`, sent within `tolerance_s` of `now_unix`.
pub fn webhook_signature_ok(
    secret: &str,
    header: &str,
    body: &[u8],
    now_unix: u64,
    tolerance_s: u64,
) -> bool {
    let mut sent_at: Option<u64> = None;
    let mut v1: Option<&str> = None;
    for item in header.split(',') {
        let Some((name, value)) = item.trim().split_once('=') else {
            continue;
        };
        match name {
            "t" if sent_at.is_none() => sent_at = value.parse().ok(),
            "v1" if v1.is_none() => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (sent_at, v1) else {
        return false;
    };
    if t.abs_diff(now_unix) > tolerance_s {
        return false;
    }
    let expected = hmac_sha256_hex(secret, &[t.to_string().as_bytes(), b".", body]);
    same(&expected, &v1.to_ascii_lowercase())
}

/// Whether the return parameters (as received, in any order) carry payhost's `sign` over all the
/// others but `ignored` (the shop's own parameters in its `return_url`).
pub fn return_signature_ok(secret: &str, params: &[(String, String)], ignored: &[&str]) -> bool {
    let mut signed: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "sign" && !ignored.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    signed.sort();
    let canonical = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let Some((_, given)) = params.iter().find(|(k, _)| k == "sign") else {
        return false;
    };
    same(
        &hmac_sha256_hex(secret, &[canonical.as_bytes()]),
        &given.to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(secret: &str, t: u64, body: &[u8]) -> String {
        format!(
            "t={t},v1={}",
            hmac_sha256_hex(secret, &[format!("{t}.").as_bytes(), body])
        )
    }

    #[test]
    fn webhook_header() {
        // RFC 4231 test case 2 ("Jefe"), to pin the HMAC itself.
        assert_eq!(
            hmac_sha256_hex("Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let h = header("secret-0123456789", 1_700_000_000, b"{\"a\":1}");
        assert!(webhook_signature_ok(
            "secret-0123456789",
            &h,
            b"{\"a\":1}",
            1_700_000_299,
            300
        ));
        assert!(webhook_signature_ok(
            "secret-0123456789",
            &h.replace(',', " , "),
            b"{\"a\":1}",
            1_700_000_000,
            300
        ));
        // Late, early, another body, another secret, no v1, the old form.
        for (secret, header, body, now) in [
            (
                "secret-0123456789",
                h.as_str(),
                &b"{\"a\":1}"[..],
                1_700_000_301,
            ),
            (
                "secret-0123456789",
                h.as_str(),
                &b"{\"a\":1}"[..],
                1_699_999_699,
            ),
            (
                "secret-0123456789",
                h.as_str(),
                &b"{\"a\":2}"[..],
                1_700_000_000,
            ),
            (
                "secret-0123456780",
                h.as_str(),
                &b"{\"a\":1}"[..],
                1_700_000_000,
            ),
            (
                "secret-0123456789",
                "t=1700000000",
                &b"{\"a\":1}"[..],
                1_700_000_000,
            ),
            (
                "secret-0123456789",
                "sha256=00",
                &b"{\"a\":1}"[..],
                1_700_000_000,
            ),
        ] {
            assert!(
                !webhook_signature_ok(secret, header, body, now, 300),
                "{header} {now}"
            );
        }
    }

    #[test]
    fn return_sign() {
        let secret = "secret-0123456789";
        let sign = hmac_sha256_hex(secret, &[b"out_trade_no=A1&status=TRADE_SUCCESS&ts=5"]);
        let mut params: Vec<(String, String)> = [
            ("m", "demo"),
            ("ts", "5"),
            ("out_trade_no", "A1"),
            ("status", "TRADE_SUCCESS"),
            ("sign", sign.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(return_signature_ok(secret, &params, &["m"]));
        assert!(!return_signature_ok(secret, &params, &[]));
        params[3].1 = "WAIT_BUYER_PAY".into();
        assert!(!return_signature_ok(secret, &params, &["m"]));
        params.retain(|(k, _)| k != "sign");
        assert!(!return_signature_ok(secret, &params, &["m"]));
    }
}
