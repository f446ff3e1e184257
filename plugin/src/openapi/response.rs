//! Server responses and their signature ([OPENAPI §7.2]).
//!
//! `{"alipay_trade_query_response":{…},"sign":"…"}`: the signature covers the exact bytes of the
//! node's value, from its `{` to the matching `}` (an AES-encrypted node: the JSON string with both
//! quotes). Re-serialising a parsed node changes those bytes (key order, `\uXXXX`, `\/`, spaces),
//! so the node is cut out of the body by a scanner that knows JSON strings and escapes, and only
//! then parsed. Where the raw bytes do not verify and hold `\/`, they are verified once more with
//! every `\/` read as `/` (the official Java and PHP SDKs do the same: Alipay has been seen
//! signing either form).

use super::sign::{verify, SignType};
use crate::sign::PublicKey;

/// One top-level member of the response object: its key (as written, without quotes) and the
/// byte range of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

/// What is wrong with a response body, before any signature is looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShapeError {
    /// Not a JSON object, or a value that does not end.
    NotJson(&'static str),
    /// Neither the method's node nor `error_response`.
    NoNode,
    /// The node's name occurs twice at the top level: which one is signed is ambiguous.
    DuplicateNode,
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShapeError::NotJson(why) => write!(f, "the response is not a JSON object: {why}"),
            ShapeError::NoNode => f.write_str("the response has no node for the method called"),
            ShapeError::DuplicateNode => f.write_str("the response holds its node twice"),
        }
    }
}

/// The parts of a response the signature check needs, borrowed from the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawResponse<'a> {
    /// `alipay_trade_query_response`, or `error_response` when the gateway refused the call
    /// before the method ran.
    pub node_name: &'a str,
    /// The node's value exactly as received: the signed bytes.
    pub node: &'a [u8],
    /// The node is a JSON string (AES-encrypted content, [OPENAPI §9]), not an object.
    pub encrypted: bool,
    /// The top-level `sign`, if any.
    pub sign: Option<String>,
    /// The top-level `alipay_cert_sn` (certificate mode: which Alipay certificate signed).
    pub alipay_cert_sn: Option<String>,
}

/// The node name of a method: `alipay.trade.query` → `alipay_trade_query_response`.
pub fn node_name(method: &str) -> String {
    let mut name = method.replace('.', "_");
    name.push_str("_response");
    name
}

/// Cuts the method's node (or `error_response`) and the signature fields out of a body.
pub fn extract<'a>(body: &'a [u8], method: &str) -> Result<RawResponse<'a>, ShapeError> {
    let members = top_level_members(body)?;
    let wanted = node_name(method);
    let find = |name: &str| -> Result<Option<Member<'a>>, ShapeError> {
        let mut hits = members.iter().filter(|m| m.key == name.as_bytes());
        let first = hits.next().copied();
        if hits.next().is_some() {
            return Err(ShapeError::DuplicateNode);
        }
        Ok(first)
    };
    let (member, node_name) = match find(&wanted)? {
        Some(m) => (m, "method"),
        None => (
            find("error_response")?.ok_or(ShapeError::NoNode)?,
            "error_response",
        ),
    };
    let node_name = if node_name == "method" {
        // Borrow the name from the body so the result needs no allocation for it.
        std::str::from_utf8(member.key).map_err(|_| ShapeError::NotJson("a key is not UTF-8"))?
    } else {
        "error_response"
    };
    let string_member = |name: &str| -> Option<String> {
        members
            .iter()
            .find(|m| m.key == name.as_bytes())
            .and_then(|m| serde_json::from_slice::<String>(m.value).ok())
    };
    Ok(RawResponse {
        node_name,
        node: member.value,
        encrypted: member.value.first() == Some(&b'"'),
        sign: string_member("sign"),
        alipay_cert_sn: string_member("alipay_cert_sn"),
    })
}

/// How a response's signature came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The raw node verified.
    Verified,
    /// The raw node did not verify; with every `\/` read as `/` it did ([OPENAPI §7.2] step 4).
    VerifiedUnescapedSlash,
    /// No `sign`: an error report at best; never act on its business fields ([OPENAPI §7.2] step 6).
    Unsigned,
    /// A `sign` that verifies neither way.
    Bad,
}

impl SignatureCheck {
    pub fn is_verified(self) -> bool {
        matches!(
            self,
            SignatureCheck::Verified | SignatureCheck::VerifiedUnescapedSlash
        )
    }
}

/// Checks a response's signature over its raw node, with the `\/` fallback.
pub fn check_signature(
    raw: &RawResponse<'_>,
    key: &PublicKey,
    sign_type: SignType,
) -> SignatureCheck {
    let Some(sign) = raw.sign.as_deref() else {
        return SignatureCheck::Unsigned;
    };
    let verifies = |content: &[u8]| verify(content, sign, key, sign_type).unwrap_or(false);
    if verifies(raw.node) {
        return SignatureCheck::Verified;
    }
    if contains(raw.node, b"\\/") {
        let unescaped = replace_escaped_slash(raw.node);
        if verifies(&unescaped) {
            return SignatureCheck::VerifiedUnescapedSlash;
        }
    }
    SignatureCheck::Bad
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every `\/` replaced by `/`, as the official SDKs' fallback does (a plain text replacement).
fn replace_escaped_slash(node: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(node.len());
    let mut i = 0;
    while i < node.len() {
        if node[i] == b'\\' && node.get(i + 1) == Some(&b'/') {
            out.push(b'/');
            i += 2;
        } else {
            out.push(node[i]);
            i += 1;
        }
    }
    out
}

/// The members of the top-level object, each value as its exact byte range.
fn top_level_members(body: &[u8]) -> Result<Vec<Member<'_>>, ShapeError> {
    let mut s = Scanner { b: body, i: 0 };
    s.skip_ws();
    s.expect(b'{', "the body does not start with {")?;
    let mut members = Vec::new();
    s.skip_ws();
    if s.peek() == Some(b'}') {
        return Ok(members);
    }
    loop {
        s.skip_ws();
        let key_start = s.i;
        s.string()?;
        let key = &body[key_start + 1..s.i - 1];
        s.skip_ws();
        s.expect(b':', "a key is not followed by :")?;
        s.skip_ws();
        let value_start = s.i;
        s.value(0)?;
        members.push(Member {
            key,
            value: &body[value_start..s.i],
        });
        s.skip_ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => return Ok(members),
            _ => return Err(ShapeError::NotJson("a member is not followed by , or }")),
        }
    }
}

/// The nesting depth past which a body is refused (Alipay's nodes are three levels deep).
const MAX_DEPTH: usize = 64;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, why: &'static str) -> Result<(), ShapeError> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(ShapeError::NotJson(why))
        }
    }

    /// A string from its opening quote to past its closing one; `\` escapes the next byte, so
    /// `"…\"…"` and `"…}…"` end where JSON says.
    fn string(&mut self) -> Result<(), ShapeError> {
        self.expect(b'"', "a string was expected")?;
        loop {
            match self.next() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => {
                    self.next()
                        .ok_or(ShapeError::NotJson("a string does not end"))?;
                }
                Some(_) => {}
                None => return Err(ShapeError::NotJson("a string does not end")),
            }
        }
    }

    /// Any value: object and array by depth (strings skipped whole), scalars to the next
    /// delimiter. Only the extent is found here; serde_json parses the node afterwards.
    fn value(&mut self, depth: usize) -> Result<(), ShapeError> {
        if depth > MAX_DEPTH {
            return Err(ShapeError::NotJson("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string(),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(c) if c == close => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(b',' | b':') => self.i += 1,
                        Some(_) => self.value(depth + 1)?,
                        None => return Err(ShapeError::NotJson("an object or array does not end")),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    Err(ShapeError::NotJson("a value was expected"))
                } else {
                    Ok(())
                }
            }
            None => Err(ShapeError::NotJson("a value was expected")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::testdata;
    use crate::sign::parse_public_key;

    /// Every response vector ([OPENAPI §10.2]): the node cut out is the reference's `node_text` byte for
    /// byte, and the signature comes out as the reference says (raw, with the `\/` fallback,
    /// unsigned); re-serialised nodes never verify.
    #[test]
    fn response_vectors() {
        let v = testdata::vectors();
        let key = parse_public_key(v.key("alipay_public")).unwrap();
        let cases = v.json["responses"].as_object().unwrap();
        assert!(cases.len() >= 13);
        let mut seen = Vec::new();
        for (name, c) in cases {
            let body = testdata::read(c["file"].as_str().unwrap());
            let node_key = c["response_key"].as_str().unwrap();
            let method = node_key.trim_end_matches("_response").replace('_', ".");
            let raw = extract(&body, &method).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(raw.node_name, node_key, "{name}");
            if let Some(text) = c.get("node_text").and_then(|t| t.as_str()) {
                assert_eq!(std::str::from_utf8(raw.node).unwrap(), text, "{name}");
            }
            let check = check_signature(&raw, &key, SignType::Rsa2);
            seen.push((check, raw.encrypted));
            let raw_ok = c
                .get("verify_raw_node")
                .and_then(|b| b.as_bool())
                .unwrap_or(false);
            let fallback_ok = c
                .get("verify_raw_then_unescaped_slash")
                .and_then(|b| b.as_bool())
                .unwrap_or(raw_ok);
            if raw.sign.is_none() {
                assert_eq!(check, SignatureCheck::Unsigned, "{name}");
                continue;
            }
            let expected = if raw_ok {
                SignatureCheck::Verified
            } else if fallback_ok {
                SignatureCheck::VerifiedUnescapedSlash
            } else {
                SignatureCheck::Bad
            };
            assert_eq!(check, expected, "{name}");
            if raw.encrypted {
                continue;
            }
            // The same node re-serialised (serde_json sorts keys, drops `\/`) does not verify.
            let reparsed: serde_json::Value = serde_json::from_slice(raw.node).unwrap();
            let again = serde_json::to_vec(&reparsed).unwrap();
            if again != raw.node {
                let sign = raw.sign.as_deref().unwrap();
                assert!(
                    !verify(&again, sign, &key, SignType::Rsa2).unwrap(),
                    "{name}: a re-serialised node must not verify"
                );
            }
        }
        // Every outcome is exercised by some vector.
        for want in [
            (SignatureCheck::Verified, false),
            (SignatureCheck::Verified, true),
            (SignatureCheck::VerifiedUnescapedSlash, false),
            (SignatureCheck::Unsigned, false),
        ] {
            assert!(seen.contains(&want), "no vector gave {want:?}");
        }
    }

    /// A real Alipay-signed response ([OPENAPI §10.4]): the raw node verifies with Alipay's key.
    #[test]
    fn real_alipay_response() {
        let sample = &testdata::real_samples()["open_file_upload_response"];
        let key = parse_public_key(sample["alipay_public_key"].as_str().unwrap()).unwrap();
        let body = sample["raw_body"].as_str().unwrap().as_bytes();
        let raw = extract(body, "alipay.open.file.upload").unwrap();
        assert_eq!(
            check_signature(&raw, &key, SignType::Rsa2),
            SignatureCheck::Verified
        );
        let mut tampered = body.to_vec();
        let at = tampered.iter().position(|b| *b == b'1').unwrap();
        tampered[at] = b'2';
        let raw = extract(&tampered, "alipay.open.file.upload").unwrap();
        assert_eq!(
            check_signature(&raw, &key, SignType::Rsa2),
            SignatureCheck::Bad
        );
    }

    #[test]
    fn braces_and_quotes_inside_strings_do_not_end_the_node() {
        let body = br#"{"a_b_response":{"body":"x } \" { y","n":[1,{"k":"]"}]},"sign":"c2ln"}"#;
        let raw = extract(body, "a.b").unwrap();
        assert_eq!(raw.node, br#"{"body":"x } \" { y","n":[1,{"k":"]"}]}"#);
        assert_eq!(raw.sign.as_deref(), Some("c2ln"));
    }

    #[test]
    fn certificate_mode_and_error_response() {
        let body = br#"{"a_b_response":{"code":"10000"},"alipay_cert_sn":"abc","sign":"c2ln"}"#;
        let raw = extract(body, "a.b").unwrap();
        assert_eq!(raw.alipay_cert_sn.as_deref(), Some("abc"));
        let body = br#"{"error_response":{"code":"40002","sub_code":"isv.invalid-signature"}}"#;
        let raw = extract(body, "a.b").unwrap();
        assert_eq!(raw.node_name, "error_response");
        assert_eq!(raw.sign, None);
    }

    #[test]
    fn hostile_shapes_are_refused_not_panicked_on() {
        let dup =
            br#"{"a_b_response":{"code":"10000"},"a_b_response":{"code":"40004"},"sign":"x"}"#;
        assert_eq!(extract(dup, "a.b"), Err(ShapeError::DuplicateNode));
        assert_eq!(extract(br#"{"other":1}"#, "a.b"), Err(ShapeError::NoNode));
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"a_b_response\":{\"x\":\"unterminated}",
            b"{\"a_b_response\":}",
            b"{\"a_b_response\" {}}",
            b"{\"a_b_response\":{}",
        ] {
            assert!(
                extract(bad, "a.b").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!(
            "{{\"a_b_response\":{}{}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(extract(deep.as_bytes(), "a.b").is_err());
    }
}
