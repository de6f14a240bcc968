//! What the checks report: [`Invariant`], one variant per invariant of spec section 5 plus the
//! failures the harness reports the same way, and the [`Violation`] that stops a run.

use std::fmt;

/// What a [`Violation`] broke: one of the invariants of spec section 5, or a failure the harness
/// reports the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Invariant 1, flag off: no agent HTTP calls, no `session_state` appended, no agent `Error`
    /// events.
    FlagOff,
    /// Invariant 2: resume is read-only and a pure function of (last `session_state`, identity).
    ResumeReadOnly,
    /// Invariant 3, latest wins: only the last `session_state` line matters after resume.
    LatestWins,
    /// Invariant 4: every appended `session_state` follows a change (a registration or a clear),
    /// never repeating the last value.
    AppendsFollowChanges,
    /// Invariant 5: at most one task registration in flight per thread, one identity
    /// registration per process.
    SingleFlight,
    /// Invariant 6: one ensure sends at most 2 task registrations (plus one after a 401 under
    /// `reacquire`), each after exactly one biscuit for its URL.
    AttemptBudget,
    /// Invariant 7: no assertion or downstream request carries a task of another runtime than the
    /// current identity's.
    AssertsCurrent,
    /// Invariant 8: every signature verifies and every sealed box opens: the client speaks the
    /// protocol.
    ProtocolClean,
    /// Invariant 9: a failure on one thread emits events on that thread only and changes no
    /// other.
    FailureIsolated,
    /// Invariant 10: a prewarm failure emits no event, changes no state and never fails the
    /// session.
    PrewarmQuiet,
    /// Invariant 11: a turn whose ensure fails emits exactly one `Error` and makes no model
    /// request.
    TurnFailure,
    /// Invariant 12, liveness: once the backend is healthy, the next turn of every thread ends
    /// with a current task.
    Liveness,
    /// Invariant 13, quiescent agreement: resuming a rollout now would give exactly the cached
    /// task.
    QuiescentAgreement,
    /// Invariant 14: nothing secret leaves the auth store.
    NoSecrets,
    /// Invariant 15, durability: acknowledged lines survive a crash; resuming twice equals
    /// resuming once.
    Durability,
    /// Invariant 16, ownership: a thread only uses a task it registered or restored from its own
    /// rollout.
    Ownership,
    /// Invariant 17: the backend is the judge of time.
    BackendJudgesTime,
    /// Invariant 18, write-ahead: a task's `session_state` is appended before the first request
    /// asserting it.
    WriteAhead,
    /// Invariant 19: turns of one thread run strictly in order.
    TurnOrder,
    /// Liveness, seen by the drive loop: a step waits for a turn that can never complete (nothing
    /// is in flight).
    Stuck,
    /// Liveness, seen by the drive loop: one step hit the event cap.
    StepCap,
    /// The reference model's prediction differed from what core did.
    ReferenceDivergence,
    /// An `Error` event's message does not begin with the text spec section 4 gives for its
    /// failure.
    SpecText,
    /// The harness itself failed (IO, transport), not the lifecycle.
    Harness,
}

impl Invariant {
    /// The numbered invariants of spec section 5, in order: `NUMBERED[n - 1]` is invariant `n`.
    pub const NUMBERED: [Invariant; 19] = [
        Invariant::FlagOff,
        Invariant::ResumeReadOnly,
        Invariant::LatestWins,
        Invariant::AppendsFollowChanges,
        Invariant::SingleFlight,
        Invariant::AttemptBudget,
        Invariant::AssertsCurrent,
        Invariant::ProtocolClean,
        Invariant::FailureIsolated,
        Invariant::PrewarmQuiet,
        Invariant::TurnFailure,
        Invariant::Liveness,
        Invariant::QuiescentAgreement,
        Invariant::NoSecrets,
        Invariant::Durability,
        Invariant::Ownership,
        Invariant::BackendJudgesTime,
        Invariant::WriteAhead,
        Invariant::TurnOrder,
    ];

    /// Its number in spec section 5, for the numbered ones.
    pub fn spec_number(self) -> Option<u8> {
        let index = Invariant::NUMBERED.iter().position(|i| *i == self)?;
        Some(u8::try_from(index + 1).expect("19 invariants"))
    }

    /// How reports say where it broke: `invariant 6 broken at step 3` for a numbered invariant
    /// (the text snapshots and summaries have always used), `liveness (stuck run) at step 3` for
    /// the others.
    pub fn broken_at(self, step: usize) -> String {
        match self.spec_number() {
            Some(_) => format!("{self} broken at step {step}"),
            None => format!("{self} at step {step}"),
        }
    }

    /// The numbered invariant `n` of spec section 5.
    pub fn numbered(n: u8) -> Option<Invariant> {
        Invariant::NUMBERED.get(usize::from(n).checked_sub(1)?).copied()
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.spec_number() {
            return write!(f, "invariant {n}");
        }
        f.write_str(match self {
            Invariant::Stuck => "liveness (stuck run)",
            Invariant::StepCap => "liveness (step cap)",
            Invariant::ReferenceDivergence => "reference model divergence",
            Invariant::SpecText => "spec section 4 text",
            Invariant::Harness => "harness failure",
            _ => unreachable!("numbered invariants are written above"),
        })
    }
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What broke.
    pub invariant: Invariant,
    /// The 1-based scenario step during which it broke (0: before the first step or after the last).
    pub step: usize,
    /// What happened.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariants_are_numbered_as_in_spec_section_5() {
        for n in 1..=19 {
            let invariant = Invariant::numbered(n).expect("numbered");
            assert_eq!(invariant.spec_number(), Some(n));
            assert_eq!(invariant.to_string(), format!("invariant {n}"));
            assert_eq!(invariant.broken_at(4), format!("invariant {n} broken at step 4"));
        }
        assert_eq!(Invariant::numbered(0), None);
        assert_eq!(Invariant::numbered(20), None);
        assert_eq!(Invariant::Liveness.spec_number(), Some(12));
        assert_eq!(Invariant::TurnOrder.spec_number(), Some(19));
        let others = [
            (Invariant::Stuck, "liveness (stuck run)"),
            (Invariant::StepCap, "liveness (step cap)"),
            (Invariant::ReferenceDivergence, "reference model divergence"),
            (Invariant::SpecText, "spec section 4 text"),
            (Invariant::Harness, "harness failure"),
        ];
        for (invariant, text) in others {
            assert_eq!(invariant.spec_number(), None);
            assert_eq!(invariant.to_string(), text);
            assert_eq!(invariant.broken_at(0), format!("{text} at step 0"));
        }
    }
}
