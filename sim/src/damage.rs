//! Rollout damage: the byte transformations behind the scenario step `damage <thread> <kind>`.
//!
//! Each kind rewrites a whole rollout (the engine replaces the thread's bytes with the result).
//! Appended lines have the rollout line shape `{"timestamp":"<RFC 3339 millis Z>","type":...,
//! "payload":...}`, timestamped with the run's current virtual time. A kind that cannot apply
//! (nothing to duplicate, too few lines, no identity to name) says why instead; the engine turns
//! that into a timeline note and leaves the rollout as it was.

use std::fmt;

use agentsim_core::{AgentTask, RolloutItem, RolloutLine, Timestamp};

/// The runtime a `stale_runtime` task names: never one the backend issues.
pub const STALE_RUNTIME: &str = "agent-stale";
/// The task id a `stale_runtime` task names.
pub const STALE_TASK: &str = "task-stale";
/// The task id a `foreign_task` task names: one this backend never issued.
pub const FOREIGN_TASK: &str = "task-foreign";
/// The `type` an `unknown_type` line has.
pub const UNKNOWN_TYPE: &str = "agentsim_unknown_item";
/// The text of a `garbage_line` line.
pub const GARBAGE: &str = "this line is not JSON {";

/// How a `damage` step rewrites a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DamageKind {
    /// Append a `session_state` line whose payload is `{}` (reads as `null`).
    EmptyPayload,
    /// Append a copy of the last `session_state` line.
    DuplicateState,
    /// Swap the last two `session_state` lines.
    ReorderStates,
    /// Every line ending becomes CRLF.
    Crlf,
    /// Cut a middle line in half, keeping its newline.
    TornMiddle,
    /// Append a line of an unknown `type`.
    UnknownType,
    /// Append a line that is not JSON.
    GarbageLine,
    /// Append a `session_state` whose task names runtime `agent-stale`, task `task-stale`.
    StaleRuntime,
    /// Append a `session_state` whose task has the current identity's runtime and a task id this
    /// backend never issued (`task-foreign`): a rollout written against another backend.
    ForeignTask,
    /// Append a `session_state` whose task has an empty task id (a malformed task, skipped at
    /// resume), under the current identity's runtime when there is one.
    EmptyTaskId,
}

impl DamageKind {
    /// Every kind, in the order documentation and error messages list them.
    pub const ALL: [DamageKind; 10] = [
        DamageKind::EmptyPayload,
        DamageKind::DuplicateState,
        DamageKind::ReorderStates,
        DamageKind::Crlf,
        DamageKind::TornMiddle,
        DamageKind::UnknownType,
        DamageKind::GarbageLine,
        DamageKind::StaleRuntime,
        DamageKind::ForeignTask,
        DamageKind::EmptyTaskId,
    ];

    /// The name written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            DamageKind::EmptyPayload => "empty_payload",
            DamageKind::DuplicateState => "duplicate_state",
            DamageKind::ReorderStates => "reorder_states",
            DamageKind::Crlf => "crlf",
            DamageKind::TornMiddle => "torn_middle",
            DamageKind::UnknownType => "unknown_type",
            DamageKind::GarbageLine => "garbage_line",
            DamageKind::StaleRuntime => "stale_runtime",
            DamageKind::ForeignTask => "foreign_task",
            DamageKind::EmptyTaskId => "empty_task_id",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<DamageKind> {
        DamageKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Applies `kind` to `bytes`. `now` timestamps appended lines; `current_runtime` is the runtime
/// of the auth store's identity (for `foreign_task`). `Err` says why the kind cannot apply.
pub fn apply(
    kind: DamageKind,
    bytes: &[u8],
    now: Timestamp,
    current_runtime: Option<&str>,
) -> Result<Vec<u8>, String> {
    let (lines, tail) = split(bytes);
    let states: Vec<usize> = (0..lines.len()).filter(|&i| is_session_state(lines[i])).collect();
    let task_line = |runtime: &str, task: &str| {
        let task = AgentTask {
            agent_runtime_id: runtime.to_owned(),
            task_id: task.to_owned(),
            registered_at: now.rfc3339_secs(),
        };
        RolloutLine { timestamp: now, item: RolloutItem::SessionState(Some(task)) }.to_json()
    };
    let raw_line = |kind: &str, payload: &str| {
        format!(r#"{{"timestamp":"{}","type":"{kind}","payload":{payload}}}"#, now.rfc3339_millis())
    };
    match kind {
        DamageKind::EmptyPayload => Ok(appended(bytes, raw_line("session_state", "{}").as_bytes())),
        DamageKind::DuplicateState => {
            let last = states.last().ok_or("the rollout has no session_state line to duplicate")?;
            Ok(appended(bytes, lines[*last]))
        }
        DamageKind::ReorderStates => {
            let [.., a, b] = states[..] else {
                return Err("the rollout has fewer than two session_state lines to reorder".into());
            };
            let mut order: Vec<&[u8]> = lines.clone();
            order.swap(a, b);
            Ok(join(&order, tail))
        }
        DamageKind::Crlf => {
            let mut out = Vec::with_capacity(bytes.len() + lines.len());
            for (i, byte) in bytes.iter().enumerate() {
                if *byte == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
                    out.push(b'\r');
                }
                out.push(*byte);
            }
            if out.len() == bytes.len() {
                return Err("every line of the rollout already ends with CRLF".into());
            }
            Ok(out)
        }
        DamageKind::TornMiddle => {
            if lines.len() < 3 {
                return Err("the rollout has fewer than three lines: no middle line to tear".into());
            }
            let middle = lines.len() / 2;
            let mut torn: Vec<&[u8]> = lines.clone();
            torn[middle] = &lines[middle][..lines[middle].len() / 2];
            Ok(join(&torn, tail))
        }
        DamageKind::UnknownType => Ok(appended(bytes, raw_line(UNKNOWN_TYPE, "{}").as_bytes())),
        DamageKind::GarbageLine => Ok(appended(bytes, GARBAGE.as_bytes())),
        DamageKind::StaleRuntime => {
            Ok(appended(bytes, task_line(STALE_RUNTIME, STALE_TASK).as_bytes()))
        }
        DamageKind::ForeignTask => {
            let runtime = current_runtime.ok_or("the auth store holds no identity to name")?;
            Ok(appended(bytes, task_line(runtime, FOREIGN_TASK).as_bytes()))
        }
        DamageKind::EmptyTaskId => {
            let runtime = current_runtime.unwrap_or(STALE_RUNTIME);
            Ok(appended(bytes, task_line(runtime, "").as_bytes()))
        }
    }
}

/// The complete lines (without their `\n`) and the bytes after the last `\n` (a torn tail, or
/// empty).
fn split(bytes: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let tail = lines.pop().unwrap_or_default();
    (lines, tail)
}

fn join(lines: &[&[u8]], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(tail);
    out
}

/// `bytes` with `line` appended; a torn tail is ended first, so it stays one damaged line.
fn appended(bytes: &[u8], line: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.last().is_some_and(|b| *b != b'\n') {
        out.push(b'\n');
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

fn is_session_state(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line)
        .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("session_state"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::SIM_EPOCH;

    fn state(task: Option<&str>) -> String {
        let task = task.map(|id| AgentTask {
            agent_runtime_id: "agent-1".into(),
            task_id: id.into(),
            registered_at: "2026-04-18T14:00:00Z".into(),
        });
        RolloutLine { timestamp: NOW, item: RolloutItem::SessionState(task) }.to_json()
    }

    fn rollout(lines: &[String]) -> Vec<u8> {
        lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect()
    }

    fn meta() -> String {
        r#"{"timestamp":"2026-04-18T14:00:00.000Z","type":"session_meta","payload":{}}"#.into()
    }

    fn apply_ok(kind: DamageKind, bytes: &[u8]) -> String {
        String::from_utf8(apply(kind, bytes, NOW, Some("agent-9")).expect("applies")).unwrap()
    }

    #[test]
    fn names_round_trip() {
        for kind in DamageKind::ALL {
            assert_eq!(DamageKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(DamageKind::from_name("nope"), None);
    }

    #[test]
    fn appended_lines_have_the_rollout_line_shape() {
        let base = rollout(&[meta()]);
        let ts = NOW.rfc3339_millis();
        let out = apply_ok(DamageKind::EmptyPayload, &base);
        assert!(out.ends_with(&format!(
            "{{\"timestamp\":\"{ts}\",\"type\":\"session_state\",\"payload\":{{}}}}\n"
        )));
        let out = apply_ok(DamageKind::UnknownType, &base);
        assert!(
            out.ends_with(&format!("\"type\":\"{UNKNOWN_TYPE}\",\"payload\":{{}}}}\n")),
            "{out}"
        );
        assert!(apply_ok(DamageKind::GarbageLine, &base).ends_with(&format!("{GARBAGE}\n")));
        let stale = apply_ok(DamageKind::StaleRuntime, &base);
        assert!(stale.starts_with(&meta()));
        let last: serde_json::Value = serde_json::from_str(stale.lines().last().unwrap()).unwrap();
        assert_eq!(last["type"], "session_state");
        assert_eq!(last["timestamp"], ts.as_str());
        assert_eq!(last["payload"]["agent_task"]["agent_runtime_id"], STALE_RUNTIME);
        assert_eq!(last["payload"]["agent_task"]["task_id"], STALE_TASK);
        let foreign = apply_ok(DamageKind::ForeignTask, &base);
        let last: serde_json::Value =
            serde_json::from_str(foreign.lines().last().unwrap()).unwrap();
        assert_eq!(last["payload"]["agent_task"]["agent_runtime_id"], "agent-9");
        assert_eq!(last["payload"]["agent_task"]["task_id"], FOREIGN_TASK);
    }

    #[test]
    fn a_torn_tail_is_ended_before_a_line_is_appended() {
        let mut base = rollout(&[meta()]);
        base.extend_from_slice(b"{\"timest");
        let out = apply_ok(DamageKind::GarbageLine, &base);
        assert!(out.ends_with(&format!("{{\"timest\n{GARBAGE}\n")), "{out}");
    }

    #[test]
    fn duplicate_and_reorder_work_on_session_state_lines() {
        let base = rollout(&[meta(), state(Some("task_a")), meta(), state(None)]);
        let dup = apply_ok(DamageKind::DuplicateState, &base);
        assert_eq!(dup, format!("{}{}\n", String::from_utf8_lossy(&base), state(None)));
        let reordered = apply_ok(DamageKind::ReorderStates, &base);
        assert_eq!(
            reordered,
            String::from_utf8(rollout(&[meta(), state(None), meta(), state(Some("task_a"))]))
                .unwrap()
        );
        let one = rollout(&[meta(), state(None)]);
        assert!(apply(DamageKind::ReorderStates, &one, NOW, None).is_err());
        assert!(apply(DamageKind::DuplicateState, &rollout(&[meta()]), NOW, None).is_err());
        assert!(apply(DamageKind::ForeignTask, &one, NOW, None).is_err());
    }

    #[test]
    fn crlf_rewrites_every_ending_once() {
        let base = rollout(&[meta(), state(None)]);
        let out = apply_ok(DamageKind::Crlf, &base);
        assert_eq!(out, format!("{}\r\n{}\r\n", meta(), state(None)));
        assert!(apply(DamageKind::Crlf, out.as_bytes(), NOW, None).is_err());
    }

    #[test]
    fn torn_middle_cuts_the_middle_line_and_keeps_its_newline() {
        let lines = [meta(), state(Some("task_a")), state(None)];
        let out = apply_ok(DamageKind::TornMiddle, &rollout(&lines));
        let cut = &lines[1][..lines[1].len() / 2];
        assert_eq!(out, format!("{}\n{cut}\n{}\n", lines[0], lines[2]));
        assert!(apply(DamageKind::TornMiddle, &rollout(&lines[..2]), NOW, None).is_err());
    }
}
