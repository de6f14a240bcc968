//! `sim`: replay scenarios, list them, fuzz the lifecycle, measure the harness.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use sim::outln;
use sim::report::json::run_json;
use sim::scenario::{self, Scenario};
use sim::{RunOptions, RunReport, StoreKind, TransportKind};

/// agentsim: a deterministic simulator for the agent identity and per-thread agent task lifecycle.
#[derive(Debug, Parser)]
#[command(name = "sim", version, about, long_about = None, after_long_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The environment `sim` reads, for `sim --help`.
const ENVIRONMENT: &str = "\
Environment:
  AGENTSIM_SEED  the default of --seed (sim scenario, sim fuzz); a flag wins
  AGENTSIM_CASES the default of --cases (sim fuzz); a flag wins
  RUST_LOG       log filter for stderr; a bare level (RUST_LOG=debug) applies to this project's
                 targets only (sim, agentsim_core); name others to see them (RUST_LOG=debug,hyper=info);
                 unset: errors only (sim serve: info, one line per request)
  NO_COLOR       set and non-empty: no colour in logs (there is none unless stderr is a terminal)
  CI             set and non-empty: no progress line from sim compare (there is none unless stderr
                 is a terminal)";

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Replay one scenario and print its timeline (exit 1 when an expectation or invariant fails).
    #[command(after_long_help = "\
Examples:
  sim scenario cold_start
  sim scenario cold_start --seed 7 --transport memory
  sim scenario cold_start --out out/cold --force
  sim scenario path/to/some.scn --format json")]
    Scenario(ScenarioArgs),
    /// Measure the harness: simulated turns/s, HTTP requests/s, cost of a scenario run.
    #[command(after_long_help = "\
Examples:
  cargo run --release -p sim -- bench
  sim bench --scale 4")]
    Bench {
        /// Multiply the work (longer, steadier figures).
        #[arg(long, default_value_t = 1)]
        scale: usize,
        /// The scenarios folder (every scenario's run cost is measured).
        #[arg(long, default_value_os_t = default_scenarios_dir())]
        scenarios: PathBuf,
        /// Measure only these groups of figures (repeatable; default: all).
        #[arg(long, value_enum)]
        only: Vec<sim::bench::Group>,
    },
    /// Fuzz the lifecycle with generated scenarios; shrink and write the first failure (exit 1).
    #[command(after_long_help = "\
Examples:
  sim fuzz --cases 10000
  sim fuzz --seed 42 --time-budget 2m
  sim fuzz --cases 100000 --partition 3/8 --out fuzz-failures
  sim fuzz --case-seed 3591268276242984041")]
    Fuzz(sim::fuzz::FuzzArgs),
    /// Compare policy sets over a population of realistic sessions (same seeds), optionally over
    /// a sweep of one workload parameter: a table, JSON or Markdown, and SVG charts (exit 1 when
    /// a session hits an invariant violation).
    #[command(after_long_help = "\
Examples:
  cargo run --release -p sim -- compare --sweep identity_ttl=1m,10m,1h,1d --plot out/charts
  sim compare --policies expiry=reacquire expiry=as_shipped --sessions 200
  sim compare --sweep restarts_per_day=1,4,16 --set identity_ttl=10m --format markdown
  sim compare --params")]
    Compare(sim::compare::CompareArgs),
    /// List the scenarios with their descriptions.
    #[command(after_long_help = "\
Examples:
  sim list
  sim list --scenarios path/to/folder
  sim list | grep expiry")]
    List {
        /// The scenarios folder.
        #[arg(long, default_value_os_t = default_scenarios_dir())]
        scenarios: PathBuf,
    },
    /// Print a shell completion script for `sim` on stdout.
    #[command(after_long_help = "\
Examples:
  sim completions bash > ~/.local/share/bash-completion/completions/sim
  sim completions zsh > ~/.zfunc/_sim
  sim completions fish > ~/.config/fish/completions/sim.fish")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Compare two runs once ids, keys, latencies and timestamps are set aside: print the first
    /// divergence and a summary per section (exit 0 when equivalent, 1 when not).
    #[command(
        after_long_help = "Each side is a folder written by `sim scenario --out`, a `.snap` file, or a
scenario run now (a name or a .scn path, with an optional @SEED).

Examples:
  sim diff cold_start@1 cold_start@2
  sim diff cold_start snapshots/cold_start.snap
  sim diff runs/before runs/after"
    )]
    Diff {
        /// The left side.
        left: String,
        /// The right side.
        right: String,
        /// The scenarios folder (for names).
        #[arg(long, default_value_os_t = default_scenarios_dir())]
        scenarios: PathBuf,
    },
    /// Serve the backend model over HTTP on loopback, in real time, for any client; print its
    /// base URL and accounts, and serve until interrupted.
    #[command(after_long_help = "\
The fault file holds a scenario's fault lines (see scenarios/FORMAT.md); the admin API under
/admin/ expires or revokes identities, adds faults, reads the request journal and resets.

Examples:
  sim serve
  sim serve --listen 127.0.0.1:9000 --seed 7 --identity-ttl 10m
  sim serve --faults flaky.faults --timeout-hold 20s
  sim serve --account acct-1=at-dev --account acct-2=at-other")]
    Serve(sim::serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// A scenario name from the scenarios folder, or a path to a `.scn` file.
    name: String,
    /// Master seed (overrides the scenario's `seed:`).
    #[arg(long, env = "AGENTSIM_SEED")]
    seed: Option<u64>,
    /// How backend calls travel.
    #[arg(long, value_enum, default_value_t = TransportKind::Http)]
    transport: TransportKind,
    /// Where rollouts are kept during the run.
    #[arg(long, value_enum, default_value_t = Store::Memory)]
    store: Store,
    /// Write every artifact (rollouts, events, requests, logs, timeline, snapshot) under DIR,
    /// which must be missing or empty (so no artifact of another run mixes in), unless --force.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Empty the --out folder first if it holds anything.
    #[arg(long, requires = "out")]
    force: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The scenarios folder (for names).
    #[arg(long, default_value_os_t = default_scenarios_dir())]
    scenarios: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Store {
    /// Rollouts in memory.
    Memory,
    /// Rollouts as real files in a temporary directory.
    Files,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    /// A readable timeline.
    Text,
    /// Typed JSON records (schema: docs/run.schema.json).
    Json,
    /// A Mermaid sequenceDiagram of the run (GitHub renders it in Markdown).
    Mermaid,
}

fn default_scenarios_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios");
    dir.canonicalize().unwrap_or(dir)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server's request lines are what its user watches; a run's logs are opt-in.
    init_logs(if matches!(cli.command, Cmd::Serve(_)) { "info" } else { "error" });
    let result = match cli.command {
        Cmd::Scenario(args) => run_scenario(&args),
        Cmd::List { scenarios } => list(&scenarios),
        Cmd::Fuzz(args) => fuzz(&args),
        Cmd::Compare(args) => sim::compare::command(&args),
        Cmd::Bench { scale, scenarios, only } => bench(&scenarios, scale, &only),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Diff { left, right, scenarios } => diff(&left, &right, &scenarios),
        Cmd::Serve(args) => sim::serve::run(&args),
    };
    match result {
        Ok(code) => code,
        // `sim list | head -2`: the reader has all it wanted; that is no failure.
        Err(e) if sim::stdout::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The tracing targets of this project: what a bare level in `RUST_LOG` turns on.
const OWN_TARGETS: [&str; 2] = ["sim", "agentsim_core"];

/// Logs on stderr: this project's lines only unless `RUST_LOG` names other targets (see
/// [`log_directives`]), no wall-clock stamps (they differ run to run while the run itself does
/// not; a log line from inside a run carries its virtual time), and colour only for a person
/// at a terminal who has not set `NO_COLOR`.
fn init_logs(unset: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse_lossy(log_directives(rust_log.as_deref(), unset));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(std::io::stderr)
        .init();
}

/// `RUST_LOG` as filter directives: a directive that is a bare level (`debug`, `off`) stands for
/// that level on each of [`OWN_TARGETS`] (`RUST_LOG=debug` is `sim=debug,agentsim_core=debug`);
/// a directive naming a target (`hyper=trace`, `wiremock`) is kept as written, so the HTTP
/// crates log only when asked for by name. Unset or empty is the level `unset`.
fn log_directives(rust_log: Option<&str>, unset: &str) -> String {
    let spec = rust_log.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(unset);
    let mut directives = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if directive.parse::<tracing_subscriber::filter::LevelFilter>().is_ok() {
            directives.extend(OWN_TARGETS.iter().map(|target| format!("{target}={directive}")));
        } else {
            directives.push(directive.to_owned());
        }
    }
    directives.join(",")
}

fn fuzz(args: &sim::fuzz::FuzzArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        outln!(
            "note: a debug build; use `cargo run --release -p sim -- fuzz` for real throughput"
        )?;
    }
    sim::fuzz::campaign::run(args)
}

fn diff(left: &str, right: &str, scenarios: &Path) -> anyhow::Result<ExitCode> {
    let (left, right) =
        (sim::diff::load_side(left, scenarios)?, sim::diff::load_side(right, scenarios)?);
    let comparison = sim::diff::compare(&left.text, &right.text);
    outln!("{}", sim::diff::render(&left, &right, &comparison).trim_end())?;
    Ok(if comparison.equivalent() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn bench(dir: &Path, scale: usize, only: &[sim::bench::Group]) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        outln!("note: a debug build; use `cargo run --release -p sim -- bench` for real figures")?;
    }
    let mut failed = None;
    sim::bench::measure(dir, scale.max(1), only, |figure| {
        if failed.is_some() {
            return;
        }
        if let Err(e) = outln!("{figure}") {
            // `measure` cannot be stopped from here: once nobody reads, end at once, quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            failed = Some(e);
        }
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let files =
        sim::catalog::files_in(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let width = files.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut broken = 0;
    for (name, path) in files {
        match scenario::load(&path) {
            Ok(s) => outln!("{name:<width$}  {}", s.description)?,
            Err(e) => {
                broken += 1;
                outln!("{name:<width$}  (does not parse: {e})")?;
            }
        }
    }
    Ok(if broken > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// Written whole to stdout: clap_complete panics on a write error, a `Vec` has none.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sim", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn resolve(args: &ScenarioArgs) -> anyhow::Result<Scenario> {
    let as_path = Path::new(&args.name);
    if args.name.ends_with(".scn") || args.name.contains('/') {
        return Ok(scenario::load(as_path)?);
    }
    let path = args.scenarios.join(format!("{}.scn", args.name));
    if path.exists() {
        return Ok(scenario::load(&path)?);
    }
    let names: Vec<String> = sim::catalog::files_in(&args.scenarios)
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let close = sim::catalog::close_matches(&args.name, &names);
    let hint = if close.is_empty() {
        "run `sim list` to see them all".to_owned()
    } else {
        format!("did you mean: {}?", close.join(", "))
    };
    anyhow::bail!("no scenario named {:?} in {}: {hint}", args.name, args.scenarios.display())
}

fn run_scenario(args: &ScenarioArgs) -> anyhow::Result<ExitCode> {
    let scenario = resolve(args)?;
    if let Some(dir) = &args.out {
        prepare_out(dir, args.force)?;
    }
    let seed = args.seed.or(scenario.config.seed).unwrap_or(sim::engine::DEFAULT_SEED);
    let transport = args.transport;
    // The seed and the replay command come first, so a killed run still shows them.
    if args.format == Format::Text {
        outln!("scenario: {} ({})", scenario.name, scenario.description)?;
        outln!("seed: {seed}  transport: {}", transport.name())?;
        outln!(
            "replay: {} -- scenario {} --seed {seed} --transport {}",
            sim::fuzz::cargo_run(),
            replay_name(args, &scenario),
            transport.name()
        )?;
        outln!()?;
    }
    let replay = format!(
        "{} -- scenario {} --seed {seed} --transport {}",
        sim::fuzz::cargo_run(),
        replay_name(args, &scenario),
        transport.name()
    );
    let options = RunOptions {
        seed: Some(seed),
        transport,
        store: match args.store {
            Store::Memory => StoreKind::Memory,
            Store::Files => StoreKind::Files,
        },
        ..RunOptions::default()
    };
    let report = sim::run(&scenario, &options)?;
    if let Some(dir) = &args.out {
        write_artifacts(dir, &report, &replay)
            .with_context(|| format!("cannot write artifacts to {}", dir.display()))?;
    }
    match args.format {
        Format::Text => print_text(&report, &scenario.path)?,
        Format::Json => outln!("{}", serde_json::to_string_pretty(&run_json(&report, &replay))?)?,
        Format::Mermaid => outln!("{}", sim::mermaid::diagram(&report).trim_end())?,
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Makes `dir` ready for one run's artifacts: missing (it is created when written) or empty.
/// Anything in it is refused, since old files would pass for this run's, unless `force`, which
/// empties it; never the current or the home folder, nor a folder holding either.
fn prepare_out(dir: &Path, force: bool) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other
            .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read the --out folder {}", dir.display()))?,
    };
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        let count = match entries.len() {
            1 => "1 entry".to_owned(),
            n => format!("{n} entries"),
        };
        anyhow::bail!(
            "the --out folder {} is not empty ({count}): name a new or empty folder, or add \
             --force to empty it first",
            dir.display()
        );
    }
    let canonical = dir.canonicalize()?;
    let precious = [std::env::current_dir().ok(), std::env::var_os("HOME").map(PathBuf::from)];
    for keep in precious.into_iter().flatten().filter_map(|p| p.canonicalize().ok()) {
        anyhow::ensure!(
            !keep.starts_with(&canonical),
            "refusing to empty {} with --force: it holds {}",
            dir.display(),
            keep.display()
        );
    }
    for entry in entries {
        let path = entry.path();
        let removed = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("--force: cannot remove {}", path.display()))?;
    }
    Ok(())
}

fn replay_name(args: &ScenarioArgs, scenario: &Scenario) -> String {
    if args.name.ends_with(".scn") || args.name.contains('/') {
        scenario.path.display().to_string()
    } else {
        scenario.name.clone()
    }
}

fn print_text(report: &RunReport, path: &Path) -> std::io::Result<()> {
    outln!("--- timeline")?;
    for line in &report.tally.timeline() {
        outln!("{line}")?;
    }
    outln!()?;
    outln!("--- summary")?;
    let requests: Vec<String> =
        report.tally.request_counts.iter().map(|(e, n)| format!("{e}={n}")).collect();
    outln!("requests: {}", if requests.is_empty() { "none".into() } else { requests.join(" ") })?;
    outln!(
        "events: {}  log lines: {}  virtual time: {}",
        report.tally.events.len(),
        report.tally.logs.len(),
        sim::report::clock(
            agentsim_core::Timestamp(report.virtual_ms),
            agentsim_core::Timestamp(0)
        )
    )?;
    for (thread, task) in &report.cached {
        outln!("thread {thread}: cached task {}", sim::report::task_text(task.as_ref()))?;
    }
    let marks: Vec<String> = report.tally.marks.keys().map(|m| m.to_string()).collect();
    outln!("marks hit: {}", marks.join(" "))?;
    if let Some(v) = &report.violation {
        outln!("{}: {}", v.invariant.broken_at(v.step), v.message)?;
    }
    for failure in &report.failed_expectations {
        // `line N: ...` in the report; `file:N: ...` here, so an editor can jump to it.
        let located = failure
            .strip_prefix("line ")
            .map_or_else(|| failure.clone(), |rest| format!("{}:{rest}", path.display()));
        outln!("expectation failed: {located}")?;
    }
    outln!("verdict: {}", report.verdict())
}

fn write_artifacts(dir: &Path, report: &RunReport, replay: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("rollouts"))?;
    let lines = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    std::fs::write(dir.join("timeline.txt"), lines(&report.tally.timeline()))?;
    std::fs::write(dir.join("events.txt"), lines(&report.tally.events))?;
    std::fs::write(dir.join("requests.txt"), lines(&report.tally.requests))?;
    std::fs::write(dir.join("logs.txt"), lines(&report.tally.logs))?;
    std::fs::write(dir.join("snapshot.txt"), report.snapshot())?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&run_json(report, replay))?,
    )?;
    std::fs::write(dir.join("run.md"), sim::mermaid::run_markdown(report, replay))?;
    for (thread, bytes) in &report.rollouts {
        std::fs::write(dir.join("rollouts").join(format!("{thread}.jsonl")), bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bare_level_in_rust_log_means_this_projects_targets_only() {
        let own = |level: &str| format!("sim={level},agentsim_core={level}");
        let directives = |rust_log| log_directives(rust_log, "error");
        assert_eq!(directives(None), own("error"));
        assert_eq!(log_directives(None, "info"), own("info"));
        assert_eq!(directives(Some(" ")), own("error"));
        assert_eq!(directives(Some("debug")), own("debug"));
        assert_eq!(directives(Some("OFF")), own("OFF"));
        assert_eq!(directives(Some("trace,hyper=info")), own("trace") + ",hyper=info");
        assert_eq!(directives(Some("agentsim_core=debug")), "agentsim_core=debug");
        assert_eq!(directives(Some("wiremock, info")), "wiremock,".to_owned() + &own("info"));
    }
}
