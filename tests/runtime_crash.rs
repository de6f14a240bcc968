//! Crash realism for the runtime (spec invariant 15): a child process runs the command-line
//! client (`agentsim_runtime::cli`, the code of the `agentsim-runtime` binary: this test binary
//! re-executes itself in the child's role) against `sim serve`, and is killed with SIGKILL in the
//! middle of its appends, [`KILLS`] times in a row, each run resuming the thread the last one left.
//! After each kill, the power goes too: the file is cut to the bytes the client last acknowledged
//! as durable (as a power loss would drop what was written but not synced). Then:
//! - every line the client acknowledged (printed `ack <thread> <n> <synced bytes> <json>` once the
//!   line was written, flushed and `sync_data`'d) is in the file, at its line number, byte for
//!   byte;
//! - the next resume reads the file; a torn last line is skipped and reported as torn.
//!
//! A SIGKILL lands between two `write` calls, and the client writes each line with one, so a kill
//! alone does not tear a line on a healthy disk (and the cut above ends on a line). To also check
//! the torn-line path, every [`TEAR_EVERY`]th kill is followed by half a line appended to the
//! file, as a write cut short by a power loss would leave it; the next resume must report it and
//! append after it cleanly.
//! Last, the thread is resumed twice in this process: both resumes read the same and restore the
//! same task.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use agentsim_runtime::{Options, Runtime};
use libtest_mimic::{Arguments, Failed, Trial};

/// The environment variable that puts this binary in the child's role (its value: the client's
/// arguments, one per line).
const CHILD: &str = "AGENTSIM_RUNTIME_CRASH_CHILD";
/// Kills in a row.
const KILLS: u32 = 50;
/// Every this many kills, a torn half line is left at the end of the file.
const TEAR_EVERY: u32 = 5;
const THREAD: &str = "main";
const TOKEN: &str = "at-crash-test";
/// How long one child may run before the test gives up on it (each is killed in milliseconds).
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

fn main() -> ExitCode {
    if let Ok(args) = std::env::var(CHILD) {
        let args: Vec<String> = args.lines().map(str::to_owned).collect();
        return agentsim_runtime::cli::main_with(
            std::iter::once("agentsim-runtime".to_owned()).chain(args),
        );
    }
    let args = Arguments::from_args();
    let trials = vec![Trial::test("runtime_crash::kills_lose_nothing_acknowledged", kills)];
    libtest_mimic::run(&args, trials).exit_code()
}

fn kills() -> Result<(), Failed> {
    let server = agentsim_tests::serve_for(TOKEN).map_err(|e| format!("sim serve: {e}"))?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = home.path().join("rollouts").join(format!("{THREAD}.jsonl"));
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut expect_torn_line: Option<usize> = None;
    for kill in 0..KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wanted = 1 + (rng % 12) as usize;
        let outcome = run_child(&server.base_url(), home.path(), kill > 0, wanted)?;
        if let Some(line) = expect_torn_line.take() {
            let reported = outcome
                .skipped
                .iter()
                .any(|s| s.starts_with(&format!("skipped line {line} (torn)")));
            if !reported {
                return Err(format!(
                    "kill {kill}: the torn line {line} was not reported: {:?}",
                    outcome.skipped
                )
                .into());
            }
        }
        // The power goes with the process: what was not made durable is lost.
        let handle =
            std::fs::OpenOptions::new().write(true).open(&file).map_err(|e| e.to_string())?;
        let length = handle.metadata().map_err(|e| e.to_string())?.len();
        if outcome.synced > length {
            return Err(format!(
                "kill {kill}: {} bytes acknowledged as synced, the file has {length}",
                outcome.synced
            )
            .into());
        }
        handle.set_len(outcome.synced).map_err(|e| e.to_string())?;
        drop(handle);
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        for (number, json) in &outcome.acked {
            let found = lines.get(number - 1).copied().unwrap_or_default();
            if found != json.as_bytes() {
                return Err(format!(
                    "kill {kill}: acknowledged line {number} is not in the file as acknowledged:\n  acked: {json}\n  file:  {}",
                    String::from_utf8_lossy(found)
                )
                .into());
            }
        }
        if (kill + 1) % TEAR_EVERY == 0 {
            let last = lines.iter().rev().find(|l| !l.is_empty()).copied().unwrap_or(b"{}");
            let half = &last[..last.len() / 2];
            let mut handle =
                std::fs::OpenOptions::new().append(true).open(&file).map_err(|e| e.to_string())?;
            handle.write_all(half).map_err(|e| e.to_string())?;
            expect_torn_line = Some(lines.len());
        }
    }
    resume_twice(&server.base_url(), home.path())
}

/// What one child run acknowledged and reported before it was killed.
struct ChildRun {
    acked: Vec<(usize, String)>,
    /// The bytes the last acknowledgement said were durable.
    synced: u64,
    skipped: Vec<String>,
}

fn run_child(base: &str, home: &Path, resume: bool, wanted: usize) -> Result<ChildRun, Failed> {
    let mut args = vec![
        "--backend".to_owned(),
        base.to_owned(),
        "--home".to_owned(),
        home.display().to_string(),
        THREAD.to_owned(),
        "--turns".to_owned(),
        "100000".to_owned(),
        "--print-acks".to_owned(),
    ];
    if resume {
        args.push("--resume".to_owned());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env(CHILD, args.join("\n"))
        // As README runs the client: the token in the environment, out of the process list.
        .env("AGENTSIM_ACCESS_TOKEN", TOKEN)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // Lines arrive through a channel, so a client that stops printing fails the run after
    // CHILD_LIMIT instead of hanging it.
    let arriving = agentsim_tests::line_channel(stdout);
    let mut run = ChildRun { acked: Vec::new(), synced: 0, skipped: Vec::new() };
    loop {
        let line = match arriving.recv_timeout(CHILD_LIMIT) {
            Ok(line) => line.map_err(|e| e.to_string())?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the client printed nothing for {CHILD_LIMIT:?}").into());
            }
        };
        if let Some(rest) = line.strip_prefix(&format!("ack {THREAD} ")) {
            let mut words = rest.splitn(3, ' ');
            let (number, synced, json) = match (words.next(), words.next(), words.next()) {
                (Some(n), Some(s), Some(j)) => (n, s, j),
                _ => return Err(format!("a bad ack: {line}").into()),
            };
            let number: usize = number.parse().map_err(|_| format!("a bad ack: {line}"))?;
            run.synced = synced.parse().map_err(|_| format!("a bad ack: {line}"))?;
            // A fork's copy is acknowledged with no text; this thread has none.
            run.acked.push((number, json.to_owned()));
            if run.acked.len() >= wanted {
                break;
            }
        } else if line.starts_with("skipped line") {
            run.skipped.push(line);
        }
    }
    // SIGKILL on Unix: no destructor, no flush, nothing of the client runs after this.
    child.kill().map_err(|e| format!("cannot kill the client: {e}"))?;
    let _ = child.wait();
    if run.acked.len() < wanted {
        return Err(format!("the client stopped after {} acknowledgements", run.acked.len()).into());
    }
    Ok(run)
}

/// Resuming twice equals resuming once: the same lines read, the same skipped, the same task.
fn resume_twice(base: &str, home: &Path) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let resumes = async {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let config = agentsim_core::Config {
                base_url: base.to_owned(),
                ..agentsim_core::Config::default()
            };
            let auth = agentsim_core::Auth::ChatGpt {
                binding: agentsim_core::Binding { account_id: "acct-1".into(), user_id: None },
                access_token: TOKEN.to_owned(),
            };
            let process = Runtime::open(Options::new(config, auth, home.to_owned()))
                .await
                .map_err(|e| e.to_string())?;
            let report = process.resume_thread(THREAD).await.map_err(|e| e.to_string())?;
            process.idle().await.map_err(|e| e.to_string())?;
            let task = process.cached_task(THREAD).await.map_err(|e| e.to_string())?;
            process.shutdown().await;
            seen.push((report, task));
        }
        if seen[0] != seen[1] {
            return Err(format!("two resumes differ:\n  {:?}\n  {:?}", seen[0], seen[1]).into());
        }
        if seen[0].1.is_none() {
            return Err("the resumed thread holds no task".into());
        }
        Ok(())
    };
    runtime.block_on(async {
        match tokio::time::timeout(CHILD_LIMIT, resumes).await {
            Ok(result) => result,
            Err(_) => Err(format!("the two resumes did not end within {CHILD_LIMIT:?}").into()),
        }
    })
}
