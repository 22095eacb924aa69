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

use bevy_ecs::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::components::TagIndex;
use super::events::LineEvent;
use crate::config::LoadedConfig;
use crate::physics::LineModel;

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
}

/// What the twin currently says about a line (also the content of its
/// `line` events).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineStatus {
    /// Products on the line now.
    pub wip: u64,
    /// Products that left the end of the last conveyor since the start.
    pub out: u64,
    /// Products that fell off the line since the start.
    pub lost: u64,
    /// Spawns skipped because the infeed spot was still occupied.
    pub infeed_blocked: u64,
    /// Products out over the last [`THROUGHPUT_WINDOW_NS`] of tick time, per
    /// minute (less than the rate during the run's first minute).
    pub throughput_per_min: f64,
    /// Whether this tick's belt speeds were not all known good.
    pub uncertain: bool,
}

impl LineState {
    /// The line's physics model (product positions, conveyors).
    pub fn model(&self) -> &LineModel {
        &self.model
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
            let model = LineModel::new(&geometry, dt);
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
            LineState {
                id: Arc::from(line.id.value.as_str()),
                model,
                speed_tags,
                cycle_tags,
                substeps,
                dt_ns,
                elapsed_ns: 0,
                spawn_interval_ns: spawn_interval
                    .map(|i| i64::try_from(i.as_nanos()).unwrap_or(i64::MAX).max(1)),
                next_spawn_ns: 0,
                departures: VecDeque::new(),
                status: LineStatus::default(),
                uncertain_since_report: None,
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

impl LineState {
    /// The speed tag of each conveyor, for the system to read.
    pub(crate) fn speed_tags(&self) -> &[Option<Entity>] {
        &self.speed_tags
    }

    /// Per station: `None` for a fixed cycle, else its cycle-time tag.
    pub(crate) fn cycle_tags(&self) -> &[Option<Option<Entity>>] {
        &self.cycle_tags
    }

    /// Runs one tick ending at `now_ns`: sets the belts, steps the model
    /// `substeps` times (spawning as due), removes finished products and
    /// updates the status. `cycles` has one entry per station, `None` for a
    /// fixed cycle time. Returns the line event if one is due.
    pub(crate) fn tick(
        &mut self,
        now_ns: i64,
        period_ns: i64,
        speeds: &[BeltSpeed],
        cycles: &[Option<StationCycleTime>],
    ) -> Option<LineEvent> {
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
        for _ in 0..self.substeps {
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
        }
        let done = self.model.remove_finished();
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
        self.status.wip = self.model.product_count() as u64;
        self.status.throughput_per_min =
            self.departures.len() as f64 * 60e9 / THROUGHPUT_WINDOW_NS as f64;
        self.status.uncertain = uncertain || cycle_uncertain;
        if uncertain {
            self.uncertain_since_report = Some(SPEED_NOT_GOOD);
        } else if cycle_uncertain {
            self.uncertain_since_report
                .get_or_insert(CYCLE_TIME_NOT_GOOD);
        }

        let prev = now_ns.saturating_sub(period_ns);
        if now_ns.div_euclid(REPORT_EVERY_NS) == prev.div_euclid(REPORT_EVERY_NS) {
            return None;
        }
        let event = LineEvent {
            t_ns: now_ns,
            line: self.id.clone(),
            wip: self.status.wip,
            out: self.status.out,
            lost: self.status.lost,
            throughput_per_min: self.status.throughput_per_min,
            uncertain: self.uncertain_since_report,
        };
        self.uncertain_since_report = None;
        Some(event)
    }
}
