//! Rules 1 to 5: the session start, the restore of resume before it, identity registration
//! in the background and the prewarm of a task.

use super::*;

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
        // Spec section 4: the prewarm path logs its own line only.
        assert_failures_logged(&h, &[Failure::Prewarm]);
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
