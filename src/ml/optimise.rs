//! The optimiser stage (`Stage::Optimiser`): a setpoint model's proposals,
//! vetted by the physics lookahead, become `proposal` events.
//!
//! Data flow per tick:
//! 1. The inference stage hands each setpoint model's rows of this tick to
//!    [`SetpointCandidates`] (a row whose output is not finite is an
//!    `error` event there and never gets here).
//! 2. For each row of a model with `[models.optimise]`: the setpoints as
//!    the line runs them now are read from the twin's line model, the
//!    round's candidates are made (`ml::vetting::candidates`), and a copy
//!    of the line model goes, with them, to a worker thread
//!    (`ml::deferred`) that forecasts each one (`ml::vetting::vet`). A row
//!    that is `uncertain`, or a line that is, is skipped and counted: a
//!    forecast from a state the twin does not trust would vet nothing.
//! 3. The round's result applies `apply_after` later, at a tick fixed when
//!    it was handed over; that tick waits for the worker if it has not
//!    finished. The best candidate that passed becomes a `proposal` event;
//!    every round's candidates and vetoes are counted for the run's
//!    `optimiser` summary ([`end_of_run`]).
//!
//! Why off the tick thread and at a fixed later tick: a round forecasts
//! several candidates over a minute each, tens of milliseconds apiece,
//! which would overrun a 100 ms tick; and a result that landed "when it is
//! ready" would land on a tick that depends on the machine's load. The job
//! reads only what it was given, so live and replay give the same bytes.
//!
//! Proposals are events here; when the guard is installed it gets a copy
//! of each ([`OptimiserProposals`]) and decides what, if anything, is
//! written (`crate::guard`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::deferred::Deferred;
use super::events::{MlEvent, Prediction};
use super::optimise_events::{Counts, OptimiserEvent, Proposal, RoundError, Summary};
use super::stage::StageError;
use super::vetting::{self, Round, Rules};
use crate::config::LoadedConfig;
use crate::config::layout::Layout;
use crate::config::ml::Task;
use crate::config::optimise::Optimise;
use crate::twin::{Lines, Stage, TickClock, TwinCore, TwinEvent};

/// One row of a setpoint model's output on this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct SetpointRow {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub machine: Option<Arc<str>>,
    /// One per `output.setpoints` tag, in column order.
    pub values: Vec<f64>,
    pub uncertain: bool,
}

/// This tick's setpoint model rows, from the inference stage to the
/// optimiser.
#[derive(Resource, Debug, Default)]
pub struct SetpointCandidates(pub Vec<SetpointRow>);

impl SetpointCandidates {
    /// Keeps the setpoint predictions among `events` (a model's events of
    /// this tick).
    pub fn take_from(&mut self, events: &[TwinEvent]) {
        for e in events {
            if let TwinEvent::Ml(MlEvent::Prediction(p)) = e
                && p.task() == Task::Setpoint
            {
                self.0.push(row_of(p));
            }
        }
    }
}

fn row_of(p: &Prediction) -> SetpointRow {
    SetpointRow {
        t_ns: p.t_ns(),
        model: p.model().clone(),
        machine: p.machine().cloned(),
        values: p.values().values().collect(),
        uncertain: p.uncertain.is_some(),
    }
}

/// This tick's proposals, from the optimiser to the guard
/// (`Stage::Guard`), which drains them. Filled only when the guard has
/// inserted the resource.
#[derive(Resource, Debug, Default)]
pub struct OptimiserProposals(pub Vec<Proposal>);

struct Optimiser {
    model: Arc<str>,
    sha256: Arc<str>,
    cfg: Arc<Optimise>,
    tags: Arc<[Arc<str>]>,
    line_id: Arc<str>,
    /// The line's index in [`Lines`].
    line: usize,
    rules: Arc<Rules>,
    counts: Counts,
}

/// A round handed to the worker, in submission order.
struct Inflight {
    optimiser: usize,
    based_on_ns: i64,
    machine: Option<Arc<str>>,
    current: Vec<f64>,
    model_output: Vec<f64>,
}

type Outcome = Result<Round, String>;

#[derive(Resource)]
struct OptState {
    optimisers: Vec<Optimiser>,
    worker: Deferred<Outcome>,
    inflight: VecDeque<Inflight>,
}

/// This tick's optimiser events, sent by the emit stage after the ML
/// stage's.
#[derive(Resource, Default)]
struct PendingOptEvents(Vec<TwinEvent>);

/// Set the optimiser up in `core` for `cfg`'s setpoint models with
/// `[models.optimise]`; `sha256` is each model file's hash by model id.
/// Adds nothing when no model has one. The inference stage fills
/// [`SetpointCandidates`] when the resource exists.
pub fn install(
    core: &mut TwinCore,
    cfg: &LoadedConfig,
    sha256: &HashMap<String, String>,
) -> Result<(), StageError> {
    let world = core.world_mut();
    let line_ids: Vec<Arc<str>> = world
        .get_resource::<Lines>()
        .map(|l| l.0.iter().map(|s| s.id.clone()).collect())
        .unwrap_or_default();
    let mut optimisers = Vec::new();
    for m in &cfg.ml.models {
        let Some(o) = &m.optimise else { continue };
        let err = |detail: String| StageError::Features {
            model: m.id.value.clone(),
            detail,
        };
        let line = line_ids
            .iter()
            .position(|l| **l == *o.line_id)
            .ok_or_else(|| err(format!("line `{}` has no model in the twin", o.line_id)))?;
        let conf = cfg
            .config
            .lines
            .get(o.line)
            .ok_or_else(|| err(format!("line `{}` is not in the config", o.line_id)))?;
        let rules = Rules {
            horizon: o.horizon,
            max_jam_risk: o.max_jam_risk,
            energy_weight: o.energy_weight,
            min_gain: o.min_gain,
            // The forecast's arrivals by default: the line's nominal rate (a
            // line that follows an infeed counter has it as `spawn_interval`
            // too, and each round uses the rate observed once it has one).
            arrival_interval: conf.product.as_ref().and_then(|p| p.spawn_interval),
            belt_lengths: conf
                .conveyors
                .iter()
                .map(|c| Layout::of(c).length())
                .collect(),
        };
        optimisers.push(Optimiser {
            model: Arc::from(m.id.value.as_str()),
            sha256: Arc::from(sha256.get(&m.id.value).map_or("", String::as_str)),
            tags: o
                .variables
                .iter()
                .map(|v| Arc::from(v.tag.as_str()))
                .collect(),
            line_id: Arc::from(o.line_id.as_str()),
            line,
            rules: Arc::new(rules),
            cfg: Arc::new(o.clone()),
            counts: Counts::default(),
        });
    }
    if optimisers.is_empty() {
        return Ok(());
    }
    world.insert_resource(OptState {
        optimisers,
        worker: Deferred::new("twin-optimiser"),
        inflight: VecDeque::new(),
    });
    world.insert_resource(SetpointCandidates::default());
    world.insert_resource(PendingOptEvents::default());
    core.add_systems(Stage::Optimiser, optimise);
    core.add_systems(Stage::Emit, emit);
    Ok(())
}

fn optimise(
    mut st: ResMut<OptState>,
    clock: Res<TickClock>,
    lines: Option<Res<Lines>>,
    mut rows: ResMut<SetpointCandidates>,
    mut out: ResMut<PendingOptEvents>,
    mut handover: Option<ResMut<OptimiserProposals>>,
) {
    let (tick, t_ns) = (clock.tick(), clock.now_ns());
    let st = &mut *st;
    for result in st.worker.take_due(tick) {
        let Some(f) = st.inflight.pop_front() else {
            continue;
        };
        let Some(o) = st.optimisers.get_mut(f.optimiser) else {
            continue;
        };
        let round = match result {
            Ok(Ok(round)) => round,
            Ok(Err(error)) | Err(super::deferred::JobFailed(error)) => {
                o.counts.failed += 1;
                tracing::warn!(model = %o.model, error = %error, "A setpoint optimisation round failed.");
                out.0.push(event(OptimiserEvent::Error(RoundError {
                    t_ns,
                    model: o.model.clone(),
                    machine: f.machine,
                    error,
                })));
                continue;
            }
        };
        let proposed = out.0.len();
        applied(o, t_ns, f, round, &mut out.0);
        if let Some(h) = handover.as_mut() {
            for e in &out.0[proposed..] {
                if let TwinEvent::Ml(MlEvent::Optimiser(OptimiserEvent::Proposal(p))) = e {
                    h.0.push((**p).clone());
                }
            }
        }
    }
    for row in rows.0.drain(..) {
        let Some(oi) = st.optimisers.iter().position(|o| o.model == row.model) else {
            continue;
        };
        let o = &mut st.optimisers[oi];
        if row.uncertain {
            o.counts.skipped_uncertain_input += 1;
            continue;
        }
        let state = lines.as_ref().and_then(|l| l.0.get(o.line));
        let Some(line) = state.filter(|l| !l.status.uncertain) else {
            o.counts.skipped_line_uncertain += 1;
            continue;
        };
        let vars = &o.cfg.variables;
        let Some((current, scales)) = knob_values(line, vars) else {
            // A station whose cycle is unknown: the line is uncertain too.
            o.counts.skipped_line_uncertain += 1;
            continue;
        };
        // The variables the model does not propose (`search`) hold in its
        // candidate; the neighbours move them.
        let mut proposal = row.values.clone();
        proposal.truncate(o.cfg.model_columns);
        proposal.extend(current.iter().skip(proposal.len()).copied());
        let mut candidates = vetting::candidates(vars, &current, &proposal, o.cfg.neighbours);
        candidates.scales = scales;
        let model = line.model().clone();
        let cfg = o.cfg.clone();
        // The forecast's arrivals: the rate the line has taken them at
        // lately, where it follows an infeed counter; else its nominal rate.
        let rules = match line.observed_arrival_interval() {
            Some(observed) if observed != o.rules.arrival_interval => Arc::new(Rules {
                arrival_interval: observed,
                ..(*o.rules).clone()
            }),
            _ => o.rules.clone(),
        };
        let due = tick + u64::from(o.cfg.apply_after_ticks.max(1));
        st.worker.submit(due, move || {
            vetting::vet(&model, &cfg.variables, &candidates, &rules)
        });
        st.inflight.push_back(Inflight {
            optimiser: oi,
            based_on_ns: row.t_ns,
            machine: row.machine,
            current,
            model_output: row.values,
        });
    }
}

/// The decision variables' current values, and what the forecast scales
/// each by: a belt's speed as the model runs it (scale 1); a station's
/// setpoint as its cycle-time tag gives it, scaled by how much slower than
/// that the station runs now (a measured rate, `rate_tag`), else the cycle
/// the model runs it at. `None` when a knob has no value (a station whose
/// cycle is unknown holds: the line is uncertain too).
fn knob_values(
    line: &crate::twin::lines::LineState,
    vars: &[crate::config::optimise::Variable],
) -> Option<(Vec<f64>, Vec<f64>)> {
    use crate::config::knob::Knob;
    let mut values = vetting::current_values(line.model(), vars)?;
    let mut scales = vec![1.0; vars.len()];
    for (k, v) in vars.iter().enumerate() {
        if let Knob::Station(i) = v.knob
            && let Some((sp, scale)) = line.station_setpoint(i)
        {
            values[k] = sp;
            scales[k] = scale;
        }
    }
    Some((values, scales))
}

/// A round's result at its tick: counted, and its proposal if it has one.
fn applied(o: &mut Optimiser, t_ns: i64, f: Inflight, mut round: Round, out: &mut Vec<TwinEvent>) {
    let gain = round.gain();
    let best = round.best.take();
    o.counts.round(&round, best.as_ref().map(|(_, s)| s));
    let (Some((origin, best)), Some(_)) = (best, gain) else {
        return;
    };
    out.push(event(OptimiserEvent::Proposal(Box::new(Proposal {
        t_ns,
        based_on_ns: f.based_on_ns,
        model: o.model.clone(),
        sha256: o.sha256.clone(),
        machine: f.machine,
        line: o.line_id.clone(),
        tags: o.tags.clone(),
        horizon: o.cfg.horizon,
        current: f.current,
        model_output: f.model_output,
        origin,
        best,
        round,
    }))));
}

fn event(e: OptimiserEvent) -> TwinEvent {
    TwinEvent::Ml(MlEvent::Optimiser(e))
}

fn emit(mut pending: ResMut<PendingOptEvents>, mut outbox: ResMut<crate::twin::Outbox>) {
    outbox.0.append(&mut pending.0);
}

/// The end of a run: one `optimiser` summary per optimised model, at the
/// last tick's time. Rounds whose tick never came are counted as
/// unfinished and not waited for. Empty without optimisers.
pub fn end_of_run(core: &mut TwinCore) -> Vec<TwinEvent> {
    let t_ns = core.clock().now_ns();
    let Some(mut st) = core.world_mut().get_resource_mut::<OptState>() else {
        return Vec::new();
    };
    let st = &mut *st;
    for f in st.inflight.drain(..) {
        if let Some(o) = st.optimisers.get_mut(f.optimiser) {
            o.counts.unfinished += 1;
        }
    }
    st.optimisers
        .iter()
        .map(|o| {
            let c = &o.counts;
            tracing::info!(
                model = %o.model,
                rounds = c.rounds,
                proposals = c.proposals,
                tried = c.tried,
                vetoed = c.vetoed.total(),
                "Setpoint optimisation for the run."
            );
            event(OptimiserEvent::Summary(Box::new(Summary {
                t_ns,
                model: o.model.clone(),
                line: o.line_id.clone(),
                counts: o.counts,
            })))
        })
        .collect()
}
