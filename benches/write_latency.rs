//! Sample-to-write latency inside one process (issue 12: "from a sample's
//! arrival to the write leaving the socket ... Goal on the demo line:
//! <= 5 ms p99").
//!
//! The twin is driven tick by tick as the live driver drives it
//! (`Driver::push`, `Driver::step`, with `GuardIo` attached: records
//! appended and fsync'd on the tick thread, then `LiveWriter` hands the
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
//! `written` appended in one group commit, one fsync, then written); the
//! figure is tick k + 1's sample push to the write on the server. No model
//! and no forecast are in this path (an approval of a setpoint that turns
//! no knob is the operator's judgement alone, docs/guard.md).
//!
//! Case `ml_landing_tick` (summary only): the demo line with its setpoint
//! model `line_setpoints` every 1.5 s and the optimiser's lookahead (5 s
//! horizon) on its worker thread, both belt speeds in closed loop (see
//! [`ml_config`]). The samples are what the virtual plant in lockstep gave
//! the twin (captured first, then pushed tick by tick into a twin with the
//! guard I/O). An optimiser proposal lands `apply_after` (the demo's 1 s,
//! ten ticks) after the model ran, by design (a replay must land it on the
//! same tick; docs/ml.md), so the figure is from the sample push of the
//! tick the proposal lands and is written on: that tick's ingest, physics,
//! ML stage (the fault model when due), taking the round's result, guard,
//! fsync and writer. From the model row's sample it is `apply_after` more,
//! by design (`ml_from_model_row`, with `WRITE_LATENCY_ALL_PACED=1`).
//! Measured with the ticks stepped back to back (the landing tick then
//! waits for the worker's round), and with the landing ticks paced a tick
//! period after the tick before them, as the live pacer starts every tick
//! (the round is done by then, as it is live with a second to run; see
//! [`Pacing`]). Criterion has no case for these: the captured samples run
//! out, and a round cannot be repeated on its own.
//!
//! Run: `cargo bench --bench write_latency`. Criterion times whole
//! operator rounds; the percentiles over >= 1,000 writes per case are
//! collected in the bench, printed and written to
//! `target/criterion/write_latency/summary.txt`. `WRITE_LATENCY_SIM_S`
//! sets the lockstep capture's length (default 3,000 s of sim time).

use std::collections::HashMap;
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
use twin::config::{LoadedConfig, TagId, load_str};
use twin::guard::audit::AuditLog;
use twin::runtime::Driver;
use twin::runtime::guard_io::{GuardIo, LiveWriter};
use twin::sim::lockstep::{self, LockstepOptions};
use twin::sinks::{Sink, SinkError, TickOutput};
use twin::sources::health::HealthBoard;
use twin::sources::modbus::frame::{ReadFn, ReadRequest};
use twin::sources::modbus::writer::ModbusWriter;
use twin::twin::{Sample, TickClock, Value};
use twin::wallclock;

/// Tick 0's time (any fixed epoch: the core never reads a clock).
const T0: i64 = 1_800_000_000_000_000_000;
/// Writes per percentile summary.
const WRITES: usize = 1_000;

/// The device: keeps its holding registers (any unit), and stamps every
/// write request (address, raw value, when it arrived) onto a channel.
#[derive(Clone)]
struct Device(Arc<Mutex<DeviceState>>);

struct DeviceState {
    stamps: mpsc::Sender<Stamp>,
    words: HashMap<u16, u16>,
}

/// A write as the device got it: address, raw value, arrival.
type Stamp = (u16, u16, Instant);

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for Device {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let at = wallclock::monotonic();
        let Ok(mut d) = self.0.lock() else {
            return Box::pin(async { Err(ExceptionCode::ServerDeviceFailure) });
        };
        let reply = match req.request {
            Request::WriteSingleRegister(a, v) => {
                d.words.insert(a, v);
                let _ = d.stamps.send((a, v, at));
                Ok(Some(Response::WriteSingleRegister(a, v)))
            }
            Request::ReadHoldingRegisters(a, n) => Ok(Some(Response::ReadHoldingRegisters(
                (a..a.saturating_add(n))
                    .map(|i| d.words.get(&i).copied().unwrap_or(0))
                    .collect(),
            ))),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(async move { reply })
    }
}

fn start_device(rt: &Runtime, stop: &CancellationToken) -> (SocketAddr, mpsc::Receiver<Stamp>) {
    let (tx, rx) = mpsc::channel();
    let service = Device(Arc::new(Mutex::new(DeviceState {
        stamps: tx,
        words: HashMap::new(),
    })));
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

/// A driver with the live run's guard I/O: audit log, `LiveWriter` on
/// `rt`, every Modbus device's link connected and flagged up.
struct Rig {
    driver: Driver,
    written: mpsc::Receiver<Stamp>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(
        rt: &Runtime,
        stop: &CancellationToken,
        config: impl Fn(SocketAddr) -> LoadedConfig,
        clock: Option<TickClock>,
    ) -> (Rig, LoadedConfig) {
        let (addr, written) = start_device(rt, stop);
        let cfg = config(addr);
        let clock = clock.unwrap_or_else(|| TickClock::new(T0, cfg.config.plant.tick));
        let mut driver = Driver::with_clock(&cfg, clock)
            .with_models(&cfg)
            .expect("models load");
        // On the target's disk, not a tmpfs: the fsync is part of the path.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let log =
            AuditLog::open(&dir.path().join("audit.jsonl"), clock.now_ns()).expect("audit log");
        let devices = cfg.config.modbus.len();
        let links = {
            let _in_rt = rt.enter();
            twin::sources::modbus::links(&cfg, &vec![addr.to_string(); devices], stop)
        };
        let health = HealthBoard::default();
        for (i, link) in links.iter().enumerate() {
            // A write never opens a connection: the poller's first read does.
            let l = link.clone();
            let read = rt.block_on(async move {
                l.read(ReadRequest {
                    unit: 1,
                    function: ReadFn::HoldingRegisters,
                    start: 0,
                    count: 1,
                })
                .await
            });
            assert!(matches!(read, Ok(Ok(_))), "connect: {read:?}");
            health
                .register(&cfg.config.modbus[i].name.value, "modbus")
                .success(1, clock.now_ns());
        }
        let modbus = ModbusWriter::from_config(&cfg, &links).map(Arc::new);
        let (tx, rx) = mpsc::channel();
        // Modbus targets only: no MQTT or Sparkplug command connection.
        let built = twin::sources::Built {
            sources: Vec::new(),
            links: Vec::new(),
            mqtt: Vec::new(),
            sparkplug: Vec::new(),
        };
        let writer = LiveWriter::new(
            &cfg,
            modbus,
            &built,
            rt.handle().clone(),
            tx.clone(),
            &tokio_util::sync::CancellationToken::new(),
        )
        .expect("a Modbus-only writer");
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
        (
            Rig {
                driver,
                written,
                _dir: dir,
            },
            cfg,
        )
    }
}

/// `n` operator rounds; returns each write's latency.
fn operator_rounds(rig: &mut Rig, tag: TagId, n: usize, first: u64) -> Vec<Duration> {
    let sample = |rig: &Rig, value: f64| {
        // The setpoint's tag as the device shows it, received just before
        // the next tick.
        let at = rig.driver.next_tick_ns() - 1_000;
        Sample::good(tag, Value::Num(value), at, at)
    };
    let mut out = Vec::with_capacity(n);
    // What the device holds: the value the last round wrote.
    let mut held = if first.is_multiple_of(2) { 30.0 } else { 20.0 };
    for i in first..first + n as u64 {
        let v = if i % 2 == 0 { 20.0 } else { 30.0 };
        let id = twin::guard::state_mut(rig.driver.core_mut())
            .expect("a guard")
            .propose_operator("speed", v, "bench")
            .expect("proposed");
        // Tick k: pending; the sample also reads the last write back.
        let s = sample(rig, held);
        rig.driver.push(s);
        rig.driver.step();
        twin::guard::state_mut(rig.driver.core_mut())
            .expect("a guard")
            .approve(id, "bench")
            .unwrap_or_else(|e| panic!("round {i}: proposal {id} not pending: {e}"));
        // Tick k + 1: the approval becomes a write.
        let s = sample(rig, held);
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

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");
/// Where the demo's model paths resolve from.
const DEMO_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/plant-configs/packaging-line.toml"
);

/// The demo line with its setpoint model `line_setpoints` in closed loop:
/// both belt speeds written to line_plc's speed reference registers (110,
/// 111) and read back from them. The model runs every 1.5 s, not the
/// demo's 10 s, for more rounds per captured minute; like the demo's, its
/// rounds land `apply_after` (1 s) after the model ran, on a tick that does
/// not run the model again (the demo's cadence puts the next run 9 s after
/// the landing, this one 0.5 s). So that a round ends in a write most times: a short
/// horizon (5 s, not 60 s), no `min_interval`, and an energy weight that
/// makes a slower belt a gain (the virtual plant in this bench never sees
/// the writes, so the twin keeps seeing 0.6 m/s and keeps proposing). The
/// models (the fault model every second too) and the lookahead are the
/// demo's own.
fn ml_config(_: SocketAddr) -> LoadedConfig {
    // Everything up to the setpoint model, the demo's fault model included
    // (it runs every second, on whatever tick, as on the demo line).
    let at = DEMO
        .find("[[models]]\nid = \"line_setpoints\"")
        .expect("the demo's setpoint model");
    let mut text = DEMO[..at].to_string();
    // Both belts in closed loop (the demo has them in shadow mode, written
    // to their speed references), without the demo's 10 s between writes.
    for tag in ["infeed.speed", "outfeed.speed"] {
        let old = format!("tag = \"{tag}\"\nmode = \"shadow\"\n");
        assert!(text.contains(&old), "the demo's {tag} setpoint");
        text = text.replace(&old, &format!("tag = \"{tag}\"\nmode = \"closed_loop\"\n"));
    }
    text = text.replace("min_interval = \"10s\"\n", "");
    let end =
        at + DEMO[at..].find("neighbours = 1\n").expect("its optimiser") + "neighbours = 1\n".len();
    let model = DEMO[at..end]
        .replace("every = \"10s\"", "every = \"1500ms\"")
        .replace("horizon = \"60s\"", "horizon = \"5s\"")
        .replace(
            "apply_after = \"1s\"",
            "apply_after = \"1s\"\n  energy_weight = 5.0\n  min_gain = 0.5",
        );
    text.push('\n');
    text.push_str(&model);
    load_str(Path::new(DEMO_PATH), &text)
        .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()))
}

/// The samples a live run would have pushed, per tick, and the run's clock:
/// taken from the virtual plant in lockstep (`twin demo --headless`), so
/// every tag the line model and the model's features need is there, as the
/// pollers decode it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<(Option<TickClock>, Vec<TickSamples>)>>);

/// The samples pushed while `.0` was the last tick run.
type TickSamples = (u64, Vec<Sample>);

impl Sink for Capture {
    fn start(&mut self, clock: &TickClock) -> Result<(), SinkError> {
        if let Ok(mut c) = self.0.lock() {
            c.0 = Some(*clock);
        }
        Ok(())
    }
    fn write_tick(&mut self, _: &TickOutput<'_>) -> Result<(), SinkError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn wants_samples(&self) -> bool {
        true
    }
    fn write_samples(&mut self, tick: u64, samples: &[Sample]) -> Result<(), SinkError> {
        if let Ok(mut c) = self.0.lock() {
            match c.1.last_mut() {
                Some((t, batch)) if *t == tick => batch.extend_from_slice(samples),
                _ => c.1.push((tick, samples.to_vec())),
            }
        }
        Ok(())
    }
}

fn capture(cfg: &LoadedConfig, sim: Duration) -> (TickClock, Vec<TickSamples>) {
    let cap = Capture::default();
    lockstep::run(
        cfg,
        None,
        &LockstepOptions::new(sim),
        vec![Box::new(cap.clone())],
    )
    .expect("lockstep run");
    let mut c = cap.0.lock().expect("capture");
    let clock = c.0.expect("the run started");
    (clock, std::mem::take(&mut c.1))
}

/// Latencies of the ML path's writes, two ways: from the sample push of
/// the tick the proposal landed on (and was decided and written on), and
/// from the sample push of the tick whose model row proposed it,
/// `apply_after_ticks` earlier.
#[derive(Default)]
struct MlTimes {
    landing: Vec<Duration>,
    from_row: Vec<Duration>,
    ticks: u64,
}

/// How the bench steps the ticks between a model row and its landing tick.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pacing {
    /// Every tick right after the one before: the landing tick then waits
    /// for the optimiser's round, which had only those ticks' time to run.
    BackToBack,
    /// Every tick a tick period after the one before, as the live pacer
    /// starts them.
    Paced(Duration),
    /// Back to back, except that a tick on which a round lands starts a
    /// tick period after the one before it. In a live run the round has
    /// `apply_after` (1 s on the demo) to finish, and the landing tick
    /// starts a period after the tick before it; so here the round is done
    /// when its tick comes, and the cores have idled for a period before
    /// it, as live. The ticks with nothing landing run back to back, so
    /// that 1,000 writes at the demo's cadence take a minute, not an hour.
    LandingPaced(Duration),
}

fn ml_rounds(
    rig: &mut Rig,
    ticks: &[TickSamples],
    apply_after: u64,
    want: usize,
    pacing: Pacing,
) -> MlTimes {
    let mut out = MlTimes::default();
    let mut pushed: Vec<Instant> = Vec::new();
    let mut next = 0;
    let last = ticks.last().map_or(0, |(t, _)| *t);
    let t0 = wallclock::monotonic();
    // Ticks on which a round lands: `apply_after` after a model row.
    let mut landing: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    let mut prev_start = t0;
    for (n, tick) in (rig.driver.clock().tick()..=last).enumerate() {
        match pacing {
            Pacing::BackToBack => {}
            Pacing::Paced(period) => {
                let due = t0 + period * n as u32;
                std::thread::sleep(due.saturating_duration_since(wallclock::monotonic()));
            }
            Pacing::LandingPaced(period) => {
                // `tick` is the last tick run; the one about to run is next.
                if landing.remove(&(tick + 1)) {
                    let due = prev_start + period;
                    std::thread::sleep(due.saturating_duration_since(wallclock::monotonic()));
                }
            }
        }
        let start = wallclock::monotonic();
        prev_start = start;
        pushed.push(start);
        if ticks.get(next).is_some_and(|(t, _)| *t == tick) {
            rig.driver.push_batch(ticks[next].1.clone());
            next += 1;
        }
        let step = rig.driver.step();
        out.ticks += 1;
        let mut writes = 0;
        for l in step.jsonl.split(|b| *b == b'\n') {
            let l = String::from_utf8_lossy(l);
            if l.contains("\"type\":\"setpoint\"") && l.contains("\"decision\":\"written\"") {
                writes += 1;
            } else if l.contains("\"type\":\"prediction\"")
                && l.contains("\"model\":\"line_setpoints\"")
            {
                landing.insert(step.tick + apply_after);
            }
        }
        for _ in 0..writes {
            let (_, _, at) = rig
                .written
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| {
                    panic!("tick {tick}: a written decision never reached the device")
                });
            out.landing.push(at.saturating_duration_since(start));
            let row = pushed.len().saturating_sub(1 + apply_after as usize);
            out.from_row.push(at.saturating_duration_since(pushed[row]));
        }
        if out.landing.len() >= want {
            break;
        }
    }
    out
}

/// `n` appends of one audit-sized line, each made durable as the audit
/// log makes a group commit durable (`write`, then `sync_data`).
fn fsync_times(n: usize) -> Vec<Duration> {
    use std::io::Write as _;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("flush.jsonl"))
        .expect("open");
    let line = [b'x'; 799]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    (0..n)
        .map(|_| {
            let start = wallclock::monotonic();
            f.write_all(&line).expect("write");
            f.sync_data().expect("fdatasync");
            wallclock::monotonic().saturating_duration_since(start)
        })
        .collect()
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut times: Vec<Duration>) -> Stats {
    assert!(
        !times.is_empty(),
        "no write reached the device: nothing to measure"
    );
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
    let (mut rig, cfg) = Rig::new(&rt, &stop, operator_config, None);
    let speed = cfg.tags.id("speed").expect("the speed tag");
    let mut round = 0u64;

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("write_latency");
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("operator_approval", |b| {
            b.iter_custom(|iters| {
                let t = operator_rounds(&mut rig, speed, iters as usize, round);
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
    let s = stats(operator_rounds(&mut rig, speed, WRITES, round));
    lines.push(format!(
        "  operator_approval  n {}  p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        s.n, s.p50, s.p99, s.max
    ));
    eprintln!("{}", lines[1]);
    // The disk's share: every write waits for one device flush (the audit
    // group commit), and on a shared or busy disk that flush is most of
    // the tail. Timed on its own, in the same folder the audit logs use.
    let s = stats(fsync_times(WRITES));
    lines.push(format!(
        "  disk: one 800-byte append + fdatasync  n {}  p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        s.n, s.p50, s.p99, s.max
    ));
    eprintln!("{}", lines[lines.len() - 1]);

    // The ML path: the demo line's samples from the virtual plant in
    // lockstep, pushed tick by tick into a twin with the guard I/O.
    let ml_cfg = ml_config(SocketAddr::from(([127, 0, 0, 1], 0)));
    let (clock, ticks) = {
        let sim = Duration::from_secs(
            std::env::var("WRITE_LATENCY_SIM_S")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3_000),
        );
        capture(&ml_cfg, sim)
    };
    let apply_after = u64::from(
        ml_cfg
            .ml
            .models
            .iter()
            .find_map(|m| m.optimise.as_ref())
            .map_or(1, |o| o.apply_after_ticks),
    );
    let period = ml_cfg.config.plant.tick;
    for (how, pacing) in [
        ("back to back", Pacing::BackToBack),
        ("landing ticks paced", Pacing::LandingPaced(period)),
        ("all paced", Pacing::Paced(period)),
    ] {
        if pacing == Pacing::Paced(period) && std::env::var_os("WRITE_LATENCY_ALL_PACED").is_none()
        {
            // Every tick paced at the demo's cadence is 20 minutes for
            // 1,000 writes: on request only.
            continue;
        }
        // A fresh twin from tick 0 each time, on the same samples.
        let (mut rig, _) = Rig::new(&rt, &stop, ml_config, Some(clock));
        let t = ml_rounds(&mut rig, &ticks, apply_after, WRITES, pacing);
        let (n_ticks, landing) = (t.ticks, stats(t.landing));
        lines.push(format!(
            "  ml_landing_tick    n {}  p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}  (ticks {how}, {n_ticks} ticks)",
            landing.n, landing.p50, landing.p99, landing.max
        ));
        eprintln!("{}", lines[lines.len() - 1]);
        // From the model row, the ticks between stepped as they were: only
        // meaningful when they all ran at the live pace.
        if matches!(pacing, Pacing::Paced(_)) {
            let from_row = stats(t.from_row);
            lines.push(format!(
                "  ml_from_model_row  n {}  p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}  (ticks {how}, model row {apply_after} tick(s) before)",
                from_row.n, from_row.p50, from_row.p99, from_row.max
            ));
            eprintln!("{}", lines[lines.len() - 1]);
        }
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
