//! The server's faults: fault lines read from a file or an admin request (the scenario syntax,
//! [`crate::scenario::parse_faults`]), and the live plan that more lines can be added to while
//! the server runs.

use std::path::Path;

use crate::fault::{CallMatch, Endpoint, FaultKind, FaultPlan, FaultRule, RandomFaults};
use crate::scenario::{parse_faults, FaultFile, ScenarioError};

/// Reads a fault file (`sim serve --faults FILE`): the fault lines of a scenario and its
/// `fault_rate:`/`fault_kinds:` lines. Every error names the file, line and column.
pub fn load_faults(path: &Path) -> Result<FaultFile, ScenarioError> {
    let at = |line: usize, column: usize, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let bytes =
        std::fs::read(path).map_err(|e| at(1, 1, format!("cannot read the fault file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let byte = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&e.as_bytes()[..byte]).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        at(
            valid.matches('\n').count() + 1,
            valid[line_start..].chars().count() + 1,
            format!("the file is not valid UTF-8 (at byte {byte}): save it as UTF-8"),
        )
    })?;
    parse_servable_faults(path, &text)
}

/// Parses fault lines (`origin` is only named in messages) and refuses what HTTP cannot serve.
pub fn parse_servable_faults(origin: &Path, text: &str) -> Result<FaultFile, ScenarioError> {
    let file = parse_faults(origin, text)?;
    let rules = file.rules.iter().map(|rule| (rule.line, &rule.value.kind));
    let random = file.random.iter().flat_map(|r| r.value.kinds.iter().map(move |k| (r.line, k)));
    for (line, kind) in rules.chain(random) {
        if let Some(message) = unservable(kind) {
            return Err(ScenarioError { file: origin.to_path_buf(), line, column: 1, message });
        }
    }
    Ok(file)
}

/// Why a fault cannot be served over HTTP, if it cannot: a 1xx status is informational, never
/// a final answer (the simulator runs such faults through its memory transport only).
pub fn unservable(kind: &FaultKind) -> Option<String> {
    match kind {
        FaultKind::Status { status: status @ 100..=199, .. } => Some(format!(
            "status={status} cannot be served: HTTP cannot end an exchange with an informational \
             (1xx) status; use 200 to 599"
        )),
        _ => None,
    }
}

/// The fault plan of a running server: [`FaultPlan`] (so faults are decided exactly as in a
/// simulated run) plus what adding rules needs.
///
/// Added rules count calls from where the plan is: `fault biscuit 1 status=503` added after ten
/// biscuit calls hits the eleventh. They go after the rules already there (the first match
/// wins). Random faults given with them replace the current ones. Healing drops every rule and
/// random fault so far; rules added after a heal apply again.
#[derive(Debug)]
pub(super) struct LivePlan {
    plan: FaultPlan,
    /// The plan's rules, numbered from the plan's first call.
    rules: Vec<FaultRule>,
    random: RandomFaults,
}

impl LivePlan {
    pub(super) fn new(rules: Vec<FaultRule>, random: RandomFaults) -> LivePlan {
        LivePlan { plan: FaultPlan::new(rules.clone(), random.clone()), rules, random }
    }

    /// [`FaultPlan::decide`].
    pub(super) fn decide(
        &mut self,
        endpoint: Endpoint,
        draw: impl FnMut() -> u32,
    ) -> Option<FaultKind> {
        self.plan.decide(endpoint, draw)
    }

    /// Adds rules counted from the next call, and replaces the random faults when given.
    pub(super) fn add(&mut self, added: Vec<FaultRule>, random: Option<RandomFaults>) {
        // A new plan counts calls from 1 again, so the rules already there are renumbered from
        // here on and the ones wholly in the past are dropped.
        let mut rules: Vec<FaultRule> = self
            .rules
            .iter()
            .filter_map(|rule| {
                let calls = renumbered(rule.calls, self.plan.calls(rule.endpoint))?;
                Some(FaultRule { calls, ..rule.clone() })
            })
            .collect();
        rules.extend(added);
        if let Some(random) = random {
            self.random = random;
        }
        *self = LivePlan::new(rules, self.random.clone());
    }

    /// No fault from now on, until rules are added again.
    pub(super) fn heal(&mut self) {
        self.rules.clear();
        self.random = RandomFaults::default();
        self.plan.heal();
    }
}

/// `calls` as numbered after `done` calls have been made; `None` when it hits no later call.
fn renumbered(calls: CallMatch, done: u32) -> Option<CallMatch> {
    match calls {
        CallMatch::Nth(n) => (n > done).then(|| CallMatch::Nth(n - done)),
        CallMatch::Range { from, to } => (to > done)
            .then(|| CallMatch::Range { from: from.saturating_sub(done).max(1), to: to - done }),
        CallMatch::From(n) => Some(CallMatch::From(n.saturating_sub(done).max(1))),
        CallMatch::Every => Some(CallMatch::Every),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(endpoint: Endpoint, calls: CallMatch, status: u16) -> FaultRule {
        FaultRule { endpoint, calls, kind: FaultKind::Status { status, body: None } }
    }

    fn status_of(plan: &mut LivePlan, endpoint: Endpoint) -> Option<u16> {
        match plan.decide(endpoint, || 0) {
            Some(FaultKind::Status { status, .. }) => Some(status),
            _ => None,
        }
    }

    #[test]
    fn added_rules_count_calls_from_where_the_plan_is() {
        let mut plan = LivePlan::new(
            vec![rule(Endpoint::Biscuit, CallMatch::Range { from: 2, to: 4 }, 500)],
            RandomFaults::default(),
        );
        let first: Vec<_> = (0..3).map(|_| status_of(&mut plan, Endpoint::Biscuit)).collect();
        assert_eq!(first, [None, Some(500), Some(500)]);
        plan.add(vec![rule(Endpoint::Biscuit, CallMatch::Nth(2), 503)], None);
        plan.add(vec![rule(Endpoint::Model, CallMatch::Nth(1), 401)], None);
        // The old range still covers the fourth call; the new rule the one after.
        let next: Vec<_> = (0..3).map(|_| status_of(&mut plan, Endpoint::Biscuit)).collect();
        assert_eq!(next, [Some(500), Some(503), None]);
        assert_eq!(status_of(&mut plan, Endpoint::Model), Some(401));
        assert_eq!(status_of(&mut plan, Endpoint::Model), None);
    }

    #[test]
    fn heal_drops_every_fault_and_later_rules_apply_again() {
        let mut plan = LivePlan::new(
            vec![rule(Endpoint::Model, CallMatch::Every, 500)],
            RandomFaults::default(),
        );
        assert_eq!(status_of(&mut plan, Endpoint::Model), Some(500));
        plan.heal();
        assert_eq!(status_of(&mut plan, Endpoint::Model), None);
        plan.add(vec![rule(Endpoint::Model, CallMatch::Nth(2), 502)], None);
        assert_eq!(status_of(&mut plan, Endpoint::Model), None);
        assert_eq!(status_of(&mut plan, Endpoint::Model), Some(502));
        assert_eq!(status_of(&mut plan, Endpoint::Model), None);
    }

    #[test]
    fn renumbering_keeps_what_is_still_ahead() {
        assert_eq!(renumbered(CallMatch::Nth(3), 3), None);
        assert_eq!(renumbered(CallMatch::Nth(4), 3), Some(CallMatch::Nth(1)));
        assert_eq!(
            renumbered(CallMatch::Range { from: 2, to: 9 }, 5),
            Some(CallMatch::Range { from: 1, to: 4 })
        );
        assert_eq!(renumbered(CallMatch::Range { from: 2, to: 5 }, 5), None);
        assert_eq!(renumbered(CallMatch::From(9), 5), Some(CallMatch::From(4)));
        assert_eq!(renumbered(CallMatch::From(2), 5), Some(CallMatch::From(1)));
    }

    #[test]
    fn an_informational_status_is_refused_at_its_line() {
        let text = "# faults\nfault biscuit 1 status=503\nfault model * status=101\n";
        let error = parse_servable_faults(Path::new("f.faults"), text).unwrap_err();
        assert_eq!((error.line, error.column), (3, 1), "{error}");
        let text = "fault_rate: model=10\nfault_kinds: timeout status=100\n";
        let error = parse_servable_faults(Path::new("f.faults"), text).unwrap_err();
        assert_eq!(error.line, 2, "{error}");
    }

    #[test]
    fn a_fault_file_holds_nothing_but_faults() {
        let error =
            parse_servable_faults(Path::new("f"), "fault model 1 reset\nstart A\n").unwrap_err();
        assert_eq!((error.line, error.column), (2, 1), "{error}");
        let error = parse_servable_faults(Path::new("f"), "seed: 4\n").unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        let error = parse_servable_faults(Path::new("f"), "fault_rate: model=5\n").unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        let file = parse_servable_faults(
            Path::new("f"),
            "\u{feff}fault_rate: model=5 # often\nfault_kinds: timeout\n\nfault biscuit 2.. reset\n",
        )
        .unwrap();
        assert_eq!(file.rules.len(), 1);
        assert_eq!(file.rules[0].line, 4);
        assert_eq!(
            file.random.map(|r| (r.line, r.value.kinds)),
            Some((2, vec![FaultKind::Timeout]))
        );
    }
}
