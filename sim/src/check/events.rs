//! The checks of core's events: a failed prewarm stays quiet (invariant 10), flag off emits no
//! agent error (1), a turn fails once and never after its model request left (11), and each
//! error's text begins with the text of spec section 4.

use agentsim_core::{Event, EventKind, Failure};

use super::{Checker, Invariant};

impl Checker {
    /// Invariants 1, 10 and 11, and the texts of spec section 4, for each event.
    pub(super) fn on_event(&mut self, event: &Event) {
        let step = self.step;
        if let Some(text) = Checker::error_text(event) {
            self.violate(Invariant::SpecText, step, text);
        }
        match &event.kind {
            EventKind::Error { turn, failure, .. } => {
                if *failure == Failure::Prewarm {
                    self.violate(
                        Invariant::PrewarmQuiet,
                        step,
                        format!("a failed prewarm emitted an error event on {}", event.thread),
                    );
                }
                if !self.use_agent_identity && failure.is_agent() {
                    self.violate(
                        Invariant::FlagOff,
                        step,
                        format!("flag off, yet {} got an agent error event", event.thread),
                    );
                }
                let Some(turn) = turn else { return };
                let track = self.turns.entry((event.thread.clone(), *turn)).or_default();
                track.errors += 1;
                let ensure_failed = *failure == Failure::TaskRegistration;
                track.ensure_failed |= ensure_failed;
                let (model_sent, errors) = (track.model_sent, track.errors);
                if ensure_failed && model_sent {
                    self.violate(
                        Invariant::TurnFailure,
                        step,
                        format!(
                            "{} {turn}: ensure failed after the model request was sent",
                            event.thread
                        ),
                    );
                }
                if errors > 1 {
                    self.violate(
                        Invariant::TurnFailure,
                        step,
                        format!("{} {turn}: more than one error event for one turn", event.thread),
                    );
                }
            }
            EventKind::TurnComplete { turn } => {
                self.turns.entry((event.thread.clone(), *turn)).or_default().completed = true;
            }
            EventKind::TaskStarted { .. } | EventKind::UserMessage { .. } => {}
        }
    }

    /// The texts of spec section 4: an `Error` event's message begins with the text the spec gives
    /// for its [`Failure`] (rule 4, rule 11, the downstream assertion's `model request failed …`).
    /// The one place the checker reads message text; every invariant keys on `Failure`. Returns
    /// what is wrong, if anything.
    pub fn error_text(event: &Event) -> Option<String> {
        let EventKind::Error { failure, message, .. } = &event.kind else { return None };
        let expected = match failure {
            Failure::IdentityRegistration => {
                "Agent identity registration failed while `features.use_agent_identity` is enabled: "
                    .to_owned()
            }
            Failure::TaskRegistration => "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: ".to_owned(),
            Failure::ModelRequest { status: Some(status) } => {
                format!("model request failed with status {status}: ")
            }
            Failure::ModelRequest { status: None } => "model request failed".to_owned(),
            // Never an event; `on_event` reports one as invariant 10.
            Failure::Prewarm => return None,
        };
        // tidy: spec-text assertion
        if message.starts_with(expected.as_str()) {
            return None;
        }
        Some(format!(
            "{} error event {message:?} ({failure:?}) does not begin with {expected:?}",
            event.thread
        ))
    }
}
