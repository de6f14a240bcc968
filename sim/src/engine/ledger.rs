//! The loop's bookkeeping in one place: the records the report is built from ([`Tally`]), the
//! invariant checker, and where the run is (when it started, which step runs). The loop notes and
//! observes through here, so no call site passes the start or the step along.

use agentsim_core::{Event, Level, LogLine, RolloutItem, ThreadId, Timestamp, TurnId};

use crate::check::{Checker, Invariant, Observation, Violation};
use crate::fault::Endpoint;
use crate::report::{self, EntryKind, Tally};

pub(super) struct Ledger {
    tally: Tally,
    checker: Checker,
    start: Timestamp,
    /// The step running (1-based; 0 before the first step).
    step: usize,
}

impl Ledger {
    pub(super) fn new(start: Timestamp, timeline: bool, checker: Checker) -> Ledger {
        Ledger { tally: Tally::new(timeline), checker, start, step: 0 }
    }

    /// The step running, which the judge's violations name too.
    pub(super) fn step(&self) -> usize {
        self.step
    }

    /// Step `index` begins: the checker's violations name it from now on.
    pub(super) fn begin_step(&mut self, now: Timestamp, index: usize, what: &str) {
        self.step = index;
        self.checker.observe(Observation::Step { index });
        self.tally.entry(now, self.start, "-", EntryKind::Step, what);
    }

    /// Whether a violation stopped the run.
    pub(super) fn stopped(&self) -> bool {
        self.checker.violation.is_some()
    }

    /// Tells the checker what happened.
    pub(super) fn observe(&mut self, observation: Observation<'_>) {
        self.checker.observe(observation);
    }

    /// A violation the loop itself found, at the step running.
    pub(super) fn violate(&mut self, invariant: Invariant, message: String) {
        self.checker.violate(invariant, self.step, message);
    }

    /// A violation another oracle found, at the step it names.
    pub(super) fn forward(&mut self, violation: Violation) {
        self.checker.violate(violation.invariant, violation.step, violation.message);
    }

    /// The harness itself failed (IO, transport).
    pub(super) fn harness_failure(&mut self, message: String) {
        self.checker.harness_failure(message);
    }

    /// Whether the turn's `turn_complete` was seen.
    pub(super) fn turn_completed(&self, thread: &ThreadId, turn: TurnId) -> bool {
        self.checker.turn_completed(thread, turn)
    }

    /// Whether the human timeline is kept: hot paths skip building text nobody keeps.
    pub(super) fn timeline_on(&self) -> bool {
        self.tally.timeline_on()
    }

    /// A timeline line by `who` (a thread, or `-`).
    pub(super) fn note(&mut self, now: Timestamp, who: &str, what: &str) {
        self.tally.note(now, self.start, who, what);
    }

    /// A timeline line of a given kind.
    pub(super) fn entry(&mut self, now: Timestamp, who: &str, kind: EntryKind, what: &str) {
        self.tally.entry(now, self.start, who, kind, what);
    }

    /// `now` as the timeline writes it.
    pub(super) fn clock(&self, now: Timestamp) -> String {
        report::clock(now, self.start)
    }

    /// Virtual time since the run started.
    pub(super) fn elapsed(&self, now: Timestamp) -> u64 {
        now.since(self.start)
    }

    /// A request was sent: its request log line.
    pub(super) fn request(
        &mut self,
        now: Timestamp,
        who: &str,
        endpoint: Option<Endpoint>,
        line: String,
        record: Option<report::RequestRecord>,
    ) {
        self.tally.request(now, self.start, who, endpoint, line);
        self.tally.request_records.extend(record);
    }

    /// A rollout line was appended.
    pub(super) fn append(&mut self, now: Timestamp, thread: &ThreadId, item: &RolloutItem) {
        self.tally.append(now, self.start, thread, item);
    }

    /// Core emitted an event.
    pub(super) fn event(&mut self, now: Timestamp, event: &Event) {
        self.tally.event(now, self.start, event);
    }

    /// Core wrote a log line: it goes to `tracing` too, so a user sees core's logs live.
    pub(super) fn log(&mut self, now: Timestamp, line: &LogLine) {
        forward_to_tracing(line, &report::clock(now, self.start));
        self.tally.log(now, self.start, line);
    }

    /// Core hit a coverage mark.
    pub(super) fn mark(&mut self, name: &'static str) {
        self.tally.mark(name);
    }

    /// The records and the checker, for the report.
    pub(super) fn into_parts(self) -> (Tally, Checker) {
        (self.tally, self.checker)
    }
}

/// `vt`: the run's virtual time, the only clock a log line of a run has.
fn forward_to_tracing(line: &LogLine, vt: &str) {
    let fields = line.fields.iter().map(|(k, v)| format!(" {k}={v}")).collect::<String>();
    match line.level {
        Level::Error => tracing::error!(target: "agentsim_core", %vt, "{}{fields}", line.message),
        Level::Warn => tracing::warn!(target: "agentsim_core", %vt, "{}{fields}", line.message),
        Level::Info => tracing::info!(target: "agentsim_core", %vt, "{}{fields}", line.message),
        Level::Debug => tracing::debug!(target: "agentsim_core", %vt, "{}{fields}", line.message),
    }
}
