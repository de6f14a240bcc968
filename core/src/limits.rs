//! The lifecycle's numeric bounds, named once: core decides with them, and the simulator's checker
//! and the unit test harness read them instead of repeating the numbers.

/// Every backend call times out after this long (spec section 2: "Every call has a 15 s timeout").
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;

/// Rule 9: one ensure makes at most 2 task registration attempts; two discards in a row (the
/// identity changed while the request was in flight) end with "no task" and no error.
pub const TASK_ATTEMPTS_MAX: u8 = 2;

/// Rule 18: under `expiry = "reacquire"`, a 401 `identity_expired` to a task registration earns
/// one extra attempt within the same ensure (so invariant 6 allows `TASK_ATTEMPTS_MAX` plus this).
pub const REACQUIRE_RETRIES_MAX: u8 = 1;

/// Rules 9 and 18: how many identities one ensure accepts when they keep arriving already expired
/// before it fails (with `IdentityError::AlreadyExpired`) rather than loop on them.
pub const IDENTITY_ROUNDS_MAX: u8 = 2;
