//! The admin API under `/admin/`: what a person or a test does to the backend from outside the
//! protocol. These requests never reach the model, are not journaled, and are logged by method,
//! path and status only (an account's access token travels in a body, never to a log).

use std::path::Path;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::faults::parse_servable_faults;
use super::http::{error, json, read_body, to_hyper, with_content_type, Body, ReadError};
use super::world::{Retire, World};
use super::Shared;

/// The admin API: (method, path, what it does), as the banner of `sim serve` lists it.
pub const ADMIN_ROUTES: [(&str, &str, &str); 9] = [
    ("GET", "/admin/health", "{\"status\":\"ok\",\"requests\":N}"),
    ("GET", "/admin/journal", "the request journal as JSON lines; ?since=N for the newer ones"),
    ("POST", "/admin/expire", "{\"agent_runtime_id\":\"...\"} or no body: the latest runtime"),
    ("POST", "/admin/revoke", "{\"agent_runtime_id\":\"...\"} or no body: the latest runtime"),
    ("POST", "/admin/faults", "fault lines as in a scenario, counted from the next call"),
    ("POST", "/admin/heal", "no more faults (until more are added)"),
    ("POST", "/admin/accounts", "{\"account_id\":\"...\",\"access_token\":\"...\"}"),
    (
        "POST",
        "/admin/identities",
        "{\"account_id\":\"...\",\"agent_public_key\":\"ssh-ed25519 ...\"}: registered out of band",
    ),
    ("POST", "/admin/reset", "a fresh backend as started; the journal emptied"),
];

/// Where messages about fault lines sent to `POST /admin/faults` say the lines were.
const FAULTS_ORIGIN: &str = "<POST /admin/faults>";

/// Answers one admin request.
pub(super) async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let (method, path) = (parts.method.as_str().to_owned(), parts.uri.path().to_owned());
    let query = parts.uri.query().unwrap_or("").to_owned();
    let answer = match read_body(&parts.headers, body).await {
        Ok(body) => route(shared, &method, &path, &query, &body),
        Err(ReadError::TooLarge) => to_hyper(error(413, "invalid_request")),
        Err(ReadError::Broken(_)) => to_hyper(error(400, "invalid_request")),
    };
    tracing::info!("admin {method} {path} -> {}", answer.status().as_u16());
    answer
}

fn route(shared: &Shared, method: &str, path: &str, query: &str, body: &[u8]) -> Response<Body> {
    match (method, path) {
        ("GET", "/admin/health") => health(shared),
        ("GET", "/admin/journal") => journal(shared, query),
        ("POST", "/admin/reset") => {
            shared.world.replace(World::new(&shared.options));
            to_hyper(json(200, &json!({ "status": "reset" })))
        }
        ("POST", "/admin/expire") => retire(shared, Retire::Expire, body),
        ("POST", "/admin/revoke") => retire(shared, Retire::Revoke, body),
        ("POST", "/admin/faults") => faults(shared, body),
        ("POST", "/admin/heal") => with_world(shared, |world| {
            world.heal();
            json(200, &json!({ "healed": true }))
        }),
        ("POST", "/admin/accounts") => accounts(shared, body),
        ("POST", "/admin/identities") => identities(shared, body),
        _ if ADMIN_ROUTES.iter().any(|(_, known, _)| *known == path) => {
            to_hyper(error(405, "method_not_allowed"))
        }
        _ => to_hyper(error(404, "not_found")),
    }
}

/// Runs `change` on the world, or answers 500 when a panic poisoned it.
fn with_world(
    shared: &Shared,
    change: impl FnOnce(&mut World) -> agentsim_core::wire::HttpResponse,
) -> Response<Body> {
    match shared.world.lock() {
        Ok(mut world) => to_hyper(change(&mut world)),
        Err(_) => to_hyper(error(500, "internal")),
    }
}

fn health(shared: &Shared) -> Response<Body> {
    let requests = shared.world.lock_anyway().requests();
    if shared.world.is_poisoned() {
        return to_hyper(json(500, &json!({ "status": "poisoned", "requests": requests })));
    }
    to_hyper(json(200, &json!({ "status": "ok", "requests": requests })))
}

fn journal(shared: &Shared, query: &str) -> Response<Body> {
    let mut since = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(value) = pair.strip_prefix("since=") {
            match value.parse() {
                Ok(n) => since = n,
                Err(_) => return bad_request("since must be a whole number"),
            }
        }
    }
    let entries = shared.world.lock_anyway().journal(since);
    let mut lines = String::new();
    for entry in &entries {
        match serde_json::to_string(entry) {
            Ok(line) => {
                lines.push_str(&line);
                lines.push('\n');
            }
            Err(e) => tracing::error!("a journal entry does not serialize: {e}"),
        }
    }
    with_content_type(200, "application/x-ndjson", lines)
}

/// The body of `POST /admin/expire` and `/admin/revoke`.
#[derive(Debug, Deserialize)]
struct Target {
    agent_runtime_id: Option<String>,
}

fn retire(shared: &Shared, how: Retire, body: &[u8]) -> Response<Body> {
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Target>(body) {
            Ok(target) => target.agent_runtime_id,
            Err(e) => {
                return bad_request(&format!("expected {{\"agent_runtime_id\":\"...\"}}: {e}"))
            }
        }
    };
    with_world(shared, |world| match world.retire(how, target) {
        Some(runtime) => json(200, &json!({ "agent_runtime_id": runtime })),
        None => error(404, "unknown_runtime"),
    })
}

fn faults(shared: &Shared, body: &[u8]) -> Response<Body> {
    let Ok(text) = std::str::from_utf8(body) else {
        return bad_request("the fault lines are not UTF-8");
    };
    let file = match parse_servable_faults(Path::new(FAULTS_ORIGIN), text) {
        Ok(file) => file,
        Err(e) => {
            return to_hyper(json(
                400,
                &json!({ "error": "invalid_faults", "message": e.to_string() }),
            ))
        }
    };
    let (rules, random) = (file.rules.len(), file.random.is_some());
    with_world(shared, |world| {
        world.add_faults(file);
        json(200, &json!({ "rules": rules, "random_faults": random }))
    })
}

/// The body of `POST /admin/accounts`.
#[derive(Deserialize)]
struct NewAccount {
    account_id: String,
    access_token: String,
}

fn accounts(shared: &Shared, body: &[u8]) -> Response<Body> {
    let account = match serde_json::from_slice::<NewAccount>(body) {
        Ok(a) if !a.account_id.is_empty() && !a.access_token.is_empty() => a,
        Ok(_) => return bad_request("account_id and access_token must not be empty"),
        Err(e) => {
            return bad_request(&format!(
                "expected {{\"account_id\":\"...\",\"access_token\":\"...\"}}: {e}"
            ))
        }
    };
    with_world(shared, |world| {
        world.add_account(&account.account_id, &account.access_token);
        json(200, &json!({ "account_id": account.account_id }))
    })
}

/// The body of `POST /admin/identities`.
#[derive(Deserialize)]
struct NewIdentity {
    account_id: String,
    agent_public_key: String,
}

/// An identity registered out of band (another process of the user's registered it): the
/// answer is the registration's, `{"agent_runtime_id", "expires_at"?}`.
fn identities(shared: &Shared, body: &[u8]) -> Response<Body> {
    let Ok(identity) = serde_json::from_slice::<NewIdentity>(body) else {
        return bad_request(
            "expected {\"account_id\":\"...\",\"agent_public_key\":\"ssh-ed25519 ...\"}",
        );
    };
    let now = (shared.options.clock)();
    with_world(shared, |world| {
        match world.register_out_of_band(now, &identity.account_id, &identity.agent_public_key) {
            Some(response) => json(200, &json!(response)),
            None => error(400, "invalid_public_key"),
        }
    })
}

/// 400 `{"error":"invalid_request","message":...}`.
fn bad_request(message: &str) -> Response<Body> {
    to_hyper(json(400, &json!({ "error": "invalid_request", "message": message })))
}
