//! Credentials and abuse limits: the admin password (argon2), admin sessions and their CSRF
//! tokens (random, stored hashed in the database), per-merchant API tokens (random, stored as
//! SHA-256), login throttling per IP, per account and per device cookie, and token-bucket rate limits per IP and per merchant.

use anyhow::{anyhow, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The argon2id PHC string of a password (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| anyhow!("cannot make a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("cannot hash the password: {e}"))
}

/// Whether `hash` is a PHC string argon2 can check.
pub fn check_password_hash(hash: &str) -> Result<()> {
    // The parser's own words ("value to short") say nothing to an operator: what is wrong is
    // that the string was cut or mistyped.
    let parsed = PasswordHash::new(hash).map_err(|_| {
        anyhow!("it does not read as $argon2id$v=19$m=…,t=…,p=…$salt$hash (cut short or mistyped when copied?)")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(anyhow!("the algorithm is {}, not argon2", parsed.algorithm));
    }
    // A hash cut short still parses, yet no password would ever match it.
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(anyhow!(
            "it has no salt or no hash part (cut short? make a new one with `payhost admin-password`)"
        ));
    }
    Ok(())
}

/// Checks a password against its PHC hash (argon2's comparison is constant-time).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The most password checks (argon2: tens of milliseconds and ≈ 19 MiB each) that run at once in
/// this process: 100 logins at once from 20 addresses, each within its own throttle, took the
/// process from 100 MB to 1.97 GB without it.
pub const MAX_PASSWORD_CHECKS: usize = 4;

static PASSWORD_CHECKS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_PASSWORD_CHECKS);

/// One more check kept for browsers that logged in to the account before (a device cookie,
/// http/admin/device.rs): guessers from many addresses keeping the others busy do not keep the
/// owner out.
static KNOWN_BROWSER_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// [`verify_password`] off the async workers, at most [`MAX_PASSWORD_CHECKS`] at once (and one
/// more for a `known_browser`); `None` (nothing checked) when that many are running. The place is
/// held by the check itself, so a client that hangs up does not free it before the memory is.
pub async fn verify_password_limited(
    password: String,
    hash: String,
    known_browser: bool,
) -> Option<bool> {
    let place = match PASSWORD_CHECKS.try_acquire() {
        Ok(place) => place,
        Err(_) if known_browser => KNOWN_BROWSER_CHECKS.try_acquire().ok()?,
        Err(_) => return None,
    };
    let checked = tokio::task::spawn_blocking(move || {
        let ok = verify_password(&password, &hash);
        drop(place);
        ok
    })
    .await;
    Some(checked.unwrap_or(false))
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The longest label a merchant token keeps.
pub const MAX_TOKEN_LABEL: usize = 100;

/// Why a token's label (trimmed) cannot be kept as given, naming the rule: `payhost token list`
/// shows a token a line, its fields separated by tabs.
pub fn token_label_refused(label: &str) -> Option<String> {
    let label = label.trim();
    (label.chars().count() > MAX_TOKEN_LABEL || label.chars().any(char::is_control)).then(|| {
        format!("at most {MAX_TOKEN_LABEL} characters, on one line (no tabs or control characters)")
    })
}

/// A new per-merchant API token: `phm_` and 64 hex digits.
pub fn new_merchant_token() -> String {
    format!("phm_{}", random_token())
}

/// How tokens and session ids are stored: hex SHA-256 (they are random 32-byte values, so a
/// slow hash adds nothing).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Token buckets by key: `rate` requests a second, a burst of one second's worth. A rate of 0
/// turns the limit off.
pub struct RateLimiter<K> {
    rate: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate_per_s: u32) -> Self {
        RateLimiter {
            rate: rate_per_s as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty (answer 429).
    pub fn allow(&self, key: &K) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Forget the buckets that have refilled: they hold no information.
            let rate = self.rate;
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < rate
            });
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed admin logins per key (a client address, an account, a device cookie) within a
/// window: after `max_failures` the key's attempts are refused until the oldest failure is
/// `window` old.
pub struct FailureWindow<K> {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<K, VecDeque<Instant>>>,
}

/// Failed admin logins per IP in the last minute.
pub type LoginThrottle = FailureWindow<IpAddr>;

/// Failed logins to one account (a user name; the empty name is payhost.toml's password) from
/// browsers that never logged in to it, from any address: a botnet guessing one password, each
/// address under its own limit. Browsers that logged in to it before count apart, per device
/// cookie (http/admin/device.rs), so guessers cannot lock the owner out.
pub const ACCOUNT_FAILURES: u32 = 20;
/// Failed logins from one device cookie: one stolen cookie buys no more than an address does.
pub const DEVICE_FAILURES: u32 = 10;
/// The window of [`ACCOUNT_FAILURES`] and [`DEVICE_FAILURES`].
pub const ACCOUNT_WINDOW: Duration = Duration::from_secs(600);

impl<K: std::hash::Hash + Eq + Clone> FailureWindow<K> {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        FailureWindow {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `max_failures_per_minute` failures a minute.
    pub fn per_minute(max_failures_per_minute: u32) -> Self {
        Self::new(max_failures_per_minute, Duration::from_secs(60))
    }

    /// Starts a login attempt of `key`: `Err(seconds to wait)` when it has failed too often in
    /// the window. An attempt counts as a failure from the moment it starts, so guesses sent
    /// at once cannot all pass this check before the first of them has failed; only the attempt
    /// that succeeds is taken back ([`succeeded`](Self::succeeded)).
    pub fn attempt(&self, key: K) -> Result<Attempt<K>, u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, l| l.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let list = map.entry(key.clone()).or_default();
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
        if list.len() as u32 >= self.max_failures {
            let oldest = *list.front().expect("not empty");
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        list.push_back(now);
        Ok(Attempt { key, started: now })
    }

    /// Takes back a successful attempt. The key's other failures stay: a login of one's own
    /// does not buy more guesses at someone else's password.
    pub fn succeeded(&self, attempt: Attempt<K>) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(&attempt.key) {
            if let Some(i) = list.iter().position(|t| *t == attempt.started) {
                list.remove(i);
            }
            if list.is_empty() {
                map.remove(&attempt.key);
            }
        }
    }
}

/// A login attempt in progress, counted as a failure until [`FailureWindow::succeeded`].
#[derive(Debug)]
pub struct Attempt<K> {
    key: K,
    started: Instant,
}

/// The abuse limits of one running host.
pub struct Guards {
    pub notify_ip: RateLimiter<IpAddr>,
    pub notify_merchant: RateLimiter<String>,
    pub return_ip: RateLimiter<IpAddr>,
    pub admin_ip: RateLimiter<IpAddr>,
    pub api_ip: RateLimiter<IpAddr>,
    pub logins: LoginThrottle,
    /// Failed logins per account from browsers without its device cookie ([`ACCOUNT_FAILURES`]).
    pub account_logins: FailureWindow<String>,
    /// Failed logins per device cookie ([`DEVICE_FAILURES`]).
    pub device_logins: FailureWindow<String>,
}

impl Guards {
    pub fn new(config: &crate::config::Config) -> Self {
        let l = &config.limits;
        Guards {
            notify_ip: RateLimiter::new(l.notify_per_ip_per_s),
            notify_merchant: RateLimiter::new(l.notify_per_merchant_per_s),
            return_ip: RateLimiter::new(l.return_per_ip_per_s),
            admin_ip: RateLimiter::new(l.admin_per_ip_per_s),
            api_ip: RateLimiter::new(l.api_per_ip_per_s),
            logins: LoginThrottle::per_minute(config.admin.login_failures_per_minute),
            account_logins: FailureWindow::new(ACCOUNT_FAILURES, ACCOUNT_WINDOW),
            device_logins: FailureWindow::new(DEVICE_FAILURES, ACCOUNT_WINDOW),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        check_password_hash(&h).unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(check_password_hash("plain").is_err());
        // Cut short: it parses, but nothing would match it.
        let cut = h.rsplit_once('$').unwrap().0;
        assert!(check_password_hash(cut).is_err(), "{cut}");
        let cut = cut.rsplit_once('$').unwrap().0;
        assert!(check_password_hash(cut).is_err(), "{cut}");
        assert!(!verify_password("x", "plain"));
        // A mistyped one is said in the operator's words, not the parser's ("value to short").
        let said = check_password_hash("$argon2id$v=19$m=19456,t=2,p=1$a$b")
            .unwrap_err()
            .to_string();
        assert!(
            said.contains("cut short or mistyped") && !said.contains("to short"),
            "{said}"
        );
    }

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let r = RateLimiter::new(5);
        let k = "a".to_owned();
        assert!((0..5).all(|_| r.allow(&k)));
        assert!(!r.allow(&k));
        assert!(r.allow(&"b".to_owned()), "buckets are per key");
        let off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.allow(&k)));
    }

    #[test]
    fn logins_are_throttled_after_failures() {
        let t = LoginThrottle::per_minute(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            t.attempt(ip).expect("not yet throttled");
        }
        let wait = t.attempt(ip).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(t.attempt("10.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn attempts_at_once_count_before_any_of_them_fails() {
        let t = LoginThrottle::per_minute(5);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // Twenty guesses started together, none finished: only five get a password check.
        let started = (0..20).filter(|_| t.attempt(ip).is_ok()).count();
        assert_eq!(started, 5);
    }

    #[test]
    fn a_success_takes_back_only_its_own_attempt() {
        let t = LoginThrottle::per_minute(5);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..4 {
            t.attempt(ip).unwrap(); // four wrong guesses
        }
        let own = t.attempt(ip).unwrap();
        t.succeeded(own); // a login of one's own from the same address
        t.attempt(ip).unwrap(); // the fifth guess
        assert!(
            t.attempt(ip).is_err(),
            "the four earlier failures still count after a success"
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_merchant_token();
        assert!(a.starts_with("phm_") && a.len() == 68);
        assert_ne!(a, new_merchant_token());
        assert_eq!(token_hash(&a).len(), 64);
    }
}
