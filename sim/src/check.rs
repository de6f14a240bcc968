//! The invariants of spec section 5, checked by the simulator after every step and every event.
//! The first violation stops the run; the report names the invariant, the step and the seed.

use std::collections::BTreeMap;

use agentsim_core::wire::{self, HttpRequest, HttpResponse};
use agentsim_core::{
    AgentTask, Command, Event, EventKind, InFlight, Lifecycle, RolloutItem, ThreadId, Timestamp,
    TurnId,
};

use crate::backend::Backend;
use crate::fault::Endpoint;
use crate::reference;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's number in spec section 5 (0: the harness itself failed).
    pub invariant: u8,
    /// The 1-based scenario step during which it broke (0: before the first step or after the last).
    pub step: usize,
    /// What happened.
    pub message: String,
}

/// Each live thread's cached task, taken before an event so the checker can see what changed.
pub type ThreadsSnapshot = BTreeMap<ThreadId, Option<AgentTask>>;

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
    flag: bool,
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
}

impl Checker {
    /// A checker for a run with these policies.
    pub fn new(flag: bool, persist_task: bool, reacquire: bool) -> Checker {
        Checker {
            flag,
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
        }
    }

    /// The policies of the process that starts next (a `restart` may change them).
    pub fn set_policies(&mut self, flag: bool, persist_task: bool, reacquire: bool) {
        self.flag = flag;
        self.persist_task = persist_task;
        self.reacquire = reacquire;
    }

    /// Records the first violation.
    pub fn violate(&mut self, invariant: u8, step: usize, message: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, step, message });
        }
    }

    /// The harness itself failed (IO, transport): reported like a violation, number 0.
    pub fn harness_failure(&mut self, message: String) {
        self.violate(0, 0, message);
    }

    /// A new process started: ensure numbers start again.
    pub fn process_started(&mut self, generation: u32) {
        self.generation = generation;
        self.task_biscuit_url.clear();
        self.held.clear();
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

    /// The live threads' cached tasks.
    pub fn snapshot_threads(&self, machine: &Lifecycle) -> ThreadsSnapshot {
        machine.threads().map(|t| (t.clone(), machine.cached_task(t).cloned())).collect()
    }

    /// Invariants 1, 6, 7 and 11, before a request leaves.
    pub fn before_send(
        &mut self,
        machine: &Lifecycle,
        request: &HttpRequest,
        endpoint: Option<Endpoint>,
        what: &Option<InFlight>,
        now: Timestamp,
        step: usize,
    ) {
        let agent_call = matches!(
            endpoint,
            Some(Endpoint::Biscuit | Endpoint::IdentityRegister | Endpoint::TaskRegister)
        );
        if !self.flag && agent_call {
            self.violate(
                1,
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
                    self.violate(6, step, format!("{thread}: a second task biscuit before the registration it authorizes ({previous})"));
                }
            }
            Some(InFlight::TaskRegister { thread, ensure }) => {
                match self.task_biscuit_url.remove(thread) {
                    Some(url) if url == request.url => {}
                    Some(url) => self.violate(
                        6,
                        step,
                        format!(
                            "{thread}: task registration to {} preceded by a biscuit for {url}",
                            request.url
                        ),
                    ),
                    None => self.violate(
                        6,
                        step,
                        format!("{thread}: task registration to {} without a biscuit", request.url),
                    ),
                }
                let count =
                    self.registrations_per_ensure.entry((self.generation, *ensure)).or_insert(0);
                *count += 1;
                let limit = if self.reacquire { 3 } else { 2 };
                if *count > limit {
                    let count = *count;
                    self.violate(6, step, format!("{thread}: one ensure sent {count} task registrations (at most {limit})"));
                }
            }
            Some(InFlight::Model(thread, turn)) => {
                let track = self.turns.entry((thread.clone(), *turn)).or_default();
                track.model_sent = true;
                if track.ensure_failed {
                    self.violate(
                        11,
                        step,
                        format!("{thread} {turn}: a model request after the turn's ensure failed"),
                    );
                }
                if let Some(value) =
                    request.header("Authorization").filter(|v| v.starts_with("AgentAssertion "))
                {
                    match wire::parse_assertion_header(value) {
                        Ok(assertion) => {
                            let current = machine.current_runtime(now);
                            if current != Some(assertion.agent_runtime_id.as_str()) {
                                self.violate(7, step, format!("{thread} {turn}: assertion for runtime {} while the current identity is {}", assertion.agent_runtime_id, current.unwrap_or("none")));
                            }
                        }
                        Err(e) => self.violate(
                            7,
                            step,
                            format!("{thread} {turn}: unreadable assertion header: {e}"),
                        ),
                    }
                }
            }
            _ => {}
        }
    }

    /// Invariants 1, 4 and 8, before a rollout line is written.
    pub fn before_append(
        &mut self,
        machine: &Lifecycle,
        backend: &Backend,
        thread: &ThreadId,
        item: &RolloutItem,
        now: Timestamp,
        step: usize,
    ) {
        let RolloutItem::SessionState(value) = item else { return };
        if !self.flag {
            self.violate(1, step, format!("flag off, yet {thread} appended a session_state"));
        }
        let previous = self.persisted.get(thread).cloned().flatten();
        match value {
            Some(task) => {
                let current = machine.current_runtime(now);
                if current != Some(task.agent_runtime_id.as_str()) {
                    self.violate(4, step, format!("{thread} persisted a task of runtime {} while the current identity is {}", task.agent_runtime_id, current.unwrap_or("none")));
                }
                match backend.task_runtime(&task.task_id) {
                    Some(runtime) if runtime == task.agent_runtime_id => {}
                    other => self.violate(
                        8,
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
                        4,
                        step,
                        format!("{thread} appended the same session_state twice in a row"),
                    );
                }
            }
            None => {
                if !matches!(previous, Some(Some(_))) {
                    self.violate(4, step, format!("{thread} appended session_state null when the last value was not a task"));
                }
            }
        }
        self.persisted.insert(thread.clone(), Some(value.clone()));
    }

    /// Invariants 1 and 11, for each event.
    pub fn on_event(&mut self, event: &Event, step: usize) {
        match &event.kind {
            EventKind::Error { turn, message } => {
                if !self.flag && message.starts_with("Agent ") {
                    self.violate(
                        1,
                        step,
                        format!("flag off, yet {} got an agent error event", event.thread),
                    );
                }
                let Some(turn) = turn else { return };
                let track = self.turns.entry((event.thread.clone(), *turn)).or_default();
                track.errors += 1;
                let ensure_failed = message.starts_with("Agent task registration failed");
                track.ensure_failed |= ensure_failed;
                let (model_sent, errors) = (track.model_sent, track.errors);
                if ensure_failed && model_sent {
                    self.violate(
                        11,
                        step,
                        format!(
                            "{} {turn}: ensure failed after the model request was sent",
                            event.thread
                        ),
                    );
                }
                if errors > 1 {
                    self.violate(
                        11,
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

    /// Invariants 9 and 10, after a response or failure of a thread's request was handled.
    pub fn after_delivery(
        &mut self,
        what: Option<&InFlight>,
        before: &ThreadsSnapshot,
        machine: &Lifecycle,
        commands: &[Command],
        step: usize,
    ) {
        if let Some(InFlight::TaskBiscuit { thread, ensure }) = what {
            // A biscuit that failed authorizes nothing: forget it, so the retry's biscuit is the
            // one the next registration must follow (unless a new ensure already sent its own).
            let registering = machine
                .in_flight()
                .iter()
                .any(|(_, w)| matches!(w, InFlight::TaskRegister { thread: t, .. } if t == thread));
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
                        9,
                        step,
                        format!("a response for {owner} emitted an event on {}", event.thread),
                    );
                }
            }
        }
        for (thread, task) in before {
            if thread != owner && machine.cached_task(thread) != task.as_ref() {
                self.violate(9, step, format!("a response for {owner} changed {thread}'s task"));
            }
        }
        let prewarm_failed = commands.iter().any(|c| matches!(c, Command::Log(l) if l.message.starts_with("startup agent task prewarm failed")));
        let turn_failed = commands
            .iter()
            .any(|c| matches!(c, Command::Emit(Event { kind: EventKind::Error { .. }, .. })));
        if prewarm_failed && !turn_failed {
            let appended = commands
                .iter()
                .any(|c| matches!(c, Command::Append { thread, .. } if thread == owner));
            let emitted = commands.iter().any(|c| matches!(c, Command::Emit(_)));
            let changed = before.get(owner).map(Option::as_ref) != Some(machine.cached_task(owner));
            if appended || emitted || changed {
                self.violate(
                    10,
                    step,
                    format!("{owner}: a failed prewarm changed state or emitted an event"),
                );
            }
        }
    }

    /// Invariant 5, after every event.
    pub fn after_event(&mut self, machine: &Lifecycle, step: usize) {
        for thread in machine.threads() {
            if let Some(task) = machine.cached_task(thread) {
                if self.held.get(thread) != Some(task) {
                    self.held.insert(thread.clone(), task.clone());
                }
            }
        }
        let in_flight = machine.in_flight();
        let mut per_thread: BTreeMap<ThreadId, u32> = BTreeMap::new();
        let mut identity = 0;
        for (_, what) in &in_flight {
            match what {
                InFlight::IdentityBiscuit | InFlight::IdentityRegister => identity += 1,
                InFlight::TaskBiscuit { thread, .. } | InFlight::TaskRegister { thread, .. } => {
                    *per_thread.entry(thread.clone()).or_default() += 1
                }
                InFlight::Model(..) => {}
            }
        }
        if identity > 1 {
            self.violate(5, step, format!("{identity} identity registrations in flight at once"));
        }
        if let Some((thread, n)) = per_thread.into_iter().find(|(_, n)| *n > 1) {
            self.violate(5, step, format!("{thread}: {n} task registrations in flight at once"));
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
            self.violate(2, step, format!("resuming {thread} appended to its rollout"));
        }
        // Rule 14: a restored task is current, so the prewarm that follows reuses it: no call.
        if restored.is_some() {
            if let Some(Command::Send { request, .. }) =
                commands.iter().find(|c| matches!(c, Command::Send { .. }))
            {
                self.violate(
                    2,
                    step,
                    format!(
                        "resuming {thread} restored a current task, yet sent {} {}",
                        request.method.as_str(),
                        request.path()
                    ),
                );
            }
        }
        let predicted = reference::predict_resume(bytes, current, self.flag, self.persist_task);
        if predicted.as_ref() != restored {
            self.violate(
                2,
                step,
                format!(
                    "resuming {thread} restored {:?}, the reference rules say {:?}",
                    restored.map(|t| &t.task_id),
                    predicted.map(|t| t.task_id)
                ),
            );
        }
        self.persisted.insert(thread.clone(), reference::last_session_state(bytes));
    }

    /// A fork copied `bytes` into `thread`'s rollout.
    pub fn after_fork(&mut self, thread: &ThreadId, bytes: &[u8]) {
        self.persisted.insert(thread.clone(), reference::last_session_state(bytes));
    }

    /// Invariant 13, after every step. The last `session_state` of each rollout is tracked from
    /// what was read at resume or fork and every append since, so no rollout is re-read.
    pub fn quiescent(&mut self, machine: &Lifecycle, now: Timestamp, step: usize) {
        if !self.persist_task || !self.flag {
            return;
        }
        let current = machine.current_runtime(now);
        for thread in machine.threads() {
            let last = self.persisted.get(thread).cloned().flatten().flatten();
            match (machine.cached_task(thread), last) {
                (Some(cached), Some(last)) if *cached == last => {}
                (Some(cached), last) => {
                    self.violate(
                        13,
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
                        13,
                        step,
                        format!(
                            "{thread} let go of task {} but its rollout still ends with it (no null appended)",
                            last.task_id
                        ),
                    );
                }
                (None, Some(last)) if current == Some(last.agent_runtime_id.as_str()) => {
                    self.violate(
                        13,
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
        for text in texts {
            if let Some(secret) = secrets.iter().find(|s| text.windows(s.len()).any(|w| w == **s)) {
                let shown = String::from_utf8_lossy(&secret[..6]).into_owned();
                self.violate(14, 0, format!("a secret ({shown}…) appears in the run's output"));
                return;
            }
        }
    }
}
