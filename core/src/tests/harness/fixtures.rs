//! The harness's fixtures: endpoint names, the [`InFlightMatch`] pattern, auth, identities,
//! responses and rollout lines.

use crate::time::Timestamp;
use crate::wire::{HttpResponse, IdentityKey};
use crate::{Auth, Binding, InFlight, StoredIdentity};

/// The base URL of [`Config::default`].
pub(in crate::tests) const BASE: &str = "http://backend.invalid";

/// The biscuit endpoint, as [`assert_requests`] names it.
pub(in crate::tests) const BISCUIT: &str = "GET /authenticate_app_v2";

/// Identity registration, as [`assert_requests`] names it.
pub(in crate::tests) const REGISTER: &str = "POST /v1/agent/register";

/// A model request that carries no assertion, as [`assert_requests`] names it.
pub(in crate::tests) const MODEL: &str = "POST /v1/responses";

/// A test's pattern over [`InFlight`]: the request it waits for, by thread name and whatever its
/// ensure number (so the tests do not depend on the shape of [`InFlight`]).
#[derive(Clone, Copy, Debug)]
pub(in crate::tests) enum InFlightMatch<'a> {
    IdentityBiscuit,
    IdentityRegister,
    TaskBiscuit(&'a str),
    TaskRegister(&'a str),
    Model(&'a str, u32),
}

impl InFlightMatch<'_> {
    pub(super) fn matches(self, in_flight: &InFlight) -> bool {
        match (self, in_flight) {
            (InFlightMatch::IdentityBiscuit, InFlight::IdentityBiscuit) => true,
            (InFlightMatch::IdentityRegister, InFlight::IdentityRegister) => true,
            (InFlightMatch::TaskBiscuit(t), InFlight::TaskBiscuit { thread, .. }) => thread.0 == t,
            (InFlightMatch::TaskRegister(t), InFlight::TaskRegister { thread, .. }) => {
                thread.0 == t
            }
            (InFlightMatch::Model(t, n), InFlight::Model(thread, turn)) => {
                thread.0 == t && turn.0 == n
            }
            _ => false,
        }
    }
}

/// Signed in to `acct-1` as `user-1`.
pub(in crate::tests) fn signed_in() -> Auth {
    signed_in_to("acct-1")
}

/// Signed in to `account` as `user-1`, with a token that names the account.
pub(in crate::tests) fn signed_in_to(account: &str) -> Auth {
    Auth::ChatGpt {
        binding: binding(account),
        access_token: format!("access-token-secret-{account}"),
    }
}

fn binding(account: &str) -> Binding {
    Binding { account_id: account.into(), user_id: Some("user-1".into()) }
}

/// An identity of `acct-1`, as another process left it in the auth store. The key comes from
/// `seed_byte`, so two identities with different bytes have different keys.
pub(in crate::tests) fn identity(runtime: &str, seed_byte: u8) -> StoredIdentity {
    identity_of(runtime, "acct-1", seed_byte)
}

/// An identity of `account`, as another process left it in the auth store.
pub(in crate::tests) fn identity_of(runtime: &str, account: &str, seed_byte: u8) -> StoredIdentity {
    StoredIdentity {
        binding: binding(account),
        agent_runtime_id: runtime.into(),
        private_key: IdentityKey::from_seed([seed_byte; 32]).to_pkcs8_base64(),
        registered_at: Timestamp::SIM_EPOCH,
        expires_at: None,
    }
}

/// A response with a plain body and no headers.
pub(in crate::tests) fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
}

/// A task registration answer holding `encrypted_task_id`.
pub(in crate::tests) fn task_response(encrypted_task_id: &str) -> HttpResponse {
    response(200, &serde_json::json!({ "encrypted_task_id": encrypted_task_id }).to_string())
}

/// One rollout line with the given type and payload JSON.
pub(in crate::tests) fn line(kind: &str, payload: &str) -> String {
    format!(r#"{{"timestamp":"2026-04-18T14:02:12.004Z","type":"{kind}","payload":{payload}}}"#)
}

/// A `session_state` line holding a task.
pub(in crate::tests) fn task_line(runtime: &str, task_id: &str) -> String {
    let task = format!(
        r#"{{"agent_task":{{"agent_runtime_id":"{runtime}","task_id":"{task_id}","registered_at":"2026-04-18T14:02:11Z"}}}}"#
    );
    line("session_state", &task)
}

/// A `session_state {agent_task: null}` line.
pub(in crate::tests) fn null_line() -> String {
    line("session_state", r#"{"agent_task":null}"#)
}

/// Lines joined into rollout bytes, each ending with a newline.
pub(in crate::tests) fn rollout_of(lines: &[String]) -> Vec<u8> {
    lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect()
}
