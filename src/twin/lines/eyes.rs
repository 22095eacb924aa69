//! A line's photo-eyes in the core: what each measured, what the twin
//! expected, and the verdicts drawn from comparing an eye with its
//! neighbours (residuals, stuck eyes, jams). The pairing itself is
//! `twin::residuals`; the thresholds are the line's config keys.

use bevy_ecs::prelude::*;
use std::sync::Arc;

use super::LineState;
use crate::twin::events::{EyeEvent, JamEvent, ResidualEvent, TwinEvent};
use crate::twin::residuals::{EyeTrack, Mismatch};

/// The input of one photo-eye for a tick: its level changes since the last
/// tick, and whether its tag is known (good or uncertain) now.
#[derive(Debug, Default, Clone)]
pub struct EyeInput {
    pub edges: Vec<(i64, bool)>,
    pub known: bool,
}

/// The infeed counter for a tick: value, its source time, known good.
pub type CounterInput = Option<(f64, i64, bool)>;

/// What the twin says about one photo-eye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EyeCondition {
    Ok,
    /// Reads blocked while products demonstrably pass it.
    StuckOn,
    /// Reads clear while products demonstrably pass it.
    StuckOff,
}

impl EyeCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            EyeCondition::Ok => "ok",
            EyeCondition::StuckOn => "stuck_on",
            EyeCondition::StuckOff => "stuck_off",
        }
    }
}

/// One photo-eye's expected and measured story.
#[derive(Debug, Clone)]
pub struct EyeState {
    pub id: Arc<str>,
    pub tag: Arc<str>,
    /// Index of its conveyor in the model, and metres along it.
    pub conveyor: usize,
    pub position: f64,
    pub(super) entity: Option<Entity>,
    pub track: EyeTrack,
    pub(super) expected_blocked: bool,
    /// Measured level and the source time it took that level.
    pub(super) level: Option<bool>,
    pub(super) level_since: i64,
    /// Expected rising edges since the measured level last changed.
    pub(super) expected_rises_since_level: u32,
    /// Rising edges since the start, expected and measured.
    pub(super) expected_total: u64,
    pub(super) measured_total: u64,
    /// Whether the measured level changed this tick.
    pub(super) changed: bool,
    /// The (measured, expected) totals of the eyes next downstream and
    /// upstream when this eye's level last changed.
    pub(super) snap_next: (u64, u64),
    pub(super) snap_prev: (u64, u64),
    /// Products the twin had between this eye and the next downstream when
    /// this eye's level last changed: they may still reach the next eye
    /// whatever happens at this one.
    pub(super) between_next: u64,
    pub condition: EyeCondition,
    /// Whether this eye is the upstream end of an active jam.
    pub(super) jammed: bool,
    /// Until when (tick time, ns) this eye's verdicts and residuals are
    /// held: set when a jam after it clears while it still reads blocked
    /// (the jam's queue passing it nose to tail), ended when it reads
    /// clear.
    pub(super) held_until: Option<i64>,
}

impl EyeState {
    /// The eye's tag entity, for the system to read.
    pub(crate) fn entity(&self) -> Option<Entity> {
        self.entity
    }

    /// Measured blocked for at least `jam_after` at `now`, while the twin
    /// expected at least two products to arrive meanwhile.
    fn blocked_against_expectation(&self, now: i64, jam_after: i64) -> bool {
        self.level == Some(true)
            && now.saturating_sub(self.level_since) >= jam_after
            && self.expected_rises_since_level >= 2
    }
}

impl LineState {
    /// Takes each eye's measured level changes.
    pub(super) fn take_measured(&mut self, inputs: &mut [EyeInput]) {
        for (eye, input) in self.eyes.iter_mut().zip(inputs.iter_mut()) {
            if !input.known {
                // Nothing can be said about an eye whose input is not known.
                input.edges.clear();
                if eye.level.is_some() {
                    eye.track.reset();
                    eye.level = None;
                }
                continue;
            }
            for (t, level) in input.edges.drain(..) {
                if level && eye.level != Some(true) {
                    eye.track.measure(t);
                    eye.measured_total += 1;
                }
                if eye.level != Some(level) {
                    eye.level = Some(level);
                    eye.level_since = t;
                    eye.expected_rises_since_level = 0;
                    eye.changed = true;
                }
            }
        }
    }

    /// For each eye whose level changed this tick, what its neighbours had
    /// counted then: the jam and stuck verdicts compare what they counted
    /// since.
    pub(super) fn snapshot_neighbours(&mut self) {
        for fi in 0..self.flow.len() {
            let x = self.flow[fi];
            if !std::mem::take(&mut self.eyes[x].changed) {
                continue;
            }
            let totals = |e: &EyeState| (e.measured_total, e.expected_total);
            let next = self.flow.get(fi + 1).map(|&y| totals(&self.eyes[y]));
            let prev = fi.checked_sub(1).map(|p| totals(&self.eyes[self.flow[p]]));
            let between = self.flow.get(fi + 1).map_or(0, |&y| {
                let (ex, ey) = (&self.eyes[x], &self.eyes[y]);
                self.model
                    .products_between((ex.conveyor, ex.position), (ey.conveyor, ey.position))
            });
            let eye = &mut self.eyes[x];
            eye.snap_next = next.unwrap_or_default();
            eye.snap_prev = prev.unwrap_or_default();
            eye.between_next = between as u64;
        }
    }

    /// Pairs expected with measured edges and turns what does not pair into
    /// residual events, except on an eye already known stuck or while the
    /// line is jammed (the eye or jam event says it all).
    pub(super) fn settle_eyes(&mut self, now_ns: i64) {
        let jammed = self.eyes.iter().any(|e| e.jammed);
        let refit_from = self.refit_from();
        for eye in &mut self.eyes {
            let refitting = refit_from.is_some_and(|c| eye.conveyor >= c);
            if eye.level.is_none() {
                // Unknown input: expected edges cannot be checked.
                eye.track.reset();
                continue;
            }
            self.mismatches.clear();
            eye.track.settle(now_ns, &mut self.mismatches);
            if jammed || refitting || eye.condition != EyeCondition::Ok || eye.held_until.is_some()
            {
                continue;
            }
            for m in &self.mismatches {
                let (expected_ns, measured_ns) = match *m {
                    Mismatch::Missing { expected_ns } => (Some(expected_ns), None),
                    Mismatch::Extra { measured_ns } => (None, Some(measured_ns)),
                    Mismatch::Late {
                        expected_ns,
                        measured_ns,
                    } => (Some(expected_ns), Some(measured_ns)),
                };
                self.pending
                    .push(TwinEvent::Residual(Box::new(ResidualEvent {
                        t_ns: now_ns,
                        line: self.id.clone(),
                        eye: eye.id.clone(),
                        tag: eye.tag.clone(),
                        kind: m.kind(),
                        expected_ns,
                        measured_ns,
                    })));
            }
        }
    }

    /// Jams and stuck eyes, from each eye and the next one downstream.
    ///
    /// An eye X read blocked for the line's `jam_after` while the twin expected
    /// products to pass it is either stuck on or has a queue backed up to
    /// it. The next eye downstream, Y, tells which: if Y has seen a product
    /// since X went blocked, products pass X (stuck on); if Y has seen none
    /// though the twin expected one, they do not: a jam between X and Y.
    /// The last eye has no Y, so a jam after it and a stuck eye look alike;
    /// it is reported as a jam (the safer reading). An eye reading clear
    /// while `stuck_off_after` expected products in a row did not show is
    /// stuck off if the eye next to it saw products meanwhile.
    pub(super) fn detect(&mut self, now_ns: i64) {
        for fi in 0..self.flow.len() {
            let x = self.flow[fi];
            let next = self.flow.get(fi + 1).copied();
            let prev = fi.checked_sub(1).map(|p| self.flow[p]);
            let since = self.eyes[x].level_since;
            // What a neighbour measured and was expected to measure since
            // this eye's level last changed.
            let since_snap = |n: usize, snap: (u64, u64)| {
                let e = &self.eyes[n];
                (
                    e.measured_total.saturating_sub(snap.0),
                    e.expected_total.saturating_sub(snap.1),
                )
            };
            let eye = &self.eyes[x];
            let mut condition = eye.condition;
            let mut jammed = eye.jammed;
            let held = eye.held_until.is_some();
            if held {
                // A cleared jam's queue still passing the eye: it reads
                // blocked though products pass it, which is no verdict.
            } else if eye.level == Some(true)
                && eye.blocked_against_expectation(now_ns, self.jam_after_ns)
                && condition == EyeCondition::Ok
                && !jammed
            {
                // The products the twin had between X and Y when X went
                // blocked may still reach Y whatever happens at X, so
                // they prove nothing. Y seeing two more than those means
                // products pass X (stuck on); Y seeing no more than those
                // while the twin expected at least two more means they do
                // not (a jam between X and Y). A next eye that reads
                // blocked too means the queue runs on past it: the jam is
                // further down, and is that eye's.
                let next_blocked = next.is_some_and(|y| self.eyes[y].level == Some(true));
                let ahead = eye.between_next;
                match next.map(|y| since_snap(y, eye.snap_next)) {
                    _ if next_blocked => {}
                    None => jammed = true,
                    Some((seen, _)) if seen >= ahead + 2 => condition = EyeCondition::StuckOn,
                    Some((seen, expected)) if seen <= ahead && expected >= seen + 2 => {
                        jammed = true
                    }
                    Some(_) => {}
                }
            } else if eye.level == Some(false)
                && eye.track.consecutive_missing >= self.stuck_off_after
                && condition == EyeCondition::Ok
                && !self.refitting(x)
            {
                let neighbour = match (next, prev) {
                    (Some(y), _) => Some(since_snap(y, eye.snap_next)),
                    (None, Some(w)) => Some(since_snap(w, eye.snap_prev)),
                    (None, None) => None,
                };
                if neighbour.is_none_or(|(seen, _)| seen >= 2) {
                    condition = EyeCondition::StuckOff;
                }
            }
            // Recovery: an eye that changes level after being called stuck
            // works again; a jam clears when its queue leaves the eye. An
            // unknown level is no change: the input came back unchanged or
            // not at all, and nothing says the eye works.
            if eye.condition == EyeCondition::StuckOn && eye.level == Some(false)
                || eye.condition == EyeCondition::StuckOff && eye.level == Some(true)
            {
                condition = EyeCondition::Ok;
            }
            // A jam also clears when Y sees products again: two more than
            // the twin had between the eyes when X went blocked (the jam
            // rule reversed). X may read blocked long after, under the
            // queue the jam built, which now moves past it nose to tail
            // (held below, so it is not read as a stuck eye).
            let mut cleared_under_queue = None;
            if eye.jammed && eye.level != Some(true) {
                jammed = false;
            } else if eye.jammed
                && let Some(y) = next
                && let (seen, _) = since_snap(y, eye.snap_next)
                && seen >= eye.between_next + 2
            {
                jammed = false;
                cleared_under_queue = Some((y, seen - eye.between_next));
            }
            if condition != eye.condition {
                self.pending.push(TwinEvent::Eye(EyeEvent {
                    t_ns: now_ns,
                    line: self.id.clone(),
                    eye: eye.id.clone(),
                    tag: eye.tag.clone(),
                    state: condition.as_str(),
                    since_ns: since,
                }));
            }
            if jammed != eye.jammed {
                let conveyor =
                    |e: &EyeState| Arc::from(self.model.conveyors()[e.conveyor].id.as_str());
                let to = next.map(|y| &self.eyes[y]);
                self.pending.push(TwinEvent::Jam(Box::new(JamEvent {
                    t_ns: now_ns,
                    line: self.id.clone(),
                    state: if jammed { "start" } else { "clear" },
                    after_eye: eye.id.clone(),
                    from_conveyor: conveyor(eye),
                    from_m: eye.position,
                    before_eye: to.map(|y| y.id.clone()),
                    to_conveyor: to.map(conveyor),
                    to_m: to.map(|y| y.position),
                    since_ns: since,
                })));
            }
            if jammed != self.eyes[x].jammed {
                self.mirror_jam(x, next, jammed);
            }
            if let Some((y, new_at_y)) = cleared_under_queue {
                self.catch_up(y, new_at_y);
            }
            let eye = &mut self.eyes[x];
            if eye.condition != EyeCondition::Ok && condition == EyeCondition::Ok {
                // The expected edges kept while the eye was blind are
                // products it did not see: pairing its first measured edges
                // with them would put it products out of step for good, as
                // after a jam.
                eye.track.reset();
            }
            eye.condition = condition;
            eye.jammed = jammed;
            if cleared_under_queue.is_some() {
                // Hold the verdicts and residuals of X, and of every eye
                // before it the queue still covers, until each reads clear,
                // at most twice as long as the jam stood; their level
                // baselines restart now, so the time under the moving
                // queue is not counted as blocked against expectation
                // afterwards (nor read as a new jam where the queue's tail
                // is).
                let stood = now_ns.saturating_sub(eye.level_since).max(0);
                let until = now_ns.saturating_add(stood.saturating_mul(2));
                for j in 0..=fi {
                    let e = &mut self.eyes[self.flow[j]];
                    if j == fi || e.level == Some(true) {
                        e.held_until = Some(until);
                        e.level_since = now_ns;
                        e.expected_rises_since_level = 0;
                        e.changed = true;
                    }
                }
            } else if let Some(until) = eye.held_until
                && (eye.level == Some(false) || now_ns >= until)
            {
                // The queue has passed the eye: the twin's and the plant's
                // drained differently (the eye's expected edges under it
                // were never measured), so every eye's pairing and surplus
                // start afresh, as at a jam's clear.
                eye.held_until = None;
                for eye in &mut self.eyes {
                    eye.track.reset();
                }
            }
        }
    }

    /// Makes the twin's own model follow a detected jam, so that its state
    /// (WIP, queues, what the lookahead starts from) matches the plant's:
    /// a wall just after X, the first eye the queue covers, taken away when
    /// the jam clears. The real jam is somewhere between the two eyes; the
    /// plant's queue covers X, so it reaches back from there, and a wall
    /// right after X keeps the twin's queue upstream of any stations
    /// between the eyes (a wall at Y would hold the queue past them, and it
    /// would leave at belt speed rather than the stations' pace). The
    /// products the twin let past X while the jam was being detected (its
    /// expected rises since X went blocked) are the ones the plant holds
    /// behind X: they are moved back behind the wall, compacted. When the
    /// jam clears, every eye's pairing starts afresh: the twin's products
    /// and the plant's have been held differently, and old pending edges
    /// would pair with the wrong products.
    pub(super) fn mirror_jam(&mut self, x: usize, next: Option<usize>, jammed: bool) {
        if jammed {
            let Some(y) = next else { return };
            let (ex, ey) = (&self.eyes[x], &self.eyes[y]);
            let (conveyor, position) = (ex.conveyor, ex.position);
            let to = (ey.conveyor, ey.position);
            let let_past = ex.expected_rises_since_level as usize;
            let length = self.product_length;
            // The wall's upstream face just past the nose of a product
            // centred at X (the wall is 2 cm thick).
            let end = self.conveyor_length.get(conveyor).copied().unwrap_or(0.0);
            let at = (position + length / 2.0 + WALL_HALF + WALL_GAP).min(end);
            if let Ok(o) = self.model.block_at(conveyor, at) {
                self.jam_walls.push((x, o));
            }
            let moved = self.model.compact_behind(
                (conveyor, position),
                to,
                let_past,
                COMPACT_PITCH * length,
            );
            tracing::debug!(
                line = %self.id,
                eye = %self.eyes[x].id,
                let_past,
                moved,
                "Jam detected; the products let past the eye meanwhile moved back behind it."
            );
        } else {
            if let Some(k) = self.jam_walls.iter().position(|(e, _)| *e == x) {
                let (_, o) = self.jam_walls.remove(k);
                self.model.unblock(o);
            }
            for eye in &mut self.eyes {
                eye.track.reset();
            }
        }
    }

    /// Brings the twin's line, just freed of a jam's wall, to where the
    /// plant's is: the plant's queue has been moving since its jam cleared,
    /// while the twin learnt of it only when Y saw `new_at_y` products of
    /// it. So the model runs on (no spawns: the plant's arrivals meanwhile
    /// are in it already) until its own Y has seen as many, at most
    /// [`CATCH_UP_MAX_NS`]. Without it the twin's queue starts one X-to-Y
    /// transit late, and its WIP stays that many products above the
    /// plant's until the queue is gone. The eyes' edges meanwhile are
    /// counted, not paired (their pairing starts afresh at the clear);
    /// products that leave the line are counted with the tick's.
    fn catch_up(&mut self, y: usize, new_at_y: u64) {
        let steps = CATCH_UP_MAX_NS / self.dt_ns.max(1);
        let mut seen = 0;
        for _ in 0..steps {
            if seen >= new_at_y {
                break;
            }
            // The spawner is off, so a step cannot fail.
            let _ = self.model.step();
            let done = self.model.remove_finished();
            self.caught_up.out += done.out;
            self.caught_up.lost += done.lost;
            self.caught_up.pushed += done.pushed;
            self.caught_up.diverted += done.diverted;
            for (i, (eye, model)) in self
                .eyes
                .iter_mut()
                .zip(self.model.photo_eyes())
                .enumerate()
            {
                let blocked = model.blocked();
                if blocked && !eye.expected_blocked {
                    eye.expected_total += 1;
                    if i == y {
                        seen += 1;
                    }
                }
                eye.expected_blocked = blocked;
            }
        }
        tracing::debug!(line = %self.id, new_at_y, seen, "Caught up with the plant after a jam.");
    }
}

/// The longest the twin's line runs on to catch up with the plant after a
/// jam clears (model time, ns): more than a product's transit between two
/// eyes of the demo line, through its stations.
const CATCH_UP_MAX_NS: i64 = 30_000_000_000;

/// Half the thickness of a jam wall (`LineModel::block_at`), m.
const WALL_HALF: f64 = 0.01;
/// The gap between a jam wall and the nose of a product centred at the
/// eye before it, m.
const WALL_GAP: f64 = 0.002;
/// Centre-to-centre distance of products moved back behind a jam wall, in
/// product lengths: nose to tail, with the little slack a real queue has.
const COMPACT_PITCH: f64 = 1.02;
