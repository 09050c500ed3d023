//! What makes the admin plane safe to leave on a developer's machine with
//! a browser open: the checks on `Host` (DNS rebinding), `Origin` (CSRF)
//! and `Content-Type` (no "simple" cross-site POST), and the CORS headers
//! for the origins an operator listed.
//!
//! Owns: those rules, as pure functions of a request's head and the
//! settings (`admin.allowed_hosts`, `admin.cors_origins`), tested below.
//! Must not touch: sockets, routes or the key check (`routes` and
//! `service` do those).
//!
//! The rules (README "Admin API"):
//! - `Host` must name this listener: a loopback name (`localhost`,
//!   `127.0.0.1`, `[::1]`), the address the connection arrived on, or an
//!   entry of `admin.allowed_hosts` (`name` for any port, `name:port` for
//!   one); with or without a port. Else 403: a page on another site whose
//!   name was rebound to 127.0.0.1 still sends its own name.
//! - A state-changing request (POST, PUT, PATCH, DELETE) carrying an
//!   `Origin` must come from this plane's own origin (`http://` + the
//!   `Host` it sent) or an entry of `admin.cors_origins`. Else 403.
//! - A request with a body must say `Content-Type: application/json`
//!   (parameters such as `; charset=utf-8` allowed). Else 415: browsers
//!   send `text/plain`, forms and `multipart/form-data` cross-site without
//!   asking, never `application/json`.

use std::net::IpAddr;

use http::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use http::Method;

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the `Host` does not name this listener.
    ForeignHost,
    /// 403: a state-changing request from another origin.
    ForeignOrigin,
    /// 415: a body that is not declared JSON.
    NotJson,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::ForeignHost | Refusal::ForeignOrigin => 403,
            Refusal::NotJson => 415,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::ForeignHost => "forbidden_host",
            Refusal::ForeignOrigin => "forbidden_origin",
            Refusal::NotJson => "unsupported_media_type",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ForeignHost => {
                "the Host header does not name this admin listener (see admin.allowed_hosts)"
            }
            Refusal::ForeignOrigin => {
                "a state-changing request from another origin (see admin.cors_origins)"
            }
            Refusal::NotJson => "send the body as JSON with Content-Type: application/json",
        }
    }
}

/// The settings and the connection the rules need.
pub struct Rules<'a> {
    /// `admin.allowed_hosts`.
    pub allowed_hosts: &'a [String],
    /// `admin.cors_origins`.
    pub cors_origins: &'a [String],
    /// The address the connection arrived on (this listener's, as the
    /// client reached it).
    pub local_ip: IpAddr,
}

/// Whether a method changes state (and so is checked against `Origin`).
pub fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The checks every request passes before routing, in order: Host,
/// Origin, Content-Type. `public` requests (health probes, which carry
/// no data and are called by orchestrators by IP) skip the Host check.
pub fn check(
    rules: &Rules<'_>,
    method: &Method,
    headers: &HeaderMap,
    public: bool,
) -> Result<(), Refusal> {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    if !public && !host.is_some_and(|h| host_allowed(rules, h)) {
        return Err(Refusal::ForeignHost);
    }
    if changes_state(method) {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let own = host.is_some_and(|h| same_origin(origin, h));
            if !own && !listed_origin(rules, origin) {
                return Err(Refusal::ForeignOrigin);
            }
        }
    }
    if has_body(headers) && !is_json(headers) {
        return Err(Refusal::NotJson);
    }
    Ok(())
}

/// Whether the request says it carries a body (a non-zero
/// Content-Length, or any Transfer-Encoding).
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// `Content-Type: application/json`, with parameters or not, any case.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// Splits `host[:port]` (`[v6]:port` too) into a lower-case name and the
/// port text, if any.
fn split_host(host: &str) -> Option<(String, Option<&str>)> {
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n.to_ascii_lowercase(), Some(p)),
            None => (host.to_ascii_lowercase(), None),
        }
    };
    if name.is_empty() || port.is_some_and(|p| p.is_empty() || p.parse::<u16>().is_err()) {
        return None;
    }
    Some((name, port))
}

/// Whether `host` (a `Host` header's value) names this listener.
pub fn host_allowed(rules: &Rules<'_>, host: &str) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    if matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") {
        return true;
    }
    let local = match rules.local_ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    if name == local {
        return true;
    }
    rules.allowed_hosts.iter().any(|entry| {
        let Some((ename, eport)) = split_host(entry) else {
            return false;
        };
        ename == name && (eport.is_none() || eport == port)
    })
}

/// Whether `origin` is `http://` + the `Host` the request sent.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host.trim()))
}

/// Whether `origin` is an entry of `admin.cors_origins`.
pub fn listed_origin(rules: &Rules<'_>, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    rules
        .cors_origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The CORS headers for a request from `origin`: only when it is listed
/// in `admin.cors_origins` (so none at all by default).
pub fn cors_headers(rules: &Rules<'_>, origin: Option<&str>) -> Vec<(&'static str, String)> {
    match origin {
        Some(o) if listed_origin(rules, o) => vec![
            ("Access-Control-Allow-Origin", o.to_string()),
            ("Vary", "Origin".to_string()),
        ],
        _ => Vec::new(),
    }
}

/// The extra headers answering a CORS preflight (`OPTIONS` with
/// `Access-Control-Request-Method`) from a listed origin.
pub const PREFLIGHT_HEADERS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Methods", "GET, POST, DELETE"),
    (
        "Access-Control-Allow-Headers",
        "Authorization, Content-Type",
    ),
    ("Access-Control-Max-Age", "600"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules<'a>(hosts: &'a [String], origins: &'a [String]) -> Rules<'a> {
        Rules {
            allowed_hosts: hosts,
            cors_origins: origins,
            local_ip: "10.0.0.5".parse().unwrap(),
        }
    }

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_names_the_arrival_address_and_listed_hosts_pass() {
        let hosts = vec!["admin.internal".to_string(), "ops.example:8443".to_string()];
        let r = rules(&hosts, &[]);
        for ok in [
            "localhost",
            "LOCALHOST:9090",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:9090",
            "10.0.0.5:9090",
            "admin.internal",
            "admin.internal:1234",
            "ops.example:8443",
        ] {
            assert!(host_allowed(&r, ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "ops.example",
            "ops.example:8444",
            "localhost:",
            "localhost:99999",
            "[::1",
            "10.0.0.6",
        ] {
            assert!(!host_allowed(&r, bad), "{bad}");
        }
    }

    #[test]
    fn a_state_change_needs_its_own_or_a_listed_origin() {
        let origins = vec!["https://app.example".to_string()];
        let r = rules(&[], &origins);
        let post = |h: &[(&'static str, &str)]| check(&r, &Method::POST, &headers(h), false);
        assert_eq!(post(&[("host", "127.0.0.1:9090")]), Ok(()));
        assert_eq!(
            post(&[
                ("host", "127.0.0.1:9090"),
                ("origin", "http://127.0.0.1:9090")
            ]),
            Ok(())
        );
        assert_eq!(
            post(&[
                ("host", "127.0.0.1:9090"),
                ("origin", "https://app.example")
            ]),
            Ok(())
        );
        for o in ["http://evil.example", "null", "http://localhost:9090"] {
            assert_eq!(
                post(&[("host", "127.0.0.1:9090"), ("origin", o)]),
                Err(Refusal::ForeignOrigin),
                "{o}"
            );
        }
        // A read is not checked against Origin (the Host check holds).
        let get = check(
            &r,
            &Method::GET,
            &headers(&[("host", "localhost"), ("origin", "http://evil.example")]),
            false,
        );
        assert_eq!(get, Ok(()));
    }

    #[test]
    fn a_body_must_be_declared_json() {
        let r = rules(&[], &[]);
        let post = |h: &[(&'static str, &str)]| check(&r, &Method::POST, &headers(h), false);
        let host = ("host", "localhost");
        assert_eq!(post(&[host, ("content-length", "0")]), Ok(()));
        assert_eq!(
            post(&[host, ("content-length", "3")]),
            Err(Refusal::NotJson)
        );
        assert_eq!(
            post(&[
                host,
                ("content-length", "3"),
                ("content-type", "text/plain")
            ]),
            Err(Refusal::NotJson)
        );
        assert_eq!(
            post(&[
                host,
                ("transfer-encoding", "chunked"),
                ("content-type", "Application/JSON; charset=utf-8")
            ]),
            Ok(())
        );
    }

    #[test]
    fn health_probes_skip_the_host_check_only() {
        let r = rules(&[], &[]);
        let h = headers(&[("host", "10.9.9.9:9090")]);
        assert_eq!(check(&r, &Method::GET, &h, true), Ok(()));
        assert_eq!(
            check(&r, &Method::GET, &h, false),
            Err(Refusal::ForeignHost)
        );
        assert_eq!(
            check(&r, &Method::GET, &HeaderMap::new(), false),
            Err(Refusal::ForeignHost)
        );
    }

    #[test]
    fn cors_headers_only_for_listed_origins() {
        let origins = vec!["https://app.example".to_string()];
        let r = rules(&[], &origins);
        assert!(cors_headers(&r, Some("https://evil.example")).is_empty());
        assert!(cors_headers(&r, None).is_empty());
        assert_eq!(
            cors_headers(&r, Some("https://app.example"))[0].1,
            "https://app.example"
        );
        assert!(cors_headers(&rules(&[], &[]), Some("https://app.example")).is_empty());
    }
}
