//! Per-connection rate limits.
//!
//! - [`token_bucket`]: the sans-IO token bucket.
//!
//! Owns: limit arithmetic. Must not touch: connections or sockets; the
//! connection applies the configured policy.

pub mod token_bucket;

pub use token_bucket::TokenBucket;
