//! Bad input gives a clear error and never a panic: malformed scenario files (the exact message,
//! with file, line and column), steps that cannot run, damaged rollout files (skipped and reported
//! line by line, the rest used), and garbage from the backend (the exact error the lifecycle
//! reports, for every endpoint and every fault kind).

use std::path::Path;

use agentsim_core::rollout::{scan, LastState, SkippedLine};
use agentsim_core::wire;
use agentsim_core::EventKind;
use agentsim_tests::{first_difference, fixture, inline_scenario, run_with};
use sim::check::Invariant;
use sim::store::{FileStore, RolloutStore as _, MAX_ROLLOUT_FILE_BYTES};
use sim::{RunOptions, RunReport, StoreKind, TransportKind};

// ---- malformed scenario files ------------------------------------------------------------------

/// `tests/fixtures/bad_scenarios/expected.txt`: file name → the error after `<path>:`.
fn expected_scenario_errors() -> Vec<(String, String)> {
    let path = fixture("bad_scenarios/expected.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, error) =
                l.split_once('\t').unwrap_or_else(|| panic!("expected.txt: no tab in {l:?}"));
            (file.to_owned(), error.to_owned())
        })
        .collect()
}

/// Every `.scn` file of the bad-scenario corpus, sorted.
fn bad_scenario_files() -> Vec<String> {
    let dir = fixture("bad_scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".scn"))
        .collect();
    files.sort();
    files
}

/// Each malformed file gives exactly its expected error, `<path>:<line>:<column>: <message>`.
#[test]
fn every_malformed_scenario_file_gives_its_exact_error_with_line_and_column() {
    let expected = expected_scenario_errors();
    let files = bad_scenario_files();
    assert!(files.len() >= 20, "the bad-scenario corpus is missing: {files:?}");
    let listed: Vec<&String> = expected.iter().map(|(f, _)| f).collect();
    let unlisted: Vec<&String> = files.iter().filter(|f| !listed.contains(f)).collect();
    assert!(unlisted.is_empty(), "files without an entry in expected.txt: {unlisted:?}");
    let mut wrong = Vec::new();
    for (file, error) in &expected {
        let path = fixture(&format!("bad_scenarios/{file}"));
        assert!(path.exists(), "expected.txt names a missing file {file}");
        let want = format!("{}:{error}", path.display());
        match sim::scenario::load(&path) {
            Ok(_) => wrong.push(format!("{file}: parsed, but must fail with\n  {want}")),
            Err(e) if e.to_string() == want => {}
            Err(e) => wrong.push(format!("{file}:\n  got  {e}\n  want {want}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The corpus covers what the issue lists, so a file deleted by mistake is noticed.
#[test]
fn the_bad_scenario_corpus_covers_every_kind_of_mistake() {
    let files = bad_scenario_files();
    for needed in [
        "syntax_error.scn",
        "unknown_step.scn",
        "unknown_header_key.scn",
        "unknown_argument.scn",
        "unknown_field.scn",
        "negative_duration.scn",
        "missing_thread.scn",
        "empty.scn",
        "unterminated_string.scn",
        "non_utf8.scn",
        "unknown_mark.scn",
        "unknown_event_kind.scn",
    ] {
        assert!(files.iter().any(|f| f == needed), "the corpus lost {needed}");
    }
}

/// A scenario built in code (not loaded from a file) is still checked for names only the core
/// knows, before anything runs; such an error names the file and the line.
#[test]
fn unknown_mark_or_event_kind_in_a_scenario_built_in_code_is_an_error_before_the_run() {
    let path = fixture("built_in_code.scn");
    let cases = [
        (
            "expect mark cached_task_resued",
            "unknown coverage mark \"cached_task_resued\": did you mean cached_task_reused?",
        ),
        (
            "expect events A eror = 0",
            "unknown event kind \"eror\": expected one of task_started, user_message, error, turn_complete",
        ),
    ];
    for (line, message) in cases {
        let scenario = inline_scenario(&path, &format!("description: d\nstart A\n{line}\n"));
        let error = sim::run(&scenario, &RunOptions::default()).unwrap_err();
        assert_eq!(error.to_string(), format!("{}:3: {message}", path.display()));
    }
}

// ---- steps that cannot run ---------------------------------------------------------------------

/// A step that cannot be carried out in the state the run is in: the run stops with the file, the
/// step's line and what to do.
#[test]
fn steps_that_cannot_run_name_the_file_line_and_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("steps.scn");
    let missing = dir.path().join("missing.jsonl");
    let missing_error = std::fs::read(&missing).unwrap_err();
    std::fs::write(dir.path().join("empty.jsonl"), b"").expect("write a rollout");
    let cases: Vec<(&str, String)> = vec![
        (
            "start A\ncrash\nturn A",
            "5: no process is running (the last one crashed): add a `restart` step".into(),
        ),
        (
            "start A\nsettle\nturn A\nrestart\nturn A",
            "7: thread \"A\" is not running in this process: start or resume it first".into(),
        ),
        (
            "start A\nsettle\nturn A\nresume A",
            "6: thread \"A\" is already running in this process: `crash` or `restart` first".into(),
        ),
        // (A started thread always has a rollout now: its `session_meta` is written at once, so
        // "has no rollout to resume/fork" can no longer be reached from a scenario.)
        (
            "resume B from \"missing.jsonl\"",
            format!("3: cannot read rollout {}: {missing_error}", missing.display()),
        ),
        (
            "resume B from \".\"",
            format!(
                "3: cannot read rollout {}: it is a directory, not a regular file",
                dir.path().join(".").display()
            ),
        ),
        (
            "start A\nsettle\nturn A\nrestart\nresume A from \"empty.jsonl\"",
            "7: thread \"A\" already has a rollout; resume it without `from`".into(),
        ),
    ];
    for (steps, message) in cases {
        let scenario = inline_scenario(&path, &format!("description: d\nseed: 1\n{steps}\n"));
        for transport in [TransportKind::Memory, TransportKind::Http] {
            let options = RunOptions { transport, ..RunOptions::default() };
            match sim::run(&scenario, &options) {
                Ok(report) => panic!("{steps:?} ran: {}", report.verdict()),
                Err(e) => assert_eq!(e.to_string(), format!("{}:{message}", path.display())),
            }
        }
    }
}

/// A FIFO at `path`, made with the `mkfifo` tool.
#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A sparse file at `path` one byte larger than a rollout file may be: nothing is written.
#[cfg(unix)]
fn oversized_file(path: &Path) {
    let file = std::fs::File::create(path).expect("create a file");
    file.set_len(MAX_ROLLOUT_FILE_BYTES + 1).expect("a sparse file");
}

/// What `f` returns, computed on its own thread: the test fails if that takes longer than
/// `seconds` (a hang) or panics.
#[cfg(unix)]
fn within<T: Send + 'static>(
    seconds: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(f()));
    receiver
        .recv_timeout(std::time::Duration::from_secs(seconds))
        .unwrap_or_else(|e| panic!("{what}: no result within {seconds} s ({e})"))
}

#[cfg(unix)]
const TOO_LARGE: &str =
    "it holds 67108865 bytes, more than the 67108864 bytes (64 MiB) a rollout file may hold";

/// `resume ... from` reads only a regular file of at most 64 MiB: a FIFO (whose opening would
/// wait for a writer), `/dev/zero` (endless), a directory or a larger file stops the run at once
/// with an error naming the path and why, never a hang, a panic or a read into memory.
#[cfg(unix)]
#[test]
fn resume_from_a_file_that_is_not_a_regular_one_or_too_large_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sources.scn");
    mkfifo(&dir.path().join("fifo.jsonl"));
    std::fs::create_dir(dir.path().join("folder.jsonl")).expect("a folder");
    oversized_file(&dir.path().join("large.jsonl"));
    let cases = [
        ("fifo.jsonl", "it is a FIFO, not a regular file"),
        ("/dev/zero", "it is a character device, not a regular file"),
        ("folder.jsonl", "it is a directory, not a regular file"),
        ("large.jsonl", TOO_LARGE),
    ];
    for (source, why) in cases {
        let scenario = inline_scenario(
            &path,
            &format!("description: d\nseed: 1\nresume B from \"{source}\"\nturn B\n"),
        );
        let result = within(20, source, move || {
            sim::run(&scenario, &RunOptions::default())
                .map(|r| r.verdict())
                .map_err(|e| e.to_string())
        });
        let full = dir.path().join(source);
        let expected =
            format!("{}:3: cannot read rollout {}: {why}", path.display(), full.display());
        assert_eq!(result, Err(expected));
    }
}

/// The `files` store reads its own rollouts the same way: a thread's file replaced by a FIFO, a
/// directory or a larger file gives an error naming the file and why, at once.
#[cfg(unix)]
#[test]
fn the_files_store_reads_only_a_regular_rollout_file_within_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = FileStore::in_dir(dir.path());
    store.append("A", b"{}\n").expect("append");
    let file = dir.path().join("A.jsonl");
    // What puts something else than a small regular file at the thread's path.
    type Replace = fn(&Path);
    let replacements: [(&str, Replace); 3] = [
        ("it is a FIFO, not a regular file", mkfifo),
        ("it is a directory, not a regular file", |p| std::fs::create_dir(p).expect("a folder")),
        (TOO_LARGE, oversized_file),
    ];
    for (why, replace) in replacements {
        if file.is_dir() {
            std::fs::remove_dir(&file).expect("remove the folder");
        } else {
            std::fs::remove_file(&file).expect("remove the file");
        }
        replace(&file);
        let (back, result) = within(20, why, move || {
            let result = store.read("A").map_err(|e| e.to_string());
            (store, result)
        });
        store = back;
        assert_eq!(result, Err(format!("{}: {why}", file.display())));
    }
}

/// Durations the parser accepts but no run can honour: a TTL past the year 9999 is sent as the last
/// instant RFC 3339 can write (it used to panic the backend model), and `advance` cannot take a run
/// past 1000 years of virtual time (past the year 9999, timestamps would stop being RFC 3339 and
/// the client would look like it broke the protocol).
#[test]
fn absurd_durations_neither_panic_nor_break_timestamps() {
    let path = fixture("absurd.scn");
    let longest = "213503982334d"; // u64::MAX milliseconds, in days
    let ttl = inline_scenario(
        &path,
        &format!(
            "description: d\nseed: 1\nidentity_ttl: {longest}\nidentity: warm\nstart A\nsettle\n\
             turn A\nexpect task A current\n"
        ),
    );
    for transport in [TransportKind::Memory, TransportKind::Http] {
        let report = run_with(&ttl, &RunOptions { transport, ..RunOptions::default() });
        assert!(report.passed(), "{}", report.verdict());
        assert!(report
            .tally
            .timeline()
            .iter()
            .any(|l| l.ends_with(", expires 9999-12-31T23:59:59Z")));
    }
    let message =
        "this advance would take the run past 365000d of virtual time, the most a run may \
                   cover: advance less";
    for (steps, line) in
        [(format!("advance {longest}"), 4), ("advance 365000d\nturn A\nadvance 1ms".to_owned(), 6)]
    {
        let scenario =
            inline_scenario(&path, &format!("description: d\nseed: 1\nstart A\n{steps}\n"));
        let error = sim::run(&scenario, &RunOptions::default()).unwrap_err();
        assert_eq!(error.to_string(), format!("{}:{line}: {message}", path.display()));
    }
}

/// Spec section 2: every call has a 15 s timeout. A latency range slower than that does not make
/// the client wait: the call times out at 15 s, over both transports.
#[test]
fn spec2_an_answer_slower_than_the_timeout_is_a_timeout() {
    let scenario = inline_scenario(
        Path::new("slow.scn"),
        "description: d\nseed: 1\nlatency: 20s..30s\nstart A\nsettle\nturn A\nexpect requests model = 0\n",
    );
    let biscuit = format!("{BASE}/authenticate_app_v2");
    for transport in [TransportKind::Memory, TransportKind::Http] {
        let report = run_with(&scenario, &RunOptions { transport, ..RunOptions::default() });
        assert!(report.passed(), "{}", report.verdict());
        assert_eq!(
            error_events(&report),
            [
                format!(
                    "A: {START_ERROR}failed to send agent identity biscuit request to {biscuit}"
                ),
                format!(
                    "A: {TURN_ERROR}failed to send agent identity biscuit request to {biscuit}"
                ),
            ]
        );
        // The turn waits one 15 s timeout, nothing longer. (The late answers still arrive
        // afterwards, and the core ignores them.)
        let at = |kind: &str| -> u64 {
            let line = report.tally.events.iter().find(|e| e.contains(kind)).expect(kind);
            let clock = line.split_whitespace().next().expect("a clock");
            let parts: Vec<f64> = clock
                .trim_start_matches('+')
                .split(':')
                .map(|p| p.parse().expect("digits"))
                .collect();
            ((parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]) * 1000.0).round() as u64
        };
        assert_eq!(at("turn_complete") - at("task_started"), 15_000, "{:?}", report.tally.events);
        assert!(report.tally.marks.contains_key(agentsim_core::marks::STALE_RESPONSE_IGNORED));
    }
}

#[test]
fn a_scripted_2xx_the_reference_model_cannot_read_is_said_in_the_timeline() {
    // A hand-written 2xx body on a registration may well be accepted by a client: the oracle
    // cannot predict from it, so it stops predicting, says so, and the run goes on.
    let scenario = inline_scenario(
        Path::new("scripted_ok.scn"),
        "description: d\nseed: 1\nfault task_register 1 status=200 body=\"{}\"\nstart A\nsettle\nturn A\n",
    );
    let report = run_with(&scenario, &RunOptions::default());
    assert!(report.passed(), "{}", report.verdict());
    let timeline = report.tally.timeline();
    let notes: Vec<&String> =
        timeline.iter().filter(|l| l.contains("reference model stops")).collect();
    assert_eq!(notes.len(), 1, "{timeline:#?}");
    assert!(notes[0].contains("scripted 2xx"), "{}", notes[0]);
}

// ---- damaged rollout files ---------------------------------------------------------------------

/// The lines a scan must skip: (1-based line, reason).
type Skips<'a> = &'a [(usize, &'a str)];

/// One damaged rollout: what the scan must report, then a resume through the simulator.
struct DamagedRollout<'a> {
    file: &'a str,
    bytes: &'a [u8],
    lines: usize,
    skipped: Skips<'a>,
    /// The line of the last well-formed `session_state`.
    last_state_line: Option<usize>,
}

impl DamagedRollout<'_> {
    /// The scan reports exactly the expected lines and reasons (rule 15) and finds the expected
    /// last `session_state`; resuming the file in a scenario (memory and real-file stores) skips
    /// and reports the same lines, keeps every byte of the file, and converges on the next turn.
    #[track_caller]
    fn check(&self, dir: &Path) {
        let file = self.file;
        let found = scan(self.bytes);
        let skipped: Vec<SkippedLine> = self
            .skipped
            .iter()
            .map(|(line, reason)| SkippedLine {
                line: *line,
                torn: reason.starts_with("torn final line"),
                reason: (*reason).to_owned(),
            })
            .collect();
        assert_eq!(found.skipped, skipped, "{file}: skipped lines");
        assert_eq!(found.lines, self.lines, "{file}: lines");
        assert_eq!(found.last_state.map(|s: LastState| s.line), self.last_state_line, "{file}");

        let scenario = inline_scenario(
            &dir.join(format!("resume_{}.scn", file.replace('.', "_"))),
            &format!(
                "description: resume a damaged rollout\nseed: 11\nresume A from \"{file}\"\n\
                 turn A \"after the damage\"\nexpect task A current\nexpect events A error = 0\n"
            ),
        );
        let mut snapshots = Vec::new();
        for store in [StoreKind::Memory, StoreKind::Files] {
            let options = RunOptions { store, ..RunOptions::default() };
            let report = run_with(&scenario, &options);
            assert!(report.passed(), "{file} ({store:?}): {}", report.verdict());
            let timeline = report.tally.timeline();
            let notes: Vec<&String> =
                timeline.iter().filter(|l| l.contains("resume skipped line")).collect();
            assert_eq!(notes.len(), self.skipped.len(), "{file}: {notes:?}");
            for (note, (line, reason)) in notes.iter().zip(self.skipped) {
                assert!(
                    note.ends_with(&format!("A   resume skipped line {line}: {reason}")),
                    "{file}: {note:?} does not report line {line}: {reason}"
                );
            }
            assert!(
                report.rollouts["A"].starts_with(self.bytes),
                "{file}: the resumed rollout lost bytes of the file"
            );
            snapshots.push(report.snapshot());
        }
        if let Some(difference) = first_difference(&snapshots[0], &snapshots[1]) {
            panic!("{file}: memory and real-file stores differ at {difference}");
        }
    }
}

const TS: &str = r#""timestamp":"2026-04-18T13:00:00.000Z""#;

fn line(kind: &str, payload: &str) -> String {
    format!("{{{TS},\"type\":\"{kind}\",\"payload\":{payload}}}\n")
}

const OLD_TASK: &str = r#"{"agent_task":{"agent_runtime_id":"agent-old1","task_id":"task_old1","registered_at":"2026-04-18T13:00:00Z"}}"#;

/// The committed fixtures in `tests/fixtures/rollouts/`.
#[test]
fn rule15_damaged_rollout_fixtures_are_skipped_line_by_line_and_the_rest_is_used() {
    let cases: [(&str, usize, Skips, Option<usize>); 6] = [
        (
            "unknown_types.jsonl",
            7,
            &[
                (3, "unknown type \"mystery\""),
                (5, "no string \"type\""),
                (6, "unknown type \"Session_State\""),
            ],
            Some(2),
        ),
        (
            "not_json.jsonl",
            9,
            &[
                (2, "not JSON: expected ident at line 1 column 2"),
                (3, "not JSON: EOF while parsing an object at line 1 column 91"),
                (4, "not a JSON object"),
                (5, "no string \"type\""),
                (6, "not a JSON object"),
                (7, "no string \"timestamp\""),
                (8, "invalid RFC 3339 timestamp \"yesterday\": too short"),
            ],
            Some(1),
        ),
        (
            "malformed_tasks.jsonl",
            8,
            &[
                (2, "malformed agent_task: missing field `task_id`"),
                (3, "malformed agent_task: unknown field `account_id`, expected one of `agent_runtime_id`, `task_id`, `registered_at`"),
                (4, "malformed agent_task: empty id"),
                (5, "malformed agent_task: invalid type: integer `7`, expected a string"),
                (6, "malformed agent_task: invalid type: string \"task_old2\", expected struct AgentTask"),
                (7, "session_state payload is not an object"),
                (8, "session_state without payload"),
            ],
            Some(1),
        ),
        (
            "torn_final_line.jsonl",
            3,
            &[(3, "torn final line (not JSON: EOF while parsing a string at line 1 column 137)")],
            Some(1),
        ),
        (
            "blank_lines.jsonl",
            6,
            &[(2, "blank line"), (3, "blank line"), (4, "blank line"), (6, "blank line")],
            Some(1),
        ),
        ("empty.jsonl", 0, &[], None),
    ];
    let dir = fixture("rollouts");
    for (file, lines, skipped, last_state_line) in cases {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        DamagedRollout { file, bytes: &bytes, lines, skipped, last_state_line }.check(&dir);
    }
}

/// Rollouts whose bytes a text fixture cannot hold reliably (line endings, invalid UTF-8, NUL
/// bytes) or should not hold (5 MB lines), written to a temporary folder.
#[test]
fn rule15_crlf_invalid_utf8_nul_and_huge_lines_never_panic_and_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let huge_text = "x".repeat(5 * 1024 * 1024);
    let crlf = std::fs::read_to_string(fixture("rollouts/unknown_types.jsonl"))
        .expect("fixture")
        .replace('\n', "\r\n");
    let mut invalid_utf8 = line("session_state", OLD_TASK).into_bytes();
    invalid_utf8.extend_from_slice(b"\xff\xfe\n");
    invalid_utf8.extend_from_slice(
        format!("{{{TS},\"type\":\"event_msg\",\"payload\":{{\"message\":\"caf").as_bytes(),
    );
    invalid_utf8.extend_from_slice(b"\xe9\"}}\n");
    invalid_utf8.extend_from_slice(line("session_state", r#"{"agent_task":null}"#).as_bytes());
    let nul = [line("session_state", OLD_TASK).as_bytes(), b"\0\0\0\n", b"\0"].concat();
    let huge_valid = [
        line("session_state", OLD_TASK),
        line("event_msg", &format!("{{\"type\":\"user_message\",\"message\":\"{huge_text}\"}}")),
        line("session_state", r#"{"agent_task":null}"#),
    ]
    .concat()
    .into_bytes();
    let huge_garbage = [line("session_state", OLD_TASK), huge_text.clone(), "\n".into()].concat();
    let huge_torn = [line("session_state", OLD_TASK), format!("{{\"a\":\"{huge_text}")].concat();

    let (crlf, huge_garbage, huge_torn) =
        (crlf.into_bytes(), huge_garbage.into_bytes(), huge_torn.into_bytes());
    let case = |file, bytes, lines, skipped, last_state_line| DamagedRollout {
        file,
        bytes,
        lines,
        skipped,
        last_state_line,
    };
    let cases = [
        case(
            "crlf.jsonl",
            &crlf,
            7,
            &[
                (3, "unknown type \"mystery\""),
                (5, "no string \"type\""),
                (6, "unknown type \"Session_State\""),
            ],
            Some(2),
        ),
        case(
            "invalid_utf8.jsonl",
            &invalid_utf8,
            4,
            &[(2, "not UTF-8 (byte 0)"), (3, "not UTF-8 (byte 84)")],
            Some(4),
        ),
        case(
            "nul.jsonl",
            &nul,
            3,
            &[
                (2, "not JSON: expected value at line 1 column 1"),
                (3, "torn final line (not JSON: expected value at line 1 column 1)"),
            ],
            Some(1),
        ),
        case("huge_valid_line.jsonl", &huge_valid, 3, &[], Some(3)),
        case(
            "huge_garbage_line.jsonl",
            &huge_garbage,
            2,
            &[(2, "not JSON: expected value at line 1 column 1")],
            Some(1),
        ),
        case(
            "huge_torn_line.jsonl",
            &huge_torn,
            2,
            &[(
                2,
                "torn final line (not JSON: EOF while parsing a string at line 1 column 5242886)",
            )],
            Some(1),
        ),
        case(
            "only_newlines.jsonl",
            b"\n\n\n",
            3,
            &[(1, "blank line"), (2, "blank line"), (3, "blank line")],
            None,
        ),
    ];
    for rollout in &cases {
        std::fs::write(dir.path().join(rollout.file), rollout.bytes).expect("write the rollout");
        rollout.check(dir.path());
    }
}

// ---- garbage from the backend ------------------------------------------------------------------

const BASE: &str = "http://backend.invalid";
const START_ERROR: &str =
    "Agent identity registration failed while `features.use_agent_identity` is enabled: ";
const TURN_ERROR: &str = "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: ";

/// Which call misbehaves, and how the scenario reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The biscuit of the identity registration at session start.
    IdentityBiscuit,
    /// The biscuit of a turn's task registration (the identity is warm).
    TaskBiscuit,
    IdentityRegister,
    TaskRegister,
    Model,
}

impl Target {
    const ALL: [Target; 5] = [
        Target::IdentityBiscuit,
        Target::TaskBiscuit,
        Target::IdentityRegister,
        Target::TaskRegister,
        Target::Model,
    ];

    /// A scenario in which the target call fails once where it is visible, then succeeds; every
    /// run ends with a current task.
    fn scenario(self, fault: &str) -> String {
        let body = match self {
            Target::IdentityBiscuit => {
                format!("fault biscuit 1 {fault}\nstart A\nsettle\nturn A\n")
            }
            Target::TaskBiscuit => {
                format!("identity: warm\nfault biscuit * {fault}\nstart A\nsettle\nturn A\nheal\nturn A\n")
            }
            Target::IdentityRegister => {
                format!("fault identity_register 1 {fault}\nstart A\nsettle\nturn A\n")
            }
            Target::TaskRegister => {
                format!("fault task_register * {fault}\nstart A\nsettle\nturn A\nheal\nturn A\n")
            }
            Target::Model => format!("fault model 1 {fault}\nstart A\nsettle\nturn A\nturn A\n"),
        };
        format!("description: garbage from the backend\nseed: 21\n{body}expect task A current\n")
    }

    /// The error event the scenario must show, given the attempt's error text, or none.
    fn event(self, error: Option<String>) -> Vec<String> {
        let Some(error) = error else { return vec![] };
        vec![match self {
            Target::IdentityBiscuit | Target::IdentityRegister => format!("{START_ERROR}{error}"),
            Target::TaskBiscuit | Target::TaskRegister => format!("{TURN_ERROR}{error}"),
            Target::Model => error,
        }]
    }

    /// The error of the failed attempt for `fault`, exactly as spec section 2 words it; `None`
    /// when the fault does not make the call fail (the client does not read what it mangles).
    fn error(self, fault: &Fault, task_url: &str) -> Option<String> {
        let biscuit_url = format!("{BASE}/authenticate_app_v2");
        let identity_url = format!("{BASE}/v1/agent/register");
        let (status_prefix, url) = match self {
            Target::IdentityBiscuit | Target::TaskBiscuit => {
                ("agent identity biscuit minting failed", biscuit_url.clone())
            }
            Target::IdentityRegister => {
                ("agent identity registration failed", identity_url.clone())
            }
            Target::TaskRegister => ("agent task registration failed", task_url.to_owned()),
            Target::Model => ("model request failed", String::new()),
        };
        let parse = match self {
            Target::IdentityBiscuit | Target::TaskBiscuit | Target::Model => None,
            Target::IdentityRegister => {
                Some(format!("failed to parse agent identity response from {identity_url}"))
            }
            Target::TaskRegister => {
                Some(format!("failed to parse agent task response from {task_url}"))
            }
        };
        match fault {
            Fault::Status { code, shown_body, .. } if self == Target::Model => {
                Some(format!("model request failed with status {code}: {shown_body}"))
            }
            Fault::Status { code, shown_body, .. } => {
                Some(format!("{status_prefix} with status {code} from {url}: {shown_body}"))
            }
            Fault::Plain("timeout" | "reset") => Some(match self {
                Target::IdentityBiscuit | Target::TaskBiscuit => {
                    format!("failed to send agent identity biscuit request to {biscuit_url}")
                }
                Target::IdentityRegister => {
                    format!("failed to send agent identity registration request to {identity_url}")
                }
                Target::TaskRegister => format!("failed to send agent task registration request to {task_url}"),
                Target::Model => format!("model request failed: failed to send model request to {BASE}/v1/responses"),
            }),
            Fault::Plain("bad_base64") if self == Target::TaskRegister => {
                Some("encrypted task id is not valid base64".into())
            }
            Fault::Plain("wrong_key_box") if self == Target::TaskRegister => {
                Some("failed to decrypt encrypted task id".into())
            }
            Fault::Plain("non_utf8_plaintext") if self == Target::TaskRegister => {
                Some("decrypted task id is not valid UTF-8".into())
            }
            Fault::Plain("missing_biscuit_header" | "non_utf8_biscuit_header")
                if matches!(self, Target::IdentityBiscuit | Target::TaskBiscuit) =>
            {
                Some(format!("agent identity biscuit response from {biscuit_url} has no valid x-openai-authorization header"))
            }
            // Every other 2xx: a body the client cannot parse, where it reads one.
            Fault::Plain(_) => parse,
        }
    }
}

/// A fault as written in a scenario, with what the client shows of it.
#[derive(Clone, Debug)]
enum Fault {
    Status { code: u16, written: String, shown_body: String },
    Plain(&'static str),
}

impl Fault {
    fn text(&self) -> String {
        match self {
            Fault::Status { written, .. } => written.clone(),
            Fault::Plain(name) => (*name).to_owned(),
        }
    }
}

/// Every fault kind, and statuses of every class: 1xx, 3xx, 4xx and 5xx, with and without a body,
/// and a body longer than the 512 characters an error message keeps.
fn faults() -> Vec<Fault> {
    let injected = r#"{"error":"injected"}"#;
    let long = "x".repeat(600);
    let status = |code: u16, body: Option<&str>, shown: &str| Fault::Status {
        code,
        written: match body {
            Some(b) => format!("status={code} body=\"{b}\""),
            None => format!("status={code}"),
        },
        shown_body: shown.to_owned(),
    };
    let mut faults = vec![
        status(102, None, injected),
        status(302, Some("moved"), "moved"),
        status(400, Some(""), ""),
        status(404, None, injected),
        status(429, Some("slow down"), "slow down"),
        status(500, Some(&long), &format!("{}…", &long[..512])),
        status(503, None, injected),
    ];
    faults.extend(sim::fault::FaultKind::PLAIN_NAMES.iter().map(|name| Fault::Plain(name)));
    faults
}

/// The URL of the last task registration the run sent (its runtime is drawn from the seed).
fn last_task_url(report: &RunReport) -> String {
    report
        .tally
        .requests
        .iter()
        .rev()
        .filter_map(|l| l.split_whitespace().nth(3))
        .find(|path| wire::runtime_of_task_register_path(path).is_some())
        .map_or_else(
            || format!("{BASE}{}", wire::task_register_path("<none>")),
            |p| format!("{BASE}{p}"),
        )
}

fn error_events(report: &RunReport) -> Vec<String> {
    report
        .tally
        .event_values
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error { message, .. } => Some(format!("{}: {message}", e.thread)),
            _ => None,
        })
        .collect()
}

#[track_caller]
fn check_garbage(target: Target, fault: &Fault, transport: TransportKind) -> RunReport {
    let text = target.scenario(&fault.text());
    let scenario = inline_scenario(Path::new("garbage.scn"), &text);
    let report = run_with(&scenario, &RunOptions { transport, ..RunOptions::default() });
    let what = format!("{target:?} with {} over {}", fault.text(), transport.name());
    assert!(
        report.passed(),
        "{what}: {}\n{}",
        report.verdict(),
        report.failed_expectations.join("\n")
    );
    let expected: Vec<String> = target
        .event(target.error(fault, &last_task_url(&report)))
        .into_iter()
        .map(|m| format!("A: {m}"))
        .collect();
    assert_eq!(error_events(&report), expected, "{what}");
    report
}

/// Spec section 2: every garbage answer of every endpoint fails the attempt with the exact error
/// text, on the thread that made it, and the next attempt recovers. In-process transport, where a
/// status is delivered exactly as the backend model chose it (1xx included).
#[test]
fn spec2_garbage_from_every_endpoint_gives_the_exact_error_in_process() {
    for target in Target::ALL {
        for fault in faults() {
            check_garbage(target, &fault, TransportKind::Memory);
        }
    }
}

/// The same over real HTTP, except the 1xx statuses (see the next test).
#[test]
fn spec2_garbage_from_every_endpoint_gives_the_exact_error_over_http() {
    for target in Target::ALL {
        for fault in faults() {
            if matches!(fault, Fault::Status { code: 100..=199, .. }) {
                continue;
            }
            check_garbage(target, &fault, TransportKind::Http);
        }
    }
}

/// HTTP/1.1 cannot end an exchange with a 1xx status: hyper's server either answers 500 or closes
/// the connection, depending on a race (this test found both). The HTTP transport therefore refuses
/// a 1xx fault, every time, as a harness failure that says what to do; the in-process transport
/// delivers it (see `spec2_garbage_from_every_endpoint_gives_the_exact_error_in_process`).
#[test]
fn informational_statuses_over_http_are_refused_the_same_way_every_time() {
    for code in [100, 101, 102, 103, 199] {
        let text = Target::IdentityBiscuit.scenario(&format!("status={code}"));
        let scenario = inline_scenario(Path::new("informational.scn"), &text);
        for _ in 0..3 {
            let options = RunOptions { transport: TransportKind::Http, ..RunOptions::default() };
            let report = run_with(&scenario, &options);
            let violation = report.violation.as_ref().expect("a 1xx over HTTP stops the run");
            assert_eq!(
                violation.invariant,
                Invariant::Harness,
                "{code}: a harness failure, not the lifecycle's"
            );
            assert_eq!(
                violation.message,
                format!(
                    "transport failed on GET /authenticate_app_v2: status \
                     {code} cannot be sent as a final HTTP response (1xx statuses are \
                     informational): run this scenario with the memory transport"
                )
            );
            assert_eq!(error_events(&report), Vec::<String>::new(), "{code}: nothing reached A");
        }
    }
}

/// A 401 `identity_expired` at task registration under `reacquire` registers a new identity and
/// retries once within the same ensure; when the retry is refused too, the turn's one error names
/// the new runtime's URL.
#[test]
fn spec2_identity_expired_twice_fails_the_turn_once_after_one_reacquire() {
    let body = r#"{\"error\":\"identity_expired\"}"#;
    for transport in [TransportKind::Memory, TransportKind::Http] {
        let fault = Fault::Status {
            code: 401,
            written: format!("status=401 body=\"{body}\""),
            shown_body: r#"{"error":"identity_expired"}"#.into(),
        };
        let report = check_garbage(Target::TaskRegister, &fault, transport);
        assert!(report.tally.marks.contains_key("refused_identity_reacquired"));
        assert_eq!(report.tally.request_counts[&sim::fault::Endpoint::IdentityRegister], 3);
    }
}

/// A scenario path that is a folder, or names no file: the CLI's resolve step reports it; here the
/// library call, which never panics on it.
#[test]
fn loading_a_folder_or_a_missing_file_is_an_error_at_line_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    for path in [dir.path().to_path_buf(), dir.path().join("missing.scn")] {
        let error = sim::scenario::load(&path).unwrap_err();
        let io = std::fs::read(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{}:1:1: cannot read the scenario file: {io}", path.display())
        );
    }
}
