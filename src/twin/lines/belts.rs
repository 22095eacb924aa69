//! A line's belt slip in the core: the stretches' counts each tick, the
//! estimates in the `line` event, and the feedback into the model
//! (`twin::slip` has the arithmetic and the reasons).

use std::sync::Arc;

use super::LineState;
use super::eyes::EyeCondition;
use crate::twin::events::BeltEstimate;
use crate::twin::slip;

impl LineState {
    /// Whether an eye's expectations are moving onto a new belt slip: it
    /// is on or downstream of a conveyor whose model slip just changed.
    pub(super) fn refitting(&self, eye: usize) -> bool {
        self.refit_from()
            .is_some_and(|c| self.eyes[eye].conveyor >= c)
    }

    /// The first conveyor whose model slip is settling, if any: the eyes on
    /// it and after it are refitting.
    pub(super) fn refit_from(&self) -> Option<usize> {
        self.refit_until.iter().position(Option::is_some)
    }

    /// Integrates every eye's surplus over the tick and adds it to the
    /// stretches; ends the settling after a slip change (the eyes it moved
    /// are paired afresh from then on).
    pub(super) fn count_stretches(&mut self, now_ns: i64, period_ns: i64) {
        let mut areas = std::mem::take(&mut self.areas);
        areas.clear();
        areas.extend(
            self.eyes
                .iter_mut()
                .map(|e| e.track.integrate(now_ns, period_ns)),
        );
        for c in 0..self.refit_until.len() {
            if self.refit_until[c].is_some_and(|t| now_ns >= t) {
                self.refit_until[c] = None;
                for eye in self.eyes.iter_mut().filter(|e| e.conveyor >= c) {
                    eye.track.reset_pairing();
                }
            }
        }
        for k in 0..self.stretches.len() {
            let st = &self.stretches[k];
            let (from, to) = (st.from, st.to);
            let generation = |e: Option<usize>| e.map_or(0, |e| self.eyes[e].track.generation());
            let area = from.map_or(0, |f| areas[f]) - areas[to];
            let disturbed = [from, Some(to)].into_iter().flatten().any(|e| {
                let eye = &self.eyes[e];
                eye.level.is_none() || eye.condition != EyeCondition::Ok || self.refitting(e)
            }) || self.eyes.iter().any(|e| e.jammed || e.held_until.is_some())
                || self
                    .model
                    .belt_speed_at(st.conveyor)
                    .is_none_or(|v| f64::from(v) <= 0.01);
            let generations = (generation(from), generation(Some(to)));
            let expected = self.eyes[to].expected_total;
            let st = &mut self.stretches[k];
            st.add(area, generations, expected);
            if disturbed {
                // Counts over a stopped belt, a blind eye, a jam or a
                // cleared jam's queue still draining (its eye held) say
                // nothing about how fast the belt carries.
                st.clear();
            }
        }
        self.areas = areas;
    }

    /// Belt slip per conveyor, over its longest stretch that has an
    /// estimate (`twin::slip`), closing this second's counts; and the
    /// feedback: a steady estimate that differs from the slip the model
    /// runs becomes the model's slip.
    pub(super) fn belt_estimates(&mut self, now_ns: i64) -> Vec<BeltEstimate> {
        // Per conveyor: its longest stretch with an estimate, the length
        // and the estimate.
        let mut best: Vec<Option<(usize, f64, f64)>> = vec![None; self.model.conveyors().len()];
        for (k, st) in self.stretches.iter_mut().enumerate() {
            st.roll();
            if let Some(extra) = st.extra_s()
                && let Some(slot) = best.get_mut(st.conveyor)
                && slot.is_none_or(|(_, len, _)| len < st.over_m)
            {
                *slot = Some((k, st.over_m, extra));
            }
        }
        let mut out = Vec::new();
        // A belt upstream whose model is about to change, or is settling,
        // makes every belt after it look wrong for a while (its products
        // reach them at another time): fix the first belt first.
        let mut upstream_moving = false;
        for (c, b) in best.into_iter().enumerate() {
            upstream_moving |= self.refit_until[c].is_some();
            let Some((k, _, extra)) = b else {
                self.steady_for[c] = 0;
                continue;
            };
            let st = &self.stretches[k];
            let drive = f64::from(self.model.belt_speed_at(c).unwrap_or(0.0));
            let applied = self.model_slip[c];
            let Some((at_drive, measured, slip)) = slip::slip_of(st.over_m, drive, applied, extra)
            else {
                continue;
            };
            out.push(BeltEstimate {
                conveyor: Arc::from(self.model.conveyors()[c].id.as_str()),
                speed: drive,
                over_m: st.over_m,
                transit_expected_s: at_drive,
                transit_measured_s: measured,
                slip,
                model_slip: (applied > 0.0).then_some(applied),
            });
            // Steady: the two half windows agree within a tenth of a
            // product spacing's worth of the stretch's transit, or 50 ms.
            let target = if slip < slip::APPLY_MIN {
                0.0
            } else {
                slip.min(slip::APPLY_MAX)
            };
            let steady = st.steady(
                |e| slip::slip_of(st.over_m, drive, applied, e).map_or(f64::NAN, |(_, _, s)| s),
                slip::STEADY_TOL.max(0.1 * (target - applied).abs()),
            );
            self.steady_for[c] = if steady { self.steady_for[c] + 1 } else { 0 };
            if steady && slip < slip::RECOUNT_BELOW {
                // One product too many counted at the far end.
                let to = st.to;
                self.eyes[to].track.shift_surplus(-1);
                for st in self.stretches.iter_mut() {
                    if st.to == to || st.from == Some(to) {
                        st.clear();
                    }
                }
                self.steady_for[c] = 0;
                continue;
            }
            let change = (target - applied).abs() >= slip::APPLY_STEP;
            if change
                && !upstream_moving
                && self.steady_for[c] >= slip::STEADY_FOR
                && self.model.set_belt_slip_at(c, target as f32).is_ok()
            {
                self.model_slip[c] = target;
                // Until the products on the belt have crossed it at the new
                // speed and reached the line's end (every eye from this belt
                // on sees them shifted), with a margin for stations.
                let surface = (drive * (1.0 - target)).max(0.05);
                let downstream: f64 = self.conveyor_length[c..].iter().sum();
                let settle_s = (1.5 * downstream / surface + 2.0).min(180.0);
                self.refit_until[c] = Some(now_ns.saturating_add((settle_s * 1e9) as i64));
                for st in self.stretches.iter_mut().filter(|s| s.conveyor >= c) {
                    st.clear();
                }
            }
            upstream_moving |= change;
        }
        out
    }
}
