//! What sources hand to the core: timestamped samples.

use crate::config::TagId;

use std::sync::Arc;

/// A tag value. Numbers are engineering values (already scaled).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Num(f64),
    /// Text, e.g. a recipe or batch id read from string registers.
    Text(Arc<str>),
}

impl Value {
    /// Numeric view: booleans are 0/1; text is NaN.
    pub fn as_f64(&self) -> f64 {
        match self {
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Num(n) => *n,
            Value::Text(_) => f64::NAN,
        }
    }

    /// Whether the value can be trusted as data: finite numbers, any boolean
    /// or text.
    pub fn is_valid(&self) -> bool {
        match self {
            Value::Num(n) => n.is_finite(),
            Value::Bool(_) | Value::Text(_) => true,
        }
    }
}

/// OPC UA style quality, reduced to the four states the twin reasons about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quality {
    /// Fresh data from a healthy source.
    Good,
    /// Data the source flagged as doubtful; usable with care.
    Uncertain,
    /// No valid value: the source failed or refused.
    Bad,
    /// The last good value is older than the tag's `stale_after`.
    Stale,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
            Quality::Stale => "stale",
        }
    }
}

/// One observation of one tag.
///
/// Times are nanoseconds since the Unix epoch. `recv_time_ns` decides on which
/// tick the sample is applied (the first tick at or after it), which is what
/// makes live runs and replays of the same samples agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub tag: TagId,
    /// `None` only with a quality other than good.
    pub value: Option<Value>,
    pub quality: Quality,
    /// Why the quality is not good, in snake_case (`timeout`, `illegal_data_address`, ...).
    pub reason: Option<&'static str>,
    /// When the value was measured: the device's own timestamp where it gives
    /// one, else the receive time.
    pub source_time_ns: i64,
    pub recv_time_ns: i64,
}

impl Sample {
    pub fn good(tag: TagId, value: Value, source_time_ns: i64, recv_time_ns: i64) -> Self {
        Sample {
            tag,
            value: Some(value),
            quality: Quality::Good,
            reason: None,
            source_time_ns,
            recv_time_ns,
        }
    }

    pub fn bad(tag: TagId, reason: &'static str, time_ns: i64) -> Self {
        Sample {
            tag,
            value: None,
            quality: Quality::Bad,
            reason: Some(reason),
            source_time_ns: time_ns,
            recv_time_ns: time_ns,
        }
    }
}
