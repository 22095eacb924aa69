//! One line of the event stream (docs/events.md), read for the report.
//!
//! Only the fields the report uses are read, and unknown fields are
//! ignored: the stream grows by additive changes, and a report must keep
//! reading files that later versions of `twin` write. An unknown event
//! `type` is counted and skipped for the same reason. What the report cannot
//! read at all (not JSON, another format version, a known type without its
//! required fields) is an error naming the line.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::series::Level;
use crate::sources::mqtt::payload::parse_rfc3339;

/// The format version the report reads.
const VERSION: u64 = 1;

#[derive(Debug, Deserialize)]
struct Raw<'a> {
    v: Option<u64>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    t: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag: Option<Cow<'a, str>>,
    #[serde(borrow)]
    machine: Option<Cow<'a, str>>,
    value: Option<serde_json::Value>,
    #[serde(borrow)]
    quality: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    unit: Option<Cow<'a, str>>,
    #[serde(borrow)]
    line: Option<Cow<'a, str>>,
    wip: Option<f64>,
    throughput_per_min: Option<f64>,
    zones: Option<BTreeMap<Cow<'a, str>, IgnoredAny>>,
    #[serde(borrow)]
    belts: Option<Vec<RawBelt<'a>>>,
    #[serde(borrow)]
    eye: Option<Cow<'a, str>>,
    #[serde(borrow)]
    residual: Option<Cow<'a, str>>,
    lag_ms: Option<f64>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow)]
    after_eye: Option<Cow<'a, str>>,
    #[serde(borrow)]
    before_eye: Option<Cow<'a, str>>,
    #[serde(borrow)]
    until: Option<Cow<'a, str>>,
    ticks: Option<u64>,
    events: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RawBelt<'a> {
    #[serde(borrow)]
    conveyor: Option<Cow<'a, str>>,
}

/// A tag's value as the report plots it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Num(f64),
    Bool(bool),
    /// `null` or text: nothing to plot.
    None,
}

/// What the report takes from one event line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Tag {
        t: i64,
        tag: Cow<'a, str>,
        machine: Option<Cow<'a, str>>,
        unit: Option<Cow<'a, str>>,
        value: Val,
        quality: Level,
        reason: Option<Cow<'a, str>>,
    },
    Line {
        t: i64,
        line: Cow<'a, str>,
        wip: f64,
        throughput: f64,
        quality: Level,
        /// Conveyor ids from `zones` and `belts` (zones also name stretches).
        conveyors: Vec<Cow<'a, str>>,
    },
    Residual {
        t: i64,
        line: Cow<'a, str>,
        eye: Cow<'a, str>,
        kind: Cow<'a, str>,
        lag_ms: Option<f64>,
    },
    Eye {
        t: i64,
        line: Cow<'a, str>,
        eye: Cow<'a, str>,
        state: Cow<'a, str>,
    },
    Jam {
        t: i64,
        line: Cow<'a, str>,
        start: bool,
        after_eye: Cow<'a, str>,
        before_eye: Option<Cow<'a, str>>,
    },
    Gap {
        t: Option<i64>,
        until: Option<i64>,
        ticks: u64,
        events: u64,
    },
    /// A type this version does not know (a later additive one), with its
    /// time if it has one.
    Other { kind: Cow<'a, str>, t: Option<i64> },
}

impl Event<'_> {
    /// The event's `type`.
    pub fn kind(&self) -> &str {
        match self {
            Event::Tag { .. } => "tag",
            Event::Line { .. } => "line",
            Event::Residual { .. } => "residual",
            Event::Eye { .. } => "eye",
            Event::Jam { .. } => "jam",
            Event::Gap { .. } => "gap",
            Event::Other { kind, .. } => kind,
        }
    }
}

/// Why a line is not an event the report can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a JSON event object: {0}")]
    Json(String),
    #[error("no `v` field: not a line of the twin's event stream")]
    NoVersion,
    #[error("format version {0}, but this twin reads version {VERSION} (docs/events.md)")]
    Version(u64),
    #[error("no `type` field")]
    NoType,
    #[error("a `{kind}` event without `{field}`")]
    Missing {
        kind: &'static str,
        field: &'static str,
    },
    #[error("`{field}` is {value:?}, not an RFC 3339 time")]
    Time { field: &'static str, value: String },
    #[error("`quality` is {0:?}; expected good, uncertain, stale or bad")]
    Quality(String),
    #[error("`state` of a jam is {0:?}; expected start or clear")]
    JamState(String),
}

fn need<T>(v: Option<T>, kind: &'static str, field: &'static str) -> Result<T, LineError> {
    v.ok_or(LineError::Missing { kind, field })
}

fn time(s: &str, field: &'static str) -> Result<i64, LineError> {
    parse_rfc3339(s).ok_or_else(|| LineError::Time {
        field,
        value: s.chars().take(40).collect(),
    })
}

fn level(s: &str) -> Result<Level, LineError> {
    Level::parse(s).ok_or_else(|| LineError::Quality(s.chars().take(40).collect()))
}

/// Read one line (without its newline).
pub fn parse(line: &[u8]) -> Result<Event<'_>, LineError> {
    let raw: Raw<'_> = serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
    match raw.v {
        None => return Err(LineError::NoVersion),
        Some(VERSION) => {}
        Some(v) => return Err(LineError::Version(v)),
    }
    let kind = raw.kind.ok_or(LineError::NoType)?;
    let t =
        |k: &'static str| -> Result<i64, LineError> { time(need(raw.t.as_deref(), k, "t")?, "t") };
    Ok(match kind.as_ref() {
        "tag" => Event::Tag {
            t: t("tag")?,
            tag: need(raw.tag, "tag", "tag")?,
            machine: raw.machine,
            unit: raw.unit,
            value: match raw.value {
                Some(serde_json::Value::Number(n)) => n.as_f64().map_or(Val::None, Val::Num),
                Some(serde_json::Value::Bool(b)) => Val::Bool(b),
                _ => Val::None,
            },
            quality: level(&need(raw.quality, "tag", "quality")?)?,
            reason: raw.reason,
        },
        "line" => {
            let mut conveyors: Vec<Cow<'_, str>> =
                raw.zones.into_iter().flat_map(|z| z.into_keys()).collect();
            for b in raw.belts.into_iter().flatten() {
                if let Some(c) = b.conveyor
                    && !conveyors.contains(&c)
                {
                    conveyors.push(c);
                }
            }
            Event::Line {
                t: t("line")?,
                line: need(raw.line, "line", "line")?,
                wip: need(raw.wip, "line", "wip")?,
                throughput: need(raw.throughput_per_min, "line", "throughput_per_min")?,
                quality: raw.quality.as_deref().map_or(Ok(Level::Good), level)?,
                conveyors,
            }
        }
        "residual" => Event::Residual {
            t: t("residual")?,
            line: need(raw.line, "residual", "line")?,
            eye: need(raw.eye, "residual", "eye")?,
            kind: need(raw.residual, "residual", "residual")?,
            lag_ms: raw.lag_ms,
        },
        "eye" => Event::Eye {
            t: t("eye")?,
            line: need(raw.line, "eye", "line")?,
            eye: need(raw.eye, "eye", "eye")?,
            state: need(raw.state, "eye", "state")?,
        },
        "jam" => {
            let state = need(raw.state, "jam", "state")?;
            let start = match state.as_ref() {
                "start" => true,
                "clear" => false,
                other => return Err(LineError::JamState(other.chars().take(40).collect())),
            };
            Event::Jam {
                t: t("jam")?,
                line: need(raw.line, "jam", "line")?,
                start,
                after_eye: need(raw.after_eye, "jam", "after_eye")?,
                before_eye: raw.before_eye,
            }
        }
        "gap" => Event::Gap {
            t: raw.t.as_deref().map(|s| time(s, "t")).transpose()?,
            until: raw.until.as_deref().map(|s| time(s, "until")).transpose()?,
            ticks: raw.ticks.unwrap_or(0),
            events: raw.events.unwrap_or(0),
        },
        _ => Event::Other {
            // A later type's time is only used for the time axis; one that
            // does not parse is no reason to refuse the file.
            t: raw.t.as_deref().and_then(parse_rfc3339),
            kind,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples_parse() {
        let tag = br#"{"v":1,"type":"tag","t":"2026-11-28T16:07:16.900Z","tag":"infeed.speed","machine":"infeed","value":0.597,"quality":"good","unit":"m/s","src_t":"2026-11-28T16:07:16.803Z"}"#;
        let Event::Tag {
            tag,
            value,
            quality,
            machine,
            ..
        } = parse(tag).expect("tag")
        else {
            panic!("not a tag event")
        };
        assert_eq!(
            (tag.as_ref(), value, quality),
            ("infeed.speed", Val::Num(0.597), Level::Good)
        );
        assert_eq!(machine.as_deref(), Some("infeed"));
        let line = br#"{"v":1,"type":"line","t":"2027-01-15T08:00:11.000Z","line":"line1","wip":6,"out":5,"lost":0,"throughput_per_min":5.0,"quality":"uncertain","reason":"speed_not_good","zones":{"main":6},"belts":[{"conveyor":"infeed","speed":0.5}]}"#;
        let Event::Line {
            wip,
            quality,
            conveyors,
            ..
        } = parse(line).expect("line")
        else {
            panic!("not a line event")
        };
        assert_eq!((wip, quality), (6.0, Level::Uncertain));
        assert_eq!(conveyors, ["main", "infeed"]);
        let jam = br#"{"v":1,"type":"jam","t":"2027-01-15T08:00:26.700Z","line":"line1","state":"start","after_eye":"e2","from_conveyor":"a","from_m":2.5,"before_eye":null,"to_conveyor":null,"to_m":null,"since":"2027-01-15T08:00:21.640Z"}"#;
        assert!(matches!(
            parse(jam),
            Ok(Event::Jam {
                start: true,
                before_eye: None,
                ..
            })
        ));
        let gap = br#"{"v":1,"type":"gap","ticks":24,"events":119}"#;
        assert!(matches!(
            parse(gap),
            Ok(Event::Gap {
                t: None,
                ticks: 24,
                ..
            })
        ));
    }

    #[test]
    fn unknown_types_and_fields_are_read_not_refused() {
        let e = parse(br#"{"v":1,"type":"alarm","t":"2027-01-15T08:00:26.700Z","severity":3}"#);
        assert!(
            matches!(e, Ok(Event::Other { ref kind, t: Some(_) }) if kind == "alarm"),
            "{e:?}"
        );
        let e = parse(br#"{"v":1,"type":"tag","t":"2027-01-15T08:00:26.700Z","tag":"a","machine":null,"value":"B-17","quality":"bad","new_field":[1]}"#);
        assert!(
            matches!(
                e,
                Ok(Event::Tag {
                    value: Val::None,
                    quality: Level::Bad,
                    ..
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn what_cannot_be_read_says_why() {
        assert!(matches!(parse(b"{\"v\":1,"), Err(LineError::Json(_))));
        assert!(matches!(parse(b"[1,2]"), Err(LineError::Json(_))));
        assert_eq!(parse(br#"{"type":"tag"}"#), Err(LineError::NoVersion));
        assert_eq!(
            parse(br#"{"v":2,"type":"tag"}"#),
            Err(LineError::Version(2))
        );
        assert_eq!(
            parse(br#"{"v":1,"type":"tag","t":"2027-01-15T08:00:26.700Z","quality":"good"}"#),
            Err(LineError::Missing {
                kind: "tag",
                field: "tag"
            })
        );
        assert!(matches!(
            parse(br#"{"v":1,"type":"line","t":"yesterday","line":"l","wip":1,"throughput_per_min":1}"#),
            Err(LineError::Time { field: "t", .. })
        ));
        assert!(matches!(
            parse(br#"{"v":1,"type":"tag","t":"2027-01-15T08:00:26.700Z","tag":"a","quality":"great"}"#),
            Err(LineError::Quality(_))
        ));
    }
}
