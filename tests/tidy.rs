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
