//! The static files the admin listener serves: the status page (`/`), the
//! browser client (`/client/wsedge.js`) and its demo (`/demo`), embedded in
//! the binary so that no file or build step is needed at run time.
//!
//! Owns: the embedded bytes, their content types and the security headers
//! they are served with. Must not touch: what the pages show (that is
//! their own code, under `web/`).

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The file served at `path`, if any.
pub fn get(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/" | "/status" => (
            "text/html; charset=utf-8",
            include_str!("../../web/status.html"),
        ),
        "/demo" => (
            "text/html; charset=utf-8",
            include_str!("../../web/demo.html"),
        ),
        "/client/wsedge.js" => (
            "application/javascript; charset=utf-8",
            include_str!("../../web/wsedge.js"),
        ),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

/// Headers every embedded file is served with: no caching surprises
/// across upgrades, no MIME sniffing, no framing by other sites, and a
/// policy that lets the pages talk only to this listener and to
/// WebSockets (the hub may be on another port).
pub const HEADERS: [(&str, &str); 5] = [
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; \
         connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'",
    ),
];
