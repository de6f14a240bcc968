//! How the loop feeds the oracles: the world's own judgement of which identity is current
//! (invariant 17), the checks of a model request (`crate::judge`), the auth and auth-store
//! changes told to core and the reference model alike, and what core's getters report for the
//! reference model to compare.

use agentsim_core::wire::HttpRequest;
use agentsim_core::{ExpiryPolicy, Lifecycle, ThreadId, Timestamp, TurnId};

use super::Sim;
use crate::backend::Backend;
use crate::judge::World;
use crate::oracle::{self, Input};

impl Sim {
    /// Invariants 7 and 16 to 19 for a model request, judged by the world's records.
    pub(super) fn judge_model_request(
        &mut self,
        thread: &ThreadId,
        turn: TurnId,
        request: &HttpRequest,
    ) {
        let asserted = oracle::assertion_of(request).and_then(Result::ok);
        let backend = self.backend.lock().expect("backend lock");
        let current = self.judged_current_runtime(&backend);
        let world = World {
            now: self.now,
            use_agent_identity: self.config.use_agent_identity,
            reacquire: self.config.expiry == ExpiryPolicy::Reacquire,
            persist_task: self.config.persist_task,
            current_runtime: current.as_deref(),
            backend: &backend,
            step: self.step_index,
        };
        let assertion = asserted
            .as_ref()
            .map(|a| (a.agent_runtime_id.as_str(), a.task_id.as_str(), a.timestamp.as_str()));
        self.judge.model_request(world, thread, turn, assertion);
    }

    /// The identity that is current by the world's records (invariant 17): the auth store's,
    /// when the flag is on, it belongs to the signed-in workspace and, under `reacquire`, the
    /// backend's record says it has not expired.
    pub(super) fn judged_current_runtime(&self, backend: &Backend) -> Option<String> {
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
        let expired = expires_at.is_some_and(|at| self.now >= at);
        if expired && self.config.expiry == ExpiryPolicy::Reacquire {
            return None;
        }
        Some(stored.agent_runtime_id.clone())
    }

    /// Tells the running process (and the oracle) that the auth store was replaced.
    pub(super) fn notify_identity_replaced(&mut self) {
        if let Some(p) = self.process.as_mut() {
            self.oracle.feed(self.now, Input::IdentityReplaced(self.auth_store.as_ref()));
            p.machine.handle_identity_store_changed(self.now, self.auth_store.clone());
            self.drain(None);
        }
    }

    /// Tells the running process (and the oracle) that the auth changed.
    pub(super) fn notify_auth_changed(&mut self) {
        if let Some(p) = self.process.as_mut() {
            self.oracle.feed(self.now, Input::Auth(&self.auth));
            p.machine.handle_auth_changed(self.now, self.auth.clone());
            self.drain(None);
        }
    }
}

/// What core's getters report, for the oracle to compare with the reference model's state.
pub(super) fn core_state(machine: &Lifecycle, now: Timestamp) -> oracle::State {
    let config = machine.config();
    oracle::State {
        policy: oracle::Policy {
            use_agent_identity: config.use_agent_identity,
            reacquire: config.expiry == ExpiryPolicy::Reacquire,
            persist_task: config.persist_task,
        },
        workspace: machine
            .auth()
            .binding()
            .map(|b| oracle::Workspace { account: b.account_id.clone(), user: b.user_id.clone() }),
        identity: machine.identity().map(|i| i.agent_runtime_id.clone()),
        current: machine.current_runtime(now).map(str::to_owned),
        threads: machine.thread_count(),
    }
}
