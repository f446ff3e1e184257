//! What the fuzz targets share: merchant settings (MD5 and RSA, from the protocol reference's
//! test vectors) and a driver that answers the flows' requests (`notify_verify`) without a network.

use alipay_wap_plugin::connector::{self, HttpResponse, Step};
use alipay_wap_plugin::model::{Notification, PluginError};
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

/// Verifies a notification, answering its `notify_verify` request with `status` and `body`.
pub fn verify_notification(
    settings: &[(String, String)],
    form: &[(String, String)],
    status: u16,
    body: &[u8],
) -> Result<Notification, PluginError> {
    let mut step = connector::verify_notification(settings, form)?;
    for _ in 0..4 {
        match step {
            Step::Done(n) => return Ok(n),
            Step::Send(p) => {
                let answer = HttpResponse {
                    status,
                    headers: Vec::new(),
                    body: body.to_vec(),
                };
                step = connector::resume_notification(settings, &p.continuation, Ok(answer))?;
            }
        }
    }
    panic!("the notification flow asked for more than four requests");
}

/// Splits fuzz input at the first 0xFF byte (two independent inputs from one).
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
