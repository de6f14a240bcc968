//! The terms the reference model and the comparison share: tasks with their origin, the
//! identity slot, requests, rollout lines, events and failure logs as the comparison sees them,
//! and how a divergence report prints them.

use std::fmt;

use agentsim_core::{Failure, Timestamp};

/// A task as the model knows it. Two tasks are the same when their three persisted fields are.
#[derive(Clone, Debug)]
pub struct Task {
    pub agent_runtime_id: String,
    pub task_id: String,
    pub registered_at: String,
    /// Where the thread got it, for divergence reports.
    pub origin: Origin,
}

impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        self.agent_runtime_id == other.agent_runtime_id
            && self.task_id == other.task_id
            && self.registered_at == other.registered_at
    }
}

/// Where a task came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Issued by the task registration that was request `#n` of the run.
    Registered { request: u64 },
    /// Read from line `line` of the thread's rollout.
    Rollout { line: usize },
}

/// A workspace: `chatgpt_account_id` and the optional user id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub account: String,
    pub user: Option<String>,
}

impl Workspace {
    /// The same account, and the same user when both name one.
    pub fn same_as(&self, other: &Workspace) -> bool {
        self.account == other.account
            && (self.user.is_none() || other.user.is_none() || self.user == other.user)
    }
}

/// The identity in the auth store's slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub agent_runtime_id: String,
    pub workspace: Workspace,
    pub expires_at: Option<Timestamp>,
}

/// A process's policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub use_agent_identity: bool,
    pub reacquire: bool,
    pub persist_task: bool,
}

/// The reference model's operation a request belongs to, named from the observed [`Request`]:
/// the request's answer goes to it. The oracle's own account; core's `InFlight` is what it checks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// The process's identity registration (its biscuit, then the registration).
    Identity,
    /// A thread's task registration (its biscuit, then the registration).
    Task(String),
    /// A thread's model request.
    Model(String),
}

/// What a request is, as the comparison sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Request {
    IdentityBiscuit,
    IdentityRegister,
    TaskBiscuit {
        thread: String,
    },
    TaskRegister {
        thread: String,
        agent_runtime_id: String,
    },
    /// `assertion`: the `(agent_runtime_id, task_id)` it carries.
    Model {
        thread: String,
        turn: u32,
        assertion: Option<(String, String)>,
    },
    /// A path that is no endpoint (never predicted).
    Unknown {
        path: String,
    },
}

/// A rollout line, as the comparison sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// `session_meta`, a new rollout's first line.
    SessionMeta,
    /// A fork's copy of its parent's items: so many bytes.
    Copy(usize),
    /// `turn_context`, before a turn's user message.
    TurnContext,
    /// The `token_count` `event_msg` after a completed answer.
    TokenCount,
    /// `compacted`.
    Compacted,
    /// The `thread_rolled_back` `event_msg` of a rollback of so many turns.
    RolledBack(u64),
    /// The `event_msg` `user_message` and the user `response_item` a turn begins with.
    UserMessage,
    UserItem,
    /// The assistant `response_item` of a completed model request.
    AssistantItem,
    /// `session_state`.
    State(Option<(String, String, String)>),
    /// Anything else (named by its type), which this lifecycle never writes.
    Other(String),
}

/// A client-visible event, as the comparison sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    TaskStarted(u32),
    UserMessage(u32),
    Error { turn: Option<u32>, failure: Failure },
    TurnComplete(u32),
}

/// One predicted (or observed) command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Send(Request),
    Append {
        thread: String,
        line: Line,
    },
    Emit {
        thread: String,
        event: Ev,
    },
    StoreIdentity(String),
    DeleteIdentity,
    /// A failure log line (spec section 4), by its typed cause; `thread` when it names one.
    FailureLog {
        thread: Option<String>,
        failure: Failure,
    },
}

/// What core's getters must say after an input (the driver-facing state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub policy: Policy,
    pub workspace: Option<Workspace>,
    /// The auth store slot's runtime id.
    pub identity: Option<String>,
    /// The runtime id usable now.
    pub current: Option<String>,
    /// How many threads the process runs.
    pub threads: usize,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Out::Send(request) => write!(f, "send {request}"),
            Out::Append { line, .. } => write!(f, "append {line}"),
            Out::Emit { event, .. } => write!(f, "event {event}"),
            Out::StoreIdentity(runtime) => write!(f, "store identity {runtime}"),
            Out::DeleteIdentity => f.write_str("delete the identity"),
            Out::FailureLog { failure, .. } => write!(f, "failure log {failure:?}"),
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::IdentityBiscuit => f.write_str("identity biscuit"),
            Request::IdentityRegister => f.write_str("identity registration"),
            Request::TaskBiscuit { thread } => write!(f, "task biscuit for {thread}"),
            Request::TaskRegister { thread, agent_runtime_id } => {
                write!(f, "task registration for {thread} under {agent_runtime_id}")
            }
            Request::Model { thread, turn, assertion: None } => {
                write!(f, "model request for {thread} turn-{turn} without assertion")
            }
            Request::Model { thread, turn, assertion: Some((runtime, task)) } => {
                write!(f, "model request for {thread} turn-{turn} asserting {runtime}/{task}")
            }
            Request::Unknown { path } => write!(f, "request to {path}"),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::SessionMeta => f.write_str("session_meta"),
            Line::Copy(bytes) => write!(f, "a copy of {bytes} bytes"),
            Line::TurnContext => f.write_str("turn_context"),
            Line::TokenCount => f.write_str("token_count"),
            Line::Compacted => f.write_str("compacted"),
            Line::RolledBack(n) => write!(f, "thread_rolled_back {n}"),
            Line::UserMessage => f.write_str("user_message"),
            Line::UserItem => f.write_str("user response_item"),
            Line::AssistantItem => f.write_str("assistant response_item"),
            Line::State(None) => f.write_str("session_state null"),
            Line::State(Some((runtime, task, at))) => {
                write!(f, "session_state {runtime}/{task} registered {at}")
            }
            Line::Other(kind) => write!(f, "{kind}"),
        }
    }
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::TaskStarted(turn) => write!(f, "task_started turn-{turn}"),
            Ev::UserMessage(turn) => write!(f, "user_message turn-{turn}"),
            Ev::Error { turn: Some(turn), failure } => write!(f, "error turn-{turn} ({failure:?})"),
            Ev::Error { turn: None, failure } => write!(f, "error ({failure:?})"),
            Ev::TurnComplete(turn) => write!(f, "turn_complete turn-{turn}"),
        }
    }
}

/// RFC 3339 with whole seconds, UTC (the oracle's own formatter: days to civil dates).
pub fn rfc3339_secs(at: Timestamp) -> String {
    let secs = at.unix_ms() / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_like_the_reference_rollout() {
        assert_eq!(rfc3339_secs(Timestamp(0)), "1970-01-01T00:00:00Z");
        // 2026-04-18T14:00:00Z, the simulator's epoch, plus 11.9 s.
        assert_eq!(rfc3339_secs(Timestamp(1_776_520_811_900)), "2026-04-18T14:00:11Z");
        assert_eq!(rfc3339_secs(Timestamp(951_782_400_000)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(Timestamp(253_402_300_799_000)), "9999-12-31T23:59:59Z");
    }
}
