//! Rules 13 to 16: the resume table, the reference rollout, prewarm after resume, damaged lines
//! and fork.

use super::*;

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
    let (meta, copy) = after_session_meta(&at_fork);
    assert!(copy.starts_with(&parent));
    assert_appended_types(&h, "child", meta.len() + parent.len(), &["session_state"]);
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
        let child = h.rollout("child");
        assert_eq!(after_session_meta(&child).1, parent.as_slice());
        assert_not_marked(&h, marks::FORK_CLEARED_PARENT_TASK);
    }
}

#[test]
fn rule13_compaction_and_rollback_leave_the_task_and_resume_restores_the_latest() {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    h.run_until_idle();
    h.turn("t1", 1);
    h.run_until_idle();
    let before = h.rollout("t1").len();
    h.compact("t1");
    h.rollback("t1", 1);
    // One line each, neither a `session_state`; the cached task stays.
    assert_appended_types(&h, "t1", before, &["compacted", "event_msg"]);
    assert_session_states(&h, "t1", &["agent-a/task-1"]);
    assert_cached(&h, "t1", Some("agent-a/task-1"));
    // Rule 13 reads the last `session_state` of the whole file, past both items.
    h.restart();
    h.resume("t1");
    h.run_until_idle();
    assert_cached(&h, "t1", Some("agent-a/task-1"));
    assert_marked(&h, marks::PERSISTED_TASK_RESTORED);
}
