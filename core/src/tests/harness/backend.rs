//! The fake backend: it mints biscuits, registers identities and tasks, and answers model
//! requests the way the real one does.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

use crate::time::Timestamp;
use crate::wire::{self, HttpRequest, HttpResponse, Method};
use crate::StoredIdentity;

use super::fixtures::{response, task_response};

/// The in-test backend: mints biscuits, registers identities and tasks, and answers model
/// requests, checking on the way what a correct client always does (spec invariants 6 and 8).
/// A request a correct client never sends fails the test on the spot.
pub(in crate::tests) struct FakeBackend {
    rng: ChaCha20Rng,
    next_runtime: u32,
    next_task: u32,
    next_biscuit: u32,
    /// **\[ours\]** Lifetime of registered identities, in whole seconds.
    pub(in crate::tests) identity_ttl_secs: Option<u64>,
    /// Every call answers 503 while set.
    pub(in crate::tests) outage: bool,
    /// Every task registration answers 401 `identity_expired` while set.
    pub(in crate::tests) refuse_tasks: bool,
    runtimes: BTreeMap<String, Runtime>,
    /// Task id to the runtime it was issued to.
    tasks: BTreeMap<String, String>,
    /// Biscuit to the URL it authorizes and whether it was used.
    biscuits: BTreeMap<String, (String, bool)>,
}

struct Runtime {
    key: VerifyingKey,
    expires_at: Option<Timestamp>,
    revoked: bool,
}

impl FakeBackend {
    pub(super) fn new() -> FakeBackend {
        FakeBackend {
            rng: ChaCha20Rng::seed_from_u64(0x5eed),
            next_runtime: 1,
            next_task: 1,
            next_biscuit: 1,
            identity_ttl_secs: None,
            outage: false,
            refuse_tasks: false,
            runtimes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            biscuits: BTreeMap::new(),
        }
    }

    /// Knows an identity registered elsewhere (by an earlier process or another one).
    pub(in crate::tests) fn adopt(&mut self, stored: &StoredIdentity) {
        let key = stored.key().expect("test identities have readable keys");
        let key = wire::parse_ssh_public_key(&key.ssh_public_key()).expect("our own key parses");
        self.runtimes.entry(stored.agent_runtime_id.clone()).or_insert(Runtime {
            key,
            expires_at: stored.expires_at,
            revoked: false,
        });
    }

    /// Knows a task issued to `runtime` elsewhere (a task persisted in a rollout).
    pub(in crate::tests) fn adopt_task(&mut self, task_id: &str, runtime: &str) {
        self.tasks.insert(task_id.into(), runtime.into());
    }

    /// Revokes a runtime: its task registrations and assertions answer 401 `identity_expired`.
    pub(in crate::tests) fn revoke(&mut self, runtime: &str) {
        self.runtimes.get_mut(runtime).expect("a known runtime").revoked = true;
    }

    /// Seals `plaintext` to `runtime`'s key, as task registration does.
    pub(in crate::tests) fn seal_for(&mut self, runtime: &str, plaintext: &[u8]) -> String {
        let key = self.runtimes[runtime].key;
        wire::seal_base64(&wire::x25519_public(&key), plaintext, &mut self.rng)
    }

    /// The runtime a task id was issued to.
    pub(in crate::tests) fn task_runtime(&self, task_id: &str) -> Option<&str> {
        self.tasks.get(task_id).map(String::as_str)
    }

    pub(super) fn biscuits_minted(&self) -> impl Iterator<Item = &String> {
        self.biscuits.keys()
    }

    pub(super) fn respond(&mut self, now: Timestamp, request: &HttpRequest) -> HttpResponse {
        if self.outage {
            return response(503, r#"{"error":"unavailable"}"#);
        }
        let path = request.path().to_owned();
        if let (Method::Post, Some(runtime)) =
            (request.method, wire::runtime_of_task_register_path(&path))
        {
            return self.register_task(now, request, runtime);
        }
        match (request.method, path.as_str()) {
            (Method::Get, wire::BISCUIT_PATH) => self.mint_biscuit(request),
            (Method::Post, wire::IDENTITY_REGISTER_PATH) => self.register_identity(now, request),
            (Method::Post, wire::MODEL_PATH) => self.model(now, request),
            (method, p) => panic!("the fake backend has no route for {} {p}", method.as_str()),
        }
    }

    fn mint_biscuit(&mut self, request: &HttpRequest) -> HttpResponse {
        let bearer =
            request.header("Authorization").expect("a biscuit request carries the access token");
        assert!(
            bearer.starts_with("Bearer access-token-secret-"),
            "unexpected Authorization {bearer:?}"
        );
        let request_id =
            request.header("X-Request-Id").expect("a biscuit request carries X-Request-Id");
        let suffix = request_id
            .strip_prefix(wire::REQUEST_ID_PREFIX)
            .expect("X-Request-Id has the codex prefix");
        assert_eq!(suffix.len(), 22, "X-Request-Id carries base64url of 16 bytes: {request_id}");
        assert_eq!(request.header("X-Original-Method"), Some("POST"));
        let target = request
            .header("X-Original-Url")
            .expect("a biscuit request names the URL it authorizes");
        let biscuit = format!("biscuit-secret-{}", self.next_biscuit);
        self.next_biscuit += 1;
        self.biscuits.insert(biscuit.clone(), (target.to_owned(), false));
        HttpResponse {
            status: 200,
            headers: vec![(wire::BISCUIT_RESPONSE_HEADER.into(), biscuit.into_bytes())],
            body: vec![],
        }
    }

    /// Spec invariant 6: every registration carries one fresh biscuit minted for its own URL.
    fn take_biscuit(&mut self, request: &HttpRequest) {
        let biscuit =
            request.header(wire::BISCUIT_REQUEST_HEADER).expect("a registration carries a biscuit");
        let (url, used) = self
            .biscuits
            .get_mut(biscuit)
            .unwrap_or_else(|| panic!("unknown biscuit on {}", request.url));
        assert_eq!(*url, request.url, "the biscuit was minted for another URL");
        assert!(!*used, "a biscuit was used twice");
        *used = true;
    }

    fn register_identity(&mut self, now: Timestamp, request: &HttpRequest) -> HttpResponse {
        self.take_biscuit(request);
        let body: wire::IdentityRegistrationRequest =
            serde_json::from_str(request.body.as_deref().expect("a body"))
                .expect("an identity registration body");
        assert!(body.capabilities.is_empty());
        assert!(!body.abom.agent_version.is_empty() && !body.abom.agent_harness_id.is_empty());
        let key = wire::parse_ssh_public_key(&body.agent_public_key)
            .expect("agent_public_key is an ssh-ed25519 key");
        let runtime = format!("agent-{}", self.next_runtime);
        self.next_runtime += 1;
        let expires_at = self.identity_ttl_secs.map(|ttl| Timestamp((now.0 / 1000 + ttl) * 1000));
        self.runtimes.insert(runtime.clone(), Runtime { key, expires_at, revoked: false });
        let mut answer = serde_json::json!({ "agent_runtime_id": runtime });
        if let Some(at) = expires_at {
            answer["expires_at"] = at.rfc3339_secs().into();
        }
        response(200, &answer.to_string())
    }

    fn is_valid(&self, runtime: &str, now: Timestamp) -> bool {
        self.runtimes
            .get(runtime)
            .is_some_and(|r| !r.revoked && r.expires_at.is_none_or(|at| now < at))
    }

    fn register_task(
        &mut self,
        now: Timestamp,
        request: &HttpRequest,
        runtime: &str,
    ) -> HttpResponse {
        self.take_biscuit(request);
        let body: wire::TaskRegistrationRequest =
            serde_json::from_str(request.body.as_deref().expect("a body"))
                .expect("a task registration body");
        assert_eq!(body.timestamp.len(), 20, "RFC 3339 seconds: {}", body.timestamp);
        assert!(body.timestamp.ends_with('Z') && Timestamp::parse_rfc3339(&body.timestamp).is_ok());
        if self.refuse_tasks || !self.is_valid(runtime, now) {
            return response(401, r#"{"error":"identity_expired"}"#);
        }
        let key = self.runtimes[runtime].key;
        assert!(
            wire::verify_signature(&key, &format!("{runtime}:{}", body.timestamp), &body.signature),
            "spec invariant 8: a task registration signature does not verify"
        );
        let task_id = format!("task-{}", self.next_task);
        self.next_task += 1;
        self.tasks.insert(task_id.clone(), runtime.into());
        let sealed = self.seal_for(runtime, task_id.as_bytes());
        task_response(&sealed)
    }

    fn model(&mut self, now: Timestamp, request: &HttpRequest) -> HttpResponse {
        let Some(header) = request.header("Authorization") else {
            return response(200, r#"{"output":"done"}"#);
        };
        let assertion = wire::parse_assertion_header(header).expect("a well-formed AgentAssertion");
        let Some(runtime) = self.runtimes.get(&assertion.agent_runtime_id) else {
            return response(401, r#"{"error":"invalid_assertion"}"#);
        };
        assert_eq!(
            wire::verify_assertion(&runtime.key, &assertion),
            Ok(()),
            "spec invariant 8: an assertion does not verify"
        );
        if self.task_runtime(&assertion.task_id) != Some(assertion.agent_runtime_id.as_str()) {
            return response(401, r#"{"error":"invalid_assertion"}"#);
        }
        if !self.is_valid(&assertion.agent_runtime_id, now) {
            return response(401, r#"{"error":"identity_expired"}"#);
        }
        response(200, r#"{"output":"done"}"#)
    }
}
