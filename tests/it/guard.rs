//! The guard through the CLI (issue 12): the demo's belt-speed setpoints in
//! shadow mode get a `setpoint` event per setpoint of every `proposal` the
//! optimiser makes (`shadow` when every rule passes, `blocked` with the
//! rule's id when one does not); two headless runs, and a live run and the
//! replay of its recording, give byte-identical streams.

use std::path::{Path, PathBuf};

use crate::ml_stage::demo_without_models;
use crate::util::{live_and_replay, root, run_ok, twin};

fn model(name: &str) -> String {
    root().join("tests/models").join(name).display().to_string()
}

/// The demo (its belt-speed setpoints are in shadow mode) with a setpoint
/// model on the belts whose proposals the physics lookahead vets (as
/// tests/it/ml_optimise.rs does): `setpoint_down.onnx` proposes both belts
/// a step slower, which keeps the throughput for less belt energy.
/// `interlock`, if given, replaces both belt setpoints' interlocks.
fn config(dir: &Path, interlock: &str, every: &str) -> PathBuf {
    let base = demo_without_models();
    let belts = [
        "tag = \"infeed.speed\"\nmode = \"shadow\"\nmin = 0.1\nmax = 0.85\nmax_step = 0.1\nmin_interval = \"10s\"\ninterlocks = [\"infeed.running\"]",
        "tag = \"outfeed.speed\"\nmode = \"shadow\"\nmin = 0.1\nmax = 0.85\nmax_step = 0.1\nmin_interval = \"10s\"\ninterlocks = [\"outfeed.running\"]",
    ];
    assert!(
        belts.iter().all(|b| base.contains(b)),
        "the demo's [[setpoints]] changed"
    );
    let mut base = base;
    if !interlock.is_empty() {
        for b in belts {
            let at = b.find("interlocks").unwrap_or(b.len());
            base = base.replace(b, &format!("{}{interlock}", &b[..at]));
        }
    }
    // The test model runs more often than the demo's 10 s.
    let base = base.replace("min_interval = \"10s\"\n", "");
    let models = format!(
        r#"
[[models]]
id = "belt_speeds"
path = "{}"
task = "setpoint"
every = "{every}"
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
  horizon = "20s"
  apply_after = "500ms"
  energy_weight = 5.0
  min_gain = 0.5
"#,
        model("setpoint_down.onnx")
    );
    let p = dir.join("plant.toml");
    std::fs::write(&p, format!("{base}\n{models}")).expect("write config");
    p
}

fn headless(cfg: &Path, events: &Path, span: &str) -> Vec<u8> {
    let mut c = twin();
    c.args(["demo", "--headless", "--for", span, "--config"])
        .arg(cfg)
        .arg("--events")
        .arg(events);
    run_ok(&mut c);
    std::fs::read(events).expect("events")
}

use crate::util::json_lines as lines_of;

fn of_type<'a>(all: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|e| e["type"] == kind).collect()
}

/// Every proposal has one `setpoint` event per setpoint it changes (from
/// the value its forecast started at) on its tick, by the model that
/// proposed it, for the value it proposed.
fn check_decisions(all: &[serde_json::Value]) -> Vec<(String, String, Option<String>)> {
    let proposals = of_type(all, "proposal");
    let setpoints = of_type(all, "setpoint");
    assert!(!proposals.is_empty(), "no proposal in {} events", all.len());
    let changed = |p: &serde_json::Value| -> Vec<&'static str> {
        ["infeed.speed", "outfeed.speed"]
            .into_iter()
            .filter(|t| p["setpoints"][*t] != p["current"][*t])
            .collect()
    };
    let per: Vec<Vec<&str>> = proposals.iter().map(|p| changed(p)).collect();
    assert!(
        per.iter().all(|c| !c.is_empty()),
        "a proposal changes something"
    );
    assert_eq!(
        setpoints.len(),
        per.iter().map(Vec::len).sum::<usize>(),
        "one per changed setpoint per proposal"
    );
    let mut out = Vec::new();
    let mut at = 0;
    for (p, tags) in proposals.iter().zip(&per) {
        let pair = &setpoints[at..at + tags.len()];
        at += tags.len();
        for (s, tag) in pair.iter().zip(tags.iter().copied()) {
            assert_eq!(s["tag"], tag, "{s}");
            assert_eq!(s["t"], p["t"], "decided on the proposal's tick: {s}");
            assert_eq!(s["mode"], "shadow", "{s}");
            assert_eq!(s["actor"]["kind"], "model", "{s}");
            assert_eq!(s["actor"]["id"], "belt_speeds", "{s}");
            assert_eq!(s["actor"]["sha256"], p["model_sha256"], "{s}");
            assert_eq!(s["requested"], p["setpoints"][tag], "{s}");
            let inputs: Vec<&str> = s["inputs"]
                .as_array()
                .expect("inputs")
                .iter()
                .map(|i| i["tag"].as_str().expect("tag"))
                .collect();
            assert!(
                inputs.contains(&"infeed.speed") && inputs.contains(&"outfeed.speed"),
                "the model's feature tags are its inputs: {s}"
            );
            assert!(s.get("intent").is_none(), "shadow writes nothing: {s}");
            out.push((
                tag.to_string(),
                s["decision"].as_str().expect("decision").to_string(),
                s["rule"].as_str().map(str::to_string),
            ));
            if s["decision"] == "shadow" {
                assert_eq!(s["value"], s["requested"], "{s}");
                assert!(s.get("rule").is_none(), "{s}");
            }
        }
    }
    out
}

#[test]
fn r12_shadow_mode_on_the_demo_decides_on_every_proposal_and_is_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "", "5s");
    let a = headless(&cfg, &dir.path().join("a.jsonl"), "32s");
    let decided = check_decisions(&lines_of(&a));
    assert!(
        decided.iter().any(|(_, d, _)| d == "shadow"),
        "some proposal passes every rule: {decided:?}"
    );
    for (_, d, r) in &decided {
        assert!(
            d == "shadow" || (d == "blocked" && r.is_some()),
            "{decided:?}"
        );
    }
    let b = headless(&cfg, &dir.path().join("b.jsonl"), "32s");
    assert!(a == b, "two runs of the same config differ");
}

#[test]
fn r12_a_failing_interlock_blocks_every_write_with_its_rule_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Never true: a belt never runs at 5 m/s.
    let cfg = config(
        dir.path(),
        "interlocks = [\"infeed.running and outfeed.speed > 5\"]",
        "5s",
    );
    let bytes = headless(&cfg, &dir.path().join("e.jsonl"), "22s");
    let all = lines_of(&bytes);
    let decided = check_decisions(&all);
    assert!(!decided.is_empty());
    // The interlock comes before the step and rate rules: it decides.
    for (_, d, r) in &decided {
        assert_eq!(
            (d.as_str(), r.as_deref()),
            ("blocked", Some("interlock")),
            "{decided:?}"
        );
    }
    let blocked = of_type(&all, "setpoint")
        .into_iter()
        .find(|s| s["decision"] == "blocked")
        .unwrap_or_else(|| panic!("a blocked one: {decided:?}"));
    let reason = blocked["reason"].as_str().expect("reason");
    assert!(reason.contains("outfeed.speed > 5"), "{reason}");
}

#[test]
fn r12_a_live_run_in_shadow_mode_and_its_replay_agree_byte_for_byte() {
    // The replay decides the same from the recorded samples, and has no
    // writer: it writes nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "", "1s");
    let (bytes, replayed) = live_and_replay(dir.path(), &cfg, "8s");
    let all = lines_of(&bytes);
    check_decisions(&all);
    assert_eq!(replayed, bytes);
}
