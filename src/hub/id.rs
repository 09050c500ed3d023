//! Connection identities that stay unique for the life of the process.
//!
//! Owns: [`ConnId`] and its text form. Must not touch: anything else.

use std::fmt;
use std::str::FromStr;

/// A connection: its core, its slab key on that core, and the generation
/// of that slab entry, so an id is never reused while a stale reference
/// (an API call, a queued command) could still name it. Text form:
/// `core-key-gen`, e.g. `1-42-7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub core: u16,
    pub key: u32,
    pub gen: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.core, self.key, self.gen)
    }
}

impl FromStr for ConnId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let mut it = s.split('-');
        let id = ConnId {
            core: it.next().ok_or(())?.parse().map_err(|_| ())?,
            key: it.next().ok_or(())?.parse().map_err(|_| ())?,
            gen: it.next().ok_or(())?.parse().map_err(|_| ())?,
        };
        if it.next().is_some() {
            return Err(());
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let id = ConnId {
            core: 1,
            key: 42,
            gen: 7,
        };
        assert_eq!(id.to_string(), "1-42-7");
        assert_eq!("1-42-7".parse(), Ok(id));
        for bad in ["", "1-2", "1-2-3-4", "a-b-c", "-1-2-3"] {
            assert!(bad.parse::<ConnId>().is_err(), "{bad}");
        }
    }
}
