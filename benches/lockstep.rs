//! Lockstep simulation speed (issue 10, `twin demo --headless`): the demo
//! plant's truth model and the twin on one simulated clock, samples through
//! the real register and payload encode/decode, every tick through the
//! driver to an event sink. Criterion's "elem/s" is simulated seconds per
//! wall-clock second, i.e. × real time.
//!
//! One case per shipped scenario and one healthy, each over the first
//! 120 s of sim time: the faults of transfer_jam, belt_slip, plc_disconnect,
//! stuck_eye, motor_overheat and sensor_drift start at 60 s; bearing_wear
//! (2 min) and mixed (5 min) start later, so over this horizon they cost
//! what a healthy line costs. The live line model (src/physics) is measured
//! as it is today; it is being sped up in parallel (docs/lockstep.md).
//!
//! Run: `cargo bench --bench lockstep`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::config::load_str;
use twin::sim::lockstep::{self, EventFile, LockstepOptions};
use twin::sim::scenario::{self, Scenario};
use twin::sinks::Sink;

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");
const HORIZON: Duration = Duration::from_secs(120);

fn lockstep(c: &mut Criterion) {
    let cfg = load_str(Path::new("packaging-line.toml"), DEMO).expect("demo config is valid");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plant-configs/scenarios");
    let mut cases: Vec<(String, Option<Scenario>)> = vec![("healthy".to_string(), None)];
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for p in files {
        let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
        let s = scenario::load_file(&p, &cfg).unwrap_or_else(|r| panic!("{r}"));
        cases.push((name, Some(s)));
    }
    let mut g = c.benchmark_group("lockstep");
    g.throughput(Throughput::Elements(HORIZON.as_secs()));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    let opts = LockstepOptions::new(HORIZON);
    for (name, s) in &cases {
        g.bench_function(format!("demo_line_120s_{name}"), |b| {
            b.iter(|| {
                // The events are encoded and written as in a run, to nowhere.
                let sinks: Vec<Box<dyn Sink>> = vec![Box::new(EventFile::from_writer(
                    Box::new(std::io::sink()),
                    "sink",
                ))];
                black_box(lockstep::run(&cfg, s.as_ref(), &opts, sinks).expect("lockstep run"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lockstep);
criterion_main!(benches);
