//! The simulator's loop: one process (or none, after a crash), a virtual clock, an event queue
//! ordered by (virtual time, seeded tie-break, sequence), and a backend reached through a
//! transport. The loop pops the next event, sets `now`, feeds the core, carries out the commands
//! it returns, and checks the invariants. It decides nothing about the lifecycle.

use std::collections::BTreeMap;

use agentsim_core::wire::{self, HttpRequest, HttpResponse};
use agentsim_core::{
    Auth, Binding, Command, Config, ExpiryPolicy, InFlight, Level, Lifecycle, RequestFailure,
    RequestId, StoredIdentity, ThreadId, Timestamp, TurnId,
};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;

use crate::backend::{Backend, BackendConfig};
use crate::check::{Checker, Invariant};
use crate::fault::{Endpoint, FaultKind, FaultPlan, FaultRule};
use crate::judge::Judge;
use crate::oracle::{self, Input, Oracle, Seen};
use crate::report::{RunReport, Tally};
use crate::scenario::{
    AuthSpec, CrashPoint, InitialIdentity, Moment, ResumeSource, Scenario, Step,
};
use crate::seed;
use crate::store::{FileStore, MemoryStore, RolloutStore};
use crate::transport::{
    HttpTransport, MemoryTransport, SharedBackend, Transport, TransportError, MEMORY_BASE_URL,
};

mod edges;
mod judged;

use judged::core_state;

/// Which transport carries backend calls (also the CLI's `--transport`: the docs are its help).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportKind {
    /// Real HTTP to a wiremock server on loopback.
    Http,
    /// In-process calls into the same backend model.
    #[default]
    Memory,
}

impl TransportKind {
    /// `memory` or `http`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Memory => "memory",
            TransportKind::Http => "http",
        }
    }
}

/// Where rollouts are kept during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// In memory.
    #[default]
    Memory,
    /// Real files in a temporary directory.
    Files,
}

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// The transport.
    pub transport: TransportKind,
    /// The rollout store.
    pub store: StoreKind,
    /// Most events one step may process before the run fails as stuck.
    pub events_per_step_cap: u64,
    /// Whether to record the human timeline (fuzzing turns it off for speed).
    pub timeline: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            seed: None,
            transport: TransportKind::Memory,
            store: StoreKind::Memory,
            events_per_step_cap: 100_000,
            timeline: true,
        }
    }
}

/// Why a run could not be carried out at all (bad input or a broken harness). Invariant
/// violations and failed expectations are not errors: they are in the [`RunReport`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A step cannot be carried out in the state the run is in (a thread that is not live, a
    /// missing rollout file, ...).
    #[error("{file}:{line}: {message}")]
    Step { file: String, line: usize, message: String },
    /// The transport or the rollout store failed for a reason outside the scenario.
    #[error("harness failure: {0}")]
    Harness(String),
}

/// ` --features agentsim-core/<bug>,...` for the planted bugs compiled into this build (empty in a
/// normal build), so a printed replay command rebuilds the same lifecycle.
pub fn replay_features() -> String {
    let features: Vec<String> =
        agentsim_core::planted_bugs().map(|f| format!("agentsim-core/{f}")).collect();
    if features.is_empty() {
        String::new()
    } else {
        format!(" --features {}", features.join(","))
    }
}

/// The master seed when neither the options nor the scenario give one.
pub const DEFAULT_SEED: u64 = 0;

/// The full audit after a step runs every `threads / AUDIT_THREADS_PER_STEP` steps (every step
/// for small runs): it looks at about this many threads per step, on average.
const AUDIT_THREADS_PER_STEP: usize = 32;

/// The most virtual time `advance` steps may cover in one run: 1000 years, so every timestamp a
/// run writes stays one RFC 3339 can write (years up to 9999).
pub const MAX_VIRTUAL_MS: u64 = 1000 * 365 * 86_400_000;

/// Runs a scenario to the end (or to the first invariant violation).
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, RunError> {
    validate(scenario)?;
    let seed = options.seed.or(scenario.config.seed).unwrap_or(DEFAULT_SEED);
    let mut sim = Sim::new(scenario, options, seed)?;
    sim.run_steps(scenario)?;
    Ok(sim.finish(scenario))
}

/// Checks what the parser cannot: names that refer to the core (coverage marks, event kinds).
/// [`crate::scenario::load`] checks them too, with a column; this catches scenarios built in code.
pub fn validate(scenario: &Scenario) -> Result<(), RunError> {
    for expect in &scenario.expects {
        if let Some(message) = crate::scenario::unknown_core_name(&expect.value) {
            let file = scenario.path.display().to_string();
            return Err(RunError::Step { file, line: expect.line, message });
        }
    }
    Ok(())
}

enum Scheduled {
    Deliver {
        generation: u32,
        id: RequestId,
        endpoint: Endpoint,
        response: HttpResponse,
        /// The request's number in the request log.
        number: u64,
        /// What a correct client learns from it, by the backend's records (for the oracle).
        seen: Seen,
    },
    Fail {
        generation: u32,
        id: RequestId,
        failure: RequestFailure,
        number: u64,
    },
}

struct Process {
    machine: Lifecycle,
    generation: u32,
}

pub(crate) struct Sim {
    seed: u64,
    options: RunOptions,
    start: Timestamp,
    now: Timestamp,
    queue: BTreeMap<(Timestamp, u64, u64), Scheduled>,
    next_seq: u64,
    latency_rng: ChaCha20Rng,
    fault_rng: ChaCha20Rng,
    order_rng: ChaCha20Rng,
    world_rng: ChaCha20Rng,
    latency_ms: (u64, u64),
    backend: SharedBackend,
    transport: Box<dyn Transport>,
    faults: FaultPlan,
    config: Config,
    auth: Auth,
    tokens: BTreeMap<String, String>,
    auth_store: Option<StoredIdentity>,
    process: Option<Process>,
    generation: u32,
    store: Box<dyn RolloutStore>,
    crash_on_append: Option<String>,
    crash_on_response: Option<Endpoint>,
    /// World changes armed by `on` steps in the running process.
    arms: Vec<edges::Arm>,
    /// What the core must hear of fired world changes once the current drain is over.
    deferred: Vec<edges::Deferred>,
    /// Set while a resume's drain is checked, so deferred inputs wait for the check.
    hold_deferred: bool,
    next_turn: u32,
    request_count: u64,
    pub(crate) tally: Tally,
    pub(crate) checker: Checker,
    oracle: Oracle,
    judge: Judge,
    step_line: usize,
    step_index: usize,
}

impl Sim {
    fn new(scenario: &Scenario, options: &RunOptions, seed: u64) -> Result<Sim, RunError> {
        let c = &scenario.config;
        let backend = Backend::new(
            seed::bytes32(seed, "backend"),
            BackendConfig { identity_ttl_ms: c.identity_ttl_ms },
        );
        let backend: SharedBackend = std::sync::Arc::new(std::sync::Mutex::new(backend));
        let transport: Box<dyn Transport> = match options.transport {
            TransportKind::Memory => Box::new(MemoryTransport::new(backend.clone())),
            TransportKind::Http => {
                Box::new(HttpTransport::start(backend.clone()).map_err(|e| {
                    RunError::Harness(format!("cannot start the loopback backend: {e:#}"))
                })?)
            }
        };
        let store: Box<dyn RolloutStore> = match options.store {
            StoreKind::Memory => Box::<MemoryStore>::default(),
            StoreKind::Files => Box::new(FileStore::temporary().map_err(|e| {
                RunError::Harness(format!("cannot create a rollout directory: {e}"))
            })?),
        };
        let config = Config {
            use_agent_identity: c.use_agent_identity,
            expiry: c.expiry,
            persist_task: c.persist_task,
            base_url: MEMORY_BASE_URL.to_owned(),
            ..Config::default()
        };
        let rules: Vec<FaultRule> = scenario.faults.iter().map(|f| f.value.clone()).collect();
        let mut sim = Sim {
            seed,
            options: options.clone(),
            start: Timestamp::SIM_EPOCH,
            now: Timestamp::SIM_EPOCH,
            queue: BTreeMap::new(),
            next_seq: 0,
            latency_rng: seed::stream(seed, "latency"),
            fault_rng: seed::stream(seed, "faults"),
            order_rng: seed::stream(seed, "order"),
            world_rng: seed::stream(seed, "world"),
            latency_ms: c.latency_ms,
            backend,
            transport,
            faults: FaultPlan::new(rules, c.random_faults.clone()),
            config,
            auth: Auth::None,
            tokens: BTreeMap::new(),
            auth_store: None,
            process: None,
            generation: 0,
            store,
            crash_on_append: None,
            crash_on_response: None,
            arms: Vec::new(),
            deferred: Vec::new(),
            hold_deferred: false,
            next_turn: 1,
            request_count: 0,
            tally: Tally::new(options.timeline),
            checker: Checker::new(
                c.use_agent_identity,
                c.persist_task,
                c.expiry == ExpiryPolicy::Reacquire,
            ),
            oracle: Oracle::default(),
            judge: Judge::default(),
            step_line: 0,
            step_index: 0,
        };
        sim.auth = sim.auth_for(&c.auth);
        if c.identity == InitialIdentity::Warm {
            sim.register_out_of_band("warm identity");
        }
        sim.restart_process();
        Ok(sim)
    }

    // ---- steps ---------------------------------------------------------------------------

    fn run_steps(&mut self, scenario: &Scenario) -> Result<(), RunError> {
        for (index, step) in scenario.steps.iter().enumerate() {
            if self.checker.violation.is_some() {
                break;
            }
            self.step_line = step.line;
            self.step_index = index + 1;
            self.tally.note(
                self.now,
                self.start,
                "-",
                &format!("step {} (line {}): {}", index + 1, step.line, step.value),
            );
            self.step(scenario, &step.value).map_err(|message| RunError::Step {
                file: scenario.path.display().to_string(),
                line: step.line,
                message,
            })?;
            self.check_quiescent(false);
        }
        if self.checker.violation.is_none() {
            self.tally.note(self.now, self.start, "-", "end of steps: settle");
            self.settle().map_err(|message| RunError::Step {
                file: scenario.path.display().to_string(),
                line: 0,
                message,
            })?;
            self.check_quiescent(true);
        }
        Ok(())
    }

    fn step(&mut self, scenario: &Scenario, step: &Step) -> Result<(), String> {
        match step {
            Step::Start { thread } => {
                if self.store.exists(thread) {
                    return Err(format!(
                        "thread {thread:?} already has a rollout: use `resume {thread}`"
                    ));
                }
                let machine = self.live_machine()?;
                if machine.has_thread(&ThreadId(thread.clone())) {
                    return Err(format!("thread {thread:?} is already running"));
                }
                let now = self.now;
                self.oracle.feed(now, Input::Start(thread));
                self.machine_mut().start_thread(now, ThreadId(thread.clone()));
                self.drain(None);
            }
            Step::Resume { thread, from } => self.resume(scenario, thread, from)?,
            Step::Fork { child, parent } => {
                let bytes = self
                    .read_rollout(parent)?
                    .ok_or_else(|| format!("thread {parent:?} has no rollout to fork"))?;
                if self.store.exists(child) {
                    return Err(format!("thread {child:?} already has a rollout"));
                }
                self.live_machine()?;
                self.write_rollout(child, &bytes)?;
                let now = self.now;
                self.checker.after_fork(&ThreadId(child.clone()), &bytes);
                self.oracle.feed(now, Input::Fork(child, &bytes));
                let writes_null = self.config.use_agent_identity && self.config.persist_task;
                self.judge.forked(&ThreadId(child.clone()), &bytes, writes_null);
                let scan = self.machine_mut().fork_thread(now, ThreadId(child.clone()), &bytes);
                self.checker.scan_agrees(&ThreadId(child.clone()), &bytes, &scan, self.step_index);
                self.tally.note(
                    self.now,
                    self.start,
                    child,
                    &format!("forked from {parent}: copied {} lines", scan.lines),
                );
                self.drain(None);
            }
            Step::Turn { thread, text, wait } => {
                let id = ThreadId(thread.clone());
                if !self.live_machine()?.has_thread(&id) {
                    return Err(format!("thread {thread:?} is not running in this process: start or resume it first"));
                }
                let turn = TurnId(self.next_turn);
                self.next_turn += 1;
                let now = self.now;
                self.checker.turn_submitted(&id, turn);
                self.oracle.feed(now, Input::Turn(thread, turn.0));
                self.judge.submitted(&id, turn);
                self.machine_mut().submit_turn(now, &id, turn, text);
                self.drain(None);
                if *wait {
                    self.run_until(|sim| sim.turn_done(&id, turn))?;
                }
            }
            Step::Advance { ms } => {
                if self.now.since(self.start).saturating_add(*ms) > MAX_VIRTUAL_MS {
                    return Err(format!(
                        "this advance would take the run past {}d of virtual time, the most a \
                         run may cover: advance less",
                        MAX_VIRTUAL_MS / 86_400_000
                    ));
                }
                let target = self.now.plus_ms(*ms);
                self.run_until_time(target)?;
                self.now = target;
            }
            Step::Settle => self.settle()?,
            Step::RotateIdentity => {
                if self.auth.binding().is_none() {
                    self.tally.note(
                        self.now,
                        self.start,
                        "-",
                        "rotate_identity: no workspace is signed in; nothing to rotate",
                    );
                } else {
                    self.register_out_of_band("rotated identity");
                    self.notify_identity_replaced();
                }
            }
            Step::ExpireIdentity | Step::RevokeIdentity => {
                let Some(runtime) = self.auth_store.as_ref().map(|i| i.agent_runtime_id.clone())
                else {
                    self.tally.note(
                        self.now,
                        self.start,
                        "-",
                        "no identity in the auth store; nothing to expire or revoke",
                    );
                    return Ok(());
                };
                let mut backend = self.backend.lock().expect("backend lock");
                backend.set_now(self.now);
                if matches!(step, Step::ExpireIdentity) {
                    backend.expire(&runtime);
                } else {
                    backend.revoke(&runtime);
                }
                drop(backend);
                let verb = if matches!(step, Step::ExpireIdentity) { "expired" } else { "revoked" };
                self.tally.note(self.now, self.start, "-", &format!("backend {verb} {runtime}"));
            }
            Step::Auth(spec) => {
                self.auth = self.auth_for(spec);
                self.notify_auth_changed();
            }
            Step::Crash(point) => match point {
                CrashPoint::Now => self.crash("crash"),
                CrashPoint::OnAppend(thread) => self.crash_on_append = Some(thread.clone()),
                CrashPoint::OnResponse(endpoint) => self.crash_on_response = Some(*endpoint),
            },
            Step::Restart(change) => {
                if self.process.is_some() {
                    self.crash("restart kills the running process");
                }
                self.change_config(change);
                self.restart_process();
            }
            Step::Heal => self.faults.heal(),
            Step::AdvanceToExpiry { offset_ms } => {
                if let Some(ms) = self.ms_until_expiry(*offset_ms) {
                    return self.step(scenario, &Step::Advance { ms });
                }
            }
            Step::Damage { thread, kind } => self.damage(thread, *kind)?,
            Step::On { endpoint, moment, world } => self.arm(*endpoint, *moment, world)?,
        }
        Ok(())
    }

    fn resume(
        &mut self,
        scenario: &Scenario,
        thread: &str,
        from: &ResumeSource,
    ) -> Result<(), String> {
        let id = ThreadId(thread.to_owned());
        if self.live_machine()?.has_thread(&id) {
            return Err(format!(
                "thread {thread:?} is already running in this process: `crash` or `restart` first"
            ));
        }
        let bytes = match from {
            ResumeSource::Own => self
                .read_rollout(thread)?
                .ok_or_else(|| format!("thread {thread:?} has no rollout to resume"))?,
            ResumeSource::File(path) => {
                let full = scenario.resolve(path);
                let bytes = std::fs::read(&full)
                    .map_err(|e| format!("cannot read rollout {}: {e}", full.display()))?;
                if self.store.exists(thread) {
                    return Err(format!(
                        "thread {thread:?} already has a rollout; resume it without `from`"
                    ));
                }
                self.write_rollout(thread, &bytes)?;
                bytes
            }
            ResumeSource::Thread(other) => {
                let bytes = self
                    .read_rollout(other)?
                    .ok_or_else(|| format!("thread {other:?} has no rollout to copy"))?;
                if self.store.exists(thread) {
                    return Err(format!(
                        "thread {thread:?} already has a rollout; resume it without `from_thread`"
                    ));
                }
                self.write_rollout(thread, &bytes)?;
                bytes
            }
        };
        let now = self.now;
        let current = {
            let backend = self.backend.lock().expect("backend lock");
            self.judged_current_runtime(&backend)
        };
        self.oracle.feed(now, Input::Resume(thread, &bytes));
        self.judge.resumed(&id, &bytes);
        let scan = self.machine_mut().resume_thread(now, id.clone(), &bytes);
        let restored = self.machine_mut().cached_task(&id).cloned();
        let last = match &scan.last_state {
            None => "no session_state".to_owned(),
            Some(s) => format!(
                "last session_state at line {}: {}",
                s.line,
                crate::report::task_text(s.task.as_ref())
            ),
        };
        self.tally.note(
            self.now,
            self.start,
            thread,
            &format!(
                "resume: {} lines, {last}, {} skipped, restored {}",
                scan.lines,
                scan.skipped.len(),
                crate::report::task_text(restored.as_ref())
            ),
        );
        for skipped in &scan.skipped {
            self.tally.note(
                self.now,
                self.start,
                thread,
                &format!("resume skipped line {}: {}", skipped.line, skipped.reason),
            );
        }
        self.hold_deferred = true;
        let commands = self.drain(None);
        self.hold_deferred = false;
        self.checker.scan_agrees(&id, &bytes, &scan, self.step_index);
        self.checker.after_resume(
            &id,
            &bytes,
            current.as_deref(),
            restored.as_ref(),
            &commands,
            self.step_index,
        );
        self.feed_deferred();
        Ok(())
    }

    fn settle(&mut self) -> Result<(), String> {
        self.run_until(|sim| sim.queue.is_empty())
    }

    // ---- the loop ------------------------------------------------------------------------

    fn run_until(&mut self, done: impl Fn(&Sim) -> bool) -> Result<(), String> {
        let mut events = 0u64;
        while !done(self) {
            if self.checker.violation.is_some() {
                return Ok(());
            }
            if !self.pop_next(None) {
                // A liveness failure of the lifecycle, not bad input: report it like an invariant.
                let step = self.step_index;
                self.checker.violate(Invariant::Stuck, step, "the run is stuck: the step waits for a turn that can never complete (nothing is in flight)".into());
                return Ok(());
            }
            events += 1;
            self.check_event_cap(events);
        }
        Ok(())
    }

    /// A step that processes this many events is looping: fail loudly instead of running forever.
    fn check_event_cap(&mut self, events: u64) {
        if events >= self.options.events_per_step_cap {
            let step = self.step_index;
            let cap = self.options.events_per_step_cap;
            self.checker.violate(
                Invariant::StepCap,
                step,
                format!("the drive loop hit its cap of {cap} events in one step"),
            );
        }
    }

    fn run_until_time(&mut self, target: Timestamp) -> Result<(), String> {
        let mut events = 0u64;
        while self.checker.violation.is_none() && self.pop_next(Some(target)) {
            events += 1;
            self.check_event_cap(events);
        }
        Ok(())
    }

    /// Pops and handles the next event (not later than `limit`). False when there is none.
    fn pop_next(&mut self, limit: Option<Timestamp>) -> bool {
        let Some((&key, _)) = self.queue.first_key_value() else { return false };
        if limit.is_some_and(|l| key.0 > l) {
            return false;
        }
        let event = self.queue.remove(&key).expect("present");
        self.now = self.now.max(key.0);
        let now = self.now;
        match event {
            Scheduled::Deliver { generation, id, endpoint, response, number, seen } => {
                if !self.is_current(generation) {
                    return true;
                }
                let what = self.in_flight_of(id);
                let awaited = what.is_some();
                if awaited && self.crash_on_response == Some(endpoint) && response.is_success() {
                    self.crash_on_response = None;
                    self.crash(&format!(
                        "crash on the {endpoint} response (the backend already succeeded)"
                    ));
                    return true;
                }
                // Every delivery passes here: build its timeline text only when one is kept.
                if self.tally.timeline_on() {
                    let text = if awaited {
                        format!("← {} {}", response.status, purpose_text(&what))
                    } else {
                        format!(
                            "← {} late answer to request #{number} ({endpoint}), after its timeout",
                            response.status
                        )
                    };
                    self.tally.note(now, self.start, &purpose_thread(&what), &text);
                }
                self.oracle.feed(now, Input::Answer { id, seen: &seen, number });
                if let Some(why) = self.oracle.went_blind() {
                    let text = format!("the reference model stops predicting: {why}");
                    self.tally.note(now, self.start, "-", &text);
                }
                if let (Some(InFlight::TaskRegister { thread, .. }), Seen::Task { task_id }) =
                    (&what, &seen)
                {
                    self.judge.issued(thread, task_id);
                }
                self.machine_mut().handle_response(now, id, response);
                self.drain(Some((what, id)));
                if awaited {
                    self.fire_arms(Some(endpoint), Moment::Answered);
                    self.feed_deferred();
                }
            }
            Scheduled::Fail { generation, id, failure, number } => {
                if !self.is_current(generation) {
                    return true;
                }
                let what = self.in_flight_of(id);
                let text = match failure {
                    RequestFailure::Timeout => "timed out",
                    RequestFailure::Connection => "connection failed",
                };
                if self.tally.timeline_on() {
                    let text = format!("✗ {} {text}", purpose_text(&what));
                    self.tally.note(now, self.start, &purpose_thread(&what), &text);
                }
                self.oracle.feed(now, Input::Answer { id, seen: &Seen::NoAnswer, number });
                self.machine_mut().handle_request_failed(now, id, failure);
                self.drain(Some((what, id)));
            }
        }
        true
    }

    /// Carries out every command the machine has queued, in order; returns them. `cause`: the
    /// answer (what it was for, its id) the machine was just fed, if any.
    ///
    /// The checks that follow look only at the threads core reports changed (and those the
    /// commands name), so an event costs the same with ten threads or ten thousand.
    fn drain(&mut self, cause: Option<(Option<InFlight>, RequestId)>) -> Vec<Command> {
        let mut done = Vec::new();
        while let Some(command) = self.process.as_mut().and_then(|p| p.machine.poll_command()) {
            self.execute(&command);
            done.push(command);
            if self.checker.violation.is_some() {
                break;
            }
        }
        let Some(process) = self.process.as_mut() else {
            self.feed_deferred();
            return done;
        };
        let touched = process.machine.take_touched();
        let machine = &process.machine;
        let state = core_state(machine, self.now);
        if let Err(divergence) = self.oracle.compare(self.now, &done, machine, &state, &touched) {
            self.checker.violate(Invariant::ReferenceDivergence, self.step_index, divergence);
        }
        for thread in &touched {
            if let Some(task) = machine.cached_task(thread) {
                self.judge.cached(thread, task, self.step_index);
            }
        }
        if let Some(v) = self.judge.violation.take() {
            self.checker.violate(v.invariant, v.step, v.message);
        }
        let answered = cause.as_ref().map(|(_, id)| *id);
        self.checker.track_in_flight(machine, &done, answered, self.step_index);
        if let Some((what, _)) = &cause {
            self.checker.after_delivery(what.as_ref(), &touched, machine, &done, self.step_index);
        }
        self.checker.after_event(machine, &touched);
        self.feed_deferred();
        done
    }

    fn execute(&mut self, command: &Command) {
        let now = self.now;
        match command {
            Command::Send { id, request, timeout_ms } => self.send(*id, request, *timeout_ms),
            Command::Append { thread, line } => {
                let json = line.to_json();
                if self.crash_on_append.as_deref() == Some(thread.0.as_str()) {
                    self.crash_on_append = None;
                    let torn = &json.as_bytes()[..json.len().div_ceil(2)];
                    if let Err(e) = self.store.append(&thread.0, torn) {
                        self.checker.harness_failure(format!("rollout append failed: {e}"));
                    }
                    self.crash(&format!(
                        "crash in the middle of appending to {thread}'s rollout (torn line)"
                    ));
                    return;
                }
                let backend = self.backend.lock().expect("backend lock");
                let current = self.judged_current_runtime(&backend);
                self.checker.before_append(
                    current.as_deref(),
                    &backend,
                    thread,
                    &line.item,
                    self.step_index,
                );
                if let agentsim_core::RolloutItem::SessionState(Some(task)) = &line.item {
                    self.judge.appended_task(thread, task, self.step_index);
                }
                if let Err(e) = self.store.append_line(&thread.0, &json) {
                    self.checker.harness_failure(format!("rollout append failed: {e}"));
                }
                self.tally.append(now, self.start, thread, &line.item);
            }
            Command::Emit(event) => {
                self.checker.on_event(event, self.step_index);
                self.judge.event(event, self.step_index);
                self.tally.event(now, self.start, event);
            }
            Command::StoreIdentity(stored) => {
                self.checker.secrets.push(stored.private_key.clone());
                self.tally.note(
                    now,
                    self.start,
                    "-",
                    &format!(
                        "auth store: identity {} stored{}",
                        stored.agent_runtime_id,
                        expiry_text(stored.expires_at)
                    ),
                );
                self.auth_store = Some(stored.clone());
            }
            Command::DeleteIdentity => {
                self.tally.note(now, self.start, "-", "auth store: identity deleted");
                self.auth_store = None;
            }
            Command::Log(line) => {
                forward_to_tracing(line, &crate::report::clock(now, self.start));
                self.tally.log(now, self.start, line);
            }
            Command::Mark(name) => self.tally.mark(name),
        }
    }

    fn send(&mut self, id: RequestId, request: &HttpRequest, timeout_ms: u64) {
        let generation = self.generation;
        let endpoint = Endpoint::of_path(request.path());
        let what = self.in_flight_of(id);
        self.request_count += 1;
        let fault = match endpoint {
            Some(endpoint) => {
                let rng = &mut self.fault_rng;
                self.faults.decide(endpoint, || rng.next_u32())
            }
            None => None,
        };
        let latency = seed::uniform(&mut self.latency_rng, self.latency_ms.0, self.latency_ms.1);
        self.checker.before_send(request, endpoint, &what, self.step_index);
        if let Some(InFlight::Model(thread, turn)) = &what {
            self.judge_model_request(thread, *turn, request);
        }
        self.fire_arms(endpoint, Moment::Before);
        self.backend.lock().expect("backend lock").set_now(self.now);
        let outcome = self.transport.exchange(request, fault.as_ref());
        let answer = self.backend.lock().expect("backend lock").take_last_answer();
        self.fire_arms(endpoint, Moment::Sent);
        let number = self.request_count;
        let mut late = None;
        let (at, scheduled, outcome_text) = match (outcome, &fault) {
            (Err(TransportError::Reset), _) => {
                let at = self.now.plus_ms(latency.min(timeout_ms));
                (
                    at,
                    Scheduled::Fail { generation, id, failure: RequestFailure::Connection, number },
                    "connection reset".to_owned(),
                )
            }
            (Err(TransportError::Io(e)), _) => {
                self.checker.harness_failure(format!(
                    "transport failed on {} {}: {e}",
                    request.method.as_str(),
                    request.path()
                ));
                return;
            }
            // The backend handled the request but the client times out first: with a timeout
            // fault the answer comes `latency` after the timeout, and an answer slower than the
            // timeout (spec section 2: every call has 15 s, however the latency range was written)
            // comes at `latency`. Either way it still arrives, and the core must ignore it.
            (Ok(response), fault)
                if matches!(fault, Some(FaultKind::Timeout)) || latency >= timeout_ms =>
            {
                let (late_at, text) = if matches!(fault, Some(FaultKind::Timeout)) {
                    (timeout_ms + latency, format!("no answer: times out after {timeout_ms}ms, the answer arrives {latency}ms later"))
                } else {
                    (
                        latency,
                        format!("no answer within {timeout_ms}ms (latency {latency}ms): times out"),
                    )
                };
                let endpoint = endpoint.unwrap_or(Endpoint::Model);
                // The late answer is the backend's own (a timeout fault reshapes nothing), or the
                // reshaped answer of another fault that came too slowly.
                let shape = fault.as_ref().filter(|f| !matches!(f, FaultKind::Timeout));
                let seen = oracle::classify(endpoint, shape, answer.as_ref());
                late = Some((
                    self.now.plus_ms(late_at),
                    Scheduled::Deliver { generation, id, endpoint, response, number, seen },
                ));
                (
                    self.now.plus_ms(timeout_ms),
                    Scheduled::Fail { generation, id, failure: RequestFailure::Timeout, number },
                    text,
                )
            }
            (Ok(response), _) => {
                let at = self.now.plus_ms(latency);
                let text = format!(
                    "{} after {latency}ms{}",
                    response.status,
                    crate::report::response_summary(endpoint, &response)
                );
                self.checker.secrets_from_response(&response);
                let endpoint = endpoint.unwrap_or(Endpoint::Model);
                let seen = oracle::classify(endpoint, fault.as_ref(), answer.as_ref());
                (at, Scheduled::Deliver { generation, id, endpoint, response, number, seen }, text)
            }
        };
        let fault_text =
            fault.as_ref().map(|f| format!(" [fault {}]", f.name())).unwrap_or_default();
        let line = format!(
            "#{} {} {} {}{} ({}){fault_text} -> {outcome_text}",
            self.request_count,
            crate::report::clock(self.now, self.start),
            request.method.as_str(),
            request.path(),
            crate::report::request_summary(request),
            purpose_text(&what),
        );
        self.tally.request(self.now, self.start, &purpose_thread(&what), endpoint, line);
        for (at, scheduled) in std::iter::once((at, scheduled)).chain(late) {
            let tie = self.order_rng.next_u64();
            self.next_seq += 1;
            self.queue.insert((at, tie, self.next_seq), scheduled);
        }
    }

    // ---- process lifecycle ---------------------------------------------------------------

    fn crash(&mut self, why: &str) {
        self.tally.note(
            self.now,
            self.start,
            "-",
            &format!("process {} dies: {why}", self.generation),
        );
        self.process = None;
        self.oracle.process_died();
        self.judge.process_died();
        self.crash_on_append = None;
        self.crash_on_response = None;
        self.disarm_world();
        // Everything in flight dies with the process.
        self.queue.clear();
    }

    fn restart_process(&mut self) {
        self.generation += 1;
        let core_seed = seed::bytes32(self.seed, &format!("core/{}", self.generation));
        let machine = Lifecycle::new(
            self.config.clone(),
            self.auth.clone(),
            self.auth_store.clone(),
            core_seed,
        );
        self.process = Some(Process { machine, generation: self.generation });
        self.oracle.process_started(&self.config, &self.auth, self.auth_store.as_ref());
        self.checker.process_started(self.generation);
        self.tally.note(
            self.now,
            self.start,
            "-",
            &format!("process {} starts ({})", self.generation, self.auth.describe()),
        );
        self.drain(None);
    }

    /// Policy changes for the next process (a config edit, a feature flag rollout).
    fn change_config(&mut self, change: &crate::scenario::ConfigChange) {
        if *change == crate::scenario::ConfigChange::default() {
            return;
        }
        if let Some(flag) = change.use_agent_identity {
            self.config.use_agent_identity = flag;
        }
        if let Some(expiry) = change.expiry {
            self.config.expiry = expiry;
        }
        if let Some(persist) = change.persist_task {
            self.config.persist_task = persist;
        }
        let c = &self.config;
        self.checker.set_policies(
            c.use_agent_identity,
            c.persist_task,
            c.expiry == ExpiryPolicy::Reacquire,
        );
        let text = format!(
            "config for the next process: flag={} expiry={} persist_task={}",
            if c.use_agent_identity { "on" } else { "off" },
            if c.expiry == ExpiryPolicy::Reacquire { "reacquire" } else { "as_shipped" },
            c.persist_task
        );
        self.tally.note(self.now, self.start, "-", &text);
    }

    fn is_current(&self, generation: u32) -> bool {
        self.process.as_ref().is_some_and(|p| p.generation == generation)
    }

    fn live_machine(&self) -> Result<&Lifecycle, String> {
        self.process.as_ref().map(|p| &p.machine).ok_or_else(|| {
            "no process is running (the last one crashed): add a `restart` step".to_owned()
        })
    }

    fn machine_mut(&mut self) -> &mut Lifecycle {
        &mut self.process.as_mut().expect("a live process").machine
    }

    fn in_flight_of(&self, id: RequestId) -> Option<InFlight> {
        let p = self.process.as_ref()?;
        p.machine.in_flight_request(id)
    }

    fn turn_done(&self, thread: &ThreadId, turn: TurnId) -> bool {
        self.process.is_none() || self.checker.turn_completed(thread, turn)
    }

    // ---- the world outside the process ---------------------------------------------------

    fn auth_for(&mut self, spec: &AuthSpec) -> Auth {
        match spec {
            AuthSpec::None => Auth::None,
            AuthSpec::ApiKey => Auth::ApiKey,
            AuthSpec::ChatGpt { account, user } => {
                let token = match self.tokens.get(account) {
                    Some(t) => t.clone(),
                    None => {
                        let mut rng = seed::stream(self.seed, &format!("token/{account}"));
                        let token = format!("at-{}", seed::hex(&mut rng, 24));
                        self.backend.lock().expect("backend lock").add_account(account, &token);
                        self.tokens.insert(account.clone(), token.clone());
                        self.checker.secrets.push(token.clone());
                        token
                    }
                };
                Auth::ChatGpt {
                    binding: Binding { account_id: account.clone(), user_id: user.clone() },
                    access_token: token,
                }
            }
        }
    }

    /// Another process (or an earlier session) registers an identity and writes the auth store.
    fn register_out_of_band(&mut self, why: &str) {
        let Some(binding) = self.auth.binding().cloned() else { return };
        let mut seed_bytes = [0u8; 32];
        self.world_rng.fill_bytes(&mut seed_bytes);
        let key = wire::IdentityKey::from_seed(seed_bytes);
        let mut backend = self.backend.lock().expect("backend lock");
        backend.set_now(self.now);
        let response =
            backend.register_identity_out_of_band(&binding.account_id, &key.ssh_public_key());
        drop(backend);
        let stored = StoredIdentity {
            binding,
            agent_runtime_id: response.agent_runtime_id,
            private_key: key.to_pkcs8_base64(),
            registered_at: self.now,
            expires_at: response.expires_at.and_then(|t| Timestamp::parse_rfc3339(&t).ok()),
        };
        self.checker.secrets.push(stored.private_key.clone());
        self.tally.note(
            self.now,
            self.start,
            "-",
            &format!(
                "{why}: auth store now holds {}{}",
                stored.agent_runtime_id,
                expiry_text(stored.expires_at)
            ),
        );
        self.auth_store = Some(stored);
    }

    fn read_rollout(&self, thread: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.read(thread).map_err(|e| format!("cannot read {thread}'s rollout: {e}"))
    }

    fn write_rollout(&mut self, thread: &str, bytes: &[u8]) -> Result<(), String> {
        self.store
            .append(thread, bytes)
            .map_err(|e| format!("cannot write {thread}'s rollout: {e}"))
    }

    /// After every step: invariant 13 for the threads the step changed, and every so often a
    /// full audit (every thread, every request in flight, against the reference model), spaced
    /// so its cost per step stays constant however many threads run.
    fn check_quiescent(&mut self, at_end: bool) {
        if let Some(p) = self.process.as_ref() {
            let current = {
                let backend = self.backend.lock().expect("backend lock");
                self.judged_current_runtime(&backend)
            };
            let every = (p.machine.thread_count() / AUDIT_THREADS_PER_STEP).max(1);
            let audit = at_end || self.step_index % every == 0;
            self.checker.quiescent(&p.machine, current.as_deref(), audit, self.step_index);
            if audit {
                if let Err(divergence) = self.oracle.audit(&p.machine) {
                    self.checker.violate(
                        Invariant::ReferenceDivergence,
                        self.step_index,
                        divergence,
                    );
                }
            }
        }
    }

    fn finish(mut self, scenario: &Scenario) -> RunReport {
        let mut rollouts = BTreeMap::new();
        for thread in self.store.threads() {
            match self.store.read(&thread) {
                Ok(Some(bytes)) => {
                    rollouts.insert(thread, bytes);
                }
                Ok(None) => {}
                Err(e) => {
                    self.checker.harness_failure(format!("cannot read {thread}'s rollout: {e}"))
                }
            }
        }
        let cached: BTreeMap<String, Option<agentsim_core::AgentTask>> = match self.process.as_ref()
        {
            Some(p) => p
                .machine
                .threads()
                .map(|t| (t.0.clone(), p.machine.cached_task(t).cloned()))
                .collect(),
            None => BTreeMap::new(),
        };
        let current_runtime = self
            .process
            .as_ref()
            .and_then(|p| p.machine.current_runtime(self.now).map(str::to_owned));
        let backend = self.backend.lock().expect("backend lock");
        if self.checker.violation.is_none() {
            if let Some(v) = backend.violations().first() {
                self.checker.violate(
                    Invariant::ProtocolClean,
                    self.step_index,
                    format!("the backend refused a protocol violation by the client: {v}"),
                );
            }
        }
        let stats = backend.stats();
        drop(backend);
        RunReport::build(
            scenario,
            self.seed,
            self.options.transport,
            self.tally,
            self.checker,
            rollouts,
            cached,
            current_runtime,
            stats,
            self.now.since(self.start),
        )
    }
}

/// The thread a request works for, or `-` for process-wide ones.
pub(crate) fn purpose_thread(what: &Option<InFlight>) -> String {
    match what {
        Some(
            InFlight::TaskBiscuit { thread, .. }
            | InFlight::TaskRegister { thread, .. }
            | InFlight::Model(thread, _),
        ) => thread.0.clone(),
        _ => "-".into(),
    }
}

/// What a request is for, in words.
pub(crate) fn purpose_text(what: &Option<InFlight>) -> String {
    match what {
        Some(InFlight::IdentityBiscuit) => "identity biscuit".into(),
        Some(InFlight::IdentityRegister) => "identity registration".into(),
        Some(InFlight::TaskBiscuit { thread, .. }) => format!("task biscuit for {thread}"),
        Some(InFlight::TaskRegister { thread, .. }) => format!("task registration for {thread}"),
        Some(InFlight::Model(thread, turn)) => format!("model request for {thread} {turn}"),
        None => "unknown request".into(),
    }
}

fn expiry_text(at: Option<Timestamp>) -> String {
    at.map(|t| format!(", expires {}", t.rfc3339_secs())).unwrap_or_default()
}

/// `vt`: the run's virtual time, the only clock a log line of a run has.
fn forward_to_tracing(line: &agentsim_core::LogLine, vt: &str) {
    let fields = line.fields.iter().map(|(k, v)| format!(" {k}={v}")).collect::<String>();
    match line.level {
        Level::Error => tracing::error!(target: "agentsim_core", %vt, "{}{fields}", line.message),
        Level::Warn => tracing::warn!(target: "agentsim_core", %vt, "{}{fields}", line.message),
        Level::Info => tracing::info!(target: "agentsim_core", %vt, "{}{fields}", line.message),
        Level::Debug => tracing::debug!(target: "agentsim_core", %vt, "{}{fields}", line.message),
    }
}
