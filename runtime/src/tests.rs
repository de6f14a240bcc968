//! Unit tests of the runtime's storage: durable appends, torn tails, the auth store.

use agentsim_core::{Binding, StoredIdentity, ThreadId, Timestamp};

use crate::auth_store::{AuthStore, AuthStoreError};
use crate::rollout_file::RolloutFiles;

fn identity() -> StoredIdentity {
    StoredIdentity {
        binding: Binding { account_id: "acct-1".into(), user_id: Some("user-1".into()) },
        agent_runtime_id: "agent-1".into(),
        private_key: "c2VjcmV0LWtleS1ieXRlcw==".into(),
        registered_at: Timestamp::SIM_EPOCH,
        expires_at: Some(Timestamp::SIM_EPOCH.plus_ms(3_600_000)),
    }
}

#[test]
fn appends_count_lines_and_a_torn_tail_is_ended_before_the_next_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let thread = ThreadId::from("A");
    let mut files = RolloutFiles::new(dir.path()).expect("dir");
    std::fs::write(files.path(&thread), b"{\"a\":1}\n{\"torn").expect("write");
    let existing = files.read(&thread).expect("read").expect("exists");
    files.open(&thread, &existing).expect("open");
    assert_eq!(files.append_line(&thread, "{\"b\":2}").expect("append").lines, 3);
    let durable = files.append(&thread, b"{\"c\":3}\n{\"d\":4}\n").expect("copy");
    assert_eq!(durable.lines, 5);
    let bytes = std::fs::read(files.path(&thread)).expect("read back");
    assert_eq!(durable.synced_bytes, bytes.len() as u64, "everything appended is synced");
    assert_eq!(bytes, b"{\"a\":1}\n{\"torn\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n");
}

#[test]
fn a_missing_rollout_reads_as_none_and_a_directory_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = RolloutFiles::new(dir.path()).expect("dir");
    assert_eq!(files.read(&ThreadId::from("nobody")).expect("no error"), None);
    std::fs::create_dir(files.path(&ThreadId::from("odd"))).expect("mkdir");
    let error = files.read(&ThreadId::from("odd")).expect_err("a directory");
    assert!(error.to_string().contains("odd.jsonl"), "{error}");
    assert!(error.to_string().contains("directory"), "{error}");
}

#[test]
fn a_rollout_file_of_exactly_the_limit_is_read_whole() {
    use crate::rollout_file::{read_rollout_file, MAX_ROLLOUT_FILE_BYTES};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("A.jsonl");
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(MAX_ROLLOUT_FILE_BYTES).expect("a sparse file");
    let bytes = read_rollout_file(&path).expect("the limit itself is allowed");
    assert_eq!(bytes.len() as u64, MAX_ROLLOUT_FILE_BYTES, "read whole, not cut short");
}

#[cfg(unix)]
#[test]
fn a_device_is_no_rollout_file_even_when_reading_it_would_succeed() {
    // `/dev/null` reads as empty: only the file-type check tells it from an empty rollout.
    let error = crate::rollout_file::read_rollout_file(std::path::Path::new("/dev/null"))
        .expect_err("a character device");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("character device"), "{error}");
}

#[test]
fn appending_to_a_thread_that_is_not_open_fails_instead_of_creating_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = RolloutFiles::new(dir.path()).expect("dir");
    assert!(files.append_line(&ThreadId::from("A"), "{}").is_err());
    assert!(!files.exists(&ThreadId::from("A")));
}

#[test]
fn the_auth_store_round_trips_and_empties() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = AuthStore::new(&dir.path().join("auth.json"));
    assert_eq!(store.load().expect("no file"), None);
    store.save(Some(&identity())).expect("save");
    assert_eq!(store.load().expect("load"), Some(identity()));
    store.save(None).expect("empty");
    assert_eq!(store.load().expect("load"), None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(store.path()).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the private key");
    }
}

#[test]
fn an_auth_store_that_cannot_be_read_is_an_error_not_a_signed_out_store() {
    // Only a missing file means "no identity yet": anything else would make the runtime
    // register a new identity over one it could not read.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("auth.json");
    std::fs::create_dir(&path).expect("mkdir");
    let error = AuthStore::new(&path).load().expect_err("a directory");
    assert!(matches!(error, AuthStoreError::Io { .. }), "{error}");
    assert!(error.to_string().contains("auth.json"), "{error}");
}

#[test]
fn a_damaged_auth_store_is_an_error_that_shows_none_of_its_contents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("auth.json");
    let store = AuthStore::new(&path);
    let secret = "c2VjcmV0LWtleS1ieXRlcw==";
    std::fs::write(&path, format!("{{\"agent_identity\": {{\"private_key\": \"{secret}\", 5"))
        .expect("write");
    let error = store.load().expect_err("damaged");
    assert!(matches!(error, AuthStoreError::Damaged { .. }), "{error}");
    assert!(!error.to_string().contains(secret), "{error}");
    std::fs::write(
        &path,
        format!("{{\"agent_identity\": {{\"private_key\": 5, \"x\": \"{secret}\"}}}}"),
    )
    .expect("write");
    let error = store.load().expect_err("wrong types");
    assert!(!error.to_string().contains(secret), "{error}");
}

fn unreachable_options(home: &std::path::Path) -> crate::Options {
    let config = agentsim_core::Config {
        use_agent_identity: false,
        // Port 1 on loopback: nothing listens, every request fails to connect at once.
        base_url: "http://127.0.0.1:1".into(),
        ..agentsim_core::Config::default()
    };
    crate::Options::new(config, agentsim_core::Auth::None, home.to_owned())
}

#[tokio::test]
async fn a_turn_against_an_unreachable_backend_ends_with_its_error_and_the_runtime_goes_on() {
    let home = tempfile::tempdir().expect("temp dir");
    let runtime = crate::Runtime::open(unreachable_options(home.path())).await.expect("opens");
    runtime.start_thread("A").await.expect("starts");
    let outcome = runtime.turn("A", agentsim_core::TurnId(1), "hi").await.expect("a turn");
    let names: Vec<&str> = outcome.events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["task_started", "user_message", "error", "turn_complete"]);
    assert!(outcome.failed());
    assert_eq!(outcome.assertion, None, "flag off: no assertion");
    let again = runtime.turn("A", agentsim_core::TurnId(2), "again").await.expect("a turn");
    assert_eq!(again.events.len(), 4);
    runtime.idle().await.expect("idle");
    runtime.shutdown().await;
    let rollout = std::fs::read_to_string(home.path().join("rollouts/A.jsonl")).expect("rollout");
    assert!(rollout.lines().count() >= 5, "{rollout}");
}

#[tokio::test]
async fn verbs_that_do_not_fit_the_state_are_usage_errors() {
    let home = tempfile::tempdir().expect("temp dir");
    let runtime = crate::Runtime::open(unreachable_options(home.path())).await.expect("opens");
    let usage =
        |r: Result<(), crate::RuntimeError>| matches!(r, Err(crate::RuntimeError::Usage(_)));
    assert!(usage(runtime.start_thread("../escape").await), "a name that is no file name");
    assert!(usage(runtime.compact("nobody").await), "a thread that is not running");
    assert!(matches!(runtime.resume_thread("nobody").await, Err(crate::RuntimeError::Usage(_))));
    runtime.start_thread("A").await.expect("starts");
    assert!(usage(runtime.start_thread("A").await), "started twice");
    assert!(matches!(runtime.fork_thread("A", "B").await, Err(crate::RuntimeError::Usage(_))));
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_thread_an_earlier_process_wrote_is_resumed_not_started_over() {
    let home = tempfile::tempdir().expect("temp dir");
    let runtime = crate::Runtime::open(unreachable_options(home.path())).await.expect("opens");
    runtime.start_thread("A").await.expect("starts");
    runtime.shutdown().await;
    let file = home.path().join("rollouts/A.jsonl");
    let before = std::fs::read(&file).expect("the first process's rollout");
    let runtime = crate::Runtime::open(unreachable_options(home.path())).await.expect("reopens");
    let error = runtime.start_thread("A").await.expect_err("its rollout exists");
    assert!(matches!(error, crate::RuntimeError::Usage(_)), "{error}");
    assert_eq!(std::fs::read(&file).expect("still there"), before, "the refusal wrote nothing");
    runtime.resume_thread("A").await.expect("resumes instead");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_home_that_cannot_hold_rollouts_is_a_storage_error() {
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(home.path().join("rollouts"), b"not a directory").expect("write");
    let error = crate::Runtime::open(unreachable_options(home.path())).await.expect_err("refused");
    assert!(matches!(error, crate::RuntimeError::Storage(_)), "{error}");
}

#[test]
fn a_thread_name_must_be_able_to_name_a_file() {
    let longest = "a".repeat(128);
    for good in ["a", "Z", "main", "t-1_x", "A9", longest.as_str()] {
        assert_eq!(crate::thread_id(good).expect(good).0, good);
    }
    let too_long = "a".repeat(129);
    for bad in ["", "1a", "-a", "_a", "a/b", "a.b", "../x", "a b", "é", "aé", too_long.as_str()] {
        let error = crate::thread_id(bad).expect_err(bad);
        assert!(matches!(error, crate::RuntimeError::Usage(_)), "{bad:?}: {error}");
    }
}

/// A backend that accepts connections and never answers: every request runs into its timeout.
fn silent_backend() -> (std::net::TcpListener, crate::Options, tempfile::TempDir) {
    // The kernel completes the handshake from the listen backlog; nothing ever reads or answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let home = tempfile::tempdir().expect("temp dir");
    let mut options = unreachable_options(home.path());
    options.config.base_url = format!("http://{}", listener.local_addr().expect("address"));
    options.timeout_cap = Some(std::time::Duration::from_millis(200));
    (listener, options, home)
}

#[tokio::test]
async fn a_turn_number_already_running_is_refused_and_the_running_turn_is_unharmed() {
    let (_listener, options, _home) = silent_backend();
    let runtime = crate::Runtime::open(options).await.expect("opens");
    runtime.start_thread("A").await.expect("starts");
    let turn = agentsim_core::TurnId(1);
    let (first, second) =
        tokio::join!(runtime.turn("A", turn, "one"), runtime.turn("A", turn, "two"));
    let error = second.expect_err("the same turn number twice");
    assert!(matches!(error, crate::RuntimeError::Usage(_)), "{error}");
    let first = first.expect("the first turn ends");
    assert!(first.failed(), "its model request timed out: {:?}", first.events);
    let texts: Vec<String> = first.events.iter().map(|e| format!("{:?}", e.kind)).collect();
    assert!(texts.iter().any(|t| t.contains("one")), "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("two")), "the refused turn left no event: {texts:?}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn subscribers_see_each_durable_line_each_send_and_each_event_as_they_happen() {
    let (_listener, options, home) = silent_backend();
    let runtime = crate::Runtime::open(options).await.expect("opens");
    let mut notices = runtime.subscribe().await.expect("subscribes");
    runtime.start_thread("A").await.expect("starts");
    let outcome = runtime.turn("A", agentsim_core::TurnId(1), "hi").await.expect("a turn");
    runtime.idle().await.expect("idle");
    let events = runtime.events("A").await.expect("events");
    assert_eq!(runtime.events("B").await.expect("no such thread"), []);
    assert_eq!(runtime.cached_task("A").await.expect("task"), None, "flag off: no task");
    runtime.shutdown().await;

    let mut seen = Vec::new();
    while let Some(notice) = notices.recv().await {
        seen.push(notice);
    }
    let file = std::fs::read_to_string(home.path().join("rollouts/A.jsonl")).expect("rollout");
    let appended: Vec<(u64, u64, &str)> = seen
        .iter()
        .filter_map(|n| match n {
            crate::Notice::Appended { thread, line, synced_bytes, text } => {
                assert_eq!(thread.0, "A");
                Some((*line, *synced_bytes, text.as_str()))
            }
            _ => None,
        })
        .collect();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(appended.len(), lines.len(), "one notice per line: {seen:?}");
    for (number, ((line, synced, text), on_disk)) in appended.iter().zip(&lines).enumerate() {
        assert_eq!(*line, number as u64 + 1, "lines are counted from 1, in order");
        assert_eq!(text, on_disk, "the notice carries the line as written");
        let through = file.split_inclusive('\n').take(number + 1).map(str::len).sum::<usize>();
        assert_eq!(*synced, through as u64, "synced through the end of line {line}");
    }
    let noticed: Vec<&agentsim_core::Event> = seen
        .iter()
        .filter_map(|n| match n {
            crate::Notice::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(noticed, events.iter().collect::<Vec<_>>(), "events() and notices agree");
    assert_eq!(outcome.events, events, "the turn returned all of the thread's events");
    let sent = seen.iter().position(
        |n| matches!(n, crate::Notice::Sent { thread: Some(t), method: "POST", .. } if t.0 == "A"),
    );
    let error = seen.iter().position(|n| {
        matches!(n, crate::Notice::Event(e) if matches!(e.kind, agentsim_core::EventKind::Error { .. }))
    });
    assert!(sent.expect("the model request") < error.expect("its error"), "{seen:?}");
}

#[tokio::test]
async fn a_dropped_runtime_stops_its_driver_as_a_crash_would() {
    let (_listener, options, _home) = silent_backend();
    let runtime = crate::Runtime::open(options).await.expect("opens");
    let mut notices = runtime.subscribe().await.expect("subscribes");
    runtime.start_thread("A").await.expect("starts");
    drop(runtime);
    // The driver holds a sender of its own (for its requests' outcomes): only the abort on drop
    // ends it, and with it the subscriber's channel.
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while notices.recv().await.is_some() {}
    })
    .await;
    assert!(drained.is_ok(), "the driver still runs after its runtime was dropped");
}

#[test]
fn options_show_the_config_and_home_but_never_the_access_token() {
    let token = "at-never-shown-0123";
    let auth = agentsim_core::Auth::ChatGpt {
        binding: Binding { account_id: "acct-1".into(), user_id: None },
        access_token: token.into(),
    };
    let options = crate::Options::new(
        agentsim_core::Config::default(),
        auth,
        std::path::PathBuf::from("/home/someone/.agentsim"),
    );
    let shown = format!("{options:?}");
    assert!(!shown.contains(token), "{shown}");
    assert!(shown.contains("acct-1") && shown.contains("/home/someone/.agentsim"), "{shown}");
}

#[tokio::test]
async fn shutdown_returns_once_the_driver_has_finished() {
    let home = tempfile::tempdir().expect("temp dir");
    let runtime = crate::Runtime::open(unreachable_options(home.path())).await.expect("opens");
    let mut notices = runtime.subscribe().await.expect("subscribes");
    runtime.start_thread("A").await.expect("starts");
    runtime.shutdown().await;
    // Nothing can arrive any more: the driver, which held the only sender, is gone.
    loop {
        match notices.try_recv() {
            Ok(_) => continue,
            Err(e) => {
                assert_eq!(e, tokio::sync::mpsc::error::TryRecvError::Disconnected);
                break;
            }
        }
    }
}

/// A loopback server that answers each of `bodies.len()` connections with a 200 whose body is
/// that many bytes, whatever the request.
fn fixed_size_server(bodies: Vec<usize>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}/v1/responses", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for size in bodies {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.write_all(&vec![b'a'; size]);
        }
    });
    url
}

/// A GET of `url` with no headers, and a client that goes straight to it.
fn bare_get(url: &str) -> (agentsim_core::wire::HttpRequest, reqwest::Client) {
    let request = agentsim_core::wire::HttpRequest {
        method: agentsim_core::wire::Method::Get,
        url: url.to_owned(),
        headers: Vec::new(),
        body: None,
    };
    (request, reqwest::Client::builder().no_proxy().build().expect("client"))
}

#[tokio::test]
async fn a_response_body_may_reach_the_limit_but_not_pass_it() {
    use crate::http::{send, SendError, MAX_RESPONSE_BODY_BYTES};
    let url = fixed_size_server(vec![MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_BODY_BYTES + 1]);
    let (request, client) = bare_get(&url);
    let at_limit = send(&client, &url, &request).await.expect("the limit itself is read");
    assert_eq!(at_limit.body.len(), MAX_RESPONSE_BODY_BYTES);
    let past = send(&client, &url, &request).await.expect_err("one byte past the limit");
    assert!(matches!(past, SendError::TooLarge { .. }), "{past}");
}

#[tokio::test]
async fn a_send_that_fails_says_why_down_to_the_cause() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let url = "http://127.0.0.1:1/v1/responses";
    let (request, client) = bare_get(url);
    let error = crate::http::send(&client, url, &request).await.expect_err("refused");
    assert_eq!(error.failure(), agentsim_core::RequestFailure::Connection);
    let text = error.to_string();
    assert!(text.starts_with(&format!("sending {url}: ")), "{text}");
    assert!(text.contains("Connection refused"), "the OS's reason, from the source chain: {text}");
}
