//! The settings validator: what a shop owner pastes into the admin page (any bytes, any keys,
//! PEM keys of any shape).
#![no_main]

use alipay_wap_plugin::{connector, transformers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pairs = transformers::form_decode(data);
    if let Ok(normalised) = connector::validate_settings(&pairs) {
        // What the validator accepts, it accepts again unchanged, and can load.
        assert_eq!(
            connector::validate_settings(&normalised).as_ref(),
            Ok(&normalised)
        );
        assert!(connector::load_settings(&normalised).is_ok());
    }
});
