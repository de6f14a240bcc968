//! Property-based fuzzing under plain `cargo test`: generated operation sequences (resume, fork,
//! rotation, expiry, auth changes, crashes, fault storms) checked against the spec-5 invariants and
//! the fuzzer's reference model, with shrunk failures persisted under `proptest-regressions/`.
//! Also: the fuzzer's own guarantees (determinism, the two transports agree, an exported failure
//! replays exactly, the generator stays strong enough to mean something) and the planted bugs.
//!
//! Long campaigns run through the CLI (`cargo run --release -p sim -- fuzz`, see the README);
//! this file is bounded to a few seconds at the test profile's opt-level.

use std::collections::BTreeSet;
use std::path::Path;

use agentsim_tests::{first_difference, inline_scenario, root};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sim::fuzz::{self, Failure, FuzzCase, Generated};
use sim::scenario::{Cmp, Expect, Step};
use sim::TransportKind;

/// Generated cases per `cargo test`.
const CASES: u32 = 256;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/fuzz.txt"
        )))),
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_cases_keep_every_invariant_and_prediction(case in fuzz::case_strategy()) {
        let run = fuzz::run_case(&case, TransportKind::Memory, false);
        if let Some(failure) = run.failure.as_ref().filter(|f| f.known_issue().is_none()) {
            prop_assert!(
                false,
                "{}\n--- the case as a scenario file (replay: cargo run -p sim -- scenario <file>)\n{}",
                failure.summary(),
                run.scenario.to_text()
            );
        }
    }
}

#[test]
fn generated_scenarios_print_and_parse_back_unchanged() {
    for seed in seeds(300) {
        let scenario = Generated::new(seed).current().scenario();
        let text = scenario.to_text();
        let parsed = fuzz::reparse(&scenario);
        assert_eq!(parsed.to_text(), text, "case {seed} does not round-trip");
        assert_eq!(parsed.steps.len(), scenario.steps.len());
        assert_eq!(parsed.expects.len(), scenario.expects.len());
    }
}

#[test]
fn the_same_seed_gives_byte_identical_runs() {
    for seed in seeds(32) {
        let case = Generated::new(seed).current();
        let first = snapshot(&case, TransportKind::Memory);
        let second = snapshot(&case, TransportKind::Memory);
        if let Some(diff) = first_difference(&first, &second) {
            panic!("case {seed} ran differently twice; first difference at {diff}");
        }
    }
}

#[test]
fn memory_and_http_transports_agree_on_generated_cases() {
    for seed in seeds(3) {
        let case = Generated::new(seed).current();
        let memory = snapshot(&case, TransportKind::Memory);
        let http = snapshot(&case, TransportKind::Http);
        if let Some(diff) = first_difference(&memory, &http) {
            panic!("case {seed}: memory (left) and http (right) differ at {diff}");
        }
    }
}

#[test]
fn a_shrunk_failure_written_as_a_scenario_file_replays_the_same_failure() {
    // Plant a failure no correct run can pass: a turn's model request must never happen. The
    // fuzzer must shrink it to a handful of steps and write a file that fails the same way.
    let planted =
        vec![Expect::Requests { endpoint: sim::fault::Endpoint::Model, cmp: Cmp::Eq, count: 0 }];
    let seed = seeds(200)
        .find(|seed| {
            let mut case = Generated::new(*seed).current();
            case.extra_expects = planted.clone();
            case.ops.len() >= 12
                && fuzz::run_case(&case, TransportKind::Memory, false).failure.is_some()
        })
        .expect("some generated case makes a model request");
    let mut generated = Generated::new(seed);
    let mut case = generated.current();
    case.extra_expects = planted.clone();
    let failure = fuzz::run_case(&case, TransportKind::Memory, false).failure.expect("it fails");
    assert!(matches!(failure, Failure::Expectations(_)), "{}", failure.summary());

    let shrunk = fuzz::shrink(
        &mut generated,
        &planted,
        failure,
        TransportKind::Memory,
        std::time::Duration::from_secs(20),
    );
    assert!(!shrunk.timed_out, "shrinking a planted expectation should finish well within 20 s");
    let steps = shrunk.case.scenario().steps.len();
    assert!(steps <= 6, "the planted failure needs one turn; it shrank to {steps} steps only");

    let dir = tempfile::tempdir().expect("temp dir");
    let (path, replayed) =
        fuzz::export(&shrunk.case, &shrunk.failure, dir.path(), TransportKind::Memory)
            .expect("the failure can be written");
    assert_eq!(path, dir.path().join(format!("fuzz-{seed}.scn")));
    assert_eq!(replayed.as_ref(), Some(&shrunk.failure), "memory replay of {}", path.display());
    // `cargo run -p sim -- scenario <file>` runs over HTTP by default.
    let over_http = fuzz::replay(&path, TransportKind::Http).expect("the file parses");
    assert_eq!(over_http.as_ref(), Some(&shrunk.failure), "http replay of {}", path.display());
    let text = std::fs::read_to_string(&path).expect("written");
    assert!(text.contains(&format!("seed: {seed}")), "{text}");
    assert!(text.lines().next().is_some_and(|l| l.contains("expect requests model = 0")), "{text}");
}

#[test]
fn known_issues_still_reproduce() {
    // When one is fixed, this fails: remove it from `sim::fuzz::KNOWN_ISSUES` so campaigns stop
    // tolerating it (and commit its example to scenarios/ as a regression).
    for issue in fuzz::KNOWN_ISSUES {
        let scenario = inline_scenario(&root().join(format!("{}.scn", issue.name)), issue.example);
        let failure = fuzz::run_scenario(&scenario, TransportKind::Memory, false).failure;
        let known = failure.as_ref().and_then(Failure::known_issue).map(|k| k.name);
        assert_eq!(
            known,
            Some(issue.name),
            "known issue {} no longer reproduces (got {:?}): is it fixed?",
            issue.name,
            failure.map(|f| f.summary())
        );
    }
}

#[test]
fn planted_bugs_are_off_here_and_each_names_its_fuzz_command() {
    // A test cannot turn a core feature on, so the planted bugs are fuzzed through the CLI
    // (`PlantedBugDetails::command`):
    //
    //   cargo run --release -p sim --features agentsim-core/planted-bug-restore-without-runtime-check -- fuzz --cases 10000 --out /tmp/x
    //   cargo run --release -p sim --features agentsim-core/planted-bug-prewarm-before-restore -- fuzz --cases 10000 --out /tmp/x
    //
    // Each stops at its first failure, shrinks it and writes it; the example kept with each bug is
    // what it wrote. Here, without the features, every example must pass.
    let cargo_toml =
        std::fs::read_to_string(root().join("core/Cargo.toml")).expect("core manifest");
    let declared: BTreeSet<&str> = cargo_toml
        .lines()
        .filter_map(|l| l.split_once(" = []").map(|(name, _)| name.trim()))
        .filter(|name| name.starts_with("planted-bug-"))
        .collect();
    let named: BTreeSet<&str> = agentsim_core::PLANTED_BUGS.iter().map(|b| b.feature).collect();
    assert_eq!(declared, named, "core/Cargo.toml's planted-bug features vs core's PLANTED_BUGS");
    assert!(agentsim_core::planted_bugs().next().is_none(), "a planted bug is on in this build");
    let detailed: BTreeSet<&str> = fuzz::PLANTED_BUG_DETAILS.iter().map(|b| b.feature).collect();
    assert_eq!(named, detailed, "core's PLANTED_BUGS vs sim::fuzz::PLANTED_BUG_DETAILS");
    assert_eq!(detailed.len(), fuzz::PLANTED_BUG_DETAILS.len(), "a planted bug detailed twice");
    for bug in fuzz::PLANTED_BUG_DETAILS {
        let scenario = inline_scenario(Path::new(&format!("{}.scn", bug.feature)), bug.example);
        let failure = fuzz::run_scenario(&scenario, TransportKind::Memory, false).failure;
        assert_eq!(
            failure.map(|f| f.summary()),
            None,
            "{}: the example fails without the bug (fuzz a build with it: {})",
            bug.feature,
            bug.command()
        );
    }
}

#[test]
fn the_generator_is_strong_enough_to_mean_something() {
    // A generator that silently skips most ops, never reaches the liveness predictions or never
    // produces a quiet run would pass every case and prove nothing.
    let (mut cases, mut ops, mut steps, mut liveness, mut quiet) = (0, 0, 0, 0, 0);
    let mut kinds = BTreeSet::new();
    for seed in seeds(500) {
        let case = Generated::new(seed).current();
        let plan = case.plan();
        cases += 1;
        ops += case.ops.len();
        steps += plan.body_steps;
        liveness += usize::from(plan.liveness_checked);
        quiet += usize::from(plan.quiet);
        kinds.extend(plan.scenario.steps.iter().map(|s| step_kind(&s.value)));
    }
    assert!(steps * 2 >= ops, "only {steps} of {ops} generated ops became steps");
    assert!(liveness * 10 >= cases * 8, "liveness predicted in {liveness} of {cases} cases");
    assert!(quiet * 20 >= cases, "only {quiet} of {cases} cases were quiet");
    // Every step the parser knows, and the variants of some that reach other code paths.
    let variants =
        ["crash on_append", "crash on_response", "advance to_expiry", "resume from_thread"];
    let all = sim::scenario::step_names().chain(variants);
    let missing: Vec<&str> = all.filter(|k| !kinds.contains(k)).collect();
    assert!(missing.is_empty(), "steps never generated: {missing:?}");
}

#[test]
fn shards_split_the_case_indices_with_no_overlap() {
    use sim::fuzz::campaign::{parse_duration, parse_shard, shard_indices};
    let mut seen = BTreeSet::new();
    for index in 0..4 {
        let shard = parse_shard(&format!("{index}/4")).expect("valid shard");
        for k in shard_indices(shard, 50) {
            assert_eq!(k % 4, index);
            assert!(seen.insert(k), "case {k} runs in two shards");
        }
    }
    assert_eq!(seen, (0..200).collect());
    assert!(
        parse_shard("4/4").is_err() && parse_shard("1/0").is_err() && parse_shard("x").is_err()
    );
    assert_eq!(parse_duration("60s"), Ok(std::time::Duration::from_secs(60)));
    assert_eq!(parse_duration("1m30s"), Ok(std::time::Duration::from_secs(90)));
    assert_eq!(parse_duration("250ms"), Ok(std::time::Duration::from_millis(250)));
    assert!(parse_duration("5 parsecs").is_err());
    assert_ne!(fuzz::case_seed(1, 0), fuzz::case_seed(1, 1));
    assert_ne!(fuzz::case_seed(1, 0), fuzz::case_seed(2, 0));
}

fn seeds(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(|k| fuzz::case_seed(0xf022, k))
}

#[track_caller]
fn snapshot(case: &FuzzCase, transport: TransportKind) -> String {
    let run = fuzz::run_case(case, transport, true);
    match run.report {
        Some(report) => report.snapshot(),
        None => panic!("case {} stopped: {:?}", case.seed, run.failure.map(|f| f.summary())),
    }
}

fn step_kind(step: &Step) -> &'static str {
    use sim::scenario::{CrashPoint, ResumeSource};
    match step {
        Step::Start { .. } => "start",
        Step::Resume { from: ResumeSource::Thread(_), .. } => "resume from_thread",
        Step::Resume { .. } => "resume",
        Step::Fork { .. } => "fork",
        Step::Compact { .. } => "compact",
        Step::Rollback { .. } => "rollback",
        Step::Turn { wait: true, .. } => "turn",
        Step::Turn { wait: false, .. } => "submit",
        Step::Advance { .. } => "advance",
        Step::Settle => "settle",
        Step::RotateIdentity => "rotate_identity",
        Step::ExpireIdentity => "expire_identity",
        Step::RevokeIdentity => "revoke_identity",
        Step::Auth(_) => "auth",
        Step::Crash(CrashPoint::Now) => "crash",
        Step::Crash(CrashPoint::OnAppend(_)) => "crash on_append",
        Step::Crash(CrashPoint::OnResponse(_)) => "crash on_response",
        Step::Restart(_) => "restart",
        Step::Heal => "heal",
        Step::AdvanceToExpiry { .. } => "advance to_expiry",
        Step::Damage { .. } => "damage",
        Step::On { .. } => "on",
    }
}

#[test]
fn generated_cases_write_rollouts_shaped_like_the_reference() {
    let shape = agentsim_tests::reference_shape();
    let (mut checked, mut lines) = (0, 0);
    for seed in seeds(300) {
        let case = Generated::new(seed).current();
        let scenario = case.scenario();
        if agentsim_tests::writes_foreign_lines(&scenario) {
            continue;
        }
        let run = fuzz::run_case(&case, TransportKind::Memory, false);
        let Some(report) = run.report else { continue };
        for (thread, bytes) in &report.rollouts {
            let problems = agentsim_tests::shape_problems(&shape, bytes);
            assert!(
                problems.is_empty(),
                "case {seed}, thread {thread}: {problems:?}\n{}",
                scenario.to_text()
            );
            lines += bytes.iter().filter(|b| **b == b'\n').count();
        }
        checked += 1;
    }
    // Most generated cases write no foreign line: the check must have read many rollouts.
    assert!(checked >= 100 && lines >= 1_000, "only {checked} cases, {lines} lines checked");
}
