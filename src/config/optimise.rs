//! `[models.optimise]` on a setpoint model: how its proposals are vetted by
//! the physics lookahead before one becomes a `proposal` event
//! (`ml::optimise`, docs/ml.md "Setpoint optimisation").
//!
//! Decoding reads the keys as written and checks what one table decides
//! alone (ranges, the task); validation (`validate::optimise`) resolves the
//! proposed tags to their `[[setpoints]]` bounds and to the physics knob
//! each one turns ([`super::knob`]), all on one line.

use std::ops::Range;
use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table};
use super::diagnostics::Diagnostic;
use super::knob::Knob;
use super::ml::Task;

/// Default `horizon`: a minute, long enough for a change of belt speed to
/// reach the end of the demo line and show in its output.
pub const HORIZON: Duration = Duration::from_secs(60);
/// Longest `horizon`: each candidate is forecast over it (about 40 ms per
/// simulated minute on the demo line), and several candidates per round.
pub const MAX_HORIZON: Duration = Duration::from_secs(600);
/// Default `apply_after`: the round's proposal is emitted one second of
/// tick time after the model ran.
pub const APPLY_AFTER: Duration = Duration::from_secs(1);
/// Default `neighbours`: one each side of the current value per setpoint.
pub const NEIGHBOURS: u32 = 1;
/// Largest `neighbours`: each one is another forecast per setpoint, twice.
pub const MAX_NEIGHBOURS: i64 = 5;
/// Default `max_jam_risk`.
pub const MAX_JAM_RISK: f64 = 0.5;
/// Default `energy_weight`: throughput alone decides.
pub const ENERGY_WEIGHT: f64 = 0.0;
/// Default `min_gain`, in products per minute: more than one product over
/// the measured half of the default horizon (30 s, so one product is
/// 2/min). The forecast counts whole products, and a change of phase can
/// move one across the end of the window.
pub const MIN_GAIN: f64 = 2.5;

/// `[models.optimise]` as written.
#[derive(Debug, Clone)]
pub struct OptimiseDecl {
    pub horizon: Option<Loc<Duration>>,
    pub apply_after: Option<Loc<Duration>>,
    pub neighbours: Option<Loc<i64>>,
    pub max_jam_risk: Option<Loc<f64>>,
    pub energy_weight: Option<Loc<f64>>,
    pub min_gain: Option<Loc<f64>>,
    /// `[[setpoints]]` tags the forecast also searches (neighbours only):
    /// knobs the model does not propose.
    pub search: Vec<Loc<String>>,
    pub span: Range<usize>,
}

/// `[models.optimise]`, resolved against the plant.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimise {
    /// How far each candidate is forecast.
    pub horizon: Duration,
    /// When a round's result lands after the model ran; whole ticks.
    pub apply_after: Duration,
    pub apply_after_ticks: u32,
    /// Neighbours of the current value on each side, per setpoint, at
    /// `k / neighbours` of its step (k = 1..=neighbours).
    pub neighbours: u32,
    /// A candidate whose forecast jam risk is above this is vetoed (unless
    /// it is lower than the current setpoints').
    pub max_jam_risk: f64,
    /// Weight of the energy proxy (Σ belt speed × belt length, m²/s) in the
    /// objective, in products per minute per m²/s.
    pub energy_weight: f64,
    /// The least objective gain over the current setpoints, in products per
    /// minute, that makes a proposal.
    pub min_gain: f64,
    /// The line the setpoints turn knobs of: its index in the config's
    /// `lines`, and its id.
    pub line: usize,
    pub line_id: String,
    /// One per output column, in column order, then one per `search` tag.
    pub variables: Vec<Variable>,
    /// How many of `variables` are the model's output columns; the rest
    /// are searched by the forecast alone.
    pub model_columns: usize,
}

/// One decision variable: a proposed `[[setpoints]]` tag and its knob.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub tag: String,
    pub knob: Knob,
    pub min: f64,
    pub max: f64,
    /// The largest change from the current value; `None`: any within the
    /// bounds.
    pub max_step: Option<f64>,
}

impl Variable {
    /// How far a neighbour steps at most: `max_step`, or a tenth of the
    /// range when the setpoint has none.
    pub fn neighbour_step(&self) -> f64 {
        self.max_step.unwrap_or((self.max - self.min) / 10.0)
    }
}

pub(super) fn decode_optimise(
    sink: &mut Sink,
    mut t: Table<'_, '_>,
    task: Result<Option<Task>, ()>,
) -> OptimiseDecl {
    let horizon = t.opt_duration(sink, "horizon", Duration::from_secs(1), MAX_HORIZON);
    let apply_after = t.opt_duration(sink, "apply_after", MS, HOUR);
    let neighbours = t.opt_int(sink, "neighbours", 0, MAX_NEIGHBOURS);
    let max_jam_risk = t.opt_f64(sink, "max_jam_risk");
    let energy_weight = t.opt_f64(sink, "energy_weight");
    let min_gain = t.opt_f64(sink, "min_gain");
    let search = t.opt_str_array(sink, "search").unwrap_or_default();
    if let Some(r) = &max_jam_risk
        && !(0.0..=1.0).contains(&r.value)
    {
        sink.push(
            Diagnostic::error(
                r.span.clone(),
                t.key_path("max_jam_risk"),
                format!(
                    "a jam risk is a share; {} can never be met as meant",
                    r.value
                ),
            )
            .expected("a number in 0..=1 (0 a line with room to spare, 1 a full line)"),
        );
    }
    for (key, v) in [("energy_weight", &energy_weight), ("min_gain", &min_gain)] {
        if let Some(v) = v
            && v.value < 0.0
        {
            sink.push(
                Diagnostic::error(
                    v.span.clone(),
                    t.key_path(key),
                    format!("{key} must not be negative, found {}", v.value),
                )
                .expected("a number >= 0")
                .help(if key == "min_gain" {
                    "a negative gain would propose setpoints the forecast says are worse"
                } else {
                    "a negative weight would reward energy use"
                }),
            );
        }
    }
    if let Ok(task) = task
        && task != Some(Task::Setpoint)
    {
        sink.push(
            Diagnostic::error(
                t.span(),
                t.path().to_string(),
                match task {
                    Some(task) => format!("task = \"{task}\" proposes no setpoints to optimise"),
                    None => "a model without `task` proposes no setpoints".to_string(),
                },
            )
            .expected("[models.optimise] only with task = \"setpoint\"")
            .help("remove [models.optimise], or set task = \"setpoint\""),
        );
    }
    let span = t.span();
    t.finish(sink);
    OptimiseDecl {
        horizon,
        apply_after,
        neighbours,
        max_jam_risk,
        energy_weight,
        min_gain,
        search,
        span,
    }
}
