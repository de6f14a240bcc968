//! The test harness of the core's unit tests: a [`Lifecycle`], a tiny fake backend that answers the
//! way the real one does, and a record of every command the machine returned.
//!
//! Requests are queued, never answered on their own: a test decides which one is answered, when,
//! and with what, so it controls every order and race. After every input the harness drains
//! [`Lifecycle::poll_command`] and checks the invariants of spec section 5 that one step can
//! break (secrets, assertions, appended values, single flight).
//!
//! Tests talk to the machine only through [`Harness`] and the `assert_*` helpers at the end of
//! this file: one helper per boundary, so an API change touches this file, not every test.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

use crate::output::{
    Command, Event, EventKind, Failure, Level, LogLine, RequestId, ThreadId, TurnId,
};
use crate::rollout::{self, RolloutItem, RolloutLine, RolloutScan};
use crate::time::Timestamp;
use crate::wire::{self, HttpRequest, HttpResponse, IdentityKey, Method};
use crate::{
    limits, marks, Auth, Binding, Config, InFlight, Lifecycle, RequestFailure, StoredIdentity,
};

/// The base URL of [`Config::default`].
pub(super) const BASE: &str = "http://backend.invalid";

/// The biscuit endpoint, as [`assert_requests`] names it.
pub(super) const BISCUIT: &str = "GET /authenticate_app_v2";

/// Identity registration, as [`assert_requests`] names it.
pub(super) const REGISTER: &str = "POST /v1/agent/register";

/// A model request that carries no assertion, as [`assert_requests`] names it.
pub(super) const MODEL: &str = "POST /v1/responses";

/// A test's pattern over [`InFlight`]: the request it waits for, by thread name and whatever its
/// ensure number (so the tests do not depend on the shape of [`InFlight`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum InFlightMatch<'a> {
    IdentityBiscuit,
    IdentityRegister,
    TaskBiscuit(&'a str),
    TaskRegister(&'a str),
    Model(&'a str, u32),
}

impl InFlightMatch<'_> {
    fn matches(self, in_flight: &InFlight) -> bool {
        match (self, in_flight) {
            (InFlightMatch::IdentityBiscuit, InFlight::IdentityBiscuit) => true,
            (InFlightMatch::IdentityRegister, InFlight::IdentityRegister) => true,
            (InFlightMatch::TaskBiscuit(t), InFlight::TaskBiscuit { thread, .. }) => thread.0 == t,
            (InFlightMatch::TaskRegister(t), InFlight::TaskRegister { thread, .. }) => {
                thread.0 == t
            }
            (InFlightMatch::Model(t, n), InFlight::Model(thread, turn)) => {
                thread.0 == t && turn.0 == n
            }
            _ => false,
        }
    }
}

/// Answers a drive loop may give before a test fails for running away.
const STEP_CAP: usize = 500;

/// Signed in to `acct-1` as `user-1`.
pub(super) fn signed_in() -> Auth {
    signed_in_to("acct-1")
}

/// Signed in to `account` as `user-1`, with a token that names the account.
pub(super) fn signed_in_to(account: &str) -> Auth {
    Auth::ChatGpt {
        binding: binding(account),
        access_token: format!("access-token-secret-{account}"),
    }
}

fn binding(account: &str) -> Binding {
    Binding { account_id: account.into(), user_id: Some("user-1".into()) }
}

/// An identity of `acct-1`, as another process left it in the auth store. The key comes from
/// `seed_byte`, so two identities with different bytes have different keys.
pub(super) fn identity(runtime: &str, seed_byte: u8) -> StoredIdentity {
    identity_of(runtime, "acct-1", seed_byte)
}

/// An identity of `account`, as another process left it in the auth store.
pub(super) fn identity_of(runtime: &str, account: &str, seed_byte: u8) -> StoredIdentity {
    StoredIdentity {
        binding: binding(account),
        agent_runtime_id: runtime.into(),
        private_key: IdentityKey::from_seed([seed_byte; 32]).to_pkcs8_base64(),
        registered_at: Timestamp::SIM_EPOCH,
        expires_at: None,
    }
}

/// A response with a plain body and no headers.
pub(super) fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
}

/// A task registration answer holding `encrypted_task_id`.
pub(super) fn task_response(encrypted_task_id: &str) -> HttpResponse {
    response(200, &serde_json::json!({ "encrypted_task_id": encrypted_task_id }).to_string())
}

/// One rollout line with the given type and payload JSON.
pub(super) fn line(kind: &str, payload: &str) -> String {
    format!(r#"{{"timestamp":"2026-04-18T14:02:12.004Z","type":"{kind}","payload":{payload}}}"#)
}

/// A `session_state` line holding a task.
pub(super) fn task_line(runtime: &str, task_id: &str) -> String {
    let task = format!(
        r#"{{"agent_task":{{"agent_runtime_id":"{runtime}","task_id":"{task_id}","registered_at":"2026-04-18T14:02:11Z"}}}}"#
    );
    line("session_state", &task)
}

/// A `session_state {agent_task: null}` line.
pub(super) fn null_line() -> String {
    line("session_state", r#"{"agent_task":null}"#)
}

/// Lines joined into rollout bytes, each ending with a newline.
pub(super) fn rollout_of(lines: &[String]) -> Vec<u8> {
    lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect()
}

/// The in-test backend: mints biscuits, registers identities and tasks, and answers model
/// requests, checking on the way what a correct client always does (spec invariants 6 and 8).
/// A request a correct client never sends fails the test on the spot.
pub(super) struct FakeBackend {
    rng: ChaCha20Rng,
    next_runtime: u32,
    next_task: u32,
    next_biscuit: u32,
    /// **\[ours\]** Lifetime of registered identities, in whole seconds.
    pub(super) identity_ttl_secs: Option<u64>,
    /// Every call answers 503 while set.
    pub(super) outage: bool,
    /// Every task registration answers 401 `identity_expired` while set.
    pub(super) refuse_tasks: bool,
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
    fn new() -> FakeBackend {
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
    pub(super) fn adopt(&mut self, stored: &StoredIdentity) {
        let key = stored.key().expect("test identities have readable keys");
        let key = wire::parse_ssh_public_key(&key.ssh_public_key()).expect("our own key parses");
        self.runtimes.entry(stored.agent_runtime_id.clone()).or_insert(Runtime {
            key,
            expires_at: stored.expires_at,
            revoked: false,
        });
    }

    /// Knows a task issued to `runtime` elsewhere (a task persisted in a rollout).
    pub(super) fn adopt_task(&mut self, task_id: &str, runtime: &str) {
        self.tasks.insert(task_id.into(), runtime.into());
    }

    /// Revokes a runtime: its task registrations and assertions answer 401 `identity_expired`.
    pub(super) fn revoke(&mut self, runtime: &str) {
        self.runtimes.get_mut(runtime).expect("a known runtime").revoked = true;
    }

    /// Seals `plaintext` to `runtime`'s key, as task registration does.
    pub(super) fn seal_for(&mut self, runtime: &str, plaintext: &[u8]) -> String {
        let key = self.runtimes[runtime].key;
        wire::seal_base64(&wire::x25519_public(&key), plaintext, &mut self.rng)
    }

    /// The runtime a task id was issued to.
    pub(super) fn task_runtime(&self, task_id: &str) -> Option<&str> {
        self.tasks.get(task_id).map(String::as_str)
    }

    fn biscuits_minted(&self) -> impl Iterator<Item = &String> {
        self.biscuits.keys()
    }

    fn respond(&mut self, now: Timestamp, request: &HttpRequest) -> HttpResponse {
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

/// One process's lifecycle, its fake backend, its rollout files and auth store, and everything
/// the machine said.
pub(super) struct Harness {
    pub(super) machine: Lifecycle,
    pub(super) now: Timestamp,
    pub(super) backend: FakeBackend,
    /// The rollout files, as bytes: they outlive a process (see [`Harness::restart`]).
    pub(super) rollouts: BTreeMap<ThreadId, Vec<u8>>,
    pub(super) events: Vec<Event>,
    pub(super) logs: Vec<LogLine>,
    pub(super) marks: Vec<&'static str>,
    /// The auth store's identity slot.
    pub(super) store: Option<StoredIdentity>,
    /// Every request sent since the last [`Harness::forget`], in send order.
    pub(super) sent: Vec<(RequestId, HttpRequest)>,
    /// Every command since the last [`Harness::forget`], one short line each.
    pub(super) trace: Vec<String>,
    unanswered: Vec<(RequestId, HttpRequest)>,
    config: Config,
    auth: Auth,
    /// Secrets seen so far: access tokens, biscuits, private keys (spec invariant 14).
    secrets: BTreeSet<String>,
    /// Task registration requests of each ensure, by the machine's ensure number.
    pub(super) registrations_per_ensure: BTreeMap<u64, BTreeSet<RequestId>>,
    process: u8,
}

impl Harness {
    /// A process with `config`, `auth`, and `store` in the auth store (known to the backend).
    pub(super) fn new(config: Config, auth: Auth, store: Option<StoredIdentity>) -> Harness {
        let mut backend = FakeBackend::new();
        if let Some(stored) = &store {
            backend.adopt(stored);
        }
        let now = Timestamp::SIM_EPOCH;
        let machine = Lifecycle::new(config.clone(), auth.clone(), store.clone(), seed(0));
        let mut h = Harness {
            machine,
            now,
            backend,
            rollouts: BTreeMap::new(),
            events: vec![],
            logs: vec![],
            marks: vec![],
            store,
            sent: vec![],
            trace: vec![],
            unanswered: vec![],
            config,
            auth: auth.clone(),
            secrets: BTreeSet::new(),
            registrations_per_ensure: BTreeMap::new(),
            process: 0,
        };
        h.learn_secrets_of(&auth);
        if let Some(stored) = h.store.clone() {
            h.secrets.insert(stored.private_key);
        }
        h.drain();
        h
    }

    /// Default config, signed in, empty auth store.
    pub(super) fn signed_in() -> Harness {
        Harness::new(Config::default(), signed_in(), None)
    }

    /// Default config, signed in, `stored` in the auth store.
    pub(super) fn with_identity(stored: StoredIdentity) -> Harness {
        Harness::new(Config::default(), signed_in(), Some(stored))
    }

    // ---- inputs -------------------------------------------------------------------------

    /// A new thread starts.
    pub(super) fn start(&mut self, thread: &str) {
        self.rollouts.entry(thread.into()).or_default();
        self.machine.start_thread(self.now, thread.into());
        self.drain();
    }

    /// The thread resumes from its rollout file.
    pub(super) fn resume(&mut self, thread: &str) -> RolloutScan {
        let bytes = self.rollout(thread);
        let scan = self.machine.resume_thread(self.now, thread.into(), &bytes);
        self.drain();
        scan
    }

    /// The thread's rollout file becomes `bytes`, then the thread resumes from it.
    pub(super) fn resume_bytes(&mut self, thread: &str, bytes: &[u8]) -> RolloutScan {
        self.rollouts.insert(thread.into(), bytes.to_vec());
        self.resume(thread)
    }

    /// `child` forks from `parent`: core writes the child's rollout (its `session_meta`, a copy
    /// of the parent's items, rule 16's `null`).
    pub(super) fn fork(&mut self, child: &str, parent: &str) -> RolloutScan {
        let copy = self.rollout(parent);
        let scan = self.machine.fork_thread(self.now, child.into(), &copy);
        self.drain();
        scan
    }

    /// The user submits turn `n` (text `message {n}`) on `thread`.
    pub(super) fn turn(&mut self, thread: &str, n: u32) {
        self.machine.submit_turn(self.now, &thread.into(), TurnId(n), &format!("message {n}"));
        self.drain();
    }

    /// The user's auth changes.
    pub(super) fn set_auth(&mut self, auth: Auth) {
        self.learn_secrets_of(&auth);
        self.auth = auth.clone();
        self.machine.handle_auth_changed(self.now, auth);
        self.drain();
    }

    /// Another process replaced the auth store's identity (the backend knows the new one).
    pub(super) fn replace_store(&mut self, stored: Option<StoredIdentity>) {
        if let Some(s) = &stored {
            self.backend.adopt(s);
            self.secrets.insert(s.private_key.clone());
        }
        self.store = stored.clone();
        self.machine.handle_identity_store_changed(self.now, stored);
        self.drain();
    }

    /// Virtual time passes. Nothing times out on its own: tests fail requests explicitly.
    pub(super) fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
    }

    /// The process restarts with the same config, auth and auth store. Requests in flight are
    /// lost; rollout files, the backend and the record stay.
    pub(super) fn restart(&mut self) {
        self.process += 1;
        self.machine = Lifecycle::new(
            self.config.clone(),
            self.auth.clone(),
            self.store.clone(),
            seed(self.process),
        );
        self.unanswered.clear();
        self.drain();
    }

    // ---- answering ----------------------------------------------------------------------

    /// The request in flight for `what`.
    #[track_caller]
    pub(super) fn pending(&self, what: InFlightMatch<'_>) -> RequestId {
        let in_flight = self.machine.in_flight();
        match in_flight.iter().find(|(_, w)| what.matches(w)) {
            Some((id, _)) => *id,
            None => panic!("no request in flight for {what:?}; in flight: {in_flight:?}"),
        }
    }

    /// The backend answers request `id`.
    pub(super) fn answer(&mut self, id: RequestId) {
        let request = self.take(id);
        let response = self.backend.respond(self.now, &request);
        self.machine.handle_response(self.now, id, response);
        self.drain();
    }

    /// Request `id` is answered with `response`, whatever the backend would say.
    pub(super) fn answer_with(&mut self, id: RequestId, response: HttpResponse) {
        self.take(id);
        self.machine.handle_response(self.now, id, response);
        self.drain();
    }

    /// Request `id` gets no response.
    pub(super) fn fail(&mut self, id: RequestId, failure: RequestFailure) {
        self.take(id);
        self.machine.handle_request_failed(self.now, id, failure);
        self.drain();
    }

    /// A response arrives for a request already reported failed (a late answer after a timeout).
    pub(super) fn deliver_late(&mut self, id: RequestId, response: HttpResponse) {
        assert!(self.unanswered.iter().all(|(i, _)| *i != id), "{id} is still unanswered");
        self.machine.handle_response(self.now, id, response);
        self.drain();
    }

    /// The backend answers the oldest unanswered request.
    #[track_caller]
    pub(super) fn answer_next(&mut self) -> RequestId {
        let id = self.unanswered.first().expect("a request to answer").0;
        self.answer(id);
        id
    }

    /// Answers requests oldest first until one for `what` is in flight, and returns it
    /// unanswered.
    #[track_caller]
    pub(super) fn answer_until(&mut self, what: InFlightMatch<'_>) -> RequestId {
        for _ in 0..STEP_CAP {
            if let Some((id, _)) =
                self.machine.in_flight().into_iter().find(|(_, w)| what.matches(w))
            {
                return id;
            }
            assert!(!self.unanswered.is_empty(), "idle before a request for {what:?} was sent");
            self.answer_next();
        }
        panic!("no request for {what:?} after {STEP_CAP} answers");
    }

    /// Answers requests oldest first until none is left.
    #[track_caller]
    pub(super) fn run_until_idle(&mut self) {
        for _ in 0..STEP_CAP {
            if self.unanswered.is_empty() {
                return;
            }
            self.answer_next();
        }
        panic!("still busy after {STEP_CAP} answers: {:?}", self.machine.in_flight());
    }

    /// Forgets the record (requests, events, logs, marks, trace); rollouts and the store stay.
    pub(super) fn forget(&mut self) {
        self.sent.clear();
        self.events.clear();
        self.logs.clear();
        self.marks.clear();
        self.trace.clear();
    }

    /// The thread's rollout file.
    pub(super) fn rollout(&self, thread: &str) -> Vec<u8> {
        self.rollouts.get(&ThreadId::from(thread)).cloned().unwrap_or_default()
    }

    /// Secrets seen so far.
    pub(super) fn secrets(&self) -> &BTreeSet<String> {
        &self.secrets
    }

    // ---- recording ----------------------------------------------------------------------

    fn take(&mut self, id: RequestId) -> HttpRequest {
        let index = self
            .unanswered
            .iter()
            .position(|(i, _)| *i == id)
            .unwrap_or_else(|| panic!("{id} is not unanswered"));
        self.unanswered.remove(index).1
    }

    fn learn_secrets_of(&mut self, auth: &Auth) {
        if let Auth::ChatGpt { access_token, .. } = auth {
            self.secrets.insert(access_token.clone());
        }
    }

    fn drain(&mut self) {
        while let Some(command) = self.machine.poll_command() {
            let line = self.record(command);
            self.trace.push(line);
        }
        self.check_invariants();
    }

    fn record(&mut self, command: Command) -> String {
        match command {
            Command::Send { id, request, timeout_ms } => {
                assert_eq!(
                    timeout_ms,
                    limits::REQUEST_TIMEOUT_MS,
                    "every call has the spec's timeout"
                );
                self.check_request(&request);
                let what = describe_request(&request);
                self.unanswered.push((id, request.clone()));
                self.sent.push((id, request));
                format!("send {what}")
            }
            Command::Append { thread, line } => {
                self.check_append(&thread, &line);
                let what = describe_line(&line.item);
                let file = self.rollouts.entry(thread.clone()).or_default();
                file.extend_from_slice(line.to_json().as_bytes());
                file.push(b'\n');
                format!("append {thread} {what}")
            }
            Command::AppendCopy { thread, bytes } => {
                let lines = bytes.iter().filter(|b| **b == b'\n').count();
                self.rollouts.entry(thread.clone()).or_default().extend_from_slice(&bytes);
                format!("append {thread} a copy of {lines} lines")
            }
            Command::Emit(event) => {
                let what = format!("emit {} {}", event.thread, describe_event(&event.kind));
                self.events.push(event);
                what
            }
            Command::StoreIdentity(stored) => {
                self.secrets.insert(stored.private_key.clone());
                let what = format!("store {}", stored.agent_runtime_id);
                self.store = Some(stored);
                what
            }
            Command::DeleteIdentity => {
                self.store = None;
                "delete identity".into()
            }
            Command::Log(line) => {
                let what = format!("log {}", line.message);
                self.logs.push(line);
                what
            }
            Command::Mark(name) => {
                assert!(marks::ALL.contains(&name), "unknown mark {name}");
                self.marks.push(name);
                format!("mark {name}")
            }
        }
    }

    /// Spec invariants 1 and 7, checked on every request as it is sent.
    fn check_request(&self, request: &HttpRequest) {
        let assertion =
            request.header("Authorization").filter(|v| wire::assertion_token(v).is_some());
        if !self.config.use_agent_identity {
            assert_eq!(
                request.path(),
                wire::MODEL_PATH,
                "invariant 1: an agent call with the flag off"
            );
            assert_eq!(assertion, None, "invariant 1: an assertion with the flag off");
        }
        if let Some(header) = assertion {
            let assertion = wire::parse_assertion_header(header).expect("a well-formed assertion");
            assert_eq!(
                Some(assertion.agent_runtime_id.as_str()),
                self.machine.current_runtime(self.now),
                "invariant 7: an assertion for a runtime that is not the current identity's"
            );
        }
    }

    /// Spec invariants 1 and 4, checked on every appended line.
    fn check_append(&self, thread: &ThreadId, line: &RolloutLine) {
        let RolloutItem::SessionState(value) = &line.item else { return };
        assert!(
            self.config.use_agent_identity && self.config.persist_task,
            "invariants 1 and 20: session_state appended"
        );
        if let Some(task) = value {
            assert_eq!(
                Some(task.agent_runtime_id.as_str()),
                self.machine.current_runtime(self.now),
                "invariant 4: appended a task that does not match the identity"
            );
            assert_eq!(
                self.backend.task_runtime(&task.task_id),
                Some(task.agent_runtime_id.as_str()),
                "invariant 8: the appended task id is not one the backend sealed for that runtime"
            );
        }
        let file = self.rollouts.get(thread).map(Vec::as_slice).unwrap_or_default();
        let previous = rollout::scan(file).last_state.map(|s| s.task);
        assert_ne!(
            previous.as_ref(),
            Some(value),
            "invariant 4: {thread} appended the same session_state twice in a row"
        );
    }

    /// Spec invariants 5 and 14, checked after every step.
    fn check_invariants(&mut self) {
        let in_flight = self.machine.in_flight();
        let identity_calls = in_flight
            .iter()
            .filter(|(_, w)| matches!(w, InFlight::IdentityBiscuit | InFlight::IdentityRegister))
            .count();
        assert!(
            identity_calls <= 1,
            "invariant 5: {identity_calls} identity registrations in flight"
        );
        let mut task_calls: BTreeMap<&ThreadId, usize> = BTreeMap::new();
        for (_, what) in &in_flight {
            if let InFlight::TaskBiscuit { thread, .. } | InFlight::TaskRegister { thread, .. } =
                what
            {
                *task_calls.entry(thread).or_default() += 1;
            }
        }
        assert!(task_calls.values().all(|n| *n <= 1), "invariant 5: {task_calls:?}");
        // Invariant 6: one ensure sends at most `TASK_ATTEMPTS_MAX` task registrations, plus
        // `REACQUIRE_RETRIES_MAX` after a 401 identity_expired under reacquire.
        let most = usize::from(limits::TASK_ATTEMPTS_MAX + limits::REACQUIRE_RETRIES_MAX);
        for (id, what) in &in_flight {
            if let InFlight::TaskRegister { ensure, .. } = what {
                let sent = self.registrations_per_ensure.entry(*ensure).or_default();
                sent.insert(*id);
                assert!(
                    sent.len() <= most,
                    "invariant 6: ensure {ensure} sent {} task registrations",
                    sent.len()
                );
            }
        }
        self.assert_no_secret_leaked();
    }

    /// Spec invariant 14: no secret in any log line, event, rollout line, trace line, or the
    /// machine's debug snapshot.
    pub(super) fn assert_no_secret_leaked(&self) {
        let mut places: Vec<String> = vec![format!("{:?}", self.machine)];
        places.extend(self.logs.iter().map(|l| format!("{l} {l:?}")));
        places.extend(self.events.iter().map(|e| format!("{e} {e:?}")));
        places.extend(self.rollouts.values().map(|r| String::from_utf8_lossy(r).into_owned()));
        places.extend(self.trace.iter().cloned());
        let secrets = self.secrets.iter().chain(self.backend.biscuits_minted());
        for secret in secrets {
            for place in &places {
                assert!(
                    !place.contains(secret.as_str()),
                    "invariant 14: a secret leaked into {place}"
                );
            }
        }
    }
}

fn seed(process: u8) -> [u8; 32] {
    let mut seed = [0x42; 32];
    seed[0] = process;
    seed
}

/// `METHOD path`, and for a model request with an assertion ` as runtime/task`.
fn describe_request(request: &HttpRequest) -> String {
    let mut what = format!("{} {}", request.method.as_str(), request.path());
    if let Some(header) =
        request.header("Authorization").filter(|v| wire::assertion_token(v).is_some())
    {
        let a = wire::parse_assertion_header(header).expect("a well-formed assertion");
        what.push_str(&format!(" as {}/{}", a.agent_runtime_id, a.task_id));
    }
    what
}

fn describe_line(item: &RolloutItem) -> String {
    match item {
        RolloutItem::SessionState(Some(task)) => {
            format!("session_state {}/{}", task.agent_runtime_id, task.task_id)
        }
        RolloutItem::SessionState(None) => "session_state null".into(),
        other => other.type_name().into(),
    }
}

fn describe_event(kind: &EventKind) -> String {
    match kind.turn() {
        Some(turn) => format!("{} {turn}", kind.name()),
        None => kind.name().into(),
    }
}

/// The `session_state` values of a rollout, oldest first: `runtime/task`, `null` (also for a
/// missing key), or `malformed`. Lines that are not JSON are passed over.
fn session_states(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "session_state")
        .map(|v| match &v["payload"]["agent_task"] {
            serde_json::Value::Null => "null".to_owned(),
            task => match (task["agent_runtime_id"].as_str(), task["task_id"].as_str()) {
                (Some(runtime), Some(id)) => format!("{runtime}/{id}"),
                _ => "malformed".to_owned(),
            },
        })
        .collect()
}

// ---- one helper per boundary ------------------------------------------------------------

/// The requests sent since the last `forget`, as `METHOD path[ as runtime/task]`.
#[track_caller]
pub(super) fn assert_requests(h: &Harness, expected: &[&str]) {
    let actual: Vec<String> = h.sent.iter().map(|(_, r)| describe_request(r)).collect();
    assert_eq!(actual, expected, "requests sent");
}

/// How many requests named `what` were sent since the last `forget`.
pub(super) fn count_requests(h: &Harness, what: &str) -> usize {
    h.sent.iter().filter(|(_, r)| describe_request(r) == what).count()
}

/// The events of `thread`, as `name[ turn-N]`.
#[track_caller]
pub(super) fn assert_events(h: &Harness, thread: &str, expected: &[&str]) {
    let actual: Vec<String> =
        h.events.iter().filter(|e| e.thread.0 == thread).map(|e| describe_event(&e.kind)).collect();
    assert_eq!(actual, expected, "events of {thread}");
}

/// The messages of `thread`'s error events, exactly.
#[track_caller]
pub(super) fn assert_errors(h: &Harness, thread: &str, expected: &[&str]) {
    let actual: Vec<&str> = h
        .events
        .iter()
        .filter(|e| e.thread.0 == thread)
        .filter_map(|e| match &e.kind {
            EventKind::Error { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(actual, expected, "error messages of {thread}");
}

/// What each of `thread`'s error events names as failed, exactly.
#[track_caller]
pub(super) fn assert_failures(h: &Harness, thread: &str, expected: &[Failure]) {
    let actual: Vec<Failure> = h
        .events
        .iter()
        .filter(|e| e.thread.0 == thread)
        .filter_map(|e| match &e.kind {
            EventKind::Error { failure, .. } => Some(*failure),
            _ => None,
        })
        .collect();
    assert_eq!(actual, expected, "failures of {thread}");
}

/// What the failure log lines name as failed, in order; every other line names nothing.
#[track_caller]
pub(super) fn assert_failures_logged(h: &Harness, expected: &[Failure]) {
    let actual: Vec<Failure> = h.logs.iter().filter_map(|l| l.failure).collect();
    assert_eq!(actual, expected, "failure log lines in\n{}", logs_text(h));
    for line in &h.logs {
        assert_eq!(
            line.failure.is_some(),
            line.level == Level::Warn && line.message.contains("failed"),
            "log line {line}: a warning that something failed names the failure, no other does"
        );
    }
}

/// Every `session_state` value in `thread`'s rollout file, oldest first.
#[track_caller]
pub(super) fn assert_session_states(h: &Harness, thread: &str, expected: &[&str]) {
    assert_eq!(session_states(&h.rollout(thread)), expected, "session_state lines of {thread}");
}

/// The `type` of every line of `thread`'s rollout file that the machine appended after `skip`
/// bytes.
#[track_caller]
pub(super) fn assert_appended_types(h: &Harness, thread: &str, skip: usize, expected: &[&str]) {
    let file = h.rollout(thread);
    let text = String::from_utf8_lossy(&file[skip..]);
    let actual: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("the machine writes JSON")["type"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    assert_eq!(actual, expected, "lines appended to {thread}");
}

/// The thread's cached task, as `runtime/task`.
#[track_caller]
pub(super) fn assert_cached(h: &Harness, thread: &str, expected: Option<&str>) {
    let actual = h
        .machine
        .cached_task(&thread.into())
        .map(|t| format!("{}/{}", t.agent_runtime_id, t.task_id));
    assert_eq!(actual.as_deref(), expected, "cached task of {thread}");
}

/// Spec invariant 13: the last `session_state` of the rollout equals the cached task.
#[track_caller]
pub(super) fn assert_cache_agrees_with_rollout(h: &Harness, thread: &str) {
    let last = rollout::scan(&h.rollout(thread)).last_state.and_then(|s| s.task);
    assert_eq!(last.as_ref(), h.machine.cached_task(&thread.into()), "invariant 13 on {thread}");
}

/// The identity in the auth store, by runtime id.
#[track_caller]
pub(super) fn assert_stored(h: &Harness, expected: Option<&str>) {
    assert_eq!(h.store.as_ref().map(|s| s.agent_runtime_id.as_str()), expected, "auth store");
}

/// A log line with this message was written.
#[track_caller]
pub(super) fn assert_logged(h: &Harness, message: &str) {
    assert!(
        h.logs.iter().any(|l| l.message == message),
        "no log line {message:?} in\n{}",
        logs_text(h)
    );
}

/// A log line with this message was written at this level.
#[track_caller]
pub(super) fn assert_logged_at(h: &Harness, level: Level, message: &str) {
    assert!(
        h.logs.iter().any(|l| l.message == message && l.level == level),
        "no {} log line {message:?} in\n{}",
        level.name(),
        logs_text(h)
    );
}

/// No log line with this message was written.
#[track_caller]
pub(super) fn assert_not_logged(h: &Harness, message: &str) {
    assert!(
        !h.logs.iter().any(|l| l.message == message),
        "unexpected log line {message:?} in\n{}",
        logs_text(h)
    );
}

/// The values of field `field` of every log line with this message.
pub(super) fn logged_fields(h: &Harness, message: &str, field: &str) -> Vec<String> {
    h.logs
        .iter()
        .filter(|l| l.message == message)
        .filter_map(|l| l.fields.iter().find(|(n, _)| *n == field).map(|(_, v)| v.clone()))
        .collect()
}

fn logs_text(h: &Harness) -> String {
    h.logs.iter().map(|l| format!("  {l}\n")).collect()
}

/// The coverage mark was reported.
#[track_caller]
pub(super) fn assert_marked(h: &Harness, mark: &str) {
    assert!(h.marks.contains(&mark), "mark {mark} not hit; marks: {:?}", h.marks);
}

/// The coverage mark was not reported.
#[track_caller]
pub(super) fn assert_not_marked(h: &Harness, mark: &str) {
    assert!(!h.marks.contains(&mark), "mark {mark} unexpectedly hit");
}

/// How many times the mark was reported.
pub(super) fn count_marks(h: &Harness, mark: &str) -> usize {
    h.marks.iter().filter(|m| **m == mark).count()
}

/// These trace lines all appear, in this order (others may come between).
#[track_caller]
pub(super) fn assert_trace_order(h: &Harness, expected: &[&str]) {
    let mut rest = h.trace.iter();
    for want in expected {
        assert!(
            rest.any(|line| line == want),
            "{want:?} missing or out of order in trace:\n{}",
            h.trace.join("\n")
        );
    }
}
