//! ONNX Runtime in the process (issue 11): the library search and its
//! errors as `twin check` reports them, a model's I/O, and runs that agree
//! with Python onnxruntime.
//!
//! The library and the Python side come from the project venv that
//! `scripts/setup.sh` installs (`make test` runs it); a missing venv fails
//! these tests rather than skipping them. The models are the committed
//! test models in tests/models/ (models/tools/make_test_models.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;
use twin::ml::io::{Elem, TensorSpec};
use twin::ml::runtime::{Runtime, SearchInputs};
use twin::ml::session::{ModelSession, NamedOutput, RunError};

use crate::util::root;

fn model(name: &str) -> PathBuf {
    root().join("tests/models").join(name)
}

fn runtime() -> &'static Runtime {
    Runtime::get(&SearchInputs::from_process(None, Some(&root()))).unwrap_or_else(|e| {
        panic!("the ML tests need the project venv's ONNX Runtime (run `make setup`): {e}")
    })
}

fn load(name: &str) -> ModelSession {
    ModelSession::load(runtime(), &model(name)).expect("load the test model")
}

/// Rows with irregular values, the same on every run: a fixed LCG.
fn rows(n: usize, f: usize, seed: u64) -> Array2<f32> {
    let mut s = seed;
    Array2::from_shape_fn((n, f), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
    })
}

fn venv_python() -> PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run `make setup` (scripts/setup.sh) to install the project venv",
        py.display()
    );
    py
}

/// The same rows through Python onnxruntime (models/tools/ort_run.py).
fn python_outputs(model: &Path, x: &Array2<f32>) -> Vec<NamedOutput> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("rows.f32");
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).expect("write rows");
    let out = Command::new(venv_python())
        .arg(root().join("models/tools/ort_run.py"))
        .arg(model)
        .arg(&input)
        .arg(x.nrows().to_string())
        .arg(x.ncols().to_string())
        .arg(dir.path())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "ort_run.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shapes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("shapes JSON");
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let dims: Vec<usize> = shape
                .as_array()
                .expect("shape array")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let raw = std::fs::read(dir.path().join(format!("{name}.f32"))).expect("read output");
            let vals: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let rows = dims.first().copied().unwrap_or(1);
            let cols = vals.len().checked_div(rows).unwrap_or(0);
            NamedOutput {
                name,
                values: Array2::from_shape_vec((rows, cols), vals).expect("output shape"),
            }
        })
        .collect()
}

/// Rust ORT and Python onnxruntime give the same outputs for `x`, within
/// 1e-5, with one row per input row.
fn assert_parity(name: &str, path: &Path, s: &mut ModelSession, x: &Array2<f32>) {
    let n = x.nrows();
    let rust = s.run("X", x.view()).expect("run");
    let mut py = python_outputs(path, x);
    py.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rust_sorted = rust.clone();
    rust_sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let names = |o: &[NamedOutput]| o.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&rust_sorted), names(&py), "{name}: outputs");
    for (r, p) in rust_sorted.iter().zip(&py) {
        assert_eq!(
            r.values.dim(),
            p.values.dim(),
            "{name} {}: shape at batch {n}",
            r.name
        );
        assert_eq!(
            r.values.nrows(),
            n,
            "{name} {}: one row per input row",
            r.name
        );
        let worst = r
            .values
            .iter()
            .zip(p.values.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "{name} {}: Rust and Python differ by {worst} at batch {n}",
            r.name
        );
    }
}

#[test]
fn ml_parity_rust_and_python_onnxruntime_agree_within_1e_5() {
    for (name, seed) in [("linear_softmax.onnx", 1), ("sklearn_logreg.onnx", 2)] {
        let mut s = load(name);
        for n in [1, 16, 256] {
            let x = rows(n, 4, seed * 1000 + n as u64);
            assert_parity(name, &model(name), &mut s, &x);
        }
    }
}

/// The shipped demo fault model (models/demo_fault.onnx, a multi-output
/// regression forest) gives the same risks under Rust ORT and Python
/// onnxruntime. Rows span the features' working ranges (temperatures near
/// 100, currents, eye fractions, WIP) so that the trees' splits go both ways.
#[test]
fn ml_parity_shipped_demo_fault_model_rust_and_python_agree_within_1e_5() {
    let path = root().join("models/demo_fault.onnx");
    let mut s = ModelSession::load(runtime(), &path).expect("load the demo fault model");
    let n_features = s.io().inputs[0].dims[1].expect("a fixed feature count");
    for n in [1, 16, 256] {
        let x = rows(n, n_features as usize, 11_000 + n as u64).mapv(|v| (v + 4.0) * 12.0);
        let rust = s.run("X", x.view()).expect("run");
        let probs = |o: &[NamedOutput]| {
            o.iter()
                .find(|o| o.name == "probabilities")
                .expect("a probabilities output")
                .values
                .clone()
        };
        let (r, p) = (probs(&rust), probs(&python_outputs(&path, &x)));
        assert_eq!(r.dim(), p.dim(), "shape at batch {n}");
        assert_eq!(r.nrows(), n, "one row per input row");
        let worst = r
            .iter()
            .zip(p.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "Rust and Python differ by {worst} at batch {n}"
        );
        assert!(
            r.iter().all(|v| (-1e-4..=1.0 + 1e-4).contains(v)),
            "every risk within 0..1 at batch {n}"
        );
    }
}

/// The shipped demo setpoint model (models/demo_setpoint.md) under both
/// runtimes, on rows drawn inside the ranges its training rows spanned (its
/// `twin.feature_ranges` metadata), so the trees' splits are exercised:
/// `[batch, 2]` belt speeds in m/s, within 1e-5.
#[test]
fn ml_parity_demo_setpoint_model_rust_and_python_agree_within_1e_5() {
    let path = root().join("models/demo_setpoint.onnx");
    let mut s = ModelSession::load(runtime(), &path).expect("load models/demo_setpoint.onnx");
    let meta = &s.io().metadata;
    assert_eq!(meta.get("twin.task").map(String::as_str), Some("setpoint"));
    let ranges: Vec<[f32; 2]> = serde_json::from_str(
        meta.get("twin.feature_ranges")
            .expect("the model's twin.feature_ranges metadata"),
    )
    .expect("[[min, max], ...]");
    let f = ranges.len();
    assert_eq!(s.io().inputs[0].dims, [None, Some(f as i64)]);
    for n in [1, 16, 256] {
        // rows() is uniform in [-4, 4): map it onto each feature's range.
        let mut x = rows(n, f, 7000 + n as u64);
        for (j, [lo, hi]) in ranges.iter().enumerate() {
            x.column_mut(j)
                .mapv_inplace(|v| lo + (v + 4.0) / 8.0 * (hi - lo));
        }
        assert_parity("demo_setpoint.onnx", &path, &mut s, &x);
        let out = s.run("X", x.view()).expect("run");
        assert_eq!(out[0].values.dim(), (n, 2), "two belt speeds per row");
        assert!(
            out[0].values.iter().all(|v| (0.0..=1.5).contains(v)),
            "belt speeds in m/s: {:?}",
            out[0].values
        );
    }
}

#[test]
fn ml_nan_model_output_comes_back_as_nan() {
    let mut s = load("nan.onnx");
    let out = s
        .run("X", rows(3, 4, 7).view())
        .expect("a NaN output is a result, not an error");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "score");
    assert_eq!(out[0].values.dim(), (3, 1));
    assert!(
        out[0].values.iter().all(|v| v.is_nan()),
        "{:?}",
        out[0].values
    );
}

#[test]
fn ml_model_io_reports_names_shapes_types_and_metadata() {
    let s = load("linear_softmax.onnx");
    let io = s.io();
    assert_eq!(
        io.inputs,
        [TensorSpec {
            name: "X".into(),
            dims: vec![None, Some(4)],
            elem: Elem::F32
        }]
    );
    assert_eq!(
        io.outputs,
        [TensorSpec {
            name: "probabilities".into(),
            dims: vec![None, Some(3)],
            elem: Elem::F32
        }]
    );
    assert_eq!(
        io.metadata.get("twin.classes").map(String::as_str),
        Some("normal,jam,bearing_wear")
    );
    let zipmap = load("sklearn_zipmap.onnx");
    let probs = &zipmap.io().outputs[1];
    assert_eq!(probs.name, "output_probability");
    assert!(
        matches!(probs.elem, Elem::NotATensor(_)),
        "ZipMap's output is not a tensor: {probs:?}"
    );
}

#[test]
fn ml_one_run_takes_a_batch_and_reads_labels_as_numbers() {
    let mut s = load("sklearn_logreg.onnx");
    let out = s.run("X", rows(16, 4, 3).view()).expect("run");
    let label = out
        .iter()
        .find(|o| o.name == "label")
        .expect("label output");
    let probs = out
        .iter()
        .find(|o| o.name == "probabilities")
        .expect("probabilities");
    assert_eq!(label.values.dim(), (16, 1));
    assert_eq!(probs.values.dim(), (16, 3));
    for (l, p) in label.values.column(0).iter().zip(probs.values.rows()) {
        let argmax = p
            .iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            )
            .0;
        assert_eq!(*l, argmax as f32, "the label is the likeliest class");
    }
    // The zipmap model's maps are left out; its labels are still read.
    let mut z = load("sklearn_zipmap.onnx");
    let out = z.run("X", rows(2, 4, 3).view()).expect("run");
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["output_label"]);
}

#[test]
fn ml_run_refuses_rows_that_do_not_fit_without_calling_ort() {
    let mut s = load("linear_softmax.onnx");
    assert_eq!(
        s.run("X", rows(2, 5, 1).view()),
        Err(RunError::Width {
            input: "X".into(),
            want: 4,
            got: 5
        })
    );
    assert_eq!(s.run("X", rows(0, 4, 1).view()), Err(RunError::EmptyBatch));
    assert_eq!(
        s.run("x", rows(1, 4, 1).view()),
        Err(RunError::UnknownInput("x".into()))
    );
    let mut fixed = load("fixed_batch.onnx");
    assert!(matches!(
        fixed.run("X", rows(3, 4, 1).view()),
        Err(RunError::Batch {
            want: 8,
            got: 3,
            ..
        })
    ));
    // A column slice is not contiguous: it is copied, not refused.
    let wide = rows(4, 6, 2);
    let view = wide.slice(ndarray::s![.., 1..5]);
    let sliced = s.run("X", view).expect("run a non-contiguous view");
    let copied = s.run("X", view.to_owned().view()).expect("run a copy");
    assert_eq!(sliced, copied);
}

/// One output through `run_output_into`, as rows.
fn run_one(s: &mut ModelSession, x: &Array2<f32>, output: &str) -> Array2<f32> {
    let mut out = vec![f32::NAN; 3];
    let shape = s
        .run_output_into("X", x.view(), output, &mut out)
        .expect("run one output");
    Array2::from_shape_vec(shape, out).expect("rows × columns")
}

/// `output` of a plain `run()` (ORT allocates every output).
fn plain(s: &mut ModelSession, x: &Array2<f32>, output: &str) -> Array2<f32> {
    s.run("X", x.view())
        .expect("run")
        .into_iter()
        .find(|o| o.name == output)
        .expect("the output")
        .values
}

#[test]
fn ml_runs_into_tensors_made_ahead_give_the_bits_of_plain_runs_at_every_batch_size() {
    // More batch sizes than the session keeps tensors for, twice round,
    // fresh rows every run: a tensor kept from another size, or rows left
    // from an earlier run, would show as a wrong shape or wrong values.
    for name in ["sklearn_logreg.onnx", "linear_softmax.onnx"] {
        let mut s = load(name);
        for round in 0..2u64 {
            for n in (1..=11).chain([256, 1, 16]) {
                let x = rows(n, 4, round * 1000 + n as u64);
                let got = run_one(&mut s, &x, "probabilities");
                assert_eq!(got.dim(), (n, 3), "{name}: batch {n}");
                let want = plain(&mut s, &x, "probabilities");
                let same = got
                    .iter()
                    .zip(want.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{name} batch {n}: {got:?} against {want:?}");
            }
        }
        assert!(s.runs_in_place("probabilities"), "{name}");
    }
    // int64 labels are run the plain way, and read as numbers.
    let mut s = load("sklearn_logreg.onnx");
    let x = rows(5, 4, 9);
    assert_eq!(run_one(&mut s, &x, "label"), plain(&mut s, &x, "label"));
    assert!(!s.runs_in_place("label"));
    // A fixed batch dimension is run in place too.
    let mut fixed = load("fixed_batch.onnx");
    let x = rows(8, 4, 4);
    assert_eq!(
        run_one(&mut fixed, &x, "score"),
        plain(&mut fixed, &x, "score")
    );
    assert!(fixed.runs_in_place("score"));
}

#[test]
fn ml_a_session_keeps_tensors_for_eight_batch_sizes_and_64_mib_at_most() {
    let mut s = load("linear_softmax.onnx");
    for n in 1..=10 {
        run_one(&mut s, &rows(n, 4, n as u64), "probabilities");
    }
    assert_eq!(s.kept_batch_sizes(), [10, 9, 8, 7, 6, 5, 4, 3]);
    // A size run again moves to the front; nothing is made again for it.
    run_one(&mut s, &rows(5, 4, 1), "probabilities");
    assert_eq!(s.kept_batch_sizes(), [5, 10, 9, 8, 7, 6, 4, 3]);
    // 1.3 M rows of 4 features and 3 outputs are 36 MB of tensors: two of
    // them are over 64 MiB, so only the latest is kept.
    let big = 1_300_000;
    let x = rows(big, 4, 2);
    let got = run_one(&mut s, &x, "probabilities");
    assert_eq!(got.dim(), (big, 3));
    assert_eq!(s.kept_batch_sizes(), [big, 5, 10, 9, 8, 7, 6, 4]);
    let x = rows(big + 1, 4, 3);
    let got = run_one(&mut s, &x, "probabilities");
    assert_eq!(got.dim(), (big + 1, 3));
    assert_eq!(s.kept_batch_sizes(), [big + 1]);
    // The rows are still the rows run: the last one's probabilities are
    // those of a plain run of it alone (within rounding: a batch of one may
    // take another matrix kernel).
    let last = x.slice(ndarray::s![big.., ..]).to_owned();
    let alone = plain(&mut s, &last, "probabilities");
    for (a, b) in got.slice(ndarray::s![big.., ..]).iter().zip(alone.iter()) {
        assert!((a - b).abs() < 1e-6, "{a} against {b}");
    }
}

#[test]
fn ml_an_output_shaped_unlike_its_declaration_still_gives_what_the_model_computes() {
    // `summary` is declared [N, 4] and is [1, 4]: at batch 1 the two agree.
    let mut s = load("misdeclared.onnx");
    let one = rows(1, 4, 5);
    assert_eq!(run_one(&mut s, &one, "summary"), one);
    assert!(s.runs_in_place("summary"));
    // At batch 3 the tensor made from the declaration is [3, 4]; ORT
    // replaces it with the [1, 4] the model computes (ONNX Runtime 1.31),
    // and that is what is read: the batch's mean, as a plain run gives it.
    let three = rows(3, 4, 6);
    let got = run_one(&mut s, &three, "summary");
    assert_eq!(got, plain(&mut s, &three, "summary"));
    assert_eq!(got.dim(), (1, 4));
    let mean = three.mean_axis(ndarray::Axis(0)).expect("mean");
    for (g, m) in got.iter().zip(mean.iter()) {
        assert!((g - m).abs() < 1e-6, "{got:?} against {mean:?}");
    }
    // And back at batch 1, and at 3 again, with fresh rows.
    assert_eq!(run_one(&mut s, &one, "summary"), one);
    let again = rows(3, 4, 7);
    assert_eq!(
        run_one(&mut s, &again, "summary"),
        plain(&mut s, &again, "summary")
    );
    // An output the model does not have is an error, not a panic.
    assert!(
        s.run_output_into("X", one.view(), "no_such", &mut Vec::new())
            .is_err()
    );
}

#[test]
fn ml_model_hash_is_the_sha256_of_the_file() {
    use sha2::Digest;
    let s = load("linear_softmax.onnx");
    let bytes = std::fs::read(model("linear_softmax.onnx")).expect("read model");
    let want: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(s.sha256_hex(), want);
    assert_eq!(s.sha256_hex().len(), 64);
}

#[test]
fn ml_a_file_that_is_not_a_model_is_an_error_naming_it() {
    let err = ModelSession::load(runtime(), &model("not_a_model.onnx")).expect_err("not a model");
    let msg = err.to_string();
    assert!(msg.contains("not_a_model.onnx"), "{msg}");
    assert!(msg.contains("not an ONNX model"), "{msg}");
    let err = ModelSession::load(runtime(), &model("no_such.onnx")).expect_err("missing");
    assert!(err.to_string().contains("not found"), "{err}");
}

// --- The library search, through `twin check` (each a fresh process) -----

const EX_UNAVAILABLE: i32 = 69;

/// A config with one model, next to the test models' folder.
fn config_with_model(dir: &Path) -> PathBuf {
    let cfg = dir.join("plant.toml");
    let text = format!(
        r#"[plant]
name = "ml"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:5021"
  [[sources.modbus.registers]]
  tag = "a"
  table = "holding"
  address = 0

[[machines]]
id = "m"
kind = "pump"
tags = {{ a = "a" }}

[[models]]
id = "softmax"
path = "{}"
task = "fault"
machine = "m"
inputs = ["a", "a", "a", "a"]
  [models.output]
  classes = ["normal", "jam", "bearing_wear"]
  [models.alarm]
  threshold = 0.7
"#,
        model("linear_softmax.onnx").display()
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

/// `twin check --short FILE` run by the binary at `exe`, from `cwd`.
fn check_with(exe: &Path, cwd: &Path, file: &Path, ort_dylib: Option<&Path>) -> Output {
    let mut cmd = Command::new(exe);
    cmd.arg("check")
        .arg("--short")
        .arg(file)
        .current_dir(cwd)
        .env_remove("TWIN_LOG")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("ORT_DYLIB_PATH");
    if let Some(p) = ort_dylib {
        cmd.env("ORT_DYLIB_PATH", p);
    }
    cmd.output().expect("run twin check")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ml_check_loads_a_fitting_model_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config_with_model(tmp.path());
    let out = check_with(Path::new(env!("CARGO_BIN_EXE_twin")), &root(), &cfg, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 model loaded"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn ml_missing_library_is_one_clear_error_saying_where_it_looked_and_how_to_fix_it() {
    // The binary's own folder is searched upwards for `.venv`, so the test
    // runs a link to it from a folder with no venv above it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("twin");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_twin"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_twin"), &exe).expect("copy the twin binary");
    }
    let cfg = config_with_model(tmp.path());
    let out = check_with(&exe, tmp.path(), &cfg, None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_UNAVAILABLE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one message:\n{stderr}");
    for want in [
        "ONNX Runtime library was not found",
        "ORT_DYLIB_PATH (not set)",
        "[ml] runtime",
        ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*",
        &tmp.path().display().to_string(),
        "make setup-build",
        "bash scripts/setup.sh --build-only",
        "set ORT_DYLIB_PATH",
    ] {
        assert!(stderr.contains(want), "{want:?} missing from:\n{stderr}");
    }
    assert!(
        stderr.starts_with(&format!("{}: error: ", cfg.display())),
        "{stderr}"
    );
}

#[test]
fn ml_a_config_without_models_never_touches_the_library() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("plant.toml");
    std::fs::write(&cfg, crate::ml_stage::demo_without_models()).expect("write config");
    let out = check_with(
        Path::new(env!("CARGO_BIN_EXE_twin")),
        &root(),
        &cfg,
        Some(Path::new("/nonexistent/libonnxruntime.so")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn ml_a_wrong_library_file_is_a_clear_error_not_a_crash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config_with_model(tmp.path());
    let exe = Path::new(env!("CARGO_BIN_EXE_twin"));
    // Not a library at all.
    let junk = tmp.path().join("libonnxruntime.so");
    std::fs::write(&junk, b"not an ELF file").expect("write");
    // A real library, but not ONNX Runtime.
    let lib = runtime().library().path.clone();
    let other = lib.with_file_name("libonnxruntime_providers_shared.so");
    let mut cases = vec![(junk, "failed to load from")];
    if other.is_file() {
        cases.push((other, "does not export `OrtGetApiBase`"));
    }
    // ONNX Runtime's entry point, but a version older than the API we use.
    if let Some(old) = fake_runtime(tmp.path(), "1.10.0") {
        cases.push((old, "expected version >= '1.24.x', but got '1.10.0'"));
    }
    for (lib, why) in cases {
        let out = check_with(exe, &root(), &cfg, Some(&lib));
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(EX_UNAVAILABLE),
            "{}: {stderr}",
            lib.display()
        );
        assert!(
            stderr.contains("is not a usable ONNX Runtime library"),
            "{stderr}"
        );
        assert!(stderr.contains("(from ORT_DYLIB_PATH)"), "{stderr}");
        assert!(stderr.contains(why), "{why:?} missing from:\n{stderr}");
        assert!(stderr.contains("unset ORT_DYLIB_PATH"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A library that exports ONNX Runtime's entry point and claims `version`,
/// built with the C compiler setup.sh installs; `None` without one.
fn fake_runtime(dir: &Path, version: &str) -> Option<PathBuf> {
    let src = dir.join("fake_ort.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdint.h>\n\
             static const void *get_api(uint32_t v) {{ (void)v; return 0; }}\n\
             static const char *version(void) {{ return \"{version}\"; }}\n\
             static const struct {{ const void *(*get_api)(uint32_t); const char *(*version)(void); }}\n\
             base = {{ get_api, version }};\n\
             const void *OrtGetApiBase(void) {{ return &base; }}\n"
        ),
    )
    .ok()?;
    let lib = dir.join(format!("libfake_ort-{version}.so"));
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(lib)
}

#[test]
fn ml_check_reports_a_wrong_shape_at_the_config_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_twin"))
        .args([
            "check",
            "--short",
            "tests/configs/broken/model_io_mismatch.toml",
        ])
        .current_dir(root())
        .env_remove("TWIN_LOG")
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run twin check");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("models[0].inputs"))
        .unwrap_or_else(|| panic!("no models[0].inputs error:\n{stderr}"));
    assert!(
        line.starts_with("tests/configs/broken/model_io_mismatch.toml:38:11: error: "),
        "{line}"
    );
    assert!(line.contains("the model takes 7 features"), "{line}");
    assert!(line.contains("the config gives 4"), "{line}");
    let line = stderr
        .lines()
        .find(|l| l.contains("models[0].output.classes"))
        .unwrap_or_else(|| panic!("no models[0].output.classes error:\n{stderr}"));
    assert!(
        line.starts_with("tests/configs/broken/model_io_mismatch.toml:40:3: error: "),
        "{line}"
    );
    assert!(line.contains("has 5 columns"), "{line}");
    assert!(
        !stderr.contains("models[3]"),
        "the fitting model has no error:\n{stderr}"
    );
}

#[test]
fn ml_check_no_models_skips_the_files_and_the_library() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("plant.toml");
    let toml = std::fs::read_to_string(config_with_model(tmp.path()))
        .expect("read config")
        .replace(
            &model("linear_softmax.onnx").display().to_string(),
            "missing.onnx",
        );
    std::fs::write(&cfg, toml).expect("write config");
    let exe = Path::new(env!("CARGO_BIN_EXE_twin"));
    let out = Command::new(exe)
        .args(["check", "--no-models"])
        .arg(&cfg)
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .env_remove("TWIN_LOG")
        .output()
        .expect("run twin check");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 model not loaded"),
        "{}",
        text(&out.stdout)
    );
    // Without the flag the same file is checked, and the missing model found.
    let out = check_with(exe, &root(), &cfg, None);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("models[0].path: model file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ml_test_models_are_what_the_generator_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(venv_python())
        .arg(root().join("models/tools/make_test_models.py"))
        .arg(tmp.path())
        .output()
        .expect("run make_test_models.py");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("read generated models")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut committed: Vec<String> = std::fs::read_dir(root().join("tests/models"))
        .expect("read tests/models")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    assert_eq!(
        names, committed,
        "tests/models/ holds exactly what the script writes"
    );
    for n in &names {
        let fresh = std::fs::read(tmp.path().join(n)).expect("read generated");
        let kept = std::fs::read(root().join("tests/models").join(n)).expect("read committed");
        assert!(
            fresh == kept,
            "tests/models/{n} differs from what models/tools/make_test_models.py writes; \
             rerun it (`.venv/bin/python models/tools/make_test_models.py tests/models`) and commit"
        );
    }
}
