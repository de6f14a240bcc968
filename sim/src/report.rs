//! What a run produced: the timeline, events, requests, log lines, rollouts and coverage marks;
//! the expectations evaluated against them; and the snapshot text the regression gate compares.

pub mod json;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use agentsim_core::wire::HttpRequest;
use agentsim_core::{AgentTask, Event, LogLine, RolloutItem, ThreadId, Timestamp};

use crate::backend::BackendStats;
use crate::check::{Checker, Violation};
use crate::fault::Endpoint;
use crate::reference;
use crate::run::TransportKind;
use crate::scenario::{Expect, LastStateExpect, Scenario, TaskExpect};

/// `+HH:MM:SS.mmm` since the run started.
pub fn clock(now: Timestamp, start: Timestamp) -> String {
    clock_ms(now.since(start))
}

/// `+HH:MM:SS.mmm` of `ms` virtual milliseconds.
pub fn clock_ms(ms: u64) -> String {
    format!("+{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// `agent-…/task-…` or `none`.
pub fn task_text(task: Option<&AgentTask>) -> String {
    task.map_or("none".into(), |t| format!("{}/{}", t.agent_runtime_id, t.task_id))
}

/// The interesting, non-secret part of a request.
pub fn request_summary(request: &HttpRequest) -> String {
    match request.header("Authorization") {
        Some(value) if value.starts_with(agentsim_core::wire::ASSERTION_PREFIX) => {
            match agentsim_core::wire::parse_assertion_header(value) {
                Ok(a) => format!(" assertion={}/{}", a.agent_runtime_id, a.task_id),
                Err(_) => " assertion=<unreadable>".into(),
            }
        }
        _ if request.path() == agentsim_core::wire::MODEL_PATH => " no assertion".into(),
        _ => String::new(),
    }
}

/// The interesting, non-secret part of a response.
pub fn response_summary(
    endpoint: Option<Endpoint>,
    response: &agentsim_core::wire::HttpResponse,
) -> String {
    if !response.is_success() {
        let body = response.body_text();
        let cut: String = body.chars().take(80).collect();
        return format!(" {cut}");
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&response.body).ok();
    let field = |name: &str| {
        json.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_owned)
    };
    match endpoint {
        Some(Endpoint::IdentityRegister) => field("agent_runtime_id")
            .map(|r| format!(" runtime={r}"))
            .unwrap_or_else(|| format!(" body of {} bytes", response.body.len())),
        Some(Endpoint::TaskRegister) => match field("encrypted_task_id") {
            Some(b) => format!(" sealed task id ({} base64 chars)", b.len()),
            None => format!(" body of {} bytes", response.body.len()),
        },
        Some(Endpoint::Biscuit) => {
            match response.header(agentsim_core::wire::BISCUIT_RESPONSE_HEADER) {
                Some(_) => " biscuit minted".into(),
                None => " no biscuit header".into(),
            }
        }
        _ => String::new(),
    }
}

/// What a timeline entry records: who talks to whom, for renderers that draw a run
/// ([`crate::mermaid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A scenario step begins.
    Step,
    /// A request leaves for the backend (its endpoint, when it is one of the protocol's).
    Request(Option<Endpoint>),
    /// The backend's answer arrives.
    Answer(Option<Endpoint>),
    /// A request got no answer (a timeout, a reset).
    Failed(Option<Endpoint>),
    /// A rollout line is appended.
    Append,
    /// Core emits a client-visible event.
    Event,
    /// Core writes a log line.
    Log,
    /// Anything else: a process starts or dies, the world changes, a note of the harness.
    Note,
}

/// One timeline entry: when (virtual ms since the run started), who (a thread, or `-` for the
/// process), what kind, and the text the human timeline shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Virtual milliseconds since the run started.
    pub at_ms: u64,
    /// A thread, or `-`.
    pub who: String,
    /// What it records.
    pub kind: EntryKind,
    /// The timeline's text.
    pub text: String,
}

/// One request as the run log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The run's request number (`#n` in the request log).
    pub number: u64,
    /// Virtual ms since the start, when it was sent.
    pub at_ms: u64,
    /// The thread it was for, or `-`.
    pub thread: String,
    /// The protocol endpoint, if it is one.
    pub endpoint: Option<Endpoint>,
    /// `GET` or `POST`.
    pub method: String,
    /// The URL path.
    pub path: String,
    /// What it was for, in words (`task registration for A`).
    pub purpose: String,
    /// The fault injected on it, if any.
    pub fault: Option<String>,
    /// What came back, as the request log says it.
    pub outcome: String,
    /// The request's non-secret summary ([`request_summary`]).
    pub request: String,
    /// The status the backend answered, on time or not; `None` for a reset.
    pub status: Option<u16>,
    /// The status of the answer the client received in time; `None` for a reset or a timeout.
    pub delivered: Option<u16>,
    /// What the backend answered ([`response_summary`]); empty for a reset.
    pub answer: String,
    /// The request log's line.
    pub line: String,
}

impl Entry {
    /// The line the human timeline shows.
    pub fn line(&self) -> String {
        format!("{} {:<3} {}", clock_ms(self.at_ms), self.who, self.text)
    }
}

/// The run's records, in loop order.
#[derive(Debug, Default)]
pub struct Tally {
    timeline_on: bool,
    /// The human timeline, structured ([`Tally::timeline`] renders it).
    pub entries: Vec<Entry>,
    /// Each request, structured (`--format json`). This and the next two are kept with the
    /// timeline: a run without one (`sim fuzz`) spends nothing on them.
    pub request_records: Vec<RequestRecord>,
    /// When each event of `event_values` was emitted (virtual ms since the start).
    pub event_at_ms: Vec<u64>,
    /// Each log line, with when it was written (virtual ms since the start).
    pub log_values: Vec<(u64, LogLine)>,
    /// Client-visible events, rendered.
    pub events: Vec<String>,
    /// Client-visible events.
    pub event_values: Vec<Event>,
    /// The backend request log.
    pub requests: Vec<String>,
    /// Requests sent, per endpoint.
    pub request_counts: BTreeMap<Endpoint, u64>,
    /// Log lines, rendered.
    pub logs: Vec<String>,
    /// Coverage marks hit, with counts.
    pub marks: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// A tally; `timeline` says whether to record the human timeline.
    pub fn new(timeline: bool) -> Tally {
        Tally { timeline_on: timeline, ..Tally::default() }
    }

    /// Whether the human timeline is recorded (callers in hot paths skip building its text).
    pub fn timeline_on(&self) -> bool {
        self.timeline_on
    }

    /// The human timeline, a line per entry: `+HH:MM:SS.mmm who what`.
    pub fn timeline(&self) -> Vec<String> {
        self.entries.iter().map(Entry::line).collect()
    }

    /// A timeline line of kind [`EntryKind::Note`].
    pub fn note(&mut self, now: Timestamp, start: Timestamp, who: &str, what: &str) {
        self.entry(now, start, who, EntryKind::Note, what);
    }

    /// A timeline line of the given kind.
    pub fn entry(
        &mut self,
        now: Timestamp,
        start: Timestamp,
        who: &str,
        kind: EntryKind,
        what: &str,
    ) {
        if self.timeline_on {
            let (at_ms, who, text) = (now.since(start), who.to_owned(), what.to_owned());
            self.entries.push(Entry { at_ms, who, kind, text });
        }
    }

    /// A request was sent.
    pub fn request(
        &mut self,
        now: Timestamp,
        start: Timestamp,
        who: &str,
        endpoint: Option<Endpoint>,
        line: String,
    ) {
        if let Some(e) = endpoint {
            *self.request_counts.entry(e).or_insert(0) += 1;
        }
        if self.timeline_on {
            let short = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
            let short = short.split_once(' ').map_or(short, |(_, rest)| rest);
            self.entry(now, start, who, EntryKind::Request(endpoint), &format!("→ {short}"));
        }
        self.requests.push(line);
    }

    /// A rollout line was appended.
    pub fn append(
        &mut self,
        now: Timestamp,
        start: Timestamp,
        thread: &ThreadId,
        item: &RolloutItem,
    ) {
        if self.timeline_on {
            let what = match item {
                RolloutItem::SessionState(task) => format!(
                    "append session_state {}",
                    task.as_ref().map_or("null".into(), |t| task_text(Some(t)))
                ),
                other => format!("append {}", other.type_name()),
            };
            self.entry(now, start, &thread.0, EntryKind::Append, &what);
        }
    }

    /// An event was emitted.
    pub fn event(&mut self, now: Timestamp, start: Timestamp, event: &Event) {
        let text = format!("{} {event}", clock(now, start));
        if self.timeline_on {
            self.entry(
                now,
                start,
                &event.thread.0,
                EntryKind::Event,
                &format!("event {}", event.to_string().split_once(' ').map_or("", |(_, r)| r)),
            );
        }
        self.events.push(text);
        self.event_values.push(event.clone());
        if self.timeline_on {
            self.event_at_ms.push(now.since(start));
        }
    }

    /// A log line was written.
    pub fn log(&mut self, now: Timestamp, start: Timestamp, line: &LogLine) {
        let text = format!("{} {line}", clock(now, start));
        if self.timeline_on && line.level <= agentsim_core::Level::Warn {
            self.entry(now, start, "-", EntryKind::Log, &format!("log {line}"));
        }
        self.logs.push(text);
        if self.timeline_on {
            self.log_values.push((now.since(start), line.clone()));
        }
    }

    /// A coverage mark was hit.
    pub fn mark(&mut self, name: &'static str) {
        *self.marks.entry(name).or_insert(0) += 1;
    }
}

/// One expectation of a scenario, evaluated: the structured form of a failed expectation's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectationResult {
    /// Its line in the scenario file.
    pub line: usize,
    /// The expectation as written (`requests task_register <= 1`).
    pub expectation: String,
    /// What it wants (`<= 1`, `task`, `hit`, ...).
    pub expected: String,
    /// What the run has.
    pub actual: String,
    /// Whether it held.
    pub passed: bool,
}

/// What evaluating an expectation found; `found` is the failure sentence's parenthesis.
struct Checked {
    passed: bool,
    expected: String,
    actual: String,
    found: String,
}

/// Everything a run produced, and its verdict.
#[derive(Debug)]
pub struct RunReport {
    /// The scenario's name.
    pub scenario: String,
    /// Its description.
    pub description: String,
    /// The master seed used.
    pub seed: u64,
    /// The transport used (not part of the snapshot: both must give the same one).
    pub transport: TransportKind,
    /// The records.
    pub tally: Tally,
    /// Each thread's rollout bytes.
    pub rollouts: BTreeMap<String, Vec<u8>>,
    /// Each live thread's cached task at the end.
    pub cached: BTreeMap<String, Option<AgentTask>>,
    /// The first invariant violation.
    pub violation: Option<Violation>,
    /// Expectations that did not hold, as `line: text (actual …)`.
    pub failed_expectations: Vec<String>,
    /// Every expectation, evaluated, in file order.
    pub expectations: Vec<ExpectationResult>,
    /// Whether the scenario is a canary (`expect fail`).
    pub expects_failure: bool,
    /// Backend counters.
    pub backend: BackendStats,
    /// Virtual time the run covered.
    pub virtual_ms: u64,
    /// Every secret the run handed out, for tests that look for leaks (see [`RunReport::secrets`]).
    secrets: Secrets,
}

/// A run's secrets. Its `Debug` shows only how many there are, so printing a report leaks nothing.
struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secrets, redacted>", self.0.len())
    }
}

impl RunReport {
    /// Every secret the run handed out: the private key of each identity stored, each access
    /// token, each biscuit the client received. Invariant 14 says none of them is in any artifact;
    /// the checker already looks, and this lets a test look on its own.
    pub fn secrets(&self) -> &[String] {
        &self.secrets.0
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        scenario: &Scenario,
        seed: u64,
        transport: TransportKind,
        tally: Tally,
        mut checker: Checker,
        rollouts: BTreeMap<String, Vec<u8>>,
        cached: BTreeMap<String, Option<AgentTask>>,
        current_runtime: Option<String>,
        backend: BackendStats,
        virtual_ms: u64,
    ) -> RunReport {
        let timeline = tally.timeline();
        let texts = timeline
            .iter()
            .chain(&tally.events)
            .chain(&tally.requests)
            .chain(&tally.logs)
            .map(|s| s.as_bytes())
            .chain(rollouts.values().map(Vec::as_slice));
        checker.check_secrets(texts);
        let mut report = RunReport {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed,
            transport,
            tally,
            rollouts,
            cached,
            violation: checker.violation.take(),
            failed_expectations: Vec::new(),
            expectations: Vec::new(),
            expects_failure: false,
            backend,
            virtual_ms,
            secrets: Secrets(std::mem::take(&mut checker.secrets)),
        };
        for expect in &scenario.expects {
            let checked = report.evaluate(&expect.value, current_runtime.as_deref());
            if !checked.passed {
                report
                    .failed_expectations
                    .push(format!("line {}: {} ({})", expect.line, expect.value, checked.found));
            }
            report.expectations.push(ExpectationResult {
                line: expect.line,
                expectation: expect.value.to_string(),
                expected: checked.expected,
                actual: checked.actual,
                passed: checked.passed,
            });
        }
        // A canary's `expect fail` holds when some other expectation failed.
        let canary_failed = !report.failed_expectations.is_empty();
        for result in &mut report.expectations {
            if result.expectation == Expect::Fail.to_string() {
                result.actual = if canary_failed { "failed" } else { "passed" }.to_owned();
                result.passed = canary_failed;
            }
        }
        report
    }

    /// Whether the run did what the scenario says: no violation, and every expectation held
    /// (for a canary: some expectation failed).
    pub fn passed(&self) -> bool {
        if self.violation.is_some() {
            return false;
        }
        self.expects_failure != self.failed_expectations.is_empty()
    }

    /// Evaluates one expectation: what it wants, what the run has, and whether they agree.
    fn evaluate(&mut self, expect: &Expect, current: Option<&str>) -> Checked {
        let counted = |cmp: &crate::scenario::Cmp, count: u64, actual: u64| Checked {
            passed: cmp.holds(actual, count),
            expected: format!("{cmp} {count}"),
            actual: actual.to_string(),
            found: format!("actual {actual}"),
        };
        let found = |passed: bool, expected: String, actual: String, found: String| Checked {
            passed,
            expected,
            actual,
            found,
        };
        match expect {
            Expect::Requests { endpoint, cmp, count } => {
                let actual = self.tally.request_counts.get(endpoint).copied().unwrap_or(0);
                counted(cmp, *count, actual)
            }
            Expect::Events { thread, kind, cmp, count } => {
                let actual = self
                    .tally
                    .event_values
                    .iter()
                    .filter(|e| {
                        thread.as_ref().is_none_or(|t| e.thread.0 == *t) && e.kind.name() == kind
                    })
                    .count() as u64;
                counted(cmp, *count, actual)
            }
            Expect::EventText { thread, contains } => {
                let hit = self.tally.event_values.iter().any(|e| {
                    e.thread.0 == *thread
                        && e.kind.message().is_some_and(|m| m.contains(contains.as_str()))
                });
                let actual = if hit { "found" } else { "none" };
                found(hit, "found".into(), actual.into(), "no such event".into())
            }
            Expect::Task { thread, state } => {
                let task = self.cached.get(thread).cloned().flatten();
                let is_current =
                    task.as_ref().is_some_and(|t| Some(t.agent_runtime_id.as_str()) == current);
                let text = task_text(task.as_ref());
                let sentence = format!("cached {text}");
                match state {
                    TaskExpect::Current => {
                        found(is_current, "a current task".into(), text, sentence)
                    }
                    TaskExpect::None => found(task.is_none(), "none".into(), text, sentence),
                }
            }
            Expect::LastState { thread, state } => {
                let bytes = self.rollouts.get(thread).map(Vec::as_slice).unwrap_or_default();
                let last = reference::last_session_state(bytes);
                let actual = match &last {
                    None => "absent".to_owned(),
                    Some(None) => "null".to_owned(),
                    Some(Some(t)) => format!("task {}", task_text(Some(t))),
                };
                let (ok, expected) = match state {
                    LastStateExpect::Task => (matches!(last, Some(Some(_))), "task"),
                    LastStateExpect::Null => (matches!(last, Some(None)), "null"),
                    LastStateExpect::Absent => (last.is_none(), "absent"),
                };
                let sentence = format!("actual {actual}");
                found(ok, expected.into(), actual, sentence)
            }
            Expect::SessionStateLines { thread, cmp, count } => {
                let bytes = self.rollouts.get(thread).map(Vec::as_slice).unwrap_or_default();
                counted(cmp, *count, reference::session_state_lines(bytes) as u64)
            }
            Expect::Mark { name } => {
                let hits = self.tally.marks.get(name.as_str()).copied().unwrap_or(0);
                found(hits > 0, "hit".into(), format!("{hits} hits"), "never hit".into())
            }
            Expect::Log { contains } => {
                let hit = self.tally.logs.iter().any(|l| l.contains(contains.as_str()));
                let actual = if hit { "found" } else { "none" };
                found(hit, "found".into(), actual.into(), "no such log line".into())
            }
            Expect::NoLog { contains } => {
                let hit = self.tally.logs.iter().find(|l| l.contains(contains.as_str())).cloned();
                let sentence = format!("found {:?}", hit.clone().unwrap_or_default());
                let actual = hit.clone().unwrap_or_else(|| "none".to_owned());
                found(hit.is_none(), "none".into(), actual, sentence)
            }
            Expect::Fail => {
                self.expects_failure = true;
                found(true, "failed".into(), String::new(), String::new())
            }
        }
    }

    /// One line: the verdict.
    pub fn verdict(&self) -> String {
        match (&self.violation, self.passed()) {
            (Some(v), _) => format!(
                "FAIL: {}: {} (seed {})",
                v.invariant.broken_at(v.step),
                v.message,
                self.seed
            ),
            (None, true) if self.expects_failure => format!(
                "ok (canary: failed as expected, {} expectation(s) false)",
                self.failed_expectations.len()
            ),
            (None, true) => "ok".into(),
            (None, false) if self.expects_failure => {
                "FAIL: canary scenario passed every expectation; it must fail".into()
            }
            (None, false) => {
                format!("FAIL: {} expectation(s) failed", self.failed_expectations.len())
            }
        }
    }

    /// The snapshot: everything deterministic the run produced, one line per item.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario: {}\ndescription: {}\nseed: {}\nverdict: {}",
            self.scenario,
            self.description,
            self.seed,
            self.verdict()
        );
        // By text, not by source line (see the step lines): `line N: ` is for people, in the CLI.
        for failure in &self.failed_expectations {
            let text = failure
                .split_once(": ")
                .filter(|(l, _)| l.starts_with("line "))
                .map_or(failure.as_str(), |(_, t)| t);
            let _ = writeln!(out, "  expectation: {text}");
        }
        section(&mut out, "timeline", &self.tally.timeline());
        section(&mut out, "events", &self.tally.events);
        section(&mut out, "requests", &self.tally.requests);
        for (thread, bytes) in &self.rollouts {
            let lines: Vec<String> = render_rollout(bytes);
            section(&mut out, &format!("rollout {thread}"), &lines);
        }
        section(&mut out, "logs", &self.tally.logs);
        let marks: Vec<String> =
            self.tally.marks.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        section(&mut out, "marks", &marks);
        out
    }
}

/// Rollout lines as text; a line that is not UTF-8 or has no newline says so.
pub fn render_rollout(bytes: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let complete = bytes.last() == Some(&b'\n');
    let mut parts: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if complete || bytes.is_empty() {
        parts.pop();
    }
    let n = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        let text = String::from_utf8_lossy(part);
        if i + 1 == n && !complete {
            lines.push(format!("{text}  <-- torn: no newline"));
        } else {
            lines.push(text.into_owned());
        }
    }
    lines
}

fn section(out: &mut String, title: &str, lines: &[String]) {
    let _ = writeln!(out, "\n--- {title} ({})", lines.len());
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}
