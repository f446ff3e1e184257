//! Tests of the mapi products against [EXTRA §6] (public test suites,
//! synthesised vectors, real Alipay signatures), the flows through `connector`, and an
//! independent implementation of each new signature rule (`openssl dgst -sha1`).

use super::*;
use crate::connector::{self, HttpResponse, SendFailure, Step};
use crate::model::{PaymentRequest, Product, TradeEvent};
use crate::settings::validate;

const KEY: &str = "10000000000000000000000000000000";
const TEST_PRIV: &str = include_str!("../testdata/test_priv.pem");
const TEST_PUB: &str = include_str!("../testdata/test_pub.pem");

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn md5_pairs() -> Pairs {
    vec![
        p("partner", "2088000000000001"),
        p("key", KEY),
        p("seller_email", "seller@example.com"),
    ]
}

/// RSA merchant with the chloerei test key pair; the test public key also stands in for Alipay's
/// mapi key (the synthesised vectors are signed with the test private key).
fn rsa_pairs() -> Pairs {
    vec![
        p("partner", "2088000000000001"),
        p("sign_type", "RSA"),
        p("private_key", TEST_PRIV),
        p("alipay_public_key", TEST_PUB),
        p("mapi_public_key", TEST_PUB),
        p("seller_email", "seller@example.com"),
    ]
}

/// RSA merchant with the built-in (real) mapi key.
fn rsa_real_mapi_pairs() -> Pairs {
    let mut v = rsa_pairs();
    v.retain(|(k, _)| k != "mapi_public_key");
    v
}

fn settings(pairs: &[(String, String)]) -> Settings {
    validate(pairs).unwrap().0
}

/// The vectors use partner 1000000000000000, which validation refuses: set it afterwards.
fn vector_settings(pairs: &[(String, String)]) -> Settings {
    let mut s = settings(pairs);
    s.partner = "1000000000000000".into();
    s
}

fn order(product: Product) -> PaymentRequest {
    PaymentRequest {
        product,
        out_trade_no: "20140101000001".into(),
        subject: "测试商品".into(),
        total_fee: "0.01".into(),
        return_url: "https://shop.example/return".into(),
        notify_url: "https://shop.example/notify".into(),
        request_id: "r1".into(),
        ..Default::default()
    }
}

fn done<T>(step: Step<T>) -> T {
    match step {
        Step::Done(t) => t,
        Step::Send(p) => panic!("expected done, got a request to {}", p.request.url),
    }
}

fn sent<T: std::fmt::Debug>(step: Step<T>) -> crate::flow::Pending {
    match step {
        Step::Send(p) => p,
        Step::Done(t) => panic!("expected a request, got {t:?}"),
    }
}

fn ok(body: &str) -> Result<HttpResponse, SendFailure> {
    Ok(HttpResponse {
        status: 200,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    })
}

fn test_key() -> sign::PrivateKey {
    sign::parse_private_key(TEST_PRIV).unwrap()
}

// ---------------------------------------------------------------------------------------------
// [EXTRA §6.1] order strings of public test suites

const CHLOEREI_ORDER: &str = "service=\"mobile.securitypay.pay\"&_input_charset=\"utf-8\"&partner=\"1000000000000000\"&seller_id=\"1000000000000000\"&payment_type=\"1\"&out_trade_no=\"1\"&notify_url=\"/some_url\"&subject=\"subject\"&total_fee=\"0.01\"&body=\"test\"";
const CHLOEREI_SIGN: &str = "if1qjK4qnT7eQ5fw+BddHhO1LY6iuPY9Xmhkx81YKuCdceKWBdv798j+rxF9ZAhNW4Y3TMURm+XpgxhOh8lj8vorFup+MJ6fe2rXRWgxFhK9B8xuP2XH/3878g6d8Jq2D2gINTgDDL7+B5/IWWlwInas40cQTsVngG8mWkzB788=";

#[test]
fn chloerei_app_order_string() {
    let content = quoted_link_string(&[
        ("service", "mobile.securitypay.pay"),
        ("_input_charset", "utf-8"),
        ("partner", "1000000000000000"),
        ("seller_id", "1000000000000000"),
        ("payment_type", "1"),
        ("out_trade_no", "1"),
        ("notify_url", "/some_url"),
        ("subject", "subject"),
        ("total_fee", "0.01"),
        ("body", "test"),
    ]);
    assert_eq!(content, CHLOEREI_ORDER);
    let signature = sign::rsa_sign(&content, &test_key()).unwrap();
    assert_eq!(signature, CHLOEREI_SIGN);
    assert_eq!(
        app_order_string(&content, &signature),
        format!("{CHLOEREI_ORDER}&sign=\"if1qjK4qnT7eQ5fw%2BBddHhO1LY6iuPY9Xmhkx81YKuCdceKWBdv798j%2BrxF9ZAhNW4Y3TMURm%2BXpgxhOh8lj8vorFup%2BMJ6fe2rXRWgxFhK9B8xuP2XH%2F3878g6d8Jq2D2gINTgDDL7%2BB5%2FIWWlwInas40cQTsVngG8mWkzB788%3D\"&sign_type=\"RSA\"")
    );
}

/// omnipay v2 signs the sorted fields; its test pins md5(order string). Its key is not public in
/// the stored snapshot, so the vector checks the quoting and the sign's URL-encoding (PHP
/// `urlencode`) byte for byte.
#[test]
fn omnipay_sorted_app_order_string() {
    let fields = [
        ("service", "mobile.securitypay.pay"),
        ("partner", "123456789"),
        ("_input_charset", "UTF-8"),
        ("notify_url", "https://www.example.com/notify"),
        ("out_trade_no", "2014010122390001"),
        ("subject", "test"),
        ("total_fee", "0.01"),
        ("payment_type", "1"),
        ("seller_id", "123456789"),
        ("alipay_sdk", "lokielse/omnipay-alipay"),
    ];
    // Sorted, quoted (the sorted rule with quotes around each value).
    let sorted = sign::sorted_link_string(fields);
    let quoted: Vec<(&str, &str)> = sorted
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let content = quoted_link_string(&quoted);
    let full = app_order_string(&content, "jwAkr7ktPrOK1V0spjsVK9594xCiGTAJgXXSU5JOf8tEfEmGZKdOF8mWNbSxeHRluLlTqcOjNXm1VsZTArt6Yi3SZIiWr5VOlc65lHqn2J7iwYDAN5ccExVW9nE015o7EJKtDOauBVe+OlsBdOIx3MrosLcoyKay1TNfqd8Qf10=");
    assert_eq!(full, "_input_charset=\"UTF-8\"&alipay_sdk=\"lokielse/omnipay-alipay\"&notify_url=\"https://www.example.com/notify\"&out_trade_no=\"2014010122390001\"&partner=\"123456789\"&payment_type=\"1\"&seller_id=\"123456789\"&service=\"mobile.securitypay.pay\"&subject=\"test\"&total_fee=\"0.01\"&sign=\"jwAkr7ktPrOK1V0spjsVK9594xCiGTAJgXXSU5JOf8tEfEmGZKdOF8mWNbSxeHRluLlTqcOjNXm1VsZTArt6Yi3SZIiWr5VOlc65lHqn2J7iwYDAN5ccExVW9nE015o7EJKtDOauBVe%2BOlsBdOIx3MrosLcoyKay1TNfqd8Qf10%3D\"&sign_type=\"RSA\"");
    assert_eq!(
        sign::md5_sign(&full, ""),
        "e16fdd8098c197201986cd9c3a8fb276"
    );
}

// ---------------------------------------------------------------------------------------------
// App start-payment

#[test]
fn app_start_payment_is_done_at_once_with_the_signed_order_string() {
    let mut o = order(Product::App);
    o.pay_expire = Some(30);
    let started = done(connector::start_payment(&rsa_pairs(), &o).unwrap());
    let s = started.order_string.expect("an order string");
    assert!(started.redirect.url.is_empty() && started.redirect.fields.is_empty());
    assert_eq!(started.total_fee, "0.01");
    assert_eq!(started.seller, "seller@example.com");
    let content = "partner=\"2088000000000001\"&seller_id=\"seller@example.com\"&out_trade_no=\"20140101000001\"&subject=\"测试商品\"&body=\"测试商品\"&total_fee=\"0.01\"&notify_url=\"https://shop.example/notify\"&service=\"mobile.securitypay.pay\"&payment_type=\"1\"&_input_charset=\"utf-8\"&it_b_pay=\"30m\"&return_url=\"https://shop.example/return\"";
    let (signed, tail) = s.split_once("&sign=\"").unwrap();
    assert_eq!(signed, content, "[EXTRA §1.2] field order, values quoted");
    let (encoded, rest) = tail.split_once('"').unwrap();
    assert_eq!(rest, "&sign_type=\"RSA\"", "sign_type last, not signed");
    assert!(
        !encoded.contains(['+', '/', '=']),
        "the sign is URL-encoded"
    );
    let raw: String = form_urlencoded::parse(format!("s={encoded}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let public = sign::parse_public_key(TEST_PUB).unwrap();
    assert!(sign::rsa_verify(content, &raw, &public).unwrap());
    // An empty return_url is left out for the app product only.
    let mut no_return = order(Product::App);
    no_return.return_url.clear();
    let s = done(connector::start_payment(&rsa_pairs(), &no_return).unwrap())
        .order_string
        .unwrap();
    assert!(!s.contains("return_url"));
    let mut wap = order(Product::Wap);
    wap.return_url.clear();
    assert!(connector::start_payment(&md5_pairs(), &wap).is_err());
}

#[test]
fn app_needs_rsa_and_unescapable_values_are_refused() {
    match connector::start_payment(&md5_pairs(), &order(Product::App)) {
        Err(PluginError::InvalidSettings(errs)) => {
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].field, "sign_type");
            assert!(errs[0].reason.contains("must be RSA"), "{}", errs[0].reason);
        }
        other => panic!("{other:?}"),
    }
    let mut o = order(Product::App);
    o.subject = "say \"hi\"".into();
    match connector::start_payment(&rsa_pairs(), &o) {
        Err(PluginError::InvalidOrder(e)) => assert_eq!(e.field, "subject"),
        other => panic!("{other:?}"),
    }
    o.subject = "a&b".into();
    assert!(matches!(
        connector::start_payment(&rsa_pairs(), &o),
        Err(PluginError::InvalidOrder(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// PC start-payment, return

fn field<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    find(pairs, k)
}

#[test]
fn pc_redirect_md5_and_rsa() {
    // The [EXTRA §2.2] known answer (chloerei) through the same signer the redirect uses.
    let mut s = vector_settings(&md5_pairs());
    let mut known = vec![
        p("service", "create_direct_pay_by_user"),
        p("partner", "1000000000000000"),
        p("_input_charset", "utf-8"),
        p("out_trade_no", "1"),
        p("subject", "test"),
        p("payment_type", "1"),
        p("price", "0.01"),
        p("quantity", "1"),
        p("seller_id", "1000000000000000"),
    ];
    sign_mapi_params(&s, &mut known).unwrap();
    assert_eq!(
        field(&known, "sign"),
        Some("682ad02280fca7d4c0fd22678fdddeef")
    );
    assert_eq!(known.last().unwrap(), &p("sign_type", "MD5"));

    let started = done(connector::start_payment(&md5_pairs(), &order(Product::Pc)).unwrap());
    assert!(started.order_string.is_none());
    assert!(started.token.is_empty());
    let r = &started.redirect;
    assert_eq!(r.method, HttpMethod::Get);
    assert_eq!(r.action, "https://mapi.alipay.com/gateway.do");
    assert!(r
        .url
        .starts_with("https://mapi.alipay.com/gateway.do?service=create_direct_pay_by_user&partner=2088000000000001&seller_email=seller%40example.com&_input_charset=utf-8&payment_type=1"));
    assert_eq!(field(&r.fields, "sign_type"), Some("MD5"));
    let content = sign::sorted_link_string(r.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        content,
        "_input_charset=utf-8&notify_url=https://shop.example/notify&out_trade_no=20140101000001&partner=2088000000000001&payment_type=1&return_url=https://shop.example/return&seller_email=seller@example.com&service=create_direct_pay_by_user&subject=测试商品&total_fee=0.01"
    );
    assert_eq!(
        field(&r.fields, "sign").unwrap(),
        sign::md5_sign(&content, KEY)
    );
    // A 2088… seller goes as seller_id.
    s.seller_email = Some("2088000000000009".into());
    let f = OrderFields {
        out_trade_no: "1",
        subject: "s",
        total_fee: Amount::parse("1").unwrap(),
        seller: "2088000000000009",
        notify_url: "https://n.example/",
        return_url: "https://r.example/",
        pay_expire: Some(90),
    };
    let r = pc_redirect(&s, &f).unwrap();
    assert_eq!(field(&r.fields, "seller_id"), Some("2088000000000009"));
    assert_eq!(field(&r.fields, "it_b_pay"), Some("90m"));
    assert!(field(&r.fields, "seller_email").is_none());
    // RSA: sign_type RSA (not 0001), SHA1withRSA over the same sorted string.
    let started = done(connector::start_payment(&rsa_pairs(), &order(Product::Pc)).unwrap());
    let r = started.redirect;
    assert_eq!(field(&r.fields, "sign_type"), Some("RSA"));
    let content = sign::sorted_link_string(r.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let public = sign::parse_public_key(TEST_PUB).unwrap();
    assert!(sign::rsa_verify(&content, field(&r.fields, "sign").unwrap(), &public).unwrap());
}

fn pc_return(sign_with: impl Fn(&str) -> String, sign_type: &str) -> Pairs {
    let mut q = vec![
        p("is_success", "T"),
        p("body", "Hello"),
        p("buyer_email", "buyer@example.com"),
        p("buyer_id", "2088101000082594"),
        p("exterface", "create_direct_pay_by_user"),
        p("out_trade_no", "6402757654153618"),
        p("payment_type", "1"),
        p("seller_email", "seller@example.com"),
        p("seller_id", "2088002007018916"),
        p("subject", "外部FP"),
        p("total_fee", "10.00"),
        p("trade_no", "2008102303210710"),
        p("trade_status", "TRADE_FINISHED"),
        p(
            "notify_id",
            "RqPnCoPT3K9/vwbh3InWeOZJDGthEDCoBCHiUQl56jWuvahmgzTSKQLKonjkRSrX48X+",
        ),
        p("notify_time", "2008-10-23 13:17:39"),
        p("notify_type", "trade_status_sync"),
        p("extra_common_param", ""),
    ];
    let content = sign::sorted_link_string(q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // Wire order as in the 2008 doc sample: sign and sign_type right after is_success.
    q.insert(1, p("sign", &sign_with(&content)));
    q.insert(2, p("sign_type", sign_type));
    q
}

#[test]
fn pc_return_sorted_rule_and_wap_callback_still_verify() {
    let q = pc_return(|c| sign::md5_sign(c, KEY), "MD5");
    let r = connector::verify_return(&md5_pairs(), &q).unwrap();
    assert_eq!(r.out_trade_no, "6402757654153618");
    assert_eq!(r.trade_no, "2008102303210710");
    assert_eq!(r.result, "TRADE_FINISHED");
    assert_eq!(r.raw, q);
    // Tampered amount; a downgrade to another sign_type; is_success=F.
    let mut t = q.clone();
    t.iter_mut().find(|(k, _)| k == "total_fee").unwrap().1 = "0.01".into();
    assert!(matches!(
        connector::verify_return(&md5_pairs(), &t),
        Err(PluginError::BadSignature(_))
    ));
    let rsa_typed = pc_return(|c| sign::md5_sign(c, KEY), "RSA");
    assert!(matches!(
        connector::verify_return(&md5_pairs(), &rsa_typed),
        Err(PluginError::BadSignature(_))
    ));
    // RSA: Alipay's mapi key verifies.
    let key = test_key();
    let q = pc_return(|c| sign::rsa_sign(c, &key).unwrap(), "RSA");
    assert_eq!(
        connector::verify_return(&rsa_pairs(), &q).unwrap().result,
        "TRADE_FINISHED"
    );
    assert!(connector::verify_return(&rsa_real_mapi_pairs(), &q).is_err());
    // WAP regression: the [WAP §12.2] call-back vector still goes the WAP way.
    let wap = vec![
        p("out_trade_no", "20140101000001"),
        p("request_token", "requestToken"),
        p("result", "success"),
        p("trade_no", "2014010100001000000000000001"),
        p("sign", "c9746fb3a6b148a7beeb342c1cb7601f"),
        p("sign_type", "MD5"),
    ];
    let r = connector::verify_return(&md5_pairs(), &wap).unwrap();
    assert_eq!(
        (r.result.as_str(), r.request_token.as_str()),
        ("success", "requestToken")
    );
}

// ---------------------------------------------------------------------------------------------
// Flat notifies: PC and app generation B ([EXTRA §6.2] synthesised, [EXTRA §6.3] real)

const FLAT_SORTED: &str = "buyer_email=buyer@example.com&buyer_id=2088000000000001&discount=0.00&gmt_create=2014-01-01 12:00:00&gmt_payment=2014-01-01 12:00:05&is_total_fee_adjust=N&notify_id=0123456789abcdef0123456789abcdef01&notify_time=2014-01-01 12:00:05&notify_type=trade_status_sync&out_trade_no=20140101000001&payment_type=1&price=0.01&quantity=1&seller_email=seller@example.com&seller_id=1000000000000000&subject=测试商品&total_fee=0.01&trade_no=2014010100001000000000000001&trade_status=TRADE_SUCCESS&use_coupon=N";
const FLAT_MD5: &str = "98dd337246f58b3861b12d2678f9f1fd";
const FLAT_RSA: &str = "ZXYvcgi4ygVYgk7P1HI8X9YPvYcH1LpF4L0jDtkdgSL/mmAuWYFDavWajenjkakUwu+Ist1f8TRvD7nL6IkPDTA7Q1b+ZCYNuCZkkOym6qWjr+JNa/RQAn8DGwqH4n3GdSWGmf1czCRQdWVK5JaOFIkIWTHt0vuAdku1XzTDmZ0=";

/// Pairs of a sorted string, reordered as a wire order (reversed, to be sure nothing relies on
/// the received order), then `sign_type` and `sign`.
fn flat_form(sorted: &str, sign: &str, sign_type: &str) -> Pairs {
    let mut v: Pairs = sorted
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            p(k, v)
        })
        .collect();
    v.reverse();
    v.push(p("sign_type", sign_type));
    v.push(p("sign", sign));
    v
}

fn wire_string(form: &[(String, String)]) -> String {
    form.iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn flat_notify_vectors_md5_and_rsa_then_notify_verify() {
    assert_eq!(sign::md5_sign(FLAT_SORTED, KEY), FLAT_MD5);
    for (pairs, sig, t) in [
        (md5_pairs(), FLAT_MD5, "MD5"),
        (rsa_pairs(), FLAT_RSA, "RSA"),
    ] {
        let form = flat_form(FLAT_SORTED, sig, t);
        assert_eq!(notify_kind(&form), NotifyKind::Flat);
        let pending = sent(connector::verify_notification(&pairs, &form).unwrap());
        assert_eq!(
            pending.request.url,
            "https://mapi.alipay.com/gateway.do?service=notify_verify&partner=2088000000000001&notify_id=0123456789abcdef0123456789abcdef01"
        );
        let n = done(
            connector::resume_notification(&pairs, &pending.continuation, ok("true")).unwrap(),
        );
        assert_eq!(n.out_trade_no, "20140101000001");
        assert_eq!(n.trade_no, "2014010100001000000000000001");
        assert_eq!(n.total_fee, "0.01");
        assert_eq!(n.seller_id.as_deref(), Some("1000000000000000"));
        assert_eq!(n.reply, "success");
        assert!(n.paid);
        assert_eq!(n.event(), TradeEvent::Paid);
        assert!(!n
            .fields
            .iter()
            .any(|(k, _)| k == "sign" || k == "sign_type"));
        assert!(matches!(
            connector::resume_notification(&pairs, &pending.continuation, ok("false")),
            Err(PluginError::NotifyNotConfirmed(_))
        ));
        // The wire order is not what was signed.
        let wire = wire_string(&form);
        assert_ne!(wire, FLAT_SORTED);
        let wire_ok = match t {
            "MD5" => sign::md5_verify(&wire, KEY, sig),
            _ => sign::rsa_verify(&wire, sig, &sign::parse_public_key(TEST_PUB).unwrap()).unwrap(),
        };
        assert!(!wire_ok, "{t}: the wire order must not verify");
        // Tampered, or signed with the other type: refused.
        let tampered = flat_form(
            &FLAT_SORTED.replace("total_fee=0.01", "total_fee=0.02"),
            sig,
            t,
        );
        assert!(matches!(
            connector::verify_notification(&pairs, &tampered),
            Err(PluginError::BadSignature(_))
        ));
        let other = flat_form(FLAT_SORTED, sig, if t == "MD5" { "RSA" } else { "MD5" });
        assert!(connector::verify_notification(&pairs, &other).is_err());
    }
    // Empty values: the official rule drops them ([EXTRA §1.4.2], NOTE); a signature over a string that
    // keeps `k=` (chloerei/ECShop) does not verify, one that drops them does.
    let mut form = flat_form(FLAT_SORTED, FLAT_MD5, "MD5");
    form.push(p("extra_common_param", ""));
    sent(connector::verify_notification(&md5_pairs(), &form).unwrap());
    let kept = FLAT_SORTED.replace("&gmt_create=", "&extra_common_param=&gmt_create=");
    let kept_sig = sign::md5_sign(&kept, KEY);
    let form = flat_form(FLAT_SORTED, &kept_sig, "MD5");
    let mut form_with_empty = form.clone();
    form_with_empty.push(p("extra_common_param", ""));
    assert!(connector::verify_notification(&md5_pairs(), &form_with_empty).is_err());
}

#[test]
fn flat_full_refund_notify_is_refunded() {
    let sorted = FLAT_SORTED
        .replace("gmt_create=", "gmt_close=2014-01-02 10:00:00&gmt_create=")
        .replace(
            "gmt_payment=2014-01-01 12:00:05&",
            "gmt_payment=2014-01-01 12:00:05&gmt_refund=2014-01-02 10:00:00&",
        )
        .replace(
            "notify_id=0123456789abcdef0123456789abcdef01&notify_time=2014-01-01 12:00:05",
            "notify_id=fedcba9876543210fedcba9876543210ff&notify_time=2014-01-02 10:00:01",
        )
        .replace("quantity=1&", "quantity=1&refund_status=REFUND_SUCCESS&")
        .replace("trade_status=TRADE_SUCCESS", "trade_status=TRADE_CLOSED");
    assert_eq!(
        sign::md5_sign(&sorted, KEY),
        "64cbb1c5fe8c5e1afde95dcba082f1a1"
    );
    let form = flat_form(&sorted, "64cbb1c5fe8c5e1afde95dcba082f1a1", "MD5");
    let pending = sent(connector::verify_notification(&md5_pairs(), &form).unwrap());
    let n = done(
        connector::resume_notification(&md5_pairs(), &pending.continuation, ok("true")).unwrap(),
    );
    assert_eq!(n.trade_status, "TRADE_CLOSED");
    assert!(!n.paid);
    assert_eq!(n.event(), TradeEvent::Refunded);
    assert_eq!(n.gmt_close.as_deref(), Some("2014-01-02 10:00:00"));
    // Partial: TRADE_SUCCESS + REFUND_SUCCESS; TRADE_FINISHED stays finished.
    let partial = sorted.replace("trade_status=TRADE_CLOSED", "trade_status=TRADE_SUCCESS");
    let form = flat_form(&partial, &sign::md5_sign(&partial, KEY), "MD5");
    let n = verify_flat_notify(&settings(&md5_pairs()), &form).unwrap();
    assert_eq!(n.event(), TradeEvent::PartiallyRefunded);
    let fin = sorted.replace("trade_status=TRADE_CLOSED", "trade_status=TRADE_FINISHED");
    let form = flat_form(&fin, &sign::md5_sign(&fin, KEY), "MD5");
    let n = verify_flat_notify(&settings(&md5_pairs()), &form).unwrap();
    assert_eq!(n.event(), TradeEvent::Finished);
    // A refunded total above what was paid is not a report to believe.
    let above = partial.replace("quantity=1&", "quantity=1&refund_fee=1000000.00&");
    let form = flat_form(&above, &sign::md5_sign(&above, KEY), "MD5");
    match verify_flat_notify(&settings(&md5_pairs()), &form) {
        Err(PluginError::Malformed(m)) => {
            assert!(m.contains("more than the trade's total_fee"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// Empty values are left out of the signature ([EXTRA §1.4.2]), so an empty copy of a field put in
/// front of the signed one keeps the signature valid. It must not change what the notification
/// says: a repeated field is refused, an added empty one reads as absent.
#[test]
fn a_repeated_or_added_empty_field_cannot_change_a_signed_notification() {
    let sorted = FLAT_SORTED
        .replace("quantity=1&", "quantity=1&refund_status=REFUND_SUCCESS&")
        .replace(
            "gmt_payment=2014-01-01 12:00:05&",
            "gmt_payment=2014-01-01 12:00:05&gmt_refund=2014-01-02 10:00:00&",
        );
    let form = flat_form(&sorted, &sign::md5_sign(&sorted, KEY), "MD5");
    let genuine = verify_flat_notify(&settings(&md5_pairs()), &form).unwrap();
    assert_eq!(genuine.event(), TradeEvent::PartiallyRefunded);

    for field in ["refund_status", "gmt_payment", "trade_status"] {
        let mut forged = vec![p(field, "")];
        forged.extend(form.iter().cloned());
        match connector::verify_notification(&md5_pairs(), &forged) {
            Err(PluginError::Malformed(m)) => {
                assert!(m.contains(field) && m.contains("more than once"), "{m}")
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    // A repeat among thousands of fields is found too (the contract suite's hostile
    // `many_fields` form, 20,000 fields, checks within the component's CPU budget).
    let mut many: Pairs = (0..20_000).map(|i| p(&format!("k{i}"), "v")).collect();
    many.push(p("k19999", ""));
    assert!(matches!(
        connector::verify_notification(&md5_pairs(), &many),
        Err(PluginError::Malformed(m)) if m.contains("k19999")
    ));
    // The same rule for returns.
    let mut query = pc_return(|s| sign::md5_sign(s, KEY), "MD5");
    query.insert(0, p("trade_status", ""));
    assert!(matches!(
        connector::verify_return(&md5_pairs(), &query),
        Err(PluginError::Malformed(_))
    ));

    // A field the genuine one lacks, added empty: the signature still holds, and it reads as
    // absent. A TRADE_SUCCESS with `gmt_refund=` added stays a plain payment.
    let plain = FLAT_SORTED.to_owned();
    let mut form = flat_form(&plain, &sign::md5_sign(&plain, KEY), "MD5");
    form.insert(0, p("gmt_refund", ""));
    form.insert(0, p("refund_fee", ""));
    let n = verify_flat_notify(&settings(&md5_pairs()), &form).unwrap();
    assert_eq!(n.event(), TradeEvent::Paid);
    assert!(n.refund().is_none());
}

/// A setting given twice is refused by every call, not only by validate-settings, and together
/// with every other bad field.
#[test]
fn a_repeated_setting_is_refused_by_every_call() {
    let mut twice = md5_pairs();
    twice.push(p("partner", "2088000000008888"));
    match connector::start_payment(&twice, &order(Product::Wap)) {
        Err(PluginError::InvalidSettings(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "partner");
            assert!(errors[0].reason.contains("more than once"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        connector::query_trade(&twice, "20140101000001"),
        Err(PluginError::InvalidSettings(_))
    ));
    let errors = connector::validate_settings(&[
        p("partner", "1"),
        p("partner", "2"),
        p("key", "bad"),
        p("colour", "red"),
    ])
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert!(
        fields.contains(&"partner") && fields.contains(&"key") && fields.contains(&"colour"),
        "{errors:?}"
    );
    assert_eq!(
        fields.iter().filter(|f| **f == "partner").count(),
        2,
        "{errors:?}"
    );
}

#[test]
fn url_and_out_user_errors_name_the_rule_broken() {
    let long = format!("https://shop.example/{}", "a".repeat(1100));
    for (url, says) in [
        ("ftp://shop.example/n", "http:// or https://"),
        ("https://shop.example/n?x=1", "query string"),
        ("https://shop.example/n#top", "fragment"),
        ("https://shop.example/<n>", "spaces, control characters"),
        (long.as_str(), "at most 1024"),
        ("https://user@shop.example/n", "user name or password"),
    ] {
        let mut o = order(Product::Wap);
        o.notify_url = url.to_owned();
        match connector::start_payment(&md5_pairs(), &o) {
            Err(PluginError::InvalidOrder(e)) => {
                assert_eq!(e.field, "notify_url");
                assert!(e.reason.contains(says), "{url}: {}", e.reason);
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let key = "１".repeat(32);
    let errors = connector::validate_settings(&[p("partner", "2088000000000001"), p("key", &key)])
        .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.field == "key" && e.reason.contains("ASCII")),
        "{errors:?}"
    );

    match connector::list_channels(&md5_pairs(), Some(&"u".repeat(100_000))) {
        Err(PluginError::InvalidOrder(e)) => assert_eq!(e.field, "out_user"),
        other => panic!("{other:?}"),
    }
    assert!(connector::list_channels(&md5_pairs(), Some("")).is_ok());
    assert!(connector::list_channels(&md5_pairs(), Some("buyer-1")).is_ok());
}

/// [WAP §9]: the pay-channel query declares `_input_charset=GBK`, so an `out_user` beyond ASCII
/// is sent and signed in GBK. The known answer is Python's: `md5(content.encode('gbk') + key)`
/// and `quote_plus('用户一'.encode('gbk'))`. A character GBK cannot write is refused.
#[test]
fn a_chinese_out_user_is_sent_and_signed_in_gbk() {
    let q = sent(connector::list_channels(&md5_pairs(), Some("用户一")).unwrap());
    let url = q.request.url;
    assert!(url.contains("&out_user=%D3%C3%BB%A7%D2%BB&"), "{url}");
    assert!(
        url.contains("&sign=76c16ab16680627860a94dd7481b92b5&"),
        "{url}"
    );
    assert!(url.ends_with("&sign_type=MD5"), "{url}");
    // ASCII as before: nothing to convert.
    let q = sent(connector::list_channels(&md5_pairs(), Some("buyer 1")).unwrap());
    assert!(
        q.request.url.contains("out_user=buyer+1&"),
        "{}",
        q.request.url
    );
    match connector::list_channels(&md5_pairs(), Some("买家😀")) {
        Err(PluginError::InvalidOrder(e)) => {
            assert_eq!(e.field, "out_user");
            assert!(e.reason.contains("GBK"), "{}", e.reason);
        }
        other => panic!("{other:?}"),
    }
}

/// [EXTRA §6.3]: two real generation-B app notifies, verified with Alipay's built-in common mapi key;
/// the wire order fails.
#[test]
fn real_app_notifies_verify_with_the_common_key() {
    let cases = [
        (
            "body=缴纳保证金&buyer_email=xxaqch@163.com&buyer_id=2088002578894463&discount=0.00&gmt_create=2015-12-21 13:13:28&gmt_payment=2015-12-21 13:13:28&is_total_fee_adjust=N&notify_id=5104b719303162e2b79d577aeaa5494jjs&notify_time=2015-12-21 13:17:45&notify_type=trade_status_sync&out_trade_no=a378c684be7a4f99be1bf3b56e6d38fd&payment_type=1&price=0.01&quantity=1&seller_email=172886370@qq.com&seller_id=2088121529348920&subject=缴纳保证金&total_fee=0.01&trade_no=2015122121001004460085270336&trade_status=TRADE_SUCCESS&use_coupon=N",
            "YeshUpQO1GsR4KxQtAlPzdlqKUMlTfEunQmwmNI+MJ1T2qzd9WuA6bkoHYMM8BpHxtp5mnFM3rXlfgETVsQcNIiqwCCn1401J/ubOkLi2O/mta2KLxUcmssQ0OnkFIMjjNQuU9N3eIC1Z6SzDkocK092w/f3un4bxkIfILgdRr0=",
        ),
        (
            "body=教育产品&buyer_email=15684090808&buyer_id=2088802186446942&discount=0.00&gmt_create=2016-04-14 09:18:16&gmt_payment=2016-04-14 09:18:17&is_total_fee_adjust=N&notify_id=c239ca14b44250601c143596ae9da4en96&notify_time=2016-04-14 09:18:17&notify_type=trade_status_sync&out_trade_no=1033145705652156214146059668330&payment_type=1&price=0.01&quantity=1&seller_email=gridpay@12xue.com&seller_id=2088221013986745&subject=12xue学币购买&total_fee=0.01&trade_no=2016041421001004940218789525&trade_status=TRADE_SUCCESS&use_coupon=N",
            "cTWX4QtkrydR626oCePf0fXf9TBH/VHYuowNLpLWCkqT9L89zGM1L/4Pah1zNGeBJm/P7zq2dBTY9tgPh3DTdOtlfupAGf7BfMGM8QzlomCVtTfH1APaVeAphTwTec7TsELbba6Tl5Wcg0owgqtJ1Kdz+WaK078vR/7Y/r8u1oI=",
        ),
    ];
    let mapi = sign::parse_public_key(crate::settings::DEFAULT_MAPI_PUBLIC_KEY).unwrap();
    assert_eq!(
        mapi,
        sign::parse_public_key(include_str!("../testdata/mapi_ali_pub.pem")).unwrap()
    );
    for (sorted, sig) in cases {
        let form = flat_form(sorted, sig, "RSA");
        let pending = sent(connector::verify_notification(&rsa_real_mapi_pairs(), &form).unwrap());
        assert!(pending.request.url.contains("notify_id="));
        assert!(sign::rsa_verify(sorted, sig, &mapi).unwrap());
        assert!(!sign::rsa_verify(&wire_string(&form), sig, &mapi).unwrap());
        // The test key standing in for the mapi key refuses it.
        assert!(matches!(
            connector::verify_notification(&rsa_pairs(), &form),
            Err(PluginError::BadSignature(_))
        ));
        // A `+` turned into a space by form transport still verifies.
        let spaced = flat_form(sorted, &sig.replace('+', " "), "RSA");
        sent(connector::verify_notification(&rsa_real_mapi_pairs(), &spaced).unwrap());
    }
    // The real 2015 notify as its raw POST body (form-decoded once).
    let body = "discount=0.00&payment_type=1&subject=%E7%BC%B4%E7%BA%B3%E4%BF%9D%E8%AF%81%E9%87%91&trade_no=2015122121001004460085270336&buyer_email=xxaqch%40163.com&gmt_create=2015-12-21+13%3A13%3A28&notify_type=trade_status_sync&quantity=1&out_trade_no=a378c684be7a4f99be1bf3b56e6d38fd&seller_id=2088121529348920&notify_time=2015-12-21+13%3A17%3A45&body=%E7%BC%B4%E7%BA%B3%E4%BF%9D%E8%AF%81%E9%87%91&trade_status=TRADE_SUCCESS&is_total_fee_adjust=N&total_fee=0.01&gmt_payment=2015-12-21+13%3A13%3A28&seller_email=172886370%40qq.com&price=0.01&buyer_id=2088002578894463&notify_id=5104b719303162e2b79d577aeaa5494jjs&use_coupon=N&sign_type=RSA&sign=YeshUpQO1GsR4KxQtAlPzdlqKUMlTfEunQmwmNI%2BMJ1T2qzd9WuA6bkoHYMM8BpHxtp5mnFM3rXlfgETVsQcNIiqwCCn1401J%2FubOkLi2O%2Fmta2KLxUcmssQ0OnkFIMjjNQuU9N3eIC1Z6SzDkocK092w%2Ff3un4bxkIfILgdRr0%3D";
    let form = crate::transformers::form_decode(body.as_bytes());
    let pending = sent(connector::verify_notification(&rsa_real_mapi_pairs(), &form).unwrap());
    let n = done(
        connector::resume_notification(&rsa_real_mapi_pairs(), &pending.continuation, ok("true"))
            .unwrap(),
    );
    assert_eq!(n.out_trade_no, "a378c684be7a4f99be1bf3b56e6d38fd");
    assert_eq!(n.notify_id, "5104b719303162e2b79d577aeaa5494jjs");
    assert_eq!(n.event(), TradeEvent::Paid);
}

// ---------------------------------------------------------------------------------------------
// App generation-A notify ([EXTRA §6.2])

const APP_A_XML: &str = "<notify><partner>1000000000000000</partner><discount>0.00</discount><payment_type>1</payment_type><subject>测试商品</subject><trade_no>2014010100001000000000000001</trade_no><buyer_email>buyer@example.com</buyer_email><gmt_create>2014-01-01 12:00:00</gmt_create><quantity>1</quantity><out_trade_no>20140101000001</out_trade_no><seller_id>1000000000000000</seller_id><trade_status>TRADE_FINISHED</trade_status><is_total_fee_adjust>N</is_total_fee_adjust><total_fee>0.01</total_fee><gmt_payment>2014-01-01 12:00:05</gmt_payment><seller_email>seller@example.com</seller_email><gmt_close>2014-01-01 12:00:05</gmt_close><price>0.01</price><buyer_id>2088000000000001</buyer_id><use_coupon>N</use_coupon></notify>";
const APP_A_SIGN: &str = "S49onrUhQOs3z8y6ntDFI+0HgoMOkZ96wFreGTX2FyCRswIZYRBy/uL2IUdjx8AB2aCyaUrJkAiTEMOKbz9VEsW4wTGPM4VK5LKf4XknnXEYieCadF1i88rS2yHVRDK2xiblKJs4s0WHIpOrPyRVZ1RjDSjrSpZU3mVpJmWD0K8=";
const APP_A_BARE_SIGN: &str = "I7jsDZd8yn57ztKcmMNy2CSUCJkRt4a6ysE9biNjD6UPs6TzkYvNI17dEhAW19GWHJPq2OqpDDdFQtB0dzZzW/apDorv9o9PnRJi/GtyB6L9N0CDvb/vLueUmTW+Dj2VwlwxQbM1497aQn53iv8YSIeKA/VM4MHPRi0JIzWm6x8=";

fn app_a_form(xml: &str, sig: &str) -> Pairs {
    // Wire order of the C# capture: sign, sign_type, notify_data.
    vec![p("sign", sig), p("sign_type", "RSA"), p("notify_data", xml)]
}

/// Settings for the generation-A vector: the test public key as the per-merchant app key, the
/// real mapi key left as is.
fn app_a_settings() -> Settings {
    let mut pairs = rsa_real_mapi_pairs();
    pairs.push(p("app_alipay_public_key", TEST_PUB));
    vector_settings(&pairs)
}

#[test]
fn app_generation_a_notify_is_done_at_once() {
    let s = app_a_settings();
    let form = app_a_form(APP_A_XML, APP_A_SIGN);
    assert_eq!(notify_kind(&form), NotifyKind::AppA);
    assert_eq!(
        sign::rsa_sign(&app_a_link_string(APP_A_XML), &test_key()).unwrap(),
        APP_A_SIGN
    );
    assert_eq!(
        sign::rsa_sign(APP_A_XML, &test_key()).unwrap(),
        APP_A_BARE_SIGN
    );
    let n = verify_app_a_notify(&s, &form).unwrap();
    assert_eq!(
        n.notify_id,
        "app:2014010100001000000000000001:TRADE_FINISHED"
    );
    assert_eq!(n.out_trade_no, "20140101000001");
    assert_eq!(n.total_fee, "0.01");
    assert_eq!(n.seller_email.as_deref(), Some("seller@example.com"));
    assert_eq!(n.reply, "success");
    assert!(n.paid);
    assert_eq!(n.event(), TradeEvent::Finished);
    assert_eq!(n.fields.len(), 19);
    // Signed over the bare XML (no prefix): refused.
    assert!(matches!(
        verify_app_a_notify(&s, &app_a_form(APP_A_XML, APP_A_BARE_SIGN)),
        Err(PluginError::BadSignature(_))
    ));
    // Without the per-merchant key, only the mapi key is tried: refused.
    let mut no_app_key = s.clone();
    no_app_key.app_public_key = None;
    assert!(verify_app_a_notify(&no_app_key, &form).is_err());
    // Another partner's notify (signed all the same): refused.
    let mut other = s.clone();
    other.partner = "2088000000000001".into();
    assert!(matches!(
        verify_app_a_notify(&other, &form),
        Err(PluginError::BadSignature(m)) if m.contains("partner")
    ));
    // An MD5 merchant never accepts it; nor a sign_type other than RSA.
    let mut md5 = s.clone();
    md5.signer = Signer::Md5 { key: KEY.into() };
    assert!(verify_app_a_notify(&md5, &form).is_err());
    let mut dsa = form.clone();
    dsa[1].1 = "DSA".into();
    assert!(verify_app_a_notify(&s, &dsa).is_err());
    // Through the connector with real pairs (partner 2088…): a notify for that partner, signed
    // with the test key, is `done` at once — no notify_verify.
    let xml = APP_A_XML.replace("1000000000000000</partner>", "2088000000000001</partner>");
    let sig = sign::rsa_sign(&app_a_link_string(&xml), &test_key()).unwrap();
    let mut pairs = rsa_real_mapi_pairs();
    pairs.push(p("app_alipay_public_key", TEST_PUB));
    let n = done(connector::verify_notification(&pairs, &app_a_form(&xml, &sig)).unwrap());
    assert_eq!(n.trade_status, "TRADE_FINISHED");
    // The WAP notify (notify_data + sec_id) still goes the WAP way (fixed order + ATN).
    let wap = vec![
        p("service", "alipay.wap.trade.create.direct"),
        p("sign", "4f6ad165e1a9686249d1cd3be8503d14"),
        p("sec_id", "MD5"),
        p("v", "1.0"),
        p(
            "notify_data",
            crate::transformers::VECTOR_NOTIFY_DATA_FOR_TESTS,
        ),
    ];
    assert_eq!(notify_kind(&wap), NotifyKind::Wap);
    let pending = sent(connector::verify_notification(&md5_pairs(), &wap).unwrap());
    assert!(pending
        .request
        .url
        .ends_with("notify_id=0123456789abcdef0123456789abcdef00"));
}

// ---------------------------------------------------------------------------------------------
// App SDK result ([EXTRA §1.5], [EXTRA §6.2], [EXTRA §6.3])

const RESULT_SIGN_SYNTH: &str = "MIH4IQiOiZSE8CYwQuk/IZq9SDwRqfoKIvp4ANVRFmSUB0lkHnpa1fmgJezH2OlB/tyYnE47X/UyXi5KnerKBRas+tbZtk7X4DunbxZ1BfT2leWtAixLbmCtTPh4TXcjC8eMh9qP3uJvq1ne0TAN8/2RRlTBpeJVnxAsY82VtAY=";
const REAL_RESULT_CONTENT: &str = "partner=\"2088421861254786\"&seller_id=\"yuchuang-tech@innodriver.com\"&out_trade_no=\"0919175144-2017\"&subject=\"Test\"&body=\"Test Body\"&total_fee=\"0.01\"&service=\"mobile.securitypay.pay\"&payment_type=\"1\"&_input_charset=\"utf-8\"&it_b_pay=\"30m\"&success=\"true\"";
const REAL_RESULT_SIGN: &str = "GeGoKwu4dRbVs5JpSJ8ZeOTqCgTab6RhA4mrrjwfRAQvzgAc88UXS2Vv5GIPAn+saW1LncrngFNXw2wBvnAx6+5CFQaCrW2sBxOOVk7578gjQJMuVXxXbz/B+7KvHdvpMKJPl+bN3PMXWOBcKnwMq9ldlXYzwO9wVn5sffIsmPI=";

fn sdk_result(status: &str, content: &str, sig: &str) -> String {
    format!(
        "resultStatus={{{status}}};memo={{}};result={{{content}&sign_type=\"RSA\"&sign=\"{sig}\"}}"
    )
}

#[test]
fn app_results_verify_only_with_success_true() {
    // Synthesised: chloerei's order + success="true", signed with the test key as "Alipay".
    let content = format!("{CHLOEREI_ORDER}&success=\"true\"");
    assert_eq!(
        sign::rsa_sign(&content, &test_key()).unwrap(),
        RESULT_SIGN_SYNTH
    );
    let s = vector_settings(&rsa_pairs());
    let r = verify_app_result(&s, &sdk_result("9000", &content, RESULT_SIGN_SYNTH)).unwrap();
    assert_eq!(r.result_status, "9000");
    assert_eq!(r.out_trade_no, "1");
    assert_eq!(r.partner, "1000000000000000");
    assert_eq!(r.total_fee, "0.01");
    assert_eq!(r.seller_id, "1000000000000000");
    assert_eq!(find(&r.fields, "success"), Some("true"));
    // The same signature without success="true" in the content: refused.
    assert!(matches!(
        verify_app_result(&s, &sdk_result("9000", CHLOEREI_ORDER, RESULT_SIGN_SYNTH)),
        Err(PluginError::BadSignature(_))
    ));
    // Content signed without success (e.g. the merchant's own order string) fails too, even
    // though its signature matches: Alipay always signs success="true".
    let own = sign::rsa_sign(CHLOEREI_ORDER, &test_key()).unwrap();
    assert!(matches!(
        verify_app_result(&s, &sdk_result("9000", CHLOEREI_ORDER, &own)),
        Err(PluginError::BadSignature(m)) if m.contains("success")
    ));
    // success="false" signed: refused.
    let falsy = format!("{CHLOEREI_ORDER}&success=\"false\"");
    let sig = sign::rsa_sign(&falsy, &test_key()).unwrap();
    assert!(verify_app_result(&s, &sdk_result("9000", &falsy, &sig)).is_err());
    // Another partner: refused.
    let mut other = s.clone();
    other.partner = "2088000000000001".into();
    assert!(verify_app_result(&other, &sdk_result("9000", &content, RESULT_SIGN_SYNTH)).is_err());
    // Escaped quotes (as some apps forward it) and a URL-encoded sign are accepted.
    let escaped = sdk_result("9000", &content, RESULT_SIGN_SYNTH).replace('"', "\\\"");
    verify_app_result(&s, &escaped).unwrap();
    let encoded: String = form_urlencoded::byte_serialize(RESULT_SIGN_SYNTH.as_bytes()).collect();
    verify_app_result(&s, &sdk_result("9000", &content, &encoded)).unwrap();
    // Cancelled: nothing signed, the status comes back as a gateway error.
    match verify_app_result(&s, "resultStatus={6001};memo={用户中途取消};result={}") {
        Err(PluginError::Gateway(g)) => {
            assert_eq!(g.code, "6001");
            assert_eq!(g.msg, "用户中途取消");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        verify_app_result(&s, "garbage"),
        Err(PluginError::Malformed(_))
    ));
}

#[test]
fn real_app_result_verifies_with_the_common_key() {
    let mut pairs = rsa_real_mapi_pairs();
    pairs[0].1 = "2088421861254786".into();
    let text = sdk_result("9000", REAL_RESULT_CONTENT, REAL_RESULT_SIGN);
    let r = connector::verify_app_result(&pairs, &text).unwrap();
    assert_eq!(r.out_trade_no, "0919175144-2017");
    assert_eq!(r.seller_id, "yuchuang-tech@innodriver.com");
    assert_eq!(r.total_fee, "0.01");
    // Without &success="true": the signature no longer verifies.
    let without = REAL_RESULT_CONTENT.replace("&success=\"true\"", "");
    let mapi = sign::parse_public_key(crate::settings::DEFAULT_MAPI_PUBLIC_KEY).unwrap();
    assert!(!sign::rsa_verify(&without, REAL_RESULT_SIGN, &mapi).unwrap());
    assert!(matches!(
        connector::verify_app_result(&pairs, &sdk_result("9000", &without, REAL_RESULT_SIGN)),
        Err(PluginError::BadSignature(_))
    ));
    // The test key as the mapi key: refused; as an extra per-merchant key: the mapi key still
    // verifies.
    let mut test_as_mapi = pairs.clone();
    test_as_mapi.push(p("mapi_public_key", TEST_PUB));
    assert!(connector::verify_app_result(&test_as_mapi, &text).is_err());
    let mut both = pairs.clone();
    both.push(p("app_alipay_public_key", TEST_PUB));
    connector::verify_app_result(&both, &text).unwrap();
}

// ---------------------------------------------------------------------------------------------
// single_trade_query ([EXTRA §3], [EXTRA §6.2])

#[test]
fn query_request_vectors() {
    let s = vector_settings(&md5_pairs());
    for (key, value, sig) in [
        (
            "out_trade_no",
            "20140101000001",
            "092721c516a2ad780556babb6d328590",
        ),
        (
            "trade_no",
            "2014010100001000000000000001",
            "399111725b0a64d61e65e1843110bacf",
        ),
    ] {
        let url = query_url(&s, key, value).unwrap();
        assert_eq!(
            url,
            format!("https://mapi.alipay.com/gateway.do?service=single_trade_query&partner=1000000000000000&_input_charset=utf-8&{key}={value}&sign={sig}&sign_type=MD5")
        );
    }
    let pending = sent(connector::query_trade(&md5_pairs(), "20140101000001").unwrap());
    assert_eq!(pending.request.method, HttpMethod::Get);
    assert!(pending
        .request
        .url
        .contains("&out_trade_no=20140101000001&sign="));
    assert!(connector::query_trade(&md5_pairs(), "").is_err());
    let rsa = sent(connector::query_trade(&rsa_pairs(), "1").unwrap());
    assert!(rsa.request.url.ends_with("&sign_type=RSA"));
}

fn query_answer(trade: &str, sign: Option<&str>) -> String {
    let sign = sign
        .map(|s| format!("<sign>{s}</sign><sign_type>MD5</sign_type>"))
        .unwrap_or_default();
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<alipay>\n<is_success>T</is_success>\n<request><param name=\"_input_charset\">utf-8</param><param name=\"service\">single_trade_query</param><param name=\"partner\">2088000000000001</param><param name=\"out_trade_no\">20140101000001</param></request>\n<response><trade>{trade}</trade></response>\n{sign}</alipay>")
}

const PAID_TRADE: &str = "<buyer_email>buyer@example.com</buyer_email><buyer_id>2088000000000002</buyer_id><discount>0.00</discount><flag_trade_locked>0</flag_trade_locked><gmt_create>2014-01-01 12:00:00</gmt_create><gmt_last_modified_time>2014-01-01 12:00:05</gmt_last_modified_time><gmt_payment>2014-01-01 12:00:05</gmt_payment><is_total_fee_adjust>F</is_total_fee_adjust><operator_role>B</operator_role><out_trade_no>20140101000001</out_trade_no><payment_type>1</payment_type><price>0.01</price><quantity>1</quantity><seller_email>seller@example.com</seller_email><seller_id>2088000000000001</seller_id><subject>测试商品</subject><time_out>2014-04-01 12:00:05</time_out><time_out_type>finishFPAction</time_out_type><to_buyer_fee>0.00</to_buyer_fee><to_seller_fee>0.01</to_seller_fee><total_fee>0.01</total_fee><trade_no>2014010100001000000000000001</trade_no><trade_status>TRADE_SUCCESS</trade_status><use_coupon>F</use_coupon>";

fn run_query(pairs: &[(String, String)], body: &str) -> Result<TradeQuery, PluginError> {
    let pending = sent(connector::query_trade(pairs, "20140101000001").unwrap());
    connector::resume_query(pairs, &pending.continuation, ok(body)).map(done)
}

#[test]
fn query_paid_trade_maps_to_a_notification() {
    let q = run_query(&md5_pairs(), &query_answer(PAID_TRADE, None)).unwrap();
    assert!(q.found);
    assert_eq!(q.trade_no, "2014010100001000000000000001");
    assert_eq!(q.trade_status, "TRADE_SUCCESS");
    assert_eq!(q.event, TradeEvent::Paid);
    assert_eq!(q.total_fee, "0.01");
    assert_eq!(q.refund_fee, None);
    assert_eq!(q.seller_id.as_deref(), Some("2088000000000001"));
    assert_eq!(q.buyer_email.as_deref(), Some("buyer@example.com"));
    assert_eq!(q.gmt_payment.as_deref(), Some("2014-01-01 12:00:05"));
    assert!(!q.signature_verified);
    assert_eq!(q.fields.len(), 24);
    let n = q.notification.unwrap();
    assert_eq!(
        n.notify_id,
        "query:2014010100001000000000000001:TRADE_SUCCESS"
    );
    assert!(n.paid);
    assert_eq!(n.reply, "");
    // The host's match-order path accepts it as it would the notify.
    let expect = crate::model::OrderExpectation {
        out_trade_no: "20140101000001".into(),
        total_fee: "0.01".into(),
        seller: "seller@example.com".into(),
    };
    connector::match_order(&n, &expect).unwrap();
    // An expectation that is not an amount is said as the caller's mistake, not a difference;
    // one of another amount is a difference.
    for (expected, said) in [
        ("0.010", "is not an amount"),
        (" 0.01", "is not an amount"),
        ("0.02", "the notification says 0.01 but the order is 0.02"),
    ] {
        let wrong = crate::model::OrderExpectation {
            total_fee: expected.into(),
            ..expect.clone()
        };
        let errors = connector::match_order(&n, &wrong).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "total_fee");
        assert!(errors[0].reason.contains(said), "{expected}: {errors:?}");
    }
    // The same state queried again gives the same id.
    let again = run_query(&md5_pairs(), &query_answer(PAID_TRADE, None)).unwrap();
    assert_eq!(again.notification.unwrap().notify_id, n.notify_id);
}

/// The sorted `<trade>` of [`PAID_TRADE`] as signed (computed independently: Python's sorted()
/// over the non-empty elements).
const PAID_TRADE_CONTENT: &str = "buyer_email=buyer@example.com&buyer_id=2088000000000002&discount=0.00&flag_trade_locked=0&gmt_create=2014-01-01 12:00:00&gmt_last_modified_time=2014-01-01 12:00:05&gmt_payment=2014-01-01 12:00:05&is_total_fee_adjust=F&operator_role=B&out_trade_no=20140101000001&payment_type=1&price=0.01&quantity=1&seller_email=seller@example.com&seller_id=2088000000000001&subject=测试商品&time_out=2014-04-01 12:00:05&time_out_type=finishFPAction&to_buyer_fee=0.00&to_seller_fee=0.01&total_fee=0.01&trade_no=2014010100001000000000000001&trade_status=TRADE_SUCCESS&use_coupon=F";
/// `md5(PAID_TRADE_CONTENT + KEY)` by Python's hashlib.
const PAID_TRADE_MD5: &str = "ea8246012a729944d88c74fb8f3c4665";
/// `openssl dgst -sha1 -sign test_priv.pem` over `PAID_TRADE_CONTENT`, base64.
const PAID_TRADE_RSA: &str = "MIOYbbYXZi/TlJ8Zd61Pfb4Qo/u0XNO8dGgLSDZ2RQDeXoQEvW0o4DDSnLILz5g4M6ceOMGpExmQiCBgMnHV+hoCayUXRKv+yCgYn8JLq45+X/JaZP9UrKPlZf8KneIoihauTVdhmUoPzg+gV8mCqzXKCMc85JDzwKgtbcqIR9M=";

fn signed_answer(trade: &str, sign: &str, sign_type: &str) -> String {
    query_answer(trade, None).replace(
        "</alipay>",
        &format!("<sign>{sign}</sign><sign_type>{sign_type}</sign_type></alipay>"),
    )
}

/// [EXTRA §3.2]: the signed string of the answer's `<sign>` is not established, so it is checked
/// (sorted `<trade>`, MD5 or RSA) and reported, never enforced: an answer is accepted on its
/// cross-checks (order, partner, a seller), as the reference recommends.
#[test]
fn query_answer_signatures_are_reported_not_enforced() {
    let trade_pairs = xml::parse_leaves(&format!("<t>{PAID_TRADE}</t>"), "t", 1).unwrap();
    assert_eq!(
        sign::sorted_link_string(trade_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        PAID_TRADE_CONTENT
    );
    // Correctly signed answers pass, and say so.
    let md5 = run_query(
        &md5_pairs(),
        &query_answer(PAID_TRADE, Some(PAID_TRADE_MD5)),
    )
    .unwrap();
    assert!(md5.found && md5.signature_verified);
    let rsa = run_query(
        &rsa_pairs(),
        &signed_answer(PAID_TRADE, PAID_TRADE_RSA, "RSA"),
    )
    .unwrap();
    assert!(rsa.found && rsa.signature_verified);
    assert_eq!(rsa.trade_status, "TRADE_SUCCESS");

    // An all-zero sign, a sign of another merchant's key, a tampered field: reported as not
    // verified, the answer still read (a genuine answer signed by another rule reads the same).
    let unverified = |pairs: &Pairs, body: &str| match run_query(pairs, body) {
        Ok(q) => assert!(q.found && !q.signature_verified, "{q:?}"),
        other => panic!("expected an unverified answer, got {other:?}"),
    };
    unverified(
        &md5_pairs(),
        &query_answer(PAID_TRADE, Some(&"0".repeat(32))),
    );
    let other_key = sign::md5_sign(PAID_TRADE_CONTENT, "20000000000000000000000000000000");
    unverified(&md5_pairs(), &query_answer(PAID_TRADE, Some(&other_key)));
    let tampered = PAID_TRADE.replace(
        "<total_fee>0.01</total_fee>",
        "<total_fee>100.00</total_fee>",
    );
    unverified(&md5_pairs(), &query_answer(&tampered, Some(PAID_TRADE_MD5)));
    let to_closed = PAID_TRADE.replace("TRADE_SUCCESS", "TRADE_CLOSED");
    unverified(
        &rsa_pairs(),
        &signed_answer(&to_closed, PAID_TRADE_RSA, "RSA"),
    );
    unverified(
        &rsa_pairs(),
        &signed_answer(PAID_TRADE, &"A".repeat(172), "RSA"),
    );
    // An MD5-signed answer for an RSA merchant (a downgrade) does not verify either.
    unverified(
        &rsa_pairs(),
        &query_answer(PAID_TRADE, Some(PAID_TRADE_MD5)),
    );

    // Unsigned: accepted, not marked verified; the cross-checks still refuse another order or
    // another partner.
    let unsigned = run_query(&md5_pairs(), &query_answer(PAID_TRADE, None)).unwrap();
    assert!(unsigned.found && !unsigned.signature_verified);
    let other_order = PAID_TRADE.replace("20140101000001", "20140101000002");
    assert!(matches!(
        run_query(&md5_pairs(), &query_answer(&other_order, None)),
        Err(PluginError::Malformed(_))
    ));
    let other_partner = query_answer(PAID_TRADE, None)
        .replace("2088000000000001</param>", "2088999999999999</param>");
    assert!(matches!(
        run_query(&md5_pairs(), &other_partner),
        Err(PluginError::Malformed(_))
    ));
    // An answer that names no seller cannot be checked against the order's: refused.
    let no_seller = PAID_TRADE
        .replace("<seller_email>seller@example.com</seller_email>", "")
        .replace(
            "<seller_id>2088000000000001</seller_id>",
            "<seller_id></seller_id>",
        );
    match run_query(&md5_pairs(), &query_answer(&no_seller, None)) {
        Err(PluginError::Malformed(m)) => assert!(m.contains("names no seller"), "{m}"),
        other => panic!("{other:?}"),
    }
    // One of the two is enough (the host's match-order compares it with the order's seller).
    let id_only = PAID_TRADE.replace("<seller_email>seller@example.com</seller_email>", "");
    assert!(
        run_query(&md5_pairs(), &query_answer(&id_only, None))
            .unwrap()
            .found
    );
}

#[test]
fn query_refunds_closes_and_errors() {
    // Partial refund (2015-03-18 capture shape).
    let partial = PAID_TRADE
        .replace("<price>0.01</price>", "<price>0.10</price>")
        .replace("<total_fee>0.01</total_fee>", "<total_fee>0.10</total_fee>")
        .replace(
            "<quantity>1</quantity>",
            "<quantity>1</quantity><refund_fee>0.03</refund_fee><refund_flow_type>1</refund_flow_type><refund_status>REFUND_SUCCESS</refund_status>",
        )
        .replace("<to_buyer_fee>0.00</to_buyer_fee>", "<to_buyer_fee>0.03</to_buyer_fee>");
    let q = run_query(&md5_pairs(), &query_answer(&partial, None)).unwrap();
    assert_eq!(q.event, TradeEvent::PartiallyRefunded);
    assert_eq!(q.refund_fee.as_deref(), Some("0.03"));
    assert_eq!(
        q.notification.unwrap().notify_id,
        "query:2014010100001000000000000001:TRADE_SUCCESS:REFUND_SUCCESS:0.03"
    );
    // Full refund (2016-08-11 capture shape): TRADE_CLOSED + REFUND_SUCCESS.
    let full = partial
        .replace(
            "<refund_fee>0.03</refund_fee>",
            "<refund_fee>0.10</refund_fee>",
        )
        .replace("TRADE_SUCCESS", "TRADE_CLOSED");
    let q = run_query(&md5_pairs(), &query_answer(&full, None)).unwrap();
    assert_eq!(q.event, TradeEvent::Refunded);
    assert!(!q.notification.unwrap().paid);
    // TRADE_CLOSED without refund fields but with gmt_payment: paid, then refunded ([EXTRA §3.4]).
    let closed_paid = PAID_TRADE.replace("TRADE_SUCCESS", "TRADE_CLOSED");
    assert_eq!(
        run_query(&md5_pairs(), &query_answer(&closed_paid, None))
            .unwrap()
            .event,
        TradeEvent::Refunded
    );
    // Closed unpaid (timeout): no gmt_payment, to_buyer_fee 0.00.
    let closed = closed_paid.replace("<gmt_payment>2014-01-01 12:00:05</gmt_payment>", "");
    assert_eq!(
        run_query(&md5_pairs(), &query_answer(&closed, None))
            .unwrap()
            .event,
        TradeEvent::Closed
    );
    let waiting = closed.replace("TRADE_CLOSED", "WAIT_BUYER_PAY");
    let q = run_query(&md5_pairs(), &query_answer(&waiting, None)).unwrap();
    assert_eq!(q.event, TradeEvent::Waiting);
    assert!(!q.notification.unwrap().paid);
    // TRADE_FINISHED.
    let fin = PAID_TRADE.replace("TRADE_SUCCESS", "TRADE_FINISHED");
    assert_eq!(
        run_query(&md5_pairs(), &query_answer(&fin, None))
            .unwrap()
            .event,
        TradeEvent::Finished
    );
    // Not found.
    let q = run_query(
        &md5_pairs(),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>F</is_success><error>TRADE_NOT_EXIST</error></alipay>",
    )
    .unwrap();
    assert!(!q.found);
    assert_eq!(q.out_trade_no, "20140101000001");
    assert!(q.notification.is_none());
    assert_eq!(q.event, TradeEvent::Waiting);
    // Other errors are typed gateway errors (GBK-declared too).
    for (code, body) in [
        ("ILLEGAL_PARTNER", "<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>F</is_success><error>ILLEGAL_PARTNER</error></alipay>"),
        ("ILLEGAL_SIGN", "<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>F</is_success><error>ILLEGAL_SIGN</error></alipay>"),
        ("UNKNOWN", "<alipay><is_success>F</is_success></alipay>"),
    ] {
        match run_query(&md5_pairs(), body) {
            Err(PluginError::Gateway(g)) => assert_eq!(g.code, code),
            other => panic!("{code}: {other:?}"),
        }
    }
    // Another order, another partner, nonsense: malformed.
    let other_order = PAID_TRADE.replace(
        "<out_trade_no>20140101000001</out_trade_no>",
        "<out_trade_no>2</out_trade_no>",
    );
    for body in [
        query_answer(&other_order, None),
        query_answer(PAID_TRADE, None).replace(
            "name=\"partner\">2088000000000001",
            "name=\"partner\">2088000000000009",
        ),
        "<alipay><is_success>T</is_success></alipay>".to_owned(),
        "<alipay><is_success>X</is_success></alipay>".to_owned(),
        "<html>502</html>".to_owned(),
        query_answer(
            &PAID_TRADE.replace("<total_fee>0.01", "<total_fee>abc"),
            None,
        ),
    ] {
        assert!(
            matches!(
                run_query(&md5_pairs(), &body),
                Err(PluginError::Malformed(_))
            ),
            "{body:.120}"
        );
    }
    // GBK bytes in a GBK answer decode.
    let gbk: Vec<u8> = {
        let answer = query_answer(PAID_TRADE, None);
        let (bytes, _, _) = encoding_rs::GBK.encode(&answer);
        bytes.into_owned()
    };
    let pending = sent(connector::query_trade(&md5_pairs(), "20140101000001").unwrap());
    let q = done(
        connector::resume_query(
            &md5_pairs(),
            &pending.continuation,
            Ok(HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: gbk,
            }),
        )
        .unwrap(),
    );
    assert_eq!(find(&q.fields, "subject"), Some("测试商品"));
    // Transport failures and foreign continuations.
    assert!(matches!(
        connector::resume_query(
            &md5_pairs(),
            &pending.continuation,
            Ok(HttpResponse {
                status: 502,
                ..Default::default()
            })
        ),
        Err(PluginError::Transport(_))
    ));
    assert!(matches!(
        connector::resume_query(
            &md5_pairs(),
            &pending.continuation,
            Err(SendFailure::Timeout("slow".into()))
        ),
        Err(PluginError::Timeout(_))
    ));
    let channels = sent(connector::list_channels(&md5_pairs(), None).unwrap());
    assert!(matches!(
        connector::resume_query(&md5_pairs(), &channels.continuation, ok("")),
        Err(PluginError::Malformed(_))
    ));
}

#[test]
fn new_settings_validate_and_normalise() {
    let s = settings(&md5_pairs());
    assert_eq!(s.mapi_url, "https://mapi.alipay.com/gateway.do");
    assert!(s.app_public_key.is_none());
    let mut pairs = md5_pairs();
    pairs.push(p("mapi_url", "https://sandbox.example/gateway.do"));
    pairs.push(p("app_alipay_public_key", TEST_PUB));
    pairs.push(p("mapi_public_key", TEST_PUB));
    let (s, norm) = validate(&pairs).unwrap();
    assert_eq!(s.mapi_url, "https://sandbox.example/gateway.do");
    assert!(s.app_public_key.is_some());
    for k in ["mapi_url", "app_alipay_public_key", "mapi_public_key"] {
        assert!(norm.iter().any(|(n, _)| n == k), "{k}");
    }
    let mut bad = md5_pairs();
    bad.push(p("mapi_url", "ftp://x"));
    bad.push(p("mapi_public_key", "not a key"));
    bad.push(p("app_alipay_public_key", "-----BEGIN CERTIFICATE-----"));
    let errs = validate(&bad).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["mapi_url", "mapi_public_key", "app_alipay_public_key"]
    );
}

// ---------------------------------------------------------------------------------------------
// An independent implementation of each new signature rule: OpenSSL.

/// Runs `openssl` with `input` on stdin; None (with the reason printed) when it is missing.
fn openssl(args: &[&str], input: &[u8]) -> Option<std::process::Output> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: openssl is not available ({e})");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(input).unwrap();
    Some(child.wait_with_output().unwrap())
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "alipay-mapi-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("priv.pem"), TEST_PRIV).unwrap();
        std::fs::write(dir.join("pub.pem"), TEST_PUB).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// `openssl dgst -sha1 -sign`, base64.
    fn sign(&self, content: &str) -> Option<String> {
        use base64::Engine as _;
        let out = openssl(
            &["dgst", "-sha1", "-sign", &self.path("priv.pem")],
            content.as_bytes(),
        )?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(base64::engine::general_purpose::STANDARD.encode(out.stdout))
    }

    /// `openssl dgst -sha1 -verify`.
    fn verify(&self, content: &str, sig_b64: &str) -> Option<bool> {
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .unwrap();
        let sig_path = self.path("sig.bin");
        std::fs::write(&sig_path, sig).unwrap();
        let out = openssl(
            &[
                "dgst",
                "-sha1",
                "-verify",
                &self.path("pub.pem"),
                "-signature",
                &sig_path,
            ],
            content.as_bytes(),
        )?;
        Some(out.status.success())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn openssl_agrees_with_every_new_signature_rule() {
    let tmp = TempDir::new("rules");
    // 1. The app order string: openssl verifies our signature over the quoted content.
    let s = done(connector::start_payment(&rsa_pairs(), &order(Product::App)).unwrap())
        .order_string
        .unwrap();
    let (content, tail) = s.split_once("&sign=\"").unwrap();
    let encoded = tail.split_once('"').unwrap().0;
    let raw = form_urlencoded::parse(format!("s={encoded}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let Some(verified) = tmp.verify(content, &raw) else {
        return;
    };
    assert!(verified, "openssl refuses the app order string's signature");
    assert_eq!(tmp.verify(&format!("{content} "), &raw), Some(false));

    // 2. Generation-A notify: openssl signs "notify_data=" + xml; we verify; the bare XML fails.
    let xml = APP_A_XML;
    let sig = tmp.sign(&format!("notify_data={xml}")).unwrap();
    assert_eq!(sig, APP_A_SIGN);
    verify_app_a_notify(&app_a_settings(), &app_a_form(xml, &sig)).unwrap();
    let bare = tmp.sign(xml).unwrap();
    assert!(verify_app_a_notify(&app_a_settings(), &app_a_form(xml, &bare)).is_err());

    // 3. Flat notify (PC RSA / app generation B): openssl signs the sorted string; the wire
    //    order signed by openssl fails.
    let sig = tmp.sign(FLAT_SORTED).unwrap();
    assert_eq!(sig, FLAT_RSA);
    let form = flat_form(FLAT_SORTED, &sig, "RSA");
    sent(connector::verify_notification(&rsa_pairs(), &form).unwrap());
    let wire_sig = tmp.sign(&wire_string(&form)).unwrap();
    assert!(connector::verify_notification(
        &rsa_pairs(),
        &flat_form(FLAT_SORTED, &wire_sig, "RSA")
    )
    .is_err());

    // 4. The PC RSA redirect: openssl verifies our sign over the sorted parameters.
    let r = done(connector::start_payment(&rsa_pairs(), &order(Product::Pc)).unwrap()).redirect;
    let content = sign::sorted_link_string(r.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        tmp.verify(&content, find(&r.fields, "sign").unwrap()),
        Some(true)
    );

    // 5. The SDK result: openssl signs the content with success="true"; we verify. Signed
    //    without it, we refuse.
    let content = format!("{CHLOEREI_ORDER}&success=\"true\"");
    let sig = tmp.sign(&content).unwrap();
    assert_eq!(sig, RESULT_SIGN_SYNTH);
    let s = vector_settings(&rsa_pairs());
    verify_app_result(&s, &sdk_result("9000", &content, &sig)).unwrap();
    let sig = tmp.sign(CHLOEREI_ORDER).unwrap();
    assert!(verify_app_result(&s, &sdk_result("9000", CHLOEREI_ORDER, &sig)).is_err());

    // 6. The real result and notifies verify with openssl and the common key file too.
    std::fs::write(
        tmp.path("pub.pem"),
        include_str!("../testdata/mapi_ali_pub.pem"),
    )
    .unwrap();
    assert_eq!(
        tmp.verify(REAL_RESULT_CONTENT, REAL_RESULT_SIGN),
        Some(true)
    );
    assert_eq!(
        tmp.verify(
            &REAL_RESULT_CONTENT.replace("&success=\"true\"", ""),
            REAL_RESULT_SIGN
        ),
        Some(false)
    );
}

/// [EXTRA §5], the listed disagreements, each side tested.
#[test]
fn disagreements_both_sides() {
    // 1. Quoted vs unquoted signing (mytharcher): our signature covers the quotes, so it does not
    //    verify over the unquoted string.
    let s = done(connector::start_payment(&rsa_pairs(), &order(Product::App)).unwrap())
        .order_string
        .unwrap();
    let (content, tail) = s.split_once("&sign=\"").unwrap();
    let raw: String =
        form_urlencoded::parse(format!("s={}", tail.split_once('"').unwrap().0).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
    let public = sign::parse_public_key(TEST_PUB).unwrap();
    assert!(sign::rsa_verify(content, &raw, &public).unwrap());
    let unquoted = content.replace('"', "");
    assert!(!sign::rsa_verify(&unquoted, &raw, &public).unwrap());
    // 2. Fixed vs sorted order of a result's content: the content is verified as received, in
    //    whatever order it was signed.
    let sorted = sign::sorted_link_string(
        parse_quoted(CHLOEREI_ORDER)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let requoted: Vec<(&str, &str)> = sorted
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let content = format!("{}&success=\"true\"", quoted_link_string(&requoted));
    let sig = sign::rsa_sign(&content, &test_key()).unwrap();
    let settings = vector_settings(&rsa_pairs());
    verify_app_result(&settings, &sdk_result("9000", &content, &sig)).unwrap();
    // 7. notify_id missing: a notify needs it (ATN), a PC return does not (signature only).
    let no_id: String = FLAT_SORTED
        .split('&')
        .filter(|kv| !kv.starts_with("notify_id="))
        .collect::<Vec<_>>()
        .join("&");
    let form = flat_form(&no_id, &sign::md5_sign(&no_id, KEY), "MD5");
    assert!(matches!(
        connector::verify_notification(&md5_pairs(), &form),
        Err(PluginError::Malformed(m)) if m.contains("notify_id")
    ));
    let mut q = pc_return(|c| sign::md5_sign(c, KEY), "MD5");
    q.retain(|(k, _)| k != "notify_id");
    let content = sign::sorted_link_string(q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    q.iter_mut().find(|(k, _)| k == "sign").unwrap().1 = sign::md5_sign(&content, KEY);
    connector::verify_return(&md5_pairs(), &q).unwrap();
    // 8. A notify_id with `+` and `/` is URL-encoded in the notify_verify URL.
    let odd = FLAT_SORTED.replace(
        "notify_id=0123456789abcdef0123456789abcdef01",
        "notify_id=RqPnCoPT3K9/vwbh3I+ODmZS9o4",
    );
    let form = flat_form(&odd, &sign::md5_sign(&odd, KEY), "MD5");
    let pending = sent(connector::verify_notification(&md5_pairs(), &form).unwrap());
    assert!(pending
        .request
        .url
        .ends_with("notify_id=RqPnCoPT3K9%2Fvwbh3I%2BODmZS9o4"));
    // 10. DSA is implemented nowhere: refused for MD5 and RSA merchants alike.
    for pairs in [md5_pairs(), rsa_pairs()] {
        let form = flat_form(FLAT_SORTED, FLAT_MD5, "DSA");
        assert!(matches!(
            connector::verify_notification(&pairs, &form),
            Err(PluginError::BadSignature(_))
        ));
    }
}

/// The new parsers never panic on mangled input (a cheap stand-in for the fuzz targets, which
/// live outside this crate): truncations and byte flips of real inputs.
#[test]
fn mangled_inputs_are_errors_not_panics() {
    let md5 = settings(&md5_pairs());
    let rsa = app_a_settings();
    let result = sdk_result("9000", REAL_RESULT_CONTENT, REAL_RESULT_SIGN);
    let query = query_answer(PAID_TRADE, Some("00"));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..600 {
        for input in [&result, &query, &APP_A_XML.to_owned()] {
            let mut bytes = input.as_bytes().to_vec();
            if round % 2 == 0 {
                bytes.truncate((next() as usize) % (bytes.len() + 1));
            }
            for _ in 0..(round % 5) {
                let i = (next() as usize) % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(i) {
                    *b = b"{}<>&=\"/ ax\xff"[(next() as usize) % 12];
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = verify_app_result(&rsa, &text);
            let _ = parse_query_response(&md5, "20140101000001", &bytes);
            let _ = verify_app_a_notify(&rsa, &app_a_form(&text, APP_A_SIGN));
            let _ = connector::verify_notification(&md5_pairs(), &[p("notify_data", &text)]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Refunds with the seller's password ([EXTRA §4.2]) and the 0.4.0 flows of a legacy merchant

fn refund_request() -> crate::model::RefundRequest {
    crate::model::RefundRequest {
        out_trade_no: "20140101000001".into(),
        trade_no: "2024052022001400000000000001".into(),
        amount: "10".into(),
        total_fee: "88.88".into(),
        reason: "协商退款".into(),
        request_no: "20240521001".into(),
        request_time: "2024-05-21 09:00:00".into(),
        notify_url: "https://shop.example/notify".into(),
    }
}

/// The refund redirect's signing string is the sorted rule over the batch's parameters
/// (`batch_no`, `batch_num=1`, `detail_data=trade_no^amount^reason`, `refund_date`,
/// `notify_url`), and its MD5 the known answer computed independently (Python `hashlib.md5`
/// over the same string and the key).
#[test]
fn legacy_refund_redirect_is_signed_by_the_sorted_rule() {
    let state = done(connector::start_refund(&md5_pairs(), &refund_request()).unwrap());
    assert_eq!(state.status, crate::model::RefundStatus::Pending);
    assert_eq!(state.request_no, "20240521001");
    let confirm = state.confirm.expect("the seller confirms on Alipay's page");
    assert!(confirm
        .url
        .starts_with("https://mapi.alipay.com/gateway.do?service=refund_fastpay_by_platform_pwd&"));
    let fields = &confirm.fields;
    let content = sign::sorted_link_string(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        content,
        "_input_charset=utf-8&batch_no=20240521001&batch_num=1&detail_data=2024052022001400000000000001^10.00^协商退款&notify_url=https://shop.example/notify&partner=2088000000000001&refund_date=2024-05-21 09:00:00&seller_user_id=2088000000000001&service=refund_fastpay_by_platform_pwd"
    );
    assert_eq!(
        find(fields, "sign"),
        Some("e01a03645fa8ed36e853b6a48d7b5caa")
    );
    assert_eq!(find(fields, "sign_type"), Some("MD5"));
    // The GET URL carries the same fields.
    let query: Pairs = form_urlencoded::parse(confirm.url.split_once('?').unwrap().1.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(&query, fields);
    // An RSA merchant signs the same string with its key (sign_type RSA).
    let state = done(connector::start_refund(&rsa_pairs(), &refund_request()).unwrap());
    let fields = state.confirm.unwrap().fields;
    let content = sign::sorted_link_string(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let public = sign::parse_public_key(TEST_PUB).unwrap();
    assert!(sign::rsa_verify(&content, find(&fields, "sign").unwrap(), &public).unwrap());
    assert_eq!(find(&fields, "sign_type"), Some("RSA"));
}

#[test]
fn legacy_refund_requests_are_checked() {
    let bad = |f: fn(&mut crate::model::RefundRequest), field: &str| {
        let mut r = refund_request();
        f(&mut r);
        match connector::start_refund(&md5_pairs(), &r) {
            Err(PluginError::InvalidOrder(e)) => assert_eq!(e.field, field),
            other => panic!("{field}: {other:?}"),
        }
    };
    bad(|r| r.request_no = "20241321001".into(), "request_no");
    bad(|r| r.request_no = "2024052101".into(), "request_no");
    bad(|r| r.request_no = "RF20240521001".into(), "request_no");
    bad(|r| r.amount = "88.89".into(), "amount");
    bad(|r| r.amount = "1.001".into(), "amount");
    bad(|r| r.trade_no = String::new(), "trade_no");
    bad(
        |r| r.request_time = "2024-05-21T09:00:00".into(),
        "request_time",
    );
    bad(|r| r.notify_url = "ftp://x".into(), "notify_url");
    // `^`, `#` and `|` would break detail_data: they become spaces.
    let mut r = refund_request();
    r.reason = "a^b#c|d".into();
    let fields = done(connector::start_refund(&md5_pairs(), &r).unwrap())
        .confirm
        .unwrap()
        .fields;
    assert_eq!(
        find(&fields, "detail_data"),
        Some("2024052022001400000000000001^10.00^a b c d")
    );
}

/// `request_time` is a real date and time, not only its shape: month 13, 30 February, 29
/// February of a common year, hour 24, minute or second 60 are refused naming the field and the
/// rule; 29 February of a leap year and the last second of a day pass.
#[test]
fn legacy_refund_request_time_is_a_real_date_and_time() {
    let start = |t: &str| {
        let mut r = refund_request();
        r.request_time = t.into();
        connector::start_refund(&md5_pairs(), &r)
    };
    for bad in [
        "2026-13-45 25:61:61",
        "2026-13-01 09:00:00",
        "2026-00-01 09:00:00",
        "2026-02-30 09:00:00",
        "2026-02-29 09:00:00",
        "2100-02-29 09:00:00",
        "2026-04-31 09:00:00",
        "2026-01-00 09:00:00",
        "2026-05-21 24:00:00",
        "2026-05-21 09:60:00",
        "2026-05-21 09:00:60",
    ] {
        match start(bad) {
            Err(PluginError::InvalidOrder(e)) => {
                assert_eq!(e.field, "request_time", "{bad}");
                assert_eq!(
                    e.reason,
                    format!("must be a real Beijing date and time YYYY-MM-DD HH:MM:SS (month 01-12, a day the month has, 29 February only in a leap year, hour 00-23, minute and second 00-59); {bad} is not"),
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    for good in [
        "2028-02-29 09:00:00",
        "2000-02-29 00:00:00",
        "2026-12-31 23:59:59",
        "2026-04-30 12:30:45",
    ] {
        let state = done(start(good).unwrap_or_else(|e| panic!("{good}: {e:?}")));
        assert_eq!(
            find(&state.confirm.unwrap().fields, "refund_date"),
            Some(good)
        );
    }
    // The shape keeps its own rule.
    match start("2024-05-21 9:00:00") {
        Err(PluginError::InvalidOrder(e)) => assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("request_time", "must be Beijing time YYYY-MM-DD HH:MM:SS")
        ),
        other => panic!("{other:?}"),
    }
}

fn batch_notify(result: &str) -> Pairs {
    vec![
        p("notify_time", "2024-05-21 09:01:00"),
        p("notify_type", "batch_refund_notify"),
        p("notify_id", "abc123"),
        p("batch_no", "20240521001"),
        p("success_num", "1"),
        p(
            "result_details",
            &format!("2024052022001400000000000001^10.00^{result}"),
        ),
    ]
}

fn md5_signed(mut form: Pairs) -> Pairs {
    let content = sign::sorted_link_string(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    form.push(p("sign", &sign::md5_sign(&content, KEY)));
    form.push(p("sign_type", "MD5"));
    form
}

/// The batch notify: signature (known answer), then `notify_verify`, then a notification that
/// names the trade and carries the refund report; event `partially-refunded` (the host decides
/// full or partial from its amounts), reply `success`.
#[test]
fn batch_refund_notify_is_verified_and_reported() {
    let form = md5_signed(batch_notify("SUCCESS"));
    assert_eq!(
        find(&form, "sign"),
        Some("182a5b23158f27d26a8eb6d2618885d8")
    );
    let pending = sent(connector::verify_notification(&md5_pairs(), &form).unwrap());
    assert!(pending.request.url.contains("service=notify_verify"));
    assert!(pending.request.url.contains("notify_id=abc123"));
    let ok = HttpResponse {
        status: 200,
        headers: Vec::new(),
        body: b"true".to_vec(),
    };
    let n = done(
        connector::resume_notification(&md5_pairs(), &pending.continuation, Ok(ok.clone()))
            .unwrap(),
    );
    assert_eq!(n.out_trade_no, "");
    assert_eq!(n.trade_no, "2024052022001400000000000001");
    assert_eq!(n.event(), TradeEvent::PartiallyRefunded);
    assert!(!n.paid);
    assert_eq!(n.reply, "success");
    let r = n.refund().unwrap();
    assert_eq!(r.request_no, "20240521001");
    assert_eq!(r.amount.as_deref(), Some("10.00"));
    assert!(r.succeeded);
    // A failed refund is reported with Alipay's words.
    let form = md5_signed(batch_notify("TRADE_HAS_CLOSED"));
    let pending = sent(connector::verify_notification(&md5_pairs(), &form).unwrap());
    let n =
        done(connector::resume_notification(&md5_pairs(), &pending.continuation, Ok(ok)).unwrap());
    let r = n.refund().unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.detail, "TRADE_HAS_CLOSED");
    // Tampered: the amount changed after signing.
    let mut forged = md5_signed(batch_notify("SUCCESS"));
    forged[5].1 = "2024052022001400000000000001^88.88^SUCCESS".into();
    assert!(matches!(
        connector::verify_notification(&md5_pairs(), &forged),
        Err(PluginError::BadSignature(_))
    ));
    // Signed, reporting two trades: payhost's refunds are batches of one, and the second
    // would be dropped; refused as malformed.
    let mut two = batch_notify("SUCCESS");
    two[5].1 =
        "2024052022001400000000000001^0.40^SUCCESS#2024052022001400000000000002^0.50^SUCCESS"
            .into();
    assert!(matches!(
        connector::verify_notification(&md5_pairs(), &md5_signed(two)),
        Err(PluginError::Malformed(m)) if m.contains("more than one refund")
    ));
    // Signed but not a batch: refused as malformed.
    let mut no_success = batch_notify("SUCCESS");
    no_success.retain(|(k, _)| k != "success_num");
    assert!(matches!(
        connector::verify_notification(&md5_pairs(), &md5_signed(no_success)),
        Err(PluginError::Malformed(_))
    ));
}

/// A merchant whose fee is refunded too gets `trade_no^amount^result$account^id^fee^result`
/// ([EXTRA §4.2]): the refund's result ends at the `$`. Read whole, it was `SUCCESS$…`, a failure,
/// and a refund that moved money would have been settled as failed (its amount refundable again).
#[test]
fn batch_refund_notify_with_the_fee_refunded_too() {
    let ok = HttpResponse {
        status: 200,
        headers: Vec::new(),
        body: b"true".to_vec(),
    };
    for (result, succeeded, detail) in [
        (
            "SUCCESS$seller@example.com^2088000000000001^0.06^SUCCESS",
            true,
            "",
        ),
        // The fee could not be refunded: the refund itself still succeeded.
        (
            "SUCCESS$seller@example.com^2088000000000001^0.06^FAIL",
            true,
            "",
        ),
        (
            "TRADE_HAS_CLOSED$seller@example.com^2088000000000001^0.06^SUCCESS",
            false,
            "TRADE_HAS_CLOSED",
        ),
    ] {
        let form = md5_signed(batch_notify(result));
        let pending = sent(connector::verify_notification(&md5_pairs(), &form).unwrap());
        let n = done(
            connector::resume_notification(&md5_pairs(), &pending.continuation, Ok(ok.clone()))
                .unwrap(),
        );
        let r = n.refund().unwrap();
        assert_eq!(r.succeeded, succeeded, "{result}");
        assert_eq!(r.detail, detail, "{result}");
        assert_eq!(r.amount.as_deref(), Some("10.00"), "{result}");
        assert_eq!(n.trade_no, "2024052022001400000000000001", "{result}");
    }
}

/// A `trade_status_sync` notify with `refund_status=REFUND_SUCCESS` keeps its event and gains a
/// refund report with no number and no amount ([EXTRA §4.2]).
#[test]
fn refund_status_notify_gains_a_report() {
    let n = crate::model::Notification {
        trade_status: "TRADE_SUCCESS".into(),
        fields: vec![
            p("trade_status", "TRADE_SUCCESS"),
            p("refund_status", "REFUND_SUCCESS"),
            p("gmt_refund", "2008-10-29 19:38:25"),
        ],
        ..Default::default()
    };
    assert_eq!(n.event(), TradeEvent::PartiallyRefunded);
    let r = n.refund().unwrap();
    assert_eq!(r.request_no, "");
    assert_eq!(r.amount, None);
    assert_eq!(r.time.as_deref(), Some("2008-10-29 19:38:25"));
    let paid = crate::model::Notification {
        trade_status: "TRADE_SUCCESS".into(),
        fields: vec![p("trade_status", "TRADE_SUCCESS")],
        ..Default::default()
    };
    assert_eq!(paid.refund(), None);
}

#[test]
fn legacy_merchant_has_no_refund_query_close_or_bill_call() {
    match connector::query_refund(&md5_pairs(), "20140101000001", "20240521001") {
        Err(PluginError::InvalidOrder(e)) => assert_eq!(e.field, "request_no"),
        other => panic!("{other:?}"),
    }
    let closed = done(connector::close_trade(&md5_pairs(), "20140101000001").unwrap());
    assert!(!closed.at_provider);
    assert!(!closed.detail.is_empty());
    match connector::locate_bill(&md5_pairs(), "2024-05-20") {
        Err(PluginError::InvalidSettings(e)) => assert_eq!(e[0].field, "api"),
        other => panic!("{other:?}"),
    }
}

/// Every family-specific setting says when it is shown.
#[test]
fn settings_are_shown_per_family() {
    let schema = crate::settings::schema();
    let shown = |name: &str| {
        schema
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .shown_when
            .clone()
            .map(|w| (w.setting, w.values))
    };
    assert_eq!(shown("api"), None);
    assert_eq!(shown("sign_type"), None);
    assert_eq!(shown("alipay_public_key"), None);
    for name in crate::openapi::settings::OPENAPI_ONLY {
        assert_eq!(
            shown(name),
            Some(("api".into(), vec!["openapi".into()])),
            "{name}"
        );
    }
    for name in [
        "partner",
        "key",
        "seller_email",
        "mode",
        "private_key",
        "mapi_url",
    ] {
        assert_eq!(
            shown(name),
            Some(("api".into(), vec!["mapi".into()])),
            "{name}"
        );
    }
}

/// Each refusal once: a certificate that does not parse is read by two checks (its serial
/// number and its key) and was named twice.
#[test]
fn a_refusal_is_named_once() {
    let mut pairs = crate::openapi::settings::tests::settings_pairs();
    pairs.retain(|(k, _)| k != "alipay_public_key");
    for cert in ["app_cert", "alipay_cert", "alipay_root_cert"] {
        pairs.push((
            cert.into(),
            "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----".into(),
        ));
    }
    let errors = connector::validate_settings(&pairs).unwrap_err();
    assert!(!errors.is_empty());
    for (i, e) in errors.iter().enumerate() {
        assert!(
            !errors[..i]
                .iter()
                .any(|f| f.field == e.field && f.reason == e.reason),
            "{errors:?}"
        );
    }
}

/// A create call's answer names its request (`req_id`): another payment's answer is refused, so
/// its token (and its amount) never reaches this buyer. An answer without `req_id` (unsigned
/// 2012-style) is still read.
#[test]
fn a_create_answer_for_another_request_is_refused() {
    let start = |total: &str, id: &str| {
        let o = PaymentRequest {
            total_fee: total.into(),
            request_id: id.into(),
            out_trade_no: format!("order-{id}"),
            ..order(Product::Wap)
        };
        match connector::start_payment(&md5_pairs(), &o).unwrap() {
            Step::Send(p) => p,
            Step::Done(_) => panic!("wap asks for the create call"),
        }
    };
    let a = start("0.01", "reqa1");
    let answer = |req_id: Option<&str>| {
        let res = "<?xml version=\"1.0\" encoding=\"utf-8\"?><direct_trade_create_res><request_token>TOKENB</request_token></direct_trade_create_res>";
        let mut pairs = vec![
            ("res_data".to_owned(), res.to_owned()),
            (
                "service".to_owned(),
                "alipay.wap.trade.create.direct".to_owned(),
            ),
            ("sec_id".to_owned(), "MD5".to_owned()),
            ("partner".to_owned(), "2088000000000001".to_owned()),
        ];
        if let Some(id) = req_id {
            pairs.push(("req_id".to_owned(), id.to_owned()));
        }
        pairs.push(("v".to_owned(), "2.0".to_owned()));
        let content = sign::sorted_link_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        pairs.push(("sign".to_owned(), sign::md5_sign(&content, KEY)));
        crate::transformers::form_encode(&pairs)
    };
    match connector::resume_payment(&md5_pairs(), &a.continuation, ok(&answer(Some("reqb1")))) {
        Err(PluginError::Malformed(m)) => assert!(
            m.contains("req_id \"reqb1\", not this payment's \"reqa1\""),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let own = done(
        connector::resume_payment(&md5_pairs(), &a.continuation, ok(&answer(Some("reqa1"))))
            .unwrap(),
    );
    assert_eq!(
        (own.token.as_str(), own.total_fee.as_str()),
        ("TOKENB", "0.01")
    );
    let unnamed =
        done(connector::resume_payment(&md5_pairs(), &a.continuation, ok(&answer(None))).unwrap());
    assert_eq!(unnamed.request_id, "reqa1");
}

/// A `batch_no` starts with a date that exists ([EXTRA §4.2]): 30 February is not one.
#[test]
fn a_batch_no_starts_with_a_real_date() {
    use super::is_batch_no;
    assert!(is_batch_no("20261207001"));
    assert!(is_batch_no("20280229001"));
    for bad in [
        "20260230001",
        "20260229001",
        "20261301001",
        "20260431001",
        "20261200001",
        "2026120700",
    ] {
        assert!(!is_batch_no(bad), "{bad}");
    }
}
