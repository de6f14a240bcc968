//! Virtual timestamps and their RFC 3339 text forms.
//!
//! Core never reads a clock: every input carries a [`Timestamp`] chosen by the driver. The text
//! forms are the ones the reference design writes: rollout lines use milliseconds
//! (`2026-04-18T14:02:10.001Z`), task registration and `registered_at` use whole seconds
//! (`2026-04-18T14:02:11Z`).

use std::fmt;

/// Milliseconds since the Unix epoch, UTC. The only notion of "now" core knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// Why a timestamp text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {text:?}: {reason}")]
pub struct TimestampError {
    /// The text that was refused (timestamps are never secret).
    pub text: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl Timestamp {
    /// 2026-04-18T14:00:00Z, the default start of a simulated run.
    pub const SIM_EPOCH: Timestamp = Timestamp(1_776_520_800_000);

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> u64 {
        self.0
    }

    /// This timestamp plus `ms` milliseconds, saturating.
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 with milliseconds, as rollout lines carry: `2026-04-18T14:02:10.001Z`.
    pub fn rfc3339_millis(self) -> String {
        let (date, ms) = self.split();
        format!("{date}.{ms:03}Z")
    }

    /// RFC 3339 with whole seconds, as task registration carries: `2026-04-18T14:02:11Z`.
    pub fn rfc3339_secs(self) -> String {
        let (date, _) = self.split();
        format!("{date}Z")
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`. Fractions past milliseconds are
    /// truncated. Dates before 1970 are refused (no timestamp of this lifecycle is that old).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        let err = |reason| TimestampError { text: text.to_owned(), reason };
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<u64, TimestampError> {
            let part = &b[range];
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(err("expected digits"));
            }
            Ok(part.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
        };
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(err("date out of range"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("time out of range"));
        }
        let mut i = 19;
        let mut millis = 0u64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(err("empty fraction"));
            }
            let frac = &b[start..i.min(start + 3)];
            millis = frac.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            millis *= 10u64.pow(3 - frac.len() as u32);
        }
        let offset_secs: i64 = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(err("bad offset"));
                }
                let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                let total = h * 3600 + m * 60;
                if *sign == b'+' {
                    total
                } else {
                    -total
                }
            }
            _ => return Err(err("expected Z or an offset")),
        };
        let days = days_from_civil(year as i64, month, day);
        let secs =
            days * 86_400 + (hour * 3600 + minute * 60 + second.min(59)) as i64 - offset_secs;
        if secs < 0 {
            return Err(err("before 1970"));
        }
        Ok(Timestamp(secs as u64 * 1000 + millis))
    }

    fn split(self) -> (String, u64) {
        let secs = self.0 / 1000;
        let ms = self.0 % 1000;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let date = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        );
        (date, ms)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339_millis())
    }
}

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil and its inverse, for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_epoch_formats_as_documented() {
        assert_eq!(Timestamp::SIM_EPOCH.rfc3339_secs(), "2026-04-18T14:00:00Z");
        assert_eq!(
            Timestamp::SIM_EPOCH.plus_ms(130_001).rfc3339_millis(),
            "2026-04-18T14:02:10.001Z"
        );
    }

    #[test]
    fn parse_round_trips_and_accepts_offsets() {
        for ms in [0u64, 1, 999, 951_782_400_000, 1_776_520_930_001, 4_102_444_800_000] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339_millis()), Ok(t));
        }
        let plus = Timestamp::parse_rfc3339("2026-04-18T16:02:10+02:00").unwrap();
        assert_eq!(plus.rfc3339_secs(), "2026-04-18T14:02:10Z");
        assert_eq!(Timestamp::parse_rfc3339("2024-02-29T00:00:00.5Z").unwrap().0 % 1000, 500);
    }

    #[test]
    fn parse_refuses_garbage() {
        for bad in [
            "",
            "2026-04-18",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-04-18T14:02:10",
            "2026-04-18T14:02:10.Z",
            "1969-12-31T23:59:59Z",
            "２026-04-18T14:02:10Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad} should be refused");
        }
    }
}
