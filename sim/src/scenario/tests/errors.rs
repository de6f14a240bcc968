//! Errors, one test per kind of mistake. Columns count characters from 1.

use super::*;
use crate::fault::FaultKind;

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
        "3:3: unknown step \"trun\": expected one of start, resume, fork, turn, submit, compact, rollback, \
         advance, settle, rotate_identity, expire_identity, revoke_identity, auth, crash, restart, heal, \
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
