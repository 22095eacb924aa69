//! Replay with the line physics (issue 10, "Speed and memory"): the core,
//! driven by `runtime::Driver` as every run is, stepped as fast as it goes
//! over a realistic input stream of the demo line, on each belt drive.
//!
//! Run: `cargo bench --bench line_replay -- --quick`. Figures and how to
//! read them are in docs/benchmarks.md, "Live model".
//!
//! The stream: the virtual plant's truth model (`sim::truth`, the contact
//! model at 5 ms) polled every 40 ms, as the line PLC is, each tag's value
//! a good sample (a disconnected device's a bad one), pushed tick by tick
//! (100 ms) into a fresh `Driver` whose events are encoded as `twin run`
//! encodes them. Built once, outside the timed region; each iteration
//! replays the whole stream. Cases: `healthy` (three minutes) and
//! `transfer_jam` (three minutes, the jam at 60 s for 30 s; the twin's wall
//! and queue from 70 s), each on `analytical` (the analytical belt drive at
//! 25 ms steps) and `contacts` (the rapier contact model at 5 ms, the
//! reference, which the core runs today: the figure before).
//!
//! Criterion is given the bench thread's CPU time, and its throughput is
//! simulated seconds, so `elem/s` reads as "× real time" per core.
//!
//! With `LINE_REPLAY_TABLE=1` set, after the benchmarks every shipped
//! scenario that touches the line is replayed once through both drives
//! and a row per scenario is printed: the agreement table of
//! docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use twin::config::{LoadedConfig, load_str};
use twin::physics::BeltDrive;
use twin::runtime::Driver;
use twin::sim::scenario::{self, Scenario};
use twin::twin::{Sample, TwinEvent};

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");
const EPOCH_NS: i64 = 1_767_225_600_000_000_000;
const POLL: Duration = Duration::from_millis(40);

fn demo() -> LoadedConfig {
    load_str(Path::new("packaging-line.toml"), DEMO).expect("demo config is valid")
}

fn shipped(cfg: &LoadedConfig, name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plant-configs/scenarios")
        .join(name);
    scenario::load_file(&path, cfg).unwrap_or_else(|r| panic!("{r}"))
}

/// `secs` of the truth model's samples, one batch per tick (see
/// `sim::truth::sample_ticks`).
fn inputs(cfg: &LoadedConfig, scenario: Option<&Scenario>, secs: u64) -> Vec<Vec<Sample>> {
    twin::sim::truth::sample_ticks(cfg, scenario, 1, Duration::from_secs(secs), POLL, EPOCH_NS)
}

/// Replays `ticks` (consumed) through a fresh driver on `drive`; returns
/// the bytes of events written, so nothing is optimised away.
fn replay(cfg: &LoadedConfig, ticks: Vec<Vec<Sample>>, drive: BeltDrive) -> (Driver, usize) {
    let mut driver = Driver::new(cfg, EPOCH_NS);
    driver.core_mut().set_belt_drive(drive);
    let mut bytes = 0;
    for batch in ticks {
        driver.push_batch(batch);
        bytes += driver.step().jsonl.len();
    }
    (driver, bytes)
}

fn line_replay(c: &mut Criterion) {
    let cfg = demo();
    let jam = shipped(&cfg, "transfer_jam.toml");
    let cases = [
        ("healthy", inputs(&cfg, None, 180)),
        ("transfer_jam", inputs(&cfg, Some(&jam), 180)),
    ];
    let mut g = c.benchmark_group("line_replay");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    for (name, ticks) in &cases {
        let sim_secs = ticks.len() as u64 * cfg.config.plant.tick.as_millis() as u64 / 1000;
        g.throughput(Throughput::Elements(sim_secs));
        for (label, drive) in [
            ("analytical", BeltDrive::Analytical),
            ("contacts", BeltDrive::Contacts),
        ] {
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let input = ticks.clone();
                        let start = thread_cpu_time();
                        black_box(replay(&cfg, input, drive).1);
                        spent += thread_cpu_time().saturating_sub(start);
                    }
                    spent
                });
            });
        }
    }
    g.finish();
    if std::env::var_os("LINE_REPLAY_TABLE").is_some() {
        table(&cfg);
    }
}

/// What the twin said about the line over a replay.
#[derive(Debug, Default)]
struct Said {
    releases: Vec<u64>,
    out: u64,
    lost: u64,
    wip: u64,
    edges: Vec<u64>,
    /// Residuals: missing, extra, late.
    residuals: [u64; 3],
    /// Jam starts and clears, eye verdicts: "state eye @ seconds".
    story: Vec<String>,
    cpu: Duration,
}

fn said(cfg: &LoadedConfig, ticks: &[Vec<Sample>], drive: BeltDrive) -> Said {
    let mut driver = Driver::new(cfg, EPOCH_NS);
    driver.core_mut().set_belt_drive(drive);
    let secs = |t: i64| (t - EPOCH_NS) as f64 / 1e9;
    let mut s = Said::default();
    for batch in ticks {
        let start = thread_cpu_time();
        driver.push_batch(batch.clone());
        let events = driver.step().events;
        s.cpu += thread_cpu_time().saturating_sub(start);
        for e in events {
            match e {
                TwinEvent::Residual(r) => match r.kind {
                    "missing" => s.residuals[0] += 1,
                    "extra" => s.residuals[1] += 1,
                    _ => s.residuals[2] += 1,
                },
                TwinEvent::Jam(j) => s.story.push(format!(
                    "jam {} {} @{:.0}",
                    j.state,
                    j.after_eye,
                    secs(j.t_ns)
                )),
                TwinEvent::Eye(v) => {
                    s.story
                        .push(format!("{} {} @{:.0}", v.eye, v.state, secs(v.t_ns)))
                }
                _ => {}
            }
        }
    }
    let line = &driver.core().lines()[0];
    s.releases = line
        .model()
        .stations()
        .iter()
        .map(|x| x.releases())
        .collect();
    s.edges = line
        .model()
        .photo_eyes()
        .iter()
        .map(|e| e.rising_edges())
        .collect();
    (s.out, s.lost, s.wip) = (line.status.out, line.status.lost, line.status.wip);
    s
}

/// The agreement table: every shipped scenario that touches the line,
/// long enough to hold its faults, through both drives.
fn table(cfg: &LoadedConfig) {
    let runs: [(&str, Option<&str>, u64); 6] = [
        ("healthy", None, 600),
        ("transfer_jam", Some("transfer_jam.toml"), 180),
        ("belt_slip", Some("belt_slip.toml"), 240),
        ("stuck_eye", Some("stuck_eye.toml"), 180),
        ("plc_disconnect", Some("plc_disconnect.toml"), 120),
        ("mixed", Some("mixed.toml"), 2_400),
    ];
    println!(
        "| scenario (s) | drive | releases | out, lost, WIP | expected eye edges | residuals m/e/l | jams, verdicts | × real time |"
    );
    for (name, file, secs) in runs {
        let s = file.map(|f| shipped(cfg, f));
        let ticks = inputs(cfg, s.as_ref(), secs);
        for (label, drive) in [
            ("contacts", BeltDrive::Contacts),
            ("analytical", BeltDrive::Analytical),
        ] {
            let r = said(cfg, &ticks, drive);
            println!(
                "| {name} ({secs}) | {label} | {:?} | {}, {}, {} | {:?} | {:?} | {} | {:.0}× |",
                r.releases,
                r.out,
                r.lost,
                r.wip,
                r.edges,
                r.residuals,
                r.story.join("; "),
                secs as f64 / r.cpu.as_secs_f64().max(1e-9),
            );
        }
    }
}

use twin::wallclock::thread_cpu_time;

criterion_group!(benches, line_replay);
criterion_main!(benches);
