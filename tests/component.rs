//! The built component, loaded in wasmtime through payhost's runtime, with every export called.
//! Outbound HTTP is answered by a stub server on 127.0.0.1.

use conformance::alipay::{
    encrypt_to_test_key, form_encode, md5_sign, rsa_keys, signed_create_reply, sorted,
};
use conformance::stub::{Seen, StubServer};
use conformance::{repo_root, target_dir, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY};
use payhost::manifest::Manifest;
use payhost::net::{Origin, Policy};
use payhost::runtime::plugin_api::{self as types, PluginError};
use payhost::runtime::{pairs, Pairs, PluginRuntime};
// The Alipay side of these stubs is the sandbox's independent wire code, never the component's.
use payhost_sandbox::wire::{self, Keys};
use std::sync::atomic::Ordering;

const PARTNER: &str = "2088101122136241";
const KEY: &str = "10000000000000000000000000000000";
const SELLER: &str = "seller@example.com";

async fn runtime() -> PluginRuntime {
    let manifest = Manifest::load(&repo_root().join("plugin.toml")).expect("plugin.toml loads");
    PluginRuntime::load(
        &manifest,
        Some(&target_dir().join("payhost-test-cache")),
        payhost::net::Client::new(),
    )
    .await
    .expect("the component loads")
}

/// The manifest's origins plus the stub's (allowed explicitly: it listens on loopback).
fn stub_policy(rt: &PluginRuntime, stub: &StubServer) -> Policy {
    let mut policy = rt.base_policy();
    policy.allow_explicitly(Origin::parse(&stub.url("/")).unwrap());
    policy
}

fn md5_settings(stub: &StubServer) -> Pairs {
    pairs([
        ("partner", PARTNER),
        ("key", KEY),
        ("seller_email", SELLER),
        ("gateway_url", &stub.url("/service/rest.htm")),
        ("notify_verify_url", &stub.url("/gateway.do")),
        ("paychannel_url", &stub.url("/gateway.do")),
    ])
}

fn rsa_settings(stub: &StubServer) -> Pairs {
    // The merchant and "Alipay" share the test key pair here: the stub signs with the private
    // key and encrypts to the public key.
    pairs([
        ("partner", PARTNER),
        ("sign_type", "RSA"),
        ("seller_email", SELLER),
        ("private_key", TEST_PRIVATE_KEY),
        ("alipay_public_key", TEST_PUBLIC_KEY),
        ("gateway_url", &stub.url("/service/rest.htm")),
        ("notify_verify_url", &stub.url("/gateway.do")),
    ])
}

/// The host makes request ids (the component has no clock or randomness): unique per call here.
fn next_request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("req{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn order(stub: &StubServer, out_trade_no: &str, total_fee: &str) -> types::PaymentRequest {
    types::PaymentRequest {
        product: types::Product::Wap,
        out_trade_no: out_trade_no.into(),
        subject: "测试商品 & <礼物>".into(),
        total_fee: total_fee.into(),
        seller: None,
        return_url: stub.url("/alipay/m1/return"),
        notify_url: stub.url("/alipay/m1/notify"),
        merchant_url: Some(stub.url("/shop")),
        pay_expire: Some(30),
        out_user: None,
        cashier_code: None,
        request_id: next_request_id(),
    }
}

/// A gateway that checks the create call like Alipay would and answers a signed token.
fn gateway(rsa: bool) -> impl Fn(&Seen) -> (u16, Vec<u8>) + Send + Sync + 'static {
    move |seen: &Seen| {
        if seen.path != "/service/rest.htm" || seen.method != "POST" {
            return (404, b"not here".to_vec());
        }
        let params = seen.params();
        let p = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(p("service"), "alipay.wap.trade.create.direct");
        assert_eq!(p("format"), "xml");
        assert_eq!(p("v"), "2.0");
        assert!(
            params.iter().all(|(k, _)| k != "sign_type"),
            "wappaygw calls carry no sign_type"
        );
        let content = sorted(&params);
        let keys = if rsa {
            rsa_keys()
        } else {
            Keys::Md5(KEY.into())
        };
        let signed_ok = wire::verify_merchant(&keys, &content, &p("sign"));
        if !signed_ok {
            let err = "<?xml version=\"1.0\" encoding=\"utf-8\"?><err><code>0007</code><sub_code>0007</sub_code><msg>sign error</msg><detail>签名错误</detail></err>";
            return (
                200,
                form_encode(&[("res_error".into(), err.into()), ("v".into(), "2.0".into())])
                    .into_bytes(),
            );
        }
        let req_data = p("req_data");
        if req_data.contains("<total_fee>998.00</total_fee>") {
            // A gateway (or whoever answers in its place) with 15 KB in each part of its error (its answer within the 256 KiB any is let in).
            let big = "错".repeat(5_000);
            let err = format!("<err><code>{big}</code><sub_code>{big}</sub_code><msg>{big}</msg><detail>{big}</detail></err>");
            return (200, form_encode(&[("res_error".into(), err)]).into_bytes());
        }
        if req_data.contains("<total_fee>999.00</total_fee>") {
            let err = "<?xml version=\"1.0\" encoding=\"utf-8\"?><err><code>0005</code><sub_code>0005</sub_code><msg>partner illegal</msg><detail>合作伙伴没有开通接口访问权限</detail></err>";
            return (
                200,
                form_encode(&[
                    ("partner".into(), PARTNER.into()),
                    ("res_error".into(), err.into()),
                ])
                .into_bytes(),
            );
        }
        assert!(
            req_data.contains("<subject>测试商品 &amp; &lt;礼物&gt;</subject>"),
            "{req_data}"
        );
        (200, signed_create_reply(&params, "20140101abcdef0123", KEY))
    }
}

#[tokio::test]
async fn describe_and_validate_settings() {
    let rt = runtime().await;
    assert_eq!(rt.info.id, "alipay-wap");
    assert_eq!(rt.contract_version(), "0.4.0");
    assert_eq!(rt.info.notify_ack, "success");
    assert_eq!(rt.info.notify_retry, "fail");
    let names: Vec<&str> = rt.info.settings.iter().map(|f| f.name.as_str()).collect();
    for n in [
        "partner",
        "key",
        "seller_email",
        "mode",
        "sign_type",
        "private_key",
        "alipay_public_key",
    ] {
        assert!(names.contains(&n), "{n} missing");
    }
    assert!(
        rt.info
            .settings
            .iter()
            .find(|f| f.name == "key")
            .unwrap()
            .secret
    );

    // plugin.toml says each setting as the component describes it (vendors read the file; a
    // review found a rule and a label that differed).
    let manifest = Manifest::load(&repo_root().join("plugin.toml")).unwrap();
    for d in &manifest.settings {
        let f = rt.info.settings.iter().find(|f| f.name == d.name).unwrap();
        assert_eq!(
            (&d.label_zh, &d.label_en, &d.rule),
            (&f.label_zh, &f.label_en, &f.rule),
            "{}",
            d.name
        );
    }

    let mut s = rt.session().await.unwrap();
    let ok = s
        .validate_settings(&pairs([
            ("partner", " 2088101122136241\n"),
            ("key", KEY),
            ("seller_email", SELLER),
        ]))
        .await
        .unwrap()
        .unwrap();
    assert!(ok.iter().any(|p| p.0 == "partner" && p.1 == PARTNER));
    // Normalised as the WIT says: trimmed, every setting with a default present (with its
    // default), in describe's order; validating it again changes nothing.
    // The open platform's settings (`api = openapi`, its `gateway` has a default) never appear in
    // a legacy merchant's.
    let open_platform_only = [
        "app_id",
        "app_private_key",
        "app_cert",
        "alipay_cert",
        "alipay_root_cert",
        "seller_id",
        "gateway",
    ];
    for f in rt.info.settings.iter() {
        if open_platform_only.contains(&f.name.as_str()) {
            assert!(!ok.iter().any(|p| p.0 == f.name), "{}: {ok:?}", f.name);
            continue;
        }
        if let Some(default) = &f.default_value {
            let got = ok.iter().find(|p| p.0 == f.name).map(|p| p.1.as_str());
            assert_eq!(got, Some(default.as_str()), "{}: {ok:?}", f.name);
        }
    }
    let order: Vec<usize> = ok
        .iter()
        .map(|p| rt.info.settings.iter().position(|f| f.name == p.0).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "schema order: {ok:?}"
    );
    let again = s.validate_settings(&ok).await.unwrap().unwrap();
    assert_eq!(again, ok);
    let bad = s
        .validate_settings(&pairs([("partner", "12"), ("key", "x"), ("mode", "b2b")]))
        .await
        .unwrap()
        .unwrap_err();
    let fields: Vec<&str> = bad.iter().map(|f| f.field.as_str()).collect();
    assert!(
        fields.contains(&"partner") && fields.contains(&"key") && fields.contains(&"mode"),
        "{bad:?}"
    );
}

/// Thousands of unknown settings (a form passed straight from an admin page) are each refused
/// within the manifest's fuel: the one-line-per-mistake check was quadratic, and 10,000 keys
/// trapped on fuel instead of answering `invalid-settings`.
#[tokio::test]
async fn thousands_of_unknown_settings_are_refused_not_a_trap() {
    let rt = runtime().await;
    let mut s = rt.session().await.unwrap();
    let many = pairs(
        (0..20_000)
            .map(|i| (format!("unknown_{i}"), "x".to_owned()))
            .chain([("partner".to_owned(), PARTNER.to_owned())]),
    );
    let refused = s
        .validate_settings(&many)
        .await
        .expect("answered within the manifest's limits, not a trap")
        .expect_err("unknown keys are refused");
    let unknown = refused
        .iter()
        .filter(|f| f.field.starts_with("unknown_"))
        .count();
    assert_eq!(unknown, 20_000, "each unknown key named once");
}

/// An answer over 256 KiB (Alipay's are a few KiB) is malformed before it is parsed:
/// 1 MiB of `a=b&` (within the host's 1 MiB bound) used to trap on the 16 MiB memory cap.
#[tokio::test]
async fn an_oversized_answer_is_malformed_not_a_trap() {
    let rt = runtime().await;
    let stub = StubServer::start(|_: &Seen| (200, b"a=b&".repeat(256 << 10))).await;
    let policy = stub_policy(&rt, &stub);
    let settings = md5_settings(&stub);
    let mut s = rt.session().await.unwrap();
    let refused = s
        .start_payment(&policy, &settings, &order(&stub, "20140101000009", "0.1"))
        .await
        .expect("no trap");
    match refused {
        // Malformed, not a network problem (the operator is not sent to check the network).
        Err(PluginError::Malformed(m)) => {
            assert!(m.contains("more than the 256 KiB"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn start_payment_md5_and_gateway_errors() {
    let rt = runtime().await;
    let stub = StubServer::start(gateway(false)).await;
    let policy = stub_policy(&rt, &stub);
    let settings = md5_settings(&stub);

    let mut s = rt.session().await.unwrap();
    let started = s
        .start_payment(&policy, &settings, &order(&stub, "20140101000001", "0.1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.token, "20140101abcdef0123");
    assert_eq!(started.total_fee, "0.10");
    assert_eq!(started.seller, SELLER);
    assert!(started
        .redirect
        .url
        .starts_with(&stub.url("/service/rest.htm?service=alipay.wap.auth.authAndExecute")));
    // The redirect is signed with the sorted rule.
    let fields: Vec<(String, String)> = started
        .redirect
        .fields
        .iter()
        .map(|p| (p.0.clone(), p.1.clone()))
        .collect();
    let sig = fields.iter().find(|(k, _)| k == "sign").unwrap().1.clone();
    assert!(wire::verify_merchant(
        &Keys::Md5(KEY.into()),
        &sorted(&fields),
        &sig
    ));
    let create = &stub.requests()[0];
    assert_eq!(
        create.content_type.as_deref(),
        Some("application/x-www-form-urlencoded; charset=utf-8")
    );
    // Every create call carries a new req_id (Alipay refuses a repeated one).
    let mut s = rt.session().await.unwrap();
    s.start_payment(&policy, &settings, &order(&stub, "20140101000001", "0.1"))
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<String> = stub
        .requests()
        .iter()
        .filter_map(|r| r.param("req_id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "req_id must be unique per request");
    stub.clear();

    let mut s = rt.session().await.unwrap();
    let err = s
        .start_payment(
            &policy,
            &settings,
            &order(&stub, "20140101000002", "999.00"),
        )
        .await
        .unwrap()
        .unwrap_err();
    match err {
        PluginError::Gateway(g) => {
            assert_eq!(g.code, "0005");
            assert_eq!(g.msg, "partner illegal");
        }
        other => panic!("{other:?}"),
    }
    // What the provider says is bounded (an embedder logs it): cut with "…".
    let mut s = rt.session().await.unwrap();
    let err = s
        .start_payment(
            &policy,
            &settings,
            &order(&stub, "20140101000005", "998.00"),
        )
        .await
        .unwrap()
        .unwrap_err();
    match err {
        PluginError::Gateway(g) => {
            let n = |s: &str| s.chars().count();
            assert_eq!((n(&g.code), n(&g.sub_code), n(&g.msg)), (65, 65, 513));
            assert!(
                n(&g.detail) <= 1025 && g.detail.starts_with("错错"),
                "{}",
                n(&g.detail)
            );
            assert!(g.msg.ends_with('…'));
        }
        other => panic!("{other:?}"),
    }
    // A wrong key: the gateway answers sign error.
    let mut wrong = settings.clone();
    wrong.iter_mut().find(|p| p.0 == "key").unwrap().1 = "20000000000000000000000000000000".into();
    let mut s = rt.session().await.unwrap();
    let err = s
        .start_payment(&policy, &wrong, &order(&stub, "20140101000003", "1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Gateway(ref g) if g.msg == "sign error"),
        "{err:?}"
    );
    // The gateway answering HTTP 500 is a transport failure.
    stub.answer(|_| (500, b"oops".to_vec()));
    let mut s = rt.session().await.unwrap();
    let err = s
        .start_payment(&policy, &settings, &order(&stub, "20140101000004", "1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Transport(ref m) if m.contains("500")),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_orders_name_the_field() {
    let rt = runtime().await;
    let stub = StubServer::start(gateway(false)).await;
    let policy = stub_policy(&rt, &stub);
    let settings = md5_settings(&stub);
    for (fee, field) in [
        ("1e3", "total_fee"),
        ("-1", "total_fee"),
        ("0.001", "total_fee"),
        ("abc", "total_fee"),
    ] {
        let mut s = rt.session().await.unwrap();
        let err = s
            .start_payment(&policy, &settings, &order(&stub, "X1", fee))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidOrder(ref f) if f.field == field),
            "{fee}: {err:?}"
        );
    }
    let mut o = order(&stub, "X1", "1");
    o.seller = Some("other@example.com".into());
    let mut s = rt.session().await.unwrap();
    let err = s
        .start_payment(&policy, &settings, &o)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::InvalidOrder(ref f) if f.field == "seller_email"),
        "{err:?}"
    );
    assert!(
        stub.requests().is_empty(),
        "nothing reaches the gateway for invalid orders"
    );
}

#[tokio::test]
async fn start_payment_rsa_decrypts_and_verifies_the_response() {
    let rt = runtime().await;
    let stub = StubServer::start(gateway(true)).await;
    let policy = stub_policy(&rt, &stub);
    let mut s = rt.session().await.unwrap();
    let started = s
        .start_payment(&policy, &rsa_settings(&stub), &order(&stub, "R1", "12.5"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.token, "20140101abcdef0123");
    let sec_id = started
        .redirect
        .fields
        .iter()
        .find(|p| p.0 == "sec_id")
        .unwrap();
    assert_eq!(sec_id.1, "0001");
}

fn notify_data(out_trade_no: &str, total_fee: &str, notify_id: &str) -> String {
    format!(
        "<notify><payment_type>1</payment_type><subject>测试</subject><trade_no>2014010100001000000000000001</trade_no><buyer_email>buyer@example.com</buyer_email><gmt_create>2014-01-01 12:00:00</gmt_create><notify_type>trade_status_sync</notify_type><quantity>1</quantity><out_trade_no>{out_trade_no}</out_trade_no><notify_time>2014-01-01 12:00:10</notify_time><seller_id>{PARTNER}</seller_id><trade_status>TRADE_SUCCESS</trade_status><is_total_fee_adjust>N</is_total_fee_adjust><total_fee>{total_fee}</total_fee><gmt_payment>2014-01-01 12:00:10</gmt_payment><seller_email>{SELLER}</seller_email><price>{total_fee}</price><buyer_id>2088000000000000</buyer_id><notify_id>{notify_id}</notify_id><use_coupon>N</use_coupon></notify>"
    )
}

fn md5_notify(data: &str) -> Pairs {
    let content = wire::presign_notify("alipay.wap.trade.create.direct", "1.0", "MD5", data);
    pairs([
        ("service", "alipay.wap.trade.create.direct"),
        ("sign", &md5_sign(&content, KEY)),
        ("sec_id", "MD5"),
        ("v", "1.0"),
        ("notify_data", data),
    ])
}

#[tokio::test]
async fn verify_notification_asks_notify_verify() {
    let rt = runtime().await;
    let stub = StubServer::start(|seen: &Seen| {
        let id = seen.param("notify_id").unwrap_or_default();
        match id.as_str() {
            "genuine" => (200, b"true".to_vec()),
            "unknown" => (200, b"false".to_vec()),
            _ => (500, b"down".to_vec()),
        }
    })
    .await;
    let policy = stub_policy(&rt, &stub);
    let settings = md5_settings(&stub);

    let mut s = rt.session().await.unwrap();
    let n = s
        .verify_notification(
            &policy,
            &settings,
            &md5_notify(&notify_data("O1", "0.01", "genuine")),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.out_trade_no, "O1");
    assert!(n.paid);
    assert_eq!(n.reply, "success");
    let verify = stub.requests().pop().unwrap();
    assert_eq!(verify.method, "GET");
    assert_eq!(verify.param("service").as_deref(), Some("notify_verify"));
    assert_eq!(verify.param("partner").as_deref(), Some(PARTNER));

    // The same session matches it against the stored order.
    let expect = |fee: &str, seller: &str| types::OrderExpectation {
        out_trade_no: "O1".into(),
        total_fee: fee.into(),
        seller: seller.into(),
    };
    s.match_order(&n, &expect("0.01", SELLER))
        .await
        .unwrap()
        .unwrap();
    s.match_order(&n, &expect("0.01", PARTNER))
        .await
        .unwrap()
        .unwrap();
    let errs = s
        .match_order(&n, &expect("100.00", "other@example.com"))
        .await
        .unwrap()
        .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["total_fee", "seller_email"]);

    let mut s = rt.session().await.unwrap();
    let err = s
        .verify_notification(
            &policy,
            &settings,
            &md5_notify(&notify_data("O1", "0.01", "unknown")),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, PluginError::NotifyNotConfirmed(_)), "{err:?}");
    let mut s = rt.session().await.unwrap();
    let err = s
        .verify_notification(
            &policy,
            &settings,
            &md5_notify(&notify_data("O1", "0.01", "down")),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, PluginError::Transport(_)), "{err:?}");

    // Forged: signed with another key; nothing is asked of notify_verify.
    stub.clear();
    let mut forged = md5_notify(&notify_data("O1", "0.01", "genuine"));
    forged[1].1 = md5_sign("service=x", KEY);
    let mut s = rt.session().await.unwrap();
    let err = s
        .verify_notification(&policy, &settings, &forged)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, PluginError::BadSignature(_)), "{err:?}");
    assert!(stub.requests().is_empty());
}

/// A forged notification of thousands of fields (the notify body's 32 KiB holds about 6,500
/// short ones) costs about what a real one does: its keys are sorted before the signature is
/// checked, and an insertion sort once took 1.7 billion of the 2 billion fuel a call has.
#[tokio::test]
async fn many_fields_in_reverse_order_are_refused_cheaply() {
    let rt = runtime().await;
    let stub = StubServer::start(|_: &Seen| (200, b"true".to_vec())).await;
    let policy = stub_policy(&rt, &stub);
    let settings = md5_settings(&stub);
    let mut form: Vec<(String, String)> = (0..6_500)
        .rev()
        .map(|i| (format!("k{i:05}"), "v".to_owned()))
        .collect();
    form.push(("sign".to_owned(), "0".repeat(32)));
    form.push(("sign_type".to_owned(), "MD5".to_owned()));
    let mut s = rt.session().await.unwrap();
    let refused = s
        .verify_notification(&policy, &settings, &form)
        .await
        .unwrap();
    assert!(refused.is_err(), "{refused:?}");
    let fuel = s.fuel_consumed_by_last_call();
    assert!(
        fuel < 100_000_000,
        "6,500 fields used {fuel} instructions of fuel"
    );
    assert!(stub.requests().is_empty());
}

#[tokio::test]
async fn rsa_notification_encrypted() {
    let rt = runtime().await;
    let stub = StubServer::start(|_: &Seen| (200, b"true".to_vec())).await;
    let policy = stub_policy(&rt, &stub);
    let data = notify_data("R2", "12.50", "n-rsa");
    let content = wire::presign_notify("alipay.wap.trade.create.direct", "1.0", "0001", &data);
    let signature = wire::sign_as_alipay(&rsa_keys(), content.as_bytes());
    let form = pairs([
        ("service", "alipay.wap.trade.create.direct"),
        ("sign", signature.as_str()),
        ("sec_id", "0001"),
        ("v", "1.0"),
        ("notify_data", &encrypt_to_test_key(&data)),
    ]);
    let mut s = rt.session().await.unwrap();
    let n = s
        .verify_notification(&policy, &rsa_settings(&stub), &form)
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "RSA notify (7 blocks) used {} instructions of fuel",
        s.fuel_consumed_by_last_call()
    );
    assert_eq!(n.out_trade_no, "R2");
    assert_eq!(n.total_fee, "12.50");
}

#[tokio::test]
async fn verify_return_valid_and_forged() {
    let rt = runtime().await;
    let stub = StubServer::start(|_: &Seen| (404, Vec::new())).await;
    let settings = md5_settings(&stub);
    let mut q = vec![
        ("out_trade_no".to_string(), "20140101000001".to_string()),
        ("request_token".into(), "requestToken".into()),
        ("result".into(), "success".into()),
        ("trade_no".into(), "2014010100001000000000000001".into()),
    ];
    let signature = md5_sign(&sorted(&q), KEY);
    assert_eq!(
        signature, "c9746fb3a6b148a7beeb342c1cb7601f",
        "[WAP §12.2] call-back vector"
    );
    q.push(("sign".into(), signature));
    q.push(("sign_type".into(), "MD5".into()));
    let mut s = rt.session().await.unwrap();
    let r = s
        .verify_return(&settings, &pairs(q.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.out_trade_no, "20140101000001");
    q[0].1 = "20140101000002".into();
    let err = s
        .verify_return(&settings, &pairs(q))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, PluginError::BadSignature(_)));
}

#[tokio::test]
async fn list_channels_gbk_signed() {
    let rt = runtime().await;
    let result = r#"{"payChannleResult":{"supportedPayChannelList":{"supportTopPayChannel":[{"name":"信用卡快捷支付","cashierCode":"CREDITCARD","supportSecPayChannelList":{"supportSecPayChannel":[{"name":"建行","cashierCode":"CREDITCARD_CCB"}]}}]}}}"#;
    let result_gbk = encoding_rs::GBK.encode(result).0.into_owned();
    let mut signed = b"result=".to_vec();
    signed.extend_from_slice(&result_gbk);
    let signature = wire::sign_as_alipay(&Keys::Md5(KEY.into()), &signed);
    let mut body = b"<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>T</is_success><request><param name=\"service\">mobile.merchant.paychannel</param></request><response><alipay><result>".to_vec();
    body.extend_from_slice(&result_gbk);
    body.extend_from_slice(format!("</result></alipay></response><sign>{signature}</sign><sign_type>MD5</sign_type></alipay>").as_bytes());
    let stub = StubServer::start(move |seen: &Seen| {
        assert_eq!(
            seen.param("service").as_deref(),
            Some("mobile.merchant.paychannel")
        );
        assert_eq!(seen.param("_input_charset").as_deref(), Some("GBK"));
        (200, body.clone())
    })
    .await;
    let policy = stub_policy(&rt, &stub);
    let mut s = rt.session().await.unwrap();
    let list = s
        .list_channels(&policy, &md5_settings(&stub), Some("buyer-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list.channels.len(), 2);
    assert_eq!(list.channels[0].name, "信用卡快捷支付");
    assert_eq!(list.channels[1].parent.as_deref(), Some("CREDITCARD"));
    let q = stub.requests().pop().unwrap();
    assert_eq!(q.param("out_user").as_deref(), Some("buyer-1"));
}

#[tokio::test]
async fn outbound_to_a_host_not_allowed_is_refused() {
    let rt = runtime().await;
    let stub = StubServer::start(gateway(false)).await;
    // Not added to the policy: the request is refused before a socket is opened.
    let policy = rt.base_policy();
    let mut s = rt.session().await.unwrap();
    let err = s
        .start_payment(&policy, &md5_settings(&stub), &order(&stub, "D1", "1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Transport(ref m) if m.contains("refused")),
        "{err:?}"
    );
    assert!(stub.requests().is_empty(), "no request left the host");
    assert!(rt.net().refused.load(Ordering::Relaxed) >= 1);
    // Allowed for public addresses only (as a URL saved through the API would be): the stub is
    // on loopback, so it is refused too.
    let mut policy = rt.base_policy();
    policy.allow(Origin::parse(&stub.url("/")).unwrap());
    let err = rt
        .session()
        .await
        .unwrap()
        .start_payment(&policy, &md5_settings(&stub), &order(&stub, "D2", "1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Transport(ref m) if m.contains("non-public")),
        "{err:?}"
    );
    assert!(stub.requests().is_empty(), "no request left the host");
}

#[test]
fn the_component_imports_no_wasi_http_and_no_filesystem() {
    let manifest = Manifest::load(&repo_root().join("plugin.toml")).unwrap();
    let bytes = manifest.read_component().unwrap();
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    eprintln!("the component imports: {imports:?}");
    for i in &imports {
        assert!(
            !i.starts_with("wasi:http/")
                && !i.starts_with("wasi:sockets/")
                && !i.starts_with("wasi:filesystem/"),
            "the pure component must not import {i}"
        );
    }
    // Its size: compiled once and cached by the host, but still bounded. 1.5 MiB since the open
    // platform: its certificate mode reads X.509 with an audited parser (x509-cert, ~165 KiB)
    // rather than hand-written DER.
    assert!(bytes.len() <= 3 << 19, "{} bytes", bytes.len());
}

/// The host loads every contract version: the Alipay component at 0.4.0, TestPay at 0.2.0 (each
/// by its manifest, and each bare, by what it exports); a manifest naming the other version is
/// refused with both versions named.
#[tokio::test]
async fn both_contract_versions_load_and_a_wrong_manifest_version_is_named() {
    let alipay = runtime().await;
    assert_eq!(alipay.contract_version(), "0.4.0");
    let testpay_manifest = Manifest::load(&repo_root().join("tests/testpay/plugin.toml")).unwrap();
    assert_eq!(testpay_manifest.wit.version, "0.2.0");
    let testpay = PluginRuntime::load(&testpay_manifest, None, payhost::net::Client::new())
        .await
        .expect("TestPay (0.2.0) loads");
    assert_eq!(testpay.contract_version(), "0.2.0");
    assert_eq!(testpay.info.id, "testpay");
    // A 0.2.0 flow still works end to end in host types: validate-settings fills the default.
    let mut s = testpay.session().await.unwrap();
    let ok = s
        .validate_settings(&pairs([
            ("merchant_no", " M1 "),
            ("api_secret", "0123456789abcdef0123456789abcdef"),
        ]))
        .await
        .unwrap()
        .unwrap();
    let endpoint = testpay
        .info
        .field("endpoint")
        .unwrap()
        .default_value
        .clone();
    assert!(ok.contains(&("merchant_no".into(), "M1".into())), "{ok:?}");
    assert_eq!(
        ok.iter().find(|p| p.0 == "endpoint").map(|p| p.1.clone()),
        endpoint
    );

    for (manifest, version) in [
        ("plugin.toml", "0.4.0"),
        ("tests/testpay/plugin.toml", "0.2.0"),
    ] {
        let m = Manifest::load(&repo_root().join(manifest)).unwrap();
        let bare = Manifest::synthetic(&m.component_path()).unwrap();
        let rt = PluginRuntime::load(&bare, None, payhost::net::Client::new())
            .await
            .expect("a bare component loads at the version it exports");
        assert_eq!(rt.contract_version(), version, "{manifest}");
    }

    let mut wrong = Manifest::load(&repo_root().join("plugin.toml")).unwrap();
    wrong.wit.version = "0.2.0".into();
    let err = PluginRuntime::load(&wrong, None, payhost::net::Client::new())
        .await
        .err()
        .expect("a 0.4.0 component under a 0.2.0 manifest is refused")
        .to_string();
    assert!(
        err.contains("0.2.0") && err.contains("payhost:payment/plugin@0.4.0"),
        "{err}"
    );
}
