//! The upstream MQTT publisher (`[[sinks.mqtt]]`): the twin's own outputs,
//! sent to the plant's broker (or broker cluster) so that many twins, one
//! per line, feed one site (docs/deployment.md).
//!
//! Each event line of a tick (the same bytes `--events` writes, one line
//! per message, docs/events.md) goes to a topic per plant, line and machine
//! ([`topics`]), through a bounded queue of our own ([`queue`]) to the
//! connection task ([`publisher`]), which publishes at QoS 1 and forgets a
//! message only when the broker acknowledged it. The tick thread never
//! waits: it appends to the queue under a short lock, and a queue that is
//! full (a long broker outage) drops its oldest message, counted and
//! logged.
//!
//! [`sparkplug`] is the other way up: the twin as a Sparkplug B edge node
//! (`[[sinks.sparkplug]]`), a device per line with derived metrics, for
//! SCADA hosts.
//!
//! The connection is built by the sources' one options builder
//! (`sources::mqtt::connect::options`): same credentials from the
//! environment or a file, same TLS (rustls, ring), same client set-up.

pub mod publisher;
pub mod queue;
pub mod sparkplug;
pub mod topics;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::QoS;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{Sink, SinkError, TickOutput};
use crate::config::upstream::UpstreamMqtt;
use crate::config::{Broker, LoadedConfig};
use crate::sources::mqtt::connect::{self, ClientSpec, Endpoint, SetupError};
use publisher::Shared;
use queue::Msg;
use topics::Layout;

/// How often, at most, in tick time, a publisher warns that its queue
/// dropped messages.
const DROP_WARN_EVERY_NS: i64 = 10_000_000_000;

/// One publisher's sink: routes each tick's event lines into its queue.
pub struct MqttPublisher {
    name: String,
    layout: Layout,
    shared: Arc<Shared>,
    /// Scratch: the topics of one event.
    topics: Vec<Arc<str>>,
    /// Drops already warned about, and when the next warning may come.
    drops_told: u64,
    next_drop_warn_ns: i64,
}

/// A publisher's run totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublisherStats {
    /// Messages made from the twin's events.
    pub messages: u64,
    /// Acknowledged by the broker (QoS 1) or written to it (QoS 0).
    pub delivered: u64,
    /// Dropped because the queue was full (oldest first).
    pub dropped: u64,
    /// Held now: queued or awaiting the broker's acknowledgement.
    pub held: u64,
    /// Sent again after a connection broke before their acknowledgement.
    pub resent: u64,
    /// Connections the broker accepted.
    pub connects: u64,
}

impl MqttPublisher {
    /// A publisher for `up` whose connection task (not started here) shares
    /// `shared`.
    pub fn new(cfg: &LoadedConfig, up: &UpstreamMqtt, shared: Arc<Shared>) -> Self {
        MqttPublisher {
            name: up.name.value.clone(),
            layout: Layout::new(cfg, up),
            shared,
            topics: Vec::new(),
            drops_told: 0,
            next_drop_warn_ns: i64::MIN,
        }
    }

    pub fn stats(&self) -> PublisherStats {
        stats_of(&self.shared)
    }

    /// Queue the tick's event lines, each under its topics.
    fn publish(&mut self, out: &TickOutput<'_>) {
        if out.jsonl.is_empty() {
            return;
        }
        let mut q = self.shared.queue();
        let before = q.pushed();
        // One line per event, in order; lines past the events are the
        // `error` events the driver adds for an output that stopped.
        let lines = out.jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (i, line) in lines.enumerate() {
            self.topics.clear();
            match out.events.get(i) {
                Some(ev) => self.layout.route(ev, &mut self.topics),
                None => self.topics.extend(self.layout.error_topic()),
            }
            for topic in self.topics.drain(..) {
                q.push(Msg {
                    topic,
                    payload: line.to_vec(),
                });
            }
        }
        let (pushed, dropped, held) = (q.pushed() > before, q.dropped(), q.len());
        drop(q);
        if pushed {
            self.shared.wake.notify_one();
        }
        if dropped > self.drops_told && out.t_ns >= self.next_drop_warn_ns {
            warn!(sink = %self.name, dropped_total = dropped, dropped_now = dropped - self.drops_told,
                held, "Upstream MQTT queue is full: its oldest messages are being dropped. The broker is away or too slow; raise queue_capacity to ride out longer outages.");
            self.drops_told = dropped;
            self.next_drop_warn_ns = out.t_ns.saturating_add(DROP_WARN_EVERY_NS);
        }
    }
}

fn stats_of(shared: &Shared) -> PublisherStats {
    let (messages, dropped, held) = {
        let q = shared.queue();
        (q.pushed(), q.dropped(), q.len() as u64)
    };
    let s = &shared.stats;
    PublisherStats {
        messages,
        delivered: s.delivered.load(Ordering::Relaxed),
        dropped,
        held,
        resent: s.resent.load(Ordering::Relaxed),
        connects: s.connects.load(Ordering::Relaxed),
    }
}

impl Sink for MqttPublisher {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.publish(out);
        Ok(())
    }

    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.publish(out);
        Ok(())
    }

    /// The connection task sends what is held, for at most the drain
    /// timeout; [`Upstream::join`] waits for it.
    fn finish(&mut self) -> Result<(), SinkError> {
        self.shared.close();
        Ok(())
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        // A run that ends without `finish` (an error) still lets the task
        // drain and stop.
        self.shared.close();
    }
}

/// The publishers of this process, for `/metrics`: registered when they
/// start, gone once their run has dropped them.
static RUNNING: std::sync::Mutex<Vec<(String, std::sync::Weak<Shared>)>> =
    std::sync::Mutex::new(Vec::new());

/// Name and totals of every publisher of the process that is still
/// running, in start order.
pub fn running() -> Vec<(String, PublisherStats)> {
    let mut list = RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    list.retain(|(_, w)| w.strong_count() > 0);
    list.iter()
        .filter_map(|(n, w)| w.upgrade().map(|s| (n.clone(), stats_of(&s))))
        .collect()
}

/// The config's publishers, started: the sinks for the run, and their
/// connection tasks to wait for once it is over.
pub struct Upstream {
    pub sinks: Vec<MqttPublisher>,
    /// `[[sinks.sparkplug]]`.
    pub nodes: Vec<sparkplug::SparkplugNode>,
    tasks: Vec<(JoinHandle<()>, Duration)>,
}

/// Start a connection task for every `[[sinks.mqtt]]` and
/// `[[sinks.sparkplug]]` of `cfg`. Needs a
/// tokio runtime. Reads the secrets and TLS files the publishers name, so
/// a missing one stops the start, as for sources.
pub fn start(cfg: &LoadedConfig) -> Result<Upstream, SetupError> {
    let base_dir = crate::sources::mqtt::config_dir(cfg);
    let mut up = Upstream {
        sinks: Vec::new(),
        nodes: Vec::new(),
        tasks: Vec::new(),
    };
    for n in &cfg.config.sparkplug_nodes {
        if let Some((node, task)) = sparkplug::start(cfg, n, &base_dir)? {
            up.nodes.push(node);
            // It sends its NDEATH and disconnects at once when closed.
            up.tasks.push((task, Duration::ZERO));
        }
    }
    for u in &cfg.config.upstream {
        let Broker::Tcp { host, port } = &u.connection.broker.value else {
            // The config refuses an embedded broker for a publisher.
            continue;
        };
        let ep = Endpoint {
            host: host.clone(),
            port: *port,
            tls: u.connection.tls,
        };
        let spec = ClientSpec {
            kind: "upstream MQTT",
            name: &u.name.value,
            conn: &u.connection,
            // Nothing of ours needs to outlive a connection at the broker:
            // what was not acknowledged is still in our queue.
            clean_session: true,
            manual_acks: false,
        };
        let options = connect::options(&spec, &ep, &base_dir)?;
        let shared = Shared::new(u.queue_capacity);
        let task = publisher::Task {
            name: u.name.value.clone(),
            broker: ep.to_string(),
            options,
            qos: if u.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            drain_timeout: u.drain_timeout,
            shared: shared.clone(),
        };
        tracing::info!(sink = %u.name.value, broker = %ep, client_id = %u.connection.client_id,
            topics = %format!("{}/{}/#", u.topic_prefix, u.plant_id),
            queue_capacity = u.queue_capacity, qos = u.qos, "Upstream MQTT publisher starting.");
        RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((u.name.value.clone(), Arc::downgrade(&shared)));
        up.tasks.push((tokio::spawn(task.run()), u.drain_timeout));
        up.sinks.push(MqttPublisher::new(cfg, u, shared));
    }
    Ok(up)
}

impl Upstream {
    /// The sinks, boxed for the run's fan-out.
    pub fn take_sinks(&mut self) -> Vec<Box<dyn Sink>> {
        let nodes = self.nodes.drain(..).map(|s| Box::new(s) as Box<dyn Sink>);
        self.sinks
            .drain(..)
            .map(|s| Box::new(s) as Box<dyn Sink>)
            .chain(nodes)
            .collect()
    }

    /// Wait for every connection task to hand over what it holds (bounded
    /// by its drain timeout, plus a second for the disconnect) once the run
    /// has finished its sinks.
    pub async fn join(self) {
        for (task, drain) in self.tasks {
            let _ = tokio::time::timeout(drain + Duration::from_secs(1), task).await;
        }
    }
}
