//! The driver task: the one owner of the `Lifecycle`, the rollout files and the auth store. It
//! handles one message at a time (a caller's verb, or a request's outcome), feeds core the input
//! stamped with the clock, then carries out every command core returns, in order, before it
//! takes the next message. It decides nothing about the lifecycle.

use std::collections::BTreeMap;
use std::time::Duration;

use agentsim_core::{
    AgentTask, Auth, Command, Event, EventKind, InFlight, Level, Lifecycle, LogLine, RequestId,
    RolloutScan, ThreadId, TurnId,
};
use tokio::sync::{mpsc, oneshot};

use crate::auth_store::AuthStore;
use crate::rollout_file::RolloutFiles;
use crate::{Clock, Notice, Options, ResumeReport, RuntimeError, TurnOutcome};

type Reply<T> = oneshot::Sender<Result<T, RuntimeError>>;

/// What the driver is asked, or told.
pub(crate) enum Msg {
    Start {
        thread: ThreadId,
        reply: Reply<()>,
    },
    Resume {
        thread: ThreadId,
        reply: Reply<ResumeReport>,
    },
    Fork {
        child: ThreadId,
        parent: ThreadId,
        reply: Reply<ResumeReport>,
    },
    Turn {
        thread: ThreadId,
        turn: TurnId,
        text: String,
        reply: Reply<TurnOutcome>,
    },
    Compact {
        thread: ThreadId,
        reply: Reply<()>,
    },
    Rollback {
        thread: ThreadId,
        num_turns: u32,
        reply: Reply<()>,
    },
    Auth {
        auth: Auth,
        reply: Reply<()>,
    },
    ReloadAuthStore {
        reply: Reply<()>,
    },
    Idle {
        reply: Reply<()>,
    },
    Events {
        thread: ThreadId,
        reply: Reply<Vec<Event>>,
    },
    CachedTask {
        thread: ThreadId,
        reply: Reply<Option<AgentTask>>,
    },
    Subscribe {
        reply: Reply<mpsc::UnboundedReceiver<Notice>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// A request's outcome, from its send task.
    Outcome {
        id: RequestId,
        result: Result<agentsim_core::wire::HttpResponse, agentsim_core::RequestFailure>,
    },
}

/// A turn's caller, waiting for its `turn_complete`.
struct TurnWaiter {
    thread: ThreadId,
    events: Vec<Event>,
    assertion: Option<String>,
    reply: Reply<TurnOutcome>,
}

pub(crate) struct Driver {
    machine: Lifecycle,
    clock: Clock,
    timeout_cap: Option<Duration>,
    client: reqwest::Client,
    rollouts: RolloutFiles,
    auth_store: AuthStore,
    /// Where send tasks report.
    tx: mpsc::UnboundedSender<Msg>,
    /// Requests on their way, by id.
    sends: BTreeMap<RequestId, tokio::task::JoinHandle<()>>,
    events: BTreeMap<ThreadId, Vec<Event>>,
    turns: BTreeMap<TurnId, TurnWaiter>,
    idle_waiters: Vec<Reply<()>>,
    subscribers: Vec<mpsc::UnboundedSender<Notice>>,
    /// Set by a storage failure: the runtime refuses everything from then on.
    broken: Option<String>,
}

impl Driver {
    pub(crate) fn new(
        options: Options,
        tx: mpsc::UnboundedSender<Msg>,
    ) -> Result<Driver, RuntimeError> {
        let storage = |e: &dyn std::fmt::Display| RuntimeError::Storage(e.to_string());
        let auth_store = AuthStore::new(&options.home.join("auth.json"));
        let stored = auth_store.load().map_err(|e| storage(&e))?;
        let rollouts =
            RolloutFiles::new(&options.home.join("rollouts")).map_err(|e| storage(&e))?;
        let mut seed = [0u8; 32];
        // Key seeds come from the operating system here, in production (clippy.toml bans OS
        // randomness everywhere else).
        #[allow(clippy::disallowed_methods)]
        getrandom::getrandom(&mut seed)
            .map_err(|e| RuntimeError::Storage(format!("no OS randomness: {e}")))?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| RuntimeError::Storage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Driver {
            machine: Lifecycle::new(options.config, options.auth, stored, seed),
            clock: options.clock,
            timeout_cap: options.timeout_cap,
            client,
            rollouts,
            auth_store,
            tx,
            sends: BTreeMap::new(),
            events: BTreeMap::new(),
            turns: BTreeMap::new(),
            idle_waiters: Vec::new(),
            subscribers: Vec::new(),
            broken: None,
        })
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            if let Msg::Shutdown { reply } = msg {
                self.stop("the runtime was shut down");
                let _ = reply.send(());
                return;
            }
            self.handle(msg);
            self.wake_idle_waiters();
        }
        self.stop("the runtime was dropped");
    }

    fn handle(&mut self, msg: Msg) {
        if let Some(reason) = &self.broken {
            let reason = reason.clone();
            refuse(msg, &reason);
            return;
        }
        let now = (self.clock)();
        match msg {
            Msg::Start { thread, reply } => {
                let result = self.start(now, thread);
                let _ = reply.send(result);
            }
            Msg::Resume { thread, reply } => {
                let result = self.resume(now, thread);
                let _ = reply.send(result);
            }
            Msg::Fork { child, parent, reply } => {
                let result = self.fork(now, child, parent);
                let _ = reply.send(result);
            }
            Msg::Turn { thread, turn, text, reply } => {
                if let Err(e) = self.live(&thread) {
                    let _ = reply.send(Err(e));
                    return;
                }
                if self.turns.contains_key(&turn) {
                    let _ =
                        reply.send(Err(RuntimeError::Usage(format!("{turn} is already running"))));
                    return;
                }
                let waiter = TurnWaiter {
                    thread: thread.clone(),
                    events: Vec::new(),
                    assertion: None,
                    reply,
                };
                self.turns.insert(turn, waiter);
                self.machine.submit_turn(now, &thread, turn, &text);
                self.drain();
            }
            Msg::Compact { thread, reply } => {
                let result = self.live(&thread).map(|()| self.machine.compact(now, &thread));
                self.drain();
                let _ = reply.send(self.or_broken(result));
            }
            Msg::Rollback { thread, num_turns, reply } => {
                let result =
                    self.live(&thread).map(|()| self.machine.rollback(now, &thread, num_turns));
                self.drain();
                let _ = reply.send(self.or_broken(result));
            }
            Msg::Auth { auth, reply } => {
                self.machine.handle_auth_changed(now, auth);
                self.drain();
                let _ = reply.send(self.or_broken(Ok(())));
            }
            Msg::ReloadAuthStore { reply } => {
                let result = match self.auth_store.load() {
                    Ok(stored) => {
                        self.machine.handle_identity_store_changed(now, stored);
                        self.drain();
                        self.or_broken(Ok(()))
                    }
                    Err(e) => Err(RuntimeError::Storage(e.to_string())),
                };
                let _ = reply.send(result);
            }
            Msg::Idle { reply } => self.idle_waiters.push(reply),
            Msg::Events { thread, reply } => {
                let _ = reply.send(Ok(self.events.get(&thread).cloned().unwrap_or_default()));
            }
            Msg::CachedTask { thread, reply } => {
                let _ = reply.send(Ok(self.machine.cached_task(&thread).cloned()));
            }
            Msg::Subscribe { reply } => {
                let (tx, rx) = mpsc::unbounded_channel();
                self.subscribers.push(tx);
                let _ = reply.send(Ok(rx));
            }
            Msg::Outcome { id, result } => {
                self.sends.remove(&id);
                match result {
                    Ok(response) => self.machine.handle_response(now, id, response),
                    Err(failure) => self.machine.handle_request_failed(now, id, failure),
                }
                self.drain();
            }
            Msg::Shutdown { .. } => unreachable!("handled by run"),
        }
    }

    fn start(
        &mut self,
        now: agentsim_core::Timestamp,
        thread: ThreadId,
    ) -> Result<(), RuntimeError> {
        self.new_thread(&thread)?;
        self.open(&thread, &[])?;
        self.machine.start_thread(now, thread);
        self.drain();
        self.or_broken(Ok(()))
    }

    fn resume(
        &mut self,
        now: agentsim_core::Timestamp,
        thread: ThreadId,
    ) -> Result<ResumeReport, RuntimeError> {
        if self.machine.has_thread(&thread) {
            return Err(RuntimeError::Usage(format!("{thread} is already running")));
        }
        let bytes = self.read(&thread)?.ok_or_else(|| {
            RuntimeError::Usage(format!(
                "{thread} has no rollout to resume ({})",
                self.rollouts.path(&thread).display()
            ))
        })?;
        self.open(&thread, &bytes)?;
        let scan = self.machine.resume_thread(now, thread.clone(), &bytes);
        self.log_skipped(&thread, &scan);
        self.drain();
        self.or_broken(Ok(report(scan)))
    }

    fn fork(
        &mut self,
        now: agentsim_core::Timestamp,
        child: ThreadId,
        parent: ThreadId,
    ) -> Result<ResumeReport, RuntimeError> {
        self.new_thread(&child)?;
        let bytes = self
            .read(&parent)?
            .ok_or_else(|| RuntimeError::Usage(format!("{parent} has no rollout to fork from")))?;
        self.open(&child, &[])?;
        let scan = self.machine.fork_thread(now, child.clone(), &bytes);
        self.log_skipped(&child, &scan);
        self.drain();
        self.or_broken(Ok(report(scan)))
    }

    /// Carries out every command core has queued, in order.
    fn drain(&mut self) {
        while self.broken.is_none() {
            let Some(command) = self.machine.poll_command() else { break };
            self.execute(command);
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Send { id, request, timeout_ms } => {
                let mut timeout = Duration::from_millis(timeout_ms);
                if let Some(cap) = self.timeout_cap {
                    timeout = timeout.min(cap);
                }
                let what = self.machine.in_flight_request(id);
                if let Some(InFlight::Model(_, turn)) = &what {
                    if let Some(waiter) = self.turns.get_mut(turn) {
                        waiter.assertion = request.header("Authorization").map(str::to_owned);
                    }
                }
                let thread = match what {
                    Some(
                        InFlight::TaskBiscuit { thread, .. }
                        | InFlight::TaskRegister { thread, .. }
                        | InFlight::Model(thread, _),
                    ) => Some(thread),
                    Some(InFlight::IdentityBiscuit | InFlight::IdentityRegister) | None => None,
                };
                let (method, path) = (request.method.as_str(), request.path().to_owned());
                self.notify(Notice::Sent { thread, method, path });
                let client = self.client.clone();
                let tx = self.tx.clone();
                let task = tokio::spawn(async move {
                    let result = crate::http::exchange(&client, &request, timeout).await;
                    let _ = tx.send(Msg::Outcome { id, result });
                });
                self.sends.insert(id, task);
            }
            Command::Append { thread, line } => {
                let json = line.to_json();
                match self.rollouts.append_line(&thread, &json) {
                    Ok(durable) => self.notify(appended(thread, durable, json)),
                    Err(e) => self.break_down(format!("rollout append failed: {e}")),
                }
            }
            Command::AppendCopy { thread, bytes } => match self.rollouts.append(&thread, &bytes) {
                Ok(durable) => self.notify(appended(thread, durable, String::new())),
                Err(e) => self.break_down(format!("rollout copy failed: {e}")),
            },
            Command::Emit(event) => self.emit(event),
            Command::StoreIdentity(stored) => {
                if let Err(e) = self.auth_store.save(Some(&stored)) {
                    self.break_down(e.to_string());
                }
            }
            Command::DeleteIdentity => {
                if let Err(e) = self.auth_store.save(None) {
                    self.break_down(e.to_string());
                }
            }
            Command::Log(line) => log(&line),
            Command::Mark(_) => {}
        }
    }

    fn emit(&mut self, event: Event) {
        self.events.entry(event.thread.clone()).or_default().push(event.clone());
        self.notify(Notice::Event(event.clone()));
        let Some(turn) = event.kind.turn() else { return };
        let Some(waiter) = self.turns.get_mut(&turn) else { return };
        if waiter.thread != event.thread {
            return;
        }
        let complete = matches!(event.kind, EventKind::TurnComplete { .. });
        waiter.events.push(event);
        if complete {
            if let Some(waiter) = self.turns.remove(&turn) {
                let outcome =
                    TurnOutcome { turn, events: waiter.events, assertion: waiter.assertion };
                let _ = waiter.reply.send(Ok(outcome));
            }
        }
    }

    fn notify(&mut self, notice: Notice) {
        self.subscribers.retain(|s| s.send(notice.clone()).is_ok());
    }

    fn wake_idle_waiters(&mut self) {
        if self.sends.is_empty() || self.broken.is_some() {
            for waiter in self.idle_waiters.drain(..) {
                let _ = waiter.send(match &self.broken {
                    None => Ok(()),
                    Some(reason) => Err(RuntimeError::Stopped(reason.clone())),
                });
            }
        }
    }

    /// A write could not be made durable: the process stops as if it had crashed there.
    fn break_down(&mut self, reason: String) {
        tracing::error!(target: "agentsim_runtime", reason = %reason, "storage failed; the runtime stops");
        self.stop(&reason);
        self.broken = Some(reason);
    }

    /// Ends everything in flight and answers every waiter.
    fn stop(&mut self, reason: &str) {
        for (_, task) in std::mem::take(&mut self.sends) {
            task.abort();
        }
        for (_, waiter) in std::mem::take(&mut self.turns) {
            let _ = waiter.reply.send(Err(RuntimeError::Stopped(reason.to_owned())));
        }
        for waiter in self.idle_waiters.drain(..) {
            let _ = waiter.send(Err(RuntimeError::Stopped(reason.to_owned())));
        }
        self.rollouts.close_all();
    }

    fn or_broken<T>(&self, result: Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        match &self.broken {
            Some(reason) => Err(RuntimeError::Stopped(reason.clone())),
            None => result,
        }
    }

    fn live(&self, thread: &ThreadId) -> Result<(), RuntimeError> {
        if self.machine.has_thread(thread) {
            Ok(())
        } else {
            Err(RuntimeError::Usage(format!(
                "{thread} is not running in this process: start, resume or fork it"
            )))
        }
    }

    fn new_thread(&self, thread: &ThreadId) -> Result<(), RuntimeError> {
        if self.machine.has_thread(thread) || self.rollouts.exists(thread) {
            return Err(RuntimeError::Usage(format!(
                "{thread} already exists ({}): resume it instead",
                self.rollouts.path(thread).display()
            )));
        }
        Ok(())
    }

    fn read(&self, thread: &ThreadId) -> Result<Option<Vec<u8>>, RuntimeError> {
        self.rollouts.read(thread).map_err(|e| RuntimeError::Storage(e.to_string()))
    }

    fn open(&mut self, thread: &ThreadId, existing: &[u8]) -> Result<(), RuntimeError> {
        self.rollouts.open(thread, existing).map_err(|e| RuntimeError::Storage(e.to_string()))
    }

    fn log_skipped(&self, thread: &ThreadId, scan: &RolloutScan) {
        for skipped in &scan.skipped {
            tracing::warn!(
                target: "agentsim_runtime",
                thread = %thread,
                line = skipped.line,
                torn = skipped.torn,
                reason = %skipped.reason,
                "skipped a damaged rollout line"
            );
        }
    }
}

fn appended(thread: ThreadId, durable: crate::rollout_file::Durable, text: String) -> Notice {
    Notice::Appended { thread, line: durable.lines, synced_bytes: durable.synced_bytes, text }
}

fn report(scan: RolloutScan) -> ResumeReport {
    ResumeReport { lines: scan.lines, skipped: scan.skipped }
}

/// Answers a message the broken runtime cannot carry out.
fn refuse(msg: Msg, reason: &str) {
    let stopped = || RuntimeError::Stopped(reason.to_owned());
    match msg {
        Msg::Start { reply, .. }
        | Msg::Compact { reply, .. }
        | Msg::Rollback { reply, .. }
        | Msg::Auth { reply, .. }
        | Msg::ReloadAuthStore { reply }
        | Msg::Idle { reply } => {
            let _ = reply.send(Err(stopped()));
        }
        Msg::Resume { reply, .. } | Msg::Fork { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Msg::Turn { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Msg::Events { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Msg::CachedTask { reply, .. } => {
            let _ = reply.send(Err(stopped()));
        }
        Msg::Subscribe { reply } => {
            let _ = reply.send(Err(stopped()));
        }
        Msg::Shutdown { reply } => {
            let _ = reply.send(());
        }
        Msg::Outcome { .. } => {}
    }
}

/// Core's log line as a `tracing` event (core's lines never carry a secret).
fn log(line: &LogLine) {
    let fields = line
        .fields
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let message = line.message;
    match line.level {
        Level::Error => tracing::error!(target: "agentsim_core", fields = %fields, "{message}"),
        Level::Warn => tracing::warn!(target: "agentsim_core", fields = %fields, "{message}"),
        Level::Info => tracing::info!(target: "agentsim_core", fields = %fields, "{message}"),
        Level::Debug => tracing::debug!(target: "agentsim_core", fields = %fields, "{message}"),
    }
}
