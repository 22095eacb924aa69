//! `twin whatif`: forecasts from the command line (issue 4).

use crate::util::twin;

const DEMO: &str = "plant-configs/packaging-line.toml";

fn json(args: &[&str]) -> serde_json::Value {
    let out = twin()
        .args(["whatif", DEMO, "--json", "--horizon", "60s"])
        .args(["--base", "infeed.speed=0.6", "--base", "outfeed.speed=0.6"])
        .args(args)
        .output()
        .expect("run twin whatif");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// The demo line is arrival-bound at 60/min. A filler slower than the
/// arrivals (1.5 s per bottle) becomes the bottleneck: 40/min once the
/// bottles already past it have left (so a little more over the first
/// minute), a growing queue and a higher jam risk. The base forecast does not depend
/// on the candidate.
#[test]
fn r4_whatif_forecasts_a_slower_filler() {
    let same = json(&[]);
    let slow = json(&["--set", "station:filler=1.5"]);
    assert_eq!(same["base"], slow["base"], "the base is the same run");
    assert_eq!(same["base"], same["candidate"]);
    let tp = |v: &serde_json::Value| v["throughput_per_min"].as_f64().unwrap_or(-1.0);
    let base = tp(&slow["base"]);
    assert!((50.0..=66.0).contains(&base), "{slow}");
    let slower = tp(&slow["candidate"]);
    assert!((40.0..=47.0).contains(&slower), "{slow}");
    let risk = |v: &serde_json::Value| v["jam_risk"].as_f64().unwrap_or(-1.0);
    assert!(risk(&slow["candidate"]) > risk(&slow["base"]), "{slow}");
    assert!(
        slow["candidate"]["wip_end"].as_u64() > slow["base"]["wip_end"].as_u64(),
        "{slow}"
    );
}

#[test]
fn r4_whatif_names_what_it_cannot_use() {
    let out = twin()
        .args(["whatif", DEMO, "--set", "filler.speed=100"])
        .output()
        .expect("run twin whatif");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`filler.speed` is not a setpoint of line \"line1\"")
            && err.contains("infeed.speed, outfeed.speed, station:filler"),
        "{err}"
    );
    let out = twin()
        .args(["whatif", DEMO, "--set", "infeed.speed=0.6"])
        .output()
        .expect("run twin whatif");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--base outfeed.speed=M_PER_S"), "{err}");
}

/// `twin whatif` loads its config like every other command: a warning is
/// shown (on stderr, so `--json` on stdout stays one object), and the
/// forecast still runs.
#[test]
fn r9_whatif_prints_config_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warned.toml");
    let demo = std::fs::read_to_string(crate::util::root().join(DEMO)).expect("read the demo");
    // A register no machine binds: valid, with one warning.
    let spare = "\n[[sources.modbus]]\nname = \"spare\"\naddress = \"127.0.0.1:1502\"\n\
                 registers = [{ tag = \"spare.word\", table = \"holding\", address = 0 }]\n";
    std::fs::write(&path, demo + spare).expect("write the config");
    let out = twin()
        .arg("whatif")
        .arg(&path)
        .args(["--json", "--horizon", "10s"])
        .args(["--base", "infeed.speed=0.6", "--base", "outfeed.speed=0.6"])
        .output()
        .expect("run twin whatif");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: tag \"spare.word\" is not bound to any machine")
            && err.contains("warned.toml:"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(json["candidate"].is_object(), "{json}");
}
