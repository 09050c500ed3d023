//! Connection ids shaped like API Gateway's: 16 characters of URL-safe
//! base64 (e.g. `R0oXAdfD0kwCH6w=`), which applications written for API
//! Gateway store in columns and pass to `@connections` unchanged.
//!
//! Owns: [`GatewayId`], its text form and its mapping to and from the
//! hub's [`ConnId`]. Must not touch: anything else.
//!
//! Eleven bytes: a 24-bit *instance* number drawn at random when the
//! process starts (so ids differ across restarts, and — with the cluster
//! — name the node that holds the connection), then the [`ConnId`]: core
//! (8 bits), slab key (24 bits), generation (32 bits). The generation is
//! what keeps an id from naming a later connection in the same slot.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;

use crate::hub::ConnId;

/// Largest slab key an id can carry (2^24 − 1 connections per core).
pub const MAX_KEY: u32 = (1 << 24) - 1;

/// An API Gateway–shaped connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GatewayId([u8; 11]);

impl GatewayId {
    /// The id of `conn` on the process with `instance` (its low 24 bits);
    /// `None` for a core above 255 or a key above [`MAX_KEY`].
    pub fn new(instance: u32, conn: ConnId) -> Option<Self> {
        let core = u8::try_from(conn.core).ok()?;
        if conn.key > MAX_KEY {
            return None;
        }
        let mut b = [0u8; 11];
        b[..3].copy_from_slice(&instance.to_be_bytes()[1..]);
        b[3] = core;
        b[4..7].copy_from_slice(&conn.key.to_be_bytes()[1..]);
        b[7..].copy_from_slice(&conn.gen.to_be_bytes());
        Some(Self(b))
    }

    /// The process instance the id was made by (24 bits).
    pub fn instance(&self) -> u32 {
        u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]])
    }

    /// The connection it names on that instance.
    pub fn conn(&self) -> ConnId {
        ConnId {
            core: u16::from(self.0[3]),
            key: u32::from_be_bytes([0, self.0[4], self.0[5], self.0[6]]),
            gen: u32::from_be_bytes([self.0[7], self.0[8], self.0[9], self.0[10]]),
        }
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 16];
        let n = URL_SAFE
            .encode_slice(self.0, &mut buf)
            .expect("11 bytes are 16 characters");
        f.write_str(std::str::from_utf8(&buf[..n]).expect("base64 is ASCII"))
    }
}

impl FromStr for GatewayId {
    type Err = ();

    /// The 16-character form; also without its `=` (15 characters), as
    /// some clients strip padding.
    fn from_str(s: &str) -> Result<Self, ()> {
        let padded;
        let s = match s.len() {
            16 => s,
            15 => {
                padded = format!("{s}=");
                &padded
            }
            _ => return Err(()),
        };
        let mut b = [0u8; 11];
        match URL_SAFE.decode_slice(s, &mut b) {
            Ok(11) => Ok(Self(b)),
            _ => Err(()),
        }
    }
}

/// A random instance number for this process (24 bits).
pub fn random_instance() -> u32 {
    let mut b = [0u8; 4];
    // A failing OS random source leaves 0: ids still work within this run.
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b) & 0x00ff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_api_gateway_ids_and_round_trip() {
        let conn = ConnId {
            core: 3,
            key: 70_000,
            gen: 0xdead_beef,
        };
        let id = GatewayId::new(0x00ab_cdef, conn).unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 16);
        assert!(text.ends_with('='), "{text}");
        assert!(
            text[..15]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{text}"
        );
        let back: GatewayId = text.parse().unwrap();
        assert_eq!(back, id);
        assert_eq!(back.conn(), conn);
        assert_eq!(back.instance(), 0x00ab_cdef);
        assert_eq!(text[..15].parse::<GatewayId>(), Ok(id), "unpadded");
    }

    #[test]
    fn out_of_range_and_malformed_ids_are_refused() {
        let conn = |core, key| ConnId { core, key, gen: 1 };
        assert!(GatewayId::new(1, conn(256, 1)).is_none());
        assert!(GatewayId::new(1, conn(1, MAX_KEY + 1)).is_none());
        assert!(GatewayId::new(1, conn(255, MAX_KEY)).is_some());
        // The instance keeps its low 24 bits only.
        assert_eq!(
            GatewayId::new(0xff12_3456, conn(0, 0)).unwrap().instance(),
            0x12_3456
        );
        for bad in [
            "",
            "R0oXAdfD0kwCH6",
            "R0oXAdfD0kwCH6w==",
            "R0oX+dfD0kwCH6w=",
            "R0oXAdfD0kwCH6w!",
            "1-2-3",
        ] {
            assert!(bad.parse::<GatewayId>().is_err(), "{bad}");
        }
        assert!(
            "R0oX/dfD0kwCH6w=".parse::<GatewayId>().is_err(),
            "standard alphabet"
        );
        assert!(
            "R0oXAdfD0kwCH6w=".parse::<GatewayId>().is_ok(),
            "the AWS docs' example shape"
        );
    }

    #[test]
    fn different_generations_and_instances_give_different_ids() {
        let a = GatewayId::new(
            7,
            ConnId {
                core: 0,
                key: 5,
                gen: 1,
            },
        )
        .unwrap();
        let b = GatewayId::new(
            7,
            ConnId {
                core: 0,
                key: 5,
                gen: 2,
            },
        )
        .unwrap();
        let c = GatewayId::new(
            8,
            ConnId {
                core: 0,
                key: 5,
                gen: 1,
            },
        )
        .unwrap();
        assert_ne!(a.to_string(), b.to_string());
        assert_ne!(a.to_string(), c.to_string());
    }
}
