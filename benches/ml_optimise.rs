//! The setpoint optimiser's cost on the demo line (issue 11): one vetting
//! round (the worker thread's job), and what the tick thread pays to hand
//! it over (a copy of the line model and the round's candidates).
//!
//! The line is warmed up for two minutes at its nominal rates, then a
//! round vets the demo's two belt speeds with one neighbour each side: the
//! baseline, the model's proposal and four neighbours, six forecasts of
//! 60 s each (throughput over the last 30 s). A second case vets the same
//! round with a standing queue of about 30 bottles before a slow filler.
//!
//! Run: `cargo bench --bench ml_optimise`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use twin::config::knob::Knob;
use twin::config::layout::Layout;
use twin::config::load_str;
use twin::config::optimise::Variable;
use twin::ml::vetting::{Rules, candidates, vet};
use twin::physics::LineModel;
use twin::physics::lookahead::{Candidate, LOOKAHEAD_DT};

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");

fn optimise(c: &mut Criterion) {
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
    let vars: Vec<Variable> = (0..2)
        .map(|i| Variable {
            tag: line.conveyors[i].speed_tag.value.clone(),
            knob: Knob::Belt(i),
            min: 0.1,
            max: 0.85,
            max_step: Some(0.1),
        })
        .collect();
    let rules = Rules {
        horizon: Duration::from_secs(60),
        max_jam_risk: 0.5,
        energy_weight: 0.0,
        min_gain: 2.5,
        arrival_interval: Some(Duration::from_secs(1)),
        belt_lengths: line
            .conveyors
            .iter()
            .map(|c| Layout::of(c).length())
            .collect(),
    };
    let round = candidates(&vars, &[0.6, 0.6], &[0.65, 0.55], 1);
    assert_eq!(round.trials.len(), 6, "baseline, model, four neighbours");
    let mut g = c.benchmark_group("ml_optimise");
    g.sample_size(10);
    g.bench_function("round_6_candidates_60s", |b| {
        b.iter(|| black_box(vet(&warm, &vars, &round, &rules).expect("vets")))
    });
    let slow = Candidate {
        station_cycles: vec![(0, Duration::from_millis(1500))],
        ..nominal
    };
    let (queued, _) = warm
        .lookahead_state(&slow, Duration::from_secs(120))
        .expect("queue builds");
    g.bench_function("round_6_candidates_60s_standing_queue", |b| {
        b.iter(|| black_box(vet(&queued, &vars, &round, &rules).expect("vets")))
    });
    g.bench_function("tick_side_handover", |b| {
        b.iter(|| {
            let copy = black_box(&queued).clone();
            let c = candidates(&vars, &[0.6, 0.6], &[0.65, 0.55], 1);
            black_box((copy, c))
        })
    });
    g.finish();
}

criterion_group!(benches, optimise);
criterion_main!(benches);
