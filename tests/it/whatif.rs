//! `twin whatif`: forecasts from the command line (issue 4), from the
//! state it can read (issue 10): a recording, the live plant, or nominal
//! values it names.

use std::path::Path;
use std::time::Duration;

use crate::util::{Proc, free_port, twin, wait_json};

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
            && err.contains("infeed.speed, outfeed.speed, filler.cycle_sp"),
        "{err}"
    );
}

/// `twin whatif` loads its config like every other command: a warning is
/// shown (on stderr, so `--json` on stdout stays one object), and the
/// forecast still runs.
#[test]
fn r9_whatif_prints_config_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warned.toml");
    let demo = crate::util::demo_text();
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

fn whatif(args: &[&std::ffi::OsStr]) -> std::process::Output {
    twin()
        .arg("whatif")
        .arg(DEMO)
        .args(args)
        .output()
        .expect("run twin whatif")
}

fn ok_json(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn assumed(v: &serde_json::Value) -> Vec<String> {
    v["assumed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["setpoint"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A new user's first command: no --base, nothing to read. It works, at
/// the virtual plant's nominal belt speed, and says so for each belt;
/// --base takes a value out of the assumptions.
#[test]
fn r10_whatif_without_base_assumes_nominal_values_and_names_them() {
    let out = twin()
        .args(["whatif", DEMO, "--set", "outfeed.speed=0.4"])
        .output()
        .expect("run twin whatif");
    let err = String::from_utf8_lossy(&out.stderr);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("assumed: infeed.speed = 0.6 m/s")
            && err.contains("assumed: outfeed.speed = 0.6 m/s")
            && err.contains("--at REC.mcap@TIME")
            && err.contains("--base"),
        "{err}"
    );
    assert!(
        table.contains("as is") && table.contains("candidate") && table.contains("WIP"),
        "{table}"
    );

    let v = ok_json(&whatif(&[
        "--json".as_ref(),
        "--set".as_ref(),
        "outfeed.speed=0.4".as_ref(),
    ]));
    // The filler's cycle comes from a tag too: its commissioned value.
    assert_eq!(
        assumed(&v),
        ["infeed.speed", "outfeed.speed", "filler.cycle_sp"],
        "{v}"
    );
    assert_eq!(v["start"]["from"], "assumed", "{v}");
    assert_eq!(v["start"]["belt_speeds"]["outfeed.speed"], 0.6, "{v}");
    let tp = |f: &serde_json::Value| f["throughput_per_min"].as_f64().unwrap_or(-1.0);
    assert!(
        tp(&v["candidate"]) < tp(&v["base"]),
        "a slower outfeed: {v}"
    );

    let v = ok_json(&whatif(&[
        "--json".as_ref(),
        "--base".as_ref(),
        "infeed.speed=0.5".as_ref(),
    ]));
    assert_eq!(assumed(&v), ["outfeed.speed", "filler.cycle_sp"], "{v}");
    assert_eq!(v["start"]["belt_speeds"]["infeed.speed"], 0.5, "{v}");
}

/// `--at REC@TIME` starts from the replayed line: its WIP is the WIP the
/// live run reported at that time, nothing is assumed; a bad `--at` is a
/// clear error.
#[test]
fn r10_whatif_at_starts_from_the_recorded_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, rec) = (dir.path().join("live.jsonl"), dir.path().join("rec.mcap"));
    let out = twin()
        .args(["demo", "--for", "8s", "--no-table", "--events"])
        .arg(&live)
        .arg("--record")
        .arg(&rec)
        .output()
        .expect("run twin demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&live).expect("live events");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "line")
        .collect();
    assert!(lines.len() >= 5, "too few line events: {}", lines.len());
    let at = |time: &str| format!("{}@{time}", rec.display());
    let mut wips = Vec::new();
    for e in [&lines[2], &lines[lines.len() / 2], &lines[lines.len() - 2]] {
        let t = e["t"].as_str().expect("t");
        let v = ok_json(&whatif(&[
            "--json".as_ref(),
            "--horizon".as_ref(),
            "5s".as_ref(),
            "--at".as_ref(),
            at(t).as_ref(),
        ]));
        assert_eq!(v["start"]["from"], "recording", "{v}");
        assert_eq!(v["start"]["t"], e["t"], "{v}");
        assert_eq!(v["start"]["wip"], e["wip"], "at {t}: {v}");
        assert_eq!(v["base"]["wip_start"], e["wip"], "at {t}: {v}");
        assert_eq!(v["warmup_s"], 0.0, "{v}");
        assert!(assumed(&v).is_empty(), "{v}");
        wips.push(e["wip"].as_u64());
    }
    assert!(
        wips.windows(2).any(|w| w[0] != w[1]),
        "the WIP should change over the demo's start: {wips:?}"
    );

    let err = |spec: String| {
        let out = whatif(&["--at".as_ref(), spec.as_ref()]);
        assert_eq!(out.status.code(), Some(1), "{spec}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(rec.display().to_string());
    assert!(e.contains("expected REC.mcap@TIME"), "{e}");
    let e = err(format!("{}@3s", dir.path().join("nope.mcap").display()));
    assert!(
        e.contains("cannot read the recording") && e.contains("nope.mcap"),
        "{e}"
    );
    let e = err(at("1h"));
    assert!(
        e.contains("1h is past the end of") && e.contains("rec.mcap"),
        "{e}"
    );
    let e = err(at("2000-01-01T00:00:00Z"));
    assert!(e.contains("is before the recording starts"), "{e}");
    let e = err(at("yesterday"));
    assert!(e.contains("neither an offset"), "{e}");
}

/// `--endpoints` reads the plant's current belt speeds (here `twin sim`'s,
/// checked against what it served) instead of assuming them; a plant that
/// cannot be read is an error naming the tags.
#[test]
fn r10_whatif_endpoints_reads_the_live_speeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ep, truth) = (dir.path().join("ep.json"), dir.path().join("truth.jsonl"));
    let mut sim = twin();
    sim.args(["sim", DEMO, "--mqtt-port", "0", "--modbus-port", "*=0"])
        .arg("--endpoints-out")
        .arg(&ep)
        .arg("--truth")
        .arg(&truth);
    let _sim = Proc::spawn(sim);
    wait_json(&ep, Duration::from_secs(30));
    let v = ok_json(&whatif(&[
        "--json".as_ref(),
        "--horizon".as_ref(),
        "10s".as_ref(),
        "--read-timeout".as_ref(),
        "20s".as_ref(),
        "--endpoints".as_ref(),
        ep.as_os_str(),
    ]));
    assert_eq!(v["start"]["from"], "live", "{v}");
    assert_eq!(v["start"]["products_known"], false, "{v}");
    assert!(assumed(&v).is_empty(), "{v}");
    let served = served(&truth);
    for tag in ["infeed.speed", "outfeed.speed"] {
        let read = &v["start"]["read"][tag];
        assert!(
            served.iter().any(|(t, x)| t == tag && x == read),
            "{tag} = {read} was read, but the sim never served it"
        );
        let speed = v["start"]["belt_speeds"][tag].as_f64().unwrap_or(-1.0);
        assert!((speed - read.as_f64().unwrap_or(0.0)).abs() < 1e-3, "{v}");
    }

    // The same plant, not there: every port refuses.
    let text = std::fs::read_to_string(&ep).expect("endpoints");
    let mut eps: serde_json::Value = serde_json::from_str(&text).expect("endpoints JSON");
    let dead = free_port();
    for (_, a) in eps["modbus"].as_object_mut().into_iter().flatten() {
        *a = format!("127.0.0.1:{dead}").into();
    }
    for (_, a) in eps["mqtt"].as_object_mut().into_iter().flatten() {
        *a = format!("mqtt://127.0.0.1:{dead}").into();
    }
    let dead_ep = dir.path().join("dead.json");
    std::fs::write(&dead_ep, eps.to_string()).expect("write endpoints");
    let out = whatif(&[
        "--read-timeout".as_ref(),
        "2s".as_ref(),
        "--endpoints".as_ref(),
        dead_ep.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not read these tags from the live plant within 2s")
            && err.contains("infeed.speed: bad")
            && err.contains("outfeed.speed: bad"),
        "{err}"
    );
}

/// (tag, value) the sim served, from its truth log.
fn served(path: &Path) -> Vec<(String, serde_json::Value)> {
    std::fs::read_to_string(path)
        .expect("truth log")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["tag"].as_str()?.to_string(), v["value"].clone())))
        .collect()
}

/// A station whose cycle time comes from a tag: the virtual plant has no
/// nominal value for a plain cycle time in seconds, so nothing is invented:
/// the error asks for --base, and --base makes the forecast run.
#[test]
fn r10_whatif_does_not_invent_a_cycle_time_tag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cycle-tag.toml");
    let demo = crate::util::demo_text();
    let fixed = "cycle_time_tag = \"filler.cycle_sp\"\n  cycle_time = \"800ms\"";
    assert!(
        demo.contains(fixed),
        "the demo's filler has a commissioned cycle"
    );
    let text = demo
        .replacen(fixed, "cycle_time_tag = \"filler.cycle_time\"", 1)
        .replace("  search = [\"filler.cycle_sp\"]\n", "")
        + "\n[[sources.modbus]]\nname = \"cycles\"\naddress = \"127.0.0.1:1502\"\n\
           registers = [{ tag = \"filler.cycle_time\", table = \"holding\", address = 0, type = \"f32\", unit = \"s\" }]\n";
    std::fs::write(&path, text).expect("write the config");
    let out = twin()
        .arg("whatif")
        .arg(&path)
        .output()
        .expect("run twin whatif");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("station \"filler\" takes its cycle time from tag \"filler.cycle_time\"")
            && err.contains("--base filler.cycle_time=SECONDS"),
        "{err}"
    );
    let out = twin()
        .arg("whatif")
        .arg(&path)
        .args([
            "--json",
            "--horizon",
            "10s",
            "--base",
            "filler.cycle_time=1.5",
        ])
        .output()
        .expect("run twin whatif");
    let v = ok_json(&out);
    assert_eq!(v["start"]["station_cycles_s"]["filler"], 1.5, "{v}");
    assert_eq!(assumed(&v), ["infeed.speed", "outfeed.speed"], "{v}");
}

/// `--grid` forecasts every combination of its axes from the one start
/// (issue 11: the setpoint model's training data): a `start` line with the
/// as-is forecast, then one `candidate` line per combination, first axis
/// slowest, each equal to the single forecast `--set` gives for the same
/// values; `--set` applies to every candidate. Bad axes are refused.
#[test]
fn r11_whatif_grid_forecasts_every_combination_from_one_start() {
    let common = [
        "--json",
        "--horizon",
        "10s",
        "--warmup",
        "30s",
        "--base",
        "infeed.speed=0.6",
        "--base",
        "outfeed.speed=0.6",
    ];
    let args = |extra: &[&str]| -> Vec<std::ffi::OsString> {
        common.iter().chain(extra).map(|s| s.into()).collect()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        whatif(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>())
    };
    let out = run(&[
        "--grid",
        "infeed.speed=0.4:0.8:0.4",
        "--grid",
        "outfeed.speed=0.3:0.9:0.3",
        "--set",
        "station:filler=1.5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1 + 2 * 3, "{lines:?}");
    let head = &lines[0];
    assert_eq!(head["type"], "start", "{head}");
    assert_eq!(head["candidates"], 6, "{head}");
    assert_eq!(
        head["grid"]["outfeed.speed"],
        serde_json::json!([0.3, 0.6, 0.9])
    );
    let single = ok_json(&run(&["--set", "station:filler=1.5"]));
    assert_eq!(
        head["base"], single["base"],
        "the as-is forecast is the same"
    );
    let mut outs = Vec::new();
    for (i, c) in lines[1..].iter().enumerate() {
        let (vi, vo) = ([0.4, 0.8][i / 3], [0.3, 0.6, 0.9][i % 3]);
        assert_eq!(c["type"], "candidate", "{c}");
        assert_eq!(c["index"], i, "{c}");
        let want =
            serde_json::json!({"infeed.speed": vi, "outfeed.speed": vo, "station:filler": 1.5});
        assert_eq!(c["set"], want, "{c}");
        let one = ok_json(&run(&[
            "--set",
            "station:filler=1.5",
            "--set",
            &format!("infeed.speed={vi}"),
            "--set",
            &format!("outfeed.speed={vo}"),
        ]));
        assert_eq!(c["candidate"], one["candidate"], "candidate {i}");
        outs.push(c["candidate"]["out"].as_u64());
    }
    assert!(
        outs.windows(2).any(|w| w[0] != w[1]),
        "the candidates should differ: {outs:?}"
    );

    let refused = |extra: &[&str], code: i32, want: &str| {
        let out = run(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
    };
    refused(
        &["--grid", "infeed.speed=0.8:0.4:0.1"],
        2,
        "expected TAG=LO:HI:STEP",
    );
    refused(
        &["--grid", "filler.speed=60:120:10"],
        1,
        "`filler.speed` is not a setpoint",
    );
    refused(
        &[
            "--grid",
            "infeed.speed=0.4:0.8:0.1",
            "--set",
            "infeed.speed=0.5",
        ],
        1,
        "also given with --set",
    );
    refused(
        &[
            "--grid",
            "infeed.speed=0.4:0.8:0.1",
            "--grid",
            "conveyor:infeed=0.1:0.2:0.1",
        ],
        1,
        "drives the same setpoint",
    );
    refused(
        &[
            "--grid",
            "infeed.speed=0:100:0.1",
            "--grid",
            "outfeed.speed=0:100:0.1",
        ],
        1,
        "at most 10000",
    );
}
