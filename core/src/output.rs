//! What the machine asks its driver to do: [`Command`]s, with the [`Event`]s, [`LogLine`]s and
//! rollout lines they carry.

use std::fmt;

use crate::config::StoredIdentity;
use crate::rollout::RolloutLine;
use crate::wire::HttpRequest;

/// A thread's name, chosen by the driver.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub String);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ThreadId {
    fn from(name: &str) -> ThreadId {
        ThreadId(name.to_owned())
    }
}

/// A user turn, numbered by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TurnId(pub u32);

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "turn-{}", self.0)
    }
}

/// Names one request the machine asked for; the driver hands it back with the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

/// Something the driver must do, in the order the machine returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send this request. Report its outcome with `handle_response` or `handle_request_failed`;
    /// when no response has arrived after `timeout_ms`, report a timeout.
    Send { id: RequestId, request: HttpRequest, timeout_ms: u64 },
    /// Append this line to the thread's rollout.
    Append { thread: ThreadId, line: RolloutLine },
    /// Append these bytes to the thread's rollout as they are: a fork's copy of its parent's
    /// items (rule 16), between the child's `session_meta` and its `null`.
    AppendCopy { thread: ThreadId, bytes: Vec<u8> },
    /// Show this event to the client.
    Emit(Event),
    /// Write this identity to the auth store (replacing what is there).
    StoreIdentity(StoredIdentity),
    /// Remove the identity from the auth store.
    DeleteIdentity,
    /// Log this line.
    Log(LogLine),
    /// A named code path was taken (a coverage mark, see [`crate::marks`]).
    Mark(&'static str),
}

/// A client-visible event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The thread it belongs to.
    pub thread: ThreadId,
    /// What happened.
    pub kind: EventKind,
}

/// What failed, as an `Error` event or a failure log line names it (spec section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Identity registration: rule 4's `Error` at session start, and the warn log of a failed registration.
    IdentityRegistration,
    /// A prewarm's ensure (rule 5): a warn log line only, never an event.
    Prewarm,
    /// A turn's ensure (rule 11), and the "agent task registration failed" warn log.
    TaskRegistration,
    /// A turn's model request: refused with this status, or not answered (`None`).
    ModelRequest { status: Option<u16> },
}

impl Failure {
    /// Whether this is a failure of the agent identity/task lifecycle (rules 4, 5 and 11), as
    /// opposed to a model request's: flag off, there must be none of these (invariant 1).
    pub fn is_agent(self) -> bool {
        !matches!(self, Failure::ModelRequest { .. })
    }
}

/// The events of spec section 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A turn began.
    TaskStarted { turn: TurnId },
    /// The user's message of a turn, recorded.
    UserMessage { turn: TurnId, message: String },
    /// An error shown to the user: identity registration at start (no turn) or a turn failure.
    Error { turn: Option<TurnId>, failure: Failure, message: String },
    /// A turn ended (after its model response, or after its error).
    TurnComplete { turn: TurnId },
}

impl EventKind {
    /// The event's name: `task_started`, `user_message`, `error`, `turn_complete`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TaskStarted { .. } => "task_started",
            EventKind::UserMessage { .. } => "user_message",
            EventKind::Error { .. } => "error",
            EventKind::TurnComplete { .. } => "turn_complete",
        }
    }

    /// Every event name.
    pub const NAMES: [&'static str; 4] = ["task_started", "user_message", "error", "turn_complete"];

    /// The turn it belongs to, if any.
    pub fn turn(&self) -> Option<TurnId> {
        match self {
            EventKind::TaskStarted { turn } | EventKind::TurnComplete { turn } => Some(*turn),
            EventKind::UserMessage { turn, .. } => Some(*turn),
            EventKind::Error { turn, .. } => *turn,
        }
    }

    /// The message, for events that carry one.
    pub fn message(&self) -> Option<&str> {
        match self {
            EventKind::UserMessage { message, .. } | EventKind::Error { message, .. } => {
                Some(message)
            }
            EventKind::TaskStarted { .. } | EventKind::TurnComplete { .. } => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.thread, self.kind.name())?;
        if let Some(turn) = self.kind.turn() {
            write!(f, " {turn}")?;
        }
        if let Some(message) = self.kind.message() {
            write!(f, " {message:?}")?;
        }
        Ok(())
    }
}

/// Log levels, as `tracing` has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed that the user will see.
    Error,
    /// Something failed that the lifecycle recovers from.
    Warn,
    /// A normal state change.
    Info,
    /// Detail.
    Debug,
}

impl Level {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// A log line: a fixed message plus fields. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// One of the spec's key log lines, or another fixed text.
    pub message: &'static str,
    /// What failed, for the three failure lines of spec section 4 ("agent identity registration
    /// failed", "agent task registration failed", "startup agent task prewarm failed; …");
    /// `None` for every other line.
    pub failure: Option<Failure>,
    /// Named values, in a fixed order.
    pub fields: Vec<(&'static str, String)>,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}", self.level.name(), self.message)?;
        for (name, value) in &self.fields {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}
