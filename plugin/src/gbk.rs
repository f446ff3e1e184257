//! GBK text, as used by the `mobile.merchant.paychannel` response (§9).

/// Decodes GBK bytes, refusing malformed sequences instead of replacing them.
pub fn decode(bytes: &[u8]) -> Result<String, &'static str> {
    encoding_rs::GBK
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|s| s.into_owned())
        .ok_or("not valid GBK")
}

/// Encodes text as GBK (tests and sandboxes build GBK responses with it).
pub fn encode(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}
