//! `sim compare` end to end, through the binary: a small comparison snapshotted (table and
//! JSON, and the charts' bytes), the same bytes whatever `--jobs`, and bad input refused with
//! status 2 and an error naming what to fix.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

/// A small comparison: 2 policies x 2 TTLs x 12 short sessions (a few seconds in a debug build).
const SMALL: &[&str] = &[
    "compare",
    "--sessions",
    "12",
    "--seed",
    "3",
    "--policies",
    "expiry=reacquire,persist_task=true",
    "expiry=as_shipped,persist_task=false",
    "--sweep",
    "identity_ttl=10m,1d",
    "--set",
    "threads_max=2",
    "--set",
    "turns_per_thread=3",
    "--set",
    "restarts_per_day=12",
];

/// Runs `sim` with `args` and none of the caller's `AGENTSIM_*` or `CI` settings.
fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("AGENTSIM_SEED")
        .env_remove("AGENTSIM_CASES")
        .output()
        .expect("the sim binary runs")
}

/// Runs the small comparison with `extra` arguments; it must pass (status 0). The replay
/// command names the build's profile; it is written as a debug build's, so `cargo test
/// --release` compares the same text.
#[track_caller]
fn small(extra: &[&str]) -> String {
    let args: Vec<&str> = SMALL.iter().chain(extra).copied().collect();
    let output = sim(&args);
    let stdout = String::from_utf8_lossy(&output.stdout)
        .replace("cargo run --release -p sim", "cargo run -p sim");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

/// Each chart in `dir` with the SHA-256 of its bytes, by name.
fn charts(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("the chart folder")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let bytes = std::fs::read(&path).expect("a chart");
            let name = path.file_name().expect("a name").to_string_lossy().into_owned();
            let hash: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            (name, hash)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_small_comparison_gives_these_tables_and_charts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plot = dir.path().join("charts");
    let table = small(&["--jobs", "2", "--plot", plot.to_str().expect("utf-8")]);
    insta::assert_snapshot!("small_table", table);
    insta::assert_snapshot!("small_json", small(&["--format", "json"]));
    let listed: Vec<String> = charts(&plot).iter().map(|(n, h)| format!("{n} {h}")).collect();
    insta::assert_snapshot!("small_charts_sha256", listed.join("\n"));
    // A chart reads well on its own: title, both axes with units, one legend entry per policy.
    let svg = std::fs::read_to_string(plot.join("agent_error_turns.svg")).expect("a chart");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    for text in [
        "Turns failed with an agent Error by identity_ttl",
        "identity_ttl (duration)",
        "failed turns (per 1,000 turns)",
        "expiry=reacquire,persist_task=true",
        "expiry=as_shipped,persist_task=false",
        ">\n10m\n<",
        ">\n1d\n<",
    ] {
        assert!(svg.contains(text), "{text:?} missing from the chart");
    }
}

#[test]
fn the_number_of_jobs_changes_no_byte() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut outputs = Vec::new();
    for jobs in ["1", "2"] {
        let plot = dir.path().join(jobs);
        let plot = plot.to_str().expect("utf-8");
        let markdown = small(&["--jobs", jobs, "--format", "markdown", "--plot", plot]);
        let json = small(&["--jobs", jobs, "--format", "json"]);
        outputs.push((markdown, json, charts(Path::new(plot))));
    }
    assert!(outputs[0] == outputs[1], "--jobs 1 and --jobs 2 differ");
    assert_eq!(outputs[0].2.len(), sim::compare::METRICS.len());
}

#[test]
fn bad_input_exits_2_naming_what_to_fix() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("workload.txt");
    std::fs::write(&file, "# a short day\nthreads_max = 2\nthink_max = forever\n").expect("write");
    let file_arg = file.to_str().expect("utf-8");
    let cases: [(&[&str], String); 6] = [
        (
            &["compare", "--set", "ttl=1h"],
            "unknown workload parameter \"ttl\": did you mean identity_ttl?".into(),
        ),
        (
            &["compare", "--policies", "expiry=sometimes"],
            "bad policy \"expiry=sometimes\": expiry is reacquire or as_shipped, not \"sometimes\""
                .into(),
        ),
        (
            &["compare", "--workload", file_arg],
            format!("{file_arg}:3: bad value \"forever\" for think_max: invalid duration"),
        ),
        (
            &["compare", "--sweep", "identity_ttl"],
            "bad --sweep \"identity_ttl\": write <parameter>=<value>,<value>,...".into(),
        ),
        (
            &["compare", "--policies", "persist_task=true", "expiry=reacquire"],
            "the policy expiry=reacquire,persist_task=true is given twice".into(),
        ),
        (&["compare", "--sessions", "0"], "invalid value '0' for '--sessions <SESSIONS>'".into()),
    ];
    for (args, wanted) in cases {
        let output = sim(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&wanted), "{args:?}: wanted {wanted:?}, got {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn params_lists_every_parameter_with_its_default() {
    let output = sim(&["compare", "--params"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for param in sim::compare::PARAMS {
        let line = stdout.lines().find(|l| l.starts_with(param.name)).unwrap_or_else(|| {
            panic!("{} is not listed:\n{stdout}", param.name);
        });
        assert!(line.contains(param.default), "{line}");
    }
}
