//! MQTT source: subscribes to the config's topics and turns each message
//! into samples for the core.
//!
//! The caller-driven rumqttc event loop is polled here. Around it:
//! - [`connect`] builds the connection once at start-up: persistent session
//!   with a stable client id, credentials from the environment or a file,
//!   TLS, and the packet limits.
//! - [`topic`] routes a received topic to its entries, through `+`/`#`
//!   wildcards and `{machine}` captures.
//! - [`payload`] decodes numbers, JSON fields and timestamped JSON arrays.
//!
//! Messages that cannot be used (malformed, oversized, for a machine the
//! config does not list) are acknowledged, counted and dropped, with at most
//! one warning per entry and kind per [`WARN_INTERVAL`]. Nothing a publisher
//! sends can break the connection or flood the log.

pub mod connect;
pub mod payload;
pub mod topic;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use tracing::{debug, info, warn};

use super::limit::RateLimit;
use super::{Source, SourceContext, SourceTask};
use crate::config::LoadedConfig;
use crate::twin::{Reason, Sample};
use crate::wallclock;
pub use connect::{Endpoint, SetupError, parse_endpoint};
use topic::{Routed, Router};

/// How often, at most, a warning about dropped messages is logged per
/// config entry and kind.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Parse a plain `mqtt://host:port` (port defaults to 1883); TLS URLs are
/// refused. For publishers that have no TLS set-up (the virtual plant).
pub fn parse_url(url: &str) -> Option<(String, u16)> {
    parse_endpoint(url)
        .ok()
        .filter(|e| !e.tls)
        .map(|e| (e.host, e.port))
}

pub struct MqttSubscriber {
    name: String,
    endpoint: Endpoint,
    options: rumqttc::MqttOptions,
    router: Router,
    subscriptions: Vec<(String, QoS)>,
    max_packet_size: usize,
    max_clock_skew: Duration,
}

impl MqttSubscriber {
    /// Set up source `source` of the config to connect to `endpoint`. Reads
    /// the secrets and TLS files it names.
    pub fn new(cfg: &LoadedConfig, source: usize, endpoint: Endpoint) -> Result<Self, SetupError> {
        let src = &cfg.config.mqtt[source];
        let options = connect::options(&src.into(), &endpoint, &config_dir(cfg))?;
        Ok(MqttSubscriber {
            name: src.name.value.clone(),
            endpoint,
            options,
            router: Router::new(cfg, src),
            subscriptions: topic::subscriptions(src),
            max_packet_size: src.connection.max_packet_size,
            max_clock_skew: src.connection.max_clock_skew,
        })
    }

    async fn run(self, cx: SourceContext) {
        let SourceContext {
            tx,
            shutdown,
            health,
        } = cx;
        let name = self.name.clone();
        let broker = self.endpoint.to_string();
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 1024);
        let mut drops = DropLog::default();
        let mut link = connect::Reconnect::new("MQTT", &name, &broker);
        let mut first_connack = true;
        let mut subscribed: Vec<String> = Vec::new();

        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    // With a session the broker kept, our subscriptions are
                    // still there; subscribing again would make it resend every
                    // retained message, old values included. Without one
                    // (first start, clean session, broker lost its state) we
                    // must subscribe, or stay connected and deaf (rumqtt #250).
                    // The first connection always subscribes: a kept session
                    // may come from an older config with other topics.
                    let subscribe = first_connack || !ack.session_present;
                    first_connack = false;
                    info!(source = %name, broker = %broker, session_present = ack.session_present, subscribe,
                        "Connected to MQTT broker.");
                    link.connected();
                    health.success(0, wallclock::now_ns());
                    if subscribe {
                        let filters = self
                            .subscriptions
                            .iter()
                            .map(|(f, q)| SubscribeFilter::new(f.clone(), *q));
                        match client.try_subscribe_many(filters) {
                            Ok(()) => {
                                subscribed =
                                    self.subscriptions.iter().map(|s| s.0.clone()).collect()
                            }
                            Err(e) => {
                                warn!(source = %name, error = %e, "Could not queue the MQTT subscriptions.")
                            }
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let mut granted = 0;
                    for (filter, code) in subscribed.iter().zip(&ack.return_codes) {
                        if *code == SubscribeReasonCode::Failure {
                            warn!(source = %name, topic = %filter,
                                "MQTT broker refused the subscription; check its access rules for this client.");
                        } else {
                            granted += 1;
                        }
                    }
                    info!(source = %name, granted, requested = subscribed.len(), "Subscribed to MQTT topics.");
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let recv = wallclock::now_ns();
                    let samples = self.samples(&p, recv, &mut drops);
                    if samples.is_empty() {
                        health.rejected(1, Reason::DroppedMessage);
                    } else {
                        health.success(1, recv);
                        health.clock_skew(clock_skewed(&samples));
                        if let Some(newest) = samples
                            .iter()
                            .filter(|s| s.source_time_ns != s.recv_time_ns)
                            .map(|s| s.source_time_ns)
                            .max()
                        {
                            health.latency(recv.saturating_sub(newest));
                        }
                    }
                    if !samples.is_empty() && tx.send(samples).await.is_err() {
                        return;
                    }
                    // Acknowledged only now, so a QoS 1 message is never
                    // acknowledged before its samples are with the core.
                    // Dropped messages are acknowledged too: resending them
                    // would not make them any better.
                    if let Err(e) = client.try_ack(&p) {
                        debug!(source = %name, error = %e, "Could not queue an MQTT acknowledgement; the broker will resend.");
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
        if link.is_up() {
            disconnect(&client, &mut eventloop).await;
        }
    }

    /// The samples one message gives, in source-time order; anything that
    /// cannot be used is counted and reported through `drops`.
    pub(crate) fn samples(&self, p: &Publish, recv: i64, drops: &mut DropLog) -> Vec<Sample> {
        let name = &self.name;
        let routes = self.router.route(&p.topic);
        if routes.is_empty() {
            // A filter from an older config, kept in a persistent session.
            if let Some(total) = drops.count("", DropKind::Unmapped, 1) {
                warn!(source = %name, topic = %p.topic, dropped_total = total,
                    "Dropped an MQTT message on a topic no entry maps; the broker may keep a subscription from an earlier config (set clean_session = true once to clear it).");
            }
            return Vec::new();
        }
        let size = p.size();
        if size > self.max_packet_size {
            let filter = match &routes[0] {
                Routed::Tag(r, _) | Routed::UnlistedMachine(r, _) => r.filter.as_str(),
            };
            if let Some(total) = drops.count(filter, DropKind::Oversized, 1) {
                warn!(source = %name, topic = %p.topic, size, max_packet_size = self.max_packet_size,
                    retained = p.retain, dropped_total = total,
                    "Dropped an oversized MQTT message; raise the source's max_packet_size if such messages are expected.");
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        let skew_ns = i64::try_from(self.max_clock_skew.as_nanos()).unwrap_or(i64::MAX);
        for routed in routes {
            let (route, tag) = match routed {
                Routed::Tag(route, tag) => (route, tag),
                Routed::UnlistedMachine(route, machine) => {
                    if let Some(total) = drops.count(&route.filter, DropKind::UnlistedMachine, 1) {
                        warn!(source = %name, topic = %p.topic, machine = %machine, dropped_total = total,
                            "Dropped an MQTT message for a machine the topic's `machines` list does not name; add it there to map it.");
                    }
                    continue;
                }
            };
            match payload::decode(&route.payload, &p.payload) {
                Ok(d) => {
                    let before = out.len();
                    if let Some(e) = &d.first_error
                        && let Some(total) =
                            drops.count(&route.filter, DropKind::Malformed, d.rejected as u64)
                    {
                        warn!(source = %name, topic = %p.topic, error = %e, dropped_total = total,
                            "Dropped malformed MQTT payload; check the publisher or the topic's `payload`/`field` in the config.");
                    }
                    out.extend(d.readings.into_iter().map(|r| {
                        let mut s = route.sample(tag, r, recv);
                        s.bound_clock_skew(skew_ns);
                        s
                    }));
                    let skewed = clock_skewed(&out[before..]);
                    if skewed > 0
                        && let Some(total) = drops.count(&route.filter, DropKind::ClockSkew, skewed)
                    {
                        warn!(source = %name, topic = %p.topic, max_clock_skew = ?self.max_clock_skew, clock_skew_total = total,
                            "MQTT sample stamped further ahead of its arrival than max_clock_skew; kept as uncertain (clock_skew) at its arrival time. Check the publisher's clock.");
                    }
                }
                Err(e) => {
                    if let Some(total) = drops.count(&route.filter, DropKind::Malformed, 1) {
                        warn!(source = %name, topic = %p.topic, error = %e, dropped_total = total,
                            "Dropped malformed MQTT payload; check the publisher or the topic's `payload`/`field` in the config.");
                    }
                }
            }
        }
        // The core drops a sample older than what its tag holds, so an array
        // sent newest first must still be applied oldest first.
        out.sort_by_key(|s| s.source_time_ns);
        out
    }
}

/// The config file's folder: where relative paths in it start.
pub(crate) fn config_dir(cfg: &LoadedConfig) -> PathBuf {
    cfg.file
        .path
        .parent()
        .map_or_else(PathBuf::new, Path::to_path_buf)
}

/// Send DISCONNECT, so the broker does not wait for the keep-alive to run out
/// (and does not publish a last will), within a short grace period.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(connect::DISCONNECT_GRACE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DropKind {
    Malformed,
    Oversized,
    UnlistedMachine,
    Unmapped,
    /// Not dropped: kept as `uncertain` (`clock_skew`), but reported alike.
    ClockSkew,
}

/// How many of these samples were stamped beyond the clock-skew allowance
/// (see [`Sample::bound_clock_skew`]; every MQTT sample starts good).
fn clock_skewed(samples: &[Sample]) -> u64 {
    samples
        .iter()
        .filter(|s| s.reason == Some(Reason::ClockSkew))
        .count() as u64
}

/// Counts of dropped messages, per config entry (its filter) and kind, and
/// when each was last reported. Keyed by config entry, not received topic,
/// so a publisher inventing topics cannot grow it.
#[derive(Debug)]
pub(crate) struct DropLog(RateLimit<(String, DropKind)>);

impl Default for DropLog {
    fn default() -> Self {
        DropLog(RateLimit::new(WARN_INTERVAL))
    }
}

impl DropLog {
    /// Count `n` drops; returns the running total when a warning is due.
    fn count(&mut self, filter: &str, kind: DropKind, n: u64) -> Option<u64> {
        self.0.count((filter.to_string(), kind), n)
    }
}

impl Source for MqttSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn start(self: Box<Self>, cx: SourceContext) -> SourceTask {
        Box::pin(self.run(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::twin::Quality;
    use crate::twin::Value;

    const CFG: &str = r#"
[plant]
name = "p"
[[sources.mqtt]]
name = "m"
broker = "mqtt://127.0.0.1:1"
max_packet_size = 200
  [[sources.mqtt.topics]]
  topic = "plant/{machine}/vib"
  tag = "{machine}.vib"
  machines = ["a", "b"]
  scale = 2
  [[sources.mqtt.topics]]
  topic = "plant/a/batch"
  tag = "a.batch"
  payload = "json_samples"
  field = "v"
  time_field = "ts"
[[machines]]
id = "a"
kind = "generic"
tags = { batch = "a.batch" }
[[machines]]
id = "b"
kind = "generic"
"#;

    fn subscriber() -> (LoadedConfig, MqttSubscriber) {
        let cfg = load_str(Path::new("t.toml"), CFG).expect("valid");
        let ep = parse_endpoint("mqtt://127.0.0.1:1").expect("url");
        let s = MqttSubscriber::new(&cfg, 0, ep).expect("set up");
        (cfg, s)
    }

    fn publish(topic: &str, body: &[u8]) -> Publish {
        Publish::new(topic, QoS::AtLeastOnce, body.to_vec())
    }

    #[test]
    fn a_capture_picks_the_machines_tag() {
        let (cfg, s) = subscriber();
        let mut drops = DropLog::default();
        let got = s.samples(&publish("plant/b/vib", b"1.5"), 7, &mut drops);
        assert_eq!(
            got,
            vec![Sample::good(
                cfg.tags.id("b.vib").expect("tag"),
                Value::Num(3.0),
                7,
                7
            )]
        );
        // Bound to its machine, with the role from the template.
        let def = cfg.tags.get(cfg.tags.id("b.vib").expect("tag"));
        assert_eq!(def.machine.as_deref(), Some("b"));
        assert_eq!(def.role.as_deref(), Some("vib"));
        // A machine not listed: dropped and counted, not guessed.
        assert!(
            s.samples(&publish("plant/c/vib", b"1"), 7, &mut drops)
                .is_empty()
        );
        assert_eq!(
            drops
                .0
                .total(&("plant/+/vib".to_string(), DropKind::UnlistedMachine)),
            1
        );
    }

    #[test]
    fn an_array_gives_one_sample_per_element_with_its_own_time() {
        let (cfg, s) = subscriber();
        let tag = cfg.tags.id("a.batch").expect("tag");
        let mut drops = DropLog::default();
        let got = s.samples(
            &publish(
                "plant/a/batch",
                br#"[{"ts": 2000, "v": 2}, {"ts": 1000, "v": 1}]"#,
            ),
            5_000_000_000,
            &mut drops,
        );
        // Oldest first; receive time stays the receive time.
        assert_eq!(
            got,
            vec![
                Sample::good(tag, Value::Num(1.0), 1_000_000_000, 5_000_000_000),
                Sample::good(tag, Value::Num(2.0), 2_000_000_000, 5_000_000_000),
            ]
        );
    }

    #[test]
    fn r9_a_sample_stamped_in_the_future_is_uncertain_at_its_receive_time() {
        let (cfg, s) = subscriber();
        let tag = cfg.tags.id("a.batch").expect("tag");
        let mut drops = DropLog::default();
        let recv = 5_000_000_000;
        // 1 s ahead is within the default 2 s; a day ahead is not.
        let got = s.samples(
            &publish(
                "plant/a/batch",
                br#"[{"ts": 6000, "v": 1}, {"ts": 86405000, "v": 2}]"#,
            ),
            recv,
            &mut drops,
        );
        assert_eq!(
            got,
            vec![
                Sample {
                    quality: Quality::Uncertain,
                    reason: Some(Reason::ClockSkew),
                    ..Sample::good(tag, Value::Num(2.0), recv, recv)
                },
                Sample::good(tag, Value::Num(1.0), 6_000_000_000, recv),
            ]
        );
        assert_eq!(clock_skewed(&got), 1);
        assert_eq!(
            drops
                .0
                .total(&("plant/a/batch".to_string(), DropKind::ClockSkew)),
            1
        );
    }

    #[test]
    fn an_oversized_message_is_dropped_and_counted() {
        let (_, s) = subscriber();
        let mut drops = DropLog::default();
        let big = vec![b'1'; 300];
        assert!(
            s.samples(&publish("plant/a/vib", &big), 1, &mut drops)
                .is_empty()
        );
        assert_eq!(
            drops
                .0
                .total(&("plant/+/vib".to_string(), DropKind::Oversized)),
            1
        );
    }

    #[test]
    fn warnings_are_rate_limited_but_every_drop_counts() {
        let mut d = DropLog::default();
        assert_eq!(d.count("t", DropKind::Malformed, 1), Some(1));
        assert_eq!(d.count("t", DropKind::Malformed, 2), None);
        assert_eq!(d.count("t", DropKind::Oversized, 1), Some(1));
        assert_eq!(d.0.total(&("t".to_string(), DropKind::Malformed)), 3);
    }

    #[test]
    fn plain_urls_only_for_publishers() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1".into(), 1884))
        );
        assert_eq!(parse_url("mqtt://broker"), Some(("broker".into(), 1883)));
        assert_eq!(parse_url("mqtts://broker"), None);
        assert_eq!(parse_url("http://x"), None);
    }
}
