//! Unit tests of the lifecycle machine: the pure-core tier of STYLE.md. Each test drives one
//! [`crate::Lifecycle`] through the harness of `tests/harness.rs` and is named after the rule of
//! spec section 3, the error text of section 2, or the invariant of section 5 it shows.

mod harness;

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

// ---- rule 1 ------------------------------------------------------------------------------

#[test]
fn rule01_flag_off_makes_no_calls_and_no_lines() {
    let config = Config { use_agent_identity: false, ..Config::default() };
    let mut h = Harness::new(config, signed_in(), Some(identity("agent-8b41", 1)));
    h.start("t1");
    h.resume_bytes("t2", REFERENCE);
    h.fork("t3", "t2");
    h.set_auth(Auth::None);
    h.set_auth(signed_in());
    h.replace_store(Some(identity("agent-9", 2)));
    for thread in ["t1", "t2", "t3"] {
        h.turn(thread, 1);
    }
    h.run_until_idle();

    // Only the turns' own model requests, without an assertion: ensure returned "no task".
    assert_requests(&h, &[MODEL; 3]);
    for thread in ["t1", "t2", "t3"] {
        assert_events(&h, thread, &TURN_1);
        assert_cached(&h, thread, None);
    }
    assert_session_states(&h, "t1", &[]);
    assert_session_states(&h, "t2", &REFERENCE_STATES);
    assert_session_states(&h, "t3", &REFERENCE_STATES);
    assert_eq!(h.machine.current_runtime(h.now), None);
    for mark in [
        marks::PERSISTED_TASK_RESTORED,
        marks::PERSISTED_TASK_DROPPED_STALE,
        marks::FORK_CLEARED_PARENT_TASK,
        marks::LATE_SIGN_IN_REGISTERED,
        marks::TURN_WITHOUT_TASK,
    ] {
        assert_not_marked(&h, mark);
    }
}

// ---- rule 2 ------------------------------------------------------------------------------

#[test]
fn rule02_resume_restores_before_the_session_start_runs() {
    let mut h = Harness::with_identity(identity("agent-8b41", 1));
    h.resume_bytes("t1", REFERENCE);
    assert_trace_order(
        &h,
        &[
            "mark persisted_task_restored",
            "log restored persisted agent task",
            "mark cached_task_reused",
        ],
    );
    assert_requests(&h, &[]);

    let mut h = Harness::with_identity(identity("agent-other", 1));
    h.resume_bytes("t1", REFERENCE);
    assert_trace_order(
        &h,
        &[
            "log discarding persisted agent task because it does not match the registered agent identity",
            &format!("send {BISCUIT}"),
        ],
    );
}

// ---- rule 3 ------------------------------------------------------------------------------

#[test]
fn rule03_identity_registration_runs_in_the_background_at_session_start() {
    let mut h = Harness::signed_in();
    h.start("t1");
    // start_thread returned with the registration only begun.
    assert_eq!(h.machine.in_flight(), vec![(RequestId(1), InFlight::IdentityBiscuit)]);
    // The session runs meanwhile: a turn starts and waits for the same identity.
    h.turn("t1", 1);
    assert_events(&h, "t1", &["task_started turn-1", "user_message turn-1"]);
    assert_marked(&h, marks::IDENTITY_SINGLE_FLIGHT_JOINED);
    h.run_until_idle();
    assert_requests(
        &h,
        &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-1"), &model_as("agent-1/task-1")],
    );
    assert_events(&h, "t1", &TURN_1);
    assert_stored(&h, Some("agent-1"));
    assert_session_states(&h, "t1", &["agent-1/task-1"]);
    assert_cache_agrees_with_rollout(&h, "t1");
}

#[test]
fn rule03_late_sign_in_registers_with_no_restart() {
    for auth in [Auth::None, Auth::ApiKey] {
        let mut h = Harness::new(Config::default(), auth, None);
        h.start("t1");
        assert_requests(&h, &[]);
        h.turn("t1", 1);
        h.run_until_idle();
        // No binding: the turn runs without a task.
        assert_requests(&h, &[MODEL]);
        assert_events(&h, "t1", &TURN_1);
        assert_marked(&h, marks::TURN_WITHOUT_TASK);
        h.forget();

        h.set_auth(signed_in());
        assert_marked(&h, marks::LATE_SIGN_IN_REGISTERED);
        h.run_until_idle();
        assert_requests(&h, &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-1")]);
        assert_session_states(&h, "t1", &["agent-1/task-1"]);
        assert_events(&h, "t1", &[]);
    }
}

// ---- rule 4 ------------------------------------------------------------------------------

#[test]
fn rule04_identity_failure_at_start_is_one_error_event_and_no_background_retry() {
    let mut h = Harness::signed_in();
    h.start("t1");
    h.start("t2");
    let id = h.answer_until(InFlightMatch::IdentityRegister);
    h.answer_with(id, response(500, "boom"));
    let message = format!("{START_FAILED}agent identity registration failed with status 500 from {BASE}/v1/agent/register: boom");
    for thread in ["t1", "t2"] {
        assert_events(&h, thread, &["error"]);
        assert_errors(&h, thread, &[&message]);
        assert_failures(&h, thread, &[Failure::IdentityRegistration]);
    }
    assert_failures_logged(&h, &[Failure::IdentityRegistration]);
    assert_eq!(count_marks(&h, marks::IDENTITY_FAILED_AT_START), 2);
    assert_stored(&h, None);

    // No background retry, whatever happens next.
    h.advance(HOUR_MS);
    h.set_auth(signed_in());
    assert_eq!(h.sent.len(), 2);
    assert!(h.machine.in_flight().is_empty());

    // The session kept running: the next turn retries.
    h.forget();
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(
        &h,
        &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-1"), &model_as("agent-1/task-1")],
    );
    assert_events(&h, "t1", &TURN_1);
}

// ---- rule 5 ------------------------------------------------------------------------------

#[test]
fn rule05_identity_ready_prewarms_the_task() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    assert_requests(&h, &[BISCUIT]);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-a")]);
    assert_cached(&h, "t1", Some("agent-a/task-1"));
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
    assert_logged_at(&h, Level::Info, "registered agent task for thread");
    assert_not_logged(
        &h,
        "startup agent task prewarm failed; regular turns will retry registration",
    );
    assert_events(&h, "t1", &[]);
}

#[test]
fn rule05_prewarm_failure_is_a_warn_log_only() {
    for failure in [Err(RequestFailure::Timeout), Ok(response(500, "down"))] {
        let mut h = Harness::with_identity(identity("agent-a", 1));
        h.start("t1");
        let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
        match failure {
            Ok(bad) => h.answer_with(id, bad),
            Err(failure) => h.fail(id, failure),
        }
        assert_logged_at(
            &h,
            Level::Warn,
            "startup agent task prewarm failed; regular turns will retry registration",
        );
        assert_marked(&h, marks::PREWARM_FAILED);
        assert_failures_logged(&h, &[Failure::TaskRegistration, Failure::Prewarm]);
        assert_events(&h, "t1", &[]);
        assert_session_states(&h, "t1", &[]);
        assert_cached(&h, "t1", None);
        assert_stored(&h, Some("agent-a"));
        assert!(h.machine.in_flight().is_empty(), "no background retry");

        // The next turn retries.
        h.forget();
        h.turn("t1", 1);
        h.run_until_idle();
        assert_requests(&h, &[BISCUIT, &task_path("agent-a"), &model_as("agent-a/task-1")]);
        assert_events(&h, "t1", &TURN_1);
    }
}

// ---- rule 6 ------------------------------------------------------------------------------

#[test]
fn rule06_current_cached_task_is_reused_with_no_io() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    h.turn("t1", 2);
    h.run_until_idle();
    let model = model_as("agent-a/task-1");
    assert_requests(&h, &[&model, &model]);
    assert_events(
        &h,
        "t1",
        &[
            "task_started turn-1",
            "user_message turn-1",
            "turn_complete turn-1",
            "task_started turn-2",
            "user_message turn-2",
            "turn_complete turn-2",
        ],
    );
    assert_logged(&h, "reusing cached agent task");
    assert_eq!(count_marks(&h, marks::CACHED_TASK_REUSED), 2);
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
}

// ---- rule 7 ------------------------------------------------------------------------------

#[test]
fn rule07_stale_cached_task_is_cleared_and_null_appended() {
    let mut h = thread_with_task(Config::default());
    h.replace_store(Some(identity("agent-b", 2)));
    h.turn("t1", 1);
    // The clear is persisted before the new registration starts.
    assert_trace_order(
        &h,
        &["mark stale_task_cleared", "append t1 session_state null", &format!("send {BISCUIT}")],
    );
    h.run_until_idle();
    assert_session_states(&h, "t1", &["agent-a/task-1", "null", "agent-b/task-2"]);
    assert_logged_at(
        &h,
        Level::Info,
        "discarding cached agent task because the registered agent identity changed",
    );
    assert_requests(&h, &[BISCUIT, &task_path("agent-b"), &model_as("agent-b/task-2")]);
    assert_events(&h, "t1", &TURN_1);
    assert_cache_agrees_with_rollout(&h, "t1");
}

#[test]
fn rule07_sign_out_makes_the_cached_task_stale_and_the_turn_runs_without_one() {
    let mut h = thread_with_task(Config::default());
    h.set_auth(Auth::None);
    h.turn("t1", 1);
    h.run_until_idle();
    assert_session_states(&h, "t1", &["agent-a/task-1", "null"]);
    assert_requests(&h, &[MODEL]);
    assert_events(&h, "t1", &TURN_1);
    assert_cache_agrees_with_rollout(&h, "t1");

    // A second turn has nothing left to clear: no second null.
    h.turn("t1", 2);
    h.run_until_idle();
    assert_session_states(&h, "t1", &["agent-a/task-1", "null"]);
}

// ---- rule 8 ------------------------------------------------------------------------------

#[test]
fn rule08_a_prewarm_in_flight_and_a_turn_make_one_task_registration() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    h.turn("t1", 1);
    assert_marked(&h, marks::TASK_SINGLE_FLIGHT_JOINED);
    assert_requests(&h, &[BISCUIT]);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-a"), &model_as("agent-a/task-1")]);
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
    assert_events(&h, "t1", &TURN_1);
}

#[test]
fn rule08_a_joined_turn_shares_the_failure_of_the_prewarm_it_joined() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.turn("t1", 1);
    h.fail(id, RequestFailure::Timeout);
    assert_requests(&h, &[BISCUIT, &task_path("agent-a")]);
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_errors(&h, "t1", &[&format!("{TASK_FAILED}failed to send agent task registration request to {BASE}/v1/agent/agent-a/task/register")]);
    assert_logged(&h, "startup agent task prewarm failed; regular turns will retry registration");
}

// ---- rule 9 ------------------------------------------------------------------------------

#[test]
fn rule09_identity_changed_in_flight_discards_the_new_task_and_tries_again() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.replace_store(Some(identity("agent-b", 2)));
    h.answer(id);
    assert_logged(
        &h,
        "discarding newly registered agent task because the registered agent identity changed",
    );
    assert_marked(&h, marks::ROTATION_DISCARDED_NEW_TASK);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-a"), BISCUIT, &task_path("agent-b")]);
    assert_session_states(&h, "t1", &["agent-b/task-2"]);
    assert_cached(&h, "t1", Some("agent-b/task-2"));
    assert_not_marked(&h, marks::ROTATION_GAVE_UP);
}

#[test]
fn rule09_two_discards_end_with_no_task_and_no_error() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    h.turn("t1", 1);
    for (runtime, byte) in [("agent-b", 2), ("agent-c", 3)] {
        let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
        h.replace_store(Some(identity(runtime, byte)));
        h.answer(id);
    }
    h.run_until_idle();
    // Two attempts, both discarded; the turn runs without a task and shows no error.
    assert_requests(&h, &[BISCUIT, &task_path("agent-a"), BISCUIT, &task_path("agent-b"), MODEL]);
    assert_eq!(count_marks(&h, marks::ROTATION_DISCARDED_NEW_TASK), 2);
    assert_marked(&h, marks::ROTATION_GAVE_UP);
    assert_not_logged(&h, "agent task registration failed");
    assert_events(&h, "t1", &TURN_1);
    assert_session_states(&h, "t1", &[]);
    assert_cached(&h, "t1", None);

    // Liveness: with the identity settled, the next turn registers.
    h.forget();
    h.turn("t1", 2);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-c"), &model_as("agent-c/task-3")]);
}

#[test]
fn rule09_the_rotation_loop_counts_discards_per_ensure_not_per_thread() {
    // One discard in one ensure, then one in the next: neither gives up.
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.replace_store(Some(identity("agent-b", 2)));
    h.answer(id);
    h.run_until_idle();
    assert_cached(&h, "t1", Some("agent-b/task-2"));
    h.replace_store(Some(identity("agent-c", 3)));
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.replace_store(Some(identity("agent-d", 4)));
    h.answer(id);
    h.run_until_idle();
    assert_not_marked(&h, marks::ROTATION_GAVE_UP);
    assert_session_states(&h, "t1", &["agent-b/task-2", "null", "agent-d/task-4"]);
    assert!(h.sent.iter().any(|(_, r)| r
        .header("Authorization")
        .is_some_and(|v| wire::assertion_token(v).is_some())));
}

// ---- rule 10 -----------------------------------------------------------------------------

#[test]
fn rule10_session_state_is_appended_only_when_the_value_changed() {
    let mut h = thread_with_task(Config::default());
    for n in 1..=3 {
        h.turn("t1", n);
    }
    h.run_until_idle();
    assert_session_states(&h, "t1", &["agent-a/task-1"]);

    // A restored task is the persisted value: reusing it appends nothing.
    h.restart();
    h.resume("t1");
    h.turn("t1", 4);
    h.run_until_idle();
    assert_session_states(&h, "t1", &["agent-a/task-1"]);

    h.replace_store(Some(identity("agent-b", 2)));
    h.turn("t1", 5);
    h.run_until_idle();
    assert_session_states(&h, "t1", &["agent-a/task-1", "null", "agent-b/task-2"]);
    assert_cache_agrees_with_rollout(&h, "t1");
}

// ---- rule 11 -----------------------------------------------------------------------------

#[test]
fn spec4_an_unanswered_model_request_is_an_error_that_names_no_status() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::Model("t1", 1));
    h.fail(id, RequestFailure::Timeout);
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_failures(&h, "t1", &[Failure::ModelRequest { status: None }]);
    assert_failures_logged(&h, &[]);
}

#[test]
fn rule11_turn_failure_is_one_error_event_on_that_thread_only() {
    let mut h = thread_with_task(Config::default());
    h.start("t2");
    let id = h.answer_until(InFlightMatch::TaskRegister("t2"));
    h.answer_with(id, response(500, "{\"error\":\"overloaded\"}"));
    let t1_before = h.rollout("t1");
    let t2_before = h.rollout("t2").len();
    h.forget();

    h.turn("t2", 1);
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::TaskRegister("t2"));
    h.answer_with(id, response(500, "{\"error\":\"overloaded\"}"));
    h.run_until_idle();

    assert_events(&h, "t2", &TURN_1_FAILED);
    assert_errors(
        &h,
        "t2",
        &[&format!(
            "{TASK_FAILED}agent task registration failed with status 500 from {BASE}/v1/agent/agent-a/task/register: {{\"error\":\"overloaded\"}}"
        )],
    );
    assert_failures(&h, "t2", &[Failure::TaskRegistration]);
    assert_marked(&h, marks::TURN_ENSURE_FAILED);
    assert_logged_at(&h, Level::Warn, "agent task registration failed");
    assert_failures_logged(&h, &[Failure::TaskRegistration]);
    // The user message stays recorded; no model request for t2.
    assert_appended_types(&h, "t2", t2_before, &["event_msg", "response_item"]);
    assert_requests(&h, &[BISCUIT, &model_as("agent-a/task-1"), &task_path("agent-a")]);
    // The other thread is untouched.
    assert_events(&h, "t1", &TURN_1);
    assert_errors(&h, "t1", &[]);
    assert_cached(&h, "t1", Some("agent-a/task-1"));
    assert_eq!(h.rollout("t1")[..t1_before.len()], t1_before[..]);

    // The next turn retries.
    h.forget();
    h.turn("t2", 2);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-a"), &model_as("agent-a/task-2")]);
    assert_errors(&h, "t2", &[]);
}

// ---- rule 12 -----------------------------------------------------------------------------

#[test]
fn rule12_threads_starting_together_register_one_identity() {
    let mut h = Harness::signed_in();
    for thread in ["t1", "t2", "t3"] {
        h.start(thread);
    }
    assert_requests(&h, &[BISCUIT]);
    assert_eq!(count_marks(&h, marks::IDENTITY_SINGLE_FLIGHT_JOINED), 2);
    h.run_until_idle();
    assert_eq!(count_requests(&h, REGISTER), 1);
    assert_eq!(count_requests(&h, &task_path("agent-1")), 3);
    assert_stored(&h, Some("agent-1"));
    for (thread, task) in
        [("t1", "agent-1/task-1"), ("t2", "agent-1/task-2"), ("t3", "agent-1/task-3")]
    {
        assert_cached(&h, thread, Some(task));
        assert_session_states(&h, thread, &[task]);
    }
}

#[test]
fn rule12_turns_of_many_threads_waiting_for_a_new_identity_share_one_registration() {
    let mut h = Harness::new(Config::default(), Auth::None, None);
    for thread in ["t1", "t2"] {
        h.start(thread);
    }
    h.set_auth(signed_in());
    for thread in ["t1", "t2"] {
        h.turn(thread, 1);
    }
    h.run_until_idle();
    assert_eq!(count_requests(&h, REGISTER), 1);
    assert_eq!(count_requests(&h, &task_path("agent-1")), 2);
    for thread in ["t1", "t2"] {
        assert_events(&h, thread, &TURN_1);
    }
}

// ---- rule 13: the resume table -----------------------------------------------------------

/// Resumes `lines` with identity `agent-a` current and checks the row of the resume table:
/// read-only, and the thread ends with `expected` cached. Returns the harness right after the
/// resume.
#[track_caller]
fn check_resume(lines: &[String], expected: Option<&str>) -> Harness {
    let bytes = rollout_of(lines);
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.resume_bytes("t1", &bytes);
    assert_eq!(h.rollout("t1"), bytes, "resume never writes to the rollout");
    assert!(!h.trace.iter().any(|l| l.starts_with("append")), "resume never appends");
    assert_cached(&h, "t1", expected);
    // The only call is the prewarm of a thread that was left without a task.
    let prewarm: &[&str] = if expected.is_some() { &[] } else { &[BISCUIT] };
    assert_requests(&h, prewarm);
    h
}

#[test]
fn rule13_resume_table_no_session_state_line_leaves_the_state_unchanged() {
    let h = check_resume(
        &[line("session_meta", "{}"), line("event_msg", r#"{"type":"user_message"}"#)],
        None,
    );
    assert_marked(&h, marks::PERSISTED_STATE_ABSENT);
}

#[test]
fn rule13_resume_table_null_means_no_task() {
    let h = check_resume(&[task_line("agent-a", "task_x"), null_line()], None);
    assert_marked(&h, marks::PERSISTED_NULL);
}

#[test]
fn rule13_resume_table_missing_key_reads_as_null() {
    let h = check_resume(&[task_line("agent-a", "task_x"), line("session_state", "{}")], None);
    assert_marked(&h, marks::PERSISTED_NULL);
}

#[test]
fn rule13_resume_table_current_task_is_restored() {
    let h = check_resume(&[null_line(), task_line("agent-a", "task_x")], Some("agent-a/task_x"));
    assert_marked(&h, marks::PERSISTED_TASK_RESTORED);
    assert_logged(&h, "restored persisted agent task");
}

#[test]
fn rule13_resume_table_stale_task_is_dropped_with_a_debug_log() {
    let h = check_resume(&[task_line("agent-z", "task_y")], None);
    assert_marked(&h, marks::PERSISTED_TASK_DROPPED_STALE);
    assert_logged_at(
        &h,
        Level::Debug,
        "discarding persisted agent task because it does not match the registered agent identity",
    );
}

#[test]
fn rule13_resume_table_damaged_lines_after_a_current_task_are_skipped() {
    let lines = [
        task_line("agent-a", "task_x"),
        "{not json".to_owned(),
        line("mystery", "{}"),
        line("session_state", r#"{"agent_task":{"task_id":5}}"#),
    ];
    let h = check_resume(&lines, Some("agent-a/task_x"));
    assert_eq!(count_marks(&h, marks::RESUME_SKIPPED_DAMAGED_LINE), 3);
}

#[test]
fn rule13_resume_table_latest_state_wins_over_every_earlier_line() {
    // Spec invariant 3: changing any line but the last changes nothing.
    let last = task_line("agent-a", "task_x");
    for earlier in [
        task_line("agent-a", "task_w"),
        null_line(),
        task_line("agent-z", "task_v"),
        line("session_state", "{}"),
    ] {
        check_resume(&[earlier, last.clone()], Some("agent-a/task_x"));
    }
    check_resume(&[task_line("agent-a", "task_x"), task_line("agent-z", "task_y")], None);
}

#[test]
fn rule13_resume_table_with_no_usable_identity_drops_every_task_and_calls_nothing() {
    for auth in [Auth::None, Auth::ApiKey, signed_in_to("acct-2")] {
        let mut h = Harness::new(Config::default(), auth.clone(), Some(identity("agent-a", 1)));
        let bytes = rollout_of(&[task_line("agent-a", "task_x")]);
        h.resume_bytes("t1", &bytes);
        assert_cached(&h, "t1", None);
        assert_eq!(h.rollout("t1"), bytes);
        assert_marked(&h, marks::PERSISTED_TASK_DROPPED_STALE);
        if auth.binding().is_none() {
            assert_requests(&h, &[]);
        }
    }
}

#[test]
fn rule13_reference_rollout_under_agent_8b41_restores_task_0d77() {
    let mut h = Harness::with_identity(identity("agent-8b41", 1));
    h.resume_bytes("t1", REFERENCE);
    assert_eq!(
        h.machine.cached_task(&"t1".into()),
        Some(&AgentTask {
            agent_runtime_id: "agent-8b41".into(),
            task_id: "task_0d77".into(),
            registered_at: "2026-04-18T16:40:03Z".into()
        })
    );
    h.run_until_idle();
    assert_requests(&h, &[]);
    assert_eq!(h.rollout("t1"), REFERENCE);
}

#[test]
fn rule13_reference_rollout_under_any_other_identity_has_no_task() {
    // agent-7f3a matches an earlier line of the rollout, but only the last one counts.
    for runtime in ["agent-7f3a", "agent-0000"] {
        let mut h = Harness::with_identity(identity(runtime, 1));
        h.resume_bytes("t1", REFERENCE);
        assert_cached(&h, "t1", None);
        assert_eq!(h.rollout("t1"), REFERENCE);
        assert_marked(&h, marks::PERSISTED_TASK_DROPPED_STALE);
    }
}

// ---- rule 14 -----------------------------------------------------------------------------

#[test]
fn rule14_prewarm_reuses_a_restored_task_with_no_io() {
    let mut h = Harness::with_identity(identity("agent-8b41", 1));
    h.backend.adopt_task("task_0d77", "agent-8b41");
    h.resume_bytes("t1", REFERENCE);
    assert_logged(&h, "reusing cached agent task");
    h.run_until_idle();
    assert_requests(&h, &[]);
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(&h, &[&model_as("agent-8b41/task_0d77")]);
    assert_events(&h, "t1", &TURN_1);
    assert_session_states(&h, "t1", &REFERENCE_STATES);
    assert_cache_agrees_with_rollout(&h, "t1");
}

#[test]
fn rule14_prewarm_after_a_dropped_task_registers_and_appends_a_new_one() {
    let mut h = Harness::with_identity(identity("agent-7f3a", 1));
    h.resume_bytes("t1", REFERENCE);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-7f3a")]);
    assert_session_states(
        &h,
        "t1",
        &["agent-7f3a/task_91c2", "null", "agent-8b41/task_0d77", "agent-7f3a/task-1"],
    );
    assert!(h.rollout("t1").starts_with(REFERENCE));
    assert_cache_agrees_with_rollout(&h, "t1");
}

// ---- rule 15 -----------------------------------------------------------------------------

#[test]
fn rule15_damaged_lines_are_skipped_reported_and_the_rest_used() {
    let reference: Vec<String> =
        String::from_utf8(REFERENCE.to_vec()).unwrap().lines().map(str::to_owned).collect();
    let mut lines: Vec<String> = reference[..4].to_vec();
    lines.push("{\"timestamp\": not json".into()); // line 5
    lines.extend_from_slice(&reference[4..]); // lines 6 to 11; line 10 holds agent-8b41/task_0d77
    lines.push(line("mystery", "{}")); // line 12
    lines.push(line("session_state", r#"{"agent_task":{"agent_runtime_id":"agent-8b41"}}"#)); // line 13
    let mut bytes = rollout_of(&lines);
    let torn = task_line("agent-8b41", "task_torn");
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]); // line 14, torn by a crash

    let mut h = Harness::with_identity(identity("agent-8b41", 1));
    let scan = h.resume_bytes("t1", &bytes);
    assert_eq!(scan.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [5, 12, 13, 14]);
    assert!(scan.skipped[3].reason.starts_with("torn final line"), "{:?}", scan.skipped[3]);
    assert_eq!(logged_fields(&h, "skipping damaged rollout line", "line"), ["5", "12", "13", "14"]);
    assert_logged_at(&h, Level::Warn, "skipping damaged rollout line");
    assert_eq!(count_marks(&h, marks::RESUME_SKIPPED_DAMAGED_LINE), 4);
    assert_cached(&h, "t1", Some("agent-8b41/task_0d77"));
    assert_eq!(h.rollout("t1"), bytes);
    h.run_until_idle();
    assert_requests(&h, &[]);
}

#[test]
fn rule15_a_rollout_of_garbage_resumes_with_no_task() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    let scan = h.resume_bytes("t1", b"\xff\xfe\n\n{}\n[1,2]\n{\"type\":\"session_state\"}");
    assert_eq!(scan.skipped.len(), 5);
    assert_eq!(scan.last_state, None);
    assert_cached(&h, "t1", None);
    h.run_until_idle();
    assert_cached(&h, "t1", Some("agent-a/task-1"));
}

// ---- rule 16 -----------------------------------------------------------------------------

#[test]
fn rule16_fork_appends_null_after_the_copy_and_never_adopts_the_parent_task() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("parent");
    h.run_until_idle();
    let parent = h.rollout("parent");
    h.forget();

    h.fork("child", "parent");
    let at_fork = h.rollout("child");
    assert!(at_fork.starts_with(&parent));
    assert_appended_types(&h, "child", parent.len(), &["session_state"]);
    assert_session_states(&h, "child", &["agent-a/task-1", "null"]);
    assert_marked(&h, marks::FORK_CLEARED_PARENT_TASK);
    assert_cached(&h, "child", None);
    h.run_until_idle();
    assert_session_states(&h, "child", &["agent-a/task-1", "null", "agent-a/task-2"]);
    assert_session_states(&h, "parent", &["agent-a/task-1"]);

    // A process that resumes the fork as it stood right after the copy adopts nothing.
    h.restart();
    h.resume_bytes("child", &at_fork);
    assert_cached(&h, "child", None);
}

#[test]
fn rule16_fork_of_a_parent_without_a_task_appends_nothing() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    for parent in [
        rollout_of(&[line("session_meta", "{}")]),
        rollout_of(&[task_line("agent-a", "task_x"), null_line()]),
    ] {
        h.rollouts.insert("parent".into(), parent.clone());
        h.restart();
        h.fork("child", "parent");
        assert_eq!(h.rollout("child"), parent);
        assert_not_marked(&h, marks::FORK_CLEARED_PARENT_TASK);
    }
}

// ---- rule 17 -----------------------------------------------------------------------------

#[test]
fn rule17_an_identity_without_expires_at_is_reused_and_its_task_never_revalidated() {
    let mut h = thread_with_task(Config::default());
    h.advance(400 * 24 * HOUR_MS);
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(&h, &[&model_as("agent-a/task-1")]);
    assert_stored(&h, Some("agent-a"));
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
}

// ---- rule 18 -----------------------------------------------------------------------------

#[test]
fn rule18_reacquire_treats_an_identity_past_expires_at_as_absent() {
    let mut h = Harness::signed_in();
    h.backend.identity_ttl_secs = Some(3600);
    h.start("t1");
    h.run_until_idle();
    assert_eq!(h.store.as_ref().and_then(|s| s.expires_at), Some(h.now.plus_ms(HOUR_MS)));
    h.forget();

    // One millisecond before expiry the task is current.
    h.advance(HOUR_MS - 1);
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(&h, &[&model_as("agent-1/task-1")]);
    h.forget();

    // At expires_at the identity counts as absent: its task is stale (rule 7).
    h.advance(1);
    h.turn("t1", 2);
    h.run_until_idle();
    assert_marked(&h, marks::EXPIRED_IDENTITY_REACQUIRED);
    assert_requests(
        &h,
        &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-2"), &model_as("agent-2/task-2")],
    );
    assert_session_states(&h, "t1", &["agent-1/task-1", "null", "agent-2/task-2"]);
    assert_stored(&h, Some("agent-2"));
    assert_errors(&h, "t1", &[]);
}

#[test]
fn rule18_reacquire_expired_identity_in_the_store_at_start_is_replaced() {
    let mut stored = identity("agent-a", 1);
    stored.expires_at = Some(Timestamp::SIM_EPOCH);
    let mut h = Harness::with_identity(stored);
    h.resume_bytes("t1", &rollout_of(&[task_line("agent-a", "task_x")]));
    assert_cached(&h, "t1", None);
    assert_marked(&h, marks::EXPIRED_IDENTITY_REACQUIRED);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-1")]);
    assert_session_states(&h, "t1", &["agent-a/task_x", "agent-1/task-1"]);
}

#[test]
fn rule18_reacquire_401_identity_expired_registers_a_new_identity_and_retries_within_the_ensure() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.backend.revoke("agent-a");
    h.start("t1");
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(
        &h,
        &[
            BISCUIT,
            &task_path("agent-a"),
            BISCUIT,
            REGISTER,
            BISCUIT,
            &task_path("agent-1"),
            &model_as("agent-1/task-1"),
        ],
    );
    assert_trace_order(
        &h,
        &["mark refused_identity_reacquired", "delete identity", "store agent-1"],
    );
    assert_stored(&h, Some("agent-1"));
    assert_events(&h, "t1", &TURN_1);
    assert_session_states(&h, "t1", &["agent-1/task-1"]);
}

#[test]
fn rule18_reacquire_retries_only_once_per_ensure() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.backend.refuse_tasks = true;
    h.start("t1");
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(
        &h,
        &[BISCUIT, &task_path("agent-a"), BISCUIT, REGISTER, BISCUIT, &task_path("agent-1")],
    );
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_errors(
        &h,
        "t1",
        &[&format!("{TASK_FAILED}agent task registration failed with status 401 from {BASE}/v1/agent/agent-1/task/register: {{\"error\":\"identity_expired\"}}")],
    );
}

#[test]
fn rule18_reacquire_model_refusal_drops_the_identity_and_the_next_turn_registers_anew() {
    let mut h = thread_with_task(Config::default());
    h.backend.revoke("agent-a");
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(&h, &[&model_as("agent-a/task-1")]);
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_errors(
        &h,
        "t1",
        &["model request failed with status 401: {\"error\":\"identity_expired\"}"],
    );
    assert_failures(&h, "t1", &[Failure::ModelRequest { status: Some(401) }]);
    assert_failures_logged(&h, &[]);
    assert_marked(&h, marks::MODEL_REFUSAL_DROPPED_IDENTITY);
    assert_stored(&h, None);
    h.forget();

    h.turn("t1", 2);
    h.run_until_idle();
    assert_requests(
        &h,
        &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-1"), &model_as("agent-1/task-2")],
    );
    assert_session_states(&h, "t1", &["agent-a/task-1", "null", "agent-1/task-2"]);
    assert_errors(&h, "t1", &[]);
}

#[test]
fn rule18_reacquire_sign_out_while_a_refused_task_registration_is_in_flight_ends_the_turn() {
    // Regression: the retry after a 401 identity_expired needs a binding to register a new
    // identity; signed out, the ensure waited forever and the turn never ended.
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.backend.revoke("agent-a");
    h.start("t1");
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.set_auth(Auth::None);
    h.answer(id);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-a"), MODEL]);
    assert_events(&h, "t1", &TURN_1);
    assert!(!h.machine.is_turn_active(&"t1".into()));
    assert_stored(&h, None);
}

#[test]
fn invariant06_a_401_and_two_discards_are_the_most_one_ensure_sends() {
    // Spec invariant 6: at most 2 task registrations per ensure, plus one after a 401
    // identity_expired under reacquire.
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.backend.revoke("agent-a");
    h.start("t1");
    h.turn("t1", 1);
    let refused = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.answer(refused);
    assert_marked(&h, marks::REFUSED_IDENTITY_REACQUIRED);
    for (runtime, byte) in [("agent-b", 2), ("agent-c", 3)] {
        let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
        h.replace_store(Some(identity(runtime, byte)));
        h.answer(id);
    }
    h.run_until_idle();
    assert_requests(
        &h,
        &[
            BISCUIT,
            &task_path("agent-a"),
            BISCUIT,
            REGISTER,
            BISCUIT,
            &task_path("agent-1"),
            BISCUIT,
            &task_path("agent-b"),
            MODEL,
        ],
    );
    assert_eq!(h.registrations_per_ensure.values().map(|r| r.len()).collect::<Vec<_>>(), [3]);
    assert_marked(&h, marks::ROTATION_GAVE_UP);
    assert_events(&h, "t1", &TURN_1);
}

// ---- rule 19 -----------------------------------------------------------------------------

#[test]
fn rule19_as_shipped_keeps_identity_and_every_turn_fails() {
    let mut h = thread_with_task(Config { expiry: ExpiryPolicy::AsShipped, ..Config::default() });
    h.backend.revoke("agent-a");
    for n in 1..=3 {
        h.turn("t1", n);
    }
    h.run_until_idle();
    // The cached task keeps being used and refused.
    let model = model_as("agent-a/task-1");
    assert_requests(&h, &[&model, &model, &model]);
    assert_errors(
        &h,
        "t1",
        &["model request failed with status 401: {\"error\":\"identity_expired\"}"; 3],
    );
    assert_stored(&h, Some("agent-a"));
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
    assert_not_marked(&h, marks::MODEL_REFUSAL_DROPPED_IDENTITY);
    assert!(!h.trace.iter().any(|l| l == "delete identity"));
}

#[test]
fn rule19_as_shipped_refused_task_registration_keeps_identity_and_fails_each_turn() {
    let config = Config { expiry: ExpiryPolicy::AsShipped, ..Config::default() };
    let mut h = Harness::new(config, signed_in(), Some(identity("agent-a", 1)));
    h.backend.revoke("agent-a");
    h.start("t1");
    h.run_until_idle();
    assert_logged(&h, "startup agent task prewarm failed; regular turns will retry registration");
    h.forget();
    for n in 1..=2 {
        h.turn("t1", n);
    }
    h.run_until_idle();
    let path = task_path("agent-a");
    assert_requests(&h, &[BISCUIT, &path, BISCUIT, &path]);
    assert_eq!(count_marks(&h, marks::AS_SHIPPED_REFUSAL_KEPT_IDENTITY), 2);
    let error = format!("{TASK_FAILED}agent task registration failed with status 401 from {BASE}/v1/agent/agent-a/task/register: {{\"error\":\"identity_expired\"}}");
    assert_errors(&h, "t1", &[&error, &error]);
    assert_stored(&h, Some("agent-a"));
}

#[test]
fn rule19_as_shipped_uses_an_expired_identity_and_its_cached_task() {
    let config = Config { expiry: ExpiryPolicy::AsShipped, ..Config::default() };
    let mut h = Harness::new(config, signed_in(), None);
    h.backend.identity_ttl_secs = Some(3600);
    h.start("t1");
    h.run_until_idle();
    h.forget();
    h.advance(2 * HOUR_MS);
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(&h, &[&model_as("agent-1/task-1")]);
    assert_errors(
        &h,
        "t1",
        &["model request failed with status 401: {\"error\":\"identity_expired\"}"],
    );
    assert_not_marked(&h, marks::EXPIRED_IDENTITY_REACQUIRED);
    assert_stored(&h, Some("agent-1"));
}

// ---- rule 20 -----------------------------------------------------------------------------

#[test]
fn rule20_persist_off_keeps_tasks_in_memory_and_resume_registers_afresh() {
    let config = Config { persist_task: false, ..Config::default() };
    let mut h = thread_with_task(config);
    assert_session_states(&h, "t1", &[]);

    // A stale task is cleared in memory only.
    h.replace_store(Some(identity("agent-b", 2)));
    h.turn("t1", 1);
    h.run_until_idle();
    assert_cached(&h, "t1", Some("agent-b/task-2"));
    assert_session_states(&h, "t1", &[]);

    // Resume registers afresh, even from a rollout that holds a current task.
    h.restart();
    h.rollouts.insert("t1".into(), rollout_of(&[task_line("agent-b", "task-2")]));
    h.forget();
    h.resume("t1");
    assert_marked(&h, marks::PERSIST_OFF_IGNORED_TASK);
    assert_cached(&h, "t1", None);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, &task_path("agent-b")]);
    assert_cached(&h, "t1", Some("agent-b/task-3"));
    assert_session_states(&h, "t1", &["agent-b/task-2"]);

    // A fork appends no null either.
    h.fork("child", "t1");
    assert_eq!(h.rollout("child"), h.rollout("t1"));
}

#[test]
fn rule20_persist_on_and_off_compared_on_one_resume() {
    let bytes = rollout_of(&[task_line("agent-a", "task_x")]);
    let mut requests = vec![];
    for persist_task in [true, false] {
        let config = Config { persist_task, ..Config::default() };
        let mut h = Harness::new(config, signed_in(), Some(identity("agent-a", 1)));
        h.resume_bytes("t1", &bytes);
        h.run_until_idle();
        requests.push(h.sent.len());
    }
    assert_eq!(requests, [0, 2]);
}

// ---- spec section 2: error texts ---------------------------------------------------------

enum Outcome {
    Respond(HttpResponse),
    Fail(RequestFailure),
}

/// A turn joins the prewarm of `agent-a`; the request for `stage` gets `outcome`. The turn's one
/// error carries `error`, and so does the prewarm's warn line.
#[track_caller]
fn check_task_error(
    stage: InFlightMatch<'_>,
    outcome: impl FnOnce(&mut Harness) -> Outcome,
    error: &str,
) {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    h.turn("t1", 1);
    let id = h.answer_until(stage);
    match outcome(&mut h) {
        Outcome::Respond(response) => h.answer_with(id, response),
        Outcome::Fail(failure) => h.fail(id, failure),
    }
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_errors(&h, "t1", &[&format!("{TASK_FAILED}{error}")]);
    assert_eq!(
        logged_fields(
            &h,
            "startup agent task prewarm failed; regular turns will retry registration",
            "error"
        ),
        [error]
    );
    assert!(!h.sent.iter().any(|(_, r)| r.path() == wire::MODEL_PATH), "no model request");
}

/// The identity registration of a session start meets `outcome` at `stage`; the start's one
/// error carries `error`.
#[track_caller]
fn check_identity_error(stage: InFlightMatch<'_>, outcome: Outcome, error: &str) {
    let mut h = Harness::signed_in();
    h.start("t1");
    let id = h.answer_until(stage);
    match outcome {
        Outcome::Respond(response) => h.answer_with(id, response),
        Outcome::Fail(failure) => h.fail(id, failure),
    }
    assert_events(&h, "t1", &["error"]);
    assert_errors(&h, "t1", &[&format!("{START_FAILED}{error}")]);
}

#[test]
fn spec2_error_text_biscuit_non_2xx() {
    let error = format!("agent identity biscuit minting failed with status 403 from {BASE}/authenticate_app_v2: denied");
    check_task_error(
        InFlightMatch::TaskBiscuit("t1"),
        |_| Outcome::Respond(response(403, "denied")),
        &error,
    );
    check_identity_error(
        InFlightMatch::IdentityBiscuit,
        Outcome::Respond(response(403, "denied")),
        &error,
    );
}

#[test]
fn spec2_error_text_biscuit_header_missing_or_not_utf8() {
    // [ours] The spec says only that this is an error; the text is core's.
    let error = format!("agent identity biscuit response from {BASE}/authenticate_app_v2 has no valid x-openai-authorization header");
    check_task_error(
        InFlightMatch::TaskBiscuit("t1"),
        |_| Outcome::Respond(response(200, "")),
        &error,
    );
    let not_utf8 = HttpResponse {
        status: 200,
        headers: vec![("x-openai-authorization".into(), vec![0xff, 0xfe])],
        body: vec![],
    };
    check_task_error(InFlightMatch::TaskBiscuit("t1"), |_| Outcome::Respond(not_utf8), &error);
    check_identity_error(
        InFlightMatch::IdentityBiscuit,
        Outcome::Respond(response(204, "")),
        &error,
    );
}

#[test]
fn spec2_error_text_identity_non_2xx() {
    let error = format!("agent identity registration failed with status 429 from {BASE}/v1/agent/register: slow down");
    check_identity_error(
        InFlightMatch::IdentityRegister,
        Outcome::Respond(response(429, "slow down")),
        &error,
    );
}

#[test]
fn spec2_error_text_identity_unparsable() {
    let error = format!("failed to parse agent identity response from {BASE}/v1/agent/register");
    for body in [
        "not json",
        "{}",
        r#"{"agent_runtime_id":"a/b"}"#,
        r#"{"agent_runtime_id":"agent-1","expires_at":"tomorrow"}"#,
    ] {
        check_identity_error(
            InFlightMatch::IdentityRegister,
            Outcome::Respond(response(200, body)),
            &error,
        );
    }
}

#[test]
fn spec2_error_text_identity_send_failure() {
    // [ours] Section 2 names the send failure of task registration only; identity's mirrors it.
    let error =
        format!("failed to send agent identity registration request to {BASE}/v1/agent/register");
    check_identity_error(
        InFlightMatch::IdentityRegister,
        Outcome::Fail(RequestFailure::Timeout),
        &error,
    );
}

#[test]
fn spec2_error_text_task_non_2xx() {
    let error = format!("agent task registration failed with status 502 from {BASE}/v1/agent/agent-a/task/register: bad gateway");
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |_| Outcome::Respond(response(502, "bad gateway")),
        &error,
    );
}

#[test]
fn spec2_error_text_task_unparsable() {
    let error =
        format!("failed to parse agent task response from {BASE}/v1/agent/agent-a/task/register");
    for body in ["<html>", "{}", r#"{"encrypted_task_id":5}"#] {
        check_task_error(
            InFlightMatch::TaskRegister("t1"),
            |_| Outcome::Respond(response(200, body)),
            &error,
        );
    }
}

#[test]
fn spec2_error_text_task_send_failure_and_timeout() {
    let error = format!(
        "failed to send agent task registration request to {BASE}/v1/agent/agent-a/task/register"
    );
    for failure in [RequestFailure::Timeout, RequestFailure::Connection] {
        check_task_error(InFlightMatch::TaskRegister("t1"), |_| Outcome::Fail(failure), &error);
    }
}

#[test]
fn spec2_error_text_bad_base64() {
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |_| Outcome::Respond(task_response("%%% not base64")),
        "encrypted task id is not valid base64",
    );
}

#[test]
fn spec2_error_text_box_sealed_to_another_key() {
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |_| {
            let other = IdentityKey::from_seed([99; 32]).x25519_secret().public_key();
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
            Outcome::Respond(task_response(&wire::seal_base64(&other, b"task-x", &mut rng)))
        },
        "failed to decrypt encrypted task id",
    );
}

#[test]
fn spec2_error_text_plaintext_not_utf8() {
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |h| Outcome::Respond(task_response(&h.backend.seal_for("agent-a", &[0xff, 0xfe, 0x80]))),
        "decrypted task id is not valid UTF-8",
    );
}

#[test]
fn spec2_error_text_model_refusal() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    let id = h.pending(InFlightMatch::Model("t1", 1));
    h.answer_with(id, response(401, r#"{"error":"invalid_assertion"}"#));
    assert_errors(
        &h,
        "t1",
        &["model request failed with status 401: {\"error\":\"invalid_assertion\"}"],
    );
    // Only identity_expired drops the identity.
    assert_stored(&h, Some("agent-a"));
}

#[test]
fn spec2_requests_have_the_reference_shapes() {
    let mut h = Harness::signed_in();
    h.start("t1");
    h.turn("t1", 1);
    h.run_until_idle();
    let requests: Vec<_> = h.sent.iter().map(|(_, r)| r.clone()).collect();
    let [biscuit, register, _, task, model] = requests.as_slice() else { panic!("{requests:?}") };

    assert_eq!(biscuit.header("Authorization"), Some("Bearer access-token-secret-acct-1"));
    assert_eq!(biscuit.header("X-Original-Method"), Some("POST"));
    assert_eq!(biscuit.header("X-Original-Url"), Some(register.url.as_str()));
    assert!(biscuit.header("X-Request-Id").unwrap().starts_with("codex-agent-identity-"));

    let body: serde_json::Value = serde_json::from_str(register.body.as_deref().unwrap()).unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["abom", "agent_public_key", "capabilities"]);
    assert_eq!(
        body["abom"],
        serde_json::json!({"agent_version":"0.120.0","agent_harness_id":"codex-cli","running_location":"local"})
    );
    assert!(body["agent_public_key"].as_str().unwrap().starts_with("ssh-ed25519 "));
    assert!(register.header("X-OpenAI-Authorization").unwrap().starts_with("biscuit-secret-"));

    let body: serde_json::Value = serde_json::from_str(task.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["timestamp"], h.now.rfc3339_secs());
    let key = h.store.as_ref().unwrap().key().unwrap();
    let public = wire::parse_ssh_public_key(&key.ssh_public_key()).unwrap();
    let message = format!("agent-1:{}", h.now.rfc3339_secs());
    assert!(wire::verify_signature(&public, &message, body["signature"].as_str().unwrap()));

    let assertion = wire::parse_assertion_header(model.header("Authorization").unwrap()).unwrap();
    assert_eq!(
        (assertion.agent_runtime_id.as_str(), assertion.task_id.as_str()),
        ("agent-1", "task-1")
    );
    assert_eq!(wire::verify_assertion(&public, &assertion), Ok(()));
}

// ---- auth changes ------------------------------------------------------------------------

#[test]
fn auth_workspace_switch_makes_the_task_stale_and_registers_an_identity_for_the_new_one() {
    let mut h = thread_with_task(Config::default());
    h.set_auth(signed_in_to("acct-2"));
    // Nothing happens until a turn needs a task.
    assert_requests(&h, &[]);
    h.turn("t1", 1);
    h.run_until_idle();
    assert_requests(
        &h,
        &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-1"), &model_as("agent-1/task-2")],
    );
    assert_session_states(&h, "t1", &["agent-a/task-1", "null", "agent-1/task-2"]);
    assert_eq!(h.store.as_ref().map(|s| s.binding.account_id.as_str()), Some("acct-2"));
}

#[test]
fn auth_sign_out_while_identity_registration_is_in_flight_discards_it() {
    let mut h = Harness::signed_in();
    h.start("t1");
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::IdentityRegister);
    h.set_auth(Auth::None);
    h.answer(id);
    assert_marked(&h, marks::IDENTITY_RESULT_FOR_OLD_WORKSPACE);
    h.run_until_idle();
    assert_stored(&h, None);
    assert_requests(&h, &[BISCUIT, REGISTER, MODEL]);
    assert_events(&h, "t1", &TURN_1);

    // The start still waits for a binding: signing in again registers with no restart.
    h.forget();
    h.set_auth(signed_in());
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, REGISTER, BISCUIT, &task_path("agent-2")]);
}

#[test]
fn auth_workspace_switch_while_identity_registration_is_in_flight_registers_for_the_new_one() {
    let mut h = Harness::signed_in();
    h.start("t1");
    let id = h.answer_until(InFlightMatch::IdentityRegister);
    h.set_auth(signed_in_to("acct-2"));
    h.answer(id);
    h.run_until_idle();
    assert_requests(&h, &[BISCUIT, REGISTER, BISCUIT, REGISTER, BISCUIT, &task_path("agent-2")]);
    assert_eq!(
        h.store.as_ref().map(|s| (s.agent_runtime_id.as_str(), s.binding.account_id.as_str())),
        Some(("agent-2", "acct-2"))
    );
    assert_session_states(&h, "t1", &["agent-2/task-1"]);
}

#[test]
fn auth_switch_back_while_identity_registration_is_in_flight_reuses_the_stored_identity() {
    // Rule 9: "ensure the identity (reuse, or register a new one)". Back in the workspace whose
    // identity is in the store, the threads reuse it instead of replacing it.
    let mut h =
        Harness::new(Config::default(), signed_in_to("acct-2"), Some(identity("agent-a", 1)));
    h.start("t1");
    h.turn("t1", 1);
    h.set_auth(signed_in());
    h.run_until_idle();
    assert_eq!(count_requests(&h, REGISTER), 1, "only the registration already in flight");
    assert_stored(&h, Some("agent-a"));
    assert_events(&h, "t1", &TURN_1);
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
}

// ---- other races and invariants ----------------------------------------------------------

#[test]
fn a_response_after_a_timeout_is_ignored() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.fail(id, RequestFailure::Timeout);
    h.deliver_late(id, response(200, "{}"));
    assert_marked(&h, marks::STALE_RESPONSE_IGNORED);
    assert_cached(&h, "t1", None);
    assert!(h.machine.in_flight().is_empty());
}

#[test]
fn turns_submitted_during_a_turn_run_after_it_in_order() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    h.turn("t1", 2);
    assert_eq!(h.sent.len(), 1, "turn 2 waits for turn 1");
    assert!(h.machine.is_turn_active(&"t1".into()));
    h.run_until_idle();
    assert!(!h.machine.is_turn_active(&"t1".into()));
    assert_eq!(h.events.iter().filter(|e| e.kind.name() == "turn_complete").count(), 2);
}

#[test]
fn invariant14_no_secret_leaves_the_auth_store() {
    // A busy run through every path that handles secrets; the harness checks every log line,
    // event, rollout line and machine snapshot after every step.
    let mut h = Harness::signed_in();
    h.backend.identity_ttl_secs = Some(60);
    for thread in ["t1", "t2"] {
        h.start(thread);
    }
    h.run_until_idle();
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::Model("t1", 1));
    h.answer_with(id, response(401, r#"{"error":"identity_expired"}"#));
    h.advance(61_000);
    h.turn("t2", 1);
    h.run_until_idle();
    h.set_auth(signed_in_to("acct-2"));
    h.turn("t1", 2);
    let id = h.answer_until(InFlightMatch::TaskRegister("t1"));
    h.answer_with(id, response(500, "oops"));
    h.fork("t3", "t2");
    h.run_until_idle();
    h.restart();
    h.resume("t1");
    h.run_until_idle();

    let secrets = h.secrets();
    assert!(secrets.iter().filter(|s| s.starts_with("access-token-secret-")).count() >= 2);
    assert!(secrets.len() >= 5, "tokens and private keys: {}", secrets.len());
    h.assert_no_secret_leaked();
}

#[test]
fn invariant12_once_the_backend_is_healthy_the_next_turn_of_every_thread_has_a_current_task() {
    let mut h = Harness::signed_in();
    h.backend.outage = true;
    for thread in ["t1", "t2", "t3"] {
        h.start(thread);
        h.turn(thread, 1);
    }
    h.run_until_idle();
    for thread in ["t1", "t2", "t3"] {
        assert_cached(&h, thread, None);
    }
    h.backend.outage = false;
    for thread in ["t1", "t2", "t3"] {
        h.turn(thread, 2);
    }
    h.run_until_idle();
    let current = h.machine.current_runtime(h.now).expect("an identity").to_owned();
    for thread in ["t1", "t2", "t3"] {
        let task = h.machine.cached_task(&thread.into()).expect("a task");
        assert_eq!(task.agent_runtime_id, current);
        assert_cache_agrees_with_rollout(&h, thread);
    }
    // The start's registration failed at its biscuit; the turns' one registered.
    assert_eq!(count_requests(&h, REGISTER), 1);
}

#[test]
fn invariant15_resuming_twice_equals_resuming_once() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    h.run_until_idle();
    let before = h.rollout("t1");
    let mut cached = vec![];
    for _ in 0..2 {
        h.restart();
        h.resume("t1");
        h.run_until_idle();
        cached.push(h.machine.cached_task(&"t1".into()).cloned());
    }
    assert_eq!(h.rollout("t1"), before);
    assert_eq!(cached[0], cached[1]);
    assert_eq!(cached[0].as_ref().map(|t| t.task_id.as_str()), Some("task-1"));
}

#[test]
fn the_same_seed_gives_the_same_commands() {
    let run = || {
        let mut h = Harness::signed_in();
        h.start("t1");
        h.start("t2");
        h.turn("t1", 1);
        h.run_until_idle();
        h.replace_store(Some(identity("agent-b", 2)));
        h.turn("t2", 1);
        h.run_until_idle();
        let requests: Vec<String> = h.sent.iter().map(|(id, r)| format!("{id} {r:?}")).collect();
        (h.trace.clone(), requests, h.rollouts.clone())
    };
    let (first, second) = (run(), run());
    for (a, b) in first.1.iter().zip(&second.1) {
        assert_eq!(a, b, "first request where the runs differ");
    }
    assert_eq!(first, second);
}
