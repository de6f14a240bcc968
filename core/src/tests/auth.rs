//! Auth changes: workspace switches and sign-outs while registrations are in flight.

use super::*;

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
