//! Reading a line's tokens left to right, with the messages about a missing, extra or wrong token.

use std::borrow::Cow;

use crate::scenario::lex::{Problem, Token, TokenKind};

/// The tokens of a line, read left to right.
#[derive(Debug)]
pub(super) struct Cursor<'t> {
    tokens: &'t [Token],
    next: usize,
    /// Where a missing token is reported: just past the last token.
    end_column: usize,
    /// The line's syntax, quoted by messages about missing or extra tokens.
    pub(super) usage: Cow<'static, str>,
}

impl<'t> Cursor<'t> {
    /// `empty_column` is where a missing token is reported when there are no tokens at all.
    pub(super) fn new(
        tokens: &'t [Token],
        empty_column: usize,
        usage: impl Into<Cow<'static, str>>,
    ) -> Cursor<'t> {
        let end_column = tokens.last().map_or(empty_column, |t| t.end_column);
        Cursor { tokens, next: 0, end_column, usage: usage.into() }
    }

    pub(super) fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.next)
    }

    pub(super) fn next(&mut self) -> Option<&'t Token> {
        let token = self.peek()?;
        self.next += 1;
        Some(token)
    }

    pub(super) fn missing(&self, what: &str) -> Problem {
        Problem::new(self.end_column, format!("expected {what}: write {}", self.usage))
    }

    /// The next token, which must be a word; `what` names it in messages, with its article.
    pub(super) fn word(&mut self, what: &str) -> Result<&'t Token, Problem> {
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
    pub(super) fn string(&mut self, what: &str) -> Result<&'t Token, Problem> {
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
    pub(super) fn keyword(&mut self, keyword: &str) -> Result<(), Problem> {
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
    pub(super) fn finish(&self) -> Result<(), Problem> {
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
