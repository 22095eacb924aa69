//! Modbus polling throughput: 10,000 u16 holding-register tags on 20 devices
//! (500 contiguous registers each, so the planner makes 4 reads of 125 per
//! device and 80 per poll cycle), served from loopback by the virtual plant's
//! own Modbus server (`twin::sim::modbus_server`), in this process.
//!
//! Run: `cargo bench --bench modbus_poll`. docs/benchmarks.md explains the
//! figures; `scripts/bench-modbus.sh` is the cross-process comparison with
//! Node-RED.
//!
//! What is timed:
//! - `modbus_poll/full_cycle/*`: one poll cycle of all 10,000 tags through
//!   twin's client path: the real [`links`] (one [`Link`] per endpoint),
//!   the real planner ([`plan::plan`]) and the real decoder
//!   ([`codec::decode_register`], [`twin::sources::apply_scale`]) into [`Sample`]s
//!   sent on the same kind of mpsc channel `twin run` uses. The
//!   [`twin::sources::modbus::ModbusPoller`] itself paces its reads with a
//!   timer (`poll_interval`, at least 10 ms), which would make a cycle take
//!   the interval rather than the work, so the cycle here drives the links
//!   the way its `poll_group` does (all of a device's reads at once, the link
//!   capping how many are in flight). The real poller is measured for CPU in
//!   the summary below.
//!   Topologies: `per_device` = 20 servers on 20 ports, one link each;
//!   `gateway` = one server with unit ids 1..=20 behind one port, one shared
//!   link, so its 80 requests go strictly one after another at
//!   `in_flight_1`.
//! - `modbus_poll/rtt/*`: one 125-register read, as the loopback limit: over
//!   a plain blocking socket (`raw_socket`, no client runtime at all) and
//!   through a [`Link`] (`link`).
//!
//! After criterion, a summary (skipped with `--test`/`--list`, or with
//! `MODBUS_BENCH_SUMMARY=0`) prints the RTT limit (RTT × 80 requests), how
//! close each cycle gets to it, and CPU-seconds per 10,000 tag reads. CPU is
//! read per thread from `/proc/self/task/*/schedstat` (ns resolution,
//! user + system): the server runs on its own runtime whose threads are named
//! `mb-server`, so the summary gives both the process total and the client
//! alone (total minus the server threads).

use std::collections::HashMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use futures_util::future::join_all;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use twin::config::{LoadedConfig, Register, RegisterTable, TagId, load_str};
use twin::endpoints::Endpoints;
use twin::sim::modbus_server::{self, Images, RegisterImage};
use twin::sources::modbus::decode_block;
use twin::sources::modbus::frame::{self, ReadData, ReadFn, ReadRequest};
use twin::sources::modbus::link::{Framing, Link, LinkConfig};
use twin::sources::modbus::links;
use twin::sources::modbus::plan::{self, ReadBlock};
use twin::twin::{Quality, Sample};
use twin::wallclock;

const DEVICES: usize = 20;
const REGS_PER_DEVICE: u16 = 500;
const TAGS: u64 = DEVICES as u64 * REGS_PER_DEVICE as u64;
/// Reads per cycle: 500 registers in blocks of at most 125.
const REQUESTS: u64 = DEVICES as u64 * REGS_PER_DEVICE.div_ceil(125) as u64;
const SERVER_THREAD: &str = "mb-server";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// One server (port) and one link per device.
    PerDevice,
    /// One server; devices told apart by unit id; one shared link.
    Gateway,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::PerDevice => "per_device",
            Topology::Gateway => "gateway",
        }
    }
}

/// The plant file: 20 devices × 500 u16 holding registers, contiguous.
/// Addresses are placeholders; the real ones are passed as endpoints.
fn plant(topology: Topology, max_in_flight: u16, poll_interval: &str) -> String {
    let mut s = String::with_capacity(800_000);
    s.push_str("[plant]\nname = \"modbus bench\"\ntick = \"100ms\"\nstale_after = \"5s\"\n");
    for d in 0..DEVICES {
        let (port, unit) = match topology {
            Topology::PerDevice => (15_000 + d, 1),
            Topology::Gateway => (15_000, d + 1),
        };
        s.push_str(&format!(
            "\n[[sources.modbus]]\nname = \"d{d:02}\"\naddress = \"127.0.0.1:{port}\"\n\
             unit_id = {unit}\npoll_interval = \"{poll_interval}\"\ntimeout = \"2s\"\n\
             max_in_flight = {max_in_flight}\nregisters = [\n"
        ));
        for r in 0..REGS_PER_DEVICE {
            s.push_str(&format!(
                "  {{ tag = \"d{d:02}.r{r:03}\", table = \"holding\", address = {r}, type = \"u16\" }},\n"
            ));
        }
        s.push_str("]\n");
    }
    s
}

fn load(topology: Topology, max_in_flight: u16, poll_interval: &str) -> LoadedConfig {
    let text = plant(topology, max_in_flight, poll_interval);
    match load_str(Path::new("modbus-bench.toml"), &text) {
        Ok(cfg) => cfg,
        Err(report) => panic!("the generated bench config is invalid:\n{report}"),
    }
}

/// A register image with every one of a device's registers, holding a value
/// that differs per register and device.
fn image(seed: u16) -> RegisterImage {
    let mut img = RegisterImage::default();
    for a in 0..REGS_PER_DEVICE {
        img.words.insert(
            (RegisterTable::Holding, a),
            a.wrapping_mul(7).wrapping_add(seed),
        );
    }
    img
}

/// The loopback servers of both topologies, on their own runtime.
struct Servers {
    /// Owns the server threads; never used after start-up.
    _rt: Runtime,
    per_device: Vec<SocketAddr>,
    gateway: SocketAddr,
    stop: CancellationToken,
}

impl Servers {
    fn start() -> Servers {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .expect("server runtime");
        let stop = CancellationToken::new();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (per_device, gateway) = rt.block_on(async {
            let mut per_device = Vec::new();
            for d in 0..DEVICES {
                let images: Images = Arc::new(RwLock::new(HashMap::from([(1u8, image(d as u16))])));
                per_device.push(
                    modbus_server::serve(any, images, Default::default(), stop.clone())
                        .await
                        .expect("bind a loopback Modbus server"),
                );
            }
            let units = (0..DEVICES)
                .map(|d| (d as u8 + 1, image(d as u16)))
                .collect();
            let gateway = modbus_server::serve(
                any,
                Arc::new(RwLock::new(units)),
                Default::default(),
                stop.clone(),
            )
            .await
            .expect("bind the loopback gateway");
            (per_device, gateway)
        });
        Servers {
            _rt: rt,
            per_device,
            gateway,
            stop,
        }
    }

    fn addresses(&self, topology: Topology) -> Vec<String> {
        match topology {
            Topology::PerDevice => self.per_device.iter().map(|a| a.to_string()).collect(),
            Topology::Gateway => vec![self.gateway.to_string(); DEVICES],
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A device as its poller sees it: tag ids, register map, planned reads, link.
struct Device {
    unit: u8,
    tags: Vec<TagId>,
    registers: Vec<Register>,
    blocks: Vec<ReadBlock>,
    link: Link,
}

/// The client side of one topology: its links and planned devices.
struct Client {
    rt: Runtime,
    devices: Arc<Vec<Device>>,
    stop: CancellationToken,
}

/// The runtime `twin run` uses (`cli::block_on`): multi-threaded, 2 workers.
fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mb-client")
        .enable_all()
        .build()
        .expect("client runtime")
}

impl Client {
    fn new(cfg: &LoadedConfig, addresses: &[String]) -> Client {
        let rt = client_runtime();
        let stop = CancellationToken::new();
        // Links spawn their tasks, so they are made inside the runtime.
        let link_of = {
            let _guard = rt.enter();
            links(cfg, addresses, &stop)
        };
        let devices = cfg
            .config
            .modbus
            .iter()
            .zip(link_of)
            .map(|(dev, link)| {
                let groups = plan::plan(dev);
                assert_eq!(groups.len(), 1, "one poll interval per device");
                Device {
                    unit: dev.unit_id,
                    tags: dev
                        .registers
                        .iter()
                        .map(|r| cfg.tags.id(&r.tag.value).unwrap_or(TagId(u32::MAX)))
                        .collect(),
                    registers: dev.registers.clone(),
                    blocks: groups.into_iter().flat_map(|g| g.blocks).collect(),
                    link,
                }
            })
            .collect::<Vec<_>>();
        let planned: usize = devices.iter().map(|d| d.blocks.len()).sum();
        assert_eq!(planned as u64, REQUESTS, "the planner's reads per cycle");
        Client {
            rt,
            devices: Arc::new(devices),
            stop,
        }
    }

    /// Run `cycles` full poll cycles in a task on the client runtime; return
    /// the time they took and the good samples received.
    fn run(&self, cycles: u64) -> (Duration, u64) {
        let devices = self.devices.clone();
        let task = self.rt.spawn(async move {
            // The channel `twin run` gives its sources, drained after
            // each cycle as its tick loop drains it.
            let (tx, mut rx) = mpsc::channel::<Vec<Sample>>(4_096);
            let mut good = 0u64;
            let start = wallclock::monotonic();
            for _ in 0..cycles {
                join_all(devices.iter().map(|d| poll_device(d, &tx))).await;
                while let Ok(batch) = rx.try_recv() {
                    good += batch.iter().filter(|s| s.quality == Quality::Good).count() as u64;
                    black_box(&batch);
                }
            }
            (wallclock::since(start), good)
        });
        self.rt.block_on(task).expect("poll task")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One poll of one device, as `ModbusPoller::poll_group` does it: all its
/// reads at once, then one sample per register, sent on the channel.
async fn poll_device(d: &Device, tx: &mpsc::Sender<Vec<Sample>>) {
    let replies = join_all(d.blocks.iter().map(|b| {
        d.link.read(ReadRequest {
            unit: d.unit,
            function: ReadFn::HoldingRegisters,
            start: b.start,
            count: b.count,
        })
    }))
    .await;
    let t = wallclock::now_ns();
    let mut batch = Vec::with_capacity(d.tags.len());
    for (b, reply) in d.blocks.iter().zip(replies) {
        match reply {
            // The poller's own decode step.
            Ok(Ok(data)) => batch.extend(decode_block(&d.registers, &d.tags, b, &data, t)),
            Ok(Err(exc)) => batch.extend(
                b.items
                    .iter()
                    .map(|&(ri, _)| Sample::bad(d.tags[ri], exc.reason(), t)),
            ),
            Err(e) => batch.extend(
                b.items
                    .iter()
                    .map(|&(ri, _)| Sample::bad(d.tags[ri], e.reason(), t)),
            ),
        }
    }
    let _ = tx.send(batch).await;
}

/// A blocking socket that sends one 125-register read and waits for the
/// reply: the round trip with no client runtime in the way.
struct RawSocket {
    stream: std::net::TcpStream,
    tid: u16,
    reply: Vec<u8>,
}

impl RawSocket {
    fn connect(addr: SocketAddr) -> RawSocket {
        let stream = std::net::TcpStream::connect(addr).expect("connect to the loopback server");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        RawSocket {
            stream,
            tid: 0,
            reply: vec![0; frame::MBAP_LEN + 2 + 250],
        }
    }

    fn read_125(&mut self) {
        self.tid = self.tid.wrapping_add(1);
        let req = frame::encode_tcp(self.tid, &read_125());
        self.stream.write_all(&req).expect("send the request");
        self.stream
            .read_exact(&mut self.reply)
            .expect("read the 259-byte reply");
        assert_eq!(
            self.reply[..2],
            self.tid.to_be_bytes(),
            "reply matches request"
        );
    }
}

fn link_for(rt: &Runtime, addr: SocketAddr, stop: &CancellationToken) -> Link {
    let _guard = rt.enter();
    Link::spawn(
        LinkConfig {
            name: "rtt".into(),
            address: addr.to_string(),
            framing: Framing::Tcp,
            timeout: Duration::from_secs(2),
            max_in_flight: 1,
        },
        stop.clone(),
    )
}

fn read_125() -> ReadRequest {
    ReadRequest {
        unit: 1,
        function: ReadFn::HoldingRegisters,
        start: 0,
        count: 125,
    }
}

/// `n` sequential 125-register reads through a link, in one task on its
/// runtime; returns the time of each.
fn link_reads(rt: &Runtime, link: &Link, n: u64) -> Vec<Duration> {
    let link = link.clone();
    let task = rt.spawn(async move {
        let mut times = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let start = wallclock::monotonic();
            match link.read(read_125()).await {
                Ok(Ok(ReadData::Words(w))) => {
                    black_box(w);
                }
                other => panic!("125-register read failed: {other:?}"),
            }
            times.push(wallclock::since(start));
        }
        times
    });
    rt.block_on(task).expect("link task")
}

/// The variants timed: (topology, max_in_flight).
const VARIANTS: [(Topology, u16); 4] = [
    (Topology::PerDevice, 1),
    (Topology::PerDevice, 4),
    (Topology::Gateway, 1),
    (Topology::Gateway, 4),
];

fn full_cycle(c: &mut Criterion, servers: &Servers) {
    let mut g = c.benchmark_group("modbus_poll/full_cycle");
    g.throughput(Throughput::Elements(TAGS));
    g.sample_size(30);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(8));
    for (topology, in_flight) in VARIANTS {
        let cfg = load(topology, in_flight, "100ms");
        let client = Client::new(&cfg, &servers.addresses(topology));
        // Connect before timing.
        let (_, good) = client.run(2);
        assert_eq!(good, 2 * TAGS, "every tag read good");
        g.bench_function(format!("{}/in_flight_{in_flight}", topology.name()), |b| {
            b.iter_custom(|iters| client.run(iters).0)
        });
    }
    g.finish();
}

fn rtt(c: &mut Criterion, servers: &Servers) {
    let mut g = c.benchmark_group("modbus_poll/rtt");
    g.throughput(Throughput::Elements(125));
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(5));
    let mut raw = RawSocket::connect(servers.per_device[0]);
    g.bench_function("raw_socket/read_125", |b| b.iter(|| raw.read_125()));
    let rt = client_runtime();
    let stop = CancellationToken::new();
    let link = link_for(&rt, servers.per_device[0], &stop);
    link_reads(&rt, &link, 10);
    g.bench_function("link/read_125", |b| {
        b.iter_custom(|iters| link_reads(&rt, &link, iters).into_iter().sum())
    });
    stop.cancel();
    g.finish();
}

// ---------------------------------------------------------------------------
// Summary: RTT limit, % achieved, CPU-seconds per 10,000 tag reads.
// ---------------------------------------------------------------------------

/// CPU time (user + system, ns) of this process's threads, split into the
/// server's threads and all others.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server_ns: u64,
    other_ns: u64,
}

impl Cpu {
    fn now() -> Cpu {
        let mut cpu = Cpu::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for t in tasks.flatten() {
            let p = t.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            // First field: time spent on the CPU, in ns.
            let ns = std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            if comm.trim_end().starts_with(SERVER_THREAD) {
                cpu.server_ns += ns;
            } else {
                cpu.other_ns += ns;
            }
        }
        cpu
    }

    fn minus(self, earlier: Cpu) -> Cpu {
        Cpu {
            server_ns: self.server_ns.saturating_sub(earlier.server_ns),
            other_ns: self.other_ns.saturating_sub(earlier.other_ns),
        }
    }
}

fn median(v: Vec<Duration>) -> Duration {
    percentiles(v, &[50])[0]
}

/// The given percentiles of `v`.
fn percentiles(mut v: Vec<Duration>, ps: &[usize]) -> Vec<Duration> {
    v.sort();
    ps.iter()
        .map(|p| {
            v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        })
        .collect()
}

/// "p10 / p50 / p90 / p99 / mean" in µs.
fn spread(v: &[Duration]) -> String {
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    let p = percentiles(v.to_vec(), &[10, 50, 90, 99]);
    format!(
        "p10 {:.1} / p50 {:.1} / p90 {:.1} / p99 {:.1} / mean {:.1} µs",
        us(p[0]),
        us(p[1]),
        us(p[2]),
        us(p[3]),
        us(mean)
    )
}

fn per_10k(ns: u64, tags: u64) -> f64 {
    ns as f64 / 1e9 / (tags as f64 / 10_000.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn summary(servers: &Servers) {
    println!(
        "\n== modbus_poll summary: {TAGS} tags, {DEVICES} devices, {REQUESTS} reads of 125 per cycle =="
    );

    // Loopback limit.
    let mut raw = RawSocket::connect(servers.per_device[0]);
    for _ in 0..500 {
        raw.read_125();
    }
    let raw_times: Vec<Duration> = (0..3000)
        .map(|_| {
            let t = wallclock::monotonic();
            raw.read_125();
            wallclock::since(t)
        })
        .collect();
    let rt = client_runtime();
    let stop = CancellationToken::new();
    let link = link_for(&rt, servers.per_device[0], &stop);
    link_reads(&rt, &link, 500);
    let link_times = link_reads(&rt, &link, 3000);
    stop.cancel();
    println!(
        "single 125-register read RTT, raw socket: {}",
        spread(&raw_times)
    );
    println!(
        "single 125-register read RTT, Link:       {}",
        spread(&link_times)
    );
    let rtt_raw = median(raw_times);
    let limit = rtt_raw * REQUESTS as u32;
    println!(
        "loopback limit, {REQUESTS} sequential reads × raw p50 RTT: {:.2} ms per cycle = {:.0} tags/s",
        us(limit) / 1e3,
        TAGS as f64 / limit.as_secs_f64()
    );

    println!(
        "\n{:<22} {:>10} {:>12} {:>9} {:>13} {:>13} {:>13}",
        "cycle", "median ms", "tags/s", "% limit", "CPU s/10k all", "client only", "server only"
    );
    for (topology, in_flight) in VARIANTS {
        let cfg = load(topology, in_flight, "100ms");
        let client = Client::new(&cfg, &servers.addresses(topology));
        client.run(20);
        let cycle = median((0..200).map(|_| client.run(1).0).collect());
        let cycles = 300u64;
        let c0 = Cpu::now();
        let (_, good) = client.run(cycles);
        let cpu = Cpu::now().minus(c0);
        assert_eq!(good, cycles * TAGS, "every tag read good");
        let tags = cycles * TAGS;
        println!(
            "{:<22} {:>10.3} {:>12.0} {:>8.0}% {:>13.5} {:>13.5} {:>13.5}",
            format!("{}/in_flight_{in_flight}", topology.name()),
            us(cycle) / 1e3,
            TAGS as f64 / cycle.as_secs_f64(),
            limit.as_secs_f64() / cycle.as_secs_f64() * 100.0,
            per_10k(cpu.server_ns + cpu.other_ns, tags),
            per_10k(cpu.other_ns, tags),
            per_10k(cpu.server_ns, tags),
        );
    }

    // The real poller (sources::build → ModbusPoller tasks), paced at the
    // schema's fastest poll_interval, for CPU per tag read.
    let cfg = load(Topology::PerDevice, 1, "10ms");
    let endpoints = Endpoints {
        modbus: cfg
            .config
            .modbus
            .iter()
            .zip(servers.addresses(Topology::PerDevice))
            .map(|(d, a)| (d.name.value.clone(), a))
            .collect(),
        mqtt: Default::default(),
    };
    let rt = client_runtime();
    let stop = CancellationToken::new();
    let window = Duration::from_secs(5);
    let (good, cpu, wall) = rt.block_on(async {
        let sources = twin::sources::build(&cfg, &endpoints, &stop).expect("build the sources");
        let (tx, mut rx) = mpsc::channel::<Vec<Sample>>(4_096);
        // As `runtime::run_live` starts them.
        let health = twin::sources::health::HealthBoard::default();
        for s in sources {
            let source_health = health.register(s.name(), s.kind());
            tokio::spawn(s.start(twin::sources::SourceContext {
                tx: tx.clone(),
                shutdown: stop.clone(),
                health: source_health,
            }));
        }
        drop(tx);
        // Warm up (connect), then count what arrives in the window.
        let warm = wallclock::monotonic();
        while wallclock::since(warm) < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            while rx.try_recv().is_ok() {}
        }
        let c0 = Cpu::now();
        let t0 = wallclock::monotonic();
        let mut good = 0u64;
        // Drain the way the tick loop of `twin run` does (try_recv after a
        // sleep), every 10 ms so the channel never fills at this rate.
        while wallclock::since(t0) < window {
            tokio::time::sleep(Duration::from_millis(10)).await;
            while let Ok(batch) = rx.try_recv() {
                good += batch.iter().filter(|s| s.quality == Quality::Good).count() as u64;
            }
        }
        let cpu = Cpu::now().minus(c0);
        let wall = wallclock::since(t0);
        stop.cancel();
        (good, cpu, wall)
    });
    println!(
        "{:<22} {:>10} {:>12.0} {:>9} {:>13.5} {:>13.5} {:>13.5}",
        "ModbusPoller @10ms",
        "paced",
        good as f64 / wall.as_secs_f64(),
        "-",
        per_10k(cpu.server_ns + cpu.other_ns, good),
        per_10k(cpu.other_ns, good),
        per_10k(cpu.server_ns, good),
    );
    println!(
        "(CPU: /proc/self/task/*/schedstat, user+system; server = threads named {SERVER_THREAD}; \
         \"client only\" includes the bench's own thread and channel draining)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    let servers = Servers::start();
    let mut c = Criterion::default().configure_from_args();
    full_cycle(&mut c, &servers);
    rtt(&mut c, &servers);
    c.final_summary();
    let skip = std::env::var("MODBUS_BENCH_SUMMARY").is_ok_and(|v| v == "0");
    if !quick && !skip {
        summary(&servers);
    }
    drop(servers);
}
