//! The `@connections` management API on the admin listener, as botocore's
//! `apigatewaymanagementapi` models it: `POST|GET|DELETE
//! /{stage}/@connections/{id}` (also `%40connections`, and without the
//! stage), and wsedge's broadcast extension `PUT|DELETE
//! /{stage}/@connections/{id}/channels/{name}`.
//!
//! Owns: recognising these paths, reading the body (at most
//! [`MAX_POST_BYTES`]), authentication (a SigV4 signature checked by
//! [`Verifier`](super::sigv4::Verifier), or the admin bearer key), the
//! operations on the hub's handle, and AWS's error shape (`x-amzn-ErrorType`
//! and `{"message": …}`). Must not touch: the admin plane's other routes
//! or its JSON `Content-Type` rule (boto3 sends raw bodies without one;
//! a browser cannot make a valid signature, so the rule has nothing to
//! guard here), the cores' state.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use super::conn_id::GatewayId;
use super::service::Gateway;
use super::sigv4::SignedRequest;
use crate::cluster::request::Asked;
use crate::cluster::wire::{Op, Outcome};
use crate::hub::HubError;
use crate::inbox::{Membership, Posted};

/// Largest `POST` body: one message (API Gateway's limit, 128 KiB).
pub const MAX_POST_BYTES: usize = 128 * 1024;

/// An answer of this API.
pub type Reply = Response<Bytes>;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `@connections/{id}` (the id percent-decoded).
    Conn(String),
    /// `@connections/{id}/channels/{name}`.
    Channel(String, String),
}

/// The target of `path` (raw, as sent), if it is one of this API's.
pub fn parse_path(path: &str, stage: &str) -> Option<Target> {
    let mut segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    if segs.first() == Some(&stage) {
        segs.remove(0);
    }
    let first = segs.first()?;
    if !(*first == "@connections" || first.eq_ignore_ascii_case("%40connections")) {
        return None;
    }
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    match segs[1..] {
        [id] if !id.is_empty() => Some(Target::Conn(decode(id)?)),
        [id, "channels", name] if !id.is_empty() && !name.is_empty() => {
            Some(Target::Channel(decode(id)?, decode(name)?))
        }
        _ => None,
    }
}

/// An AWS-shaped error: `x-amzn-ErrorType: name` and `{"message": …}`.
pub fn aws_error(status: u16, name: &str, message: &str) -> Reply {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("x-amzn-ErrorType", name)
        .body(Bytes::from(
            serde_json::json!({ "message": message }).to_string(),
        ))
        .expect("valid status and headers")
}

fn empty(status: u16) -> Reply {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Bytes::new())
        .expect("valid status")
}

fn gone() -> Reply {
    aws_error(410, "GoneException", "the connection is gone")
}

fn limit_exceeded() -> Reply {
    aws_error(
        429,
        "LimitExceededException",
        "the connection's queue is full; nothing was queued, retry later",
    )
}

/// Answers one request whose path [`parse_path`] recognised. `admin_key`
/// is the admin plane's bearer key; `body_timeout` bounds the body's
/// arrival.
pub async fn serve(
    req: Request<Incoming>,
    target: Target,
    gw: Arc<Gateway>,
    admin_key: Option<String>,
    body_timeout: Duration,
) -> Reply {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        let mut r = aws_error(
            413,
            "PayloadTooLargeException",
            "the message is over 128 KiB",
        );
        // The rest of the body is not read: no next request on it.
        r.headers_mut()
            .insert("Connection", http::HeaderValue::from_static("close"));
        r
    };
    if declared.is_some_and(|n| n > MAX_POST_BYTES as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(
        body_timeout,
        Limited::new(body, MAX_POST_BYTES).collect(),
    )
    .await
    {
        Err(_) => {
            return aws_error(
                408,
                "RequestTimeoutException",
                "the body did not arrive in time",
            )
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(_)) => return aws_error(400, "BadRequestException", "could not read the body"),
        Ok(Ok(c)) => c.to_bytes(),
    };
    if let Err(why) = authenticate(&gw, admin_key.as_deref(), &parts, &body) {
        return aws_error(403, "ForbiddenException", why);
    }
    let method = parts.method.clone();
    let gw2 = gw.clone();
    // The operations wait on a core's answer (up to admin.query_timeout).
    tokio::task::spawn_blocking(move || operate(&gw2, &method, target, body))
        .await
        .unwrap_or_else(|_| aws_error(500, "InternalServerErrorException", "internal error"))
}

/// A valid SigV4 signature (when keys are configured), or the admin
/// bearer key; with neither configured the API is as open as the admin
/// plane without a key (loopback only). The error is the 403's message.
fn authenticate(
    gw: &Gateway,
    admin_key: Option<&str>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<(), &'static str> {
    let forbidden = Err;
    let auth = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(key) = admin_key {
        let bearer = auth.and_then(|a| a.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), key.as_bytes())) {
            return Ok(());
        }
    }
    if let Some(v) = &gw.verifier {
        if auth.is_some_and(|a| a.starts_with("AWS4-")) {
            let headers: Vec<(&str, &[u8])> = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect();
            let req = SignedRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                headers: &headers,
                body,
            };
            return match v.verify(&req, SystemTime::now()) {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::debug!(reason = %e, "@connections signature refused");
                    forbidden("the request signature is not valid")
                }
            };
        }
        return forbidden("the request is not signed");
    }
    if admin_key.is_some() {
        return forbidden("missing or wrong bearer key");
    }
    Ok(())
}

/// Compares without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The operation, on a thread that may wait for a core: on this node's
/// connection here, on another node's by asking that node over the
/// broker (clustered) and waiting for its answer.
fn operate(gw: &Gateway, method: &Method, target: Target, body: Bytes) -> Reply {
    let (id_text, channel) = match target {
        Target::Conn(id) => (id, None),
        Target::Channel(id, ch) => (id, Some(ch)),
    };
    let Ok(gid) = id_text.parse::<GatewayId>() else {
        return aws_error(400, "BadRequestException", "invalid connection id");
    };
    let conn = gid.conn();
    let op = match (method, channel) {
        (&Method::POST, None) => Op::GatewayPost {
            conn,
            text: std::str::from_utf8(&body).is_ok(),
            body,
        },
        (&Method::GET, None) => Op::GatewayGet { conn },
        (&Method::DELETE, None) => Op::GatewayDelete { conn },
        (&Method::PUT | &Method::DELETE, Some(channel)) => Op::GatewayMembership {
            conn,
            channel,
            join: method == Method::PUT,
        },
        _ => return aws_error(405, "MethodNotAllowedException", "method not allowed here"),
    };
    let done = match &op {
        Op::GatewayPost { .. } => 200,
        _ => 204,
    };
    let outcome = if gid.instance() == gw.instance {
        perform(gw, op)
    } else if gw.hub.node().is_some() {
        // Another node's connection: only that node knows whether it is
        // still there.
        match gw.hub.ask_node(gid.instance(), op) {
            Asked::Answer(o) => o,
            Asked::Unavailable => {
                return aws_error(
                    429,
                    "LimitExceededException",
                    "the connection's node cannot be reached now (cluster link down or busy); retry later",
                )
            }
            Asked::TimedOut => {
                return aws_error(
                    504,
                    "InternalServerErrorException",
                    "the connection's node did not answer in time; whether it was done is unknown",
                )
            }
        }
    } else {
        // Another instance's id (an earlier run): gone here.
        Outcome::Gone
    };
    match outcome {
        Outcome::Done => empty(done),
        Outcome::Info(json) => Response::builder()
            .status(200)
            .header("Content-Type", "application/json")
            .body(Bytes::from(json))
            .expect("valid status"),
        Outcome::Gone => gone(),
        Outcome::Full | Outcome::Busy => limit_exceeded(),
        Outcome::InvalidChannel => aws_error(400, "BadRequestException", "invalid channel name"),
        Outcome::TooManyChannels => aws_error(
            429,
            "LimitExceededException",
            "the connection is in hub.max_subscriptions channels",
        ),
    }
}

/// One `@connections` operation on this node's connection: what the
/// local path does, and what another node's request is answered with.
/// Waits on a core (up to `admin.query_timeout`): call it off the async
/// workers.
pub fn perform(gw: &Gateway, op: Op) -> Outcome {
    let conn = match &op {
        Op::GatewayPost { conn, .. }
        | Op::GatewayGet { conn }
        | Op::GatewayDelete { conn }
        | Op::GatewayMembership { conn, .. }
        | Op::Send { conn, .. }
        | Op::Close { conn, .. } => *conn,
    };
    let Some(gid) = GatewayId::new(gw.instance, conn) else {
        return Outcome::Gone;
    };
    if gw.registry.get(gid).is_none() {
        return Outcome::Gone;
    }
    let busy = |e: HubError| match e {
        HubError::Busy => Outcome::Busy,
        _ => Outcome::Gone,
    };
    match op {
        Op::GatewayPost { text, body, .. } => {
            let frame = crate::hub::protocol::data_frame(text, &body);
            match gw.hub.post(conn, frame) {
                Ok(Posted::Queued) => {
                    gw.registry.touch(gid, super::registry::now_ms());
                    Outcome::Done
                }
                Ok(Posted::Full) => Outcome::Full,
                Ok(Posted::Gone) => Outcome::Gone,
                Err(e) => busy(e),
            }
        }
        Op::GatewayGet { .. } => match gw.registry.get(gid) {
            Some(info) => Outcome::Info(info.to_json().to_string()),
            None => Outcome::Gone,
        },
        Op::GatewayDelete { .. } => {
            match gw
                .hub
                .disconnect(conn, crate::protocol::close::code::NORMAL)
            {
                Ok(()) => Outcome::Done,
                Err(e) => busy(e),
            }
        }
        Op::GatewayMembership { channel, join, .. } => {
            match gw.hub.membership(conn, &channel, join) {
                Ok(Membership::Done) => Outcome::Done,
                Ok(Membership::Gone) => Outcome::Gone,
                Ok(Membership::InvalidChannel) => Outcome::InvalidChannel,
                Ok(Membership::TooManyChannels) => Outcome::TooManyChannels,
                Err(e) => busy(e),
            }
        }
        // Not gateway operations (the node's responder sends these to
        // the hub).
        Op::Send { .. } | Op::Close { .. } => Outcome::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn botocores_paths_are_recognised() {
        let conn = |s: &str| Some(Target::Conn(s.to_string()));
        assert_eq!(
            parse_path("/production/@connections/R0oX%3D", "production"),
            conn("R0oX=")
        );
        assert_eq!(
            parse_path("/production/%40connections/abc", "production"),
            conn("abc")
        );
        assert_eq!(parse_path("/@connections/abc", "production"), conn("abc"));
        assert_eq!(parse_path("/%40connections/abc", "dev"), conn("abc"));
        assert_eq!(
            parse_path("/dev/@connections/a/channels/room%3A1", "dev"),
            Some(Target::Channel("a".into(), "room:1".into()))
        );
        for other in [
            "/production/@connections/",
            "/production/@connections",
            "/other/@connections/abc",
            "/api/connections/abc",
            "/production/@connections/a/b",
            "",
        ] {
            assert_eq!(parse_path(other, "production"), None, "{other}");
        }
    }

    #[test]
    fn errors_carry_the_aws_error_type() {
        let r = gone();
        assert_eq!(r.status(), 410);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "GoneException");
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert!(v["message"].is_string());
    }
}
