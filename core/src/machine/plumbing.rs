//! Plumbing: the one place each kind of command is queued (requests with their timeout, rollout
//! appends, events, log lines, marks), and the biscuit every registration needs first.

use rand_core::RngCore as _;

use super::{Lifecycle, Pending, RequestFailure, Thread};
use crate::config::Auth;
use crate::limits::REQUEST_TIMEOUT_MS;
use crate::output::{Command, Event, EventKind, Failure, Level, LogLine, RequestId, ThreadId};
use crate::protocol;
use crate::rollout::{AgentTask, RolloutItem, RolloutLine};
use crate::time::Timestamp;
use crate::wire::{HttpRequest, HttpResponse};

impl Lifecycle {
    /// The biscuit out of a biscuit request's outcome.
    pub(super) fn read_biscuit(
        &self,
        result: Result<HttpResponse, RequestFailure>,
    ) -> Result<String, protocol::BiscuitError> {
        let url = format!("{}{}", self.config.base_url, crate::wire::BISCUIT_PATH);
        match result {
            Ok(response) => protocol::read_biscuit(&url, &response),
            Err(_) => Err(protocol::BiscuitError::Send { url }),
        }
    }

    pub(super) fn send_biscuit(&mut self, pending: Pending, target_url: &str) {
        let access_token = match &self.auth {
            Auth::ChatGpt { access_token, .. } => access_token.clone(),
            Auth::None | Auth::ApiKey => unreachable!("a biscuit is only requested with a binding"),
        };
        let mut request_id = [0u8; 16];
        self.rng.fill_bytes(&mut request_id);
        let request =
            protocol::biscuit_request(&self.config, &access_token, target_url, request_id);
        self.send(pending, request);
    }

    pub(super) fn send(&mut self, pending: Pending, request: HttpRequest) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.pending.insert(id, pending);
        self.out.push_back(Command::Send { id, request, timeout_ms: REQUEST_TIMEOUT_MS });
    }

    /// A new rollout's first line: `session_meta` with an id drawn from the seed.
    pub(super) fn write_session_meta(&mut self, now: Timestamp, thread: &ThreadId) {
        let mut b = [0u8; 16];
        self.ids.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x70; // version 7, as the reference's ids
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let id = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        self.append(now, thread, crate::rollout::session_meta(&id, now));
    }

    /// Token counts of a completed answer, drawn from the seed.
    pub(super) fn token_counts(&mut self) -> (u64, u64) {
        let input = 1_000 + u64::from(self.ids.next_u32() % 4_000);
        let output = 10 + u64::from(self.ids.next_u32() % 400);
        (input, output)
    }

    pub(super) fn append(&mut self, now: Timestamp, thread: &ThreadId, item: RolloutItem) {
        self.out.push_back(Command::Append {
            thread: thread.clone(),
            line: RolloutLine { timestamp: now, item },
        });
    }

    pub(super) fn emit(&mut self, thread: &ThreadId, kind: EventKind) {
        self.out.push_back(Command::Emit(Event { thread: thread.clone(), kind }));
    }

    pub(super) fn log(
        &mut self,
        level: Level,
        message: &'static str,
        fields: Vec<(&'static str, String)>,
    ) {
        self.out.push_back(Command::Log(LogLine { level, message, failure: None, fields }));
    }

    /// One of the failure log lines of spec section 4: a warning that names what failed.
    pub(super) fn log_failure(
        &mut self,
        failure: Failure,
        message: &'static str,
        fields: Vec<(&'static str, String)>,
    ) {
        let failure = Some(failure);
        self.out.push_back(Command::Log(LogLine { level: Level::Warn, message, failure, fields }));
    }

    pub(super) fn mark(&mut self, name: &'static str) {
        self.out.push_back(Command::Mark(name));
    }

    pub(super) fn thread_mut(&mut self, thread: &ThreadId) -> &mut Thread {
        if !self.touched.contains(thread) {
            self.touched.insert(thread.clone());
        }
        self.threads.get_mut(thread).unwrap_or_else(|| panic!("unknown thread {thread}"))
    }
}

/// The log fields that name a thread's task.
pub(super) fn task_fields(thread: &ThreadId, task: &AgentTask) -> Vec<(&'static str, String)> {
    vec![
        ("thread", thread.to_string()),
        ("agent_runtime_id", task.agent_runtime_id.clone()),
        ("task_id", task.task_id.clone()),
    ]
}
