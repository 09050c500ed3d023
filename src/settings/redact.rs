//! Keeping secrets out of configuration errors. toml's error text quotes
//! the source line it points at (and a wrong type quotes the value), so an
//! error on the line of `key = s3cr3t` under `[admin]` would print the
//! key. An error whose span touches a secret's assignment is told by key,
//! line and column only.
//!
//! Owns: finding the assignments in a file's text that may hold a secret
//! (any key whose last part is the name of a setting declared `secret =
//! true`, in any table: a key put in the wrong table is still a secret),
//! and the wording of an error that touches one. Must not touch: which
//! settings are secret (declared in `crate::config`), loading.

use std::ops::Range;

/// An assignment whose value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecretValue {
    /// The key as written, with its table (`admin.key`).
    key: String,
    /// Its lines, 0-based, the value's last line included.
    lines: Range<usize>,
    /// The value's text as written (for a last check of a message).
    value: String,
}

/// The text of a TOML error in `text` (the file), safe to print: toml's
/// own text, or — when the error's span touches an assignment of a key
/// named like a secret setting (`secret_names`: `key`, `key_previous`) —
/// the key, line and column without the line's text or the value.
pub fn file_error(text: &str, e: &toml::de::Error, secret_names: &[&str]) -> String {
    let secrets = secret_values(text, secret_names);
    if secrets.is_empty() {
        return e.to_string().trim_end().to_string();
    }
    let Some(span) = e.span() else {
        // No place to check against: say only what is safe.
        return "TOML error (details not shown: the file holds secret settings, and \
                the message could quote one)"
            .to_string();
    };
    let first = line_of(text, span.start);
    let last = line_of(text, span.end.saturating_sub(1).max(span.start));
    let touched = secrets
        .iter()
        .find(|s| s.lines.start <= last && first < s.lines.end);
    let Some(s) = touched else {
        let shown = e.to_string().trim_end().to_string();
        // The span is elsewhere; never print a secret's text regardless.
        return match secrets.iter().find(|s| contains_value(&shown, &s.value)) {
            None => shown,
            Some(s) => hidden(text, span.start, s, None),
        };
    };
    hidden(text, span.start, s, Some(e.message()))
}

/// `line N, column C: KEY: …`, toml's message kept only if it quotes
/// nothing of the value.
fn hidden(text: &str, at: usize, s: &SecretValue, message: Option<&str>) -> String {
    let line = line_of(text, at) + 1;
    let col = text[line_start(text, at)..at.min(text.len())]
        .chars()
        .count()
        + 1;
    let why = message
        .map(|m| without_quotes_of(m, &s.value))
        .filter(|m| !contains_value(m, &s.value))
        .map_or_else(String::new, |m| format!(" ({m})"));
    let from = s.lines.start + 1;
    let set_on = if from == line {
        String::new()
    } else {
        format!(" (set on line {from})")
    };
    format!(
        "TOML parse error at line {line}, column {col}: {key}{set_on}: invalid value{why}; \
         the line is not shown because {key} holds a secret. Write it as a quoted \
         string, or better, set it in the environment",
        key = s.key
    )
}

/// `message` with every `` `…` `` quote that quotes part of `value`
/// replaced by `` `…` ``.
fn without_quotes_of(message: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        let quoted = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..=open]);
        if !quoted.is_empty() && value.contains(quoted) {
            out.push('…');
        } else {
            out.push_str(quoted);
        }
        out.push('`');
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether `shown` contains `value` (or, for a quoted value, its inside).
fn contains_value(shown: &str, value: &str) -> bool {
    let inner = value.trim_matches(['"', '\'']);
    [value, inner]
        .into_iter()
        .any(|v| !v.trim().is_empty() && shown.contains(v.trim()))
}

fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn line_start(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// Every assignment in `text` to a key whose last part is one of `names`
/// (a table header's or inline table's keys included), with the lines its
/// value spans. A scan of the text, not a parse: it must work on files
/// toml refuses.
fn secret_values(text: &str, names: &[&str]) -> Vec<SecretValue> {
    let mut out = Vec::new();
    let mut table = String::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
        let line = &text[i..end];
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            // `[table]`, `[[array]]`: the keys below belong to it.
            table = unquote_key(
                trimmed
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or(""),
            );
            i = end + 1;
            continue;
        }
        let Some(eq) = line.find('=').filter(|_| !trimmed.starts_with('#')) else {
            i = end + 1;
            continue;
        };
        let key = unquote_key(&line[..eq]);
        let full = if table.is_empty() {
            key.clone()
        } else {
            format!("{table}.{key}")
        };
        let value_start = i + eq + 1;
        let value_end = value_end(b, value_start);
        let value = &text[value_start..value_end];
        let lines = line_of(text, i)..line_of(text, value_end) + 1;
        let last = key.rsplit('.').next().unwrap_or("");
        if names.contains(&last) {
            out.push(SecretValue {
                key: full,
                lines: lines.clone(),
                value: value.trim().to_string(),
            });
        } else if value.trim_start().starts_with('{') {
            // An inline table: `token = { key = 918273645 }`.
            for name in names {
                if inline_assigns(value, name) {
                    out.push(SecretValue {
                        key: format!("{full}.{name}"),
                        lines: lines.clone(),
                        value: value.trim().to_string(),
                    });
                }
            }
        }
        i = value_end.max(end) + 1;
    }
    out
}

/// A dotted key as written (`"admin" . key`) as `admin.key`.
fn unquote_key(k: &str) -> String {
    k.split('.')
        .map(|p| p.trim().trim_matches(['"', '\'']))
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether an inline table's text assigns `name` (`{ name = …`, `, name=`).
fn inline_assigns(value: &str, name: &str) -> bool {
    value.match_indices(name).any(|(at, _)| {
        let before = value[..at].trim_end_matches([' ', '\t', '"', '\'']);
        let after = value[at + name.len()..].trim_start_matches([' ', '\t', '"', '\'']);
        (before.ends_with('{') || before.ends_with(',')) && after.starts_with('=')
    })
}

/// Where a value starting at `from` ends: the newline after it, outside
/// strings (basic, literal, multi-line) and brackets, or the end of the
/// text (an unterminated value runs to the end).
fn value_end(b: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    let starts = |i: usize, pat: &[u8]| b[i..].starts_with(pat);
    while i < b.len() {
        match b[i] {
            b'\n' if depth == 0 => return i,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' if starts(i, b"\"\"\"") => i = skip_to(b, i + 3, b"\"\"\"", true),
            b'\'' if starts(i, b"'''") => i = skip_to(b, i + 3, b"'''", false),
            b'"' => i = skip_to(b, i + 1, b"\"", true),
            b'\'' => i = skip_to(b, i + 1, b"'", false),
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The index of the last byte of `close` after `from` (escapes skipped
/// when `escapes`), or the end of the text. A one-quote string also ends
/// at its line's end (toml refuses it there).
fn skip_to(b: &[u8], from: usize, close: &[u8], escapes: bool) -> usize {
    let mut i = from;
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if close.len() == 1 && b[i] == b'\n' {
            return i - 1;
        }
        if b[i..].starts_with(close) {
            return i + close.len() - 1;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["key", "key_previous"];

    fn error_of(text: &str) -> String {
        let e = toml::from_str::<crate::Config>(text).unwrap_err();
        file_error(text, &e, NAMES)
    }

    #[test]
    fn errors_on_a_secret_name_the_key_and_line_never_the_value() {
        for (text, secret, key, line) in [
            ("[admin]\nkey = s3cr3t\n", "s3cr3t", "admin.key", 2),
            ("[token]\nkey = 918273645\n", "918273645", "token.key", 2),
            (
                "\n[token]\nkey_previous = 918273645\n",
                "918273645",
                "token.key_previous",
                3,
            ),
            ("token = { key = 7777777 }\n", "7777777", "token.key", 1),
            ("token.key = 7777777\n", "7777777", "token.key", 1),
            (
                "[\"admin\"]\n\"key\" = [\"s3cr3t-in-array\"]\n",
                "s3cr3t",
                "admin.key",
                2,
            ),
            (
                "[token]\nkey = \"\"\"s3cr3t\nmore-s3cr3t",
                "s3cr3t",
                "token.key",
                2,
            ),
            (
                "[token]\nkey = [\n  \"s3cr3t\",\n  1,\n]\n",
                "s3cr3t",
                "token.key",
                2,
            ),
            (
                "[hub]\nkey = \"s3cr3t-in-the-wrong-table\"\n",
                "s3cr3t",
                "hub.key",
                2,
            ),
            ("[admin]\nkey = \"s3cr3t\" junk\n", "s3cr3t", "admin.key", 2),
        ] {
            let e = error_of(text);
            assert!(!e.contains(secret), "{text:?} leaked: {e}");
            assert!(e.contains(key), "{text:?}: {e}");
            assert!(e.contains(&format!("line {line}")), "{text:?}: {e}");
        }
    }

    #[test]
    fn errors_elsewhere_keep_toml_s_text() {
        let text = "[token]\nkey = \"s3cr3t\"\n\n[hub]\nmax_subscriptions = \"five\"\n";
        let e = error_of(text);
        assert!(
            e.contains("line 5") && e.contains("max_subscriptions = \"five\""),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        // No secret in the file: toml's text as it is.
        let text = "[hub]\nmax_subscriptions = \"five\"\n";
        let e = toml::from_str::<crate::Config>(text).unwrap_err();
        assert_eq!(file_error(text, &e, NAMES), e.to_string().trim_end());
    }

    #[test]
    fn toml_s_message_is_kept_without_the_value() {
        let e = error_of("[token]\nkey = 918273645\n");
        assert!(
            e.contains("invalid type: integer `…`, expected a string"),
            "{e}"
        );
        assert_eq!(
            without_quotes_of("unknown field `key`, expected `a`", "\"sekrit-key\""),
            "unknown field `…`, expected `a`"
        );
    }

    #[test]
    fn values_end_where_toml_says() {
        let text = "a = [1,\n2] # x\nb = \"\"\"\n]\n\"\"\"\nc = 'x'\n";
        let v = secret_values(text, &["a", "b", "c"]);
        let lines: Vec<_> = v.iter().map(|s| s.lines.clone()).collect();
        assert_eq!(lines, [0..2, 2..5, 5..6]);
    }
}
