//! Ensure (rules 6 to 11 and 18): make sure a thread holds a task of the current identity, one
//! registration in flight per thread, with the attempt bounds of [`crate::limits`].

use super::identity::Identity;
use super::plumbing::task_fields;
use super::{Lifecycle, Pending, RequestFailure};
use crate::config::ExpiryPolicy;
use crate::limits::{IDENTITY_ROUNDS_MAX, REACQUIRE_RETRIES_MAX, TASK_ATTEMPTS_MAX};
use crate::marks;
use crate::output::{EventKind, Failure, Level, ThreadId, TurnId};
use crate::protocol::{self, IdentityError, TaskError};
use crate::rollout::{self, AgentTask};
use crate::time::Timestamp;
use crate::wire::HttpResponse;

#[derive(Debug)]
pub(super) struct EnsureOp {
    /// Numbers the process's ensures, so a driver can count registrations per ensure.
    pub(super) seq: u64,
    waiters: Vec<Waiter>,
    /// New tasks discarded because the identity changed in flight (rule 9).
    discards: u8,
    /// Extra attempts used after a 401 `identity_expired` (rule 18), at most
    /// [`REACQUIRE_RETRIES_MAX`].
    reacquires: u8,
    /// Identities received for this ensure; bounds the loop when they keep arriving unusable.
    identity_rounds: u8,
    phase: EnsurePhase,
}

#[derive(Debug)]
enum EnsurePhase {
    AwaitingIdentity,
    Biscuit { identity: Identity, url: String },
    Register { identity: Identity, url: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Waiter {
    Prewarm,
    Turn(TurnId),
}

impl Lifecycle {
    pub(super) fn ensure(&mut self, now: Timestamp, thread: &ThreadId, waiter: Waiter) {
        if !self.config.use_agent_identity {
            self.resolve_waiter(now, thread, waiter, Ok(None));
            return;
        }
        if let Some(op) = self.thread_mut(thread).ensure.as_mut() {
            op.waiters.push(waiter);
            self.mark(marks::TASK_SINGLE_FLIGHT_JOINED);
            return;
        }
        self.adopt_persisted_if_current(now, thread);
        let current = self.current_runtime(now).map(str::to_owned);
        if let Some(task) = self.thread_mut(thread).cached.clone() {
            if current.as_deref() == Some(task.agent_runtime_id.as_str()) {
                self.mark(marks::CACHED_TASK_REUSED);
                self.log(Level::Debug, "reusing cached agent task", task_fields(thread, &task));
                self.resolve_waiter(now, thread, waiter, Ok(Some(task)));
                return;
            }
            self.clear_cached(now, thread, &task);
        }
        if self.auth.binding().is_none() {
            self.resolve_waiter(now, thread, waiter, Ok(None));
            return;
        }
        let seq = self.next_ensure;
        self.next_ensure += 1;
        self.thread_mut(thread).ensure = Some(EnsureOp {
            seq,
            waiters: vec![waiter],
            discards: 0,
            reacquires: 0,
            identity_rounds: 0,
            phase: EnsurePhase::AwaitingIdentity,
        });
        self.start_attempt(now, thread);
    }

    /// Rule 7: clear the cache only if it still holds `task`, and persist the clear.
    fn clear_cached(&mut self, now: Timestamp, thread: &ThreadId, task: &AgentTask) {
        if self.thread_mut(thread).cached.as_ref() != Some(task) {
            return;
        }
        self.thread_mut(thread).cached = None;
        self.mark(marks::STALE_TASK_CLEARED);
        self.log(
            Level::Info,
            "discarding cached agent task because the registered agent identity changed",
            task_fields(thread, task),
        );
        self.persist(now, thread, None);
    }

    fn start_attempt(&mut self, now: Timestamp, thread: &ThreadId) {
        match self.usable_identity(now).cloned() {
            Some(identity) => {
                let url =
                    protocol::task_register_url(&self.config, &identity.stored.agent_runtime_id);
                self.send_biscuit(Pending::TaskBiscuit(thread.clone()), &url);
                self.op_mut(thread).phase = EnsurePhase::Biscuit { identity, url };
            }
            None if self.auth.binding().is_none() => {
                // Signed out while this ensure ran (a 401 `identity_expired` dropped the identity
                // after a sign-out): no identity can be had, so no task, as when the ensure
                // starts signed out. Waiting would never end: nothing registers without a binding.
                self.finish_ensure(now, thread, Ok(None));
            }
            None => {
                self.op_mut(thread).phase = EnsurePhase::AwaitingIdentity;
                self.require_identity(now);
            }
        }
    }

    /// Threads whose ensure waits for the process's identity registration, in name order.
    pub(super) fn threads_awaiting_identity(&self) -> Vec<ThreadId> {
        self.threads
            .iter()
            .filter(|(_, t)| {
                matches!(t.ensure.as_ref().map(|op| &op.phase), Some(EnsurePhase::AwaitingIdentity))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// An identity arrived for a waiting ensure: attempt with it, or count a round when it is
    /// already unusable so that identities arriving expired cannot loop forever.
    pub(super) fn identity_arrived_for(&mut self, now: Timestamp, thread: &ThreadId) {
        if self.usable_identity(now).is_some() {
            self.start_attempt(now, thread);
            return;
        }
        let op = self.op_mut(thread);
        op.identity_rounds += 1;
        if op.identity_rounds >= IDENTITY_ROUNDS_MAX {
            let url = protocol::identity_register_url(&self.config);
            self.fail_ensure(
                now,
                thread,
                TaskError::Identity(IdentityError::AlreadyExpired { url }),
            );
        } else {
            self.start_attempt(now, thread);
        }
    }

    pub(super) fn task_biscuit_done(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let EnsurePhase::Biscuit { identity, url } =
            std::mem::replace(&mut self.op_mut(thread).phase, EnsurePhase::AwaitingIdentity)
        else {
            unreachable!("a task biscuit is only awaited in the biscuit phase");
        };
        let biscuit = self.read_biscuit(result);
        match biscuit {
            Ok(biscuit) => {
                let request = protocol::task_register_request(
                    &self.config,
                    &identity.stored,
                    &identity.key,
                    &biscuit,
                    now,
                );
                self.send(Pending::TaskRegister(thread.clone()), request);
                self.op_mut(thread).phase = EnsurePhase::Register { identity, url };
            }
            Err(e) => self.fail_ensure(now, thread, TaskError::Biscuit(e)),
        }
    }

    pub(super) fn task_register_done(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let EnsurePhase::Register { identity, url } =
            std::mem::replace(&mut self.op_mut(thread).phase, EnsurePhase::AwaitingIdentity)
        else {
            unreachable!("a task registration is only awaited in the register phase");
        };
        let task = match result {
            Ok(response) => {
                protocol::read_task(&url, &response, &identity.stored, &identity.key, now)
            }
            Err(_) => Err(TaskError::Send { url }),
        };
        match task {
            Ok(task) => self.task_registered(now, thread, &identity, task),
            Err(e) if e.is_identity_expired() => self.identity_refused(now, thread, &identity, e),
            Err(e) => self.fail_ensure(now, thread, e),
        }
    }

    fn task_registered(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        used: &Identity,
        task: AgentTask,
    ) {
        if self.current_runtime(now) != Some(used.stored.agent_runtime_id.as_str()) {
            // Rule 9: the identity changed while the request was in flight.
            self.mark(marks::ROTATION_DISCARDED_NEW_TASK);
            self.log(Level::Info, "discarding newly registered agent task because the registered agent identity changed", task_fields(thread, &task));
            let op = self.op_mut(thread);
            op.discards += 1;
            if op.discards >= TASK_ATTEMPTS_MAX {
                self.mark(marks::ROTATION_GAVE_UP);
                self.finish_ensure(now, thread, Ok(None));
            } else if self.auth.binding().is_none() {
                self.finish_ensure(now, thread, Ok(None));
            } else {
                self.start_attempt(now, thread);
            }
            return;
        }
        self.mark(marks::TASK_REGISTERED);
        self.log(Level::Info, "registered agent task for thread", task_fields(thread, &task));
        self.thread_mut(thread).cached = Some(task.clone());
        self.persist(now, thread, Some(task.clone()));
        self.finish_ensure(now, thread, Ok(Some(task)));
    }

    /// Rules 18 and 19: the backend answered 401 `identity_expired` to a task registration.
    fn identity_refused(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        used: &Identity,
        error: TaskError,
    ) {
        let as_shipped = self.config.expiry == ExpiryPolicy::AsShipped;
        let op = self.op_mut(thread);
        if as_shipped || op.reacquires >= REACQUIRE_RETRIES_MAX {
            if self.config.expiry == ExpiryPolicy::AsShipped {
                self.mark(marks::AS_SHIPPED_REFUSAL_KEPT_IDENTITY);
            }
            self.fail_ensure(now, thread, error);
            return;
        }
        op.reacquires += 1;
        self.mark(marks::REFUSED_IDENTITY_REACQUIRED);
        self.log(
            Level::Warn,
            "agent identity refused as expired; registering a new one",
            vec![
                ("thread", thread.to_string()),
                ("agent_runtime_id", used.stored.agent_runtime_id.clone()),
            ],
        );
        self.drop_identity_if_current(&used.stored.agent_runtime_id);
        self.start_attempt(now, thread);
    }

    pub(super) fn fail_ensure(&mut self, now: Timestamp, thread: &ThreadId, error: TaskError) {
        // Spec section 4: the turn path logs "agent task registration failed"; a prewarm alone
        // logs only its own line (in `resolve_waiter`).
        let op = self.thread_mut(thread).ensure.as_ref();
        if op.is_some_and(|op| op.waiters.iter().any(|w| matches!(w, Waiter::Turn(_)))) {
            self.log_failure(
                Failure::TaskRegistration,
                "agent task registration failed",
                vec![("thread", thread.to_string()), ("error", error.to_string())],
            );
        }
        self.finish_ensure(now, thread, Err(error));
    }

    pub(super) fn finish_ensure(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        result: Result<Option<AgentTask>, TaskError>,
    ) {
        let op = self.thread_mut(thread).ensure.take().expect("an ensure in flight");
        for waiter in op.waiters {
            self.resolve_waiter(now, thread, waiter, result.clone());
        }
    }

    fn resolve_waiter(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        waiter: Waiter,
        result: Result<Option<AgentTask>, TaskError>,
    ) {
        match (waiter, result) {
            (Waiter::Prewarm, Ok(_)) => {}
            (Waiter::Prewarm, Err(error)) => {
                self.mark(marks::PREWARM_FAILED);
                self.log_failure(
                    Failure::Prewarm,
                    "startup agent task prewarm failed; regular turns will retry registration",
                    vec![("thread", thread.to_string()), ("error", error.to_string())],
                );
            }
            (Waiter::Turn(turn), Ok(task)) => self.send_model_request(now, thread, turn, task),
            (Waiter::Turn(turn), Err(error)) => {
                self.mark(marks::TURN_ENSURE_FAILED);
                let message = format!(
                    "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: {error}"
                );
                let failure = Failure::TaskRegistration;
                self.emit(thread, EventKind::Error { turn: Some(turn), failure, message });
                self.end_turn(now, thread, turn);
            }
        }
    }

    /// Rule 10: append `session_state` only when the value changed.
    pub(super) fn persist(&mut self, now: Timestamp, thread: &ThreadId, value: Option<AgentTask>) {
        if !self.config.persist_task {
            return;
        }
        let t = self.thread_mut(thread);
        if t.persisted.clone().flatten() == value {
            return;
        }
        t.persisted = Some(value.clone());
        self.append(now, thread, rollout::session_state(value));
    }

    fn op_mut(&mut self, thread: &ThreadId) -> &mut EnsureOp {
        self.thread_mut(thread).ensure.as_mut().expect("an ensure in flight")
    }
}
