//! The parser: one pass over the lines, checking each as it goes, then the checks that need the
//! whole file (a description, at least one step, threads named by expectations).
//!
//! Every check reports the column of the offending token and says what to write instead; the
//! parser never panics, whatever the input.
//!
//! Each keyword family (header keys, steps, expectations and the words that may follow some of
//! them) is one table of [`Keyword`]s: its name list, the usage that messages quote and the
//! dispatch all come from that table, so adding a keyword cannot leave a message behind.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use super::lex::{lex, Problem, Token, TokenKind};
use super::{Expect, Located, Scenario, ScenarioConfig, ScenarioError, Step};
use crate::fault::{FaultRule, RandomFaults};

mod cursor;
mod edges;
mod expect;
mod fault;
mod header;
mod options;
mod steps;
mod values;

use values::thread_name;

/// One keyword of a family: the word, its syntax and what reads the rest of the line.
#[derive(Clone, Copy)]
struct Keyword<P> {
    name: &'static str,
    /// The syntax quoted by messages about a missing, extra or wrong token.
    usage: Usage,
    /// Reads what follows the keyword.
    parse: P,
}

/// A keyword's syntax, as messages quote it.
#[derive(Clone, Copy)]
enum Usage {
    /// Written out.
    Fixed(&'static str),
    /// Built from the tables of the words that may follow, so it lists every one of them.
    Built(fn() -> String),
}

impl Usage {
    fn text(self) -> Cow<'static, str> {
        match self {
            Usage::Fixed(text) => Cow::Borrowed(text),
            Usage::Built(build) => Cow::Owned(build()),
        }
    }
}

/// The keyword of `table` called `name`.
fn find<'k, P>(table: &'k [Keyword<P>], name: &str) -> Option<&'k Keyword<P>> {
    table.iter().find(|keyword| keyword.name == name)
}

/// The names of a family, in table order (the order messages list them).
fn names<P>(table: &[Keyword<P>]) -> Vec<&'static str> {
    table.iter().map(|keyword| keyword.name).collect()
}

/// The usages of a family, in table order.
fn usages<P>(table: &[Keyword<P>]) -> Vec<Cow<'static, str>> {
    table.iter().map(|keyword| keyword.usage.text()).collect()
}

/// `a`, `a or b`, `a, b or c`: the alternatives as a sentence lists them.
fn either(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The step keywords, in the order error messages list them.
pub fn step_names() -> impl Iterator<Item = &'static str> {
    steps::STEPS.iter().map(|keyword| keyword.name)
}

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

/// A standalone fault file (`sim serve --faults`, `POST /admin/faults`): a scenario's fault
/// lines and its random-fault header lines, nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultFile {
    /// The `fault` lines, in file order (the first matching rule wins).
    pub rules: Vec<Located<FaultRule>>,
    /// The random faults of `fault_rate:` and `fault_kinds:`, located at the `fault_kinds:` line;
    /// `None` when the file has neither.
    pub random: Option<Located<RandomFaults>>,
}

/// Parses a fault file: `fault` lines, `fault_rate:` and `fault_kinds:` (both or neither), blank
/// lines and comments, each read exactly as in a scenario. Anything else (a step, an
/// expectation, another header key) is an error at its line and column; `path` is only named in
/// messages.
pub fn parse_faults(path: &Path, text: &str) -> Result<FaultFile, ScenarioError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let at = |line: usize, column: usize, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let mut parser = Parser::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        parser
            .fault_file_line(number, line)
            .map_err(|problem| at(number, problem.column, problem.message))?;
    }
    if let Some((line, column, message)) = parser.unpaired_random_faults() {
        return Err(at(line, column, message));
    }
    let random = parser
        .header_keys
        .get("fault_kinds")
        .map(|&(line, _)| Located { line, value: parser.config.random_faults.clone() });
    Ok(FaultFile { rules: parser.faults, random })
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

impl Parser {
    fn line(&mut self, number: usize, line: &str) -> Result<(), Problem> {
        if let Some(header) = header::header_line(line) {
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

    /// One line of a fault file ([`parse_faults`]).
    fn fault_file_line(&mut self, number: usize, line: &str) -> Result<(), Problem> {
        const HOLDS: &str =
            "a fault file holds only fault lines, \"fault_rate:\" and \"fault_kinds:\"";
        if let Some(header) = header::header_line(line) {
            if !matches!(header.key, "fault_rate" | "fault_kinds") {
                return Err(Problem::new(
                    header.column,
                    format!("{HOLDS}: the header key {:?} belongs in a scenario", header.key),
                ));
            }
            return self.header(number, &header);
        }
        let tokens = lex(line, 1)?;
        match tokens.first() {
            None => Ok(()),
            Some(first) if first.is_word("fault") => self.fault(number, &tokens),
            Some(first) => Err(Problem::new(
                first.column,
                format!(
                    "expected a fault line ({}), found {}: {HOLDS}",
                    fault::FAULT_USAGE,
                    first.describe()
                ),
            )),
        }
    }

    /// The error of a `fault_rate:` without `fault_kinds:` or the other way round, as (line,
    /// column, message).
    fn unpaired_random_faults(&self) -> Option<(usize, usize, String)> {
        match (self.header_keys.get("fault_rate"), self.header_keys.get("fault_kinds")) {
            (Some(&(line, column)), None) => Some((
                line,
                column,
                "fault_rate needs a \"fault_kinds:\" line saying which faults to draw, \
                 e.g. \"fault_kinds: timeout status=503\""
                    .to_string(),
            )),
            (None, Some(&(line, column))) => Some((
                line,
                column,
                "fault_kinds needs a \"fault_rate:\" line saying how often each endpoint \
                 fails, e.g. \"fault_rate: model=100\""
                    .to_string(),
            )),
            _ => None,
        }
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
        let unpaired = self.unpaired_random_faults();
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
        if let Some((line, column, message)) = unpaired {
            return Err(at(line, column, message));
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

fn does_not_exist(column: usize, thread: &str) -> Problem {
    Problem::new(
        column,
        format!("thread {thread:?} does not exist: start, resume or fork it first"),
    )
}
