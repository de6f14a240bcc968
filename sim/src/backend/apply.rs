//! Application: the state changes and random draws of an admitted request, in a fixed order per
//! request, so the same requests draw the same bytes.

use std::fmt::Write as _;

use agentsim_core::time::Timestamp;
use agentsim_core::wire::{
    seal_base64, x25519_public, HttpResponse, IdentityRegistrationResponse,
    TaskRegistrationResponse, BISCUIT_RESPONSE_HEADER,
};
use ed25519_dalek::VerifyingKey;
use rand_core::RngCore as _;

use super::admit::{Admitted, Refusal};
use super::http::{error_response, json_response, to_json};
use super::records::{Answer, BiscuitGrant, RuntimeRecord};
use super::{Backend, LAST_WRITABLE_INSTANT};

/// The model's own answer, before a fault reshapes it.
#[derive(Clone, Debug)]
pub(super) struct Outcome {
    pub(super) response: HttpResponse,
    /// Task registration: the task id issued and the key it was sealed to.
    pub(super) issued_task: Option<(String, VerifyingKey)>,
    /// The same answer, as the model's records say it.
    pub(super) answer: Answer,
}

impl Outcome {
    fn plain(response: HttpResponse, answer: Answer) -> Outcome {
        Outcome { response, issued_task: None, answer }
    }

    pub(super) fn refused(refusal: &Refusal) -> Outcome {
        let answer = Answer::Refused { status: refusal.status, error: refusal.error };
        Outcome::plain(error_response(refusal.status, refusal.error), answer)
    }
}

impl Backend {
    pub(super) fn apply(&mut self, admitted: Admitted) -> Outcome {
        match admitted {
            Admitted::Biscuit { account_id, path } => {
                let biscuit = self.draw_unused_id("bsc_", 16, |b, id| b.biscuits.contains_key(id));
                self.biscuits.insert(biscuit.clone(), BiscuitGrant { account_id, path });
                self.stats.biscuits_minted += 1;
                let mut response = json_response(b"{}".to_vec());
                response.headers.push((BISCUIT_RESPONSE_HEADER.to_owned(), biscuit.into_bytes()));
                Outcome::plain(response, Answer::Minted)
            }
            Admitted::Identity { account_id, public_key } => {
                let registered = self.register_identity(&account_id, public_key);
                let answer = Answer::Registered {
                    agent_runtime_id: registered.agent_runtime_id.clone(),
                    expires_at: self.runtimes[&registered.agent_runtime_id].expires_at,
                };
                Outcome::plain(json_response(to_json(&registered)), answer)
            }
            Admitted::Task { agent_runtime_id, public_key } => {
                let task_id = self.draw_unused_id("task_", 4, |b, id| b.tasks.contains_key(id));
                self.tasks.insert(task_id.clone(), agent_runtime_id.clone());
                self.stats.tasks_issued += 1;
                let encrypted_task_id =
                    seal_base64(&x25519_public(&public_key), task_id.as_bytes(), &mut self.rng);
                let body = to_json(&TaskRegistrationResponse { encrypted_task_id });
                let answer = Answer::Issued { task_id: task_id.clone(), agent_runtime_id };
                Outcome {
                    response: json_response(body),
                    issued_task: Some((task_id, public_key)),
                    answer,
                }
            }
            Admitted::Model => {
                self.stats.model_responses += 1;
                let body = format!(
                    r#"{{"id":"resp_{}","status":"completed"}}"#,
                    self.stats.model_responses
                );
                Outcome::plain(json_response(body.into_bytes()), Answer::Completed)
            }
        }
    }

    pub(super) fn register_identity(
        &mut self,
        account_id: &str,
        public_key: VerifyingKey,
    ) -> IdentityRegistrationResponse {
        let agent_runtime_id =
            self.draw_unused_id("agent-", 4, |b, id| b.runtimes.contains_key(id));
        // A TTL that ends past what RFC 3339 can write ends at the last writable instant instead:
        // the identity outlives any run either way.
        let expires_at_text = self
            .config
            .identity_ttl_ms
            .map(|ttl| self.now.plus_ms(ttl).min(LAST_WRITABLE_INSTANT).rfc3339_secs());
        // The instant the client will read back from the text, so both sides agree to the
        // millisecond on when the identity expires.
        let expires_at = expires_at_text
            .as_deref()
            .map(|text| Timestamp::parse_rfc3339(text).expect("rfc3339_secs output parses"));
        let record = RuntimeRecord {
            account_id: account_id.to_owned(),
            public_key,
            registered_at: self.now,
            expires_at,
            expired: false,
            revoked: false,
        };
        self.runtimes.insert(agent_runtime_id.clone(), record);
        self.latest_runtimes.insert(account_id.to_owned(), agent_runtime_id.clone());
        self.stats.identities_registered += 1;
        IdentityRegistrationResponse { agent_runtime_id, expires_at: expires_at_text }
    }

    /// `prefix` + `bytes` random bytes in hex, drawn again while `taken` (a collision of short
    /// ids would merge two records).
    fn draw_unused_id(
        &mut self,
        prefix: &str,
        bytes: usize,
        taken: impl Fn(&Backend, &str) -> bool,
    ) -> String {
        for _ in 0..64 {
            let mut raw = vec![0u8; bytes];
            self.rng.fill_bytes(&mut raw);
            let id = raw.iter().fold(prefix.to_owned(), |mut s, b| {
                write!(s, "{b:02x}").expect("writing to a String cannot fail");
                s
            });
            if !taken(self, &id) {
                return id;
            }
        }
        panic!("64 random {prefix} ids in a row were taken: the id space is exhausted");
    }

    pub(super) fn runtime_mut(&mut self, agent_runtime_id: &str, verb: &str) -> &mut RuntimeRecord {
        self.runtimes.get_mut(agent_runtime_id).unwrap_or_else(|| {
            panic!("{verb}: agent runtime {agent_runtime_id} was never registered")
        })
    }
}
