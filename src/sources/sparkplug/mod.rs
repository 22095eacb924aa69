//! Sparkplug B source (spBv1.0): subscribes to a group's namespace on an
//! MQTT broker and maps metrics to tags.
//!
//! Decoding is protobuf (prost, [`proto`]); session rules (births, aliases,
//! seq, deaths) live in [`session`]. Rebirth requests (NCMD) are writes to
//! the plant, so they are sent only where the config enables them; otherwise
//! the need is logged.

pub mod proto;
pub mod session;

use std::time::Duration;

use prost::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tracing::{debug, info, warn};

use super::limit::RateLimit;
use super::{Source, SourceContext, SourceTask};
use crate::twin::Reason;
use crate::wallclock;
use proto::{Metric, MetricValue, Payload, datatype};
use session::{Action, Binding, Session, parse_topic};

/// At most one rebirth request per node in this interval.
const REBIRTH_INTERVAL: Duration = Duration::from_secs(5);
/// At most one warning per node (or topic) in this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SparkplugConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub group: String,
    /// Whether this host may send NCMD rebirth requests.
    pub rebirth: bool,
    pub keep_alive: Duration,
    /// See [`crate::config::SparkplugSource::max_clock_skew`].
    pub max_clock_skew: Duration,
    pub bindings: Vec<Binding>,
}

pub struct SparkplugSubscriber {
    cfg: SparkplugConfig,
}

impl SparkplugSubscriber {
    pub fn new(cfg: SparkplugConfig) -> Self {
        SparkplugSubscriber { cfg }
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
        let c = self.cfg;
        let broker = format!("{}:{}", c.host, c.port);
        let mut opts = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        opts.set_keep_alive(c.keep_alive);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut session =
            Session::new(c.group.clone(), c.bindings.clone()).with_max_clock_skew(c.max_clock_skew);
        let mut skew_warns = RateLimit::new(WARN_INTERVAL);
        let filter = format!("spBv1.0/{}/#", c.group);
        let mut rebirths = RateLimit::new(REBIRTH_INTERVAL);
        let mut warns = RateLimit::new(WARN_INTERVAL);
        let mut connected: Option<bool> = None;
        let mut actions = Vec::new();

        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(source = %c.name, broker = %broker, group = %c.group, "Connected to Sparkplug broker.");
                    connected = Some(true);
                    health.success(0, wallclock::now_ns());
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        warn!(source = %c.name, error = %e, "Could not queue the Sparkplug subscription.");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let recv = wallclock::now_ns();
                    let Some(topic) = parse_topic(&p.topic) else {
                        continue;
                    };
                    let payload = match Payload::decode(p.payload.as_ref()) {
                        Ok(pl) => {
                            health.success(1, recv);
                            pl
                        }
                        Err(e) => {
                            health.rejected(1, Reason::InvalidPayload);
                            if warns.count(p.topic.clone(), 1).is_some() {
                                warn!(source = %c.name, topic = %p.topic, error = %e,
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
                                if rebirths.count(node.clone(), 1).is_none() {
                                    continue;
                                }
                                if c.rebirth {
                                    info!(source = %c.name, node = %node, reason = why, "Requesting a Sparkplug rebirth.");
                                    let t = format!("spBv1.0/{}/NCMD/{}", c.group, node);
                                    let now_ms = (wallclock::now_ns() / 1_000_000).max(0) as u64;
                                    if let Err(e) = client.try_publish(
                                        t,
                                        QoS::AtLeastOnce,
                                        false,
                                        rebirth_payload(now_ms),
                                    ) {
                                        warn!(source = %c.name, node = %node, error = %e, "Could not queue the rebirth request.");
                                    }
                                } else {
                                    warn!(source = %c.name, node = %node, reason = why,
                                        "Sparkplug node needs a rebirth, but rebirth requests are disabled for this source; set `rebirth = true` to allow them.");
                                }
                            }
                            Action::ClockSkew { node, metric } => {
                                health.clock_skew(1);
                                if let Some(total) = skew_warns.count((), 1) {
                                    warn!(source = %c.name, topic = %p.topic, node = %node, metric = %metric,
                                        max_clock_skew = ?c.max_clock_skew, clock_skew_total = total,
                                        "Sparkplug metric stamped further ahead of its arrival than max_clock_skew; kept as uncertain (clock_skew) at its arrival time. Check the edge node's clock.");
                                }
                            }
                            Action::Problem { node, what } => {
                                if warns.count(node.clone(), 1).is_some() {
                                    warn!(source = %c.name, node = %node, problem = %what, "Sparkplug protocol problem.");
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
                    if connected != Some(false) {
                        warn!(source = %c.name, broker = %broker, error = %e,
                            "Sparkplug broker unreachable; retrying. Its tags go stale after their stale_after.");
                    } else {
                        debug!(source = %c.name, error = %e, "Sparkplug reconnect failed.");
                    }
                    connected = Some(false);
                    health.failure(Reason::BrokerUnreachable, wallclock::now_ns());
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        let _ = client.try_disconnect();
    }
}

impl Source for SparkplugSubscriber {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "sparkplug"
    }

    fn start(self: Box<Self>, cx: SourceContext) -> SourceTask {
        Box::pin(self.run(cx))
    }
}
