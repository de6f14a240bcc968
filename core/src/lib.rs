//! The agent identity and per-thread agent task lifecycle, as a sans-IO state machine.
//!
//! This crate does no IO, reads no clock and uses no OS randomness. It is fed inputs, each
//! carrying `now`, and answers with commands that its driver carries out:
//!
//! ```text
//!   driver                         Lifecycle                        driver
//!   ──────                         ─────────                        ──────
//!   start/resume/fork thread ─┐                               ┌─▶ Send request (with timeout)
//!   submit turn              ─┤                               ├─▶ Append rollout line
//!   response / failure       ─┼──▶ state machine ──▶ poll ────┼─▶ Emit event
//!   auth changed             ─┤   (identity slot,             ├─▶ Store / delete identity
//!   auth store replaced      ─┘    threads, tasks)            ├─▶ Log line
//!                                                             └─▶ Coverage mark
//! ```
//!
//! The behaviour is `shared/spec/lifecycle.md`; rule numbers in comments refer to its section 3.
//! Key material comes from the seed bytes handed to [`Lifecycle::new`].

pub mod config;
pub mod limits;
mod machine;
pub mod marks;
pub mod output;
pub mod protocol;
pub mod rollout;
pub mod time;
pub mod wire;

/// The planted bugs (cargo features, off by default) compiled into this build: a replay of a
/// scenario the fuzzer found against one must use the same features.
pub const PLANTED_BUGS: &[&str] = &[
    #[cfg(feature = "planted-bug-restore-without-runtime-check")]
    "planted-bug-restore-without-runtime-check",
    #[cfg(feature = "planted-bug-prewarm-before-restore")]
    "planted-bug-prewarm-before-restore",
];

pub use config::{Auth, Binding, Config, ExpiryPolicy, StoredIdentity};
pub use machine::{InFlight, Lifecycle, RequestFailure};
pub use output::{Command, Event, EventKind, Failure, Level, LogLine, RequestId, ThreadId, TurnId};
pub use rollout::{AgentTask, RolloutItem, RolloutLine, RolloutScan};
pub use time::Timestamp;

#[cfg(test)]
mod tests;
