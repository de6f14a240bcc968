//! `sim fuzz`: runs generated cases until the case count or the time budget runs out, or the first
//! failure, which it shrinks, writes as a scenario file and replays.
//!
//! Shards split the seed space of one base seed with no overlap: shard `i/n` runs the case
//! indices `k` with `k % n == i` (`i`, `i + n`, `i + 2n`, ...), `--cases` of them. Case `k`'s seed is
//! [`super::case_seed`]`(base, k)`, so a CI matrix of `n` jobs with the same base seed covers `n`
//! times as many distinct cases. `--partition k/n` names the same split 1-based, as nextest's
//! `--partition count:k/n` does: `k/n` is shard `(k-1)/n`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{case_seed, export, run_case, shrink, CaseRun, Failure, Generated};
use crate::engine::TransportKind;
use crate::outln;

/// Arguments of `sim fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// The campaign's base seed; each case's seed derives from it and the case's index.
    #[arg(long, env = "AGENTSIM_SEED", default_value_t = 0)]
    pub seed: u64,
    /// How many cases this shard runs [default: 1000, or as many as fit in --time-budget].
    #[arg(long, env = "AGENTSIM_CASES")]
    pub cases: Option<u64>,
    /// Stop starting new cases after this much wall-clock time (`60s`, `5m`, `1h30m`, `1d`: the
    /// scenario files' durations); without --cases, run as many cases as fit.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub time_budget: Option<Duration>,
    /// Run only the case indices k with k % n == i (`i/n`, 0-based), for CI matrices.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, default_value = "0/1")]
    pub shard: Shard,
    /// The same split, 1-based as nextest's `--partition count:k/n`: `k/n` runs what
    /// `--shard (k-1)/n` runs.
    #[arg(long, value_name = "K/N", value_parser = parse_partition, conflicts_with = "shard")]
    pub partition: Option<Shard>,
    /// How backend calls travel.
    #[arg(long, value_enum, default_value_t = TransportKind::Memory)]
    pub transport: TransportKind,
    /// Where a failing case is written, as `fuzz-<seed>.scn`. The folder collects failures
    /// across runs (one file per case seed), so it may already hold files.
    #[arg(long, value_name = "DIR", default_value = "fuzz-failures")]
    pub out: PathBuf,
    /// The most wall-clock time shrinking a failure may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub shrink_time: Duration,
    /// Run only the case with this seed (as printed for a failure), ignoring --seed, --shard and
    /// --partition.
    #[arg(long)]
    pub case_seed: Option<u64>,
    /// Stop at known issues too (`sim::fuzz::KNOWN_ISSUES`), instead of counting them and going on.
    #[arg(long)]
    pub strict: bool,
    /// Cases run at once, one per worker thread [default: the machine's cores]. Which case
    /// fails first does not depend on it: every case before a failing one still runs.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

impl FuzzArgs {
    /// The cases this shard runs: `--cases`, or without it 1000, or with only a time budget as
    /// many as fit.
    pub fn case_count(&self) -> u64 {
        match (self.cases, self.time_budget) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX / 2,
            (None, None) => 1000,
        }
    }

    /// The shard this run takes: `--partition` (already turned 0-based) or `--shard`.
    pub fn shard(&self) -> Shard {
        self.partition.unwrap_or(self.shard)
    }
}

/// `i/n`: this job's share of the case indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard's index, `0..count`.
    pub index: u64,
    /// How many shards split the indices.
    pub count: u64,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The case indices shard `shard` runs: `cases` of them, `k % count == index`.
pub fn shard_indices(shard: Shard, cases: u64) -> impl Iterator<Item = u64> {
    (0..cases).map(move |j| j * shard.count + shard.index)
}

/// Parses `i/n` with `i < n`.
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) = fraction(text, "shard", "I/N such as 0/4")?;
    if count == 0 || index >= count {
        return Err(format!("shard {text:?}: need 0 <= I < N, e.g. 0/4 to 3/4"));
    }
    Ok(Shard { index, count })
}

/// Parses `k/n` with `1 <= k <= n` (nextest's 1-based partitions) into shard `(k-1)/n`.
pub fn parse_partition(text: &str) -> Result<Shard, String> {
    let (k, n) = fraction(text, "partition", "K/N such as 1/4")?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("partition {text:?}: need 1 <= K <= N, e.g. 1/4 to 4/4"));
    }
    Ok(Shard { index: k - 1, count: n })
}

/// The two whole numbers of `a/b`; `what` and `shape` name them in errors.
fn fraction(text: &str, what: &str, shape: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once('/').ok_or_else(|| format!("expected {shape}, found {text:?}"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a whole number in {what} {text:?}"))
    };
    Ok((number(a)?, number(b)?))
}

/// Parses a duration in the scenario files' syntax ([`crate::duration`]: `500ms`, `60s`, `5m`,
/// `1h30m`, `1d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct CampaignStats {
    /// Cases run.
    pub cases: u64,
    /// Scenario steps over all cases.
    pub steps: u64,
    /// Coverage marks hit, with the number of cases that hit each.
    pub marks: BTreeMap<&'static str, u64>,
    /// Known issues met: how many cases, and the first case's seed.
    pub known: BTreeMap<&'static str, (u64, u64)>,
}

impl CampaignStats {
    /// Counts one case.
    pub fn add(&mut self, run: &CaseRun) {
        self.cases += 1;
        self.steps += run.scenario.steps.len() as u64;
        if let Some(report) = &run.report {
            for mark in report.tally.marks.keys() {
                *self.marks.entry(mark).or_insert(0) += 1;
            }
        }
    }

    /// The marks of `agentsim_core::marks::ALL` no case hit.
    pub fn marks_never_hit(&self) -> Vec<&'static str> {
        agentsim_core::marks::ALL.iter().copied().filter(|m| !self.marks.contains_key(m)).collect()
    }
}

/// Runs `sim fuzz`: exit 0 when no case failed, 1 when one did (and was written), 2 on usage
/// errors (reported by the caller).
// Wall-clock reads here only pace the progress line and bound the time budgets; no case sees them.
#[allow(clippy::disallowed_methods)]
pub fn run(args: &FuzzArgs) -> anyhow::Result<ExitCode> {
    let transport = args.transport;
    let base = args.seed;
    let shard = args.shard();
    let cargo_run = super::cargo_run();
    let strict = if args.strict { " --strict" } else { "" };
    // The seed and the replay command come first, so a killed run still shows them.
    let cases = args.case_count();
    match args.case_seed {
        Some(seed) => outln!("fuzz: one case, seed {seed}, transport {}", transport.name())?,
        None => {
            let budget = args
                .time_budget
                .map_or(String::new(), |b| format!(", time budget {}", crate::duration::format(b)));
            let count =
                args.cases.map_or("as many cases as fit".to_owned(), |n| format!("{n} cases"));
            outln!(
                "fuzz: base seed {base}, shard {shard}, {count}{budget}, transport {}",
                transport.name()
            )?;
            // Case k of a campaign is the same case whatever the budget: the replay names the
            // cases the budget allowed once the summary has counted them (or rerun one case
            // with --case-seed).
            let limit = match (args.cases, args.time_budget) {
                (Some(n), _) => format!("--cases {n}"),
                (None, Some(b)) => format!("--time-budget {}", crate::duration::format(b)),
                (None, None) => format!("--cases {cases}"),
            };
            outln!(
                "replay: {cargo_run} -- fuzz --seed {base} {limit} --shard {shard} --transport {}{strict}",
                transport.name()
            )?;
        }
    }
    super::quiet_panics();
    let started = Instant::now();
    let (stats, found, mut progress) = search(args, cases, started);
    let elapsed = started.elapsed();
    progress.finish()?;
    print_summary(&stats, elapsed, shard)?;
    let Some(Found { index, seed, failure, steps: steps_before, ops: ops_before }) = found else {
        outln!("result: no failure")?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut generated = Generated::new(seed);
    outln!()?;
    outln!("FAILURE in case {index} (seed {seed}): {}", failure.summary())?;
    outln!(
        "rerun this case: {cargo_run} -- fuzz --case-seed {seed} --transport {}{strict}",
        transport.name()
    )?;
    let shrink_started = Instant::now();
    let shrunk = shrink(&mut generated, &[], failure, transport, args.shrink_time);
    let shrunk_steps = shrunk.case.scenario().steps.len();
    outln!(
        "shrunk in {:.1}s ({} runs{}): {} steps -> {} steps ({} generated ops -> {})",
        shrink_started.elapsed().as_secs_f64(),
        shrunk.runs,
        if shrunk.timed_out { ", stopped by --shrink-time" } else { "" },
        steps_before,
        shrunk_steps,
        ops_before,
        shrunk.case.ops.len(),
    )?;
    outln!("shrunk failure: {}", shrunk.failure.summary())?;
    write_and_replay(&shrunk.case, &shrunk.failure, &args.out, transport)?;
    Ok(ExitCode::from(1))
}

/// The first failing case of a search (the one with the smallest index).
struct Found {
    index: u64,
    /// The case's seed: the case is generated again from it (a proptest value tree stays on the
    /// thread that drew it).
    seed: u64,
    failure: Failure,
    steps: usize,
    ops: usize,
}

/// What the workers share: the tally, the progress line and the failure with the smallest index.
struct Shared {
    stats: CampaignStats,
    progress: Progress,
    found: Option<Found>,
}

/// Runs the campaign's cases on `--jobs` worker threads until the cases or the time budget run
/// out, or a case fails. Workers take case numbers in order; after a failure no worker starts a
/// later case, and every earlier one still runs, so the reported failure is the first in case
/// order whatever the number of workers (a time budget may still stop earlier cases).
fn search(
    args: &FuzzArgs,
    cases: u64,
    started: Instant,
) -> (CampaignStats, Option<Found>, Progress) {
    let transport = args.transport;
    let shard = args.shard();
    let case_at = |j: u64| -> Option<(u64, u64)> {
        match args.case_seed {
            Some(seed) => (j == 0).then_some((0, seed)),
            None => (j < cases).then(|| {
                let k = j * shard.count + shard.index;
                (k, case_seed(args.seed, k))
            }),
        }
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let next = AtomicU64::new(0);
    let first_failure = AtomicU64::new(u64::MAX);
    // Set once stdout's reader has gone (`sim fuzz | head`): nobody would see the rest.
    let reader_gone = AtomicBool::new(false);
    let shared = Mutex::new(Shared {
        stats: CampaignStats::default(),
        progress: Progress::new(std::io::stdout().is_terminal()),
        found: None,
    });
    let worker = || loop {
        if args.time_budget.is_some_and(|budget| started.elapsed() >= budget)
            || reader_gone.load(Ordering::SeqCst)
        {
            return;
        }
        let j = next.fetch_add(1, Ordering::SeqCst);
        if j > first_failure.load(Ordering::SeqCst) {
            return;
        }
        let Some((index, seed)) = case_at(j) else { return };
        let generated = Generated::new(seed);
        let run = run_case(&generated.current(), transport, false);
        let mut shared = shared.lock().expect("no worker panics holding the lock");
        shared.stats.add(&run);
        let known = run.failure.as_ref().and_then(Failure::known_issue).filter(|_| !args.strict);
        if let Some(issue) = known {
            shared.stats.known.entry(issue.name).or_insert((0, seed)).0 += 1;
        } else if let Some(failure) = run.failure {
            if shared.found.as_ref().is_none_or(|f| index < f.index) {
                first_failure.fetch_min(j, Ordering::SeqCst);
                let ops = generated.current().ops.len();
                let steps = run.scenario.steps.len();
                shared.found = Some(Found { index, seed, failure, steps, ops });
            }
        }
        let Shared { stats, progress, .. } = &mut *shared;
        progress.tick(stats, started);
        if progress.closed.is_some() {
            reader_gone.store(true, Ordering::SeqCst);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(worker);
        }
    });
    let shared = shared.into_inner().expect("no worker panics holding the lock");
    (shared.stats, shared.found, shared.progress)
}

fn write_and_replay(
    case: &super::FuzzCase,
    failure: &Failure,
    out: &Path,
    transport: TransportKind,
) -> anyhow::Result<()> {
    let (path, replayed) = export(case, failure, out, transport)?;
    outln!("wrote {}", path.display())?;
    let same = |replayed: &Option<Failure>| replayed.as_ref() == Some(failure);
    let http = if transport == TransportKind::Http {
        replayed.clone()
    } else {
        super::replay(&path, TransportKind::Http)?
    };
    for (name, result) in [(transport.name(), &replayed), ("http", &http)] {
        match result {
            _ if same(result) => outln!("replayed over {name}: the same failure")?,
            Some(other) => outln!(
                "REPLAY MISMATCH over {name}: the file fails differently: {}",
                other.summary()
            )?,
            None => outln!("REPLAY MISMATCH over {name}: the file passes")?,
        }
    }
    outln!("replay: {} -- scenario {}", super::cargo_run(), path.display())?;
    Ok(())
}

fn print_summary(stats: &CampaignStats, elapsed: Duration, shard: Shard) -> std::io::Result<()> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    outln!("--- summary")?;
    outln!(
        "cases: {} (shard {})  steps: {}  time: {:.2}s  throughput: {:.0} cases/s, {:.0} steps/s",
        stats.cases,
        shard,
        stats.steps,
        secs,
        stats.cases as f64 / secs,
        stats.steps as f64 / secs
    )?;
    let never = stats.marks_never_hit();
    let all = agentsim_core::marks::ALL.len();
    let never_text =
        if never.is_empty() { String::new() } else { format!("; never hit: {}", never.join(", ")) };
    outln!("coverage: {}/{all} marks hit{never_text}", all - never.len())?;
    for (name, (count, seed)) in &stats.known {
        outln!("known issue {name}: {count} case(s), first seed {seed} (see sim::fuzz::KNOWN_ISSUES; --strict stops at it)")?;
    }
    Ok(())
}

/// The progress line: rewritten in place on a terminal; otherwise one plain line every 10 s.
#[derive(Debug)]
struct Progress {
    terminal: bool,
    last: Option<Instant>,
    shown: bool,
    /// The first write that failed (stdout's reader has gone): the campaign stops, and
    /// [`Progress::finish`] hands the error on.
    closed: Option<std::io::Error>,
}

impl Progress {
    fn new(terminal: bool) -> Progress {
        Progress { terminal, last: None, shown: false, closed: None }
    }

    #[allow(clippy::disallowed_methods)]
    fn tick(&mut self, stats: &CampaignStats, started: Instant) {
        let every =
            if self.terminal { Duration::from_millis(250) } else { Duration::from_secs(10) };
        let now = Instant::now();
        let due = self
            .last
            .map_or(now.duration_since(started) >= every, |last| now.duration_since(last) >= every);
        if !due || self.closed.is_some() {
            return;
        }
        self.last = Some(now);
        let secs = now.duration_since(started).as_secs_f64().max(1e-9);
        let line = format!(
            "{} cases, {:.0} cases/s, {} steps, {}/{} marks",
            stats.cases,
            stats.cases as f64 / secs,
            stats.steps,
            stats.marks.len(),
            agentsim_core::marks::ALL.len()
        );
        let mut out = std::io::stdout().lock();
        let written = if self.terminal {
            self.shown = true;
            write!(out, "\r\x1b[2K{line}").and_then(|()| out.flush())
        } else {
            writeln!(out, "progress: {line}")
        };
        self.closed = written.err();
    }

    /// Ends the line a terminal's progress left open; the error of a write that failed.
    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(error) = self.closed.take() {
            return Err(error);
        }
        if self.shown {
            outln!()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_the_shard_one_below() {
        for n in 1..=5 {
            for k in 1..=n {
                assert_eq!(
                    parse_partition(&format!("{k}/{n}")),
                    parse_shard(&format!("{}/{n}", k - 1))
                );
            }
        }
    }

    #[test]
    fn partitions_outside_1_to_n_are_refused_with_the_rule() {
        let rule = |t: &str| Err(format!("partition {t:?}: need 1 <= K <= N, e.g. 1/4 to 4/4"));
        for text in ["0/4", "5/4", "1/0", "0/0"] {
            assert_eq!(parse_partition(text), rule(text), "{text}");
        }
        assert_eq!(
            parse_partition("x/4"),
            Err("\"x\" is not a whole number in partition \"x/4\"".to_owned())
        );
        assert_eq!(parse_partition("3"), Err("expected K/N such as 1/4, found \"3\"".to_owned()));
    }

    #[test]
    fn cli_durations_are_the_scenario_files() {
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("60"),
            Err("invalid duration \"60\": write a number and a unit (ms, s, m, h or d), e.g. \
                 250ms, 15s or 1h30m"
                .to_owned())
        );
    }
}
