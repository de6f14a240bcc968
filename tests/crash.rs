//! Crashes lose nothing (spec invariant 15, rules 13 and 15): every rollout line written before a
//! crash is still there after it, a torn line is skipped and reported, a lost registration is made
//! again, and resuming the same bytes twice restores what resuming them once does.
//!
//! Three checks:
//! - every durable prefix of every scenario's rollouts (cut after each line, and in the middle of
//!   each line) resumes in a fresh core exactly as the reference rules predict, read-only;
//! - crash points (`crash`, `crash on_append`, `crash on_response`) keep every acknowledged line
//!   byte for byte, and the lifecycle converges after the restart;
//! - rollouts kept as real files give the same run as rollouts kept in memory.

use std::collections::BTreeSet;

use agentsim_core::wire::IdentityKey;
use agentsim_core::{
    AgentTask, Auth, Binding, Command, Config, Lifecycle, RolloutScan, StoredIdentity, ThreadId,
    Timestamp,
};
use agentsim_tests::{
    all_scenarios, first_difference, fixture, inline_scenario, is_canary, run, run_with,
};
use serde_json::Value;
use sim::reference::predict_resume;
use sim::scenario::Scenario;
use sim::{RunOptions, RunReport, StoreKind, TransportKind};

// ---- durable prefixes of every scenario --------------------------------------------------------

/// For every scenario (canaries aside) and every thread's final rollout: every prefix that ends on
/// a line boundary, and every prefix that ends in the middle of a line (a torn write), resumes in a
/// fresh core without writing, restores exactly what `sim::reference::predict_resume` says, reports
/// the damaged lines with their numbers (a torn last line as "torn final line"), and a second fresh
/// core resuming the same bytes restores the same task.
#[test]
fn inv15_every_durable_prefix_of_every_scenario_resumes_as_the_reference_predicts() {
    let mut resumes = 0usize;
    let mut scenarios = 0usize;
    for scenario in all_scenarios().iter().filter(|s| !is_canary(s)) {
        scenarios += 1;
        let report = run(scenario, TransportKind::Memory);
        let config = config_of(scenario);
        for (thread, bytes) in &report.rollouts {
            let identities = identities_for(bytes);
            for cut in cuts(bytes) {
                for stored in &identities {
                    let case = PrefixCase {
                        scenario: &scenario.name,
                        thread,
                        bytes: &bytes[..cut.len],
                        torn: cut.torn,
                        config: &config,
                        stored: stored.as_ref(),
                    };
                    case.check();
                    resumes += 2;
                }
            }
        }
    }
    assert!(scenarios > 0, "no scenario to cut");
    eprintln!("{resumes} resumes of durable prefixes over {scenarios} scenarios");
}

/// The same check over the rollouts the crash scenarios of this file leave behind, which hold
/// torn lines in the middle (a crash tore them, and the next append ended them).
#[test]
fn inv15_durable_prefixes_of_crashed_rollouts_resume_as_the_reference_predicts() {
    for case in crash_cases() {
        let (_, full) = case.run(StoreKind::Memory);
        let config = config_of(&case.full_scenario());
        for (thread, bytes) in &full.rollouts {
            let identities = identities_for(bytes);
            for cut in cuts(bytes) {
                for stored in &identities {
                    PrefixCase {
                        scenario: case.name,
                        thread,
                        bytes: &bytes[..cut.len],
                        torn: cut.torn,
                        config: &config,
                        stored: stored.as_ref(),
                    }
                    .check();
                }
            }
        }
    }
}

/// One prefix of one rollout, resumed with one identity in the auth store.
struct PrefixCase<'a> {
    scenario: &'a str,
    thread: &'a str,
    bytes: &'a [u8],
    /// Whether the prefix ends in the middle of a line.
    torn: bool,
    config: &'a Config,
    stored: Option<&'a StoredIdentity>,
}

/// What one fresh core did when it resumed a thread.
struct Resumed {
    current: Option<String>,
    task: Option<AgentTask>,
    scan: RolloutScan,
    commands: Vec<Command>,
}

/// A virtual instant after every scenario's start; no identity here expires.
const NOW: Timestamp = Timestamp(Timestamp::SIM_EPOCH.0 + 86_400_000);

impl PrefixCase<'_> {
    #[track_caller]
    fn check(&self) {
        let what = format!(
            "scenario {}, thread {}, first {} bytes{}, current identity {}",
            self.scenario,
            self.thread,
            self.bytes.len(),
            if self.torn { " (ends in a torn line)" } else { "" },
            self.stored.map_or("none", |s| s.agent_runtime_id.as_str()),
        );
        let once = self.resume();
        let expected_current = self.stored.filter(|_| self.config.use_agent_identity);
        assert_eq!(
            once.current.as_deref(),
            expected_current.map(|s| s.agent_runtime_id.as_str()),
            "{what}: the identity is not current in the fresh core"
        );

        // Rule 13: read-only, and exactly the reference's prediction.
        let appended: Vec<&Command> =
            once.commands.iter().filter(|c| matches!(c, Command::Append { .. })).collect();
        assert!(appended.is_empty(), "{what}: resume appended {appended:?}");
        let predicted = predict_resume(
            self.bytes,
            once.current.as_deref(),
            self.config.use_agent_identity,
            self.config.persist_task,
        );
        assert_eq!(once.task, predicted, "{what}: restored task differs from the reference");
        if predicted.is_some() {
            // Rule 14: the prewarm after the restore reuses the restored task with no I/O.
            let sent = once.commands.iter().filter(|c| matches!(c, Command::Send { .. })).count();
            assert_eq!(sent, 0, "{what}: the prewarm sent requests despite a restored task");
        }

        // Rule 15: damaged lines are skipped and reported, with their numbers.
        let lines = line_count(self.bytes);
        assert_eq!(once.scan.lines, lines, "{what}: line count");
        let skipped: Vec<usize> = once.scan.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, damaged_lines(self.bytes), "{what}: skipped lines");
        for (n, line) in once.scan.skipped.iter().enumerate() {
            let is_torn = self.torn && n + 1 == once.scan.skipped.len();
            assert_eq!(
                line.reason.starts_with("torn final line ("),
                is_torn,
                "{what}: line {} reason {:?}",
                line.line,
                line.reason
            );
        }
        if self.torn {
            assert_eq!(skipped.last(), Some(&lines), "{what}: the torn last line is not skipped");
        }
        if self.config.use_agent_identity {
            assert_eq!(
                skip_logs(&once.commands),
                once.scan
                    .skipped
                    .iter()
                    .map(|s| (s.line.to_string(), s.reason.clone()))
                    .collect::<Vec<_>>(),
                "{what}: each skipped line is logged with its number and reason"
            );
        }

        // Invariant 15: resuming the bytes the first resume left (it wrote none) equals resuming
        // once.
        let twice = self.resume();
        assert_eq!(twice.task, once.task, "{what}: resuming twice restored another task");
        assert_eq!(twice.scan, once.scan, "{what}: resuming twice scanned differently");
    }

    fn resume(&self) -> Resumed {
        let mut machine =
            Lifecycle::new(self.config.clone(), auth(), self.stored.cloned(), [9; 32]);
        let current = machine.current_runtime(NOW).map(str::to_owned);
        let thread = ThreadId(self.thread.to_owned());
        let scan = machine.resume_thread(NOW, thread.clone(), self.bytes);
        let commands = std::iter::from_fn(|| machine.poll_command()).collect();
        Resumed { current, task: machine.cached_task(&thread).cloned(), scan, commands }
    }
}

/// The `(line, reason)` fields of the core's "skipping damaged rollout line" logs.
fn skip_logs(commands: &[Command]) -> Vec<(String, String)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Log(log) if log.message == "skipping damaged rollout line" => {
                let field = |name: &str| {
                    log.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
                };
                Some((field("line").unwrap_or_default(), field("reason").unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

/// The core's config for a scenario, as the simulator builds it.
fn config_of(scenario: &Scenario) -> Config {
    let c = &scenario.config;
    Config {
        use_agent_identity: c.use_agent_identity,
        expiry: c.expiry,
        persist_task: c.persist_task,
        base_url: sim::transport::MEMORY_BASE_URL.to_owned(),
        ..Config::default()
    }
}

fn binding() -> Binding {
    Binding { account_id: "acct-1".into(), user_id: Some("user-1".into()) }
}

fn auth() -> Auth {
    Auth::ChatGpt { binding: binding(), access_token: "at-prefix-test".into() }
}

/// The auth stores to resume with: an empty one, and one whose identity is the runtime of each
/// task the rollout ever persisted (so that task, when it is the last, is current).
fn identities_for(bytes: &[u8]) -> Vec<Option<StoredIdentity>> {
    let mut runtimes = BTreeSet::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Ok(value) = serde_json::from_slice::<Value>(line) else { continue };
        if value["type"] == "session_state" {
            if let Some(runtime) = value["payload"]["agent_task"]["agent_runtime_id"].as_str() {
                runtimes.insert(runtime.to_owned());
            }
        }
    }
    let key = IdentityKey::from_seed([7; 32]).to_pkcs8_base64();
    let stored = |runtime: String| StoredIdentity {
        binding: binding(),
        agent_runtime_id: runtime,
        private_key: key.clone(),
        registered_at: Timestamp::SIM_EPOCH,
        expires_at: None,
    };
    std::iter::once(None).chain(runtimes.into_iter().map(|r| Some(stored(r)))).collect()
}

/// A place to cut a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cut {
    len: usize,
    /// Whether the cut ends in the middle of a line.
    torn: bool,
}

/// Every line boundary (the empty prefix included), and the middle of every line.
fn cuts(bytes: &[u8]) -> Vec<Cut> {
    let mut cuts = BTreeSet::new();
    let mut start = 0;
    while start < bytes.len() {
        cuts.insert(Cut { len: start, torn: false });
        let end =
            bytes[start..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |i| start + i);
        let middle = start + (end - start) / 2;
        if middle > start {
            cuts.insert(Cut { len: middle, torn: true });
        }
        if end == bytes.len() {
            // The rollout itself ends in a torn line.
            cuts.insert(Cut { len: end, torn: true });
        }
        start = end + 1;
    }
    cuts.insert(Cut { len: bytes.len(), torn: !bytes.is_empty() && !bytes.ends_with(b"\n") });
    cuts.into_iter().collect()
}

/// The lines of a rollout, without their newlines; an empty final segment is not a line.
fn lines_of(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

fn line_count(bytes: &[u8]) -> usize {
    lines_of(bytes).len()
}

/// The 1-based numbers of the lines a resume must skip, by this test's own reading of spec rules
/// 13 and 15 (not the core's code): a line is used when it is a JSON object with a known string
/// `type` and an RFC 3339 `timestamp`, and, for a `session_state`, an object payload whose
/// `agent_task` is absent, `null`, or exactly the three string fields with non-empty ids.
fn damaged_lines(bytes: &[u8]) -> Vec<usize> {
    lines_of(bytes)
        .into_iter()
        .enumerate()
        .filter(|(_, line)| !is_usable_line(line))
        .map(|(i, _)| i + 1)
        .collect()
}

fn is_usable_line(line: &[u8]) -> bool {
    const TYPES: [&str; 6] = [
        "session_meta",
        "session_state",
        "turn_context",
        "event_msg",
        "response_item",
        "compacted",
    ];
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else { return false };
    let Some(kind) = object.get("type").and_then(Value::as_str) else { return false };
    let Some(timestamp) = object.get("timestamp").and_then(Value::as_str) else { return false };
    if !TYPES.contains(&kind) || Timestamp::parse_rfc3339(timestamp).is_err() {
        return false;
    }
    if kind != "session_state" {
        return true;
    }
    let Some(payload) = object.get("payload").and_then(Value::as_object) else { return false };
    match payload.get("agent_task") {
        None | Some(Value::Null) => true,
        Some(Value::Object(task)) => {
            let field = |name: &str| task.get(name).and_then(Value::as_str);
            task.len() == 3
                && field("agent_runtime_id").is_some_and(|s| !s.is_empty())
                && field("task_id").is_some_and(|s| !s.is_empty())
                && field("registered_at").is_some()
        }
        Some(_) => false,
    }
}

// ---- crash points ------------------------------------------------------------------------------

/// A crash scenario in two parts: `before` ends quiescent right before the crash is armed or
/// happens (so its rollouts are exactly what was acknowledged then); `after` crashes, restarts,
/// resumes and checks convergence with `expect` lines.
struct CrashCase {
    name: &'static str,
    header: &'static str,
    before: &'static str,
    after: &'static str,
    /// The line numbers, per thread, that the first resume after the crash must report as a torn
    /// final line.
    torn_at_resume: &'static [(&'static str, usize)],
    /// Backend counters at the end: (task ids issued, identities registered).
    issued: (u64, u64),
}

fn crash_cases() -> Vec<CrashCase> {
    vec![
        CrashCase {
            name: "crash_now_after_two_threads_settled",
            header: "description: crash now; both threads resume their task\nseed: 5\n",
            before: "start A\nstart B\nsettle\nturn A \"first\"\nturn B \"first\"\nsettle\n",
            after: "crash\nrestart\nresume A\nresume B\nturn A \"second\"\nturn B \"second\"\n\
                    expect task A current\nexpect task B current\n\
                    expect requests task_register = 2\nexpect requests identity_register = 1\n\
                    expect mark persisted_task_restored\nexpect events * error = 0\n",
            torn_at_resume: &[],
            issued: (2, 1),
        },
        CrashCase {
            name: "crash_now_with_a_turn_in_flight",
            header: "description: crash while a model request is in flight\nseed: 6\n",
            before: "start A\nsettle\nturn A \"first\"\nsettle\n",
            after: "submit A \"second\"\ncrash\nrestart\nresume A\nturn A \"third\"\n\
                    expect task A current\nexpect requests task_register = 1\n\
                    expect mark persisted_task_restored\n",
            torn_at_resume: &[],
            issued: (1, 1),
        },
        CrashCase {
            name: "crash_on_append_tears_a_turn_line",
            header: "description: a torn turn line is skipped after the crash\nseed: 7\n",
            before: "start A\nstart B\nsettle\nturn A \"first\"\nturn B \"first\"\nsettle\n",
            after: "crash on_append A\nturn A \"second\"\nrestart\nresume A\nresume B\n\
                    turn A \"third\"\nturn B \"second\"\n\
                    expect task A current\nexpect task B current\n\
                    expect requests task_register = 2\n\
                    expect mark resume_skipped_damaged_line\nexpect mark persisted_task_restored\n",
            // A has session_meta, session_state and the first turn's 5 lines (turn_context,
            // user event_msg, user response_item, assistant response_item, token_count) before
            // the crash, so the torn line (the second turn's turn_context) is line 8.
            torn_at_resume: &[("A", 8)],
            issued: (2, 1),
        },
        CrashCase {
            name: "crash_on_append_tears_the_session_state_of_a_new_task",
            header: "description: a torn session_state is registered again\nseed: 8\n\
                     fault task_register 1..2 status=503\n",
            before: "start A\nsettle\nturn A \"first\"\nsettle\n",
            after: "restart\ncrash on_append A\nresume A\nsettle\nrestart\nresume A\nsettle\n\
                    turn A \"second\"\n\
                    expect task A current\nexpect last_state A task\n\
                    expect session_state_lines A = 1\nexpect requests task_register = 4\n\
                    expect mark resume_skipped_damaged_line\n",
            // session_meta, then the failed turn's turn_context, user event_msg and user
            // response_item; the torn session_state is line 5.
            torn_at_resume: &[("A", 5)],
            issued: (2, 1),
        },
        CrashCase {
            name: "crash_on_response_loses_a_task_registration",
            header: "description: a task registered but never recorded is registered again\n\
                     seed: 9\nfault task_register 1..2 status=503\n",
            before: "start A\nsettle\nturn A \"first\"\nsettle\n",
            after:
                "crash on_response task_register\nturn A \"second\"\nrestart\nresume A\nsettle\n\
                    turn A \"third\"\n\
                    expect task A current\nexpect last_state A task\n\
                    expect session_state_lines A = 1\nexpect requests task_register = 4\n\
                    expect mark persisted_state_absent\n",
            torn_at_resume: &[],
            issued: (2, 1),
        },
        CrashCase {
            name: "crash_on_response_loses_an_identity_registration",
            header: "description: an identity registered but never stored is registered again\n\
                     seed: 10\n",
            before: "start A\nsettle\nturn A \"first\"\nsettle\n",
            after: "revoke_identity\nturn A \"refused\"\nrestart\ncrash on_response identity_register\n\
                    resume A\nsettle\nrestart\nresume A\nsettle\nturn A \"third\"\n\
                    expect task A current\nexpect last_state A task\n\
                    expect requests identity_register = 3\n\
                    expect mark model_refusal_dropped_identity\n\
                    expect mark persisted_task_dropped_stale\n",
            torn_at_resume: &[],
            issued: (2, 3),
        },
    ]
}

impl CrashCase {
    fn before_scenario(&self) -> Scenario {
        let path = fixture(&format!("{}_before.scn", self.name));
        inline_scenario(&path, &format!("{}{}", self.header, self.before))
    }

    fn full_scenario(&self) -> Scenario {
        let path = fixture(&format!("{}.scn", self.name));
        inline_scenario(&path, &format!("{}{}{}", self.header, self.before, self.after))
    }

    /// Runs the part before the crash and the whole scenario.
    fn run(&self, store: StoreKind) -> (RunReport, RunReport) {
        let options =
            RunOptions { store, transport: TransportKind::Memory, ..RunOptions::default() };
        (run_with(&self.before_scenario(), &options), run_with(&self.full_scenario(), &options))
    }

    #[track_caller]
    fn check(&self) {
        let (before, full) = self.run(StoreKind::Memory);
        let name = self.name;
        assert_eq!(before.violation, None, "{name}: the part before the crash broke an invariant");
        assert!(
            full.passed(),
            "{name}: {}\n{}\n{}",
            full.verdict(),
            full.failed_expectations.join("\n"),
            full.tally.timeline().join("\n")
        );

        // Every line acknowledged before the crash is still there, byte for byte.
        for (thread, acknowledged) in &before.rollouts {
            let after = &full.rollouts[thread];
            assert!(
                after.starts_with(acknowledged),
                "{name}: {thread}'s rollout lost acknowledged bytes:\nbefore:\n{}\nafter:\n{}",
                String::from_utf8_lossy(acknowledged),
                String::from_utf8_lossy(after)
            );
        }

        // Torn lines were skipped and reported at resume, and stay one damaged line.
        for (thread, line) in self.torn_at_resume {
            let prefix = format!("skipping damaged rollout line thread={thread} line={line} reason=torn final line (not JSON: ");
            assert!(
                full.tally.logs.iter().any(|l| l.contains(&prefix)),
                "{name}: no log line containing {prefix:?}:\n{}",
                full.tally.logs.join("\n")
            );
            let final_scan = agentsim_core::rollout::scan(&full.rollouts[*thread]);
            let skipped: Vec<usize> = final_scan.skipped.iter().map(|s| s.line).collect();
            assert_eq!(skipped, vec![*line], "{name}: {thread}'s final rollout");
            assert!(final_scan.skipped[0].reason.starts_with("not JSON: "), "{name}");
        }
        if self.torn_at_resume.is_empty() {
            for (thread, bytes) in &full.rollouts {
                assert_eq!(agentsim_core::rollout::scan(bytes).skipped, vec![], "{name}: {thread}");
            }
        }

        // A lost registration is registered again: the backend issued more than the rollouts
        // record, and each rollout records one task at most once.
        assert_eq!(
            (full.backend.tasks_issued, full.backend.identities_registered),
            self.issued,
            "{name}: (tasks issued, identities registered)"
        );
        for (thread, bytes) in &full.rollouts {
            let ids = task_ids(bytes);
            let distinct: BTreeSet<&String> = ids.iter().collect();
            assert_eq!(
                distinct.len(),
                ids.len(),
                "{name}: {thread} persisted a task twice: {ids:?}"
            );
        }
    }
}

/// The task ids of a rollout's `session_state` lines, in order.
fn task_ids(bytes: &[u8]) -> Vec<String> {
    lines_of(bytes)
        .into_iter()
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|v| v["type"] == "session_state")
        .filter_map(|v| v["payload"]["agent_task"]["task_id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn inv15_crash_now_keeps_every_acknowledged_line() {
    crash_case("crash_now_after_two_threads_settled").check();
    crash_case("crash_now_with_a_turn_in_flight").check();
}

#[test]
fn inv15_crash_on_append_keeps_the_prefix_and_skips_the_torn_line() {
    crash_case("crash_on_append_tears_a_turn_line").check();
    crash_case("crash_on_append_tears_the_session_state_of_a_new_task").check();
}

#[test]
fn inv15_crash_on_response_registers_the_lost_task_or_identity_again() {
    crash_case("crash_on_response_loses_a_task_registration").check();
    crash_case("crash_on_response_loses_an_identity_registration").check();
}

#[test]
fn every_crash_case_has_a_test() {
    let tested = [
        "crash_now_after_two_threads_settled",
        "crash_now_with_a_turn_in_flight",
        "crash_on_append_tears_a_turn_line",
        "crash_on_append_tears_the_session_state_of_a_new_task",
        "crash_on_response_loses_a_task_registration",
        "crash_on_response_loses_an_identity_registration",
    ];
    let names: Vec<&str> = crash_cases().iter().map(|c| c.name).collect();
    assert_eq!(names, tested);
}

fn crash_case(name: &str) -> CrashCase {
    crash_cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"))
}

// ---- rollouts as real files --------------------------------------------------------------------

/// Keeping rollouts in real files changes nothing: every scenario, and every crash case, gives the
/// same snapshot with `StoreKind::Files` as with `StoreKind::Memory`.
#[test]
fn rollouts_in_real_files_give_the_same_snapshot_as_in_memory() {
    let mut scenarios = all_scenarios();
    scenarios.extend(crash_cases().iter().map(CrashCase::full_scenario));
    for scenario in &scenarios {
        let report = |store| {
            let options =
                RunOptions { store, transport: TransportKind::Memory, ..RunOptions::default() };
            run_with(scenario, &options).snapshot()
        };
        let (memory, files) = (report(StoreKind::Memory), report(StoreKind::Files));
        if let Some(difference) = first_difference(&memory, &files) {
            panic!("{}: files and memory differ at {difference}", scenario.name);
        }
    }
}
