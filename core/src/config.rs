//! What the lifecycle is configured with and what it is told about the user: policies, auth, and
//! the stored agent identity (the auth store's single slot).

use crate::time::Timestamp;
use crate::wire::{IdentityKey, KeyError};

/// What happens when an identity expires or the backend refuses it (spec rules 17 to 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpiryPolicy {
    /// **\[ours\]** An identity past `expires_at` counts as absent; a 401 `identity_expired` drops the
    /// stored identity, registers a new one and retries the task once.
    #[default]
    Reacquire,
    /// The reference design: the stored identity is kept whatever the backend says.
    AsShipped,
}

/// Policies and settings, fixed for the life of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The `features.use_agent_identity` flag. Off: nothing of this lifecycle happens (rule 1).
    pub use_agent_identity: bool,
    /// Rules 18 and 19.
    pub expiry: ExpiryPolicy,
    /// Rule 20: `false` keeps tasks in memory only.
    pub persist_task: bool,
    /// Base URL of the identity/task backend, without a trailing slash.
    pub base_url: String,
    /// `abom.agent_version` of identity registration.
    pub agent_version: String,
    /// `abom.agent_harness_id` of identity registration.
    pub agent_harness_id: String,
    /// `abom.running_location` of identity registration.
    pub running_location: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            use_agent_identity: true,
            expiry: ExpiryPolicy::Reacquire,
            persist_task: true,
            base_url: "http://backend.invalid".into(),
            agent_version: "0.120.0".into(),
            agent_harness_id: "codex-cli".into(),
            running_location: "local".into(),
        }
    }
}

/// The workspace an identity belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    /// `chatgpt_account_id`.
    pub account_id: String,
    /// `chatgpt_user_id`, when known.
    pub user_id: Option<String>,
}

impl Binding {
    /// Whether an identity registered for `self` belongs to the workspace `other`: the same
    /// account, and the same user when both name one.
    pub fn matches(&self, other: &Binding) -> bool {
        self.account_id == other.account_id
            && match (&self.user_id, &other.user_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// How the user is signed in.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Signed out.
    #[default]
    None,
    /// API-key auth: no binding, so no identity.
    ApiKey,
    /// Signed in to a workspace.
    ChatGpt {
        /// The workspace.
        binding: Binding,
        /// Bearer token for the biscuit endpoint. Secret.
        access_token: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The access token is secret and never printed.
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::ApiKey => f.write_str("Auth::ApiKey"),
            Auth::ChatGpt { binding, .. } => {
                f.debug_struct("Auth::ChatGpt").field("binding", binding).finish_non_exhaustive()
            }
        }
    }
}

impl Auth {
    /// The workspace, when there is one.
    pub fn binding(&self) -> Option<&Binding> {
        match self {
            Auth::ChatGpt { binding, .. } => Some(binding),
            Auth::None | Auth::ApiKey => None,
        }
    }

    /// A short description for logs: never the token.
    pub fn describe(&self) -> String {
        match self {
            Auth::None => "none".into(),
            Auth::ApiKey => "api_key".into(),
            Auth::ChatGpt { binding, .. } => format!("chatgpt account={}", binding.account_id),
        }
    }
}

/// The auth store's agent identity, as stored. `private_key` is secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    /// The workspace it was registered for.
    pub binding: Binding,
    /// The runtime id the backend assigned.
    pub agent_runtime_id: String,
    /// Ed25519 private key, standard base64 of PKCS#8 DER. Secret.
    pub private_key: String,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// **\[ours\]** When the backend said it expires.
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity")
            .field("binding", &self.binding)
            .field("agent_runtime_id", &self.agent_runtime_id)
            .field("registered_at", &self.registered_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl StoredIdentity {
    /// The key pair, when the stored key is readable.
    pub fn key(&self) -> Result<IdentityKey, KeyError> {
        IdentityKey::from_pkcs8_base64(&self.private_key)
    }
}
