//! One-time connection tokens: compact, HMAC-SHA256-signed claims.
//!
//! Owns: the token format, minting and verification (signature with
//! either of two active keys, expiry, the longest lifetime accepted:
//! [`check_lifetime`] for a presented token, [`check_ttl`] for one about
//! to be minted — `wsedge token` and `POST /api/tokens`). Must not touch:
//! replay memory (see `replay`), sockets, logging — a token is a secret
//! and is never logged.
//!
//! Format: `v1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(key, "v1.<claims>"))>`
//! with no padding. Claims:
//! `{"sub":"alice","exp":1700000000,"jti":"…","subscribe":["room:*"],"publish":["chat:1"]}`
//! — `sub` the user id, `exp` the expiry in Unix seconds, `jti` a unique
//! token id (for one-time use), and the channel grants (exact names or
//! `prefix*` patterns). Anything that can do HMAC-SHA256 and base64 can
//! mint one; README.md shows it in a few lines of Python.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use crate::config::TokenConfig;

const PREFIX: &str = "v1.";
/// Longest token accepted, in bytes (a sanity bound before any work).
pub const MAX_TOKEN_LEN: usize = 4096;
/// How far a presented token's `exp` may lie beyond `token.max_ttl` from
/// now, in seconds: the minter's clock may run ahead of ours. One minute
/// covers an unsynchronised clock; the replay memory holds an id at most
/// this much longer than `max_ttl`.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
    /// Channels the bearer may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Channels the bearer may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
}

/// Why a presented token was refused (all answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not `v1.<claims>.<signature>` in base64url, or the claims are not
    /// the expected JSON.
    #[error("token malformed")]
    Malformed,
    /// Signed with none of the configured keys.
    #[error("token signature invalid")]
    BadSignature,
    /// Its `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Its `exp` is further from now than `token.max_ttl` (plus
    /// [`CLOCK_SKEW_SECS`]): minted with a longer lifetime than this
    /// server accepts.
    #[error("token lifetime over token.max_ttl")]
    LifetimeTooLong,
}

/// Why a token cannot be minted with a lifetime ([`check_ttl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TtlError {
    /// A token that expires as it is made is useless.
    #[error("ttl must be at least 1 s")]
    Zero,
    /// Over the configured maximum.
    #[error(
        "ttl {ttl_secs} s is over token.max_ttl ({max_secs} s); \
         mint a shorter token or raise token.max_ttl"
    )]
    OverMax { ttl_secs: u64, max_secs: u64 },
}

/// Whether a token may be minted to live `ttl_secs`: at least 1 s and at
/// most `token.max_ttl` (which admission also holds presented tokens to,
/// see [`check_lifetime`]). For `wsedge token` and `POST /api/tokens`.
pub fn check_ttl(cfg: &TokenConfig, ttl_secs: u64) -> Result<(), TtlError> {
    let max_secs = cfg.max_ttl.as_secs();
    match ttl_secs {
        0 => Err(TtlError::Zero),
        t if t > max_secs => Err(TtlError::OverMax { ttl_secs, max_secs }),
        _ => Ok(()),
    }
}

/// Whether a verified token's `exp` lies within `max_ttl_secs` (plus
/// [`CLOCK_SKEW_SECS`]) of `now`: a token minted elsewhere with a huge
/// lifetime would otherwise hold its id in the replay memory that long.
pub fn check_lifetime(claims: &Claims, now: u64, max_ttl_secs: u64) -> Result<(), TokenError> {
    let latest = now
        .saturating_add(max_ttl_secs)
        .saturating_add(CLOCK_SKEW_SECS);
    if claims.exp > latest {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(())
}

fn mac(key: &[u8], body: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(body.as_bytes());
    m
}

/// Signs `claims` with `key`.
pub fn mint(key: &[u8], claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).expect("claims serialize");
    let body = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
    let sig = mac(key, &body).finalize().into_bytes();
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Checks the signature against each key (current first, then the
/// previous one during rotation) in constant time, then the expiry
/// against `now` (Unix seconds).
pub fn verify(keys: &[&[u8]], token: &str, now: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN || !token.starts_with(PREFIX) {
        return Err(TokenError::Malformed);
    }
    let (body, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(&body[PREFIX.len()..])
        .map_err(|_| TokenError::Malformed)?;
    if !keys.iter().any(|k| mac(k, body).verify_slice(&sig).is_ok()) {
        return Err(TokenError::BadSignature);
    }
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Claims for `user` that expire `ttl_secs` from now, with a fresh id
/// (check the lifetime first with [`check_ttl`]).
pub fn claims_for(
    user: String,
    ttl_secs: u64,
    subscribe: Vec<String>,
    publish: Vec<String>,
) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Claims {
        sub: user,
        exp: now.saturating_add(ttl_secs),
        jti: new_jti(),
        subscribe,
        publish,
    }
}

/// A fresh random token id (24 hex digits).
pub fn new_jti() -> String {
    let mut raw = [0u8; 12];
    getrandom::fill(&mut raw).expect("the OS provides randomness");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            jti: "t1".into(),
            subscribe: vec!["room:*".into()],
            publish: vec![],
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = mint(b"k1", &claims(1000));
        assert_eq!(verify(&[b"k1"], &t, 999), Ok(claims(1000)));
        assert_eq!(verify(&[b"k1"], &t, 1000), Err(TokenError::Expired));
        assert_eq!(verify(&[b"k2"], &t, 999), Err(TokenError::BadSignature));
        // Rotation: the previous key still verifies.
        assert_eq!(verify(&[b"k2", b"k1"], &t, 999), Ok(claims(1000)));
        assert_eq!(verify(&[b"k1"], "v1.x", 0), Err(TokenError::Malformed));
        assert_eq!(verify(&[b"k1"], "garbage", 0), Err(TokenError::Malformed));
        // A changed claim breaks the signature.
        let (_, sig) = t.rsplit_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            mint(b"x", &claims(9999)).rsplit_once('.').unwrap().0
        );
        assert_eq!(
            verify(&[b"k1"], &forged, 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn python_style_token_verifies() {
        // Made by the README's Python snippet with key b"secret".
        let claims = Claims {
            sub: "bob".into(),
            exp: 4_102_444_800,
            jti: "abc".into(),
            subscribe: vec!["news".into()],
            publish: vec![],
        };
        let json =
            r#"{"sub":"bob","exp":4102444800,"jti":"abc","subscribe":["news"],"publish":[]}"#;
        let body = format!("v1.{}", URL_SAFE_NO_PAD.encode(json));
        let sig = mac(b"secret", &body).finalize().into_bytes();
        let token = format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(verify(&[b"secret"], &token, 0), Ok(claims));
    }

    #[test]
    fn lifetime_is_held_to_max_ttl_plus_the_skew_allowance() {
        let max = 3600;
        let at = |exp| check_lifetime(&claims(exp), 1000, max);
        assert_eq!(at(1000 + max), Ok(()));
        assert_eq!(at(1000 + max + CLOCK_SKEW_SECS), Ok(()));
        assert_eq!(
            at(1000 + max + CLOCK_SKEW_SECS + 1),
            Err(TokenError::LifetimeTooLong)
        );
        assert_eq!(at(u64::MAX), Err(TokenError::LifetimeTooLong));
        assert_eq!(
            check_lifetime(&claims(u64::MAX), u64::MAX - 1, u64::MAX),
            Ok(()),
            "no overflow"
        );
    }

    #[test]
    fn ttl_to_mint_is_between_one_second_and_max_ttl() {
        let cfg = TokenConfig::default();
        assert_eq!(cfg.max_ttl.as_secs(), 3600);
        assert_eq!(check_ttl(&cfg, 1), Ok(()));
        assert_eq!(check_ttl(&cfg, 3600), Ok(()));
        assert_eq!(check_ttl(&cfg, 0), Err(TtlError::Zero));
        let over = check_ttl(&cfg, 3601).unwrap_err();
        assert_eq!(
            over,
            TtlError::OverMax {
                ttl_secs: 3601,
                max_secs: 3600
            }
        );
        assert!(
            over.to_string().contains("token.max_ttl (3600 s)"),
            "{over}"
        );
        assert!(check_ttl(&cfg, u64::MAX).is_err());
    }

    #[test]
    fn jti_is_random() {
        assert_ne!(new_jti(), new_jti());
        assert_eq!(new_jti().len(), 24);
    }
}
