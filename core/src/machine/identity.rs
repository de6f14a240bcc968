//! The process's one identity slot: whether its identity is usable, and its registration, single
//! flight per process (rule 12), whose end hands the outcome to every waiting ensure and session
//! start.

use rand_core::RngCore as _;

use super::{Lifecycle, Pending, RequestFailure};
use crate::config::{Binding, ExpiryPolicy, StoredIdentity};
use crate::marks;
use crate::output::{Command, EventKind, Failure, Level};
use crate::protocol::{self, IdentityError, TaskError};
use crate::time::Timestamp;
use crate::wire::{HttpResponse, IdentityKey};

#[derive(Clone, Debug)]
pub(super) struct Identity {
    pub(super) stored: StoredIdentity,
    pub(super) key: IdentityKey,
}

#[derive(Debug)]
pub(super) struct IdentityOp {
    binding: Binding,
    key: IdentityKey,
    /// The registration URL the biscuit authorizes.
    url: String,
    /// Set once the biscuit arrived and registration was sent.
    registering: bool,
}

impl Lifecycle {
    pub(super) fn usable_identity(&self, now: Timestamp) -> Option<&Identity> {
        if !self.config.use_agent_identity {
            return None;
        }
        let binding = self.auth.binding()?;
        let identity = self.identity.as_ref()?;
        if !identity.stored.binding.matches(binding) {
            return None;
        }
        if self.config.expiry == ExpiryPolicy::Reacquire
            && identity.stored.expires_at.is_some_and(|at| now >= at)
        {
            return None;
        }
        Some(identity)
    }

    /// Starts the process's identity registration, or joins the one in flight (rule 12).
    pub(super) fn require_identity(&mut self, now: Timestamp) {
        if self.identity_op.is_some() {
            self.mark(marks::IDENTITY_SINGLE_FLIGHT_JOINED);
            return;
        }
        let Some(binding) = self.auth.binding().cloned() else { return };
        let expired = self.identity.as_ref().is_some_and(|i| {
            i.stored.binding.matches(&binding) && i.stored.expires_at.is_some_and(|at| now >= at)
        });
        if expired {
            self.mark(marks::EXPIRED_IDENTITY_REACQUIRED);
            self.log(Level::Info, "agent identity expired; registering a new one", vec![]);
        }
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let url = protocol::identity_register_url(&self.config);
        self.send_biscuit(Pending::IdentityBiscuit, &url);
        self.identity_op = Some(IdentityOp {
            binding,
            key: IdentityKey::from_seed(seed),
            url,
            registering: false,
        });
    }

    pub(super) fn identity_biscuit_done(
        &mut self,
        now: Timestamp,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let biscuit = self.read_biscuit(result);
        let op = self.identity_op.as_mut().expect("an identity registration in flight");
        assert!(!op.registering);
        match biscuit {
            Ok(biscuit) => {
                op.registering = true;
                let request = protocol::identity_register_request(&self.config, &op.key, &biscuit);
                self.send(Pending::IdentityRegister, request);
            }
            Err(e) => self.identity_done(now, Err(IdentityError::Biscuit(e))),
        }
    }

    pub(super) fn identity_register_done(
        &mut self,
        now: Timestamp,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let op = self.identity_op.as_ref().expect("an identity registration in flight");
        assert!(op.registering);
        let identity = match result {
            Ok(response) => protocol::read_identity(&op.url, &response, &op.key, &op.binding, now)
                .map(|stored| Identity { stored, key: op.key.clone() }),
            Err(_) => Err(IdentityError::Send { url: op.url.clone() }),
        };
        self.identity_done(now, identity);
    }

    /// The registration ended: fill the slot, or discard or report the outcome, then let the
    /// waiting ensures and session starts go on.
    fn identity_done(&mut self, now: Timestamp, result: Result<Identity, IdentityError>) {
        let op = self.identity_op.take().expect("an identity registration in flight");
        match result {
            Ok(identity) if !self.auth.binding().is_some_and(|b| b.matches(&op.binding)) => {
                self.identity_for_old_workspace(now, &identity);
            }
            Ok(identity) => {
                self.mark(marks::IDENTITY_REGISTERED);
                self.log(
                    Level::Info,
                    "registered agent identity",
                    vec![("agent_runtime_id", identity.stored.agent_runtime_id.clone())],
                );
                self.out.push_back(Command::StoreIdentity(identity.stored.clone()));
                self.identity = Some(identity);
                self.identity_arrived(now);
            }
            Err(e) => self.identity_failed(now, e),
        }
    }

    /// The workspace changed in flight: this identity belongs to nobody now.
    fn identity_for_old_workspace(&mut self, now: Timestamp, identity: &Identity) {
        self.mark(marks::IDENTITY_RESULT_FOR_OLD_WORKSPACE);
        self.log(
            Level::Info,
            "discarding agent identity registered for a workspace that is no longer signed in",
            vec![("agent_runtime_id", identity.stored.agent_runtime_id.clone())],
        );
        if self.usable_identity(now).is_some() {
            // The user switched back to the workspace whose identity is in the slot: the waiting
            // threads reuse it (rule 9) rather than replacing it.
            self.identity_arrived(now);
        } else if self.auth.binding().is_some() {
            self.require_identity(now);
        } else {
            // Signed out: the waiting ensures end with no task, as one that starts signed out;
            // the session starts wait for the next sign-in.
            for thread in &self.threads_awaiting_identity() {
                self.finish_ensure(now, thread, Ok(None));
            }
        }
    }

    /// The slot holds an identity for the current workspace, usable or not.
    fn identity_arrived(&mut self, now: Timestamp) {
        for thread in &self.threads_awaiting_identity() {
            self.identity_arrived_for(now, thread);
        }
        if self.usable_identity(now).is_some() {
            self.prewarm_startup_waiters(now);
        } else if !self.startup_waiters.is_empty() {
            // An identity that arrived already expired is, for the session start, a failed
            // registration: say so rather than leave the start waiting silently.
            let url = protocol::identity_register_url(&self.config);
            self.fail_startup_waiters(&IdentityError::AlreadyExpired { url });
        }
    }

    fn identity_failed(&mut self, now: Timestamp, error: IdentityError) {
        self.log_failure(
            Failure::IdentityRegistration,
            "agent identity registration failed",
            vec![("error", error.to_string())],
        );
        for thread in &self.threads_awaiting_identity() {
            self.fail_ensure(now, thread, TaskError::Identity(error.clone()));
        }
        self.fail_startup_waiters(&error);
    }

    /// Rule 4: one error event on each thread whose start waited for this identity.
    fn fail_startup_waiters(&mut self, error: &IdentityError) {
        for thread in std::mem::take(&mut self.startup_waiters) {
            self.mark(marks::IDENTITY_FAILED_AT_START);
            let message = format!("Agent identity registration failed while `features.use_agent_identity` is enabled: {error}");
            let failure = Failure::IdentityRegistration;
            self.emit(&thread, EventKind::Error { turn: None, failure, message });
        }
    }

    pub(super) fn load_identity(&mut self, stored: StoredIdentity) -> Option<Identity> {
        match stored.key() {
            Ok(key) => Some(Identity { stored, key }),
            Err(e) => {
                self.log(
                    Level::Warn,
                    "ignoring stored agent identity",
                    vec![("error", e.to_string())],
                );
                None
            }
        }
    }

    /// Empties the slot if it still holds `runtime`, and deletes it from the auth store.
    pub(super) fn drop_identity_if_current(&mut self, runtime: &str) {
        if self.identity.as_ref().is_some_and(|i| i.stored.agent_runtime_id == runtime) {
            self.identity = None;
            self.out.push_back(Command::DeleteIdentity);
        }
    }
}
