//! A stub of Alipay for host tests: answers the create call with a signed token (MD5 or RSA,
//! chosen by the request's `sec_id`), answers `notify_verify` with `true` only for notify_ids it
//! issued, and builds signed notifications and returns.
//!
//! Everything is signed, verified and encrypted with the sandbox's wire code
//! (`payhost_sandbox::wire`, written from the protocol reference), never the component's own
//! `sign` module: a signing bug in the component then fails these tests instead of being mirrored.

use crate::stub::{Seen, StubServer};
use crate::{TEST_PRIVATE_KEY, TEST_PUBLIC_KEY};
use payhost_sandbox::wire::{self, Keys};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub const MD5_KEY: &str = "10000000000000000000000000000000";

/// Alipay's answer to a create call: `res_data` with the token, signed (MD5 with `md5_key`, or RSA
/// with the test key and `res_data` encrypted when the request's sec_id is 0001), in the unsorted
/// wire order of real captures: res_data, service, sec_id, partner, req_id, sign, v.
pub fn signed_create_reply(request: &[(String, String)], token: &str, md5_key: &str) -> Vec<u8> {
    let p = |k: &str| {
        request
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let rsa = p("sec_id") == "0001";
    let res_plain = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><direct_trade_create_res><request_token>{token}</request_token></direct_trade_create_res>"
    );
    let mut reply: Vec<(String, String)> = vec![
        ("res_data".into(), res_plain.clone()),
        ("service".into(), p("service")),
        ("sec_id".into(), p("sec_id")),
        ("partner".into(), p("partner")),
        ("req_id".into(), p("req_id")),
        ("v".into(), "2.0".into()),
    ];
    let content = sorted(&reply);
    let signature = if rsa {
        wire::sign_as_alipay(&rsa_keys(), content.as_bytes())
    } else {
        md5_sign(&content, md5_key)
    };
    if rsa {
        reply[0].1 = encrypt_to_test_key(&res_plain);
    }
    reply.insert(5, ("sign".into(), signature));
    form_encode(&reply).into_bytes()
}

/// The hidden token of the sandbox cashier page.
pub fn cashier_token(page: &str) -> String {
    page.split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no cashier token in: {page}"))
        .to_owned()
}

pub struct AlipayStub {
    pub server: StubServer,
    pub issued: Arc<Mutex<HashSet<String>>>,
}

/// The sorted `k=v&…` string a signature covers ([WAP §5.1]).
pub fn sorted(params: &[(String, String)]) -> String {
    wire::presign_sorted(params)
}

/// The test key pair as both sides of an RSA merchant: requests are checked with its public half,
/// answers signed with its private half.
pub fn rsa_keys() -> Keys {
    Keys::Rsa {
        merchant_public: Box::new(wire::rsa_public_from_pem(TEST_PUBLIC_KEY).unwrap()),
        alipay_private: Box::new(wire::rsa_private_from_pem(TEST_PRIVATE_KEY).unwrap()),
    }
}

/// An MD5 signature (hex of MD5 over the content and the key).
pub fn md5_sign(content: &str, key: &str) -> String {
    wire::sign_as_alipay(&Keys::Md5(key.to_owned()), content.as_bytes())
}

/// A form body (or query) of the pairs in this order.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn encrypt_to_test_key(plain: &str) -> String {
    wire::encrypt_for_merchant(&wire::rsa_public_from_pem(TEST_PUBLIC_KEY).unwrap(), plain)
}

fn answer(seen: &Seen, issued: &Mutex<HashSet<String>>) -> (u16, Vec<u8>) {
    let params = seen.params();
    let p = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/gateway.do") if p("service") == "mobile.merchant.paychannel" => {
            let result = r#"{"payChannleResult":{"supportedPayChannelList":{"supportTopPayChannel":[{"name":"借记卡快捷支付","cashierCode":"DEBITCARD","supportSecPayChannelList":{"supportSecPayChannel":[{"name":"工行","cashierCode":"DEBITCARD_ICBC"}]}}]}}}"#;
            let gbk = encoding_rs::GBK.encode(result).0.into_owned();
            let mut signed = b"result=".to_vec();
            signed.extend_from_slice(&gbk);
            let signature = wire::sign_as_alipay(&Keys::Md5(MD5_KEY.into()), &signed);
            let mut body = b"<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>T</is_success><response><alipay><result>".to_vec();
            body.extend_from_slice(&gbk);
            body.extend_from_slice(format!("</result></alipay></response><sign>{signature}</sign><sign_type>MD5</sign_type></alipay>").as_bytes());
            (200, body)
        }
        // A query of a trade the stub never saw: TRADE_NOT_EXIST when signed with the MD5 key
        // (what the admin page's "Test connection" asks), else ILLEGAL_SIGN.
        ("GET", "/gateway.do") if p("service") == "single_trade_query" => {
            let signed: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| k != "sign" && k != "sign_type")
                .cloned()
                .collect();
            let code = if wire::verify_merchant(
                &Keys::Md5(MD5_KEY.into()),
                &sorted(&signed),
                &p("sign"),
            ) {
                "TRADE_NOT_EXIST"
            } else {
                "ILLEGAL_SIGN"
            };
            (
                200,
                format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>F</is_success><error>{code}</error></alipay>").into_bytes(),
            )
        }
        ("GET", "/gateway.do") if p("service") == "notify_verify" => {
            let ok = issued.lock().unwrap().contains(&p("notify_id"));
            (
                200,
                if ok {
                    b"true".to_vec()
                } else {
                    b"false".to_vec()
                },
            )
        }
        ("POST", "/service/rest.htm") => {
            let rsa = p("sec_id") == "0001";
            let content = sorted(&params);
            let keys = if rsa {
                rsa_keys()
            } else {
                Keys::Md5(MD5_KEY.into())
            };
            let valid = wire::verify_merchant(&keys, &content, &p("sign"));
            if !valid {
                let err = "<?xml version=\"1.0\" encoding=\"utf-8\"?><err><code>0007</code><sub_code>0007</sub_code><msg>sign error</msg><detail>签名错误</detail></err>";
                return (
                    200,
                    form_encode(&[("res_error".into(), err.into())]).into_bytes(),
                );
            }
            let token = format!("token-{}", p("req_id"));
            (200, signed_create_reply(&params, &token, MD5_KEY))
        }
        _ => (404, b"unknown".to_vec()),
    }
}

impl AlipayStub {
    pub async fn start() -> AlipayStub {
        let issued: Arc<Mutex<HashSet<String>>> = Arc::default();
        let i2 = issued.clone();
        let server = StubServer::start(move |seen: &Seen| answer(seen, &i2)).await;
        AlipayStub { server, issued }
    }

    pub fn gateway_url(&self) -> String {
        self.server.url("/service/rest.htm")
    }

    pub fn verify_url(&self) -> String {
        self.server.url("/gateway.do")
    }

    /// Makes `notify_verify` answer `true` for this id.
    pub fn issue(&self, notify_id: &str) {
        self.issued.lock().unwrap().insert(notify_id.to_owned());
    }
}

/// What a notification says.
pub struct Trade<'a> {
    pub out_trade_no: &'a str,
    pub total_fee: &'a str,
    pub notify_id: &'a str,
    pub seller_email: &'a str,
    pub seller_id: &'a str,
    pub trade_status: &'a str,
}

pub fn notify_data(t: &Trade<'_>) -> String {
    format!(
        "<notify><payment_type>1</payment_type><subject>测试</subject><trade_no>2014{no}</trade_no><buyer_email>buyer@example.com</buyer_email><gmt_create>2014-01-01 12:00:00</gmt_create><notify_type>trade_status_sync</notify_type><quantity>1</quantity><out_trade_no>{no}</out_trade_no><notify_time>2014-01-01 12:00:10</notify_time><seller_id>{sid}</seller_id><trade_status>{st}</trade_status><is_total_fee_adjust>N</is_total_fee_adjust><total_fee>{fee}</total_fee><gmt_payment>2014-01-01 12:00:10</gmt_payment><seller_email>{se}</seller_email><price>{fee}</price><buyer_id>2088000000000000</buyer_id><notify_id>{nid}</notify_id><use_coupon>N</use_coupon></notify>",
        no = t.out_trade_no,
        sid = t.seller_id,
        st = t.trade_status,
        fee = t.total_fee,
        se = t.seller_email,
        nid = t.notify_id
    )
}

/// [`md5_notify_body`] with more elements in `notify_data` (e.g. `refund_status`, `gmt_refund`).
pub fn md5_notify_body_extra(t: &Trade<'_>, key: &str, extra: &[(&str, &str)]) -> String {
    let more: String = extra
        .iter()
        .map(|(k, v)| format!("<{k}>{v}</{k}>"))
        .collect();
    md5_notify_body_of(
        notify_data(t).replace("</notify>", &format!("{more}</notify>")),
        key,
    )
}

/// [`md5_notify_body`] without the named elements of `notify_data` (a bare `TRADE_CLOSED`
/// without `gmt_payment`).
pub fn md5_notify_body_without(t: &Trade<'_>, key: &str, drop: &[&str]) -> String {
    let mut data = notify_data(t);
    for k in drop {
        let (open, close) = (format!("<{k}>"), format!("</{k}>"));
        if let (Some(a), Some(b)) = (data.find(&open), data.find(&close)) {
            data.replace_range(a..b + close.len(), "");
        }
    }
    md5_notify_body_of(data, key)
}

/// The form body of an MD5 notification, in captured wire order, signed in the fixed order.
pub fn md5_notify_body(t: &Trade<'_>, key: &str) -> String {
    md5_notify_body_of(notify_data(t), key)
}

fn md5_notify_body_of(data: String, key: &str) -> String {
    let content = wire::presign_notify("alipay.wap.trade.create.direct", "1.0", "MD5", &data);
    form_encode(&[
        ("service".into(), "alipay.wap.trade.create.direct".into()),
        ("sign".into(), md5_sign(&content, key)),
        ("sec_id".into(), "MD5".into()),
        ("v".into(), "1.0".into()),
        ("notify_data".into(), data),
    ])
}

/// The same notification signed over the (wrong) sorted string.
pub fn md5_notify_body_sorted(t: &Trade<'_>, key: &str) -> String {
    let data = notify_data(t);
    let params: Vec<(String, String)> = vec![
        ("service".into(), "alipay.wap.trade.create.direct".into()),
        ("v".into(), "1.0".into()),
        ("sec_id".into(), "MD5".into()),
        ("notify_data".into(), data.clone()),
    ];
    let mut all = params.clone();
    all.push(("sign".into(), md5_sign(&sorted(&params), key)));
    form_encode(&all)
}

/// An RSA notification: notify_data encrypted to the merchant key, signed over the plaintext.
pub fn rsa_notify_body(t: &Trade<'_>) -> String {
    let data = notify_data(t);
    let content = wire::presign_notify("alipay.wap.trade.create.direct", "1.0", "0001", &data);
    let signature = wire::sign_as_alipay(&rsa_keys(), content.as_bytes());
    form_encode(&[
        ("service".into(), "alipay.wap.trade.create.direct".into()),
        ("sign".into(), signature),
        ("sec_id".into(), "0001".into()),
        ("v".into(), "1.0".into()),
        ("notify_data".into(), encrypt_to_test_key(&data)),
    ])
}

/// The query of a signed MD5 call-back.
pub fn md5_return_query(out_trade_no: &str, key: &str) -> String {
    let mut q: Vec<(String, String)> = vec![
        ("out_trade_no".into(), out_trade_no.into()),
        ("request_token".into(), "requestToken".into()),
        ("result".into(), "success".into()),
        ("trade_no".into(), format!("2014{out_trade_no}")),
    ];
    let signature = md5_sign(&sorted(&q), key);
    q.push(("sign".into(), signature));
    q.push(("sign_type".into(), "MD5".into()));
    form_encode(&q)
}
