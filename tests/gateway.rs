//! Gateway mode over real sockets: a mock backend (a raw `TcpListener`
//! speaking HTTP/1.1, recording every call) behind wsedge, WebSocket
//! clients in front, the `@connections` API signed with SigV4 as boto3
//! signs it. What API Gateway applications (the Django package
//! `django-aws-api-gateway-websockets`) rely on: `$connect` decides the
//! upgrade with the headers and query they read, messages reach their
//! route in order, and every accepted connection gets exactly one
//! `$disconnect`, whatever ended it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;
use wsedge::config::GatewayRoute;
use wsedge::{Config, Server};

/// One call the backend received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    /// Path and query, as sent.
    target: String,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    fn route(&self) -> &str {
        let path = self.target.split('?').next().unwrap_or("");
        path.rsplit('/').next().unwrap_or("")
    }
    fn conn(&self) -> &str {
        self.header("connectionid").unwrap_or("")
    }
}

/// What the backend answers: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);
type Handler = Arc<dyn Fn(&Call) -> Answer + Send + Sync>;

/// A mock backend on a loopback port: one thread per connection, one
/// request per connection (`Connection: close`), every call recorded.
struct Backend {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    down: Arc<AtomicBool>,
}

impl Backend {
    fn start(handler: impl Fn(&Call) -> Answer + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let b = Backend {
            addr,
            calls: Arc::default(),
            down: Arc::default(),
        };
        serve(listener, Arc::new(handler), b.calls.clone(), b.down.clone());
        b
    }

    fn base(&self) -> String {
        format!("http://{}/ws/", self.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn on(&self, route: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.route() == route)
            .collect()
    }

    fn disconnects_of(&self, id: &str) -> usize {
        self.on("disconnect")
            .iter()
            .filter(|c| c.conn() == id)
            .count()
    }
}

fn serve(
    listener: TcpListener,
    handler: Handler,
    calls: Arc<Mutex<Vec<Call>>>,
    down: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if down.load(Ordering::Acquire) {
                // Down: the listener is about to go; refuse by closing.
                drop(stream);
                continue;
            }
            let (handler, calls) = (handler.clone(), calls.clone());
            std::thread::spawn(move || answer_one(stream, &*handler, &calls));
        }
    });
}

fn answer_one(
    mut s: TcpStream,
    handler: &(dyn Fn(&Call) -> Answer + Send + Sync),
    calls: &Mutex<Vec<Call>>,
) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = buf[..head_len].to_vec();
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    req.parse(&head).unwrap();
    let headers: HashMap<String, String> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let call = Call {
        method: req.method.unwrap().to_string(),
        target: req.path.unwrap().to_string(),
        headers,
        body: buf[head_len..head_len + len].to_vec(),
    };
    calls.lock().unwrap().push(call.clone());
    let (status, extra, body) = handler(&call);
    let mut resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    let _ = s.write_all(resp.as_bytes());
    let _ = s.write_all(&body);
}

fn ok(_: &Call) -> Answer {
    (200, vec![], b"{}".to_vec())
}

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A gateway server in front of `backend`, with the admin listener.
fn gateway_config(backend: &Backend) -> Config {
    let mut cfg = config(2);
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.gateway.backend = Some(backend.base());
    cfg.gateway.api_id = "abc123".into();
    cfg.gateway.access_key_id = Some(AKID.into());
    cfg.gateway.secret_access_key = Some(SECRET.into());
    cfg.gateway.integration_timeout = Duration::from_secs(5);
    cfg.gateway.shutdown_timeout = Duration::from_secs(20);
    cfg
}

/// A client of `/production` with the headers a browser (and the Django
/// package) sends; its read timeout bounded.
fn client(
    server: &Server,
    query: &str,
    extra: &[(&str, &str)],
) -> Result<(Client, tungstenite::handshake::client::Response), tungstenite::Error> {
    let url = format!("ws://{}/production{query}", server.local_addr());
    let mut req = url.into_client_request().unwrap();
    let base = [
        ("Origin", "http://127.0.0.1:8000"),
        ("Cookie", "sessionid=s3cr3t"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("User-Agent", "gateway-test/1.0"),
    ];
    for (k, v) in base.iter().chain(extra) {
        let name: http::HeaderName = k.parse().unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    let (ws, resp) = tungstenite::connect(req)?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    Ok((ws, resp))
}

/// The id the backend saw on the last `$connect`.
fn last_connect_id(backend: &Backend) -> String {
    backend.on("connect").last().unwrap().conn().to_string()
}

fn wait(limit_secs: u64, cond: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(limit_secs), cond)
}

#[test]
fn connect_carries_the_clients_headers_and_query_and_the_backends_subprotocol() {
    let backend = Backend::start(|_| {
        (
            200,
            vec![("Sec-WebSocket-Protocol", "chat.v2".into())],
            b"{}".to_vec(),
        )
    });
    let server = start(gateway_config(&backend));
    let (_ws, resp) = client(
        &server,
        "?ws_token=0123abcd&channel=lobby",
        &[("Sec-WebSocket-Protocol", "chat.v2")],
    )
    .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat.v2");
    let calls = backend.on("connect");
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.method, "POST");
    assert_eq!(c.target, "/ws/connect?ws_token=0123abcd&channel=lobby");
    let id = c.conn();
    assert_eq!(id.len(), 16, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
        "{id}"
    );
    let host = backend.addr.to_string();
    for (name, want) in [
        ("host", host.as_str()),
        ("x-amzn-apigateway-api-id", "abc123"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-port", &server.local_addr().port().to_string()),
        ("user-agent", "gateway-test/1.0"),
        ("origin", "http://127.0.0.1:8000"),
        ("cookie", "sessionid=s3cr3t"),
        ("sec-websocket-extensions", "permessage-deflate"),
        ("sec-websocket-version", "13"),
        ("content-length", "0"),
    ] {
        assert_eq!(c.header(name), Some(want), "{name}: {:?}", c.headers);
    }
    assert!(c.header("sec-websocket-key").is_some_and(|k| k.len() == 24));
    assert!(c
        .header("x-amzn-trace-id")
        .is_some_and(|t| t.starts_with("Root=1-")));
    assert!(
        c.header("upgrade").is_none(),
        "hop-by-hop headers are not passed"
    );
    assert!(c.body.is_empty());
}

#[test]
fn a_refused_connect_passes_the_backends_status_and_gets_no_disconnect() {
    let backend = Backend::start(|c| {
        if c.route() == "connect" {
            (403, vec![], b"Permission Denied".to_vec())
        } else {
            ok(c)
        }
    });
    let server = start(gateway_config(&backend));
    match client(&server, "", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|r| r.1.status())),
    }
    let id = last_connect_id(&backend);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(backend.disconnects_of(&id), 0);
    let refused = server
        .stats()
        .handshake_failures(wsedge::error::Rejection::Refused(
            wsedge::admission::Refusal::Backend { status: 403 },
        ));
    assert_eq!(refused, 1, "counted");
}

#[test]
fn an_unreachable_backend_is_502_and_a_slow_one_504() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(1);
    cfg.gateway.backend = Some(format!("http://{closed}/ws/"));
    let server = start(cfg);
    match client(&server, "", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 502),
        other => panic!("expected 502, got {:?}", other.map(|r| r.1.status())),
    }
    let slow = Backend::start(|c| {
        std::thread::sleep(Duration::from_secs(3));
        ok(c)
    });
    let mut cfg = gateway_config(&slow);
    cfg.gateway.integration_timeout = Duration::from_millis(300);
    let server = start(cfg);
    match client(&server, "", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 504),
        other => panic!("expected 504, got {:?}", other.map(|r| r.1.status())),
    }
}

#[test]
fn messages_take_their_route_in_order_and_two_way_answers_come_back() {
    let backend = Backend::start(|c| match c.route() {
        "echo" => (200, vec![], [b"echo:".as_slice(), &c.body].concat()),
        _ => (200, vec![], b"{\"ignored\":true}".to_vec()),
    });
    let mut cfg = gateway_config(&backend);
    cfg.gateway.routes = vec![
        GatewayRoute {
            key: "sendMessage".into(),
            url: format!("{}sendMessage", backend.base()),
            two_way: false,
        },
        GatewayRoute {
            key: "echo".into(),
            url: format!("{}echo", backend.base()),
            two_way: true,
        },
    ];
    let server = start(cfg);
    let (mut ws, _) = client(&server, "", &[]).unwrap();
    let id = last_connect_id(&backend);
    for i in 0..20 {
        ws.send(Message::text(format!(
            r#"{{"action":"sendMessage","n":{i}}}"#
        )))
        .unwrap();
    }
    ws.send(Message::text("not json")).unwrap();
    ws.send(Message::text(r#"{"action":"unknown"}"#)).unwrap();
    ws.send(Message::text(r#"{"action":"echo","x":1}"#))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::text(r#"echo:{"action":"echo","x":1}"#),
        "a two-way route's answer"
    );
    let sent = backend.on("sendMessage");
    assert_eq!(sent.len(), 20);
    for (i, c) in sent.iter().enumerate() {
        assert_eq!(
            c.body,
            format!(r#"{{"action":"sendMessage","n":{i}}}"#).as_bytes(),
            "in order"
        );
        assert_eq!(c.conn(), id);
        assert_eq!(c.header("user-agent"), Some("AmazonAPIGateway_abc123"));
        assert_eq!(
            c.header("content-length"),
            Some(c.body.len().to_string().as_str())
        );
    }
    let default: Vec<Vec<u8>> = backend.on("default").into_iter().map(|c| c.body).collect();
    assert_eq!(
        default,
        vec![b"not json".to_vec(), br#"{"action":"unknown"}"#.to_vec()]
    );

    // Without a $default route: API Gateway's Forbidden answer.
    let mut cfg = gateway_config(&backend);
    cfg.gateway.default_route = false;
    let server = start(cfg);
    let (mut ws, _) = client(&server, "", &[]).unwrap();
    let id = last_connect_id(&backend);
    ws.send(Message::text(r#"{"action":"nowhere"}"#)).unwrap();
    let v: serde_json::Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(v["message"], "Forbidden");
    assert_eq!(v["connectionId"], id.as_str());
    assert!(v["requestId"].is_string());
}

#[test]
fn a_slow_backend_slows_only_its_clients_reading_and_loses_nothing() {
    let backend = Backend::start(|c| {
        if c.route() == "default" {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok(c)
    });
    let mut cfg = gateway_config(&backend);
    cfg.gateway.max_in_flight = 2;
    let server = start(cfg);
    let (mut slow, _) = client(&server, "", &[]).unwrap();
    let n = 60;
    for i in 0..n {
        slow.send(Message::text(format!("m{i}"))).unwrap();
    }
    // Meanwhile another client's connect and message go through.
    let (mut other, _) = client(&server, "", &[]).unwrap();
    let other_id = last_connect_id(&backend);
    other.send(Message::text("other")).unwrap();
    assert!(wait(20, || backend.on("default").len() == n + 1));
    let calls = backend.on("default");
    let slow_bodies: Vec<Vec<u8>> = calls
        .iter()
        .filter(|c| c.conn() != other_id)
        .map(|c| c.body.clone())
        .collect();
    let want: Vec<Vec<u8>> = (0..n).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(slow_bodies, want, "every message, once, in order");
}

/// Sends a close frame and waits for the server's answer.
fn close(mut ws: Client) {
    let _ = ws.close(None);
    while ws.read().is_ok() {}
}

#[test]
fn every_accepted_connection_gets_exactly_one_disconnect_whatever_ends_it() {
    let backend = Backend::start(ok);
    let mut cfg = gateway_config(&backend);
    cfg.conn.ping_interval = Duration::from_millis(200);
    cfg.conn.pong_timeout = Duration::from_millis(200);
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    let mut ids = Vec::new();

    // A close handshake.
    let (ws, _) = client(&server, "", &[]).unwrap();
    ids.push(last_connect_id(&backend));
    close(ws);
    // The TCP connection dropped without a close frame.
    let (ws, _) = client(&server, "", &[]).unwrap();
    ids.push(last_connect_id(&backend));
    drop(ws);
    // A peer that never answers pings (raw socket: nothing is read).
    let raw = raw_gateway_upgrade(server.local_addr());
    ids.push(last_connect_id(&backend));
    // DeleteConnection through the management API (bearer-less, signed).
    let (ws_deleted, _) = client(&server, "", &[]).unwrap();
    let deleted = last_connect_id(&backend);
    ids.push(deleted.clone());
    let (status, _, _) = signed(
        admin,
        "DELETE",
        &format!("/production/@connections/{}", enc(&deleted)),
        b"",
        AKID,
        SECRET,
    );
    assert_eq!(status, 204);
    // A graceful shutdown, with one connection still open.
    let (ws_open, _) = client(&server, "", &[]).unwrap();
    ids.push(last_connect_id(&backend));

    assert!(
        wait(10, || ids[..4]
            .iter()
            .all(|id| backend.disconnects_of(id) == 1)),
        "{:?}",
        ids.iter()
            .map(|id| backend.disconnects_of(id))
            .collect::<Vec<_>>()
    );
    let shutdown = std::thread::spawn(move || {
        server.shutdown();
        server.join()
    });
    shutdown.join().unwrap().unwrap();
    // join returned: every $disconnect was sent before it did.
    for id in &ids {
        assert_eq!(backend.disconnects_of(id), 1, "{id}");
    }
    let d = backend.on("disconnect");
    assert_eq!(d.len(), ids.len(), "nothing else");
    for c in &d {
        assert_eq!(c.header("content-length"), Some("0"));
        assert_eq!(c.header("user-agent"), Some("AmazonAPIGateway_abc123"));
        assert!(c.body.is_empty());
    }
    drop((raw, ws_deleted, ws_open));
}

/// A raw gateway upgrade (101 read), the socket then left alone.
fn raw_gateway_upgrade(addr: SocketAddr) -> TcpStream {
    raw_upgraded_to(addr, "/production")
}

#[test]
fn a_backend_down_for_ten_seconds_still_gets_the_disconnect_once() {
    let backend = Backend::start(ok);
    let server = start(gateway_config(&backend));
    let (ws, _) = client(&server, "", &[]).unwrap();
    let id = last_connect_id(&backend);
    // Down: connections refused from now on.
    backend.down.store(true, Ordering::Release);
    // Let the accept loop see the flag: one last connection wakes it.
    let _ = TcpStream::connect(backend.addr);
    let went_down = Instant::now();
    drop(ws);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        backend.disconnects_of(&id),
        0,
        "nothing got through while down"
    );
    backend.down.store(false, Ordering::Release);
    assert!(
        wait(10, || backend.disconnects_of(&id) == 1),
        "arrived once the backend was back"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(backend.disconnects_of(&id), 1, "once");
    assert!(went_down.elapsed() >= Duration::from_secs(10));
}

/// Percent-encodes a connection id for a path (as botocore does: `=` →
/// `%3D`).
fn enc(id: &str) -> String {
    id.replace('=', "%3D")
}

/// A SigV4-signed request to the admin listener, as botocore signs it
/// (`host;x-amz-date`, service `execute-api`, us-east-1): (status, head,
/// body).
fn signed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    akid: &str,
    secret: &str,
) -> (u16, String, Vec<u8>) {
    let host = addr.to_string();
    let date = amz_now();
    let sig = sign(method, &host, path, body, &date, secret, "us-east-1");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{}/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}",
        &date[..8]
    );
    raw_http(
        addr,
        method,
        path,
        &[
            ("Host", &host),
            ("X-Amz-Date", &date),
            ("Authorization", &auth),
        ],
        body,
    )
}

fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let i = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&resp[..i]).into_owned();
    (status_of(&resp), head, resp[i..].to_vec())
}

fn amz_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iso = wsedge::gateway::registry::iso8601(secs * 1000);
    // 2026-11-30T12:00:00.000Z → 20261130T120000Z
    format!(
        "{}{}{}T{}{}{}Z",
        &iso[0..4],
        &iso[5..7],
        &iso[8..10],
        &iso[11..13],
        &iso[14..16],
        &iso[17..19]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// SigV4 for `execute-api` with `host;x-amz-date` signed, written from
/// the AWS documentation (checked against a botocore signature below).
fn sign(
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    date: &str,
    secret: &str,
    region: &str,
) -> String {
    let uri: String = path
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let canonical = format!(
        "{method}\n{uri}\n\nhost:{host}\nx-amz-date:{date}\n\nhost;x-amz-date\n{}",
        hex(&Sha256::digest(body))
    );
    let scope = format!("{}/{region}/execute-api/aws4_request", &date[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), &date[..8]);
    let k = hmac(&k, region);
    let k = hmac(&k, "execute-api");
    let k = hmac(&k, "aws4_request");
    hex(&hmac(&k, &to_sign))
}

#[test]
fn the_test_signer_agrees_with_botocore() {
    // botocore 1.35.99's signature of boto3's post_to_connection (the
    // vector of src/gateway/sigv4.rs).
    assert_eq!(
        sign(
            "POST",
            "127.0.0.1:56511",
            "/production/@connections/R0oXAdfD0kwCH6w%3D",
            b"hello",
            "20261130T120000Z",
            SECRET,
            "us-east-1"
        ),
        "da405c141b7606b56362c47948519a3e8cbc020ac0b8dfe83e94c3f47dc904b4"
    );
}

#[test]
fn connections_api_posts_gets_and_deletes_with_sigv4() {
    let backend = Backend::start(ok);
    let server = start(gateway_config(&backend));
    let admin = server.admin_addr().unwrap();
    let (mut ws, _) = client(&server, "", &[]).unwrap();
    let id = last_connect_id(&backend);
    let path = format!("/production/@connections/{}", enc(&id));

    // POST: text, then binary, each one message.
    let (status, _, body) = signed(admin, "POST", &path, br#"{"hello":"world"}"#, AKID, SECRET);
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(ws.read().unwrap(), Message::text(r#"{"hello":"world"}"#));
    let (status, _, _) = signed(
        admin,
        "POST",
        &path.replace('@', "%40"),
        &[0xff, 0x00, 0x01],
        AKID,
        SECRET,
    );
    assert_eq!(status, 200);
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0xff, 0x00, 0x01]));
    // Without the stage prefix too.
    let (status, _, _) = signed(
        admin,
        "POST",
        &format!("/@connections/{}", enc(&id)),
        b"3",
        AKID,
        SECRET,
    );
    assert_eq!(status, 200);
    assert_eq!(ws.read().unwrap(), Message::text("3"));

    // GET: botocore's GetConnectionResponse.
    let (status, _, body) = signed(admin, "GET", &path, b"", AKID, SECRET);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(v["identity"]["userAgent"], "gateway-test/1.0");
    for k in ["connectedAt", "lastActiveAt"] {
        let t = v[k].as_str().unwrap();
        assert_eq!(t.len(), "2026-11-30T12:00:00.000Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }

    // Over 128 KiB: 413, nothing sent.
    let big = vec![b'x'; 128 * 1024 + 1];
    let (status, head, _) = signed(admin, "POST", &path, &big, AKID, SECRET);
    assert_eq!(status, 413);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amzn-errortype: payloadtoolargeexception"),
        "{head}"
    );

    // A bad signature, a wrong key, no signature: 403 ForbiddenException.
    for (akid, secret) in [(AKID, "wrong-secret"), ("AKIDOTHER", SECRET)] {
        let (status, head, body) = signed(admin, "POST", &path, b"x", akid, secret);
        assert_eq!(status, 403);
        assert!(
            head.contains("x-amzn-errortype: ForbiddenException"),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["message"].is_string());
    }
    let host = admin.to_string();
    let (status, _, _) = raw_http(admin, "POST", &path, &[("Host", &host)], b"x");
    assert_eq!(status, 403);

    // DELETE: 204, the client sees the close, $disconnect follows.
    let (status, _, _) = signed(admin, "DELETE", &path, b"", AKID, SECRET);
    assert_eq!(status, 204);
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(wait(10, || backend.disconnects_of(&id) == 1));
    // Gone now: 410 GoneException (botocore maps it by this header).
    for method in ["POST", "GET", "DELETE"] {
        let (status, head, _) = signed(admin, method, &path, b"late", AKID, SECRET);
        assert_eq!(status, 410, "{method}");
        assert!(head.contains("x-amzn-errortype: GoneException"), "{head}");
    }
}

#[test]
fn a_thousand_gateway_connections_in_one_channel_get_one_publish() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("getrlimit");
    let n: usize = 1000.min((limit as usize).saturating_sub(300) / 2);
    let backend = Backend::start(ok);
    let mut cfg = gateway_config(&backend);
    cfg.conn.max_pending_bytes = 1 << 20;
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let (ws, _) = client(&server, "", &[]).unwrap();
        clients.push(ws);
    }
    let ids: Vec<String> = backend
        .on("connect")
        .iter()
        .map(|c| c.conn().to_string())
        .collect();
    assert_eq!(ids.len(), n);
    for id in &ids {
        let (status, _, _) = signed(
            admin,
            "PUT",
            &format!("/production/@connections/{}/channels/room%3A1", enc(id)),
            b"",
            AKID,
            SECRET,
        );
        assert_eq!(status, 204);
    }
    let (status, body) = http(
        admin,
        "POST",
        "/api/channels/room:1/publish",
        Some(r#"{"text":"all"}"#),
    );
    assert_eq!(status, 200, "{body}");
    for ws in &mut clients {
        let v: serde_json::Value =
            serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(v["channel"], "room:1");
        assert_eq!(v["data"]["text"], "all");
    }
    assert_eq!(server.stats().deliveries, n as u64);
    // Out of the channel: no longer reached.
    let (status, _, _) = signed(
        admin,
        "DELETE",
        &format!(
            "/production/@connections/{}/channels/room%3A1",
            enc(&ids[0])
        ),
        b"",
        AKID,
        SECRET,
    );
    assert_eq!(status, 204);
    let (status, body) = http(admin, "GET", "/api/channels/room:1", None);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["subscribers"], n - 1);
    // Membership ends with the connection.
    for ws in clients.drain(..10) {
        close(ws);
    }
    assert!(wait(10, || {
        let (_, body) = http(admin, "GET", "/api/channels/room:1", None);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["subscribers"] == n - 10
    }));
}

/// `lambda_proxy`: the backend gets API Gateway's Lambda event as JSON and
/// answers `{statusCode, headers?, body?}`; a non-2xx `statusCode` on
/// `$connect` refuses the upgrade with it, a two-way route's `body` goes
/// back to the client, and `$disconnect` carries its status.
#[test]
fn lambda_proxy_events_and_answers_over_sockets() {
    let backend = Backend::start(|c| {
        let event: serde_json::Value = serde_json::from_slice(&c.body).unwrap_or_default();
        let ctx = &event["requestContext"];
        let json = |v: serde_json::Value| (200, vec![], v.to_string().into_bytes());
        match ctx["routeKey"].as_str() {
            Some("$connect") if event["queryStringParameters"]["deny"].is_string() => {
                json(serde_json::json!({"statusCode": 401, "body": "no"}))
            }
            Some("$connect") => json(serde_json::json!({
                "statusCode": 200,
                "headers": {"Sec-WebSocket-Protocol": "chat.v2"}
            })),
            Some("echo") => json(serde_json::json!({
                "statusCode": 200,
                "body": format!("echo:{}", event["body"].as_str().unwrap_or(""))
            })),
            _ => json(serde_json::json!({"statusCode": 200})),
        }
    });
    let mut cfg = gateway_config(&backend);
    cfg.gateway.request_format = wsedge::config::RequestFormat::LambdaProxy;
    cfg.gateway.routes = vec![GatewayRoute {
        key: "echo".into(),
        url: format!("{}echo", backend.base()),
        two_way: true,
    }];
    let server = start(cfg);

    let refused = client(&server, "?deny=1", &[]);
    match refused {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let (mut ws, resp) = client(
        &server,
        "?room=lobby&x=1",
        &[("Sec-WebSocket-Protocol", "chat.v2")],
    )
    .unwrap();
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat.v2")
    );
    ws.send(Message::text(r#"{"action":"echo","n":1}"#))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::text(r#"echo:{"action":"echo","n":1}"#)
    );
    ws.send(Message::binary(vec![0u8, 159, 146, 150])).unwrap();
    close(ws);
    assert!(
        wait(10, || !backend.on("disconnect").is_empty()),
        "the $disconnect arrives"
    );

    let event = |c: &Call| -> serde_json::Value { serde_json::from_slice(&c.body).unwrap() };
    let connects = backend.on("connect");
    let connect = event(connects.last().unwrap());
    let ctx = &connect["requestContext"];
    assert_eq!(ctx["routeKey"], "$connect");
    assert_eq!(ctx["eventType"], "CONNECT");
    assert_eq!(ctx["stage"], "production");
    assert_eq!(ctx["apiId"], "abc123");
    let id = ctx["connectionId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(ctx["identity"]["userAgent"], "gateway-test/1.0");
    assert_eq!(connect["queryStringParameters"]["room"], "lobby");
    assert_eq!(connect["queryStringParameters"]["x"], "1");
    assert_eq!(connect["headers"]["Origin"], "http://127.0.0.1:8000");
    assert!(connect.get("body").is_none_or(|b| b.is_null()), "{connect}");

    let echo = event(&backend.on("echo")[0]);
    assert_eq!(echo["requestContext"]["routeKey"], "echo");
    assert_eq!(echo["requestContext"]["eventType"], "MESSAGE");
    assert_eq!(echo["requestContext"]["connectionId"], id.as_str());
    assert!(echo["requestContext"]["messageId"].is_string());
    assert_eq!(echo["body"], r#"{"action":"echo","n":1}"#);
    assert_eq!(echo["isBase64Encoded"], false);

    let binary = event(&backend.on("default")[0]);
    assert_eq!(binary["isBase64Encoded"], true);
    assert_eq!(binary["body"], "AJ+Slg==");

    // The connection id is in the event (no `connectionId` header here).
    let disconnects = || -> Vec<serde_json::Value> {
        backend
            .on("disconnect")
            .iter()
            .map(event)
            .filter(|e| e["requestContext"]["connectionId"] == id.as_str())
            .collect()
    };
    assert!(wait(10, || disconnects().len() == 1));
    let gone = &disconnects()[0];
    assert_eq!(gone["requestContext"]["eventType"], "DISCONNECT");
    assert_eq!(gone["requestContext"]["disconnectStatusCode"], 1000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(disconnects().len(), 1, "exactly one $disconnect");
}

/// `@connections` POST to a client that does not read: once its queue is
/// over `connection.max_pending_bytes`, 429 `LimitExceededException` and
/// nothing queued (so a retry is safe); the client stays connected, and
/// once it reads, what was accepted arrives whole and in order.
#[test]
fn a_full_connection_queue_answers_429_limit_exceeded_and_loses_nothing_accepted() {
    let backend = Backend::start(ok);
    let mut cfg = gateway_config(&backend);
    cfg.conn.max_pending_bytes = 256 * 1024;
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    let (mut ws, _) = client(&server, "", &[]).unwrap();
    let id = last_connect_id(&backend);
    let path = format!("/production/@connections/{}", enc(&id));
    let mut accepted = 0u32;
    let mut limited = None;
    // Bounded: the kernel's socket buffers take a few MiB before the
    // server's queue fills.
    for n in 0..2_000u32 {
        // 0xff: not UTF-8, so sent as one binary message.
        let mut body = vec![0xff];
        body.extend_from_slice(&n.to_be_bytes());
        body.resize(100 * 1024, b'x');
        let (status, head, answer) = signed(admin, "POST", &path, &body, AKID, SECRET);
        match status {
            200 => accepted += 1,
            429 => {
                limited = Some((head, answer));
                break;
            }
            other => panic!("POST {n}: {other}"),
        }
    }
    let (head, answer) = limited.expect("a 429 within 2 000 posts of 100 KiB");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amzn-errortype: limitexceededexception"),
        "{head}"
    );
    let msg: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert!(msg["message"].is_string(), "{msg}");
    assert!(accepted > 0);
    // The client reads: every accepted message, in order, none refused.
    for n in 0..accepted {
        let Message::Binary(b) = ws.read().unwrap() else {
            panic!("message {n} is not binary")
        };
        assert_eq!(b.len(), 100 * 1024);
        assert_eq!(b[1..5], n.to_be_bytes(), "in order");
    }
    // The refused one was not queued: the next read is a later post.
    let (status, _, _) = signed(admin, "POST", &path, b"after", AKID, SECRET);
    assert_eq!(status, 200);
    assert_eq!(ws.read().unwrap(), Message::text("after"));
}

/// Clustered (two nodes over a private Redis): every `@connections`
/// operation on node 2 reaches a gateway connection of node 1 (whose id
/// names node 1) and answers what node 1 says: POST 200, GET its info,
/// channel membership, DELETE 204 and, once it is gone, 410 GoneException.
#[test]
fn connections_api_reaches_a_connection_on_another_node() {
    if !common::broker::have_redis("connections_api_reaches_a_connection_on_another_node") {
        return;
    }
    let redis = common::broker::Redis::start();
    cross_node_connections_api(&redis.url());
}

/// The same over NATS.
#[test]
fn connections_api_reaches_a_connection_on_another_node_over_nats() {
    let Some(bin) = common::broker::nats_binary(
        "connections_api_reaches_a_connection_on_another_node_over_nats",
    ) else {
        return;
    };
    let nats = common::broker::Nats::start(&bin);
    cross_node_connections_api(&nats.url());
}

fn cross_node_connections_api(broker: &str) {
    let backend = Backend::start(ok);
    let node = |id: u32| {
        let mut cfg = gateway_config(&backend);
        cfg.cluster.broker = Some(broker.into());
        cfg.cluster.node_id = id;
        start(cfg)
    };
    let (one, two) = (node(1), node(2));
    let (mut ws, _) = client(&one, "", &[]).unwrap();
    let id = last_connect_id(&backend);
    let path = format!("/production/@connections/{}", enc(&id));
    let (admin1, admin2) = (one.admin_addr().unwrap(), two.admin_addr().unwrap());
    for a in [admin1, admin2] {
        assert!(wait(10, || common::http(a, "GET", "/readyz", None)
            .1
            .contains("ready")));
    }
    let (status, _, _) = signed(admin2, "POST", &path, br#"{"via":2}"#, AKID, SECRET);
    assert_eq!(status, 200);
    assert_eq!(ws.read().unwrap(), Message::text(r#"{"via":2}"#));
    let (status, _, _) = signed(admin2, "POST", &path, &[0xff, 0x20, 0x00], AKID, SECRET);
    assert_eq!(status, 200);
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0xff, 0x20, 0x00]));
    // GET: node 1's answer, as node 1 gives it.
    let (status, _, body) = signed(admin2, "GET", &path, b"", AKID, SECRET);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let there: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(there["identity"]["userAgent"], "gateway-test/1.0");
    let (_, _, body) = signed(admin1, "GET", &path, b"", AKID, SECRET);
    let here: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(there["connectedAt"], here["connectedAt"]);
    // Channel membership through node 2; a publish on node 1 reaches it.
    let room = format!("{path}/channels/room");
    let (status, _, _) = signed(admin2, "PUT", &room, b"", AKID, SECRET);
    assert_eq!(status, 204);
    let (status, _) = common::http(admin1, "POST", "/api/channels/room/publish", Some("7"));
    assert_eq!(status, 200);
    let got = ws.read().unwrap().into_text().unwrap();
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(
        (v["channel"].as_str(), v["data"].as_i64()),
        (Some("room"), Some(7)),
        "{got}"
    );
    let (status, _, _) = signed(admin2, "DELETE", &room, b"", AKID, SECRET);
    assert_eq!(status, 204);
    let (status, head, _) = signed(
        admin2,
        "PUT",
        &format!("{path}/channels/%01bad"),
        b"",
        AKID,
        SECRET,
    );
    assert_eq!(status, 400, "{head}");
    // A join to a channel new to node 1 is answered (204) once node 1's
    // broker subscription holds, and a publish on node 2 then reaches
    // the connection. (The HTTP round trips here are slower than the
    // broker's subscribe, so this checks the held answer comes, not the
    // race itself: tests/cluster.rs does that for a client's subscribe,
    // which holds its ack the same way.)
    for i in 0..20 {
        let (status, _, _) = signed(
            admin1,
            "PUT",
            &format!("{path}/channels/fresh-{i}"),
            b"",
            AKID,
            SECRET,
        );
        assert_eq!(status, 204);
        let (status, _) = common::http(
            admin2,
            "POST",
            &format!("/api/channels/fresh-{i}/publish"),
            Some(&i.to_string()),
        );
        assert_eq!(status, 200);
        let got = ws.read().unwrap().into_text().unwrap();
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["data"].as_i64(), Some(i), "{got}");
        let (status, _, _) = signed(
            admin1,
            "DELETE",
            &format!("{path}/channels/fresh-{i}"),
            b"",
            AKID,
            SECRET,
        );
        assert_eq!(status, 204);
    }
    // DELETE: 204, the close reaches the client.
    let (status, _, _) = signed(admin2, "DELETE", &path, b"", AKID, SECRET);
    assert_eq!(status, 204);
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(1000));
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    // Gone on node 1: node 2 says so (410 GoneException) for each operation.
    assert!(wait(10, || signed(
        admin2, "DELETE", &path, b"", AKID, SECRET
    )
    .0 == 410));
    for (method, p) in [("POST", &path), ("GET", &path), ("PUT", &room)] {
        let (status, head, _) = signed(admin2, method, p, b"late", AKID, SECRET);
        assert_eq!(status, 410, "{method} {p}");
        assert!(head.contains("x-amzn-errortype: GoneException"), "{head}");
    }
    for s in [one, two] {
        s.shutdown();
        s.join().unwrap();
    }
}
