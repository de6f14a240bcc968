//! Unit tests of the lifecycle machine: the pure-core tier of STYLE.md. Each test drives one
//! [`crate::Lifecycle`] through the harness of `tests/harness.rs` and is named after the rule of
//! spec section 3, the error text of section 2, or the invariant of section 5 it shows.
//!
//! The tests live under `tests/` by concern: `session.rs` rules 1 to 5, `ensure.rs` rules 6 to 12,
//! `resume.rs` rules 13 to 16, `expiry.rs` rules 17 to 20, `wire_errors.rs` the error texts of
//! spec sections 2 and 4, `auth.rs` auth changes, `invariants.rs` other races and invariants.
//! This file holds what they share.

mod harness;

mod auth;
mod ensure;
mod expiry;
mod invariants;
mod resume;
mod session;
mod wire_errors;

use rand_core::SeedableRng as _;

use crate::output::{Failure, Level, RequestId};
use crate::rollout::AgentTask;
use crate::wire::{self, HttpResponse, IdentityKey};
use crate::{marks, Auth, Config, ExpiryPolicy, InFlight, RequestFailure, Timestamp};
use harness::*;

const TASK_FAILED: &str = "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: ";
const START_FAILED: &str =
    "Agent identity registration failed while `features.use_agent_identity` is enabled: ";
const REFERENCE: &[u8] = include_bytes!("../tests/fixtures/reference-rollout.jsonl");
const REFERENCE_STATES: [&str; 3] = ["agent-7f3a/task_91c2", "null", "agent-8b41/task_0d77"];
const TURN_1: [&str; 3] = ["task_started turn-1", "user_message turn-1", "turn_complete turn-1"];
const TURN_1_FAILED: [&str; 4] =
    ["task_started turn-1", "user_message turn-1", "error turn-1", "turn_complete turn-1"];
const HOUR_MS: u64 = 3_600_000;

fn task_path(runtime: &str) -> String {
    format!("POST {}", wire::task_register_path(runtime))
}

fn model_as(task: &str) -> String {
    format!("{MODEL} as {task}")
}

/// A harness whose thread `t1` has task `agent-a/task-1` from its prewarm.
fn thread_with_task(config: Config) -> Harness {
    let mut h = Harness::new(config, signed_in(), Some(identity("agent-a", 1)));
    h.start("t1");
    h.run_until_idle();
    assert_cached(&h, "t1", Some("agent-a/task-1"));
    h.forget();
    h
}
