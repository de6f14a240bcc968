//! One session of the workload, drawn from its seed alone: the steps a user and the world take,
//! and the role of each step the metrics look at.
//!
//! A session has 1 to `threads_max` threads, each with its number of user turns; the turns of
//! all threads are shuffled into one sequence (the user moves between threads), and between two
//! consecutive turns the user thinks for a time drawn log-uniformly from `think_min` to
//! `think_max`. During a think time, the process may restart and the backend may revoke the
//! identity (each a Poisson process over the think time, at most one of each per think time, at
//! a uniform moment in it). A thread's first turn starts it; after a restart, the thread is
//! resumed (or, `fork_percent` of the time, forked, the user going on in the fork) when its next
//! turn comes. The first turn after a start, resume or fork is submitted at once
//! (`prompt_at_open` percent of the time) or after a delay of 1 s to `open_delay_max`.
//!
//! Only the steps depend on the seed; the policies, the identity TTL, the latencies and the
//! background faults go in the header ([`Session::scenario`]), so the same seed gives the same
//! steps under every policy (and every TTL of a sweep): what differs is the policy's doing.

use std::path::PathBuf;

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;

use super::policy::Policy;
use super::workload::Workload;
use crate::fault::RandomFaults;
use crate::scenario::{ConfigChange, Located, ResumeSource, Scenario, ScenarioConfig, Step};
use crate::seed;

const DAY_MS: f64 = 86_400_000.0;

/// How a thread came to be running before a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Opened {
    /// `start`: a new thread.
    Start,
    /// `fork`: a new thread copied from a stopped one.
    Fork,
    /// `resume`: a thread resumed from its own rollout after a restart.
    Resume,
}

/// What a step is to the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing the metrics single out (`advance`, a turn of a thread already warm, a revocation).
    Plain,
    /// A thread is started, forked or resumed.
    Open(Opened),
    /// The first turn after the thread was opened.
    FirstTurn(Opened),
    /// A later turn.
    Turn,
    /// The process restarts.
    Restart,
}

/// A generated session: its seed (which also seeds the engine's run) and its steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The session's seed.
    pub seed: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What each step is (same length as `steps`).
    pub roles: Vec<Role>,
}

/// The running state of one of the user's threads while a session is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not started yet.
    New,
    /// Running in the current process.
    Live,
    /// Stopped by a restart; its next turn resumes or forks it.
    Stopped,
}

/// Draws the session of `seed`.
pub fn generate(workload: &Workload, seed: u64) -> Session {
    let mut draw = Draw(seed::stream(seed, "compare/session"));
    let threads = draw.uniform(1, workload.threads_max) as usize;
    let mut order: Vec<usize> = Vec::new();
    for thread in 0..threads {
        let turns = draw.uniform(1, 2 * workload.turns_per_thread - 1);
        order.extend(std::iter::repeat_n(thread, turns as usize));
    }
    draw.shuffle(&mut order);
    let mut b = Builder {
        session: Session { seed, steps: Vec::new(), roles: Vec::new() },
        names: vec![String::new(); threads],
        states: vec![State::New; threads],
        created: 0,
    };
    for (k, &thread) in order.iter().enumerate() {
        if k > 0 {
            b.think(workload, &mut draw);
        }
        b.turn(workload, &mut draw, thread);
    }
    b.session
}

impl Session {
    /// The scenario this session runs under `policy`, with the workload's header values (TTL,
    /// latencies, background faults) and the session's seed.
    pub fn scenario(&self, workload: &Workload, policy: &Policy) -> Scenario {
        let mut config = ScenarioConfig {
            seed: Some(self.seed),
            identity_ttl_ms: workload.identity_ttl_ms,
            latency_ms: workload.latency_ms,
            ..ScenarioConfig::default()
        };
        policy.apply(&mut config);
        if !workload.fault_rates.is_empty() {
            config.random_faults = RandomFaults {
                rate_per_mille: workload.fault_rates.clone(),
                kinds: workload.fault_kinds.clone(),
            };
        }
        let name = format!("compare-{}", self.seed);
        Scenario {
            path: PathBuf::from(format!("{name}.scn")),
            name,
            description: format!("sim compare: a generated session (seed {})", self.seed),
            config,
            faults: Vec::new(),
            steps: self.steps.iter().map(|s| Located { line: 0, value: s.clone() }).collect(),
            expects: Vec::new(),
        }
    }

    /// How many user turns the session has.
    pub fn turns(&self) -> usize {
        self.roles.iter().filter(|r| matches!(r, Role::Turn | Role::FirstTurn(_))).count()
    }
}

/// A session being drawn: the steps so far and the user's threads.
struct Builder {
    session: Session,
    /// The scenario name each of the user's threads goes by now (a fork gives it a new one).
    names: Vec<String>,
    states: Vec<State>,
    /// Thread names handed out so far.
    created: usize,
}

impl Builder {
    fn push(&mut self, step: Step, role: Role) {
        self.session.steps.push(step);
        self.session.roles.push(role);
    }

    fn advance(&mut self, ms: u64) {
        if ms > 0 {
            self.push(Step::Advance { ms }, Role::Plain);
        }
    }

    fn new_name(&mut self) -> String {
        self.created += 1;
        format!("T{}", self.created)
    }

    /// A think time, with the restart and the revocation that may fall in it, each at its moment.
    /// Every think time draws the same numbers whatever happens in it, so a sweep of a rate
    /// changes where restarts fall and nothing else.
    fn think(&mut self, workload: &Workload, draw: &mut Draw) {
        let gap = draw.log_uniform(workload.think_min_ms, workload.think_max_ms);
        let (restart, restart_at) =
            (draw.chance(workload.restarts_per_day * gap as f64 / DAY_MS), draw.uniform(0, gap));
        let (revoke, revoke_at) =
            (draw.chance(workload.revocations_per_day * gap as f64 / DAY_MS), draw.uniform(0, gap));
        let mut happenings: Vec<(u64, Step, Role)> = Vec::new();
        if restart {
            happenings.push((restart_at, Step::Restart(ConfigChange::default()), Role::Restart));
        }
        if revoke {
            happenings.push((revoke_at, Step::RevokeIdentity, Role::Plain));
        }
        // At the same moment, the restart comes first (the order they were drawn in).
        happenings.sort_by_key(|(at, ..)| *at);
        let mut now = 0;
        for (at, step, role) in happenings {
            self.advance(at - now);
            now = at;
            if role == Role::Restart {
                for state in &mut self.states {
                    if *state == State::Live {
                        *state = State::Stopped;
                    }
                }
            }
            self.push(step, role);
        }
        self.advance(gap - now);
    }

    /// A turn of the user's thread `thread`, opening it first when it is not running.
    fn turn(&mut self, workload: &Workload, draw: &mut Draw, thread: usize) {
        // Drawn for every turn, used or not, so that one choice never shifts the next draws.
        let fork = draw.percent(workload.fork_percent);
        let prompt_at_open = draw.percent(workload.prompt_at_open_percent);
        let delay = draw.uniform(1_000, workload.open_delay_max_ms.max(1_000));
        let opened = match self.states[thread] {
            State::Live => None,
            State::New => {
                self.names[thread] = self.new_name();
                let step = Step::Start { thread: self.names[thread].clone() };
                self.push(step, Role::Open(Opened::Start));
                Some(Opened::Start)
            }
            State::Stopped if fork => {
                let parent = self.names[thread].clone();
                self.names[thread] = self.new_name();
                let step = Step::Fork { child: self.names[thread].clone(), parent };
                self.push(step, Role::Open(Opened::Fork));
                Some(Opened::Fork)
            }
            State::Stopped => {
                let step =
                    Step::Resume { thread: self.names[thread].clone(), from: ResumeSource::Own };
                self.push(step, Role::Open(Opened::Resume));
                Some(Opened::Resume)
            }
        };
        self.states[thread] = State::Live;
        if opened.is_some() && !prompt_at_open {
            self.advance(delay);
        }
        let step =
            Step::Turn { thread: self.names[thread].clone(), text: "hello".into(), wait: true };
        self.push(step, opened.map_or(Role::Turn, Role::FirstTurn));
    }
}

/// The session's random stream, with the few shapes of draw it needs.
struct Draw(ChaCha20Rng);

impl Draw {
    /// Uniform in `low..=high`.
    fn uniform(&mut self, low: u64, high: u64) -> u64 {
        seed::uniform(&mut self.0, low, high.max(low))
    }

    /// Uniform in `[0, 1)`, from 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `1 - e^(-expected)`: at least one event of a Poisson process with
    /// that many expected events.
    fn chance(&mut self, expected: f64) -> bool {
        let roll = self.unit();
        expected > 0.0 && roll < 1.0 - (-expected).exp()
    }

    /// True `percent` times in 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.uniform(0, 99) < percent
    }

    /// Log-uniform in `low..=high` (both at least 1), in whole milliseconds.
    fn log_uniform(&mut self, low: u64, high: u64) -> u64 {
        let (low, high) = (low.max(1) as f64, high.max(low.max(1)) as f64);
        let value = low * (high / low).powf(self.unit());
        (value.round() as u64).clamp(low as u64, high as u64)
    }

    /// Fisher-Yates, from the stream.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.uniform(0, i as u64) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::policy::DEFAULT_POLICIES;

    #[test]
    fn a_session_reads_back_from_its_scenario_text() {
        let workload = Workload::default();
        for seed in 0..50 {
            let session = generate(&workload, seed);
            assert_eq!(session.steps.len(), session.roles.len());
            assert!(session.turns() >= 1);
            let policy = Policy::parse(DEFAULT_POLICIES[1]).unwrap();
            let scenario = session.scenario(&workload, &policy);
            let text = scenario.to_text();
            let back = crate::scenario::parse(&scenario.name, &scenario.path, &text).unwrap();
            let steps: Vec<&Step> = back.steps.iter().map(|s| &s.value).collect();
            assert_eq!(steps, session.steps.iter().collect::<Vec<_>>(), "{text}");
            assert_eq!(back.config, scenario.config);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_steps_whatever_the_header() {
        let workload = Workload::default();
        let short_ttl = workload.at("identity_ttl", "1m").unwrap();
        assert_eq!(generate(&workload, 7), generate(&short_ttl, 7));
        assert_ne!(generate(&workload, 7), generate(&workload, 8));
    }

    #[test]
    fn a_sweep_of_the_restart_rate_moves_restarts_and_nothing_else() {
        let mut few = Workload::default();
        few.set("fork_percent", "0").unwrap();
        few.set("prompt_at_open", "100").unwrap();
        let many = few.at("restarts_per_day", "64").unwrap();
        let shape = |w: &Workload, seed| {
            let session = generate(w, seed);
            let advanced: u64 = session
                .steps
                .iter()
                .map(|s| if let Step::Advance { ms } = s { *ms } else { 0 })
                .sum();
            let turns: Vec<Step> =
                session.steps.into_iter().filter(|s| matches!(s, Step::Turn { .. })).collect();
            (advanced, turns)
        };
        for seed in 0..20 {
            assert_eq!(shape(&few, seed), shape(&many, seed), "seed {seed}");
        }
    }

    #[test]
    fn restarts_come_with_resumes_and_forks() {
        let mut workload = Workload::default();
        workload.set("restarts_per_day", "200").unwrap();
        workload.set("fork_percent", "50").unwrap();
        let roles: Vec<Role> = (0..20).flat_map(|s| generate(&workload, s).roles).collect();
        for role in [Role::Restart, Role::Open(Opened::Resume), Role::Open(Opened::Fork)] {
            assert!(roles.contains(&role), "{role:?}");
        }
    }
}
