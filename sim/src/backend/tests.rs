//! The backend model's own tests: the protocol, its checks, faults and records.

use super::faults::expected_field;
use super::*;
use agentsim_core::wire::{
    request_id, task_register_path, Abom, IdentityKey, IdentityRegistrationRequest, Method,
    TaskRegistrationRequest, TaskRegistrationResponse, ASSERTION_PREFIX, BISCUIT_PATH,
    BISCUIT_REQUEST_HEADER, BISCUIT_RESPONSE_HEADER, IDENTITY_REGISTER_PATH, MODEL_PATH,
};

const BASE: &str = "http://backend.invalid";
const TOKEN: &str = "tok-alice";
const ACCOUNT: &str = "acct-alice";

fn backend(ttl_ms: Option<u64>) -> Backend {
    let mut backend = Backend::new([7; 32], BackendConfig { identity_ttl_ms: ttl_ms });
    backend.add_account(ACCOUNT, TOKEN);
    backend
}

fn key() -> IdentityKey {
    IdentityKey::from_seed([3; 32])
}

fn biscuit_request(url: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url: format!("{BASE}{BISCUIT_PATH}"),
        headers: vec![
            ("Authorization".into(), format!("Bearer {TOKEN}")),
            ("X-Request-Id".into(), request_id([1; 16])),
            ("X-Original-Method".into(), "POST".into()),
            ("X-Original-Url".into(), url.into()),
        ],
        body: None,
    }
}

fn post(url: &str, biscuit: &str, body: String) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url: url.into(),
        headers: vec![(BISCUIT_REQUEST_HEADER.into(), biscuit.into())],
        body: Some(body),
    }
}

fn identity_body(key: &IdentityKey) -> String {
    let abom = Abom {
        agent_version: "0.1".into(),
        agent_harness_id: "agentsim".into(),
        running_location: "sim".into(),
    };
    serde_json::to_string(&IdentityRegistrationRequest {
        abom,
        agent_public_key: key.ssh_public_key(),
        capabilities: vec![],
    })
    .unwrap()
}

fn task_body(key: &IdentityKey, runtime: &str, timestamp: &str) -> String {
    let signature = key.sign_base64(&format!("{runtime}:{timestamp}"));
    serde_json::to_string(&TaskRegistrationRequest { signature, timestamp: timestamp.into() })
        .unwrap()
}

fn model_request(assertion: Option<String>) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url: format!("{BASE}{MODEL_PATH}"),
        headers: assertion.into_iter().map(|a| ("Authorization".into(), a)).collect(),
        body: Some("{}".into()),
    }
}

fn body_json(response: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", response.body_text()))
}

/// Mints a biscuit for `url` through the model.
#[track_caller]
fn mint(backend: &mut Backend, url: &str) -> String {
    let response = backend.handle(&biscuit_request(url), None);
    assert_eq!(response.status, 200, "{}", response.body_text());
    String::from_utf8(response.header(BISCUIT_RESPONSE_HEADER).expect("biscuit header").to_vec())
        .unwrap()
}

#[track_caller]
fn register_identity(backend: &mut Backend, key: &IdentityKey) -> IdentityRegistrationResponse {
    let url = format!("{BASE}{IDENTITY_REGISTER_PATH}");
    let biscuit = mint(backend, &url);
    let response = backend.handle(&post(&url, &biscuit, identity_body(key)), None);
    assert_eq!(response.status, 200, "{}", response.body_text());
    serde_json::from_slice(&response.body).unwrap()
}

fn task_request(backend: &mut Backend, key: &IdentityKey, runtime: &str) -> HttpRequest {
    let url = format!("{BASE}{}", task_register_path(runtime));
    let biscuit = mint(backend, &url);
    post(&url, &biscuit, task_body(key, runtime, &backend.now().rfc3339_secs()))
}

/// Registers a task and opens its sealed id.
#[track_caller]
fn register_task(backend: &mut Backend, key: &IdentityKey, runtime: &str) -> String {
    let request = task_request(backend, key, runtime);
    let response = backend.handle(&request, None);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let parsed: TaskRegistrationResponse = serde_json::from_slice(&response.body).unwrap();
    key.open_task_id(&parsed.encrypted_task_id).unwrap()
}

fn assertion(key: &IdentityKey, runtime: &str, task: &str) -> String {
    key.assertion_header(runtime, task, "2026-04-18T14:00:05Z")
}

#[test]
fn spec2_full_round_trip_through_the_model() {
    let mut backend = backend(None);
    let key = key();
    let identity = register_identity(&mut backend, &key);
    assert!(
        identity.agent_runtime_id.starts_with("agent-") && identity.agent_runtime_id.len() == 14
    );
    assert_eq!(identity.expires_at, None);
    assert_eq!(
        backend.latest_runtime(ACCOUNT).as_deref(),
        Some(identity.agent_runtime_id.as_str())
    );

    let task = register_task(&mut backend, &key, &identity.agent_runtime_id);
    assert!(task.starts_with("task_") && task.len() == 13, "{task}");
    assert_eq!(backend.task_runtime(&task).as_deref(), Some(identity.agent_runtime_id.as_str()));

    let response = backend
        .handle(&model_request(Some(assertion(&key, &identity.agent_runtime_id, &task))), None);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"id":"resp_1","status":"completed"}"#);
    assert_eq!(response.header("content-type"), Some(JSON_CONTENT_TYPE.as_bytes()));
    let response = backend.handle(&model_request(None), None);
    assert_eq!(response.body, br#"{"id":"resp_2","status":"completed"}"#);

    assert_eq!(backend.violations(), &[] as &[String]);
    let stats = backend.stats();
    assert_eq!(
        [Endpoint::Biscuit, Endpoint::IdentityRegister, Endpoint::TaskRegister, Endpoint::Model]
            .map(|e| stats.requests(e)),
        [2, 1, 1, 2]
    );
    assert_eq!((stats.biscuits_minted, stats.identities_registered, stats.tasks_issued), (2, 1, 1));
}

#[test]
fn same_seed_same_requests_give_identical_responses() {
    let run = || {
        let mut backend = backend(Some(60_000));
        let key = key();
        let identity = register_identity(&mut backend, &key);
        let request = task_request(&mut backend, &key, &identity.agent_runtime_id);
        (identity, backend.handle(&request, None))
    };
    assert_eq!(run(), run());
}

#[test]
fn biscuit_refuses_unknown_tokens_and_bad_headers() {
    let mut backend = backend(None);
    let url = format!("{BASE}{IDENTITY_REGISTER_PATH}");
    let mut request = biscuit_request(&url);
    request.headers[0].1 = "Bearer nope".into();
    let response = backend.handle(&request, None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (401, br#"{"error":"invalid_token"}"#.as_slice())
    );
    assert!(backend.violations().is_empty(), "an unknown token is not a client bug");

    let mut request = biscuit_request(&url);
    request.headers.retain(|(name, _)| name != "X-Request-Id");
    assert_eq!(backend.handle(&request, None).status, 400);
    let mut request = biscuit_request(&format!("{BASE}{MODEL_PATH}"));
    request.headers.retain(|(name, _)| name != "Authorization");
    assert_eq!(backend.handle(&request, None).status, 400);
    assert_eq!(backend.violations().len(), 2, "{:?}", backend.violations());
    assert!(backend.violations()[0].starts_with("GET /authenticate_app_v2: missing X-Request-Id"));
    // A server takes them as it logs them: each once, and the model keeps none.
    assert_eq!(backend.take_violations().len(), 2);
    assert!(backend.violations().is_empty() && backend.take_violations().is_empty());
    assert_eq!(backend.handle(&request, None).status, 400);
    let again = backend.take_violations();
    assert_eq!(again.len(), 1, "only the newer one: {again:?}");
    assert!(again[0].contains("/v1/responses is not a registration endpoint"), "{again:?}");
}

#[test]
fn registration_refuses_biscuits_for_other_urls_and_unknown_ones() {
    let mut backend = backend(None);
    let key = key();
    let url = format!("{BASE}{IDENTITY_REGISTER_PATH}");
    let other = mint(&mut backend, &format!("{BASE}{}", task_register_path("agent-00000000")));
    let response = backend.handle(&post(&url, &other, identity_body(&key)), None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (401, br#"{"error":"invalid_biscuit"}"#.as_slice())
    );
    let response = backend.handle(&post(&url, "bsc_forged", identity_body(&key)), None);
    assert_eq!(response.status, 401);
    let biscuit = mint(&mut backend, &url);
    let response = backend.handle(&post(&url, &biscuit, "{\"abom\":".into()), None);
    assert_eq!(response.status, 400);
    assert_eq!(
        backend.violations()[..2],
        [
            "POST /v1/agent/register: biscuit was minted for /v1/agent/agent-00000000/task/register".to_owned(),
            "POST /v1/agent/register: unknown biscuit".to_owned(),
        ]
    );
    assert!(backend.violations()[2]
        .starts_with("POST /v1/agent/register: body is not the expected JSON"));
    assert_eq!(backend.stats().identities_registered, 0);
}

#[test]
fn biscuit_url_is_compared_by_path_only() {
    let mut backend = backend(None);
    let biscuit = mint(&mut backend, &format!("http://127.0.0.1:4242{IDENTITY_REGISTER_PATH}"));
    let response = backend.handle(
        &post(&format!("{BASE}{IDENTITY_REGISTER_PATH}"), &biscuit, identity_body(&key())),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.body_text());
}

#[test]
fn ttl_gives_expires_at_and_expiry_refuses_tasks_and_assertions() {
    let mut backend = backend(Some(3_600_500));
    let key = key();
    let identity = register_identity(&mut backend, &key);
    assert_eq!(
        identity.expires_at.as_deref(),
        Some("2026-04-18T15:00:00Z"),
        "cut to whole seconds"
    );
    let runtime = identity.agent_runtime_id;
    let task = register_task(&mut backend, &key, &runtime);

    // Assertions stamped when they are sent, as a correct client does (a stale one would be
    // refused as `stale_assertion` before its expiry is looked at).
    let stamped = |at: &str| Some(key.assertion_header(&runtime, &task, at));
    backend.set_now(Timestamp::parse_rfc3339("2026-04-18T14:59:59.999Z").unwrap());
    assert!(backend.runtime_is_valid(&runtime));
    assert_eq!(backend.handle(&model_request(stamped("2026-04-18T14:59:59Z")), None).status, 200);

    backend.set_now(Timestamp::parse_rfc3339("2026-04-18T15:00:00Z").unwrap());
    assert!(!backend.runtime_is_valid(&runtime));
    let request = task_request(&mut backend, &key, &runtime);
    let response = backend.handle(&request, None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (401, br#"{"error":"identity_expired"}"#.as_slice())
    );
    let response = backend.handle(&model_request(stamped("2026-04-18T15:00:00Z")), None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (401, br#"{"error":"identity_expired"}"#.as_slice())
    );
    assert!(backend.violations().is_empty(), "{:?}", backend.violations());
}

#[test]
fn expire_and_revoke_refuse_from_now_on() {
    for revoke in [false, true] {
        let mut backend = backend(None);
        let key = key();
        let runtime = register_identity(&mut backend, &key).agent_runtime_id;
        let task = register_task(&mut backend, &key, &runtime);
        if revoke {
            backend.revoke(&runtime);
        } else {
            backend.expire(&runtime);
        }
        let request = task_request(&mut backend, &key, &runtime);
        assert_eq!(backend.handle(&request, None).body, br#"{"error":"identity_expired"}"#);
        let response = backend.handle(&model_request(Some(assertion(&key, &runtime, &task))), None);
        assert_eq!(response.body, br#"{"error":"identity_expired"}"#);
        // A new identity of the same account is unaffected.
        let rotated =
            register_identity(&mut backend, &IdentityKey::from_seed([4; 32])).agent_runtime_id;
        assert_eq!(backend.latest_runtime(ACCOUNT), Some(rotated));
        assert!(backend.violations().is_empty());
    }
}

#[test]
fn out_of_band_registration_rotates_the_latest_runtime() {
    let mut backend = backend(Some(1_000));
    let first = register_identity(&mut backend, &key()).agent_runtime_id;
    let other = IdentityKey::from_seed([5; 32]);
    let rotated = backend.register_identity_out_of_band(ACCOUNT, &other.ssh_public_key());
    assert_ne!(rotated.agent_runtime_id, first);
    assert_eq!(rotated.expires_at.as_deref(), Some("2026-04-18T14:00:01Z"));
    assert_eq!(backend.latest_runtime(ACCOUNT), Some(rotated.agent_runtime_id.clone()));
    assert_eq!(backend.latest_runtime("acct-bob"), None);
    // The old identity still works: rotation elsewhere does not revoke it.
    register_task(&mut backend, &key(), &first);
    register_task(&mut backend, &other, &rotated.agent_runtime_id);
}

#[test]
fn bad_task_signature_is_refused_and_recorded_as_a_violation() {
    let mut backend = backend(None);
    let key = key();
    let runtime = register_identity(&mut backend, &key).agent_runtime_id;
    let url = format!("{BASE}{}", task_register_path(&runtime));
    let biscuit = mint(&mut backend, &url);
    let forged = task_body(&IdentityKey::from_seed([9; 32]), &runtime, "2026-04-18T14:00:00Z");
    let response = backend.handle(&post(&url, &biscuit, forged), None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (401, br#"{"error":"invalid_signature"}"#.as_slice())
    );
    assert_eq!(
        backend.violations(),
        [format!("POST /v1/agent/{runtime}/task/register: signature does not verify under the registered key")]
    );
    assert_eq!(backend.stats().tasks_issued, 0);
}

#[test]
fn unknown_runtime_is_404_without_a_violation() {
    let mut backend = backend(None);
    let request = task_request(&mut backend, &key(), "agent-deadbeef");
    let response = backend.handle(&request, None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (404, br#"{"error":"unknown_runtime"}"#.as_slice())
    );
    assert!(backend.violations().is_empty());
}

#[test]
fn spec2_assertions_stamped_more_than_300_s_away_are_stale() {
    let mut backend = backend(None);
    let key = key();
    let runtime = register_identity(&mut backend, &key).agent_runtime_id;
    let task = register_task(&mut backend, &key, &runtime);
    // The backend's clock: 14:10:00. 300 s either side is accepted, 301 s is not.
    backend.set_now(Timestamp::SIM_EPOCH.plus_ms(600_000));
    for (stamp, status) in [
        ("2026-04-18T14:05:00Z", 200),
        ("2026-04-18T14:15:00Z", 200),
        ("2026-04-18T14:04:59Z", 401),
        ("2026-04-18T14:15:01Z", 401),
    ] {
        let header = key.assertion_header(&runtime, &task, stamp);
        let response = backend.handle(&model_request(Some(header)), None);
        assert_eq!(response.status, status, "{stamp}");
        if status == 401 {
            assert_eq!(response.body, br#"{"error":"stale_assertion"}"#, "{stamp}");
        }
    }
    assert_eq!(backend.violations().len(), 2, "{:?}", backend.violations());
    assert!(backend.violations()[0].contains("300 s"), "{}", backend.violations()[0]);
}

#[test]
fn bad_assertions_are_invalid_and_recorded() {
    let mut backend = backend(None);
    let key = key();
    let runtime = register_identity(&mut backend, &key).agent_runtime_id;
    let task = register_task(&mut backend, &key, &runtime);
    let other_key = IdentityKey::from_seed([8; 32]);
    let other_runtime = register_identity(&mut backend, &other_key).agent_runtime_id;
    for header in [
        format!("{ASSERTION_PREFIX}!!!"),
        assertion(&other_key, &other_runtime, &task),
        assertion(&other_key, &runtime, &task),
        assertion(&key, &runtime, "task_unknown"),
    ] {
        let response = backend.handle(&model_request(Some(header)), None);
        assert_eq!(
            (response.status, response.body.as_slice()),
            (401, br#"{"error":"invalid_assertion"}"#.as_slice())
        );
    }
    // A task this backend never issued is refused but recorded as no violation: a correct
    // client meets it when it resumes a rollout written against another backend.
    assert_eq!(backend.violations().len(), 3, "{:?}", backend.violations());
    assert!(backend.violations().iter().all(|v| v.starts_with("POST /v1/responses: ")));
    // A bearer token on the model request is not an assertion.
    let response = backend.handle(&model_request(Some("Bearer tok".into())), None);
    assert_eq!(response.status, 200);
}

#[test]
fn unknown_paths_and_wrong_methods_are_violations() {
    let mut backend = backend(None);
    let response =
        backend.handle(&model_request(None).with_url(&format!("{BASE}/v2/nothing")), None);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (404, br#"{"error":"not_found"}"#.as_slice())
    );
    let mut request = model_request(None);
    request.method = Method::Get;
    assert_eq!(backend.handle(&request, None).status, 405);
    assert_eq!(backend.violations().len(), 2);
    assert_eq!(backend.stats().unknown_path_requests, 1);
}

trait WithUrl {
    fn with_url(self, url: &str) -> Self;
}
impl WithUrl for HttpRequest {
    fn with_url(mut self, url: &str) -> Self {
        self.url = url.into();
        self
    }
}

/// Every fault on every endpoint, and the shape of the answer.
#[test]
fn every_fault_kind_has_its_response_shape() {
    let key = key();
    let setup = || {
        let mut backend = backend(None);
        let runtime = register_identity(&mut backend, &key).agent_runtime_id;
        (backend, runtime)
    };
    let kinds = FaultKind::PLAIN_NAMES
        .iter()
        .map(|name| FaultKind::from_plain_name(name).unwrap())
        .chain([
            FaultKind::Status { status: 503, body: None },
            FaultKind::Status { status: 429, body: Some("slow down".into()) },
        ]);
    for kind in kinds {
        for endpoint in Endpoint::ALL {
            let (mut backend, runtime) = setup();
            let request = match endpoint {
                Endpoint::Biscuit => biscuit_request(&format!("{BASE}{IDENTITY_REGISTER_PATH}")),
                Endpoint::IdentityRegister => {
                    let url = format!("{BASE}{IDENTITY_REGISTER_PATH}");
                    let biscuit = mint(&mut backend, &url);
                    post(&url, &biscuit, identity_body(&key))
                }
                Endpoint::TaskRegister => task_request(&mut backend, &key, &runtime),
                Endpoint::Model => model_request(None),
            };
            let before = backend.stats();
            let response = backend.handle(&request, Some(&kind));
            check_fault_shape(&kind, endpoint, &response, &key);
            let after = backend.stats();
            let changed = after.biscuits_minted
                + after.identities_registered
                + after.tasks_issued
                + after.model_responses
                > before.biscuits_minted
                    + before.identities_registered
                    + before.tasks_issued
                    + before.model_responses;
            assert_eq!(
                changed,
                !matches!(kind, FaultKind::Status { .. }),
                "{kind:?} on {endpoint}: state change"
            );
            assert!(
                backend.violations().is_empty(),
                "{kind:?} on {endpoint}: {:?}",
                backend.violations()
            );
        }
    }
}

#[track_caller]
fn check_fault_shape(
    kind: &FaultKind,
    endpoint: Endpoint,
    response: &HttpResponse,
    key: &IdentityKey,
) {
    let what = format!("{kind:?} on {endpoint}");
    let biscuit = response.header(BISCUIT_RESPONSE_HEADER);
    let content_type = response.header("content-type");
    let field = expected_field(Some(endpoint));
    let malformed = field.map_or(b"{".to_vec(), |f| format!(r#"{{"{f}": "#).into_bytes());
    match kind {
        FaultKind::Status { status, body } => {
            assert_eq!(response.status, *status, "{what}");
            assert_eq!(
                response.body,
                body.as_deref().unwrap_or(r#"{"error":"injected"}"#).as_bytes(),
                "{what}"
            );
            assert_eq!(biscuit, None, "{what}");
            return;
        }
        FaultKind::Timeout | FaultKind::Reset => {
            assert_eq!(response.status, 200, "{what}: handled normally");
            assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_ok(), "{what}");
        }
        FaultKind::MalformedJson => assert_eq!(response.body, malformed, "{what}"),
        FaultKind::MissingField => assert_eq!(response.body, b"{}", "{what}"),
        FaultKind::WrongJsonTypes => match field {
            Some(f) => assert_eq!(body_json(response)[f], 42, "{what}"),
            None => assert_eq!(response.body, b"[42]", "{what}"),
        },
        FaultKind::EmptyBody => assert!(response.body.is_empty(), "{what}"),
        FaultKind::WrongContentType => {
            assert_eq!(content_type, Some(b"text/html".as_slice()), "{what}");
            assert!(response.body.starts_with(b"<html>"), "{what}");
        }
        FaultKind::HugeBody => {
            assert_eq!(response.body.len(), HUGE_BODY_BYTES, "{what}");
            assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_err(), "{what}");
        }
        FaultKind::BadBase64 | FaultKind::WrongKeyBox | FaultKind::NonUtf8Plaintext
            if endpoint == Endpoint::TaskRegister =>
        {
            let encrypted = body_json(response)["encrypted_task_id"].as_str().unwrap().to_owned();
            let expected = match kind {
                FaultKind::BadBase64 => agentsim_core::wire::TaskIdError::BadBase64,
                FaultKind::WrongKeyBox => agentsim_core::wire::TaskIdError::Decrypt,
                _ => agentsim_core::wire::TaskIdError::NotUtf8,
            };
            assert_eq!(key.open_task_id(&encrypted), Err(expected), "{what}");
        }
        FaultKind::MissingBiscuitHeader | FaultKind::NonUtf8BiscuitHeader
            if endpoint == Endpoint::Biscuit =>
        {
            let expected =
                matches!(kind, FaultKind::NonUtf8BiscuitHeader).then_some([0xff, 0xfe].as_slice());
            assert_eq!(biscuit, expected, "{what}");
            assert_eq!(response.status, 200, "{what}");
            return;
        }
        _ => assert_eq!(
            response.body, malformed,
            "{what}: a fault that does not apply is MalformedJson"
        ),
    }
    assert_eq!(response.status, 200, "{what}");
    if !matches!(kind, FaultKind::WrongContentType) {
        assert_eq!(content_type, Some(JSON_CONTENT_TYPE.as_bytes()), "{what}");
    }
    if endpoint == Endpoint::Biscuit {
        let biscuit = biscuit.map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert!(
            biscuit.is_some_and(|b| b.starts_with("bsc_") && b.len() == 36),
            "{what}: body faults keep the header"
        );
    }
}

#[test]
fn status_fault_records_violations_without_changing_state() {
    let mut backend = backend(None);
    let url = format!("{BASE}{IDENTITY_REGISTER_PATH}");
    let response = backend.handle(
        &post(&url, "bsc_forged", identity_body(&key())),
        Some(&FaultKind::Status { status: 500, body: None }),
    );
    assert_eq!(response.status, 500);
    assert_eq!(backend.violations(), ["POST /v1/agent/register: unknown biscuit".to_owned()]);
}

#[test]
fn faulted_task_registration_still_issues_the_task() {
    let mut backend = backend(None);
    let key = key();
    let runtime = register_identity(&mut backend, &key).agent_runtime_id;
    let request = task_request(&mut backend, &key, &runtime);
    backend.handle(&request, Some(&FaultKind::MalformedJson));
    assert_eq!(backend.stats().tasks_issued, 1);
}
