//! AWS Signature Version 4 verification, for the `@connections`
//! management API that boto3's `apigatewaymanagementapi` client signs.
//!
//! Owns: parsing the `Authorization: AWS4-HMAC-SHA256 …` header and
//! `X-Amz-Date`, rebuilding the canonical request from what arrived on the
//! wire, the string to sign and the derived signing key, and comparing
//! signatures in constant time. Time comes in as a value.
//! Must not touch: HTTP serving, routing or answers (the caller maps a
//! [`SigV4Error`] to `403 ForbiddenException`), connection state.
//!
//! Written here rather than taken from a crate: the AWS crates sign
//! requests but do not verify them, and verification needs the
//! canonical form of the request *as received* (its raw path and query),
//! which is a few dozen lines over `hmac` and `sha2`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a signed request was refused. Every variant is answered `403`; the
/// reason is logged and counted, never echoed with a secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SigV4Error {
    #[error("no Authorization header")]
    MissingAuthorization,
    #[error("the Authorization header is not AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…")]
    MalformedAuthorization,
    #[error("unknown access key id")]
    UnknownAccessKey,
    #[error("credential scope does not match (date, region, service or terminator)")]
    WrongScope,
    #[error("no valid X-Amz-Date header (yyyymmddThhmmssZ)")]
    BadDate,
    #[error("request time is more than the allowed skew away from the server's clock")]
    ClockSkew,
    #[error("the host header is not signed")]
    HostNotSigned,
    #[error("a signed header is missing from the request")]
    MissingSignedHeader,
    #[error("the path cannot be put in canonical form")]
    BadPath,
    #[error("signature does not match")]
    SignatureMismatch,
}

/// A request as it arrived: the raw (still percent-encoded) path and
/// query, every header line, and the body.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// The configured key pair and scope a request must be signed for.
#[derive(Clone)]
pub struct Verifier {
    access_key_id: String,
    secret: String,
    region: String,
    service: String,
    max_skew: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

impl Verifier {
    /// A verifier for `service` (`execute-api`) in `region`, allowing
    /// `max_skew` between the request's time and the server's (AWS: 5 min).
    pub fn new(
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
        region: impl Into<String>,
        service: impl Into<String>,
        max_skew: Duration,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret: secret.into(),
            region: region.into(),
            service: service.into(),
            max_skew,
        }
    }

    /// Checks `req`'s signature at time `now`.
    pub fn verify(&self, req: &SignedRequest<'_>, now: SystemTime) -> Result<(), SigV4Error> {
        let auth = header(req.headers, "authorization").ok_or(SigV4Error::MissingAuthorization)?;
        let auth = std::str::from_utf8(auth).map_err(|_| SigV4Error::MalformedAuthorization)?;
        let auth = Authorization::parse(auth)?;
        if auth.access_key_id != self.access_key_id {
            return Err(SigV4Error::UnknownAccessKey);
        }
        let amz_date = header(req.headers, "x-amz-date")
            .and_then(|d| std::str::from_utf8(d).ok())
            .ok_or(SigV4Error::BadDate)?;
        let at = parse_amz_date(amz_date).ok_or(SigV4Error::BadDate)?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if at.abs_diff(now) > self.max_skew.as_secs() {
            return Err(SigV4Error::ClockSkew);
        }
        if auth.date != &amz_date[..8]
            || auth.region != self.region
            || auth.service != self.service
            || auth.terminator != "aws4_request"
        {
            return Err(SigV4Error::WrongScope);
        }
        if !auth.signed_headers.split(';').any(|h| h == "host") {
            return Err(SigV4Error::HostNotSigned);
        }
        let canonical = canonical_request(req, auth.signed_headers)?;
        let scope = format!(
            "{}/{}/{}/aws4_request",
            auth.date, self.region, self.service
        );
        let to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(&self.secret, auth.date, &self.region, &self.service);
        let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        let given = unhex(auth.signature).ok_or(SigV4Error::SignatureMismatch)?;
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| SigV4Error::SignatureMismatch)
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/
/// region/service/aws4_request, SignedHeaders=a;b, Signature=hex`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(v: &'a str) -> Result<Self, SigV4Error> {
        let bad = SigV4Error::MalformedAuthorization;
        let rest = v.trim().strip_prefix(ALGORITHM).ok_or(bad.clone())?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, val) = part.trim().split_once('=').ok_or(bad.clone())?;
            match k {
                "Credential" => credential = Some(val),
                "SignedHeaders" => signed = Some(val),
                "Signature" => signature = Some(val),
                _ => return Err(bad),
            }
        }
        let (credential, signed_headers, signature) = match (credential, signed, signature) {
            (Some(c), Some(h), Some(s)) if !h.is_empty() => (c, h, s),
            _ => return Err(bad),
        };
        let mut scope = credential.split('/');
        let mut next = || scope.next().ok_or(bad.clone());
        let parsed = Self {
            access_key_id: next()?,
            date: next()?,
            region: next()?,
            service: next()?,
            terminator: next()?,
            signed_headers,
            signature,
        };
        if scope.next().is_some() {
            return Err(bad);
        }
        Ok(parsed)
    }
}

/// The canonical request of SigV4 for a non-S3 service: the path encoded
/// once more over what arrived (as the AWS SDKs sign it), the query
/// decoded, re-encoded and sorted, the signed headers lowercased with
/// trimmed, space-collapsed values, and the body's SHA-256.
fn canonical_request(req: &SignedRequest<'_>, signed_headers: &str) -> Result<String, SigV4Error> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    canonical_path(req.path, &mut out)?;
    out.push('\n');
    canonical_query(req.query, &mut out);
    out.push('\n');
    for name in signed_headers.split(';') {
        let values: Vec<&[u8]> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect();
        if values.is_empty() {
            return Err(SigV4Error::MissingSignedHeader);
        }
        out.push_str(name);
        out.push(':');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = String::from_utf8_lossy(v);
            let mut first = true;
            for word in v.split_ascii_whitespace() {
                if !first {
                    out.push(' ');
                }
                out.push_str(word);
                first = false;
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    match header(req.headers, "x-amz-content-sha256").and_then(|v| std::str::from_utf8(v).ok()) {
        Some(h) => out.push_str(h.trim()),
        None => out.push_str(&hex(&Sha256::digest(req.body))),
    }
    Ok(out)
}

/// `/a/b c` → `/a/b%2520c`-style: each byte of the raw path that is not
/// unreserved or `/` is percent-encoded (so the `%` of an already encoded
/// byte becomes `%25`). Paths with dot segments are refused rather than
/// normalised (no route of the management API has them).
fn canonical_path(path: &str, out: &mut String) -> Result<(), SigV4Error> {
    if path.is_empty() {
        out.push('/');
        return Ok(());
    }
    if !path.starts_with('/') || path.split('/').any(|s| s == "." || s == "..") {
        return Err(SigV4Error::BadPath);
    }
    for b in path.bytes() {
        if b == b'/' {
            out.push('/');
        } else {
            encode_byte(b, out);
        }
    }
    Ok(())
}

/// The query's `k=v` pairs percent-decoded, re-encoded with the strict
/// unreserved set, sorted by key then value, joined with `&`.
fn canonical_query(query: &str, out: &mut String) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

fn decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        encode_byte(b, &mut out);
    }
    out
}

fn encode_byte(b: u8, out: &mut String) {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
        out.push(b as char);
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.push('%');
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    key
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The first value of header `name` (any case).
fn header<'a>(headers: &[(&str, &'a [u8])], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `20261130T120000Z` → seconds since the Unix epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to y-mo-d (proleptic Gregorian).
    let (y, mo) = (y as i64, mo as i64);
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + (h * 3600 + mi * 60 + sec) as i64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(s: &str) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_amz_date(s).unwrap())
    }

    fn auth(region: &str, signed: &str, sig: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/20261130/{region}/execute-api/aws4_request, SignedHeaders={signed}, Signature={sig}"
        )
    }

    /// Signatures made by botocore 1.35.99 (`SigV4Auth`, and boto3's
    /// `post_to_connection` captured on a socket) at 2026-11-30 12:00:00Z
    /// with the AWS documentation's example key pair: known answers from
    /// an independent implementation.
    struct Vector {
        region: &'static str,
        method: &'static str,
        host: &'static str,
        path: &'static str,
        query: &'static str,
        extra: &'static [(&'static str, &'static str)],
        signed: &'static str,
        body: &'static [u8],
        sig: &'static str,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            region: "us-east-1",
            method: "POST",
            host: "127.0.0.1:56511",
            path: "/production/@connections/R0oXAdfD0kwCH6w%3D",
            query: "",
            extra: &[],
            signed: "host;x-amz-date",
            body: b"hello",
            sig: "da405c141b7606b56362c47948519a3e8cbc020ac0b8dfe83e94c3f47dc904b4",
        },
        Vector {
            region: "eu-west-1",
            method: "GET",
            host: "localhost:9090",
            path: "/production/@connections/abc%3D",
            query: "",
            extra: &[],
            signed: "host;x-amz-date",
            body: b"",
            sig: "a1829191878fa9db2065581b12bf35b42e35f076fbb0979f163298a90f4b5437",
        },
        Vector {
            region: "eu-west-1",
            method: "DELETE",
            host: "127.0.0.1:9090",
            path: "/%40connections/x-y_z",
            query: "",
            extra: &[],
            signed: "host;x-amz-date",
            body: b"",
            sig: "15256d5ef89714d7f470e04018580b77e759a9882ade90e90a78803eb5d4e996",
        },
        Vector {
            region: "eu-west-1",
            method: "POST",
            host: "127.0.0.1:9090",
            path: "/dev/@connections/Q",
            query: "b=2&a=hello%20world&a=1",
            extra: &[
                ("Content-Type", "application/json"),
                ("X-Custom", "  two   spaces  "),
            ],
            signed: "content-type;host;x-amz-date;x-custom",
            body: br#"{"x":1}"#,
            sig: "beea53c3987c734460a975f93a4dc3280e11b17257d5cf2bf9f5b446fd204c75",
        },
    ];

    fn check(
        v: &Vector,
        tweak: impl FnOnce(&mut Vec<(String, String)>, &mut Vec<u8>),
    ) -> Result<(), SigV4Error> {
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), v.host.into()),
            ("X-Amz-Date".into(), "20261130T120000Z".into()),
            ("Authorization".into(), auth(v.region, v.signed, v.sig)),
        ];
        headers.extend(v.extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
        let mut body = v.body.to_vec();
        tweak(&mut headers, &mut body);
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, x)| (k.as_str(), x.as_bytes()))
            .collect();
        let req = SignedRequest {
            method: v.method,
            path: v.path,
            query: v.query,
            headers: &headers,
            body: &body,
        };
        Verifier::new(
            AKID,
            SECRET,
            v.region,
            "execute-api",
            Duration::from_secs(300),
        )
        .verify(&req, at("20261130T120230Z"))
    }

    #[test]
    fn botocore_signatures_verify() {
        for v in VECTORS {
            assert_eq!(check(v, |_, _| {}), Ok(()), "{} {}", v.method, v.path);
        }
    }

    #[test]
    fn any_change_to_what_was_signed_is_refused() {
        let v = &VECTORS[3];
        let mismatch = Err(SigV4Error::SignatureMismatch);
        assert_eq!(check(v, |_, b| b.push(b' ')), mismatch, "body");
        assert_eq!(
            check(v, |h, _| h[0].1 = "127.0.0.1:9091".into()),
            mismatch,
            "host"
        );
        assert_eq!(
            check(v, |h, _| h[4].1 = "two spaces!".into()),
            mismatch,
            "a signed header"
        );
        // An unsigned header may change: proxies add them.
        assert_eq!(
            check(v, |h, _| h.push(("X-Other".into(), "1".into()))),
            Ok(())
        );
        // The same signature under another key pair.
        let other = Vector {
            sig: "beea53c3987c734460a975f93a4dc3280e11b17257d5cf2bf9f5b446fd204c74",
            ..*v
        };
        assert_eq!(check(&other, |_, _| {}), mismatch, "one bit off");
        assert_eq!(
            check(v, |h, _| h.retain(|(k, _)| k != "X-Custom")),
            Err(SigV4Error::MissingSignedHeader)
        );
    }

    #[test]
    fn scope_time_and_key_are_checked() {
        let v = &VECTORS[0];
        let wrong_region = Vector {
            region: "us-west-2",
            ..*v
        };
        // Verified for us-west-2: the scope still says us-west-2, the
        // signature was made for us-east-1.
        assert_eq!(
            check(&wrong_region, |_, _| {}),
            Err(SigV4Error::SignatureMismatch)
        );
        let req_headers = |date: &str, authz: String| {
            vec![
                ("Host".to_string(), v.host.to_string()),
                ("X-Amz-Date".to_string(), date.to_string()),
                ("Authorization".to_string(), authz),
            ]
        };
        let run = |headers: Vec<(String, String)>, verifier: &Verifier, now: &str| {
            let h: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(k, x)| (k.as_str(), x.as_bytes()))
                .collect();
            verifier.verify(
                &SignedRequest {
                    method: "POST",
                    path: v.path,
                    query: "",
                    headers: &h,
                    body: v.body,
                },
                at(now),
            )
        };
        let good = Verifier::new(
            AKID,
            SECRET,
            "us-east-1",
            "execute-api",
            Duration::from_secs(300),
        );
        let ok_auth = auth("us-east-1", v.signed, v.sig);
        assert_eq!(
            run(
                req_headers("20261130T120000Z", ok_auth.clone()),
                &good,
                "20261130T120500Z"
            ),
            Ok(())
        );
        assert_eq!(
            run(
                req_headers("20261130T120000Z", ok_auth.clone()),
                &good,
                "20261130T120501Z"
            ),
            Err(SigV4Error::ClockSkew)
        );
        assert_eq!(
            run(
                req_headers("20261130T120000Z", ok_auth.clone()),
                &good,
                "20261130T115459Z"
            ),
            Err(SigV4Error::ClockSkew)
        );
        let other_region = Verifier::new(
            AKID,
            SECRET,
            "eu-west-1",
            "execute-api",
            Duration::from_secs(300),
        );
        assert_eq!(
            run(
                req_headers("20261130T120000Z", ok_auth.clone()),
                &other_region,
                "20261130T120000Z"
            ),
            Err(SigV4Error::WrongScope)
        );
        let other_key = Verifier::new(
            "AKIDOTHER",
            SECRET,
            "us-east-1",
            "execute-api",
            Duration::from_secs(300),
        );
        assert_eq!(
            run(
                req_headers("20261130T120000Z", ok_auth.clone()),
                &other_key,
                "20261130T120000Z"
            ),
            Err(SigV4Error::UnknownAccessKey)
        );
        let wrong_secret = Verifier::new(
            AKID,
            "not-the-secret",
            "us-east-1",
            "execute-api",
            Duration::from_secs(300),
        );
        assert_eq!(
            run(
                req_headers("20261130T120000Z", ok_auth.clone()),
                &wrong_secret,
                "20261130T120000Z"
            ),
            Err(SigV4Error::SignatureMismatch)
        );
        assert_eq!(
            run(
                req_headers("20261130T120000Z", auth("us-east-1", "x-amz-date", v.sig)),
                &good,
                "20261130T120000Z"
            ),
            Err(SigV4Error::HostNotSigned)
        );
        assert_eq!(
            run(
                req_headers("2026-11-30T12:00:00Z", ok_auth),
                &good,
                "20261130T120000Z"
            ),
            Err(SigV4Error::BadDate)
        );
        for bad in [
            "",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA1 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e/f, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00, Extra=1",
        ] {
            assert_eq!(
                run(
                    req_headers("20261130T120000Z", bad.to_string()),
                    &good,
                    "20261130T120000Z"
                ),
                Err(SigV4Error::MalformedAuthorization),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dates_convert_to_unix_time() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_amz_date("20261130T120000Z"), Some(1_796_040_000));
        for bad in [
            "20261330T120000Z",
            "20261130T250000Z",
            "20261130 120000Z",
            "2026113T120000Z",
            "+0261130T120000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_debug_form_hides_the_secret() {
        let v = Verifier::new(
            AKID,
            SECRET,
            "us-east-1",
            "execute-api",
            Duration::from_secs(300),
        );
        let shown = format!("{v:?}");
        assert!(!shown.contains(SECRET) && shown.contains(AKID), "{shown}");
    }
}
