//! The steps that reach the edges: `advance to_expiry [<offset>]`, `resume <thread> from_thread
//! <other>`, `damage <thread> <kind>` and `on <endpoint> <moment> <world step>`. Same checks and
//! the same `line:column` messages as every other step.

use super::{auth, duration, endpoint, thread_name, Cursor, Parser};
use crate::damage::DamageKind;
use crate::scenario::lex::{Problem, Token};
use crate::scenario::{Moment, ResumeSource, Step, WorldStep};

pub(super) const DAMAGE_USAGE: &str = "damage <thread> <kind>, where <kind> is one of \
     empty_payload, duplicate_state, reorder_states, crlf, torn_middle, unknown_type, \
     garbage_line, stale_runtime, foreign_task, empty_task_id";
pub(super) const ON_USAGE: &str = "on <endpoint> before|sent|answered rotate_identity | \
     expire_identity | revoke_identity | auth <auth>";

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
            let names: Vec<&str> = DamageKind::ALL.iter().map(|k| k.name()).collect();
            Problem::new(
                token.column,
                format!(
                    "unknown damage kind {:?}: expected one of {}",
                    token.text,
                    names.join(", ")
                ),
            )
        })?;
        Ok(Step::Damage { thread, kind })
    }

    /// `on <endpoint> <moment> <world step>`.
    pub(super) fn on(&mut self, cursor: &mut Cursor<'_>) -> Result<Step, Problem> {
        let endpoint = endpoint(cursor.word("an endpoint")?)?;
        let token = cursor.word("a moment (before, sent or answered)")?;
        let moment =
            Moment::ALL.into_iter().find(|m| token.is_word(m.name())).ok_or_else(|| {
                Problem::new(
                    token.column,
                    format!(
                        "unknown moment {}: expected one of before, sent, answered",
                        token.describe()
                    ),
                )
            })?;
        let token = cursor.word("a world step")?;
        let world = match token.text.as_str() {
            "rotate_identity" => WorldStep::RotateIdentity,
            "expire_identity" => WorldStep::ExpireIdentity,
            "revoke_identity" => WorldStep::RevokeIdentity,
            "auth" => WorldStep::Auth(auth(cursor)?),
            other => {
                return Err(Problem::new(
                    token.column,
                    format!(
                        "unknown world step {other:?}: expected one of rotate_identity, \
                         expire_identity, revoke_identity, auth"
                    ),
                ))
            }
        };
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
