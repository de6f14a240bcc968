//! The parser: one pass over the lines, checking each as it goes, then the checks that need the
//! whole file (a description, at least one step, threads named by expectations).
//!
//! Every check reports the column of the offending token and says what to write instead; the
//! parser never panics, whatever the input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::lex::{lex, Problem, Token, TokenKind};
use super::{
    AuthSpec, Cmp, ConfigChange, CrashPoint, Expect, Expiry, InitialIdentity, LastStateExpect,
    Located, ResumeSource, Scenario, ScenarioConfig, ScenarioError, Step, TaskExpect,
};
use crate::fault::{CallMatch, Endpoint, FaultKind, FaultRule};

mod edges;

/// Header keys, in the order [`Scenario::to_text`] writes them.
const HEADER_KEYS: [&str; 11] = [
    "description",
    "seed",
    "expiry",
    "persist_task",
    "flag",
    "identity_ttl",
    "identity",
    "auth",
    "latency",
    "fault_rate",
    "fault_kinds",
];

/// Step names, in the order error messages list them.
const STEP_NAMES: [&str; 16] = [
    "start",
    "resume",
    "fork",
    "turn",
    "submit",
    "advance",
    "settle",
    "rotate_identity",
    "expire_identity",
    "revoke_identity",
    "auth",
    "crash",
    "restart",
    "heal",
    "damage",
    "on",
];

/// What can follow `expect`, in the order error messages list them.
const EXPECT_NAMES: [&str; 10] = [
    "requests",
    "events",
    "event",
    "task",
    "last_state",
    "session_state_lines",
    "mark",
    "log",
    "no_log",
    "fail",
];

const FAULT_USAGE: &str = "fault <endpoint> <calls> <kind> [body=\"...\"]";
const ANY_EXPECT_USAGE: &str =
    "expect <what> ..., where <what> is one of requests, events, event, \
     task, last_state, session_state_lines, mark, log, no_log, fail";

pub(super) fn parse(name: &str, path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    // Some editors on Windows start UTF-8 files with a byte order mark; it is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        parser.line(number, line).map_err(|problem| ScenarioError {
            file: path.to_path_buf(),
            line: number,
            column: problem.column,
            message: problem.message,
        })?;
    }
    parser.finish(name, path)
}

/// What has been read so far.
#[derive(Debug, Default)]
struct Parser {
    description: Option<String>,
    /// The line and column of each header key seen so far.
    header_keys: BTreeMap<&'static str, (usize, usize)>,
    config: ScenarioConfig,
    faults: Vec<Located<FaultRule>>,
    steps: Vec<Located<Step>>,
    expects: Vec<Located<Expect>>,
    /// Threads introduced by the steps so far, in order.
    threads: Vec<String>,
    /// Threads named by expectations, as (line, column, name). Expectations may come before the
    /// steps that introduce their threads, so these are checked at the end.
    expect_threads: Vec<(usize, usize, String)>,
}

/// A `key: value` line, split.
#[derive(Debug)]
struct HeaderLine<'a> {
    key: &'a str,
    column: usize,
    value: &'a str,
    value_column: usize,
}

impl Parser {
    fn line(&mut self, number: usize, line: &str) -> Result<(), Problem> {
        if let Some(header) = header_line(line) {
            return self.header(number, &header);
        }
        let tokens = lex(line, 1)?;
        let Some(first) = tokens.first() else {
            return Ok(());
        };
        if first.kind == TokenKind::Str {
            return Err(Problem::new(
                first.column,
                "expected a step, a fault or an expect line, found a string",
            ));
        }
        match first.text.as_str() {
            "fault" => self.fault(number, &tokens),
            "expect" => self.expect(number, &tokens),
            _ => self.step(number, &tokens),
        }
    }

    fn header(&mut self, number: usize, header: &HeaderLine<'_>) -> Result<(), Problem> {
        let unknown = || {
            Problem::new(
                header.column,
                format!(
                    "unknown header key {:?}: expected one of {}",
                    header.key,
                    HEADER_KEYS.join(", ")
                ),
            )
        };
        let key = *HEADER_KEYS.iter().find(|k| **k == header.key).ok_or_else(unknown)?;
        if !self.steps.is_empty() {
            let mut message = format!("header key {key:?} must come before the first step");
            if key == "auth" {
                message.push_str(
                    " (to change auth during the run, write the step without a colon: \
                     auth chatgpt account=<id>)",
                );
            }
            return Err(Problem::new(header.column, message));
        }
        if let Some((line, _)) = self.header_keys.get(key) {
            return Err(Problem::new(
                header.column,
                format!("duplicate header key {key:?}: it is already set on line {line}; keep one"),
            ));
        }
        self.header_keys.insert(key, (number, header.column));
        if key == "description" {
            self.description = Some(description(header.value, header.value_column)?);
            return Ok(());
        }

        let tokens = lex(header.value, header.value_column)?;
        let usage = match key {
            "seed" => "seed: <number>",
            "expiry" => "expiry: reacquire | as_shipped",
            "persist_task" => "persist_task: true | false",
            "flag" => "flag: on | off",
            "identity_ttl" => "identity_ttl: <duration>, e.g. identity_ttl: 1h",
            "identity" => "identity: none | warm",
            "auth" => "auth: chatgpt account=<id> [user=<id>] | auth: api_key | auth: none",
            "latency" => "latency: <min>..<max>, e.g. latency: 5ms..250ms",
            "fault_rate" => "fault_rate: <endpoint>=<per mille> ..., e.g. fault_rate: model=100",
            _ => "fault_kinds: <kind> ..., e.g. fault_kinds: timeout status=503",
        };
        let mut cursor = Cursor::new(&tokens, header.value_column, usage);
        let config = &mut self.config;
        match key {
            "seed" => config.seed = Some(whole_number(cursor.word("a seed")?, "seed")?),
            "expiry" => {
                config.expiry = choice(
                    cursor.word("an expiry policy")?,
                    "expiry policy",
                    &[("reacquire", Expiry::Reacquire), ("as_shipped", Expiry::AsShipped)],
                )?
            }
            "persist_task" => {
                config.persist_task = choice(
                    cursor.word("true or false")?,
                    "value",
                    &[("true", true), ("false", false)],
                )?
            }
            "flag" => {
                config.flag = choice(
                    cursor.word("on or off")?,
                    "flag value",
                    &[("on", true), ("off", false)],
                )?
            }
            "identity_ttl" => config.identity_ttl_ms = Some(duration(cursor.word("a duration")?)?),
            "identity" => {
                config.identity = choice(
                    cursor.word("none or warm")?,
                    "initial identity",
                    &[("none", InitialIdentity::None), ("warm", InitialIdentity::Warm)],
                )?
            }
            "auth" => config.auth = auth(&mut cursor)?,
            "latency" => config.latency_ms = latency(cursor.word("a latency range")?)?,
            "fault_rate" => config.random_faults.rate_per_mille = fault_rates(&mut cursor)?,
            "fault_kinds" => config.random_faults.kinds = fault_kinds(&mut cursor)?,
            _ => return Err(unknown()),
        }
        cursor.finish()
    }

    fn fault(&mut self, number: usize, tokens: &[Token]) -> Result<(), Problem> {
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

    fn step(&mut self, number: usize, tokens: &[Token]) -> Result<(), Problem> {
        let first = &tokens[0];
        let usage = step_usage(&first.text);
        let mut cursor = Cursor::new(&tokens[1..], first.end_column, usage);
        let step = match first.text.as_str() {
            "start" => {
                let thread = self.new_thread(cursor.word("a thread name")?)?;
                self.threads.push(thread.clone());
                Step::Start { thread }
            }
            "resume" => self.resume(&mut cursor)?,
            "fork" => {
                let child = self.new_thread(cursor.word("the new thread's name")?)?;
                cursor.keyword("from")?;
                let parent = self.existing_thread(cursor.word("the parent thread")?)?;
                self.threads.push(child.clone());
                Step::Fork { child, parent }
            }
            name @ ("turn" | "submit") => {
                let thread = self.existing_thread(cursor.word("a thread name")?)?;
                let text = match cursor.peek() {
                    Some(token) if token.kind == TokenKind::Str => {
                        cursor.next();
                        token.text.clone()
                    }
                    _ => "hello".to_string(),
                };
                Step::Turn { thread, text, wait: name == "turn" }
            }
            "advance" => self.advance(&mut cursor)?,
            "settle" => Step::Settle,
            "rotate_identity" => Step::RotateIdentity,
            "expire_identity" => Step::ExpireIdentity,
            "revoke_identity" => Step::RevokeIdentity,
            "auth" => Step::Auth(auth(&mut cursor)?),
            "crash" => Step::Crash(self.crash(&mut cursor)?),
            "restart" => Step::Restart(config_change(&mut cursor)?),
            "heal" => Step::Heal,
            "damage" => self.damage(&mut cursor)?,
            "on" => self.on(&mut cursor)?,
            other => {
                return Err(Problem::new(
                    first.column,
                    format!(
                        "unknown step {other:?}: expected one of {} (or a fault or expect line)",
                        STEP_NAMES.join(", ")
                    ),
                ))
            }
        };
        cursor.finish()?;
        self.steps.push(Located { line: number, value: step });
        Ok(())
    }

    fn resume(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let token = cursor.word("a thread name")?;
        if cursor.peek().is_none() {
            let thread = self.existing_thread(token)?;
            return Ok(Step::Resume { thread, from: ResumeSource::Own });
        }
        if cursor.peek().is_some_and(|t| t.is_word("from_thread")) {
            return self.resume_from_thread(token, cursor);
        }
        let thread = thread_name(token)?;
        cursor.keyword("from")?;
        let path = cursor.string("the rollout file")?;
        if path.text.is_empty() {
            return Err(Problem::new(path.column, "the rollout file path is empty"));
        }
        if !self.threads.contains(&thread) {
            self.threads.push(thread.clone());
        }
        Ok(Step::Resume { thread, from: ResumeSource::File(PathBuf::from(&path.text)) })
    }

    fn crash(&self, cursor: &mut Cursor<'_>) -> Result<CrashPoint, Problem> {
        let Some(token) = cursor.next() else {
            return Ok(CrashPoint::Now);
        };
        if token.is_word("on_append") {
            Ok(CrashPoint::OnAppend(self.existing_thread(cursor.word("a thread name")?)?))
        } else if token.is_word("on_response") {
            Ok(CrashPoint::OnResponse(endpoint(cursor.word("an endpoint")?)?))
        } else {
            Err(Problem::new(
                token.column,
                format!(
                    "unknown crash point {}: expected on_append <thread>, on_response <endpoint>, \
                     or nothing to crash now",
                    token.describe()
                ),
            ))
        }
    }

    fn expect(&mut self, number: usize, tokens: &[Token]) -> Result<(), Problem> {
        let first = &tokens[0];
        let mut cursor = Cursor::new(&tokens[1..], first.end_column, ANY_EXPECT_USAGE);
        let what = cursor.word("what to expect")?;
        cursor.usage = expect_usage(&what.text);
        let expect = match what.text.as_str() {
            "requests" => Expect::Requests {
                endpoint: endpoint(cursor.word("an endpoint")?)?,
                cmp: cmp(cursor.word("a comparison")?)?,
                count: whole_number(cursor.word("a count")?, "count")?,
            },
            "events" => {
                let token = cursor.word("a thread name or *")?;
                let thread = if token.is_word("*") {
                    None
                } else {
                    Some(self.expect_thread(number, token)?)
                };
                Expect::Events {
                    thread,
                    kind: identifier(cursor.word("an event kind")?, "event kind")?,
                    cmp: cmp(cursor.word("a comparison")?)?,
                    count: whole_number(cursor.word("a count")?, "count")?,
                }
            }
            "event" => Expect::EventText {
                thread: self.expect_thread(number, cursor.word("a thread name")?)?,
                contains: search_text(cursor.string("the text to look for")?)?,
            },
            "task" => Expect::Task {
                thread: self.expect_thread(number, cursor.word("a thread name")?)?,
                state: choice(
                    cursor.word("current or none")?,
                    "task state",
                    &[("current", TaskExpect::Current), ("none", TaskExpect::None)],
                )?,
            },
            "last_state" => Expect::LastState {
                thread: self.expect_thread(number, cursor.word("a thread name")?)?,
                state: choice(
                    cursor.word("task, null or absent")?,
                    "last state",
                    &[
                        ("task", LastStateExpect::Task),
                        ("null", LastStateExpect::Null),
                        ("absent", LastStateExpect::Absent),
                    ],
                )?,
            },
            "session_state_lines" => Expect::SessionStateLines {
                thread: self.expect_thread(number, cursor.word("a thread name")?)?,
                cmp: cmp(cursor.word("a comparison")?)?,
                count: whole_number(cursor.word("a count")?, "count")?,
            },
            "mark" => Expect::Mark { name: identifier(cursor.word("a mark name")?, "mark name")? },
            "log" => Expect::Log { contains: search_text(cursor.string("the text to look for")?)? },
            "no_log" => {
                Expect::NoLog { contains: search_text(cursor.string("the text to look for")?)? }
            }
            "fail" => Expect::Fail,
            other => {
                return Err(Problem::new(
                    what.column,
                    format!(
                        "unknown expectation {other:?}: expected one of {}",
                        EXPECT_NAMES.join(", ")
                    ),
                ))
            }
        };
        cursor.finish()?;
        self.expects.push(Located { line: number, value: expect });
        Ok(())
    }

    /// A thread name that steps so far have introduced.
    fn existing_thread(&self, token: &Token) -> Result<String, Problem> {
        let name = thread_name(token)?;
        if !self.threads.contains(&name) {
            return Err(does_not_exist(token.column, &name));
        }
        Ok(name)
    }

    /// A thread name that steps so far have not introduced. The caller introduces it once the
    /// rest of the step is valid.
    fn new_thread(&self, token: &Token) -> Result<String, Problem> {
        let name = thread_name(token)?;
        if self.threads.contains(&name) {
            return Err(Problem::new(
                token.column,
                format!("thread {name:?} already exists: use a new name, or resume it"),
            ));
        }
        Ok(name)
    }

    /// A thread named by an expectation, checked in [`Parser::finish`].
    fn expect_thread(&mut self, line: usize, token: &Token) -> Result<String, Problem> {
        let name = thread_name(token)?;
        self.expect_threads.push((line, token.column, name.clone()));
        Ok(name)
    }

    fn finish(self, name: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let at = |line: usize, column: usize, message: String| ScenarioError {
            file: path.to_path_buf(),
            line,
            column,
            message,
        };
        let Some(description) = self.description else {
            let message = if self.steps.is_empty() {
                "empty scenario: a scenario needs a \"description:\" line and at least one step"
            } else {
                "missing \"description:\" line: add one at the top saying what this scenario \
                 checks, e.g. \"description: a revoked identity is replaced on the next turn\""
            };
            return Err(at(1, 1, message.to_string()));
        };
        if self.steps.is_empty() {
            let (line, column) = self.header_keys.get("description").copied().unwrap_or((1, 1));
            return Err(at(
                line,
                column,
                "the scenario has no steps: add at least one, e.g. \"start A\"".to_string(),
            ));
        }
        match (self.header_keys.get("fault_rate"), self.header_keys.get("fault_kinds")) {
            (Some(&(line, column)), None) => {
                return Err(at(
                    line,
                    column,
                    "fault_rate needs a \"fault_kinds:\" line saying which faults to draw, \
                     e.g. \"fault_kinds: timeout status=503\""
                        .to_string(),
                ))
            }
            (None, Some(&(line, column))) => {
                return Err(at(
                    line,
                    column,
                    "fault_kinds needs a \"fault_rate:\" line saying how often each endpoint \
                     fails, e.g. \"fault_rate: model=100\""
                        .to_string(),
                ))
            }
            _ => {}
        }
        for (line, column, thread) in &self.expect_threads {
            if !self.threads.contains(thread) {
                let problem = does_not_exist(*column, thread);
                return Err(at(*line, problem.column, problem.message));
            }
        }
        Ok(Scenario {
            name: name.to_string(),
            path: path.to_path_buf(),
            description,
            config: self.config,
            faults: self.faults,
            steps: self.steps,
            expects: self.expects,
        })
    }
}

/// The tokens of a line, read left to right.
#[derive(Debug)]
struct Cursor<'t> {
    tokens: &'t [Token],
    next: usize,
    /// Where a missing token is reported: just past the last token.
    end_column: usize,
    /// The line's syntax, quoted by messages about missing or extra tokens.
    usage: &'static str,
}

impl<'t> Cursor<'t> {
    /// `empty_column` is where a missing token is reported when there are no tokens at all.
    fn new(tokens: &'t [Token], empty_column: usize, usage: &'static str) -> Cursor<'t> {
        let end_column = tokens.last().map_or(empty_column, |t| t.end_column);
        Cursor { tokens, next: 0, end_column, usage }
    }

    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.next)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let token = self.peek()?;
        self.next += 1;
        Some(token)
    }

    fn missing(&self, what: &str) -> Problem {
        Problem::new(self.end_column, format!("expected {what}: write {}", self.usage))
    }

    /// The next token, which must be a word; `what` names it in messages, with its article.
    fn word(&mut self, what: &str) -> Result<&'t Token, Problem> {
        let token = self.next().ok_or_else(|| self.missing(what))?;
        if token.kind != TokenKind::Word {
            return Err(Problem::new(
                token.column,
                format!("expected {what}, found {}: write {}", token.describe(), self.usage),
            ));
        }
        Ok(token)
    }

    /// The next token, which must be a quoted string.
    fn string(&mut self, what: &str) -> Result<&'t Token, Problem> {
        let what = format!("{what} in double quotes");
        let token = self.next().ok_or_else(|| self.missing(&what))?;
        if token.kind != TokenKind::Str {
            return Err(Problem::new(
                token.column,
                format!("expected {what}, found {}: write {}", token.describe(), self.usage),
            ));
        }
        Ok(token)
    }

    /// The next token, which must be this word.
    fn keyword(&mut self, keyword: &str) -> Result<(), Problem> {
        match self.next() {
            Some(token) if token.is_word(keyword) => Ok(()),
            Some(token) => Err(Problem::new(
                token.column,
                format!("expected {keyword:?}, found {}: write {}", token.describe(), self.usage),
            )),
            None => Err(self.missing(&format!("{keyword:?}"))),
        }
    }

    /// Checks that every token has been read.
    fn finish(&self) -> Result<(), Problem> {
        match self.peek() {
            Some(token) => Err(Problem::new(
                token.column,
                format!(
                    "unexpected {} at the end of the line: write {}",
                    token.describe(),
                    self.usage
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Splits a `key: value` line: the first word, made of letters, digits, `_` and `-`, directly
/// followed by a colon.
fn header_line(line: &str) -> Option<HeaderLine<'_>> {
    let rest = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - rest.len();
    let key_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    if key_len == 0 || !rest[key_len..].starts_with(':') {
        return None;
    }
    // The indent and the key are ASCII, so their byte lengths are their widths in columns.
    Some(HeaderLine {
        key: &rest[..key_len],
        column: indent + 1,
        value: &rest[key_len + 1..],
        value_column: indent + key_len + 2,
    })
}

/// The value of `description:`: free text up to a comment, or one quoted string (for text that
/// holds `#`, starts with a quote, or has spaces at either end).
fn description(value: &str, value_column: usize) -> Result<String, Problem> {
    let trimmed = value.trim_start_matches([' ', '\t']);
    let column = value_column + (value.len() - trimmed.len());
    let text = if trimmed.starts_with('"') {
        let tokens = lex(trimmed, column)?;
        let mut cursor = Cursor::new(&tokens, column, "description: \"<text>\"");
        let text = cursor.string("the description")?.text.clone();
        cursor.finish()?;
        text
    } else {
        let end = trimmed.find('#').unwrap_or(trimmed.len());
        trimmed[..end].trim_end_matches([' ', '\t']).to_string()
    };
    if text.is_empty() {
        return Err(Problem::new(
            column,
            "the description is empty: say in a sentence what this scenario checks",
        ));
    }
    Ok(text)
}

fn does_not_exist(column: usize, thread: &str) -> Problem {
    Problem::new(
        column,
        format!("thread {thread:?} does not exist: start, resume or fork it first"),
    )
}

fn step_usage(step: &str) -> &'static str {
    match step {
        "start" => "start <thread>",
        "resume" => "resume <thread> [from \"<rollout file>\" | from_thread <other>]",
        "fork" => "fork <child> from <parent>",
        "turn" => "turn <thread> [\"<text>\"]",
        "submit" => "submit <thread> [\"<text>\"]",
        "advance" => "advance <duration> | advance to_expiry [<signed duration>], e.g. advance 30s",
        "settle" => "settle",
        "rotate_identity" => "rotate_identity",
        "expire_identity" => "expire_identity",
        "revoke_identity" => "revoke_identity",
        "auth" => "auth chatgpt account=<id> [user=<id>] | auth api_key | auth none",
        "crash" => "crash [on_append <thread> | on_response <endpoint>]",
        "restart" => {
            "restart [flag=on|off] [expiry=reacquire|as_shipped] [persist_task=true|false]"
        }
        "heal" => "heal",
        "damage" => edges::DAMAGE_USAGE,
        "on" => edges::ON_USAGE,
        _ => "",
    }
}

fn expect_usage(what: &str) -> &'static str {
    match what {
        "requests" => "expect requests <endpoint> <cmp> <count>",
        "events" => "expect events <thread|*> <kind> <cmp> <count>",
        "event" => "expect event <thread> \"<text>\"",
        "task" => "expect task <thread> current | none",
        "last_state" => "expect last_state <thread> task | null | absent",
        "session_state_lines" => "expect session_state_lines <thread> <cmp> <count>",
        "mark" => "expect mark <name>",
        "log" => "expect log \"<text>\"",
        "no_log" => "expect no_log \"<text>\"",
        "fail" => "expect fail",
        _ => ANY_EXPECT_USAGE,
    }
}

/// `[A-Za-z][A-Za-z0-9_-]*`
fn thread_name(token: &Token) -> Result<String, Problem> {
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
fn identifier(token: &Token, what: &str) -> Result<String, Problem> {
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
fn account_id(token: &Token, what: &str) -> Result<String, Problem> {
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
fn search_text(token: &Token) -> Result<String, Problem> {
    if token.text.is_empty() {
        return Err(Problem::new(
            token.column,
            "the text to look for is empty: write part of the message",
        ));
    }
    Ok(token.text.clone())
}

/// A whole number written in decimal digits only (no sign).
fn whole_number<T: FromStr>(token: &Token, what: &str) -> Result<T, Problem> {
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

/// One or more `<digits><unit>` groups, units `ms`, `s`, `m`, `h`, `d`, in milliseconds.
fn duration(token: &Token) -> Result<u64, Problem> {
    let text = &token.text;
    if text.starts_with('-') {
        return Err(Problem::new(token.column, "durations cannot be negative"));
    }
    let invalid = || {
        Problem::new(
            token.column,
            format!(
                "invalid duration {text:?}: write a number and a unit (ms, s, m, h or d), \
                 e.g. 250ms, 15s or 1h30m"
            ),
        )
    };
    let too_large = || Problem::new(token.column, format!("the duration {text} is too large"));
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text.as_str();
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (amount, tail) = rest.split_at(digits);
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

/// `<min>..<max>`, both durations, `min <= max`.
fn latency(token: &Token) -> Result<(u64, u64), Problem> {
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

fn endpoint(token: &Token) -> Result<Endpoint, Problem> {
    Endpoint::from_name(&token.text).ok_or_else(|| {
        let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        Problem::new(
            token.column,
            format!("unknown endpoint {:?}: expected one of {}", token.text, names.join(", ")),
        )
    })
}

fn cmp(token: &Token) -> Result<Cmp, Problem> {
    Cmp::ALL.into_iter().find(|c| c.symbol() == token.text).ok_or_else(|| {
        let symbols: Vec<&str> = Cmp::ALL.iter().map(|c| c.symbol()).collect();
        Problem::new(
            token.column,
            format!("unknown comparison {:?}: expected one of {}", token.text, symbols.join(", ")),
        )
    })
}

/// One word out of a fixed set.
fn choice<T: Copy>(token: &Token, what: &str, options: &[(&str, T)]) -> Result<T, Problem> {
    if let Some((_, value)) = options.iter().find(|(name, _)| *name == token.text) {
        return Ok(*value);
    }
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    Err(Problem::new(
        token.column,
        format!("unknown {what} {:?}: expected one of {}", token.text, names.join(", ")),
    ))
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

/// `chatgpt account=<id> [user=<id>]`, `api_key` or `none`.
fn auth(cursor: &mut Cursor<'_>) -> Result<AuthSpec, Problem> {
    let token = cursor.word("an auth kind")?;
    match token.text.as_str() {
        "none" => return Ok(AuthSpec::None),
        "api_key" => return Ok(AuthSpec::ApiKey),
        "chatgpt" => {}
        other => {
            return Err(Problem::new(
                token.column,
                format!("unknown auth {other:?}: expected one of chatgpt, api_key, none"),
            ))
        }
    }
    let mut account = None;
    let mut user = None;
    while let Some(token) = cursor.next() {
        let pair = match token.kind {
            TokenKind::Word => token.text.split_once('='),
            TokenKind::Str => None,
        };
        let (slot, what) = match pair {
            Some(("account", _)) => (&mut account, "account id"),
            Some(("user", _)) => (&mut user, "user id"),
            _ => {
                return Err(Problem::new(
                    token.column,
                    format!(
                        "expected account=<id> or user=<id>, found {}: write {}",
                        token.describe(),
                        cursor.usage
                    ),
                ))
            }
        };
        if slot.is_some() {
            return Err(Problem::new(token.column, format!("the {what} is given twice")));
        }
        let eq = token.text.find('=').unwrap_or(token.text.len());
        *slot = Some(account_id(&token.tail(eq + 1), what)?);
    }
    let account = account.ok_or_else(|| cursor.missing("account=<id>"))?;
    Ok(AuthSpec::ChatGpt { account, user })
}

/// `flag=on expiry=as_shipped persist_task=false`, each at most once, all optional.
fn config_change(cursor: &mut Cursor<'_>) -> Result<ConfigChange, Problem> {
    let mut change = ConfigChange::default();
    while let Some(token) = cursor.next() {
        let pair = match token.kind {
            TokenKind::Word => token.text.split_once('='),
            TokenKind::Str => None,
        };
        let twice = |set: bool, key: &str| {
            if set {
                Err(Problem::new(token.column, format!("{key} is given twice")))
            } else {
                Ok(())
            }
        };
        let value = token.tail(token.text.find('=').map_or(token.text.len(), |i| i + 1));
        match pair {
            Some(("flag", _)) => {
                twice(change.flag.is_some(), "flag")?;
                change.flag = Some(choice(&value, "flag value", &[("on", true), ("off", false)])?);
            }
            Some(("expiry", _)) => {
                twice(change.expiry.is_some(), "expiry")?;
                change.expiry = Some(choice(
                    &value,
                    "expiry policy",
                    &[("reacquire", Expiry::Reacquire), ("as_shipped", Expiry::AsShipped)],
                )?);
            }
            Some(("persist_task", _)) => {
                twice(change.persist_task.is_some(), "persist_task")?;
                change.persist_task =
                    Some(choice(&value, "value", &[("true", true), ("false", false)])?);
            }
            _ => {
                return Err(Problem::new(
                    token.column,
                    format!(
                        "expected flag=, expiry= or persist_task=, found {}: write {}",
                        token.describe(),
                        cursor.usage
                    ),
                ))
            }
        }
    }
    Ok(change)
}

fn fault_rates(cursor: &mut Cursor<'_>) -> Result<BTreeMap<Endpoint, u16>, Problem> {
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

fn fault_kinds(cursor: &mut Cursor<'_>) -> Result<Vec<FaultKind>, Problem> {
    let mut kinds = Vec::new();
    while cursor.peek().is_some() {
        kinds.push(fault_kind(cursor)?);
    }
    if kinds.is_empty() {
        return Err(cursor.missing("a fault kind"));
    }
    Ok(kinds)
}
