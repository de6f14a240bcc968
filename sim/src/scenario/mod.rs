//! Scenario files: the simulator's tests, written as data.
//!
//! A scenario is a small line-oriented text file (`scenarios/<name>.scn`) that a person writes by
//! hand: a header that configures the run, scripted faults, the steps to drive, and the
//! expectations checked at the end. `scenarios/FORMAT.md` is the user's guide to the format.
//!
//! This module is the only parser and the only printer of that format, so the two cannot drift:
//! [`Scenario::to_text`] prints text that [`parse`] reads back to the same value (line numbers
//! aside). That is what lets a shrunk property-test failure be saved as a scenario file.
//!
//! Parsing checks everything that can be checked without running: names, numbers and ranges, that
//! a thread exists before a step uses it, that header lines come before the steps. [`parse`] does
//! not check the names only the core knows (event kinds, coverage marks): [`load`] checks them with
//! the line and column of the name, and the engine checks them again for scenarios built in code.
//! The engine decides what a step means at run time.

use std::fmt;
use std::path::{Path, PathBuf};

use agentsim_core::ExpiryPolicy;

pub use crate::damage::DamageKind;
use crate::fault::{Endpoint, FaultRule, RandomFaults};

mod lex;
mod parse;
mod print;

pub use parse::{parse_faults, step_names, FaultFile};

/// One parsed scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The scenario's name: the file stem, used in snapshot names and reports.
    pub name: String,
    /// The file it came from, for messages and for resolving the rollout files it names.
    pub path: PathBuf,
    /// What the scenario checks, in one sentence.
    pub description: String,
    /// The run's configuration, from the header.
    pub config: ScenarioConfig,
    /// Scripted faults, in file order (the first matching rule wins).
    pub faults: Vec<Located<FaultRule>>,
    /// What to drive, in order; never empty.
    pub steps: Vec<Located<Step>>,
    /// What must hold at the end of the run.
    pub expects: Vec<Located<Expect>>,
}

/// A value with the 1-based line it was written on, so a failing step or expectation can point the
/// reader at the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// The 1-based line in the scenario file (0 for values that were never in a file).
    pub line: usize,
    /// The value.
    pub value: T,
}

/// The header of a scenario: how the run is set up. [`Default`] gives what an absent key means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// The master seed; `None` lets the runner pick (and print) one.
    pub seed: Option<u64>,
    /// What the core does when the backend says the identity expired.
    pub expiry: ExpiryPolicy,
    /// Whether tasks are persisted to the rollout as `session_state` lines.
    pub persist_task: bool,
    /// The `use_agent_identity` feature flag (the `flag:` key).
    pub use_agent_identity: bool,
    /// How long the backend keeps an identity valid; `None` means forever.
    pub identity_ttl_ms: Option<u64>,
    /// What the auth store holds when the run starts.
    pub identity: InitialIdentity,
    /// The user's auth when the run starts.
    pub auth: AuthSpec,
    /// The backend's response latency range, inclusive, in milliseconds.
    pub latency_ms: (u64, u64),
    /// Faults drawn at random from the run's seed, on top of the scripted ones.
    pub random_faults: RandomFaults,
}

impl Default for ScenarioConfig {
    fn default() -> ScenarioConfig {
        ScenarioConfig {
            seed: None,
            expiry: ExpiryPolicy::Reacquire,
            persist_task: true,
            use_agent_identity: true,
            identity_ttl_ms: None,
            identity: InitialIdentity::None,
            auth: AuthSpec::ChatGpt { account: "acct-1".into(), user: Some("user-1".into()) },
            latency_ms: (5, 250),
            random_faults: RandomFaults::default(),
        }
    }
}

/// What the auth store holds at the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialIdentity {
    /// No identity: the first session registers one.
    None,
    /// A registered identity for the starting auth's workspace.
    Warm,
}

/// The user's auth, at the start or after an `auth` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSpec {
    /// Signed out.
    None,
    /// An API key: no workspace, so no identity.
    ApiKey,
    /// Signed in with ChatGPT to a workspace.
    ChatGpt {
        /// The `chatgpt_account_id`.
        account: String,
        /// The `chatgpt_user_id`, when the workspace has one.
        user: Option<String>,
    },
}

/// Policy changes a `restart` applies to the new process (and every later one). `None` keeps
/// the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// The `use_agent_identity` feature flag (`flag=`).
    pub use_agent_identity: Option<bool>,
    /// The expiry policy.
    pub expiry: Option<ExpiryPolicy>,
    /// Whether tasks are persisted.
    pub persist_task: Option<bool>,
}

impl ConfigChange {
    /// Sets in `config` what the change names; the rest stays.
    pub fn apply(&self, config: &mut agentsim_core::Config) {
        if let Some(flag) = self.use_agent_identity {
            config.use_agent_identity = flag;
        }
        if let Some(expiry) = self.expiry {
            config.expiry = expiry;
        }
        if let Some(persist) = self.persist_task {
            config.persist_task = persist;
        }
    }
}

/// Where a resumed thread's rollout comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeSource {
    /// The thread's own rollout, written earlier in the run.
    Own,
    /// A rollout file, with the path as written (relative to the scenario's folder; see
    /// [`Scenario::resolve`]).
    File(PathBuf),
    /// A copy of another thread's current rollout (`resume <thread> from_thread <other>`).
    Thread(String),
}

/// When an `on <endpoint> <moment> ...` arm fires, relative to the next request to its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Moment {
    /// Just before the request reaches the backend.
    Before,
    /// Right after the backend answered it, while the answer is in flight to the client.
    Sent,
    /// Right after the client handled the answer.
    Answered,
}

impl Moment {
    /// Every moment, in the order error messages list them.
    pub const ALL: [Moment; 3] = [Moment::Before, Moment::Sent, Moment::Answered];

    /// The name written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Moment::Before => "before",
            Moment::Sent => "sent",
            Moment::Answered => "answered",
        }
    }
}

/// A change of the world outside the process that an `on` arm makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorldStep {
    /// As the `rotate_identity` step.
    RotateIdentity,
    /// As the `expire_identity` step.
    ExpireIdentity,
    /// As the `revoke_identity` step.
    RevokeIdentity,
    /// As the `auth` step.
    Auth(AuthSpec),
}

/// When a `crash` step kills the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right away.
    Now,
    /// At the next rollout append of this thread, which is torn halfway.
    OnAppend(String),
    /// Just before the next successful response of this endpoint is handled, so it is lost.
    OnResponse(Endpoint),
}

/// One thing the scenario drives, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new thread.
    Start { thread: String },
    /// A thread resumed from a rollout.
    Resume { thread: String, from: ResumeSource },
    /// A new thread forked from an existing one.
    Fork { child: String, parent: String },
    /// A user turn; `wait` says whether the step waits for the turn to complete (`turn`) or not
    /// (`submit`).
    Turn { thread: String, text: String, wait: bool },
    /// The thread's history is compacted (a `compacted` item); its task must not change.
    Compact { thread: String },
    /// The thread's last `turns` user turns are rolled back (a `thread_rolled_back` item); its
    /// task must not change, and resume still restores the latest one.
    Rollback { thread: String, turns: u32 },
    /// Virtual time passes.
    Advance { ms: u64 },
    /// Run until no work is in flight.
    Settle,
    /// Another process registers a new identity and replaces the auth store's.
    RotateIdentity,
    /// The backend expires the current identity now.
    ExpireIdentity,
    /// The backend revokes the current identity.
    RevokeIdentity,
    /// The user's auth changes.
    Auth(AuthSpec),
    /// The process dies, now or at an armed point.
    Crash(CrashPoint),
    /// A new process starts with the same auth store, and the config with these changes.
    Restart(ConfigChange),
    /// The backend stops misbehaving: scripted and random faults are off for the rest of the run.
    Heal,
    /// Virtual time passes up to the auth store identity's `expires_at` plus `offset_ms`.
    AdvanceToExpiry { offset_ms: i64 },
    /// The rollout of a thread that is not running is rewritten.
    Damage { thread: String, kind: DamageKind },
    /// A world change armed at the next request to an endpoint; it fires once.
    On { endpoint: Endpoint, moment: Moment, world: WorldStep },
}

/// A comparison in an expectation: `actual <cmp> expected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
}

impl Cmp {
    /// Every comparison, in the order error messages list them.
    pub const ALL: [Cmp; 5] = [Cmp::Eq, Cmp::Ge, Cmp::Le, Cmp::Gt, Cmp::Lt];

    /// Whether `actual <self> expected` holds.
    pub fn holds(self, actual: u64, expected: u64) -> bool {
        match self {
            Cmp::Eq => actual == expected,
            Cmp::Ge => actual >= expected,
            Cmp::Le => actual <= expected,
            Cmp::Gt => actual > expected,
            Cmp::Lt => actual < expected,
        }
    }

    /// The symbol written in scenario files.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ge => ">=",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Lt => "<",
        }
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// What `expect task` wants a thread's cached task to be at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskExpect {
    /// A task that is current for the identity at the end.
    Current,
    /// No cached task.
    None,
}

/// What `expect last_state` wants the last `session_state` line of a thread's rollout to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastStateExpect {
    /// A task.
    Task,
    /// `{"agent_task": null}` (or a payload without the key).
    Null,
    /// No `session_state` line at all.
    Absent,
}

/// One expectation, checked at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The number of requests the backend received on an endpoint.
    Requests { endpoint: Endpoint, cmp: Cmp, count: u64 },
    /// The number of events of a kind on a thread (`None`: on all threads).
    Events { thread: Option<String>, kind: String, cmp: Cmp, count: u64 },
    /// Some event on the thread has a message containing the text.
    EventText { thread: String, contains: String },
    /// The thread's cached task at the end.
    Task { thread: String, state: TaskExpect },
    /// The last `session_state` line of the thread's rollout.
    LastState { thread: String, state: LastStateExpect },
    /// The number of `session_state` lines in the thread's rollout.
    SessionStateLines { thread: String, cmp: Cmp, count: u64 },
    /// A named coverage mark in core is hit.
    Mark { name: String },
    /// Some log line contains the text.
    Log { contains: String },
    /// No log line contains the text.
    NoLog { contains: String },
    /// The canary: the scenario's other expectations must fail, proving the gate can go red.
    Fail,
}

/// A scenario file that cannot be read or parsed. It names the file, line and column (1-based),
/// and the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// The 1-based line of the problem.
    pub line: usize,
    /// The 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// Parses scenario text. `name` becomes [`Scenario::name`]; `path` is only used in error messages
/// and to resolve rollout files, never read.
pub fn parse(name: &str, path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    parse::parse(name, path, text)
}

/// Reads and parses a scenario file; its name is the file stem. A file that cannot be read is
/// reported at line 1, column 1; a file that is not UTF-8 at the line and column of the first
/// byte that is not.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let at_start =
        |message: String| ScenarioError { file: path.to_path_buf(), line: 1, column: 1, message };
    let bytes =
        std::fs::read(path).map_err(|e| at_start(format!("cannot read the scenario file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let byte = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&e.as_bytes()[..byte]).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        ScenarioError {
            file: path.to_path_buf(),
            line: valid.matches('\n').count() + 1,
            column: valid[line_start..].chars().count() + 1,
            message: format!("the file is not valid UTF-8 (at byte {byte}): save it as UTF-8"),
        }
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let scenario = parse(&name, path, &text)?;
    check_core_names(&scenario, &text)?;
    Ok(scenario)
}

/// What is wrong with a name that only the core knows (a coverage mark, an event kind) given by an
/// expectation, or `None` when the core knows it. A misspelled name is an error, never a pass.
pub fn unknown_core_name(expect: &Expect) -> Option<String> {
    match expect {
        Expect::Mark { name } if !agentsim_core::marks::ALL.contains(&name.as_str()) => {
            let known: Vec<String> =
                agentsim_core::marks::ALL.iter().map(|m| m.to_string()).collect();
            let close = crate::catalog::close_matches(name, &known);
            let hint = if close.is_empty() {
                format!("known marks: {}", agentsim_core::marks::ALL.join(", "))
            } else {
                format!("did you mean {}?", close.join(", "))
            };
            Some(format!("unknown coverage mark {name:?}: {hint}"))
        }
        Expect::Events { kind, .. }
            if !agentsim_core::EventKind::NAMES.contains(&kind.as_str()) =>
        {
            Some(format!(
                "unknown event kind {kind:?}: expected one of {}",
                agentsim_core::EventKind::NAMES.join(", ")
            ))
        }
        _ => None,
    }
}

/// [`unknown_core_name`] for every expectation of a parsed file, reported at the name's column.
fn check_core_names(scenario: &Scenario, text: &str) -> Result<(), ScenarioError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for expect in &scenario.expects {
        let Some(message) = unknown_core_name(&expect.value) else { continue };
        // The name is the third token of `expect mark <name>`, the fourth of
        // `expect events <thread> <kind> ...`; the parser has checked that shape.
        let index = if matches!(expect.value, Expect::Mark { .. }) { 2 } else { 3 };
        let column = expect
            .line
            .checked_sub(1)
            .and_then(|n| text.lines().nth(n))
            .and_then(|line| lex::lex(line, 1).ok())
            .and_then(|tokens| tokens.get(index).map(|t| t.column))
            .unwrap_or(1);
        return Err(ScenarioError {
            file: scenario.path.clone(),
            line: expect.line,
            column,
            message,
        });
    }
    Ok(())
}

impl Scenario {
    /// The canonical text of the scenario: header keys in a fixed order (only the description and
    /// values that differ from the default), then faults, steps and expectations, one per line.
    /// Parsing it gives back this scenario, line numbers aside.
    pub fn to_text(&self) -> String {
        print::scenario(self)
    }

    /// A path written in the scenario (such as a rollout to resume from), joined with the folder
    /// of the scenario file.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        match self.path.parent() {
            Some(folder) => folder.join(relative),
            None => relative.to_path_buf(),
        }
    }

    /// Every thread the steps introduce (`start`, `resume`, `fork`), in order of introduction.
    pub fn thread_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for step in &self.steps {
            let introduced = match &step.value {
                Step::Start { thread } | Step::Resume { thread, .. } => thread,
                Step::Fork { child, .. } => child,
                _ => continue,
            };
            if !names.contains(introduced) {
                names.push(introduced.clone());
            }
        }
        names
    }
}

#[cfg(test)]
mod tests;
