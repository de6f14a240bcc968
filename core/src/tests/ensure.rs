//! Rules 6 to 12: ensuring a thread's task (reuse, stale clearing, single flight, discards,
//! `session_state` appends, turn failures, one registration for many threads).

use super::*;

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
    assert_appended_types(&h, "t2", t2_before, &["turn_context", "event_msg", "response_item"]);
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
