//! One scenario step each: what it feeds core and the oracles, and what it changes in the world
//! or the process. The loop around them is in `engine.rs`.

use agentsim_core::ThreadId;

use super::{Sim, MAX_VIRTUAL_MS};
use crate::check::Observation;
use crate::oracle::Input;
use crate::report::task_text;
use crate::scenario::{CrashPoint, ResumeSource, Scenario, Step};

impl Sim {
    pub(super) fn step(&mut self, scenario: &Scenario, step: &Step) -> Result<(), String> {
        match step {
            Step::Start { thread } => {
                if self.host.store.exists(thread) {
                    return Err(format!(
                        "thread {thread:?} already has a rollout: use `resume {thread}`"
                    ));
                }
                let machine = self.host.live_machine()?;
                if machine.has_thread(&ThreadId(thread.clone())) {
                    return Err(format!("thread {thread:?} is already running"));
                }
                let now = self.now;
                self.oracle.feed(now, Input::Start(thread));
                self.host.machine_mut().start_thread(now, ThreadId(thread.clone()));
                self.drain(None);
            }
            Step::Resume { thread, from } => self.resume(scenario, thread, from)?,
            Step::Fork { child, parent } => self.fork(child, parent)?,
            Step::Turn { thread, text, wait } => {
                let id = ThreadId(thread.clone());
                if !self.host.live_machine()?.has_thread(&id) {
                    return Err(format!("thread {thread:?} is not running in this process: start or resume it first"));
                }
                let turn = self.host.next_turn();
                let now = self.now;
                self.ledger.observe(Observation::TurnSubmitted { thread: &id, turn });
                self.oracle.feed(now, Input::Turn(thread, turn.0));
                self.judge.submitted(&id, turn);
                self.host.machine_mut().submit_turn(now, &id, turn, text);
                self.drain(None);
                if *wait {
                    self.run_until(|sim| sim.turn_done(&id, turn))?;
                }
            }
            Step::Compact { thread } | Step::Rollback { thread, .. } => {
                let id = ThreadId(thread.clone());
                if !self.host.live_machine()?.has_thread(&id) {
                    return Err(format!("thread {thread:?} is not running in this process: start or resume it first"));
                }
                let now = self.now;
                if let Step::Rollback { turns, .. } = step {
                    self.oracle.feed(now, Input::Rollback(thread, *turns));
                    self.host.machine_mut().rollback(now, &id, *turns);
                } else {
                    self.oracle.feed(now, Input::Compact(thread));
                    self.host.machine_mut().compact(now, &id);
                }
                self.drain(None);
            }
            Step::Advance { ms } => {
                if self.ledger.elapsed(self.now).saturating_add(*ms) > MAX_VIRTUAL_MS {
                    return Err(format!(
                        "this advance would take the run past {}d of virtual time, the most a \
                         run may cover: advance less",
                        MAX_VIRTUAL_MS / 86_400_000
                    ));
                }
                let target = self.now.plus_ms(*ms);
                self.run_until_time(target)?;
                self.now = target;
            }
            Step::Settle => self.settle()?,
            Step::RotateIdentity => {
                if self.world.rotate(self.now, &mut self.ledger) {
                    self.notify_identity_replaced();
                }
            }
            Step::ExpireIdentity | Step::RevokeIdentity => {
                let revoke = matches!(step, Step::RevokeIdentity);
                self.world.end_identity(self.now, revoke, &mut self.ledger);
            }
            Step::Auth(spec) => {
                self.world.sign_in(spec, &mut self.ledger);
                self.notify_auth_changed();
            }
            Step::Crash(point) => match point {
                CrashPoint::Now => self.crash("crash"),
                CrashPoint::OnAppend(thread) => self.host.crash_on_append = Some(thread.clone()),
                CrashPoint::OnResponse(endpoint) => self.host.crash_on_response = Some(*endpoint),
            },
            Step::Restart(change) => {
                if self.host.process.is_some() {
                    self.crash("restart kills the running process");
                }
                self.world.change_config(self.now, change, &mut self.ledger);
                self.restart_process();
            }
            Step::Heal => self.net.heal(),
            Step::AdvanceToExpiry { offset_ms } => {
                if let Some(ms) = self.ms_until_expiry(*offset_ms) {
                    return self.step(scenario, &Step::Advance { ms });
                }
            }
            Step::Damage { thread, kind } => self.damage(thread, *kind)?,
            Step::On { endpoint, moment, world } => self.arm(*endpoint, *moment, world)?,
        }
        Ok(())
    }

    fn fork(&mut self, child: &str, parent: &str) -> Result<(), String> {
        let bytes = self
            .host
            .read_rollout(parent)?
            .ok_or_else(|| format!("thread {parent:?} has no rollout to fork"))?;
        if self.host.store.exists(child) {
            return Err(format!("thread {child:?} already has a rollout"));
        }
        self.host.live_machine()?;
        let now = self.now;
        let id = ThreadId(child.to_owned());
        self.oracle.feed(now, Input::Fork(child, &bytes));
        let config = &self.world.config;
        let writes_null = config.use_agent_identity && config.persist_task;
        self.judge.forked(&id, &bytes, writes_null);
        let scan = self.host.machine_mut().fork_thread(now, id.clone(), &bytes);
        self.ledger.observe(Observation::Forked { thread: &id, bytes: &bytes, scan: &scan });
        let text = format!("forked from {parent}: copied {} lines", scan.lines);
        self.ledger.note(now, child, &text);
        self.drain(None);
        Ok(())
    }

    fn resume(
        &mut self,
        scenario: &Scenario,
        thread: &str,
        from: &ResumeSource,
    ) -> Result<(), String> {
        let id = ThreadId(thread.to_owned());
        if self.host.live_machine()?.has_thread(&id) {
            return Err(format!(
                "thread {thread:?} is already running in this process: `crash` or `restart` first"
            ));
        }
        let bytes = match from {
            ResumeSource::Own => self
                .host
                .read_rollout(thread)?
                .ok_or_else(|| format!("thread {thread:?} has no rollout to resume"))?,
            ResumeSource::File(path) => {
                let full = scenario.resolve(path);
                let bytes = crate::store::read_rollout_file(&full)
                    .map_err(|e| format!("cannot read rollout {}: {e}", full.display()))?;
                if self.host.store.exists(thread) {
                    return Err(format!(
                        "thread {thread:?} already has a rollout; resume it without `from`"
                    ));
                }
                self.host.write_rollout(thread, &bytes)?;
                bytes
            }
            ResumeSource::Thread(other) => {
                let bytes = self
                    .host
                    .read_rollout(other)?
                    .ok_or_else(|| format!("thread {other:?} has no rollout to copy"))?;
                if self.host.store.exists(thread) {
                    return Err(format!(
                        "thread {thread:?} already has a rollout; resume it without `from_thread`"
                    ));
                }
                self.host.write_rollout(thread, &bytes)?;
                bytes
            }
        };
        let now = self.now;
        let current = self.world.current_runtime(now);
        self.oracle.feed(now, Input::Resume(thread, &bytes));
        self.judge.resumed(&id, &bytes);
        let scan = self.host.machine_mut().resume_thread(now, id.clone(), &bytes);
        let restored = self.host.machine_mut().cached_task(&id).cloned();
        let last = match &scan.last_state {
            None => "no session_state".to_owned(),
            Some(s) => {
                format!("last session_state at line {}: {}", s.line, task_text(s.task.as_ref()))
            }
        };
        let text = format!(
            "resume: {} lines, {last}, {} skipped, restored {}",
            scan.lines,
            scan.skipped.len(),
            task_text(restored.as_ref())
        );
        self.ledger.note(now, thread, &text);
        for skipped in &scan.skipped {
            let text = format!("resume skipped line {}: {}", skipped.line, skipped.reason);
            self.ledger.note(now, thread, &text);
        }
        self.edges.hold = true;
        let commands = self.drain(None);
        self.edges.hold = false;
        self.ledger.observe(Observation::Resumed {
            thread: &id,
            bytes: &bytes,
            scan: &scan,
            current: current.as_deref(),
            restored: restored.as_ref(),
            commands: &commands,
        });
        self.feed_deferred();
        Ok(())
    }
}
