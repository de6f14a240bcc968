//! Building the backend requests and reading their responses (spec section 2), with one error
//! enum per boundary. Pure functions: the machine decides when to call them.

use crate::config::{Binding, Config, StoredIdentity};
use crate::rollout::AgentTask;
use crate::time::Timestamp;
use crate::wire::{
    self, Abom, HttpRequest, HttpResponse, IdentityKey, IdentityRegistrationRequest,
    IdentityRegistrationResponse, Method, TaskIdError, TaskRegistrationRequest,
    TaskRegistrationResponse,
};

/// Why a biscuit could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BiscuitError {
    /// The biscuit endpoint answered non-2xx.
    #[error("agent identity biscuit minting failed with status {status} from {url}: {body}")]
    Status { status: u16, url: String, body: String },
    /// A 2xx without a usable `x-openai-authorization` header.
    #[error(
        "agent identity biscuit response from {url} has no valid x-openai-authorization header"
    )]
    Header { url: String },
    /// The request failed or timed out.
    #[error("failed to send agent identity biscuit request to {url}")]
    Send { url: String },
}

/// Why identity registration failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The biscuit for the registration call failed.
    #[error(transparent)]
    Biscuit(#[from] BiscuitError),
    /// Registration answered non-2xx.
    #[error("agent identity registration failed with status {status} from {url}: {body}")]
    Status { status: u16, url: String, body: String },
    /// A 2xx body that is not `{"agent_runtime_id": ...}` (or carries a bad `expires_at`).
    #[error("failed to parse agent identity response from {url}")]
    Parse { url: String },
    /// The request failed or timed out.
    #[error("failed to send agent identity registration request to {url}")]
    Send { url: String },
    /// **\[ours\]** The backend keeps answering with identities whose `expires_at` has already
    /// passed when they arrive, so no usable identity can be had.
    #[error("agent identity registered at {url} had already expired when it arrived")]
    AlreadyExpired { url: String },
}

/// Why task registration failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The identity the task needs could not be registered.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The biscuit for the registration call failed.
    #[error(transparent)]
    Biscuit(#[from] BiscuitError),
    /// Registration answered non-2xx.
    #[error("agent task registration failed with status {status} from {url}: {body}")]
    Status { status: u16, url: String, body: String },
    /// A 2xx body that is not `{"encrypted_task_id": ...}`.
    #[error("failed to parse agent task response from {url}")]
    Parse { url: String },
    /// The request failed or timed out.
    #[error("failed to send agent task registration request to {url}")]
    Send { url: String },
    /// The encrypted task id could not be read.
    #[error(transparent)]
    TaskId(#[from] TaskIdError),
}

impl TaskError {
    /// Whether this is the backend's 401 `{"error":"identity_expired"}` (rule 18).
    pub fn is_identity_expired(&self) -> bool {
        matches!(self, TaskError::Status { status: 401, body, .. } if is_identity_expired_body(body))
    }
}

/// Whether a response body is the backend's `identity_expired` refusal.
pub fn is_identity_expired_body(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(|e| e == "identity_expired"))
        .unwrap_or(false)
}

/// The biscuit request that authorizes a `POST` to `target_url`.
pub fn biscuit_request(
    config: &Config,
    access_token: &str,
    target_url: &str,
    request_id: [u8; 16],
) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url: format!("{}{}", config.base_url, wire::BISCUIT_PATH),
        headers: vec![
            ("Authorization".into(), format!("Bearer {access_token}")),
            ("X-Request-Id".into(), wire::request_id(request_id)),
            ("X-Original-Method".into(), "POST".into()),
            ("X-Original-Url".into(), target_url.into()),
        ],
        body: None,
    }
}

/// Reads the biscuit out of a biscuit response.
pub fn read_biscuit(url: &str, response: &HttpResponse) -> Result<String, BiscuitError> {
    if !response.is_success() {
        return Err(BiscuitError::Status {
            status: response.status,
            url: url.into(),
            body: response.body_text(),
        });
    }
    let header = response
        .header(wire::BISCUIT_RESPONSE_HEADER)
        .ok_or_else(|| BiscuitError::Header { url: url.into() })?;
    match std::str::from_utf8(header) {
        Ok(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(BiscuitError::Header { url: url.into() }),
    }
}

/// URL of identity registration.
pub fn identity_register_url(config: &Config) -> String {
    format!("{}{}", config.base_url, wire::IDENTITY_REGISTER_PATH)
}

/// URL of task registration for a runtime.
pub fn task_register_url(config: &Config, agent_runtime_id: &str) -> String {
    format!("{}{}", config.base_url, wire::task_register_path(agent_runtime_id))
}

/// `POST /v1/agent/register` for a new key.
pub fn identity_register_request(config: &Config, key: &IdentityKey, biscuit: &str) -> HttpRequest {
    let body = IdentityRegistrationRequest {
        abom: Abom {
            agent_version: config.agent_version.clone(),
            agent_harness_id: config.agent_harness_id.clone(),
            running_location: config.running_location.clone(),
        },
        agent_public_key: key.ssh_public_key(),
        capabilities: vec![],
    };
    post(identity_register_url(config), biscuit, serde_json::to_string(&body).expect("serializes"))
}

/// Reads an identity registration response into the identity to store.
pub fn read_identity(
    url: &str,
    response: &HttpResponse,
    key: &IdentityKey,
    binding: &Binding,
    now: Timestamp,
) -> Result<StoredIdentity, IdentityError> {
    if !response.is_success() {
        return Err(IdentityError::Status {
            status: response.status,
            url: url.into(),
            body: response.body_text(),
        });
    }
    let parse = || IdentityError::Parse { url: url.into() };
    let body: IdentityRegistrationResponse =
        serde_json::from_slice(&response.body).map_err(|_| parse())?;
    if !is_path_safe(&body.agent_runtime_id) {
        return Err(parse());
    }
    let expires_at = match body.expires_at {
        Some(text) => Some(Timestamp::parse_rfc3339(&text).map_err(|_| parse())?),
        None => None,
    };
    Ok(StoredIdentity {
        binding: binding.clone(),
        agent_runtime_id: body.agent_runtime_id,
        private_key: key.to_pkcs8_base64(),
        registered_at: now,
        expires_at,
    })
}

/// `POST /v1/agent/{runtime}/task/register`, signed at `now`.
pub fn task_register_request(
    config: &Config,
    identity: &StoredIdentity,
    key: &IdentityKey,
    biscuit: &str,
    now: Timestamp,
) -> HttpRequest {
    let timestamp = now.rfc3339_secs();
    let signature = key.sign_base64(&format!("{}:{timestamp}", identity.agent_runtime_id));
    let body = TaskRegistrationRequest { signature, timestamp };
    post(
        task_register_url(config, &identity.agent_runtime_id),
        biscuit,
        serde_json::to_string(&body).expect("serializes"),
    )
}

/// Reads a task registration response: parse, base64, open the sealed box, UTF-8.
pub fn read_task(
    url: &str,
    response: &HttpResponse,
    identity: &StoredIdentity,
    key: &IdentityKey,
    now: Timestamp,
) -> Result<AgentTask, TaskError> {
    if !response.is_success() {
        return Err(TaskError::Status {
            status: response.status,
            url: url.into(),
            body: response.body_text(),
        });
    }
    let body: TaskRegistrationResponse =
        serde_json::from_slice(&response.body).map_err(|_| TaskError::Parse { url: url.into() })?;
    let task_id = key.open_task_id(&body.encrypted_task_id)?;
    if task_id.is_empty() {
        return Err(TaskError::Parse { url: url.into() });
    }
    Ok(AgentTask {
        agent_runtime_id: identity.agent_runtime_id.clone(),
        task_id,
        registered_at: now.rfc3339_secs(),
    })
}

/// The model request of a turn **\[ours\]**, with the assertion header when there is a task.
pub fn model_request(config: &Config, assertion: Option<String>, text: &str) -> HttpRequest {
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if let Some(value) = assertion {
        headers.push(("Authorization".into(), value));
    }
    HttpRequest {
        method: Method::Post,
        url: format!("{}{}", config.base_url, wire::MODEL_PATH),
        headers,
        body: Some(serde_json::json!({ "input": text }).to_string()),
    }
}

fn post(url: String, biscuit: &str, body: String) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            (wire::BISCUIT_REQUEST_HEADER.into(), biscuit.into()),
        ],
        body: Some(body),
    }
}

/// Runtime ids go into a URL path: accept only characters that need no escaping.
fn is_path_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
