//! The `pods/exec` subresource over WebSocket, as kube's client speaks it: the `v5.channel.k8s.io` or
//! `v4.channel.k8s.io` subprotocol, stdout on channel 1, stderr on channel 2, and the exit `Status`
//! (JSON) on channel 3, after which the server closes the connection. What a command prints is set by
//! the test ([`super::ApiServer::set_exec_reply`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::status::bad_request;

/// What a command run through `pods/exec` prints and how it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecReply {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its exit code (0: `Status` `Success`; otherwise `Failure`, reason `NonZeroExitCode`).
    pub exit_code: i32,
}

impl ExecReply {
    /// A command that prints `stdout` and exits 0.
    pub fn ok(stdout: &str) -> ExecReply {
        ExecReply {
            stdout: stdout.to_string(),
            ..ExecReply::default()
        }
    }

    /// A command that prints `stderr` and exits with `code`.
    pub fn fail(code: i32, stderr: &str) -> ExecReply {
        ExecReply {
            stderr: stderr.to_string(),
            exit_code: code,
            ..ExecReply::default()
        }
    }

    /// The reply for a command the container does not have, as the container runtime reports it.
    pub fn not_found(command: &str) -> ExecReply {
        ExecReply {
            stdout: String::new(),
            stderr: format!(
                "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{command}\": executable file not found in $PATH: unknown\r\n"
            ),
            exit_code: 126,
        }
    }

    /// The `Status` sent on channel 3.
    fn status(&self, command: &[String]) -> serde_json::Value {
        if self.exit_code == 0 {
            json!({"metadata": {}, "status": "Success"})
        } else {
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {}",
                    command.join(" "),
                    self.exit_code
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": self.exit_code.to_string()}]},
            })
        }
    }
}

/// The subprotocols the server accepts, in its order of preference.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Upgrades `request` to a WebSocket speaking one of `protocols` (the first the client also offers)
/// and sends `reply` for `command`.
pub fn serve(
    mut request: Request,
    protocols: &[&'static str],
    command: Vec<String>,
    reply: ExecReply,
) -> Response {
    let headers = request.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return bad_request("exec needs a WebSocket (or SPDY) upgrade request");
    };
    if !upgrade {
        return bad_request("exec needs a WebSocket (or SPDY) upgrade request");
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    let Some(protocol) = protocols
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
    else {
        return bad_request(&format!(
            "none of the offered subprotocols {offered:?} is supported"
        ));
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let framed = |channel: u8, data: &[u8]| {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(data);
            Message::binary(frame)
        };
        for chunk in reply.stdout.as_bytes().chunks(16 * 1024) {
            if ws.send(framed(1, chunk)).await.is_err() {
                return;
            }
        }
        for chunk in reply.stderr.as_bytes().chunks(16 * 1024) {
            if ws.send(framed(2, chunk)).await.is_err() {
                return;
            }
        }
        let status = reply.status(&command).to_string();
        let _ = ws.send(framed(3, status.as_bytes())).await;
        let _ = ws.close(None).await;
    });
    let mut response = Body::empty().into_response();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    response
}
