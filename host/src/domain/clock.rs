//! Times as the ledger needs them: stored as UTC `YYYY-MM-DDTHH:MM:SSZ`, shown and filtered by
//! the shop owner's day in Beijing time (UTC+8, no daylight saving), without a date-time crate.

/// Beijing time is UTC+8 all year.
pub const BEIJING_OFFSET_S: i64 = 8 * 3600;

/// Days since 1970-01-01 of a proleptic Gregorian date (days-from-civil).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A calendar date `YYYY-MM-DD` (a real day) as days since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i64::from(digits(&s[0..4])?);
    let m = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// An RFC 3339 date-time (`2024-05-01T12:00:00Z`, `…+08:00`, fractions ignored) as Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 20 || !s.is_char_boundary(10) {
        return None;
    }
    let days = parse_date(&s[..10])?;
    let rest = &s[10..];
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t'))?;
    let b = rest.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, mi, se) = (
        digits(&rest[0..2])?,
        digits(&rest[3..5])?,
        digits(&rest[6..8])?,
    );
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut zone = &rest[8..];
    if let Some(f) = zone.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        zone = &f[n..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && &z[3..4] == ":" => {
            let (oh, om) = (digits(&z[1..3])?, digits(&z[4..6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if z.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + se.min(59)) - offset)
}

/// The UTC instant a Beijing day (days since the epoch of its date) starts.
pub fn beijing_day_start(days: i64) -> i64 {
    days * 86_400 - BEIJING_OFFSET_S
}

/// The Beijing date (days since the epoch) of an instant.
pub fn beijing_day(unix: i64) -> i64 {
    (unix + BEIJING_OFFSET_S).div_euclid(86_400)
}

/// `YYYY-MM-DD` of days since the epoch.
pub fn format_date(days: i64) -> String {
    crate::store::format_unix((days * 86_400).max(0) as u64)[..10].to_owned()
}

/// `YYYY-MM-DD HH:MM:SS` in Beijing time of an instant (how Alipay and Chinese shops write times).
pub fn beijing_text(unix: i64) -> String {
    let t = crate::store::format_unix((unix + BEIJING_OFFSET_S).max(0) as u64);
    format!("{} {}", &t[..10], &t[11..19])
}

/// `YYYYMMDD` of the Beijing date of an instant.
pub fn beijing_compact_date(unix: i64) -> String {
    format_date(beijing_day(unix)).replace('-', "")
}

/// An event's time in milliseconds (webhooks' `created_at_ms`), consistent with its stored
/// second `at` (`YYYY-MM-DDTHH:MM:SSZ`): now, when now is still within that second; else that
/// second's last millisecond (the text was made just before a second turned).
pub fn event_ms(at: &str) -> i64 {
    let now = crate::store::now_ms();
    match parse_rfc3339(at) {
        Some(secs) if now.div_euclid(1000) == secs => now,
        Some(secs) => secs * 1000 + 999,
        None => now,
    }
}

/// Now, as Unix seconds.
pub fn now_unix() -> i64 {
    crate::store::now_ms() / 1000
}

/// A stored UTC time (`YYYY-MM-DDTHH:MM:SSZ`) in Beijing time, or None when it is not one.
pub fn stored_to_beijing(stored: &str) -> Option<String> {
    parse_rfc3339(stored).map(beijing_text)
}

/// A time as payhost shows it (UTC ISO 8601): a stored UTC time as it is, a provider's Beijing
/// wall-clock text (`gmt_payment`, kept as received) converted; None when it is neither.
pub fn shown_utc(text: &str) -> Option<String> {
    parse_rfc3339(text)
        .map(|t| crate::store::format_unix(t.max(0) as u64))
        .or_else(|| beijing_text_to_utc(text))
}

/// A stored time as a webhook shows it: [`shown_utc`], or the text as it is when it is neither
/// form (never dropped: the shop still sees what the provider said).
pub fn shown_utc_or_as_is(text: &str) -> String {
    shown_utc(text).unwrap_or_else(|| text.to_owned())
}

/// A provider's Beijing wall-clock time (`YYYY-MM-DD HH:MM:SS`) as stored UTC, or None.
pub fn beijing_text_to_utc(text: &str) -> Option<String> {
    let t = text.trim();
    // Bytes are sliced below: ASCII only (a provider's or a component's text may be anything).
    if t.len() != 19 || !t.is_ascii() || t.as_bytes()[10] != b' ' {
        return None;
    }
    let iso = format!("{}T{}+08:00", &t[..10], &t[11..]);
    parse_rfc3339(&iso).map(|u| crate::store::format_unix(u.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_instants() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("2024-1-01"), None);
        assert_eq!(parse_rfc3339("2014-01-01T12:00:10Z"), Some(1_388_577_610));
        assert_eq!(
            parse_rfc3339("2014-01-01T20:00:10+08:00"),
            Some(1_388_577_610)
        );
        assert_eq!(
            parse_rfc3339("2014-01-01T12:00:10.250Z"),
            Some(1_388_577_610)
        );
        assert_eq!(parse_rfc3339("2014-01-01 12:00:10Z"), None);
        assert_eq!(parse_rfc3339("2014-01-01T12:00:10"), None);
        // A Beijing day starts at 16:00 UTC the day before.
        let d = parse_date("2024-05-02").unwrap();
        assert_eq!(
            crate::store::format_unix(beijing_day_start(d) as u64),
            "2024-05-01T16:00:00Z"
        );
        assert_eq!(
            beijing_day(parse_rfc3339("2024-05-01T16:00:00Z").unwrap()),
            d
        );
        assert_eq!(
            beijing_day(parse_rfc3339("2024-05-01T15:59:59Z").unwrap()),
            d - 1
        );
        assert_eq!(beijing_text(1_388_577_610), "2014-01-01 20:00:10");
        assert_eq!(beijing_compact_date(1_388_577_610), "20140101");
        assert_eq!(
            beijing_text_to_utc("2014-01-01 20:00:10").as_deref(),
            Some("2014-01-01T12:00:10Z")
        );
    }
}
