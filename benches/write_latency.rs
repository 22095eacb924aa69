//! Sample-to-write latency inside one process (issue 12: "from a sample's
//! arrival to the write leaving the socket ... Goal on the demo line:
//! <= 5 ms p99").
//!
//! The twin is driven tick by tick as the live driver drives it
//! (`Driver::push`, `Driver::step`, with `GuardIo` attached: records
//! appended and fsync'd on the tick thread, then `AsyncModbus` hands the
//! intent to a task on a two-worker runtime, which writes through the real
//! `Link` on its priority lane). The device is a tokio-modbus server on
//! 127.0.0.1:0 in this process, on its own runtime, that stamps each write
//! request with the monotonic clock as it receives it. The latency is from
//! just before the deciding tick's sample is pushed to that stamp; the
//! clock is read here, never in the core.
//!
//! Case `operator_approval`: one Modbus setpoint in advisory mode with no
//! physics knob. Each round an operator proposes (tick k: pending) and
//! approves (tick k + 1: re-checked against every rule, `approved` and
//! `written` appended, each with its own fsync, then written); the figure
//! is tick k + 1's sample push to the write on the server. No model and no
//! forecast are in this path (an approval of a setpoint that turns no knob
//! is the operator's judgement alone, docs/guard.md).
//!
//! Run: `cargo bench --bench write_latency`. Criterion times whole rounds;
//! the percentiles over >= 1,000 writes are collected in the bench, printed
//! and written to `target/criterion/write_latency/summary.txt`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;
use twin::config::{LoadedConfig, load_str};
use twin::guard::audit::AuditLog;
use twin::runtime::Driver;
use twin::runtime::guard_io::{AsyncModbus, GuardIo};
use twin::sources::health::HealthBoard;
use twin::sources::modbus::frame::{ReadFn, ReadRequest};
use twin::sources::modbus::writer::ModbusWriter;
use twin::twin::{Sample, Value};
use twin::wallclock;

/// Tick 0's time (any fixed epoch: the core never reads a clock).
const T0: i64 = 1_800_000_000_000_000_000;
/// Writes per percentile summary.
const WRITES: usize = 1_000;

/// The device: answers reads with zeros and stamps every write request
/// (address, raw value, when it arrived) onto a channel.
#[derive(Clone)]
struct Device(Arc<Mutex<mpsc::Sender<(u16, u16, Instant)>>>);

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for Device {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let reply = match req.request {
            Request::WriteSingleRegister(a, v) => {
                let at = wallclock::monotonic();
                if let Ok(tx) = self.0.lock() {
                    let _ = tx.send((a, v, at));
                }
                Ok(Some(Response::WriteSingleRegister(a, v)))
            }
            Request::ReadHoldingRegisters(_, n) => {
                Ok(Some(Response::ReadHoldingRegisters(vec![0; n as usize])))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(async move { reply })
    }
}

fn start_device(rt: &Runtime, stop: &CancellationToken) -> (SocketAddr, mpsc::Receiver<(u16, u16, Instant)>) {
    let (tx, rx) = mpsc::channel();
    let service = Device(Arc::new(Mutex::new(tx)));
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let stop = stop.clone();
    rt.spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, peer| {
            let service = service.clone();
            async move { accept_tcp_connection(stream, peer, move |_| Ok(Some(service.clone()))) }
        };
        let _ = server
            .serve_until(&on_connected, |_| {}, async move { stop.cancelled().await })
            .await;
    });
    (addr, rx)
}

/// One advisory setpoint on a holding register (0.1 units per count), read
/// back through its own tag.
fn operator_config(addr: SocketAddr) -> LoadedConfig {
    let text = format!(
        r#"
[plant]
name = "write_latency"
tick = "100ms"
stale_after = "10s"

[[sources.modbus]]
name = "plc"
address = "{addr}"
unit_id = 1
registers = [
  {{ tag = "speed", table = "holding", address = 10, type = "u16", scale = 0.1 }},
]

[[setpoints]]
tag = "speed"
min = 0
max = 100
max_step = 50
mode = "advisory"
"#
    );
    load_str(Path::new("write_latency.toml"), &text)
        .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()))
}

/// A driver with the live run's guard I/O: audit log, `AsyncModbus` on
/// `rt`, the link connected and flagged up.
struct Rig {
    driver: Driver,
    tag: twin::config::TagId,
    written: mpsc::Receiver<(u16, u16, Instant)>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(rt: &Runtime, stop: &CancellationToken) -> Rig {
        let (addr, written) = start_device(rt, stop);
        let cfg = operator_config(addr);
        let mut driver = Driver::new(&cfg, T0).with_models(&cfg).expect("no models to load");
        // On the target's disk, not a tmpfs: the fsync is part of the path.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let log = AuditLog::open(&dir.path().join("audit.jsonl"), T0).expect("audit log");
        let links = {
            let _in_rt = rt.enter();
            twin::sources::modbus::links(&cfg, &[addr.to_string()], stop)
        };
        // A write never opens a connection: the poller's first read does.
        let l = links[0].clone();
        let read = rt.block_on(async move {
            l.read(ReadRequest {
                unit: 1,
                function: ReadFn::HoldingRegisters,
                start: 10,
                count: 1,
            })
            .await
        });
        assert!(matches!(read, Ok(Ok(_))), "connect: {read:?}");
        let modbus = ModbusWriter::from_config(&cfg, &links).map(Arc::new);
        let (tx, rx) = mpsc::channel();
        let writer = AsyncModbus::new(&cfg, modbus, rt.handle().clone(), tx.clone());
        let health = HealthBoard::default();
        health.register("plc", "modbus").success(1, T0);
        let io = GuardIo::new(
            driver.core_mut(),
            &cfg,
            Some(log),
            Some(Box::new(writer)),
            (tx, rx),
            health,
            None,
        );
        driver.attach_guard_io(io);
        Rig {
            driver,
            tag: cfg.tags.id("speed").expect("the speed tag"),
            written,
            _dir: dir,
        }
    }

    /// The setpoint's tag as the device shows it, received just before the
    /// next tick.
    fn sample(&self, value: f64) -> Sample {
        let at = self.driver.next_tick_ns() - 1_000;
        Sample::good(self.tag, Value::Num(value), at, at)
    }
}

/// `n` operator rounds; returns each write's latency.
fn operator_rounds(rig: &mut Rig, n: usize, first: u64) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    // What the device holds: the value the last round wrote.
    let mut held = if first % 2 == 0 { 30.0 } else { 20.0 };
    for i in first..first + n as u64 {
        let v = if i % 2 == 0 { 20.0 } else { 30.0 };
        let id = twin::guard::state_mut(rig.driver.core_mut())
            .expect("a guard")
            .propose_operator("speed", v, "bench")
            .expect("proposed");
        // Tick k: pending; the sample also reads the last write back.
        let s = rig.sample(held);
        rig.driver.push(s);
        rig.driver.step();
        twin::guard::state_mut(rig.driver.core_mut())
            .expect("a guard")
            .approve(id, "bench")
            .unwrap_or_else(|e| panic!("round {i}: proposal {id} not pending: {e}"));
        // Tick k + 1: the approval becomes a write.
        let s = rig.sample(held);
        let start = wallclock::monotonic();
        rig.driver.push(s);
        rig.driver.step();
        let (addr, raw, at) = rig
            .written
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("round {i}: no write reached the device"));
        assert_eq!((addr, raw), (10, (v * 10.0) as u16));
        out.push(at.saturating_duration_since(start));
        held = v;
    }
    out
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut times: Vec<Duration>) -> Stats {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Stats {
        n: times.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` and `--list`
    // do not: they only check that each case runs.
    let quick = !args.iter().any(|a| a == "--bench");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("device")
        .enable_all()
        .build()
        .expect("server runtime");
    // As `twin run`: the tick on its own thread (here, main), the link and
    // the write tasks on a runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("twin")
        .enable_all()
        .build()
        .expect("runtime");
    let stop = CancellationToken::new();
    let mut rig = Rig::new(&rt, &stop);
    let mut round = 0u64;

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("write_latency");
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("operator_approval", |b| {
            b.iter_custom(|iters| {
                let t = operator_rounds(&mut rig, iters as usize, round);
                round += iters;
                t.into_iter().sum()
            })
        });
        g.finish();
    }
    c.final_summary();
    if quick {
        stop.cancel();
        return;
    }
    let mut lines = vec![format!(
        "write_latency: sample push -> write request received by the device (loopback, in-process), {WRITES} writes per case"
    )];
    let s = stats(operator_rounds(&mut rig, WRITES, round));
    lines.push(format!(
        "  operator_approval  n {}  p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        s.n, s.p50, s.p99, s.max
    ));
    for l in &lines {
        eprintln!("{l}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        std::path::PathBuf::from,
    );
    let dir = target.join("criterion/write_latency");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("summary.txt"), lines.join("\n") + "\n"));
    if let Err(e) = written {
        eprintln!("could not write the summary: {e}");
    }
    stop.cancel();
    drop(server_rt);
}
