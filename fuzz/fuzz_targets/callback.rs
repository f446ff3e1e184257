//! The synchronous return (call_back_url): query parsing and the sorted-string signature.
//! Mode byte 0: the raw query. 1: the query's pairs signed correctly (reaches the field checks).
#![no_main]

use alipay_wap_fuzz::*;
use alipay_wap_plugin::{connector, sign, transformers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, query)) = data.split_first() else {
        return;
    };
    let mut pairs = transformers::form_decode(query);
    if mode % 2 == 1 {
        pairs.retain(|(k, _)| k != "sign" && k != "sign_type");
        let content = sign::sorted_link_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        pairs.push(("sign".into(), sign::md5_sign(&content, MD5_KEY)));
        if let Ok(r) = connector::verify_return(&md5_pairs(), &pairs) {
            assert_eq!(r.result, "success");
            assert!(!r.out_trade_no.is_empty());
        }
    } else {
        let _ = connector::verify_return(&md5_pairs(), &pairs);
        let _ = transformers::verify_return(rsa_settings(), &pairs);
    }
});
