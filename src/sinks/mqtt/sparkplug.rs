//! The twin as a Sparkplug B edge node (`[[sinks.sparkplug]]`), so that
//! Ignition-style SCADA hosts see each line as a device with the twin's
//! derived metrics.
//!
//! - Node `{edge_node}` in group `{group}`: NBIRTH with `bdSeq` and
//!   `Node Control/Rebirth`; NDEATH with the same `bdSeq` as the MQTT will
//!   (the broker sends it if the twin vanishes) and published before a
//!   clean disconnect.
//! - One device per line (its id as a topic level): DBIRTH with every
//!   metric, then DDATA with those that changed, once per tick that changed
//!   one. `seq` runs 0..=255 over NBIRTH, DBIRTH and DDATA, from 0 at each
//!   NBIRTH.
//! - Metrics per line: `wip`, `out`, `lost` (UInt64),
//!   `throughput_per_min` (Double), `line_good` (Boolean: the `line`
//!   event's quality), `residuals` (UInt64: residual events since the
//!   start), `jam` (Boolean: a jam is active), `slip/{conveyor}` (Double,
//!   null until estimated) and `risk/{machine}` (Double: the last fault or
//!   anomaly score of a model for that machine, null until one ran).
//! - A rebirth request (NCMD `Node Control/Rebirth` = true) republishes the
//!   births. Nothing else an NCMD says is acted on: the edge node publishes,
//!   it never writes to the plant.
//!
//! Data messages are state, not history: they are QoS 0, as Sparkplug asks,
//! and nothing is queued across an outage. The births on reconnect carry the
//! current values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::super::{Sink, SinkError, TickOutput};
use crate::config::upstream::{UpstreamSparkplug, topic_level};
use crate::config::{Broker, LoadedConfig, Task as ModelTask};
use crate::ml::events::MlEvent;
use crate::sources::backoff::Backoff;
use crate::sources::mqtt::connect::{self, ClientSpec, DISCONNECT_GRACE, Endpoint, SetupError};
use crate::sources::sparkplug::proto::{Metric, MetricValue, Payload, datatype};
use crate::twin::TwinEvent;
use crate::wallclock;

const NAMESPACE: &str = "spBv1.0";
const REBIRTH: &str = "Node Control/Rebirth";
const BD_SEQ: &str = "bdSeq";

/// One metric of a device, as last set.
#[derive(Debug, Clone)]
struct State {
    name: String,
    datatype: u32,
    value: Option<MetricValue>,
    t_ms: u64,
    dirty: bool,
}

/// A line, as a device.
#[derive(Debug, Clone)]
struct Device {
    id: String,
    metrics: Vec<State>,
}

// The fixed metrics' places in every device.
const WIP: usize = 0;
const OUT: usize = 1;
const LOST: usize = 2;
const THROUGHPUT: usize = 3;
const LINE_GOOD: usize = 4;
const RESIDUALS: usize = 5;
const JAM: usize = 6;

#[derive(Debug)]
struct Shared {
    devices: Mutex<Vec<Device>>,
    wake: Notify,
    closing: AtomicBool,
}

impl Shared {
    fn devices(&self) -> std::sync::MutexGuard<'_, Vec<Device>> {
        self.devices.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sink: turns each tick's events into the devices' metrics.
pub struct SparkplugNode {
    shared: Arc<Shared>,
    /// Line id → device index.
    lines: HashMap<String, usize>,
    /// (device, conveyor id) → metric index.
    slips: HashMap<(usize, String), usize>,
    /// Machine id → (device, metric index).
    risks: HashMap<String, (usize, usize)>,
}

fn metric(name: impl Into<String>, datatype: u32) -> State {
    State {
        name: name.into(),
        datatype,
        value: None,
        t_ms: 0,
        dirty: false,
    }
}

impl SparkplugNode {
    fn new(cfg: &LoadedConfig) -> Self {
        let (mut lines, mut slips, mut risks) = (HashMap::new(), HashMap::new(), HashMap::new());
        let mut devices = Vec::new();
        for (d, l) in cfg.config.lines.iter().enumerate() {
            let mut metrics = vec![
                metric("wip", datatype::UINT64),
                metric("out", datatype::UINT64),
                metric("lost", datatype::UINT64),
                metric("throughput_per_min", datatype::DOUBLE),
                metric("line_good", datatype::BOOLEAN),
                metric("residuals", datatype::UINT64),
                metric("jam", datatype::BOOLEAN),
            ];
            // Counted from the start, so known from the start.
            metrics[RESIDUALS].value = Some(MetricValue::Long(0));
            metrics[JAM].value = Some(MetricValue::Boolean(false));
            for c in &l.conveyors {
                slips.insert((d, c.id.value.clone()), metrics.len());
                metrics.push(metric(format!("slip/{}", c.id.value), datatype::DOUBLE));
            }
            for m in &l.machines {
                risks.entry(m.value.clone()).or_insert((d, metrics.len()));
                metrics.push(metric(format!("risk/{}", m.value), datatype::DOUBLE));
            }
            lines.insert(l.id.value.clone(), d);
            devices.push(Device {
                id: topic_level(&l.id.value),
                metrics,
            });
        }
        SparkplugNode {
            shared: Arc::new(Shared {
                devices: Mutex::new(devices),
                wake: Notify::new(),
                closing: AtomicBool::new(false),
            }),
            lines,
            slips,
            risks,
        }
    }

    fn apply(&self, devices: &mut [Device], ev: &TwinEvent) -> bool {
        let set = |devices: &mut [Device], d: usize, m: usize, v: MetricValue, t_ns: i64| {
            let Some(s) = devices.get_mut(d).and_then(|d| d.metrics.get_mut(m)) else {
                return false;
            };
            if s.value.as_ref() == Some(&v) {
                return false;
            }
            s.value = Some(v);
            s.t_ms = u64::try_from(t_ns / 1_000_000).unwrap_or(0);
            s.dirty = true;
            true
        };
        match ev {
            TwinEvent::Line(e) => {
                let Some(&d) = self.lines.get(&*e.line) else {
                    return false;
                };
                let mut changed = set(devices, d, WIP, MetricValue::Long(e.wip), e.t_ns);
                changed |= set(devices, d, OUT, MetricValue::Long(e.out), e.t_ns);
                changed |= set(devices, d, LOST, MetricValue::Long(e.lost), e.t_ns);
                changed |= set(
                    devices,
                    d,
                    THROUGHPUT,
                    MetricValue::Double(e.throughput_per_min),
                    e.t_ns,
                );
                changed |= set(
                    devices,
                    d,
                    LINE_GOOD,
                    MetricValue::Boolean(e.uncertain.is_none()),
                    e.t_ns,
                );
                for b in &e.belts {
                    if let Some(&m) = self.slips.get(&(d, b.conveyor.to_string())) {
                        changed |= set(devices, d, m, MetricValue::Double(b.slip), e.t_ns);
                    }
                }
                changed
            }
            TwinEvent::Residual(e) => {
                let Some(&d) = self.lines.get(&*e.line) else {
                    return false;
                };
                let n = match devices[d].metrics[RESIDUALS].value {
                    Some(MetricValue::Long(n)) => n,
                    _ => 0,
                };
                set(devices, d, RESIDUALS, MetricValue::Long(n + 1), e.t_ns)
            }
            TwinEvent::Jam(e) => match self.lines.get(&*e.line) {
                Some(&d) => set(
                    devices,
                    d,
                    JAM,
                    MetricValue::Boolean(e.state == "start"),
                    e.t_ns,
                ),
                None => false,
            },
            TwinEvent::Ml(MlEvent::Prediction(p))
                if matches!(p.task(), ModelTask::Fault | ModelTask::Anomaly) =>
            {
                match p.machine_name().and_then(|m| self.risks.get(m)) {
                    Some(&(d, m)) => set(devices, d, m, MetricValue::Double(p.score), p.t_ns()),
                    None => false,
                }
            }
            _ => false,
        }
    }
}

impl Sink for SparkplugNode {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        let changed = {
            let mut devices = self.shared.devices();
            let mut changed = false;
            for ev in out.events {
                changed |= self.apply(&mut devices, ev);
            }
            changed
        };
        if changed {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        Ok(())
    }
}

impl Drop for SparkplugNode {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// The node's topics.
struct Topics {
    group: String,
    node: String,
}

impl Topics {
    fn node(&self, kind: &str) -> String {
        format!("{NAMESPACE}/{}/{kind}/{}", self.group, self.node)
    }

    fn device(&self, kind: &str, device: &str) -> String {
        format!("{NAMESPACE}/{}/{kind}/{}/{device}", self.group, self.node)
    }
}

fn now_ms() -> u64 {
    u64::try_from(wallclock::system_now_ns() / 1_000_000).unwrap_or(0)
}

fn node_metric(name: &str, datatype: u32, value: MetricValue) -> Metric {
    Metric {
        name: Some(name.to_string()),
        datatype: Some(datatype),
        timestamp: Some(now_ms()),
        value: Some(value),
        ..Metric::default()
    }
}

fn wire(s: &State) -> Metric {
    Metric {
        name: Some(s.name.clone()),
        datatype: Some(s.datatype),
        timestamp: Some(if s.t_ms > 0 { s.t_ms } else { now_ms() }),
        is_null: s.value.is_none().then_some(true),
        value: s.value.clone(),
        ..Metric::default()
    }
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms()),
        metrics,
        seq,
        ..Payload::default()
    }
    .encode_to_vec()
}

/// What a connection's poller reports; the event loop is never cancelled
/// mid-poll (see `publisher`).
enum LinkEv {
    Up,
    Command(Vec<u8>),
    Disconnected,
    Down(String),
}

async fn poll_link(mut eventloop: rumqttc::EventLoop, tx: mpsc::Sender<LinkEv>) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEv::Up,
            Ok(Event::Incoming(Packet::Publish(p))) => LinkEv::Command(p.payload.to_vec()),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => LinkEv::Disconnected,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(LinkEv::Down(e.to_string())).await;
                return;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

/// Whether an NCMD payload asks for a rebirth.
fn asks_rebirth(bytes: &[u8]) -> bool {
    Payload::decode(bytes).is_ok_and(|p| {
        p.metrics.iter().any(|m| {
            m.name.as_deref() == Some(REBIRTH) && m.value == Some(MetricValue::Boolean(true))
        })
    })
}

struct NodeTask {
    name: String,
    broker: String,
    options: MqttOptions,
    topics: Topics,
    shared: Arc<Shared>,
}

impl NodeTask {
    async fn run(self) {
        let mut backoff = Backoff::new(&self.name, Duration::from_secs(1), Duration::from_secs(15));
        // bdSeq: one per connection, in the will and in the NBIRTH that
        // follows, so a host pairs a death with its birth.
        let mut bd_seq: u64 = 0;
        let mut warned = false;
        loop {
            let death = payload(
                None,
                vec![node_metric(
                    BD_SEQ,
                    datatype::UINT64,
                    MetricValue::Long(bd_seq),
                )],
            );
            let mut opts = self.options.clone();
            opts.set_last_will(LastWill::new(
                self.topics.node("NDEATH"),
                death.clone(),
                QoS::AtLeastOnce,
                false,
            ));
            let (client, eventloop) = AsyncClient::new(opts, 64);
            let (tx, mut rx) = mpsc::channel(64);
            let poller = tokio::spawn(poll_link(eventloop, tx));
            let mut seq: Option<u8> = None;
            let failure = loop {
                if self.shared.closing.load(Ordering::Acquire) {
                    if seq.is_some() {
                        self.data(&client, &mut seq);
                        // A clean disconnect sends no will: say it here.
                        let _ = client.try_publish(
                            self.topics.node("NDEATH"),
                            QoS::AtLeastOnce,
                            false,
                            death,
                        );
                        let _ = client.try_disconnect();
                        let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
                            while let Some(ev) = rx.recv().await {
                                if matches!(ev, LinkEv::Disconnected | LinkEv::Down(_)) {
                                    return;
                                }
                            }
                        })
                        .await;
                    }
                    poller.abort();
                    info!(sink = %self.name, "Sparkplug edge node stopped.");
                    return;
                }
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = self.shared.wake.notified() => {
                        if seq.is_some() {
                            self.data(&client, &mut seq);
                        }
                        continue;
                    }
                };
                match ev {
                    Some(LinkEv::Up) => {
                        let _ = client.try_subscribe(self.topics.node("NCMD"), QoS::AtLeastOnce);
                        info!(sink = %self.name, broker = %self.broker, node = %self.topics.node("NBIRTH"), bd_seq,
                            "Sparkplug edge node is up; publishing its births.");
                        self.births(&client, &mut seq, bd_seq);
                        warned = false;
                        backoff.reset();
                    }
                    Some(LinkEv::Command(bytes)) => {
                        if seq.is_some() && asks_rebirth(&bytes) {
                            info!(sink = %self.name, "Sparkplug rebirth requested; publishing the births again.");
                            self.births(&client, &mut seq, bd_seq);
                        }
                    }
                    Some(LinkEv::Disconnected) => {}
                    Some(LinkEv::Down(e)) => break e,
                    None => break "the connection task ended".to_string(),
                }
            };
            drop(client);
            poller.abort();
            bd_seq = (bd_seq + 1) % 256;
            let wait = backoff.step();
            if seq.is_some() || !warned {
                warn!(sink = %self.name, broker = %self.broker, error = %failure, retry_in = ?wait,
                    "Sparkplug broker unreachable; retrying (the births on reconnect carry the current values).");
                warned = true;
            } else {
                debug!(sink = %self.name, error = %failure, retry_in = ?wait, "Sparkplug reconnect failed.");
            }
            let retry = tokio::time::sleep(wait);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = &mut retry => break,
                    _ = self.shared.wake.notified() => {
                        if self.shared.closing.load(Ordering::Acquire) {
                            info!(sink = %self.name, "Sparkplug edge node stopped.");
                            return;
                        }
                    }
                }
            }
        }
    }

    fn next(seq: &mut Option<u8>) -> u64 {
        let s = seq.map_or(0, |s| s.wrapping_add(1));
        *seq = Some(s);
        u64::from(s)
    }

    /// NBIRTH (seq 0) and every DBIRTH, with every metric's current value.
    fn births(&self, client: &AsyncClient, seq: &mut Option<u8>, bd_seq: u64) {
        *seq = None;
        let nbirth = payload(
            Some(Self::next(seq)),
            vec![
                node_metric(BD_SEQ, datatype::UINT64, MetricValue::Long(bd_seq)),
                node_metric(REBIRTH, datatype::BOOLEAN, MetricValue::Boolean(false)),
            ],
        );
        self.send(client, self.topics.node("NBIRTH"), nbirth);
        let mut devices = self.shared.devices();
        for d in devices.iter_mut() {
            let metrics = d.metrics.iter().map(wire).collect();
            for m in &mut d.metrics {
                m.dirty = false;
            }
            let p = payload(Some(Self::next(seq)), metrics);
            self.send(client, self.topics.device("DBIRTH", &d.id), p);
        }
    }

    /// A DDATA per device with the metrics changed since it last said.
    fn data(&self, client: &AsyncClient, seq: &mut Option<u8>) {
        let mut devices = self.shared.devices();
        for d in devices.iter_mut() {
            let changed: Vec<Metric> = d.metrics.iter().filter(|m| m.dirty).map(wire).collect();
            if changed.is_empty() {
                continue;
            }
            for m in &mut d.metrics {
                m.dirty = false;
            }
            let p = payload(Some(Self::next(seq)), changed);
            self.send(client, self.topics.device("DDATA", &d.id), p);
        }
    }

    fn send(&self, client: &AsyncClient, topic: String, payload: Vec<u8>) {
        if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, payload) {
            debug!(sink = %self.name, error = %e, "Sparkplug publish not taken.");
        }
    }
}

/// Start the edge node `n` of `cfg`: its sink and its connection task.
/// Needs a tokio runtime.
pub fn start(
    cfg: &LoadedConfig,
    n: &UpstreamSparkplug,
    base_dir: &std::path::Path,
) -> Result<Option<(SparkplugNode, tokio::task::JoinHandle<()>)>, SetupError> {
    let Broker::Tcp { host, port } = &n.connection.broker.value else {
        return Ok(None);
    };
    let ep = Endpoint {
        host: host.clone(),
        port: *port,
        tls: n.connection.tls,
    };
    let spec = ClientSpec {
        kind: "Sparkplug edge node",
        name: &n.name.value,
        conn: &n.connection,
        // Sparkplug 3.0: edge nodes connect with a clean session.
        clean_session: true,
        manual_acks: false,
    };
    let options = connect::options(&spec, &ep, base_dir)?;
    let sink = SparkplugNode::new(cfg);
    let task = NodeTask {
        name: n.name.value.clone(),
        broker: ep.to_string(),
        options,
        topics: Topics {
            group: n.group.clone(),
            node: n.edge_node.clone(),
        },
        shared: sink.shared.clone(),
    };
    info!(sink = %n.name.value, broker = %ep, group = %n.group, edge_node = %n.edge_node,
        "Sparkplug edge node starting.");
    let handle = tokio::spawn(task.run());
    Ok(Some((sink, handle)))
}
