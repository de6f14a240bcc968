//! The lifecycle state machine: one process, many threads, one identity slot.
//!
//! This file holds the state and the public API; the rest of `impl Lifecycle` is split by
//! concern: `identity` (the process's identity slot and its single-flight registration),
//! `ensure` (a thread's task: reuse, registration attempts, stale clearing, persisting),
//! `session` (session start, the restore of resume and the clear of fork, late adoption),
//! `turn` (a turn's rollout lines, model request and queue) and `plumbing` (the commands).

mod ensure;
mod identity;
mod plumbing;
mod session;
mod turn;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

use crate::config::{Auth, Config, StoredIdentity};
use crate::marks;
use crate::output::{Command, Level, RequestId, ThreadId, TurnId};
use crate::rollout::{self, AgentTask, RolloutScan};
use crate::time::Timestamp;
use crate::wire::HttpResponse;

use ensure::EnsureOp;
use identity::{Identity, IdentityOp};
use turn::ActiveTurn;

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
    /// A second stream of the same seed for what only the rollouts show (session ids, token
    /// counts), so drawing them moves no key or request id.
    ids: ChaCha20Rng,
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
            ids: {
                let mut ids = ChaCha20Rng::from_seed(seed);
                ids.set_stream(1);
                ids
            },
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
        self.write_session_meta(now, &thread);
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

    /// A thread forks from a parent (rule 16): the child's rollout gets its own `session_meta`,
    /// then a copy of the parent's items ([`Command::AppendCopy`]), then (flag on, `persist_task`)
    /// `session_state null`.
    pub fn fork_thread(
        &mut self,
        now: Timestamp,
        thread: ThreadId,
        copied_rollout: &[u8],
    ) -> RolloutScan {
        self.add_thread(&thread);
        let scan = rollout::scan(copied_rollout);
        self.write_session_meta(now, &thread);
        self.out.push_back(Command::AppendCopy {
            thread: thread.clone(),
            bytes: copied_rollout.to_vec(),
        });
        if self.config.use_agent_identity {
            if self.config.persist_task {
                self.clear_parent_task(now, &thread, &scan);
            }
            self.session_start(now, &thread);
        }
        scan
    }

    /// The history is compacted: a `compacted` item, and nothing else changes (the task stays).
    pub fn compact(&mut self, now: Timestamp, thread: &ThreadId) {
        self.append(now, thread, rollout::compacted());
    }

    /// The last `num_turns` user turns are rolled back from the history: a `thread_rolled_back`
    /// event item, and nothing else changes (the task stays: rule 13 reads the whole file).
    pub fn rollback(&mut self, now: Timestamp, thread: &ThreadId, num_turns: u32) {
        self.append(now, thread, rollout::thread_rolled_back(num_turns));
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

    /// Hands a request's outcome to the concern that sent it.
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
}
