//! `product = "auto"`: which cashier a buyer's browser gets. A provider's phone cashier may refuse
//! desktop browsers and its desktop cashier be unusable on a phone, so the host picks by the
//! `User-Agent` the shop passes, as the public integrations do (Mobile Detect and its ports): a
//! phone or tablet browser gets WAP, anything else PC. No User-Agent at all gets WAP, the product
//! the host offered before the switch existed. (In-app browsers carry their platform's tokens
//! as well, e.g. `Android … Mobile`, so they need no marker of their own.)

/// Markers of phone and tablet browsers (case-insensitive), from the families Mobile Detect
/// recognises: platform names, the generic `Mobile` token, and Chinese in-app browsers.
const PHONE_MARKERS: &[&str] = &[
    "mobile",
    "android",
    "iphone",
    "ipad",
    "ipod",
    "windows phone",
    "blackberry",
    "symbian",
    "opera mini",
    "ucbrowser",
    "ucweb",
    "micromessenger",
    "midp",
    "harmonyos",
];

/// True for a phone or tablet browser.
pub fn is_phone_browser(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    PHONE_MARKERS.iter().any(|m| ua.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_desktops() {
        for phone in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
            "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X)",
            "Mozilla/5.0 (Linux; U; Android 4.4.2; zh-CN) UCBrowser/11.0",
            "Mozilla/5.0 (Linux; Android 10) MicroMessenger/8.0.40",
            "Mozilla/5.0 (Linux; U; Android 9; zh-CN; MI 8) AppleWebKit/537.36 Chrome/57.0 Mobile Safari/537.36 NebulaSDK/1.8.100112",
            "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80)",
        ] {
            assert!(is_phone_browser(phone), "{phone}");
        }
        for desktop in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        ] {
            assert!(!is_phone_browser(desktop), "{desktop}");
        }
    }
}
