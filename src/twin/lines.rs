//! The lines' physics inside the core: one [`LineModel`] per line that has
//! conveyor geometry, stepped in lock-step with the tick clock.
//!
//! Data flow per tick: tag components (after ingest and staleness) → belt
//! speeds → `substeps` fixed rapier steps → products that left the line are
//! counted and removed → once per second of tick time, a `line` event.
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

use super::components::TagIndex;
use super::events::{BeltEstimate, EyeEvent, JamEvent, LineEvent, ResidualEvent, TwinEvent};
use super::residuals::{EyeTrack, Mismatch};
use super::sample::Value;
use super::slip::{self, Stretch};
use crate::config::LoadedConfig;
use crate::physics::LineModel;

/// A measured edge later than a line's `late_window` after the expected
/// one does not pair: the expected one is missing and the measured one
/// extra. The thresholds (`residual_tolerance`, `late_window`, `jam_after`,
/// `stuck_off_after`) are per line; their defaults are in `config::line`.
fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

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
    entity: Option<Entity>,
    pub track: EyeTrack,
    expected_blocked: bool,
    /// Measured level and the source time it took that level.
    level: Option<bool>,
    level_since: i64,
    /// Expected rising edges since the measured level last changed.
    expected_rises_since_level: u32,
    /// Rising edges since the start, expected and measured.
    expected_total: u64,
    measured_total: u64,
    /// Whether the measured level changed this tick.
    changed: bool,
    /// The (measured, expected) totals of the eyes next downstream and
    /// upstream when this eye's level last changed.
    snap_next: (u64, u64),
    snap_prev: (u64, u64),
    /// Products the twin had between this eye and the next downstream when
    /// this eye's level last changed: they may still reach the next eye
    /// whatever happens at this one.
    between_next: u64,
    pub condition: EyeCondition,
    /// Whether this eye is the upstream end of an active jam.
    jammed: bool,
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

/// Longest model step. 5 ms (200 Hz) keeps a product resting stably on a
/// belt and turning corners (see the physics tests at 240 Hz); a 100 ms tick
/// runs 20 steps of exactly 5 ms.
pub const MAX_DT: Duration = Duration::from_millis(5);

/// Line events are written on the first tick of every whole second of tick
/// time (Unix-aligned, so runs with the same tick line up).
pub const REPORT_EVERY_NS: i64 = 1_000_000_000;

/// Throughput is counted over this much tick time.
pub const THROUGHPUT_WINDOW_NS: i64 = 60_000_000_000;

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
    /// Stretches of belt between eyes, for the slip estimate (`twin::slip`).
    stretches: Vec<Stretch>,
    /// Per conveyor: its belt length, the slip the model runs it at, and
    /// until when (tick time, ns) the model is settling onto a new slip.
    conveyor_length: Vec<f64>,
    model_slip: Vec<f64>,
    refit_until: Vec<Option<i64>>,
    /// Per conveyor: line reports in a row its estimate has been steady.
    steady_for: Vec<u32>,
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

/// Builds the state of every line with conveyor geometry; lines without it
/// are not modelled and never produce line events.
pub fn build(cfg: &LoadedConfig, index: &TagIndex, period_ns: i64) -> Lines {
    let period_ns = period_ns.max(1);
    let max_dt = MAX_DT.as_nanos() as i64;
    let substeps = u32::try_from((period_ns + max_dt - 1) / max_dt)
        .unwrap_or(u32::MAX)
        .max(1);
    let dt_ns = (period_ns / i64::from(substeps)).max(1);
    let dt = Duration::from_nanos(dt_ns as u64);
    let lines = cfg
        .config
        .lines
        .iter()
        .filter(|l| !l.conveyors.is_empty())
        .map(|line| {
            // The core spawns in tick time (see the module docs), so the
            // model's own step-counted spawner stays off.
            let mut geometry = line.clone();
            let spawn_interval = geometry
                .product
                .as_mut()
                .and_then(|p| p.spawn_interval.take());
            let tag_entity = |name: &str| {
                cfg.tags
                    .id(name)
                    .and_then(|id| index.0.get(id.index()).copied())
            };
            // With an infeed counter the twin follows the real arrivals and
            // the nominal interval is only for the lookahead.
            let counter_tag = line
                .product
                .as_ref()
                .and_then(|p| p.infeed_counter_tag.as_ref())
                .and_then(|t| tag_entity(&t.value));
            let spawn_interval = if counter_tag.is_some() {
                None
            } else {
                spawn_interval
            };
            let model = LineModel::new(&geometry, dt);
            let tolerance_ns = ns(line.residual_tolerance());
            let late_ns = ns(line.late_window());
            let jam_after_ns = ns(line.jam_after());
            let conveyor_index = |id: &str| line.conveyors.iter().position(|c| c.id.value == id);
            // The model keeps the eyes on known conveyors, in config order.
            let eyes: Vec<EyeState> = line
                .photo_eyes
                .iter()
                .filter_map(|e| {
                    Some(EyeState {
                        id: Arc::from(e.id.value.as_str()),
                        tag: Arc::from(e.tag.value.as_str()),
                        conveyor: conveyor_index(&e.conveyor.value)?,
                        position: e.position.value,
                        entity: tag_entity(&e.tag.value),
                        track: EyeTrack::new(tolerance_ns, late_ns),
                        expected_blocked: false,
                        level: None,
                        level_since: 0,
                        expected_rises_since_level: 0,
                        expected_total: 0,
                        measured_total: 0,
                        changed: false,
                        snap_next: (0, 0),
                        snap_prev: (0, 0),
                        between_next: 0,
                        condition: EyeCondition::Ok,
                        jammed: false,
                    })
                })
                .collect();
            let mut flow: Vec<usize> = (0..eyes.len()).collect();
            flow.sort_by(|&a, &b| {
                (eyes[a].conveyor, eyes[a].position)
                    .partial_cmp(&(eyes[b].conveyor, eyes[b].position))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let product_length = line.product.as_ref().map_or(0.0, |p| p.length);
            let mut stretches = Vec::new();
            for (fi, &x) in flow.iter().enumerate() {
                let (c, to_m) = (eyes[x].conveyor, eyes[x].position);
                let from = match fi.checked_sub(1).map(|p| flow[p]) {
                    Some(w) if eyes[w].conveyor == c => Some((Some(w), eyes[w].position)),
                    None if c == 0 && counter_tag.is_some() => Some((None, product_length / 2.0)),
                    _ => None,
                };
                if let Some((from, from_m)) = from
                    && to_m > from_m
                {
                    stretches.push(Stretch::new(c, from, x, to_m - from_m));
                }
            }
            let speed_tags = model
                .conveyors()
                .iter()
                .map(|c| {
                    let id = cfg.tags.id(&c.speed_tag)?;
                    index.0.get(id.index()).copied()
                })
                .collect();
            let cycle_tags = model
                .stations()
                .iter()
                .map(|s| {
                    let tag = s.cycle_tag.as_deref()?;
                    Some(
                        cfg.tags
                            .id(tag)
                            .and_then(|id| index.0.get(id.index()).copied()),
                    )
                })
                .collect();
            let coil_tags = model
                .pushers()
                .iter()
                .map(|p| tag_entity(&p.coil_tag))
                .chain(model.diverters().iter().map(|d| tag_entity(&d.coil_tag)))
                .collect();
            LineState {
                id: Arc::from(line.id.value.as_str()),
                model,
                speed_tags,
                cycle_tags,
                coil_tags,
                substeps,
                dt_ns,
                elapsed_ns: 0,
                spawn_interval_ns: spawn_interval
                    .map(|i| i64::try_from(i.as_nanos()).unwrap_or(i64::MAX).max(1)),
                next_spawn_ns: 0,
                departures: VecDeque::new(),
                status: LineStatus::default(),
                uncertain_since_report: None,
                eyes,
                flow,
                counter_tag,
                counter_last: None,
                stretches,
                conveyor_length: line
                    .conveyors
                    .iter()
                    .map(|c| c.segments.iter().map(|s| s.length.value).sum())
                    .collect(),
                model_slip: vec![0.0; line.conveyors.len()],
                refit_until: vec![None; line.conveyors.len()],
                steady_for: vec![0; line.conveyors.len()],
                product_length,
                product_tag: line.product_tag.as_ref().and_then(|t| tag_entity(&t.value)),
                type_keys: line
                    .product_types()
                    .iter()
                    .map(|t| (Arc::from(t.id.value.as_str()), t.code.value))
                    .collect(),
                pending: Vec::new(),
                mismatches: Vec::new(),
                jam_walls: Vec::new(),
                jam_after_ns,
                stuck_off_after: line.stuck_off_after(),
                named_zones: line
                    .zones
                    .iter()
                    .filter_map(|z| {
                        Some((
                            Arc::from(z.id.value.as_str()),
                            conveyor_index(&z.conveyor.value)?,
                            z.from.value,
                            z.to.value,
                        ))
                    })
                    .collect(),
            }
        })
        .collect();
    Lines(lines)
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

    /// Per station: `None` for a fixed cycle, else its cycle-time tag.
    pub(crate) fn cycle_tags(&self) -> &[Option<Option<Entity>>] {
        &self.cycle_tags
    }

    /// Per pusher, then per diverter: its coil tag, for the system to read.
    pub(crate) fn coil_tags(&self) -> &[Option<Entity>] {
        &self.coil_tags
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
                self.model.set_station_cycle_at(i, cycle);
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
        let done = self.model.remove_finished();
        self.settle_eyes(now_ns);
        self.detect(now_ns);
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
        out.push(TwinEvent::Line(event));
    }

    /// Spawns one product per counter increment, placed as far along the
    /// first belt as it has travelled since the counter saw it (the poll
    /// latency), so the twin's arrival times are not late by it.
    fn follow_counter(&mut self, now_ns: i64, counter: CounterInput) {
        let Some((value, src_ns, true)) = counter else {
            return;
        };
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

    /// Takes each eye's measured level changes.
    fn take_measured(&mut self, inputs: &mut [EyeInput]) {
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
    fn snapshot_neighbours(&mut self) {
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
    fn settle_eyes(&mut self, now_ns: i64) {
        let jammed = self.eyes.iter().any(|e| e.jammed);
        let refitting: Vec<bool> = (0..self.eyes.len()).map(|e| self.refitting(e)).collect();
        for (eye, refitting) in self.eyes.iter_mut().zip(refitting) {
            if eye.level.is_none() {
                // Unknown input: expected edges cannot be checked.
                eye.track.reset();
                continue;
            }
            self.mismatches.clear();
            eye.track.settle(now_ns, &mut self.mismatches);
            if jammed || refitting || eye.condition != EyeCondition::Ok {
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
                self.pending.push(TwinEvent::Residual(ResidualEvent {
                    t_ns: now_ns,
                    line: self.id.clone(),
                    eye: eye.id.clone(),
                    tag: eye.tag.clone(),
                    kind: m.kind(),
                    expected_ns,
                    measured_ns,
                }));
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
    fn detect(&mut self, now_ns: i64) {
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
            if eye.level == Some(true)
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
            if eye.jammed && eye.level != Some(true) {
                jammed = false;
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
                self.pending.push(TwinEvent::Jam(JamEvent {
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
                }));
            }
            if jammed != self.eyes[x].jammed {
                self.mirror_jam(x, next, jammed);
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
        }
    }

    /// Makes the twin's own model follow a detected jam, so that its state
    /// (WIP, queues, what the lookahead starts from) matches the plant's:
    /// a wall just before the first eye products no longer reach, taken
    /// away when the jam clears. The real jam is somewhere between the two
    /// eyes; the wall is at the downstream end of that stretch, the only
    /// place the eyes can vouch for. When it clears, every eye's pairing
    /// starts afresh: the twin's products and the plant's have been held
    /// differently, and old pending edges would pair with the wrong
    /// products.
    fn mirror_jam(&mut self, x: usize, next: Option<usize>, jammed: bool) {
        if jammed {
            let Some(y) = next else { return };
            let (conveyor, position) = (self.eyes[y].conveyor, self.eyes[y].position);
            let at = (position - self.product_length).max(0.0);
            if let Ok(o) = self.model.block_at(conveyor, at) {
                self.jam_walls.push((x, o));
            }
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

    /// Whether an eye's expectations are moving onto a new belt slip: it
    /// is on or downstream of a conveyor whose model slip just changed.
    fn refitting(&self, eye: usize) -> bool {
        let c = self.eyes[eye].conveyor;
        self.refit_until[..=c.min(self.refit_until.len().saturating_sub(1))]
            .iter()
            .any(Option::is_some)
    }

    /// Integrates every eye's surplus over the tick and adds it to the
    /// stretches; ends the settling after a slip change (the eyes it moved
    /// are paired afresh from then on).
    fn count_stretches(&mut self, now_ns: i64, period_ns: i64) {
        let areas: Vec<i128> = self
            .eyes
            .iter_mut()
            .map(|e| e.track.integrate(now_ns, period_ns))
            .collect();
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
            }) || self.eyes.iter().any(|e| e.jammed)
                || self
                    .model
                    .belt_speed_at(st.conveyor)
                    .is_none_or(|v| f64::from(v) <= 0.01);
            let generations = (generation(from), generation(Some(to)));
            let expected = self.eyes[to].expected_total;
            let st = &mut self.stretches[k];
            st.add(area, generations, expected);
            if disturbed {
                // Counts over a stopped belt, a blind eye or a jam say
                // nothing about how fast the belt carries.
                st.clear();
            }
        }
    }

    /// Belt slip per conveyor, over its longest stretch that has an
    /// estimate (`twin::slip`), closing this second's counts; and the
    /// feedback: a steady estimate that differs from the slip the model
    /// runs becomes the model's slip.
    fn belt_estimates(&mut self, now_ns: i64) -> Vec<BeltEstimate> {
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
