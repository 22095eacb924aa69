//! The ML stage through the CLI (issue 11): a fault model bound to a machine
//! kind predicts for every machine of it, with physics features; the
//! predictions and alarms are deterministic and a replay reproduces them
//! byte for byte; a model that outputs NaN gives `error` events and nothing
//! else; a run whose model file does not fit its entry stops with a
//! located error before it starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{json_lines, live_and_replay, root, run_ok, time_ms, twin};

/// The demo config with its own `[[models]]` replaced by `models`, written
/// into `dir`.
fn demo_with(dir: &Path, models: &str) -> PathBuf {
    let mut text = demo_without_models();
    text.push('\n');
    text.push_str(models);
    let p = dir.join("plant.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// The demo config without its `[[models]]` section (the shipped fault
/// model), which starts at the `# --- Models` comment and runs to the end.
pub fn demo_without_models() -> String {
    let text =
        std::fs::read_to_string(root().join("plant-configs/packaging-line.toml")).expect("demo");
    match text.find("# --- Models") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

fn model(name: &str) -> String {
    root().join("tests/models").join(name).display().to_string()
}

/// A fault model (linear_softmax.onnx: 4 features, 3 classes) on every
/// conveyor, with two physics features and an alarm.
fn fault_model() -> String {
    format!(
        r#"
[[models]]
id = "belt_faults"
path = "{}"
task = "fault"
kind = "conveyor"
every = "1s"
on_bad_input = "uncertain"
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
  [models.alarm]
  threshold = 0.2
  deadband = 0.05
  on_delay = "2s"
  off_delay = "2s"
  priority = "high"
"#,
        model("linear_softmax.onnx")
    )
}

fn headless(cfg: &Path, events: &Path, record: Option<&Path>) {
    let mut c = twin();
    c.args(["demo", "--headless", "--for", "20s", "--config"])
        .arg(cfg)
        .arg("--events")
        .arg(events);
    if let Some(r) = record {
        c.arg("--record").arg(r);
    }
    run_ok(&mut c);
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    json_lines(&std::fs::read(path).expect("events"))
}

#[test]
fn r11_a_fault_model_predicts_for_every_machine_of_its_kind_and_replays_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_with(dir.path(), &fault_model());
    let (a, b, rec) = (
        dir.path().join("a.jsonl"),
        dir.path().join("b.jsonl"),
        dir.path().join("a.mcap"),
    );
    headless(&cfg, &a, Some(&rec));
    headless(&cfg, &b, None);
    let bytes = std::fs::read(&a).expect("a");
    assert_eq!(bytes, std::fs::read(&b).expect("b"), "same run, same bytes");

    let events = lines_of(&a);
    let preds: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "prediction")
        .collect();
    // One row per conveyor (infeed, outfeed) per second of 20 s.
    let mut per_machine: BTreeMap<String, usize> = BTreeMap::new();
    for p in &preds {
        assert_eq!(p["model"], "belt_faults");
        assert_eq!(p["task"], "fault");
        let risk = p["risk"].as_object().expect("risk per class");
        assert_eq!(risk.keys().collect::<Vec<_>>(), ["jam", "slip"]);
        let sum: f64 = risk.values().map(|v| v.as_f64().expect("number")).sum();
        assert!((0.0..=1.0).contains(&sum), "{p}");
        assert!(["normal", "jam", "slip"].contains(&p["class"].as_str().expect("class")));
        *per_machine
            .entry(p["machine"].as_str().expect("machine").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_machine.keys().collect::<Vec<_>>(),
        ["infeed", "outfeed"],
        "every conveyor, and only conveyors"
    );
    assert!(
        per_machine.values().all(|n| (19..=20).contains(n)),
        "{per_machine:?}"
    );
    // The 2 s window is not full on the first run (t = 0 s): uncertain, and
    // says why; later rows are good.
    let first = preds[0];
    assert_eq!(first["quality"], "uncertain", "{first}");
    assert!(
        first["reason"]
            .as_str()
            .expect("reason")
            .contains("feature 1"),
        "{first}"
    );
    assert!(preds.iter().skip(4).all(|p| p["quality"] == "good"));

    // The recording names the model file it ran, by hash.
    let r = twin::recording::RecordingReader::open(std::slice::from_ref(&rec)).expect("opens");
    let file = std::fs::read(root().join("tests/models/linear_softmax.onnx")).expect("model");
    assert_eq!(
        r.info().models,
        [(
            "belt_faults".to_string(),
            twin::recording::format::content_hash(&file)
        )]
    );

    // The replay of the recording gives the same bytes, predictions and all.
    let replayed = dir.path().join("replayed.jsonl");
    let out = twin()
        .args(["replay"])
        .arg(&cfg)
        .arg(&rec)
        .arg("--events")
        .arg(&replayed)
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&replayed).expect("replayed"), bytes);
}

#[test]
fn r11_a_nan_model_gives_error_events_and_no_prediction_or_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_with(
        dir.path(),
        &format!(
            r#"
[[models]]
id = "broken"
path = "{}"
task = "anomaly"
machine = "filler"
every = "2s"
  [[models.features]]
  role = "vibration"
  [[models.features]]
  role = "bearing_temperature"
  [[models.features]]
  role = "motor_current"
  [[models.features]]
  role = "speed"
  [models.output]
  threshold = 1.0
  [models.alarm]
  threshold = 1.0
"#,
            model("nan.onnx")
        ),
    );
    let events = dir.path().join("e.jsonl");
    headless(&cfg, &events, None);
    let all = lines_of(&events);
    let errors: Vec<_> = all
        .iter()
        .filter(|e| e["type"] == "error" && e["component"] == "model")
        .collect();
    assert_eq!(errors.len(), 10, "one per run of 20 s at every 2 s");
    assert_eq!(errors[0]["target"], "broken");
    assert_eq!(errors[0]["machine"], "filler");
    assert!(
        errors[0]["error"].as_str().expect("error").contains("NaN"),
        "{}",
        errors[0]
    );
    assert!(
        !all.iter()
            .any(|e| e["type"] == "prediction" || e["type"] == "alarm"),
        "no prediction and no alarm from NaN"
    );
}

#[test]
fn r11_a_run_with_a_model_that_does_not_fit_stops_with_a_located_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // wrong_shape.onnx takes 7 features; the entry gives 4.
    let text = fault_model().replace(&model("linear_softmax.onnx"), &model("wrong_shape.onnx"));
    let cfg = demo_with(dir.path(), &text);
    let out = twin()
        .args(["demo", "--headless", "--for", "2s", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("plant.toml:"), "located: {err}");
    assert!(err.contains("models[0].features"), "{err}");
    assert!(
        err.contains('7') && err.contains('4'),
        "says both widths: {err}"
    );
}

#[test]
fn r11_a_live_run_with_a_model_and_its_replay_agree_byte_for_byte() {
    // Live: the virtual plant over real Modbus and MQTT on loopback, the
    // twin on the wall clock, the model in its tick. The replay of its
    // recording writes the same predictions (and everything else).
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_with(dir.path(), &fault_model());
    let (bytes, replayed) = live_and_replay(dir.path(), &cfg, "6s");
    assert!(
        json_lines(&bytes).iter().any(|e| e["type"] == "prediction"),
        "the live run predicts"
    );
    assert_eq!(replayed, bytes);
}

#[test]
fn r11_the_residuals_feature_counts_the_lines_residuals() {
    // A model that reads only the line's residuals (in windows of 1 s to
    // 10 s): on a healthy line its input never changes; with a stuck eye
    // the residuals move it. (The feature once read 0 on every tick.)
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_with(
        dir.path(),
        &format!(
            r#"
[[models]]
id = "residual_watch"
path = "{}"
task = "fault"
every = "1s"
  [[models.features]]
  physics = "residuals"
  line = "line1"
  stat = "max"
  window = "10s"
  [[models.features]]
  physics = "residuals"
  line = "line1"
  stat = "mean"
  window = "10s"
  [[models.features]]
  physics = "residuals"
  line = "line1"
  stat = "mean"
  window = "5s"
  [[models.features]]
  physics = "residuals"
  line = "line1"
  stat = "mean"
  window = "1s"
  [models.output]
  classes = ["normal", "a", "b"]
"#,
            model("linear_softmax.onnx")
        ),
    );
    let scores = |scenario: Option<&str>| {
        let events = dir
            .path()
            .join(format!("{}.jsonl", scenario.unwrap_or("healthy")));
        let mut c = twin();
        c.args(["demo", "--headless", "--for", "90s", "--config"])
            .arg(&cfg)
            .arg("--events")
            .arg(&events);
        if let Some(s) = scenario {
            c.arg("--scenario")
                .arg(root().join(format!("plant-configs/scenarios/{s}.toml")));
        }
        run_ok(&mut c);
        let all = lines_of(&events);
        let residuals = all.iter().filter(|e| e["type"] == "residual").count();
        let distinct: std::collections::BTreeSet<String> = all
            .iter()
            .filter(|e| e["type"] == "prediction" && e["quality"] == "good")
            .map(|e| e["risk"].to_string())
            .collect();
        (residuals, distinct.len())
    };
    let (healthy_residuals, healthy_scores) = scores(None);
    let (stuck_residuals, stuck_scores) = scores(Some("stuck_eye"));
    assert_eq!(healthy_residuals, 0, "a healthy line has no residuals");
    assert_eq!(healthy_scores, 1, "no residuals: one input, one output");
    assert!(stuck_residuals > 0, "the stuck eye makes residuals");
    assert!(
        stuck_scores > 1,
        "{stuck_residuals} residuals never reached the model"
    );
}

/// The shared fault model with its runs off the tick thread, applied
/// 300 ms (3 ticks) after their rows are taken.
fn offloaded_fault_model() -> String {
    format!(
        "{}  [models.schedule]\n  apply_after = \"300ms\"\n",
        fault_model()
    )
}

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn r11_an_offloaded_model_says_what_the_tick_thread_would_three_ticks_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (here, off) = (dir.path().join("here"), dir.path().join("off"));
    std::fs::create_dir_all(&here).expect("mkdir");
    std::fs::create_dir_all(&off).expect("mkdir");
    let (a, b) = (here.join("a.jsonl"), off.join("b.jsonl"));
    headless(&demo_with(&here, &fault_model()), &a, None);
    headless(&demo_with(&off, &offloaded_fault_model()), &b, None);
    let (a, b) = (lines_of(&a), lines_of(&b));

    // Every prediction of the offloaded run is one of the tick thread's,
    // the same values, stamped 300 ms later, with when its rows were taken.
    let (pa, pb) = (of_type(&a, "prediction"), of_type(&b, "prediction"));
    assert!(pb.len() >= 36, "two conveyors, about 19 s: {}", pb.len());
    assert!(
        pa.len() >= pb.len() && pa.len() - pb.len() <= 2,
        "{} {}",
        pa.len(),
        pb.len()
    );
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(time_ms(&y["inputs_t"]), time_ms(&x["t"]), "{y}");
        assert_eq!(time_ms(&y["t"]), time_ms(&x["t"]) + 300, "{y}");
        assert!(
            x.get("inputs_t").is_none(),
            "only an offloaded model says it: {x}"
        );
        for k in ["machine", "risk", "class", "score", "quality", "reason"] {
            assert_eq!(x.get(k), y.get(k), "{k}: {x} against {y}");
        }
    }
    // Its alarms move on the same values, 300 ms later.
    let (aa, ab) = (of_type(&a, "alarm"), of_type(&b, "alarm"));
    assert!(!aa.is_empty(), "the 0.2 threshold raises on the demo line");
    for (x, y) in aa.iter().zip(&ab) {
        assert_eq!(time_ms(&y["t"]), time_ms(&x["t"]) + 300, "{y}");
        for k in ["machine", "class", "state", "value", "reason"] {
            assert_eq!(x.get(k), y.get(k), "{k}: {x} against {y}");
        }
    }
    assert!(aa.len() - ab.len() <= 1, "{} {}", aa.len(), ab.len());
}

#[test]
fn r11_an_offloaded_model_live_and_its_replay_agree_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_with(dir.path(), &offloaded_fault_model());
    let (bytes, replayed) = live_and_replay(dir.path(), &cfg, "6s");
    let preds = of_type(&json_lines(&bytes), "prediction").len();
    assert!(preds > 0, "the live run predicts");
    assert_eq!(replayed, bytes);
}

#[test]
fn r11_last_batch_is_the_batch_the_stage_ran() {
    // What benches/ml_stage.rs times raw `run()` on: nothing before the
    // model's first due tick, then one row of its 4 features per conveyor.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = demo_with(dir.path(), &fault_model());
    let cfg = twin::config::load_file(&path).unwrap_or_else(|r| panic!("config: {r}"));
    let conveyors = cfg
        .config
        .lines
        .iter()
        .map(|l| l.conveyors.len())
        .sum::<usize>();
    assert!(conveyors > 0, "the demo has conveyors");
    let mut d = twin::runtime::Driver::new(&cfg, 1_800_000_000_000_000_000)
        .with_models(&cfg)
        .expect("the model loads");
    assert!(twin::ml::stage::last_batch(d.core()).is_empty());
    // `every = "1s"`: due on one tick in ten.
    let mut sizes = Vec::new();
    for _ in 0..10 {
        d.step();
        sizes.push(twin::ml::stage::last_batch(d.core()).len());
    }
    assert_eq!(sizes.iter().filter(|&&n| n > 0).count(), 1, "{sizes:?}");
    assert!(sizes.contains(&(conveyors * 4)), "{sizes:?}");
}

/// A run's output is written into the shared part of an earlier run once
/// no event holds it (`outputs::reclaim`): predictions a consumer keeps
/// across many ticks must still say what they said on their own tick. The
/// same run twice, one encoding each tick's events at once and dropping
/// them, the other keeping every event to the end and encoding them then:
/// the same bytes.
#[test]
fn r11_predictions_kept_across_ticks_keep_their_values() {
    let model = root().join("tests/models/linear_softmax.onnx");
    // The Modbus source only declares the tags: the driver is fed samples
    // directly and never connects to its address.
    let mut text = String::from(
        "[plant]\nname = \"kept\"\ntick = \"100ms\"\nstale_after = \"1h\"\n\n[[sources.modbus]]\nname = \"d\"\naddress = \"127.0.0.1:502\"\nregisters = [\n",
    );
    for i in 0..3 {
        for (k, r) in ["a", "b", "c", "d"].iter().enumerate() {
            text.push_str(&format!(
                "  {{ tag = \"m{i}.{r}\", table = \"holding\", address = {} }},\n",
                i * 4 + k
            ));
        }
    }
    text.push_str("]\n");
    for i in 0..3 {
        text.push_str(&format!(
            "\n[[machines]]\nid = \"m{i}\"\nkind = \"pump\"\ntags = {{ a = \"m{i}.a\", b = \"m{i}.b\", c = \"m{i}.c\", d = \"m{i}.d\" }}\n"
        ));
    }
    text.push_str(&format!(
        "\n[[models]]\nid = \"faults\"\npath = \"{}\"\ntask = \"fault\"\nkind = \"pump\"\nevery = \"100ms\"\n  [[models.features]]\n  role = \"a\"\n  [[models.features]]\n  role = \"b\"\n  stat = \"mean\"\n  window = \"1s\"\n  [[models.features]]\n  role = \"c\"\n  stat = \"std\"\n  window = \"1s\"\n  [[models.features]]\n  role = \"d\"\n  stat = \"max\"\n  window = \"1s\"\n  [models.output]\n  name = \"probabilities\"\n  classes = [\"normal\", \"jam\", \"wear\"]\n",
        model.display()
    ));
    let cfg = twin::config::load_str(&root().join("kept.toml"), &text)
        .unwrap_or_else(|r| panic!("config: {r}"));
    let run = |keep: bool| -> (Vec<u8>, usize) {
        let mut d = twin::runtime::Driver::new(&cfg, 1_800_000_000_000_000_000)
            .with_models(&cfg)
            .expect("the model loads");
        let mut seed = 0x5eed_u64;
        let (mut bytes, mut kept, mut predictions) = (Vec::new(), Vec::new(), 0);
        for _ in 0..60 {
            let t = d.clock().now_ns() + 1;
            let samples = (0..cfg.tags.len())
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let v = (seed >> 40) as f64 / (1u64 << 24) as f64 * 8.0 - 4.0;
                    twin::twin::Sample::good(
                        twin::config::TagId(i as u32),
                        twin::twin::Value::Num(v),
                        t,
                        t,
                    )
                })
                .collect();
            d.push_batch(samples);
            let core = d.core_mut();
            core.advance();
            let events = core.drain_events();
            predictions += events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        twin::twin::TwinEvent::Ml(twin::ml::events::MlEvent::Prediction(_))
                    )
                })
                .count();
            if keep {
                kept.extend(events);
            } else {
                core.encode_events(&events, &mut bytes);
            }
        }
        if keep {
            d.core().encode_events(&kept, &mut bytes);
        }
        (bytes, predictions)
    };
    let (now, predictions) = run(false);
    let (later, _) = run(true);
    // Every tick after the first second predicts for all three pumps.
    assert!(predictions >= 3 * 50, "{predictions} predictions");
    assert_eq!(
        String::from_utf8_lossy(&now),
        String::from_utf8_lossy(&later),
        "events kept across ticks changed"
    );
}
