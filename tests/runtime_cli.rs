//! The command-line client (`agentsim_runtime::cli`, the code of the `agentsim-runtime` binary)
//! as a person or a script uses it: each test runs it in a child process (this test binary
//! re-executes itself in the child's role, as `runtime_crash.rs` does) against `sim serve` in this
//! process, and checks what the flags promise through what the backend saw, what the rollout
//! holds and what the client printed.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use agentsim_tests::{admin_post, line_channel, serve_for};
use libtest_mimic::{Arguments, Failed, Trial};
use sim::serve::Server;

/// The environment variable that puts this binary in the client's role (its value: the client's
/// arguments, one per line).
const CHILD: &str = "AGENTSIM_RUNTIME_CLI_CHILD";
const TOKEN: &str = "at-cli-test";
/// How long the client may stay silent before a test gives up on it.
const SILENCE_LIMIT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    if let Ok(args) = std::env::var(CHILD) {
        let args = args.lines().map(str::to_owned);
        return agentsim_runtime::cli::main_with(
            std::iter::once("agentsim-runtime".to_owned()).chain(args),
        );
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("runtime_cli::flag_off_sends_no_identity_and_no_assertion", flag_off),
        Trial::test("runtime_cli::persist_task_false_keeps_tasks_out_of_the_rollout", persist),
        Trial::test("runtime_cli::stdin_turns_count_from_one_and_skip_blank_lines", stdin_turns),
        Trial::test("runtime_cli::expiry_reacquire_registers_a_new_identity", || expiry(false)),
        Trial::test("runtime_cli::expiry_as_shipped_keeps_the_expired_identity", || expiry(true)),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn server() -> Result<Server, Failed> {
    serve_for(TOKEN).map_err(|e| format!("sim serve: {e}").into())
}

/// `POST /admin/expire` with no body: the backend expires the latest identity.
fn expire_latest(server: &Server) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::new();
    let base_url = server.base_url();
    runtime.block_on(admin_post(&client, &base_url, "/admin/expire", String::new()))?;
    Ok(())
}

/// The client running in a child process, its stdout read line by line as it prints.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr: std::thread::JoinHandle<String>,
    printed: Vec<String>,
}

impl Client {
    fn start(server: &Server, home: &Path, args: &[&str]) -> Result<Client, Failed> {
        let mut all = vec!["--backend".to_owned(), server.base_url()];
        all.extend(["--home".to_owned(), home.display().to_string()]);
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env(CHILD, all.join("\n"))
            .env("AGENTSIM_ACCESS_TOKEN", TOKEN)
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the client: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stderr = child.stderr.take().ok_or("no stderr")?;
        let lines = line_channel(stdout);
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdin = child.stdin.take();
        Ok(Client { child, stdin, lines, stderr, printed: Vec::new() })
    }

    fn type_line(&mut self, text: &str) -> Result<(), Failed> {
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        stdin.write_all(text.as_bytes()).map_err(|e| format!("writing to the client: {e}"))?;
        Ok(())
    }

    /// Reads until a printed line ends with `wanted`.
    fn until(&mut self, wanted: &str) -> Result<(), Failed> {
        while !self.next_line()?.ok_or("the client ended first")?.ends_with(wanted) {}
        Ok(())
    }

    /// The next printed line, `None` once stdout is closed; an error if the client stays silent.
    fn next_line(&mut self) -> Result<Option<String>, Failed> {
        match self.lines.recv_timeout(SILENCE_LIMIT) {
            Ok(line) => {
                let line = line.map_err(|e| e.to_string())?;
                self.printed.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                Err(format!("the client printed nothing for {SILENCE_LIMIT:?}").into())
            }
        }
    }

    /// Closes stdin, reads everything else the client prints, and checks that it succeeded:
    /// what it printed on stdout and on stderr.
    fn finish(mut self) -> Result<(Vec<String>, String), Failed> {
        drop(self.stdin.take());
        while self.next_line()?.is_some() {}
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let stderr = self.stderr.join().map_err(|_| "the stderr reader panicked")?;
        if !status.success() {
            return Err(format!("the client failed ({status}): {stderr}").into());
        }
        Ok((self.printed, stderr))
    }
}

/// Runs the client to its end with `stdin` as its input: what it printed on stdout and stderr.
fn run(
    server: &Server,
    home: &Path,
    args: &[&str],
    stdin: &str,
) -> Result<(Vec<String>, String), Failed> {
    let mut client = Client::start(server, home, args)?;
    client.type_line(stdin)?;
    client.finish()
}

/// The endpoints of the requests the backend saw, in order.
fn endpoints(server: &Server) -> Vec<String> {
    server.journal().into_iter().map(|e| e.endpoint.unwrap_or(e.path)).collect()
}

fn rollout_types(home: &Path) -> Result<Vec<String>, Failed> {
    let text = std::fs::read_to_string(home.join("rollouts/main.jsonl"))
        .map_err(|e| format!("the rollout: {e}"))?;
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            Ok(value["type"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

fn flag_off() -> Result<(), Failed> {
    let server = server()?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (printed, _) = run(&server, home.path(), &["main", "--flag", "off", "--turns", "2"], "")?;
    let seen = endpoints(&server);
    check(seen == ["model", "model"], || format!("only model requests: {seen:?}"))?;
    let requests: Vec<String> = server.journal().into_iter().map(|e| e.request).collect();
    check(requests.iter().all(|r| r == " no assertion"), || format!("{requests:?}"))?;
    for turn in ["main turn_complete turn-1", "main turn_complete turn-2"] {
        check(printed.iter().any(|l| l.ends_with(turn)), || format!("{turn}: {printed:#?}"))?;
    }
    check(!printed.iter().any(|l| l.starts_with("ack ")), || {
        format!("acknowledgements only with --print-acks: {printed:#?}")
    })
}

fn persist() -> Result<(), Failed> {
    let server = server()?;
    let mut session_states = Vec::new();
    for persist in ["true", "false"] {
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let args = ["main", "--persist-task", persist, "--turns", "1", "--print-acks"];
        let (printed, stderr) = run(&server, home.path(), &args, "")?;
        // Logs go to stderr; with stderr not a terminal, they carry no colour codes.
        check(stderr.contains("INFO"), || format!("the client logs at info: {stderr}"))?;
        check(!stderr.contains('\u{1b}'), || format!("colour codes on a pipe: {stderr:?}"))?;
        let types = rollout_types(home.path())?;
        let acks = printed.iter().filter(|l| l.starts_with("ack main ")).count();
        check(acks == types.len(), || format!("one ack per line: {printed:#?} {types:?}"))?;
        session_states.push(types.iter().filter(|t| *t == "session_state").count());
    }
    check(session_states == [1, 0], || format!("session_state lines: {session_states:?}"))
}

fn stdin_turns() -> Result<(), Failed> {
    let server = server()?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (printed, _) = run(&server, home.path(), &["main"], "one\n\n   \ntwo\n")?;
    let completed: Vec<&String> = printed.iter().filter(|l| l.contains("turn_complete")).collect();
    check(
        completed.len() == 2
            && completed[0].ends_with("main turn_complete turn-1")
            && completed[1].ends_with("main turn_complete turn-2"),
        || format!("two turns, numbered 1 and 2: {printed:#?}"),
    )
}

/// The backend expires the identity after the first turn (the admin API, as an operator would).
/// The second turn fails under both policies (its model request is refused); the third tells
/// them apart: `reacquire` dropped the refused identity and registers a new one (rule 18),
/// `as_shipped` keeps it and fails every turn (rule 19).
fn expiry(as_shipped: bool) -> Result<(), Failed> {
    let server = server()?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let policy = if as_shipped { "as-shipped" } else { "reacquire" };
    let mut client = Client::start(&server, home.path(), &["main", "--expiry", policy])?;
    client.type_line("one\n")?;
    client.until("main turn_complete turn-1")?;
    expire_latest(&server)?;
    client.type_line("two\nthree\n")?;
    let (printed, _) = client.finish()?;
    let failed =
        |turn: &str| printed.iter().any(|l| l.starts_with(&format!("! main error {turn} ")));
    let registrations = endpoints(&server).iter().filter(|e| *e == "identity_register").count();
    check(!failed("turn-1") && failed("turn-2"), || format!("turn 2 is refused: {printed:#?}"))?;
    if as_shipped {
        check(failed("turn-3") && registrations == 1, || {
            format!("the expired identity is kept and every turn fails: {printed:#?}")
        })
    } else {
        check(!failed("turn-3") && registrations == 2, || {
            format!("a new identity, and turn 3 succeeds: {printed:#?} ({registrations})")
        })
    }
}
