//! The `cluster_wire` harness: arbitrary bytes as one message received
//! from the broker, read as a node subject's payload and as a channel's
//! (`cluster::wire::decode`).
//!
//! Checks: no panic; a payload read as a message encodes back to one that
//! reads as the same message (origin, operation and every field); a
//! request or reply is never over `MAX_REQUEST_BYTES`, an `info` outcome
//! never over `MAX_INFO_BYTES`.
//!
//! Must not touch: I/O, the broker, the hub: only the pure codec of
//! `cluster::wire`.

use crate::cluster::wire::{self, Envelope, Outcome};

pub fn cluster_wire(data: &[u8]) {
    for node in [true, false] {
        let Some((origin, env)) = wire::decode(data, node) else {
            continue;
        };
        match &env {
            Envelope::Request { .. } | Envelope::Reply { .. } => {
                assert!(
                    data.len() <= wire::MAX_REQUEST_BYTES,
                    "request over the bound"
                );
            }
            _ => {}
        }
        if let Envelope::Reply {
            outcome: Outcome::Info(json),
            ..
        } = &env
        {
            assert!(json.len() <= wire::MAX_INFO_BYTES, "info over the bound");
        }
        let again = wire::encode(origin, &env);
        assert_eq!(
            wire::decode(&again, node),
            Some((origin, env)),
            "re-encoded payload reads differently"
        );
    }
}
