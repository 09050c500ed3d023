//! Gateway mode: wsedge speaking AWS API Gateway WebSocket APIs' language
//! to the application behind it (`$connect`, `$disconnect`, `$default`
//! routes to a backend, and the `@connections` management API).
//!
//! Owns: what is specific to API Gateway compatibility. Today that is the
//! request signature (SigV4) check of the management API; the routes, the
//! backend calls and the `@connections` endpoints build on it.
//! Must not touch: the engine's per-core state (it reaches connections
//! through the hub's handle), HTTP serving (the control plane's).

pub mod conn_id;
pub mod route;
pub mod sigv4;
