//! The HTTP glue: the accept loop, one hyper HTTP/1 connection per client, and the route of one
//! request: `/admin/...` to [`super::admin`], everything else to the model through
//! [`World::answer`](super::world::World::answer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentsim_core::wire::{HttpRequest, HttpResponse, Method};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::world::Outcome;
use super::{Shared, MAX_BODY_BYTES, MAX_CONNECTIONS};
use crate::backend::JSON_CONTENT_TYPE;
use crate::fault::Endpoint;

/// Every answer's body: whole, in memory.
pub(super) type Body = Full<Bytes>;

/// Why the server closed a connection without answering: hyper drops the connection when the
/// service returns an error.
#[derive(Debug, thiserror::Error)]
pub(super) enum Dropped {
    /// A `reset` fault.
    #[error("reset fault: connection closed without an answer")]
    Reset,
    /// The client's body broke off before its end.
    #[error("the request body broke off: {0}")]
    Body(String),
}

/// Accepts connections until `shutdown` fires (or its sender is dropped), at most
/// [`MAX_CONNECTIONS`] at a time: more are closed at once.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            tracing::warn!("{MAX_CONNECTIONS} connections open already: closing a new one");
            continue;
        }
        let counted = Counted::new(&open);
        let shared = shared.clone();
        tokio::spawn(async move {
            // Counted until this task ends, by a panic in the model too.
            let _counted = counted;
            let service = hyper::service::service_fn(move |request| route(shared.clone(), request));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

/// One open connection, counted while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::SeqCst);
        Counted(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One request: the admin API or the protocol.
async fn route(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let path = request.uri().path();
    if path == "/admin" || path.starts_with("/admin/") {
        return Ok(super::admin::handle(&shared, request).await);
    }
    protocol(&shared, request).await
}

/// A protocol request: refused here when the model cannot read it, else answered by the model.
async fn protocol(shared: &Shared, request: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let (parts, body) = request.into_parts();
    let now = (shared.options.clock)();
    let method = match parts.method {
        hyper::Method::GET => Some(Method::Get),
        hyper::Method::POST => Some(Method::Post),
        _ => None,
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut model_request = HttpRequest {
        method: method.unwrap_or(Method::Get),
        url: format!("{}{target}", shared.base_url),
        headers,
        body: None,
    };
    let refusal = match (method, read_body(&parts.headers, body).await) {
        // The model's own order: an unknown path first, then the method.
        (None, _) if Endpoint::of_path(parts.uri.path()).is_none() => Some(error(404, "not_found")),
        (None, _) => Some(error(405, "method_not_allowed")),
        (Some(_), Err(ReadError::TooLarge)) => Some(error(413, "invalid_request")),
        (Some(_), Err(ReadError::Broken(e))) => return Err(Dropped::Body(e)),
        (Some(_), Ok(bytes)) if bytes.is_empty() => None,
        (Some(_), Ok(bytes)) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => {
                model_request.body = Some(text);
                None
            }
            Err(_) => Some(error(400, "invalid_request")),
        },
    };
    // The lock is taken and released in this one synchronous call, never held across an
    // await: other connections go on while a timeout holds its answer.
    let outcome = {
        let Ok(mut world) = shared.world.lock() else {
            return Ok(to_hyper(error(500, "internal")));
        };
        match refusal {
            Some(response) => {
                Outcome::Send(world.refuse(now, parts.method.as_str(), &model_request, response))
            }
            None => world.answer(now, &model_request),
        }
    };
    match outcome {
        Outcome::Send(response) => Ok(to_hyper(response)),
        Outcome::Hold(response) => {
            tokio::time::sleep(Duration::from_millis(shared.options.timeout_hold_ms)).await;
            Ok(to_hyper(response))
        }
        Outcome::Drop => Err(Dropped::Reset),
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Longer than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The client went away mid-body.
    Broken(String),
}

/// The whole body, at most [`MAX_BODY_BYTES`]; a larger `content-length` is refused unread.
pub(super) async fn read_body(
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Bytes, ReadError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ReadError::TooLarge);
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Broken(e.to_string())),
    }
}

/// A JSON error answer, `{"error":"<error>"}`, as the model writes them.
pub(super) fn error(status: u16, error: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": error }))
}

/// A JSON answer.
pub(super) fn json(status: u16, body: &serde_json::Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".to_owned(), JSON_CONTENT_TYPE.as_bytes().to_vec())],
        body: body.to_string().into_bytes(),
    }
}

/// The model's answer as hyper's. A status HTTP cannot send as a final answer (a 1xx, which
/// loading refuses, or out of range) goes out as 502 `{"error":"injected"}`; a header hyper
/// refuses is left out and logged. Hyper adds `date` and `content-length`.
pub(super) fn to_hyper(response: HttpResponse) -> Response<Body> {
    let (status, response) = match StatusCode::from_u16(response.status) {
        Ok(status) if !status.is_informational() => (status, response),
        _ => {
            tracing::warn!("status {} cannot be a final HTTP answer: sent 502", response.status);
            (StatusCode::BAD_GATEWAY, error(502, "injected"))
        }
    };
    let mut answer = Response::new(Full::new(Bytes::from(response.body)));
    *answer.status_mut() = status;
    for (name, value) in response.headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            (Ok(name), Ok(value)) => {
                answer.headers_mut().append(name, value);
            }
            _ => tracing::warn!("header {name:?} cannot be sent: left out"),
        }
    }
    answer
}

/// A plain-text or JSON-lines answer of the admin API.
pub(super) fn with_content_type(
    status: u16,
    content_type: &'static str,
    body: String,
) -> Response<Body> {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}
