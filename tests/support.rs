//! Shared helpers for the gate: one helper per boundary, so an API change touches this file and
//! not every test.

use std::path::{Path, PathBuf};

use sim::scenario::{self, Scenario};
use sim::{RunOptions, RunReport, TransportKind};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// Every scenario file, loaded, sorted by name. Panics when the folder is empty or a file does not
/// parse: both mean the gate would check nothing.
#[track_caller]
pub fn all_scenarios() -> Vec<Scenario> {
    let dir = root().join("scenarios");
    let files = sim::catalog::files_in(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    assert!(!files.is_empty(), "no scenarios in {}: the gate would check nothing", dir.display());
    files.iter().map(|(_, path)| scenario::load(path).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// Runs a scenario through `transport` with its own seed; a run error is a test failure.
#[track_caller]
pub fn run(scenario: &Scenario, transport: TransportKind) -> RunReport {
    let options = RunOptions { transport, ..RunOptions::default() };
    sim::run(scenario, &options)
        .unwrap_or_else(|e| panic!("scenario {} could not run: {e}", scenario.name))
}

/// Whether the scenario is a canary (it must fail its expectations).
pub fn is_canary(scenario: &Scenario) -> bool {
    scenario.expects.iter().any(|e| e.value == scenario::Expect::Fail)
}

/// `None` when equal, else the first differing line of two texts, numbered.
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => {
                return Some(format!(
                    "line {n}:\n  left:  {}\n  right: {}",
                    x.unwrap_or("<end>"),
                    y.unwrap_or("<end>")
                ))
            }
        }
    }
    unreachable!()
}

/// `tests/fixtures/<relative>`.
pub fn fixture(relative: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(relative)
}

/// A scenario written in a test, read as if it were the file at `path` (which need not exist):
/// errors name that path, and rollout files it resumes from resolve next to it.
#[track_caller]
pub fn inline_scenario(path: &Path, text: &str) -> Scenario {
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    scenario::parse(&name, path, text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Runs a scenario with explicit options; a run error is a test failure.
#[track_caller]
pub fn run_with(scenario: &Scenario, options: &RunOptions) -> RunReport {
    sim::run(scenario, options)
        .unwrap_or_else(|e| panic!("scenario {} could not run: {e}", scenario.name))
}
