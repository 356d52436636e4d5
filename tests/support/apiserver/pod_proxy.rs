//! The `pods/proxy` subresource: forwards a request to the target the test registered for the pod.
//!
//! The forwarding speaks plain HTTP/1.0 over TCP (one request per connection, body until the server
//! closes), which every test backend understands.

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Forwards `method path_and_query` with `body` to `target` (`http://host:port`) and returns its answer,
/// or a description of why the target could not be reached.
pub async fn forward(
    target: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Response, String> {
    let authority = target
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported proxy target {target:?} (only http:// targets)"))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("dial tcp {authority}: {e}"))?;
    let mut request = format!(
        "{method} {path_and_query} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write to {authority}: {e}"))?;
    stream
        .write_all(&body)
        .await
        .map_err(|e| format!("write to {authority}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read from {authority}: {e}"))?;
    parse_response(&raw).ok_or_else(|| format!("malformed HTTP response from {authority}"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = Bytes::copy_from_slice(&raw[split + 4..]);
    let mut lines = head.split("\r\n");
    let code: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut response = (StatusCode::from_u16(code).ok()?, body).into_response();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-type")
            && let Ok(value) = HeaderValue::from_str(value.trim())
        {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
    }
    Some(response)
}
