//! The backend model: the server side of the wire protocol (spec section 2), pure, synchronous
//! and deterministic.
//!
//! [`Backend::handle`] takes one request (and the fault the simulator decided for it) and returns
//! one response. The model reads no clock (the simulator sets "now" with [`Backend::set_now`]),
//! draws every random byte from one ChaCha20 stream seeded by the caller, in request order, and
//! keeps only ordered maps, so the same request sequence gives byte-identical responses every run.
//!
//! It keeps what a real backend keeps: the accounts and their access tokens, the biscuits it
//! minted (and the URL each authorizes), the registered identities (runtime id, public key,
//! `registered_at`, `expires_at`, revoked) and which runtime each task id was issued to.
//! Besides answering, it records every *violation*: a request that a correct client never sends
//! (a bad signature, a biscuit minted for another URL, an unknown biscuit or task, a missing
//! header, an unreadable body...). Spec invariant 8 is checked from [`Backend::violations`].
//! Refusals a correct client can meet (an unknown access token, an unknown runtime at task
//! registration, an expired or revoked identity) are answered but are not violations.
//!
//! # Order of checks
//! Each request is first *admitted* (read-only: every check, every violation) and only then
//! *applied* (state changes and random draws). A check that fails answers with the first
//! failure in this order:
//! - every endpoint: known path (404 `not_found`), then method (405 `method_not_allowed`);
//! - biscuit: request headers (400 `invalid_request`), then the bearer token (401 `invalid_token`);
//! - registrations: the biscuit (401 `invalid_biscuit`), then the body (400 `invalid_request`,
//!   `invalid_public_key`, `invalid_timestamp`); task registration then checks the runtime
//!   (404 `unknown_runtime`), the signature (401 `invalid_signature`) and last its validity
//!   (401 `identity_expired`), so a bad signature is recorded even for an expired identity;
//! - model request: an `AgentAssertion` is malformed, names a task issued to another runtime, or
//!   does not verify (401 `invalid_assertion`, violations); names a task this backend never
//!   issued (401 `invalid_assertion`, an answer); is stamped more than
//!   [`ASSERTION_MAX_SKEW_SECS`] away from the backend's clock (401 `stale_assertion`, a
//!   violation); then its identity is revoked or expired (401 `identity_expired`).
//!
//! # Faults
//! The simulator decides a fault before sending; the model produces it as a real response so both
//! transports carry the same bytes:
//! - [`FaultKind::Status`]: the request is admitted (violations are still recorded) but not
//!   applied: no state change, no random draw. The answer is that status with the given body, or
//!   `{"error":"injected"}`.
//! - [`FaultKind::Timeout`] and [`FaultKind::Reset`]: handled normally (the caller drops the
//!   response of a timeout; a transport never calls the model for a reset).
//! - Every other fault: the request is handled normally (state changes, random draws, violations
//!   happen) and then the answer is replaced by a 200 of the fault's shape, whatever the model
//!   answered. On the biscuit endpoint the body faults change only the body: the biscuit header
//!   is still sent (the client reads only the header). A fault that does not apply to an
//!   endpoint (a sealed-box fault outside task registration, a biscuit-header fault outside the
//!   biscuit endpoint) behaves like [`FaultKind::MalformedJson`] on it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use agentsim_core::time::Timestamp;
use agentsim_core::wire::{
    parse_assertion_header, parse_ssh_public_key, seal_base64, verify_assertion, verify_signature,
    x25519_public, HttpRequest, HttpResponse, IdentityRegistrationRequest,
    IdentityRegistrationResponse, Method, TaskRegistrationRequest, TaskRegistrationResponse,
    BISCUIT_REQUEST_HEADER, BISCUIT_RESPONSE_HEADER, REQUEST_ID_PREFIX,
};
use ed25519_dalek::VerifyingKey;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};

use crate::fault::{Endpoint, FaultKind};

/// **\[ours\]** How far an assertion's timestamp may be from the backend's clock (spec section
/// 2.4): further, and the model request is refused with 401 `stale_assertion`.
pub const ASSERTION_MAX_SKEW_SECS: u64 = 300;

/// Size of the body of a [`FaultKind::HugeBody`] answer: 10 MiB.
pub const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The last instant RFC 3339 can write, `9999-12-31T23:59:59Z`.
pub const LAST_WRITABLE_INSTANT: Timestamp = Timestamp(253_402_300_799_000);

/// The `content-type` of every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// How the model behaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendConfig {
    /// **\[ours\]** Lifetime of a registered identity. `None`: identities never expire (the
    /// reference design); `Some`: registration answers `expires_at` = now + ttl, cut to whole
    /// seconds, and the identity counts as expired from that instant on (`now >= expires_at`).
    pub identity_ttl_ms: Option<u64>,
}

/// What the model has seen, for summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Requests seen per endpoint, faulted ones included (a reset never reaches the model).
    pub requests: BTreeMap<Endpoint, u64>,
    /// Requests for a path that is no endpoint.
    pub unknown_path_requests: u64,
    /// Biscuits minted.
    pub biscuits_minted: u64,
    /// Identities registered, out-of-band ones included.
    pub identities_registered: u64,
    /// Task ids issued.
    pub tasks_issued: u64,
    /// Model requests answered `completed`.
    pub model_responses: u64,
}

impl BackendStats {
    /// Requests seen for one endpoint.
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint).copied().unwrap_or(0)
    }
}

/// The stateful backend model. See the module doc for the protocol, the checks and the faults.
#[derive(Debug)]
pub struct Backend {
    config: BackendConfig,
    rng: ChaCha20Rng,
    now: Timestamp,
    /// Access token → account id.
    tokens: BTreeMap<String, String>,
    /// Biscuit → what it authorizes.
    biscuits: BTreeMap<String, BiscuitGrant>,
    /// Runtime id → identity.
    runtimes: BTreeMap<String, RuntimeRecord>,
    /// Account id → its most recently registered runtime.
    latest_runtimes: BTreeMap<String, String>,
    /// Task id → the runtime it was issued to.
    tasks: BTreeMap<String, String>,
    violations: Vec<String>,
    stats: BackendStats,
    /// What the last request that reached the model got, by the model's own records.
    last_answer: Option<Answer>,
}

/// What the backend did with one request, by its own records: the ground truth the reference
/// model reads instead of parsing response bytes (a fault may still reshape what the client gets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A biscuit was minted.
    Minted,
    /// An identity was registered; `expires_at` is the instant the answer's text denotes.
    Registered { agent_runtime_id: String, expires_at: Option<Timestamp> },
    /// A task id was issued to a runtime.
    Issued { task_id: String, agent_runtime_id: String },
    /// The model request completed.
    Completed,
    /// Refused with this status and `error` field.
    Refused { status: u16, error: &'static str },
    /// An injected status fault answered instead: the request was not applied.
    Injected { status: u16, body: Option<String> },
}

impl Backend {
    /// A fresh backend: no accounts, no identities; "now" is [`Timestamp::SIM_EPOCH`] until set.
    pub fn new(seed: [u8; 32], config: BackendConfig) -> Backend {
        Backend {
            config,
            rng: ChaCha20Rng::from_seed(seed),
            now: Timestamp::SIM_EPOCH,
            tokens: BTreeMap::new(),
            biscuits: BTreeMap::new(),
            runtimes: BTreeMap::new(),
            latest_runtimes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            violations: Vec::new(),
            stats: BackendStats::default(),
            last_answer: None,
        }
    }

    /// Sets the virtual clock. The model never reads a real one.
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
    }

    /// The virtual clock as last set.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Lets the biscuit endpoint accept `access_token` for `account_id` (a later call with the
    /// same token rebinds it).
    pub fn add_account(&mut self, account_id: &str, access_token: &str) {
        self.tokens.insert(access_token.to_owned(), account_id.to_owned());
    }

    /// Answers one request. `fault` is the simulator's decision for this call (module doc).
    pub fn handle(&mut self, request: &HttpRequest, fault: Option<&FaultKind>) -> HttpResponse {
        let path = path_of(request);
        let endpoint = Endpoint::of_path(path);
        match endpoint {
            Some(e) => *self.stats.requests.entry(e).or_insert(0) += 1,
            None => self.stats.unknown_path_requests += 1,
        }
        let admission = self.admit(request, endpoint);
        if let Err(refusal) = &admission {
            if let Some(reason) = &refusal.violation {
                self.violations.push(format!("{} {path}: {reason}", request.method.as_str()));
            }
        }
        if let Some(FaultKind::Status { status, body }) = fault {
            self.last_answer = Some(Answer::Injected { status: *status, body: body.clone() });
            return injected_status(*status, body.as_deref());
        }
        let outcome = match admission {
            Ok(admitted) => self.apply(admitted),
            Err(refusal) => Outcome::refused(&refusal),
        };
        self.last_answer = Some(outcome.answer.clone());
        match fault {
            None | Some(FaultKind::Timeout | FaultKind::Reset) => outcome.response,
            Some(kind) => self.mangle(endpoint, kind, outcome),
        }
    }

    /// Registers an identity without a request: "another process rotated the identity". Draws
    /// from the random stream like a registration request does.
    ///
    /// # Panics
    /// When `ssh_public_key` is not an `ssh-ed25519` key (a broken scenario).
    pub fn register_identity_out_of_band(
        &mut self,
        account_id: &str,
        ssh_public_key: &str,
    ) -> IdentityRegistrationResponse {
        let public_key = parse_ssh_public_key(ssh_public_key).unwrap_or_else(|_| {
            panic!("out-of-band registration needs an ssh-ed25519 key, got {ssh_public_key:?}")
        });
        self.register_identity(account_id, public_key)
    }

    /// Makes an identity count as expired from now on (task registration and assertions answer
    /// 401 `identity_expired`).
    ///
    /// # Panics
    /// When the runtime was never registered (a broken scenario).
    pub fn expire(&mut self, agent_runtime_id: &str) {
        self.runtime_mut(agent_runtime_id, "expire").expired = true;
    }

    /// Revokes an identity: it answers like an expired one from now on.
    ///
    /// # Panics
    /// When the runtime was never registered (a broken scenario).
    pub fn revoke(&mut self, agent_runtime_id: &str) {
        self.runtime_mut(agent_runtime_id, "revoke").revoked = true;
    }

    /// The most recently registered runtime of an account.
    pub fn latest_runtime(&self, account_id: &str) -> Option<String> {
        self.latest_runtimes.get(account_id).cloned()
    }

    /// The runtime a task id was issued to.
    pub fn task_runtime(&self, task_id: &str) -> Option<String> {
        self.tasks.get(task_id).cloned()
    }

    /// A registered identity.
    pub fn runtime(&self, agent_runtime_id: &str) -> Option<&RuntimeRecord> {
        self.runtimes.get(agent_runtime_id)
    }

    /// Whether a runtime is registered and currently valid (not revoked, not expired).
    pub fn runtime_is_valid(&self, agent_runtime_id: &str) -> bool {
        self.runtimes.get(agent_runtime_id).is_some_and(|r| !r.is_expired(self.now))
    }

    /// Every violation so far, in request order: `"{METHOD} {path}: {what was wrong}"`.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// What the model did with the last request that reached it ([`Backend::handle`]), once:
    /// a request that never reaches the model (a reset) finds `None`.
    pub fn take_last_answer(&mut self) -> Option<Answer> {
        self.last_answer.take()
    }

    /// What the model has seen so far.
    pub fn stats(&self) -> BackendStats {
        self.stats.clone()
    }
}

/// One registered identity, as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeRecord {
    /// The account that registered it.
    pub account_id: String,
    /// Its Ed25519 public key.
    pub public_key: VerifyingKey,
    /// When it was registered (virtual time).
    pub registered_at: Timestamp,
    /// The `expires_at` sent to the client, as the instant it denotes.
    pub expires_at: Option<Timestamp>,
    /// Set by [`Backend::expire`].
    pub expired: bool,
    /// Set by [`Backend::revoke`].
    pub revoked: bool,
}

impl RuntimeRecord {
    /// Whether the identity is refused at `now`: revoked, expired by hand, or `now >= expires_at`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.revoked || self.expired || self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A biscuit's grant: who minted it and which URL it authorizes.
#[derive(Clone, Debug)]
struct BiscuitGrant {
    account_id: String,
    /// The path of `X-Original-Url`. Only the path is compared, so the model does not depend on
    /// the authority a transport uses.
    path: String,
}

/// A request that passed every check, with what applying it needs.
#[derive(Clone, Debug)]
enum Admitted {
    Biscuit { account_id: String, path: String },
    Identity { account_id: String, public_key: VerifyingKey },
    Task { agent_runtime_id: String, public_key: VerifyingKey },
    Model,
}

/// A request that failed a check.
#[derive(Clone, Debug)]
struct Refusal {
    status: u16,
    /// The `error` field of the JSON body.
    error: &'static str,
    /// What a correct client would not have done, when the refusal is the client's fault.
    violation: Option<String>,
}

impl Refusal {
    /// A refusal a correct client can meet.
    fn answer(status: u16, error: &'static str) -> Refusal {
        Refusal { status, error, violation: None }
    }

    /// A refusal that records a violation.
    fn violation(status: u16, error: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal { status, error, violation: Some(reason.into()) }
    }
}

/// The model's own answer, before a fault reshapes it.
#[derive(Clone, Debug)]
struct Outcome {
    response: HttpResponse,
    /// Task registration: the task id issued and the key it was sealed to.
    issued_task: Option<(String, VerifyingKey)>,
    /// The same answer, as the model's records say it.
    answer: Answer,
}

impl Outcome {
    fn plain(response: HttpResponse, answer: Answer) -> Outcome {
        Outcome { response, issued_task: None, answer }
    }

    fn refused(refusal: &Refusal) -> Outcome {
        let answer = Answer::Refused { status: refusal.status, error: refusal.error };
        Outcome::plain(error_response(refusal.status, refusal.error), answer)
    }
}

// Admission: every check, read-only.
impl Backend {
    fn admit(
        &self,
        request: &HttpRequest,
        endpoint: Option<Endpoint>,
    ) -> Result<Admitted, Refusal> {
        let Some(endpoint) = endpoint else {
            return Err(Refusal::violation(404, "not_found", "no such endpoint"));
        };
        let expected = if endpoint == Endpoint::Biscuit { Method::Get } else { Method::Post };
        if request.method != expected {
            let reason = format!("{endpoint} expects {}", expected.as_str());
            return Err(Refusal::violation(405, "method_not_allowed", reason));
        }
        match endpoint {
            Endpoint::Biscuit => self.admit_biscuit(request),
            Endpoint::IdentityRegister => self.admit_identity(request),
            Endpoint::TaskRegister => self.admit_task(request),
            Endpoint::Model => self.admit_model(request),
        }
    }

    fn admit_biscuit(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        let bad = |reason: &str| Refusal::violation(400, "invalid_request", reason);
        if !request.header("X-Request-Id").is_some_and(|id| id.starts_with(REQUEST_ID_PREFIX)) {
            return Err(bad("missing X-Request-Id or it lacks the codex-agent-identity- prefix"));
        }
        if request.header("X-Original-Method") != Some("POST") {
            return Err(bad("X-Original-Method is missing or not POST"));
        }
        let Some(original_url) = request.header("X-Original-Url") else {
            return Err(bad("missing X-Original-Url"));
        };
        let path = url_path(original_url);
        if !matches!(
            Endpoint::of_path(path),
            Some(Endpoint::IdentityRegister | Endpoint::TaskRegister)
        ) {
            return Err(bad(&format!("X-Original-Url {path} is not a registration endpoint")));
        }
        let Some(token) = request.header("Authorization").and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(Refusal::violation(
                401,
                "invalid_token",
                "missing Authorization: Bearer header",
            ));
        };
        let Some(account_id) = self.tokens.get(token) else {
            return Err(Refusal::answer(401, "invalid_token"));
        };
        Ok(Admitted::Biscuit { account_id: account_id.clone(), path: path.to_owned() })
    }

    /// The account of the biscuit a registration call carries, which must authorize this path.
    fn admit_biscuit_header(&self, request: &HttpRequest) -> Result<&str, Refusal> {
        let bad = |reason: String| Refusal::violation(401, "invalid_biscuit", reason);
        let Some(biscuit) = request.header(BISCUIT_REQUEST_HEADER) else {
            return Err(bad(format!("missing {BISCUIT_REQUEST_HEADER} header")));
        };
        let Some(grant) = self.biscuits.get(biscuit) else {
            return Err(bad("unknown biscuit".to_owned()));
        };
        if grant.path != path_of(request) {
            return Err(bad(format!("biscuit was minted for {}", grant.path)));
        }
        Ok(&grant.account_id)
    }

    fn admit_identity(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        let account_id = self.admit_biscuit_header(request)?.to_owned();
        let body: IdentityRegistrationRequest = parse_body(request)?;
        let public_key = parse_ssh_public_key(&body.agent_public_key).map_err(|_| {
            Refusal::violation(
                400,
                "invalid_public_key",
                "agent_public_key is not an ssh-ed25519 key",
            )
        })?;
        Ok(Admitted::Identity { account_id, public_key })
    }

    fn admit_task(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        self.admit_biscuit_header(request)?;
        let body: TaskRegistrationRequest = parse_body(request)?;
        let agent_runtime_id = runtime_of_task_path(path_of(request));
        let Some(record) = self.runtimes.get(agent_runtime_id) else {
            return Err(Refusal::answer(404, "unknown_runtime"));
        };
        if Timestamp::parse_rfc3339(&body.timestamp).is_err() {
            return Err(Refusal::violation(400, "invalid_timestamp", "timestamp is not RFC 3339"));
        }
        let message = format!("{agent_runtime_id}:{}", body.timestamp);
        if !verify_signature(&record.public_key, &message, &body.signature) {
            return Err(Refusal::violation(
                401,
                "invalid_signature",
                "signature does not verify under the registered key",
            ));
        }
        if record.is_expired(self.now) {
            return Err(Refusal::answer(401, "identity_expired"));
        }
        Ok(Admitted::Task {
            agent_runtime_id: agent_runtime_id.to_owned(),
            public_key: record.public_key,
        })
    }

    fn admit_model(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        let assertion_header = request.headers.iter().find_map(|(name, value)| {
            (name.eq_ignore_ascii_case("Authorization") && value.starts_with("AgentAssertion"))
                .then_some(value.as_str())
        });
        let Some(header) = assertion_header else { return Ok(Admitted::Model) };
        let bad = |reason: String| Refusal::violation(401, "invalid_assertion", reason);
        let assertion = parse_assertion_header(header)
            .map_err(|_| bad("malformed AgentAssertion".to_owned()))?;
        let runtime = &assertion.agent_runtime_id;
        match self.tasks.get(&assertion.task_id) {
            Some(issued_to) if issued_to == runtime => {}
            Some(issued_to) => {
                let task = &assertion.task_id;
                return Err(bad(format!(
                    "assertion task {task} was issued to runtime {issued_to}, not {runtime}"
                )));
            }
            // A task this backend never issued (a rollout written against another backend, or a
            // backend that forgot) is refused, but a correct client can meet it (invariant 8).
            None => return Err(Refusal::answer(401, "invalid_assertion")),
        }
        let record = self.runtimes.get(runtime).expect("a task's runtime is always registered");
        let Ok(stamped) = Timestamp::parse_rfc3339(&assertion.timestamp) else {
            return Err(bad("assertion timestamp is not RFC 3339".to_owned()));
        };
        if verify_assertion(&record.public_key, &assertion).is_err() {
            return Err(bad(format!(
                "assertion signature does not verify under the key of {runtime}"
            )));
        }
        // Spec section 2.4 [ours]: a replay guard. A correct client stamps the assertion when it
        // sends the request, so a stale one is also the client's mistake.
        let skew_ms = stamped.unix_ms().abs_diff(self.now.unix_ms());
        if skew_ms > ASSERTION_MAX_SKEW_SECS * 1000 {
            let reason = format!(
                "assertion timestamp {} is {} s away from the backend's clock (at most {ASSERTION_MAX_SKEW_SECS} s)",
                assertion.timestamp,
                skew_ms / 1000
            );
            return Err(Refusal::violation(401, "stale_assertion", reason));
        }
        if record.is_expired(self.now) {
            return Err(Refusal::answer(401, "identity_expired"));
        }
        Ok(Admitted::Model)
    }
}

// Application: state changes and random draws, in a fixed order per request.
impl Backend {
    fn apply(&mut self, admitted: Admitted) -> Outcome {
        match admitted {
            Admitted::Biscuit { account_id, path } => {
                let biscuit = self.draw_unused_id("bsc_", 16, |b, id| b.biscuits.contains_key(id));
                self.biscuits.insert(biscuit.clone(), BiscuitGrant { account_id, path });
                self.stats.biscuits_minted += 1;
                let mut response = json_response(b"{}".to_vec());
                response.headers.push((BISCUIT_RESPONSE_HEADER.to_owned(), biscuit.into_bytes()));
                Outcome::plain(response, Answer::Minted)
            }
            Admitted::Identity { account_id, public_key } => {
                let registered = self.register_identity(&account_id, public_key);
                let answer = Answer::Registered {
                    agent_runtime_id: registered.agent_runtime_id.clone(),
                    expires_at: self.runtimes[&registered.agent_runtime_id].expires_at,
                };
                Outcome::plain(json_response(to_json(&registered)), answer)
            }
            Admitted::Task { agent_runtime_id, public_key } => {
                let task_id = self.draw_unused_id("task_", 4, |b, id| b.tasks.contains_key(id));
                self.tasks.insert(task_id.clone(), agent_runtime_id.clone());
                self.stats.tasks_issued += 1;
                let encrypted_task_id =
                    seal_base64(&x25519_public(&public_key), task_id.as_bytes(), &mut self.rng);
                let body = to_json(&TaskRegistrationResponse { encrypted_task_id });
                let answer = Answer::Issued { task_id: task_id.clone(), agent_runtime_id };
                Outcome {
                    response: json_response(body),
                    issued_task: Some((task_id, public_key)),
                    answer,
                }
            }
            Admitted::Model => {
                self.stats.model_responses += 1;
                let body = format!(
                    r#"{{"id":"resp_{}","status":"completed"}}"#,
                    self.stats.model_responses
                );
                Outcome::plain(json_response(body.into_bytes()), Answer::Completed)
            }
        }
    }

    fn register_identity(
        &mut self,
        account_id: &str,
        public_key: VerifyingKey,
    ) -> IdentityRegistrationResponse {
        let agent_runtime_id =
            self.draw_unused_id("agent-", 4, |b, id| b.runtimes.contains_key(id));
        // A TTL that ends past what RFC 3339 can write ends at the last writable instant instead:
        // the identity outlives any run either way.
        let expires_at_text = self
            .config
            .identity_ttl_ms
            .map(|ttl| self.now.plus_ms(ttl).min(LAST_WRITABLE_INSTANT).rfc3339_secs());
        // The instant the client will read back from the text, so both sides agree to the
        // millisecond on when the identity expires.
        let expires_at = expires_at_text
            .as_deref()
            .map(|text| Timestamp::parse_rfc3339(text).expect("rfc3339_secs output parses"));
        let record = RuntimeRecord {
            account_id: account_id.to_owned(),
            public_key,
            registered_at: self.now,
            expires_at,
            expired: false,
            revoked: false,
        };
        self.runtimes.insert(agent_runtime_id.clone(), record);
        self.latest_runtimes.insert(account_id.to_owned(), agent_runtime_id.clone());
        self.stats.identities_registered += 1;
        IdentityRegistrationResponse { agent_runtime_id, expires_at: expires_at_text }
    }

    /// `prefix` + `bytes` random bytes in hex, drawn again while `taken` (a collision of short
    /// ids would merge two records).
    fn draw_unused_id(
        &mut self,
        prefix: &str,
        bytes: usize,
        taken: impl Fn(&Backend, &str) -> bool,
    ) -> String {
        for _ in 0..64 {
            let mut raw = vec![0u8; bytes];
            self.rng.fill_bytes(&mut raw);
            let id = raw.iter().fold(prefix.to_owned(), |mut s, b| {
                write!(s, "{b:02x}").expect("writing to a String cannot fail");
                s
            });
            if !taken(self, &id) {
                return id;
            }
        }
        panic!("64 random {prefix} ids in a row were taken: the id space is exhausted");
    }

    fn runtime_mut(&mut self, agent_runtime_id: &str, verb: &str) -> &mut RuntimeRecord {
        self.runtimes.get_mut(agent_runtime_id).unwrap_or_else(|| {
            panic!("{verb}: agent runtime {agent_runtime_id} was never registered")
        })
    }

    /// The answer a body fault gives instead of the model's own (module doc).
    fn mangle(
        &mut self,
        endpoint: Option<Endpoint>,
        kind: &FaultKind,
        outcome: Outcome,
    ) -> HttpResponse {
        let field = expected_field(endpoint);
        let biscuit_header: Vec<(String, Vec<u8>)> = outcome
            .response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(BISCUIT_RESPONSE_HEADER))
            .cloned()
            .collect();
        let on_biscuit = endpoint == Some(Endpoint::Biscuit);
        let on_task = endpoint == Some(Endpoint::TaskRegister);
        let mut response = match kind {
            FaultKind::MissingField => json_response(b"{}".to_vec()),
            FaultKind::WrongJsonTypes => json_response(match field {
                Some(field) => format!(r#"{{"{field}":42}}"#).into_bytes(),
                None => b"[42]".to_vec(),
            }),
            FaultKind::EmptyBody => json_response(Vec::new()),
            FaultKind::WrongContentType => HttpResponse {
                status: 200,
                headers: vec![("content-type".to_owned(), b"text/html".to_vec())],
                body: b"<html><body>upstream gateway</body></html>".to_vec(),
            },
            FaultKind::HugeBody => json_response(huge_body(field)),
            FaultKind::BadBase64 if on_task => json_response(to_json(&TaskRegistrationResponse {
                encrypted_task_id: "!!not-base64!!".to_owned(),
            })),
            FaultKind::WrongKeyBox if on_task => {
                let plaintext =
                    outcome.issued_task.as_ref().map_or("task_unissued", |(id, _)| id.as_str());
                let stranger = crypto_box::SecretKey::generate(&mut self.rng).public_key();
                let encrypted_task_id = seal_base64(&stranger, plaintext.as_bytes(), &mut self.rng);
                json_response(to_json(&TaskRegistrationResponse { encrypted_task_id }))
            }
            FaultKind::NonUtf8Plaintext if on_task => {
                let recipient = match &outcome.issued_task {
                    Some((_, key)) => x25519_public(key),
                    None => crypto_box::SecretKey::generate(&mut self.rng).public_key(),
                };
                let encrypted_task_id = seal_base64(&recipient, &[0xff, 0xfe, 0xfd], &mut self.rng);
                json_response(to_json(&TaskRegistrationResponse { encrypted_task_id }))
            }
            FaultKind::MissingBiscuitHeader if on_biscuit => return json_response(b"{}".to_vec()),
            FaultKind::NonUtf8BiscuitHeader if on_biscuit => {
                let mut response = json_response(b"{}".to_vec());
                response.headers.push((BISCUIT_RESPONSE_HEADER.to_owned(), vec![0xff, 0xfe]));
                return response;
            }
            // `MalformedJson` itself, and every fault that does not apply to this endpoint.
            _ => json_response(match field {
                Some(field) => format!(r#"{{"{field}": "#).into_bytes(),
                None => b"{".to_vec(),
            }),
        };
        if on_biscuit {
            response.headers.extend(biscuit_header);
        }
        response
    }
}

/// The path of a request without its query.
fn path_of(request: &HttpRequest) -> &str {
    strip_query(request.path())
}

/// The path of an absolute URL (the same rule as [`HttpRequest::path`]) without its query.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    strip_query(after_scheme.find('/').map_or("/", |i| &after_scheme[i..]))
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// The runtime id in `/v1/agent/{runtime}/task/register` (the caller matched the shape).
fn runtime_of_task_path(path: &str) -> &str {
    let rest = path.strip_prefix("/v1/agent/").unwrap_or(path);
    rest.strip_suffix("/task/register").unwrap_or(rest)
}

fn parse_body<T: serde::de::DeserializeOwned>(request: &HttpRequest) -> Result<T, Refusal> {
    let body = request.body.as_deref().unwrap_or("");
    serde_json::from_str(body).map_err(|e| {
        Refusal::violation(400, "invalid_request", format!("body is not the expected JSON: {e}"))
    })
}

/// The JSON field a client reads from an endpoint's 2xx body.
fn expected_field(endpoint: Option<Endpoint>) -> Option<&'static str> {
    match endpoint? {
        Endpoint::Biscuit => None,
        Endpoint::IdentityRegister => Some("agent_runtime_id"),
        Endpoint::TaskRegister => Some("encrypted_task_id"),
        Endpoint::Model => Some("status"),
    }
}

/// [`HUGE_BODY_BYTES`] of an unterminated JSON string: it looks like JSON and never parses.
fn huge_body(field: Option<&str>) -> Vec<u8> {
    let mut body = format!(r#"{{"{}":""#, field.unwrap_or("padding")).into_bytes();
    body.resize(HUGE_BODY_BYTES, b'x');
    body
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("wire types serialize")
}

fn json_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".to_owned(), JSON_CONTENT_TYPE.as_bytes().to_vec())],
        body,
    }
}

fn error_response(status: u16, error: &str) -> HttpResponse {
    HttpResponse { status, ..json_response(format!(r#"{{"error":"{error}"}}"#).into_bytes()) }
}

fn injected_status(status: u16, body: Option<&str>) -> HttpResponse {
    assert!(
        (100..=599).contains(&status),
        "an injected status must be a valid HTTP status, got {status}"
    );
    let body = body.unwrap_or(r#"{"error":"injected"}"#);
    HttpResponse { status, ..json_response(body.as_bytes().to_vec()) }
}

#[cfg(test)]
mod tests;
