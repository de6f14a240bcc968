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

/// A deliberately planted bug: a cargo feature of this crate, off by default, that breaks a spec
/// rule so the gate and the fuzzer can show they catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlantedBug {
    /// The cargo feature that plants it.
    pub feature: &'static str,
    /// Whether this build has it.
    pub planted: bool,
}

/// Every planted bug: the one list of their names (sim keys its fuzzing notes on them;
/// `tests/fuzz.rs` checks the list against `core/Cargo.toml`).
pub const PLANTED_BUGS: &[PlantedBug] = &[
    PlantedBug {
        feature: "planted-bug-restore-without-runtime-check",
        planted: cfg!(feature = "planted-bug-restore-without-runtime-check"),
    },
    PlantedBug {
        feature: "planted-bug-prewarm-before-restore",
        planted: cfg!(feature = "planted-bug-prewarm-before-restore"),
    },
];

/// The features of the planted bugs this build has: a replay of a scenario the fuzzer found
/// against one must use the same features.
pub fn planted_bugs() -> impl Iterator<Item = &'static str> {
    PLANTED_BUGS.iter().filter(|bug| bug.planted).map(|bug| bug.feature)
}

pub use config::{Auth, Binding, Config, ExpiryPolicy, StoredIdentity};
pub use machine::{InFlight, Lifecycle, RequestFailure};
pub use output::{Command, Event, EventKind, Failure, Level, LogLine, RequestId, ThreadId, TurnId};
pub use rollout::{AgentTask, RolloutItem, RolloutLine, RolloutScan};
pub use time::Timestamp;

#[cfg(test)]
mod tests;
