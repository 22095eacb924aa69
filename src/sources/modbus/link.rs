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
//!   a valid reply on a connection that has stayed up 5 s), after a failed connect and after a dropped or
//!   garbled connection, answering requests immediately with the error that
//!   took the link down in between, so pollers never pile up behind a dead
//!   device. A timeout reconnects at once if the connection ever answered:
//!   it has already waited, and on a gateway the other units must not wait
//!   for one silent unit. A connection that never answered counts as a
//!   failed attempt, so a server that accepts and stays silent is backed off.
//!
//! Writes ([`Link::write`]) share the socket, the in-flight cap, the
//! timeouts and the transaction matching, with three differences, all there
//! because a write changes the plant and a read does not:
//! - **Priority lane.** Writes have their own queue, served before the read
//!   queue whenever a slot is free, so a setpoint does not wait behind a
//!   poll cycle. A request already on the wire is never preempted: there is
//!   no way to take back bytes the device may be acting on.
//! - **Never queued across a reconnect.** A write goes out only on the
//!   connection that was up when it was handed in. With no connection, or
//!   a newer one, it fails at once with [`WriteFailure::sent`] false: the
//!   guard decided on a plant state it saw through the old connection, and
//!   a proposal must not outlive the outage that made it stale (issue 12).
//!   A write never opens a connection either; the poller's reads do that,
//!   and a device the poller cannot reach is one not to write to.
//! - **Never retried.** A write that was sent and got no trustworthy reply
//!   (timeout, connection lost, garbled or wrongly echoed reply) fails with
//!   [`WriteFailure::sent`] true: the outcome is unknown, because the
//!   device may well have applied it and only the reply was lost. Sending
//!   it again could apply it twice (a counter, a toggle, a recipe step) or
//!   undo a change the operator made in between; whether to try again is
//!   the guard's decision, after a read-back, never the link's.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::frame::{self, Exception, FrameError, MBAP_LEN, ReadData, ReadRequest, WriteRequest};
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
    /// A write found no connection up: the device has not been reached
    /// since the link started.
    #[error("not connected to the device")]
    NotConnected,
    /// A write was handed in on a connection that has since been replaced.
    #[error(
        "the connection was re-established after the write was queued; a write is never carried across a reconnect"
    )]
    Reconnected,
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
            LinkError::NotConnected | LinkError::Reconnected => Reason::ConnectionLost,
        }
    }
}

pub type ReadResult = Result<Result<ReadData, Exception>, LinkError>;

/// Why a write got no answer, and whether it may have been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct WriteFailure {
    pub error: LinkError,
    /// The request (or some of it) left for the device, which may have
    /// applied it: the outcome is unknown. False only when nothing was sent.
    pub sent: bool,
}

/// A device's refusal (`Ok(Err(exception))`) is kept apart from a transport
/// failure (`Err`), as for reads.
pub type WriteResult = Result<Result<(), Exception>, WriteFailure>;

/// A request handed to the link task, with where its answer goes.
enum Job {
    Read {
        req: ReadRequest,
        reply: oneshot::Sender<ReadResult>,
    },
    Write {
        req: WriteRequest,
        reply: oneshot::Sender<WriteResult>,
        /// When it was handed in: it may go out only on a connection that
        /// was up by then.
        submitted: Instant,
    },
}

impl Job {
    fn unit(&self) -> u8 {
        match self {
            Job::Read { req, .. } => req.unit,
            Job::Write { req, .. } => req.unit,
        }
    }

    /// Answer with a transport failure. `sent`: whether the request had
    /// left (matters only to a write).
    fn fail(self, error: LinkError, sent: bool) {
        match self {
            Job::Read { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Job::Write { reply, .. } => {
                let _ = reply.send(Err(WriteFailure { error, sent }));
            }
        }
    }

    fn encode_tcp(&self, tid: u16) -> Vec<u8> {
        match self {
            Job::Read { req, .. } => frame::encode_tcp(tid, req).to_vec(),
            Job::Write { req, .. } => frame::encode_write_tcp(tid, req),
        }
    }

    fn encode_rtu(&self) -> Vec<u8> {
        match self {
            Job::Read { req, .. } => frame::encode_rtu(req).to_vec(),
            Job::Write { req, .. } => frame::encode_write_rtu(req),
        }
    }

    /// Length of the RTU frame answering this job, from its first bytes.
    fn rtu_reply_len(&self, head: &[u8]) -> Option<usize> {
        match self {
            Job::Read { .. } => frame::rtu_reply_len(head),
            Job::Write { .. } => frame::rtu_write_reply_len(head),
        }
    }

    /// Parse a reply (a TCP PDU, or a whole RTU frame) and answer with it.
    /// `Ok(true)`: the device answered with an exception.
    fn settle(self, reply_bytes: &[u8], framing: Framing) -> Result<bool, FrameError> {
        match self {
            Job::Read { req, reply } => {
                let parsed = match framing {
                    Framing::Tcp => frame::parse_pdu(reply_bytes, &req),
                    Framing::RtuOverTcp => frame::parse_rtu(reply_bytes, &req),
                };
                match parsed {
                    Ok(r) => {
                        let refused = r.is_err();
                        let _ = reply.send(Ok(r));
                        Ok(refused)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(LinkError::Protocol(e.to_string())));
                        Err(e)
                    }
                }
            }
            Job::Write { req, reply, .. } => {
                let parsed = match framing {
                    Framing::Tcp => frame::parse_write_pdu(reply_bytes, &req),
                    Framing::RtuOverTcp => frame::parse_write_rtu(reply_bytes, &req),
                };
                match parsed {
                    Ok(r) => {
                        let refused = r.is_err();
                        let _ = reply.send(Ok(r));
                        Ok(refused)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(WriteFailure {
                            error: LinkError::Protocol(e.to_string()),
                            sent: true,
                        }));
                        Err(e)
                    }
                }
            }
        }
    }
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
    /// Write requests handed in (sent or not).
    pub writes: u64,
}

/// Handle to a link task; cheap to clone. Reads and writes go through
/// separate handles ([`super::writer::ModbusWriter`] holds the write side);
/// this is the task's own door for both.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::Sender<Job>,
    /// The priority lane.
    wtx: mpsc::Sender<Job>,
}

/// Writes waiting for a slot. Writes are rare (a setpoint every few
/// seconds); a full lane means the device is not keeping up, and the
/// caller waits rather than piling more up.
const WRITE_QUEUE: usize = 64;

impl Link {
    pub fn spawn(cfg: LinkConfig, shutdown: CancellationToken) -> Link {
        let (tx, rx) = mpsc::channel(1024);
        let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(run(cfg, rx, wrx, shutdown));
        Link { tx, wtx }
    }

    pub async fn read(&self, req: ReadRequest) -> ReadResult {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Read { req, reply })
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.map_err(|_| LinkError::Closed)?
    }

    /// Send one write, ahead of any queued read, on the connection that is
    /// up now; never retried (see the module docs). A request that cannot
    /// be framed ([`WriteRequest::check`]) fails unsent.
    pub async fn write(&self, req: WriteRequest) -> WriteResult {
        let unsent = |error| WriteFailure { error, sent: false };
        req.check().map_err(|e| unsent(LinkError::Protocol(e)))?;
        let (reply, rx) = oneshot::channel();
        let submitted = crate::wallclock::tokio_now();
        self.wtx
            .send(Job::Write {
                req,
                reply,
                submitted,
            })
            .await
            .map_err(|_| unsent(LinkError::Closed))?;
        // The task answers every write it took, sent or not, before it
        // drops it; a reply lost here means it never took this one.
        rx.await.map_err(|_| unsent(LinkError::Closed))?
    }

    /// Reads waiting for a slot (not yet sent).
    pub fn queued_reads(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Writes waiting for a slot (not yet sent).
    pub fn queued_writes(&self) -> usize {
        self.wtx.max_capacity() - self.wtx.capacity()
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
    job: Job,
    deadline: Instant,
}

struct Conn {
    stream: TcpStream,
    /// When it was established: writes handed in before this are not sent.
    connected_at: Instant,
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

/// A connection that has answered and stayed up this long has proved the
/// device healthy: the reconnect backoff starts again from its minimum.
pub(crate) const PROVEN_AFTER: Duration = Duration::from_secs(5);

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

/// Fail everything in flight on `conn`: all of it was sent.
fn fail_all(conn: Conn, err: &LinkError) {
    for (_, p) in conn.pending {
        p.job.fail(err.clone(), true);
    }
}

/// What woke the link task.
enum Event {
    Job(Job),
    Socket(std::io::Result<usize>),
    Timer,
}

async fn run(
    cfg: LinkConfig,
    mut rx: mpsc::Receiver<Job>,
    mut wrx: mpsc::Receiver<Job>,
    shutdown: CancellationToken,
) {
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
        // Biased: replies and timeouts free slots first, and a free slot
        // goes to a queued write before any queued read (the priority lane).
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,

            n = async {
                match conn.as_mut() {
                    Some(c) => c.stream.read(&mut read_chunk).await,
                    None => std::future::pending().await,
                }
            } => Event::Socket(n),

            () = &mut timer, if earliest.is_some() => Event::Timer,

            job = wrx.recv(), if in_flight < max_in_flight => match job {
                Some(job) => Event::Job(job),
                None => break,
            },

            job = rx.recv(), if in_flight < max_in_flight => match job {
                Some(job) => Event::Job(job),
                None => break,
            },
        };
        match event {
            Event::Job(job) => {
                stats.requests += 1;
                if let Job::Write { submitted, .. } = &job {
                    stats.writes += 1;
                    // Only on the connection that was up when the write was
                    // handed in; never a new one (module docs).
                    let refused = match &conn {
                        None => Some(down.clone().unwrap_or(LinkError::NotConnected)),
                        Some(c) if c.connected_at > *submitted => Some(LinkError::Reconnected),
                        Some(_) => None,
                    };
                    if let Some(err) = refused {
                        warn!(link = %cfg.name, address = %cfg.address, unit = job.unit(), error = %err,
                            "Modbus write not sent: the device is not connected.");
                        job.fail(err, false);
                        continue;
                    }
                }
                if conn.is_none() {
                    if crate::wallclock::tokio_now() < retry_at {
                        let err = down
                            .clone()
                            .unwrap_or(LinkError::Lost(Reason::ConnectionLost));
                        job.fail(err, false);
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
                                connected_at: crate::wallclock::tokio_now(),
                                buf: Vec::with_capacity(frame::MAX_ADU * 4),
                                pending: HashMap::new(),
                                next_tid: 1,
                                consecutive_timeouts: 0,
                                answered: false,
                            });
                        }
                        Err(e) => {
                            let wait = backoff.step();
                            let err = LinkError::Unreachable {
                                reason: io_reason(&e),
                                detail: e.to_string(),
                            };
                            if down.is_none() {
                                warn!(link = %cfg.name, address = %cfg.address, error = %e, retry_in = ?wait,
                                    "Modbus device unreachable; its tags are bad until it answers. Check the address and that the device is on.");
                            } else {
                                debug!(link = %cfg.name, address = %cfg.address, error = %e, retry_in = ?wait, "Modbus reconnect failed.");
                            }
                            down = Some(err.clone());
                            retry_at = crate::wallclock::tokio_now() + wait;
                            job.fail(err, false);
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
                        (tid, job.encode_tcp(tid))
                    }
                    Framing::RtuOverTcp => (0, job.encode_rtu()),
                };
                let sent = timeout(cfg.timeout, c.stream.write_all(&bytes)).await;
                // A failed send may still have put some or all of the
                // request on the wire: a write that fails here is `sent`.
                match sent {
                    Ok(Ok(())) => {
                        c.pending.insert(
                            tid,
                            Pending {
                                job,
                                deadline: crate::wallclock::tokio_now() + cfg.timeout,
                            },
                        );
                    }
                    Ok(Err(e)) => {
                        let err = LinkError::Lost(io_reason(&e));
                        warn!(link = %cfg.name, address = %cfg.address, error = %e, "Modbus connection lost while sending; reconnecting.");
                        job.fail(err.clone(), true);
                        if let Some(c) = conn.take() {
                            fail_all(c, &err)
                        }
                        down = Some(err);
                        retry_at = crate::wallclock::tokio_now() + backoff.step();
                    }
                    Err(_) => {
                        warn!(link = %cfg.name, address = %cfg.address, "Modbus send blocked past the timeout; reconnecting.");
                        job.fail(LinkError::Timeout, true);
                        if let Some(c) = conn.take() {
                            retry_at = reconnect_at(&c, &mut backoff);
                            fail_all(c, &LinkError::Timeout);
                        }
                        down = Some(LinkError::Timeout);
                    }
                }
            }

            Event::Socket(n) => {
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
                        _ => {
                            warn!(link = %cfg.name, address = %cfg.address, error = %err, "Modbus connection lost; reconnecting.")
                        }
                    }
                    if let Some(c) = conn.take() {
                        fail_all(c, &err)
                    }
                    down = Some(err);
                    // A device that accepts connections and then breaks them
                    // must not get a new one every poll.
                    retry_at = crate::wallclock::tokio_now() + backoff.step();
                } else if stats.replies > replies
                    && conn.as_ref().is_some_and(|c| {
                        crate::wallclock::tokio_now() - c.connected_at >= PROVEN_AFTER
                    })
                {
                    // Only a reply proves the device healthy; a connect alone
                    // does not (it may answer every connection with garbage).
                    // Nor does a reply on a young connection: a device that
                    // answers and then garbles or drops every connection
                    // would otherwise be reconnected every second for ever,
                    // its tags flapping and a warning logged each time.
                    backoff.reset();
                }
            }

            Event::Timer => {
                armed = None;
                let now = crate::wallclock::tokio_now();
                let Some(c) = conn.as_mut() else { continue };
                let outstanding = c.pending.len();
                let expired: Vec<u16> = c
                    .pending
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(t, _)| *t)
                    .collect();
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
                        // A write that timed out is not sent again: the
                        // device may have applied it (module docs).
                        p.job.fail(LinkError::Timeout, true);
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
    // Whatever was in flight gets an answer: a write that was sent must be
    // reported as sent, not lost with its reply channel.
    if let Some(c) = conn.take() {
        fail_all(c, &LinkError::Closed);
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
                if h.unit != p.job.unit() {
                    let e = LinkError::Protocol(
                        FrameError::Unit {
                            got: h.unit,
                            want: p.job.unit(),
                        }
                        .to_string(),
                    );
                    p.job.fail(e.clone(), true);
                    return Err(e);
                }
                // Parse in place, then drop the frame from the buffer.
                let settled = p.job.settle(&c.buf[MBAP_LEN..total], framing);
                c.buf.drain(..total);
                answered(c, settled, stats)?;
            }
            Framing::RtuOverTcp => {
                // Without transaction ids the one pending request says how
                // long its reply is (reads carry a byte count, writes are
                // fixed-size). With none pending, a stray frame is measured
                // as a read reply and discarded.
                let tid = c.pending.keys().next().copied();
                let len = match tid.and_then(|t| c.pending.get(&t)) {
                    Some(p) => p.job.rtu_reply_len(&c.buf),
                    None => frame::rtu_reply_len(&c.buf),
                };
                let Some(len) = len else {
                    return Ok(());
                };
                if len > frame::MAX_ADU {
                    return Err(LinkError::Protocol(format!("RTU frame of {len} bytes")));
                }
                if c.buf.len() < len {
                    return Ok(());
                }
                let bytes: Vec<u8> = c.buf.drain(..len).collect();
                let Some(p) = tid.and_then(|t| c.pending.remove(&t)) else {
                    stats.late_discarded += 1;
                    continue;
                };
                let settled = p.job.settle(&bytes, framing);
                answered(c, settled, stats)?;
            }
        }
    }
}

/// Account for a settled request; a reply that could not be trusted takes
/// the connection down.
fn answered(
    c: &mut Conn,
    settled: Result<bool, FrameError>,
    stats: &mut LinkStats,
) -> Result<(), LinkError> {
    match settled {
        Ok(refused) => {
            stats.replies += 1;
            c.answered = true;
            if refused {
                stats.exceptions += 1;
            }
            c.consecutive_timeouts = 0;
            Ok(())
        }
        Err(e) => Err(LinkError::Protocol(e.to_string())),
    }
}
