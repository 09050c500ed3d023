//! Route selection, as API Gateway does it: a message's route key is what
//! the route selection expression (`$request.body.action` by default)
//! finds in the message, taken as JSON; a message that is not JSON, has no
//! such field, or names no configured route goes to `$default`.
//!
//! Owns: parsing the expression and evaluating it on one message.
//! Must not touch: the backend calls or the route table's targets.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The route key of messages no other route takes.
pub const DEFAULT: &str = "$default";

/// A parsed `$request.body.a.b` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    path: Vec<String>,
}

/// Why a route selection expression was refused (at start-up).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("route selection expression must be $request.body.FIELD[.FIELD…] with non-empty field names, not {0:?}")]
pub struct BadSelection(pub String);

impl FromStr for Selection {
    type Err = BadSelection;

    fn from_str(s: &str) -> Result<Self, BadSelection> {
        let bad = || BadSelection(s.to_string());
        let rest = s.strip_prefix("$request.body.").ok_or_else(bad)?;
        let path: Vec<String> = rest.split('.').map(str::to_string).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Self { path })
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$request.body.{}", self.path.join("."))
    }
}

impl Default for Selection {
    /// `$request.body.action`.
    fn default() -> Self {
        Self {
            path: vec!["action".into()],
        }
    }
}

impl Selection {
    /// The route key `message` selects: the string at the expression's
    /// path, or `None` (then `$default`) for a message that is not a JSON
    /// object, lacks the field, or holds a non-string there.
    pub fn select(&self, message: &[u8]) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(message).ok()?;
        let mut at = &value;
        for field in &self.path {
            at = at.as_object()?.get(field)?;
        }
        at.as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_expression_reads_action() {
        let sel = Selection::default();
        assert_eq!(sel.to_string(), "$request.body.action");
        assert_eq!(
            sel.select(br#"{"action":"sendMessage","data":1}"#),
            Some("sendMessage".into())
        );
        for other in [
            &br#"{"data":1}"#[..],
            br#"{"action":7}"#,
            br#"{"action":null}"#,
            br#"["action"]"#,
            b"action",
            b"",
            &[0xff, 0xfe],
        ] {
            assert_eq!(
                sel.select(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn nested_paths_are_followed() {
        let sel: Selection = "$request.body.meta.route".parse().unwrap();
        assert_eq!(
            sel.select(br#"{"meta":{"route":"join"}}"#),
            Some("join".into())
        );
        assert_eq!(sel.select(br#"{"meta":"join"}"#), None);
        assert_eq!(sel.to_string(), "$request.body.meta.route");
    }

    #[test]
    fn malformed_expressions_are_refused() {
        for bad in [
            "",
            "action",
            "$request.body",
            "$request.body.",
            "$request.body.a..b",
            "$request.header.x",
        ] {
            assert!(bad.parse::<Selection>().is_err(), "{bad}");
        }
    }
}
