//! The values inside a line: names, numbers, durations, endpoints and comparisons.

use std::str::FromStr;

use crate::fault::Endpoint;
use crate::scenario::lex::{Problem, Token};
use crate::scenario::Cmp;

/// `[A-Za-z][A-Za-z0-9_-]*`
pub(super) fn thread_name(token: &Token) -> Result<String, Problem> {
    let mut chars = token.text.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(Problem::new(
            token.column,
            format!(
                "invalid thread name {:?}: start with a letter, then use letters, digits, _ and -",
                token.text
            ),
        ));
    }
    Ok(token.text.clone())
}

/// `[a-z][a-z0-9_]*`
pub(super) fn identifier(token: &Token, what: &str) -> Result<String, Problem> {
    let mut chars = token.text.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(Problem::new(
            token.column,
            format!(
                "invalid {what} {:?}: start with a lowercase letter, then use lowercase letters, \
                 digits and _",
                token.text
            ),
        ));
    }
    Ok(token.text.clone())
}

/// An account or user id: letters, digits, `_`, `-`, `.` and `@`.
pub(super) fn account_id(token: &Token, what: &str) -> Result<String, Problem> {
    let valid = !token.text.is_empty()
        && token
            .text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if !valid {
        return Err(Problem::new(
            token.column,
            format!("invalid {what} {:?}: use letters, digits, _, -, . and @", token.text),
        ));
    }
    Ok(token.text.clone())
}

/// The text an `expect` looks for: an empty one would match everything.
pub(super) fn search_text(token: &Token) -> Result<String, Problem> {
    if token.text.is_empty() {
        return Err(Problem::new(
            token.column,
            "the text to look for is empty: write part of the message",
        ));
    }
    Ok(token.text.clone())
}

/// A whole number written in decimal digits only (no sign).
pub(super) fn whole_number<T: FromStr>(token: &Token, what: &str) -> Result<T, Problem> {
    let text = &token.text;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.strip_prefix('-').is_some_and(digits) {
        return Err(Problem::new(token.column, format!("the {what} cannot be negative")));
    }
    if !digits(text) {
        return Err(Problem::new(
            token.column,
            format!("invalid {what} {text:?}: expected a whole number"),
        ));
    }
    text.parse().map_err(|_| Problem::new(token.column, format!("the {what} {text} is too large")))
}

/// One or more `<digits><unit>` groups, units `ms`, `s`, `m`, `h`, `d`, in milliseconds: the
/// syntax of [`crate::duration`], which the command line's durations share.
pub(super) fn duration(token: &Token) -> Result<u64, Problem> {
    crate::duration::parse_ms(&token.text).map_err(|e| Problem::new(token.column, e.to_string()))
}

/// `<min>..<max>`, both durations, `min <= max`.
pub(super) fn latency(token: &Token) -> Result<(u64, u64), Problem> {
    let Some(dots) = token.text.find("..") else {
        return Err(Problem::new(
            token.column,
            format!("expected a range like 5ms..250ms, found {:?}", token.text),
        ));
    };
    let min = duration(&token.head(dots))?;
    let max = duration(&token.tail(dots + 2))?;
    if min > max {
        return Err(Problem::new(
            token.column,
            format!("the latency range {} is empty: write the smaller duration first", token.text),
        ));
    }
    Ok((min, max))
}

pub(super) fn endpoint(token: &Token) -> Result<Endpoint, Problem> {
    Endpoint::from_name(&token.text).ok_or_else(|| {
        let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        Problem::new(
            token.column,
            format!("unknown endpoint {:?}: expected one of {}", token.text, names.join(", ")),
        )
    })
}

pub(super) fn cmp(token: &Token) -> Result<Cmp, Problem> {
    Cmp::ALL.into_iter().find(|c| c.symbol() == token.text).ok_or_else(|| {
        let symbols: Vec<&str> = Cmp::ALL.iter().map(|c| c.symbol()).collect();
        Problem::new(
            token.column,
            format!("unknown comparison {:?}: expected one of {}", token.text, symbols.join(", ")),
        )
    })
}
