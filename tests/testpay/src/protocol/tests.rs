use super::*;

const SECRET: &str = "testpay-secret-0123456789";

fn pairs(list: &[(&str, &str)]) -> Pairs {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn settings() -> Pairs {
    pairs(&[("merchant_no", "M1001"), ("api_secret", SECRET)])
}

/// A notification in received (unsorted) order, signed as in the known answer below.
fn notification() -> Pairs {
    pairs(&[
        ("out_trade_no", "T20261125001"),
        ("status", "PAID"),
        ("merchant_no", "M1001"),
        ("trade_no", "TP9000001"),
        ("amount", "12.50"),
        ("notify_id", "n-0001"),
        (
            "sign",
            "e969a0a1e765bf8ae7ec1ffc99f2149fdad0a918f56670b940eec3fbaecd4e1e",
        ),
    ])
}

fn resign(form: &mut Pairs) {
    form.retain(|(k, _)| k != "sign");
    let s = sign(SECRET, form).unwrap();
    form.push(("sign".into(), s));
}

fn order(total_fee: &str) -> Order {
    Order {
        out_trade_no: "A-1".into(),
        total_fee: total_fee.into(),
        notify_url: "https://host.example/notify/shop1".into(),
        return_url: "https://host.example/return/shop1?x=1&y=2".into(),
        request_id: "r1".into(),
        app: false,
    }
}

#[test]
fn signature_known_answers_computed_with_openssl() {
    // printf '%s' 'amount=12.50&merchant_no=M1001&notify_id=n-0001&out_trade_no=T20261125001&status=PAID&trade_no=TP9000001' \
    //   | openssl dgst -sha256 -hmac 'testpay-secret-0123456789'
    let form = notification();
    assert_eq!(
        canonical_string(&form),
        "amount=12.50&merchant_no=M1001&notify_id=n-0001&out_trade_no=T20261125001&status=PAID&trade_no=TP9000001"
    );
    assert_eq!(
        sign(SECRET, &form).unwrap(),
        "e969a0a1e765bf8ae7ec1ffc99f2149fdad0a918f56670b940eec3fbaecd4e1e"
    );

    // printf '%s' 'amount=0.10&merchant_no=M1001&notify_url=https://host.example/notify/shop1&out_trade_no=A-1&return_url=https://host.example/return/shop1?x=1&y=2' \
    //   | openssl dgst -sha256 -hmac 'testpay-secret-0123456789'
    let started = start_payment(&settings(), &order("0.1")).unwrap();
    assert_eq!(
        started.fields,
        pairs(&[
            ("merchant_no", "M1001"),
            ("out_trade_no", "A-1"),
            ("amount", "0.10"),
            ("notify_url", "https://host.example/notify/shop1"),
            ("return_url", "https://host.example/return/shop1?x=1&y=2"),
            (
                "sign",
                "41ca0834e6aaad4ee70281fdc8355fafd8cf7fe47478701dae0c4b2aef5d6c0b"
            ),
        ])
    );
    assert_eq!(started.action, "https://pay.testpay.example/pay");
    assert_eq!(
        started.url,
        "https://pay.testpay.example/pay?merchant_no=M1001&out_trade_no=A-1&amount=0.10\
         &notify_url=https%3A%2F%2Fhost.example%2Fnotify%2Fshop1\
         &return_url=https%3A%2F%2Fhost.example%2Freturn%2Fshop1%3Fx%3D1%26y%3D2\
         &sign=41ca0834e6aaad4ee70281fdc8355fafd8cf7fe47478701dae0c4b2aef5d6c0b"
    );
    assert!(!started.post);
    assert_eq!(started.total_fee, "0.10");
    assert_eq!(started.seller, "M1001");
    assert_eq!(started.request_id, "r1");
}

#[test]
fn a_good_notification_is_verified_and_mapped() {
    let n = verify_notification(&settings(), &notification()).unwrap();
    assert_eq!(n.out_trade_no, "T20261125001");
    assert_eq!(n.trade_no, "TP9000001");
    assert_eq!(n.status, "PAID");
    assert_eq!(n.event, Event::Paid);
    assert!(n.paid);
    assert_eq!(n.total_fee, "12.50");
    assert_eq!(n.notify_id, "n-0001");
    assert_eq!(n.reply, "OK");
    assert_eq!(n.fields.len(), 6, "every field but sign, in received order");
    assert_eq!(n.fields[0].0, "out_trade_no");

    // Uppercase hex is the same signature.
    let mut upper = notification();
    upper.last_mut().unwrap().1.make_ascii_uppercase();
    assert!(verify_notification(&settings(), &upper).is_ok());

    for (status, event) in [("WAITING", Event::Waiting), ("CLOSED", Event::Closed)] {
        let mut form = notification();
        form[1].1 = status.into();
        resign(&mut form);
        let n = verify_notification(&settings(), &form).unwrap();
        assert_eq!(n.event, event);
        assert!(!n.paid);
    }
}

#[test]
fn tampered_or_missing_signatures_are_refused() {
    let bad = |form: &Pairs| {
        matches!(
            verify_notification(&settings(), form),
            Err(Error::BadSignature(_))
        )
    };
    // A changed amount under the old sign.
    let mut form = notification();
    form[4].1 = "1250.00".into();
    assert!(bad(&form));
    // One flipped hex digit, a short sign, not hex, no sign, an empty sign.
    let mut form = notification();
    form[6].1.replace_range(0..1, "f");
    assert!(bad(&form));
    let mut form = notification();
    form[6].1.truncate(62);
    assert!(bad(&form));
    let mut form = notification();
    form[6].1 = "z".repeat(64);
    assert!(bad(&form));
    let mut form = notification();
    form.pop();
    assert!(bad(&form));
    let mut form = notification();
    form[6].1.clear();
    assert!(bad(&form));
    // An added field under the old sign.
    let mut form = notification();
    form.push(("extra".into(), "1".into()));
    assert!(bad(&form));
    // The right fields signed with another secret.
    let mut form = notification();
    form.pop();
    let s = sign("another-secret-0123456789", &form).unwrap();
    form.push(("sign".into(), s));
    assert!(bad(&form));
    // Another merchant's notification, signed with the same secret.
    let mut form = notification();
    form[2].1 = "M2002".into();
    resign(&mut form);
    assert!(bad(&form));
    // The return checks the same signature.
    let mut query = pairs(&[("merchant_no", "M1001"), ("out_trade_no", "A-1")]);
    resign(&mut query);
    assert_eq!(
        verify_return(&settings(), &query).unwrap().out_trade_no,
        "A-1"
    );
    query[1].1 = "A-2".into();
    assert!(matches!(
        verify_return(&settings(), &query),
        Err(Error::BadSignature(_))
    ));
}

#[test]
fn missing_fields_are_named() {
    let mut form = notification();
    form.retain(|(k, _)| k != "notify_id" && k != "amount");
    resign(&mut form);
    match verify_notification(&settings(), &form) {
        Err(Error::Malformed(m)) => {
            assert!(m.contains("amount") && m.contains("notify_id"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let mut query = pairs(&[("merchant_no", "M1001")]);
    resign(&mut query);
    match verify_return(&settings(), &query) {
        Err(Error::Malformed(m)) => assert!(m.contains("out_trade_no"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_statuses_and_bad_amounts_are_malformed() {
    for (i, value) in [
        (1, "SUCCESS"),
        (1, "paid"),
        (4, "-1"),
        (4, "1.005"),
        (4, "0"),
    ] {
        let mut form = notification();
        form[i].1 = value.into();
        resign(&mut form);
        assert!(
            matches!(
                verify_notification(&settings(), &form),
                Err(Error::Malformed(_))
            ),
            "{value}"
        );
    }
}

#[test]
fn oversized_and_ambiguous_input_is_an_error() {
    let mut form = notification();
    form.push(("x".into(), "v".repeat(MAX_VALUE + 1)));
    assert!(matches!(
        verify_notification(&settings(), &form),
        Err(Error::Malformed(_))
    ));
    let form: Pairs = (0..10_000).map(|i| (format!("k{i}"), "v".into())).collect();
    assert!(matches!(
        verify_notification(&settings(), &form),
        Err(Error::Malformed(_))
    ));
    let mut form = notification();
    form.insert(0, ("status".into(), "CLOSED".into()));
    assert!(matches!(
        verify_notification(&settings(), &form),
        Err(Error::Malformed(_))
    ));
    let form = pairs(&[("k".repeat(MAX_KEY + 1).as_str(), "v")]);
    assert!(matches!(
        verify_return(&settings(), &form),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn amount_rules() {
    for (input, cents) in [
        ("1", 100),
        ("1.5", 150),
        ("1.50", 150),
        ("0.01", 1),
        ("007.00", 700),
        ("999999999999.99", 99_999_999_999_999),
    ] {
        assert_eq!(parse_amount(input), Ok(cents), "{input}");
    }
    for input in [
        "",
        "0",
        "0.00",
        "-1",
        "+1",
        "1.",
        ".5",
        "1.005",
        "1,5",
        " 1",
        "1e2",
        "1000000000000",
        "１",
    ] {
        assert!(parse_amount(input).is_err(), "{input:?}");
    }
    assert_eq!(format_amount(150), "1.50");
    assert_eq!(format_amount(1), "0.01");
    match start_payment(&settings(), &order("1.001")) {
        Err(Error::InvalidOrder(f)) => assert_eq!(f.field, "total_fee"),
        other => panic!("{other:?}"),
    }
    match start_payment(&settings(), &order("0")) {
        Err(Error::InvalidOrder(f)) => {
            assert_eq!(f.field, "total_fee");
            assert_eq!(f.reason, "must be positive");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn match_order_compares_decimals() {
    let expect = |fee| Expectation {
        out_trade_no: "A-1",
        total_fee: fee,
        seller: "",
    };
    assert_eq!(
        match_order("A-1", "1.50", Some("M1001"), &expect("1.5")),
        Ok(())
    );
    assert_eq!(match_order("A-1", "1.5", None, &expect("1.50")), Ok(()));
    let errors = match_order("A-2", "1.51", Some("M1001"), &expect("1.50")).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["out_trade_no", "total_fee"]);
    let with_seller = Expectation {
        out_trade_no: "A-1",
        total_fee: "1.50",
        seller: "M1001",
    };
    assert_eq!(
        match_order("A-1", "1.50", Some("M1001"), &with_seller),
        Ok(())
    );
    let errors = match_order("A-1", "1.50", Some("M2002"), &with_seller).unwrap_err();
    assert_eq!(errors[0].field, "seller");
    assert!(match_order("A-1", "1.50", None, &with_seller).is_err());
}

#[test]
fn settings_are_checked_field_by_field() {
    let (s, normalised) = validate_settings(&pairs(&[
        ("merchant_no", " M1001 "),
        ("api_secret", SECRET),
    ]))
    .unwrap();
    assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
    assert_eq!(s.mode, Mode::Redirect);
    assert_eq!(
        normalised,
        pairs(&[
            ("merchant_no", "M1001"),
            ("api_secret", SECRET),
            ("endpoint", DEFAULT_ENDPOINT),
            ("mode", "redirect"),
        ])
    );
    let (s, _) = validate_settings(&pairs(&[
        ("merchant_no", "M1001"),
        ("api_secret", SECRET),
        ("endpoint", "http://127.0.0.1:8080/testpay/"),
        ("mode", "POST"),
    ]))
    .unwrap();
    assert_eq!(s.endpoint, "http://127.0.0.1:8080/testpay");
    assert_eq!(s.mode, Mode::Post);

    let errors = validate_settings(&pairs(&[
        ("merchant_no", "M-1001"),
        ("api_secret", "short"),
        ("endpoint", "ftp://pay.testpay.example"),
        ("mode", "iframe"),
        ("partner", "2088"),
    ]))
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["partner", "merchant_no", "api_secret", "endpoint", "mode"]
    );
    let errors = validate_settings(&[]).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["merchant_no", "api_secret"]);
    assert!(errors[0].reason.contains("required"));
    let errors = validate_settings(&pairs(&[
        ("merchant_no", &"9".repeat(33)),
        ("api_secret", SECRET),
        ("endpoint", "https://pay.testpay.example/?a=1"),
    ]))
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["merchant_no", "endpoint"]);
    // Protocol calls refuse unusable settings the same way.
    assert!(matches!(
        verify_notification(&[], &notification()),
        Err(Error::InvalidSettings(_))
    ));
}

#[test]
fn start_payment_checks_the_order_and_the_mode() {
    let mut post = settings();
    post.push(("mode".into(), "post".into()));
    let started = start_payment(&post, &order("2")).unwrap();
    assert!(started.post);
    assert_eq!(started.total_fee, "2.00");
    let mut o = order("1");
    o.app = true;
    match start_payment(&settings(), &o) {
        Err(Error::InvalidOrder(f)) => assert_eq!(f.field, "product"),
        other => panic!("{other:?}"),
    }
    let mut o = order("1");
    o.notify_url = "javascript:alert(1)".into();
    match start_payment(&settings(), &o) {
        Err(Error::InvalidOrder(f)) => assert_eq!(f.field, "notify_url"),
        other => panic!("{other:?}"),
    }
    let mut o = order("1");
    o.out_trade_no = "x".repeat(65);
    match start_payment(&settings(), &o) {
        Err(Error::InvalidOrder(f)) => assert_eq!(f.field, "out_trade_no"),
        other => panic!("{other:?}"),
    }
}
