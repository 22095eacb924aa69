//! The lines' physics inside the core: one [`LineModel`] per line that has
//! conveyor geometry, stepped in lock-step with the tick clock.
//!
//! Data flow per tick: tag components (after ingest and staleness) → belt
//! speeds → `substeps` fixed rapier steps → products that left the line are
//! counted and removed → the eyes' expected against measured edges
//! (residuals, stuck eyes, jams: `eyes`) → the belts' slip counts
//! (`belts`) → once per second of tick time, a `line` event. `build` makes
//! a line's state from its config.
//!
//! Decisions (see docs/architecture.md, "Physics in the tick"):
//! - **Lock-step.** Each tick runs the same whole number of model steps,
//!   `ceil(period / MAX_DT)`, each `period / substeps` long, so physics time
//!   is always `ticks × period` (up to rounding of `dt` to whole ns).
//! - **Spawns in tick time.** A spawn is due when physics time reaches the
//!   next multiple of `spawn_interval`, so the mean rate is exact even when
//!   `dt` does not divide the interval (a spawn lands up to one `dt` late).
//!   A spawn that comes due while the infeed spot is occupied is skipped and
//!   counted, not queued: a stopped belt does not pile up products.
//! - **Uncertain.** A belt whose speed tag is bad, stale or has no numeric
//!   value runs at 0 m/s (the twin does not invent motion it cannot see),
//!   and the line is `uncertain` for that tick. A tag of `uncertain` quality
//!   still drives the belt with its value but also makes the line uncertain.
//!   Station cycle-time tags follow the same rule, except that an unknown
//!   cycle time holds the station's product indefinitely (the twin does not
//!   invent a release it cannot see).
//! - **Pushers.** Each pusher's coil tag is read every tick like a station's
//!   cycle-time tag and fires the pusher for the tick's steps. A coil that
//!   is bad, stale or has no value leaves the pusher unfired: the twin does
//!   not invent a reject it cannot see (an `uncertain` coil still fires by
//!   its value). A coil's quality does not make the line `uncertain`: the
//!   `line` event's reasons are a documented interface, and a new one for
//!   coils is a change of its own. Pushed products are counted in
//!   [`LineStatus::pushed`], not as lost, and are not part of the `line`
//!   event yet for the same reason.
//! - **Diverters.** Each diverter's coil tag is read every tick exactly like
//!   a pusher's (same quality rule, same `coil_not_good` reason), and fires
//!   the diverter for the tick's steps. Products that left the end of a
//!   diverter's branch are counted in [`LineStatus::diverted`], not in
//!   `out` (the line's main outfeed) and not as lost.
//! - **Product types.** A line with `product_tag` reads it every tick,
//!   before stepping: a text value that is a type's `id`, or a whole number
//!   that is a type's `code`, changes over (products spawned from then on
//!   are that type; those on the line keep theirs). A bad, stale or missing
//!   value, or one that names no type, keeps the type the line has, without
//!   a log line or a reason (the tag says what the PLC runs; until it says
//!   something the twin knows, the last known type is the best guess). The
//!   line starts with its first type.

use bevy_ecs::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::events::{LineEvent, TwinEvent};
use super::residuals::Mismatch;
use super::sample::Value;
use super::slip::Stretch;
use crate::physics::LineModel;

mod belts;
mod build;
mod eyes;

pub use build::build;
pub use eyes::{CounterInput, EyeCondition, EyeInput, EyeState};

/// A config duration in ns, saturating (the detection thresholds:
/// `residual_tolerance`, `late_window`, `jam_after`; their defaults are in
/// `config::line`).
fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Longest step of the contact model. 5 ms (200 Hz) keeps a product
/// resting stably on a belt and turning corners (see the physics tests at
/// 240 Hz); a 100 ms tick runs 20 steps of exactly 5 ms. A line on the
/// analytical drive steps at most [`crate::physics::ANALYTICAL_DT`].
pub const MAX_DT: Duration = crate::physics::CONTACTS_DT;

/// Line events are written on the first tick of every whole second of tick
/// time (Unix-aligned, so runs with the same tick line up).
pub const REPORT_EVERY_NS: i64 = 1_000_000_000;

/// Throughput is counted over this much tick time.
pub const THROUGHPUT_WINDOW_NS: i64 = 60_000_000_000;

/// The arrival rate a forecast assumes is the infeed counter's over this
/// much tick time: short enough to see a surge of supply within its first
/// half minute, long enough (30 products at 60/min) that one product more or
/// less moves the rate by a few per cent.
pub const ARRIVAL_WINDOW_NS: i64 = 30_000_000_000;

/// Line event reason: some belt speed tag was not good.
pub const SPEED_NOT_GOOD: &str = "speed_not_good";
/// Line event reason: some station cycle-time tag was not good (and every
/// speed was).
pub const CYCLE_TIME_NOT_GOOD: &str = "cycle_time_not_good";
/// Line event reason: some pusher's coil tag was not good (and every speed
/// and cycle time was): the twin may have missed or invented a reject.
pub const COIL_NOT_GOOD: &str = "coil_not_good";

/// Every modelled line, in config order.
#[derive(Resource, Default)]
pub struct Lines(pub Vec<LineState>);

/// One line's model and what the core keeps about it.
pub struct LineState {
    pub id: Arc<str>,
    model: LineModel,
    /// Per conveyor (model order): its speed tag's entity, if the tag exists.
    speed_tags: Vec<Option<Entity>>,
    /// Per station (model order): `None` for a fixed cycle time, else its
    /// cycle-time tag's entity, if the tag exists.
    cycle_tags: Vec<Option<Option<Entity>>>,
    /// Per station (model order): its measured rate tag's entity (products
    /// per minute), if it has one and the tag exists.
    rate_tags: Vec<Option<Entity>>,
    /// Per station: the cycle its cycle-time tag gave this tick if good (its
    /// setpoint, for a station that also has a rate tag), in seconds, and
    /// the cycle the model runs it at over that (1 without a rate tag).
    station_setpoints: Vec<Option<(f64, f64)>>,
    /// Per pusher, then per diverter (model order): its coil tag's entity,
    /// if the tag exists.
    coil_tags: Vec<Option<Entity>>,
    substeps: u32,
    dt_ns: i64,
    /// Physics time since the core started, in ns: steps × `dt_ns`.
    elapsed_ns: i64,
    spawn_interval_ns: Option<i64>,
    next_spawn_ns: i64,
    /// Tick times at which products left the end, within the window.
    departures: VecDeque<i64>,
    pub status: LineStatus,
    /// Why some tick since the last line event was uncertain, if one was
    /// (a belt speed's reason wins over a station cycle time's).
    uncertain_since_report: Option<&'static str>,
    /// Photo-eyes in model (config) order, and their indices in flow order
    /// (by conveyor, then position along it).
    eyes: Vec<EyeState>,
    flow: Vec<usize>,
    /// The infeed counter's tag entity and its last value.
    counter_tag: Option<Entity>,
    counter_last: Option<f64>,
    /// Arrivals the infeed counter reported, (tick time, count), within
    /// [`ARRIVAL_WINDOW_NS`]; and since when the counter has been good on
    /// every tick (`None` while it is not).
    arrivals: VecDeque<(i64, u64)>,
    counter_good_since: Option<i64>,
    /// The tick time `arrivals` is up to date with.
    arrivals_until_ns: i64,
    /// Stretches of belt between eyes, for the slip estimate (`twin::slip`).
    stretches: Vec<Stretch>,
    /// Per conveyor: its belt length, the slip the model runs it at, and
    /// until when (tick time, ns) the model is settling onto a new slip.
    conveyor_length: Vec<f64>,
    model_slip: Vec<f64>,
    refit_until: Vec<Option<i64>>,
    /// Per conveyor: line reports in a row its estimate has been steady.
    steady_for: Vec<u32>,
    /// Scratch: each eye's surplus integral over this tick.
    areas: Vec<i128>,
    /// The active product type's length (the one the infeed counter
    /// spawns), updated at a changeover.
    product_length: f64,
    /// The product tag's entity, if the line has one and the tag exists.
    product_tag: Option<Entity>,
    /// Per product type (model order): its id and code, which the product
    /// tag's value is matched against.
    type_keys: Vec<(Arc<str>, i64)>,
    /// Events of this tick other than the line report (residual, eye, jam).
    pending: Vec<TwinEvent>,
    /// Named zones: id, conveyor index, from and to (metres along it).
    named_zones: Vec<(Arc<str>, usize, f64, f64)>,
    /// Walls the twin put into its own model for detected jams, by the eye
    /// the jam is after.
    jam_walls: Vec<(usize, crate::physics::Obstacle)>,
    /// Products that left the model while it caught up with the plant
    /// after a jam (`eyes`, `catch_up`), counted with this tick's.
    caught_up: crate::physics::Finished,
    /// How long an eye must read blocked against expectation for a jam or
    /// stuck-on verdict, ns.
    jam_after_ns: i64,
    /// Expected products in a row a clear-reading eye must miss before it
    /// may be called stuck off.
    stuck_off_after: u32,
    mismatches: Vec<Mismatch>,
}

/// What the twin currently says about a line (also the content of its
/// `line` events).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineStatus {
    /// Products on the line now.
    pub wip: u64,
    /// Products that left the end of the last conveyor (that is no
    /// diverter's branch: the main outfeed) since the start.
    pub out: u64,
    /// Products that fell off the line since the start, other than those a
    /// pusher rejected.
    pub lost: u64,
    /// Products the line's pushers pushed off the belt since the start.
    pub pushed: u64,
    /// Products that left the end of a diverter's branch conveyor since the
    /// start (not in `out`).
    pub diverted: u64,
    /// Spawns skipped because the infeed spot was still occupied.
    pub infeed_blocked: u64,
    /// Products out over the last [`THROUGHPUT_WINDOW_NS`] of tick time, per
    /// minute (less than the rate during the run's first minute).
    pub throughput_per_min: f64,
    /// Whether this tick's belt speeds were not all known good.
    pub uncertain: bool,
    /// Infeed counter increments that found the infeed spot still occupied
    /// (the twin and the plant disagree about the infeed).
    pub counter_blocked: u64,
}

impl LineState {
    /// The line's physics model (product positions, conveyors).
    pub fn model(&self) -> &LineModel {
        &self.model
    }

    /// The time between arrivals the infeed counter has shown over the last
    /// [`ARRIVAL_WINDOW_NS`] (`Some(None)`: none arrived), for a forecast
    /// that persists the recent supply. `None` when the line follows no
    /// counter, or its counter has not been good for a whole window: the
    /// caller keeps its nominal rate then.
    ///
    /// The counter counts the products the line took: while the infeed is
    /// full, what the plant offered beyond that is not seen, and the
    /// forecast assumes the rate the line managed.
    pub fn observed_arrival_interval(&self) -> Option<Option<Duration>> {
        let since = self.counter_good_since?;
        let newest = self.arrivals_until_ns;
        if newest.saturating_sub(since) < ARRIVAL_WINDOW_NS {
            return None;
        }
        let n: u64 = self.arrivals.iter().map(|(_, n)| n).sum();
        Some((n > 0).then(|| Duration::from_nanos(ARRIVAL_WINDOW_NS as u64 / n)))
    }

    /// The largest belt slip the model runs any conveyor at (0 none, 1 a
    /// belt that moves nothing): a physics feature of the ML stage.
    pub fn max_slip(&self) -> f64 {
        self.model_slip.iter().fold(0.0_f64, |m, s| m.max(s.abs()))
    }

    /// The share of the line's stations holding a product now (0 without
    /// stations): a physics feature of the ML stage.
    pub fn station_utilisation(&self) -> f64 {
        let stations = self.model.stations();
        if stations.is_empty() {
            return 0.0;
        }
        stations.iter().filter(|s| s.holding()).count() as f64 / stations.len() as f64
    }

    /// The photo-eyes, in config order, with their residual state.
    pub fn eyes(&self) -> &[EyeState] {
        &self.eyes
    }

    /// One line of text for displays: WIP, output, throughput, products
    /// per conveyor, and any jam or stuck eye.
    pub fn summary(&self) -> String {
        let zones: Vec<String> = self
            .model
            .zone_counts()
            .iter()
            .zip(self.model.conveyors())
            .map(|(n, c)| format!("{} {n}", c.id))
            .collect();
        let mut s = format!(
            "line {}: WIP {} · out {} · {:.1}/min · {}",
            self.id,
            self.status.wip,
            self.status.out,
            self.status.throughput_per_min,
            zones.join(", ")
        );
        for fi in 0..self.flow.len() {
            let e = &self.eyes[self.flow[fi]];
            if e.jammed {
                let to = self
                    .flow
                    .get(fi + 1)
                    .map_or("the end".to_string(), |&y| self.eyes[y].id.to_string());
                s.push_str(&format!(" · JAM between {} and {to}", e.id));
            }
            if e.condition != EyeCondition::Ok {
                s.push_str(&format!(" · eye {} {}", e.id, e.condition.as_str()));
            }
        }
        if self.status.uncertain {
            s.push_str(" · uncertain");
        }
        s
    }

    /// The infeed counter's tag entity, if the line follows one.
    pub(crate) fn counter_tag(&self) -> Option<Entity> {
        self.counter_tag
    }

    /// The product tag's entity, if the line has one.
    pub(crate) fn product_tag(&self) -> Option<Entity> {
        self.product_tag
    }

    /// Index of the product type the line spawns now (config order).
    pub fn product_type(&self) -> usize {
        self.model.product_type()
    }

    /// Changes over to the type the product tag's value names (see the
    /// module docs): `None` (bad, stale, no value) or a value that names no
    /// type keeps the current one.
    pub(crate) fn select_product(&mut self, value: Option<&Value>) {
        let found = match value {
            Some(Value::Text(t)) => self.type_keys.iter().position(|(id, _)| **id == **t),
            Some(Value::Num(n)) if n.is_finite() && n.fract() == 0.0 => self
                .type_keys
                .iter()
                .position(|(_, code)| *code as f64 == *n),
            _ => None,
        };
        if let Some(i) = found
            && i != self.model.product_type()
        {
            self.model.set_product_type_at(i);
            if let Some(t) = self.model.product_types().get(i) {
                self.product_length = t.length;
            }
        }
    }
}

/// A belt speed read from its tag: the speed to run, and whether it is known
/// good.
pub type BeltSpeed = (f32, bool);

/// A station's cycle time read from its tag: the cycle (`None`: unknown,
/// hold), and whether it is known good.
pub type StationCycleTime = (Option<Duration>, bool);

/// A pusher's or a diverter's coil as read this tick: (fired, whether the
/// coil was good).
pub type CoilInput = (bool, bool);

impl LineState {
    /// The speed tag of each conveyor, for the system to read.
    pub(crate) fn speed_tags(&self) -> &[Option<Entity>] {
        &self.speed_tags
    }

    /// Per station: its measured rate tag, if it has one.
    pub(crate) fn rate_tags(&self) -> &[Option<Entity>] {
        &self.rate_tags
    }

    /// Station `i`'s setpoint as its cycle-time tag gives it (s), and the
    /// cycle the model runs it at over that: what a forecast turning the
    /// station's setpoint must scale a candidate by (a worn station keeps
    /// running that much slower than it is set to). `None` without a good
    /// cycle-time value.
    pub fn station_setpoint(&self, i: usize) -> Option<(f64, f64)> {
        self.station_setpoints.get(i).copied().flatten()
    }

    /// Per station: `None` for a fixed cycle, else its cycle-time tag.
    pub(crate) fn cycle_tags(&self) -> &[Option<Option<Entity>>] {
        &self.cycle_tags
    }

    /// Per pusher, then per diverter: its coil tag, for the system to read.
    pub(crate) fn coil_tags(&self) -> &[Option<Entity>] {
        &self.coil_tags
    }

    /// Runs the model on `drive` from now on, at that drive's step (for
    /// agreement tests and benchmarks). A line with pushers or diverters
    /// stays on contacts (`BeltDrive::fits`).
    pub(crate) fn set_belt_drive(&mut self, drive: crate::physics::BeltDrive, period_ns: i64) {
        use crate::physics::BeltDrive;
        let fits = self.model.pushers().is_empty() && self.model.diverters().is_empty();
        let drive = if fits { drive } else { BeltDrive::Contacts };
        let (substeps, dt_ns) = build::substeps(period_ns, drive);
        self.model.set_belt_drive(drive);
        self.model.set_dt(Duration::from_nanos(dt_ns as u64));
        (self.substeps, self.dt_ns) = (substeps, dt_ns);
    }

    /// Runs one tick ending at `now_ns`: sets the belts, spawns what the
    /// infeed counter says entered, steps the model `substeps` times
    /// (spawning as due and recording each eye's expected edges), removes
    /// finished products, pairs expected with measured eye edges, looks for
    /// jams and stuck eyes, and updates the status. `cycles` has one entry
    /// per station, `None` for a fixed cycle time; `coils` one per pusher,
    /// then one per diverter (fired or not); `eyes` one per eye (its edges are drained). Events go to `out`: residual, eye and jam events
    /// as they happen, then the line report if one is due.
    #[expect(
        clippy::too_many_arguments,
        reason = "one input per kind of tag the line reads"
    )]
    pub(crate) fn tick(
        &mut self,
        now_ns: i64,
        period_ns: i64,
        speeds: &[BeltSpeed],
        cycles: &[Option<StationCycleTime>],
        rates: &[Option<f64>],
        coils: &[CoilInput],
        eyes: &mut [EyeInput],
        counter: CounterInput,
        out: &mut Vec<TwinEvent>,
    ) {
        let (mut uncertain, mut cycle_uncertain) = (false, false);
        for (i, &(speed, good)) in speeds.iter().enumerate() {
            uncertain |= !good;
            // A non-finite speed never gets here (ingest turns it bad), so
            // the error cannot happen; still, a refused speed means a
            // stopped belt, not a panic.
            if self.model.set_belt_speed_at(i, speed).is_err() {
                let _ = self.model.set_belt_speed_at(i, 0.0);
                uncertain = true;
            }
        }
        for (i, c) in cycles.iter().enumerate() {
            if let Some((cycle, good)) = *c {
                cycle_uncertain |= !good;
                let sp = cycle.filter(|_| good).map(|d| d.as_secs_f64());
                // A measured rate (good, positive) is what the station
                // does; its cycle tag is then what it is set to.
                let measured = rates
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|r| Duration::try_from_secs_f64(60.0 / r).ok());
                self.model.set_station_cycle_at(i, measured.or(cycle));
                if let Some(s) = self.station_setpoints.get_mut(i) {
                    *s = sp.map(|sp| match measured {
                        Some(m) if sp > 0.0 => (sp, m.as_secs_f64() / sp),
                        _ => (sp, 1.0),
                    });
                }
            }
        }
        let mut coil_uncertain = false;
        let pushers = self.model.pushers().len();
        for (i, &(fired, good)) in coils.iter().enumerate() {
            coil_uncertain |= !good;
            match i.checked_sub(pushers) {
                None => self.model.set_pusher_at(i, fired),
                Some(d) => self.model.set_diverter_at(d, fired),
            }
        }
        self.follow_counter(now_ns, counter);
        self.take_measured(eyes);
        self.snapshot_neighbours();
        let start_ns = now_ns.saturating_sub(period_ns);
        for k in 0..self.substeps {
            if let Some(interval) = self.spawn_interval_ns
                && self.elapsed_ns >= self.next_spawn_ns
            {
                self.next_spawn_ns = self.next_spawn_ns.saturating_add(interval);
                if self.model.infeed_clear() {
                    // Only fails without a product or conveyor, and
                    // `spawn_interval_ns` is only set with a product on a
                    // line with conveyors.
                    let _ = self.model.spawn_product();
                } else {
                    self.status.infeed_blocked += 1;
                }
            }
            // The model's spawner is off, so a step cannot fail.
            let _ = self.model.step();
            self.elapsed_ns = self.elapsed_ns.saturating_add(self.dt_ns);
            let t_sub = start_ns.saturating_add(self.dt_ns.saturating_mul(i64::from(k) + 1));
            for (eye, model) in self.eyes.iter_mut().zip(self.model.photo_eyes()) {
                let blocked = model.blocked();
                if blocked && !eye.expected_blocked {
                    eye.track.expect(t_sub);
                    eye.expected_total += 1;
                    eye.expected_rises_since_level =
                        eye.expected_rises_since_level.saturating_add(1);
                }
                eye.expected_blocked = blocked;
            }
        }
        let mut done = self.model.remove_finished();
        self.settle_eyes(now_ns);
        self.detect(now_ns);
        let caught_up = std::mem::take(&mut self.caught_up);
        done.out += caught_up.out;
        done.lost += caught_up.lost;
        done.pushed += caught_up.pushed;
        done.diverted += caught_up.diverted;
        self.count_stretches(now_ns, period_ns);
        out.append(&mut self.pending);
        for _ in 0..done.out {
            self.departures.push_back(now_ns);
        }
        while self
            .departures
            .front()
            .is_some_and(|t| now_ns.saturating_sub(*t) >= THROUGHPUT_WINDOW_NS)
        {
            self.departures.pop_front();
        }
        self.status.out += done.out as u64;
        self.status.lost += done.lost as u64;
        self.status.pushed += done.pushed as u64;
        self.status.diverted += done.diverted as u64;
        self.status.wip = self.model.product_count() as u64;
        self.status.throughput_per_min =
            self.departures.len() as f64 * 60e9 / THROUGHPUT_WINDOW_NS as f64;
        self.status.uncertain = uncertain || cycle_uncertain || coil_uncertain;
        if uncertain {
            self.uncertain_since_report = Some(SPEED_NOT_GOOD);
        } else if cycle_uncertain {
            if self.uncertain_since_report != Some(SPEED_NOT_GOOD) {
                self.uncertain_since_report = Some(CYCLE_TIME_NOT_GOOD);
            }
        } else if coil_uncertain {
            self.uncertain_since_report.get_or_insert(COIL_NOT_GOOD);
        }

        if now_ns.div_euclid(REPORT_EVERY_NS) == start_ns.div_euclid(REPORT_EVERY_NS) {
            return;
        }
        let mut zones: Vec<(Arc<str>, u64)> = self
            .model
            .zone_counts()
            .into_iter()
            .zip(self.model.conveyors())
            .map(|(n, c)| (Arc::from(c.id.as_str()), n as u64))
            .collect();
        zones.extend(self.named_zones.iter().map(|(id, c, from, to)| {
            let n = self.model.products_between((*c, *from), (*c, *to));
            (id.clone(), n as u64)
        }));
        let event = LineEvent {
            t_ns: now_ns,
            line: self.id.clone(),
            wip: self.status.wip,
            out: self.status.out,
            lost: self.status.lost,
            pushed: (!self.model.pushers().is_empty()).then_some(self.status.pushed),
            diverted: (!self.model.diverters().is_empty()).then_some(self.status.diverted),
            throughput_per_min: self.status.throughput_per_min,
            uncertain: self.uncertain_since_report,
            zones,
            belts: self.belt_estimates(now_ns),
        };
        self.uncertain_since_report = None;
        out.push(TwinEvent::Line(Box::new(event)));
    }

    /// Spawns one product per counter increment, placed as far along the
    /// first belt as it has travelled since the counter saw it (the poll
    /// latency), so the twin's arrival times are not late by it.
    fn follow_counter(&mut self, now_ns: i64, counter: CounterInput) {
        self.arrivals_until_ns = now_ns;
        while self
            .arrivals
            .front()
            .is_some_and(|(t, _)| now_ns.saturating_sub(*t) >= ARRIVAL_WINDOW_NS)
        {
            self.arrivals.pop_front();
        }
        let Some((value, src_ns, true)) = counter else {
            self.counter_good_since = None;
            return;
        };
        self.counter_good_since.get_or_insert(now_ns);
        let value = value.floor();
        let Some(last) = self.counter_last.replace(value) else {
            // The first reading is a baseline, not arrivals.
            return;
        };
        if value < last {
            // A counter reset or wrap: re-baseline.
            return;
        }
        // A jump of more than a minute's worth at any sane rate is a counter
        // preset, not arrivals.
        let n = (value - last).min(1000.0) as u64;
        if n > 100 {
            return;
        }
        if n > 0 {
            self.arrivals.push_back((now_ns, n));
        }
        let speed = f64::from(self.model.belt_speed_at(0).unwrap_or(0.0)).max(0.0);
        let latency_s = (now_ns.saturating_sub(src_ns)).max(0) as f64 / 1e9;
        let half = self.product_length / 2.0;
        let base = half + (speed * latency_s).min(0.5);
        for i in 0..n {
            let at = base - i as f64 * 1.5 * self.product_length;
            // Never into the product in front: the plant's infeed cannot do
            // that either, so the twin's state is what disagrees.
            let fits = at >= half
                && self
                    .model
                    .newest_along()
                    .is_none_or(|a| f64::from(a) >= at + 1.05 * self.product_length);
            if fits {
                let _ = self.model.spawn_product_at(0, at);
            } else {
                self.status.counter_blocked += 1;
            }
        }
    }
}
