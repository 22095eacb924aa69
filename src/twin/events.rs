//! The event stream: the core's public output.
//!
//! One JSON object per line. The format is versioned ([`EVENT_VERSION`]) and
//! documented in `docs/events.md`; changing a field is a breaking change.
//! Encoding is deterministic: same events, same bytes.

use bevy_ecs::prelude::Resource;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::sample::{Quality, Value};
use crate::config::TagId;

/// Version of the event-stream format, written into every event as `"v"`.
pub const EVENT_VERSION: u32 = 1;

/// An event the core produced on a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum TwinEvent {
    Tag(TagEvent),
    Line(LineEvent),
}

/// A modelled line's state, written once per second of tick time.
#[derive(Debug, Clone, PartialEq)]
pub struct LineEvent {
    pub t_ns: i64,
    pub line: Arc<str>,
    /// Products on the line.
    pub wip: u64,
    /// Products that left the end of the last conveyor since the start.
    pub out: u64,
    /// Products that fell off the line since the start.
    pub lost: u64,
    /// Products out over the last minute of tick time.
    pub throughput_per_min: f64,
    /// Why the event is uncertain (`speed_not_good`, `cycle_time_not_good`):
    /// some belt speed or station cycle time was not known good on some
    /// tick since the last event. `None`: good.
    pub uncertain: Option<&'static str>,
}

/// A tag's value or quality changed.
#[derive(Debug, Clone, PartialEq)]
pub struct TagEvent {
    pub t_ns: i64,
    pub tag: TagId,
    pub value: Option<Value>,
    pub quality: Quality,
    pub reason: Option<&'static str>,
    pub source_time_ns: Option<i64>,
}

/// Events produced since the driver last drained them.
#[derive(Resource, Debug, Default)]
pub struct Outbox(pub Vec<TwinEvent>);

/// Names the encoder needs, indexed by `TagId`.
#[derive(Resource, Debug, Clone, Default)]
pub struct TagMeta(pub Vec<TagMetaEntry>);

#[derive(Debug, Clone)]
pub struct TagMetaEntry {
    pub name: Arc<str>,
    pub machine: Option<Arc<str>>,
    pub unit: Option<Arc<str>>,
}

/// The last timestamp formatted, and its text.
#[derive(Debug, Default)]
pub struct LastTime {
    ns: Option<i64>,
    text: String,
}

impl LastTime {
    fn get(&mut self, ns: i64) -> &str {
        if self.ns != Some(ns) {
            self.ns = Some(ns);
            self.text = rfc3339(ns);
        }
        &self.text
    }
}

/// Formatted-timestamp cache for encoding a run of events.
#[derive(Debug, Default)]
pub struct TimeCache {
    t: LastTime,
    src: LastTime,
}

/// RFC 3339 UTC with millisecond precision, e.g. `2026-11-28T15:52:54.100Z`.
pub fn rfc3339(t_ns: i64) -> String {
    let t = if t_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(t_ns as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Serialize)]
struct TagLine<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    t: &'a str,
    tag: &'a str,
    machine: Option<&'a str>,
    value: JsonValue<'a>,
    quality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_t: Option<&'a str>,
}

#[derive(Serialize)]
struct LineLine<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    t: &'a str,
    line: &'a str,
    wip: u64,
    out: u64,
    lost: u64,
    throughput_per_min: f64,
    quality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonValue<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Text(&'a str),
}

impl TwinEvent {
    /// Append this event as one JSON line (with the trailing newline).
    pub fn write_json_line(&self, meta: &TagMeta, out: &mut Vec<u8>) {
        self.write_json_line_cached(meta, &mut TimeCache::default(), out);
    }

    /// As [`TwinEvent::write_json_line`], reusing formatted timestamps: all
    /// events of a tick share `t`, and the samples of one poll share `src_t`.
    pub fn write_json_line_cached(&self, meta: &TagMeta, times: &mut TimeCache, out: &mut Vec<u8>) {
        match self {
            TwinEvent::Tag(e) => {
                let m = meta.0.get(e.tag.index());
                let value = match &e.value {
                    None => JsonValue::Null,
                    Some(Value::Bool(b)) => JsonValue::Bool(*b),
                    Some(Value::Text(t)) => JsonValue::Text(t),
                    // JSON has no NaN; the core never lets one through as good,
                    // but never emit invalid JSON either.
                    Some(Value::Num(n)) if n.is_finite() => JsonValue::Num(*n),
                    Some(Value::Num(_)) => JsonValue::Null,
                };
                let line = TagLine {
                    v: EVENT_VERSION,
                    kind: "tag",
                    t: times.t.get(e.t_ns),
                    tag: m.map(|m| &*m.name).unwrap_or("?"),
                    machine: m.and_then(|m| m.machine.as_deref()),
                    value,
                    quality: e.quality.as_str(),
                    reason: e.reason,
                    unit: m.and_then(|m| m.unit.as_deref()),
                    src_t: e.source_time_ns.map(|ns| times.src.get(ns)),
                };
                // Serializing plain structs of strings and numbers into a Vec
                // cannot fail.
                if serde_json::to_writer(&mut *out, &line).is_ok() {
                    out.push(b'\n');
                }
            }
            TwinEvent::Line(e) => {
                let line = LineLine {
                    v: EVENT_VERSION,
                    kind: "line",
                    t: times.t.get(e.t_ns),
                    line: &e.line,
                    wip: e.wip,
                    out: e.out,
                    lost: e.lost,
                    // A count over a window: always finite.
                    throughput_per_min: e.throughput_per_min,
                    quality: if e.uncertain.is_some() {
                        Quality::Uncertain.as_str()
                    } else {
                        Quality::Good.as_str()
                    },
                    reason: e.uncertain,
                };
                if serde_json::to_writer(&mut *out, &line).is_ok() {
                    out.push(b'\n');
                }
            }
        }
    }
}
