//! The wire format of Alipay's WAP-pay protocol: request parameters, signing, and parsing and
//! verifying what the provider sends back. No I/O here; `connector.rs` drives the flow.

use crate::amount::Amount;
use crate::model::{
    ChannelList, GatewayError, HttpMethod, Notification, PayChannel, PluginError, Redirect,
    VerifiedReturn,
};
use crate::settings::{Settings, Signer};
use crate::{sign, xml};
use std::borrow::Cow;

pub const SERVICE_CREATE: &str = "alipay.wap.trade.create.direct";
pub const SERVICE_AUTH: &str = "alipay.wap.auth.authAndExecute";
pub const SERVICE_PAYCHANNEL: &str = "mobile.merchant.paychannel";
pub const INPUT_CHARSET: &str = "utf-8";
/// The body that stops Alipay's notify retries, and the one that asks for another try.
pub const NOTIFY_ACK: &str = "success";
pub const NOTIFY_RETRY: &str = "fail";

pub type Pairs = Vec<(String, String)>;

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Signs a string with the merchant's signer (MD5 hex or RSA base64).
pub fn sign_string(signer: &Signer, content: &str) -> Result<String, PluginError> {
    sign_bytes(signer, content.as_bytes())
}

/// [`sign_string`] over raw bytes (the GBK pay-channel query is signed over its GBK bytes).
pub fn sign_bytes(signer: &Signer, content: &[u8]) -> Result<String, PluginError> {
    match signer {
        Signer::Md5 { key } => Ok(sign::md5_sign_bytes(content, key.as_bytes())),
        Signer::Rsa { private_key, .. } => {
            sign::rsa_sign_bytes(content, private_key).map_err(|e| {
                PluginError::InvalidSettings(vec![crate::model::FieldError::new(
                    "private_key",
                    e.to_string(),
                )])
            })
        }
    }
}

/// Verifies a received signature over `content` with the merchant's signer (constant-time for MD5;
/// RSA verification checks the whole padded digest).
pub fn verify_string(signer: &Signer, content: &str, received: &str) -> bool {
    match signer {
        Signer::Md5 { key } => sign::md5_verify(content, key, received),
        Signer::Rsa {
            alipay_public_key, ..
        } => sign::rsa_verify(content, received, alipay_public_key).unwrap_or(false),
    }
}

/// The common parameters of both wappaygw services, signed ([WAP §2.1]). `sign_type` is never sent.
pub fn signed_gateway_params(
    settings: &Settings,
    service: &str,
    req_id: &str,
    req_data: &str,
) -> Result<Pairs, PluginError> {
    let mut params = vec![
        pair("service", service),
        pair("format", "xml"),
        pair("v", "2.0"),
        pair("partner", &settings.partner),
        pair("req_id", req_id),
        pair("sec_id", settings.signer.sec_id()),
        pair("req_data", req_data),
        pair("_input_charset", INPUT_CHARSET),
    ];
    let to_sign = sign::sorted_link_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = sign_string(&settings.signer, &to_sign)?;
    params.push(pair("sign", &signature));
    Ok(params)
}

/// The validated fields of an order, ready for `req_data`.
pub struct CreateFields<'a> {
    pub notify_url: &'a str,
    pub call_back_url: &'a str,
    pub seller_account_name: &'a str,
    pub out_trade_no: &'a str,
    pub subject: &'a str,
    pub total_fee: Amount,
    pub merchant_url: Option<&'a str>,
    pub pay_expire: Option<u32>,
    pub out_user: Option<&'a str>,
    pub cashier_code: Option<&'a str>,
}

/// `<direct_trade_create_req>` in the official demo's element order, every value XML-escaped.
pub fn create_req_data(f: &CreateFields<'_>) -> String {
    let total_fee = f.total_fee.to_string();
    let pay_expire = f.pay_expire.map(|m| m.to_string()).unwrap_or_default();
    xml::build_flat(
        "direct_trade_create_req",
        &[
            ("notify_url", f.notify_url),
            ("call_back_url", f.call_back_url),
            ("seller_account_name", f.seller_account_name),
            ("out_trade_no", f.out_trade_no),
            ("subject", f.subject),
            ("total_fee", &total_fee),
            ("merchant_url", f.merchant_url.unwrap_or("")),
            ("out_user", f.out_user.unwrap_or("")),
            ("pay_expire", &pay_expire),
            ("cashier_code", f.cashier_code.unwrap_or("")),
        ],
    )
}

pub fn auth_req_data(request_token: &str) -> String {
    xml::build_flat("auth_and_execute_req", &[("request_token", request_token)])
}

/// `application/x-www-form-urlencoded` in UTF-8.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Decodes a form or query string, keeping the received order and duplicates.
pub fn form_decode(body: &[u8]) -> Pairs {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Joins a base URL (which may already hold a query) and encoded parameters.
pub fn url_with_query(base: &str, query: &str) -> String {
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{base}{sep}{query}")
}

/// The buyer's redirect to the cashier (`alipay.wap.auth.authAndExecute`), as a URL and as the
/// equivalent GET form.
pub fn auth_redirect(
    settings: &Settings,
    req_id: &str,
    request_token: &str,
) -> Result<Redirect, PluginError> {
    let params = signed_gateway_params(
        settings,
        SERVICE_AUTH,
        req_id,
        &auth_req_data(request_token),
    )?;
    let url = url_with_query(&settings.gateway_url, &form_encode(&params));
    Ok(Redirect {
        url,
        method: HttpMethod::Get,
        action: settings.gateway_url.clone(),
        fields: params,
    })
}

/// Parses the create call's response ([WAP §3.2]): a form string in no particular order holding
/// `res_data` (with `sign`) or `res_error` (no sign). Returns the `request_token`.
/// The `req_id` a create call's answer names, if it names one (a signed answer signs it).
pub fn create_response_req_id(body: &[u8]) -> Option<String> {
    find(&form_decode(body), "req_id").map(str::to_owned)
}

pub fn parse_create_response(settings: &Settings, body: &[u8]) -> Result<String, PluginError> {
    let pairs = form_decode(body);
    if let Some(err_xml) = find(&pairs, "res_error") {
        let e = xml::parse_flat(err_xml, "err")
            .map_err(|e| PluginError::Malformed(format!("res_error: {e}")))?;
        return Err(PluginError::Gateway(GatewayError {
            code: e.get("code").unwrap_or("").to_owned(),
            sub_code: e.get("sub_code").unwrap_or("").to_owned(),
            msg: e.get("msg").unwrap_or("").to_owned(),
            detail: e.get("detail").unwrap_or("").to_owned(),
        }));
    }
    let res_data = find(&pairs, "res_data").ok_or_else(|| {
        PluginError::Malformed(format!(
            "gateway answered neither res_data nor res_error: {}",
            preview(body)
        ))
    })?;
    let received = find(&pairs, "sign");
    let res_data = match encrypted(settings, res_data) {
        Some(private_key) => {
            // Decrypted text is only used once its signature verifies: the sign is required.
            let plain = sign::rsa_decrypt_blocks(res_data, private_key);
            let verified = match (&plain, received) {
                (Ok(plain), Some(received)) => {
                    let plain = String::from_utf8_lossy(plain);
                    let content = sign::sorted_link_string(pairs.iter().map(|(k, v)| {
                        if k == "res_data" {
                            (k.as_str(), &*plain)
                        } else {
                            (k.as_str(), v.as_str())
                        }
                    }));
                    verify_string(&settings.signer, &content, received)
                }
                _ => false,
            };
            Cow::Owned(authenticated_plaintext(plain, verified, "res_data")?)
        }
        None => {
            // Alipay signs every successful answer (only `res_error` replies are unsigned,
            // [WAP §3.2]): one without a sign is anybody's token, refused like a wrong sign.
            let Some(received) = received else {
                return Err(PluginError::BadSignature(
                    "the create response carries a request_token but no sign: Alipay signs every successful answer, so it was not Alipay's (check what stands between the host and the gateway)".into(),
                ));
            };
            let content =
                sign::sorted_link_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if !verify_string(&settings.signer, &content, received) {
                return Err(PluginError::BadSignature(
                    "the create response's sign does not match (check the key or the Alipay public key)".into(),
                ));
            }
            Cow::Borrowed(res_data)
        }
    };
    let doc = xml::parse_flat(&res_data, "direct_trade_create_res")
        .map_err(|e| PluginError::Malformed(format!("res_data: {e}")))?;
    match doc.get("request_token") {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err(PluginError::Malformed(
            "res_data holds no request_token".into(),
        )),
    }
}

/// With `sec_id=0001` the provider may encrypt XML to the merchant's public key; XML is detected
/// by its leading `<` ([WAP §7.2]; [WAP §11] item 5), anything else is decrypted in key-sized
/// blocks. Returns the key to decrypt with, if the value is encrypted.
fn encrypted<'a>(settings: &'a Settings, value: &str) -> Option<&'a sign::PrivateKey> {
    match &settings.signer {
        Signer::Rsa { private_key, .. } if !value.trim_start().starts_with('<') => {
            Some(private_key)
        }
        _ => None,
    }
}

/// The one answer to an encrypted value that does not decrypt, or whose decrypted text's
/// signature does not verify: the two are told apart by nobody (PKCS#1 v1.5 decryption with
/// implicit rejection turns bad padding into text whose signature fails).
pub const DECRYPT_OR_SIGN_FAILED: &str =
    "does not decrypt and verify with the merchant's and Alipay's keys";

/// The decrypted text once its signature has been checked (`verified`), or the one error.
fn authenticated_plaintext(
    plain: Result<Vec<u8>, sign::RsaError>,
    verified: bool,
    field: &str,
) -> Result<String, PluginError> {
    match plain {
        Ok(plain) if verified => String::from_utf8(plain)
            .map_err(|_| PluginError::Malformed(format!("{field}: decrypted text is not UTF-8"))),
        _ => Err(PluginError::BadSignature(format!(
            "{field} {DECRYPT_OR_SIGN_FAILED}"
        ))),
    }
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The received signature type must be the merchant's own: an MD5 merchant never accepts RSA
/// signatures and the reverse (no downgrade).
fn check_sign_type(settings: &Settings, received: Option<&str>) -> Result<(), PluginError> {
    let Some(received) = received.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let ok = match settings.signer {
        Signer::Md5 { .. } => received.eq_ignore_ascii_case("MD5"),
        Signer::Rsa { .. } => received == "0001" || received.eq_ignore_ascii_case("RSA"),
    };
    if ok {
        Ok(())
    } else {
        Err(PluginError::BadSignature(format!(
            "signed with {received:?}, but this merchant uses {}",
            settings.signer.sec_id()
        )))
    }
}

/// Verifies the synchronous return ([WAP §6]): the sorted rule over every received parameter.
pub fn verify_return(
    settings: &Settings,
    query: &[(String, String)],
) -> Result<VerifiedReturn, PluginError> {
    let received = find(query, "sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::BadSignature("the return carries no sign".into()))?;
    check_sign_type(settings, find(query, "sign_type"))?;
    let content = sign::sorted_link_string(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !verify_string(&settings.signer, &content, received) {
        return Err(PluginError::BadSignature(
            "the return's sign does not match".into(),
        ));
    }
    let out_trade_no = find(query, "out_trade_no")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::Malformed("the return carries no out_trade_no".into()))?;
    let result = find(query, "result").unwrap_or("");
    if result != "success" {
        return Err(PluginError::Malformed(format!(
            "the return's result is {result:?}, not \"success\""
        )));
    }
    Ok(VerifiedReturn {
        out_trade_no: out_trade_no.to_owned(),
        trade_no: find(query, "trade_no").unwrap_or("").to_owned(),
        result: result.to_owned(),
        request_token: find(query, "request_token").unwrap_or("").to_owned(),
        raw: query.to_vec(),
    })
}

/// The most RSA blocks an encrypted `notify_data` may have. A real notify is the 20 elements of
/// [WAP §7.1]: the reference's 797-byte sample is 7 blocks of 117 plaintext bytes ([WAP §5.2],
/// [WAP §12.3]). Its `subject` is the one field that grows: this component sends at most 256
/// characters, at most 768 more bytes of UTF-8, 7 more blocks. 16 blocks (1,872 plaintext bytes
/// with the 1024-bit keys of this product) hold the longest real notify with room to spare;
/// anything longer is no notify of ours, and is refused before any private-key operation (each
/// costs about a millisecond: a long forgery was an amplifier, issue 21).
pub const MAX_NOTIFY_DATA_BLOCKS: usize = 16;

/// Refuses an encrypted `notify_data` of more than [`MAX_NOTIFY_DATA_BLOCKS`] blocks of the
/// merchant key's size, looking only at its length.
fn check_notify_data_size(notify_data: &str, block_len: usize) -> Result<(), PluginError> {
    let base64_len = notify_data
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .count();
    let max = (MAX_NOTIFY_DATA_BLOCKS * block_len).div_ceil(3) * 4;
    if base64_len > max {
        return Err(PluginError::Malformed(format!(
            "notify_data is {base64_len} characters of ciphertext, more than a notify needs (at most {MAX_NOTIFY_DATA_BLOCKS} RSA blocks of {block_len} bytes, {max} characters of base64)"
        )));
    }
    Ok(())
}

/// A notification whose signature is verified; `notify_verify` is still to be asked.
pub struct SignedNotification {
    pub notification: Notification,
}

/// Verifies the asynchronous notification ([WAP §7]): decrypt `notify_data` if needed, check the
/// fixed-order signature with the received `v`, then read the trade out of `notify_data`.
pub fn verify_notify_signature(
    settings: &Settings,
    form: &[(String, String)],
) -> Result<SignedNotification, PluginError> {
    let field = |name: &str| -> Result<&str, PluginError> {
        find(form, name)
            .ok_or_else(|| PluginError::Malformed(format!("the notification carries no {name}")))
    };
    let service = field("service")?;
    let v = field("v")?;
    let sec_id = field("sec_id")?;
    let notify_data_raw = field("notify_data")?;
    let received = field("sign")?;
    check_sign_type(settings, Some(sec_id))?;
    let notify_data = match encrypted(settings, notify_data_raw) {
        Some(private_key) => {
            check_notify_data_size(notify_data_raw, private_key.size())?;
            // Every block is decrypted and the signature is checked over whatever came out
            // (padding failures give pseudo-random text): one path, one error.
            let plain = sign::rsa_decrypt_blocks(notify_data_raw, private_key);
            let verified = match &plain {
                Ok(plain) => {
                    let plain = String::from_utf8_lossy(plain);
                    let content = sign::notify_link_string(service, v, sec_id, &plain);
                    sign::notify_sign_ok(verify_string(&settings.signer, &content, received))
                }
                Err(_) => false,
            };
            Cow::Owned(authenticated_plaintext(plain, verified, "notify_data")?)
        }
        None => {
            let content = sign::notify_link_string(service, v, sec_id, notify_data_raw);
            if !sign::notify_sign_ok(verify_string(&settings.signer, &content, received)) {
                return Err(PluginError::BadSignature(
                    "the notification's sign does not match (fixed order service, v, sec_id, notify_data)"
                        .into(),
                ));
            }
            Cow::Borrowed(notify_data_raw)
        }
    };
    let doc = xml::parse_flat(&notify_data, "notify")
        .map_err(|e| PluginError::Malformed(format!("notify_data: {e}")))?;
    let get = |name: &str| doc.get(name).filter(|s| !s.is_empty()).map(str::to_owned);
    let require = |name: &str| {
        get(name).ok_or_else(|| PluginError::Malformed(format!("notify_data has no {name}")))
    };
    let notify_id = require("notify_id")?;
    let out_trade_no = require("out_trade_no")?;
    let trade_status = require("trade_status")?;
    let total_fee_raw = require("total_fee")?;
    let total_fee = Amount::parse(&total_fee_raw)
        .map_err(|e| PluginError::Malformed(format!("notify_data total_fee {e}")))?;
    let paid = matches!(trade_status.as_str(), "TRADE_SUCCESS" | "TRADE_FINISHED");
    Ok(SignedNotification {
        notification: Notification {
            out_trade_no,
            trade_no: get("trade_no").unwrap_or_default(),
            trade_status,
            total_fee: total_fee.to_string(),
            seller_email: get("seller_email"),
            seller_id: get("seller_id"),
            buyer_email: get("buyer_email"),
            buyer_id: get("buyer_id"),
            notify_id,
            notify_time: get("notify_time"),
            gmt_create: get("gmt_create"),
            gmt_payment: get("gmt_payment"),
            gmt_close: get("gmt_close"),
            paid,
            fields: doc.children,
            reply: NOTIFY_ACK.to_owned(),
        },
    })
}

/// The `notify_verify` URL ([WAP §8]).
pub fn notify_verify_url(settings: &Settings, notify_id: &str) -> String {
    let query = form_encode(&[
        pair("service", "notify_verify"),
        pair("partner", &settings.partner),
        pair("notify_id", notify_id),
    ]);
    url_with_query(&settings.notify_verify_url, &query)
}

/// Only the exact answer `true` confirms a notification (not `xtrue`, not HTML ending in true).
pub fn notify_verify_confirms(body: &[u8]) -> bool {
    body.trim_ascii() == b"true"
}

/// The `mobile.merchant.paychannel` query URL ([WAP §9]), signed over the sorted parameters.
/// The query declares `_input_charset=GBK`, as ECStore's and Ralipay's do: Alipay reads its
/// values as GBK and checks the signature over GBK bytes, so an `out_user` beyond ASCII is sent
/// and signed in GBK (a character GBK cannot write is refused, naming `out_user`).
pub fn paychannel_url(settings: &Settings, out_user: Option<&str>) -> Result<String, PluginError> {
    let mut params = vec![
        pair("service", SERVICE_PAYCHANNEL),
        pair("partner", &settings.partner),
        pair("_input_charset", "GBK"),
    ];
    if let Some(u) = out_user.filter(|u| !u.is_empty()) {
        params.push(pair("out_user", u));
    }
    let gbk = |text: &str| {
        crate::gbk::encode(text).map_err(|c| {
            PluginError::InvalidOrder(crate::model::FieldError::new(
                "out_user",
                format!("{c:?} has no GBK code (the pay-channel query is sent in GBK)"),
            ))
        })
    };
    let content = sign::sorted_link_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = sign_bytes(&settings.signer, &gbk(&content)?)?;
    let mut query = String::new();
    for (k, v) in &params {
        let value: String = form_urlencoded::byte_serialize(&gbk(v)?).collect();
        query.push_str(&format!("{k}={value}&"));
    }
    let sign_type = match settings.signer {
        Signer::Md5 { .. } => "MD5",
        Signer::Rsa { .. } => "0001",
    };
    query.push_str(&form_encode(&[
        pair("sign", &signature),
        pair("sign_type", sign_type),
    ]));
    Ok(url_with_query(&settings.paychannel_url, &query))
}

/// The raw bytes between `<tag>` and `</tag>`. Safe on GBK bytes: `<` and `/` are never GBK
/// trail bytes (those are 0x40 and up).
fn element_bytes<'a>(body: &'a [u8], tag: &str) -> Option<&'a [u8]> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = find_bytes(body, open.as_bytes())? + open.len();
    let end = start + find_bytes(&body[start..], close.as_bytes())?;
    Some(&body[start..end])
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses and verifies the GBK pay-channel response: the signature is MD5 (or RSA) over
/// `result=<result text>` in GBK bytes, exactly as received.
pub fn parse_paychannel_response(
    settings: &Settings,
    body: &[u8],
) -> Result<ChannelList, PluginError> {
    let is_success = element_bytes(body, "is_success").unwrap_or(b"");
    if is_success != b"T" {
        let code = element_bytes(body, "error").map(|e| String::from_utf8_lossy(e).into_owned());
        return Err(PluginError::Gateway(GatewayError {
            code: code.clone().unwrap_or_else(|| "UNKNOWN".into()),
            sub_code: code.unwrap_or_default(),
            msg: "pay-channel query failed".into(),
            detail: preview(body),
        }));
    }
    let result = element_bytes(body, "result")
        .ok_or_else(|| PluginError::Malformed("pay-channel response has no <result>".into()))?;
    // The outer <sign> follows </response>; take the last one.
    let sign_pos = body
        .windows(6)
        .rposition(|w| w == b"<sign>")
        .ok_or_else(|| PluginError::BadSignature("pay-channel response carries no sign".into()))?;
    let received = element_bytes(&body[sign_pos..], "sign").unwrap_or(b"");
    let received = std::str::from_utf8(received)
        .map_err(|_| PluginError::BadSignature("sign is not ASCII".into()))?;
    let mut signed = b"result=".to_vec();
    signed.extend_from_slice(result);
    let valid = match &settings.signer {
        Signer::Md5 { key } => sign::md5_verify_bytes(&signed, key.as_bytes(), received),
        Signer::Rsa {
            alipay_public_key, ..
        } => sign::rsa_verify_bytes(&signed, received, alipay_public_key).unwrap_or(false),
    };
    if !valid {
        return Err(PluginError::BadSignature(
            "the pay-channel response's sign does not match".into(),
        ));
    }
    let text = crate::gbk::decode(result)
        .map_err(|e| PluginError::Malformed(format!("pay-channel result: {e}")))?;
    let text = unescape_xml_text(&text);
    crate::channels::parse(&text)
}

/// The `<result>` text may carry the predefined XML entities.
fn unescape_xml_text(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Convenience for callers building channel lists by hand (tests, sandboxes).
pub fn channel(name: &str, code: &str, parent: Option<&str>) -> PayChannel {
    PayChannel {
        name: name.into(),
        cashier_code: code.into(),
        parent: parent.map(Into::into),
    }
}

#[cfg(test)]
pub(crate) use tests::VECTOR_NOTIFY_DATA as VECTOR_NOTIFY_DATA_FOR_TESTS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::validate;

    pub(crate) const KEY: &str = "10000000000000000000000000000000";

    pub(crate) fn md5_settings() -> Settings {
        validate(&[
            ("partner".into(), "2088000000000001".into()),
            ("key".into(), KEY.into()),
            ("seller_email".into(), "seller@example.com".into()),
        ])
        .unwrap()
        .0
    }

    /// The reference vectors use partner 1000000000000000, which real validation refuses.
    fn vector_settings(sec_id: &str) -> Settings {
        let mut s = md5_settings();
        s.partner = "1000000000000000".into();
        if sec_id == "0001" {
            s.signer = Signer::Rsa {
                private_key: Box::new(
                    sign::parse_private_key(include_str!("../testdata/test_priv.pem")).unwrap(),
                ),
                alipay_public_key: Box::new(
                    sign::parse_public_key(include_str!("../testdata/test_pub.pem")).unwrap(),
                ),
            };
        }
        s
    }

    const VECTOR_REQ_DATA: &str = "<direct_trade_create_req><notify_url>http://example.com/notify</notify_url><call_back_url>http://example.com/callback</call_back_url><seller_account_name>seller@example.com</seller_account_name><out_trade_no>20140101000001</out_trade_no><subject>测试商品</subject><total_fee>0.01</total_fee><merchant_url>http://example.com/merchant</merchant_url></direct_trade_create_req>";

    // [WAP §12.2]: the create call's string to sign and its MD5 and RSA signatures.
    #[test]
    fn create_request_vectors() {
        let req_data = create_req_data(&CreateFields {
            notify_url: "http://example.com/notify",
            call_back_url: "http://example.com/callback",
            seller_account_name: "seller@example.com",
            out_trade_no: "20140101000001",
            subject: "测试商品",
            total_fee: Amount::parse("0.01").unwrap(),
            merchant_url: Some("http://example.com/merchant"),
            pay_expire: None,
            out_user: None,
            cashier_code: None,
        });
        assert_eq!(req_data, VECTOR_REQ_DATA);
        let md5 = signed_gateway_params(
            &vector_settings("MD5"),
            SERVICE_CREATE,
            "20140101120000",
            &req_data,
        )
        .unwrap();
        assert_eq!(find(&md5, "sign"), Some("5275a57f79c755ab32f7b45266be3f37"));
        assert!(
            find(&md5, "sign_type").is_none(),
            "wappaygw calls never send sign_type"
        );
        let rsa = signed_gateway_params(
            &vector_settings("0001"),
            SERVICE_CREATE,
            "20140101120000",
            &req_data,
        )
        .unwrap();
        assert_eq!(
            find(&rsa, "sign"),
            Some("QUYQ5rU9aXNpWtjQA/Kx+yCyvyLpOsWWecnRGqKBmd6231paU1OOfMfyqaTON5lYqJ3jqyxDOk7TLzwVev0/DEg7IJsUjdq42JNjlnhLkjSOHHNDDVigW/jyNB0t8x3XsKuA1MYUtevFt6VQ9pO8jY5+U2nkP2wcohkQIJIjKWY=")
        );
    }

    #[test]
    fn req_data_escapes_every_value() {
        let req_data = create_req_data(&CreateFields {
            notify_url: "http://example.com/n?a=1&b=2",
            call_back_url: "http://example.com/c",
            seller_account_name: "s@example.com",
            out_trade_no: "1",
            subject: "T&C <b>",
            total_fee: Amount::parse("1").unwrap(),
            merchant_url: None,
            pay_expire: Some(30),
            out_user: Some("u<1>"),
            cashier_code: Some("DEBITCARD_ICBC"),
        });
        assert!(req_data.contains("<notify_url>http://example.com/n?a=1&amp;b=2</notify_url>"));
        assert!(req_data.contains("<subject>T&amp;C &lt;b&gt;</subject>"));
        assert!(req_data.contains("<total_fee>1.00</total_fee>"));
        assert!(req_data
            .contains("<pay_expire>30</pay_expire><cashier_code>DEBITCARD_ICBC</cashier_code>"));
        assert!(!req_data.contains("merchant_url"));
        xml::parse_flat(&req_data, "direct_trade_create_req").unwrap();
    }

    // [WAP §12.2] auth vector and chloerei's exact redirect URL test ([WAP §4]).
    #[test]
    fn auth_redirect_vectors() {
        let s = vector_settings("MD5");
        let r = auth_redirect(
            &s,
            "20140101120000",
            "20140101abcdef0123456789abcdef01234567",
        )
        .unwrap();
        assert_eq!(
            find(&r.fields, "sign"),
            Some("168fdfa7eaf037b46a67b89408b62aa8")
        );
        assert_eq!(r.method, HttpMethod::Get);
        assert!(r.url.starts_with("https://wappaygw.alipay.com/service/rest.htm?service=alipay.wap.auth.authAndExecute&format=xml&v=2.0"));
        assert!(r.url.contains("req_data=%3Cauth_and_execute_req%3E%3Crequest_token%3E20140101abcdef0123456789abcdef01234567%3C%2Frequest_token%3E%3C%2Fauth_and_execute_req%3E"));
        // chloerei sends no req_id and no _input_charset: the same sorted rule gives its vector.
        let chloerei = sign::sorted_link_string([
            ("service", SERVICE_AUTH),
            ("req_data", "<auth_and_execute_req><request_token>token_test</request_token></auth_and_execute_req>"),
            ("partner", "1000000000000000"),
            ("format", "xml"),
            ("v", "2.0"),
            ("sec_id", "MD5"),
        ]);
        assert_eq!(
            sign::md5_sign(&chloerei, KEY),
            "3efe60d4a9b7960ba599da6764c959df"
        );
    }

    fn md5_response(settings: &Settings, res_data: &str) -> String {
        let mut pairs = vec![
            pair("res_data", res_data),
            pair("service", SERVICE_CREATE),
            pair("sec_id", "MD5"),
            pair("partner", &settings.partner),
            pair("req_id", "1364452602444"),
            pair("v", "2.0"),
        ];
        let content = sign::sorted_link_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // Wire order as captured: res_data, service, sec_id, partner, req_id, sign, v.
        pairs.insert(5, pair("sign", &sign::md5_sign(&content, KEY)));
        form_encode(&pairs)
    }

    #[test]
    fn create_response_unsorted_signed_and_errors() {
        let s = md5_settings();
        let res = "<?xml version=\"1.0\" encoding=\"utf-8\"?><direct_trade_create_res><request_token>UTP5b94db4a3e6d$00</request_token></direct_trade_create_res>";
        let body = md5_response(&s, res);
        assert_eq!(
            parse_create_response(&s, body.as_bytes()).unwrap(),
            "UTP5b94db4a3e6d$00"
        );
        // Tampered token: the signature no longer matches.
        let tampered = body.replace("UTP5b94", "UTP6b94");
        assert!(matches!(
            parse_create_response(&s, tampered.as_bytes()),
            Err(PluginError::BadSignature(_))
        ));
        // Unsigned: the 2012 demos would take it ([WAP §3.3]), but Alipay signs every successful
        // answer (every capture has `sign`), so one without is anybody's token.
        for unsigned in [
            form_encode(&[pair("res_data", res), pair("v", "2.0")]),
            body.split("&sign=").next().unwrap().to_owned() + "&v=2.0",
        ] {
            assert!(
                matches!(
                    parse_create_response(&s, unsigned.as_bytes()),
                    Err(PluginError::BadSignature(ref m)) if m.contains("no sign")
                ),
                "{unsigned}"
            );
        }
        // The doc-style raw, sorted sample: unencoded XML inside the value, signed here with the
        // test key (its own sign is over another partner's key).
        let raw_unsigned = "partner=2088101000137799&req_id=1282889689836&res_data=<?xml version=\"1.0\" encoding=\"utf-8\"?><direct_trade_create_res><request_token>20100830e8085e3e0868a466b822350ede5886e8</request_token></direct_trade_create_res>&sec_id=MD5&service=alipay.wap.trade.create.direct&v=2.0";
        let raw_sign = sign::md5_sign(
            &sign::sorted_link_string(
                raw_unsigned
                    .split('&')
                    .map(|kv| kv.split_once('=').unwrap()),
            ),
            KEY,
        );
        let raw = format!("{raw_unsigned}&sign={raw_sign}");
        assert_eq!(
            parse_create_response(&s, raw.as_bytes()).unwrap(),
            "20100830e8085e3e0868a466b822350ede5886e8"
        );
        let err = "partner=208810100013779&req_id=1282889689836&res_error=<?xml version=\"1.0\" encoding=\"utf-8\"?><err><code>0005</code><sub_code>0005</sub_code><msg>partner illegal</msg><detail>合作伙伴没有开通接口访问权限</detail></err>&sec_id=0001&service=alipay.wap.trade.create.direct&v=2.0";
        assert_eq!(
            parse_create_response(&s, err.as_bytes()),
            Err(PluginError::Gateway(GatewayError {
                code: "0005".into(),
                sub_code: "0005".into(),
                msg: "partner illegal".into(),
                detail: "合作伙伴没有开通接口访问权限".into()
            }))
        );
        for garbage in [
            &b""[..],
            b"<html>502 Bad Gateway</html>",
            b"res_data=<notxml",
            b"\xff\xfe\x00",
        ] {
            assert!(parse_create_response(&s, garbage).is_err());
        }
    }

    #[test]
    fn callback_vector_and_negatives() {
        let s = md5_settings();
        let q = |sign: &str, sign_type: Option<&str>| {
            let mut v = vec![
                pair("out_trade_no", "20140101000001"),
                pair("request_token", "requestToken"),
                pair("result", "success"),
                pair("trade_no", "2014010100001000000000000001"),
                pair("sign", sign),
            ];
            if let Some(t) = sign_type {
                v.push(pair("sign_type", t));
            }
            v
        };
        // [WAP §12.2]: call-back vector (sign_type present or absent, both accepted).
        let good = "c9746fb3a6b148a7beeb342c1cb7601f";
        let r = verify_return(&s, &q(good, Some("MD5"))).unwrap();
        assert_eq!(r.out_trade_no, "20140101000001");
        assert_eq!(r.trade_no, "2014010100001000000000000001");
        verify_return(&s, &q(good, None)).unwrap();
        assert!(matches!(
            verify_return(&s, &q("c9746fb3a6b148a7beeb342c1cb7601e", None)),
            Err(PluginError::BadSignature(_))
        ));
        assert!(matches!(
            verify_return(&s, &q(good, Some("0001"))),
            Err(PluginError::BadSignature(_))
        ));
        assert!(matches!(
            verify_return(&s, &q("", None)),
            Err(PluginError::BadSignature(_))
        ));
        let mut extra = q(good, None);
        extra.push(pair("result", "fail"));
        assert!(
            verify_return(&s, &extra).is_err(),
            "an added parameter changes the signed string"
        );
    }

    pub(crate) const VECTOR_NOTIFY_DATA: &str = "<notify><payment_type>1</payment_type><subject>测试商品</subject><trade_no>2014010100001000000000000001</trade_no><buyer_email>buyer@example.com</buyer_email><gmt_create>2014-01-01 12:00:00</gmt_create><notify_type>trade_status_sync</notify_type><quantity>1</quantity><out_trade_no>20140101000001</out_trade_no><notify_time>2014-01-01 12:00:10</notify_time><seller_id>1000000000000000</seller_id><trade_status>TRADE_FINISHED</trade_status><is_total_fee_adjust>N</is_total_fee_adjust><total_fee>0.01</total_fee><gmt_payment>2014-01-01 12:00:10</gmt_payment><seller_email>seller@example.com</seller_email><gmt_close>2014-01-01 12:00:10</gmt_close><price>0.01</price><buyer_id>2088000000000000</buyer_id><notify_id>0123456789abcdef0123456789abcdef00</notify_id><use_coupon>N</use_coupon></notify>";

    fn notify_form(sign: &str, notify_data: &str, sec_id: &str) -> Pairs {
        // Wire order as captured: service, sign, sec_id, v, notify_data.
        vec![
            pair("service", SERVICE_CREATE),
            pair("sign", sign),
            pair("sec_id", sec_id),
            pair("v", "1.0"),
            pair("notify_data", notify_data),
        ]
    }

    // [WAP §12.2]: the fixed-order notify vector and the wrongly sorted negative.
    #[test]
    fn notify_vectors_fixed_order_not_sorted() {
        let s = md5_settings();
        let good = notify_form(
            "4f6ad165e1a9686249d1cd3be8503d14",
            VECTOR_NOTIFY_DATA,
            "MD5",
        );
        let n = verify_notify_signature(&s, &good).unwrap().notification;
        assert_eq!(n.out_trade_no, "20140101000001");
        assert_eq!(n.notify_id, "0123456789abcdef0123456789abcdef00");
        assert_eq!(n.total_fee, "0.01");
        assert_eq!(n.trade_status, "TRADE_FINISHED");
        assert!(n.paid);
        assert_eq!(n.fields.len(), 20);
        assert_eq!(n.reply, "success");
        // Signed over the sorted string instead: refused.
        let sorted = notify_form(
            "6d763ceeab18eacd21bdd5e5de3e3424",
            VECTOR_NOTIFY_DATA,
            "MD5",
        );
        assert!(matches!(
            verify_notify_signature(&s, &sorted),
            Err(PluginError::BadSignature(_))
        ));
        // chloerei's notify vector: its notify_data is not a real notify, so the signature passes
        // and reading the trade fails cleanly.
        let chloerei = "<notify><notify_id>notify_id_test</notify_id><other_key>other_value</other_key></notify>";
        let f = notify_form("c2ea243955050051d790d86a4ad5fa38", chloerei, "MD5");
        assert!(
            matches!(verify_notify_signature(&s, &f), Err(PluginError::Malformed(m)) if m.contains("out_trade_no"))
        );
    }

    #[test]
    fn notify_v_is_signed_as_received() {
        let s = md5_settings();
        let content = sign::notify_link_string(SERVICE_CREATE, "2.0", "MD5", VECTOR_NOTIFY_DATA);
        let mut form = notify_form(&sign::md5_sign(&content, KEY), VECTOR_NOTIFY_DATA, "MD5");
        form[3].1 = "2.0".into();
        verify_notify_signature(&s, &form).unwrap();
        form[3].1 = "1.0".into();
        assert!(verify_notify_signature(&s, &form).is_err());
    }

    #[test]
    fn rsa_notify_encrypted_or_plain() {
        let s = vector_settings("0001");
        let content = sign::notify_link_string(SERVICE_CREATE, "1.0", "0001", VECTOR_NOTIFY_DATA);
        let Signer::Rsa { private_key, .. } = &s.signer else {
            unreachable!()
        };
        let sig = sign::rsa_sign(&content, private_key).unwrap();
        // Encrypted notify_data: the [WAP §12.3] ciphertext of the same XML.
        let cipher = include_str!("../testdata/notify_cipher.b64").trim();
        let n = verify_notify_signature(&s, &notify_form(&sig, cipher, "0001"))
            .unwrap()
            .notification;
        assert_eq!(n.out_trade_no, "20140101000001");
        // Plain notify_data (chloerei's environment) with the same signature.
        verify_notify_signature(&s, &notify_form(&sig, VECTOR_NOTIFY_DATA, "0001")).unwrap();
        // An MD5-signed notify to an RSA merchant is a downgrade: refused.
        assert!(verify_notify_signature(
            &s,
            &notify_form(
                "4f6ad165e1a9686249d1cd3be8503d14",
                VECTOR_NOTIFY_DATA,
                "MD5"
            )
        )
        .is_err());
    }

    /// Issue 21: an encrypted notify_data longer than any real notify is refused as malformed,
    /// by its length alone: the answer differs from every decryption failure's (which needs the
    /// private key), so no private-key operation ran. One block under the cap still goes through
    /// decryption (and fails its signature here).
    #[test]
    fn notify_data_longer_than_a_notify_is_refused_before_decryption() {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let s = vector_settings("0001");
        let Signer::Rsa { private_key, .. } = &s.signer else {
            unreachable!()
        };
        let public = private_key.to_public_key();
        // Well-formed blocks that decrypt, so only the cap can stop them early.
        let blocks = |n: usize| {
            let mut cipher = Vec::new();
            for _ in 0..n {
                cipher.extend(public.as_rsa().pkcs1v15_encrypt(&[b'x'; 100]).unwrap());
            }
            engine.encode(cipher)
        };
        let sig = sign::rsa_sign("anything", private_key).unwrap();
        for n in [MAX_NOTIFY_DATA_BLOCKS + 1, 64, sign::MAX_CIPHER_BLOCKS + 1] {
            match verify_notify_signature(&s, &notify_form(&sig, &blocks(n), "0001")) {
                Err(PluginError::Malformed(m)) => {
                    assert!(m.contains("more than a notify needs"), "{m}")
                }
                other => panic!("{n} blocks: {:?}", other.err()),
            }
        }
        let at_cap = verify_notify_signature(
            &s,
            &notify_form(&sig, &blocks(MAX_NOTIFY_DATA_BLOCKS), "0001"),
        );
        assert_eq!(
            at_cap.err(),
            Some(PluginError::BadSignature(format!(
                "notify_data {DECRYPT_OR_SIGN_FAILED}"
            )))
        );
        // The reference's real-sized notify (7 blocks) is well under the cap.
        let real = include_str!("../testdata/notify_cipher.b64").trim();
        assert_eq!(engine.decode(real).unwrap().len() / 128, 7);
        assert!(check_notify_data_size(real, 128).is_ok());
    }

    /// Whatever is wrong with an encrypted notify_data or res_data (not base64, not whole blocks,
    /// a block with bad padding, the wrong key, a signature that does not match
    /// the decrypted text, no signature at all), the caller gets one and the same answer.
    #[test]
    fn encrypted_failures_answer_one_error() {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let s = vector_settings("0001");
        let content = sign::notify_link_string(SERVICE_CREATE, "1.0", "0001", VECTOR_NOTIFY_DATA);
        let Signer::Rsa { private_key, .. } = &s.signer else {
            unreachable!()
        };
        let sig = sign::rsa_sign(&content, private_key).unwrap();
        let cipher_b64 = include_str!("../testdata/notify_cipher.b64").trim();
        let cipher = engine.decode(cipher_b64).unwrap();
        let mut bad_first_block = cipher.clone();
        bad_first_block[5] ^= 0x40;
        let mut out_of_range = cipher.clone();
        out_of_range[..128].fill(0xff);
        let cases = [
            "not base64!".to_owned(),
            engine.encode(&cipher[..100]),
            engine.encode(&bad_first_block),
            engine.encode(&out_of_range),
            engine.encode([7u8; 128]),
        ];
        let expected = PluginError::BadSignature(format!("notify_data {DECRYPT_OR_SIGN_FAILED}"));
        for case in &cases {
            let form = notify_form(&sig, case, "0001");
            let err = verify_notify_signature(&s, &form).err();
            assert_eq!(err.as_ref(), Some(&expected), "{case:.40}");
        }
        // The right ciphertext with a signature over other text: the same answer.
        let other = sign::rsa_sign("other", private_key).unwrap();
        let form = notify_form(&other, cipher_b64, "0001");
        assert_eq!(verify_notify_signature(&s, &form).err(), Some(expected));
        // res_data: encrypted text must come signed; every failure is one answer too.
        let res =
            "<direct_trade_create_res><request_token>T1</request_token></direct_trade_create_res>";
        let encrypted = {
            let public = private_key.to_public_key();
            let block = public.as_rsa().pkcs1v15_encrypt(res.as_bytes()).unwrap();
            engine.encode(block)
        };
        let expected = PluginError::BadSignature(format!("res_data {DECRYPT_OR_SIGN_FAILED}"));
        let signed = |res_data: &str, signed_text: &str| {
            let mut pairs = vec![
                pair("res_data", signed_text),
                pair("service", SERVICE_CREATE),
                pair("sec_id", "0001"),
                pair("partner", "1000000000000000"),
                pair("req_id", "1"),
                pair("v", "2.0"),
            ];
            let content =
                sign::sorted_link_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            pairs.push(pair(
                "sign",
                &sign::rsa_sign(&content, private_key).unwrap(),
            ));
            pairs[0].1 = res_data.to_owned();
            form_encode(&pairs)
        };
        assert_eq!(
            parse_create_response(&s, signed(&encrypted, res).as_bytes()).unwrap(),
            "T1"
        );
        let unsigned = form_encode(&[pair("res_data", &encrypted), pair("v", "2.0")]);
        for body in [
            unsigned,
            signed(&encrypted, "<other/>"),
            signed("!!!!", res),
            signed(&engine.encode([7u8; 128]), res),
        ] {
            assert_eq!(
                parse_create_response(&s, body.as_bytes()).err().as_ref(),
                Some(&expected),
                "{body:.60}"
            );
        }
    }

    #[test]
    fn notify_refuses_missing_notify_id_and_bad_amounts() {
        let s = md5_settings();
        for (from, to) in [
            (
                "<notify_id>0123456789abcdef0123456789abcdef00</notify_id>",
                "",
            ),
            ("<total_fee>0.01</total_fee>", "<total_fee>1e2</total_fee>"),
            (
                "<total_fee>0.01</total_fee>",
                "<total_fee>-0.01</total_fee>",
            ),
            (
                "<total_fee>0.01</total_fee>",
                "<total_fee>0.001</total_fee>",
            ),
        ] {
            let data = VECTOR_NOTIFY_DATA.replace(from, to);
            let content = sign::notify_link_string(SERVICE_CREATE, "1.0", "MD5", &data);
            let form = notify_form(&sign::md5_sign(&content, KEY), &data, "MD5");
            assert!(
                matches!(
                    verify_notify_signature(&s, &form),
                    Err(PluginError::Malformed(_))
                ),
                "{to}"
            );
        }
        let mut missing = notify_form("x", VECTOR_NOTIFY_DATA, "MD5");
        missing.retain(|(k, _)| k != "sign");
        assert!(verify_notify_signature(&s, &missing).is_err());
    }

    #[test]
    fn notify_verify_answer_must_be_exactly_true() {
        assert!(notify_verify_confirms(b"true"));
        assert!(notify_verify_confirms(b"true\n"));
        for no in [
            &b"false"[..],
            b"invalid",
            b"xtrue",
            b"TRUE",
            b"<html>true</html>",
            b"",
            b"true true",
        ] {
            assert!(
                !notify_verify_confirms(no),
                "{:?}",
                String::from_utf8_lossy(no)
            );
        }
        let url = notify_verify_url(&md5_settings(), "abc&d");
        assert_eq!(
            url,
            "https://mapi.alipay.com/gateway.do?service=notify_verify&partner=2088000000000001&notify_id=abc%26d"
        );
    }

    #[test]
    fn url_joining() {
        assert_eq!(url_with_query("http://a/b", "x=1"), "http://a/b?x=1");
        assert_eq!(url_with_query("http://a/b?", "x=1"), "http://a/b?x=1");
        assert_eq!(
            url_with_query("http://a/b?c=d", "x=1"),
            "http://a/b?c=d&x=1"
        );
    }
}
