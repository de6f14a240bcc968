//! The simulator's loop: one process (or none, after a crash), a virtual clock, an event queue
//! ordered by (virtual time, seeded tie-break, sequence), and a backend reached through a
//! transport. The loop pops the next event, sets `now`, feeds the core, carries out the commands
//! it returns, and checks the invariants. It decides nothing about the lifecycle.
//!
//! What it drives lives apart, under `engine/`: `world.rs` the world outside the process (auth,
//! tokens, the auth store, out-of-band registrations, policies), `network.rs` requests on their
//! way and the event queue, `host.rs` the process and its rollout store, `ledger.rs` the records
//! and the checker, `steps.rs` each scenario step, `commands.rs` each of core's commands,
//! `judged.rs` what the oracles are fed, `edges.rs` the steps that reach the edges.

use std::collections::BTreeMap;

use agentsim_core::{
    Command, Config, ExpiryPolicy, InFlight, RequestFailure, RequestId, ThreadId, Timestamp, TurnId,
};

use crate::backend::{Backend, BackendConfig};
use crate::check::{Checker, Invariant, Observation};
use crate::fault::{FaultPlan, FaultRule};
use crate::judge::Judge;
use crate::oracle::{Input, Oracle, Seen};
use crate::report::{EntryKind, RunReport};
// Named here too, for the callers that reach them through the engine.
pub use crate::run::{
    replay_features, RunError, RunOptions, StoreKind, TransportKind, DEFAULT_SEED,
};
use crate::scenario::{InitialIdentity, Moment, Scenario};
use crate::seed;
use crate::store::{FileStore, MemoryStore, RolloutStore};
use crate::transport::{HttpTransport, MemoryTransport, SharedBackend, Transport, MEMORY_BASE_URL};

mod commands;
mod edges;
mod host;
mod judged;
mod ledger;
mod network;
mod steps;
mod world;

use edges::Edges;
use host::Host;
use judged::core_state;
use ledger::Ledger;
pub(crate) use network::purpose_thread;
use network::{endpoint_of, purpose_text, Network, Scheduled};
use world::World;

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

/// A run in progress, by concern: the process's host, the world outside it, the network between
/// them, the bookkeeping, the two oracles fed as the loop goes, and the edges' armed changes.
pub(crate) struct Sim {
    /// The master seed: the report names it, and each process's core seed comes from it.
    seed: u64,
    options: RunOptions,
    /// The virtual clock.
    now: Timestamp,
    host: Host,
    world: World,
    net: Network,
    ledger: Ledger,
    oracle: Oracle,
    judge: Judge,
    edges: Edges,
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
        let faults = FaultPlan::new(rules, c.random_faults.clone());
        let checker =
            Checker::new(c.use_agent_identity, c.persist_task, c.expiry == ExpiryPolicy::Reacquire);
        let mut sim = Sim {
            seed,
            options: options.clone(),
            now: Timestamp::SIM_EPOCH,
            host: Host::new(store),
            world: World::new(seed, backend.clone(), config),
            net: Network::new(seed, c.latency_ms, faults, transport, backend),
            ledger: Ledger::new(Timestamp::SIM_EPOCH, options.timeline, checker),
            oracle: Oracle::default(),
            judge: Judge::default(),
            edges: Edges::default(),
        };
        sim.world.sign_in(&c.auth, &mut sim.ledger);
        if c.identity == InitialIdentity::Warm {
            sim.world.register_out_of_band(sim.now, "warm identity", &mut sim.ledger);
        }
        sim.restart_process();
        Ok(sim)
    }

    // ---- the loop ------------------------------------------------------------------------

    fn run_steps(&mut self, scenario: &Scenario) -> Result<(), RunError> {
        for (index, step) in scenario.steps.iter().enumerate() {
            if self.ledger.stopped() {
                break;
            }
            // Named by number and text, not by source line: a comment added to the scenario
            // file changes no snapshot.
            let text = format!("step {}: {}", index + 1, step.value);
            self.ledger.begin_step(self.now, index + 1, &text);
            self.step(scenario, &step.value).map_err(|message| RunError::Step {
                file: scenario.path.display().to_string(),
                line: step.line,
                message,
            })?;
            self.check_quiescent(false);
        }
        if !self.ledger.stopped() {
            self.ledger.note(self.now, "-", "end of steps: settle");
            self.settle().map_err(|message| RunError::Step {
                file: scenario.path.display().to_string(),
                line: 0,
                message,
            })?;
            self.check_quiescent(true);
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<(), String> {
        self.run_until(|sim| sim.net.is_idle())
    }

    fn run_until(&mut self, done: impl Fn(&Sim) -> bool) -> Result<(), String> {
        let mut events = 0u64;
        while !done(self) {
            if self.ledger.stopped() {
                return Ok(());
            }
            if !self.pop_next(None) {
                // A liveness failure of the lifecycle, not bad input: report it like an invariant.
                self.ledger.violate(Invariant::Stuck, "the run is stuck: the step waits for a turn that can never complete (nothing is in flight)".into());
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
            let cap = self.options.events_per_step_cap;
            self.ledger.violate(
                Invariant::StepCap,
                format!("the drive loop hit its cap of {cap} events in one step"),
            );
        }
    }

    fn run_until_time(&mut self, target: Timestamp) -> Result<(), String> {
        let mut events = 0u64;
        while !self.ledger.stopped() && self.pop_next(Some(target)) {
            events += 1;
            self.check_event_cap(events);
        }
        Ok(())
    }

    fn turn_done(&self, thread: &ThreadId, turn: TurnId) -> bool {
        self.host.process.is_none() || self.ledger.turn_completed(thread, turn)
    }

    /// Pops and handles the next event (not later than `limit`). False when there is none.
    fn pop_next(&mut self, limit: Option<Timestamp>) -> bool {
        let Some((at, event)) = self.net.pop(limit) else { return false };
        self.now = self.now.max(at);
        let now = self.now;
        match event {
            Scheduled::Deliver { generation, id, endpoint, response, number, seen } => {
                if !self.host.is_current(generation) {
                    return true;
                }
                let what = self.host.in_flight_of(id);
                let awaited = what.is_some();
                if awaited && self.host.crash_on_response == Some(endpoint) && response.is_success()
                {
                    self.host.crash_on_response = None;
                    self.crash(&format!(
                        "crash on the {endpoint} response (the backend already succeeded)"
                    ));
                    return true;
                }
                // Every delivery passes here: build its timeline text only when one is kept.
                if self.ledger.timeline_on() {
                    let text = if awaited {
                        format!("← {} {}", response.status, purpose_text(&what))
                    } else {
                        format!(
                            "← {} late answer to request #{number} ({endpoint}), after its timeout",
                            response.status
                        )
                    };
                    let kind = EntryKind::Answer(Some(endpoint));
                    self.ledger.entry(now, &purpose_thread(&what), kind, &text);
                }
                self.oracle.feed(now, Input::Answer { id, seen: &seen, number });
                if let Some(why) = self.oracle.went_blind() {
                    let text = format!("the reference model stops predicting: {why}");
                    self.ledger.note(now, "-", &text);
                }
                if let (Some(InFlight::TaskRegister { thread, .. }), Seen::Task { task_id }) =
                    (&what, &seen)
                {
                    self.judge.issued(thread, task_id);
                }
                self.host.machine_mut().handle_response(now, id, response);
                self.drain(Some((what, id)));
                if awaited {
                    self.fire_arms(Some(endpoint), Moment::Answered);
                    self.feed_deferred();
                }
            }
            Scheduled::Fail { generation, id, failure, number } => {
                if !self.host.is_current(generation) {
                    return true;
                }
                let what = self.host.in_flight_of(id);
                let text = match failure {
                    RequestFailure::Timeout => "timed out",
                    RequestFailure::Connection => "connection failed",
                };
                if self.ledger.timeline_on() {
                    let text = format!("✗ {} {text}", purpose_text(&what));
                    let kind = EntryKind::Failed(endpoint_of(&what));
                    self.ledger.entry(now, &purpose_thread(&what), kind, &text);
                }
                self.oracle.feed(now, Input::Answer { id, seen: &Seen::NoAnswer, number });
                self.host.machine_mut().handle_request_failed(now, id, failure);
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
        while let Some(command) = self.host.process.as_mut().and_then(|p| p.machine.poll_command())
        {
            self.execute(&command);
            done.push(command);
            if self.ledger.stopped() {
                break;
            }
        }
        let Some(process) = self.host.process.as_mut() else {
            self.feed_deferred();
            return done;
        };
        let touched = process.machine.take_touched();
        let machine = &process.machine;
        let state = core_state(machine, self.now);
        if let Err(divergence) = self.oracle.compare(self.now, &done, machine, &state, &touched) {
            self.ledger.violate(Invariant::ReferenceDivergence, divergence);
        }
        let step = self.ledger.step();
        for thread in &touched {
            if let Some(task) = machine.cached_task(thread) {
                self.judge.cached(thread, task, step);
            }
        }
        if let Some(v) = self.judge.violation.take() {
            self.ledger.forward(v);
        }
        self.ledger.observe(Observation::Drained {
            machine,
            commands: &done,
            touched: &touched,
            answered: cause.as_ref().map(|(what, id)| (what.as_ref(), *id)),
        });
        self.feed_deferred();
        done
    }

    // ---- process lifecycle ---------------------------------------------------------------

    fn crash(&mut self, why: &str) {
        let text = format!("process {} dies: {why}", self.host.generation);
        self.ledger.note(self.now, "-", &text);
        self.host.kill();
        self.oracle.process_died();
        self.judge.process_died();
        self.disarm_world();
        self.net.drop_in_flight();
    }

    fn restart_process(&mut self) {
        self.host.start(self.seed, &self.world);
        let world = &self.world;
        self.oracle.process_started(&world.config, &world.auth, world.auth_store.as_ref());
        let generation = self.host.generation;
        self.ledger.observe(Observation::ProcessStarted { generation });
        let text = format!("process {generation} starts ({})", world.auth.describe());
        self.ledger.note(self.now, "-", &text);
        self.drain(None);
    }

    /// After every step: invariant 13 for the threads the step changed, and every so often a
    /// full audit (every thread, every request in flight, against the reference model), spaced
    /// so its cost per step stays constant however many threads run.
    fn check_quiescent(&mut self, at_end: bool) {
        if let Some(p) = self.host.process.as_ref() {
            let current = self.world.current_runtime(self.now);
            let every = (p.machine.thread_count() / AUDIT_THREADS_PER_STEP).max(1);
            let audit = at_end || self.ledger.step() % every == 0;
            let machine = &p.machine;
            let current = current.as_deref();
            self.ledger.observe(Observation::Quiescent { machine, current, all: audit });
            if audit {
                if let Err(divergence) = self.oracle.audit(machine) {
                    self.ledger.violate(Invariant::ReferenceDivergence, divergence);
                }
            }
        }
    }

    fn finish(mut self, scenario: &Scenario) -> RunReport {
        let mut rollouts = BTreeMap::new();
        for thread in self.host.store.threads() {
            match self.host.store.read(&thread) {
                Ok(Some(bytes)) => {
                    rollouts.insert(thread, bytes);
                }
                Ok(None) => {}
                Err(e) => {
                    self.ledger.harness_failure(format!("cannot read {thread}'s rollout: {e}"))
                }
            }
        }
        let machine = self.host.process.as_ref().map(|p| &p.machine);
        let cached: BTreeMap<String, Option<agentsim_core::AgentTask>> = match machine {
            Some(m) => m.threads().map(|t| (t.0.clone(), m.cached_task(t).cloned())).collect(),
            None => BTreeMap::new(),
        };
        let current_runtime = machine.and_then(|m| m.current_runtime(self.now).map(str::to_owned));
        let backend = self.world.backend.lock().expect("backend lock");
        if !self.ledger.stopped() {
            if let Some(v) = backend.violations().first() {
                self.ledger.violate(
                    Invariant::ProtocolClean,
                    format!("the backend refused a protocol violation by the client: {v}"),
                );
            }
        }
        let stats = backend.stats();
        drop(backend);
        let virtual_ms = self.ledger.elapsed(self.now);
        let (tally, checker) = self.ledger.into_parts();
        RunReport::build(
            scenario,
            self.seed,
            self.options.transport,
            tally,
            checker,
            rollouts,
            cached,
            current_runtime,
            stats,
            virtual_ms,
        )
    }
}
