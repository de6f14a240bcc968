//! The rollout codec: JSONL lines shaped `{"timestamp", "type", "payload"}`, and the scan that
//! resume runs over a rollout (spec rules 13 and 15).
//!
//! Writing produces exactly the reference design's shapes. Reading never fails: a line that is
//! not UTF-8, not JSON, of an unknown type, torn, or a `session_state` with a malformed task is
//! skipped and reported with its line number, and everything else is used.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;

/// A thread's agent task: the only thing a `session_state` line ever persists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTask {
    /// The identity it was registered under.
    pub agent_runtime_id: String,
    /// The backend's task id.
    pub task_id: String,
    /// RFC 3339 seconds, as the registration was timestamped.
    pub registered_at: String,
}

/// The rollout item types of the reference design. Anything else is an unknown type.
pub const KNOWN_TYPES: [&str; 6] =
    ["session_meta", "session_state", "turn_context", "event_msg", "response_item", "compacted"];

/// One rollout line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutLine {
    /// When it was written.
    pub timestamp: Timestamp,
    /// What it holds.
    pub item: RolloutItem,
}

/// The items this lifecycle writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutItem {
    /// `session_meta`: the rollout's first line, naming the session.
    SessionMeta(Value),
    /// `turn_context`: the settings a turn runs with, written before its user message.
    TurnContext(Value),
    /// `compacted`: the history summarised; resume passes over it (rule 13 reads the whole file).
    Compacted(Value),
    /// `session_state`: the persisted task, or `null` after a clear.
    SessionState(Option<AgentTask>),
    /// `event_msg` with the given payload.
    EventMsg(Value),
    /// `response_item` with the given payload.
    ResponseItem(Value),
}

impl RolloutItem {
    /// The line's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            RolloutItem::SessionMeta(_) => "session_meta",
            RolloutItem::TurnContext(_) => "turn_context",
            RolloutItem::Compacted(_) => "compacted",
            RolloutItem::SessionState(_) => "session_state",
            RolloutItem::EventMsg(_) => "event_msg",
            RolloutItem::ResponseItem(_) => "response_item",
        }
    }

    /// The line's `payload`.
    pub fn payload(&self) -> Value {
        match self {
            RolloutItem::SessionState(task) => serde_json::json!({ "agent_task": task }),
            RolloutItem::SessionMeta(v)
            | RolloutItem::TurnContext(v)
            | RolloutItem::Compacted(v)
            | RolloutItem::EventMsg(v)
            | RolloutItem::ResponseItem(v) => v.clone(),
        }
    }
}

/// The `session_state` item of rule 10: the thread's task, or `null` after a clear.
pub fn session_state(task: Option<AgentTask>) -> RolloutItem {
    RolloutItem::SessionState(task)
}

/// The fixed values of the reference fixture's `session_meta` and `turn_context`: a harness's
/// rollouts look like a real CLI session's.
pub const SESSION_CWD: &str = "/home/dev/project";

/// The `session_meta` a new rollout begins with: the session's id, when it started, and the
/// reference fixture's fixed fields.
pub fn session_meta(id: &str, started: Timestamp) -> RolloutItem {
    RolloutItem::SessionMeta(serde_json::json!({
        "id": id,
        "timestamp": started.rfc3339_millis(),
        "cwd": SESSION_CWD,
        "originator": "codex_cli_rs",
        "cli_version": "0.120.0",
        "source": "cli",
        "model_provider": "openai",
    }))
}

/// The `turn_context` each turn writes before its user message.
pub fn turn_context() -> RolloutItem {
    RolloutItem::TurnContext(serde_json::json!({
        "cwd": SESSION_CWD,
        "approval_policy": "on-request",
        "sandbox_policy": {"type": "workspace-write"},
        "model": "gpt-5-codex",
        "effort": "medium",
        "summary": "auto",
    }))
}

/// The `token_count` `event_msg` that follows a completed model answer.
pub fn token_count(input_tokens: u64, output_tokens: u64) -> RolloutItem {
    RolloutItem::EventMsg(serde_json::json!({
        "type": "token_count",
        "info": {"total_token_usage": {
            "input_tokens": input_tokens,
            "cached_input_tokens": 0,
            "output_tokens": output_tokens,
            "reasoning_output_tokens": 0,
            "total_tokens": input_tokens + output_tokens,
        }},
    }))
}

/// The `compacted` item a compaction writes: the history so far, summarised.
pub fn compacted() -> RolloutItem {
    RolloutItem::Compacted(serde_json::json!({"message": "summary of the conversation so far"}))
}

/// The `event_msg` a thread rollback writes: the last `num_turns` user turns leave the history.
/// The lines stay in the file, `session_state` lines included, so a rollback never undoes a
/// task change (rule 13 reads the last `session_state` of the whole file).
pub fn thread_rolled_back(num_turns: u32) -> RolloutItem {
    RolloutItem::EventMsg(serde_json::json!({"type": "thread_rolled_back", "num_turns": num_turns}))
}

/// The `event_msg` a turn starts with: the user's message as the reference design logs it.
pub fn user_message_event(text: &str) -> RolloutItem {
    RolloutItem::EventMsg(
        serde_json::json!({"type": "user_message", "message": text, "images": []}),
    )
}

/// The `response_item` holding the user's input to the model.
pub fn user_input_item(text: &str) -> RolloutItem {
    RolloutItem::ResponseItem(serde_json::json!({
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]
    }))
}

/// The `response_item` holding the model's answer.
pub fn assistant_output_item(text: &str) -> RolloutItem {
    RolloutItem::ResponseItem(serde_json::json!({
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]
    }))
}

#[derive(Serialize)]
struct LineOut<'a> {
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'a str,
    payload: Value,
}

impl RolloutLine {
    /// The JSON text of the line, without the trailing newline.
    pub fn to_json(&self) -> String {
        let out = LineOut {
            timestamp: self.timestamp.rfc3339_millis(),
            kind: self.item.type_name(),
            payload: self.item.payload(),
        };
        serde_json::to_string(&out).expect("a rollout line always serializes")
    }
}

/// A line resume passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// The rollout's last line, not ended by a newline: a write a crash cut short (rule 15).
    pub torn: bool,
    /// What was wrong with it.
    pub reason: String,
}

/// The last `session_state` of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastState {
    /// 1-based line number.
    pub line: usize,
    /// The task it holds; `None` for `null` or a missing key.
    pub task: Option<AgentTask>,
}

/// What resume needs from a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RolloutScan {
    /// Lines read (including skipped ones; not counting an empty final segment).
    pub lines: usize,
    /// The last well-formed `session_state`, if any.
    pub last_state: Option<LastState>,
    /// Lines passed over.
    pub skipped: Vec<SkippedLine>,
}

/// Scans a whole rollout. Never fails.
pub fn scan(bytes: &[u8]) -> RolloutScan {
    let mut result = RolloutScan::default();
    let ends_with_newline = bytes.last() == Some(&b'\n');
    let mut segments: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if ends_with_newline || bytes.is_empty() {
        segments.pop();
    }
    let count = segments.len();
    for (index, raw) in segments.into_iter().enumerate() {
        let line = index + 1;
        result.lines = line;
        let is_last_unterminated = index + 1 == count && !ends_with_newline;
        match read_line(raw) {
            Ok(None) => {}
            Ok(Some(task)) => result.last_state = Some(LastState { line, task }),
            Err(reason) => {
                let torn = is_last_unterminated;
                let reason = if torn { format!("torn final line ({reason})") } else { reason };
                result.skipped.push(SkippedLine { line, torn, reason });
            }
        }
    }
    result
}

/// Reads one line: `Ok(Some(task))` for a `session_state`, `Ok(None)` for any other known item.
fn read_line(raw: &[u8]) -> Result<Option<Option<AgentTask>>, String> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err("blank line".into());
    }
    let text =
        std::str::from_utf8(raw).map_err(|e| format!("not UTF-8 (byte {})", e.valid_up_to()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let kind = object.get("type").and_then(Value::as_str).ok_or("no string \"type\"")?;
    match object.get("timestamp").and_then(Value::as_str) {
        Some(ts) => {
            Timestamp::parse_rfc3339(ts).map_err(|e| e.to_string())?;
        }
        None => return Err("no string \"timestamp\"".into()),
    }
    if !KNOWN_TYPES.contains(&kind) {
        return Err(format!("unknown type {kind:?}"));
    }
    if kind != "session_state" {
        return Ok(None);
    }
    let payload = object.get("payload").ok_or("session_state without payload")?;
    let payload = payload.as_object().ok_or("session_state payload is not an object")?;
    match payload.get("agent_task") {
        None | Some(Value::Null) => Ok(Some(None)),
        Some(task) => {
            let task: AgentTask = serde_json::from_value(task.clone())
                .map_err(|e| format!("malformed agent_task: {e}"))?;
            if task.agent_runtime_id.is_empty() || task.task_id.is_empty() {
                return Err("malformed agent_task: empty id".into());
            }
            Ok(Some(Some(task)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../tests/fixtures/reference-rollout.jsonl");

    fn task(runtime: &str, id: &str) -> AgentTask {
        AgentTask {
            agent_runtime_id: runtime.into(),
            task_id: id.into(),
            registered_at: "2026-04-18T14:02:11Z".into(),
        }
    }

    #[test]
    fn session_state_lines_have_the_reference_shape() {
        let at = Timestamp::parse_rfc3339("2026-04-18T14:02:12.004Z").unwrap();
        let line = RolloutLine {
            timestamp: at,
            item: RolloutItem::SessionState(Some(task("agent-7f3a", "task_91c2"))),
        };
        assert_eq!(
            line.to_json(),
            r#"{"timestamp":"2026-04-18T14:02:12.004Z","type":"session_state","payload":{"agent_task":{"agent_runtime_id":"agent-7f3a","task_id":"task_91c2","registered_at":"2026-04-18T14:02:11Z"}}}"#
        );
        let null = RolloutLine { timestamp: at, item: RolloutItem::SessionState(None) };
        assert_eq!(
            null.to_json(),
            r#"{"timestamp":"2026-04-18T14:02:12.004Z","type":"session_state","payload":{"agent_task":null}}"#
        );
    }

    #[test]
    fn turn_lines_have_the_reference_shape() {
        let lines: Vec<&str> = REFERENCE.lines().collect();
        let line = |at: &str, item| {
            RolloutLine { timestamp: Timestamp::parse_rfc3339(at).unwrap(), item }.to_json()
        };
        let question = "why does the build fail?";
        let answer = "A missing feature flag in Cargo.toml.";
        assert_eq!(line("2026-04-18T14:02:11.260Z", user_message_event(question)), lines[2]);
        assert_eq!(line("2026-04-18T14:02:11.261Z", user_input_item(question)), lines[3]);
        assert_eq!(line("2026-04-18T14:02:15.870Z", assistant_output_item(answer)), lines[5]);
    }

    #[test]
    fn rule13_reference_rollout_latest_state_wins() {
        let scan = scan(REFERENCE.as_bytes());
        assert_eq!(scan.skipped, vec![]);
        assert_eq!(scan.lines, 10);
        assert_eq!(
            scan.last_state,
            Some(LastState {
                line: 9,
                task: Some(AgentTask {
                    agent_runtime_id: "agent-8b41".into(),
                    task_id: "task_0d77".into(),
                    registered_at: "2026-04-18T16:40:03Z".into()
                })
            })
        );
    }

    #[test]
    fn rule13_our_lines_read_back() {
        let t = task("agent-1", "task-1");
        let text = [RolloutItem::SessionState(Some(t.clone())), RolloutItem::SessionState(None)]
            .into_iter()
            .map(|item| RolloutLine { timestamp: Timestamp::SIM_EPOCH, item }.to_json() + "\n")
            .collect::<String>();
        assert_eq!(scan(text.as_bytes()).last_state.map(|s| s.task), Some(None));
        let first_only = text.lines().next().unwrap().to_owned() + "\n";
        assert_eq!(scan(first_only.as_bytes()).last_state.map(|s| s.task), Some(Some(t)));
    }

    #[test]
    fn rule13_missing_key_reads_as_null() {
        let text = "{\"timestamp\":\"2026-04-18T14:02:12.004Z\",\"type\":\"session_state\",\"payload\":{}}\n";
        assert_eq!(scan(text.as_bytes()).last_state, Some(LastState { line: 1, task: None }));
    }

    #[test]
    fn rule15_damaged_lines_are_skipped_and_reported() {
        let good = RolloutLine {
            timestamp: Timestamp::SIM_EPOCH,
            item: RolloutItem::SessionState(Some(task("agent-1", "t1"))),
        }
        .to_json();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(good.as_bytes());
        bytes.extend_from_slice(b"\nnot json\n");
        bytes.extend_from_slice(
            b"{\"timestamp\":\"2026-04-18T14:02:12.004Z\",\"type\":\"mystery\",\"payload\":{}}\n",
        );
        bytes.extend_from_slice(b"{\"timestamp\":\"2026-04-18T14:02:12.004Z\",\"type\":\"session_state\",\"payload\":{\"agent_task\":{\"task_id\":5}}}\n");
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        bytes.extend_from_slice(&good.as_bytes()[..good.len() / 2]);
        let scan = scan(&bytes);
        let reasons: Vec<(usize, &str)> =
            scan.skipped.iter().map(|s| (s.line, s.reason.split(':').next().unwrap())).collect();
        assert_eq!(
            reasons,
            vec![
                (2, "not JSON"),
                (3, "unknown type \"mystery\""),
                (4, "malformed agent_task"),
                (5, "not UTF-8 (byte 0)"),
                (6, "torn final line (not JSON")
            ]
        );
        assert_eq!(scan.last_state.map(|s| s.line), Some(1));
    }

    #[test]
    fn rule15_empty_and_blank_inputs() {
        assert_eq!(scan(b""), RolloutScan::default());
        let blank = scan(b"\n\n");
        assert_eq!(blank.lines, 2);
        assert_eq!(blank.skipped.len(), 2);
    }
}
