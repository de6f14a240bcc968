//! Steps: what the scenario drives, in order. The steps that reach the edges are read in
//! [`edges`](super::edges).

use std::path::PathBuf;

use super::cursor::Cursor;
use super::edges::{damage_usage, on_usage};
use super::options::{auth, auth_usage, config_change, restart_usage};
use super::values::{endpoint, thread_name, whole_number};
use super::{find, names, usages, Keyword, Parser, Usage};
use crate::scenario::lex::{Problem, Token, TokenKind};
use crate::scenario::{CrashPoint, Located, ResumeSource, Step};

use Usage::{Built, Fixed};

/// Reads a step's line after its keyword.
type StepParser = fn(&mut Parser, &mut Cursor<'_>) -> Result<Step, Problem>;

/// Steps, in the order error messages list them.
pub(super) const STEPS: &[Keyword<StepParser>] = &[
    Keyword { name: "start", usage: Fixed("start <thread>"), parse: Parser::start },
    Keyword {
        name: "resume",
        usage: Fixed("resume <thread> [from \"<rollout file>\" | from_thread <other>]"),
        parse: Parser::resume,
    },
    Keyword { name: "fork", usage: Fixed("fork <child> from <parent>"), parse: Parser::fork },
    Keyword {
        name: "turn",
        usage: Fixed("turn <thread> [\"<text>\"]"),
        parse: |parser, cursor| parser.turn(cursor, true),
    },
    Keyword {
        name: "submit",
        usage: Fixed("submit <thread> [\"<text>\"]"),
        parse: |parser, cursor| parser.turn(cursor, false),
    },
    Keyword { name: "compact", usage: Fixed("compact <thread>"), parse: Parser::compact },
    Keyword {
        name: "rollback",
        usage: Fixed("rollback <thread> <turns>, e.g. rollback A 1"),
        parse: Parser::rollback,
    },
    Keyword {
        name: "advance",
        usage: Fixed(
            "advance <duration> | advance to_expiry [<signed duration>], e.g. advance 30s",
        ),
        parse: Parser::advance,
    },
    Keyword { name: "settle", usage: Fixed("settle"), parse: |_, _| Ok(Step::Settle) },
    Keyword {
        name: "rotate_identity",
        usage: Fixed("rotate_identity"),
        parse: |_, _| Ok(Step::RotateIdentity),
    },
    Keyword {
        name: "expire_identity",
        usage: Fixed("expire_identity"),
        parse: |_, _| Ok(Step::ExpireIdentity),
    },
    Keyword {
        name: "revoke_identity",
        usage: Fixed("revoke_identity"),
        parse: |_, _| Ok(Step::RevokeIdentity),
    },
    Keyword {
        name: "auth",
        usage: Built(|| auth_usage("auth ")),
        parse: |_, cursor| Ok(Step::Auth(auth(cursor)?)),
    },
    Keyword {
        name: "crash",
        usage: Built(|| format!("crash [{}]", usages(CRASH_POINTS).join(" | "))),
        parse: |parser, cursor| Ok(Step::Crash(parser.crash(cursor)?)),
    },
    Keyword {
        name: "restart",
        usage: Built(restart_usage),
        parse: |_, cursor| Ok(Step::Restart(config_change(cursor)?)),
    },
    Keyword { name: "heal", usage: Fixed("heal"), parse: |_, _| Ok(Step::Heal) },
    Keyword { name: "damage", usage: Built(damage_usage), parse: Parser::damage },
    Keyword { name: "on", usage: Built(on_usage), parse: Parser::on },
];

/// Reads a crash point after its keyword.
type CrashParser = fn(&Parser, &mut Cursor<'_>) -> Result<CrashPoint, Problem>;

/// Where `crash` kills the process, besides right away.
const CRASH_POINTS: &[Keyword<CrashParser>] = &[
    Keyword {
        name: "on_append",
        usage: Fixed("on_append <thread>"),
        parse: |parser, cursor| {
            Ok(CrashPoint::OnAppend(parser.existing_thread(cursor.word("a thread name")?)?))
        },
    },
    Keyword {
        name: "on_response",
        usage: Fixed("on_response <endpoint>"),
        parse: |_, cursor| Ok(CrashPoint::OnResponse(endpoint(cursor.word("an endpoint")?)?)),
    },
];

impl Parser {
    pub(super) fn step(&mut self, number: usize, tokens: &[Token]) -> Result<(), Problem> {
        let first = &tokens[0];
        let Some(keyword) = find(STEPS, &first.text) else {
            return Err(Problem::new(
                first.column,
                format!(
                    "unknown step {:?}: expected one of {} (or a fault or expect line)",
                    first.text,
                    names(STEPS).join(", ")
                ),
            ));
        };
        let mut cursor = Cursor::new(&tokens[1..], first.end_column, keyword.usage.text());
        let step = (keyword.parse)(self, &mut cursor)?;
        cursor.finish()?;
        self.steps.push(Located { line: number, value: step });
        Ok(())
    }

    fn start(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let thread = self.new_thread(cursor.word("a thread name")?)?;
        self.threads.push(thread.clone());
        Ok(Step::Start { thread })
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

    fn fork(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let child = self.new_thread(cursor.word("the new thread's name")?)?;
        cursor.keyword("from")?;
        let parent = self.existing_thread(cursor.word("the parent thread")?)?;
        self.threads.push(child.clone());
        Ok(Step::Fork { child, parent })
    }

    /// `turn` (`wait`) or `submit`: a thread and an optional text.
    fn turn(&mut self, cursor: &mut Cursor<'_>, wait: bool) -> Result<Step, Problem> {
        let thread = self.existing_thread(cursor.word("a thread name")?)?;
        let text = match cursor.peek() {
            Some(token) if token.kind == TokenKind::Str => {
                cursor.next();
                token.text.clone()
            }
            _ => "hello".to_string(),
        };
        Ok(Step::Turn { thread, text, wait })
    }

    fn compact(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let thread = self.existing_thread(cursor.word("a thread name")?)?;
        Ok(Step::Compact { thread })
    }

    fn rollback(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let thread = self.existing_thread(cursor.word("a thread name")?)?;
        let turns = whole_number(cursor.word("how many turns to roll back")?, "a number of turns")?;
        Ok(Step::Rollback { thread, turns })
    }

    fn crash(&self, cursor: &mut Cursor<'_>) -> Result<CrashPoint, Problem> {
        let Some(token) = cursor.next() else {
            return Ok(CrashPoint::Now);
        };
        match find(CRASH_POINTS, &token.text).filter(|_| token.kind == TokenKind::Word) {
            Some(point) => (point.parse)(self, cursor),
            None => Err(Problem::new(
                token.column,
                format!(
                    "unknown crash point {}: expected {}, or nothing to crash now",
                    token.describe(),
                    usages(CRASH_POINTS).join(", ")
                ),
            )),
        }
    }
}
