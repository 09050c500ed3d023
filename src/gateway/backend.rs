//! The gateway's HTTP client to the backend: one keep-alive pool
//! (hyper-util's legacy `Client` over plain TCP), each call bounded by
//! `gateway.integration_timeout` from connect to the last byte of the
//! answer, and the answer's body by [`MAX_ANSWER_BYTES`].
//!
//! Owns: sending one request and reading its answer, and telling a
//! timeout from an unreachable backend. Must not touch: what is sent
//! (`format`), retries (`service`), connections.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thiserror::Error;

/// Largest answer body read from the backend (API Gateway's message
/// limit): a longer one is a failed call, never buffered whole.
pub const MAX_ANSWER_BYTES: usize = 128 * 1024;

/// How long an idle pooled connection to the backend is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// No complete answer within `gateway.integration_timeout`.
    #[error("the backend did not answer in time")]
    Timeout,
    /// Connecting, writing or reading failed, or the answer was over
    /// [`MAX_ANSWER_BYTES`].
    #[error("the backend is unreachable or its answer unreadable")]
    Unreachable,
}

/// A backend's HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The pool and its timeout. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Backend {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Backend {
    /// A pool whose calls each end within `timeout`. Must be made inside
    /// the tokio runtime that will drive it.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .http1_title_case_headers(true)
            .build(connector);
        Self { client, timeout }
    }

    /// Sends `req` and reads the whole answer.
    pub async fn call(&self, req: Request<Bytes>) -> Result<Reply, CallError> {
        let req = req.map(Full::new);
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|_| CallError::Unreachable)?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|_| CallError::Unreachable)?
                .to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }
}
