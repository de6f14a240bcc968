//! Tidy checks (rust-analyzer's tidy.rs, TigerBeetle's tidy.zig): rules about the code itself that
//! a compiler does not enforce.

use std::path::Path;

use agentsim_tests::root;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_uses_no_io_clock_or_os_randomness() {
    let banned = [
        "std::fs",
        "std::net",
        "std::time::SystemTime",
        "Instant::now",
        "SystemTime::now",
        "tokio",
        "reqwest",
        "HashMap",
        "HashSet",
        "thread_rng",
        "OsRng",
        "getrandom",
        "std::env",
        "std::thread",
        "println!",
        "eprintln!",
    ];
    let mut files = Vec::new();
    rust_files(&root().join("core/src"), &mut files);
    assert!(!files.is_empty());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in banned {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "core must stay sans-IO:\n{}", found.join("\n"));
}

#[test]
fn core_dependency_tree_has_no_io_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["tree", "-p", "agentsim-core", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let io_crates = [
        "tokio",
        "mio",
        "reqwest",
        "hyper",
        "socket2",
        "wiremock",
        "getrandom",
        "libc",
        "tracing",
        "tempfile",
    ];
    let found: Vec<&str> = tree
        .lines()
        .filter(|l| io_crates.iter().any(|c| l.split_whitespace().next() == Some(*c)))
        .collect();
    assert!(found.is_empty(), "core pulls in IO crates: {found:?}");
}

#[test]
fn architecture_md_maps_every_top_level_folder() {
    let text =
        std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md exists");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root()).expect("root readable") {
        let entry = entry.expect("readable");
        let name = entry.file_name().to_string_lossy().into_owned();
        let hidden = name.starts_with('.') && name != ".ci" && name != ".github";
        if entry.path().is_dir()
            && !hidden
            && name != "target"
            && name != "out"
            && !text.contains(&format!("`{name}/`"))
        {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md has no section for: {missing:?}");
}

#[test]
fn every_spec_rule_has_a_core_test_named_after_it() {
    let mut files = Vec::new();
    rust_files(&root().join("core/src"), &mut files);
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).expect("utf-8")).collect();
    let missing: Vec<String> = (1..=20)
        .map(|n| format!("fn rule{n:02}_"))
        .filter(|name| !text.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "spec rules without a core test named after them: {missing:?}");
}

/// The marker that allows the one check of spec section 4's texts (`Checker::error_text`).
const SPEC_TEXT_MARKER: &str = "// tidy: spec-text assertion";

/// Literals with a space that are HTTP protocol tokens (the `Authorization` schemes), not message
/// text: reading a header with them is fine.
const WIRE_TOKENS: [&str; 2] = ["AgentAssertion ", "Bearer "];

/// Lines of `text` that compare a value with a string literal holding prose (a space and a
/// letter): `starts_with("…")`, `ends_with("…")`, `contains("…")`, `strip_prefix("…")`,
/// `== "…"`, `!= "…"`. Comment lines, lines carrying [`SPEC_TEXT_MARKER`] (or right after one)
/// and [`WIRE_TOKENS`] are allowed.
fn prose_comparisons(text: &str) -> Vec<(usize, String)> {
    const OPENERS: [&str; 6] =
        ["starts_with(\"", "ends_with(\"", "contains(\"", "strip_prefix(\"", "== \"", "!= \""];
    let mut found = Vec::new();
    let mut marked = false;
    for (n, line) in text.lines().enumerate() {
        let allowed = marked || line.contains(SPEC_TEXT_MARKER);
        marked = line.contains(SPEC_TEXT_MARKER);
        if allowed || line.trim_start().starts_with("//") {
            continue;
        }
        for opener in OPENERS {
            for (at, _) in line.match_indices(opener) {
                let rest = &line[at + opener.len()..];
                let mut literal = String::new();
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => literal.extend(chars.next()),
                        c => literal.push(c),
                    }
                }
                let prose = literal.contains(' ') && literal.chars().any(char::is_alphabetic);
                if prose && !WIRE_TOKENS.contains(&literal.as_str()) {
                    found.push((n + 1, format!("{opener}{literal}\"")));
                }
            }
        }
    }
    found
}

#[test]
fn no_check_decides_on_message_text() {
    // The invariant checks key on typed causes (`Failure`, `Invariant`), never on what a message
    // says: a reworded message must not silently turn a check off.
    let mut found = Vec::new();
    for file in &oracle_files() {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, what) in prose_comparisons(&text) {
            found.push(format!("{}:{line}: {what}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "checks compare message text (key them on `Failure`; the spec's texts are checked once, \
         in `Checker::error_text`):\n{}",
        found.join("\n")
    );
}

/// The files that judge core: the invariant checker, the judge of invariants 16 to 19, the
/// reference rules of resume and the reference model.
fn oracle_files() -> Vec<std::path::PathBuf> {
    let mut files = ["sim/src/check.rs", "sim/src/judge.rs", "sim/src/reference.rs"]
        .map(|f| root().join(f))
        .to_vec();
    rust_files(&root().join("sim/src/oracle"), &mut files);
    rust_files(&root().join("sim/src/check"), &mut files);
    files
}

/// Core code an oracle must not decide with: its identity judgement, its protocol readers and
/// builders, its rollout scan, its timestamp parser, its wire helpers.
const CORE_DECIDERS: [&str; 9] = [
    "current_runtime(",
    "protocol::",
    "rollout::scan",
    "parse_rfc3339",
    "is_identity_expired",
    "wire::parse_",
    "wire::verify_",
    "open_task_id",
    ".matches(&",
];

#[test]
fn no_oracle_decides_with_cores_own_code() {
    // An oracle that asks the code it checks agrees with it by construction (spec invariant 17:
    // the backend, not the client's code, is the judge of time). Data types and named limits are
    // shared; decisions are not.
    let mut found = Vec::new();
    for file in oracle_files() {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if let Some(bad) = CORE_DECIDERS.iter().find(|d| code.contains(*d)) {
                found.push(format!("{}:{}: uses {bad}", file.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "oracles deciding with core's code:\n{}", found.join("\n"));
}

#[test]
fn the_message_text_rule_catches_what_it_names() {
    let text = [
        "if message.starts_with(\"Agent \") {",
        "    l.message.contains(\"prewarm failed\")",
        "    e.text == \"model request failed\"",
        "    v.starts_with(\"AgentAssertion\") && x.contains(\"a\\\" b\")",
        "    header.strip_prefix(\"AgentAssertion \").or(h.strip_prefix(\"Bearer \"))",
        "// message.starts_with(\"in a comment\")",
        "ok.starts_with(\"no-space\") && ok.contains(\"  \")",
        "spec.starts_with(\"the spec text\") // tidy: spec-text assertion",
        "// tidy: spec-text assertion",
        "spec.starts_with(\"after the marker\")",
    ]
    .join("\n");
    let lines: Vec<usize> = prose_comparisons(&text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, [1, 2, 3, 4]);
    assert_eq!(prose_comparisons(&text)[3].1, "contains(\"a\" b\"");
}

/// What a driver of core must never do itself: name the protocol's paths or rollout shapes,
/// build or read the lifecycle's data, or call core's deciders. It feeds core inputs and carries
/// out its commands; core decides.
const DRIVER_DECISIONS: [&str; 21] = [
    "session_state",
    "agent_task",
    "/v1/",
    "authenticate_app",
    "identity_expired",
    "x-openai-authorization",
    "protocol::",
    "rollout::scan",
    "RolloutLine {",
    "RolloutItem::",
    "AgentTask {",
    "Event {",
    "Failure::",
    "IdentityKey",
    "wire::parse_",
    "wire::verify_",
    "wire::sign",
    "open_task_id",
    "current_runtime(",
    "is_identity_expired",
    "usable_identity",
];

/// Lines of `text` where a driver decides something about the lifecycle ([`DRIVER_DECISIONS`]).
/// Comments and doc comments are prose and allowed.
fn driver_decisions(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        if let Some(bad) = DRIVER_DECISIONS.iter().find(|d| starts_a_word_in(code, d)) {
            found.push((n + 1, *bad));
        }
    }
    found
}

/// Whether `needle` occurs in `code` not preceded by a letter, digit or `_` (`Failure::` but not
/// `RequestFailure::`).
fn starts_a_word_in(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(at, _)| {
        !code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_runtime_decides_nothing_about_the_lifecycle() {
    // runtime/ is core's production driver: what the simulator tests is what ships only if
    // every decision is core's. (Core staying sans-IO is checked above.)
    let mut files = Vec::new();
    rust_files(&root().join("runtime/src"), &mut files);
    assert!(files.len() >= 4, "runtime/src has its files");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        for (line, bad) in driver_decisions(&text) {
            found.push(format!("{}:{line}: {bad}", file.display()));
        }
    }
    assert!(found.is_empty(), "lifecycle decisions in the runtime:\n{}", found.join("\n"));
}

#[test]
fn the_driver_rule_catches_what_it_names() {
    let text = [
        "let line = RolloutLine { timestamp, item };",
        "if path.starts_with(\"/v1/agent\") {",
        "let scan = agentsim_core::rollout::scan(&bytes);",
        "// the session_state line is on disk first",
        "machine.resume_thread(now, thread, &bytes);",
        "Err(RequestFailure::Timeout)",
        "if let Failure::TaskRegistration = cause {",
    ]
    .join("\n");
    let lines: Vec<usize> = driver_decisions(&text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, [1, 2, 3, 7]);
}

#[test]
fn only_drivers_read_the_wall_clock_or_os_randomness() {
    // clippy.toml bans both workspace-wide; an `allow` of that ban marks the places that read
    // them on purpose: the runtime (production), `sim serve` (a real-time server), and the
    // places that pace progress lines or measure speed, which no run sees. Nothing simulated may.
    let allowed = [
        "runtime/src/lib.rs",
        "runtime/src/driver.rs",
        "sim/src/serve",
        "sim/src/bench.rs",
        "sim/src/fuzz/campaign.rs",
        "sim/src/fuzz/mod.rs",
        "sim/src/compare",
        // The real side of the differential test runs in real time.
        "tests/differential.rs",
    ];
    let mut files = Vec::new();
    for dir in ["core/src", "sim/src", "runtime/src", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root()).expect("under the root").display().to_string();
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        if text.contains("allow(clippy::disallowed_methods)")
            && !allowed.iter().any(|a| relative.starts_with(a))
            && !relative.ends_with("tidy.rs")
        {
            found.push(relative);
        }
    }
    assert!(found.is_empty(), "files that lift the clock/randomness ban: {found:?}");
}
