//! The fault plan: which backend call misbehaves, and how.
//!
//! A fault is decided by the simulator's loop before a request is sent, so both transports see the
//! same decision. Faults that HTTP can express are produced by the backend model as a real response;
//! the rest (connection reset, stall past the timeout) are applied at the transport boundary, in the
//! same place for both transports.

use std::collections::BTreeMap;
use std::fmt;

/// The backend endpoints a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `GET /authenticate_app_v2`.
    Biscuit,
    /// `POST /v1/agent/register`.
    IdentityRegister,
    /// `POST /v1/agent/{runtime}/task/register`.
    TaskRegister,
    /// `POST /v1/responses`, the model request of a turn.
    Model,
}

impl Endpoint {
    /// Every endpoint, in a fixed order.
    pub const ALL: [Endpoint; 4] =
        [Endpoint::Biscuit, Endpoint::IdentityRegister, Endpoint::TaskRegister, Endpoint::Model];

    /// The name used in scenario files, snapshots and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Biscuit => "biscuit",
            Endpoint::IdentityRegister => "identity_register",
            Endpoint::TaskRegister => "task_register",
            Endpoint::Model => "model",
        }
    }

    /// Parses a scenario-file name.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Which endpoint a request path targets, if any.
    pub fn of_path(path: &str) -> Option<Endpoint> {
        let path = path.split('?').next().unwrap_or(path);
        match path {
            agentsim_core::wire::BISCUIT_PATH => Some(Endpoint::Biscuit),
            agentsim_core::wire::IDENTITY_REGISTER_PATH => Some(Endpoint::IdentityRegister),
            agentsim_core::wire::MODEL_PATH => Some(Endpoint::Model),
            p if agentsim_core::wire::runtime_of_task_register_path(p).is_some() => {
                Some(Endpoint::TaskRegister)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a call misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The backend does nothing and answers this status (and body; a default JSON error if none).
    Status { status: u16, body: Option<String> },
    /// The backend handles the request, but the response never arrives: the client times out.
    Timeout,
    /// The connection is reset before the backend sees the request.
    Reset,
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose JSON lacks the expected field.
    MissingField,
    /// A 200 whose JSON has the field with the wrong type.
    WrongJsonTypes,
    /// A 200 with an empty body.
    EmptyBody,
    /// A 200 with `content-type: text/html` and an HTML body.
    WrongContentType,
    /// A 200 with a 10 MB body.
    HugeBody,
    /// Task registration: `encrypted_task_id` is not base64.
    BadBase64,
    /// Task registration: the box is sealed to another key.
    WrongKeyBox,
    /// Task registration: the sealed plaintext is not UTF-8.
    NonUtf8Plaintext,
    /// Biscuit: a 200 without the `x-openai-authorization` header.
    MissingBiscuitHeader,
    /// Biscuit: a 200 whose header value is not UTF-8.
    NonUtf8BiscuitHeader,
}

impl FaultKind {
    /// The name used in scenario files (`status=503` for [`FaultKind::Status`]).
    pub fn name(&self) -> String {
        match self {
            FaultKind::Status { status, .. } => format!("status={status}"),
            FaultKind::Timeout => "timeout".into(),
            FaultKind::Reset => "reset".into(),
            FaultKind::MalformedJson => "malformed_json".into(),
            FaultKind::MissingField => "missing_field".into(),
            FaultKind::WrongJsonTypes => "wrong_json_types".into(),
            FaultKind::EmptyBody => "empty_body".into(),
            FaultKind::WrongContentType => "wrong_content_type".into(),
            FaultKind::HugeBody => "huge_body".into(),
            FaultKind::BadBase64 => "bad_base64".into(),
            FaultKind::WrongKeyBox => "wrong_key_box".into(),
            FaultKind::NonUtf8Plaintext => "non_utf8_plaintext".into(),
            FaultKind::MissingBiscuitHeader => "missing_biscuit_header".into(),
            FaultKind::NonUtf8BiscuitHeader => "non_utf8_biscuit_header".into(),
        }
    }

    /// Parses a scenario-file name without arguments (everything but `status=`).
    pub fn from_plain_name(name: &str) -> Option<FaultKind> {
        Some(match name {
            "timeout" => FaultKind::Timeout,
            "reset" => FaultKind::Reset,
            "malformed_json" => FaultKind::MalformedJson,
            "missing_field" => FaultKind::MissingField,
            "wrong_json_types" => FaultKind::WrongJsonTypes,
            "empty_body" => FaultKind::EmptyBody,
            "wrong_content_type" => FaultKind::WrongContentType,
            "huge_body" => FaultKind::HugeBody,
            "bad_base64" => FaultKind::BadBase64,
            "wrong_key_box" => FaultKind::WrongKeyBox,
            "non_utf8_plaintext" => FaultKind::NonUtf8Plaintext,
            "missing_biscuit_header" => FaultKind::MissingBiscuitHeader,
            "non_utf8_biscuit_header" => FaultKind::NonUtf8BiscuitHeader,
            _ => return None,
        })
    }

    /// Every plain fault name, for error messages and generators.
    pub const PLAIN_NAMES: [&'static str; 13] = [
        "timeout",
        "reset",
        "malformed_json",
        "missing_field",
        "wrong_json_types",
        "empty_body",
        "wrong_content_type",
        "huge_body",
        "bad_base64",
        "wrong_key_box",
        "non_utf8_plaintext",
        "missing_biscuit_header",
        "non_utf8_biscuit_header",
    ];
}

/// Which calls of an endpoint a rule hits. Calls are counted per endpoint from 1 over the whole
/// run (restarts included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallMatch {
    /// Exactly call `n`.
    Nth(u32),
    /// Calls `from..=to`.
    Range { from: u32, to: u32 },
    /// Call `n` and every later one.
    From(u32),
    /// Every call.
    Every,
}

impl CallMatch {
    /// Whether call number `n` (1-based) is hit.
    pub fn hits(self, n: u32) -> bool {
        match self {
            CallMatch::Nth(k) => n == k,
            CallMatch::Range { from, to } => (from..=to).contains(&n),
            CallMatch::From(k) => n >= k,
            CallMatch::Every => true,
        }
    }
}

impl fmt::Display for CallMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallMatch::Nth(n) => write!(f, "{n}"),
            CallMatch::Range { from, to } => write!(f, "{from}..{to}"),
            CallMatch::From(n) => write!(f, "{n}.."),
            CallMatch::Every => f.write_str("*"),
        }
    }
}

/// One scripted fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// The endpoint it targets.
    pub endpoint: Endpoint,
    /// Which calls of that endpoint.
    pub calls: CallMatch,
    /// What happens to them.
    pub kind: FaultKind,
}

/// Random faults for swarm testing: each call of an endpoint fails with `rate_per_mille / 1000`
/// probability, with a kind drawn from `kinds`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RandomFaults {
    /// Probability per call, in thousandths, per endpoint.
    pub rate_per_mille: BTreeMap<Endpoint, u16>,
    /// The kinds to draw from (all equally likely); empty means no random faults.
    pub kinds: Vec<FaultKind>,
}

/// The run's fault plan: scripted rules (first match wins), then random faults; `heal` turns both
/// off for the rest of the run.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
    random: RandomFaults,
    healed: bool,
    calls: BTreeMap<Endpoint, u32>,
}

impl FaultPlan {
    /// A plan from scripted rules and random faults.
    pub fn new(rules: Vec<FaultRule>, random: RandomFaults) -> FaultPlan {
        FaultPlan { rules, random, healed: false, calls: BTreeMap::new() }
    }

    /// Counts a call of `endpoint` and decides its fault. `draw` yields uniform `u32`s from the
    /// run's fault stream; it is called the same number of times whatever the outcome, so a
    /// fault decision never shifts later draws.
    pub fn decide(
        &mut self,
        endpoint: Endpoint,
        mut draw: impl FnMut() -> u32,
    ) -> Option<FaultKind> {
        let n = self.calls.entry(endpoint).or_insert(0);
        *n += 1;
        let n = *n;
        let (roll, pick) = (draw(), draw());
        if self.healed {
            return None;
        }
        if let Some(rule) = self.rules.iter().find(|r| r.endpoint == endpoint && r.calls.hits(n)) {
            return Some(rule.kind.clone());
        }
        let rate = u32::from(*self.random.rate_per_mille.get(&endpoint).unwrap_or(&0));
        if rate > 0 && !self.random.kinds.is_empty() && roll % 1000 < rate {
            let kind = &self.random.kinds[pick as usize % self.random.kinds.len()];
            return Some(kind.clone());
        }
        None
    }

    /// Turns every fault off for the rest of the run.
    pub fn heal(&mut self) {
        self.healed = true;
    }

    /// Whether the plan has been healed.
    pub fn is_healed(&self) -> bool {
        self.healed
    }

    /// How many calls of `endpoint` have been counted.
    pub fn calls(&self, endpoint: Endpoint) -> u32 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }
}
