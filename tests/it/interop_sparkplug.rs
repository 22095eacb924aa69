//! Sparkplug B interop: a real edge node (pysparkplug, from the project venv)
//! publishes births, data and deaths through a real broker (embedded
//! rumqttd); the twin's tags must follow them, deaths must make them stale,
//! and a sequence gap must make the twin request a rebirth.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

const CFG: &str = "tests/configs/sparkplug-interop.toml";

/// The edge node process, driven through stdin; its stdout lines are kept.
struct Edge {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<String>>>,
}

impl Edge {
    fn start(port: u16) -> Edge {
        let python = root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make test` (or `bash scripts/setup.sh`) to create the test venv",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root().join("tests/peers/sparkplug_edge.py"))
            .arg("127.0.0.1")
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pysparkplug edge node");
        let stdin = child.stdin.take().expect("stdin piped");
        let stdout = child.stdout.take().expect("stdout piped");
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().expect("lock").push(line);
            }
        });
        let edge = Edge { child, stdin, out };
        assert!(
            edge.wait_line("READY", Duration::from_secs(30)),
            "edge node did not start: {:?}",
            edge.lines()
        );
        edge
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    fn wait_line(&self, want: &str, timeout: Duration) -> bool {
        let end = twin::wallclock::monotonic() + timeout;
        while twin::wallclock::monotonic() < end {
            if self.lines().iter().any(|l| l == want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Send a command and wait for its acknowledgement.
    fn cmd(&mut self, c: &str) {
        let before = self.lines().iter().filter(|l| l.starts_with("OK ")).count();
        writeln!(self.stdin, "{c}").expect("write to the edge node");
        self.stdin.flush().expect("flush");
        let end = twin::wallclock::monotonic() + Duration::from_secs(10);
        while twin::wallclock::monotonic() < end {
            if self.lines().iter().filter(|l| l.starts_with("OK ")).count() > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("edge node did not acknowledge {c:?}: {:?}", self.lines());
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn last(run: &Proc, tag: &str) -> Option<serde_json::Value> {
    let ev = events(&run.lines());
    tag_events(&ev, tag).last().map(|e| (*e).clone())
}

fn wait_tag(run: &Proc, tag: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let found = run.wait_for(Duration::from_secs(15), |lines| {
        let ev = events(lines);
        tag_events(&ev, tag).last().is_some_and(|e| ok(e))
    });
    assert!(
        found,
        "{tag}: expected {what}, last event {:?}\n{}",
        last(run, tag),
        run.stderr()
    );
}

#[test]
fn tags_follow_births_data_and_deaths_of_a_real_edge_node() {
    let broker =
        twin::broker::start_embedded("127.0.0.1:0".parse().expect("addr")).expect("broker");
    let mut run = twin();
    run.args(["run", CFG, "--events", "-", "--for", "60s"])
        .arg("--mqtt")
        .arg(format!("edge=mqtt://{broker}"));
    let mut run = Proc::spawn(run);
    assert!(
        run.wait_for(Duration::from_secs(15), |_| run
            .stderr()
            .contains("Connected to Sparkplug broker")),
        "twin never connected:\n{}",
        run.stderr()
    );

    let mut edge = Edge::start(broker.port());
    // Births carry the current values; INT16 -12 scaled by 0.1.
    wait_tag(&run, "line.speed", "1.5 from NBIRTH", |e| {
        e["quality"] == "good" && e["value"] == 1.5
    });
    wait_tag(&run, "filler.motor_current", "-1.2 from DBIRTH", |e| {
        e["quality"] == "good" && e["value"] == -1.2
    });
    wait_tag(&run, "filler.temperature", "41.5", |e| e["value"] == 41.5);
    wait_tag(&run, "filler.running", "true", |e| e["value"] == true);
    wait_tag(&run, "filler.recipe", "\"LOT-7\"", |e| {
        e["value"] == "LOT-7"
    });

    // Data.
    edge.cmd("current 123");
    wait_tag(&run, "filler.motor_current", "12.3 from DDATA", |e| {
        e["value"] == 12.3
    });
    edge.cmd("speed 2.25");
    wait_tag(&run, "line.speed", "2.25 from NDATA", |e| {
        e["value"] == 2.25
    });
    assert!(
        !edge.lines().iter().any(|l| l == "REBIRTH"),
        "no rebirth without a gap: {:?}",
        edge.lines()
    );

    // A sequence gap: the data still counts, and the twin asks for a rebirth
    // (this source has `rebirth = true`).
    edge.cmd("gap");
    edge.cmd("temp 44.0");
    wait_tag(&run, "filler.temperature", "44.0 after the gap", |e| {
        e["value"] == 44.0
    });
    assert!(
        edge.wait_line("REBIRTH", Duration::from_secs(10)),
        "no rebirth request: {:?}",
        edge.lines()
    );

    // Device death: the device's tags go stale, keeping their last values;
    // the node's own tag stays good.
    edge.cmd("ddeath");
    wait_tag(&run, "filler.temperature", "stale after DDEATH", |e| {
        e["quality"] == "stale" && e["reason"] == "device_death" && e["value"] == 44.0
    });
    wait_tag(&run, "filler.recipe", "stale after DDEATH", |e| {
        e["quality"] == "stale"
    });
    assert_eq!(
        last(&run, "line.speed").map(|e| e["quality"].clone()),
        Some("good".into())
    );

    // Node death (the will, sent by the broker when the node vanishes).
    edge.cmd("die");
    wait_tag(&run, "line.speed", "stale after NDEATH", |e| {
        e["quality"] == "stale" && e["reason"] == "node_death" && e["value"] == 2.25
    });

    assert!(run.is_running());
    run.terminate();
    assert_eq!(
        run.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        run.stderr()
    );
}
