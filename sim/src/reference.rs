//! The reference rules: a small, independent statement of what resume must produce, written
//! without the core's code so the two can check each other.

use agentsim_core::AgentTask;
use serde_json::Value;

/// The last well-formed `session_state` of a rollout: `None` when there is none, `Some(None)` for
/// `null` or a payload without the key, `Some(Some(task))` for a task. Reads lines from the end
/// and stops at the first one that is a valid `session_state`.
pub fn last_session_state(bytes: &[u8]) -> Option<Option<AgentTask>> {
    last_session_state_line(bytes).map(|(_, task)| task)
}

/// [`last_session_state`] with its 1-based line number.
pub fn last_session_state_line(bytes: &[u8]) -> Option<(usize, Option<AgentTask>)> {
    let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    bytes
        .rsplit(|b| *b == b'\n')
        .enumerate()
        .find_map(|(back, line)| session_state_of(line).map(|task| (lines - back, task)))
}

/// The task a thread holds right after resuming `bytes` with `current_runtime` as the identity.
pub fn predict_resume(
    bytes: &[u8],
    current_runtime: Option<&str>,
    use_agent_identity: bool,
    persist_task: bool,
) -> Option<AgentTask> {
    if !use_agent_identity || !persist_task {
        return None;
    }
    let task = last_session_state(bytes)??;
    (Some(task.agent_runtime_id.as_str()) == current_runtime).then_some(task)
}

/// The task ids of every well-formed `session_state` line with a task, in file order.
pub fn session_state_task_ids(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(session_state_of)
        .filter_map(|task| task.map(|t| t.task_id))
}

/// What a resume must report having read: the line count, the last `session_state` (line and
/// value) and the lines it must skip, each 1-based (spec rules 13 and 15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanReport {
    /// Lines in the rollout; a final newline ends the last line, it does not start another.
    pub lines: usize,
    /// The last well-formed `session_state` and its line.
    pub last: Option<(usize, Option<AgentTask>)>,
    /// Lines that are not a well-formed rollout line of a known type, each with whether it is
    /// the torn last line (no newline ends it).
    pub skipped: Vec<(usize, bool)>,
}

/// The rollout item types of spec section 1.
const ITEM_TYPES: [&str; 6] =
    ["session_meta", "session_state", "turn_context", "event_msg", "response_item", "compacted"];

/// Reads a rollout the way spec rules 13 and 15 say a resume must.
pub fn scan_report(bytes: &[u8]) -> ScanReport {
    let mut segments: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        segments.pop();
    }
    let unterminated = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let last = segments.len();
    let skipped = (1..=last)
        .filter(|n| !readable(segments[n - 1]))
        .map(|n| (n, unterminated && n == last))
        .collect();
    ScanReport { lines: segments.len(), last: last_session_state_line(bytes), skipped }
}

/// A JSON object with a string `type` of a known item type and an RFC 3339 `timestamp`; a
/// `session_state` must also hold a well-formed task or none.
fn readable(line: &[u8]) -> bool {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else { return false };
    let kind = object.get("type").and_then(Value::as_str);
    let stamped = object.get("timestamp").and_then(Value::as_str).is_some_and(is_rfc3339);
    match kind {
        Some("session_state") => stamped && session_state_of(line).is_some(),
        Some(kind) => stamped && ITEM_TYPES.contains(&kind),
        None => false,
    }
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
    if !is_rfc3339(value.get("timestamp")?.as_str()?) {
        return None;
    }
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

/// RFC 3339 `date-time` (section 5.6: `T` and `Z` in either case, any fraction, `Z` or a
/// `±HH:MM` offset), with real calendar dates, and no year before 1970 (no timestamp of this
/// lifecycle is that old).
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |from: usize, to: usize| -> Option<u32> {
        let part = b.get(from..to)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    let fields =
        (digits(0, 4), digits(5, 7), digits(8, 10), digits(11, 13), digits(14, 16), digits(17, 19));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
    else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    };
    shape
        && offset
        && year >= 1970
        && (1..=12).contains(&month)
        && (1..=month_days).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60
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
        let (line, _) = last_session_state_line(fixture).unwrap();
        assert_eq!(
            fixture.split(|b| *b == b'\n').nth(line - 1).map(|l| l.starts_with(b"{")),
            Some(true)
        );
    }

    #[test]
    fn timestamps_follow_rfc_3339() {
        for good in
            ["2026-04-18T14:02:10.001Z", "2026-04-18t14:02:10z", "2024-02-29T00:00:60+01:00"]
        {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2026-04-18 14:02:10Z",
            "2026-02-29T00:00:00Z",
            "2026-04-18T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-04-18T14:02:10.Z",
            "2026-04-18T14:02:10",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
