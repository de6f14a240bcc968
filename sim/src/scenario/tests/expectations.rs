//! The expectations and their comparisons.

use super::*;

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
