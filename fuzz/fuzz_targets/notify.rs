//! The asynchronous notification: form parsing, the fixed-order signature (MD5 and RSA with
//! block decryption), the notify_data XML reader, the notify_verify answer.
//! Mode byte 0: the raw form body as received. 1: the input is notify_data, signed correctly
//! (reaches the XML reader and the trade fields). 2: the raw form with RSA settings. 3: the input
//! is a continuation handed back to `resume-notification` (a host passing back foreign bytes).
#![no_main]

use alipay_wap_fuzz::*;
use alipay_wap_plugin::{connector, sign, transformers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (body, verify_answer) = split(rest);
    match mode % 4 {
        0 => {
            let form = transformers::form_decode(body);
            let _ = verify_notification(&md5_pairs(), &form, 200, verify_answer);
        }
        1 => {
            let notify_data = String::from_utf8_lossy(body).into_owned();
            let content = sign::notify_link_string(
                "alipay.wap.trade.create.direct",
                "1.0",
                "MD5",
                &notify_data,
            );
            let form = vec![
                (
                    "service".to_owned(),
                    "alipay.wap.trade.create.direct".to_owned(),
                ),
                ("sign".to_owned(), sign::md5_sign(&content, MD5_KEY)),
                ("sec_id".to_owned(), "MD5".to_owned()),
                ("v".to_owned(), "1.0".to_owned()),
                ("notify_data".to_owned(), notify_data),
            ];
            let verified = verify_notification(&md5_pairs(), &form, 200, verify_answer);
            if let Ok(n) = verified {
                // A verified notification always names an order and a notify_id.
                assert!(!n.out_trade_no.is_empty() && !n.notify_id.is_empty());
            }
        }
        2 => {
            // RSA: block decryption of notify_data and the signature (settings parsed once).
            let form = transformers::form_decode(body);
            let _ = transformers::verify_notify_signature(rsa_settings(), &form);
        }
        _ => {
            let answer = connector::HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: verify_answer.to_vec(),
            };
            let _ = connector::resume_notification(&md5_pairs(), body, Ok(answer));
        }
    }
});
