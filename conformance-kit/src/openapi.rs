//! Alipay open-platform (`api = openapi`) notifies the kit makes itself, as Alipay would send
//! them or as a forger would: the fields of a `trade_status_sync` notify ([OPENAPI §6.2]), a
//! partial refund's extra fields ([OPENAPI §6.6]), signed by the V1 rule ([OPENAPI §6.3]: every
//! field but `sign` and `sign_type`, sorted, raw values) with SHA256withRSA. The signing string
//! comes from the sandbox's independent code, never the component's.

use crate::alipay::encode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use payhost_sandbox::web::alipay_time;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest as _, Sha256};

/// What an open-platform notify says about a trade.
#[derive(Debug, Clone)]
pub struct OpenNotify {
    pub app_id: String,
    pub seller_id: String,
    pub out_trade_no: String,
    pub trade_no: String,
    pub subject: String,
    pub total_amount: String,
    pub trade_status: String,
    pub notify_id: String,
    /// A partial refund: `(refund_fee, out_biz_no)`, the refunded total so far and the refund's
    /// request number; the trade stays `TRADE_SUCCESS`.
    pub refund: Option<(String, String)>,
}

/// Beijing time (`yyyy-MM-dd HH:mm:ss`, UTC+8) of Unix seconds, as Alipay writes it.
fn beijing(unix: u64) -> String {
    alipay_time(unix + 8 * 3600)
}

/// The notify's fields (without `sign`), in the order of real captures.
pub fn fields(n: &OpenNotify, unix: u64) -> Vec<(String, String)> {
    let when = beijing(unix);
    let total = n.total_amount.clone();
    let mut f: Vec<(&str, String)> = vec![
        ("gmt_create", when.clone()),
        ("charset", "utf-8".into()),
        ("subject", n.subject.clone()),
        ("buyer_id", "2088102000000001".into()),
        ("invoice_amount", total.clone()),
        ("notify_id", n.notify_id.clone()),
        (
            "fund_bill_list",
            format!("[{{\"amount\":\"{total}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]"),
        ),
        ("notify_type", "trade_status_sync".into()),
        ("trade_status", n.trade_status.clone()),
        ("receipt_amount", total.clone()),
        ("app_id", n.app_id.clone()),
        ("buyer_pay_amount", total.clone()),
        ("sign_type", "RSA2".into()),
        ("seller_id", n.seller_id.clone()),
        ("gmt_payment", when.clone()),
        ("notify_time", when.clone()),
        ("version", "1.0".into()),
        ("out_trade_no", n.out_trade_no.clone()),
        ("total_amount", total),
        ("trade_no", n.trade_no.clone()),
        ("auth_app_id", n.app_id.clone()),
        ("buyer_logon_id", "buy***@conformance.example".into()),
        ("point_amount", "0.00".into()),
    ];
    if let Some((refund_fee, out_biz_no)) = &n.refund {
        f.push(("gmt_refund", when));
        f.push(("refund_fee", refund_fee.clone()));
        f.push(("out_biz_no", out_biz_no.clone()));
        f.push(("send_back_fee", refund_fee.clone()));
    }
    f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// SHA256withRSA (PKCS#1 v1.5), base64.
fn rsa2(key: &RsaPrivateKey, text: &str) -> String {
    let sig = key
        .sign(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(text.as_bytes()),
        )
        .expect("a 2048-bit key signs a digest");
    B64.encode(sig)
}

/// The form body of the notify, signed with `key` over `signed` (the fields as Alipay signs
/// them), sent with `sent` (equal to `signed` unless the kit tampers after signing).
pub fn body(key: &RsaPrivateKey, signed: &[(String, String)], sent: &[(String, String)]) -> String {
    let sign = rsa2(key, &payhost_sandbox::openapi::notify_string(signed));
    let mut pairs = sent.to_vec();
    pairs.push(("sign".into(), sign));
    encode(&pairs)
}

/// Replaces one field's value.
pub fn with(fields: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| {
            let v = if k == key {
                value.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey as _;

    /// The reference's own test key and payment notify: the kit's signing reproduces it.
    #[test]
    fn signs_like_the_reference_vector() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin/testdata/openapi");
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vectors.json")).unwrap())
                .unwrap();
        let case = &vectors["notify_trade_success"];
        let form =
            std::fs::read_to_string(dir.join(case["form_body_file"].as_str().unwrap())).unwrap();
        let pairs: Vec<(String, String)> = crate::alipay::form_pairs(form.trim());
        let unsigned: Vec<(String, String)> =
            pairs.iter().filter(|(k, _)| k != "sign").cloned().collect();
        assert_eq!(
            payhost_sandbox::openapi::notify_string(&unsigned),
            case["sign_content"].as_str().unwrap()
        );
        let pem = std::fs::read_to_string(dir.join("keys/alipay_test_private_pkcs8.pem")).unwrap();
        let key = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        let sent = crate::alipay::form_pairs(&body(&key, &unsigned, &unsigned));
        let sign = &sent.iter().find(|(k, _)| k == "sign").unwrap().1;
        assert_eq!(
            sign,
            pairs
                .iter()
                .find(|(k, _)| k == "sign")
                .map(|(_, v)| v)
                .unwrap()
        );
    }

    #[test]
    fn a_partial_refund_keeps_trade_success_and_adds_its_fields() {
        let n = OpenNotify {
            app_id: "2021000000000001".into(),
            seller_id: "2088000000000002".into(),
            out_trade_no: "A1".into(),
            trade_no: "2026".into(),
            subject: "s".into(),
            total_amount: "10.00".into(),
            trade_status: "TRADE_SUCCESS".into(),
            notify_id: "n1".into(),
            refund: Some(("3.00".into(), "R1".into())),
        };
        let f = fields(&n, 1_700_000_000);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("trade_status"), Some("TRADE_SUCCESS"));
        assert_eq!(get("refund_fee"), Some("3.00"));
        assert_eq!(get("out_biz_no"), Some("R1"));
        assert_eq!(get("gmt_payment"), Some("2023-11-15 06:13:20"));
        assert_eq!(with(&f, "total_amount", "0.01").len(), f.len());
    }
}
