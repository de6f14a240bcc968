//! `sim fuzz` as a test: a bounded campaign from seed 0 over the memory transport must find
//! nothing in core. This is the test command of the fuzzer's mutation score (README, "Measuring
//! the fuzzer"): cargo-mutants breaks core one mutant at a time and counts the mutants this test
//! catches. `AGENTSIM_MUTANT_CASES` sets the number of cases (default 300, a second or two under
//! `cargo test`). Besides finding nothing, the campaign must reach most of core's coverage marks.

use std::process::Command;

#[test]
fn a_bounded_fuzz_campaign_finds_nothing_in_core() {
    let cases = std::env::var("AGENTSIM_MUTANT_CASES").unwrap_or_else(|_| "300".to_owned());
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["fuzz", "--seed", "0", "--cases", &cases, "--shrink-time", "0s"])
        .args(["--out", &std::env::temp_dir().join("agentsim-fuzz-campaign").display().to_string()])
        .output()
        .expect("sim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sim fuzz failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("result: no failure"), "{stdout}");
    // The campaign also reaches the code it exists for: most of core's coverage marks.
    let coverage = stdout
        .lines()
        .find_map(|l| l.strip_prefix("coverage: "))
        .and_then(|rest| rest.split_once(" marks hit"))
        .and_then(|(ratio, _)| ratio.split_once('/'))
        .and_then(|(hit, all)| Some((hit.parse::<usize>().ok()?, all.parse::<usize>().ok()?)));
    let (hit, all) = coverage.unwrap_or_else(|| panic!("no coverage line in:\n{stdout}"));
    assert!(hit * 4 >= all * 3, "only {hit} of {all} coverage marks hit:\n{stdout}");
}
