//! The asynchronous notify and the browser return of the OpenAPI ([OPENAPI §5],
//! [OPENAPI §6]): verified with Alipay's key (V1 rule), then checked to belong to this app. No
//! confirmation call exists (`notify_verify` is mapi's): the signature is the proof.

use super::settings::OpenApiSettings;
use super::sign::{verify_notify, NotifyRejection};
use crate::amount::Amount;
use crate::model::{Notification, PluginError, VerifiedReturn};

/// The body that acknowledges a processed notify: the 7 bytes `success` ([OPENAPI §6.5]).
pub const ACK: &str = "success";

/// True when a notify or return is an OpenAPI one (it names an `app_id`; mapi messages never do).
pub fn is_openapi_message(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(k, _)| k == "app_id")
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn required<'a>(pairs: &'a [(String, String)], name: &str) -> Result<&'a str, PluginError> {
    field(pairs, name)
        .ok_or_else(|| PluginError::Malformed(format!("the notification has no {name}")))
}

/// The signature check and the app check shared by notifies and returns.
fn verified(
    settings: &OpenApiSettings,
    pairs: &[(String, String)],
    what: &str,
) -> Result<(), PluginError> {
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    verify_notify(&borrowed, &settings.alipay_key, settings.sign_type).map_err(|e| {
        PluginError::BadSignature(match e {
            NotifyRejection::Unsigned => format!("the {what} carries no sign"),
            NotifyRejection::SignTypeMismatch { received } => format!(
                "the {what} says sign_type {received:?} but the merchant's is {}",
                settings.sign_type.as_str()
            ),
            NotifyRejection::BadSignature => format!(
                "the {what}'s signature does not verify with the configured Alipay public key"
            ),
        })
    })?;
    // [OPENAPI §6.4] check 4: a notify signed by Alipay for another app of the same key holder is not ours.
    let app_id = required(pairs, "app_id")?;
    if app_id != settings.app_id {
        return Err(PluginError::BadSignature(format!(
            "the {what} is for app_id {app_id}, not this merchant's {}",
            settings.app_id
        )));
    }
    Ok(())
}

fn amount(pairs: &[(String, String)], name: &str) -> Result<Option<String>, PluginError> {
    match field(pairs, name) {
        None => Ok(None),
        Some(v) => Amount::parse(v)
            .map(|a| Some(a.to_string()))
            .map_err(|e| PluginError::Malformed(format!("{name} {v:?}: {e}"))),
    }
}

/// Verifies a notify ([OPENAPI §6.3]) and reads it ([OPENAPI §6.2]). A partial refund's notify (`TRADE_SUCCESS`
/// with `refund_fee`/`gmt_refund`/`out_biz_no`, [OPENAPI §6.6]) keeps those fields, so its event is a
/// refund, never a second payment.
pub fn verify_notification(
    settings: &OpenApiSettings,
    form: &[(String, String)],
) -> Result<Notification, PluginError> {
    verified(settings, form, "notification")?;
    let status = required(form, "trade_status")?;
    let total_fee = amount(form, "total_amount")?
        .ok_or_else(|| PluginError::Malformed("the notification has no total_amount".into()))?;
    // `refund_fee` is read for its shape only here; the event mapping reads it from `fields`.
    // Zero is "nothing refunded": Alipay's own sample payment notify carries `refund_fee=0.00`.
    // It is the trade's refunded total: never more than what was paid.
    if let Some(v) = field(form, "refund_fee") {
        let refunded = Amount::parse_or_zero(v)
            .map_err(|e| PluginError::Malformed(format!("refund_fee {v:?}: {e}")))?;
        if Amount::parse(&total_fee).is_ok_and(|total| refunded.is_some_and(|r| r > total)) {
            return Err(PluginError::Malformed(format!(
                "refund_fee {v} is more than the trade's total_amount {total_fee}"
            )));
        }
    }
    let text = |name: &str| field(form, name).map(str::to_owned);
    Ok(Notification {
        out_trade_no: required(form, "out_trade_no")?.to_owned(),
        trade_no: required(form, "trade_no")?.to_owned(),
        trade_status: status.to_owned(),
        total_fee,
        seller_email: text("seller_email"),
        seller_id: text("seller_id"),
        buyer_email: text("buyer_logon_id"),
        buyer_id: text("buyer_id").or_else(|| text("buyer_open_id")),
        notify_id: required(form, "notify_id")?.to_owned(),
        notify_time: text("notify_time"),
        gmt_create: text("gmt_create"),
        gmt_payment: text("gmt_payment"),
        gmt_close: text("gmt_close"),
        paid: matches!(status, "TRADE_SUCCESS" | "TRADE_FINISHED"),
        fields: form.iter().filter(|(k, _)| k != "sign").cloned().collect(),
        reply: ACK.into(),
    })
}

/// Verifies the browser's return ([OPENAPI §5]). It proves Alipay sent the buyer back for this order,
/// not that money arrived: `result` is `success` as for the legacy WAP return, and the host
/// waits for the notify (or queries).
pub fn verify_return(
    settings: &OpenApiSettings,
    query: &[(String, String)],
) -> Result<VerifiedReturn, PluginError> {
    verified(settings, query, "return")?;
    Ok(VerifiedReturn {
        out_trade_no: required(query, "out_trade_no")?.to_owned(),
        trade_no: field(query, "trade_no").unwrap_or_default().to_owned(),
        result: "success".into(),
        request_token: String::new(),
        raw: query.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TradeEvent;
    use crate::openapi::settings::{tests::settings_pairs, validate};
    use crate::openapi::testdata;

    fn form(rel: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(&testdata::read(rel))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn payment_notify() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let n = verify_notification(&s, &form("notify/trade_success.txt")).unwrap();
        assert_eq!(n.out_trade_no, "ECS20240520000123");
        assert_eq!(n.total_fee, "88.88");
        assert_eq!(n.seller_id.as_deref(), Some("2088000000000002"));
        assert_eq!(n.reply, "success");
        assert!(n.paid);
        assert_eq!(n.event(), TradeEvent::Paid);
        assert!(!n.fields.iter().any(|(k, _)| k == "sign"));
    }

    #[test]
    fn partial_refund_notify_is_a_refund_not_a_payment() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let n = verify_notification(&s, &form("notify/partial_refund.txt")).unwrap();
        assert_eq!(n.trade_status, "TRADE_SUCCESS");
        assert_eq!(n.event(), TradeEvent::PartiallyRefunded);
        assert!(n.refund_fee().is_some());
    }

    /// `form` with `edit` applied, signed again by the test Alipay key (as Alipay would sign it).
    fn resigned(
        form: &[(String, String)],
        edit: impl Fn(&mut Vec<(String, String)>),
    ) -> Vec<(String, String)> {
        use crate::openapi::sign::{notify_sign_content, sign, SignType};
        let mut f: Vec<(String, String)> =
            form.iter().filter(|(k, _)| k != "sign").cloned().collect();
        edit(&mut f);
        let key = crate::sign::parse_private_key(testdata::vectors().key("alipay_private_pkcs8"))
            .unwrap();
        let content = notify_sign_content(f.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
        let signature = sign(content.as_bytes(), &key, SignType::Rsa2).unwrap();
        f.push(("sign".into(), signature));
        f
    }

    /// A refunded total above the trade's total is not a refund report to believe.
    #[test]
    fn a_refund_fee_above_the_total_is_malformed() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let paid = form("notify/trade_success.txt");
        let f = resigned(&paid, |f| {
            f.push(("refund_fee".into(), "1000000.00".into()))
        });
        match verify_notification(&s, &f) {
            Err(PluginError::Malformed(m)) => {
                assert!(m.contains("more than the trade's total_amount"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A payment notify may carry `refund_fee=0.00` (Alipay's own sample payment notify does):
    /// zero is "nothing refunded", a payment; a refund fee that is not an amount is refused.
    #[test]
    fn zero_refund_fee_is_a_payment() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let paid = form("notify/trade_success.txt");
        for zero in ["0.00", "0"] {
            let f = resigned(&paid, |f| f.push(("refund_fee".into(), zero.into())));
            let n = verify_notification(&s, &f).unwrap();
            assert!(n.paid, "{zero}");
            assert_eq!(n.event(), TradeEvent::Paid, "{zero}");
            assert_eq!(n.refund_fee(), None, "{zero}");
            assert_eq!(n.refund(), None, "{zero}");
        }
        let f = resigned(&paid, |f| f.push(("refund_fee".into(), "-1.00".into())));
        match verify_notification(&s, &f) {
            Err(PluginError::Malformed(m)) => assert!(m.contains("refund_fee"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// A refund notify without `out_biz_no` ([OPENAPI §6.6] lists `refund_fee`, `gmt_refund` and
    /// `out_biz_no`; any of the first two with an amount is a refund): its event and its report
    /// agree, so the host records the cumulative refunded amount, never a status change alone.
    #[test]
    fn refund_notify_without_out_biz_no_reports_the_refund() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let f = resigned(&form("notify/partial_refund.txt"), |f| {
            f.retain(|(k, _)| k != "out_biz_no")
        });
        let n = verify_notification(&s, &f).unwrap();
        assert_eq!(n.event(), TradeEvent::PartiallyRefunded);
        let r = n.refund().expect("a refund report");
        assert_eq!(r.request_no, "");
        assert_eq!(r.refunded_total.as_deref(), Some("10.00"));
        assert!(r.succeeded);
    }

    #[test]
    fn another_app_or_a_forged_notify_is_refused() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let mut f = form("notify/trade_success.txt");
        for (k, v) in f.iter_mut() {
            if k == "total_amount" {
                *v = "0.01".into();
            }
        }
        assert!(matches!(
            verify_notification(&s, &f),
            Err(PluginError::BadSignature(_))
        ));
        let mut other = settings_pairs();
        other.retain(|(k, _)| k != "app_id");
        other.push(("app_id".into(), "2021000000000099".into()));
        let (s2, _) = validate(&other).unwrap();
        match verify_notification(&s2, &form("notify/trade_success.txt")) {
            Err(PluginError::BadSignature(m)) => assert!(m.contains("app_id"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn browser_return() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let v = testdata::vectors();
        let q: Vec<(String, String)> = form_urlencoded::parse(
            v.json["return_wap"]["query_string"]
                .as_str()
                .unwrap()
                .as_bytes(),
        )
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
        assert!(is_openapi_message(&q));
        let r = verify_return(&s, &q).unwrap();
        assert_eq!(r.out_trade_no, "ECS20240520000123");
        assert_eq!(r.result, "success");
    }
}
