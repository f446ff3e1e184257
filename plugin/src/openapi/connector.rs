//! The plugin's flows for an OpenAPI merchant (`api = openapi`), called by [`crate::connector`]
//! when the settings choose this family. Pay and notify need no provider call (the signature
//! is the proof; there is no `notify_verify`); the trade query is one signed server call.

use super::settings::{self, OpenApiSettings};
use super::{notify, pay, query, refund};
use crate::amount::Amount;
use crate::flow::{self, Continuation, HttpResponse, Pending, SendFailure, Step};
use crate::model::{
    BillLocation, FieldError, Notification, PaymentRequest, PaymentStarted, PluginError,
    RefundRequest, RefundState, TradeClosed, TradeQuery, VerifiedReturn,
};

/// The wall clock in Unix seconds (`wasi:clocks` in the component): OpenAPI requests carry a
/// `timestamp` the gateway checks.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn load(pairs: &[(String, String)]) -> Result<OpenApiSettings, PluginError> {
    settings::validate(pairs)
        .map(|(s, _)| s)
        .map_err(PluginError::InvalidSettings)
}

pub fn validate_settings(
    pairs: &[(String, String)],
) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    let (settings, normalised) = settings::validate(pairs)?;
    // The full key check (one private operation) runs here, not on every protocol call.
    settings
        .private_key
        .check()
        .map_err(|e| vec![FieldError::new("app_private_key", e.to_string())])?;
    Ok(normalised)
}

pub fn start_payment(
    pairs: &[(String, String)],
    order: &PaymentRequest,
) -> Result<Step<PaymentStarted>, PluginError> {
    pay::start(&load(pairs)?, order, now()).map(Step::Done)
}

pub fn verify_return(
    pairs: &[(String, String)],
    query: &[(String, String)],
) -> Result<VerifiedReturn, PluginError> {
    notify::verify_return(&load(pairs)?, query)
}

pub fn verify_notification(
    pairs: &[(String, String)],
    form: &[(String, String)],
) -> Result<Step<Notification>, PluginError> {
    notify::verify_notification(&load(pairs)?, form).map(Step::Done)
}

pub fn query_trade(
    pairs: &[(String, String)],
    out_trade_no: &str,
) -> Result<Step<TradeQuery>, PluginError> {
    let request = query::query_request(&load(pairs)?, out_trade_no, now())?;
    Ok(Step::Send(Pending {
        request,
        continuation: Continuation::Query {
            out_trade_no: out_trade_no.to_owned(),
        }
        .encode(),
    }))
}

pub fn resume_query(
    pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<TradeQuery>, PluginError> {
    let settings = load(pairs)?;
    let Continuation::Query { out_trade_no } = Continuation::decode(continuation)? else {
        return Err(flow::foreign_continuation("resume-query"));
    };
    let response = crate::connector::answered(query::QUERY, response)?;
    query::read_query(&settings, &out_trade_no, &response.body).map(Step::Done)
}

/// `out_request_no`: 1 to 64 letters, digits or `_` (the host makes digits).
fn check_request_no(request_no: &str) -> Result<&str, PluginError> {
    if request_no.is_empty()
        || request_no.len() > 64
        || !request_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(PluginError::InvalidOrder(FieldError::new(
            "request_no",
            "must be 1 to 64 letters, digits or '_' (out_request_no)",
        )));
    }
    Ok(request_no)
}

pub fn start_refund(
    pairs: &[(String, String)],
    r: &RefundRequest,
) -> Result<Step<RefundState>, PluginError> {
    let settings = load(pairs)?;
    let checked = crate::connector::check_refund(r)?;
    check_request_no(&r.request_no)?;
    let request = refund::refund_request(&settings, r, checked.amount, now())?;
    Ok(Step::Send(Pending {
        request,
        continuation: Continuation::Refund {
            out_trade_no: checked.out_trade_no.to_owned(),
            request_no: r.request_no.clone(),
            query: false,
            total_fee: checked.total_fee.to_string(),
            amount: checked.amount.to_string(),
        }
        .encode(),
    }))
}

pub fn query_refund(
    pairs: &[(String, String)],
    out_trade_no: &str,
    request_no: &str,
) -> Result<Step<RefundState>, PluginError> {
    let settings = load(pairs)?;
    crate::connector::check_out_trade_no(out_trade_no)?;
    check_request_no(request_no)?;
    let request = refund::refund_query_request(&settings, out_trade_no, request_no, now())?;
    Ok(Step::Send(Pending {
        request,
        continuation: Continuation::Refund {
            out_trade_no: out_trade_no.to_owned(),
            request_no: request_no.to_owned(),
            query: true,
            total_fee: String::new(),
            amount: String::new(),
        }
        .encode(),
    }))
}

pub fn resume_refund(
    pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<RefundState>, PluginError> {
    let settings = load(pairs)?;
    let Continuation::Refund {
        out_trade_no,
        request_no,
        query,
        total_fee,
        amount,
    } = Continuation::decode(continuation)?
    else {
        return Err(flow::foreign_continuation("resume-refund"));
    };
    if query {
        let response = crate::connector::answered(refund::REFUND_QUERY, response)?;
        refund::read_refund_query(&settings, &out_trade_no, &request_no, &response.body)
    } else {
        let response = crate::connector::answered(refund::REFUND, response)?;
        let total = Amount::parse(&total_fee).ok();
        let this = Amount::parse(&amount).ok();
        refund::read_refund(
            &settings,
            &out_trade_no,
            &request_no,
            total,
            this,
            &response.body,
        )
    }
    .map(Step::Done)
}

pub fn close_trade(
    pairs: &[(String, String)],
    out_trade_no: &str,
) -> Result<Step<TradeClosed>, PluginError> {
    let settings = load(pairs)?;
    crate::connector::check_out_trade_no(out_trade_no)?;
    Ok(Step::Send(Pending {
        request: refund::close_request(&settings, out_trade_no, now())?,
        continuation: Continuation::Close {
            out_trade_no: out_trade_no.to_owned(),
        }
        .encode(),
    }))
}

pub fn resume_close(
    pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<TradeClosed>, PluginError> {
    let settings = load(pairs)?;
    let Continuation::Close { out_trade_no } = Continuation::decode(continuation)? else {
        return Err(flow::foreign_continuation("resume-close"));
    };
    let response = crate::connector::answered(refund::CLOSE, response)?;
    refund::read_close(&settings, &out_trade_no, &response.body).map(Step::Done)
}

/// `YYYY-MM-DD` (the day's bill; [OPENAPI §7.8]).
fn check_bill_date(date: &str) -> Result<&str, PluginError> {
    let b = date.as_bytes();
    let ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
        && crate::connector::is_calendar_day(&date[..4], &date[5..7], &date[8..10]);
    if ok {
        Ok(date)
    } else {
        Err(PluginError::InvalidOrder(FieldError::new(
            "date",
            "must be a day as YYYY-MM-DD (Beijing date)",
        )))
    }
}

pub fn locate_bill(
    pairs: &[(String, String)],
    date: &str,
) -> Result<Step<BillLocation>, PluginError> {
    let settings = load(pairs)?;
    check_bill_date(date)?;
    Ok(Step::Send(Pending {
        request: refund::bill_request(&settings, date, now())?,
        continuation: Continuation::Bill {
            date: date.to_owned(),
        }
        .encode(),
    }))
}

pub fn resume_bill(
    pairs: &[(String, String)],
    continuation: &[u8],
    response: Result<HttpResponse, SendFailure>,
) -> Result<Step<BillLocation>, PluginError> {
    let settings = load(pairs)?;
    let Continuation::Bill { .. } = Continuation::decode(continuation)? else {
        return Err(flow::foreign_continuation("resume-bill"));
    };
    let response = crate::connector::answered(refund::BILL, response)?;
    refund::read_bill(&settings, &response.body).map(Step::Done)
}

/// What the open platform does not have (the legacy WAP pay-channel list, the 2013 app SDK
/// result string): refused naming `api`.
pub fn not_offered(what: &str) -> PluginError {
    PluginError::InvalidSettings(vec![FieldError::new(
        "api",
        format!("{what} belongs to the legacy API (api = mapi); the open platform has none"),
    )])
}

#[cfg(test)]
mod tests {
    use crate::connector;
    use crate::flow::{HttpResponse, Step};
    use crate::model::{OrderExpectation, PaymentRequest, PluginError, Product, TradeEvent};
    use crate::openapi::settings::tests::settings_pairs;
    use crate::openapi::testdata;

    /// The whole OpenAPI flow through the plugin's public entry points, as the component glue
    /// calls them: the settings choose the family.
    #[test]
    fn openapi_merchant_through_the_connector() {
        let pairs = settings_pairs();
        let normalised = connector::validate_settings(&pairs).unwrap();
        assert!(normalised.contains(&("api".into(), "openapi".into())));
        let order = PaymentRequest {
            product: Product::Wap,
            out_trade_no: "ECS20240520000123".into(),
            subject: "测试商品 ECShop".into(),
            total_fee: "88.88".into(),
            return_url: "https://shop.example.com/return".into(),
            notify_url: "https://shop.example.com/notify".into(),
            request_id: "abc".into(),
            ..Default::default()
        };
        let Step::Done(started) = connector::start_payment(&pairs, &order).unwrap() else {
            panic!("OpenAPI pay needs no provider call");
        };
        assert!(started.redirect.url.contains("method=alipay.trade.wap.pay"));
        let form: Vec<(String, String)> =
            form_urlencoded::parse(&testdata::read("notify/trade_success.txt"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let Step::Done(n) = connector::verify_notification(&pairs, &form).unwrap() else {
            panic!("OpenAPI notifies need no confirmation call");
        };
        let expect = OrderExpectation {
            out_trade_no: "ECS20240520000123".into(),
            total_fee: "88.88".into(),
            seller: started.seller.clone(),
        };
        connector::match_order(&n, &expect).unwrap();
        let wrong_seller = OrderExpectation {
            seller: "2088000000000009".into(),
            ..expect.clone()
        };
        assert!(connector::match_order(&n, &wrong_seller).is_err());
        // The query takes only an order number the payment itself would take.
        for bad in ["", "订单1", &"A".repeat(65)] {
            match connector::query_trade(&pairs, bad) {
                Err(PluginError::InvalidOrder(f)) => assert_eq!(f.field, "out_trade_no"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Lost notify: the query, then its signed answer, applied through match-order too.
        let Step::Send(pending) = connector::query_trade(&pairs, "ECS20240520000123").unwrap()
        else {
            panic!("the query is a server call");
        };
        let answer = HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: testdata::read("responses/query_success_utf8.json"),
        };
        let Step::Done(q) =
            connector::resume_query(&pairs, &pending.continuation, Ok(answer)).unwrap()
        else {
            panic!("one call answers the query");
        };
        assert_eq!(q.event, TradeEvent::Paid);
        connector::match_order(&q.notification.unwrap(), &expect).unwrap();
        // What only the legacy API has is refused naming `api`.
        match connector::list_channels(&pairs, None) {
            Err(PluginError::InvalidSettings(e)) => assert_eq!(e[0].field, "api"),
            other => panic!("{other:?}"),
        }
        // A legacy merchant may not carry open-platform settings.
        let mixed = vec![
            ("partner".to_owned(), "2088000000000002".to_owned()),
            (
                "key".to_owned(),
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
            ("seller_email".to_owned(), "a@b.cn".to_owned()),
            ("app_id".to_owned(), "2021000000000001".to_owned()),
        ];
        let e = connector::validate_settings(&mixed).unwrap_err();
        assert_eq!(e[0].field, "app_id");
    }
}
