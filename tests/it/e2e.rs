//! End to end: the real binary as virtual plant (`twin sim`) and as twin
//! (`twin run`), over real Modbus TCP and real MQTT (embedded rumqttd), on
//! free loopback ports.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::*;

const CFG: &str = "tests/configs/e2e-line.toml";
const ALL_TAGS: [&str; 13] = [
    "belt.speed",
    "belt.motor_current",
    "belt.torque",
    "belt.count",
    "belt.running",
    "belt.fault",
    "belt.vibration",
    "belt.motor_temperature",
    "belt.recipe",
    "belt.flow",
    "belt.energy",
    "belt.door_closed",
    "belt.estop_ok",
];

fn start_sim(dir: &std::path::Path, modbus_port: u16, mqtt_port: u16) -> (Proc, serde_json::Value) {
    let ep = dir.join(format!("endpoints-{modbus_port}.json"));
    let mut cmd = twin();
    cmd.args(["sim", CFG, "--publish", "200ms"])
        .arg("--modbus-port")
        .arg(format!("plc={modbus_port}"))
        .arg("--mqtt-port")
        .arg(mqtt_port.to_string())
        .arg("--endpoints-out")
        .arg(&ep)
        .arg("--truth")
        .arg(dir.join(format!("truth-{modbus_port}.jsonl")));
    let p = Proc::spawn(cmd);
    let v = wait_json(&ep, Duration::from_secs(20));
    (p, v)
}

fn good(e: &serde_json::Value) -> bool {
    e["quality"] == "good"
}

#[test]
fn event_values_match_what_the_sim_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sim, _) = start_sim(dir.path(), 0, 0);
    let mut run = twin();
    run.args(["run", CFG, "--events", "-", "--for", "4s", "--endpoints"])
        .arg(dir.path().join("endpoints-0.json"));
    let mut run = Proc::spawn(run);
    assert_eq!(
        run.wait(Duration::from_secs(30)),
        Some(0),
        "run failed:\n{}",
        run.stderr()
    );
    assert!(sim.is_running(), "sim died:\n{}", sim.stderr());

    let truth = std::fs::read_to_string(dir.path().join("truth-0.jsonl")).expect("truth log");
    // JSON values compare exactly: numbers by their f64, booleans, strings.
    let mut served: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for line in truth.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("truth line is JSON");
        let tag = v["tag"].as_str().expect("tag").to_string();
        served.entry(tag).or_default().push(v["value"].clone());
    }

    let ev = events(&run.lines());
    let mut checked = BTreeMap::new();
    for e in ev.iter().filter(|e| e["type"] == "tag" && good(e)) {
        let tag = e["tag"].as_str().expect("tag");
        let x = &e["value"];
        let set = served
            .get(tag)
            .unwrap_or_else(|| panic!("sim never served {tag}"));
        assert!(
            set.contains(x),
            "{tag} = {x} in the event stream, but the sim never served that value (served {} values)",
            set.len()
        );
        *checked.entry(tag.to_string()).or_insert(0) += 1;
    }
    for tag in ALL_TAGS {
        assert!(
            checked.get(tag).copied().unwrap_or(0) >= 1,
            "no good value for {tag}: {checked:?}"
        );
    }
    // Speeds and counters change continuously: many values, not one.
    assert!(checked["belt.speed"] >= 5, "{checked:?}");
    // Every event names its machine and carries the documented fields.
    for e in &ev {
        assert_eq!(e["v"], 1);
        assert_eq!(e["machine"], "belt");
        assert!(e["t"].is_string() && e["quality"].is_string());
    }
}

#[test]
fn modbus_outage_turns_tags_bad_and_they_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, ep) = start_sim(dir.path(), 0, 0);
    let modbus_addr = ep["modbus"]["plc"]
        .as_str()
        .expect("plc endpoint")
        .to_string();
    let mqtt_url = ep["mqtt"]["sensors"]
        .as_str()
        .expect("mqtt endpoint")
        .to_string();
    let modbus_port: u16 = modbus_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mqtt_port: u16 = mqtt_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");

    let mut run = twin();
    run.args(["run", CFG, "--events", "-", "--for", "60s"])
        .arg("--modbus")
        .arg(format!("plc={modbus_addr}"))
        .arg("--mqtt")
        .arg(format!("sensors={mqtt_url}"));
    let mut run = Proc::spawn(run);

    let all_good = |lines: &[String]| {
        let ev = events(lines);
        ["belt.speed", "belt.vibration"]
            .iter()
            .all(|t| tag_events(&ev, t).last().is_some_and(|e| good(e)))
    };
    assert!(
        run.wait_for(Duration::from_secs(20), all_good),
        "tags never became good:\n{}",
        run.stderr()
    );

    // The plant goes away: the Modbus server and the broker with it.
    drop(sim);
    let seen_before = run.lines().len();
    let outage = |lines: &[String]| {
        let ev = events(&lines[seen_before..]);
        let speed_bad = tag_events(&ev, "belt.speed")
            .iter()
            .any(|e| e["quality"] == "bad");
        let vib_stale = tag_events(&ev, "belt.vibration")
            .iter()
            .any(|e| e["quality"] == "stale");
        speed_bad && vib_stale
    };
    assert!(
        run.wait_for(Duration::from_secs(10), outage),
        "Modbus tags did not go bad and MQTT tags did not go stale:\n{}",
        run.stderr()
    );
    let ev = events(&run.lines());
    // Measured in tick time: the transition happens within the configured
    // age (stale_after = 1 s) of the last good sample, plus one poll/tick.
    for (tag, quality) in [("belt.speed", "bad"), ("belt.vibration", "stale")] {
        let te = tag_events(&ev, tag);
        let last_good = te.iter().rev().find(|e| good(e)).expect("a good event");
        let first_out = te
            .iter()
            .find(|e| e["quality"] == quality)
            .expect("outage event");
        let src = humantime::parse_rfc3339(last_good["src_t"].as_str().expect("src_t"))
            .expect("rfc3339")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch")
            .as_millis() as i64;
        let lag = t_ms(first_out) - src;
        assert!(
            lag <= 1_000 + 400,
            "{tag} turned {quality} {lag} ms after its last sample"
        );
        if quality == "bad" {
            assert!(
                first_out["value"].is_null(),
                "bad carries no value: {first_out}"
            );
            assert!(
                first_out["reason"].is_string(),
                "bad names a reason: {first_out}"
            );
        } else {
            assert!(
                first_out["value"].is_number(),
                "stale keeps the last value: {first_out}"
            );
        }
    }
    assert!(run.is_running(), "twin must keep running through an outage");
    assert!(
        run.stderr().contains("plc") && run.stderr().contains(&modbus_addr),
        "the warning names the device and its address:\n{}",
        run.stderr()
    );

    // The plant comes back on the same ports; the twin reconnects by itself.
    let (_sim2, _) = start_sim(dir.path(), modbus_port, mqtt_port);
    let seen = run.lines().len();
    let recovered = |lines: &[String]| {
        let ev = events(&lines[seen..]);
        ["belt.speed", "belt.vibration"]
            .iter()
            .all(|t| tag_events(&ev, t).iter().any(|e| good(e)))
    };
    assert!(
        run.wait_for(Duration::from_secs(30), recovered),
        "tags did not recover after the plant came back:\n{}",
        run.stderr()
    );
    run.terminate();
    assert_eq!(
        run.wait(Duration::from_secs(10)),
        Some(0),
        "clean shutdown on SIGTERM"
    );
}

#[test]
fn unreachable_device_is_reported_and_the_twin_keeps_running() {
    let closed = free_port();
    let broker = free_port();
    let mut run = twin();
    run.args(["run", CFG, "--events", "-", "--for", "2s"])
        .arg("--modbus")
        .arg(format!("plc=127.0.0.1:{closed}"))
        .arg("--mqtt")
        .arg(format!("sensors=mqtt://127.0.0.1:{broker}"));
    let mut run = Proc::spawn(run);
    assert_eq!(
        run.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        run.stderr()
    );
    let err = run.stderr();
    assert!(
        err.contains("Modbus device unreachable")
            && err.contains(&format!("127.0.0.1:{closed}"))
            && err.contains("plc"),
        "warning must name the device and its address:\n{err}"
    );
    assert!(err.contains("MQTT broker unreachable"), "{err}");
    // Health per source, summarised at shutdown.
    let health: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("Source health at shutdown"))
        .collect();
    assert_eq!(health.len(), 2, "{err}");
    assert!(
        health.iter().any(|l| l.contains("source=plc")
            && l.contains("up=false")
            && l.contains("connection_refused")),
        "{health:?}"
    );
    assert!(
        health.iter().any(|l| l.contains("source=sensors")
            && l.contains("up=false")
            && l.contains("broker_unreachable")),
        "{health:?}"
    );
    let ev = events(&run.lines());
    let speed = tag_events(&ev, "belt.speed");
    assert!(
        speed
            .iter()
            .any(|e| e["quality"] == "bad" && e["reason"] == "connection_refused"),
        "{speed:?}"
    );
    assert!(
        ev.iter().all(|e| !good(e)),
        "nothing can be good without a plant"
    );
}

#[test]
fn malformed_mqtt_payloads_are_dropped_with_one_warning() {
    use rumqttc::{Client, MqttOptions, QoS};
    let broker =
        twin::broker::start_embedded("127.0.0.1:0".parse().expect("addr")).expect("broker");
    let closed = free_port();
    let mut run = twin();
    run.args(["run", CFG, "--events", "-", "--for", "6s"])
        .arg("--modbus")
        .arg(format!("plc=127.0.0.1:{closed}"))
        .arg("--mqtt")
        .arg(format!("sensors=mqtt://{broker}"));
    let mut run = Proc::spawn(run);
    assert!(
        run.wait_for(Duration::from_secs(10), |_| run_connected(&run)),
        "twin never connected:\n{}",
        run.stderr()
    );

    let mut opts = MqttOptions::new("e2e-publisher", broker.ip().to_string(), broker.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 64);
    let pump = std::thread::spawn(move || {
        for n in conn.iter() {
            if n.is_err() {
                break;
            }
        }
    });
    for bad in [
        &b"not json"[..],
        b"{\"data\":{}}",
        b"{\"data\":{\"rms\":\"high\"}}",
        b"\xff\xfe",
    ] {
        client
            .publish("e2e/belt/vibration", QoS::AtLeastOnce, false, bad.to_vec())
            .expect("publish");
    }
    client
        .publish("e2e/belt/temp", QoS::AtLeastOnce, false, b"warm".to_vec())
        .expect("publish");
    client
        .publish(
            "e2e/belt/vibration",
            QoS::AtLeastOnce,
            false,
            br#"{"data":{"rms":2.5}}"#.to_vec(),
        )
        .expect("publish");
    client
        .publish("e2e/belt/temp", QoS::AtLeastOnce, false, b"41.5".to_vec())
        .expect("publish");

    let got = |lines: &[String]| {
        let ev = events(lines);
        let vib = tag_events(&ev, "belt.vibration")
            .iter()
            .any(|e| good(e) && e["value"] == 2.5);
        let temp = tag_events(&ev, "belt.motor_temperature")
            .iter()
            .any(|e| good(e) && e["value"] == 41.5);
        vib && temp
    };
    assert!(
        run.wait_for(Duration::from_secs(10), got),
        "valid payloads after bad ones must get through:\n{}",
        run.stderr()
    );
    let _ = client.disconnect();
    let _ = pump.join();
    assert_eq!(
        run.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        run.stderr()
    );
    let err = run.stderr();
    let warns_vib = err
        .lines()
        .filter(|l| {
            l.contains("Dropped malformed MQTT payload") && l.contains("e2e/belt/vibration")
        })
        .count();
    let warns_temp = err
        .lines()
        .filter(|l| l.contains("Dropped malformed MQTT payload") && l.contains("e2e/belt/temp"))
        .count();
    assert_eq!(
        (warns_vib, warns_temp),
        (1, 1),
        "one warning per topic per interval:\n{err}"
    );
    // Malformed payloads never reach the stream as values.
    let ev = events(&run.lines());
    assert!(
        tag_events(&ev, "belt.vibration")
            .iter()
            .all(|e| e["value"].is_null() || e["value"] == 2.5)
    );
}

fn run_connected(p: &Proc) -> bool {
    p.stderr().contains("Connected to MQTT broker")
}

#[test]
fn demo_runs_the_packaging_line_and_ends_cleanly() {
    let mut demo = twin();
    demo.args(["demo", "--for", "4s", "--events", "-"]);
    let mut demo = Proc::spawn(demo);
    assert_eq!(
        demo.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        demo.stderr()
    );
    let ev = events(&demo.lines());
    let cfg = twin::config::load_file(&root().join("plant-configs/packaging-line.toml"))
        .expect("demo config is valid");
    for t in cfg.tags.iter() {
        assert!(
            tag_events(&ev, &t.name).iter().any(|e| good(e)),
            "demo never showed a good value for {}",
            t.name
        );
    }
}

/// `twin run`'s start-up errors read as sentences: an override of a kind
/// of source the config has none of says so (it listed nothing after
/// "known:"), and an event stream that cannot be opened names its path
/// (it printed `path=Some("/")`).
#[test]
fn r_hostile_run_start_errors_name_what_is_wrong_plainly() {
    let cfg = root().join("tests/configs/modbus-faults.toml");
    let out = twin()
        .arg("run")
        .arg(&cfg)
        .args([
            "--no-table",
            "--for",
            "1s",
            "--mqtt",
            "cm=mqtt://127.0.0.1:1",
        ])
        .output()
        .expect("run twin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown mqtt source \"cm\"; known: the config has no mqtt source"),
        "{err}"
    );
    let out = twin()
        .arg("run")
        .arg(&cfg)
        .args(["--no-table", "--for", "1s", "--events", "/"])
        .output()
        .expect("run twin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(r#"path="/" "#) && !err.contains("Some("),
        "{err}"
    );
}
