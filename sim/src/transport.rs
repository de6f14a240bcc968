//! Two transports over the same [`Backend`] model: a direct call ([`MemoryTransport`]) and a real
//! HTTP round trip over loopback to a `wiremock` server ([`HttpTransport`]).
//!
//! Both give byte-identical [`HttpResponse`] values for the same request sequence:
//! - a [`FaultKind::Reset`] is applied here, before the model, in both: the model never sees the
//!   request and the caller gets [`TransportError::Reset`];
//! - every other fault is handed to [`Backend::handle`], which produces it as a real response;
//!   except a 1xx status, which HTTP cannot carry as a final response: the HTTP transport refuses
//!   it with [`TransportError::Io`] (a harness failure), the memory transport delivers it;
//! - responses pass through [`normalize_response`]: only the headers the model sets
//!   (`content-type`, `x-openai-authorization`) are kept, so hyper's `date` and
//!   `content-length` never reach a run's artifacts.
//!
//! The model only looks at a request's path, never its authority, so the memory transport's fake
//! base ([`MEMORY_BASE_URL`]) and the HTTP transport's real one ([`HttpTransport::base_url`])
//! behave the same.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agentsim_core::wire::{HttpRequest, HttpResponse, Method, BISCUIT_RESPONSE_HEADER};
use reqwest::header::{HeaderName, HeaderValue};

use crate::backend::Backend;
use crate::fault::FaultKind;

/// The backend model shared by the simulator and a transport (and, for HTTP, the server thread).
pub type SharedBackend = Arc<Mutex<Backend>>;

/// The base URL the simulator configures the core with when it uses [`MemoryTransport`]. It never
/// resolves: nothing is sent over a network.
pub const MEMORY_BASE_URL: &str = "http://backend.invalid";

/// The response headers a transport keeps, sorted: the only ones the model sets.
pub const KEPT_RESPONSE_HEADERS: [&str; 2] = ["content-type", BISCUIT_RESPONSE_HEADER];

/// Why an exchange produced no response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The fault plan reset the connection: the backend never saw the request.
    #[error("connection reset")]
    Reset,
    /// The real HTTP round trip failed: the request could not be built or sent, or the loopback
    /// server did not answer (the backend model panicked, or the safety timeout fired).
    #[error("http transport failed: {0}")]
    Io(String),
}

/// One request, one response, with the fault the simulator decided for this call.
pub trait Transport {
    /// Sends `request` and waits for the model's response (a timeout fault still returns the
    /// response: the caller drops it in virtual time). A reset is applied here, in one place for
    /// every transport: the model never sees the request.
    fn exchange(
        &mut self,
        request: &HttpRequest,
        fault: Option<&FaultKind>,
    ) -> Result<HttpResponse, TransportError> {
        if matches!(fault, Some(FaultKind::Reset)) {
            return Err(TransportError::Reset);
        }
        self.round_trip(request, fault)
    }

    /// The transport's own round trip to the model, for every fault but a reset.
    fn round_trip(
        &mut self,
        request: &HttpRequest,
        fault: Option<&FaultKind>,
    ) -> Result<HttpResponse, TransportError>;

    /// `"memory"` or `"http"`.
    fn name(&self) -> &'static str;
}

/// Keeps only [`KEPT_RESPONSE_HEADERS`], with lower-case names, sorted by name (values of one name
/// keep their order). Both transports pass every response through it.
pub fn normalize_response(response: HttpResponse) -> HttpResponse {
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .filter(|(name, _)| KEPT_RESPONSE_HEADERS.contains(&name.as_str()))
        .collect();
    // A stable sort, so several values of one header keep their order.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    HttpResponse { headers, ..response }
}

/// Calls the model directly, in the caller's thread.
#[derive(Debug)]
pub struct MemoryTransport {
    backend: SharedBackend,
}

impl MemoryTransport {
    /// A transport over `backend`.
    pub fn new(backend: SharedBackend) -> MemoryTransport {
        MemoryTransport { backend }
    }

    /// [`MEMORY_BASE_URL`], for symmetry with [`HttpTransport::base_url`].
    pub fn base_url(&self) -> String {
        MEMORY_BASE_URL.to_owned()
    }
}

impl Transport for MemoryTransport {
    fn round_trip(
        &mut self,
        request: &HttpRequest,
        fault: Option<&FaultKind>,
    ) -> Result<HttpResponse, TransportError> {
        let response =
            self.backend.lock().expect("the backend model panicked earlier").handle(request, fault);
        Ok(normalize_response(response))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Sends real HTTP over loopback to a `wiremock` server whose one catch-all mock calls the model.
///
/// The transport owns a current-thread tokio runtime for its client; the server runs on
/// wiremock's own thread. [`Transport::exchange`] blocks until the response is read, so the model
/// sees requests in exactly the caller's order. The fault for a request travels to the server side
/// through a slot the transport fills just before sending.
pub struct HttpTransport {
    // Fields drop in order: the client and the server go while the runtime still runs.
    client: reqwest::Client,
    server: wiremock::MockServer,
    runtime: tokio::runtime::Runtime,
    backend: SharedBackend,
    fault_slot: FaultSlot,
    /// Requests answered by the currently mounted mock (see [`MOCK_REMOUNT_REQUESTS`]).
    mounted_requests: u32,
}

/// wiremock's mock keeps a copy of every request it matched, even with request recording off. The
/// transport resets the server and mounts a fresh mock after this many requests, so a long run
/// stays in bounded memory. (wiremock counts resets in a `u16`: this allows 2^16 * 4096 requests
/// per transport.)
pub const MOCK_REMOUNT_REQUESTS: u32 = 4096;

/// A real-time bound on one loopback round trip. It is not the simulated 15 s request timeout
/// (that is virtual); it only turns a hung server into an error instead of a hung run.
const LOOPBACK_SAFETY_TIMEOUT: Duration = Duration::from_secs(120);

type FaultSlot = Arc<Mutex<Option<FaultKind>>>;

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport").field("base_url", &self.base_url()).finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// Starts the loopback server (request recording off) and the keep-alive client. Call it, and
    /// [`Transport::exchange`], from synchronous code: they block on the transport's own runtime.
    pub fn start(backend: SharedBackend) -> anyhow::Result<HttpTransport> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let server =
            runtime.block_on(wiremock::MockServer::builder().disable_request_recording().start());
        let client =
            reqwest::Client::builder().no_proxy().timeout(LOOPBACK_SAFETY_TIMEOUT).build()?;
        let transport = HttpTransport {
            runtime,
            server,
            client,
            backend,
            fault_slot: Arc::default(),
            mounted_requests: 0,
        };
        transport.runtime.block_on(transport.mount());
        Ok(transport)
    }

    /// `http://127.0.0.1:<port>`: configure the core with this base so X-Original-Url names the
    /// real server.
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    async fn mount(&self) {
        let responder =
            BackendResponder { backend: self.backend.clone(), fault_slot: self.fault_slot.clone() };
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(responder)
            .mount(&self.server)
            .await;
    }

    /// Drops the mock's copies of matched requests every [`MOCK_REMOUNT_REQUESTS`] requests.
    fn remount_when_due(&mut self) {
        if self.mounted_requests < MOCK_REMOUNT_REQUESTS {
            return;
        }
        self.runtime.block_on(async {
            self.server.reset().await;
            self.mount().await;
        });
        self.mounted_requests = 0;
    }

    /// The request's path and query on this transport's server.
    fn target_url(&self, request: &HttpRequest) -> String {
        format!("{}{}", self.server.uri(), request.path())
    }
}

impl Transport for HttpTransport {
    fn round_trip(
        &mut self,
        request: &HttpRequest,
        fault: Option<&FaultKind>,
    ) -> Result<HttpResponse, TransportError> {
        if let Some(FaultKind::Status { status: status @ 100..=199, .. }) = fault {
            // HTTP/1.1 cannot end an exchange with an informational status: hyper's server answers
            // 500 or closes the connection, whichever comes first, so the run would depend on a
            // race. Refuse it the same way every time instead.
            return Err(TransportError::Io(format!(
                "status {status} cannot be sent as a final HTTP response (1xx statuses are \
                 informational): run this scenario with the memory transport"
            )));
        }
        self.remount_when_due();
        self.mounted_requests += 1;
        let url = self.target_url(request);
        *lock(&self.fault_slot) = fault.cloned();
        // The runtime's sender: the simulator's HTTP round trip is the one that ships.
        let result = self
            .runtime
            .block_on(agentsim_runtime::http::send(&self.client, &url, request))
            .map_err(|e| TransportError::Io(e.to_string()));
        // The server took the fault if it answered; clear it in case it did not.
        lock(&self.fault_slot).take();
        let result = result.map_err(|e| {
            if self.backend.is_poisoned() {
                TransportError::Io(format!("{e} (the backend model panicked)"))
            } else {
                e
            }
        });
        result.map(normalize_response)
    }

    fn name(&self) -> &'static str {
        "http"
    }
}

/// Locks the fault slot. It only ever holds a plain value, so a poisoned lock (a panic elsewhere
/// while it was held) leaves nothing half-written.
fn lock(slot: &FaultSlot) -> std::sync::MutexGuard<'_, Option<FaultKind>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The catch-all mock's responder: turns the wiremock request into the model's request, calls the
/// model with the fault from the slot, and turns the answer into a response template.
struct BackendResponder {
    backend: SharedBackend,
    fault_slot: FaultSlot,
}

impl wiremock::Respond for BackendResponder {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let fault = lock(&self.fault_slot).take();
        let Some(request) = model_request(request) else {
            return wiremock::ResponseTemplate::new(405);
        };
        let response = self
            .backend
            .lock()
            .expect("the backend model panicked earlier")
            .handle(&request, fault.as_ref());
        response_template(response)
    }
}

/// The model's view of a request that arrived over HTTP. `None` for a method the client never uses.
fn model_request(request: &wiremock::Request) -> Option<HttpRequest> {
    let method = match request.method.as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => return None,
    };
    let headers = request
        .headers
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    let body =
        (!request.body.is_empty()).then(|| String::from_utf8_lossy(&request.body).into_owned());
    Some(HttpRequest { method, url: request.url.to_string(), headers, body })
}

fn response_template(response: HttpResponse) -> wiremock::ResponseTemplate {
    let mut template = wiremock::ResponseTemplate::new(response.status);
    for (name, value) in response.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).expect("the model sets valid header names");
        // `from_bytes` accepts any visible byte, so a non-UTF-8 value goes out as it is.
        let value = HeaderValue::from_bytes(&value).expect("the model sets valid header values");
        template = template.append_header(name, value);
    }
    // `set_body_bytes` sets no content-type of its own: the model's header is the only one.
    template.set_body_bytes(response.body)
}

#[cfg(test)]
mod tests;
