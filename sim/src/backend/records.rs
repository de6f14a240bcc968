//! What the model keeps and what it answered: the registered identities, the biscuits' grants
//! and the [`Answer`] journal the reference model reads.

use agentsim_core::time::Timestamp;
use ed25519_dalek::VerifyingKey;

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
    /// Set by [`Backend::expire`](super::Backend::expire).
    pub expired: bool,
    /// Set by [`Backend::revoke`](super::Backend::revoke).
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
pub(super) struct BiscuitGrant {
    pub(super) account_id: String,
    /// The path of `X-Original-Url`. Only the path is compared, so the model does not depend on
    /// the authority a transport uses.
    pub(super) path: String,
}
