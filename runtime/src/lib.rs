//! agentsim-runtime: the production driver of [`agentsim_core::Lifecycle`], in the split of
//! quinn-proto and quinn. Core decides everything; this crate only feeds it inputs stamped with
//! the real clock and carries out its commands, in order:
//!
//! - `Send`: a real HTTP request ([`reqwest`]) to the configured base URL, bounded by the timeout
//!   the command names; its answer (or its failure) goes back to core as an input;
//! - `Append` / `AppendCopy`: a line (or a fork's copy) appended to the thread's JSONL file,
//!   written, flushed and `sync_data`'d before the next command runs, so a line is acknowledged
//!   only once it is durable and a `session_state` line is on disk before the request that
//!   asserts its task leaves (invariant 18);
//! - `StoreIdentity` / `DeleteIdentity`: the auth store file, replaced atomically;
//! - `Emit`: the event is handed to whoever waits for it (a turn's caller, a subscriber);
//! - `Log`: a `tracing` event; `Mark`: nothing (coverage marks are the simulator's).
//!
//! One tokio task (the driver) owns the `Lifecycle` and the files and handles one message at a
//! time: a caller's verb, or a request's outcome. Key seeds come from the operating system. A
//! storage failure stops the runtime: a line that could not be made durable is never treated as
//! written. `tests/tidy.rs` checks that no lifecycle decision lives here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentsim_core::rollout::SkippedLine;
use agentsim_core::{AgentTask, Auth, Config, Event, ThreadId, Timestamp, TurnId};
use tokio::sync::{mpsc, oneshot};

pub mod auth_store;
pub mod cli;
mod driver;
pub mod http;
pub mod rollout_file;

use driver::{Driver, Msg};

/// Where "now" comes from. [`system_clock`] in production; a test may share one clock between
/// the runtime and a backend it runs in process.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock, in milliseconds since the Unix epoch.
pub fn system_clock() -> Clock {
    // The production driver is where the real clock is read (clippy.toml bans it elsewhere).
    #[allow(clippy::disallowed_methods)]
    Arc::new(|| {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    })
}

/// How a runtime runs.
#[derive(Clone)]
pub struct Options {
    /// The lifecycle's config: flag, policies, the backend's base URL.
    pub config: Config,
    /// The user's auth at the start.
    pub auth: Auth,
    /// The runtime's home: the auth store is `home/auth.json`, rollouts are
    /// `home/rollouts/<thread>.jsonl`.
    pub home: PathBuf,
    /// Where "now" comes from.
    pub clock: Clock,
    /// Caps every request's timeout (core asks for the spec's 15 s). For tests that provoke
    /// timeouts; `None` in production.
    pub timeout_cap: Option<Duration>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `auth` holds the access token: never shown.
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("auth", &self.auth.describe())
            .field("home", &self.home)
            .field("timeout_cap", &self.timeout_cap)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Options with the system clock and no timeout cap.
    pub fn new(config: Config, auth: Auth, home: PathBuf) -> Options {
        Options { config, auth, home, clock: system_clock(), timeout_cap: None }
    }
}

/// Something that happened, as it happens, for a subscriber ([`Runtime::subscribe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Core emitted a client-visible event.
    Event(Event),
    /// Lines were appended to a thread's rollout and are durable: `line` is the number of
    /// complete lines the file now holds, `synced_bytes` how much of the file is known durable
    /// (a power loss keeps at least that); `text` the line (empty for a fork's copy).
    Appended { thread: ThreadId, line: u64, synced_bytes: u64, text: String },
    /// A request left for the backend: for which thread (`None`: the process's identity), with
    /// which method and path.
    Sent { thread: Option<ThreadId>, method: &'static str, path: String },
}

/// What a turn produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnOutcome {
    /// The turn's number.
    pub turn: TurnId,
    /// Its events, in order, ending with `turn_complete`.
    pub events: Vec<Event>,
    /// The `Authorization` header of its model request (`AgentAssertion ...`), when it sent one
    /// with an assertion.
    pub assertion: Option<String>,
}

impl TurnOutcome {
    /// Whether the turn ended with an `Error` event.
    pub fn failed(&self) -> bool {
        self.events.iter().any(|e| matches!(e.kind, agentsim_core::EventKind::Error { .. }))
    }
}

/// What resuming (or forking) read from the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeReport {
    /// Lines read.
    pub lines: usize,
    /// Lines skipped, with their number and why (spec rule 15).
    pub skipped: Vec<SkippedLine>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The call does not fit the runtime's state (an unknown thread, a thread that already
    /// exists, a name that cannot be a file name).
    #[error("{0}")]
    Usage(String),
    /// A rollout file or the auth store could not be read or written. After a write failure
    /// the runtime stops.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The runtime has stopped (shut down, or after a storage failure).
    #[error("the runtime has stopped: {0}")]
    Stopped(String),
}

/// A running lifecycle: one process, many threads, one identity slot.
#[derive(Debug)]
pub struct Runtime {
    tx: mpsc::UnboundedSender<Msg>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl Runtime {
    /// Starts a process: reads the auth store, seeds core from the operating system, and spawns
    /// the driver task (on the current tokio runtime).
    pub async fn open(options: Options) -> Result<Runtime, RuntimeError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(options, tx.clone())?;
        let handle = tokio::spawn(driver.run(rx));
        Ok(Runtime { tx, driver: Some(handle) })
    }

    /// Starts a new thread (it must have no rollout yet).
    pub async fn start_thread(&self, thread: &str) -> Result<(), RuntimeError> {
        self.call(|reply| Ok(Msg::Start { thread: thread_id(thread)?, reply })).await
    }

    /// Resumes a thread from its rollout file.
    pub async fn resume_thread(&self, thread: &str) -> Result<ResumeReport, RuntimeError> {
        self.call(|reply| Ok(Msg::Resume { thread: thread_id(thread)?, reply })).await
    }

    /// Forks `child` (new) from `parent`'s rollout file.
    pub async fn fork_thread(
        &self,
        child: &str,
        parent: &str,
    ) -> Result<ResumeReport, RuntimeError> {
        self.call(|reply| {
            Ok(Msg::Fork { child: thread_id(child)?, parent: thread_id(parent)?, reply })
        })
        .await
    }

    /// Submits a turn and waits until it completes.
    pub async fn turn(
        &self,
        thread: &str,
        turn: TurnId,
        text: &str,
    ) -> Result<TurnOutcome, RuntimeError> {
        let text = text.to_owned();
        self.call(|reply| Ok(Msg::Turn { thread: thread_id(thread)?, turn, text, reply })).await
    }

    /// Compacts a thread's history.
    pub async fn compact(&self, thread: &str) -> Result<(), RuntimeError> {
        self.call(|reply| Ok(Msg::Compact { thread: thread_id(thread)?, reply })).await
    }

    /// Rolls back a thread's last `num_turns` turns.
    pub async fn rollback(&self, thread: &str, num_turns: u32) -> Result<(), RuntimeError> {
        self.call(|reply| Ok(Msg::Rollback { thread: thread_id(thread)?, num_turns, reply })).await
    }

    /// The user signed in, out, or switched workspace.
    pub async fn set_auth(&self, auth: Auth) -> Result<(), RuntimeError> {
        self.call(|reply| Ok(Msg::Auth { auth, reply })).await
    }

    /// The auth store file was replaced from outside this process: read it again.
    pub async fn reload_auth_store(&self) -> Result<(), RuntimeError> {
        self.call(|reply| Ok(Msg::ReloadAuthStore { reply })).await
    }

    /// Waits until no request is in flight (every prewarm and turn has settled).
    pub async fn idle(&self) -> Result<(), RuntimeError> {
        self.call(|reply| Ok(Msg::Idle { reply })).await
    }

    /// Every event of a thread so far, in order.
    pub async fn events(&self, thread: &str) -> Result<Vec<Event>, RuntimeError> {
        self.call(|reply| Ok(Msg::Events { thread: thread_id(thread)?, reply })).await
    }

    /// The task a thread holds now.
    pub async fn cached_task(&self, thread: &str) -> Result<Option<AgentTask>, RuntimeError> {
        self.call(|reply| Ok(Msg::CachedTask { thread: thread_id(thread)?, reply })).await
    }

    /// Notices of events and durable appends from now on.
    pub async fn subscribe(&self) -> Result<mpsc::UnboundedReceiver<Notice>, RuntimeError> {
        self.call(|reply| Ok(Msg::Subscribe { reply })).await
    }

    /// Stops the process: requests in flight are abandoned, files closed. Everything already
    /// acknowledged is on disk.
    pub async fn shutdown(mut self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown { reply }).is_ok() {
            let _ = done.await;
        }
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
    }

    async fn call<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T, RuntimeError>>) -> Result<Msg, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        let msg = msg(reply)?;
        self.tx.send(msg).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Runtime {
    /// Dropping a runtime without [`Runtime::shutdown`] kills it, as a crash would.
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

fn stopped() -> RuntimeError {
    RuntimeError::Stopped("the driver task ended".into())
}

/// A thread name that can name a file: letters, digits, `_` and `-`, starting with a letter.
fn thread_id(name: &str) -> Result<ThreadId, RuntimeError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid && name.len() <= 128 {
        Ok(ThreadId(name.to_owned()))
    } else {
        Err(RuntimeError::Usage(format!(
            "invalid thread name {name:?}: use letters, digits, `_` and `-`, starting with a letter"
        )))
    }
}

#[cfg(test)]
mod tests;
