//! The recording format, version 2: channels, schemas and metadata.
//!
//! Every file of a recording is a complete MCAP file on its own:
//! - a `twin.recording` metadata record ([`RecordingInfo`]) and the config's
//!   text as the attachment `plant.toml`, both before any message, so a file
//!   cut off by a crash still says what it is;
//! - the model files the run ran, as attachments `models/<id>.onnx`, also
//!   before any message;
//! - one channel per tag, topic `/tag/<tag name>`, schema `twin.TagSample`
//!   in protobuf ([`super::proto`]; JSON in version 1, still read): every
//!   sample exactly as the core received it, after the receive-time clamp,
//!   in push order (file order is push order);
//! - `/twin/events`, schema `twin.Event`: every event line the core wrote,
//!   one message per line, so a recording carries its own expected output;
//! - `/twin/ticks`, schema `twin.Tick`: the tick reached, at every flush and
//!   at the end, so a replay runs exactly as many ticks as the run did;
//! - `/twin/guard`, schema `twin.GuardInput`, only in runs with a guard that
//!   took an input from outside: operators' commands, write outcomes and
//!   read-backs, link flags, the kill switch (`guard::inputs`), so a replay
//!   decides as the run did. A reader that predates it skips the channel.
//!
//! Events and ticks are JSON with a JSON Schema. Foxglove plots both kinds
//! directly (`/tag/infeed.speed.num`, `/twin/events{type=="line"}.wip`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RecordingError;
use crate::twin::record::{RecordValue, SampleRecord};
use crate::twin::{Quality, Reason};

/// The version this twin writes and the newest it reads. Version 2 (tag
/// samples in protobuf) reads version 1 (tag samples in JSON) too.
pub const FORMAT_VERSION: u32 = 2;
/// MCAP profile of a twin recording.
pub const PROFILE: &str = "twin";
/// Name of the metadata record holding [`RecordingInfo`].
pub const METADATA_NAME: &str = "twin.recording";
/// Name of the attachment holding the config's text.
pub const CONFIG_ATTACHMENT: &str = "plant.toml";
/// Attachments `models/<id>.onnx` hold the model files the run ran, so a
/// replay under the recording's own config runs the very same models.
pub const MODEL_ATTACHMENT_PREFIX: &str = "models/";

/// A model file a recording carries: the model's id and the file's bytes.
pub type ModelFile = (String, std::sync::Arc<[u8]>);

/// The model files of `cfg`'s models, by id, as a recording carries them
/// (a file that cannot be read is left out; its hash says `unreadable`).
pub fn model_files(cfg: &crate::config::LoadedConfig) -> Vec<ModelFile> {
    cfg.ml
        .models
        .iter()
        .filter_map(|m| {
            let bytes = cfg.ml.model_bytes(m).ok()?;
            Some((m.id.value.clone(), std::sync::Arc::from(bytes.as_ref())))
        })
        .collect()
}

pub const TAG_TOPIC_PREFIX: &str = "/tag/";
pub const EVENTS_TOPIC: &str = "/twin/events";
pub const TICKS_TOPIC: &str = "/twin/ticks";
pub const GUARD_TOPIC: &str = "/twin/guard";

pub const SAMPLE_SCHEMA_NAME: &str = "twin.TagSample";
pub const EVENT_SCHEMA_NAME: &str = "twin.Event";
pub const TICK_SCHEMA_NAME: &str = "twin.Tick";
pub const GUARD_SCHEMA_NAME: &str = "twin.GuardInput";

/// The JSON Schema of version 1's tag samples (read, no longer written).
pub const SAMPLE_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "twin.TagSample",
  "description": "One sample of a tag as the twin's core received it (docs/recordings.md).",
  "type": "object",
  "properties": {
    "tick": {"type": "integer", "description": "The tick that had run when the sample was pushed; it is applied on a later one."},
    "value": {"type": ["number", "boolean", "string", "null"], "description": "Engineering value; null without a value; the strings NaN, inf and -inf for numbers JSON cannot hold."},
    "text": {"type": "string", "description": "The value of a text tag (then value is absent)."},
    "quality": {"type": "string", "enum": ["good", "uncertain", "bad", "stale"]},
    "reason": {"type": "string", "description": "Why the quality is not good (docs/events.md, reason codes)."},
    "src_ns": {"type": "integer", "description": "Source time, ns since the Unix epoch."},
    "recv_ns": {"type": "integer", "description": "Receive time after the clamp, ns since the Unix epoch."}
  },
  "required": ["tick", "quality", "src_ns", "recv_ns"]
}"#;

pub const EVENT_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "twin.Event",
  "description": "One line of the twin's event stream, version 1 (docs/events.md).",
  "type": "object",
  "properties": {
    "v": {"type": "integer"},
    "type": {"type": "string"},
    "t": {"type": "string", "format": "date-time"}
  },
  "required": ["v", "type"],
  "additionalProperties": true
}"#;

pub const TICK_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "twin.Tick",
  "description": "The tick the run had reached.",
  "type": "object",
  "properties": {
    "tick": {"type": "integer"},
    "t_ns": {"type": "integer"}
  },
  "required": ["tick", "t_ns"]
}"#;

pub const GUARD_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "twin.GuardInput",
  "description": "An input the guard took from outside the core, while `tick` was the last tick run (docs/recordings.md, docs/guard.md).",
  "type": "object",
  "properties": {
    "tick": {"type": "integer"},
    "input": {"type": "string", "enum": ["writer", "outcome", "link", "propose", "approve", "reject", "reset", "kill", "audit_failed"]}
  },
  "required": ["tick", "input"],
  "additionalProperties": true
}"#;

/// What a recording file says about itself (the `twin.recording` metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub format_version: u32,
    /// The twin that wrote it (`CARGO_PKG_VERSION`), or `import`.
    pub twin_version: String,
    pub plant: String,
    /// The config file's path as given to the run (for people; a replay
    /// uses the attached text or the config it is given).
    pub config_path: String,
    /// `sha256:` and the hex digest of the config's text.
    pub config_hash: String,
    /// The tick period, ns.
    pub tick_ns: i64,
    /// Time of tick 0, ns since the Unix epoch.
    pub epoch_ns: i64,
    /// Wall time the run started, RFC 3339 (for people).
    pub started_at: String,
    /// Which file of a rotated recording this is, from 1.
    pub part: u32,
    /// The tick that had run when this file started (0 for the first).
    pub first_tick: u64,
    /// How the samples got here: `live`, `headless`, `import`.
    pub origin: String,
    /// The model files the run's config loads, by model id: `sha256:` and
    /// the file's digest (`unreadable` if it could not be read). A replay
    /// whose model files differ says so: its predictions may differ.
    pub models: Vec<(String, String)>,
}

impl RecordingInfo {
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        [
            ("format_version", self.format_version.to_string()),
            ("twin_version", self.twin_version.clone()),
            ("plant", self.plant.clone()),
            ("config_path", self.config_path.clone()),
            ("config_hash", self.config_hash.clone()),
            ("tick_ns", self.tick_ns.to_string()),
            ("epoch_ns", self.epoch_ns.to_string()),
            ("started_at", self.started_at.clone()),
            ("part", self.part.to_string()),
            ("first_tick", self.first_tick.to_string()),
            ("origin", self.origin.clone()),
        ]
        .into_iter()
        .chain((!self.models.is_empty()).then(|| {
            let list: Vec<String> = self
                .models
                .iter()
                .map(|(id, h)| format!("{id}={h}"))
                .collect();
            ("models", list.join(";"))
        }))
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn from_metadata(
        path: &Path,
        m: &BTreeMap<String, String>,
    ) -> Result<RecordingInfo, RecordingError> {
        let text = |k: &str| -> Result<String, RecordingError> {
            m.get(k).cloned().ok_or_else(|| {
                RecordingError::invalid(
                    path,
                    format!("the `{METADATA_NAME}` metadata has no `{k}`"),
                )
            })
        };
        fn num<T: std::str::FromStr>(path: &Path, k: &str, v: String) -> Result<T, RecordingError> {
            v.parse().map_err(|_| {
                RecordingError::invalid(
                    path,
                    format!("the `{METADATA_NAME}` metadata's `{k}` is {v:?}, not a number"),
                )
            })
        }
        let format_version: u32 = num(path, "format_version", text("format_version")?)?;
        if format_version > FORMAT_VERSION {
            return Err(RecordingError::TooNew {
                path: path.to_path_buf(),
                found: format_version,
            });
        }
        let tick_ns: i64 = num(path, "tick_ns", text("tick_ns")?)?;
        if tick_ns <= 0 {
            return Err(RecordingError::invalid(
                path,
                format!("the `{METADATA_NAME}` metadata's tick_ns is {tick_ns}, not above zero"),
            ));
        }
        Ok(RecordingInfo {
            format_version,
            twin_version: text("twin_version")?,
            plant: text("plant")?,
            config_path: text("config_path")?,
            config_hash: text("config_hash")?,
            tick_ns,
            epoch_ns: num(path, "epoch_ns", text("epoch_ns")?)?,
            started_at: text("started_at")?,
            part: num(path, "part", text("part")?)?,
            first_tick: num(path, "first_tick", text("first_tick")?)?,
            origin: text("origin")?,
            // Absent before models ran, and when the config has none.
            models: m
                .get("models")
                .map(|list| {
                    list.split(';')
                        .filter_map(|e| e.split_once('='))
                        .map(|(id, h)| (id.to_string(), h.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The time of tick `n` of the recorded run.
    pub fn time_of(&self, n: u64) -> i64 {
        self.epoch_ns.saturating_add(
            self.tick_ns
                .saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)),
        )
    }
}

/// `sha256:<hex>` of a config's text, as a recording names its config.
pub fn config_hash(text: &str) -> String {
    content_hash(text.as_bytes())
}

/// The model files `cfg` runs, by id, each as `sha256:<hex>` of the file
/// (`unreadable` if it cannot be read): what a recording notes of them.
pub fn model_hashes(cfg: &crate::config::LoadedConfig) -> Vec<(String, String)> {
    cfg.ml
        .models
        .iter()
        .map(|m| {
            let h = cfg
                .ml
                .model_bytes(m)
                .map(|b| content_hash(&b))
                .unwrap_or_else(|_| "unreadable".to_string());
            (m.id.value.clone(), h)
        })
        .collect()
}

/// `sha256:<hex>` of some bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A version 1 `twin.TagSample` message, JSON (the tag is the channel's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleMessage {
    pub tick: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<MessageValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub quality: Quality,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub src_ns: i64,
    pub recv_ns: i64,
}

/// A sample's value as a message writes it: numbers and booleans as
/// themselves, numbers JSON cannot hold as `"NaN"`, `"inf"`, `"-inf"`.
/// (Text goes in the message's `text`, so a string here is never text.)
///
/// Deserialized by hand: serde's untagged enums buffer the value and try
/// each variant in turn, building an error for each miss, which was a fifth
/// of a replay's time.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageValue {
    Bool(bool),
    Num(f64),
    NonFinite(NonFinite),
}

impl Serialize for MessageValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageValue::Bool(b) => s.serialize_bool(*b),
            MessageValue::Num(n) => s.serialize_f64(*n),
            MessageValue::NonFinite(n) => n.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for MessageValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MessageValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, a boolean, or \"NaN\", \"inf\", \"-inf\"")
            }
            fn visit_bool<E>(self, b: bool) -> Result<MessageValue, E> {
                Ok(MessageValue::Bool(b))
            }
            fn visit_f64<E>(self, n: f64) -> Result<MessageValue, E> {
                Ok(MessageValue::Num(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<MessageValue, E> {
                Ok(MessageValue::Num(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<MessageValue, E> {
                Ok(MessageValue::Num(n as f64))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MessageValue, E> {
                match s {
                    "NaN" => Ok(MessageValue::NonFinite(NonFinite::Nan)),
                    "inf" => Ok(MessageValue::NonFinite(NonFinite::Inf)),
                    "-inf" => Ok(MessageValue::NonFinite(NonFinite::NegInf)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NonFinite {
    #[serde(rename = "NaN")]
    Nan,
    #[serde(rename = "inf")]
    Inf,
    #[serde(rename = "-inf")]
    NegInf,
}

impl SampleMessage {
    pub fn from_record(tick: u64, r: &SampleRecord) -> Self {
        let (value, text) = match &r.value {
            None => (None, None),
            Some(RecordValue::Bool(b)) => (Some(MessageValue::Bool(*b)), None),
            Some(RecordValue::Num(n)) => (Some(MessageValue::from_f64(*n)), None),
            Some(RecordValue::Text(t)) => (None, Some(t.clone())),
        };
        SampleMessage {
            tick,
            value,
            text,
            quality: r.quality,
            reason: r.reason,
            src_ns: r.source_time_ns,
            recv_ns: r.recv_time_ns,
        }
    }

    pub fn into_record(self, tag: std::sync::Arc<str>) -> SampleRecord {
        let value = match (self.value, self.text) {
            (_, Some(t)) => Some(RecordValue::Text(t)),
            (Some(MessageValue::Bool(b)), None) => Some(RecordValue::Bool(b)),
            (Some(MessageValue::Num(n)), None) => Some(RecordValue::Num(n)),
            (Some(MessageValue::NonFinite(n)), None) => Some(RecordValue::Num(match n {
                NonFinite::Nan => f64::NAN,
                NonFinite::Inf => f64::INFINITY,
                NonFinite::NegInf => f64::NEG_INFINITY,
            })),
            (None, None) => None,
        };
        SampleRecord {
            tag,
            value,
            quality: self.quality,
            reason: self.reason,
            source_time_ns: self.src_ns,
            recv_time_ns: self.recv_ns,
        }
    }
}

impl MessageValue {
    fn from_f64(n: f64) -> Self {
        if n.is_finite() {
            MessageValue::Num(n)
        } else if n.is_nan() {
            MessageValue::NonFinite(NonFinite::Nan)
        } else if n > 0.0 {
            MessageValue::NonFinite(NonFinite::Inf)
        } else {
            MessageValue::NonFinite(NonFinite::NegInf)
        }
    }
}

/// A `twin.Tick` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickMessage {
    pub tick: u64,
    pub t_ns: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: Option<RecordValue>) -> SampleRecord {
        SampleRecord {
            tag: "a.b".into(),
            value,
            quality: Quality::Good,
            reason: None,
            source_time_ns: 5,
            recv_time_ns: 7,
        }
    }

    #[test]
    fn every_value_survives_a_sample_message() {
        for v in [
            None,
            Some(RecordValue::Bool(true)),
            Some(RecordValue::Num(1.5)),
            Some(RecordValue::Num(f64::INFINITY)),
            Some(RecordValue::Num(f64::NEG_INFINITY)),
            Some(RecordValue::Text("NaN".into())),
        ] {
            let r = rec(v);
            let json = serde_json::to_string(&SampleMessage::from_record(3, &r)).unwrap();
            let back: SampleMessage = serde_json::from_str(&json).unwrap();
            assert_eq!(back.tick, 3);
            assert_eq!(back.into_record("a.b".into()), r, "{json}");
        }
        let nan = rec(Some(RecordValue::Num(f64::NAN)));
        let json = serde_json::to_string(&SampleMessage::from_record(0, &nan)).unwrap();
        assert!(json.contains(r#""value":"NaN""#), "{json}");
        let back = serde_json::from_str::<SampleMessage>(&json)
            .unwrap()
            .into_record("a.b".into());
        assert!(matches!(back.value, Some(RecordValue::Num(n)) if n.is_nan()));
    }

    #[test]
    fn metadata_round_trips_and_a_newer_format_is_refused() {
        let info = RecordingInfo {
            format_version: FORMAT_VERSION,
            twin_version: "0.1.0".into(),
            plant: "p".into(),
            config_path: "p.toml".into(),
            config_hash: config_hash("x"),
            tick_ns: 100_000_000,
            epoch_ns: 1_700_000_000_000_000_000,
            started_at: "2026-12-04T00:00:00.000Z".into(),
            part: 1,
            first_tick: 0,
            origin: "live".into(),
            models: vec![("m".into(), config_hash("onnx"))],
        };
        let p = Path::new("r.mcap");
        assert_eq!(
            RecordingInfo::from_metadata(p, &info.to_metadata()).unwrap(),
            info
        );
        let mut m = info.to_metadata();
        m.insert("format_version".into(), "3".into());
        assert!(matches!(
            RecordingInfo::from_metadata(p, &m),
            Err(RecordingError::TooNew { found: 3, .. })
        ));
        m.remove("tick_ns");
        m.insert("format_version".into(), "1".into());
        let e = RecordingInfo::from_metadata(p, &m).unwrap_err().to_string();
        assert!(e.contains("r.mcap") && e.contains("tick_ns"), "{e}");
        assert_eq!(
            config_hash(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
