use agentsim_core::{EventKind, Failure};

use super::*;

fn error(failure: Failure, message: &str) -> Event {
    let kind = EventKind::Error { turn: None, failure, message: message.to_owned() };
    Event { thread: ThreadId::from("A"), kind }
}

#[test]
fn error_text_holds_each_failure_to_its_spec_section_4_text() {
    let good = [
        (Failure::IdentityRegistration, "Agent identity registration failed while `features.use_agent_identity` is enabled: boom"),
        (Failure::TaskRegistration, "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: boom"),
        (Failure::ModelRequest { status: Some(401) }, "model request failed with status 401: {}"),
        (Failure::ModelRequest { status: None }, "model request failed: failed to send model request to http://x"),
    ];
    for (failure, message) in good {
        assert_eq!(Checker::error_text(&error(failure, message)), None, "{message}");
    }
    let bad = [
        (Failure::IdentityRegistration, "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: boom"),
        (Failure::TaskRegistration, "Agent task registration failed: boom"),
        (Failure::ModelRequest { status: Some(500) }, "model request failed with status 401: {}"),
        (Failure::ModelRequest { status: None }, "request failed"),
    ];
    for (failure, message) in bad {
        assert!(Checker::error_text(&error(failure, message)).is_some(), "{message}");
    }
}

#[test]
fn checks_key_on_the_failure_not_the_text() {
    // Flag off, an agent failure with any text is invariant 1; a model failure is not.
    let mut checker = Checker::new(false, true, true);
    let event = error(Failure::ModelRequest { status: None }, "model request failed");
    checker.observe(Observation::Event(&event));
    assert_eq!(checker.violation, None);
    checker.observe(Observation::Step { index: 2 });
    checker.observe(Observation::Event(&error(Failure::TaskRegistration, "reworded")));
    let violation = checker.violation.expect("a violation");
    assert_eq!((violation.invariant, violation.step), (Invariant::SpecText, 2));
    let mut checker = Checker::new(false, true, true);
    let message =
        "Agent identity registration failed while `features.use_agent_identity` is enabled: x";
    checker.observe(Observation::Event(&error(Failure::IdentityRegistration, message)));
    assert_eq!(checker.violation.map(|v| v.invariant), Some(Invariant::FlagOff));
}
