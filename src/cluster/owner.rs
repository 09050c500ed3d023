//! The owner's side of request/reply: what this node does with another
//! node's request on one of its connections — the same hub calls (and, in
//! gateway mode, the same `@connections` operation) the local path makes.
//!
//! Owns: [`Owner`], the [`Responder`] the server installs. Must not touch:
//! the broker (the request module sends the reply), HTTP (the asker maps
//! the outcome), any core's state (only [`HubHandle`], whose waits are
//! bounded by `admin.query_timeout`; this runs on a blocking thread).

use std::sync::Arc;

use super::request::Responder;
use super::wire::{Op, Outcome};
use crate::gateway::Gateway;
use crate::hub::{HubError, HubHandle};
use crate::inbox::Posted;

/// Performs other nodes' requests on this node.
pub struct Owner {
    pub hub: HubHandle,
    /// In gateway mode: the gateway, for `@connections` operations.
    pub gateway: Option<Arc<Gateway>>,
}

impl Responder for Owner {
    fn perform(&self, op: Op) -> Outcome {
        let busy = |e: HubError| match e {
            HubError::Busy => Outcome::Busy,
            _ => Outcome::Gone,
        };
        match op {
            Op::Send { conn, data } => {
                let Ok(raw) = serde_json::from_str::<&serde_json::value::RawValue>(&data) else {
                    return Outcome::Gone;
                };
                match self.hub.send_checked(conn, raw) {
                    Ok(Posted::Queued) => Outcome::Done,
                    Ok(Posted::Full) => Outcome::Full,
                    Ok(Posted::Gone) => Outcome::Gone,
                    Err(e) => busy(e),
                }
            }
            Op::Close { conn, code } => match self.hub.disconnect_checked(conn, code) {
                Ok(true) => Outcome::Done,
                Ok(false) => Outcome::Gone,
                Err(e) => busy(e),
            },
            gateway_op => match &self.gateway {
                Some(gw) => crate::gateway::api::perform(gw, gateway_op),
                // No gateway here: no gateway connection of this node.
                None => Outcome::Gone,
            },
        }
    }
}
