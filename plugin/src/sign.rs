//! Alipay's signature rules (protocol reference §5): the string to sign, MD5 and RSA (`sec_id=0001`).
//!
//! * Requests, the call-back and the create response: drop `sign`, `sign_type` and empty values,
//!   sort keys byte-wise, join raw `k=v` with `&`.
//! * The asynchronous notify: the fixed order `service, v, sec_id, notify_data`, never sorted.
//! * MD5: lower-case hex of md5(string + key). RSA: base64 of SHA1withRSA (PKCS#1 v1.5).
//!
//! Every comparison of a received signature is constant-time.

use crate::b64;
use crate::rsa::{self, PrivateKey, PublicKey};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The sorted link string of §5.1: `sign`, `sign_type` and empty values left out, keys in byte order.
pub fn sorted_link_string<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut kept: Vec<(&str, &str)> = pairs
        .into_iter()
        .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
        .collect();
    // Insertion sort: parameter lists are short, and the generic sorts cost the component ~8 KiB.
    for i in 1..kept.len() {
        let mut j = i;
        while j > 0 && kept[j - 1].0.as_bytes() > kept[j].0.as_bytes() {
            kept.swap(j - 1, j);
            j -= 1;
        }
    }
    join_pairs(&kept)
}

/// The notify string of §7.2: `service=…&v=…&sec_id=…&notify_data=…`, in this order, as received.
pub fn notify_link_string(service: &str, v: &str, sec_id: &str, notify_data: &str) -> String {
    join_pairs(&[
        ("service", service),
        ("v", v),
        ("sec_id", sec_id),
        ("notify_data", notify_data),
    ])
}

fn join_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `lower_hex(md5(content + key))` over UTF-8 bytes.
pub fn md5_sign(content: &str, key: &str) -> String {
    md5_sign_bytes(content.as_bytes(), key.as_bytes())
}

/// MD5 signature over raw bytes (the GBK pay-channel response is signed over GBK bytes).
pub fn md5_sign_bytes(content: &[u8], key: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(content);
    h.update(key);
    hex_lower(&h.finalize())
}

/// Constant-time check of an MD5 signature. Case-insensitive on the received hex, as some
/// gateways print upper case.
pub fn md5_verify(content: &str, key: &str, received: &str) -> bool {
    md5_verify_bytes(content.as_bytes(), key.as_bytes(), received)
}

pub fn md5_verify_bytes(content: &[u8], key: &[u8], received: &str) -> bool {
    let expected = md5_sign_bytes(content, key);
    let received = received.to_ascii_lowercase();
    ct_eq(expected.as_bytes(), received.as_bytes())
}

/// Constant-time byte comparison (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Why an RSA key or operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RsaError {
    /// The PEM text (or bare base64 body) is not a PKCS#8 or PKCS#1 RSA key.
    BadKey(&'static str),
    /// Decryption failed (wrong key, corrupted ciphertext, or not a multiple of the block size).
    Decrypt(&'static str),
    /// The signature is not base64.
    BadSignatureEncoding,
}

impl std::fmt::Display for RsaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RsaError::BadKey(why) => write!(f, "not a usable RSA key: {why}"),
            RsaError::Decrypt(why) => write!(f, "RSA decryption failed: {why}"),
            RsaError::BadSignatureEncoding => f.write_str("signature is not valid base64"),
        }
    }
}

/// Parses a merchant private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`),
/// or the bare base64 body that Alipay's console shows. Line lengths, CRLF and stray spaces are
/// tolerated, as keys are pasted by hand.
pub fn parse_private_key(text: &str) -> Result<PrivateKey, RsaError> {
    let (label, der) = pem_body(text)?;
    let pkcs8 = || rsa::private_key_from_pkcs8_der(&der);
    let pkcs1 = || rsa::private_key_from_pkcs1_der(&der);
    match label.as_deref() {
        Some("RSA PRIVATE KEY") => {
            pkcs1().map_err(|_| RsaError::BadKey("the RSA PRIVATE KEY (PKCS#1) does not parse"))
        }
        Some("PRIVATE KEY") => {
            pkcs8().map_err(|_| RsaError::BadKey("the PRIVATE KEY (PKCS#8) does not parse"))
        }
        Some(_) => Err(RsaError::BadKey(
            "expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY",
        )),
        None => pkcs8()
            .or_else(|_| pkcs1())
            .map_err(|_| RsaError::BadKey("the base64 body is neither PKCS#8 nor PKCS#1")),
    }
}

/// Parses a public key: SPKI (`BEGIN PUBLIC KEY`), PKCS#1 (`BEGIN RSA PUBLIC KEY`), or the bare
/// base64 body (as published by Alipay, sometimes with stray spaces or uneven lines).
pub fn parse_public_key(text: &str) -> Result<PublicKey, RsaError> {
    let (label, der) = pem_body(text)?;
    let spki = || rsa::public_key_from_spki_der(&der);
    let pkcs1 = || rsa::public_key_from_pkcs1_der(&der);
    match label.as_deref() {
        Some("RSA PUBLIC KEY") => {
            pkcs1().map_err(|_| RsaError::BadKey("the RSA PUBLIC KEY (PKCS#1) does not parse"))
        }
        Some("PUBLIC KEY") => spki().map_err(|_| RsaError::BadKey("the PUBLIC KEY does not parse")),
        Some(_) => Err(RsaError::BadKey(
            "expected BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY",
        )),
        None => spki()
            .or_else(|_| pkcs1())
            .map_err(|_| RsaError::BadKey("the base64 body is neither SPKI nor PKCS#1")),
    }
}

/// The label of a PEM armor (if any) and the DER bytes of its body.
fn pem_body(text: &str) -> Result<(Option<String>, Vec<u8>), RsaError> {
    let text = text.trim();
    let (label, body) = match text.strip_prefix("-----BEGIN ") {
        Some(rest) => {
            let (label, rest) = rest
                .split_once("-----")
                .ok_or(RsaError::BadKey("the BEGIN line is not closed with -----"))?;
            let end = format!("-----END {label}-----");
            let body =
                rest.split_once(end.as_str())
                    .map(|(body, _)| body)
                    .ok_or(RsaError::BadKey(
                        "the END line does not match the BEGIN line",
                    ))?;
            (Some(label.to_owned()), body)
        }
        None => (None, text),
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(RsaError::BadKey("empty"));
    }
    let der = b64::decode(compact.as_bytes())
        .map_err(|_| RsaError::BadKey("the key body is not base64"))?;
    Ok((label, der))
}

/// SHA1withRSA (PKCS#1 v1.5) over UTF-8 bytes, standard base64.
pub fn rsa_sign(content: &str, key: &PrivateKey) -> Result<String, RsaError> {
    let digest: [u8; 20] = Sha1::digest(content.as_bytes()).into();
    let sig = key
        .sign_sha1(&digest)
        .map_err(|_| RsaError::BadKey("key cannot sign"))?;
    Ok(b64::encode(&sig))
}

/// Verifies a base64 SHA1withRSA signature (the encoded digest is compared in constant time).
pub fn rsa_verify(content: &str, received_b64: &str, key: &PublicKey) -> Result<bool, RsaError> {
    rsa_verify_bytes(content.as_bytes(), received_b64, key)
}

/// [`rsa_verify`] over raw bytes (the GBK pay-channel response).
pub fn rsa_verify_bytes(
    content: &[u8],
    received_b64: &str,
    key: &PublicKey,
) -> Result<bool, RsaError> {
    let compact: String = received_b64
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let sig = b64::decode(compact.as_bytes()).map_err(|_| RsaError::BadSignatureEncoding)?;
    let digest: [u8; 20] = Sha1::digest(content).into();
    Ok(key.verify_sha1(&digest, &sig))
}

/// Decrypts base64 ciphertext made of key-sized blocks (128 bytes for the 1024-bit keys of this
/// product), PKCS#1 v1.5 each, and concatenates the plaintexts (§5.2).
pub fn rsa_decrypt_blocks(cipher_b64: &str, key: &PrivateKey) -> Result<Vec<u8>, RsaError> {
    let compact: String = cipher_b64.chars().filter(|c| !c.is_whitespace()).collect();
    let cipher = b64::decode(compact.as_bytes())
        .map_err(|_| RsaError::Decrypt("ciphertext is not base64"))?;
    let block = key.public_key().size();
    if cipher.is_empty() || cipher.len() % block != 0 {
        return Err(RsaError::Decrypt(
            "ciphertext length is not a multiple of the key size",
        ));
    }
    let mut plain = Vec::with_capacity(cipher.len());
    for chunk in cipher.chunks(block) {
        let part = key
            .decrypt(chunk)
            .map_err(|_| RsaError::Decrypt("a block does not decrypt with the merchant key"))?;
        plain.extend_from_slice(&part);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "10000000000000000000000000000000";
    const TEST_PRIV: &str = include_str!("../testdata/test_priv.pem");
    const TEST_PUB: &str = include_str!("../testdata/test_pub.pem");

    // §12.1, from chloerei/alipay's test suite.
    #[test]
    fn md5_known_answers() {
        assert_eq!(
            md5_sign("partner=123&service=test", KEY),
            "bbd13b52823b576291595f472ebcfbc2"
        );
        assert_eq!(
            md5_sign(
                "partner=123&service=test",
                "20000000000000000000000000000000"
            ),
            "6d581af270c023fdaaca6880491e9bf7"
        );
        assert_eq!(
            md5_sign("notify_id=1234", KEY),
            "22fc7e38e5acdfede396aa463870d111"
        );
        assert_eq!(
            md5_sign("service=test&v=1.0&sec_id=MD5&notify_data=notify_data", KEY),
            "d6ba38f47329b7f44c28a6c6c3b53174"
        );
    }

    #[test]
    fn sorted_link_string_drops_sign_sign_type_and_empties() {
        let pairs = [
            ("service", "create_direct_pay_by_user"),
            ("sign", "x"),
            ("sign_type", "MD5"),
            ("partner", "1000000000000000"),
            ("_input_charset", "utf-8"),
            ("body", ""),
            ("req_id", "1"),
            ("req_data", "<a/>"),
        ];
        assert_eq!(
            sorted_link_string(pairs),
            "_input_charset=utf-8&partner=1000000000000000&req_data=<a/>&req_id=1&service=create_direct_pay_by_user"
        );
    }

    #[test]
    fn pc_mapi_vectors_sort_then_sign() {
        let pairs = [
            ("service", "create_direct_pay_by_user"),
            ("partner", "1000000000000000"),
            ("_input_charset", "utf-8"),
            ("out_trade_no", "1"),
            ("subject", "test"),
            ("payment_type", "1"),
            ("price", "0.01"),
            ("quantity", "1"),
            ("seller_id", "1000000000000000"),
            ("sign_type", "MD5"),
        ];
        assert_eq!(
            md5_sign(&sorted_link_string(pairs), KEY),
            "682ad02280fca7d4c0fd22678fdddeef"
        );
    }

    #[test]
    fn md5_verify_is_case_insensitive_and_rejects_near_misses() {
        let s = "partner=123&service=test";
        assert!(md5_verify(s, KEY, "bbd13b52823b576291595f472ebcfbc2"));
        assert!(md5_verify(s, KEY, "BBD13B52823B576291595F472EBCFBC2"));
        assert!(!md5_verify(s, KEY, "bbd13b52823b576291595f472ebcfbc3"));
        assert!(!md5_verify(s, KEY, "bbd13b52823b576291595f472ebcfbc"));
        assert!(!md5_verify(s, KEY, ""));
    }

    #[test]
    fn rsa_sign_known_answer() {
        let key = parse_private_key(TEST_PRIV).unwrap();
        assert_eq!(
            rsa_sign("partner=123&service=test", &key).unwrap(),
            "TaVXdP/0ia5NxIv9T76v6vGOrtgoaFrwnchKIWP9PQeX1UkUVxaq6ejDFmXFrFR+Plk+E/XzfV2DYJSVt0Am0qJRSgeg+PuvK+yWGCGm9GJgUJlS4Eyta3g+8DWwRWTjUyh5yzlf9JoSnbNjYpBolnMRD7B/u1JLkTMJuMx2TVM="
        );
        let public = parse_public_key(TEST_PUB).unwrap();
        let sig = rsa_sign("partner=123&service=test", &key).unwrap();
        assert!(rsa_verify("partner=123&service=test", &sig, &public).unwrap());
        assert!(!rsa_verify("partner=124&service=test", &sig, &public).unwrap());
    }

    #[test]
    fn keys_parse_in_every_accepted_form() {
        // PKCS#8 PEM, bare base64 body with stray spaces (as copied from a console), PKCS#1 PEM.
        let pkcs8 = parse_private_key(TEST_PRIV).unwrap();
        let body: String = TEST_PRIV
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join(" \n ");
        assert_eq!(parse_private_key(&body).unwrap(), pkcs8);
        use ::rsa::pkcs1::EncodeRsaPrivateKey;
        use ::rsa::pkcs8::DecodePrivateKey;
        let reference = ::rsa::RsaPrivateKey::from_pkcs8_pem(TEST_PRIV).unwrap();
        let pkcs1 = reference
            .to_pkcs1_pem(::rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert_eq!(parse_private_key(&pkcs1).unwrap(), pkcs8);
        // Alipay's published WAP key, with the stray spaces it ships with in public ports.
        let wap = include_str!("../testdata/wap_ali_pub.pem");
        parse_public_key(wap).unwrap();
        let spaced = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCQwpCPC4oB+clYNBkKQx3gfyFlUt3cpRr5oErtOypLKh6j1UmTDSpfsac29h1kC0HIvLmxWbPuoxcsKDlclgRPeWnIxrpSF9k5Fu6SRy3+AOdIKrDOSHQ7VwUsNih2OnPbztMSMplGnQCBa1iec2r+38Udmh5Ua2xg6IEfk493VQIDAQAB";
        let spaced = format!(" {} {} ", &spaced[..40], &spaced[40..]);
        assert_eq!(
            parse_public_key(&spaced).unwrap(),
            parse_public_key(wap).unwrap()
        );
        assert!(matches!(
            parse_private_key("not a key"),
            Err(RsaError::BadKey(_))
        ));
        assert!(matches!(
            parse_public_key("-----BEGIN CERTIFICATE-----"),
            Err(RsaError::BadKey(_))
        ));
    }

    // §12.3: the 797-byte notify_data encrypted in 117-byte chunks decrypts block by block.
    #[test]
    fn rsa_decrypt_known_ciphertext() {
        let key = parse_private_key(TEST_PRIV).unwrap();
        let cipher = include_str!("../testdata/notify_cipher.b64");
        let plain = rsa_decrypt_blocks(cipher, &key).unwrap();
        assert_eq!(plain.len(), 797);
        let text = String::from_utf8(plain).unwrap();
        assert!(
            text.starts_with("<notify><payment_type>1</payment_type><subject>测试商品</subject>")
        );
        assert!(text.ends_with("<use_coupon>N</use_coupon></notify>"));
        assert!(text.contains("<notify_id>0123456789abcdef0123456789abcdef00</notify_id>"));
    }

    #[test]
    fn rsa_decrypt_refuses_bad_input() {
        let key = parse_private_key(TEST_PRIV).unwrap();
        assert!(rsa_decrypt_blocks("not base64!", &key).is_err());
        assert!(rsa_decrypt_blocks(&b64::encode(&[0u8; 100]), &key).is_err());
        assert!(rsa_decrypt_blocks(&b64::encode(&[7u8; 128]), &key).is_err());
        assert!(rsa_decrypt_blocks("", &key).is_err());
    }
}
