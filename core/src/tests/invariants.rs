//! Other races and invariants: late responses, queued turns, secrets, healthy backends,
//! resuming twice and determinism.

use super::*;

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
