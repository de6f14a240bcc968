//! The reference rules: a small, independent statement of what resume must produce, written
//! without the core's code so the two can check each other.

use agentsim_core::AgentTask;
use serde_json::Value;

/// The last well-formed `session_state` of a rollout: `None` when there is none, `Some(None)` for
/// `null` or a payload without the key, `Some(Some(task))` for a task. Reads lines from the end
/// and stops at the first one that is a valid `session_state`.
pub fn last_session_state(bytes: &[u8]) -> Option<Option<AgentTask>> {
    bytes.split(|b| *b == b'\n').rev().find_map(session_state_of)
}

/// The task a thread holds right after resuming `bytes` with `current_runtime` as the identity.
pub fn predict_resume(
    bytes: &[u8],
    current_runtime: Option<&str>,
    flag: bool,
    persist_task: bool,
) -> Option<AgentTask> {
    if !flag || !persist_task {
        return None;
    }
    let task = last_session_state(bytes)??;
    (Some(task.agent_runtime_id.as_str()) == current_runtime).then_some(task)
}

/// Counts the lines whose `type` is `session_state`, well-formed or not.
pub fn session_state_lines(bytes: &[u8]) -> usize {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| {
            serde_json::from_slice::<Value>(line)
                .ok()
                .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("session_state"))
        })
        .count()
}

fn session_state_of(line: &[u8]) -> Option<Option<AgentTask>> {
    let value: Value = serde_json::from_slice(line).ok()?;
    if value.get("type")?.as_str()? != "session_state" {
        return None;
    }
    agentsim_core::Timestamp::parse_rfc3339(value.get("timestamp")?.as_str()?).ok()?;
    let payload = value.get("payload")?.as_object()?;
    let task = match payload.get("agent_task") {
        None | Some(Value::Null) => return Some(None),
        Some(task) => task.as_object()?,
    };
    if task.len() != 3 {
        return None;
    }
    let field = |name: &str| task.get(name).and_then(Value::as_str).map(str::to_owned);
    let (runtime, id, at) =
        (field("agent_runtime_id")?, field("task_id")?, field("registered_at")?);
    if runtime.is_empty() || id.is_empty() {
        return None;
    }
    Some(Some(AgentTask { agent_runtime_id: runtime, task_id: id, registered_at: at }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_agrees_with_the_fixture() {
        let fixture = include_bytes!("../../core/tests/fixtures/reference-rollout.jsonl");
        let task = predict_resume(fixture, Some("agent-8b41"), true, true).unwrap();
        assert_eq!(task.task_id, "task_0d77");
        assert_eq!(predict_resume(fixture, Some("agent-7f3a"), true, true), None);
        assert_eq!(session_state_lines(fixture), 3);
    }
}
