//! Session start, the restore of resume (rules 2 and 13 to 15), the clear of fork (rule 16), and
//! the late adoption of a persisted task once its identity is current again.

use super::ensure::Waiter;
use super::plumbing::task_fields;
use super::{Lifecycle, Thread};
use crate::marks;
use crate::output::{Level, ThreadId};
use crate::rollout::RolloutScan;
use crate::time::Timestamp;

impl Lifecycle {
    pub(super) fn add_thread(&mut self, thread: &ThreadId) {
        assert!(
            !self.threads.contains_key(thread),
            "thread {thread} already exists in this process"
        );
        self.threads.insert(thread.clone(), Thread::default());
        self.touched.insert(thread.clone());
    }

    /// Rules 1, 3 and 5: prewarm when an identity is usable, else wait for one (and register it
    /// when signed in).
    pub(super) fn session_start(&mut self, now: Timestamp, thread: &ThreadId) {
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

    pub(super) fn restore(&mut self, now: Timestamp, thread: &ThreadId, scan: &RolloutScan) {
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

    /// Rule 16: the child never keeps the parent's task; a copied task is cleared with a `null`.
    pub(super) fn clear_parent_task(
        &mut self,
        now: Timestamp,
        thread: &ThreadId,
        scan: &RolloutScan,
    ) {
        let last = scan.last_state.as_ref().map(|s| s.task.clone());
        let had_task = matches!(last, Some(Some(_)));
        self.thread_mut(thread).persisted = last;
        if had_task {
            self.mark(marks::FORK_CLEARED_PARENT_TASK);
            self.persist(now, thread, None);
        }
    }

    pub(super) fn prewarm_startup_waiters(&mut self, now: Timestamp) {
        for thread in std::mem::take(&mut self.startup_waiters) {
            self.ensure(now, &thread, Waiter::Prewarm);
        }
    }

    /// Rule 13 applied when it matters: a persisted task that resume dropped because no identity
    /// was usable then (signed out, API key, another workspace) is restored, with no I/O, once the
    /// identity it was registered under is current again. Otherwise the rollout would end with a
    /// current task the thread does not hold (invariant 13) and a new one would be registered.
    pub(super) fn adopt_persisted_if_current(&mut self, now: Timestamp, thread: &ThreadId) {
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

    pub(super) fn adopt_persisted_everywhere(&mut self, now: Timestamp) {
        let threads: Vec<ThreadId> = self.threads.keys().cloned().collect();
        for thread in &threads {
            self.adopt_persisted_if_current(now, thread);
        }
    }
}
