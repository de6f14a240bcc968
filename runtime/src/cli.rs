//! The command-line client `agentsim-runtime`: one thread of the lifecycle, run for real against
//! a backend (for example `sim serve`), by hand or by script. It lives in the library so a test
//! can run the very same client in a child process it kills (`tests/runtime_crash.rs`).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Notice, Options, Runtime};
use agentsim_core::{Auth, Binding, Config, EventKind, ExpiryPolicy, TurnId};
use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use tokio::io::AsyncBufReadExt as _;

/// Runs one thread of the agent identity / agent task lifecycle against a real backend.
///
/// Examples (the token comes from the environment: a flag would show it to `ps`):
///   export AGENTSIM_ACCESS_TOKEN=at-...
///   agentsim-runtime --backend http://127.0.0.1:8787 main --turns 5 --every 10s
///   agentsim-runtime --backend http://127.0.0.1:8787 main --resume
///   echo "what is 2+2" | agentsim-runtime --backend http://127.0.0.1:8787 side --fork-from main
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The backend's base URL.
    #[arg(long, env = "AGENTSIM_BACKEND")]
    backend: String,
    /// The runtime's home: `auth.json` (the agent identity) and `rollouts/<thread>.jsonl`.
    #[arg(long, default_value = ".agentsim")]
    home: PathBuf,
    /// The ChatGPT access token to sign in with. It is a secret: set the environment variable
    /// instead, since other users of the machine can read a flag's value from the process list.
    #[arg(long, env = "AGENTSIM_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// The workspace (`chatgpt_account_id`).
    #[arg(long, default_value = "acct-1")]
    account: String,
    /// The user (`chatgpt_user_id`).
    #[arg(long)]
    user: Option<String>,
    /// Sign in with an API key instead (no workspace, so no agent identity).
    #[arg(long, conflicts_with = "access_token")]
    api_key: bool,
    /// The `use_agent_identity` feature flag.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    flag: Switch,
    /// What happens when the identity expires.
    #[arg(long, value_enum, default_value_t = Expiry::Reacquire)]
    expiry: Expiry,
    /// Whether tasks are persisted in the rollout.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    persist_task: bool,
    /// The thread to run.
    thread: String,
    /// Resume the thread from its rollout instead of starting it.
    #[arg(long, conflicts_with = "fork_from")]
    resume: bool,
    /// Start the thread as a fork of another.
    #[arg(long, value_name = "PARENT")]
    fork_from: Option<String>,
    /// Run this many turns by script instead of reading turns from stdin (one per line).
    #[arg(long)]
    turns: Option<u32>,
    /// With --turns: the pause before each turn (`500ms`, `10s`, `1m`).
    #[arg(long, value_parser = parse_pause, default_value = "0s")]
    every: Duration,
    /// With --turns: the text of each turn.
    #[arg(long, default_value = "hello")]
    text: String,
    /// Print `ack <thread> <line> <synced bytes> <json>` once each rollout line is durable.
    #[arg(long)]
    print_acks: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Expiry {
    Reacquire,
    AsShipped,
}

/// Runs the client with these arguments (the program name first), as `main` does.
pub fn main_with<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match start(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentsim-runtime: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "agentsim_core=info,agentsim_runtime=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let auth = match (&cli.access_token, cli.api_key) {
        (_, true) => Auth::ApiKey,
        (Some(token), false) => Auth::ChatGpt {
            binding: Binding { account_id: cli.account.clone(), user_id: cli.user.clone() },
            access_token: token.clone(),
        },
        (None, false) => Auth::None,
    };
    let config = Config {
        use_agent_identity: matches!(cli.flag, Switch::On),
        expiry: match cli.expiry {
            Expiry::Reacquire => ExpiryPolicy::Reacquire,
            Expiry::AsShipped => ExpiryPolicy::AsShipped,
        },
        persist_task: cli.persist_task,
        base_url: cli.backend.trim_end_matches('/').to_owned(),
        ..Config::default()
    };
    let runtime = Runtime::open(Options::new(config, auth, cli.home.clone())).await?;
    let mut notices = runtime.subscribe().await?;
    let print_acks = cli.print_acks;
    let printer = tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            print_notice(&notice, print_acks);
        }
    });
    let thread = cli.thread.as_str();
    if cli.resume {
        let report = runtime.resume_thread(thread).await?;
        say(&format!("resumed {thread}: {} lines read", report.lines));
        for skipped in &report.skipped {
            let torn = if skipped.torn { " (torn)" } else { "" };
            say(&format!("skipped line {}{torn}: {}", skipped.line, skipped.reason));
        }
    } else if let Some(parent) = &cli.fork_from {
        runtime.fork_thread(thread, parent).await?;
        say(&format!("forked {thread} from {parent}"));
    } else {
        runtime.start_thread(thread).await?;
        say(&format!("started {thread}"));
    }
    let mut number = 0u32;
    if let Some(turns) = cli.turns {
        for _ in 0..turns {
            tokio::time::sleep(cli.every).await;
            number += 1;
            runtime.turn(thread, TurnId(number), &cli.text).await?;
        }
    } else {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await.context("reading turns from stdin")? {
            if line.trim().is_empty() {
                continue;
            }
            number += 1;
            runtime.turn(thread, TurnId(number), &line).await?;
        }
    }
    runtime.idle().await?;
    runtime.shutdown().await;
    printer.await?;
    Ok(())
}

fn print_notice(notice: &Notice, print_acks: bool) {
    match notice {
        Notice::Event(event) => {
            let mark = if matches!(event.kind, EventKind::Error { .. }) { "!" } else { " " };
            say(&format!("{mark} {event}"));
        }
        Notice::Appended { thread, line, synced_bytes, text } if print_acks => {
            say(&format!("ack {thread} {line} {synced_bytes} {text}"));
        }
        Notice::Appended { .. } | Notice::Sent { .. } => {}
    }
}

/// One line on stdout, flushed (a script reading it sees each line as it happens). A closed
/// stdout ends nothing: the lifecycle goes on.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `500ms`, `10s`, `2m`, `1h`.
fn parse_pause(text: &str) -> anyhow::Result<Duration> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let Ok(number) = number.parse::<u64>() else { bail!("{text:?}: expected a number and a unit") };
    let ms = match unit {
        "ms" => number,
        "s" => number.saturating_mul(1_000),
        "m" => number.saturating_mul(60_000),
        "h" => number.saturating_mul(3_600_000),
        _ => bail!("{text:?}: the unit is one of ms, s, m, h"),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::parse_pause;
    use std::time::Duration;

    #[test]
    fn pauses_take_each_unit_and_refuse_anything_else() {
        for (text, ms) in [("0s", 0), ("500ms", 500), ("10s", 10_000), ("2m", 120_000)] {
            assert_eq!(parse_pause(text).expect(text), Duration::from_millis(ms), "{text}");
        }
        assert_eq!(parse_pause("1h").expect("1h"), Duration::from_secs(3_600));
        for bad in ["", "10", "s", "1.5s", "-1s", "10 s", "3d", "1sm"] {
            let error = parse_pause(bad).expect_err(bad).to_string();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }
}
