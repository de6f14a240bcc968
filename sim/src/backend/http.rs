//! The shape of HTTP requests and answers: paths without their query, JSON bodies.

use agentsim_core::wire::{self, HttpRequest, HttpResponse};

use super::JSON_CONTENT_TYPE;

/// The path of a request without its query.
pub(super) fn path_of(request: &HttpRequest) -> &str {
    strip_query(request.path())
}

/// The path of an absolute URL without its query.
pub(super) fn url_path(url: &str) -> &str {
    strip_query(wire::url_path(url))
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
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
