//! The differential test: the simulated run equals the real run.
//!
//! Every scenario whose steps a real process can carry out without a controlled interleaving
//! ([`eligible`]) is played twice, one test each (`<scenario>::differential`):
//! - (a) in the simulator, in virtual time, through the memory transport;
//! - (b) through `agentsim-runtime` (tokio, reqwest, real files) against `sim serve` (in this
//!   process, over loopback), in real time, world changes through the admin API.
//!
//! A real process cannot hold two requests in flight in a chosen order, so both sides play the
//! scenario *settled*: a `settle` after every step (the real side waits until no request is in
//! flight). The two are then compared as `sim diff` compares runs, once ids, keys and timestamps
//! are renamed or masked: each thread's events, each thread's sends and appends in the order they
//! were carried out, the request sequence (method, path, assertion, fault, status and answer) and
//! each thread's rollout. A divergence names the scenario and the first differing line.
//!
//! World changes: expiry, revocation, heal and sign-ins go through the admin API of `sim serve`;
//! a warm identity or a rotation is registered out of band (`POST /admin/identities`) and written
//! to the auth store; random faults match because the server draws them from the simulator's
//! stream of the seed, in the same request order. A crash (or a restart, which kills the running
//! process) is a power loss too: each rollout is cut to the bytes the runtime last acknowledged as
//! synced, so a runtime that acknowledges before `sync_data` loses lines here.
//!
//! Time: the real side's clock, shared by the client and the server, is the real clock (elapsed
//! since the run began, from the simulator's epoch) plus every `advance` of the scenario, applied
//! as a jump: TTLs stay as written (hours), advances take no time, and everything between them
//! (requests, appends) runs in real time. The client's request timeout is capped at
//! [`TIMEOUT_CAP`] and a `timeout` fault holds its answer for [`TIMEOUT_HOLD`], so a timeout
//! costs a fraction of a second rather than 15 s.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentsim_core::{Auth, Binding, Config, Event, Timestamp, TurnId};
use agentsim_runtime::{Notice, Options, Runtime};
use agentsim_tests::all_scenarios;
use libtest_mimic::{Arguments, Failed, Trial};
use sim::fault::Endpoint;
use sim::report::EntryKind;
use sim::scenario::{
    AuthSpec, ConfigChange, CrashPoint, InitialIdentity, Located, ResumeSource, Scenario, Step,
};
use sim::serve::{JournalEntry, ServeOptions, Server};

/// The client's request timeout in this test (the spec's is 15 s).
const TIMEOUT_CAP: Duration = Duration::from_millis(300);
/// How long the server holds a `timeout` fault's answer: past [`TIMEOUT_CAP`].
const TIMEOUT_HOLD: Duration = Duration::from_millis(1_500);
/// How long one step of the real side may take (each takes milliseconds; a timeout fault
/// [`TIMEOUT_CAP`]).
const STEP_LIMIT: Duration = Duration::from_secs(5);
/// The base URL the simulated side's messages carry.
const SIMULATED_BASE: &str = sim::transport::MEMORY_BASE_URL;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let mut skipped = Vec::new();
    for scenario in all_scenarios() {
        match eligible(&scenario) {
            Ok(()) => {
                let name = format!("{}::differential", scenario.name);
                trials.push(Trial::test(name, move || differential(&scenario)));
            }
            Err(why) => skipped.push(format!("{}: {why}", scenario.name)),
        }
    }
    let count = trials.len();
    trials.push(Trial::test("differential::most_scenarios_are_eligible", move || {
        // The test must not quietly check nothing: 50 of 61 scenarios are expressible today.
        if count >= 45 {
            Ok(())
        } else {
            Err(format!("only {count} eligible scenarios; skipped:\n{}", skipped.join("\n")).into())
        }
    }));
    libtest_mimic::run(&args, trials).exit_code()
}

/// Whether the runtime can express the scenario, or why not.
fn eligible(scenario: &Scenario) -> Result<(), String> {
    let config = &scenario.config;
    if config.latency_ms.1 >= agentsim_core::limits::REQUEST_TIMEOUT_MS {
        return Err("latencies past the timeout (a real backend answers at once)".into());
    }
    if config.identity_ttl_ms.is_some() && config.latency_ms.0 >= 1_000 {
        // Time spent in flight decides which identity has expired; over loopback a request
        // takes a millisecond, not the scenario's seconds.
        return Err("expiry decided by seconds-long latencies".into());
    }
    for Located { value: step, .. } in &scenario.steps {
        let why = match step {
            Step::Turn { wait: false, .. } => "`submit` interleaves turns",
            Step::AdvanceToExpiry { .. } => "`advance to_expiry` needs a millisecond-exact clock",
            Step::Crash(CrashPoint::OnAppend(_) | CrashPoint::OnResponse(_)) => {
                "an armed crash point"
            }
            Step::Damage { .. } => "`damage` rewrites a rollout",
            Step::On { .. } => "a world change armed at a request",
            _ => continue,
        };
        return Err(why.into());
    }
    if scenario.faults.iter().any(|f| sim::serve::unservable(&f.value.kind).is_some()) {
        return Err("a fault HTTP cannot carry".into());
    }
    Ok(())
}

/// The scenario with a `settle` after every step.
fn settled(scenario: &Scenario) -> Scenario {
    let mut out = scenario.clone();
    out.steps = Vec::new();
    for step in &scenario.steps {
        out.steps.push(step.clone());
        if step.value != Step::Settle {
            out.steps.push(Located { line: step.line, value: Step::Settle });
        }
    }
    out
}

fn differential(scenario: &Scenario) -> Result<(), Failed> {
    let settled = settled(scenario);
    let simulated = simulated(&settled)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let real = runtime.block_on(real(&settled))?;
    let comparison = sim::diff::compare(&simulated, &real);
    match comparison.first {
        None => Ok(()),
        Some((section, line, left, right)) => Err(format!(
            "{}: the real run differs from the simulated one, first in {section} line {line}:\n  \
             simulated: {left}\n  real:      {right}\n\n--- simulated\n{simulated}\n--- real\n{real}",
            scenario.name
        )
        .into()),
    }
}

/// The simulated side, as comparable text.
fn simulated(scenario: &Scenario) -> Result<String, Failed> {
    let report = sim::run(scenario, &sim::RunOptions::default())
        .map_err(|e| format!("{}: the simulated run failed: {e}", scenario.name))?;
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &report.tally.event_values {
        events.entry(event.thread.0.clone()).or_default().push(event_line(event, SIMULATED_BASE));
    }
    let requests: Vec<String> = report
        .tally
        .request_records
        .iter()
        .map(|r| {
            request_line(&r.method, &r.path, &r.request, r.fault.as_deref(), r.status, &r.answer)
        })
        .collect();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &report.tally.entries {
        let line = match entry.kind {
            EntryKind::Request(endpoint) => send_line(endpoint),
            EntryKind::Append => "append".to_owned(),
            _ => continue,
        };
        order.entry(entry.who.clone()).or_default().push(line);
    }
    Ok(comparable(&events, &order, &requests, &report.rollouts))
}

/// How the order section names a send.
fn send_line(endpoint: Option<Endpoint>) -> String {
    format!("send {}", endpoint.map_or("(no endpoint)", Endpoint::name))
}

/// The comparable text of one side: events per thread, each thread's sends and appends in
/// order, the requests, and the rollouts.
fn comparable(
    events: &BTreeMap<String, Vec<String>>,
    order: &BTreeMap<String, Vec<String>>,
    requests: &[String],
    rollouts: &BTreeMap<String, Vec<u8>>,
) -> String {
    let mut out = String::new();
    for (thread, lines) in events {
        out.push_str(&format!("--- events {thread}\n"));
        lines.iter().for_each(|l| out.push_str(&format!("{l}\n")));
    }
    for (who, lines) in order {
        out.push_str(&format!("--- order {who}\n"));
        lines.iter().for_each(|l| out.push_str(&format!("{l}\n")));
    }
    out.push_str("--- requests\n");
    requests.iter().for_each(|l| out.push_str(&format!("{l}\n")));
    for (thread, bytes) in rollouts {
        out.push_str(&format!("--- rollout {thread}\n"));
        out.push_str(&String::from_utf8_lossy(bytes));
    }
    out
}

fn event_line(event: &Event, base: &str) -> String {
    let line = event.to_string();
    line.replace(base, "{base}")
}

fn request_line(
    method: &str,
    path: &str,
    request: &str,
    fault: Option<&str>,
    status: Option<u16>,
    answer: &str,
) -> String {
    let fault = fault.map(|f| format!(" [fault {f}]")).unwrap_or_default();
    let status = status.map_or("no answer".to_owned(), |s| s.to_string());
    format!("{method} {path}{request}{fault} -> {status}{answer}")
}

/// The real side: the runtime against `sim serve`, as comparable text.
async fn real(scenario: &Scenario) -> Result<String, Failed> {
    let mut world = RealWorld::new(scenario)?;
    world
        .begin(scenario)
        .await
        .map_err(|e| format!("{}: the real run cannot begin: {e}", scenario.name))?;
    for step in &scenario.steps {
        let failed = |e: String| {
            format!("{}:{}: the real run failed at {:?}: {e}", scenario.name, step.line, step.value)
        };
        // A runtime that loses a message hangs the step: fail it, don't hang the suite.
        match tokio::time::timeout(STEP_LIMIT, world.step(scenario, &step.value)).await {
            Ok(result) => result.map_err(failed)?,
            Err(_) => return Err(failed(format!("no end within {STEP_LIMIT:?}")).into()),
        }
    }
    world.collect();
    if let Some(process) = world.process.take() {
        process.shutdown().await;
    }
    let journal = world.server.journal();
    let base = world.server.base_url();
    let requests: Vec<String> = journal
        .iter()
        .map(|j: &JournalEntry| {
            request_line(&j.method, &j.path, &j.request, j.fault.as_deref(), j.status, &j.answer)
        })
        .collect();
    let mut rollouts = BTreeMap::new();
    let dir = world.home.path().join("rollouts");
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(thread) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        rollouts.insert(thread, bytes);
    }
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &world.events {
        events.entry(event.thread.0.clone()).or_default().push(event_line(event, &base));
    }
    Ok(comparable(&events, &world.order, &requests, &rollouts))
}

/// Everything the real side runs on: the server, the shared clock, the home directory and the
/// process (none after a crash).
struct RealWorld {
    server: Server,
    home: tempfile::TempDir,
    /// The scenario's `advance`s so far, in ms.
    advanced: Arc<AtomicU64>,
    clock: agentsim_runtime::Clock,
    config: Config,
    auth: Auth,
    /// Each account's access token, registered with the server on first use.
    tokens: BTreeMap<String, String>,
    process: Option<Runtime>,
    /// The running process's notices.
    notices: Option<tokio::sync::mpsc::UnboundedReceiver<agentsim_runtime::Notice>>,
    /// Events of every process, in order.
    events: Vec<Event>,
    /// Each thread's sends and appends, in the order the runtime carried them out.
    order: BTreeMap<String, Vec<String>>,
    /// Each rollout's bytes known durable, as the running process last acknowledged them.
    synced: BTreeMap<String, u64>,
    next_turn: u32,
    /// Identities registered out of band so far (each key's seed).
    identities: u8,
    admin: reqwest::Client,
}

impl RealWorld {
    fn new(scenario: &Scenario) -> Result<RealWorld, Failed> {
        let advanced = Arc::new(AtomicU64::new(0));
        // Real time since the run began, from the simulator's epoch, plus the advances.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let jumps = Arc::clone(&advanced);
        let clock: agentsim_runtime::Clock = Arc::new(move || {
            let elapsed = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            Timestamp::SIM_EPOCH.plus_ms(elapsed + jumps.load(Ordering::SeqCst))
        });
        let options = ServeOptions {
            seed: scenario.config.seed.unwrap_or(sim::engine::DEFAULT_SEED),
            identity_ttl_ms: scenario.config.identity_ttl_ms,
            faults: scenario.faults.iter().map(|f| f.value.clone()).collect(),
            // `sim serve` draws random faults from the simulator's stream of the same seed, in
            // request order: a settled run sends in the same order on both sides.
            random_faults: scenario.config.random_faults.clone(),
            timeout_hold_ms: TIMEOUT_HOLD.as_millis() as u64,
            clock: Arc::clone(&clock),
            ..ServeOptions::default()
        };
        let server = Server::start(options).map_err(|e| format!("sim serve: {e}"))?;
        let config = Config {
            use_agent_identity: scenario.config.use_agent_identity,
            expiry: scenario.config.expiry,
            persist_task: scenario.config.persist_task,
            base_url: server.base_url(),
            ..Config::default()
        };
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        Ok(RealWorld {
            server,
            home,
            advanced,
            clock,
            config,
            auth: Auth::None,
            tokens: BTreeMap::new(),
            process: None,
            notices: None,
            events: Vec::new(),
            order: BTreeMap::new(),
            synced: BTreeMap::new(),
            next_turn: 1,
            identities: 0,
            admin: reqwest::Client::new(),
        })
    }

    /// Signs in as the header says, registers a warm identity if it says so, and starts the
    /// first process.
    async fn begin(&mut self, scenario: &Scenario) -> Result<(), String> {
        self.auth = self.sign_in(&scenario.config.auth).await?;
        if scenario.config.identity == InitialIdentity::Warm {
            self.register_out_of_band().await?;
        }
        self.restart(&ConfigChange::default()).await
    }

    /// Another process registers an identity for the signed-in workspace (through the admin
    /// API) and writes it to the auth store. False when no workspace is signed in.
    async fn register_out_of_band(&mut self) -> Result<bool, String> {
        let Some(binding) = self.auth.binding().cloned() else { return Ok(false) };
        self.identities += 1;
        let key = agentsim_core::wire::IdentityKey::from_seed([self.identities; 32]);
        let body = serde_json::json!({
            "account_id": binding.account_id,
            "agent_public_key": key.ssh_public_key(),
        });
        let answer = self.admin_post("/admin/identities", body.to_string()).await?;
        let response: agentsim_core::wire::IdentityRegistrationResponse =
            serde_json::from_str(&answer).map_err(say)?;
        let expires_at = match &response.expires_at {
            Some(text) => Some(Timestamp::parse_rfc3339(text).map_err(say)?),
            None => None,
        };
        let stored = agentsim_core::StoredIdentity {
            binding,
            agent_runtime_id: response.agent_runtime_id,
            private_key: key.to_pkcs8_base64(),
            registered_at: (self.clock)(),
            expires_at,
        };
        self.auth_store().save(Some(&stored)).map_err(say)?;
        Ok(true)
    }

    fn auth_store(&self) -> agentsim_runtime::auth_store::AuthStore {
        agentsim_runtime::auth_store::AuthStore::new(&self.home.path().join("auth.json"))
    }

    async fn step(&mut self, scenario: &Scenario, step: &Step) -> Result<(), String> {
        match step {
            Step::Start { thread } => self.live()?.start_thread(thread).await.map_err(say)?,
            Step::Resume { thread, from } => {
                let target = self.home.path().join("rollouts").join(format!("{thread}.jsonl"));
                match from {
                    ResumeSource::Own => {}
                    ResumeSource::File(path) => copy(&scenario.resolve(path), &target)?,
                    ResumeSource::Thread(other) => {
                        let source = target.with_file_name(format!("{other}.jsonl"));
                        copy(&source, &target)?;
                    }
                }
                self.live()?.resume_thread(thread).await.map_err(say)?;
            }
            Step::Fork { child, parent } => {
                self.live()?.fork_thread(child, parent).await.map_err(say)?;
            }
            Step::Turn { thread, text: words, .. } => {
                let turn = TurnId(self.next_turn);
                self.next_turn += 1;
                self.live()?.turn(thread, turn, words).await.map_err(say)?;
            }
            Step::Compact { thread } => self.live()?.compact(thread).await.map_err(say)?,
            Step::Rollback { thread, turns } => {
                self.live()?.rollback(thread, *turns).await.map_err(say)?;
            }
            Step::Advance { ms } => {
                self.advanced.fetch_add(*ms, Ordering::SeqCst);
            }
            Step::Settle => {}
            Step::RotateIdentity => {
                if self.register_out_of_band().await? {
                    // Without a process, the next one reads the auth store as it starts.
                    if let Some(process) = &self.process {
                        process.reload_auth_store().await.map_err(say)?;
                    }
                }
            }
            Step::ExpireIdentity | Step::RevokeIdentity => {
                if let Some(identity) = self.auth_store().load().map_err(say)? {
                    let verb =
                        if matches!(step, Step::RevokeIdentity) { "revoke" } else { "expire" };
                    let body = serde_json::json!({ "agent_runtime_id": identity.agent_runtime_id });
                    self.admin_post(&format!("/admin/{verb}"), body.to_string()).await?;
                }
            }
            Step::Auth(spec) => {
                self.auth = self.sign_in(spec).await?;
                // Without a process, the next one starts with it.
                if let Some(process) = &self.process {
                    process.set_auth(self.auth.clone()).await.map_err(say)?;
                }
            }
            Step::Crash(_) => self.crash()?,
            Step::Restart(change) => self.restart(change).await?,
            Step::Heal => {
                self.admin_post("/admin/heal", String::new()).await?;
            }
            other => return Err(format!("not expressible: {other:?}")),
        }
        self.settle().await
    }

    /// Waits until the process has nothing in flight, and collects its events so far.
    async fn settle(&mut self) -> Result<(), String> {
        if let Some(process) = &self.process {
            process.idle().await.map_err(say)?;
        }
        self.collect();
        Ok(())
    }

    /// Takes the events the process emitted so far: the driver sends each notice before it
    /// answers the call that caused it, so after a call returns they are all in the channel.
    fn collect(&mut self) {
        let Some(notices) = &mut self.notices else { return };
        while let Ok(notice) = notices.try_recv() {
            match notice {
                Notice::Event(event) => self.events.push(event),
                Notice::Appended { thread, synced_bytes, .. } => {
                    self.order.entry(thread.0.clone()).or_default().push("append".to_owned());
                    self.synced.insert(thread.0, synced_bytes);
                }
                Notice::Sent { thread, path, .. } => {
                    let who = thread.map_or("-".to_owned(), |t| t.0);
                    self.order.entry(who).or_default().push(send_line(Endpoint::of_path(&path)));
                }
            }
        }
    }

    /// The process dies, and with it the power: what it wrote but had not made durable is lost
    /// (files are cut to the bytes last acknowledged as synced). A runtime that acknowledges
    /// before `sync_data` loses acknowledged lines here.
    fn crash(&mut self) -> Result<(), String> {
        self.collect();
        self.process = None;
        self.notices = None;
        for (thread, synced) in std::mem::take(&mut self.synced) {
            let path = self.home.path().join("rollouts").join(format!("{thread}.jsonl"));
            let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(say)?;
            file.set_len(synced).map_err(say)?;
        }
        Ok(())
    }

    fn live(&self) -> Result<&Runtime, String> {
        self.process.as_ref().ok_or_else(|| "no process is running".to_owned())
    }

    async fn restart(&mut self, change: &ConfigChange) -> Result<(), String> {
        // As in the simulator, a restart kills the running process.
        self.crash()?;
        change.apply(&mut self.config);
        let options = Options {
            clock: Arc::clone(&self.clock),
            timeout_cap: Some(TIMEOUT_CAP),
            ..Options::new(self.config.clone(), self.auth.clone(), self.home.path().to_owned())
        };
        let process = Runtime::open(options).await.map_err(say)?;
        self.notices = Some(process.subscribe().await.map_err(say)?);
        self.process = Some(process);
        Ok(())
    }

    async fn sign_in(&mut self, spec: &AuthSpec) -> Result<Auth, String> {
        Ok(match spec {
            AuthSpec::None => Auth::None,
            AuthSpec::ApiKey => Auth::ApiKey,
            AuthSpec::ChatGpt { account, user } => {
                let token = match self.tokens.get(account) {
                    Some(token) => token.clone(),
                    None => {
                        let token = format!("at-differential-{account}");
                        let body =
                            serde_json::json!({ "account_id": account, "access_token": token });
                        self.admin_post("/admin/accounts", body.to_string()).await?;
                        self.tokens.insert(account.clone(), token.clone());
                        token
                    }
                };
                Auth::ChatGpt {
                    binding: Binding { account_id: account.clone(), user_id: user.clone() },
                    access_token: token,
                }
            }
        })
    }

    /// Posts to the admin API and returns the answer's body.
    async fn admin_post(&self, path: &str, body: String) -> Result<String, String> {
        agentsim_tests::admin_post(&self.admin, &self.server.base_url(), path, body).await
    }
}

fn copy(source: &Path, target: &Path) -> Result<(), String> {
    std::fs::copy(source, target)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", source.display(), target.display()))
}

fn say(error: impl std::fmt::Display) -> String {
    error.to_string()
}
