//! The client's address behind trusted proxies, read from the forwarding
//! header they set: `X-Forwarded-For` (or any header of that form: a
//! comma-separated list of addresses) or RFC 7239 `Forwarded`.
//!
//! Each proxy *appends* the address it received the request from, after
//! whatever the client sent; so only the entries a trusted proxy appended
//! can be believed. The list (every line of the header, in order, as one
//! list) is walked from the right: an address of a trusted proxy is a hop
//! to skip, the first other address is the client. A left-most entry is
//! reached only when every hop to its right was a trusted proxy.
//!
//! Owns: that walk and the syntax of both headers. Must not touch: the
//! HTTP parse (it is given the header lines), which header is configured
//! or which proxies are trusted (given), the limits, counting (the caller
//! counts a [`ClientIp::Malformed`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::net::IpNet;

/// How the configured header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `X-Forwarded-For: client, proxy1, proxy2`: addresses, each may
    /// carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
    AddressList,
    /// RFC 7239: `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl Syntax {
    /// The syntax of the header named `name`: RFC 7239 for `Forwarded`,
    /// an address list for any other (`X-Forwarded-For`, `X-Real-IP`, …).
    pub fn of_header(name: &str) -> Self {
        if name.trim().eq_ignore_ascii_case("forwarded") {
            Self::Forwarded
        } else {
            Self::AddressList
        }
    }
}

/// Who the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// The peer itself: it is not a trusted proxy (its header, if any, is
    /// not read), or it is one and sent no such header.
    Peer(IpAddr),
    /// The first address from the right that is not a trusted proxy.
    Forwarded(IpAddr),
    /// The peer, a trusted proxy whose header could not be read up to an
    /// untrusted address: an entry that is not an address (`unknown`, an
    /// obfuscated `_name`, garbage), a syntax error, or only trusted
    /// proxies and empty entries.
    Malformed(IpAddr),
}

impl ClientIp {
    /// The address admission counts this client under.
    pub fn ip(self) -> IpAddr {
        match self {
            Self::Peer(ip) | Self::Forwarded(ip) | Self::Malformed(ip) => ip,
        }
    }
}

/// The client of a request from `peer` carrying the header `lines` (all
/// lines of the configured header, in the order received), written in
/// `syntax`. The header is read only when `peer` is in `trusted`.
pub fn client_ip(peer: IpAddr, trusted: &[IpNet], syntax: Syntax, lines: &[&[u8]]) -> ClientIp {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return ClientIp::Peer(peer);
    }
    if lines.is_empty() {
        return ClientIp::Peer(peer);
    }
    // Lines from the last; each line's entries from the right. A line is
    // parsed only when the walk reaches it, so what a client wrote to the
    // left of the first untrusted address cannot spoil the answer.
    for line in lines.iter().rev() {
        let Some(entries) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| entries(l, syntax))
        else {
            return ClientIp::Malformed(peer);
        };
        for entry in entries.into_iter().rev() {
            match entry {
                None => return ClientIp::Malformed(peer),
                Some(ip) if is_trusted(ip) => {}
                Some(ip) => return ClientIp::Forwarded(ip),
            }
        }
    }
    ClientIp::Malformed(peer)
}

/// One line's entries, left to right: `Some(address)`, or `None` for an
/// entry that names no address; `None` for the line if its syntax is
/// broken. Empty list elements are skipped (RFC 9110 5.6.1).
fn entries(line: &str, syntax: Syntax) -> Option<Vec<Option<IpAddr>>> {
    match syntax {
        Syntax::AddressList => Some(
            line.split(',')
                .map(|e| e.trim_matches([' ', '\t']))
                .filter(|e| !e.is_empty())
                .map(list_address)
                .collect(),
        ),
        Syntax::Forwarded => forwarded_elements(line),
    }
}

/// An address-list entry: an address, `ADDRESS:PORT`, `[IPV6]` or
/// `[IPV6]:PORT`.
fn list_address(e: &str) -> Option<IpAddr> {
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = e.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    e.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// RFC 7239 section 4: `forwarded-element *( "," forwarded-element )`,
/// an element `pair *( ";" pair )`, a pair `token "=" ( token /
/// quoted-string )`. Each element's `for=` node, or `None` for an element
/// without one, with two, or whose node is not an address.
fn forwarded_elements(line: &str) -> Option<Vec<Option<IpAddr>>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    // The current element: whether it has pairs, and its `for` node(s).
    let mut pairs = 0usize;
    let mut fors = 0usize;
    let mut node: Option<IpAddr> = None;
    let mut end_element = |pairs: &mut usize, fors: &mut usize, node: &mut Option<IpAddr>| {
        if *pairs > 0 {
            out.push(node.take().filter(|_| *fors == 1));
        }
        (*pairs, *fors, *node) = (0, 0, None);
    };
    let mut i = 0;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        match b[i] {
            b',' => {
                end_element(&mut pairs, &mut fors, &mut node);
                i += 1;
                continue;
            }
            b';' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        let name = &line[start..i];
        if name.is_empty() || b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            loop {
                match b.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        i += 1;
                        v.push(char::from(*b.get(i)?));
                    }
                    &c => v.push(char::from(c)),
                }
                i += 1;
            }
            i += 1;
            v
        } else {
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b';' | b' ' | b'\t') {
                i += 1;
            }
            line[start..i].to_string()
        };
        if value.is_empty() {
            return None;
        }
        pairs += 1;
        if name.eq_ignore_ascii_case("for") {
            fors += 1;
            node = forwarded_node(&value);
        }
    }
    end_element(&mut pairs, &mut fors, &mut node);
    Some(out)
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// RFC 7239 section 6: `node = nodename [ ":" node-port ]`, `nodename =
/// IPv4address / "[" IPv6address "]" / "unknown" / obfnode`. `unknown`
/// and obfuscated names name no address.
fn forwarded_node(v: &str) -> Option<IpAddr> {
    let (ip, port) = if let Some(rest) = v.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip = IpAddr::V6(inner.parse().ok()?);
        (ip, after)
    } else {
        let (host, port) = v.split_at(v.find(':').unwrap_or(v.len()));
        (IpAddr::V4(host.parse::<Ipv4Addr>().ok()?), port)
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => Some(ip),
        Some(p) if is_node_port(p) => Some(ip),
        _ => None,
    }
}

/// `node-port = port / obfport`: 1 to 5 digits (a port, at most 65535),
/// or `_` and 1 or more of `ALPHA / DIGIT / "." / "_" / "-"`.
fn is_node_port(p: &str) -> bool {
    let digits = (1..=5).contains(&p.len())
        && p.bytes().all(|c| c.is_ascii_digit())
        && p.parse::<u16>().is_ok();
    let obf = p.strip_prefix('_').is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    });
    digits || obf
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    const PROXY: &str = "127.0.0.1";

    fn walk(syntax: Syntax, lines: &[&str]) -> ClientIp {
        let trusted = nets(&[PROXY, "10.0.0.0/8", "2001:db8:ffff::/48"]);
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        client_ip(ip(PROXY), &trusted, syntax, &lines)
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right() {
        use ClientIp::*;
        use Syntax::AddressList as L;
        let fwd = |s: &str| Forwarded(ip(s));
        let bad = Malformed(ip(PROXY));
        let table: &[(&[&str], ClientIp)] = &[
            (&["192.0.2.1"], fwd("192.0.2.1")),
            (&["6.6.6.6, 192.0.2.1"], fwd("192.0.2.1")),
            (&["6.6.6.6, 192.0.2.1, 10.1.2.3"], fwd("192.0.2.1")),
            (
                &["6.6.6.6,192.0.2.1 ,\t10.1.2.3, 127.0.0.1"],
                fwd("192.0.2.1"),
            ),
            (&["6.6.6.6", "192.0.2.1, 10.1.2.3"], fwd("192.0.2.1")),
            (&["6.6.6.6, 192.0.2.1", "10.1.2.3"], fwd("192.0.2.1")),
            (&["garbage, 192.0.2.1"], fwd("192.0.2.1")),
            (&["\"x", "192.0.2.1"], fwd("192.0.2.1")),
            (&["192.0.2.1:4711"], fwd("192.0.2.1")),
            (&["[2001:db8::1]:4711"], fwd("2001:db8::1")),
            (&["[2001:db8::1]"], fwd("2001:db8::1")),
            (&["2001:db8::1, 2001:db8:ffff:1::1"], fwd("2001:db8::1")),
            (&["::ffff:192.0.2.1"], fwd("::ffff:192.0.2.1")),
            (&["192.0.2.1,, "], fwd("192.0.2.1")),
            (&["192.0.2.1, garbage"], bad),
            (&["192.0.2.1, unknown, 10.1.2.3"], bad),
            (&["10.1.2.3, 127.0.0.1"], bad),
            (&["::ffff:10.1.2.3"], bad),
            (&[""], bad),
            (&[" , "], bad),
            (&["192.0.2.1", ""], fwd("192.0.2.1")),
            (&["fe80::1%eth0"], bad),
            (&[], Peer(ip(PROXY))),
        ];
        for (lines, want) in table {
            assert_eq!(walk(L, lines), *want, "{lines:?}");
        }
        // Non-UTF-8 on the walk's path is malformed; left of it, ignored.
        let t = nets(&[PROXY]);
        let l: [&[u8]; 2] = [b"\xff", b"192.0.2.1"];
        assert_eq!(client_ip(ip(PROXY), &t, L, &l), Forwarded(ip("192.0.2.1")));
        let l: [&[u8]; 1] = [b"192.0.2.1, \xff"];
        assert_eq!(client_ip(ip(PROXY), &t, L, &l), Malformed(ip(PROXY)));
    }

    #[test]
    fn rfc7239_forwarded_is_walked_from_the_right() {
        use ClientIp::*;
        use Syntax::Forwarded as F;
        let fwd = |s: &str| Forwarded(ip(s));
        let bad = Malformed(ip(PROXY));
        let table: &[(&[&str], ClientIp)] = &[
            // RFC 7239 section 4's examples.
            (&["for=\"_gazonk\""], bad),
            (
                &["For=\"[2001:db8:cafe::17]:4711\""],
                fwd("2001:db8:cafe::17"),
            ),
            (
                &["for=192.0.2.60;proto=http;by=203.0.113.43"],
                fwd("192.0.2.60"),
            ),
            (&["for=192.0.2.43, for=198.51.100.17"], fwd("198.51.100.17")),
            // From the right, past trusted proxies, over lines.
            (
                &["for=6.6.6.6, for=192.0.2.1, for=10.1.2.3"],
                fwd("192.0.2.1"),
            ),
            (
                &["for=6.6.6.6", "for=192.0.2.1;by=10.0.0.1", "for=10.9.9.9"],
                fwd("192.0.2.1"),
            ),
            (&["for=\"192.0.2.1:8080\""], fwd("192.0.2.1")),
            (&["for=\"192.0.2.1:_abc\""], fwd("192.0.2.1")),
            (&["FOR=192.0.2.1"], fwd("192.0.2.1")),
            (
                &["proto=https;for=192.0.2.1;host=example.com"],
                fwd("192.0.2.1"),
            ),
            (&["for=\"[2001:db8::1]\""], fwd("2001:db8::1")),
            (&["for=\"\\[2001:db8::1\\]\""], fwd("2001:db8::1")),
            (&["for=192.0.2.1 , , for=10.1.2.3"], fwd("192.0.2.1")),
            // A client's broken line left of a good one is never parsed.
            (&["for=\"unterminated", "for=192.0.2.1"], fwd("192.0.2.1")),
            (&["for=unknown, for=192.0.2.1"], fwd("192.0.2.1")),
            // Malformed on the walk's path.
            (&["for=unknown"], bad),
            (&["for=192.0.2.1, for=_hidden"], bad),
            (&["for=192.0.2.1, proto=https"], bad),
            (&["for=192.0.2.1;for=192.0.2.2"], bad),
            (&["for=2001:db8::1"], bad),
            (&["for=\"[2001:db8::1\""], bad),
            (&["for=\"192.0.2.1:99999\""], bad),
            (&["for=\"192.0.2.1:\""], bad),
            (&["for=192.0.2.1, for=\"10.1.2.3"], bad),
            (&["for="], bad),
            (&["for"], bad),
            (&["=192.0.2.1"], bad),
            (&["for=10.1.2.3"], bad),
            (&[""], bad),
        ];
        for (lines, want) in table {
            assert_eq!(walk(F, lines), *want, "{lines:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("192.0.2.9");
        let l: [&[u8]; 1] = [b"6.6.6.6"];
        for syntax in [Syntax::AddressList, Syntax::Forwarded] {
            assert_eq!(client_ip(peer, &trusted, syntax, &l), ClientIp::Peer(peer));
        }
        // A mapped peer address is its IPv4 address.
        let peer = ip("::ffff:10.0.0.1");
        assert_eq!(
            client_ip(peer, &trusted, Syntax::AddressList, &l),
            ClientIp::Forwarded(ip("6.6.6.6"))
        );
    }

    #[test]
    fn the_header_name_picks_the_syntax() {
        assert_eq!(Syntax::of_header("Forwarded"), Syntax::Forwarded);
        assert_eq!(Syntax::of_header("x-forwarded-for"), Syntax::AddressList);
        assert_eq!(Syntax::of_header("X-Real-IP"), Syntax::AddressList);
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::V4(v.into())),
            any::<u128>().prop_map(|v| IpAddr::V6(v.into())),
        ]
    }

    /// An address as a proxy may write it in `syntax`.
    fn written(ip: IpAddr, syntax: Syntax, port: Option<u16>, quote: bool) -> String {
        let node = match (ip, port) {
            (IpAddr::V4(a), None) => a.to_string(),
            (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            (IpAddr::V6(a), None) => format!("[{a}]"),
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        };
        match syntax {
            Syntax::AddressList => node,
            Syntax::Forwarded if quote || node.contains(':') || node.contains('[') => {
                format!("for=\"{node}\"")
            }
            Syntax::Forwarded => format!("for={node}"),
        }
    }

    proptest! {
        /// Whatever a client writes, and however many trusted hops follow
        /// (in any number of lines), the client is the address the first
        /// trusted proxy appended.
        #[test]
        fn the_address_the_first_trusted_proxy_saw_is_the_client(
            junk in proptest::collection::vec("[ -~]{0,20}", 0..4),
            client in any_ip(),
            hops in proptest::collection::vec(
                (any::<u32>(), any::<Option<u16>>(), any::<bool>()), 0..4),
            cport in any::<Option<u16>>(),
            cquote in any::<bool>(),
            forwarded in any::<bool>(),
            splits in any::<u8>(),
        ) {
            let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
            prop_assume!(!trusted.iter().any(|n| n.contains(client)));
            let syntax = if forwarded { Syntax::Forwarded } else { Syntax::AddressList };
            // The client's junk goes on its own lines (a proxy that joins
            // lines keeps a client's unterminated quote: malformed, below).
            let mut lines: Vec<String> = junk;
            let mut entries = vec![written(client, syntax, cport, cquote)];
            for (h, port, quote) in hops {
                let hop = IpAddr::V4((0x0a00_0000 | (h & 0x00ff_ffff)).into());
                entries.push(written(hop, syntax, port, quote));
            }
            // Split the appended entries over lines.
            let mut line = Vec::new();
            for (i, e) in entries.into_iter().enumerate() {
                line.push(e);
                if splits & (1 << i) != 0 {
                    lines.push(line.join(", "));
                    line.clear();
                }
            }
            if !line.is_empty() {
                lines.push(line.join(", "));
            }
            let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let got = client_ip(ip(PROXY), &trusted, syntax, &bytes);
            prop_assert_eq!(got, ClientIp::Forwarded(client), "{:?}", lines);
        }

        /// Any bytes: an answer, never a panic; a trusted peer's answer is
        /// the peer or an untrusted address.
        #[test]
        fn any_header_gets_an_answer(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
            forwarded in any::<bool>(),
        ) {
            let trusted = nets(&[PROXY]);
            let syntax = if forwarded { Syntax::Forwarded } else { Syntax::AddressList };
            let bytes: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            match client_ip(ip(PROXY), &trusted, syntax, &bytes) {
                ClientIp::Forwarded(c) => prop_assert!(!trusted[0].contains(c)),
                other => prop_assert_eq!(other.ip(), ip(PROXY)),
            }
        }
    }
}
