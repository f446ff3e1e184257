//! Alipay's side of the wire format, written from docs/protocol/WAP.md and
//! nothing else: it shares no code with the component, so a mistake in one is caught by the other.
//! MD5 with the `md-5` crate, RSA with the `rsa` crate, XML with quick-xml, GBK with encoding_rs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest, Md5};
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;

/// How a merchant signs: MD5 with its key, or RSA (merchant public key to check its requests and
/// to encrypt for it; the sandbox's own private key to sign as Alipay).
#[derive(Clone)]
pub enum Keys {
    Md5(String),
    Rsa {
        merchant_public: Box<RsaPublicKey>,
        alipay_private: Box<RsaPrivateKey>,
    },
}

impl Keys {
    pub fn sec_id(&self) -> &'static str {
        match self {
            Keys::Md5(_) => "MD5",
            Keys::Rsa { .. } => "0001",
        }
    }
}

pub fn rsa_private_from_pem(pem: &str) -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("not an RSA private key: {e}"))
}

pub fn rsa_public_from_pem(pem: &str) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| rsa::pkcs1::DecodeRsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("not an RSA public key: {e}"))
}

/// [WAP §5.1]: without sign, sign_type and empty values; byte-wise sorted; raw `k=v` joined by `&`.
pub fn presign_sorted(params: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// [WAP §7.2]: `service=…&v=…&sec_id=…&notify_data=…` in this fixed order.
pub fn presign_notify(service: &str, v: &str, sec_id: &str, notify_data: &str) -> String {
    format!("service={service}&v={v}&sec_id={sec_id}&notify_data={notify_data}")
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Alipay signing a message for the merchant.
pub fn sign_as_alipay(keys: &Keys, text: &[u8]) -> String {
    match keys {
        Keys::Md5(key) => {
            let mut data = text.to_vec();
            data.extend_from_slice(key.as_bytes());
            md5_hex(&data)
        }
        Keys::Rsa { alipay_private, .. } => {
            let digest = Sha1::digest(text);
            let sig = alipay_private
                .sign(Pkcs1v15Sign::new::<Sha1>(), &digest)
                .expect("a 1024-bit or larger key signs a SHA-1 digest");
            B64.encode(sig)
        }
    }
}

/// Checks a merchant's signature over `text`.
pub fn verify_merchant(keys: &Keys, text: &str, sign: &str) -> bool {
    verify_merchant_bytes(keys, text.as_bytes(), sign)
}

/// [`verify_merchant`] over raw bytes (a GBK request is signed over its GBK bytes).
pub fn verify_merchant_bytes(keys: &Keys, text: &[u8], sign: &str) -> bool {
    match keys {
        Keys::Md5(key) => {
            let expected = md5_hex(&[text, key.as_bytes()].concat());
            use subtle::ConstantTimeEq;
            expected.len() == sign.len()
                && bool::from(
                    expected
                        .as_bytes()
                        .ct_eq(sign.to_ascii_lowercase().as_bytes()),
                )
        }
        Keys::Rsa {
            merchant_public, ..
        } => {
            let Ok(sig) = B64.decode(sign.trim()) else {
                return false;
            };
            let digest = Sha1::digest(text);
            merchant_public
                .verify(Pkcs1v15Sign::new::<Sha1>(), &digest, &sig)
                .is_ok()
        }
    }
}

/// [WAP §5.2], the encrypting side: 117-byte chunks to the merchant's public key, base64.
pub fn encrypt_for_merchant(public: &RsaPublicKey, plain: &str) -> String {
    use rsa::traits::PublicKeyParts;
    let chunk = public.size() - 11;
    let mut out = Vec::new();
    for part in plain.as_bytes().chunks(chunk) {
        out.extend(
            public
                .encrypt(&mut rand_core::OsRng, Pkcs1v15Encrypt, part)
                .expect("a chunk of key size - 11 bytes encrypts"),
        );
    }
    B64.encode(out)
}

/// Builds `<root><k>v</k>…</root>` with quick-xml's writer (values escaped).
pub fn build_xml<K: AsRef<str>>(root: &str, children: &[(K, String)]) -> String {
    let mut w = quick_xml::Writer::new(Vec::new());
    w.write_event(Event::Start(BytesStart::new(root)))
        .expect("in-memory write");
    for (k, v) in children {
        let k = k.as_ref();
        w.write_event(Event::Start(BytesStart::new(k)))
            .expect("in-memory write");
        w.write_event(Event::Text(BytesText::new(v)))
            .expect("in-memory write");
        w.write_event(Event::End(BytesEnd::new(k)))
            .expect("in-memory write");
    }
    w.write_event(Event::End(BytesEnd::new(root)))
        .expect("in-memory write");
    String::from_utf8(w.into_inner()).expect("UTF-8 in, UTF-8 out")
}

/// Reads the child elements of a `req_data` document, as Alipay would refuse it: not well formed,
/// a DOCTYPE, or the wrong root.
pub fn parse_req_data(xml: &str, root: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut depth = 0;
    let mut seen_root = false;
    let mut current: Option<(String, String)> = None;
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("req_data is not well-formed XML: {e}"))?
        {
            Event::Start(e) => {
                let name = e.name().into_inner().to_owned();
                depth += 1;
                match depth {
                    1 if name == root => seen_root = true,
                    1 => return Err(format!("req_data root must be <{root}>, not <{name}>")),
                    2 => current = Some((name, String::new())),
                    _ => return Err("req_data nests elements too deeply".into()),
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some(c) = current.take() {
                        out.push(c);
                    }
                }
                depth -= 1;
            }
            Event::Empty(e) if depth == 1 => {
                out.push((e.name().into_inner().to_owned(), String::new()))
            }
            Event::Text(t) if depth == 2 => {
                if let Some(c) = current.as_mut() {
                    c.1.push_str(AsRef::<str>::as_ref(&t));
                }
            }
            Event::GeneralRef(r) if depth == 2 => {
                let name: &str = AsRef::<str>::as_ref(&r);
                let text = match r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad reference: {e}"))?
                {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_owned(),
                };
                if let Some(c) = current.as_mut() {
                    c.1.push_str(&text);
                }
            }
            Event::DocType(_) => return Err("req_data must not carry a DOCTYPE".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root || depth != 0 {
        return Err(format!("req_data is not a complete <{root}> document"));
    }
    Ok(out)
}

/// `[0.01, 100000000.00]`, at most two decimals; the canonical two-decimal form.
pub fn canonical_fee(fee: &str) -> Option<String> {
    let (i, f) = fee.split_once('.').unwrap_or((fee, ""));
    if i.is_empty()
        || !i.bytes().all(|b| b.is_ascii_digit())
        || !f.bytes().all(|b| b.is_ascii_digit())
        || f.len() > 2
    {
        return None;
    }
    if fee.contains('.') && f.is_empty() {
        return None;
    }
    let yuan: u64 = i.trim_start_matches('0').parse().unwrap_or(0);
    if i.trim_start_matches('0').len() > 9 {
        return None;
    }
    let fen = yuan * 100 + format!("{f:0<2}").parse::<u64>().ok()?;
    (1..=10_000_000_000)
        .contains(&fen)
        .then(|| format!("{}.{:02}", fen / 100, fen % 100))
}

/// The GBK pay-channel answer ([WAP §9]), signed over the GBK bytes of `result=…`.
pub fn paychannel_response(keys: &Keys, partner: &str) -> Vec<u8> {
    let result = r#"{"payChannleResult":{"supportedPayChannelList":{"supportTopPayChannel":[{"name":"信用卡快捷支付","cashierCode":"CREDITCARD","supportSecPayChannelList":{"supportSecPayChannel":[{"name":"建行","cashierCode":"CREDITCARD_CCB"},{"name":"工行","cashierCode":"CREDITCARD_ICBC"}]}},{"name":"借记卡快捷支付","cashierCode":"DEBITCARD","supportSecPayChannelList":{"supportSecPayChannel":{"name":"农行","cashierCode":"DEBITCARD_ABC"}}}]}}}"#;
    let (gbk_result, _, _) = encoding_rs::GBK.encode(result);
    let mut presign = b"result=".to_vec();
    presign.extend_from_slice(&gbk_result);
    let sign = sign_as_alipay(keys, &presign);
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?><alipay><is_success>T</is_success><request><param name=\"_input_charset\">GBK</param><param name=\"service\">mobile.merchant.paychannel</param><param name=\"partner\">{partner}</param></request><response><alipay><result>"
    );
    let mut body = encoding_rs::GBK.encode(&head).0.into_owned();
    body.extend_from_slice(&gbk_result);
    body.extend_from_slice(
        format!(
            "</result></alipay></response><sign>{sign}</sign><sign_type>{}</sign_type></alipay>",
            if matches!(keys, Keys::Md5(_)) {
                "MD5"
            } else {
                "0001"
            }
        )
        .as_bytes(),
    );
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference's own vectors, checked against this independent implementation.
    #[test]
    fn reference_vectors() {
        let keys = Keys::Md5("10000000000000000000000000000000".into());
        assert_eq!(
            sign_as_alipay(&keys, b"partner=123&service=test"),
            "bbd13b52823b576291595f472ebcfbc2"
        );
        let cb: Vec<(String, String)> = [
            ("out_trade_no", "20140101000001"),
            ("request_token", "requestToken"),
            ("result", "success"),
            ("trade_no", "2014010100001000000000000001"),
            ("sign_type", "MD5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            sign_as_alipay(&keys, presign_sorted(&cb).as_bytes()),
            "c9746fb3a6b148a7beeb342c1cb7601f"
        );
        assert_eq!(canonical_fee("12.5").as_deref(), Some("12.50"));
        for bad in ["1e3", "-1", "0.001", "abc", "0", "", ".5", "100000000.01"] {
            assert_eq!(canonical_fee(bad), None, "{bad}");
        }
        assert!(parse_req_data(
            "<direct_trade_create_req><subject>A & B</subject></direct_trade_create_req>",
            "direct_trade_create_req"
        )
        .is_err());
        let ok = parse_req_data(
            "<direct_trade_create_req><subject>A &amp; B</subject></direct_trade_create_req>",
            "direct_trade_create_req",
        )
        .unwrap();
        assert_eq!(ok[0].1, "A & B");
    }
}
