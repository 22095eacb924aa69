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
