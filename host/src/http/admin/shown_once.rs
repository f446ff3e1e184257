//! Values shown once (a new API token, a new shop secret) cross the redirect after their post
//! sealed: the session's row keeps only ChaCha20-Poly1305 ciphertext, under a key derived from
//! the session cookie, which the browser alone holds (the store keeps the cookie's SHA-256). A
//! copy of the database taken between the post and the page never holds a token that the store
//! otherwise keeps only as a hash.

use super::view::{Flash, Lang, ShownOnce};
use base64::Engine;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

/// The key of one session's sealed values: HMAC-SHA256 of the cookie under a fixed label. (Not
/// the cookie as HMAC's key: a key longer than a block is replaced by its SHA-256, which is what
/// the store keeps.)
pub struct SealKey([u8; 32]);

impl SealKey {
    pub fn of_cookie(cookie: &str) -> SealKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"payhost admin: values shown once, v1")
            .expect("HMAC takes a key of any length");
        mac.update(cookie.as_bytes());
        SealKey(mac.finalize().into_bytes().into())
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte key"))
    }
}

/// `secrets` as base64 of a random nonce and the ciphertext; None only if the system's random
/// source fails (the caller then shows nothing rather than keep the values in the clear).
pub fn seal(key: &SealKey, secrets: &[ShownOnce]) -> Option<String> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let mut data = serde_json::to_vec(secrets).ok()?;
    key.aead()
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Some(base64::engine::general_purpose::STANDARD.encode(out))
}

/// What [`seal`] sealed under the same key; None for another session's key or altered text.
pub fn open(key: &SealKey, sealed: &str) -> Option<Vec<ShownOnce>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, data) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::empty(), &mut data)
        .ok()?;
    serde_json::from_slice(plain).ok()
}

/// Values shown once never wait in the store in the clear: sealed under the session's key.
pub fn seal_flash(f: &mut Flash, key: Option<&SealKey>, lang: Lang) {
    if f.secrets.is_empty() {
        return;
    }
    let secrets = std::mem::take(&mut f.secrets);
    f.sealed = key.and_then(|k| seal(k, &secrets));
    if f.sealed.is_none() {
        tracing::error!("cannot seal a value shown once: it is not shown");
        not_shown(f, lang);
    }
}

/// A message whose value shown once is lost says so: the owner revokes it and makes another.
fn not_shown(f: &mut Flash, lang: Lang) {
    f.ok = false;
    f.text.push_str(lang.pick(
        "（这一次的值无法显示：请吊销后重新创建）",
        " (the value could not be shown: revoke it and create another)",
    ));
}

/// The sealed values of a message, opened for the page that shows them; a message whose values
/// cannot be opened says so (the shop owner revokes the token and makes another).
pub fn open_flash(f: &mut Flash, key: Option<&SealKey>, lang: Lang) {
    let Some(sealed) = f.sealed.take() else {
        return;
    };
    match key.and_then(|k| open(k, &sealed)) {
        Some(secrets) => f.secrets = secrets,
        None => {
            tracing::error!("a value shown once could not be opened: it is not shown");
            not_shown(f, lang);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Vec<ShownOnce> {
        vec![ShownOnce {
            id: "new-token".into(),
            label: "#7".into(),
            value: "phm_secret_value_0123".into(),
        }]
    }

    #[test]
    fn sealed_values_open_only_under_their_sessions_key() {
        let key = SealKey::of_cookie("cookie-a");
        let sealed = seal(&key, &token()).unwrap();
        assert!(!sealed.contains("phm_"), "{sealed}");
        let opened = open(&SealKey::of_cookie("cookie-a"), &sealed).unwrap();
        assert_eq!(opened[0].value, "phm_secret_value_0123");
        assert!(open(&SealKey::of_cookie("cookie-b"), &sealed).is_none());
        // Two seals of the same values differ (a nonce each) and an altered byte fails.
        assert_ne!(seal(&key, &token()).unwrap(), sealed);
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(open(&key, &altered).is_none());
        assert!(open(&key, "not base64!").is_none());
    }
}
