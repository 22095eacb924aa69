//! Modbus faults: a misbehaving Modbus server written for these tests, and
//! what our link and the running twin make of it.
//!
//! The server speaks real Modbus TCP (and RTU over TCP) at the byte level, so
//! it can misbehave the way field devices and gateways do: answer after the
//! client gave up (transaction-id desync), refuse with every exception code,
//! close the connection halfway through a reply, and send garbage. Every
//! register holds `base + address`, so a reply that reaches the wrong request
//! shows up as a wrong value, not just as a wrong length.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use twin::sources::modbus::frame::{Exception, ReadData, ReadFn, ReadRequest, crc16};
use twin::sources::modbus::link::{Framing, Link, LinkConfig, LinkError};
use twin::twin::Reason;

use crate::util::*;

// ---------------------------------------------------------------------------
// The misbehaving server
// ---------------------------------------------------------------------------

/// How the server answers, switchable while clients are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answer every request correctly, at once.
    None,
    /// Answer correctly, but only after this long: longer than the client's
    /// timeout, so the reply arrives for a request that was given up on.
    Late(Duration),
    /// Refuse with this exception code.
    Exception(u8),
    /// Send the first n bytes of the correct reply, then close.
    DropAfter(usize),
    /// Answer with text that is not Modbus (an HTTP error), and stay connected.
    Garbage,
    /// A correct reply under an MBAP protocol id other than 0.
    ProtocolId,
    /// A correct reply whose MBAP length is out of range.
    BadLength,
    /// A consistently framed reply one register (or bit byte) short.
    ShortReply,
    /// A reply for a different function code.
    WrongFunction,
    /// A correct reply under a transaction id that was never sent; the real
    /// request goes unanswered.
    WrongTid,
    /// Hold requests until n are in, then answer them newest first.
    Reverse(usize),
    /// Answer correctly, then, a moment later, send a byte nobody asked
    /// for (a chattering device or gateway).
    ChatterAfterReply,
}

struct Behaviour {
    fault: Fault,
    /// Function code the fault applies to; others are answered normally.
    only: Option<u8>,
    base: u16,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Complete replies written or attempted, late ones included.
    replies: AtomicUsize,
    /// Most requests received and not yet answered at one time.
    max_outstanding: AtomicUsize,
    /// Requests that were not well-formed reads (the client's fault).
    malformed: AtomicUsize,
}

struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

/// One decoded read request.
#[derive(Debug, Clone, Copy)]
struct Req {
    tid: u16,
    unit: u8,
    function: u8,
    start: u16,
    count: u16,
}

fn word(base: u16, addr: u16) -> u16 {
    base.wrapping_add(addr)
}

fn bit(addr: u16) -> bool {
    addr.is_multiple_of(3)
}

impl Server {
    fn start(framing: Framing) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback port 0");
        let addr = listener.local_addr().expect("local addr");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour {
                fault: Fault::None,
                only: None,
                base: 1000,
            }),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            replies: AtomicUsize::new(0),
            max_outstanding: AtomicUsize::new(0),
            malformed: AtomicUsize::new(0),
        });
        let sh = shared.clone();
        let accept = thread::spawn(move || {
            while !sh.stop.load(SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        sh.connections.fetch_add(1, SeqCst);
                        let sh = sh.clone();
                        thread::spawn(move || serve(s, sh, framing));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    fn set(&self, fault: Fault) {
        let mut b = self.shared.behaviour.lock().expect("lock");
        b.fault = fault;
        b.only = None;
    }

    /// Apply `fault` to requests with this function code only.
    fn set_only(&self, function: u8, fault: Fault) {
        let mut b = self.shared.behaviour.lock().expect("lock");
        b.fault = fault;
        b.only = Some(function);
    }

    fn set_base(&self, base: u16) {
        self.shared.behaviour.lock().expect("lock").base = base;
    }

    fn connections(&self) -> usize {
        self.shared.connections.load(SeqCst)
    }

    fn replies(&self) -> usize {
        self.shared.replies.load(SeqCst)
    }

    fn max_outstanding(&self) -> usize {
        self.shared.max_outstanding.load(SeqCst)
    }

    fn malformed(&self) -> usize {
        self.shared.malformed.load(SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Take one complete request off the front of `buf`. `Some(Err(()))` when
/// the bytes are not a well-formed read request.
fn take_request(buf: &mut Vec<u8>, framing: Framing) -> Option<Result<Req, ()>> {
    match framing {
        Framing::Tcp => {
            let head = buf.first_chunk::<7>()?;
            let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
            if buf.len() < 6 + len {
                return None;
            }
            let adu: Vec<u8> = buf.drain(..6 + len).collect();
            if adu[2..4] != [0, 0] || len != 6 {
                return Some(Err(()));
            }
            Some(Ok(Req {
                tid: u16::from_be_bytes([adu[0], adu[1]]),
                unit: adu[6],
                function: adu[7],
                start: u16::from_be_bytes([adu[8], adu[9]]),
                count: u16::from_be_bytes([adu[10], adu[11]]),
            }))
        }
        Framing::RtuOverTcp => {
            let f = buf.first_chunk::<8>().copied()?;
            buf.drain(..8);
            if crc16(&f[..6]).to_le_bytes() != [f[6], f[7]] {
                return Some(Err(()));
            }
            Some(Ok(Req {
                tid: 0,
                unit: f[0],
                function: f[1],
                start: u16::from_be_bytes([f[2], f[3]]),
                count: u16::from_be_bytes([f[4], f[5]]),
            }))
        }
    }
}

/// The correct reply PDU (function code onwards).
fn good_pdu(r: &Req, base: u16) -> Vec<u8> {
    match r.function {
        1 | 2 => {
            let mut data = vec![0u8; usize::from(r.count).div_ceil(8)];
            for i in 0..r.count {
                if bit(r.start.wrapping_add(i)) {
                    data[usize::from(i / 8)] |= 1 << (i % 8);
                }
            }
            let mut pdu = vec![r.function, data.len() as u8];
            pdu.extend(data);
            pdu
        }
        3 | 4 => {
            let mut pdu = vec![r.function, (r.count * 2) as u8];
            for i in 0..r.count {
                pdu.extend(word(base, r.start.wrapping_add(i)).to_be_bytes());
            }
            pdu
        }
        f => vec![f | 0x80, 0x01],
    }
}

fn wrap(framing: Framing, tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    match framing {
        Framing::Tcp => {
            let mut adu = tid.to_be_bytes().to_vec();
            adu.extend([0, 0]);
            adu.extend((pdu.len() as u16 + 1).to_be_bytes());
            adu.push(unit);
            adu.extend(pdu);
            adu
        }
        Framing::RtuOverTcp => {
            let mut adu = vec![unit];
            adu.extend(pdu);
            let crc = crc16(&adu).to_le_bytes();
            adu.extend(crc);
            adu
        }
    }
}

fn serve(mut s: TcpStream, sh: Arc<Shared>, framing: Framing) {
    // A short read timeout only so the thread notices `stop`.
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = Vec::new();
    let mut held: Vec<Req> = Vec::new();
    let mut chunk = [0u8; 1024];
    while !sh.stop.load(SeqCst) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        let mut reqs = Vec::new();
        while let Some(r) = take_request(&mut buf, framing) {
            match r {
                Ok(r) => reqs.push(r),
                Err(()) => {
                    sh.malformed.fetch_add(1, SeqCst);
                    return;
                }
            }
        }
        sh.max_outstanding
            .fetch_max(held.len() + reqs.len(), SeqCst);
        for r in reqs {
            if !answer(&mut s, &sh, framing, r, &mut held) {
                let _ = s.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Answer one request as the current behaviour says. False: close the
/// connection.
fn answer(s: &mut TcpStream, sh: &Shared, framing: Framing, r: Req, held: &mut Vec<Req>) -> bool {
    let (fault, base) = {
        let b = sh.behaviour.lock().expect("lock");
        let applies = b.only.is_none_or(|f| f == r.function);
        (if applies { b.fault } else { Fault::None }, b.base)
    };
    let reply = |pdu: &[u8]| wrap(framing, r.tid, r.unit, pdu);
    let send = |s: &mut TcpStream, bytes: &[u8]| {
        sh.replies.fetch_add(1, SeqCst);
        s.write_all(bytes).is_ok()
    };
    match fault {
        Fault::None => send(s, &reply(&good_pdu(&r, base))),
        Fault::Late(d) => {
            thread::sleep(d);
            send(s, &reply(&good_pdu(&r, base)))
        }
        Fault::Exception(code) => send(s, &reply(&[r.function | 0x80, code])),
        Fault::DropAfter(n) => {
            let bytes = reply(&good_pdu(&r, base));
            let _ = s.write_all(&bytes[..n.min(bytes.len() - 1)]);
            let _ = s.flush();
            // Let the first half arrive on its own before the close.
            thread::sleep(Duration::from_millis(50));
            false
        }
        Fault::Garbage => s
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .is_ok(),
        Fault::ProtocolId => {
            let mut bytes = reply(&good_pdu(&r, base));
            bytes[2..4].copy_from_slice(&[0x00, 0x01]);
            s.write_all(&bytes).is_ok()
        }
        Fault::BadLength => {
            let mut bytes = reply(&good_pdu(&r, base));
            bytes[4..6].copy_from_slice(&1000u16.to_be_bytes());
            s.write_all(&bytes).is_ok()
        }
        Fault::ShortReply => {
            let mut pdu = good_pdu(&r, base);
            let short = if r.function >= 3 { 2 } else { 1 };
            pdu.truncate(pdu.len() - short);
            pdu[1] -= short as u8;
            s.write_all(&reply(&pdu)).is_ok()
        }
        Fault::WrongFunction => {
            let mut pdu = good_pdu(&r, base);
            pdu[0] = if r.function == 3 { 4 } else { 3 };
            s.write_all(&reply(&pdu)).is_ok()
        }
        Fault::WrongTid => {
            let bytes = wrap(framing, r.tid ^ 0x8000, r.unit, &good_pdu(&r, base));
            s.write_all(&bytes).is_ok()
        }
        Fault::ChatterAfterReply => {
            if !send(s, &reply(&good_pdu(&r, base))) {
                return false;
            }
            let _ = s.flush();
            // Apart from the reply, so the client has taken the reply in
            // before the stray byte arrives.
            thread::sleep(Duration::from_millis(30));
            s.write_all(&[0xAB]).is_ok()
        }
        Fault::Reverse(n) => {
            held.push(r);
            if held.len() < n {
                return true;
            }
            held.drain(..).rev().all(|h| {
                let bytes = wrap(framing, h.tid, h.unit, &good_pdu(&h, base));
                send(s, &bytes)
            })
        }
    }
}

// ---------------------------------------------------------------------------
// The link against it, at the library level
// ---------------------------------------------------------------------------

const MS: Duration = Duration::from_millis(1);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Spawn a link to `server`; call inside the runtime.
fn spawn_link(
    server: &Server,
    framing: Framing,
    timeout: Duration,
    max_in_flight: usize,
) -> (Link, CancellationToken) {
    let stop = CancellationToken::new();
    let link = Link::spawn(
        LinkConfig {
            name: "faulty".into(),
            address: server.addr.to_string(),
            framing,
            timeout,
            max_in_flight,
        },
        stop.clone(),
    );
    (link, stop)
}

fn req(function: ReadFn, start: u16, count: u16) -> ReadRequest {
    ReadRequest {
        unit: 1,
        function,
        start,
        count,
    }
}

fn hr(start: u16, count: u16) -> ReadRequest {
    req(ReadFn::HoldingRegisters, start, count)
}

/// What the server holds for `r` with registers at `base + address`.
fn expected(base: u16, r: &ReadRequest) -> ReadData {
    let addrs = (0..r.count).map(|i| r.start + i);
    if r.function.is_bits() {
        ReadData::Bits(addrs.map(bit).collect())
    } else {
        ReadData::Words(addrs.map(|a| word(base, a)).collect())
    }
}

/// Wait (bounded) until `cond` holds, polling.
async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = twin::wallclock::monotonic();
    while !cond() {
        assert!(
            twin::wallclock::since(t0) < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(10 * MS).await;
    }
}

/// Read until the link answers with data (bounded); returns the data and
/// every error seen before it.
async fn read_until_ok(
    link: &Link,
    r: ReadRequest,
    timeout: Duration,
) -> (ReadData, Vec<LinkError>) {
    let t0 = twin::wallclock::monotonic();
    let mut errors = Vec::new();
    loop {
        match link.read(r).await {
            Ok(Ok(data)) => return (data, errors),
            Ok(Err(exc)) => panic!("recovering read refused with {exc:?}"),
            Err(e) => errors.push(e),
        }
        assert!(
            twin::wallclock::since(t0) < timeout,
            "link did not recover within {timeout:?}; errors: {errors:?}"
        );
        tokio::time::sleep(50 * MS).await;
    }
}

#[test]
fn late_reply_is_discarded_by_transaction_id_not_taken_for_the_next_answer() {
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        // The device answers in order, so the late reply arrives while the
        // next request is in flight: timeout T, reply after 1.5 T.
        let (link, stop) = spawn_link(&server, Framing::Tcp, 1_000 * MS, 1);
        assert_eq!(link.read(hr(0, 2)).await, Ok(Ok(expected(1000, &hr(0, 2)))));
        for (late, next) in [(100, 200), (300, 400)] {
            server.set(Fault::Late(1_500 * MS));
            let sent = server.replies();
            assert_eq!(link.read(hr(late, 2)).await, Err(LinkError::Timeout));
            server.set(Fault::None);
            assert_eq!(server.replies(), sent, "the late reply is still to come");
            // Same function and length as the late reply, other values: a
            // link that took the late reply would return 1000 + late.
            assert_eq!(
                link.read(hr(next, 2)).await,
                Ok(Ok(expected(1000, &hr(next, 2)))),
                "read of {next} must get its own reply, not the late one for {late}"
            );
            assert_eq!(server.replies(), sent + 2, "late reply, then the next");
        }
        // The late replies were recognised by transaction id: no reconnect.
        assert_eq!(server.connections(), 1);
        stop.cancel();
    });
    assert_eq!(server.malformed(), 0);
}

#[test]
fn three_unanswered_requests_in_a_row_reconnect() {
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::Tcp, 200 * MS, 1);
        assert!(matches!(link.read(hr(0, 1)).await, Ok(Ok(_))));
        // Replies under transaction ids that were never sent: discarded, and
        // each request times out.
        server.set(Fault::WrongTid);
        for start in [1, 2] {
            assert_eq!(link.read(hr(start, 1)).await, Err(LinkError::Timeout));
        }
        assert_eq!(server.connections(), 1, "two timeouts keep the connection");
        assert_eq!(link.read(hr(3, 1)).await, Err(LinkError::Timeout));
        server.set(Fault::None);
        let (data, _) = read_until_ok(&link, hr(4, 1), 10_000 * MS).await;
        assert_eq!(data, expected(1000, &hr(4, 1)));
        assert_eq!(
            server.connections(),
            2,
            "the third timeout in a row presumes the connection half-open"
        );
        stop.cancel();
    });
    assert_eq!(server.malformed(), 0);
}

#[test]
fn rtu_over_tcp_reconnects_after_a_timeout_so_a_late_reply_cannot_land() {
    let server = Server::start(Framing::RtuOverTcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::RtuOverTcp, 1_000 * MS, 4);
        assert_eq!(link.read(hr(0, 2)).await, Ok(Ok(expected(1000, &hr(0, 2)))));
        server.set(Fault::Late(1_500 * MS));
        assert_eq!(link.read(hr(100, 2)).await, Err(LinkError::Timeout));
        server.set(Fault::None);
        // Without transaction ids only a fresh connection keeps the late
        // reply (same unit, function and length) from answering this one.
        let (data, _) = read_until_ok(&link, hr(200, 2), 10_000 * MS).await;
        assert_eq!(data, expected(1000, &hr(200, 2)));
        assert_eq!(server.connections(), 2);
        until("late reply sent", 10_000 * MS, || server.replies() >= 3).await;
        // One request at a time, whatever max_in_flight says.
        let many: Vec<_> = (0..4).map(|i| hr(10 * i, 1)).collect();
        let got = join_all(many.iter().map(|r| link.read(*r))).await;
        for (r, g) in many.iter().zip(got) {
            assert_eq!(g, Ok(Ok(expected(1000, r))));
        }
        assert_eq!(server.max_outstanding(), 1);
        assert_eq!(server.connections(), 2);
        stop.cancel();
    });
    assert_eq!(server.malformed(), 0);
}

#[test]
fn pipelined_replies_out_of_order_each_reach_their_request() {
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::Tcp, 5_000 * MS, 4);
        // The server answers only once all four are in, newest first: the
        // link must have them in flight together and match by transaction id.
        server.set(Fault::Reverse(4));
        for batch in [
            vec![hr(100, 2), hr(200, 2), hr(300, 2), hr(400, 2)],
            vec![
                req(ReadFn::Coils, 5, 10),
                req(ReadFn::DiscreteInputs, 40, 3),
                req(ReadFn::InputRegisters, 7, 3),
                hr(500, 1),
            ],
        ] {
            let got = join_all(batch.iter().map(|r| link.read(*r))).await;
            for (r, g) in batch.iter().zip(got) {
                assert_eq!(g, Ok(Ok(expected(1000, r))), "{r:?}");
            }
        }
        stop.cancel();

        // max_in_flight caps the pipeline.
        let server = Server::start(Framing::Tcp);
        let (link, stop) = spawn_link(&server, Framing::Tcp, 5_000 * MS, 2);
        server.set(Fault::Reverse(2));
        let batch: Vec<_> = (0..6).map(|i| hr(100 * i, 3)).collect();
        let got = join_all(batch.iter().map(|r| link.read(*r))).await;
        for (r, g) in batch.iter().zip(got) {
            assert_eq!(g, Ok(Ok(expected(1000, r))), "{r:?}");
        }
        assert_eq!(server.max_outstanding(), 2);
        assert_eq!(server.connections(), 1);
        stop.cancel();
    });
    assert_eq!(server.malformed(), 0);
}

#[test]
fn every_exception_code_is_a_refusal_with_its_reason_and_keeps_the_connection() {
    // The reasons are the documented reason codes (docs/events.md).
    const CODES: [(u8, &str); 11] = [
        (0x01, "illegal_function"),
        (0x02, "illegal_data_address"),
        (0x03, "illegal_data_value"),
        (0x04, "server_device_failure"),
        (0x05, "acknowledge"),
        (0x06, "server_device_busy"),
        (0x07, "negative_acknowledge"),
        (0x08, "memory_parity_error"),
        (0x0A, "gateway_path_unavailable"),
        (0x0B, "gateway_target_device_failed_to_respond"),
        (0x0C, "unknown_exception"),
    ];
    let functions = [
        ReadFn::Coils,
        ReadFn::DiscreteInputs,
        ReadFn::HoldingRegisters,
        ReadFn::InputRegisters,
    ];
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::Tcp, 1_000 * MS, 1);
        for (i, (code, reason)) in CODES.into_iter().enumerate() {
            let r = req(functions[i % 4], 7, 2);
            server.set(Fault::Exception(code));
            let got = link.read(r).await;
            assert_eq!(got, Ok(Err(Exception(code))), "{r:?}");
            assert_eq!(Exception(code).reason(), reason);
            // A refusal of one read leaves the others alone.
            server.set(Fault::None);
            assert_eq!(link.read(hr(9, 1)).await, Ok(Ok(expected(1000, &hr(9, 1)))));
        }
        assert_eq!(server.connections(), 1, "a refusal never drops the link");
        stop.cancel();
    });
    assert_eq!(server.malformed(), 0);
}

/// Each fault fails the request in flight with `want`'s reason, the link
/// drops the connection, and a later request on a fresh connection succeeds.
fn fault_then_recover(faults: &[(Fault, &str)]) {
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::Tcp, 1_000 * MS, 4);
        assert!(matches!(link.read(hr(0, 1)).await, Ok(Ok(_))));
        for (n, &(fault, reason)) in faults.iter().enumerate() {
            let before = server.connections();
            server.set(fault);
            let err = link
                .read(hr(20, 4))
                .await
                .expect_err(&format!("{fault:?} must fail the read"));
            assert_eq!(err.reason(), reason, "{fault:?}: {err:?}");
            match reason {
                "invalid_response" => assert!(matches!(err, LinkError::Protocol(_)), "{err:?}"),
                _ => assert!(matches!(err, LinkError::Lost(_)), "{err:?}"),
            }
            server.set(Fault::None);
            let base = 3000 + 100 * n as u16;
            server.set_base(base);
            let (data, errors) = read_until_ok(&link, hr(30, 4), 10_000 * MS).await;
            assert_eq!(data, expected(base, &hr(30, 4)), "after {fault:?}");
            // While the link waits to reconnect, the reason stays the one
            // that took it down.
            for e in &errors {
                assert_eq!(e.reason(), reason, "after {fault:?}: {errors:?}");
            }
            assert_eq!(
                server.connections(),
                before + 1,
                "{fault:?}: exactly one reconnect"
            );
        }
        stop.cancel();
    });
    assert_eq!(server.malformed(), 0);
}

#[test]
fn connection_dropped_mid_reply_is_lost_and_the_link_reconnects() {
    fault_then_recover(&[
        (Fault::DropAfter(3), "connection_lost"),
        (Fault::DropAfter(10), "connection_lost"),
    ]);
}

#[test]
fn garbage_replies_are_invalid_and_the_link_reconnects() {
    fault_then_recover(&[
        (Fault::Garbage, "invalid_response"),
        (Fault::ProtocolId, "invalid_response"),
        (Fault::BadLength, "invalid_response"),
    ]);
}

#[test]
fn replies_that_do_not_fit_the_request_are_invalid_and_the_link_reconnects() {
    fault_then_recover(&[
        (Fault::ShortReply, "invalid_response"),
        (Fault::WrongFunction, "invalid_response"),
    ]);
}

#[test]
fn a_device_that_keeps_sending_garbage_is_reconnected_with_backoff() {
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::Tcp, 1_000 * MS, 1);
        assert!(matches!(link.read(hr(0, 1)).await, Ok(Ok(_))));
        server.set(Fault::Garbage);
        // Poll fast for a while; a reconnect per poll would be ~50 here.
        let t0 = twin::wallclock::monotonic();
        let mut reads = 0;
        while twin::wallclock::since(t0) < 2_500 * MS {
            let got = link.read(hr(0, 1)).await;
            assert_eq!(
                got.as_ref().map_err(LinkError::reason),
                Err(Reason::InvalidResponse)
            );
            reads += 1;
            tokio::time::sleep(50 * MS).await;
        }
        // Backoff 1 s then 2 s (±20 %): at most the first connection plus two.
        assert!(
            server.connections() <= 3,
            "{} connections for {reads} reads in 2.5 s of garbage",
            server.connections()
        );
        stop.cancel();
    });
}

/// A device that answers every request and then sends a stray byte: each
/// connection gives good replies before it has to be dropped. The backoff
/// must still grow (it used to be reset by each connection's first reply,
/// so the link reconnected every second for ever, the tags flapping and a
/// warning logged each time).
#[test]
fn r_hostile_a_device_that_answers_then_chatters_is_backed_off_too() {
    let server = Server::start(Framing::Tcp);
    runtime().block_on(async {
        let (link, stop) = spawn_link(&server, Framing::Tcp, 1_000 * MS, 1);
        assert!(matches!(link.read(hr(0, 1)).await, Ok(Ok(_))));
        server.set(Fault::ChatterAfterReply);
        let t0 = twin::wallclock::monotonic();
        let (mut good, mut reads) = (0, 0);
        while twin::wallclock::since(t0) < 6_000 * MS {
            match link.read(hr(0, 1)).await {
                Ok(Ok(data)) => {
                    assert_eq!(data, expected(1000, &hr(0, 1)));
                    good += 1;
                }
                Ok(Err(exc)) => panic!("refused with {exc:?}"),
                Err(e) => assert_eq!(e.reason(), Reason::InvalidResponse, "{e:?}"),
            }
            reads += 1;
            tokio::time::sleep(50 * MS).await;
        }
        assert!(good >= 1, "the device's good replies still come through");
        // Drops at about 0 s, 1 s and 3 s (backoff 1 s, 2 s, 4 s, ±20 %):
        // at most 4 connections in 6 s; one per second would be 7.
        assert!(
            server.connections() <= 4,
            "{} connections for {reads} reads in 6 s of a chattering device",
            server.connections()
        );
        stop.cancel();
    });
}

// ---------------------------------------------------------------------------
// The running twin against it
// ---------------------------------------------------------------------------

const CFG: &str = "tests/configs/modbus-faults.toml";
const TAGS: [&str; 3] = ["plc.level", "plc.flow", "plc.running"];

/// Wait (bounded) until an event since line `from` satisfies `pred`;
/// returns the line count at that point, to start the next phase from.
fn wait_event(
    run: &Proc,
    from: usize,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> usize {
    let mut end = 0;
    let ok = run.wait_for(Duration::from_secs(15), |lines| {
        end = lines.len();
        events(&lines[from..]).iter().any(&pred)
    });
    assert!(ok, "{what}: not seen within 15 s\n{}", run.stderr());
    end
}

fn is(e: &serde_json::Value, tag: &str, quality: &str) -> bool {
    e["type"] == "tag" && e["tag"] == tag && e["quality"] == quality
}

fn good_at(e: &serde_json::Value, tag: &str, value: f64) -> bool {
    is(e, tag, "good") && e["value"] == value
}

/// The latest event of every tag is good, with the values for `base`. The
/// values are new with each base, so they prove fresh replies.
fn all_good(lines: &[String], base: u16) -> bool {
    let ev = events(lines);
    let last = |t| tag_events(&ev, t).last().map(|e| (*e).clone());
    last("plc.level").is_some_and(|e| good_at(&e, "plc.level", f64::from(base)))
        && last("plc.flow").is_some_and(|e| good_at(&e, "plc.flow", f64::from(base + 10)))
        && last("plc.running").is_some_and(|e| is(&e, "plc.running", "good"))
}

/// Tag events between two line marks.
fn window(run: &Proc, from: usize, to: usize) -> Vec<serde_json::Value> {
    events(&run.lines()[from..to])
}

#[test]
fn twin_reports_each_fault_as_quality_and_recovers() {
    let server = Server::start(Framing::Tcp);
    let mut cmd = twin();
    cmd.args(["run", CFG, "--events", "-", "--for", "120s"])
        .arg("--modbus")
        .arg(format!("plc={}", server.addr));
    let mut run = Proc::spawn(cmd);

    assert!(
        run.wait_for(Duration::from_secs(20), |l| all_good(l, 1000)),
        "tags never became good:\n{}",
        run.stderr()
    );
    let running = events(&run.lines());
    let running = tag_events(&running, "plc.running");
    assert_eq!(
        running.last().map(|e| e["value"].clone()),
        Some(true.into())
    );

    // Each phase: a fault, the quality it must produce on the tags it hits,
    // then back to normal with new values that must come through.
    struct Phase {
        fault: Fault,
        only: Option<u8>,
        reason: &'static str,
        hits: &'static [&'static str],
    }
    let phases = [
        Phase {
            fault: Fault::Exception(0x02),
            only: Some(3),
            reason: "illegal_data_address",
            hits: &["plc.level"],
        },
        Phase {
            fault: Fault::Exception(0x0B),
            only: None,
            reason: "gateway_target_device_failed_to_respond",
            hits: &TAGS,
        },
        Phase {
            fault: Fault::Late(600 * MS),
            only: None,
            reason: "timeout",
            hits: &TAGS,
        },
        Phase {
            fault: Fault::Garbage,
            only: None,
            reason: "invalid_response",
            hits: &TAGS,
        },
        Phase {
            fault: Fault::DropAfter(5),
            only: None,
            reason: "connection_lost",
            hits: &TAGS,
        },
    ];
    let mut mark = run.lines().len();
    for (n, p) in phases.iter().enumerate() {
        match p.only {
            Some(f) => server.set_only(f, p.fault),
            None => server.set(p.fault),
        }
        let mut seen = mark;
        for tag in p.hits {
            seen = seen.max(wait_event(
                &run,
                mark,
                &format!("{:?}: {tag} bad", p.fault),
                |e| is(e, tag, "bad"),
            ));
        }
        // Every bad event of the phase names the fault; bad carries no value.
        let ev = window(&run, mark, seen);
        for e in ev.iter().filter(|e| e["quality"] == "bad") {
            assert_eq!(e["reason"], p.reason, "{:?}: {e}", p.fault);
            assert!(e["value"].is_null(), "{e}");
        }
        // Tags the fault does not hit keep their good values.
        for tag in TAGS.iter().filter(|t| !p.hits.contains(t)) {
            assert!(
                tag_events(&ev, tag).iter().all(|e| e["quality"] == "good"),
                "{:?} must not affect {tag}: {ev:?}",
                p.fault
            );
        }
        assert!(
            run.is_running(),
            "twin died on {:?}:\n{}",
            p.fault,
            run.stderr()
        );

        let base = 2000 + 1000 * n as u16;
        server.set_base(base);
        server.set(Fault::None);
        let t0 = twin::wallclock::monotonic();
        assert!(
            run.wait_for(Duration::from_secs(20), |l| all_good(l, base)),
            "no recovery after {:?}:\n{}",
            p.fault,
            run.stderr()
        );
        eprintln!(
            "{:?}: recovered {:?} after the fault cleared",
            p.fault,
            twin::wallclock::since(t0)
        );
        mark = run.lines().len();
    }

    // Values only ever come from a reply to their own request.
    let ev = events(&run.lines());
    for e in ev.iter().filter(|e| e["quality"] == "good") {
        let v = e["value"].as_f64().unwrap_or(f64::NAN);
        match e["tag"].as_str() {
            Some("plc.level") => assert!(v % 1000.0 == 0.0, "{e}"),
            Some("plc.flow") => assert!(v % 1000.0 == 10.0, "{e}"),
            _ => assert_eq!(e["value"], true, "{e}"),
        }
    }
    assert!(run.is_running(), "{}", run.stderr());
    run.terminate();
    assert_eq!(
        run.wait(Duration::from_secs(10)),
        Some(0),
        "clean exit:\n{}",
        run.stderr()
    );
}

/// A TCP server that accepts every connection, reads what it is sent and
/// never answers; it records when each connection came.
struct Silent {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let a = accepted.clone();
        // Detached: the accept loop ends with the test process.
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                a.lock().expect("lock").push(twin::wallclock::monotonic());
                thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        Silent { addr, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().expect("lock").len()
    }
}

#[test]
fn r9_a_server_that_accepts_and_never_answers_is_reconnected_with_backoff() {
    let server = Silent::start();
    runtime().block_on(async {
        let stop = CancellationToken::new();
        let link = Link::spawn(
            LinkConfig {
                name: "silent".into(),
                address: server.addr.to_string(),
                framing: Framing::Tcp,
                timeout: 100 * MS,
                max_in_flight: 1,
            },
            stop.clone(),
        );
        // Poll fast. Reconnecting after every three timeouts, as a link
        // that trusts a successful connect does, would make about one
        // connection per 0.3 s here: ~8 by the first mark, ~24 by the second.
        let t0 = twin::wallclock::monotonic();
        let mut early = None;
        while twin::wallclock::since(t0) < 7_500 * MS {
            let got = link.read(hr(0, 1)).await;
            assert!(got.is_err(), "a silent server gave {got:?}");
            if early.is_none() && twin::wallclock::since(t0) >= 2_500 * MS {
                early = Some(server.connections());
            }
            tokio::time::sleep(20 * MS).await;
        }
        let early = early.expect("first mark reached");
        let late = server.connections();
        // Backoff 1, 2, 4 s (±20 %) after each silent connection: at most
        // 0, ~1.3, ~3.6 and ~7 s.
        assert!(early <= 3, "{early} connections in the first 2.5 s");
        assert!(late <= 5, "{late} connections in 7.5 s");
        assert!(late >= 2, "the link did try again: {late}");
        let times = server.accepted.lock().expect("lock").clone();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[1] > g[0]),
            "attempts spaced increasingly: {gaps:?}"
        );
        stop.cancel();
    });
}

#[test]
fn r9_each_timed_out_read_is_stamped_at_its_own_timeout() {
    // One read in flight and a device that never answers in time: a poll's
    // three reads (one per table) time out one after another, 1 s each.
    let server = Server::start(Framing::Tcp);
    server.set(Fault::Late(Duration::from_secs(5)));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("serial.toml");
    std::fs::write(
        &cfg,
        r#"
[plant]
name = "serial timeouts"
tick = "50ms"
stale_after = "10s"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
unit_id = 1
poll_interval = "100ms"
timeout = "1s"
max_in_flight = 1
registers = [
  { tag = "plc.level", table = "holding", address = 0, type = "u16" },
  { tag = "plc.flow", table = "input", address = 10, type = "u16" },
  { tag = "plc.running", table = "coil", address = 3 },
]
"#,
    )
    .expect("write config");
    let mut cmd = twin();
    cmd.arg("run")
        .arg(&cfg)
        .args(["--events", "-", "--for", "30s"])
        .arg("--modbus")
        .arg(format!("plc={}", server.addr));
    let run = Proc::spawn(cmd);
    for tag in TAGS {
        wait_event(&run, 0, &format!("{tag} bad"), |e| {
            is(e, tag, "bad") && e["reason"] == "timeout"
        });
    }
    let ev = events(&run.lines());
    let first_tick = t_ms(ev.first().expect("events"));
    let src_ms = |e: &serde_json::Value| {
        humantime::parse_rfc3339(e["src_t"].as_str().expect("src_t"))
            .expect("rfc3339")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch")
            .as_millis() as i64
    };
    // Each tag's first timeout: (source time, tick it was applied on).
    let mut bad: Vec<(i64, i64)> = TAGS
        .iter()
        .map(|tag| {
            let e = tag_events(&ev, tag)
                .into_iter()
                .find(|e| e["reason"] == "timeout")
                .expect("a timeout event");
            (src_ms(e), t_ms(e))
        })
        .collect();
    bad.sort();
    let (first_src, _) = bad[0];
    // The first read failed one timeout into the run, and says so; stamped at
    // the poll's end it would read three timeouts.
    assert!(
        first_src - first_tick < 2_000,
        "first timeout stamped {} ms after the first tick: {bad:?}",
        first_src - first_tick
    );
    // Each failure at its own time: the three lie two timeouts apart, not
    // all at one instant.
    assert!(
        bad[2].0 - bad[0].0 >= 1_500,
        "timeouts not stamped one by one: {bad:?}"
    );
    // And each reached the core when it was seen, not when the poll ended.
    for (src, t) in &bad {
        assert!(
            t - src < 1_000,
            "applied {} ms after it was seen: {bad:?}",
            t - src
        );
    }
}
