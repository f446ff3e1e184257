//! The wire format of Alipay's mapi products (docs/protocol/EXTRA.md): the app order string
//! (`mobile.securitypay.pay`, [EXTRA §1]), the PC cashier redirect (`create_direct_pay_by_user`,
//! [EXTRA §2]), the flat notifies and returns both share ([EXTRA §1.4.2], [EXTRA §2.3]), the
//! generation-A app notify ([EXTRA §1.4.1]), the app SDK's result string ([EXTRA §1.5]),
//! `single_trade_query` ([EXTRA §3]) and the seller-confirmed refund
//! (`refund_fastpay_by_platform_pwd` and its batch notify, [EXTRA §4.2]). No I/O here.

use crate::amount::Amount;
use crate::model::{
    batch_detail, AppResult, FieldError, GatewayError, HttpMethod, Notification, PluginError,
    Redirect, TradeQuery, VerifiedReturn,
};
use crate::settings::{is_alipay_user_id, Settings, Signer};
use crate::transformers::{form_encode, url_with_query, Pairs, INPUT_CHARSET, NOTIFY_ACK};
use crate::{sign, xml};

pub const SERVICE_APP: &str = "mobile.securitypay.pay";
pub const SERVICE_PC: &str = "create_direct_pay_by_user";
pub const SERVICE_QUERY: &str = "single_trade_query";
pub const SERVICE_REFUND: &str = "refund_fastpay_by_platform_pwd";

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn invalid(field: &str, reason: impl Into<String>) -> PluginError {
    PluginError::InvalidOrder(FieldError::new(field, reason))
}

/// The validated fields of an order, for the app order string and the PC redirect.
pub struct OrderFields<'a> {
    pub out_trade_no: &'a str,
    pub subject: &'a str,
    pub total_fee: Amount,
    /// The receiving account: a 2088… id, an email or a mobile number.
    pub seller: &'a str,
    pub notify_url: &'a str,
    /// May be empty for the app product.
    pub return_url: &'a str,
    /// Minutes until an unpaid trade closes (`it_b_pay`).
    pub pay_expire: Option<u32>,
}

/// The `sign_type` value of the mapi services (never the wappaygw `0001`).
pub fn mapi_sign_type(signer: &Signer) -> &'static str {
    match signer {
        Signer::Md5 { .. } => "MD5",
        Signer::Rsa { .. } => "RSA",
    }
}

// ---------------------------------------------------------------------------------------------
// App secure pay ([EXTRA §1.2], [EXTRA §1.3])

/// `k1="v1"&k2="v2"&…` in the given order: the quotes are part of the signed bytes.
pub fn quoted_link_string(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(v);
        out.push('"');
    }
    out
}

/// The fields of the app order string in the 2015 official demo's order ([EXTRA §1.2]): `partner,
/// seller_id, out_trade_no, subject, body, total_fee, notify_url, service, payment_type,
/// _input_charset, it_b_pay, return_url`; optional fields left out when empty.
pub fn app_order_fields(partner: &str, f: &OrderFields<'_>) -> Pairs {
    let mut fields = vec![
        pair("partner", partner),
        pair("seller_id", f.seller),
        pair("out_trade_no", f.out_trade_no),
        pair("subject", f.subject),
        // The contract has no description: the subject doubles as the required `body`.
        pair("body", f.subject),
        pair("total_fee", &f.total_fee.to_string()),
        pair("notify_url", f.notify_url),
        pair("service", SERVICE_APP),
        pair("payment_type", "1"),
        pair("_input_charset", INPUT_CHARSET),
    ];
    if let Some(m) = f.pay_expire {
        fields.push(pair("it_b_pay", &format!("{m}m")));
    }
    if !f.return_url.is_empty() {
        fields.push(pair("return_url", f.return_url));
    }
    fields
}

/// The order string once signed: `<content>&sign="<URL-encoded base64>"&sign_type="RSA"`.
pub fn app_order_string(content: &str, signature_b64: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(signature_b64.as_bytes()).collect();
    format!("{content}&sign=\"{encoded}\"&sign_type=\"RSA\"")
}

/// The signed order string for the app SDK. The app product signs with RSA only ([EXTRA §1.2]): an MD5
/// merchant is refused with the setting named.
pub fn app_order(settings: &Settings, f: &OrderFields<'_>) -> Result<String, PluginError> {
    let Signer::Rsa { private_key, .. } = &settings.signer else {
        return Err(PluginError::InvalidSettings(vec![FieldError::new(
            "sign_type",
            "must be RSA for the app product: mobile.securitypay.pay accepts RSA signatures only (set sign_type = RSA and private_key)",
        )]));
    };
    let fields = app_order_fields(&settings.partner, f);
    // No escaping exists inside the quotes ([EXTRA §1.2]): a value with `"` or `&` cannot be sent.
    for (k, v) in &fields {
        if v.contains(['"', '&']) || v.chars().any(char::is_control) {
            return Err(invalid(
                k,
                "must not contain '\"', '&' or control characters for the app product (the order string has no escaping)",
            ));
        }
    }
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let content = quoted_link_string(&refs);
    let signature = sign::rsa_sign(&content, private_key).map_err(|e| {
        PluginError::InvalidSettings(vec![FieldError::new("private_key", e.to_string())])
    })?;
    Ok(app_order_string(&content, &signature))
}

// ---------------------------------------------------------------------------------------------
// PC instant pay ([EXTRA §2.1], [EXTRA §2.2])

/// Signs mapi parameters with the sorted rule and appends `sign` and `sign_type` ([EXTRA §2.2]).
pub fn sign_mapi_params(settings: &Settings, params: &mut Pairs) -> Result<(), PluginError> {
    let content = sign::sorted_link_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = crate::transformers::sign_string(&settings.signer, &content)?;
    params.push(pair("sign", &signature));
    params.push(pair("sign_type", mapi_sign_type(&settings.signer)));
    Ok(())
}

/// The `create_direct_pay_by_user` parameters, unsigned, in the official 3.3 demo's order. The
/// seller goes as `seller_id` when it is a 2088… id, else as `seller_email` (ShopEx's rule).
pub fn pc_params(partner: &str, f: &OrderFields<'_>) -> Pairs {
    let seller_key = if is_alipay_user_id(f.seller) {
        "seller_id"
    } else {
        "seller_email"
    };
    let mut params = vec![
        pair("service", SERVICE_PC),
        pair("partner", partner),
        pair(seller_key, f.seller),
        pair("_input_charset", INPUT_CHARSET),
        pair("payment_type", "1"),
        pair("notify_url", f.notify_url),
        pair("return_url", f.return_url),
        pair("out_trade_no", f.out_trade_no),
        pair("subject", f.subject),
        pair("total_fee", &f.total_fee.to_string()),
    ];
    if let Some(m) = f.pay_expire {
        params.push(pair("it_b_pay", &format!("{m}m")));
    }
    params
}

/// The buyer's redirect to the PC cashier, as a GET URL and the equivalent form.
pub fn pc_redirect(settings: &Settings, f: &OrderFields<'_>) -> Result<Redirect, PluginError> {
    let mut params = pc_params(&settings.partner, f);
    sign_mapi_params(settings, &mut params)?;
    Ok(Redirect {
        url: url_with_query(&settings.mapi_url, &form_encode(&params)),
        method: HttpMethod::Get,
        action: settings.mapi_url.clone(),
        fields: params,
    })
}

// ---------------------------------------------------------------------------------------------
// Flat notifies and returns ([EXTRA §1.4.2], [EXTRA §2.3])

/// Which format a notification is in ([EXTRA §1.4.3], [EXTRA §2.4]): WAP (`notify_data` +
/// `sec_id`), app generation A (`notify_data` alone), or flat (PC, app generation B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyKind {
    Wap,
    AppA,
    Flat,
}

pub fn notify_kind(form: &[(String, String)]) -> NotifyKind {
    let has = |k: &str| form.iter().any(|(key, _)| key == k);
    match (has("notify_data"), has("sec_id")) {
        (true, true) => NotifyKind::Wap,
        (true, false) => NotifyKind::AppA,
        (false, _) => NotifyKind::Flat,
    }
}

/// A PC return carries `is_success`, `exterface`, `notify_*` and `trade_status`; a WAP call-back
/// carries `result` and `request_token` and none of them.
pub fn is_pc_return(query: &[(String, String)]) -> bool {
    [
        "is_success",
        "exterface",
        "notify_id",
        "notify_type",
        "trade_status",
    ]
    .iter()
    .any(|k| query.iter().any(|(key, _)| key == k))
}

/// Checks a flat, sorted-rule signature ([EXTRA §2.2], [EXTRA §1.4.2]): MD5 with the merchant key,
/// or RSA with Alipay's mapi key. The received `sign_type` must be the merchant's own (no downgrade).
pub fn verify_flat(settings: &Settings, pairs: &[(String, String)]) -> Result<(), PluginError> {
    let received = find(pairs, "sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::BadSignature("carries no sign".into()))?;
    let own = mapi_sign_type(&settings.signer);
    match find(pairs, "sign_type").filter(|s| !s.is_empty()) {
        Some(t) if !t.eq_ignore_ascii_case(own) => {
            return Err(PluginError::BadSignature(format!(
                "signed with {t:?}, but this merchant uses {own}"
            )))
        }
        _ => {}
    }
    let content = sign::sorted_link_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let ok = match &settings.signer {
        Signer::Md5 { key } => sign::md5_verify(&content, key, received),
        Signer::Rsa { .. } => {
            // Form transport may turn `+` into a space; base64 has none.
            let received = received.replace(' ', "+");
            sign::rsa_verify(&content, &received, settings.mapi_public_key()).unwrap_or(false)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(PluginError::BadSignature(
            "the sign does not match the sorted parameters (check the key or the mapi public key)"
                .into(),
        ))
    }
}

/// A notification out of trade fields (flat params, `notify_data` or a queried `<trade>`).
fn notification_from(
    fields: Vec<(String, String)>,
    notify_id: Option<String>,
    what: &str,
) -> Result<Notification, PluginError> {
    let get = |name: &str| {
        find(&fields, name)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let require = |name: &str| {
        get(name).ok_or_else(|| PluginError::Malformed(format!("{what} has no {name}")))
    };
    let out_trade_no = require("out_trade_no")?;
    let trade_status = require("trade_status")?;
    let total_fee = Amount::parse(&require("total_fee")?)
        .map_err(|e| PluginError::Malformed(format!("{what} total_fee {e}")))?;
    // A refunded total (`refund_fee`) is never more than what was paid.
    if let Some(v) = get("refund_fee").filter(|v| !v.is_empty()) {
        let refunded = Amount::parse_or_zero(&v)
            .map_err(|e| PluginError::Malformed(format!("{what} refund_fee {v:?}: {e}")))?;
        if refunded.is_some_and(|r| r > total_fee) {
            return Err(PluginError::Malformed(format!(
                "{what} refund_fee {v} is more than the trade's total_fee {total_fee}"
            )));
        }
    }
    let notify_id = match notify_id {
        Some(id) => id,
        None => require("notify_id")?,
    };
    Ok(Notification {
        trade_no: get("trade_no").unwrap_or_default(),
        paid: matches!(trade_status.as_str(), "TRADE_SUCCESS" | "TRADE_FINISHED"),
        out_trade_no,
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
        fields,
        reply: NOTIFY_ACK.to_owned(),
    })
}

/// Verifies a flat notify (PC, app generation B) by the sorted rule; `notify_verify` follows.
pub fn verify_flat_notify(
    settings: &Settings,
    form: &[(String, String)],
) -> Result<Notification, PluginError> {
    #[cfg(not(feature = "conformance-broken-notify-check"))] // sign::notify_sign_ok's feature
    verify_flat(settings, form).map_err(|e| prefixed(e, "the notification"))?;
    let fields: Pairs = form
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .cloned()
        .collect();
    notification_from(fields, None, "the notification")
}

fn prefixed(e: PluginError, what: &str) -> PluginError {
    match e {
        PluginError::BadSignature(m) => PluginError::BadSignature(format!("{what}: {m}")),
        other => other,
    }
}

/// Verifies a PC return (GET, [EXTRA §2.3]) with the sorted rule. Signature only: the return is a hint,
/// the notify (with `notify_verify`) is authoritative. `result` is the `trade_status`.
pub fn verify_pc_return(
    settings: &Settings,
    query: &[(String, String)],
) -> Result<VerifiedReturn, PluginError> {
    verify_flat(settings, query).map_err(|e| prefixed(e, "the return"))?;
    let is_success = find(query, "is_success").unwrap_or("");
    if is_success != "T" {
        return Err(PluginError::Malformed(format!(
            "the return's is_success is {is_success:?}, not \"T\""
        )));
    }
    let out_trade_no = find(query, "out_trade_no")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::Malformed("the return carries no out_trade_no".into()))?;
    Ok(VerifiedReturn {
        out_trade_no: out_trade_no.to_owned(),
        trade_no: find(query, "trade_no").unwrap_or("").to_owned(),
        result: find(query, "trade_status").unwrap_or("").to_owned(),
        request_token: String::new(),
        raw: query.to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// App generation-A notify ([EXTRA §1.4.1])

/// The string Alipay signed: `notify_data=` + the XML as received, nothing else.
pub fn app_a_link_string(notify_data: &str) -> String {
    format!("notify_data={notify_data}")
}

/// Verifies a generation-A app notify: RSA-SHA1 over `notify_data=<xml>` with the merchant's
/// Alipay app key (or the mapi key). It has no `notify_id` and no `notify_verify` exists, so it is
/// final once verified; its `notify_id` is the synthetic, stable `app:<trade_no>:<trade_status>`.
pub fn verify_app_a_notify(
    settings: &Settings,
    form: &[(String, String)],
) -> Result<Notification, PluginError> {
    let Signer::Rsa { .. } = settings.signer else {
        return Err(PluginError::BadSignature(
            "an app notify is signed with RSA, but this merchant uses MD5".into(),
        ));
    };
    if let Some(t) = find(form, "sign_type").filter(|t| !t.is_empty()) {
        if !t.eq_ignore_ascii_case("RSA") {
            return Err(PluginError::BadSignature(format!(
                "the app notification is signed with {t}, not RSA"
            )));
        }
    }
    let notify_data = find(form, "notify_data").unwrap_or("");
    let received = find(form, "sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::BadSignature("the app notification carries no sign".into()))?
        .replace(' ', "+");
    let content = app_a_link_string(notify_data);
    if !settings
        .app_keys()
        .any(|k| sign::notify_sign_ok(sign::rsa_verify(&content, &received, k).unwrap_or(false)))
    {
        return Err(PluginError::BadSignature(
            "the app notification's sign does not match \"notify_data=\" + notify_data (check app_alipay_public_key)".into(),
        ));
    }
    let doc = xml::parse_flat(notify_data, "notify")
        .map_err(|e| PluginError::Malformed(format!("notify_data: {e}")))?;
    if let Some(p) = doc.get("partner").filter(|p| !p.is_empty()) {
        if p != settings.partner {
            return Err(PluginError::BadSignature(format!(
                "the app notification is for partner {p}, not this merchant"
            )));
        }
    }
    let status = doc.get("trade_status").unwrap_or("");
    let trade = doc
        .get("trade_no")
        .filter(|t| !t.is_empty())
        .or(doc.get("out_trade_no"))
        .unwrap_or("");
    let notify_id = doc
        .get("notify_id")
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("app:{trade}:{status}"));
    notification_from(doc.children, Some(notify_id), "notify_data")
}

// ---------------------------------------------------------------------------------------------
// App SDK result ([EXTRA §1.5])

/// The text of `key={…}` in a result string: up to the next `}` (the last `}` for `result`).
fn braced<'a>(s: &'a str, key: &str, last: bool) -> Option<&'a str> {
    let open = format!("{key}={{");
    let start = s.find(&open)? + open.len();
    let rest = &s[start..];
    let end = if last {
        rest.rfind('}')
    } else {
        rest.find('}')
    }?;
    Some(&rest[..end])
}

/// Splits `k="v"&k2="v2"` (quotes optional) into pairs, in order.
pub fn parse_quoted(content: &str) -> Pairs {
    content
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Verifies the app SDK's synchronous result ([EXTRA §1.5]): the signed content is everything inside
/// `result={…}` before `&sign_type=`; the sign is Alipay's (raw base64 in quotes) over it. It must
/// include `success="true"`. A result with no signed content (cancelled, failed) answers the
/// `resultStatus` as a gateway error.
pub fn verify_app_result(settings: &Settings, text: &str) -> Result<AppResult, PluginError> {
    // Some apps forward the string JSON- or PHP-escaped (`\"`).
    let text = text.trim().replace("\\\"", "\"");
    let status = braced(&text, "resultStatus", false)
        .ok_or_else(|| PluginError::Malformed("the result has no resultStatus={…}".into()))?
        .to_owned();
    let memo = braced(&text, "memo", false).unwrap_or("").to_owned();
    let result = braced(&text, "result", true).unwrap_or("");
    if result.is_empty() {
        return Err(PluginError::Gateway(GatewayError {
            code: status,
            sub_code: String::new(),
            msg: memo,
            detail: "the app SDK reported no signed result".into(),
        }));
    }
    let cut = result.find("&sign_type=").ok_or_else(|| {
        PluginError::BadSignature("the result carries no sign_type and sign".into())
    })?;
    let content = &result[..cut];
    let tail = parse_quoted(&result[cut + 1..]);
    let sign_type = find(&tail, "sign_type").unwrap_or("");
    if !sign_type.eq_ignore_ascii_case("RSA") {
        return Err(PluginError::BadSignature(format!(
            "the result is signed with {sign_type:?}, not RSA"
        )));
    }
    let received = find(&tail, "sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::BadSignature("the result carries no sign".into()))?;
    // Forwarded through a form, `+` may have become a space, or the sign may be URL-encoded.
    let received = if received.contains('%') {
        form_urlencoded::parse(format!("s={received}").as_bytes())
            .map(|(_, v)| v.into_owned())
            .next()
            .unwrap_or_default()
    } else {
        received.replace(' ', "+")
    };
    if !settings
        .app_keys()
        .any(|k| sign::rsa_verify(content, &received, k).unwrap_or(false))
    {
        return Err(PluginError::BadSignature(
            "the result's sign does not match its content (Alipay's key: mapi_public_key or app_alipay_public_key)".into(),
        ));
    }
    let fields = parse_quoted(content);
    if find(&fields, "success") != Some("true") {
        return Err(PluginError::BadSignature(
            "the signed result does not say success=\"true\"".into(),
        ));
    }
    let get = |k: &str| find(&fields, k).unwrap_or("").to_owned();
    let partner = get("partner");
    if partner != settings.partner {
        return Err(PluginError::BadSignature(format!(
            "the result is for partner {partner:?}, not this merchant"
        )));
    }
    let total_fee = Amount::parse(&get("total_fee"))
        .map_err(|e| PluginError::Malformed(format!("the result's total_fee {e}")))?;
    let seller_id = find(&fields, "seller_id")
        .or(find(&fields, "seller"))
        .unwrap_or("")
        .to_owned();
    Ok(AppResult {
        result_status: status,
        memo,
        out_trade_no: get("out_trade_no"),
        partner,
        total_fee: total_fee.to_string(),
        seller_id,
        fields,
    })
}

// ---------------------------------------------------------------------------------------------
// single_trade_query ([EXTRA §3])

/// The signed `single_trade_query` URL, by `out_trade_no` or `trade_no` ([EXTRA §3.1]).
pub fn query_url(settings: &Settings, key: &str, value: &str) -> Result<String, PluginError> {
    let mut params = vec![
        pair("service", SERVICE_QUERY),
        pair("partner", &settings.partner),
        pair("_input_charset", INPUT_CHARSET),
        pair(key, value),
    ];
    sign_mapi_params(settings, &mut params)?;
    Ok(url_with_query(&settings.mapi_url, &form_encode(&params)))
}

fn preview(body: &str) -> String {
    body.chars().take(200).filter(|c| !c.is_control()).collect()
}

/// The stable id a queried trade gets as a notification: one per trade state, so querying the
/// same state twice gives the same id and a refund gives a new one.
pub fn query_notify_id(trade: &[(String, String)]) -> String {
    let get = |k: &str| find(trade, k).unwrap_or("");
    let mut id = format!("query:{}:{}", get("trade_no"), get("trade_status"));
    if !get("refund_status").is_empty() {
        id.push(':');
        id.push_str(get("refund_status"));
        id.push(':');
        id.push_str(get("refund_fee"));
    }
    id
}

/// Parses the `single_trade_query` answer ([EXTRA §3.2], [EXTRA §3.3]). `TRADE_NOT_EXIST` is `found: false`; any
/// other error is a gateway error. The trade must be the one asked for (partner, out_trade_no).
///
/// The answer's `<sign>`: the protocol reference ([EXTRA §3.2], open question [EXTRA §7]) found
/// no public code that checks it and no capture with a known key, so the string it covers is not
/// established; it recommends relying on HTTPS to the gateway, `is_success=T` and cross-checks
/// (partner / seller, out_trade_no, total_fee). So the sign is checked with the rule of every
/// other mapi answer ([EXTRA §2.2]: the sorted `<trade>` elements, MD5 with the merchant key or
/// RSA with Alipay's mapi key) and the result reported (`signature_verified`), never enforced:
/// refusing on a guessed rule could refuse every genuine answer (and lost-notify recovery with
/// them), while a forger would simply leave the sign out. What is enforced are the cross-checks:
/// the order asked about, the partner Alipay echoes, and a seller the host's `match-order` checks
/// against the order's (a legacy answer names one in every capture).
pub fn parse_query_response(
    settings: &Settings,
    out_trade_no: &str,
    body: &[u8],
) -> Result<TradeQuery, PluginError> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t.to_owned(),
        Err(_) => crate::gbk::decode(body)
            .map_err(|e| PluginError::Malformed(format!("single_trade_query answer: {e}")))?,
    };
    let leaves = xml::parse_leaves(&text, "alipay", 3).map_err(|e| {
        PluginError::Malformed(format!(
            "single_trade_query answer: {e}: {}",
            preview(&text)
        ))
    })?;
    let get = |k: &str| find(&leaves, k).unwrap_or("");
    match get("is_success") {
        "T" => {}
        "F" => {
            let code = get("error");
            if code == "TRADE_NOT_EXIST" {
                return Ok(TradeQuery {
                    found: false,
                    out_trade_no: out_trade_no.to_owned(),
                    ..Default::default()
                });
            }
            return Err(PluginError::Gateway(GatewayError {
                code: if code.is_empty() { "UNKNOWN" } else { code }.to_owned(),
                sub_code: code.to_owned(),
                msg: "single_trade_query failed".into(),
                // The code says it (and the hint explains it); the answer itself only when it
                // names no code.
                detail: if code.is_empty() {
                    preview(&text)
                } else {
                    String::new()
                },
            }));
        }
        other => {
            return Err(PluginError::Malformed(format!(
                "single_trade_query answered is_success {other:?}"
            )))
        }
    }
    if let Some(p) = find(&leaves, "request/param@partner") {
        if p != settings.partner {
            return Err(PluginError::Malformed(format!(
                "single_trade_query answered for partner {p}"
            )));
        }
    }
    let trade: Pairs = leaves
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("response/trade/")
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    if trade.is_empty() {
        return Err(PluginError::Malformed(
            "single_trade_query answered T without a <trade>".into(),
        ));
    }
    let signature_verified = match find(&leaves, "sign").filter(|s| !s.is_empty()) {
        None => false,
        Some(received) => {
            let content =
                sign::sorted_link_string(trade.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let ok = match &settings.signer {
                Signer::Md5 { key } => sign::md5_verify(&content, key, received),
                Signer::Rsa { .. } => {
                    sign::rsa_verify(&content, received, settings.mapi_public_key())
                        .unwrap_or(false)
                }
            };
            ok
        }
    };
    let named = |k: &str| find(&trade, k).is_some_and(|v| !v.trim().is_empty());
    if !named("seller_id") && !named("seller_email") {
        return Err(PluginError::Malformed(
            "the single_trade_query answer names no seller (seller_id, seller_email): it cannot be checked against the order".into(),
        ));
    }
    let notification = notification_from(
        trade.clone(),
        Some(query_notify_id(&trade)),
        "the queried trade",
    )?;
    if notification.out_trade_no != out_trade_no {
        return Err(PluginError::Malformed(format!(
            "single_trade_query answered for order {}, not {out_trade_no}",
            notification.out_trade_no
        )));
    }
    let notification = Notification {
        // Nothing to answer: the host asked.
        reply: String::new(),
        ..notification
    };
    Ok(TradeQuery {
        found: true,
        out_trade_no: notification.out_trade_no.clone(),
        trade_no: notification.trade_no.clone(),
        trade_status: notification.trade_status.clone(),
        event: notification.event(),
        total_fee: notification.total_fee.clone(),
        refund_fee: notification.refund_fee(),
        seller_email: notification.seller_email.clone(),
        seller_id: notification.seller_id.clone(),
        buyer_email: notification.buyer_email.clone(),
        gmt_payment: notification.gmt_payment.clone(),
        signature_verified,
        fields: trade,
        notification: Some(notification),
    })
}

#[cfg(test)]
#[path = "mapi_tests.rs"]
mod tests;

// ---------------------------------------------------------------------------------------------
// Refund with the seller's password ([EXTRA §4.2])

/// One refund of a `refund_fastpay_by_platform_pwd` batch.
pub struct RefundFields<'a> {
    /// `batch_no`: the Beijing date `YYYYMMDD` and a 3–24 digit sequence, unique per merchant.
    pub batch_no: &'a str,
    /// `refund_date`, `yyyy-MM-dd HH:mm:ss`.
    pub refund_date: &'a str,
    pub trade_no: &'a str,
    pub amount: Amount,
    pub reason: &'a str,
    pub notify_url: &'a str,
}

/// `batch_no`'s rule: 8 digits of a date, then 3 to 24 digits ([EXTRA §4.2]).
pub fn is_batch_no(s: &str) -> bool {
    (11..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && crate::connector::is_calendar_day(&s[..4], &s[4..6], &s[6..8])
}

/// `detail_data`'s separators (`^` between fields, `#` between refunds, `|` between a refund's
/// parts) cannot appear in the reason; they are replaced with spaces.
fn detail_reason(reason: &str) -> String {
    reason
        .trim()
        .chars()
        .map(|c| {
            if matches!(c, '^' | '#' | '|' | '$') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The parameters of a one-refund batch, unsigned, in the order of the reference's field list:
/// `batch_num=1`, `detail_data=trade_no^amount^reason` ([EXTRA §4.2]).
pub fn refund_params(partner: &str, f: &RefundFields<'_>) -> Pairs {
    vec![
        pair("service", SERVICE_REFUND),
        pair("partner", partner),
        pair("_input_charset", INPUT_CHARSET),
        pair("notify_url", f.notify_url),
        pair("seller_user_id", partner),
        pair("refund_date", f.refund_date),
        pair("batch_no", f.batch_no),
        pair("batch_num", "1"),
        pair(
            "detail_data",
            &format!("{}^{}^{}", f.trade_no, f.amount, detail_reason(f.reason)),
        ),
    ]
}

/// The seller's redirect to Alipay's refund page, signed by the sorted rule with the merchant's
/// sign type (MD5 or RSA, [EXTRA §2.2]): the seller enters the payment password there, and the
/// result comes as a batch notify to `notify_url`.
pub fn refund_redirect(settings: &Settings, f: &RefundFields<'_>) -> Result<Redirect, PluginError> {
    let mut params = refund_params(&settings.partner, f);
    sign_mapi_params(settings, &mut params)?;
    Ok(Redirect {
        url: url_with_query(&settings.mapi_url, &form_encode(&params)),
        method: HttpMethod::Get,
        action: settings.mapi_url.clone(),
        fields: params,
    })
}

/// A batch-refund notify: `batch_no`, `success_num` and `result_details` with no trade fields.
pub fn is_batch_refund_notify(form: &[(String, String)]) -> bool {
    find(form, "batch_no").is_some() && find(form, "result_details").is_some()
}

/// Verifies a batch-refund notify by the sorted rule ([EXTRA §2.2]; `notify_verify` follows as
/// for every flat notify) and reads it as a notification that names the trade (`trade_no` from
/// `result_details`), no order (`out_trade_no` empty), no trade status and no total: its
/// `refund` report says what was refunded ([`Notification::refund`]).
pub fn verify_batch_refund_notify(
    settings: &Settings,
    form: &[(String, String)],
) -> Result<Notification, PluginError> {
    #[cfg(not(feature = "conformance-broken-notify-check"))] // sign::notify_sign_ok's feature
    verify_flat(settings, form).map_err(|e| prefixed(e, "the batch-refund notification"))?;
    let fields: Pairs = form
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .cloned()
        .collect();
    let get = |name: &str| {
        find(&fields, name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let require = |name: &str| {
        get(name).ok_or_else(|| {
            PluginError::Malformed(format!("the batch-refund notification has no {name}"))
        })
    };
    let batch_no = require("batch_no")?;
    if !is_batch_no(&batch_no) {
        return Err(PluginError::Malformed(
            "the batch-refund notification's batch_no is not a date and 3-24 digits".into(),
        ));
    }
    let notify_id = require("notify_id")?;
    require("success_num")?
        .parse::<u32>()
        .map_err(|_| PluginError::Malformed("success_num is not a number".into()))?;
    let details = require("result_details")?;
    // payhost's refunds are batches of one (`batch_num=1`): a report of several trades is not
    // one of them, and reading its first alone would drop the rest.
    if details.contains('#') {
        return Err(PluginError::Malformed(
            "result_details reports more than one refund, and this component's refunds are batches of one (batch_num=1)".into(),
        ));
    }
    let detail = batch_detail(&details);
    if detail.trade_no.is_empty() || detail.result.is_empty() {
        return Err(PluginError::Malformed(
            "result_details is not trade_no^amount^result".into(),
        ));
    }
    Amount::parse(detail.amount)
        .map_err(|e| PluginError::Malformed(format!("result_details: the refund amount {e}")))?;
    Ok(Notification {
        out_trade_no: String::new(),
        trade_no: detail.trade_no.to_owned(),
        trade_status: String::new(),
        total_fee: String::new(),
        notify_id,
        notify_time: get("notify_time"),
        paid: false,
        fields,
        reply: NOTIFY_ACK.to_owned(),
        ..Default::default()
    })
}
