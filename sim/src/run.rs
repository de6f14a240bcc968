//! How a run is asked for and why it may not happen: the options the engine runs a scenario with
//! and the errors that stop it before a verdict. Both the engine and the report use these, so they
//! live apart from either.

/// Which transport carries backend calls (also the CLI's `--transport`: the docs are its help).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportKind {
    /// Real HTTP to a wiremock server on loopback.
    Http,
    /// In-process calls into the same backend model.
    #[default]
    Memory,
}

impl TransportKind {
    /// `memory` or `http`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Memory => "memory",
            TransportKind::Http => "http",
        }
    }
}

/// Where rollouts are kept during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// In memory.
    #[default]
    Memory,
    /// Real files in a temporary directory.
    Files,
}

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// The transport.
    pub transport: TransportKind,
    /// The rollout store.
    pub store: StoreKind,
    /// Most events one step may process before the run fails as stuck.
    pub events_per_step_cap: u64,
    /// Whether to record the human timeline (fuzzing turns it off for speed).
    pub timeline: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            seed: None,
            transport: TransportKind::Memory,
            store: StoreKind::Memory,
            events_per_step_cap: 100_000,
            timeline: true,
        }
    }
}

/// Why a run could not be carried out at all (bad input or a broken harness). Invariant
/// violations and failed expectations are not errors: they are in the
/// [`RunReport`](crate::report::RunReport).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A step cannot be carried out in the state the run is in (a thread that is not live, a
    /// missing rollout file, ...).
    #[error("{file}:{line}: {message}")]
    Step { file: String, line: usize, message: String },
    /// The transport or the rollout store failed for a reason outside the scenario.
    #[error("harness failure: {0}")]
    Harness(String),
}

/// ` --features agentsim-core/<bug>,...` for the planted bugs compiled into this build (empty in a
/// normal build), so a printed replay command rebuilds the same lifecycle.
pub fn replay_features() -> String {
    let features: Vec<String> =
        agentsim_core::planted_bugs().map(|f| format!("agentsim-core/{f}")).collect();
    if features.is_empty() {
        String::new()
    } else {
        format!(" --features {}", features.join(","))
    }
}

/// The master seed when neither the options nor the scenario give one.
pub const DEFAULT_SEED: u64 = 0;
