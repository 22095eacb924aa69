//! `[[sources.mqtt.topics]]`: topic patterns (wildcards and `{machine}`
//! captures) and how their payloads carry a value and its timestamp.

use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table, check_tag_name};
use super::diagnostics::{Diagnostic, closest};

/// How a timestamp inside a payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
    /// An RFC 3339 string, e.g. "2026-11-28T16:07:16.803Z".
    Rfc3339,
}

impl TimeUnit {
    pub const NAMES: &'static [&'static str] = &["s", "ms", "us", "ns", "rfc3339"];

    fn from_name(s: &str) -> Self {
        match s {
            "s" => TimeUnit::Seconds,
            "us" => TimeUnit::Micros,
            "ns" => TimeUnit::Nanos,
            "rfc3339" => TimeUnit::Rfc3339,
            _ => TimeUnit::Millis,
        }
    }

    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("sec", "s"),
        ("seconds", "s"),
        ("epoch", "s"),
        ("unix", "s"),
        ("millis", "ms"),
        ("milliseconds", "ms"),
        ("epoch_ms", "ms"),
        ("micros", "us"),
        ("microseconds", "us"),
        ("nanos", "ns"),
        ("nanoseconds", "ns"),
        ("iso8601", "rfc3339"),
        ("iso", "rfc3339"),
        ("datetime", "rfc3339"),
    ];
}

/// A timestamp field of a JSON payload: the device's own measurement time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeField {
    pub path: Vec<String>,
    pub unit: TimeUnit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The payload is a number as text, e.g. `21.5` (also `true`/`false`).
    Number,
    /// The payload is a JSON object; the value sits at this field path, and
    /// its timestamp, if configured, at `time`.
    Json {
        field: Vec<String>,
        time: Option<TimeField>,
    },
    /// The payload is a JSON array of samples, each carrying its own
    /// timestamp: `[{"ts": 1732800000123, "v": 1.2}, ...]`. `array` is the
    /// path to the array (empty: the payload is the array); `field` and
    /// `time` are paths inside each element.
    JsonSamples {
        array: Vec<String>,
        field: Vec<String>,
        time: TimeField,
    },
}

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLevel {
    Exact(String),
    /// `+`: any one level.
    Any,
    /// `#`: any number of levels, including none; always last.
    Rest,
    /// `{machine}`: any one level, which names the machine (and so the tag).
    Machine,
}

/// A topic as written in the config, split into levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    pub levels: Vec<TopicLevel>,
}

impl TopicPattern {
    /// The subscription filter: captures become `+`.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                TopicLevel::Exact(s) => s.as_str(),
                TopicLevel::Any | TopicLevel::Machine => "+",
                TopicLevel::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Whether the pattern is one concrete topic (no wildcard, no capture).
    pub fn is_exact(&self) -> bool {
        self.levels
            .iter()
            .all(|l| matches!(l, TopicLevel::Exact(_)))
    }

    /// Whether the pattern has a `{machine}` capture.
    pub fn captures_machine(&self) -> bool {
        self.levels.contains(&TopicLevel::Machine)
    }

    /// A concrete topic the pattern matches, for a publisher (the virtual
    /// plant): `{machine}` becomes `machine`, `+` and `#` become `fill`.
    pub fn instance(&self, machine: Option<&str>, fill: &str) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                TopicLevel::Exact(s) => s.as_str(),
                TopicLevel::Machine => machine.unwrap_or(fill),
                TopicLevel::Any | TopicLevel::Rest => fill,
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The capture a topic may name; see [`TopicPattern`].
pub const MACHINE_CAPTURE: &str = "{machine}";

#[derive(Debug, Clone)]
pub struct TopicMap {
    /// The topic as written (may hold `+`, `#` and `{machine}`).
    pub topic: Loc<String>,
    pub pattern: TopicPattern,
    /// The tag as written; with a `{machine}` capture it holds `{machine}`
    /// too, and declares one tag per entry of `machines`.
    pub tag: Loc<String>,
    /// With a `{machine}` capture: the machines whose topics are mapped.
    pub machines: Vec<Loc<String>>,
    /// With a `{machine}` capture: the role the tags play in their machine.
    pub role: Option<Loc<String>>,
    pub payload: Payload,
    pub qos: u8,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    /// Overrides the source's (and the plant's) `stale_after` for this tag.
    pub stale_after: Option<Duration>,
}

impl TopicMap {
    /// The tags this entry declares, with the machine each one is for: one
    /// tag, or one per listed machine with a `{machine}` capture.
    pub fn tag_names(&self) -> Vec<(String, Option<&str>)> {
        if self.pattern.captures_machine() {
            self.machines
                .iter()
                .map(|m| {
                    (
                        self.tag.value.replace(MACHINE_CAPTURE, &m.value),
                        Some(m.value.as_str()),
                    )
                })
                .collect()
        } else {
            vec![(self.tag.value.clone(), None)]
        }
    }

    /// The role tags of a `{machine}` capture play: `role`, else the tag
    /// with `{machine}` and the separator after it removed
    /// (`{machine}.vibration` → `vibration`).
    pub fn capture_role(&self) -> Option<String> {
        if let Some(r) = &self.role {
            return Some(r.value.clone());
        }
        let rest = self
            .tag
            .value
            .replace(MACHINE_CAPTURE, "")
            .trim_matches(['.', '_', '-'])
            .to_string();
        (!rest.is_empty()).then_some(rest)
    }
}

/// Split a topic into levels, checking MQTT's rules for wildcards and ours
/// for captures.
fn parse_topic(sink: &mut Sink, path: &str, topic: &Loc<String>) -> Option<TopicPattern> {
    let mut levels = Vec::new();
    let mut problems = Vec::new();
    let raw: Vec<&str> = topic.value.split('/').collect();
    for (i, level) in raw.iter().enumerate() {
        let l = match *level {
            "+" => TopicLevel::Any,
            "#" if i + 1 == raw.len() => TopicLevel::Rest,
            "#" => {
                problems.push(("`#` must be the last level of a topic".to_string(), None));
                continue;
            }
            MACHINE_CAPTURE if levels.contains(&TopicLevel::Machine) => {
                problems.push((
                    "`{machine}` may appear only once in a topic".to_string(),
                    None,
                ));
                continue;
            }
            MACHINE_CAPTURE => TopicLevel::Machine,
            s if s.starts_with('{') && s.ends_with('}') => {
                let name = &s[1..s.len() - 1];
                problems.push((
                    format!("unknown capture `{s}` in topic"),
                    Some(match closest(name, ["machine"]) {
                        Some(_) => "did you mean `{machine}`?".to_string(),
                        None => "`{machine}` is the only capture; use `+` to match any level"
                            .to_string(),
                    }),
                ));
                continue;
            }
            s if s.contains(['+', '#']) => {
                problems.push((
                    format!("wildcard inside the topic level \"{s}\""),
                    Some(
                        "`+` and `#` must stand alone between slashes, e.g. \"plant/+/vibration\""
                            .to_string(),
                    ),
                ));
                continue;
            }
            s if s.contains(['{', '}']) => {
                problems.push((
                    format!("capture inside the topic level \"{s}\""),
                    Some("`{machine}` must stand alone between slashes, e.g. \"plant/{machine}/vibration\"".to_string()),
                ));
                continue;
            }
            s => TopicLevel::Exact(s.to_string()),
        };
        levels.push(l);
    }
    if problems.is_empty() {
        return Some(TopicPattern { levels });
    }
    for (msg, help) in problems {
        sink.push(
            Diagnostic::error(topic.span.clone(), path, msg)
                .expected("a topic; `+` matches one level, `#` the rest, `{machine}` one level naming a machine")
                .maybe_help(help),
        );
    }
    None
}

/// A dot-separated path into a JSON document, or a diagnostic.
fn field_path(sink: &mut Sink, path: &str, f: &Loc<String>) -> Option<Vec<String>> {
    let segs: Vec<String> = f.value.split('.').map(str::to_string).collect();
    if segs.iter().any(|s| s.is_empty()) {
        sink.push(
            Diagnostic::error(
                f.span.clone(),
                path,
                format!("invalid field path \"{}\"", f.value),
            )
            .expected("dot-separated keys, e.g. \"data.rms\" or \"values.0\""),
        );
        return None;
    }
    Some(segs)
}

pub(super) fn decode_topic(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<TopicMap> {
    let topic = t.req_str(sink, "topic");
    let pattern = topic
        .as_ref()
        .and_then(|tp| parse_topic(sink, &t.key_path("topic"), tp));
    let tag = t.req_str(sink, "tag");
    let machines = t.opt_str_array(sink, "machines");
    let role = t.opt_str(sink, "role");
    let format = t.opt_enum(sink, "payload", &["number", "json", "json_samples"]);
    let field = t.opt_str(sink, "field");
    let time_field = t.opt_str(sink, "time_field");
    let time_unit = t.opt_enum_aliased(sink, "time_unit", TimeUnit::NAMES, TimeUnit::ALIASES);
    let array_field = t.opt_str(sink, "array_field");
    let qos = t
        .opt_int(sink, "qos", 0, 1)
        .map(|q| q.value as u8)
        .unwrap_or(1);
    let scale = match t.opt_f64(sink, "scale") {
        Some(s) if s.value == 0.0 => {
            sink.push(
                Diagnostic::error(s.span.clone(), t.key_path("scale"), "scale must not be 0")
                    .expected("a non-zero number; engineering value = payload * scale + offset"),
            );
            1.0
        }
        Some(s) => s.value,
        None => 1.0,
    };
    let offset = t.opt_f64(sink, "offset").map(|v| v.value).unwrap_or(0.0);
    let unit = t.opt_str(sink, "unit").map(|u| u.value);
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);

    // The `{machine}` capture, the tag template and the machines list must
    // agree, so that every tag the entry declares is known at check time.
    let mut capture_ok = true;
    let captures = pattern.as_ref().is_some_and(|p| p.captures_machine());
    if let Some(tag) = &tag {
        let templated = tag.value.contains(MACHINE_CAPTURE);
        if !templated {
            check_tag_name(sink, &t.key_path("tag"), tag);
        } else if let Some(bad) = tag
            .value
            .replace(MACHINE_CAPTURE, "")
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            // The template's own characters; each expanded name is checked
            // again once the machine ids are known.
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("tag"),
                    format!("tag name \"{}\" contains {:?}", tag.value, bad),
                )
                .expected(
                    "letters, digits, `_`, `.`, `-` and `{machine}`, e.g. \"{machine}.vibration\"",
                ),
            );
        }
        if pattern.is_some() && templated && !captures {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("tag"),
                    "the tag uses `{machine}`, but the topic has no `{machine}` level",
                )
                .expected("a topic with a `{machine}` level, e.g. \"plant/{machine}/vibration\""),
            );
        }
        if captures && !templated {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("tag"),
                    "the topic captures `{machine}`, but the tag does not use it",
                )
                .expected("a tag naming the machine, e.g. \"{machine}.vibration\"")
                .help(
                    "to feed one tag from every machine's topic, write `+` instead of `{machine}`",
                ),
            );
        }
    }
    match (&machines, captures) {
        (None, true) => {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    topic.as_ref().map_or(t.span(), |tp| tp.span.clone()),
                    t.key_path("machines"),
                    "missing required key `machines` for a topic with a `{machine}` level",
                )
                .expected("the ids of the machines whose topics are mapped, e.g. machines = [\"filler\", \"capper\"]")
                .help("the list lets `twin check` know every tag the topic declares"),
            );
        }
        (Some(list), true) if list.is_empty() => {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    t.key_span("machines").unwrap_or(t.span()),
                    t.key_path("machines"),
                    "must name at least one machine",
                )
                .expected("the ids of the machines whose topics are mapped, e.g. machines = [\"filler\", \"capper\"]"),
            );
        }
        (Some(list), true) => {
            for (k, m) in list.iter().enumerate() {
                if list[..k].iter().any(|o| o.value == m.value) {
                    capture_ok = false;
                    sink.push(
                        Diagnostic::error(
                            m.span.clone(),
                            format!("{}[{k}]", t.key_path("machines")),
                            format!("machine \"{}\" is listed twice", m.value),
                        )
                        .help("remove the repeated entry"),
                    );
                }
            }
        }
        (Some(_), false) if pattern.is_some() => {
            sink.push(
                Diagnostic::error(
                    t.key_span("machines").unwrap_or(t.span()),
                    t.key_path("machines"),
                    "`machines` only applies to a topic with a `{machine}` level",
                )
                .help("write the topic as e.g. \"plant/{machine}/vibration\" and the tag as \"{machine}.vibration\", or remove `machines`"),
            );
        }
        _ => {}
    }
    if let Some(r) = &role
        && pattern.is_some()
        && !captures
    {
        sink.push(
            Diagnostic::error(
                r.span.clone(),
                t.key_path("role"),
                "`role` only applies to a topic with a `{machine}` level",
            )
            .help("bind the tag to a role under `[machines.tags]` instead"),
        );
    }
    if let Some(r) = &role
        && r.value.trim().is_empty()
    {
        capture_ok = false;
        sink.push(
            Diagnostic::error(r.span.clone(), t.key_path("role"), "must not be empty")
                .expected("a role name such as \"vibration\""),
        );
    }
    if captures
        && role.is_none()
        && let Some(tag) = &tag
        && tag
            .value
            .replace(MACHINE_CAPTURE, "")
            .trim_matches(['.', '_', '-'])
            .is_empty()
    {
        capture_ok = false;
        sink.push(
            Diagnostic::error(
                tag.span.clone(),
                t.key_path("role"),
                "missing key `role`: the tag names only the machine",
            )
            .expected("a role for the tags in their machine, e.g. role = \"vibration\""),
        );
    }

    // An unknown `payload` is reported already; checking the payload keys
    // against a guess would only add noise.
    let payload_unknown = format.is_none() && t.key_span("payload").is_some();
    let kind = format.as_ref().map_or("number", |f| f.value);
    let path_of = |sink: &mut Sink, key: &str, f: &Option<Loc<String>>| {
        f.as_ref()
            .map(|f| field_path(sink, &t.key_path(key), f).ok_or(()))
            .transpose()
    };
    let field_p = path_of(sink, "field", &field);
    let time_p = path_of(sink, "time_field", &time_field);
    let array_p = path_of(sink, "array_field", &array_field);
    let unit_of_time = time_unit
        .as_ref()
        .map_or(TimeUnit::Millis, |u| TimeUnit::from_name(u.value));
    let not_for = |sink: &mut Sink, key: &'static str, v: &Option<Loc<String>>, only: &str| {
        if let Some(v) = v {
            sink.push(
                Diagnostic::error(
                    v.span.clone(),
                    t.key_path(key),
                    format!("`{key}` only applies to {only}"),
                )
                .help(format!("remove `{key}`, or set the payload it belongs to")),
            );
        }
    };
    let missing = |sink: &mut Sink, key: &str, expected: &str| {
        sink.push(
            Diagnostic::error(
                t.span(),
                t.key_path(key),
                format!("missing required key `{key}` for payload = \"{kind}\""),
            )
            .expected(expected.to_string()),
        );
    };
    if time_field.is_none()
        && kind != "json_samples"
        && let Some(u) = &time_unit
    {
        sink.push(
            Diagnostic::error(
                u.span.clone(),
                t.key_path("time_unit"),
                "`time_unit` only applies with `time_field`",
            )
            .help("add `time_field`, or remove `time_unit`"),
        );
    }
    let payload = match kind {
        _ if payload_unknown => None,
        "json" => {
            not_for(
                sink,
                "array_field",
                &array_field,
                "payload = \"json_samples\"",
            );
            if field.is_none() {
                missing(
                    sink,
                    "field",
                    "a field path such as \"rms\" or \"data.value\"",
                );
            }
            match (field_p, time_p) {
                (Ok(Some(field)), Ok(time)) => Some(Payload::Json {
                    field,
                    time: time.map(|path| TimeField {
                        path,
                        unit: unit_of_time,
                    }),
                }),
                _ => None,
            }
        }
        "json_samples" => {
            if field.is_none() {
                missing(
                    sink,
                    "field",
                    "the value's field inside each sample, e.g. \"v\"",
                );
            }
            if time_field.is_none() {
                missing(
                    sink,
                    "time_field",
                    "the timestamp's field inside each sample, e.g. \"ts\"",
                );
            }
            match (field_p, time_p, array_p) {
                (Ok(Some(field)), Ok(Some(path)), Ok(array)) => Some(Payload::JsonSamples {
                    array: array.unwrap_or_default(),
                    field,
                    time: TimeField {
                        path,
                        unit: unit_of_time,
                    },
                }),
                _ => None,
            }
        }
        _ => {
            let json = "payload = \"json\" or \"json_samples\"";
            if let Some(f) = &field {
                sink.push(
                    Diagnostic::error(
                        f.span.clone(),
                        t.key_path("field"),
                        format!("`field` only applies to {json}"),
                    )
                    .help("add `payload = \"json\"` or remove `field`"),
                );
            }
            not_for(sink, "time_field", &time_field, json);
            not_for(
                sink,
                "array_field",
                &array_field,
                "payload = \"json_samples\"",
            );
            (field.is_none() && time_field.is_none() && array_field.is_none())
                .then_some(Payload::Number)
        }
    };
    t.finish(sink);
    match (topic, pattern, tag, payload) {
        (Some(topic), Some(pattern), Some(tag), Some(payload)) if capture_ok => Some(TopicMap {
            topic,
            pattern,
            tag,
            machines: machines.unwrap_or_default(),
            role,
            payload,
            qos,
            scale,
            offset,
            unit,
            stale_after,
        }),
        (_, _, tag, _) => {
            // The tags it meant to declare: the template itself, and each
            // expansion that can be made.
            if let Some(tag) = tag {
                for m in machines.iter().flatten() {
                    sink.broken_tags
                        .insert(tag.value.replace(MACHINE_CAPTURE, &m.value));
                }
                sink.broken_tags.insert(tag.value);
            }
            None
        }
    }
}
