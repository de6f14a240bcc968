//! How the loop feeds the oracles: the checks of a model request (`crate::judge`), judged by the
//! world's own view of which identity is current (invariant 17,
//! [`World::judged_current_runtime`](super::world::World::judged_current_runtime)), the auth and
//! auth-store changes told to core and the reference model alike, and what core's getters report
//! for the reference model to compare.

use agentsim_core::wire::HttpRequest;
use agentsim_core::{ExpiryPolicy, Lifecycle, ThreadId, Timestamp, TurnId};

use super::Sim;
use crate::judge;
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
        let backend = self.world.backend.lock().expect("backend lock");
        let current = self.world.judged_current_runtime(self.now, &backend);
        let config = &self.world.config;
        let world = judge::World {
            now: self.now,
            use_agent_identity: config.use_agent_identity,
            reacquire: config.expiry == ExpiryPolicy::Reacquire,
            persist_task: config.persist_task,
            current_runtime: current.as_deref(),
            backend: &backend,
            step: self.ledger.step(),
        };
        let assertion = asserted
            .as_ref()
            .map(|a| (a.agent_runtime_id.as_str(), a.task_id.as_str(), a.timestamp.as_str()));
        self.judge.model_request(world, thread, turn, assertion);
    }

    /// Tells the running process (and the oracle) that the auth store was replaced.
    pub(super) fn notify_identity_replaced(&mut self) {
        if let Some(p) = self.host.process.as_mut() {
            let stored = &self.world.auth_store;
            self.oracle.feed(self.now, Input::IdentityReplaced(stored.as_ref()));
            p.machine.handle_identity_store_changed(self.now, stored.clone());
            self.drain(None);
        }
    }

    /// Tells the running process (and the oracle) that the auth changed.
    pub(super) fn notify_auth_changed(&mut self) {
        if let Some(p) = self.host.process.as_mut() {
            self.oracle.feed(self.now, Input::Auth(&self.world.auth));
            p.machine.handle_auth_changed(self.now, self.world.auth.clone());
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
