//! The hub: channels, users, presence, and fan-out across cores.
//!
//! - [`protocol`]: the JSON client protocol and server message frames.
//! - [`id`]: process-unique connection ids.
//! - [`registry`]: the shared, read-mostly channel/user → cores masks.
//! - [`local`]: one core's channel and user indexes.
//!
//! A publish is encoded once into a frame (`Bytes`); local subscribers get
//! clones, other cores with subscribers get it through their inbox.

pub mod id;
pub mod local;
pub mod protocol;
pub mod registry;

pub use id::ConnId;
pub use local::LocalHub;
pub use registry::Registry;
