//! Log lines an outsider or an outage could repeat without end (a refused token, an unreadable
//! outbox polled five times a second) are said at most once per interval, with how many were
//! left unsaid since: the log stays readable and cannot be flooded.
//! Text from outside the host is written through [`clean`], so it cannot forge a line.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub struct Every {
    interval_ms: i64,
    last_ms: AtomicI64,
    unsaid: AtomicU64,
}

impl Every {
    pub const fn ms(interval_ms: i64) -> Every {
        Every {
            interval_ms,
            last_ms: AtomicI64::new(i64::MIN),
            unsaid: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be said now, `n` being how many were left unsaid before it;
    /// `None` (counted) otherwise.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(crate::store::now_ms())
    }

    fn allow_at(&self, now: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= self.interval_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.unsaid.swap(0, Ordering::Relaxed))
        } else {
            self.unsaid.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Text from outside the host (a component's error, a request's field) as a log line may show
/// it: control characters (a newline that would start a forged line, a terminal escape) and the
/// Unicode line separators and direction overrides are written escaped (`\n`, `\u{1b}`), the
/// rest (Chinese included) as it is. `detail = %log_limit::clean(&e)`.
pub fn clean<T: std::fmt::Display>(text: T) -> Clean<T> {
    Clean(text)
}

/// What [`clean`] returns: displays its text escaped.
pub struct Clean<T>(T);

impl<T: std::fmt::Display> std::fmt::Display for Clean<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Escaping<'a, 'b>(&'a mut std::fmt::Formatter<'b>);
        impl std::fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let mut rest = s;
                while let Some((at, c)) = rest.char_indices().find(|&(_, c)| unsafe_in_log(c)) {
                    self.0.write_str(&rest[..at])?;
                    write!(self.0, "{}", c.escape_default())?;
                    rest = &rest[at + c.len_utf8()..];
                }
                self.0.write_str(rest)
            }
        }
        use std::fmt::Write;
        write!(Escaping(f), "{}", self.0)
    }
}

fn unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::{clean, Every};

    #[test]
    fn outside_text_cannot_start_a_log_line_of_its_own() {
        let forged = "FOO\n2026-12-04T00:00:00Z INFO payhost::server: FAKE\r\u{1b}[2J\u{2028}";
        assert_eq!(
            clean(forged).to_string(),
            "FOO\\n2026-12-04T00:00:00Z INFO payhost::server: FAKE\\r\\u{1b}[2J\\u{2028}"
        );
        assert_eq!(
            clean("签名 \"RSA\" tab\t").to_string(),
            "签名 \"RSA\" tab\\t"
        );
    }

    #[test]
    fn one_line_per_interval_with_the_count_left_unsaid() {
        let every = Every::ms(1000);
        assert_eq!(every.allow_at(10_000), Some(0));
        assert_eq!(every.allow_at(10_001), None);
        assert_eq!(every.allow_at(10_999), None);
        assert_eq!(every.allow_at(11_000), Some(2));
        assert_eq!(every.allow_at(11_500), None);
    }
}
