//! The one duration syntax of agentsim, shared by scenario files (`advance 1h30m`, `identity_ttl:`,
//! `latency:`) and the command line (`sim fuzz --time-budget 1d`), so a duration written in one
//! place means the same in the other: one or more `<digits><unit>` groups, units `ms`, `s`, `m`,
//! `h` and `d`, with no bare numbers (is `60` seconds or milliseconds?) and no signs.

use std::fmt;

/// Why a duration's text was refused. Its `Display` is the message both the scenario parser and
/// the command line show, after their own location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// A leading `-`.
    Negative,
    /// Not `<digits><unit>` groups; holds the text.
    Invalid(String),
    /// More milliseconds than a `u64` holds; holds the text.
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Negative => write!(f, "durations cannot be negative"),
            DurationError::Invalid(text) => write!(
                f,
                "invalid duration {text:?}: write a number and a unit (ms, s, m, h or d), \
                 e.g. 250ms, 15s or 1h30m"
            ),
            DurationError::TooLarge(text) => write!(f, "the duration {text} is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `text` (`250ms`, `15s`, `1h30m`, `1d`, `1d2h3m4s5ms`) into milliseconds.
pub fn parse_ms(text: &str) -> Result<u64, DurationError> {
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let invalid = || DurationError::Invalid(text.to_owned());
    let too_large = || DurationError::TooLarge(text.to_owned());
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (amount, tail) = rest.split_at(digits);
        // `ms` before `m`: `1ms` is a millisecond, not a minute followed by garbage.
        let (unit_ms, unit_len) = if tail.starts_with("ms") {
            (1, 2)
        } else {
            match tail.bytes().next() {
                Some(b's') => (1_000, 1),
                Some(b'm') => (60_000, 1),
                Some(b'h') => (3_600_000, 1),
                Some(b'd') => (86_400_000, 1),
                _ => return Err(invalid()),
            }
        };
        let amount: u64 = amount.parse().map_err(|_| too_large())?;
        total_ms = amount
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(too_large)?;
        rest = &tail[unit_len..];
    }
    Ok(total_ms)
}

/// [`parse_ms`] as a [`std::time::Duration`], for command-line flags (clap's `value_parser`).
pub fn parse(text: &str) -> Result<std::time::Duration, DurationError> {
    parse_ms(text).map(std::time::Duration::from_millis)
}

/// Milliseconds as the largest units that add up to them exactly, e.g. `1h30m` or `1s500ms`:
/// the text [`parse_ms`] reads back, for scenario files and printed commands.
pub fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "0ms".to_string();
    }
    let units = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let mut rest = ms;
    let mut text = String::new();
    for (unit, unit_ms) in units {
        let amount = rest / unit_ms;
        if amount > 0 {
            text.push_str(&amount.to_string());
            text.push_str(unit);
            rest %= unit_ms;
        }
    }
    text
}

/// [`format_ms`] of a [`std::time::Duration`] (whole milliseconds; longer than `u64::MAX` ms
/// prints as that).
pub fn format(duration: std::time::Duration) -> String {
    format_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_their_sums() {
        let cases = [
            ("0s", 0),
            ("250ms", 250),
            ("15s", 15_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1m1ms", 60_001),
            ("1h30m", 5_400_000),
            ("1d2h3m4s5ms", 93_784_005),
            ("1s1s", 2_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
        }
        assert_eq!(parse("1d"), Ok(std::time::Duration::from_secs(86_400)));
    }

    #[test]
    fn refusals_say_why() {
        let invalid = |t: &str| Err(DurationError::Invalid(t.to_owned()));
        for text in ["", "5", "s", "5x", "1h30", "1mss", "1.5s", " 5s", "5 s", "5S", "+5s"] {
            assert_eq!(parse_ms(text), invalid(text), "{text:?}");
        }
        assert_eq!(parse_ms("-5s"), Err(DurationError::Negative));
        for text in ["99999999999999999999ms", "18446744073709551615s", "18446744073709551615ms1ms"]
        {
            assert_eq!(parse_ms(text), Err(DurationError::TooLarge(text.to_owned())), "{text}");
        }
        assert_eq!(parse_ms("18446744073709551615ms"), Ok(u64::MAX));
    }

    #[test]
    fn printed_durations_read_back() {
        for ms in [0, 1, 999, 1_000, 1_500, 60_000, 5_400_000, 86_400_000, 93_784_005, u64::MAX] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms), "{}", format_ms(ms));
        }
        assert_eq!(format_ms(5_400_000), "1h30m");
        assert_eq!(format(std::time::Duration::from_millis(1_500)), "1s500ms");
    }

    #[test]
    fn messages_are_the_scenario_parsers() {
        assert_eq!(DurationError::Negative.to_string(), "durations cannot be negative");
        assert_eq!(
            DurationError::Invalid("5x".into()).to_string(),
            "invalid duration \"5x\": write a number and a unit (ms, s, m, h or d), e.g. 250ms, \
             15s or 1h30m"
        );
        assert_eq!(
            DurationError::TooLarge("99999999999999999999ms".into()).to_string(),
            "the duration 99999999999999999999ms is too large"
        );
    }
}
