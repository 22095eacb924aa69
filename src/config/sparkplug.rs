//! `[[sources.sparkplug]]`: Sparkplug B edge nodes on an MQTT broker.
//!
//! Each entry subscribes to one group (`spBv1.0/{group}/#`) and maps metrics,
//! named by node, optional device and metric name, to tags. Rebirth requests
//! are writes to the plant, so they are off unless `rebirth = true`.

use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table, check_tag_name};
use super::diagnostics::Diagnostic;
use super::mqtt::{Broker, DEFAULT_MAX_CLOCK_SKEW, parse_broker};

#[derive(Debug, Clone)]
pub struct SparkplugSource {
    pub name: Loc<String>,
    pub broker: Loc<Broker>,
    pub client_id: String,
    pub group: Loc<String>,
    /// May this host send NCMD rebirth requests?
    pub rebirth: bool,
    pub keep_alive: Duration,
    pub stale_after: Option<Duration>,
    /// As for [`super::MqttSource::max_clock_skew`], for metric timestamps.
    pub max_clock_skew: Duration,
    pub metrics: Vec<SparkplugMetric>,
}

#[derive(Debug, Clone)]
pub struct SparkplugMetric {
    pub node: Loc<String>,
    pub device: Option<Loc<String>>,
    pub metric: Loc<String>,
    pub tag: Loc<String>,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    pub stale_after: Option<Duration>,
}

/// A Sparkplug id (group, node, device) must be a single topic level.
fn check_id(sink: &mut Sink, path: String, id: &Loc<String>) {
    if let Some(bad) = id.value.chars().find(|c| matches!(c, '/' | '+' | '#')) {
        sink.push(
            Diagnostic::error(
                id.span.clone(),
                path,
                format!(
                    "\"{}\" contains {bad:?}, which cannot appear in a Sparkplug id",
                    id.value
                ),
            )
            .expected("a single topic level without `/`, `+` or `#`"),
        );
    }
}

pub(super) fn decode(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<SparkplugSource> {
    let name = t.req_str(sink, "name");
    let broker_raw = t.req_str(sink, "broker");
    let listen = t.opt_str(sink, "listen");
    let client_id = t.opt_str(sink, "client_id");
    let group = t.req_str(sink, "group");
    if let Some(g) = &group {
        check_id(sink, t.key_path("group"), g);
    }
    let rebirth = t.opt_bool(sink, "rebirth").is_some_and(|b| b.value);
    let keep_alive = t
        .opt_duration(sink, "keep_alive", Duration::from_secs(1), HOUR)
        .map_or(Duration::from_secs(10), |d| d.value);
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);
    let max_clock_skew = t
        .opt_duration(sink, "max_clock_skew", Duration::ZERO, HOUR)
        .map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.value);
    let broker = broker_raw.and_then(|b| {
        let path = t.key_path("broker");
        let parsed = parse_broker(sink, &path, &b, listen.as_ref(), &t.key_path("listen"))?;
        Some(Loc::new(parsed, b.span))
    });
    let mut metrics = Vec::new();
    for mut m in t.opt_table_array(sink, "metrics") {
        let node = m.req_str(sink, "node");
        let device = m.opt_str(sink, "device");
        for (key, id) in [("node", &node), ("device", &device)] {
            if let Some(id) = id {
                check_id(sink, m.key_path(key), id);
            }
        }
        let metric = m.req_str(sink, "metric");
        let tag = m.req_str(sink, "tag");
        if let Some(tag) = &tag {
            check_tag_name(sink, &m.key_path("tag"), tag);
        }
        let scale = match m.opt_f64(sink, "scale") {
            Some(s) if s.value == 0.0 => {
                sink.push(
                    Diagnostic::error(s.span.clone(), m.key_path("scale"), "scale must not be 0")
                        .expected("a non-zero number; engineering value = metric * scale + offset"),
                );
                1.0
            }
            Some(s) => s.value,
            None => 1.0,
        };
        let offset = m.opt_f64(sink, "offset").map_or(0.0, |v| v.value);
        let unit = m.opt_str(sink, "unit").map(|u| u.value);
        let m_stale = m
            .opt_duration(sink, "stale_after", MS, HOUR)
            .map(|d| d.value);
        m.finish(sink);
        match (node, metric, tag) {
            (Some(node), Some(metric), Some(tag)) => metrics.push(SparkplugMetric {
                node,
                device,
                metric,
                tag,
                scale,
                offset,
                unit,
                stale_after: m_stale,
            }),
            (_, _, tag) => sink.broken_tags.extend(tag.map(|t| t.value)),
        }
    }
    t.finish(sink);
    let (Some(name), Some(broker), Some(group)) = (name, broker, group) else {
        sink.broken_tags
            .extend(metrics.into_iter().map(|m| m.tag.value));
        return None;
    };
    Some(SparkplugSource {
        client_id: client_id.map_or_else(|| format!("twin-{}", name.value), |c| c.value),
        name,
        broker,
        group,
        rebirth,
        keep_alive,
        stale_after,
        max_clock_skew,
        metrics,
    })
}
