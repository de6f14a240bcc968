//! The runtime against a storage failure: a write that cannot be made durable stops the process
//! as a crash there would. Nothing after it is sent or appended, and every verb says the runtime
//! has stopped instead of going on as if the write had happened. The backend is `sim serve`, in
//! this process.

use std::time::Duration;

use agentsim_core::{Config, TurnId};
use agentsim_runtime::{Notice, Options, Runtime, RuntimeError};
use agentsim_tests::{serve_for, signed_in};

const TOKEN: &str = "at-storage-test-token";

fn stopped<T: std::fmt::Debug>(result: Result<T, RuntimeError>, what: &str) -> String {
    match result {
        Err(RuntimeError::Stopped(reason)) => reason,
        other => panic!("{what}: expected the runtime to have stopped, got {other:?}"),
    }
}

#[tokio::test]
async fn an_auth_store_that_cannot_be_written_stops_the_runtime_before_anything_relies_on_it() {
    let server = serve_for(TOKEN).expect("sim serve starts");
    let home = tempfile::tempdir().expect("temp dir");
    // The store is replaced through `auth.json.tmp`: a directory there makes every save fail,
    // whoever runs the test (root included).
    std::fs::create_dir(home.path().join("auth.json.tmp")).expect("mkdir");
    let config = Config { base_url: server.base_url(), ..Config::default() };
    assert!(config.use_agent_identity, "the default config registers identities");
    let options = Options::new(config, signed_in(TOKEN), home.path().to_owned());
    let runtime = Runtime::open(options).await.expect("opens: the store is only read here");
    let mut notices = runtime.subscribe().await.expect("subscribes");
    // Starting the thread prewarms: identity registration, whose success must be stored. The
    // turn, sent at once, waits for that identity: the failure must answer it, not leave it.
    let _ = runtime.start_thread("A").await;
    let turn = tokio::time::timeout(Duration::from_secs(10), runtime.turn("A", TurnId(1), "hi"))
        .await
        .expect("the waiting turn is answered");
    let reason = stopped(turn, "the turn waiting for the identity");
    assert!(reason.contains("auth.json"), "the reason names the store: {reason}");
    let reasons = [
        stopped(runtime.turn("A", TurnId(2), "again").await, "a turn"),
        stopped(runtime.start_thread("B").await, "another thread"),
        stopped(runtime.events("A").await, "events"),
        stopped(runtime.subscribe().await, "a new subscriber"),
        stopped(runtime.idle().await, "idle"),
    ];
    for other in reasons {
        assert_eq!(other, reason, "every verb gives the same reason");
    }
    runtime.shutdown().await;

    // The identity was registered but never stored, so nothing may have used it: no task
    // registration, no model request.
    let endpoints: Vec<String> =
        server.journal().into_iter().map(|e| e.endpoint.unwrap_or(e.path)).collect();
    assert_eq!(endpoints, ["biscuit", "identity_register"]);
    let mut sent = Vec::new();
    while let Ok(notice) = notices.try_recv() {
        if let Notice::Sent { path, .. } = notice {
            sent.push(path);
        }
    }
    assert_eq!(sent.len(), endpoints.len(), "the runtime sent what the backend saw: {sent:?}");
    // Whatever reached the rollout was acknowledged before the failure and is whole.
    let rollout = std::fs::read(home.path().join("rollouts/A.jsonl")).unwrap_or_default();
    assert!(rollout.is_empty() || rollout.ends_with(b"\n"), "no half line: {rollout:?}");
    assert!(
        !std::fs::read_dir(home.path())
            .expect("home")
            .any(|e| { e.expect("entry").file_name() == "auth.json" }),
        "no auth store was written"
    );
}
