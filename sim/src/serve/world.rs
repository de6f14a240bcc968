//! What the server keeps behind its one lock: the backend model, the live fault plan and its
//! random stream, the journal, and the latest registered runtime. No HTTP here: the glue in
//! [`super::http`] turns hyper's requests into the model's and back.

use std::sync::{Mutex, MutexGuard, PoisonError};

use agentsim_core::wire::{HttpRequest, HttpResponse};
use agentsim_core::Timestamp;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;

use super::faults::LivePlan;
use super::journal::{Journal, JournalEntry};
use super::ServeOptions;
use crate::backend::{Answer, Backend, BackendConfig};
use crate::fault::{Endpoint, FaultKind, RandomFaults};
use crate::report::{request_summary, response_summary};
use crate::scenario::FaultFile;
use crate::seed;
use crate::transport::normalize_response;

/// What to do with a protocol request once the model has seen it.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Send this answer now.
    Send(HttpResponse),
    /// A `timeout` fault: send this answer after the hold.
    Hold(HttpResponse),
    /// A `reset` fault: close the connection without an answer.
    Drop,
}

/// Expire or revoke, for the admin API.
#[derive(Clone, Copy, Debug)]
pub(super) enum Retire {
    Expire,
    Revoke,
}

/// The server's state. No `Debug`: the model holds access tokens and biscuits.
pub(super) struct World {
    backend: Backend,
    plan: LivePlan,
    /// Two draws per protocol call (`FaultPlan::decide`), as in a simulated run.
    fault_rng: ChaCha20Rng,
    journal: Journal,
    /// The runtime of the most recent identity registration, of any account.
    latest_runtime: Option<String>,
}

impl World {
    /// A fresh world from the options: what the server starts with, and what a reset restores.
    /// The random streams have the labels a simulated run gives them (`backend`, `faults`), so a
    /// seed draws the same ids and fault decisions for the same sequence of requests.
    pub(super) fn new(options: &ServeOptions) -> World {
        let config = BackendConfig { identity_ttl_ms: options.identity_ttl_ms };
        let mut backend = Backend::new(seed::bytes32(options.seed, "backend"), config);
        for (account_id, access_token) in &options.accounts {
            backend.add_account(account_id, access_token);
        }
        World {
            backend,
            plan: LivePlan::new(options.faults.clone(), options.random_faults.clone()),
            fault_rng: seed::stream(options.seed, "faults"),
            journal: Journal::new(),
            latest_runtime: None,
        }
    }

    /// Answers one protocol request received at `now`: decides its fault, lets the model handle
    /// it, journals it.
    pub(super) fn answer(&mut self, now: Timestamp, request: &HttpRequest) -> Outcome {
        let endpoint = Endpoint::of_path(request.path());
        let fault = endpoint.and_then(|endpoint| {
            let rng = &mut self.fault_rng;
            self.plan.decide(endpoint, || rng.next_u32())
        });
        let mut entry = entry(now, request.method.as_str(), request, endpoint);
        entry.fault = fault.as_ref().map(FaultKind::name);
        if fault == Some(FaultKind::Reset) {
            // A reset never reaches the model, as in a simulated run.
            self.journal.record(entry);
            return Outcome::Drop;
        }
        self.backend.set_now(now);
        let response = normalize_response(self.backend.handle(request, fault.as_ref()));
        if let Some(Answer::Registered { agent_runtime_id, .. }) = self.backend.take_last_answer() {
            self.latest_runtime = Some(agent_runtime_id);
        }
        // Logged, then forgotten: a client that keeps misbehaving does not grow the server.
        for violation in self.backend.take_violations() {
            // The model's own words: never a token, biscuit, signature or key.
            tracing::warn!("a correct client never sends this: {violation}");
        }
        entry.status = Some(response.status);
        entry.answer = response_summary(endpoint, &response);
        self.journal.record(entry);
        if fault == Some(FaultKind::Timeout) {
            Outcome::Hold(response)
        } else {
            Outcome::Send(response)
        }
    }

    /// Journals a request answered before the model could see it (a method the protocol never
    /// uses, a body too large or not UTF-8), and hands the answer back. `request` carries the
    /// request's URL and headers; its method and body are not read.
    pub(super) fn refuse(
        &mut self,
        now: Timestamp,
        method: &str,
        request: &HttpRequest,
        response: HttpResponse,
    ) -> HttpResponse {
        let endpoint = Endpoint::of_path(request.path());
        let mut entry = entry(now, method, request, endpoint);
        entry.status = Some(response.status);
        entry.answer = response_summary(endpoint, &response);
        self.journal.record(entry);
        response
    }

    /// Expires or revokes `agent_runtime_id`, or the latest registered runtime; the runtime, or
    /// `None` when there is no such runtime.
    pub(super) fn retire(
        &mut self,
        how: Retire,
        agent_runtime_id: Option<String>,
    ) -> Option<String> {
        let runtime = agent_runtime_id.or_else(|| self.latest_runtime.clone())?;
        // Checked first: the model panics on a runtime it never registered.
        self.backend.runtime(&runtime)?;
        match how {
            Retire::Expire => self.backend.expire(&runtime),
            Retire::Revoke => self.backend.revoke(&runtime),
        }
        Some(runtime)
    }

    /// Registers an identity without a protocol request ("another process registered it"), as a
    /// simulated run's warm start or rotation does; it becomes the latest runtime. `None` when the
    /// key is not an `ssh-ed25519` key (the model would panic on it).
    pub(super) fn register_out_of_band(
        &mut self,
        now: Timestamp,
        account_id: &str,
        ssh_public_key: &str,
    ) -> Option<agentsim_core::wire::IdentityRegistrationResponse> {
        agentsim_core::wire::parse_ssh_public_key(ssh_public_key).ok()?;
        self.backend.set_now(now);
        let response = self.backend.register_identity_out_of_band(account_id, ssh_public_key);
        self.latest_runtime = Some(response.agent_runtime_id.clone());
        Some(response)
    }

    /// Adds fault lines to the live plan.
    pub(super) fn add_faults(&mut self, file: FaultFile) {
        let rules = file.rules.into_iter().map(|rule| rule.value).collect();
        let random: Option<RandomFaults> = file.random.map(|random| random.value);
        self.plan.add(rules, random);
    }

    /// No more faults (until more are added).
    pub(super) fn heal(&mut self) {
        self.plan.heal();
    }

    /// Lets the biscuit endpoint accept one more access token.
    pub(super) fn add_account(&mut self, account_id: &str, access_token: &str) {
        self.backend.add_account(account_id, access_token);
    }

    /// The kept journal entries numbered above `since`.
    pub(super) fn journal(&self, since: u64) -> Vec<JournalEntry> {
        self.journal.since(since)
    }

    /// Protocol requests since the start or the last reset.
    pub(super) fn requests(&self) -> u64 {
        self.journal.requests()
    }
}

/// A journal entry for `request`, with no fault and no answer yet.
fn entry(
    now: Timestamp,
    method: &str,
    request: &HttpRequest,
    endpoint: Option<Endpoint>,
) -> JournalEntry {
    let path = request.path();
    JournalEntry {
        number: 0,
        at: now.rfc3339_millis(),
        method: method.to_owned(),
        path: path.split('?').next().unwrap_or(path).to_owned(),
        endpoint: endpoint.map(|e| e.name().to_owned()),
        request: request_summary(request),
        fault: None,
        status: None,
        answer: String::new(),
    }
}

/// The world behind its lock, and the lock's policy: a panic while it was held (a bug in the
/// model) poisons it; from then on protocol requests are answered 500 and the panic is logged
/// with each, until `POST /admin/reset` builds a fresh world.
pub(super) struct Guarded {
    world: Mutex<World>,
}

/// The world was left half-changed by a panic.
#[derive(Debug)]
pub(super) struct Poisoned;

impl Guarded {
    pub(super) fn new(world: World) -> Guarded {
        Guarded { world: Mutex::new(world) }
    }

    /// The world, unless a panic poisoned it (logged here, so it is never silent).
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, World>, Poisoned> {
        self.world.lock().map_err(|_| {
            tracing::error!(
                "the backend model panicked earlier: answering 500 until POST /admin/reset"
            );
            Poisoned
        })
    }

    /// The world even if poisoned: for reading the journal, which a panic in the model leaves
    /// whole (an entry is recorded after the model answers).
    pub(super) fn lock_anyway(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the world with `fresh` and clears any poison.
    pub(super) fn replace(&self, fresh: World) {
        *self.lock_anyway() = fresh;
        self.world.clear_poison();
    }

    /// Whether a panic poisoned the world.
    pub(super) fn is_poisoned(&self) -> bool {
        self.world.is_poisoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_under_the_lock_answers_500_until_a_reset() {
        let options = ServeOptions::default();
        let guarded = std::sync::Arc::new(Guarded::new(World::new(&options)));
        let poisoner = guarded.clone();
        let panicked = std::thread::spawn(move || {
            let _world = poisoner.world.lock();
            panic!("a bug in the model");
        })
        .join();
        assert!(panicked.is_err());
        assert!(guarded.is_poisoned());
        assert!(guarded.lock().is_err());
        assert_eq!(guarded.lock_anyway().requests(), 0);
        guarded.replace(World::new(&options));
        assert!(!guarded.is_poisoned());
        assert!(guarded.lock().is_ok());
    }
}
