//! MQTT source: subscribes to the config's topics and maps each to a tag.
//!
//! The caller-driven rumqttc event loop is polled here. Subscriptions are
//! (re)issued on every ConnAck, so a reconnect to a broker that lost our
//! session never leaves us silently unsubscribed (rumqtt #250). Malformed
//! payloads are counted and dropped, with at most one warning per topic per
//! interval.

pub mod payload;

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{SampleTx, Source, SourceTask};
use crate::config::{LoadedConfig, MqttSource, Payload, TagId};
use crate::twin::{Sample, Value};
use crate::wallclock;

/// How often, at most, a malformed-payload warning is logged per topic.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Largest packet accepted. rumqttc treats a bigger incoming packet as a
/// connection error, so an oversized retained message makes it reconnect in
/// a loop (rumqtt #856); the ingestion issue replaces this with a drop-and-count.
pub const MAX_PACKET: usize = 256 * 1024;

struct Binding {
    tag: TagId,
    payload: Payload,
    scale: f64,
    offset: f64,
}

pub struct MqttSubscriber {
    src: MqttSource,
    host: String,
    port: u16,
    bindings: BTreeMap<String, Vec<Binding>>,
}

/// Parse `mqtt://host:port` (port defaults to 1883).
pub fn parse_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("mqtt://")?.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (rest, 1883),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl MqttSubscriber {
    pub fn new(cfg: &LoadedConfig, source: usize, host: String, port: u16) -> Self {
        let src = cfg.config.mqtt[source].clone();
        let mut bindings: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
        for t in &src.topics {
            if let Some(tag) = cfg.tags.id(&t.tag.value) {
                bindings
                    .entry(t.topic.value.clone())
                    .or_default()
                    .push(Binding {
                        tag,
                        payload: t.payload.clone(),
                        scale: t.scale,
                        offset: t.offset,
                    });
            }
        }
        MqttSubscriber {
            src,
            host,
            port,
            bindings,
        }
    }

    fn subscriptions(&self) -> Vec<(String, QoS)> {
        self.src
            .topics
            .iter()
            .map(|t| {
                let qos = if t.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                (t.topic.value.clone(), qos)
            })
            .collect()
    }

    async fn run(self, tx: SampleTx, shutdown: CancellationToken) {
        let name = self.src.name.value.clone();
        let broker = format!("{}:{}", self.host, self.port);
        let mut opts = MqttOptions::new(self.src.client_id.clone(), self.host.clone(), self.port);
        opts.set_keep_alive(self.src.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut dropped: BTreeMap<String, (u64, Option<std::time::Instant>)> = BTreeMap::new();
        let mut connected: Option<bool> = None;

        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    info!(source = %name, broker = %broker, session_present = ack.session_present, "Connected to MQTT broker.");
                    connected = Some(true);
                    for (topic, qos) in self.subscriptions() {
                        if let Err(e) = client.try_subscribe(topic.clone(), qos) {
                            warn!(source = %name, topic = %topic, error = %e, "Could not queue MQTT subscription.");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let t = wallclock::now_ns();
                    let Some(bindings) = self.bindings.get(&p.topic) else {
                        continue;
                    };
                    for b in bindings {
                        match payload::decode(&b.payload, &p.payload) {
                            Ok(v) => {
                                let v = match v {
                                    Value::Num(n) => {
                                        Value::Num(crate::sources::modbus::codec::apply_scale(
                                            n, b.scale, b.offset,
                                        ))
                                    }
                                    v => v,
                                };
                                if tx.send(Sample::good(b.tag, v, t, t)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let (count, last) =
                                    dropped.entry(p.topic.clone()).or_insert((0, None));
                                *count += 1;
                                let now = wallclock::monotonic();
                                if last.is_none_or(|l| now.duration_since(l) >= WARN_INTERVAL) {
                                    warn!(source = %name, topic = %p.topic, error = %e, dropped_total = *count,
                                        "Dropped malformed MQTT payload; check the publisher or the topic's `payload`/`field` in the config.");
                                    *last = Some(now);
                                }
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected != Some(false) {
                        warn!(source = %name, broker = %broker, error = %e,
                            "MQTT broker unreachable; retrying. Its tags go stale after their stale_after.");
                    } else {
                        debug!(source = %name, broker = %broker, error = %e, "MQTT reconnect failed.");
                    }
                    connected = Some(false);
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

impl Source for MqttSubscriber {
    fn name(&self) -> &str {
        &self.src.name.value
    }

    fn start(self: Box<Self>, tx: SampleTx, shutdown: CancellationToken) -> SourceTask {
        Box::pin(self.run(tx, shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1".into(), 1884))
        );
        assert_eq!(parse_url("mqtt://broker"), Some(("broker".into(), 1883)));
        assert_eq!(parse_url("http://x"), None);
        assert_eq!(parse_url("mqtt://:1"), None);
    }
}
