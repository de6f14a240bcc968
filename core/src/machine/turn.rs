//! Turns: one at a time per thread, in submission order. A turn's rollout lines, its ensure, its
//! model request (with the assertion of spec section 2.4) and how that request ended.

use super::ensure::Waiter;
use super::{Lifecycle, Pending, RequestFailure};
use crate::config::ExpiryPolicy;
use crate::marks;
use crate::output::{EventKind, Failure, Level, ThreadId, TurnId};
use crate::protocol;
use crate::rollout::{self, AgentTask};
use crate::time::Timestamp;
use crate::wire::HttpResponse;

#[derive(Debug)]
pub(super) struct ActiveTurn {
    id: TurnId,
    text: String,
}

impl Lifecycle {
    pub(super) fn begin_turn(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        turn: TurnId,
        text: String,
    ) {
        self.append(now, thread, rollout::turn_context());
        self.append(now, thread, rollout::user_message_event(&text));
        self.append(now, thread, rollout::user_input_item(&text));
        self.emit(thread, EventKind::TaskStarted { turn });
        self.emit(thread, EventKind::UserMessage { turn, message: text.clone() });
        self.thread_mut(thread).turn = Some(ActiveTurn { id: turn, text });
        self.ensure(now, thread, Waiter::Turn(turn));
    }

    pub(super) fn send_model_request(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        turn: TurnId,
        task: Option<AgentTask>,
    ) {
        let text =
            self.thread_mut(thread).turn.as_ref().map(|t| t.text.clone()).unwrap_or_default();
        // Spec section 2.4: the assertion is built only for a task of the current identity.
        let assertion = task.as_ref().and_then(|task| {
            let identity = self.usable_identity(now)?;
            (identity.stored.agent_runtime_id == task.agent_runtime_id).then(|| {
                let header = identity.key.assertion_header(
                    &task.agent_runtime_id,
                    &task.task_id,
                    &now.rfc3339_secs(),
                );
                (header, task.agent_runtime_id.clone())
            })
        });
        if self.config.use_agent_identity && assertion.is_none() {
            self.mark(marks::TURN_WITHOUT_TASK);
        }
        let (header, runtime) = assertion.map_or((None, None), |(h, r)| (Some(h), Some(r)));
        let request = protocol::model_request(&self.config, header, &text);
        let url = request.url.clone();
        self.send(Pending::Model { thread: thread.clone(), turn, url, runtime }, request);
    }

    pub(super) fn model_done(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        turn: TurnId,
        url: &str,
        runtime: Option<String>,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        match result {
            Ok(response) if response.is_success() => {
                self.append(now, thread, rollout::assistant_output_item("done"));
                let (input, output) = self.token_counts();
                self.append(now, thread, rollout::token_count(input, output));
            }
            Ok(response) => {
                let body = response.body_text();
                let refused = response.status == 401 && protocol::is_identity_expired_body(&body);
                if refused && self.config.expiry == ExpiryPolicy::Reacquire {
                    if let Some(runtime) = &runtime {
                        if self
                            .identity
                            .as_ref()
                            .is_some_and(|i| &i.stored.agent_runtime_id == runtime)
                        {
                            self.mark(marks::MODEL_REFUSAL_DROPPED_IDENTITY);
                            self.log(Level::Warn, "agent identity refused as expired by the model request; it will be registered again", vec![("thread", thread.to_string()), ("agent_runtime_id", runtime.clone())]);
                        }
                        self.drop_identity_if_current(runtime);
                    }
                }
                let message =
                    format!("model request failed with status {}: {body}", response.status);
                let failure = Failure::ModelRequest { status: Some(response.status) };
                self.emit(thread, EventKind::Error { turn: Some(turn), failure, message });
            }
            Err(_) => {
                let message =
                    format!("model request failed: failed to send model request to {url}");
                let failure = Failure::ModelRequest { status: None };
                self.emit(thread, EventKind::Error { turn: Some(turn), failure, message });
            }
        }
        self.end_turn(now, thread, turn);
    }

    pub(super) fn end_turn(&mut self, now: Timestamp, thread: &ThreadId, turn: TurnId) {
        self.emit(thread, EventKind::TurnComplete { turn });
        let t = self.thread_mut(thread);
        debug_assert_eq!(t.turn.as_ref().map(|t| t.id), Some(turn));
        t.turn = None;
        if let Some((next, text)) = t.queued.pop_front() {
            self.begin_turn(now, thread, next, text);
        }
    }
}
