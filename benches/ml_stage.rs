//! The ML stage through the core (issue 11), two scenarios:
//!
//! - `ml_stage/cost_per_row`: the whole inference path on one tick, features
//!   sampled and filled into the batch, one `run()`, outputs turned into
//!   `prediction` events, for n machines sharing one model (n = 1, 16, 256).
//!   Measured as the core's tick with the model (`with_model`) and without
//!   it (`without_model`, the same plant: ingest, quality, emit), so the
//!   stage's cost is their difference; against `ort_raw`, ORT's `run()` on
//!   a made-up [n, features] batch in the same process (as in
//!   benches/ml_run.rs), and `ort_raw_stage_rows`, the same on the batch
//!   the stage itself ran on its last tick, run over and over, and
//!   `ort_raw_stage_ticks`, ORT on the stage's own batches of consecutive
//!   ticks in turn (what the "on the same batch" asks: a tree
//!   ensemble's cost depends on the values it walks, and one batch run
//!   over and over teaches the CPU's branch predictors its paths, which
//!   fresh rows every tick never do; docs/benchmarks.md), and
//!   `ort_in_place_stage_ticks`, ORT on the same batches with its input and
//!   output tensors made once and reused, as the stage calls it (ORT's
//!   cheapest call, for reference; the goal is stated against `run()`).
//!   Events are drained, not encoded: JSON is the sinks' cost, the same for
//!   every event type (benches/core.rs measures it).
//! - `ml_stage/scale`: 200 machines sharing 5 fault models at a 10 Hz tick,
//!   each model reading 4 features of each machine (value, 30 s mean, 30 s
//!   std, 10 s slope), all five due on the same tick every second, with 800
//!   fresh samples a tick. Besides criterion's mean of one 10-tick second,
//!   the bench times 1,200 ticks one by one and prints their p50, p99 and
//!   maximum (the "tick-time p99").
//!
//! Cost per row runs two models: tests/models/linear_softmax.onnx (4
//! features → 3 classes) and models/demo_fault.onnx (a 40-tree forest, 24
//! features → 6 classes, the goal's figures); scale runs the first. Every
//! model has the demo fault model's alarm block (an ISA-18.2 alarm per
//! fault class, updated on every run), so the path timed is the one an
//! installed fault model takes.
//! Needs the project venv's ONNX Runtime (`make setup-build`).
//!
//! Run: `cargo bench --bench ml_stage -- --warm-up-time 1 --measurement-time 3`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use ort::session::{OutputSelector, RunOptions};
use ort::value::{Tensor, TensorRef};
use twin::config::{LoadedConfig, TagId, load_str};
use twin::ml::runtime::{Runtime, SearchInputs};
use twin::ml::stage as ml_stage;
use twin::runtime::Driver;
use twin::twin::{Sample, TwinEvent, Value};

const T0: i64 = 1_800_000_000_000_000_000;
const ROLES: [&str; 4] = ["a", "b", "c", "d"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fault model file and what its entry needs.
struct BenchModel {
    name: &'static str,
    path: &'static str,
    features: &'static str,
    n_features: usize,
    classes: &'static str,
}

/// The test model: a linear layer and a softmax, 42 ns a row.
const LINEAR: BenchModel = BenchModel {
    name: "linear_softmax",
    path: "tests/models/linear_softmax.onnx",
    features: VALUES,
    n_features: 4,
    classes: "\"normal\", \"jam\", \"wear\"",
};

/// The demo's fault model: a random forest of 40 trees over 24 features,
/// 6 classes: what a plant's fault model costs.
const DEMO: BenchModel = BenchModel {
    name: "demo_fault",
    path: "models/demo_fault.onnx",
    features: DEMO_FEATURES,
    n_features: 24,
    classes: "\"normal\", \"jam\", \"belt_slip\", \"eye_stuck\", \"motor_overheat\", \"bearing_wear\"",
};

/// `machines` pumps with tags `m{i}.{a,b,c,d}`, and `models` fault models
/// bound to every pump, each with `features` (TOML of its feature tables).
fn plant(machines: usize, models: usize, every: &str, features: &'static str) -> LoadedConfig {
    plant_with(machines, models, every, &BenchModel { features, ..LINEAR })
}

fn plant_with(machines: usize, models: usize, every: &str, bm: &BenchModel) -> LoadedConfig {
    let features = bm.features;
    let mut t = String::from(
        "[plant]\nname = \"ml-bench\"\ntick = \"100ms\"\nstale_after = \"1h\"\n\n[[sources.modbus]]\nname = \"d\"\naddress = \"127.0.0.1:502\"\nregisters = [\n",
    );
    for i in 0..machines {
        for (k, r) in ROLES.iter().enumerate() {
            let _ = writeln!(
                t,
                "  {{ tag = \"m{i}.{r}\", table = \"holding\", address = {} }},",
                i * 4 + k
            );
        }
    }
    t.push_str("]\n");
    for i in 0..machines {
        let _ = writeln!(
            t,
            "\n[[machines]]\nid = \"m{i}\"\nkind = \"pump\"\ntags = {{ a = \"m{i}.a\", b = \"m{i}.b\", c = \"m{i}.c\", d = \"m{i}.d\" }}"
        );
    }
    let model = root().join(bm.path);
    for j in 0..models {
        let _ = write!(
            t,
            "\n[[models]]\nid = \"faults{j}\"\npath = \"{}\"\ntask = \"fault\"\nkind = \"pump\"\nevery = \"{every}\"\n{features}  [models.output]\n  name = \"probabilities\"\n  classes = [{}]\n  [models.alarm]\n  threshold = 0.7\n  deadband = 0.2\n  on_delay = \"20s\"\n  off_delay = \"30s\"\n",
            model.display(),
            bm.classes
        );
    }
    load_str(&root().join("ml-bench.toml"), &t).unwrap_or_else(|r| panic!("bench config: {r}"))
}

const VALUES: &str = "  [[models.features]]\n  role = \"a\"\n  [[models.features]]\n  role = \"b\"\n  [[models.features]]\n  role = \"c\"\n  [[models.features]]\n  role = \"d\"\n";

/// 24 features: each of the 4 roles as its value, 10 s mean, max and std,
/// 30 s slope and its value 5 s ago.
const DEMO_FEATURES: &str = concat!(
    "  [[models.features]]\n  role = \"a\"\n",
    "  [[models.features]]\n  role = \"a\"\n  stat = \"mean\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"a\"\n  stat = \"max\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"a\"\n  stat = \"std\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"a\"\n  stat = \"slope\"\n  window = \"30s\"\n",
    "  [[models.features]]\n  role = \"a\"\n  stat = \"lag\"\n  lag = \"5s\"\n",
    "  [[models.features]]\n  role = \"b\"\n",
    "  [[models.features]]\n  role = \"b\"\n  stat = \"mean\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"b\"\n  stat = \"max\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"b\"\n  stat = \"std\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"b\"\n  stat = \"slope\"\n  window = \"30s\"\n",
    "  [[models.features]]\n  role = \"b\"\n  stat = \"lag\"\n  lag = \"5s\"\n",
    "  [[models.features]]\n  role = \"c\"\n",
    "  [[models.features]]\n  role = \"c\"\n  stat = \"mean\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"c\"\n  stat = \"max\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"c\"\n  stat = \"std\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"c\"\n  stat = \"slope\"\n  window = \"30s\"\n",
    "  [[models.features]]\n  role = \"c\"\n  stat = \"lag\"\n  lag = \"5s\"\n",
    "  [[models.features]]\n  role = \"d\"\n",
    "  [[models.features]]\n  role = \"d\"\n  stat = \"mean\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"d\"\n  stat = \"max\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"d\"\n  stat = \"std\"\n  window = \"10s\"\n",
    "  [[models.features]]\n  role = \"d\"\n  stat = \"slope\"\n  window = \"30s\"\n",
    "  [[models.features]]\n  role = \"d\"\n  stat = \"lag\"\n  lag = \"5s\"\n",
);

const WINDOWS: &str = "  [[models.features]]\n  role = \"a\"\n  [[models.features]]\n  role = \"b\"\n  stat = \"mean\"\n  window = \"30s\"\n  [[models.features]]\n  role = \"c\"\n  stat = \"std\"\n  window = \"30s\"\n  [[models.features]]\n  role = \"d\"\n  stat = \"slope\"\n  window = \"10s\"\n";

/// A value per tag per tick, irregular and the same on every run.
fn samples(tags: usize, t_ns: i64, seed: &mut u64) -> Vec<Sample> {
    (0..tags)
        .map(|i| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((*seed >> 40) as f64 / (1u64 << 24) as f64) * 8.0 - 4.0;
            Sample::good(TagId(i as u32), Value::Num(v), t_ns, t_ns)
        })
        .collect()
}

/// A driver for `cfg`, with its models or without, after `warm` ticks of
/// samples (so every window is full).
fn driver(cfg: &LoadedConfig, models: bool, warm: u64, seed: &mut u64) -> Driver {
    let mut d = Driver::new(cfg, T0);
    if models {
        d = d.with_models(cfg).expect("models load");
    }
    let tags = cfg.tags.len();
    for _ in 0..warm {
        let t = d.clock().now_ns() + 1;
        d.push_batch(samples(tags, t, seed));
        d.step();
    }
    d
}

/// One tick of the core after fresh samples; its events drained (not
/// encoded).
fn tick(d: &mut Driver, out: &mut Vec<TwinEvent>, tags: usize, seed: &mut u64) -> usize {
    let t = d.clock().now_ns() + 1;
    d.push_batch(samples(tags, t, seed));
    let core = d.core_mut();
    core.advance();
    core.drain_events_into(out);
    out.len()
}

fn cost_per_row(c: &mut Criterion) {
    for bm in [LINEAR, DEMO] {
        cost_per_row_of(c, &bm);
    }
}

fn cost_per_row_of(c: &mut Criterion, bm: &BenchModel) {
    let rt = Runtime::get(&SearchInputs::from_process(None, Some(&root())))
        .expect("the bench needs the project venv's ONNX Runtime (make setup-build)");
    let bytes = std::fs::read(root().join(bm.path)).expect("read the model");
    let mut raw = rt
        .session_builder()
        .and_then(|mut b| b.commit_from_memory(&bytes))
        .expect("raw session");
    let mut g = c.benchmark_group(format!("ml_stage/cost_per_row/{}", bm.name));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let width = bm.n_features;
    for n in [1usize, 16, 256] {
        g.throughput(Throughput::Elements(n as u64));
        let cfg = plant_with(n, 1, "100ms", bm);
        // 31 s of ticks: the 30 s windows full, every row good.
        let mut drivers = [true, false].map(|models| {
            let mut d = driver(&cfg, models, 310, &mut seed);
            let mut out = Vec::new();
            tick(&mut d, &mut out, cfg.tags.len(), &mut seed);
            let ml = out.iter().filter(|e| matches!(e, TwinEvent::Ml(_))).count();
            assert_eq!(ml, if models { n } else { 0 }, "a prediction per machine");
            (d, out)
        });
        let made_up =
            Array2::from_shape_fn((n, width), |(i, j)| (i * width + j) as f32 * 0.01 - 1.0);
        // The rows the stage ran on its last tick: a forest's `run()` costs
        // what its trees' paths cost, and those depend on the values.
        let stage_rows =
            Array2::from_shape_vec((n, width), ml_stage::last_batch(drivers[0].0.core()))
                .expect("the stage's batch is [n, width]");
        // The batches the stage builds on its next ticks, one per tick, for
        // `ort_raw_stage_ticks`: ORT on each of them in turn, as the stage
        // runs them. Enough of them that the branch predictors cannot learn
        // the trees' paths through them, as they do through one batch run
        // over and over (`ort_raw_stage_rows`): the stage never runs the
        // same batch twice.
        let count = match n {
            1 => 4000,
            16 => 1000,
            _ => 200,
        };
        let batches: Vec<Array2<f32>> = (0..count)
            .map(|_| {
                let (d, out) = &mut drivers[0];
                tick(d, out, cfg.tags.len(), &mut seed);
                Array2::from_shape_vec((n, width), ml_stage::last_batch(d.core()))
                    .expect("the stage's batch is [n, width]")
            })
            .collect();
        let mut k = 0usize;
        g.bench_function(BenchmarkId::new("ort_raw_stage_ticks", n), |b| {
            b.iter(|| {
                k = if k + 1 == batches.len() { 0 } else { k + 1 };
                raw_run(&mut raw, &batches[k])
            })
        });
        // `ort_in_place_stage_ticks`: the same, with the input tensor and the
        // output's tensor made once and reused (the rows copied in), as the
        // stage runs ORT (src/ml/session.rs, `InPlace`): ORT's cheapest call
        // on these batches, for reference beside the plain `run()` the goal
        // is stated against.
        let classes = {
            let t = TensorRef::from_array_view(made_up.view()).expect("tensor");
            let out = raw.run(ort::inputs!["X" => t]).expect("run");
            let (shape, _) = out["probabilities"]
                .try_extract_tensor::<f32>()
                .expect("probabilities");
            usize::try_from(shape[1]).expect("classes")
        };
        let mut input =
            Tensor::from_array(([n, width], vec![0.0f32; n * width])).expect("input tensor");
        let options = RunOptions::new().expect("run options").with_outputs(
            OutputSelector::no_default()
                .with("probabilities")
                .preallocate(
                    "probabilities",
                    Tensor::from_array(([n, classes], vec![0.0f32; n * classes])).expect("output"),
                ),
        );
        g.bench_function(BenchmarkId::new("ort_in_place_stage_ticks", n), |b| {
            b.iter(|| {
                k = if k + 1 == batches.len() { 0 } else { k + 1 };
                let (_, data) = input.extract_tensor_mut();
                data.copy_from_slice(batches[k].as_slice().expect("standard layout"));
                let out = raw
                    .run_with_options(ort::inputs!["X" => &input], &options)
                    .expect("run");
                let (_, probs) = out["probabilities"]
                    .try_extract_tensor::<f32>()
                    .expect("probabilities");
                black_box(probs[0])
            })
        });
        for (name, x) in [("ort_raw", &made_up), ("ort_raw_stage_rows", &stage_rows)] {
            g.bench_with_input(BenchmarkId::new(name, n), x, |b, x| {
                b.iter(|| raw_run(&mut raw, x))
            });
        }
        interleaved(
            bm.name,
            n,
            &mut drivers,
            &batches,
            &mut raw,
            cfg.tags.len(),
            &mut seed,
        );
        for ((d, out), name) in drivers.iter_mut().zip(["with_model", "without_model"]) {
            let tags = cfg.tags.len();
            let before = ml_stage::compute_time(d.core());
            let mut ticks = 0u64;
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    ticks += 1;
                    black_box(tick(d, out, tags, &mut seed))
                })
            });
            // ORT's `run()` as the stage timed it inside the tick: what the
            // tick's other work costs the model's own data in the caches.
            let after = ml_stage::compute_time(d.core());
            if let (Some(a), Some(b)) = (after.models.first(), before.models.first()) {
                eprintln!(
                    "ml_stage/cost_per_row/{}/{n}: run() inside the tick {:.2} us ({ticks} ticks)",
                    bm.name,
                    a.1.saturating_sub(b.1).as_secs_f64() * 1e6 / ticks.max(1) as f64
                );
            }
        }
    }
    g.finish();
}

/// ORT's `run()` on `x`, its probabilities read in place: the raw cost the
/// stage is held to.
fn raw_run(raw: &mut ort::session::Session, x: &Array2<f32>) -> f32 {
    let t = TensorRef::from_array_view(x.view()).expect("tensor");
    let out = raw.run(ort::inputs!["X" => t]).expect("run");
    let (_, probs) = out["probabilities"]
        .try_extract_tensor::<f32>()
        .expect("probabilities");
    black_box(probs[0])
}

/// The stage's cost against ORT's on the stage's own batches, measured
/// interleaved: each round times a stretch of ticks with the model, one
/// without it, and one of ORT alone on the batches, back to back, so that
/// a change in the machine's speed (a neighbour, the clock) during the run
/// falls on all three alike. Prints the median over rounds of
/// (with − without) ÷ ORT, and its range between the quartiles; the
/// figure docs/benchmarks.md quotes for the 1.2× goal.
fn interleaved(
    name: &str,
    n: usize,
    drivers: &mut [(Driver, Vec<TwinEvent>); 2],
    batches: &[Array2<f32>],
    raw: &mut ort::session::Session,
    tags: usize,
    seed: &mut u64,
) {
    let per = match n {
        1 => 400,
        16 => 100,
        _ => 12,
    };
    let mut k = 0usize;
    let mut ratios = Vec::new();
    let mut stage_us = Vec::new();
    let mut raw_us = Vec::new();
    for _ in 0..41 {
        let mut took = [0.0f64; 3];
        for (j, (d, out)) in drivers.iter_mut().enumerate() {
            let start = twin::wallclock::monotonic();
            for _ in 0..per {
                black_box(tick(d, out, tags, seed));
            }
            took[j] = twin::wallclock::since(start).as_secs_f64();
        }
        let start = twin::wallclock::monotonic();
        for _ in 0..per {
            k = if k + 1 == batches.len() { 0 } else { k + 1 };
            raw_run(raw, &batches[k]);
        }
        took[2] = twin::wallclock::since(start).as_secs_f64();
        let stage = (took[0] - took[1]) / per as f64;
        let ort = took[2] / per as f64;
        ratios.push(stage / ort);
        stage_us.push(stage * 1e6);
        raw_us.push(ort * 1e6);
    }
    for v in [&mut ratios, &mut stage_us, &mut raw_us] {
        v.sort_by(f64::total_cmp);
    }
    let q = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "ml_stage/cost_per_row/{name}/{n}: interleaved, {} rounds: stage {:.2} us, ORT on the stage's batches {:.2} us, stage / ORT median {:.3} (quartiles {:.3}..{:.3})",
        ratios.len(),
        q(&stage_us, 0.5),
        q(&raw_us, 0.5),
        q(&ratios, 0.5),
        q(&ratios, 0.25),
        q(&ratios, 0.75),
    );
}

const MACHINES: usize = 200;
const MODELS: usize = 5;

fn scale(c: &mut Criterion) {
    let cfg = plant(MACHINES, MODELS, "1s", WINDOWS);
    let tags = cfg.tags.len();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // 35 s of ticks: the 30 s windows full.
    let mut d = driver(&cfg, true, 350, &mut seed);
    let mut out = Vec::new();

    // Tick by tick, each timed; a tick is the driver's whole step (ingest of
    // 800 samples, every stage, events encoded), as a live run has it.
    let mut times: Vec<Duration> = Vec::with_capacity(1200);
    let mut predictions = 0usize;
    for _ in 0..1200 {
        let t = d.clock().now_ns() + 1;
        let batch = samples(tags, t, &mut seed);
        let start = twin::wallclock::monotonic();
        d.push_batch(batch);
        let step = d.step();
        predictions += step.events.len();
        times.push(twin::wallclock::since(start));
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    eprintln!(
        "ml_stage/scale: {MACHINES} machines x {MODELS} models, 10 Hz, {} ticks: p50 {:?}, p99 {:?}, max {:?}; {} events",
        times.len(),
        pct(0.5),
        pct(0.99),
        times[times.len() - 1],
        predictions
    );

    let mut g = c.benchmark_group("ml_stage/scale");
    g.throughput(Throughput::Elements((MACHINES * MODELS) as u64));
    // One second: ten ticks, one of which runs all five models.
    g.bench_function("one_second_200x5", |b| {
        b.iter(|| {
            let mut n = 0;
            for _ in 0..10 {
                n += tick(&mut d, &mut out, tags, &mut seed);
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, cost_per_row, scale);
criterion_main!(benches);
