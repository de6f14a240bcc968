//! The workload model of `sim compare`: what a realistic session looks like, as named parameters
//! with documented defaults, set from the command line (`--set key=value`) or a small file of
//! `key = value` lines (`--workload FILE`).
//!
//! [`PARAMS`] is the one list of parameters: their names, defaults and meanings. The default
//! workload is built by reading each default text through the same parser a user's value goes
//! through, so the documented default is the default. How a session is drawn from these numbers
//! is `session.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::fault::{Endpoint, FaultKind};

/// What kind of value a parameter takes; also its unit on a chart's axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A whole number from `min` to `max`.
    Count {
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A whole percentage, 0 to 100.
    Percent,
    /// A rate per day of session time (virtual time), a decimal number from 0 to 1000.
    PerDay,
    /// A duration in the scenario files' syntax (`500ms`, `30s`, `1h30m`, `2d`).
    Duration,
    /// A duration, or `none` for never.
    DurationOrNone,
    /// Thousandths of calls, 0 to 1000.
    PerMille,
    /// Fault kinds, written as the scenario header's `fault_kinds:` writes them.
    FaultKinds,
}

impl ParamKind {
    /// The unit, as a chart's axis names it.
    pub fn unit(self) -> &'static str {
        match self {
            ParamKind::Count { .. } => "count",
            ParamKind::Percent => "%",
            ParamKind::PerDay => "per day of session time",
            ParamKind::Duration | ParamKind::DurationOrNone => "duration",
            ParamKind::PerMille => "per 1,000 calls",
            ParamKind::FaultKinds => "fault kinds",
        }
    }

    /// Whether `sim compare --sweep` can vary a parameter of this kind (numbers and durations).
    pub fn sweepable(self) -> bool {
        !matches!(self, ParamKind::FaultKinds)
    }
}

/// One workload parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its name in `--set`, `--sweep` and workload files.
    pub name: &'static str,
    /// The values it takes.
    pub kind: ParamKind,
    /// Its default, as text.
    pub default: &'static str,
    /// What it means, in one sentence.
    pub doc: &'static str,
}

/// Every workload parameter, in the order reports list them.
pub const PARAMS: &[Param] = &[
    Param {
        name: "threads_max",
        kind: ParamKind::Count { min: 1, max: 26 },
        default: "3",
        doc: "threads per session: drawn uniformly from 1 to this",
    },
    Param {
        name: "turns_per_thread",
        kind: ParamKind::Count { min: 1, max: 500 },
        default: "6",
        doc: "mean user turns per thread: drawn uniformly from 1 to twice this minus one",
    },
    Param {
        name: "think_min",
        kind: ParamKind::Duration,
        default: "5s",
        doc: "shortest think time between two turns of a session",
    },
    Param {
        name: "think_max",
        kind: ParamKind::Duration,
        default: "8h",
        doc: "longest think time; think times are log-uniform between the two (median about 13m \
              with the defaults), so a session lasts minutes to days",
    },
    Param {
        name: "prompt_at_open",
        kind: ParamKind::Percent,
        default: "50",
        doc: "share of thread starts, resumes and forks that come with their prompt (the first \
              turn is submitted at once, racing the prewarm)",
    },
    Param {
        name: "open_delay_max",
        kind: ParamKind::Duration,
        default: "30s",
        doc: "otherwise the first turn after a start, resume or fork comes after a delay drawn \
              uniformly from 1s to this",
    },
    Param {
        name: "restarts_per_day",
        kind: ParamKind::PerDay,
        default: "4",
        doc: "process restarts per day of session time (a Poisson process over think times); \
              after one, each thread is resumed when the user next turns to it",
    },
    Param {
        name: "fork_percent",
        kind: ParamKind::Percent,
        default: "10",
        doc: "share of those returns that fork the thread instead of resuming it (the user \
              goes on in the fork)",
    },
    Param {
        name: "revocations_per_day",
        kind: ParamKind::PerDay,
        default: "0.1",
        doc: "backend revocations of the current identity per day of session time",
    },
    Param {
        name: "identity_ttl",
        kind: ParamKind::DurationOrNone,
        default: "1h",
        doc: "how long the backend keeps an identity valid (`none`: forever)",
    },
    Param {
        name: "latency_min",
        kind: ParamKind::Duration,
        default: "5ms",
        doc: "fastest backend answer (at least 1ms)",
    },
    Param {
        name: "latency_max",
        kind: ParamKind::Duration,
        default: "250ms",
        doc: "slowest backend answer; latencies are uniform between the two",
    },
    Param {
        name: "fault_biscuit",
        kind: ParamKind::PerMille,
        default: "2",
        doc: "background faults on biscuit calls, per 1,000 calls",
    },
    Param {
        name: "fault_identity_register",
        kind: ParamKind::PerMille,
        default: "2",
        doc: "background faults on identity registrations, per 1,000 calls",
    },
    Param {
        name: "fault_task_register",
        kind: ParamKind::PerMille,
        default: "2",
        doc: "background faults on task registrations, per 1,000 calls",
    },
    Param {
        name: "fault_model",
        kind: ParamKind::PerMille,
        default: "2",
        doc: "background faults on model requests, per 1,000 calls",
    },
    Param {
        name: "fault_kinds",
        kind: ParamKind::FaultKinds,
        default: "timeout reset status=503",
        doc: "the kinds background faults are drawn from, all equally likely (the scenario \
              header's `fault_kinds:` syntax)",
    },
];

/// The parameter named `name`, if there is one.
pub fn param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name == name)
}

/// Why a workload parameter, file or sweep was refused. Each names the parameter, and the file
/// and line when there is one, and says what to write instead.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    /// A name that is no workload parameter.
    #[error("unknown workload parameter {name:?}: {hint}")]
    UnknownParam {
        /// The name given.
        name: String,
        /// Close matches, or the list of parameters.
        hint: String,
    },
    /// A value the parameter cannot take.
    #[error("bad value {value:?} for {name}: {reason}")]
    BadValue {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// Text that is not `<parameter>=<value>`.
    #[error("expected <parameter>=<value> (e.g. identity_ttl=10m), found {text:?}")]
    NotAPair {
        /// The text given.
        text: String,
    },
    /// A problem on one line of a workload file.
    #[error("{file}:{line}: {problem}")]
    InFile {
        /// The file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong there.
        problem: Box<WorkloadError>,
    },
    /// A workload file that cannot be read.
    #[error("cannot read the workload file {file}: {reason}")]
    Unreadable {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Parameters that contradict each other (`think_min` above `think_max`, ...).
    #[error("{0}")]
    Inconsistent(String),
    /// A `--sweep` that cannot run.
    #[error("bad --sweep {text:?}: {reason}")]
    BadSweep {
        /// The text given.
        text: String,
        /// What to write instead.
        reason: String,
    },
}

/// A workload: every parameter's value. [`Default`] is [`PARAMS`]' defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `threads_max`.
    pub(crate) threads_max: u64,
    /// `turns_per_thread`.
    pub(crate) turns_per_thread: u64,
    /// `think_min`, in ms.
    pub(crate) think_min_ms: u64,
    /// `think_max`, in ms.
    pub(crate) think_max_ms: u64,
    /// `prompt_at_open`, in percent.
    pub(crate) prompt_at_open_percent: u64,
    /// `open_delay_max`, in ms.
    pub(crate) open_delay_max_ms: u64,
    /// `restarts_per_day`.
    pub(crate) restarts_per_day: f64,
    /// `fork_percent`.
    pub(crate) fork_percent: u64,
    /// `revocations_per_day`.
    pub(crate) revocations_per_day: f64,
    /// `identity_ttl`, in ms; `None`: identities never expire.
    pub(crate) identity_ttl_ms: Option<u64>,
    /// `latency_min` and `latency_max`, in ms.
    pub(crate) latency_ms: (u64, u64),
    /// `fault_<endpoint>`: background fault rates per endpoint, in thousandths (zero rates left out).
    pub(crate) fault_rates: BTreeMap<Endpoint, u16>,
    /// `fault_kinds`.
    pub(crate) fault_kinds: Vec<FaultKind>,
    /// Each parameter's value as text, for reports.
    texts: BTreeMap<&'static str, String>,
}

impl Default for Workload {
    fn default() -> Workload {
        let mut workload = Workload {
            threads_max: 0,
            turns_per_thread: 0,
            think_min_ms: 0,
            think_max_ms: 0,
            prompt_at_open_percent: 0,
            open_delay_max_ms: 0,
            restarts_per_day: 0.0,
            fork_percent: 0,
            revocations_per_day: 0.0,
            identity_ttl_ms: None,
            latency_ms: (0, 0),
            fault_rates: BTreeMap::new(),
            fault_kinds: Vec::new(),
            texts: BTreeMap::new(),
        };
        for param in PARAMS {
            // A default that does not parse is a bug in `PARAMS`, which a unit test catches.
            workload.set(param.name, param.default).expect("every documented default parses");
        }
        workload
    }
}

impl Workload {
    /// Sets one parameter from its text.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), WorkloadError> {
        let param = param(name).ok_or_else(|| unknown(name))?;
        let value = value.trim();
        let bad = |reason: String| WorkloadError::BadValue {
            name: param.name,
            value: value.to_owned(),
            reason,
        };
        match param.kind {
            ParamKind::Count { min, max } => {
                let n =
                    value.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(
                        || bad(format!("expected a whole number from {min} to {max}")),
                    )?;
                self.set_count(param.name, n);
            }
            ParamKind::Percent => {
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 100)
                    .ok_or_else(|| bad("expected a whole percentage from 0 to 100".into()))?;
                self.set_count(param.name, n);
            }
            ParamKind::PerMille => {
                let n = value
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n <= 1000)
                    .ok_or_else(|| bad("expected thousandths of calls, 0 to 1000".into()))?;
                self.set_count(param.name, u64::from(n));
            }
            ParamKind::PerDay => {
                let rate = parse_rate(value).ok_or_else(|| {
                    bad("expected a rate per day from 0 to 1000, e.g. 4 or 0.5".into())
                })?;
                self.set_rate(param.name, rate);
            }
            ParamKind::Duration => {
                let ms = crate::duration::parse_ms(value).map_err(|e| bad(e.to_string()))?;
                self.set_duration(param.name, Some(ms));
            }
            ParamKind::DurationOrNone => {
                let ms = if value == "none" {
                    None
                } else {
                    let ms = crate::duration::parse_ms(value)
                        .map_err(|e| bad(format!("{e}; or `none` for never")))?;
                    Some(ms).filter(|ms| *ms > 0).ok_or_else(|| {
                        bad("a TTL must be longer than 0ms (`none`: never expires)".into())
                    })?;
                    Some(ms)
                };
                self.set_duration(param.name, ms);
            }
            ParamKind::FaultKinds => self.fault_kinds = parse_fault_kinds(value).map_err(bad)?,
        }
        self.texts.insert(param.name, value.to_owned());
        Ok(())
    }

    /// Sets one parameter from `name=value`.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), WorkloadError> {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| WorkloadError::NotAPair { text: pair.to_owned() })?;
        self.set(name.trim(), value)
    }

    /// Reads a workload file: one `name = value` per line; blank lines and lines starting with
    /// `#` are skipped. Errors name the file and line.
    pub fn read_file(&mut self, path: &Path) -> Result<(), WorkloadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| WorkloadError::Unreadable { file: file.clone(), reason: e.to_string() })?;
        self.read_text(&file, &text)
    }

    /// [`Workload::read_file`] of text already read; `file` names it in errors.
    pub fn read_text(&mut self, file: &str, text: &str) -> Result<(), WorkloadError> {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.set_pair(line).map_err(|problem| WorkloadError::InFile {
                file: file.to_owned(),
                line: index + 1,
                problem: Box::new(problem),
            })?;
        }
        Ok(())
    }

    /// Checks what one parameter alone cannot: the two ends of a range, and latencies the
    /// engine accepts.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let fail = |text: String| Err(WorkloadError::Inconsistent(text));
        if self.think_min_ms > self.think_max_ms {
            return fail(format!(
                "think_min ({}) is above think_max ({}): make think_min the smaller",
                self.text("think_min"),
                self.text("think_max")
            ));
        }
        if self.think_min_ms == 0 {
            return fail("think_min must be longer than 0ms".into());
        }
        let (low, high) = self.latency_ms;
        if low == 0 || low > high {
            return fail(format!(
                "latency_min ({}) must be at least 1ms and at most latency_max ({})",
                self.text("latency_min"),
                self.text("latency_max")
            ));
        }
        // The longest session the parameters allow must fit in one run's virtual time.
        let longest_ms = u128::from(self.threads_max)
            * u128::from(2 * self.turns_per_thread - 1)
            * u128::from(self.think_max_ms.saturating_add(self.open_delay_max_ms));
        if longest_ms > u128::from(crate::engine::MAX_VIRTUAL_MS) {
            return fail(format!(
                "threads_max x (2 x turns_per_thread - 1) x (think_max + open_delay_max) may \
                 exceed {} days, the most virtual time one run covers: lower one of them",
                crate::engine::MAX_VIRTUAL_MS / 86_400_000
            ));
        }
        if !self.fault_rates.is_empty() && self.fault_kinds.is_empty() {
            return fail("background fault rates need at least one fault_kinds entry".into());
        }
        Ok(())
    }

    /// The text of a parameter's current value.
    pub fn text(&self, name: &str) -> &str {
        self.texts.get(name).map_or("", String::as_str)
    }

    /// Every parameter with its current value as text, in [`PARAMS`] order.
    pub fn texts(&self) -> Vec<(&'static str, &str)> {
        PARAMS.iter().map(|p| (p.name, self.text(p.name))).collect()
    }

    fn set_count(&mut self, name: &str, n: u64) {
        let rate = |n: u64| u16::try_from(n).unwrap_or(1000);
        match name {
            "threads_max" => self.threads_max = n,
            "turns_per_thread" => self.turns_per_thread = n,
            "prompt_at_open" => self.prompt_at_open_percent = n,
            "fork_percent" => self.fork_percent = n,
            _ => {
                let endpoint = fault_endpoint(name);
                if n == 0 {
                    self.fault_rates.remove(&endpoint);
                } else {
                    self.fault_rates.insert(endpoint, rate(n));
                }
            }
        }
    }

    fn set_rate(&mut self, name: &str, rate: f64) {
        match name {
            "restarts_per_day" => self.restarts_per_day = rate,
            _ => self.revocations_per_day = rate,
        }
    }

    fn set_duration(&mut self, name: &str, ms: Option<u64>) {
        let ms_or_zero = ms.unwrap_or(0);
        match name {
            "think_min" => self.think_min_ms = ms_or_zero,
            "think_max" => self.think_max_ms = ms_or_zero,
            "open_delay_max" => self.open_delay_max_ms = ms_or_zero,
            "latency_min" => self.latency_ms.0 = ms_or_zero,
            "latency_max" => self.latency_ms.1 = ms_or_zero,
            _ => self.identity_ttl_ms = ms,
        }
    }
}

/// The endpoint of a `fault_<endpoint>` parameter.
fn fault_endpoint(name: &str) -> Endpoint {
    let endpoint = name.strip_prefix("fault_").and_then(Endpoint::from_name);
    // Only `set_count` calls this, for the per-mille parameters, all named `fault_<endpoint>`.
    endpoint.unwrap_or(Endpoint::Model)
}

/// A decimal rate from 0 to 1000 (`4`, `0.5`); no signs, exponents, infinities or NaN.
fn parse_rate(text: &str) -> Option<f64> {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.matches('.').count() <= 1
        && text.chars().any(|c| c.is_ascii_digit());
    let rate: f64 = text.parse().ok().filter(|_| plain)?;
    (0.0..=1000.0).contains(&rate).then_some(rate)
}

/// Fault kinds read by the scenario parser itself (the header's `fault_kinds:`), so the two
/// syntaxes cannot drift.
fn parse_fault_kinds(text: &str) -> Result<Vec<FaultKind>, String> {
    if text.contains(['\n', '\r', '#']) {
        return Err("expected fault kinds on one line, e.g. timeout reset status=503".into());
    }
    let scenario_text =
        format!("description: x\nfault_rate: model=1\nfault_kinds: {text}\n\nstart A\n");
    let path = Path::new("fault_kinds");
    crate::scenario::parse("fault_kinds", path, &scenario_text)
        .map(|s| s.config.random_faults.kinds)
        .map_err(|e| e.message)
}

/// The error of a name that is no parameter, with the close matches.
pub(super) fn unknown(name: &str) -> WorkloadError {
    let names: Vec<String> = PARAMS.iter().map(|p| p.name.to_owned()).collect();
    let close = crate::catalog::close_matches(name, &names);
    let hint = if close.is_empty() {
        format!("expected one of {}", names.join(", "))
    } else {
        format!("did you mean {}?", close.join(", "))
    };
    WorkloadError::UnknownParam { name: name.to_owned(), hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_default_is_the_default() {
        let workload = Workload::default();
        for p in PARAMS {
            assert_eq!(workload.text(p.name), p.default, "{}", p.name);
        }
        assert_eq!(workload.identity_ttl_ms, Some(3_600_000));
        assert_eq!(workload.latency_ms, (5, 250));
        assert_eq!(workload.fault_rates.len(), 4);
        assert_eq!(workload.fault_kinds.len(), 3);
        workload.validate().expect("the default workload is valid");
    }

    #[test]
    fn bad_values_name_the_parameter_and_what_to_write() {
        let mut w = Workload::default();
        let err = |w: &mut Workload, pair: &str| w.set_pair(pair).unwrap_err().to_string();
        assert_eq!(
            err(&mut w, "thread_max=3"),
            "unknown workload parameter \"thread_max\": did you mean threads_max?"
        );
        assert_eq!(
            err(&mut w, "threads_max=0"),
            "bad value \"0\" for threads_max: expected a whole number from 1 to 26"
        );
        assert!(err(&mut w, "identity_ttl=60").contains("write a number and a unit"));
        assert!(err(&mut w, "restarts_per_day=-1").contains("expected a rate per day"));
        assert!(err(&mut w, "fault_kinds=timeout sometimes").contains("unknown fault kind"));
        assert_eq!(
            err(&mut w, "identity_ttl"),
            "expected <parameter>=<value> (e.g. identity_ttl=10m), found \"identity_ttl\""
        );
        w.set_pair("identity_ttl = none").unwrap();
        assert_eq!(w.identity_ttl_ms, None);
        w.set_pair("fault_model=0").unwrap();
        assert!(!w.fault_rates.contains_key(&Endpoint::Model));
    }

    #[test]
    fn a_workload_file_reports_the_line_of_a_mistake() {
        let mut w = Workload::default();
        let text = "# a comment\n\nthreads_max = 2\nrestarts_per_day = 2.5\nturns = 4\n";
        let e = w.read_text("w.txt", text).unwrap_err().to_string();
        let mut long = Workload::default();
        long.read_text("long.txt", "threads_max = 26\nturns_per_thread = 500\nthink_max = 20d\n")
            .unwrap();
        assert!(long.validate().unwrap_err().to_string().contains("may exceed 365000 days"));
        assert_eq!(
            e,
            "w.txt:5: unknown workload parameter \"turns\": did you mean turns_per_thread?"
        );
        assert_eq!((w.threads_max, w.restarts_per_day), (2, 2.5));
    }
}
