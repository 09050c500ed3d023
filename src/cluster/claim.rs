//! Choosing this node's id at start so that no two live nodes share one:
//! an id configured with `cluster.node_id` that a live node already uses
//! refuses the start; a random one (`node_id = 0`) that does is drawn
//! again.
//!
//! Owns: asking the broker whether a node id is live — on Redis, whether
//! any connection subscribes to the id's node subject (`PUBSUB NUMSUB`:
//! a live node always does; a dead one's subscription ends with its
//! connection, so a node restarted at once with its id is not refused,
//! as a lease that outlives its process for `cluster.presence_ttl`
//! would); on NATS, a request on the node subject that the server answers
//! "no responders" only when nobody subscribes to it. Must not touch: the
//! running link, presence, the cores.
//!
//! A broker that cannot be reached within `cluster.probe_interval` cannot
//! say: the node starts (as it starts with the broker down) and logs
//! that the id was not checked.

use std::time::Duration;

use super::wire::{self, Subject};
use super::ClusterError;
use crate::config::ClusterConfig;

/// Random ids tried before giving up (each collision is a 1-in-16-million
/// event per live node).
const DRAWS: usize = 8;

/// Whether node id `node` is live on the broker: `Some(true)` taken,
/// `Some(false)` free, `None` the broker did not say in time.
pub async fn is_live(cfg: &ClusterConfig, node: u32) -> Option<bool> {
    let url = cfg.broker.as_deref().unwrap_or_default();
    let t = cfg.probe_interval;
    if url.starts_with("nats://") {
        nats_live(url, &cfg.prefix, node, t).await
    } else {
        redis_live(url, &cfg.prefix, node, t).await
    }
}

async fn redis_live(url: &str, prefix: &str, node: u32, t: Duration) -> Option<bool> {
    let client = redis::Client::open(url).ok()?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(t))
        .set_response_timeout(Some(t));
    let mut conn = tokio::time::timeout(
        t,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .ok()?
    .ok()?;
    let subject = wire::subject(prefix, &Subject::Node(node));
    let counts: Vec<(String, u64)> = tokio::time::timeout(
        t,
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&subject)
            .query_async(&mut conn),
    )
    .await
    .ok()?
    .ok()?;
    Some(counts.iter().any(|(_, n)| *n > 0))
}

async fn nats_live(url: &str, prefix: &str, node: u32, t: Duration) -> Option<bool> {
    let client = tokio::time::timeout(
        t,
        async_nats::ConnectOptions::new()
            .connection_timeout(t)
            .connect(url),
    )
    .await
    .ok()?
    .ok()?;
    let subject = wire::nats_subject(prefix, &Subject::Node(node));
    // A probe from node 0 (no node's): a live node ignores it.
    let payload = wire::encode(0, &wire::Envelope::Probe(0));
    let asked = tokio::time::timeout(t, client.request(subject, payload.into())).await;
    match asked {
        Err(_) => Some(true), // subscribed, no answer: someone is there
        Ok(Ok(_)) => Some(true),
        Ok(Err(e)) => match e.kind() {
            async_nats::client::RequestErrorKind::NoResponders => Some(false),
            async_nats::client::RequestErrorKind::TimedOut => Some(true),
            _ => None,
        },
    }
}

/// This node's id: `cluster.node_id` if set and not live (refused if
/// live), else a random one (`draw`) that is not live.
pub async fn claim(
    cfg: &ClusterConfig,
    mut draw: impl FnMut() -> u32,
) -> Result<u32, ClusterError> {
    if cfg.node_id != 0 {
        return match is_live(cfg, cfg.node_id).await {
            Some(true) => Err(ClusterError::NodeIdTaken(cfg.node_id)),
            Some(false) => Ok(cfg.node_id),
            None => {
                tracing::warn!(
                    node = cfg.node_id,
                    "the broker did not answer: cluster.node_id not checked against the live nodes"
                );
                Ok(cfg.node_id)
            }
        };
    }
    let mut node = draw();
    for _ in 1..DRAWS {
        match is_live(cfg, node).await {
            Some(true) => {
                tracing::info!(
                    node,
                    "random node id in use by a live node: drawing another"
                );
                node = draw();
            }
            Some(false) => return Ok(node),
            None => {
                tracing::warn!(
                    node,
                    "the broker did not answer: the random node id not checked against the live nodes"
                );
                return Ok(node);
            }
        }
    }
    Ok(node)
}
