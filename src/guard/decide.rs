//! The decision on one proposal for one setpoint: every rule of
//! [`RuleId::ORDER`] in turn, first failure decides. A pure function of its
//! arguments (the setpoint's config and state, a snapshot of the tags, the
//! tick), so a replay decides the same and a test can call it alone.

use crate::config::TagId;
use crate::config::TagTable;
use crate::config::guard::{GuardedSetpoint, Mode, OutOfRange};
use crate::twin::{Quality, Value};

use super::audit::{Actor, Input};
use super::rules::RuleId;

/// Two values closer than this are equal (the step and rate limits are
/// checked with it so that a proposal exactly at the limit passes).
const EPS: f64 = 1e-9;

/// What the guard sees of one tag on this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TagSnap {
    pub value: Option<Value>,
    pub quality: Quality,
    /// Source time of the last applied sample.
    pub source_time_ns: Option<i64>,
}

impl Default for TagSnap {
    fn default() -> Self {
        TagSnap {
            value: None,
            quality: Quality::Bad,
            source_time_ns: None,
        }
    }
}

/// The core's state as the rules read it: the tick and every tag.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub now_ns: i64,
    pub tick: u64,
    pub period_ns: i64,
    /// Indexed by `TagId`.
    pub tags: &'a [TagSnap],
    pub table: &'a TagTable,
}

impl View<'_> {
    /// Time of tick `n`.
    pub fn time_of(&self, n: u64) -> i64 {
        let d = n as i64 - self.tick as i64;
        self.now_ns.saturating_add(d.saturating_mul(self.period_ns))
    }

    pub fn tag(&self, id: TagId) -> Option<&TagSnap> {
        self.tags.get(id.index())
    }

    fn name(&self, id: TagId) -> &str {
        self.table.try_get(id).map_or("?", |d| d.name.as_str())
    }

    /// Interlock lookup: a tag's value and quality by name.
    fn lookup(&self, name: &str) -> Option<(Value, Quality)> {
        let s = self.tag(self.table.id(name)?)?;
        Some((s.value.clone()?, s.quality))
    }

    /// How an input looked to the guard.
    pub fn input(&self, id: TagId) -> Input {
        let s = self.tag(id).cloned().unwrap_or_default();
        let age_ns = s
            .source_time_ns
            .map_or(0, |t| self.now_ns.saturating_sub(t).max(0));
        Input {
            tag: self.name(id).to_string(),
            age_ms: (age_ns / 1_000_000) as u64,
            quality: if s.value.is_none() && s.quality == Quality::Good {
                Quality::Bad
            } else {
                s.quality
            },
        }
    }

    /// A tag's value as a number, when it has a good one.
    pub fn number(&self, id: TagId) -> Option<f64> {
        self.tag(id)
            .and_then(|s| s.value.as_ref())
            .map(Value::as_f64)
            .filter(|x| x.is_finite())
    }
}

/// A lookahead forecast as the `lookahead` rule judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Products lost over the horizon.
    pub lost: u64,
    pub jam_risk: f64,
    /// The limit the jam risk is judged against.
    pub max_jam_risk: f64,
    /// The forecast as the audit entry and the event carry it.
    pub json: serde_json::Value,
}

/// A proposal for one setpoint, from a model or an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The guard's id for it, unique over the run.
    pub id: u64,
    pub actor: Actor,
    pub tag: TagId,
    pub requested: f64,
    /// When the data it was computed from was taken: its age is measured
    /// from here.
    pub based_on_ns: i64,
    /// The tags it used (the model's feature tags; the setpoint's own tag
    /// is always added).
    pub inputs: Vec<TagId>,
    /// The forecast that vetted it (an optimiser's).
    pub forecast: Option<Forecast>,
    /// The optimiser proposal it is part of, with its sibling setpoints.
    pub group: Option<u64>,
}

/// The guard's memory of one setpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetpointState {
    /// Why it is locked (a read-back mismatch), until an operator resets it.
    pub locked: Option<String>,
    /// Tick and value of the last write (or, in shadow mode, of the last
    /// value it would have written: shadow previews closed loop, rates
    /// included).
    pub last_write: Option<(u64, f64)>,
    /// The tick the guard started at: the rate limit's reference before
    /// the first write.
    pub start_tick: u64,
    /// A write awaiting its read-back.
    pub inflight: Option<InFlight>,
}

/// A write intent not yet verified.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub intent: u64,
    pub proposal: u64,
    pub value: f64,
    pub issued_tick: u64,
    pub actor: Actor,
    /// The writer said it sent the write.
    pub sent: bool,
    /// `last_write` before this write, restored if it never happened.
    pub previous: Option<(u64, f64)>,
}

/// Why a decision is being taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new proposal, decided by the setpoint's mode.
    Propose,
    /// An operator approved an advisory proposal: re-checked against every
    /// rule, on this tick's inputs, before it becomes a write.
    Approve,
}

/// What runs the physics lookahead for a value the guard is about to write.
pub trait Forecaster {
    /// The forecast with `tag` at `value`; `Ok(None)` when the setpoint
    /// turns no knob of a line model (nothing to forecast).
    fn forecast(&mut self, tag: TagId, value: f64) -> Result<Option<Forecast>, String>;
}

/// A forecaster for setpoints no line model knows.
pub struct NoForecast;

impl Forecaster for NoForecast {
    fn forecast(&mut self, _: TagId, _: f64) -> Result<Option<Forecast>, String> {
        Ok(None)
    }
}

/// The plant-wide conditions of this tick.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// Why everything is killed (config, CLI, a failed audit log); the kill
    /// tag is judged in [`decide`].
    pub kill: Option<String>,
    pub kill_tag: Option<TagId>,
}

/// The rules' verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Mode off: not considered, no event.
    Ignored,
    Blocked(RuleId, String),
    /// Inside the deadband: nothing to write.
    Skipped(String),
    /// Every rule passed: the value to write (clamped if it had to be).
    Pass(f64),
}

/// A decision with what it was taken on.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The setpoint's current value.
    pub old: Option<f64>,
    pub inputs: Vec<Input>,
    /// Set when `bounds` clamped: the bound, and why.
    pub clamped: Option<(f64, String)>,
    /// The forecast the `lookahead` rule judged, if it ran.
    pub forecast: Option<serde_json::Value>,
}

/// What a decision is taken in: the tick's view, the plant-wide
/// conditions, why, and whether the setpoint's link is up.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub view: View<'a>,
    pub globals: &'a Globals,
    pub purpose: Purpose,
    pub link_up: bool,
}

/// Decides on `p` for setpoint `sp`, every rule in [`RuleId::ORDER`].
pub fn decide(
    sp: &GuardedSetpoint,
    st: &SetpointState,
    p: &Proposal,
    cx: &Context<'_>,
    forecaster: &mut dyn Forecaster,
) -> Outcome {
    let view = &cx.view;
    let mut inputs_ids: Vec<TagId> = Vec::with_capacity(p.inputs.len() + 1);
    for id in std::iter::once(sp.tag).chain(p.inputs.iter().copied()) {
        if !inputs_ids.contains(&id) {
            inputs_ids.push(id);
        }
    }
    let mut out = Outcome {
        verdict: Verdict::Ignored,
        old: view.number(sp.tag),
        inputs: inputs_ids.iter().map(|id| view.input(*id)).collect(),
        clamped: None,
        forecast: None,
    };
    out.verdict = match rules(sp, st, p, cx, forecaster, &mut out) {
        Ok(v) => Verdict::Pass(v),
        Err(v) => v,
    };
    out
}

fn rules(
    sp: &GuardedSetpoint,
    st: &SetpointState,
    p: &Proposal,
    cx: &Context<'_>,
    forecaster: &mut dyn Forecaster,
    out: &mut Outcome,
) -> Result<f64, Verdict> {
    let (view, g, purpose, link_up) = (&cx.view, cx.globals, cx.purpose, cx.link_up);
    let block = |r: RuleId, why: String| Err(Verdict::Blocked(r, why));
    // mode_off
    if sp.mode == Mode::Off && purpose == Purpose::Propose {
        return Err(Verdict::Ignored);
    }
    // kill_switch
    if let Some(why) = &g.kill {
        return block(RuleId::KillSwitch, why.clone());
    }
    if let Some(k) = g.kill_tag {
        let name = view.name(k);
        let s = view.tag(k).cloned().unwrap_or_default();
        match (&s.value, s.quality) {
            (Some(v), Quality::Good) => {
                let x = v.as_f64();
                if x.is_nan() || x != 0.0 {
                    return block(
                        RuleId::KillSwitch,
                        format!("kill tag {name} is on: nothing is written"),
                    );
                }
            }
            (_, q) => {
                let q = if s.value.is_none() { Quality::Bad } else { q };
                return block(
                    RuleId::KillSwitch,
                    format!("kill tag {name} is {}: the guard fails closed", q.as_str()),
                );
            }
        }
    }
    // locked
    if let Some(why) = &st.locked {
        return block(
            RuleId::Locked,
            format!("locked since {why}; an operator must reset it"),
        );
    }
    // readback_pending
    if let Some(f) = &st.inflight {
        return block(
            RuleId::ReadbackPending,
            format!(
                "write {} of {} still awaits its read-back",
                f.intent, f.value
            ),
        );
    }
    // non_finite
    let mut value = p.requested;
    if !value.is_finite() {
        return block(
            RuleId::NonFinite,
            format!("the requested value {value} is not a finite number"),
        );
    }
    // proposal_age
    let age_ns = view.now_ns.saturating_sub(p.based_on_ns);
    let max_age_ns = i64::try_from(sp.max_proposal_age.as_nanos()).unwrap_or(i64::MAX);
    if age_ns > max_age_ns {
        return block(
            RuleId::ProposalAge,
            format!(
                "the proposal is {} ms old, above max_proposal_age {} ms",
                age_ns / 1_000_000,
                max_age_ns / 1_000_000
            ),
        );
    }
    // input_quality, then input_age
    if let Some(i) = out.inputs.iter().find(|i| i.quality != Quality::Good) {
        return block(
            RuleId::InputQuality,
            format!("input {} is {}", i.tag, i.quality.as_str()),
        );
    }
    let Some(old) = out.old else {
        // Good quality but no number (a text value): nothing to step from.
        return block(
            RuleId::InputQuality,
            format!("{} has no numeric value", sp.name),
        );
    };
    if let Some(max) = sp.max_input_age {
        let max_ms = max.as_millis() as u64;
        if let Some(i) = out.inputs.iter().find(|i| i.age_ms > max_ms) {
            return block(
                RuleId::InputAge,
                format!(
                    "input {} is {} ms old, above max_input_age {max_ms} ms",
                    i.tag, i.age_ms
                ),
            );
        }
    }
    // interlock
    for il in &sp.interlocks {
        use crate::config::interlock::Verdict as V;
        match il.eval(|name| view.lookup(name)) {
            V::Holds => {}
            V::Fails { reason } => {
                return block(
                    RuleId::Interlock,
                    format!("interlock `{}` fails: {reason}", il.text),
                );
            }
            V::Unknown { tag, why } => {
                return block(
                    RuleId::Interlock,
                    format!(
                        "interlock `{}` cannot be evaluated: {tag}: {why} (unknown blocks)",
                        il.text
                    ),
                );
            }
        }
    }
    // bounds
    if value < sp.min || value > sp.max {
        let bound = value.clamp(sp.min, sp.max);
        let why = format!("{value} is outside {}..={}", sp.min, sp.max);
        match sp.out_of_range {
            OutOfRange::Reject => return block(RuleId::Bounds, why),
            OutOfRange::Clamp => {
                out.clamped = Some((bound, format!("{why}: clamped to {bound}")));
                value = bound;
            }
        }
    }
    let change = (value - old).abs();
    // max_step
    if let Some(step) = sp.max_step
        && change > step + EPS
    {
        return block(
            RuleId::MaxStep,
            format!("step {} from {old} is above max_step {step}", fmt(change)),
        );
    }
    // max_rate
    if let Some(rate) = sp.max_rate {
        let since = st.last_write.map_or(st.start_tick, |(t, _)| t);
        let secs = view.tick.saturating_sub(since) as f64 * view.period_ns as f64 / 1e9;
        if change > EPS && (secs <= 0.0 || change / secs > rate + EPS) {
            return block(
                RuleId::MaxRate,
                format!(
                    "{} per s ({} over {secs} s since the last write) is above max_rate {rate}",
                    fmt(if secs > 0.0 {
                        change / secs
                    } else {
                        f64::INFINITY
                    }),
                    fmt(change)
                ),
            );
        }
    }
    // min_interval
    if let Some((t, _)) = st.last_write {
        let since = view.tick.saturating_sub(t);
        if since < u64::from(sp.min_interval_ticks) {
            return block(
                RuleId::MinInterval,
                format!(
                    "{} ms since the last write, below min_interval {} ms",
                    since as i64 * view.period_ns / 1_000_000,
                    sp.min_interval.map_or(0, |d| d.as_millis())
                ),
            );
        }
    }
    // deadband
    if change == 0.0 || change < sp.deadband {
        return Err(Verdict::Skipped(if change == 0.0 {
            format!("{value} is the current value: nothing to write")
        } else {
            format!(
                "change {} is below the deadband {}: not written",
                fmt(change),
                sp.deadband
            )
        }));
    }
    // link_down
    if !link_up {
        return block(
            RuleId::LinkDown,
            "the device it is written to is disconnected".to_string(),
        );
    }
    // lookahead: only where the value is going to be written
    if sp.mode == Mode::ClosedLoop || purpose == Purpose::Approve {
        let f = match (&p.forecast, purpose) {
            (Some(f), Purpose::Propose) => Some(f.clone()),
            _ => match forecaster.forecast(sp.tag, value) {
                Ok(f) => f,
                Err(e) => return block(RuleId::Lookahead, format!("the forecast failed: {e}")),
            },
        };
        match f {
            Some(f) => {
                out.forecast = Some(f.json.clone());
                if f.lost > 0 {
                    return block(
                        RuleId::Lookahead,
                        format!("the forecast loses {} products", f.lost),
                    );
                }
                if f.jam_risk > f.max_jam_risk {
                    return block(
                        RuleId::Lookahead,
                        format!(
                            "the forecast jam risk {} is above the limit {}",
                            fmt(f.jam_risk),
                            f.max_jam_risk
                        ),
                    );
                }
            }
            // An approval is an operator's judgement where no model can
            // forecast; closed loop has no one to judge instead.
            None if purpose == Purpose::Approve => {}
            None => {
                return block(
                    RuleId::Lookahead,
                    format!(
                        "{} turns no knob of a line model, so no forecast can vet it; use advisory mode",
                        sp.name
                    ),
                );
            }
        }
    }
    Ok(value)
}

/// A number for a reason: six decimals at most.
pub(super) fn fmt(x: f64) -> String {
    let r = (x * 1e6).round() / 1e6;
    format!("{r}")
}
