//! OpenAPI signing ([OPENAPI §3]) and notify/return verification ([OPENAPI §5], [OPENAPI §6.3]).
//!
//! * Requests: every parameter sent but `sign` and the empty ones, **`sign_type` included**,
//!   sorted by key bytes, raw `k=v` joined with `&`, signed with the app's private key.
//! * Notifies and returns: every received parameter but `sign` **and `sign_type`** (the official
//!   "V1" rule, verified on a real Alipay notify), values as decoded once by the form parser,
//!   verified with Alipay's public key and the algorithm the merchant configured.
//!
//! `RSA2` is SHA256withRSA, `RSA` SHA1withRSA, both PKCS#1 v1.5, standard base64.

use crate::sign::{PrivateKey, PublicKey, RsaError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::Sha1;
use sha2::Sha256;

/// The signature algorithm of an app (its `sign_type` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignType {
    /// SHA256withRSA: every SDK's default and the only one new apps get ([OPENAPI §3.2]).
    Rsa2,
    /// SHA1withRSA: older apps.
    Rsa,
}

impl SignType {
    /// The wire name (`RSA2`, `RSA`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Rsa2 => "RSA2",
            SignType::Rsa => "RSA",
        }
    }

    /// Parses the wire name, exactly as Alipay writes it.
    pub fn parse(name: &str) -> Option<SignType> {
        match name {
            "RSA2" => Some(SignType::Rsa2),
            "RSA" => Some(SignType::Rsa),
            _ => None,
        }
    }
}

/// The request signing string of [OPENAPI §3.1]: `sign` and empty values left out, `sign_type` kept, keys
/// in byte order, raw values.
pub fn request_sign_content<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sorted_join(
        params
            .into_iter()
            .filter(|(k, v)| *k != "sign" && !v.is_empty()),
    )
}

/// The notify/return verification string of [OPENAPI §6.3]: `sign` and `sign_type` left out, empty values
/// kept (`k=`) or dropped, keys in byte order, values as received (decoded once).
pub fn notify_sign_content<'a, I>(params: I, keep_empty: bool) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sorted_join(
        params
            .into_iter()
            .filter(|(k, v)| *k != "sign" && *k != "sign_type" && (keep_empty || !v.is_empty())),
    )
}

fn sorted_join<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut kept: Vec<(&str, &str)> = pairs.collect();
    // Byte order of the keys (Java's `Collections.sort` on ASCII keys, PHP's `ksort`); stable,
    // so a repeated key keeps its received order.
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    crate::sign::join_pairs(&kept)
}

/// Signs `content` (UTF-8 bytes) with the app's private key: base64 of the PKCS#1 v1.5 signature.
pub fn sign(content: &[u8], key: &PrivateKey, sign_type: SignType) -> Result<String, RsaError> {
    let rsa = key.as_rsa();
    let sig = match sign_type {
        SignType::Rsa2 => rsa.pkcs1v15_sign::<Sha256>(content),
        SignType::Rsa => rsa.pkcs1v15_sign::<Sha1>(content),
    }
    .map_err(|_| RsaError::BadKey("the key cannot sign"))?;
    Ok(BASE64.encode(sig))
}

/// Verifies a base64 signature over `content` with Alipay's public key and the app's algorithm
/// only (never the one a message claims: [OPENAPI §3.2]). Line breaks inside the base64 are tolerated.
pub fn verify(
    content: &[u8],
    received_b64: &str,
    key: &PublicKey,
    sign_type: SignType,
) -> Result<bool, RsaError> {
    let compact: String = received_b64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    // A signature is the modulus length: 1024 bytes at most (8192-bit keys).
    let mut sig = [0u8; 1024];
    let len = match BASE64.decode_slice(compact.as_bytes(), &mut sig) {
        Ok(len) => len,
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => return Ok(false),
        Err(base64::DecodeSliceError::DecodeError(_)) => {
            return Err(RsaError::BadSignatureEncoding)
        }
    };
    let rsa = key.as_rsa();
    let ok = match sign_type {
        SignType::Rsa2 => rsa.pkcs1v15_verify::<Sha256>(content, &sig[..len]),
        SignType::Rsa => rsa.pkcs1v15_verify::<Sha1>(content, &sig[..len]),
    }
    .is_ok();
    Ok(ok)
}

/// Why a notify or return was refused before or by its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyRejection {
    /// No `sign` parameter.
    Unsigned,
    /// `sign_type` names another algorithm than the app's ([OPENAPI §3.2]: verify with the configured one).
    SignTypeMismatch { received: String },
    /// The signature is not base64, or does not verify under any of the tolerated strings.
    BadSignature,
}

/// Verifies a notify or a return ([OPENAPI §5], [OPENAPI §6.3]) given the parameters exactly as the form parser
/// decoded them (once). The official rule first (empty values kept); where it fails and the
/// message has empty values, once more without them ([OPENAPI §6.3] NOTE); where it still fails and the
/// message carries `alipay_cert_sn`, once more without that parameter (certificate mode, [OPENAPI §6.3]
/// NOTE). Signature compares are the `rsa` crate's; the number of tries depends only on which
/// parameters are present, not on the key.
pub fn verify_notify(
    params: &[(&str, &str)],
    key: &PublicKey,
    sign_type: SignType,
) -> Result<(), NotifyRejection> {
    let sign = params
        .iter()
        .find(|(k, _)| *k == "sign")
        .map(|(_, v)| *v)
        .ok_or(NotifyRejection::Unsigned)?;
    if let Some((_, received)) = params.iter().find(|(k, _)| *k == "sign_type") {
        if !received.is_empty() && *received != sign_type.as_str() {
            return Err(NotifyRejection::SignTypeMismatch {
                received: (*received).to_owned(),
            });
        }
    }
    let try_content = |content: String| -> Result<bool, NotifyRejection> {
        verify(content.as_bytes(), sign, key, sign_type).map_err(|_| NotifyRejection::BadSignature)
    };
    if try_content(notify_sign_content(params.iter().copied(), true))? {
        return Ok(());
    }
    let has_empty = params.iter().any(|(_, v)| v.is_empty());
    if has_empty && try_content(notify_sign_content(params.iter().copied(), false))? {
        return Ok(());
    }
    if params.iter().any(|(k, _)| *k == "alipay_cert_sn") {
        let without = params
            .iter()
            .copied()
            .filter(|(k, _)| *k != "alipay_cert_sn");
        if try_content(notify_sign_content(without, true))? {
            return Ok(());
        }
    }
    Err(NotifyRejection::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::testdata::{self, Vectors};
    use crate::sign::{parse_private_key, parse_public_key};

    fn pairs(obj: &serde_json::Value) -> Vec<(String, String)> {
        obj.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    }

    fn borrowed(p: &[(String, String)]) -> Vec<(&str, &str)> {
        p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn app_key(v: &Vectors) -> PrivateKey {
        parse_private_key(v.key("app_private_pkcs8")).unwrap()
    }

    fn alipay_pub(v: &Vectors) -> PublicKey {
        parse_public_key(v.key("alipay_public")).unwrap()
    }

    /// Every request case of the reference ([OPENAPI §10.2]): the signing string and the RSA2 signature,
    /// byte for byte (RSA PKCS#1 v1.5 signatures are deterministic).
    #[test]
    fn request_vectors_sign_content_and_sign() {
        let v = testdata::vectors();
        let key = app_key(&v);
        for case in [
            "wap_pay",
            "page_pay",
            "app_pay",
            "trade_query_request",
            "trade_refund_request",
            "wap_pay_cert_mode",
            "aes",
        ] {
            let c = &v.json[case];
            let params = c.get("params").or_else(|| c.get("request_params")).unwrap();
            let p = pairs(params);
            let content = request_sign_content(borrowed(&p));
            assert_eq!(content, c["sign_content"].as_str().unwrap(), "{case}");
            let sig = sign(content.as_bytes(), &key, SignType::Rsa2).unwrap();
            assert_eq!(sig, c["sign"].as_str().unwrap(), "{case}");
            // The app's own public key verifies it (what the gateway does).
            let app_pub = parse_public_key(v.key("app_public")).unwrap();
            assert!(verify(content.as_bytes(), &sig, &app_pub, SignType::Rsa2).unwrap());
            assert!(!verify(content.as_bytes(), &sig, &app_pub, SignType::Rsa).unwrap());
        }
    }

    #[test]
    fn pkcs1_and_pkcs8_app_keys_sign_alike() {
        let v = testdata::vectors();
        let k8 = parse_private_key(v.key("app_private_pkcs8")).unwrap();
        let k1 = parse_private_key(v.key("app_private_pkcs1")).unwrap();
        let content = v.json["wap_pay"]["sign_content"].as_str().unwrap();
        assert_eq!(
            sign(content.as_bytes(), &k8, SignType::Rsa2).unwrap(),
            sign(content.as_bytes(), &k1, SignType::Rsa2).unwrap()
        );
    }

    /// `sign_type=RSA` changes the signing string too (it is signed) and the digest.
    #[test]
    fn rsa1_variant_and_empty_values() {
        let v = testdata::vectors();
        let key = app_key(&v);
        let c = &v.json["wap_pay"]["rsa1_variant"];
        let mut p = pairs(&v.json["wap_pay"]["params"]);
        for (k, val) in p.iter_mut() {
            if k == "sign_type" {
                *val = "RSA".into();
            }
        }
        let content = request_sign_content(borrowed(&p));
        assert_eq!(content, c["sign_content"].as_str().unwrap());
        assert_eq!(
            sign(content.as_bytes(), &key, SignType::Rsa).unwrap(),
            c["sign"].as_str().unwrap()
        );
        // An empty value is never part of a request's signing string.
        let e = &v.json["wap_pay"]["empty_value_dropped"];
        let mut p = pairs(&v.json["wap_pay"]["params"]);
        p.push(("app_auth_token".into(), String::new()));
        let content = request_sign_content(borrowed(&p));
        let expected = e
            .get("sign_content")
            .and_then(|s| s.as_str())
            .unwrap_or(v.json["wap_pay"]["sign_content"].as_str().unwrap());
        assert_eq!(content, expected);
    }

    /// The notify vectors: V1 verifies; keeping `sign_type` (V2) fails; decoding twice fails; a
    /// tampered amount fails; the notify's body is the raw POST, decoded once here.
    #[test]
    fn notify_vectors() {
        let v = testdata::vectors();
        let key = alipay_pub(&v);
        for case in [
            "notify_trade_success",
            "notify_partial_refund",
            "notify_empty_value",
        ] {
            let c = &v.json[case];
            let body = testdata::read(c["form_body_file"].as_str().unwrap());
            let decoded: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let p = borrowed(&decoded);
            assert_eq!(
                notify_sign_content(p.iter().copied(), true),
                c["sign_content"].as_str().unwrap(),
                "{case}"
            );
            assert_eq!(verify_notify(&p, &key, SignType::Rsa2), Ok(()), "{case}");
            // The algorithm is the app's, not the message's.
            assert!(matches!(
                verify_notify(&p, &key, SignType::Rsa),
                Err(NotifyRejection::SignTypeMismatch { .. })
            ));
            // V2 (sign_type kept) does not verify a payment notify.
            let sign = p.iter().find(|(k, _)| *k == "sign").unwrap().1;
            let v2 = sorted_join(p.iter().copied().filter(|(k, _)| *k != "sign"));
            assert!(!verify(v2.as_bytes(), sign, &key, SignType::Rsa2).unwrap());
            // Decoding a second time breaks it where a value holds a `%`.
            if p.iter().any(|(_, v)| v.contains('%')) {
                let twice: Vec<(String, String)> = decoded
                    .iter()
                    .map(|(k, v)| {
                        let again: String = form_urlencoded::parse(format!("x={v}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap();
                        (k.clone(), if k == "sign" { v.clone() } else { again })
                    })
                    .collect();
                assert_eq!(
                    verify_notify(&borrowed(&twice), &key, SignType::Rsa2),
                    Err(NotifyRejection::BadSignature)
                );
            }
            // Any tampered value fails.
            let tampered: Vec<(&str, &str)> = p
                .iter()
                .map(|(k, v)| {
                    if *k == "total_amount" {
                        (*k, "0.01")
                    } else {
                        (*k, *v)
                    }
                })
                .collect();
            assert_eq!(
                verify_notify(&tampered, &key, SignType::Rsa2),
                Err(NotifyRejection::BadSignature)
            );
            let unsigned: Vec<(&str, &str)> =
                p.iter().copied().filter(|(k, _)| *k != "sign").collect();
            assert_eq!(
                verify_notify(&unsigned, &key, SignType::Rsa2),
                Err(NotifyRejection::Unsigned)
            );
        }
    }

    /// The empty-value case: the official rule keeps `body=`; the same notify with the empty
    /// parameter removed in transit still verifies only if it was signed without it.
    #[test]
    fn notify_empty_value_kept_then_dropped() {
        let v = testdata::vectors();
        let c = &v.json["notify_empty_value"];
        let p = pairs(&c["params"]);
        let p = borrowed(&p);
        assert!(p.iter().any(|(_, v)| v.is_empty()));
        let kept = notify_sign_content(p.iter().copied(), true);
        let dropped = notify_sign_content(p.iter().copied(), false);
        assert_ne!(kept, dropped);
        let key = alipay_pub(&v);
        let sign = p.iter().find(|(k, _)| *k == "sign").unwrap().1;
        assert!(verify(kept.as_bytes(), sign, &key, SignType::Rsa2).unwrap());
        assert!(!verify(dropped.as_bytes(), sign, &key, SignType::Rsa2).unwrap());
    }

    /// The two second tries of [`verify_notify`] ([OPENAPI §6.3] NOTE), each reached: a notify signed
    /// without its empty value, and a certificate-mode notify signed without `alipay_cert_sn`,
    /// verify; the same with any other value changed do not; an empty value that was signed keeps
    /// the first rule.
    #[test]
    fn notify_second_tries() {
        let v = testdata::vectors();
        let alipay = parse_private_key(v.key("alipay_private_pkcs8")).unwrap();
        let key = alipay_pub(&v);
        let base = pairs(&v.json["notify_empty_value"]["params"]);
        let base: Vec<(String, String)> = base.into_iter().filter(|(k, _)| k != "sign").collect();
        let signed_over =
            |content: String| sign(content.as_bytes(), &alipay, SignType::Rsa2).unwrap();
        let with_sign = |p: &[(String, String)], sig: &str| {
            let mut p = p.to_vec();
            p.push(("sign".into(), sig.to_owned()));
            p
        };
        // Signed without the empty value (some senders drop it), received with it.
        assert!(base.iter().any(|(_, v)| v.is_empty()));
        let sig = signed_over(notify_sign_content(borrowed(&base), false));
        let received = with_sign(&base, &sig);
        assert_eq!(
            verify_notify(&borrowed(&received), &key, SignType::Rsa2),
            Ok(())
        );
        let mut tampered = received.clone();
        for (k, v) in tampered.iter_mut() {
            if k == "total_amount" {
                *v = "0.01".into();
            }
        }
        assert_eq!(
            verify_notify(&borrowed(&tampered), &key, SignType::Rsa2),
            Err(NotifyRejection::BadSignature)
        );
        // Certificate mode: signed without `alipay_cert_sn`, received with it.
        let full: Vec<(String, String)> = base
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .cloned()
            .collect();
        let sig = signed_over(notify_sign_content(borrowed(&full), true));
        let mut received = with_sign(&full, &sig);
        received.push((
            "alipay_cert_sn".into(),
            "6cd05bf2a8b1e6b4e0f1c5f0d8c2a1b3".into(),
        ));
        assert_eq!(
            verify_notify(&borrowed(&received), &key, SignType::Rsa2),
            Ok(())
        );
        for (k, v) in received.iter_mut() {
            if k == "out_trade_no" {
                v.push('9');
            }
        }
        assert_eq!(
            verify_notify(&borrowed(&received), &key, SignType::Rsa2),
            Err(NotifyRejection::BadSignature)
        );
    }

    /// The browser return ([OPENAPI §5]): the query string as delivered, decoded once, verified like a
    /// notify.
    #[test]
    fn return_vector() {
        let v = testdata::vectors();
        let c = &v.json["return_wap"];
        let q = c["query_string"].as_str().unwrap();
        let decoded: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let p = borrowed(&decoded);
        assert_eq!(
            notify_sign_content(p.iter().copied(), true),
            c["sign_content"].as_str().unwrap()
        );
        assert_eq!(verify_notify(&p, &alipay_pub(&v), SignType::Rsa2), Ok(()));
        // The app's own public key is not Alipay's: a merchant who pasted it sees every
        // notify refused.
        let app_pub = parse_public_key(v.key("app_public")).unwrap();
        assert_eq!(
            verify_notify(&p, &app_pub, SignType::Rsa2),
            Err(NotifyRejection::BadSignature)
        );
    }

    /// Real Alipay signatures ([OPENAPI §10.4]): a 2019 payment notify verifies with the V1 rule and not
    /// with V2; a service-market gateway message the other way round.
    #[test]
    fn real_alipay_samples() {
        let real = testdata::real_samples();
        for (name, v1_expected) in [
            ("trade_notify_2019", true),
            ("servicemarket_gateway_notify_2019", false),
        ] {
            let sample = &real[name];
            let key = parse_public_key(sample["alipay_public_key"].as_str().unwrap()).unwrap();
            let p = pairs(&sample["params"]);
            let p = borrowed(&p);
            let st = SignType::parse(sample["sign_type"].as_str().unwrap()).unwrap();
            assert_eq!(verify_notify(&p, &key, st).is_ok(), v1_expected, "{name}");
            // V2 keeps sign_type in the string.
            let sign = p.iter().find(|(k, _)| *k == "sign").unwrap().1;
            let v2 = sorted_join(p.iter().copied().filter(|(k, _)| *k != "sign"));
            assert_eq!(
                verify(v2.as_bytes(), sign, &key, st).unwrap(),
                !v1_expected,
                "{name}"
            );
        }
    }
}
