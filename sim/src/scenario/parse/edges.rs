//! The steps that reach the edges: `advance to_expiry [<offset>]`, `resume <thread> from_thread
//! <other>`, `damage <thread> <kind>` and `on <endpoint> <moment> <world step>`. Same checks and
//! the same `line:column` messages as every other step.

use super::cursor::Cursor;
use super::options::auth;
use super::values::{duration, endpoint, thread_name};
use super::{either, find, names, usages, Keyword, Parser, Usage};
use crate::damage::DamageKind;
use crate::scenario::lex::{Problem, Token};
use crate::scenario::{Moment, ResumeSource, Step, WorldStep};

use Usage::Fixed;

/// Reads a world step after its keyword.
type WorldParser = fn(&mut Cursor<'_>) -> Result<WorldStep, Problem>;

/// What an `on` arm changes in the world when it fires.
const WORLD_STEPS: &[Keyword<WorldParser>] = &[
    Keyword {
        name: "rotate_identity",
        usage: Fixed("rotate_identity"),
        parse: |_| Ok(WorldStep::RotateIdentity),
    },
    Keyword {
        name: "expire_identity",
        usage: Fixed("expire_identity"),
        parse: |_| Ok(WorldStep::ExpireIdentity),
    },
    Keyword {
        name: "revoke_identity",
        usage: Fixed("revoke_identity"),
        parse: |_| Ok(WorldStep::RevokeIdentity),
    },
    Keyword {
        name: "auth",
        usage: Fixed("auth <auth>"),
        parse: |cursor| Ok(WorldStep::Auth(auth(cursor)?)),
    },
];

fn damage_kinds() -> Vec<&'static str> {
    DamageKind::ALL.iter().map(|k| k.name()).collect()
}

fn moments() -> Vec<&'static str> {
    Moment::ALL.iter().map(|m| m.name()).collect()
}

/// The usage of `damage`, with every damage kind.
pub(super) fn damage_usage() -> String {
    format!("damage <thread> <kind>, where <kind> is one of {}", damage_kinds().join(", "))
}

/// The usage of `on`, with every moment and world step.
pub(super) fn on_usage() -> String {
    format!("on <endpoint> {} {}", moments().join("|"), usages(WORLD_STEPS).join(" | "))
}

impl Parser {
    /// `advance <duration>` or `advance to_expiry [<signed duration>]`.
    pub(super) fn advance(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let token = cursor.word("a duration")?;
        if !token.is_word("to_expiry") {
            return Ok(Step::Advance { ms: duration(token)? });
        }
        if cursor.peek().is_none() {
            return Ok(Step::AdvanceToExpiry { offset_ms: 0 });
        }
        let offset = cursor.word("an offset such as -1ms or +1ms")?;
        Ok(Step::AdvanceToExpiry { offset_ms: signed_duration(offset)? })
    }

    /// `resume <thread> from_thread <other>`, with `<thread>` read and `from_thread` next.
    pub(super) fn resume_from_thread(
        &mut self,
        thread: &Token,
        cursor: &mut Cursor<'_>,
    ) -> Result<Step, Problem> {
        let name = thread_name(thread)?;
        cursor.keyword("from_thread")?;
        let other_token = cursor.word("the thread whose rollout is copied")?;
        let other = self.existing_thread(other_token)?;
        if other == name {
            return Err(Problem::new(
                other_token.column,
                format!("thread {name:?} cannot resume from a copy of its own rollout: write `resume {name}`"),
            ));
        }
        if !self.threads.contains(&name) {
            self.threads.push(name.clone());
        }
        Ok(Step::Resume { thread: name, from: ResumeSource::Thread(other) })
    }

    /// `damage <thread> <kind>`.
    pub(super) fn damage(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let thread = self.existing_thread(cursor.word("a thread name")?)?;
        let token = cursor.word("a damage kind")?;
        let kind = DamageKind::from_name(&token.text).ok_or_else(|| {
            Problem::new(
                token.column,
                format!(
                    "unknown damage kind {:?}: expected one of {}",
                    token.text,
                    damage_kinds().join(", ")
                ),
            )
        })?;
        Ok(Step::Damage { thread, kind })
    }

    /// `on <endpoint> <moment> <world step>`.
    pub(super) fn on(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let endpoint = endpoint(cursor.word("an endpoint")?)?;
        let token = cursor.word(&format!("a moment ({})", either(&moments())))?;
        let moment =
            Moment::ALL.into_iter().find(|m| token.is_word(m.name())).ok_or_else(|| {
                Problem::new(
                    token.column,
                    format!(
                        "unknown moment {}: expected one of {}",
                        token.describe(),
                        moments().join(", ")
                    ),
                )
            })?;
        let token = cursor.word("a world step")?;
        let Some(world) = find(WORLD_STEPS, &token.text) else {
            return Err(Problem::new(
                token.column,
                format!(
                    "unknown world step {:?}: expected one of {}",
                    token.text,
                    names(WORLD_STEPS).join(", ")
                ),
            ));
        };
        let world = (world.parse)(cursor)?;
        Ok(Step::On { endpoint, moment, world })
    }
}

/// `<duration>`, `+<duration>` or `-<duration>`, in signed milliseconds.
fn signed_duration(token: &Token) -> Result<i64, Problem> {
    let (sign, rest) = match token.text.as_bytes().first() {
        Some(b'-') => (-1, token.tail(1)),
        Some(b'+') => (1, token.tail(1)),
        _ => (1, token.clone()),
    };
    if rest.text.is_empty() {
        return Err(Problem::new(
            token.column,
            format!(
                "expected a duration after the sign, e.g. -1ms or +1ms, found {:?}",
                token.text
            ),
        ));
    }
    let ms = i64::try_from(duration(&rest)?).map_err(|_| {
        Problem::new(token.column, format!("the offset {} is too large", token.text))
    })?;
    Ok(sign * ms)
}
