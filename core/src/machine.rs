//! The lifecycle state machine: one process, many threads, one identity slot.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};

use crate::config::{Auth, Binding, Config, ExpiryPolicy, StoredIdentity};
use crate::limits::{
    IDENTITY_ROUNDS_MAX, REACQUIRE_RETRIES_MAX, REQUEST_TIMEOUT_MS, TASK_ATTEMPTS_MAX,
};
use crate::marks;
use crate::output::{
    Command, Event, EventKind, Failure, Level, LogLine, RequestId, ThreadId, TurnId,
};
use crate::protocol::{self, IdentityError, TaskError};
use crate::rollout::{self, AgentTask, RolloutItem, RolloutLine, RolloutScan};
use crate::time::Timestamp;
use crate::wire::{HttpRequest, HttpResponse, IdentityKey};

/// Why a request produced no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFailure {
    /// No response within the timeout the [`Command::Send`] named.
    Timeout,
    /// The connection failed (reset, refused).
    Connection,
}

/// What an in-flight request is for, as [`Lifecycle::in_flight`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InFlight {
    /// The biscuit of the process's identity registration.
    IdentityBiscuit,
    /// The process's identity registration.
    IdentityRegister,
    /// The biscuit of a thread's task registration, for the ensure numbered `ensure`.
    TaskBiscuit { thread: ThreadId, ensure: u64 },
    /// A thread's task registration, for the ensure numbered `ensure`.
    TaskRegister { thread: ThreadId, ensure: u64 },
    /// A turn's model request.
    Model(ThreadId, TurnId),
}

/// The agent identity and per-thread agent task lifecycle of one process.
///
/// The machine performs no IO and reads no clock. Its methods come in four kinds, called in this
/// order by a driver loop:
///
/// 1. getters (`config`, `identity`, `cached_task`, `in_flight`, ...) that change nothing;
/// 2. `handle_*` methods for what happened (a response arrived, a request failed, auth changed,
///    the auth store was replaced);
/// 3. verbs for what the user wants (`start_thread`, `resume_thread`, `fork_thread`,
///    `submit_turn`);
/// 4. [`Lifecycle::poll_command`], drained after every call of kind 2 or 3: the commands the
///    driver must carry out, in order.
///
/// Every input carries `now`; randomness (identity key seeds, request ids) comes from the seed
/// given to [`Lifecycle::new`].
#[derive(Debug)]
pub struct Lifecycle {
    config: Config,
    auth: Auth,
    rng: ChaCha20Rng,
    identity: Option<Identity>,
    identity_op: Option<IdentityOp>,
    /// Threads whose session start waits for an identity before it can prewarm.
    startup_waiters: BTreeSet<ThreadId>,
    threads: BTreeMap<ThreadId, Thread>,
    /// Threads whose state changed since [`Lifecycle::take_touched`] last ran: every change goes
    /// through `add_thread` or `thread_mut`, which record it.
    touched: BTreeSet<ThreadId>,
    pending: BTreeMap<RequestId, Pending>,
    next_request: u64,
    next_ensure: u64,
    out: VecDeque<Command>,
}

#[derive(Clone, Debug)]
struct Identity {
    stored: StoredIdentity,
    key: IdentityKey,
}

#[derive(Debug)]
struct IdentityOp {
    binding: Binding,
    key: IdentityKey,
    /// The registration URL the biscuit authorizes.
    url: String,
    /// Set once the biscuit arrived and registration was sent.
    registering: bool,
}

#[derive(Debug, Default)]
struct Thread {
    cached: Option<AgentTask>,
    /// The last `session_state` value of the rollout as far as this process knows; `None` when
    /// the rollout has none.
    persisted: Option<Option<AgentTask>>,
    ensure: Option<EnsureOp>,
    turn: Option<ActiveTurn>,
    queued: VecDeque<(TurnId, String)>,
}

#[derive(Debug)]
struct EnsureOp {
    /// Numbers the process's ensures, so a driver can count registrations per ensure.
    seq: u64,
    waiters: Vec<Waiter>,
    /// New tasks discarded because the identity changed in flight (rule 9).
    discards: u8,
    /// Extra attempts used after a 401 `identity_expired` (rule 18), at most
    /// [`REACQUIRE_RETRIES_MAX`].
    reacquires: u8,
    /// Identities received for this ensure; bounds the loop when they keep arriving unusable.
    identity_rounds: u8,
    phase: EnsurePhase,
}

#[derive(Debug)]
enum EnsurePhase {
    AwaitingIdentity,
    Biscuit { identity: Identity, url: String },
    Register { identity: Identity, url: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    Prewarm,
    Turn(TurnId),
}

#[derive(Debug)]
struct ActiveTurn {
    id: TurnId,
    text: String,
}

#[derive(Debug)]
enum Pending {
    IdentityBiscuit,
    IdentityRegister,
    TaskBiscuit(ThreadId),
    TaskRegister(ThreadId),
    Model { thread: ThreadId, turn: TurnId, url: String, runtime: Option<String> },
}

impl Lifecycle {
    /// A process starting with this config, auth, and the auth store's identity (if any).
    /// `seed` is the only source of randomness the machine will ever use.
    pub fn new(
        config: Config,
        auth: Auth,
        stored: Option<StoredIdentity>,
        seed: [u8; 32],
    ) -> Lifecycle {
        let mut machine = Lifecycle {
            config,
            auth,
            rng: ChaCha20Rng::from_seed(seed),
            identity: None,
            identity_op: None,
            startup_waiters: BTreeSet::new(),
            threads: BTreeMap::new(),
            touched: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_request: 1,
            next_ensure: 1,
            out: VecDeque::new(),
        };
        machine.identity = stored.and_then(|s| machine.load_identity(s));
        machine
    }

    // ---- getters -------------------------------------------------------------------------

    /// The process's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current auth.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The identity in the slot, usable or not.
    pub fn identity(&self) -> Option<&StoredIdentity> {
        self.identity.as_ref().map(|i| &i.stored)
    }

    /// The runtime id of the identity that is usable at `now`: the slot's identity when the flag
    /// is on, the workspace matches, and (under `reacquire`) it has not expired.
    pub fn current_runtime(&self, now: Timestamp) -> Option<&str> {
        self.usable_identity(now).map(|i| i.stored.agent_runtime_id.as_str())
    }

    /// The thread's cached task.
    pub fn cached_task(&self, thread: &ThreadId) -> Option<&AgentTask> {
        self.threads.get(thread).and_then(|t| t.cached.as_ref())
    }

    /// Whether the thread exists in this process.
    pub fn has_thread(&self, thread: &ThreadId) -> bool {
        self.threads.contains_key(thread)
    }

    /// Threads of this process, in name order.
    pub fn threads(&self) -> impl Iterator<Item = &ThreadId> {
        self.threads.keys()
    }

    /// Whether the thread has a turn running or queued.
    pub fn is_turn_active(&self, thread: &ThreadId) -> bool {
        self.threads.get(thread).is_some_and(|t| t.turn.is_some() || !t.queued.is_empty())
    }

    /// How many threads this process runs.
    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// The threads whose state (cached task, ensure, turns) changed since the last call, in name
    /// order. An index for a driver or checker that mirrors the threads: it looks at these
    /// instead of scanning every thread after every input. At most one entry per thread.
    pub fn take_touched(&mut self) -> BTreeSet<ThreadId> {
        std::mem::take(&mut self.touched)
    }

    /// How many requests are in flight.
    pub fn in_flight_count(&self) -> usize {
        self.pending.len()
    }

    /// Requests sent and not yet answered, in send order.
    pub fn in_flight(&self) -> Vec<(RequestId, InFlight)> {
        self.pending.iter().map(|(id, p)| (*id, self.describe(p))).collect()
    }

    /// What request `id` is for, while it is in flight.
    pub fn in_flight_request(&self, id: RequestId) -> Option<InFlight> {
        self.pending.get(&id).map(|p| self.describe(p))
    }

    fn describe(&self, pending: &Pending) -> InFlight {
        match pending {
            Pending::IdentityBiscuit => InFlight::IdentityBiscuit,
            Pending::IdentityRegister => InFlight::IdentityRegister,
            Pending::TaskBiscuit(t) => {
                InFlight::TaskBiscuit { thread: t.clone(), ensure: self.ensure_seq(t) }
            }
            Pending::TaskRegister(t) => {
                InFlight::TaskRegister { thread: t.clone(), ensure: self.ensure_seq(t) }
            }
            Pending::Model { thread, turn, .. } => InFlight::Model(thread.clone(), *turn),
        }
    }

    fn ensure_seq(&self, thread: &ThreadId) -> u64 {
        self.threads.get(thread).and_then(|t| t.ensure.as_ref()).map_or(0, |op| op.seq)
    }

    /// The next command for the driver, in order. Drain it after every input.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    // ---- verbs ---------------------------------------------------------------------------

    /// A new thread starts (rules 1 and 3 to 5).
    pub fn start_thread(&mut self, now: Timestamp, thread: ThreadId) {
        self.add_thread(&thread);
        self.session_start(now, &thread);
    }

    /// A thread resumes from its rollout: restore or drop the persisted task (rules 2 and 13 to
    /// 15), then start the session. Returns what the scan of the rollout found.
    pub fn resume_thread(
        &mut self,
        now: Timestamp,
        thread: ThreadId,
        rollout: &[u8],
    ) -> RolloutScan {
        self.add_thread(&thread);
        let scan = rollout::scan(rollout);
        if self.config.use_agent_identity {
            if cfg!(feature = "planted-bug-prewarm-before-restore") {
                // Planted bug (off by default): prewarm runs before the restore, against rule 2.
                self.session_start(now, &thread);
                self.restore(now, &thread, &scan);
            } else {
                self.restore(now, &thread, &scan);
                self.session_start(now, &thread);
            }
        }
        scan
    }

    /// A thread forks from a parent whose rollout the driver has copied into the child's (rule 16).
    pub fn fork_thread(
        &mut self,
        now: Timestamp,
        thread: ThreadId,
        copied_rollout: &[u8],
    ) -> RolloutScan {
        self.add_thread(&thread);
        let scan = rollout::scan(copied_rollout);
        if self.config.use_agent_identity {
            if self.config.persist_task {
                let last = scan.last_state.as_ref().map(|s| s.task.clone());
                let had_task = matches!(last, Some(Some(_)));
                self.thread_mut(&thread).persisted = last;
                if had_task {
                    self.mark(marks::FORK_CLEARED_PARENT_TASK);
                    self.persist(now, &thread, None);
                }
            }
            self.session_start(now, &thread);
        }
        scan
    }

    /// The user submits a turn. It runs after the thread's earlier turns.
    pub fn submit_turn(&mut self, now: Timestamp, thread: &ThreadId, turn: TurnId, text: &str) {
        let t = self.thread_mut(thread);
        if t.turn.is_some() {
            t.queued.push_back((turn, text.to_owned()));
            return;
        }
        self.begin_turn(now, thread, turn, text.to_owned());
    }

    // ---- handle_* ------------------------------------------------------------------------

    /// A response to request `id` arrived.
    pub fn handle_response(&mut self, now: Timestamp, id: RequestId, response: HttpResponse) {
        let Some(pending) = self.pending.remove(&id) else {
            self.mark(marks::STALE_RESPONSE_IGNORED);
            self.log(
                Level::Debug,
                "ignoring a response nobody waits for",
                vec![("request", id.to_string())],
            );
            return;
        };
        self.dispatch(now, pending, Ok(response));
    }

    /// Request `id` produced no response.
    pub fn handle_request_failed(
        &mut self,
        now: Timestamp,
        id: RequestId,
        failure: RequestFailure,
    ) {
        let Some(pending) = self.pending.remove(&id) else {
            self.mark(marks::STALE_RESPONSE_IGNORED);
            return;
        };
        self.dispatch(now, pending, Err(failure));
    }

    /// The user's auth changed: sign-in, workspace switch, API key, sign-out.
    pub fn handle_auth_changed(&mut self, now: Timestamp, auth: Auth) {
        self.log(Level::Info, "auth changed", vec![("auth", auth.describe())]);
        self.auth = auth;
        if !self.config.use_agent_identity {
            return;
        }
        self.adopt_persisted_everywhere(now);
        if self.startup_waiters.is_empty() {
            return;
        }
        // Rule 3: threads that started without a usable identity try again now.
        if self.usable_identity(now).is_some() {
            self.prewarm_startup_waiters(now);
        } else if self.auth.binding().is_some() {
            if self.identity_op.is_none() {
                self.mark(marks::LATE_SIGN_IN_REGISTERED);
            }
            self.require_identity(now);
        }
    }

    /// The auth store's identity was replaced from outside this process (another process
    /// registered a new one, or removed it).
    pub fn handle_identity_store_changed(
        &mut self,
        now: Timestamp,
        stored: Option<StoredIdentity>,
    ) {
        self.mark(marks::IDENTITY_REPLACED_EXTERNALLY);
        self.identity = stored.and_then(|s| self.load_identity(s));
        let runtime =
            self.identity.as_ref().map_or("none".to_owned(), |i| i.stored.agent_runtime_id.clone());
        self.log(
            Level::Info,
            "agent identity replaced in the auth store",
            vec![("agent_runtime_id", runtime)],
        );
        if self.config.use_agent_identity && self.usable_identity(now).is_some() {
            self.adopt_persisted_everywhere(now);
            self.prewarm_startup_waiters(now);
        }
    }

    // ---- session start and resume ----------------------------------------------------------

    fn add_thread(&mut self, thread: &ThreadId) {
        assert!(
            !self.threads.contains_key(thread),
            "thread {thread} already exists in this process"
        );
        self.threads.insert(thread.clone(), Thread::default());
        self.touched.insert(thread.clone());
    }

    fn session_start(&mut self, now: Timestamp, thread: &ThreadId) {
        if !self.config.use_agent_identity {
            return;
        }
        if self.usable_identity(now).is_some() {
            self.ensure(now, thread, Waiter::Prewarm);
            return;
        }
        self.startup_waiters.insert(thread.clone());
        if self.auth.binding().is_some() {
            self.require_identity(now);
        }
    }

    fn restore(&mut self, now: Timestamp, thread: &ThreadId, scan: &RolloutScan) {
        for skipped in &scan.skipped {
            self.mark(marks::RESUME_SKIPPED_DAMAGED_LINE);
            self.log(
                Level::Warn,
                "skipping damaged rollout line",
                vec![
                    ("thread", thread.to_string()),
                    ("line", skipped.line.to_string()),
                    ("reason", skipped.reason.clone()),
                ],
            );
        }
        let Some(last) = &scan.last_state else {
            self.mark(marks::PERSISTED_STATE_ABSENT);
            return;
        };
        if !self.config.persist_task {
            if last.task.is_some() {
                self.mark(marks::PERSIST_OFF_IGNORED_TASK);
                self.log(
                    Level::Debug,
                    "ignoring persisted agent task because persist_task is off",
                    vec![("thread", thread.to_string())],
                );
            }
            return;
        }
        self.thread_mut(thread).persisted = Some(last.task.clone());
        let Some(task) = &last.task else {
            self.mark(marks::PERSISTED_NULL);
            return;
        };
        // Planted bug (off by default): restore without the runtime check, against rule 13.
        let skip_check = cfg!(feature = "planted-bug-restore-without-runtime-check");
        if skip_check || self.current_runtime(now) == Some(task.agent_runtime_id.as_str()) {
            self.mark(marks::PERSISTED_TASK_RESTORED);
            self.log(Level::Info, "restored persisted agent task", task_fields(thread, task));
            self.thread_mut(thread).cached = Some(task.clone());
        } else {
            self.mark(marks::PERSISTED_TASK_DROPPED_STALE);
            self.log(
                Level::Debug,
                "discarding persisted agent task because it does not match the registered agent identity",
                task_fields(thread, task),
            );
        }
    }

    fn prewarm_startup_waiters(&mut self, now: Timestamp) {
        for thread in std::mem::take(&mut self.startup_waiters) {
            self.ensure(now, &thread, Waiter::Prewarm);
        }
    }

    // ---- ensure --------------------------------------------------------------------------

    fn ensure(&mut self, now: Timestamp, thread: &ThreadId, waiter: Waiter) {
        if !self.config.use_agent_identity {
            self.resolve_waiter(now, thread, waiter, Ok(None));
            return;
        }
        if let Some(op) = self.thread_mut(thread).ensure.as_mut() {
            op.waiters.push(waiter);
            self.mark(marks::TASK_SINGLE_FLIGHT_JOINED);
            return;
        }
        self.adopt_persisted_if_current(now, thread);
        let current = self.current_runtime(now).map(str::to_owned);
        if let Some(task) = self.thread_mut(thread).cached.clone() {
            if current.as_deref() == Some(task.agent_runtime_id.as_str()) {
                self.mark(marks::CACHED_TASK_REUSED);
                self.log(Level::Debug, "reusing cached agent task", task_fields(thread, &task));
                self.resolve_waiter(now, thread, waiter, Ok(Some(task)));
                return;
            }
            self.clear_cached(now, thread, &task);
        }
        if self.auth.binding().is_none() {
            self.resolve_waiter(now, thread, waiter, Ok(None));
            return;
        }
        let seq = self.next_ensure;
        self.next_ensure += 1;
        self.thread_mut(thread).ensure = Some(EnsureOp {
            seq,
            waiters: vec![waiter],
            discards: 0,
            reacquires: 0,
            identity_rounds: 0,
            phase: EnsurePhase::AwaitingIdentity,
        });
        self.start_attempt(now, thread);
    }

    /// Rule 7: clear the cache only if it still holds `task`, and persist the clear.
    fn clear_cached(&mut self, now: Timestamp, thread: &ThreadId, task: &AgentTask) {
        if self.thread_mut(thread).cached.as_ref() != Some(task) {
            return;
        }
        self.thread_mut(thread).cached = None;
        self.mark(marks::STALE_TASK_CLEARED);
        self.log(
            Level::Info,
            "discarding cached agent task because the registered agent identity changed",
            task_fields(thread, task),
        );
        self.persist(now, thread, None);
    }

    /// Rule 13 applied when it matters: a persisted task that resume dropped because no identity
    /// was usable then (signed out, API key, another workspace) is restored, with no I/O, once the
    /// identity it was registered under is current again. Otherwise the rollout would end with a
    /// current task the thread does not hold (invariant 13) and a new one would be registered.
    fn adopt_persisted_if_current(&mut self, now: Timestamp, thread: &ThreadId) {
        let t = self.thread_mut(thread);
        let Some(Some(task)) = t.persisted.clone() else { return };
        if t.cached.is_some() || self.current_runtime(now) != Some(task.agent_runtime_id.as_str()) {
            return;
        }
        self.thread_mut(thread).cached = Some(task.clone());
        self.mark(marks::PERSISTED_TASK_ADOPTED_LATER);
        self.log(
            Level::Info,
            "restored persisted agent task now that its identity is current",
            task_fields(thread, &task),
        );
    }

    fn adopt_persisted_everywhere(&mut self, now: Timestamp) {
        let threads: Vec<ThreadId> = self.threads.keys().cloned().collect();
        for thread in &threads {
            self.adopt_persisted_if_current(now, thread);
        }
    }

    fn start_attempt(&mut self, now: Timestamp, thread: &ThreadId) {
        match self.usable_identity(now).cloned() {
            Some(identity) => {
                let url =
                    protocol::task_register_url(&self.config, &identity.stored.agent_runtime_id);
                self.send_biscuit(Pending::TaskBiscuit(thread.clone()), &url);
                self.op_mut(thread).phase = EnsurePhase::Biscuit { identity, url };
            }
            None if self.auth.binding().is_none() => {
                // Signed out while this ensure ran (a 401 `identity_expired` dropped the identity
                // after a sign-out): no identity can be had, so no task, as when the ensure
                // starts signed out. Waiting would never end: nothing registers without a binding.
                self.finish_ensure(now, thread, Ok(None));
            }
            None => {
                self.op_mut(thread).phase = EnsurePhase::AwaitingIdentity;
                self.require_identity(now);
            }
        }
    }

    fn task_biscuit_done(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let EnsurePhase::Biscuit { identity, url } =
            std::mem::replace(&mut self.op_mut(thread).phase, EnsurePhase::AwaitingIdentity)
        else {
            unreachable!("a task biscuit is only awaited in the biscuit phase");
        };
        let biscuit = self.read_biscuit(result);
        match biscuit {
            Ok(biscuit) => {
                let request = protocol::task_register_request(
                    &self.config,
                    &identity.stored,
                    &identity.key,
                    &biscuit,
                    now,
                );
                self.send(Pending::TaskRegister(thread.clone()), request);
                self.op_mut(thread).phase = EnsurePhase::Register { identity, url };
            }
            Err(e) => self.fail_ensure(now, thread, TaskError::Biscuit(e)),
        }
    }

    fn task_register_done(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let EnsurePhase::Register { identity, url } =
            std::mem::replace(&mut self.op_mut(thread).phase, EnsurePhase::AwaitingIdentity)
        else {
            unreachable!("a task registration is only awaited in the register phase");
        };
        let task = match result {
            Ok(response) => {
                protocol::read_task(&url, &response, &identity.stored, &identity.key, now)
            }
            Err(_) => Err(TaskError::Send { url }),
        };
        match task {
            Ok(task) => self.task_registered(now, thread, &identity, task),
            Err(e) if e.is_identity_expired() => self.identity_refused(now, thread, &identity, e),
            Err(e) => self.fail_ensure(now, thread, e),
        }
    }

    fn task_registered(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        used: &Identity,
        task: AgentTask,
    ) {
        if self.current_runtime(now) != Some(used.stored.agent_runtime_id.as_str()) {
            // Rule 9: the identity changed while the request was in flight.
            self.mark(marks::ROTATION_DISCARDED_NEW_TASK);
            self.log(Level::Info, "discarding newly registered agent task because the registered agent identity changed", task_fields(thread, &task));
            let op = self.op_mut(thread);
            op.discards += 1;
            if op.discards >= TASK_ATTEMPTS_MAX {
                self.mark(marks::ROTATION_GAVE_UP);
                self.finish_ensure(now, thread, Ok(None));
            } else if self.auth.binding().is_none() {
                self.finish_ensure(now, thread, Ok(None));
            } else {
                self.start_attempt(now, thread);
            }
            return;
        }
        self.mark(marks::TASK_REGISTERED);
        self.log(Level::Info, "registered agent task for thread", task_fields(thread, &task));
        self.thread_mut(thread).cached = Some(task.clone());
        self.persist(now, thread, Some(task.clone()));
        self.finish_ensure(now, thread, Ok(Some(task)));
    }

    /// Rules 18 and 19: the backend answered 401 `identity_expired` to a task registration.
    fn identity_refused(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        used: &Identity,
        error: TaskError,
    ) {
        let as_shipped = self.config.expiry == ExpiryPolicy::AsShipped;
        let op = self.op_mut(thread);
        if as_shipped || op.reacquires >= REACQUIRE_RETRIES_MAX {
            if self.config.expiry == ExpiryPolicy::AsShipped {
                self.mark(marks::AS_SHIPPED_REFUSAL_KEPT_IDENTITY);
            }
            self.fail_ensure(now, thread, error);
            return;
        }
        op.reacquires += 1;
        self.mark(marks::REFUSED_IDENTITY_REACQUIRED);
        self.log(
            Level::Warn,
            "agent identity refused as expired; registering a new one",
            vec![
                ("thread", thread.to_string()),
                ("agent_runtime_id", used.stored.agent_runtime_id.clone()),
            ],
        );
        self.drop_identity_if_current(&used.stored.agent_runtime_id);
        self.start_attempt(now, thread);
    }

    fn drop_identity_if_current(&mut self, runtime: &str) {
        if self.identity.as_ref().is_some_and(|i| i.stored.agent_runtime_id == runtime) {
            self.identity = None;
            self.out.push_back(Command::DeleteIdentity);
        }
    }

    fn fail_ensure(&mut self, now: Timestamp, thread: &ThreadId, error: TaskError) {
        self.log_failure(
            Failure::TaskRegistration,
            "agent task registration failed",
            vec![("thread", thread.to_string()), ("error", error.to_string())],
        );
        self.finish_ensure(now, thread, Err(error));
    }

    fn finish_ensure(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        result: Result<Option<AgentTask>, TaskError>,
    ) {
        let op = self.thread_mut(thread).ensure.take().expect("an ensure in flight");
        for waiter in op.waiters {
            self.resolve_waiter(now, thread, waiter, result.clone());
        }
    }

    fn resolve_waiter(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        waiter: Waiter,
        result: Result<Option<AgentTask>, TaskError>,
    ) {
        match (waiter, result) {
            (Waiter::Prewarm, Ok(_)) => {}
            (Waiter::Prewarm, Err(error)) => {
                self.mark(marks::PREWARM_FAILED);
                self.log_failure(
                    Failure::Prewarm,
                    "startup agent task prewarm failed; regular turns will retry registration",
                    vec![("thread", thread.to_string()), ("error", error.to_string())],
                );
            }
            (Waiter::Turn(turn), Ok(task)) => self.send_model_request(now, thread, turn, task),
            (Waiter::Turn(turn), Err(error)) => {
                self.mark(marks::TURN_ENSURE_FAILED);
                let message = format!(
                    "Agent task registration failed. Please try again; Codex will attempt to register the task again on the next turn: {error}"
                );
                let failure = Failure::TaskRegistration;
                self.emit(thread, EventKind::Error { turn: Some(turn), failure, message });
                self.end_turn(now, thread, turn);
            }
        }
    }

    /// Rule 10: append `session_state` only when the value changed.
    fn persist(&mut self, now: Timestamp, thread: &ThreadId, value: Option<AgentTask>) {
        if !self.config.persist_task {
            return;
        }
        let t = self.thread_mut(thread);
        if t.persisted.clone().flatten() == value {
            return;
        }
        t.persisted = Some(value.clone());
        self.out.push_back(Command::Append {
            thread: thread.clone(),
            line: RolloutLine { timestamp: now, item: RolloutItem::SessionState(value) },
        });
    }

    // ---- identity ------------------------------------------------------------------------

    fn usable_identity(&self, now: Timestamp) -> Option<&Identity> {
        if !self.config.use_agent_identity {
            return None;
        }
        let binding = self.auth.binding()?;
        let identity = self.identity.as_ref()?;
        if !identity.stored.binding.matches(binding) {
            return None;
        }
        if self.config.expiry == ExpiryPolicy::Reacquire
            && identity.stored.expires_at.is_some_and(|at| now >= at)
        {
            return None;
        }
        Some(identity)
    }

    /// Starts the process's identity registration, or joins the one in flight (rule 12).
    fn require_identity(&mut self, now: Timestamp) {
        if self.identity_op.is_some() {
            self.mark(marks::IDENTITY_SINGLE_FLIGHT_JOINED);
            return;
        }
        let Some(binding) = self.auth.binding().cloned() else { return };
        let expired = self.identity.as_ref().is_some_and(|i| {
            i.stored.binding.matches(&binding) && i.stored.expires_at.is_some_and(|at| now >= at)
        });
        if expired {
            self.mark(marks::EXPIRED_IDENTITY_REACQUIRED);
            self.log(Level::Info, "agent identity expired; registering a new one", vec![]);
        }
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let url = protocol::identity_register_url(&self.config);
        self.send_biscuit(Pending::IdentityBiscuit, &url);
        self.identity_op = Some(IdentityOp {
            binding,
            key: IdentityKey::from_seed(seed),
            url,
            registering: false,
        });
    }

    fn identity_biscuit_done(
        &mut self,
        now: Timestamp,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let biscuit = self.read_biscuit(result);
        let op = self.identity_op.as_mut().expect("an identity registration in flight");
        assert!(!op.registering);
        match biscuit {
            Ok(biscuit) => {
                op.registering = true;
                let request = protocol::identity_register_request(&self.config, &op.key, &biscuit);
                self.send(Pending::IdentityRegister, request);
            }
            Err(e) => self.identity_done(now, Err(IdentityError::Biscuit(e))),
        }
    }

    fn identity_register_done(
        &mut self,
        now: Timestamp,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        let op = self.identity_op.as_ref().expect("an identity registration in flight");
        assert!(op.registering);
        let identity = match result {
            Ok(response) => protocol::read_identity(&op.url, &response, &op.key, &op.binding, now)
                .map(|stored| Identity { stored, key: op.key.clone() }),
            Err(_) => Err(IdentityError::Send { url: op.url.clone() }),
        };
        self.identity_done(now, identity);
    }

    fn identity_done(&mut self, now: Timestamp, result: Result<Identity, IdentityError>) {
        let op = self.identity_op.take().expect("an identity registration in flight");
        let result = match result {
            Ok(identity) if !self.auth.binding().is_some_and(|b| b.matches(&op.binding)) => {
                // The workspace changed in flight: this identity belongs to nobody now.
                self.mark(marks::IDENTITY_RESULT_FOR_OLD_WORKSPACE);
                self.log(Level::Info, "discarding agent identity registered for a workspace that is no longer signed in", vec![("agent_runtime_id", identity.stored.agent_runtime_id)]);
                if self.usable_identity(now).is_some() {
                    // The user switched back to the workspace whose identity is in the slot:
                    // the waiting threads reuse it (rule 9) rather than replacing it.
                    Ok(())
                } else if self.auth.binding().is_some() {
                    self.require_identity(now);
                    return;
                } else {
                    Err(IdentityError::AuthChanged)
                }
            }
            Ok(identity) => {
                self.mark(marks::IDENTITY_REGISTERED);
                self.log(
                    Level::Info,
                    "registered agent identity",
                    vec![("agent_runtime_id", identity.stored.agent_runtime_id.clone())],
                );
                self.out.push_back(Command::StoreIdentity(identity.stored.clone()));
                self.identity = Some(identity);
                Ok(())
            }
            Err(e) => {
                self.log_failure(
                    Failure::IdentityRegistration,
                    "agent identity registration failed",
                    vec![("error", e.to_string())],
                );
                Err(e)
            }
        };
        let waiting: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, t)| {
                matches!(t.ensure.as_ref().map(|op| &op.phase), Some(EnsurePhase::AwaitingIdentity))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for thread in &waiting {
            match &result {
                Err(IdentityError::AuthChanged) => self.finish_ensure(now, thread, Ok(None)),
                Err(e) => self.fail_ensure(now, thread, TaskError::Identity(e.clone())),
                Ok(()) if self.usable_identity(now).is_some() => self.start_attempt(now, thread),
                Ok(()) => {
                    // An identity that is already expired when it arrives: do not loop on it.
                    let op = self.op_mut(thread);
                    op.identity_rounds += 1;
                    if op.identity_rounds >= IDENTITY_ROUNDS_MAX {
                        let url = protocol::identity_register_url(&self.config);
                        self.fail_ensure(
                            now,
                            thread,
                            TaskError::Identity(IdentityError::AlreadyExpired { url }),
                        );
                    } else {
                        self.start_attempt(now, thread);
                    }
                }
            }
        }
        match result {
            Ok(()) if self.usable_identity(now).is_some() => self.prewarm_startup_waiters(now),
            Err(IdentityError::AuthChanged) => {}
            Ok(()) if self.startup_waiters.is_empty() => {}
            result => {
                // An identity that arrived already expired is, for the session start, a failed
                // registration: say so rather than leave the start waiting silently.
                let e = result.err().unwrap_or_else(|| IdentityError::AlreadyExpired {
                    url: protocol::identity_register_url(&self.config),
                });
                // Rule 4: one error event on each thread whose start waited for this identity.
                for thread in std::mem::take(&mut self.startup_waiters) {
                    self.mark(marks::IDENTITY_FAILED_AT_START);
                    let message = format!("Agent identity registration failed while `features.use_agent_identity` is enabled: {e}");
                    let failure = Failure::IdentityRegistration;
                    self.emit(&thread, EventKind::Error { turn: None, failure, message });
                }
            }
        }
    }

    fn load_identity(&mut self, stored: StoredIdentity) -> Option<Identity> {
        match stored.key() {
            Ok(key) => Some(Identity { stored, key }),
            Err(e) => {
                self.log(
                    Level::Warn,
                    "ignoring stored agent identity",
                    vec![("error", e.to_string())],
                );
                None
            }
        }
    }

    // ---- turns ---------------------------------------------------------------------------

    fn begin_turn(&mut self, now: Timestamp, thread: &ThreadId, turn: TurnId, text: String) {
        self.append(
            now,
            thread,
            RolloutItem::EventMsg(
                serde_json::json!({"type": "user_message", "message": text, "images": []}),
            ),
        );
        self.append(
            now,
            thread,
            RolloutItem::ResponseItem(serde_json::json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})),
        );
        self.emit(thread, EventKind::TaskStarted { turn });
        self.emit(thread, EventKind::UserMessage { turn, message: text.clone() });
        self.thread_mut(thread).turn = Some(ActiveTurn { id: turn, text });
        self.ensure(now, thread, Waiter::Turn(turn));
    }

    fn send_model_request(
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

    fn model_done(
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
                self.append(
                    now,
                    thread,
                    RolloutItem::ResponseItem(serde_json::json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]})),
                );
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

    fn end_turn(&mut self, now: Timestamp, thread: &ThreadId, turn: TurnId) {
        self.emit(thread, EventKind::TurnComplete { turn });
        let t = self.thread_mut(thread);
        debug_assert_eq!(t.turn.as_ref().map(|t| t.id), Some(turn));
        t.turn = None;
        if let Some((next, text)) = t.queued.pop_front() {
            self.begin_turn(now, thread, next, text);
        }
    }

    // ---- plumbing ------------------------------------------------------------------------

    fn dispatch(
        &mut self,
        now: Timestamp,
        pending: Pending,
        result: Result<HttpResponse, RequestFailure>,
    ) {
        match pending {
            Pending::IdentityBiscuit => self.identity_biscuit_done(now, result),
            Pending::IdentityRegister => self.identity_register_done(now, result),
            Pending::TaskBiscuit(thread) => self.task_biscuit_done(now, &thread, result),
            Pending::TaskRegister(thread) => self.task_register_done(now, &thread, result),
            Pending::Model { thread, turn, url, runtime } => {
                self.model_done(now, &thread, turn, &url, runtime, result)
            }
        }
    }

    /// The biscuit out of a biscuit request's outcome.
    fn read_biscuit(
        &self,
        result: Result<HttpResponse, RequestFailure>,
    ) -> Result<String, protocol::BiscuitError> {
        let url = format!("{}{}", self.config.base_url, crate::wire::BISCUIT_PATH);
        match result {
            Ok(response) => protocol::read_biscuit(&url, &response),
            Err(_) => Err(protocol::BiscuitError::Send { url }),
        }
    }

    fn send_biscuit(&mut self, pending: Pending, target_url: &str) {
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

    fn send(&mut self, pending: Pending, request: HttpRequest) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.pending.insert(id, pending);
        self.out.push_back(Command::Send { id, request, timeout_ms: REQUEST_TIMEOUT_MS });
    }

    fn append(&mut self, now: Timestamp, thread: &ThreadId, item: RolloutItem) {
        self.out.push_back(Command::Append {
            thread: thread.clone(),
            line: RolloutLine { timestamp: now, item },
        });
    }

    fn emit(&mut self, thread: &ThreadId, kind: EventKind) {
        self.out.push_back(Command::Emit(Event { thread: thread.clone(), kind }));
    }

    fn log(&mut self, level: Level, message: &'static str, fields: Vec<(&'static str, String)>) {
        self.out.push_back(Command::Log(LogLine { level, message, failure: None, fields }));
    }

    /// One of the failure log lines of spec section 4: a warning that names what failed.
    fn log_failure(
        &mut self,
        failure: Failure,
        message: &'static str,
        fields: Vec<(&'static str, String)>,
    ) {
        let failure = Some(failure);
        self.out.push_back(Command::Log(LogLine { level: Level::Warn, message, failure, fields }));
    }

    fn mark(&mut self, name: &'static str) {
        self.out.push_back(Command::Mark(name));
    }

    fn thread_mut(&mut self, thread: &ThreadId) -> &mut Thread {
        if !self.touched.contains(thread) {
            self.touched.insert(thread.clone());
        }
        self.threads.get_mut(thread).unwrap_or_else(|| panic!("unknown thread {thread}"))
    }

    fn op_mut(&mut self, thread: &ThreadId) -> &mut EnsureOp {
        self.thread_mut(thread).ensure.as_mut().expect("an ensure in flight")
    }
}

fn task_fields(thread: &ThreadId, task: &AgentTask) -> Vec<(&'static str, String)> {
    vec![
        ("thread", thread.to_string()),
        ("agent_runtime_id", task.agent_runtime_id.clone()),
        ("task_id", task.task_id.clone()),
    ]
}
