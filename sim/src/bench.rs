//! `sim bench`: the harness's speed, printed as figures (never asserted in tests).
//!
//! - simulated turns per second through the memory transport (real signatures, sealed boxes and
//!   assertion verification on every turn);
//! - backend requests per second through the HTTP transport (real loopback round trips);
//! - the cost of one scenario run through the memory transport, for every scenario.

#![allow(clippy::disallowed_methods)] // Measuring speed is the one place that reads a real clock.

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

/// Runs every measurement; `scale` multiplies the work (1 = the default, a few seconds).
pub fn measure(
    scenarios_dir: &Path,
    scale: usize,
    mut progress: impl FnMut(&Figure),
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut push = |figure: Figure| {
        progress(&figure);
        figures.push(figure);
    };

    let turns = 5_000 * scale;
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
            target: Some((">=", 10_000.0)),
        });
    }

    let http_turns = 1_500 * scale;
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
    Ok(figures)
}

fn timed<T, E: Into<anyhow::Error>>(
    f: impl FnOnce() -> Result<T, E>,
) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let value = f().map_err(Into::into)?;
    Ok((value, start.elapsed()))
}
