//! Channel grants: which channels a token lets its bearer subscribe or
//! publish to.
//!
//! Owns: matching a channel name against a list of exact names and
//! `prefix*` patterns (`room:*` matches `room:1`; `*` matches all).
//! A pattern is a plain string prefix, not a path: `user:42*` also
//! matches `user:420`, so grants end their prefix with a separator
//! (`user:42:*`). Must not touch: tokens, connections.

/// A list of channel patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Box<str>>);

impl Grants {
    /// Grants from patterns.
    pub fn new<I: IntoIterator<Item = S>, S: Into<Box<str>>>(patterns: I) -> Self {
        Self(patterns.into_iter().map(Into::into).collect())
    }

    /// True if `channel` matches one pattern.
    pub fn allows(&self, channel: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => **p == *channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_patterns() {
        let g = Grants::new(["news", "room:*"]);
        assert!(g.allows("news"));
        assert!(!g.allows("news2"));
        assert!(g.allows("room:1"));
        assert!(g.allows("room:"));
        assert!(!g.allows("roo"));
        assert!(Grants::new(["*"]).allows("anything"));
        assert!(!Grants::default().allows("news"));
    }

    /// Pinned: `prefix*` is a plain string prefix. `user:42*` grants
    /// `user:420` too; only a separator before the `*` stops at the id
    /// (README, "One-time connection tokens").
    #[test]
    fn a_prefix_pattern_is_a_plain_string_prefix() {
        let loose = Grants::new(["user:42*"]);
        assert!(loose.allows("user:42"));
        assert!(loose.allows("user:42:inbox"));
        assert!(loose.allows("user:420"), "no separator: 420 matches too");
        let strict = Grants::new(["user:42:*"]);
        assert!(strict.allows("user:42:inbox"));
        assert!(!strict.allows("user:420"));
        assert!(!strict.allows("user:420:inbox"));
        assert!(
            !strict.allows("user:42"),
            "the bare name needs its own pattern"
        );
        // Only a trailing `*` is a wildcard.
        assert!(!Grants::new(["a*b"]).allows("axb"));
        assert!(Grants::new(["a*b"]).allows("a*b"));
    }
}
