//! Log lines are outputs too: the driver hands the core's log lines to `tracing`, so a run's log is
//! as deterministic as its rollout. These tests read them back through `tracing-test`.

use sim::scenario::parse;
use sim::{RunOptions, TransportKind};
use tracing_test::traced_test;

fn run(text: &str) -> sim::RunReport {
    let scenario = parse("logs", std::path::Path::new("logs.scn"), text).expect("valid scenario");
    sim::run(&scenario, &RunOptions { transport: TransportKind::Memory, ..RunOptions::default() })
        .expect("runs")
}

#[traced_test]
#[test]
fn spec4_registration_and_reuse_reach_tracing_with_their_fields() {
    let report = run("description: logs\nseed: 9\nstart A\nsettle\nturn A\n");
    assert!(report.passed(), "{}", report.verdict());
    assert!(logs_contain("registered agent task for thread thread=A agent_runtime_id=agent-"));
    assert!(logs_contain("reusing cached agent task thread=A"));
    assert!(logs_contain("registered agent identity"));
}

#[traced_test]
#[test]
fn spec4_prewarm_failure_is_a_warn_log_and_nothing_else() {
    let report =
        run("description: logs\nseed: 9\nfault task_register 1 status=503\nstart A\nsettle\n");
    assert!(report.passed(), "{}", report.verdict());
    assert!(logs_contain("WARN"));
    assert!(logs_contain("startup agent task prewarm failed; regular turns will retry registration thread=A error=agent task registration failed with status 503"));
    // Spec section 4 lists the prewarm's own line for the prewarm path, not the turn path's.
    assert!(!logs_contain("agent task registration failed thread=A"));
    assert!(
        report.tally.events.is_empty(),
        "a prewarm failure emitted events: {:?}",
        report.tally.events
    );
}

#[traced_test]
#[test]
fn spec4_stale_task_logs_name_the_discard() {
    let report = run("description: logs\nseed: 9\nstart A\nturn A\nrotate_identity\nturn A\n");
    assert!(report.passed(), "{}", report.verdict());
    assert!(logs_contain(
        "discarding cached agent task because the registered agent identity changed thread=A"
    ));
}

#[test]
fn logs_are_identical_run_to_run() {
    let text = "description: logs\nseed: 21\nidentity_ttl: 30m\nstart A\nstart B\nturn A\nadvance 1h\nturn B\nturn A\n";
    assert_eq!(run(text).tally.logs, run(text).tally.logs);
}
