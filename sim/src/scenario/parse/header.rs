//! Header lines, `key: value`: the run's configuration, before the first step.

use super::cursor::Cursor;
use super::fault::{fault_kinds, fault_rates};
use super::options::{
    auth, auth_usage, choice, choice_names, pick, EXPIRIES, FLAG_VALUES, INITIAL_IDENTITIES,
    TRUE_FALSE,
};
use super::values::{duration, latency, whole_number};
use super::{find, names, Keyword, Parser, Usage};
use crate::scenario::lex::{lex, Problem};
use crate::scenario::ScenarioConfig;

/// How a header key's value is read.
#[derive(Clone, Copy)]
enum HeaderValue {
    /// Free text up to a comment, not split into tokens: the description.
    Text,
    /// Tokens, stored into the configuration.
    Config(fn(&mut Cursor<'_>, &mut ScenarioConfig) -> Result<(), Problem>),
}

use HeaderValue::{Config, Text};
use Usage::{Built, Fixed};

/// Header keys, in the order [`Scenario::to_text`](crate::scenario::Scenario::to_text) writes
/// them.
const HEADERS: &[Keyword<HeaderValue>] = &[
    Keyword { name: "description", usage: Fixed("description: \"<text>\""), parse: Text },
    Keyword {
        name: "seed",
        usage: Fixed("seed: <number>"),
        parse: Config(|cursor, config| {
            config.seed = Some(whole_number(cursor.word("a seed")?, "seed")?);
            Ok(())
        }),
    },
    Keyword {
        name: "expiry",
        usage: Built(|| format!("expiry: {}", choice_names(EXPIRIES).join(" | "))),
        parse: Config(|cursor, config| {
            config.expiry = choice(cursor.word("an expiry policy")?, "expiry policy", EXPIRIES)?;
            Ok(())
        }),
    },
    Keyword {
        name: "persist_task",
        usage: Built(|| format!("persist_task: {}", choice_names(TRUE_FALSE).join(" | "))),
        parse: Config(|cursor, config| {
            config.persist_task = pick(cursor, "value", TRUE_FALSE)?;
            Ok(())
        }),
    },
    Keyword {
        name: "flag",
        usage: Built(|| format!("flag: {}", choice_names(FLAG_VALUES).join(" | "))),
        parse: Config(|cursor, config| {
            config.use_agent_identity = pick(cursor, "flag value", FLAG_VALUES)?;
            Ok(())
        }),
    },
    Keyword {
        name: "identity_ttl",
        usage: Fixed("identity_ttl: <duration>, e.g. identity_ttl: 1h"),
        parse: Config(|cursor, config| {
            config.identity_ttl_ms = Some(duration(cursor.word("a duration")?)?);
            Ok(())
        }),
    },
    Keyword {
        name: "identity",
        usage: Built(|| format!("identity: {}", choice_names(INITIAL_IDENTITIES).join(" | "))),
        parse: Config(|cursor, config| {
            config.identity = pick(cursor, "initial identity", INITIAL_IDENTITIES)?;
            Ok(())
        }),
    },
    Keyword {
        name: "auth",
        usage: Built(|| auth_usage("auth: ")),
        parse: Config(|cursor, config| {
            config.auth = auth(cursor)?;
            Ok(())
        }),
    },
    Keyword {
        name: "latency",
        usage: Fixed("latency: <min>..<max>, e.g. latency: 5ms..250ms"),
        parse: Config(|cursor, config| {
            config.latency_ms = latency(cursor.word("a latency range")?)?;
            Ok(())
        }),
    },
    Keyword {
        name: "fault_rate",
        usage: Fixed("fault_rate: <endpoint>=<per mille> ..., e.g. fault_rate: model=100"),
        parse: Config(|cursor, config| {
            config.random_faults.rate_per_mille = fault_rates(cursor)?;
            Ok(())
        }),
    },
    Keyword {
        name: "fault_kinds",
        usage: Fixed("fault_kinds: <kind> ..., e.g. fault_kinds: timeout status=503"),
        parse: Config(|cursor, config| {
            config.random_faults.kinds = fault_kinds(cursor)?;
            Ok(())
        }),
    },
];

/// A `key: value` line, split.
#[derive(Debug)]
pub(super) struct HeaderLine<'a> {
    pub(super) key: &'a str,
    pub(super) column: usize,
    value: &'a str,
    value_column: usize,
}

/// Splits a `key: value` line: the first word, made of letters, digits, `_` and `-`, directly
/// followed by a colon.
pub(super) fn header_line(line: &str) -> Option<HeaderLine<'_>> {
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

impl Parser {
    pub(super) fn header(&mut self, number: usize, header: &HeaderLine<'_>) -> Result<(), Problem> {
        let Some(keyword) = find(HEADERS, header.key) else {
            return Err(Problem::new(
                header.column,
                format!(
                    "unknown header key {:?}: expected one of {}",
                    header.key,
                    names(HEADERS).join(", ")
                ),
            ));
        };
        let key = keyword.name;
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
        match keyword.parse {
            Text => {
                let text = description(header.value, header.value_column, keyword.usage)?;
                self.description = Some(text);
                Ok(())
            }
            Config(parse) => {
                let tokens = lex(header.value, header.value_column)?;
                let mut cursor = Cursor::new(&tokens, header.value_column, keyword.usage.text());
                parse(&mut cursor, &mut self.config)?;
                cursor.finish()
            }
        }
    }
}

/// The value of `description:`: free text up to a comment, or one quoted string (for text that
/// holds `#`, starts with a quote, or has spaces at either end).
fn description(value: &str, value_column: usize, usage: Usage) -> Result<String, Problem> {
    let trimmed = value.trim_start_matches([' ', '\t']);
    let column = value_column + (value.len() - trimmed.len());
    let text = if trimmed.starts_with('"') {
        let tokens = lex(trimmed, column)?;
        let mut cursor = Cursor::new(&tokens, column, usage.text());
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
