//! The shape of HTTP requests and answers: paths without their query, JSON bodies.

use agentsim_core::wire::{HttpRequest, HttpResponse};

use super::JSON_CONTENT_TYPE;

/// The path of a request without its query.
pub(super) fn path_of(request: &HttpRequest) -> &str {
    strip_query(request.path())
}

/// The path of an absolute URL (the same rule as [`HttpRequest::path`]) without its query.
pub(super) fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    strip_query(after_scheme.find('/').map_or("/", |i| &after_scheme[i..]))
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// The runtime id in `/v1/agent/{runtime}/task/register` (the caller matched the shape).
pub(super) fn runtime_of_task_path(path: &str) -> &str {
    let rest = path.strip_prefix("/v1/agent/").unwrap_or(path);
    rest.strip_suffix("/task/register").unwrap_or(rest)
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("wire types serialize")
}

pub(super) fn json_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".to_owned(), JSON_CONTENT_TYPE.as_bytes().to_vec())],
        body,
    }
}

pub(super) fn error_response(status: u16, error: &str) -> HttpResponse {
    HttpResponse { status, ..json_response(format!(r#"{{"error":"{error}"}}"#).into_bytes()) }
}
