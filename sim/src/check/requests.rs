//! The checks of core's requests: which are in flight (invariant 5, single flight), what may
//! leave (1 flag off, 6 the attempt budget and its biscuit order, 11 no model request after a
//! failed ensure), and what the delivery of one thread's answer may change (9 prewarm stays
//! quiet, 10 failures stay on their thread). What an event changed is judged from the threads
//! core reports touched, never from a scan of every thread.

use std::collections::BTreeSet;

use agentsim_core::limits::{REACQUIRE_RETRIES_MAX, TASK_ATTEMPTS_MAX};
use agentsim_core::wire::HttpRequest;
use agentsim_core::{Command, Event, EventKind, Failure, InFlight, Lifecycle, RequestId, ThreadId};

use super::{Checker, Invariant};
use crate::fault::Endpoint;

impl Checker {
    /// Keeps the checker's list of core's requests in flight: drops the one just `answered`,
    /// adds those the commands sent. Invariant 5: at most one task registration in flight per
    /// thread (biscuit or registration), at most one identity registration per process.
    pub(super) fn track_in_flight(
        &mut self,
        machine: &Lifecycle,
        commands: &[Command],
        answered: Option<RequestId>,
    ) {
        let step = self.step;
        if let Some(id) = answered {
            if let Some(
                InFlight::TaskBiscuit { thread, .. } | InFlight::TaskRegister { thread, .. },
            ) = self.in_flight.remove(&id)
            {
                if let Some(ids) = self.task_requests.get_mut(&thread) {
                    ids.remove(&id);
                }
            }
        }
        for command in commands {
            let Command::Send { id, .. } = command else { continue };
            let Some(what) = machine.in_flight_request(*id) else { continue };
            match &what {
                InFlight::IdentityBiscuit | InFlight::IdentityRegister => {
                    let identity = self
                        .in_flight
                        .values()
                        .filter(|w| {
                            matches!(w, InFlight::IdentityBiscuit | InFlight::IdentityRegister)
                        })
                        .count();
                    if identity >= 1 {
                        self.violate(
                            Invariant::SingleFlight,
                            step,
                            format!("{} identity registrations in flight at once", identity + 1),
                        );
                    }
                }
                InFlight::TaskBiscuit { thread, .. } | InFlight::TaskRegister { thread, .. } => {
                    let ids = self.task_requests.entry(thread.clone()).or_default();
                    ids.insert(*id);
                    if ids.len() > 1 {
                        let n = ids.len();
                        self.violate(
                            Invariant::SingleFlight,
                            step,
                            format!("{thread}: {n} task registrations in flight at once"),
                        );
                    }
                }
                InFlight::Model(..) => {}
            }
            self.in_flight.insert(*id, what);
        }
    }

    /// Invariants 1, 6 and 11, before a request leaves.
    pub(super) fn before_send(
        &mut self,
        request: &HttpRequest,
        endpoint: Option<Endpoint>,
        what: Option<&InFlight>,
    ) {
        let step = self.step;
        let agent_call = matches!(
            endpoint,
            Some(Endpoint::Biscuit | Endpoint::IdentityRegister | Endpoint::TaskRegister)
        );
        if !self.use_agent_identity && agent_call {
            self.violate(
                Invariant::FlagOff,
                step,
                format!(
                    "flag off, yet the client sent {} {}",
                    request.method.as_str(),
                    request.path()
                ),
            );
        }
        match what {
            Some(InFlight::TaskBiscuit { thread, ensure }) => {
                let target = request.header("X-Original-Url").unwrap_or_default().to_owned();
                let same_ensure =
                    self.task_biscuit_ensure.insert(thread.clone(), *ensure) == Some(*ensure);
                if let Some(previous) =
                    self.task_biscuit_url.insert(thread.clone(), target).filter(|_| same_ensure)
                {
                    self.violate(Invariant::AttemptBudget, step, format!("{thread}: a second task biscuit before the registration it authorizes ({previous})"));
                }
            }
            Some(InFlight::TaskRegister { thread, ensure }) => {
                match self.task_biscuit_url.remove(thread) {
                    Some(url) if url == request.url => {}
                    Some(url) => self.violate(
                        Invariant::AttemptBudget,
                        step,
                        format!(
                            "{thread}: task registration to {} preceded by a biscuit for {url}",
                            request.url
                        ),
                    ),
                    None => self.violate(
                        Invariant::AttemptBudget,
                        step,
                        format!("{thread}: task registration to {} without a biscuit", request.url),
                    ),
                }
                let count =
                    self.registrations_per_ensure.entry((self.generation, *ensure)).or_insert(0);
                *count += 1;
                let limit = u32::from(TASK_ATTEMPTS_MAX)
                    + if self.reacquire { u32::from(REACQUIRE_RETRIES_MAX) } else { 0 };
                if *count > limit {
                    let count = *count;
                    self.violate(Invariant::AttemptBudget, step, format!("{thread}: one ensure sent {count} task registrations (at most {limit})"));
                }
            }
            Some(InFlight::Model(thread, turn)) => {
                let track = self.turns.entry((thread.clone(), *turn)).or_default();
                track.model_sent = true;
                if track.ensure_failed {
                    self.violate(
                        Invariant::TurnFailure,
                        step,
                        format!("{thread} {turn}: a model request after the turn's ensure failed"),
                    );
                }
                // Invariant 7 is judged from the backend's records: `crate::judge`.
            }
            _ => {}
        }
    }

    /// Invariants 9 and 10, after a response or failure of a thread's request was handled.
    pub(super) fn after_delivery(
        &mut self,
        what: Option<&InFlight>,
        touched: &BTreeSet<ThreadId>,
        machine: &Lifecycle,
        commands: &[Command],
    ) {
        let step = self.step;
        if let Some(InFlight::TaskBiscuit { thread, ensure }) = what {
            // A biscuit that failed authorizes nothing: forget it, so the retry's biscuit is the
            // one the next registration must follow (unless a new ensure already sent its own).
            let registering = self.task_requests.get(thread).is_some_and(|ids| {
                ids.iter()
                    .any(|id| matches!(self.in_flight.get(id), Some(InFlight::TaskRegister { .. })))
            });
            let superseded = self.task_biscuit_ensure.get(thread) != Some(ensure);
            if !registering && !superseded {
                self.task_biscuit_url.remove(thread);
            }
        }
        let owner = match what {
            Some(
                InFlight::TaskBiscuit { thread, .. }
                | InFlight::TaskRegister { thread, .. }
                | InFlight::Model(thread, _),
            ) => thread,
            _ => return,
        };
        for command in commands {
            if let Command::Emit(event) = command {
                if &event.thread != owner {
                    self.violate(
                        Invariant::FailureIsolated,
                        step,
                        format!("a response for {owner} emitted an event on {}", event.thread),
                    );
                }
            }
        }
        // Only a thread core reports changed can have a new task; `Oracle::audit` checks that
        // core reports every change.
        for thread in touched {
            let before = self.tasks.get(thread).cloned().flatten();
            if thread != owner && machine.cached_task(thread) != before.as_ref() {
                self.violate(
                    Invariant::FailureIsolated,
                    step,
                    format!("a response for {owner} changed {thread}'s task"),
                );
            }
        }
        let prewarm_failed = commands
            .iter()
            .any(|c| matches!(c, Command::Log(l) if l.failure == Some(Failure::Prewarm)));
        let turn_failed = commands
            .iter()
            .any(|c| matches!(c, Command::Emit(Event { kind: EventKind::Error { .. }, .. })));
        if prewarm_failed && !turn_failed {
            let appended = commands
                .iter()
                .any(|c| matches!(c, Command::Append { thread, .. } if thread == owner));
            let emitted = commands.iter().any(|c| matches!(c, Command::Emit(_)));
            let before = self.tasks.get(owner).cloned().flatten();
            let changed = machine.cached_task(owner) != before.as_ref();
            if appended || emitted || changed {
                self.violate(
                    Invariant::PrewarmQuiet,
                    step,
                    format!("{owner}: a failed prewarm changed state or emitted an event"),
                );
            }
        }
    }

    /// After every event: remembers the cached task of each thread core reports changed.
    pub(super) fn after_event(&mut self, machine: &Lifecycle, touched: &BTreeSet<ThreadId>) {
        for thread in touched {
            let task = machine.cached_task(thread);
            if let Some(task) = task {
                if self.held.get(thread) != Some(task) {
                    self.held.insert(thread.clone(), task.clone());
                }
            }
            self.tasks.insert(thread.clone(), task.cloned());
            self.dirty.insert(thread.clone());
        }
    }
}
