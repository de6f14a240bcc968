//! Spec invariant 14: nothing secret leaves the auth store. No private key, access token or biscuit
//! appears in any rollout, event, log line, request log, timeline or snapshot of any run.
//!
//! The simulator's checker already looks (a leak makes `report.violation` invariant 14). This file
//! looks on its own, in three ways: for every exact secret the run handed out
//! ([`RunReport::secrets`]), for every access token re-derived from the seed the way the world
//! mints it, and for anything *shaped* like a secret (PKCS#8 Ed25519 keys in base64, `bsc_`
//! biscuits, `at-` tokens), which needs no list at all. A negative test plants each kind of secret
//! and proves each way can fail.

use agentsim_core::wire::IdentityKey;
use agentsim_tests::{all_scenarios, inline_scenario, run_with};
use sim::check::{Checker, Invariant};
use sim::scenario::{AuthSpec, Scenario, Step};
use sim::{RunOptions, RunReport, TransportKind};

/// Every text of a run someone could read, named.
fn artifacts(report: &RunReport) -> Vec<(String, Vec<u8>)> {
    let mut texts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, text: &[u8]| texts.push((name, text.to_vec()));
    for (thread, bytes) in &report.rollouts {
        add(format!("rollout {thread}"), bytes);
    }
    let t = &report.tally;
    let timeline = t.timeline();
    for (kind, lines) in
        [("event", &t.events), ("log", &t.logs), ("request", &t.requests), ("timeline", &timeline)]
    {
        for (n, line) in lines.iter().enumerate() {
            add(format!("{kind} {}", n + 1), line.as_bytes());
        }
    }
    add("event values".into(), format!("{:?}", t.event_values).as_bytes());
    add("snapshot".into(), report.snapshot().as_bytes());
    add("report debug".into(), format!("{report:?}").as_bytes());
    add("verdict".into(), report.verdict().as_bytes());
    texts
}

/// The base64 prefix every PKCS#8 Ed25519 private key starts with (the DER header), found by
/// encoding two keys rather than written down.
fn pkcs8_prefix() -> String {
    let a = IdentityKey::from_seed([0x00; 32]).to_pkcs8_base64();
    let b = IdentityKey::from_seed([0xff; 32]).to_pkcs8_base64();
    let common: String =
        a.chars().zip(b.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect();
    assert!(common.len() >= 16, "PKCS#8 keys share no header: {a} {b}");
    common
}

/// Whether `text` holds `prefix` followed by `hex_len` lowercase hex digits.
fn has_hex_token(text: &[u8], prefix: &[u8], hex_len: usize) -> bool {
    text.windows(prefix.len() + hex_len).any(|w| {
        w.starts_with(prefix)
            && w[prefix.len()..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

fn contains(text: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && text.windows(needle.len()).any(|w| w == needle)
}

/// The access token the simulated world mints for `account` in a run with master seed `seed`,
/// re-derived here.
fn access_token(seed: u64, account: &str) -> String {
    let mut rng = sim::seed::stream(seed, &format!("token/{account}"));
    format!("at-{}", sim::seed::hex(&mut rng, 24))
}

/// Every ChatGPT account a scenario signs in to.
fn accounts(scenario: &Scenario) -> Vec<String> {
    let specs =
        std::iter::once(&scenario.config.auth).chain(scenario.steps.iter().filter_map(|s| {
            match &s.value {
                Step::Auth(spec) => Some(spec),
                _ => None,
            }
        }));
    let mut accounts: Vec<String> = specs
        .filter_map(|spec| match spec {
            AuthSpec::ChatGpt { account, .. } => Some(account.clone()),
            AuthSpec::None | AuthSpec::ApiKey => None,
        })
        .collect();
    accounts.sort();
    accounts.dedup();
    accounts
}

/// Every leak this test finds on its own, as `artifact: what`; `tokens` are exact secrets to look
/// for besides the run's own list.
fn leaks(report: &RunReport, tokens: &[String]) -> Vec<String> {
    let pkcs8 = pkcs8_prefix();
    let mut found = Vec::new();
    for (name, text) in artifacts(report) {
        for secret in report.secrets().iter().chain(tokens) {
            if contains(&text, secret.as_bytes()) {
                found.push(format!("{name}: the secret {}…", &secret[..6.min(secret.len())]));
            }
        }
        if contains(&text, pkcs8.as_bytes()) {
            found.push(format!("{name}: a PKCS#8 private key"));
        }
        if has_hex_token(&text, b"bsc_", 32) {
            found.push(format!("{name}: a biscuit"));
        }
        if has_hex_token(&text, b"at-", 48) {
            found.push(format!("{name}: an access token"));
        }
    }
    found
}

/// The checks on one run: no leak by any of the three searches, the checker agrees, and the
/// secrets list holds what it must (the run's access tokens; keys that are keys).
#[track_caller]
fn check_run(scenario: &Scenario, transport: TransportKind) {
    let report = run_with(scenario, &RunOptions { transport, ..RunOptions::default() });
    let what = format!("{} over {}", scenario.name, transport.name());
    if let Some(v) = &report.violation {
        assert_ne!(
            v.invariant,
            Invariant::NoSecrets,
            "{what}: the checker found a leak: {}",
            v.message
        );
    }
    let tokens: Vec<String> =
        accounts(scenario).iter().map(|a| access_token(report.seed, a)).collect();
    for token in &tokens {
        assert!(report.secrets().contains(token), "{what}: the run's secrets lack an access token");
    }
    let pkcs8 = pkcs8_prefix();
    for secret in report.secrets().iter().filter(|s| s.starts_with(&pkcs8)) {
        assert!(IdentityKey::from_pkcs8_base64(secret).is_ok(), "{what}: a key secret is no key");
    }
    let found = leaks(&report, &tokens);
    assert!(found.is_empty(), "{what}: secrets leaked:\n{}", found.join("\n"));
}

/// Every scenario in-process; every third one over real HTTP too.
#[test]
fn inv14_no_secret_in_any_artifact_of_any_scenario() {
    for (n, scenario) in all_scenarios().iter().enumerate() {
        check_run(scenario, TransportKind::Memory);
        if n % 3 == 0 {
            check_run(scenario, TransportKind::Http);
        }
    }
}

/// A run that hands out many secrets: a warm identity, rotations, a workspace switch and back (two
/// access tokens), a revoked identity re-registered, crashes and restarts, and failures whose error
/// texts carry response bodies.
const SECRET_HEAVY: &str = "\
description: many identities, tokens and biscuits, and error texts
seed: 31
identity: warm
fault task_register 2 status=500 body=\"upstream said no\"
fault biscuit 5 missing_biscuit_header
start A
start B
settle
turn A \"one\"
rotate_identity
turn A \"two\"
turn B \"one\"
auth chatgpt account=acct-2 user=user-9
turn A \"three\"
auth chatgpt account=acct-1 user=user-1
revoke_identity
turn B \"two\"
crash on_response task_register
turn A \"four\"
restart
resume A
resume B
turn A \"five\"
fork C from A
turn C \"six\"
settle
expect task A current
";

#[test]
fn inv14_no_secret_in_a_run_full_of_secrets_over_both_transports() {
    let scenario = inline_scenario(std::path::Path::new("secret_heavy.scn"), SECRET_HEAVY);
    for transport in [TransportKind::Memory, TransportKind::Http] {
        let report = run_with(&scenario, &RunOptions { transport, ..RunOptions::default() });
        assert!(report.passed(), "{}\n{}", report.verdict(), report.failed_expectations.join("\n"));
        let secrets = report.secrets();
        let keys = secrets.iter().filter(|s| s.starts_with(&pkcs8_prefix())).count();
        let biscuits = secrets.iter().filter(|s| s.starts_with("bsc_")).count();
        let tokens = secrets.iter().filter(|s| s.starts_with("at-")).count();
        assert!(
            keys >= 3 && biscuits >= 10 && tokens == 2,
            "{keys} keys, {biscuits} biscuits, {tokens} tokens"
        );
        check_run(&scenario, transport);
    }
}

/// Each way of looking can fail: a secret of each kind planted in a copy of a real run's artifacts
/// is found by this file's search, and the simulator's own check reports invariant 14.
#[test]
fn inv14_a_planted_secret_is_caught() {
    let scenario = inline_scenario(std::path::Path::new("secret_heavy.scn"), SECRET_HEAVY);
    let mut report = run_with(&scenario, &RunOptions::default());
    assert!(leaks(&report, &[]).is_empty());
    let key =
        report.secrets().iter().find(|s| s.starts_with(&pkcs8_prefix())).expect("a key").clone();
    let biscuit =
        report.secrets().iter().find(|s| s.starts_with("bsc_")).expect("a biscuit").clone();
    let token = access_token(report.seed, "acct-2");
    // A secret this run never handed out, caught by its shape alone.
    let stranger = IdentityKey::from_seed([42; 32]).to_pkcs8_base64();
    let planted_event = report.tally.events.len();
    for (secret, kind) in [
        (&key, "the secret"),
        (&biscuit, "the secret"),
        (&token, "the secret"),
        (&stranger, "a PKCS#8 private key"),
    ] {
        let line = format!("+00:00:01.000 A error \"upstream echoed {secret}\"");
        report.tally.events.push(line.clone());
        let found = leaks(&report, &[]);
        assert!(
            found.iter().any(|f| f.starts_with(&format!("event {}: {kind}", planted_event + 1))),
            "planted {kind} not found: {found:?}"
        );
        report.tally.events.pop();

        let mut checker = Checker::new(true, true, true);
        checker.secrets = report.secrets().to_vec();
        checker.secrets.push(token.clone());
        checker.check_secrets(std::iter::once(line.as_bytes()));
        if secret != &stranger {
            let violation = checker.violation.expect("the simulator's check caught the secret");
            assert_eq!(violation.invariant, Invariant::NoSecrets);
            assert!(!violation.message.contains(secret.as_str()), "the report of a leak leaks it");
        }
    }
    // Shapes: a biscuit and a token that are not in the run's list are still caught.
    report.rollouts.insert("Z".into(), b"bsc_0123456789abcdef0123456789abcdef\n".to_vec());
    assert!(leaks(&report, &[]).iter().any(|f| f == "rollout Z: a biscuit"));
    let token_line = format!("at-{}\n", "0a".repeat(24));
    report.rollouts.insert("Z".into(), token_line.into_bytes());
    assert!(leaks(&report, &[]).iter().any(|f| f == "rollout Z: an access token"));
}

/// Printing a report never prints its secrets: its `Debug` redacts them.
#[test]
fn inv14_a_report_debug_redacts_its_secrets() {
    let scenario = inline_scenario(std::path::Path::new("secret_heavy.scn"), SECRET_HEAVY);
    let report = run_with(&scenario, &RunOptions::default());
    let debug = format!("{report:?}");
    assert!(debug.contains(&format!("<{} secrets, redacted>", report.secrets().len())), "{debug}");
    for secret in report.secrets() {
        assert!(!debug.contains(secret.as_str()));
    }
}
