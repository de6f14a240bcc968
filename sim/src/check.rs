//! The invariants of spec section 5, checked by the simulator after every step and every event.
//! The first violation stops the run; the report names the invariant, the step and the seed.

use std::collections::{BTreeMap, BTreeSet};

use agentsim_core::limits::{REACQUIRE_RETRIES_MAX, TASK_ATTEMPTS_MAX};
use agentsim_core::wire::{self, HttpRequest, HttpResponse};
use agentsim_core::{
    AgentTask, Command, Event, EventKind, Failure, InFlight, Lifecycle, RequestId, RolloutItem,
    RolloutScan, ThreadId, TurnId,
};

use crate::backend::Backend;
use crate::fault::Endpoint;
pub use crate::invariant::{Invariant, Violation};
use crate::reference;

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
        }
    }

    /// The policies of the process that starts next (a `restart` may change them).
    pub fn set_policies(&mut self, use_agent_identity: bool, persist_task: bool, reacquire: bool) {
        self.use_agent_identity = use_agent_identity;
        self.persist_task = persist_task;
        self.reacquire = reacquire;
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
    pub fn process_started(&mut self, generation: u32) {
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

    /// A turn was submitted.
    pub fn turn_submitted(&mut self, thread: &ThreadId, turn: TurnId) {
        self.turns.insert((thread.clone(), turn), TurnTrack::default());
    }

    /// Collects secrets from a response: the biscuit.
    pub fn secrets_from_response(&mut self, response: &HttpResponse) {
        if let Some(biscuit) =
            response.header(wire::BISCUIT_RESPONSE_HEADER).and_then(|b| std::str::from_utf8(b).ok())
        {
            if !biscuit.is_empty() {
                self.secrets.push(biscuit.to_owned());
            }
        }
    }

    /// Keeps the checker's list of core's requests in flight: drops the one just `answered`,
    /// adds those the commands sent. Invariant 5: at most one task registration in flight per
    /// thread (biscuit or registration), at most one identity registration per process.
    pub fn track_in_flight(
        &mut self,
        machine: &Lifecycle,
        commands: &[Command],
        answered: Option<RequestId>,
        step: usize,
    ) {
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
    pub fn before_send(
        &mut self,
        request: &HttpRequest,
        endpoint: Option<Endpoint>,
        what: &Option<InFlight>,
        step: usize,
    ) {
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

    /// Invariants 1, 4 and 8, before a rollout line is written. `current` is the identity the
    /// world's records say is current (invariant 17), not core's opinion.
    pub fn before_append(
        &mut self,
        current: Option<&str>,
        backend: &Backend,
        thread: &ThreadId,
        item: &RolloutItem,
        step: usize,
    ) {
        let RolloutItem::SessionState(value) = item else { return };
        if !self.use_agent_identity {
            self.violate(
                Invariant::FlagOff,
                step,
                format!("flag off, yet {thread} appended a session_state"),
            );
        }
        let previous = self.persisted.get(thread).cloned().flatten();
        match value {
            Some(task) => {
                if current != Some(task.agent_runtime_id.as_str()) {
                    self.violate(Invariant::AppendsFollowChanges, step, format!("{thread} persisted a task of runtime {} while the current identity is {}", task.agent_runtime_id, current.unwrap_or("none")));
                }
                match backend.task_runtime(&task.task_id) {
                    Some(runtime) if runtime == task.agent_runtime_id => {}
                    other => self.violate(
                        Invariant::ProtocolClean,
                        step,
                        format!(
                            "{thread} persisted task {} which the backend issued to {}",
                            task.task_id,
                            other.as_deref().unwrap_or("nobody")
                        ),
                    ),
                }
                if previous.as_ref() == Some(value) {
                    self.violate(
                        Invariant::AppendsFollowChanges,
                        step,
                        format!("{thread} appended the same session_state twice in a row"),
                    );
                }
            }
            None => {
                if !matches!(previous, Some(Some(_))) {
                    self.violate(Invariant::AppendsFollowChanges, step, format!("{thread} appended session_state null when the last value was not a task"));
                }
            }
        }
        self.persisted.insert(thread.clone(), Some(value.clone()));
        self.dirty.insert(thread.clone());
    }

    /// Invariants 1, 10 and 11, and the texts of spec section 4, for each event.
    pub fn on_event(&mut self, event: &Event, step: usize) {
        if let Some(text) = Checker::error_text(event) {
            self.violate(Invariant::SpecText, step, text);
        }
        match &event.kind {
            EventKind::Error { turn, failure, .. } => {
                if *failure == Failure::Prewarm {
                    self.violate(
                        Invariant::PrewarmQuiet,
                        step,
                        format!("a failed prewarm emitted an error event on {}", event.thread),
                    );
                }
                if !self.use_agent_identity && failure.is_agent() {
                    self.violate(
                        Invariant::FlagOff,
                        step,
                        format!("flag off, yet {} got an agent error event", event.thread),
                    );
                }
                let Some(turn) = turn else { return };
                let track = self.turns.entry((event.thread.clone(), *turn)).or_default();
                track.errors += 1;
                let ensure_failed = *failure == Failure::TaskRegistration;
                track.ensure_failed |= ensure_failed;
                let (model_sent, errors) = (track.model_sent, track.errors);
                if ensure_failed && model_sent {
                    self.violate(
                        Invariant::TurnFailure,
                        step,
                        format!(
                            "{} {turn}: ensure failed after the model request was sent",
                            event.thread
                        ),
                    );
                }
                if errors > 1 {
                    self.violate(
                        Invariant::TurnFailure,
                        step,
                        format!("{} {turn}: more than one error event for one turn", event.thread),
                    );
                }
            }
            EventKind::TurnComplete { turn } => {
                self.turns.entry((event.thread.clone(), *turn)).or_default().completed = true;
            }
            EventKind::TaskStarted { .. } | EventKind::UserMessage { .. } => {}
        }
    }

    /// The texts of spec section 4: an `Error` event's message begins with the text the spec gives
    /// for its [`Failure`] (rule 4, rule 11, the downstream assertion's `model request failed …`).
    /// The one place the checker reads message text; every invariant keys on `Failure`. Returns
    /// what is wrong, if anything.
    pub fn error_text(event: &Event) -> Option<String> {
        let EventKind::Error { failure, message, .. } = &event.kind else { return None };
        let expected = match failure {
            Failure::IdentityRegistration => {
                "Agent identity registration failed while `features.use_agent_identity` is enabled: "
                    .to_owned()
            }
            Failure::TaskRegistration => "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: ".to_owned(),
            Failure::ModelRequest { status: Some(status) } => {
                format!("model request failed with status {status}: ")
            }
            Failure::ModelRequest { status: None } => "model request failed".to_owned(),
            // Never an event; `on_event` reports one as invariant 10.
            Failure::Prewarm => return None,
        };
        // tidy: spec-text assertion
        if message.starts_with(expected.as_str()) {
            return None;
        }
        Some(format!(
            "{} error event {message:?} ({failure:?}) does not begin with {expected:?}",
            event.thread
        ))
    }

    /// Invariants 9 and 10, after a response or failure of a thread's request was handled.
    pub fn after_delivery(
        &mut self,
        what: Option<&InFlight>,
        touched: &BTreeSet<ThreadId>,
        machine: &Lifecycle,
        commands: &[Command],
        step: usize,
    ) {
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
    pub fn after_event(&mut self, machine: &Lifecycle, touched: &BTreeSet<ThreadId>) {
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

    /// Invariant 2, right after a resume: read-only, and the pure function of the reference rules.
    pub fn after_resume(
        &mut self,
        thread: &ThreadId,
        bytes: &[u8],
        current: Option<&str>,
        restored: Option<&AgentTask>,
        commands: &[Command],
        step: usize,
    ) {
        if commands.iter().any(|c| matches!(c, Command::Append { thread: t, .. } if t == thread)) {
            self.violate(
                Invariant::ResumeReadOnly,
                step,
                format!("resuming {thread} appended to its rollout"),
            );
        }
        // Rule 14: a restored task is current, so the prewarm that follows reuses it: no call.
        if restored.is_some() {
            if let Some(Command::Send { request, .. }) =
                commands.iter().find(|c| matches!(c, Command::Send { .. }))
            {
                self.violate(
                    Invariant::ResumeReadOnly,
                    step,
                    format!(
                        "resuming {thread} restored a current task, yet sent {} {}",
                        request.method.as_str(),
                        request.path()
                    ),
                );
            }
        }
        let predicted =
            reference::predict_resume(bytes, current, self.use_agent_identity, self.persist_task);
        if predicted.as_ref() != restored {
            self.violate(
                Invariant::ResumeReadOnly,
                step,
                format!(
                    "resuming {thread} restored {:?}, the reference rules say {:?}",
                    restored.map(|t| &t.task_id),
                    predicted.map(|t| t.task_id)
                ),
            );
        }
        self.persisted.insert(thread.clone(), reference::last_session_state(bytes));
        self.dirty.insert(thread.clone());
    }

    /// Invariant 2 (and rule 15): what core reports having read from a rollout at resume or fork
    /// is what the reference rules read: the line count, the last `session_state` and its line,
    /// and the lines skipped.
    pub fn scan_agrees(
        &mut self,
        thread: &ThreadId,
        bytes: &[u8],
        scan: &RolloutScan,
        step: usize,
    ) {
        let expected = reference::scan_report(bytes);
        let last = scan.last_state.as_ref().map(|s| (s.line, s.task.clone()));
        let skipped: Vec<(usize, bool)> = scan.skipped.iter().map(|s| (s.line, s.torn)).collect();
        if (scan.lines, &last, &skipped) != (expected.lines, &expected.last, &expected.skipped) {
            self.violate(
                Invariant::ResumeReadOnly,
                step,
                format!(
                    "reading {thread}'s rollout, core found {} lines, last session_state {:?}, skipped {skipped:?}; the reference rules find {} lines, {:?}, skipped {:?}",
                    scan.lines, last, expected.lines, expected.last, expected.skipped
                ),
            );
        }
    }

    /// A fork copied `bytes` into `thread`'s rollout.
    pub fn after_fork(&mut self, thread: &ThreadId, bytes: &[u8]) {
        self.persisted.insert(thread.clone(), reference::last_session_state(bytes));
        self.dirty.insert(thread.clone());
    }

    /// Invariant 13, after every step. The last `session_state` of each rollout is tracked from
    /// what was read at resume or fork and every append since, so no rollout is re-read.
    ///
    /// Only threads whose verdict may have changed are looked at (`dirty`: touched, appended to,
    /// resumed, forked), unless the current identity changed or `all` is asked for.
    pub fn quiescent(
        &mut self,
        machine: &Lifecycle,
        current: Option<&str>,
        all: bool,
        step: usize,
    ) {
        let dirty = std::mem::take(&mut self.dirty);
        let same_current = self.last_current.as_ref().map(Option::as_deref) == Some(current);
        if !same_current {
            self.last_current = Some(current.map(str::to_owned));
        }
        if !self.persist_task || !self.use_agent_identity {
            return;
        }
        let threads: Box<dyn Iterator<Item = &ThreadId>> = if all || !same_current {
            Box::new(machine.threads())
        } else {
            Box::new(dirty.iter().filter(|t| machine.has_thread(t)))
        };
        for thread in threads {
            let last = self.persisted.get(thread).cloned().flatten().flatten();
            match (machine.cached_task(thread), last) {
                (Some(cached), Some(last)) if *cached == last => {}
                (Some(cached), last) => {
                    self.violate(
                        Invariant::QuiescentAgreement,
                        step,
                        format!(
                            "{thread} caches {} but its rollout's last session_state is {:?}",
                            cached.task_id,
                            last.map(|t| t.task_id)
                        ),
                    );
                }
                (None, Some(last)) if self.held.get(thread) == Some(&last) => {
                    self.violate(
                        Invariant::QuiescentAgreement,
                        step,
                        format!(
                            "{thread} let go of task {} but its rollout still ends with it (no null appended)",
                            last.task_id
                        ),
                    );
                }
                (None, Some(last)) if current == Some(last.agent_runtime_id.as_str()) => {
                    self.violate(
                        Invariant::QuiescentAgreement,
                        step,
                        format!(
                            "{thread} caches no task but its rollout ends with current task {}",
                            last.task_id
                        ),
                    );
                }
                (None, _) => {}
            }
        }
    }

    /// Invariant 14: no secret in any artifact text.
    pub fn check_secrets<'a>(&mut self, texts: impl Iterator<Item = &'a [u8]>) {
        let secrets: Vec<&[u8]> =
            self.secrets.iter().filter(|s| s.len() >= 8).map(|s| s.as_bytes()).collect();
        if secrets.is_empty() {
            return;
        }
        // One pass over each text for every secret at once. A run checks its texts once, so a
        // matcher that is quick to build beats a DFA that is quick to run.
        let matcher = aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
            .build(&secrets);
        let Ok(matcher) = matcher else {
            self.violate(Invariant::Harness, 0, "cannot build the secrets matcher".to_owned());
            return;
        };
        for text in texts {
            if let Some(found) = matcher.find(text) {
                let secret = secrets[found.pattern().as_usize()];
                let shown = String::from_utf8_lossy(&secret[..6]).into_owned();
                self.violate(
                    Invariant::NoSecrets,
                    0,
                    format!("a secret ({shown}…) appears in the run's output"),
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(failure: Failure, message: &str) -> Event {
        let kind = EventKind::Error { turn: None, failure, message: message.to_owned() };
        Event { thread: ThreadId::from("A"), kind }
    }

    #[test]
    fn error_text_holds_each_failure_to_its_spec_section_4_text() {
        let good = [
            (Failure::IdentityRegistration, "Agent identity registration failed while `features.use_agent_identity` is enabled: boom"),
            (Failure::TaskRegistration, "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: boom"),
            (Failure::ModelRequest { status: Some(401) }, "model request failed with status 401: {}"),
            (Failure::ModelRequest { status: None }, "model request failed: failed to send model request to http://x"),
        ];
        for (failure, message) in good {
            assert_eq!(Checker::error_text(&error(failure, message)), None, "{message}");
        }
        let bad = [
            (Failure::IdentityRegistration, "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: boom"),
            (Failure::TaskRegistration, "Agent task registration failed: boom"),
            (Failure::ModelRequest { status: Some(500) }, "model request failed with status 401: {}"),
            (Failure::ModelRequest { status: None }, "request failed"),
        ];
        for (failure, message) in bad {
            assert!(Checker::error_text(&error(failure, message)).is_some(), "{message}");
        }
    }

    #[test]
    fn checks_key_on_the_failure_not_the_text() {
        // Flag off, an agent failure with any text is invariant 1; a model failure is not.
        let mut checker = Checker::new(false, true, true);
        checker.on_event(&error(Failure::ModelRequest { status: None }, "model request failed"), 1);
        assert_eq!(checker.violation, None);
        checker.on_event(&error(Failure::TaskRegistration, "reworded"), 2);
        let violation = checker.violation.expect("a violation");
        assert_eq!(violation.invariant, Invariant::SpecText);
        let mut checker = Checker::new(false, true, true);
        let message =
            "Agent identity registration failed while `features.use_agent_identity` is enabled: x";
        checker.on_event(&error(Failure::IdentityRegistration, message), 3);
        assert_eq!(checker.violation.map(|v| v.invariant), Some(Invariant::FlagOff));
    }
}
