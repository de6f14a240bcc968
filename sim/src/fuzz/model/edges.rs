//! The generator-side model of the edge ops: `advance to_expiry`, resumes from a copy, rollout
//! damage, forks during a prewarm and world changes armed at a request.

use super::{auth_spec, Model};
use crate::damage::DamageKind;
use crate::fuzz::gen::{AuthChoice, Op, WorldChoice};
use crate::scenario::{ResumeSource, Step, WorldStep};

impl Model<'_> {
    /// The step an edge op stands for in the current state, or `None` when it is illegal now.
    pub(super) fn edge_step(&self, op: &Op) -> Option<Step> {
        let up = self.process_up;
        match op {
            Op::AdvanceToExpiry(offset) => {
                Some(Step::AdvanceToExpiry { offset_ms: i64::from(offset.signum()) })
            }
            Op::ResumeFromThread(i, source) => {
                let thread = self.names()[usize::from(*i) % self.names().len()].to_owned();
                let other = Self::pick(&self.with_rollout(), *source)
                    .filter(|_| up && !self.threads.contains_key(&thread))?;
                Some(Step::Resume { thread, from: ResumeSource::Thread(other) })
            }
            Op::Damage(i, kind) => {
                // Only a thread certainly not running: with the process certainly up, `live` is
                // exact; after a `crash`, nothing runs.
                let damageable: Vec<String> = self
                    .threads
                    .iter()
                    .filter(|(_, t)| t.rollout && !t.live)
                    .map(|(n, _)| n.clone())
                    .collect();
                let thread =
                    Self::pick(&damageable, *i).filter(|_| self.process_up || self.process_dead)?;
                Some(Step::Damage { thread, kind: *kind })
            }
            Op::On(endpoint, moment, world) => up.then(|| Step::On {
                endpoint: *endpoint,
                moment: *moment,
                world: match world {
                    WorldChoice::Rotate => WorldStep::RotateIdentity,
                    WorldChoice::Expire => WorldStep::ExpireIdentity,
                    WorldChoice::Revoke => WorldStep::RevokeIdentity,
                    WorldChoice::Auth(choice) => WorldStep::Auth(auth_spec(*choice)),
                },
            }),
            _ => None,
        }
    }

    /// Opens a thread (start or resume), submits a turn on it when it has no rollout yet (so it
    /// has one to fork), and forks it at once, while its prewarm is in flight.
    pub(super) fn fork_during_prewarm(&mut self, i: u8) {
        let name = self.names()[usize::from(i) % self.names().len()].to_owned();
        self.apply(&Op::Open(i));
        let Some(t) = self.threads.get(&name).copied() else { return };
        if !self.process_up || !t.live {
            return;
        }
        if !t.rollout {
            self.push(Step::Turn { thread: name.clone(), text: "hello".into(), wait: false });
        }
        let child = self.names().iter().find(|n| !self.threads.contains_key(**n));
        if let Some(child) = child.map(|c| c.to_string()).filter(|_| self.process_up) {
            self.push(Step::Fork { child, parent: name });
        }
    }

    /// A turn on thread `i`, a restart signed in `away`, the resume of that thread there (its
    /// persisted task is dropped: no identity is current) and a sign-in back home, where the
    /// dropped task is current again and must be adopted with no call (rule 13 **\[ours\]**).
    /// Each part is an ordinary op, skipped when illegal then.
    pub(super) fn resume_away(&mut self, i: u8, away: AuthChoice) {
        let name = self.names()[usize::from(i) % self.names().len()].to_owned();
        self.apply(&Op::Open(i));
        if self.threads.get(&name).is_some_and(|t| t.live) && self.process_up {
            self.push(Step::Turn { thread: name, text: "hello".into(), wait: true });
        }
        self.apply(&Op::Auth(away));
        self.apply(&Op::Restart);
        self.apply(&Op::Open(i));
        self.apply(&Op::Auth(AuthChoice::Home));
    }

    /// Updates the model for a legal edge step (the rest of [`Model::push`]).
    pub(super) fn push_edge(&mut self, step: &Step) {
        match step {
            Step::Damage { kind, .. } => {
                self.damaged = true;
                // These write session_state lines whatever the policies (and copies carry them).
                let writes_state = matches!(
                    kind,
                    DamageKind::EmptyPayload
                        | DamageKind::DuplicateState
                        | DamageKind::StaleRuntime
                        | DamageKind::ForeignTask
                        | DamageKind::EmptyTaskId
                );
                self.ever_persisting |= writes_state;
            }
            Step::On { world, .. } => {
                // Whether and when it fires is unknown: assume the worst of each effect.
                self.world_armed = true;
                match world {
                    WorldStep::ExpireIdentity | WorldStep::RevokeIdentity => {
                        self.tainted = true;
                        self.taint_armed = true;
                    }
                    WorldStep::Auth(_) => self.auth_uncertain = true,
                    WorldStep::RotateIdentity => {}
                }
            }
            _ => {}
        }
    }
}
