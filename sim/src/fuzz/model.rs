//! The generator-side model: abstract ops to scenario steps, the liveness phase, and the
//! reference model's predictions.
//!
//! The model tracks only what the generator can know for sure without running anything: which
//! thread names exist, which run in the current process, which certainly have a rollout, whether
//! the process is certainly alive, the auth, and whether the world has been quiet. An op that
//! would be illegal in that state (a turn on a thread that is not running, a resume of a thread
//! with no rollout, anything that needs a process after a crash) is skipped, so every subsequence
//! of ops gives a valid scenario: that is what keeps proptest's shrinking inside valid inputs.
//!
//! Armed crash points make the process's survival unknowable (the crash fires at an append or a
//! response the generator cannot predict), so after an armed crash point the model treats the
//! process as gone from the first step that could fire it until the next `restart`.
//!
//! The predictions are written as the scenario's `expect` lines, so a failure replays with
//! `sim scenario <file>` and needs no Rust to read:
//!
//! - flag off: no agent requests, no `session_state` lines, no task (spec rule 1);
//! - `persist_task = false`: no `session_state` lines (rule 20);
//! - liveness (invariant 12): after `heal`, a restart and resumes, `settle`, and (when identities
//!   may have expired or been refused) a step that gives the backend a valid identity again, one
//!   more turn per live thread leaves each with a current task, persisted as the last
//!   `session_state` of its rollout (invariant 13);
//!
//! Everything else (each request, rollout line and event of every step, faults and world events
//! included) is predicted exactly by the reference model of `crate::oracle` while the case runs;
//! the request-count bounds this generator once wrote for quiet runs were special cases of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agentsim_core::ExpiryPolicy;

use super::gen::{AdvanceBy, AuthChoice, Op, Swarm};
use super::FuzzCase;
use crate::fault::Endpoint;
use crate::scenario::{
    AuthSpec, Cmp, ConfigChange, CrashPoint, Expect, LastStateExpect, Located, ResumeSource,
    Scenario, ScenarioConfig, Step, TaskExpect,
};

mod edges;

/// Thread names, in the order a case takes them.
pub const THREAD_NAMES: [&str; 4] = ["A", "B", "C", "D"];

/// Whether `restart` disarms a pending `crash on_response`. An armed crash point belongs to the
/// process it was set in: the engine clears both arms when that process dies (by the arm firing,
/// a `crash`, or a `restart`), so the model does too.
const RESTART_DISARMS_RESPONSE_CRASH: bool = true;

/// Below this identity TTL no identity stays usable through the liveness phase (a few turns at the
/// slowest latency, each behind a biscuit and registrations), so liveness cannot be promised:
/// such cases make no liveness prediction rather than a wrong one.
pub const LIVENESS_MIN_TTL_MS: u64 = 60_000;

/// A case turned into a scenario, with what the model knew while doing it.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario: the case's seed and configuration, its legal steps, the liveness phase and
    /// the predictions.
    pub scenario: Scenario,
    /// Steps that came from the case's ops (the rest is the liveness phase).
    pub body_steps: usize,
    /// Whether the liveness predictions were made (not when an armed crash may still fire).
    pub liveness_checked: bool,
    /// Whether the run was quiet enough for the strict request-count predictions.
    pub quiet: bool,
}

/// Turns a case into its scenario.
pub fn plan(case: &FuzzCase) -> Plan {
    let mut model = Model::new(&case.swarm);
    for op in &case.ops {
        model.apply(op);
    }
    let body_steps = model.steps.len();
    let liveness_checked = model.liveness_phase();
    let expects = model.predictions(liveness_checked);
    let swarm = &case.swarm;
    let quiet = model.quiet();
    let kind = if quiet {
        "quiet"
    } else if swarm.faults.kinds.is_empty() {
        "no faults"
    } else {
        "storm"
    };
    let description = format!(
        "fuzz case {}: {body_steps} generated steps and {} liveness steps over {} thread name(s), {kind}",
        case.seed,
        model.steps.len() - body_steps,
        swarm.threads,
    );
    let config = ScenarioConfig {
        seed: Some(case.seed),
        expiry: swarm.expiry,
        persist_task: swarm.persist_task,
        use_agent_identity: swarm.use_agent_identity,
        identity_ttl_ms: swarm.identity_ttl_ms,
        identity: swarm.identity,
        auth: auth_spec(swarm.auth),
        latency_ms: swarm.latency_ms,
        random_faults: swarm.faults.clone(),
    };
    let scenario = Scenario {
        name: format!("fuzz-{}", case.seed),
        path: PathBuf::from(format!("fuzz-{}.scn", case.seed)),
        description,
        config,
        faults: Vec::new(),
        steps: model.steps.into_iter().map(|value| Located { line: 0, value }).collect(),
        expects: expects
            .into_iter()
            .chain(case.extra_expects.iter().cloned())
            .map(|value| Located { line: 0, value })
            .collect(),
    };
    Plan { scenario, body_steps, liveness_checked, quiet }
}

/// The scenario auth of a choice.
pub fn auth_spec(choice: AuthChoice) -> AuthSpec {
    match choice {
        AuthChoice::Home => {
            AuthSpec::ChatGpt { account: "acct-1".into(), user: Some("user-1".into()) }
        }
        AuthChoice::Other => AuthSpec::ChatGpt { account: "acct-2".into(), user: None },
        AuthChoice::ApiKey => AuthSpec::ApiKey,
        AuthChoice::SignedOut => AuthSpec::None,
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ThreadState {
    /// Runs in the current process.
    live: bool,
    /// Certainly has a rollout (so it can be resumed or forked from).
    rollout: bool,
}

#[derive(Debug)]
struct Model<'a> {
    swarm: &'a Swarm,
    steps: Vec<Step>,
    /// Introduced threads, by name (name order is introduction order's pool order).
    threads: BTreeMap<String, ThreadState>,
    /// The process is certainly alive.
    process_up: bool,
    append_armed: bool,
    response_armed: bool,
    /// An `on` arm may still fire (it fires at a request the model cannot place).
    world_armed: bool,
    /// An armed expiry or revocation may still fire, so a rotation does not untaint.
    taint_armed: bool,
    /// The process was certainly killed (`crash`), so no thread runs.
    process_dead: bool,
    /// An armed auth change may have fired: the auth is not known.
    auth_uncertain: bool,
    /// Some rollout was damaged (a damaged task may fail turns).
    damaged: bool,
    auth: AuthChoice,
    /// The backend may refuse the stored identity (expired or revoked by hand).
    tainted: bool,
    /// No world event so far: rotation, expiry, revocation, auth change, armed crash.
    world_quiet: bool,
    /// The running process's policies (the swarm's, until a `restart` changes them).
    use_agent_identity: bool,
    persist_task: bool,
    expiry: ExpiryPolicy,
    /// Some process ran with the flag on.
    ever_used_agent_identity: bool,
    /// Some process ran with the flag on and `persist_task` on, so it may have written lines.
    ever_persisting: bool,
}

impl<'a> Model<'a> {
    fn new(swarm: &'a Swarm) -> Model<'a> {
        Model {
            swarm,
            steps: Vec::new(),
            threads: BTreeMap::new(),
            process_up: true,
            append_armed: false,
            response_armed: false,
            world_armed: false,
            taint_armed: false,
            process_dead: false,
            auth_uncertain: false,
            damaged: false,
            auth: swarm.auth,
            tainted: false,
            world_quiet: true,
            use_agent_identity: swarm.use_agent_identity,
            persist_task: swarm.persist_task,
            expiry: swarm.expiry,
            ever_used_agent_identity: swarm.use_agent_identity,
            ever_persisting: swarm.use_agent_identity && swarm.persist_task,
        }
    }

    /// Quiet: no faults, no TTL, no damage and no world event (a label for case descriptions and
    /// the generator's own statistics).
    fn quiet(&self) -> bool {
        self.world_quiet
            && !self.damaged
            && self.swarm.faults.rate_per_mille.is_empty()
            && self.swarm.identity_ttl_ms.is_none()
    }

    fn names(&self) -> &'static [&'static str] {
        &THREAD_NAMES[..usize::from(self.swarm.threads.clamp(1, 4))]
    }

    /// Threads that certainly have a rollout (to fork, copy or resume from).
    fn with_rollout(&self) -> Vec<String> {
        self.threads.iter().filter(|(_, t)| t.rollout).map(|(n, _)| n.clone()).collect()
    }

    fn live(&self) -> Vec<String> {
        self.threads.iter().filter(|(_, t)| t.live).map(|(n, _)| n.clone()).collect()
    }

    fn pick(list: &[String], index: u8) -> Option<String> {
        (!list.is_empty()).then(|| list[usize::from(index) % list.len()].clone())
    }

    /// Applies one op: pushes its step if it is legal now, and updates the model.
    fn apply(&mut self, op: &Op) {
        let world_event = matches!(
            op,
            Op::Auth(_)
                | Op::RotateIdentity
                | Op::ExpireIdentity
                | Op::RevokeIdentity
                | Op::CrashOnAppend(_)
                | Op::CrashOnResponse(_)
                | Op::Reconfigure(_)
                | Op::On(..)
        );
        if world_event && !self.swarm.world_events {
            return;
        }
        if let Op::ForkDuringPrewarm(i) = op {
            self.fork_during_prewarm(*i);
            return;
        }
        if let Op::ResumeAway(i, away) = op {
            self.resume_away(*i, *away);
            return;
        }
        let Some(step) = self.step_for(op) else { return };
        if world_event {
            self.world_quiet = false;
        }
        self.push(step);
    }

    /// The step an op stands for in the current state, or `None` when it is illegal now.
    fn step_for(&self, op: &Op) -> Option<Step> {
        let up = self.process_up;
        match op {
            Op::Open(i) => {
                let name = self.names()[usize::from(*i) % self.names().len()].to_owned();
                match self.threads.get(&name) {
                    None if up => Some(Step::Start { thread: name }),
                    Some(t) if up && !t.live && t.rollout => {
                        Some(Step::Resume { thread: name, from: ResumeSource::Own })
                    }
                    _ => None,
                }
            }
            Op::Fork(i) => {
                let child =
                    self.names().iter().find(|n| !self.threads.contains_key(**n))?.to_string();
                let parent = Self::pick(&self.with_rollout(), *i).filter(|_| up)?;
                Some(Step::Fork { child, parent })
            }
            Op::Turn(i) | Op::Submit(i) => {
                let thread = Self::pick(&self.live(), *i).filter(|_| up)?;
                Some(Step::Turn { thread, text: "hello".into(), wait: matches!(op, Op::Turn(_)) })
            }
            Op::Compact(i) => {
                let thread = Self::pick(&self.live(), *i).filter(|_| up)?;
                Some(Step::Compact { thread })
            }
            Op::Rollback(i, turns) => {
                let thread = Self::pick(&self.live(), *i).filter(|_| up)?;
                Some(Step::Rollback { thread, turns: u32::from(*turns) })
            }
            Op::Settle => Some(Step::Settle),
            Op::Advance(by) => Some(Step::Advance { ms: self.advance_ms(*by) }),
            Op::Restart => Some(Step::Restart(ConfigChange::default())),
            Op::Reconfigure(change) => Some(Step::Restart(change.clone())),
            Op::RotateIdentity => Some(Step::RotateIdentity),
            Op::Auth(choice) => Some(Step::Auth(auth_spec(*choice))),
            Op::ExpireIdentity => Some(Step::ExpireIdentity),
            Op::RevokeIdentity => Some(Step::RevokeIdentity),
            Op::Crash => Some(Step::Crash(CrashPoint::Now)),
            Op::CrashOnAppend(i) => {
                let thread = Self::pick(&self.live(), *i).filter(|_| up && !self.append_armed)?;
                Some(Step::Crash(CrashPoint::OnAppend(thread)))
            }
            Op::CrashOnResponse(endpoint) => (up && !self.response_armed)
                .then_some(Step::Crash(CrashPoint::OnResponse(*endpoint))),
            Op::Heal => Some(Step::Heal),
            Op::AdvanceToExpiry(_)
            | Op::ResumeFromThread(..)
            | Op::Damage(..)
            | Op::On(..)
            | Op::ForkDuringPrewarm(_)
            | Op::ResumeAway(..) => self.edge_step(op),
        }
    }

    fn advance_ms(&self, by: AdvanceBy) -> u64 {
        match by {
            AdvanceBy::Short(ms) | AdvanceBy::Medium(ms) => ms,
            AdvanceBy::PastTtl => self.swarm.identity_ttl_ms.map_or(3_600_000, |ttl| ttl + 1_000),
        }
    }

    /// Pushes a legal step and updates the model.
    fn push(&mut self, step: Step) {
        match &step {
            Step::Start { thread } => {
                // A new rollout begins with its `session_meta` at once.
                self.threads.insert(thread.clone(), ThreadState { live: true, rollout: true });
            }
            Step::Resume { thread, from: ResumeSource::Thread(_) } => {
                self.threads.insert(thread.clone(), ThreadState { live: true, rollout: true });
            }
            Step::Resume { thread, .. } => {
                self.threads.get_mut(thread).expect("resumed threads exist").live = true;
            }
            Step::Fork { child, .. } => {
                self.threads.insert(child.clone(), ThreadState { live: true, rollout: true });
            }
            Step::Compact { thread } | Step::Rollback { thread, .. } => {
                let t = self.threads.get_mut(thread).expect("history operations on live threads");
                t.rollout = true;
            }
            Step::Turn { thread, .. } => {
                let t = self.threads.get_mut(thread).expect("turns run on existing threads");
                // `begin_turn` appends the user message at once (or an earlier turn already did).
                t.rollout = true;
            }
            Step::Restart(change) => {
                self.use_agent_identity =
                    change.use_agent_identity.unwrap_or(self.use_agent_identity);
                self.persist_task = change.persist_task.unwrap_or(self.persist_task);
                self.expiry = change.expiry.unwrap_or(self.expiry);
                self.ever_used_agent_identity |= self.use_agent_identity;
                self.ever_persisting |= self.use_agent_identity && self.persist_task;
                self.process_up = true;
                self.process_dead = false;
                self.append_armed = false;
                self.world_armed = false;
                self.taint_armed = false;
                if RESTART_DISARMS_RESPONSE_CRASH {
                    self.response_armed = false;
                }
                self.stop_threads();
            }
            Step::Crash(CrashPoint::Now) => {
                self.process_up = false;
                self.process_dead = true;
                self.append_armed = false;
                self.world_armed = false;
                self.taint_armed = false;
                self.stop_threads();
            }
            Step::Crash(CrashPoint::OnAppend(_)) => self.append_armed = true,
            Step::Crash(CrashPoint::OnResponse(_)) => self.response_armed = true,
            Step::RotateIdentity => {
                if matches!(self.auth, AuthChoice::Home | AuthChoice::Other)
                    && !self.taint_armed
                    && !self.auth_uncertain
                {
                    self.tainted = false;
                }
            }
            Step::ExpireIdentity | Step::RevokeIdentity => self.tainted = true,
            Step::Auth(spec) => {
                self.auth = match spec {
                    AuthSpec::None => AuthChoice::SignedOut,
                    AuthSpec::ApiKey => AuthChoice::ApiKey,
                    AuthSpec::ChatGpt { account, .. } if account == "acct-1" => AuthChoice::Home,
                    AuthSpec::ChatGpt { .. } => AuthChoice::Other,
                };
            }
            Step::Damage { .. } | Step::On { .. } => self.push_edge(&step),
            Step::Settle | Step::Advance { .. } | Step::AdvanceToExpiry { .. } | Step::Heal => {}
        }
        if self.process_up && self.may_kill(&step) {
            self.process_up = false;
            self.stop_threads();
        }
        self.steps.push(step);
    }

    /// Whether an armed crash point could fire during this step.
    fn may_kill(&self, step: &Step) -> bool {
        let runs_the_loop = matches!(
            step,
            Step::Turn { wait: true, .. }
                | Step::Settle
                | Step::Advance { .. }
                | Step::AdvanceToExpiry { .. }
        );
        let drives_the_machine = runs_the_loop
            || matches!(
                step,
                Step::Start { .. }
                    | Step::Resume { .. }
                    | Step::Fork { .. }
                    | Step::Turn { .. }
                    | Step::Compact { .. }
                    | Step::Rollback { .. }
                    | Step::RotateIdentity
                    | Step::Auth(_)
            );
        (self.response_armed && runs_the_loop) || (self.append_armed && drives_the_machine)
    }

    fn stop_threads(&mut self) {
        for t in self.threads.values_mut() {
            t.live = false;
        }
    }

    /// Appends the liveness phase; returns whether its predictions can be made.
    fn liveness_phase(&mut self) -> bool {
        self.push(Step::Heal);
        if self.world_armed {
            // An armed world change could fire during the phase (a sign-out after the last
            // sign-in): a restart disarms it first.
            self.push(Step::Restart(ConfigChange::default()));
        }
        if self.auth_uncertain {
            // An armed auth change may have fired: the phase signs in again, whatever the auth.
            self.push(Step::Auth(auth_spec(AuthChoice::Home)));
        } else if !matches!(self.auth, AuthChoice::Home | AuthChoice::Other) {
            // The one auth change of the phase: not a world event for the quiet predictions (a
            // late sign-in registers at most one identity and one task per waiting session).
            self.push(Step::Auth(auth_spec(AuthChoice::Home)));
        }
        if !self.process_up || self.append_armed {
            // A restart also disarms a torn append that has not fired yet.
            self.push(Step::Restart(ConfigChange::default()));
        }
        let resumable: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, t)| !t.live && t.rollout)
            .map(|(n, _)| n.clone())
            .collect();
        for thread in resumable {
            self.push(Step::Resume { thread, from: ResumeSource::Own });
        }
        if self.threads.is_empty() {
            self.push(Step::Start { thread: THREAD_NAMES[0].to_owned() });
        }
        if self.response_armed {
            // The armed crash may fire at any response from here on: submit without waiting (no
            // step runs the loop, so the process is certainly alive for each), predict nothing.
            for thread in self.live() {
                self.push(Step::Turn { thread, text: "hello".into(), wait: false });
            }
            return false;
        }
        self.push(Step::Settle);
        if self.use_agent_identity {
            let reacquire = self.expiry == ExpiryPolicy::Reacquire;
            if let Some(ttl) = self.swarm.identity_ttl_ms.filter(|_| reacquire) {
                // Every identity so far counts as expired: the turns below register a fresh one,
                // valid for longer than the phase lasts.
                self.push(Step::Advance { ms: ttl + 1_000 });
            } else if self.swarm.identity_ttl_ms.is_some() || (self.tainted && !reacquire) {
                // Under `as_shipped` a refused identity is kept and every turn fails while the
                // backend refuses it (rule 19): only a new identity in the auth store ends that.
                self.push(Step::RotateIdentity);
            } else if self.tainted {
                // Under `reacquire` the client learns of an expiry or revocation from the backend's
                // refusal, which fails that one turn: one round of turns teaches every thread.
                for thread in self.live() {
                    self.push(Step::Turn { thread, text: "hello".into(), wait: true });
                }
            }
        }
        for thread in self.live() {
            self.push(Step::Turn { thread, text: "hello".into(), wait: true });
        }
        // With a TTL this short no identity stays usable through the phase.
        self.swarm.identity_ttl_ms.is_none_or(|ttl| ttl >= LIVENESS_MIN_TTL_MS)
    }

    /// The reference model's predictions, as expectations.
    fn predictions(&self, liveness_checked: bool) -> Vec<Expect> {
        let mut out = Vec::new();
        let all: Vec<String> = self.threads.keys().cloned().collect();
        let live = self.live();
        let no_state_lines = |out: &mut Vec<Expect>| {
            for thread in &all {
                out.push(Expect::SessionStateLines {
                    thread: thread.clone(),
                    cmp: Cmp::Eq,
                    count: 0,
                });
            }
        };
        if !self.ever_used_agent_identity {
            for endpoint in [Endpoint::Biscuit, Endpoint::IdentityRegister, Endpoint::TaskRegister]
            {
                out.push(Expect::Requests { endpoint, cmp: Cmp::Eq, count: 0 });
            }
        }
        if !self.ever_persisting {
            no_state_lines(&mut out);
        }
        if !self.use_agent_identity {
            for thread in &live {
                out.push(Expect::Task { thread: thread.clone(), state: TaskExpect::None });
            }
        } else {
            if liveness_checked {
                for thread in &live {
                    out.push(Expect::Task { thread: thread.clone(), state: TaskExpect::Current });
                    if self.persist_task {
                        out.push(Expect::LastState {
                            thread: thread.clone(),
                            state: LastStateExpect::Task,
                        });
                    }
                }
            }
        }
        out
    }
}
