//! The plugin's flows for an OpenAPI merchant (`api = openapi`), called by [`crate::connector`]
//! when the settings choose this family. Pay and notify need no provider call (the signature
//! is the proof; there is no `notify_verify`); the trade query is one signed server call.

use super::settings::{self, OpenApiSettings};
use super::{notify, pay, query};
use crate::flow::{self, Continuation, HttpResponse, Pending, SendFailure, Step};
use crate::model::{
    FieldError, Notification, PaymentRequest, PaymentStarted, PluginError, TradeQuery,
    VerifiedReturn,
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
    settings::validate(pairs).map(|(_, normalised)| normalised)
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
