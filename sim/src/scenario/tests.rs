use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::fault::{CallMatch, FaultKind};

/// The steps that reach the edges: `advance to_expiry`, `from_thread`, `damage`, `on`.
mod edges;

const PATH: &str = "scenarios/t.scn";

#[track_caller]
fn check(text: &str) -> Scenario {
    parse("t", Path::new(PATH), text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// Parses `text` and checks that it fails with `expected`, written `line:column: message`.
#[track_caller]
fn check_error(text: &str, expected: &str) {
    match parse("t", Path::new(PATH), text) {
        Ok(scenario) => panic!("expected the error {expected:?}, parsed {scenario:#?}"),
        Err(e) => {
            assert_eq!(e.file, Path::new(PATH));
            assert_eq!(format!("{}:{}: {}", e.line, e.column, e.message), expected);
        }
    }
}

/// A scenario whose header is `header` and whose only step is `start A`.
#[track_caller]
fn check_config(header: &str) -> ScenarioConfig {
    check(&format!("description: d\n{header}\nstart A\n")).config
}

/// The steps of a scenario made of a description and `steps`.
#[track_caller]
fn check_steps(steps: &str) -> Vec<Step> {
    let scenario = check(&format!("description: d\n{steps}"));
    scenario.steps.into_iter().map(|s| s.value).collect()
}

/// The one expectation in `expect`, on a scenario with threads `A` and `B`.
#[track_caller]
fn check_expect(expect: &str) -> Expect {
    let scenario = check(&format!("description: d\nstart A\nstart B\n{expect}\n"));
    let mut expects = scenario.expects;
    assert_eq!(expects.len(), 1);
    expects.remove(0).value
}

fn start(thread: &str) -> Step {
    Step::Start { thread: thread.into() }
}

fn chatgpt(account: &str, user: Option<&str>) -> AuthSpec {
    AuthSpec::ChatGpt { account: account.into(), user: user.map(Into::into) }
}

/// The scenario with every line number set to 0, for comparing a value with its reparsed text.
fn without_lines(mut scenario: Scenario) -> Scenario {
    scenario.faults.iter_mut().for_each(|f| f.line = 0);
    scenario.steps.iter_mut().for_each(|s| s.line = 0);
    scenario.expects.iter_mut().for_each(|e| e.line = 0);
    scenario
}

#[test]
fn minimal_scenario_has_the_defaults() {
    let scenario = check("description: the smallest scenario\nstart A\n");
    assert_eq!(scenario.name, "t");
    assert_eq!(scenario.path, Path::new(PATH));
    assert_eq!(scenario.description, "the smallest scenario");
    assert_eq!(scenario.config, ScenarioConfig::default());
    assert_eq!(scenario.config.auth, chatgpt("acct-1", Some("user-1")));
    assert_eq!(scenario.config.latency_ms, (5, 250));
    assert!(scenario.config.use_agent_identity && scenario.config.persist_task);
    assert_eq!(scenario.steps, vec![Located { line: 2, value: start("A") }]);
    assert!(scenario.faults.is_empty() && scenario.expects.is_empty());
}

#[test]
fn comments_blank_lines_indentation_crlf_and_bom_are_ignored() {
    let text =
        "\u{feff}# a comment\r\n\r\n  description: d # trailing comment\r\n\tseed: 7 # why\r\n\
                \n   # indented comment\nstart A # go\n";
    let scenario = check(text);
    assert_eq!(scenario.description, "d");
    assert_eq!(scenario.config.seed, Some(7));
    assert_eq!(scenario.steps, vec![Located { line: 7, value: start("A") }]);
}

#[test]
fn description_is_free_text_or_one_string() {
    let description = |line: &str| check(&format!("{line}\nstart A")).description;
    assert_eq!(description("description:  spaces   inside  \t"), "spaces   inside");
    assert_eq!(description("description:a \"quoted\" word"), "a \"quoted\" word");
    assert_eq!(description("description: issue #12"), "issue");
    assert_eq!(description("description: \"issue #12\\n\\t\\\\\" # why"), "issue #12\n\t\\");
    assert_eq!(description("description: \" padded \""), " padded ");
}

#[test]
fn header_keys() {
    let config = check_config(
        "seed: 18446744073709551615\nexpiry: as_shipped\npersist_task: false\nflag: off\n\
         identity_ttl: 1h30m\nidentity: warm\nauth: api_key\nlatency: 0ms..2s\n\
         fault_rate: model=1000 biscuit=0\nfault_kinds: timeout status=503 body=\"x\" reset",
    );
    let expected = ScenarioConfig {
        seed: Some(u64::MAX),
        expiry: ExpiryPolicy::AsShipped,
        persist_task: false,
        use_agent_identity: false,
        identity_ttl_ms: Some(5_400_000),
        identity: InitialIdentity::Warm,
        auth: AuthSpec::ApiKey,
        latency_ms: (0, 2_000),
        random_faults: RandomFaults {
            rate_per_mille: BTreeMap::from([(Endpoint::Model, 1000), (Endpoint::Biscuit, 0)]),
            kinds: vec![
                FaultKind::Timeout,
                FaultKind::Status { status: 503, body: Some("x".into()) },
                FaultKind::Reset,
            ],
        },
    };
    assert_eq!(config, expected);

    assert_eq!(check_config("expiry: reacquire").expiry, ExpiryPolicy::Reacquire);
    assert!(check_config("persist_task: true").persist_task);
    assert!(check_config("flag: on").use_agent_identity);
    assert_eq!(check_config("identity: none").identity, InitialIdentity::None);
    assert_eq!(check_config("seed:0").seed, Some(0));
}

#[test]
fn header_auth() {
    let auth = |value: &str| check_config(&format!("auth: {value}")).auth;
    assert_eq!(auth("none"), AuthSpec::None);
    assert_eq!(auth("api_key"), AuthSpec::ApiKey);
    assert_eq!(auth("chatgpt account=acct-2"), chatgpt("acct-2", None));
    assert_eq!(auth("chatgpt account=a.b@c_d user=u-1"), chatgpt("a.b@c_d", Some("u-1")));
    assert_eq!(auth("chatgpt user=u account=a"), chatgpt("a", Some("u")));
}

#[test]
fn durations() {
    let ttl = |value: &str| check_config(&format!("identity_ttl: {value}")).identity_ttl_ms;
    assert_eq!(ttl("250ms"), Some(250));
    assert_eq!(ttl("15s"), Some(15_000));
    assert_eq!(ttl("2m"), Some(120_000));
    assert_eq!(ttl("1h"), Some(3_600_000));
    assert_eq!(ttl("1d"), Some(86_400_000));
    assert_eq!(ttl("1d2h3m4s5ms"), Some(93_784_005));
    assert_eq!(ttl("1m1ms"), Some(60_001));
    assert_eq!(ttl("0s"), Some(0));
    assert_eq!(check_steps("advance 1s500ms\n"), vec![Step::Advance { ms: 1_500 }]);
}

#[test]
fn faults() {
    let scenario = check(
        "description: d\n\
         fault biscuit 3 timeout\n\
         fault identity_register 2..4 status=503\n\
         fault task_register 5.. status=401 body=\"{\\\"error\\\":\\\"identity_expired\\\"}\"\n\
         fault model * reset\n\
         fault model 1..1 status=200\n\
         start A\n",
    )
    .faults;
    let rule = |endpoint, calls, kind| FaultRule { endpoint, calls, kind };
    let values: Vec<FaultRule> = scenario.iter().map(|f| f.value.clone()).collect();
    assert_eq!(scenario.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
    assert_eq!(
        values[..4],
        [
            rule(Endpoint::Biscuit, CallMatch::Nth(3), FaultKind::Timeout),
            rule(
                Endpoint::IdentityRegister,
                CallMatch::Range { from: 2, to: 4 },
                FaultKind::Status { status: 503, body: None }
            ),
            rule(
                Endpoint::TaskRegister,
                CallMatch::From(5),
                FaultKind::Status {
                    status: 401,
                    body: Some("{\"error\":\"identity_expired\"}".into())
                }
            ),
            rule(Endpoint::Model, CallMatch::Every, FaultKind::Reset),
        ]
    );
    assert_eq!(
        values[4],
        rule(
            Endpoint::Model,
            CallMatch::Range { from: 1, to: 1 },
            FaultKind::Status { status: 200, body: None }
        )
    );
}

#[test]
fn every_plain_fault_kind_parses() {
    for name in FaultKind::PLAIN_NAMES {
        let scenario = check(&format!("description: d\nfault model 1 {name}\nstart A\n"));
        assert_eq!(Some(scenario.faults[0].value.kind.clone()), FaultKind::from_plain_name(name));
    }
}

#[test]
fn steps() {
    let steps = check_steps(
        "start A\n\
         resume A\n\
         resume B from \"rollouts/b.jsonl\"\n\
         resume A from \"a.jsonl\"\n\
         fork C from B\n\
         turn A\n\
         turn B \"hi \\\"there\\\"\"\n\
         submit C\n\
         submit C \"\"\n\
         advance 30s\n\
         settle\n\
         rotate_identity\n\
         expire_identity\n\
         revoke_identity\n\
         auth chatgpt account=acct-2 user=u\n\
         auth api_key\n\
         auth none\n\
         crash\n\
         crash on_append A\n\
         crash on_response task_register\n\
         restart\n\
         heal\n",
    );
    let turn = |thread: &str, text: &str, wait| Step::Turn {
        thread: thread.into(),
        text: text.into(),
        wait,
    };
    assert_eq!(
        steps,
        vec![
            start("A"),
            Step::Resume { thread: "A".into(), from: ResumeSource::Own },
            Step::Resume {
                thread: "B".into(),
                from: ResumeSource::File(PathBuf::from("rollouts/b.jsonl"))
            },
            Step::Resume { thread: "A".into(), from: ResumeSource::File(PathBuf::from("a.jsonl")) },
            Step::Fork { child: "C".into(), parent: "B".into() },
            turn("A", "hello", true),
            turn("B", "hi \"there\"", true),
            turn("C", "hello", false),
            turn("C", "", false),
            Step::Advance { ms: 30_000 },
            Step::Settle,
            Step::RotateIdentity,
            Step::ExpireIdentity,
            Step::RevokeIdentity,
            Step::Auth(chatgpt("acct-2", Some("u"))),
            Step::Auth(AuthSpec::ApiKey),
            Step::Auth(AuthSpec::None),
            Step::Crash(CrashPoint::Now),
            Step::Crash(CrashPoint::OnAppend("A".into())),
            Step::Crash(CrashPoint::OnResponse(Endpoint::TaskRegister)),
            Step::Restart(ConfigChange::default()),
            Step::Heal,
        ]
    );
}

#[test]
fn steps_record_their_lines() {
    let scenario = check("description: d\n\nstart A\n# comment\nturn A\n");
    assert_eq!(scenario.steps.iter().map(|s| s.line).collect::<Vec<_>>(), vec![3, 5]);
}

#[test]
fn thread_names_are_in_order_of_introduction() {
    let scenario = check(
        "description: d\nstart b\nfork a from b\nresume z from \"z.jsonl\"\nrestart\nresume b\n\
         resume a from \"again.jsonl\"\nstart Main-1_x\n",
    );
    assert_eq!(scenario.thread_names(), ["b", "a", "z", "Main-1_x"]);
}

#[test]
fn resolve_joins_with_the_scenario_folder() {
    let scenario = check("description: d\nstart A\n");
    assert_eq!(scenario.resolve(Path::new("r/a.jsonl")), Path::new("scenarios/r/a.jsonl"));
    let bare = parse("t", Path::new("t.scn"), "description: d\nstart A\n").unwrap();
    assert_eq!(bare.resolve(Path::new("a.jsonl")), Path::new("a.jsonl"));
}

#[test]
fn expectations() {
    let thread = |name: &str| name.to_string();
    assert_eq!(
        check_expect("expect requests task_register >= 2"),
        Expect::Requests { endpoint: Endpoint::TaskRegister, cmp: Cmp::Ge, count: 2 }
    );
    assert_eq!(
        check_expect("expect events * error = 0"),
        Expect::Events { thread: None, kind: "error".into(), cmp: Cmp::Eq, count: 0 }
    );
    assert_eq!(
        check_expect("expect events B turn_complete < 3"),
        Expect::Events {
            thread: Some(thread("B")),
            kind: "turn_complete".into(),
            cmp: Cmp::Lt,
            count: 3
        }
    );
    assert_eq!(
        check_expect("expect event A \"Agent task registration failed\""),
        Expect::EventText {
            thread: thread("A"),
            contains: "Agent task registration failed".into()
        }
    );
    assert_eq!(
        check_expect("expect task A current"),
        Expect::Task { thread: thread("A"), state: TaskExpect::Current }
    );
    assert_eq!(
        check_expect("expect task B none"),
        Expect::Task { thread: thread("B"), state: TaskExpect::None }
    );
    for (word, state) in [
        ("task", LastStateExpect::Task),
        ("null", LastStateExpect::Null),
        ("absent", LastStateExpect::Absent),
    ] {
        assert_eq!(
            check_expect(&format!("expect last_state A {word}")),
            Expect::LastState { thread: thread("A"), state }
        );
    }
    assert_eq!(
        check_expect("expect session_state_lines A <= 1"),
        Expect::SessionStateLines { thread: thread("A"), cmp: Cmp::Le, count: 1 }
    );
    assert_eq!(
        check_expect("expect requests model > 0"),
        Expect::Requests { endpoint: Endpoint::Model, cmp: Cmp::Gt, count: 0 }
    );
    assert_eq!(
        check_expect("expect mark ensure_reused_cached_task"),
        Expect::Mark { name: "ensure_reused_cached_task".into() }
    );
    assert_eq!(
        check_expect("expect log \"reusing cached agent task\""),
        Expect::Log { contains: "reusing cached agent task".into() }
    );
    assert_eq!(
        check_expect("expect no_log \"private_key\""),
        Expect::NoLog { contains: "private_key".into() }
    );
    assert_eq!(check_expect("expect fail"), Expect::Fail);
}

#[test]
fn expectations_may_come_before_the_steps_that_introduce_their_threads() {
    let scenario = check("description: d\nexpect task A none\nexpect fail\nstart A\n");
    let lines: Vec<usize> = scenario.expects.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3]);
}

#[test]
fn cmp_holds_and_displays_as_its_symbol() {
    let table = [(Cmp::Eq, "=", [false, true, false]), (Cmp::Ge, ">=", [false, true, true])];
    let more = [
        (Cmp::Le, "<=", [true, true, false]),
        (Cmp::Gt, ">", [false, false, true]),
        (Cmp::Lt, "<", [true, false, false]),
    ];
    for (cmp, symbol, results) in table.into_iter().chain(more) {
        assert_eq!(cmp.to_string(), symbol);
        // `actual` 1, 2, 3 against `expected` 2.
        assert_eq!([1, 2, 3].map(|actual| cmp.holds(actual, 2)), results, "{cmp}");
    }
}

#[test]
fn to_text_is_canonical() {
    let scenario = check(
        "# messy but valid\n\
         fault model 2 status=500 body=\"a\\tb\"\n\
         description: \"shows #every \\\"form\\\"\"\n\
         expect fail\n\
         fault_kinds: huge_body\n\
         latency: 1000ms..60s\n\
         seed: 9\n\
         auth: chatgpt account=x\n\
         fault_rate: task_register=5 biscuit=7\n\
         flag: off\n\
         identity_ttl: 90m\n\
         persist_task: false\n\
         expiry: as_shipped\n\
         identity: warm\n\
         start A\n\
         turn A \"hello\"\n\
         submit A \"go\"\n\
         advance 86400001ms\n\
         resume A from \"x y.jsonl\"\n\
         expect events * error >= 1\n",
    );
    let expected = "\
description: \"shows #every \\\"form\\\"\"
seed: 9
expiry: as_shipped
persist_task: false
flag: off
identity_ttl: 1h30m
identity: warm
auth: chatgpt account=x
latency: 1s..1m
fault_rate: biscuit=7 task_register=5
fault_kinds: huge_body

fault model 2 status=500 body=\"a\\tb\"

start A
turn A
submit A \"go\"
advance 1d1ms
resume A from \"x y.jsonl\"

expect fail
expect events * error >= 1
";
    assert_eq!(scenario.to_text(), expected);
    assert_eq!(without_lines(check(expected)), without_lines(scenario));
}

#[test]
fn to_text_of_the_defaults_is_two_lines() {
    let scenario = check(
        "description: d\nauth: chatgpt account=acct-1 user=user-1\nlatency: 5ms..250ms\nstart A\n",
    );
    assert_eq!(scenario.to_text(), "description: d\n\nstart A\n");
}

#[test]
fn load_reads_a_file_and_names_it_after_the_stem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revoked_identity.scn");
    std::fs::write(&path, "description: d\nstart A\n").unwrap();
    let scenario = load(&path).unwrap();
    assert_eq!(scenario.name, "revoked_identity");
    assert_eq!(scenario.path, path);
    assert_eq!(scenario.resolve(Path::new("a.jsonl")), dir.path().join("a.jsonl"));
}

#[test]
fn load_reports_unreadable_files_at_the_start_and_non_utf8_bytes_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.scn");
    let error = load(&missing).unwrap_err();
    assert_eq!((error.file.as_path(), error.line, error.column), (missing.as_path(), 1, 1));
    assert!(error.message.starts_with("cannot read the scenario file: "), "{error}");

    let binary = dir.path().join("binary.scn");
    std::fs::write(&binary, b"description: d\n\xff\n").unwrap();
    let error = load(&binary).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:2:1: the file is not valid UTF-8 (at byte 15): save it as UTF-8",
            binary.display()
        )
    );
}

#[test]
fn error_display_names_file_line_and_column() {
    let error = parse("t", Path::new(PATH), "description: d\nstrat A\n").unwrap_err();
    assert!(
        error.to_string().starts_with("scenarios/t.scn:2:1: unknown step \"strat\""),
        "{error}"
    );
}

#[test]
fn the_format_guide_example_parses() {
    let guide = include_str!("../../../scenarios/FORMAT.md");
    let mut examples = 0;
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```scn" {
            let example: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let scenario = check(&example.join("\n"));
            assert_eq!(without_lines(check(&scenario.to_text())), without_lines(scenario));
            examples += 1;
        }
    }
    assert!(examples > 0, "FORMAT.md has no ```scn example");
}

// Errors, one test per kind of mistake. Columns count characters from 1.

#[test]
fn error_empty_scenario() {
    let expected =
        "1:1: empty scenario: a scenario needs a \"description:\" line and at least one step";
    check_error("", expected);
    check_error("# only a comment\n\n", expected);
    check_error("seed: 1\nexpect fail\n", expected);
}

#[test]
fn error_missing_description() {
    check_error(
        "seed: 1\nstart A\n",
        "1:1: missing \"description:\" line: add one at the top saying what this scenario \
         checks, e.g. \"description: a revoked identity is replaced on the next turn\"",
    );
}

#[test]
fn error_no_steps() {
    check_error(
        "# c\n  description: d\nexpect fail\n",
        "2:3: the scenario has no steps: add at least one, e.g. \"start A\"",
    );
}

#[test]
fn error_empty_description() {
    let expected = "the description is empty: say in a sentence what this scenario checks";
    check_error("description:   # nothing\nstart A", &format!("1:16: {expected}"));
    check_error("description: \"\"\nstart A", &format!("1:14: {expected}"));
    check_error(
        "description: \"a\" b\nstart A",
        "1:18: unexpected \"b\" at the end of the line: write description: \"<text>\"",
    );
}

#[test]
fn error_unknown_header_key() {
    check_error(
        "description: d\n sed: 1\nstart A",
        "2:2: unknown header key \"sed\": expected one of description, seed, expiry, \
         persist_task, flag, identity_ttl, identity, auth, latency, fault_rate, fault_kinds",
    );
}

#[test]
fn error_duplicate_header_key() {
    check_error(
        "description: d\nseed: 1\nseed: 2\nstart A",
        "3:1: duplicate header key \"seed\": it is already set on line 2; keep one",
    );
    check_error(
        "description: d\ndescription: e\nstart A",
        "2:1: duplicate header key \"description\": it is already set on line 1; keep one",
    );
}

#[test]
fn error_header_after_step() {
    check_error(
        "description: d\nstart A\nseed: 1\n",
        "3:1: header key \"seed\" must come before the first step",
    );
    check_error(
        "description: d\nstart A\nauth: none\n",
        "3:1: header key \"auth\" must come before the first step (to change auth during the \
         run, write the step without a colon: auth chatgpt account=<id>)",
    );
}

#[test]
fn error_bad_header_values() {
    let cases = [
        ("seed:", "2:6: expected a seed: write seed: <number>"),
        ("seed: x", "2:7: invalid seed \"x\": expected a whole number"),
        ("seed: -1", "2:7: the seed cannot be negative"),
        ("seed: +1", "2:7: invalid seed \"+1\": expected a whole number"),
        ("seed: 18446744073709551616", "2:7: the seed 18446744073709551616 is too large"),
        ("seed: 1 2", "2:9: unexpected \"2\" at the end of the line: write seed: <number>"),
        ("seed: \"1\"", "2:7: expected a seed, found the string \"1\": write seed: <number>"),
        ("expiry: never", "2:9: unknown expiry policy \"never\": expected one of reacquire, as_shipped"),
        ("persist_task: yes", "2:15: unknown value \"yes\": expected one of true, false"),
        ("flag: true", "2:7: unknown flag value \"true\": expected one of on, off"),
        ("identity: cold", "2:11: unknown initial identity \"cold\": expected one of none, warm"),
        ("latency: 5ms", "2:10: expected a range like 5ms..250ms, found \"5ms\""),
        ("latency: 5ms..1x", "2:15: invalid duration \"1x\": write a number and a unit (ms, s, m, h or d), e.g. 250ms, 15s or 1h30m"),
        ("latency: 2s..1s", "2:10: the latency range 2s..1s is empty: write the smaller duration first"),
        ("latency: -1s..1s", "2:10: durations cannot be negative"),
    ];
    for (header, expected) in cases {
        check_error(&format!("description: d\n{header}\nstart A"), expected);
    }
}

#[test]
fn error_bad_durations() {
    let invalid = |text: &str| {
        format!(
            "invalid duration \"{text}\": write a number and a unit (ms, s, m, h or d), e.g. \
             250ms, 15s or 1h30m"
        )
    };
    let cases = [
        ("-5s", "durations cannot be negative".to_string()),
        ("5", invalid("5")),
        ("s", invalid("s")),
        ("5x", invalid("5x")),
        ("1h30", invalid("1h30")),
        ("1mss", invalid("1mss")),
        ("1.5s", invalid("1.5s")),
        ("99999999999999999999ms", "the duration 99999999999999999999ms is too large".into()),
        ("18446744073709551615s", "the duration 18446744073709551615s is too large".into()),
    ];
    for (duration, message) in cases {
        check_error(
            &format!("description: d\nstart A\nadvance {duration}"),
            &format!("3:9: {message}"),
        );
    }
    check_error(
        "description: d\nstart A\nadvance",
        "3:8: expected a duration: write advance <duration> | advance to_expiry [<signed \
         duration>], e.g. advance 30s",
    );
}

#[test]
fn error_bad_auth() {
    let usage = "auth chatgpt account=<id> [user=<id>] | auth api_key | auth none";
    let cases = [
        ("auth", format!("2:5: expected an auth kind: write {usage}")),
        (
            "auth google",
            "2:6: unknown auth \"google\": expected one of chatgpt, api_key, none".into(),
        ),
        ("auth chatgpt", format!("2:13: expected account=<id>: write {usage}")),
        ("auth chatgpt user=u", format!("2:20: expected account=<id>: write {usage}")),
        (
            "auth chatgpt account=",
            "2:22: invalid account id \"\": use letters, digits, _, -, . and @".into(),
        ),
        (
            "auth chatgpt account=a user=b!",
            "2:29: invalid user id \"b!\": use letters, digits, _, -, . and @".into(),
        ),
        ("auth chatgpt account=a account=b", "2:24: the account id is given twice".into()),
        (
            "auth chatgpt acct=a",
            format!("2:14: expected account=<id> or user=<id>, found \"acct=a\": write {usage}"),
        ),
        (
            "auth api_key now",
            format!("2:14: unexpected \"now\" at the end of the line: write {usage}"),
        ),
    ];
    for (step, expected) in cases {
        check_error(&format!("description: d\n{step}"), &expected);
    }
    check_error(
        "description: d\nauth: chatgpt\nstart A",
        "2:14: expected account=<id>: write auth: chatgpt account=<id> [user=<id>] | auth: api_key | auth: none",
    );
}

#[test]
fn error_bad_random_faults() {
    let rate_usage = "fault_rate: <endpoint>=<per mille> ..., e.g. fault_rate: model=100";
    let cases = [
        ("fault_rate:", format!("2:12: expected an <endpoint>=<per mille> pair: write {rate_usage}")),
        ("fault_rate: model", format!("2:13: expected <endpoint>=<per mille>, found \"model\": write {rate_usage}")),
        ("fault_rate: modle=1", "2:13: unknown endpoint \"modle\": expected one of biscuit, identity_register, task_register, model".into()),
        ("fault_rate: model=1001", "2:19: the fault rate 1001 is above 1000: rates are in thousandths of calls".into()),
        ("fault_rate: model=99999999", "2:19: the fault rate 99999999 is above 1000: rates are in thousandths of calls".into()),
        ("fault_rate: model=x", "2:19: invalid fault rate \"x\": expected a whole number".into()),
        ("fault_rate: model=1 model=2", "2:21: the fault rate of model is given twice".into()),
        ("fault_kinds:", "2:13: expected a fault kind: write fault_kinds: <kind> ..., e.g. fault_kinds: timeout status=503".into()),
        ("fault_kinds: teapot", format!("2:14: unknown fault kind \"teapot\": expected status=<code> or one of {}", FaultKind::PLAIN_NAMES.join(", "))),
        ("fault_kinds: body=\"x\"", "2:14: body= is only allowed after status=<code>, e.g. status=500 body=\"oops\"".into()),
    ];
    for (header, expected) in cases {
        check_error(&format!("description: d\n{header}\nstart A"), &expected);
    }
    check_error(
        "description: d\nfault_rate: model=5\nstart A",
        "2:1: fault_rate needs a \"fault_kinds:\" line saying which faults to draw, e.g. \
         \"fault_kinds: timeout status=503\"",
    );
    check_error(
        "description: d\nfault_kinds: reset\nstart A",
        "2:1: fault_kinds needs a \"fault_rate:\" line saying how often each endpoint fails, \
         e.g. \"fault_rate: model=100\"",
    );
}

#[test]
fn error_bad_fault_lines() {
    let usage = "fault <endpoint> <calls> <kind> [body=\"...\"]";
    let calls = "write 3 (the third call), 2..4, 5.. (the fifth and later) or * (every call)";
    let cases = [
        ("fault", format!("2:6: expected an endpoint: write {usage}")),
        ("fault model", format!("2:12: expected which calls (3, 2..4, 5.. or *): write {usage}")),
        ("fault model 1", format!("2:14: expected a fault kind: write {usage}")),
        ("fault modle 1 reset", "2:7: unknown endpoint \"modle\": expected one of biscuit, identity_register, task_register, model".into()),
        ("fault model 0 reset", "2:13: calls count from 1: the first call is 1".into()),
        ("fault model 0.. reset", "2:13: calls count from 1: the first call is 1".into()),
        ("fault model 2..0 reset", "2:16: calls count from 1: the first call is 1".into()),
        ("fault model 4..2 reset", "2:13: the call range 4..2 is empty: write the smaller number first".into()),
        ("fault model ..2 reset", format!("2:13: invalid calls \"..2\": {calls}")),
        ("fault model -1 reset", format!("2:13: invalid calls \"-1\": {calls}")),
        ("fault model 1..2..3 reset", format!("2:13: invalid calls \"1..2..3\": {calls}")),
        ("fault model first reset", format!("2:13: invalid calls \"first\": {calls}")),
        ("fault model 4294967296 reset", "2:13: the call number 4294967296 is too large".into()),
        ("fault model 1 status=99", "2:22: status 99 is not an HTTP status: use 100 to 599".into()),
        ("fault model 1 status=600", "2:22: status 600 is not an HTTP status: use 100 to 599".into()),
        ("fault model 1 status=", "2:22: invalid status \"\": expected a whole number".into()),
        ("fault model 1 status=70000", "2:22: the status 70000 is too large".into()),
        ("fault model 1 timeout body=\"x\"", "2:23: body= is only allowed after status=<code>, e.g. status=500 body=\"oops\"".into()),
        ("fault model 1 status=500 body=x", "2:31: write the body as a quoted string: body=\"...\"".into()),
        ("fault model 1 status=500 body=", "2:31: write the body as a quoted string: body=\"...\"".into()),
        ("fault model 1 status=500 body= x", "2:32: write the body as a quoted string: body=\"...\"".into()),
        ("fault model 1 status=500 \"x\"", format!("2:26: unexpected the string \"x\" at the end of the line: write {usage}")),
        ("fault model 1 reset reset", format!("2:21: unexpected \"reset\" at the end of the line: write {usage}")),
    ];
    for (fault, expected) in cases {
        check_error(&format!("description: d\n{fault}\nstart A"), &expected);
    }
    check_error(
        "description: d\nstart A\nfault model 1 reset",
        "3:1: fault lines must come before the first step: move this line up",
    );
}

#[test]
fn error_unknown_step() {
    check_error(
        "description: d\nstart A\n  trun A",
        "3:3: unknown step \"trun\": expected one of start, resume, fork, turn, submit, advance, \
         settle, rotate_identity, expire_identity, revoke_identity, auth, crash, restart, heal, \
         damage, on (or a fault or expect line)",
    );
    check_error(
        "description: d\n\"start\" A",
        "2:1: expected a step, a fault or an expect line, found a string",
    );
}

#[test]
fn error_threads_that_do_not_exist() {
    let missing = "does not exist: start, resume or fork it first";
    let cases = [
        ("turn C", format!("3:6: thread \"C\" {missing}")),
        ("submit C \"x\"", format!("3:8: thread \"C\" {missing}")),
        ("resume C", format!("3:8: thread \"C\" {missing}")),
        ("fork D from C", format!("3:13: thread \"C\" {missing}")),
        ("fork D from D", format!("3:13: thread \"D\" {missing}")),
        ("crash on_append C", format!("3:17: thread \"C\" {missing}")),
        ("expect task C none", format!("3:13: thread \"C\" {missing}")),
        ("expect events C error = 0", format!("3:15: thread \"C\" {missing}")),
    ];
    for (line, expected) in cases {
        check_error(&format!("description: d\nstart A\n{line}\n"), &expected);
    }
}

#[test]
fn error_threads_that_already_exist() {
    let exists = "already exists: use a new name, or resume it";
    check_error("description: d\nstart A\nstart A", &format!("3:7: thread \"A\" {exists}"));
    check_error("description: d\nstart A\nfork A from A", &format!("3:6: thread \"A\" {exists}"));
    check_error(
        "description: d\nresume A from \"a.jsonl\"\nstart A",
        &format!("3:7: thread \"A\" {exists}"),
    );
}

#[test]
fn error_bad_thread_names() {
    let message = "start with a letter, then use letters, digits, _ and -";
    check_error("description: d\nstart 1A", &format!("2:7: invalid thread name \"1A\": {message}"));
    check_error("description: d\nstart _A", &format!("2:7: invalid thread name \"_A\": {message}"));
    check_error(
        "description: d\nstart A.b",
        &format!("2:7: invalid thread name \"A.b\": {message}"),
    );
    check_error("description: d\nstart é", &format!("2:7: invalid thread name \"é\": {message}"));
    check_error(
        "description: d\nstart A\nexpect events ** error = 0",
        &format!("3:15: invalid thread name \"**\": {message}"),
    );
}

#[test]
fn error_bad_step_arguments() {
    let resume = "write resume <thread> [from \"<rollout file>\" | from_thread <other>]";
    let cases = [
        ("start", "3:6: expected a thread name: write start <thread>".to_string()),
        ("start \"B\"", "3:7: expected a thread name, found the string \"B\": write start <thread>".into()),
        ("start B C", "3:9: unexpected \"C\" at the end of the line: write start <thread>".into()),
        ("settle now", "3:8: unexpected \"now\" at the end of the line: write settle".into()),
        ("fork B", "3:7: expected \"from\": write fork <child> from <parent>".into()),
        ("fork B of A", "3:8: expected \"from\", found \"of\": write fork <child> from <parent>".into()),
        ("fork B from", "3:12: expected the parent thread: write fork <child> from <parent>".into()),
        ("resume A \"a.jsonl\"", format!("3:10: expected \"from\", found the string \"a.jsonl\": {resume}")),
        ("resume A from a.jsonl", format!("3:15: expected the rollout file in double quotes, found \"a.jsonl\": {resume}")),
        ("resume A from", format!("3:14: expected the rollout file in double quotes: {resume}")),
        ("resume A from \"\"", "3:15: the rollout file path is empty".into()),
        ("turn A hi", "3:8: unexpected \"hi\" at the end of the line: write turn <thread> [\"<text>\"]".into()),
        ("turn A \"a\" \"b\"", "3:12: unexpected the string \"b\" at the end of the line: write turn <thread> [\"<text>\"]".into()),
        ("crash later", "3:7: unknown crash point \"later\": expected on_append <thread>, on_response <endpoint>, or nothing to crash now".into()),
        ("crash on_append", "3:16: expected a thread name: write crash [on_append <thread> | on_response <endpoint>]".into()),
        ("crash on_response teapot", "3:19: unknown endpoint \"teapot\": expected one of biscuit, identity_register, task_register, model".into()),
    ];
    for (step, expected) in cases {
        check_error(&format!("description: d\nstart A\n{step}"), &expected);
    }
}

#[test]
fn error_strings() {
    check_error(
        "description: d\nstart A\nturn A \"hi",
        "3:8: unterminated string: add the closing \"",
    );
    check_error(
        "description: d\nstart A\nturn A \"hi\\\"",
        "3:8: unterminated string: add the closing \"",
    );
    check_error(
        "description: d\nstart A\nturn A \"hi\\",
        "3:8: unterminated string: add the closing \"",
    );
    check_error(
        "description: d\nstart A\nturn A \"a\\qb\"",
        "3:10: unknown escape \"\\q\" in a string: use \\\" \\\\ \\n or \\t",
    );
    check_error(
        "description: \"unterminated # no\nstart A",
        "1:14: unterminated string: add the closing \"",
    );
    // A `#` inside a string is text, not a comment.
    assert_eq!(
        check_steps("start A\nturn A \"#1\" # c\n")[1],
        Step::Turn { thread: "A".into(), text: "#1".into(), wait: true }
    );
}

#[test]
fn error_bad_expectations() {
    let cases = [
        ("expect", "3:7: expected what to expect: write expect <what> ..., where <what> is one of requests, events, event, task, last_state, session_state_lines, mark, log, no_log, fail".to_string()),
        ("expect requets model = 1", "3:8: unknown expectation \"requets\": expected one of requests, events, event, task, last_state, session_state_lines, mark, log, no_log, fail".into()),
        ("expect requests model == 1", "3:23: unknown comparison \"==\": expected one of =, >=, <=, >, <".into()),
        ("expect requests model = -1", "3:25: the count cannot be negative".into()),
        ("expect requests model =", "3:24: expected a count: write expect requests <endpoint> <cmp> <count>".into()),
        ("expect requests model = 1 2", "3:27: unexpected \"2\" at the end of the line: write expect requests <endpoint> <cmp> <count>".into()),
        ("expect requests modle = 1", "3:17: unknown endpoint \"modle\": expected one of biscuit, identity_register, task_register, model".into()),
        ("expect events * Error = 1", "3:17: invalid event kind \"Error\": start with a lowercase letter, then use lowercase letters, digits and _".into()),
        ("expect event A", "3:15: expected the text to look for in double quotes: write expect event <thread> \"<text>\"".into()),
        ("expect event A agent", "3:16: expected the text to look for in double quotes, found \"agent\": write expect event <thread> \"<text>\"".into()),
        ("expect log \"\"", "3:12: the text to look for is empty: write part of the message".into()),
        ("expect no_log \"\"", "3:15: the text to look for is empty: write part of the message".into()),
        ("expect task A stale", "3:15: unknown task state \"stale\": expected one of current, none".into()),
        ("expect last_state A none", "3:21: unknown last state \"none\": expected one of task, null, absent".into()),
        ("expect session_state_lines A ~ 1", "3:30: unknown comparison \"~\": expected one of =, >=, <=, >, <".into()),
        ("expect mark 9lives", "3:13: invalid mark name \"9lives\": start with a lowercase letter, then use lowercase letters, digits and _".into()),
        ("expect fail now", "3:13: unexpected \"now\" at the end of the line: write expect fail".into()),
    ];
    for (expect, expected) in cases {
        check_error(&format!("description: d\nstart A\n{expect}"), &expected);
    }
}

#[test]
fn error_columns_count_characters_not_bytes() {
    check_error(
        "description: d\nstart A\nturn A \"héllo wörld\" extra",
        "3:22: unexpected \"extra\" at the end of the line: write turn <thread> [\"<text>\"]",
    );
}

// Properties.

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..12).prop_map(|chars| chars.into_iter().collect())
}

fn non_empty_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..12).prop_map(|chars| chars.into_iter().collect())
}

fn thread() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["A", "B", "main", "t-2", "x_1"]).prop_map(String::from),
        1 => "[A-Za-z][A-Za-z0-9_-]{0,6}",
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop::sample::select(Endpoint::ALL.to_vec())
}

fn cmp() -> impl Strategy<Value = Cmp> {
    prop::sample::select(Cmp::ALL.to_vec())
}

fn identifier() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,10}"
}

fn auth() -> impl Strategy<Value = AuthSpec> {
    let id = || "[A-Za-z0-9_.@-]{1,8}";
    prop_oneof![
        Just(AuthSpec::None),
        Just(AuthSpec::ApiKey),
        (id(), prop::option::of(id()))
            .prop_map(|(account, user)| AuthSpec::ChatGpt { account, user }),
    ]
}

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        (100u16..=599, prop::option::of(text()))
            .prop_map(|(status, body)| FaultKind::Status { status, body }),
        prop::sample::select(FaultKind::PLAIN_NAMES.to_vec())
            .prop_map(|name| FaultKind::from_plain_name(name).expect("a plain name")),
    ]
}

fn call_match() -> impl Strategy<Value = CallMatch> {
    prop_oneof![
        (1u32..).prop_map(CallMatch::Nth),
        (1u32.., 0u32..10)
            .prop_map(|(from, width)| CallMatch::Range { from, to: from.saturating_add(width) }),
        (1u32..).prop_map(CallMatch::From),
        Just(CallMatch::Every),
    ]
}

fn random_faults() -> impl Strategy<Value = RandomFaults> {
    prop_oneof![
        Just(RandomFaults::default()),
        (
            prop::collection::btree_map(endpoint(), 0u16..=1000, 1..4),
            prop::collection::vec(fault_kind(), 1..4)
        )
            .prop_map(|(rate_per_mille, kinds)| RandomFaults { rate_per_mille, kinds }),
    ]
}

fn config() -> impl Strategy<Value = ScenarioConfig> {
    (
        (prop::option::of(any::<u64>()), any::<bool>(), any::<bool>(), any::<bool>()),
        (prop::option::of(any::<u64>()), any::<bool>(), auth()),
        (any::<u64>(), any::<u64>(), random_faults()),
    )
        .prop_map(
            |(
                (seed, as_shipped, persist_task, use_agent_identity),
                (ttl, warm, auth),
                (a, b, random),
            )| {
                ScenarioConfig {
                    seed,
                    expiry: if as_shipped {
                        ExpiryPolicy::AsShipped
                    } else {
                        ExpiryPolicy::Reacquire
                    },
                    persist_task,
                    use_agent_identity,
                    identity_ttl_ms: ttl,
                    identity: if warm { InitialIdentity::Warm } else { InitialIdentity::None },
                    auth,
                    latency_ms: (a.min(b), a.max(b)),
                    random_faults: random,
                }
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        thread().prop_map(|thread| Step::Start { thread }),
        thread().prop_map(|thread| Step::Resume { thread, from: ResumeSource::Own }),
        (thread(), non_empty_text()).prop_map(|(thread, path)| Step::Resume {
            thread,
            from: ResumeSource::File(PathBuf::from(path))
        }),
        (thread(), thread()).prop_map(|(child, parent)| Step::Fork { child, parent }),
        (thread(), text(), any::<bool>()).prop_map(|(thread, text, wait)| Step::Turn {
            thread,
            text,
            wait
        }),
        any::<u64>().prop_map(|ms| Step::Advance { ms }),
        Just(Step::Settle),
        Just(Step::RotateIdentity),
        Just(Step::ExpireIdentity),
        Just(Step::RevokeIdentity),
        auth().prop_map(Step::Auth),
        Just(Step::Crash(CrashPoint::Now)),
        thread().prop_map(|thread| Step::Crash(CrashPoint::OnAppend(thread))),
        endpoint().prop_map(|endpoint| Step::Crash(CrashPoint::OnResponse(endpoint))),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(prop_oneof![
                Just(ExpiryPolicy::Reacquire),
                Just(ExpiryPolicy::AsShipped)
            ]),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(use_agent_identity, expiry, persist_task)| {
                Step::Restart(ConfigChange { use_agent_identity, expiry, persist_task })
            }),
        Just(Step::Heal),
    ]
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        (endpoint(), cmp(), any::<u64>()).prop_map(|(endpoint, cmp, count)| Expect::Requests {
            endpoint,
            cmp,
            count
        }),
        (prop::option::of(thread()), identifier(), cmp(), any::<u64>())
            .prop_map(|(thread, kind, cmp, count)| Expect::Events { thread, kind, cmp, count }),
        (thread(), non_empty_text())
            .prop_map(|(thread, contains)| Expect::EventText { thread, contains }),
        (thread(), any::<bool>()).prop_map(|(thread, current)| Expect::Task {
            thread,
            state: if current { TaskExpect::Current } else { TaskExpect::None }
        }),
        (
            thread(),
            prop::sample::select(vec![
                LastStateExpect::Task,
                LastStateExpect::Null,
                LastStateExpect::Absent
            ])
        )
            .prop_map(|(thread, state)| Expect::LastState { thread, state }),
        (thread(), cmp(), any::<u64>())
            .prop_map(|(thread, cmp, count)| Expect::SessionStateLines { thread, cmp, count }),
        identifier().prop_map(|name| Expect::Mark { name }),
        non_empty_text().prop_map(|contains| Expect::Log { contains }),
        non_empty_text().prop_map(|contains| Expect::NoLog { contains }),
        Just(Expect::Fail),
    ]
}

/// Makes random steps a valid sequence: the first step starts `A`, threads are started before
/// they are used, and steps that would introduce an existing thread are dropped.
fn valid_steps(raw: Vec<Step>) -> (Vec<Step>, Vec<String>) {
    let mut threads = vec!["A".to_string()];
    let mut steps = vec![start("A")];
    for step in raw {
        match &step {
            Step::Start { thread } | Step::Fork { child: thread, .. }
                if threads.contains(thread) =>
            {
                continue
            }
            Step::Fork { child, parent } if child == parent => continue,
            Step::Start { thread } | Step::Resume { thread, from: ResumeSource::File(_) }
                if !threads.contains(thread) =>
            {
                threads.push(thread.clone())
            }
            Step::Fork { child, parent } => {
                ensure(&mut threads, &mut steps, parent);
                threads.push(child.clone());
            }
            Step::Resume { thread, .. }
            | Step::Turn { thread, .. }
            | Step::Crash(CrashPoint::OnAppend(thread)) => ensure(&mut threads, &mut steps, thread),
            _ => {}
        }
        steps.push(step);
    }
    (steps, threads)
}

/// Starts `thread` unless it exists.
fn ensure(threads: &mut Vec<String>, steps: &mut Vec<Step>, thread: &str) {
    if !threads.iter().any(|t| t == thread) {
        threads.push(thread.to_string());
        steps.push(start(thread));
    }
}

/// Points expectations about threads that no step introduces at `A`.
fn valid_expect(mut expect: Expect, threads: &[String]) -> Expect {
    let thread = match &mut expect {
        Expect::Events { thread: Some(thread), .. }
        | Expect::EventText { thread, .. }
        | Expect::Task { thread, .. }
        | Expect::LastState { thread, .. }
        | Expect::SessionStateLines { thread, .. } => thread,
        _ => return expect,
    };
    if !threads.contains(thread) {
        *thread = "A".to_string();
    }
    expect
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        non_empty_text(),
        config(),
        prop::collection::vec((endpoint(), call_match(), fault_kind()), 0..4),
        prop::collection::vec(step(), 0..12),
        prop::collection::vec(expect(), 0..6),
    )
        .prop_map(|(description, config, faults, steps, expects)| {
            let (steps, threads) = valid_steps(steps);
            let located = |value| Located { line: 0, value };
            Scenario {
                name: "t".into(),
                path: PathBuf::from(PATH),
                description,
                config,
                faults: faults
                    .into_iter()
                    .map(|(endpoint, calls, kind)| located(FaultRule { endpoint, calls, kind }))
                    .collect(),
                steps: steps.into_iter().map(|s| Located { line: 0, value: s }).collect(),
                expects: expects
                    .into_iter()
                    .map(|e| Located { line: 0, value: valid_expect(e, &threads) })
                    .collect(),
            }
        })
}

/// Lines made of the format's own words, so random input gets past the first token often.
fn token_soup() -> impl Strategy<Value = String> {
    let words = vec![
        "description:",
        "seed:",
        "expiry:",
        "auth:",
        "latency:",
        "fault_rate:",
        "fault_kinds:",
        "identity_ttl:",
        "flag:",
        "fault",
        "expect",
        "start",
        "resume",
        "fork",
        "from",
        "turn",
        "submit",
        "advance",
        "crash",
        "on_append",
        "on_response",
        "auth",
        "chatgpt",
        "account=",
        "user=u",
        "A",
        "B",
        "model",
        "biscuit",
        "requests",
        "events",
        "event",
        "task",
        "mark",
        "log",
        "*",
        "=",
        ">=",
        "<",
        "1",
        "0",
        "2..",
        "..",
        "3..1",
        "5ms..1s",
        "-1s",
        "1h30m",
        "99999999999999999999999",
        "status=",
        "status=503",
        "body=",
        "\"",
        "\"x\"",
        "\\",
        "#",
        "é",
        "model=1000",
        "timeout",
        "fail",
        "\t",
        ":",
    ];
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(words), 0..7).prop_map(|w| w.join(" ")),
        0..8,
    )
    .prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_time: 30_000, ..ProptestConfig::default() })]

    #[test]
    fn to_text_round_trips(scenario in scenario()) {
        let text = scenario.to_text();
        let parsed = parse("t", Path::new(PATH), &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(without_lines(parsed), scenario);
    }

    #[test]
    fn parse_never_panics_on_strings(text in any::<String>()) {
        let _ = parse("t", Path::new(PATH), &text);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse("t", Path::new(PATH), &String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parse_never_panics_on_token_soup(text in token_soup()) {
        let _ = parse("t", Path::new(PATH), &text);
    }

    #[test]
    fn parse_never_panics_on_mutated_scenarios(
        scenario in scenario(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), any::<bool>()), 1..6),
    ) {
        let mut chars: Vec<char> = scenario.to_text().chars().collect();
        for (index, c, insert) in edits {
            let at = index.index(chars.len() + 1);
            if insert || at == chars.len() {
                chars.insert(at, c);
            } else {
                chars.remove(at);
            }
        }
        let text: String = chars.into_iter().collect();
        if let Err(e) = parse("t", Path::new(PATH), &text) {
            let lines = text.lines().count().max(1);
            prop_assert!(e.line >= 1 && e.line <= lines, "{e} for {text:?}");
            prop_assert!(e.column >= 1);
        }
    }
}
