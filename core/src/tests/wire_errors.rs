//! The error texts of spec section 2 (and section 4) and the shapes of the requests.

use super::*;

// ---- spec section 2: error texts ---------------------------------------------------------

enum Outcome {
    Respond(HttpResponse),
    Fail(RequestFailure),
}

/// A turn joins the prewarm of `agent-a`; the request for `stage` gets `outcome`. The turn's one
/// error carries `error`, and so does the prewarm's warn line.
#[track_caller]
fn check_task_error(
    stage: InFlightMatch<'_>,
    outcome: impl FnOnce(&mut Harness) -> Outcome,
    error: &str,
) {
    let mut h = Harness::with_identity(identity("agent-a", 1));
    h.start("t1");
    h.turn("t1", 1);
    let id = h.answer_until(stage);
    match outcome(&mut h) {
        Outcome::Respond(response) => h.answer_with(id, response),
        Outcome::Fail(failure) => h.fail(id, failure),
    }
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_errors(&h, "t1", &[&format!("{TASK_FAILED}{error}")]);
    assert_eq!(
        logged_fields(
            &h,
            "startup agent task prewarm failed; regular turns will retry registration",
            "error"
        ),
        [error]
    );
    assert!(!h.sent.iter().any(|(_, r)| r.path() == wire::MODEL_PATH), "no model request");
}

/// The identity registration of a session start meets `outcome` at `stage`; the start's one
/// error carries `error`.
#[track_caller]
fn check_identity_error(stage: InFlightMatch<'_>, outcome: Outcome, error: &str) {
    let mut h = Harness::signed_in();
    h.start("t1");
    let id = h.answer_until(stage);
    match outcome {
        Outcome::Respond(response) => h.answer_with(id, response),
        Outcome::Fail(failure) => h.fail(id, failure),
    }
    assert_events(&h, "t1", &["error"]);
    assert_errors(&h, "t1", &[&format!("{START_FAILED}{error}")]);
}

#[test]
fn spec2_error_text_biscuit_non_2xx() {
    let error = format!("agent identity biscuit minting failed with status 403 from {BASE}/authenticate_app_v2: denied");
    check_task_error(
        InFlightMatch::TaskBiscuit("t1"),
        |_| Outcome::Respond(response(403, "denied")),
        &error,
    );
    check_identity_error(
        InFlightMatch::IdentityBiscuit,
        Outcome::Respond(response(403, "denied")),
        &error,
    );
}

#[test]
fn spec2_error_text_biscuit_header_missing_or_not_utf8() {
    // [ours] The spec says only that this is an error; the text is core's.
    let error = format!("agent identity biscuit response from {BASE}/authenticate_app_v2 has no valid x-openai-authorization header");
    check_task_error(
        InFlightMatch::TaskBiscuit("t1"),
        |_| Outcome::Respond(response(200, "")),
        &error,
    );
    let not_utf8 = HttpResponse {
        status: 200,
        headers: vec![("x-openai-authorization".into(), vec![0xff, 0xfe])],
        body: vec![],
    };
    check_task_error(InFlightMatch::TaskBiscuit("t1"), |_| Outcome::Respond(not_utf8), &error);
    check_identity_error(
        InFlightMatch::IdentityBiscuit,
        Outcome::Respond(response(204, "")),
        &error,
    );
}

#[test]
fn spec2_error_text_identity_non_2xx() {
    let error = format!("agent identity registration failed with status 429 from {BASE}/v1/agent/register: slow down");
    check_identity_error(
        InFlightMatch::IdentityRegister,
        Outcome::Respond(response(429, "slow down")),
        &error,
    );
}

#[test]
fn spec2_error_text_identity_unparsable() {
    let error = format!("failed to parse agent identity response from {BASE}/v1/agent/register");
    for body in [
        "not json",
        "{}",
        r#"{"agent_runtime_id":"a/b"}"#,
        r#"{"agent_runtime_id":"agent-1","expires_at":"tomorrow"}"#,
    ] {
        check_identity_error(
            InFlightMatch::IdentityRegister,
            Outcome::Respond(response(200, body)),
            &error,
        );
    }
}

#[test]
fn spec2_error_text_identity_send_failure() {
    // [ours] Section 2 names the send failure of task registration only; identity's mirrors it.
    let error =
        format!("failed to send agent identity registration request to {BASE}/v1/agent/register");
    check_identity_error(
        InFlightMatch::IdentityRegister,
        Outcome::Fail(RequestFailure::Timeout),
        &error,
    );
}

#[test]
fn spec2_error_text_task_non_2xx() {
    let error = format!("agent task registration failed with status 502 from {BASE}/v1/agent/agent-a/task/register: bad gateway");
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |_| Outcome::Respond(response(502, "bad gateway")),
        &error,
    );
}

#[test]
fn spec2_error_text_task_unparsable() {
    let error =
        format!("failed to parse agent task response from {BASE}/v1/agent/agent-a/task/register");
    for body in ["<html>", "{}", r#"{"encrypted_task_id":5}"#] {
        check_task_error(
            InFlightMatch::TaskRegister("t1"),
            |_| Outcome::Respond(response(200, body)),
            &error,
        );
    }
}

#[test]
fn spec2_error_text_task_send_failure_and_timeout() {
    let error = format!(
        "failed to send agent task registration request to {BASE}/v1/agent/agent-a/task/register"
    );
    for failure in [RequestFailure::Timeout, RequestFailure::Connection] {
        check_task_error(InFlightMatch::TaskRegister("t1"), |_| Outcome::Fail(failure), &error);
    }
}

#[test]
fn spec2_error_text_bad_base64() {
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |_| Outcome::Respond(task_response("%%% not base64")),
        "encrypted task id is not valid base64",
    );
}

#[test]
fn spec2_error_text_box_sealed_to_another_key() {
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |_| {
            let other = IdentityKey::from_seed([99; 32]).x25519_secret().public_key();
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
            Outcome::Respond(task_response(&wire::seal_base64(&other, b"task-x", &mut rng)))
        },
        "failed to decrypt encrypted task id",
    );
}

#[test]
fn spec2_error_text_plaintext_not_utf8() {
    check_task_error(
        InFlightMatch::TaskRegister("t1"),
        |h| Outcome::Respond(task_response(&h.backend.seal_for("agent-a", &[0xff, 0xfe, 0x80]))),
        "decrypted task id is not valid UTF-8",
    );
}

#[test]
fn spec2_error_text_model_refusal() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    let id = h.pending(InFlightMatch::Model("t1", 1));
    h.answer_with(id, response(401, r#"{"error":"invalid_assertion"}"#));
    assert_errors(
        &h,
        "t1",
        &["model request failed with status 401: {\"error\":\"invalid_assertion\"}"],
    );
    // Only identity_expired drops the identity.
    assert_stored(&h, Some("agent-a"));
}

#[test]
fn spec2_requests_have_the_reference_shapes() {
    let mut h = Harness::signed_in();
    h.start("t1");
    h.turn("t1", 1);
    h.run_until_idle();
    let requests: Vec<_> = h.sent.iter().map(|(_, r)| r.clone()).collect();
    let [biscuit, register, _, task, model] = requests.as_slice() else { panic!("{requests:?}") };

    assert_eq!(biscuit.header("Authorization"), Some("Bearer access-token-secret-acct-1"));
    assert_eq!(biscuit.header("X-Original-Method"), Some("POST"));
    assert_eq!(biscuit.header("X-Original-Url"), Some(register.url.as_str()));
    assert!(biscuit.header("X-Request-Id").unwrap().starts_with("codex-agent-identity-"));

    let body: serde_json::Value = serde_json::from_str(register.body.as_deref().unwrap()).unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["abom", "agent_public_key", "capabilities"]);
    assert_eq!(
        body["abom"],
        serde_json::json!({"agent_version":"0.120.0","agent_harness_id":"codex-cli","running_location":"local"})
    );
    assert!(body["agent_public_key"].as_str().unwrap().starts_with("ssh-ed25519 "));
    assert!(register.header("X-OpenAI-Authorization").unwrap().starts_with("biscuit-secret-"));

    let body: serde_json::Value = serde_json::from_str(task.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["timestamp"], h.now.rfc3339_secs());
    let key = h.store.as_ref().unwrap().key().unwrap();
    let public = wire::parse_ssh_public_key(&key.ssh_public_key()).unwrap();
    let message = format!("agent-1:{}", h.now.rfc3339_secs());
    assert!(wire::verify_signature(&public, &message, body["signature"].as_str().unwrap()));

    let assertion = wire::parse_assertion_header(model.header("Authorization").unwrap()).unwrap();
    assert_eq!(
        (assertion.agent_runtime_id.as_str(), assertion.task_id.as_str()),
        ("agent-1", "task-1")
    );
    assert_eq!(wire::verify_assertion(&public, &assertion), Ok(()));
}

// ---- spec section 4: error texts ---------------------------------------------------------

#[test]
fn spec4_an_unanswered_model_request_is_an_error_that_names_no_status() {
    let mut h = thread_with_task(Config::default());
    h.turn("t1", 1);
    let id = h.answer_until(InFlightMatch::Model("t1", 1));
    h.fail(id, RequestFailure::Timeout);
    assert_events(&h, "t1", &TURN_1_FAILED);
    assert_failures(&h, "t1", &[Failure::ModelRequest { status: None }]);
    assert_failures_logged(&h, &[]);
}
