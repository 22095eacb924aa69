//! The events the ML stage adds to the stream: `prediction`, `alarm`, and
//! `error` for a model whose run or output could not be used
//! (docs/events.md).

use std::sync::Arc;

use serde::Serialize;

use super::meter::Counts;
use crate::config::ml::{Priority, Task};

#[derive(Debug, Clone, PartialEq)]
pub enum MlEvent {
    Prediction(Prediction),
    /// Boxed, as are the other rare large ones: a prediction is the
    /// frequent event, and the enum is as large as its largest inline
    /// variant (`TwinEvent`).
    Alarm(Box<AlarmEvent>),
    Error(ModelError),
    Metering(Box<Metering>),
    /// `proposal`, the `optimiser` summary and optimiser errors
    /// (`ml::optimise`).
    Optimiser(super::optimise_events::OptimiserEvent),
}

/// What a model ran over an interval (`scope` `interval`) or over the whole
/// run (`run`, once, at its end): deterministic counts only
/// (`ml::meter::Counts`); compute time is in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Metering {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub task: Task,
    /// `interval` or `run`.
    pub scope: &'static str,
    /// The span the counts cover.
    pub span_ns: i64,
    pub counts: Counts,
    /// Per bound machine, in binding order; empty for a plant-level model.
    pub machines: Vec<(Arc<str>, Counts)>,
    /// Per line of the bound machines.
    pub lines: Vec<(Arc<str>, Counts)>,
}

/// What every row of one model run shares: the model, its names and the
/// run's output. One per run, behind an `Arc`, so that a row's prediction
/// is a small event (a handle on this, its row, its machine and its own
/// few fields) however many classes the model has: hundreds of them are
/// made, moved and dropped on every due tick.
#[derive(Debug)]
pub struct RunShared {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub task: Task,
    /// fault: the classes, the normal one (column 0) first.
    pub classes: Arc<[Arc<str>]>,
    /// The names a row's named values go with (fault: the classes; setpoint:
    /// the setpoint tags), from `first` on, paired with the row's columns
    /// from `first` on.
    pub names: Arc<[Arc<str>]>,
    pub first: usize,
    /// anomaly: the threshold the score is judged against.
    pub threshold: Option<f64>,
    /// rul: the estimate's unit.
    pub unit: Option<Arc<str>>,
    /// An offloaded model's (`[models.schedule] apply_after`): when its
    /// rows were taken; the events' own time is when they apply.
    pub inputs_ns: Option<i64>,
    /// The run's output, row after row, `cols` values a row.
    pub output: Vec<f32>,
    pub cols: usize,
    /// The model's machines, one per row of the model (not of the run):
    /// a prediction names its machine by index, so that making and
    /// dropping one touches no machine's reference count.
    pub machines: Arc<[Option<Arc<str>>]>,
}

impl RunShared {
    /// One row of named values of its own (tests, and events built by
    /// hand): `names` paired with `values`.
    fn named(t_ns: i64, model: &str, task: Task, names: &[&str], values: Vec<f32>) -> Self {
        RunShared {
            t_ns,
            model: Arc::from(model),
            task,
            classes: Arc::from([]),
            names: names.iter().map(|n| Arc::from(*n)).collect(),
            first: 0,
            threshold: None,
            unit: None,
            inputs_ns: None,
            cols: values.len(),
            output: values,
            machines: Arc::from([]),
        }
    }
}

/// One row's prediction: a machine's (or the plant's) output of a model.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub run: Arc<RunShared>,
    /// The row's place in the run's output.
    pub row: u32,
    /// Its machine's place in the run's `machines` (`u32::MAX`: none).
    pub machine_at: u32,
    /// fault: the most likely class (an index into the run's classes), the
    /// normal one included.
    pub class: Option<u32>,
    /// fault: the highest fault risk; anomaly: the score; rul: the estimate.
    pub score: f64,
    /// `None` when good; else why the row is uncertain.
    pub uncertain: Option<String>,
}

impl Prediction {
    /// A prediction of its own (tests, and events built by hand): `named`
    /// are a fault model's risks per fault class or a setpoint model's
    /// values, `class` its most likely class.
    pub fn by_hand(
        t_ns: i64,
        model: &str,
        machine: Option<&str>,
        task: Task,
        named: &[(&str, f32)],
        class: Option<&str>,
        score: f64,
    ) -> Self {
        let names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        let values = named.iter().map(|(_, v)| *v).collect();
        let run = RunShared {
            classes: class.into_iter().map(Arc::from).collect(),
            machines: Arc::from([machine.map(Arc::from)]),
            ..RunShared::named(t_ns, model, task, &names, values)
        };
        Prediction {
            run: Arc::new(run),
            row: 0,
            machine_at: 0,
            class: class.map(|_| 0),
            score,
            uncertain: None,
        }
    }

    pub fn t_ns(&self) -> i64 {
        self.run.t_ns
    }

    pub fn model(&self) -> &Arc<str> {
        &self.run.model
    }

    pub fn task(&self) -> Task {
        self.run.task
    }

    /// The machine of the row (`None`: a plant-level model).
    pub fn machine(&self) -> Option<&Arc<str>> {
        self.run.machines.get(self.machine_at as usize)?.as_ref()
    }

    /// [`Prediction::machine`]'s name.
    pub fn machine_name(&self) -> Option<&str> {
        self.machine().map(|m| &**m)
    }

    /// fault: probability per fault class (the normal class left out), read
    /// clamped into 0..1; empty for other tasks.
    pub fn risk(&self) -> RowValues {
        if self.run.task == Task::Fault {
            self.named(true)
        } else {
            RowValues::default()
        }
    }

    /// setpoint: the proposed value per setpoint tag; empty for other tasks.
    pub fn values(&self) -> RowValues {
        if self.run.task == Task::Setpoint {
            self.named(false)
        } else {
            RowValues::default()
        }
    }

    fn named(&self, clamp: bool) -> RowValues {
        let r = &self.run;
        let start = self.row as usize * r.cols + r.first;
        RowValues::new(
            r.clone(),
            r.first,
            start,
            r.cols.saturating_sub(r.first),
            clamp,
        )
    }

    /// fault: the most likely class.
    pub fn class(&self) -> Option<&Arc<str>> {
        self.run.classes.get(self.class? as usize)
    }

    pub fn threshold(&self) -> Option<f64> {
        self.run.threshold
    }

    pub fn unit(&self) -> Option<&Arc<str>> {
        self.run.unit.as_ref()
    }

    pub fn inputs_ns(&self) -> Option<i64> {
        self.run.inputs_ns
    }
}

impl PartialEq for Prediction {
    fn eq(&self, o: &Self) -> bool {
        self.t_ns() == o.t_ns()
            && self.model() == o.model()
            && self.machine() == o.machine()
            && self.task() == o.task()
            && self.risk() == o.risk()
            && self.class() == o.class()
            && (self.score == o.score || (self.score.is_nan() && o.score.is_nan()))
            && self.threshold() == o.threshold()
            && self.unit() == o.unit()
            && self.values() == o.values()
            && self.uncertain == o.uncertain
            && self.inputs_ns() == o.inputs_ns()
    }
}

/// A row's named outputs (a fault model's risk per class, a setpoint
/// model's value per tag), read in place from its run's output.
///
/// A prediction is built per row, up to hundreds a run: the names are the
/// model's, shared (one `Arc` per model, not one per class per row), and
/// the numbers are a slice of the run's output, shared by all its rows
/// (one buffer per run, not a list per row). Values read as `f64`, as the
/// event stream writes them.
#[derive(Debug, Clone, Default)]
pub struct RowValues {
    /// The run whose names and output these are; `None`: no values.
    run: Option<Arc<RunShared>>,
    /// The names this row's values go with start here (a fault model's
    /// normal class, name 0, has no risk).
    first_name: usize,
    start: usize,
    len: usize,
    /// Probabilities are read clamped into 0..1.
    clamp: bool,
}

impl RowValues {
    /// The run's `names[first_name..]` paired with its
    /// `output[start..start + len]` (as many as both have); with `clamp`,
    /// values are read within 0..1.
    pub fn new(
        run: Arc<RunShared>,
        first_name: usize,
        start: usize,
        len: usize,
        clamp: bool,
    ) -> Self {
        let len = len
            .min(run.names.len().saturating_sub(first_name))
            .min(run.output.len().saturating_sub(start));
        RowValues {
            run: Some(run),
            first_name,
            start,
            len,
            clamp,
        }
    }

    /// Values of their own (tests, and events built by hand).
    pub fn from_pairs(pairs: &[(&str, f32)]) -> Self {
        let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
        let values = pairs.iter().map(|(_, v)| *v).collect();
        let run = RunShared::named(0, "", Task::Setpoint, &names, values);
        RowValues::new(Arc::new(run), 0, 0, pairs.len(), false)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The numbers, in the names' order.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let out: &[f32] = self.run.as_deref().map_or(&[], |r| r.output.as_slice());
        let clamp = self.clamp;
        out.get(self.start..self.start + self.len)
            .unwrap_or(&[])
            .iter()
            .map(move |&v| f64::from(if clamp { v.clamp(0.0, 1.0) } else { v }))
    }

    /// (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, f64)> + '_ {
        let names: &[Arc<str>] = self.run.as_deref().map_or(&[], |r| &r.names);
        names
            .get(self.first_name..)
            .unwrap_or(&[])
            .iter()
            .zip(self.values())
    }
}

impl PartialEq for RowValues {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .iter()
                .zip(other.iter())
                .all(|((a, x), (b, y))| a == b && x == y)
    }
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

struct Pairs<'a>(&'a RowValues);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            m.serialize_entry(&**k, &num(v))?;
        }
        m.end()
    }
}

/// A machine's or a line's share of a model's rows.
struct Shares<'a>(&'a [(Arc<str>, Counts)]);

impl Serialize for Shares<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Share {
            rows: u64,
            skipped_rows: u64,
            busy_rows: u64,
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, c) in self.0 {
            m.serialize_entry(
                &**k,
                &Share {
                    rows: c.rows,
                    skipped_rows: c.skipped_rows,
                    busy_rows: c.busy_rows,
                },
            )?;
        }
        m.end()
    }
}

impl MlEvent {
    pub fn t_ns(&self) -> i64 {
        match self {
            MlEvent::Prediction(p) => p.t_ns(),
            MlEvent::Alarm(a) => a.t_ns,
            MlEvent::Error(e) => e.t_ns,
            MlEvent::Metering(m) => m.t_ns,
            MlEvent::Optimiser(o) => o.t_ns(),
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
                    #[serde(skip_serializing_if = "Option::is_none")]
                    inputs_t: Option<String>,
                }
                let task = p.task();
                let named = match task {
                    Task::Fault => p.risk(),
                    Task::Setpoint => p.values(),
                    _ => RowValues::default(),
                };
                serde_json::to_writer(
                    &mut *out,
                    &Line {
                        v: crate::twin::events::EVENT_VERSION,
                        kind: "prediction",
                        t,
                        model: p.model(),
                        machine: p.machine_name(),
                        task: task.as_str(),
                        risk: (task == Task::Fault).then_some(Pairs(&named)),
                        class: p.class().map(|c| &**c),
                        score: num(p.score),
                        threshold: p.threshold().and_then(num),
                        unit: p.unit().map(|u| &**u),
                        values: (task == Task::Setpoint).then_some(Pairs(&named)),
                        quality: if p.uncertain.is_some() {
                            "uncertain"
                        } else {
                            "good"
                        },
                        reason: p.uncertain.as_deref(),
                        inputs_t: p.inputs_ns().map(crate::twin::events::rfc3339),
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
            MlEvent::Metering(m) => {
                #[derive(Serialize)]
                struct Line<'a> {
                    v: u32,
                    #[serde(rename = "type")]
                    kind: &'static str,
                    t: &'a str,
                    model: &'a str,
                    task: &'static str,
                    scope: &'static str,
                    span_s: f64,
                    runs: u64,
                    rows: u64,
                    skipped_runs: u64,
                    skipped_rows: u64,
                    busy_rows: u64,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    machines: Option<Shares<'a>>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    lines: Option<Shares<'a>>,
                }
                let c = &m.counts;
                serde_json::to_writer(
                    &mut *out,
                    &Line {
                        v: crate::twin::events::EVENT_VERSION,
                        kind: "metering",
                        t,
                        model: &m.model,
                        task: m.task.as_str(),
                        scope: m.scope,
                        span_s: m.span_ns as f64 / 1e9,
                        runs: c.runs,
                        rows: c.rows,
                        skipped_runs: c.skipped_runs,
                        skipped_rows: c.skipped_rows,
                        busy_rows: c.busy_rows,
                        machines: (!m.machines.is_empty()).then_some(Shares(&m.machines)),
                        lines: (!m.lines.is_empty()).then_some(Shares(&m.lines)),
                    },
                )
            }
            MlEvent::Optimiser(o) => o.write_json(t, out),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(rows: u64, skipped_rows: u64) -> Counts {
        Counts {
            rows,
            skipped_rows,
            ..Counts::default()
        }
    }

    /// A row's risks are its slice of the run's shared output, paired with
    /// the model's names from the first fault class on and read clamped,
    /// and the event encodes them as the per-row lists did.
    #[test]
    fn i11_a_prediction_reads_its_rows_slice_of_the_shared_output() {
        let names: Arc<[Arc<str>]> = ["normal", "jam", "slip"].map(Arc::from).into();
        // Two rows of three columns; row 1 has a probability a hair over 1.
        let run = Arc::new(RunShared {
            t_ns: 0,
            model: Arc::from("faults"),
            task: Task::Fault,
            classes: names.clone(),
            names: names.clone(),
            first: 1,
            threshold: None,
            unit: None,
            inputs_ns: None,
            output: vec![0.9, 0.1, 0.0, 0.0, 1.00001, 0.0],
            cols: 3,
            machines: Arc::from([None, Some(Arc::from("belt"))]),
        });
        let risk = RowValues::new(run.clone(), 1, 3 + 1, 2, true);
        let pairs: Vec<(&str, f64)> = risk.iter().map(|(n, v)| (&**n, v)).collect();
        assert_eq!(pairs, [("jam", 1.0), ("slip", 0.0)]);
        assert_eq!(risk, RowValues::from_pairs(&[("jam", 1.0), ("slip", 0.0)]));
        let p = MlEvent::Prediction(Prediction {
            run: run.clone(),
            row: 1,
            machine_at: 1,
            class: Some(1),
            score: 1.0,
            uncertain: None,
        });
        // Names and values are the run's, shared, not copied per row.
        assert_eq!(Arc::strong_count(&run), 3);
        assert_eq!(
            match &p {
                MlEvent::Prediction(p) => p.risk(),
                _ => RowValues::default(),
            },
            risk
        );
        let mut out = Vec::new();
        p.write_json("T", &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"v":1,"type":"prediction","t":"T","model":"faults","machine":"belt","task":"fault","risk":{"jam":1.0,"slip":0.0},"class":"jam","score":1.0,"quality":"good"}"#
        );
    }

    /// docs/events.md's `metering` examples are what the encoder writes.
    #[test]
    fn h6_the_documented_metering_examples_are_the_encoders_output() {
        let docs = include_str!("../../docs/events.md");
        for (t, scope, span_ns, runs, rows, per) in [
            (
                "2026-12-05T01:12:59.900Z",
                "interval",
                60_000_000_000,
                59,
                114,
                57,
            ),
            (
                "2026-12-05T01:13:20.000Z",
                "run",
                80_100_000_000,
                79,
                154,
                77,
            ),
        ] {
            let e = MlEvent::Metering(Box::new(Metering {
                t_ns: 0,
                model: Arc::from("belt_faults"),
                task: Task::Fault,
                scope,
                span_ns,
                counts: Counts {
                    runs,
                    rows,
                    skipped_runs: 1,
                    skipped_rows: 6,
                    busy_rows: 0,
                },
                machines: vec![
                    (Arc::from("infeed"), share(per, 3)),
                    (Arc::from("outfeed"), share(per, 3)),
                ],
                lines: vec![(Arc::from("packaging"), share(rows, 6))],
            }));
            let mut out = Vec::new();
            e.write_json(t, &mut out);
            let line = String::from_utf8(out).expect("utf-8");
            assert!(docs.contains(&line), "not in docs/events.md: {line}");
        }
    }
}
