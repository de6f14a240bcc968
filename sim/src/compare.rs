//! `sim compare`: the same population of realistic sessions run under two or more policy sets,
//! optionally over a sweep of one workload parameter, measured and reported per policy and
//! sweep point, as a table, JSON, Markdown and SVG charts.
//!
//! The pieces, in the order a comparison goes through them:
//!
//! - `workload.rs`: the workload model's parameters, their defaults and meanings, read from
//!   `--set key=value` and a `--workload` file; `sweep.rs` the `--sweep` of one of them;
//! - `policy.rs`: a policy set (`expiry=reacquire,persist_task=true`);
//! - `session.rs`: one session drawn from its seed as a scenario; the same seed gives the same
//!   steps under every policy, so a difference between policies is the policy's doing;
//! - `run.rs`: every (sweep point, policy, session) case on `--jobs` threads, each with the
//!   oracle (the invariant checker and the reference model) on, results in case order;
//! - `metrics.rs`: what one session measured, and how sessions add up;
//! - `render.rs`: the table, Markdown and JSON; `plot.rs` the charts.
//!
//! Same seed, same options: byte-identical table, JSON, Markdown and SVG, whatever `--jobs`.

use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod metrics;
pub mod plot;
pub mod policy;
pub mod render;
pub mod run;
pub mod session;
pub mod sweep;
pub mod workload;

pub use metrics::{Metric, SessionMetrics, Stat, METRICS};
pub use policy::{Policy, PolicyError, DEFAULT_POLICIES};
pub use run::{Plan, Results};
pub use sweep::Sweep;
pub use workload::{Workload, WorkloadError, PARAMS};

use crate::outln;

/// Arguments of `sim compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The policy sets to compare, each `key=value,...` over `expiry` (reacquire|as_shipped),
    /// `persist_task` (true|false) and `flag` (on|off) [default: expiry=reacquire,persist_task=true
    /// expiry=as_shipped,persist_task=true expiry=reacquire,persist_task=false].
    #[arg(long, num_args = 1.., value_name = "POLICY")]
    pub policies: Vec<String>,
    /// Run every policy at each value of one workload parameter: `identity_ttl=1m,10m,1h,1d`,
    /// `restarts_per_day=1,4,16`, ... (any parameter but fault_kinds).
    #[arg(long, value_name = "PARAM=V1,V2,...")]
    pub sweep: Option<String>,
    /// Sessions per policy and sweep point.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub sessions: u64,
    /// The population's base seed: session k's seed derives from it and k.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Set a workload parameter (repeatable; wins over --workload). `--params` lists them.
    #[arg(long = "set", value_name = "PARAM=VALUE")]
    pub set: Vec<String>,
    /// Read workload parameters from a file of `name = value` lines (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write one SVG chart per metric into DIR (created if missing; its charts are replaced).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Sessions run at once, one per worker thread [default: the machine's cores]. The output
    /// does not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,
    /// Where a session that hits an invariant violation is written as a scenario file.
    #[arg(long, value_name = "DIR", default_value = "compare-failures")]
    pub out: PathBuf,
    /// Print every workload parameter with its default and meaning, and exit.
    #[arg(long)]
    pub params: bool,
}

/// The output formats of `sim compare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable table per metric.
    Table,
    /// One JSON document (schema `agentsim-compare`).
    Json,
    /// Markdown tables (what `docs/policies.md` holds).
    Markdown,
}

/// Why a comparison cannot run: bad input, each error naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A workload parameter, file or sweep that cannot be used.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A policy set that cannot be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The same policy set given twice (after defaults are filled in).
    #[error("the policy {0} is given twice: each policy set once")]
    DuplicatePolicy(String),
}

impl CompareArgs {
    /// The plan these arguments ask for: the workload (file, then `--set`), the sweep and the
    /// policies, all checked.
    pub fn plan(&self) -> Result<Plan, CompareError> {
        let mut workload = Workload::default();
        if let Some(file) = &self.workload {
            workload.read_file(file)?;
        }
        for pair in &self.set {
            workload.set_pair(pair)?;
        }
        workload.validate()?;
        let sweep = self.sweep.as_deref().map(|s| Sweep::parse(s, &workload)).transpose()?;
        let texts: Vec<&str> = if self.policies.is_empty() {
            DEFAULT_POLICIES.to_vec()
        } else {
            self.policies.iter().map(String::as_str).collect()
        };
        let mut policies: Vec<Policy> = Vec::new();
        for text in texts {
            let policy = Policy::parse(text)?;
            if policies.contains(&policy) {
                return Err(CompareError::DuplicatePolicy(policy.to_string()));
            }
            policies.push(policy);
        }
        Ok(Plan { seed: self.seed, sessions: self.sessions, workload, sweep, policies })
    }

    /// `--jobs`, or the machine's cores.
    pub fn jobs(&self) -> usize {
        self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |n| usize::try_from(n).unwrap_or(usize::MAX),
        )
    }
}

/// Runs `sim compare`: exit 0 when no session hit an invariant violation, 1 when one did (each
/// is written to `--out` and printed with its replay), 2 on bad input (reported by the caller).
// The wall clock only times the whole comparison for the closing line on stderr.
#[allow(clippy::disallowed_methods)]
pub fn command(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    if args.params {
        outln!("{}", render::params_table().trim_end())?;
        return Ok(ExitCode::SUCCESS);
    }
    let plan = args.plan()?;
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; use `cargo run --release -p sim -- compare` for speed");
    }
    // The seed and the replay command come first, so a killed run still shows them.
    if args.format != Format::Json {
        outln!("{}", render::preamble(&plan, args.format).trim_end())?;
    }
    let jobs = args.jobs();
    // A session that panics is caught and reported as a violation, once, with its replay.
    crate::fuzz::quiet_panics();
    let started = std::time::Instant::now();
    let results = run::run(&plan, jobs, run::progress_wanted());
    let elapsed = started.elapsed().as_secs_f64();
    let replays = write_violations(&results, &args.out)?;
    let text = match args.format {
        Format::Table => render::table(&plan, &results, &replays),
        Format::Markdown => render::markdown(&plan, &results, &replays),
        Format::Json => serde_json::to_string_pretty(&render::json(&plan, &results, &replays))?,
    };
    outln!("{}", text.trim_end())?;
    if let Some(dir) = &args.plot {
        let written = plot::write_charts(&plan, &results, dir)?;
        eprintln!("compare: wrote {} charts to {}", written.len(), dir.display());
    }
    let cases = plan.cases();
    eprintln!(
        "compare: {cases} sessions in {elapsed:.1}s ({:.0}/s) on {jobs} worker(s)",
        cases as f64 / elapsed.max(1e-9)
    );
    let clean = replays.is_empty();
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Writes each violating session as `<dir>/compare-<seed>-<policy>-<point>.scn` and returns its
/// replay command, in case order.
fn write_violations(results: &Results, dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut replays = Vec::new();
    for violating in results.cells.iter().flatten().flat_map(|cell| &cell.violating) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the --out folder {}", dir.display()))?;
        let point: String = violating
            .point
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let name = format!("compare-{}-{}-{point}.scn", violating.seed, violating.policy.slug());
        let path = dir.join(name);
        std::fs::write(&path, violating.scenario.to_text())
            .with_context(|| format!("cannot write {}", path.display()))?;
        replays.push(format!(
            "session {} under {} at {}: {}; replay: {} -- scenario {}",
            violating.seed,
            violating.policy,
            violating.point,
            violating.summary,
            crate::fuzz::cargo_run(),
            path.display()
        ));
    }
    Ok(replays)
}
