//! The embedded chat demo's ephemeral token key: lets `/demo` publish with
//! the embedded defaults without letting any other client publish.
//!
//! Owns: the demo key (32 random bytes made at start, never printed,
//! logged or written anywhere, gone when the process ends), the demo's
//! fixed grants, what a demo user name may be, and minting and verifying
//! demo tokens. Must not touch: sockets, settings, the replay memory (the
//! caller uses it, as for any token).
//!
//! The key exists only when no token key is configured, the admin plane
//! runs and `admin.demo` is on (`settings` decides). `POST
//! /api/demo/tokens` on the admin plane mints with it; admission verifies
//! a token presented on `/ws` against it. A demo token lives
//! [`TTL_SECS`], works once, and grants subscribe and publish on
//! [`CHANNELS`] only — admission applies these fixed grants whatever the
//! claims say. Clients without a token stay as they were (no publishing).

use std::fmt;
use std::sync::Arc;

use super::grants::Grants;
use super::token::{self, Claims, TokenError};
use super::TokenGrants;

/// The channels a demo token may subscribe and publish to.
pub const CHANNELS: &str = "demo:*";
/// Lifetime of a demo token, in seconds (long enough to connect with).
pub const TTL_SECS: u64 = 60;
/// Longest demo user name, in bytes.
pub const MAX_USER_LEN: usize = 32;

/// The ephemeral key. Its `Debug` shows no byte of it.
#[derive(Clone)]
pub struct DemoKey(Arc<[u8; 32]>);

impl fmt::Debug for DemoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DemoKey(********)")
    }
}

impl DemoKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS provides randomness");
        Self(Arc::new(key))
    }

    /// A one-time token for `user` (see [`valid_user`]) with the demo's
    /// grants; returns it and its expiry (Unix seconds).
    pub fn mint(&self, user: &str) -> (String, u64) {
        let grants = vec![CHANNELS.to_string()];
        let claims = token::claims_for(user.to_string(), TTL_SECS, grants.clone(), grants);
        (token::mint(&self.0[..], &claims), claims.exp)
    }

    /// Checks a presented token's signature and expiry.
    pub(crate) fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        token::verify(&[&self.0[..]], token, now)
    }
}

/// What a demo token grants, whatever its claims say.
pub fn grants() -> TokenGrants {
    TokenGrants {
        subscribe: Grants::new([CHANNELS]),
        publish: Grants::new([CHANNELS]),
    }
}

/// A demo user name: 1 to [`MAX_USER_LEN`] of `A-Z a-z 0-9 _ -`.
pub fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_what_it_verifies_and_nothing_else() {
        let key = DemoKey::generate();
        let (t, exp) = key.mint("guest-1a2b");
        let claims = key.verify(&t, exp - 1).unwrap();
        assert_eq!(claims.sub, "guest-1a2b");
        assert_eq!(claims.publish, [CHANNELS]);
        assert_eq!(key.verify(&t, exp), Err(TokenError::Expired));
        let other = DemoKey::generate();
        assert_eq!(other.verify(&t, 0), Err(TokenError::BadSignature));
        assert_eq!(format!("{key:?}"), "DemoKey(********)");
    }

    #[test]
    fn fixed_grants_cover_demo_channels_only() {
        let g = grants();
        assert!(g.publish.allows("demo:lobby") && g.subscribe.allows("demo:x"));
        assert!(!g.publish.allows("chat:lobby") && !g.subscribe.allows("news"));
    }

    #[test]
    fn user_names() {
        assert!(valid_user("guest-1a2b") && valid_user("Alice_2"));
        for bad in ["", "a b", "alice@x", "é", &"a".repeat(MAX_USER_LEN + 1)] {
            assert!(!valid_user(bad), "{bad:?}");
        }
    }
}
