//! The `sim serve` command line: its flags, what it prints on start, and serving until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{
    check_listen, load_faults, seeded_account, system_clock, ServeError, ServeOptions, Server,
    ADMIN_ROUTES,
};
use crate::outln;

/// The flags of `sim serve`.
#[derive(Clone, clap::Args)]
pub struct ServeArgs {
    /// Where to listen. An address other machines can reach needs --public.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Seed of the backend's random stream (runtime ids, task ids, biscuits), of the fault draws
    /// and of the default account's token.
    #[arg(long, default_value_t = crate::run::DEFAULT_SEED)]
    pub seed: u64,
    /// How long a registered identity stays valid (registration answers `expires_at`), e.g. 30s
    /// or 1h; without it, identities never expire.
    #[arg(long, value_name = "DURATION", value_parser = duration_ms)]
    pub identity_ttl: Option<u64>,
    /// An account the biscuit endpoint accepts (repeatable). Without any: `acct-1` with a token
    /// drawn from the seed. A token given here shows in the process list.
    #[arg(long = "account", value_name = "ID=TOKEN", value_parser = account)]
    pub accounts: Vec<(String, String)>,
    /// Fault lines as in a scenario (`fault <endpoint> <calls> <kind>`, `fault_rate:`,
    /// `fault_kinds:`), calls counted from the server's start.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// How long a `timeout` fault holds its answer before sending it.
    #[arg(long, value_name = "DURATION", value_parser = duration_ms, default_value = "60s")]
    pub timeout_hold: u64,
    /// Allow a --listen address that is not loopback (0.0.0.0, a LAN address).
    #[arg(long)]
    pub public: bool,
}

impl std::fmt::Debug for ServeArgs {
    /// Account ids only: access tokens are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accounts: Vec<&str> = self.accounts.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("ServeArgs")
            .field("listen", &self.listen)
            .field("seed", &self.seed)
            .field("identity_ttl", &self.identity_ttl)
            .field("accounts", &accounts)
            .field("faults", &self.faults)
            .field("timeout_hold", &self.timeout_hold)
            .field("public", &self.public)
            .finish()
    }
}

/// A duration flag in milliseconds, in the scenario files' syntax.
fn duration_ms(text: &str) -> Result<u64, String> {
    crate::duration::parse_ms(text).map_err(|e| e.to_string())
}

/// `ID=TOKEN`, both non-empty. The message never repeats the token.
fn account(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((id, token)) if !id.is_empty() && !token.is_empty() => {
            Ok((id.to_owned(), token.to_owned()))
        }
        _ => Err("write the account as ID=TOKEN, e.g. acct-1=at-dev".to_owned()),
    }
}

/// `sim serve`: checks the flags, starts the server, prints what a client needs, and serves
/// until the process is killed.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    check_listen(args.listen, args.public)?;
    let file = match &args.faults {
        Some(path) => load_faults(path).map_err(ServeError::from)?,
        None => crate::scenario::FaultFile::default(),
    };
    let accounts = if args.accounts.is_empty() {
        vec![seeded_account(args.seed, "acct-1")]
    } else {
        args.accounts.clone()
    };
    let options = ServeOptions {
        listen: args.listen,
        seed: args.seed,
        identity_ttl_ms: args.identity_ttl,
        accounts: accounts.clone(),
        faults: file.rules.iter().map(|rule| rule.value.clone()).collect(),
        random_faults: file.random.map(|random| random.value).unwrap_or_default(),
        timeout_hold_ms: args.timeout_hold,
        clock: system_clock(),
    };
    let lines = match options.faults.len() {
        1 => "1 fault line".to_owned(),
        n => format!("{n} fault lines"),
    };
    let faults = match (&args.faults, options.random_faults.kinds.is_empty()) {
        (None, _) => "none".to_owned(),
        (Some(_), true) => lines,
        (Some(_), false) => format!("{lines} and random faults"),
    };
    let server = Server::start(options)
        .map_err(|source| ServeError::Listen { listen: args.listen, source })?;
    if let Err(e) = banner(&server, args, &accounts, &faults) {
        // Whoever read the banner has gone (`sim serve | head -1`): keep serving regardless.
        tracing::debug!("the banner was not printed whole: {e}");
    }
    server.wait();
    anyhow::bail!("the server stopped serving (see the log above)")
}

/// What a person or a script needs: the base URL alone on the first line, then the accounts
/// (printed here once; tokens are never logged), the faults and the admin API.
fn banner(
    server: &Server,
    args: &ServeArgs,
    accounts: &[(String, String)],
    faults: &str,
) -> std::io::Result<()> {
    let base = server.base_url();
    outln!("{base}")?;
    outln!("the agentsim backend model, seed {}, serving until interrupted (Ctrl-C)", args.seed)?;
    outln!("accounts (id, access token; printed once, never logged):")?;
    for (id, token) in accounts {
        outln!("  {id} {token}")?;
    }
    let ttl = args.identity_ttl.map_or("never".to_owned(), crate::duration::format_ms);
    outln!("identities expire: {ttl}")?;
    match &args.faults {
        Some(path) => outln!("faults: {faults} from {}", path.display())?,
        None => outln!("faults: {faults} (add some with POST {base}/admin/faults)")?,
    }
    outln!("admin API:")?;
    for (method, path, what) in ADMIN_ROUTES {
        outln!("  {method:<4} {base}{path:<16} {what}")?;
    }
    outln!("requests are logged on stderr (RUST_LOG=warn for violations only)")
}
