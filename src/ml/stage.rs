//! The ML stage in the core: feature windows, one batched run per model
//! per due tick, and outputs turned into `prediction`, `alarm` and `error`
//! events.
//!
//! - **Features** (first thing in `Stage::Inference`'s system): every
//!   signal a model reads (a tag, or a line's physics output) is sampled
//!   once per tick onto its window (`ml::tickbank`), whether a model is due
//!   or not, so windows and lags mean the same at any cadence.
//! - **Inference** (`Stage::Inference`): a row (one machine of a model) is
//!   due when the tick is a multiple of its cadence: `every`, or
//!   `[models.schedule] busy_every` while its last risk or score is at or
//!   above `busy_above`. A due row runs if the model's and the plant's row
//!   quotas (`ml::meter::Bucket`) have a row left, taken fault models
//!   first, then anomaly, rul, setpoint; otherwise it is skipped and
//!   counted. The rows that run go into one `[rows, features]` batch and
//!   one `run()`; a model whose batch dimension is fixed at 1 runs once
//!   per row.
//! - **Metering** (`ml::meter`): runs, rows, skipped and busy rows per
//!   model, machine and line, as `metering` events every `[ml] metering`
//!   and once at the end of the run ([`end_of_run`]). Compute time is
//!   measured with the runner's stopwatch and kept out of events.
//! - **Outputs** (`stage/outputs.rs`): a fault model's probabilities
//!   become a risk per fault class; an anomaly model's score is judged
//!   against its threshold; a rul model gives an estimate in its unit; a
//!   setpoint model's values are reported as they are (the optimiser that
//!   vets them is a later stage). Values that are not finite, or probabilities outside 0..1,
//!   are an `error` event for that row: no prediction, no alarm change.
//! - **Quality**: a row with a bad or stale input, or a window not yet
//!   full, is suppressed or reported `uncertain`, as the model's
//!   `on_bad_input` says; either way its alarms hold (ISA-18.2: an alarm
//!   never moves on data that cannot be trusted).
//!
//! Determinism: the stage reads no clock; ORT sessions run with one thread
//! and deterministic compute (`ml::runtime`), so a replay on the same host
//! with the same model files gives the same bytes (docs/ml.md).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy_ecs::prelude::*;

use super::alarm::{self, AlarmLimits, InputQuality};
use super::deferred::Deferred;
use super::events::{Metering, MlEvent, RunShared};
use super::features::{self, FeatureSpec, RowQuality, SignalId, Stat};
use super::io::Batching;
use super::load::LoadedModel;
use super::meter::{Bucket, ComputeTime, Counts, ModelMeter, Stopwatch};
use super::session::ModelSession;
use super::tickbank::{TableUse, TickBank, TickRow};
use crate::config::LoadedConfig;
use crate::config::ml::{self as cfgml, Input, OnBadInput, PhysicsKind, Task};
use crate::twin::components::{TagIndex, TagQuality, TagValue};
use crate::twin::{Lines, Quality, Stage, TickClock, TwinCore, TwinEvent, Value};
use outputs::{apply, reclaim, run_batch, with_output};

mod outputs;

/// Why the stage could not be set up from the config and its models.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("model `{0}` is in the config but was not loaded")]
    NotLoaded(String),
    #[error("model `{model}`: {detail}")]
    Features { model: String, detail: String },
}

/// Where a signal's value comes from each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Tag(Entity),
    Physics(PhysicsKind, usize),
}

struct RowRun {
    machine: Option<Arc<str>>,
    features: TickRow,
    /// fault: one per fault class (the normal class, column 0, has none);
    /// anomaly: one. Empty without `[models.alarm]`.
    alarms: Vec<alarm::Alarm>,
    /// The row's last risk or score was at or above `busy_above`: it runs
    /// at the busy cadence.
    busy: bool,
}

struct ModelRun {
    id: Arc<str>,
    task: Task,
    every_ticks: u64,
    on_bad: OnBadInput,
    /// Shared with the model's worker thread when its runs are offloaded.
    session: Arc<Mutex<ModelSession>>,
    spec: Arc<RunSpec>,
    /// `[models.schedule] apply_after`: runs on a worker thread, results
    /// applied a fixed number of ticks later.
    offload: Option<Offload>,
    /// Shared by every row's prediction (`RowValues`), never cloned per
    /// class per row.
    classes: Arc<[Arc<str>]>,
    threshold: Option<f64>,
    unit: Option<Arc<str>>,
    setpoints: Arc<[Arc<str>]>,
    priority: cfgml::Priority,
    rows: Vec<RowRun>,
    /// The bank's bulk-table slots the rows read.
    table: TableUse,
    busy: Option<cfgml::Busy>,
    /// `[models.schedule] rows_per_minute`.
    quota: Option<Bucket>,
    meter: ModelMeter,
    /// This tick's events of the model: models run in priority order but
    /// their events go out in file order, so a quota changes which rows
    /// run, never the order of what is said.
    pending: Vec<TwinEvent>,
    compute: Duration,
    overruns: u64,
    /// Each row's machine, shared by every run's events (`RunShared`).
    machines: Arc<[Option<Arc<str>>]>,
    /// The last runs' shared parts, refilled by a later run once no event
    /// holds them (`outputs::reclaim`).
    last_runs: Vec<Arc<RunShared>>,
    /// Under a quota, the row the next due tick offers a row to first: the
    /// first one skipped last time, so no machine is starved for good.
    cursor: usize,
}

/// What a `run()` of the model needs besides its session and batch.
struct RunSpec {
    input: String,
    output: String,
    batching: Batching,
    width: usize,
}

/// An offloaded batch's output values (or why there are none) and the
/// time its `run()` took.
type BatchResult = (Result<Vec<f32>, String>, Duration);

/// A row in a batch: its index in the model's rows, and why it is
/// uncertain (`None`: good).
type DueRow = (usize, Option<String>);

/// A model whose `run()` goes to a worker thread (`ml::deferred`): the
/// batch taken at tick t is run off the tick thread and its results are
/// applied at t + `ticks`, on every host and in every replay alike.
struct Offload {
    ticks: u64,
    worker: Deferred<BatchResult>,
    /// Per batch handed over and not yet applied, in submission order: its
    /// rows (index, why uncertain) and the time they were taken.
    in_flight: VecDeque<(Vec<DueRow>, i64)>,
}

/// On a tag entity a model reads: its signal in the bank. The stage samples
/// its tags in one pass over the marked entities (dense, in table order),
/// not a lookup per signal (2 µs a tick less at 1,024 signals,
/// benches/ml_stage.rs).
#[derive(Component, Debug, Clone, Copy)]
struct MlSignal(SignalId);

#[derive(Resource)]
struct MlState {
    /// The feature windows, time-major (src/ml/tickbank.rs).
    bank: TickBank,
    /// The signals of lines' physics outputs; a tag's signal is on its
    /// entity ([`MlSignal`]).
    physics: Vec<(PhysicsKind, usize, SignalId)>,
    models: Vec<ModelRun>,
    /// Reused batch buffers.
    batch: Vec<f32>,
    due: Vec<(usize, Option<String>)>,
    /// Model indices in the order they take from the budgets: fault, then
    /// anomaly, rul, setpoint (protection before optimisation), each in
    /// file order.
    order: Vec<usize>,
    /// `[ml] rows_per_minute`, shared by every model.
    budget: Option<Bucket>,
    metering_ticks: u64,
    period_ns: i64,
    /// Ticks the stage has run, for the metering interval and the run's
    /// span.
    ticks: u64,
    stopwatch: Option<Stopwatch>,
}

/// This tick's ML events, sent by the emit stage after the line events.
#[derive(Resource, Default)]
struct PendingMlEvents(Vec<TwinEvent>);

/// Set the stage up in `core` for `cfg`'s models with a task, given their
/// sessions (`ml::load::load_models`). A config without such models adds
/// nothing.
pub fn install(
    core: &mut TwinCore,
    cfg: &LoadedConfig,
    loaded: Vec<LoadedModel>,
) -> Result<(), StageError> {
    if cfg.ml.models.is_empty() {
        return Ok(());
    }
    let period_ns = core.clock().period_ns();
    let tick_s = period_ns as f64 / 1e9;
    let mut next_signal = 0u32;
    // Every row's features, in (model, row) order, compiled into one bank
    // once all are known.
    let mut all_specs: Vec<Vec<FeatureSpec>> = Vec::new();
    let world = core.world_mut();
    let tag_entities = world.resource::<TagIndex>().0.clone();
    let line_ids: Vec<Arc<str>> = world
        .get_resource::<Lines>()
        .map(|l| l.0.iter().map(|s| s.id.clone()).collect())
        .unwrap_or_default();
    let sha256: HashMap<String, String> = loaded
        .iter()
        .map(|m| (m.id.clone(), m.session.sha256_hex()))
        .collect();
    let mut by_id: HashMap<String, LoadedModel> =
        loaded.into_iter().map(|m| (m.id.clone(), m)).collect();
    let mut signal_of: HashMap<Source, SignalId> = HashMap::new();
    let mut signals = Vec::new();
    let mut models = Vec::new();
    let tick_ns = u64::try_from(period_ns).unwrap_or(1);
    // Each machine's lines, for metering per line.
    let mut line_names: Vec<Arc<str>> = Vec::new();
    let mut lines_of: HashMap<&str, Vec<Arc<str>>> = HashMap::new();
    for line in &cfg.config.lines {
        for m in &line.machines {
            let on = lines_of.entry(m.value.as_str()).or_default();
            if !on.iter().any(|l| **l == *line.id.value) {
                on.push(Arc::from(line.id.value.as_str()));
            }
        }
    }
    for m in &cfg.ml.models {
        let id = m.id.value.clone();
        let lm = by_id
            .remove(&id)
            .ok_or_else(|| StageError::NotLoaded(id.clone()))?;
        let features_err = |detail: String| StageError::Features {
            model: id.clone(),
            detail,
        };
        let mut rows = Vec::new();
        for row in &m.rows {
            let mut specs = Vec::with_capacity(row.inputs.len());
            for (f, input) in m.features.iter().zip(&row.inputs) {
                let source = match input {
                    Input::Tag(tag) => {
                        let tid = cfg.tags.id(tag).ok_or_else(|| {
                            features_err(format!("tag `{tag}` is not in the config"))
                        })?;
                        Source::Tag(tag_entities[tid.index()])
                    }
                    Input::Physics { kind, line } => {
                        let i = line_ids.iter().position(|l| &**l == line).ok_or_else(|| {
                            features_err(format!("line `{line}` has no model in the twin"))
                        })?;
                        Source::Physics(*kind, i)
                    }
                };
                let signal = *signal_of.entry(source).or_insert_with(|| {
                    let id = SignalId::new(next_signal);
                    next_signal += 1;
                    signals.push((source, id));
                    id
                });
                let (stat, n) = match f.stat {
                    cfgml::Stat::Value => (Stat::Value, 0),
                    cfgml::Stat::Mean => (Stat::Mean, f.window_ticks),
                    cfgml::Stat::Std => (Stat::Std, f.window_ticks),
                    cfgml::Stat::Rms => (Stat::Rms, f.window_ticks),
                    cfgml::Stat::Min => (Stat::Min, f.window_ticks),
                    cfgml::Stat::Max => (Stat::Max, f.window_ticks),
                    cfgml::Stat::Slope => (Stat::Slope, f.window_ticks),
                    cfgml::Stat::Lag => (Stat::Lag, f.lag_ticks),
                };
                specs.push(FeatureSpec {
                    signal,
                    stat,
                    n: n as usize,
                });
            }
            features::check_specs(&specs, usize::MAX).map_err(|e| features_err(e.to_string()))?;
            all_specs.push(specs);
            rows.push(RowRun {
                machine: row.machine.as_deref().map(Arc::from),
                features: TickRow::default(),
                alarms: Vec::new(),
                busy: false,
            });
        }
        let threshold = match m.task {
            Task::Anomaly => m
                .output
                .threshold
                .as_ref()
                .map(|t| t.value)
                .or_else(|| metadata_threshold(&lm)),
            _ => None,
        };
        let classes: Arc<[Arc<str>]> = m
            .output
            .classes
            .value
            .iter()
            .map(|c| Arc::from(c.as_str()))
            .collect();
        let mut priority = cfgml::ALARM_PRIORITY;
        if let Some(a) = &m.alarm {
            let alarm_threshold = a
                .threshold
                .as_ref()
                .map(|t| t.value)
                .or(threshold)
                .unwrap_or(f64::NAN);
            priority = a.priority;
            let limits = AlarmLimits {
                threshold: alarm_threshold,
                deadband: a.deadband,
                on_delay: u64::from(a.on_delay_ticks),
                off_delay: u64::from(a.off_delay_ticks),
            };
            let per_row = match m.task {
                Task::Fault => classes.len().saturating_sub(1),
                Task::Anomaly => 1,
                Task::Rul | Task::Setpoint => 0,
            };
            for r in &mut rows {
                for _ in 0..per_row {
                    r.alarms
                        .push(alarm::Alarm::new(limits).map_err(|e| features_err(e.to_string()))?);
                }
            }
        }
        line_names.clear();
        let row_lines: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| {
                let on = r.machine.as_deref().and_then(|m| lines_of.get(m));
                on.into_iter()
                    .flatten()
                    .map(|l| match line_names.iter().position(|x| x == l) {
                        Some(i) => i,
                        None => {
                            line_names.push(l.clone());
                            line_names.len() - 1
                        }
                    })
                    .collect()
            })
            .collect();
        models.push(ModelRun {
            busy: m.schedule.busy,
            quota: m.schedule.rows_per_minute.map(|r| Bucket::new(r, tick_ns)),
            meter: ModelMeter::new(row_lines, line_names.clone()),
            pending: Vec::new(),
            compute: Duration::ZERO,
            overruns: 0,
            last_runs: Vec::with_capacity(2),
            machines: rows.iter().map(|r| r.machine.clone()).collect(),
            cursor: 0,
            id: Arc::from(id.as_str()),
            task: m.task,
            every_ticks: u64::from(m.every_ticks.max(1)),
            on_bad: m.on_bad_input,
            spec: Arc::new(RunSpec {
                input: lm.binding.input.clone(),
                output: lm.binding.output.clone(),
                batching: lm.binding.batching,
                width: m.features.len(),
            }),
            session: Arc::new(Mutex::new(lm.session)),
            offload: (m.schedule.apply_after_ticks > 0).then(|| Offload {
                ticks: u64::from(m.schedule.apply_after_ticks),
                worker: Deferred::new("twin-ml-run"),
                in_flight: VecDeque::new(),
            }),
            classes,
            threshold,
            unit: m.output.unit.as_ref().map(|u| Arc::from(u.value.as_str())),
            setpoints: m
                .output
                .setpoints
                .value
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
            priority,
            rows,
            table: TableUse::default(),
        });
    }
    let (bank, compiled) =
        TickBank::build(tick_s, signals.len(), &all_specs).map_err(|e| StageError::Features {
            model: String::new(),
            detail: e.to_string(),
        })?;
    let mut physics = Vec::new();
    for &(source, id) in &signals {
        match source {
            // A tag's entity is the core's (`TagIndex`); were it gone, its
            // signal would stay bad, never a panic.
            Source::Tag(e) => {
                if let Ok(mut tag) = world.get_entity_mut(e) {
                    tag.insert(MlSignal(id));
                }
            }
            Source::Physics(kind, line) => physics.push((kind, line, id)),
        }
    }
    let rows = models.iter_mut().flat_map(|m| m.rows.iter_mut());
    for (row, features) in rows.zip(compiled) {
        row.features = features;
    }
    for m in &mut models {
        m.table = bank.table_use(m.rows.iter().map(|r| &r.features));
    }
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by_key(|&i| task_rank(models[i].task));
    world.insert_resource(MlState {
        bank,
        physics,
        models,
        batch: Vec::new(),
        due: Vec::new(),
        order,
        budget: cfg.ml.rows_per_minute.map(|r| Bucket::new(r, tick_ns)),
        metering_ticks: u64::from(cfg.ml.metering_ticks),
        period_ns,
        ticks: 0,
        stopwatch: None,
    });
    world.insert_resource(PendingMlEvents::default());
    core.add_systems(Stage::Inference, infer);
    core.add_systems(Stage::Emit, emit_ml);
    super::optimise::install(core, cfg, &sha256)
}

/// An anomaly model's threshold from its metadata (`twin.threshold`).
fn metadata_threshold(m: &LoadedModel) -> Option<f64> {
    m.session
        .io()
        .metadata
        .get("twin.threshold")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// The features half of the stage: every signal's point of this tick onto
/// its window. Run at the start of [`infer`], in one system with it: a
/// system of its own cost a tick as much as sampling a few signals
/// (bevy's per-system dispatch and parameter fetch), and nothing runs
/// between the two.
fn sample_signals(
    st: &mut MlState,
    tags: &Query<(&MlSignal, &TagValue, &TagQuality)>,
    lines: Option<&Lines>,
    line_events: Option<&crate::twin::systems::PendingLineEvents>,
) {
    // A signal not set here (a tag entity without a value) enters the
    // windows as a bad point at the commit.
    for (&MlSignal(id), v, q) in tags.iter() {
        let good = q.quality == Quality::Good;
        let (value, ok) = match &v.0 {
            Some(Value::Num(n)) => (*n, good && n.is_finite()),
            Some(Value::Bool(b)) => (f64::from(u8::from(*b)), good),
            Some(Value::Text(_)) | None => (f64::NAN, false),
        };
        st.bank.set(id, value, ok);
    }
    for &(kind, l, id) in &st.physics {
        let (value, ok) = match lines.and_then(|ls| ls.0.get(l)) {
            Some(line) => {
                let ok = !line.status.uncertain;
                let v = match kind {
                    // This tick's residuals wait for the emit stage in the
                    // line events.
                    PhysicsKind::Residuals => line_events.map_or(0.0, |p| {
                        p.0.iter()
                            .filter(|e| matches!(e, TwinEvent::Residual(r) if r.line == line.id))
                            .count() as f64
                    }),
                    PhysicsKind::Slip => line.max_slip(),
                    PhysicsKind::Wip => line.status.wip as f64,
                    PhysicsKind::Throughput => line.status.throughput_per_min,
                    PhysicsKind::Utilisation => line.station_utilisation(),
                };
                (v, ok)
            }
            None => (f64::NAN, false),
        };
        st.bank.set(id, value, ok);
    }
    st.bank.commit();
}

/// Where a task takes from the shared budget: protection (fault, anomaly)
/// before maintenance (rul) before optimisation (setpoint).
fn task_rank(task: Task) -> u8 {
    match task {
        Task::Fault => 0,
        Task::Anomaly => 1,
        Task::Rul => 2,
        Task::Setpoint => 3,
    }
}

fn infer(
    mut st: ResMut<MlState>,
    clock: Res<TickClock>,
    mut out: ResMut<PendingMlEvents>,
    setpoints: Option<ResMut<super::optimise::SetpointCandidates>>,
    tags: Query<(&MlSignal, &TagValue, &TagQuality)>,
    lines: Option<Res<Lines>>,
    line_events: Option<Res<crate::twin::systems::PendingLineEvents>>,
) {
    let tick = clock.tick();
    let t_ns = clock.now_ns();
    let st = &mut *st;
    sample_signals(st, &tags, lines.as_deref(), line_events.as_deref());
    if let Some(b) = &mut st.budget {
        b.refill();
    }
    for i in 0..st.order.len() {
        let mi = st.order[i];
        let m = &mut st.models[mi];
        if let Some(q) = &mut m.quota {
            q.refill();
        }
        let mut cx = RunCx {
            bank: &mut st.bank,
            batch: &mut st.batch,
            due: &mut st.due,
            budget: &mut st.budget,
            stopwatch: st.stopwatch,
            period: Duration::from_nanos(u64::try_from(st.period_ns).unwrap_or(0)),
        };
        run_model(m, &mut cx, tick, t_ns);
    }
    if let Some(mut sp) = setpoints {
        for m in st.models.iter().filter(|m| m.task == Task::Setpoint) {
            sp.take_from(&m.pending);
        }
    }
    for m in &mut st.models {
        // Hundreds of events a run: the first model's are handed over by
        // swapping buffers, not copied.
        if out.0.is_empty() {
            std::mem::swap(&mut out.0, &mut m.pending);
        } else {
            out.0.append(&mut m.pending);
        }
    }
    st.ticks += 1;
    if st.metering_ticks > 0 && st.ticks.is_multiple_of(st.metering_ticks) {
        let span_ns = st.period_ns.saturating_mul(st.metering_ticks as i64);
        for m in &mut st.models {
            let (counts, rows, lines) = m.meter.close();
            out.0.push(metering(
                m, t_ns, "interval", span_ns, counts, &rows, &lines,
            ));
        }
    }
}

/// What one model's run on a tick borrows from the stage.
struct RunCx<'a> {
    bank: &'a mut TickBank,
    batch: &'a mut Vec<f32>,
    due: &'a mut Vec<(usize, Option<String>)>,
    budget: &'a mut Option<Bucket>,
    stopwatch: Option<Stopwatch>,
    period: Duration,
}

/// Which rows are due on a tick: at the busy cadence while a row's machine
/// is busy, else at the calm one (`every`). Worked out once per model per
/// tick, not per row (a 64-bit division each).
/// Never shifted: a model's rows sit on its own grid, the run's start plus
/// whole multiples of `every`, which is the grid its trainer sampled
/// (docs/ml.md, "One grid per model"). Models sharing a cadence used to be
/// staggered over it to flatten the tick's p99; a model then read its
/// signals half a cadence away from the instants it was trained on.
#[derive(Debug, Clone, Copy)]
struct DueNow {
    calm: bool,
    busy: bool,
}

impl DueNow {
    fn of(m: &ModelRun, tick: u64) -> Self {
        let calm = tick.is_multiple_of(m.every_ticks);
        let busy = match &m.busy {
            Some(b) => tick.is_multiple_of(u64::from(b.every_ticks.max(1))),
            None => calm,
        };
        DueNow { calm, busy }
    }

    #[inline]
    fn row(self, m: &ModelRun, row: &RowRun) -> bool {
        if row.busy && m.busy.is_some() {
            self.busy
        } else {
            self.calm
        }
    }
}

/// One model on one tick: its due rows that the quotas admit, in one
/// batch; its events into `m.pending`.
fn run_model(m: &mut ModelRun, cx: &mut RunCx<'_>, tick: u64, t_ns: i64) {
    apply_landed(m, cx, tick, t_ns);
    let width = m.spec.width;
    // Rows due: (row index, why uncertain).
    cx.due.clear();
    cx.batch.clear();
    let (mut any_due, mut first_skipped) = (false, None);
    // Without a quota rows go in binding order; with one, from the row
    // skipped first last time (round robin), so that a short budget is
    // shared by the machines in turn.
    let n = m.rows.len();
    // The rows due, for the bank's bulk table: all or none unless rows
    // have a busy cadence of their own.
    let now = DueNow::of(m, tick);
    let due_rows = match m.busy {
        None if now.calm => n,
        None => 0,
        Some(_) => m.rows.iter().filter(|r| now.row(m, r)).count(),
    };
    let table = if due_rows > 0 {
        cx.bank.prepare(&m.table, due_rows * width)
    } else {
        None
    };
    let limited = m.quota.is_some() || cx.budget.is_some();
    let mut next = if limited { m.cursor % n.max(1) } else { 0 };
    for _ in 0..n {
        let r = next;
        next = if next + 1 == n { 0 } else { next + 1 };
        if !now.row(m, &m.rows[r]) {
            continue;
        }
        any_due = true;
        // A row that would run needs a row of both budgets; one that cannot
        // is counted, never silently dropped.
        let fits = m.quota.as_ref().is_none_or(Bucket::has_row)
            && cx.budget.as_ref().is_none_or(Bucket::has_row);
        if !fits {
            first_skipped = first_skipped.or(Some(r));
            m.meter.row(r, |c| c.skipped_rows += 1);
            continue;
        }
        let row = &mut m.rows[r];
        let start = cx.batch.len();
        cx.batch.resize(start + width, 0.0);
        let quality = cx.bank.fill(&row.features, table, &mut cx.batch[start..]);
        let uncertain = match quality {
            Ok(RowQuality::Good) => None,
            Ok(q @ RowQuality::Uncertain { .. }) => Some(q.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if uncertain.is_some() {
            for a in &mut row.alarms {
                a.update(tick, f64::NAN, InputQuality::Uncertain);
            }
            if m.on_bad == OnBadInput::Suppress {
                cx.batch.truncate(start);
                continue;
            }
        }
        if let Some(q) = &mut m.quota {
            q.take_row();
        }
        if let Some(b) = cx.budget.as_mut() {
            b.take_row();
        }
        let busy = row.busy && m.busy.is_some();
        m.meter.row(r, |c| {
            c.rows += 1;
            c.busy_rows += u64::from(busy);
        });
        cx.due.push((r, uncertain));
    }
    if let Some(r) = first_skipped {
        m.cursor = r;
    }
    if cx.due.is_empty() {
        if any_due && first_skipped.is_some() {
            m.meter.model(|c| c.skipped_runs += 1);
        }
        return;
    }
    m.meter.model(|c| c.runs += 1);
    if let Some(off) = &mut m.offload {
        // Off the tick thread: the job owns its batch and a handle on the
        // session, reads nothing else, and its result applies at a tick
        // fixed now (`apply_landed`).
        let (session, spec, stopwatch) = (m.session.clone(), m.spec.clone(), cx.stopwatch);
        let (batch, rows) = (cx.batch.clone(), cx.due.len());
        off.worker.submit(tick + off.ticks, move || {
            let started = stopwatch.map(|w| w());
            let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
            let mut values = Vec::new();
            let values = run_batch(&mut s, &spec, &batch, rows, &mut values).map(|()| values);
            let took = match (stopwatch, started) {
                (Some(w), Some(t0)) => w().saturating_sub(t0),
                _ => Duration::ZERO,
            };
            (values, took)
        });
        off.in_flight.push_back((std::mem::take(cx.due), t_ns));
        return;
    }
    let run = reclaim(m, t_ns, None);
    let rows = cx.due.len();
    let started = cx.stopwatch.map(|w| w());
    let results = with_output(run, rows, |out| {
        let mut session = m.session.lock().unwrap_or_else(|e| e.into_inner());
        run_batch(&mut session, &m.spec, cx.batch, rows, out)
    });
    if let (Some(w), Some(t0)) = (cx.stopwatch, started) {
        let took = w().saturating_sub(t0);
        m.compute += took;
        m.overruns += u64::from(took > cx.period);
    }
    let due = std::mem::take(cx.due);
    apply(m, results, &due, tick, t_ns);
    *cx.due = due;
}

/// An offloaded model's batches due on `tick`: their results become this
/// tick's events, as a model on the tick thread's would have on the tick
/// its rows were taken. Waits for a batch still running (the worker is
/// behind: counted as an overrun).
fn apply_landed(m: &mut ModelRun, cx: &mut RunCx<'_>, tick: u64, t_ns: i64) {
    let Some(off) = &mut m.offload else {
        return;
    };
    if off.in_flight.is_empty() {
        return;
    }
    let budget = cx
        .period
        .saturating_mul(u32::try_from(off.ticks).unwrap_or(u32::MAX));
    let landed = off.worker.take_due(tick);
    let mut batches = Vec::with_capacity(landed.len());
    for result in landed {
        let Some((due, rows_ns)) = off.in_flight.pop_front() else {
            break;
        };
        let values = match result {
            Ok((values, took)) => {
                m.compute += took;
                m.overruns += u64::from(took > budget);
                values
            }
            Err(failed) => Err(failed.to_string()),
        };
        batches.push((values, due, rows_ns));
    }
    for (values, due, rows_ns) in batches {
        let results = values.and_then(|v| {
            with_output(reclaim(m, t_ns, Some(rows_ns)), due.len(), |out| {
                *out = v;
                Ok(())
            })
        });
        apply(m, results, &due, tick, t_ns);
    }
}

/// A `metering` event of `m` from counts of the model, its rows and lines.
fn metering(
    m: &ModelRun,
    t_ns: i64,
    scope: &'static str,
    span_ns: i64,
    counts: Counts,
    rows: &[Counts],
    lines: &[Counts],
) -> TwinEvent {
    TwinEvent::Ml(MlEvent::Metering(Box::new(Metering {
        t_ns,
        model: m.id.clone(),
        task: m.task,
        scope,
        span_ns,
        counts,
        machines: m
            .rows
            .iter()
            .zip(rows)
            .filter_map(|(r, c)| Some((r.machine.clone()?, *c)))
            .collect(),
        lines: m
            .meter
            .line_names
            .iter()
            .cloned()
            .zip(lines.iter().copied())
            .collect(),
    })))
}

/// Give the stage a clock for compute time (`ml::meter::ComputeTime`). The
/// runner calls it: the core reads no clock itself, and what the stopwatch
/// measures never reaches an event or a decision.
pub fn set_stopwatch(core: &mut TwinCore, stopwatch: Stopwatch) {
    if let Some(mut st) = core.world_mut().get_resource_mut::<MlState>() {
        st.stopwatch = Some(stopwatch);
    }
}

/// The batch the stage last filled, row after row: that of the last model
/// that ran on the last tick (empty if none ran). For benches, to time raw
/// `run()` on the rows the stage actually ran, not on made-up ones: a
/// tree ensemble's cost depends on the values.
pub fn last_batch(core: &TwinCore) -> Vec<f32> {
    core.world()
        .get_resource::<MlState>()
        .map(|st| st.batch.clone())
        .unwrap_or_default()
}

/// Compute time per model so far (zero without a stopwatch).
pub fn compute_time(core: &TwinCore) -> ComputeTime {
    let Some(st) = core.world().get_resource::<MlState>() else {
        return ComputeTime::default();
    };
    ComputeTime {
        models: st
            .models
            .iter()
            .map(|m| (m.id.clone(), m.compute, m.overruns))
            .collect(),
    }
}

/// The end of a run: one `metering` event per model with the run's totals
/// (`scope` `run`), at the last tick's time. Empty without models. Call it
/// once, after the last tick.
pub fn end_of_run(core: &mut TwinCore) -> Vec<TwinEvent> {
    let optimisers = super::optimise::end_of_run(core);
    let t_ns = core.clock().now_ns();
    let Some(mut st) = core.world_mut().get_resource_mut::<MlState>() else {
        return Vec::new();
    };
    let st = &mut *st;
    let span_ns = st.period_ns.saturating_mul(st.ticks as i64);
    let mut out = Vec::with_capacity(st.models.len());
    for m in &mut st.models {
        m.meter.close();
        let (total, rows, lines) = (
            m.meter.total,
            m.meter.total_rows.clone(),
            m.meter.total_lines.clone(),
        );
        out.push(metering(m, t_ns, "run", span_ns, total, &rows, &lines));
        tracing::info!(
            model = %m.id,
            runs = total.runs,
            rows = total.rows,
            skipped_runs = total.skipped_runs,
            skipped_rows = total.skipped_rows,
            busy_rows = total.busy_rows,
            compute_us = m.compute.as_micros() as u64,
            overruns = m.overruns,
            "Model metering for the run."
        );
    }
    out.extend(optimisers);
    out
}

fn emit_ml(mut pending: ResMut<PendingMlEvents>, mut outbox: ResMut<crate::twin::Outbox>) {
    if outbox.0.is_empty() {
        std::mem::swap(&mut outbox.0, &mut pending.0);
    } else {
        outbox.0.append(&mut pending.0);
    }
}
