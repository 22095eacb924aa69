//! A command's own output on a stdout or stderr that fails (issue 9, "the
//! process must not panic on input from outside"): a pipe whose reader has
//! gone, `/dev/full`, a pipe nobody reads. No command may panic (exit 101);
//! a closed stdout ends a one-shot command quietly with its usual exit code,
//! a full stdout is a failure, and a failing stderr never changes the code.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::util::*;

const CFG: &str = "tests/configs/e2e-line.toml";
const DEMO: &str = "plant-configs/packaging-line.toml";

/// Kills the child if a test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
        .into()
}

/// The write end of a pipe whose reader is already gone: every write to it
/// fails with EPIPE, with no race against a reader that exits (`| head -0`).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

/// A pipe whose buffer is already full and whose reader never reads: the
/// first write to it blocks. Keep the reader alive while it is in use.
fn full_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut filler = writer.try_clone().expect("clone");
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    // Blocks for good once the pipe is full; ends when the reader is dropped.
    thread::spawn(move || {
        let chunk = [b'\n'; 4096];
        while filler.write_all(&chunk).is_ok() {
            w.fetch_add(chunk.len(), Ordering::Relaxed);
        }
    });
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    (reader, writer)
}

/// How a command ended: its exit code (None: still running after the
/// timeout, then killed) and what it wrote to stderr, if stderr was piped.
struct Ended {
    code: Option<i32>,
    stderr: String,
}

impl Ended {
    fn assert_no_panic(&self) {
        assert_ne!(self.code, Some(101), "exit 101, a panic: {}", self.stderr);
        assert!(
            !self.stderr.contains("panicked"),
            "stderr shows a panic: {}",
            self.stderr
        );
    }
}

/// Run `twin ARGS` with the given stdout and stderr (stdin closed), for at
/// most `timeout`. stderr is captured when `stderr` is `None`.
fn run(args: &[&str], stdout: Stdio, stderr: Option<Stdio>, timeout: Duration) -> Ended {
    let mut cmd = twin();
    cmd.args(args).stdin(Stdio::null()).stdout(stdout);
    let captured = stderr.is_none();
    cmd.stderr(stderr.unwrap_or_else(Stdio::piped));
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    drop(cmd);
    let text = Arc::new(Mutex::new(String::new()));
    let reader = captured.then(|| {
        let mut err = child.0.stderr.take().expect("stderr piped");
        let t = text.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            *t.lock().expect("lock") = s;
        })
    });
    let end = twin::wallclock::monotonic() + timeout;
    let mut code = None;
    while twin::wallclock::monotonic() < end {
        if let Ok(Some(st)) = child.0.try_wait() {
            code = st.code();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if code.is_none() {
        let _ = child.0.kill();
    }
    if let Some(r) = reader {
        let _ = r.join();
    }
    let stderr = text.lock().expect("lock").clone();
    Ended { code, stderr }
}

const T: Duration = Duration::from_secs(60);

fn broken_config(dir: &std::path::Path) -> String {
    let p = dir.join("broken.toml");
    std::fs::write(&p, "bogus = 1\n").expect("write config");
    p.to_string_lossy().into_owned()
}

#[test]
fn r9_check_whose_stdout_reader_has_gone_exits_with_its_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = broken_config(dir.path());
    let ok = run(&["check", DEMO, CFG], closed_pipe(), None, T);
    ok.assert_no_panic();
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(!ok.stderr.contains("error"), "{}", ok.stderr);
    // Every file is still checked: the broken one after a closed stdout
    // still gives 78 and its report.
    let bad = run(&["check", DEMO, &broken], closed_pipe(), None, T);
    bad.assert_no_panic();
    assert_eq!(bad.code, Some(78), "{}", bad.stderr);
    assert!(bad.stderr.contains("unknown key `bogus`"), "{}", bad.stderr);
}

#[test]
fn r9_check_with_stdout_on_dev_full_fails_instead_of_passing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = broken_config(dir.path());
    let ok = run(&["check", DEMO], dev_full(), None, T);
    ok.assert_no_panic();
    assert_eq!(ok.code, Some(1), "{}", ok.stderr);
    assert!(
        ok.stderr.contains("cannot write the output to stdout"),
        "{}",
        ok.stderr
    );
    // An invalid config keeps its more specific code.
    let bad = run(&["check", DEMO, &broken], dev_full(), None, T);
    bad.assert_no_panic();
    assert_eq!(bad.code, Some(78), "{}", bad.stderr);
}

#[test]
fn r9_config_and_usage_errors_keep_their_codes_with_stderr_on_dev_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = broken_config(dir.path());
    let cases: [(&[&str], i32); 7] = [
        (&["check", &broken], 78),
        (&["check", "--short", &broken], 78),
        (&["whatif", &broken], 78),
        (&["run", &broken, "--for", "1s"], 78),
        (&["sim", &broken, "--for", "1s"], 78),
        (&["check", "--no-such-option", DEMO], 2),
        (&["snapshot", DEMO], 2),
    ];
    for (args, want) in cases {
        let e = run(args, Stdio::null(), Some(dev_full()), T);
        assert_eq!(e.code, Some(want), "twin {args:?}");
    }
}

#[test]
fn r9_snapshot_naming_nothing_to_draw_exits_2_with_stderr_on_dev_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("line.svg");
    let svg = svg.to_string_lossy();
    for extra in [["--line", "nope"], ["--speed", "nope=0.5"]] {
        let mut args = vec!["snapshot", DEMO, "-o", &svg];
        args.extend(extra);
        let e = run(&args, Stdio::null(), Some(dev_full()), T);
        assert_eq!(e.code, Some(2), "twin {args:?}");
        // And the message is there when stderr works.
        let e = run(&args, Stdio::null(), None, T);
        e.assert_no_panic();
        assert_eq!(e.code, Some(2), "{}", e.stderr);
        assert!(e.stderr.starts_with("error: "), "{}", e.stderr);
    }
}

#[test]
fn r9_whatif_whose_stdout_fails_exits_0_when_closed_and_1_when_full() {
    let args = [
        "whatif",
        DEMO,
        "--base",
        "infeed.speed=0.6",
        "--base",
        "outfeed.speed=0.6",
        "--set",
        "outfeed.speed=0.4",
        "--warmup",
        "5s",
        "--horizon",
        "5s",
    ];
    for json in [false, true] {
        let mut args = args.to_vec();
        if json {
            args.push("--json");
        }
        let closed = run(&args, closed_pipe(), None, T);
        closed.assert_no_panic();
        assert_eq!(closed.code, Some(0), "{}", closed.stderr);
        assert!(!closed.stderr.contains("error"), "{}", closed.stderr);
        let full = run(&args, dev_full(), None, T);
        full.assert_no_panic();
        assert_eq!(full.code, Some(1), "{}", full.stderr);
        assert!(
            full.stderr.contains("cannot write the output to stdout"),
            "{}",
            full.stderr
        );
    }
    // A setpoint the line does not have: 1, whatever stderr does.
    let mut bad = args.to_vec();
    bad.extend(["--set", "nope=1"]);
    let e = run(&bad, Stdio::null(), Some(dev_full()), T);
    assert_eq!(e.code, Some(1));
}

#[test]
fn r9_help_and_version_survive_a_closed_or_full_stdout() {
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["sim", "--help"],
        &["--version"],
    ] {
        for (what, out) in [("closed", closed_pipe()), ("full", dev_full())] {
            let e = run(args, out, None, T);
            e.assert_no_panic();
            assert_eq!(e.code, Some(0), "twin {args:?} with stdout {what}");
        }
    }
}

#[test]
fn r9_sim_keeps_serving_after_its_stdout_reader_goes() {
    for (what, out) in [("closed", closed_pipe()), ("full", dev_full())] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ep = dir.path().join("ep.json");
        let mut cmd = twin();
        cmd.args(["sim", CFG, "--modbus-port", "plc=0", "--mqtt-port", "0"])
            .arg("--endpoints-out")
            .arg(&ep)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null());
        let mut child = Reap(cmd.spawn().expect("spawn twin sim"));
        drop(cmd);
        let v = wait_json(&ep, Duration::from_secs(30));
        let addr = v["modbus"]["plc"]
            .as_str()
            .expect("plc address")
            .to_string();
        // Well after the endpoint lines failed, the plant still serves.
        thread::sleep(Duration::from_millis(500));
        assert!(
            matches!(child.0.try_wait(), Ok(None)),
            "sim ended with stdout {what}"
        );
        let conn = std::net::TcpStream::connect_timeout(
            &addr.parse().expect("socket address"),
            Duration::from_secs(5),
        );
        assert!(conn.is_ok(), "stdout {what}: cannot connect to {addr}");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.0.id().to_string())
            .status();
        let end = twin::wallclock::monotonic() + Duration::from_secs(30);
        let mut code = None;
        while code.is_none() && twin::wallclock::monotonic() < end {
            code = child.0.try_wait().ok().flatten().and_then(|s| s.code());
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(code, Some(0), "sim with stdout {what}");
    }
}

#[test]
fn r9_a_config_warning_on_a_stderr_nobody_reads_does_not_hold_the_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The demo line with a belt too wide to be real: valid, one warning.
    let text = crate::util::demo_text();
    let warned = text.replacen("  width = 0.3\n", "  width = 3.1\n", 1);
    assert_ne!(warned, text, "the demo config changed shape");
    let cfg = dir.path().join("warned.toml");
    std::fs::write(&cfg, warned).expect("write config");
    let events = dir.path().join("ev.jsonl");
    let (reader, writer) = full_pipe();
    let e = run(
        &[
            "demo",
            "--config",
            &cfg.to_string_lossy(),
            "--for",
            "3s",
            "--no-table",
            "--events",
            &events.to_string_lossy(),
        ],
        Stdio::null(),
        Some(writer.into()),
        Duration::from_secs(30),
    );
    assert_eq!(e.code, Some(0), "the demo did not end by itself");
    let text = std::fs::read_to_string(&events).expect("events file");
    assert!(
        text.contains(r#""quality":"good""#),
        "{} bytes of events",
        text.len()
    );
    drop(reader);
}

#[test]
fn r9_malformed_option_values_are_usage_errors() {
    // README: an unparsable value on the command line exits 2, before
    // anything starts, as clap's own checks do.
    let cases: [&[&str]; 6] = [
        &["sim", DEMO, "--modbus-port", "line_plc=abc"],
        &["sim", DEMO, "--modbus-port", "line_plc"],
        &["sim", DEMO, "--mqtt", "cm_sensors"],
        &["run", DEMO, "--modbus", "line_plc"],
        &["whatif", DEMO, "--set", "infeed.speed=fast"],
        &["whatif", DEMO, "--base", "infeed.speed"],
    ];
    for args in cases {
        let e = run(args, Stdio::null(), None, T);
        e.assert_no_panic();
        assert_eq!(e.code, Some(2), "twin {args:?}: {}", e.stderr);
        assert!(e.stderr.contains("invalid value"), "{}", e.stderr);
    }
    // A well-formed name the config does not have stays a runtime failure.
    let e = run(&["whatif", DEMO, "--set", "nope=1"], Stdio::null(), None, T);
    assert_eq!(e.code, Some(1), "{}", e.stderr);
}

#[test]
fn r9_a_log_filter_that_does_not_parse_is_reported_not_ignored() {
    let e = run(&["--log", "twin=[[", "check", DEMO], Stdio::null(), None, T);
    e.assert_no_panic();
    assert_eq!(e.code, Some(0), "{}", e.stderr);
    assert!(
        e.stderr.contains("The log filter does not parse"),
        "{}",
        e.stderr
    );
}
