//! TestPay's protocol in plain Rust (see the crate documentation): settings, amounts, the
//! canonical string and its HMAC-SHA256 signature, payments, notifications, returns and order
//! matching. No WIT types here, so it is tested natively.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub type Pairs = Vec<(String, String)>;

pub const ID: &str = "testpay";
pub const NAME: &str = "TestPay (conformance test provider)";
pub const PROVIDER: &str = "testpay";
/// The body that acknowledges a processed notification.
pub const NOTIFY_ACK: &str = "OK";
/// The body that asks TestPay to send a notification again.
pub const NOTIFY_RETRY: &str = "RETRY";
pub const DEFAULT_ENDPOINT: &str = "https://pay.testpay.example";

/// Most fields in one form, query or settings list.
pub const MAX_FIELDS: usize = 64;
/// Longest field name, in bytes.
pub const MAX_KEY: usize = 64;
/// Longest field value, in bytes.
pub const MAX_VALUE: usize = 4096;
/// Longest order number, in characters.
pub const MAX_TRADE_NO: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        FieldError {
            field: shown(field),
            reason: reason.into(),
        }
    }
}

/// The plugin errors TestPay reports (a subset of the contract's `plugin-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    InvalidSettings(Vec<FieldError>),
    InvalidOrder(FieldError),
    BadSignature(String),
    Malformed(String),
}

/// A value as it may appear in an error message: at most 64 characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Secret,
    Select,
    Url,
}

/// One setting as the admin form shows it.
pub struct SettingSpec {
    pub name: &'static str,
    pub label_zh: &'static str,
    pub label_en: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub secret: bool,
    pub rule: &'static str,
    /// (value, label_zh, label_en)
    pub options: &'static [(&'static str, &'static str, &'static str)],
    pub default_value: Option<&'static str>,
}

pub const SCHEMA: &[SettingSpec] = &[
    SettingSpec {
        name: "merchant_no",
        label_zh: "商户号",
        label_en: "Merchant number",
        kind: Kind::Text,
        required: true,
        secret: false,
        rule: "1–32 letters or digits",
        options: &[],
        default_value: None,
    },
    SettingSpec {
        name: "api_secret",
        label_zh: "API 密钥",
        label_en: "API secret",
        kind: Kind::Secret,
        required: true,
        secret: true,
        rule: "at least 16 characters",
        options: &[],
        default_value: None,
    },
    SettingSpec {
        name: "endpoint",
        label_zh: "网关地址",
        label_en: "Endpoint",
        kind: Kind::Url,
        required: false,
        secret: false,
        rule: "an absolute http or https URL without query or fragment",
        options: &[],
        default_value: Some(DEFAULT_ENDPOINT),
    },
    SettingSpec {
        name: "mode",
        label_zh: "跳转方式",
        label_en: "Redirect mode",
        kind: Kind::Select,
        required: false,
        secret: false,
        rule: "redirect or post",
        options: &[
            ("redirect", "页面跳转 (GET)", "Redirect (GET)"),
            ("post", "表单提交 (POST)", "Form post (POST)"),
        ],
        default_value: Some("redirect"),
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Redirect,
    Post,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Redirect => "redirect",
            Mode::Post => "post",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub merchant_no: String,
    pub api_secret: String,
    /// Without a trailing `/`.
    pub endpoint: String,
    pub mode: Mode,
}

/// An absolute `http`/`https` URL with a host, no whitespace or control characters.
fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks the settings; returns them parsed and normalised (in schema order, defaults filled in),
/// or every bad field.
pub fn validate_settings(pairs: &[(String, String)]) -> Result<(Settings, Pairs), Vec<FieldError>> {
    if pairs.len() > MAX_FIELDS {
        return Err(vec![FieldError::new(
            "settings",
            format!("at most {MAX_FIELDS} settings, got {}", pairs.len()),
        )]);
    }
    let mut errors = Vec::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if !SCHEMA.iter().any(|f| f.name == k) {
            errors.push(FieldError::new(k, "is not a setting of testpay"));
        } else if pairs[..i].iter().any(|(earlier, _)| earlier == k) {
            errors.push(FieldError::new(k, "is given more than once"));
        } else if v.len() > MAX_VALUE {
            errors.push(FieldError::new(
                k,
                format!("is longer than {MAX_VALUE} bytes"),
            ));
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE)
    };

    let merchant_no = match get("merchant_no") {
        None => {
            errors.push(FieldError::new(
                "merchant_no",
                "is required (1–32 letters or digits)",
            ));
            String::new()
        }
        Some(m) if m.len() > 32 || !m.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            errors.push(FieldError::new(
                "merchant_no",
                "must be 1–32 letters or digits",
            ));
            String::new()
        }
        Some(m) => m.to_owned(),
    };

    let api_secret = match get("api_secret") {
        None => {
            errors.push(FieldError::new(
                "api_secret",
                "is required (at least 16 characters)",
            ));
            String::new()
        }
        Some(s) if s.chars().count() < 16 => {
            errors.push(FieldError::new(
                "api_secret",
                "must be at least 16 characters",
            ));
            String::new()
        }
        Some(s) => s.to_owned(),
    };

    let endpoint = match get("endpoint") {
        None => DEFAULT_ENDPOINT.to_owned(),
        Some(e) if !is_http_url(e) || e.contains(['?', '#']) => {
            errors.push(FieldError::new(
                "endpoint",
                "must be an absolute http or https URL without query or fragment",
            ));
            String::new()
        }
        Some(e) => e.trim_end_matches('/').to_owned(),
    };

    let mode = match get("mode").map(str::to_ascii_lowercase).as_deref() {
        None | Some("redirect") => Mode::Redirect,
        Some("post") => Mode::Post,
        Some(_) => {
            errors.push(FieldError::new("mode", "must be redirect or post"));
            Mode::Redirect
        }
    };

    if !errors.is_empty() {
        return Err(errors);
    }
    let normalised = vec![
        ("merchant_no".to_owned(), merchant_no.clone()),
        ("api_secret".to_owned(), api_secret.clone()),
        ("endpoint".to_owned(), endpoint.clone()),
        ("mode".to_owned(), mode.as_str().to_owned()),
    ];
    Ok((
        Settings {
            merchant_no,
            api_secret,
            endpoint,
            mode,
        },
        normalised,
    ))
}

fn load_settings(pairs: &[(String, String)]) -> Result<Settings, Error> {
    validate_settings(pairs)
        .map(|(s, _)| s)
        .map_err(Error::InvalidSettings)
}

// ---------------------------------------------------------------------------------------------
// Amounts

/// Parses a decimal amount into cents: digits (at most 12), optionally `.` and one or two digits;
/// positive. No sign, exponent or whitespace.
pub fn parse_amount(s: &str) -> Result<u64, &'static str> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a decimal number such as 12.50");
    }
    if int.len() > 12 {
        return Err("must be less than 10^12");
    }
    let frac_cents = match frac {
        None => 0,
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return Err("must be a decimal number such as 12.50")
        }
        Some(f) if f.len() > 2 => return Err("must have at most two decimal places"),
        Some(f) => {
            let digits: u64 = f.parse().map_err(|_| "must be a decimal number")?;
            if f.len() == 1 {
                digits * 10
            } else {
                digits
            }
        }
    };
    let units: u64 = int.parse().map_err(|_| "must be a decimal number")?;
    let cents = units * 100 + frac_cents;
    if cents == 0 {
        return Err("must be positive");
    }
    Ok(cents)
}

/// Cents as a decimal with two places: 150 → `1.50`.
pub fn format_amount(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// The canonical string: `key=value` pairs sorted by key, joined with `&`, `sign` left out.
pub fn canonical_string(fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().filter(|(k, _)| k != "sign").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn hmac_sha256(secret: &str, content: &str) -> Result<[u8; 32], Error> {
    // HMAC takes keys of any length; the error arm is unreachable in practice but is no trap.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| Error::InvalidSettings(vec![FieldError::new("api_secret", "unusable key")]))?;
    mac.update(content.as_bytes());
    Ok(mac.finalize().into_bytes().into())
}

/// The signature of `fields` (lowercase hex HMAC-SHA256 of their canonical string).
pub fn sign(secret: &str, fields: &[(String, String)]) -> Result<String, Error> {
    Ok(hex::encode(hmac_sha256(secret, &canonical_string(fields))?))
}

/// Checks the `sign` of a received form or query (hex, either case), in constant time.
pub fn verify_sign(secret: &str, fields: &[(String, String)], what: &str) -> Result<(), Error> {
    let received = find(fields, "sign")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadSignature(format!("{what} carries no sign")))?;
    let expected = hmac_sha256(secret, &canonical_string(fields))?;
    let received = match hex::decode(received) {
        Ok(bytes) if bytes.len() == expected.len() => bytes,
        _ => {
            return Err(Error::BadSignature(format!(
                "{what}'s sign is not 64 hex digits"
            )))
        }
    };
    if bool::from(expected.ct_eq(&received[..])) {
        Ok(())
    } else {
        Err(Error::BadSignature(format!(
            "{what}'s sign does not match (check api_secret)"
        )))
    }
}

fn find<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Refuses forms that are too large or name a field twice (the signature would be ambiguous).
fn check_shape(fields: &[(String, String)], what: &str) -> Result<(), Error> {
    if fields.len() > MAX_FIELDS {
        return Err(Error::Malformed(format!(
            "{what} has {} fields; at most {MAX_FIELDS} are accepted",
            fields.len()
        )));
    }
    for (i, (k, v)) in fields.iter().enumerate() {
        if k.len() > MAX_KEY {
            return Err(Error::Malformed(format!(
                "{what} has a field name longer than {MAX_KEY} bytes"
            )));
        }
        if v.len() > MAX_VALUE {
            return Err(Error::Malformed(format!(
                "{what}'s field {} is longer than {MAX_VALUE} bytes",
                shown(k)
            )));
        }
        if fields[..i].iter().any(|(earlier, _)| earlier == k) {
            return Err(Error::Malformed(format!(
                "{what} carries the field {} more than once",
                shown(k)
            )));
        }
    }
    Ok(())
}

/// The required fields, or a `malformed` error naming every missing one.
fn require<'a, const N: usize>(
    fields: &'a [(String, String)],
    names: [&str; N],
    what: &str,
) -> Result<[&'a str; N], Error> {
    let values = names.map(|n| find(fields, n).filter(|v| !v.is_empty()));
    let missing: Vec<&str> = names
        .iter()
        .zip(values.iter())
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(Error::Malformed(format!(
            "{what} carries no {}",
            missing.join(", ")
        )));
    }
    Ok(values.map(|v| v.unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// Payment

pub struct Order {
    pub out_trade_no: String,
    pub total_fee: String,
    pub notify_url: String,
    pub return_url: String,
    pub request_id: String,
    /// An app payment (an SDK order string): TestPay has none.
    pub app: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// `{endpoint}/pay?…` (the fields as a query, URL-encoded).
    pub url: String,
    /// True: post `fields` to `action` as a form (`mode = post`).
    pub post: bool,
    pub action: String,
    pub fields: Pairs,
    pub total_fee: String,
    pub seller: String,
    pub request_id: String,
}

fn order_text(value: &str, field: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidOrder(FieldError::new(field, "is required")));
    }
    if value.chars().count() > MAX_TRADE_NO || value.chars().any(char::is_control) {
        return Err(Error::InvalidOrder(FieldError::new(
            field,
            format!("must be 1–{MAX_TRADE_NO} characters without control characters"),
        )));
    }
    Ok(())
}

fn order_url(value: &str, field: &str) -> Result<(), Error> {
    if value.len() > MAX_VALUE || !is_http_url(value) {
        return Err(Error::InvalidOrder(FieldError::new(
            field,
            "must be an absolute http or https URL",
        )));
    }
    Ok(())
}

/// Percent-encodes a query component (everything but unreserved characters).
fn url_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Starts a payment: the signed redirect to `{endpoint}/pay`. No provider call.
pub fn start_payment(settings: &[(String, String)], order: &Order) -> Result<Started, Error> {
    let settings = load_settings(settings)?;
    if order.app {
        return Err(Error::InvalidOrder(FieldError::new(
            "product",
            "testpay does not support app payments (only a redirect to its cashier)",
        )));
    }
    order_text(&order.out_trade_no, "out_trade_no")?;
    let cents = parse_amount(&order.total_fee)
        .map_err(|e| Error::InvalidOrder(FieldError::new("total_fee", e)))?;
    order_url(&order.notify_url, "notify_url")?;
    order_url(&order.return_url, "return_url")?;
    let amount = format_amount(cents);
    let mut fields: Pairs = vec![
        ("merchant_no".into(), settings.merchant_no.clone()),
        ("out_trade_no".into(), order.out_trade_no.clone()),
        ("amount".into(), amount.clone()),
        ("notify_url".into(), order.notify_url.clone()),
        ("return_url".into(), order.return_url.clone()),
    ];
    let signature = sign(&settings.api_secret, &fields)?;
    fields.push(("sign".into(), signature));
    let action = format!("{}/pay", settings.endpoint);
    let mut url = format!("{action}?");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        url_encode(k, &mut url);
        url.push('=');
        url_encode(v, &mut url);
    }
    Ok(Started {
        url,
        post: settings.mode == Mode::Post,
        action,
        fields,
        total_fee: amount,
        seller: settings.merchant_no,
        request_id: order.request_id.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Notifications and returns

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Waiting,
    Paid,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub out_trade_no: String,
    pub trade_no: String,
    /// TestPay's status as received: `PAID`, `WAITING` or `CLOSED`.
    pub status: String,
    pub event: Event,
    /// Normalised to two decimals.
    pub total_fee: String,
    pub merchant_no: String,
    pub notify_id: String,
    pub notify_time: Option<String>,
    pub paid: bool,
    /// The received fields but `sign`, in received order.
    pub fields: Pairs,
    pub reply: String,
}

fn same_merchant(settings: &Settings, received: &str, what: &str) -> Result<(), Error> {
    if received == settings.merchant_no {
        Ok(())
    } else {
        Err(Error::BadSignature(format!(
            "{what} is for merchant_no {}, not this merchant's {}",
            shown(received),
            settings.merchant_no
        )))
    }
}

/// Verifies a notification: shape, signature, required fields, merchant, status and amount.
pub fn verify_notification(
    settings: &[(String, String)],
    form: &[(String, String)],
) -> Result<Notice, Error> {
    const WHAT: &str = "the notification";
    let settings = load_settings(settings)?;
    check_shape(form, WHAT)?;
    verify_sign(&settings.api_secret, form, WHAT)?;
    let [merchant_no, out_trade_no, amount, status, notify_id] = require(
        form,
        [
            "merchant_no",
            "out_trade_no",
            "amount",
            "status",
            "notify_id",
        ],
        WHAT,
    )?;
    same_merchant(&settings, merchant_no, WHAT)?;
    let event = match status {
        "PAID" => Event::Paid,
        "WAITING" => Event::Waiting,
        "CLOSED" => Event::Closed,
        other => {
            return Err(Error::Malformed(format!(
                "{WHAT}'s status {:?} is not PAID, WAITING or CLOSED",
                shown(other)
            )))
        }
    };
    let cents = parse_amount(amount)
        .map_err(|e| Error::Malformed(format!("{WHAT}'s amount {:?} {e}", shown(amount))))?;
    Ok(Notice {
        out_trade_no: out_trade_no.to_owned(),
        trade_no: find(form, "trade_no").unwrap_or_default().to_owned(),
        status: status.to_owned(),
        event,
        total_fee: format_amount(cents),
        merchant_no: merchant_no.to_owned(),
        notify_id: notify_id.to_owned(),
        notify_time: find(form, "notify_time")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        paid: event == Event::Paid,
        fields: form.iter().filter(|(k, _)| k != "sign").cloned().collect(),
        reply: NOTIFY_ACK.to_owned(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    pub out_trade_no: String,
    pub trade_no: String,
    /// The return's `status` (may be empty): a hint only, the notification is authoritative.
    pub status: String,
    pub raw: Pairs,
}

/// Verifies the buyer's return: shape, signature, required fields and merchant.
pub fn verify_return(
    settings: &[(String, String)],
    query: &[(String, String)],
) -> Result<Return, Error> {
    const WHAT: &str = "the return";
    let settings = load_settings(settings)?;
    check_shape(query, WHAT)?;
    verify_sign(&settings.api_secret, query, WHAT)?;
    let [merchant_no, out_trade_no] = require(query, ["merchant_no", "out_trade_no"], WHAT)?;
    same_merchant(&settings, merchant_no, WHAT)?;
    Ok(Return {
        out_trade_no: out_trade_no.to_owned(),
        trade_no: find(query, "trade_no").unwrap_or_default().to_owned(),
        status: find(query, "status").unwrap_or_default().to_owned(),
        raw: query.to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// Matching a notification against the stored order

/// What the host's stored order says.
pub struct Expectation<'a> {
    pub out_trade_no: &'a str,
    pub total_fee: &'a str,
    /// Empty: not checked.
    pub seller: &'a str,
}

/// Compares order number (exactly), amount (as decimals: `1.5` equals `1.50`) and, when the order
/// names one, the seller (the merchant number). Returns every mismatch.
pub fn match_order(
    out_trade_no: &str,
    total_fee: &str,
    seller: Option<&str>,
    order: &Expectation<'_>,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if out_trade_no != order.out_trade_no {
        errors.push(FieldError::new(
            "out_trade_no",
            "the notification names another order",
        ));
    }
    match (parse_amount(total_fee), parse_amount(order.total_fee)) {
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(a), Ok(b)) => errors.push(FieldError::new(
            "total_fee",
            format!(
                "the notification says {}, the order {}",
                format_amount(a),
                format_amount(b)
            ),
        )),
        (Err(e), _) => errors.push(FieldError::new(
            "total_fee",
            format!("the notification's amount {e}"),
        )),
        (_, Err(e)) => errors.push(FieldError::new(
            "total_fee",
            format!("the order's amount {e}"),
        )),
    }
    if !order.seller.is_empty() && seller != Some(order.seller) {
        errors.push(FieldError::new(
            "seller",
            "the notification is for another merchant",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The error of every call TestPay has no counterpart for.
pub fn unsupported(what: &str) -> Error {
    Error::Malformed(format!("testpay does not support {what}"))
}

#[cfg(test)]
mod tests;
