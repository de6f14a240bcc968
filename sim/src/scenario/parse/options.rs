//! The words chosen from a fixed set (`on | off`, an expiry policy, a task state...), auth
//! (`chatgpt account=<id>`, `api_key`, `none`) and the `key=value` changes of `restart`, which
//! the header and the steps share.

use agentsim_core::ExpiryPolicy;

use super::cursor::Cursor;
use super::values::account_id;
use super::{either, find, names, usages, Keyword, Usage};
use crate::scenario::lex::{Problem, Token, TokenKind};
use crate::scenario::{AuthSpec, ConfigChange, InitialIdentity, LastStateExpect, TaskExpect};

use Usage::{Built, Fixed};

/// A word out of a fixed set and the value it stands for, in the order messages list them.
type Choices<T> = &'static [(&'static str, T)];

pub(super) const EXPIRIES: Choices<ExpiryPolicy> =
    &[("reacquire", ExpiryPolicy::Reacquire), ("as_shipped", ExpiryPolicy::AsShipped)];
pub(super) const TRUE_FALSE: Choices<bool> = &[("true", true), ("false", false)];
pub(super) const FLAG_VALUES: Choices<bool> = &[("on", true), ("off", false)];
pub(super) const INITIAL_IDENTITIES: Choices<InitialIdentity> =
    &[("none", InitialIdentity::None), ("warm", InitialIdentity::Warm)];
pub(super) const TASK_STATES: Choices<TaskExpect> =
    &[("current", TaskExpect::Current), ("none", TaskExpect::None)];
pub(super) const LAST_STATES: Choices<LastStateExpect> = &[
    ("task", LastStateExpect::Task),
    ("null", LastStateExpect::Null),
    ("absent", LastStateExpect::Absent),
];

/// The words of a fixed set.
pub(super) fn choice_names<T>(options: Choices<T>) -> Vec<&'static str> {
    options.iter().map(|(name, _)| *name).collect()
}

/// One word out of a fixed set.
pub(super) fn choice<T: Copy>(
    token: &Token,
    what: &str,
    options: &[(&str, T)],
) -> Result<T, Problem> {
    if let Some((_, value)) = options.iter().find(|(name, _)| *name == token.text) {
        return Ok(*value);
    }
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    Err(Problem::new(
        token.column,
        format!("unknown {what} {:?}: expected one of {}", token.text, names.join(", ")),
    ))
}

/// The next word, out of a fixed set; a missing one is asked for as `a, b or c`.
pub(super) fn pick<T: Copy>(
    cursor: &mut Cursor<'_>,
    what: &str,
    options: Choices<T>,
) -> Result<T, Problem> {
    choice(cursor.word(&either(&choice_names(options)))?, what, options)
}

/// Reads an auth after its kind.
type AuthParser = fn(&mut Cursor<'_>) -> Result<AuthSpec, Problem>;

/// The kinds of auth, after `auth` (a step or a world step) or `auth:` (the header).
const AUTH_KINDS: &[Keyword<AuthParser>] = &[
    Keyword { name: "chatgpt", usage: Fixed("chatgpt account=<id> [user=<id>]"), parse: chatgpt },
    Keyword { name: "api_key", usage: Fixed("api_key"), parse: |_| Ok(AuthSpec::ApiKey) },
    Keyword { name: "none", usage: Fixed("none"), parse: |_| Ok(AuthSpec::None) },
];

/// Every kind of auth, each written after `prefix`: `auth chatgpt ... | auth api_key | ...`.
pub(super) fn auth_usage(prefix: &str) -> String {
    let kinds: Vec<String> =
        usages(AUTH_KINDS).iter().map(|usage| format!("{prefix}{usage}")).collect();
    kinds.join(" | ")
}

/// `chatgpt account=<id> [user=<id>]`, `api_key` or `none`.
pub(super) fn auth(cursor: &mut Cursor<'_>) -> Result<AuthSpec, Problem> {
    let token = cursor.word("an auth kind")?;
    let Some(kind) = find(AUTH_KINDS, &token.text) else {
        return Err(Problem::new(
            token.column,
            format!(
                "unknown auth {:?}: expected one of {}",
                token.text,
                names(AUTH_KINDS).join(", ")
            ),
        ));
    };
    (kind.parse)(cursor)
}

/// `account=<id> [user=<id>]`, after `chatgpt`.
fn chatgpt(cursor: &mut Cursor<'_>) -> Result<AuthSpec, Problem> {
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

/// Reads the value of a `restart` change (the word after `=`) into the change.
type ChangeParser = fn(&mut ConfigChange, &Token) -> Result<(), Problem>;

/// What `restart` may change, each written `<name>=<value>`, in the order messages list them.
const CONFIG_CHANGES: &[Keyword<ChangeParser>] = &[
    Keyword {
        name: "flag",
        usage: Built(|| format!("flag={}", choice_names(FLAG_VALUES).join("|"))),
        parse: |change, value| {
            change.use_agent_identity = Some(choice(value, "flag value", FLAG_VALUES)?);
            Ok(())
        },
    },
    Keyword {
        name: "expiry",
        usage: Built(|| format!("expiry={}", choice_names(EXPIRIES).join("|"))),
        parse: |change, value| {
            change.expiry = Some(choice(value, "expiry policy", EXPIRIES)?);
            Ok(())
        },
    },
    Keyword {
        name: "persist_task",
        usage: Built(|| format!("persist_task={}", choice_names(TRUE_FALSE).join("|"))),
        parse: |change, value| {
            change.persist_task = Some(choice(value, "value", TRUE_FALSE)?);
            Ok(())
        },
    },
];

/// `restart [flag=on|off] ...`: every change, each optional.
pub(super) fn restart_usage() -> String {
    let changes: Vec<String> =
        usages(CONFIG_CHANGES).iter().map(|usage| format!("[{usage}]")).collect();
    format!("restart {}", changes.join(" "))
}

/// `flag=on expiry=as_shipped persist_task=false`, each at most once, all optional.
pub(super) fn config_change(cursor: &mut Cursor<'_>) -> Result<ConfigChange, Problem> {
    let mut change = ConfigChange::default();
    let mut given: Vec<&str> = Vec::new();
    while let Some(token) = cursor.next() {
        let key = match token.kind {
            TokenKind::Word => token.text.split_once('=').map(|(key, _)| key),
            TokenKind::Str => None,
        };
        let Some(keyword) = key.and_then(|key| find(CONFIG_CHANGES, key)) else {
            let keys: Vec<String> =
                names(CONFIG_CHANGES).iter().map(|name| format!("{name}=")).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            return Err(Problem::new(
                token.column,
                format!(
                    "expected {}, found {}: write {}",
                    either(&keys),
                    token.describe(),
                    cursor.usage
                ),
            ));
        };
        if given.contains(&keyword.name) {
            return Err(Problem::new(token.column, format!("{} is given twice", keyword.name)));
        }
        given.push(keyword.name);
        (keyword.parse)(&mut change, &token.tail(keyword.name.len() + 1))?;
    }
    Ok(change)
}
