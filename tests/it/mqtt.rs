//! MQTT against a real broker: each test starts its own mosquitto on a free
//! loopback port, with a generated config and its own persistence folder,
//! and drives the real `twin run` binary. Publishers are mosquitto_pub, so
//! the twin is also checked against a client it did not write.
//!
//! mosquitto and mosquitto-clients come from Debian (`scripts/setup.sh`
//! installs them).

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::util::*;

/// A Debian binary: on PATH, or in the sbin folders a non-root PATH lacks.
pub(crate) fn tool(name: &str) -> PathBuf {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: install mosquitto and mosquitto-clients (scripts/setup.sh)")
        })
}

/// Run a short command to completion, within `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let end = twin::wallclock::monotonic() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if twin::wallclock::monotonic() > end {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A mosquitto broker on 127.0.0.1. Killed on drop; [`Mosquitto::stop`]
/// ends it with SIGTERM, which makes it save its persistence file.
pub(crate) struct Mosquitto {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Mosquitto {
    /// Start on `port` with persistence in `state` and `extra` config lines.
    pub(crate) fn start(dir: &Path, port: u16, state: &Path, extra: &str) -> Mosquitto {
        std::fs::create_dir_all(state).expect("persistence folder");
        // One log per start: a restart on the same port must not find the
        // previous run's "running" line.
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conf = dir.join(format!("mosquitto-{port}-{n}.conf"));
        let log = dir.join(format!("mosquitto-{port}-{n}.log"));
        let mut text = format!(
            "listener {port} 127.0.0.1\n\
             persistence true\n\
             persistence_location {}/\n\
             log_dest file {}\n\
             log_type all\n\
             # As root, mosquitto would drop to the `mosquitto` user, who may\n\
             # not reach the test's temporary folder.\n\
             user root\n",
            state.display(),
            log.display()
        );
        if !extra.contains("allow_anonymous") {
            text.push_str("allow_anonymous true\n");
        }
        text.push_str(extra);
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Command::new(tool("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        // Owned from here, so a failed start below still kills it.
        let mut m = Mosquitto { child, port, log };
        let log = m.log.clone();
        let end = twin::wallclock::monotonic() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = m.child.try_wait() {
                panic!(
                    "mosquitto exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // The log says when the listener is open; a probe connection
            // would show up as a client that never said CONNECT.
            if std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" running")) {
                break;
            }
            assert!(
                twin::wallclock::monotonic() < end,
                "mosquitto did not start on port {port}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "mosquitto is not listening on {port}"
        );
        m
    }

    /// SIGTERM, and wait (bounded) until it has written its state and exited.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = twin::wallclock::monotonic() + Duration::from_secs(10);
        while twin::wallclock::monotonic() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("mosquitto did not stop on SIGTERM");
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publish one message with mosquitto_pub at QoS 1. It returns once the
/// broker has acknowledged (PUBACK), so the broker owns the message.
fn publish(port: u16, topic: &str, body: &[u8], extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("write body");
    let mut cmd = Command::new(tool("mosquitto_pub"));
    cmd.args(["-h", "127.0.0.1", "-q", "1", "-t", topic])
        .arg("-p")
        .arg(port.to_string())
        .arg("-f")
        .arg(&file)
        .args(extra);
    let out = run_bounded(cmd, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "mosquitto_pub to {topic} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn twin_run(cfg: &Path, source: &str, url: &str, secs: u32) -> Command {
    let mut cmd = twin();
    cmd.arg("run")
        .arg(cfg)
        .args(["--events", "-", "--for", &format!("{secs}s")])
        .arg("--mqtt")
        .arg(format!("{source}={url}"));
    cmd
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.lines().filter(|l| l.contains(needle)).count()
}

/// Wait until the twin's log has at least `n` lines containing `needle`.
fn wait_log(p: &Proc, needle: &str, n: usize, limit: Duration) {
    assert!(
        p.wait_for(limit, |_| count(&p.stderr(), needle) >= n),
        "no {n}× {needle:?} in the twin's log within {limit:?}:\n{}",
        p.stderr()
    );
}

/// Whether some event gave `tag` the good value `v`.
fn has_value(lines: &[String], tag: &str, v: f64) -> bool {
    tag_events(&events(lines), tag)
        .iter()
        .any(|e| e["quality"] == "good" && e["value"].as_f64() == Some(v))
}

fn wait_value(p: &Proc, tag: &str, v: f64, limit: Duration) {
    assert!(
        p.wait_for(limit, |l| has_value(l, tag, v)),
        "{tag} never became {v}:\n{}",
        p.stderr()
    );
}

const CONNECTED: &str = "Connected to MQTT broker";
const SUBSCRIBED: &str = "Subscribed to MQTT topics";

/// A broker that requires user `twin` with password `s3cret`.
fn password_broker(dir: &Path, port: u16) -> Mosquitto {
    let pw = dir.join("passwd");
    let mut cmd = Command::new(tool("mosquitto_passwd"));
    cmd.arg("-c").arg("-b").arg(&pw).args(["twin", "s3cret"]);
    let out = run_bounded(cmd, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "mosquitto_passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Mosquitto::start(
        dir,
        port,
        &dir.join("state"),
        &format!("allow_anonymous false\npassword_file {}\n", pw.display()),
    )
}

const LOGIN: [&str; 4] = ["-u", "twin", "-P", "s3cret"];

#[test]
fn r856_a_retained_oversized_message_does_not_make_the_twin_reconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = password_broker(dir.path(), free_port());
    // 1 MiB, retained, on the twin's topic; the source's max_packet_size is
    // 64 KiB. rumqttc with a 64 KiB client limit drops the connection on it,
    // and the broker sends it again on every resubscribe: a reconnect loop.
    let big = vec![b'x'; 1024 * 1024];
    publish(
        broker.port,
        "plant/filler/vibration",
        &big,
        &[&["-r"][..], &LOGIN].concat(),
    );

    let cfg = root().join("tests/configs/mqtt-auth.toml");
    let mut cmd = twin_run(&cfg, "cm", &format!("mqtt://127.0.0.1:{}", broker.port), 30);
    cmd.env("TWIN_IT_MQTT_PASSWORD", "s3cret");
    let mut run = Proc::spawn(cmd);
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));
    wait_log(
        &run,
        "Dropped an oversized MQTT message",
        1,
        Duration::from_secs(10),
    );

    // The connection carries on: a normal message still gets through...
    publish(broker.port, "plant/filler/vibration", b"4.25", &LOGIN);
    wait_value(&run, "filler.vibration", 4.25, Duration::from_secs(10));
    // ...and over several retry periods there is no second connection.
    thread::sleep(Duration::from_secs(3));
    let err = run.stderr();
    assert_eq!(count(&err, CONNECTED), 1, "reconnected:\n{err}");
    assert_eq!(count(&err, "unreachable"), 0, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("Dropped an oversized MQTT message"))
        .expect("warning");
    assert!(
        warning.contains("retained=true")
            && warning.contains("max_packet_size=65536")
            && warning.contains("plant/filler/vibration"),
        "{warning}"
    );
    // Acknowledged and dropped once; never a value.
    assert_eq!(count(&err, "Dropped an oversized MQTT message"), 1, "{err}");
    run.terminate();
    assert_eq!(run.wait(Duration::from_secs(10)), Some(0), "{err}");
    assert!(
        count(&broker.log(), "twin-it-auth").ge(&1),
        "the broker saw the twin"
    );
}

#[test]
fn credentials_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = password_broker(dir.path(), free_port());
    let cfg = root().join("tests/configs/mqtt-auth.toml");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);

    let mut good = twin_run(&cfg, "cm", &url, 20);
    good.env("TWIN_IT_MQTT_PASSWORD", "s3cret");
    let good = Proc::spawn(good);
    wait_log(&good, SUBSCRIBED, 1, Duration::from_secs(10));
    publish(broker.port, "plant/filler/vibration", b"1.5", &LOGIN);
    wait_value(&good, "filler.vibration", 1.5, Duration::from_secs(10));
    drop(good);

    // A wrong password is refused by the broker, and said so.
    let mut bad = twin_run(&cfg, "cm", &url, 3);
    bad.env("TWIN_IT_MQTT_PASSWORD", "wrong");
    let mut bad = Proc::spawn(bad);
    assert_eq!(
        bad.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        bad.stderr()
    );
    let err = bad.stderr();
    assert!(err.contains("MQTT broker refused the connection"), "{err}");
    assert_eq!(
        count(&err, "refused the connection"),
        1,
        "warned once:\n{err}"
    );
    assert!(!has_value(&bad.lines(), "filler.vibration", 1.5));

    // No variable: the twin does not start, and says which one is missing
    // (exit 78: the config's secret is missing, not the plant).
    let mut none = twin_run(&cfg, "cm", &url, 3);
    none.env_remove("TWIN_IT_MQTT_PASSWORD");
    let mut none = Proc::spawn(none);
    assert_eq!(
        none.wait(Duration::from_secs(20)),
        Some(78),
        "{}",
        none.stderr()
    );
    assert!(
        none.stderr().contains("TWIN_IT_MQTT_PASSWORD") && none.stderr().contains("\"cm\""),
        "{}",
        none.stderr()
    );
}

/// Publish sequence numbers `range` to their own topics (`it/seq/NN`).
fn publish_seq(port: u16, range: std::ops::Range<u32>) {
    for n in range {
        publish(
            port,
            &format!("it/seq/{n:02}"),
            n.to_string().as_bytes(),
            &[],
        );
    }
}

fn missing_seq(lines: &[String], upto: u32) -> Vec<u32> {
    (0..upto)
        .filter(|&n| !has_value(lines, &format!("seq.n{n:02}"), f64::from(n)))
        .collect()
}

fn wait_seq(run: &Proc, upto: u32, limit: Duration) {
    assert!(
        run.wait_for(limit, |l| missing_seq(l, upto).is_empty()),
        "QoS 1 messages lost: {:?}\n{}",
        missing_seq(&run.lines(), upto),
        run.stderr()
    );
}

#[test]
fn qos1_messages_survive_broker_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, &state, "");
    let cfg = root().join("tests/configs/mqtt-restart.toml");
    let run = Proc::spawn(twin_run(
        &cfg,
        "seq",
        &format!("mqtt://127.0.0.1:{port}"),
        90,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));

    // 1. Live.
    publish_seq(port, 0..10);
    wait_seq(&run, 10, Duration::from_secs(10));

    // 2. The broker restarts (saving its state) where the twin cannot reach
    //    it, and takes messages for the twin while it is away: they are
    //    queued in the twin's persistent session...
    broker.stop();
    // The twin's port is free now too; the point is a port it does not use.
    let other = std::iter::repeat_with(free_port)
        .find(|&p| p != port)
        .expect("a free port");
    let elsewhere = Mosquitto::start(dir.path(), other, &state, "");
    publish_seq(elsewhere.port, 10..20);
    // ...and survive a second restart, back on the twin's port.
    elsewhere.stop();
    let broker = Mosquitto::start(dir.path(), port, &state, "");
    wait_log(&run, CONNECTED, 2, Duration::from_secs(15));
    wait_seq(&run, 20, Duration::from_secs(15));

    // 3. Live again, with the session the broker kept: no new SUBSCRIBE
    //    was needed (and none was sent) for these to arrive.
    publish_seq(port, 20..30);
    wait_seq(&run, 30, Duration::from_secs(10));

    let err = run.stderr();
    let reconnect = err
        .lines()
        .filter(|l| l.contains(CONNECTED))
        .nth(1)
        .expect("a second connection");
    assert!(
        reconnect.contains("session_present=true") && reconnect.contains("subscribe=false"),
        "the broker should have kept the session:\n{err}"
    );
    assert_eq!(count(&err, SUBSCRIBED), 1, "{err}");
    // Exactly once each in the stream: every tag got one good value.
    let ev = events(&run.lines());
    for n in 0..30 {
        let goods = tag_events(&ev, &format!("seq.n{n:02}"))
            .into_iter()
            .filter(|e| e["quality"] == "good")
            .count();
        assert_eq!(goods, 1, "seq {n}");
    }
    drop(broker);
}

#[test]
fn r250_resubscribes_when_the_broker_lost_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, &dir.path().join("a"), "");
    let cfg = root().join("tests/configs/mqtt-restart.toml");
    let run = Proc::spawn(twin_run(
        &cfg,
        "seq",
        &format!("mqtt://127.0.0.1:{port}"),
        60,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));
    publish_seq(port, 0..1);
    wait_seq(&run, 1, Duration::from_secs(10));

    // A broker that knows nothing of the twin (fresh state) on the same port.
    broker.stop();
    let broker = Mosquitto::start(dir.path(), port, &dir.path().join("b"), "");
    wait_log(&run, SUBSCRIBED, 2, Duration::from_secs(15));
    publish_seq(port, 1..2);
    wait_seq(&run, 2, Duration::from_secs(10));
    let err = run.stderr();
    assert!(
        err.lines()
            .filter(|l| l.contains(CONNECTED))
            .nth(1)
            .is_some_and(|l| l.contains("session_present=false") && l.contains("subscribe=true")),
        "{err}"
    );
    drop(broker);
}

#[test]
fn wildcards_and_machine_captures_map_topics_to_machines() {
    let cfg = root().join("tests/configs/mqtt-wildcards.toml");
    // Every tag the captures declare is known at check time.
    let check = run_bounded(
        {
            let mut c = twin();
            c.arg("check").arg(&cfg);
            c
        },
        Duration::from_secs(20),
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("ok (3 tags, 3 machines"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(dir.path(), free_port(), &dir.path().join("s"), "");
    let run = Proc::spawn(twin_run(
        &cfg,
        "cm",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        30,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));
    publish(
        broker.port,
        "plant/filler/vibration",
        br#"{"rms": 1.5}"#,
        &[],
    );
    publish(
        broker.port,
        "plant/capper/vibration",
        br#"{"rms": 2.5}"#,
        &[],
    );
    publish(
        broker.port,
        "plant/labeller/vibration",
        br#"{"rms": 9}"#,
        &[],
    );
    publish(broker.port, "plant/bay3/door/left", b"true", &[]);
    wait_value(&run, "filler.vibration", 1.5, Duration::from_secs(10));
    wait_value(&run, "capper.vibration", 2.5, Duration::from_secs(10));
    assert!(run.wait_for(Duration::from_secs(10), |l| {
        tag_events(&events(l), "line.door")
            .iter()
            .any(|e| e["value"] == true)
    }));
    wait_log(
        &run,
        "machine the topic's `machines` list does not name",
        1,
        Duration::from_secs(5),
    );
    let ev = events(&run.lines());
    for (tag, machine) in [
        ("filler.vibration", "filler"),
        ("capper.vibration", "capper"),
    ] {
        assert!(
            tag_events(&ev, tag)
                .iter()
                .all(|e| e["machine"] == machine && e["unit"] == "mm/s"),
            "{tag} is bound to {machine}"
        );
    }
    // The unlisted machine gives no tag of its own.
    assert!(ev.iter().all(|e| e["tag"] != "labeller.vibration"));
    let err = run.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("machine=labeller") && l.contains("plant/labeller/vibration")),
        "{err}"
    );
}

#[test]
fn sample_arrays_keep_their_own_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(dir.path(), free_port(), &dir.path().join("s"), "");
    let cfg = root().join("tests/configs/mqtt-samples.toml");
    let run = Proc::spawn(twin_run(
        &cfg,
        "cm",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        30,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));

    // Measured a little while ago, newest first: they arrive together, so
    // the tag shows the newest, with the device's time as its source time.
    let now_ms = twin::wallclock::now_ns() / 1_000_000;
    let (t1, t2) = (now_ms - 700, now_ms - 400);
    publish(
        broker.port,
        "plant/filler/vibration_batch",
        format!(r#"[{{"ts": {t2}, "v": 2.5}}, {{"ts": {t1}, "v": 1.5}}]"#).as_bytes(),
        &[],
    );
    let at = twin::twin::events::rfc3339((now_ms - 300) * 1_000_000);
    publish(
        broker.port,
        "plant/filler/temperature_batch",
        format!(r#"{{"batch": {{"samples": [{{"at": "{at}", "temp": 41.25}}]}}}}"#).as_bytes(),
        &[],
    );
    wait_value(&run, "filler.vibration", 2.5, Duration::from_secs(10));
    wait_value(&run, "filler.temperature", 41.25, Duration::from_secs(10));

    let ev = events(&run.lines());
    let src_ms = |e: &serde_json::Value| {
        humantime::parse_rfc3339(e["src_t"].as_str().expect("src_t"))
            .expect("rfc3339")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch")
            .as_millis() as i64
    };
    let vib = tag_events(&ev, "filler.vibration");
    let last = vib.last().expect("an event");
    assert_eq!(last["value"], 2.5);
    assert_eq!(src_ms(last), t2, "src_t is the sample's own time: {last}");
    // The tick it was applied on follows the receive time, not the sample's.
    assert!(t_ms(last) > t2, "{last}");
    let temp = tag_events(&ev, "filler.temperature");
    assert_eq!(temp.last().expect("an event")["src_t"], at.as_str());
}

/// Make a CA, a server certificate for 127.0.0.1 and a client certificate
/// with the openssl CLI, in `dir`.
pub(crate) fn make_certs(dir: &Path) {
    let openssl = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(dir).args(args);
        let out = run_bounded(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=twin test CA"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    for (name, cn, usage) in [
        (
            "server",
            "127.0.0.1",
            "serverAuth\nsubjectAltName=IP:127.0.0.1",
        ),
        ("client", "twin", "clientAuth"),
    ] {
        let subj = format!("/CN={cn}");
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        let mut f = std::fs::File::create(dir.join(&ext)).expect("ext file");
        writeln!(f, "basicConstraints=CA:FALSE\nextendedKeyUsage={usage}").expect("write");
        openssl(
            &[
                &["req", "-subj", &subj][..],
                &ec,
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
    }
}

#[test]
fn tls_with_a_ca_file_and_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let d = dir.path().display();
    // TLS only, and only for clients with a certificate from our CA.
    let broker = Mosquitto::start(
        dir.path(),
        free_port(),
        &dir.path().join("s"),
        &format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n"
        ),
    );
    // The config names its PEM files relative to itself.
    let cfg = dir.path().join("mqtt-tls.toml");
    std::fs::copy(root().join("tests/configs/mqtt-tls.toml"), &cfg).expect("copy config");
    let run = Proc::spawn(twin_run(
        &cfg,
        "secure",
        &format!("mqtts://127.0.0.1:{}", broker.port),
        30,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));
    let tls = [
        "--cafile",
        &format!("{d}/ca.pem"),
        "--cert",
        &format!("{d}/client.pem"),
        "--key",
        &format!("{d}/client.key"),
    ]
    .map(str::to_string);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    publish(broker.port, "plant/filler/vibration", b"7.5", &tls);
    wait_value(&run, "filler.vibration", 7.5, Duration::from_secs(10));
    assert!(
        run.stderr()
            .contains(&format!("mqtts://127.0.0.1:{}", broker.port)),
        "{}",
        run.stderr()
    );

    // Without the client certificate the broker refuses the handshake.
    let plain = dir.path().join("no-client-cert.toml");
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("cert_file = \"client.pem\"\n", "")
        .replace("key_file = \"client.key\"\n", "");
    std::fs::write(&plain, text).expect("write config");
    let mut refused = Proc::spawn(twin_run(
        &plain,
        "secure",
        &format!("mqtts://127.0.0.1:{}", broker.port),
        3,
    ));
    assert_eq!(
        refused.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        refused.stderr()
    );
    assert_eq!(
        count(&refused.stderr(), CONNECTED),
        0,
        "{}",
        refused.stderr()
    );
    assert!(
        refused.stderr().contains("unreachable"),
        "{}",
        refused.stderr()
    );
}

/// A TCP listener that accepts each connection and closes it at once, as a
/// broker port behind a failing proxy would; it records when each came.
fn closing_listener() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = accepted.clone();
    // Detached: the accept loop ends with the test process.
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { break };
            a.lock().expect("lock").push(twin::wallclock::monotonic());
            drop(s);
        }
    });
    (port, accepted)
}

#[test]
fn r9_mqtt_and_sparkplug_reconnects_back_off_instead_of_retrying_every_second() {
    let (mqtt_port, mqtt_attempts) = closing_listener();
    let (spb_port, spb_attempts) = closing_listener();
    let mqtt = Proc::spawn(twin_run(
        &root().join("tests/configs/mqtt-restart.toml"),
        "seq",
        &format!("mqtt://127.0.0.1:{mqtt_port}"),
        9,
    ));
    let spb = Proc::spawn(twin_run(
        &root().join("tests/configs/sparkplug-interop.toml"),
        "edge",
        &format!("mqtt://127.0.0.1:{spb_port}"),
        9,
    ));
    for (mut run, attempts) in [(mqtt, mqtt_attempts), (spb, spb_attempts)] {
        assert_eq!(
            run.wait(Duration::from_secs(30)),
            Some(0),
            "{}",
            run.stderr()
        );
        let times = attempts.lock().expect("lock").clone();
        // A retry every second would make ~9 here; backing off 1, 2, 4 s
        // (±20 %) makes at most 4 (at about 0, 1, 3 and 7 s).
        let err = run.stderr();
        assert!(
            (2..=5).contains(&times.len()),
            "{} attempts in 9 s:\n{err}",
            times.len()
        );
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[1] > g[0]),
            "attempts spaced increasingly: {gaps:?}"
        );
        // One warning for the outage, not one per attempt.
        assert_eq!(count(&err, "broker unreachable"), 1, "{err}");
    }
}

#[test]
fn r9_sparkplug_connects_over_tls_with_credentials_through_an_mqtts_override() {
    use prost::Message as _;
    use twin::sources::sparkplug::proto::{Metric, MetricValue, Payload, datatype};

    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let d = dir.path().display();
    let pw = dir.path().join("passwd");
    let mut cmd = Command::new(tool("mosquitto_passwd"));
    cmd.arg("-c").arg("-b").arg(&pw).args(["twin", "s3cret"]);
    assert!(run_bounded(cmd, Duration::from_secs(10)).status.success());
    // TLS with client certificates from our CA, and a login.
    let broker = Mosquitto::start(
        dir.path(),
        free_port(),
        &dir.path().join("s"),
        &format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\nallow_anonymous false\npassword_file {}\n",
            pw.display()
        ),
    );
    let cfg = dir.path().join("sparkplug-tls.toml");
    std::fs::copy(root().join("tests/configs/sparkplug-tls.toml"), &cfg).expect("copy config");
    let mut cmd = twin_run(
        &cfg,
        "edge",
        &format!("mqtts://127.0.0.1:{}", broker.port),
        30,
    );
    cmd.env("TWIN_IT_MQTT_PASSWORD", "s3cret");
    let run = Proc::spawn(cmd);
    wait_log(
        &run,
        "Connected to Sparkplug broker",
        1,
        Duration::from_secs(10),
    );
    // Subscribed right after the connection.
    thread::sleep(Duration::from_millis(500));
    let birth = Payload {
        timestamp: None,
        metrics: vec![Metric {
            name: Some("Line/Speed".into()),
            alias: Some(1),
            timestamp: None,
            datatype: Some(datatype::DOUBLE),
            is_historical: None,
            is_transient: None,
            is_null: None,
            value: Some(MetricValue::Double(6.5)),
        }],
        seq: Some(0),
        uuid: None,
        body: None,
    }
    .encode_to_vec();
    let tls = [
        "--cafile",
        &format!("{d}/ca.pem"),
        "--cert",
        &format!("{d}/client.pem"),
        "--key",
        &format!("{d}/client.key"),
    ]
    .map(str::to_string);
    let args: Vec<&str> = tls.iter().map(String::as_str).chain(LOGIN).collect();
    publish(broker.port, "spBv1.0/Plant1/NBIRTH/Line1", &birth, &args);
    wait_value(&run, "line.speed", 6.5, Duration::from_secs(10));
}

#[test]
fn r9_a_bad_broker_override_on_a_sparkplug_source_says_what_is_wrong_with_it() {
    let cfg = root().join("tests/configs/sparkplug-interop.toml");
    let mut run = Proc::spawn(twin_run(&cfg, "edge", "ssl://127.0.0.1:8883", 5));
    let code = run.wait(Duration::from_secs(20));
    let err = run.stderr();
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("source \"edge\"")
            && err.contains("write \"mqtts://127.0.0.1:8883\"")
            && err.contains("mqtts://host:port"),
        "{err}"
    );
}

#[test]
fn r9_a_future_mqtt_timestamp_does_not_freeze_its_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(dir.path(), free_port(), &dir.path().join("s"), "");
    let cfg = dir.path().join("skew.toml");
    std::fs::write(
        &cfg,
        r#"
[plant]
name = "clock skew"
tick = "50ms"
stale_after = "2s"

[[sources.mqtt]]
name = "cm"
broker = "mqtt://127.0.0.1:1883"
client_id = "twin-it-skew"
  [[sources.mqtt.topics]]
  topic = "plant/filler/vibration_batch"
  tag = "filler.vibration"
  payload = "json_samples"
  field = "v"
  time_field = "ts"
  time_unit = "ms"

[[machines]]
id = "filler"
kind = "filler"
tags = { vibration = "filler.vibration" }
"#,
    )
    .expect("write config");
    let mut run = Proc::spawn(twin_run(
        &cfg,
        "cm",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        60,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));
    let topic = "plant/filler/vibration_batch";
    let now_ms = || twin::wallclock::now_ns() / 1_000_000;

    // A day ahead: kept, but uncertain, at its arrival time.
    let ahead = now_ms() + 86_400_000;
    publish(
        broker.port,
        topic,
        format!(r#"[{{"ts": {ahead}, "v": 9.5}}]"#).as_bytes(),
        &[],
    );
    let skewed = |l: &[String]| {
        tag_events(&events(l), "filler.vibration").iter().any(|e| {
            e["value"] == 9.5 && e["quality"] == "uncertain" && e["reason"] == "clock_skew"
        })
    };
    assert!(
        run.wait_for(Duration::from_secs(10), skewed),
        "no uncertain clock_skew event:\n{}",
        run.stderr()
    );
    let ev = events(&run.lines());
    let e = *tag_events(&ev, "filler.vibration")
        .last()
        .expect("an event");
    let src = humantime::parse_rfc3339(e["src_t"].as_str().expect("src_t"))
        .expect("rfc3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("epoch")
        .as_millis() as i64;
    assert!(src <= now_ms() && src <= t_ms(e), "src_t is bounded: {e}");

    // Honest samples after it: the tag follows them. An honest clock
    // stamps them after the skewed sample's arrival (its bounded `src`); a
    // fixed "now - 20 ms" could fall before that arrival when the event is
    // seen within 20 ms of it, and be dropped, rightly, as out of order.
    for v in [2.5, 3.5] {
        publish(
            broker.port,
            topic,
            format!(r#"[{{"ts": {}, "v": {v}}}]"#, (now_ms() - 20).max(src + 1)).as_bytes(),
            &[],
        );
        wait_value(&run, "filler.vibration", v, Duration::from_secs(10));
    }
    // And it still goes stale once they stop (stale_after 2 s).
    let stale = |l: &[String]| {
        tag_events(&events(l), "filler.vibration")
            .last()
            .is_some_and(|e| e["quality"] == "stale" && e["value"] == 3.5)
    };
    assert!(
        run.wait_for(Duration::from_secs(15), stale),
        "never went stale:\n{}",
        run.stderr()
    );

    run.terminate();
    assert_eq!(
        run.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        run.stderr()
    );
    let err = run.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("max_clock_skew") && l.contains(topic) && l.contains("source=cm")),
        "a warning names the source and topic:\n{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("Source health at shutdown")
            && l.contains("source=cm")
            && l.contains("clock_skew=1")),
        "the shutdown summary counts it:\n{err}"
    );
}

/// A twin reading the filler's temperature from `plant/filler/temperature`
/// on a mosquitto of its own, the topic's payload as `payload` (TOML lines
/// of the topic table) says.
fn temperature_run(dir: &Path, name: &str, payload: &str) -> (Mosquitto, Proc) {
    let broker = Mosquitto::start(dir, free_port(), &dir.join("s"), "");
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"
[plant]
name = "{name}"
tick = "50ms"
stale_after = "1h"

[[sources.mqtt]]
name = "cm"
broker = "mqtt://127.0.0.1:1883"
client_id = "twin-it-{name}"
  [[sources.mqtt.topics]]
  topic = "plant/filler/temperature"
  tag = "filler.temperature"
{payload}
[[machines]]
id = "filler"
kind = "filler"
tags = {{ temperature = "filler.temperature" }}
"#
        ),
    )
    .expect("write config");
    let run = Proc::spawn(twin_run(
        &cfg,
        "cm",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        60,
    ));
    wait_log(&run, SUBSCRIBED, 1, Duration::from_secs(10));
    (broker, run)
}

/// Publishes `body` and waits for the temperature tag to turn bad with
/// `reason` and no value; the message says what did not happen.
fn publish_and_expect_bad(broker: &Mosquitto, run: &Proc, body: &[u8], reason: &str) {
    let from = run.lines().len();
    publish(broker.port, "plant/filler/temperature", body, &[]);
    let bad = |l: &[String]| {
        tag_events(&events(&l[from.min(l.len())..]), "filler.temperature")
            .iter()
            .any(|e| e["quality"] == "bad" && e["reason"] == reason && e["value"].is_null())
    };
    assert!(
        run.wait_for(Duration::from_secs(10), bad),
        "{}: the tag did not turn bad ({reason}):\n{}",
        String::from_utf8_lossy(body),
        run.stderr()
    );
}

/// A sensor that publishes `NaN` (or `inf`) says it has no valid reading:
/// its tag turns bad with reason `non_finite`, as for a Modbus float
/// register holding NaN. The payload used to be dropped as "not a number",
/// the tag staying good at its last value until `stale_after`.
#[test]
fn r_hostile_an_mqtt_nan_makes_its_tag_bad_not_stuck_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, run) = temperature_run(dir.path(), "nan", "");
    for (n, body) in ["NaN", "inf"].iter().enumerate() {
        let good = 40.0 + n as f64;
        publish(
            broker.port,
            "plant/filler/temperature",
            good.to_string().as_bytes(),
            &[],
        );
        wait_value(&run, "filler.temperature", good, Duration::from_secs(10));
        publish_and_expect_bad(&broker, &run, body.as_bytes(), "non_finite");
    }
}

/// A JSON payload whose field is `null` says the publisher has no valid
/// reading: the tag turns bad (`null_value`, as a Sparkplug metric marked
/// null). It used to be dropped as the wrong type, the tag staying good at
/// its last value until `stale_after`.
#[test]
fn r_hostile_an_mqtt_json_null_makes_its_tag_bad_not_stuck_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = "  payload = \"json\"\n  field = \"v\"\n";
    let (broker, run) = temperature_run(dir.path(), "null", json);
    let topic = "plant/filler/temperature";
    publish(broker.port, topic, br#"{"v": 40.5}"#, &[]);
    wait_value(&run, "filler.temperature", 40.5, Duration::from_secs(10));
    publish_and_expect_bad(&broker, &run, br#"{"v": null}"#, "null_value");
    // A good value after it makes the tag good again.
    publish(broker.port, topic, br#"{"v": 41}"#, &[]);
    wait_value(&run, "filler.temperature", 41.0, Duration::from_secs(10));
}

/// Python's `json.dumps` writes NaN as a bare `NaN` (not JSON): such a
/// payload makes its tag bad (`non_finite`), as a number payload `NaN`
/// does. It used to be dropped as malformed, the tag staying good at its
/// last value until `stale_after`.
#[test]
fn r_hostile_an_mqtt_json_nan_as_python_writes_it_makes_its_tag_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = "  payload = \"json\"\n  field = \"v\"\n";
    let (broker, run) = temperature_run(dir.path(), "pynan", json);
    publish(
        broker.port,
        "plant/filler/temperature",
        br#"{"v": 40.5}"#,
        &[],
    );
    wait_value(&run, "filler.temperature", 40.5, Duration::from_secs(10));
    publish_and_expect_bad(&broker, &run, br#"{"v": NaN}"#, "non_finite");
}
