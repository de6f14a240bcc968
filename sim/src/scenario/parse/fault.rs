//! Faults: the scripted `fault` lines and the random faults of the `fault_rate:` and
//! `fault_kinds:` header keys.

use std::collections::BTreeMap;

use super::cursor::Cursor;
use super::values::{endpoint, whole_number};
use super::Parser;
use crate::fault::{CallMatch, Endpoint, FaultKind, FaultRule};
use crate::scenario::lex::{Problem, Token, TokenKind};
use crate::scenario::Located;

pub(super) const FAULT_USAGE: &str = "fault <endpoint> <calls> <kind> [body=\"...\"]";

impl Parser {
    pub(super) fn fault(&mut self, number: usize, tokens: &[Token]) -> Result<(), Problem> {
        let first = &tokens[0];
        if !self.steps.is_empty() {
            return Err(Problem::new(
                first.column,
                "fault lines must come before the first step: move this line up",
            ));
        }
        let mut cursor = Cursor::new(&tokens[1..], first.end_column, FAULT_USAGE);
        let endpoint = endpoint(cursor.word("an endpoint")?)?;
        let calls = calls(cursor.word("which calls (3, 2..4, 5.. or *)")?)?;
        let kind = fault_kind(&mut cursor)?;
        cursor.finish()?;
        self.faults.push(Located { line: number, value: FaultRule { endpoint, calls, kind } });
        Ok(())
    }
}

/// `3`, `2..4`, `5..` or `*`.
fn calls(token: &Token) -> Result<CallMatch, Problem> {
    if token.text == "*" {
        return Ok(CallMatch::Every);
    }
    let invalid = || {
        Problem::new(
            token.column,
            format!(
                "invalid calls {:?}: write 3 (the third call), 2..4, 5.. (the fifth and later) \
                 or * (every call)",
                token.text
            ),
        )
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (from_text, to_text) = match token.text.split_once("..") {
        Some((from, to)) => (from, Some(to)),
        None => (token.text.as_str(), None),
    };
    if from_text.is_empty() || !digits(from_text) || !to_text.is_none_or(digits) {
        return Err(invalid());
    }
    let Some(dots) = token.text.find("..") else {
        return Ok(CallMatch::Nth(call_number(token)?));
    };
    let from = call_number(&token.head(dots))?;
    let to = token.tail(dots + 2);
    if to.text.is_empty() {
        return Ok(CallMatch::From(from));
    }
    let to_number = call_number(&to)?;
    if from > to_number {
        return Err(Problem::new(
            token.column,
            format!("the call range {} is empty: write the smaller number first", token.text),
        ));
    }
    Ok(CallMatch::Range { from, to: to_number })
}

fn call_number(token: &Token) -> Result<u32, Problem> {
    let n: u32 = whole_number(token, "call number")?;
    if n == 0 {
        return Err(Problem::new(token.column, "calls count from 1: the first call is 1"));
    }
    Ok(n)
}

/// `status=<code> [body="..."]` or a plain fault name.
fn fault_kind(cursor: &mut Cursor<'_>) -> Result<FaultKind, Problem> {
    let token = cursor.word("a fault kind")?;
    if let Some(code) = token.text.strip_prefix("status=") {
        let code = token.tail(token.text.len() - code.len());
        let status: u16 = whole_number(&code, "status")?;
        if !(100..=599).contains(&status) {
            return Err(Problem::new(
                code.column,
                format!("status {status} is not an HTTP status: use 100 to 599"),
            ));
        }
        let body = match cursor.peek() {
            Some(next) if next.kind == TokenKind::Word && next.text.starts_with("body=") => {
                cursor.next();
                Some(body(cursor, next)?)
            }
            _ => None,
        };
        return Ok(FaultKind::Status { status, body });
    }
    reject_body(token)?;
    let kind = FaultKind::from_plain_name(&token.text).ok_or_else(|| {
        Problem::new(
            token.column,
            format!(
                "unknown fault kind {:?}: expected status=<code> or one of {}",
                token.text,
                FaultKind::PLAIN_NAMES.join(", ")
            ),
        )
    })?;
    if let Some(next) = cursor.peek() {
        reject_body(next)?;
    }
    Ok(kind)
}

fn reject_body(token: &Token) -> Result<(), Problem> {
    if token.kind == TokenKind::Word && token.text.starts_with("body=") {
        return Err(Problem::new(
            token.column,
            "body= is only allowed after status=<code>, e.g. status=500 body=\"oops\"",
        ));
    }
    Ok(())
}

/// The string after a `body=` word that has been read.
fn body(cursor: &mut Cursor<'_>, word: &Token) -> Result<String, Problem> {
    let problem = |column| Problem::new(column, "write the body as a quoted string: body=\"...\"");
    if word.text != "body=" {
        return Err(problem(word.column + "body=".len()));
    }
    match cursor.peek() {
        Some(string) if string.kind == TokenKind::Str => {
            cursor.next();
            Ok(string.text.clone())
        }
        Some(other) => Err(problem(other.column)),
        None => Err(problem(word.end_column)),
    }
}

/// `fault_rate:`: `<endpoint>=<per mille>` pairs, each endpoint at most once.
pub(super) fn fault_rates(cursor: &mut Cursor<'_>) -> Result<BTreeMap<Endpoint, u16>, Problem> {
    let mut rates = BTreeMap::new();
    while let Some(token) = cursor.next() {
        let eq = match token.kind {
            TokenKind::Word => token.text.find('='),
            TokenKind::Str => None,
        };
        let Some(eq) = eq else {
            return Err(Problem::new(
                token.column,
                format!(
                    "expected <endpoint>=<per mille>, found {}: write {}",
                    token.describe(),
                    cursor.usage
                ),
            ));
        };
        let endpoint = endpoint(&token.head(eq))?;
        let rate_token = token.tail(eq + 1);
        let rate: u64 = whole_number(&rate_token, "fault rate")?;
        let rate = u16::try_from(rate).ok().filter(|r| *r <= 1000).ok_or_else(|| {
            Problem::new(
                rate_token.column,
                format!("the fault rate {rate} is above 1000: rates are in thousandths of calls"),
            )
        })?;
        if rates.insert(endpoint, rate).is_some() {
            return Err(Problem::new(
                token.column,
                format!("the fault rate of {endpoint} is given twice"),
            ));
        }
    }
    if rates.is_empty() {
        return Err(cursor.missing("an <endpoint>=<per mille> pair"));
    }
    Ok(rates)
}

/// `fault_kinds:`: the kinds random faults are drawn from, at least one.
pub(super) fn fault_kinds(cursor: &mut Cursor<'_>) -> Result<Vec<FaultKind>, Problem> {
    let mut kinds = Vec::new();
    while cursor.peek().is_some() {
        kinds.push(fault_kind(cursor)?);
    }
    if kinds.is_empty() {
        return Err(cursor.missing("a fault kind"));
    }
    Ok(kinds)
}
