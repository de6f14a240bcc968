//! Properties: printing round-trips, and parsing never panics on any input.

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::fault::{CallMatch, FaultKind};

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
