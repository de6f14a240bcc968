//! The invariants of spec section 5, checked by the simulator after every step and every event.
//! The first violation stops the run; the report names the invariant, the step and the seed.
//!
//! The engine tells the checker what happened, one [`Observation`] at a time, through
//! [`Checker::observe`]; the checks behind it are private and live by concern: `requests.rs`
//! core's requests (in flight, leaving, delivered), `rollouts.rs` the rollout lines and what resume,
//! fork and quiescence must agree on, `events.rs` core's events and the texts of spec section 4,
//! `secrets.rs` invariant 14.

use std::collections::{BTreeMap, BTreeSet};

use agentsim_core::wire::{HttpRequest, HttpResponse};
use agentsim_core::{
    AgentTask, Command, Event, InFlight, Lifecycle, RequestId, RolloutItem, RolloutScan, ThreadId,
    TurnId,
};

use crate::backend::Backend;
use crate::fault::Endpoint;
pub use crate::invariant::{Invariant, Violation};

mod events;
mod requests;
mod rollouts;
mod secrets;
#[cfg(test)]
mod tests;

/// One thing the engine saw happen, for the checks that care about it. Each variant is built
/// where it happens in the loop; [`Checker::observe`] runs the checks in a fixed order.
#[derive(Clone, Copy, Debug)]
pub enum Observation<'a> {
    /// A scenario step begins: violations found from now on name step `index` (1-based).
    Step { index: usize },
    /// The policies of the process that starts next (a `restart` may change them).
    Policies { use_agent_identity: bool, persist_task: bool, reacquire: bool },
    /// A new process started: ensure numbers and what is in flight start again.
    ProcessStarted { generation: u32 },
    /// A turn was submitted.
    TurnSubmitted { thread: &'a ThreadId, turn: TurnId },
    /// The run handed out a secret (an access token, a stored private key).
    Secret(&'a str),
    /// A request is about to leave (invariants 1, 6 and 11).
    Send { request: &'a HttpRequest, endpoint: Option<Endpoint>, what: Option<&'a InFlight> },
    /// A response came back before its timeout: its biscuit is a secret.
    Response(&'a HttpResponse),
    /// A rollout line is about to be written (invariants 1, 4 and 8). `current` is the identity
    /// the world's records say is current (invariant 17), not core's opinion.
    Append {
        current: Option<&'a str>,
        backend: &'a Backend,
        thread: &'a ThreadId,
        item: &'a RolloutItem,
    },
    /// Core emitted an event (invariants 1, 10 and 11, and the texts of spec section 4).
    Event(&'a Event),
    /// Core's commands after one input were all carried out: `touched` are the threads core
    /// reports changed, `answered` the request the input answered (what it was for, its id), if
    /// any (invariants 5, 9 and 10).
    Drained {
        machine: &'a Lifecycle,
        commands: &'a [Command],
        touched: &'a BTreeSet<ThreadId>,
        answered: Option<(Option<&'a InFlight>, RequestId)>,
    },
    /// A thread resumed from `bytes` and its drain is over (invariant 2).
    Resumed {
        thread: &'a ThreadId,
        bytes: &'a [u8],
        scan: &'a RolloutScan,
        current: Option<&'a str>,
        restored: Option<&'a AgentTask>,
        commands: &'a [Command],
    },
    /// A fork copied `bytes` into `thread`'s rollout, and core read them as `scan` (invariant 2).
    Forked { thread: &'a ThreadId, bytes: &'a [u8], scan: &'a RolloutScan },
    /// A `damage` step rewrote `thread`'s rollout to `bytes`.
    Rewritten { thread: &'a ThreadId, bytes: &'a [u8] },
    /// A step is over (invariant 13). `all`: look at every thread, not only those whose verdict
    /// may have changed.
    Quiescent { machine: &'a Lifecycle, current: Option<&'a str>, all: bool },
}

#[derive(Debug, Default)]
struct TurnTrack {
    errors: u32,
    ensure_failed: bool,
    model_sent: bool,
    completed: bool,
}

/// The checker's memory of the run.
#[derive(Debug)]
pub struct Checker {
    use_agent_identity: bool,
    persist_task: bool,
    reacquire: bool,
    /// The first violation, which stops the run.
    pub violation: Option<Violation>,
    /// Secrets that must never appear in any artifact.
    pub secrets: Vec<String>,
    turns: BTreeMap<(ThreadId, TurnId), TurnTrack>,
    persisted: BTreeMap<ThreadId, Option<Option<AgentTask>>>,
    registrations_per_ensure: BTreeMap<(u32, u64), u32>,
    task_biscuit_url: BTreeMap<ThreadId, String>,
    /// The ensure each thread's last task biscuit was for: a new ensure may follow a biscuit that
    /// failed (its retry can be sent while the failure is still being handled).
    task_biscuit_ensure: BTreeMap<ThreadId, u64>,
    generation: u32,
    /// The last task each thread held in the running process, so invariant 13 can tell a task
    /// resume dropped (the rollout may still end with it) from one the process let go of (its
    /// clear must have appended `null`).
    held: BTreeMap<ThreadId, AgentTask>,
    /// Each thread's cached task as of the last event: what an event's changes are judged
    /// against. Kept from the threads core reports changed, so no event scans every thread.
    tasks: BTreeMap<ThreadId, Option<AgentTask>>,
    /// Core's requests in flight, from its sends and the answers delivered.
    in_flight: BTreeMap<RequestId, InFlight>,
    /// The task requests of each thread among them.
    task_requests: BTreeMap<ThreadId, BTreeSet<RequestId>>,
    /// Threads whose quiescent verdict may have changed since the last step: touched, appended
    /// to, resumed or forked. Every thread when the current identity changed.
    dirty: BTreeSet<ThreadId>,
    /// The current identity at the last quiescent check.
    last_current: Option<Option<String>>,
    /// The step running, for the violations the checks find.
    step: usize,
}

impl Checker {
    /// A checker for a run with these policies.
    pub fn new(use_agent_identity: bool, persist_task: bool, reacquire: bool) -> Checker {
        Checker {
            use_agent_identity,
            persist_task,
            reacquire,
            violation: None,
            secrets: Vec::new(),
            turns: BTreeMap::new(),
            persisted: BTreeMap::new(),
            registrations_per_ensure: BTreeMap::new(),
            task_biscuit_url: BTreeMap::new(),
            task_biscuit_ensure: BTreeMap::new(),
            generation: 0,
            held: BTreeMap::new(),
            tasks: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            task_requests: BTreeMap::new(),
            dirty: BTreeSet::new(),
            last_current: None,
            step: 0,
        }
    }

    /// Runs the checks that care about what happened, in the order the loop always ran them.
    pub fn observe(&mut self, observation: Observation<'_>) {
        match observation {
            Observation::Step { index } => self.step = index,
            Observation::Policies { use_agent_identity, persist_task, reacquire } => {
                self.use_agent_identity = use_agent_identity;
                self.persist_task = persist_task;
                self.reacquire = reacquire;
            }
            Observation::ProcessStarted { generation } => self.process_started(generation),
            Observation::TurnSubmitted { thread, turn } => {
                self.turns.insert((thread.clone(), turn), TurnTrack::default());
            }
            Observation::Secret(secret) => self.secrets.push(secret.to_owned()),
            Observation::Send { request, endpoint, what } => {
                self.before_send(request, endpoint, what);
            }
            Observation::Response(response) => self.secrets_from_response(response),
            Observation::Append { current, backend, thread, item } => {
                self.before_append(current, backend, thread, item);
            }
            Observation::Event(event) => self.on_event(event),
            Observation::Drained { machine, commands, touched, answered } => {
                self.track_in_flight(machine, commands, answered.map(|(_, id)| id));
                if let Some((what, _)) = answered {
                    self.after_delivery(what, touched, machine, commands);
                }
                self.after_event(machine, touched);
            }
            Observation::Resumed { thread, bytes, scan, current, restored, commands } => {
                self.scan_agrees(thread, bytes, scan);
                self.after_resume(thread, bytes, current, restored, commands);
            }
            Observation::Forked { thread, bytes, scan } => {
                self.rollout_replaced(thread, bytes);
                self.scan_agrees(thread, bytes, scan);
            }
            Observation::Rewritten { thread, bytes } => self.rollout_replaced(thread, bytes),
            Observation::Quiescent { machine, current, all } => {
                self.quiescent(machine, current, all);
            }
        }
    }

    /// Records the first violation.
    pub fn violate(&mut self, invariant: Invariant, step: usize, message: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, step, message });
        }
    }

    /// The harness itself failed (IO, transport): reported like a violation.
    pub fn harness_failure(&mut self, message: String) {
        self.violate(Invariant::Harness, 0, message);
    }

    /// A new process started: ensure numbers start again.
    fn process_started(&mut self, generation: u32) {
        self.generation = generation;
        self.task_biscuit_url.clear();
        self.held.clear();
        self.tasks.clear();
        self.in_flight.clear();
        self.task_requests.clear();
        self.dirty.clear();
        self.last_current = None;
    }

    /// Whether the turn's `turn_complete` was seen.
    pub fn turn_completed(&self, thread: &ThreadId, turn: TurnId) -> bool {
        self.turns.get(&(thread.clone(), turn)).is_some_and(|t| t.completed)
    }
}
