//! Modbus write latency: one setpoint write through [`ModbusWriter`] and the
//! real [`Link`] to the virtual plant's Modbus server
//! (`twin::sim::modbus_server`) on loopback, in this process; the server on
//! its own runtime, the client on the runtime `twin run` uses.
//!
//! Run: `cargo bench --bench modbus_write`.
//!
//! What is timed (each a full round trip: encode, priority lane, socket,
//! server, echo check, outcome):
//! - `modbus_write/fc6_u16`: a scaled u16 (FC6);
//! - `modbus_write/fc16_f32`: a word-swapped f32 (FC16);
//! - `modbus_write/fc5_coil`: a coil (FC5);
//! - `modbus_write/fc6_behind_20_reads`: the FC6 write handed in right
//!   after 20 reads were queued on the same link (one in flight): the
//!   priority lane means it waits for the read on the wire, not for all 20.
//!   Only the write is timed.
//!
//! After criterion (skipped with `--test`/`--list`, or with
//! `MODBUS_BENCH_SUMMARY=0`) a summary prints p50 and p99 of 2,000 writes of
//! each kind, criterion's own report being means and medians.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use criterion::Criterion;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use twin::config::Loc;
use twin::config::Register;
use twin::config::guard::ModbusTarget;
use twin::config::{DataType, RegisterTable, WordOrder};
use twin::sim::modbus_server::{self, Images, RegisterImage, WritableReg};
use twin::sources::modbus::frame::{ReadFn, ReadRequest};
use twin::sources::modbus::link::{Framing, Link, LinkConfig};
use twin::sources::modbus::writer::{ModbusWriter, WriteOutcome};
use twin::wallclock;

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

struct Setup {
    _server_rt: Runtime,
    rt: Runtime,
    link: Link,
    writer: ModbusWriter,
    stop: CancellationToken,
}

impl Setup {
    fn start() -> Setup {
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mb-server")
            .enable_all()
            .build()
            .expect("server runtime");
        let stop = CancellationToken::new();
        let mut img = RegisterImage::default();
        for a in 0..200 {
            img.words.insert((RegisterTable::Holding, a), 0);
        }
        img.bits.insert((RegisterTable::Coil, 0), false);
        // The plant's server answers writes only to registers it declares
        // writable (exception 02 otherwise): declare the bench's targets.
        let reg = |table, address, data_type| Register {
            tag: Loc::new(format!("bench.{address}_sp"), 0..0),
            table,
            address: Loc::new(address, 0..0),
            data_type,
            bit: None,
            length: 1,
            order: WordOrder::default(),
            invalid: Vec::new(),
            poll_interval: None,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            stale_after: None,
        };
        for (k, (table, address, data_type)) in [
            (RegisterTable::Holding, 0, DataType::U16),
            (RegisterTable::Holding, 1, DataType::F32),
            (RegisterTable::Coil, 0, DataType::Bool),
        ]
        .into_iter()
        .enumerate()
        {
            img.writable.push(WritableReg {
                tag: k,
                name: format!("bench.{address}_sp"),
                reg: reg(table, address, data_type),
                accept: (f64::MIN, f64::MAX),
            });
        }
        let images: Images = Arc::new(RwLock::new(HashMap::from([(1u8, img)])));
        let addr: SocketAddr = server_rt
            .block_on(modbus_server::serve(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                images,
                Default::default(),
                stop.clone(),
            ))
            .expect("bind a loopback Modbus server");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mb-client")
            .enable_all()
            .build()
            .expect("client runtime");
        let link = {
            let _guard = rt.enter();
            Link::spawn(
                LinkConfig {
                    name: "bench".into(),
                    address: addr.to_string(),
                    framing: Framing::Tcp,
                    timeout: Duration::from_secs(2),
                    max_in_flight: 1,
                },
                stop.clone(),
            )
        };
        let mut writer = ModbusWriter::new();
        writer.add_device(0, "bench", 1, link.clone());
        writer.allow(0, RegisterTable::Holding, 0, 4);
        writer.allow(0, RegisterTable::Coil, 0, 1);
        // Connect, as the poller would, before anything is timed.
        let l = link.clone();
        let read = rt.block_on(async move { l.read(read_one(100)).await });
        assert!(matches!(read, Ok(Ok(_))), "connect: {read:?}");
        Setup {
            _server_rt: server_rt,
            rt,
            link,
            writer,
            stop,
        }
    }

    /// `n` writes of `target`, one after another, each behind `backlog`
    /// queued reads; returns the time of each write alone.
    fn writes(&self, target: &ModbusTarget, n: u64, backlog: u16) -> Vec<Duration> {
        let (w, link, t) = (self.writer.clone(), self.link.clone(), target.clone());
        let task = self.rt.spawn(async move {
            let mut times = Vec::with_capacity(n as usize);
            for i in 0..n {
                let reads: Vec<_> = (0..backlog)
                    .map(|k| {
                        let link = link.clone();
                        tokio::spawn(async move { link.read(read_one(100 + k)).await })
                    })
                    .collect();
                // Let the reads reach the link's queue first (best effort:
                // waiting for an exact count could hang once they drain).
                for _ in 0..backlog {
                    tokio::task::yield_now().await;
                }
                let v = if t.table == RegisterTable::Coil {
                    (i % 2) as f64
                } else {
                    (i % 1000) as f64 + 0.25
                };
                let start = wallclock::monotonic();
                let out = w.write(&t, v).await;
                times.push(wallclock::since(start));
                assert!(
                    matches!(out, WriteOutcome::Written { .. }),
                    "write failed: {out}"
                );
                for r in reads {
                    black_box(r.await.expect("read task").is_ok());
                }
            }
            times
        });
        self.rt.block_on(task).expect("write task")
    }
}

fn read_one(start: u16) -> ReadRequest {
    ReadRequest {
        unit: 1,
        function: ReadFn::HoldingRegisters,
        start,
        count: 1,
    }
}

fn cases() -> Vec<(&'static str, ModbusTarget, u16)> {
    let mut u16t = target(RegisterTable::Holding, 0, DataType::U16);
    u16t.scale = 0.1;
    let mut f32t = target(RegisterTable::Holding, 1, DataType::F32);
    f32t.order = WordOrder::Cdab;
    let coil = target(RegisterTable::Coil, 0, DataType::Bool);
    vec![
        ("fc6_u16", u16t.clone(), 0),
        ("fc16_f32", f32t, 0),
        ("fc5_coil", coil, 0),
        ("fc6_behind_20_reads", u16t, 20),
    ]
}

fn bench(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("modbus_write");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(5));
    for (name, t, backlog) in cases() {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| s.writes(&t, iters, backlog).into_iter().sum())
        });
    }
    g.finish();
}

fn summary(s: &Setup) {
    println!("\nmodbus_write latency over 2,000 writes each (loopback):");
    for (name, t, backlog) in cases() {
        let mut times = s.writes(&t, 2000, backlog);
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "  {name:<22} p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
            at(0.50),
            at(0.99),
            at(1.0)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    let setup = Setup::start();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &setup);
    c.final_summary();
    let skip = std::env::var("MODBUS_BENCH_SUMMARY").is_ok_and(|v| v == "0");
    if !quick && !skip {
        summary(&setup);
    }
    setup.stop.cancel();
}
