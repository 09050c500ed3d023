//! The live status the status page shows: the snapshot `GET /api/status`
//! answers and `GET /api/status/stream` sends (`sse`).
//!
//! Owns: the snapshot's shape and a short cache so that many viewers cost
//! one gathering per interval. Must not touch: counters' cells or cores'
//! state (it reads snapshots and asks the hub through its handle), or
//! sockets. May wait on the cores (top channels): call it on the
//! blocking pool.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{stats_json, AdminCtx};
use crate::stats::Stats;

/// Channels listed in `top_channels`.
const TOP_CHANNELS: usize = 10;
/// Snapshots younger than this are shared between requests.
const CACHE_FOR: Duration = Duration::from_millis(500);

/// The current snapshot as JSON text (cached briefly).
pub fn snapshot(ctx: &AdminCtx) -> Arc<String> {
    let now = Instant::now();
    if let Ok(cache) = ctx.status_cache.lock() {
        if let Some((at, text)) = &*cache {
            if now.duration_since(*at) < CACHE_FOR {
                return text.clone();
            }
        }
    }
    let text = Arc::new(gather(ctx).to_string());
    if let Ok(mut cache) = ctx.status_cache.lock() {
        *cache = Some((now, text.clone()));
    }
    text
}

fn gather(ctx: &AdminCtx) -> serde_json::Value {
    let view = &ctx.view;
    let per_core = view.stats.per_core();
    let mut total = Stats::default();
    for s in &per_core {
        total.merge(s);
    }
    // A core whose inbox is full is left out of this one snapshot.
    let top = view.hub.top_channels(TOP_CHANNELS).unwrap_or_default();
    let t_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "t_ms": t_ms,
        "uptime_secs": view.started.elapsed().as_secs(),
        "draining": view.draining.load(Ordering::Acquire),
        "cores": per_core.iter().enumerate().map(|(i, s)| json!({
            "core": i,
            "open": s.open,
            "messages_in": s.messages_in,
            "messages_out": s.messages_out,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
        })).collect::<Vec<_>>(),
        "total": stats_json(&total),
        "channels": view.hub.channel_count(),
        "users_online": view.hub.users_online(),
        "top_channels": top.iter().map(|(c, n)| json!({"channel": &**c, "subscribers": n}))
            .collect::<Vec<_>>(),
        "api": {
            "publishes": ctx.api_publishes.load(Ordering::Relaxed),
            "sends": ctx.api_sends.load(Ordering::Relaxed),
            "panics": ctx.panics.load(Ordering::Relaxed),
        },
        "cluster": view.cluster.as_ref().map(|c| c.stats.json(c.node)),
    })
}
