//! The regression gate: every scenario in `scenarios/` runs, passes, and matches its snapshot in
//! `snapshots/`; runs are deterministic and the two transports agree; the canary proves the gate
//! can go red.
//!
//! Update snapshots on purpose with `cargo insta review` (or `INSTA_UPDATE=always cargo test
//! --test gate`), then read the diff. CI never writes snapshots.

use agentsim_tests::{all_scenarios, first_difference, is_canary, root, run};
use sim::TransportKind;

#[test]
fn every_scenario_passes_and_matches_its_snapshot() {
    let mut failures = Vec::new();
    for scenario in all_scenarios() {
        let report = run(&scenario, TransportKind::Memory);
        if !report.passed() {
            let details: Vec<String> =
                report.failed_expectations.iter().map(|f| format!("    {f}")).collect();
            failures.push(format!(
                "{}: {}\n{}\n    replay: cargo run -p sim -- scenario {}",
                scenario.name,
                report.verdict(),
                details.join("\n"),
                scenario.name
            ));
        }
        let snapshot = report.snapshot();
        let name = scenario.name.clone();
        let outcome = std::panic::catch_unwind(|| {
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path(root().join("snapshots"));
            settings.set_prepend_module_to_snapshot(false);
            settings.set_omit_expression(true);
            settings.set_description(format!("cargo run -p sim -- scenario {name}"));
            settings.bind(|| insta::assert_snapshot!(name.as_str(), snapshot));
        });
        if outcome.is_err() {
            failures.push(format!(
                "{}: the snapshot changed (diff above; review with `cargo insta review`)",
                scenario.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed the gate:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_snapshot_has_a_scenario() {
    let names: Vec<String> = all_scenarios().into_iter().map(|s| s.name).collect();
    let dir = root().join("snapshots");
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("snapshots/ exists") {
        let path = entry.expect("readable").path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        if let Some(stem) = file.strip_suffix(".snap") {
            if !names.iter().any(|n| n == stem) {
                orphans.push(file);
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "snapshots without a scenario (delete them or restore the scenario): {orphans:?}"
    );
}

#[test]
fn every_scenario_has_a_snapshot() {
    let missing: Vec<String> = all_scenarios()
        .into_iter()
        .filter(|s| !root().join("snapshots").join(format!("{}.snap", s.name)).exists())
        .map(|s| s.name)
        .collect();
    assert!(missing.is_empty(), "scenarios without a snapshot (run `INSTA_UPDATE=always cargo test --test gate` and review): {missing:?}");
}

#[test]
fn runs_are_deterministic_and_both_transports_agree() {
    for scenario in all_scenarios() {
        let first = run(&scenario, TransportKind::Memory).snapshot();
        let second = run(&scenario, TransportKind::Memory).snapshot();
        if let Some(diff) = first_difference(&first, &second) {
            panic!(
                "{}: two runs of seed {:?} differ at {diff}",
                scenario.name, scenario.config.seed
            );
        }
        let http = run(&scenario, TransportKind::Http).snapshot();
        if let Some(diff) = first_difference(&first, &http) {
            panic!("{}: memory and http transports differ at {diff}", scenario.name);
        }
    }
}

#[test]
fn the_canary_fails_so_the_gate_can_go_red() {
    let canaries: Vec<_> = all_scenarios().into_iter().filter(is_canary).collect();
    assert!(
        !canaries.is_empty(),
        "no canary scenario (one with `expect fail`): nothing proves the gate can fail"
    );
    for canary in canaries {
        let report = run(&canary, TransportKind::Memory);
        assert!(
            !report.failed_expectations.is_empty(),
            "canary {} passed all its expectations",
            canary.name
        );
        assert!(
            report.passed(),
            "canary {} is not reported as an expected failure: {}",
            canary.name,
            report.verdict()
        );
    }
}

#[test]
fn most_coverage_marks_are_required_by_some_scenario() {
    // Each scenario's `expect mark` lines already fail it when a mark is no longer hit; this test
    // says which marks no scenario requires, so a new code path without a scenario is visible.
    let mut required = std::collections::BTreeSet::new();
    for scenario in all_scenarios() {
        for expect in &scenario.expects {
            if let sim::scenario::Expect::Mark { name } = &expect.value {
                required.insert(name.clone());
            }
        }
    }
    let unrequired: Vec<&str> =
        agentsim_core::marks::ALL.iter().copied().filter(|m| !required.contains(*m)).collect();
    // Not every mark needs a scripted scenario (some are reached only by fuzzing), but most must.
    assert!(
        unrequired.len() * 3 <= agentsim_core::marks::ALL.len(),
        "most coverage marks are required by no scenario: {unrequired:?}"
    );
}
