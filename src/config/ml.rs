//! The ML stage's view of the config: every `[[models]]` entry with a
//! `task`, resolved against the rest of the plant and ready to run.
//!
//! Decoding ([`super::model`]) reads the keys as written; validation
//! (`validate::models`) resolves them: the bound machines, the tag each role
//! names on each of them, the line each physics feature reads, and every
//! duration as a whole number of ticks. The stage reads only this, so it
//! never re-derives a binding or divides a duration by the tick itself.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::decode::Loc;

config_words! {
    /// What a model's output means, and so which event it becomes.
    Task {
        /// One probability per fault class: a risk per class.
        Fault = "fault",
        /// One score, alarmed against a threshold.
        Anomaly = "anomaly",
        /// One remaining-useful-life estimate, in `output.unit`.
        Rul = "rul",
        /// One proposed value per `[[setpoints]]` tag.
        Setpoint = "setpoint",
    }
}

config_words! {
    /// How a feature reduces its tag's per-tick grid to one number.
    Stat {
        /// The current value.
        Value = "value",
        Mean = "mean",
        Std = "std",
        Rms = "rms",
        Min = "min",
        Max = "max",
        /// Least-squares slope over the window, in units per second.
        Slope = "slope",
        /// The value `lag` ago.
        Lag = "lag",
    }
}

impl Stat {
    /// Whether the stat is over a window (and so needs `window`).
    pub fn is_window(self) -> bool {
        !matches!(self, Stat::Value | Stat::Lag)
    }
}

config_words! {
    /// An output of the line's physics twin a feature can read.
    PhysicsKind {
        Residuals = "residuals",
        Slip = "slip",
        Wip = "wip",
        Throughput = "throughput",
        Utilisation = "utilisation",
    }
}

config_words! {
    /// What a row with a bad or stale value, or a window not yet full, becomes.
    OnBadInput {
        /// No prediction for that row.
        Suppress = "suppress",
        /// A prediction with `quality: "uncertain"`.
        Uncertain = "uncertain",
    }
}

config_words! {
    /// ISA-18.2 alarm priority, carried on `alarm` events.
    Priority {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

/// Default of `on_bad_input`: a doubtful row is still computed, and says so.
pub const ON_BAD_INPUT: OnBadInput = OnBadInput::Uncertain;
/// Default of `alarm.priority`.
pub const ALARM_PRIORITY: Priority = Priority::Medium;

/// `[ml]` and the runnable `[[models]]`, resolved.
#[derive(Debug, Clone, Default)]
pub struct MlConfig {
    /// `[ml].runtime`: the ONNX Runtime library, relative paths resolved
    /// against the config file's folder. Second in the search order, after
    /// `ORT_DYLIB_PATH`.
    pub runtime: Option<Loc<PathBuf>>,
    /// `[ml].metering`: the interval of `metering` events, in ticks (0 in
    /// a config without `[ml]` resolved, which writes none).
    pub metering: Duration,
    pub metering_ticks: u32,
    /// `[ml].rows_per_minute`: the budget all models share; `None` is no
    /// limit.
    pub rows_per_minute: Option<u32>,
    /// Models with a `task`, in file order. A `[[models]]` entry without a
    /// `task` (schema 1 before models ran) is checked but not run.
    pub models: Vec<Model>,
    /// Model files that do not come from disk, by model id: the files a
    /// recording carries (a replay under the recording's own config runs
    /// the very models the run ran) and those built into the binary (the
    /// built-in demo works from any folder). A model with bytes here is
    /// loaded from them, not from its `path`. Empty after a plain load.
    pub bundled: std::collections::BTreeMap<String, std::sync::Arc<[u8]>>,
}

impl MlConfig {
    /// The bytes of model `m`'s file: its bundled copy, or the file at its
    /// `path`.
    pub fn model_bytes(&self, m: &Model) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        match self.bundled.get(&m.id.value) {
            Some(b) => Ok(std::borrow::Cow::Borrowed(b)),
            None => std::fs::read(&m.path.value).map(std::borrow::Cow::Owned),
        }
    }
}

/// One runnable model.
#[derive(Debug, Clone)]
pub struct Model {
    pub id: Loc<String>,
    /// The ONNX file, resolved against the config file's folder; the span
    /// is the `path` value's.
    pub path: Loc<PathBuf>,
    pub task: Task,
    /// Machine ids the model serves, one row each per run; empty for a
    /// plant-level model (one row per run).
    pub binding: Vec<String>,
    /// Cadence; a whole number of ticks.
    pub every: Duration,
    pub every_ticks: u32,
    /// `input`: the ONNX input to feed; `None` means the model's only input.
    pub input: Option<Loc<String>>,
    pub on_bad_input: OnBadInput,
    /// The feature vector, in column order: `inputs` first, then
    /// `[[models.features]]`.
    pub features: Vec<Feature>,
    /// Where the feature list is written (`features`, else `inputs`, else
    /// the model), for a model whose input width does not match.
    pub features_span: Range<usize>,
    /// One per row of a run, in `binding` order (one plant-level row when
    /// `binding` is empty): what each feature reads for that row.
    pub rows: Vec<Row>,
    pub output: Output,
    pub alarm: Option<Alarm>,
    /// `[models.schedule]`, resolved; all `None` without it.
    pub schedule: Schedule,
    /// `[models.optimise]`, resolved: a setpoint model whose proposals the
    /// physics lookahead vets. `None` without the table: the model's values
    /// are reported as `prediction` events only.
    pub optimise: Option<super::optimise::Optimise>,
    /// The whole `[[models]]` table.
    pub span: Range<usize>,
}

/// One column of the feature vector, as written.
#[derive(Debug, Clone)]
pub struct Feature {
    pub source: FeatureSource,
    pub stat: Stat,
    /// Grid points the stat covers; 0 for `value` and `lag`.
    pub window_ticks: u32,
    /// How many ticks back `lag` reads; 0 unless `stat = "lag"`.
    pub lag_ticks: u32,
    /// The feature's table (or its `inputs` entry).
    pub span: Range<usize>,
}

/// What a feature reads, as written; [`Row::inputs`] has it per machine.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureSource {
    Tag(String),
    /// A role of each bound machine.
    Role(String),
    /// A physics output; `line` when the feature names one.
    Physics {
        kind: PhysicsKind,
        line: Option<String>,
    },
}

/// The inputs of one row: one machine (or the plant) of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `None` for a plant-level model.
    pub machine: Option<String>,
    /// One per feature, in column order.
    pub inputs: Vec<Input>,
}

/// Where one feature of one row takes its value each tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The tag's current value (a `tag` feature, or the tag a `role` names
    /// on this row's machine).
    Tag(String),
    /// The physics output of this line.
    Physics { kind: PhysicsKind, line: String },
}

/// `[models.output]`, with the keys of the model's task.
#[derive(Debug, Clone)]
pub struct Output {
    /// The ONNX output to read; `None` means the model's only (first tensor)
    /// output.
    pub name: Option<Loc<String>>,
    /// Fault: one class per output column, the first the normal class. Empty
    /// for other tasks; the span is the key's (else the model's).
    pub classes: Loc<Vec<String>>,
    /// Anomaly: the score threshold; `None` means the model's metadata
    /// `twin.threshold`.
    pub threshold: Option<Loc<f64>>,
    /// Rul: the unit of the estimate.
    pub unit: Option<Loc<String>>,
    /// Setpoint: one `[[setpoints]]` tag per output column. Empty for other
    /// tasks; the span is the key's (else the model's).
    pub setpoints: Loc<Vec<String>>,
}

/// Default of `[ml].metering`.
pub const METERING: Duration = Duration::from_secs(60);

/// When a model runs beyond its calm cadence (`every_ticks`), and how many
/// rows it may run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Schedule {
    /// A machine whose last risk or score was at or above `above` runs
    /// every `every_ticks` instead.
    pub busy: Option<Busy>,
    /// The model's own budget, in rows per minute; `None` is no limit.
    pub rows_per_minute: Option<u32>,
    /// `apply_after` in ticks: the model's `run()` goes to a worker thread
    /// and its results apply this many ticks after its rows were taken
    /// (docs/ml.md, "Off the tick thread"). 0: on the tick thread, at once.
    pub apply_after_ticks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Busy {
    pub every: Duration,
    pub every_ticks: u32,
    pub above: f64,
}

/// `[models.alarm]`: when a risk or score raises and clears an alarm.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// Raises at or above this. `None` (anomaly only): `output.threshold`,
    /// else the model's metadata `twin.threshold`.
    pub threshold: Option<Loc<f64>>,
    /// Clears below `threshold - deadband`.
    pub deadband: f64,
    pub on_delay: Duration,
    pub off_delay: Duration,
    /// The delays in ticks, rounded up: a condition must hold this many
    /// ticks in a row.
    pub on_delay_ticks: u32,
    pub off_delay_ticks: u32,
    pub priority: Priority,
}
