//! IP address arithmetic for admission: networks written `addr` or
//! `addr/prefix` (the trusted proxies), and the key an address is counted
//! under by the per-IP limits (IPv6 by its prefix, IPv4-mapped IPv6 as
//! the IPv4 address).
//!
//! Owns: parsing, printing and matching [`IpNet`]s, and [`limit_key`].
//! Must not touch: headers (see `client_ip`), the limits themselves
//! (`ip`, `slots`), configuration beyond the text form of a network.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length (`10.0.0.0/8`,
/// `2001:db8::/32`); a bare address is its own network (`/32`, `/128`).
/// Host bits below the prefix are cleared when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an IP address or network (ADDRESS or ADDRESS/PREFIX)")]
pub struct NetParseError(String);

impl IpNet {
    /// The network of `addr` with `prefix` bits (clamped to the family's
    /// length); an IPv4-mapped IPv6 address is taken as its IPv4 address.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let addr = addr.to_canonical();
        let prefix = prefix.min(max_prefix(addr));
        Self {
            addr: mask(addr, prefix),
            prefix,
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Its prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> Self {
        Self::new(addr, 128)
    }
}

impl FromStr for IpNet {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NetParseError(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = max_prefix(addr.to_canonical());
        let prefix = match prefix {
            None => max,
            // A mapped address's prefix counts the 96 mapping bits.
            Some(p) => {
                let p: u8 = p.parse().map_err(|_| err())?;
                let p = if addr.to_canonical() != addr {
                    p.checked_sub(96).ok_or_else(err)?
                } else {
                    p
                };
                (p <= max).then_some(p).ok_or_else(err)?
            }
        };
        Ok(Self::new(addr, prefix))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl serde::Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The key `ip` is counted under by the per-IP limits: an IPv4 address
/// (or an IPv4-mapped IPv6 one) itself, an IPv6 address's first
/// `ipv6_prefix` bits (one host usually holds a whole /64).
pub fn limit_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 @ IpAddr::V6(_) => mask(v6, ipv6_prefix.min(128)),
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with the bits after the first `prefix` cleared (`prefix` at
/// most the family's length).
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & bits))
        }
        IpAddr::V6(a) => {
            let bits = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_print_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped is IPv4");
        assert!(!n.contains(ip("::a00:1")), "IPv4-compatible is not");
        assert_eq!(n.to_string(), "10.0.0.0/8");
        let host: IpNet = "127.0.0.1".parse().unwrap();
        assert_eq!((host.to_string(), host.prefix()), ("127.0.0.1".into(), 32));
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6: IpNet = "2001:db8:ff::1/48".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8:ff::/48");
        assert!(v6.contains(ip("2001:db8:ff:ffff::9")));
        assert!(!v6.contains(ip("2001:db8:fe::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let mapped: IpNet = "::ffff:192.0.2.0/120".parse().unwrap();
        assert_eq!(mapped.to_string(), "192.0.2.0/24");
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/",
            "x/8",
            "10.0.0.0/-1",
            "::ffff:1.2.3.4/95",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limit_keys_group_ipv6_by_prefix_and_keep_ipv4() {
        assert_eq!(limit_key(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(limit_key(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:3:4:5:6"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            limit_key(ip("2001:db8:1:2:3:4:5:6"), 48),
            ip("2001:db8:1::")
        );
        assert_eq!(
            limit_key(ip("2001:db8:1:2:3:4:5:6"), 128),
            ip("2001:db8:1:2:3:4:5:6")
        );
        assert_eq!(limit_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(limit_key(ip("::1"), 64), ip("::"));
    }
}
