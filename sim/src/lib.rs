//! agentsim's simulator: runs the lifecycle of `agentsim-core` against a stateful backend model,
//! over real HTTP or in-process, in virtual time, with every random choice drawn from one seed.
//!
//! - [`scenario`]: the scenario file format.
//! - [`engine`]: the loop (virtual clock, event queue, process crashes and restarts); [`run`](mod@run)
//!   the options it runs with and the errors that stop it.
//! - [`backend`] and [`transport`]: the backend model and the two ways to reach it.
//! - [`fault`]: the fault plan.
//! - [`check`] and [`reference`](mod@reference): the invariants of spec section 5 and the reference resume rules.
//! - [`report`]: a run's artifacts, expectations and snapshot text.
//! - [`damage`]: the rollout rewrites of the `damage` step.
//! - [`serve`]: the backend model served over real HTTP, in real time (`sim serve`).

pub mod backend;
pub mod bench;
pub mod catalog;
pub mod check;
pub mod compare;
pub mod damage;
pub mod diff;
pub mod duration;
pub mod engine;
pub mod fault;
pub mod fuzz;
pub mod invariant;
pub mod judge;
pub mod mermaid;
pub mod oracle;
pub mod reference;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod serve;
pub mod stdout;
pub mod store;
pub mod transport;

pub use engine::run;
pub use report::RunReport;
pub use run::{RunError, RunOptions, StoreKind, TransportKind};
