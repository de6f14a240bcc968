//! The header: defaults, comments and blank lines, the description, header keys, auth,
//! durations and fault lines.

use std::collections::BTreeMap;

use super::*;
use crate::fault::{CallMatch, FaultKind};

#[test]
fn minimal_scenario_has_the_defaults() {
    let scenario = check("description: the smallest scenario\nstart A\n");
    assert_eq!(scenario.name, "t");
    assert_eq!(scenario.path, Path::new(PATH));
    assert_eq!(scenario.description, "the smallest scenario");
    assert_eq!(scenario.config, ScenarioConfig::default());
    assert_eq!(scenario.config.auth, chatgpt("acct-1", Some("user-1")));
    assert_eq!(scenario.config.latency_ms, (5, 250));
    assert!(scenario.config.use_agent_identity && scenario.config.persist_task);
    assert_eq!(scenario.steps, vec![Located { line: 2, value: start("A") }]);
    assert!(scenario.faults.is_empty() && scenario.expects.is_empty());
}

#[test]
fn comments_blank_lines_indentation_crlf_and_bom_are_ignored() {
    let text =
        "\u{feff}# a comment\r\n\r\n  description: d # trailing comment\r\n\tseed: 7 # why\r\n\
                \n   # indented comment\nstart A # go\n";
    let scenario = check(text);
    assert_eq!(scenario.description, "d");
    assert_eq!(scenario.config.seed, Some(7));
    assert_eq!(scenario.steps, vec![Located { line: 7, value: start("A") }]);
}

#[test]
fn description_is_free_text_or_one_string() {
    let description = |line: &str| check(&format!("{line}\nstart A")).description;
    assert_eq!(description("description:  spaces   inside  \t"), "spaces   inside");
    assert_eq!(description("description:a \"quoted\" word"), "a \"quoted\" word");
    assert_eq!(description("description: issue #12"), "issue");
    assert_eq!(description("description: \"issue #12\\n\\t\\\\\" # why"), "issue #12\n\t\\");
    assert_eq!(description("description: \" padded \""), " padded ");
}

#[test]
fn header_keys() {
    let config = check_config(
        "seed: 18446744073709551615\nexpiry: as_shipped\npersist_task: false\nflag: off\n\
         identity_ttl: 1h30m\nidentity: warm\nauth: api_key\nlatency: 0ms..2s\n\
         fault_rate: model=1000 biscuit=0\nfault_kinds: timeout status=503 body=\"x\" reset",
    );
    let expected = ScenarioConfig {
        seed: Some(u64::MAX),
        expiry: ExpiryPolicy::AsShipped,
        persist_task: false,
        use_agent_identity: false,
        identity_ttl_ms: Some(5_400_000),
        identity: InitialIdentity::Warm,
        auth: AuthSpec::ApiKey,
        latency_ms: (0, 2_000),
        random_faults: RandomFaults {
            rate_per_mille: BTreeMap::from([(Endpoint::Model, 1000), (Endpoint::Biscuit, 0)]),
            kinds: vec![
                FaultKind::Timeout,
                FaultKind::Status { status: 503, body: Some("x".into()) },
                FaultKind::Reset,
            ],
        },
    };
    assert_eq!(config, expected);

    assert_eq!(check_config("expiry: reacquire").expiry, ExpiryPolicy::Reacquire);
    assert!(check_config("persist_task: true").persist_task);
    assert!(check_config("flag: on").use_agent_identity);
    assert_eq!(check_config("identity: none").identity, InitialIdentity::None);
    assert_eq!(check_config("seed:0").seed, Some(0));
}

#[test]
fn header_auth() {
    let auth = |value: &str| check_config(&format!("auth: {value}")).auth;
    assert_eq!(auth("none"), AuthSpec::None);
    assert_eq!(auth("api_key"), AuthSpec::ApiKey);
    assert_eq!(auth("chatgpt account=acct-2"), chatgpt("acct-2", None));
    assert_eq!(auth("chatgpt account=a.b@c_d user=u-1"), chatgpt("a.b@c_d", Some("u-1")));
    assert_eq!(auth("chatgpt user=u account=a"), chatgpt("a", Some("u")));
}

#[test]
fn durations() {
    let ttl = |value: &str| check_config(&format!("identity_ttl: {value}")).identity_ttl_ms;
    assert_eq!(ttl("250ms"), Some(250));
    assert_eq!(ttl("15s"), Some(15_000));
    assert_eq!(ttl("2m"), Some(120_000));
    assert_eq!(ttl("1h"), Some(3_600_000));
    assert_eq!(ttl("1d"), Some(86_400_000));
    assert_eq!(ttl("1d2h3m4s5ms"), Some(93_784_005));
    assert_eq!(ttl("1m1ms"), Some(60_001));
    assert_eq!(ttl("0s"), Some(0));
    assert_eq!(check_steps("advance 1s500ms\n"), vec![Step::Advance { ms: 1_500 }]);
}

#[test]
fn faults() {
    let scenario = check(
        "description: d\n\
         fault biscuit 3 timeout\n\
         fault identity_register 2..4 status=503\n\
         fault task_register 5.. status=401 body=\"{\\\"error\\\":\\\"identity_expired\\\"}\"\n\
         fault model * reset\n\
         fault model 1..1 status=200\n\
         start A\n",
    )
    .faults;
    let rule = |endpoint, calls, kind| FaultRule { endpoint, calls, kind };
    let values: Vec<FaultRule> = scenario.iter().map(|f| f.value.clone()).collect();
    assert_eq!(scenario.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
    assert_eq!(
        values[..4],
        [
            rule(Endpoint::Biscuit, CallMatch::Nth(3), FaultKind::Timeout),
            rule(
                Endpoint::IdentityRegister,
                CallMatch::Range { from: 2, to: 4 },
                FaultKind::Status { status: 503, body: None }
            ),
            rule(
                Endpoint::TaskRegister,
                CallMatch::From(5),
                FaultKind::Status {
                    status: 401,
                    body: Some("{\"error\":\"identity_expired\"}".into())
                }
            ),
            rule(Endpoint::Model, CallMatch::Every, FaultKind::Reset),
        ]
    );
    assert_eq!(
        values[4],
        rule(
            Endpoint::Model,
            CallMatch::Range { from: 1, to: 1 },
            FaultKind::Status { status: 200, body: None }
        )
    );
}

#[test]
fn every_plain_fault_kind_parses() {
    for name in FaultKind::PLAIN_NAMES {
        let scenario = check(&format!("description: d\nfault model 1 {name}\nstart A\n"));
        assert_eq!(Some(scenario.faults[0].value.kind.clone()), FaultKind::from_plain_name(name));
    }
}
