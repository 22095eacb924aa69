//! A Modbus TCP link: one TCP connection to one endpoint, shared by every
//! unit id behind it (a gateway), with pipelining, timeouts and reconnects.
//!
//! A single task owns the socket. Callers hand it requests through a channel
//! and get the reply through a oneshot. The task
//! - caps the requests in flight (`max_in_flight`);
//! - matches replies to requests by transaction id, so a reply that arrives
//!   after its request timed out is recognised and discarded instead of being
//!   taken for the answer to a later request (the stale-transaction problem,
//!   tokio-modbus #324). RTU framing has no transaction id, so there the link
//!   reconnects after a timeout instead;
//! - drops the connection on anything it cannot parse (no guessing where the
//!   next frame starts) and on repeated timeouts (a half-open connection);
//! - reconnects with exponential backoff and jitter (1 s to 60 s, reset by
//!   the first valid reply), after a failed connect and after a dropped or
//!   garbled connection, answering requests immediately with the error that
//!   took the link down in between, so pollers never pile up behind a dead
//!   device. A timeout reconnects at once if the connection ever answered:
//!   it has already waited, and on a gateway the other units must not wait
//!   for one silent unit. A connection that never answered counts as a
//!   failed attempt, so a server that accepts and stays silent is backed off.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::frame::{self, Exception, FrameError, MBAP_LEN, ReadData, ReadRequest};
use crate::sources::backoff::Backoff;
use crate::twin::Reason;

/// How requests are framed on the TCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Modbus TCP (MBAP header with transaction ids).
    Tcp,
    /// RTU frames (with CRC) tunnelled over TCP, as serial gateways do.
    RtuOverTcp,
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Names the link in logs: the devices that share it.
    pub name: String,
    pub address: String,
    pub framing: Framing,
    /// Per-request timeout; also bounds connecting.
    pub timeout: Duration,
    pub max_in_flight: usize,
}

/// Why a request got no data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("device unreachable ({reason}): {detail}")]
    Unreachable { reason: Reason, detail: String },
    #[error("no reply within the timeout")]
    Timeout,
    #[error("connection lost ({0})")]
    Lost(Reason),
    #[error("invalid reply: {0}")]
    Protocol(String),
    #[error("the link has shut down")]
    Closed,
}

impl LinkError {
    /// The quality reason for tags this request was for.
    pub fn reason(&self) -> Reason {
        match self {
            LinkError::Unreachable { reason, .. } => *reason,
            LinkError::Timeout => Reason::Timeout,
            LinkError::Lost(r) => *r,
            LinkError::Protocol(_) => Reason::InvalidResponse,
            LinkError::Closed => Reason::Shutdown,
        }
    }
}

pub type ReadResult = Result<Result<ReadData, Exception>, LinkError>;

struct Job {
    req: ReadRequest,
    reply: oneshot::Sender<ReadResult>,
}

/// Counters for one link, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub requests: u64,
    pub replies: u64,
    pub exceptions: u64,
    pub timeouts: u64,
    /// Replies whose request had already timed out, discarded by transaction id.
    pub late_discarded: u64,
    pub connects: u64,
    pub garbage: u64,
}

/// Handle to a link task; cheap to clone.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::Sender<Job>,
}

impl Link {
    pub fn spawn(cfg: LinkConfig, shutdown: CancellationToken) -> Link {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(cfg, rx, shutdown));
        Link { tx }
    }

    pub async fn read(&self, req: ReadRequest) -> ReadResult {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { req, reply })
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.map_err(|_| LinkError::Closed)?
    }
}

pub(crate) fn io_reason(e: &std::io::Error) -> Reason {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Reason::ConnectionRefused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Reason::ConnectionLost,
        TimedOut => Reason::Timeout,
        HostUnreachable | NetworkUnreachable => Reason::HostUnreachable,
        AddrNotAvailable | InvalidInput => Reason::BadAddress,
        _ => Reason::CommError,
    }
}

struct Pending {
    req: ReadRequest,
    reply: oneshot::Sender<ReadResult>,
    deadline: Instant,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pending: HashMap<u16, Pending>,
    next_tid: u16,
    consecutive_timeouts: u32,
    /// Whether any reply came on this connection. A server that accepts
    /// connections and never answers must not be reconnected at once after
    /// each round of timeouts: its connect succeeding proves nothing.
    answered: bool,
}

/// Reconnect delays: 1 s doubling to 60 s.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// After this many timeouts in a row the connection is presumed half-open.
pub(crate) const MAX_CONSECUTIVE_TIMEOUTS: u32 = 3;

async fn connect(cfg: &LinkConfig) -> std::io::Result<TcpStream> {
    let stream = timeout(cfg.timeout, TcpStream::connect(&cfg.address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    // Polls are small request/response exchanges: Nagle only adds latency.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// When to connect again after giving up on `c` for its timeouts. A
/// connection that answered before reconnects at once: it has already
/// waited, and on a gateway the other units must not wait for one silent
/// unit. One that never answered counts as a failed attempt, like a refused
/// connect, so a server that accepts and stays silent is backed off.
fn reconnect_at(c: &Conn, backoff: &mut Backoff) -> Instant {
    let now = crate::wallclock::tokio_now();
    if c.answered {
        now
    } else {
        now + backoff.step()
    }
}

fn fail_all(conn: Conn, err: &LinkError) {
    for (_, p) in conn.pending {
        let _ = p.reply.send(Err(err.clone()));
    }
}

async fn run(cfg: LinkConfig, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
    let mut max_in_flight = match cfg.framing {
        Framing::Tcp => cfg.max_in_flight.clamp(1, 256),
        // Without transaction ids, only one request can be outstanding.
        Framing::RtuOverTcp => 1,
    };
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::new(&cfg.name, BACKOFF_MIN, BACKOFF_MAX);
    let mut retry_at = crate::wallclock::tokio_now();
    let mut down: Option<LinkError> = None;
    let mut stats = LinkStats::default();
    let mut read_chunk = vec![0u8; 4096];
    // One timer, re-armed only when the earliest deadline changes: creating
    // a timer per loop turn costs more than the rest of a request.
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;

    loop {
        let in_flight = conn.as_ref().map_or(0, |c| c.pending.len());
        let earliest = conn
            .as_ref()
            .and_then(|c| c.pending.values().map(|p| p.deadline).min());
        if let Some(d) = earliest
            && armed != Some(d)
        {
            timer.as_mut().reset(d);
            armed = Some(d);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,

            job = rx.recv(), if in_flight < max_in_flight => {
                let Some(job) = job else { break };
                stats.requests += 1;
                if conn.is_none() {
                    if crate::wallclock::tokio_now() < retry_at {
                        let err = down.clone().unwrap_or(LinkError::Lost(Reason::ConnectionLost));
                        let _ = job.reply.send(Err(err));
                        continue;
                    }
                    match connect(&cfg).await {
                        Ok(stream) => {
                            stats.connects += 1;
                            if down.take().is_some() {
                                info!(link = %cfg.name, address = %cfg.address, "Modbus connection re-established.");
                            } else {
                                debug!(link = %cfg.name, address = %cfg.address, "Modbus connection established.");
                            }
                            conn = Some(Conn {
                                stream,
                                buf: Vec::with_capacity(frame::MAX_ADU * 4),
                                pending: HashMap::new(),
                                next_tid: 1,
                                consecutive_timeouts: 0,
                                answered: false,
                            });
                        }
                        Err(e) => {
                            let wait = backoff.step();
                            let err = LinkError::Unreachable { reason: io_reason(&e), detail: e.to_string() };
                            if down.is_none() {
                                warn!(link = %cfg.name, address = %cfg.address, error = %e, retry_in = ?wait,
                                    "Modbus device unreachable; its tags are bad until it answers. Check the address and that the device is on.");
                            } else {
                                debug!(link = %cfg.name, address = %cfg.address, error = %e, retry_in = ?wait, "Modbus reconnect failed.");
                            }
                            down = Some(err.clone());
                            retry_at = crate::wallclock::tokio_now() + wait;
                            let _ = job.reply.send(Err(err));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let (tid, bytes): (u16, Vec<u8>) = match cfg.framing {
                    Framing::Tcp => {
                        let mut tid = c.next_tid;
                        while c.pending.contains_key(&tid) {
                            tid = tid.wrapping_add(1);
                        }
                        c.next_tid = tid.wrapping_add(1);
                        (tid, frame::encode_tcp(tid, &job.req).to_vec())
                    }
                    Framing::RtuOverTcp => (0, frame::encode_rtu(&job.req).to_vec()),
                };
                let sent = timeout(cfg.timeout, c.stream.write_all(&bytes)).await;
                match sent {
                    Ok(Ok(())) => {
                        c.pending.insert(tid, Pending {
                            req: job.req,
                            reply: job.reply,
                            deadline: crate::wallclock::tokio_now() + cfg.timeout,
                        });
                    }
                    Ok(Err(e)) => {
                        let err = LinkError::Lost(io_reason(&e));
                        warn!(link = %cfg.name, address = %cfg.address, error = %e, "Modbus connection lost while sending; reconnecting.");
                        let _ = job.reply.send(Err(err.clone()));
                        if let Some(c) = conn.take() { fail_all(c, &err) }
                        down = Some(err);
                        retry_at = crate::wallclock::tokio_now() + backoff.step();
                    }
                    Err(_) => {
                        warn!(link = %cfg.name, address = %cfg.address, "Modbus send blocked past the timeout; reconnecting.");
                        let _ = job.reply.send(Err(LinkError::Timeout));
                        if let Some(c) = conn.take() {
                            retry_at = reconnect_at(&c, &mut backoff);
                            fail_all(c, &LinkError::Timeout);
                        }
                        down = Some(LinkError::Timeout);
                    }
                }
            }

            n = async {
                match conn.as_mut() {
                    Some(c) => c.stream.read(&mut read_chunk).await,
                    None => std::future::pending().await,
                }
            } => {
                let replies = stats.replies;
                let result = match n {
                    Ok(0) => Err(LinkError::Lost(Reason::ConnectionLost)),
                    Ok(n) => match conn.as_mut() {
                        Some(c) => {
                            c.buf.extend_from_slice(&read_chunk[..n]);
                            drain_frames(c, cfg.framing, &mut stats)
                        }
                        None => Ok(()),
                    },
                    // Reading is cancel-safe; an error here is the socket's.
                    Err(e) => Err(LinkError::Lost(match io_reason(&e) {
                        Reason::CommError => Reason::ConnectionLost,
                        r => r,
                    })),
                };
                if let Err(err) = result {
                    match &err {
                        LinkError::Protocol(detail) => {
                            stats.garbage += 1;
                            warn!(link = %cfg.name, address = %cfg.address, error = %detail,
                                "Invalid Modbus reply; dropping the connection rather than guessing where the next frame starts.");
                        }
                        _ => warn!(link = %cfg.name, address = %cfg.address, error = %err, "Modbus connection lost; reconnecting."),
                    }
                    if let Some(c) = conn.take() { fail_all(c, &err) }
                    down = Some(err);
                    // A device that accepts connections and then breaks them
                    // must not get a new one every poll.
                    retry_at = crate::wallclock::tokio_now() + backoff.step();
                } else if stats.replies > replies {
                    // Only a reply proves the device healthy; a connect alone
                    // does not (it may answer every connection with garbage).
                    backoff.reset();
                }
            }

            () = &mut timer, if earliest.is_some() => {
                armed = None;
                let now = crate::wallclock::tokio_now();
                let Some(c) = conn.as_mut() else { continue };
                let outstanding = c.pending.len();
                let expired: Vec<u16> = c.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(t, _)| *t).collect();
                // Some servers (pymodbus 3.16, some gateways) silently drop
                // every request but the first of a pipelined burst. A device
                // that has answered before and now times out with several
                // requests outstanding is treated as one of them: from here
                // on, one request at a time. Safe in the other case too (a
                // merely slow device only loses throughput).
                if max_in_flight > 1 && outstanding > 1 && stats.replies > 0 {
                    warn!(link = %cfg.name, address = %cfg.address, in_flight = outstanding,
                        "Modbus request timed out with several in flight; the device may not support pipelining, so this link now sends one request at a time. Set max_in_flight = 1 for this device to make that explicit.");
                    max_in_flight = 1;
                }
                for tid in expired {
                    if let Some(p) = c.pending.remove(&tid) {
                        stats.timeouts += 1;
                        c.consecutive_timeouts += 1;
                        let _ = p.reply.send(Err(LinkError::Timeout));
                    }
                }
                let half_open = c.consecutive_timeouts >= MAX_CONSECUTIVE_TIMEOUTS;
                if cfg.framing == Framing::RtuOverTcp || half_open {
                    warn!(link = %cfg.name, address = %cfg.address, timeout = ?cfg.timeout, consecutive = c.consecutive_timeouts,
                        "Modbus request timed out; reconnecting so no late reply can be mistaken for a later one.");
                    if let Some(c) = conn.take() {
                        retry_at = reconnect_at(&c, &mut backoff);
                        fail_all(c, &LinkError::Timeout);
                    }
                    down = Some(LinkError::Timeout);
                } else {
                    debug!(link = %cfg.name, address = %cfg.address, "Modbus request timed out; a late reply will be discarded by transaction id.");
                }
            }
        }
    }
    debug!(link = %cfg.name, ?stats, "Modbus link stopped.");
}

/// Take every complete frame out of the buffer and answer its request.
fn drain_frames(c: &mut Conn, framing: Framing, stats: &mut LinkStats) -> Result<(), LinkError> {
    loop {
        match framing {
            Framing::Tcp => {
                let Some(head) = c.buf.first_chunk::<MBAP_LEN>() else {
                    return Ok(());
                };
                let h = frame::parse_mbap(head).map_err(|e| LinkError::Protocol(e.to_string()))?;
                let total = MBAP_LEN + h.pdu_len;
                if c.buf.len() < total {
                    return Ok(());
                }
                let Some(p) = c.pending.remove(&h.tid) else {
                    // Its request timed out (or never existed): the reason
                    // transaction ids exist. Drop it, keep the stream.
                    stats.late_discarded += 1;
                    c.buf.drain(..total);
                    continue;
                };
                // Parse in place, then drop the frame from the buffer.
                let parsed = frame::parse_pdu(&c.buf[MBAP_LEN..total], &p.req);
                c.buf.drain(..total);
                if h.unit != p.req.unit {
                    let e = FrameError::Unit {
                        got: h.unit,
                        want: p.req.unit,
                    };
                    let _ = p.reply.send(Err(LinkError::Protocol(e.to_string())));
                    return Err(LinkError::Protocol(e.to_string()));
                }
                answer(c, p, parsed, stats)?;
            }
            Framing::RtuOverTcp => {
                let Some(len) = frame::rtu_reply_len(&c.buf) else {
                    return Ok(());
                };
                if len > frame::MAX_ADU {
                    return Err(LinkError::Protocol(format!("RTU frame of {len} bytes")));
                }
                if c.buf.len() < len {
                    return Ok(());
                }
                let bytes: Vec<u8> = c.buf.drain(..len).collect();
                let Some(tid) = c.pending.keys().next().copied() else {
                    stats.late_discarded += 1;
                    continue;
                };
                let Some(p) = c.pending.remove(&tid) else {
                    continue;
                };
                let parsed = frame::parse_rtu(&bytes, &p.req);
                answer(c, p, parsed, stats)?;
            }
        }
    }
}

fn answer(
    c: &mut Conn,
    p: Pending,
    parsed: Result<Result<ReadData, Exception>, FrameError>,
    stats: &mut LinkStats,
) -> Result<(), LinkError> {
    match parsed {
        Ok(r) => {
            stats.replies += 1;
            c.answered = true;
            if r.is_err() {
                stats.exceptions += 1;
            }
            c.consecutive_timeouts = 0;
            let _ = p.reply.send(Ok(r));
            Ok(())
        }
        Err(e) => {
            let err = LinkError::Protocol(e.to_string());
            let _ = p.reply.send(Err(err.clone()));
            Err(err)
        }
    }
}
