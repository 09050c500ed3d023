//! Admission control: who may connect, decided before the upgrade
//! completes and before any per-connection work is spent.
//!
//! - [`token`]: one-time HMAC-SHA256 connection tokens (mint, verify, the
//!   longest lifetime `token.max_ttl`).
//! - [`demo`]: the chat demo's ephemeral key, when no token key is set.
//! - [`grants`]: per-channel subscribe/publish grants from a token.
//! - [`replay`]: the shared, bounded memory of used token ids.
//! - [`origin`]: the `Origin` allow-list.
//! - [`ip`]: connection attempts per source IP per window.
//! - [`slots`]: open-connection quotas per IP and per user.
//! - [`request`]: what admission reads off a parsed upgrade request — the
//!   token (query `ws_token` or a `ws_token.` subprotocol), the client IP
//!   (a trusted proxy's header lines) and the subprotocol answered for a
//!   token.
//! - [`client_ip`]: the walk of `X-Forwarded-For` / `Forwarded` from the
//!   right past trusted proxies.
//! - [`net`]: address networks (trusted proxies) and the key a client is
//!   counted under by the per-IP limits (IPv6 by its prefix).
//!
//! Owns: the one step between "upgrade parsed" and "`101` written": the
//! [`Decision`] for one upgrade request (accept, refuse, or pending: decided
//! later through the core's inbox), the [`Refusal`] reasons, and the release
//! of what it took (quota slots) when the connection ends. Shared by all
//! cores (one `Arc`), internally sharded. Must not touch: sockets,
//! connections, HTTP (a refusal's status is
//! [`Rejection::answer`](crate::error::Rejection::answer)'s). A token is
//! never logged.

pub mod client_ip;
pub mod demo;
pub mod grants;
pub mod ip;
pub mod net;
pub mod origin;
pub mod replay;
pub mod request;
pub mod slots;
pub mod token;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use thiserror::Error;

use crate::config::{AdmissionConfig, Config};
use crate::engine::routes::Route;
use crate::protocol::handshake::UpgradeRequest;

pub use client_ip::ClientIp;
pub use grants::Grants;

/// What a token grants, kept by the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenGrants {
    pub subscribe: Grants,
    pub publish: Grants,
}

/// An admitted connection: what it holds and must give back.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The client's IP (the proxy's client, when the peer is trusted), as
    /// given to [`Admission::decide`]; given back to [`Admission::release`].
    pub ip: IpAddr,
    /// The user, from the token.
    pub user: Option<Arc<str>>,
    /// The token's channel grants, if it came with a token.
    pub grants: Option<Box<TokenGrants>>,
}

/// Why admission refused an upgrade. Mapped to its HTTP status, text body
/// and `Retry-After` in one place, with the protocol layer's refusals:
/// [`Rejection::answer`](crate::error::Rejection::answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("connection token required")]
    TokenMissing,
    #[error("connection token malformed")]
    TokenMalformed,
    #[error("connection token signature invalid")]
    TokenBadSignature,
    #[error("connection token expired")]
    TokenExpired,
    /// A validly signed token whose `exp` is further from now than
    /// `token.max_ttl` allows (plus the clock-skew allowance).
    #[error("connection token lifetime over token.max_ttl")]
    TokenLifetimeTooLong,
    #[error("connection token already used")]
    TokenReplayed,
    #[error("origin not allowed")]
    OriginForbidden,
    /// Over the attempts per IP per window; a retry can succeed after
    /// `retry_after` seconds.
    #[error("too many connection attempts")]
    TooManyAttempts { retry_after: u32 },
    #[error("too many connections from this address")]
    IpQuota,
    #[error("too many connections for this user")]
    UserQuota,
    /// Over the total connections, or the used-token memory is full.
    #[error("server full")]
    ServerFull,
    /// Gateway mode: the backend answered `$connect` with this non-2xx
    /// status (passed to the client).
    #[error("the backend refused the connection")]
    Backend { status: u16 },
    /// Gateway mode: the backend did not answer `$connect` within
    /// `gateway.integration_timeout` (504).
    #[error("the backend did not answer in time")]
    BackendTimeout,
    /// Gateway mode: the backend could not be reached or answered
    /// something unreadable (502).
    #[error("the backend is unreachable")]
    BackendUnreachable,
    /// Gateway mode: the queue of events for the gateway was full
    /// (`gateway.queue_capacity`; 503).
    #[error("the gateway is busy")]
    GatewayBusy,
}

/// Where an upgrade left pending is answered: its core, slab key and
/// generation. Whoever decides sends
/// [`Command::AdmissionDecision`](crate::inbox::Command::AdmissionDecision)
/// with them to that core's inbox; an answer for a connection that is gone
/// (or was already answered, or timed out) finds nothing and is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub core: usize,
    pub key: u32,
    pub gen: u32,
}

/// A decision made after the upgrade was left pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer `101`, with this subprotocol (`Sec-WebSocket-Protocol`) if
    /// given (the gateway's backend chose it) and not already chosen from
    /// `connection.subprotocols`.
    Accept(Option<Box<str>>),
    /// Answer the refusal's status.
    Refuse(Refusal),
}

/// Admission's answer to one upgrade request.
#[derive(Debug)]
pub enum Decision {
    /// Answer `101`.
    Accept(Admitted),
    /// Answer the refusal's status.
    Refuse(Refusal),
    /// Not decided yet: what the connection holds meanwhile (its quota
    /// slots are taken); a [`Verdict`] for the [`Ticket`] given to
    /// [`Admission::decide`] comes later through the core's inbox, or the
    /// handshake deadline answers `504`. The gateway route's upgrades
    /// (decided by the backend's `$connect`) and, in tests, those a
    /// `DeferHook` (feature `testing`) picks.
    Pending(Admitted),
}

/// A token refusal (all answered 401).
fn token_refusal(e: token::TokenError) -> Refusal {
    match e {
        token::TokenError::Malformed => Refusal::TokenMalformed,
        token::TokenError::BadSignature => Refusal::TokenBadSignature,
        token::TokenError::Expired => Refusal::TokenExpired,
        token::TokenError::LifetimeTooLong => Refusal::TokenLifetimeTooLong,
    }
}

/// The shared admission state.
pub struct Admission {
    cfg: AdmissionConfig,
    /// Token keys, the current one first (`token.key`, `token.key_previous`).
    token_keys: Vec<String>,
    /// `!token.optional`.
    require_token_on_ws: bool,
    /// `token.max_ttl` in seconds: the furthest `exp` accepted from now.
    max_ttl_secs: u64,
    /// The chat demo's ephemeral key (see [`demo`]): without token keys,
    /// `/ws` checks a presented token against it. Never printed.
    demo_key: Option<demo::DemoKey>,
    origins: origin::OriginPolicy,
    used: replay::UsedTokens,
    attempts: ip::IpLimits,
    per_ip: slots::SlotCounts<IpAddr>,
    per_user: slots::SlotCounts<Arc<str>>,
    total: AtomicU32,
    /// The test seam that may leave upgrades pending.
    #[cfg(any(test, feature = "testing"))]
    defer: Option<DeferHook>,
}

impl Admission {
    /// Admission by `cfg`'s `[admission]` and `[token]`, with the demo's
    /// key if the server made one.
    pub fn new(cfg: &Config, demo_key: Option<demo::DemoKey>) -> Self {
        Self {
            origins: origin::OriginPolicy::new(cfg.admission.origins.clone()),
            used: replay::UsedTokens::new(cfg.token.max_used),
            token_keys: cfg.token.keys().map(String::from).collect(),
            require_token_on_ws: !cfg.token.optional,
            max_ttl_secs: cfg.token.max_ttl.as_secs(),
            demo_key,
            attempts: ip::IpLimits::default(),
            per_ip: slots::SlotCounts::default(),
            per_user: slots::SlotCounts::default(),
            total: AtomicU32::new(0),
            cfg: cfg.admission.clone(),
            #[cfg(any(test, feature = "testing"))]
            defer: None,
        }
    }

    /// This admission with the test seam that may leave upgrades pending
    /// (feature `testing`; see [`DeferHook`]).
    #[cfg(any(test, feature = "testing"))]
    pub fn with_defer(mut self, hook: DeferHook) -> Self {
        self.defer = Some(hook);
        self
    }

    /// Whether `route` needs a token.
    pub fn requires_token(&self, route: Route) -> bool {
        self.checks_tokens(route) && self.require_token_on_ws
    }

    /// Whether a token presented on `route` is checked against the token
    /// keys: on the hub whenever a key is configured, required or not
    /// (`token.optional` lets a client come without one, never with a bad
    /// one).
    fn checks_tokens(&self, route: Route) -> bool {
        route == Route::Hub && !self.token_keys.is_empty()
    }

    /// The demo key, if a token on `route` is checked against it: only on
    /// the hub, and only while no token key is configured.
    fn demo_key(&self, route: Route) -> Option<&demo::DemoKey> {
        let demo = route == Route::Hub && self.token_keys.is_empty();
        self.demo_key.as_ref().filter(|_| demo)
    }

    /// Spends a verified token's id (one-time use, across all cores).
    fn use_once(&self, claims: &token::Claims, now: u64) -> Result<(), Refusal> {
        match self.used.use_once(&claims.jti, claims.exp, now) {
            replay::Use::First => Ok(()),
            replay::Use::Replayed => Err(Refusal::TokenReplayed),
            replay::Use::Full => Err(Refusal::ServerFull),
        }
    }

    /// Who the client of `req` from `peer` is: the peer, or, when it is a
    /// trusted proxy, the address its header names
    /// ([`client_ip`](client_ip::client_ip)). The caller counts a
    /// [`ClientIp::Malformed`] and passes [`ClientIp::ip`] to
    /// [`Admission::decide`].
    pub fn client(&self, req: &UpgradeRequest, peer: IpAddr) -> ClientIp {
        request::client_ip(req, peer, &self.cfg)
    }

    /// Decides one upgrade to `route` from `client` (see
    /// [`Admission::client`]) at `now` (Unix seconds): the checks of
    /// [`Admission::admit`], then, if they pass, whether the decision waits
    /// for someone else (answered later for `ticket`).
    pub fn decide(
        &self,
        req: &UpgradeRequest,
        route: Route,
        client: IpAddr,
        now: u64,
        ticket: Ticket,
    ) -> Decision {
        match self.admit(req, route, client, now) {
            Err(r) => Decision::Refuse(r),
            Ok(a) if self.defers(req, route, ticket) => Decision::Pending(a),
            Ok(a) => Decision::Accept(a),
        }
    }

    /// Whether the upgrade waits for a decision made elsewhere: always on
    /// the gateway route (the backend's `$connect` decides), and where the
    /// test seam says so.
    #[cfg(any(test, feature = "testing"))]
    fn defers(&self, req: &UpgradeRequest, route: Route, ticket: Ticket) -> bool {
        route == Route::Gateway
            || self
                .defer
                .as_ref()
                .is_some_and(|hook| hook.defers(req, route, ticket))
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn defers(&self, _: &UpgradeRequest, route: Route, _: Ticket) -> bool {
        route == Route::Gateway
    }

    /// The key `ip` is counted under by the per-IP limits (IPv6 by
    /// `admission.ipv6_prefix`).
    fn ip_key(&self, ip: IpAddr) -> IpAddr {
        net::limit_key(ip, self.cfg.ipv6_prefix)
    }

    /// The synchronous checks for one upgrade from the client at `ip` (see
    /// [`Admission::client`]): origin, attempts per client IP, the token
    /// (from the query or the subprotocol list; read, never kept or
    /// logged) and the quotas, which it takes. `now` is Unix time in
    /// seconds.
    pub fn admit(
        &self,
        req: &UpgradeRequest,
        route: Route,
        ip: IpAddr,
        now: u64,
    ) -> Result<Admitted, Refusal> {
        let counted = self.ip_key(ip);
        if !self.origins.allows(req.origin()) {
            return Err(Refusal::OriginForbidden);
        }
        if self.cfg.max_attempts_per_ip > 0 {
            let window = self.cfg.attempt_window.as_secs().max(1);
            if let Err(retry) =
                self.attempts
                    .attempt(counted, now, window, self.cfg.max_attempts_per_ip)
            {
                return Err(Refusal::TooManyAttempts {
                    retry_after: u32::try_from(retry).unwrap_or(u32::MAX),
                });
            }
        }
        let token = request::token(req);
        let mut user = None;
        let mut grants = None;
        if self.checks_tokens(route) && (token.is_some() || self.require_token_on_ws) {
            // Required, or optional and presented: verified the same way.
            // Only a client without any token is let in anonymous (below).
            let token = token.ok_or(Refusal::TokenMissing)?;
            let keys: Vec<&[u8]> = self.token_keys.iter().map(|k| k.as_bytes()).collect();
            let claims = token::verify(&keys, token, now).map_err(token_refusal)?;
            // Before the replay memory: it would hold the id until `exp`.
            token::check_lifetime(&claims, now, self.max_ttl_secs).map_err(token_refusal)?;
            self.use_once(&claims, now)?;
            user = Some(Arc::<str>::from(claims.sub.as_str()));
            grants = Some(Box::new(TokenGrants {
                subscribe: Grants::new(claims.subscribe),
                publish: Grants::new(claims.publish),
            }));
        } else if let (Some(key), Some(token)) = (self.demo_key(route), token) {
            // No token key: a token can only be the demo's. Without one the
            // client is anonymous as before; a bad one is refused.
            // (No lifetime check: only this process holds the demo key and
            // mints its tokens for `demo::TTL_SECS`.)
            let claims = key.verify(token, now).map_err(token_refusal)?;
            self.use_once(&claims, now)?;
            user = Some(Arc::<str>::from(claims.sub.as_str()));
            grants = Some(Box::new(demo::grants()));
        }
        // Quotas last: they are taken, and given back on any later refusal.
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.cfg.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ServerFull);
        }
        if !self.per_ip.take(&counted, self.cfg.max_connections_per_ip) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::IpQuota);
        }
        if let Some(u) = &user {
            if !self.per_user.take(u, self.cfg.max_connections_per_user) {
                self.per_ip.give_back(&counted);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::UserQuota);
            }
        }
        Ok(Admitted { ip, user, grants })
    }

    /// Gives back what [`Admission::admit`] took, when the connection ends.
    pub fn release(&self, ip: IpAddr, user: Option<&Arc<str>>) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.per_ip.give_back(&self.ip_key(ip));
        if let Some(u) = user {
            self.per_user.give_back(u);
        }
    }

    /// Admitted connections open now.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Acquire)
    }
}

/// The test seam for [`Decision::Pending`] (feature `testing`, on for the
/// crate's own tests; never in the product build): asked after the
/// synchronous checks passed, it may keep the [`Ticket`] and say the
/// upgrade waits; the test then answers through the core's inbox.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone)]
pub struct DeferHook(pub Arc<DeferFn>);

/// The hook's function: true to leave the upgrade pending (keeping the
/// ticket to answer it).
#[cfg(any(test, feature = "testing"))]
pub type DeferFn = dyn Fn(&UpgradeRequest, Route, Ticket) -> bool + Send + Sync;

#[cfg(any(test, feature = "testing"))]
impl DeferHook {
    fn defers(&self, req: &UpgradeRequest, route: Route, ticket: Ticket) -> bool {
        (self.0)(req, route, ticket)
    }
}

#[cfg(any(test, feature = "testing"))]
impl std::fmt::Debug for DeferHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferHook")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{parse_request, HandshakeConfig};

    const KEY: &str = "k";
    const NOW: u64 = 1_000_000;

    fn request(target: &str) -> UpgradeRequest {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let cfg = HandshakeConfig {
            max_request_bytes: 8192,
            max_headers: 32,
            subprotocols: &[],
        };
        parse_request(head.as_bytes(), &cfg).unwrap().unwrap()
    }

    fn admission(optional: bool) -> Admission {
        let mut cfg = Config::default();
        cfg.token.key = Some(KEY.into());
        cfg.token.optional = optional;
        cfg.admission.max_attempts_per_ip = 0;
        Admission::new(&cfg, None)
    }

    fn token(key: &str, exp: u64) -> String {
        let claims = token::Claims {
            sub: "alice".into(),
            exp,
            jti: token::new_jti(),
            subscribe: vec!["room:*".into()],
            publish: vec![],
        };
        format!("/ws?ws_token={}", token::mint(key.as_bytes(), &claims))
    }

    fn admit(a: &Admission, target: &str) -> Result<Admitted, Refusal> {
        a.admit(&request(target), Route::Hub, [127, 0, 0, 1].into(), NOW)
    }

    #[test]
    fn optional_tokens_are_verified_when_presented() {
        for optional in [false, true] {
            let a = admission(optional);
            let cases = [
                ("/ws?ws_token=v1.forged.AAAA", Refusal::TokenMalformed),
                (&*token("other", NOW + 60), Refusal::TokenBadSignature),
                (&*token(KEY, NOW), Refusal::TokenExpired),
                (&*token(KEY, NOW + 86_400), Refusal::TokenLifetimeTooLong),
            ];
            for (target, want) in cases {
                assert_eq!(admit(&a, target).unwrap_err(), want, "{optional}");
            }
            let good = token(KEY, NOW + 60);
            let admitted = admit(&a, &good).unwrap();
            assert_eq!(admitted.user.as_deref(), Some("alice"));
            let grants = admitted.grants.unwrap();
            assert!(grants.subscribe.allows("room:1"));
            assert!(!grants.subscribe.allows("private:bob"));
            assert_eq!(admit(&a, &good).unwrap_err(), Refusal::TokenReplayed);
        }
    }

    #[test]
    fn only_a_missing_token_is_anonymous_and_only_when_optional() {
        assert_eq!(
            admit(&admission(false), "/ws").unwrap_err(),
            Refusal::TokenMissing
        );
        let anon = admit(&admission(true), "/ws?ws_token=").unwrap();
        assert!(anon.user.is_none() && anon.grants.is_none());
        // Other routes never read a token.
        let a = admission(false);
        let echo = a.admit(
            &request("/echo?ws_token=v1.forged.AAAA"),
            Route::Echo,
            [127, 0, 0, 1].into(),
            NOW,
        );
        assert!(echo.is_ok());
    }

    #[test]
    fn a_too_long_lived_token_is_not_remembered() {
        let a = admission(true);
        let long = token(KEY, NOW + 86_400);
        for _ in 0..2 {
            assert_eq!(admit(&a, &long).unwrap_err(), Refusal::TokenLifetimeTooLong);
        }
        assert!(a.used.is_empty());
    }
}
