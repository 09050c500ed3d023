//! Every setting of a wsedge server, declared once: its section, key,
//! type, default, the reason for the default, its flag (if any) and
//! whether it is a secret. The TOML file *is* [`Config`] (serde), and
//! the `WSEDGE_*` variables, the flags of `wsedge serve`,
//! `wsedge.example.toml` and `check-config` are all derived from these
//! declarations (see [`schema`] and the `settings` module).
//!
//! Owns: the values, their defaults and documentation, and [`Config::validate`].
//! Must not touch: reading files, variables or command lines (the
//! `settings` module and the binary do that) or anything at run time.
//!
//! A new setting is one entry below (plus its check in
//! [`Config::validate`] if not every value of its type is usable, and its
//! row in README.md's table); then `wsedge check-config --example >
//! wsedge.example.toml`.

pub mod schema;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admission::net::IpNet;
use crate::protocol::handshake::HandshakeConfig;

/// What happens when a connection's queue is over `max_pending_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumerPolicy {
    /// Close it with 1008 "slow consumer" (default): the client reconnects
    /// and resynchronises instead of silently missing messages.
    #[default]
    Close,
    /// Drop the message for this connection and count it.
    Drop,
}

use schema::section;

/// What happens to a client over its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RatePolicy {
    /// Stop reading its socket until the bucket refills (TCP
    /// back-pressure; nothing is lost). Default.
    #[default]
    Backpressure,
    /// Close it with 1008.
    Close,
}

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

section! {
    /// The whole server: the top-level keys and one field per section of
    /// the file.
    pub struct Config {
        /// Address every core thread listens on (each core has its own
        /// SO_REUSEPORT socket). Loopback by default: exposing a server is a
        /// decision. Port 0 picks a free port, shared by all cores.
        pub listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), flag = "listen";
        /// Core threads, each owning its connections; 0 = one per available
        /// CPU.
        pub cores: usize = 0, flag = "cores";
        /// Pin core thread i to the i-th CPU the process may run on (its
        /// sched_getaffinity set, so a `taskset` mask is respected; wraps
        /// around when there are more cores than CPUs). Each core logs the
        /// CPU it got; a failed pin is a warning and the core runs unpinned.
        pub pin_cores: bool = false, flag = "pin-cores";
        /// Commands each core's inbox holds: deliveries from other cores and
        /// the admin API, and the admin plane's queries. Nothing waits on a
        /// full inbox: a delivery to it is dropped and counted
        /// (wsedge_dropped_total{reason="inbox_full"}), a query is answered
        /// 503. Allocated up front at 80 bytes a slot (1.25 MiB per core at
        /// the default); absorbs a burst of that many publishes to one busy
        /// core (at 100 000 cross-core publishes a second, 160 ms of them).
        pub inbox_capacity: usize = 16_384, flag = "inbox-capacity";

        sections {
            /// Per-connection limits and deadlines.
            "connection" => pub conn: ConnConfig;
            /// Token buckets on what each client sends. 0 = no limit (the
            /// default: the right numbers depend on your application). An unset
            /// burst is one second's worth of the rate.
            "rate_limit" => pub rate_limit: RateLimitConfig;
            /// Channels and users on /ws.
            "hub" => pub hub: HubConfig;
            /// One-time connection tokens.
            "token" => pub token: TokenConfig;
            /// Who may connect, checked before the upgrade completes.
            "admission" => pub admission: AdmissionConfig;
            /// The admin HTTP listener: push API, /metrics, /healthz, /readyz,
            /// the status page (/), the browser client (/client/wsedge.js) and
            /// /demo.
            "admin" => pub admin: AdminConfig;
            /// Gateway mode: speak AWS API Gateway WebSocket APIs' language to a
            /// backend ($connect, $disconnect, $default and custom routes as HTTP
            /// calls) and serve the @connections management API on the admin
            /// listener. Off until backend is set.
            "gateway" => pub gateway: GatewayConfig;
            /// TLS on the WebSocket listener (wss://): off until cert and key are
            /// set. Both are re-read on SIGHUP.
            "tls" => pub tls: TlsConfig;
            /// Nodes joined over a broker (Redis): cluster-wide channels,
            /// users, connections and presence. Off until broker is set: then
            /// the server is one node on its own.
            "cluster" => pub cluster: ClusterConfig;
            /// permessage-deflate (RFC 7692): compressed messages for clients
            /// that offer it. Off by default (CPU and memory per connection
            /// are the price; see README "Compression").
            "compression" => pub compression: CompressionConfig;
            /// Graceful shutdown on SIGTERM/SIGINT.
            "shutdown" => pub shutdown: ShutdownConfig;
            /// Logging.
            "log" => pub log: LogConfig;
        }
    }
}

section! {
    /// Per-connection limits and deadlines (`[connection]`), shared
    /// read-only by every connection of a core.
    pub struct ConnConfig {
        /// The server pings every open connection this often: a dead peer
        /// (cable pulled, NAT mapping gone) is found within ping_interval +
        /// pong_timeout. 25 s stays under the 30 s idle cut of common proxies
        /// and load balancers.
        #[serde(with = "humantime_serde")]
        pub ping_interval: Duration = Duration::from_secs(25), flag = "ping-interval";
        /// After a ping the peer must send something (its pong will do)
        /// within this long, or it is dropped.
        #[serde(with = "humantime_serde")]
        pub pong_timeout: Duration = Duration::from_secs(10), flag = "pong-timeout";
        /// Close (1001) connections that send no data message for this long;
        /// "0s" = off. Off by default: liveness is the ping's job, and
        /// push-only clients never send.
        #[serde(with = "schema::zero_is_off")]
        pub idle_timeout: Option<Duration> = None, flag = "idle-timeout";
        /// Time from accept to a complete upgrade request (slowloris guard;
        /// answered 408), and to the decision on it when admission leaves it
        /// pending (answered 504).
        #[serde(with = "humantime_serde")]
        pub handshake_timeout: Duration = Duration::from_secs(10), flag = "handshake-timeout";
        /// How long to wait for the peer's answer to our close frame (and for
        /// its FIN after ours) before dropping the socket.
        #[serde(with = "humantime_serde")]
        pub close_timeout: Duration = Duration::from_secs(5), flag = "close-timeout";
        /// Largest frame payload accepted, in bytes (close 1009 beyond).
        /// 16 MiB passes the Autobahn suite (its 9.* cases send single
        /// 16 MiB frames); lower it to what your messages really need.
        pub max_frame_size: usize = 16 << 20, flag = "max-frame-size";
        /// Largest assembled message, in bytes (close 1009 beyond); 16 MiB
        /// like max_frame_size.
        pub max_message_size: usize = 16 << 20, flag = "max-message-size";
        /// Bytes queued for one connection beyond which the server stops
        /// reading from it until its queue drains (TCP back-pressure on
        /// echo-style traffic).
        pub write_budget: usize = 1 << 20, flag = "write-budget";
        /// Bytes of pushed (hub) messages one connection may have queued
        /// before the slow-consumer policy applies: this bounds memory per
        /// connection.
        pub max_pending_bytes: usize = 4 << 20, flag = "max-pending-bytes";
        /// Slow-consumer policy: "close" closes a connection over
        /// max_pending_bytes with 1008 so it reconnects and resyncs (nothing
        /// is silently lost); "drop" skips messages for it and counts them.
        pub slow_consumer: SlowConsumerPolicy = SlowConsumerPolicy::Close, flag = "slow-consumer";
        /// Largest upgrade request head, in bytes (431 beyond).
        pub max_request_bytes: usize = 8 * 1024, flag = "max-request-bytes";
        /// Most upgrade request headers (431 beyond).
        pub max_headers: usize = 32, flag = "max-headers";
        /// Subprotocols the server accepts, most preferred first (the
        /// `wsedge` token subprotocol is always answered when a browser uses
        /// it).
        pub subprotocols: Vec<String> = Vec::new(), flag = "subprotocol";
        /// Growth step, in bytes, of the buffer that holds a frame arriving in
        /// pieces: it grows toward the frame's announced length by at most
        /// this much per read, so a header that announces a large frame and
        /// never sends it costs little memory. 256 KiB: four 64 KiB reads.
        pub buffer_growth_step: usize = 256 * 1024;
    }
}

section! {
    /// Per-client token buckets (`[rate_limit]`).
    pub struct RateLimitConfig {
        /// Data messages (and pings) per second a client may send; 0 = no
        /// limit.
        pub messages_per_sec: f64 = 0.0, flag = "rate-msgs";
        /// Burst of the message bucket; 0 = one second's worth of the rate.
        pub messages_burst: f64 = 0.0, flag = "rate-msgs-burst";
        /// Payload bytes per second a client may send; 0 = no limit.
        pub bytes_per_sec: f64 = 0.0, flag = "rate-bytes";
        /// Burst of the byte bucket; 0 = one second's worth of the rate.
        pub bytes_burst: f64 = 0.0, flag = "rate-bytes-burst";
        /// Over a bucket: "backpressure" stops reading the client until its
        /// bucket refills (TCP slows it down, nothing is lost); "close"
        /// closes it with 1008.
        pub policy: RatePolicy = RatePolicy::Backpressure, flag = "rate-policy";
    }
}

section! {
    /// The hub (`[hub]`, the `/ws` route).
    pub struct HubConfig {
        /// Most channels one connection may subscribe to.
        pub max_subscriptions: usize = 100, flag = "max-subscriptions";
        /// Longest channel name, in bytes, from clients and the admin API
        /// alike.
        pub max_channel_len: usize = crate::hub::protocol::MAX_CHANNEL_LEN,
            flag = "max-channel-len";
        /// INSECURE, development only: take the user id from this query
        /// parameter of /ws (e.g. "user" for /ws?user=alice); "" = off.
        #[serde(with = "schema::empty_is_none")]
        pub dev_user_param: Option<String> = None, flag = "dev-user-param";
        /// INSECURE, development only: let clients without a token publish
        /// anywhere.
        pub dev_client_publish: bool = false, flag = "dev-client-publish";
    }
}

section! {
    /// One-time connection tokens (`[token]`).
    pub struct TokenConfig {
        /// HMAC-SHA256 key for one-time connection tokens; "" = no tokens.
        /// With a key, /ws requires a token (mint them with `wsedge token`,
        /// POST /api/tokens, or the documented Python snippet). Secret:
        /// prefer the environment (WSEDGE_TOKEN_KEY) to a file.
        #[serde(with = "schema::empty_is_none")]
        pub key: Option<String> = None, flag = "token-key", secret = true;
        /// The previous key, still accepted while its tokens drain
        /// (rotation); only beside key.
        #[serde(with = "schema::empty_is_none")]
        pub key_previous: Option<String> = None, flag = "token-key-previous", secret = true;
        /// With a key, also accept /ws connections that present no token:
        /// they are anonymous (no user, no per-user quota; they may publish
        /// only with hub.dev_client_publish). A token that is presented is
        /// still verified as when tokens are required: a bad, expired,
        /// replayed or too long-lived one is refused, and a valid one's
        /// user, quota and grants apply.
        pub optional: bool = false, flag = "token-optional";
        /// Longest lifetime of a token: `wsedge token` and POST /api/tokens refuse a longer ttl,
        /// and /ws refuses (401) a token whose exp is further than this
        /// (plus 60 s of clock skew) from now. It bounds how long the replay
        /// memory holds each token id, so a few tokens minted with a huge
        /// lifetime cannot fill it. 1 h: ample to connect with, as tokens
        /// are minted just before use.
        #[serde(with = "humantime_serde")]
        pub max_ttl: Duration = Duration::from_secs(3600), flag = "token-max-ttl";
        /// Token ids remembered against replay (each token works once); ids
        /// are forgotten when their token expires (within max_ttl).
        pub max_used: usize = 1_000_000;
    }
}

section! {
    /// Who may connect, checked before the upgrade completes
    /// (`[admission]`).
    pub struct AdmissionConfig {
        /// Allowed Origin headers: exact (`https://app.example.com`) or a
        /// subdomain pattern (`https://*.example.com`); empty = all.
        pub origins: Vec<String> = Vec::new(), flag = "origin";
        /// Connection attempts per source IP per window (429 with
        /// Retry-After beyond); 0 = unlimited. Loopback counts too:
        /// benchmarks set 0.
        pub max_attempts_per_ip: u32 = 20, flag = "max-attempts-per-ip";
        /// The window of max_attempts_per_ip (fixed, aligned).
        #[serde(with = "humantime_serde")]
        pub attempt_window: Duration = Duration::from_secs(60), flag = "attempt-window";
        /// Proxies whose client_ip_header is believed, as addresses
        /// ("192.0.2.10") or networks ("10.0.0.0/8", "2001:db8::/32"). Only a
        /// request whose TCP peer is one of them has its header read; the
        /// header is walked from the right, skipping these, and the first
        /// other address is the client (see README, "Client IP behind
        /// proxies").
        pub trusted_proxies: Vec<IpNet> = Vec::new(), flag = "trusted-proxy";
        /// The header trusted proxies append the client's address to:
        /// "x-forwarded-for" (or any header of that form, a comma-separated
        /// list) or "forwarded" (RFC 7239, for= nodes). Every line of it
        /// counts, in order. Read only from a trusted proxy; one it cannot
        /// read to an untrusted address leaves the proxy as the client and is
        /// counted (wsedge_forwarded_malformed_total).
        pub client_ip_header: String = "x-forwarded-for".into(), flag = "client-ip-header";
        /// Per-IP limits (max_attempts_per_ip, max_connections_per_ip) count
        /// an IPv6 client by the first this-many bits of its address: one
        /// host is commonly given a whole /64, so counting each /128 would
        /// give it 2^64 budgets. IPv4 (and IPv4-mapped IPv6) counts per
        /// address. 1 to 128.
        pub ipv6_prefix: u8 = 64, flag = "ipv6-prefix";
        /// Open connections in total (503 beyond).
        pub max_connections: u32 = 500_000, flag = "max-connections";
        /// Open connections per source IP (429 beyond).
        pub max_connections_per_ip: u32 = 10_000, flag = "max-connections-per-ip";
        /// Open connections per token user (429 beyond).
        pub max_connections_per_user: u32 = 100, flag = "max-connections-per-user";
    }
}

section! {
    /// The admin plane (`[admin]`).
    pub struct AdminConfig {
        /// Address of the admin HTTP listener, or "off". Loopback by
        /// default.
        #[serde(with = "schema::addr_or_off")]
        pub listen: Option<SocketAddr> = Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            flag = "admin";
        /// Bearer key of the API and /metrics; required on a non-loopback
        /// address; "" = none. Secret: prefer WSEDGE_ADMIN_KEY.
        #[serde(with = "schema::empty_is_none")]
        pub key: Option<String> = None, flag = "admin-key", secret = true;
        /// Give the chat demo (/demo) a key of its own when there is no token
        /// key. The server makes a random key at start, kept in memory only
        /// (never printed or logged), and POST /api/demo/tokens mints
        /// one-time 60 s tokens with it that may subscribe and publish on
        /// "demo:*" and nothing else. Clients without a token still may not
        /// publish. Unused when token.key is set (the demo then takes its
        /// tokens from POST /api/tokens) or the admin listener is off.
        /// false = no demo key (the demo can then only read).
        pub demo: bool = true, flag = "no-demo";
        /// Largest request body, in bytes (413 beyond): the largest message
        /// the API can push. 1 MiB: far above a typical pushed message,
        /// small enough that a few concurrent requests cannot hurt.
        pub max_body_bytes: usize = 1 << 20;
        /// Bytes of request bodies held at once over all admin connections
        /// (a body reserves its Content-Length, or max_body_bytes when it
        /// has none, until its request is answered); a request that finds
        /// the budget spent is answered 503 at once. 32 MiB: 32 largest
        /// bodies in flight, while many slow uploads cannot grow the
        /// process by more than this. At least max_body_bytes.
        pub max_body_memory: usize = 32 << 20;
        /// Worker threads of the admin plane's runtime (one tokio runtime,
        /// apart from the cores). One: requests are short and never wait on
        /// a slow client or a core on a worker (see blocking_threads).
        pub threads: usize = 1;
        /// Most threads for requests that wait on the cores' answers
        /// (channel and user lookups, /metrics, status snapshots, up to
        /// query_timeout each); more such requests queue. Four: a stuck
        /// core delays these, never /healthz or the accept loop.
        pub blocking_threads: usize = 4;
        /// Most admin connections open at once; beyond, a new connection
        /// is answered 503 and closed at once. 1024: each costs a few KiB
        /// until it sends a body (then up to max_body_bytes), and far more
        /// than any operator's tooling opens.
        pub max_connections: usize = 1024;
        /// Largest request head (request line and headers), in bytes (431
        /// beyond). 16 KiB: the API's requests are a few hundred bytes; a
        /// browser with cookies for localhost stays well under it. At
        /// least 1024.
        pub max_header_bytes: usize = 16 * 1024;
        /// Most header lines in a request (431 beyond).
        pub max_headers: usize = 64;
        /// Time to receive a whole request head, counted from when the
        /// server starts waiting for it (so also how long a kept-alive
        /// connection may wait for its next request); closed after it
        /// (slowloris guard).
        #[serde(with = "humantime_serde")]
        pub header_read_timeout: Duration = Duration::from_secs(10);
        /// Time to receive a whole request body once its head arrived (408
        /// beyond, and the connection is closed): a body that never comes
        /// holds a connection slot for no longer.
        #[serde(with = "humantime_serde")]
        pub body_read_timeout: Duration = Duration::from_secs(10);
        /// A connection on which no byte moved either way for this long is
        /// closed (a request waiting on the cores is bounded by
        /// query_timeout, well under it).
        #[serde(with = "humantime_serde")]
        pub idle_timeout: Duration = Duration::from_secs(60);
        /// A connection whose client has not made room for what the server
        /// writes (an answer, or a status stream it stopped reading) within
        /// this long is dropped.
        #[serde(with = "humantime_serde")]
        pub write_timeout: Duration = Duration::from_secs(10);
        /// Status event streams (GET /api/status/stream) open at once (503
        /// beyond).
        pub max_streams: usize = 16;
        /// Status event streams open at once from one client address (429
        /// beyond), so that one client cannot hold every stream.
        pub max_streams_per_ip: usize = 4;
        /// How often a status stream sends a snapshot.
        #[serde(with = "humantime_serde")]
        pub status_interval: Duration = Duration::from_secs(1);
        /// Host names (besides localhost, 127.0.0.1, `[::1]` and the address a
        /// connection arrived on) that requests may name in their Host
        /// header: "name" for any port, "name:port" for one. Any other Host
        /// is answered 403 (DNS rebinding guard). Set it when the API is
        /// reached by a name, e.g. ["wsedge-admin.internal"].
        pub allowed_hosts: Vec<String> = Vec::new();
        /// Origins (e.g. `https://ops.example`) whose pages may call the API
        /// from a browser: their POST/DELETE are accepted, CORS preflights
        /// answered and Access-Control-Allow-Origin sent to them. Empty (the
        /// default): no CORS headers, and a state-changing request whose
        /// Origin is not the admin plane's own is answered 403.
        pub cors_origins: Vec<String> = Vec::new();
        /// How long a request that asks the cores (channel and user lookups,
        /// /metrics) waits for their answers; a core that has not answered by
        /// then is left out. 2 s: a core answers within one loop turn, so
        /// only a stuck core takes this long.
        #[serde(with = "humantime_serde")]
        pub query_timeout: Duration = Duration::from_secs(2);
        /// Serve the admin plane over https: with tls_cert/tls_key when set,
        /// else with the WebSocket listener's tls.cert/tls.key. Re-read on
        /// SIGHUP like those.
        pub tls: bool = false, flag = "admin-tls";
        /// PEM certificate chain of the admin listener's own; "" = tls.cert.
        /// Only with tls = true.
        #[serde(with = "schema::empty_is_none")]
        pub tls_cert: Option<String> = None;
        /// PEM private key for tls_cert; "" = tls.key.
        #[serde(with = "schema::empty_is_none")]
        pub tls_key: Option<String> = None;
    }
}

/// How the gateway formats its calls to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestFormat {
    /// API Gateway's HTTP_PROXY integration: `POST {url}` with the
    /// connection in headers and the message as the body (default).
    #[default]
    HttpProxy,
    /// API Gateway's Lambda proxy event as a JSON body, answered with
    /// `{"statusCode": …, "headers": …, "body": …}`.
    LambdaProxy,
}

/// One custom route of the gateway (`[[gateway.routes]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoute {
    /// The route key the route selection expression must yield
    /// (`sendMessage`); `$connect`, `$disconnect` or `$default` replace
    /// that route's URL.
    pub key: String,
    /// The integration URL (`http://host:port/path`).
    pub url: String,
    /// Send the backend's answer body back to the client (API Gateway's
    /// route response); one-way otherwise.
    #[serde(default)]
    pub two_way: bool,
}

section! {
    /// Gateway mode (`[gateway]`).
    pub struct GatewayConfig {
        /// Base URL of the backend, e.g. "http://127.0.0.1:8000/ws/"; "" = gateway
        /// mode off. $connect calls {backend}connect, $disconnect
        /// {backend}disconnect, $default {backend}default (the layout of
        /// django-aws-api-gateway-websockets). http:// only (put a TLS proxy
        /// in front of an https backend).
        #[serde(with = "schema::empty_is_none")]
        pub backend: Option<String> = None, flag = "gateway-backend";
        /// The API id sent as X-Amzn-Apigateway-Api-Id and in the User-Agent
        /// AmazonAPIGateway_{api_id} (Django: the ApiGateway row's api_id).
        pub api_id: String = "wsedge".into(), flag = "gateway-api-id";
        /// The stage: clients connect to ws://HOST:PORT/{stage} and the
        /// management API is at http://ADMIN/{stage}/@connections/{id}.
        pub stage: String = "production".into(), flag = "gateway-stage";
        /// The region @connections requests must be signed for (SigV4,
        /// service execute-api).
        pub region: String = "us-east-1".into(), flag = "gateway-region";
        /// Access key id of the @connections API's SigV4 signatures (what
        /// boto3 is given as aws_access_key_id); "" = no SigV4 (then only the
        /// admin bearer key, or nothing without one, on loopback). Prefer
        /// WSEDGE_GATEWAY_ACCESS_KEY_ID.
        #[serde(with = "schema::empty_is_none")]
        pub access_key_id: Option<String> = None, secret = true;
        /// The secret key of those signatures. Secret: prefer
        /// WSEDGE_GATEWAY_SECRET_ACCESS_KEY.
        #[serde(with = "schema::empty_is_none")]
        pub secret_access_key: Option<String> = None, secret = true;
        /// Route selection expression: the message's JSON field whose string
        /// value is the route key; non-JSON or no match goes to $default.
        pub route_selection: String = "$request.body.action".into();
        /// Whether messages no custom route takes go to {backend}default
        /// ($default). false: they are answered
        /// {"message":"Forbidden","connectionId":…,"requestId":…} as by an API
        /// Gateway without a $default route.
        pub default_route: bool = true;
        /// Longest wait for one backend call (API Gateway: 29 s). A $connect
        /// also ends at connection.handshake_timeout (504), whichever comes
        /// first.
        #[serde(with = "humantime_serde")]
        pub integration_timeout: Duration = Duration::from_secs(29);
        /// "http_proxy" (default: headers and the raw message, as API
        /// Gateway's HTTP_PROXY integrations) or "lambda_proxy" (the Lambda
        /// proxy event as JSON).
        pub request_format: RequestFormat = RequestFormat::HttpProxy;
        /// How long a $disconnect is retried (with backoff, up to 2 s apart)
        /// until the backend answers 2xx; then it is given up, counted and
        /// logged.
        #[serde(with = "humantime_serde")]
        pub disconnect_retry: Duration = Duration::from_secs(600);
        /// Messages of one connection sent to the backend and not yet
        /// answered beyond which the server stops reading that client (TCP
        /// back-pressure; nothing is lost). Callbacks of one connection go
        /// one at a time, in order; 8 absorbs a burst.
        pub max_in_flight: u32 = 8;
        /// Events (connects, messages, disconnects) the cores may have queued
        /// for the gateway at once. A connect that finds it full is refused
        /// 503 and a message closes its connection 1013 (both counted); a
        /// disconnect waits on its core and is never lost. 65 536 events
        /// take 3 MiB.
        pub queue_capacity: usize = 65_536;
        /// On a graceful shutdown, how long the server waits for the
        /// $disconnects of the drained connections (and their retries)
        /// before it exits.
        #[serde(with = "humantime_serde")]
        pub shutdown_timeout: Duration = Duration::from_secs(30);
        /// Custom routes: [[gateway.routes]] key = "sendMessage", url =
        /// "http://127.0.0.1:8000/ws/sendMessage", two_way = false.
        pub routes: Vec<GatewayRoute> = Vec::new();
    }
}

/// A feature that is either on or off, written `on`/`off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    #[default]
    Off,
}

section! {
    /// permessage-deflate (`[compression]`): what the server accepts of a
    /// client's offer and how it compresses. Memory per compressing
    /// connection is bounded by the window sizes; inflating is bounded by
    /// connection.max_message_size.
    pub struct CompressionConfig {
        /// "on" answers a client's permessage-deflate offer (browsers and
        /// most libraries make one); "off" (default, as uWebSockets and
        /// Centrifugo) never compresses.
        pub mode: Switch = Switch::Off, flag = "compression";
        /// Reset the server's compressor after every message. true (default):
        /// a connection keeps no compressor between messages (the core's
        /// shared one serves all), and a published message is compressed
        /// once per core for all its subscribers; false: repeated content
        /// compresses about twice as well, at ≈ 400 KiB per connection with
        /// client context takeover too (PERF.md "Compression").
        pub server_no_context_takeover: bool = true;
        /// Ask clients to reset theirs after every message. true (default):
        /// the server keeps no inflater window per connection (the core's
        /// shared inflater serves all); what clients send compresses less.
        pub client_no_context_takeover: bool = true;
        /// Largest LZ77 window the server compresses with, 9 to 15 (zlib
        /// cannot compress with 8); smaller saves some memory with context
        /// takeover (≈ 300 KiB instead of ≈ 420 KiB per connection at 10
        /// bits both ways), costs ratio.
        pub server_max_window_bits: u8 = 15;
        /// Largest window the server asks clients to compress with, 8 to
        /// 15 (sent only to clients that offered client_max_window_bits).
        pub client_max_window_bits: u8 = 15;
        /// Messages shorter than this many bytes are sent uncompressed:
        /// deflate's block overhead and the CPU are not worth it on short
        /// payloads.
        pub min_size: usize = 64, flag = "compression-min-size";
        /// zlib compression level, 0 (stored) to 9 (smallest). 1: on a
        /// 1.3 KiB JSON message it costs a third of the CPU of zlib's
        /// default 6 for a 10-point worse ratio (PERF.md "Compression");
        /// an edge server is CPU-bound long before it is bandwidth-bound.
        pub level: u32 = 1;
    }
}

impl CompressionConfig {
    /// Whether the server negotiates permessage-deflate at all.
    pub fn enabled(&self) -> bool {
        self.mode == Switch::On
    }

    /// The negotiation policy these settings give.
    pub fn policy(&self) -> crate::protocol::deflate_offer::DeflatePolicy {
        crate::protocol::deflate_offer::DeflatePolicy {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits,
            client_max_window_bits: self.client_max_window_bits,
        }
    }

    fn validate(&self) -> Result<(), InvalidSetting> {
        if !(9..=15).contains(&self.server_max_window_bits) {
            return Err(invalid(
                "compression.server_max_window_bits",
                "must be 9 to 15",
            ));
        }
        if !(8..=15).contains(&self.client_max_window_bits) {
            return Err(invalid(
                "compression.client_max_window_bits",
                "must be 8 to 15",
            ));
        }
        if self.level > 9 {
            return Err(invalid("compression.level", "must be 0 to 9"));
        }
        Ok(())
    }
}

section! {
    /// TLS on the WebSocket listener (`[tls]`): rustls, TLS 1.2 and 1.3,
    /// ALPN `http/1.1`.
    pub struct TlsConfig {
        /// PEM file with the certificate chain, leaf first; "" = no TLS
        /// (plain ws://). Re-read on SIGHUP: new handshakes use the new
        /// certificate, open connections keep theirs.
        #[serde(with = "schema::empty_is_none")]
        pub cert: Option<String> = None, flag = "tls-cert";
        /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or
        /// SEC1); "" = none. The path is shown, the key itself is never
        /// logged. Re-read on SIGHUP with the certificate.
        #[serde(with = "schema::empty_is_none")]
        pub key: Option<String> = None, flag = "tls-key";
    }
}

section! {
    /// Nodes joined over a broker (`[cluster]`).
    pub struct ClusterConfig {
        /// The broker every node of the cluster connects to, e.g.
        /// "redis://127.0.0.1:6379" (a password goes in the URL:
        /// redis://:secret@host:6379), or "nats://127.0.0.1:4222" (routing
        /// only: presence is then node-local); "" = no cluster (one node on
        /// its own). Secret (the URL may hold a password): prefer
        /// WSEDGE_CLUSTER_BROKER.
        #[serde(with = "schema::empty_is_none")]
        pub broker: Option<String> = None, flag = "broker", secret = true;
        /// This node's id, 1 to 16777215 (24 bits): it is part of every
        /// connection id the node gives out, so sends reach the right node.
        /// 0 = drawn at random when the process starts (stable for its
        /// life). Two live nodes must not share one.
        pub node_id: u32 = 0, flag = "node-id";
        /// Prefix of every broker subject and presence key, so clusters can
        /// share one broker.
        pub prefix: String = "wsedge:".into(), flag = "cluster-prefix";
        /// How long a node that stopped renewing its lease (killed, cut off)
        /// still counts in presence; its lease is renewed every third of
        /// this. Seconds are fine for tests.
        #[serde(with = "humantime_serde")]
        pub presence_ttl: Duration = Duration::from_secs(30);
        /// The broker liveness probe: a node publishes to its own subject this
        /// often and expects it back within the same time; a broker that is
        /// up but not delivering (SIGSTOPped, wedged) is noticed within two
        /// intervals, and commands to it time out after one.
        #[serde(with = "humantime_serde")]
        pub probe_interval: Duration = Duration::from_secs(2);
        /// Longest wait between two reconnect attempts (exponential backoff
        /// from 100 ms, with jitter, up to this).
        #[serde(with = "humantime_serde")]
        pub reconnect_backoff_max: Duration = Duration::from_secs(5);
        /// How long a node stays subscribed to a channel's subject after its
        /// last local subscriber left (a channel that empties and fills
        /// again costs no unsubscribe/subscribe pair).
        #[serde(with = "humantime_serde")]
        pub unsubscribe_linger: Duration = Duration::from_secs(2);
        /// How long an operation on another node's connection (the
        /// gateway's @connections, the admin API's send and disconnect of
        /// another node's id) waits for that node's answer; past it the
        /// caller is told the outcome is unknown (504). Also how long a
        /// client's subscribe ack waits for this node's broker
        /// subscription to a new channel.
        #[serde(with = "humantime_serde")]
        pub request_timeout: Duration = Duration::from_secs(2);
        /// Messages for other nodes queued on their way to the broker. A
        /// message that finds it full is dropped and counted
        /// (wsedge_cluster_not_forwarded_total{reason="queue_full"}); 65 536
        /// absorbs a broker round trip at high rates.
        pub queue_capacity: usize = 65_536;
        /// true: /readyz answers 503 while the broker link is down (this node
        /// then only reaches its own connections). false (default): 200 with
        /// "degraded" in the body, so a load balancer keeps the node.
        pub required: bool = false;
    }
}

section! {
    /// Graceful shutdown (`[shutdown]`).
    pub struct ShutdownConfig {
        /// On SIGTERM/SIGINT the server stops accepting, /readyz turns 503,
        /// and the 1001 closes are spread evenly over this window so that
        /// clients do not all reconnect to the remaining instances in the
        /// same instant.
        #[serde(with = "humantime_serde")]
        pub drain_window: Duration = Duration::from_secs(10), flag = "drain-window";
        /// After the last close was sent, the time allowed for close
        /// handshakes.
        #[serde(with = "humantime_serde")]
        pub drain_timeout: Duration = Duration::from_secs(5), flag = "drain-timeout";
    }
}

section! {
    /// Logging (`[log]`).
    pub struct LogConfig {
        /// A tracing filter ("info", "debug", "wsedge=debug,info"). Debug logs
        /// one line per connection opened and ended (ids and reasons only).
        /// The WSEDGE_LOG variable, when set, takes precedence.
        pub level: String = "info".into(), flag = "log-level";
        /// Log format: "text" for people, "json" for log pipelines (one
        /// object per line).
        pub format: LogFormat = LogFormat::Text, flag = "log-format";
        /// Period of the counts line.
        #[serde(with = "humantime_serde")]
        pub stats_interval: Duration = Duration::from_secs(60), flag = "stats-interval";
    }
}

/// Token buckets in effect for one client (from [`RateLimitConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Data messages (and pings) per second, and the burst.
    pub msgs_per_sec: f64,
    pub msgs_burst: f64,
    /// Payload bytes per second, and the burst.
    pub bytes_per_sec: f64,
    pub bytes_burst: f64,
    pub policy: RatePolicy,
}

impl RateLimitConfig {
    /// The buckets, or `None` when neither rate is limited. An unset rate
    /// is unlimited; an unset burst is one second's worth of the rate.
    pub fn buckets(&self) -> Option<RateLimit> {
        if self.messages_per_sec <= 0.0 && self.bytes_per_sec <= 0.0 {
            return None;
        }
        let rate = |v: f64| if v > 0.0 { v } else { f64::MAX / 4.0 };
        let burst = |b: f64, v: f64| if b > 0.0 { b } else { rate(v) };
        Some(RateLimit {
            msgs_per_sec: rate(self.messages_per_sec),
            msgs_burst: burst(self.messages_burst, self.messages_per_sec),
            bytes_per_sec: rate(self.bytes_per_sec),
            bytes_burst: burst(self.bytes_burst, self.bytes_per_sec),
            policy: self.policy,
        })
    }
}

impl TokenConfig {
    /// The keys a token may be signed with: the current one first, then
    /// the previous one during a rotation.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.key
            .iter()
            .chain(&self.key_previous)
            .map(String::as_str)
    }
}

impl ClusterConfig {
    /// Whether the node joins a cluster (a broker is set).
    pub fn enabled(&self) -> bool {
        self.broker.is_some()
    }

    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.node_id > 0xFF_FFFF {
            return Err(invalid("cluster.node_id", "must be 0 (random) to 16777215"));
        }
        let Some(broker) = &self.broker else {
            return Ok(());
        };
        // Never quote the URL: it may hold a password.
        if !broker.starts_with("redis://") && !broker.starts_with("nats://") {
            return Err(invalid(
                "cluster.broker",
                "must be a redis:// or nats:// URL",
            ));
        }
        if self
            .prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid("cluster.prefix", "no spaces or control characters"));
        }
        for (key, d) in [
            ("cluster.presence_ttl", self.presence_ttl),
            ("cluster.probe_interval", self.probe_interval),
            ("cluster.reconnect_backoff_max", self.reconnect_backoff_max),
            ("cluster.request_timeout", self.request_timeout),
        ] {
            if d < Duration::from_millis(100) {
                return Err(invalid(key, "must be at least 100ms"));
            }
        }
        if self.queue_capacity == 0 {
            return Err(invalid("cluster.queue_capacity", "must be more than 0"));
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// Whether gateway mode is on (a backend is set).
    pub fn enabled(&self) -> bool {
        self.backend.is_some()
    }

    fn validate(&self) -> Result<(), InvalidSetting> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        let http_url = |u: &str| {
            u.parse::<http::Uri>()
                .is_ok_and(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some())
        };
        if !http_url(backend) {
            return Err(invalid(
                "gateway.backend",
                "must be an http:// URL with a host (e.g. http://127.0.0.1:8000/ws/)",
            ));
        }
        if self.stage.is_empty()
            || !self
                .stage
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "gateway.stage",
                "must be 1 or more of A-Z a-z 0-9 - _",
            ));
        }
        if self.api_id.is_empty() || self.api_id.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(invalid(
                "gateway.api_id",
                "must be printable ASCII, no spaces",
            ));
        }
        if let Err(e) = self
            .route_selection
            .parse::<crate::gateway::route::Selection>()
        {
            return Err(invalid("gateway.route_selection", e.to_string()));
        }
        for (key, d) in [
            ("gateway.integration_timeout", self.integration_timeout),
            ("gateway.disconnect_retry", self.disconnect_retry),
            ("gateway.shutdown_timeout", self.shutdown_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0s"));
            }
        }
        if self.max_in_flight == 0 {
            return Err(invalid("gateway.max_in_flight", "must be more than 0"));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("gateway.queue_capacity", "must be more than 0"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(invalid(
                "gateway.secret_access_key",
                "set both gateway.access_key_id and gateway.secret_access_key, or neither",
            ));
        }
        for r in &self.routes {
            if r.key.is_empty() || !http_url(&r.url) {
                return Err(invalid(
                    "gateway.routes",
                    format!(
                        "route {:?}: needs a key and an http:// url with a host",
                        r.key
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A value that parses but cannot be used; names the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub reason: String,
}

/// The longest connection timeout accepted (24 days): a connection keeps
/// its deadlines as 32-bit milliseconds (`conn::Tick`), compared by
/// wrapping difference, which is right while every deadline is less than
/// 2^31 ms (≈ 24.8 days) ahead.
pub const MAX_CONN_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 3600);

fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Core threads to run: `cores`, or one per available CPU for 0.
    pub fn core_count(&self) -> usize {
        match self.cores {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The upgrade's limits and choices, as the protocol layer takes them
    /// (the client-IP header is admission's: it reads it off the parsed
    /// request, only from a trusted proxy).
    pub fn handshake(&self) -> HandshakeConfig<'_> {
        HandshakeConfig {
            max_request_bytes: self.conn.max_request_bytes,
            max_headers: self.conn.max_headers,
            subprotocols: &self.conn.subprotocols,
        }
    }

    /// The WebSocket listener's certificate and key files, when it speaks
    /// TLS.
    pub fn ws_tls(&self) -> Option<(&str, &str)> {
        Some((self.tls.cert.as_deref()?, self.tls.key.as_deref()?))
    }

    /// The admin listener's certificate and key files, when it speaks TLS
    /// (its own, else the WebSocket listener's).
    pub fn admin_tls(&self) -> Option<(&str, &str)> {
        if !self.admin.tls {
            return None;
        }
        match (
            self.admin.tls_cert.as_deref(),
            self.admin.tls_key.as_deref(),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => self.ws_tls(),
        }
    }

    /// Whether the server makes the chat demo's ephemeral key at start
    /// (see `admin.demo`): only without a token key (with one, the demo
    /// uses POST /api/tokens) and with the admin plane that serves it.
    pub fn wants_demo_key(&self) -> bool {
        self.admin.demo && self.admin.listen.is_some() && self.token.key.is_none()
    }

    /// Checks what the types alone do not: the first unusable value,
    /// naming its key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let c = &self.conn;
        let a = &self.admin;
        for (key, d) in [
            ("connection.ping_interval", c.ping_interval),
            ("connection.pong_timeout", c.pong_timeout),
            ("connection.handshake_timeout", c.handshake_timeout),
            ("connection.close_timeout", c.close_timeout),
            ("admission.attempt_window", self.admission.attempt_window),
            ("admin.query_timeout", a.query_timeout),
            ("admin.header_read_timeout", a.header_read_timeout),
            ("admin.body_read_timeout", a.body_read_timeout),
            ("admin.idle_timeout", a.idle_timeout),
            ("admin.write_timeout", a.write_timeout),
            ("admin.status_interval", a.status_interval),
            ("log.stats_interval", self.log.stats_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0s"));
            }
        }
        // Connection deadlines are 32-bit milliseconds (`conn::Tick`).
        for (key, d) in [
            ("connection.ping_interval", Some(c.ping_interval)),
            ("connection.pong_timeout", Some(c.pong_timeout)),
            ("connection.idle_timeout", c.idle_timeout),
            ("connection.handshake_timeout", Some(c.handshake_timeout)),
            ("connection.close_timeout", Some(c.close_timeout)),
        ] {
            if d.is_some_and(|d| d > MAX_CONN_TIMEOUT) {
                return Err(invalid(key, "must be at most 24d"));
            }
        }
        for (key, v) in [
            ("connection.max_frame_size", c.max_frame_size),
            ("connection.max_message_size", c.max_message_size),
            ("connection.write_budget", c.write_budget),
            ("connection.max_pending_bytes", c.max_pending_bytes),
            ("connection.max_request_bytes", c.max_request_bytes),
            ("connection.buffer_growth_step", c.buffer_growth_step),
            ("inbox_capacity", self.inbox_capacity),
            ("hub.max_channel_len", self.hub.max_channel_len),
            ("admin.max_body_bytes", a.max_body_bytes),
            ("admin.threads", a.threads),
            ("admin.blocking_threads", a.blocking_threads),
            ("admin.max_connections", a.max_connections),
            ("admin.max_headers", a.max_headers),
            ("admin.max_streams", a.max_streams),
            ("admin.max_streams_per_ip", a.max_streams_per_ip),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be more than 0"));
            }
        }
        if a.max_body_memory < a.max_body_bytes {
            return Err(invalid(
                "admin.max_body_memory",
                "must be at least admin.max_body_bytes",
            ));
        }
        if a.max_header_bytes < 1024 {
            return Err(invalid("admin.max_header_bytes", "must be at least 1024"));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls.key",
                "set both tls.cert and tls.key, or neither",
            ));
        }
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            return Err(invalid(
                "admin.tls_key",
                "set both admin.tls_cert and admin.tls_key, or neither",
            ));
        }
        if a.tls && a.tls_cert.is_none() && self.tls.cert.is_none() {
            return Err(invalid(
                "admin.tls",
                "needs a certificate: admin.tls_cert/admin.tls_key or tls.cert/tls.key",
            ));
        }
        if !a.tls && a.tls_cert.is_some() {
            return Err(invalid("admin.tls_cert", "only with admin.tls = true"));
        }
        let r = &self.rate_limit;
        for (key, v) in [
            ("rate_limit.messages_per_sec", r.messages_per_sec),
            ("rate_limit.messages_burst", r.messages_burst),
            ("rate_limit.bytes_per_sec", r.bytes_per_sec),
            ("rate_limit.bytes_burst", r.bytes_burst),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(key, "must be a number ≥ 0"));
            }
        }
        if !(1..=128).contains(&self.admission.ipv6_prefix) {
            return Err(invalid("admission.ipv6_prefix", "must be 1 to 128"));
        }
        // Token lifetimes are whole seconds (`exp` is Unix seconds).
        if self.token.max_ttl < Duration::from_secs(1) {
            return Err(invalid("token.max_ttl", "must be at least 1s"));
        }
        if self.token.key.is_none() && self.token.key_previous.is_some() {
            return Err(invalid(
                "token.key_previous",
                "set only during a rotation, beside token.key",
            ));
        }
        self.gateway.validate()?;
        self.cluster.validate()?;
        self.compression.validate()?;
        if let Some(listen) = a.listen {
            if a.key.is_none() && !listen.ip().is_loopback() {
                return Err(invalid(
                    "admin.key",
                    "required when admin.listen is not a loopback address",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn invalid_values_name_their_key() {
        let key = |cfg: &Config| cfg.validate().unwrap_err().key;
        let mut c = Config::default();
        c.admin.listen = Some("0.0.0.0:9090".parse().unwrap());
        assert_eq!(key(&c), "admin.key");
        c.admin.key = Some("k".into());
        assert!(c.validate().is_ok());
        let mut c = Config::default();
        c.conn.ping_interval = Duration::ZERO;
        assert_eq!(key(&c), "connection.ping_interval");
        let mut c = Config::default();
        c.conn.idle_timeout = Some(Duration::from_secs(25 * 24 * 3600));
        assert_eq!(key(&c), "connection.idle_timeout");
        let mut c = Config::default();
        c.conn.buffer_growth_step = 0;
        assert_eq!(key(&c), "connection.buffer_growth_step");
        let mut c = Config::default();
        c.admin.threads = 0;
        assert_eq!(key(&c), "admin.threads");
        let mut c = Config::default();
        c.admin.max_header_bytes = 100;
        assert_eq!(key(&c), "admin.max_header_bytes");
        let mut c = Config::default();
        c.token.key_previous = Some("old".into());
        assert_eq!(key(&c), "token.key_previous");
        let mut c = Config::default();
        c.token.max_ttl = Duration::from_millis(500);
        assert_eq!(key(&c), "token.max_ttl");
        let mut c = Config::default();
        c.rate_limit.bytes_burst = f64::NAN;
        assert_eq!(key(&c), "rate_limit.bytes_burst");
        let mut c = Config::default();
        c.admission.ipv6_prefix = 0;
        assert_eq!(key(&c), "admission.ipv6_prefix");
        c.admission.ipv6_prefix = 129;
        assert_eq!(key(&c), "admission.ipv6_prefix");
        c.admission.ipv6_prefix = 128;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn tls_files_come_in_pairs_and_admin_tls_needs_a_certificate() {
        let key = |cfg: &Config| cfg.validate().unwrap_err().key;
        let mut c = Config::default();
        assert_eq!((c.ws_tls(), c.admin_tls()), (None, None));
        c.tls.cert = Some("c.pem".into());
        assert_eq!(key(&c), "tls.key");
        c.tls.key = Some("k.pem".into());
        assert!(c.validate().is_ok());
        assert_eq!(c.ws_tls(), Some(("c.pem", "k.pem")));
        assert_eq!(c.admin_tls(), None, "admin.tls is off by default");
        c.admin.tls = true;
        assert_eq!(c.admin_tls(), Some(("c.pem", "k.pem")), "reuses [tls]");
        c.admin.tls_cert = Some("a.pem".into());
        assert_eq!(key(&c), "admin.tls_key");
        c.admin.tls_key = Some("ak.pem".into());
        assert_eq!(c.admin_tls(), Some(("a.pem", "ak.pem")), "its own pair");
        c.tls = TlsConfig::default();
        assert!(c.validate().is_ok(), "its own pair without [tls]");
        c.admin.tls_cert = None;
        c.admin.tls_key = None;
        assert_eq!(key(&c), "admin.tls");
        c.admin.tls = false;
        c.admin.tls_cert = Some("a.pem".into());
        c.admin.tls_key = Some("ak.pem".into());
        assert_eq!(key(&c), "admin.tls_cert");
        // In a file; "" = none.
        let parsed: Config = toml::from_str(
            "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\n[admin]\ntls = true\ntls_cert = \"\"\n",
        )
        .unwrap();
        assert!(parsed.validate().is_ok());
        assert_eq!(parsed.admin_tls(), Some(("c.pem", "k.pem")));
    }

    #[test]
    fn cluster_settings_are_checked_and_never_quote_the_broker_url() {
        let err = |cfg: &Config| cfg.validate().unwrap_err();
        let mut c = Config::default();
        c.cluster.presence_ttl = Duration::ZERO;
        assert!(c.validate().is_ok(), "no broker: not checked");
        c.cluster.node_id = 1 << 24;
        assert_eq!(err(&c).key, "cluster.node_id");
        c.cluster.node_id = 0;
        c.cluster.broker = Some("http://:hunter2@b:1".into());
        let e = err(&c);
        assert_eq!(e.key, "cluster.broker");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        c.cluster.broker = Some("nats://127.0.0.1:4222".into());
        assert_eq!(err(&c).key, "cluster.presence_ttl");
        c.cluster.presence_ttl = Duration::from_secs(1);
        assert!(c.validate().is_ok());
        c.cluster.broker = Some("redis://:hunter2@127.0.0.1:6379".into());
        assert!(c.validate().is_ok());
        c.cluster.queue_capacity = 0;
        assert_eq!(err(&c).key, "cluster.queue_capacity");
    }

    #[test]
    fn gateway_settings_are_checked_only_in_gateway_mode() {
        let key = |cfg: &Config| cfg.validate().unwrap_err().key;
        let mut c = Config::default();
        c.gateway.stage = String::new();
        assert!(c.validate().is_ok(), "off: not checked");
        c.gateway.backend = Some("http://127.0.0.1:8000/ws/".into());
        assert_eq!(key(&c), "gateway.stage");
        c.gateway.stage = "dev".into();
        assert!(c.validate().is_ok());
        for bad in ["https://b/ws/", "127.0.0.1:8000", "http:///x"] {
            c.gateway.backend = Some(bad.into());
            assert_eq!(key(&c), "gateway.backend", "{bad}");
        }
        c.gateway.backend = Some("http://b:1/ws/".into());
        c.gateway.route_selection = "$request.header.x".into();
        assert_eq!(key(&c), "gateway.route_selection");
        c.gateway.route_selection = "$request.body.type".into();
        c.gateway.access_key_id = Some("AKID".into());
        assert_eq!(key(&c), "gateway.secret_access_key");
        c.gateway.secret_access_key = Some("s".into());
        c.gateway.routes = vec![GatewayRoute {
            key: "x".into(),
            url: "ftp://b/".into(),
            two_way: false,
        }];
        assert_eq!(key(&c), "gateway.routes");
        c.gateway.routes[0].url = "http://b:2/x".into();
        c.gateway.max_in_flight = 0;
        assert_eq!(key(&c), "gateway.max_in_flight");
        c.gateway.max_in_flight = 1;
        assert!(c.validate().is_ok());
        // [[gateway.routes]] in a file.
        let parsed: Config = toml::from_str(
            "[gateway]\nbackend = \"http://b:1/ws/\"\n\n[[gateway.routes]]\nkey = \"send\"\nurl = \"http://b:1/s\"\ntwo_way = true\n",
        )
        .unwrap();
        assert_eq!(parsed.gateway.routes[0].key, "send");
        assert!(parsed.gateway.routes[0].two_way);
    }

    #[test]
    fn the_demo_key_is_wanted_only_without_a_token_key_and_with_the_admin_plane() {
        assert!(Config::default().wants_demo_key());
        let mut c = Config::default();
        c.admin.demo = false;
        assert!(!c.wants_demo_key());
        let mut c = Config::default();
        c.token.key = Some("k".into());
        assert!(!c.wants_demo_key());
        let mut c = Config::default();
        c.admin.listen = None;
        assert!(!c.wants_demo_key());
    }

    #[test]
    fn a_message_rate_alone_limits_messages_only() {
        let mut r = RateLimitConfig::default();
        assert_eq!(r.buckets(), None);
        r.messages_per_sec = 10.0;
        let rl = r.buckets().unwrap();
        assert_eq!((rl.msgs_per_sec, rl.msgs_burst), (10.0, 10.0));
        assert!(rl.bytes_per_sec > 1e300);
    }

    #[test]
    fn token_keys_come_current_first() {
        let mut t = TokenConfig::default();
        assert_eq!(t.keys().count(), 0);
        t.key = Some("new".into());
        t.key_previous = Some("old".into());
        assert_eq!(t.keys().collect::<Vec<_>>(), ["new", "old"]);
    }

    #[test]
    fn debug_masks_secrets() {
        let mut c = Config::default();
        c.token.key = Some("sekrit-1".into());
        c.admin.key = Some("sekrit-2".into());
        let text = format!("{c:?}");
        assert!(!text.contains("sekrit"), "{text}");
        assert!(text.contains("key: ********"), "{text}");
        assert!(text.contains("max_subscriptions: 100"), "{text}");
    }

    #[test]
    fn the_schema_lists_every_field_once_with_its_docs() {
        let table = toml::Table::try_from(Config::default()).unwrap();
        let mut declared = 0;
        for section in Config::SECTIONS {
            let values = match section.name {
                "" => &table,
                name => table.get(name).and_then(|v| v.as_table()).unwrap(),
            };
            for s in section.settings {
                declared += 1;
                assert!(values.contains_key(s.name), "{} not serialized", s.name);
                assert!(s.doc().next().is_some(), "{} has no doc", s.name);
            }
            let plain = values.values().filter(|v| !v.is_table()).count();
            assert_eq!(plain, section.settings.len(), "[{}]", section.name);
        }
        let sections = table.values().filter(|v| v.is_table()).count();
        assert_eq!(sections + 1, Config::SECTIONS.len());
        assert!(declared >= 48, "{declared}");
    }
}
