//! Parsing, printing and bad input of the edge steps.

use super::*;
use crate::damage::DamageKind;

#[test]
fn edge_steps_parse() {
    let steps = check_steps(
        "start A\n\
         advance to_expiry\n\
         advance to_expiry -1ms\n\
         advance to_expiry +1ms\n\
         advance to_expiry 1s500ms\n\
         resume B from_thread A\n\
         damage A torn_middle\n\
         on task_register before rotate_identity\n\
         on biscuit sent expire_identity\n\
         on identity_register answered revoke_identity\n\
         on model before auth chatgpt account=acct-2 user=u\n\
         on model sent auth none\n",
    );
    assert_eq!(
        steps[1..],
        [
            Step::AdvanceToExpiry { offset_ms: 0 },
            Step::AdvanceToExpiry { offset_ms: -1 },
            Step::AdvanceToExpiry { offset_ms: 1 },
            Step::AdvanceToExpiry { offset_ms: 1_500 },
            Step::Resume { thread: "B".into(), from: ResumeSource::Thread("A".into()) },
            Step::Damage { thread: "A".into(), kind: DamageKind::TornMiddle },
            Step::On {
                endpoint: Endpoint::TaskRegister,
                moment: Moment::Before,
                world: WorldStep::RotateIdentity
            },
            Step::On {
                endpoint: Endpoint::Biscuit,
                moment: Moment::Sent,
                world: WorldStep::ExpireIdentity
            },
            Step::On {
                endpoint: Endpoint::IdentityRegister,
                moment: Moment::Answered,
                world: WorldStep::RevokeIdentity
            },
            Step::On {
                endpoint: Endpoint::Model,
                moment: Moment::Before,
                world: WorldStep::Auth(chatgpt("acct-2", Some("u")))
            },
            Step::On {
                endpoint: Endpoint::Model,
                moment: Moment::Sent,
                world: WorldStep::Auth(AuthSpec::None)
            },
        ]
    );
    // A resume from a copy introduces its thread.
    let scenario = check("description: d\nstart A\nresume B from_thread A\nturn B\n");
    assert_eq!(scenario.thread_names(), ["A", "B"]);
    for kind in DamageKind::ALL {
        let steps = check_steps(&format!("start A\ndamage A {kind}\n"));
        assert_eq!(steps[1], Step::Damage { thread: "A".into(), kind });
    }
}

#[test]
fn edge_steps_print_back_canonically() {
    let text = "\
description: d

start A
advance to_expiry
advance to_expiry -1ms
advance to_expiry +1s1ms
resume B from_thread A
damage B stale_runtime
on task_register before rotate_identity
on model answered auth chatgpt account=acct-2
on biscuit sent auth api_key
";
    let scenario = check(text);
    assert_eq!(scenario.to_text(), text);
    // `+0ms` and `-0ms` are no offset at all.
    let zero = check("description: d\nstart A\nadvance to_expiry -0ms\n");
    assert_eq!(zero.steps[1].value.to_string(), "advance to_expiry");
}

#[test]
fn error_bad_edge_steps() {
    let cases = [
        ("advance to_expiry soon", "2:19: invalid duration \"soon\": write a number and a unit (ms, s, m, h or d), e.g. 250ms, 15s or 1h30m"),
        ("advance to_expiry -", "2:19: expected a duration after the sign, e.g. -1ms or +1ms, found \"-\""),
        ("advance to_expiry +-1ms", "2:20: durations cannot be negative"),
        ("advance to_expiry -1ms now", "2:24: unexpected \"now\" at the end of the line: write advance <duration> | advance to_expiry [<signed duration>], e.g. advance 30s"),
        ("advance to_expiry \"1ms\"", "2:19: expected an offset such as -1ms or +1ms, found the string \"1ms\": write advance <duration> | advance to_expiry [<signed duration>], e.g. advance 30s"),
        ("resume B from_thread C", "2:22: thread \"C\" does not exist: start, resume or fork it first"),
        ("resume A from_thread A", "2:22: thread \"A\" cannot resume from a copy of its own rollout: write `resume A`"),
        ("resume B from_thread", "2:21: expected the thread whose rollout is copied: write resume <thread> [from \"<rollout file>\" | from_thread <other>]"),
        ("resume 9 from_thread A", "2:8: invalid thread name \"9\": start with a letter, then use letters, digits, _ and -"),
        ("damage A", "2:9: expected a damage kind: write damage <thread> <kind>, where <kind> is one of empty_payload, duplicate_state, reorder_states, crlf, torn_middle, unknown_type, garbage_line, stale_runtime, foreign_task, empty_task_id"),
        ("damage A shred", "2:10: unknown damage kind \"shred\": expected one of empty_payload, duplicate_state, reorder_states, crlf, torn_middle, unknown_type, garbage_line, stale_runtime, foreign_task, empty_task_id"),
        ("damage Z crlf", "2:8: thread \"Z\" does not exist: start, resume or fork it first"),
        ("damage A crlf twice", "2:15: unexpected \"twice\" at the end of the line: write damage <thread> <kind>, where <kind> is one of empty_payload, duplicate_state, reorder_states, crlf, torn_middle, unknown_type, garbage_line, stale_runtime, foreign_task, empty_task_id"),
        ("on modle before rotate_identity", "2:4: unknown endpoint \"modle\": expected one of biscuit, identity_register, task_register, model"),
        ("on model later rotate_identity", "2:10: unknown moment \"later\": expected one of before, sent, answered"),
        ("on model before dance", "2:17: unknown world step \"dance\": expected one of rotate_identity, expire_identity, revoke_identity, auth"),
        ("on model before", "2:16: expected a world step: write on <endpoint> before|sent|answered rotate_identity | expire_identity | revoke_identity | auth <auth>"),
        ("on model before auth chatgpt", "2:29: expected account=<id>: write on <endpoint> before|sent|answered rotate_identity | expire_identity | revoke_identity | auth <auth>"),
        ("on model before crash", "2:17: unknown world step \"crash\": expected one of rotate_identity, expire_identity, revoke_identity, auth"),
        ("on model sent revoke_identity now", "2:31: unexpected \"now\" at the end of the line: write on <endpoint> before|sent|answered rotate_identity | expire_identity | revoke_identity | auth <auth>"),
    ];
    for (step, expected) in cases {
        check_error(&format!("description: d\nstart A\n{step}\n"), &shift(expected));
    }
}

/// The cases are written as if the step were line 2; a `start A` line comes first, so it is 3.
fn shift(expected: &str) -> String {
    let (line, rest) = expected.split_once(':').expect("line:column: message");
    format!("{}:{rest}", line.parse::<usize>().expect("a line") + 1)
}
