//! Core's commands, read the way the comparison sees them ([`Out`]). The request readings here
//! are the oracle's own (the `AgentAssertion` token decoded with base64 and JSON), on top of the
//! wire format's facts (paths, the header's scheme) from `wire`'s pure helpers: nothing of core's
//! protocol code decides what a request was.

use agentsim_core::output::{Command, EventKind};
use agentsim_core::wire::{self, HttpRequest};
use agentsim_core::{InFlight, Lifecycle, RolloutItem};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::terms::{Ev, Line, Out, Request};
use crate::fault::Endpoint;

/// What an `AgentAssertion` header carries, as the oracle reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asserted {
    pub agent_runtime_id: String,
    pub task_id: String,
    pub timestamp: String,
}

/// Decodes an `Authorization: AgentAssertion <base64url JSON>` header; `None` for any other
/// value or a malformed one.
pub fn assertion_of(request: &HttpRequest) -> Option<Result<Asserted, ()>> {
    let value = request.header("Authorization")?;
    let encoded = wire::assertion_token(value)?;
    let decode = || -> Option<Asserted> {
        let json: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded.trim()).ok()?).ok()?;
        let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Asserted {
            agent_runtime_id: field("agent_runtime_id")?,
            task_id: field("task_id")?,
            timestamp: field("timestamp")?,
        })
    };
    Some(decode().ok_or(()))
}

/// One command as the comparison sees it; `None` for what the model does not predict (logs,
/// marks). `machine` tells which thread a request works for (an observation of core's state:
/// the model then checks what the answer does to that thread).
pub fn observe(command: &Command, machine: &Lifecycle) -> Option<Out> {
    Some(match command {
        Command::Send { id, request, .. } => {
            Out::Send(request_of(request, machine.in_flight_request(*id)))
        }
        Command::Append { thread, line } => {
            Out::Append { thread: thread.0.clone(), line: line_of(&line.item) }
        }
        Command::AppendCopy { thread, bytes } => {
            Out::Append { thread: thread.0.clone(), line: Line::Copy(bytes.len()) }
        }
        Command::Emit(event) => {
            let ev = match &event.kind {
                EventKind::TaskStarted { turn } => Ev::TaskStarted(turn.0),
                EventKind::UserMessage { turn, .. } => Ev::UserMessage(turn.0),
                EventKind::Error { turn, failure, .. } => {
                    Ev::Error { turn: turn.map(|t| t.0), failure: *failure }
                }
                EventKind::TurnComplete { turn } => Ev::TurnComplete(turn.0),
            };
            Out::Emit { thread: event.thread.0.clone(), event: ev }
        }
        Command::StoreIdentity(stored) => Out::StoreIdentity(stored.agent_runtime_id.clone()),
        Command::DeleteIdentity => Out::DeleteIdentity,
        Command::Log(line) => {
            let failure = line.failure?;
            let thread = line.fields.iter().find(|(key, _)| *key == "thread");
            Out::FailureLog { thread: thread.map(|(_, name)| name.clone()), failure }
        }
        Command::Mark(_) => return None,
    })
}

fn request_of(request: &HttpRequest, what: Option<InFlight>) -> Request {
    let thread = crate::engine::purpose_thread(&what);
    let path = request.path();
    match Endpoint::of_path(path) {
        Some(Endpoint::Biscuit) => {
            let target = request.header("X-Original-Url").unwrap_or_default();
            if wire::runtime_of_task_register_path(wire::url_path(target)).is_some() {
                Request::TaskBiscuit { thread }
            } else {
                Request::IdentityBiscuit
            }
        }
        Some(Endpoint::IdentityRegister) => Request::IdentityRegister,
        Some(Endpoint::TaskRegister) => {
            let agent_runtime_id =
                wire::runtime_of_task_register_path(path).unwrap_or_default().to_owned();
            Request::TaskRegister { thread, agent_runtime_id }
        }
        Some(Endpoint::Model) => {
            let turn = match what {
                Some(InFlight::Model(_, turn)) => turn.0,
                _ => 0,
            };
            let assertion = match assertion_of(request) {
                Some(Ok(a)) => Some((a.agent_runtime_id, a.task_id)),
                Some(Err(())) => Some(("<malformed>".to_owned(), "<malformed>".to_owned())),
                None => None,
            };
            Request::Model { thread, turn, assertion }
        }
        None => Request::Unknown { path: path.to_owned() },
    }
}

fn line_of(item: &RolloutItem) -> Line {
    let field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    match item {
        RolloutItem::SessionState(task) => Line::State(
            task.as_ref()
                .map(|t| (t.agent_runtime_id.clone(), t.task_id.clone(), t.registered_at.clone())),
        ),
        RolloutItem::SessionMeta(_) => Line::SessionMeta,
        RolloutItem::TurnContext(_) => Line::TurnContext,
        RolloutItem::Compacted(_) => Line::Compacted,
        RolloutItem::EventMsg(v) => match field(v, "type").as_deref() {
            Some("user_message") => Line::UserMessage,
            Some("token_count") => Line::TokenCount,
            Some("thread_rolled_back") => {
                Line::RolledBack(v.get("num_turns").and_then(Value::as_u64).unwrap_or(u64::MAX))
            }
            _ => Line::Other(item.type_name().to_owned()),
        },
        RolloutItem::ResponseItem(v) => match field(v, "role").as_deref() {
            Some("user") => Line::UserItem,
            Some("assistant") => Line::AssistantItem,
            _ => Line::Other(item.type_name().to_owned()),
        },
    }
}
