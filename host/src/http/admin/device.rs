//! Device cookies: a browser that logged in to an account keeps a proof of it, so that guesses
//! at that account from anywhere else cannot lock its owner out (OWASP's "Slow Down Online
//! Guessing Attacks with Device Cookies"). The per-account limit (`auth::ACCOUNT_FAILURES`)
//! applies to browsers without one; a browser with one counts on its own
//! (`auth::DEVICE_FAILURES`).
//!
//! The cookie holds up to [`MAX_ACCOUNTS`] entries `<hex of the user name>.<nonce>.<mac>`, joined
//! by `~`. The MAC is an HMAC-SHA256 keyed with the account's stored password hash: it needs no
//! key of its own, every replica can check it, and a changed password (say, after a leak) ends
//! the trust of every browser that logged in with the old one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE: &str = "payhost_device";
/// Accounts one browser is remembered for.
const MAX_ACCOUNTS: usize = 4;
/// How long a browser is remembered after its last login: 180 days.
const MAX_AGE_S: u64 = 180 * 86_400;
/// The longest user name an entry carries (hex: twice this).
const MAX_NAME_BYTES: usize = 128;

fn mac(password_hash: &str, name_hex: &str, nonce: &str) -> Hmac<Sha256> {
    let mut m =
        Hmac::<Sha256>::new_from_slice(password_hash.as_bytes()).expect("HMAC takes any key");
    m.update(b"payhost admin device v1\n");
    m.update(name_hex.as_bytes());
    m.update(b"\n");
    m.update(nonce.as_bytes());
    m
}

/// One well-formed entry of the cookie: (name hex, nonce, mac hex).
fn entries(value: &str, at_most: usize) -> impl Iterator<Item = (&str, &str, &str)> {
    value.split('~').take(at_most).filter_map(|e| {
        let mut parts = e.splitn(3, '.');
        let (name, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        (name.len() % 2 == 0
            && name.len() <= 2 * MAX_NAME_BYTES
            && hex(name)
            && nonce.len() == 32
            && hex(nonce)
            && mac.len() == 64
            && hex(mac))
        .then_some((name, nonce, mac))
    })
}

/// The nonce of this browser's entry for account `name` when its MAC checks with the account's
/// password hash (compared in constant time); None for no entry, or a forged or outdated one.
pub fn known(value: Option<&str>, name: &str, password_hash: &str) -> Option<String> {
    let name_hex = hex::encode(name.as_bytes());
    entries(value?, 4 * MAX_ACCOUNTS)
        .filter(|(n, _, _)| *n == name_hex)
        .find(|(n, nonce, given)| {
            let given = hex::decode(given).unwrap_or_default();
            mac(password_hash, n, nonce).verify_slice(&given).is_ok()
        })
        .map(|(_, nonce, _)| nonce.to_owned())
}

/// The cookie's value after a login to `name`: a new entry for it first, then the browser's
/// entries for other accounts (at most [`MAX_ACCOUNTS`] in all). None for a name too long to
/// carry (the login goes on; that browser is just not remembered).
pub fn after_login(value: Option<&str>, name: &str, password_hash: &str) -> Option<String> {
    if name.len() > MAX_NAME_BYTES {
        return None;
    }
    let name_hex = hex::encode(name.as_bytes());
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let tag = hex::encode(
        mac(password_hash, &name_hex, &nonce)
            .finalize()
            .into_bytes(),
    );
    let mut out = vec![format!("{name_hex}.{nonce}.{tag}")];
    for (n, nonce, tag) in entries(value.unwrap_or_default(), 4 * MAX_ACCOUNTS) {
        if n != name_hex && out.len() < MAX_ACCOUNTS {
            out.push(format!("{n}.{nonce}.{tag}"));
        }
    }
    Some(out.join("~"))
}

/// The `Set-Cookie` value for `value`: sent back only with the admin's requests, never to a
/// script, never from another site.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let mut c =
        format!("{COOKIE}={value}; Path=/admin; Max-Age={MAX_AGE_S}; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    #[test]
    fn a_browser_is_known_for_the_account_it_logged_in_to_only() {
        let v = after_login(None, "li", HASH).unwrap();
        let nonce = known(Some(&v), "li", HASH).expect("known");
        assert_eq!(nonce.len(), 32);
        assert_eq!(known(Some(&v), "wang", HASH), None, "another account");
        assert_eq!(known(Some(&v), "", HASH), None, "payhost.toml's password");
        // The password changed: the old proof is worth nothing.
        assert_eq!(known(Some(&v), "li", &format!("{HASH}x")), None);
        assert_eq!(known(None, "li", HASH), None);
        // Behind another cookie of the same name (the request's values joined), still known.
        let both = format!(
            "{}.{}.{}~{v}",
            hex::encode("li"),
            "0".repeat(32),
            "0".repeat(64)
        );
        assert!(known(Some(&both), "li", HASH).is_some());
    }

    #[test]
    fn a_changed_entry_is_not_known() {
        let v = after_login(None, "li", HASH).unwrap();
        let (name, rest) = v.split_once('.').unwrap();
        let (nonce, tag) = rest.split_once('.').unwrap();
        let flip = |s: &str| {
            let last = if s.ends_with('0') { '1' } else { '0' };
            format!("{}{last}", &s[..s.len() - 1])
        };
        for forged in [
            format!("{name}.{}.{tag}", flip(nonce)),
            format!("{name}.{nonce}.{}", flip(tag)),
            format!("{}.{nonce}.{tag}", hex::encode("wang")),
            format!("{name}.{nonce}.{}", &tag[..62]),
            format!("{name}.{nonce}"),
            "garbage".to_owned(),
        ] {
            let who = String::from_utf8(
                hex::decode(forged.split('.').next().unwrap()).unwrap_or_default(),
            )
            .unwrap_or_default();
            assert_eq!(known(Some(&forged), &who, HASH), None, "{forged}");
            assert_eq!(known(Some(&forged), "li", HASH), None, "{forged}");
        }
    }

    #[test]
    fn a_browser_is_remembered_for_four_accounts_the_latest_first() {
        let mut v = None;
        for name in ["a", "b", "c", "d", "e", "c"] {
            v = after_login(v.as_deref(), name, HASH);
        }
        let v = v.unwrap();
        assert_eq!(v.split('~').count(), 4, "{v}");
        assert!(v.starts_with(&hex::encode("c")), "{v}");
        assert_eq!(known(Some(&v), "a", HASH), None, "the oldest left out");
        for name in ["b", "c", "d", "e"] {
            assert!(known(Some(&v), name, HASH).is_some(), "{name}: {v}");
        }
        // A new nonce on each login: the entry of an account is not repeated.
        let c = format!("{}.", hex::encode("c"));
        assert_eq!(v.split('~').filter(|e| e.starts_with(&c)).count(), 1);
        assert_eq!(after_login(None, &"x".repeat(129), HASH), None);
        assert!(set_cookie(&v, true).ends_with("HttpOnly; SameSite=Strict; Secure"));
    }
}
