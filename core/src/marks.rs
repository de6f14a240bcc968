//! Coverage marks: named code paths a scenario can require (TigerBeetle's marks, FoundationDB's
//! code probes). The machine reports a mark with [`crate::Command::Mark`] each time it takes the
//! path; a scenario that names a mark fails when the run never reports it.

macro_rules! marks {
    ($($(#[doc = $doc:literal])* $name:ident = $text:literal;)*) => {
        $($(#[doc = $doc])* pub const $name: &str = $text;)*
        /// Every mark, in declaration order.
        pub const ALL: &[&str] = &[$($text),*];
    };
}

marks! {
    /// An identity registration succeeded and was stored.
    IDENTITY_REGISTERED = "identity_registered";
    /// A second caller joined an identity registration already in flight (rule 12).
    IDENTITY_SINGLE_FLIGHT_JOINED = "identity_single_flight_joined";
    /// Identity registration at session start failed and the start error event was emitted (rule 4).
    IDENTITY_FAILED_AT_START = "identity_failed_at_start";
    /// A sign-in after start registered the identity with no restart (rule 3).
    LATE_SIGN_IN_REGISTERED = "late_sign_in_registered";
    /// A registered identity arrived for a workspace that is no longer signed in.
    IDENTITY_RESULT_FOR_OLD_WORKSPACE = "identity_result_for_old_workspace";
    /// The auth store's identity was replaced from outside (another process rotated it).
    IDENTITY_REPLACED_EXTERNALLY = "identity_replaced_externally";
    /// An identity past `expires_at` counted as absent and a new one was registered (rule 18).
    EXPIRED_IDENTITY_REACQUIRED = "expired_identity_reacquired";
    /// A 401 `identity_expired` dropped the identity and the task was retried (rule 18).
    REFUSED_IDENTITY_REACQUIRED = "refused_identity_reacquired";
    /// A 401 `identity_expired` failed the ensure under `as_shipped` (rule 19).
    AS_SHIPPED_REFUSAL_KEPT_IDENTITY = "as_shipped_refusal_kept_identity";
    /// A model request refused with `identity_expired` dropped the identity under `reacquire`.
    MODEL_REFUSAL_DROPPED_IDENTITY = "model_refusal_dropped_identity";
    /// A cached, current task was reused with no I/O (rule 6).
    CACHED_TASK_REUSED = "cached_task_reused";
    /// A cached, stale task was cleared and `null` appended (rule 7).
    STALE_TASK_CLEARED = "stale_task_cleared";
    /// An ensure joined a registration already in flight on its thread (rule 8).
    TASK_SINGLE_FLIGHT_JOINED = "task_single_flight_joined";
    /// A task was registered and cached (rule 10).
    TASK_REGISTERED = "task_registered";
    /// A newly registered task was discarded because the identity changed in flight (rule 9).
    ROTATION_DISCARDED_NEW_TASK = "rotation_discarded_new_task";
    /// Two discards in a row ended the ensure with no task and no error (rule 9).
    ROTATION_GAVE_UP = "rotation_gave_up";
    /// A prewarm failed: a warn log, nothing else (rule 5).
    PREWARM_FAILED = "prewarm_failed";
    /// A turn's ensure failed: one error event, no model request (rule 11).
    TURN_ENSURE_FAILED = "turn_ensure_failed";
    /// A turn ran with no task because there is no usable identity (no binding, gave up).
    TURN_WITHOUT_TASK = "turn_without_task";
    /// Resume restored a persisted task that matches the identity (rule 13).
    PERSISTED_TASK_RESTORED = "persisted_task_restored";
    /// Resume dropped a persisted task that is stale (rule 13).
    PERSISTED_TASK_DROPPED_STALE = "persisted_task_dropped_stale";
    /// A persisted task resume had dropped was restored once its identity became current again.
    PERSISTED_TASK_ADOPTED_LATER = "persisted_task_adopted_later";
    /// Resume found a last `session_state` of `null` (rule 13).
    PERSISTED_NULL = "persisted_null";
    /// Resume found no `session_state` at all (rule 13).
    PERSISTED_STATE_ABSENT = "persisted_state_absent";
    /// Resume skipped damaged lines (rule 15).
    RESUME_SKIPPED_DAMAGED_LINE = "resume_skipped_damaged_line";
    /// Resume ignored a persisted task because `persist_task` is off (rule 20).
    PERSIST_OFF_IGNORED_TASK = "persist_off_ignored_task";
    /// A fork appended `null` after the parent's copy (rule 16).
    FORK_CLEARED_PARENT_TASK = "fork_cleared_parent_task";
    /// A response arrived for a request nobody waits for any more.
    STALE_RESPONSE_IGNORED = "stale_response_ignored";
}
