//! MQTT ingest throughput: decode-only, and decode + ingest into the ECS
//! world, on one core.
//!
//! The per-message path is the one `sources::mqtt` runs for every PUBLISH:
//! topic routing (`Router::route`), payload decoding (`payload::decode`),
//! scaling, `Sample` construction; then `TwinCore::push` and one tick
//! (`advance`: ingest, staleness, emit) per 1,000 messages. Broker and
//! socket time are not included here; `scripts/bench-mqtt.sh` measures the
//! whole path from a local mosquitto.
//!
//! Run: `cargo bench --bench mqtt_ingest`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::config::{LoadedConfig, load_str};
use twin::sources::mqtt::payload;
use twin::sources::mqtt::topic::{Routed, Router};
use twin::twin::{Sample, TickClock, TwinCore};

const TOPICS: usize = 1_000;
const MESSAGES: usize = 100_000;
const T0: i64 = 1_800_000_000_000_000_000;

fn config() -> LoadedConfig {
    let mut text = String::from(
        "[plant]\nname = \"mqtt bench\"\ntick = \"1ms\"\nstale_after = \"1h\"\n\
         [[sources.mqtt]]\nname = \"cm\"\nbroker = \"mqtt://127.0.0.1:1883\"\n",
    );
    for i in 0..TOPICS {
        text.push_str(&format!(
            "[[sources.mqtt.topics]]\ntopic = \"plant/m{i}/vibration\"\ntag = \"m{i}.vibration\"\n\
             payload = \"json\"\nfield = \"data.rms\"\nscale = 0.001\nunit = \"mm/s\"\n"
        ));
    }
    text.push_str(
        "[[sources.mqtt.topics]]\ntopic = \"plant/batch\"\ntag = \"batch.vibration\"\n\
         payload = \"json_samples\"\nfield = \"v\"\ntime_field = \"ts\"\ntime_unit = \"ms\"\n",
    );
    load_str(Path::new("mqtt-bench.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// Realistic sensor payloads: a nested object with a few fields besides the
/// one mapped, values varying so the core sees changes.
fn messages() -> Vec<(String, Vec<u8>)> {
    (0..MESSAGES)
        .map(|k| {
            let i = k % TOPICS;
            let v = 1000 + (k * 7919) % 5000;
            (
                format!("plant/m{i}/vibration"),
                format!(
                    r#"{{"device":"m{i}","seq":{k},"data":{{"rms":{v},"peak":{p},"temp_c":41.5}}}}"#,
                    p = v * 3
                )
                .into_bytes(),
            )
        })
        .collect()
}

fn decode_one(router: &Router, topic: &str, body: &[u8], recv: i64, out: &mut Vec<Sample>) {
    for routed in router.route(topic) {
        let Routed::Tag(route, tag) = routed else {
            continue;
        };
        let Ok(d) = payload::decode(&route.payload, body) else {
            continue;
        };
        out.extend(d.readings.into_iter().map(|r| route.sample(tag, r, recv)));
    }
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let router = Router::new(&cfg, &cfg.config.mqtt[0]);
    let msgs = messages();
    let mut g = c.benchmark_group("mqtt_ingest");
    g.throughput(Throughput::Elements(MESSAGES as u64));
    g.sample_size(20);

    g.bench_function("decode_only/json_field", |b| {
        let mut out = Vec::with_capacity(MESSAGES);
        b.iter(|| {
            out.clear();
            for (t, body) in &msgs {
                decode_one(&router, t, body, T0, &mut out);
            }
            black_box(out.len())
        })
    });

    g.bench_function("decode_and_ingest/json_field", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let mut core = TwinCore::new(&cfg, TickClock::new(T0, Duration::from_millis(1)));
                let mut buf = Vec::with_capacity(1_000);
                let start = twin::wallclock::monotonic();
                for (k, chunk) in msgs.chunks(1_000).enumerate() {
                    // One tick per 1,000 messages, all received within it.
                    let recv = T0 + k as i64 * 1_000_000 + 1;
                    for (t, body) in chunk {
                        buf.clear();
                        decode_one(&router, t, body, recv, &mut buf);
                        for s in buf.drain(..) {
                            core.push(s);
                        }
                    }
                    core.advance();
                    black_box(core.drain_events().len());
                }
                timed += twin::wallclock::since(start);
                assert_eq!(
                    core.stats().applied as usize,
                    MESSAGES,
                    "every sample reached the world"
                );
            }
            timed
        })
    });
    g.finish();

    // Timestamped arrays: 50 samples per message.
    let arrays: Vec<Vec<u8>> = (0..2_000)
        .map(|k| {
            let items: Vec<String> = (0..50)
                .map(|j| {
                    format!(
                        r#"{{"ts":{},"v":{}}}"#,
                        1_800_000_000_000u64 + k * 50 + j,
                        (k + j) % 97
                    )
                })
                .collect();
            format!("[{}]", items.join(",")).into_bytes()
        })
        .collect();
    let mut g = c.benchmark_group("mqtt_ingest");
    g.throughput(Throughput::Elements(2_000 * 50));
    g.sample_size(20);
    g.bench_function("decode_only/json_samples_x50", |b| {
        let mut out = Vec::with_capacity(100_000);
        b.iter(|| {
            out.clear();
            for body in &arrays {
                decode_one(&router, "plant/batch", body, T0, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
