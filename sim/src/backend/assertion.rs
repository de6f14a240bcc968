//! The checks of a model request's `AgentAssertion` (spec section 2.4): well formed, naming a
//! task issued to the runtime that signs it, verifying under that runtime's key, stamped close to
//! the backend's clock, from an identity that is still valid.

use agentsim_core::time::Timestamp;
use agentsim_core::wire::{
    parse_assertion_header, verify_assertion, HttpRequest, ASSERTION_PREFIX,
};

use super::admit::{Admitted, Refusal};
use super::{Backend, ASSERTION_MAX_SKEW_SECS};

impl Backend {
    pub(super) fn admit_model(&self, request: &HttpRequest) -> Result<Admitted, Refusal> {
        // The scheme without its space: a header in it that is malformed in any way (even in
        // that space) is refused as malformed, not taken for a request without an assertion.
        let scheme = ASSERTION_PREFIX.trim_end();
        let assertion_header = request.headers.iter().find_map(|(name, value)| {
            (name.eq_ignore_ascii_case("Authorization") && value.starts_with(scheme))
                .then_some(value.as_str())
        });
        let Some(header) = assertion_header else { return Ok(Admitted::Model) };
        let bad = |reason: String| Refusal::violation(401, "invalid_assertion", reason);
        let assertion = parse_assertion_header(header)
            .map_err(|_| bad("malformed AgentAssertion".to_owned()))?;
        let runtime = &assertion.agent_runtime_id;
        match self.tasks.get(&assertion.task_id) {
            Some(issued_to) if issued_to == runtime => {}
            Some(issued_to) => {
                let task = &assertion.task_id;
                return Err(bad(format!(
                    "assertion task {task} was issued to runtime {issued_to}, not {runtime}"
                )));
            }
            // A task this backend never issued (a rollout written against another backend, or a
            // backend that forgot) is refused, but a correct client can meet it (invariant 8).
            None => return Err(Refusal::answer(401, "invalid_assertion")),
        }
        let record = self.runtimes.get(runtime).expect("a task's runtime is always registered");
        let Ok(stamped) = Timestamp::parse_rfc3339(&assertion.timestamp) else {
            return Err(bad("assertion timestamp is not RFC 3339".to_owned()));
        };
        if verify_assertion(&record.public_key, &assertion).is_err() {
            return Err(bad(format!(
                "assertion signature does not verify under the key of {runtime}"
            )));
        }
        // Spec section 2.4 [ours]: a replay guard. A correct client stamps the assertion when it
        // sends the request, so a stale one is also the client's mistake.
        let skew_ms = stamped.unix_ms().abs_diff(self.now.unix_ms());
        if skew_ms > ASSERTION_MAX_SKEW_SECS * 1000 {
            let reason = format!(
                "assertion timestamp {} is {} s away from the backend's clock (at most {ASSERTION_MAX_SKEW_SECS} s)",
                assertion.timestamp,
                skew_ms / 1000
            );
            return Err(Refusal::violation(401, "stale_assertion", reason));
        }
        if record.is_expired(self.now) {
            return Err(Refusal::answer(401, "identity_expired"));
        }
        Ok(Admitted::Model)
    }
}
