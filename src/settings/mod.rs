//! The operator's view of the configuration: one TOML document (every
//! key optional, defaults embedded), overridable by `WSEDGE_…` environment
//! variables and by command-line flags, loaded into a [`Config`].
//!
//! Owns: what is derived from the schema declared in [`crate::config`] —
//! the key list, the flags ([`flags`]), `--set`, the secret keys, and the
//! example file ([`example`]) — the layering (in [`layers`]) and keeping
//! secrets out of its errors (in `redact`).
//! Must not touch: the settings themselves (each is declared once, in
//! `crate::config`), the command line's parsing (the binary builds its
//! flags from [`flags`]) or anything at run time.
//!
//! The file is [`Config`] itself (serde); `wsedge.example.toml` is
//! [`example`]'s output, and a test fails when the committed file differs.

pub mod layers;
mod redact;

use toml::{Table, Value};

use crate::config::schema::{Section, Setting};
use crate::Config;

pub use crate::config::InvalidSetting;
pub use layers::{load, LoadError, Source};

/// The defaults as TOML, and the table of `section` in them.
fn defaults() -> Table {
    Table::try_from(Config::default()).expect("the defaults serialize")
}

fn table_of<'a>(defaults: &'a Table, section: &Section) -> &'a Table {
    match section.name {
        "" => defaults,
        name => defaults[name].as_table().expect("a section is a table"),
    }
}

/// Every setting: its key (`section.name`), declaration and default.
pub fn settings() -> Vec<(String, &'static Setting, Value)> {
    let defaults = defaults();
    let mut out = Vec::new();
    for section in Config::SECTIONS {
        let values = table_of(&defaults, section);
        for s in section.settings {
            let default = values[s.name].clone();
            out.push((section.key(s), s, default));
        }
    }
    out
}

/// Keys whose values are secrets: masked when printed.
pub fn secret_keys() -> Vec<String> {
    settings()
        .into_iter()
        .filter(|(_, s, _)| s.secret)
        .map(|(k, _, _)| k)
        .collect()
}

/// The names (last key parts) of the secret settings: `key`,
/// `key_previous`. An assignment to one, in any table, is treated as a
/// secret in error messages.
pub fn secret_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Config::SECTIONS
        .iter()
        .flat_map(|s| s.settings)
        .filter(|s| s.secret)
        .map(|s| s.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// How a flag gives its key a value.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagKind {
    /// `--flag VALUE`, read like the key's environment variable.
    Value,
    /// `--flag VALUE`, repeated: each one an entry of the list.
    List,
    /// `--flag` alone sets the key to this (the opposite of its default).
    Switch(bool),
}

/// A flag of `wsedge serve` that sets a key, as declared in the schema.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The long name, without `--`.
    pub name: &'static str,
    pub key: String,
    pub kind: FlagKind,
    /// One line: the doc's first sentence and the key.
    pub help: String,
    /// The whole doc, the key, its variable and its default.
    pub long_help: String,
    default: Value,
}

impl Flag {
    /// The value the flag's occurrences (`texts`, in order) give the key.
    pub fn value(&self, texts: &[String]) -> Result<Value, String> {
        Ok(match self.kind {
            FlagKind::Switch(v) => Value::Boolean(v),
            FlagKind::List => Value::Array(texts.iter().cloned().map(Value::String).collect()),
            FlagKind::Value => {
                let text = texts.last().map_or("", String::as_str);
                layers::parse_like(text, &self.default)?
            }
        })
    }
}

/// The flags of `wsedge serve`: one per setting that declares one, its
/// kind inferred from the default's type (a boolean flag sets the opposite
/// of the default, a list flag repeats).
pub fn flags() -> Vec<Flag> {
    settings()
        .into_iter()
        .filter_map(|(key, s, default)| {
            let name = s.flag?;
            let kind = match default {
                Value::Boolean(b) => FlagKind::Switch(!b),
                Value::Array(_) => FlagKind::List,
                _ => FlagKind::Value,
            };
            let doc: Vec<&str> = s.doc().collect();
            let doc = doc.join(" ");
            let summary = first_sentence(&doc);
            let help = match kind {
                FlagKind::Switch(v) => format!("{summary} [{key} = {v}]"),
                _ => format!("{summary} [{key}]"),
            };
            let long_help = format!(
                "{doc}\n[{key}; environment {}; default {default}]",
                layers::env_var(&key)
            );
            Some(Flag {
                name,
                key,
                kind,
                help,
                long_help,
                default,
            })
        })
        .collect()
}

/// Up to the first full stop that ends a sentence (not "e.g.").
fn first_sentence(text: &str) -> &str {
    let mut from = 0;
    while let Some(i) = text[from..].find(". ").map(|i| from + i) {
        if !(text[..i].ends_with("e.g") || text[..i].ends_with("i.e")) {
            return &text[..=i];
        }
        from = i + 2;
    }
    text
}

/// Reads `--set KEY=VALUE`: any key, its value read like the key's
/// environment variable.
pub fn parse_set(text: &str) -> Result<(String, Value), String> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| format!("\"{text}\" is not KEY=VALUE"))?;
    let key = key.trim();
    let default = settings()
        .into_iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, _, d)| d)
        .ok_or_else(|| format!("{key} names no setting"))?;
    Ok((key.to_string(), layers::parse_like(raw, &default)?))
}

const EXAMPLE_HEADER: &str = "\
# wsedge configuration: every setting, at its default, with the reason.
#
#   wsedge serve --config wsedge.toml      # run with a file
#   wsedge check-config wsedge.toml        # validate, print the effective config
#
# Every key is optional: a missing key keeps the default shown here, so a
# real file holds only what it changes. Unknown keys are errors (with the
# file line), so a typo never silently does nothing.
#
# Precedence: default < this file < environment < command-line flag.
# Every key has an environment variable: WSEDGE_<SECTION>_<KEY>, e.g.
# connection.ping_interval -> WSEDGE_CONNECTION_PING_INTERVAL, and a
# top-level key like `listen` -> WSEDGE_LISTEN. Lists take a TOML array
# or a comma-separated string. Every key can be set on the command line
# with `--set KEY=VALUE`; `wsedge serve --help` names the flags of the
# common ones.
#
# Durations are written like \"25s\", \"500ms\", \"2m\"; sizes are bytes.
#
# Generated from the declarations in src/config/mod.rs by
# `wsedge check-config --example`: edit those, not this file.
";

/// `wsedge.example.toml`: every setting at its default, each preceded
/// by its documentation as a comment, sections by theirs.
pub fn example() -> String {
    let defaults = defaults();
    let mut out = String::from(EXAMPLE_HEADER);
    for section in Config::SECTIONS {
        out.push('\n');
        if !section.name.is_empty() {
            push_comment(&mut out, section.doc());
            out.push_str(&format!("[{}]\n", section.name));
        }
        let values = table_of(&defaults, section);
        for s in section.settings {
            push_comment(&mut out, s.doc());
            out.push_str(&format!("{} = {}\n", s.name, values[s.name]));
        }
    }
    out
}

fn push_comment<'a>(out: &mut String, lines: impl Iterator<Item = &'a str>) {
    for line in lines {
        out.push('#');
        if !line.is_empty() {
            out.push(' ');
            out.push_str(line);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wsedge.example.toml");

    #[test]
    fn the_example_file_is_generated_from_the_schema() {
        let committed = std::fs::read_to_string(EXAMPLE).unwrap();
        let generated = example();
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            panic!(
                "wsedge.example.toml differs from the schema in src/config/mod.rs from \
                 line {}:\n  committed: {:?}\n  generated: {:?}\n\
                 Regenerate it: cargo run -- check-config --example > wsedge.example.toml",
                line + 1,
                committed.lines().nth(line),
                generated.lines().nth(line),
            );
        }
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let parsed: Config = toml::from_str(&example()).unwrap();
        assert_eq!(parsed, Config::default());
        let table: toml::Table = example().parse().unwrap();
        for (key, _, _) in settings() {
            let present = match key.split_once('.') {
                Some((s, n)) => table.get(s).and_then(|t| t.get(n)).is_some(),
                None => table.contains_key(&key),
            };
            assert!(present, "{key} is not in the example");
        }
    }

    #[test]
    fn flags_come_from_the_schema_and_name_their_key() {
        let flags = flags();
        let get = |name: &str| flags.iter().find(|f| f.name == name).unwrap();
        let f = get("ping-interval");
        assert_eq!(f.key, "connection.ping_interval");
        assert_eq!(f.kind, FlagKind::Value);
        assert!(f.help.ends_with("[connection.ping_interval]"), "{}", f.help);
        assert!(f.long_help.contains("WSEDGE_CONNECTION_PING_INTERVAL"));
        assert_eq!(f.value(&["7s".into()]), Ok(Value::String("7s".into())));
        assert!(get("dev-user-param").help.contains("/ws?user=alice);"));
        assert_eq!(get("no-demo").kind, FlagKind::Switch(false));
        assert_eq!(get("no-demo").key, "admin.demo");
        assert_eq!(get("token-optional").kind, FlagKind::Switch(true));
        assert_eq!(get("origin").kind, FlagKind::List);
        assert_eq!(get("cores").value(&["3".into()]), Ok(Value::Integer(3)));
        assert!(get("cores").value(&["two".into()]).is_err());
        // Flag names are unique.
        let mut names: Vec<_> = flags.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), flags.len());
    }

    #[test]
    fn set_takes_any_key() {
        assert_eq!(
            parse_set("admin.threads=4"),
            Ok(("admin.threads".into(), Value::Integer(4)))
        );
        assert_eq!(
            parse_set("admission.origins=https://a.example,https://b.example")
                .unwrap()
                .1
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert!(parse_set("admin.thraeds=4")
            .unwrap_err()
            .contains("no setting"));
        assert!(parse_set("admin.threads").is_err());
    }

    #[test]
    fn secrets_are_the_declared_ones() {
        assert_eq!(
            secret_keys(),
            [
                "token.key",
                "token.key_previous",
                "admin.key",
                "gateway.access_key_id",
                "gateway.secret_access_key",
                "cluster.broker"
            ]
        );
    }
}
