//! Sparkplug B source (spBv1.0): subscribes to a group's namespace on an
//! MQTT broker and maps metrics to tags.
//!
//! Decoding is protobuf (prost, [`proto`]); session rules (births, aliases,
//! seq, deaths) live in [`session`]. Rebirth requests (NCMD) are writes to
//! the plant, so they are sent only where the config enables them; otherwise
//! the need is logged. The MQTT client comes from [`connect::options`], the
//! builder the MQTT source uses: TLS, credentials and `max_packet_size`,
//! enforced here after receipt so an oversized message never drops the
//! connection. Warnings are rate-limited per source and kind, not per node.

pub mod proto;
pub mod session;
pub mod writer;

use std::time::Duration;

use prost::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tracing::{info, warn};

use super::limit::RateLimit;
use super::mqtt::connect::{self, Endpoint, Reconnect, SetupError};
use super::{Source, SourceContext, SourceTask};
use crate::config::LoadedConfig;
use crate::twin::Reason;
use crate::wallclock;
use proto::{Metric, MetricValue, Payload, datatype};
use session::{Action, Binding, Limits, Session, parse_topic};

/// At most one warning of each kind per source in this interval, however
/// many nodes it is about: a flood of messages from invented node ids must
/// not flood the log (and the disk under it).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What a source warns about, each rate-limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Warn {
    InvalidPayload,
    Oversized,
    Protocol,
    RebirthDisabled,
    RebirthRequested,
    RebirthQueueFull,
}

pub struct SparkplugSubscriber {
    name: String,
    endpoint: Endpoint,
    options: MqttOptions,
    group: String,
    /// Whether this host may send NCMD rebirth requests.
    rebirth: bool,
    max_packet_size: usize,
    /// See [`crate::config::SparkplugSource::max_clock_skew`].
    max_clock_skew: Duration,
    limits: Limits,
    bindings: Vec<Binding>,
    /// The births of metrics setpoints write, for the setpoint writer.
    births: writer::Births,
}

impl SparkplugSubscriber {
    /// Set up Sparkplug source `source` of the config to connect to
    /// `endpoint`. Reads the secrets and TLS files it names.
    pub fn new(cfg: &LoadedConfig, source: usize, endpoint: Endpoint) -> Result<Self, SetupError> {
        let src = &cfg.config.sparkplug[source];
        let options = connect::options(&src.into(), &endpoint, &super::mqtt::config_dir(cfg))?;
        let bindings = src
            .metrics
            .iter()
            .filter_map(|m| {
                let tag = cfg.tags.id(&m.tag.value)?;
                Some(Binding {
                    node: m.node.value.clone(),
                    device: m.device.as_ref().map(|d| d.value.clone()),
                    metric: m.metric.value.clone(),
                    tag,
                    scale: m.scale,
                    offset: m.offset,
                })
            })
            .collect();
        Ok(SparkplugSubscriber {
            name: src.name.value.clone(),
            endpoint,
            options,
            group: src.group.value.clone(),
            rebirth: src.rebirth,
            max_packet_size: src.connection.max_packet_size,
            max_clock_skew: src.connection.max_clock_skew,
            limits: Limits {
                max_nodes: src.max_nodes,
                max_devices: src.max_devices,
            },
            bindings,
            births: writer::Births::default(),
        })
    }

    /// Report births and deaths of the metrics setpoints write into
    /// `births` (the setpoint writer's table).
    pub fn with_births(mut self, births: writer::Births) -> Self {
        self.births = births;
        self
    }
}

/// The NCMD payload that asks a node to publish its births again.
pub fn rebirth_payload(now_ms: u64) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some("Node Control/Rebirth".into()),
            alias: None,
            timestamp: Some(now_ms),
            datatype: Some(datatype::BOOLEAN),
            is_historical: None,
            is_transient: None,
            is_null: None,
            value: Some(MetricValue::Boolean(true)),
        }],
        seq: None,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

impl SparkplugSubscriber {
    async fn run(self, cx: SourceContext) {
        let SourceContext {
            tx,
            shutdown,
            health,
        } = cx;
        let name = self.name.as_str();
        let broker = self.endpoint.to_string();
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 256);
        let mut session = Session::new(self.group.clone(), self.bindings.clone(), self.limits)
            .with_max_clock_skew(self.max_clock_skew);
        let mut skew_warns = RateLimit::new(WARN_INTERVAL);
        let filter = format!("spBv1.0/{}/#", self.group);
        let mut warns = RateLimit::new(WARN_INTERVAL);
        let mut link = Reconnect::new("Sparkplug", name, &broker);
        let mut actions = Vec::new();
        let mut first_connack = true;

        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(source = %name, broker = %broker, group = %self.group, "Connected to Sparkplug broker.");
                    link.connected();
                    health.success(0, wallclock::now_ns());
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        warn!(source = %name, error = %e, "Could not queue the Sparkplug subscription.");
                    }
                    // Births seen before an outage may be out of date (a
                    // node may have died and been born again, with other
                    // aliases): a setpoint write waits for a fresh one.
                    if !std::mem::take(&mut first_connack) {
                        self.births.forget();
                        for node in self.births.nodes() {
                            self.request_rebirth(
                                &client,
                                &mut warns,
                                &node,
                                "births forgotten after a reconnect",
                            );
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let recv = wallclock::now_ns();
                    let size = p.size();
                    if size > self.max_packet_size {
                        health.rejected(1, Reason::DroppedMessage);
                        if let Some((total, suppressed)) = warns.report(Warn::Oversized, 1) {
                            warn!(source = %name, topic = %p.topic, size, max_packet_size = self.max_packet_size,
                                retained = p.retain, dropped_total = total, suppressed,
                                "Dropped a Sparkplug message over the source's max_packet_size; raise `max_packet_size` for this source if such messages are expected (births of large nodes are).");
                        }
                        continue;
                    }
                    let Some(topic) = parse_topic(&p.topic) else {
                        continue;
                    };
                    let payload = match Payload::decode(p.payload.as_ref()) {
                        Ok(pl) => {
                            health.success(1, recv);
                            // The payload's own timestamp (ms since the
                            // epoch), when the edge node sets one.
                            if let Some(ms) = pl.timestamp.and_then(|t| i64::try_from(t).ok()) {
                                health.latency(recv.saturating_sub(ms.saturating_mul(1_000_000)));
                            }
                            pl
                        }
                        Err(e) => {
                            health.rejected(1, Reason::InvalidPayload);
                            if let Some((total, suppressed)) = warns.report(Warn::InvalidPayload, 1)
                            {
                                warn!(source = %name, topic = %p.topic, error = %e, dropped_total = total, suppressed,
                                    "Dropped a Sparkplug message that is not a valid spBv1.0 payload.");
                            }
                            continue;
                        }
                    };
                    actions.clear();
                    session.handle(&topic, &payload, recv, &mut actions);
                    let mut batch = Vec::new();
                    for a in actions.drain(..) {
                        match a {
                            Action::Sample(s) => batch.push(s),
                            Action::Rebirth { node, why } => {
                                self.request_rebirth(&client, &mut warns, &node, why);
                            }
                            Action::ClockSkew { node, metric } => {
                                health.clock_skew(1);
                                if let Some(total) = skew_warns.count((), 1) {
                                    warn!(source = %name, topic = %p.topic, node = %node, metric = %metric,
                                        max_clock_skew = ?self.max_clock_skew, clock_skew_total = total,
                                        "Sparkplug metric stamped further ahead of its arrival than max_clock_skew; kept as uncertain (clock_skew) at its arrival time. Check the edge node's clock.");
                                }
                            }
                            Action::Born { node, device } => {
                                self.births.born(&node, device.as_deref(), &payload.metrics);
                            }
                            Action::Died { node, device } => {
                                self.births.died(&node, device.as_deref());
                            }
                            Action::Problem { node, what } => {
                                if let Some((total, suppressed)) = warns.report(Warn::Protocol, 1) {
                                    warn!(source = %name, node = %node, problem = %what, problems_total = total, suppressed,
                                        "Sparkplug protocol problem.");
                                }
                            }
                        }
                    }
                    if !batch.is_empty() && tx.send(batch).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let (reason, wait) = link.failed(&e);
                    health.failure(reason, wallclock::now_ns());
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        let (nodes, devices) = session.tracked();
        info!(source = %name, nodes, devices, evicted = session.evicted(), "Sparkplug source stopped.");
        let _ = client.try_disconnect();
    }

    /// Send (or, where not allowed, report) a rebirth request the session
    /// asked for; it has already rate-limited them per node and per source.
    fn request_rebirth(
        &self,
        client: &AsyncClient,
        warns: &mut RateLimit<Warn>,
        node: &str,
        why: &'static str,
    ) {
        let name = &self.name;
        if !self.rebirth {
            if let Some((total, suppressed)) = warns.report(Warn::RebirthDisabled, 1) {
                warn!(source = %name, node = %node, reason = why, needed_total = total, suppressed,
                    "Sparkplug node needs a rebirth, but rebirth requests are disabled for this source; set `rebirth = true` to allow them.");
            }
            return;
        }
        if let Some((total, suppressed)) = warns.report(Warn::RebirthRequested, 1) {
            info!(source = %name, node = %node, reason = why, requested_total = total, suppressed,
                "Requesting a Sparkplug rebirth.");
        }
        let t = format!("spBv1.0/{}/NCMD/{}", self.group, node);
        let now_ms = (wallclock::now_ns() / 1_000_000).max(0) as u64;
        if let Err(e) = client.try_publish(t, QoS::AtLeastOnce, false, rebirth_payload(now_ms))
            && let Some((total, suppressed)) = warns.report(Warn::RebirthQueueFull, 1)
        {
            warn!(source = %name, node = %node, error = %e, failed_total = total, suppressed,
                "Could not queue the rebirth request.");
        }
    }
}

impl Source for SparkplugSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "sparkplug"
    }

    fn start(self: Box<Self>, cx: SourceContext) -> SourceTask {
        Box::pin(self.run(cx))
    }
}
