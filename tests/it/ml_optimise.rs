//! The setpoint optimiser through the CLI (issue 11): a setpoint model's
//! proposals on the demo line are vetted by the physics lookahead and the
//! best becomes a `proposal` event `apply_after` later; a candidate that
//! throws bottles off the corner is vetoed `lost_product`; a model that
//! outputs NaN gives `error` events and no proposal; a live run and the
//! replay of its recording agree byte for byte; a bad `[models.optimise]`
//! is a located config error.

use std::path::{Path, PathBuf};

use crate::ml_stage::demo_without_models;
use crate::util::{json_lines, live_and_replay, root, run_ok, twin};

fn model(name: &str) -> String {
    root().join("tests/models").join(name).display().to_string()
}

/// A setpoint model on the demo's belt speeds: it reads both speeds (and
/// two physics features it ignores) and `file` decides what it proposes.
fn setpoint_model(file: &str, optimise: &str) -> String {
    format!(
        r#"
[[models]]
id = "belt_speeds"
path = "{}"
task = "setpoint"
every = "5s"
  [[models.features]]
  tag = "infeed.speed"
  [[models.features]]
  tag = "outfeed.speed"
  [[models.features]]
  physics = "wip"
  line = "line1"
  [[models.features]]
  physics = "throughput"
  line = "line1"
  [models.output]
  setpoints = ["infeed.speed", "outfeed.speed"]
  [models.optimise]
{optimise}
"#,
        model(file)
    )
}

fn write(dir: &Path, base: &str, models: &str) -> PathBuf {
    let p = dir.join("plant.toml");
    std::fs::write(&p, format!("{base}\n{models}")).expect("write config");
    p
}

fn headless(cfg: &Path, events: &Path, span: &str) {
    let mut c = twin();
    c.args(["demo", "--headless", "--for", span, "--config"])
        .arg(cfg)
        .arg("--events")
        .arg(events);
    run_ok(&mut c);
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    json_lines(&std::fs::read(path).expect("events"))
}

fn of_type<'a>(all: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|e| e["type"] == kind).collect()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("a count: {v}"))
}

/// Seconds of the day of `…THH:MM:SS.mmmZ`: enough to subtract two times
/// of one short run.
fn secs(t: &serde_json::Value) -> f64 {
    let t = t.as_str().expect("a time");
    let time = t.split('T').nth(1).expect("a T").trim_end_matches('Z');
    time.split(':')
        .map(|p| p.parse::<f64>().expect("a number"))
        .fold(0.0, |acc, x| acc * 60.0 + x)
}

#[test]
fn r11_a_setpoint_model_on_the_demo_line_gets_vetted_proposals_apply_after_later() {
    // Energy in the objective: the model proposes both belts 0.1 m/s
    // slower, which keeps the line's throughput for less belt energy.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        &demo_without_models(),
        &setpoint_model(
            "setpoint_down.onnx",
            "  horizon = \"30s\"\n  apply_after = \"1s\"\n  energy_weight = 5.0\n  min_gain = 0.5\n",
        ),
    );
    let events = dir.path().join("e.jsonl");
    headless(&cfg, &events, "32s");
    let all = lines_of(&events);
    let proposals = of_type(&all, "proposal");
    assert!(!proposals.is_empty(), "no proposal in {} events", all.len());
    let sha = twin::recording::format::content_hash(
        &std::fs::read(root().join("tests/models/setpoint_down.onnx")).expect("model"),
    );
    for p in &proposals {
        assert_eq!(p["model"], "belt_speeds");
        assert_eq!(p["line"], "line1");
        assert!(
            sha.ends_with(p["model_sha256"].as_str().expect("sha")),
            "{p}"
        );
        // Lands a second of tick time after the model ran.
        let after = secs(&p["t"]) - secs(&p["based_on"]);
        assert!((after - 1.0).abs() < 1e-6, "{p}");
        // Legal: within the bounds and one step of the current values.
        for tag in ["infeed.speed", "outfeed.speed"] {
            let (x, now) = (f(&p["setpoints"][tag]), f(&p["current"][tag]));
            assert!((0.1..=0.85).contains(&x), "{p}");
            assert!((x - now).abs() <= 0.1 + 1e-6, "{p}");
            // The model's own output is one step down, as it was.
            assert!(
                (f(&p["model_output"][tag]) - (now - 0.1)).abs() < 1e-5,
                "{p}"
            );
        }
        let (b, c) = (&p["forecast"]["baseline"], &p["forecast"]["candidate"]);
        assert_eq!(u(&c["lost"]), 0, "{p}");
        assert!(f(&c["energy"]) < f(&b["energy"]), "{p}");
        let gain = f(&p["gain_per_min"]);
        assert!(gain >= 0.5, "{p}");
        let objective = |x: &serde_json::Value| f(&x["throughput_per_min"]) - 5.0 * f(&x["energy"]);
        assert!((objective(c) - objective(b) - gain).abs() < 1e-4, "{p}");
        let tried = &p["candidates"];
        let vetoed: u64 = tried["vetoed"]
            .as_object()
            .expect("vetoes")
            .values()
            .map(u)
            .sum();
        assert_eq!(u(&tried["tried"]), u(&tried["passed"]) + vetoed, "{p}");
        assert!(u(&tried["passed"]) >= 1);
    }
    let summary = of_type(&all, "optimiser");
    assert_eq!(summary.len(), 1, "one summary at the end");
    let s = summary[0];
    assert_eq!(s["scope"], "run");
    assert_eq!(u(&s["proposals"]), proposals.len() as u64);
    assert!(u(&s["rounds"]) >= u(&s["proposals"]));
    assert!(f(&s["gain_per_min"]["max"]) >= f(&s["gain_per_min"]["mean"]));
    assert_eq!(
        all.last().map(|e| e["type"].clone()),
        Some("optimiser".into()),
        "the summary closes the run"
    );
}

#[test]
fn r11_a_candidate_that_throws_bottles_off_the_corner_is_vetoed_lost_product() {
    // Bounds and step wide enough for 0.95 m/s: only the physics can say
    // no. The model proposes both belts 0.35 m/s faster (0.6 → 0.95), and
    // no neighbours are tried.
    let dir = tempfile::tempdir().expect("tempdir");
    let base =
        demo_without_models().replace("max = 0.85\nmax_step = 0.1", "max = 1.2\nmax_step = 0.5");
    let cfg = write(
        dir.path(),
        &base,
        &setpoint_model(
            "setpoint_up.onnx",
            "  horizon = \"60s\"\n  neighbours = 0\n",
        ),
    );
    let events = dir.path().join("e.jsonl");
    headless(&cfg, &events, "16s");
    let all = lines_of(&events);
    assert!(of_type(&all, "proposal").is_empty(), "nothing proposed");
    let s = of_type(&all, "optimiser");
    let s = s.first().expect("a summary");
    let rounds = u(&s["rounds"]);
    assert!(rounds >= 2, "{s}");
    assert_eq!(
        u(&s["candidates"]["tried"]),
        rounds,
        "one candidate a round: {s}"
    );
    assert_eq!(u(&s["candidates"]["vetoed"]["lost_product"]), rounds, "{s}");
    assert_eq!(u(&s["candidates"]["passed"]), 0, "{s}");
    assert!(s["gain_per_min"]["mean"].is_null(), "{s}");
}

#[test]
fn r11_a_nan_setpoint_model_gives_error_events_and_no_proposal() {
    // nan.onnx: 4 features in, one NaN column out.
    let dir = tempfile::tempdir().expect("tempdir");
    let models = setpoint_model("nan.onnx", "  horizon = \"10s\"\n")
        .replace(
            "setpoints = [\"infeed.speed\", \"outfeed.speed\"]",
            "setpoints = [\"outfeed.speed\"]",
        )
        .replace("every = \"5s\"", "every = \"2s\"");
    let cfg = write(dir.path(), &demo_without_models(), &models);
    let events = dir.path().join("e.jsonl");
    headless(&cfg, &events, "10s");
    let all = lines_of(&events);
    let errors: Vec<_> = of_type(&all, "error")
        .into_iter()
        .filter(|e| e["component"] == "model" && e["target"] == "belt_speeds")
        .collect();
    assert_eq!(errors.len(), 5, "one per run of 10 s at every 2 s");
    assert!(
        errors[0]["error"].as_str().expect("error").contains("NaN"),
        "{}",
        errors[0]
    );
    assert!(of_type(&all, "proposal").is_empty());
    assert!(of_type(&all, "prediction").is_empty());
    let s = of_type(&all, "optimiser");
    assert_eq!(u(&s[0]["rounds"]), 0, "{}", s[0]);
    assert_eq!(u(&s[0]["candidates"]["tried"]), 0, "{}", s[0]);
}

#[test]
fn r11_a_live_run_with_an_optimiser_and_its_replay_agree_byte_for_byte() {
    // Live: the virtual plant over Modbus and MQTT on loopback, the twin on
    // the wall clock, rounds vetted on the worker thread. The replay vets
    // the same rounds from the same line states and lands them on the
    // same ticks.
    let dir = tempfile::tempdir().expect("tempdir");
    let models = setpoint_model(
        "setpoint_down.onnx",
        "  horizon = \"20s\"\n  apply_after = \"500ms\"\n  energy_weight = 5.0\n  min_gain = 0.5\n",
    )
    .replace("every = \"5s\"", "every = \"1s\"");
    let cfg = write(dir.path(), &demo_without_models(), &models);
    let (bytes, replayed) = live_and_replay(dir.path(), &cfg, "8s");
    let all = json_lines(&bytes);
    let s = of_type(&all, "optimiser");
    assert!(
        s.first().is_some_and(|s| u(&s["rounds"]) > 0),
        "the live run vetted rounds: {s:?}"
    );
    assert_eq!(replayed, bytes);
}

#[test]
fn r11_an_optimised_setpoint_without_a_physics_knob_is_a_located_config_error() {
    // filler.speed is a [[setpoints]] tag of the demo, in bottles per
    // minute: no knob of the line's model turns it.
    let dir = tempfile::tempdir().expect("tempdir");
    let models = setpoint_model("setpoint_down.onnx", "  max_jam_risk = 2.0\n").replace(
        "setpoints = [\"infeed.speed\", \"outfeed.speed\"]",
        "setpoints = [\"infeed.speed\", \"filler.speed\"]",
    );
    let cfg = write(dir.path(), &demo_without_models(), &models);
    let out = twin()
        .args(["check", "--short"])
        .arg(&cfg)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("plant.toml:")
            && lines[0].contains("models[0].output.setpoints[1]")
            && lines[0].contains("\"filler.speed\" turns no knob"),
        "{err}"
    );
    assert!(
        lines[1].contains("models[0].optimise.max_jam_risk") && lines[1].contains("0..=1"),
        "{err}"
    );
    // Without [models.optimise] the same model only reports its values.
    let plain = models.replace("  [models.optimise]\n  max_jam_risk = 2.0\n", "");
    assert_ne!(plain, models);
    let cfg = write(dir.path(), &demo_without_models(), &plain);
    let out = twin()
        .args(["check", "--short"])
        .arg(&cfg)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
