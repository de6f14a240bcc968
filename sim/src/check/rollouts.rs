//! The checks of the rollouts: each `session_state` line written (invariants 1 flag off, 4
//! appends follow changes, 8 a persisted task is the backend's and current), what resume reads
//! and restores (2, and rule 15), and after each step that every thread's cache agrees with its
//! rollout's last `session_state` (13). Each rollout's last value is tracked from what was read
//! and appended, so no rollout is read again.

use agentsim_core::{AgentTask, Command, Lifecycle, RolloutItem, RolloutScan, ThreadId};

use super::{Checker, Invariant};
use crate::backend::Backend;
use crate::reference;

impl Checker {
    /// Invariants 1, 4 and 8, before a rollout line is written. `current` is the identity the
    /// world's records say is current (invariant 17), not core's opinion.
    pub(super) fn before_append(
        &mut self,
        current: Option<&str>,
        backend: &Backend,
        thread: &ThreadId,
        item: &RolloutItem,
    ) {
        let step = self.step;
        let RolloutItem::SessionState(value) = item else { return };
        if !self.use_agent_identity {
            self.violate(
                Invariant::FlagOff,
                step,
                format!("flag off, yet {thread} appended a session_state"),
            );
        }
        let previous = self.persisted.get(thread).cloned().flatten();
        match value {
            Some(task) => {
                if current != Some(task.agent_runtime_id.as_str()) {
                    self.violate(Invariant::AppendsFollowChanges, step, format!("{thread} persisted a task of runtime {} while the current identity is {}", task.agent_runtime_id, current.unwrap_or("none")));
                }
                match backend.task_runtime(&task.task_id) {
                    Some(runtime) if runtime == task.agent_runtime_id => {}
                    other => self.violate(
                        Invariant::ProtocolClean,
                        step,
                        format!(
                            "{thread} persisted task {} which the backend issued to {}",
                            task.task_id,
                            other.as_deref().unwrap_or("nobody")
                        ),
                    ),
                }
                if previous.as_ref() == Some(value) {
                    self.violate(
                        Invariant::AppendsFollowChanges,
                        step,
                        format!("{thread} appended the same session_state twice in a row"),
                    );
                }
            }
            None => {
                if !matches!(previous, Some(Some(_))) {
                    self.violate(Invariant::AppendsFollowChanges, step, format!("{thread} appended session_state null when the last value was not a task"));
                }
            }
        }
        self.persisted.insert(thread.clone(), Some(value.clone()));
        self.dirty.insert(thread.clone());
    }

    /// Invariant 2, right after a resume: read-only, and the pure function of the reference rules.
    pub(super) fn after_resume(
        &mut self,
        thread: &ThreadId,
        bytes: &[u8],
        current: Option<&str>,
        restored: Option<&AgentTask>,
        commands: &[Command],
    ) {
        let step = self.step;
        if commands.iter().any(|c| matches!(c, Command::Append { thread: t, .. } if t == thread)) {
            self.violate(
                Invariant::ResumeReadOnly,
                step,
                format!("resuming {thread} appended to its rollout"),
            );
        }
        // Rule 14: a restored task is current, so the prewarm that follows reuses it: no call.
        if restored.is_some() {
            if let Some(Command::Send { request, .. }) =
                commands.iter().find(|c| matches!(c, Command::Send { .. }))
            {
                self.violate(
                    Invariant::ResumeReadOnly,
                    step,
                    format!(
                        "resuming {thread} restored a current task, yet sent {} {}",
                        request.method.as_str(),
                        request.path()
                    ),
                );
            }
        }
        let predicted =
            reference::predict_resume(bytes, current, self.use_agent_identity, self.persist_task);
        if predicted.as_ref() != restored {
            self.violate(
                Invariant::ResumeReadOnly,
                step,
                format!(
                    "resuming {thread} restored {:?}, the reference rules say {:?}",
                    restored.map(|t| &t.task_id),
                    predicted.map(|t| t.task_id)
                ),
            );
        }
        self.persisted.insert(thread.clone(), reference::last_session_state(bytes));
        self.dirty.insert(thread.clone());
    }

    /// Invariant 2 (and rule 15): what core reports having read from a rollout at resume or fork
    /// is what the reference rules read: the line count, the last `session_state` and its line,
    /// and the lines skipped.
    pub(super) fn scan_agrees(&mut self, thread: &ThreadId, bytes: &[u8], scan: &RolloutScan) {
        let step = self.step;
        let expected = reference::scan_report(bytes);
        let last = scan.last_state.as_ref().map(|s| (s.line, s.task.clone()));
        let skipped: Vec<(usize, bool)> = scan.skipped.iter().map(|s| (s.line, s.torn)).collect();
        if (scan.lines, &last, &skipped) != (expected.lines, &expected.last, &expected.skipped) {
            self.violate(
                Invariant::ResumeReadOnly,
                step,
                format!(
                    "reading {thread}'s rollout, core found {} lines, last session_state {:?}, skipped {skipped:?}; the reference rules find {} lines, {:?}, skipped {:?}",
                    scan.lines, last, expected.lines, expected.last, expected.skipped
                ),
            );
        }
    }

    /// `bytes` are now `thread`'s whole rollout (a fork's copy, a `damage` rewrite).
    pub(super) fn rollout_replaced(&mut self, thread: &ThreadId, bytes: &[u8]) {
        self.persisted.insert(thread.clone(), reference::last_session_state(bytes));
        self.dirty.insert(thread.clone());
    }

    /// Invariant 13, after every step. The last `session_state` of each rollout is tracked from
    /// what was read at resume or fork and every append since, so no rollout is re-read.
    ///
    /// Only threads whose verdict may have changed are looked at (`dirty`: touched, appended to,
    /// resumed, forked), unless the current identity changed or `all` is asked for.
    pub(super) fn quiescent(&mut self, machine: &Lifecycle, current: Option<&str>, all: bool) {
        let step = self.step;
        let dirty = std::mem::take(&mut self.dirty);
        let same_current = self.last_current.as_ref().map(Option::as_deref) == Some(current);
        if !same_current {
            self.last_current = Some(current.map(str::to_owned));
        }
        if !self.persist_task || !self.use_agent_identity {
            return;
        }
        let threads: Box<dyn Iterator<Item = &ThreadId>> = if all || !same_current {
            Box::new(machine.threads())
        } else {
            Box::new(dirty.iter().filter(|t| machine.has_thread(t)))
        };
        for thread in threads {
            let last = self.persisted.get(thread).cloned().flatten().flatten();
            match (machine.cached_task(thread), last) {
                (Some(cached), Some(last)) if *cached == last => {}
                (Some(cached), last) => {
                    self.violate(
                        Invariant::QuiescentAgreement,
                        step,
                        format!(
                            "{thread} caches {} but its rollout's last session_state is {:?}",
                            cached.task_id,
                            last.map(|t| t.task_id)
                        ),
                    );
                }
                (None, Some(last)) if self.held.get(thread) == Some(&last) => {
                    self.violate(
                        Invariant::QuiescentAgreement,
                        step,
                        format!(
                            "{thread} let go of task {} but its rollout still ends with it (no null appended)",
                            last.task_id
                        ),
                    );
                }
                (None, Some(last)) if current == Some(last.agent_runtime_id.as_str()) => {
                    self.violate(
                        Invariant::QuiescentAgreement,
                        step,
                        format!(
                            "{thread} caches no task but its rollout ends with current task {}",
                            last.task_id
                        ),
                    );
                }
                (None, _) => {}
            }
        }
    }
}
