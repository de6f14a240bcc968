//! One helper per boundary: what the tests assert about requests, events, rollouts, the auth
//! store, logs, marks and the trace.

use crate::output::{EventKind, Failure, Level};
use crate::rollout;

use super::driver::{describe_event, describe_request, Harness};

/// The `session_state` values of a rollout, oldest first: `runtime/task`, `null` (also for a
/// missing key), or `malformed`. Lines that are not JSON are passed over.
fn session_states(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "session_state")
        .map(|v| match &v["payload"]["agent_task"] {
            serde_json::Value::Null => "null".to_owned(),
            task => match (task["agent_runtime_id"].as_str(), task["task_id"].as_str()) {
                (Some(runtime), Some(id)) => format!("{runtime}/{id}"),
                _ => "malformed".to_owned(),
            },
        })
        .collect()
}

// ---- one helper per boundary ------------------------------------------------------------

/// A new rollout's `session_meta` line and what follows it: the rollout must begin with one.
#[track_caller]
pub(in crate::tests) fn after_session_meta(rollout: &[u8]) -> (&[u8], &[u8]) {
    let end = rollout.iter().position(|b| *b == b'\n').map_or(rollout.len(), |i| i + 1);
    let (meta, rest) = rollout.split_at(end);
    let text = String::from_utf8_lossy(meta);
    assert!(text.contains("\"type\":\"session_meta\""), "the rollout begins with {text}");
    (meta, rest)
}

/// The requests sent since the last `forget`, as `METHOD path[ as runtime/task]`.
#[track_caller]
pub(in crate::tests) fn assert_requests(h: &Harness, expected: &[&str]) {
    let actual: Vec<String> = h.sent.iter().map(|(_, r)| describe_request(r)).collect();
    assert_eq!(actual, expected, "requests sent");
}

/// How many requests named `what` were sent since the last `forget`.
pub(in crate::tests) fn count_requests(h: &Harness, what: &str) -> usize {
    h.sent.iter().filter(|(_, r)| describe_request(r) == what).count()
}

/// The events of `thread`, as `name[ turn-N]`.
#[track_caller]
pub(in crate::tests) fn assert_events(h: &Harness, thread: &str, expected: &[&str]) {
    let actual: Vec<String> =
        h.events.iter().filter(|e| e.thread.0 == thread).map(|e| describe_event(&e.kind)).collect();
    assert_eq!(actual, expected, "events of {thread}");
}

/// The messages of `thread`'s error events, exactly.
#[track_caller]
pub(in crate::tests) fn assert_errors(h: &Harness, thread: &str, expected: &[&str]) {
    let actual: Vec<&str> = h
        .events
        .iter()
        .filter(|e| e.thread.0 == thread)
        .filter_map(|e| match &e.kind {
            EventKind::Error { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(actual, expected, "error messages of {thread}");
}

/// What each of `thread`'s error events names as failed, exactly.
#[track_caller]
pub(in crate::tests) fn assert_failures(h: &Harness, thread: &str, expected: &[Failure]) {
    let actual: Vec<Failure> = h
        .events
        .iter()
        .filter(|e| e.thread.0 == thread)
        .filter_map(|e| match &e.kind {
            EventKind::Error { failure, .. } => Some(*failure),
            _ => None,
        })
        .collect();
    assert_eq!(actual, expected, "failures of {thread}");
}

/// What the failure log lines name as failed, in order; every other line names nothing.
#[track_caller]
pub(in crate::tests) fn assert_failures_logged(h: &Harness, expected: &[Failure]) {
    let actual: Vec<Failure> = h.logs.iter().filter_map(|l| l.failure).collect();
    assert_eq!(actual, expected, "failure log lines in\n{}", logs_text(h));
    for line in &h.logs {
        assert_eq!(
            line.failure.is_some(),
            line.level == Level::Warn && line.message.contains("failed"),
            "log line {line}: a warning that something failed names the failure, no other does"
        );
    }
}

/// Every `session_state` value in `thread`'s rollout file, oldest first.
#[track_caller]
pub(in crate::tests) fn assert_session_states(h: &Harness, thread: &str, expected: &[&str]) {
    assert_eq!(session_states(&h.rollout(thread)), expected, "session_state lines of {thread}");
}

/// The `type` of every line of `thread`'s rollout file that the machine appended after `skip`
/// bytes.
#[track_caller]
pub(in crate::tests) fn assert_appended_types(
    h: &Harness,
    thread: &str,
    skip: usize,
    expected: &[&str],
) {
    let file = h.rollout(thread);
    let text = String::from_utf8_lossy(&file[skip..]);
    let actual: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("the machine writes JSON")["type"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    assert_eq!(actual, expected, "lines appended to {thread}");
}

/// The thread's cached task, as `runtime/task`.
#[track_caller]
pub(in crate::tests) fn assert_cached(h: &Harness, thread: &str, expected: Option<&str>) {
    let actual = h
        .machine
        .cached_task(&thread.into())
        .map(|t| format!("{}/{}", t.agent_runtime_id, t.task_id));
    assert_eq!(actual.as_deref(), expected, "cached task of {thread}");
}

/// Spec invariant 13: the last `session_state` of the rollout equals the cached task.
#[track_caller]
pub(in crate::tests) fn assert_cache_agrees_with_rollout(h: &Harness, thread: &str) {
    let last = rollout::scan(&h.rollout(thread)).last_state.and_then(|s| s.task);
    assert_eq!(last.as_ref(), h.machine.cached_task(&thread.into()), "invariant 13 on {thread}");
}

/// The identity in the auth store, by runtime id.
#[track_caller]
pub(in crate::tests) fn assert_stored(h: &Harness, expected: Option<&str>) {
    assert_eq!(h.store.as_ref().map(|s| s.agent_runtime_id.as_str()), expected, "auth store");
}

/// A log line with this message was written.
#[track_caller]
pub(in crate::tests) fn assert_logged(h: &Harness, message: &str) {
    assert!(
        h.logs.iter().any(|l| l.message == message),
        "no log line {message:?} in\n{}",
        logs_text(h)
    );
}

/// A log line with this message was written at this level.
#[track_caller]
pub(in crate::tests) fn assert_logged_at(h: &Harness, level: Level, message: &str) {
    assert!(
        h.logs.iter().any(|l| l.message == message && l.level == level),
        "no {} log line {message:?} in\n{}",
        level.name(),
        logs_text(h)
    );
}

/// No log line with this message was written.
#[track_caller]
pub(in crate::tests) fn assert_not_logged(h: &Harness, message: &str) {
    assert!(
        !h.logs.iter().any(|l| l.message == message),
        "unexpected log line {message:?} in\n{}",
        logs_text(h)
    );
}

/// The values of field `field` of every log line with this message.
pub(in crate::tests) fn logged_fields(h: &Harness, message: &str, field: &str) -> Vec<String> {
    h.logs
        .iter()
        .filter(|l| l.message == message)
        .filter_map(|l| l.fields.iter().find(|(n, _)| *n == field).map(|(_, v)| v.clone()))
        .collect()
}

fn logs_text(h: &Harness) -> String {
    h.logs.iter().map(|l| format!("  {l}\n")).collect()
}

/// The coverage mark was reported.
#[track_caller]
pub(in crate::tests) fn assert_marked(h: &Harness, mark: &str) {
    assert!(h.marks.contains(&mark), "mark {mark} not hit; marks: {:?}", h.marks);
}

/// The coverage mark was not reported.
#[track_caller]
pub(in crate::tests) fn assert_not_marked(h: &Harness, mark: &str) {
    assert!(!h.marks.contains(&mark), "mark {mark} unexpectedly hit");
}

/// How many times the mark was reported.
pub(in crate::tests) fn count_marks(h: &Harness, mark: &str) -> usize {
    h.marks.iter().filter(|m| **m == mark).count()
}

/// These trace lines all appear, in this order (others may come between).
#[track_caller]
pub(in crate::tests) fn assert_trace_order(h: &Harness, expected: &[&str]) {
    let mut rest = h.trace.iter();
    for want in expected {
        assert!(
            rest.any(|line| line == want),
            "{want:?} missing or out of order in trace:\n{}",
            h.trace.join("\n")
        );
    }
}
