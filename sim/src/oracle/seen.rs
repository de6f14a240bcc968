//! What a correct client must conclude from each answer, read from the backend's own record of
//! what it did ([`Answer`]) and the fault the simulator put on the call. This is the oracle's own
//! reading of spec section 2 and of the fault plan's shapes (`crate::fault`): it parses no
//! response bytes and calls no core code.

use agentsim_core::Timestamp;

use crate::backend::Answer;
use crate::fault::{Endpoint, FaultKind};

/// What the client learns from one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A usable biscuit.
    Biscuit,
    /// A registered identity.
    Identity { agent_runtime_id: String, expires_at: Option<Timestamp> },
    /// A task id, sealed to the identity that asked.
    Task { task_id: String },
    /// The model request completed (any 2xx: the client reads only the status).
    Completed,
    /// A non-2xx answer. `identity_expired`: a 401 whose body is `{"error":"identity_expired"}`.
    Refused { status: u16, identity_expired: bool },
    /// A 2xx the client cannot use: the header, the body or the sealed box is not what spec
    /// section 2 requires.
    Unusable,
    /// No answer in time: a timeout, a reset, an answer slower than the timeout.
    NoAnswer,
    /// The oracle cannot tell: a scripted 2xx status fault with a hand-written body, which the
    /// client may well accept. The reference model stops predicting for the rest of the run.
    Unknown,
}

/// What the client learns when the answer arrives. `answer` is the backend's record of this
/// request (`None` when it never reached the backend).
pub fn classify(endpoint: Endpoint, fault: Option<&FaultKind>, answer: Option<&Answer>) -> Seen {
    match fault {
        Some(FaultKind::Timeout | FaultKind::Reset) => Seen::NoAnswer,
        Some(FaultKind::Status { status, body }) => injected(endpoint, *status, body.as_deref()),
        Some(kind) => reshaped(endpoint, kind, answer),
        None => own_answer(answer),
    }
}

fn own_answer(answer: Option<&Answer>) -> Seen {
    match answer {
        None => Seen::NoAnswer,
        Some(Answer::Minted) => Seen::Biscuit,
        Some(Answer::Registered { agent_runtime_id, expires_at }) => {
            Seen::Identity { agent_runtime_id: agent_runtime_id.clone(), expires_at: *expires_at }
        }
        Some(Answer::Issued { task_id, .. }) => Seen::Task { task_id: task_id.clone() },
        Some(Answer::Completed) => Seen::Completed,
        Some(Answer::Refused { status, error }) => Seen::Refused {
            status: *status,
            identity_expired: *status == 401 && *error == "identity_expired",
        },
        Some(Answer::Injected { status, body }) => {
            // Only a status fault records this; `classify` sees the fault first.
            Seen::Refused {
                status: *status,
                identity_expired: body.as_deref().is_some_and(says_identity_expired),
            }
        }
    }
}

/// A status fault: the backend did nothing and answered `status` with `body` (or its default
/// `{"error":"injected"}`).
fn injected(endpoint: Endpoint, status: u16, body: Option<&str>) -> Seen {
    if !(200..300).contains(&status) {
        let identity_expired = status == 401 && body.is_some_and(says_identity_expired);
        return Seen::Refused { status, identity_expired };
    }
    match (endpoint, body) {
        (Endpoint::Model, _) => Seen::Completed,
        // The default body has no biscuit header, no runtime id and no sealed task id.
        (_, None) => Seen::Unusable,
        (_, Some(_)) => Seen::Unknown,
    }
}

/// A body fault: the backend handled the request, then a 200 of the fault's shape replaced its
/// answer. The model request's client reads only the status; the biscuit's client reads only the
/// header, which body faults keep when a biscuit was minted.
fn reshaped(endpoint: Endpoint, kind: &FaultKind, answer: Option<&Answer>) -> Seen {
    let header_fault =
        matches!(kind, FaultKind::MissingBiscuitHeader | FaultKind::NonUtf8BiscuitHeader);
    match endpoint {
        Endpoint::Model => Seen::Completed,
        Endpoint::Biscuit if !header_fault && answer == Some(&Answer::Minted) => Seen::Biscuit,
        Endpoint::Biscuit | Endpoint::IdentityRegister | Endpoint::TaskRegister => Seen::Unusable,
    }
}

/// Whether a JSON body's `error` field is `identity_expired` (the oracle's own reading).
fn says_identity_expired(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).ok().is_some_and(|v| {
        v.get("error").and_then(serde_json::Value::as_str) == Some("identity_expired")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_faults_keep_a_minted_biscuit_and_spoil_registrations() {
        let minted = Some(&Answer::Minted);
        assert_eq!(classify(Endpoint::Biscuit, Some(&FaultKind::HugeBody), minted), Seen::Biscuit);
        assert_eq!(
            classify(Endpoint::Biscuit, Some(&FaultKind::MissingBiscuitHeader), minted),
            Seen::Unusable
        );
        let issued =
            Answer::Issued { task_id: "task_1".into(), agent_runtime_id: "agent-1".into() };
        assert_eq!(
            classify(Endpoint::TaskRegister, Some(&FaultKind::WrongKeyBox), Some(&issued)),
            Seen::Unusable
        );
        assert_eq!(
            classify(Endpoint::Model, Some(&FaultKind::MalformedJson), None),
            Seen::Completed
        );
    }

    #[test]
    fn status_faults_are_refusals_and_read_their_body() {
        let fault =
            FaultKind::Status { status: 401, body: Some(r#"{"error":"identity_expired"}"#.into()) };
        assert_eq!(
            classify(Endpoint::TaskRegister, Some(&fault), None),
            Seen::Refused { status: 401, identity_expired: true }
        );
        let ok_body = FaultKind::Status { status: 200, body: Some("{}".into()) };
        assert_eq!(classify(Endpoint::TaskRegister, Some(&ok_body), None), Seen::Unknown);
        assert_eq!(
            classify(Endpoint::Biscuit, Some(&FaultKind::Status { status: 204, body: None }), None),
            Seen::Unusable
        );
    }
}
