//! The gateway's answers: the create.direct response (form with res_data/res_error, signature,
//! RSA-encrypted res_data, the token XML) and the GBK pay-channel response.
//! Mode byte 0: the raw create response (MD5). 1: the input is res_data, signed correctly.
//! 2: the raw create response (RSA). 3: the raw pay-channel response.
#![no_main]

use alipay_wap_fuzz::*;
use alipay_wap_plugin::{sign, transformers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let _ = transformers::parse_create_response(md5_settings(), body);
        }
        1 => {
            let res_data = String::from_utf8_lossy(body).into_owned();
            let mut reply = vec![
                ("res_data".to_owned(), res_data),
                (
                    "service".to_owned(),
                    "alipay.wap.trade.create.direct".to_owned(),
                ),
                ("sec_id".to_owned(), "MD5".to_owned()),
                ("partner".to_owned(), PARTNER.to_owned()),
                ("req_id".to_owned(), "1".to_owned()),
                ("v".to_owned(), "2.0".to_owned()),
            ];
            let content =
                sign::sorted_link_string(reply.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            reply.push(("sign".to_owned(), sign::md5_sign(&content, MD5_KEY)));
            let encoded = transformers::form_encode(&reply);
            if let Ok(token) =
                transformers::parse_create_response(md5_settings(), encoded.as_bytes())
            {
                assert!(!token.is_empty());
            }
        }
        2 => {
            let _ = transformers::parse_create_response(rsa_settings(), body);
        }
        _ => {
            let _ = transformers::parse_paychannel_response(md5_settings(), body);
        }
    }
});
