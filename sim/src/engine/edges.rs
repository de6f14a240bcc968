//! The engine's side of the steps that reach the edges: `advance to_expiry`, `damage`, and world
//! changes armed at a request (`on <endpoint> <moment> <world step>`).
//!
//! An armed world change belongs to the process that was running when it was set (as a `crash
//! on_response` arm does): it fires once, at the next request of its endpoint, and is cleared when
//! that process dies. Its backend-side effect (the backend expires, revokes or registers; the auth
//! store or the auth changes) happens at that exact moment; the core hears of it as its own input
//! (`handle_identity_store_changed`, `handle_auth_changed`) only once the commands of the input
//! being handled have all been carried out, never in the middle of a drain.

use agentsim_core::{ThreadId, Timestamp};

use super::Sim;
use crate::check::Observation;
use crate::damage::{self, DamageKind};
use crate::fault::Endpoint;
use crate::scenario::{Moment, WorldStep};

/// The edges' state in the running process.
#[derive(Default)]
pub(super) struct Edges {
    /// World changes armed by `on` steps.
    arms: Vec<Arm>,
    /// What the core must hear of fired world changes once the current drain is over.
    deferred: Vec<Deferred>,
    /// Set while a resume's drain is checked, so deferred inputs wait for the check.
    pub(super) hold: bool,
}

/// A world change armed at the next request to an endpoint.
#[derive(Clone, Debug)]
struct Arm {
    endpoint: Endpoint,
    moment: Moment,
    world: WorldStep,
}

/// What the core must be told once the current drain is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deferred {
    /// The auth store's identity changed.
    IdentityStore,
    /// The user's auth changed.
    Auth,
}

impl Sim {
    /// `advance to_expiry [offset]`: how far to advance, or `None` (with a timeline note) when the
    /// auth store has no identity, the identity no expiry, or the target is not in the future.
    pub(super) fn ms_until_expiry(&mut self, offset_ms: i64) -> Option<u64> {
        let expires_at = self.world.auth_store.as_ref().and_then(|i| i.expires_at);
        let Some(expires_at) = expires_at else {
            let what = if self.world.auth_store.is_some() {
                "the auth store's identity has no expiry"
            } else {
                "the auth store holds no identity"
            };
            self.note(&format!("advance to_expiry: {what}; nothing to do"));
            return None;
        };
        let target = i128::from(expires_at.unix_ms()) + i128::from(offset_ms);
        let now = i128::from(self.now.unix_ms());
        if target <= now {
            let at = u64::try_from(target).map(Timestamp).map(|t| t.rfc3339_millis());
            self.note(&format!(
                "advance to_expiry: the target {} is not in the future; nothing to do",
                at.unwrap_or_else(|_| "(before 1970)".into())
            ));
            return None;
        }
        u64::try_from(target - now).ok()
    }

    /// `damage <thread> <kind>`: rewrites the rollout of a thread that is not running.
    pub(super) fn damage(&mut self, thread: &str, kind: DamageKind) -> Result<(), String> {
        let id = ThreadId(thread.to_owned());
        if self.host.process.as_ref().is_some_and(|p| p.machine.has_thread(&id)) {
            return Err(format!(
                "thread {thread:?} is running in this process: `crash` or `restart` before \
                 damaging its rollout"
            ));
        }
        let bytes = self
            .host
            .read_rollout(thread)?
            .ok_or_else(|| format!("thread {thread:?} has no rollout to damage"))?;
        let runtime = self.world.auth_store.as_ref().map(|i| i.agent_runtime_id.clone());
        match damage::apply(kind, &bytes, self.now, runtime.as_deref()) {
            Ok(damaged) => {
                self.host
                    .store
                    .replace(thread, &damaged)
                    .map_err(|e| format!("cannot rewrite {thread}'s rollout: {e}"))?;
                // The checker tracks each rollout's last session_state from what it read and
                // appended: it must see the rewrite as it sees a fork's copy.
                self.ledger.observe(Observation::Rewritten { thread: &id, bytes: &damaged });
                self.judge.rewritten(&id);
                let text = format!(
                    "damage {kind}: rollout rewritten ({} bytes, was {})",
                    damaged.len(),
                    bytes.len()
                );
                self.ledger.note(self.now, thread, &text);
            }
            Err(why) => {
                let text = format!("damage {kind}: {why}; nothing to do");
                self.ledger.note(self.now, thread, &text);
            }
        }
        Ok(())
    }

    /// `on <endpoint> <moment> <world step>`: arms a world change in the running process.
    pub(super) fn arm(
        &mut self,
        endpoint: Endpoint,
        moment: Moment,
        world: &WorldStep,
    ) -> Result<(), String> {
        self.host.live_machine()?;
        self.edges.arms.push(Arm { endpoint, moment, world: world.clone() });
        Ok(())
    }

    /// Fires every arm of `endpoint` at `moment` (each once): its world change happens now, and
    /// what the core must hear of it waits for the end of the current drain.
    pub(super) fn fire_arms(&mut self, endpoint: Option<Endpoint>, moment: Moment) {
        let Some(endpoint) = endpoint else { return };
        if self.edges.arms.is_empty() {
            return;
        }
        let (fired, kept): (Vec<Arm>, Vec<Arm>) = std::mem::take(&mut self.edges.arms)
            .into_iter()
            .partition(|a| a.endpoint == endpoint && a.moment == moment);
        self.edges.arms = kept;
        for arm in fired {
            self.note(&format!("on {endpoint} {}: {} fires", moment.name(), arm.world));
            self.world_change(&arm.world);
        }
    }

    /// The backend-side effect of a world step; the core notification is deferred.
    fn world_change(&mut self, world: &WorldStep) {
        match world {
            WorldStep::RotateIdentity => {
                if self.world.rotate(self.now, &mut self.ledger) {
                    self.edges.deferred.push(Deferred::IdentityStore);
                }
            }
            WorldStep::ExpireIdentity | WorldStep::RevokeIdentity => {
                let revoke = matches!(world, WorldStep::RevokeIdentity);
                self.world.end_identity(self.now, revoke, &mut self.ledger);
            }
            WorldStep::Auth(spec) => {
                self.world.sign_in(spec, &mut self.ledger);
                self.note(&format!("auth is now {}", self.world.auth.describe()));
                self.edges.deferred.push(Deferred::Auth);
            }
        }
    }

    /// Feeds the core what it must hear of the world changes that fired, each as its own input
    /// followed by its own drain. Held while a resume's drain is being checked.
    pub(super) fn feed_deferred(&mut self) {
        if self.edges.hold {
            return;
        }
        while !self.edges.deferred.is_empty() {
            if self.host.process.is_none() {
                self.edges.deferred.clear();
                return;
            }
            // Each tells the process (and the oracle) and drains, as the plain steps do.
            match self.edges.deferred.remove(0) {
                Deferred::IdentityStore => self.notify_identity_replaced(),
                Deferred::Auth => self.notify_auth_changed(),
            }
        }
    }

    /// The process died: its arms and what it had yet to hear die with it.
    pub(super) fn disarm_world(&mut self) {
        self.edges.arms.clear();
        self.edges.deferred.clear();
    }

    fn note(&mut self, text: &str) {
        self.ledger.note(self.now, "-", text);
    }
}
