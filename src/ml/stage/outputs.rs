//! One model run's ORT call and its outputs turned into events (the ML
//! stage, src/ml/stage.rs): the batch through `run()` (or one row at a
//! time for a model fixed at batch 1), each row's values checked for what
//! its task can use, a `prediction` per row sharing the run's output
//! (`RunShared`), and the alarms the rows move.

use std::sync::Arc;

use ndarray::ArrayView2;

use super::{DueRow, ModelRun, RunSpec};
use crate::config::ml::Task;
use crate::ml::alarm::{self, InputQuality};
use crate::ml::events::{AlarmEvent, MlEvent, ModelError, Prediction, RunShared};
use crate::ml::io::Batching;
use crate::ml::session::ModelSession;
use crate::twin::TwinEvent;

/// One batch's results (or why it gave none) as the rows' events: a
/// prediction each, the alarms they move, an `error` for values a task
/// cannot use. `rows_ns`: when the rows were taken, for an offloaded run.
pub(super) fn apply(
    m: &mut ModelRun,
    results: Result<Vec<f32>, String>,
    due: &[DueRow],
    tick: u64,
    t_ns: i64,
    rows_ns: Option<i64>,
) {
    let values = match results {
        // One buffer for the run, in its shared part: every row's
        // prediction reads its slice.
        Ok(v) => v,
        Err(error) => {
            m.pending.push(TwinEvent::Ml(MlEvent::Error(ModelError {
                t_ns,
                model: m.id.clone(),
                machine: None,
                error,
            })));
            return;
        }
    };
    let cols = values.len() / due.len().max(1);
    let run = run_shared(m, t_ns, rows_ns, values, cols);
    let values = &run.output;
    for (k, (r, uncertain)) in due.iter().enumerate() {
        let row_values = &values[k * cols..(k + 1) * cols];
        let machine = m.rows[*r].machine.clone();
        if let Err(error) = check_output(m.task, row_values) {
            m.pending.push(TwinEvent::Ml(MlEvent::Error(ModelError {
                t_ns,
                model: m.id.clone(),
                machine,
                error,
            })));
            continue;
        }
        let pred = prediction(&run, k, machine, uncertain.clone());
        let row = &mut m.rows[*r];
        let quality = if uncertain.is_some() {
            InputQuality::Uncertain
        } else {
            InputQuality::Good
        };
        if let Some(b) = &m.busy {
            // Busy on any score at or above the mark; calm again only on a
            // trusted one below it, so doubtful data never slows a model.
            if pred.score >= b.above {
                row.busy = true;
            } else if uncertain.is_none() {
                row.busy = false;
            }
        }
        let score = pred.score;
        m.pending.push(TwinEvent::Ml(MlEvent::Prediction(pred)));
        if row.alarms.is_empty() {
            continue;
        }
        // The alarms of the row: fault, one per fault class on its risk
        // (column 0, the normal class, has none); anomaly, one on the score.
        let per_class = m.task == Task::Fault;
        for (i, a) in row.alarms.iter_mut().enumerate() {
            let (class, value) = if per_class {
                let Some(v) = row_values.get(i + 1) else {
                    break;
                };
                (m.classes.get(i + 1).cloned(), f64::from(v.clamp(0.0, 1.0)))
            } else {
                (None, score)
            };
            let (state, tr) = match a.update(tick, value, quality) {
                alarm::Step::Raised(tr) => ("raised", tr),
                alarm::Step::Cleared(tr) => ("cleared", tr),
                _ => continue,
            };
            m.pending
                .push(TwinEvent::Ml(MlEvent::Alarm(Box::new(AlarmEvent {
                    t_ns,
                    model: m.id.clone(),
                    machine: row.machine.clone(),
                    class,
                    state,
                    priority: m.priority,
                    value: tr.value,
                    threshold: tr.threshold,
                    reason: tr.reason.to_string(),
                }))));
        }
    }
}

/// One run (or one per row where the batch is fixed at 1): the output's
/// values, row after row.
pub(super) fn run_batch(
    session: &mut ModelSession,
    m: &RunSpec,
    batch: &[f32],
    rows: usize,
) -> Result<Vec<f32>, String> {
    let width = m.width;
    let mut run = |data: &[f32], n: usize| -> Result<Vec<f32>, String> {
        let view = ArrayView2::from_shape((n, width), data).map_err(|e| e.to_string())?;
        let values = session
            .run_output(&m.input, view, &m.output)
            .map_err(|e| e.to_string())?;
        if values.nrows() != n {
            return Err(format!(
                "output `{}` has {} rows for a batch of {n}",
                m.output,
                values.nrows()
            ));
        }
        // The session's array already owns a copy of ORT's output: take
        // its buffer rather than copy it again.
        Ok(into_flat(values))
    };
    match m.batching {
        Batching::Rows => run(batch, rows),
        Batching::OneRow => {
            let mut all = Vec::new();
            for r in 0..rows {
                all.extend(run(&batch[r * width..(r + 1) * width], 1)?);
            }
            Ok(all)
        }
    }
}

/// An output array's values, row after row, without a copy when it is laid
/// out that way already (as `ModelSession::run` builds it).
fn into_flat(a: ndarray::Array2<f32>) -> Vec<f32> {
    if !a.is_standard_layout() {
        return a.iter().copied().collect();
    }
    let n = a.len();
    let (v, offset) = a.into_raw_vec_and_offset();
    match offset.unwrap_or(0) {
        0 if v.len() == n => v,
        // A view into a larger buffer (not what the session builds).
        o => v.get(o..o + n).map(<[f32]>::to_vec).unwrap_or_default(),
    }
}

/// Values a task can use: finite, and probabilities within 0..1.
fn check_output(task: Task, values: &[f32]) -> Result<(), String> {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(format!("output column {i} is {v}"));
    }
    if task == Task::Fault {
        const SLACK: f32 = 1e-4;
        if let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| **v < -SLACK || **v > 1.0 + SLACK)
        {
            return Err(format!("probability column {i} is {v}, outside 0..1"));
        }
    }
    Ok(())
}

/// What the rows of one run share (see [`RunShared`]).
fn run_shared(
    m: &ModelRun,
    t_ns: i64,
    rows_ns: Option<i64>,
    output: Vec<f32>,
    cols: usize,
) -> Arc<RunShared> {
    let (names, first) = match m.task {
        Task::Fault => (m.classes.clone(), 1),
        Task::Setpoint => (m.setpoints.clone(), 0),
        Task::Anomaly | Task::Rul => (Arc::from([]), 0),
    };
    Arc::new(RunShared {
        t_ns,
        model: m.id.clone(),
        task: m.task,
        classes: m.classes.clone(),
        names,
        first,
        threshold: (m.task == Task::Anomaly).then_some(m.threshold).flatten(),
        unit: (m.task == Task::Rul).then(|| m.unit.clone()).flatten(),
        inputs_ns: rows_ns,
        output,
        cols,
    })
}

/// Row `k`'s prediction from its slice of the run's output.
fn prediction(
    run: &Arc<RunShared>,
    k: usize,
    machine: Option<Arc<str>>,
    uncertain: Option<String>,
) -> Prediction {
    let values = &run.output[k * run.cols..(k + 1) * run.cols];
    let mut p = Prediction {
        run: run.clone(),
        row: u32::try_from(k).unwrap_or(u32::MAX),
        machine,
        class: None,
        score: f64::from(values.first().copied().unwrap_or(f32::NAN)),
        uncertain,
    };
    match run.task {
        Task::Fault => {
            // Risk per fault class: columns 1.., read clamped into 0..1.
            p.score = values
                .iter()
                .skip(1)
                .take(run.classes.len().saturating_sub(1))
                .map(|&v| f64::from(v.clamp(0.0, 1.0)))
                .fold(0.0, f64::max);
            // The most likely class; ties go to the earlier (normal first).
            let best = values
                .iter()
                .enumerate()
                .fold(None::<(usize, f32)>, |b, (i, v)| match b {
                    Some((_, bv)) if bv >= *v => b,
                    _ => Some((i, *v)),
                });
            p.class = best
                .filter(|&(i, _)| i < run.classes.len())
                .and_then(|(i, _)| u32::try_from(i).ok());
        }
        Task::Setpoint => p.score = f64::NAN,
        Task::Anomaly | Task::Rul => {}
    }
    p
}
