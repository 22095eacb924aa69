//! The virtual plant's truth model (`twin::sim::truth`) and fault scenarios
//! (`twin::sim::scenario`), issue 4: the served values are consistent with
//! the physics, every fault kind has a visible effect and a label with the
//! right start and end, broken scenarios give located diagnostics, and the
//! same seed and scenario give byte-identical output.
//!
//! Most tests run on a small test line whose product (a flat box) cannot
//! tip over, so the analytical checks (an eye's blocked fraction) have a
//! clean answer; the shipped scenarios are run on the demo line by the CLI
//! tests at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use twin::config::{LoadedConfig, load_file, load_str};
use twin::sim::scenario::{self, Scenario};
use twin::sim::truth::{Edge, Truth};
use twin::sim::{HeadlessOptions, run_headless};

use crate::util::{root, twin};

/// One straight 4 m belt with two photo-eyes, a flat 0.1 m box every
/// second, and a press with a vibration sensor. Everything on one PLC.
pub const LINE: &str = r#"
version = 1
[plant]
name = "Truth test line"
tick = "100ms"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:1502"
unit_id = 1
poll_interval = "40ms"
  [[sources.modbus.registers]]
  tag = "belt.speed"
  table = "holding"
  address = 0
  type = "u16"
  scale = 0.001
  unit = "m/s"
  [[sources.modbus.registers]]
  tag = "belt.motor_current"
  table = "input"
  address = 0
  type = "u16"
  scale = 0.01
  unit = "A"
  [[sources.modbus.registers]]
  tag = "belt.count"
  table = "input"
  address = 1
  type = "u32"
  [[sources.modbus.registers]]
  tag = "belt.infeed"
  table = "input"
  address = 3
  type = "u32"
  [[sources.modbus.registers]]
  tag = "belt.motor_temperature"
  table = "input"
  address = 5
  type = "f32"
  unit = "degC"
  [[sources.modbus.registers]]
  tag = "belt.eye_a"
  table = "discrete"
  address = 0
  [[sources.modbus.registers]]
  tag = "belt.eye_b"
  table = "discrete"
  address = 1
  [[sources.modbus.registers]]
  tag = "press.speed"
  table = "holding"
  address = 1
  type = "u16"
  unit = "bpm"
  [[sources.modbus.registers]]
  tag = "press.vibration"
  table = "input"
  address = 7
  type = "f32"
  unit = "mm/s"
  [[sources.modbus.registers]]
  tag = "press.bearing_temperature"
  table = "input"
  address = 9
  type = "f32"
  unit = "degC"

[[machines]]
id = "belt"
kind = "conveyor"
  [machines.tags]
  speed = "belt.speed"
  motor_current = "belt.motor_current"
  motor_temperature = "belt.motor_temperature"
  count = "belt.count"
  infeed_count = "belt.infeed"
  eye_a = "belt.eye_a"
  eye_b = "belt.eye_b"

[[machines]]
id = "press"
kind = "press"
  [machines.tags]
  speed = "press.speed"
  vibration = "press.vibration"
  bearing_temperature = "press.bearing_temperature"

[[lines]]
id = "l1"
machines = ["belt", "press"]
  [[lines.conveyors]]
  id = "belt"
  speed_tag = "belt.speed"
  width = 0.3
    [[lines.conveyors.segments]]
    length = 4.0
  [lines.product]
  length = 0.1
  width = 0.1
  height = 0.05
  mass = 0.5
  friction = 0.6
  spawn_interval = "1s"
  infeed_counter_tag = "belt.infeed"
  [[lines.photo_eyes]]
  id = "eye_a"
  conveyor = "belt"
  position = 1.5
  tag = "belt.eye_a"
  [[lines.photo_eyes]]
  id = "eye_b"
  conveyor = "belt"
  position = 3.0
  tag = "belt.eye_b"
"#;

fn line() -> LoadedConfig {
    load_str(Path::new("truth-line.toml"), LINE).unwrap_or_else(|r| panic!("{r}"))
}

fn demo() -> LoadedConfig {
    load_file(&root().join("plant-configs/packaging-line.toml")).unwrap_or_else(|r| panic!("{r}"))
}

fn scen(cfg: &LoadedConfig, text: &str) -> Scenario {
    scenario::load_str(Path::new("test-scenario.toml"), text, cfg).unwrap_or_else(|r| panic!("{r}"))
}

fn tag(cfg: &LoadedConfig, name: &str) -> usize {
    cfg.tags
        .id(name)
        .unwrap_or_else(|| panic!("tag {name}"))
        .index()
}

/// A sample: sim seconds, and each asked tag's value (`None`: not served).
type Row = (f64, Vec<Option<f64>>);

/// Every 5 ms of sim time from 0 to `secs`, the values of `names` (`None`:
/// not served).
fn run(
    cfg: &LoadedConfig,
    scenario: Option<&Scenario>,
    secs: u64,
    names: &[&str],
) -> (Truth, Vec<Row>) {
    let ids: Vec<usize> = names.iter().map(|n| tag(cfg, n)).collect();
    let mut t = Truth::new(cfg, scenario, 7);
    let mut rows = Vec::new();
    while t.now() < Duration::from_secs(secs) {
        t.advance(Duration::from_millis(5));
        rows.push((
            t.now().as_secs_f64(),
            ids.iter().map(|&i| t.value(i)).collect(),
        ));
    }
    (t, rows)
}

/// Mean of column `k` over rows with `from <= t < to` (boolean: the
/// fraction of samples that were true).
fn mean(rows: &[Row], k: usize, from: f64, to: f64) -> f64 {
    let vals: Vec<f64> = rows
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .filter_map(|(_, v)| v[k])
        .collect();
    assert!(!vals.is_empty(), "no samples in {from}..{to}");
    vals.iter().sum::<f64>() / vals.len() as f64
}

#[test]
fn r4_truth_counters_eyes_and_current_follow_the_physics() {
    let cfg = line();
    let names = [
        "belt.infeed",
        "belt.eye_a",
        "belt.speed",
        "belt.count",
        "belt.motor_current",
    ];
    let (t, rows) = run(&cfg, None, 60, &names);
    let counts = t.line_counts(0).expect("line l1 is modelled");
    // One spawn per second at 0, 1, ..., 59 s, none skipped: the counter is
    // the spawns, step by step.
    assert_eq!(counts.spawned, 60, "{counts:?}");
    assert_eq!(counts.infeed_blocked, 0);
    let mut last = 0.0;
    for (time, v) in &rows {
        let c = v[0].expect("served");
        assert!(c == last || c == last + 1.0, "counter jumped at {time}");
        last = c;
    }
    assert_eq!(last, counts.spawned as f64);
    // Products out = the count tag, and what entered minus what is on the
    // belt (none lost).
    assert_eq!(counts.lost, 0);
    assert_eq!(rows.last().and_then(|r| r.1[3]), Some(counts.out as f64));
    let wip = t.line_model(0).expect("model").product_count() as u64;
    assert_eq!(counts.out + wip, counts.spawned);
    assert!(counts.out >= 50, "{counts:?}");

    // An eye is blocked while a product's length (plus the 1 cm beam sheet)
    // passes at the belt speed, once per spawn interval.
    let blocked = mean(&rows, 1, 10.0, 60.0);
    let speed = mean(&rows, 2, 10.0, 60.0);
    let expected = (0.1 + 0.01) / speed * 1.0;
    assert!(
        (blocked - expected).abs() < 0.1 * expected,
        "eye blocked {blocked:.4} of the time, expected {expected:.4} at {speed:.3} m/s"
    );

    // A jam makes the belt slide under a growing queue: the current rises.
    let jam = scen(
        &cfg,
        "[[faults]]\nkind = \"jam\"\nconveyor = \"belt\"\nposition = 3.5\nat = \"20s\"\n",
    );
    let (_, jammed) = run(&cfg, Some(&jam), 60, &names);
    let free = mean(&rows, 4, 40.0, 60.0);
    let stuck = mean(&jammed, 4, 40.0, 60.0);
    assert!(
        stuck > free + 2.0,
        "motor current {stuck:.2} A with a jam, {free:.2} A without"
    );
    // Before the jam the two runs are the same plant.
    assert_eq!(mean(&rows, 4, 0.0, 20.0), mean(&jammed, 4, 0.0, 20.0));
}

/// The labels of a run: (kind, edge, sim seconds).
fn labels(t: &mut Truth) -> Vec<(&'static str, Edge, f64)> {
    t.drain_labels()
        .iter()
        .map(|l| (l.kind, l.edge, l.t.as_secs_f64()))
        .collect()
}

fn fault(kind: &str, keys: &str) -> String {
    format!("[[faults]]\nkind = \"{kind}\"\nat = \"20s\"\nduration = \"20s\"\n{keys}\n")
}

#[test]
fn r4_every_fault_kind_shows_and_is_labelled_at_its_start_and_end() {
    let cfg = line();
    let names = [
        "belt.eye_a",                // 0
        "belt.eye_b",                // 1
        "belt.count",                // 2
        "press.vibration",           // 3
        "belt.motor_temperature",    // 4
        "press.bearing_temperature", // 5
        "belt.speed",                // 6
    ];
    let (_, base) = run(&cfg, None, 60, &names);
    let check_labels = |t: &mut Truth, kind: &str| {
        assert_eq!(
            labels(t),
            vec![
                (kind_static(kind), Edge::Start, 20.0),
                (kind_static(kind), Edge::End, 40.0)
            ],
            "{kind}"
        );
    };

    // Bearing wear: vibration and bearing temperature climb.
    let s = scen(
        &cfg,
        &fault(
            "bearing_wear",
            "machine = \"press\"\nramp = \"10s\"\nfrom = 0.0\nto = 1.0",
        ),
    );
    let (mut t, rows) = run(&cfg, Some(&s), 60, &names);
    check_labels(&mut t, "bearing_wear");
    let (before, worn) = (mean(&rows, 3, 10.0, 20.0), mean(&rows, 3, 30.0, 40.0));
    assert!(
        worn > 3.0 * before,
        "vibration {before:.2} → {worn:.2} mm/s"
    );
    assert!(
        mean(&rows, 3, 45.0, 60.0) < 1.5 * before,
        "a new bearing after the end"
    );
    assert!(mean(&rows, 5, 30.0, 40.0) > mean(&base, 5, 30.0, 40.0) + 15.0);

    // Belt slip: the surface runs half as fast, so each product blocks an
    // eye twice as long; the speed tag still reads the drive.
    let s = scen(&cfg, &fault("belt_slip", "conveyor = \"belt\"\nslip = 0.5"));
    let (mut t, rows) = run(&cfg, Some(&s), 60, &names);
    check_labels(&mut t, "belt_slip");
    let ratio = mean(&rows, 0, 25.0, 40.0) / mean(&rows, 0, 5.0, 20.0);
    assert!(
        (1.6..2.4).contains(&ratio),
        "eye blocked ×{ratio:.2} while slipping"
    );
    assert_eq!(mean(&rows, 6, 20.0, 40.0), mean(&base, 6, 20.0, 40.0));

    // Jam at 2.5 m: nothing reaches eye_b or the end until it is cleared.
    let s = scen(&cfg, &fault("jam", "conveyor = \"belt\"\nposition = 2.5"));
    let (mut t, rows) = run(&cfg, Some(&s), 60, &names);
    check_labels(&mut t, "jam");
    assert_eq!(
        mean(&rows, 1, 25.0, 40.0),
        0.0,
        "eye_b sees nothing behind the jam"
    );
    let out = |at: f64| {
        rows.iter()
            .find(|r| r.0 >= at)
            .and_then(|r| r.1[2])
            .unwrap_or(-1.0)
    };
    assert_eq!(out(25.0), out(40.0), "nothing leaves while jammed");
    assert!(out(60.0) > out(40.0) + 5.0, "the queue drains once cleared");

    // A stuck eye reads its level whatever passes, and only while stuck.
    for (kind, level) in [("eye_stuck_on", 1.0), ("eye_stuck_off", 0.0)] {
        let s = scen(&cfg, &fault(kind, "eye = \"eye_a\""));
        let (mut t, rows) = run(&cfg, Some(&s), 60, &names);
        check_labels(&mut t, kind);
        // From the first step at or after 20 s to the one at 40 s.
        assert_eq!(mean(&rows, 0, 20.001, 40.001), level, "{kind}");
        let after = mean(&rows, 0, 41.0, 60.0);
        assert!(
            after > 0.05 && after < 0.5,
            "{kind}: after the fault the eye sees products again ({after})"
        );
    }

    // Sensor drift: exactly per_hour × time since the start, on top of the
    // same plant (drift draws no noise).
    let s = scen(
        &cfg,
        &fault(
            "sensor_drift",
            "tag = \"press.bearing_temperature\"\nper_hour = 720.0",
        ),
    );
    let (mut t, rows) = run(&cfg, Some(&s), 60, &names);
    check_labels(&mut t, "sensor_drift");
    for (a, b) in rows.iter().zip(&base) {
        let d = a.1[5].unwrap_or(f64::NAN) - b.1[5].unwrap_or(f64::NAN);
        // Started by the step from 20 s, ended by the step from 40 s.
        let want = if a.0 > 20.0 && a.0 <= 40.0 {
            720.0 * (a.0 - 20.0) / 3600.0
        } else {
            0.0
        };
        assert!((d - want).abs() < 1e-6, "drift {d} at {}, want {want}", a.0);
    }

    // PLC disconnect: its tags are not served, before and after they are.
    let s = scen(&cfg, &fault("plc_disconnect", "device = \"plc\""));
    let (mut t, rows) = run(&cfg, Some(&s), 60, &names);
    check_labels(&mut t, "plc_disconnect");
    for (time, v) in &rows {
        let dark = *time > 20.0 && *time <= 40.0;
        assert_eq!(v[2].is_none(), dark, "count served at {time}");
    }

    // Motor overheat: with 60 % of the cooling lost for 10 min the motor
    // heads for 2.5 × its rise (thermal time constant 10 min).
    let s = scen(
        &cfg,
        "[[faults]]\nkind = \"motor_overheat\"\nmachine = \"belt\"\ncooling_loss = 0.6\nat = \"20s\"\nduration = \"10m\"\n",
    );
    let (mut t, rows) = run(&cfg, Some(&s), 700, &names);
    let l = labels(&mut t);
    assert_eq!(
        l,
        vec![
            ("motor_overheat", Edge::Start, 20.0),
            ("motor_overheat", Edge::End, 620.0)
        ]
    );
    let (cool, hot) = (mean(&rows, 4, 10.0, 20.0), mean(&rows, 4, 610.0, 620.0));
    assert!(hot > cool + 15.0, "motor {cool:.1} → {hot:.1} °C");
    assert!(
        mean(&rows, 4, 690.0, 700.0) < hot,
        "cools down after the end"
    );
}

fn kind_static(kind: &str) -> &'static str {
    scenario::FAULT_KINDS
        .iter()
        .copied()
        .find(|k| *k == kind)
        .unwrap_or("?")
}

#[test]
fn r4_same_seed_and_scenario_give_identical_truth_and_labels() {
    let cfg = demo();
    let s = scen(
        &cfg,
        r#"
[[faults]]
kind = "jam"
line = "line1"
conveyor = "outfeed"
position = 0.35
at = "5s"
duration = "5s"
[[faults]]
kind = "bearing_wear"
machine = "capper"
at = "2s"
ramp = "10s"
[[faults]]
kind = "plc_disconnect"
device = "filler_plc"
at = "8s"
duration = "3s"
"#,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let once = |name: &str| {
        let opts = HeadlessOptions {
            duration: Duration::from_secs(20),
            seed: 3,
            update: Duration::from_millis(10),
            publish: Duration::from_secs(1),
            truth: Some(dir.path().join(format!("{name}.jsonl"))),
            labels: Some(dir.path().join(format!("{name}.labels.jsonl"))),
            stop: None,
        };
        let r = run_headless(&cfg, Some(&s), &opts).expect("headless run");
        assert_eq!(r.sim, Duration::from_secs(20));
        assert_eq!(r.labels, 5, "3 starts and 2 ends");
        let read = |p: &PathBuf| std::fs::read(p).expect("read output");
        (
            read(opts.truth.as_ref().expect("truth")),
            read(opts.labels.as_ref().expect("labels")),
        )
    };
    let (a, b) = (once("a"), once("b"));
    assert!(a.0.len() > 10_000, "a real truth log");
    assert!(a.0 == b.0, "truth logs differ");
    assert!(a.1 == b.1, "labels differ");

    // How time is chunked does not matter either.
    let ids: Vec<usize> = (0..cfg.tags.len()).collect();
    let mut fine = Truth::new(&cfg, Some(&s), 3);
    let mut coarse = Truth::new(&cfg, Some(&s), 3);
    for _ in 0..(12_000 / 7) {
        fine.advance(Duration::from_millis(7));
    }
    coarse.advance(Duration::from_millis(12_000 / 7 * 7));
    assert_eq!(fine.now(), coarse.now());
    let values = |t: &Truth| ids.iter().map(|&i| t.value(i)).collect::<Vec<_>>();
    assert_eq!(values(&fine), values(&coarse));
}

#[test]
fn r4_broken_scenario_gives_located_diagnostics() {
    let cfg = demo();
    let text = r#"version = 1
[[faults]]
kind = "jam"
line = "line1"
conveyor = "outfeed"
positon = 0.35
at = "60s"

[[faults]]
kind = "eye_stuck_on"
eye = "eye_exti"
at = "1m"

[[faults]]
kind = "belt_slip"
conveyor = "infeed"
slip = 1.5
at = "10 parsecs"

[[faults]]
kind = "overheat"
machine = "outfeed"
at = "5s"
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).expect("write scenario");
    let r = scenario::load_file(&path, &cfg).expect_err("broken");
    let short: Vec<String> = r
        .diagnostics
        .iter()
        .map(|d| r.file.render_short(d))
        .collect();
    let file = path.display().to_string();
    let want = [
        (
            format!("{file}:2:1: error: faults[0].position: missing required key `position`"),
            "",
        ),
        (
            format!("{file}:6:1: error: faults[0].positon: unknown key `positon`"),
            "did you mean `position`?",
        ),
        (
            format!("{file}:11:7: error: faults[1].eye: unknown photo-eye \"eye_exti\""),
            "did you mean `eye_exit`?",
        ),
        (
            format!("{file}:17:8: error: faults[2].slip: 1.5 is out of range"),
            "slower than its drive",
        ),
        (
            format!("{file}:18:10: error: faults[2].at: unknown unit \"parsecs\""),
            "between 0s and 1year",
        ),
        (
            format!("{file}:21:8: error: faults[3].kind: unknown kind \"overheat\""),
            "did you mean `motor_overheat`?",
        ),
    ];
    assert_eq!(short.len(), want.len(), "{short:#?}");
    for (got, (head, tail)) in short.iter().zip(&want) {
        assert!(
            got.starts_with(head.as_str()) && got.contains(tail),
            "{got}\nwant {head} … {tail}"
        );
    }

    // The CLI prints them all, rendered, and exits with EX_CONFIG.
    let out = twin()
        .args([
            "sim",
            "plant-configs/packaging-line.toml",
            "--headless",
            "--for",
            "1s",
        ])
        .arg("--truth")
        .arg(dir.path().join("t.jsonl"))
        .arg("--scenario")
        .arg(&path)
        .output()
        .expect("run twin sim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("--> {file}:11:7")) && err.contains("= key: faults[1].eye"),
        "{err}"
    );
    assert!(err.contains("6 errors"), "{err}");
}

#[test]
fn r4_headless_cli_writes_truth_and_labels_next_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let truth = dir.path().join("jam.jsonl");
    let out = twin()
        .args([
            "sim",
            "plant-configs/packaging-line.toml",
            "--headless",
            "--for",
            "160s",
        ])
        .args(["--scenario", "plant-configs/scenarios/transfer_jam.toml"])
        .arg("--truth")
        .arg(&truth)
        .output()
        .expect("run twin sim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let labels = std::fs::read_to_string(dir.path().join("jam.labels.jsonl")).expect("labels file");
    let labels: Vec<serde_json::Value> = labels
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert_eq!(labels[0]["edge"], "start");
    assert_eq!(labels[0]["sim_t"], 60.0);
    assert_eq!(labels[0]["t"], "2026-01-01T00:01:00.000Z");
    assert_eq!(labels[0]["kind"], "jam");
    assert_eq!(labels[0]["target"]["conveyor"], "outfeed");
    assert_eq!(labels[1]["edge"], "end");
    assert_eq!(labels[1]["sim_t"], 90.0);
    // The jam holds eye_transfer blocked from soon after the start to the
    // end; the truth log says so.
    let text = std::fs::read_to_string(&truth).expect("truth file");
    let eye: Vec<(f64, bool)> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["tag"] == "outfeed.eye_transfer")
        .map(|v| (v["sim_t"].as_f64().unwrap_or(-1.0), v["value"] == true))
        .collect();
    let state_at = |t: f64| eye.iter().rev().find(|e| e.0 <= t).is_some_and(|e| e.1);
    for t in [65.0, 70.0, 80.0, 89.9] {
        assert!(
            state_at(t),
            "eye_transfer clear at {t} during the jam: {eye:?}"
        );
    }
    // After the jam the backlog drains only as fast as the filler (0.8 s
    // cycle) outruns the 1 s arrivals, so the queue over eye_transfer takes
    // most of a minute to go (about 45 s on this line).
    assert!(
        eye.iter().any(|e| e.0 > 90.0 && e.0 < 160.0 && !e.1),
        "clears within a minute of the jam's end: {eye:?}"
    );
}

/// A Modbus TCP "read holding registers" request for one register.
fn read_request(tid: u16) -> [u8; 12] {
    let t = tid.to_be_bytes();
    [t[0], t[1], 0, 0, 0, 6, 1, 3, 0, 0, 0, 1]
}

/// What the server does with one request on `stream`: a reply (its bytes
/// count), nothing within `wait`, or a closed connection.
#[derive(Debug, PartialEq)]
enum Answer {
    Reply,
    Silence,
    Closed,
}

async fn ask(stream: &mut tokio::net::TcpStream, tid: u16, wait: Duration) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.write_all(&read_request(tid)).await.is_err() {
        return Answer::Closed;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => Answer::Silence,
        Ok(Ok(0)) | Ok(Err(_)) => Answer::Closed,
        Ok(Ok(n)) => {
            assert!(n >= 9 && buf[7] == 3, "a read reply: {:?}", &buf[..n]);
            Answer::Reply
        }
    }
}

#[test]
fn r4_plc_disconnect_stops_the_device_answering_for_the_duration() {
    let cfg = line();
    let s = scen(
        &cfg,
        "[[faults]]\nkind = \"plc_disconnect\"\ndevice = \"plc\"\nat = \"1500ms\"\nduration = \"3s\"\n",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let opts = twin::sim::SimOptions {
            modbus_ports: [("*".to_string(), 0)].into_iter().collect(),
            scenario: Some(s),
            ..twin::sim::SimOptions::default()
        };
        let sim = twin::sim::start(&cfg, opts, stop.clone())
            .await
            .expect("sim starts");
        let addr = sim.endpoints.modbus["plc"].clone();
        let connect = || tokio::net::TcpStream::connect(addr.clone());
        let wait = Duration::from_millis(400);
        // Before: it answers.
        let mut before = connect().await.expect("connect");
        assert_eq!(ask(&mut before, 1, wait).await, Answer::Reply);
        // During (from 1.5 s to 4.5 s of sim = wall time): silence on the
        // open connection, and a new one is closed at once.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(ask(&mut before, 2, wait).await, Answer::Silence);
        let mut during = connect().await.expect("the listener still accepts");
        assert_eq!(ask(&mut during, 3, wait).await, Answer::Closed);
        // After: a new connection is answered again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut after = connect().await.expect("connect");
        assert_eq!(ask(&mut after, 4, wait).await, Answer::Reply);
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), sim.task).await;
    });
}

/// A machine that is a station of the line counts what the station
/// releases: along the demo line each counter is at most the one before it
/// (bottles in → filled → labelled → out), and the filler's count is its
/// station's releases.
#[test]
fn r4_station_machines_count_their_releases() {
    let cfg = demo();
    let names = [
        "infeed.count",
        "filler.good_count",
        "labeller.label_count",
        "outfeed.count",
    ];
    let (t, rows) = run(&cfg, None, 60, &names);
    let last: Vec<f64> = rows
        .last()
        .map(|r| r.1.iter().map(|v| v.unwrap_or(-1.0)).collect())
        .unwrap_or_default();
    assert!(last.windows(2).all(|w| w[0] >= w[1]), "{last:?}");
    assert!(last[3] >= 30.0, "{last:?}");
    let filler = t.line_model(0).expect("model").stations()[0].releases();
    assert_eq!(last[1], filler as f64);
}

/// The demo line's station machines follow their stations in the physics:
/// a machine's speed (bottles per minute) is 60 / its station's cycle time
/// (the filler's 0.8 s: 75 bpm; the capper's 0.7 s: about 86), and its
/// motor current follows how much of the time it works on a bottle: near
/// idle before the first bottle reaches the filler (3 m of infeed at
/// 0.6 m/s), well above once bottles arrive every second and each is held
/// 0.8 s.
#[test]
fn r4_station_machines_follow_their_stations() {
    let text = include_str!("../../plant-configs/packaging-line.toml");
    let cfg = load_str(Path::new("packaging-line.toml"), text).unwrap_or_else(|r| panic!("{r}"));
    let names = ["filler.speed", "capper.speed", "filler.motor_current"];
    let (_, rows) = run(&cfg, None, 40, &names);
    let speed = mean(&rows, 0, 1.0, 40.0);
    assert!((speed - 75.0).abs() < 1e-6, "filler {speed} bpm");
    let capper = mean(&rows, 1, 1.0, 40.0);
    assert!((capper - 60.0 / 0.7).abs() < 1.0, "capper {capper} bpm");
    let starved = mean(&rows, 2, 1.0, 4.0);
    let fed = mean(&rows, 2, 20.0, 40.0);
    assert!(
        fed > starved + 3.0,
        "filler current {fed:.2} A fed, {starved:.2} A starved"
    );
}

/// Issue 9: the virtual plant runs the twin's physics, so a line drawn at
/// site-grid coordinates (`origin` around [1e5, 1e5]) made nothing move in
/// it either. In the line's local frame it serves, step for step, what it
/// serves at the origin: counts, eyes, and the motor currents measured
/// from the products' motion.
#[test]
fn r9_the_virtual_plant_far_from_the_origin_serves_what_it_does_at_the_origin() {
    let near = demo();
    let mut far = demo();
    for c in &mut far.config.lines[0].conveyors {
        c.origin = [c.origin[0] + 1e5, c.origin[1] + 1e5];
    }
    let names = [
        "infeed.count",
        "outfeed.count",
        "infeed.eye_entry",
        "outfeed.eye_exit",
        "infeed.motor_current",
        "outfeed.motor_current",
    ];
    let (t, at_origin) = run(&near, None, 30, &names);
    let out = t.line_counts(0).map_or(0, |c| c.out);
    assert!(
        out >= 10,
        "the demo line at the origin makes products: {out}"
    );
    let (_, far_away) = run(&far, None, 30, &names);
    assert!(
        far_away == at_origin,
        "the line at [1e5, 1e5] serves other values than at the origin"
    );
}
