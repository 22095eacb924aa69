//! Samples keyed by tag name, for recordings.
//!
//! A [`Sample`] names its tag by [`TagId`], the tag's position in one config,
//! which a config edit (a tag added, moved or removed) changes. A recording
//! must outlive such edits, so it stores [`SampleRecord`]s, keyed by tag
//! name, and resolves them against whichever config replays it. The record
//! carries everything a sample does, so converting back gives the same
//! sample (NaN and infinities included: they are what the core must see to
//! replay a `non_finite` exactly).

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::sample::{Quality, Reason, Sample, Value};
use crate::config::{TagId, TagTable};

/// One sample as a recording keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRecord {
    /// The tag's name in the config. Shared: a reader hands out a channel's
    /// name with each of its samples, and an allocation per sample was a
    /// tenth of a replay.
    pub tag: std::sync::Arc<str>,
    /// `None` only with a quality other than good.
    pub value: Option<RecordValue>,
    pub quality: Quality,
    pub reason: Option<Reason>,
    /// ns since the Unix epoch, as in [`Sample`].
    pub source_time_ns: i64,
    pub recv_time_ns: i64,
}

/// A [`Value`] as a record writes it: `{"num": 1.5}`, `{"bool": true}`,
/// `{"text": "B-17"}`. Numbers that JSON cannot hold (NaN, infinities) are
/// written as the strings `"NaN"`, `"inf"` and `"-inf"`, so a recording in
/// JSON keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordValue {
    Bool(bool),
    Num(#[serde(with = "any_f64")] f64),
    Text(String),
}

/// Why a record and a config do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("tag {0:?} is not in the config; was it renamed or removed?")]
    UnknownTag(String),
    #[error("tag id {0} is not in the config")]
    UnknownTagId(u32),
}

impl SampleRecord {
    /// The record of `s`, naming its tag from `tags` (the config the sample
    /// was made with).
    pub fn from_sample(s: &Sample, tags: &TagTable) -> Result<Self, RecordError> {
        let def = tags
            .try_get(s.tag)
            .ok_or(RecordError::UnknownTagId(s.tag.0))?;
        Ok(SampleRecord {
            tag: def.name.as_str().into(),
            value: s.value.as_ref().map(RecordValue::from),
            quality: s.quality,
            reason: s.reason,
            source_time_ns: s.source_time_ns,
            recv_time_ns: s.recv_time_ns,
        })
    }

    /// The sample this record describes, with its tag resolved by name in
    /// `tags` (the config that replays it).
    pub fn to_sample(&self, tags: &TagTable) -> Result<Sample, RecordError> {
        let tag: TagId = tags
            .id(&self.tag)
            .ok_or_else(|| RecordError::UnknownTag(self.tag.to_string()))?;
        Ok(self.to_sample_of(tag))
    }

    /// The sample this record describes, for the tag `tag` (already
    /// resolved by the caller, who may have looked its name up once).
    pub fn to_sample_of(&self, tag: TagId) -> Sample {
        Sample {
            tag,
            value: self.value.as_ref().map(Value::from),
            quality: self.quality,
            reason: self.reason,
            source_time_ns: self.source_time_ns,
            recv_time_ns: self.recv_time_ns,
        }
    }
}

impl From<&Value> for RecordValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Bool(b) => RecordValue::Bool(*b),
            Value::Num(n) => RecordValue::Num(*n),
            Value::Text(t) => RecordValue::Text(t.to_string()),
        }
    }
}

impl From<&RecordValue> for Value {
    fn from(v: &RecordValue) -> Self {
        match v {
            RecordValue::Bool(b) => Value::Bool(*b),
            RecordValue::Num(n) => Value::Num(*n),
            RecordValue::Text(t) => Value::Text(Arc::from(t.as_str())),
        }
    }
}

/// An `f64` that survives formats without NaN or infinity (JSON).
pub(crate) mod any_f64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(n: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *n {
            n if n.is_finite() => s.serialize_f64(n),
            n if n.is_nan() => s.serialize_str("NaN"),
            n if n > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(n),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => Err(D::Error::custom(format!(
                    "{t:?} is not a number (expected a number, \"NaN\", \"inf\" or \"-inf\")"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    fn tags(order: [&str; 3]) -> TagTable {
        let topics: String = order
            .iter()
            .map(|t| format!("  [[sources.mqtt.topics]]\n  topic = \"t/{t}\"\n  tag = \"{t}\"\n"))
            .collect();
        let text = format!(
            "[plant]\nname = \"p\"\n[[sources.mqtt]]\nname = \"m\"\nbroker = \"embedded\"\n{topics}"
        );
        load_str(Path::new("p.toml"), &text).expect("valid").tags
    }

    #[test]
    fn a_record_resolves_by_name_against_a_reordered_config() {
        let before = tags(["a.speed", "b.temp", "c.count"]);
        let after = tags(["c.count", "a.speed", "b.temp"]);
        let s = Sample::good(
            before.id("b.temp").expect("tag"),
            Value::Num(41.5),
            1_000,
            2_000,
        );
        let r = SampleRecord::from_sample(&s, &before).expect("known tag");
        assert_eq!(&*r.tag, "b.temp");
        let back = r.to_sample(&after).expect("resolves");
        assert_eq!(back.tag, TagId(2));
        assert_eq!(after.get(back.tag).name, "b.temp");
        assert_eq!(Sample { tag: s.tag, ..back }, s);
    }

    #[test]
    fn every_kind_of_sample_round_trips_through_json() {
        let t = tags(["a.speed", "b.temp", "c.count"]);
        let samples = [
            Sample::good(TagId(0), Value::Num(-0.25), -5, 7),
            Sample::good(TagId(0), Value::Num(f64::INFINITY), 1, 1),
            Sample::good(TagId(0), Value::Num(f64::NEG_INFINITY), 1, 1),
            Sample::good(TagId(1), Value::Bool(true), i64::MIN, i64::MAX),
            Sample::good(TagId(2), Value::Text(Arc::from("B-17 \"x\"")), 3, 4),
            Sample {
                quality: Quality::Uncertain,
                reason: Some(Reason::ClockSkew),
                ..Sample::good(TagId(1), Value::Num(1e300), 9, 9)
            },
            Sample::bad(TagId(2), Reason::GatewayTargetDeviceFailedToRespond, 5),
            Sample {
                tag: TagId(1),
                value: None,
                quality: Quality::Stale,
                reason: Some(Reason::NodeDeath),
                source_time_ns: 8,
                recv_time_ns: 8,
            },
        ];
        for s in samples {
            let r = SampleRecord::from_sample(&s, &t).expect("known tag");
            let json = serde_json::to_string(&r).expect("serialises");
            let back: SampleRecord = serde_json::from_str(&json).expect(&json);
            assert_eq!(back.to_sample(&t).expect("resolves"), s, "{json}");
        }
        // NaN compares unequal to itself: check it by kind.
        let nan = Sample::good(TagId(0), Value::Num(f64::NAN), 1, 1);
        let json = serde_json::to_string(&SampleRecord::from_sample(&nan, &t).expect("known"))
            .expect("serialises");
        assert!(json.contains(r#"{"num":"NaN"}"#), "{json}");
        let back: SampleRecord = serde_json::from_str(&json).expect(&json);
        assert!(matches!(
            back.to_sample(&t).expect("resolves").value,
            Some(Value::Num(n)) if n.is_nan()
        ));
    }

    #[test]
    fn an_unknown_tag_is_a_typed_error_naming_it() {
        let t = tags(["a.speed", "b.temp", "c.count"]);
        let r = SampleRecord {
            tag: "d.gone".into(),
            value: Some(RecordValue::Num(1.0)),
            quality: Quality::Good,
            reason: None,
            source_time_ns: 1,
            recv_time_ns: 1,
        };
        let e = r.to_sample(&t).expect_err("not in the config");
        assert_eq!(e, RecordError::UnknownTag("d.gone".into()));
        assert!(e.to_string().contains("\"d.gone\""), "{e}");
        assert_eq!(
            SampleRecord::from_sample(&Sample::bad(TagId(3), Reason::Timeout, 1), &t),
            Err(RecordError::UnknownTagId(3))
        );
        // Unknown qualities, reasons and fields are refused, not guessed.
        for bad in [
            r#"{"tag":"a.speed","value":null,"quality":"great","reason":null,"source_time_ns":1,"recv_time_ns":1}"#,
            r#"{"tag":"a.speed","value":null,"quality":"bad","reason":"gremlins","source_time_ns":1,"recv_time_ns":1}"#,
            r#"{"tag":"a.speed","value":{"num":"lots"},"quality":"good","reason":null,"source_time_ns":1,"recv_time_ns":1}"#,
            r#"{"tag":"a.speed","value":null,"quality":"bad","reason":null,"source_time_ns":1,"recv_time_ns":1,"x":1}"#,
        ] {
            assert!(serde_json::from_str::<SampleRecord>(bad).is_err(), "{bad}");
        }
    }
}
