//! The events the ML stage adds to the stream: `prediction`, `alarm`, and
//! `error` for a model whose run or output could not be used
//! (docs/events.md).

use std::sync::Arc;

use serde::Serialize;

use crate::config::ml::{Priority, Task};

#[derive(Debug, Clone, PartialEq)]
pub enum MlEvent {
    Prediction(Prediction),
    Alarm(AlarmEvent),
    Error(ModelError),
}

/// One row's prediction: a machine's (or the plant's) output of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub machine: Option<Arc<str>>,
    pub task: Task,
    /// fault: probability per fault class (the normal class left out).
    pub risk: Vec<(Arc<str>, f64)>,
    /// fault: the most likely class, the normal one included.
    pub class: Option<Arc<str>>,
    /// fault: the highest fault risk; anomaly: the score; rul: the estimate.
    pub score: f64,
    /// anomaly: the threshold the score is judged against.
    pub threshold: Option<f64>,
    /// rul: the estimate's unit.
    pub unit: Option<Arc<str>>,
    /// setpoint: the proposed value per setpoint tag.
    pub values: Vec<(Arc<str>, f64)>,
    /// `None` when good; else why the row is uncertain.
    pub uncertain: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub machine: Option<Arc<str>>,
    /// fault: the class alarmed on; anomaly: none.
    pub class: Option<Arc<str>>,
    /// `raised` or `cleared`.
    pub state: &'static str,
    pub priority: Priority,
    pub value: f64,
    pub threshold: f64,
    pub reason: String,
}

/// A model run that failed, or gave values that cannot be used (NaN,
/// infinities, probabilities outside 0..1): no prediction, no alarm change.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelError {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub machine: Option<Arc<str>>,
    pub error: String,
}

/// A number for JSON: non-finite values never reach an event (they are
/// errors), but the encoder never writes invalid JSON either.
fn num(x: f64) -> Option<f64> {
    x.is_finite().then_some((x * 1e6).round() / 1e6)
}

struct Pairs<'a>(&'a [(Arc<str>, f64)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(&**k, &num(*v))?;
        }
        m.end()
    }
}

impl MlEvent {
    pub fn t_ns(&self) -> i64 {
        match self {
            MlEvent::Prediction(p) => p.t_ns,
            MlEvent::Alarm(a) => a.t_ns,
            MlEvent::Error(e) => e.t_ns,
        }
    }

    /// The event as one JSON line body (no newline); `t` is the tick time,
    /// already formatted.
    pub fn write_json(&self, t: &str, out: &mut Vec<u8>) {
        // Serializing plain structs of strings and numbers into a Vec cannot
        // fail.
        let _ = match self {
            MlEvent::Prediction(p) => {
                #[derive(Serialize)]
                struct Line<'a> {
                    v: u32,
                    #[serde(rename = "type")]
                    kind: &'static str,
                    t: &'a str,
                    model: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    machine: Option<&'a str>,
                    task: &'static str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    risk: Option<Pairs<'a>>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    class: Option<&'a str>,
                    score: Option<f64>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    threshold: Option<f64>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    unit: Option<&'a str>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    values: Option<Pairs<'a>>,
                    quality: &'static str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    reason: Option<&'a str>,
                }
                serde_json::to_writer(
                    &mut *out,
                    &Line {
                        v: crate::twin::events::EVENT_VERSION,
                        kind: "prediction",
                        t,
                        model: &p.model,
                        machine: p.machine.as_deref(),
                        task: p.task.as_str(),
                        risk: (p.task == Task::Fault).then_some(Pairs(&p.risk)),
                        class: p.class.as_deref(),
                        score: num(p.score),
                        threshold: p.threshold.and_then(num),
                        unit: p.unit.as_deref(),
                        values: (p.task == Task::Setpoint).then_some(Pairs(&p.values)),
                        quality: if p.uncertain.is_some() {
                            "uncertain"
                        } else {
                            "good"
                        },
                        reason: p.uncertain.as_deref(),
                    },
                )
            }
            MlEvent::Alarm(a) => {
                #[derive(Serialize)]
                struct Line<'a> {
                    v: u32,
                    #[serde(rename = "type")]
                    kind: &'static str,
                    t: &'a str,
                    model: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    machine: Option<&'a str>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    class: Option<&'a str>,
                    state: &'static str,
                    priority: &'static str,
                    value: Option<f64>,
                    threshold: Option<f64>,
                    reason: &'a str,
                }
                serde_json::to_writer(
                    &mut *out,
                    &Line {
                        v: crate::twin::events::EVENT_VERSION,
                        kind: "alarm",
                        t,
                        model: &a.model,
                        machine: a.machine.as_deref(),
                        class: a.class.as_deref(),
                        state: a.state,
                        priority: a.priority.as_str(),
                        value: num(a.value),
                        threshold: num(a.threshold),
                        reason: &a.reason,
                    },
                )
            }
            MlEvent::Error(e) => {
                #[derive(Serialize)]
                struct Line<'a> {
                    v: u32,
                    #[serde(rename = "type")]
                    kind: &'static str,
                    t: &'a str,
                    component: &'static str,
                    target: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    machine: Option<&'a str>,
                    error: &'a str,
                    effect: &'static str,
                }
                serde_json::to_writer(
                    &mut *out,
                    &Line {
                        v: crate::twin::events::EVENT_VERSION,
                        kind: "error",
                        t,
                        component: "model",
                        target: &e.model,
                        machine: e.machine.as_deref(),
                        error: &e.error,
                        effect: "no prediction from this run; alarms unchanged",
                    },
                )
            }
        };
    }
}
