//! The event stream: the core's public output.
//!
//! One JSON object per line. The format is versioned ([`EVENT_VERSION`]) and
//! documented in `docs/events.md`; changing a field is a breaking change.
//! Encoding is deterministic: same events, same bytes.

use bevy_ecs::prelude::Resource;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::sample::{Quality, Reason, Value};
use crate::config::TagId;

/// Version of the event-stream format, written into every event as `"v"`.
pub const EVENT_VERSION: u32 = 1;

/// An event the core produced on a tick.
///
/// The frequent events (tags, predictions) are held inline and the rare
/// large ones boxed, so that an event is 88 bytes, not 256: thousands are
/// pushed, moved to the outbox and drained on every tick, and every byte
/// of the largest variant was copied for each of them.
#[derive(Debug, Clone, PartialEq)]
pub enum TwinEvent {
    Tag(TagEvent),
    Line(Box<LineEvent>),
    Residual(Box<ResidualEvent>),
    Eye(EyeEvent),
    Jam(Box<JamEvent>),
    /// Predictions, alarms and model errors of the ML stage (`crate::ml`).
    Ml(crate::ml::events::MlEvent),
    /// A decision of the guard about a setpoint (`crate::guard`).
    Setpoint(Box<crate::guard::events::SetpointEvent>),
}

/// A photo-eye edge the twin expected and did not measure, or measured and
/// did not expect, or measured late (see `twin::residuals`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResidualEvent {
    pub t_ns: i64,
    pub line: Arc<str>,
    pub eye: Arc<str>,
    pub tag: Arc<str>,
    /// `missing`, `extra` or `late`.
    pub kind: &'static str,
    pub expected_ns: Option<i64>,
    pub measured_ns: Option<i64>,
}

/// A photo-eye's condition changed (`ok`, `stuck_on`, `stuck_off`).
#[derive(Debug, Clone, PartialEq)]
pub struct EyeEvent {
    pub t_ns: i64,
    pub line: Arc<str>,
    pub eye: Arc<str>,
    pub tag: Arc<str>,
    pub state: &'static str,
    /// Source time of the eye's last measured level change.
    pub since_ns: i64,
}

/// A jam started or cleared, located between two photo-eyes.
#[derive(Debug, Clone, PartialEq)]
pub struct JamEvent {
    pub t_ns: i64,
    pub line: Arc<str>,
    /// `start` or `clear`.
    pub state: &'static str,
    /// The eye the queue backed up to: the jam is downstream of it.
    pub after_eye: Arc<str>,
    pub from_conveyor: Arc<str>,
    pub from_m: f64,
    /// The next eye downstream, which products no longer reach; `None`
    /// when `after_eye` is the line's last eye.
    pub before_eye: Option<Arc<str>>,
    pub to_conveyor: Option<Arc<str>>,
    pub to_m: Option<f64>,
    /// When `after_eye` went blocked (source time).
    pub since_ns: i64,
}

/// One conveyor's belt-slip estimate over a stretch between two places.
#[derive(Debug, Clone, PartialEq)]
pub struct BeltEstimate {
    pub conveyor: Arc<str>,
    /// The measured drive speed, m/s.
    pub speed: f64,
    /// Length of the stretch the estimate is over, m.
    pub over_m: f64,
    /// Transit over it at the measured speed, and as the eyes measured it.
    pub transit_expected_s: f64,
    pub transit_measured_s: f64,
    /// `1 - expected / measured`: 0 for a belt that carries at its speed,
    /// 0.1 for one whose products travel 10 % slower.
    pub slip: f64,
    /// The slip the twin's own model runs the belt at (its expectations
    /// use it), when it runs one.
    pub model_slip: Option<f64>,
}

/// A modelled line's state, written once per second of tick time.
#[derive(Debug, Clone, PartialEq)]
pub struct LineEvent {
    pub t_ns: i64,
    pub line: Arc<str>,
    /// Products on the line.
    pub wip: u64,
    /// Products that left the end of the last conveyor (that is no
    /// diverter's branch: the main outfeed) since the start.
    pub out: u64,
    /// Products that fell off the line since the start.
    pub lost: u64,
    /// Products the line's pushers pushed off since the start; `None` for
    /// a line without pushers.
    pub pushed: Option<u64>,
    /// Products that left the end of a diverter's branch conveyor since the
    /// start; `None` for a line without diverters.
    pub diverted: Option<u64>,
    /// Products out over the last minute of tick time.
    pub throughput_per_min: f64,
    /// Why the event is uncertain (`speed_not_good`, `cycle_time_not_good`,
    /// `coil_not_good`): some belt speed, station cycle time or pusher or
    /// diverter coil was not known good on some tick since the last event.
    /// `None`: good.
    pub uncertain: Option<&'static str>,
    /// Products per conveyor (zone), in config order.
    pub zones: Vec<(Arc<str>, u64)>,
    /// Belt-slip estimates of the conveyors that have one.
    pub belts: Vec<BeltEstimate>,
}

/// A tag's value or quality changed.
#[derive(Debug, Clone, PartialEq)]
pub struct TagEvent {
    pub t_ns: i64,
    pub tag: TagId,
    pub value: Option<Value>,
    pub quality: Quality,
    pub reason: Option<Reason>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pushed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diverted: Option<u64>,
    throughput_per_min: f64,
    quality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    zones: Zones<'a>,
    #[serde(skip_serializing_if = "<[BeltLine<'a>]>::is_empty")]
    belts: &'a [BeltLine<'a>],
}

/// Zone counts as one JSON object, conveyor id → count, in config order.
struct Zones<'a>(&'a [(Arc<str>, u64)]);

impl Serialize for Zones<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct BeltLine<'a> {
    conveyor: &'a str,
    speed: f64,
    over_m: f64,
    transit_expected_s: f64,
    transit_measured_s: f64,
    slip: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_slip: Option<f64>,
}

#[derive(Serialize)]
struct ResidualLine<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    t: &'a str,
    line: &'a str,
    eye: &'a str,
    tag: &'a str,
    residual: &'static str,
    expected_t: Option<String>,
    measured_t: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_ms: Option<i64>,
}

#[derive(Serialize)]
struct EyeLine<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    t: &'a str,
    line: &'a str,
    eye: &'a str,
    tag: &'a str,
    state: &'static str,
    since: String,
}

#[derive(Serialize)]
struct JamLine<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    t: &'a str,
    line: &'a str,
    state: &'static str,
    after_eye: &'a str,
    from_conveyor: &'a str,
    from_m: f64,
    before_eye: Option<&'a str>,
    to_conveyor: Option<&'a str>,
    to_m: Option<f64>,
    since: String,
}

/// Round to millimetres / milliseconds-ish for the stream: estimates carry
/// no more precision than that, and short numbers keep lines readable.
fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonValue<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Text(&'a str),
}

/// Appends one encoded event and its newline. Serializing plain structs of
/// strings and numbers into a `Vec` cannot fail; if it ever did, nothing
/// (not half a line) is written.
fn push_line<T: Serialize>(out: &mut Vec<u8>, line: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, line).is_ok() {
        out.push(b'\n');
    } else {
        out.truncate(start);
    }
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
                    reason: e.reason.map(Reason::as_str),
                    unit: m.and_then(|m| m.unit.as_deref()),
                    src_t: e.source_time_ns.map(|ns| times.src.get(ns)),
                };
                push_line(out, &line);
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
                    pushed: e.pushed,
                    diverted: e.diverted,
                    // A count over a window: always finite.
                    throughput_per_min: e.throughput_per_min,
                    quality: if e.uncertain.is_some() {
                        Quality::Uncertain.as_str()
                    } else {
                        Quality::Good.as_str()
                    },
                    reason: e.uncertain,
                    zones: Zones(&e.zones),
                    belts: &e
                        .belts
                        .iter()
                        .map(|b| BeltLine {
                            conveyor: &b.conveyor,
                            speed: round3(b.speed),
                            over_m: round3(b.over_m),
                            transit_expected_s: round3(b.transit_expected_s),
                            transit_measured_s: round3(b.transit_measured_s),
                            slip: round3(b.slip),
                            model_slip: b.model_slip.map(round3),
                        })
                        .collect::<Vec<_>>(),
                };
                push_line(out, &line);
            }
            TwinEvent::Residual(e) => {
                let line = ResidualLine {
                    v: EVENT_VERSION,
                    kind: "residual",
                    t: times.t.get(e.t_ns),
                    line: &e.line,
                    eye: &e.eye,
                    tag: &e.tag,
                    residual: e.kind,
                    expected_t: e.expected_ns.map(rfc3339),
                    measured_t: e.measured_ns.map(rfc3339),
                    lag_ms: e
                        .expected_ns
                        .zip(e.measured_ns)
                        .map(|(x, m)| (m - x) / 1_000_000),
                };
                push_line(out, &line);
            }
            TwinEvent::Eye(e) => {
                let line = EyeLine {
                    v: EVENT_VERSION,
                    kind: "eye",
                    t: times.t.get(e.t_ns),
                    line: &e.line,
                    eye: &e.eye,
                    tag: &e.tag,
                    state: e.state,
                    since: rfc3339(e.since_ns),
                };
                push_line(out, &line);
            }
            TwinEvent::Jam(e) => {
                let line = JamLine {
                    v: EVENT_VERSION,
                    kind: "jam",
                    t: times.t.get(e.t_ns),
                    line: &e.line,
                    state: e.state,
                    after_eye: &e.after_eye,
                    from_conveyor: &e.from_conveyor,
                    from_m: e.from_m,
                    before_eye: e.before_eye.as_deref(),
                    to_conveyor: e.to_conveyor.as_deref(),
                    to_m: e.to_m,
                    since: rfc3339(e.since_ns),
                };
                push_line(out, &line);
            }
            TwinEvent::Ml(e) => {
                let start = out.len();
                e.write_json(times.t.get(e.t_ns()), out);
                if out.len() > start {
                    out.push(b'\n');
                }
            }
            TwinEvent::Setpoint(e) => {
                let start = out.len();
                if e.write_json(times.t.get(e.t_ns), out).is_ok() {
                    out.push(b'\n');
                } else {
                    out.truncate(start);
                }
            }
        }
    }
}
