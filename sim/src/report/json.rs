//! A run as typed JSON records (`sim scenario --format json`, `report.json` under `--out`): what
//! the snapshot shows, as values a program reads without parsing sentences. The shape is
//! documented in `docs/run-json.md` and `docs/run.schema.json`; `tests/gate.rs` validates every
//! scenario's output against that schema. A field is added under the same [`SCHEMA_VERSION`]; a
//! field changed or removed bumps it.

use serde_json::{json, Map, Value};

use agentsim_core::{EventKind, Failure};

use super::{render_rollout, RunReport};

/// The version of the record shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The record of one run; `replay` is the command that reproduces it.
pub fn run_json(report: &RunReport, replay: &str) -> Value {
    let tally = &report.tally;
    json!({
        "schema": "agentsim-run",
        "schema_version": SCHEMA_VERSION,
        "scenario": report.scenario,
        "description": report.description,
        "seed": report.seed,
        "transport": report.transport.name(),
        "replay": replay,
        "passed": report.passed(),
        "verdict": report.verdict(),
        "violation": report.violation.as_ref().map(|v| json!({
            "invariant": v.invariant.spec_number(),
            "name": v.invariant.to_string(),
            "step": v.step,
            "message": v.message,
        })),
        "expectations": report.expectations.iter().map(|e| json!({
            "line": e.line,
            "expectation": e.expectation,
            "expected": e.expected,
            "actual": e.actual,
            "passed": e.passed,
        })).collect::<Vec<_>>(),
        "timeline": tally.entries.iter().map(|e| json!({
            "at_ms": e.at_ms,
            "who": e.who,
            "kind": entry_kind(e.kind),
            "text": e.text,
        })).collect::<Vec<_>>(),
        "events": tally.event_values.iter().zip(&tally.event_at_ms).map(|(event, at)| {
            let (turn, failure, message) = match &event.kind {
                EventKind::TaskStarted { turn } | EventKind::TurnComplete { turn } => (Some(turn.0), None, None),
                EventKind::UserMessage { turn, message } => (Some(turn.0), None, Some(message.as_str())),
                EventKind::Error { turn, failure, message } => (turn.map(|t| t.0), Some(failure_name(*failure)), Some(message.as_str())),
            };
            json!({"at_ms": at, "thread": event.thread.0, "kind": event.kind.name(), "turn": turn, "failure": failure, "message": message})
        }).collect::<Vec<_>>(),
        "requests": tally.request_records.iter().map(|r| json!({
            "number": r.number,
            "at_ms": r.at_ms,
            "thread": r.thread,
            "endpoint": r.endpoint.map(|e| e.name()),
            "method": r.method,
            "path": r.path,
            "purpose": r.purpose,
            "fault": r.fault,
            "outcome": r.outcome,
        })).collect::<Vec<_>>(),
        "rollouts": report.rollouts.iter().map(|(thread, bytes)| (thread.clone(), Value::Array(rollout_lines(bytes)))).collect::<Map<String, Value>>(),
        "logs": tally.log_values.iter().map(|(at, line)| json!({
            "at_ms": at,
            "level": line.level.name(),
            "message": line.message,
            "failure": line.failure.map(failure_name),
            "fields": line.fields.iter().map(|(k, v)| ((*k).to_owned(), Value::from(v.as_str()))).collect::<Map<String, Value>>(),
        })).collect::<Vec<_>>(),
        "marks": tally.marks,
        "virtual_ms": report.virtual_ms,
    })
}

/// Each rollout line as the JSON object it holds; a line that is not JSON (damage, a torn
/// write) as `{"unreadable": text}`.
fn rollout_lines(bytes: &[u8]) -> Vec<Value> {
    let complete = bytes.last() == Some(&b'\n');
    let lines = render_rollout(bytes);
    let n = lines.len();
    let mut parts = bytes.split(|b| *b == b'\n');
    let mut out = Vec::with_capacity(n);
    for (i, shown) in lines.into_iter().enumerate() {
        let raw = parts.next().unwrap_or_default();
        let torn = i + 1 == n && !complete;
        match serde_json::from_slice::<Value>(raw) {
            Ok(value) if value.is_object() && !torn => out.push(value),
            _ => out.push(json!({"unreadable": shown})),
        }
    }
    out
}

fn entry_kind(kind: super::EntryKind) -> &'static str {
    use super::EntryKind::*;
    match kind {
        Step => "step",
        Request(_) => "request",
        Answer(_) => "answer",
        Failed(_) => "failed",
        Append => "append",
        Event => "event",
        Log => "log",
        Note => "note",
    }
}

/// A typed cause: `{"cause": "task_registration"}`, `{"cause": "model_request", "status": 401}`.
fn failure_name(failure: Failure) -> Value {
    match failure {
        Failure::IdentityRegistration => json!({"cause": "identity_registration"}),
        Failure::Prewarm => json!({"cause": "prewarm"}),
        Failure::TaskRegistration => json!({"cause": "task_registration"}),
        Failure::ModelRequest { status } => json!({"cause": "model_request", "status": status}),
    }
}
