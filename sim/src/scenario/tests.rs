//! The scenario format's tests, by concern; this file holds the helpers they share.

use std::path::Path;

use super::*;

/// The steps that reach the edges: `advance to_expiry`, `from_thread`, `damage`, `on`.
mod edges;
mod errors;
mod expectations;
mod header;
mod properties;
mod steps;
mod text;

const PATH: &str = "scenarios/t.scn";

#[track_caller]
fn check(text: &str) -> Scenario {
    parse("t", Path::new(PATH), text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// Parses `text` and checks that it fails with `expected`, written `line:column: message`.
#[track_caller]
fn check_error(text: &str, expected: &str) {
    match parse("t", Path::new(PATH), text) {
        Ok(scenario) => panic!("expected the error {expected:?}, parsed {scenario:#?}"),
        Err(e) => {
            assert_eq!(e.file, Path::new(PATH));
            assert_eq!(format!("{}:{}: {}", e.line, e.column, e.message), expected);
        }
    }
}

/// A scenario whose header is `header` and whose only step is `start A`.
#[track_caller]
fn check_config(header: &str) -> ScenarioConfig {
    check(&format!("description: d\n{header}\nstart A\n")).config
}

/// The steps of a scenario made of a description and `steps`.
#[track_caller]
fn check_steps(steps: &str) -> Vec<Step> {
    let scenario = check(&format!("description: d\n{steps}"));
    scenario.steps.into_iter().map(|s| s.value).collect()
}

/// The one expectation in `expect`, on a scenario with threads `A` and `B`.
#[track_caller]
fn check_expect(expect: &str) -> Expect {
    let scenario = check(&format!("description: d\nstart A\nstart B\n{expect}\n"));
    let mut expects = scenario.expects;
    assert_eq!(expects.len(), 1);
    expects.remove(0).value
}

fn start(thread: &str) -> Step {
    Step::Start { thread: thread.into() }
}

fn chatgpt(account: &str, user: Option<&str>) -> AuthSpec {
    AuthSpec::ChatGpt { account: account.into(), user: user.map(Into::into) }
}

/// The scenario with every line number set to 0, for comparing a value with its reparsed text.
fn without_lines(mut scenario: Scenario) -> Scenario {
    scenario.faults.iter_mut().for_each(|f| f.line = 0);
    scenario.steps.iter_mut().for_each(|s| s.line = 0);
    scenario.expects.iter_mut().for_each(|e| e.line = 0);
    scenario
}
