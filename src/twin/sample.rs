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

// Recordings (`twin::record`) write qualities by their stream names.
impl serde::Serialize for Quality {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Quality {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        [
            Quality::Good,
            Quality::Uncertain,
            Quality::Bad,
            Quality::Stale,
        ]
        .into_iter()
        .find(|q| q.as_str() == s)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown quality {s:?}, expected good, uncertain, bad or stale"
            ))
        })
    }
}

/// Defines [`Reason`] from one table, so the variants, their strings and
/// [`Reason::ALL`] cannot drift apart.
macro_rules! reasons {
    ($($(#[$doc:meta])* $v:ident = $s:literal,)*) => {
        /// Why a quality is not good: a stable snake_case code.
        ///
        /// The string forms are a public interface (the event stream's
        /// `reason`, recordings, the live table, health logs; the list is in
        /// `docs/events.md`): a variant's string never changes and none is
        /// removed. New reasons are added, and documented there.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $($(#[$doc])* $v,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$v,)*];

            /// The stable snake_case code.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$v => $s,)*
                }
            }
        }

        impl std::str::FromStr for Reason {
            type Err = UnknownReason;

            fn from_str(s: &str) -> Result<Self, UnknownReason> {
                match s {
                    $($s => Ok(Reason::$v),)*
                    _ => Err(UnknownReason(s.chars().take(64).collect())),
                }
            }
        }
    };
}

reasons! {
    // The core.
    /// No sample has arrived for the tag since the twin started.
    NoData = "no_data",
    /// Stale: no sample for longer than the tag's `stale_after`.
    NoUpdate = "no_update",
    /// A good sample carried NaN or infinity.
    NonFinite = "non_finite",
    /// The sample's source time lay beyond its receive time plus the
    /// source's allowed clock skew: the value is kept, `uncertain`, and its
    /// time is bounded to the receive time.
    ClockSkew = "clock_skew",
    // Line events (`twin::lines`).
    /// Some belt speed tag was not good.
    SpeedNotGood = "speed_not_good",
    /// Some station cycle-time tag was not good (and every speed was).
    CycleTimeNotGood = "cycle_time_not_good",
    /// Some pusher's or diverter's coil tag was not good.
    CoilNotGood = "coil_not_good",
    // Modbus transport.
    /// Connecting or a read did not complete within the device's timeout.
    Timeout = "timeout",
    ConnectionRefused = "connection_refused",
    /// Reset, aborted or closed while a request was outstanding.
    ConnectionLost = "connection_lost",
    HostUnreachable = "host_unreachable",
    /// The device's address cannot be used (e.g. it does not resolve).
    BadAddress = "bad_address",
    /// Any other I/O error while connecting.
    CommError = "comm_error",
    /// Not a valid Modbus response to the request.
    InvalidResponse = "invalid_response",
    /// Fewer registers or bits than requested.
    ShortResponse = "short_response",
    /// The raw value is one of the register's `invalid` sentinels.
    InvalidValue = "invalid_value",
    /// The twin is shutting down; the read was abandoned.
    Shutdown = "shutdown",
    // Modbus exception responses 01-0B, then any other code.
    IllegalFunction = "illegal_function",
    IllegalDataAddress = "illegal_data_address",
    IllegalDataValue = "illegal_data_value",
    ServerDeviceFailure = "server_device_failure",
    Acknowledge = "acknowledge",
    ServerDeviceBusy = "server_device_busy",
    NegativeAcknowledge = "negative_acknowledge",
    MemoryParityError = "memory_parity_error",
    GatewayPathUnavailable = "gateway_path_unavailable",
    GatewayTargetDeviceFailedToRespond = "gateway_target_device_failed_to_respond",
    UnknownException = "unknown_exception",
    // MQTT and Sparkplug sources (source health only).
    BrokerRefused = "broker_refused",
    BrokerUnreachable = "broker_unreachable",
    /// A message that could not be used was dropped.
    DroppedMessage = "dropped_message",
    /// A Sparkplug payload that does not decode.
    InvalidPayload = "invalid_payload",
    // Sparkplug.
    /// The edge node died (NDEATH).
    NodeDeath = "node_death",
    /// The device died (DDEATH).
    DeviceDeath = "device_death",
    /// The metric was sent with `is_null`.
    NullValue = "null_value",
    /// The metric's type has no tag value.
    UnsupportedType = "unsupported_type",
}

/// A string that is not one of the [`Reason`] codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quality reason {0:?}")]
pub struct UnknownReason(pub String);

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// Lets tests and callers compare with the documented codes directly.
impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
    /// Why the quality is not good.
    pub reason: Option<Reason>,
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

    pub fn bad(tag: TagId, reason: Reason, time_ns: i64) -> Self {
        Sample {
            tag,
            value: None,
            quality: Quality::Bad,
            reason: Some(reason),
            source_time_ns: time_ns,
            recv_time_ns: time_ns,
        }
    }

    /// Applies a source's allowance for device clocks that run ahead.
    ///
    /// A sample stamped more than `max_skew_ns` after it was received cannot
    /// be telling the truth about its time: its source time becomes its
    /// receive time, and a good one turns `uncertain` with reason
    /// `clock_skew`. Its value is kept, as the clock is wrong, not
    /// necessarily the value; a sample that was not good keeps its quality
    /// and reason, which say more. Returns whether the sample was beyond the
    /// allowance, for the source to count and report.
    pub fn bound_clock_skew(&mut self, max_skew_ns: i64) -> bool {
        if self.source_time_ns.saturating_sub(self.recv_time_ns) <= max_skew_ns {
            return false;
        }
        self.source_time_ns = self.recv_time_ns;
        if self.quality == Quality::Good {
            self.quality = Quality::Uncertain;
            self.reason = Some(Reason::ClockSkew);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_string() {
        let mut seen = std::collections::HashSet::new();
        for &r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
            assert_eq!(s.parse::<Reason>(), Ok(r));
            assert_eq!(r.to_string(), s);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
        }
        assert_eq!(
            "no_such_reason".parse::<Reason>(),
            Err(UnknownReason("no_such_reason".into()))
        );
        assert!(serde_json::from_str::<Reason>("\"Timeout\"").is_err());
    }

    #[test]
    fn r9_a_sample_beyond_the_clock_skew_is_uncertain_at_its_receive_time() {
        let t = TagId(0);
        let mut ok = Sample::good(t, Value::Num(1.0), 1_500, 1_000);
        assert!(!ok.bound_clock_skew(500), "within the allowance");
        assert_eq!(ok, Sample::good(t, Value::Num(1.0), 1_500, 1_000));

        let mut ahead = Sample::good(t, Value::Num(1.0), 1_501, 1_000);
        assert!(ahead.bound_clock_skew(500));
        assert_eq!(
            ahead,
            Sample {
                quality: Quality::Uncertain,
                reason: Some(Reason::ClockSkew),
                ..Sample::good(t, Value::Num(1.0), 1_000, 1_000)
            }
        );

        let mut bad = Sample {
            source_time_ns: i64::MAX,
            ..Sample::bad(t, Reason::NullValue, i64::MIN)
        };
        assert!(bad.bound_clock_skew(0));
        assert_eq!(bad, Sample::bad(t, Reason::NullValue, i64::MIN));
    }

    #[test]
    fn line_event_reasons_are_in_the_stable_set() {
        use crate::twin::lines::{COIL_NOT_GOOD, CYCLE_TIME_NOT_GOOD, SPEED_NOT_GOOD};
        assert_eq!(SPEED_NOT_GOOD.parse(), Ok(Reason::SpeedNotGood));
        assert_eq!(CYCLE_TIME_NOT_GOOD.parse(), Ok(Reason::CycleTimeNotGood));
        assert_eq!(COIL_NOT_GOOD.parse(), Ok(Reason::CoilNotGood));
    }

    #[test]
    fn the_documented_reason_list_is_the_enum() {
        // docs/events.md's reason table is the public set: every code in it
        // is a variant and every variant is in it.
        let doc = include_str!("../../docs/events.md");
        let section = doc
            .split("### Reason codes")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap_or("");
        let documented: std::collections::BTreeSet<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let all: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(documented, all);
    }
}
