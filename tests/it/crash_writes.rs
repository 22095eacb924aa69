//! Issue 12, "kill -9 during a stream of writes; afterwards the audit log
//! verifies and matches the device's own write log".
//!
//! The real binaries: `twin sim` serves the demo line on 127.0.0.1 (port 0)
//! and keeps its device write log (`--write-log`); `twin run` mirrors it
//! with `infeed.speed` in closed loop, written to line_plc's holding
//! register 110 (`infeed.speed_sp`), with `--audit` and `--control`. A
//! thread proposes a new speed through the control socket as soon as the
//! last proposal was decided, so a write is nearly always in flight; the
//! test SIGKILLs `twin run` as soon as it sees the Nth `written` entry of
//! that run, restarts it on the same audit log, and does that for three
//! values of N. A last run stops cleanly. Then the device's write log and
//! the audit log must tell the same story (see [`check_consistent`]).
//!
//! SIGKILL leaves the page cache alone, so this proves the ordering
//! contract and the recovery, not `fsync` (docs/audit.md, "Testing
//! crashes").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use twin::guard::audit::{AuditReader, Decision, Entry};

use crate::ml_stage::demo_without_models;
use crate::util::{Proc, run_ok, twin, wait_json};

const DEMO: &str = "plant-configs/packaging-line.toml";
/// line_plc's holding register for `infeed.speed_sp` (mm/s, scale 0.001).
const INFEED_SP: u64 = 110;
/// The start of an entry, as a power cut mid-append can leave it.
const TORN: &[u8] = b"{\"v\":1,\"seq\":99999,\"t\":\"2026-";
const OPENED: &str = "\"decision\":\"opened\"";

/// The demo without models, `infeed.speed` in closed loop written to its
/// speed reference register. The register is read back by the writer
/// (`Readback::Target`), so each write is verified a tick or two later and
/// the next can follow (rule `readback_pending` allows one at a time).
/// `max_step` is wide enough that every proposal below passes whatever the
/// measured speed is while the drive ramps.
fn config() -> String {
    let base = demo_without_models();
    let head = "[[setpoints]]\ntag = \"infeed.speed\"\n";
    let at = base
        .find(head)
        .expect("the demo has an infeed.speed setpoint")
        + head.len();
    let end = base[at..].find("\n\n").map_or(base.len(), |e| at + e);
    format!(
        "{}min = 0.1\nmax = 0.85\nmax_step = 0.3\nmode = \"closed_loop\"\ntarget = {{ table = \"holding\", address = {INFEED_SP}, type = \"u16\", scale = 0.001 }}{}",
        &base[..at],
        &base[end..]
    )
}

/// Proposal `i`'s value: 0.50 to 0.70 m/s in 0.01 steps, jumping about so
/// consecutive values differ (never a zero change, which would be skipped
/// as inside the deadband) and repeat only every 21 proposals.
fn value(i: u64) -> f64 {
    (500 + (i * 80) % 210) as f64 / 1000.0
}

/// The audit log's text so far, as the test sees it while `twin run`
/// appends (a line being written shows as a torn tail and is not counted).
fn whole_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let end = text.rfind('\n').map_or(0, |e| e + 1);
    text[..end].lines().map(str::to_string).collect()
}

/// Entries of the current run (after the last `opened` entry) that match.
fn this_run(path: &Path, needle: &str) -> usize {
    let lines = whole_lines(path);
    let from = lines.iter().rposition(|l| l.contains(OPENED)).unwrap_or(0);
    lines[from..].iter().filter(|l| l.contains(needle)).count()
}

/// Polls `cond` every 20 ms for at most `limit`.
fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = twin::wallclock::monotonic() + limit;
    while twin::wallclock::monotonic() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Entries in the whole log that match.
fn count(path: &Path, needle: &str) -> usize {
    whole_lines(path)
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// One `twin run` with its proposer thread.
struct Run {
    proc: Proc,
    stop: Arc<AtomicBool>,
    proposer: Option<std::thread::JoinHandle<u64>>,
}

impl Run {
    fn start(dir: &Path, cfg: &Path, audit: &Path, sock: &Path, first: u64) -> Run {
        let mut cmd = twin();
        cmd.arg("run")
            .arg(cfg)
            .arg("--endpoints")
            .arg(dir.join("endpoints.json"))
            .arg("--audit")
            .arg(audit)
            .arg("--control")
            .arg(sock)
            .args(["--for", "300s", "--no-table"]);
        let runs_before = count(audit, OPENED);
        let proc = Proc::spawn(cmd);
        // Its `opened` entry first, so "this run" below means this one.
        let opened = poll(Duration::from_secs(60), || {
            count(audit, OPENED) > runs_before
        });
        assert!(opened, "the run opened its audit log: {}", proc.stderr());
        let stop = Arc::new(AtomicBool::new(false));
        let proposer = {
            let (stop, audit, sock) = (stop.clone(), audit.to_path_buf(), sock.to_path_buf());
            std::thread::spawn(move || propose_until(&stop, &audit, &sock, first))
        };
        Run {
            proc,
            stop,
            proposer: Some(proposer),
        }
    }

    /// Stops proposing; returns how many proposals the twin took.
    fn stop_proposing(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.proposer
            .take()
            .map_or(0, |h| h.join().expect("the proposer thread"))
    }
}

/// Proposes `value(first)`, `value(first + 1)`, ... through the control
/// socket until `stop`: each as soon as the one before is decided (one
/// more operator entry in the audit log), so the twin always has a
/// proposal to decide and a write is in flight most of the time. A
/// proposal the twin does not take (the socket is not up yet, or gone
/// after the kill) is retried. Returns the number taken.
fn propose_until(stop: &AtomicBool, audit: &Path, sock: &Path, first: u64) -> u64 {
    let mut taken = 0;
    while !stop.load(Ordering::SeqCst) {
        if !sock.exists() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let decided = this_run(audit, "\"actor\":{\"kind\":\"operator\"");
        let v = value(first + taken);
        let ok = twin()
            .args(["propose", "infeed.speed", &v.to_string(), "--control"])
            .arg(sock)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        taken += 1;
        // Decided on the next tick; bounded, so a stuck twin shows as the
        // main thread's timeout rather than a hung proposer.
        poll(Duration::from_secs(10), || {
            stop.load(Ordering::SeqCst)
                || this_run(audit, "\"actor\":{\"kind\":\"operator\"") > decided
        });
    }
    taken
}

fn verify(audit: &Path) -> String {
    let out = run_ok(twin().args(["audit", "verify"]).arg(audit));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entries(path: &Path) -> Vec<Entry> {
    let mut r = AuditReader::open(path).expect("open audit log");
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().expect("a valid entry") {
        out.push(e);
    }
    out
}

/// The raw register value a `written` entry stands for (scale 0.001).
fn raw(e: &Entry) -> u64 {
    let v = e.written.map_or(f64::NAN, |n| n.0);
    (v * 1000.0).round() as u64
}

/// The device's own record of the writes to `infeed.speed_sp`, in the
/// order it answered them: the raw values.
fn device_writes(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).expect("the sim's write log");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a write log line"))
        .filter(|w| w["device"] == "line_plc" && w["address"] == INFEED_SP)
        .map(|w| {
            assert_eq!(w["accepted"], true, "the sim refused a write: {w}");
            assert_eq!(w["function"], 6, "{w}");
            w["values"][0].as_u64().expect("a register value")
        })
        .collect()
}

/// The audit log against the device's write log. Which mismatch is allowed,
/// and why:
///
/// - **Device write without its entry: never.** `written` is appended and
///   fsync'd before the intent is handed to the Modbus link, so every write
///   the device got has a `written` entry, same value, in the same order
///   (the entries are in the order the guard decided them, and one write
///   per setpoint is in flight at a time, so the device sees that order).
/// - **`written` entry without a device write: only the last `written`
///   entry before a restart (`opened`) or the log's end.** The kill can
///   land between the append and the bytes leaving the socket. Only the
///   last can be affected: a later write of the same run needs the one
///   before it read back (`readback_pending`), which needs it on the device.
/// - A `readback_ok` entry is only ever for a write the device got: the
///   twin read the value back from the register.
fn check_consistent(log: &[Entry], device: &[u64]) {
    let mut next = 0;
    let mut unmatched: Vec<u64> = Vec::new();
    let mut last_written: Option<(u64, bool)> = None;
    for (i, e) in log.iter().enumerate() {
        match e.decision {
            Decision::Written => {
                let matched = device.get(next) == Some(&raw(e));
                if matched {
                    next += 1;
                } else {
                    // Must be the run's last write: no `written` entry
                    // follows before the next `opened` one.
                    let later = log[i + 1..]
                        .iter()
                        .take_while(|x| x.decision != Decision::Opened)
                        .any(|x| x.decision == Decision::Written);
                    assert!(
                        !later,
                        "seq {}: `written` {} never reached the device, and it was not the last write before a kill: device writes {device:?}",
                        e.seq,
                        raw(e)
                    );
                    unmatched.push(e.seq);
                }
                last_written = Some((raw(e), matched));
            }
            Decision::ReadbackOk => {
                let (v, matched) = last_written.expect("a read-back follows a write");
                assert!(
                    matched && raw(e) == v,
                    "seq {}: readback_ok for {} which the device never received",
                    e.seq,
                    raw(e)
                );
            }
            _ => {}
        }
    }
    assert_eq!(
        next,
        device.len(),
        "the device received writes the audit log has no `written` entry for: {:?}",
        &device[next..]
    );
    // At most one per run (three kills and a clean stop).
    assert!(unmatched.len() <= 4, "{unmatched:?}");
    eprintln!(
        "{} device writes, {} `written` entries; caught in flight by a kill: seq {unmatched:?}",
        device.len(),
        device.len() + unmatched.len()
    );
}

#[test]
fn r12_kill_9_during_a_stream_of_writes_keeps_the_audit_log_true_to_the_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("plant.toml");
    std::fs::write(&cfg, config()).expect("write config");
    let audit = dir.path().join("audit.jsonl");
    let writes = dir.path().join("writes.jsonl");
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).expect("mkdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let sock: PathBuf = run_dir.join("twin.sock");

    let mut sim_cmd = twin();
    sim_cmd
        .args(["sim", DEMO, "--modbus-port", "*=0", "--mqtt-port", "0"])
        .arg("--write-log")
        .arg(&writes)
        .arg("--endpoints-out")
        .arg(dir.path().join("endpoints.json"));
    let mut sim = Proc::spawn(sim_cmd);
    wait_json(&dir.path().join("endpoints.json"), Duration::from_secs(30));

    let mut proposed = 0;
    let mut written_per_run = Vec::new();
    for (k, n) in [3usize, 10, 25].into_iter().enumerate() {
        let mut run = Run::start(dir.path(), &cfg, &audit, &sock, proposed);
        let reached = poll(Duration::from_secs(120), || {
            this_run(&audit, "\"decision\":\"written\"") >= n
        });
        // kill -9 at once: the write of the entry just seen is on its way
        // to the link, and the proposer keeps the next one coming.
        let _ = run.proc.child.kill();
        let _ = run.proc.child.wait();
        proposed += run.stop_proposing();
        assert!(
            reached,
            "run {k}: {n} writes within 2 minutes; stderr:\n{}",
            run.proc.stderr()
        );
        written_per_run.push(this_run(&audit, "\"decision\":\"written\""));

        // After the kill the chain verifies as it is.
        let v = verify(&audit);
        assert!(v.contains("chain intact"), "{v}");

        if k == 1 {
            // What a power cut mid-append can leave (SIGKILL cannot: the
            // line goes in one `write`): the start of an entry, no newline.
            // verify says so and passes; the next open cuts it off.
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&audit)
                .expect("open audit log");
            f.write_all(TORN).expect("append torn bytes");
            drop(f);
            let v = verify(&audit);
            assert!(
                v.contains("chain intact")
                    && v.contains(&format!("the last line is torn ({} bytes", TORN.len())),
                "{v}"
            );
        }
    }

    // Restart continuity: a last run appends to the same chain, writes, and
    // stops cleanly.
    let mut run = Run::start(dir.path(), &cfg, &audit, &sock, proposed);
    let reached = poll(Duration::from_secs(120), || {
        this_run(&audit, "\"decision\":\"written\"") >= 3
    });
    run.stop_proposing();
    // Let the last write's read-back land, so the clean stop is clean.
    poll(Duration::from_secs(10), || {
        this_run(&audit, "\"decision\":\"written\"") <= this_run(&audit, "\"decision\":\"readback")
    });
    run.proc.terminate();
    assert_eq!(
        run.proc.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        run.proc.stderr()
    );
    assert!(reached, "the restarted run writes: {}", run.proc.stderr());
    assert!(sim.is_running(), "the sim died: {}", sim.stderr());

    let v = verify(&audit);
    assert!(v.contains("chain intact") && !v.contains("torn"), "{v}");
    let log = entries(&audit);
    let opened: Vec<&Entry> = log
        .iter()
        .filter(|e| e.decision == Decision::Opened)
        .collect();
    assert_eq!(opened.len(), 4, "one `opened` entry per run");
    assert_eq!(opened[0].reason, "log created");
    assert!(
        opened[1].reason.starts_with("reopened after seq")
            && opened[3].reason.starts_with("reopened after seq"),
        "{:?}",
        opened.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    assert!(
        opened[2]
            .reason
            .contains(&format!("cut off a torn last line of {} bytes", TORN.len())),
        "{}",
        opened[2].reason
    );
    for (k, n) in [3, 10, 25].into_iter().enumerate() {
        assert!(written_per_run[k] >= n, "{written_per_run:?}");
    }
    let device = device_writes(&writes);
    assert!(device.len() >= 3 + 10 + 25, "{device:?}");
    check_consistent(&log, &device);
}
