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
mod tests {
    use super::*;
    use agentsim_core::wire::{
        request_id, task_register_path, Abom, IdentityKey, BISCUIT_PATH, IDENTITY_REGISTER_PATH,
        MODEL_PATH,
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
        String::from_utf8(
            response.header(BISCUIT_RESPONSE_HEADER).expect("biscuit header").to_vec(),
        )
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
            identity.agent_runtime_id.starts_with("agent-")
                && identity.agent_runtime_id.len() == 14
        );
        assert_eq!(identity.expires_at, None);
        assert_eq!(
            backend.latest_runtime(ACCOUNT).as_deref(),
            Some(identity.agent_runtime_id.as_str())
        );

        let task = register_task(&mut backend, &key, &identity.agent_runtime_id);
        assert!(task.starts_with("task_") && task.len() == 13, "{task}");
        assert_eq!(
            backend.task_runtime(&task).as_deref(),
            Some(identity.agent_runtime_id.as_str())
        );

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
            [
                Endpoint::Biscuit,
                Endpoint::IdentityRegister,
                Endpoint::TaskRegister,
                Endpoint::Model
            ]
            .map(|e| stats.requests(e)),
            [2, 1, 1, 2]
        );
        assert_eq!(
            (stats.biscuits_minted, stats.identities_registered, stats.tasks_issued),
            (2, 1, 1)
        );
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
        assert!(
            backend.violations()[0].starts_with("GET /authenticate_app_v2: missing X-Request-Id")
        );
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
        assert_eq!(
            backend.handle(&model_request(stamped("2026-04-18T14:59:59Z")), None).status,
            200
        );

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
            let response =
                backend.handle(&model_request(Some(assertion(&key, &runtime, &task))), None);
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
            "AgentAssertion !!!".to_owned(),
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
                    Endpoint::Biscuit => {
                        biscuit_request(&format!("{BASE}{IDENTITY_REGISTER_PATH}"))
                    }
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
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&response.body).is_ok(),
                    "{what}"
                );
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
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&response.body).is_err(),
                    "{what}"
                );
            }
            FaultKind::BadBase64 | FaultKind::WrongKeyBox | FaultKind::NonUtf8Plaintext
                if endpoint == Endpoint::TaskRegister =>
            {
                let encrypted =
                    body_json(response)["encrypted_task_id"].as_str().unwrap().to_owned();
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
                let expected = matches!(kind, FaultKind::NonUtf8BiscuitHeader)
                    .then_some([0xff, 0xfe].as_slice());
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
}
