//! The steps, their lines, the order threads are introduced in, and paths resolved against the
//! scenario folder.

use std::path::PathBuf;

use super::*;

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
