//! Printing (`to_text`), loading files, the display of errors and the format guide's example.

use super::*;

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
    let guide = include_str!("../../../../scenarios/FORMAT.md");
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
