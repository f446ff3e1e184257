//! The pay products ([OPENAPI §4]): `alipay.trade.wap.pay` (phone),
//! `alipay.trade.page.pay` (desktop) and `alipay.trade.app.pay` (app SDK). None is a server
//! call: the buyer's browser goes to the gateway with the signed parameters (a GET URL, or the
//! equivalent POST form for a long `biz_content`), the app gets the signed order string.

use super::request::{self, BizContent};
use super::settings::OpenApiSettings;
use crate::amount::Amount;
use crate::model::{
    FieldError, HttpMethod, PaymentRequest, PaymentStarted, PluginError, Product, Redirect,
};
use crate::settings::{is_alipay_user_id, is_http_url};

fn invalid(field: &str, reason: impl Into<String>) -> PluginError {
    PluginError::InvalidOrder(FieldError::new(field, reason))
}

/// `time_expire` may lie at most 15 days ahead ([OPENAPI §4.1]).
const MAX_PAY_EXPIRE_MINUTES: u32 = 21_600;

/// The seller of an order: its own `seller` (a 2088… id: the OpenAPI's C2C analogue of
/// `seller_email`) or the merchant's default. The notify's `seller_id` must then equal it.
fn seller<'a>(
    settings: &'a OpenApiSettings,
    order: &'a PaymentRequest,
) -> Result<&'a str, PluginError> {
    match order
        .seller
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(s) if is_alipay_user_id(s) => Ok(s),
        Some(_) => Err(invalid(
            "seller_id",
            "must be the seller's 16-digit Alipay user id (2088…) for an OpenAPI merchant",
        )),
        None => settings.seller_id.as_deref().ok_or_else(|| {
            invalid(
                "seller_id",
                "is required: the merchant has no default seller_id and the order names none",
            )
        }),
    }
}

/// Starts a payment at `now` (Unix seconds; the component reads the clock, tests pass a fixed
/// one): checks the order, then signs the product's request.
pub fn start(
    settings: &OpenApiSettings,
    order: &PaymentRequest,
    now: i64,
) -> Result<PaymentStarted, PluginError> {
    let out_trade_no = crate::connector::check_out_trade_no(&order.out_trade_no)?;
    let subject = crate::connector::check_subject(&order.subject)?;
    let amount =
        Amount::parse(&order.total_fee).map_err(|e| invalid("total_fee", e.to_string()))?;
    let seller = seller(settings, order)?;
    for (field, url, needed) in [
        ("notify_url", Some(order.notify_url.as_str()), true),
        (
            "return_url",
            Some(order.return_url.as_str()),
            order.product != Product::App,
        ),
        ("merchant_url", order.merchant_url.as_deref(), false),
    ] {
        match url.filter(|u| !u.is_empty()) {
            // Alipay appends its own parameters to the notify and return URLs: no query of
            // the caller's (as the legacy API's rule).
            Some(u) if field != "merchant_url" => {
                if let Some(rule) = crate::settings::url_problem(u, false) {
                    return Err(invalid(field, rule));
                }
            }
            Some(u) if !is_http_url(u) => {
                return Err(invalid(field, "must be an absolute http or https URL"))
            }
            None if needed => return Err(invalid(field, "is required")),
            _ => {}
        }
    }
    crate::connector::check_order_extras(order)?;
    let time_expire = match order.pay_expire {
        Some(0) => return Err(invalid("pay_expire", "must be at least 1 minute")),
        Some(m) if m > MAX_PAY_EXPIRE_MINUTES => {
            return Err(invalid(
                "pay_expire",
                "must be at most 21600 minutes (15 days)",
            ))
        }
        Some(m) => Some(request::beijing_time(now + i64::from(m) * 60)),
        None => None,
    };
    let total = amount.to_string();
    let (method, product_code) = match order.product {
        Product::Wap => ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
        Product::Pc => ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        Product::App => ("alipay.trade.app.pay", "QUICK_MSECURITY_PAY"),
    };
    let biz = BizContent::default()
        .field("out_trade_no", out_trade_no)
        .field("total_amount", &total)
        .field("subject", subject)
        .field("product_code", product_code)
        // Where a buyer who leaves the phone cashier lands ([OPENAPI §4.2]); the desktop cashier has none.
        .maybe(
            "quit_url",
            order
                .merchant_url
                .as_deref()
                .filter(|_| order.product == Product::Wap),
        )
        .field("seller_id", seller)
        .maybe("time_expire", time_expire.as_deref())
        .finish();
    let return_url = (order.product != Product::App).then_some(order.return_url.as_str());
    let params = request::common_params(
        settings,
        method,
        &request::beijing_time(now),
        Some(&order.notify_url),
        return_url,
    );
    let params = request::signed(settings, params, biz)?;
    let (redirect, order_string) = match order.product {
        Product::App => (
            Redirect {
                url: String::new(),
                method: HttpMethod::Get,
                action: String::new(),
                fields: Vec::new(),
            },
            Some(request::order_string(&params)),
        ),
        Product::Wap | Product::Pc => {
            let (action, fields) = request::post_form(&settings.gateway, &params);
            (
                Redirect {
                    url: request::get_url(&settings.gateway, &params),
                    method: HttpMethod::Post,
                    action,
                    fields,
                },
                None,
            )
        }
    };
    Ok(PaymentStarted {
        redirect,
        token: String::new(),
        request_id: order.request_id.clone(),
        total_fee: total,
        seller: seller.to_owned(),
        order_string,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::settings::{tests::settings_pairs, validate};
    use crate::openapi::sign::{request_sign_content, verify, SignType};
    use crate::openapi::testdata;
    use crate::sign::parse_public_key;

    /// 2024-05-20 10:30:00 in Beijing, the vectors' time.
    const NOW: i64 = 1_716_172_200;

    fn order(product: Product) -> PaymentRequest {
        PaymentRequest {
            product,
            out_trade_no: "ECS20240520000123".into(),
            subject: "测试商品 ECShop".into(),
            total_fee: "88.88".into(),
            seller: None,
            return_url: "https://shop.example.com/payhost/alipay/return".into(),
            notify_url: "https://shop.example.com/payhost/alipay/notify".into(),
            merchant_url: Some("https://shop.example.com/flow.php?step=cart".into()),
            pay_expire: Some(30),
            request_id: "r1".into(),
            ..Default::default()
        }
    }

    fn decoded(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The WAP request as the gateway reads it: the signed parameters the reference's vector
    /// has (our `biz_content` carries only the fields a shop order has, so it is checked field
    /// by field), a signature the app's public key verifies, and the GET URL and POST form
    /// carrying the same parameters.
    #[test]
    fn wap_pay_request() {
        let v = testdata::vectors();
        let (settings, _) = validate(&settings_pairs()).unwrap();
        let started = start(&settings, &order(Product::Wap), NOW).unwrap();
        let get = decoded(started.redirect.url.split_once('?').unwrap().1);
        let param = |k: &str| get.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let vector = &v.json["wap_pay"]["params"];
        for k in [
            "app_id",
            "method",
            "format",
            "charset",
            "sign_type",
            "timestamp",
            "version",
            "notify_url",
            "return_url",
        ] {
            assert_eq!(param(k), vector[k].as_str(), "{k}");
        }
        let biz: serde_json::Value = serde_json::from_str(param("biz_content").unwrap()).unwrap();
        let vbiz: serde_json::Value =
            serde_json::from_str(vector["biz_content"].as_str().unwrap()).unwrap();
        for k in [
            "out_trade_no",
            "total_amount",
            "subject",
            "product_code",
            "quit_url",
            "seller_id",
            "time_expire",
        ] {
            assert_eq!(biz[k], vbiz[k], "{k}");
        }
        let content = request_sign_content(get.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let app_pub = parse_public_key(v.key("app_public")).unwrap();
        assert!(verify(
            content.as_bytes(),
            param("sign").unwrap(),
            &app_pub,
            SignType::Rsa2
        )
        .unwrap());
        // The POST form: the same parameters, biz_content as the one field.
        assert_eq!(started.redirect.method, HttpMethod::Post);
        assert_eq!(started.redirect.fields.len(), 1);
        assert_eq!(started.redirect.fields[0].0, "biz_content");
        let mut posted = decoded(started.redirect.action.split_once('?').unwrap().1);
        posted.extend(started.redirect.fields.iter().cloned());
        posted.sort();
        let mut all = get.clone();
        all.sort();
        assert_eq!(posted, all);
        assert!(started
            .redirect
            .action
            .starts_with("https://openapi.alipay.com/gateway.do?"));
        assert_eq!(started.seller, "2088000000000002");
        assert_eq!(started.total_fee, "88.88");
    }

    /// With the vector's exact `biz_content` the signature is the vector's: the request string
    /// and signature code are the same ones the reference cross-checked with the official SDKs.
    #[test]
    fn same_parameters_same_signature_as_the_vector() {
        let v = testdata::vectors();
        let (settings, _) = validate(&settings_pairs()).unwrap();
        let vector = &v.json["wap_pay"]["params"];
        let params = request::common_params(
            &settings,
            "alipay.trade.wap.pay",
            "2024-05-20 10:30:00",
            vector["notify_url"].as_str(),
            vector["return_url"].as_str(),
        );
        let signed = request::signed(
            &settings,
            params,
            vector["biz_content"].as_str().unwrap().into(),
        )
        .unwrap();
        let sign = &signed.iter().find(|(k, _)| k == "sign").unwrap().1;
        assert_eq!(sign, v.json["wap_pay"]["sign"].as_str().unwrap());
        // The app pay vector's order string, byte for byte.
        let app = &v.json["app_pay"]["params"];
        let params = request::common_params(
            &settings,
            "alipay.trade.app.pay",
            "2024-05-20 10:30:00",
            app["notify_url"].as_str(),
            None,
        );
        let signed = request::signed(
            &settings,
            params,
            app["biz_content"].as_str().unwrap().into(),
        )
        .unwrap();
        assert_eq!(
            request::order_string(&signed),
            v.json["app_pay"]["order_string"].as_str().unwrap()
        );
    }

    #[test]
    fn pc_and_app_products() {
        let (settings, _) = validate(&settings_pairs()).unwrap();
        let pc = start(&settings, &order(Product::Pc), NOW).unwrap();
        let q = decoded(pc.redirect.url.split_once('?').unwrap().1);
        let biz = &q.iter().find(|(k, _)| k == "biz_content").unwrap().1;
        assert!(biz.contains("FAST_INSTANT_TRADE_PAY"), "{biz}");
        assert!(!biz.contains("quit_url"), "{biz}");
        assert!(q
            .iter()
            .any(|(k, v)| k == "method" && v == "alipay.trade.page.pay"));
        let mut app_order = order(Product::App);
        app_order.return_url.clear();
        let app = start(&settings, &app_order, NOW).unwrap();
        assert!(app.redirect.url.is_empty());
        let s = app.order_string.unwrap();
        assert!(
            s.contains("method=alipay.trade.app.pay") && s.contains("&sign="),
            "{s}"
        );
        assert!(!s.contains("return_url"));
    }

    #[test]
    fn order_checks_name_the_field() {
        let (settings, _) = validate(&settings_pairs()).unwrap();
        let field = |o: PaymentRequest| match start(&settings, &o, NOW) {
            Err(PluginError::InvalidOrder(e)) => e.field,
            other => panic!("{other:?}"),
        };
        let mut o = order(Product::Wap);
        o.seller = Some("seller@example.com".into());
        assert_eq!(field(o), "seller_id");
        let mut o = order(Product::Wap);
        o.total_fee = "1.001".into();
        assert_eq!(field(o), "total_fee");
        let mut o = order(Product::Wap);
        o.out_trade_no = "a b".into();
        assert_eq!(field(o), "out_trade_no");
        let mut o = order(Product::Wap);
        o.pay_expire = Some(30_000);
        assert_eq!(field(o), "pay_expire");
        let mut o = order(Product::Wap);
        o.merchant_url = Some("javascript:alert(1)".into());
        assert_eq!(field(o), "merchant_url");
        // The legacy API's rules, the same here: request_id per the contract, no query on the
        // URLs Alipay appends to, a bad cashier code or buyer id refused (not dropped).
        for bad in ["", "ABC", &"a".repeat(33)] {
            let mut o = order(Product::Wap);
            o.request_id = bad.into();
            assert_eq!(field(o), "request_id", "{bad:?}");
        }
        let mut o = order(Product::Wap);
        o.notify_url = "https://shop.example.com/notify?x=1".into();
        assert_eq!(field(o), "notify_url");
        let mut o = order(Product::Pc);
        o.cashier_code = Some("x&y=z".into());
        assert_eq!(field(o), "cashier_code");
        let mut o = order(Product::Wap);
        o.out_user = Some("u".repeat(300));
        assert_eq!(field(o), "out_user");
        // C2C analogue: the order's own seller wins over the default.
        let mut o = order(Product::Wap);
        o.seller = Some("2088000000000009".into());
        assert_eq!(
            start(&settings, &o, NOW).unwrap().seller,
            "2088000000000009"
        );
    }
}
