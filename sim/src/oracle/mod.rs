//! The differential oracle: a reference model of spec section 3 ([`model`]) fed the inputs core
//! is fed, in the same order, plus the backend's ground truth ([`seen`]). After every input the
//! engine hands it the commands core returned and what core's getters report; the first
//! difference between what the model predicted and what core did (a request, a rollout line, an
//! event, a failure log, an auth store write, a thread's cached task afterwards, or a getter's
//! answer) is a divergence that stops the run.
//!
//! The comparison is per stream: each thread's rollout lines, events, failure logs and requests,
//! the process's identity requests and auth store writes, each in order. Streams of different
//! threads are not ordered against each other: the spec does not order them.
//!
//! Requests are matched by what they are for (the process's identity registration, a thread's
//! task registration, a thread's model request: at most one of each is in flight, rules 5 and
//! 8), so core's request ids map to the model's without the model drawing any id itself.

mod model;
mod observe;
mod seen;
mod terms;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use agentsim_core::Timestamp;
use agentsim_core::{
    Auth, Command, Config, ExpiryPolicy, Lifecycle, RequestId, StoredIdentity, ThreadId,
};

pub use observe::{assertion_of, Asserted};
pub use seen::{classify, Seen};
pub use terms::{rfc3339_secs, Ident, Operation, Out, Policy, Request, State, Task, Workspace};

use crate::reference;

/// One input, as core is fed it.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Start(&'a str),
    Resume(&'a str, &'a [u8]),
    Fork(&'a str, &'a [u8]),
    Compact(&'a str),
    Rollback(&'a str, u32),
    Turn(&'a str, u32),
    Auth(&'a Auth),
    IdentityReplaced(Option<&'a StoredIdentity>),
    /// The answer to core's request `id` (the run's request `#number`), or its failure.
    Answer {
        id: RequestId,
        seen: &'a Seen,
        number: u64,
    },
}

/// The oracle of one run.
#[derive(Debug, Default)]
pub struct Oracle {
    /// The running process's model (`None`: no process).
    model: Option<model::Model>,
    /// Why the model stopped predicting, if it did.
    blind: Option<String>,
    /// Whether the driver was told.
    blind_told: bool,
    /// Core's requests in flight, by what the model knows them as.
    bound: BTreeMap<RequestId, Operation>,
    /// The input the pending predictions answer, for reports.
    input: String,
    /// The request the last input answered, if it did.
    answered: Option<RequestId>,
}

impl Oracle {
    /// Why the oracle stopped predicting, the first time it is asked after it did (for the
    /// run's timeline: a run the model cannot follow must say so).
    pub fn went_blind(&mut self) -> Option<&str> {
        if self.blind_told {
            return None;
        }
        self.blind_told = self.blind.is_some();
        self.blind.as_deref()
    }

    /// A process starts with this config, auth and auth store.
    pub fn process_started(
        &mut self,
        config: &Config,
        auth: &Auth,
        stored: Option<&StoredIdentity>,
    ) {
        let policy = Policy {
            use_agent_identity: config.use_agent_identity,
            reacquire: config.expiry == ExpiryPolicy::Reacquire,
            persist_task: config.persist_task,
        };
        self.model = Some(model::Model::new(policy, workspace(auth), stored.map(ident)));
        self.bound.clear();
    }

    /// The process died: everything in flight dies with it.
    pub fn process_died(&mut self) {
        self.model = None;
        self.bound.clear();
    }

    /// Feeds the model the input core is about to be fed.
    pub fn feed(&mut self, now: Timestamp, input: Input<'_>) {
        if self.blind.is_some() {
            return;
        }
        let Some(model) = self.model.as_mut() else { return };
        self.input = describe(&input);
        match input {
            Input::Start(thread) => model.start(now, thread),
            Input::Resume(thread, bytes) => model.resume(now, thread, last_state(bytes)),
            Input::Fork(thread, bytes) => model.fork(now, thread, bytes.len(), last_state(bytes)),
            Input::Compact(thread) => model.compact(thread),
            Input::Rollback(thread, turns) => model.rollback(thread, turns),
            Input::Turn(thread, turn) => model.submit_turn(now, thread, turn),
            Input::Auth(auth) => model.auth_changed(now, workspace(auth)),
            Input::IdentityReplaced(stored) => model.identity_replaced(now, stored.map(ident)),
            Input::Answer { id, seen, number } => {
                if *seen == Seen::Unknown {
                    self.blind = Some(format!(
                        "request #{number} got a scripted 2xx answer the model cannot read"
                    ));
                    return;
                }
                // An answer nobody waits for any more (after a timeout) changes nothing.
                self.answered = Some(id);
                if let Some(pend) = self.bound.remove(&id) {
                    model.answer(now, &pend, seen.clone(), number);
                }
            }
        }
    }

    /// Compares what core did for the last input with the prediction, the threads either side
    /// changed (`touched`: the threads core reports changed, plus any the commands name), and
    /// what core's getters report (`state`, read by the driver, and the requests core has in
    /// flight). `Err` describes the first divergence. The work is proportional to what the
    /// input changed, not to the number of threads: [`Oracle::audit`] compares everything.
    pub fn compare(
        &mut self,
        now: Timestamp,
        commands: &[Command],
        machine: &Lifecycle,
        state: &State,
        touched: &BTreeSet<ThreadId>,
    ) -> Result<(), String> {
        if self.blind.is_some() {
            return Ok(());
        }
        let Some(model) = self.model.as_mut() else { return Ok(()) };
        let predicted = model.take_out();
        let model_touched = model.take_touched();
        let mut observed = Vec::new();
        let mut sent = Vec::new();
        for command in commands {
            let Some(out) = observe::observe(command, machine) else { continue };
            if let (Out::Send(request), Command::Send { id, .. }) = (&out, command) {
                if let Some(operation) = operation_of(request) {
                    self.bound.insert(*id, operation);
                    sent.push(*id);
                }
            }
            observed.push(out);
        }
        if let Some((key, p, o)) = first_difference(&predicted, &observed) {
            return Err(format!(
                "after {}: {} {}: the reference model predicts {}, core did {}",
                self.input,
                key.1,
                key.0,
                list(&p),
                list(&o)
            ));
        }
        let threads: BTreeSet<&str> = touched
            .iter()
            .map(|t| t.0.as_str())
            .chain(model_touched.iter().map(String::as_str))
            .chain(predicted.iter().map(|out| stream_key(out).0).filter(|t| *t != "-"))
            .collect();
        self.compare_threads(machine, threads.into_iter())?;
        self.compare_state(now, state)?;
        // The requests in flight: as many as the model holds, each just sent among them, the one
        // just answered gone. `audit` compares the whole list.
        let answered = self.answered.take();
        let core_count = machine.in_flight_count();
        let missing = sent.iter().find(|id| machine.in_flight_request(**id).is_none());
        let stays = answered.filter(|id| machine.in_flight_request(*id).is_some());
        if core_count != self.bound.len() || missing.is_some() || stays.is_some() {
            return Err(format!(
                "after {}: core has {core_count} requests in flight{}{}, the model {:?}",
                self.input,
                missing.map_or(String::new(), |id| format!(" (without {id:?}, just sent)")),
                stays.map_or(String::new(), |id| format!(" (still {id:?}, just answered)")),
                self.bound.keys().collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    /// Compares every thread and every request in flight: what [`Oracle::compare`] looks at
    /// only where something changed. The driver runs it often enough that a change core made
    /// without reporting it is still found, at a cost that stays constant per step.
    pub fn audit(&self, machine: &Lifecycle) -> Result<(), String> {
        if self.blind.is_some() {
            return Ok(());
        }
        let Some(model) = self.model.as_ref() else { return Ok(()) };
        let core_threads: Vec<&str> = machine.threads().map(|t| t.0.as_str()).collect();
        if !core_threads.iter().copied().eq(model.threads().map(String::as_str)) {
            return Err(format!(
                "after {}: core runs threads {core_threads:?}, the model {:?}",
                self.input,
                model.threads().collect::<Vec<_>>()
            ));
        }
        self.compare_threads(machine, core_threads.into_iter())?;
        let in_flight: Vec<RequestId> = machine.in_flight().into_iter().map(|(id, _)| id).collect();
        if !in_flight.iter().eq(self.bound.keys()) {
            return Err(format!(
                "after {}: core has requests {in_flight:?} in flight, the model {:?}",
                self.input,
                self.bound.keys().collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    fn compare_state(&self, now: Timestamp, state: &State) -> Result<(), String> {
        let Some(model) = self.model.as_ref() else { return Ok(()) };
        let predicted = model.state(now);
        if predicted != *state {
            return Err(format!(
                "after {}: core reports {state:?}, the reference model {predicted:?}",
                self.input
            ));
        }
        Ok(())
    }

    /// Each thread's cached task and whether a turn is running or queued, core against model.
    fn compare_threads<'t>(
        &self,
        machine: &Lifecycle,
        threads: impl Iterator<Item = &'t str>,
    ) -> Result<(), String> {
        let Some(model) = self.model.as_ref() else { return Ok(()) };
        for thread in threads {
            let id = ThreadId::from(thread);
            let core = machine
                .has_thread(&id)
                .then(|| (machine.cached_task(&id), machine.is_turn_active(&id)));
            let predicted = model.thread_view(thread);
            let (core, predicted) = match (core, predicted) {
                (Some(c), Some(p)) => (c, p),
                (None, None) => continue,
                (None, Some(_)) => {
                    return Err(format!("after {}: core has no thread {thread}", self.input))
                }
                (Some(_), None) => {
                    return Err(format!(
                        "after {}: core runs thread {thread} the model does not know",
                        self.input
                    ))
                }
            };
            let same = match (predicted.0, core.0) {
                (None, None) => true,
                (Some(p), Some(c)) => {
                    p.agent_runtime_id == c.agent_runtime_id
                        && p.task_id == c.task_id
                        && p.registered_at == c.registered_at
                }
                _ => false,
            };
            if !same {
                return Err(format!(
                    "after {}: thread {thread} should cache {}, core caches {}",
                    self.input,
                    predicted.0.map_or("no task".to_owned(), task_text),
                    core.0.map_or("no task".to_owned(), |c| format!(
                        "{}/{} registered {}",
                        c.agent_runtime_id, c.task_id, c.registered_at
                    )),
                ));
            }
            if predicted.1 != core.1 {
                let says =
                    |active: bool| if active { "a turn running or queued" } else { "no turn" };
                return Err(format!(
                    "after {}: thread {thread} should have {}, core has {}",
                    self.input,
                    says(predicted.1),
                    says(core.1)
                ));
            }
        }
        Ok(())
    }
}

/// The operation core's answer routes to, as the model names it.
fn operation_of(request: &Request) -> Option<Operation> {
    Some(match request {
        Request::IdentityBiscuit | Request::IdentityRegister => Operation::Identity,
        Request::TaskBiscuit { thread } | Request::TaskRegister { thread, .. } => {
            Operation::Task(thread.clone())
        }
        Request::Model { thread, .. } => Operation::Model(thread.clone()),
        Request::Unknown { .. } => return None,
    })
}

/// The stream a command belongs to: (thread or `-`, stream name).
fn stream_key(out: &Out) -> (&str, &'static str) {
    match out {
        Out::Send(request) => {
            let thread = match request {
                Request::TaskBiscuit { thread }
                | Request::TaskRegister { thread, .. }
                | Request::Model { thread, .. } => thread.as_str(),
                Request::IdentityBiscuit | Request::IdentityRegister | Request::Unknown { .. } => {
                    "-"
                }
            };
            (thread, "requests")
        }
        Out::Append { thread, .. } => (thread, "rollout lines"),
        Out::Emit { thread, .. } => (thread, "events"),
        Out::StoreIdentity(_) | Out::DeleteIdentity => ("-", "auth store writes"),
        Out::FailureLog { thread, .. } => (thread.as_deref().unwrap_or("-"), "failure logs"),
    }
}

/// The commands in stream order: a stable sort, so each stream keeps its own order. Two lists
/// with equal streams are equal in this order.
fn by_stream(outs: &[Out]) -> Vec<&Out> {
    let mut sorted: Vec<&Out> = outs.iter().collect();
    sorted.sort_by(|a, b| stream_key(a).cmp(&stream_key(b)));
    sorted
}

/// A stream's key (thread or `-`, stream name) with its predicted and observed commands.
type StreamDiff<'o> = ((&'o str, &'static str), Vec<&'o Out>, Vec<&'o Out>);

/// The first stream on which two command lists differ.
fn first_difference<'o>(predicted: &'o [Out], observed: &'o [Out]) -> Option<StreamDiff<'o>> {
    let (p, o) = (by_stream(predicted), by_stream(observed));
    if p == o {
        return None;
    }
    let keys: BTreeSet<(&str, &'static str)> =
        p.iter().chain(o.iter()).map(|out| stream_key(out)).collect();
    keys.into_iter().find_map(|key| {
        let of = |list: &[&'o Out]| -> Vec<&'o Out> {
            list.iter().copied().filter(|out| stream_key(out) == key).collect()
        };
        let (ps, os) = (of(&p), of(&o));
        (ps != os).then_some((key, ps, os))
    })
}

fn list(outs: &[&Out]) -> String {
    if outs.is_empty() {
        return "nothing".to_owned();
    }
    let mut text = String::from("[");
    for (i, out) in outs.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(text, "{sep}{out}");
    }
    text.push(']');
    text
}

fn task_text(task: &Task) -> String {
    let origin = match &task.origin {
        terms::Origin::Registered { request } => format!("issued by request #{request}"),
        terms::Origin::Rollout { line } => format!("from line {line} of its rollout"),
    };
    format!(
        "{}/{} registered {} ({origin})",
        task.agent_runtime_id, task.task_id, task.registered_at
    )
}

fn describe(input: &Input<'_>) -> String {
    match input {
        Input::Start(thread) => format!("start {thread}"),
        Input::Resume(thread, _) => format!("resume {thread}"),
        Input::Fork(thread, _) => format!("fork {thread}"),
        Input::Compact(thread) => format!("compact {thread}"),
        Input::Rollback(thread, turns) => format!("rollback {thread} {turns}"),
        Input::Turn(thread, turn) => format!("turn-{turn} submitted on {thread}"),
        Input::Auth(auth) => format!("auth changed to {}", auth.describe()),
        Input::IdentityReplaced(stored) => format!(
            "auth store replaced with {}",
            stored.map_or("nothing", |s| s.agent_runtime_id.as_str())
        ),
        Input::Answer { seen, number, .. } => format!("the answer to request #{number} ({seen:?})"),
    }
}

fn workspace(auth: &Auth) -> Option<Workspace> {
    match auth {
        Auth::ChatGpt { binding, .. } => {
            Some(Workspace { account: binding.account_id.clone(), user: binding.user_id.clone() })
        }
        Auth::None | Auth::ApiKey => None,
    }
}

fn ident(stored: &StoredIdentity) -> Ident {
    Ident {
        agent_runtime_id: stored.agent_runtime_id.clone(),
        workspace: Workspace {
            account: stored.binding.account_id.clone(),
            user: stored.binding.user_id.clone(),
        },
        expires_at: stored.expires_at,
    }
}

/// The rollout's last `session_state`, read by the reference rules (not core's scan).
fn last_state(bytes: &[u8]) -> Option<Option<Task>> {
    let (line, task) = reference::last_session_state_line(bytes)?;
    Some(task.map(|t| Task {
        agent_runtime_id: t.agent_runtime_id,
        task_id: t.task_id,
        registered_at: t.registered_at,
        origin: terms::Origin::Rollout { line },
    }))
}
