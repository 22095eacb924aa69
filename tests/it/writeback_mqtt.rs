//! Guarded write-back over MQTT and Sparkplug B end to end (issue 12): the
//! library's live run (`runtime::run_live`) with an audit log and operator
//! commands, against the embedded rumqttd broker on 127.0.0.1 (port 0).
//! The device is a test client in this process: an MQTT device that takes
//! JSON commands and publishes its state, or a Sparkplug edge node that
//! births metrics (with and without aliases) and takes NCMD/DCMD. What it
//! received must be exactly what the audit log says was written.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use twin::guard::audit::{AuditReader, Decision, Entry};
use twin::runtime::control::{self, ControlOp, ControlRequest, ControlTx};
use twin::runtime::{RunOptions, run_live};
use twin::sources::health::HealthBoard;
use twin::sources::sparkplug::proto::{Metric, MetricValue, Payload, datatype};

use crate::util::{run_ok, twin};

fn broker() -> SocketAddr {
    twin::broker::start_embedded("127.0.0.1:0".parse().expect("address")).expect("broker")
}

async fn ask(tx: &ControlTx, op: ControlOp) -> serde_json::Value {
    let (reply, rx) = tokio::sync::oneshot::channel();
    tx.send(ControlRequest {
        op,
        operator: "ana".into(),
        reply,
    })
    .await
    .expect("the run takes requests");
    rx.await.expect("the run answers")
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn up(h: &HealthBoard, name: &str) -> bool {
    h.snapshot().iter().any(|(n, s)| n == name && s.up)
}

fn entries(path: &Path) -> Vec<Entry> {
    let mut r = AuditReader::open(path).expect("open audit log");
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().expect("a valid entry") {
        out.push(e);
    }
    out
}

fn audit_has(path: &Path, what: &str, n: usize) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.matches(what).count() >= n)
}

/// Propose `value` for `tag` and approve it once it is pending: the
/// operator's path to a write. Returns the proposal id.
async fn propose_and_approve(tx: &ControlTx, tag: &str, value: f64) -> u64 {
    propose_and_approve_in(tx, tag, value, None).await
}

/// [`propose_and_approve`], showing the audit log `audit` if it fails.
async fn propose_and_approve_in(
    tx: &ControlTx,
    tag: &str,
    value: f64,
    audit: Option<&Path>,
) -> u64 {
    let r = ask(
        tx,
        ControlOp::Propose {
            tag: tag.into(),
            value,
        },
    )
    .await;
    let id = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    for _ in 0..200 {
        if ask(tx, ControlOp::Approve { id }).await["ok"] == true {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "proposal {id} for {tag} never pending: {}",
        audit
            .map(|a| std::fs::read_to_string(a).unwrap_or_default())
            .unwrap_or_default()
    );
}

/// A live run of `text` with an audit log and the control channel.
struct Run {
    tx: ControlTx,
    health: HealthBoard,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<twin::runtime::RunSummary, twin::runtime::RunError>>,
    audit: std::path::PathBuf,
}

impl Run {
    fn start(dir: &Path, text: &str) -> Run {
        let cfg_path = dir.join("plant.toml");
        std::fs::write(&cfg_path, text).expect("write config");
        let cfg = twin::config::load_str(&cfg_path, text)
            .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()));
        let audit = dir.join("audit.jsonl");
        let (tx, rx) = control::channel();
        let health = HealthBoard::default();
        let mut opts = RunOptions::new(None);
        opts.audit = Some(audit.clone());
        opts.control = Some(rx);
        opts.health = health.clone();
        let stop = CancellationToken::new();
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move { run_live(&cfg, &Default::default(), opts, stop).await })
        };
        Run {
            tx,
            health,
            stop,
            task,
            audit,
        }
    }

    async fn finish(self) -> Vec<Entry> {
        self.stop.cancel();
        self.task.await.expect("run task").expect("run ok");
        run_ok(twin().args(["audit", "verify"]).arg(&self.audit));
        entries(&self.audit)
    }
}

/// One command as the device got it.
#[derive(Debug, Clone)]
struct Got {
    topic: String,
    qos: QoS,
    retain: bool,
    json: serde_json::Value,
}

/// How the device answers a command on its state topic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Echo {
    /// The value it was told.
    Same,
    /// Another value (a PLC that clamps or ignores it).
    Off(f64),
}

/// An MQTT device: publishes its state on `plant/oven/temp` (raw, the
/// twin scales by 0.1) every 100 ms, takes commands on
/// `plant/oven/temp/set` and answers them as `echo` says.
struct Device {
    got: Arc<Mutex<Vec<Got>>>,
    echo: Arc<Mutex<Echo>>,
}

impl Device {
    async fn start(broker: SocketAddr, stop: &CancellationToken) -> Device {
        let mut opts = MqttOptions::new("it-device", broker.ip().to_string(), broker.port());
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let got = Arc::new(Mutex::new(Vec::new()));
        let echo = Arc::new(Mutex::new(Echo::Same));
        let state = Arc::new(Mutex::new(1000.0f64));
        let subscribed = Arc::new(AtomicBool::new(false));
        {
            let (got, echo, state, client, subscribed, stop) = (
                got.clone(),
                echo.clone(),
                state.clone(),
                client.clone(),
                subscribed.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let ev = tokio::select! {
                        _ = stop.cancelled() => return,
                        ev = eventloop.poll() => ev,
                    };
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client.try_subscribe("plant/oven/temp/set", QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            subscribed.store(true, Ordering::Release);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let json: serde_json::Value =
                                serde_json::from_slice(&p.payload).unwrap_or_default();
                            let v = json["value"].as_f64().unwrap_or(f64::NAN);
                            got.lock().expect("lock").push(Got {
                                topic: p.topic.clone(),
                                qos: p.qos,
                                retain: p.retain,
                                json,
                            });
                            let now = match *echo.lock().expect("lock") {
                                Echo::Same => v,
                                Echo::Off(d) => v + d,
                            };
                            *state.lock().expect("lock") = now;
                            let _ = client.try_publish(
                                "plant/oven/temp",
                                QoS::AtLeastOnce,
                                false,
                                now.to_string(),
                            );
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            });
        }
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let v = *state.lock().expect("lock");
                    let _ = client.try_publish(
                        "plant/oven/temp",
                        QoS::AtMostOnce,
                        false,
                        v.to_string(),
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            });
        }
        until("the device to subscribe", || {
            subscribed.load(Ordering::Acquire)
        })
        .await;
        Device { got, echo }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }
}

/// One MQTT setpoint (advisory: an operator proposes and approves), read
/// as raw tenths of a degree, written as a JSON command.
fn mqtt_config(broker: SocketAddr) -> String {
    format!(
        r#"
[plant]
name = "writeback-mqtt"
tick = "50ms"
stale_after = "60s"

[[sources.mqtt]]
name = "plc"
broker = "mqtt://{broker}"
  [[sources.mqtt.topics]]
  topic = "plant/oven/temp"
  tag = "oven.temp"
  scale = 0.1

[[setpoints]]
tag = "oven.temp"
min = 0
max = 300
max_step = 100
mode = "advisory"
command_topic = "plant/oven/temp/set"
readback_timeout = "1s"
readback_tolerance = 0.01
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_an_mqtt_setpoint_is_one_json_command_at_qos1_read_back_through_its_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let stop = CancellationToken::new();
    let device = Device::start(broker, &stop).await;
    let run = Run::start(dir.path(), &mqtt_config(broker));
    until("the MQTT source to come up", || up(&run.health, "plc")).await;
    // A few state messages in: the tag is good.
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Written, acknowledged, and read back through the tag.
    let first = propose_and_approve(&run.tx, "oven.temp", 150.0).await;
    until("the device to get the command", || device.got().len() == 1).await;
    until("the read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 1)
    })
    .await;

    // A device that takes another value: no match within the timeout, an
    // alarm, and the setpoint locked.
    *device.echo.lock().expect("lock") = Echo::Off(-20.0);
    let second = propose_and_approve(&run.tx, "oven.temp", 160.0).await;
    until("the lock", || audit_has(&run.audit, "\"locked\"", 1)).await;
    let listed = ask(&run.tx, ControlOp::Pending).await;
    assert_eq!(listed["locked"][0]["tag"], "oven.temp", "{listed}");
    // Locked: the next proposal is blocked, nothing is sent.
    let r = ask(
        &run.tx,
        ControlOp::Propose {
            tag: "oven.temp".into(),
            value: 170.0,
        },
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    until("the block", || audit_has(&run.audit, "\"locked\"", 2)).await;
    let log = run.finish().await;
    stop.cancel();

    let got = device.got();
    assert_eq!(got.len(), 2, "one command per approved write: {got:#?}");
    for (g, (value, proposal)) in got.iter().zip([(1500.0, first), (1600.0, second)]) {
        assert_eq!(g.topic, "plant/oven/temp/set");
        assert_eq!(g.qos, QoS::AtLeastOnce, "published at QoS 1");
        assert!(!g.retain, "a command is never retained");
        // In the device's units: the tag's scale undone.
        assert_eq!(g.json["value"], value, "{}", g.json);
        assert_eq!(g.json["setpoint"], "oven.temp");
        assert_eq!(g.json["proposal"], proposal);
        assert!(g.json["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(g.json["ts"].as_i64().is_some_and(|t| t > 1_600_000_000_000));
    }
    let decided = |d: Decision| log.iter().filter(|e| e.decision == d).collect::<Vec<_>>();
    let written = decided(Decision::Written);
    assert_eq!(
        written
            .iter()
            .map(|e| e.written.map(|n| n.0))
            .collect::<Vec<_>>(),
        [Some(150.0), Some(160.0)],
        "{log:#?}"
    );
    // The command carries the decision's time, as the audit log does,
    // and distinct intent ids.
    for (g, w) in got.iter().zip(&written) {
        assert_eq!(
            crate::util::time_ms(&g.json["time"]),
            crate::util::time_ms(&serde_json::json!(w.t)),
            "{log:#?}"
        );
    }
    assert_ne!(got[0].json["intent"], got[1].json["intent"]);
    assert!(got[0].json["intent"].is_u64());
    assert_eq!(decided(Decision::ReadbackOk).len(), 1, "{log:#?}");
    let mismatch = decided(Decision::ReadbackMismatch);
    assert_eq!(mismatch.len(), 1, "{log:#?}");
    assert_eq!(mismatch[0].rule.as_deref(), Some("readback"));
    assert!(
        mismatch[0].reason.contains("last read 158"),
        "{}",
        mismatch[0].reason
    );
    assert_eq!(decided(Decision::Locked).len(), 1, "{log:#?}");
    let blocked = decided(Decision::Blocked);
    assert!(
        blocked
            .iter()
            .any(|e| e.rule.as_deref() == Some("locked") && e.requested.map(|n| n.0) == Some(170.0)),
        "{log:#?}"
    );
}

/// A TCP relay in front of the broker that can be cut: every connection
/// through it dropped, and new ones refused, until it is restored. The
/// broker itself (rumqttd, embedded) cannot be stopped, so this is "the
/// broker is down" as the twin sees it.
#[derive(Clone)]
struct Relay {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Mutex<CancellationToken>>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay = Relay {
            addr: l.local_addr().expect("address"),
            up: Arc::new(AtomicBool::new(true)),
            cut: Arc::new(Mutex::new(CancellationToken::new())),
        };
        let r = relay.clone();
        tokio::spawn(async move {
            while let Ok((mut a, _)) = l.accept().await {
                if !r.up.load(Ordering::Acquire) {
                    continue;
                }
                let cut = r.cut.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut b) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                    }
                });
            }
        });
        relay
    }

    fn down(&self) {
        self.up.store(false, Ordering::Release);
        let mut c = self.cut.lock().expect("lock");
        c.cancel();
        *c = CancellationToken::new();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::Release);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_broker_down_nothing_is_written_and_nothing_old_after_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let stop = CancellationToken::new();
    // The device stays connected to the broker; only the twin's path to it
    // goes down.
    let device = Device::start(broker, &stop).await;
    let relay = Relay::start(broker).await;
    let run = Run::start(dir.path(), &mqtt_config(relay.addr));
    until("the MQTT source to come up", || up(&run.health, "plc")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Pending when the broker goes away: it expires, never written.
    let r = ask(
        &run.tx,
        ControlOp::Propose {
            tag: "oven.temp".into(),
            value: 120.0,
        },
    )
    .await;
    let old = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    let mut pending = false;
    for _ in 0..200 {
        let listed = ask(&run.tx, ControlOp::Pending).await;
        if listed["pending"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["id"] == old))
        {
            pending = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pending, "proposal {old} never pending");
    relay.down();
    until("the MQTT source to go down", || !up(&run.health, "plc")).await;
    until("the pending proposal to expire", || {
        audit_has(&run.audit, "\"expired\"", 1)
    })
    .await;
    // Proposed while down: blocked (the tag stays good for its 60 s, so
    // it is the link's own rule that holds it).
    let r = ask(
        &run.tx,
        ControlOp::Propose {
            tag: "oven.temp".into(),
            value: 130.0,
        },
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    until("the block", || audit_has(&run.audit, "\"link_down\"", 1)).await;

    relay.restore();
    until("the MQTT source to come back", || up(&run.health, "plc")).await;
    // The old proposal is gone; approving it is refused.
    let r = ask(&run.tx, ControlOp::Approve { id: old }).await;
    assert_eq!(r["ok"], false, "{r}");
    // Time for anything old to arrive, if it were ever sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(device.got().is_empty(), "{:#?}", device.got());

    // The command connection is back too: a new write goes out, once.
    propose_and_approve(&run.tx, "oven.temp", 140.0).await;
    until("the device to get the new command", || {
        !device.got().is_empty()
    })
    .await;
    until("the read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 1)
    })
    .await;
    let log = run.finish().await;
    stop.cancel();

    let got = device.got();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].json["value"], 1400.0);
    let written: Vec<f64> = log
        .iter()
        .filter(|e| e.decision == Decision::Written)
        .filter_map(|e| e.written.map(|n| n.0))
        .collect();
    assert_eq!(written, [140.0], "{log:#?}");
    let blocked = log
        .iter()
        .find(|e| e.decision == Decision::Blocked && e.requested.map(|n| n.0) == Some(130.0))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(blocked.rule.as_deref(), Some("link_down"));
}

// ---------------------------------------------------------------- Sparkplug

const GROUP: &str = "G1";

fn metric(name: Option<&str>, alias: Option<u64>, dt: u32, v: MetricValue) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias,
        timestamp: None,
        datatype: Some(dt),
        is_historical: None,
        is_transient: None,
        is_null: None,
        value: Some(v),
    }
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        // Unstamped: the twin takes the receive time.
        timestamp: None,
        metrics,
        seq,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

/// A command as the edge node got it: topic and its one metric.
#[derive(Debug, Clone)]
struct Cmd {
    topic: String,
    qos: QoS,
    metric: Metric,
}

/// A Sparkplug edge node `n1` with device `d1`, on its own rumqttc client:
/// births `Speed SP` (Float, alias 4) and `Rate` (Double) on the node,
/// `Temp SP` (Int16, no alias) on the device; echoes every command it gets
/// back as data, so the twin's read-back tags follow.
struct Edge {
    client: AsyncClient,
    got: Arc<Mutex<Vec<Cmd>>>,
    seq: Arc<Mutex<u64>>,
}

impl Edge {
    async fn start(broker: SocketAddr, stop: &CancellationToken) -> Edge {
        let mut opts = MqttOptions::new("it-edge-n1", broker.ip().to_string(), broker.port());
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let got = Arc::new(Mutex::new(Vec::new()));
        let seq = Arc::new(Mutex::new(0u64));
        let subscribed = Arc::new(AtomicBool::new(false));
        let edge = Edge {
            client: client.clone(),
            got: got.clone(),
            seq: seq.clone(),
        };
        let stop = stop.clone();
        let sub = subscribed.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Two filters that do not overlap: a broker may
                        // deliver a message once per matching filter.
                        let _ = client.try_subscribe_many([
                            SubscribeFilter::new(
                                format!("spBv1.0/{GROUP}/NCMD/n1"),
                                QoS::AtLeastOnce,
                            ),
                            SubscribeFilter::new(
                                format!("spBv1.0/{GROUP}/DCMD/n1/#"),
                                QoS::AtLeastOnce,
                            ),
                        ]);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => sub.store(true, Ordering::Release),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if !(p.topic.contains("/NCMD/") || p.topic.contains("/DCMD/")) {
                            continue;
                        }
                        let Ok(pl) = Payload::decode(p.payload.as_ref()) else {
                            continue;
                        };
                        for m in pl.metrics {
                            got.lock().expect("lock").push(Cmd {
                                topic: p.topic.clone(),
                                qos: p.qos,
                                metric: m.clone(),
                            });
                            // Echo as data: the node's metrics by alias or
                            // name as the command named them.
                            let data = if p.topic.contains("/DCMD/") {
                                format!("spBv1.0/{GROUP}/DDATA/n1/d1")
                            } else {
                                format!("spBv1.0/{GROUP}/NDATA/n1")
                            };
                            let s = {
                                let mut s = seq.lock().expect("lock");
                                *s = (*s + 1) % 256;
                                *s
                            };
                            let echo = Metric {
                                timestamp: None,
                                ..m
                            };
                            let _ = client.try_publish(
                                data,
                                QoS::AtLeastOnce,
                                false,
                                payload(Some(s), vec![echo]),
                            );
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        until("the edge node to subscribe", || {
            subscribed.load(Ordering::Acquire)
        })
        .await;
        edge
    }

    async fn send(&self, kind: &str, device: bool, metrics: Vec<Metric>) {
        let s = {
            let mut s = self.seq.lock().expect("lock");
            if kind == "NBIRTH" {
                *s = 0;
            } else {
                *s = (*s + 1) % 256;
            }
            *s
        };
        let topic = if device {
            format!("spBv1.0/{GROUP}/{kind}/n1/d1")
        } else {
            format!("spBv1.0/{GROUP}/{kind}/n1")
        };
        let seq = (kind != "NDEATH").then_some(s);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload(seq, metrics))
            .await
            .expect("publish");
    }

    /// NBIRTH (bdSeq 1) with `node` metrics, then DBIRTH of `d1`.
    async fn birth(&self, node: Vec<Metric>) {
        let mut m = vec![metric(
            Some("bdSeq"),
            None,
            datatype::INT64,
            MetricValue::Long(1),
        )];
        m.extend(node);
        self.send("NBIRTH", false, m).await;
        self.send(
            "DBIRTH",
            true,
            vec![metric(
                Some("Temp SP"),
                None,
                datatype::INT16,
                MetricValue::Int(1800),
            )],
        )
        .await;
    }

    fn got(&self) -> Vec<Cmd> {
        self.got.lock().expect("lock").clone()
    }
}

fn sparkplug_config(broker: SocketAddr) -> String {
    format!(
        r#"
[plant]
name = "writeback-sparkplug"
tick = "50ms"
stale_after = "60s"

[[sources.sparkplug]]
name = "edge"
broker = "mqtt://{broker}"
group = "{GROUP}"

  [[sources.sparkplug.metrics]]
  node = "n1"
  metric = "Speed SP"
  tag = "line.speed_sp"

  [[sources.sparkplug.metrics]]
  node = "n1"
  metric = "Rate"
  tag = "line.rate"

  [[sources.sparkplug.metrics]]
  node = "n1"
  device = "d1"
  metric = "Temp SP"
  tag = "oven.temp_sp"
  scale = 0.1

[[setpoints]]
tag = "line.speed_sp"
min = 0
max = 10
mode = "advisory"
readback_timeout = "1s"

[[setpoints]]
tag = "oven.temp_sp"
min = 0
max = 300
mode = "advisory"
readback_timeout = "1s"

# Written to a metric the node never births.
[[setpoints]]
tag = "line.rate"
min = 0
max = 100
mode = "advisory"
target = {{ metric = "Ghost SP" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_sparkplug_writes_go_to_born_metrics_only_with_their_alias_and_datatype() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let stop = CancellationToken::new();
    let run = Run::start(dir.path(), &sparkplug_config(broker));
    until("the Sparkplug source to come up", || {
        up(&run.health, "edge")
    })
    .await;
    // Subscribed before the births: they are not retained.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let edge = Edge::start(broker, &stop).await;
    edge.birth(vec![
        metric(
            Some("Speed SP"),
            Some(4),
            datatype::FLOAT,
            MetricValue::Float(1.5),
        ),
        metric(
            Some("Rate"),
            Some(5),
            datatype::DOUBLE,
            MetricValue::Double(10.0),
        ),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // NCMD by alias, as a Float.
    propose_and_approve_in(&run.tx, "line.speed_sp", 2.5, Some(&run.audit)).await;
    until("the NCMD", || edge.got().len() == 1).await;
    until("its read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 1)
    })
    .await;
    // DCMD by name, as an Int16 in the metric's raw units (scale 0.1).
    propose_and_approve(&run.tx, "oven.temp_sp", 185.0).await;
    until("the DCMD", || edge.got().len() == 2).await;
    until("its read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 2)
    })
    .await;
    // A metric never born: decided, then not sent, with the reason.
    propose_and_approve(&run.tx, "line.rate", 20.0).await;
    until("the not-sent block", || {
        audit_has(&run.audit, "\"not_sent\"", 1)
    })
    .await;

    // A new NBIRTH without `Speed SP`: it is no longer born.
    edge.birth(vec![metric(
        Some("Rate"),
        Some(5),
        datatype::DOUBLE,
        MetricValue::Double(10.0),
    )])
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    propose_and_approve(&run.tx, "line.speed_sp", 3.0).await;
    until("the second not-sent block", || {
        audit_has(&run.audit, "\"not_sent\"", 2)
    })
    .await;

    // NDEATH: nothing is written to the node or its device.
    edge.send(
        "NDEATH",
        false,
        vec![metric(
            Some("bdSeq"),
            None,
            datatype::INT64,
            MetricValue::Long(1),
        )],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ask(
        &run.tx,
        ControlOp::Propose {
            tag: "oven.temp_sp".into(),
            value: 190.0,
        },
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let _ = ask(
        &run.tx,
        ControlOp::Approve {
            id: r["id"].as_u64().unwrap_or(0),
        },
    )
    .await;
    // Its tags are stale now: the proposal is blocked before any write.
    until("the block after NDEATH", || {
        std::fs::read_to_string(&run.audit).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("\"blocked\"") && l.contains("190"))
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = run.finish().await;
    stop.cancel();

    let got = edge.got();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0].topic, format!("spBv1.0/{GROUP}/NCMD/n1"));
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(
        (got[0].metric.name.as_deref(), got[0].metric.alias),
        (None, Some(4))
    );
    assert_eq!(got[0].metric.datatype, Some(datatype::FLOAT));
    assert_eq!(got[0].metric.value, Some(MetricValue::Float(2.5)));
    assert_eq!(got[1].topic, format!("spBv1.0/{GROUP}/DCMD/n1/d1"));
    assert_eq!(
        (got[1].metric.name.as_deref(), got[1].metric.alias),
        (Some("Temp SP"), None)
    );
    assert_eq!(got[1].metric.datatype, Some(datatype::INT16));
    assert_eq!(got[1].metric.value, Some(MetricValue::Int(1850)));

    let not_sent: Vec<&Entry> = log
        .iter()
        .filter(|e| e.rule.as_deref() == Some("not_sent"))
        .collect();
    assert_eq!(not_sent.len(), 2, "{log:#?}");
    assert!(
        not_sent[0].reason.contains("\"Ghost SP\" was not born"),
        "{}",
        not_sent[0].reason
    );
    assert!(
        not_sent[1].reason.contains("\"Speed SP\" was not born")
            && not_sent[1].reason.contains("NBIRTH did not declare it"),
        "{}",
        not_sent[1].reason
    );
    let after_death = log
        .iter()
        .find(|e| e.decision == Decision::Blocked && e.requested.map(|n| n.0) == Some(190.0))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert!(
        matches!(
            after_death.rule.as_deref(),
            Some("input_quality" | "not_sent")
        ),
        "{after_death:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.decision == Decision::ReadbackOk)
            .count(),
        2,
        "{log:#?}"
    );
}

/// The pysparkplug edge node of tests/peers/sparkplug_cmd_edge.py, its
/// stdout lines kept. Killed on drop.
struct PyEdge {
    child: std::process::Child,
    out: Arc<Mutex<Vec<String>>>,
}

impl PyEdge {
    fn start(broker: SocketAddr) -> PyEdge {
        use std::io::BufRead;
        let python = crate::util::root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make test` (or `bash scripts/setup.sh`) to create the test venv",
            python.display()
        );
        let mut child = std::process::Command::new(python)
            .arg(crate::util::root().join("tests/peers/sparkplug_cmd_edge.py"))
            .arg(broker.ip().to_string())
            .arg(broker.port().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the pysparkplug edge node");
        let stdout = child.stdout.take().expect("stdout piped");
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().expect("lock").push(line);
            }
        });
        PyEdge { child, out }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|l| l == line)
    }
}

impl Drop for PyEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_interop_pysparkplug_takes_the_twins_ncmd_and_dcmd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let text = format!(
        r#"
[plant]
name = "writeback-pysparkplug"
tick = "50ms"
stale_after = "60s"

[[sources.sparkplug]]
name = "edge"
broker = "mqtt://{broker}"
group = "Plant1"

  [[sources.sparkplug.metrics]]
  node = "Line1"
  metric = "Speed SP"
  tag = "line.speed_sp"

  [[sources.sparkplug.metrics]]
  node = "Line1"
  device = "Filler"
  metric = "Temp SP"
  tag = "filler.temp_sp"
  scale = 0.1

[[setpoints]]
tag = "line.speed_sp"
min = 0
max = 10
mode = "advisory"
readback_timeout = "2s"

[[setpoints]]
tag = "filler.temp_sp"
min = 0
max = 300
mode = "advisory"
readback_timeout = "2s"
"#
    );
    let run = Run::start(dir.path(), &text);
    until("the Sparkplug source to come up", || {
        up(&run.health, "edge")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let edge = PyEdge::start(broker);
    until("the edge node to start", || edge.has("READY")).await;
    // Its births are in: both tags good.
    tokio::time::sleep(Duration::from_millis(500)).await;

    propose_and_approve_in(&run.tx, "line.speed_sp", 2.5, Some(&run.audit)).await;
    until("pysparkplug to decode the NCMD", || {
        edge.has("NCMD Speed SP FLOAT 2.5")
    })
    .await;
    until("its read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 1)
    })
    .await;
    propose_and_approve_in(&run.tx, "filler.temp_sp", 185.0, Some(&run.audit)).await;
    until("pysparkplug to decode the DCMD", || {
        edge.has("DCMD Temp SP INT16 1850")
    })
    .await;
    until("its read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 2)
    })
    .await;
    let log = run.finish().await;

    let cmds: Vec<String> = edge
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("NCMD") || l.starts_with("DCMD"))
        .collect();
    assert_eq!(
        cmds,
        ["NCMD Speed SP FLOAT 2.5", "DCMD Temp SP INT16 1850"],
        "one command per write"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.decision == Decision::Written)
            .count(),
        2,
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_sparkplug_births_are_forgotten_when_the_twin_reconnects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker();
    let stop = CancellationToken::new();
    let relay = Relay::start(broker).await;
    let text = sparkplug_config(relay.addr).replace(
        &format!("group = \"{GROUP}\""),
        &format!("group = \"{GROUP}\"\nrebirth = true"),
    );
    let run = Run::start(dir.path(), &text);
    until("the Sparkplug source to come up", || {
        up(&run.health, "edge")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The edge node stays connected to the broker; only the twin's path to
    // it goes down and comes back.
    let edge = Edge::start(broker, &stop).await;
    let speed_sp = || {
        metric(
            Some("Speed SP"),
            Some(4),
            datatype::FLOAT,
            MetricValue::Float(1.5),
        )
    };
    edge.birth(vec![speed_sp()]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.down();
    until("the Sparkplug source to go down", || {
        !up(&run.health, "edge")
    })
    .await;
    relay.restore();
    until("the Sparkplug source to come back", || {
        up(&run.health, "edge")
    })
    .await;
    // With `rebirth = true` the twin asks the node it writes to for a
    // rebirth at once; this edge node does not answer yet.
    until("the rebirth request", || !edge.got().is_empty()).await;

    // What was born before the outage is not trusted after it.
    propose_and_approve_in(&run.tx, "line.speed_sp", 2.5, Some(&run.audit)).await;
    until("the not-sent block", || {
        audit_has(&run.audit, "\"not_sent\"", 1)
    })
    .await;
    // A fresh birth, and the write goes out.
    edge.birth(vec![speed_sp()]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    propose_and_approve_in(&run.tx, "line.speed_sp", 3.0, Some(&run.audit)).await;
    until("the read-back", || {
        audit_has(&run.audit, "\"readback_ok\"", 1)
    })
    .await;
    let log = run.finish().await;
    stop.cancel();

    let got = edge.got();
    let names: Vec<(Option<&str>, Option<u64>)> = got
        .iter()
        .map(|c| (c.metric.name.as_deref(), c.metric.alias))
        .collect();
    assert_eq!(
        names,
        [(Some("Node Control/Rebirth"), None), (None, Some(4))],
        "{got:#?}"
    );
    assert_eq!(got[1].metric.value, Some(MetricValue::Float(3.0)));
    let not_sent = log
        .iter()
        .find(|e| e.rule.as_deref() == Some("not_sent"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(not_sent.requested.map(|n| n.0), Some(2.5));
    assert!(
        not_sent
            .reason
            .contains("has not been born since the twin connected"),
        "{}",
        not_sent.reason
    );
}
