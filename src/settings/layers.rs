//! Layering: embedded defaults < the TOML file < `WSEDGE_…` environment
//! variables < command-line flags, each layer checked on its own so that
//! an error names where it came from (the file's line, the variable, the
//! flag), never quoting a secret's value; and the effective configuration
//! printed with secrets masked.
//!
//! Owns: reading the file, mapping keys to variable names, merging, and
//! rendering. Must not touch: the schema's meaning (in `super`).
//!
//! A key `section.name` is overridden by `WSEDGE_SECTION_NAME` (a
//! top-level `name` by `WSEDGE_NAME`); arrays take a TOML array
//! (`["a","b"]`) or a comma-separated list.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::InvalidSetting;
use crate::Config;

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Env(v) => write!(f, "env {v}"),
            Self::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Syntax errors, unknown keys and wrong types in the file; `message`
    /// carries the line, the column and the offending key.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("invalid setting {0} (from {1})")]
    Invalid(InvalidSetting, Source),
}

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Keys (`section.name`) not at their default, and where from.
    pub sources: BTreeMap<String, Source>,
}

impl Loaded {
    /// Where `key` came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// The effective configuration as TOML, secrets masked, each key that
    /// is not at its default followed by a comment naming its source.
    pub fn render(&self) -> String {
        let mut table = Table::try_from(&self.config).expect("the config serializes");
        for key in super::secret_keys() {
            if let Some(Value::String(s)) = lookup_mut(&mut table, &key) {
                if !s.is_empty() {
                    *s = "********".into();
                }
            }
        }
        let text = toml::to_string(&table).expect("a table serializes");
        let mut out = String::with_capacity(text.len() * 2);
        let mut section = String::new();
        for line in text.lines() {
            out.push_str(line);
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((k, _)) = line.split_once(" = ") {
                let key = format!("{section}{}", k.trim());
                if let Some(src) = self.sources.get(&key) {
                    out.push_str(&format!("  # {src}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Every key of the schema (`section.name`) with its default value.
pub fn known_keys() -> Vec<(String, Value)> {
    super::settings()
        .into_iter()
        .map(|(key, _, default)| (key, default))
        .collect()
}

/// The environment variable that overrides `key`.
pub fn env_var(key: &str) -> String {
    format!("WSEDGE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Reads `file` (if any), applies the `WSEDGE_…` variables found in `env`
/// and then `flags` (key, value, flag name), and validates the result.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(String, Value, String)],
) -> Result<Loaded, LoadError> {
    let mut table = Table::new();
    let mut sources = BTreeMap::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        // Deserializing the text itself (not a merged table) keeps the
        // spans, so an unknown key is reported with its line; an error on a
        // secret's line names the key and line, never the text.
        let secret_names = super::secret_names();
        let file_err = |e: toml::de::Error| LoadError::File {
            path: path.to_owned(),
            message: super::redact::file_error(&text, &e, &secret_names),
        };
        toml::from_str::<Config>(&text).map_err(file_err)?;
        table = text.parse::<Table>().map_err(file_err)?;
        for (k, v) in &table {
            match v {
                Value::Table(t) => {
                    for n in t.keys() {
                        sources.insert(format!("{k}.{n}"), Source::File(path.to_owned()));
                    }
                }
                _ => {
                    sources.insert(k.clone(), Source::File(path.to_owned()));
                }
            }
        }
    }
    let keys = known_keys();
    for (key, default) in &keys {
        let var = env_var(key);
        let Some((_, raw)) = env.iter().find(|(k, _)| *k == var) else {
            continue;
        };
        let secret = super::secret_keys().contains(key);
        let value = parse_like(raw, default).map_err(|message| LoadError::Env {
            var: var.clone(),
            message: if secret {
                format!("{key}: invalid value (not shown: a secret)")
            } else {
                message
            },
        })?;
        apply(&mut table, key, value, |message| LoadError::Env {
            var: var.clone(),
            message,
        })?;
        sources.insert(key.clone(), Source::Env(var));
    }
    for (key, value, flag) in flags {
        if !keys.iter().any(|(k, _)| k == key) {
            return Err(LoadError::Flag {
                flag: flag.clone(),
                message: format!("maps to unknown key {key}"),
            });
        }
        apply(&mut table, key, value.clone(), |message| LoadError::Flag {
            flag: flag.clone(),
            message,
        })?;
        sources.insert(key.clone(), Source::Flag(flag.clone()));
    }
    let config = Config::deserialize(Value::Table(table)).map_err(|e| LoadError::File {
        path: file.map_or_else(|| PathBuf::from("<merged>"), Path::to_owned),
        message: e.to_string(),
    })?;
    config.validate().map_err(|e| {
        let src = sources.get(e.key).cloned().unwrap_or(Source::Default);
        LoadError::Invalid(e, src)
    })?;
    Ok(Loaded { config, sources })
}

/// Sets `key` in `table` and checks that the table still deserializes, so
/// a bad value is blamed on the layer that brought it.
fn apply(
    table: &mut Table,
    key: &str,
    value: Value,
    err: impl Fn(String) -> LoadError,
) -> Result<(), LoadError> {
    match key.split_once('.') {
        Some((section, name)) => {
            let entry = table
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            let Value::Table(t) = entry else {
                return Err(err(format!("{section} is not a section in the file")));
            };
            t.insert(name.to_string(), value);
        }
        None => {
            table.insert(key.to_string(), value);
        }
    }
    Config::deserialize(Value::Table(table.clone()))
        .map(drop)
        .map_err(|e| {
            // A secret's value is never quoted back (serde's message may).
            if super::secret_keys().iter().any(|k| k == key) {
                err(format!("{key}: invalid value (not shown: a secret)"))
            } else {
                err(format!("{key}: {}", e.message()))
            }
        })
}

/// Reads a variable's (or a flag's) text as a value of the same kind as
/// `like`.
pub(super) fn parse_like(raw: &str, like: &Value) -> Result<Value, String> {
    let raw_t = raw.trim();
    Ok(match like {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(
            raw_t
                .parse()
                .map_err(|_| format!("\"{raw}\" is not an integer"))?,
        ),
        Value::Float(_) => Value::Float(
            raw_t
                .parse()
                .map_err(|_| format!("\"{raw}\" is not a number"))?,
        ),
        Value::Boolean(_) => Value::Boolean(match raw_t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(format!("\"{raw}\" is not true or false")),
        }),
        Value::Array(_) if raw_t.starts_with('[') => {
            let t: Table = format!("v = {raw_t}")
                .parse()
                .map_err(|e: toml::de::Error| format!("not a TOML array: {}", e.message()))?;
            t["v"].clone()
        }
        Value::Array(_) => Value::Array(
            raw_t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::String(raw.to_string()),
    })
}

fn lookup_mut<'a>(table: &'a mut Table, key: &str) -> Option<&'a mut Value> {
    match key.split_once('.') {
        Some((s, n)) => table.get_mut(s)?.as_table_mut()?.get_mut(n),
        None => table.get_mut(key),
    }
}

/// `WSEDGE_…` variables in `env` that name no key (likely typos), apart
/// from the ones the binary reads itself.
pub fn unknown_env<'a>(env: &'a [(String, String)], own: &[&str]) -> Vec<&'a str> {
    let known: Vec<String> = known_keys().iter().map(|(k, _)| env_var(k)).collect();
    env.iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("WSEDGE_") && !known.iter().any(|n| n == k) && !own.contains(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn write(text: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(text)
    }

    /// A file removed on drop (no extra crate for one test helper).
    mod tempfile_path {
        pub struct TempFile(pub std::path::PathBuf);
        impl TempFile {
            pub fn new(text: &str) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "wsedge-settings-{}-{}.toml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, text).unwrap();
                Self(p)
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_env_then_flag() {
        let f = write("[connection]\nping_interval = \"7s\"\npong_timeout = \"3s\"\n\n[hub]\nmax_subscriptions = 5\n");
        let e = env(&[
            ("WSEDGE_CONNECTION_PONG_TIMEOUT", "4s"),
            ("WSEDGE_HUB_MAX_SUBSCRIPTIONS", "6"),
        ]);
        let flags = [(
            "hub.max_subscriptions".to_string(),
            Value::Integer(7),
            "--max-subscriptions".to_string(),
        )];
        let l = load(Some(&f.0), &e, &flags).unwrap();
        assert_eq!(l.config.conn.ping_interval, Duration::from_secs(7)); // file
        assert_eq!(l.config.conn.pong_timeout, Duration::from_secs(4)); // env over file
        assert_eq!(l.config.hub.max_subscriptions, 7); // flag over env
        assert_eq!(
            l.source("connection.ping_interval"),
            Source::File(f.0.clone())
        );
        assert_eq!(
            l.source("connection.pong_timeout"),
            Source::Env("WSEDGE_CONNECTION_PONG_TIMEOUT".into())
        );
        assert_eq!(
            l.source("hub.max_subscriptions"),
            Source::Flag("--max-subscriptions".into())
        );
        assert_eq!(l.source("listen"), Source::Default);
    }

    #[test]
    fn unknown_keys_name_the_key_and_its_line() {
        let f = write("listen = \"127.0.0.1:1\"\n\n[connection]\nping_interval = \"1s\"\nping_intreval = \"2s\"\n");
        let e = load(Some(&f.0), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("ping_intreval"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains(&f.0.display().to_string()), "{e}");
        let f = write("[conection]\n");
        let e = load(Some(&f.0), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("conection") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_values_are_blamed_on_their_layer() {
        let e = load(
            None,
            &env(&[("WSEDGE_CONNECTION_PING_INTERVAL", "soon")]),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("environment variable WSEDGE_CONNECTION_PING_INTERVAL"),
            "{e}"
        );
        let e = load(None, &env(&[("WSEDGE_CORES", "two")]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WSEDGE_CORES") && e.contains("not an integer"),
            "{e}"
        );
        // A value of the wrong form: the file, its line and the key.
        let f = write("[connection]\nslow_consumer = \"maybe\"\n");
        match load(Some(&f.0), &[], &[]).unwrap_err() {
            LoadError::File { path, message } => {
                assert_eq!(path, f.0);
                assert!(message.contains("line 2"), "{message}");
                assert!(message.contains("slow_consumer"), "{message}");
                assert!(message.contains("`close`"), "{message}");
            }
            other => panic!("{other}"),
        }
        // A flag: the flag and the key.
        let flags = [(
            "connection.slow_consumer".to_string(),
            Value::String("maybe".into()),
            "--slow-consumer".to_string(),
        )];
        let e = load(None, &[], &flags).unwrap_err().to_string();
        assert!(
            e.starts_with("--slow-consumer: connection.slow_consumer: "),
            "{e}"
        );
        // A value of the right form that cannot be used: the key, and the
        // layer it came from.
        let f = write("[connection]\nping_interval = \"0s\"\n");
        match load(Some(&f.0), &[], &[]).unwrap_err() {
            LoadError::Invalid(inv, Source::File(p)) => {
                assert_eq!(inv.key, "connection.ping_interval");
                assert_eq!(p, f.0);
            }
            other => panic!("{other}"),
        }
        let e = load(None, &env(&[("WSEDGE_ADMIN_THREADS", "0")]), &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid setting admin.threads: must be more than 0 \
             (from env WSEDGE_ADMIN_THREADS)"
        );
    }

    #[test]
    fn env_arrays_take_lists_or_toml() {
        let l = load(
            None,
            &env(&[
                (
                    "WSEDGE_ADMISSION_ORIGINS",
                    "https://a.example, https://*.b.example",
                ),
                ("WSEDGE_CONNECTION_SUBPROTOCOLS", "[\"v2\", \"v1\"]"),
                ("WSEDGE_ADMISSION_TRUSTED_PROXIES", "10.0.0.1"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(
            l.config.admission.origins,
            ["https://a.example", "https://*.b.example"]
        );
        assert_eq!(l.config.conn.subprotocols, ["v2", "v1"]);
        assert_eq!(l.config.admission.trusted_proxies.len(), 1);
    }

    #[test]
    fn render_masks_secrets_and_names_sources() {
        let f = write("[token]\nkey = \"sekrit-file\"\n");
        let l = load(Some(&f.0), &env(&[("WSEDGE_ADMIN_KEY", "sekrit-env")]), &[]).unwrap();
        let text = l.render();
        assert!(!text.contains("sekrit"), "{text}");
        assert!(
            text.contains("key = \"********\"  # env WSEDGE_ADMIN_KEY"),
            "{text}"
        );
        assert!(
            text.contains(&format!("key = \"********\"  # file {}", f.0.display())),
            "{text}"
        );
        assert!(text.contains("key_previous = \"\"\n"), "{text}");
        // The rendering is itself a valid file with the same settings.
        let back: Config = toml::from_str(&text.replace("********", "x")).unwrap();
        assert_eq!(back.conn, l.config.conn);
        assert_eq!(back.token.key.as_deref(), Some("x"));
    }

    #[test]
    fn every_key_has_a_variable_and_typos_are_reported() {
        let keys = known_keys();
        assert!(keys.iter().any(|(k, _)| k == "connection.ping_interval"));
        assert_eq!(env_var("token.key"), "WSEDGE_TOKEN_KEY");
        assert_eq!(env_var("listen"), "WSEDGE_LISTEN");
        let e = env(&[
            ("WSEDGE_TOKEN_KEY", "x"),
            ("WSEDGE_TOKEN_KYE", "x"),
            ("WSEDGE_CONFIG", "f"),
            ("HOME", "/"),
        ]);
        assert_eq!(unknown_env(&e, &["WSEDGE_CONFIG"]), ["WSEDGE_TOKEN_KYE"]);
    }
}
