//! Recordings and replay (issue 10): what a live run records replays to the
//! same events, byte for byte; a killed recording stays readable; a full
//! disk stops only the recording; a replay touches no device.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::util::{Proc, twin, wait_json};

const DEMO: &str = "plant-configs/packaging-line.toml";

fn run_ok(mut cmd: std::process::Command, what: &str) -> String {
    let out = cmd.output().expect("run twin");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{stderr}",
        out.status.code()
    );
    stderr
}

fn replay(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut c = twin();
    c.arg("replay").args(args);
    c.output().expect("run twin replay")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Replay `rec` (with `extra` flags) into `out` and return its bytes.
fn replay_to(rec: &[PathBuf], out: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args: Vec<&std::ffi::OsStr> = rec.iter().map(|p| p.as_os_str()).collect();
    args.push("--events".as_ref());
    args.push(out.as_os_str());
    for e in extra {
        args.push(e.as_ref());
    }
    let o = replay(&args);
    assert!(
        o.status.success(),
        "replay failed ({:?}):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    read(out)
}

fn event_types(jsonl: &[u8]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(l).expect("event is JSON");
        *m.entry(v["type"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    m
}

/// The transfer jam, early: at 3 s for 6 s.
fn early_jam(dir: &Path) -> PathBuf {
    let scenario = dir.join("jam.toml");
    std::fs::write(
        &scenario,
        "version = 1\nname = \"early jam\"\n[[faults]]\nkind = \"jam\"\nline = \"line1\"\nconveyor = \"outfeed\"\nposition = 0.35\nat = \"3s\"\nduration = \"6s\"\n",
    )
    .expect("write scenario");
    scenario
}

#[test]
fn r10_a_recorded_demo_replays_byte_identical_at_any_speed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, rec) = (dir.path().join("live.jsonl"), dir.path().join("rec.mcap"));
    let mut demo = twin();
    demo.args(["demo", "--for", "14s", "--no-table", "--events"])
        .arg(&live)
        .arg("--scenario")
        .arg(early_jam(dir.path()))
        .arg("--record")
        .arg(&rec);
    run_ok(demo, "twin demo --record");
    let live_bytes = read(&live);
    let types = event_types(&live_bytes);
    assert!(
        types.get("tag").copied().unwrap_or(0) > 50
            && types.contains_key("line")
            && (types.contains_key("jam") || types.contains_key("residual")),
        "the demo with a jam wrote too little to compare: {types:?}"
    );
    let max = replay_to(
        std::slice::from_ref(&rec),
        &dir.path().join("max.jsonl"),
        &[],
    );
    assert!(max == live_bytes, "the replay differs from the live run");
    let x10 = replay_to(
        std::slice::from_ref(&rec),
        &dir.path().join("x10.jsonl"),
        &["--speed", "10x", "--verify"],
    );
    assert!(
        x10 == live_bytes,
        "the 10x replay differs from the live run"
    );
    // The recording holds its own expected output: --verify compares with it.
    let o = replay(&[rec.as_os_str(), "--verify".as_ref()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A counterfactual replay: another config (here, the eyes' timing
/// tolerance) over the same recording changes what the twin says, and the
/// replay under the recorded config does not.
#[test]
fn r10_a_replay_under_another_config_is_a_counterfactual() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, rec) = (dir.path().join("live.jsonl"), dir.path().join("rec.mcap"));
    let mut demo = twin();
    demo.args(["demo", "--for", "8s", "--no-table", "--events"])
        .arg(&live)
        .arg("--record")
        .arg(&rec);
    run_ok(demo, "twin demo --record");
    let text = crate::util::demo_text();
    // The same plant with one tag's stale_after cut to a tenth of a second:
    // the tags it binds go stale between samples.
    let other = text.replacen("[plant]", "[plant]\n# counterfactual", 1);
    let other_path = dir.path().join("other.toml");
    std::fs::write(&other_path, &other).expect("write config");
    let same = replay_to(
        &[other_path.clone(), rec.clone()],
        &dir.path().join("same.jsonl"),
        &[],
    );
    assert!(
        same == read(&live),
        "a config differing only in a comment must replay the same events"
    );
    // A changed threshold: the once-a-second sensors called stale after
    // half a second. The replay says it is a counterfactual, and `twin diff`
    // lists what the new setting would have changed.
    let stricter = text.replace("stale_after = \"5s\"", "stale_after = \"500ms\"");
    assert_ne!(
        stricter, text,
        "the demo config has the threshold this test changes"
    );
    let stricter_path = dir.path().join("stricter.toml");
    std::fs::write(&stricter_path, &stricter).expect("write config");
    let what_if = dir.path().join("whatif.jsonl");
    let o = replay(&[
        stricter_path.as_os_str(),
        rec.as_os_str(),
        "--events".as_ref(),
        what_if.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success() && stderr.contains("counterfactual"),
        "{stderr}"
    );
    let mut diff = twin();
    diff.arg("diff").arg(&live).arg(&what_if);
    let d = diff.output().expect("twin diff");
    let report = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.status.code(), Some(1), "the streams differ:\n{report}");
    assert!(
        report.contains("stale"),
        "the diff shows tags turning stale:\n{report}"
    );
    // The QA loop: replay, check expectations, JUnit for CI.
    let expect = dir.path().join("expect.toml");
    std::fs::write(
        &expect,
        "[suite]\nname = \"healthy demo\"\n\n[[event]]\nname = \"no jam\"\ntype = \"jam\"\nhappens = false\n\n[[event]]\nname = \"the line reports\"\ntype = \"line\"\nat_least = 5\n",
    )
    .expect("write expectations");
    let junit = dir.path().join("junit.xml");
    let o = replay(&[
        rec.as_os_str(),
        "--expect".as_ref(),
        expect.as_os_str(),
        "--junit".as_ref(),
        junit.as_os_str(),
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("healthy demo") && !xml.contains("<failure"),
        "{xml}"
    );
    std::fs::write(
        &expect,
        "[[event]]\nname = \"a jam\"\ntype = \"jam\"\nat_least = 1\n",
    )
    .expect("write expectations");
    let o = replay(&[
        rec.as_os_str(),
        "--expect".as_ref(),
        expect.as_os_str(),
        "--junit".as_ref(),
        junit.as_os_str(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed expectation fails the replay"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("<failure") && xml.contains("a jam"), "{xml}");
}

/// `twin sim` with a jam scenario, `twin run` over real Modbus and MQTT with
/// `--record`, then a replay: the same bytes, jams and residuals included.
#[test]
fn r10_a_recorded_run_over_modbus_and_mqtt_replays_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = early_jam(dir.path());
    let ep = dir.path().join("endpoints.json");
    let mut sim = twin();
    sim.args([
        "sim",
        DEMO,
        "--mqtt-port",
        "0",
        "--modbus-port",
        "*=0",
        "--scenario",
    ])
    .arg(&scenario)
    .arg("--endpoints-out")
    .arg(&ep);
    let _sim = Proc::spawn(sim);
    wait_json(&ep, Duration::from_secs(30));
    let (live, rec) = (dir.path().join("live.jsonl"), dir.path().join("rec.mcap"));
    let mut run = twin();
    run.args(["run", DEMO, "--for", "16s", "--no-table", "--endpoints"])
        .arg(&ep)
        .arg("--events")
        .arg(&live)
        .arg("--record")
        .arg(&rec);
    run_ok(run, "twin run --record");
    let live_bytes = read(&live);
    let types = event_types(&live_bytes);
    assert!(
        types.contains_key("jam") || types.contains_key("residual"),
        "the jam scenario should show in the live run: {types:?}"
    );
    let replayed = replay_to(
        &[PathBuf::from(DEMO), rec.clone()],
        &dir.path().join("r.jsonl"),
        &[],
    );
    assert!(
        replayed == live_bytes,
        "the replay differs from the live run ({types:?})"
    );
}

/// `events` without the end-of-run `metering` and `optimiser` summaries at
/// its end (and only
/// there: a summary anywhere else is left in, and fails the comparison).
fn without_run_summary(events: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = events
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    while lines.last().is_some_and(|l| {
        serde_json::from_slice::<serde_json::Value>(l).is_ok_and(|e| {
            (e["type"] == "metering" || e["type"] == "optimiser") && e["scope"] == "run"
        })
    }) {
        lines.pop();
    }
    lines.concat()
}

#[test]
fn r10_a_killed_recording_replays_up_to_its_last_flush_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (live, rec) = (dir.path().join("live.jsonl"), dir.path().join("rec.mcap"));
    let mut demo = twin();
    demo.args(["demo", "--no-table", "--record-flush", "500ms", "--events"])
        .arg(&live)
        .arg("--record")
        .arg(&rec);
    let mut p = Proc::spawn(demo);
    // Let it record for a while, then kill it without warning.
    let t0 = twin::wallclock::monotonic();
    while twin::wallclock::since(t0) < Duration::from_secs(7) {
        assert!(p.is_running(), "the demo ended early:\n{}", p.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    p.child.kill().expect("SIGKILL");
    let _ = p.child.wait();
    let live_bytes = read(&live);
    let out = dir.path().join("cut.jsonl");
    let o = replay(&[rec.as_os_str(), "--events".as_ref(), out.as_os_str()]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "a cut-off recording must still replay:\n{stderr}"
    );
    assert!(
        stderr.contains("twin recover"),
        "the replay says the file was cut off:\n{stderr}"
    );
    let cut_full = read(&out);
    // The replay's run ends where the recording does, so it closes with
    // the models' end-of-run metering (docs/events.md), which the killed
    // run never wrote; everything before it is the live stream's beginning.
    let cut = without_run_summary(&cut_full);
    if !live_bytes.starts_with(&cut) {
        let at = live_bytes
            .iter()
            .zip(&cut)
            .position(|(a, b)| a != b)
            .unwrap_or(cut.len().min(live_bytes.len()));
        let show = |b: &[u8]| {
            String::from_utf8_lossy(&b[at.saturating_sub(300)..(at + 300).min(b.len())])
                .into_owned()
        };
        panic!(
            "the replay of what was recorded is the live stream's beginning; first difference at byte {at} (cut {} bytes, live {}):\nlive: {}\nreplay: {}",
            cut.len(),
            live_bytes.len(),
            show(&live_bytes),
            show(&cut)
        );
    }
    // At most the flush interval (and the tick in flight) is lost: the run
    // went ~7 s; the replay reaches well past 5 s of it.
    let last_t = |b: &[u8]| {
        let l = b
            .split(|c| *c == b'\n')
            .rfind(|l| !l.is_empty())
            .expect("events");
        crate::util::t_ms(&serde_json::from_slice(l).expect("json"))
    };
    let first_t = |b: &[u8]| {
        let l = b.split(|c| *c == b'\n').next().expect("events");
        crate::util::t_ms(&serde_json::from_slice(l).expect("json"))
    };
    let (start, live_end, cut_end) = (first_t(&live_bytes), last_t(&live_bytes), last_t(&cut));
    assert!(
        live_end - cut_end <= 1_500,
        "the recording lost {} ms (live ran to +{} ms, the recording to +{} ms)",
        live_end - cut_end,
        live_end - start,
        cut_end - start
    );
    // `twin recover` writes a clean copy that replays the same, without a
    // cut-off warning.
    let fixed = dir.path().join("fixed.mcap");
    let mut rcv = twin();
    rcv.arg("recover").arg(&rec).arg("-o").arg(&fixed);
    run_ok(rcv, "twin recover");
    let out2 = dir.path().join("fixed.jsonl");
    let o = replay(&[fixed.as_os_str(), "--events".as_ref(), out2.as_os_str()]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    assert!(
        !stderr.contains("twin recover"),
        "the copy is whole:\n{stderr}"
    );
    assert_eq!(
        read(&out2),
        cut_full,
        "the copy replays what the cut file held"
    );
    // And the copy is a valid MCAP file with a summary for other readers.
    check_with_python_mcap(&fixed);
}

/// Read a recording with the Python `mcap` library (Foxglove's reference
/// reader): tag samples must decode with the protobuf library from the
/// schema the file carries (its FileDescriptorSet, as Foxglove decodes
/// them), and events and ticks parse as JSON on channels with a JSON Schema.
fn check_with_python_mcap(path: &Path) {
    let py = crate::util::root().join(".venv/bin/python");
    let script = r#"
import json, sys
from mcap.reader import make_reader
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
with open(sys.argv[1], "rb") as f:
    r = make_reader(f)
    s = r.get_summary()
    assert s is not None, "no summary"
    enc = {sc.name: sc.encoding for sc in s.schemas.values()}
    # `twin.GuardInput` only in runs whose guard took an input (a live run
    # with setpoints: the links' flags at least; docs/recordings.md).
    known = {"twin.TagSample": "protobuf", "twin.Event": "jsonschema", "twin.Tick": "jsonschema", "twin.GuardInput": "jsonschema"}
    assert all(known.get(n) == e for n, e in enc.items()), enc
    assert all(n in enc for n in ("twin.TagSample", "twin.Event", "twin.Tick")), enc
    classes = {}
    for sid, sc in s.schemas.items():
        if sc.encoding == "protobuf":
            fds = descriptor_pb2.FileDescriptorSet.FromString(sc.data)
            pool = descriptor_pool.DescriptorPool()
            for fd in fds.file:
                pool.Add(fd)
            classes[sid] = message_factory.GetMessageClass(pool.FindMessageTypeByName(sc.name))
    n = 0
    numbers = 0
    for schema, channel, message in r.iter_messages():
        if schema.encoding == "protobuf":
            assert channel.message_encoding == "protobuf", channel
            m = classes[schema.id].FromString(message.data)
            numbers += m.WhichOneof("value") == "num"
            assert message.log_time >= message.publish_time, (channel.topic, message)
        else:
            json.loads(message.data)
        n += 1
    assert numbers > 0, "no numeric sample decoded"
    meta = [m.name for m in r.iter_metadata()]
    att = [a.name for a in r.iter_attachments()]
    print(n, ",".join(meta), ",".join(att))
"#;
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("run python mcap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python mcap could not read {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = stdout.split_whitespace();
    let n: u64 = f
        .next()
        .and_then(|n| n.parse().ok())
        .expect("message count");
    assert!(n > 100, "{stdout}");
    assert_eq!(f.next(), Some("twin.recording"), "{stdout}");
    // The config, then the model files of the demo's fault and setpoint models, which
    // Foxglove and any MCAP reader list as attachments.
    assert_eq!(
        f.next(),
        Some("plant.toml,models/line_faults.onnx,models/line_setpoints.onnx"),
        "{stdout}"
    );
}

#[test]
fn r10_a_full_disk_stops_the_recording_and_the_twin_keeps_mirroring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live.jsonl");
    let mut demo = twin();
    demo.args([
        "demo",
        "--for",
        "4s",
        "--no-table",
        "--record",
        "/dev/full",
        "--events",
    ])
    .arg(&live);
    let stderr = run_ok(demo, "twin demo --record /dev/full");
    assert!(stderr.contains("No space left"), "{stderr}");
    let bytes = read(&live);
    let lines: Vec<serde_json::Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json"))
        .collect();
    let err = lines
        .iter()
        .position(|e| e["type"] == "error")
        .expect("an error event says the recording stopped");
    let e = &lines[err];
    assert_eq!(e["component"], "recorder", "{e}");
    assert_eq!(e["target"], "/dev/full", "{e}");
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|s| s.contains("No space left")),
        "{e}"
    );
    // The twin went on: tag and line events keep coming after it, to the end.
    let after = &lines[err + 1..];
    assert!(
        after.iter().any(|e| e["type"] == "line"),
        "no line events after the error"
    );
    let t_err = crate::util::t_ms(e);
    let t_last = crate::util::t_ms(lines.last().expect("events"));
    assert!(
        t_last - t_err >= 1_500,
        "the twin stopped mirroring {} ms after the error",
        t_last - t_err
    );
}

/// Connections accepted by a listener, counted on a thread.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            c.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut s) = s {
                let mut buf = [0u8; 64];
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = s.read(&mut buf);
            }
        }
    });
    (port, n)
}

#[test]
fn r10_a_replay_never_touches_a_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Record a demo run, then point every endpoint of the demo config at
    // listeners that count connections, and replay under it.
    let rec = dir.path().join("rec.mcap");
    let mut demo = twin();
    demo.args(["demo", "--for", "4s", "--no-table", "--record"])
        .arg(&rec);
    run_ok(demo, "twin demo --record");
    // The report reads a recording directly: its events and its samples.
    let html = dir.path().join("report.html");
    let mut report = twin();
    report.arg("report").arg(&rec).arg("-o").arg(&html);
    run_ok(report, "twin report REC.mcap");
    let page = std::fs::read_to_string(&html).expect("report written");
    assert!(
        page.contains("infeed.speed") && page.contains("samples"),
        "the report shows the recording"
    );
    let (mq_port, mq) = counting_listener();
    let text = crate::util::demo_text();
    let mut devices = Vec::new();
    let mut cfg = String::new();
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with("address = \"127.0.0.1:") {
            let (port, n) = counting_listener();
            devices.push(n);
            cfg += &format!("address = \"127.0.0.1:{port}\"\n");
        } else if t.starts_with("broker =") {
            cfg += &format!("broker = \"mqtt://127.0.0.1:{mq_port}\"\n");
        } else if t.starts_with("listen =") {
            // Only for an embedded broker.
        } else {
            cfg += l;
            cfg += "\n";
        }
    }
    assert!(
        devices.len() >= 2,
        "the demo has Modbus devices to point elsewhere"
    );
    let connections = || {
        devices
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum::<usize>()
            + mq.load(Ordering::SeqCst)
    };
    let path = dir.path().join("counting.toml");
    std::fs::write(&path, cfg).expect("write config");
    // The config is good enough to run live: a live run does connect.
    let out = dir.path().join("r.jsonl");
    let got = replay_to(&[path.clone(), rec.clone()], &out, &[]);
    assert!(!got.is_empty(), "the replay wrote events");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        connections(),
        0,
        "a replay connected to a device or a broker"
    );
    let mut live = twin();
    live.args(["run", "--for", "2s", "--no-table"]).arg(&path);
    let _ = live.output();
    assert!(
        connections() > 0,
        "the listeners count connections (a live run under the same config connects)"
    );
}

/// A sink that keeps every tick's encoded events.
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl twin::sinks::Sink for Capture {
    fn write_tick(
        &mut self,
        out: &twin::sinks::TickOutput<'_>,
    ) -> Result<(), twin::sinks::SinkError> {
        self.0.lock().expect("lock").extend_from_slice(out.jsonl);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), twin::sinks::SinkError> {
        Ok(())
    }
}

/// A recording rotated every simulated second: the index lists every file,
/// and replaying the index (or the files in order) gives the run's stream.
#[test]
fn r10_a_rotated_recording_replays_as_one_through_its_index() {
    use twin::recording::RecordingReader;
    use twin::recording::index::RecordingIndex;
    use twin::runtime::{Driver, ReplayOptions, run_replay};
    use twin::sinks::recorder::{Recorder, RecorderOptions};
    use twin::twin::{Sample, Value};

    let dir = tempfile::tempdir().expect("tempdir");
    let text = crate::util::demo_text();
    let cfg = twin::config::load_str(Path::new(DEMO), &text).expect("demo config is valid");
    let base = dir.path().join("shift.mcap");
    let mut o = RecorderOptions::new(&base);
    o.flush_every = Duration::from_millis(200);
    o.rotate_every = Some(Duration::from_secs(1));
    let live = Arc::new(std::sync::Mutex::new(Vec::new()));
    let epoch = 1_800_000_000_000_000_000;
    // The demo's models run, as they do in the replay.
    let mut d = Driver::new(&cfg, epoch)
        .with_models(&cfg)
        .expect("the demo's models load");
    d.add_sink(Box::new(Capture(live.clone())))
        .expect("capture");
    d.add_sink(Box::new(Recorder::new(&cfg, o)))
        .expect("recorder starts");
    let speed = cfg.tags.id("infeed.speed").expect("demo tag");
    let temp = cfg.tags.id("filler.bearing_temperature").expect("demo tag");
    for i in 0..45i64 {
        let t = epoch + i * 100_000_000 + 30_000_000;
        d.push(Sample::good(
            speed,
            Value::Num(0.5 + (i % 7) as f64 * 0.01),
            t,
            t,
        ));
        if i % 10 == 0 {
            d.push(Sample::good(
                temp,
                Value::Num(40.0 + i as f64 / 3.0),
                t - 5,
                t,
            ));
        }
        d.step();
    }
    assert!(d.finish().is_empty(), "the sinks close cleanly");
    let index = twin::recording::index::index_path(&base);
    let idx = RecordingIndex::load(&index).expect("the index is written");
    assert!(idx.parts.len() >= 4, "{idx:?}");
    assert!(
        idx.parts.iter().all(|p| p.last_tick.is_some()),
        "every part is closed: {idx:?}"
    );
    for pair in idx.parts.windows(2) {
        assert_eq!(pair[0].last_tick, Some(pair[1].first_tick), "{idx:?}");
    }
    let replay_of = |paths: Vec<PathBuf>| {
        let mut reader = RecordingReader::open(&paths).expect("open the recording");
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut opts = ReplayOptions::new();
        opts.sinks.push(Box::new(Capture(out.clone())));
        let s = run_replay(&cfg, &mut reader, opts).expect("replay");
        assert!(s.exact && s.same_config && s.cut_off.is_empty(), "{s:?}");
        out.lock().expect("lock").clone()
    };
    let live = live.lock().expect("lock").clone();
    assert!(!live.is_empty());
    assert!(
        replay_of(vec![index.clone()]) == live,
        "the index replays as the run"
    );
    assert!(
        replay_of(idx.files(&index)) == live,
        "the files in order replay as the run"
    );
    // A part out of order is refused, naming it.
    let mut files = idx.files(&index);
    files.swap(0, 1);
    let err = RecordingReader::open(&files)
        .and_then(|mut r| r.try_for_each(|i| i.map(|_| ())))
        .map_err(|e| e.to_string());
    assert!(err.is_err(), "parts out of order must not replay as one");
}

/// A headless demo recorded at CPU speed replays to its own events, and its
/// recording says where it came from.
#[test]
fn r10_a_headless_recording_replays_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, rec) = (dir.path().join("h.jsonl"), dir.path().join("h.mcap"));
    // The jam once the line is full (before, the twin may call the blocked
    // eye stuck rather than jammed).
    let scenario = dir.path().join("jam20.toml");
    std::fs::write(
        &scenario,
        "version = 1\nname = \"jam\"\n[[faults]]\nkind = \"jam\"\nline = \"line1\"\nconveyor = \"outfeed\"\nposition = 0.35\nat = \"20s\"\nduration = \"12s\"\n",
    )
    .expect("write scenario");
    let mut demo = twin();
    demo.args(["demo", "--headless", "--for", "45s", "--events"])
        .arg(&events)
        .arg("--scenario")
        .arg(&scenario)
        .arg("--record")
        .arg(&rec);
    run_ok(demo, "twin demo --headless --record");
    let r = twin::recording::RecordingReader::open(std::slice::from_ref(&rec)).expect("open");
    assert_eq!(r.info().origin, "headless");
    let replayed = replay_to(
        std::slice::from_ref(&rec),
        &dir.path().join("r.jsonl"),
        &["--verify"],
    );
    assert!(
        replayed == read(&events),
        "the replay differs from the headless run"
    );
    assert!(event_types(&replayed).contains_key("jam"), "the jam shows");
}

/// A recording cut off, or damaged, inside its attached model files (the
/// first half megabyte of a demo recording) holds nothing to replay. The
/// replay used to go on with the recorded config and fail on its model
/// paths (exit 78, "model file `../models/demo_fault.onnx` not found"),
/// blaming a config the user never wrote; it now names the damaged file.
/// And `--from` after `--to`, which used to replay to `--to` and write
/// nothing with exit 0, is a usage error.
#[test]
fn r_hostile_a_recording_damaged_in_its_models_and_from_after_to_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("short.mcap");
    let mut demo = twin();
    demo.args(["demo", "--headless", "--for", "2s", "--record"])
        .arg(&rec)
        .arg("--events")
        .arg(dir.path().join("e.jsonl"));
    run_ok(demo, "twin demo --headless --record");
    let bytes = std::fs::read(&rec).expect("read the recording");
    let name = b"models/line_faults.onnx";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("the recording carries the demo's fault model");
    // Well inside the model's bytes (0.56 MB), before any sample.
    let inside = at + 100_000;
    let mut flipped = bytes.clone();
    flipped[inside] ^= 0x40;
    for (file, data) in [
        ("cut.mcap", &bytes[..inside]),
        ("flipped.mcap", &flipped[..]),
    ] {
        let damaged = dir.path().join(file);
        std::fs::write(&damaged, data).expect("write");
        let out = twin()
            .arg("replay")
            .arg(&damaged)
            .arg("--events")
            .arg(dir.path().join("r.jsonl"))
            .output()
            .expect("run twin replay");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(
            err.contains(file)
                && err.contains("models/line_faults.onnx")
                && err.contains("damaged"),
            "{file}: the error names the file and what is damaged in it: {err}"
        );
        assert!(!err.contains("not found"), "{file}: no config error: {err}");
    }
    let out = twin()
        .arg("replay")
        .arg(&rec)
        .args(["--from", "1s", "--to", "500ms", "--events"])
        .arg(dir.path().join("r.jsonl"))
        .output()
        .expect("run twin replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is after --to 500ms"), "{err}");
    // A window outside the 2 s recording replays, and says why nothing
    // came out.
    for (args, says) in [
        (["--from", "10m"], "--from is after the recording's end"),
        (
            ["--to", "1970-01-01T00:00:01Z"],
            "--to is before the recording's start",
        ),
    ] {
        let out = twin()
            .arg("replay")
            .arg(&rec)
            .args(args)
            .arg("--events")
            .arg(dir.path().join("r.jsonl"))
            .output()
            .expect("run twin replay");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `twin replay --expect` checks the same lines as `twin expect` on the
/// replay's own event stream, the run's closing `metering` and `optimiser`
/// events included (they used to reach the stream but not the checker).
#[test]
fn r_hostile_replay_expect_sees_the_runs_closing_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("short.mcap");
    let mut demo = twin();
    demo.args(["demo", "--headless", "--for", "2s", "--record"])
        .arg(&rec)
        .arg("--events")
        .arg(dir.path().join("e.jsonl"));
    run_ok(demo, "twin demo --headless --record");
    let expect = dir.path().join("end.toml");
    std::fs::write(
        &expect,
        "[[event]]\nname = \"the run's optimiser summary\"\ntype = \"optimiser\"\nat_least = 1\n",
    )
    .expect("write expectations");
    let events = dir.path().join("r.jsonl");
    let out = twin()
        .arg("replay")
        .arg(&rec)
        .arg("--events")
        .arg(&events)
        .arg("--expect")
        .arg(&expect)
        .output()
        .expect("run twin replay");
    let stream = std::fs::read_to_string(&events).expect("the replay's events");
    assert!(
        stream.contains(r#""type":"optimiser""#),
        "the stream has the summary"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PASS  the run's optimiser summary"),
        "{stdout}"
    );
}

/// A paced replay at an absurdly slow factor neither panics (`--speed
/// 1e-300x` made the wait too long for a Duration: "cannot convert float
/// seconds to Duration") nor ignores SIGTERM (it slept a whole tick's wait
/// at once, here years); it stops as interrupted (exit 130).
#[test]
fn r_hostile_a_very_slow_replay_neither_panics_nor_ignores_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("short.mcap");
    let mut demo = twin();
    demo.args(["demo", "--headless", "--for", "2s", "--record"])
        .arg(&rec)
        .arg("--events")
        .arg(dir.path().join("e.jsonl"));
    run_ok(demo, "twin demo --headless --record");
    for speed in ["1e-300x", "0.000000001x"] {
        let mut c = twin();
        c.arg("replay")
            .arg(&rec)
            .args(["--speed", speed, "--events", "-"]);
        let mut p = Proc::spawn(c);
        // The first tick's events are out: it is pacing the second.
        assert!(
            p.wait_for(Duration::from_secs(20), |l| !l.is_empty()),
            "{speed}: no events: {}",
            p.stderr()
        );
        assert!(p.is_running(), "{speed}: {}", p.stderr());
        p.terminate();
        assert_eq!(
            p.wait(Duration::from_secs(20)),
            Some(130),
            "{speed}: {}",
            p.stderr()
        );
        assert!(!p.stderr().contains("panicked"), "{speed}: {}", p.stderr());
    }
}
