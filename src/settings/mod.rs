//! The operator's view of the configuration: one TOML document (every
//! key optional, defaults embedded), overridable by `WSEDGE_…` environment
//! variables and by command-line flags, turned into a [`Config`].
//!
//! Owns: the file's schema (section and key names, their text forms such
//! as `"25s"`), validation into a [`Config`], and the layering (in
//! [`layers`]). Must not touch: the command line itself (the binary hands
//! its flags over as key/value pairs) or anything at run time.
//!
//! Every key's default is taken from [`Config::default`], so the defaults
//! live in one place; `wsedge.example.toml` documents them (a test checks
//! that it parses and equals the defaults).

pub mod layers;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admission::demo::DemoKey;
use crate::config::{AdminConfig, RateLimit, RatePolicy};
use crate::conn::SlowConsumerPolicy;
use crate::Config;

pub use layers::{load, LoadError, Source};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address every core listens on.
    pub listen: SocketAddr,
    /// Core threads; 0 = one per available CPU.
    pub cores: usize,
    pub connection: ConnectionSettings,
    pub rate_limit: RateLimitSettings,
    pub hub: HubSettings,
    pub token: TokenSettings,
    pub admission: AdmissionSettings,
    pub admin: AdminSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// "0s" = off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    pub max_frame_size: usize,
    pub max_message_size: usize,
    pub write_budget: usize,
    pub max_pending_bytes: usize,
    /// "close" or "drop".
    pub slow_consumer: String,
    pub max_request_bytes: usize,
    pub max_headers: usize,
    pub subprotocols: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// 0 = no limit.
    pub messages_per_sec: f64,
    /// 0 = the rate (one second's worth).
    pub messages_burst: f64,
    pub bytes_per_sec: f64,
    pub bytes_burst: f64,
    /// "backpressure" or "close".
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubSettings {
    pub max_subscriptions: usize,
    pub max_channel_len: usize,
    /// "" = off.
    pub dev_user_param: String,
    pub dev_client_publish: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// "" = no tokens. Secret.
    pub key: String,
    /// Secret.
    pub key_previous: String,
    pub optional: bool,
    pub max_used: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionSettings {
    pub origins: Vec<String>,
    pub max_attempts_per_ip: u32,
    #[serde(with = "humantime_serde")]
    pub attempt_window: Duration,
    pub trusted_proxies: Vec<IpAddr>,
    pub client_ip_header: String,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub max_connections_per_user: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// An address, or "off".
    pub listen: String,
    /// Secret.
    pub key: String,
    /// Without a token key, give `/demo` an ephemeral key of its own so it
    /// can publish on `demo:*` (see `AdmissionConfig::demo_key`).
    pub demo: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    #[serde(with = "humantime_serde")]
    pub drain_window: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter: "info", "wsedge=debug", …
    pub level: String,
    /// "text" or "json".
    pub format: String,
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
}

/// Keys whose values are secrets: masked when printed.
pub const SECRET_KEYS: [&str; 3] = ["token.key", "token.key_previous", "admin.key"];

impl Default for Settings {
    fn default() -> Self {
        let c = Config::default();
        let admin = AdminConfig::default();
        Self {
            listen: c.listen,
            cores: 0,
            connection: ConnectionSettings {
                ping_interval: c.conn.ping_interval,
                pong_timeout: c.conn.pong_timeout,
                idle_timeout: c.conn.idle_timeout.unwrap_or_default(),
                handshake_timeout: c.conn.handshake_timeout,
                close_timeout: c.conn.close_timeout,
                max_frame_size: c.conn.max_frame_size,
                max_message_size: c.conn.max_message_size,
                write_budget: c.conn.write_budget,
                max_pending_bytes: c.conn.max_pending_bytes,
                slow_consumer: "close".into(),
                max_request_bytes: c.conn.handshake.max_request_bytes,
                max_headers: c.conn.handshake.max_headers,
                subprotocols: c.conn.handshake.subprotocols.clone(),
            },
            rate_limit: RateLimitSettings {
                messages_per_sec: 0.0,
                messages_burst: 0.0,
                bytes_per_sec: 0.0,
                bytes_burst: 0.0,
                policy: "backpressure".into(),
            },
            hub: HubSettings {
                max_subscriptions: c.hub.max_subscriptions,
                max_channel_len: c.hub.max_channel_len,
                dev_user_param: String::new(),
                dev_client_publish: c.hub.dev_client_publish,
            },
            token: TokenSettings {
                key: String::new(),
                key_previous: String::new(),
                optional: !c.admission.require_token_on_ws,
                max_used: c.admission.max_used_tokens,
            },
            admission: AdmissionSettings {
                origins: c.admission.origins.clone(),
                max_attempts_per_ip: c.admission.max_attempts_per_ip,
                attempt_window: c.admission.attempt_window,
                trusted_proxies: c.admission.trusted_proxies.clone(),
                client_ip_header: c.admission.client_ip_header.clone(),
                max_connections: c.admission.max_connections,
                max_connections_per_ip: c.admission.max_connections_per_ip,
                max_connections_per_user: c.admission.max_connections_per_user,
            },
            admin: AdminSettings {
                listen: admin.listen.to_string(),
                key: String::new(),
                // On: the demo works out of the box (the key only grants
                // `demo:*`, only to tokens the admin plane mints).
                demo: true,
            },
            shutdown: ShutdownSettings {
                drain_window: c.drain_window,
                drain_timeout: c.drain_timeout,
            },
            log: LogSettings {
                level: "info".into(),
                format: "text".into(),
                stats_interval: c.stats_interval,
            },
        }
    }
}

/// Each section's default is that section of [`Settings::default`] (a key
/// missing from a section takes its default).
macro_rules! section_defaults {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl Default for $ty {
            fn default() -> Self {
                Settings::default().$field
            }
        }
    )*};
}

section_defaults! {
    ConnectionSettings => connection,
    RateLimitSettings => rate_limit,
    HubSettings => hub,
    TokenSettings => token,
    AdmissionSettings => admission,
    AdminSettings => admin,
    ShutdownSettings => shutdown,
    LogSettings => log,
}

/// A value that parses but cannot be used; names the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        key,
        reason: reason.into(),
    }
}

fn non_zero(key: &'static str, d: Duration) -> Result<Duration, InvalidSetting> {
    if d.is_zero() {
        return Err(invalid(key, "must be more than 0s"));
    }
    Ok(d)
}

impl Settings {
    /// Validates and builds the server's [`Config`].
    pub fn to_config(&self) -> Result<Config, InvalidSetting> {
        let mut cfg = Config {
            listen: self.listen,
            ..Config::default()
        };
        if self.cores > 0 {
            cfg.cores = self.cores;
        }
        let s = &self.connection;
        let c = &mut cfg.conn;
        c.ping_interval = non_zero("connection.ping_interval", s.ping_interval)?;
        c.pong_timeout = non_zero("connection.pong_timeout", s.pong_timeout)?;
        c.idle_timeout = (!s.idle_timeout.is_zero()).then_some(s.idle_timeout);
        c.handshake_timeout = non_zero("connection.handshake_timeout", s.handshake_timeout)?;
        c.close_timeout = non_zero("connection.close_timeout", s.close_timeout)?;
        for (key, v) in [
            ("connection.max_frame_size", s.max_frame_size),
            ("connection.max_message_size", s.max_message_size),
            ("connection.write_budget", s.write_budget),
            ("connection.max_pending_bytes", s.max_pending_bytes),
            ("connection.max_request_bytes", s.max_request_bytes),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be more than 0"));
            }
        }
        c.max_frame_size = s.max_frame_size;
        c.max_message_size = s.max_message_size;
        c.write_budget = s.write_budget;
        c.max_pending_bytes = s.max_pending_bytes;
        c.slow_consumer = match s.slow_consumer.as_str() {
            "close" => SlowConsumerPolicy::Close,
            "drop" => SlowConsumerPolicy::Drop,
            other => {
                return Err(invalid(
                    "connection.slow_consumer",
                    format!("\"{other}\" is not \"close\" or \"drop\""),
                ))
            }
        };
        c.handshake.max_request_bytes = s.max_request_bytes;
        c.handshake.max_headers = s.max_headers;
        c.handshake.subprotocols = s.subprotocols.clone();

        let r = &self.rate_limit;
        for (key, v) in [
            ("rate_limit.messages_per_sec", r.messages_per_sec),
            ("rate_limit.messages_burst", r.messages_burst),
            ("rate_limit.bytes_per_sec", r.bytes_per_sec),
            ("rate_limit.bytes_burst", r.bytes_burst),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(key, "must be a number ≥ 0"));
            }
        }
        let policy = match r.policy.as_str() {
            "backpressure" => RatePolicy::Backpressure,
            "close" => RatePolicy::Close,
            other => {
                return Err(invalid(
                    "rate_limit.policy",
                    format!("\"{other}\" is not \"backpressure\" or \"close\""),
                ))
            }
        };
        if r.messages_per_sec > 0.0 || r.bytes_per_sec > 0.0 {
            // An unset rate is unlimited; an unset burst is one second's
            // worth of the rate.
            let rate = |v: f64| if v > 0.0 { v } else { f64::MAX / 4.0 };
            let burst = |b: f64, v: f64| if b > 0.0 { b } else { rate(v) };
            c.rate_limit = Some(RateLimit {
                msgs_per_sec: rate(r.messages_per_sec),
                msgs_burst: burst(r.messages_burst, r.messages_per_sec),
                bytes_per_sec: rate(r.bytes_per_sec),
                bytes_burst: burst(r.bytes_burst, r.bytes_per_sec),
                policy,
            });
        }

        let h = &self.hub;
        if h.max_channel_len == 0 {
            return Err(invalid("hub.max_channel_len", "must be more than 0"));
        }
        cfg.hub.max_subscriptions = h.max_subscriptions;
        cfg.hub.max_channel_len = h.max_channel_len;
        cfg.hub.dev_user_param = (!h.dev_user_param.is_empty()).then(|| h.dev_user_param.clone());
        cfg.hub.dev_client_publish = h.dev_client_publish;

        let t = &self.token;
        if t.key.is_empty() && !t.key_previous.is_empty() {
            return Err(invalid(
                "token.key_previous",
                "set only during a rotation, beside token.key",
            ));
        }
        let a = &self.admission;
        let adm = &mut cfg.admission;
        adm.token_keys = [&t.key, &t.key_previous]
            .into_iter()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect();
        adm.require_token_on_ws = !t.optional;
        adm.max_used_tokens = t.max_used;
        adm.origins = a.origins.clone();
        adm.max_attempts_per_ip = a.max_attempts_per_ip;
        adm.attempt_window = non_zero("admission.attempt_window", a.attempt_window)?;
        adm.trusted_proxies = a.trusted_proxies.clone();
        adm.client_ip_header = a.client_ip_header.to_ascii_lowercase();
        adm.max_connections = a.max_connections;
        adm.max_connections_per_ip = a.max_connections_per_ip;
        adm.max_connections_per_user = a.max_connections_per_user;

        cfg.admin = match self.admin.listen.as_str() {
            "off" => None,
            addr => {
                let listen: SocketAddr = addr.parse().map_err(|e| {
                    invalid(
                        "admin.listen",
                        format!("\"{addr}\": {e} (an address or \"off\")"),
                    )
                })?;
                let key = (!self.admin.key.is_empty()).then(|| self.admin.key.clone());
                if key.is_none() && !listen.ip().is_loopback() {
                    return Err(invalid(
                        "admin.key",
                        "required when admin.listen is not a loopback address",
                    ));
                }
                Some(AdminConfig { listen, key })
            }
        };
        // The demo's key, made here at start: never in the settings (so
        // never printed), and only without a token key (with one, the demo
        // uses POST /api/tokens) and with the admin plane that serves it.
        let demo = self.admin.demo && cfg.admin.is_some() && cfg.admission.token_keys.is_empty();
        cfg.admission.demo_key = demo.then(DemoKey::generate);
        cfg.drain_window = self.shutdown.drain_window;
        cfg.drain_timeout = self.shutdown.drain_timeout;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("\"{}\" is not \"text\" or \"json\"", self.log.format),
            ));
        }
        cfg.stats_interval = non_zero("log.stats_interval", self.log.stats_interval)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_the_default_config() {
        let cfg = Settings::default().to_config().unwrap();
        let mut want = Config {
            admin: Some(AdminConfig::default()),
            ..Config::default()
        };
        want.admission.demo_key = Some(DemoKey::generate());
        assert_eq!(format!("{cfg:?}"), format!("{want:?}"));
    }

    #[test]
    fn the_demo_key_exists_only_without_a_token_key_and_with_the_admin_plane() {
        let demo_key = |s: &Settings| s.to_config().unwrap().admission.demo_key.is_some();
        assert!(demo_key(&Settings::default()));
        let mut s = Settings::default();
        s.admin.demo = false;
        assert!(!demo_key(&s));
        let mut s = Settings::default();
        s.token.key = "k".into();
        assert!(!demo_key(&s));
        let mut s = Settings::default();
        s.admin.listen = "off".into();
        assert!(!demo_key(&s));
        // Never shown, not even in the config's Debug.
        let key = Settings::default().to_config().unwrap().admission.demo_key;
        assert_eq!(format!("{key:?}"), "Some(DemoKey(********))");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut s = Settings::default();
        s.connection.slow_consumer = "maybe".into();
        assert_eq!(s.to_config().unwrap_err().key, "connection.slow_consumer");
        let mut s = Settings::default();
        s.admin.listen = "0.0.0.0:9090".into();
        assert_eq!(s.to_config().unwrap_err().key, "admin.key");
        s.admin.key = "k".into();
        assert!(s.to_config().is_ok());
        let mut s = Settings::default();
        s.connection.ping_interval = Duration::ZERO;
        assert_eq!(s.to_config().unwrap_err().key, "connection.ping_interval");
    }

    #[test]
    fn the_example_file_documents_every_key_at_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/wsedge.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let parsed: Settings = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Settings::default());
        let table: toml::Table = text.parse().unwrap();
        for (key, _) in layers::known_keys() {
            let present = match key.split_once('.') {
                Some((s, n)) => table.get(s).and_then(|t| t.get(n)).is_some(),
                None => table.contains_key(&key),
            };
            assert!(present, "{key} is not in wsedge.example.toml");
        }
    }

    #[test]
    fn a_message_rate_alone_limits_messages_only() {
        let mut s = Settings::default();
        s.rate_limit.messages_per_sec = 10.0;
        let rl = s.to_config().unwrap().conn.rate_limit.unwrap();
        assert_eq!((rl.msgs_per_sec, rl.msgs_burst), (10.0, 10.0));
        assert!(rl.bytes_per_sec > 1e300);
    }
}
