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

use agentsim_core::time::Timestamp;
use agentsim_core::wire::{
    parse_ssh_public_key, HttpRequest, HttpResponse, IdentityRegistrationResponse,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

use crate::fault::{Endpoint, FaultKind};

mod admit;
mod apply;
mod assertion;
mod faults;
mod http;
mod records;

use apply::Outcome;
use faults::injected_status;
use http::path_of;
use records::BiscuitGrant;
pub use records::{Answer, RuntimeRecord};

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

    /// The violations recorded since the last take, which the model then forgets: for a
    /// long-running server (`sim serve`), which logs each one as it happens.
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
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

#[cfg(test)]
mod tests;
