//! Alipay's signature rules ([WAP §5]): the string to sign, MD5 and RSA (`sec_id=0001`).
//!
//! * Requests, the call-back and the create response: drop `sign`, `sign_type` and empty values,
//!   sort keys byte-wise, join raw `k=v` with `&`.
//! * The asynchronous notify: the fixed order `service, v, sec_id, notify_data`, never sorted.
//! * MD5: lower-case hex of md5(string + key). RSA: base64 of SHA1withRSA (PKCS#1 v1.5).
//!
//! Every comparison of a received signature is constant-time.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _};
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::traits::PublicKeyParts as _;
use sha1::Sha1;
use std::borrow::Cow;
use subtle::ConstantTimeEq;

/// The sorted link string of [WAP §5.1]: `sign`, `sign_type` and empty values left out, keys in
/// byte order.
pub fn sorted_link_string<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut kept: Vec<(&str, &str)> = pairs
        .into_iter()
        .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
        .collect();
    // A stable O(n log n) sort: the list is whatever a sender posted (thousands of fields fit
    // the notify's 32 KiB), sorted before the signature is checked; an insertion sort took most
    // of a call's fuel for 6,000 fields.
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    join_pairs(&kept)
}

/// The notify string of [WAP §7.2]: `service=…&v=…&sec_id=…&notify_data=…`, in this order, as
/// received.
pub fn notify_link_string(service: &str, v: &str, sec_id: &str, notify_data: &str) -> String {
    join_pairs(&[
        ("service", service),
        ("v", v),
        ("sec_id", sec_id),
        ("notify_data", notify_data),
    ])
}

/// `k=v` joined with `&`, in the given order, raw values.
pub(crate) fn join_pairs(pairs: &[(&str, &str)]) -> String {
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
    /// Decryption failed. Always [`DECRYPT_FAILED`], whatever the cause (bad base64, bad length,
    /// too many blocks, a block the key refuses), so the answer tells an attacker nothing.
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

/// The one reason every failed decryption gives.
pub const DECRYPT_FAILED: &str = "the ciphertext does not decrypt with the merchant key";

/// The most ciphertext blocks [`rsa_decrypt_blocks`] accepts: 32 blocks are 4 KiB of ciphertext
/// with the 1024-bit keys of this product, ~3.6 KiB of plaintext (117 bytes a block), four times
/// a real `notify_data` (797 bytes → 7 blocks) or `res_data`. Anything longer is refused before
/// any private-key operation, so one request costs at most 32 of them.
pub const MAX_CIPHER_BLOCKS: usize = 32;

/// A merchant private key (the `rsa` crate's, whose private operations are constant-time and
/// blinded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateKey(rsa::PrivateKey);

/// An RSA public key (Alipay's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(rsa::PublicKey);

impl PrivateKey {
    /// The modulus length in bytes (128 for the 1024-bit keys of this product).
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// The matching public key.
    pub fn to_public_key(&self) -> PublicKey {
        PublicKey(self.0.to_public_key())
    }

    /// The `rsa` crate's key.
    pub fn as_rsa(&self) -> &rsa::PrivateKey {
        &self.0
    }

    /// Refuses a key whose parameters do not belong together: the crate's consistency checks,
    /// then one (blinded, fault-checked) signature. Settings validation calls it; the protocol
    /// calls skip it.
    pub fn check(&self) -> Result<(), RsaError> {
        self.0
            .validate()
            .map_err(|_| RsaError::BadKey("the key's parameters do not match"))?;
        self.0
            .pkcs1v15_sign::<Sha1>(b"")
            .map(|_| ())
            .map_err(|_| RsaError::BadKey("the key cannot sign"))
    }
}

impl From<rsa::PrivateKey> for PrivateKey {
    fn from(key: rsa::PrivateKey) -> Self {
        PrivateKey(key)
    }
}

impl PublicKey {
    /// The modulus length in bytes.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// The `rsa` crate's key.
    pub fn as_rsa(&self) -> &rsa::PublicKey {
        &self.0
    }
}

impl From<rsa::PublicKey> for PublicKey {
    fn from(key: rsa::PublicKey) -> Self {
        PublicKey(key)
    }
}

/// Parses a merchant private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`),
/// or the bare base64 body that Alipay's console shows. Line lengths, CRLF and stray spaces are
/// tolerated, as keys are pasted by hand.
pub fn parse_private_key(text: &str) -> Result<PrivateKey, RsaError> {
    let (label, der) = pem_body(text)?;
    if matches!(label.as_deref(), Some("PUBLIC KEY" | "RSA PUBLIC KEY")) {
        return Err(RsaError::BadKey(
            "this is a public key (BEGIN PUBLIC KEY): paste the private key here",
        ));
    }
    // Measured before parsing: reading (and checking) a 16384-bit key costs seconds of the
    // component's time, and every private-key step of a larger key costs more than a call's fuel.
    if der.len() > MAX_PRIVATE_KEY_DER {
        return Err(RsaError::BadKey(KEY_SIZE_RULE));
    }
    let pkcs8 = || rsa::PrivateKey::from_pkcs8_der(&der).ok();
    let pkcs1 = || rsa::PrivateKey::from_pkcs1_der(&der).ok();
    let key = match label.as_deref() {
        Some("RSA PRIVATE KEY") => pkcs1().ok_or(RsaError::BadKey(
            "the RSA PRIVATE KEY (PKCS#1) does not parse",
        )),
        Some("PRIVATE KEY") => {
            pkcs8().ok_or(RsaError::BadKey("the PRIVATE KEY (PKCS#8) does not parse"))
        }
        Some(_) => Err(RsaError::BadKey(
            "expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY",
        )),
        None => pkcs8().or_else(pkcs1).ok_or(RsaError::BadKey(
            "the base64 body is neither PKCS#8 nor PKCS#1",
        )),
    }?;
    check_bits(key.size())?;
    Ok(PrivateKey(key))
}

/// Alipay's keys: 1024-bit (the legacy interfaces' RSA) and 2048-bit (the open platform's RSA2)
/// [WAP §5.2], [OPENAPI §3.2].
pub const MIN_KEY_BITS: usize = 1024;
pub const MAX_KEY_BITS: usize = 2048;
const KEY_SIZE_RULE: &str = "the key must be a 1024-bit (RSA) or 2048-bit (RSA2) RSA key, as Alipay issues them; this one is larger or smaller";
/// A 2048-bit private key's DER is about 1,190–1,220 bytes (PKCS#1 or PKCS#8), a 3072-bit one's
/// about 1,800; a 2048-bit public key's 270 (PKCS#1) or 294 (SPKI), a 3072-bit one's 422. The
/// limits leave room for encoding differences, not for a larger key.
const MAX_PRIVATE_KEY_DER: usize = 1_400;
const MAX_PUBLIC_KEY_DER: usize = 400;
/// A 1024-bit public key's DER is 140 bytes (PKCS#1) or 162 (SPKI); a 512-bit one's 74 or 94.
const MIN_PUBLIC_KEY_DER: usize = 140;
const SMALL_KEY_RULE: &str = "the key is shorter than 1024 bits (or cut short): Alipay's keys are 1024-bit (RSA) or 2048-bit (RSA2)";
/// The legacy interfaces' RSA key (`sign_type` RSA, `api` mapi) is 1024-bit: Alipay encrypts
/// `notify_data` and `res_data` for it in 128-byte blocks ([WAP §5.2]; every demo reads 128).
pub const LEGACY_RSA_KEY_BYTES: usize = 128;

fn check_bits(size_bytes: usize) -> Result<(), RsaError> {
    if (MIN_KEY_BITS..=MAX_KEY_BITS).contains(&(size_bytes * 8)) {
        Ok(())
    } else {
        Err(RsaError::BadKey(KEY_SIZE_RULE))
    }
}

/// Parses a public key: SPKI (`BEGIN PUBLIC KEY`), PKCS#1 (`BEGIN RSA PUBLIC KEY`), or the bare
/// base64 body (as published by Alipay, sometimes with stray spaces or uneven lines).
pub fn parse_public_key(text: &str) -> Result<PublicKey, RsaError> {
    let (label, der) = pem_body(text)?;
    if matches!(label.as_deref(), Some("PRIVATE KEY" | "RSA PRIVATE KEY")) {
        return Err(RsaError::BadKey(
            "this is a private key (BEGIN PRIVATE KEY): paste Alipay's public key here (BEGIN PUBLIC KEY), and never give anyone a private key",
        ));
    }
    if der.len() > MAX_PUBLIC_KEY_DER {
        return Err(RsaError::BadKey(KEY_SIZE_RULE));
    }
    let spki = || rsa::PublicKey::from_public_key_der(&der).ok();
    let pkcs1 = || rsa::PublicKey::from_pkcs1_der(&der).ok();
    let key = match label.as_deref() {
        Some("RSA PUBLIC KEY") => pkcs1().ok_or(RsaError::BadKey(
            "the RSA PUBLIC KEY (PKCS#1) does not parse",
        )),
        Some("PUBLIC KEY") => spki().ok_or(RsaError::BadKey("the PUBLIC KEY does not parse")),
        Some(_) => Err(RsaError::BadKey(
            "expected BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY",
        )),
        None => spki().or_else(pkcs1).ok_or(RsaError::BadKey(
            "the base64 body is neither SPKI nor PKCS#1",
        )),
    }
    // The `rsa` crate refuses to read a key below 1024 bits at all: a DER shorter than the
    // smallest 1024-bit one is named for its size, not as unreadable.
    .map_err(|e| {
        if der.len() < MIN_PUBLIC_KEY_DER {
            RsaError::BadKey(SMALL_KEY_RULE)
        } else {
            e
        }
    })?;
    check_bits(key.size())?;
    Ok(PublicKey(key))
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
    let compact = without_whitespace(body);
    if compact.is_empty() {
        return Err(RsaError::BadKey("empty"));
    }
    let der = BASE64
        .decode(compact.as_bytes())
        .map_err(|_| RsaError::BadKey("the key body is not base64"))?;
    Ok((label, der))
}

/// The text without its whitespace; borrowed when there is none (the usual case on the wire).
fn without_whitespace(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_whitespace()) {
        Cow::Owned(s.chars().filter(|c| !c.is_ascii_whitespace()).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// SHA1withRSA (PKCS#1 v1.5) over UTF-8 bytes, standard base64. Blinded; the signature is
/// deterministic all the same.
pub fn rsa_sign(content: &str, key: &PrivateKey) -> Result<String, RsaError> {
    rsa_sign_bytes(content.as_bytes(), key)
}

/// [`rsa_sign`] over raw bytes (a GBK request is signed over its GBK bytes).
pub fn rsa_sign_bytes(content: &[u8], key: &PrivateKey) -> Result<String, RsaError> {
    let sig = key
        .0
        .pkcs1v15_sign::<Sha1>(content)
        .map_err(|_| RsaError::BadKey("key cannot sign"))?;
    Ok(BASE64.encode(sig))
}

/// Verifies a base64 SHA1withRSA signature.
pub fn rsa_verify(content: &str, received_b64: &str, key: &PublicKey) -> Result<bool, RsaError> {
    rsa_verify_bytes(content.as_bytes(), received_b64, key)
}

/// [`rsa_verify`] over raw bytes (the GBK pay-channel response).
pub fn rsa_verify_bytes(
    content: &[u8],
    received_b64: &str,
    key: &PublicKey,
) -> Result<bool, RsaError> {
    // A signature is the modulus length: 1024 bytes at most (8192-bit keys). Decoded on the stack.
    let mut sig = [0u8; 1024];
    let compact = without_whitespace(received_b64);
    let len = match BASE64.decode_slice(compact.as_bytes(), &mut sig) {
        Ok(len) => len,
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => return Ok(false),
        Err(base64::DecodeSliceError::DecodeError(_)) => {
            return Err(RsaError::BadSignatureEncoding)
        }
    };
    Ok(key.0.pkcs1v15_verify::<Sha1>(content, &sig[..len]).is_ok())
}

/// Decrypts base64 ciphertext made of key-sized blocks (128 bytes for the 1024-bit keys of this
/// product), PKCS#1 v1.5 each, and concatenates the plaintexts ([WAP §5.2]).
///
/// Every block is decrypted, whatever happens to the others, and the answer is one error
/// ([`DECRYPT_FAILED`]) for every failure. The `rsa` crate's decryption uses implicit rejection:
/// a block with bad padding yields a pseudo-random message, not an error, so a wrong key or a
/// forged block shows up as plaintext whose signature does not verify. The caller must
/// authenticate the result before using it.
pub fn rsa_decrypt_blocks(cipher_b64: &str, key: &PrivateKey) -> Result<Vec<u8>, RsaError> {
    let mut plain = Vec::new();
    rsa_decrypt_blocks_into(cipher_b64, key, &mut plain)?;
    Ok(plain)
}

/// [`rsa_decrypt_blocks`], appending to `out` (left as it was on failure).
pub fn rsa_decrypt_blocks_into(
    cipher_b64: &str,
    key: &PrivateKey,
    out: &mut Vec<u8>,
) -> Result<(), RsaError> {
    decrypt_blocks_with(cipher_b64, key.size(), out, |block| {
        key.0.pkcs1v15_decrypt(block)
    })
}

/// The block loop, with the private operation passed in (the tests count its calls).
fn decrypt_blocks_with<F>(
    cipher_b64: &str,
    block_len: usize,
    out: &mut Vec<u8>,
    mut decrypt_block: F,
) -> Result<(), RsaError>
where
    F: FnMut(&[u8]) -> Result<Vec<u8>, rsa::Error>,
{
    const FAILED: RsaError = RsaError::Decrypt(DECRYPT_FAILED);
    let compact = without_whitespace(cipher_b64);
    // Public checks first, before any private operation: size, base64, whole blocks.
    let max_len = MAX_CIPHER_BLOCKS * block_len;
    if compact.is_empty() || compact.len() > max_len.div_ceil(3) * 4 {
        return Err(FAILED);
    }
    let cipher = BASE64.decode(compact.as_bytes()).map_err(|_| FAILED)?;
    if block_len == 0 || cipher.is_empty() || cipher.len() % block_len != 0 {
        return Err(FAILED);
    }
    let start = out.len();
    out.reserve(cipher.len());
    // Every block, no early exit: the work does not depend on any block's content.
    let mut ok = true;
    for block in cipher.chunks_exact(block_len) {
        match decrypt_block(block) {
            Ok(part) => out.extend_from_slice(&part),
            Err(_) => ok = false,
        }
    }
    if ok {
        Ok(())
    } else {
        out.truncate(start);
        Err(FAILED)
    }
}

/// The verdict on a notification's signature. Built with the cargo feature
/// `conformance-broken-notify-check` (for the conformance kit's self-test only) it accepts
/// notifications whose signature does not verify; the default build returns `verified` unchanged.
#[inline(always)]
pub fn notify_sign_ok(verified: bool) -> bool {
    verified || cfg!(feature = "conformance-broken-notify-check")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alipay's keys are 1024 or 2048 bits: a 4096-bit key (every private-key step over a
    /// call's fuel) and a 512-bit one are refused with the rule, a larger one before it is even
    /// parsed (a 16384-bit key took seconds to read).
    #[test]
    fn keys_of_sizes_alipay_does_not_issue_are_refused() {
        for (what, result) in [
            (
                "4096-bit private",
                parse_private_key(include_str!("../testdata/oversized_4096_priv.pem")).err(),
            ),
            (
                "512-bit private",
                parse_private_key(include_str!("../testdata/undersized_512_priv.pem")).err(),
            ),
            (
                "4096-bit public",
                parse_public_key(include_str!("../testdata/oversized_4096_pub.pem")).err(),
            ),
        ] {
            match result {
                Some(RsaError::BadKey(why)) => assert_eq!(why, KEY_SIZE_RULE, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        // The `rsa` crate will not read a 512-bit public key at all: named for its size too.
        match parse_public_key(include_str!("../testdata/undersized_512_pub.pem")) {
            Err(RsaError::BadKey(why)) => assert_eq!(why, SMALL_KEY_RULE),
            other => panic!("512-bit public: {other:?}"),
        }
        // 16 KiB of key body: refused by its length, before any parsing.
        let huge = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            "A".repeat(16 << 10)
        );
        assert!(matches!(
            parse_private_key(&huge),
            Err(RsaError::BadKey(KEY_SIZE_RULE))
        ));
        assert!(parse_private_key(include_str!("../testdata/test_priv.pem")).is_ok());
        // A key pasted into the other field is told so, before its size.
        let big_private = include_str!("../testdata/oversized_4096_priv.pem");
        match parse_public_key(big_private) {
            Err(RsaError::BadKey(why)) => {
                assert!(why.starts_with("this is a private key"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        match parse_private_key(include_str!("../testdata/test_pub.pem")) {
            Err(RsaError::BadKey(why)) => assert!(why.starts_with("this is a public key"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    const KEY: &str = "10000000000000000000000000000000";
    const TEST_PRIV: &str = include_str!("../testdata/test_priv.pem");
    const TEST_PUB: &str = include_str!("../testdata/test_pub.pem");
    /// Another 1024-bit key (`openssl genpkey`), for the wrong-key cases.
    const OTHER_PRIV: &str = "-----BEGIN PRIVATE KEY-----\n\
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAMJlLNXvfTHQlBr/\n\
3fL/0FqZ6rquf+FTtHJq16PCEwGq3D3ICxHJDDoXV7GJmrblypnC24CZe0FruQn1\n\
iAzADwN5XGDvW5xRyiXSkWnOWBEfhoaaElyZUMHjKu2n9EQE0yMs/l6LN1PiQQq7\n\
pIrZIZbrTkYWgtvo1T7xOqpbNWovAgMBAAECgYB+vUgGEyYknEBzee5Sx8Yny8Hm\n\
BG8LkW9MSaxd7+JEbAk7nnjZF6MJHL7n2Tctl5QHu6swpOBfPsRdYd9ZsL4X+VG7\n\
JbBjlOaAZCS66w6CheuE2AfULQOmTef00iknnwYleDAnoh3zFmyIrsdGlGIlNb1i\n\
iSllfwroaccpdCu9AQJBAPdE8+gq4XvvIB+X7IOtucukaxiU9KbKNANUkY7xrgm7\n\
W/1sUvfnd+S0WXFBBOze2jkmhiHQXbkNmiucxfs6rR8CQQDJQkwmnKm9fnvJFoqR\n\
4ehjePpdOdiOck6xHWzcY67/8oI5Ezh5J/MRJ9nSCLWj7aZcV9K0o0JFJ5revDaO\n\
iZDxAkEArOZ4LsWdOc3xhmXzKfhWTIFBqcSuddo6GIIP7gYsjf2Gy2PteA9QlIlP\n\
aZPvX7pMmV3IuOg8QOO0A/7xqURUPQJAMjjLC++YI+NGPH3VgmXfOcNcppriwVkg\n\
7e2r1qtBZjk76cY0F3eynhtVraXivc917iE0QUNkLCGf8ekBrDwD4QJAT7VqHZ2T\n\
bz5l6kyAfrdb08r1TYVod22H09Eh1D8iyjCQ+7sWzT2uu3rLOPRiuKmWdIqqOjbw\n\
R34UErW6XcHpog==\n\
-----END PRIVATE KEY-----";

    // [WAP §12.1], from chloerei/alipay's test suite.
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
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let pkcs1 = pkcs8
            .as_rsa()
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::CRLF)
            .unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(parse_private_key(&pkcs1).unwrap(), pkcs8);
        pkcs8.check().unwrap();
        // PKCS#1 public key, and the public half of the private key.
        use rsa::pkcs1::EncodeRsaPublicKey;
        let public = parse_public_key(TEST_PUB).unwrap();
        assert_eq!(pkcs8.to_public_key(), public);
        let public_pkcs1 = public
            .as_rsa()
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert!(public_pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        assert_eq!(parse_public_key(&public_pkcs1).unwrap(), public);
        // A PKCS#1 body under the PKCS#8 label (and the reverse) is refused.
        let mislabelled = pkcs1.replace("RSA PRIVATE KEY", "PRIVATE KEY");
        assert!(parse_private_key(&mislabelled).is_err());
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

    // [WAP §12.3]: the 797-byte notify_data encrypted in 117-byte chunks decrypts block by block.
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
        let failed = Err(RsaError::Decrypt(DECRYPT_FAILED));
        // Bad base64, bad length, a block the key refuses (not below the modulus), too many
        // blocks, nothing: one error.
        assert_eq!(rsa_decrypt_blocks("not base64!", &key), failed);
        assert_eq!(rsa_decrypt_blocks(&BASE64.encode([0u8; 100]), &key), failed);
        assert_eq!(
            rsa_decrypt_blocks(&BASE64.encode([0xffu8; 128]), &key),
            failed
        );
        assert_eq!(rsa_decrypt_blocks("", &key), failed);
        assert_eq!(rsa_decrypt_blocks(" \n", &key), failed);
        let too_many = BASE64.encode(vec![7u8; 128 * (MAX_CIPHER_BLOCKS + 1)]);
        assert_eq!(rsa_decrypt_blocks(&too_many, &key), failed);
        // Bad padding (implicit rejection): no error, but not the plaintext either — and not a
        // text whose signature verifies.
        let forged = rsa_decrypt_blocks(&BASE64.encode([7u8; 128]), &key).unwrap();
        let again = rsa_decrypt_blocks(&BASE64.encode([7u8; 128]), &key).unwrap();
        assert_eq!(forged, again, "the synthetic message is deterministic");
        // The wrong key: the real ciphertext decrypts to something else, never an error that
        // differs from the bad-padding case.
        let other = parse_private_key(OTHER_PRIV).unwrap();
        let cipher = include_str!("../testdata/notify_cipher.b64");
        match rsa_decrypt_blocks(cipher, &other) {
            Ok(plain) => assert!(!plain.starts_with(b"<notify>")),
            Err(e) => assert_eq!(e, RsaError::Decrypt(DECRYPT_FAILED)),
        }
    }

    /// The block loop decrypts every block even when the first one is bad (padding or range):
    /// the work is the same whatever a block holds, and the answer comes once, at the end.
    #[test]
    fn a_bad_first_block_does_not_short_circuit() {
        let key = parse_private_key(TEST_PRIV).unwrap();
        let cipher_b64 = include_str!("../testdata/notify_cipher.b64");
        let mut cipher = BASE64.decode(cipher_b64.trim()).unwrap();
        let blocks = cipher.len() / 128;
        assert_eq!(blocks, 7);
        let run = |cipher: &[u8]| {
            let mut calls = 0;
            let mut out = Vec::new();
            let result = decrypt_blocks_with(&BASE64.encode(cipher), 128, &mut out, |block| {
                calls += 1;
                key.as_rsa().pkcs1v15_decrypt(block)
            });
            (calls, result.map(|()| out))
        };
        let (calls, good) = run(&cipher);
        assert_eq!(calls, blocks);
        let good = good.unwrap();
        assert_eq!(good.len(), 797);
        // First block with bad padding (a random value below the modulus): every block is still
        // decrypted, and the result is not the plaintext.
        for b in cipher[1..128].iter_mut() {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        cipher[0] = 0;
        let (calls, forged) = run(&cipher);
        assert_eq!(calls, blocks, "a bad first block must not stop the loop");
        let forged = forged.unwrap();
        assert_ne!(forged, good);
        assert_eq!(forged[forged.len() - 600..], good[good.len() - 600..]);
        // First block not below the modulus (refused by the key): still every block, one error.
        cipher[..128].fill(0xff);
        let (calls, refused) = run(&cipher);
        assert_eq!(
            calls, blocks,
            "a refused first block must not stop the loop"
        );
        assert_eq!(refused, Err(RsaError::Decrypt(DECRYPT_FAILED)));
    }

    /// The hand-written RSA this crate used before the `rsa` crate, on the same inputs (its
    /// signatures were also checked against `openssl dgst -sha1 -sign`): PKCS#1 v1.5 signing is
    /// deterministic, so the bytes must not change.
    #[test]
    fn signatures_are_byte_identical_to_the_previous_implementation() {
        let key = parse_private_key(TEST_PRIV).unwrap();
        let public = parse_public_key(TEST_PUB).unwrap();
        let notify = format!(
            "service=alipay.wap.trade.create.direct&v=1.0&sec_id=0001&notify_data={}",
            crate::transformers::VECTOR_NOTIFY_DATA_FOR_TESTS
        );
        let pinned: [(&str, &str); 3] = [
            ("partner=123&service=test", "TaVXdP/0ia5NxIv9T76v6vGOrtgoaFrwnchKIWP9PQeX1UkUVxaq6ejDFmXFrFR+Plk+E/XzfV2DYJSVt0Am0qJRSgeg+PuvK+yWGCGm9GJgUJlS4Eyta3g+8DWwRWTjUyh5yzlf9JoSnbNjYpBolnMRD7B/u1JLkTMJuMx2TVM="),
            ("", "OLOVc37dnVm3lPCzhWSrKx+LT6W+iN9ovGjvT0lBVMLTe3Pqf47mEEDcyK7N/6MOUXsVZUb484PCQ0cU3TWE/xkN95LvK7+FwdCOO6ptkGP40Il/8+wWyNPzNMEcyVae59lNINbjwk68RUcBpVQ9y55CKJ4tZIpB0iFA/2b9Pak="),
            (&notify, "MGpznL1zZdl4bIcwvgKtB2HImcE78ShP7+LASVBbOhsYRWIdUVLqFyo3aYT98e9r74x3o+zu9i+gY3Zbyld+gDjTSMffQowYw1SU3O+KOC/s/X47MlRI/9TD9onP+5qRwsLAwgzL5YTqHeczX8htmlAuoeZxQGqfR1iGNHmZreA="),
        ];
        for (content, expected) in pinned {
            assert_eq!(rsa_sign(content, &key).unwrap(), expected, "{content:?}");
            // Blinding is random; the signature is not.
            assert_eq!(rsa_sign(content, &key).unwrap(), expected);
            assert!(rsa_verify(content, expected, &public).unwrap());
            // Line-wrapped base64 (as some gateways send it) verifies too.
            let wrapped = format!("{}\n{}", &expected[..64], &expected[64..]);
            assert!(rsa_verify(content, &wrapped, &public).unwrap());
            let mut tampered = expected.as_bytes().to_vec();
            tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(!rsa_verify(content, &tampered, &public).unwrap());
        }
        assert_eq!(
            rsa_verify("x", "not base64!", &public),
            Err(RsaError::BadSignatureEncoding)
        );
        assert!(!rsa_verify("x", "", &public).unwrap());
        assert!(!rsa_verify("x", &BASE64.encode([1u8; 2000]), &public).unwrap());
    }
}
