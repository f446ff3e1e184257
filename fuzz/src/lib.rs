//! What the fuzz targets share: merchant settings (MD5 and RSA, from the protocol reference's
//! test vectors) and a transport that answers `notify_verify` without a network.

use alipay_wap_plugin::connector::{HttpRequest, HttpResponse, Transport, TransportError};
use alipay_wap_plugin::settings::Settings;
use std::sync::OnceLock;

pub const PARTNER: &str = "2088101122136241";
pub const MD5_KEY: &str = "10000000000000000000000000000000";
const PRIVATE_KEY: &str = include_str!("../../plugin/testdata/test_priv.pem");
const PUBLIC_KEY: &str = include_str!("../../plugin/testdata/test_pub.pem");

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn md5_pairs() -> Vec<(String, String)> {
    pairs(&[
        ("partner", PARTNER),
        ("key", MD5_KEY),
        ("seller_email", "seller@example.com"),
    ])
}

pub fn rsa_pairs() -> Vec<(String, String)> {
    pairs(&[
        ("partner", PARTNER),
        ("sign_type", "RSA"),
        ("seller_email", "seller@example.com"),
        ("private_key", PRIVATE_KEY),
        ("alipay_public_key", PUBLIC_KEY),
    ])
}

/// Parsed once: key parsing would otherwise dominate every run.
pub fn md5_settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        alipay_wap_plugin::connector::load_settings(&md5_pairs()).expect("valid MD5 settings")
    })
}

pub fn rsa_settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        alipay_wap_plugin::connector::load_settings(&rsa_pairs()).expect("valid RSA settings")
    })
}

/// Answers every request with the given status and body.
pub struct Canned(pub u16, pub Vec<u8>);

impl Transport for Canned {
    fn send(&mut self, _request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse {
            status: self.0,
            body: self.1.clone(),
        })
    }
}

/// Splits fuzz input at the first 0xFF byte (two independent inputs from one).
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
