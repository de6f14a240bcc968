//! `sim bench`: the harness's speed, printed as figures (never asserted in tests).
//!
//! - simulated turns per second through the memory transport (real signatures, sealed boxes and
//!   assertion verification on every turn);
//! - backend requests per second through the HTTP transport (real loopback round trips);
//! - the cost of one scenario run through the memory transport, for every scenario.

#![allow(clippy::disallowed_methods)] // Measuring speed is the one place that reads a real clock.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::{run, RunOptions, TransportKind};
use crate::scenario::{self, Scenario};

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// The target it is compared with, if any: (comparison, value).
    pub target: Option<(&'static str, f64)>,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<66} {:>9.1} {:<7}", self.name, self.value, self.unit)?;
        if let Some((cmp, target)) = self.target {
            let met = if cmp == ">=" { self.value >= target } else { self.value <= target };
            write!(f, "   (target {cmp} {target}: {})", if met { "met" } else { "MISSED" })?;
        }
        Ok(())
    }
}

/// A scenario of one warm thread and `turns` turns.
pub fn turns_scenario(turns: usize) -> Scenario {
    let mut text = String::from("description: bench: one warm thread, many turns\nseed: 1\nidentity: warm\nlatency: 1ms..20ms\nstart A\nsettle\n");
    for _ in 0..turns {
        text.push_str("turn A\n");
    }
    scenario::parse("bench_turns", Path::new("bench_turns.scn"), &text)
        .expect("the bench scenario parses")
}

/// A scenario of `threads` threads, started together, then `turns_each` rounds of one turn on
/// every thread: the scaling figures.
pub fn threads_scenario(threads: usize, turns_each: usize) -> Scenario {
    let mut text = format!(
        "description: bench: {threads} threads, {turns_each} turns each\nseed: 1\nidentity: warm\nlatency: 1ms..20ms\n"
    );
    for i in 0..threads {
        let _ = writeln!(text, "start T{i}");
    }
    text.push_str("settle\n");
    for _ in 0..turns_each {
        for i in 0..threads {
            let _ = writeln!(text, "turn T{i}");
        }
    }
    scenario::parse("bench_threads", Path::new("bench_threads.scn"), &text)
        .expect("the bench scenario parses")
}

/// The thread counts of the scaling figures (each thread runs [`TURNS_PER_THREAD`] turns).
pub const SCALING_THREADS: [usize; 5] = [1_000, 2_000, 4_000, 8_000, 16_000];

/// Turns per thread in the scaling figures: 10,000 to 160,000 turns in all.
pub const TURNS_PER_THREAD: usize = 10;

/// A group of figures, to measure only some (`sim bench --only turns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Simulated turns/s of one warm thread, memory transport.
    Turns,
    /// Backend requests/s over HTTP.
    Http,
    /// Cost per thread-turn from 1,000 to 16,000 threads.
    Scaling,
    /// The cost of each scenario run.
    Scenarios,
}

/// Runs the measurements of `groups` (all when empty); `scale` multiplies the work of the turns,
/// HTTP and scenario figures (1 = the default).
pub fn measure(
    scenarios_dir: &Path,
    scale: usize,
    groups: &[Group],
    mut progress: impl FnMut(&Figure),
) -> anyhow::Result<Vec<Figure>> {
    let wanted = |group: Group| groups.is_empty() || groups.contains(&group);
    let mut figures = Vec::new();
    let mut push = |figure: Figure| {
        progress(&figure);
        figures.push(figure);
    };

    if wanted(Group::Turns) {
        turns_figures(5_000 * scale, &mut push)?;
    }
    if wanted(Group::Http) {
        http_figure(1_500 * scale, &mut push)?;
    }
    if wanted(Group::Scaling) {
        scaling(&mut push)?;
    }
    if wanted(Group::Scenarios) {
        scenario_figures(scenarios_dir, scale, &mut push)?;
    }
    Ok(figures)
}

fn turns_figures(turns: usize, push: &mut impl FnMut(Figure)) -> anyhow::Result<()> {
    push(crypto_floor(turns));
    let bench = turns_scenario(turns);
    for (timeline, label) in
        [(false, "timeline off (as `sim fuzz`)"), (true, "timeline on (as `sim scenario`)")]
    {
        let options =
            RunOptions { transport: TransportKind::Memory, timeline, ..RunOptions::default() };
        let (report, elapsed) = timed(|| run(&bench, &options))?;
        anyhow::ensure!(report.passed(), "the bench run failed: {}", report.verdict());
        push(Figure {
            name: format!("turns/s, memory transport, {label}"),
            value: turns as f64 / elapsed.as_secs_f64(),
            unit: "turns/s",
            target: Some((">=", 18_000.0)),
        });
    }

    Ok(())
}

fn http_figure(http_turns: usize, push: &mut impl FnMut(Figure)) -> anyhow::Result<()> {
    let bench = turns_scenario(http_turns);
    let options =
        RunOptions { transport: TransportKind::Http, timeline: false, ..RunOptions::default() };
    let (report, elapsed) = timed(|| run(&bench, &options))?;
    anyhow::ensure!(report.passed(), "the HTTP bench run failed: {}", report.verdict());
    let requests: u64 = report.tally.request_counts.values().sum();
    push(Figure {
        name: "backend requests/s, HTTP transport (wiremock, loopback)".into(),
        value: requests as f64 / elapsed.as_secs_f64(),
        unit: "req/s",
        target: Some((">=", 5_000.0)),
    });

    Ok(())
}

fn scenario_figures(
    scenarios_dir: &Path,
    scale: usize,
    push: &mut impl FnMut(Figure),
) -> anyhow::Result<()> {
    let files = crate::catalog::files_in(scenarios_dir)?;
    let mut total = Duration::ZERO;
    let mut count = 0u32;
    let mut worst = (Duration::ZERO, String::new());
    for (name, path) in &files {
        let scenario = scenario::load(path)?;
        let repeats = 20 * scale;
        let options = RunOptions { transport: TransportKind::Memory, ..RunOptions::default() };
        let (_, elapsed) = timed(|| -> anyhow::Result<()> {
            for _ in 0..repeats {
                run(&scenario, &options)?;
            }
            Ok(())
        })?;
        let each = elapsed / repeats as u32;
        total += each;
        count += 1;
        if each > worst.0 {
            worst = (each, name.clone());
        }
    }
    if count > 0 {
        let mean = total.as_secs_f64() * 1000.0 / f64::from(count);
        push(Figure {
            name: format!("one scenario run, memory transport (mean of {count})"),
            value: mean,
            unit: "ms",
            target: Some(("<=", 5.0)),
        });
        push(Figure {
            name: format!("slowest scenario run ({})", worst.1),
            value: worst.0.as_secs_f64() * 1000.0,
            unit: "ms",
            target: None,
        });
    }
    Ok(())
}

/// The crypto a turn cannot avoid, alone: the client signs its assertion, the backend verifies
/// it. Its rate is the ceiling of the turns/s figures: what is left is the harness's own cost.
fn crypto_floor(turns: usize) -> Figure {
    use agentsim_core::wire::{self, AgentAssertion, IdentityKey};
    let key = IdentityKey::from_seed([7; 32]);
    let public = wire::parse_ssh_public_key(&key.ssh_public_key()).expect("our own key parses");
    let start = Instant::now();
    for i in 0..turns {
        let timestamp = format!("2026-01-01T00:00:{:02}Z", i % 60);
        let message = format!("runtime:task-{i}:{timestamp}");
        let assertion = AgentAssertion {
            agent_runtime_id: "runtime".to_owned(),
            signature: key.sign_base64(&message),
            task_id: format!("task-{i}"),
            timestamp,
        };
        assert!(wire::verify_assertion(&public, &assertion).is_ok(), "our own signature verifies");
    }
    Figure {
        name: "ceiling: sign + verify one assertion (the crypto of a turn, alone)".into(),
        value: turns as f64 / start.elapsed().as_secs_f64(),
        unit: "turns/s",
        target: None,
    }
}

/// The crypto a new thread with one turn cannot avoid, alone: its task registration (the client
/// signs, the backend verifies and seals the task id, the client opens it) and its turn's
/// assertion (sign, verify). Its rate is the ceiling of the threads figure.
fn thread_crypto_floor(threads: usize) -> Figure {
    use agentsim_core::wire::{self, AgentAssertion, IdentityKey};
    use rand_core::SeedableRng as _;
    let key = IdentityKey::from_seed([9; 32]);
    let public = wire::parse_ssh_public_key(&key.ssh_public_key()).expect("our own key parses");
    let sealed_to = wire::x25519_public(&public);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let start = Instant::now();
    for i in 0..threads {
        let message = format!("runtime:2026-01-01T00:00:{:02}Z", i % 60);
        let signature = key.sign_base64(&message);
        assert!(wire::verify_signature(&public, &message, &signature), "our own signature");
        let task_id = format!("task_{i:08x}");
        let sealed = wire::seal_base64(&sealed_to, task_id.as_bytes(), &mut rng);
        assert_eq!(key.open_task_id(&sealed).ok().as_deref(), Some(task_id.as_str()));
        let timestamp = "2026-01-01T00:00:01Z".to_owned();
        let assertion = AgentAssertion {
            agent_runtime_id: "runtime".to_owned(),
            signature: key.sign_base64(&format!("runtime:{task_id}:{timestamp}")),
            task_id,
            timestamp,
        };
        assert!(wire::verify_assertion(&public, &assertion).is_ok(), "our own assertion");
    }
    Figure {
        name: "ceiling: a new thread's crypto alone (registration + one turn)".into(),
        value: threads as f64 / start.elapsed().as_secs_f64(),
        unit: "thr/s",
        target: None,
    }
}

/// How the cost grows with the number of threads: a thread-turn must cost the same whether 1,000
/// or 16,000 threads run (per-event work is independent of the number of threads).
fn scaling(push: &mut impl FnMut(Figure)) -> anyhow::Result<()> {
    let options =
        RunOptions { transport: TransportKind::Memory, timeline: false, ..RunOptions::default() };
    let largest = SCALING_THREADS[SCALING_THREADS.len() - 1];
    push(thread_crypto_floor(2_000));
    let bench = threads_scenario(largest, 1);
    let (report, elapsed) = timed(|| run(&bench, &options))?;
    anyhow::ensure!(report.passed(), "the threads bench run failed: {}", report.verdict());
    push(Figure {
        name: format!("{largest} threads, one turn each, memory transport"),
        value: elapsed.as_secs_f64(),
        unit: "s",
        target: Some(("<=", 2.0)),
    });
    let mut costs = Vec::new();
    for threads in SCALING_THREADS {
        let bench = threads_scenario(threads, TURNS_PER_THREAD);
        let (report, elapsed) = timed(|| run(&bench, &options))?;
        anyhow::ensure!(report.passed(), "the scaling run failed: {}", report.verdict());
        let turns = threads * TURNS_PER_THREAD;
        let each = elapsed.as_secs_f64() * 1e6 / turns as f64;
        costs.push(each);
        push(Figure {
            name: format!("cost per thread-turn, {threads} threads x {TURNS_PER_THREAD} turns ({turns} turns)"),
            value: each,
            unit: "us",
            target: None,
        });
    }
    push(Figure {
        name: format!("cost per thread-turn, {largest} threads / {} threads", SCALING_THREADS[0]),
        value: costs[costs.len() - 1] / costs[0],
        unit: "x",
        target: Some(("<=", 1.5)),
    });
    Ok(())
}

fn timed<T, E: Into<anyhow::Error>>(
    f: impl FnOnce() -> Result<T, E>,
) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let value = f().map_err(Into::into)?;
    Ok((value, start.elapsed()))
}
