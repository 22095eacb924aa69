//! What reaches the guard from outside the core, kept so that a replay can
//! give it back (docs/guard.md, "Replay"; docs/recordings.md, `/twin/guard`).
//!
//! The guard's decisions are a function of the core's state and of a few
//! inputs that only a live run has: operators' commands, the writes'
//! outcomes and register read-backs, the links' up/down flags, the kill
//! switch from a control path, a failed audit append, and whether a writer
//! carries the intents out at all. Every one of them enters through a
//! [`GuardState`](super::GuardState) method between two ticks and is taken
//! on the next tick. Each call that changes something is also logged here,
//! in call order; the driver hands the log to the recorder with the tick
//! that had run (the same stamp a sample carries), and a replay applies the
//! recorded inputs at that same point, in that same order, through the same
//! methods. So a replay of a live run with approvals, refusals, read-back
//! mismatches or a kill reproduces its decisions byte for byte, and still
//! writes nothing.

use serde::{Deserialize, Serialize};

use super::state::{Link, WriteOutcome};
use crate::twin::record::any_f64;

/// One input to the guard, as it was taken (JSON on `/twin/guard`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum GuardInput {
    /// A writer carries this run's intents out and reports their outcomes
    /// (a live run with a writing setpoint). Without it a replay does not
    /// wait for a register's read-back; with it, the replay waits for the
    /// recorded outcome as the run did.
    Writer,
    /// What became of write intent `intent`.
    Outcome {
        intent: u64,
        #[serde(flatten)]
        outcome: RecordedOutcome,
    },
    /// A link's flag changed.
    Link {
        #[serde(flatten)]
        link: RecordedLink,
        up: bool,
    },
    Propose {
        tag: String,
        #[serde(with = "any_f64")]
        value: f64,
        operator: String,
    },
    Approve {
        id: u64,
        operator: String,
    },
    Reject {
        id: u64,
        operator: String,
    },
    Reset {
        tag: String,
        operator: String,
    },
    /// The kill switch from a control path, engaged (`on`) or lifted.
    Kill {
        on: bool,
        operator: String,
    },
    /// The audit log refused an append.
    AuditFailed {
        why: String,
    },
}

/// [`WriteOutcome`] as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordedOutcome {
    Sent,
    ReadBack {
        #[serde(with = "any_f64")]
        value: f64,
    },
    Refused {
        why: String,
    },
    Failed {
        why: String,
    },
    NotSent {
        why: String,
    },
}

impl From<&WriteOutcome> for RecordedOutcome {
    fn from(o: &WriteOutcome) -> Self {
        match o {
            WriteOutcome::Sent => RecordedOutcome::Sent,
            WriteOutcome::ReadBack(v) => RecordedOutcome::ReadBack { value: *v },
            WriteOutcome::Refused(w) => RecordedOutcome::Refused { why: w.clone() },
            WriteOutcome::Failed(w) => RecordedOutcome::Failed { why: w.clone() },
            WriteOutcome::NotSent(w) => RecordedOutcome::NotSent { why: w.clone() },
        }
    }
}

impl From<RecordedOutcome> for WriteOutcome {
    fn from(o: RecordedOutcome) -> Self {
        match o {
            RecordedOutcome::Sent => WriteOutcome::Sent,
            RecordedOutcome::ReadBack { value } => WriteOutcome::ReadBack(value),
            RecordedOutcome::Refused { why } => WriteOutcome::Refused(why),
            RecordedOutcome::Failed { why } => WriteOutcome::Failed(why),
            RecordedOutcome::NotSent { why } => WriteOutcome::NotSent(why),
        }
    }
}

/// [`Link`] as recorded: the kind of source and its index among the
/// config's sources of that kind (`[[sources.modbus]]` entry 0, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedLink {
    pub kind: LinkKind,
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Modbus,
    Mqtt,
    Sparkplug,
}

impl From<Link> for RecordedLink {
    fn from(l: Link) -> Self {
        let (kind, index) = match l {
            Link::Modbus(i) => (LinkKind::Modbus, i),
            Link::Mqtt(i) => (LinkKind::Mqtt, i),
            Link::Sparkplug(i) => (LinkKind::Sparkplug, i),
        };
        RecordedLink { kind, index }
    }
}

impl From<RecordedLink> for Link {
    fn from(l: RecordedLink) -> Self {
        match l.kind {
            LinkKind::Modbus => Link::Modbus(l.index),
            LinkKind::Mqtt => Link::Mqtt(l.index),
            LinkKind::Sparkplug => Link::Sparkplug(l.index),
        }
    }
}

/// One recorded input with the tick that had run when it was taken in
/// (the message body on `/twin/guard`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardInputRecord {
    pub tick: u64,
    #[serde(flatten)]
    pub input: GuardInput,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: GuardInput) -> String {
        let rec = GuardInputRecord { tick: 7, input };
        let text = serde_json::to_string(&rec).expect("encodes");
        let back: GuardInputRecord = serde_json::from_str(&text).expect("decodes");
        match (&back.input, &rec.input) {
            (GuardInput::Propose { value: a, .. }, GuardInput::Propose { value: b, .. })
                if a.is_nan() =>
            {
                assert!(b.is_nan(), "{text}")
            }
            _ => assert_eq!(back, rec, "{text}"),
        }
        text
    }

    #[test]
    fn every_input_survives_json_as_documented() {
        assert_eq!(
            round_trip(GuardInput::Approve {
                id: 3,
                operator: "ana".into()
            }),
            r#"{"tick":7,"input":"approve","id":3,"operator":"ana"}"#
        );
        assert_eq!(
            round_trip(GuardInput::Outcome {
                intent: 2,
                outcome: RecordedOutcome::ReadBack { value: 0.1 + 0.2 }
            }),
            r#"{"tick":7,"input":"outcome","intent":2,"outcome":"read_back","value":0.30000000000000004}"#
        );
        assert_eq!(
            round_trip(GuardInput::Link {
                link: Link::Modbus(1).into(),
                up: false
            }),
            r#"{"tick":7,"input":"link","kind":"modbus","index":1,"up":false}"#
        );
        assert!(
            round_trip(GuardInput::Propose {
                tag: "speed".into(),
                value: f64::NAN,
                operator: "ana".into()
            })
            .contains(r#""value":"NaN""#)
        );
        for input in [
            GuardInput::Writer,
            GuardInput::Kill {
                on: false,
                operator: "ana".into(),
            },
            GuardInput::Kill {
                on: true,
                operator: "ana".into(),
            },
            GuardInput::AuditFailed {
                why: "disk full".into(),
            },
            GuardInput::Reset {
                tag: "speed".into(),
                operator: "ana".into(),
            },
            GuardInput::Reject {
                id: 9,
                operator: "bo".into(),
            },
            GuardInput::Outcome {
                intent: 4,
                outcome: RecordedOutcome::Refused {
                    why: "illegal data address (02)".into(),
                },
            },
            GuardInput::Outcome {
                intent: 5,
                outcome: RecordedOutcome::Failed {
                    why: "timeout".into(),
                },
            },
            GuardInput::Outcome {
                intent: 6,
                outcome: RecordedOutcome::NotSent { why: "x".into() },
            },
            GuardInput::Outcome {
                intent: 7,
                outcome: RecordedOutcome::Sent,
            },
        ] {
            round_trip(input);
        }
        for o in [
            WriteOutcome::Sent,
            WriteOutcome::ReadBack(-0.0),
            WriteOutcome::Refused("r".into()),
            WriteOutcome::Failed("f".into()),
            WriteOutcome::NotSent("n".into()),
        ] {
            assert_eq!(WriteOutcome::from(RecordedOutcome::from(&o)), o);
        }
        for l in [Link::Modbus(0), Link::Mqtt(2), Link::Sparkplug(1)] {
            assert_eq!(Link::from(RecordedLink::from(l)), l);
        }
    }

    #[test]
    fn a_message_that_is_not_an_input_is_an_error_not_a_panic() {
        for bad in [
            r#"{"tick":1,"input":"launch"}"#,
            r#"{"tick":1,"input":"approve","id":"x","operator":"a"}"#,
            r#"{"input":"writer"}"#,
            r#"{"tick":1,"input":"propose","tag":"t","value":"many","operator":"a"}"#,
            "not json",
        ] {
            assert!(
                serde_json::from_str::<GuardInputRecord>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
