//! The reference model: spec section 3, written again as a small state machine that shares no
//! code with core. It is fed the inputs core is fed, in the same order, plus the backend's ground
//! truth ([`Seen`]), and predicts what core must do ([`Out`]) and what each thread caches after.
//!
//! Rule numbers in comments are the spec's. Where the spec leaves a choice open, the model makes
//! the choice core documents, and says so with **\[ours\]**:
//! - an identity that arrives already expired is retried once, then fails the ensure
//!   ([`IDENTITY_ROUNDS_MAX`]) and, at session start, counts as a failed registration (rule 4);
//! - an identity registered for a workspace that is no longer signed in is discarded: the
//!   waiting ensures reuse the slot's identity when it is usable again, register anew when
//!   another workspace is signed in, and end with no task when nobody is;
//! - an ensure whose identity vanished after a sign-out ends with no task.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agentsim_core::limits::{IDENTITY_ROUNDS_MAX, TASK_ATTEMPTS_MAX};
use agentsim_core::{Failure, Timestamp};

use super::seen::Seen;
use super::terms::{
    rfc3339_secs, Ev, Ident, Line, Operation, Origin, Out, Policy, Request, State, Task, Workspace,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    Prewarm,
    Turn(u32),
}

#[derive(Debug)]
enum Phase {
    AwaitingIdentity,
    Biscuit(Ident),
    Register(Ident),
}

#[derive(Debug)]
struct Ensure {
    waiters: Vec<Waiter>,
    discards: u8,
    reacquired: bool,
    rounds: u8,
    phase: Phase,
}

#[derive(Debug, Default)]
struct Thread {
    cached: Option<Task>,
    /// The rollout's last `session_state` as far as this process knows (`None`: none).
    persisted: Option<Option<Task>>,
    ensure: Option<Ensure>,
    turn: Option<u32>,
    queued: VecDeque<u32>,
}

/// The model of one process.
#[derive(Debug)]
pub struct Model {
    policy: Policy,
    workspace: Option<Workspace>,
    identity: Option<Ident>,
    /// The identity registration in flight: for which workspace, and whether past its biscuit.
    registering: Option<(Workspace, bool)>,
    /// Threads whose session start waits for an identity (rule 3).
    startup_waiters: BTreeSet<String>,
    threads: BTreeMap<String, Thread>,
    /// Threads whose state changed since [`Model::take_touched`] last ran.
    touched: BTreeSet<String>,
    /// The asserted runtime of each thread's model request in flight.
    model_requests: BTreeMap<String, (u32, Option<String>)>,
    out: Vec<Out>,
}

type Outcome = Result<Option<Task>, ()>;

impl Model {
    /// A process starting with these policies, workspace (none: signed out or API key) and
    /// auth store identity.
    pub fn new(policy: Policy, workspace: Option<Workspace>, stored: Option<Ident>) -> Model {
        Model {
            policy,
            workspace,
            identity: stored,
            registering: None,
            startup_waiters: BTreeSet::new(),
            threads: BTreeMap::new(),
            touched: BTreeSet::new(),
            model_requests: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    /// What the last inputs must have made core do, in order.
    pub fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    /// What core's getters must report now (per thread: [`Model::thread_view`]).
    pub fn state(&self, now: Timestamp) -> State {
        State {
            policy: self.policy,
            workspace: self.workspace.clone(),
            identity: self.identity.as_ref().map(|i| i.agent_runtime_id.clone()),
            current: self.current(now),
            threads: self.threads.len(),
        }
    }

    /// The threads of the process, in name order.
    pub fn threads(&self) -> impl Iterator<Item = &String> {
        self.threads.keys()
    }

    /// What core must report of one thread: its cached task and whether a turn is running or
    /// queued. `None`: the process has no such thread.
    pub fn thread_view(&self, thread: &str) -> Option<(Option<&Task>, bool)> {
        let t = self.threads.get(thread)?;
        Some((t.cached.as_ref(), t.turn.is_some() || !t.queued.is_empty()))
    }

    /// The threads whose state the inputs since the last call changed.
    pub fn take_touched(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched)
    }

    // ---- inputs -------------------------------------------------------------------------

    /// A new thread (rules 1, 3 to 5).
    pub fn start(&mut self, now: Timestamp, thread: &str) {
        self.threads.insert(thread.to_owned(), Thread::default());
        self.touched.insert(thread.to_owned());
        self.append(thread, Line::SessionMeta);
        self.session_start(now, thread);
    }

    /// A thread resumes; `last` is its rollout's last `session_state` (rules 2, 13 to 15).
    pub fn resume(&mut self, now: Timestamp, thread: &str, last: Option<Option<Task>>) {
        self.threads.insert(thread.to_owned(), Thread::default());
        self.touched.insert(thread.to_owned());
        if !self.policy.use_agent_identity {
            return;
        }
        if let (Some(last), true) = (last, self.policy.persist_task) {
            let current = self.current(now);
            let t = self.thread(thread);
            t.persisted = Some(last.clone());
            // Rule 13: a current task is restored; a stale one is dropped.
            t.cached = last.filter(|task| current.as_deref() == Some(&task.agent_runtime_id));
        }
        self.session_start(now, thread);
    }

    /// A thread forks; `last` is the copied rollout's last `session_state` (rule 16).
    pub fn fork(
        &mut self,
        now: Timestamp,
        thread: &str,
        copied: usize,
        last: Option<Option<Task>>,
    ) {
        self.threads.insert(thread.to_owned(), Thread::default());
        self.touched.insert(thread.to_owned());
        // The child's own header, then the parent's items.
        self.append(thread, Line::SessionMeta);
        self.append(thread, Line::Copy(copied));
        if !self.policy.use_agent_identity {
            return;
        }
        if self.policy.persist_task {
            let had_task = matches!(last, Some(Some(_)));
            self.thread(thread).persisted = last;
            if had_task {
                self.persist(thread, None);
            }
        }
        self.session_start(now, thread);
    }

    /// A compaction: one `compacted` line, nothing else.
    pub fn compact(&mut self, thread: &str) {
        self.append(thread, Line::Compacted);
    }

    /// A rollback of `turns` turns: one `thread_rolled_back` line; the task is untouched.
    pub fn rollback(&mut self, thread: &str, turns: u32) {
        self.append(thread, Line::RolledBack(u64::from(turns)));
    }

    /// The user submits a turn; it runs after the thread's earlier turns.
    pub fn submit_turn(&mut self, now: Timestamp, thread: &str, turn: u32) {
        let t = self.thread(thread);
        if t.turn.is_some() {
            t.queued.push_back(turn);
        } else {
            self.begin_turn(now, thread, turn);
        }
    }

    /// The user's auth changed (rule 3: a late sign-in registers with no restart).
    pub fn auth_changed(&mut self, now: Timestamp, workspace: Option<Workspace>) {
        self.workspace = workspace;
        if !self.policy.use_agent_identity {
            return;
        }
        self.adopt_everywhere(now);
        if self.startup_waiters.is_empty() {
            return;
        }
        if self.usable(now).is_some() {
            self.prewarm_waiters(now);
        } else if self.workspace.is_some() {
            self.require_identity();
        }
    }

    /// Another process replaced the auth store's identity.
    pub fn identity_replaced(&mut self, now: Timestamp, stored: Option<Ident>) {
        self.identity = stored;
        if self.policy.use_agent_identity && self.usable(now).is_some() {
            self.adopt_everywhere(now);
            self.prewarm_waiters(now);
        }
    }

    /// The answer to a request arrived (or it failed: [`Seen::NoAnswer`]). `request` numbers
    /// it in the run, for task origins.
    pub fn answer(&mut self, now: Timestamp, operation: &Operation, seen: Seen, request: u64) {
        match operation {
            Operation::Identity => match self.registering.as_ref().map(|(_, past)| *past) {
                Some(false) => self.identity_biscuit_done(now, seen),
                Some(true) => self.identity_register_done(now, seen),
                None => {}
            },
            Operation::Task(thread) => self.task_answer(now, thread, seen, request),
            Operation::Model(thread) => self.model_done(now, thread, seen),
        }
    }

    // ---- session start ------------------------------------------------------------------

    fn session_start(&mut self, now: Timestamp, thread: &str) {
        if !self.policy.use_agent_identity {
            return;
        }
        if self.usable(now).is_some() {
            // Rule 5: prewarm = ensure.
            self.ensure(now, thread, Waiter::Prewarm);
            return;
        }
        self.startup_waiters.insert(thread.to_owned());
        if self.workspace.is_some() {
            self.require_identity();
        }
    }

    fn prewarm_waiters(&mut self, now: Timestamp) {
        for thread in std::mem::take(&mut self.startup_waiters) {
            self.ensure(now, &thread, Waiter::Prewarm);
        }
    }

    // ---- ensure (rules 6 to 11) ---------------------------------------------------------

    fn ensure(&mut self, now: Timestamp, thread: &str, waiter: Waiter) {
        if !self.policy.use_agent_identity {
            self.resolve(now, thread, waiter, Ok(None));
            return;
        }
        if let Some(ensure) = self.thread(thread).ensure.as_mut() {
            // Rule 8: one registration per thread; the others share its result.
            ensure.waiters.push(waiter);
            return;
        }
        self.adopt(now, thread);
        let current = self.current(now);
        if let Some(task) = self.thread(thread).cached.clone() {
            if current.as_deref() == Some(&task.agent_runtime_id) {
                // Rule 6.
                self.resolve(now, thread, waiter, Ok(Some(task)));
                return;
            }
            // Rule 7.
            self.thread(thread).cached = None;
            self.persist(thread, None);
        }
        if self.workspace.is_none() {
            self.resolve(now, thread, waiter, Ok(None));
            return;
        }
        self.thread(thread).ensure = Some(Ensure {
            waiters: vec![waiter],
            discards: 0,
            reacquired: false,
            rounds: 0,
            phase: Phase::AwaitingIdentity,
        });
        self.attempt(now, thread);
    }

    /// Rule 9: ensure the identity, then register the task.
    fn attempt(&mut self, now: Timestamp, thread: &str) {
        match self.usable(now).cloned() {
            Some(identity) => {
                self.out.push(Out::Send(Request::TaskBiscuit { thread: thread.to_owned() }));
                self.ensure_of(thread).phase = Phase::Biscuit(identity);
            }
            // **[ours]** No workspace: no identity can be had, so no task.
            None if self.workspace.is_none() => self.finish(now, thread, Ok(None)),
            None => {
                self.ensure_of(thread).phase = Phase::AwaitingIdentity;
                self.require_identity();
            }
        }
    }

    fn task_answer(&mut self, now: Timestamp, thread: &str, seen: Seen, request: u64) {
        let phase = std::mem::replace(&mut self.ensure_of(thread).phase, Phase::AwaitingIdentity);
        match (phase, seen) {
            (Phase::Biscuit(identity), Seen::Biscuit) => {
                let agent_runtime_id = identity.agent_runtime_id.clone();
                let register =
                    Request::TaskRegister { thread: thread.to_owned(), agent_runtime_id };
                self.out.push(Out::Send(register));
                self.ensure_of(thread).phase = Phase::Register(identity);
            }
            (Phase::Register(used), Seen::Task { task_id }) => {
                let task = Task {
                    agent_runtime_id: used.agent_runtime_id.clone(),
                    task_id,
                    registered_at: rfc3339_secs(now),
                    origin: Origin::Registered { request },
                };
                self.registered(now, thread, &used, task);
            }
            (Phase::Register(used), Seen::Refused { identity_expired: true, .. }) => {
                self.refused(now, thread, &used);
            }
            _ => self.finish(now, thread, Err(())),
        }
    }

    fn registered(&mut self, now: Timestamp, thread: &str, used: &Ident, task: Task) {
        if self.current(now).as_deref() != Some(&used.agent_runtime_id) {
            // Rule 9: the identity changed in flight: discard, try again, at most twice.
            let ensure = self.ensure_of(thread);
            ensure.discards += 1;
            if ensure.discards >= TASK_ATTEMPTS_MAX || self.workspace.is_none() {
                self.finish(now, thread, Ok(None));
            } else {
                self.attempt(now, thread);
            }
            return;
        }
        // Rule 10.
        self.thread(thread).cached = Some(task.clone());
        self.persist(thread, Some(task.clone()));
        self.finish(now, thread, Ok(Some(task)));
    }

    /// Rules 18 and 19: a 401 `identity_expired` to a task registration.
    fn refused(&mut self, now: Timestamp, thread: &str, used: &Ident) {
        let reacquire = self.policy.reacquire;
        let ensure = self.ensure_of(thread);
        if !reacquire || ensure.reacquired {
            self.finish(now, thread, Err(()));
            return;
        }
        ensure.reacquired = true;
        self.drop_identity(&used.agent_runtime_id);
        self.attempt(now, thread);
    }

    fn finish(&mut self, now: Timestamp, thread: &str, outcome: Outcome) {
        let for_a_turn = self
            .threads
            .get(thread)
            .and_then(|t| t.ensure.as_ref())
            .is_some_and(|e| e.waiters.iter().any(|w| matches!(w, Waiter::Turn(_))));
        if outcome.is_err() && for_a_turn {
            // Spec section 4: "agent task registration failed", the turn path's line; a prewarm
            // alone logs only its own.
            let failure = Failure::TaskRegistration;
            self.out.push(Out::FailureLog { thread: Some(thread.to_owned()), failure });
        }
        let ensure = self.thread(thread).ensure.take().expect("an ensure to finish");
        for waiter in ensure.waiters {
            self.resolve(now, thread, waiter, outcome.clone());
        }
    }

    fn resolve(&mut self, now: Timestamp, thread: &str, waiter: Waiter, outcome: Outcome) {
        match (waiter, outcome) {
            // Rules 5 and 10: a prewarm's outcome is at most a log line.
            (Waiter::Prewarm, Ok(_)) => {}
            (Waiter::Prewarm, Err(())) => {
                let failure = Failure::Prewarm;
                self.out.push(Out::FailureLog { thread: Some(thread.to_owned()), failure });
            }
            (Waiter::Turn(turn), Ok(task)) => self.send_model_request(now, thread, turn, task),
            (Waiter::Turn(turn), Err(())) => {
                // Rule 11.
                let failure = Failure::TaskRegistration;
                self.emit(thread, Ev::Error { turn: Some(turn), failure });
                self.end_turn(now, thread, turn);
            }
        }
    }

    /// Rule 10: append `session_state` only when the value changed (and rule 20).
    fn persist(&mut self, thread: &str, value: Option<Task>) {
        if !self.policy.persist_task {
            return;
        }
        let t = self.thread(thread);
        if t.persisted.clone().flatten() == value {
            return;
        }
        t.persisted = Some(value.clone());
        let line = Line::State(value.map(|t| (t.agent_runtime_id, t.task_id, t.registered_at)));
        self.out.push(Out::Append { thread: thread.to_owned(), line });
    }

    /// Rule 13 **\[ours\]**: a persisted task dropped because no identity was current is adopted
    /// once its identity is current again and the rollout still ends with it.
    fn adopt(&mut self, now: Timestamp, thread: &str) {
        let current = self.current(now);
        let t = self.thread(thread);
        if let Some(Some(task)) = &t.persisted {
            if t.cached.is_none() && current.as_deref() == Some(&task.agent_runtime_id) {
                t.cached = Some(task.clone());
            }
        }
    }

    fn adopt_everywhere(&mut self, now: Timestamp) {
        let threads: Vec<String> = self.threads.keys().cloned().collect();
        for thread in &threads {
            self.adopt(now, thread);
        }
    }

    // ---- turns --------------------------------------------------------------------------

    fn begin_turn(&mut self, now: Timestamp, thread: &str, turn: u32) {
        for line in [Line::TurnContext, Line::UserMessage, Line::UserItem] {
            self.out.push(Out::Append { thread: thread.to_owned(), line });
        }
        self.emit(thread, Ev::TaskStarted(turn));
        self.emit(thread, Ev::UserMessage(turn));
        self.thread(thread).turn = Some(turn);
        self.ensure(now, thread, Waiter::Turn(turn));
    }

    /// Spec section 2.4: the assertion only for a task of the current identity.
    fn send_model_request(&mut self, now: Timestamp, thread: &str, turn: u32, task: Option<Task>) {
        let current = self.current(now);
        let assertion = task
            .filter(|task| current.as_deref() == Some(&task.agent_runtime_id))
            .map(|task| (task.agent_runtime_id, task.task_id));
        let runtime = assertion.as_ref().map(|(runtime, _)| runtime.clone());
        self.model_requests.insert(thread.to_owned(), (turn, runtime));
        self.out.push(Out::Send(Request::Model { thread: thread.to_owned(), turn, assertion }));
    }

    fn model_done(&mut self, now: Timestamp, thread: &str, seen: Seen) {
        let Some((turn, runtime)) = self.model_requests.remove(thread) else { return };
        match seen {
            Seen::Completed => {
                self.append(thread, Line::AssistantItem);
                self.append(thread, Line::TokenCount);
            }
            Seen::Refused { status, identity_expired } => {
                // Rule 18: the refusal drops the identity it refused, if it is still the slot's.
                if let (true, true, Some(runtime)) =
                    (identity_expired, self.policy.reacquire, runtime)
                {
                    self.drop_identity(&runtime);
                }
                let failure = Failure::ModelRequest { status: Some(status) };
                self.emit(thread, Ev::Error { turn: Some(turn), failure });
            }
            _ => {
                let failure = Failure::ModelRequest { status: None };
                self.emit(thread, Ev::Error { turn: Some(turn), failure });
            }
        }
        self.end_turn(now, thread, turn);
    }

    fn end_turn(&mut self, now: Timestamp, thread: &str, turn: u32) {
        self.emit(thread, Ev::TurnComplete(turn));
        let t = self.thread(thread);
        t.turn = None;
        if let Some(next) = t.queued.pop_front() {
            self.begin_turn(now, thread, next);
        }
    }

    // ---- the identity slot (rules 3, 4, 12, 17 to 19) ------------------------------------

    /// The slot's identity when it may be used now.
    fn usable(&self, now: Timestamp) -> Option<&Ident> {
        let workspace = self.workspace.as_ref().filter(|_| self.policy.use_agent_identity)?;
        let identity = self.identity.as_ref()?;
        let expired = self.policy.reacquire && identity.expires_at.is_some_and(|at| now >= at);
        (identity.workspace.same_as(workspace) && !expired).then_some(identity)
    }

    fn current(&self, now: Timestamp) -> Option<String> {
        self.usable(now).map(|i| i.agent_runtime_id.clone())
    }

    /// Rule 12: one identity registration per process.
    fn require_identity(&mut self) {
        if self.registering.is_some() {
            return;
        }
        let Some(workspace) = self.workspace.clone() else { return };
        self.out.push(Out::Send(Request::IdentityBiscuit));
        self.registering = Some((workspace, false));
    }

    fn identity_biscuit_done(&mut self, now: Timestamp, seen: Seen) {
        if seen == Seen::Biscuit {
            self.out.push(Out::Send(Request::IdentityRegister));
            self.registering.as_mut().expect("registering").1 = true;
        } else {
            self.identity_done(now, Err(()));
        }
    }

    fn identity_register_done(&mut self, now: Timestamp, seen: Seen) {
        let workspace = self.registering.as_ref().expect("registering").0.clone();
        let result = match seen {
            Seen::Identity { agent_runtime_id, expires_at } => {
                Ok(Ident { agent_runtime_id, workspace, expires_at })
            }
            _ => Err(()),
        };
        self.identity_done(now, result);
    }

    fn identity_done(&mut self, now: Timestamp, result: Result<Ident, ()>) {
        let (workspace, _) = self.registering.take().expect("registering");
        let signed_in_there = self.workspace.as_ref().is_some_and(|w| w.same_as(&workspace));
        let result = match result {
            Ok(_) if !signed_in_there => {
                // **[ours]** Registered for a workspace that is no longer signed in.
                if self.usable(now).is_some() {
                    Ok(true)
                } else if self.workspace.is_some() {
                    self.require_identity();
                    return;
                } else {
                    Ok(false)
                }
            }
            Ok(identity) => {
                self.out.push(Out::StoreIdentity(identity.agent_runtime_id.clone()));
                self.identity = Some(identity);
                Ok(true)
            }
            Err(()) => {
                let failure = Failure::IdentityRegistration;
                self.out.push(Out::FailureLog { thread: None, failure });
                Err(())
            }
        };
        let waiting: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, t)| {
                matches!(t.ensure.as_ref().map(|e| &e.phase), Some(Phase::AwaitingIdentity))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for thread in &waiting {
            match result {
                Ok(false) => self.finish(now, thread, Ok(None)),
                Err(()) => self.finish(now, thread, Err(())),
                Ok(true) if self.usable(now).is_some() => self.attempt(now, thread),
                Ok(true) => {
                    // **[ours]** Already expired on arrival: once more, then fail.
                    let ensure = self.ensure_of(thread);
                    ensure.rounds += 1;
                    if ensure.rounds >= IDENTITY_ROUNDS_MAX {
                        self.finish(now, thread, Err(()));
                    } else {
                        self.attempt(now, thread);
                    }
                }
            }
        }
        match result {
            Ok(true) if self.usable(now).is_some() => self.prewarm_waiters(now),
            Ok(false) => {}
            Ok(true) if self.startup_waiters.is_empty() => {}
            _ => {
                // Rule 4: one error on each thread whose start waited for this identity.
                for thread in std::mem::take(&mut self.startup_waiters) {
                    let failure = Failure::IdentityRegistration;
                    self.emit(&thread, Ev::Error { turn: None, failure });
                }
            }
        }
    }

    fn drop_identity(&mut self, agent_runtime_id: &str) {
        if self.identity.as_ref().is_some_and(|i| i.agent_runtime_id == agent_runtime_id) {
            self.identity = None;
            self.out.push(Out::DeleteIdentity);
        }
    }

    // ---- plumbing -----------------------------------------------------------------------

    fn append(&mut self, thread: &str, line: Line) {
        self.out.push(Out::Append { thread: thread.to_owned(), line });
    }

    fn emit(&mut self, thread: &str, event: Ev) {
        self.out.push(Out::Emit { thread: thread.to_owned(), event });
    }

    fn thread(&mut self, thread: &str) -> &mut Thread {
        if !self.touched.contains(thread) {
            self.touched.insert(thread.to_owned());
        }
        self.threads.get_mut(thread).expect("the model knows every thread core runs")
    }

    fn ensure_of(&mut self, thread: &str) -> &mut Ensure {
        self.thread(thread).ensure.as_mut().expect("an ensure in flight")
    }
}
