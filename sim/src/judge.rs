//! Invariants 16 to 19 of spec section 5, and invariant 7 as invariant 17 wants it: judged from
//! the backend model's records and clock and from the run's own bookkeeping (which thread was
//! answered which task, which lines each rollout holds), never from core's helpers.
//!
//! - 16 ownership: a thread caches, persists or asserts only a task it registered itself or read
//!   from its own rollout; the lines a fork copied from its parent are not its own.
//! - 17 the backend judges time: under `reacquire` no assertion carries an identity the backend's
//!   records say had expired (TTL) when the request was sent; and no assertion carries a runtime
//!   other than the auth store's identity for the signed-in workspace (invariant 7); every
//!   assertion is stamped with the time its request is sent (spec section 2.4, invariant 8; the
//!   backend refuses one stamped more than 300 s away as `stale_assertion`).
//! - 18 write-ahead: with `persist_task`, a task's `session_state` line is in the rollout before
//!   the first request that asserts it.
//! - 19 turn order: a thread's turns start in submission order, one at a time, and a model request
//!   belongs to the turn that is running.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agentsim_core::{AgentTask, Event, EventKind, ThreadId, Timestamp, TurnId};

use crate::backend::Backend;
use crate::check::{Invariant, Violation};
use crate::reference;

#[derive(Debug, Default)]
struct ThreadBook {
    /// Task ids this thread may use: answered to its registrations, or read from its own lines.
    owned: BTreeSet<String>,
    /// Task ids some `session_state` line of its rollout holds.
    written: BTreeSet<String>,
    /// Turns submitted and not yet started, in order.
    submitted: VecDeque<TurnId>,
    /// The turn running.
    running: Option<TurnId>,
    /// How many lines at the head of the rollout a fork copied from its parent.
    fork_prefix_lines: usize,
}

/// The bookkeeping of invariants 16 to 19.
#[derive(Debug, Default)]
pub struct Judge {
    threads: BTreeMap<ThreadId, ThreadBook>,
    /// The first violation.
    pub violation: Option<Violation>,
}

/// The world's view of which identity is current: the auth store's identity when it belongs to
/// the signed-in workspace and (under `reacquire`) the backend's records say it has not expired.
#[derive(Clone, Copy, Debug)]
pub struct World<'a> {
    pub now: Timestamp,
    pub use_agent_identity: bool,
    pub reacquire: bool,
    pub persist_task: bool,
    pub current_runtime: Option<&'a str>,
    pub backend: &'a Backend,
    pub step: usize,
}

impl Judge {
    fn violate(&mut self, invariant: Invariant, step: usize, message: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, step, message });
        }
    }

    fn book(&mut self, thread: &ThreadId) -> &mut ThreadBook {
        self.threads.entry(thread.clone()).or_default()
    }

    /// A process died: its turns died with it.
    pub fn process_died(&mut self) {
        for book in self.threads.values_mut() {
            book.submitted.clear();
            book.running = None;
        }
    }

    /// A thread resumed from `bytes`: the tasks of its own lines (past the lines a fork copied
    /// from its parent, which stay at the head of its rollout) are its tasks.
    pub fn resumed(&mut self, thread: &ThreadId, bytes: &[u8]) {
        let book = self.book(thread);
        let skip = book.fork_prefix_lines;
        let own_start = match skip.checked_sub(1) {
            None => 0,
            Some(last_copied) => {
                let newlines = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n');
                newlines.map(|(i, _)| i + 1).nth(last_copied).unwrap_or(bytes.len())
            }
        };
        book.owned.extend(reference::session_state_task_ids(&bytes[own_start..]));
        book.written.extend(reference::session_state_task_ids(bytes));
    }

    /// A fork copied `bytes` from its parent: none of those tasks are the child's, when the
    /// process could mark them so with rule 16's `null`. A process with the flag off (rule 1:
    /// no `session_state` line, ever) or `persist_task` off writes no `null`, so a later resume
    /// of the fork reads the parent's last task as its own: a gap between rules 1, 20 and 16
    /// that the spec leaves open, judged here by what the rollout says.
    pub fn forked(&mut self, child: &ThreadId, bytes: &[u8], writes_null: bool) {
        let book = self.book(child);
        book.owned.clear();
        book.fork_prefix_lines = 0;
        if writes_null {
            // The child's own `session_meta`, then the copy.
            book.fork_prefix_lines = 1 + bytes.iter().filter(|b| **b == b'\n').count();
        } else {
            book.owned.extend(reference::session_state_task_ids(bytes));
        }
        book.written.extend(reference::session_state_task_ids(bytes));
    }

    /// A hand rewrote the thread's rollout (`damage`): whatever it holds now is the thread's
    /// own, as rule 13 reads it; no line of it is a fork's copy any more.
    pub fn rewritten(&mut self, thread: &ThreadId) {
        self.book(thread).fork_prefix_lines = 0;
    }

    /// The backend issued `task_id` to a registration of `thread`.
    pub fn issued(&mut self, thread: &ThreadId, task_id: &str) {
        self.book(thread).owned.insert(task_id.to_owned());
    }

    /// A turn was submitted.
    pub fn submitted(&mut self, thread: &ThreadId, turn: TurnId) {
        self.book(thread).submitted.push_back(turn);
    }

    /// Invariants 16 and 18 for an appended `session_state` task.
    pub fn appended_task(&mut self, thread: &ThreadId, task: &AgentTask, step: usize) {
        let book = self.book(thread);
        let owned = book.owned.contains(&task.task_id);
        book.written.insert(task.task_id.clone());
        if !owned {
            let message = format!("{thread} persisted task {}, which it never registered nor read from its own rollout", task.task_id);
            self.violate(Invariant::Ownership, step, message);
        }
    }

    /// Invariant 16 for a cached task.
    pub fn cached(&mut self, thread: &ThreadId, task: &AgentTask, step: usize) {
        if !self.book(thread).owned.contains(&task.task_id) {
            let message = format!(
                "{thread} caches task {}, which it never registered nor read from its own rollout",
                task.task_id
            );
            self.violate(Invariant::Ownership, step, message);
        }
    }

    /// Invariants 7, 8, 16, 17, 18 and 19 for a model request of `thread`'s `turn` carrying an
    /// assertion for `(runtime, task_id, timestamp)` (or none).
    pub fn model_request(
        &mut self,
        world: World<'_>,
        thread: &ThreadId,
        turn: TurnId,
        assertion: Option<(&str, &str, &str)>,
    ) {
        let step = world.step;
        let running = self.book(thread).running;
        if running != Some(turn) {
            let message = format!(
                "{thread} sent the model request of {turn} while {} runs",
                turn_text(running)
            );
            self.violate(Invariant::TurnOrder, step, message);
        }
        let Some((runtime, task_id, stamped)) = assertion else { return };
        // Spec section 2.4: stamped with the time the request is sent (RFC 3339 seconds, UTC).
        let sent = crate::oracle::rfc3339_secs(world.now);
        if stamped != sent {
            let message = format!("{thread} {turn} sent at {sent} an assertion stamped {stamped}");
            self.violate(Invariant::ProtocolClean, step, message);
        }
        let book = self.book(thread);
        let (owned, written) = (book.owned.contains(task_id), book.written.contains(task_id));
        if !owned {
            let message = format!("{thread} {turn} asserted task {task_id}, which it never registered nor read from its own rollout");
            self.violate(Invariant::Ownership, step, message);
        }
        if world.persist_task && world.use_agent_identity && !written {
            let message = format!("{thread} {turn} asserted task {task_id} before its session_state line was appended");
            self.violate(Invariant::WriteAhead, step, message);
        }
        let record = world.backend.runtime(runtime);
        let expired_at = record.and_then(|r| r.expires_at).filter(|at| world.now >= *at);
        if let (true, Some(at)) = (world.reacquire, expired_at) {
            let message = format!("{thread} {turn} asserted runtime {runtime}, which the backend expired at {at} (before the request was sent)");
            self.violate(Invariant::BackendJudgesTime, step, message);
        }
        if world.current_runtime != Some(runtime) {
            let message = format!(
                "{thread} {turn} asserted runtime {runtime} while the auth store's current identity is {}",
                world.current_runtime.unwrap_or("none")
            );
            self.violate(Invariant::AssertsCurrent, step, message);
        }
    }

    /// Invariant 19 for each event.
    pub fn event(&mut self, event: &Event, step: usize) {
        let thread = &event.thread;
        let book = self.book(thread);
        let problem = match &event.kind {
            EventKind::TaskStarted { turn } => {
                let next = book.submitted.pop_front();
                if book.running.is_some() {
                    Some(format!("{thread} started {turn} while {} runs", turn_text(book.running)))
                } else if next != Some(*turn) {
                    Some(format!(
                        "{thread} started {turn}, but the next submitted turn is {}",
                        turn_text(next)
                    ))
                } else {
                    book.running = Some(*turn);
                    None
                }
            }
            EventKind::UserMessage { turn, .. } | EventKind::Error { turn: Some(turn), .. }
                if book.running != Some(*turn) =>
            {
                Some(format!(
                    "{thread} {} of {turn} while {} runs",
                    event.kind.name(),
                    turn_text(book.running)
                ))
            }
            EventKind::TurnComplete { turn } => {
                if book.running == Some(*turn) {
                    book.running = None;
                    None
                } else {
                    Some(format!(
                        "{thread} completed {turn} while {} runs",
                        turn_text(book.running)
                    ))
                }
            }
            _ => None,
        };
        if let Some(message) = problem {
            self.violate(Invariant::TurnOrder, step, message);
        }
    }
}

fn turn_text(turn: Option<TurnId>) -> String {
    turn.map_or("no turn".to_owned(), |t| t.to_string())
}
