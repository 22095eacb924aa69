//! What-if lookahead speed on the demo line (issue 4): simulated seconds
//! per wall-clock second. Goal: at least 1000× real time.
//!
//! The line is warmed up for two minutes at its nominal rates (about 18
//! bottles on the belts, every station busy), then each iteration forecasts
//! the next 60 s under a candidate (a slower filler), as the optimiser and
//! the guard will. Criterion's "elem/s" is simulated seconds per second.
//!
//! A second case forecasts the same line with a standing queue of about 30
//! bottles in front of a slow filler, where contacts cannot be skipped.
//!
//! Run: `cargo bench --bench lookahead`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::config::load_str;
use twin::physics::LineModel;
use twin::physics::lookahead::{Candidate, LOOKAHEAD_DT};

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");
const HORIZON: Duration = Duration::from_secs(60);

fn lookahead(c: &mut Criterion) {
    let cfg = load_str(Path::new("packaging-line.toml"), DEMO).expect("demo config is valid");
    let line = &cfg.config.lines[0];
    let nominal = Candidate {
        belt_speeds: vec![(0, 0.6), (1, 0.6)],
        arrival_interval: Some(Duration::from_secs(1)),
        ..Candidate::default()
    };
    let (warm, _) = LineModel::new(line, LOOKAHEAD_DT)
        .lookahead_state(&nominal, Duration::from_secs(120))
        .expect("warm-up runs");
    let candidate = Candidate {
        station_cycles: vec![(0, Duration::from_millis(950))],
        ..nominal
    };
    let mut g = c.benchmark_group("lookahead");
    g.throughput(Throughput::Elements(HORIZON.as_secs()));
    g.sample_size(20);
    g.bench_function("demo_line_60s", |b| {
        b.iter(|| black_box(warm.lookahead(&candidate, HORIZON).expect("forecast runs")))
    });
    // The hard case: a filler slower than the arrivals (1.5 s against 1 s)
    // with its queue already standing (about 30 bottles after two minutes),
    // so most bottles are in contact with a neighbour on every step.
    let slow = Candidate {
        station_cycles: vec![(0, Duration::from_millis(1500))],
        ..candidate.clone()
    };
    let (queued, _) = warm
        .lookahead_state(&slow, Duration::from_secs(120))
        .expect("queue builds");
    g.bench_function("demo_line_60s_standing_queue", |b| {
        b.iter(|| black_box(queued.lookahead(&slow, HORIZON).expect("forecast runs")))
    });
    g.finish();
}

criterion_group!(benches, lookahead);
criterion_main!(benches);
