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
