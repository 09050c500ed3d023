//! Gateway mode: wsedge speaking AWS API Gateway WebSocket APIs' language
//! to the application behind it (`$connect`, `$disconnect`, `$default`
//! and custom routes to a backend, and the `@connections` management API).
//!
//! - [`events`]: what the cores tell the gateway, through one bounded
//!   queue ([`events::Link`]).
//! - [`service`]: the gateway on the control plane's runtime — per
//!   connection, in order, the backend calls; the registry it keeps.
//! - [`backend`]: the HTTP client (keep-alive pool, timeouts).
//! - [`format`](mod@format): the calls as API Gateway makes them (`http_proxy`,
//!   `lambda_proxy`) and the answers read back; pure.
//! - [`route`]: route selection (`$request.body.action`); pure.
//! - [`registry`]: reachable connections and their ISO 8601 times.
//! - [`api`]: the `@connections` API on the admin listener.
//! - [`sigv4`]: the signature check of that API.
//! - [`conn_id`]: API Gateway–shaped connection ids.
//! - [`stats`]: the gateway's counters.
//!
//! Owns: what is specific to API Gateway compatibility.
//! Must not touch: the engine's per-core state (it reaches connections
//! through the hub's handle and the cores' inboxes; the cores' side is
//! `engine::gateway`), HTTP serving (the admin plane's; `api` answers
//! the requests it is handed).

pub mod api;
pub mod backend;
pub mod conn_id;
pub mod events;
pub mod format;
pub mod registry;
pub mod route;
pub mod service;
pub mod sigv4;
pub mod stats;

pub use service::Gateway;
