//! `sim serve`: the backend model ([`crate::backend`]) served over real HTTP, in real time, for
//! any client (the production driver of `agentsim-runtime`, curl, a test).
//!
//! Unlike a simulated run, the server lives in real time: "now" is read from a [`ClockFn`] at
//! each request ([`system_clock`] by default), and a `timeout` fault really holds its answer.
//! Everything else is the simulator's: the model answers, the fault lines are the scenario
//! syntax and are decided by [`FaultPlan`](crate::fault::FaultPlan) with draws from the seed,
//! and answers pass through [`normalize_response`](crate::transport::normalize_response).
//!
//! ```text
//!  client ──HTTP──▶ hyper (one thread, current-thread tokio)
//!                     │ /admin/...  ──▶ admin API (expire, revoke, faults, heal, accounts,
//!                     │                  journal, reset, health)
//!                     ▼
//!                   clock() ─▶ FaultPlan::decide ─▶ Backend::handle ─▶ journal ─▶ answer
//!                                   (reset: closed unanswered; timeout: held, then sent)
//! ```
//!
//! What it guarantees: it listens on loopback unless told otherwise ([`check_listen`]); a bad
//! request gets the spec's error answer and never crashes the server; memory stays bounded
//! (request bodies up to [`MAX_BODY_BYTES`], [`MAX_CONNECTIONS`] connections, the newest
//! [`JOURNAL_KEEP`] journal entries); no secret (access token, biscuit, key, signature) reaches
//! the journal or a log line. A status fault in the 1xx range cannot be a final HTTP answer, so
//! fault lines holding one are refused when loaded ([`load_faults`], `POST /admin/faults`,
//! [`Server::start`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use agentsim_core::Timestamp;

use crate::fault::{FaultRule, RandomFaults};
use crate::scenario::ScenarioError;
use crate::seed;

mod admin;
mod cli;
mod faults;
mod http;
mod journal;
mod world;

pub use admin::ADMIN_ROUTES;
pub use cli::{run, ServeArgs};
pub use faults::{load_faults, parse_servable_faults, unservable};
pub use journal::{JournalEntry, JOURNAL_KEEP};

/// A clock the server reads "now" from (the backend model reads none itself).
pub type ClockFn = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The largest request body the server reads: larger ones are answered 413
/// `{"error":"invalid_request"}`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The most connections open at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 512;

/// How long a `timeout` fault holds its answer by default: 60 s, well past the protocol's 15 s
/// client timeout.
pub const DEFAULT_TIMEOUT_HOLD_MS: u64 = 60_000;

/// The wall clock, in milliseconds since the Unix epoch. This is the only place `sim` reads the
/// wall clock for a result: a served backend lives in real time, a simulated run never does.
pub fn system_clock() -> ClockFn {
    Arc::new(|| {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        let ms = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    })
}

/// How a server runs.
#[derive(Clone)]
pub struct ServeOptions {
    /// Where to listen. Default: `127.0.0.1:0` (an ephemeral port).
    pub listen: SocketAddr,
    /// The backend's random stream (runtime ids, task ids, biscuits) and the fault draws.
    pub seed: u64,
    /// [`BackendConfig::identity_ttl_ms`](crate::backend::BackendConfig::identity_ttl_ms).
    pub identity_ttl_ms: Option<u64>,
    /// (account id, access token) pairs the biscuit endpoint accepts.
    pub accounts: Vec<(String, String)>,
    /// Scripted faults, calls counted from the server's start (or its last reset).
    pub faults: Vec<FaultRule>,
    /// Random faults.
    pub random_faults: RandomFaults,
    /// How long a `timeout` fault holds its answer before sending it.
    pub timeout_hold_ms: u64,
    /// Where "now" comes from. Default: [`system_clock`].
    pub clock: ClockFn,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: crate::run::DEFAULT_SEED,
            identity_ttl_ms: None,
            accounts: Vec::new(),
            faults: Vec::new(),
            random_faults: RandomFaults::default(),
            timeout_hold_ms: DEFAULT_TIMEOUT_HOLD_MS,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    /// Account ids only: access tokens are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accounts: Vec<&str> = self.accounts.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("seed", &self.seed)
            .field("identity_ttl_ms", &self.identity_ttl_ms)
            .field("accounts", &accounts)
            .field("faults", &self.faults)
            .field("random_faults", &self.random_faults)
            .field("timeout_hold_ms", &self.timeout_hold_ms)
            .finish_non_exhaustive()
    }
}

/// An account with an access token drawn from the seed, as a simulated run draws a signed-in
/// user's: `at-` and 48 hex digits.
pub fn seeded_account(seed: u64, account_id: &str) -> (String, String) {
    let mut rng = seed::stream(seed, &format!("token/{account_id}"));
    (account_id.to_owned(), format!("at-{}", seed::hex(&mut rng, 24)))
}

/// Why `sim serve` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address is not a loopback one and `--public` was not given.
    #[error(
        "refusing to listen on {listen}: it is not a loopback address, so other machines could \
         reach this backend and its admin API; listen on 127.0.0.1 or [::1], or add --public"
    )]
    NotLoopback {
        /// The address asked for.
        listen: SocketAddr,
    },
    /// The fault file does not parse, or holds a fault HTTP cannot serve.
    #[error(transparent)]
    Faults(#[from] ScenarioError),
    /// The address could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Listen {
        /// The address asked for.
        listen: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Refuses an address other machines could reach unless `public`. IPv4-mapped IPv6 loopback
/// (`[::ffff:127.0.0.1]`) counts as loopback.
pub fn check_listen(listen: SocketAddr, public: bool) -> Result<(), ServeError> {
    if public || listen.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(ServeError::NotLoopback { listen })
    }
}

/// What the server's connections share. No `Debug`: the model holds access tokens and biscuits.
struct Shared {
    options: ServeOptions,
    /// `http://<local address>`: the base of the URLs the model sees.
    base_url: String,
    world: world::Guarded,
}

/// A running server: one thread with a current-thread tokio runtime. Dropping it shuts it down.
pub struct Server {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("base_url", &self.shared.base_url).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `options.listen`, spawns the server thread and returns once it is listening.
    /// Fault options holding a fault HTTP cannot serve ([`unservable`]) are refused with
    /// [`std::io::ErrorKind::InvalidInput`]. No loopback check here: see [`check_listen`].
    pub fn start(options: ServeOptions) -> std::io::Result<Server> {
        let kinds = options.faults.iter().map(|rule| &rule.kind);
        if let Some(message) = kinds.chain(&options.random_faults.kinds).find_map(unservable) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, message));
        }
        let listener = TcpListener::bind(options.listen)?;
        listener.set_nonblocking(true)?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let world = world::Guarded::new(world::World::new(&options));
        let shared = Arc::new(Shared { options, base_url, world });
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new().name("sim-serve".into()).spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => http::accept_loop(listener, for_thread, shutdown_rx).await,
                    Err(e) => tracing::error!("cannot serve on the bound socket: {e}"),
                }
            });
            // Dropping the runtime here ends every connection, held answers included.
        })?;
        Ok(Server { shared, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT`: the base URL to configure a client with.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The kept journal entries, oldest first: what `GET /admin/journal` answers.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.world.lock_anyway().journal(0)
    }

    /// Blocks until the server thread ends (it ends only when shut down, or if it cannot serve
    /// on its socket): `sim serve` serves until it is killed.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the server thread panicked");
            }
        }
    }

    /// Stops accepting, ends every connection and the thread. Dropping the server does the same.
    pub fn shutdown(self) {}
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the loop has ended already.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the server thread panicked");
            }
        }
    }
}
