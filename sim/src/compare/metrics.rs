//! What `sim compare` measures in one session, and how sessions add up.
//!
//! Every measurement comes from the run's typed records (events with their typed `Failure`
//! cause, request records with their endpoint, thread, path and time, the timeline's step
//! entries, coverage-mark counts) and from what the generated session knows (which step opened a
//! thread, which turn came first after it, where the restarts are). None reads a message's
//! wording. [`METRICS`] defines each figure in words; `docs/policies.md` repeats those words.

use agentsim_core::{marks, EventKind, Failure};

use super::policy::Policy;
use super::session::{Opened, Role, Session};
use crate::fault::Endpoint;
use crate::report::{EntryKind, RequestRecord, RunReport};

/// What one session measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionMetrics {
    /// User turns that started (`task_started` events).
    pub turns: u64,
    /// Turns that ended with an agent `Error` (see [`is_agent_error`]).
    pub agent_error_turns: u64,
    /// Turns whose model request the backend refused with 401 (part of `agent_error_turns`).
    pub refused_turns: u64,
    /// Turns whose model request carried no task.
    pub turns_without_task: u64,
    /// Identity registration requests sent.
    pub identity_registrations: u64,
    /// Task registration requests sent.
    pub task_registrations: u64,
    /// Backend requests sent, every endpoint.
    pub requests: u64,
    /// Threads resumed from their own rollout.
    pub resumes: u64,
    /// Resumes that cost a registration persistence would have saved (see [`lost_on_resume`]).
    pub tasks_lost_on_resume: u64,
    /// Resumes whose rollout's last `session_state` held a stale task, which resume dropped.
    pub stale_tasks_carried: u64,
    /// Per first turn after a start or a fork that made a model request: virtual ms from its
    /// submission to that request.
    pub first_turn_after_start_ms: Vec<u64>,
    /// The same, per first turn after a resume.
    pub first_turn_after_resume_ms: Vec<u64>,
}

/// Whether an event is an agent `Error` ending a turn: the turn's ensure failed (rule 11), or
/// the backend refused the turn's model request with 401 (its assertion was refused: an
/// identity expired, revoked or unknown). Faults of the model endpoint itself (timeouts, 5xx)
/// are not the lifecycle's and are left out.
pub fn is_agent_error(kind: &EventKind) -> bool {
    let ensure_failed =
        matches!(kind, EventKind::Error { turn: Some(_), failure: Failure::TaskRegistration, .. });
    ensure_failed || is_refusal(kind)
}

/// Whether an event is a turn's model request refused with 401: the backend no longer accepts
/// the task the turn asserted (a restored or cached task of an identity that expired, was
/// revoked, or that it does not know).
pub fn is_refusal(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Error {
            turn: Some(_),
            failure: Failure::ModelRequest { status: Some(401) },
            ..
        }
    )
}

/// Measures one session's run. The run must have gone to the end (no violation): the step
/// entries of its timeline are matched with the session's steps by position.
pub fn measure(session: &Session, policy: &Policy, report: &RunReport) -> SessionMetrics {
    let tally = &report.tally;
    let count = |endpoint: Endpoint| tally.request_counts.get(&endpoint).copied().unwrap_or(0);
    let mark = |name: &str| tally.marks.get(name).copied().unwrap_or(0);
    let events = &tally.event_values;
    let turns = events.iter().filter(|e| matches!(e.kind, EventKind::TaskStarted { .. })).count();
    let agent_error_turns = events.iter().filter(|e| is_agent_error(&e.kind)).count();
    let refused_turns = events.iter().filter(|e| is_refusal(&e.kind)).count();
    // Flag off, no model request carries a task (rule 1), and core counts none as missing one.
    let turns_without_task = if policy.use_agent_identity {
        mark(marks::TURN_WITHOUT_TASK)
    } else {
        count(Endpoint::Model)
    };
    let steps = Steps::of(session, report);
    let mut metrics = SessionMetrics {
        turns: turns as u64,
        agent_error_turns: agent_error_turns as u64,
        refused_turns: refused_turns as u64,
        turns_without_task,
        identity_registrations: count(Endpoint::IdentityRegister),
        task_registrations: count(Endpoint::TaskRegister),
        requests: tally.request_counts.values().sum(),
        stale_tasks_carried: mark(marks::PERSISTED_TASK_DROPPED_STALE),
        ..SessionMetrics::default()
    };
    for (index, role) in session.roles.iter().enumerate() {
        match role {
            Role::FirstTurn(opened) => {
                let Some(ms) = steps.first_turn_latency(index, report) else { continue };
                match opened {
                    Opened::Start | Opened::Fork => metrics.first_turn_after_start_ms.push(ms),
                    Opened::Resume => metrics.first_turn_after_resume_ms.push(ms),
                }
            }
            Role::Open(Opened::Resume) => {
                metrics.resumes += 1;
                metrics.tasks_lost_on_resume += u64::from(steps.lost_on_resume(index, report));
            }
            _ => {}
        }
    }
    metrics
}

/// The session's steps with the virtual time each began at.
struct Steps<'a> {
    session: &'a Session,
    /// Virtual ms since the start at which each step began (the timeline's step entries).
    at_ms: Vec<u64>,
    /// When the run ended.
    end_ms: u64,
}

impl<'a> Steps<'a> {
    fn of(session: &'a Session, report: &RunReport) -> Steps<'a> {
        let entries = &report.tally.entries;
        let at_ms = entries.iter().filter(|e| e.kind == EntryKind::Step).map(|e| e.at_ms).collect();
        Steps { session, at_ms, end_ms: report.virtual_ms }
    }

    /// The thread a step names first.
    fn thread(&self, index: usize) -> &str {
        use crate::scenario::Step;
        match &self.session.steps[index] {
            Step::Turn { thread, .. } | Step::Start { thread } | Step::Resume { thread, .. } => {
                thread
            }
            Step::Fork { child, .. } => child,
            _ => "",
        }
    }

    /// The first-turn latency of the turn at step `index`: virtual ms from its submission to
    /// its model request. A turn with a current cached task needs no I/O first, so this is the
    /// time the lifecycle added to the turn. A turn that made no model request (it failed
    /// first) has none: the agent-error figure counts it.
    fn first_turn_latency(&self, index: usize, report: &RunReport) -> Option<u64> {
        let submitted = *self.at_ms.get(index)?;
        let until = self.at_ms.get(index + 1).copied().unwrap_or(self.end_ms);
        let thread = self.thread(index);
        let model = report.tally.request_records.iter().find(|r| {
            r.endpoint == Some(Endpoint::Model) && r.thread == thread && r.at_ms >= submitted
        })?;
        (model.at_ms <= until).then(|| model.at_ms - submitted)
    }

    /// Whether the resume at step `index` lost a task: the thread's first successful task
    /// registration after the resume (before the next restart) was under the same agent
    /// identity as the last one it made before it. The identity had not changed, so the task
    /// the thread held was still current when it resumed, and a persisted copy would have been
    /// restored with no call (rule 13).
    fn lost_on_resume(&self, index: usize, report: &RunReport) -> bool {
        let Some(&resumed) = self.at_ms.get(index) else { return false };
        let next_restart = (index + 1..self.session.roles.len())
            .find(|&i| self.session.roles[i] == Role::Restart)
            .and_then(|i| self.at_ms.get(i).copied())
            .unwrap_or(u64::MAX);
        let thread = self.thread(index);
        let registrations: Vec<&RequestRecord> = report
            .tally
            .request_records
            .iter()
            .filter(|r| {
                r.endpoint == Some(Endpoint::TaskRegister) && r.thread == thread && succeeded(r)
            })
            .collect();
        let before = registrations.iter().rev().find(|r| r.at_ms <= resumed);
        let after = registrations.iter().find(|r| r.at_ms > resumed && r.at_ms < next_restart);
        match (before, after) {
            (Some(before), Some(after)) => {
                runtime(before).is_some() && runtime(before) == runtime(after)
            }
            _ => false,
        }
    }
}

/// The identity a task registration was for: the runtime in its path.
fn runtime(record: &RequestRecord) -> Option<&str> {
    agentsim_core::wire::runtime_of_task_register_path(&record.path)
}

/// Whether a request was answered 2xx in time, with no fault (a reset or a timeout delivers
/// nothing).
pub fn succeeded(record: &RequestRecord) -> bool {
    record.fault.is_none() && record.delivered.is_some_and(|s| (200..300).contains(&s))
}

/// How a metric's sessions add up.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// `scale` times the sum of one count over the sum of another (the headline), with the
    /// spread of the same ratio per session (sessions where the denominator is not zero).
    Ratio {
        /// The counted thing.
        numerator: fn(&SessionMetrics) -> u64,
        /// What it is counted per.
        denominator: fn(&SessionMetrics) -> u64,
        /// `1000.0` for per 1,000, ...
        scale: f64,
    },
    /// One count per session: its mean (the headline) and spread.
    PerSession(fn(&SessionMetrics) -> u64),
    /// Samples pooled over sessions (latencies): their mean (the headline) and spread.
    Samples(fn(&SessionMetrics) -> &[u64]),
}

/// One figure of a comparison.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Its key in JSON and its chart's file name.
    pub key: &'static str,
    /// What it is, for titles.
    pub title: &'static str,
    /// What the y axis counts, in a few words.
    pub axis: &'static str,
    /// Its unit, for the y axis.
    pub unit: &'static str,
    /// Exactly what is counted.
    pub definition: &'static str,
    /// How sessions add up.
    pub shape: Shape,
}

/// Every figure, in the order reports show them. Sessions that hit an invariant violation are
/// counted apart and left out of these.
pub const METRICS: &[Metric] = &[
    Metric {
        key: "agent_error_turns",
        title: "Turns failed with an agent Error",
        axis: "failed turns",
        unit: "per 1,000 turns",
        definition: "turns that ended with an `Error` event caused by the lifecycle: the turn's \
                     task registration failed (rule 11), or the backend refused its model request \
                     with 401 (identity expired, revoked or unknown); per 1,000 turns",
        shape: Shape::Ratio {
            numerator: |m| m.agent_error_turns,
            denominator: |m| m.turns,
            scale: 1000.0,
        },
    },
    Metric {
        key: "refused_turns",
        title: "Turns whose task the backend refused",
        axis: "refused turns",
        unit: "per 1,000 turns",
        definition: "the part of those whose model request went out with a task the backend \
                     refused with 401 (a restored or cached task of an identity that had \
                     expired or was revoked); per 1,000 turns",
        shape: Shape::Ratio {
            numerator: |m| m.refused_turns,
            denominator: |m| m.turns,
            scale: 1000.0,
        },
    },
    Metric {
        key: "turns_without_task",
        title: "Turns run without a task",
        axis: "turns without a task",
        unit: "per 1,000 turns",
        definition: "turns whose model request carried no `AgentAssertion` (core's \
                     `turn_without_task` mark; every turn with the flag off); per 1,000 turns",
        shape: Shape::Ratio {
            numerator: |m| m.turns_without_task,
            denominator: |m| m.turns,
            scale: 1000.0,
        },
    },
    Metric {
        key: "identity_registrations_per_session",
        title: "Identity registrations per session",
        axis: "identity registrations",
        unit: "requests per session",
        definition: "identity registration requests (`POST /v1/agent/register`) per session, \
                     failed ones included",
        shape: Shape::PerSession(|m| m.identity_registrations),
    },
    Metric {
        key: "task_registrations_per_session",
        title: "Task registrations per session",
        axis: "task registrations",
        unit: "requests per session",
        definition: "task registration requests per session, failed ones included",
        shape: Shape::PerSession(|m| m.task_registrations),
    },
    Metric {
        key: "requests_per_session",
        title: "Backend requests per session",
        axis: "backend requests",
        unit: "requests per session",
        definition: "every backend request per session: biscuits, identity and task \
                     registrations, model requests",
        shape: Shape::PerSession(|m| m.requests),
    },
    Metric {
        key: "identity_registrations_per_turn",
        title: "Identity registrations per turn",
        axis: "identity registrations",
        unit: "requests per 1,000 turns",
        definition: "identity registration requests per 1,000 turns",
        shape: Shape::Ratio {
            numerator: |m| m.identity_registrations,
            denominator: |m| m.turns,
            scale: 1000.0,
        },
    },
    Metric {
        key: "task_registrations_per_turn",
        title: "Task registrations per turn",
        axis: "task registrations",
        unit: "requests per 1,000 turns",
        definition: "task registration requests per 1,000 turns",
        shape: Shape::Ratio {
            numerator: |m| m.task_registrations,
            denominator: |m| m.turns,
            scale: 1000.0,
        },
    },
    Metric {
        key: "requests_per_turn",
        title: "Backend requests per turn",
        axis: "backend requests",
        unit: "requests per turn",
        definition: "every backend request per turn (a warm turn makes one: its model request)",
        shape: Shape::Ratio { numerator: |m| m.requests, denominator: |m| m.turns, scale: 1.0 },
    },
    Metric {
        key: "first_turn_latency_after_start",
        title: "Latency added to the first turn after a start or fork",
        axis: "added latency",
        unit: "virtual ms",
        definition: "for the first turn of a new or forked thread that made a model request: \
                     virtual time from its submission to that request (a turn with a current \
                     cached task needs no I/O first, so all of it is added; a turn that failed \
                     first is counted as an agent error instead)",
        shape: Shape::Samples(|m| &m.first_turn_after_start_ms),
    },
    Metric {
        key: "first_turn_latency_after_resume",
        title: "Latency added to the first turn after a resume",
        axis: "added latency",
        unit: "virtual ms",
        definition: "the same, for the first turn of a thread resumed after a restart",
        shape: Shape::Samples(|m| &m.first_turn_after_resume_ms),
    },
    Metric {
        key: "tasks_lost_on_resume",
        title: "Tasks lost on resume",
        axis: "tasks lost",
        unit: "per 100 resumes",
        definition: "resumes after which the thread's first successful task registration was \
                     under the same agent identity as its last one before the restart: its task \
                     was still current, so persisting it would have saved that registration; \
                     per 100 resumes",
        shape: Shape::Ratio {
            numerator: |m| m.tasks_lost_on_resume,
            denominator: |m| m.resumes,
            scale: 100.0,
        },
    },
    Metric {
        key: "stale_tasks_carried",
        title: "Stale tasks carried in rollouts",
        axis: "stale tasks dropped at resume",
        unit: "per 100 resumes",
        definition: "resumes whose rollout's last `session_state` held a task that was stale \
                     by then (rule 13 dropped it: core's `persisted_task_dropped_stale` mark); \
                     per 100 resumes",
        shape: Shape::Ratio {
            numerator: |m| m.stale_tasks_carried,
            denominator: |m| m.resumes,
            scale: 100.0,
        },
    },
];

/// A metric over the sessions of one policy at one sweep point.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    /// The headline: the pooled ratio, or the mean.
    pub value: Option<f64>,
    /// The mean of the per-session values or samples.
    pub mean: Option<f64>,
    /// Percentiles (nearest rank) of the per-session values or samples.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// How many per-session values or samples the spread is over.
    pub samples: u64,
}

impl Metric {
    /// The metric over `sessions`.
    pub fn stat(&self, sessions: &[SessionMetrics]) -> Stat {
        match self.shape {
            Shape::Ratio { numerator, denominator, scale } => {
                let num: u64 = sessions.iter().map(numerator).sum();
                let den: u64 = sessions.iter().map(denominator).sum();
                let per_session: Vec<f64> = sessions
                    .iter()
                    .filter(|m| denominator(m) > 0)
                    .map(|m| scale * numerator(m) as f64 / denominator(m) as f64)
                    .collect();
                let value = (den > 0).then(|| scale * num as f64 / den as f64);
                Stat { value, ..spread(per_session) }
            }
            Shape::PerSession(count) => {
                let values = sessions.iter().map(|m| count(m) as f64).collect();
                let stat = spread(values);
                Stat { value: stat.mean, ..stat }
            }
            Shape::Samples(samples) => {
                let values = sessions.iter().flat_map(samples).map(|ms| *ms as f64).collect();
                let stat = spread(values);
                Stat { value: stat.mean, ..stat }
            }
        }
    }
}

/// The mean and nearest-rank percentiles of `values`.
fn spread(mut values: Vec<f64>) -> Stat {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |p: f64| -> Option<f64> {
        let k = ((p / 100.0) * n as f64).ceil() as usize;
        values.get(k.clamp(1, n.max(1)) - 1).copied()
    };
    let mean = (n > 0).then(|| values.iter().sum::<f64>() / n as f64);
    Stat { value: None, mean, p50: rank(50.0), p95: rank(95.0), p99: rank(99.0), samples: n as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::workload::Workload;
    use crate::scenario::{ConfigChange, ResumeSource, Step};

    /// Start T1, a turn, a pause of `pause_ms`, a restart, then T1 resumed and its turn at once.
    fn resume_session() -> impl Fn(u64) -> Session {
        |pause_ms| {
            let turn = || Step::Turn { thread: "T1".into(), text: "hello".into(), wait: true };
            let steps = vec![
                Step::Start { thread: "T1".into() },
                turn(),
                Step::Advance { ms: pause_ms },
                Step::Restart(ConfigChange::default()),
                Step::Resume { thread: "T1".into(), from: ResumeSource::Own },
                turn(),
            ];
            let roles = vec![
                Role::Open(Opened::Start),
                Role::FirstTurn(Opened::Start),
                Role::Plain,
                Role::Restart,
                Role::Open(Opened::Resume),
                Role::FirstTurn(Opened::Resume),
            ];
            Session { seed: 5, steps, roles }
        }
    }

    /// Runs `session` under `policy` with no background faults and an identity TTL of `ttl`.
    fn measured(session: &Session, policy: &str, ttl: &str) -> SessionMetrics {
        let mut workload = Workload::default();
        for endpoint in ["biscuit", "identity_register", "task_register", "model"] {
            workload.set(&format!("fault_{endpoint}"), "0").unwrap();
        }
        workload.set("identity_ttl", ttl).unwrap();
        let policy = Policy::parse(policy).unwrap();
        let scenario = session.scenario(&workload, &policy);
        let options = crate::RunOptions::default();
        let report = crate::run(&scenario, &options).unwrap();
        assert!(report.passed(), "{}", report.verdict());
        measure(session, &policy, &report)
    }

    #[test]
    fn a_resume_without_persistence_loses_a_task_that_was_still_current() {
        let session = resume_session()(60_000);
        let kept = measured(&session, "persist_task=true", "1d");
        let lost = measured(&session, "persist_task=false", "1d");
        assert_eq!((kept.resumes, kept.tasks_lost_on_resume, kept.task_registrations), (1, 0, 1));
        assert_eq!((lost.resumes, lost.tasks_lost_on_resume, lost.task_registrations), (1, 1, 2));
        // Restored, the task needs no I/O before the turn; lost, the turn waits for a new one.
        assert_eq!(kept.first_turn_after_resume_ms, [0]);
        assert!(lost.first_turn_after_resume_ms[0] > 0);
        assert_eq!((kept.turns, kept.agent_error_turns, kept.stale_tasks_carried), (2, 0, 0));
    }

    #[test]
    fn a_resume_after_the_identity_expired_loses_nothing_and_drops_a_stale_task() {
        let session = resume_session()(2 * 60_000);
        let kept = measured(&session, "persist_task=true", "1m");
        let lost = measured(&session, "persist_task=false", "1m");
        assert_eq!((kept.tasks_lost_on_resume, kept.stale_tasks_carried), (0, 1));
        assert_eq!((lost.tasks_lost_on_resume, lost.stale_tasks_carried), (0, 0));
        assert_eq!((kept.identity_registrations, lost.identity_registrations), (2, 2));
        // As shipped, the expired identity is kept and its task restored: the turn goes out at
        // once with it, and the backend refuses it.
        let shipped = measured(&session, "expiry=as_shipped", "1m");
        assert_eq!((shipped.agent_error_turns, shipped.refused_turns), (1, 1));
        assert_eq!(shipped.first_turn_after_resume_ms, [0]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let stat = spread((1..=100).map(f64::from).collect());
        assert_eq!((stat.p50, stat.p95, stat.p99), (Some(50.0), Some(95.0), Some(99.0)));
        assert_eq!(stat.mean, Some(50.5));
        let one = spread(vec![7.0]);
        assert_eq!((one.p50, one.p99), (Some(7.0), Some(7.0)));
        assert_eq!(spread(Vec::new()).p50, None);
    }

    #[test]
    fn a_ratio_pools_its_sessions() {
        let session = |turns, errors| SessionMetrics {
            turns,
            agent_error_turns: errors,
            ..SessionMetrics::default()
        };
        let stat = METRICS[0].stat(&[session(10, 1), session(90, 0)]);
        assert_eq!(stat.value, Some(10.0));
        assert_eq!(stat.mean, Some(50.0));
        assert_eq!(stat.samples, 2);
    }
}
