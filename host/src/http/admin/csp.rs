//! The Content-Security-Policy of the pages payhost renders: every inline script and `<style>`
//! element is allowed by its SHA-256 (computed once from the templates), never `'unsafe-inline'`.

use super::{view, STYLE};

/// `'sha256-…'`: a CSP source that allows exactly this inline script or style element.
fn csp_hash(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The admin pages' Content-Security-Policy: scripts and styles from payhost itself and the
/// templates' own inline scripts and `<style>` elements, each by its SHA-256; a script or style
/// that found its way into a page (a provider's or a shop's text shown unescaped) would not run
/// or apply. Images may also be `data:` URLs: the pages' empty icon (`<link rel="icon"
/// href="data:,">`), so that no browser asks for a `/favicon.ico` payhost does not serve.
pub fn content_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let join = |texts: &mut dyn Iterator<Item = &str>| {
            texts.map(csp_hash).collect::<Vec<_>>().join(" ")
        };
        format!(
            "default-src 'self'; style-src 'self' {}; script-src 'self' {}; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
            join(&mut view::inline_styles().chain([STYLE])),
            join(&mut view::inline_scripts()),
        )
    })
}

/// The policy of a [`page`] shown to a buyer: its one style element, no script; its links may
/// lead back to the shop.
pub fn page_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'self'; style-src {}; script-src 'none'; form-action 'self' http: https:; \
             frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
            csp_hash(STYLE)
        )
    })
}
