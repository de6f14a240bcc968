//! Running a comparison: every session of the population under every policy at every sweep
//! point, on `jobs` worker threads. Workers take case numbers in order and hand back each result
//! with its number; results are put in case order before anything adds them up, so no output
//! depends on the number of workers or on how the threads were scheduled.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::metrics::{self, SessionMetrics};
use super::policy::Policy;
use super::session::{self, Session};
use super::sweep::Sweep;
use super::workload::Workload;
use crate::engine::TransportKind;
use crate::scenario::Scenario;
use crate::seed;

/// What a comparison runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The base seed: session `k`'s seed is [`session_seed`]`(seed, k)`.
    pub seed: u64,
    /// Sessions per policy and sweep point.
    pub sessions: u64,
    /// The workload (a sweep changes one parameter of it per point).
    pub workload: Workload,
    /// The parameter swept, if any.
    pub sweep: Option<Sweep>,
    /// The policy sets, in the order given.
    pub policies: Vec<Policy>,
}

/// One sweep point: its label and its workload.
#[derive(Clone, Debug)]
pub struct Point {
    /// The swept value as given, or `default` without a sweep.
    pub label: String,
    /// The workload at this point.
    pub workload: Workload,
}

impl Plan {
    /// The sweep points, in the order given (one, `default`, without a sweep).
    pub fn points(&self) -> Vec<Point> {
        let Some(sweep) = &self.sweep else {
            return vec![Point { label: "default".into(), workload: self.workload.clone() }];
        };
        sweep
            .values
            .iter()
            .map(|value| Point {
                label: value.clone(),
                // `Sweep::parse` checked every value against this workload.
                workload: self.workload.at(sweep.param.name, value).expect("a checked sweep value"),
            })
            .collect()
    }

    /// How many sessions the comparison runs in all.
    pub fn cases(&self) -> u64 {
        self.points().len() as u64 * self.policies.len() as u64 * self.sessions
    }
}

/// The seed of session `index` of a population with base seed `base`: the same under every
/// policy and at every sweep point.
pub fn session_seed(base: u64, index: u64) -> u64 {
    let bytes = seed::bytes32(base, &format!("compare/session/{index}"));
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// A session that hit an invariant violation (or that the engine refused or panicked on): what
/// it takes to replay it.
#[derive(Clone, Debug)]
pub struct Violating {
    /// The session's seed.
    pub seed: u64,
    /// Its policy.
    pub policy: Policy,
    /// Its sweep point's label.
    pub point: String,
    /// What went wrong, in one line.
    pub summary: String,
    /// The scenario that replays it.
    pub scenario: Scenario,
}

/// The sessions of one policy at one sweep point.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// The measurements of each session that ran clean, in session order.
    pub sessions: Vec<SessionMetrics>,
    /// The sessions that did not.
    pub violating: Vec<Violating>,
}

/// A comparison's results: `cells[point][policy]`.
#[derive(Clone, Debug)]
pub struct Results {
    /// The sweep points.
    pub points: Vec<Point>,
    /// The cells, by point then by policy (the plan's order).
    pub cells: Vec<Vec<Cell>>,
}

/// Runs the plan on `jobs` worker threads; `progress` says whether to show a progress line on
/// stderr.
pub fn run(plan: &Plan, jobs: usize, progress: bool) -> Results {
    let points = plan.points();
    let (n_policies, sessions) = (plan.policies.len() as u64, plan.sessions);
    let total = plan.cases();
    let next = AtomicU64::new(0);
    let done = Mutex::new(Vec::<(u64, Outcome)>::with_capacity(total as usize));
    let meter = Mutex::new(Progress::new(progress, total));
    let worker = || loop {
        let case = next.fetch_add(1, Ordering::SeqCst);
        if case >= total {
            return;
        }
        let point = (case / (n_policies * sessions)) as usize;
        let policy = &plan.policies[(case / sessions % n_policies) as usize];
        let seed = session_seed(plan.seed, case % sessions);
        let outcome = run_case(&points[point], policy, seed);
        done.lock().expect("no worker panics holding the lock").push((case, outcome));
        meter.lock().expect("no worker panics holding the lock").tick();
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(worker);
        }
    });
    meter.into_inner().expect("no worker panics holding the lock").finish();
    let mut done = done.into_inner().expect("no worker panics holding the lock");
    done.sort_by_key(|(case, _)| *case);
    let mut cells = vec![vec![Cell::default(); plan.policies.len()]; points.len()];
    for (case, outcome) in done {
        let cell = &mut cells[(case / (n_policies * sessions)) as usize]
            [(case / sessions % n_policies) as usize];
        match outcome {
            Outcome::Measured(metrics) => cell.sessions.push(metrics),
            Outcome::Violating(violating) => cell.violating.push(*violating),
        }
    }
    Results { points, cells }
}

enum Outcome {
    Measured(SessionMetrics),
    Violating(Box<Violating>),
}

/// Runs one session under one policy, the oracle on, with the timeline kept (the metrics read
/// its step times and request records).
fn run_case(point: &Point, policy: &Policy, seed: u64) -> Outcome {
    let session: Session = session::generate(&point.workload, seed);
    let mut scenario = session.scenario(&point.workload, policy);
    let run = crate::fuzz::run_scenario(&scenario, TransportKind::Memory, true);
    match (run.failure, run.report) {
        (None, Some(report)) => Outcome::Measured(metrics::measure(&session, policy, &report)),
        (failure, _) => {
            let summary = failure.map_or_else(|| "no report".to_owned(), |f| f.summary());
            scenario.description = format!(
                "sim compare: session {seed} under {policy} at {}: {}",
                point.label,
                summary.chars().take(200).collect::<String>()
            );
            let point = point.label.clone();
            Outcome::Violating(Box::new(Violating {
                seed,
                policy: *policy,
                point,
                summary,
                scenario,
            }))
        }
    }
}

/// The progress line on stderr: cases done, rate, time left; at most four times a second.
struct Progress {
    on: bool,
    total: u64,
    done: u64,
    started: Instant,
    last: Option<Instant>,
}

// Wall-clock reads pace the progress line only; no session sees them.
#[allow(clippy::disallowed_methods)]
impl Progress {
    fn new(on: bool, total: u64) -> Progress {
        Progress { on, total, done: 0, started: Instant::now(), last: None }
    }

    fn tick(&mut self) {
        self.done += 1;
        if !self.on {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < Duration::from_millis(250)) {
            return;
        }
        self.last = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let left = (self.total - self.done) as f64 / rate.max(1e-9);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kcompare: {}/{} sessions ({:.0}%), {rate:.0}/s, about {left:.0}s left",
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.on && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// Whether to show progress: stderr is a terminal and this is not CI (`CI` unset or empty).
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none_or(|v| v.is_empty())
}
