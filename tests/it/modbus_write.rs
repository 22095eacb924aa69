//! Modbus write-back over real Modbus TCP: the link's write path and
//! [`ModbusWriter`] against a tokio-modbus server started in the test (which
//! keeps the requests it saw, in order, and can refuse, ignore or not answer
//! writes), and against pymodbus, an independent implementation.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;
use twin::config::guard::ModbusTarget;
use twin::config::{DataType, RegisterTable, WordOrder};
use twin::sources::modbus::frame::{Exception, ReadData, ReadFn, ReadRequest};
use twin::sources::modbus::link::{Framing, Link, LinkConfig, LinkError};
use twin::sources::modbus::writer::{ModbusWriter, NotSent, ReadbackOutcome, Unsure, WriteOutcome};
use twin::twin::Reason;

const UNIT: u8 = 1;

/// How the server treats writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Store them and echo.
    Store,
    /// Answer with this exception; store nothing.
    Refuse(u8),
    /// Echo as if stored, store nothing (a PLC in local mode that ignores
    /// remote setpoints).
    Ignore,
    /// Never answer (and store nothing).
    Silent,
    /// Store, but echo a different value: a reply that is not the echo.
    WrongEcho,
}

/// A request as the server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Read(u16),
    Write(u16),
}

struct State {
    writes: Writes,
    words: HashMap<u16, u16>,
    coils: HashMap<u16, bool>,
    seen: Vec<Seen>,
    /// Hold the next read until notified.
    hold_next_read: Option<Arc<Notify>>,
}

#[derive(Clone)]
struct TestService {
    state: Arc<Mutex<State>>,
}

type Reply = Result<Option<Response>, ExceptionCode>;

impl TestService {
    fn answer(&self, req: Request<'static>) -> (Option<Arc<Notify>>, Reply) {
        let mut s = self.state.lock().expect("not poisoned");
        let words = |s: &State, a: u16, n: u16| -> Vec<u16> {
            (a..a + n)
                .map(|i| s.words.get(&i).copied().unwrap_or(0))
                .collect()
        };
        match req {
            Request::ReadHoldingRegisters(a, n) => {
                s.seen.push(Seen::Read(a));
                let hold = s.hold_next_read.take();
                (
                    hold,
                    Ok(Some(Response::ReadHoldingRegisters(words(&s, a, n)))),
                )
            }
            Request::ReadCoils(a, n) => {
                s.seen.push(Seen::Read(a));
                let bits = (a..a + n)
                    .map(|i| s.coils.get(&i).copied().unwrap_or(false))
                    .collect();
                (None, Ok(Some(Response::ReadCoils(bits))))
            }
            write => {
                let (a, values, bits, echo) = match &write {
                    Request::WriteSingleRegister(a, v) => {
                        (*a, vec![*v], vec![], Response::WriteSingleRegister(*a, *v))
                    }
                    Request::WriteMultipleRegisters(a, vs) => (
                        *a,
                        vs.to_vec(),
                        vec![],
                        Response::WriteMultipleRegisters(*a, vs.len() as u16),
                    ),
                    Request::WriteSingleCoil(a, v) => {
                        (*a, vec![], vec![*v], Response::WriteSingleCoil(*a, *v))
                    }
                    Request::WriteMultipleCoils(a, vs) => (
                        *a,
                        vec![],
                        vs.to_vec(),
                        Response::WriteMultipleCoils(*a, vs.len() as u16),
                    ),
                    _ => return (None, Err(ExceptionCode::IllegalFunction)),
                };
                s.seen.push(Seen::Write(a));
                let store = |s: &mut State| {
                    for (i, v) in values.iter().enumerate() {
                        s.words.insert(a + i as u16, *v);
                    }
                    for (i, v) in bits.iter().enumerate() {
                        s.coils.insert(a + i as u16, *v);
                    }
                };
                let reply = match s.writes {
                    Writes::Store => {
                        store(&mut s);
                        Ok(Some(echo))
                    }
                    Writes::Refuse(code) => Err(ExceptionCode::new(code)),
                    Writes::Ignore => Ok(Some(echo)),
                    Writes::Silent => Ok(None),
                    Writes::WrongEcho => {
                        store(&mut s);
                        Ok(Some(match echo {
                            Response::WriteSingleRegister(a, v) => {
                                Response::WriteSingleRegister(a, v.wrapping_add(1))
                            }
                            Response::WriteMultipleRegisters(a, n) => {
                                Response::WriteMultipleRegisters(a, n + 1)
                            }
                            other => other,
                        }))
                    }
                };
                (None, reply)
            }
        }
    }
}

impl Service for TestService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let (hold, reply) = self.answer(req.request);
        Box::pin(async move {
            if let Some(gate) = hold {
                gate.notified().await;
            }
            reply
        })
    }
}

struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TestServer {
    async fn start(writes: Writes, stop: &CancellationToken) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State {
            writes,
            words: HashMap::from([(10, 111), (11, 0), (12, 0)]),
            coils: HashMap::new(),
            seen: Vec::new(),
            hold_next_read: None,
        }));
        let service = TestService {
            state: state.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, peer| {
                let service = service.clone();
                async move { accept_tcp_connection(stream, peer, move |_| Ok(Some(service.clone()))) }
            };
            let _ = server
                .serve_until(&on_connected, |_| {}, async move { stop.cancelled().await })
                .await;
        });
        TestServer { addr, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("not poisoned").seen.clone()
    }

    fn writes_seen(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Write(_)))
            .count()
    }

    fn word(&self, a: u16) -> Option<u16> {
        self.state
            .lock()
            .expect("not poisoned")
            .words
            .get(&a)
            .copied()
    }
}

fn spawn_link(addr: &str, timeout: Duration, stop: &CancellationToken) -> Link {
    Link::spawn(
        LinkConfig {
            name: "plc".into(),
            address: addr.into(),
            framing: Framing::Tcp,
            timeout,
            max_in_flight: 1,
        },
        stop.clone(),
    )
}

fn hr(start: u16, count: u16) -> ReadRequest {
    ReadRequest {
        unit: UNIT,
        function: ReadFn::HoldingRegisters,
        start,
        count,
    }
}

fn target(table: RegisterTable, address: u16, data_type: DataType) -> ModbusTarget {
    ModbusTarget {
        device: 0,
        table,
        address,
        data_type,
        bit: None,
        order: WordOrder::Abcd,
        scale: 1.0,
        offset: 0.0,
        own_register: true,
    }
}

/// A writer on `link` that may write `targets`.
fn writer(link: &Link, unit: u8, targets: &[&ModbusTarget]) -> ModbusWriter {
    let mut w = ModbusWriter::new();
    w.add_device(0, "plc", unit, link.clone());
    for t in targets {
        w.allow(t.device, t.table, t.address, t.width());
    }
    w
}

/// Poll `cond` until it holds; a test that waits forever is a failure, so
/// give up after a generous bound.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Connect the link the way the poller does: by reading.
async fn connect(link: &Link) {
    assert!(matches!(link.read(hr(10, 1)).await, Ok(Ok(_))));
}

#[tokio::test]
async fn writes_each_type_and_reads_it_back() {
    let stop = CancellationToken::new();
    let server = TestServer::start(Writes::Store, &stop).await;
    let link = spawn_link(&server.addr.to_string(), Duration::from_secs(5), &stop);
    let mut speed = target(RegisterTable::Holding, 10, DataType::U16);
    speed.scale = 0.1;
    let mut f32t = target(RegisterTable::Holding, 11, DataType::F32);
    f32t.order = WordOrder::Cdab;
    let coil = target(RegisterTable::Coil, 5, DataType::Bool);
    let w = writer(&link, UNIT, &[&speed, &f32t, &coil]);
    connect(&link).await;

    // FC6, reverse-scaled: 53.8 at scale 0.1 is 538.
    match w.write(&speed, 53.8).await {
        WriteOutcome::Written { raw, value, .. } => {
            assert_eq!(raw, vec![538]);
            assert_eq!(value, 53.8);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.word(10), Some(538));
    let back = w
        .read_back(&speed, 53.8, Duration::from_secs(5), 0.05)
        .await;
    assert_eq!(back, ReadbackOutcome::Ok { read: 53.8 });

    // FC16, word-swapped f32.
    assert!(matches!(
        w.write(&f32t, -21.5).await,
        WriteOutcome::Written { .. }
    ));
    let bits = (-21.5f32).to_bits();
    assert_eq!(server.word(11), Some(bits as u16));
    assert_eq!(server.word(12), Some((bits >> 16) as u16));
    let back = w
        .read_back(&f32t, -21.5, Duration::from_secs(5), 1e-6)
        .await;
    assert_eq!(back, ReadbackOutcome::Ok { read: -21.5 });

    // FC5.
    assert!(matches!(
        w.write(&coil, 1.0).await,
        WriteOutcome::Written { .. }
    ));
    let back = w.read_back(&coil, 1.0, Duration::from_secs(5), 0.0).await;
    assert_eq!(back, ReadbackOutcome::Ok { read: 1.0 });
    assert_eq!(server.writes_seen(), 3);
    stop.cancel();
}

#[tokio::test]
async fn an_exception_is_a_refusal_with_the_exception_named() {
    for (code, reason) in [
        (2u8, Reason::IllegalDataAddress),
        (3, Reason::IllegalDataValue),
        (4, Reason::ServerDeviceFailure),
    ] {
        let stop = CancellationToken::new();
        let server = TestServer::start(Writes::Refuse(code), &stop).await;
        let link = spawn_link(&server.addr.to_string(), Duration::from_secs(5), &stop);
        let t = target(RegisterTable::Holding, 10, DataType::U16);
        let w = writer(&link, UNIT, &[&t]);
        connect(&link).await;
        match w.write(&t, 7.0).await {
            WriteOutcome::Refused { exception } => {
                assert_eq!(exception, Exception(code));
                assert_eq!(exception.reason(), reason);
                assert!(exception.to_string().contains(reason.as_str()));
            }
            other => panic!("exception {code}: {other:?}"),
        }
        // A refusal is the device's answer, not a transport failure: the
        // link stays up and the register is unchanged.
        assert_eq!(
            link.read(hr(10, 1)).await,
            Ok(Ok(ReadData::Words(vec![111])))
        );
        assert_eq!(server.writes_seen(), 1);
        stop.cancel();
    }
}

#[tokio::test]
async fn a_write_that_is_acknowledged_but_not_applied_fails_read_back() {
    let stop = CancellationToken::new();
    let server = TestServer::start(Writes::Ignore, &stop).await;
    let link = spawn_link(&server.addr.to_string(), Duration::from_secs(5), &stop);
    let t = target(RegisterTable::Holding, 10, DataType::U16);
    let w = writer(&link, UNIT, &[&t]);
    connect(&link).await;
    let WriteOutcome::Written { value, .. } = w.write(&t, 222.0).await else {
        panic!("the server acknowledges");
    };
    let back = w.read_back(&t, value, Duration::from_secs(5), 0.5).await;
    assert_eq!(
        back,
        ReadbackOutcome::Mismatch {
            read: 111.0,
            expected: 222.0
        }
    );
    stop.cancel();
}

#[tokio::test]
async fn a_reply_that_does_not_echo_the_write_is_not_a_success() {
    let stop = CancellationToken::new();
    let server = TestServer::start(Writes::WrongEcho, &stop).await;
    let one = target(RegisterTable::Holding, 10, DataType::U16);
    let two = target(RegisterTable::Holding, 11, DataType::U32);
    for t in [&one, &two] {
        // A link each: the bad reply takes the connection down.
        let link = spawn_link(&server.addr.to_string(), Duration::from_secs(5), &stop);
        let w = writer(&link, UNIT, &[t]);
        connect(&link).await;
        match w.write(t, 5.0).await {
            WriteOutcome::Unknown {
                why: Unsure::InvalidReply(detail),
            } => assert!(detail.contains("echoes"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.writes_seen(), 2);
    stop.cancel();
}

#[tokio::test]
async fn a_write_with_no_reply_is_unknown_and_never_retried() {
    let stop = CancellationToken::new();
    let server = TestServer::start(Writes::Silent, &stop).await;
    let link = spawn_link(&server.addr.to_string(), Duration::from_millis(300), &stop);
    let t = target(RegisterTable::Holding, 10, DataType::U16);
    let w = writer(&link, UNIT, &[&t]);
    connect(&link).await;
    assert_eq!(
        w.write(&t, 9.0).await,
        WriteOutcome::Unknown {
            why: Unsure::Timeout
        }
    );
    // Requests on a connection are served in order: once a later read is
    // answered, any retry of the write would have been seen before it.
    for _ in 0..3 {
        assert_eq!(
            link.read(hr(10, 1)).await,
            Ok(Ok(ReadData::Words(vec![111])))
        );
    }
    assert_eq!(server.writes_seen(), 1);
    assert_eq!(
        server.seen(),
        vec![
            Seen::Read(10),
            Seen::Write(10),
            Seen::Read(10),
            Seen::Read(10),
            Seen::Read(10)
        ]
    );
    stop.cancel();
}

#[tokio::test]
async fn a_write_on_a_link_that_is_down_is_not_sent() {
    // A port nothing listens on any more.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").to_string()
    };
    let stop = CancellationToken::new();
    let link = spawn_link(&addr, Duration::from_secs(5), &stop);
    let t = target(RegisterTable::Holding, 10, DataType::U16);
    let w = writer(&link, UNIT, &[&t]);
    let down = link.read(hr(10, 1)).await;
    assert!(
        matches!(
            down,
            Err(LinkError::Unreachable {
                reason: Reason::ConnectionRefused,
                ..
            })
        ),
        "{down:?}"
    );
    match w.write(&t, 1.0).await {
        WriteOutcome::NotSent {
            why: NotSent::Link { register, error },
        } => {
            assert_eq!(error, down.expect_err("down"));
            assert!(register.contains("device \"plc\" (unit 1) holding register 10"));
        }
        other => panic!("{other:?}"),
    }
    stop.cancel();
}

#[tokio::test]
async fn a_queued_write_is_dropped_not_carried_across_a_reconnect() {
    // RTU over TCP reconnects after any timeout. The device takes the read
    // and never answers; the write waits behind it (one in flight), and
    // when the read times out the connection goes, and the write with it,
    // unsent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let received = Arc::new(Mutex::new(Vec::<u8>::new()));
    let rx = received.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                rx.lock().expect("not poisoned").extend(&buf[..n]);
            }
        }
    });
    let stop = CancellationToken::new();
    let link = Link::spawn(
        LinkConfig {
            name: "gateway".into(),
            address: addr,
            framing: Framing::RtuOverTcp,
            timeout: Duration::from_millis(300),
            max_in_flight: 1,
        },
        stop.clone(),
    );
    let t = target(RegisterTable::Holding, 10, DataType::U16);
    let w = writer(&link, UNIT, &[&t]);
    let read = tokio::spawn({
        let link = link.clone();
        async move { link.read(hr(10, 1)).await }
    });
    until("the read to reach the device", || {
        received.lock().expect("not poisoned").len() == 8
    })
    .await;
    let write = tokio::spawn(async move { w.write(&t, 1.0).await });
    assert_eq!(read.await.expect("joined"), Err(LinkError::Timeout));
    match write.await.expect("joined") {
        WriteOutcome::NotSent {
            why: NotSent::Link { error, .. },
        } => assert_eq!(error, LinkError::Timeout),
        other => panic!("{other:?}"),
    }
    // Only the read's 8 bytes ever reached the device.
    assert_eq!(received.lock().expect("not poisoned").len(), 8);
    stop.cancel();
}

#[tokio::test]
async fn a_write_goes_out_before_queued_reads() {
    let stop = CancellationToken::new();
    let server = TestServer::start(Writes::Store, &stop).await;
    let link = spawn_link(&server.addr.to_string(), Duration::from_secs(30), &stop);
    let t = target(RegisterTable::Holding, 11, DataType::U16);
    let w = writer(&link, UNIT, &[&t]);
    connect(&link).await;
    let gate = Arc::new(Notify::new());
    server.state.lock().expect("not poisoned").hold_next_read = Some(gate.clone());

    // One read on the wire (held by the server), nine queued behind it.
    let reads: Vec<_> = (0..10)
        .map(|i| {
            let link = link.clone();
            tokio::spawn(async move { link.read(hr(20 + i, 1)).await })
        })
        .collect();
    until("one read in flight and nine queued", || {
        server.seen().len() == 2 && link.queued_reads() == 9
    })
    .await;
    let write = tokio::spawn(async move { w.write(&t, 42.0).await });
    until("the write to queue", || link.queued_writes() == 1).await;
    gate.notify_one();

    assert!(matches!(
        write.await.expect("joined"),
        WriteOutcome::Written { .. }
    ));
    for r in reads {
        assert!(matches!(r.await.expect("joined"), Ok(Ok(_))));
    }
    let seen = server.seen();
    // The held read was already on the wire and finished first; the write
    // went next, ahead of every read queued before it.
    assert!(matches!(seen[1], Seen::Read(_)), "{seen:?}");
    assert_eq!(seen[2], Seen::Write(11), "{seen:?}");
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert!(seen[3..].iter().all(|s| matches!(s, Seen::Read(_))));
    stop.cancel();
}

#[tokio::test]
async fn pymodbus_takes_a_register_and_a_coil_and_reads_them_back() {
    let (server, port) = crate::interop_pymodbus::start_server();
    let stop = CancellationToken::new();
    let link = spawn_link(&format!("127.0.0.1:{port}"), Duration::from_secs(5), &stop);
    // Unit 2 holds u16 4242 at 0, an f32 (CDAB) at 1..=2, coils 0 and 1.
    let u16t = target(RegisterTable::Holding, 0, DataType::U16);
    let mut f32t = target(RegisterTable::Holding, 1, DataType::F32);
    f32t.order = WordOrder::Cdab;
    f32t.scale = 0.5;
    let coil = target(RegisterTable::Coil, 0, DataType::Bool);
    let w = writer(&link, 2, &[&u16t, &f32t, &coil]);
    let read = link
        .read(ReadRequest {
            unit: 2,
            function: ReadFn::HoldingRegisters,
            start: 0,
            count: 1,
        })
        .await;
    assert_eq!(read, Ok(Ok(ReadData::Words(vec![4242]))));

    for (t, v) in [(&u16t, 1234.0), (&f32t, 37.25), (&coil, 1.0)] {
        let outcome = w.write(t, v).await;
        let WriteOutcome::Written { value, .. } = outcome else {
            panic!("{t:?}: {outcome:?}\n{}", server.stderr());
        };
        assert_eq!(value, v);
        let back = w.read_back(t, value, Duration::from_secs(5), 1e-9).await;
        assert_eq!(back, ReadbackOutcome::Ok { read: v }, "{t:?}");
    }
    // And a refusal from an independent server: no such register.
    let missing = target(RegisterTable::Holding, 9000, DataType::U16);
    let mut w = w;
    w.allow(0, RegisterTable::Holding, 9000, 1);
    match w.write(&missing, 1.0).await {
        WriteOutcome::Refused { exception } => {
            assert_eq!(exception.reason(), Reason::IllegalDataAddress)
        }
        other => panic!("{other:?}"),
    }
    stop.cancel();
}

/// An RTU-over-TCP device written byte by byte: answers FC6 with
/// exception 02 and echoes FC16, remembering every frame it received.
fn rtu_device(received: Arc<Mutex<Vec<Vec<u8>>>>) -> SocketAddr {
    use std::io::{Read, Write};
    use twin::sources::modbus::frame::crc16;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                return;
            }
            buf.extend(&chunk[..n]);
            // Reads (FC3) and FC6 are 8 bytes; FC16 is 9 + its byte count.
            let len = match buf.get(1) {
                Some(16) => match buf.get(6) {
                    Some(&k) => 9 + usize::from(k),
                    None => continue,
                },
                Some(_) => 8,
                None => continue,
            };
            if buf.len() < len {
                continue;
            }
            let req: Vec<u8> = buf.drain(..len).collect();
            received.lock().expect("not poisoned").push(req.clone());
            let mut reply = match req[1] {
                3 => {
                    let n = usize::from(req[5]);
                    let mut r = vec![req[0], 3, (2 * n) as u8];
                    r.extend(std::iter::repeat_n(0, 2 * n));
                    r
                }
                6 => vec![req[0], 0x86, 2],
                _ => req[..6].to_vec(),
            };
            let crc = crc16(&reply).to_le_bytes();
            reply.extend(crc);
            if s.write_all(&reply).is_err() {
                return;
            }
        }
    });
    addr
}

#[tokio::test]
async fn rtu_over_tcp_writes_are_framed_with_crc_and_answered() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let addr = rtu_device(received.clone());
    let stop = CancellationToken::new();
    let link = Link::spawn(
        LinkConfig {
            name: "serial-gw".into(),
            address: addr.to_string(),
            framing: Framing::RtuOverTcp,
            timeout: Duration::from_secs(5),
            max_in_flight: 1,
        },
        stop.clone(),
    );
    let u32t = target(RegisterTable::Holding, 0x10, DataType::U32);
    let u16t = target(RegisterTable::Holding, 0x20, DataType::U16);
    let w = writer(&link, 9, &[&u32t, &u16t]);
    assert!(matches!(
        link.read(ReadRequest {
            unit: 9,
            ..hr(0, 2)
        })
        .await,
        Ok(Ok(ReadData::Words(_)))
    ));
    match w.write(&u32t, 65536.0 * 3.0 + 4.0).await {
        WriteOutcome::Written { raw, .. } => assert_eq!(raw, vec![3, 4]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.write(&u16t, 1.0).await,
        WriteOutcome::Refused {
            exception: Exception(2)
        }
    );
    // The refusal kept the connection: the next write still goes through.
    assert!(matches!(
        w.write(&u32t, 1.0).await,
        WriteOutcome::Written { .. }
    ));
    let frames = received.lock().expect("not poisoned").clone();
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(&frames[1][..11], &[9, 16, 0, 0x10, 0, 2, 4, 0, 3, 0, 4]);
    assert_eq!(&frames[2][..6], &[9, 6, 0, 0x20, 0, 1]);
    stop.cancel();
}

#[tokio::test]
async fn the_config_decides_what_the_writer_may_write() {
    let stop = CancellationToken::new();
    let server = TestServer::start(Writes::Store, &stop).await;
    let toml = format!(
        r#"
[plant]
name = "p"
tick = "100ms"

[[sources.modbus]]
name = "plc"
address = "{addr}"
unit_id = 1
registers = [
  {{ tag = "speed", table = "holding", address = 10, type = "u16", scale = 0.1 }},
  {{ tag = "other", table = "holding", address = 11, type = "u16" }},
]

[[setpoints]]
tag = "speed"
min = 0
max = 100
mode = "closed_loop"

[[setpoints]]
tag = "other"
min = 0
max = 100
mode = "shadow"
"#,
        addr = server.addr
    );
    let cfg = twin::config::load_str(std::path::Path::new("w.toml"), &toml)
        .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()));
    let links = twin::sources::modbus::links(&cfg, &[server.addr.to_string()], &stop);
    let target_of = |i: usize| match &cfg.guard.setpoints[i].target {
        twin::config::guard::WriteTarget::Modbus(t) => t.clone(),
        other => panic!("{other:?}"),
    };
    let (speed, other) = (target_of(0), target_of(1));
    let w = ModbusWriter::from_config(&cfg, &links).expect("a closed-loop setpoint writes");
    connect(&links[0]).await;
    assert!(matches!(
        w.write(&speed, 12.3).await,
        WriteOutcome::Written { .. }
    ));
    assert_eq!(server.word(10), Some(123));
    // The shadow setpoint's register is not on the allowlist.
    assert!(matches!(
        w.write(&other, 1.0).await,
        WriteOutcome::NotSent {
            why: NotSent::NotAllowed { .. }
        }
    ));
    assert_eq!(server.writes_seen(), 1);

    // With no setpoint that can write, there is no writer at all.
    let shadow_only = toml.replace("closed_loop", "shadow");
    let cfg = twin::config::load_str(std::path::Path::new("w.toml"), &shadow_only)
        .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()));
    assert!(ModbusWriter::from_config(&cfg, &links).is_none());
    stop.cancel();
}
