//! Rules 17 to 20: identity expiry (reacquire and as shipped) and whether tasks persist.

use super::*;

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
    let child = h.rollout("child");
    assert_eq!(after_session_meta(&child).1, h.rollout("t1").as_slice());
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
