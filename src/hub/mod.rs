//! The hub: channels, users, presence, per-connection membership and
//! grants, and fan-out across cores — one owner, one API.
//!
//! - [`Hub`] ([`core`]): one core's hub — its connections' membership, the
//!   `/ws` requests, publishes from the core, deliveries to it. The engine
//!   feeds it and queues the frames it returns.
//! - [`HubHandle`] ([`handle`]): the `Send + Clone` handle of the control
//!   plane — `publish`, `send_to_user`, `send_to_connection`, `disconnect`,
//!   presence queries. The admin plane calls only this.
//! - [`route`]: the one road out of an origin: encode once, hand to the
//!   other cores through their inboxes. Both of the above take it.
//! - [`registry`]: the shared, read-mostly "which cores have it" entries
//!   and each core's lock-free cache of them (the design, and why a
//!   publish after a subscribe's ack always reaches that subscriber).
//! - [`local`]: one core's channel and user indexes.
//! - [`held`]: subscribe acks held (clustered) until the node's broker
//!   subscription to the channel is confirmed.
//! - [`protocol`]: the JSON client protocol and server message frames.
//! - [`id`]: process-unique connection ids.
//!
//! Must not touch: sockets, connections' state machines, the clock.

pub mod core;
pub mod handle;
pub mod held;
pub mod id;
pub mod local;
pub mod protocol;
pub mod registry;
pub mod route;

pub use self::core::{Fanout, Hub, Member, Output};
pub use handle::{HubError, HubHandle};
pub use id::ConnId;
pub use local::LocalHub;
pub use registry::Registry;
