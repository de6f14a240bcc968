//! Expectations: `expect <what> ...`, what must hold at the end of the run.

use super::cursor::Cursor;
use super::options::{choice_names, pick, LAST_STATES, TASK_STATES};
use super::values::{cmp, endpoint, identifier, search_text, whole_number};
use super::{find, names, Keyword, Parser, Usage};
use crate::scenario::lex::{Problem, Token};
use crate::scenario::{Expect, Located};

use Usage::{Built, Fixed};

/// Reads an expectation after its keyword; the `usize` is the line, for the threads it names.
type ExpectParser = fn(&mut Parser, usize, &mut Cursor<'_>) -> Result<Expect, Problem>;

/// What can follow `expect`, in the order error messages list them.
const EXPECTS: &[Keyword<ExpectParser>] = &[
    Keyword {
        name: "requests",
        usage: Fixed("expect requests <endpoint> <cmp> <count>"),
        parse: |_, _, cursor| {
            Ok(Expect::Requests {
                endpoint: endpoint(cursor.word("an endpoint")?)?,
                cmp: cmp(cursor.word("a comparison")?)?,
                count: whole_number(cursor.word("a count")?, "count")?,
            })
        },
    },
    Keyword {
        name: "events",
        usage: Fixed("expect events <thread|*> <kind> <cmp> <count>"),
        parse: Parser::expect_events,
    },
    Keyword {
        name: "event",
        usage: Fixed("expect event <thread> \"<text>\""),
        parse: |parser, line, cursor| {
            Ok(Expect::EventText {
                thread: parser.expect_thread(line, cursor.word("a thread name")?)?,
                contains: search_text(cursor.string("the text to look for")?)?,
            })
        },
    },
    Keyword {
        name: "task",
        usage: Built(|| format!("expect task <thread> {}", choice_names(TASK_STATES).join(" | "))),
        parse: |parser, line, cursor| {
            Ok(Expect::Task {
                thread: parser.expect_thread(line, cursor.word("a thread name")?)?,
                state: pick(cursor, "task state", TASK_STATES)?,
            })
        },
    },
    Keyword {
        name: "last_state",
        usage: Built(|| {
            format!("expect last_state <thread> {}", choice_names(LAST_STATES).join(" | "))
        }),
        parse: |parser, line, cursor| {
            Ok(Expect::LastState {
                thread: parser.expect_thread(line, cursor.word("a thread name")?)?,
                state: pick(cursor, "last state", LAST_STATES)?,
            })
        },
    },
    Keyword {
        name: "session_state_lines",
        usage: Fixed("expect session_state_lines <thread> <cmp> <count>"),
        parse: |parser, line, cursor| {
            Ok(Expect::SessionStateLines {
                thread: parser.expect_thread(line, cursor.word("a thread name")?)?,
                cmp: cmp(cursor.word("a comparison")?)?,
                count: whole_number(cursor.word("a count")?, "count")?,
            })
        },
    },
    Keyword {
        name: "mark",
        usage: Fixed("expect mark <name>"),
        parse: |_, _, cursor| {
            Ok(Expect::Mark { name: identifier(cursor.word("a mark name")?, "mark name")? })
        },
    },
    Keyword {
        name: "log",
        usage: Fixed("expect log \"<text>\""),
        parse: |_, _, cursor| {
            Ok(Expect::Log { contains: search_text(cursor.string("the text to look for")?)? })
        },
    },
    Keyword {
        name: "no_log",
        usage: Fixed("expect no_log \"<text>\""),
        parse: |_, _, cursor| {
            Ok(Expect::NoLog { contains: search_text(cursor.string("the text to look for")?)? })
        },
    },
    Keyword { name: "fail", usage: Fixed("expect fail"), parse: |_, _, _| Ok(Expect::Fail) },
];

impl Parser {
    pub(super) fn expect(&mut self, number: usize, tokens: &[Token]) -> Result<(), Problem> {
        let first = &tokens[0];
        let any =
            format!("expect <what> ..., where <what> is one of {}", names(EXPECTS).join(", "));
        let mut cursor = Cursor::new(&tokens[1..], first.end_column, any);
        let what = cursor.word("what to expect")?;
        let Some(keyword) = find(EXPECTS, &what.text) else {
            return Err(Problem::new(
                what.column,
                format!(
                    "unknown expectation {:?}: expected one of {}",
                    what.text,
                    names(EXPECTS).join(", ")
                ),
            ));
        };
        cursor.usage = keyword.usage.text();
        let expect = (keyword.parse)(self, number, &mut cursor)?;
        cursor.finish()?;
        self.expects.push(Located { line: number, value: expect });
        Ok(())
    }

    /// `expect events <thread|*> <kind> <cmp> <count>`.
    fn expect_events(&mut self, line: usize, cursor: &mut Cursor<'_>) -> Result<Expect, Problem> {
        let token = cursor.word("a thread name or *")?;
        let thread = if token.is_word("*") { None } else { Some(self.expect_thread(line, token)?) };
        Ok(Expect::Events {
            thread,
            kind: identifier(cursor.word("an event kind")?, "event kind")?,
            cmp: cmp(cursor.word("a comparison")?)?,
            count: whole_number(cursor.word("a count")?, "count")?,
        })
    }
}
