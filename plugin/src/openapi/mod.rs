//! Alipay's current OpenAPI (`openapi.alipay.com/gateway.do`: an `app_id`, RSA2, public-key or
//! certificate mode), the rules without I/O ([OPENAPI]): the request signing
//! string and its RSA2/RSA signature ([`sign`], [OPENAPI §3]), the notify and return verification
//! ([`sign`], [OPENAPI §5], [OPENAPI §6.3]), the raw-node signature of server responses ([`response`], [OPENAPI §7.2]) and
//! the certificate serial numbers of certificate mode ([`cert`], [OPENAPI §3.4]).
//!
//! The legacy "mapi" rules (partner + key, MD5/RSA) stay in [`crate::sign`]: the two families
//! differ exactly where bugs hide (`sign_type` is signed in OpenAPI requests, dropped from
//! notifies), so they share no signing-string code.

pub mod cert;
pub mod connector;
pub mod notify;
pub mod pay;
pub mod query;
pub mod refund;
pub mod request;
pub mod response;
pub mod settings;
pub mod sign;

/// The reference's known-answer vectors (test-only keys), as shipped in `plugin/testdata/openapi/`.
#[cfg(test)]
pub(crate) mod testdata {
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/openapi")
    }

    /// A file of the vectors, as bytes (responses and notifies are raw wire bytes).
    pub fn read(rel: &str) -> Vec<u8> {
        std::fs::read(dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub struct Vectors {
        pub json: serde_json::Value,
        keys: Vec<(String, String)>,
    }

    impl Vectors {
        /// A key of `vectors.json`'s `keys` table, as PEM text.
        pub fn key(&self, name: &str) -> &str {
            &self.keys.iter().find(|(k, _)| k == name).unwrap().1
        }
    }

    pub fn vectors() -> Vectors {
        let json: serde_json::Value = serde_json::from_slice(&read("vectors.json")).unwrap();
        let keys = json["keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, v)| {
                let v = v.as_str().unwrap();
                let text = if v.starts_with("keys/") {
                    String::from_utf8(read(v)).unwrap()
                } else {
                    v.to_owned()
                };
                (name.clone(), text)
            })
            .collect();
        Vectors { json, keys }
    }

    pub fn real_samples() -> serde_json::Value {
        serde_json::from_slice(&read("real_samples.json")).unwrap()
    }
}
