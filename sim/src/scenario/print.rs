//! The printer: canonical scenario text, and the `Display` of steps and expectations (each is the
//! line that parses back to it, so reports can quote a step exactly as a file would hold it).

use std::fmt;

use agentsim_core::ExpiryPolicy;

use super::lex::quote;
use super::{
    AuthSpec, CrashPoint, Expect, InitialIdentity, LastStateExpect, ResumeSource, Scenario,
    ScenarioConfig, Step, TaskExpect, WorldStep,
};
use crate::duration::format_ms as duration;
use crate::fault::{FaultKind, FaultRule};

/// The text a `turn` or `submit` without text sends.
const DEFAULT_TURN_TEXT: &str = "hello";

pub(super) fn scenario(scenario: &Scenario) -> String {
    let mut lines = header(scenario);
    if !scenario.faults.is_empty() {
        lines.push(String::new());
        lines.extend(scenario.faults.iter().map(|f| fault_rule(&f.value)));
    }
    lines.push(String::new());
    lines.extend(scenario.steps.iter().map(|s| s.value.to_string()));
    if !scenario.expects.is_empty() {
        lines.push(String::new());
        lines.extend(scenario.expects.iter().map(|e| e.value.to_string()));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn header(scenario: &Scenario) -> Vec<String> {
    let config = &scenario.config;
    let default = ScenarioConfig::default();
    let mut lines = vec![format!("description: {}", description(&scenario.description))];
    if let Some(seed) = config.seed {
        lines.push(format!("seed: {seed}"));
    }
    if config.expiry != default.expiry {
        let expiry = match config.expiry {
            ExpiryPolicy::Reacquire => "reacquire",
            ExpiryPolicy::AsShipped => "as_shipped",
        };
        lines.push(format!("expiry: {expiry}"));
    }
    if config.persist_task != default.persist_task {
        lines.push(format!("persist_task: {}", config.persist_task));
    }
    if config.use_agent_identity != default.use_agent_identity {
        lines.push(format!("flag: {}", if config.use_agent_identity { "on" } else { "off" }));
    }
    if let Some(ttl_ms) = config.identity_ttl_ms {
        lines.push(format!("identity_ttl: {}", duration(ttl_ms)));
    }
    if config.identity != default.identity {
        let identity = match config.identity {
            InitialIdentity::None => "none",
            InitialIdentity::Warm => "warm",
        };
        lines.push(format!("identity: {identity}"));
    }
    if config.auth != default.auth {
        lines.push(format!("auth: {}", config.auth));
    }
    if config.latency_ms != default.latency_ms {
        let (min, max) = config.latency_ms;
        lines.push(format!("latency: {}..{}", duration(min), duration(max)));
    }
    let random = &config.random_faults;
    if !random.rate_per_mille.is_empty() {
        let rates: Vec<String> = random
            .rate_per_mille
            .iter()
            .map(|(endpoint, rate)| format!("{endpoint}={rate}"))
            .collect();
        lines.push(format!("fault_rate: {}", rates.join(" ")));
    }
    if !random.kinds.is_empty() {
        let kinds: Vec<String> = random.kinds.iter().map(fault_kind).collect();
        lines.push(format!("fault_kinds: {}", kinds.join(" ")));
    }
    lines
}

/// The description as free text when that reads back unchanged, quoted otherwise.
fn description(text: &str) -> String {
    let needs_quotes = text.is_empty()
        || text.starts_with(['"', ' ', '\t'])
        || text.ends_with([' ', '\t', '\r'])
        || text.contains(['#', '\n']);
    if needs_quotes {
        quote(text)
    } else {
        text.to_string()
    }
}

fn fault_kind(kind: &FaultKind) -> String {
    match kind {
        FaultKind::Status { body: Some(body), .. } => {
            format!("{} body={}", kind.name(), quote(body))
        }
        _ => kind.name(),
    }
}

fn fault_rule(rule: &FaultRule) -> String {
    format!("fault {} {} {}", rule.endpoint, rule.calls, fault_kind(&rule.kind))
}

impl fmt::Display for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthSpec::None => f.write_str("none"),
            AuthSpec::ApiKey => f.write_str("api_key"),
            AuthSpec::ChatGpt { account, user } => {
                write!(f, "chatgpt account={account}")?;
                if let Some(user) = user {
                    write!(f, " user={user}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for WorldStep {
    /// The world step as an `on` line ends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldStep::RotateIdentity => f.write_str("rotate_identity"),
            WorldStep::ExpireIdentity => f.write_str("expire_identity"),
            WorldStep::RevokeIdentity => f.write_str("revoke_identity"),
            WorldStep::Auth(auth) => write!(f, "auth {auth}"),
        }
    }
}

impl fmt::Display for Step {
    /// The step as a scenario line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Start { thread } => write!(f, "start {thread}"),
            Step::Resume { thread, from: ResumeSource::Own } => write!(f, "resume {thread}"),
            Step::Resume { thread, from: ResumeSource::File(path) } => {
                write!(f, "resume {thread} from {}", quote(&path.to_string_lossy()))
            }
            Step::Resume { thread, from: ResumeSource::Thread(other) } => {
                write!(f, "resume {thread} from_thread {other}")
            }
            Step::Fork { child, parent } => write!(f, "fork {child} from {parent}"),
            Step::Compact { thread } => write!(f, "compact {thread}"),
            Step::Rollback { thread, turns } => write!(f, "rollback {thread} {turns}"),
            Step::Turn { thread, text, wait } => {
                f.write_str(if *wait { "turn " } else { "submit " })?;
                f.write_str(thread)?;
                if text != DEFAULT_TURN_TEXT {
                    write!(f, " {}", quote(text))?;
                }
                Ok(())
            }
            Step::Advance { ms } => write!(f, "advance {}", duration(*ms)),
            Step::Settle => f.write_str("settle"),
            Step::RotateIdentity => f.write_str("rotate_identity"),
            Step::ExpireIdentity => f.write_str("expire_identity"),
            Step::RevokeIdentity => f.write_str("revoke_identity"),
            Step::Auth(auth) => write!(f, "auth {auth}"),
            Step::Crash(CrashPoint::Now) => f.write_str("crash"),
            Step::Crash(CrashPoint::OnAppend(thread)) => write!(f, "crash on_append {thread}"),
            Step::Crash(CrashPoint::OnResponse(endpoint)) => {
                write!(f, "crash on_response {endpoint}")
            }
            Step::Restart(change) => {
                f.write_str("restart")?;
                if let Some(on) = change.use_agent_identity {
                    f.write_str(if on { " flag=on" } else { " flag=off" })?;
                }
                if let Some(expiry) = change.expiry {
                    f.write_str(match expiry {
                        ExpiryPolicy::Reacquire => " expiry=reacquire",
                        ExpiryPolicy::AsShipped => " expiry=as_shipped",
                    })?;
                }
                if let Some(persist) = change.persist_task {
                    write!(f, " persist_task={persist}")?;
                }
                Ok(())
            }
            Step::Heal => f.write_str("heal"),
            Step::AdvanceToExpiry { offset_ms } => {
                f.write_str("advance to_expiry")?;
                match offset_ms.signum() {
                    0 => Ok(()),
                    1 => write!(f, " +{}", duration(offset_ms.unsigned_abs())),
                    _ => write!(f, " -{}", duration(offset_ms.unsigned_abs())),
                }
            }
            Step::Damage { thread, kind } => write!(f, "damage {thread} {kind}"),
            Step::On { endpoint, moment, world } => {
                write!(f, "on {endpoint} {} {world}", moment.name())
            }
        }
    }
}

impl fmt::Display for Expect {
    /// The expectation as a scenario line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Requests { endpoint, cmp, count } => {
                write!(f, "expect requests {endpoint} {cmp} {count}")
            }
            Expect::Events { thread, kind, cmp, count } => {
                let thread = thread.as_deref().unwrap_or("*");
                write!(f, "expect events {thread} {kind} {cmp} {count}")
            }
            Expect::EventText { thread, contains } => {
                write!(f, "expect event {thread} {}", quote(contains))
            }
            Expect::Task { thread, state } => {
                let state = match state {
                    TaskExpect::Current => "current",
                    TaskExpect::None => "none",
                };
                write!(f, "expect task {thread} {state}")
            }
            Expect::LastState { thread, state } => {
                let state = match state {
                    LastStateExpect::Task => "task",
                    LastStateExpect::Null => "null",
                    LastStateExpect::Absent => "absent",
                };
                write!(f, "expect last_state {thread} {state}")
            }
            Expect::SessionStateLines { thread, cmp, count } => {
                write!(f, "expect session_state_lines {thread} {cmp} {count}")
            }
            Expect::Mark { name } => write!(f, "expect mark {name}"),
            Expect::Log { contains } => write!(f, "expect log {}", quote(contains)),
            Expect::NoLog { contains } => write!(f, "expect no_log {}", quote(contains)),
            Expect::Fail => f.write_str("expect fail"),
        }
    }
}
