//! Helpers for tests that drive the real `twin` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn twin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_twin"));
    c.current_dir(root());
    c.env("TWIN_LOG", "info,rumqttd=warn");
    c
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0 on loopback");
    l.local_addr().expect("local addr").port()
}

/// A child process whose stdout lines and stderr are collected in the
/// background. Killed on drop.
pub struct Proc {
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
    pub err: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn twin");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let o = out.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().expect("lock").push(line);
            }
        });
        let e = err.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = e.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc { child, out, err }
    }

    pub fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.err.lock().expect("lock").clone()
    }

    /// Poll `cond` over the stdout lines until it holds or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&[String]) -> bool) -> bool {
        let end = twin::wallclock::monotonic() + timeout;
        while twin::wallclock::monotonic() < end {
            if cond(&self.out.lock().expect("lock")) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        cond(&self.out.lock().expect("lock"))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for exit (bounded) and return the exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let end = twin::wallclock::monotonic() + timeout;
        while twin::wallclock::monotonic() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(100));
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Send SIGTERM (clean shutdown path).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until a file exists and parses as JSON.
pub fn wait_json(path: &Path, timeout: Duration) -> serde_json::Value {
    let end = twin::wallclock::monotonic() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(v) = serde_json::from_str(&text)
        {
            return v;
        }
        assert!(
            twin::wallclock::monotonic() < end,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Parse event lines (ignoring anything that is not JSON).
pub fn events(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn tag_events<'a>(ev: &'a [serde_json::Value], tag: &str) -> Vec<&'a serde_json::Value> {
    ev.iter()
        .filter(|e| e["type"] == "tag" && e["tag"] == tag)
        .collect()
}

/// Milliseconds since the epoch of an RFC 3339 `t` field.
pub fn t_ms(e: &serde_json::Value) -> i64 {
    time_ms(&e["t"])
}

/// Milliseconds since the epoch of an RFC 3339 time (`t`, `inputs_t`, ...).
pub fn time_ms(v: &serde_json::Value) -> i64 {
    let s = v.as_str().expect("a time is a string");
    let t = humantime::parse_rfc3339(s).expect("a time is RFC 3339");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_millis() as i64
}

/// Run a command to its end; it must succeed (its stderr is the message
/// if it does not).
pub fn run_ok(c: &mut Command) -> std::process::Output {
    let out = c.output().expect("run the command");
    assert!(
        out.status.success(),
        "{:?} failed ({}):\n{}",
        c.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The events of a JSON-lines stream.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("event is JSON"))
        .collect()
}

/// A live `twin demo` of `cfg` for `span` (the virtual plant over real
/// Modbus and MQTT on loopback, the twin on the wall clock), recorded into
/// `dir`, then `twin replay REC --verify` of that recording: the live run's
/// event bytes and the replay's.
pub fn live_and_replay(dir: &Path, cfg: &Path, span: &str) -> (Vec<u8>, Vec<u8>) {
    let (live, rec, replayed) = (
        dir.join("live.jsonl"),
        dir.join("live.mcap"),
        dir.join("replayed.jsonl"),
    );
    run_ok(
        twin()
            .args(["demo", "--no-table", "--for", span, "--config"])
            .arg(cfg)
            .arg("--events")
            .arg(&live)
            .arg("--record")
            .arg(&rec),
    );
    (
        std::fs::read(&live).expect("live events"),
        replay_verified(&rec, &replayed),
    )
}

/// `twin replay REC --verify` into `out` (it must exit 0): the replay's
/// event bytes.
pub fn replay_verified(rec: &Path, out: &Path) -> Vec<u8> {
    run_ok(
        twin()
            .arg("replay")
            .arg(rec)
            .arg("--events")
            .arg(out)
            .arg("--verify"),
    );
    std::fs::read(out).expect("replayed events")
}

/// The demo config's text, with its model paths made absolute, for tests
/// that write a changed copy of it into a folder of their own (a relative
/// `path` is relative to the config file, docs/ml.md).
pub fn demo_text() -> String {
    let models = root().join("models");
    std::fs::read_to_string(root().join("plant-configs/packaging-line.toml"))
        .expect("demo config")
        .replace(
            "path = \"../models/",
            &format!("path = \"{}/", models.display()),
        )
}
