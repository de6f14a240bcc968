//! Property-based fuzzing of the lifecycle: random operation sequences over one to four threads
//! (resume, fork, turns, identity rotation, expiry and revocation, auth changes, crashes), each
//! run by the engine with the spec-5 invariants checked at every step, and each checked at the end
//! against a small reference model.
//!
//! The pieces, in the order a case goes through them:
//!
//! - [`gen`]: proptest strategies. A case is a [`Swarm`] configuration (policies, TTL, latency,
//!   random fault rates and kinds: swarm testing, so some runs are calm and some are storms) and a
//!   list of abstract [`Op`]s.
//! - [`model`]: the generator-side model. It turns the abstract ops into scenario steps, skipping
//!   every op that would be illegal in the state the run is in, so that any subsequence of ops
//!   (which is what shrinking produces) is still a valid scenario. It ends every case with the
//!   liveness phase (spec invariant 12) and writes the reference model's predictions as the
//!   scenario's `expect` lines, so a failure replays with `sim scenario` alone.
//! - this module: running a case ([`run_case`]), classifying its failure ([`Failure`]), shrinking
//!   a failure under a time cap ([`shrink`]) and writing it as a scenario file ([`export`]).
//! - [`campaign`]: the `sim fuzz` command: seeds, shards, progress, the summary.
//!
//! Seeds: a campaign's case `k` has the seed [`case_seed`]`(base, k)`; that one seed drives both
//! the generation of the case and the engine's run, so `sim fuzz --case-seed S` regenerates and
//! reruns exactly one case, and the scenario file written for it carries `seed: S`.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy as _, ValueTree as _};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};

use crate::check::Invariant;
use crate::engine::{RunError, RunOptions, StoreKind, TransportKind};
use crate::report::RunReport;
use crate::scenario::{self, Expect, Scenario};
use crate::seed;

pub mod campaign;
pub mod gen;
pub mod model;

pub use campaign::FuzzArgs;
pub use gen::{case_strategy, AdvanceBy, AuthChoice, Op, Swarm};
pub use model::Plan;

/// What the fuzzer knows of each of `agentsim-core`'s planted bugs
/// ([`agentsim_core::PLANTED_BUGS`], the list of their names), keyed by feature. `tests/fuzz.rs`
/// checks that the two lists name the same bugs.
pub const PLANTED_BUG_DETAILS: &[PlantedBugDetails] = &[
    PlantedBugDetails {
        feature: "planted-bug-restore-without-runtime-check",
        what: "resume restores a persisted task without checking its runtime (against rule 13)",
        // A scenario the fuzzer wrote for it (shrunk): invariant 2 breaks at `resume A`.
        example: "description: planted bug restore-without-runtime-check: a task of a rotated identity is restored\n\
                  seed: 1970210619700663050\n\nstart A\nturn A\nrestart\nrotate_identity\nheal\nresume A\nsettle\nturn A\n\n\
                  expect task A current\nexpect last_state A task\n",
    },
    PlantedBugDetails {
        feature: "planted-bug-prewarm-before-restore",
        what: "resume prewarms before it restores (against rule 2)",
        // A scenario the fuzzer wrote for it (shrunk): the resume registers a second task.
        example: "description: planted bug prewarm-before-restore: a resume that restores a current task registers none\n\
                  seed: 10027847721570826559\n\nstart A\nturn A\nrestart\nheal\nresume A\nsettle\nturn A\n\n\
                  expect task A current\nexpect last_state A task\nexpect events * error = 0\n\
                  expect requests task_register <= 1\nexpect requests identity_register <= 2\n",
    },
];

/// What the fuzzer knows of one planted bug of `agentsim-core`.
#[derive(Clone, Copy, Debug)]
pub struct PlantedBugDetails {
    /// The cargo feature of `agentsim-core` that plants it: its name in
    /// [`agentsim_core::PLANTED_BUGS`].
    pub feature: &'static str,
    /// What the bug does.
    pub what: &'static str,
    /// The shrunk scenario the fuzzer wrote for it: it passes in a build without the bug and
    /// fails in one with it.
    pub example: &'static str,
}

impl PlantedBugDetails {
    /// The command that fuzzes a build with the bug planted.
    pub fn command(&self) -> String {
        format!(
            "cargo run --release -p sim --features agentsim-core/{} -- fuzz --cases 10000 --out /tmp/x",
            self.feature
        )
    }
}

/// `cargo run [--release] -p sim [--features agentsim-core/<bug>,...]`: this very build (its
/// profile and the planted bugs compiled in), so a printed replay or rerun command, copied as
/// is, runs the same lifecycle under the same overflow checks.
pub fn cargo_run() -> String {
    let release = if cfg!(debug_assertions) { "" } else { " --release" };
    format!("cargo run{release} -p sim{}", crate::engine::replay_features())
}

/// Failures the fuzzer keeps finding that are already reported and not yet fixed. A campaign
/// counts them and goes on (unless `--strict`), so it can still find something new; each carries
/// the smallest scenario that shows it, and `tests/fuzz.rs` checks that every one still
/// reproduces, so a fix forces its removal from this list.
pub const KNOWN_ISSUES: &[KnownIssue] = &[
    // None open. `dropped-task-current-again` (invariant 13: a persisted task dropped at resume
    // while no identity was usable stayed dropped once that identity was current again) was fixed
    // in core; its example is scenarios/resume_dropped_task_current_again.scn.
];

/// A failure already reported, with its smallest example.
#[derive(Clone, Copy, Debug)]
pub struct KnownIssue {
    /// A short name.
    pub name: &'static str,
    /// The invariant it breaks.
    pub invariant: Invariant,
    /// Text of the violation message that identifies it.
    pub contains: &'static str,
    /// What happens.
    pub what: &'static str,
    /// The smallest scenario showing it, as scenario text.
    pub example: &'static str,
}

/// One generated case: the seed of its run, its swarm configuration and its abstract ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzCase {
    /// The engine's master seed for the run (and, in a campaign, the seed the case was generated
    /// from).
    pub seed: u64,
    /// The run's configuration.
    pub swarm: Swarm,
    /// What happens, before the liveness phase; ops that are illegal when they come are skipped.
    pub ops: Vec<Op>,
    /// Expectations added after the reference model's own (empty in generated cases; tests use it
    /// to plant a failure).
    pub extra_expects: Vec<Expect>,
}

impl FuzzCase {
    /// The scenario this case runs, with the model's bookkeeping.
    pub fn plan(&self) -> Plan {
        model::plan(self)
    }

    /// The scenario this case runs.
    pub fn scenario(&self) -> Scenario {
        self.plan().scenario
    }
}

/// Why a case failed. Two failures are "the same" for replay when they are equal, and "of the
/// same kind" for shrinking when their [`Failure::kind`]s are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The engine found a broken spec-5 invariant.
    Violation {
        /// What broke.
        invariant: Invariant,
        /// The 1-based step during which it broke.
        step: usize,
        /// What happened.
        message: String,
    },
    /// The run ended without a violation, but the reference model's predictions (the scenario's
    /// `expect` lines) did not all hold.
    Expectations(Vec<String>),
    /// The engine refused a step (`RunError::Step`): the generator produced an illegal step.
    Step {
        /// The scenario line of the step.
        line: usize,
        /// The engine's message.
        message: String,
    },
    /// The harness failed (`RunError::Harness`).
    Harness(String),
    /// The engine or the core panicked (a broken `assert!`).
    Panic(String),
}

impl Failure {
    /// What shrinking must preserve: the invariant, the kind of the first failed expectation, or
    /// the kind of error.
    pub fn kind(&self) -> String {
        match self {
            Failure::Violation { invariant, .. } => invariant.to_string(),
            Failure::Expectations(list) => {
                let first = list.first().map(String::as_str).unwrap_or_default();
                // "line 40: expect requests task_register <= 3 (actual 4)": keep the expectation's
                // name and, for request counts, the endpoint; thread names may change in shrinking.
                let words: Vec<&str> = first.split_whitespace().skip(2).collect();
                match words.as_slice() {
                    ["expect", "requests", endpoint, ..] => format!("expect requests {endpoint}"),
                    ["expect", name, ..] => format!("expect {name}"),
                    _ => "expectations".into(),
                }
            }
            Failure::Step { .. } => "step refused".into(),
            Failure::Harness(_) => "harness".into(),
            Failure::Panic(_) => "panic".into(),
        }
    }

    /// The known issue this failure is, if any.
    pub fn known_issue(&self) -> Option<&'static KnownIssue> {
        let Failure::Violation { invariant, message, .. } = self else { return None };
        KNOWN_ISSUES.iter().find(|k| k.invariant == *invariant && message.contains(k.contains))
    }

    /// One line for summaries and scenario descriptions.
    pub fn summary(&self) -> String {
        match self {
            Failure::Violation { invariant, step, message } => {
                format!("{}: {message}", invariant.broken_at(*step))
            }
            Failure::Expectations(list) => format!(
                "{} reference-model expectation(s) failed, first: {}",
                list.len(),
                list.first().map(String::as_str).unwrap_or_default()
            ),
            Failure::Step { line, message } => format!("the engine refused line {line}: {message}"),
            Failure::Harness(message) => format!("harness failure: {message}"),
            Failure::Panic(message) => format!("panicked: {message}"),
        }
    }
}

/// What running one case produced.
#[derive(Debug)]
pub struct CaseRun {
    /// The scenario that ran (parsed back from its own text, so line numbers are the file's).
    pub scenario: Scenario,
    /// The report, unless the run stopped with an error or a panic.
    pub report: Option<RunReport>,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
}

/// Runs one case over `transport` and checks it: engine invariants, then the reference model's
/// expectations. `timeline` records the human timeline (slower; fuzzing leaves it off).
pub fn run_case(case: &FuzzCase, transport: TransportKind, timeline: bool) -> CaseRun {
    let plan = case.plan();
    run_scenario(&reparse(&plan.scenario), transport, timeline)
}

/// Runs a scenario and classifies the outcome. Panics in the engine or the core are caught and
/// reported as [`Failure::Panic`].
pub fn run_scenario(scenario: &Scenario, transport: TransportKind, timeline: bool) -> CaseRun {
    let options = RunOptions {
        seed: None,
        transport,
        store: StoreKind::Memory,
        timeline,
        ..RunOptions::default()
    };
    IN_CASE.with(|flag| flag.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| crate::run(scenario, &options)));
    IN_CASE.with(|flag| flag.set(false));
    let (report, failure) = match outcome {
        Ok(Ok(report)) => {
            let failure = failure_of(&report);
            (Some(report), failure)
        }
        Ok(Err(RunError::Step { line, message, .. })) => {
            (None, Some(Failure::Step { line, message }))
        }
        Ok(Err(RunError::Harness(message))) => (None, Some(Failure::Harness(message))),
        Err(payload) => (None, Some(Failure::Panic(panic_message(payload.as_ref())))),
    };
    CaseRun { scenario: scenario.clone(), report, failure }
}

/// The failure a report records, if any.
pub fn failure_of(report: &RunReport) -> Option<Failure> {
    if let Some(v) = &report.violation {
        return Some(Failure::Violation {
            invariant: v.invariant,
            step: v.step,
            message: v.message.clone(),
        });
    }
    if !report.passed() {
        return Some(Failure::Expectations(report.failed_expectations.clone()));
    }
    None
}

/// The case a campaign with base seed `base` runs as its case number `index`.
pub fn case_seed(base: u64, index: u64) -> u64 {
    let bytes = seed::bytes32(base, &format!("fuzz/case/{index}"));
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// The generation of one case from its seed: the value tree proptest shrinks.
pub struct Generated {
    seed: u64,
    tree: Box<dyn proptest::strategy::ValueTree<Value = (Swarm, Vec<Op>)>>,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("seed", &self.seed)
            .field("case", &self.current())
            .finish()
    }
}

impl Generated {
    /// Generates the case of `seed`: the same seed gives the same case on every machine.
    pub fn new(seed: u64) -> Generated {
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed::bytes32(seed, "fuzz/generate"));
        let mut runner = TestRunner::new_with_rng(ProptestConfig::default(), rng);
        let tree =
            gen::body_strategy().new_tree(&mut runner).expect("the body strategy never rejects");
        Generated { seed, tree }
    }

    /// The case as the tree currently stands.
    pub fn current(&self) -> FuzzCase {
        let (swarm, ops) = self.tree.current();
        FuzzCase { seed: self.seed, swarm, ops, extra_expects: Vec::new() }
    }
}

/// What [`shrink`] found.
#[derive(Debug)]
pub struct Shrunk {
    /// The smallest failing case found.
    pub case: FuzzCase,
    /// Its failure (of the same kind as the original).
    pub failure: Failure,
    /// How many candidate runs shrinking made.
    pub runs: u64,
    /// Whether shrinking stopped because its time ran out (the result may not be minimal).
    pub timed_out: bool,
}

/// Shrinks a failing case (proptest's simplify/complicate walk over the generation tree), keeping
/// only candidates that fail with a failure of the same [`Failure::kind`], until no simpler
/// candidate fails or `budget` runs out. `extra_expects` are carried into every candidate.
// The wall clock only bounds how long shrinking may take; no case sees it.
#[allow(clippy::disallowed_methods)]
pub fn shrink(
    generated: &mut Generated,
    extra_expects: &[Expect],
    failure: Failure,
    transport: TransportKind,
    budget: Duration,
) -> Shrunk {
    let deadline = Instant::now() + budget;
    let kind = failure.kind();
    let with_extras = |mut case: FuzzCase| {
        case.extra_expects = extra_expects.to_vec();
        case
    };
    let mut best = (with_extras(generated.current()), failure);
    let mut runs = 0;
    let mut last_failed = true;
    let mut timed_out = false;
    loop {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        let moved =
            if last_failed { generated.tree.simplify() } else { generated.tree.complicate() };
        if !moved {
            break;
        }
        let candidate = with_extras(generated.current());
        runs += 1;
        match run_case(&candidate, transport, false).failure {
            Some(f) if f.kind() == kind => {
                best = (candidate, f);
                last_failed = true;
            }
            _ => last_failed = false,
        }
    }
    // Proptest removes ops one at a time only while it walks the tree; ops that became removable
    // after a later simplification are caught by a last greedy pass.
    let (mut case, mut failure) = best;
    let mut index = 0;
    while index < case.ops.len() && !timed_out {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        let mut candidate = case.clone();
        candidate.ops.remove(index);
        runs += 1;
        match run_case(&candidate, transport, false).failure {
            Some(f) if f.kind() == kind => (case, failure) = (candidate, f),
            _ => index += 1,
        }
    }
    Shrunk { case, failure, runs, timed_out }
}

/// Writes a failing case as `<dir>/fuzz-<seed>.scn`: the scenario with `seed:` set and a
/// description naming the failure. Returns the path and the failure the written scenario gives
/// when run over `transport` (normally the one given, unless the failure depended on something
/// the file cannot carry).
pub fn export(
    case: &FuzzCase,
    failure: &Failure,
    dir: &Path,
    transport: TransportKind,
) -> std::io::Result<(PathBuf, Option<Failure>)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("fuzz-{}.scn", case.seed));
    let mut scenario = case.scenario();
    scenario.description = one_line(&format!("fuzz case {}: {}", case.seed, failure.summary()));
    std::fs::write(&path, scenario.to_text())?;
    let replayed = replay(&path, transport).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((path, replayed))
}

/// Loads a scenario file and runs it the way `sim scenario <file> --transport <transport>` does;
/// returns its failure.
pub fn replay(
    path: &Path,
    transport: TransportKind,
) -> Result<Option<Failure>, scenario::ScenarioError> {
    let scenario = scenario::load(path)?;
    Ok(run_scenario(&scenario, transport, true).failure)
}

/// The scenario as a file would hold it: printed and parsed back, so step and expectation lines
/// carry the line numbers of the file (engine errors and failed expectations quote them).
pub fn reparse(scenario: &Scenario) -> Scenario {
    let text = scenario.to_text();
    scenario::parse(&scenario.name, &scenario.path, &text).unwrap_or_else(|e| {
        panic!("the fuzzer printed a scenario that does not parse back: {e}\n{text}")
    })
}

thread_local! {
    /// Set while this thread runs a case, whose panics [`run_scenario`] catches and reports.
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that stays silent for panics inside a case (they are caught, classified
/// and reported once, instead of printed for every shrinking candidate) and prints the rest as
/// before. For binaries; tests keep the default hook.
pub fn quiet_panics() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !IN_CASE.with(std::cell::Cell::get) {
            previous(info);
        }
    }));
}

fn one_line(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    // Descriptions are for people: keep them to a readable length.
    flat.chars().take(300).collect::<String>().trim_end().to_owned()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".into()
    }
}
