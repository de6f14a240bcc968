//! `sim serve` over real HTTP on loopback: the protocol driven with core's own request builders,
//! faults from a file and from the admin API, the admin API, a journal with no secret in it,
//! and bad input that never brings the server down.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentsim_core::protocol;
use agentsim_core::wire::{HttpRequest, HttpResponse, IdentityKey};
use agentsim_core::{AgentTask, Binding, Config, StoredIdentity, Timestamp};
use sim::fault::{CallMatch, Endpoint, FaultKind, FaultRule};
use sim::serve::{check_listen, load_faults, JournalEntry, ServeOptions, Server};

const TOKEN: &str = "at-test-token-0123456789";

/// A server on an ephemeral loopback port with account `acct-1`, whose clock reads `clock`.
fn start(clock: &Arc<AtomicU64>, change: impl FnOnce(&mut ServeOptions)) -> Server {
    let clock = clock.clone();
    let mut options = ServeOptions {
        accounts: vec![("acct-1".into(), TOKEN.into())],
        clock: Arc::new(move || Timestamp(clock.load(Ordering::SeqCst))),
        ..ServeOptions::default()
    };
    change(&mut options);
    Server::start(options).expect("the server starts")
}

fn epoch_clock() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(Timestamp::SIM_EPOCH.unix_ms()))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

/// Sends one of core's requests as it is, through the runtime's sender (what ships).
async fn send(
    client: &reqwest::Client,
    request: &HttpRequest,
) -> Result<HttpResponse, agentsim_runtime::http::SendError> {
    agentsim_runtime::http::send(client, &request.url, request).await
}

fn config(server: &Server) -> Config {
    Config { base_url: server.base_url(), ..Config::default() }
}

/// A biscuit request for `acct-1`'s token that authorizes a POST to `target_url`.
fn biscuit_request(server: &Server, token: &str, target_url: &str) -> HttpRequest {
    protocol::biscuit_request(&config(server), token, target_url, [7; 16])
}

async fn biscuit(client: &reqwest::Client, server: &Server, target_url: &str) -> String {
    let response = send(client, &biscuit_request(server, TOKEN, target_url)).await.unwrap();
    protocol::read_biscuit(target_url, &response).expect("a biscuit")
}

/// Registers an identity and a task the way core does, at the clock's time.
async fn register(
    client: &reqwest::Client,
    server: &Server,
    key: &IdentityKey,
    now: Timestamp,
) -> (StoredIdentity, AgentTask) {
    let config = config(server);
    let url = protocol::identity_register_url(&config);
    let biscuit = biscuit(client, server, &url).await;
    let request = protocol::identity_register_request(&config, key, &biscuit);
    let response = send(client, &request).await.unwrap();
    let binding = Binding { account_id: "acct-1".into(), user_id: None };
    let identity = protocol::read_identity(&url, &response, key, &binding, now).unwrap();
    let task = register_task(client, server, &identity, key, now).await.expect("a task");
    (identity, task)
}

async fn register_task(
    client: &reqwest::Client,
    server: &Server,
    identity: &StoredIdentity,
    key: &IdentityKey,
    now: Timestamp,
) -> Result<AgentTask, protocol::TaskError> {
    let config = config(server);
    let url = protocol::task_register_url(&config, &identity.agent_runtime_id);
    let biscuit = biscuit(client, server, &url).await;
    let request = protocol::task_register_request(&config, identity, key, &biscuit, now);
    let response = send(client, &request).await.unwrap();
    protocol::read_task(&url, &response, identity, key, now)
}

/// `GET`/`POST` a path with an optional body; (status, body text).
async fn call(
    client: &reqwest::Client,
    server: &Server,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let url = format!("{}{path}", server.base_url());
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = client.request(method, url).body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn journal_text(entries: &[JournalEntry]) -> String {
    entries.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect()
}

#[tokio::test]
async fn a_client_registers_an_identity_and_a_task_and_asserts_it() {
    let clock = epoch_clock();
    let server = start(&clock, |_| {});
    let client = client();
    let key = IdentityKey::from_seed([3; 32]);
    let now = Timestamp(clock.load(Ordering::SeqCst));
    let (identity, task) = register(&client, &server, &key, now).await;
    let stamp = now.rfc3339_secs();
    let assertion = key.assertion_header(&identity.agent_runtime_id, &task.task_id, &stamp);
    let model = protocol::model_request(&config(&server), Some(assertion.clone()), "hello");
    assert_eq!(send(&client, &model).await.unwrap().status, 200);

    let journal = server.journal();
    let endpoints: Vec<_> = journal.iter().map(|e| e.endpoint.clone().unwrap()).collect();
    assert_eq!(endpoints, ["biscuit", "identity_register", "biscuit", "task_register", "model"]);
    assert!(journal.iter().all(|e| e.status == Some(200) && e.fault.is_none()), "{journal:?}");
    let numbers: Vec<u64> = journal.iter().map(|e| e.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    assert_eq!(journal[0].at, now.rfc3339_millis());
    let expected = format!(" assertion={}/{}", identity.agent_runtime_id, task.task_id);
    assert_eq!(journal[4].request, expected);

    // The admin API answers the same journal, and neither it nor anything else holds a secret.
    let (status, text) = call(&client, &server, "GET", "/admin/journal", "").await;
    assert_eq!(status, 200);
    assert_eq!(text, journal_text(&journal));
    let biscuit =
        biscuit(&client, &server, &protocol::identity_register_url(&config(&server))).await;
    let (_, text) = call(&client, &server, "GET", "/admin/journal", "").await;
    for secret in [TOKEN, &biscuit, &key.to_pkcs8_base64(), &assertion[15..]] {
        assert!(!text.contains(secret), "the journal holds a secret: {text}");
    }

    // Expiring the latest runtime by hand makes the backend refuse it.
    let (status, text) = call(&client, &server, "POST", "/admin/expire", "").await;
    assert_eq!(
        (status, text),
        (200, format!(r#"{{"agent_runtime_id":"{}"}}"#, identity.agent_runtime_id))
    );
    let refused = register_task(&client, &server, &identity, &key, now).await.unwrap_err();
    assert!(refused.is_identity_expired(), "{refused}");
}

#[tokio::test]
async fn the_identity_ttl_is_judged_by_the_servers_clock() {
    let clock = epoch_clock();
    let server = start(&clock, |o| o.identity_ttl_ms = Some(30_000));
    let client = client();
    let key = IdentityKey::from_seed([4; 32]);
    let now = Timestamp(clock.load(Ordering::SeqCst));
    let (identity, _) = register(&client, &server, &key, now).await;
    assert!(identity.expires_at.is_some());
    let later = now.plus_ms(31_000);
    clock.store(later.unix_ms(), Ordering::SeqCst);
    let refused = register_task(&client, &server, &identity, &key, later).await.unwrap_err();
    assert!(refused.is_identity_expired(), "{refused}");
}

#[tokio::test]
async fn an_unknown_token_is_401_and_an_unknown_path_404() {
    let server = start(&epoch_clock(), |_| {});
    let client = client();
    let target = protocol::identity_register_url(&config(&server));
    let response = send(&client, &biscuit_request(&server, "at-wrong", &target)).await.unwrap();
    assert_eq!(
        (response.status, response.body_text()),
        (401, r#"{"error":"invalid_token"}"#.into())
    );
    let good = send(&client, &biscuit_request(&server, TOKEN, &target)).await.unwrap();
    assert_eq!(good.status, 200);
    assert!(good.header("x-openai-authorization").is_some());
    let (status, body) = call(&client, &server, "GET", "/nowhere?x=1", "").await;
    assert_eq!((status, body.as_str()), (404, r#"{"error":"not_found"}"#));
    let last = server.journal().pop().unwrap();
    assert_eq!((last.path.as_str(), last.endpoint, last.status), ("/nowhere", None, Some(404)));
    assert!(!journal_text(&server.journal()).contains("at-wrong"));
}

#[tokio::test]
async fn a_status_fault_from_a_file_hits_the_first_biscuit_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flaky.faults");
    let text = "# the first biscuit fails\nfault biscuit 1 status=503 body=\"{\\\"error\\\":\\\"down\\\"}\"\n";
    std::fs::write(&path, text).unwrap();
    let file = load_faults(&path).unwrap();
    let server =
        start(&epoch_clock(), |o| o.faults = file.rules.into_iter().map(|r| r.value).collect());
    let client = client();
    let target = protocol::identity_register_url(&config(&server));
    let first = send(&client, &biscuit_request(&server, TOKEN, &target)).await.unwrap();
    assert_eq!((first.status, first.body_text()), (503, r#"{"error":"down"}"#.into()));
    let second = send(&client, &biscuit_request(&server, TOKEN, &target)).await.unwrap();
    assert_eq!(second.status, 200);
    let faults: Vec<_> = server.journal().into_iter().map(|e| e.fault).collect();
    assert_eq!(faults, [Some("status=503".to_owned()), None]);
}

#[test]
fn a_bad_fault_file_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.faults");
    std::fs::write(&path, "fault biscuit 1 status=503\nfault model 2 explode\n").unwrap();
    let message = load_faults(&path).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}:2:", path.display())), "{message}");
    std::fs::write(&path, "fault model * status=102\n").unwrap();
    let message = load_faults(&path).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}:1:", path.display())), "{message}");
    let informational = FaultRule {
        endpoint: Endpoint::Model,
        calls: CallMatch::Every,
        kind: FaultKind::Status { status: 101, body: None },
    };
    let refused =
        Server::start(ServeOptions { faults: vec![informational], ..ServeOptions::default() });
    assert_eq!(refused.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn a_reset_fault_closes_the_connection_without_an_answer() {
    let server = start(&epoch_clock(), |o| {
        o.faults = vec![FaultRule {
            endpoint: Endpoint::Biscuit,
            calls: CallMatch::Nth(1),
            kind: FaultKind::Reset,
        }];
    });
    let client = client();
    let target = protocol::identity_register_url(&config(&server));
    let error = send(&client, &biscuit_request(&server, TOKEN, &target)).await.unwrap_err();
    assert_eq!(error.failure(), agentsim_core::RequestFailure::Connection, "{error}");
    assert_eq!(send(&client, &biscuit_request(&server, TOKEN, &target)).await.unwrap().status, 200);
    let first = &server.journal()[0];
    assert_eq!(
        (first.fault.as_deref(), first.status, first.answer.as_str()),
        (Some("reset"), None, "")
    );
}

#[tokio::test]
async fn a_timeout_fault_holds_its_answer_past_the_clients_patience() {
    let server = start(&epoch_clock(), |o| {
        o.timeout_hold_ms = 200;
        o.faults = vec![FaultRule {
            endpoint: Endpoint::Model,
            calls: CallMatch::Nth(1),
            kind: FaultKind::Timeout,
        }];
    });
    let impatient =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(50)).build().unwrap();
    let model = protocol::model_request(&config(&server), None, "hi");
    let error = send(&impatient, &model).await.unwrap_err();
    assert_eq!(error.failure(), agentsim_core::RequestFailure::Timeout, "{error}");
    // The next call is answered at once, while the held one may still be waiting.
    assert_eq!(send(&client(), &model).await.unwrap().status, 200);
    let first = &server.journal()[0];
    assert_eq!((first.fault.as_deref(), first.status), (Some("timeout"), Some(200)));
    assert_eq!(first.request, " no assertion");
}

#[tokio::test]
async fn the_admin_api_retires_runtimes_adds_faults_heals_and_resets() {
    let server = start(&epoch_clock(), |_| {});
    let client = client();
    for path in ["/admin/expire", "/admin/revoke"] {
        assert_eq!(
            call(&client, &server, "POST", path, "").await,
            (404, r#"{"error":"unknown_runtime"}"#.into())
        );
        let named = r#"{"agent_runtime_id":"agent-nobody"}"#;
        assert_eq!(call(&client, &server, "POST", path, named).await.0, 404);
        assert_eq!(call(&client, &server, "POST", path, "{not json").await.0, 400);
    }
    let (status, body) = call(
        &client,
        &server,
        "POST",
        "/admin/faults",
        "fault model 1 status=500\nfault model 2 bogus\n",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("<POST /admin/faults>:2:"), "{body}");
    let model = protocol::model_request(&config(&server), None, "hi");
    assert_eq!(send(&client, &model).await.unwrap().status, 200);
    let (status, _) = call(
        &client,
        &server,
        "POST",
        "/admin/faults",
        "fault model 1 status=500\nfault model 2.. status=502\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(send(&client, &model).await.unwrap().status, 500, "counted from the next call");
    assert_eq!(send(&client, &model).await.unwrap().status, 502);
    assert_eq!(call(&client, &server, "POST", "/admin/heal", "").await.0, 200);
    assert_eq!(send(&client, &model).await.unwrap().status, 200);

    let account = r#"{"account_id":"acct-2","access_token":"at-second"}"#;
    assert_eq!(call(&client, &server, "POST", "/admin/accounts", account).await.0, 200);
    let target = protocol::identity_register_url(&config(&server));
    assert_eq!(
        send(&client, &biscuit_request(&server, "at-second", &target)).await.unwrap().status,
        200
    );
    assert_eq!(call(&client, &server, "POST", "/admin/accounts", "{}").await.0, 400);

    let (status, text) = call(&client, &server, "GET", "/admin/journal?since=4", "").await;
    assert_eq!(status, 200);
    let numbers: Vec<u64> =
        text.lines().map(|l| serde_json::from_str::<JournalEntry>(l).unwrap().number).collect();
    assert_eq!(numbers, [5]);
    assert!(!text.contains("at-second"));
    assert_eq!(call(&client, &server, "GET", "/admin/journal?since=x", "").await.0, 400);
    assert_eq!(
        call(&client, &server, "GET", "/admin/health", "").await,
        (200, r#"{"status":"ok","requests":5}"#.into())
    );

    assert_eq!(call(&client, &server, "POST", "/admin/reset", "").await.0, 200);
    assert_eq!(
        call(&client, &server, "GET", "/admin/health", "").await,
        (200, r#"{"status":"ok","requests":0}"#.into())
    );
    assert!(server.journal().is_empty());
    assert_eq!(
        send(&client, &biscuit_request(&server, "at-second", &target)).await.unwrap().status,
        401,
        "accounts as started"
    );
    assert_eq!(call(&client, &server, "GET", "/admin/reset", "").await.0, 405);
    assert_eq!(
        call(&client, &server, "GET", "/admin/nothing", "").await,
        (404, r#"{"error":"not_found"}"#.into())
    );
}

/// Writes raw bytes to the server and reads what comes back until it closes or goes quiet.
fn raw(server: &Server, bytes: &[u8]) -> String {
    raw_to(server.base_url().trim_start_matches("http://").parse().unwrap(), bytes)
}

/// Writes raw bytes to `addr` and reads what comes back until it closes or goes quiet.
fn raw_to(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close before reading everything it was sent; that is an answer too.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test]
async fn bad_input_gets_error_answers_and_never_brings_the_server_down() {
    let server = start(&epoch_clock(), |_| {});
    let put = raw(&server, b"PUT /v1/agent/register HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}");
    assert_eq!(status_line(&put), "HTTP/1.1 405 Method Not Allowed", "{put}");
    assert!(put.ends_with(r#"{"error":"method_not_allowed"}"#), "{put}");
    let delete =
        raw(&server, b"DELETE /elsewhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(status_line(&delete), "HTTP/1.1 404 Not Found", "{delete}");
    let not_utf8 = raw(&server, b"POST /v1/agent/register HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 3\r\n\r\n\xff\xfe\xfd");
    assert_eq!(status_line(&not_utf8), "HTTP/1.1 400 Bad Request", "{not_utf8}");
    let declared = raw(&server, b"POST /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 99999999999\r\n\r\n{");
    assert_eq!(status_line(&declared), "HTTP/1.1 413 Payload Too Large", "{declared}");
    let mut chunked = b"POST /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..17 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend(std::iter::repeat_n(b'a', 0x10000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let chunked = raw(&server, &chunked);
    assert_eq!(status_line(&chunked), "HTTP/1.1 413 Payload Too Large");
    let odd_header = raw(&server, b"GET /authenticate_app_v2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer \xff\xff\r\nx-request-id: codex-agent-identity-AAAA\r\n\r\n");
    assert!(status_line(&odd_header).starts_with("HTTP/1.1 4"), "{odd_header}");
    let broken_assertion = raw(&server, b"POST /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: AgentAssertion !!!\r\ncontent-length: 2\r\n\r\n{}");
    assert!(broken_assertion.contains(r#"{"error":"invalid_assertion"}"#), "{broken_assertion}");
    let bad_body = raw(&server, b"POST /v1/agent/agent-x/task/register HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\n[1,2]");
    assert!(status_line(&bad_body).starts_with("HTTP/1.1 401"), "{bad_body}");
    for garbage in [
        &b"\x00\x01\x02 nonsense\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ] {
        raw(&server, garbage);
    }
    let mut many = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
    for n in 0..500 {
        many.extend_from_slice(format!("x-h{n}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    raw(&server, &many);

    let client = client();
    assert_eq!(call(&client, &server, "GET", "/admin/health", "").await.0, 200);
    let methods: Vec<String> = server.journal().iter().map(|e| e.method.clone()).collect();
    assert_eq!(&methods[..2], ["PUT", "DELETE"]);
}

#[test]
fn shutdown_closes_the_port_without_waiting_for_held_answers() {
    let server = start(&epoch_clock(), |o| {
        o.faults = vec![FaultRule {
            endpoint: Endpoint::Model,
            calls: CallMatch::Every,
            kind: FaultKind::Timeout,
        }];
    });
    let addr: SocketAddr = server.base_url().trim_start_matches("http://").parse().unwrap();
    let mut held = TcpStream::connect(addr).unwrap();
    held.write_all(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .unwrap();
    // The request is journaled once the model has answered it; then the answer is held 60 s.
    let journaled = (0..10_000_000).any(|_| {
        std::thread::yield_now();
        !server.journal().is_empty()
    });
    assert!(journaled, "the server never saw the request");
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown waited for the held answer");
    let mut rest = Vec::new();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        held.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0),
        0,
        "nothing was answered"
    );
    assert!(TcpStream::connect(addr).is_err(), "the port is closed");
}

#[test]
fn only_loopback_is_served_unless_public() {
    let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
    for loopback in ["127.0.0.1:8787", "[::1]:0", "[::ffff:127.0.0.1]:80", "127.0.0.2:1"] {
        assert!(check_listen(addr(loopback), false).is_ok(), "{loopback}");
    }
    for reachable in ["0.0.0.0:8787", "[::]:0", "192.168.1.2:80"] {
        let message = check_listen(addr(reachable), false).unwrap_err().to_string();
        assert!(message.contains("--public"), "{message}");
        assert!(check_listen(addr(reachable), true).is_ok());
    }
}

fn sim() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sim"));
    command.env("RUST_LOG", "off");
    command
}

#[test]
fn sim_serve_has_help_and_refuses_a_public_address_without_public() {
    let help = sim().args(["serve", "--help"]).output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--seed",
        "--identity-ttl",
        "--account",
        "--faults",
        "--timeout-hold",
        "--public",
    ] {
        assert!(text.contains(flag), "{flag} in\n{text}");
    }
    let refused = sim().args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--public"));
}

#[test]
fn sim_serve_prints_its_url_and_accounts_and_logs_requests_without_secrets() {
    let mut child = sim()
        .args(["serve", "--listen", "127.0.0.1:0", "--seed", "7"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line.trim_end().to_owned());
    }
    let url = lines[0].clone();
    let addr: SocketAddr = url.trim_start_matches("http://").parse().expect(&url);
    let (account, token) = sim::serve::seeded_account(7, "acct-1");
    assert_eq!(lines[3], format!("  {account} {token}"));
    let minted = raw_to(
        addr,
        format!(
            "GET /authenticate_app_v2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             authorization: Bearer {token}\r\nx-request-id: codex-agent-identity-AAAA\r\n\
             x-original-method: POST\r\nx-original-url: {url}/v1/agent/register\r\n\r\n"
        )
        .as_bytes(),
    );
    let biscuit = minted
        .lines()
        .find_map(|line| line.strip_prefix("x-openai-authorization: "))
        .unwrap_or_else(|| panic!("no biscuit in {minted}"))
        .to_owned();
    let health =
        raw_to(addr, b"GET /admin/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    child.kill().unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    child.wait().unwrap();
    assert!(health.ends_with(r#"{"status":"ok","requests":1}"#), "{health}");
    assert!(log.contains("#1 GET /authenticate_app_v2 -> 200 biscuit minted"), "{log}");
    for secret in [&token, &biscuit] {
        assert!(!log.contains(secret.as_str()), "the log holds a secret: {log}");
    }
}

#[tokio::test]
async fn an_identity_registered_out_of_band_is_the_latest_and_expires_with_the_ttl() {
    let server = start(&epoch_clock(), |o| o.identity_ttl_ms = Some(60_000));
    let client = client();
    let bad = r#"{"account_id":"acct-1","agent_public_key":"ssh-rsa AAAA"}"#;
    assert_eq!(call(&client, &server, "POST", "/admin/identities", bad).await.0, 400);
    assert_eq!(call(&client, &server, "POST", "/admin/identities", "{}").await.0, 400);
    let key = agentsim_core::wire::IdentityKey::from_seed([7; 32]);
    let body =
        serde_json::json!({ "account_id": "acct-1", "agent_public_key": key.ssh_public_key() });
    let (status, answer) =
        call(&client, &server, "POST", "/admin/identities", &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let registered: agentsim_core::wire::IdentityRegistrationResponse =
        serde_json::from_str(&answer).expect("a registration answer");
    assert_eq!(registered.expires_at.as_deref(), Some("2026-04-18T14:01:00Z"));
    // It is the latest runtime: a bodiless expire names it.
    let (status, expired) = call(&client, &server, "POST", "/admin/expire", "").await;
    assert_eq!((status, expired.contains(&registered.agent_runtime_id)), (200, true), "{expired}");
    assert!(server.journal().is_empty(), "the admin API is not journaled as protocol requests");
}
