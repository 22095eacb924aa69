//! `[[sources.sparkplug]]`: Sparkplug B edge nodes on an MQTT broker.
//!
//! Each entry subscribes to one group (`spBv1.0/{group}/#`) and maps metrics,
//! named by node, optional device and metric name, to tags. Rebirth requests
//! are writes to the plant, so they are off unless `rebirth = true`.

use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table, check_tag_name};
use super::diagnostics::Diagnostic;
use super::mqtt::{MqttConnection, decode_connection};

/// Default `max_packet_size` of a Sparkplug source. Births carry every
/// metric of a node with its name, alias, type and properties: ~45 bytes a
/// metric, so 400 metrics are ~18 KB and a large node's tens of thousands
/// are megabytes. 16 MiB takes any birth a real node sends while still
/// bounding what one message may make the twin hold.
pub const SPARKPLUG_DEFAULT_MAX_PACKET: usize = 16 * 1024 * 1024;
/// Default `max_nodes`: nodes the config does not name whose session state
/// is kept (a few hundred bytes each). Generous for a real group; a flood
/// of invented node ids stops here.
pub const SPARKPLUG_DEFAULT_MAX_NODES: usize = 1_000;
/// Default `max_devices`: devices, over all nodes, the config does not
/// name, whose session state is kept.
pub const SPARKPLUG_DEFAULT_MAX_DEVICES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SparkplugSource {
    pub name: Loc<String>,
    /// Broker, client, credentials, TLS and limits, as for MQTT sources.
    pub connection: MqttConnection,
    pub group: Loc<String>,
    /// May this host send NCMD rebirth requests?
    pub rebirth: bool,
    /// Session state bounds for nodes and devices the config does not name.
    pub max_nodes: usize,
    pub max_devices: usize,
    pub stale_after: Option<Duration>,
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
    let conn = decode_connection(sink, &mut t, SPARKPLUG_DEFAULT_MAX_PACKET);
    let group = t.req_str(sink, "group");
    if let Some(g) = &group {
        check_id(sink, t.key_path("group"), g);
    }
    let rebirth = t.opt_bool(sink, "rebirth").is_some_and(|b| b.value);
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);
    let max_nodes = t
        .opt_int(sink, "max_nodes", 1, 1_000_000)
        .map_or(SPARKPLUG_DEFAULT_MAX_NODES, |v| v.value as usize);
    let max_devices = t
        .opt_int(sink, "max_devices", 1, 10_000_000)
        .map_or(SPARKPLUG_DEFAULT_MAX_DEVICES, |v| v.value as usize);
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
    let named = name.and_then(|n| conn.of(&n).map(|c| (n, c)));
    let (Some((name, connection)), Some(group)) = (named, group) else {
        sink.broken_tags
            .extend(metrics.into_iter().map(|m| m.tag.value));
        return None;
    };
    Some(SparkplugSource {
        name,
        connection,
        group,
        rebirth,
        max_nodes,
        max_devices,
        stale_after,
        metrics,
    })
}
