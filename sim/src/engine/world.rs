//! The world outside the process: the policies the next process starts with, the signed-in auth,
//! each account's access token, the auth store every process shares, and the backend they all
//! live against. Identities registered out of band (a warm start, another process rotating) take
//! their keys from the world's own seeded stream. The world keeps what changes; the loop tells
//! core.

use std::collections::BTreeMap;

use agentsim_core::{wire, Auth, Binding, Config, ExpiryPolicy, StoredIdentity, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;

use super::ledger::Ledger;
use crate::backend::Backend;
use crate::check::Observation;
use crate::scenario::{AuthSpec, ConfigChange};
use crate::seed;
use crate::transport::SharedBackend;

pub(super) struct World {
    /// The master seed, from which each account's token is drawn.
    seed: u64,
    /// The keys of identities registered out of band.
    rng: ChaCha20Rng,
    pub(super) backend: SharedBackend,
    /// The policies the next process starts with.
    pub(super) config: Config,
    pub(super) auth: Auth,
    /// Each account's access token, drawn the first time it signs in.
    tokens: BTreeMap<String, String>,
    pub(super) auth_store: Option<StoredIdentity>,
}

impl World {
    pub(super) fn new(seed: u64, backend: SharedBackend, config: Config) -> World {
        World {
            seed,
            rng: seed::stream(seed, "world"),
            backend,
            config,
            auth: Auth::None,
            tokens: BTreeMap::new(),
            auth_store: None,
        }
    }

    /// The user signs in as `spec` (or out). A ChatGPT account's token is a secret.
    pub(super) fn sign_in(&mut self, spec: &AuthSpec, ledger: &mut Ledger) {
        self.auth = match spec {
            AuthSpec::None => Auth::None,
            AuthSpec::ApiKey => Auth::ApiKey,
            AuthSpec::ChatGpt { account, user } => {
                let token = match self.tokens.get(account) {
                    Some(t) => t.clone(),
                    None => {
                        let mut rng = seed::stream(self.seed, &format!("token/{account}"));
                        let token = format!("at-{}", seed::hex(&mut rng, 24));
                        self.backend.lock().expect("backend lock").add_account(account, &token);
                        self.tokens.insert(account.clone(), token.clone());
                        ledger.observe(Observation::Secret(&token));
                        token
                    }
                };
                Auth::ChatGpt {
                    binding: Binding { account_id: account.clone(), user_id: user.clone() },
                    access_token: token,
                }
            }
        };
    }

    /// Another process (or an earlier session) registers an identity and writes the auth store.
    pub(super) fn register_out_of_band(&mut self, now: Timestamp, why: &str, ledger: &mut Ledger) {
        let Some(binding) = self.auth.binding().cloned() else { return };
        let mut seed_bytes = [0u8; 32];
        self.rng.fill_bytes(&mut seed_bytes);
        let key = wire::IdentityKey::from_seed(seed_bytes);
        let mut backend = self.backend.lock().expect("backend lock");
        backend.set_now(now);
        let response =
            backend.register_identity_out_of_band(&binding.account_id, &key.ssh_public_key());
        drop(backend);
        let stored = StoredIdentity {
            binding,
            agent_runtime_id: response.agent_runtime_id,
            private_key: key.to_pkcs8_base64(),
            registered_at: now,
            expires_at: response.expires_at.and_then(|t| Timestamp::parse_rfc3339(&t).ok()),
        };
        ledger.observe(Observation::Secret(&stored.private_key));
        ledger.note(
            now,
            "-",
            &format!(
                "{why}: auth store now holds {}{}",
                stored.agent_runtime_id,
                expiry_text(stored.expires_at)
            ),
        );
        self.auth_store = Some(stored);
    }

    /// `rotate_identity`: another process registers a new identity for the signed-in workspace.
    /// False (with a note) when no workspace is signed in.
    pub(super) fn rotate(&mut self, now: Timestamp, ledger: &mut Ledger) -> bool {
        if self.auth.binding().is_none() {
            let text = "rotate_identity: no workspace is signed in; nothing to rotate";
            ledger.note(now, "-", text);
            return false;
        }
        self.register_out_of_band(now, "rotated identity", ledger);
        true
    }

    /// `expire_identity` or `revoke_identity`: the backend ends the auth store's identity.
    pub(super) fn end_identity(&mut self, now: Timestamp, revoke: bool, ledger: &mut Ledger) {
        let Some(runtime) = self.auth_store.as_ref().map(|i| i.agent_runtime_id.clone()) else {
            ledger.note(now, "-", "no identity in the auth store; nothing to expire or revoke");
            return;
        };
        let mut backend = self.backend.lock().expect("backend lock");
        backend.set_now(now);
        if revoke {
            backend.revoke(&runtime);
        } else {
            backend.expire(&runtime);
        }
        drop(backend);
        let verb = if revoke { "revoked" } else { "expired" };
        ledger.note(now, "-", &format!("backend {verb} {runtime}"));
    }

    /// Core stored an identity in the auth store: its private key is a secret.
    pub(super) fn store_identity(
        &mut self,
        now: Timestamp,
        stored: &StoredIdentity,
        ledger: &mut Ledger,
    ) {
        ledger.observe(Observation::Secret(&stored.private_key));
        let text = format!(
            "auth store: identity {} stored{}",
            stored.agent_runtime_id,
            expiry_text(stored.expires_at)
        );
        ledger.note(now, "-", &text);
        self.auth_store = Some(stored.clone());
    }

    /// Core deleted the auth store's identity.
    pub(super) fn delete_identity(&mut self, now: Timestamp, ledger: &mut Ledger) {
        ledger.note(now, "-", "auth store: identity deleted");
        self.auth_store = None;
    }

    /// Policy changes for the next process (a config edit, a feature flag rollout).
    pub(super) fn change_config(
        &mut self,
        now: Timestamp,
        change: &ConfigChange,
        ledger: &mut Ledger,
    ) {
        if *change == ConfigChange::default() {
            return;
        }
        change.apply(&mut self.config);
        let c = &self.config;
        ledger.observe(Observation::Policies {
            use_agent_identity: c.use_agent_identity,
            persist_task: c.persist_task,
            reacquire: c.expiry == ExpiryPolicy::Reacquire,
        });
        let text = format!(
            "config for the next process: flag={} expiry={} persist_task={}",
            if c.use_agent_identity { "on" } else { "off" },
            if c.expiry == ExpiryPolicy::Reacquire { "reacquire" } else { "as_shipped" },
            c.persist_task
        );
        ledger.note(now, "-", &text);
    }

    /// The identity that is current by the world's records (invariant 17): the auth store's,
    /// when the flag is on, it belongs to the signed-in workspace and, under `reacquire`, the
    /// backend's record says it has not expired.
    pub(super) fn judged_current_runtime(
        &self,
        now: Timestamp,
        backend: &Backend,
    ) -> Option<String> {
        let signed_in = self.auth.binding().filter(|_| self.config.use_agent_identity)?;
        let stored = self.auth_store.as_ref()?;
        let same_user = match (&stored.binding.user_id, &signed_in.user_id) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if stored.binding.account_id != signed_in.account_id || !same_user {
            return None;
        }
        let expires_at = backend.runtime(&stored.agent_runtime_id).and_then(|r| r.expires_at);
        let expired = expires_at.is_some_and(|at| now >= at);
        if expired && self.config.expiry == ExpiryPolicy::Reacquire {
            return None;
        }
        Some(stored.agent_runtime_id.clone())
    }

    /// [`World::judged_current_runtime`], reading the backend's records.
    pub(super) fn current_runtime(&self, now: Timestamp) -> Option<String> {
        let backend = self.backend.lock().expect("backend lock");
        self.judged_current_runtime(now, &backend)
    }
}

fn expiry_text(at: Option<Timestamp>) -> String {
    at.map(|t| format!(", expires {}", t.rfc3339_secs())).unwrap_or_default()
}
