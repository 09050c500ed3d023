//! Admission control: who may connect, decided before the upgrade
//! completes and before any per-connection work is spent.
//!
//! - [`token`]: one-time HMAC-SHA256 connection tokens (mint, verify).
//! - [`demo`]: the chat demo's ephemeral key, when no token key is set.
//! - [`grants`]: per-channel subscribe/publish grants from a token.
//! - [`replay`]: the shared, bounded memory of used token ids.
//! - [`origin`]: the `Origin` allow-list.
//! - [`ip`]: connection attempts per source IP per window.
//! - [`slots`]: open-connection quotas per IP and per user.
//!
//! Owns: the decision for one upgrade request and the release of what it
//! took (quota slots) when the connection ends. Shared by all cores (one
//! `Arc`), internally sharded. Must not touch: sockets, connections;
//! refusals are answered by the connection with the error's HTTP status.
//! A token is never logged.

pub mod demo;
pub mod grants;
pub mod ip;
pub mod origin;
pub mod replay;
pub mod slots;
pub mod token;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::{AdmissionConfig, Config};
use crate::conn::Route;
use crate::error::HandshakeError;
use crate::protocol::handshake::UpgradeRequest;

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
    /// The client's IP (the proxy's client, when the peer is trusted).
    pub ip: IpAddr,
    /// The user, from the token.
    pub user: Option<Arc<str>>,
    /// The token's channel grants, if it came with a token.
    pub grants: Option<Box<TokenGrants>>,
}

/// A refusal: the error (its HTTP status) and, for rate limits, seconds
/// until a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub error: HandshakeError,
    pub retry_after: Option<u64>,
}

impl From<HandshakeError> for Refusal {
    fn from(error: HandshakeError) -> Self {
        Refusal {
            error,
            retry_after: None,
        }
    }
}

/// A token refusal (all answered 401).
fn token_refusal(e: token::TokenError) -> HandshakeError {
    match e {
        token::TokenError::Malformed => HandshakeError::TokenMalformed,
        token::TokenError::BadSignature => HandshakeError::TokenBadSignature,
        token::TokenError::Expired => HandshakeError::TokenExpired,
    }
}

/// The shared admission state.
pub struct Admission {
    cfg: AdmissionConfig,
    /// Token keys, the current one first (`token.key`, `token.key_previous`).
    token_keys: Vec<String>,
    /// `!token.optional`.
    require_token_on_ws: bool,
    /// The chat demo's ephemeral key (see [`demo`]): without token keys,
    /// `/ws` checks a presented token against it. Never printed.
    demo_key: Option<demo::DemoKey>,
    origins: origin::OriginPolicy,
    used: replay::UsedTokens,
    attempts: ip::IpLimits,
    per_ip: slots::SlotCounts<IpAddr>,
    per_user: slots::SlotCounts<Arc<str>>,
    total: AtomicU32,
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
            demo_key,
            attempts: ip::IpLimits::default(),
            per_ip: slots::SlotCounts::default(),
            per_user: slots::SlotCounts::default(),
            total: AtomicU32::new(0),
            cfg: cfg.admission.clone(),
        }
    }

    /// Whether `route` needs a token.
    pub fn requires_token(&self, route: Route) -> bool {
        route == Route::Hub && self.require_token_on_ws && !self.token_keys.is_empty()
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
            replay::Use::Replayed => Err(HandshakeError::TokenReplayed.into()),
            replay::Use::Full => Err(HandshakeError::ServerFull.into()),
        }
    }

    /// The client's IP: the peer's, or the proxy header's first entry when
    /// the peer is a trusted proxy.
    fn client_ip(&self, req: &UpgradeRequest, peer: IpAddr) -> IpAddr {
        if self.cfg.trusted_proxies.contains(&peer) {
            if let Some(ip) = req.forwarded_for.as_deref().and_then(|v| v.parse().ok()) {
                return ip;
            }
        }
        peer
    }

    /// Decides one upgrade. Takes the token out of `req` (it is not kept).
    /// `now` is Unix time in seconds.
    pub fn admit(
        &self,
        req: &mut UpgradeRequest,
        route: Route,
        peer: IpAddr,
        now: u64,
    ) -> Result<Admitted, Refusal> {
        let token = req.token.take();
        let ip = self.client_ip(req, peer);
        if !self.origins.allows(req.origin.as_deref()) {
            return Err(HandshakeError::OriginForbidden.into());
        }
        if self.cfg.max_attempts_per_ip > 0 {
            let window = self.cfg.attempt_window.as_secs().max(1);
            if let Err(retry) = self
                .attempts
                .attempt(ip, now, window, self.cfg.max_attempts_per_ip)
            {
                return Err(Refusal {
                    error: HandshakeError::TooManyAttempts,
                    retry_after: Some(retry),
                });
            }
        }
        let mut user = None;
        let mut grants = None;
        if self.requires_token(route) {
            let token = token.ok_or(HandshakeError::TokenMissing)?;
            let keys: Vec<&[u8]> = self.token_keys.iter().map(|k| k.as_bytes()).collect();
            let claims = token::verify(&keys, &token, now).map_err(token_refusal)?;
            self.use_once(&claims, now)?;
            user = Some(Arc::<str>::from(claims.sub.as_str()));
            grants = Some(Box::new(TokenGrants {
                subscribe: Grants::new(claims.subscribe),
                publish: Grants::new(claims.publish),
            }));
        } else if let (Some(key), Some(token)) = (self.demo_key(route), token) {
            // No token key: a token can only be the demo's. Without one the
            // client is anonymous as before; a bad one is refused.
            let claims = key.verify(&token, now).map_err(token_refusal)?;
            self.use_once(&claims, now)?;
            user = Some(Arc::<str>::from(claims.sub.as_str()));
            grants = Some(Box::new(demo::grants()));
        }
        // Quotas last: they are taken, and given back on any later refusal.
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.cfg.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(HandshakeError::ServerFull.into());
        }
        if !self.per_ip.take(&ip, self.cfg.max_connections_per_ip) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(HandshakeError::IpQuota.into());
        }
        if let Some(u) = &user {
            if !self.per_user.take(u, self.cfg.max_connections_per_user) {
                self.per_ip.give_back(&ip);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(HandshakeError::UserQuota.into());
            }
        }
        Ok(Admitted { ip, user, grants })
    }

    /// Gives back what [`Admission::admit`] took, when the connection ends.
    pub fn release(&self, ip: IpAddr, user: Option<&Arc<str>>) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.per_ip.give_back(&ip);
        if let Some(u) = user {
            self.per_user.give_back(u);
        }
    }

    /// Admitted connections open now.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Acquire)
    }
}
