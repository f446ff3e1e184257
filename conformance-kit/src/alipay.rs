//! Alipay messages the kit makes itself, as Alipay would send them or as a forger would: WAP
//! notifies (the 20 `notify_data` fields, signed in the fixed order of [WAP §7.2]) and
//! call-back queries (signed sorted, [WAP §5.1] and [WAP §6]). Signed with the sandbox's
//! independent wire code, never the component's, so a signing mistake in either is caught by the
//! other.

use payhost_sandbox::web::alipay_time;
use payhost_sandbox::wire::{self, Keys};

/// The WAP notify's service and version ([WAP §7.1]; the notify's `v` is 1.0, [WAP §7.2]).
pub const NOTIFY_SERVICE: &str = "alipay.wap.trade.create.direct";
pub const NOTIFY_V: &str = "1.0";

/// What a notify says about a trade.
#[derive(Debug, Clone)]
pub struct NotifyTrade {
    pub partner: String,
    pub out_trade_no: String,
    pub trade_no: String,
    pub subject: String,
    pub total_fee: String,
    pub seller_email: String,
    pub trade_status: String,
    pub notify_id: String,
}

/// How the notify is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// As Alipay does: the fixed order `service, v, sec_id, notify_data`, the merchant's key.
    Genuine,
    /// The fixed order, but another key (a forger's guess).
    WrongKey,
    /// The merchant's key, but the parameters sorted (the rule of the other interfaces, a
    /// well-known mistake, [WAP §11] item 3): a notify signed so must be refused.
    Sorted,
}

/// The `notify_data` document of a WAP notify (20 fields, in the order of real captures).
pub fn notify_data(t: &NotifyTrade, unix: u64) -> String {
    let when = alipay_time(unix);
    let fields: Vec<(&str, String)> = vec![
        ("payment_type", "1".into()),
        ("subject", t.subject.clone()),
        ("trade_no", t.trade_no.clone()),
        ("buyer_email", "buyer@conformance.example".into()),
        ("gmt_create", when.clone()),
        ("notify_type", "trade_status_sync".into()),
        ("quantity", "1".into()),
        ("out_trade_no", t.out_trade_no.clone()),
        ("notify_time", when.clone()),
        ("seller_id", t.partner.clone()),
        ("trade_status", t.trade_status.clone()),
        ("is_total_fee_adjust", "N".into()),
        ("total_fee", t.total_fee.clone()),
        ("gmt_payment", when.clone()),
        ("seller_email", t.seller_email.clone()),
        ("gmt_close", when),
        ("price", t.total_fee.clone()),
        ("buyer_id", "2088102000000001".into()),
        ("notify_id", t.notify_id.clone()),
        ("use_coupon", "N".into()),
    ];
    wire::build_xml("notify", &fields)
}

/// The form body of a WAP notify for an MD5 merchant (`key`), signed as `signing` says, in the
/// captured wire order `service, sign, sec_id, v, notify_data`.
pub fn md5_notify_body(key: &str, t: &NotifyTrade, signing: Signing, unix: u64) -> String {
    let data = notify_data(t, unix);
    let keys = match signing {
        Signing::WrongKey => Keys::Md5(other_key(key)),
        _ => Keys::Md5(key.to_owned()),
    };
    let presign = match signing {
        Signing::Sorted => wire::presign_sorted(&[
            ("service".to_owned(), NOTIFY_SERVICE.to_owned()),
            ("v".to_owned(), NOTIFY_V.to_owned()),
            ("sec_id".to_owned(), "MD5".to_owned()),
            ("notify_data".to_owned(), data.clone()),
        ]),
        _ => wire::presign_notify(NOTIFY_SERVICE, NOTIFY_V, "MD5", &data),
    };
    let sign = wire::sign_as_alipay(&keys, presign.as_bytes());
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("service", NOTIFY_SERVICE);
    s.append_pair("sign", &sign);
    s.append_pair("sec_id", "MD5");
    s.append_pair("v", NOTIFY_V);
    s.append_pair("notify_data", &data);
    s.finish()
}

/// A key of the same shape that is not `key`.
fn other_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '0'..='8' | 'a'..='y' | 'A'..='Y' => (c as u8 + 1) as char,
            '9' => '0',
            'z' => 'a',
            'Z' => 'A',
            c => c,
        })
        .collect()
}

/// The WAP call-back query (`out_trade_no, request_token, result, trade_no`, signed sorted with
/// the MD5 key), as pairs in wire order.
pub fn md5_return_query(key: &str, out_trade_no: &str, trade_no: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = vec![
        ("out_trade_no".into(), out_trade_no.into()),
        ("request_token".into(), "requestToken".into()),
        ("result".into(), "success".into()),
        ("trade_no".into(), trade_no.into()),
    ];
    let sign = wire::sign_as_alipay(
        &Keys::Md5(key.to_owned()),
        wire::presign_sorted(&params).as_bytes(),
    );
    params.push(("sign".into(), sign));
    params.push(("sign_type".into(), "MD5".into()));
    params
}

/// Parses a form body into pairs.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// Encodes pairs as a form body or query.
pub fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade() -> NotifyTrade {
        NotifyTrade {
            partner: "2088101122136241".into(),
            out_trade_no: "A1".into(),
            trade_no: "2026000000000001".into(),
            subject: "测试".into(),
            total_fee: "12.34".into(),
            seller_email: "seller@example.com".into(),
            trade_status: "TRADE_SUCCESS".into(),
            notify_id: "abc".into(),
        }
    }

    #[test]
    fn the_signings_differ_and_only_the_genuine_one_verifies() {
        let key = "0123456789abcdefghijklmnopqrstuv";
        let keys = Keys::Md5(key.into());
        let sign_of = |body: &str| {
            form_pairs(body)
                .into_iter()
                .find(|(k, _)| k == "sign")
                .unwrap()
                .1
        };
        let genuine = md5_notify_body(key, &trade(), Signing::Genuine, 1_700_000_000);
        let data = form_pairs(&genuine)
            .into_iter()
            .find(|(k, _)| k == "notify_data")
            .unwrap()
            .1;
        assert!(data.contains("<total_fee>12.34</total_fee>"));
        let fixed = wire::presign_notify(NOTIFY_SERVICE, NOTIFY_V, "MD5", &data);
        assert!(wire::verify_merchant(&keys, &fixed, &sign_of(&genuine)));
        for forged in [Signing::WrongKey, Signing::Sorted] {
            let body = md5_notify_body(key, &trade(), forged, 1_700_000_000);
            assert!(
                !wire::verify_merchant(&keys, &fixed, &sign_of(&body)),
                "{forged:?}"
            );
        }
        assert_ne!(other_key(key), key);
        assert_eq!(other_key(key).len(), 32);
    }

    #[test]
    fn return_query_is_signed_sorted() {
        let key = "0123456789abcdefghijklmnopqrstuv";
        let q = md5_return_query(key, "A1", "T1");
        let sign = q.iter().find(|(k, _)| k == "sign").unwrap().1.clone();
        assert!(wire::verify_merchant(
            &Keys::Md5(key.into()),
            "out_trade_no=A1&request_token=requestToken&result=success&trade_no=T1",
            &sign
        ));
    }
}
