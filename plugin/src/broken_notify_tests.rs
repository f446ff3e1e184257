//! The `conformance-broken-notify-check` feature: with it, notifications whose signature does not
//! verify are accepted (WAP MD5 and RSA, flat and app notifies); without it, the same forgeries are
//! refused. Returns are checked in both builds. Run both ways:
//! `cargo test -p alipay-wap-plugin broken_notify` and the same with
//! `--features conformance-broken-notify-check`.

use crate::connector::{self, Step};
use crate::model::PluginError;
use crate::sign;

const BROKEN: bool = cfg!(feature = "conformance-broken-notify-check");
const KEY: &str = "10000000000000000000000000000000";
const TEST_PRIV: &str = include_str!("../testdata/test_priv.pem");
const TEST_PUB: &str = include_str!("../testdata/test_pub.pem");
const NOTIFY_DATA: &str = "<notify><notify_id>n1</notify_id><out_trade_no>o1</out_trade_no>\
    <trade_status>TRADE_SUCCESS</trade_status><total_fee>0.01</total_fee></notify>";

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn md5_settings() -> Vec<(String, String)> {
    vec![
        p("partner", "2088000000000001"),
        p("key", KEY),
        p("seller_email", "seller@example.com"),
    ]
}

fn rsa_settings() -> Vec<(String, String)> {
    vec![
        p("partner", "2088000000000001"),
        p("sign_type", "RSA"),
        p("private_key", TEST_PRIV),
        p("alipay_public_key", TEST_PUB),
        p("mapi_public_key", TEST_PUB),
        p("app_alipay_public_key", TEST_PUB),
        p("seller_email", "seller@example.com"),
    ]
}

fn wap_form(sec_id: &str, sign: &str) -> Vec<(String, String)> {
    vec![
        p("service", crate::transformers::SERVICE_CREATE),
        p("sign", sign),
        p("sec_id", sec_id),
        p("v", "1.0"),
        p("notify_data", NOTIFY_DATA),
    ]
}

fn flat_form(sign_type: &str, sign: &str) -> Vec<(String, String)> {
    vec![
        p("notify_id", "n2"),
        p("out_trade_no", "o2"),
        p("trade_status", "TRADE_SUCCESS"),
        p("total_fee", "0.01"),
        p("sign_type", sign_type),
        p("sign", sign),
    ]
}

fn app_form(sign: &str) -> Vec<(String, String)> {
    vec![
        p("notify_data", NOTIFY_DATA),
        p("sign_type", "RSA"),
        p("sign", sign),
    ]
}

fn expect_forgery(settings: &[(String, String)], form: &[(String, String)], what: &str) {
    let verdict = connector::verify_notification(settings, form);
    if BROKEN {
        assert!(
            matches!(verdict, Ok(Step::Send(_)) | Ok(Step::Done(_))),
            "{what}: the broken build must accept it: {verdict:?}"
        );
    } else {
        assert!(
            matches!(verdict, Err(PluginError::BadSignature(_))),
            "{what}: must be refused: {verdict:?}"
        );
    }
}

#[test]
fn broken_notify_check_accepts_forgeries_only_when_built_so() {
    let wrong_md5 = "0".repeat(32);
    let wrong_rsa = sign::rsa_sign(
        "something else",
        &sign::parse_private_key(TEST_PRIV).unwrap(),
    )
    .unwrap();
    // The genuine article is accepted in both builds.
    let content = sign::notify_link_string(
        crate::transformers::SERVICE_CREATE,
        "1.0",
        "MD5",
        NOTIFY_DATA,
    );
    let good = wap_form("MD5", &sign::md5_sign(&content, KEY));
    assert!(connector::verify_notification(&md5_settings(), &good).is_ok());

    expect_forgery(&md5_settings(), &wap_form("MD5", &wrong_md5), "WAP MD5");
    expect_forgery(&rsa_settings(), &wap_form("0001", &wrong_rsa), "WAP RSA");
    expect_forgery(&md5_settings(), &flat_form("MD5", &wrong_md5), "flat MD5");
    expect_forgery(&rsa_settings(), &flat_form("RSA", &wrong_rsa), "flat RSA");
    expect_forgery(&rsa_settings(), &app_form(&wrong_rsa), "app RSA");

    // Returns are not notifications: refused in both builds.
    let pc_return = [
        p("is_success", "T"),
        p("out_trade_no", "o2"),
        p("trade_status", "TRADE_SUCCESS"),
        p("sign_type", "MD5"),
        p("sign", &wrong_md5),
    ];
    assert!(matches!(
        connector::verify_return(&md5_settings(), &pc_return),
        Err(PluginError::BadSignature(_))
    ));
}
