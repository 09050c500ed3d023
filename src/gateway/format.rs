//! The backend calls as API Gateway makes them, and the backend's answers
//! read back: pure functions from a call's facts to an `http::Request`
//! (`http_proxy`: headers and the raw message; `lambda_proxy`: the Lambda
//! proxy event as JSON) and from a status, headers and body to an
//! [`Answer`].
//!
//! Owns: header names, values and order, the query string on `$connect`,
//! the Lambda event's fields, the Forbidden answer of a missing `$default`,
//! and the ids API Gateway puts in calls (request, message and trace ids).
//! Must not touch: sockets or the clock (times come in), which URL a
//! route calls (`service`), connections.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use serde_json::{json, Map, Value};

use super::events::ConnectInfo;
use crate::config::RequestFormat;

/// The facts of one call that every route shares.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The connection id (`R0oXAdfD0kwCH6w=`).
    pub id: &'a str,
    /// `gateway.api_id`.
    pub api_id: &'a str,
    /// `gateway.stage`.
    pub stage: &'a str,
    /// The WebSocket listener's `host:port` (`domainName`).
    pub domain: &'a str,
    /// The port clients connect to (`X-Forwarded-Port`).
    pub ws_port: u16,
    /// `https` when the WebSocket listener speaks TLS (`wss://`), else
    /// `http` (`X-Forwarded-Proto`).
    pub proto: &'static str,
    /// This call's request id.
    pub request_id: &'a str,
    /// `Root=1-…-…`.
    pub trace_id: &'a str,
    /// The client's address.
    pub source_ip: &'a str,
    /// The client's `User-Agent` from its upgrade, if it sent one.
    pub user_agent: Option<&'a str>,
    /// When the connection's `$connect` began, Unix ms.
    pub connected_at: u64,
    /// Now, Unix ms.
    pub now: u64,
}

/// What the call is for.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    Connect(&'a ConnectInfo),
    Message {
        route_key: &'a str,
        message_id: &'a str,
        text: bool,
        payload: &'a Bytes,
    },
    Disconnect {
        status: u16,
        reason: &'a str,
    },
}

impl Kind<'_> {
    /// The route key (`$connect`, `$disconnect`, or the message's).
    pub fn route_key(&self) -> &str {
        match self {
            Kind::Connect(_) => "$connect",
            Kind::Message { route_key, .. } => route_key,
            Kind::Disconnect { .. } => "$disconnect",
        }
    }
}

/// A backend's answer, whatever the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Sec-WebSocket-Protocol` of the answer (for `$connect`).
    pub subprotocol: Option<String>,
    pub body: Bytes,
}

/// The backend answered something the format cannot read (a
/// `lambda_proxy` body that is not the expected JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the backend's answer is not a Lambda proxy response")]
pub struct Unreadable;

/// The request for `kind` to `url`, in `format`.
pub fn request(
    format: RequestFormat,
    url: &Uri,
    call: &Call<'_>,
    kind: Kind<'_>,
) -> Request<Bytes> {
    match format {
        RequestFormat::HttpProxy => http_proxy(url, call, kind),
        RequestFormat::LambdaProxy => lambda_proxy(url, call, kind),
    }
}

/// `url` with `query` appended (after the URL's own, if it has one).
fn with_query(url: &Uri, query: Option<&str>) -> Uri {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return url.clone();
    };
    let mut parts = url.clone().into_parts();
    let path = url.path();
    let pq = match url.query() {
        Some(own) => format!("{path}?{own}&{q}"),
        None => format!("{path}?{q}"),
    };
    match pq.parse() {
        Ok(pq) => {
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).unwrap_or_else(|_| url.clone())
        }
        // A query that is no valid URI text is left off.
        Err(_) => url.clone(),
    }
}

/// `Host`: the integration URL's authority (`host:port` as written).
fn host_of(url: &Uri) -> &str {
    url.authority().map_or("", |a| a.as_str())
}

/// The headers every `http_proxy` call carries, in order.
fn common_headers(url: &Uri, call: &Call<'_>, user_agent: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Host", host_of(url).to_string()),
        ("connectionId", call.id.to_string()),
        ("X-Amzn-Apigateway-Api-Id", call.api_id.to_string()),
        ("X-Amzn-Trace-Id", call.trace_id.to_string()),
        ("X-Forwarded-For", call.source_ip.to_string()),
        ("X-Forwarded-Port", call.ws_port.to_string()),
        ("X-Forwarded-Proto", call.proto.to_string()),
        ("X-Real-Ip", call.source_ip.to_string()),
        ("User-Agent", user_agent.to_string()),
    ]
}

/// `AmazonAPIGateway_{api_id}`, the User-Agent of calls not on `$connect`
/// (and of `$connect` when the client sent none).
fn gateway_agent(call: &Call<'_>) -> String {
    format!("AmazonAPIGateway_{}", call.api_id)
}

fn build(
    method: Method,
    uri: Uri,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
) -> Request<Bytes> {
    let mut b = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        // A client's header value that is no valid header text (never the
        // ones made here) is left off.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            b = b.header(n, v);
        }
    }
    b.body(body).expect("a method, a URI and valid headers")
}

/// API Gateway's `HTTP_PROXY` integration: `POST {url}` (plus the client's
/// query on `$connect`), the connection in headers, the body empty on
/// `$connect`/`$disconnect` and the message on message routes.
pub fn http_proxy(url: &Uri, call: &Call<'_>, kind: Kind<'_>) -> Request<Bytes> {
    match kind {
        Kind::Connect(info) => {
            let agent = info
                .user_agent
                .clone()
                .unwrap_or_else(|| gateway_agent(call));
            let mut headers = common_headers(url, call, &agent);
            headers.extend(info.headers.iter().cloned());
            headers.push(("Content-Length", "0".into()));
            build(
                Method::POST,
                with_query(url, info.query.as_deref()),
                headers,
                Bytes::new(),
            )
        }
        Kind::Message { payload, .. } => {
            let mut headers = common_headers(url, call, &gateway_agent(call));
            headers.push(("Content-Length", payload.len().to_string()));
            build(Method::POST, url.clone(), headers, payload.clone())
        }
        Kind::Disconnect { .. } => {
            let mut headers = common_headers(url, call, &gateway_agent(call));
            headers.push(("Content-Length", "0".into()));
            build(Method::POST, url.clone(), headers, Bytes::new())
        }
    }
}

/// The query string as `queryStringParameters` (percent-decoded, `+` as
/// space; the last of a repeated name), `null` without one.
fn query_params(query: Option<&str>) -> Value {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Value::Null;
    };
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut map = Map::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k), Value::String(decode(v)));
    }
    Value::Object(map)
}

/// The Lambda proxy event of API Gateway WebSocket APIs as the JSON body
/// of `POST {url}`.
pub fn lambda_event(call: &Call<'_>, kind: Kind<'_>) -> Value {
    let event_type = match kind {
        Kind::Connect(_) => "CONNECT",
        Kind::Message { .. } => "MESSAGE",
        Kind::Disconnect { .. } => "DISCONNECT",
    };
    let mut ctx = json!({
        "routeKey": kind.route_key(),
        "eventType": event_type,
        "messageDirection": "IN",
        "stage": call.stage,
        "connectedAt": call.connected_at,
        "requestTimeEpoch": call.now,
        "requestId": call.request_id,
        "extendedRequestId": call.request_id,
        "domainName": call.domain,
        "connectionId": call.id,
        "apiId": call.api_id,
        "identity": {"sourceIp": call.source_ip, "userAgent": call.user_agent},
    });
    let mut event = json!({"requestContext": {}});
    match kind {
        Kind::Connect(info) => {
            let mut headers = Map::new();
            headers.insert("Host".into(), call.domain.into());
            for (n, v) in &info.headers {
                headers.insert((*n).into(), v.clone().into());
            }
            if let Some(ua) = &info.user_agent {
                headers.insert("User-Agent".into(), ua.clone().into());
            }
            headers.insert("X-Amzn-Trace-Id".into(), call.trace_id.into());
            headers.insert("X-Forwarded-For".into(), call.source_ip.into());
            headers.insert("X-Forwarded-Port".into(), call.ws_port.to_string().into());
            headers.insert("X-Forwarded-Proto".into(), call.proto.into());
            event["headers"] = Value::Object(headers);
            event["queryStringParameters"] = query_params(info.query.as_deref());
            event["isBase64Encoded"] = false.into();
        }
        Kind::Message {
            message_id,
            text,
            payload,
            ..
        } => {
            ctx["messageId"] = message_id.into();
            match std::str::from_utf8(payload).ok().filter(|_| text) {
                Some(s) => {
                    event["body"] = s.into();
                    event["isBase64Encoded"] = false.into();
                }
                None => {
                    event["body"] = STANDARD.encode(payload).into();
                    event["isBase64Encoded"] = true.into();
                }
            }
        }
        Kind::Disconnect { status, reason } => {
            ctx["disconnectStatusCode"] = status.into();
            ctx["disconnectReason"] = reason.into();
            event["isBase64Encoded"] = false.into();
        }
    }
    event["requestContext"] = ctx;
    event
}

/// `POST {url}` with [`lambda_event`] as its body.
pub fn lambda_proxy(url: &Uri, call: &Call<'_>, kind: Kind<'_>) -> Request<Bytes> {
    let body = Bytes::from(lambda_event(call, kind).to_string());
    let headers = vec![
        ("Host", host_of(url).to_string()),
        ("User-Agent", gateway_agent(call)),
        ("X-Amzn-Trace-Id", call.trace_id.to_string()),
        ("Content-Type", "application/json".into()),
        ("Content-Length", body.len().to_string()),
    ];
    build(Method::POST, url.clone(), headers, body)
}

/// Reads the backend's HTTP answer in `format`: for `http_proxy` the
/// status, `Sec-WebSocket-Protocol` and body as they are; for
/// `lambda_proxy` a 2xx carrying `{"statusCode", "headers"?, "body"?,
/// "isBase64Encoded"?}` (any other HTTP status is the answer's status).
pub fn answer(
    format: RequestFormat,
    status: u16,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, Unreadable> {
    let protocol = |h: Option<&HeaderValue>| {
        h.and_then(|v| v.to_str().ok())
            .filter(|p| is_token(p))
            .map(str::to_string)
    };
    if format == RequestFormat::HttpProxy || !(200..300).contains(&status) {
        return Ok(Answer {
            status,
            subprotocol: protocol(headers.get("sec-websocket-protocol")),
            body: if format == RequestFormat::HttpProxy {
                body
            } else {
                Bytes::new()
            },
        });
    }
    let v: Value = serde_json::from_slice(&body).map_err(|_| Unreadable)?;
    let status = v
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(Unreadable)?;
    let subprotocol = v.get("headers").and_then(Value::as_object).and_then(|h| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
            .and_then(|(_, v)| v.as_str())
            .filter(|p| is_token(p))
            .map(str::to_string)
    });
    let body = match v.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if v["isBase64Encoded"] == Value::Bool(true) => {
            Bytes::from(STANDARD.decode(s).map_err(|_| Unreadable)?)
        }
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    Ok(Answer {
        status,
        subprotocol,
        body,
    })
}

/// An RFC 7230 token (what a subprotocol name must be): the backend's
/// choice goes into the `101` only if it is one, so an answer cannot add
/// lines to it.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What a client gets for a message no route takes when there is no
/// `$default` (API Gateway's answer).
pub fn forbidden(id: &str, request_id: &str) -> String {
    json!({"message": "Forbidden", "connectionId": id, "requestId": request_id}).to_string()
}

/// A fresh id shaped like API Gateway's request and message ids (12
/// random bytes, URL-safe base64: 16 characters).
pub fn new_request_id() -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    URL_SAFE.encode(b)
}

/// A fresh `X-Amzn-Trace-Id` (`Root=1-{epoch seconds, hex}-{96 random
/// bits, hex}`) for a call at `now_ms`.
pub fn new_trace_id(now_ms: u64) -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("Root=1-{:08x}-{hex}", now_ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call<'static> {
        Call {
            id: "R0oXAdfD0kwCH6w=",
            api_id: "abc123",
            stage: "production",
            domain: "127.0.0.1:8080",
            ws_port: 8080,
            proto: "http",
            request_id: "req-1",
            trace_id: "Root=1-6b0dd3d9-3bbc0176afac4f7f8ad3d9e5",
            source_ip: "192.0.2.7",
            user_agent: Some("Mozilla/5.0"),
            connected_at: 1_796_040_000_000,
            now: 1_796_040_000_500,
        }
    }

    fn connect_info() -> ConnectInfo {
        ConnectInfo {
            query: Some("ws_token=ab%20c&channel=lobby".into()),
            headers: vec![
                ("Cookie", "sessionid=xyz".into()),
                ("Origin", "http://127.0.0.1:8000".into()),
                ("Sec-WebSocket-Extensions", "permessage-deflate".into()),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
                ("Sec-WebSocket-Version", "13".into()),
            ],
            user_agent: Some("Mozilla/5.0".into()),
            source_ip: None,
        }
    }

    fn header<'a>(r: &'a Request<Bytes>, name: &str) -> Option<&'a str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn http_proxy_connect_carries_the_query_and_the_clients_upgrade_headers() {
        let url: Uri = "http://127.0.0.1:8000/ws/connect".parse().unwrap();
        let info = connect_info();
        let r = http_proxy(&url, &call(), Kind::Connect(&info));
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:8000/ws/connect?ws_token=ab%20c&channel=lobby"
        );
        for (name, want) in [
            ("host", "127.0.0.1:8000"),
            ("connectionid", "R0oXAdfD0kwCH6w="),
            ("x-amzn-apigateway-api-id", "abc123"),
            (
                "x-amzn-trace-id",
                "Root=1-6b0dd3d9-3bbc0176afac4f7f8ad3d9e5",
            ),
            ("x-forwarded-for", "192.0.2.7"),
            ("x-forwarded-port", "8080"),
            ("x-forwarded-proto", "http"),
            ("x-real-ip", "192.0.2.7"),
            ("user-agent", "Mozilla/5.0"),
            ("cookie", "sessionid=xyz"),
            ("origin", "http://127.0.0.1:8000"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("content-length", "0"),
        ] {
            assert_eq!(header(&r, name), Some(want), "{name}");
        }
        assert!(header(&r, "connection").is_none() && header(&r, "upgrade").is_none());
        assert!(r.body().is_empty());
        // No client User-Agent: the gateway's own.
        let info = ConnectInfo {
            user_agent: None,
            query: None,
            ..connect_info()
        };
        let r = http_proxy(&url, &call(), Kind::Connect(&info));
        assert_eq!(header(&r, "user-agent"), Some("AmazonAPIGateway_abc123"));
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:8000/ws/connect");
        // Behind a `wss://` listener the clients came over https.
        let tls = Call {
            proto: "https",
            ..call()
        };
        let r = http_proxy(&url, &tls, Kind::Connect(&info));
        assert_eq!(header(&r, "x-forwarded-proto"), Some("https"));
        let event: Value =
            serde_json::from_slice(lambda_proxy(&url, &tls, Kind::Connect(&info)).body()).unwrap();
        assert_eq!(event["headers"]["X-Forwarded-Proto"], "https");
        // The URL's own query stays first.
        let own: Uri = "http://b:1/c?x=1".parse().unwrap();
        let info = connect_info();
        let r = http_proxy(&own, &call(), Kind::Connect(&info));
        assert_eq!(r.uri().query(), Some("x=1&ws_token=ab%20c&channel=lobby"));
    }

    #[test]
    fn http_proxy_messages_and_disconnects_use_the_gateways_agent() {
        let url: Uri = "http://backend:8000/ws/default".parse().unwrap();
        let payload = Bytes::from_static(br#"{"action":"x"}"#);
        let r = http_proxy(
            &url,
            &call(),
            Kind::Message {
                route_key: "$default",
                message_id: "m",
                text: true,
                payload: &payload,
            },
        );
        assert_eq!(r.uri().to_string(), "http://backend:8000/ws/default");
        assert_eq!(header(&r, "host"), Some("backend:8000"));
        assert_eq!(header(&r, "user-agent"), Some("AmazonAPIGateway_abc123"));
        assert_eq!(header(&r, "content-length"), Some("14"));
        assert_eq!(r.body(), &payload);
        assert!(header(&r, "cookie").is_none());
        let r = http_proxy(
            &url,
            &call(),
            Kind::Disconnect {
                status: 1001,
                reason: "x",
            },
        );
        assert_eq!(header(&r, "content-length"), Some("0"));
        assert_eq!(header(&r, "connectionid"), Some("R0oXAdfD0kwCH6w="));
        assert!(r.body().is_empty());
    }

    #[test]
    fn lambda_proxy_events_have_api_gateways_fields() {
        let info = connect_info();
        let e = lambda_event(&call(), Kind::Connect(&info));
        let c = &e["requestContext"];
        assert_eq!(c["routeKey"], "$connect");
        assert_eq!(c["eventType"], "CONNECT");
        assert_eq!(c["connectionId"], "R0oXAdfD0kwCH6w=");
        assert_eq!(c["connectedAt"], 1_796_040_000_000u64);
        assert_eq!(c["stage"], "production");
        assert_eq!(c["apiId"], "abc123");
        assert_eq!(c["domainName"], "127.0.0.1:8080");
        assert_eq!(c["requestId"], "req-1");
        assert_eq!(c["identity"]["sourceIp"], "192.0.2.7");
        assert_eq!(c["identity"]["userAgent"], "Mozilla/5.0");
        assert_eq!(e["headers"]["Cookie"], "sessionid=xyz");
        assert_eq!(e["queryStringParameters"]["ws_token"], "ab c");
        assert_eq!(e["queryStringParameters"]["channel"], "lobby");

        let bin = Bytes::from_static(&[0xff, 0x00]);
        let e = lambda_event(
            &call(),
            Kind::Message {
                route_key: "sendMessage",
                message_id: "mid",
                text: false,
                payload: &bin,
            },
        );
        assert_eq!(e["requestContext"]["eventType"], "MESSAGE");
        assert_eq!(e["requestContext"]["routeKey"], "sendMessage");
        assert_eq!(e["requestContext"]["messageId"], "mid");
        assert_eq!(e["body"], "/wA=");
        assert_eq!(e["isBase64Encoded"], true);
        let text = Bytes::from_static(b"hi");
        let e = lambda_event(
            &call(),
            Kind::Message {
                route_key: "$default",
                message_id: "mid",
                text: true,
                payload: &text,
            },
        );
        assert_eq!(
            (e["body"].as_str(), &e["isBase64Encoded"]),
            (Some("hi"), &Value::Bool(false))
        );

        let e = lambda_event(
            &call(),
            Kind::Disconnect {
                status: 1006,
                reason: "Connection lost",
            },
        );
        assert_eq!(e["requestContext"]["eventType"], "DISCONNECT");
        assert_eq!(e["requestContext"]["disconnectStatusCode"], 1006);
        assert_eq!(e["requestContext"]["disconnectReason"], "Connection lost");

        let url: Uri = "http://l:9/fn".parse().unwrap();
        let r = lambda_proxy(&url, &call(), Kind::Connect(&info));
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(
            header(&r, "content-length"),
            Some(r.body().len().to_string().as_str())
        );
        let back: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(back["requestContext"]["routeKey"], "$connect");
    }

    #[test]
    fn answers_are_read_in_either_format() {
        let mut h = HeaderMap::new();
        h.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        let a = answer(RequestFormat::HttpProxy, 200, &h, Bytes::from_static(b"{}")).unwrap();
        assert_eq!((a.status, a.subprotocol.as_deref()), (200, Some("chat")));
        assert_eq!(a.body, Bytes::from_static(b"{}"));
        let none = HeaderMap::new();
        let lambda = |body: &'static str| {
            answer(
                RequestFormat::LambdaProxy,
                200,
                &none,
                Bytes::from_static(body.as_bytes()),
            )
        };
        let a = lambda(r#"{"statusCode":403,"body":"no"}"#).unwrap();
        assert_eq!((a.status, &a.body[..]), (403, &b"no"[..]));
        let a = lambda(r#"{"statusCode":200,"headers":{"Sec-WebSocket-Protocol":"v2"}}"#).unwrap();
        assert_eq!((a.status, a.subprotocol.as_deref()), (200, Some("v2")));
        let a = lambda(r#"{"statusCode":200,"body":"/wA=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(&a.body[..], &[0xff, 0x00]);
        let a = lambda(r#"{"statusCode":200,"headers":{"Sec-WebSocket-Protocol":"a\r\nX: y"}}"#)
            .unwrap();
        assert_eq!(a.subprotocol, None, "not a token: left out");
        assert_eq!(lambda("nope"), Err(Unreadable));
        assert_eq!(lambda(r#"{"body":"x"}"#), Err(Unreadable));
        // A failed HTTP call is its own status.
        let a = answer(
            RequestFormat::LambdaProxy,
            500,
            &none,
            Bytes::from_static(b"x"),
        )
        .unwrap();
        assert_eq!(a.status, 500);
    }

    #[test]
    fn ids_look_like_api_gateways() {
        assert_eq!(new_request_id().len(), 16);
        assert_ne!(new_request_id(), new_request_id());
        let t = new_trace_id(1_796_040_000_000);
        assert!(t.starts_with("Root=1-6b0d6540-"), "{t}");
        assert_eq!(t.len(), "Root=1-".len() + 8 + 1 + 24);
        let f: Value = serde_json::from_str(&forbidden("id=", "r")).unwrap();
        assert_eq!(
            f,
            json!({"message":"Forbidden","connectionId":"id=","requestId":"r"})
        );
    }
}
