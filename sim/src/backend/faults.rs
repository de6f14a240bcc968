//! Faults the model produces itself, as real responses, so both transports carry the same bytes
//! (module doc of [`backend`](super), "Faults").

use agentsim_core::wire::{
    seal_base64, x25519_public, HttpResponse, TaskRegistrationResponse, BISCUIT_RESPONSE_HEADER,
};

use super::apply::Outcome;
use super::http::{json_response, to_json};
use super::{Backend, HUGE_BODY_BYTES};
use crate::fault::{Endpoint, FaultKind};

impl Backend {
    /// The answer a body fault gives instead of the model's own (the backend's module doc).
    pub(super) fn mangle(
        &mut self,
        endpoint: Option<Endpoint>,
        kind: &FaultKind,
        outcome: Outcome,
    ) -> HttpResponse {
        let field = expected_field(endpoint);
        let biscuit_header: Vec<(String, Vec<u8>)> = outcome
            .response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(BISCUIT_RESPONSE_HEADER))
            .cloned()
            .collect();
        let on_biscuit = endpoint == Some(Endpoint::Biscuit);
        let on_task = endpoint == Some(Endpoint::TaskRegister);
        let mut response = match kind {
            FaultKind::MissingField => json_response(b"{}".to_vec()),
            FaultKind::WrongJsonTypes => json_response(match field {
                Some(field) => format!(r#"{{"{field}":42}}"#).into_bytes(),
                None => b"[42]".to_vec(),
            }),
            FaultKind::EmptyBody => json_response(Vec::new()),
            FaultKind::WrongContentType => HttpResponse {
                status: 200,
                headers: vec![("content-type".to_owned(), b"text/html".to_vec())],
                body: b"<html><body>upstream gateway</body></html>".to_vec(),
            },
            FaultKind::HugeBody => json_response(huge_body(field)),
            FaultKind::BadBase64 if on_task => json_response(to_json(&TaskRegistrationResponse {
                encrypted_task_id: "!!not-base64!!".to_owned(),
            })),
            FaultKind::WrongKeyBox if on_task => {
                let plaintext =
                    outcome.issued_task.as_ref().map_or("task_unissued", |(id, _)| id.as_str());
                let stranger = crypto_box::SecretKey::generate(&mut self.rng).public_key();
                let encrypted_task_id = seal_base64(&stranger, plaintext.as_bytes(), &mut self.rng);
                json_response(to_json(&TaskRegistrationResponse { encrypted_task_id }))
            }
            FaultKind::NonUtf8Plaintext if on_task => {
                let recipient = match &outcome.issued_task {
                    Some((_, key)) => x25519_public(key),
                    None => crypto_box::SecretKey::generate(&mut self.rng).public_key(),
                };
                let encrypted_task_id = seal_base64(&recipient, &[0xff, 0xfe, 0xfd], &mut self.rng);
                json_response(to_json(&TaskRegistrationResponse { encrypted_task_id }))
            }
            FaultKind::MissingBiscuitHeader if on_biscuit => return json_response(b"{}".to_vec()),
            FaultKind::NonUtf8BiscuitHeader if on_biscuit => {
                let mut response = json_response(b"{}".to_vec());
                response.headers.push((BISCUIT_RESPONSE_HEADER.to_owned(), vec![0xff, 0xfe]));
                return response;
            }
            // `MalformedJson` itself, and every fault that does not apply to this endpoint.
            _ => json_response(match field {
                Some(field) => format!(r#"{{"{field}": "#).into_bytes(),
                None => b"{".to_vec(),
            }),
        };
        if on_biscuit {
            response.headers.extend(biscuit_header);
        }
        response
    }
}

/// The JSON field a client reads from an endpoint's 2xx body.
pub(super) fn expected_field(endpoint: Option<Endpoint>) -> Option<&'static str> {
    match endpoint? {
        Endpoint::Biscuit => None,
        Endpoint::IdentityRegister => Some("agent_runtime_id"),
        Endpoint::TaskRegister => Some("encrypted_task_id"),
        Endpoint::Model => Some("status"),
    }
}

/// [`HUGE_BODY_BYTES`] of an unterminated JSON string: it looks like JSON and never parses.
fn huge_body(field: Option<&str>) -> Vec<u8> {
    let mut body = format!(r#"{{"{}":""#, field.unwrap_or("padding")).into_bytes();
    body.resize(HUGE_BODY_BYTES, b'x');
    body
}

pub(super) fn injected_status(status: u16, body: Option<&str>) -> HttpResponse {
    assert!(
        (100..=599).contains(&status),
        "an injected status must be a valid HTTP status, got {status}"
    );
    let body = body.unwrap_or(r#"{"error":"injected"}"#);
    HttpResponse { status, ..json_response(body.as_bytes().to_vec()) }
}
