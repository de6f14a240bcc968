//! The `sim` command line on bad input: every mistake exits with status 2 and one clear error line
//! (file, line and column for a scenario file), a failed run exits with 1, a good one with 0, and
//! nothing the command prints or writes holds a secret.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `tests/fixtures/<relative>` of the workspace.
fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("fixtures").join(relative)
}

/// `sim` with `args`, logs off unless `rust_log` says otherwise, and none of the `AGENTSIM_*`
/// defaults of the caller's environment.
fn command(args: &[&str], rust_log: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sim"));
    command
        .args(args)
        .env("RUST_LOG", rust_log)
        .env_remove("AGENTSIM_SEED")
        .env_remove("AGENTSIM_CASES");
    command
}

/// Runs `sim` with `args`; logs off unless `rust_log` says otherwise.
fn sim(args: &[&str], rust_log: &str) -> Output {
    command(args, rust_log).output().expect("the sim binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: exit status\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// `tests/fixtures/bad_scenarios/expected.txt`: (file name, error after `<path>:`).
fn expected_scenario_errors() -> Vec<(String, String)> {
    let path = fixture("bad_scenarios/expected.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, error) = l.split_once('\t').expect("<file><TAB><error>");
            (file.to_owned(), error.to_owned())
        })
        .collect()
}

#[test]
fn every_malformed_scenario_file_exits_2_with_its_exact_error() {
    let expected = expected_scenario_errors();
    assert!(expected.len() >= 20, "the bad-scenario corpus is missing");
    for (file, error) in expected {
        let path = fixture(&format!("bad_scenarios/{file}"));
        let path_text = path.display().to_string();
        let output = sim(&["scenario", &path_text, "--transport", "memory"], "off");
        assert_exit(&output, 2, &file);
        assert_eq!(text(&output.stderr), format!("error: {path_text}:{error}\n"), "{file}");
        assert_eq!(text(&output.stdout), "", "{file}: nothing runs, so nothing is printed");
    }
}

#[test]
fn list_names_every_file_that_does_not_parse_and_exits_2() {
    let dir = fixture("bad_scenarios");
    let output = sim(&["list", "--scenarios", &dir.display().to_string()], "off");
    assert_exit(&output, 2, "list");
    let stdout = text(&output.stdout);
    for (file, error) in expected_scenario_errors() {
        let name = file.trim_end_matches(".scn");
        let path = dir.join(&file);
        let wanted = format!("(does not parse: {}:{error})", path.display());
        assert!(
            stdout.lines().any(|l| l.starts_with(name) && l.ends_with(&wanted)),
            "{file}: no line {wanted:?} in\n{stdout}"
        );
    }
}

#[test]
fn an_unknown_scenario_name_lists_close_matches_and_exits_2() {
    let dir = fixture("bad_scenarios");
    let dir_text = dir.display().to_string();
    let output = sim(&["scenario", "unknwn_step", "--scenarios", &dir_text], "off");
    assert_exit(&output, 2, "typo");
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: no scenario named \"unknwn_step\" in {dir_text}: did you mean: unknown_step?\n"
        )
    );
    let output = sim(&["scenario", "zzzz", "--scenarios", &dir_text], "off");
    assert_exit(&output, 2, "no match");
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: no scenario named \"zzzz\" in {dir_text}: run `sim list` to see them all\n"
        )
    );
}

#[test]
fn help_works_and_names_the_commands_and_options() {
    let output = sim(&["--help"], "off");
    assert_exit(&output, 0, "--help");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Usage: sim <COMMAND>"), "{stdout}");
    for command in ["scenario", "list"] {
        assert!(stdout.lines().any(|l| l.trim_start().starts_with(command)), "{command}: {stdout}");
    }
    let output = sim(&["scenario", "--help"], "off");
    assert_exit(&output, 0, "scenario --help");
    let stdout = text(&output.stdout);
    for option in ["--seed", "--transport", "--store", "--out", "--format", "--scenarios"] {
        assert!(stdout.contains(option), "{option}: {stdout}");
    }
}

#[test]
fn bad_options_exit_2_with_the_values_allowed() {
    let scenario = fixture("bad_scenarios/empty.scn").display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &["scenario", &scenario, "--transport", "carrier-pigeon"],
            "error: invalid value 'carrier-pigeon' for '--transport <TRANSPORT>'\n  [possible values: http, memory]",
        ),
        (
            &["scenario", &scenario, "--store", "cloud"],
            "error: invalid value 'cloud' for '--store <STORE>'\n  [possible values: memory, files]",
        ),
        (&["scenario", &scenario, "--seed", "-3"], "error: unexpected argument '-3' found"),
        (&["scenario", &scenario, "--seed", "many"], "error: invalid value 'many' for '--seed <SEED>'"),
    ];
    for (args, wanted) in cases {
        let output = sim(args, "off");
        assert_exit(&output, 2, &args.join(" "));
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with(wanted), "{args:?}: {stderr}");
    }
    let output = sim(&[], "off");
    assert_exit(&output, 2, "no arguments");
    assert!(text(&output.stderr).contains("Usage: sim <COMMAND>"));
}

/// Writes `files` into a new temporary folder.
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    dir
}

#[test]
fn exit_status_is_0_for_a_pass_1_for_a_failed_run_and_2_for_a_step_that_cannot_run() {
    let dir = folder(&[
        (
            "pass.scn",
            b"description: passes\nseed: 1\nstart A\nsettle\nturn A\nexpect task A current\n",
        ),
        ("fail.scn", b"description: fails\nseed: 1\nstart A\nsettle\nexpect requests model = 99\n"),
        ("stuck.scn", b"description: cannot run\nseed: 1\nstart A\ncrash\nturn A\n"),
        ("missing.scn", b"description: cannot run\nseed: 1\nresume A from \"nowhere.jsonl\"\n"),
    ]);
    let path = |name: &str| dir.path().join(name).display().to_string();
    for transport in ["memory", "http"] {
        let output = sim(&["scenario", &path("pass.scn"), "--transport", transport], "off");
        assert_exit(&output, 0, "pass");
        assert!(text(&output.stdout).ends_with("verdict: ok\n"));

        let output = sim(&["scenario", &path("fail.scn"), "--transport", transport], "off");
        assert_exit(&output, 1, "fail");
        let stdout = text(&output.stdout);
        let expected = format!(
            "expectation failed: {}:5: expect requests model = 99 (actual 0)",
            path("fail.scn")
        );
        assert!(stdout.contains(&expected), "{stdout}");
        assert!(stdout.ends_with("verdict: FAIL: 1 expectation(s) failed\n"), "{stdout}");

        let output = sim(&["scenario", &path("stuck.scn"), "--transport", transport], "off");
        assert_exit(&output, 2, "stuck");
        assert_eq!(
            text(&output.stderr),
            format!(
                "error: {}:5: no process is running (the last one crashed): add a `restart` step\n",
                path("stuck.scn")
            )
        );
        // The seed and the replay command come first, so even a run that stops shows them.
        let stdout = text(&output.stdout);
        assert!(
            stdout.starts_with("scenario: stuck (cannot run)\nseed: 1  transport: "),
            "{stdout}"
        );
        let replay = format!("replay: {} -- scenario ", sim::fuzz::cargo_run());
        assert!(stdout.contains(&replay), "{stdout}");

        let output = sim(&["scenario", &path("missing.scn"), "--transport", transport], "off");
        assert_exit(&output, 2, "missing rollout");
        let rollout = dir.path().join("nowhere.jsonl");
        let io = std::fs::read(&rollout).unwrap_err();
        assert_eq!(
            text(&output.stderr),
            format!(
                "error: {}:3: cannot read rollout {}: {io}\n",
                path("missing.scn"),
                rollout.display()
            )
        );
    }
}

#[test]
fn a_damaged_rollout_resumes_and_its_skipped_lines_are_printed() {
    let good = br#"{"timestamp":"2026-04-18T13:00:00.000Z","type":"session_state","payload":{"agent_task":null}}"#;
    let rollout = [good.as_slice(), b"\nnot json\n\xff\xfe\n", &good[..40]].concat();
    let dir = folder(&[
        ("damaged.jsonl", &rollout),
        (
            "resume.scn",
            b"description: resume a damaged rollout\nseed: 2\nresume A from \"damaged.jsonl\"\nturn A\nexpect task A current\n",
        ),
    ]);
    let scenario = dir.path().join("resume.scn").display().to_string();
    for store in ["memory", "files"] {
        let output =
            sim(&["scenario", &scenario, "--transport", "memory", "--store", store], "off");
        assert_exit(&output, 0, store);
        let stdout = text(&output.stdout);
        for wanted in [
            "A   resume: 4 lines, last session_state at line 1: none, 3 skipped, restored none",
            "A   resume skipped line 2: not JSON: expected ident at line 1 column 2",
            "A   resume skipped line 3: not UTF-8 (byte 0)",
            "A   resume skipped line 4: torn final line (not JSON: EOF while parsing a value at line 1 column 40)",
        ] {
            assert!(stdout.contains(wanted), "{store}: no {wanted:?} in\n{stdout}");
        }
    }
}

/// Invariant 14 at the command line: with every log level on, neither what `sim` prints nor any
/// artifact `--out` writes holds a private key, a biscuit or an access token (found by shape).
#[test]
fn inv14_no_secret_in_anything_the_command_prints_or_writes() {
    let dir = folder(&[(
        "secrets.scn",
        b"description: secrets stay in the auth store\nseed: 3\nidentity: warm\nstart A\nsettle\n\
          turn A\nrotate_identity\nturn A\nauth chatgpt account=acct-2\nturn A\nexpect task A current\n",
    )]);
    let scenario = dir.path().join("secrets.scn").display().to_string();
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let mut texts: Vec<(String, Vec<u8>)> = Vec::new();
    for (transport, format) in [("http", "json"), ("memory", "text")] {
        let args = [
            "scenario",
            &scenario,
            "--transport",
            transport,
            "--format",
            format,
            "--out",
            &out_text,
            "--force",
        ];
        let output = sim(&args, "debug");
        assert_exit(&output, 0, transport);
        assert!(
            text(&output.stderr).contains("registered agent identity"),
            "debug logs reach stderr"
        );
        texts.push((format!("{transport} stdout"), output.stdout));
        texts.push((format!("{transport} stderr"), output.stderr));
        for file in files_under(&out) {
            let bytes = std::fs::read(&file).expect("artifact");
            texts.push((file.display().to_string(), bytes));
        }
    }
    assert!(texts.iter().any(|(name, _)| name.ends_with("report.json")), "no artifacts written");
    let pkcs8 = private_key_header();
    let mut leaks = Vec::new();
    for (name, bytes) in &texts {
        if bytes.windows(pkcs8.len()).any(|w| w == pkcs8.as_bytes()) {
            leaks.push(format!("{name}: a private key"));
        }
        if has_hex_token(bytes, b"bsc_", 32) {
            leaks.push(format!("{name}: a biscuit"));
        }
        if has_hex_token(bytes, b"at-", 48) {
            leaks.push(format!("{name}: an access token"));
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // The search can fail: the same shapes in a planted text are found.
    let planted = format!("{pkcs8} bsc_{} at-{}", "ab".repeat(16), "cd".repeat(24));
    assert!(planted.contains(&pkcs8) && has_hex_token(planted.as_bytes(), b"bsc_", 32));
    assert!(has_hex_token(planted.as_bytes(), b"at-", 48));
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("readable").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The base64 header all PKCS#8 Ed25519 private keys share, found from two keys.
fn private_key_header() -> String {
    let a = agentsim_core::wire::IdentityKey::from_seed([0x00; 32]).to_pkcs8_base64();
    let b = agentsim_core::wire::IdentityKey::from_seed([0xff; 32]).to_pkcs8_base64();
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect()
}

/// Whether `text` holds `prefix` followed by `hex_len` lowercase hex digits.
fn has_hex_token(text: &[u8], prefix: &[u8], hex_len: usize) -> bool {
    text.windows(prefix.len() + hex_len).any(|w| {
        w.starts_with(prefix)
            && w[prefix.len()..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

/// Runs `sim` with its stdout a pipe whose reader has already gone, as at the end of
/// `sim list | head -0`: every write fails with a broken pipe.
fn sim_into_closed_pipe(args: &[&str]) -> Output {
    let mut child = command(args, "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sim binary runs");
    drop(child.stdout.take());
    child.wait_with_output().expect("sim ends")
}

#[test]
fn a_reader_that_closes_early_ends_sim_quietly_with_status_0() {
    let scenario = ["scenario", "cold_start", "--transport", "memory"];
    let commands: [&[&str]; 7] = [
        &["list"],
        &scenario,
        &["scenario", "cold_start", "--transport", "memory", "--format", "json"],
        &["fuzz", "--cases", "2", "--out", "unused-fuzz-failures"],
        &["completions", "bash"],
        &["--help"],
        &["scenario", "--help"],
    ];
    for args in commands {
        let output = sim_into_closed_pipe(args);
        assert_exit(&output, 0, &args.join(" "));
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: a closed pipe is no error");
    }
    // As `sim scenario cold_start | head -1`: one line read, then the reader goes.
    let mut child = command(&scenario, "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sim binary runs");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout).read_line(&mut first).expect("one line");
    let output = child.wait_with_output().expect("sim ends");
    assert!(first.starts_with("scenario: cold_start"), "{first}");
    assert_exit(&output, 0, "head -1");
    assert!(!text(&output.stderr).contains("panicked"), "{}", text(&output.stderr));
}

#[test]
fn debug_logs_are_this_projects_in_virtual_time_without_colour_when_redirected() {
    let output = sim(&["scenario", "cold_start", "--transport", "http"], "debug");
    assert_exit(&output, 0, "cold_start");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("registered agent identity"), "{stderr}");
    for line in stderr.lines() {
        assert!(line.contains(" agentsim_core: ") || line.contains(" sim: "), "{line}");
        assert!(!line.contains('\x1b'), "colour in a redirected log: {line:?}");
        assert!(!line.starts_with(|c: char| c.is_ascii_digit()), "a wall-clock stamp: {line}");
        assert!(line.contains(" vt=+"), "no virtual time: {line}");
    }
    let output = sim(&["scenario", "cold_start", "--transport", "http"], "info");
    let stderr = text(&output.stderr);
    assert!(stderr.lines().all(|l| l.contains(" agentsim_core: ")), "{stderr}");
    assert!(stderr.contains("registered agent identity") && !stderr.contains("DEBUG"), "{stderr}");
}

#[test]
fn out_refuses_a_folder_that_holds_anything_unless_force_empties_it() {
    let dir = folder(&[("stale.txt", b"from another run")]);
    std::fs::create_dir(dir.path().join("rollouts-of-old")).expect("mkdir");
    let out = dir.path().display().to_string();
    let args = ["scenario", "cold_start", "--transport", "memory", "--out", &out];
    let output = sim(&args, "off");
    assert_exit(&output, 2, "non-empty --out");
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: the --out folder {out} is not empty (2 entries): name a new or empty folder, \
             or add --force to empty it first\n"
        )
    );
    assert_eq!(text(&output.stdout), "", "nothing runs");
    assert!(dir.path().join("stale.txt").exists(), "nothing is removed without --force");
    let one = folder(&[("stale.txt", b"")]);
    let one_text = one.path().display().to_string();
    let output = sim(&["scenario", "cold_start", "--out", &one_text], "off");
    assert!(text(&output.stderr).contains("is not empty (1 entry): "), "{}", text(&output.stderr));

    let output = sim(&[&args[..], &["--force"]].concat(), "off");
    assert_exit(&output, 0, "--force");
    assert!(!dir.path().join("stale.txt").exists() && !dir.path().join("rollouts-of-old").exists());
    for artifact in ["report.json", "snapshot.txt", "timeline.txt", "rollouts"] {
        assert!(dir.path().join(artifact).exists(), "{artifact} not written");
    }
    // A new folder, or an empty one, needs no --force.
    let fresh = dir.path().join("new").join("deeper").display().to_string();
    let output = sim(&["scenario", "cold_start", "--transport", "memory", "--out", &fresh], "off");
    assert_exit(&output, 0, "a new folder");

    let output = sim(&["scenario", "cold_start", "--force"], "off");
    assert_exit(&output, 2, "--force without --out");
    assert!(text(&output.stderr).contains("--out <DIR>"), "{}", text(&output.stderr));

    // Never the folder sim runs in, nor one holding it.
    let output = command(&["scenario", "cold_start", "--out", ".", "--force"], "off")
        .current_dir(dir.path())
        .output()
        .expect("sim runs");
    assert_exit(&output, 2, "--out . --force");
    assert!(text(&output.stderr).starts_with("error: refusing to empty . with --force"));
    assert!(dir.path().join("report.json").exists(), "the current folder was emptied");
}

/// The header and summary lines of a `sim fuzz` run that name its cases (not its timing).
fn fuzz_case_lines(output: &Output) -> Vec<String> {
    text(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("fuzz:") || l.starts_with("replay:") || l.starts_with("cases:"))
        .map(|l| l.split("  time:").next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn partition_k_of_n_runs_what_shard_k_minus_1_of_n_runs() {
    let fuzz = |extra: &[&str]| {
        let mut args = vec!["fuzz", "--cases", "2", "--jobs", "1", "--out", "unused"];
        args.extend_from_slice(extra);
        let output = sim(&args, "off");
        assert_exit(&output, 0, &args.join(" "));
        fuzz_case_lines(&output)
    };
    let shard = fuzz(&["--shard", "2/4"]);
    assert!(shard[0].starts_with("fuzz: base seed 0, shard 2/4, 2 cases"), "{shard:?}");
    assert_eq!(fuzz(&["--partition", "3/4"]), shard);

    let output = sim(&["fuzz", "--partition", "1/2", "--shard", "0/2"], "off");
    assert_exit(&output, 2, "both");
    assert!(text(&output.stderr).contains("cannot be used with"), "{}", text(&output.stderr));
    for (partition, why) in [
        ("0/4", "partition \"0/4\": need 1 <= K <= N, e.g. 1/4 to 4/4"),
        ("5/4", "partition \"5/4\": need 1 <= K <= N, e.g. 1/4 to 4/4"),
        ("1/0", "partition \"1/0\": need 1 <= K <= N, e.g. 1/4 to 4/4"),
    ] {
        let output = sim(&["fuzz", "--partition", partition], "off");
        assert_exit(&output, 2, partition);
        let wanted = format!("error: invalid value '{partition}' for '--partition <K/N>': {why}");
        assert!(text(&output.stderr).starts_with(&wanted), "{}", text(&output.stderr));
    }
}

#[test]
fn agentsim_seed_and_cases_set_the_defaults_and_flags_win() {
    let fuzz = |env: &[(&str, &str)], args: &[&str]| {
        let mut command =
            command(&[&["fuzz", "--jobs", "1", "--out", "unused"], args].concat(), "off");
        command.envs(env.iter().copied());
        let output = command.output().expect("sim runs");
        assert_exit(&output, 0, &format!("{env:?} {args:?}"));
        fuzz_case_lines(&output)
    };
    let env = [("AGENTSIM_SEED", "5"), ("AGENTSIM_CASES", "2")];
    let from_env = fuzz(&env, &[]);
    assert_eq!(from_env, fuzz(&[], &["--seed", "5", "--cases", "2"]));
    assert!(from_env[0].starts_with("fuzz: base seed 5, shard 0/1, 2 cases"), "{from_env:?}");
    let flags = fuzz(&env, &["--seed", "6", "--cases", "1"]);
    assert!(flags[0].starts_with("fuzz: base seed 6, shard 0/1, 1 cases"), "{flags:?}");

    let scenario = |env: &[(&str, &str)], args: &[&str]| {
        let base = ["scenario", "cold_start", "--transport", "memory"];
        let mut command = command(&[&base[..], args].concat(), "off");
        command.envs(env.iter().copied());
        let output = command.output().expect("sim runs");
        text(&output.stdout).lines().nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(scenario(&[("AGENTSIM_SEED", "7")], &[]), "seed: 7  transport: memory");
    assert_eq!(scenario(&[("AGENTSIM_SEED", "7")], &["--seed", "8"]), "seed: 8  transport: memory");

    let mut bad = command(&["fuzz", "--cases", "1"], "off");
    let output = bad.env("AGENTSIM_SEED", "many").output().expect("sim runs");
    assert_exit(&output, 2, "AGENTSIM_SEED=many");
    assert!(text(&output.stderr).starts_with("error: invalid value 'many' for '--seed <SEED>'"));
    let help = text(&sim(&["fuzz", "--help"], "off").stdout);
    assert!(help.contains("[env: AGENTSIM_SEED=]") && help.contains("[env: AGENTSIM_CASES=]"));
}

#[test]
fn fuzz_durations_are_the_scenario_files_days_included() {
    let output = sim(&["fuzz", "--cases", "1", "--time-budget", "1d", "--out", "unused"], "off");
    assert_exit(&output, 0, "--time-budget 1d");
    assert!(text(&output.stdout).contains(", time budget 1d, "), "{}", text(&output.stdout));
    let output = sim(&["fuzz", "--time-budget", "1d12h", "--cases", "1", "--out", "unused"], "off");
    assert_exit(&output, 0, "--time-budget 1d12h");
    let output = sim(&["fuzz", "--time-budget", "60"], "off");
    assert_exit(&output, 2, "--time-budget 60");
    assert!(text(&output.stderr).starts_with(
        "error: invalid value '60' for '--time-budget <DURATION>': invalid duration \"60\": write a \
         number and a unit (ms, s, m, h or d), e.g. 250ms, 15s or 1h30m"
    ));
}

#[test]
fn fuzz_replay_lines_name_this_build() {
    let output = sim(&["fuzz", "--seed", "3", "--cases", "1", "--out", "unused"], "off");
    assert_exit(&output, 0, "fuzz");
    let stdout = text(&output.stdout);
    let wanted = format!(
        "replay: {} -- fuzz --seed 3 --cases 1 --shard 0/1 --transport memory\n",
        sim::fuzz::cargo_run()
    );
    assert!(stdout.contains(&wanted), "{stdout}");
    let release = !cfg!(debug_assertions);
    assert_eq!(sim::fuzz::cargo_run().contains(" --release "), release);
    let planted = agentsim_core::planted_bugs().count() > 0;
    assert_eq!(sim::fuzz::cargo_run().contains(" --features agentsim-core/planted-bug-"), planted);
}

#[test]
fn completions_print_a_script_for_every_shell() {
    for (shell, wanted) in [
        ("bash", "complete -F _sim"),
        ("zsh", "#compdef sim"),
        ("fish", "complete -c sim"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[sim]"),
    ] {
        let output = sim(&["completions", shell], "off");
        assert_exit(&output, 0, shell);
        let script = text(&output.stdout);
        assert!(script.contains(wanted), "{shell}: no {wanted:?}");
        assert!(script.contains("partition"), "{shell}: the fuzz options are not completed");
    }
    let output = sim(&["completions", "tcsh"], "off");
    assert_exit(&output, 2, "tcsh");
}

#[test]
fn every_subcommands_long_help_ends_with_examples() {
    for command in ["scenario", "fuzz", "bench", "list", "completions"] {
        let output = sim(&[command, "--help"], "off");
        assert_exit(&output, 0, command);
        let help = text(&output.stdout);
        let (_, examples) = help.rsplit_once("Examples:\n").unwrap_or_else(|| panic!("{help}"));
        let lines: Vec<&str> = examples.lines().collect();
        assert!((2..=4).contains(&lines.len()), "{command}: {lines:?}");
        let sim_line = |l: &&str| l.starts_with("  sim ") || l.starts_with("  cargo run ");
        assert!(lines.iter().all(sim_line), "{command}: {lines:?}");
    }
}

#[test]
fn diff_is_quiet_about_seeds_and_loud_about_a_changed_story() {
    let same = sim(&["diff", "cold_start@1", "cold_start@2"], "");
    assert_exit(&same, 0, "the same scenario under two seeds");
    assert!(text(&same.stdout).contains("equivalent"), "{}", text(&same.stdout));
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots/cold_start.snap");
    let against = sim(&["diff", "cold_start", snapshot.to_str().expect("utf-8 path")], "");
    assert_exit(&against, 0, "a scenario against its own snapshot");
    let other = sim(&["diff", "cold_start", "warm_identity"], "");
    assert_exit(&other, 1, "two different scenarios");
    let out = text(&other.stdout);
    assert!(out.contains("first divergence: events, line 2"), "{out}");
    let bad = sim(&["diff", "cold_start@x", "cold_start"], "");
    assert_exit(&bad, 2, "a seed that is not a number");
}
