//! The deterministic core: a bevy_ecs `World` stepped on a fixed tick.
//!
//! The core is a pure function of (config, ordered input samples, tick clock).
//! It does no I/O and never reads the machine's clock (clippy's
//! `disallowed-methods` enforces the latter). Live runs and replays drive it
//! through the same three calls: [`TwinCore::push`], [`TwinCore::advance`] and
//! [`TwinCore::drain_events`].

pub mod clock;
pub mod components;
pub mod events;
pub mod lines;
pub mod record;
pub mod residuals;
pub mod sample;
pub mod slip;
pub mod stages;
pub mod systems;

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use std::sync::Arc;

use crate::config::{LoadedConfig, TagId};
pub use clock::TickClock;
use components::*;
pub use events::{
    BeltEstimate, EyeEvent, JamEvent, LineEvent, Outbox, ResidualEvent, TagMeta, TagMetaEntry,
    TwinEvent,
};
pub use lines::{LineState, LineStatus, Lines};
pub use record::{RecordError, RecordValue, SampleRecord};
pub use sample::{Quality, Reason, Sample, UnknownReason, Value};
pub use stages::Stage;

/// The twin of one plant.
pub struct TwinCore {
    world: World,
    stages: stages::Stages,
    /// The `TickClock` resource's value, kept beside the world: a replay
    /// asks for it once per sample, and a resource lookup was 5 % of a
    /// replay. Only [`TwinCore::advance`] moves the clock.
    clock: TickClock,
}

/// A tag as the core currently sees it; for displays, not for the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct TagState {
    pub tag: TagId,
    pub value: Option<Value>,
    pub quality: Quality,
    pub reason: Option<Reason>,
    pub source_time_ns: Option<i64>,
}

impl TwinCore {
    pub fn new(cfg: &LoadedConfig, clock: TickClock) -> Self {
        let mut world = World::new();

        let machines: Vec<(Arc<str>, Entity)> = cfg
            .config
            .machines
            .iter()
            .map(|m| {
                let id: Arc<str> = Arc::from(m.id.value.as_str());
                let e = world
                    .spawn(Machine {
                        id: id.clone(),
                        kind: m.kind.value,
                    })
                    .id();
                (id, e)
            })
            .collect();

        let mut index = Vec::with_capacity(cfg.tags.len());
        let mut meta = Vec::with_capacity(cfg.tags.len());
        for def in cfg.tags.iter() {
            let mut e = world.spawn((
                Tag(def.id),
                TagValue::default(),
                TagQuality::default(),
                SourceTime::default(),
                StaleAfter(i64::try_from(def.stale_after.as_nanos()).unwrap_or(i64::MAX)),
                LastEmitted::default(),
            ));
            let machine = def
                .machine
                .as_deref()
                .and_then(|id| machines.iter().find(|(m, _)| &**m == id));
            if let Some((_, m)) = machine {
                e.insert(BelongsTo(*m));
            }
            index.push(e.id());
            meta.push(TagMetaEntry {
                name: Arc::from(def.name.as_str()),
                machine: machine.map(|(m, _)| m.clone()),
                unit: def.unit.as_deref().map(Arc::from),
            });
        }
        for (m, (_, entity)) in cfg.config.machines.iter().zip(&machines) {
            let roles = m
                .tags
                .iter()
                .filter_map(|(role, tag)| {
                    let id = cfg.tags.id(&tag.value)?;
                    Some((Arc::from(role.value.as_str()), index[id.index()]))
                })
                .collect();
            world.entity_mut(*entity).insert(MachineTags(roles));
        }

        let index = TagIndex(index);
        let lines = lines::build(cfg, &index, clock.period_ns());
        // Photo-eye inputs are read edge by edge (see `EdgeLog`).
        for e in lines
            .0
            .iter()
            .flat_map(|l| l.eyes())
            .filter_map(|e| e.entity())
        {
            world.entity_mut(e).insert(EdgeLog::default());
        }
        world.insert_resource(lines);
        world.insert_resource(systems::PendingLineEvents::default());
        world.insert_resource(clock);
        world.insert_resource(index);
        world.insert_resource(TagMeta(meta));
        world.insert_resource(Inbox::default());
        world.insert_resource(Outbox::default());
        world.insert_resource(IngestStats::default());

        let mut schedule = Schedule::default();
        // One thread, fixed order: determinism over parallelism. The systems
        // are cheap; the expensive stages will parallelise inside themselves.
        schedule.set_executor(SingleThreadedExecutor::new());
        let mut stages = stages::Stages::new(schedule);
        stages.add(Stage::Ingest, systems::ingest);
        stages.add(Stage::Quality, systems::staleness);
        stages.add(Stage::Physics, systems::physics);
        // Tag events before line events within a tick.
        stages.add(Stage::Emit, (systems::emit, systems::emit_lines).chain());

        TwinCore {
            world,
            stages,
            clock,
        }
    }

    /// Runs every line's model on `drive` from now on, where the line
    /// allows it (for agreement tests and benchmarks; the core starts on
    /// [`BeltDrive::live`](crate::physics::BeltDrive::live)). Call it
    /// before the first tick.
    pub fn set_belt_drive(&mut self, drive: crate::physics::BeltDrive) {
        let period_ns = self.clock().period_ns();
        if let Some(mut lines) = self.world.get_resource_mut::<Lines>() {
            for l in &mut lines.0 {
                l.set_belt_drive(drive, period_ns);
            }
        }
    }

    /// Queue a sample; it is applied on the first tick at or after its
    /// receive time.
    pub fn push(&mut self, sample: Sample) {
        self.world.resource_mut::<Inbox>().0.push(sample);
    }

    /// Queue a batch of samples, in order.
    pub fn push_batch(&mut self, batch: Vec<Sample>) {
        let mut inbox = self.world.resource_mut::<Inbox>();
        if inbox.0.is_empty() && inbox.0.capacity() < batch.len() {
            // Take the batch's allocation instead of copying into a smaller one.
            inbox.0 = batch;
        } else {
            inbox.0.extend(batch);
        }
    }

    /// Add systems to a stage of the tick, after those already in it. This
    /// is how later stages (features, inference, optimiser, guard) join the
    /// core without editing its constructor; see [`stages`].
    pub fn add_systems<M>(
        &mut self,
        stage: Stage,
        systems: impl bevy_ecs::schedule::IntoScheduleConfigs<bevy_ecs::system::ScheduleSystem, M>,
    ) {
        self.stages.add(stage, systems);
    }

    /// The world, for a stage to insert the resources its systems use.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// Advance one tick and run the schedule.
    pub fn advance(&mut self) {
        let mut clock = self.world.resource_mut::<TickClock>();
        clock.advance();
        self.clock = *clock;
        self.stages.schedule.run(&mut self.world);
    }

    /// Advance until the current tick time is at or after `t_ns`.
    pub fn advance_to(&mut self, t_ns: i64) {
        while self.clock().now_ns() < t_ns {
            self.advance();
        }
    }

    pub fn clock(&self) -> TickClock {
        self.clock
    }

    /// Move the events made so far into `out` (cleared first). The outbox
    /// takes `out`'s allocation in exchange, so a driver calling this every
    /// tick regrows neither.
    pub fn drain_events_into(&mut self, out: &mut Vec<TwinEvent>) {
        out.clear();
        std::mem::swap(&mut self.world.resource_mut::<Outbox>().0, out);
    }

    pub fn drain_events(&mut self) -> Vec<TwinEvent> {
        std::mem::take(&mut self.world.resource_mut::<Outbox>().0)
    }

    /// Encode events as JSON lines, appending to `out`.
    pub fn encode_events(&self, events: &[TwinEvent], out: &mut Vec<u8>) {
        let meta = self.world.resource::<TagMeta>();
        let mut times = events::TimeCache::default();
        for e in events {
            e.write_json_line_cached(meta, &mut times, out);
        }
    }

    pub fn meta(&self) -> &TagMeta {
        self.world.resource::<TagMeta>()
    }

    pub fn stats(&self) -> IngestStats {
        *self.world.resource::<IngestStats>()
    }

    /// Current state of every tag, in tag order.
    pub fn tag_states(&mut self) -> Vec<TagState> {
        let mut q = self
            .world
            .query::<(&Tag, &TagValue, &TagQuality, &SourceTime)>();
        let mut out: Vec<TagState> = q
            .iter(&self.world)
            .map(|(t, v, q, s)| TagState {
                tag: t.0,
                value: v.0.clone(),
                quality: q.quality,
                reason: q.reason,
                source_time_ns: s.0,
            })
            .collect();
        out.sort_by_key(|s| s.tag);
        out
    }

    /// Every modelled line (those with conveyor geometry), in config order.
    pub fn lines(&self) -> &[LineState] {
        &self.world.resource::<Lines>().0
    }

    pub fn world(&self) -> &World {
        &self.world
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_tests;
