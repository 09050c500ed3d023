//! The gateway's connection registry: which gateway connections the
//! backend accepted (`$connect` answered 2xx) and not yet told gone, with
//! what `GET @connections/{id}` reports of each.
//!
//! Owns: the entries (connected at, source IP, user agent, last active)
//! and their ISO 8601 form. A connection is in it from its `$connect`'s
//! 2xx until its end is known (the `Disconnect` event), so
//! `@connections` answers 410 before and after. Shared by the gateway's
//! workers and the `@connections` handlers behind one mutex taken for one
//! map operation (never across an await or a wait). Must not touch: the
//! connections themselves (the hub's handle reaches them).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::conn_id::GatewayId;

/// What `GET @connections/{id}` reports of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Unix milliseconds.
    pub connected_at: u64,
    pub last_active_at: u64,
    pub source_ip: String,
    pub user_agent: Option<String>,
}

impl Info {
    /// `{"connectedAt":…,"identity":{"sourceIp":…,"userAgent":…},"lastActiveAt":…}`
    /// as botocore's `GetConnectionResponse` models it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "connectedAt": iso8601(self.connected_at),
            "identity": {
                "sourceIp": self.source_ip,
                "userAgent": self.user_agent.as_deref().unwrap_or(""),
            },
            "lastActiveAt": iso8601(self.last_active_at),
        })
    }
}

/// The accepted gateway connections of this process.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<FxHashMap<GatewayId, Info>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, FxHashMap<GatewayId, Info>> {
        // Each change is one map operation: a poisoned lock holds a
        // consistent map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend accepted `id`.
    pub fn insert(&self, id: GatewayId, info: Info) {
        self.map().insert(id, info);
    }

    /// `id` ended; false if it was not there.
    pub fn remove(&self, id: GatewayId) -> bool {
        self.map().remove(&id).is_some()
    }

    /// `id` sent or was sent something at `now_ms`.
    pub fn touch(&self, id: GatewayId, now_ms: u64) {
        if let Some(e) = self.map().get_mut(&id) {
            e.last_active_at = e.last_active_at.max(now_ms);
        }
    }

    /// What is known of `id`, if it is reachable.
    pub fn get(&self, id: GatewayId) -> Option<Info> {
        self.map().get(&id).cloned()
    }

    /// Connections in the registry.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix milliseconds as ISO 8601 UTC with milliseconds and `Z`
/// (`2026-11-30T12:00:00.123Z`), the form botocore parses as a timestamp.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601_utc_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-30T12:00:00Z (the SigV4 vectors' date) plus 7 ms.
        assert_eq!(iso8601(1_796_040_000_007), "2026-11-30T12:00:00.007Z");
        // A leap day, and the last millisecond of a year.
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
    }

    #[test]
    fn entries_are_reachable_between_insert_and_remove() {
        let r = Registry::default();
        let id = GatewayId::new(
            1,
            crate::hub::ConnId {
                core: 0,
                key: 2,
                gen: 3,
            },
        )
        .unwrap();
        assert!(r.get(id).is_none());
        r.insert(
            id,
            Info {
                connected_at: 1000,
                last_active_at: 1000,
                source_ip: "127.0.0.1".into(),
                user_agent: Some("ua".into()),
            },
        );
        r.touch(id, 2500);
        r.touch(id, 2000);
        let info = r.get(id).unwrap();
        assert_eq!(info.last_active_at, 2500);
        let json = info.to_json();
        assert_eq!(json["connectedAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(json["lastActiveAt"], "1970-01-01T00:00:02.500Z");
        assert_eq!(json["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(json["identity"]["userAgent"], "ua");
        assert!(r.remove(id));
        assert!(!r.remove(id));
        assert!(r.is_empty());
    }
}
