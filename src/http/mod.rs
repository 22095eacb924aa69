//! The operator surface over HTTP (`--http ADDR`; docs/api.md): a
//! read-only JSON API, Prometheus `/metrics`, and the operators' control
//! endpoints, on the process's tokio runtime.
//!
//! Data flows one way: the tick loop publishes a snapshot through
//! [`HttpSink`] (a [`crate::sinks::Sink`]) and the handlers read only that.
//! Control requests go back the way the Unix socket's do, over the control
//! channel the live loop applies between ticks, so the HTTP surface never
//! holds the core.
//!
//! - [`auth`]: the token file and the two roles.
//! - [`snapshot`]: the sink and what it publishes.
//! - [`api`]: the routes.
//! - [`metrics`]: the Prometheus text.
//! - [`events`]: the live event lines' fan-out to streaming clients.
//! - [`lines`]: the lines' geometry and state for the page.
//! - [`page`]: the operator web page's files, built into the binary.

pub mod api;
pub mod auth;
pub mod events;
pub mod lines;
pub mod metrics;
pub mod page;
pub mod snapshot;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use auth::{Role, Tokens};
pub use snapshot::{HttpSink, Shared, Snapshot};

use crate::runtime::control::ControlTx;

/// Why the HTTP surface cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Tokens(#[from] auth::TokenFileError),
    #[error(
        "--http {addr}: without a token file the server is read-only and open to anyone who can reach it, so it binds to loopback only; use --http 127.0.0.1:{port}, or give tokens with --http-tokens FILE (or TWIN_HTTP_TOKENS_FILE; docs/api.md)",
        port = addr.port()
    )]
    NotLoopback { addr: SocketAddr },
    #[error(
        "--http {addr}: cannot listen: {source}; if another program has that port, pick another, or port 0 for a free one (`--http 127.0.0.1:0`, `make demo HTTP=127.0.0.1:0`): the URL is logged"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What `--http` and its token file asked for, checked before the run
/// starts.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub tokens: Tokens,
}

impl HttpConfig {
    /// Read the token file (if any) and apply the no-token rule.
    pub fn new(addr: SocketAddr, tokens_file: Option<&Path>) -> Result<HttpConfig, HttpError> {
        let tokens = match tokens_file {
            Some(p) => Tokens::load(p)?,
            None => Tokens::default(),
        };
        if tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(HttpError::NotLoopback { addr });
        }
        Ok(HttpConfig { addr, tokens })
    }

    /// Whether operators can act through it (tokens are configured).
    pub fn takes_control(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// Bind and serve until `shutdown`. `control`: where operators' commands
/// go; `None` makes the control endpoints refuse (a replay). Returns the
/// address bound (port 0 asks the system for one).
pub async fn serve(
    cfg: HttpConfig,
    shared: Shared,
    control: Option<ControlTx>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr, HttpError> {
    let bind = |source| HttpError::Bind {
        addr: cfg.addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let url = format!("http://{addr}");
    if cfg.tokens.is_empty() {
        tracing::warn!(%url, "HTTP server without tokens: read-only, and on loopback only. Give --http-tokens FILE to allow operators (docs/api.md).");
    }
    // No token, no operator: the control endpoints refuse.
    let control = if cfg.tokens.is_empty() { None } else { control };
    let read_only = control.is_none();
    tracing::info!(%url, tokens = cfg.tokens.len(), read_only, "HTTP server listening.");
    let state = api::AppState {
        shared,
        tokens: Arc::new(cfg.tokens),
        control,
    };
    let app = api::router(state);
    tokio::spawn(accept_loop(listener, app, shutdown, Limits::default()));
    Ok(addr)
}

/// Connections served at once; one more is closed as it is accepted, so a
/// flood of clients (or of half-open connections) cannot take the
/// process's file descriptors or memory. Far above what the operators of
/// one line and a Prometheus server use.
pub const MAX_CONNECTIONS: usize = 512;
/// A client has this long to send a request's headers once it starts one
/// (and a kept-alive connection to start the next): a slowloris-style
/// client that trickles headers is cut off instead of holding a slot.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The accept loop's limits ([`MAX_CONNECTIONS`], [`HEADER_READ_TIMEOUT`]).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Our own accept loop instead of `axum::serve`, for [`MAX_CONNECTIONS`]
/// and [`HEADER_READ_TIMEOUT`] (axum 0.7's `serve` sets neither). Each
/// connection is HTTP/1.1 on a task of its own; on `shutdown` the listener
/// closes and every connection finishes its request in flight and closes.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
    limits: Limits,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was taken: wait a little rather than spin, and go on.
                tracing::warn!(error = %e, "The HTTP server could not accept a connection.");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, refused, max = limits.max_connections,
                    "The HTTP server is at its connection limit; closed a new connection.");
            }
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "An HTTP connection ended with an error.");
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod limits_tests;
