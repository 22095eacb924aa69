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
//! - [`tls`]: HTTPS from certificate and key files.

pub mod api;
pub mod auth;
pub mod events;
pub mod lines;
pub mod metrics;
pub mod page;
pub mod snapshot;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
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
    /// HTTPS (`--http-tls-cert`, `--http-tls-key`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
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
        Ok(HttpConfig {
            addr,
            tokens,
            tls: None,
        })
    }

    /// Serve HTTPS with this certificate (PEM, then its chain) and private
    /// key (PEM, unencrypted), read and checked now.
    pub fn with_tls(mut self, cert: &Path, key: &Path) -> Result<HttpConfig, HttpError> {
        self.tls = Some(tls::server_config(cert, key)?);
        Ok(self)
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
    let listener = listen(cfg.addr).map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
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
    let tls = cfg.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(accept_loop(listener, app, tls, shutdown, Limits::default()));
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
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) taken in: what a
/// browser sends is under 8 KiB, a bearer token included; hyper's own
/// default (about 400 KiB) would let each of [`MAX_CONNECTIONS`] hold that
/// much. A larger head is answered `431`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A response's bytes may wait this long for the client to take any of
/// them: a client that stops reading (or vanishes without a word) loses
/// the connection instead of holding a slot, and the response's memory,
/// for ever. The clock restarts whenever the client takes some, so a slow
/// client that keeps reading is served. Event streams idle between
/// events write nothing and are not timed; one whose client stops
/// reading is cut off by this or by its queue, whichever comes first.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel's send buffer of each connection (Linux doubles it for its
/// bookkeeping). Left to itself, Linux grows a socket's send buffer up to
/// `tcp_wmem`'s maximum (4 MiB) even while the client reads nothing, so a
/// stalled event stream was taken in for minutes (4 MiB at the demo's
/// 13 KB/s) before a write would wait and [`WRITE_TIMEOUT`] could start:
/// measured by benches/http_load.rs, docs/benchmarks.md. Fixed at this
/// size, a stalled client costs at most this much kernel memory and stalls
/// within seconds, while a reading client on a plant network still gets
/// far more than the API needs (128 KiB a round trip: 100 MB/s at 1 ms).
pub const SEND_BUFFER: u32 = 64 * 1024;

/// The listening socket: as `TcpListener::bind` makes it, with
/// [`SEND_BUFFER`], which the connections accepted on it inherit.
fn listen(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restart may bind at once
    // while the old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The accept loop's limits ([`MAX_CONNECTIONS`], [`HEADER_READ_TIMEOUT`],
/// [`WRITE_TIMEOUT`], [`tls::HANDSHAKE_TIMEOUT`]).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    write_timeout: Duration,
    handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            handshake_timeout: tls::HANDSHAKE_TIMEOUT,
        }
    }
}

/// The size of a request's head as sent: request line and header lines.
fn head_bytes(req: &axum::extract::Request) -> usize {
    let line =
        req.method().as_str().len() + req.uri().to_string().len() + " HTTP/1.1\r\n".len() + 1;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + ": \r\n".len() + v.len())
        .sum();
    line + headers + "\r\n".len()
}

/// Answer `431` to a head over [`MAX_HEAD_BYTES`] and close the connection.
/// hyper's `max_buf_size` bounds what it buffers, but only to within one
/// read of the limit: heads of up to about twice it got through and were
/// served.
async fn refuse_large_heads(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if head_bytes(&req) <= MAX_HEAD_BYTES {
        return next.run(req).await;
    }
    (
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        [(axum::http::header::CONNECTION, "close")],
    )
        .into_response()
}

/// Our own accept loop instead of `axum::serve`, for [`MAX_CONNECTIONS`],
/// [`HEADER_READ_TIMEOUT`], [`WRITE_TIMEOUT`] and TLS (axum 0.7's `serve`
/// has none of them). Each connection is HTTP/1.1 on a task of its own,
/// its TLS handshake too, so a slow handshake holds up no one else; on
/// `shutdown` the listener closes and every connection finishes its
/// request in flight and closes.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: tokio_util::sync::CancellationToken,
    limits: Limits,
) {
    let app = app.layer(axum::middleware::from_fn(refuse_large_heads));
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
                tokio::time::sleep(Duration::from_millis(100)).await;
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
        let app = app.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // The slot is held from acceptance, through the handshake, to
            // the close.
            let _slot = slot;
            let Some(acceptor) = tls else {
                let stream = WriteTimeout::new(stream, limits.write_timeout);
                return serve_connection(stream, app, peer, &shutdown, limits).await;
            };
            let handshake = tokio::time::timeout(
                limits.handshake_timeout,
                tls_handshake(stream, &acceptor, limits.write_timeout),
            );
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                h = handshake => match h {
                    Ok(Some(s)) => s,
                    Ok(None) => return,
                    Err(_) => {
                        tracing::debug!(%peer, "An HTTPS client did not finish its TLS handshake in time.");
                        return;
                    }
                },
            };
            serve_connection(stream, app, peer, &shutdown, limits).await;
        });
    }
}

/// The answer to plain HTTP on the HTTPS port, instead of a TLS alert the
/// user's tool would print as garbage.
const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 53\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL for it.\r\n";

/// The TLS handshake on an accepted connection; `None` if it failed
/// (logged). A client that speaks plain HTTP is told so and closed.
async fn tls_handshake(
    stream: tokio::net::TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    write_timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<WriteTimeout<tokio::net::TcpStream>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let peer = stream.peer_addr().ok();
    // A TLS connection opens with a handshake record (content type 22); an
    // HTTP request opens with a method's capital letter.
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] != 22 => {
            tracing::debug!(?peer, "A client spoke plain HTTP to the HTTPS server.");
            let mut stream = stream;
            // Best effort: the client may already be gone.
            let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
            let _ = stream.shutdown().await;
            // Take in its request (for a second at most) before closing: a
            // close with unread bytes is a reset, and a reset can make the
            // client lose the answer before reading it.
            let mut discard = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Ok(n) = stream.read(&mut discard).await
                    && n > 0
                {}
            })
            .await;
            return None;
        }
        Ok(1) => {}
        // Closed before a byte, or reset.
        _ => return None,
    }
    match acceptor
        .accept(WriteTimeout::new(stream, write_timeout))
        .await
    {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(?peer, error = %e, "An HTTPS client's TLS handshake failed.");
            None
        }
    }
}

/// Serve HTTP/1.1 on one connection until it closes, or until `shutdown`
/// lets its request in flight finish.
async fn serve_connection<S>(
    stream: S,
    app: axum::Router,
    peer: SocketAddr,
    shutdown: &tokio_util::sync::CancellationToken,
    limits: Limits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
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
}

/// A connection whose writes fail once they have made no progress for
/// [`WRITE_TIMEOUT`] (hyper's HTTP/1 server has no write timeout). Under
/// TLS it wraps the TCP stream, so it times the bytes on the wire.
struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Running while the last write could not proceed.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// A write's outcome, with the stall clock applied: started by a
    /// pending write, reset by any progress, an error when it runs out.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took none of the response for the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.timed(cx, polled)
    }
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tls_tests;
