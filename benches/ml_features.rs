//! Feature windows at the scale (issue 11): 200 machines sharing 5
//! models at a 10 Hz tick, ~10 features per model row.
//!
//! Each machine has 6 signals (tags and physics outputs); every model reads
//! 10 features of them: the current value, means and standard deviations
//! over 30 s (300 points), min/max/rms over 10 s, a 30 s slope and a 5 s lag.
//! The windows are full and a few points are bad, as in a live run.
//!
//! - `push_tick`: one tick's grid points for all 1,200 signals.
//! - `rows_all_due`: every row of every model filled into its batch buffer
//!   (1,000 rows × 10 features), the worst tick, when all five models are
//!   due together. Criterion's "elem/s" is rows per second.
//! - `stat_300/*`: one statistic over a 300-point window that spans the
//!   ring's seam, kept running (what a row reads: O(1)).
//! - `stat_300_from_ring/*`: the same statistic over a length no row
//!   registered, so computed from the ring (O(n): what every read cost
//!   before the statistics were kept running).
//!
//! Run: `cargo bench --bench ml_features`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::ml::features::{FeatureRow, FeatureSpec, Scratch, SignalBank, SignalId, Stat};

const TICK: f64 = 0.1;
const MACHINES: usize = 200;
const SIGNALS: usize = 6;
const MODELS: usize = 5;

/// Model `m`'s ten features on one machine's signals.
fn features(m: usize, s: &[SignalId]) -> Vec<FeatureSpec> {
    let f = |k: usize, stat, n| FeatureSpec {
        signal: s[(k + m) % s.len()],
        stat,
        n,
    };
    vec![
        f(0, Stat::Value, 0),
        f(0, Stat::Mean, 300),
        f(0, Stat::Std, 300),
        f(1, Stat::Mean, 300),
        f(1, Stat::Std, 300),
        f(2, Stat::Min, 100),
        f(2, Stat::Max, 100),
        f(3, Stat::Rms, 100),
        f(4, Stat::Slope, 300),
        f(5, Stat::Lag, 50),
    ]
}

struct Plant {
    bank: SignalBank,
    signals: Vec<SignalId>,
    rows: Vec<Vec<FeatureRow>>,
    /// A minute of every signal's values, made up front so the bench times
    /// the pushes and not the `sin`.
    values: Vec<Vec<f64>>,
    tick: usize,
}

impl Plant {
    fn new() -> Self {
        let mut bank = SignalBank::new(TICK).expect("tick is valid");
        let signals: Vec<SignalId> = (0..MACHINES * SIGNALS).map(|_| bank.add_signal()).collect();
        let rows = (0..MODELS)
            .map(|m| {
                signals
                    .chunks(SIGNALS)
                    .map(|s| FeatureRow::new(&mut bank, features(m, s)).expect("valid"))
                    .collect()
            })
            .collect();
        let values = (0..600)
            .map(|tick| {
                let t = tick as f64 * TICK;
                (0..signals.len())
                    .map(|k| (t * 0.7 + k as f64).sin() * 3.0 + k as f64)
                    .collect()
            })
            .collect();
        let mut plant = Plant {
            bank,
            signals,
            rows,
            values,
            tick: 0,
        };
        // Past the longest window, so every window is full and the ring has
        // wrapped.
        for _ in 0..450 {
            plant.push_tick();
        }
        plant
    }

    fn push_tick(&mut self) {
        let values = &self.values[self.tick % self.values.len()];
        for (k, (&s, &value)) in self.signals.iter().zip(values).enumerate() {
            // One point in 997 is bad, so a few windows are uncertain.
            let ok = !(self.tick + k).is_multiple_of(997);
            self.bank.push(s, value, ok);
        }
        self.tick += 1;
    }
}

fn bench(c: &mut Criterion) {
    let mut plant = Plant::new();
    let mut scratch = Scratch::default();
    let mut batches: Vec<Vec<f32>> = (0..MODELS).map(|_| vec![0.0; MACHINES * 10]).collect();

    let mut g = c.benchmark_group("ml_features");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements((MACHINES * SIGNALS) as u64));
    g.bench_function("push_tick", |b| b.iter(|| plant.push_tick()));

    g.throughput(Throughput::Elements((MACHINES * MODELS) as u64));
    g.bench_function("rows_all_due", |b| {
        b.iter(|| {
            let mut uncertain = 0;
            for (rows, batch) in plant.rows.iter().zip(&mut batches) {
                for (row, out) in rows.iter().zip(batch.chunks_mut(10)) {
                    let q = row.fill(&plant.bank, &mut scratch, out).expect("fits");
                    uncertain += usize::from(q != twin::ml::features::RowQuality::Good);
                }
            }
            black_box(uncertain)
        })
    });
    g.finish();

    // A signal of its own with every statistic over 300 points kept, fed
    // past its seam.
    let s = plant.bank.add_signal();
    let stats = [
        Stat::Mean,
        Stat::Std,
        Stat::Rms,
        Stat::Min,
        Stat::Max,
        Stat::Slope,
    ];
    let specs = stats
        .iter()
        .map(|&stat| FeatureSpec {
            signal: s,
            stat,
            n: 300,
        })
        .collect();
    FeatureRow::new(&mut plant.bank, specs).expect("valid");
    for k in 0..450 {
        plant
            .bank
            .push(s, (k as f64 * 0.07).sin() * 3.0 + 7.0, true);
    }
    for (group, n) in [("stat_300", 300), ("stat_300_from_ring", 299)] {
        let mut g = c.benchmark_group(format!("ml_features/{group}"));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(2));
        for stat in stats {
            g.bench_function(stat.to_string(), |b| {
                b.iter(|| black_box(plant.bank.stat(s, stat, n, &mut scratch)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
