//! The generic anomaly path for any plant (issue 11, docs/anomaly.md): its
//! Python self-test, run as part of the suite. It trains the dynamic-PCA
//! detector on a generated wide CSV of 50 correlated variables and checks,
//! on held-out runs with faults, mean detection ≥ 0.90 at ≤ 5 % false
//! alarms; that the ONNX export scores exactly as the NumPy reference
//! (1e-5); that training is deterministic; and that the grid and lags mean
//! what the twin's feature windows mean.

use crate::util::root;

#[test]
fn r11_the_generic_anomaly_path_trains_detects_and_exports_as_documented() {
    let py = root().join(".venv/bin/python");
    let out = std::process::Command::new(py)
        .current_dir(root())
        .args(["-m", "unittest", "discover", "-s", "models/tests", "-v"])
        .output()
        .expect("run the venv's python (scripts/setup.sh makes it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "models/tests failed:\n{stderr}");
    // unittest reports on stderr: every test ran, none skipped.
    assert!(stderr.contains("\nOK"), "{stderr}");
    assert!(
        !stderr.contains("skipped"),
        "a skipped test is not a pass:\n{stderr}"
    );
    let ran: usize = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran >= 15, "ran {ran} tests:\n{stderr}");
}

#[test]
fn r11_the_trainer_reads_a_recording_as_the_twin_does() {
    // The trainer reads recordings with Python's `mcap` and `protobuf`,
    // decoding tag samples from the schema the file carries: every numeric
    // tag, its sample count and its last value must be what the twin's own
    // reader sees.
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("r.mcap");
    let out = crate::util::twin()
        .args(["demo", "--headless", "--for", "20s", "--record"])
        .arg(&rec)
        .output()
        .expect("run twin demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut mine: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    let mut r = twin::recording::RecordingReader::open(std::slice::from_ref(&rec)).expect("opens");
    for item in r.by_ref() {
        if let twin::recording::Item::Sample { record, .. } = item.expect("reads") {
            let v = match record.value {
                Some(twin::twin::RecordValue::Num(n)) => n,
                Some(twin::twin::RecordValue::Bool(b)) => f64::from(u8::from(b)),
                _ => continue,
            };
            let e = mine.entry(record.tag.to_string()).or_insert((0, 0.0));
            *e = (e.0 + 1, v);
        }
    }
    assert!(mine.len() > 20, "{} tags", mine.len());

    let script = r#"
import json, sys
sys.path.insert(0, "models")
import anomaly
s = anomaly.read_mcap(sys.argv[1])
print(json.dumps({tag: [len(t), float(v[-1])] for tag, (t, v, g) in s.tags.items()}))
"#;
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .current_dir(root())
        .arg("-c")
        .arg(script)
        .arg(&rec)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: std::collections::BTreeMap<String, (usize, f64)> =
        serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(theirs, mine);
}
