//! One optimisation round, without the core: which candidate setpoints to
//! try, and the physics lookahead's verdict on each.
//!
//! - **Candidates** ([`candidates`]): the current setpoints (the baseline),
//!   the model's proposal made legal (each value clamped to its
//!   `[[setpoints]]` bounds and to `max_step` from the current value), and
//!   `neighbours` values each side of the current one per setpoint, the
//!   others held. A neighbour outside the bounds is vetoed (`bounds`), not
//!   moved: moved, it would only repeat another candidate. Candidates equal
//!   to one before them are dropped before anything is counted.
//! - **Vetting** ([`vet`]): every candidate is forecast over the horizon
//!   from one copy of the line as the twin has it now. Vetoes, in the
//!   order they are checked (a candidate counts once, under the first):
//!   `bounds` and `step` (a value the setpoint may not take, or not from
//!   here), `forecast_failed`, `lost_product` (products fall off, unless
//!   the line loses products now and the candidate loses fewer),
//!   `jam_risk` (above the limit, unless lower than now), and `no_gain`
//!   (objective not at least `min_gain` above the baseline's).
//! - **Objective**: forecast throughput per minute over the horizon's last
//!   half ([`settled_forecast`]), less `energy_weight`
//!   times the energy proxy Σ belt drive speed × belt length (m²/s, the
//!   belt power of a drive whose losses grow with speed and length). The
//!   best candidate left (ties: the earlier, so the model's proposal first)
//!   is the round's proposal.
//!
//! Everything here is a function of its arguments: the same line state and
//! candidates give the same verdicts on any thread, which is what lets the
//! stage run it off the tick (`ml::optimise`).

use std::time::Duration;

use crate::config::knob::Knob;
use crate::config::optimise::Variable;
use crate::physics::LineModel;
use crate::physics::lookahead::{Candidate, Forecast};

/// Two setpoint values this close are the same value.
const SAME: f64 = 1e-9;

/// Where a candidate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The current setpoints.
    Baseline,
    /// The model's proposal, made legal.
    Model,
    /// The current setpoints with one of them moved.
    Neighbour,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Baseline => "baseline",
            Origin::Model => "model",
            Origin::Neighbour => "neighbour",
        }
    }
}

/// One candidate: a value per decision variable, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub origin: Origin,
    pub values: Vec<f64>,
}

/// Why a candidate was not proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Veto {
    Bounds,
    Step,
    ForecastFailed,
    LostProduct,
    JamRisk,
    NoGain,
}

impl Veto {
    /// Every reason, in the order events list them.
    pub const ALL: [Veto; 6] = [
        Veto::LostProduct,
        Veto::JamRisk,
        Veto::Bounds,
        Veto::Step,
        Veto::NoGain,
        Veto::ForecastFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Veto::Bounds => "bounds",
            Veto::Step => "step",
            Veto::ForecastFailed => "forecast_failed",
            Veto::LostProduct => "lost_product",
            Veto::JamRisk => "jam_risk",
            Veto::NoGain => "no_gain",
        }
    }

    fn index(self) -> usize {
        Veto::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Candidates vetoed, per reason (in [`Veto::ALL`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vetoes(pub [u64; Veto::ALL.len()]);

impl Vetoes {
    pub fn add(&mut self, v: Veto) {
        self.0[v.index()] += 1;
    }

    pub fn get(&self, v: Veto) -> u64 {
        self.0[v.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn merge(&mut self, other: &Vetoes) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// (reason, count) in [`Veto::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Veto::ALL.iter().map(|v| (v.as_str(), self.get(*v)))
    }
}

/// The candidates of a round, baseline first, and those vetoed before any
/// forecast (a neighbour outside its bounds).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    pub trials: Vec<Trial>,
    pub vetoed: Vetoes,
    /// Per variable: what the forecast multiplies a value by before it
    /// turns the knob (1 for most; a station that runs slower than its
    /// setpoint, worn, keeps that ratio: `LineState::station_setpoint`).
    pub scales: Vec<f64>,
}

/// `proposed` made legal for `v` from `current`: within the bounds, and
/// within `max_step` of `current` where the bounds allow it. When the
/// current value is so far outside the bounds that no value is within both,
/// the bounds win and the step check vetoes the candidate.
pub fn legalise(v: &Variable, current: f64, proposed: f64) -> f64 {
    let (mut lo, mut hi) = (v.min, v.max);
    if let Some(step) = v.max_step {
        let (slo, shi) = (current - step, current + step);
        if slo.max(lo) <= shi.min(hi) {
            (lo, hi) = (slo.max(lo), shi.min(hi));
        }
    }
    proposed.clamp(lo, hi)
}

/// Whether `value` is one `v` may take from `current`.
pub fn check(v: &Variable, current: f64, value: f64) -> Result<(), Veto> {
    // A value read back from an f32 tag or belt speed is off by ~1e-7.
    const SLACK: f64 = 1e-6;
    if value < v.min - SLACK || value > v.max + SLACK {
        return Err(Veto::Bounds);
    }
    if let Some(step) = v.max_step
        && (value - current).abs() > step + SLACK
    {
        return Err(Veto::Step);
    }
    Ok(())
}

/// The candidates of a round: baseline `current`, the model's `proposal`
/// made legal, and `neighbours` per side per variable.
pub fn candidates(
    vars: &[Variable],
    current: &[f64],
    proposal: &[f64],
    neighbours: u32,
) -> Candidates {
    let mut out = Candidates {
        trials: vec![Trial {
            origin: Origin::Baseline,
            values: current.to_vec(),
        }],
        vetoed: Vetoes::default(),
        scales: vec![1.0; vars.len()],
    };
    let model: Vec<f64> = vars
        .iter()
        .zip(current.iter().zip(proposal))
        .map(|(v, (&c, &p))| legalise(v, c, p))
        .collect();
    push_new(&mut out.trials, Origin::Model, model);
    for (i, v) in vars.iter().enumerate() {
        let step = v.neighbour_step();
        for k in 1..=neighbours {
            for sign in [-1.0, 1.0] {
                let mut values = current.to_vec();
                values[i] = current[i] + sign * step * f64::from(k) / f64::from(neighbours);
                if check(v, current[i], values[i]) == Err(Veto::Bounds) {
                    if !is_known(&out.trials, &values) {
                        out.vetoed.add(Veto::Bounds);
                    }
                    continue;
                }
                push_new(&mut out.trials, Origin::Neighbour, values);
            }
        }
    }
    out
}

fn is_known(trials: &[Trial], values: &[f64]) -> bool {
    trials.iter().any(|t| {
        t.values
            .iter()
            .zip(values)
            .all(|(a, b)| (a - b).abs() <= SAME)
    })
}

fn push_new(trials: &mut Vec<Trial>, origin: Origin, values: Vec<f64>) {
    if !is_known(trials, &values) {
        trials.push(Trial { origin, values });
    }
}

/// What a round is judged by, and from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub horizon: Duration,
    pub max_jam_risk: f64,
    pub energy_weight: f64,
    pub min_gain: f64,
    /// Time between arrivals at the infeed in the forecasts.
    pub arrival_interval: Option<Duration>,
    /// Per conveyor of the line (model order): belt length in m.
    pub belt_lengths: Vec<f64>,
}

/// A candidate's forecast and what it scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub values: Vec<f64>,
    pub forecast: Forecast,
    /// Σ belt drive speed × belt length, m²/s.
    pub energy: f64,
    /// Throughput per minute less `energy_weight × energy`.
    pub objective: f64,
}

/// The outcome of one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub baseline: Scored,
    /// The proposal: the best candidate that passed, and where it came from.
    pub best: Option<(Origin, Scored)>,
    /// Candidates other than the baseline, vetoed or not.
    pub tried: u64,
    pub passed: u64,
    pub vetoed: Vetoes,
}

impl Round {
    /// The proposal's objective gain over the baseline.
    pub fn gain(&self) -> Option<f64> {
        self.best
            .as_ref()
            .map(|(_, s)| s.objective - self.baseline.objective)
    }
}

/// Forecasts every candidate of `c` from `line` (the twin's line now) and
/// judges it by `rules`. `Err` when the baseline itself cannot be forecast.
pub fn vet(
    line: &LineModel,
    vars: &[Variable],
    c: &Candidates,
    rules: &Rules,
) -> Result<Round, String> {
    let Some((base, rest)) = c.trials.split_first() else {
        return Err("no baseline candidate".into());
    };
    let baseline = score(line, vars, &base.values, &c.scales, rules)
        .map_err(|e| format!("the forecast at the current setpoints failed: {e}"))?;
    let mut round = Round {
        baseline,
        best: None,
        tried: rest.len() as u64 + c.vetoed.total(),
        passed: 0,
        vetoed: c.vetoed,
    };
    let current = &base.values;
    for t in rest {
        match judge(line, vars, current, t, &c.scales, &round.baseline, rules) {
            Ok(s) => {
                round.passed += 1;
                let better = round
                    .best
                    .as_ref()
                    .is_none_or(|(_, b)| s.objective > b.objective);
                if better {
                    round.best = Some((t.origin, s));
                }
            }
            Err(v) => round.vetoed.add(v),
        }
    }
    Ok(round)
}

fn judge(
    line: &LineModel,
    vars: &[Variable],
    current: &[f64],
    t: &Trial,
    scales: &[f64],
    baseline: &Scored,
    rules: &Rules,
) -> Result<Scored, Veto> {
    for ((v, &c), &x) in vars.iter().zip(current).zip(&t.values) {
        check(v, c, x)?;
    }
    let s = score(line, vars, &t.values, scales, rules).map_err(|_| Veto::ForecastFailed)?;
    let (f, b) = (&s.forecast, &baseline.forecast);
    if f.lost > 0 && f.lost >= b.lost {
        return Err(Veto::LostProduct);
    }
    if f.jam_risk > rules.max_jam_risk && f.jam_risk >= b.jam_risk {
        return Err(Veto::JamRisk);
    }
    if s.objective - baseline.objective < rules.min_gain {
        return Err(Veto::NoGain);
    }
    Ok(s)
}

/// The forecast of `values` and its objective.
fn score(
    line: &LineModel,
    vars: &[Variable],
    values: &[f64],
    scales: &[f64],
    rules: &Rules,
) -> Result<Scored, crate::physics::PhysicsError> {
    let mut c = Candidate {
        arrival_interval: rules.arrival_interval,
        ..Candidate::default()
    };
    for (k, (v, &x)) in vars.iter().zip(values).enumerate() {
        c.set(v.knob, x * scales.get(k).copied().unwrap_or(1.0));
    }
    let forecast = settled_forecast(line, &c, rules.horizon)?;
    let energy: f64 = rules
        .belt_lengths
        .iter()
        .enumerate()
        .map(|(i, len)| {
            let speed = vars
                .iter()
                .zip(values)
                .find(|(v, _)| v.knob == Knob::Belt(i))
                .map(|(_, &x)| x)
                .or_else(|| line.belt_speed_at(i).map(f64::from))
                .unwrap_or(0.0);
            speed.abs() * len
        })
        .sum();
    let objective = forecast.throughput_per_min - rules.energy_weight * energy;
    Ok(Scored {
        values: values.to_vec(),
        forecast,
        energy,
        objective,
    })
}

/// The forecast of `c` over `horizon`, with its throughput taken over the
/// last half only: in the first half the line settles at the candidate's
/// setpoints (a faster belt first empties what is on it, a one-off that
/// says nothing of the rate it keeps). Everything else (lost, jam risk,
/// counts) is over the whole horizon.
pub fn settled_forecast(
    line: &LineModel,
    c: &Candidate,
    horizon: Duration,
) -> Result<Forecast, crate::physics::PhysicsError> {
    let settle = horizon / 2;
    let (mid, a) = line.lookahead_state(c, settle)?;
    let b = mid.lookahead(c, horizon - settle)?;
    Ok(Forecast {
        horizon,
        arrivals: a.arrivals + b.arrivals,
        infeed_blocked: a.infeed_blocked + b.infeed_blocked,
        out: a.out + b.out,
        lost: a.lost + b.lost,
        pushed: a.pushed + b.pushed,
        diverted: a.diverted + b.diverted,
        throughput_per_min: b.throughput_per_min,
        wip_start: a.wip_start,
        wip_end: b.wip_end,
        wip_max: a.wip_max.max(b.wip_max),
        max_standing: a.max_standing.max(b.max_standing),
        jam_risk: a.jam_risk.max(b.jam_risk),
    })
}

/// The value each variable's knob has in `line` now: a belt's drive
/// speed, a station's cycle time (`None` when a knob has no value: a
/// station whose cycle is unknown holds).
pub fn current_values(line: &LineModel, vars: &[Variable]) -> Option<Vec<f64>> {
    vars.iter()
        .map(|v| match v.knob {
            Knob::Belt(i) => line.belt_speed_at(i).map(f64::from),
            Knob::Station(i) => line
                .stations()
                .get(i)
                .and_then(|s| s.cycle())
                .map(|c| c.as_secs_f64()),
        })
        .collect()
}

#[cfg(test)]
#[path = "vetting_tests.rs"]
mod tests;
