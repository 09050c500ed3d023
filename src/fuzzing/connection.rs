//! The `connection` harness (structure-aware): the input is decoded into a
//! configuration, a read size, admission's answer (at once or deferred)
//! and a sequence of operations, and one `Conn` is driven through them by
//! the shared test driver (`conn::testing`, the core's call order over
//! virtual time), with a stand-in server (route table, admission's answer,
//! echo) and a simulated peer (`Peer`) parsing everything it writes.
//!
//! Checks: phases only move forward and events come in order; messages
//! only while open, within limits, text as UTF-8; the output is one HTTP
//! response, then whole unmasked frames, nothing after a close frame,
//! valid close codes; every queued message arrives intact and in order
//! (inflated first when compressed: flag bit 6 turns permessage-deflate on
//! and makes every upgrade request offer it, so compressed client frames,
//! broken ones and compressed echoes are exercised too);
//! the out queue stays bounded; deadlines after `handle_timeout` are in
//! the future; the counters match (the full list is on [`connection`]).
//!
//! Must not touch: real I/O (the socket is a byte buffer), the wall clock
//! (time is virtual: one `Instant` taken as the origin, then advanced by
//! the input), the engine, the hub registry, admission's shared state or
//! any other global state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{unmask_scalar, Input};
use crate::admission::Refusal;
use crate::config::{CompressionConfig, ConnConfig, Switch};
use crate::conn::testing::{App, Driver};
use crate::conn::{Conn, Ctx, EndReason, Event, Phase, Push, SlowConsumerPolicy, Tally};
use crate::engine::{Route, Routes};
use crate::error::Rejection;
use crate::protocol::close::is_valid_close_code;
use crate::protocol::deflate::{MessageDeflater, MessageInflater};
use crate::protocol::frame::encode_frame;
use crate::protocol::{Frame, FrameDecoder, OpCode, Role};

/// Upgrade requests the connection target can send (it also sends raw
/// bytes, so broken requests arrive that way too).
pub(super) const UPGRADES: [&[u8]; 7] = [
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /ws?user=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
      Sec-WebSocket-Protocol: chat, x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
      Sec-WebSocket-Protocol: wsedge, ws_token.abc\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
];

/// Close codes the application may start a close with (valid ones, and
/// 1005, which means "no code" and sends an empty close payload).
const APP_CLOSE_CODES: [u16; 8] = [1000, 1001, 1008, 1011, 1005, 3000, 4000, 4999];

/// Limits and deadlines for one connection run, from the input, and
/// whether admission defers its answer (flag bit 5). Durations are never
/// zero: a zero interval would be a configuration that asks for a busy
/// loop, which the config layer is responsible for refusing.
fn conn_config(inp: &mut Input<'_>) -> (ConnConfig, bool, Option<CompressionConfig>) {
    let ms = Duration::from_millis;
    let flags = inp.byte();
    // Bit 6: permessage-deflate on (bit 7: every message compressed, else
    // from 64 bytes); the upgrade requests then offer it.
    let compression = (flags & 0x40 != 0).then(|| CompressionConfig {
        mode: Switch::On,
        min_size: if flags & 0x80 != 0 { 0 } else { 64 },
        // Shared with other settings' bits, to keep older inputs' meaning.
        server_no_context_takeover: flags & 8 != 0,
        client_no_context_takeover: flags & 16 != 0,
        ..CompressionConfig::default()
    });
    let cfg = ConnConfig {
        max_request_bytes: if flags & 1 == 0 { 8192 } else { 200 },
        max_headers: if flags & 2 == 0 { 32 } else { 4 },
        subprotocols: if flags & 4 == 0 {
            Vec::new()
        } else {
            vec!["chat".into()]
        },
        slow_consumer: if flags & 8 == 0 {
            SlowConsumerPolicy::Close
        } else {
            SlowConsumerPolicy::Drop
        },
        max_frame_size: inp.pick(&[70_000, 1024, 125, 0]),
        max_message_size: inp.pick(&[200_000, 1024, 125, 0]),
        write_budget: inp.pick(&[1 << 20, 4096, 64, 0]),
        max_pending_bytes: inp.pick(&[1 << 20, 4096, 100, 0]),
        buffer_growth_step: if flags & 16 == 0 { 256 * 1024 } else { 64 },
        handshake_timeout: inp.pick(&[ms(10_000), ms(1), ms(500)]),
        ping_interval: inp.pick(&[ms(25_000), ms(1), ms(300)]),
        pong_timeout: inp.pick(&[ms(10_000), ms(1), ms(300)]),
        idle_timeout: inp.pick(&[None, Some(ms(60_000)), Some(ms(1)), Some(ms(400))]),
        close_timeout: inp.pick(&[ms(5_000), ms(1), ms(200)]),
    };
    (cfg, flags & 0x20 != 0, compression)
}

/// The permessage-deflate offer added to every upgrade request when the
/// run has compression on.
const OFFER: &[u8] = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Appends a client frame with the header fields as given (so also broken
/// ones): `len_form` 0 is the minimal length encoding, 1 forces 16 bits,
/// 2 forces 64 bits.
fn client_frame(out: &mut Vec<u8>, b0: u8, mask: Option<[u8; 4]>, len_form: u8, payload: &[u8]) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    let len = payload.len();
    match len_form {
        0 if len < 126 => out.push(mask_bit | len as u8),
        0 | 1 if len <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(unmask_scalar(payload, key));
        }
        None => out.extend_from_slice(payload),
    }
}

/// Order of the phases: a connection only moves forward.
fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Handshake => 0,
        Phase::Deciding => 1,
        Phase::Open => 2,
        Phase::Closing => 3,
        Phase::Closed => 4,
        Phase::Dead => 5,
    }
}

/// Where the peer's view of our output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerStage {
    /// Waiting for the HTTP response head.
    Head,
    /// After a `101`: WebSocket frames.
    Frames,
    /// After an error response: its body, then nothing.
    Refused { body_left: usize },
}

/// The client's side of the wire: parses everything the connection writes
/// and checks it.
struct Peer {
    stage: PeerStage,
    head: Vec<u8>,
    rx: BytesMut,
    decoder: FrameDecoder,
    close_seen: bool,
    frames: u64,
    /// Data frames queued for the peer (`send_message` said yes, or
    /// `push_frame` queued), in order: each must arrive intact.
    expected: VecDeque<(OpCode, Bytes)>,
    /// permessage-deflate as the `101` agreed it: the peer's inflater for
    /// RSV1 frames and its own compressor for what it sends.
    deflate: Option<(MessageInflater, MessageDeflater)>,
}

impl Peer {
    fn new() -> Self {
        Self {
            stage: PeerStage::Head,
            head: Vec::new(),
            rx: BytesMut::new(),
            // Server frames are unmasked: the client role rejects masked ones.
            decoder: FrameDecoder::new(Role::Client),
            close_seen: false,
            frames: 0,
            expected: VecDeque::new(),
            deflate: None,
        }
    }

    fn receive(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.stage {
                PeerStage::Head => {
                    self.head.extend_from_slice(bytes);
                    bytes = &[];
                    let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                        assert!(self.head.len() < 4096, "response head without an end");
                        continue;
                    };
                    let rest = self.head.split_off(end + 4);
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut resp = httparse::Response::new(&mut headers);
                    assert_eq!(
                        resp.parse(&self.head),
                        Ok(httparse::Status::Complete(end + 4)),
                        "response head"
                    );
                    if resp.code == Some(101) {
                        assert!(resp
                            .headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept")));
                        let ext = resp
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned());
                        if let Some(ext) = ext {
                            assert!(ext.starts_with("permessage-deflate"), "{ext}");
                            let server_nct = ext.contains("server_no_context_takeover");
                            let client_nct = ext.contains("client_no_context_takeover");
                            self.decoder = FrameDecoder::new(Role::Client).with_rsv1(true);
                            self.deflate = Some((
                                MessageInflater::new(15, server_nct),
                                MessageDeflater::new(15, client_nct, 6),
                            ));
                        }
                        self.stage = PeerStage::Frames;
                    } else {
                        let body_left = resp
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                            .expect("an error response has a Content-Length");
                        self.stage = PeerStage::Refused { body_left };
                    }
                    self.receive(&rest);
                }
                PeerStage::Refused { body_left } => {
                    assert!(bytes.len() <= body_left, "output after the refusal");
                    self.stage = PeerStage::Refused {
                        body_left: body_left - bytes.len(),
                    };
                    bytes = &[];
                }
                PeerStage::Frames => {
                    self.rx.extend_from_slice(bytes);
                    bytes = &[];
                    while let Some(frame) = self
                        .decoder
                        .decode(&mut self.rx, 1 << 30)
                        .unwrap_or_else(|e| panic!("the server wrote an invalid frame: {e}"))
                    {
                        self.check_frame(&frame);
                    }
                }
            }
        }
    }

    fn check_frame(&mut self, frame: &Frame) {
        assert!(
            !self.close_seen,
            "{:?} frame written after our close frame",
            frame.opcode
        );
        self.frames += 1;
        assert!(frame.fin, "the server sends whole messages");
        let data = if frame.rsv1 {
            let (inflater, _) = self.deflate.as_mut().expect("RSV1 only when agreed");
            let mut out = Vec::new();
            inflater
                .inflate(&frame.payload, usize::MAX >> 1, &mut out)
                .expect("the server's compressed frame inflates");
            Bytes::from(out)
        } else {
            frame.payload.clone()
        };
        if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
            let (opcode, payload) = self.expected.pop_front().expect("a data frame nobody sent");
            assert_eq!(frame.opcode, opcode, "data frame type");
            assert!(data == payload, "data frame payload corrupted");
        }
        match frame.opcode {
            OpCode::Continuation => panic!("the server never fragments"),
            OpCode::Text => {
                assert!(std::str::from_utf8(&data).is_ok(), "text frame is UTF-8")
            }
            OpCode::Binary | OpCode::Ping | OpCode::Pong => {}
            OpCode::Close => {
                self.close_seen = true;
                let p = &frame.payload;
                assert_ne!(p.len(), 1, "close payload of one byte");
                if p.len() >= 2 {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    assert!(is_valid_close_code(code), "sent close code {code}");
                    assert!(
                        std::str::from_utf8(&p[2..]).is_ok(),
                        "close reason is UTF-8"
                    );
                }
            }
        }
        if frame.opcode.is_control() {
            assert!(frame.payload.len() <= 125, "control frame over 125 bytes");
        }
    }

    /// At the end: the output was whole frames (or a whole response).
    fn finish(&self) {
        match self.stage {
            PeerStage::Head => assert!(self.head.is_empty(), "a partial response head"),
            PeerStage::Refused { body_left } => assert_eq!(body_left, 0, "a partial body"),
            PeerStage::Frames => {
                assert!(self.rx.is_empty(), "a partial frame");
                assert!(self.decoder.pending_header().is_none(), "a partial frame");
            }
        }
        assert!(self.expected.is_empty(), "queued messages never arrived");
    }
}

/// What the server does with the connection's events, and the checks on
/// them: the route table and admission's answer for upgrades, echo on
/// `/echo`, a small reply on `/ws` (standing in for the hub).
struct Server {
    routes: Routes,
    /// Admission's answer to every upgrade request: `None` accepts.
    refusal: Option<Refusal>,
    /// Admission leaves the upgrade pending; the answer comes at the next
    /// "socket takes output" operation.
    defer: bool,
    /// A deferred upgrade waits for its answer.
    deciding: bool,
    peer: Peer,
    route: Option<Route>,
    opened: bool,
    refused: bool,
    ended: Option<EndReason>,
    messages: u64,
    /// Bytes the application queued itself (sends, pushes) since the queue
    /// was last empty: the connection cannot bound those.
    app_bytes: usize,
    ping_timed_out: bool,
}

impl Server {
    /// `send_message`, remembering what the peer must receive.
    fn send(&mut self, conn: &mut Conn, ctx: &mut Ctx<'_>, text: bool, payload: Bytes) -> bool {
        let sent = conn.send_message(text, payload.clone(), ctx);
        if sent {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            self.peer.expected.push_back((opcode, payload));
        }
        sent
    }

    /// Admission's answer, now or (deferred) later.
    fn answer(&mut self, conn: &mut Conn, ctx: &mut Ctx<'_>) {
        match self.refusal {
            None => conn.accept(None, ctx),
            Some(r) => conn.refuse(r.into(), ctx),
        }
    }
}

impl App for Server {
    fn on_event(&mut self, conn: &mut Conn, ctx: &mut Ctx<'_>, ev: Event) {
        match ev {
            Event::Upgrade => {
                assert!(
                    self.route.is_none() && !self.opened && !self.refused && self.ended.is_none(),
                    "Upgrade out of order"
                );
                assert_eq!(conn.phase(), Phase::Deciding);
                let req = conn.request().expect("the request awaits its answer");
                let Some(route) = self.routes.get(req.path()) else {
                    return conn.refuse(Rejection::NotFound, ctx);
                };
                self.route = Some(route);
                if self.defer {
                    self.deciding = true;
                } else {
                    self.answer(conn, ctx);
                }
            }
            Event::Opened => {
                assert!(
                    self.route.is_some() && !self.opened && !self.refused && self.ended.is_none(),
                    "Opened out of order"
                );
                assert!(
                    conn.request().is_none(),
                    "an open connection keeps no request"
                );
                self.opened = true;
            }
            Event::Refused(_) => {
                assert!(!self.opened && !self.refused, "Refused out of order");
                self.refused = true;
            }
            Event::Ended(reason) => {
                assert!(self.ended.is_none(), "Ended twice");
                assert_eq!(conn.end_reason(), Some(reason));
                self.ping_timed_out = reason == EndReason::PingTimeout;
                self.ended = Some(reason);
                self.deciding = false;
            }
            Event::Message { text, payload } => {
                assert!(
                    self.opened && self.ended.is_none(),
                    "a message outside the open phase"
                );
                assert!(
                    payload.len() <= ctx.cfg.conn.max_message_size,
                    "oversize message"
                );
                if text {
                    assert!(std::str::from_utf8(&payload).is_ok(), "text is not UTF-8");
                }
                self.messages += 1;
                match self.route {
                    Some(Route::Echo) => {
                        self.send(conn, ctx, text, payload);
                    }
                    _ => {
                        let reply = Bytes::from_static(b"{\"type\":\"ack\"}");
                        self.app_bytes += reply.len() + 2;
                        self.send(conn, ctx, true, reply);
                    }
                }
            }
        }
    }
}

/// The connection (through the shared test driver), the server, and the
/// peer's side of the socket.
struct Sim {
    /// Upgrade requests offer permessage-deflate (compression is on).
    offer: bool,
    d: Driver,
    server: Server,
    /// Bytes the peer sent that the "socket" holds until the driver reads.
    socket_in: BytesMut,
    eof_sent: bool,
    read_chunk: usize,
    phase: Phase,
}

impl Sim {
    fn new(
        cfg: ConnConfig,
        compression: Option<CompressionConfig>,
        read_chunk: usize,
        refusal: Option<Refusal>,
        defer: bool,
    ) -> Self {
        let offer = compression.is_some();
        Self {
            offer,
            d: Driver::with_config(crate::config::Config {
                conn: cfg,
                compression: compression.unwrap_or_default(),
                ..crate::config::Config::default()
            }),
            server: Server {
                routes: Routes::default(),
                refusal,
                defer,
                deciding: false,
                peer: Peer::new(),
                route: None,
                opened: false,
                refused: false,
                ended: None,
                messages: 0,
                app_bytes: 0,
                ping_timed_out: false,
            },
            socket_in: BytesMut::new(),
            eof_sent: false,
            read_chunk,
            phase: Phase::Handshake,
        }
    }

    /// Most bytes the queue may hold: the write budget (reading and
    /// parsing stop beyond it), plus what one message can add (answers to
    /// control frames, one echo of an up-to-max message, a handshake
    /// answer or close frame), plus what the application queued on its own.
    fn out_bound(&self) -> usize {
        let cfg = &self.d.cfg.conn;
        cfg.write_budget + self.read_chunk + cfg.max_message_size + 1024 + self.server.app_bytes
    }

    /// The driver takes the connection's events to the server.
    fn dispatch(&mut self) {
        self.d.dispatch(&mut self.server);
    }

    /// The driver's read loop: reads while the connection wants to, in
    /// chunks of `read_chunk`; the end of the stream comes after its bytes.
    fn pump(&mut self) {
        while !self.d.conn.is_dead() && self.d.conn.wants_read(&self.d.cfg.conn) {
            if self.socket_in.is_empty() {
                if std::mem::take(&mut self.eof_sent) {
                    self.d.eof(&mut self.server);
                }
                return;
            }
            let n = self.read_chunk.min(self.socket_in.len());
            let mut chunk = self.socket_in.split_to(n);
            self.d.read(&mut chunk, &mut self.server);
            assert!(chunk.is_empty(), "handle_read takes all its input");
            let len = self.d.conn.queued_bytes();
            assert!(len <= self.out_bound(), "out queue of {len} bytes");
        }
    }

    /// The socket takes up to `max` bytes; the peer sees them. Then the
    /// driver polls again: parsing paused over the budget may resume.
    fn drain(&mut self, max: usize) {
        let peer = &mut self.server.peer;
        self.d.transmit(max, |bytes| peer.receive(bytes));
        self.dispatch();
    }

    /// What `settle` does after every input, then the invariants that hold
    /// between any two inputs.
    fn settle(&mut self) {
        if self.d.conn.queued_bytes() == 0 {
            self.server.app_bytes = 0;
        }
        let phase = self.d.conn.phase();
        assert!(
            phase_rank(phase) >= phase_rank(self.phase),
            "phase went back from {:?} to {phase:?}",
            self.phase
        );
        self.phase = phase;
        match phase {
            Phase::Handshake | Phase::Deciding | Phase::Open => {
                assert_eq!(self.d.conn.end_reason(), None);
                assert_eq!(phase == Phase::Open, self.server.opened);
                assert_eq!(phase == Phase::Deciding, self.d.conn.request().is_some());
            }
            _ => assert!(
                self.server.ended.is_some(),
                "{phase:?} without an Ended event"
            ),
        }
        assert_eq!(self.d.poll_timeout().is_none(), self.d.conn.is_dead());
        let len = self.d.conn.queued_bytes();
        assert!(len <= self.out_bound(), "out queue of {len} bytes");
        assert_eq!(self.d.tally.messages_in, self.server.messages);
    }

    fn elapse(&mut self, to: Instant) {
        self.d.advance_to(to, &mut self.server);
        if let Some(next) = self.d.poll_timeout() {
            let now = self.d.now;
            assert!(
                next > now,
                "poll_timeout {:?} not after now in {:?}",
                next - now.min(next),
                self.d.conn.phase()
            );
        }
    }

    fn step(&mut self, inp: &mut Input<'_>) {
        match inp.byte() % 12 {
            0 => {
                let req = inp.pick(&UPGRADES);
                match req.strip_suffix(b"\r\n") {
                    Some(head) if self.offer => {
                        self.socket_in.extend_from_slice(head);
                        self.socket_in.extend_from_slice(OFFER);
                        self.socket_in.extend_from_slice(b"\r\n");
                    }
                    _ => self.socket_in.extend_from_slice(req),
                }
            }
            1 => {
                let n = usize::from(inp.byte());
                let raw = inp.take(n);
                self.socket_in.extend_from_slice(raw);
            }
            2..=4 => {
                // A client frame: mostly valid; `bad` breaks one rule.
                let flags = inp.byte();
                let bad = inp.byte() % 16;
                let opcode = inp.pick(&[1, 2, 0, 0, 1, 2, 8, 9, 10, 9, 0, 1, 2, 3, 0xb, 8]);
                let fin = flags & 1 == 0 || (opcode >= 8 && bad != 5);
                let rsv = if bad == 1 { 0x40 } else { 0 };
                let mask = if bad == 2 {
                    None
                } else {
                    Some([inp.byte(), inp.byte(), inp.byte(), inp.byte()])
                };
                let len_form = match bad {
                    3 => 1,
                    4 => 2,
                    _ => 0,
                };
                let len = match inp.byte() {
                    254 => usize::from(inp.u16()) % 4096,
                    255 => usize::from(inp.u16()) + 64 * 1024,
                    n => usize::from(n),
                };
                let mut payload = inp.take(len).to_vec();
                // Short of input: fill with text that is valid UTF-8.
                payload.resize(len, b'a');
                if opcode == 8 && flags & 2 != 0 && len >= 2 {
                    // A close frame with a code worth trying.
                    let code = inp.pick(&[1000, 1001, 1005, 1006, 999, 1016, 3000, 4999, 5000]);
                    payload[..2].copy_from_slice(&u16::to_be_bytes(code));
                }
                let mut rsv = rsv;
                if flags & 4 != 0 {
                    // Compressed by the peer's own compressor (if agreed),
                    // RSV1 set: valid on a message's first frame only.
                    if let Some((_, deflater)) = self.server.peer.deflate.as_mut() {
                        let mut c = Vec::new();
                        deflater.compress(&payload, &mut c);
                        payload = c;
                        rsv = 0x40;
                    }
                }
                let b0 = (u8::from(fin) << 7) | rsv | opcode;
                let mut wire = Vec::new();
                client_frame(&mut wire, b0, mask, len_form, &payload);
                self.socket_in.extend_from_slice(&wire);
            }
            5 => {
                let ms = u64::from(inp.u16());
                let to = self.d.now + Duration::from_millis(ms);
                self.elapse(to);
            }
            6 => {
                // Exactly at the next deadline, or just before it.
                if let Some(at) = self.d.poll_timeout() {
                    let early = Duration::from_nanos(u64::from(inp.byte() & 1));
                    self.elapse(at.checked_sub(early).unwrap_or(at));
                }
            }
            7 => {
                let text = inp.byte() & 1 == 0;
                let len = match inp.byte() {
                    255 => usize::from(inp.u16()),
                    n => usize::from(n),
                };
                let payload = if text {
                    String::from_utf8_lossy(inp.take(len))
                        .into_owned()
                        .into_bytes()
                } else {
                    inp.take(len).to_vec()
                };
                let payload = Bytes::from(payload);
                let before = self.d.conn.queued_bytes();
                let open = self.d.conn.phase() == Phase::Open;
                let server = &mut self.server;
                let sent = self.d.with(|c, ctx| server.send(c, ctx, text, payload));
                assert_eq!(sent, open, "send_message accepted iff open");
                self.server.app_bytes += self.d.conn.queued_bytes() - before;
            }
            8 => {
                let len = match inp.byte() {
                    255 => usize::from(inp.u16()),
                    n => usize::from(n),
                };
                let payload = Bytes::copy_from_slice(inp.take(len));
                let mut frame = BytesMut::new();
                encode_frame(&mut frame, true, OpCode::Binary, &payload);
                let frame = frame.freeze();
                let flen = frame.len();
                let before = self.d.conn.queued_bytes();
                let phase = self.d.conn.phase();
                let res = self.d.with(|c, ctx| c.push_frame(frame, ctx));
                let after = self.d.conn.queued_bytes();
                let cfg = &self.d.cfg.conn;
                match res {
                    Push::Queued => {
                        assert_eq!(after, before + flen);
                        assert!(after <= cfg.max_pending_bytes, "pushed over the limit");
                        self.server.app_bytes += flen;
                        self.server
                            .peer
                            .expected
                            .push_back((OpCode::Binary, payload));
                    }
                    Push::Dropped => {
                        assert_eq!(cfg.slow_consumer, SlowConsumerPolicy::Drop);
                        assert_eq!(after, before);
                    }
                    Push::Closed => {
                        assert_eq!(cfg.slow_consumer, SlowConsumerPolicy::Close);
                        assert_eq!(self.d.conn.phase(), Phase::Closing);
                        assert_eq!(self.d.conn.end_reason(), Some(EndReason::SlowConsumer));
                        self.server.app_bytes += after - before;
                    }
                    Push::NotOpen => assert_ne!(phase, Phase::Open),
                }
                self.dispatch();
            }
            9 => {
                let code = inp.pick(&APP_CLOSE_CODES);
                let reason_len = usize::from(inp.byte() % 200);
                let reason = String::from_utf8_lossy(inp.take(reason_len));
                let why = inp.pick(&[EndReason::Kicked, EndReason::Shutdown]);
                let before = self.d.conn.queued_bytes();
                self.d.with(|c, ctx| c.close(code, &reason, why, ctx));
                self.server.app_bytes += self.d.conn.queued_bytes() - before;
                self.dispatch();
            }
            10 => {
                if std::mem::take(&mut self.server.deciding) {
                    // The deferred decision arrives.
                    let server = &mut self.server;
                    self.d.with(|c, ctx| server.answer(c, ctx));
                    self.dispatch();
                }
                let max = inp.pick(&[0, 1, 2, 7, 100, 4096, usize::MAX]);
                self.drain(max);
            }
            _ => match inp.byte() % 4 {
                0 => self.d.io_error(&mut self.server),
                _ => self.eof_sent = true,
            },
        }
        self.pump();
        self.settle();
    }

    /// The driver's last flushes before the socket is dropped (or the end
    /// of the run): the peer gets everything, including what input
    /// buffered over the write budget still produces once it is written.
    fn finish(&mut self) {
        while self.d.conn.queued_bytes() > 0 {
            self.drain(usize::MAX);
        }
        self.settle();
        self.server.peer.finish();
        let frames_out = self.d.tally.frames_out + u64::from(self.server.ping_timed_out);
        // The best-effort close on a pong timeout is not counted in
        // `frames_out` (see fuzz/README.md); every other frame is.
        assert_eq!(
            self.server.peer.frames, frames_out,
            "frames written vs counted"
        );
    }
}

/// A structure-aware run of one connection: the input is decoded into a
/// configuration, a read size, admission's answer to the upgrade (accept,
/// or refuse with a status; at once, or deferred to the next "socket takes
/// output" operation) and a sequence of operations — peer bytes (upgrade
/// requests, raw bytes, client frames, valid or broken), elapsed virtual
/// time (arbitrary or exactly to the next deadline), the application's
/// sends, pushes and closes, the socket taking some output, EOF and I/O
/// errors — driven by the shared test driver in the core's call order.
///
/// Invariants: no panic; phases only move forward, and past `Open` the
/// connection has ended (one `Ended`, after at most one `Opened` or
/// `Refused`, which come after `Upgrade`); the request is held exactly
/// while the upgrade awaits its answer; messages arrive only while open, within
/// `max_message_size`, text as UTF-8; the output is one HTTP response
/// (then frames after a `101`, nothing after an error), whole unmasked
/// frames, no frame at all after a close frame, close codes the RFC
/// allows, control payloads ≤ 125; every message queued (echo, send,
/// push) reaches the peer intact and in order; `send_message` succeeds iff
/// open and `push_frame` obeys `max_pending_bytes` and the slow-consumer
/// policy; the out queue stays under the write
/// budget plus what one read and the application may add; after
/// `handle_timeout` the next deadline is after `now`; the counters match
/// the frames written and messages delivered.
pub fn connection(data: &[u8]) {
    simulate(data);
}

/// Runs [`connection`]'s simulation; returns the counters and how many
/// frames the peer received.
fn simulate(data: &[u8]) -> (Tally, u64) {
    let mut inp = Input::new(data);
    let (cfg, defer, compression) = conn_config(&mut inp);
    let read_chunk = inp.pick(&[65536, 1, 2, 7, 64, 1000]);
    let refusal = inp.pick(&[
        None,
        None,
        None,
        Some(Refusal::TooManyAttempts { retry_after: 30 }),
        Some(Refusal::ServerFull),
    ]);
    let mut sim = Sim::new(cfg, compression, read_chunk, refusal, defer);
    while !inp.is_empty() && !sim.d.conn.is_dead() {
        sim.step(&mut inp);
    }
    sim.finish();
    (sim.d.tally, sim.server.peer.frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_echoes_a_message() {
        // config bytes, read size, admission, upgrade, a masked text
        // frame, drain all.
        let mut data = vec![0; 12];
        data.extend_from_slice(&[0, 0]); // upgrade /echo
        data.extend_from_slice(&[2, 0, 0, 0, 1, 2, 3, 4, 2, b'h', b'i']);
        data.extend_from_slice(&[10, 6]);
        let (tally, frames) = simulate(&data);
        assert_eq!((tally.messages_in, tally.messages_out, frames), (1, 1, 1));
    }

    #[test]
    fn connection_answers_a_deferred_upgrade_later() {
        // As above with admission deferring: the frame waits unread until
        // the answer comes with the "socket takes output" operation.
        let mut data = vec![0x20];
        data.extend_from_slice(&[0; 11]);
        data.extend_from_slice(&[0, 0]);
        data.extend_from_slice(&[2, 0, 0, 0, 1, 2, 3, 4, 2, b'h', b'i']);
        data.extend_from_slice(&[10, 6]);
        let (tally, frames) = simulate(&data);
        assert_eq!((tally.messages_in, tally.messages_out, frames), (1, 1, 1));
    }

    /// The input of a run with compression on (context takeover as
    /// `flags` bits 3-4 say): two compressed client messages echoed.
    pub(crate) fn compressed_echo_input(flags: u8) -> Vec<u8> {
        let mut data = vec![0x40 | flags];
        data.extend_from_slice(&[0; 11]);
        data.extend_from_slice(&[0, 0]); // upgrade /echo, offering deflate
        for _ in 0..2 {
            // A text frame compressed by the peer (flags bit 2), 100 bytes.
            data.extend_from_slice(&[2, 4, 0, 0, 1, 2, 3, 4, 100]);
            data.extend(b"compress me ".iter().cycle().take(100));
        }
        data.extend_from_slice(&[10, 6]);
        data
    }

    #[test]
    fn connection_inflates_and_echoes_compressed_messages() {
        for flags in [0, 0x18, 0x80] {
            let data = compressed_echo_input(flags);
            let (tally, frames) = simulate(&data);
            assert_eq!(
                (tally.messages_in, tally.messages_out, frames),
                (2, 2, 2),
                "flags {flags:#x}"
            );
        }
    }
}
