//! The zone the admin pages show times in (`[admin] time_zone`, default `Asia/Shanghai`). Times
//! are stored as UTC; a page converts them for the shop owner. The zones a payhost serves keep one
//! offset all year (China, Hong Kong, Taiwan, Singapore, Japan, Korea…), so a named zone maps to a
//! fixed offset here instead of carrying a time-zone database; `UTC+hh:mm` names any other offset.

use std::fmt;

/// Named zones without daylight saving time, and their offsets in minutes.
const NAMED: &[(&str, i32)] = &[
    ("Asia/Shanghai", 480),
    ("Asia/Chongqing", 480),
    ("Asia/Harbin", 480),
    ("Asia/Urumqi", 360),
    ("Asia/Hong_Kong", 480),
    ("Asia/Macau", 480),
    ("Asia/Taipei", 480),
    ("Asia/Singapore", 480),
    ("Asia/Kuala_Lumpur", 480),
    ("Asia/Manila", 480),
    ("Asia/Tokyo", 540),
    ("Asia/Seoul", 540),
    ("Asia/Bangkok", 420),
    ("Asia/Ho_Chi_Minh", 420),
    ("Asia/Jakarta", 420),
    ("Asia/Kolkata", 330),
    ("Asia/Dubai", 240),
    ("UTC", 0),
    ("Etc/UTC", 0),
];

/// A named fixed-offset zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    /// Minutes east of UTC.
    pub offset_min: i32,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            name: "Asia/Shanghai".into(),
            offset_min: 480,
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.offset_text())
    }
}

impl Zone {
    /// `Asia/Shanghai`, `UTC`, or an offset `UTC+08:00` / `UTC-05:30` / `+08:00`.
    pub fn parse(s: &str) -> Result<Zone, String> {
        let s = s.trim();
        if let Some((name, offset)) = NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(Zone {
                name: (*name).into(),
                offset_min: *offset,
            });
        }
        let rest = s.strip_prefix("UTC").unwrap_or(s);
        let (sign, hm) = match rest.as_bytes().first() {
            Some(b'+') => (1, &rest[1..]),
            Some(b'-') => (-1, &rest[1..]),
            _ => return Err(unknown(s)),
        };
        let (h, m) = hm.split_once(':').unwrap_or((hm, "0"));
        let (Ok(h), Ok(m)) = (h.parse::<i32>(), m.parse::<i32>()) else {
            return Err(unknown(s));
        };
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(unknown(s));
        }
        let offset_min = sign * (h * 60 + m);
        let zone = Zone {
            name: String::new(),
            offset_min,
        };
        Ok(Zone {
            name: format!("UTC{}", zone.offset_text()),
            offset_min,
        })
    }

    /// `+08:00`.
    pub fn offset_text(&self) -> String {
        let sign = if self.offset_min < 0 { '-' } else { '+' };
        let m = self.offset_min.abs();
        format!("{sign}{:02}:{:02}", m / 60, m % 60)
    }

    /// A Unix time as local `YYYY-MM-DD HH:MM:SS`.
    pub fn local(&self, unix: i64) -> String {
        let (date, secs) = civil(unix + self.offset_min as i64 * 60);
        format!(
            "{date} {:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }

    /// A stored time as local text: a UTC time (RFC 3339), or a provider's Beijing wall-clock
    /// text kept as received (`gmt_payment`, `gmt_refund`: `YYYY-MM-DD HH:MM:SS`); anything else
    /// is shown as it is.
    pub fn show(&self, stored: &str) -> String {
        parse_utc(stored)
            .or_else(|| {
                crate::domain::clock::beijing_text_to_utc(stored).and_then(|t| parse_utc(&t))
            })
            .map(|t| self.local(t))
            .unwrap_or_else(|| stored.to_owned())
    }

    /// The local calendar day (`YYYY-MM-DD`) of a Unix time.
    pub fn day(&self, unix: i64) -> String {
        civil(unix + self.offset_min as i64 * 60).0
    }

    /// The Unix time a local day (`YYYY-MM-DD`) starts at.
    pub fn day_start(&self, day: &str) -> Option<i64> {
        let mut parts = day.trim().splitn(3, '-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let d: i64 = parts.next()?.parse().ok()?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
            return None;
        }
        let days = days_from_civil(y, m, d);
        // Round-trips only for a real date (no 31 February).
        (civil(days * 86_400).0 == format!("{y:04}-{m:02}-{d:02}"))
            .then(|| days * 86_400 - self.offset_min as i64 * 60)
    }
}

fn unknown(s: &str) -> String {
    format!(
        "{s:?} is not a zone payhost knows: use a name without daylight saving time (Asia/Shanghai, Asia/Hong_Kong, Asia/Tokyo, UTC, …) or an offset such as UTC+08:00"
    )
}

/// (`YYYY-MM-DD`, seconds into the day) of a Unix time.
fn civil(unix: i64) -> (String, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y:04}-{m:02}-{d:02}"), secs)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Unix time of `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or `+00:00`), as the stores write.
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let body = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once('T')?;
    let time = time.split('.').next()?;
    let day = Zone {
        name: String::new(),
        offset_min: 0,
    }
    .day_start(date)?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    ((0..24).contains(&h) && (0..60).contains(&m) && (0..61).contains(&sec))
        .then_some(day + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_is_eight_hours_ahead_and_days_turn_at_its_midnight() {
        let z = Zone::default();
        assert_eq!(z.show("2026-12-03T16:30:00Z"), "2026-12-04 00:30:00");
        assert_eq!(
            z.day(parse_utc("2026-12-03T15:59:59Z").unwrap()),
            "2026-12-03"
        );
        assert_eq!(
            z.day(parse_utc("2026-12-03T16:00:00Z").unwrap()),
            "2026-12-04"
        );
        assert_eq!(z.day_start("2026-12-04"), parse_utc("2026-12-03T16:00:00Z"));
        assert_eq!(z.day_start("2026-02-30"), None);
        assert_eq!(z.show("not a time"), "not a time");
        // A provider's Beijing text (a payment's `gmt_payment`) is that instant, in any zone.
        assert_eq!(z.show("2026-12-06 08:26:24"), "2026-12-06 08:26:24");
        let utc = Zone::parse("UTC").unwrap();
        assert_eq!(utc.show("2026-12-06 08:26:24"), "2026-12-06 00:26:24");
        assert_eq!(utc.show("2026-12-06T00:26:24Z"), "2026-12-06 00:26:24");
        // A time of no zone in another shape is not taken for Beijing's.
        assert_eq!(utc.show("2026-12-06T08:26:24"), "2026-12-06T08:26:24");
    }

    #[test]
    fn names_and_offsets() {
        assert_eq!(Zone::parse("asia/tokyo").unwrap().offset_min, 540);
        let z = Zone::parse("UTC-05:30").unwrap();
        assert_eq!((z.name.as_str(), z.offset_min), ("UTC-05:30", -330));
        assert_eq!(Zone::parse("+08:00").unwrap().name, "UTC+08:00");
        assert!(Zone::parse("Europe/Berlin")
            .unwrap_err()
            .contains("daylight"));
        assert!(Zone::parse("UTC+25").is_err());
    }
}
