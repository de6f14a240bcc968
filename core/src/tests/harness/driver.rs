//! The driver: [`Harness`] feeds one [`Lifecycle`] its inputs, answers its requests through
//! the fake backend, and records and checks every command it returns.

use std::collections::{BTreeMap, BTreeSet};

use crate::output::{Command, Event, EventKind, LogLine, RequestId, ThreadId, TurnId};
use crate::rollout::{self, RolloutItem, RolloutLine, RolloutScan};
use crate::time::Timestamp;
use crate::wire::{self, HttpRequest, HttpResponse};
use crate::{limits, marks, Auth, Config, InFlight, Lifecycle, RequestFailure, StoredIdentity};

use super::backend::FakeBackend;
use super::fixtures::{signed_in, InFlightMatch};

/// Answers a drive loop may give before a test fails for running away.
const STEP_CAP: usize = 500;

/// One process's lifecycle, its fake backend, its rollout files and auth store, and everything
/// the machine said.
pub(in crate::tests) struct Harness {
    pub(in crate::tests) machine: Lifecycle,
    pub(in crate::tests) now: Timestamp,
    pub(in crate::tests) backend: FakeBackend,
    /// The rollout files, as bytes: they outlive a process (see [`Harness::restart`]).
    pub(in crate::tests) rollouts: BTreeMap<ThreadId, Vec<u8>>,
    pub(in crate::tests) events: Vec<Event>,
    pub(in crate::tests) logs: Vec<LogLine>,
    pub(in crate::tests) marks: Vec<&'static str>,
    /// The auth store's identity slot.
    pub(in crate::tests) store: Option<StoredIdentity>,
    /// Every request sent since the last [`Harness::forget`], in send order.
    pub(in crate::tests) sent: Vec<(RequestId, HttpRequest)>,
    /// Every command since the last [`Harness::forget`], one short line each.
    pub(in crate::tests) trace: Vec<String>,
    unanswered: Vec<(RequestId, HttpRequest)>,
    config: Config,
    auth: Auth,
    /// Secrets seen so far: access tokens, biscuits, private keys (spec invariant 14).
    secrets: BTreeSet<String>,
    /// Task registration requests of each ensure, by the machine's ensure number.
    pub(in crate::tests) registrations_per_ensure: BTreeMap<u64, BTreeSet<RequestId>>,
    process: u8,
}

impl Harness {
    /// A process with `config`, `auth`, and `store` in the auth store (known to the backend).
    pub(in crate::tests) fn new(
        config: Config,
        auth: Auth,
        store: Option<StoredIdentity>,
    ) -> Harness {
        let mut backend = FakeBackend::new();
        if let Some(stored) = &store {
            backend.adopt(stored);
        }
        let now = Timestamp::SIM_EPOCH;
        let machine = Lifecycle::new(config.clone(), auth.clone(), store.clone(), seed(0));
        let mut h = Harness {
            machine,
            now,
            backend,
            rollouts: BTreeMap::new(),
            events: vec![],
            logs: vec![],
            marks: vec![],
            store,
            sent: vec![],
            trace: vec![],
            unanswered: vec![],
            config,
            auth: auth.clone(),
            secrets: BTreeSet::new(),
            registrations_per_ensure: BTreeMap::new(),
            process: 0,
        };
        h.learn_secrets_of(&auth);
        if let Some(stored) = h.store.clone() {
            h.secrets.insert(stored.private_key);
        }
        h.drain();
        h
    }

    /// Default config, signed in, empty auth store.
    pub(in crate::tests) fn signed_in() -> Harness {
        Harness::new(Config::default(), signed_in(), None)
    }

    /// Default config, signed in, `stored` in the auth store.
    pub(in crate::tests) fn with_identity(stored: StoredIdentity) -> Harness {
        Harness::new(Config::default(), signed_in(), Some(stored))
    }

    // ---- inputs -------------------------------------------------------------------------

    /// A new thread starts.
    pub(in crate::tests) fn start(&mut self, thread: &str) {
        self.rollouts.entry(thread.into()).or_default();
        self.machine.start_thread(self.now, thread.into());
        self.drain();
    }

    /// The thread resumes from its rollout file.
    pub(in crate::tests) fn resume(&mut self, thread: &str) -> RolloutScan {
        let bytes = self.rollout(thread);
        let scan = self.machine.resume_thread(self.now, thread.into(), &bytes);
        self.drain();
        scan
    }

    /// The thread's rollout file becomes `bytes`, then the thread resumes from it.
    /// The thread's history is compacted.
    pub(in crate::tests) fn compact(&mut self, thread: &str) {
        self.machine.compact(self.now, &thread.into());
        self.drain();
    }

    /// The thread's last `turns` turns are rolled back.
    pub(in crate::tests) fn rollback(&mut self, thread: &str, turns: u32) {
        self.machine.rollback(self.now, &thread.into(), turns);
        self.drain();
    }

    pub(in crate::tests) fn resume_bytes(&mut self, thread: &str, bytes: &[u8]) -> RolloutScan {
        self.rollouts.insert(thread.into(), bytes.to_vec());
        self.resume(thread)
    }

    /// `child` forks from `parent`: the driver copies the parent's rollout into the child's.
    pub(in crate::tests) fn fork(&mut self, child: &str, parent: &str) -> RolloutScan {
        let copy = self.rollout(parent);
        self.rollouts.remove(&ThreadId::from(child));
        let scan = self.machine.fork_thread(self.now, child.into(), &copy);
        self.drain();
        scan
    }

    /// The user submits turn `n` (text `message {n}`) on `thread`.
    pub(in crate::tests) fn turn(&mut self, thread: &str, n: u32) {
        self.machine.submit_turn(self.now, &thread.into(), TurnId(n), &format!("message {n}"));
        self.drain();
    }

    /// The user's auth changes.
    pub(in crate::tests) fn set_auth(&mut self, auth: Auth) {
        self.learn_secrets_of(&auth);
        self.auth = auth.clone();
        self.machine.handle_auth_changed(self.now, auth);
        self.drain();
    }

    /// Another process replaced the auth store's identity (the backend knows the new one).
    pub(in crate::tests) fn replace_store(&mut self, stored: Option<StoredIdentity>) {
        if let Some(s) = &stored {
            self.backend.adopt(s);
            self.secrets.insert(s.private_key.clone());
        }
        self.store = stored.clone();
        self.machine.handle_identity_store_changed(self.now, stored);
        self.drain();
    }

    /// Virtual time passes. Nothing times out on its own: tests fail requests explicitly.
    pub(in crate::tests) fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
    }

    /// The process restarts with the same config, auth and auth store. Requests in flight are
    /// lost; rollout files, the backend and the record stay.
    pub(in crate::tests) fn restart(&mut self) {
        self.process += 1;
        self.machine = Lifecycle::new(
            self.config.clone(),
            self.auth.clone(),
            self.store.clone(),
            seed(self.process),
        );
        self.unanswered.clear();
        self.drain();
    }

    // ---- answering ----------------------------------------------------------------------

    /// The request in flight for `what`.
    #[track_caller]
    pub(in crate::tests) fn pending(&self, what: InFlightMatch<'_>) -> RequestId {
        let in_flight = self.machine.in_flight();
        match in_flight.iter().find(|(_, w)| what.matches(w)) {
            Some((id, _)) => *id,
            None => panic!("no request in flight for {what:?}; in flight: {in_flight:?}"),
        }
    }

    /// The backend answers request `id`.
    pub(in crate::tests) fn answer(&mut self, id: RequestId) {
        let request = self.take(id);
        let response = self.backend.respond(self.now, &request);
        self.machine.handle_response(self.now, id, response);
        self.drain();
    }

    /// Request `id` is answered with `response`, whatever the backend would say.
    pub(in crate::tests) fn answer_with(&mut self, id: RequestId, response: HttpResponse) {
        self.take(id);
        self.machine.handle_response(self.now, id, response);
        self.drain();
    }

    /// Request `id` gets no response.
    pub(in crate::tests) fn fail(&mut self, id: RequestId, failure: RequestFailure) {
        self.take(id);
        self.machine.handle_request_failed(self.now, id, failure);
        self.drain();
    }

    /// A response arrives for a request already reported failed (a late answer after a timeout).
    pub(in crate::tests) fn deliver_late(&mut self, id: RequestId, response: HttpResponse) {
        assert!(self.unanswered.iter().all(|(i, _)| *i != id), "{id} is still unanswered");
        self.machine.handle_response(self.now, id, response);
        self.drain();
    }

    /// The backend answers the oldest unanswered request.
    #[track_caller]
    pub(in crate::tests) fn answer_next(&mut self) -> RequestId {
        let id = self.unanswered.first().expect("a request to answer").0;
        self.answer(id);
        id
    }

    /// Answers requests oldest first until one for `what` is in flight, and returns it
    /// unanswered.
    #[track_caller]
    pub(in crate::tests) fn answer_until(&mut self, what: InFlightMatch<'_>) -> RequestId {
        for _ in 0..STEP_CAP {
            if let Some((id, _)) =
                self.machine.in_flight().into_iter().find(|(_, w)| what.matches(w))
            {
                return id;
            }
            assert!(!self.unanswered.is_empty(), "idle before a request for {what:?} was sent");
            self.answer_next();
        }
        panic!("no request for {what:?} after {STEP_CAP} answers");
    }

    /// Answers requests oldest first until none is left.
    #[track_caller]
    pub(in crate::tests) fn run_until_idle(&mut self) {
        for _ in 0..STEP_CAP {
            if self.unanswered.is_empty() {
                return;
            }
            self.answer_next();
        }
        panic!("still busy after {STEP_CAP} answers: {:?}", self.machine.in_flight());
    }

    /// Forgets the record (requests, events, logs, marks, trace); rollouts and the store stay.
    pub(in crate::tests) fn forget(&mut self) {
        self.sent.clear();
        self.events.clear();
        self.logs.clear();
        self.marks.clear();
        self.trace.clear();
    }

    /// The thread's rollout file.
    pub(in crate::tests) fn rollout(&self, thread: &str) -> Vec<u8> {
        self.rollouts.get(&ThreadId::from(thread)).cloned().unwrap_or_default()
    }

    /// Secrets seen so far.
    pub(in crate::tests) fn secrets(&self) -> &BTreeSet<String> {
        &self.secrets
    }

    // ---- recording ----------------------------------------------------------------------

    fn take(&mut self, id: RequestId) -> HttpRequest {
        let index = self
            .unanswered
            .iter()
            .position(|(i, _)| *i == id)
            .unwrap_or_else(|| panic!("{id} is not unanswered"));
        self.unanswered.remove(index).1
    }

    fn learn_secrets_of(&mut self, auth: &Auth) {
        if let Auth::ChatGpt { access_token, .. } = auth {
            self.secrets.insert(access_token.clone());
        }
    }

    fn drain(&mut self) {
        while let Some(command) = self.machine.poll_command() {
            let line = self.record(command);
            self.trace.push(line);
        }
        self.check_invariants();
    }

    fn record(&mut self, command: Command) -> String {
        match command {
            Command::Send { id, request, timeout_ms } => {
                assert_eq!(
                    timeout_ms,
                    limits::REQUEST_TIMEOUT_MS,
                    "every call has the spec's timeout"
                );
                self.check_request(&request);
                let what = describe_request(&request);
                self.unanswered.push((id, request.clone()));
                self.sent.push((id, request));
                format!("send {what}")
            }
            Command::Append { thread, line } => {
                self.check_append(&thread, &line);
                let what = describe_line(&line.item);
                let file = self.rollouts.entry(thread.clone()).or_default();
                file.extend_from_slice(line.to_json().as_bytes());
                file.push(b'\n');
                format!("append {thread} {what}")
            }
            Command::AppendCopy { thread, bytes } => {
                let lines = bytes.iter().filter(|b| **b == b'\n').count();
                self.rollouts.entry(thread.clone()).or_default().extend_from_slice(&bytes);
                format!("append {thread} a copy of {lines} lines")
            }
            Command::Emit(event) => {
                let what = format!("emit {} {}", event.thread, describe_event(&event.kind));
                self.events.push(event);
                what
            }
            Command::StoreIdentity(stored) => {
                self.secrets.insert(stored.private_key.clone());
                let what = format!("store {}", stored.agent_runtime_id);
                self.store = Some(stored);
                what
            }
            Command::DeleteIdentity => {
                self.store = None;
                "delete identity".into()
            }
            Command::Log(line) => {
                let what = format!("log {}", line.message);
                self.logs.push(line);
                what
            }
            Command::Mark(name) => {
                assert!(marks::ALL.contains(&name), "unknown mark {name}");
                self.marks.push(name);
                format!("mark {name}")
            }
        }
    }

    /// Spec invariants 1 and 7, checked on every request as it is sent.
    fn check_request(&self, request: &HttpRequest) {
        let assertion =
            request.header("Authorization").filter(|v| wire::assertion_token(v).is_some());
        if !self.config.use_agent_identity {
            assert_eq!(
                request.path(),
                wire::MODEL_PATH,
                "invariant 1: an agent call with the flag off"
            );
            assert_eq!(assertion, None, "invariant 1: an assertion with the flag off");
        }
        if let Some(header) = assertion {
            let assertion = wire::parse_assertion_header(header).expect("a well-formed assertion");
            assert_eq!(
                Some(assertion.agent_runtime_id.as_str()),
                self.machine.current_runtime(self.now),
                "invariant 7: an assertion for a runtime that is not the current identity's"
            );
        }
    }

    /// Spec invariants 1 and 4, checked on every appended line.
    fn check_append(&self, thread: &ThreadId, line: &RolloutLine) {
        let RolloutItem::SessionState(value) = &line.item else { return };
        assert!(
            self.config.use_agent_identity && self.config.persist_task,
            "invariants 1 and 20: session_state appended"
        );
        if let Some(task) = value {
            assert_eq!(
                Some(task.agent_runtime_id.as_str()),
                self.machine.current_runtime(self.now),
                "invariant 4: appended a task that does not match the identity"
            );
            assert_eq!(
                self.backend.task_runtime(&task.task_id),
                Some(task.agent_runtime_id.as_str()),
                "invariant 8: the appended task id is not one the backend sealed for that runtime"
            );
        }
        let file = self.rollouts.get(thread).map(Vec::as_slice).unwrap_or_default();
        let previous = rollout::scan(file).last_state.map(|s| s.task);
        assert_ne!(
            previous.as_ref(),
            Some(value),
            "invariant 4: {thread} appended the same session_state twice in a row"
        );
    }

    /// Spec invariants 5 and 14, checked after every step.
    fn check_invariants(&mut self) {
        let in_flight = self.machine.in_flight();
        let identity_calls = in_flight
            .iter()
            .filter(|(_, w)| matches!(w, InFlight::IdentityBiscuit | InFlight::IdentityRegister))
            .count();
        assert!(
            identity_calls <= 1,
            "invariant 5: {identity_calls} identity registrations in flight"
        );
        let mut task_calls: BTreeMap<&ThreadId, usize> = BTreeMap::new();
        for (_, what) in &in_flight {
            if let InFlight::TaskBiscuit { thread, .. } | InFlight::TaskRegister { thread, .. } =
                what
            {
                *task_calls.entry(thread).or_default() += 1;
            }
        }
        assert!(task_calls.values().all(|n| *n <= 1), "invariant 5: {task_calls:?}");
        // Invariant 6: one ensure sends at most `TASK_ATTEMPTS_MAX` task registrations, plus
        // `REACQUIRE_RETRIES_MAX` after a 401 identity_expired under reacquire.
        let most = usize::from(limits::TASK_ATTEMPTS_MAX + limits::REACQUIRE_RETRIES_MAX);
        for (id, what) in &in_flight {
            if let InFlight::TaskRegister { ensure, .. } = what {
                let sent = self.registrations_per_ensure.entry(*ensure).or_default();
                sent.insert(*id);
                assert!(
                    sent.len() <= most,
                    "invariant 6: ensure {ensure} sent {} task registrations",
                    sent.len()
                );
            }
        }
        self.assert_no_secret_leaked();
    }

    /// Spec invariant 14: no secret in any log line, event, rollout line, trace line, or the
    /// machine's debug snapshot.
    pub(in crate::tests) fn assert_no_secret_leaked(&self) {
        let mut places: Vec<String> = vec![format!("{:?}", self.machine)];
        places.extend(self.logs.iter().map(|l| format!("{l} {l:?}")));
        places.extend(self.events.iter().map(|e| format!("{e} {e:?}")));
        places.extend(self.rollouts.values().map(|r| String::from_utf8_lossy(r).into_owned()));
        places.extend(self.trace.iter().cloned());
        let secrets = self.secrets.iter().chain(self.backend.biscuits_minted());
        for secret in secrets {
            for place in &places {
                assert!(
                    !place.contains(secret.as_str()),
                    "invariant 14: a secret leaked into {place}"
                );
            }
        }
    }
}

fn seed(process: u8) -> [u8; 32] {
    let mut seed = [0x42; 32];
    seed[0] = process;
    seed
}

/// `METHOD path`, and for a model request with an assertion ` as runtime/task`.
pub(super) fn describe_request(request: &HttpRequest) -> String {
    let mut what = format!("{} {}", request.method.as_str(), request.path());
    if let Some(header) =
        request.header("Authorization").filter(|v| wire::assertion_token(v).is_some())
    {
        let a = wire::parse_assertion_header(header).expect("a well-formed assertion");
        what.push_str(&format!(" as {}/{}", a.agent_runtime_id, a.task_id));
    }
    what
}

fn describe_line(item: &RolloutItem) -> String {
    match item {
        RolloutItem::SessionState(Some(task)) => {
            format!("session_state {}/{}", task.agent_runtime_id, task.task_id)
        }
        RolloutItem::SessionState(None) => "session_state null".into(),
        other => other.type_name().into(),
    }
}

pub(super) fn describe_event(kind: &EventKind) -> String {
    match kind.turn() {
        Some(turn) => format!("{} {turn}", kind.name()),
        None => kind.name().into(),
    }
}
