//! Admission: every check of a request, read-only, in the order the module doc of
//! [`backend`](super) lists them. A request that fails one is refused, and recorded as a
//! violation when a correct client would not have sent it. The checks of a model request's
//! assertion are in [`assertion`](super::assertion).

use agentsim_core::time::Timestamp;
use agentsim_core::wire::{
    parse_ssh_public_key, runtime_of_task_register_path, verify_signature, HttpRequest,
    IdentityRegistrationRequest, Method, TaskRegistrationRequest, BISCUIT_REQUEST_HEADER,
    REQUEST_ID_PREFIX,
};
use ed25519_dalek::VerifyingKey;

use super::http::{path_of, url_path};
use super::Backend;
use crate::fault::Endpoint;

/// A request that passed every check, with what applying it needs.
#[derive(Clone, Debug)]
pub(super) enum Admitted {
    Biscuit { account_id: String, path: String },
    Identity { account_id: String, public_key: VerifyingKey },
    Task { agent_runtime_id: String, public_key: VerifyingKey },
    Model,
}

/// A request that failed a check.
#[derive(Clone, Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    /// The `error` field of the JSON body.
    pub(super) error: &'static str,
    /// What a correct client would not have done, when the refusal is the client's fault.
    pub(super) violation: Option<String>,
}

impl Refusal {
    /// A refusal a correct client can meet.
    pub(super) fn answer(status: u16, error: &'static str) -> Refusal {
        Refusal { status, error, violation: None }
    }

    /// A refusal that records a violation.
    pub(super) fn violation(
        status: u16,
        error: &'static str,
        reason: impl Into<String>,
    ) -> Refusal {
        Refusal { status, error, violation: Some(reason.into()) }
    }
}

impl Backend {
    /// Routes a request by path, then method, then runs its endpoint's checks.
    pub(super) fn admit(
        &self,
        request: &HttpRequest,
        endpoint: Option<Endpoint>,
    ) -> Result<Admitted, Refusal> {
        let Some(endpoint) = endpoint else {
            return Err(Refusal::violation(404, "not_found", "no such endpoint"));
        };
        let expected = if endpoint == Endpoint::Biscuit { Method::Get } else { Method::Post };
        if request.method != expected {
            let reason = format!("{endpoint} expects {}", expected.as_str());
            return Err(Refusal::violation(405, "method_not_allowed", reason));
        }
        match endpoint {
            Endpoint::Biscuit => self.admit_biscuit(request),
            Endpoint::IdentityRegister => self.admit_identity(request),
            Endpoint::TaskRegister => self.admit_task(request),
            Endpoint::Model => self.admit_model(request),
        }
    }

    fn admit_biscuit(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        let bad = |reason: &str| Refusal::violation(400, "invalid_request", reason);
        if !request.header("X-Request-Id").is_some_and(|id| id.starts_with(REQUEST_ID_PREFIX)) {
            return Err(bad("missing X-Request-Id or it lacks the codex-agent-identity- prefix"));
        }
        if request.header("X-Original-Method") != Some("POST") {
            return Err(bad("X-Original-Method is missing or not POST"));
        }
        let Some(original_url) = request.header("X-Original-Url") else {
            return Err(bad("missing X-Original-Url"));
        };
        let path = url_path(original_url);
        if !matches!(
            Endpoint::of_path(path),
            Some(Endpoint::IdentityRegister | Endpoint::TaskRegister)
        ) {
            return Err(bad(&format!("X-Original-Url {path} is not a registration endpoint")));
        }
        let Some(token) = request.header("Authorization").and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(Refusal::violation(
                401,
                "invalid_token",
                "missing Authorization: Bearer header",
            ));
        };
        let Some(account_id) = self.tokens.get(token) else {
            return Err(Refusal::answer(401, "invalid_token"));
        };
        Ok(Admitted::Biscuit { account_id: account_id.clone(), path: path.to_owned() })
    }

    /// The account of the biscuit a registration call carries, which must authorize this path.
    fn admit_biscuit_header(&self, request: &HttpRequest) -> Result<&str, Refusal> {
        let bad = |reason: String| Refusal::violation(401, "invalid_biscuit", reason);
        let Some(biscuit) = request.header(BISCUIT_REQUEST_HEADER) else {
            return Err(bad(format!("missing {BISCUIT_REQUEST_HEADER} header")));
        };
        let Some(grant) = self.biscuits.get(biscuit) else {
            return Err(bad("unknown biscuit".to_owned()));
        };
        if grant.path != path_of(request) {
            return Err(bad(format!("biscuit was minted for {}", grant.path)));
        }
        Ok(&grant.account_id)
    }

    fn admit_identity(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        let account_id = self.admit_biscuit_header(request)?.to_owned();
        let body: IdentityRegistrationRequest = parse_body(request)?;
        let public_key = parse_ssh_public_key(&body.agent_public_key).map_err(|_| {
            Refusal::violation(
                400,
                "invalid_public_key",
                "agent_public_key is not an ssh-ed25519 key",
            )
        })?;
        Ok(Admitted::Identity { account_id, public_key })
    }

    fn admit_task(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        self.admit_biscuit_header(request)?;
        let body: TaskRegistrationRequest = parse_body(request)?;
        let agent_runtime_id = runtime_of_task_register_path(path_of(request))
            .expect("only a task registration path is admitted as one");
        let Some(record) = self.runtimes.get(agent_runtime_id) else {
            return Err(Refusal::answer(404, "unknown_runtime"));
        };
        if Timestamp::parse_rfc3339(&body.timestamp).is_err() {
            return Err(Refusal::violation(400, "invalid_timestamp", "timestamp is not RFC 3339"));
        }
        let message = format!("{agent_runtime_id}:{}", body.timestamp);
        if !verify_signature(&record.public_key, &message, &body.signature) {
            return Err(Refusal::violation(
                401,
                "invalid_signature",
                "signature does not verify under the registered key",
            ));
        }
        if record.is_expired(self.now) {
            return Err(Refusal::answer(401, "identity_expired"));
        }
        Ok(Admitted::Task {
            agent_runtime_id: agent_runtime_id.to_owned(),
            public_key: record.public_key,
        })
    }
}

/// A registration's JSON body: one that does not parse is the client's mistake.
fn parse_body<T: serde::de::DeserializeOwned>(request: &HttpRequest) -> Result<T, Refusal> {
    let body = request.body.as_deref().unwrap_or("");
    serde_json::from_str(body).map_err(|e| {
        Refusal::violation(400, "invalid_request", format!("body is not the expected JSON: {e}"))
    })
}
