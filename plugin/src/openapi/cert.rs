//! Certificate mode ([OPENAPI §3.4]): the serial numbers every request carries
//! (`app_cert_sn`, `alipay_root_cert_sn`) and the public key inside a certificate.
//!
//! SN(cert) = lower-hex MD5 of the issuer's distinguished name as an RFC 2253 string followed by
//! the serial number in decimal. The root SN joins, with `_`, the SNs of the certificates of the
//! root bundle that are signed with an RSA algorithm (OID under `1.2.840.113549.1.1`), in file
//! order; the others (SM2, ECDSA) are skipped, including any the parser cannot read.

use crate::sign::PublicKey;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use x509_cert::der::Decode as _;
use x509_cert::Certificate;

/// Why a certificate setting was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertError {
    /// No `-----BEGIN CERTIFICATE-----` block.
    NoCertificate,
    /// The block's body is not base64 or not an X.509 certificate.
    Unreadable(&'static str),
    /// The certificate's key is not an RSA key.
    NotRsa,
    /// A root bundle with no RSA-signed certificate.
    NoRsaRoot,
    /// The certificate's RSA key is outside the sizes Alipay issues (1024 to 2048 bits), as a
    /// pasted key would be ([`crate::sign::MIN_KEY_BITS`], [`crate::sign::MAX_KEY_BITS`]).
    KeySize(usize),
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertError::NoCertificate => f.write_str("no BEGIN CERTIFICATE block"),
            CertError::Unreadable(why) => write!(f, "the certificate does not parse: {why}"),
            CertError::NotRsa => f.write_str("the certificate's key is not an RSA key"),
            CertError::NoRsaRoot => f.write_str("the root bundle holds no RSA-signed certificate"),
            CertError::KeySize(bits) => write!(
                f,
                "the certificate's key is {bits}-bit: Alipay's keys are {}-bit (RSA) or {}-bit (RSA2)",
                crate::sign::MIN_KEY_BITS,
                crate::sign::MAX_KEY_BITS
            ),
        }
    }
}

/// The DER bodies of every `CERTIFICATE` block of a PEM text, in order.
fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, CertError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after.find(END).ok_or(CertError::Unreadable(
            "a BEGIN CERTIFICATE block is not closed",
        ))?;
        let body: String = after[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        out.push(
            BASE64
                .decode(body.as_bytes())
                .map_err(|_| CertError::Unreadable("the body is not base64"))?,
        );
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<Certificate, CertError> {
    Certificate::from_der(der).map_err(|_| CertError::Unreadable("not an X.509 certificate"))
}

/// SN of one certificate: md5_hex(issuer RFC 2253 + decimal serial).
fn sn_of(cert: &Certificate) -> String {
    let tbs = cert.tbs_certificate();
    // x509-cert prints a Name as RFC 4514 (the successor of RFC 2253, same order and escaping
    // for the attribute types Alipay's issuers use), which is Java's `getName()`.
    let issuer = tbs.issuer().to_string();
    let serial = decimal(tbs.serial_number().as_bytes());
    let mut h = Md5::new();
    h.update(issuer.as_bytes());
    h.update(serial.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A big-endian unsigned integer in decimal (serial numbers are up to 20 bytes).
fn decimal(be: &[u8]) -> String {
    let mut n: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    if n.is_empty() {
        return "0".into();
    }
    let mut digits = Vec::new();
    while !n.is_empty() {
        let mut rem = 0u32;
        for byte in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        while n.first() == Some(&0) {
            n.remove(0);
        }
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

/// `app_cert_sn` (or the SN of Alipay's certificate): the SN of the first certificate of a PEM.
pub fn cert_sn(pem: &str) -> Result<String, CertError> {
    let der = pem_certificates(pem)?;
    Ok(sn_of(&parse(&der[0])?))
}

/// The signature algorithm OID of a DER certificate, read without parsing the rest (an SM2
/// certificate need not parse for its OID to be known).
fn signature_oid(cert: &Certificate) -> String {
    cert.signature_algorithm().oid.to_string()
}

/// `alipay_root_cert_sn`: the SNs of the bundle's RSA-signed certificates joined with `_`.
pub fn root_cert_sn(pem: &str) -> Result<String, CertError> {
    let mut sns = Vec::new();
    for der in pem_certificates(pem)? {
        // A certificate the parser cannot read is not an RSA one Alipay counts ([OPENAPI §3.4] PITFALL).
        let Ok(cert) = parse(&der) else { continue };
        if signature_oid(&cert).starts_with("1.2.840.113549.1.1.") {
            sns.push(sn_of(&cert));
        }
    }
    if sns.is_empty() {
        return Err(CertError::NoRsaRoot);
    }
    Ok(sns.join("_"))
}

/// The RSA public key inside a certificate (Alipay's, in certificate mode).
pub fn public_key(pem: &str) -> Result<PublicKey, CertError> {
    let der = pem_certificates(pem)?;
    let cert = parse(&der[0])?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
        return Err(CertError::NotRsa);
    }
    let key_der = spki
        .subject_public_key
        .as_bytes()
        .ok_or(CertError::Unreadable("the key bits are not whole bytes"))?;
    let key =
        PublicKey::from(rsa::PublicKey::from_pkcs1_der(key_der).map_err(|_| CertError::NotRsa)?);
    // The same bounds as a pasted key: a larger one makes every verification dearer.
    let bits = key.size() * 8;
    if !(crate::sign::MIN_KEY_BITS..=crate::sign::MAX_KEY_BITS).contains(&bits) {
        return Err(CertError::KeySize(bits));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::testdata;

    fn pem(rel: &str) -> String {
        String::from_utf8(testdata::read(rel)).unwrap()
    }

    /// The reference's SNs ([OPENAPI §10.2] `cert_sn`), including Alipay's real root bundle with its SM2
    /// and ECDSA certificates skipped.
    #[test]
    fn cert_sn_vectors() {
        let v = testdata::vectors();
        let c = &v.json["cert_sn"];
        for case in ["test_app_cert", "test_alipay_cert"] {
            let text = pem(c[case]["file"].as_str().unwrap());
            assert_eq!(
                cert_sn(&text).unwrap(),
                c[case]["sn"].as_str().unwrap(),
                "{case}"
            );
        }
        for case in ["test_root_bundle", "real_alipay_root_bundle"] {
            let text = pem(c[case]["file"].as_str().unwrap());
            assert_eq!(
                root_cert_sn(&text).unwrap(),
                c[case]["sn"].as_str().unwrap(),
                "{case}"
            );
        }
        // The issuer string and decimal serial the rule hashes.
        let app = parse(&pem_certificates(&pem("certs/test_app_cert.crt")).unwrap()[0]).unwrap();
        assert_eq!(
            app.tbs_certificate().issuer().to_string(),
            c["test_app_cert"]["issuer"].as_str().unwrap()
        );
        assert_eq!(
            decimal(app.tbs_certificate().serial_number().as_bytes()),
            c["test_app_cert"]["serial_decimal"].as_str().unwrap()
        );
    }

    #[test]
    fn the_alipay_certificate_holds_the_alipay_key() {
        let v = testdata::vectors();
        let from_cert = public_key(&pem("certs/test_alipay_cert.crt")).unwrap();
        let from_pem = crate::sign::parse_public_key(v.key("alipay_public")).unwrap();
        assert_eq!(from_cert, from_pem);
    }

    #[test]
    fn decimal_conversion() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0, 0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&[0xff; 8]), u64::MAX.to_string());
        assert_eq!(
            decimal(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0]),
            (u128::from(u64::MAX) + 1).to_string()
        );
    }

    #[test]
    fn bad_inputs_name_what_is_wrong() {
        assert_eq!(cert_sn("hello"), Err(CertError::NoCertificate));
        assert!(matches!(
            cert_sn("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"),
            Err(CertError::Unreadable(_))
        ));
        assert!(matches!(
            cert_sn("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            Err(CertError::Unreadable(_))
        ));
    }

    /// A certificate's key has the bounds of a pasted key: a 4096-bit one is refused, named.
    #[test]
    fn a_certificate_key_larger_than_alipay_issues_is_refused() {
        let big = include_str!("../../testdata/oversized_4096_cert.pem");
        let Err(err) = public_key(big) else {
            panic!("a 4096-bit certificate key was taken")
        };
        assert_eq!(err, CertError::KeySize(4096));
        assert!(err.to_string().contains("4096-bit"), "{err}");
    }
}
