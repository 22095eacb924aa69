//! Closed loop on the demo line (issue 12): the demo's own setpoint model
//! and optimiser, with the filler's cycle setpoint in `closed_loop`, on the
//! virtual plant in a supply surge with a wearing filler, over real Modbus
//! on loopback. The twin writes the filler faster, the plant follows, the
//! read-back confirms it, and the audit log holds every write. A replay of
//! the run's recording decides the same and writes nothing.

use std::path::Path;

use crate::util::{json_lines, run_ok, twin};

/// The demo config (its models found from anywhere) with the filler's
/// cycle setpoint in closed loop (the belts stay in shadow mode).
fn closed_loop_demo(dir: &Path) -> std::path::PathBuf {
    let shadow = "tag = \"filler.cycle_sp\"\nmode = \"shadow\"";
    let text = crate::util::demo_text();
    assert!(text.contains(shadow), "the demo's filler setpoint changed");
    // A loaded test machine can lag the tick loop by seconds: a read-back
    // timeout that tolerates it (the demo's is 2 s).
    let text = text.replace(
        shadow,
        "tag = \"filler.cycle_sp\"\nmode = \"closed_loop\"\nreadback_timeout = \"10s\"",
    );
    let p = dir.join("plant.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// A surge the commissioned filler (0.8 s, 75/min) cannot take, on a filler
/// that wears fast: only a faster cycle keeps up.
fn surge(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("surge.toml");
    std::fs::write(
        &p,
        r#"version = 1
name = "surge"
[[faults]]
kind = "supply"
at = "0s"
duration = "10m"
per_min = 90.0
[[faults]]
kind = "station_drift"
at = "0s"
station = "filler"
per_hour = 2.0
"#,
    )
    .expect("write scenario");
    p
}

#[test]
fn r12_the_demo_closes_the_loop_on_its_filler_in_a_surge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = closed_loop_demo(dir.path());
    let scenario = surge(dir.path());
    let (audit, events, rec) = (
        dir.path().join("audit.jsonl"),
        dir.path().join("e.jsonl"),
        dir.path().join("live.mcap"),
    );
    run_ok(
        twin()
            .args(["demo", "--no-table", "--for", "80s", "--config"])
            .arg(&cfg)
            .arg("--scenario")
            .arg(&scenario)
            .arg("--audit")
            .arg(&audit)
            .arg("--events")
            .arg(&events)
            .arg("--record")
            .arg(&rec),
    );
    let all = json_lines(&std::fs::read(&events).expect("events"));
    let decisions: Vec<&serde_json::Value> =
        all.iter().filter(|e| e["type"] == "setpoint").collect();
    let of = |tag: &str, d: &str| -> Vec<&serde_json::Value> {
        decisions
            .iter()
            .copied()
            .filter(|e| e["tag"] == tag && e["decision"] == d)
            .collect()
    };
    let written = of("filler.cycle_sp", "written");
    assert!(
        !written.is_empty(),
        "the twin wrote the filler faster: {decisions:#?}"
    );
    // The last tick's time: a write in the last seconds may not have been
    // read back before the run ended.
    let end = all.iter().map(crate::util::t_ms).max().unwrap_or(0);
    for w in written
        .iter()
        .filter(|w| crate::util::t_ms(w) + 12_000 <= end)
    {
        let (old, value) = (
            w["old"].as_f64().expect("old"),
            w["value"].as_f64().expect("value"),
        );
        assert!((0.5..=1.0).contains(&value), "within its bounds: {w}");
        assert!((old - value).abs() <= 0.1 + 1e-9, "one max_step: {w}");
        assert!(value < old, "faster in a surge: {w}");
        assert_eq!(w["actor"]["id"], "line_setpoints", "{w}");
        // Read back: the plant took it.
        assert!(
            of("filler.cycle_sp", "readback_ok")
                .iter()
                .any(|r| r["intent"] == w["intent"]),
            "read back: {w}\n{decisions:#?}"
        );
    }
    // Nothing failed on the way: no mismatch, no lock, no lost write.
    let failed: Vec<_> = decisions
        .iter()
        .filter(|e| {
            ["readback_mismatch", "locked", "write_failed"]
                .contains(&e["decision"].as_str().unwrap_or(""))
                || e["rule"] == "device_refused"
                || e["rule"] == "not_sent"
                || e["rule"] == "write_failed"
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // The belts are in shadow mode: decided, never written.
    for belt in ["infeed.speed", "outfeed.speed"] {
        assert!(of(belt, "written").is_empty(), "{belt} is shadow");
    }
    // The plant runs the last value read back.
    let last_written = of("filler.cycle_sp", "readback_ok")
        .last()
        .and_then(|w| w["value"].as_f64())
        .expect("a value read back");
    let last_read = all
        .iter()
        .rev()
        .filter(|e| e["type"] == "tag" && e["tag"] == "filler.cycle_sp")
        .find_map(|e| e["value"].as_f64())
        .expect("the setpoint register is polled");
    assert!(
        (last_read - last_written).abs() < 1e-9,
        "{last_read} {last_written}"
    );
    // No product lost on the line.
    let lost = all
        .iter()
        .filter(|e| e["type"] == "line")
        .filter_map(|e| e["lost"].as_u64())
        .max()
        .unwrap_or(0);
    assert_eq!(lost, 0, "the twin's writes lost no bottle");
    // The audit log holds every write and verifies.
    run_ok(twin().args(["audit", "verify"]).arg(&audit));
    let log = std::fs::read_to_string(&audit).expect("audit");
    let logged = log
        .lines()
        .filter(|l| l.contains("\"decision\":\"written\""))
        .count();
    assert_eq!(logged, written.len(), "{log}");
    // A replay of the recording decides the same, byte for byte, with no
    // writer: it opens no connection and writes nothing.
    let replayed = crate::util::replay_verified(&rec, &dir.path().join("replayed.jsonl"));
    assert!(
        replayed == std::fs::read(&events).expect("live"),
        "the replay of a closed-loop run decides what the live run decided"
    );
}
