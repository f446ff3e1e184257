//! The settings of an OpenAPI merchant (`api = openapi`): an app id, the app's private key, and
//! Alipay's public key, or the three certificates of certificate mode ([OPENAPI §3.3], [OPENAPI §3.4]). Every bad field is named with its rule.

use super::cert;
use super::sign::SignType;
use crate::model::FieldError;
use crate::settings::is_alipay_user_id;
use crate::sign::{parse_private_key, parse_public_key, PrivateKey, PublicKey};

/// Alipay's production OpenAPI gateway.
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";
/// Alipay's sandbox gateway (2023 on; the older `openapi.alipaydev.com` is retired, [OPENAPI §8]).
pub const SANDBOX_GATEWAY: &str = "https://openapi-sandbox.dl.alipaydev.com/gateway.do";

/// The settings only an OpenAPI merchant has.
pub const OPENAPI_ONLY: &[&str] = &[
    "app_id",
    "app_private_key",
    "app_cert",
    "alipay_cert",
    "alipay_root_cert",
    "seller_id",
    "gateway",
];
/// The settings both families have (same name, each family's own meaning).
pub const SHARED: &[&str] = &["api", "alipay_public_key", "sign_type"];

/// Certificate mode: the two serial numbers every request carries, and the SN of the Alipay
/// certificate whose key verifies (a response naming another one is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertMode {
    pub app_cert_sn: String,
    pub alipay_root_cert_sn: String,
    pub alipay_cert_sn: String,
}

/// A validated OpenAPI merchant.
#[derive(Clone, Debug)]
pub struct OpenApiSettings {
    pub app_id: String,
    pub private_key: Box<PrivateKey>,
    /// Verifies notifies, returns and responses: the configured public key, or the key inside
    /// `alipay_cert`.
    pub alipay_key: Box<PublicKey>,
    pub cert_mode: Option<CertMode>,
    /// The default seller (2088…); an order's own `seller` overrides it.
    pub seller_id: Option<String>,
    pub gateway: String,
    pub sign_type: SignType,
}

/// The smallest key `sign_type = RSA2` takes, in bits. The references here say RSA2 keys are
/// 2048-bit, Alipay's key tool's default, and the app private key "RSA-2048" ([OPENAPI §3.2]); Alipay's
/// open-platform documentation (opendocs.alipay.com, the key-generation and signing pages; not quoted
/// in docs/protocol/, restated here from knowledge) requires a key length of 2048 bits for RSA2. A
/// 1024-bit app private key, Alipay public key or `alipay_cert` key is therefore refused under RSA2,
/// when the settings are saved and, since every call validates the stored settings again
/// ([`super::connector::load`]), at every use too, with the same error. `sign_type = RSA`
/// (SHA1withRSA) keeps an older app's 1024-bit key ([OPENAPI §3.2]: "1024 (old apps) or 2048"), and
/// the legacy API (`api = mapi`, MD5 or RSA) is not concerned: its RSA key is 1024-bit
/// ([WAP §5.2], [`crate::settings`]).
pub const RSA2_MIN_KEY_BITS: usize = 2048;

/// The rule [`RSA2_MIN_KEY_BITS`] gives a key of `bits` bits under `sign_type`, if it breaks it.
fn rsa2_key_problem(sign_type: SignType, bits: usize, holds: bool) -> Option<String> {
    (sign_type == SignType::Rsa2 && bits < RSA2_MIN_KEY_BITS).then(|| {
        let (rule, this) = if holds {
            ("must hold a key of", format!("this one holds a {bits}-bit key"))
        } else {
            ("must be", format!("this one is {bits}-bit"))
        };
        format!(
            "{rule} at least {RSA2_MIN_KEY_BITS} bits for sign_type RSA2 ({this}): Alipay's open platform requires 2048-bit RSA2 keys (RSA2 密钥长度须为 2048 位); only an older app set up for sign_type RSA (SHA1withRSA) keeps a 1024-bit key"
        )
    })
}

/// Validated settings and the normalised pairs to store.
pub type Validated = (OpenApiSettings, Vec<(String, String)>);

/// True when the settings choose the OpenAPI family.
pub fn is_openapi(pairs: &[(String, String)]) -> bool {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "api")
        .is_some_and(|(_, v)| v.trim().eq_ignore_ascii_case("openapi"))
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A 16-digit app id (`2021000000000001`).
pub fn is_app_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Validates an OpenAPI merchant's settings; returns them typed, with the normalised pairs to
/// store (trimmed, defaults written out), or every bad field.
pub fn validate(pairs: &[(String, String)]) -> Result<Validated, Vec<FieldError>> {
    let mut errors = crate::settings::repeated(pairs);
    for (k, _) in pairs {
        if !OPENAPI_ONLY.contains(&k.as_str()) && !SHARED.contains(&k.as_str()) {
            errors.push(FieldError::new(
                k,
                "is a setting of the legacy API (api = mapi), not of api = openapi",
            ));
        }
    }
    let g = |name| get(pairs, name);
    let mut out: Vec<(String, String)> = vec![("api".into(), "openapi".into())];

    let app_id = match g("app_id") {
        None => {
            errors.push(FieldError::new(
                "app_id",
                "is required (the 16-digit APPID of the app)",
            ));
            None
        }
        Some(a) if !is_app_id(a) => {
            errors.push(FieldError::new(
                "app_id",
                "must be 16 digits (the APPID, e.g. 2021000000000001)",
            ));
            None
        }
        Some(a) => Some(a.to_owned()),
    };

    let sign_type = match g("sign_type").map(str::to_ascii_uppercase).as_deref() {
        None | Some("RSA2") => SignType::Rsa2,
        Some("RSA") => SignType::Rsa,
        Some(_) => {
            errors.push(FieldError::new(
                "sign_type",
                "must be RSA2 (SHA256withRSA) or RSA (SHA1withRSA) for api = openapi",
            ));
            SignType::Rsa2
        }
    };

    let private_key = match g("app_private_key") {
        None => {
            errors.push(FieldError::new(
                "app_private_key",
                "is required (应用私钥: PEM, PKCS#8 or PKCS#1, or its base64 body)",
            ));
            None
        }
        // Parsed only: the full check (one private operation, ≈ 20 ms of a 2048-bit key in
        // wasm) runs when the settings are saved (`connector::validate_settings`), not on every
        // protocol call, where anyone's return or notification would pay for it.
        Some(text) => match parse_private_key(text) {
            Ok(k) => {
                // The key is kept (the other fields are still compared with it); the error
                // alone refuses the settings.
                if let Some(rule) = rsa2_key_problem(sign_type, k.size() * 8, false) {
                    errors.push(FieldError::new("app_private_key", rule));
                }
                Some(k)
            }
            Err(e) => {
                errors.push(FieldError::new("app_private_key", e.to_string()));
                None
            }
        },
    };
    let app_public = private_key.as_ref().map(PrivateKey::to_public_key);

    let certs = [g("app_cert"), g("alipay_cert"), g("alipay_root_cert")];
    let cert_mode_wanted = certs.iter().any(Option::is_some);
    let mut alipay_key = None;
    let mut cert_mode = None;
    if cert_mode_wanted {
        if g("alipay_public_key").is_some() {
            errors.push(FieldError::new(
                "alipay_public_key",
                "must be empty in certificate mode (Alipay's key comes from alipay_cert)",
            ));
        }
        let mut sns = [None, None, None];
        for (i, (name, text)) in ["app_cert", "alipay_cert", "alipay_root_cert"]
            .iter()
            .zip(certs)
            .enumerate()
        {
            let Some(text) = text else {
                errors.push(FieldError::new(
                    name,
                    "is required in certificate mode (all three certificates: app_cert, alipay_cert, alipay_root_cert)",
                ));
                continue;
            };
            let sn = if *name == "alipay_root_cert" {
                cert::root_cert_sn(text)
            } else {
                cert::cert_sn(text)
            };
            match sn {
                Ok(sn) => sns[i] = Some(sn),
                Err(e) => errors.push(FieldError::new(name, e.to_string())),
            }
        }
        if let Some(text) = certs[0] {
            match cert::public_key(text) {
                Ok(k) if app_public.as_ref().is_some_and(|p| *p != k) => errors.push(FieldError::new(
                    "app_cert",
                    "does not hold the public key of app_private_key (应用公钥证书 must match 应用私钥)",
                )),
                Ok(_) => {}
                Err(e) => errors.push(FieldError::new("app_cert", e.to_string())),
            }
        }
        if let Some(text) = certs[1] {
            match cert::public_key(text) {
                Ok(k) if app_public.as_ref() == Some(&k) => errors.push(FieldError::new(
                    "alipay_cert",
                    "holds the app's own public key: paste 支付宝公钥证书 (alipayCertPublicKey_RSA2.crt), not the app's certificate",
                )),
                Ok(k) => {
                    if let Some(rule) = rsa2_key_problem(sign_type, k.size() * 8, true) {
                        errors.push(FieldError::new("alipay_cert", rule));
                    }
                    alipay_key = Some(k);
                }
                Err(e) => errors.push(FieldError::new("alipay_cert", e.to_string())),
            }
        }
        if let [Some(app), Some(alipay), Some(root)] = sns {
            cert_mode = Some(CertMode {
                app_cert_sn: app,
                alipay_root_cert_sn: root,
                alipay_cert_sn: alipay,
            });
        }
    } else {
        match g("alipay_public_key") {
            None => errors.push(FieldError::new(
                "alipay_public_key",
                "is required (支付宝公钥: PEM or its base64 body), or use certificate mode",
            )),
            Some(text) => match parse_public_key(text) {
                Ok(k) if app_public.as_ref() == Some(&k) => errors.push(FieldError::new(
                    "alipay_public_key",
                    "is the app's own public key (应用公钥): paste 支付宝公钥, shown by the console after the app key is uploaded",
                )),
                Ok(k) => {
                    if let Some(rule) = rsa2_key_problem(sign_type, k.size() * 8, false) {
                        errors.push(FieldError::new("alipay_public_key", rule));
                    }
                    alipay_key = Some(k);
                }
                Err(e) => errors.push(FieldError::new("alipay_public_key", e.to_string())),
            },
        }
    }

    let seller_id = match g("seller_id") {
        None => None,
        Some(s) if !is_alipay_user_id(s) => {
            errors.push(FieldError::new(
                "seller_id",
                "must be the 16-digit Alipay user id of the seller (2088…)",
            ));
            None
        }
        Some(s) => Some(s.to_owned()),
    };

    let gateway = match g("gateway") {
        None => DEFAULT_GATEWAY.to_owned(),
        Some(u) => match crate::settings::url_problem(u, false) {
            Some(rule) => {
                errors.push(FieldError::new("gateway", rule));
                String::new()
            }
            None => crate::settings::with_lower_scheme(u),
        },
    };

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(app_id), Some(private_key), Some(alipay_key)) = (app_id, private_key, alipay_key)
    else {
        unreachable!("every missing part pushed an error");
    };
    out.push(("app_id".into(), app_id.clone()));
    out.push(("sign_type".into(), sign_type.as_str().into()));
    for name in [
        "app_private_key",
        "alipay_public_key",
        "app_cert",
        "alipay_cert",
        "alipay_root_cert",
        "seller_id",
    ] {
        if let Some(v) = g(name) {
            out.push((name.into(), v.to_owned()));
        }
    }
    out.push(("gateway".into(), gateway.clone()));
    // Stored in the schema's order, as the legacy settings are.
    out.sort_by_key(|(name, _)| crate::settings::schema_position(name));
    Ok((
        OpenApiSettings {
            app_id,
            private_key: Box::new(private_key),
            alipay_key: Box::new(alipay_key),
            cert_mode,
            seller_id,
            gateway,
            sign_type,
        },
        out,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::openapi::testdata;

    pub(crate) fn settings_pairs() -> Vec<(String, String)> {
        let v = testdata::vectors();
        vec![
            ("api".into(), "openapi".into()),
            ("app_id".into(), " 2021000000000001 ".into()),
            ("app_private_key".into(), v.key("app_private_pkcs1").into()),
            (
                "alipay_public_key".into(),
                v.key("alipay_public_one_line").into(),
            ),
            ("seller_id".into(), "2088000000000002".into()),
        ]
    }

    fn errors(pairs: &[(String, String)]) -> Vec<(String, String)> {
        validate(pairs)
            .err()
            .unwrap()
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect()
    }

    fn with(mut pairs: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
        pairs.retain(|(k, _)| k != name);
        pairs.push((name.into(), value.into()));
        pairs
    }

    #[test]
    fn good_settings_normalise_with_defaults() {
        let (s, norm) = validate(&settings_pairs()).unwrap();
        assert_eq!(s.app_id, "2021000000000001");
        assert_eq!(s.sign_type, SignType::Rsa2);
        assert_eq!(s.gateway, DEFAULT_GATEWAY);
        assert!(s.cert_mode.is_none());
        let get = |k: &str| norm.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("app_id"), Some("2021000000000001"));
        assert_eq!(get("sign_type"), Some("RSA2"));
        assert_eq!(get("gateway"), Some(DEFAULT_GATEWAY));
        assert!(is_openapi(&settings_pairs()));
        assert!(!is_openapi(&with(settings_pairs(), "api", "mapi")));
    }

    #[test]
    fn each_bad_field_is_named() {
        let v = testdata::vectors();
        let e = errors(&with(settings_pairs(), "app_id", "2021"));
        assert_eq!(e[0].0, "app_id");
        let e = errors(&with(
            settings_pairs(),
            "app_private_key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ));
        assert_eq!(e[0].0, "app_private_key");
        // The app's own public key pasted where Alipay's belongs: the #1 support question.
        let e = errors(&with(
            settings_pairs(),
            "alipay_public_key",
            v.key("app_public"),
        ));
        assert_eq!(e[0].0, "alipay_public_key");
        assert!(e[0].1.contains("应用公钥"), "{}", e[0].1);
        let e = errors(&with(settings_pairs(), "seller_id", "seller@example.com"));
        assert_eq!(e[0].0, "seller_id");
        let e = errors(&with(settings_pairs(), "sign_type", "MD5"));
        assert_eq!(e[0].0, "sign_type");
        let e = errors(&with(settings_pairs(), "gateway", "ftp://x"));
        assert_eq!(e[0].0, "gateway");
        let e = errors(&with(settings_pairs(), "partner", "2088000000000002"));
        assert_eq!(e[0].0, "partner");
        // Everything wrong at once: every field, in one answer.
        let e = errors(&[("api".into(), "openapi".into())]);
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["app_id", "app_private_key", "alipay_public_key"]);
    }

    /// chloerei's 1024-bit test pair ([WAP §12]): the size of the legacy interfaces' keys.
    const PRIV_1024: &str = include_str!("../../testdata/test_priv.pem");
    const PUB_1024: &str = include_str!("../../testdata/test_pub.pem");
    /// A self-signed test-only certificate of a 1024-bit key (`openssl req -x509 -newkey
    /// rsa:1024`), for `alipay_cert` in certificate mode.
    const CERT_1024: &str = "-----BEGIN CERTIFICATE-----
MIICeDCCAeGgAwIBAgIUYxr2ZyzOuQWhaqGh2h5GF34dL+cwDQYJKoZIhvcNAQEL
BQAwTTELMAkGA1UEBhMCQ04xFTATBgNVBAoMDHBheWhvc3QgdGVzdDEnMCUGA1UE
AwwedGVzdC1vbmx5IDEwMjQtYml0IGFsaXBheSBjZXJ0MCAXDTI2MTIwNzExNTEz
N1oYDzIxMjYxMTEzMTE1MTM3WjBNMQswCQYDVQQGEwJDTjEVMBMGA1UECgwMcGF5
aG9zdCB0ZXN0MScwJQYDVQQDDB50ZXN0LW9ubHkgMTAyNC1iaXQgYWxpcGF5IGNl
cnQwgZ8wDQYJKoZIhvcNAQEBBQADgY0AMIGJAoGBAM3sPeCQUpQxGqUqJWkWbkYD
bYkge5wuSVsTi6eeF8C4pGK/NtXmEe57z83uNYKm8l7iPVpI+PvGJYtIDk4rHxNB
iEtvpTrcBCREqXTVzRUBxwTs/9kcLqqBNvNBZzFT1MrxjF3iz77yxBOPLp/nMaCp
Vv02/nJnkOZfYqJeyskvAgMBAAGjUzBRMB0GA1UdDgQWBBQkCLpdGLG+mkLu9SlK
QEyTSiL0hDAfBgNVHSMEGDAWgBQkCLpdGLG+mkLu9SlKQEyTSiL0hDAPBgNVHRMB
Af8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4GBACIyfaJixyBWIBuXEuFH2dRl9rdk
d9dcty9fjXX5vMu7XlreiB+YznaB8gGupVYXeODHUTH6kZ10axt1mYkYuypUkkm9
nB870LZqIdKANz48AAFY0VXzsGHjdJjaSVE4CctWdCzs+DbNgRW1y/x4B0fWnWmL
VNaVcki9klvcBjxc
-----END CERTIFICATE-----";

    /// [`RSA2_MIN_KEY_BITS`]: under RSA2 (the default and spelled out) a 1024-bit app private key
    /// or Alipay public key is refused naming its field and the rule, in one answer with every
    /// other bad field; 2048-bit keys pass.
    #[test]
    fn rsa2_refuses_keys_under_2048_bits() {
        assert!(validate(&settings_pairs()).is_ok());
        assert!(validate(&with(settings_pairs(), "sign_type", "RSA2")).is_ok());
        for sign_type in [None, Some("RSA2"), Some("rsa2")] {
            let base = match sign_type {
                None => settings_pairs(),
                Some(t) => with(settings_pairs(), "sign_type", t),
            };
            let e = errors(&with(base.clone(), "app_private_key", PRIV_1024));
            assert_eq!(
                e,
                [(
                    "app_private_key".to_owned(),
                    "must be at least 2048 bits for sign_type RSA2 (this one is 1024-bit): Alipay's open platform requires 2048-bit RSA2 keys (RSA2 密钥长度须为 2048 位); only an older app set up for sign_type RSA (SHA1withRSA) keeps a 1024-bit key".to_owned()
                )],
                "{sign_type:?}"
            );
            let e = errors(&with(base.clone(), "alipay_public_key", PUB_1024));
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].0, "alipay_public_key");
            assert!(
                e[0].1.starts_with(
                    "must be at least 2048 bits for sign_type RSA2 (this one is 1024-bit): "
                ),
                "{}",
                e[0].1
            );
            // Both at once, beside another bad field: each named.
            let both = with(
                with(
                    with(base, "app_private_key", PRIV_1024),
                    "alipay_public_key",
                    PUB_1024,
                ),
                "app_id",
                "2021",
            );
            let fields: Vec<String> = errors(&both).into_iter().map(|(f, _)| f).collect();
            assert_eq!(fields, ["app_id", "app_private_key", "alipay_public_key"]);
        }
        // sign_type RSA (SHA1withRSA) keeps an older app's 1024-bit keys ([OPENAPI §3.2]).
        let v = testdata::vectors();
        let rsa1 = with(settings_pairs(), "sign_type", "RSA");
        let old_app_key = with(
            with(rsa1.clone(), "app_private_key", PRIV_1024),
            "alipay_public_key",
            v.key("alipay_public"),
        );
        let (s, _) = validate(&old_app_key).unwrap();
        assert_eq!((s.sign_type, s.private_key.size()), (SignType::Rsa, 128));
        let old_alipay_key = with(rsa1, "alipay_public_key", PUB_1024);
        assert_eq!(validate(&old_alipay_key).unwrap().0.alipay_key.size(), 128);
    }

    /// Certificate mode: under RSA2 the key inside `alipay_cert` is held to the same rule.
    #[test]
    fn rsa2_refuses_a_1024_bit_alipay_certificate() {
        let pem = |rel: &str| String::from_utf8(testdata::read(rel)).unwrap();
        let mut pairs = settings_pairs();
        pairs.retain(|(k, _)| k != "alipay_public_key");
        pairs.push(("app_cert".into(), pem("certs/test_app_cert.crt")));
        pairs.push(("alipay_cert".into(), CERT_1024.into()));
        pairs.push((
            "alipay_root_cert".into(),
            pem("certs/alipay_root_cert_real.crt"),
        ));
        let e = errors(&pairs);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "alipay_cert");
        assert!(
            e[0].1.starts_with("must hold a key of at least 2048 bits for sign_type RSA2 (this one holds a 1024-bit key): "),
            "{}",
            e[0].1
        );
        assert!(validate(&with(pairs, "sign_type", "RSA")).is_ok());
    }

    /// The legacy API is not concerned: its RSA merchant key is 1024-bit ([WAP §5.2]) and still
    /// taken.
    #[test]
    fn legacy_rsa_keeps_1024_bit_keys() {
        let pairs: Vec<(String, String)> = [
            ("partner", "2088101122136241"),
            ("sign_type", "RSA"),
            ("seller_email", "seller@example.com"),
            ("private_key", PRIV_1024),
            ("alipay_public_key", PUB_1024),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (s, _) = crate::settings::validate(&pairs).unwrap();
        assert_eq!(s.signer.sec_id(), "0001");
        crate::connector::validate_settings(&pairs).unwrap();
    }

    /// Settings stored before the rule (here: valid under RSA, then switched to RSA2 as a stored
    /// blob would be) are validated again by every call: each answers `invalid-settings` with the
    /// same field and rule, never a panic.
    #[test]
    fn a_stored_rsa2_blob_with_a_1024_bit_key_is_refused_at_use() {
        use crate::connector;
        use crate::model::{PaymentRequest, PluginError, Product, RefundRequest};
        let stored = with(settings_pairs(), "app_private_key", PRIV_1024);
        let at_save = connector::validate_settings(&stored).unwrap_err();
        assert_eq!(at_save.len(), 1);
        let same = |r: PluginError| match r {
            PluginError::InvalidSettings(e) => assert_eq!(e, at_save),
            other => panic!("{other:?}"),
        };
        let order = PaymentRequest {
            product: Product::Wap,
            out_trade_no: "ECS20240520000123".into(),
            subject: "x".into(),
            total_fee: "1.00".into(),
            return_url: "https://shop.example.com/return".into(),
            notify_url: "https://shop.example.com/notify".into(),
            request_id: "abc".into(),
            ..Default::default()
        };
        same(connector::start_payment(&stored, &order).unwrap_err());
        same(connector::verify_notification(&stored, &[]).unwrap_err());
        same(connector::verify_return(&stored, &[]).unwrap_err());
        same(connector::query_trade(&stored, "ECS20240520000123").unwrap_err());
        let refund = RefundRequest {
            out_trade_no: "ECS20240520000123".into(),
            amount: "1.00".into(),
            total_fee: "1.00".into(),
            request_no: "R1".into(),
            ..Default::default()
        };
        same(connector::start_refund(&stored, &refund).unwrap_err());
        same(connector::close_trade(&stored, "ECS20240520000123").unwrap_err());
    }

    #[test]
    fn certificate_mode() {
        let pem = |rel: &str| String::from_utf8(testdata::read(rel)).unwrap();
        let v = testdata::vectors();
        let mut pairs = settings_pairs();
        pairs.retain(|(k, _)| k != "alipay_public_key");
        pairs.push(("app_cert".into(), pem("certs/test_app_cert.crt")));
        pairs.push(("alipay_cert".into(), pem("certs/test_alipay_cert.crt")));
        pairs.push((
            "alipay_root_cert".into(),
            pem("certs/alipay_root_cert_real.crt"),
        ));
        let (s, _) = validate(&pairs).unwrap();
        let c = s.cert_mode.unwrap();
        assert_eq!(
            c.app_cert_sn,
            v.json["cert_sn"]["test_app_cert"]["sn"].as_str().unwrap()
        );
        assert_eq!(
            c.alipay_root_cert_sn,
            v.json["cert_sn"]["real_alipay_root_bundle"]["sn"]
                .as_str()
                .unwrap()
        );
        // One certificate missing, and a public key beside the certificates.
        let mut partial: Vec<_> = pairs
            .iter()
            .filter(|(k, _)| k != "alipay_root_cert")
            .cloned()
            .collect();
        partial.push(("alipay_public_key".into(), v.key("alipay_public").into()));
        let e = errors(&partial);
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["alipay_public_key", "alipay_root_cert"]);
        // The app's certificate where Alipay's belongs.
        let swapped = with(
            pairs.clone(),
            "alipay_cert",
            &pem("certs/test_app_cert.crt"),
        );
        assert_eq!(errors(&swapped)[0].0, "alipay_cert");
    }
}
