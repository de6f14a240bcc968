//! Carrying out one [`Command::Send`](agentsim_core::Command::Send) with a real HTTP client:
//! the request exactly as core built it, one attempt (no HTTP-level retries, spec section 2),
//! bounded by the timeout the command names, the response handed back as raw bytes for core to
//! judge. [`send`] is the one place a core request becomes a `reqwest` round trip: the
//! simulator's HTTP transport and the `sim serve` tests send through it too.

use std::time::Duration;

use agentsim_core::wire::{HttpRequest, HttpResponse, Method};
use agentsim_core::RequestFailure;
use reqwest::header::{HeaderName, HeaderValue};

/// The most bytes of a response body read; a longer body fails the request as a connection
/// failure (the backend misbehaved) instead of filling memory.
pub const MAX_RESPONSE_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Why a round trip produced no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A header core built is not valid HTTP (never, for core's requests).
    #[error("invalid header {name:?} for {url}")]
    Header { url: String, name: String },
    /// The request could not be sent, or no response head came back.
    #[error("sending {url}: {}", chain(source))]
    Send { url: String, source: reqwest::Error },
    /// The body broke off.
    #[error("reading the body of {url}: {}", chain(source))]
    Body { url: String, source: reqwest::Error },
    /// The body is longer than [`MAX_RESPONSE_BODY_BYTES`].
    #[error("the body of {url} is longer than {MAX_RESPONSE_BODY_BYTES} bytes")]
    TooLarge { url: String },
}

impl SendError {
    /// What core is told: a timeout, or a connection that failed.
    pub fn failure(&self) -> RequestFailure {
        match self {
            SendError::Send { source, .. } | SendError::Body { source, .. }
                if source.is_timeout() =>
            {
                RequestFailure::Timeout
            }
            _ => RequestFailure::Connection,
        }
    }
}

/// Sends `request` and reads its whole response, within `timeout`.
pub async fn exchange(
    client: &reqwest::Client,
    request: &HttpRequest,
    timeout: Duration,
) -> Result<HttpResponse, RequestFailure> {
    match tokio::time::timeout(timeout, send(client, &request.url, request)).await {
        Ok(result) => result.map_err(|e| e.failure()),
        Err(_elapsed) => Err(RequestFailure::Timeout),
    }
}

/// One round trip of `request` to `url` (its own URL, or another authority for the same path):
/// its headers exactly as core built them, its `Content-Type` included; header values and the
/// body come back as raw bytes, header names in lower case.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    request: &HttpRequest,
) -> Result<HttpResponse, SendError> {
    let method = match request.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let mut builder = client.request(method, url);
    for (name, value) in &request.headers {
        let invalid = || SendError::Header { url: url.to_owned(), name: name.clone() };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let mut response =
        builder.send().await.map_err(|source| SendError::Send { url: url.to_owned(), source })?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|source| SendError::Body { url: url.to_owned(), source })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
            return Err(SendError::TooLarge { url: url.to_owned() });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse { status, headers, body })
}

/// An error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
