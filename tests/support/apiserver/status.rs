//! `Status` bodies, shaped as the API server sends them for failures.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A `meta/v1` `Status` object with `status: Failure`.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    body
}

/// An HTTP response carrying a failure `Status`.
pub fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status(code, reason, message, details),
    )
}

/// An HTTP response with a JSON body.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut response = (code, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 404 for a missing object: `services "web" not found`.
pub fn not_found(group: &str, plural: &str, name: &str) -> Response {
    failure(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", qualified(group, plural)),
        Some(json!({"name": name, "group": group, "kind": plural})),
    )
}

/// 404 for a path nothing is served at.
pub fn no_route() -> Response {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// 400 with `reason: BadRequest`.
pub fn bad_request(message: &str) -> Response {
    failure(400, "BadRequest", message, None)
}

/// The `Expired` status an expired watch ends with (sent as an `ERROR` watch event, HTTP 200).
pub fn expired(message: &str) -> Value {
    status(410, "Expired", message, None)
}

/// `plural.group`, or `plural` for the core group, as messages name resources.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}
