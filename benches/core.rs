//! Core throughput: samples ingested and events encoded per second on the
//! demo plant, and the cost of loading and validating a plant config.
//!
//! Run: `cargo bench --bench core`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::config::{TagId, load_str};
use twin::runtime::Driver;
use twin::twin::{Sample, Value};

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");
const T0: i64 = 1_800_000_000_000_000_000;
const TICK_NS: i64 = 100_000_000;

/// One tick's worth of samples: every tag gets `per_tag` fresh values.
fn samples(tags: u32, per_tag: u32, tick: i64, seed: u64) -> Vec<Sample> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity((tags * per_tag) as usize);
    for k in 0..per_tag {
        for t in 0..tags {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Spread over the tick, all at or before the tick's time.
            let at = T0 + tick * TICK_NS - i64::from(per_tag - k) * 1_000;
            out.push(Sample::good(
                TagId(t),
                Value::Num((x % 10_000) as f64 / 10.0),
                at,
                at,
            ));
        }
    }
    out
}

fn core_tick(c: &mut Criterion) {
    let cfg = load_str(Path::new("packaging-line.toml"), DEMO).expect("demo config is valid");
    let tags = cfg.tags.len() as u32;
    let mut g = c.benchmark_group("core_tick");
    for per_tag in [1u32, 100] {
        let n = u64::from(tags * per_tag);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("ingest_emit_encode/{n}_samples"), |b| {
            // Only push + tick + encode is timed; building each tick's
            // samples (stamped for that tick) happens outside the clock.
            // The driver is the one live runs use: clamp, step, encode.
            b.iter_custom(|iters| {
                let mut driver = Driver::new(&cfg, T0);
                let mut timed = Duration::ZERO;
                for i in 0..iters {
                    let tick = driver.clock().tick() as i64 + 1;
                    let batch = samples(tags, per_tag, tick, i + 1);
                    let start = twin::wallclock::monotonic();
                    for s in batch {
                        driver.push(s);
                    }
                    black_box(driver.step().jsonl.len());
                    timed += twin::wallclock::since(start);
                }
                timed
            });
        });
    }
    g.finish();
}

fn config_load(c: &mut Criterion) {
    c.bench_function("config_load/packaging_line", |b| {
        b.iter(|| load_str(Path::new("packaging-line.toml"), black_box(DEMO)).map(|c| c.tags.len()))
    });
}

criterion_group!(benches, core_tick, config_load);
criterion_main!(benches);
