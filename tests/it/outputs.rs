//! Outputs that misbehave (issue 9, "bad input" 1, 4 and 7a): stderr that is
//! full or closed, an event reader that stalls or never opens its FIFO, a
//! file that cannot grow. None of them may stop, stall or kill the twin, and
//! a clean demo run must not look like a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::util::*;

const CFG: &str = "tests/configs/e2e-line.toml";

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let end = twin::wallclock::monotonic() + timeout;
    while twin::wallclock::monotonic() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// Kills the child if a test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
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

fn read_to_string_bg(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

fn text(s: &Arc<Mutex<String>>) -> String {
    s.lock().expect("lock").clone()
}

#[test]
fn r9_demo_with_stderr_on_dev_full_exits_0_with_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ev.jsonl");
    let mut cmd = twin();
    cmd.args(["demo", "--for", "5s", "--no-table", "--events"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(dev_full());
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(60)), Some(0));
    let ev = events(
        &std::fs::read_to_string(&file)
            .expect("events file")
            .lines()
            .map(String::from)
            .collect::<Vec<_>>(),
    );
    assert!(
        ev.iter()
            .any(|e| e["type"] == "tag" && e["quality"] == "good"),
        "no good tag events: {} lines",
        ev.len()
    );
}

#[test]
fn r9_run_and_sim_with_stderr_on_dev_full_exit_0() {
    // `twin run` against a plant that is not there: it logs warnings all
    // along, into /dev/full.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ev.jsonl");
    let mut run = twin();
    run.args(["run", CFG, "--for", "2s", "--no-table", "--events"])
        .arg(&file)
        .arg("--modbus")
        .arg(format!("plc=127.0.0.1:{}", free_port()))
        .arg("--mqtt")
        .arg(format!("sensors=mqtt://127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(dev_full());
    let mut run = Reap(run.spawn().expect("spawn twin run"));
    let mut sim = twin();
    sim.args([
        "sim",
        CFG,
        "--modbus-port",
        "plc=0",
        "--mqtt-port",
        "0",
        "--for",
        "2s",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(dev_full());
    let mut sim = Reap(sim.spawn().expect("spawn twin sim"));
    assert_eq!(
        wait_exit(&mut run.0, Duration::from_secs(30)),
        Some(0),
        "run"
    );
    assert_eq!(
        wait_exit(&mut sim.0, Duration::from_secs(30)),
        Some(0),
        "sim"
    );
    let text = std::fs::read_to_string(&file).expect("events file");
    assert!(
        text.contains(r#""quality":"bad""#),
        "{} bytes of events",
        text.len()
    );
}

#[test]
fn r9_a_stderr_nobody_reads_does_not_stall_the_run() {
    let (reader, writer) = full_pipe();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ev.jsonl");
    let mut cmd = twin();
    cmd.args(["demo", "--for", "3s", "--no-table", "--events"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(20)), Some(0));
    let text = std::fs::read_to_string(&file).expect("events file");
    assert!(
        text.contains(r#""quality":"good""#),
        "{} bytes of events",
        text.len()
    );
    drop(reader);
}

#[test]
fn r9_closed_stderr_keeps_sources_alive_and_sigterm_still_stops_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start_sim = |modbus: u16, mqtt: u16| {
        let ep = dir.path().join(format!("ep-{modbus}.json"));
        let mut cmd = twin();
        cmd.args(["sim", CFG, "--publish", "200ms"])
            .arg("--modbus-port")
            .arg(format!("plc={modbus}"))
            .arg("--mqtt-port")
            .arg(mqtt.to_string())
            .arg("--endpoints-out")
            .arg(&ep);
        let p = Proc::spawn(cmd);
        (p, wait_json(&ep, Duration::from_secs(20)))
    };
    let (sim, ep) = start_sim(0, 0);
    let modbus = ep["modbus"]["plc"].as_str().expect("plc").to_string();
    let mqtt = ep["mqtt"]["sensors"].as_str().expect("sensors").to_string();
    let port = |a: &str| -> u16 {
        a.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    };

    let mut cmd = twin();
    cmd.args(["run", CFG, "--events", "-"])
        .arg("--modbus")
        .arg(format!("plc={modbus}"))
        .arg("--mqtt")
        .arg(format!("sensors={mqtt}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = child.0.stdout.take().expect("stdout");
    let l = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            l.lock().expect("lock").push(line);
        }
    });
    // Read stderr until the twin runs, then go away, as `| head` does.
    let mut stderr = BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.contains("Twin running") {
            break;
        }
        line.clear();
    }
    drop(stderr);

    let good_since = |from: usize| {
        let lines = lines.clone();
        move || {
            let ev = events(&lines.lock().expect("lock")[from..]);
            ["belt.speed", "belt.vibration"].iter().all(|t| {
                tag_events(&ev, t)
                    .last()
                    .is_some_and(|e| e["quality"] == "good")
            })
        }
    };
    let wait = |timeout: Duration, mut cond: Box<dyn FnMut() -> bool>| {
        let end = twin::wallclock::monotonic() + timeout;
        while twin::wallclock::monotonic() < end {
            if cond() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        cond()
    };
    assert!(
        wait(Duration::from_secs(20), Box::new(good_since(0))),
        "tags never became good"
    );

    // The plant goes away (the sources log their warnings into the closed
    // pipe), then comes back on the same ports.
    drop(sim);
    let seen = lines.lock().expect("lock").len();
    let l = lines.clone();
    assert!(
        wait(
            Duration::from_secs(15),
            Box::new(move || {
                tag_events(&events(&l.lock().expect("lock")[seen..]), "belt.speed")
                    .iter()
                    .any(|e| e["quality"] == "bad")
            })
        ),
        "the outage was not seen"
    );
    let (_sim2, _) = start_sim(port(&modbus), port(&mqtt));
    let seen = lines.lock().expect("lock").len();
    assert!(
        wait(Duration::from_secs(30), Box::new(good_since(seen))),
        "the sources did not survive logging into a closed stderr: tags stayed bad"
    );

    sigterm(&child.0);
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(15)),
        Some(0),
        "SIGTERM must stop the run although stderr is closed"
    );
}

#[test]
fn r9_a_pipe_nobody_reads_does_not_hold_the_run_past_for() {
    let (reader, writer) = full_pipe();
    let mut cmd = twin();
    cmd.args(["demo", "--for", "3s", "--no-table", "--events", "-"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    let err = read_to_string_bg(child.0.stderr.take().expect("stderr"));
    // --for 3s, at most a couple of seconds to give up on the reader, and
    // the start and stop of the virtual plant, on a loaded machine.
    let code = wait_exit(&mut child.0, Duration::from_secs(20));
    assert_eq!(code, Some(0), "stderr:\n{}", text(&err));
    drop(reader);
}

#[test]
fn r9_sigterm_stops_a_run_whose_event_pipe_is_full() {
    let (reader, writer) = full_pipe();
    let mut cmd = twin();
    cmd.args(["demo", "--no-table", "--events", "-"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    let err = read_to_string_bg(child.0.stderr.take().expect("stderr"));
    let end = twin::wallclock::monotonic() + Duration::from_secs(30);
    while !text(&err).contains("Twin running") && twin::wallclock::monotonic() < end {
        thread::sleep(Duration::from_millis(50));
    }
    // Past the first tick, which is the first write into the full pipe.
    thread::sleep(Duration::from_secs(1));
    sigterm(&child.0);
    let code = wait_exit(&mut child.0, Duration::from_secs(15));
    assert_eq!(code, Some(0), "stderr:\n{}", text(&err));
    drop(reader);
}

#[test]
fn r9_events_overflow_fail_stops_the_run_with_a_clear_error() {
    let (reader, writer) = full_pipe();
    let mut cmd = twin();
    cmd.args(["demo", "--for", "60s", "--no-table", "--events", "-"])
        .args(["--events-overflow", "fail", "--events-buffer", "4KiB"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    let err = read_to_string_bg(child.0.stderr.take().expect("stderr"));
    let code = wait_exit(&mut child.0, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(code, Some(1), "stderr:\n{}", text(&err));
    assert!(
        text(&err).contains("fell behind"),
        "the error says why:\n{}",
        text(&err)
    );
    drop(reader);
}

#[test]
fn r9_a_fifo_with_no_reader_does_not_hold_the_run_past_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("events.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let mut cmd = twin();
    cmd.args(["demo", "--for", "2s", "--no-table", "--events"])
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().expect("spawn twin"));
    let err = read_to_string_bg(child.0.stderr.take().expect("stderr"));
    let code = wait_exit(&mut child.0, Duration::from_secs(20));
    assert_eq!(code, Some(0), "stderr:\n{}", text(&err));
}

#[test]
fn r9_a_file_that_cannot_grow_ends_with_a_complete_line() {
    // A file-size limit fails write(2) like a full disk does: a short write,
    // then an error (EFBIG here, with SIGXFSZ ignored as the shell's trap
    // passes on through exec). No tmpfs or privileges needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ev.jsonl");
    let mut cmd = Command::new("sh");
    cmd.current_dir(root())
        .env("TWIN_LOG", "info,rumqttd=warn")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 16 && exec \"$0\" demo --for 10s --no-table --events \"$1\"")
        .arg(env!("CARGO_BIN_EXE_twin"))
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().expect("spawn sh"));
    let err = read_to_string_bg(child.0.stderr.take().expect("stderr"));
    let code = wait_exit(&mut child.0, Duration::from_secs(60));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        code,
        Some(1),
        "the write failure is a run failure:\n{}",
        text(&err)
    );
    let bytes = std::fs::read(&file).expect("events file");
    assert!(bytes.len() > 1_000, "ticks before the limit were written");
    assert_eq!(bytes.last(), Some(&b'\n'), "the file ends mid-line");
    let text = String::from_utf8(bytes).expect("utf-8");
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a complete JSON line: {line}"
        );
    }
}

#[test]
fn r9_a_clean_demo_run_logs_no_error() {
    let mut cmd = twin();
    cmd.args(["demo", "--for", "3s", "--no-table"]);
    let mut p = Proc::spawn(cmd);
    assert_eq!(p.wait(Duration::from_secs(60)), Some(0), "{}", p.stderr());
    let err = p.stderr();
    assert!(
        err.contains("Twin stopped"),
        "the run ended cleanly:\n{err}"
    );
    assert!(!err.contains("ERROR"), "a clean run logs no ERROR:\n{err}");
}
