//! wsedge: a thread-per-core WebSocket edge server.
//!
//! Layers, bottom up (each module's own doc says what it owns):
//! - [`protocol`]: sans-IO RFC 6455 — frames, masking, UTF-8, close codes,
//!   the HTTP upgrade. Pure functions over bytes.
//! - [`conn`]: one connection's state machine — bytes and `now` in,
//!   events, bytes out and the next deadline out.
//! - [`timer`]: the hierarchical timing wheel holding every deadline.
//! - [`engine`]: the data plane — the per-core `mio` drivers.
//! - [`inbox`]: the one way into a core: bounded commands, wake-up,
//!   shutdown flag, overflow policy.
//! - [`sharded`]: sixteen locked shards picked by key hash, under the
//!   state all cores share (hub registry, admission maps).
//! - [`hub`], [`admission`], [`limits`]: channels, users and fan-out (a
//!   per-core `Hub` and the control plane's `HubHandle`), who may
//!   connect, per-client buckets.
//! - [`stats`]: what the cores publish (counters, latency histograms) and
//!   the control plane's view of it.
//! - [`admin`]: the control plane's HTTP side — push API, metrics, health,
//!   status page; it holds only handles (hub, stats), never the engine.
//! - [`server`]: the composition — builds both planes, wires them, and is
//!   the [`Server`] handle that stops them.
//! - [`panics`]: fault isolation — what a panic on a wsedge thread turns
//!   into (one connection closed with 1011, one admin request answered 500).
//! - [`config`], [`error`]: every setting, every refusal reason;
//!   [`settings`]: the TOML file, environment and flags that fill them.
//! - `fuzzing`: the fuzz harnesses, compiled only under `cfg(fuzzing)`
//!   (`cargo fuzz`) or the `fuzzing` feature (on for `cargo test`), never
//!   into the product.
//!
//! `unsafe` is forbidden in the whole crate.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod engine;
pub mod error;
#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing;
pub mod gateway;
pub mod hub;
pub mod inbox;
pub mod limits;
pub mod panics;
pub mod protocol;
pub mod server;
pub mod settings;
pub mod sharded;
pub mod stats;
pub mod timer;
pub mod tls;

pub use config::{Config, ConnConfig};
pub use server::Server;
pub use stats::Stats;
