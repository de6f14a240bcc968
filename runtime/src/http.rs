//! Carrying out one [`Command::Send`](agentsim_core::Command::Send) with a real HTTP client:
//! the request exactly as core built it, one attempt (no HTTP-level retries, spec section 2),
//! bounded by the timeout the command names, the response handed back as raw bytes for core to
//! judge.

use std::time::Duration;

use agentsim_core::wire::{HttpRequest, HttpResponse, Method};
use agentsim_core::RequestFailure;
use reqwest::header::{HeaderName, HeaderValue};

/// The most bytes of a response body the runtime reads; a longer body fails the request as a
/// connection failure (the backend misbehaved) instead of filling memory.
pub const MAX_RESPONSE_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Sends `request` and reads its whole response, within `timeout`.
pub async fn exchange(
    client: &reqwest::Client,
    request: &HttpRequest,
    timeout: Duration,
) -> Result<HttpResponse, RequestFailure> {
    match tokio::time::timeout(timeout, round_trip(client, request)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(RequestFailure::Timeout),
    }
}

async fn round_trip(
    client: &reqwest::Client,
    request: &HttpRequest,
) -> Result<HttpResponse, RequestFailure> {
    let method = match request.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let mut builder = client.request(method, &request.url);
    // Headers exactly as core built them, its `Content-Type` included.
    for (name, value) in &request.headers {
        // Core builds only valid header names and values; one that is not is a refused send.
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| RequestFailure::Connection)?;
        let value = HeaderValue::from_str(value).map_err(|_| RequestFailure::Connection)?;
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let mut response = builder.send().await.map_err(failure)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
            return Err(RequestFailure::Connection);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse { status, headers, body })
}

fn failure(error: reqwest::Error) -> RequestFailure {
    if error.is_timeout() {
        RequestFailure::Timeout
    } else {
        RequestFailure::Connection
    }
}
