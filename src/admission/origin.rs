//! The Origin allow-list, checked at the upgrade against cross-site
//! WebSocket hijacking.
//!
//! Owns: matching an `Origin` header against exact origins
//! (`https://app.example.com`) and subdomain wildcards
//! (`https://*.example.com`, which matches `https://a.example.com` but not
//! `https://example.com`). Must not touch: anything else.

/// Allowed origins; empty means every origin (and none) is allowed.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy(Vec<String>);

impl OriginPolicy {
    /// A policy from patterns.
    pub fn new(patterns: Vec<String>) -> Self {
        Self(
            patterns
                .into_iter()
                .map(|p| p.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        )
    }

    /// Whether a request with this `Origin` (or none) may upgrade. With a
    /// list, a request without `Origin` (not a browser) is allowed: the
    /// check protects browsers' ambient credentials, which non-browser
    /// clients do not carry.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.0.is_empty() {
            return true;
        }
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.0.iter().any(|p| match p.split_once("://*.") {
            Some((scheme, domain)) => origin
                .strip_prefix(scheme)
                .and_then(|o| o.strip_prefix("://"))
                .is_some_and(|host| {
                    host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}"))
                }),
            None => *p == origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let p = OriginPolicy::new(vec![
            "https://app.example.com".into(),
            "https://*.example.org".into(),
        ]);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("HTTPS://APP.EXAMPLE.COM/")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(!p.allows(Some("https://evil.com")));
        assert!(p.allows(Some("https://a.example.org")));
        assert!(p.allows(Some("https://a.b.example.org")));
        assert!(!p.allows(Some("https://example.org")));
        assert!(!p.allows(Some("https://evilexample.org")));
        assert!(p.allows(None));
        assert!(OriginPolicy::default().allows(Some("https://anything")));
    }
}
