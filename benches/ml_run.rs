//! ONNX Runtime's `run()` on one fixed model at batch 1, 16 and 256 (issue
//! 11): the baseline the whole inference path (features → batch → `run()` →
//! outputs) is held to, "≤ 1.2× the cost per row of raw `run()`".
//!
//! Two sides on the same session options (docs/ml.md, "Runtime and
//! threads": one thread, sequential, all optimisations, deterministic compute):
//! - `ort_raw`: `ort::Session::run` on a tensor view of the rows, reading the
//!   output in place: the floor.
//! - `model_session`: `ModelSession::run`, the twin's wrapper (shape checks,
//!   outputs copied into `[rows, columns]` f32 arrays).
//!
//! The model is tests/models/linear_softmax.onnx (4 features → 3 class
//! probabilities, models/tools/make_test_models.py). The same model under
//! Python onnxruntime: `models/tools/bench_ort.py` (docs/benchmarks.md,
//! "ONNX Runtime"). Needs the project venv's library (`make setup-build`).
//!
//! Run: `cargo bench --bench ml_run -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use ort::value::TensorRef;
use twin::ml::runtime::{Runtime, SearchInputs};
use twin::ml::session::ModelSession;

const FEATURES: usize = 4;

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/models/linear_softmax.onnx")
}

/// Rows with irregular values, the same on every run.
fn rows(n: usize) -> Array2<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    Array2::from_shape_fn((n, FEATURES), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
    })
}

fn ml_run(c: &mut Criterion) {
    let rt = Runtime::get(&SearchInputs::from_process(None, None))
        .expect("the bench needs the project venv's ONNX Runtime (make setup-build)");
    let bytes = std::fs::read(model()).expect("read the model");
    let mut raw = rt
        .session_builder()
        .and_then(|mut b| b.commit_from_memory(&bytes))
        .expect("raw session");
    let mut wrapped = ModelSession::load(rt, &model()).expect("model session");

    let mut g = c.benchmark_group("ml_run");
    for n in [1usize, 16, 256] {
        let x = rows(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("ort_raw", n), &x, |b, x| {
            b.iter(|| {
                let t = TensorRef::from_array_view(x.view()).expect("tensor");
                let out = raw.run(ort::inputs!["X" => t]).expect("run");
                let (_, probs) = out["probabilities"]
                    .try_extract_tensor::<f32>()
                    .expect("probabilities");
                black_box(probs[0])
            })
        });
        g.bench_with_input(BenchmarkId::new("model_session", n), &x, |b, x| {
            b.iter(|| {
                let out = wrapped.run("X", x.view()).expect("run");
                black_box(out[0].values[[0, 0]])
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ml_run);
criterion_main!(benches);
