//! Splitting one line of a scenario into tokens.
//!
//! A token is a word (a run of characters up to a space, a tab, a quote or `#`) or a double-quoted
//! string. `#` outside a string starts a comment that runs to the end of the line. Columns count
//! characters, not bytes, so they match what an editor shows.

/// A problem on the current line: the parser adds the file and line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    /// The 1-based column of the offending token.
    pub(super) column: usize,
    /// What is wrong and what to do.
    pub(super) message: String,
}

impl Problem {
    pub(super) fn new(column: usize, message: impl Into<String>) -> Problem {
        Problem { column, message: message.into() }
    }
}

/// Whether a token was quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TokenKind {
    Word,
    Str,
}

/// One token of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    /// The word, or the string's content with its escapes resolved.
    pub(super) text: String,
    /// The 1-based column of the token's first character (the opening quote of a string).
    pub(super) column: usize,
    /// The 1-based column just past the token's last character.
    pub(super) end_column: usize,
}

impl Token {
    /// Whether this is a word with exactly this text.
    pub(super) fn is_word(&self, text: &str) -> bool {
        self.kind == TokenKind::Word && self.text == text
    }

    /// The part of a word from byte `start` on, as a token with its own column, so a problem
    /// inside a word such as `account=x` points at the right character.
    pub(super) fn tail(&self, start: usize) -> Token {
        debug_assert_eq!(self.kind, TokenKind::Word);
        let column = self.column + self.text[..start].chars().count();
        Token {
            kind: TokenKind::Word,
            text: self.text[start..].to_string(),
            column,
            ..self.clone()
        }
    }

    /// The part of a word before byte `end`.
    pub(super) fn head(&self, end: usize) -> Token {
        debug_assert_eq!(self.kind, TokenKind::Word);
        let end_column = self.column + self.text[..end].chars().count();
        Token { text: self.text[..end].to_string(), end_column, ..self.clone() }
    }

    /// The token as an error message quotes it.
    pub(super) fn describe(&self) -> String {
        match self.kind {
            TokenKind::Word => format!("{:?}", self.text),
            TokenKind::Str => format!("the string {:?}", self.text),
        }
    }
}

/// Splits `text` into tokens; `first_column` is the column of its first character in the line.
pub(super) fn lex(text: &str, first_column: usize) -> Result<Vec<Token>, Problem> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut column = first_column;
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
                column += 1;
            }
            '#' => break,
            '"' => {
                let start = column;
                chars.next();
                column += 1;
                let text = string(&mut chars, &mut column, start)?;
                tokens.push(Token {
                    kind: TokenKind::Str,
                    text,
                    column: start,
                    end_column: column,
                });
            }
            _ => {
                let start = column;
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '\t' | '"' | '#') {
                        break;
                    }
                    text.push(c);
                    chars.next();
                    column += 1;
                }
                tokens.push(Token {
                    kind: TokenKind::Word,
                    text,
                    column: start,
                    end_column: column,
                });
            }
        }
    }
    Ok(tokens)
}

/// The rest of a string whose opening quote (at `start`) has been consumed.
fn string(
    chars: &mut impl Iterator<Item = char>,
    column: &mut usize,
    start: usize,
) -> Result<String, Problem> {
    let unterminated = || Problem::new(start, "unterminated string: add the closing \"");
    let mut text = String::new();
    loop {
        let c = chars.next().ok_or_else(unterminated)?;
        *column += 1;
        match c {
            '"' => return Ok(text),
            '\\' => {
                let escape = chars.next().ok_or_else(unterminated)?;
                text.push(match escape {
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    't' => '\t',
                    other => {
                        return Err(Problem::new(
                            *column - 1,
                            format!(
                                "unknown escape \"\\{other}\" in a string: use \\\" \\\\ \\n or \\t"
                            ),
                        ))
                    }
                });
                *column += 1;
            }
            c => text.push(c),
        }
    }
}

/// Writes `text` as a string token that [`lex`] reads back unchanged.
pub(super) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
