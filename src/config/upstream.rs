//! `[[sinks.mqtt]]`: upstream MQTT publishers, which send the twin's own
//! outputs (the event lines of docs/events.md) to a plant's broker under a
//! topic per plant, line and machine (`crate::sinks::mqtt`); and
//! `[[sinks.sparkplug]]`: the twin as a Sparkplug B edge node, its lines as
//! devices with derived metrics (`crate::sinks::mqtt::sparkplug`).
//!
//! The connection keys (broker, client id, credentials, TLS) are the
//! sources' ([`super::mqtt::decode_connection_as`]), so a publisher and a
//! source accept and diagnose them alike; what a source alone needs
//! (`listen`, `max_packet_size`, `max_clock_skew`) is an unknown key here.

use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table};
use super::diagnostics::Diagnostic;
use super::line::Line;
use super::mqtt::{Broker, MqttConnection, decode_connection_as};
use super::plant::Plant;

config_words! {
    /// A group of the twin's outputs a publisher sends (`publish`).
    Output {
        /// `tag` events.
        Tags = "tags",
        /// `residual`, `eye`, `jam` and `error` events.
        Events = "events",
        /// `line` events: the line state, once a second of tick time.
        Line = "line",
        /// `prediction` events.
        Predictions = "predictions",
        /// `alarm` events.
        Alarms = "alarms",
        /// `proposal` and `optimiser` events and the guard's `setpoint`
        /// decisions on them.
        Proposals = "proposals",
        /// `metering` events.
        Metering = "metering",
    }
}

/// Default `topic_prefix`.
pub const UPSTREAM_DEFAULT_PREFIX: &str = "twin";
/// Default `queue_capacity`: messages held for the broker. The demo line
/// made about 65 messages a second (mostly `tag` events) in a 6 s run, so
/// this rides out about 25 minutes of outage there, in tens of MB at most
/// (a message is a few hundred bytes).
pub const UPSTREAM_DEFAULT_QUEUE: usize = 100_000;
/// Largest `queue_capacity`: bounds what a config can make the twin hold.
pub const UPSTREAM_MAX_QUEUE: i64 = 10_000_000;
/// Default `drain_timeout`: how long a stopping twin keeps trying to hand
/// what it holds to the broker.
pub const UPSTREAM_DEFAULT_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct UpstreamMqtt {
    pub name: Loc<String>,
    /// Broker, client id, credentials and TLS, as for MQTT sources. The
    /// broker is always an external one.
    pub connection: MqttConnection,
    /// First topic levels, e.g. `twin` or `site1/twin`.
    pub topic_prefix: String,
    /// The plant's topic level: `plant_id`, or the plant's name made a
    /// topic level (lower case, `-` for anything but letters and digits).
    pub plant_id: String,
    /// The output groups sent, in [`Output::NAMES`] order, without
    /// duplicates.
    pub publish: Vec<Output>,
    /// Messages held for the broker (queued and unacknowledged); when full,
    /// the oldest is dropped and counted.
    pub queue_capacity: usize,
    /// 0 or 1.
    pub qos: u8,
    pub drain_timeout: Duration,
}

/// A sink publishes to a broker others run: the embedded one (`embedded`,
/// a sources' convenience) is refused at its `broker` key.
fn refuse_embedded(
    sink: &mut Sink,
    t: &Table<'_, '_>,
    broker: Option<&Loc<Broker>>,
    message: &str,
    help: &str,
) {
    if let Some(b) = broker
        && matches!(b.value, Broker::Embedded { .. })
    {
        sink.push(
            Diagnostic::error(b.span.clone(), t.key_path("broker"), message)
                .expected(super::mqtt::BROKER_URL_EXPECTED)
                .help(help),
        );
    }
}

/// The decoded table, before the plant and lines give its defaults.
#[derive(Debug, Clone)]
pub(super) struct UpstreamDecl {
    sink: UpstreamMqtt,
    plant_id: Option<String>,
    client_id_given: bool,
}

pub(super) fn decode(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<UpstreamDecl> {
    let name = t.req_str(sink, "name");
    let client_id_given = t.key_span("client_id").is_some();
    let conn = decode_connection_as(sink, &mut t, None);
    refuse_embedded(
        sink,
        &t,
        conn.broker.as_ref(),
        "an upstream publisher needs an external broker",
        "publish to the plant's broker (or cluster); the embedded broker is for sources",
    );
    let topic_prefix = t.opt_str(sink, "topic_prefix");
    if let Some(p) = &topic_prefix {
        check_topic(sink, &t.key_path("topic_prefix"), p, true);
    }
    let plant_id = t.opt_str(sink, "plant_id");
    if let Some(p) = &plant_id {
        check_topic(sink, &t.key_path("plant_id"), p, false);
    }
    let publish = t.opt_str_array(sink, "publish").map(|words| {
        let mut out = Vec::new();
        for (i, w) in words.iter().enumerate() {
            match Output::from_name(&w.value) {
                Some(o) => out.push(o),
                None => {
                    let guess =
                        super::diagnostics::closest(&w.value, Output::NAMES.iter().copied());
                    sink.push(
                        Diagnostic::error(
                            w.span.clone(),
                            format!("{}[{i}]", t.key_path("publish")),
                            format!("unknown output \"{}\"", w.value),
                        )
                        .expected(format!("one of {}", Output::NAMES.join(", ")))
                        .maybe_help(guess.map(|g| format!("did you mean `{g}`?"))),
                    );
                }
            }
        }
        out.sort();
        out.dedup();
        out
    });
    let queue_capacity = t
        .opt_int(sink, "queue_capacity", 1, UPSTREAM_MAX_QUEUE)
        .map_or(UPSTREAM_DEFAULT_QUEUE, |v| v.value as usize);
    let qos = match t.key_span("qos") {
        Some(span) => match t.opt_int(&mut Sink::default(), "qos", 0, 1) {
            Some(q) => Some(q.value as u8),
            None => {
                sink.push(
                    Diagnostic::error(span, t.key_path("qos"), "unsupported QoS")
                        .expected("0 or 1")
                        .help("QoS 1 (the default) is at-least-once: the twin keeps each message until the broker acknowledges it; QoS 2 is not offered"),
                );
                None
            }
        },
        None => Some(1),
    };
    let drain_timeout = t
        .opt_duration(sink, "drain_timeout", MS, HOUR)
        .map_or(UPSTREAM_DEFAULT_DRAIN, |d| d.value);
    t.finish(sink);
    let name = name?;
    let connection = conn.of(&name)?;
    if matches!(connection.broker.value, Broker::Embedded { .. }) {
        return None;
    }
    Some(UpstreamDecl {
        sink: UpstreamMqtt {
            name,
            connection,
            topic_prefix: topic_prefix
                .map_or_else(|| UPSTREAM_DEFAULT_PREFIX.to_string(), |p| p.value),
            plant_id: String::new(),
            publish: publish.unwrap_or_else(|| {
                Output::NAMES
                    .iter()
                    .filter_map(|n| Output::from_name(n))
                    .collect()
            }),
            queue_capacity,
            qos: qos?,
            drain_timeout,
        },
        plant_id: plant_id.map(|p| p.value),
        client_id_given,
    })
}

/// The publishers with the plant's and lines' defaults filled in; a
/// duplicate name is an error.
pub(super) fn resolve(
    sink: &mut Sink,
    decls: Vec<UpstreamDecl>,
    plant: Option<&Plant>,
    lines: &[Line],
) -> Vec<UpstreamMqtt> {
    let mut out: Vec<UpstreamMqtt> = Vec::new();
    for (i, d) in decls.into_iter().enumerate() {
        let taken = out.iter().map(|o| o.name.value.as_str());
        if duplicate(sink, &d.sink.name, taken, "mqtt", i, "publisher") {
            continue;
        }
        let mut s = d.sink;
        s.plant_id = d
            .plant_id
            .unwrap_or_else(|| plant.map_or_else(|| "plant".to_string(), |p| topic_level(&p.name)));
        if !d.client_id_given {
            // Brokers drop the older of two connections with one client
            // id, so two twins of one site must differ: the plant and its
            // lines tell the twins of a site apart.
            let mut id = with_lines(format!("twin-{}", s.plant_id), lines);
            id.push('-');
            id.push_str(&topic_level(&s.name.value));
            s.connection.client_id = id;
        }
        out.push(s);
    }
    out
}

/// `prefix-line1-line2…`: what tells the twins of one site apart (each
/// runs its own lines).
fn with_lines(mut id: String, lines: &[Line]) -> String {
    for l in lines {
        id.push('-');
        id.push_str(&topic_level(&l.id.value));
    }
    id
}

/// Whether `name` (of `sinks.{table}[i]`) is already `taken`; if so, says
/// so. Two sinks of one name could not be told apart in logs or metrics.
fn duplicate<'a>(
    sink: &mut Sink,
    name: &Loc<String>,
    mut taken: impl Iterator<Item = &'a str>,
    table: &str,
    i: usize,
    what: &str,
) -> bool {
    if !taken.any(|t| t == name.value) {
        return false;
    }
    sink.push(
        Diagnostic::error(
            name.span.clone(),
            format!("sinks.{table}[{i}].name"),
            format!("duplicate {what} name \"{}\"", name.value),
        )
        .help(format!("give every [[sinks.{table}]] its own name")),
    );
    true
}

/// `name` as one topic level: lower case ASCII letters and digits, `_`
/// kept, and `-` for every run of anything else.
pub fn topic_level(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "_".to_string()
    } else {
        out.to_string()
    }
}

/// A topic prefix (`levels`: may hold `/` between levels) or a single
/// level: no wildcards, no empty level, no `$` start (reserved for the
/// broker's own topics).
fn check_topic(sink: &mut Sink, path: &str, v: &Loc<String>, levels: bool) {
    let s = v.value.as_str();
    let problem = if s.is_empty() {
        Some("must not be empty".to_string())
    } else if let Some(c) = s.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        Some(format!("\"{s}\" contains {c:?}, which a topic name cannot"))
    } else if s.starts_with('$') {
        Some(format!(
            "\"{s}\" starts with `$`, which brokers keep for their own topics"
        ))
    } else if !levels && s.contains('/') {
        Some(format!(
            "\"{s}\" contains `/`; it must be a single topic level"
        ))
    } else if s.split('/').any(str::is_empty) {
        Some(format!("\"{s}\" has an empty topic level"))
    } else {
        None
    };
    if let Some(msg) = problem {
        sink.push(
            Diagnostic::error(v.span.clone(), path, msg).expected(if levels {
                "topic levels without wildcards, e.g. \"twin\" or \"site1/twin\""
            } else {
                "a single topic level, e.g. \"plant1\""
            }),
        );
    }
}

/// `[[sinks.sparkplug]]`: the twin as a Sparkplug B edge node.
#[derive(Debug, Clone)]
pub struct UpstreamSparkplug {
    pub name: Loc<String>,
    /// As for `[[sinks.mqtt]]`: an external broker.
    pub connection: MqttConnection,
    /// The Sparkplug group id.
    pub group: String,
    /// The edge node id: `edge_node`, or the plant's name and the line ids
    /// as one level (`packaging-line-1-line1`).
    pub edge_node: String,
}

/// The decoded table, before the plant and lines give its defaults.
#[derive(Debug, Clone)]
pub(super) struct SparkplugDecl {
    sink: UpstreamSparkplug,
    edge_node: Option<String>,
    client_id_given: bool,
}

pub(super) fn decode_sparkplug(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<SparkplugDecl> {
    let name = t.req_str(sink, "name");
    let client_id_given = t.key_span("client_id").is_some();
    let conn = decode_connection_as(sink, &mut t, None);
    refuse_embedded(
        sink,
        &t,
        conn.broker.as_ref(),
        "a Sparkplug edge node needs an external broker",
        "publish to the broker the SCADA host (e.g. Ignition) subscribes to",
    );
    let group = t.req_str(sink, "group");
    if let Some(g) = &group {
        check_topic(sink, &t.key_path("group"), g, false);
    }
    let edge_node = t.opt_str(sink, "edge_node");
    if let Some(n) = &edge_node {
        check_topic(sink, &t.key_path("edge_node"), n, false);
    }
    t.finish(sink);
    let name = name?;
    let connection = conn.of(&name)?;
    if matches!(connection.broker.value, Broker::Embedded { .. }) {
        return None;
    }
    Some(SparkplugDecl {
        sink: UpstreamSparkplug {
            name,
            connection,
            group: group?.value,
            edge_node: String::new(),
        },
        edge_node: edge_node.map(|n| n.value),
        client_id_given,
    })
}

/// The edge nodes with the plant's and lines' defaults filled in; a
/// duplicate name is an error.
pub(super) fn resolve_sparkplug(
    sink: &mut Sink,
    decls: Vec<SparkplugDecl>,
    plant: Option<&Plant>,
    lines: &[Line],
) -> Vec<UpstreamSparkplug> {
    let mut out: Vec<UpstreamSparkplug> = Vec::new();
    for (i, d) in decls.into_iter().enumerate() {
        let taken = out.iter().map(|o| o.name.value.as_str());
        if duplicate(sink, &d.sink.name, taken, "sparkplug", i, "edge node") {
            continue;
        }
        let mut s = d.sink;
        s.edge_node = d.edge_node.unwrap_or_else(|| {
            let plant = plant.map_or_else(|| "twin".to_string(), |p| topic_level(&p.name));
            with_lines(plant, lines)
        });
        if !d.client_id_given {
            s.connection.client_id = format!("twin-spb-{}-{}", s.group, s.edge_node);
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plant_names_become_single_topic_levels() {
        assert_eq!(topic_level("Packaging line 1"), "packaging-line-1");
        assert_eq!(topic_level("a/b+#c"), "a-b-c");
        assert_eq!(topic_level("__x__"), "__x__");
        assert_eq!(topic_level("///"), "_");
    }
}
