//! `wss://` and https over real loopback sockets, with certificates made
//! by the test (`rcgen`): echo over TLS 1.3 and 1.2 with ALPN http/1.1,
//! the admin plane over https, certificate reload (SIGHUP on the binary,
//! and a bad file that keeps the old certificate), and bad TLS input
//! (garbage, a truncated ClientHello, plain HTTP on the TLS port, a
//! handshake that never finishes) counted and closed while the server
//! keeps serving; a TLS stream that arrives a byte (or a few) at a time
//! is reassembled; the admin plane with its own certificate beside a
//! plain ws:// listener.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::tls::*;
use common::*;
use tungstenite::Message;
use wsedge::{Config, Server};

fn tls_config(cert: &str, key: &str) -> Config {
    let mut cfg = config(1);
    cfg.tls.cert = Some(cert.into());
    cfg.tls.key = Some(key.into());
    cfg
}

/// Sends `msg` and expects it back.
fn echo(ws: &mut WssClient, msg: Message) {
    ws.send(msg.clone()).unwrap();
    assert_eq!(ws.read().unwrap(), msg);
}

fn ciphertext_round_trip_works(addr: SocketAddr, client: Arc<rustls::ClientConfig>) {
    let mut ws = wss_connect(addr, client, "/echo");
    echo(&mut ws, Message::text("still serving"));
    ws.close(None).unwrap();
}

#[test]
fn wss_echo_over_tls13_and_tls12_with_alpn() {
    let ca = Ca::new();
    let leaf = ca.leaf("wsedge one", 1);
    let dir = temp_dir("echo");
    let (cert, key) = write_leaf(&dir, &leaf);
    let server = start(tls_config(&cert, &key));
    let addr = server.local_addr();
    for (version, name) in [
        (&rustls::version::TLS13, "TLSv1_3"),
        (&rustls::version::TLS12, "TLSv1_2"),
    ] {
        let mut ws = wss_connect(addr, ca.client(&[version]), "/echo");
        let conn = &ws.get_ref().conn;
        assert_eq!(format!("{:?}", conn.protocol_version().unwrap()), name);
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(peer_cert(&ws), leaf.der);
        echo(&mut ws, Message::text("hello over tls ✓"));
        echo(&mut ws, Message::binary(vec![7u8; 32]));
        // Many records each way (16 KiB of plaintext per record).
        let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        echo(&mut ws, Message::binary(big));
        ws.close(None).unwrap();
        // The close handshake completes through TLS.
        loop {
            match ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("close over TLS failed: {e}"),
            }
        }
    }
    assert!(wait_until(Duration::from_secs(5), || {
        let s = server.stats();
        s.tls_handshakes == 2 && s.upgraded == 2 && s.messages_in == 6 && s.open == 0
    }));
    assert_eq!(server.stats().tls_errors, 0);
    // Plain ws:// connections are untouched by any of this.
    let plain = start(config(1));
    let mut ws = connect(&plain, "/echo");
    ws.send(Message::text("plain")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("plain"));
    assert_eq!(plain.stats().tls_handshakes, 0);
}

#[test]
fn bad_tls_input_is_counted_and_closed_and_the_server_keeps_serving() {
    let ca = Ca::new();
    let dir = temp_dir("bad");
    let (cert, key) = write_leaf(&dir, &ca.leaf("wsedge", 1));
    let mut cfg = tls_config(&cert, &key);
    cfg.conn.handshake_timeout = Duration::from_millis(500);
    let server = start(cfg);
    let addr = server.local_addr();
    let client = ca.client(&[]);

    // A real ClientHello, taken from a rustls client.
    let hello = {
        let mut c = rustls::ClientConnection::new(
            client.clone(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        out
    };
    let cases = [
        ("garbage", [0xde, 0xad, 0xbe, 0xef].repeat(64), false),
        (
            "plain HTTP",
            b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n".to_vec(),
            false,
        ),
        (
            "truncated ClientHello",
            hello[..hello.len() / 2].to_vec(),
            true,
        ),
        (
            "ClientHello with a mangled body",
            {
                // The session id's length (after the record and handshake
                // headers, the version and the random) made to overrun.
                let mut h = hello.clone();
                h[5 + 4 + 2 + 32] = 0xff;
                h
            },
            false,
        ),
    ];
    for (expected_errors, (what, bytes, half_close)) in (1..).zip(cases) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&bytes).unwrap();
        if half_close {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Closed by the server (an alert at most before the EOF).
        let got = read_to_close(&mut s, Duration::from_secs(5));
        assert!(
            got.len() < 64 && !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
            "{what}: answered {got:?}"
        );
        assert!(
            wait_until(Duration::from_secs(5), || server.stats().tls_errors
                == expected_errors),
            "{what}: tls_errors = {}",
            server.stats().tls_errors
        );
        ciphertext_round_trip_works(addr, client.clone());
    }

    // Half a ClientHello and then nothing: the handshake timeout closes it.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    let _ = read_to_close(&mut s, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(5), || {
        server
            .stats()
            .ended(wsedge::conn::EndReason::HandshakeTimeout)
            == 1
    }));
    ciphertext_round_trip_works(addr, client);
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
}

#[test]
fn admin_plane_over_https_reuses_the_tls_certificate() {
    let ca = Ca::new();
    let dir = temp_dir("admin");
    let (cert, key) = write_leaf(&dir, &ca.leaf("wsedge", 1));
    let mut cfg = tls_config(&cert, &key);
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin.tls = true;
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    let (status, body) = https_get(admin, ca.client(&[]), "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = https_get(admin, ca.client(&[]), "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("wsedge_tls_errors_total 0"), "{body}");
    // Plain HTTP to the https port: no HTTP answer (an alert at most),
    // counted.
    let got = raw_exchange(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "{got:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        let (_, body) = https_get(admin, ca.client(&[]), "/metrics");
        body.contains("wsedge_admin_tls_errors_total 1")
    }));
}

#[test]
fn reload_with_a_bad_file_keeps_the_old_certificate() {
    let ca = Ca::new();
    let dir = temp_dir("reload-bad");
    let one = ca.leaf("one", 1);
    let (cert, key) = write_leaf(&dir, &one);
    let server: Server = start(tls_config(&cert, &key));
    let addr = server.local_addr();
    // A key that does not parse.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    let errors = server.reload_tls();
    assert_eq!(errors.len(), 1);
    // The error names the file, never its contents.
    let text = errors[0].1.to_string();
    assert!(
        text.contains("key.pem") && !text.contains("not a key"),
        "{text}"
    );
    let ws = wss_connect(addr, ca.client(&[]), "/echo");
    assert_eq!(peer_cert(&ws), one.der);
    // A key that does not match the certificate is refused too.
    let two = ca.leaf("two", 2);
    std::fs::write(&key, &two.key_pem).unwrap();
    assert_eq!(server.reload_tls().len(), 1);
    assert_eq!(
        peer_cert(&wss_connect(addr, ca.client(&[]), "/echo")),
        one.der
    );
    // Good files: new handshakes get the new certificate.
    write_leaf(&dir, &two);
    assert!(server.reload_tls().is_empty());
    assert_eq!(
        peer_cert(&wss_connect(addr, ca.client(&[]), "/echo")),
        two.der
    );
}

#[test]
fn sighup_swaps_the_certificate_and_open_connections_keep_working() {
    let ca = Ca::new();
    let dir = temp_dir("sighup");
    let one = ca.leaf("one", 1);
    let two = ca.leaf("two", 2);
    let (cert, key) = write_leaf(&dir, &one);
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--admin",
        "off",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    server.drain_log();
    let addr = server.addr("addr");
    let client = ca.client(&[]);
    let mut old = wss_connect(addr, client.clone(), "/echo");
    assert_eq!(peer_cert(&old), one.der);
    echo(&mut old, Message::text("before"));

    write_leaf(&dir, &two);
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    // The signal is handled asynchronously: a new connection sees the new
    // certificate within a bounded wait.
    assert!(wait_until(Duration::from_secs(10), || {
        peer_cert(&wss_connect(addr, client.clone(), "/echo")) == two.der
    }));
    // The connection opened before the reload goes on.
    echo(&mut old, Message::text("after"));
    echo(&mut old, Message::binary(vec![1u8; 20_000]));
    old.close(None).unwrap();
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn admin_plane_over_https_with_its_own_certificate_beside_plain_ws() {
    let ca = Ca::new();
    let dir = temp_dir("admin-own");
    let admin_leaf = ca.leaf("wsedge admin", 7);
    let (cert, key) = write_leaf(&dir, &admin_leaf);
    let mut cfg = config(1);
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin.tls = true;
    cfg.admin.tls_cert = Some(cert);
    cfg.admin.tls_key = Some(key);
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    let s = tls_connect(admin, ca.client(&[]));
    assert_eq!(s.conn.peer_certificates().unwrap()[0], admin_leaf.der);
    drop(s);
    let (status, body) = https_get(admin, ca.client(&[]), "/healthz");
    assert_eq!(status, 200, "{body}");
    // The WebSocket listener stays plain ws://.
    assert!(!server.is_tls());
    let mut ws = connect(&server, "/echo");
    ws.send(Message::text("plain")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("plain"));
}

/// A socket that sends at most `chunk` bytes per write and pauses after
/// each, so the server reads the TLS stream in pieces: records and
/// handshake messages split across reads.
struct Choppy {
    s: TcpStream,
    chunk: usize,
}

impl std::io::Read for Choppy {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.s.read(buf)
    }
}

impl Write for Choppy {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = buf.len().min(self.chunk);
        self.s.write_all(&buf[..k])?;
        std::thread::sleep(Duration::from_micros(300));
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

#[test]
fn a_tls_stream_arriving_a_few_bytes_at_a_time_is_reassembled() {
    use std::io::Read as _;
    let ca = Ca::new();
    let dir = temp_dir("choppy");
    let (cert, key) = write_leaf(&dir, &ca.leaf("wsedge", 1));
    let server = start(tls_config(&cert, &key));
    let addr = server.local_addr();
    for chunk in [1, 7, 333] {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ClientConnection::new(
            ca.client(&[]),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let s = rustls::StreamOwned::new(conn, Choppy { s: tcp, chunk });
        let url = format!("wss://localhost:{}/echo", addr.port());
        let (mut ws, _) = tungstenite::client::client(url, s).expect("upgrade in pieces");
        let text: String = (0..2000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text), "chunk {chunk}");
        ws.close(None).unwrap();
        let _ = ws.read();
        let mut rest = Vec::new();
        let _ = ws.get_mut().sock.s.read_to_end(&mut rest);
    }
    assert!(wait_until(Duration::from_secs(5), || {
        let s = server.stats();
        s.tls_handshakes == 3 && s.messages_in == 3 && s.tls_errors == 0 && s.open == 0
    }));
}

/// The server's last bytes (its close reply after a 6 MiB echo) reach a
/// client that reads slowly over TLS. (The driver releases the `Conn`'s
/// bytes only once their records are on the socket, so the connection
/// cannot end with its close reply still inside rustls; on loopback the
/// kernel's large send buffer hides the difference, so this pins the
/// behaviour rather than reproducing the earlier code's loss.)
#[test]
fn the_close_reply_after_a_large_echo_reaches_a_slow_reader() {
    let ca = Ca::new();
    let dir = temp_dir("slow-close");
    let (cert, key) = write_leaf(&dir, &ca.leaf("wsedge", 1));
    let server = start(tls_config(&cert, &key));
    let addr = server.local_addr();
    let tcp = TcpStream::connect(addr).unwrap();
    // A small receive window, so the echo backs up into the server.
    socket2::SockRef::from(&tcp)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let conn = rustls::ClientConnection::new(
        ca.client(&[]),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let s = rustls::StreamOwned::new(conn, tcp);
    let url = format!("wss://localhost:{}/echo", addr.port());
    let (mut ws, _) = tungstenite::client::client(url, s).unwrap();
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 249) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    ws.close(None).unwrap();
    // Let the server queue the echo and its close reply behind a full
    // socket before reading anything.
    std::thread::sleep(Duration::from_millis(500));
    let mut got_echo = false;
    let mut got_close = false;
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => {
                assert_eq!(b.len(), big.len());
                assert!(b[..] == big[..]);
                got_echo = true;
            }
            Ok(Message::Close(_)) => got_close = true,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("after echo={got_echo} close={got_close}: {e}"),
        }
    }
    assert!(got_echo && got_close, "echo={got_echo} close={got_close}");
    assert!(wait_until(Duration::from_secs(5), || {
        let s = server.stats();
        s.open == 0 && s.ended(wsedge::conn::EndReason::PeerClose) == 1
    }));
}
