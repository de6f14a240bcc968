//! The transports' tests: both give the same bytes, faults land where they should.

use super::*;
use crate::backend::{BackendConfig, HUGE_BODY_BYTES};
use agentsim_core::wire::{
    request_id, task_register_path, Abom, IdentityKey, IdentityRegistrationRequest,
    IdentityRegistrationResponse, TaskRegistrationRequest, TaskRegistrationResponse, BISCUIT_PATH,
    BISCUIT_REQUEST_HEADER, IDENTITY_REGISTER_PATH, MODEL_PATH,
};

const TOKEN: &str = "tok-alice";

fn shared_backend() -> SharedBackend {
    let mut backend = Backend::new([11; 32], BackendConfig { identity_ttl_ms: Some(60_000) });
    backend.add_account("acct-alice", TOKEN);
    Arc::new(Mutex::new(backend))
}

/// A client that speaks the protocol through one transport, the way the core would.
struct Client<T: Transport> {
    transport: T,
    base: String,
    key: IdentityKey,
    /// Every exchange's outcome, for comparing transports.
    log: Vec<Result<HttpResponse, String>>,
}

impl<T: Transport> Client<T> {
    fn new(transport: T, base: String) -> Self {
        Client { transport, base, key: IdentityKey::from_seed([3; 32]), log: Vec::new() }
    }

    fn send(&mut self, request: HttpRequest, fault: Option<&FaultKind>) -> Option<HttpResponse> {
        let result = self.transport.exchange(&request, fault).map_err(|e| e.to_string());
        self.log.push(result.clone());
        result.ok()
    }

    fn biscuit(&mut self, path: &str, fault: Option<&FaultKind>) -> Option<HttpResponse> {
        let request = HttpRequest {
            method: Method::Get,
            url: format!("{}{BISCUIT_PATH}", self.base),
            headers: vec![
                ("Authorization".into(), format!("Bearer {TOKEN}")),
                ("X-Request-Id".into(), request_id([2; 16])),
                ("X-Original-Method".into(), "POST".into()),
                ("X-Original-Url".into(), format!("{}{path}", self.base)),
            ],
            body: None,
        };
        self.send(request, fault)
    }

    fn registration(
        &mut self,
        path: &str,
        body: String,
        fault: Option<&FaultKind>,
    ) -> Option<HttpResponse> {
        let biscuit = self.biscuit(path, None).expect("biscuit");
        let biscuit =
            String::from_utf8(biscuit.header(BISCUIT_RESPONSE_HEADER).unwrap().to_vec()).unwrap();
        let request = HttpRequest {
            method: Method::Post,
            url: format!("{}{path}", self.base),
            headers: vec![
                (BISCUIT_REQUEST_HEADER.into(), biscuit),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Some(body),
        };
        self.send(request, fault)
    }

    fn register_identity(&mut self, fault: Option<&FaultKind>) -> Option<HttpResponse> {
        let abom = Abom {
            agent_version: "0.1".into(),
            agent_harness_id: "agentsim".into(),
            running_location: "sim".into(),
        };
        let body = IdentityRegistrationRequest {
            abom,
            agent_public_key: self.key.ssh_public_key(),
            capabilities: vec![],
        };
        self.registration(IDENTITY_REGISTER_PATH, serde_json::to_string(&body).unwrap(), fault)
    }

    fn register_task(&mut self, runtime: &str, fault: Option<&FaultKind>) -> Option<HttpResponse> {
        let timestamp = "2026-04-18T14:00:00Z".to_owned();
        let signature = self.key.sign_base64(&format!("{runtime}:{timestamp}"));
        let body =
            serde_json::to_string(&TaskRegistrationRequest { signature, timestamp }).unwrap();
        self.registration(&task_register_path(runtime), body, fault)
    }

    fn model(
        &mut self,
        assertion: Option<(&str, &str)>,
        fault: Option<&FaultKind>,
    ) -> Option<HttpResponse> {
        let headers = assertion
            .map(|(runtime, task)| {
                (
                    "Authorization".into(),
                    self.key.assertion_header(runtime, task, "2026-04-18T14:00:01Z"),
                )
            })
            .into_iter()
            .collect();
        let request = HttpRequest {
            method: Method::Post,
            url: format!("{}{MODEL_PATH}", self.base),
            headers,
            body: Some("{}".into()),
        };
        self.send(request, fault)
    }

    /// The whole protocol, then every fault on every endpoint.
    fn run_scenario(&mut self) {
        let identity = self.register_identity(None).unwrap();
        let runtime = serde_json::from_slice::<IdentityRegistrationResponse>(&identity.body)
            .unwrap()
            .agent_runtime_id;
        let task = self.register_task(&runtime, None).unwrap();
        let sealed = serde_json::from_slice::<TaskRegistrationResponse>(&task.body)
            .unwrap()
            .encrypted_task_id;
        let task_id = self.key.open_task_id(&sealed).unwrap();
        assert_eq!(self.model(Some((&runtime, &task_id)), None).unwrap().status, 200);

        let kinds = FaultKind::PLAIN_NAMES
            .iter()
            .map(|name| FaultKind::from_plain_name(name).unwrap())
            .chain([FaultKind::Status { status: 503, body: None }]);
        for kind in kinds {
            self.biscuit(IDENTITY_REGISTER_PATH, Some(&kind));
            self.register_identity(Some(&kind));
            self.register_task(&runtime, Some(&kind));
            self.model(Some((&runtime, &task_id)), Some(&kind));
        }
    }
}

#[test]
fn spec2_round_trip_over_real_http() {
    let backend = shared_backend();
    let transport = HttpTransport::start(backend.clone()).unwrap();
    let base = transport.base_url();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let mut client = Client::new(transport, base);
    let identity = client.register_identity(None).unwrap();
    assert_eq!(
        identity.headers,
        vec![("content-type".to_owned(), b"application/json".to_vec())],
        "no date, no content-length"
    );
    let runtime = serde_json::from_slice::<IdentityRegistrationResponse>(&identity.body)
        .unwrap()
        .agent_runtime_id;
    let task = client.register_task(&runtime, None).unwrap();
    let sealed =
        serde_json::from_slice::<TaskRegistrationResponse>(&task.body).unwrap().encrypted_task_id;
    let task_id = client.key.open_task_id(&sealed).unwrap();
    assert_eq!(backend.lock().unwrap().task_runtime(&task_id), Some(runtime.clone()));
    let response = client.model(Some((&runtime, &task_id)), None).unwrap();
    assert_eq!(response.body, br#"{"id":"resp_1","status":"completed"}"#);
    assert!(
        backend.lock().unwrap().violations().is_empty(),
        "{:?}",
        backend.lock().unwrap().violations()
    );
}

#[test]
fn reset_never_reaches_the_backend_in_either_transport() {
    let memory_backend = shared_backend();
    let http_backend = shared_backend();
    let mut memory =
        Client::new(MemoryTransport::new(memory_backend.clone()), MEMORY_BASE_URL.into());
    let http_transport = HttpTransport::start(http_backend.clone()).unwrap();
    let base = http_transport.base_url();
    let mut http = Client::new(http_transport, base);
    for client_backend in [&memory_backend, &http_backend] {
        assert_eq!(client_backend.lock().unwrap().stats().requests.len(), 0);
    }
    assert!(memory.biscuit(IDENTITY_REGISTER_PATH, Some(&FaultKind::Reset)).is_none());
    assert!(http.biscuit(IDENTITY_REGISTER_PATH, Some(&FaultKind::Reset)).is_none());
    assert_eq!(memory.log, vec![Err("connection reset".to_owned())]);
    assert_eq!(http.log, memory.log);
    for backend in [&memory_backend, &http_backend] {
        assert_eq!(backend.lock().unwrap().stats(), Default::default());
    }
}

#[test]
fn memory_and_http_transports_give_identical_responses() {
    let memory_backend = shared_backend();
    let mut memory =
        Client::new(MemoryTransport::new(memory_backend.clone()), MEMORY_BASE_URL.into());
    memory.run_scenario();

    let http_backend = shared_backend();
    let http_transport = HttpTransport::start(http_backend.clone()).unwrap();
    let base = http_transport.base_url();
    let mut http = Client::new(http_transport, base);
    http.run_scenario();

    assert_eq!(memory.log.len(), http.log.len());
    for (i, (m, h)) in memory.log.iter().zip(&http.log).enumerate() {
        assert!(m == h, "exchange {i} differs: memory {m:?} vs http {h:?}");
    }
    let huge = memory
        .log
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.body.len() == HUGE_BODY_BYTES))
        .count();
    assert_eq!(huge, 4, "one 10 MiB body per endpoint");
    let non_utf8 = http
        .log
        .iter()
        .flatten()
        .filter(|r| r.header(BISCUIT_RESPONSE_HEADER) == Some(&[0xff, 0xfe][..]))
        .count();
    assert_eq!(non_utf8, 1, "the non-UTF-8 biscuit header survives HTTP");

    let (memory_backend, http_backend) =
        (memory_backend.lock().unwrap(), http_backend.lock().unwrap());
    assert_eq!(memory_backend.violations(), http_backend.violations());
    assert!(memory_backend.violations().is_empty(), "{:?}", memory_backend.violations());
    assert_eq!(memory_backend.stats(), http_backend.stats());
}

#[test]
fn http_transport_remounts_its_mock_and_keeps_answering() {
    let backend = shared_backend();
    let mut transport = HttpTransport::start(backend.clone()).unwrap();
    transport.mounted_requests = MOCK_REMOUNT_REQUESTS - 1;
    let request = HttpRequest {
        method: Method::Post,
        url: format!("{MEMORY_BASE_URL}{MODEL_PATH}"),
        headers: vec![],
        body: None,
    };
    for n in 1..=3 {
        let response = transport.exchange(&request, None).unwrap();
        assert_eq!(
            response.body,
            format!(r#"{{"id":"resp_{n}","status":"completed"}}"#).into_bytes()
        );
    }
    assert_eq!(transport.mounted_requests, 2);
}

#[test]
fn normalize_keeps_only_model_headers_sorted_and_lowercased() {
    let response = HttpResponse {
        status: 200,
        headers: vec![
            ("X-OpenAI-Authorization".into(), b"bsc".to_vec()),
            ("date".into(), b"today".to_vec()),
            ("Content-Type".into(), b"application/json".to_vec()),
            ("content-length".into(), b"2".to_vec()),
        ],
        body: b"{}".to_vec(),
    };
    let normalized = normalize_response(response);
    assert_eq!(
        normalized.headers,
        vec![
            ("content-type".to_owned(), b"application/json".to_vec()),
            ("x-openai-authorization".to_owned(), b"bsc".to_vec())
        ]
    );
}
