//! The regression gate, one test per scenario and check, so a filter runs one scenario
//! (`cargo test -p agentsim-tests --test gate -- cold_start`, or nextest's
//! `-E 'test(cold_start)'`), a CI report lists each scenario, and one red scenario hides no other:
//! - `<scenario>::snapshot`: the scenario passes and matches its snapshot in `snapshots/`;
//! - `<scenario>::agree`: two runs are identical and the memory and HTTP transports agree;
//! - `<scenario>::diagram`: its Mermaid picture (`sim scenario --format mermaid`) is well formed;
//! - `<scenario>::json`: its typed JSON record conforms to `docs/run.schema.json`;
//! - `<scenario>::shape`: every rollout line it writes has the reference fixture's shape;
//! - `gate::*`: snapshots without a scenario, the canary can go red, marks are required.
//!
//! A new or changed snapshot is written as `snapshots/<name>.snap.new` (review it with
//! `cargo insta review`, or read it and rename it); `INSTA_UPDATE=always cargo test -p
//! agentsim-tests --test gate` writes it in place in one run. CI never writes snapshots.

use std::process::ExitCode;

use agentsim_tests::{
    all_scenarios, first_difference, is_canary, mermaid_problems, reference_shape, root, run,
    schema_problems, shape_problems, writes_foreign_lines,
};
use libtest_mimic::{Arguments, Failed, Trial};
use sim::scenario::Scenario;
use sim::TransportKind;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for scenario in all_scenarios() {
        let name = scenario.name.clone();
        let copy = scenario.clone();
        trials.push(Trial::test(format!("{name}::snapshot"), move || snapshot(&copy)));
        let copy = scenario.clone();
        trials.push(Trial::test(format!("{name}::agree"), move || agree(&copy)));
        let copy = scenario.clone();
        trials.push(Trial::test(format!("{name}::diagram"), move || diagram(&copy)));
        let copy = scenario.clone();
        trials.push(Trial::test(format!("{name}::json"), move || json_conforms(&copy)));
        trials.push(Trial::test(format!("{name}::shape"), move || shape(&scenario)));
    }
    trials.push(Trial::test("gate::every_snapshot_has_a_scenario", every_snapshot_has_a_scenario));
    trials.push(Trial::test("gate::the_canary_fails_so_the_gate_can_go_red", canary));
    trials.push(Trial::test("gate::most_coverage_marks_are_required_by_some_scenario", marks));
    trials.push(Trial::test("gate::the_diagram_checker_rejects_bad_diagrams", diagram_checker));
    trials.push(Trial::test("gate::the_schema_check_rejects_bad_records", schema_checker));
    trials.push(Trial::test("gate::the_reference_fixture_has_the_reference_shape", fixture_shape));
    libtest_mimic::run(&args, trials).exit_code()
}

/// The scenario passes and its snapshot matches (insta writes a new one as `.snap.new`, or in
/// place under `INSTA_UPDATE=always`).
fn snapshot(scenario: &Scenario) -> Result<(), Failed> {
    let report = run(scenario, TransportKind::Memory);
    let name = scenario.name.as_str();
    let mut failures = Vec::new();
    if !report.passed() {
        let details: Vec<String> =
            report.failed_expectations.iter().map(|f| format!("    {f}")).collect();
        failures.push(format!(
            "{name}: {}\n{}\n    replay: cargo run -p sim -- scenario {name}",
            report.verdict(),
            details.join("\n"),
        ));
    }
    let text = report.snapshot();
    let matched = std::panic::catch_unwind(|| {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(root().join("snapshots"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(format!("cargo run -p sim -- scenario {name}"));
        settings.bind(|| insta::assert_snapshot!(name, text));
    });
    if matched.is_err() {
        let exists = root().join("snapshots").join(format!("{name}.snap")).exists();
        failures.push(if exists {
            format!("{name}: the snapshot changed (diff above); review snapshots/{name}.snap.new with `cargo insta review`, or accept it with INSTA_UPDATE=always")
        } else {
            format!("{name}: no snapshot yet; record it with `INSTA_UPDATE=always cargo test -p agentsim-tests --test gate -- {name}` and read snapshots/{name}.snap")
        });
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

/// Two runs of the scenario's seed are identical, and the HTTP transport gives the same bytes
/// as the memory transport.
fn agree(scenario: &Scenario) -> Result<(), Failed> {
    let first = run(scenario, TransportKind::Memory).snapshot();
    let second = run(scenario, TransportKind::Memory).snapshot();
    if let Some(diff) = first_difference(&first, &second) {
        return Err(format!("two runs of seed {:?} differ at {diff}", scenario.config.seed).into());
    }
    let http = run(scenario, TransportKind::Http).snapshot();
    if let Some(diff) = first_difference(&first, &http) {
        return Err(format!("memory and http transports differ at {diff}").into());
    }
    Ok(())
}

/// The run's Mermaid diagram is well formed, by a checker that shares no code with the writer.
fn diagram(scenario: &Scenario) -> Result<(), Failed> {
    let report = run(scenario, TransportKind::Memory);
    let text = sim::mermaid::diagram(&report);
    let problems = mermaid_problems(&text);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{text}", problems.join("\n")).into())
    }
}

/// The diagram check can fail: each broken diagram is refused.
fn diagram_checker() -> Result<(), Failed> {
    let good = "sequenceDiagram\n    participant a as A\n    participant b as B #35;1\n    a->>b: hi #59; there\n    Note over a,b: ok\n";
    if !mermaid_problems(good).is_empty() {
        return Err(format!("a good diagram was refused: {:?}", mermaid_problems(good)).into());
    }
    let bad = [
        "graph TD\n",
        "sequenceDiagram\n    participant a as A\n    a->>b: undeclared\n",
        "sequenceDiagram\n    participant a as A\n    a->>a: semi; colon\n",
        "sequenceDiagram\n    participant a as A\n    Note over a: a # alone\n",
        "sequenceDiagram\n    participant a as A\n    loop again\n    a->>a: x\n",
        "sequenceDiagram\n    participant a as A\n    a->>a: <b>html</b>\n",
    ];
    for diagram in bad {
        if mermaid_problems(diagram).is_empty() {
            return Err(format!("a broken diagram passed: {diagram:?}").into());
        }
    }
    Ok(())
}

/// Every rollout line the scenario's lifecycle wrote has the shape of the reference fixture's
/// lines (a scenario that also writes lines by hand, damage or a torn append is skipped).
fn shape(scenario: &Scenario) -> Result<(), Failed> {
    if writes_foreign_lines(scenario) {
        return Ok(());
    }
    let shape = reference_shape();
    let report = run(scenario, TransportKind::Memory);
    let mut problems = Vec::new();
    for (thread, bytes) in &report.rollouts {
        problems
            .extend(shape_problems(&shape, bytes).into_iter().map(|p| format!("{thread}: {p}")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// The fixture itself passes the shape check it is the source of.
fn fixture_shape() -> Result<(), Failed> {
    let path = root().join("core/tests/fixtures/reference-rollout.jsonl");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let problems = shape_problems(&reference_shape(), &bytes);
    if !problems.is_empty() {
        return Err(problems.join("\n").into());
    }
    let shape = reference_shape();
    if shape.types.len() != 6 {
        return Err(format!("the fixture holds {} item types, not 6", shape.types.len()).into());
    }
    let broken =
        b"{\"timestamp\":\"2026-04-18T14:02:11Z\",\"type\":\"turn_context\",\"payload\":{}}\n";
    if shape_problems(&shape, broken).len() < 3 {
        return Err("a line that is not session_meta, lacks ms and every field passed".into());
    }
    Ok(())
}

/// The run's JSON record conforms to the documented schema.
fn json_conforms(scenario: &Scenario) -> Result<(), Failed> {
    let report = run(scenario, TransportKind::Memory);
    let value = sim::report::json::run_json(&report, "replay");
    let path = root().join("docs/run.schema.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let problems = schema_problems(&schema, &value);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// A way to break a record.
type Breakage = fn(&mut serde_json::Value);

/// The schema check can fail: a record with a field missing, of the wrong type, or unknown.
fn schema_checker() -> Result<(), Failed> {
    let path = root().join("docs/run.schema.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let scenario = all_scenarios().into_iter().next().ok_or("no scenario")?;
    let good = sim::report::json::run_json(&run(&scenario, TransportKind::Memory), "replay");
    let breakages: [(&str, Breakage); 4] = [
        ("a field missing", |v| {
            v.as_object_mut().map(|o| o.remove("seed"));
        }),
        ("a wrong type", |v| v["passed"] = serde_json::json!("yes")),
        ("an unknown field", |v| v["extra"] = serde_json::json!(1)),
        ("a bad nested value", |v| v["timeline"] = serde_json::json!([{"at_ms": -1}])),
    ];
    for (what, breaks) in breakages {
        let mut bad = good.clone();
        breaks(&mut bad);
        if schema_problems(&schema, &bad).is_empty() {
            return Err(format!("a record with {what} conforms").into());
        }
    }
    Ok(())
}

fn every_snapshot_has_a_scenario() -> Result<(), Failed> {
    let names: Vec<String> = all_scenarios().into_iter().map(|s| s.name).collect();
    let dir = root().join("snapshots");
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        if let Some(stem) = file.strip_suffix(".snap") {
            if !names.iter().any(|n| n == stem) {
                orphans.push(file);
            }
        }
    }
    if orphans.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "snapshots without a scenario (delete them or restore the scenario): {orphans:?}"
        )
        .into())
    }
}

fn canary() -> Result<(), Failed> {
    let canaries: Vec<_> = all_scenarios().into_iter().filter(is_canary).collect();
    if canaries.is_empty() {
        return Err(
            "no canary scenario (one with `expect fail`): nothing proves the gate can fail".into(),
        );
    }
    for canary in canaries {
        let report = run(&canary, TransportKind::Memory);
        if report.failed_expectations.is_empty() {
            return Err(format!("canary {} passed all its expectations", canary.name).into());
        }
        if !report.passed() {
            return Err(format!(
                "canary {} is not reported as an expected failure: {}",
                canary.name,
                report.verdict()
            )
            .into());
        }
    }
    Ok(())
}

fn marks() -> Result<(), Failed> {
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
    if unrequired.len() * 3 <= agentsim_core::marks::ALL.len() {
        Ok(())
    } else {
        Err(format!("most coverage marks are required by no scenario: {unrequired:?}").into())
    }
}
