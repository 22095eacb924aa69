//! The model platform (issue 11): metering per model, machine and line;
//! a cadence that rises with a machine's risk and falls back when calm;
//! row quotas, per model and shared, under which fault models run before
//! setpoint models. Driven through `runtime::Driver` with samples the test
//! writes, so every count is known in advance.
//!
//! The model is tests/models/linear_softmax.onnx: with its first feature at
//! 5 (the others 0) its highest fault risk is 0.76, at -5 it is 0.14.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use twin::config::{LoadedConfig, load_str};
use twin::runtime::Driver;
use twin::sinks::{Sink, SinkError, TickOutput};
use twin::twin::{Sample, Value};

use crate::util::root;

const T0: i64 = 1_800_000_000_000_000_000;

/// Machines `m1` and `m2` (pumps on line `l1`), each with a role `x`; tags
/// `z` (always 0) and `s1..s3` (setpoints).
fn plant(extra: &str) -> String {
    let model = root().join("tests/models/linear_softmax.onnx");
    format!(
        r#"
[plant]
name = "platform"
tick = "100ms"
stale_after = "10s"

[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
registers = [
  {{ tag = "m1.x", table = "holding", address = 0 }},
  {{ tag = "m2.x", table = "holding", address = 1 }},
  {{ tag = "z", table = "holding", address = 2 }},
  {{ tag = "s1", table = "holding", address = 3 }},
  {{ tag = "s2", table = "holding", address = 4 }},
  {{ tag = "s3", table = "holding", address = 5 }},
]

[[machines]]
id = "m1"
kind = "pump"
tags = {{ x = "m1.x" }}

[[machines]]
id = "m2"
kind = "pump"
tags = {{ x = "m2.x" }}

[[lines]]
id = "l1"
machines = ["m1", "m2"]

[[setpoints]]
tag = "s1"
min = -100
max = 100

[[setpoints]]
tag = "s2"
min = -100
max = 100

[[setpoints]]
tag = "s3"
min = -100
max = 100
{extra}
"#,
        extra = extra.replace("MODEL", &model.display().to_string())
    )
}

/// A fault model on both machines with the four features, `schedule` its
/// `[models.schedule]` (or `every` line) as written.
fn fault_model(id: &str, cadence: &str) -> String {
    format!(
        r#"
[[models]]
id = "{id}"
path = "MODEL"
task = "fault"
machines = ["m1", "m2"]
{cadence}
  [[models.features]]
  role = "x"
  [[models.features]]
  tag = "z"
  [[models.features]]
  tag = "z"
  [[models.features]]
  tag = "z"
  [models.output]
  classes = ["normal", "jam", "wear"]
"#
    )
}

fn setpoint_model(id: &str) -> String {
    format!(
        r#"
[[models]]
id = "{id}"
path = "MODEL"
task = "setpoint"
every = "100ms"
  [[models.features]]
  tag = "z"
  [[models.features]]
  tag = "z"
  [[models.features]]
  tag = "z"
  [[models.features]]
  tag = "z"
  [models.output]
  setpoints = ["s1", "s2", "s3"]
"#
    )
}

fn config(text: &str) -> LoadedConfig {
    load_str(&root().join("platform.toml"), text)
        .unwrap_or_else(|r| panic!("test config is valid: {r:?}"))
}

/// Keeps every event line, the end-of-run ones apart.
#[derive(Clone, Default)]
struct Capture {
    ticks: Arc<Mutex<Vec<serde_json::Value>>>,
    end: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn parse(jsonl: &[u8]) -> impl Iterator<Item = serde_json::Value> + '_ {
    jsonl
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("event is JSON"))
}

impl Sink for Capture {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.ticks.lock().expect("lock").extend(parse(out.jsonl));
        Ok(())
    }
    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.end.lock().expect("lock").extend(parse(out.jsonl));
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A driver for `cfg` with its models and a capture.
fn driver(cfg: &LoadedConfig) -> (Driver, Capture) {
    let mut d = Driver::new(cfg, T0).with_models(cfg).expect("models load");
    let cap = Capture::default();
    d.add_sink(Box::new(cap.clone())).expect("sink");
    (d, cap)
}

/// Run `ticks` ticks with `m1.x = x1`, `m2.x = x2`, every other tag 0,
/// written before each tick.
fn run(d: &mut Driver, cfg: &LoadedConfig, ticks: u64, x1: f64, x2: f64) {
    let tags = [("m1.x", x1), ("m2.x", x2), ("z", 0.0)];
    for _ in 0..ticks {
        let t = d.clock().now_ns() + 1;
        for (name, v) in tags {
            let id = cfg.tags.id(name).expect("tag");
            d.push(Sample::good(id, Value::Num(v), t, t));
        }
        d.step();
    }
}

fn of_type<'a>(
    events: &'a [serde_json::Value],
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    events.iter().filter(move |e| e["type"] == kind)
}

/// Predictions per machine.
fn per_machine(events: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for p in of_type(events, "prediction") {
        *n.entry(p["machine"].as_str().unwrap_or("-").to_string())
            .or_default() += 1;
    }
    n
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("a count: {v}"))
}

#[test]
fn h6_a_busy_machine_runs_at_the_busy_cadence_and_falls_back_when_calm() {
    let text = plant(&fault_model(
        "f",
        "  [models.schedule]\n  calm_every = \"2s\"\n  busy_every = \"500ms\"\n  busy_above = 0.5\n",
    ));
    let cfg = config(&text);
    let (mut d, cap) = driver(&cfg);
    // 10 s with m1 at risk 0.76 (busy) and m2 at 0.14 (calm).
    run(&mut d, &cfg, 100, 5.0, -5.0);
    let first = std::mem::take(&mut *cap.ticks.lock().expect("lock"));
    let n = per_machine(&first);
    // Both first run at 2 s (calm cadence); from then m1 runs every 0.5 s.
    assert_eq!(n.get("m1"), Some(&17), "{n:?}");
    assert_eq!(n.get("m2"), Some(&5), "{n:?}");
    // 10 s with m1 calm again: one busy run sees the calm risk, then 2 s.
    run(&mut d, &cfg, 100, -5.0, -5.0);
    let second = std::mem::take(&mut *cap.ticks.lock().expect("lock"));
    let n = per_machine(&second);
    assert_eq!(n.get("m1"), Some(&6), "{n:?}");
    assert_eq!(n.get("m2"), Some(&5), "{n:?}");
    // And up again when the risk rises.
    run(&mut d, &cfg, 40, -5.0, 5.0);
    let third = std::mem::take(&mut *cap.ticks.lock().expect("lock"));
    let n = per_machine(&third);
    assert_eq!(n.get("m2"), Some(&5), "{n:?}");
    assert_eq!(n.get("m1"), Some(&2), "{n:?}");

    assert!(d.finish().is_empty());
    let end = cap.end.lock().expect("lock");
    let run_total = of_type(&end, "metering")
        .next()
        .expect("end-of-run metering");
    assert_eq!(run_total["scope"], "run");
    let rows = [&first, &second, &third]
        .iter()
        .map(|e| of_type(e, "prediction").count() as u64)
        .sum::<u64>();
    assert_eq!(u(&run_total["rows"]), rows, "{run_total}");
    // Busy rows: m1's 16 after its first run and the one that sees it calm
    // again, m2's 4 after rising.
    assert_eq!(u(&run_total["busy_rows"]), 16 + 1 + 4, "{run_total}");
    assert_eq!(u(&run_total["machines"]["m1"]["busy_rows"]), 17);
}

#[test]
fn h6_metering_counts_runs_and_rows_per_model_machine_and_line_each_interval() {
    let text = plant(&format!(
        "[ml]\nmetering = \"5s\"\n{}",
        fault_model("f", "every = \"1s\"")
    ));
    let cfg = config(&text);
    let (mut d, cap) = driver(&cfg);
    run(&mut d, &cfg, 123, 0.0, 0.0);
    assert!(d.finish().is_empty());
    let events = cap.ticks.lock().expect("lock").clone();
    let intervals: Vec<&serde_json::Value> = of_type(&events, "metering").collect();
    // 123 ticks: intervals end after the 50th and the 100th.
    assert_eq!(intervals.len(), 2, "{intervals:?}");
    for m in &intervals {
        assert_eq!(m["model"], "f");
        assert_eq!(m["task"], "fault");
        assert_eq!(m["scope"], "interval");
        assert_eq!(m["span_s"], 5.0);
        assert_eq!(u(&m["runs"]), 5, "{m}");
        assert_eq!(u(&m["rows"]), 10, "{m}");
        assert_eq!(u(&m["skipped_runs"]) + u(&m["skipped_rows"]), 0);
        assert_eq!(u(&m["machines"]["m1"]["rows"]), 5, "{m}");
        assert_eq!(u(&m["machines"]["m2"]["rows"]), 5, "{m}");
        assert_eq!(u(&m["lines"]["l1"]["rows"]), 10, "{m}");
    }
    let end = cap.end.lock().expect("lock");
    let total = of_type(&end, "metering").next().expect("run metering");
    assert_eq!(total["scope"], "run");
    assert_eq!(total["span_s"], 12.3);
    // Runs every 10 ticks of 123: 12 runs of 2 rows.
    assert_eq!(u(&total["runs"]), 12, "{total}");
    assert_eq!(u(&total["rows"]), 24, "{total}");
    assert_eq!(
        u(&total["rows"]),
        of_type(&events, "prediction").count() as u64
    );
    assert_eq!(u(&total["lines"]["l1"]["rows"]), 24, "{total}");
}

#[test]
fn h6_a_model_quota_caps_its_rows_per_minute_and_counts_the_skipped() {
    // Due every tick with 2 rows: 1200 rows a minute wanted, 300 allowed.
    let text = plant(&format!(
        "[ml]\nmetering = \"60s\"\n{}",
        fault_model(
            "f",
            "every = \"100ms\"\n  [models.schedule]\n  rows_per_minute = 300\n"
        )
    ));
    let cfg = config(&text);
    let (mut d, cap) = driver(&cfg);
    run(&mut d, &cfg, 1200, 0.0, 0.0);
    let events = cap.ticks.lock().expect("lock").clone();
    let m: Vec<&serde_json::Value> = of_type(&events, "metering").collect();
    assert_eq!(m.len(), 2);
    // The first minute spends the full bucket (300) and the minute's refill.
    let (a, b) = (m[0], m[1]);
    assert_eq!(u(&a["rows"]) + u(&a["skipped_rows"]), 1200, "{a}");
    assert_eq!(u(&b["rows"]), 300, "{b}");
    assert_eq!(u(&b["skipped_rows"]), 900, "{b}");
    assert!(u(&b["skipped_runs"]) > 0, "{b}");
    // The short budget goes to the machines in turn: neither is starved.
    let (m1, m2) = (
        u(&b["machines"]["m1"]["rows"]),
        u(&b["machines"]["m2"]["rows"]),
    );
    assert_eq!(m1 + m2, u(&b["rows"]));
    assert!(m1.abs_diff(m2) <= 1, "m1 {m1}, m2 {m2}");
    // Never more predictions than rows metered.
    let preds = of_type(&events, "prediction").count() as u64;
    assert_eq!(preds, u(&a["rows"]) + u(&b["rows"]));
}

#[test]
fn h6_under_a_shared_quota_fault_models_run_before_setpoint_models() {
    // The setpoint model comes first in the file; 1 + 2 rows due each tick
    // (1800 a minute) and 1200 a minute shared.
    let text = plant(&format!(
        "[ml]\nmetering = \"60s\"\nrows_per_minute = 1200\n{}{}",
        setpoint_model("opt"),
        fault_model("f", "every = \"100ms\"")
    ));
    let cfg = config(&text);
    let (mut d, cap) = driver(&cfg);
    run(&mut d, &cfg, 1800, 0.0, 0.0);
    let events = cap.ticks.lock().expect("lock").clone();
    let last = |model: &str| {
        of_type(&events, "metering")
            .filter(|e| e["model"] == model)
            .last()
            .cloned()
            .expect("metering")
    };
    // In the third minute the budget is spent: the fault model gets all it
    // asks, the setpoint model nothing, and says so.
    let (f, opt) = (last("f"), last("opt"));
    assert_eq!(u(&f["rows"]), 1200, "{f}");
    assert_eq!(u(&f["skipped_rows"]), 0, "{f}");
    assert_eq!(u(&opt["rows"]), 0, "{opt}");
    assert_eq!(u(&opt["skipped_rows"]), 600, "{opt}");
    assert_eq!(u(&opt["skipped_runs"]), 600, "{opt}");
    // Events still in file order within a tick: the setpoint model's
    // predictions (while it ran) before the fault model's.
    let t0 = &of_type(&events, "prediction").next().expect("a prediction")["t"];
    let first_tick: Vec<&str> = of_type(&events, "prediction")
        .filter(|e| &e["t"] == t0)
        .map(|e| e["model"].as_str().expect("model"))
        .collect();
    assert_eq!(first_tick, ["opt", "f", "f"]);
}

#[test]
fn h6_compute_time_is_measured_but_never_reaches_the_stream() {
    let text = plant(&fault_model("f", "every = \"100ms\""));
    let cfg = config(&text);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (mut d, cap) = driver(&cfg);
        run(&mut d, &cfg, 50, 1.0, -1.0);
        let compute = twin::ml::stage::compute_time(d.core());
        let (id, spent, _) = &compute.models[0];
        assert_eq!(&**id, "f");
        assert!(
            *spent > std::time::Duration::ZERO,
            "the driver's stopwatch ran"
        );
        assert!(d.finish().is_empty());
        let mut all = cap.ticks.lock().expect("lock").clone();
        all.extend(cap.end.lock().expect("lock").iter().cloned());
        assert!(
            all.iter()
                .all(|e| e.get("compute_us").is_none() && e.get("overruns").is_none()),
            "no time in events"
        );
        streams.push(all);
    }
    assert_eq!(streams[0], streams[1], "two runs, the same events");
}

#[test]
fn h6_a_headless_run_and_its_replay_write_the_same_metering() {
    use crate::util::twin;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = crate::ml_stage::demo_without_models();
    text.push_str(&format!(
        r#"
[ml]
metering = "5s"

[[models]]
id = "belt_faults"
path = "{}"
task = "fault"
kind = "conveyor"
every = "1s"
  [[models.features]]
  role = "speed"
  [[models.features]]
  role = "motor_current"
  [[models.features]]
  physics = "wip"
  [[models.features]]
  physics = "throughput"
  [models.output]
  classes = ["normal", "jam", "slip"]
  [models.schedule]
  busy_every = "500ms"
  busy_above = 0.3
"#,
        root().join("tests/models/linear_softmax.onnx").display()
    ));
    let cfg = dir.path().join("plant.toml");
    std::fs::write(&cfg, text).expect("config");
    let (live, rec, replayed) = (
        dir.path().join("live.jsonl"),
        dir.path().join("live.mcap"),
        dir.path().join("replayed.jsonl"),
    );
    let out = twin()
        .args(["demo", "--headless", "--for", "12s", "--config"])
        .arg(&cfg)
        .arg("--events")
        .arg(&live)
        .arg("--record")
        .arg(&rec)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = twin()
        .arg("replay")
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
    let bytes = std::fs::read(&live).expect("live");
    assert_eq!(std::fs::read(&replayed).expect("replayed"), bytes);
    let events: Vec<serde_json::Value> = parse(&bytes).collect();
    let metering: Vec<&serde_json::Value> = of_type(&events, "metering").collect();
    let scopes: Vec<&str> = metering
        .iter()
        .map(|m| m["scope"].as_str().expect("scope"))
        .collect();
    assert_eq!(scopes, ["interval", "interval", "run"], "{metering:?}");
    let run = metering[2];
    assert_eq!(
        u(&run["rows"]),
        of_type(&events, "prediction").count() as u64,
        "{run}"
    );
    assert_eq!(
        u(&run["rows"]),
        u(&run["machines"]["infeed"]["rows"]) + u(&run["machines"]["outfeed"]["rows"])
    );
}

/// Two models on the same cadence both sample their rows on the grid their
/// trainers use: the run's start plus whole multiples of `every`. They used
/// to be staggered over the cadence, which moved the second model's rows
/// half a second off that grid: an anomaly model trained with
/// models/train_anomaly.py then scored its own training data at a median of
/// 2.5× its threshold (the README's generic path, with the demo's fault
/// model in the same config).
#[test]
fn r11_models_sharing_a_cadence_sample_on_their_own_grid_not_staggered() {
    let cfg = config(&plant(&format!(
        "{}{}",
        fault_model("first", "every = \"1s\""),
        fault_model("second", "every = \"1s\"")
    )));
    let (mut d, cap) = driver(&cfg);
    run(&mut d, &cfg, 50, 5.0, -5.0);
    let errors = d.finish();
    assert!(errors.is_empty(), "sinks: {errors:?}");
    let events = cap.ticks.lock().expect("lock").clone();
    let mut times: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in of_type(&events, "prediction") {
        let model = p["model"].as_str().expect("model").to_string();
        times
            .entry(model)
            .or_default()
            .push(p["t"].as_str().expect("t").to_string());
    }
    assert_eq!(times.len(), 2, "both models predicted: {times:?}");
    for (model, ts) in &times {
        // Two machines a run, a run on each whole second of the 5 s.
        assert_eq!(ts.len(), 10, "{model}: {ts:?}");
        for t in ts {
            // T0 is a whole second, so the grid's instants are too.
            assert!(
                t.ends_with(".000Z"),
                "{model} predicted at {t}, off the run's 1 s grid"
            );
        }
    }
    assert_eq!(times["first"], times["second"], "the same instants");
}
