//! Model files travel with the twin (issue 11): the built-in demo carries
//! its fault model inside the binary, so `twin demo` shows predictions from
//! any folder; a recording carries the model files its run ran, so
//! `twin replay REC.mcap` reproduces the predictions with no model file on
//! disk, and a config given on the command line runs its own files.

use std::path::Path;

use twin::recording::RecordingReader;

use crate::util::{root, run_ok, twin};

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read(path)
        .expect("events")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("event is JSON"))
        .collect()
}

fn count(ev: &[serde_json::Value], ty: &str) -> usize {
    ev.iter().filter(|e| e["type"] == ty).count()
}

#[test]
fn r11_the_built_in_demo_predicts_from_any_folder_and_its_recording_carries_the_model() {
    // A folder with nothing of the repository in it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, rec, replayed) = (
        dir.path().join("ev.jsonl"),
        dir.path().join("r.mcap"),
        dir.path().join("rep.jsonl"),
    );
    let mut c = twin();
    c.current_dir(dir.path())
        .args(["demo", "--headless", "--for", "70s", "--events"])
        .arg(&events)
        .arg("--record")
        .arg(&rec);
    run_ok(&mut c);
    let ev = lines_of(&events);
    let of_model = |m: &str| {
        ev.iter()
            .filter(|e| e["type"] == "prediction" && e["model"] == m)
            .count()
    };
    // The fault model, a row a second for 70 s; the setpoint model every
    // 10 s once its 30 s windows are full.
    assert!(of_model("line_faults") >= 60, "{}", of_model("line_faults"));
    assert!(
        of_model("line_setpoints") >= 3,
        "{}",
        of_model("line_setpoints")
    );
    // Its proposals are vetted by the physics: the run's optimiser summary.
    let summary = ev
        .iter()
        .find(|e| e["type"] == "optimiser")
        .expect("an optimiser summary");
    assert!(
        summary["rounds"].as_u64().expect("rounds") >= 2,
        "{summary}"
    );
    assert!(
        summary["candidates"]["tried"].as_u64().expect("tried") >= 2,
        "{summary}"
    );

    // The recording holds the very files the binary was built with.
    let reader = RecordingReader::open(std::slice::from_ref(&rec)).expect("recording opens");
    let files = reader.model_files();
    assert_eq!(files.len(), 2, "both model files attached");
    for (id, file) in [
        ("line_faults", "models/demo_fault.onnx"),
        ("line_setpoints", "models/demo_setpoint.onnx"),
    ] {
        let shipped = std::fs::read(root().join(file)).expect("model");
        let (_, bytes) = files.iter().find(|(m, _)| m == id).expect(id);
        assert_eq!(&bytes[..], &shipped[..], "{id}");
    }

    // Replayed without a config, from the same bare folder.
    let mut r = twin();
    r.current_dir(dir.path())
        .arg("replay")
        .arg(&rec)
        .arg("--events")
        .arg(&replayed);
    run_ok(&mut r);
    assert_eq!(
        std::fs::read(&events).expect("events"),
        std::fs::read(&replayed).expect("replay"),
        "the replay reproduces the run's predictions byte for byte"
    );
}

/// The demo config with a tiny fault model whose file sits beside it.
fn config_with_model(dir: &Path) -> std::path::PathBuf {
    let model = dir.join("m.onnx");
    std::fs::copy(root().join("tests/models/linear_softmax.onnx"), &model).expect("copy model");
    let mut text = crate::ml_stage::demo_without_models();
    text.push_str(
        r#"
[[models]]
id = "belt_faults"
path = "m.onnx"
task = "fault"
kind = "conveyor"
every = "1s"
  [[models.features]]
  role = "speed"
  [[models.features]]
  role = "motor_current"
  stat = "mean"
  window = "2s"
  [[models.features]]
  physics = "wip"
  [[models.features]]
  physics = "throughput"
  [models.output]
  name = "probabilities"
  classes = ["normal", "jam", "slip"]
"#,
    );
    let p = dir.join("plant.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

#[test]
fn r11_a_recording_replays_its_models_after_the_model_file_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_with_model(dir.path());
    let (events, rec, replayed) = (
        dir.path().join("ev.jsonl"),
        dir.path().join("r.mcap"),
        dir.path().join("rep.jsonl"),
    );
    run_ok(
        twin()
            .args(["demo", "--headless", "--for", "10s", "--config"])
            .arg(&cfg)
            .arg("--events")
            .arg(&events)
            .arg("--record")
            .arg(&rec),
    );
    assert!(count(&lines_of(&events), "prediction") > 0);

    // The model file is deleted: the recording's own copy runs.
    std::fs::remove_file(dir.path().join("m.onnx")).expect("remove model");
    run_ok(
        twin()
            .arg("replay")
            .arg(&rec)
            .arg("--events")
            .arg(&replayed),
    );
    assert_eq!(
        std::fs::read(&events).expect("events"),
        std::fs::read(&replayed).expect("replay")
    );

    // With the config named, its own files run: the missing one is a
    // located config error (78) that says where it looked.
    let out = twin()
        .arg("replay")
        .arg(&cfg)
        .arg(&rec)
        .arg("--events")
        .arg(&replayed)
        .output()
        .expect("twin runs");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("models[0].path"), "{err}");
    assert!(err.contains("m.onnx") && err.contains("not found"), "{err}");
}

#[test]
fn r11_a_recovered_recording_keeps_its_model_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_with_model(dir.path());
    let (rec, fixed) = (dir.path().join("r.mcap"), dir.path().join("fixed.mcap"));
    run_ok(
        twin()
            .args(["demo", "--headless", "--for", "5s", "--config"])
            .arg(&cfg)
            .arg("--record")
            .arg(&rec),
    );
    // Cut the file short, as a crash would.
    let bytes = std::fs::read(&rec).expect("recording");
    std::fs::write(&rec, &bytes[..bytes.len() * 2 / 3]).expect("cut");
    run_ok(twin().arg("recover").arg(&rec).arg("-o").arg(&fixed));
    let reader = RecordingReader::open(std::slice::from_ref(&fixed)).expect("recovered opens");
    let model = std::fs::read(dir.path().join("m.onnx")).expect("model");
    assert_eq!(reader.model_files().len(), 1);
    assert_eq!(&*reader.model_files()[0].1, &model[..]);
}
