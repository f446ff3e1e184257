//! The flows of Alipay's WAP, PC and app products and of `single_trade_query`, sans-IO: a flow
//! that needs Alipay returns the request to send ([`Step::Send`]) with a continuation, and its
//! `resume_*` function takes the answer. The embedder (payhost, or a native caller) sends every
//! request; this code performs no I/O.

use crate::amount::Amount;
use crate::mapi::{self, NotifyKind, OrderFields};
use crate::model::{
    AppResult, BillEntry, BillFile, BillLocation, ChannelList, FieldError, HttpMethod,
    Notification, OrderExpectation, PaymentRequest, PaymentStarted, PluginError, PluginInfo,
    Product, Redirect, RefundRequest, RefundState, RefundStatus, TradeClosed, TradeQuery,
    VerifiedReturn,
};
use crate::settings::{self, is_http_url, is_seller_account, Mode, Settings};
use crate::transformers::{self as wire, CreateFields};

use crate::flow::{self, Continuation};
pub use crate::flow::{HttpRequest, HttpResponse, Pending, SendFailure, Step};
use crate::openapi::connector as openapi;
use crate::openapi::settings::is_openapi;

fn send_failure(what: &str, e: SendFailure) -> PluginError {
    match e {
        SendFailure::Timeout(m) => PluginError::Timeout(format!("{what}: {m}")),
        SendFailure::Refused(m) => {
            PluginError::Transport(format!("{what}: the host refused the destination ({m})"))
        }
        SendFailure::Failed(m) => PluginError::Transport(format!("{what}: {m}")),
        SendFailure::TooLarge(m) => PluginError::Malformed(format!("{what}: {m}")),
    }
}

/// The provider's answer, or why there is none, checked for HTTP 200.
pub(crate) fn answered(
    what: &str,
    response: Result<HttpResponse, SendFailure>,
) -> Result<HttpResponse, PluginError> {
    let response = response.map_err(|e| send_failure(what, e))?;
    if response.status != 200 {
        return Err(PluginError::Transport(format!(
            "{what}: the provider answered HTTP {}",
            response.status
        )));
    }
    Ok(response)
}

/// The longest `out_trade_no` Alipay accepts.
pub const MAX_OUT_TRADE_NO: usize = 64;
pub const MAX_SUBJECT_CHARS: usize = 256;
/// `pay_expire` in minutes: at most 15 days.
pub const MAX_PAY_EXPIRE_MINUTES: u32 = 21_600;

pub fn describe() -> PluginInfo {
    PluginInfo {
        id: "alipay-wap".into(),
        name: "支付宝手机网站支付 (Alipay WAP pay)".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        provider: "alipay".into(),
        settings: settings::schema(),
        notify_ack: wire::NOTIFY_ACK.into(),
        notify_retry: wire::NOTIFY_RETRY.into(),
    }
}

/// Validates settings; returns the normalised pairs to store, or every bad field.
pub fn validate_settings(
    pairs: &[(String, String)],
) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    validate_settings_of_family(pairs).map_err(|mut errors| {
        // One refusal per field and reason: a certificate is read by two checks, and a caller
        // shown the same line twice looks for two mistakes.
        // A set: thousands of unknown keys are refused each in one line, not in quadratic time.
        let mut seen = std::collections::BTreeSet::new();
        errors.retain(|e| seen.insert((e.field.clone(), e.reason.clone())));
        errors
    })
}

fn validate_settings_of_family(
    pairs: &[(String, String)],
) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    // A setting given twice is refused by both families' validation (`settings::repeated`),
    // together with every other bad field.
    if is_openapi(pairs) {
        return openapi::validate_settings(pairs);
    }
    let (settings, normalised) = settings::validate(pairs)?;
    // The full key check (one private operation) runs here, not on every protocol call.
    if let settings::Signer::Rsa { private_key, .. } = &settings.signer {
        private_key
            .check()
            .map_err(|e| vec![FieldError::new("private_key", e.to_string())])?;
    }
    Ok(normalised)
}

pub fn load_settings(pairs: &[(String, String)]) -> Result<Settings, PluginError> {
    settings::validate(pairs)
        .map(|(s, _)| s)
        .map_err(PluginError::InvalidSettings)
}

fn invalid(field: &str, reason: impl Into<String>) -> PluginError {
    PluginError::InvalidOrder(FieldError::new(field, reason))
}

fn is_printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The buyer's id at the shop (`out_user`), as `start-payment` and `list-channels` take it.
fn check_out_user(u: &str) -> Result<(), PluginError> {
    if u.is_empty() || u.chars().count() > 64 || !is_printable(u) {
        return Err(invalid(
            "out_user",
            "must be 1 to 64 characters with no control characters",
        ));
    }
    Ok(())
}

/// An order number both API families accept: 1 to 64 letters, digits, `_` or `-`.
pub(crate) fn check_out_trade_no(out_trade_no: &str) -> Result<&str, PluginError> {
    if out_trade_no.is_empty()
        || out_trade_no.len() > MAX_OUT_TRADE_NO
        || !out_trade_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "out_trade_no",
            "must be 1 to 64 characters of letters, digits, '_' or '-'",
        ));
    }
    Ok(out_trade_no)
}

/// An order title, trimmed: 1 to 256 characters, none of them a control character.
pub(crate) fn check_subject(subject: &str) -> Result<&str, PluginError> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(invalid("subject", "must not be empty"));
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS || !is_printable(subject) {
        return Err(invalid(
            "subject",
            "must be at most 256 characters with no control characters",
        ));
    }
    Ok(subject)
}

/// The order's fields both API families read the same way: `request_id` (the WIT's rule),
/// `out_user` and `cashier_code` (refused when bad, never silently dropped).
pub fn check_order_extras(order: &PaymentRequest) -> Result<(), PluginError> {
    let req_id = order.request_id.as_str();
    if req_id.is_empty()
        || req_id.len() > 32
        || !req_id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return Err(invalid(
            "request_id",
            "must be 1 to 32 characters of 0-9 and a-z",
        ));
    }
    if let Some(u) = order.out_user.as_deref() {
        check_out_user(u)?;
    }
    if let Some(c) = order.cashier_code.as_deref() {
        if c.is_empty()
            || c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(invalid(
                "cashier_code",
                "must be a cashier code such as DEBITCARD_ICBC (A-Z, 0-9, '_')",
            ));
        }
    }
    Ok(())
}

/// Checks an order and resolves its seller; returns the `req_data` fields.
pub fn validate_order<'a>(
    settings: &'a Settings,
    order: &'a PaymentRequest,
) -> Result<CreateFields<'a>, PluginError> {
    let out_trade_no = check_out_trade_no(&order.out_trade_no)?;
    let subject = check_subject(&order.subject)?;
    let total_fee =
        Amount::parse(&order.total_fee).map_err(|e| invalid("total_fee", e.to_string()))?;
    let seller = resolve_seller(settings, order.seller.as_deref())?;
    for (field, url) in [
        ("return_url", &order.return_url),
        ("notify_url", &order.notify_url),
    ] {
        // The app SDK has no use for a return page: an app order may leave it out.
        if field == "return_url" && order.product == Product::App && url.is_empty() {
            continue;
        }
        if let Some(rule) = settings::url_problem(url, false) {
            return Err(invalid(field, rule));
        }
    }
    if let Some(m) = order.merchant_url.as_deref() {
        if !is_http_url(m) {
            return Err(invalid(
                "merchant_url",
                "must be an absolute http or https URL",
            ));
        }
    }
    if let Some(p) = order.pay_expire {
        if p == 0 || p > MAX_PAY_EXPIRE_MINUTES {
            return Err(invalid("pay_expire", "must be between 1 and 21600 minutes"));
        }
    }
    check_order_extras(order)?;
    Ok(CreateFields {
        notify_url: &order.notify_url,
        call_back_url: &order.return_url,
        seller_account_name: seller,
        out_trade_no,
        subject,
        total_fee,
        merchant_url: order.merchant_url.as_deref(),
        pay_expire: order.pay_expire,
        out_user: order.out_user.as_deref(),
        cashier_code: order.cashier_code.as_deref(),
    })
}

/// B2C: the configured account (an order may repeat it, not change it). C2C: the order's seller,
/// or the configured default.
fn resolve_seller<'a>(
    settings: &'a Settings,
    requested: Option<&'a str>,
) -> Result<&'a str, PluginError> {
    let requested = requested.map(str::trim).filter(|s| !s.is_empty());
    match settings.mode {
        Mode::B2c => {
            let configured = settings
                .seller_email
                .as_deref()
                .unwrap_or(&settings.partner);
            match requested {
                Some(r) if !r.eq_ignore_ascii_case(configured) => Err(invalid(
                    "seller_email",
                    "this merchant is B2C: money always goes to the configured seller account (leave seller_email out, or switch the merchant to c2c)",
                )),
                _ => Ok(configured),
            }
        }
        Mode::C2c => {
            let seller = requested
                .or(settings.seller_email.as_deref())
                .ok_or_else(|| {
                    invalid(
                        "seller_email",
                        "is required for a C2C merchant without a default seller",
                    )
                })?;
            if !is_seller_account(seller) {
                return Err(invalid(
                    "seller_email",
                    "must be an email address, an 11-digit mobile number or a 2088… user id",
                ));
            }
            Ok(seller)
        }
    }
}

/// Starts a payment with the order's product:
/// * `wap`: checks the order and returns the create call (`alipay.wap.trade.create.direct`) to
///   send; [`resume_payment`] takes its answer;
/// * `pc`: returns the signed `create_direct_pay_by_user` redirect at once (no provider call);
/// * `app`: returns the RSA-signed `mobile.securitypay.pay` order string at once
///   (`order_string`; the redirect is empty). An MD5 merchant is refused (`sign_type`).
///
/// `cashier_code`, `out_user` and `merchant_url` are WAP-only and ignored by `pc` and `app`.
pub fn start_payment(
    settings_pairs: &[(String, String)],
    order: &PaymentRequest,
) -> Result<Step<PaymentStarted>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::start_payment(settings_pairs, order);
    }
    let settings = load_settings(settings_pairs)?;
    let fields = validate_order(&settings, order)?;
    let req_id = order.request_id.as_str();
    if order.product != Product::Wap {
        let f = OrderFields {
            out_trade_no: fields.out_trade_no,
            subject: fields.subject,
            total_fee: fields.total_fee,
            seller: fields.seller_account_name,
            notify_url: fields.notify_url,
            return_url: fields.call_back_url,
            pay_expire: fields.pay_expire,
        };
        let (redirect, order_string) = match order.product {
            Product::Pc => (mapi::pc_redirect(&settings, &f)?, None),
            _ => (
                Redirect {
                    url: String::new(),
                    method: HttpMethod::Get,
                    action: String::new(),
                    fields: Vec::new(),
                },
                Some(mapi::app_order(&settings, &f)?),
            ),
        };
        return Ok(Step::Done(PaymentStarted {
            redirect,
            token: String::new(),
            request_id: req_id.to_owned(),
            total_fee: f.total_fee.to_string(),
            seller: f.seller.to_owned(),
            order_string,
        }));
    }
    let req_data = wire::create_req_data(&fields);
    let params = wire::signed_gateway_params(&settings, wire::SERVICE_CREATE, req_id, &req_data)?;
    Ok(Step::Send(Pending {
        request: HttpRequest {
            method: HttpMethod::Post,
            url: settings.gateway_url.clone(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: wire::form_encode(&params).into_bytes(),
        },
        continuation: Continuation::Payment {
            request_id: req_id.to_owned(),
            total_fee: fields.total_fee.to_string(),
            seller: fields.seller_account_name.to_owned(),
        }
        .encode(),
    }))
}

/// Continues [`start_payment`] with the create call's answer: the token, then the signed cashier
/// redirect (`alipay.wap.auth.authAndExecute`).
pub fn resume_payment(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<PaymentStarted>, PluginError> {
    let settings = load_settings(settings_pairs)?;
    let Continuation::Payment {
        request_id,
        total_fee,
        seller,
    } = Continuation::decode(continuation)?
    else {
        return Err(flow::foreign_continuation("resume-payment"));
    };
    let response = answered("create call to the gateway", response)?;
    // Alipay's answer names the request it answers ([WAP §3.2]): another payment's answer (a
    // host's mix-up) would carry that payment's token, and so its amount, to this buyer.
    if let Some(answered) = wire::create_response_req_id(&response.body) {
        if answered != request_id {
            return Err(PluginError::Malformed(format!(
                "the create call's answer is for req_id {answered:?}, not this payment's {request_id:?}: it answers another payment"
            )));
        }
    }
    let token = wire::parse_create_response(&settings, &response.body)?;
    let redirect = wire::auth_redirect(&settings, &request_id, &token)?;
    Ok(Step::Done(PaymentStarted {
        redirect,
        token,
        request_id,
        total_fee,
        seller,
        order_string: None,
    }))
}

/// Alipay never sends a field twice in a notification or a return, so a repeated one is refused
/// before anything reads it. The signature rules leave empty values out ([WAP §5.1], [EXTRA §1.4.2]): an
/// empty copy put in front of a signed field would keep the signature valid and be read instead
/// of the signed value (a refund report turned into a plain payment, say).
fn refuse_repeated_fields(what: &str, pairs: &[(String, String)]) -> Result<(), PluginError> {
    // Sorted, not compared pairwise: a hostile form of thousands of fields stays cheap.
    match settings::repeated_keys(pairs).first() {
        Some(k) => Err(PluginError::Malformed(format!(
            "{what} carries the field {k:?} more than once; Alipay sends each field once"
        ))),
        None => Ok(()),
    }
}

/// Verifies the buyer's synchronous return. It proves who signed it, not that money arrived:
/// only a confirmed notification marks an order paid. A WAP call-back (`result`,
/// `request_token`) and a PC return (`is_success`, `exterface`, `notify_*`, `trade_status`; its
/// `result` is then the `trade_status`) are told apart by their fields; both use the sorted rule.
pub fn verify_return(
    settings_pairs: &[(String, String)],
    query: &[(String, String)],
) -> Result<VerifiedReturn, PluginError> {
    refuse_repeated_fields("the return", query)?;
    if is_openapi(settings_pairs) {
        return openapi::verify_return(settings_pairs, query);
    }
    let settings = load_settings(settings_pairs)?;
    if mapi::is_pc_return(query) {
        mapi::verify_pc_return(&settings, query)
    } else {
        wire::verify_return(&settings, query)
    }
}

/// Verifies an asynchronous notification of any product, told apart by its fields
/// ([EXTRA §1.4.3], [EXTRA §2.4]):
/// * `notify_data` + `sec_id`: WAP (fixed-order signature);
/// * `notify_data` alone: app generation A (RSA over `notify_data=<xml>` with Alipay's app key).
///   It has no `notify_id` and Alipay offers no `notify_verify` for it: the step is `done` at once,
///   with the synthetic `notify_id` `app:<trade_no>:<trade_status>`;
/// * anything else: a flat notify (PC, app generation B), sorted rule, MD5 or RSA (mapi key).
///
/// Every kind but generation A then returns the `notify_verify` request; only a signature that
/// matches **and** the answer `true` ([`resume_notification`]) make it verified.
pub fn verify_notification(
    settings_pairs: &[(String, String)],
    form: &[(String, String)],
) -> Result<Step<Notification>, PluginError> {
    refuse_repeated_fields("the notification", form)?;
    if is_openapi(settings_pairs) {
        return openapi::verify_notification(settings_pairs, form);
    }
    let settings = load_settings(settings_pairs)?;
    let signed = match mapi::notify_kind(form) {
        NotifyKind::Wap => wire::verify_notify_signature(&settings, form)?.notification,
        NotifyKind::AppA => return mapi::verify_app_a_notify(&settings, form).map(Step::Done),
        NotifyKind::Flat if mapi::is_batch_refund_notify(form) => {
            mapi::verify_batch_refund_notify(&settings, form)?
        }
        NotifyKind::Flat => mapi::verify_flat_notify(&settings, form)?,
    };
    Ok(Step::Send(Pending {
        request: HttpRequest {
            method: HttpMethod::Get,
            url: wire::notify_verify_url(&settings, &signed.notify_id),
            headers: Vec::new(),
            body: Vec::new(),
        },
        continuation: Continuation::Notification(Box::new(signed)).encode(),
    }))
}

/// Continues [`verify_notification`] with `notify_verify`'s answer.
pub fn resume_notification(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<Notification>, PluginError> {
    // The settings were validated by `verify_notification` in the same request; reading the
    // answer needs none of them (parsing them again would cost as much as the step itself).
    let _ = settings_pairs;
    let Continuation::Notification(signed) = Continuation::decode(continuation)? else {
        return Err(flow::foreign_continuation("resume-notification"));
    };
    let signed = *signed;
    let response = answered("notify_verify", response)?;
    if !wire::notify_verify_confirms(&response.body) {
        let answer: String = String::from_utf8_lossy(&response.body[..response.body.len().min(40)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        return Err(PluginError::NotifyNotConfirmed(format!(
            "notify_verify answered {answer:?} for notify_id {}",
            signed.notify_id
        )));
    }
    Ok(Step::Done(signed))
}

/// Checks a verified notification against the order it names: same order, same amount, same
/// seller (by account or by 2088… id). Returns every mismatch.
pub fn match_order(
    notification: &Notification,
    order: &OrderExpectation,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if notification.out_trade_no != order.out_trade_no {
        errors.push(FieldError::new(
            "out_trade_no",
            "the notification names another order",
        ));
    }
    match (
        Amount::parse(&notification.total_fee),
        Amount::parse(&order.total_fee),
    ) {
        (Ok(a), Ok(b)) if a == b => {}
        // The caller's own expectation is not an amount: said as such, not as a difference.
        (_, Err(e)) => errors.push(FieldError::new(
            "total_fee",
            format!(
                "the order's expected total_fee {:?} is not an amount ({e}): pass it as yuan with at most two decimals, e.g. 10.00",
                order.total_fee
            ),
        )),
        _ => errors.push(FieldError::new(
            "total_fee",
            format!(
                "the notification says {} but the order is {}",
                notification.total_fee, order.total_fee
            ),
        )),
    }
    let expected = order.seller.trim();
    // An OpenAPI trade query names no seller: the answer is Alipay's, signed, about this app's
    // own order, whose seller the app signed into the trade ([OPENAPI §7.4]).
    let queried_without_seller = notification.notify_id.starts_with("query:")
        && notification.seller_email.is_none()
        && notification.seller_id.is_none();
    let seller_matches = queried_without_seller
        || notification
            .seller_email
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(expected))
        || notification.seller_id.as_deref() == Some(expected);
    if !seller_matches {
        errors.push(FieldError::new(
            "seller_email",
            format!(
                "the notification pays {} / {} but the order's seller is {expected}",
                notification.seller_email.as_deref().unwrap_or("-"),
                notification.seller_id.as_deref().unwrap_or("-"),
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Lists the pay channels the merchant may pre-select (`mobile.merchant.paychannel`): returns
/// the query to send; [`resume_channels`] reads its answer.
pub fn list_channels(
    settings_pairs: &[(String, String)],
    out_user: Option<&str>,
) -> Result<Step<ChannelList>, PluginError> {
    if is_openapi(settings_pairs) {
        return Err(openapi::not_offered("the pay-channel list"));
    }
    let settings = load_settings(settings_pairs)?;
    // An empty `out_user` means none, as before; anything else follows start-payment's rule.
    if let Some(u) = out_user.filter(|u| !u.is_empty()) {
        check_out_user(u)?;
    }
    Ok(Step::Send(Pending {
        request: HttpRequest {
            method: HttpMethod::Get,
            url: wire::paychannel_url(&settings, out_user)?,
            headers: Vec::new(),
            body: Vec::new(),
        },
        continuation: Continuation::Channels.encode(),
    }))
}

/// Continues [`list_channels`] with the query's answer.
pub fn resume_channels(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<ChannelList>, PluginError> {
    let settings = load_settings(settings_pairs)?;
    let Continuation::Channels = Continuation::decode(continuation)? else {
        return Err(flow::foreign_continuation("resume-channels"));
    };
    let response = answered("pay-channel query", response)?;
    wire::parse_paychannel_response(&settings, &response.body).map(Step::Done)
}

/// Asks `single_trade_query` about one order (lost-notify recovery, [EXTRA §3.4]): returns the
/// signed GET to send; [`resume_query`] reads its answer.
pub fn query_trade(
    settings_pairs: &[(String, String)],
    out_trade_no: &str,
) -> Result<Step<TradeQuery>, PluginError> {
    // The same rule as the payment's own (an order this host made), before anything is signed.
    check_out_trade_no(out_trade_no)?;
    if is_openapi(settings_pairs) {
        return openapi::query_trade(settings_pairs, out_trade_no);
    }
    let settings = load_settings(settings_pairs)?;
    Ok(Step::Send(Pending {
        request: HttpRequest {
            method: HttpMethod::Get,
            url: mapi::query_url(&settings, "out_trade_no", out_trade_no)?,
            headers: Vec::new(),
            body: Vec::new(),
        },
        continuation: Continuation::Query {
            out_trade_no: out_trade_no.to_owned(),
        }
        .encode(),
    }))
}

/// Continues [`query_trade`] with the answer: `found: false` for `TRADE_NOT_EXIST`, a gateway
/// error for any other error code, else the trade (and its notification view).
pub fn resume_query(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<TradeQuery>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::resume_query(settings_pairs, continuation, response);
    }
    let settings = load_settings(settings_pairs)?;
    let Continuation::Query { out_trade_no } = Continuation::decode(continuation)? else {
        return Err(flow::foreign_continuation("resume-query"));
    };
    let response = answered("single_trade_query", response)?;
    mapi::parse_query_response(&settings, &out_trade_no, &response.body).map(Step::Done)
}

/// Verifies the app SDK's synchronous result string (`resultStatus={…};memo={…};result={…}`),
/// signed by Alipay. A verified result is only a hint: the notify or the query is authoritative.
pub fn verify_app_result(
    settings_pairs: &[(String, String)],
    result: &str,
) -> Result<AppResult, PluginError> {
    if is_openapi(settings_pairs) {
        return Err(openapi::not_offered(
            "the app SDK result string of mobile.securitypay.pay",
        ));
    }
    let settings = load_settings(settings_pairs)?;
    mapi::verify_app_result(&settings, result)
}

// ---------------------------------------------------------------------------------------------
// Refunds, closing a trade, the day's bill (contract 0.4.0)

/// The checked parts of a refund request both families share.
pub(crate) struct CheckedRefund<'a> {
    pub out_trade_no: &'a str,
    pub amount: Amount,
    pub total_fee: Amount,
    pub reason: &'a str,
}

/// Checks a refund: the order number, an amount of at most what the buyer paid, a printable
/// reason of at most 256 characters.
pub(crate) fn check_refund(r: &RefundRequest) -> Result<CheckedRefund<'_>, PluginError> {
    let out_trade_no = check_out_trade_no(&r.out_trade_no)?;
    let amount = Amount::parse(&r.amount).map_err(|e| invalid("amount", e.to_string()))?;
    let total_fee = Amount::parse(&r.total_fee).map_err(|e| invalid("total_fee", e.to_string()))?;
    if amount > total_fee {
        return Err(invalid(
            "amount",
            format!("must be at most the amount paid ({total_fee})"),
        ));
    }
    let reason = r.reason.trim();
    if reason.chars().count() > MAX_SUBJECT_CHARS || !is_printable(reason) {
        return Err(invalid(
            "reason",
            "must be at most 256 characters with no control characters",
        ));
    }
    Ok(CheckedRefund {
        out_trade_no,
        amount,
        total_fee,
        reason,
    })
}

/// The shape `YYYY-MM-DD HH:MM:SS` (digits and separators only).
fn is_beijing_time_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// True when year, month and day (digits) name a day of the Gregorian calendar (no 30 February,
/// 29 February only in a leap year). No crate the plugin depends on offers this for a plain date
/// (`x509-cert`'s `der::DateTime` is ASN.1 time from 1970 on), so it is written here.
pub(crate) fn is_calendar_day(year: &str, month: &str, day: &str) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (
        year.parse::<u32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// Checks a refund's `request_time` (the legacy refund's `refund_date`,
/// [`mapi::RefundFields`]): the shape `YYYY-MM-DD HH:MM:SS`, then a real date and time (month
/// 01–12, a day the month has, hour 00–23, minute and second 00–59; no leap second).
fn check_request_time(s: &str) -> Result<(), PluginError> {
    if !is_beijing_time_shape(s) {
        return Err(invalid(
            "request_time",
            "must be Beijing time YYYY-MM-DD HH:MM:SS",
        ));
    }
    let in_range = |at: usize, max: u32| s[at..at + 2].parse::<u32>().is_ok_and(|n| n <= max);
    if !is_calendar_day(&s[..4], &s[5..7], &s[8..10])
        || !in_range(11, 23)
        || !in_range(14, 59)
        || !in_range(17, 59)
    {
        return Err(invalid(
            "request_time",
            format!(
                "must be a real Beijing date and time YYYY-MM-DD HH:MM:SS (month 01-12, a day the month has, 29 February only in a leap year, hour 00-23, minute and second 00-59); {s} is not"
            ),
        ));
    }
    Ok(())
}

/// Starts a refund:
/// * legacy (`api = mapi`): `done` at once with `confirm`, the signed redirect to
///   `refund_fastpay_by_platform_pwd` where the seller enters the payment password; `batch_no` is
///   the request number, one refund (`batch_num=1`, `detail_data=trade_no^amount^reason`). The
///   result arrives as a batch notify at `notify_url` ([`verify_notification`]: a notification
///   with `refund`). Status pending;
/// * open platform: `alipay.trade.refund` to send; [`resume_refund`] reads the answer.
pub fn start_refund(
    settings_pairs: &[(String, String)],
    refund: &RefundRequest,
) -> Result<Step<RefundState>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::start_refund(settings_pairs, refund);
    }
    let settings = load_settings(settings_pairs)?;
    let checked = check_refund(refund)?;
    if !mapi::is_batch_no(&refund.request_no) {
        return Err(invalid(
            "request_no",
            "must be the Beijing date YYYYMMDD followed by 3 to 24 digits (Alipay's batch_no)",
        ));
    }
    let trade_no = refund.trade_no.trim();
    if trade_no.is_empty() || trade_no.len() > 64 || !trade_no.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "trade_no",
            "must be Alipay's trade number (digits): a legacy refund names the trade by it",
        ));
    }
    check_request_time(&refund.request_time)?;
    if let Some(rule) = settings::url_problem(&refund.notify_url, false) {
        return Err(invalid("notify_url", rule));
    }
    let redirect = mapi::refund_redirect(
        &settings,
        &mapi::RefundFields {
            batch_no: &refund.request_no,
            refund_date: &refund.request_time,
            trade_no,
            amount: checked.amount,
            reason: checked.reason,
            notify_url: &refund.notify_url,
        },
    )?;
    Ok(Step::Done(RefundState {
        request_no: refund.request_no.clone(),
        status: RefundStatus::Pending,
        confirm: Some(redirect),
        refunded_total: None,
        fund_change: false,
        detail: "the seller confirms the refund on Alipay's page with the payment password; the result comes as a notification".into(),
    }))
}

/// Asks where a refund stands: `alipay.trade.fastpay.refund.query` (open platform). The legacy
/// API has no refund query (its result is the batch notify): `invalid-order` naming `request_no`.
pub fn query_refund(
    settings_pairs: &[(String, String)],
    out_trade_no: &str,
    request_no: &str,
) -> Result<Step<RefundState>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::query_refund(settings_pairs, out_trade_no, request_no);
    }
    load_settings(settings_pairs)?;
    Err(invalid(
        "request_no",
        "the legacy API (api = mapi) has no refund query: the seller-confirmed refund reports its result as a notification",
    ))
}

/// Continues [`start_refund`] or [`query_refund`] (open platform only).
pub fn resume_refund(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<RefundState>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::resume_refund(settings_pairs, continuation, response);
    }
    Err(flow::foreign_continuation("resume-refund"))
}

/// Closes an unpaid trade: `alipay.trade.close` (open platform). The legacy products have no
/// close call here: `done` with `at_provider: false`, the host closes the order locally.
pub fn close_trade(
    settings_pairs: &[(String, String)],
    out_trade_no: &str,
) -> Result<Step<TradeClosed>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::close_trade(settings_pairs, out_trade_no);
    }
    load_settings(settings_pairs)?;
    check_out_trade_no(out_trade_no)?;
    Ok(Step::Done(TradeClosed {
        at_provider: false,
        trade_no: String::new(),
        detail: "the legacy API (api = mapi) has no close call for this product: close the order locally; Alipay does not know, and the buyer can still pay until the order's pay_expire / it_b_pay runs out (if it had one), so treat a later paid notification as one to review".into(),
    }))
}

/// Continues [`close_trade`] (open platform only).
pub fn resume_close(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<TradeClosed>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::resume_close(settings_pairs, continuation, response);
    }
    Err(flow::foreign_continuation("resume-close"))
}

/// Where the trade bill of `date` (`YYYY-MM-DD`) can be downloaded (open platform). The legacy
/// API has no bill call here: `invalid-settings` naming `api`.
pub fn locate_bill(
    settings_pairs: &[(String, String)],
    date: &str,
) -> Result<Step<BillLocation>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::locate_bill(settings_pairs, date);
    }
    load_settings(settings_pairs)?;
    Err(PluginError::InvalidSettings(vec![FieldError::new(
        "api",
        "bills for reconciliation need the open platform (api = openapi); the legacy API has none here",
    )]))
}

/// Continues [`locate_bill`] (open platform only).
pub fn resume_bill(
    settings_pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<BillLocation>, PluginError> {
    if is_openapi(settings_pairs) {
        return openapi::resume_bill(settings_pairs, continuation, response);
    }
    Err(flow::foreign_continuation("resume-bill"))
}

/// Reads a downloaded bill's files ([`crate::bill`]).
pub fn parse_bill(files: &[BillFile]) -> Result<Vec<BillEntry>, PluginError> {
    crate::bill::parse(files)
}
