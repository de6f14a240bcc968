//! The runtime's public API as a library user sees it, against `sim serve` in this process: a
//! signed-in thread's turn succeeds and hands back the assertion its model request carried.

use agentsim_core::{Config, EventKind, TurnId};
use agentsim_runtime::{Options, Runtime};
use agentsim_tests::{serve_for, signed_in};

const TOKEN: &str = "at-api-test-token";

#[tokio::test]
async fn a_signed_in_turn_succeeds_and_returns_the_assertion_it_sent() {
    let server = serve_for(TOKEN).expect("sim serve starts");
    let home = tempfile::tempdir().expect("temp dir");
    let config = Config { base_url: server.base_url(), ..Config::default() };
    let runtime = Runtime::open(Options::new(config, signed_in(TOKEN), home.path().to_owned()))
        .await
        .expect("opens");
    runtime.start_thread("A").await.expect("starts");
    let outcome = runtime.turn("A", TurnId(1), "hello").await.expect("a turn");
    assert!(!outcome.failed(), "a healthy backend: {:?}", outcome.events);
    assert!(
        matches!(outcome.events.last().map(|e| &e.kind), Some(EventKind::TurnComplete { .. })),
        "{:?}",
        outcome.events
    );
    let task = runtime.cached_task("A").await.expect("task").expect("registered and cached");
    let assertion = outcome.assertion.expect("the model request carried an assertion");
    assert!(assertion.starts_with("AgentAssertion "), "{assertion}");
    // The backend checked that very header and took it for this thread's task.
    let model = server
        .journal()
        .into_iter()
        .rfind(|e| e.endpoint.as_deref() == Some("model"))
        .expect("a model request");
    assert_eq!(model.status, Some(200), "{model:?}");
    let sent = agentsim_core::wire::parse_assertion_header(&assertion).expect("readable");
    assert_eq!(
        (sent.agent_runtime_id.as_str(), sent.task_id.as_str()),
        (task.agent_runtime_id.as_str(), task.task_id.as_str())
    );
    assert_eq!(model.request, format!(" assertion={}/{}", task.agent_runtime_id, task.task_id));
    runtime.shutdown().await;
}
