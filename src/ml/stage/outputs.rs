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
/// cannot use. The run's shared part is kept as the model's last, to be
/// refilled by a later run once the events are gone ([`reclaim`]).
pub(super) fn apply(
    m: &mut ModelRun,
    results: Result<Arc<RunShared>, String>,
    due: &[DueRow],
    tick: u64,
    t_ns: i64,
) {
    let run = match results {
        Ok(run) => run,
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
    rows_events(m, &run, due, tick, t_ns);
    // The runs whose events a consumer may still hold: the last two (a
    // sink drops a tick's events by the next tick's end).
    if m.last_runs.len() == 2 {
        m.last_runs.remove(0);
    }
    m.last_runs.push(run);
}

/// The shared part for a run on `t_ns` (rows taken at `rows_ns` when
/// offloaded), its output to be written: one of the model's last runs'
/// that no event holds any more (a steady run then allocates nothing for
/// its output and clones none of the model's names), else a new one.
pub(super) fn reclaim(m: &mut ModelRun, t_ns: i64, rows_ns: Option<i64>) -> Arc<RunShared> {
    let free = m
        .last_runs
        .iter_mut()
        .position(|r| Arc::get_mut(r).is_some());
    if let Some(i) = free {
        let mut run = m.last_runs.remove(i);
        if let Some(rs) = Arc::get_mut(&mut run) {
            rs.t_ns = t_ns;
            rs.inputs_ns = rows_ns;
            rs.output.clear();
            rs.cols = 0;
            return run;
        }
    }
    run_shared(m, t_ns, rows_ns)
}

/// A run's output, `rows` rows written by `write`, into `run`'s shared
/// part (from [`reclaim`], so held nowhere else), its columns per row set
/// from what was written.
pub(super) fn with_output(
    mut run: Arc<RunShared>,
    rows: usize,
    write: impl FnOnce(&mut Vec<f32>) -> Result<(), String>,
) -> Result<Arc<RunShared>, String> {
    let Some(rs) = Arc::get_mut(&mut run) else {
        return Err("the run's output could not be stored (its shared part is in use)".into());
    };
    write(&mut rs.output)?;
    rs.cols = rs.output.len() / rows.max(1);
    Ok(run)
}

/// The rows' events of a run whose output is in `run`.
fn rows_events(m: &mut ModelRun, run: &Arc<RunShared>, due: &[DueRow], tick: u64, t_ns: i64) {
    let cols = run.cols;
    let values = &run.output;
    for (k, (r, uncertain)) in due.iter().enumerate() {
        let row_values = &values[k * cols..(k + 1) * cols];
        if let Err(error) = check_output(m.task, row_values) {
            m.pending.push(TwinEvent::Ml(MlEvent::Error(ModelError {
                t_ns,
                model: m.id.clone(),
                machine: m.rows[*r].machine.clone(),
                error,
            })));
            continue;
        }
        let pred = prediction(run, k, *r, uncertain.clone());
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
            let value = if per_class {
                let Some(v) = row_values.get(i + 1) else {
                    break;
                };
                f64::from(v.clamp(0.0, 1.0))
            } else {
                score
            };
            if a.stays(value) {
                continue;
            }
            let (state, tr) = match a.update(tick, value, quality) {
                alarm::Step::Raised(tr) => ("raised", tr),
                alarm::Step::Cleared(tr) => ("cleared", tr),
                _ => continue,
            };
            // The class's name is cloned only for an alarm that moved, not
            // for every alarm of every row.
            let class = if per_class {
                m.classes.get(i + 1).cloned()
            } else {
                None
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
/// values, row after row, into `out`.
pub(super) fn run_batch(
    session: &mut ModelSession,
    m: &RunSpec,
    batch: &[f32],
    rows: usize,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    let width = m.width;
    let mut run = |data: &[f32], n: usize, out: &mut Vec<f32>| -> Result<(), String> {
        let view = ArrayView2::from_shape((n, width), data).map_err(|e| e.to_string())?;
        let (got, _) = session
            .run_output_into(&m.input, view, &m.output, out)
            .map_err(|e| e.to_string())?;
        if got != n {
            return Err(format!(
                "output `{}` has {got} rows for a batch of {n}",
                m.output
            ));
        }
        Ok(())
    };
    match m.batching {
        Batching::Rows => run(batch, rows, out),
        Batching::OneRow => {
            out.clear();
            let mut one = Vec::new();
            for r in 0..rows {
                run(&batch[r * width..(r + 1) * width], 1, &mut one)?;
                out.extend_from_slice(&one);
            }
            Ok(())
        }
    }
}

/// Values a task can use: finite, and probabilities within 0..1.
fn check_output(task: Task, values: &[f32]) -> Result<(), String> {
    const SLACK: f32 = 1e-4;
    // One pass for the usual row; the slow one only to say what is wrong.
    let fine = if task == Task::Fault {
        values.iter().all(|v| (-SLACK..=1.0 + SLACK).contains(v))
    } else {
        values.iter().all(|v| v.is_finite())
    };
    if fine {
        return Ok(());
    }
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(format!("output column {i} is {v}"));
    }
    if task == Task::Fault
        && let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| **v < -SLACK || **v > 1.0 + SLACK)
    {
        return Err(format!("probability column {i} is {v}, outside 0..1"));
    }
    Ok(())
}

/// A new shared part for a run (see [`RunShared`]), its output still to
/// be written.
fn run_shared(m: &ModelRun, t_ns: i64, rows_ns: Option<i64>) -> Arc<RunShared> {
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
        output: Vec::new(),
        cols: 0,
        machines: m.machines.clone(),
    })
}

/// Row `k`'s prediction from its slice of the run's output.
fn prediction(
    run: &Arc<RunShared>,
    k: usize,
    model_row: usize,
    uncertain: Option<String>,
) -> Prediction {
    let values = &run.output[k * run.cols..(k + 1) * run.cols];
    let mut p = Prediction {
        run: run.clone(),
        row: u32::try_from(k).unwrap_or(u32::MAX),
        machine_at: u32::try_from(model_row).unwrap_or(u32::MAX),
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
